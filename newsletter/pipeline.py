"""The jobs: one function per job, called by the CLI and (later) by the daemon alike.

Each job takes the settings, an open store and ``now`` (read once, by the caller), so the
same call with the same inputs does the same thing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.config import Settings
from newsletter.errors import ConfigError, NewsletterError
from newsletter.models import (
    DeliveryStatus,
    Digest,
    FetchStatus,
    IssueStatus,
    Paper,
    SourceState,
    Subscriber,
    SubscriberStatus,
)
from newsletter.schedule import zone
from newsletter.sources import SourceResult, failed_result, fetch_source, unexpected
from newsletter.sources.http import Fetcher, default_user_agent
from newsletter.store import IssueRecord, Recovered, Store

if TYPE_CHECKING:
    from newsletter.delivery import DeliveryReport
    from newsletter.delivery.transport import Transport
    from newsletter.render import RenderedIssue

log = logging.getLogger(__name__)


def issue_date_for(now: dt.datetime, settings: Settings) -> dt.date:
    """Today's date where the operator is: the date an issue sent now carries."""
    return now.astimezone(zone(settings.schedule)).date()


# --------------------------------------------------------------------------- fetch


@dataclass(frozen=True, slots=True)
class SourceRun:
    """One source's line in the fetch report."""

    result: SourceResult
    new: int = 0  # papers stored for the first time
    updated: int = 0  # known papers enriched (signals merged, gaps filled)

    @property
    def total(self) -> int:
        return len(self.result.papers)


@dataclass(frozen=True, slots=True)
class FetchReport:
    runs: tuple[SourceRun, ...]

    @property
    def failed(self) -> tuple[SourceRun, ...]:
        return tuple(r for r in self.runs if r.result.failed)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def all_failed(self) -> bool:
        active = [r for r in self.runs if r.result.status is not FetchStatus.DISABLED]
        return bool(active) and all(r.result.failed for r in active)

    @property
    def new(self) -> int:
        return sum(r.new for r in self.runs)


def run_fetch(
    settings: Settings,
    store: Store,
    *,
    now: dt.datetime,
    only: Sequence[str] = (),
    fetcher: Fetcher | None = None,
    on_source: Callable[[SourceRun], None] | None = None,
) -> FetchReport:
    """Pull every configured source (or those named in ``only``) into the store."""
    sources = settings.sources
    if only:
        unknown = sorted(set(only) - {s.name for s in sources})
        if unknown:
            raise ConfigError(
                f"no source named {', '.join(map(repr, unknown))}; configured: "
                + (", ".join(s.name for s in sources) or "none"),
                file=settings.config_path or None,
            )
        sources = tuple(s for s in sources if s.name in only)
    if fetcher is None:
        ua = settings.fetch.user_agent or default_user_agent(
            settings.list.base_url, settings.list.contact or settings.list.from_address
        )
        fetcher = Fetcher(settings.fetch, user_agent=ua)
    issue_date = issue_date_for(now, settings)
    runs = []
    for source in sources:
        previous = store.source_state(source.name)
        started = time.monotonic()
        result = fetch_source(source, previous, fetcher, now=now, issue_date=issue_date)
        try:
            upserted = store.upsert_papers(result.papers, seen_at=now) if result.papers else None
        except Exception as e:
            # The source's own transaction was rolled back; the other sources are stored.
            # The parser makes every value storable, so this is a bug: traceback to the log.
            log.exception("source %s: its papers could not be stored", source.name)
            reason = unexpected("its papers could not be stored", e)
            result = failed_result(
                source.name, result.url, reason, http_status=result.http_status, started=started
            )
            upserted = None
        run = SourceRun(
            result,
            new=upserted.new if upserted else 0,
            updated=upserted.updated if upserted else 0,
        )
        if result.status is not FetchStatus.DISABLED:
            store.save_source_state(_next_state(previous, run, now))
        log.info(
            "fetched %s: %s, %d new of %d%s",
            source.name,
            result.status.value,
            run.new,
            run.total,
            f" ({result.error})" if result.error else "",
        )
        if on_source:
            on_source(run)
        runs.append(run)
    return FetchReport(tuple(runs))


