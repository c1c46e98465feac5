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
    Edition,
    FetchStatus,
    IssueRecord,
    IssueStatus,
    Paper,
    Recovered,
    SendOutcome,
    SourceState,
    Subscriber,
    SubscriberStatus,
    VariantRecord,
    issue_name,
)
from newsletter.schedule import zone
from newsletter.sources import SourceResult, failed_result, fetch_source, unexpected
from newsletter.sources.http import Fetcher, default_user_agent
from newsletter.store import Store

if TYPE_CHECKING:
    from newsletter.delivery import DeliveryReport
    from newsletter.delivery.transport import Transport
    from newsletter.render import RenderedIssue
    from newsletter.splice import PersonalCopy

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


#: How far back a weekly issue after downtime, or the first issue after a switch of
#: cadence, reaches: beyond this, papers are old news.
MAX_CATCH_UP_DAYS = 28


def _midnight(day: dt.date, settings: Settings) -> dt.datetime:
    """The start of ``day`` in the operator's time zone, in UTC."""
    return dt.datetime.combine(day, dt.time(), zone(settings.schedule)).astimezone(dt.UTC)


def day_window(issue_date: dt.date, settings: Settings) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in UTC of first-seen times that count for the issue of ``issue_date``.

    A paper counts when it was first seen in the ``fetch.window_days`` days up to the end of
    the issue date (operator's time zone) and no earlier issue carried it.
    """
    tz = zone(settings.schedule)
    end = dt.datetime.combine(issue_date + dt.timedelta(days=1), dt.time(), tz)
    start = end - dt.timedelta(days=max(1, settings.fetch.window_days))
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def week_first_day(store: Store, issue_date: dt.date) -> dt.date:
    """The first day the weekly issue of ``issue_date`` covers: the same weekday a week
    before, or the date of the last weekly issue when that is older (a missed week is
    caught up), at most :data:`MAX_CATCH_UP_DAYS` back."""
    first = issue_date - dt.timedelta(days=7)
    last = store.last_issue_date(Edition.WEEKLY, before=issue_date)
    if last is not None and last < first:
        first = max(last, issue_date - dt.timedelta(days=MAX_CATCH_UP_DAYS))
    return first


def issue_window(
    store: Store, settings: Settings, issue_date: dt.date, edition: Edition
) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in UTC of first-seen times that count for the issue (edition, date);
    papers an earlier issue of the same edition carried are left out of it."""
    if edition is Edition.DAILY:
        return day_window(issue_date, settings)
    first = week_first_day(store, issue_date)
    return _midnight(first, settings), _midnight(issue_date + dt.timedelta(days=1), settings)


def switch_floor(settings: Settings, issue_date: dt.date) -> dt.datetime:
    """The earliest start of a switcher's window for the issue of ``issue_date``."""
    return _midnight(issue_date - dt.timedelta(days=MAX_CATCH_UP_DAYS), settings)


def papers_for_issue(
    store: Store, settings: Settings, issue_date: dt.date, edition: Edition = Edition.DAILY
) -> list[Paper]:
    since, until = issue_window(store, settings, issue_date, edition)
    return store.papers(since=since, until=until, not_issued_before=issue_date, edition=edition)


def build_issue_digest(
    store: Store, settings: Settings, issue_date: dt.date, edition: Edition = Edition.DAILY
) -> Digest:
    """The digest for (``edition``, ``issue_date``) from what the store holds (no fetching)."""
    papers = papers_for_issue(store, settings, issue_date, edition)
    since = week_first_day(store, issue_date) if edition is Edition.WEEKLY else None
    return _digest(papers, settings, issue_date, edition, since)


def _digest(
    papers: list[Paper],
    settings: Settings,
    issue_date: dt.date,
    edition: Edition,
    since: dt.date | None,
) -> Digest:
    from newsletter.topics import build_digest

    sources = tuple(sorted({p.source for p in papers if p.source}))
    digest = build_digest(
        papers, issue_date=issue_date, settings=settings.topics, sources=sources, edition=edition
    )
    return dataclasses.replace(digest, since=since)


def variant_digest(
    store: Store, settings: Settings, issue: IssueRecord, since: dt.datetime
) -> Digest:
    """The issue as a subscriber who switched cadence gets it: every paper first seen
    after ``since`` (the cut of the last issue they got) up to the issue's own cut, where
    the next issue of its edition starts (however late the variant is made)."""
    # Cuts are inclusive: an issue carries the papers its own run fetched at that instant.
    tick = dt.timedelta(microseconds=1)
    papers = store.papers(since=since + tick, until=issue.created_at + tick)
    first = since.astimezone(zone(settings.schedule)).date()
    weekly = issue.edition is Edition.WEEKLY
    return _digest(papers, settings, issue.issue_date, issue.edition, first if weekly else None)


# --------------------------------------------------------------------------- send


class AllSourcesFailed(NewsletterError):
    """Every source failed: that is a failure to report, not an empty day."""


@dataclass
class SendReport:
    issue_date: dt.date
    outcome: SendOutcome
    fetch: FetchReport | None = None
    issue: IssueRecord | None = None
    delivery: DeliveryReport | None = None
    recovered: Recovered | None = None
    queued: int = 0  # rows added to the ledger by this run
    dry_run_messages: int = 0
    dry_run_bytes: int = 0
    edition: Edition = Edition.DAILY

    @property
    def name(self) -> str:
        return issue_name(self.issue_date, self.edition)


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
    store: Store, settings: Settings, issue_date: dt.date, edition: Edition = Edition.DAILY
) -> tuple[Digest, RenderedIssue]:
    """Build and render the digest for (``edition``, ``issue_date``) from the store."""
    digest = build_issue_digest(store, settings, issue_date, edition)
    return digest, _render(digest, settings)


