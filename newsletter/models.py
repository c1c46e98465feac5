"""The data that flows between stages: frozen, typed, timezone-aware (UTC)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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


@dataclass(frozen=True, slots=True)
class IssueRecord:
    """An issue as stored: rendered once, sent (and resent) from these bytes."""

    id: int
    issue_date: dt.date
    status: IssueStatus
    subject: str
    preheader: str
    html: str  # with the per-subscriber placeholders (newsletter.placeholders)
    text: str
    paper_count: int
    created_at: dt.datetime  # also its cut: it carries no paper first seen after it
    updated_at: dt.datetime
    edition: Edition = Edition.DAILY

    @property
    def name(self) -> str:
        """How logs and messages name it: ``2026-04-27``, ``2026-04-27 weekly``."""
        return issue_name(self.issue_date, self.edition)


@dataclass(frozen=True, slots=True)
class VariantRecord:
    """An issue as the subscribers who switched cadence after its ``since`` get it."""

    id: int
    issue_id: int
    since: dt.datetime  # papers first seen after this (the cut of their last issue)
    subject: str
    preheader: str
    html: str
    text: str
    paper_count: int
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class PersonalCopy:
    """What one subscriber's copy of an issue changes, frozen when their row is queued:
    their "For you" section as HTML (CSS inlined) and as text, the digest's topics
    (1-based) in their order, and whether they read "For you" alone (no topics)."""

    html: str
    text: str
    order: tuple[int, ...]
    only_for_you: bool = False

    def section(self, kind: str) -> str:
        """The section for the ``"html"`` or the ``"text"`` body."""
        return self.html if kind == "html" else self.text


@dataclass(frozen=True, slots=True)
class Claim:
    """A ledger row a sender holds: who to mail, and whether this is a resend after a crash."""

    issue_id: int
    subscriber: Subscriber
    attempts: int
    in_doubt: bool
    worker: str  # who holds it
    variant_id: int | None = None  # the variant they get (they switched cadence)
    copy: PersonalCopy | None = None  # their "For you", frozen when the row was queued


@dataclass(frozen=True, slots=True)
class Recovered:
    """What recovery found of a dead sender's rows."""

    requeued: int = 0  # claimed by a sender that died before sending anything
    in_doubt: int = 0  # in DATA when the sender died: will be sent again, same Message-ID


#: The states a row leaves no more (a DEFERRED one only by `send --retry-failed`).
SETTLED = frozenset(
    {DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED, DeliveryStatus.DEFERRED}
)


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    """An issue's ledger rows (or one run's) by status: every count the send summary,
    `newsletter status`, the daemon's log and its status file show comes from one of these."""

    queued: int = 0
    claimed: int = 0
    sending: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    in_doubt: int = 0  # rows (of any status) an earlier copy of which may have arrived

    def of(self, status: DeliveryStatus) -> int:
        return int(getattr(self, status.value))

    @property
    def recipients(self) -> int:
        return sum(self.of(s) for s in DeliveryStatus)

    @property
    def pending(self) -> int:
        """Rows not settled yet: queued, claimed or in DATA."""
        return sum(self.of(s) for s in DeliveryStatus if s not in SETTLED)

    @property
    def settled(self) -> int:
        return self.recipients - self.pending


class SendOutcome(StrEnum):
    """How a `send` run (``pipeline.run_send``) ended."""

    SENT = "sent"  # every row settled, and this run sent something (or queued rows)
    DEFERRED = "deferred"  # settled but for deferred rows: `send --retry-failed` retries
    ALREADY_SENT = "already-sent"  # nothing was left to do
    PARTIAL = "partial"  # rows are left (senders gave out); run it again to resume
    STOPPED = "stopped"  # asked to stop, or a limit; run it again to resume
    EMPTY = "empty"  # no new papers and schedule.on_empty = "skip"
    DRY_RUN = "dry-run"  # `send --dry-run`: messages built, nothing sent


class DaemonState(StrEnum):
    STARTING = "starting"
    IDLE = "idle"  # waiting for the next send (a bounce check may be running)
    SENDING = "sending"
    STOPPING = "stopping"  # a signal came: finishing the message in flight
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class LastSend:
    """How the daemon's last send went."""

    issue_date: dt.date
    outcome: str  # a SendOutcome, or "locked", "failed" (an error), "crashed" (a bug)
    at: dt.datetime | None = None  # when it ended
    edition: Edition = Edition.DAILY
    issue: DeliveryCounts | None = None  # the issue's counts afterwards
    run: DeliveryCounts | None = None  # what this run settled
    error: str | None = None

    @property
    def name(self) -> str:
        return issue_name(self.issue_date, self.edition)


