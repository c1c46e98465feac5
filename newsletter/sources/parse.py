"""Turn one fetched feed document (bytes) into normalised Papers; no network, clock or disk."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from newsletter.config import SourceSettings
from newsletter.errors import FeedError
from newsletter.models import AnnounceType, Paper, SourceKind
from newsletter.sources.normalize import (
    arxiv_abs_url,
    arxiv_id,
    arxiv_pdf_url,
    canonical_id,
    clean_text,
    clean_title,
    find_doi,
    split_arxiv_description,
    split_authors,
    to_utc,
)

__all__ = ["MAX_COUNT", "ParsedFeed", "detect_kind", "parse_document"]

#: Upvote and comment counts above this are clamped to it: the largest value an INTEGER
#: column holds on every supported database (PostgreSQL's is 32-bit, SQLite's 64-bit).
MAX_COUNT = 2**31 - 1

_ARXIV_KINDS = (SourceKind.ARXIV_RSS, SourceKind.ARXIV_API)
_ANNOUNCE_TYPES = {t.value: t for t in AnnounceType}

EMPTY_NOTES = {
    SourceKind.ARXIV_RSS: "no announcement today (arXiv skips weekends and holidays)",
    SourceKind.ARXIV_API: "the arXiv API query matched no papers",
    SourceKind.HF_DAILY: "no daily papers listed for this date",
    SourceKind.RSS: "the feed has no entries",
}


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """The papers one document yielded, with what was left out and why."""

    kind: SourceKind  # detected kind (never AUTO)
    papers: tuple[Paper, ...]  # normalised, filtered, in document order, unique ids
    skipped: int = 0  # entries dropped: replacements, other categories, unusable, repeats
    title: str = ""  # the feed's title if any
    note: str = ""  # why an empty result is not an error, or what filtering removed


# --------------------------------------------------------------------------------------------
# Recognising what a document is


def _head_text(body: bytes, size: int = 4096) -> str:
    """The start of the document as text, good enough to sniff (BOMs honoured)."""
    head = body[:size]
    for bom, codec in (
        (b"\xef\xbb\xbf", "utf-8"),
        (b"\xff\xfe\x00\x00", "utf-32-le"),
        (b"\x00\x00\xfe\xff", "utf-32-be"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
    ):
        if head.startswith(bom):
            return head[len(bom) :].decode(codec, errors="replace")
    # latin-1 never fails, and every marker sniffed for is ASCII.
    return head.decode("latin-1")


def _sniff(body: bytes) -> str:
    """One of: empty, gzip, binary, json, html, xml, text."""
    if body.startswith(b"\x1f\x8b"):
        return "gzip"
    head = _head_text(body).lstrip()
    if not head:
        return "empty"
    controls = sum(1 for c in head[:512] if ord(c) < 32 and c not in "\t\r\n")
    if "\x00" in head[:512] or controls > 8:
        return "binary"
    if head[0] in "[{":
        return "json"
    lowered = head.lower()
    if lowered.startswith("<!doctype html") or re.match(r"<html[\s>]", lowered):
        return "html"
    if head[0] == "<":
        # An XHTML page has an XML prolog but is still no feed.
        if "<html" in lowered and not re.search(r"<(?:rss|feed|rdf:rdf)[\s>]", lowered):
            return "html"
        return "xml"
    return "text"


def detect_kind(body: bytes, url: str, content_type: str | None) -> SourceKind:
    """Decide how to parse a document from its URL, content type and first bytes.

    Never returns AUTO.  The URL wins for the well-known services; otherwise JSON means
    Hugging Face daily papers and an XML feed carrying arXiv's namespace is an arXiv feed.
    """
    parts = urllib.parse.urlsplit(url or "")
    host = (parts.hostname or "").lower()
    path = parts.path.lower()
    if host.endswith("huggingface.co") and "daily_papers" in path:
        return SourceKind.HF_DAILY
    if host == "export.arxiv.org" or (host.endswith("arxiv.org") and path.startswith("/api/")):
        return SourceKind.ARXIV_API
    if host == "rss.arxiv.org" or (
        host.endswith("arxiv.org") and (path.startswith("/rss/") or path.startswith("/atom/"))
    ):
        return SourceKind.ARXIV_RSS

    sniffed = _sniff(body)
    if sniffed == "json" or (sniffed != "xml" and content_type and "json" in content_type.lower()):
        return SourceKind.HF_DAILY
    head = _head_text(body).lower()
    if "arxiv.org/schemas/atom" in head and ("announce_type" in head or "<rss" in head):
        return SourceKind.ARXIV_RSS
    # An API answer with no entries carries no arXiv namespace, only its query link.
    if "<feed" in head and "arxiv.org/api" in head and "opensearch" in head:
        return SourceKind.ARXIV_API
    return SourceKind.RSS


def _html_title(body: bytes) -> str:
    m = re.search(r"<title[^>]*>(.*?)</title>", _head_text(body, 16384), re.I | re.S)
    return clean_text(m.group(1))[:120] if m else ""


def _not_a_feed(body: bytes, sniffed: str, expected: str) -> str:
    """A one-line reason naming what the document is instead of what was expected."""
    if sniffed == "empty":
        return "the document is empty"
    if sniffed == "gzip":
        return "the body is still gzip-compressed, not a feed"
    if sniffed == "binary":
        return f"binary data, not {expected}"
    if sniffed == "html":
        title = _html_title(body)
        return f"an HTML page, not {expected}" + (f" (page title: {title!r})" if title else "")
    if sniffed == "json":
        return f"a JSON document, not {expected}"
    if sniffed == "xml":
        return f"an XML document, not {expected}"
    return f"plain text, not {expected}"


# --------------------------------------------------------------------------------------------
# Entry point


def parse_document(
    body: bytes,
    *,
    source: SourceSettings,
    url: str,
    content_type: str | None = None,
    fetched_at: dt.datetime,
) -> ParsedFeed:
    """Parse one fetched document into the source's papers.

    ``fetched_at`` (tz-aware) stands in for the announcement time when the document has
    none.  Raises ``FeedError(url, reason)`` for anything that is not a usable feed: an
    HTML page, broken or truncated XML, the wrong format, an API's error document.
    """
    fetched_at = to_utc(fetched_at) or fetched_at
    kind = source.kind if source.kind != SourceKind.AUTO else detect_kind(body, url, content_type)
    if kind == SourceKind.HF_DAILY:
        drafts, title = _parse_hf(body, url, fetched_at), ""
    else:
        drafts, title = _parse_xml(body, url, content_type, kind, fetched_at)
    return _select(drafts, kind, source, title)


@dataclass(frozen=True, slots=True)
class _Draft:
    """One entry before the source's filters; ``paper`` is None when it was unusable."""

    paper: Paper | None
    raw_announce_type: str | None = None


