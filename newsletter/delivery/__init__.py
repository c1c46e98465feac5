"""Delivery: mail a stored issue to every queued subscriber, exactly once, through the ledger.

Parallel senders (``smtp.connections`` threads, each with its own connection) claim small
batches of ledger rows, build each subscriber's message from the issue rendered once,
mark the row SENDING just before DATA and SENT (or FAILED / DEFERRED) right after.

A transient failure (a 4xx reply, a dropped connection) never holds up the list: the
message goes to its sender's retry queue with a time before which it is not tried again,
and the connection moves on to the next subscriber.  A message is tried at most
``MAX_ATTEMPTS`` times within one run, the retries ``BACKOFF``, then ``2 x BACKOFF``
seconds apart (with jitter; the first retry after a dropped connection comes at once, on
a new connection), so it is settled, sent or DEFERRED, at most 1.5 x (1 + 2) x BACKOFF
= 2.25 s (the waits at their longest jitter) after its first try, plus the tries
themselves; a run therefore ends at most that long after it has tried its last
subscriber once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import itertools
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
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
from newsletter.lock import worker_alive, worker_gone
from newsletter.models import DeliveryStatus, Subscriber, SubscriberStatus
from newsletter.store import Claim, IssueRecord, Store
from newsletter.store.ledger import ClaimLost

log = logging.getLogger(__name__)

#: Rows one sender claims at a time: small, so a stop leaves little to hand back.
BATCH = 10
#: Attempts per message within one run for transient failures (4xx, dropped connections);
#: also attempts to (re)open a connection.
MAX_ATTEMPTS = 3
#: Seconds before the first retry; doubled each time, with jitter (x 0.5 to 1.5).
BACKOFF = 0.5
#: Seconds between progress lines in the log (INFO: shown with -v, and by the daemon).
PROGRESS_EVERY = 5.0
#: Workers: at most this often a process asks whether the holders of claims are alive.
DEAD_CHECK_EVERY = 1.0
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


@dataclass(order=True)
class _Job:
    """A claimed row waiting for its (next) try; ordered by when it is due."""

    due: float  # time.monotonic() before which it is not tried
    seq: int
    claim: Claim = field(compare=False)
    tries: int = field(default=0, compare=False)  # attempts made in this run
    doubt: bool = field(default=False, compare=False)  # an earlier copy may have arrived


class _ConnectionGone(Exception):
    """This sender's connection cannot be (re)opened; the others may still work."""


