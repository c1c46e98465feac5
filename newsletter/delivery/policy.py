"""What happens to a ledger row after each try: the delivery decisions, and nothing else.

Pure: no database, network, clock or random numbers.  The sender
(:mod:`newsletter.delivery.sender`) says what happened (a row about to be tried, or the
:class:`~newsletter.errors.SendError` its try ended in) and does the step it gets back:

==================================  ======================================================
what happened                       step
==================================  ======================================================
nothing yet; subscriber left        :class:`Skip` (SKIPPED)
nothing yet; asked to stop          :class:`Requeue` (back to QUEUED for the next run)
nothing yet                         :class:`Send`
the connection could not reopen     :class:`Reconnect` (tried first on a new connection)
a permanent refusal (5xx, or an     :class:`Fail` (FAILED); ``bounce`` when the reply says
address no server can take)         the address is bad: the subscriber is marked bounced
a transient one, tries used up      :class:`Defer` (DEFERRED; ``send --retry-failed``)
a transient one, asked to stop      :class:`Requeue`
a transient one (4xx, a drop)       :class:`Retry` after a delay, the connection moving on
==================================  ======================================================

A message is tried at most :data:`MAX_ATTEMPTS` times within one run, the retries
:data:`BACKOFF`, then ``2 x BACKOFF`` seconds apart, with jitter (x 0.5 to 1.5); the first
retry after a dropped connection comes at once, on a new connection (waiting does not help
there).  So a row is settled, sent or DEFERRED, at most 1.5 x (1 + 2) x BACKOFF = 2.25 s
after its first try, plus the tries themselves.

A connection lost in DATA, before the server's reply, may have delivered the message:
from then on the row is *in doubt*, and every later copy is counted as a possible
duplicate (it carries the same Message-ID).

The reply classifier (:func:`classify`) is here too: which refusals are permanent, and
which say that the recipient's address is bad (:func:`address_gone`, which the bounce
mailbox's reports are judged by as well, see :func:`newsletter.bounces.parse.severity`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newsletter.errors import SendError, SendStage
from newsletter.models import SubscriberStatus

#: Attempts per message within one run for transient failures (4xx, dropped
#: connections); also attempts to (re)open a connection.
MAX_ATTEMPTS = 3
#: Seconds before the first retry; doubled each time, with jitter (x 0.5 to 1.5).
BACKOFF = 0.5

#: The command each stage's reply answers, as a failure's reason names it.
COMMANDS: dict[SendStage, str] = {
    "connect": "connecting",
    "mail": "MAIL FROM",
    "rcpt": "RCPT TO",
    "data": "DATA",
}


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class Row:
    """What the policy knows of a claimed row."""

    subscriber: SubscriberStatus  # as the claim read it
    tries: int = 0  # attempts made in this run
    in_doubt: bool = False  # an earlier copy may have arrived


@dataclass(frozen=True, slots=True)
class Send:
    """Hand the message to the server now."""


@dataclass(frozen=True, slots=True)
class Skip:
    """The subscriber left before their turn: SKIPPED, nothing sent."""

    reason: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again on this sender's retry queue, not before ``delay`` seconds from now; the
    connection moves on meanwhile.  ``in_flight``: the row was SENDING (it failed in DATA)
    and goes back to CLAIMED first, with the doubt written down."""

    reason: str
    delay: float
    tries: int
    in_doubt: bool
    in_flight: bool


@dataclass(frozen=True, slots=True)
class Defer:
    """Transient failures used up the tries: DEFERRED, for ``send --retry-failed``."""

    reason: str
    in_doubt: bool


@dataclass(frozen=True, slots=True)
class Fail:
    """A permanent failure: FAILED, never retried; ``bounce``: mark the subscriber bounced."""

    reason: str
    bounce: bool
    in_doubt: bool


@dataclass(frozen=True, slots=True)
class Requeue:
    """The run is stopping: the row goes back to QUEUED (its doubt kept) for the next run."""

    in_doubt: bool


@dataclass(frozen=True, slots=True)
class Reconnect:
    """The connection could not be reopened, which is not this message's failure: it is
    tried first once a new connection is open, its tries untouched."""


Step = Send | Skip | Retry | Defer | Fail | Requeue | Reconnect


