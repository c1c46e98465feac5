"""Delivery: mail a stored issue to every queued subscriber, exactly once, through the ledger.

Parallel senders (``smtp.connections`` threads, each with its own connection,
:mod:`newsletter.delivery.sender`) claim small batches of ledger rows, build each
subscriber's message from the issue rendered once (:mod:`newsletter.delivery.message`),
mark the row SENDING just before DATA and SENT (or FAILED / DEFERRED) right after.  What
happens to a row after each try (retry, defer, fail, bounce, in doubt, requeue) is decided
by :mod:`newsletter.delivery.policy`, which does no I/O; the senders only carry it out.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

from newsletter.config import Settings
from newsletter.delivery.message import IssueMailer
from newsletter.delivery.sender import Run, Sender
from newsletter.delivery.transport import Transport
from newsletter.errors import ConfigError
from newsletter.lock import worker_alive
from newsletter.models import DeliveryCounts, DeliveryStatus, IssueRecord
from newsletter.store import Store

__all__ = ["DEMO_SECRET", "DeliveryReport", "IssueMailer", "deliver", "signing_secret"]

log = logging.getLogger(__name__)

#: Seconds between progress lines in the log (INFO: shown with -v, and by the daemon).
PROGRESS_EVERY = 5.0
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
    run: DeliveryCounts = field(default_factory=DeliveryCounts)
    totals: DeliveryCounts = field(default_factory=DeliveryCounts)
    elapsed: float = 0.0
    stopped: str | None = None  # why the run stopped before the queue was empty
    problems: list[str] = field(default_factory=list)  # the first PROBLEMS_SHOWN of this run

    @property
    def sent(self) -> int:
        return self.run.sent

    @property
    def failed(self) -> int:
        return self.run.failed

    @property
    def deferred(self) -> int:
        return self.run.deferred

    @property
    def skipped(self) -> int:
        return self.run.skipped

    @property
    def in_doubt(self) -> int:
        """Rows this run sent (or settled) although an earlier attempt may have arrived."""
        return self.run.in_doubt

    @property
    def problems_total(self) -> int:
        return self.failed + self.deferred

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.deferred + self.skipped

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        """This run's counts, then the issue's: the line `newsletter send` prints and the
        daemon logs."""
        t = self.totals
        return (
            f"sent {self.sent}, failed {self.failed}, deferred {self.deferred}, "
            f"skipped {self.skipped}, in doubt {self.in_doubt} in {self.elapsed:.1f}s "
            f"({self.rate:.1f}/s); issue total: {t.sent} of {t.recipients} sent, "
            f"{t.failed} failed, {t.deferred} deferred, {t.pending} pending, "
            f"{t.in_doubt} in doubt"
        )


class _Progress:
    """A log line every PROGRESS_EVERY seconds while a run sends, for whoever reads the log
    rather than a terminal: the issue's counts from the ledger, the rate since the run
    began and the time left at that rate.  The fields are also the record's ``fields``
    (the CLI's JSON log format makes them keys)."""

    def __init__(self, store: Store, issue: IssueRecord):
        self.store = store
        self.issue = issue
        self.started = time.monotonic()
        self.settled0 = store.delivery_counts(issue.id).settled

    def log(self) -> None:
        c = self.store.delivery_counts(self.issue.id)
        elapsed = time.monotonic() - self.started
        rate = (c.settled - self.settled0) / elapsed if elapsed > 0 else 0.0
        eta = round(c.pending / rate) if rate > 0 else None
        fields = {
            "issue": self.issue.issue_date.isoformat(),
            "edition": self.issue.edition.value,
            "recipients": c.recipients,
            "sent": c.sent,
            "failed": c.failed,
            "deferred": c.deferred,
            "pending": c.pending,
            "in_doubt": c.in_doubt,
            "rate": round(rate, 1),
            "eta_seconds": eta,
        }
        log.info(
            "issue %s: %d of %d sent, %d failed, %d deferred, %d to go; %.1f msg/s, ETA %s",
            self.issue.name,
            c.sent,
            c.recipients,
            c.failed,
            c.deferred,
            c.pending,
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
    run = Run(
        store,
        settings,
        issue,
        # Dated (and DKIM-signed) when the issue was made, not when this run started: a
        # resend after a crash, or a late subscriber's copy, is the same message, byte for
        # byte.
        IssueMailer(
            settings, issue, signing_secret(settings), issue.created_at, store.variant_by_id
        ),
        now=now,
        stop=stop,
        limit=limit,
        lease=lease,
        senders=n,
        progress=progress,
    )
    started = time.monotonic()
    finished = threading.Event()
    senders = [Sender(run, i, transport_factory()) for i in range(n)]
    threads = [threading.Thread(target=s.run, name=f"sender-{s.n}") for s in senders]
    progress_log = _Progress(store, issue)
    # A worker says it is alive for as long as it may hold claims (see take_over_dead).
    with worker_alive(store.engine, run.id) if lease is not None else nullcontext():
        for t in threads:
            t.start()
        _every(PROGRESS_EVERY, finished, progress_log.log, "progress")
        if lease is not None:
            _every(min(lease / 3, 5.0), finished, _Heartbeat(run, lease, n), "lease-renewal")
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
    left = report.totals.pending
    if left and not report.stopped:
        if stop.is_set():
            report.stopped = "asked to stop (a signal); the rest stays queued"
        else:  # senders gave out one by one while others had nothing left to claim
            report.stopped = f"{left} row(s) left unsent: {run.lost or 'the senders ended'}"
    return report


class _Heartbeat:
    """Workers: renew this worker's claims every lease / 3, and take over the rows of dead
    workers meanwhile (not only once this one runs out of work)."""

    def __init__(self, run: Run, lease: float, senders: int):
        self.run = run
        self.lease = lease
        self.senders = senders
        self.renew_at = time.monotonic() + lease / 3

    def __call__(self) -> None:
        run = self.run
        try:
            run.take_over_dead()
        except Exception:  # tried again next beat; idle senders try too
            log.warning("looking for dead workers failed", exc_info=True)
        if time.monotonic() < self.renew_at:
            return
        self.renew_at = time.monotonic() + self.lease / 3
        for i in range(self.senders):
            try:
                run.store.renew_claims(run.issue.id, run.sender_id(i), now=run.now())
            except Exception:  # a lost renewal is retried next beat; senders renew too
                log.warning("renewing the claims of sender %d failed", i, exc_info=True)


def _every(seconds: float, finished: threading.Event, job: Callable[[], None], name: str) -> None:
    """Run ``job`` every ``seconds`` on a thread of its own until ``finished`` is set; a
    failure is logged and the next beat comes all the same."""

    def loop() -> None:
        while not finished.wait(seconds):
            try:
                job()
            except Exception:
                log.debug("%s failed", name, exc_info=True)

    threading.Thread(target=loop, name=name, daemon=True).start()