def _select(
    drafts: list[_Draft], kind: SourceKind, source: SourceSettings, title: str
) -> ParsedFeed:
    # Empty filters keep everything, for announce types as for categories.
    wanted_types = {str(t) for t in source.announce_types}
    wanted_cats = [c.strip().lower() for c in source.categories if c.strip()]
    papers: list[Paper] = []
    seen: set[str] = set()
    unusable = filtered = repeated = 0
    for draft in drafts:
        paper = _storable(draft.paper) if draft.paper is not None else None
        if paper is None:
            unusable += 1
        elif (wanted_types and draft.raw_announce_type not in (None, *wanted_types)) or (
            wanted_cats and not _in_categories(paper.categories, wanted_cats)
        ):
            filtered += 1
        elif paper.id in seen:
            repeated += 1
        else:
            seen.add(paper.id)
            papers.append(_with_source(paper, source.name))
    note = ""
    if not drafts:
        note = EMPTY_NOTES[kind]
    elif not papers:
        reasons = [
            f"{n} {why}"
            for n, why in (
                (filtered, "left out by the source's filters"),
                (unusable, "unusable (no title or no id)"),
                (repeated, "repeated"),
            )
            if n
        ]
        note = f"none of the {len(drafts)} entries kept: " + ", ".join(reasons)
    return ParsedFeed(
        kind=kind,
        papers=tuple(papers),
        skipped=unusable + filtered + repeated,
        title=title,
        note=note,
    )


def _in_categories(categories: Iterable[str], wanted: list[str]) -> bool:
    """Match exactly, or by archive: "astro-ph" keeps "astro-ph.GA" (case-insensitive)."""
    for category in categories:
        c = category.lower()
        if any(c == w or c.startswith(w + ".") for w in wanted):
            return True
    return False


def _with_source(paper: Paper, name: str) -> Paper:
    return replace(paper, source=name)