def _render(digest: Digest, settings: Settings) -> RenderedIssue:
    from newsletter.links import issue_url
    from newsletter.render import render_issue

    url = issue_url(settings, digest.issue_date, digest.edition)
    return render_issue(digest, settings, web_url=url)


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
    edition: Edition = Edition.DAILY,
) -> tuple[IssueRecord | None, FetchReport | None]:
    """The stored issue (``edition``, ``issue_date``), fetching, clustering and rendering it
    if new.

    An issue that exists already is returned as it is (a resume sends the same bytes).
    ``None`` means there is nothing to send (no new papers and ``on_empty = "skip"``).
    """
    name = issue_name(issue_date, edition)
    existing = store.issue(issue_date, edition)
    if existing is not None:
        return existing, None
    report = None
    if fetch:
        report = fetch_or_fail(settings, store, now=now, on_source=on_source)
    digest, rendered = render_for_date(store, settings, issue_date, edition)
    if digest.is_empty and settings.schedule.on_empty == "skip":
        log.info("issue %s: no new papers; skipped (schedule.on_empty = skip)", name)
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
        edition=edition,
    )
    log.info(
        "issue %s: %d papers in %d topics, rendered",
        name,
        digest.paper_count,
        len(digest.topics),
    )
    return issue, report


#: Rounds of rendering variants and queuing their subscribers before the rest is left to
#: the next run (only someone switching cadence back and forth meanwhile needs a second).
QUEUE_ROUNDS = 3


