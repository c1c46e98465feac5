"""Delivery: mail a stored issue to every queued subscriber, exactly once, through the ledger.

Parallel senders (``smtp.connections`` threads, each with its own connection) claim small
batches of ledger rows, build each subscriber's message from the issue rendered once,
mark the row SENDING just before DATA and SENT (or FAILED / DEFERRED) right after.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from newsletter.config import Settings
from newsletter.delivery.message import MessageTemplate, unsubscribe_token, unsubscribe_url
from newsletter.delivery.transport import (
    RateLimiter,
    SendError,
    Transport,
    TransportUnavailable,
)
from newsletter.errors import ConfigError
from newsletter.models import DeliveryStatus, Subscriber, SubscriberStatus
from newsletter.store import Claim, IssueRecord, Store
from newsletter.store.ledger import ClaimLost
from newsletter.subscribers import ascii_email

log = logging.getLogger(__name__)

#: Rows one sender claims at a time: small, so a stop leaves little to hand back.
BATCH = 10
#: Attempts per message within one run for transient failures (4xx, dropped connections).
MAX_ATTEMPTS = 3
#: Seconds before the first retry; doubled each time, with jitter.
BACKOFF = 1.0
#: The key that signs demo links when no NEWSLETTER_SECRET_KEY is set and nothing is sent.
DEMO_SECRET = "newsletter-outbox-only-not-secret"
_warned: list[bool] = []  # warn about the demo key once per process


def signing_secret(settings: Settings) -> str:
    """NEWSLETTER_SECRET_KEY; only the offline outbox may run without one."""
    if settings.secrets.secret_key:
        return settings.secrets.secret_key
    if settings.delivery.transport == "outbox":
        if not _warned:
            _warned.append(True)
            log.warning("NEWSLETTER_SECRET_KEY is not set; links are signed with a public demo key")
        return DEMO_SECRET
    raise ConfigError(
        "NEWSLETTER_SECRET_KEY is not set: it signs the unsubscribe links in every email "
        "(a long random value, e.g. from "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
    )


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


#: Problems (failed or deferred addresses) a report lists; the rest are counted.
PROBLEMS_SHOWN = 20


@dataclass
class DeliveryReport:
    """What one delivery run did, read back from the ledger once the run is over.

    ``run`` counts the rows this run settled (its sender ids are in ``claimed_by``),
    ``totals`` the whole issue: both are :meth:`Store.delivery_counts`, the source every
    count shown to the operator comes from.
    """

    issue_date: dt.date
    run: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    stopped: str | None = None  # why the run stopped before the queue was empty
    problems: list[str] = field(default_factory=list)  # the first PROBLEMS_SHOWN of this run

    def _n(self, status: DeliveryStatus) -> int:
        return self.run.get(status.value, 0)

    @property
    def sent(self) -> int:
        return self._n(DeliveryStatus.SENT)

    @property
    def failed(self) -> int:
        return self._n(DeliveryStatus.FAILED)

    @property
    def deferred(self) -> int:
        return self._n(DeliveryStatus.DEFERRED)

    @property
    def skipped(self) -> int:
        return self._n(DeliveryStatus.SKIPPED)

    @property
    def in_doubt(self) -> int:
        """Rows this run sent (or settled) although an earlier attempt may have arrived."""
        return self.run.get("in_doubt", 0)

    @property
    def problems_total(self) -> int:
        return self.failed + self.deferred

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.deferred + self.skipped

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


class IssueMailer:
    """Turns the stored issue into one subscriber's message; cheap per subscriber."""

    def __init__(self, settings: Settings, issue: IssueRecord, secret: str, now: dt.datetime):
        self.settings = settings
        self.issue = issue
        self.secret = secret
        self.template = MessageTemplate(
            settings,
            subject=issue.subject,
            html=issue.html,
            text=issue.text,
            date=now,
            secret=secret,
            issue_date=issue.issue_date,
        )

    def personal(self, subscriber: Subscriber) -> tuple[str, str, str]:
        """(html, text, unsubscribe token) for one subscriber, as the message carries them."""
        from newsletter.render import RenderedIssue, personalize

        token = unsubscribe_token(self.secret, subscriber.id)
        rendered = RenderedIssue(
            self.issue.subject, self.issue.preheader, self.issue.html, self.issue.text
        )
        html, text = personalize(
            rendered,
            unsubscribe_url=unsubscribe_url(self.settings, token),
            name=subscriber.name,
            email=subscriber.email,
        )
        return html, text, token

    def message(self, subscriber: Subscriber) -> tuple[str, bytes]:
        """(Message-ID, the message as it goes on the wire)."""
        return self.template.render(subscriber)