# A lone surrogate (JSON may escape one) cannot be encoded for any database; PostgreSQL
# refuses NUL in text (feedparser turns &#0; into one).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(paper: Paper) -> Paper:
    """The paper with every string safe to store: unstorable characters become U+FFFD."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(paper):
        value = getattr(paper, f.name)
        if type(value) is str:
            cleaned: Any = _UNSTORABLE.sub("\ufffd", value)
        elif isinstance(value, tuple):
            cleaned = tuple(_UNSTORABLE.sub("\ufffd", v) for v in value)
        else:
            continue
        if cleaned != value:
            changes[f.name] = cleaned
    return replace(paper, **changes) if changes else paper


# --------------------------------------------------------------------------------------------
# RSS / Atom (arXiv's and everyone else's)


def _feedparser_headers(body: bytes, url: str, content_type: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if url.startswith(("http://", "https://")):
        # The base against which relative links in the feed are resolved.
        headers["content-location"] = url
    charset = _charset(content_type)
    declared = re.match(rb"\s*<\?xml[^>]*encoding=", body[:512]) is not None
    has_bom = body.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff"))
    # The document's own declaration is more trustworthy than a server's default charset;
    # the header only helps when the document says nothing about its encoding.
    if charset and not declared and not has_bom:
        headers["content-type"] = f"application/xml; charset={charset}"
    return headers


def _charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = re.search(r"charset\s*=\s*\"?([\w.:-]+)", content_type, re.I)
    return m.group(1) if m else None


def _looks_complete(body: bytes) -> bool:
    """Whether the document ends with a closing tag (it was not cut off in transit)."""
    tail = body[-256:].rstrip(b" \t\r\n\x00")
    return re.search(rb"</[\w:.-]+\s*>$", tail) is not None


# Strict-parser complaints that the lenient parser recovers from without losing entries.
_RECOVERABLE = ("undefined entity", "unbound prefix")


def _parse_xml(
    body: bytes, url: str, content_type: str | None, kind: SourceKind, fetched_at: dt.datetime
) -> tuple[list[_Draft], str]:
    # feedparser is imported here, not at module level: it is slow to import and
    # `newsletter --help` must stay fast.
    import xml.sax

    import feedparser

    expected = "an arXiv feed" if kind in _ARXIV_KINDS else "an RSS or Atom feed"
    sniffed = _sniff(body)
    if sniffed in ("empty", "gzip", "binary", "json", "html"):
        raise FeedError(url, _not_a_feed(body, sniffed, expected))
    try:
        # A stream, never bytes: feedparser would try to open bytes as a file name.
        d = feedparser.parse(
            io.BytesIO(body), response_headers=_feedparser_headers(body, url, content_type)
        )
    except Exception as e:  # feedparser bugs on hostile input are a bad feed to the user
        raise FeedError(url, f"the feed could not be parsed: {e}") from e

    exc = d.get("bozo_exception") if d.get("bozo") else None
    if not d.get("version"):
        if sniffed == "xml" and isinstance(exc, xml.sax.SAXParseException):
            raise FeedError(url, _xml_error(exc, body))
        raise FeedError(url, _not_a_feed(body, sniffed, expected))
    if exc is not None and not isinstance(exc, feedparser.ThingsNobodyCaresAboutButMe):
        recoverable = isinstance(exc, xml.sax.SAXParseException) and any(
            r in exc.getMessage() for r in _RECOVERABLE
        )
        # Anything else (truncation, mismatched tags) would silently lose entries.
        if not (recoverable and _looks_complete(body)):
            sax_error = isinstance(exc, xml.sax.SAXParseException)
            reason = _xml_error(exc, body) if sax_error else f"not a usable feed: {exc}"
            raise FeedError(url, reason)

    entries: list[Any] = list(d.get("entries") or [])
    _raise_api_error(entries, url, kind)
    feed: Mapping[str, Any] = d.get("feed") or {}
    feed_date = to_utc(feed.get("published_parsed")) or to_utc(_updated(feed))
    drafts = [_entry_draft(e, kind, feed_date, fetched_at) for e in entries]
    return drafts, clean_title(feed.get("title"))


def _updated(d: Mapping[str, Any]) -> Any:
    # `in` first: feedparser's .get("updated_parsed") falls back to the published date
    # with a DeprecationWarning when there is no update date.
    return d["updated_parsed"] if "updated_parsed" in d else None  # noqa: SIM401


def _xml_error(exc: Any, body: bytes) -> str:
    where = f"line {exc.getLineNumber()}, column {exc.getColumnNumber()}"
    cut = "" if _looks_complete(body) else "; the document looks truncated"
    return f"not well-formed XML ({exc.getMessage()} at {where}){cut}"


def _raise_api_error(entries: list[Any], url: str, kind: SourceKind) -> None:
    """The arXiv API reports a bad query as a feed with one entry titled "Error"."""
    for entry in entries:
        entry_id = str(entry.get("id") or "")
        is_error = "arxiv.org/api/errors" in entry_id or (
            kind == SourceKind.ARXIV_API
            and len(entries) == 1
            and clean_text(entry.get("title")) == "Error"
            and arxiv_id(entry_id) is None
        )
        if is_error:
            message = clean_text(entry.get("summary")) or "unknown error"
            raise FeedError(url, f"arXiv API error: {message}")


def _entry_draft(
    entry: Mapping[str, Any],
    kind: SourceKind,
    feed_date: dt.datetime | None,
    fetched_at: dt.datetime,
) -> _Draft:
    title = clean_title(entry.get("title"))
    summary = entry.get("summary") or ""
    if not summary and entry.get("content"):
        summary = entry["content"][0].get("value", "")
    desc_id, desc_type, abstract = split_arxiv_description(summary)
    raw_type = clean_text(entry.get("arxiv_announce_type") or desc_type).lower() or None

    link = str(entry.get("link") or "").strip()
    hrefs = [str(x.get("href") or "") for x in entry.get("links") or []]
    entry_id = str(entry.get("id") or "").strip()
    found = _first(arxiv_id(x) for x in (entry_id, desc_id, link, *hrefs))
    ident = found[0] if found else None
    doi = _entry_doi(entry, entry_id, hrefs)

    if not title:
        return _Draft(None)
    if ident is not None and (kind in _ARXIV_KINDS or not link or arxiv_id(link)):
        url = arxiv_abs_url(ident)
    else:
        url = link or (entry_id if entry_id.startswith(("http://", "https://")) else "")
    if not (ident or doi or url):
        return _Draft(None)

    published = to_utc(entry.get("published_parsed"))
    updated = to_utc(_updated(entry))
    if kind == SourceKind.ARXIV_RSS:
        # rss.arxiv.org dates the announcement, not the submission.
        announced = published or updated or feed_date or fetched_at
        published = None
    else:
        published = published or updated or to_utc(entry.get("prism_publicationdate"))
        announced = published or feed_date or fetched_at

    paper = Paper(
        id=canonical_id(ident, doi, url),
        title=title,
        abstract=clean_text(abstract),
        authors=_entry_authors(entry),
        url=url,
        pdf_url=arxiv_pdf_url(ident) if ident else _pdf_link(entry),
        categories=_entry_categories(entry),
        published=published,
        announced=announced,
        announce_type=_ANNOUNCE_TYPES.get(raw_type or ""),
        arxiv_id=ident,
        doi=doi,
    )
    return _Draft(paper, raw_type)


def _first(values: Iterable[tuple[str, int | None] | None]) -> tuple[str, int | None] | None:
    return next((v for v in values if v is not None), None)


def _entry_doi(entry: Mapping[str, Any], entry_id: str, hrefs: list[str]) -> str | None:
    for key in ("arxiv_doi", "prism_doi", "dc_identifier"):
        doi = _doi_of(entry.get(key))
        if doi:
            return doi
    for value in (entry_id, *hrefs):
        doi = _doi_of(value)
        if doi:
            return doi
    return None


def _doi_of(value: object) -> str | None:
    """A DOI from a DOI-ish value; of URLs, only doi.org links count (a journal's own
    article URL may embed the DOI of something else, e.g. a citing article)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.lower().startswith(("http://", "https://")):
        host = (urllib.parse.urlsplit(text).hostname or "").lower()
        if host not in ("doi.org", "dx.doi.org", "www.doi.org"):
            return None
    elif not re.match(r"(?:doi:|info:doi/|10\.)", text, re.I):
        return None
    return find_doi(text)


