"""The data that flows between stages: frozen, typed, timezone-aware (UTC)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum


class SourceKind(StrEnum):
    """How a source's documents are parsed."""

    AUTO = "auto"  # decided from the URL and the document itself
    ARXIV_RSS = "arxiv-rss"  # rss.arxiv.org daily announcement feeds
    ARXIV_API = "arxiv-api"  # export.arxiv.org/api/query Atom
    HF_DAILY = "hf-daily"  # huggingface.co/api/daily_papers JSON
    RSS = "rss"  # any RSS 0.9x/1.0/2.0 or Atom feed


class AnnounceType(StrEnum):
    """arXiv's announcement types; only NEW and CROSS are new papers."""

    NEW = "new"
    CROSS = "cross"
    REPLACE = "replace"
    REPLACE_CROSS = "replace-cross"


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper, normalised from any source.

    ``id`` is canonical: ``arxiv:<id without version>``, else ``doi:<lower-case DOI>``,
    else ``url:<link>``; the same paper seen in several feeds gets the same id.
    """

    id: str
    title: str
    abstract: str = ""
    authors: tuple[str, ...] = ()
    url: str = ""  # the abstract / landing page
    pdf_url: str | None = None
    categories: tuple[str, ...] = ()  # primary first where the source says which
    published: dt.datetime | None = None  # first version (UTC)
    announced: dt.datetime | None = None  # when the source announced it (UTC)
    source: str = ""  # name of the configured source it came from
    announce_type: AnnounceType | None = None
    upvotes: int | None = None  # trending signals, where a source has them
    comments: int | None = None
    keywords: tuple[str, ...] = ()  # e.g. Hugging Face's ai_keywords
    arxiv_id: str | None = None  # without version
    doi: str | None = None


class Edition(StrEnum):
    """Which issue a subscriber gets: one every sending day, or one a week."""

    DAILY = "daily"
    WEEKLY = "weekly"


def issue_name(issue_date: dt.date, edition: Edition) -> str:
    """How logs and messages name an issue: ``2026-04-27``, ``2026-04-27 weekly``."""
    return str(issue_date) if edition is Edition.DAILY else f"{issue_date} {edition.value}"


@dataclass(frozen=True, slots=True)
class Pick:
    """A paper chosen to stand for its topic, with why it was chosen."""

    paper: Paper
    centrality: float  # cosine similarity to the topic centre, 0..1
    trending: float  # upvotes normalised within the day, 0..1
    score: float  # the blend that ranked it


@dataclass(frozen=True, slots=True)
class Topic:
    """One section of the digest."""

    label: str  # 2-4 terms, unique within the digest
    terms: tuple[str, ...]  # the distinctive terms the label came from, best first
    size: int  # number of papers in the topic (picks + rest)
    picks: tuple[Pick, ...]
    rest: tuple[Paper, ...]  # the topic's other papers, for a compact list
    score: float  # what orders topics in the digest


@dataclass(frozen=True, slots=True)
class Digest:
    """One issue's content, ready to render: no I/O happened to build it."""

    issue_date: dt.date
    topics: tuple[Topic, ...]
    paper_count: int
    sources: tuple[str, ...] = ()  # names of the sources that contributed papers
    watched: Topic | None = None  # papers matching pinned keywords/authors, shown first
    notes: tuple[str, ...] = ()  # how the digest was built, e.g. how k was chosen
    edition: Edition = Edition.DAILY
    since: dt.date | None = None  # the first day a weekly issue covers ("Week of ...")

    @property
    def is_empty(self) -> bool:
        return self.paper_count == 0


class FetchStatus(StrEnum):
    """How pulling one source went."""

    OK = "ok"  # fetched and parsed (possibly with no new papers)
    NOT_MODIFIED = "not-modified"  # 304: the server says nothing changed
    EMPTY = "empty"  # a valid document with no entries (arXiv on weekends and holidays)
    ERROR = "error"  # fetch or parse failed; see the error text
    DISABLED = "disabled"  # enabled = false in the config


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the store remembers about a source between runs (for conditional GET)."""

    name: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_status: FetchStatus | None = None
    last_http_status: int | None = None
    last_error: str | None = None
    last_attempt_at: dt.datetime | None = None
    last_success_at: dt.datetime | None = None
    last_new: int | None = None
    last_total: int | None = None


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # signed up on the web, not confirmed yet: receives nothing else
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"  # never mailed again unless added again explicitly
    BOUNCED = "bounced"  # a permanent "no such user"; not mailed until added again


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str  # normalised: trimmed, lower-case, IDNA domain
    name: str
    status: SubscriberStatus
    created_at: dt.datetime
    updated_at: dt.datetime
    unsubscribed_at: dt.datetime | None = None
    bounced_at: dt.datetime | None = None
    cadence: Edition = Edition.DAILY


class IssueStatus(StrEnum):
    READY = "ready"  # rendered and stored; rows are left to send (a send resumes it)
    SENT = "sent"  # every ledger row is settled for good: sent, failed (5xx) or skipped
    DEFERRED = "deferred"  # settled but for deferred rows: `send --retry-failed` retries them
    EMPTY = "empty"  # no new papers and on_empty = "skip": nothing to send


class DeliveryStatus(StrEnum):
    """One ledger row: an (issue, subscriber) pair."""

    QUEUED = "queued"  # written before sending; nobody has it
    CLAIMED = "claimed"  # a sender took it; nothing reached the server yet
    SENDING = "sending"  # DATA is under way: if the sender dies now, it is "in doubt"
    SENT = "sent"  # the server accepted it (reply recorded)
    DEFERRED = "deferred"  # transient failures used up the attempts; --retry-failed resends
    FAILED = "failed"  # a permanent failure (5xx); not retried
    SKIPPED = "skipped"  # the subscriber left before their turn came
