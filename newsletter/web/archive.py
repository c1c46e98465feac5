"""The archive: past issues as web pages with no personal data, served or written as files.

An issue page is the stored email itself (same templates, same inlined CSS), with the
per-subscriber placeholders filled with neutral values: "Hello," for the greeting, "you"
for the recipient, and the unsubscribe link pointing at a page that explains where the
real, personal link is.  A small bar on top links to the list of issues.
"""

from __future__ import annotations

import datetime as dt
import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter import links
from newsletter.errors import NewsletterError
from newsletter.placeholders import personalize
from newsletter.text import long_date

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.store import IssueRecord, Store
    from newsletter.store.signup import ArchiveEntry
    from newsletter.web.pages import Pages

_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_NAV_STYLE = (
    "max-width:620px;margin:0 auto;padding:10px 8px 0 8px;text-align:center;"
    "font:13px/1.5 -apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
)


def issue_page(
    issue: IssueRecord, settings: Settings, *, index_href: str, subscribe_href: str
) -> str:
    """The issue as a web page: the stored email with neutral values in the placeholders."""
    page, _ = personalize(
        issue,
        unsubscribe_url=links.public_url(settings, links.UNSUBSCRIBE),
        preferences_url=links.public_url(settings, links.PREFERENCES),
        name="",
        email="",
    )
    nav = (
        f'<div class="archive-nav" style="{_NAV_STYLE}">'
        f'<a href="{html_lib.escape(index_href)}">All issues</a> · '
        f'<a href="{html_lib.escape(subscribe_href)}">Subscribe</a></div>'
    )
    m = _BODY.search(page)
    return page[: m.end()] + nav + page[m.end() :] if m else nav + page


@dataclass(frozen=True, slots=True)
class _Row:
    long_date: str
    subject: str
    paper_count: int
    href: str


def index_page(
    pages: Pages,
    entries: list[ArchiveEntry],
    *,
    issue_href: Callable[[dt.date], str],
    subscribe_url: str,
    archive_url: str,
) -> str:
    """The list of issues, newest first."""
    rows = [
        _Row(long_date(e.issue_date), e.subject, e.paper_count, issue_href(e.issue_date))
        for e in entries
    ]
    return pages.page(
        "archive.html.j2",
        title="Past issues",
        entries=rows,
        subscribe_url=subscribe_url,
        archive_url=archive_url,
    )


def build_archive(store: Store, settings: Settings, out: Path) -> list[Path]:
    """Write ``out/index.html`` and ``out/YYYY-MM-DD/index.html`` per issue; the paths written.

    Links between the pages are relative, so the folder can be served from anywhere; the
    Subscribe link goes to ``list.base_url``, where `newsletter serve` runs.
    """
    from newsletter.web.pages import Pages

    pages = Pages(settings)
    subscribe = links.public_url(settings, links.SUBSCRIBE)
    entries = store.archive_entries()
    written: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        index = out / "index.html"
        index.write_text(
            index_page(
                pages,
                entries,
                issue_href=lambda d: f"{d.isoformat()}/",
                subscribe_url=subscribe,
                archive_url="./",
            ),
            encoding="utf-8",
        )
        written.append(index)
        for entry in entries:
            issue = store.issue(entry.issue_date)
            if issue is None:  # deleted meanwhile
                continue
            folder = out / entry.issue_date.isoformat()
            folder.mkdir(exist_ok=True)
            path = folder / "index.html"
            path.write_text(
                issue_page(issue, settings, index_href="../", subscribe_href=subscribe),
                encoding="utf-8",
            )
            written.append(path)
    except OSError as e:
        raise NewsletterError(f"cannot write the archive to {out}: {e.strerror or e}") from e
    return written