# RSS 2.0 <author> is an e-mail address; without a name in it there is no author to show.
_EMAIL = re.compile(r"\S+@\S+\.\S+")


def _entry_authors(entry: Mapping[str, Any]) -> tuple[str, ...]:
    names = [str(a.get("name") or "") for a in entry.get("authors") or [] if hasattr(a, "get")]
    names = [n for n in names if n.strip()]
    if _EMAIL.fullmatch(str(entry.get("author") or "").strip()):
        # A bare address; feedparser may even have cut a "name" out of its domain.
        return ()
    if not names and entry.get("author"):
        names = [str(entry["author"])]
    if len(names) == 1:
        # rss.arxiv.org (and many journals) put every author in one dc:creator.
        return tuple(n for n in split_authors(names[0]) if not _EMAIL.fullmatch(n))
    cleaned = (clean_text(re.sub(r"\([^()]*\)", " ", n)) for n in names)
    return tuple(n for n in cleaned if n and not _EMAIL.fullmatch(n))


def _entry_categories(entry: Mapping[str, Any]) -> tuple[str, ...]:
    terms: list[str] = []
    primary = entry.get("arxiv_primary_category")
    if isinstance(primary, Mapping):
        terms.append(str(primary.get("term") or ""))
    terms.extend(str(t.get("term") or "") for t in entry.get("tags") or [] if hasattr(t, "get"))
    out: list[str] = []
    for term in (clean_text(t) for t in terms):
        if term and term not in out:
            out.append(term)
    return tuple(out)