def queue_issue(
    settings: Settings,
    store: Store,
    issue: IssueRecord,
    *,
    now: dt.datetime,
    stop: threading.Event | None = None,
) -> int:
    """Queue the issue for every active subscriber of its cadence not queued yet; the rows
    added.  Subscribers who switched cadence get the variant of their window, rendered and
    stored here first (once per distinct window); see docs/architecture.md.  Subscribers
    with interests get their copy ("For you", topic order) made here and stored with their
    row, so it never changes, whatever they change later (:func:`queue_personal`)."""
    from newsletter.splice import has_markers

    floor = switch_floor(settings, issue.issue_date)
    skip_empty = settings.schedule.on_empty == "skip"
    personal = has_markers(issue.html, "html")  # an issue without markers has no personal part
    queued = 0
    for _ in range(QUEUE_ROUNDS):
        for since in store.switcher_windows(issue.id, floor=floor):
            if store.variant(issue.id, since) is None:
                digest = variant_digest(store, settings, issue, since)
                rendered = _render(digest, settings)
                store.save_variant(
                    issue.id,
                    since,
                    subject=rendered.subject,
                    preheader=rendered.preheader,
                    html=rendered.html,
                    text=rendered.text,
                    papers=digest_papers(digest),
                    now=now,
                )
                log.info(
                    "issue %s: a variant from %s for who switched cadence: %d papers",
                    issue.name,
                    since.isoformat(timespec="seconds"),
                    digest.paper_count,
                )
        queued += store.queue_deliveries(
            issue.id, now=now, floor=floor, skip_empty=skip_empty, without_interests=personal
        )
        if personal:
            queued += queue_personal(settings, store, issue, now=now, floor=floor, stop=stop)
        if stop is not None and stop.is_set():
            log.warning(
                "issue %s: stopped while making copies; %d subscriber(s) wait for the next run",
                issue.name,
                len(store.unqueued(issue.id)),
            )
            break
        if not store.switcher_windows(issue.id, floor=floor):
            break
    else:
        log.warning(
            "issue %s: some subscribers changed cadence while it was queued; the next run "
            "queues them",
            issue.name,
        )
    return queued


def queue_personal(
    settings: Settings,
    store: Store,
    issue: IssueRecord,
    *,
    now: dt.datetime,
    floor: dt.datetime,
    stop: threading.Event | None = None,
) -> int:
    """Queue the subscribers waiting for the issue who stated interests, each with their
    copy made now: of the issue, or of the variant of their window if they switched
    cadence (its papers are theirs to rank).  The rows added; a subscriber whose variant is
    not stored yet, or whose copy was not made yet when ``stop`` was set, is left for the
    next round or run."""
    waiting = store.unqueued(issue.id)
    if not waiting:  # the usual case once the issue is queued: nothing heavy imported
        return 0
    from newsletter.links import issue_url
    from newsletter.personal.copies import issue_digest, make_copies, worker_count
    from newsletter.personal.interests import SubscriberInterests
    from newsletter.splice import has_markers

    started = time.monotonic()
    # Many waiting (the first run of an issue): everyone's interests in one read, a paper
    # kept by several subscribers one object; a few (a resume): theirs alone.
    found = store.all_interests() if len(waiting) > 500 else store.interests_of(waiting)
    body: dict[int, int | None] = dict.fromkeys(waiting)  # subscriber -> their variant's id
    variants: dict[int | None, VariantRecord | None] = {None: None}
    for since, ids in store.switcher_windows(issue.id, floor=floor).items():
        variant = store.variant(issue.id, since)
        for sid in ids:
            if variant is None:
                body.pop(sid, None)  # its variant is rendered by the next round
            elif sid in body:
                body[sid] = variant.id
                variants[variant.id] = variant
    queued = copies = 0
    for variant_id, variant in variants.items():
        mine = {
            sid: found.get(sid, SubscriberInterests()) for sid, v in body.items() if v == variant_id
        }
        if not mine:
            continue
        html = issue.html if variant is None else variant.html
        empty = variant is not None and variant.paper_count == 0
        skipped = empty and settings.schedule.on_empty == "skip"
        if skipped or not has_markers(html, "html"):
            # nothing to send (the rows are skipped), or nothing to personalise
            rows: list[tuple[int, str | None]] = [(sid, None) for sid in mine]
            queued += store.queue_personal(
                issue.id, rows, {}, now=now, variant_id=variant_id, skipped=skipped
            )
            continue
        groups = store.issue_topics(issue.id, variant_id)
        for batch in make_copies(
            issue_digest(issue.issue_date, groups, issue.edition),
            mine,
            settings,
            web_url=issue_url(settings, issue.issue_date, issue.edition),
            processes=worker_count(),
            stop=stop,
            body=f"variant:{variant_id}" if variant_id is not None else "",
        ):
            queued += store.queue_personal(
                issue.id, batch.rows, batch.copies, now=now, variant_id=variant_id
            )
            copies += len(batch.copies)
    log.info(
        "issue %s: %d subscriber(s) with interests queued with %d distinct copies in %.1f s",
        issue.name,
        len(body),
        copies,
        time.monotonic() - started,
    )
    return queued


