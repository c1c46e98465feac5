"""The jobs: one function per job, called by the CLI and (later) by the daemon alike.

Each job takes the settings, an open store and ``now`` (read once, by the caller), so the
same call with the same inputs does the same thing.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.models import Digest, FetchStatus, Paper, SourceState
from newsletter.sources import SourceResult, fetch_source
from newsletter.sources.http import Fetcher, default_user_agent
from newsletter.store import Store

log = logging.getLogger(__name__)


def local_zone(settings: Settings) -> dt.tzinfo:
    """The operator's time zone: schedule.timezone, else the machine's."""
    if settings.schedule.timezone:
        return zoneinfo.ZoneInfo(settings.schedule.timezone)
    tz = dt.datetime.now().astimezone().tzinfo
    return tz if tz is not None else dt.UTC


def issue_date_for(now: dt.datetime, settings: Settings) -> dt.date:
    """Today's date where the operator is: the date an issue sent now carries."""
    return now.astimezone(local_zone(settings)).date()


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
        result = fetch_source(source, previous, fetcher, now=now, issue_date=issue_date)
        upserted = store.upsert_papers(result.papers, seen_at=now) if result.papers else None
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
    if r.failed:
        # Keep the validators of the last good fetch: the next try can still get a 304.
        return SourceState(
            name=r.name,
            url=r.url,
            etag=prev.etag if prev else None,
            last_modified=prev.last_modified if prev else None,
            last_status=r.status,
            last_http_status=r.http_status,
            last_error=r.error,
            last_attempt_at=now,
            last_success_at=prev.last_success_at if prev else None,
            last_new=0,
            last_total=0,
        )
    return SourceState(
        name=r.name,
        url=r.url,
        etag=r.etag,
        last_modified=r.last_modified,
        last_status=r.status,
        last_http_status=r.http_status,
        last_error=None,
        last_attempt_at=now,
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
    tz = local_zone(settings)
    end = dt.datetime.combine(issue_date + dt.timedelta(days=1), dt.time(), tz)
    start = end - dt.timedelta(days=max(1, settings.fetch.window_days))
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def papers_for_issue(store: Store, settings: Settings, issue_date: dt.date) -> list[Paper]:
    since, until = day_window(issue_date, settings)
    return store.papers(since=since, until=until, unissued=True)


def build_issue_digest(store: Store, settings: Settings, issue_date: dt.date) -> Digest:
    """The digest for ``issue_date`` from what the store holds (no fetching)."""
    from newsletter.topics import build_digest

    papers = papers_for_issue(store, settings, issue_date)
    sources = tuple(sorted({p.source for p in papers if p.source}))
    return build_digest(papers, issue_date=issue_date, settings=settings.topics, sources=sources)