class _Unrecorded:
    """A message the server accepted whose SENT is not written yet (one per connection).

    It is written in the same transaction as the next message's SENDING, or flushed
    before the sender waits or stops, so each message costs one ledger write, and a
    crash still leaves at most one row per connection whose fate is unknown.
    """

    def __init__(self, store: Store):
        self.store = store
        self.item: tuple[Claim, str] | None = None

    def take(self) -> tuple[Claim, str] | None:
        item, self.item = self.item, None
        return item

    def flush(self, now: dt.datetime) -> None:
        item = self.take()
        if item is not None:
            self.store.mark_sent(item[0], item[1], now=now)


class _Budget:
    """How many more messages this run may send (``send --limit``)."""

    def __init__(self, limit: int | None):
        self.left = limit
        self.lock = threading.Lock()

    def take(self) -> bool:
        if self.left is None:
            return True
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def deliver(
    store: Store,
    settings: Settings,
    issue: IssueRecord,
    *,
    transport_factory: Callable[[], Transport],
    now: Callable[[], dt.datetime],
    connections: int = 1,
    limit: int | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[DeliveryStatus], None] | None = None,
    backoff: float | None = None,
    lease: float | None = None,
) -> DeliveryReport:
    """Send every QUEUED row of ``issue``.

    Alone (``lease`` None) the caller holds the send lock exclusively and has run
    recovery.  As one of several workers (``lease`` in seconds) it also takes over rows
    whose holder stopped renewing them for ``lease`` seconds, renews its own claims
    meanwhile, and keeps going until no row of the issue is left unfinished.
    """
    backoff = BACKOFF if backoff is None else backoff
    secret = signing_secret(settings)
    mailer = IssueMailer(settings, issue, secret, now())
    report = DeliveryReport(issue.issue_date)
    stop = stop or threading.Event()
    budget = _Budget(limit)
    rate = RateLimiter(settings.smtp.rate_limit if settings.delivery.transport == "smtp" else 0)
    lock = threading.Lock()
    # Sender n of this run is "<run_id>n": the rows it settles keep that name, so the
    # run's own counts can be read back from the ledger.
    base_worker = f"{worker_id()}:{secrets.token_hex(3)}"
    run_id = f"{base_worker}:"
    started = time.monotonic()

    def count(status: DeliveryStatus) -> None:
        # Live progress only; the report's counts are read back from the ledger.
        if progress:
            progress(status)

    def halt(reason: str) -> None:
        with lock:
            report.stopped = report.stopped or reason
        stop.set()

    def send_one(transport: Transport, claim: Claim, unrecorded: _Unrecorded) -> None:
        sub = claim.subscriber
        if sub.status is not SubscriberStatus.ACTIVE:
            store.mark_done(
                claim, DeliveryStatus.SKIPPED, f"subscriber is {sub.status.value}", now=now()
            )
            count(DeliveryStatus.SKIPPED)
            return
        mid, data = mailer.message(sub)
        doubt = claim.in_doubt
        for attempt in range(1, MAX_ATTEMPTS + 1):
            rate.acquire()
            try:
                reply = transport.send(
                    settings.list.from_address,
                    ascii_email(sub.email),
                    data,
                    lambda: store.mark_sending(claim, mid, now=now(), sent=unrecorded.take()),
                )
            except ClaimLost as e:
                # Our lease ran out (a long stall) and another worker has the row now.
                log.warning("%s; not sent by this worker", e)
                return
            except SendError as e:
                if e.permanent:
                    store.mark_done(claim, DeliveryStatus.FAILED, e.reason, now=now())
                    if e.bounce:
                        store.set_subscriber_status(sub.id, SubscriberStatus.BOUNCED, now=now())
                    count(DeliveryStatus.FAILED)
                    return
                # A connection lost in DATA may have delivered: the resend is in doubt.
                doubt = doubt or (e.stage == "data" and e.code is None)
                if attempt == MAX_ATTEMPTS or stop.is_set():
                    if e.stage == "connect":
                        store.requeue(claim, now=now(), in_doubt=doubt)
                        raise TransportUnavailable(e.reason) from e
                    store.mark_done(
                        claim, DeliveryStatus.DEFERRED, e.reason, now=now(), in_doubt=doubt
                    )
                    count(DeliveryStatus.DEFERRED)
                    return
                if e.stage == "data":  # the row was in flight: written back, with the doubt
                    store.mark_retry(claim, e.reason, now=now(), in_doubt=doubt)
                delay = backoff * 2 ** (attempt - 1) * (0.5 + random.random())  # jitter
                log.info("%s: %s; retrying in %.1f s", sub.email, e.reason, delay)
                unrecorded.flush(now())
                if stop.wait(delay):
                    store.requeue(claim, now=now(), in_doubt=doubt)
                    return
            else:
                # Recorded with the next message's SENDING, or flushed: one write a message.
                unrecorded.item = (claim, reply)
                count(DeliveryStatus.SENT)
                return

    def open_with_retries(transport: Transport) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                transport.open()
                return
            except SendError as e:
                log.info("%s; %d attempt(s) left", e.reason, MAX_ATTEMPTS - attempt)
                if attempt == MAX_ATTEMPTS or stop.wait(backoff * 2 ** (attempt - 1)):
                    raise TransportUnavailable(e.reason) from e

    def run(n: int) -> None:
        me = f"{base_worker}:{n}"
        transport = transport_factory()
        unrecorded = _Unrecorded(store)
        try:
            if stop.is_set():  # asked to stop before delivery began (during the fetch)
                return
            open_with_retries(transport)
            while not stop.is_set():
                claims = store.claim(issue.id, me, BATCH, now=now(), lease=lease)
                if not claims:
                    unrecorded.flush(now())
                    if lease is None or store.unfinished(issue.id) == 0:
                        return
                    # Other workers hold the rest; one of them may die: look again later.
                    stop.wait(min(lease / 4, 1.0))
                    continue
                for i, claim in enumerate(claims):
                    if stop.is_set() or not budget.take():
                        store.release(claims[i:], now=now())
                        if not stop.is_set():
                            halt(f"stopped after --limit {limit}")
                        return
                    try:
                        send_one(transport, claim, unrecorded)
                    except TransportUnavailable:
                        store.release(claims[i + 1 :], now=now())
                        raise
        except TransportUnavailable as e:
            halt(str(e))
        except BaseException as e:  # a bug: stop the others, re-raised below
            crashed.append(e)
            halt(f"a sender crashed: {e!r}")
        finally:
            unrecorded.flush(now())
            transport.close()

    def heartbeat() -> None:
        assert lease is not None
        while not finished.wait(lease / 3):
            for n in range(len(threads)):
                try:
                    store.renew_claims(issue.id, f"{base_worker}:{n}", now=now())
                except Exception:  # a lost renewal is retried next beat; senders renew too
                    log.warning("renewing the claims of sender %d failed", n, exc_info=True)

    crashed: list[BaseException] = []
    finished = threading.Event()
    threads = [
        threading.Thread(target=run, args=(n,), name=f"sender-{n}")
        for n in range(max(1, connections))
    ]
    beat = threading.Thread(target=heartbeat, name="lease-renewal", daemon=True)
    for t in threads:
        t.start()
    if lease is not None:
        beat.start()
    for t in threads:
        t.join()
    finished.set()
    report.elapsed = time.monotonic() - started
    if crashed:
        raise crashed[0]
    report.run = store.delivery_counts(issue.id, by=run_id)
    report.totals = store.delivery_counts(issue.id)
    report.problems = [
        f"{email}: {reply}"
        for email, _status, reply in store.delivery_problems(issue.id, PROBLEMS_SHOWN, by=run_id)
    ]
    if stop.is_set() and not report.stopped and store.unfinished(issue.id):
        report.stopped = "asked to stop (a signal); the rest stays queued"
    return report