def next_step(
    row: Row, failure: SendError | None = None, *, stopping: bool = False, draw: float = 0.5
) -> Step:
    """The step for ``row``: before its try (``failure`` None), or after a try that ended
    in ``failure``.  ``stopping``: the run was asked to stop (a signal, ``--limit``).
    ``draw``: a number in [0, 1) for the jitter of a retry's delay (0.5: none)."""
    if failure is None:
        if row.subscriber is not SubscriberStatus.ACTIVE:
            return Skip(f"subscriber is {row.subscriber.value}")
        return Requeue(row.in_doubt) if stopping else Send()
    if failure.stage == "connect":
        return Requeue(row.in_doubt) if stopping else Reconnect()
    dropped = failure.code is None  # the connection was lost: there is no reply
    in_flight = failure.stage == "data"
    doubt = row.in_doubt or (dropped and in_flight)
    if failure.permanent:
        return Fail(failure.reason, failure.bounce, doubt)
    tries = row.tries + 1
    if tries >= MAX_ATTEMPTS:
        return Defer(failure.reason, doubt)
    if stopping:
        return Requeue(doubt)
    # A new connection is the remedy for a dropped one; a 4xx asks for time.
    delay = 0.0 if dropped and tries == 1 else BACKOFF * 2 ** (tries - 1)
    return Retry(failure.reason, delay * (0.5 + draw), tries, doubt, in_flight)


def reopen_delay(attempt: int) -> float | None:
    """Seconds to wait after the ``attempt``-th failure to open a connection before the
    next try; ``None``: give up (the connection drops out, the others carry on)."""
    return None if attempt >= MAX_ATTEMPTS else BACKOFF * 2 ** (attempt - 1)


# --------------------------------------------------------------------------- replies

#: An enhanced status code (RFC 3463) where RFC 2034 puts it: first in the reply's text.
_STATUS_FIRST = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9.])")
#: ... or where qmail puts it: "(#5.1.1)" at the end.
_STATUS_QMAIL = re.compile(r"\(#([245]\.[0-9]{1,3}\.[0-9]{1,3})\)")
#: A refusal that speaks of our sender address (Postfix's "Sender address rejected",
#: given at RCPT) says nothing about the recipient's.
_ABOUT_SENDER = re.compile(r"\bsender\b", re.IGNORECASE)


def enhanced_status(text: str) -> str | None:
    """The enhanced status code of a reply's text (``"5.1.1"``), or ``None``."""
    m = _STATUS_FIRST.match(text)
    if m:
        return m.group(0)
    m = _STATUS_QMAIL.search(text)
    return m.group(1) if m else None


def address_gone(status: str | None, code: int | None = None) -> bool:
    """Whether a permanent failure says the recipient's address itself is bad, so the
    subscriber is marked bounced.

    An enhanced status 5.1.x (bad mailbox, bad domain, bad syntax, null MX) but 5.1.7 and
    5.1.8 (those are about the *sender's* address), or 5.2.1 (mailbox disabled).  With no
    status, or only the undefined 5.0.0, the basic reply ``code``: 550, 551 or 553.  A
    full mailbox (5.2.2), a policy or spam rejection (5.7.x), anything else: no.
    """
    if status is not None and status != "5.0.0":
        klass, subject, detail = status.split(".")
        if klass != "5":
            return False
        return (subject == "1" and detail not in ("7", "8")) or (subject, detail) == ("2", "1")
    return code in (550, 551, 553)


def classify(code: int, text: str, stage: SendStage) -> SendError:
    """The failure for the server's refusal ``code text`` at ``stage``.

    5xx is permanent, anything else transient (421: the server is closing the
    connection).  It is a bounce when the refusal, to RCPT or to the DATA of our one
    recipient, says the address is bad (:func:`address_gone`; a bare 550/551/553 only
    counts at RCPT).
    """
    permanent = 500 <= code < 600
    bounce = (
        permanent
        and stage in ("rcpt", "data")
        and not _ABOUT_SENDER.search(text)
        and address_gone(enhanced_status(text), code if stage == "rcpt" else None)
    )
    return SendError(
        f"{code} {text} (after {COMMANDS[stage]})",
        code=code,
        permanent=permanent,
        stage=stage,
        bounce=bounce,
    )