@dataclass(frozen=True, slots=True)
class BounceCheck:
    """How the daemon's last read of the bounce mailbox went."""

    at: dt.datetime
    read: int | None = None  # None: it failed before reading anything
    bounced: int = 0
    unsubscribed: int = 0
    error: str | None = None


#: DeliveryCounts' fields as the status file has them, with the derived ones.
_ISSUE_KEYS = ("recipients", "sent", "failed", "deferred", "pending", "in_doubt")
_RUN_KEYS = ("sent", "failed", "deferred", "skipped", "in_doubt")


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """What `newsletter daemon` is doing, as its status file (``<db>.daemon.json``) says:
    the daemon writes it (:meth:`to_json`), `newsletter status` reads it (:meth:`from_json`)."""

    pid: int
    host: str
    started_at: dt.datetime
    timezone: str
    send_at: str
    days: str
    weekly_day: str
    state: DaemonState
    next_run: dt.datetime | None = None
    current: str | None = None  # the issue being sent, by its name
    last: LastSend | None = None
    checks_bounces: bool = False  # a bounce mailbox is configured
    bounces: BounceCheck | None = None  # the last check, once one has run
    running: bool = False  # read side: its pid is alive on this host

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "pid": self.pid,
            "host": self.host,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "timezone": self.timezone,
            "send_at": self.send_at,
            "days": self.days,
            "weekly_day": self.weekly_day,
            "state": self.state.value,
            "next_run": self.next_run.isoformat() if self.next_run else None,
            "current": self.current,
            "last": _last_to_json(self.last) if self.last else None,
        }
        if self.checks_bounces:
            doc["bounces"] = _check_to_json(self.bounces) if self.bounces else None
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any], *, running: bool) -> DaemonStatus:
        """The status a file holds; :class:`ValueError`, :class:`KeyError` or
        :class:`TypeError` when it is not one."""
        last, checked = doc.get("last"), doc.get("bounces")
        return cls(
            pid=int(doc["pid"]),
            host=str(doc["host"]),
            started_at=dt.datetime.fromisoformat(doc["started_at"]),
            timezone=str(doc.get("timezone", "")),
            send_at=str(doc.get("send_at", "")),
            days=str(doc.get("days", "")),
            weekly_day=str(doc.get("weekly_day", "")),
            state=DaemonState(doc["state"]),
            next_run=_time(doc.get("next_run")),
            current=doc.get("current"),
            last=_last_from_json(last) if last else None,
            checks_bounces="bounces" in doc,
            bounces=_check_from_json(checked) if checked else None,
            running=running,
        )


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _counts_to_json(c: DeliveryCounts, keys: tuple[str, ...]) -> dict[str, int]:
    return {k: getattr(c, k) for k in keys} | {
        s.value: c.of(s) for s in DeliveryStatus if s.value not in keys
    }


def _counts_from_json(doc: dict[str, Any]) -> DeliveryCounts:
    return DeliveryCounts(
        **{s.value: int(doc.get(s.value, 0)) for s in DeliveryStatus},
        in_doubt=int(doc.get("in_doubt", 0)),
    )


def _last_to_json(last: LastSend) -> dict[str, object]:
    doc: dict[str, object] = {
        "issue_date": last.issue_date.isoformat(),
        "edition": last.edition.value,
        "at": last.at.isoformat(timespec="seconds") if last.at else None,
        "outcome": last.outcome,
    }
    if last.issue is not None:
        doc["issue"] = _counts_to_json(last.issue, _ISSUE_KEYS)
    if last.run is not None:
        doc["run"] = _counts_to_json(last.run, _RUN_KEYS)
    if last.error is not None:
        doc["error"] = last.error
    return doc


def _last_from_json(doc: dict[str, Any]) -> LastSend:
    return LastSend(
        issue_date=dt.date.fromisoformat(doc["issue_date"]),
        outcome=str(doc.get("outcome", "")),
        at=_time(doc.get("at")),
        edition=Edition(doc.get("edition", Edition.DAILY)),
        issue=_counts_from_json(doc["issue"]) if doc.get("issue") else None,
        run=_counts_from_json(doc["run"]) if doc.get("run") else None,
        error=doc.get("error"),
    )


def _check_to_json(check: BounceCheck) -> dict[str, object]:
    doc: dict[str, object] = {"at": check.at.isoformat(timespec="seconds")}
    if check.read is not None:
        doc |= {"read": check.read, "bounced": check.bounced, "unsubscribed": check.unsubscribed}
    if check.error is not None:
        doc["error"] = check.error
    return doc


def _check_from_json(doc: dict[str, Any]) -> BounceCheck:
    return BounceCheck(
        at=dt.datetime.fromisoformat(doc["at"]),
        read=doc.get("read"),
        bounced=int(doc.get("bounced", 0)),
        unsubscribed=int(doc.get("unsubscribed", 0)),
        error=doc.get("error"),
    )
