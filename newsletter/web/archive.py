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
from newsletter.models import Edition
from newsletter.placeholders import personalize
from newsletter.text import long_date

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.models import IssueRecord
    from newsletter.store import Store
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
    issue_href: Callable[[ArchiveEntry], str],
    subscribe_url: str,
    archive_url: str,
    feed_url: str,
) -> str:
    """The list of issues, daily and weekly side by side, newest first."""
    rows = [
        _Row(
            long_date(e.issue_date) + (" · weekly" if e.edition is Edition.WEEKLY else ""),
            e.subject,
            e.paper_count,
            issue_href(e),
        )
        for e in entries
    ]
    return pages.page(
        "archive.html.j2",
        title="Past issues",
        entries=rows,
        subscribe_url=subscribe_url,
        archive_url=archive_url,
        feed_url=feed_url,
    )


#: Issues in the Atom feed: the latest, as feed readers expect.
FEED_ENTRIES = 50
ATOM = "http://www.w3.org/2005/Atom"
#: What XML 1.0 cannot carry at all, not even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def atom_feed(settings: Settings, entries: list[ArchiveEntry]) -> bytes:
    """The archive as an Atom feed (RFC 4287): one entry per issue, daily and weekly,
    linking to its page under ``list.base_url``; UTF-8, every text escaped."""
    import xml.etree.ElementTree as ET

    def text(parent: ET.Element, tag: str, value: str, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        el.text = _NOT_XML.sub("", value)
        return el

    def stamp(when: dt.datetime | None, day: dt.date) -> str:
        when = when or dt.datetime.combine(day, dt.time(), dt.UTC)
        return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    ET.register_namespace("", ATOM)
    name = settings.list.name
    archive = links.public_url(settings, links.ARCHIVE)
    feed = ET.Element(f"{{{ATOM}}}feed")
    text(feed, "id", archive)
    text(feed, "title", f"{name}: past issues")
    updated = max((e.created_at for e in entries if e.created_at), default=None)
    text(feed, "updated", stamp(updated, dt.date(1970, 1, 1)))
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    text(author, "name", name)
    ET.SubElement(
        feed, f"{{{ATOM}}}link", rel="self", href=links.public_url(settings, links.ARCHIVE_FEED)
    )
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="alternate", type="text/html", href=archive)
    for e in entries[:FEED_ENTRIES]:
        url = links.issue_url(settings, e.issue_date, e.edition)
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        text(entry, "id", url)
        text(entry, "title", e.subject or long_date(e.issue_date))
        ET.SubElement(entry, f"{{{ATOM}}}link", rel="alternate", type="text/html", href=url)
        text(entry, "updated", stamp(e.created_at, e.issue_date))
        text(entry, "category", "", term=e.edition.value)
        summary = f"{e.paper_count} paper{'s' if e.paper_count != 1 else ''}"
        text(entry, "summary", f"{summary}. {e.preheader}" if e.preheader else summary)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def build_archive(store: Store, settings: Settings, out: Path) -> list[Path]:
    """Write ``out/index.html``, ``out/YYYY-MM-DD/index.html`` per daily issue,
    ``out/weekly/YYYY-MM-DD/index.html`` per weekly one, and the Atom feed
    ``out/archive.xml``; the paths written (the index first, the feed last).

    Links between the pages are relative, so the folder can be served from anywhere; the
    Subscribe link goes to ``list.base_url``, where `newsletter serve` runs, and the feed's
    links are absolute URLs under it (a feed reader needs them so).
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
                issue_href=lambda e: f"{links.issue_path(e.issue_date, e.edition)}/",
                subscribe_url=subscribe,
                archive_url="./",
                feed_url="archive.xml",
            ),
            encoding="utf-8",
        )
        written.append(index)
        for entry in entries:
            issue = store.issue(entry.issue_date, entry.edition)
            if issue is None:  # deleted meanwhile
                continue
            where = links.issue_path(entry.issue_date, entry.edition)
            folder = out / where
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "index.html"
            up = "../" * (where.count("/") + 1)
            path.write_text(
                issue_page(issue, settings, index_href=up, subscribe_href=subscribe),
                encoding="utf-8",
            )
            written.append(path)
        feed = out / "archive.xml"
        feed.write_bytes(atom_feed(settings, entries))
        written.append(feed)
    except OSError as e:
        raise NewsletterError(f"cannot write the archive to {out}: {e.strerror or e}") from e
    return written