def personal_copy(
    settings: Settings, store: Store, issue: IssueRecord, subscriber: Subscriber
) -> tuple[int | None, PersonalCopy | None]:
    """(the variant, the copy) the subscriber gets of the issue: those frozen with their
    ledger row, else a copy of the issue made now from their interests (not stored).  None:
    the issue itself; the plain issue."""
    from newsletter.links import issue_url
    from newsletter.personal.copies import issue_digest, make_copies
    from newsletter.splice import has_markers

    if issue.id:
        frozen = store.frozen_copy(issue.id, subscriber.id)
        if frozen is not None:
            return frozen
    if not has_markers(issue.html, "html"):
        return None, None
    mine = store.interests(subscriber.id)
    if issue.id:
        digest = issue_digest(issue.issue_date, store.issue_topics(issue.id), issue.edition)
    else:  # a draft: the digest it was rendered from
        digest = build_issue_digest(store, settings, issue.issue_date, issue.edition)
    url = issue_url(settings, issue.issue_date, issue.edition)
    for batch in make_copies(digest, {subscriber.id: mine}, settings, web_url=url):
        for _sid, key in batch.rows:
            return None, batch.copies[key] if key is not None else None
    return None, None


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
    edition: Edition = Edition.DAILY,
) -> SendReport:
    """Fetch → topics → render → deliver the issue (``edition``, ``issue_date``), or resume
    it.  Only the subscribers of that cadence are queued.

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
        outbox = str(Path(settings.delivery.outbox_dir) / outbox_folder(issue_date, edition))
        transport_factory = make_transport_factory(settings, outbox)
    with hold_lock(store.engine, "send", shared=worker):
        with hold_lock(store.engine, "prepare", wait=True):
            issue, fetched = prepare_issue(
                settings,
                store,
                issue_date,
                now=now(),
                fetch=fetch,
                on_source=on_source,
                edition=edition,
            )
            if issue is None:
                return SendReport(issue_date, SendOutcome.EMPTY, fetch=fetched, edition=edition)
            recovered = Recovered() if worker else store.recover(issue.id, now=now())
            if recovered.in_doubt or recovered.requeued:
                log.warning(
                    "issue %s: resuming after an interrupted send: %d in doubt, %d requeued",
                    issue.name,
                    recovered.in_doubt,
                    recovered.requeued,
                )
            if retry_failed:
                store.requeue_deferred(issue.id, now=now())
            purged = store.purge_pending(now=now())
            if purged:
                log.info("deleted %d web sign-up(s) never confirmed", purged)
            queued = queue_issue(settings, store, issue, now=now(), stop=stop)
            if issue.status is not IssueStatus.READY and store.unfinished(issue.id):
                # Rows to send again (new subscribers, --retry-failed): not settled now.
                store.set_issue_status(issue.id, IssueStatus.READY, now=now())
        pending = store.delivery_counts(issue.id).queued
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
            deferred = delivery.totals.deferred
            status = IssueStatus.DEFERRED if deferred else IssueStatus.SENT
            store.set_issue_status(issue.id, status, now=now())
            if deferred:
                outcome = SendOutcome.DEFERRED
            elif delivery.done or queued:
                outcome = SendOutcome.SENT
            else:
                outcome = SendOutcome.ALREADY_SENT
        else:
            outcome = SendOutcome.STOPPED if delivery.stopped else SendOutcome.PARTIAL
        log.info("issue %s: %s", issue.name, delivery.summary())
        return SendReport(
            issue_date,
            outcome,
            fetch=fetched,
            issue=issue,
            delivery=delivery,
            recovered=recovered,
            queued=queued,
            edition=edition,
        )


def outbox_folder(issue_date: dt.date, edition: Edition) -> str:
    """The outbox's folder for an issue: ``DATE`` (daily), ``DATE-weekly``."""
    return issue_date.isoformat() + ("" if edition is Edition.DAILY else f"-{edition.value}")


