"""Sources: pull each configured feed and turn it into normalised papers.

``http`` fetches bytes, ``parse`` turns bytes into papers (pure), ``normalize`` holds the
text and id rules, ``merge`` combines two records of one paper.  This module ties one
source's fetch and parse together and reports how it went; it never raises for a broken
source, so one bad feed cannot stop the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from dataclasses import dataclass

from newsletter.config import SourceSettings
from newsletter.errors import FeedError
from newsletter.models import FetchStatus, Paper, SourceState
from newsletter.sources.http import Fetcher, one_line

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
        reason = one_line(e.reason)
        log.warning("source %s failed: %s: %s", source.name, url, reason)
        return failed_result(source.name, url, reason, http_status=e.status, started=started)
    except Exception as e:
        # A bug, but one source's: the others are still fetched.  The traceback goes to
        # the log; the report names the error.
        log.exception("source %s: unexpected error", source.name)
        return failed_result(source.name, url, unexpected("unexpected error", e), started=started)
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
        etag=_validator(resp.headers.get("etag")),
        last_modified=_validator(resp.headers.get("last-modified")),
    )


def failed_result(
    name: str, url: str, reason: str, *, http_status: int | None = None, started: float
) -> SourceResult:
    """An ERROR result; ``started`` is the ``time.monotonic()`` at which the source began."""
    return SourceResult(
        name,
        url,
        FetchStatus.ERROR,
        http_status=http_status,
        error=reason,
        elapsed=time.monotonic() - started,
    )


def unexpected(what: str, e: Exception) -> str:
    """The report's line for an exception that is a bug: the details are in the log."""
    return f"{what} ({one_line(f'{type(e).__name__}: {e}', 200)}); see the log"


_VALIDATOR = re.compile(r"[\x20-\x7e\x80-\xff]{1,1024}")


def _validator(value: str | None) -> str | None:
    """An ETag or Last-Modified worth storing and sending back; a long or binary one is
    dropped (PostgreSQL refuses NUL in text), which only costs an unconditional fetch."""
    return value if value is not None and _VALIDATOR.fullmatch(value) else None