def _next_state(prev: SourceState | None, run: SourceRun, now: dt.datetime) -> SourceState:
    r = run.result
    base = SourceState(
        name=r.name,
        url=r.url,
        last_status=r.status,
        last_http_status=r.http_status,
        last_attempt_at=now,
    )
    if r.failed:
        # Keep the validators of the last good fetch: the next try can still get a 304.
        return dataclasses.replace(
            base,
            etag=prev.etag if prev else None,
            last_modified=prev.last_modified if prev else None,
            last_error=r.error,
            last_success_at=prev.last_success_at if prev else None,
            last_new=0,
            last_total=0,
        )
    return dataclasses.replace(
        base,
        etag=r.etag,
        last_modified=r.last_modified,
        last_success_at=now,
        last_new=run.new,
        last_total=run.total,
    )


# --------------------------------------------------------------------------- digest


def day_window(issue_date: dt.date, settings: Settings) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in UTC of first-seen times that count for the issue of ``issue_date``.

    A paper counts when it was first seen in the ``fetch.window_days`` days up to the end of
    the issue date (operator's time zone) and no earlier issue carried it.
    """
    tz = zone(settings.schedule)
    end = dt.datetime.combine(issue_date + dt.timedelta(days=1), dt.time(), tz)
    start = end - dt.timedelta(days=max(1, settings.fetch.window_days))
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def papers_for_issue(store: Store, settings: Settings, issue_date: dt.date) -> list[Paper]:
    since, until = day_window(issue_date, settings)
    return store.papers(since=since, until=until, not_issued_before=issue_date)


def build_issue_digest(store: Store, settings: Settings, issue_date: dt.date) -> Digest:
    """The digest for ``issue_date`` from what the store holds (no fetching)."""
    from newsletter.topics import build_digest

    papers = papers_for_issue(store, settings, issue_date)
    sources = tuple(sorted({p.source for p in papers if p.source}))
    return build_digest(papers, issue_date=issue_date, settings=settings.topics, sources=sources)


# --------------------------------------------------------------------------- send


class AllSourcesFailed(NewsletterError):
    """Every source failed: that is a failure to report, not an empty day."""


@dataclass
class SendReport:
    issue_date: dt.date
    # "sent", "deferred" (settled but for deferred rows), "already-sent", "partial",
    # "stopped", "empty", "dry-run"
    outcome: str
    fetch: FetchReport | None = None
    issue: IssueRecord | None = None
    delivery: DeliveryReport | None = None
    recovered: Recovered | None = None
    queued: int = 0  # rows added to the ledger by this run
    dry_run_messages: int = 0
    dry_run_bytes: int = 0


def digest_papers(digest: Digest) -> list[tuple[str, str]]:
    """(paper id, topic label) for every paper the digest carries, in order."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    topics = ([digest.watched] if digest.watched else []) + list(digest.topics)
    for topic in topics:
        for paper in [p.paper for p in topic.picks] + list(topic.rest):
            if paper.id not in seen:
                seen.add(paper.id)
                out.append((paper.id, topic.label))
    return out


def render_for_date(
    store: Store, settings: Settings, issue_date: dt.date
) -> tuple[Digest, RenderedIssue]:
    """Build and render the digest for ``issue_date`` from what the store holds."""
    from newsletter.links import issue_url
    from newsletter.render import render_issue

    digest = build_issue_digest(store, settings, issue_date)
    return digest, render_issue(digest, settings, web_url=issue_url(settings, issue_date))


def fetch_or_fail(
    settings: Settings,
    store: Store,
    *,
    now: dt.datetime,
    on_source: Callable[[SourceRun], None] | None = None,
) -> FetchReport | None:
    """Fetch before building an issue; :class:`AllSourcesFailed` if no source answered."""
    if not settings.sources:
        return None
    report = run_fetch(settings, store, now=now, on_source=on_source)
    if report.all_failed:
        raise AllSourcesFailed(
            "every source failed, so there is no issue to send: "
            + "; ".join(f"{r.result.name}: {r.result.error}" for r in report.failed)
        )
    return report


def prepare_issue(
    settings: Settings,
    store: Store,
    issue_date: dt.date,
    *,
    now: dt.datetime,
    fetch: bool = True,
    on_source: Callable[[SourceRun], None] | None = None,
) -> tuple[IssueRecord | None, FetchReport | None]:
    """The stored issue for ``issue_date``, fetching, clustering and rendering it if new.

    An issue that exists already is returned as it is (a resume sends the same bytes).
    ``None`` means there is nothing to send (no new papers and ``on_empty = "skip"``).
    """
    existing = store.issue(issue_date)
    if existing is not None:
        return existing, None
    report = None
    if fetch:
        report = fetch_or_fail(settings, store, now=now, on_source=on_source)
    digest, rendered = render_for_date(store, settings, issue_date)
    if digest.is_empty and settings.schedule.on_empty == "skip":
        log.info("issue %s: no new papers; skipped (schedule.on_empty = skip)", issue_date)
        return None, report
    issue = store.save_issue(
        issue_date,
        status=IssueStatus.READY,
        subject=rendered.subject,
        preheader=rendered.preheader,
        html=rendered.html,
        text=rendered.text,
        papers=digest_papers(digest),
        now=now,
    )
    log.info(
        "issue %s: %d papers in %d topics, rendered",
        issue_date,
        digest.paper_count,
        len(digest.topics),
    )
    return issue, report


def run_send(
    settings: Settings,
    store: Store,
    *,
    issue_date: dt.date,
    now: Callable[[], dt.datetime],
    fetch: bool = True,
    retry_failed: bool = False,
    limit: int | None = None,
    worker: bool = False,
    stop: threading.Event | None = None,
    on_source: Callable[[SourceRun], None] | None = None,
    progress: Callable[[DeliveryStatus], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    transport_factory: Callable[[], Transport] | None = None,
) -> SendReport:
    """Fetch → topics → render → deliver the issue of ``issue_date``, or resume it.

    Alone, it holds the send lock exclusively throughout: another sender gets
    :class:`LockHeld` at once, and rows a dead sender left are taken back immediately.
    As a ``worker`` it holds the lock shared with other workers (on this machine or, with
    PostgreSQL, others): the issue is prepared by whichever worker comes first, then all
    deliver it together, each taking over rows a dead worker has not renewed for
    ``delivery.lease_seconds``.
    """
    from newsletter.delivery import deliver, signing_secret
    from newsletter.delivery.transport import make_transport_factory
    from newsletter.lock import hold_lock

    signing_secret(settings)  # fail before any work when the key is missing
    if transport_factory is None:  # also fails before any work: a login without password
        outbox = str(Path(settings.delivery.outbox_dir) / issue_date.isoformat())
        transport_factory = make_transport_factory(settings, outbox)
    with hold_lock(store.engine, "send", shared=worker):
        with hold_lock(store.engine, "prepare", wait=True):
            issue, fetched = prepare_issue(
                settings, store, issue_date, now=now(), fetch=fetch, on_source=on_source
            )
            if issue is None:
                return SendReport(issue_date, "empty", fetch=fetched)
            recovered = Recovered() if worker else store.recover(issue.id, now=now())
            if recovered.in_doubt or recovered.requeued:
                log.warning(
                    "issue %s: resuming after an interrupted send: %d in doubt, %d requeued",
                    issue_date,
                    recovered.in_doubt,
                    recovered.requeued,
                )
            if retry_failed:
                store.requeue_deferred(issue.id, now=now())
            purged = store.purge_pending(now=now())
            if purged:
                log.info("deleted %d web sign-up(s) never confirmed", purged)
            queued = store.queue_deliveries(issue.id, now=now())
            if issue.status is not IssueStatus.READY and store.unfinished(issue.id):
                # Rows to send again (new subscribers, --retry-failed): not settled now.
                store.set_issue_status(issue.id, IssueStatus.READY, now=now())
        pending = store.delivery_counts(issue.id)[DeliveryStatus.QUEUED.value]
        if on_start:
            on_start(pending if limit is None else min(pending, limit))
        delivery = deliver(
            store,
            settings,
            issue,
            transport_factory=transport_factory,
            now=now,
            connections=settings.smtp.connections if settings.delivery.transport == "smtp" else 1,
            limit=limit,
            stop=stop,
            progress=progress,
            lease=settings.delivery.lease_seconds if worker else None,
        )
        if store.unfinished(issue.id) == 0:
            # Deferred rows can still go out (--retry-failed): the issue is not "sent" yet.
            deferred = delivery.totals.get(DeliveryStatus.DEFERRED.value, 0)
            status = IssueStatus.DEFERRED if deferred else IssueStatus.SENT
            store.set_issue_status(issue.id, status, now=now())
            if deferred:
                outcome = "deferred"
            else:
                outcome = "sent" if delivery.done or queued else "already-sent"
        else:
            outcome = "stopped" if delivery.stopped else "partial"
        log.info(
            "issue %s: sent %d, failed %d, deferred %d, in doubt %d",
            issue_date,
            delivery.sent,
            delivery.failed,
            delivery.deferred,
            delivery.in_doubt,
        )
        return SendReport(
            issue_date,
            outcome,
            fetch=fetched,
            issue=issue,
            delivery=delivery,
            recovered=recovered,
            queued=queued,
        )


def stored_or_draft(
    store: Store, settings: Settings, issue_date: dt.date, *, now: dt.datetime, fetch: bool = False
) -> IssueRecord:
    """The stored issue, else one rendered now (after fetching, with ``fetch``) and not
    stored (id 0): for looking and test copies, not for sending."""
    issue = store.issue(issue_date)
    if issue is not None:
        return issue
    if fetch:
        fetch_or_fail(settings, store, now=now)
    digest, rendered = render_for_date(store, settings, issue_date)
    return IssueRecord(
        id=0,
        issue_date=issue_date,
        status=IssueStatus.READY,
        subject=rendered.subject,
        preheader=rendered.preheader,
        html=rendered.html,
        text=rendered.text,
        paper_count=digest.paper_count,
        created_at=now,
        updated_at=now,
    )


def dry_run(
    settings: Settings, store: Store, *, issue_date: dt.date, now: dt.datetime, fetch: bool = False
) -> SendReport:
    """Build every subscriber's message for ``issue_date`` and send none; nothing is stored."""
    from newsletter.delivery import IssueMailer, signing_secret

    issue = stored_or_draft(store, settings, issue_date, now=now, fetch=fetch)
    if issue.paper_count == 0 and issue.id == 0 and settings.schedule.on_empty == "skip":
        return SendReport(issue_date, "empty")
    mailer = IssueMailer(settings, issue, signing_secret(settings), now)
    n = size = 0
    for sub in store.iter_subscribers(SubscriberStatus.ACTIVE):
        n += 1
        size += len(mailer.message(sub).data)
    return SendReport(issue_date, "dry-run", issue=issue, dry_run_messages=n, dry_run_bytes=size)


def send_test_copy(
    settings: Settings,
    store: Store,
    address: str,
    *,
    issue_date: dt.date,
    now: dt.datetime,
    fetch: bool = False,
    transport_factory: Callable[[], Transport] | None = None,
) -> str:
    """Mail the issue to one address outside the ledger; returns the server's reply."""
    from newsletter.delivery import IssueMailer, signing_secret
    from newsletter.delivery.transport import make_transport_factory
    from newsletter.subscribers import ascii_email, normalise_email

    email = normalise_email(address)
    issue = stored_or_draft(store, settings, issue_date, now=now, fetch=fetch)
    mailer = IssueMailer(settings, issue, signing_secret(settings), now)
    test_subscriber = Subscriber(0, email, "", SubscriberStatus.ACTIVE, now, now)
    out = mailer.message(test_subscriber)
    factory = transport_factory or make_transport_factory(
        settings, str(Path(settings.delivery.outbox_dir) / "test-copies")
    )
    transport = factory()
    transport.open()
    try:
        return transport.send(out.sender, ascii_email(email), out.data, lambda: None)
    finally:
        transport.close()


def write_preview(
    settings: Settings,
    store: Store,
    out: Path,
    *,
    issue_date: dt.date,
    now: dt.datetime,
    subscriber: Subscriber,
) -> list[Path]:
    """issue.html, issue.txt and issue.eml for ``subscriber``; nothing is stored."""
    from newsletter.delivery import IssueMailer, signing_secret

    issue = stored_or_draft(store, settings, issue_date, now=now)
    mailer = IssueMailer(settings, issue, signing_secret(settings), now)
    eml = mailer.message(subscriber).data
    html, text, _ = mailer.personal(subscriber)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "issue.html", out / "issue.txt", out / "issue.eml"]
        paths[0].write_text(html, encoding="utf-8")
        paths[1].write_text(text, encoding="utf-8")
        paths[2].write_bytes(eml)
    except OSError as e:
        raise NewsletterError(f"cannot write the preview to {out}: {e.strerror}") from e
    return paths