def stored_or_draft(
    store: Store,
    settings: Settings,
    issue_date: dt.date,
    *,
    now: dt.datetime,
    fetch: bool = False,
    edition: Edition = Edition.DAILY,
) -> IssueRecord:
    """The stored issue, else one rendered now (after fetching, with ``fetch``) and not
    stored (id 0): for looking and test copies, not for sending."""
    issue = store.issue(issue_date, edition)
    if issue is not None:
        return issue
    if fetch:
        fetch_or_fail(settings, store, now=now)
    digest, rendered = render_for_date(store, settings, issue_date, edition)
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
        edition=edition,
    )


def dry_run(
    settings: Settings,
    store: Store,
    *,
    issue_date: dt.date,
    now: dt.datetime,
    fetch: bool = False,
    edition: Edition = Edition.DAILY,
) -> SendReport:
    """Build the message of every subscriber of the edition's cadence and send none;
    nothing is stored (switchers are counted with the issue itself)."""
    from newsletter.delivery import IssueMailer, signing_secret

    issue = stored_or_draft(store, settings, issue_date, now=now, fetch=fetch, edition=edition)
    if issue.paper_count == 0 and issue.id == 0 and settings.schedule.on_empty == "skip":
        return SendReport(issue_date, SendOutcome.EMPTY, edition=edition)
    mailer = IssueMailer(settings, issue, signing_secret(settings), now)
    n = size = 0
    for sub in store.iter_subscribers(SubscriberStatus.ACTIVE):
        if sub.cadence is not edition:
            continue
        n += 1
        size += len(mailer.message(sub).data)
    return SendReport(
        issue_date,
        SendOutcome.DRY_RUN,
        issue=issue,
        dry_run_messages=n,
        dry_run_bytes=size,
        edition=edition,
    )


def send_test_copy(
    settings: Settings,
    store: Store,
    address: str,
    *,
    issue_date: dt.date,
    now: dt.datetime,
    fetch: bool = False,
    transport_factory: Callable[[], Transport] | None = None,
    edition: Edition = Edition.DAILY,
) -> str:
    """Mail the issue to one address outside the ledger; returns the server's reply."""
    from newsletter.delivery import IssueMailer, signing_secret
    from newsletter.delivery.transport import make_transport_factory
    from newsletter.subscribers import ascii_email, normalise_email

    email = normalise_email(address)
    issue = stored_or_draft(store, settings, issue_date, now=now, fetch=fetch, edition=edition)
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
    edition: Edition = Edition.DAILY,
    personal: bool = False,
) -> list[Path]:
    """issue.html, issue.txt and issue.eml for ``subscriber``; nothing is stored.

    ``personal``: as they get it, with their "For you" (:func:`personal_copy`), else the
    plain issue (a sample subscriber)."""
    from newsletter.delivery import IssueMailer, signing_secret

    issue = stored_or_draft(store, settings, issue_date, now=now, edition=edition)
    variant_id, copy = (
        personal_copy(settings, store, issue, subscriber) if personal else (None, None)
    )
    mailer = IssueMailer(
        settings, issue, signing_secret(settings), issue.created_at, store.variant_by_id
    )
    eml = mailer.message(subscriber, variant_id, copy).data
    html, text, _ = mailer.personal(subscriber, variant_id, copy)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "issue.html", out / "issue.txt", out / "issue.eml"]
        paths[0].write_text(html, encoding="utf-8")
        paths[1].write_text(text, encoding="utf-8")
        paths[2].write_bytes(eml)
    except OSError as e:
        raise NewsletterError(f"cannot write the preview to {out}: {e.strerror}") from e
    return paths