def _pdf_link(entry: Mapping[str, Any]) -> str | None:
    for link in entry.get("links") or []:
        href = str(link.get("href") or "")
        if href and (link.get("type") == "application/pdf" or link.get("title") == "pdf"):
            return href
    return None


# --------------------------------------------------------------------------------------------
# Hugging Face daily papers (JSON)


def _parse_hf(body: bytes, url: str, fetched_at: dt.datetime) -> list[_Draft]:
    expected = "a JSON list of daily papers"
    sniffed = _sniff(body)
    if sniffed != "json":
        raise FeedError(url, _not_a_feed(body, sniffed, expected))
    try:
        data = json.loads(body, parse_int=_json_int)
    except RecursionError:
        raise FeedError(url, "JSON nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise FeedError(url, f"not valid JSON ({e})") from e
    if isinstance(data, dict):
        message = data.get("error") or data.get("message")
        if message:
            raise FeedError(url, f"Hugging Face API error: {clean_text(str(message))}")
        raise FeedError(url, f"a JSON object, not {expected}")
    if not isinstance(data, list):
        raise FeedError(url, f"a JSON {type(data).__name__}, not {expected}")
    return [_hf_draft(item, fetched_at) for item in data]


def _hf_draft(item: object, fetched_at: dt.datetime) -> _Draft:
    if not isinstance(item, dict):
        return _Draft(None)
    paper = item.get("paper")
    if not isinstance(paper, dict):
        paper = item
    raw_id = str(paper.get("id") or "").strip()
    title = clean_title(_str(paper.get("title")) or _str(item.get("title")))
    if not raw_id or not title:
        return _Draft(None)
    found = arxiv_id(raw_id)
    ident = found[0] if found else None
    url = arxiv_abs_url(ident) if ident else f"https://huggingface.co/papers/{raw_id}"
    authors = tuple(
        n
        for n in (
            clean_text(_str(a.get("name")) if isinstance(a, dict) else _str(a))
            for a in _list(paper.get("authors"))
        )
        if n
    )
    keywords: list[str] = []
    for word in _list(paper.get("ai_keywords")):
        k = clean_text(_str(word))
        if k and k not in keywords:
            keywords.append(k)
    return _Draft(
        Paper(
            id=canonical_id(ident, None, url),
            title=title,
            abstract=clean_text(_str(paper.get("summary")) or _str(item.get("summary"))),
            authors=authors,
            url=url,
            pdf_url=arxiv_pdf_url(ident) if ident else None,
            published=to_utc(paper.get("publishedAt")),
            # The day Hugging Face featured it, not arXiv's date (that is `published`).
            announced=(
                to_utc(paper.get("submittedOnDailyAt"))
                or to_utc(item.get("submittedOnDailyAt"))
                or to_utc(item.get("publishedAt"))
                or fetched_at
            ),
            upvotes=_first_count(paper.get("upvotes"), item.get("upvotes")),
            comments=_first_count(item.get("numComments"), paper.get("numComments")),
            keywords=tuple(keywords),
            arxiv_id=ident,
        )
    )


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _json_int(literal: str) -> int | float:
    # int() refuses more than 4,300 digits; no count or id is anywhere near that long, and
    # as a float such a number is simply too large (infinite), which the counts clamp.
    return int(literal) if len(literal) <= 40 else float(literal)


def _first_count(*values: object) -> int | None:
    return next((c for c in map(_count, values) if c is not None), None)


_DIGITS = re.compile(r"\s*\+?([0-9]+)\s*")


def _count(value: object) -> int | None:
    """A count from a number or a string of ASCII digits, clamped to ``MAX_COUNT``.

    Anything else is unknown (None): negative numbers, NaN, booleans, "1.2k".
    """
    if isinstance(value, str):
        m = _DIGITS.fullmatch(value)
        if m is None:
            return None
        digits = m.group(1).lstrip("0")
        value = int(digits) if len(digits) <= 10 else MAX_COUNT  # at most 10 digits: no int() limit
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if math.isnan(value) or value < 0:
        return None
    return int(min(value, MAX_COUNT))
