"""Sources: pull each configured feed and turn it into normalised papers.

``http`` fetches bytes, ``parse`` turns bytes into papers (pure), ``normalize`` holds the
text and id rules, ``merge`` combines two records of one paper.  This module ties one
source's fetch and parse together and reports how it went; it never raises for a broken
source, so one bad feed cannot stop the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from newsletter.config import SourceSettings
from newsletter.errors import FeedError
from newsletter.models import FetchStatus, Paper, SourceState
from newsletter.sources.http import Fetcher

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceResult:
    """The outcome of pulling one source once."""

    name: str
    url: str
    status: FetchStatus
    papers: tuple[Paper, ...] = ()
    skipped: int = 0  # entries dropped by filters (replacements, other categories)
    http_status: int | None = None
    error: str | None = None
    note: str = ""
    elapsed: float = 0.0
    etag: str | None = None
    last_modified: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is FetchStatus.ERROR


def resolve_url(source: SourceSettings, issue_date: dt.date) -> str:
    """The location to fetch; ``{date}`` in a URL becomes the issue date (Hugging Face)."""
    return source.location.replace("{date}", issue_date.isoformat())


def fetch_source(
    source: SourceSettings,
    state: SourceState | None,
    fetcher: Fetcher,
    *,
    now: dt.datetime,
    issue_date: dt.date,
) -> SourceResult:
    """Fetch and parse one source; failures come back as an ERROR result, never raised."""
    url = resolve_url(source, issue_date)
    if not source.enabled:
        return SourceResult(source.name, url, FetchStatus.DISABLED, note="disabled in config")
    started = time.monotonic()
    # Validators only mean something for the same URL (a dated URL changes every day).
    same = state is not None and state.url == url
    etag = state.etag if same and state else None
    modified = state.last_modified if same and state else None
    try:
        resp = fetcher.get(url, etag=etag, last_modified=modified)
        if resp.not_modified:
            return SourceResult(
                source.name,
                url,
                FetchStatus.NOT_MODIFIED,
                http_status=304,
                note="not modified since the last fetch",
                elapsed=time.monotonic() - started,
                etag=etag,
                last_modified=modified,
            )
        from newsletter.sources.parse import parse_document

        parsed = parse_document(
            resp.body, source=source, url=url, content_type=resp.content_type, fetched_at=now
        )
    except FeedError as e:
        log.warning("source %s failed: %s", source.name, e)
        return SourceResult(
            source.name,
            url,
            FetchStatus.ERROR,
            http_status=e.status,
            error=e.reason,
            elapsed=time.monotonic() - started,
        )
    status = FetchStatus.OK if parsed.papers or parsed.skipped else FetchStatus.EMPTY
    return SourceResult(
        source.name,
        url,
        status,
        papers=parsed.papers,
        skipped=parsed.skipped,
        http_status=None if resp.local else resp.status,
        note=parsed.note,
        elapsed=time.monotonic() - started,
        etag=resp.headers.get("etag"),
        last_modified=resp.headers.get("last-modified"),
    )