class _Run:
    """What the senders of one delivery run share."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        issue: IssueRecord,
        *,
        now: Callable[[], dt.datetime],
        stop: threading.Event,
        limit: int | None,
        lease: float | None,
        backoff: float,
        senders: int,
        progress: Callable[[DeliveryStatus], None] | None,
    ):
        self.store = store
        self.settings = settings
        self.issue = issue
        self.now = now
        self.stop = stop
        self.limit = limit
        self.lease = lease
        self.backoff = backoff
        self.progress = progress
        self.mailer = IssueMailer(settings, issue, signing_secret(settings), now())
        smtp = settings.delivery.transport == "smtp"
        self.rate = RateLimiter(settings.smtp.rate_limit if smtp else 0)
        self.budget = _Budget(limit)
        # Sender n of this run is "<id>:<n>": the rows it settles keep that name, so the
        # run's own counts can be read back from the ledger.
        self.id = f"{worker_id()}:{secrets.token_hex(3)}"
        self.lock = threading.Lock()
        self.stopped: str | None = None
        self.lost: str | None = None  # why a sender's connection gave out
        self.crashed: list[BaseException] = []
        self.live = senders
        self._next_dead_check = 0.0

    def sender_id(self, n: int) -> str:
        return f"{self.id}:{n}"

    def halt(self, reason: str) -> None:
        with self.lock:
            self.stopped = self.stopped or reason
        self.stop.set()

    def settled(self, status: DeliveryStatus) -> None:
        # Live progress only; the report's counts are read back from the ledger.
        if self.progress:
            self.progress(status)

    def take_over_dead(self) -> bool:
        """Workers: queue again the rows of workers known to be dead (their liveness lock,
        :func:`newsletter.lock.worker_alive`, is free), at once rather than after their
        lease; a live worker, even a stalled one, keeps its rows until its lease runs out.
        True when rows came back."""
        with self.lock:
            if time.monotonic() < self._next_dead_check:
                return False
            self._next_dead_check = time.monotonic() + DEAD_CHECK_EVERY
        took = False
        for holder in sorted(self.store.claim_holders(self.issue.id) - {self.id}):
            if not worker_gone(self.store.engine, holder):
                continue
            back = self.store.recover(self.issue.id, now=self.now(), holder=holder)
            if back.requeued or back.in_doubt:
                took = True
                log.warning(
                    "worker %s is gone: %d of its row(s) queued again, %d of them in doubt "
                    "(they were in DATA when it died)",
                    holder,
                    back.requeued + back.in_doubt,
                    back.in_doubt,
                )
        return took

    def leave(self, n: int, lost: str | None) -> None:
        """Sender ``n`` is done; ``lost``: because its connection could not be reopened.
        The run stops when that happens to the last sender still at work."""
        with self.lock:
            self.live -= 1
            last = self.live == 0
            if lost:
                self.lost = lost
        if lost and last:
            self.halt(lost)
        elif lost:
            log.warning(
                "connection %d: %s; going on with the other connections (is smtp.connections "
                "more than the server allows?)",
                n,
                lost,
            )


class _Sender:
    """One connection: claims rows, sends them, keeps its transient failures for later."""

    def __init__(self, run: _Run, n: int, transport: Transport):
        self.run_ = run
        self.n = n
        self.me = run.sender_id(n)
        self.transport = transport
        self.unrecorded = _Unrecorded(run.store)
        self.fresh: deque[Claim] = deque()  # claimed, not tried yet
        self.retries: list[_Job] = []  # a heap: the next due first
        self.seq = itertools.count()

    def run(self) -> None:
        r = self.run_
        lost: str | None = None
        try:
            if r.stop.is_set():  # asked to stop before delivery began (during the fetch)
                return
            self._connect()
            while (job := self._next()) is not None:
                self._send(job)
        except _ConnectionGone as e:
            lost = str(e)
        except TransportUnavailable as e:
            r.halt(str(e))
        except BaseException as e:  # a bug: stop the others, re-raised by deliver()
            r.crashed.append(e)
            r.halt(f"a sender crashed: {e!r}")
        finally:
            try:
                self._hand_back()
            finally:
                r.leave(self.n, lost)

    # ------------------------------------------------------------------ the queue

    def _next(self) -> _Job | None:
        """The next row to try: a retry that is due, else a fresh claim; waits for a retry
        that is not due yet when nothing else is left.  None: this sender is done."""
        r = self.run_
        while not r.stop.is_set():
            if self.retries and self.retries[0].due <= time.monotonic():
                return heapq.heappop(self.retries)
            if self.fresh:
                if not r.budget.take():
                    r.halt(f"stopped after --limit {r.limit}")
                    return None
                claim = self.fresh.popleft()
                return _Job(0.0, next(self.seq), claim, 0, claim.in_doubt)
            claims = r.store.claim(r.issue.id, self.me, BATCH, now=r.now(), lease=r.lease)
            if claims:
                self.fresh.extend(claims)
                continue
            self.unrecorded.flush(r.now())  # before waiting: one unrecorded row at most
            if self.retries:
                r.stop.wait(max(0.0, self.retries[0].due - time.monotonic()))
                continue
            if r.lease is None or r.store.unfinished(r.issue.id) == 0:
                return None
            # Other workers hold the rest: take over a dead one's, else look again soon.
            if not r.take_over_dead():
                r.stop.wait(min(r.lease / 4, 1.0))
        return None

    def _hand_back(self) -> None:
        """Record the last accepted message and give back every row not settled."""
        r = self.run_
        try:
            self.unrecorded.flush(r.now())
            rest = list(self.fresh) + [job.claim for job in self.retries]
            if rest:
                # CLAIMED rows go back to QUEUED; an in-doubt mark stays with the row.
                r.store.release(rest, now=r.now())
        finally:
            self.fresh.clear()
            self.retries.clear()
            self.transport.close()

    # ------------------------------------------------------------------ sending

    def _connect(self) -> None:
        """Open the connection, retrying transient failures; :class:`_ConnectionGone`
        when it cannot be opened (the server cannot be reached, or refuses more
        connections), :class:`TransportUnavailable` when nothing can be sent at all."""
        r = self.run_
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                self.transport.open()
                return
            except SendError as e:
                if attempt == MAX_ATTEMPTS:
                    raise _ConnectionGone(e.reason) from e
                log.info("%s; %d attempt(s) left", e.reason, MAX_ATTEMPTS - attempt)
                self.unrecorded.flush(r.now())
                if r.stop.wait(r.backoff * 2 ** (attempt - 1)):
                    return

    def _send(self, job: _Job) -> None:
        r = self.run_
        claim, sub = job.claim, job.claim.subscriber
        if sub.status is not SubscriberStatus.ACTIVE:
            r.store.mark_done(
                claim, DeliveryStatus.SKIPPED, f"subscriber is {sub.status.value}", now=r.now()
            )
            r.settled(DeliveryStatus.SKIPPED)
            return
        mid, data = r.mailer.message(sub)
        r.rate.acquire()
        try:
            reply = self.transport.send(
                r.settings.list.from_address,
                sub.email,  # the transport writes it for the wire (A-label domain)
                data,
                lambda: r.store.mark_sending(claim, mid, now=r.now(), sent=self.unrecorded.take()),
            )
        except ClaimLost as e:
            # Our lease ran out (a long stall) and another worker has the row now.
            log.warning("%s; not sent by this worker", e)
        except SendError as e:
            if e.stage == "connect":
                # The connection could not be reopened: not this message's failure.
                heapq.heappush(self.retries, dataclasses.replace(job, due=0.0))
                self._connect()
            else:
                self._failed(job, e)
        else:
            # Recorded with the next message's SENDING, or flushed: one write a message.
            self.unrecorded.item = (claim, reply)
            r.settled(DeliveryStatus.SENT)

    def _failed(self, job: _Job, e: SendError) -> None:
        r = self.run_
        claim, sub = job.claim, job.claim.subscriber
        tries = job.tries + 1
        dropped = e.code is None  # the connection was lost: no reply
        # A connection lost in DATA may have delivered: every later copy is in doubt.
        doubt = job.doubt or (dropped and e.stage == "data")
        if e.permanent:
            r.store.mark_done(claim, DeliveryStatus.FAILED, e.reason, now=r.now(), in_doubt=doubt)
            if e.bounce:
                r.store.set_subscriber_status(sub.id, SubscriberStatus.BOUNCED, now=r.now())
            r.settled(DeliveryStatus.FAILED)
            return
        if tries >= MAX_ATTEMPTS:
            r.store.mark_done(claim, DeliveryStatus.DEFERRED, e.reason, now=r.now(), in_doubt=doubt)
            r.settled(DeliveryStatus.DEFERRED)
            return
        if e.stage == "data":  # the row was in flight: written back, with the doubt
            r.store.mark_retry(claim, e.reason, now=r.now(), in_doubt=doubt)
        # A new connection is the remedy for a dropped one; a 4xx asks for time.
        delay = 0.0 if dropped and tries == 1 else r.backoff * 2 ** (tries - 1)
        delay *= 0.5 + random.random()  # jitter: retries of many rows spread out
        heapq.heappush(
            self.retries, _Job(time.monotonic() + delay, next(self.seq), claim, tries, doubt)
        )
        log.info("%s: %s; retrying in %.1f s", sub.email, e.reason, delay)


class _Progress:
    """A log line every PROGRESS_EVERY seconds while a run sends, for whoever reads the log
    rather than a terminal: the issue's counts from the ledger, the rate since the run
    began and the time left at that rate.  The fields are also the record's ``fields``
    (the CLI's JSON log format makes them keys)."""

    def __init__(self, store: Store, issue: IssueRecord):
        self.store = store
        self.issue = issue
        self.started = time.monotonic()
        self.settled0 = self._settled(store.delivery_counts(issue.id))

    @staticmethod
    def _settled(counts: dict[str, int]) -> int:
        return counts["recipients"] - counts["pending"]

    def log(self) -> None:
        c = self.store.delivery_counts(self.issue.id)
        elapsed = time.monotonic() - self.started
        rate = (self._settled(c) - self.settled0) / elapsed if elapsed > 0 else 0.0
        eta = round(c["pending"] / rate) if rate > 0 else None
        fields = {
            "issue": self.issue.issue_date.isoformat(),
            "recipients": c["recipients"],
            "sent": c["sent"],
            "failed": c["failed"],
            "deferred": c["deferred"],
            "pending": c["pending"],
            "in_doubt": c["in_doubt"],
            "rate": round(rate, 1),
            "eta_seconds": eta,
        }
        log.info(
            "issue %s: %d of %d sent, %d failed, %d deferred, %d to go; %.1f msg/s, ETA %s",
            self.issue.issue_date,
            c["sent"],
            c["recipients"],
            c["failed"],
            c["deferred"],
            c["pending"],
            rate,
            _duration(eta),
            extra={"fields": fields},
        )


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    if hours:
        return f"{hours} h {m:02d} min"
    return f"{m} min {s:02d} s" if m else f"{s} s"


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
    stop = stop or threading.Event()
    n = max(1, connections)
    run = _Run(
        store,
        settings,
        issue,
        now=now,
        stop=stop,
        limit=limit,
        lease=lease,
        backoff=BACKOFF if backoff is None else backoff,
        senders=n,
        progress=progress,
    )
    started = time.monotonic()
    finished = threading.Event()

    def heartbeat() -> None:
        """Workers: renew this worker's claims every lease / 3, and take over the rows of
        dead workers meanwhile (not only once this one runs out of work)."""
        assert lease is not None
        renew_at = time.monotonic() + lease / 3
        while not finished.wait(min(lease / 3, 5.0)):
            try:
                run.take_over_dead()
            except Exception:  # tried again next beat; idle senders try too
                log.warning("looking for dead workers failed", exc_info=True)
            if time.monotonic() < renew_at:
                continue
            renew_at = time.monotonic() + lease / 3
            for i in range(n):
                try:
                    store.renew_claims(issue.id, run.sender_id(i), now=now())
                except Exception:  # a lost renewal is retried next beat; senders renew too
                    log.warning("renewing the claims of sender %d failed", i, exc_info=True)

    progress_log = _Progress(store, issue)

    def ticker() -> None:
        while not finished.wait(PROGRESS_EVERY):
            try:
                progress_log.log()
            except Exception:  # a progress line is not worth a failed run
                log.debug("progress line failed", exc_info=True)

    senders = [_Sender(run, i, transport_factory()) for i in range(n)]
    threads = [threading.Thread(target=s.run, name=f"sender-{s.n}") for s in senders]
    beat = threading.Thread(target=heartbeat, name="lease-renewal", daemon=True)
    # A worker says it is alive for as long as it may hold claims (see take_over_dead).
    with worker_alive(store.engine, run.id) if lease is not None else nullcontext():
        for t in threads:
            t.start()
        threading.Thread(target=ticker, name="progress", daemon=True).start()
        if lease is not None:
            beat.start()
        for t in threads:
            t.join()
        finished.set()
    if run.crashed:
        raise run.crashed[0]
    report = DeliveryReport(issue.issue_date, elapsed=time.monotonic() - started)
    report.run = store.delivery_counts(issue.id, by=f"{run.id}:")
    report.totals = store.delivery_counts(issue.id)
    report.problems = [
        f"{email}: {reply}"
        for email, _status, reply in store.delivery_problems(
            issue.id, PROBLEMS_SHOWN, by=f"{run.id}:"
        )
    ]
    report.stopped = run.stopped
    left = report.totals["pending"]
    if left and not report.stopped:
        if stop.is_set():
            report.stopped = "asked to stop (a signal); the rest stays queued"
        else:  # senders gave out one by one while others had nothing left to claim
            report.stopped = f"{left} row(s) left unsent: {run.lost or 'the senders ended'}"
    return report
