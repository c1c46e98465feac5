"""The current schema as SQLAlchemy Core tables: what queries are written against.

Migrations (``migrations.py``) build the database up to this shape step by step; a test
checks that a freshly migrated database matches these definitions.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes in, timezone-aware UTC datetimes out, on any backend.

    Stored as naive UTC because SQLite has no time zones; a naive value handed in is a bug.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; use UTC-aware")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

papers = sa.Table(
    "papers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),  # canonical: arxiv:..., doi:..., url:...
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("abstract", sa.Text, nullable=False, server_default=""),
    sa.Column("authors", sa.JSON, nullable=False),  # list of names
    sa.Column("url", sa.Text, nullable=False, server_default=""),
    sa.Column("pdf_url", sa.Text),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("published_at", UTCDateTime),
    sa.Column("announced_at", UTCDateTime),
    sa.Column("announce_type", sa.Text),
    sa.Column("sources", sa.JSON, nullable=False),  # source names, first seen first
    sa.Column("upvotes", sa.Integer),
    sa.Column("comments", sa.Integer),
    sa.Column("keywords", sa.JSON, nullable=False),
    sa.Column("arxiv_id", sa.Text),
    sa.Column("doi", sa.Text),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_papers_first_seen_at", "first_seen_at"),
)

#: What finds one paper under two identities (an arXiv id in one feed, a DOI or a plain link
#: in another): its folded title and first author's surname (sources.normalize).
paper_titles = sa.Table(
    "paper_titles",
    metadata,
    sa.Column(
        "paper_id", sa.Text, sa.ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("title_key", sa.Text, nullable=False),
    sa.Column("first_author", sa.Text, nullable=False),  # "" when the record has no authors
    sa.Index("ix_paper_titles_title_key", "title_key"),
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("last_status", sa.Text),  # a FetchStatus value
    sa.Column("last_http_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("last_attempt_at", UTCDateTime),
    sa.Column("last_success_at", UTCDateTime),
    sa.Column("last_new", sa.Integer),
    sa.Column("last_total", sa.Integer),
)

issues = sa.Table(
    "issues",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issue_date", sa.Date, nullable=False),
    sa.Column("edition", sa.Text, nullable=False, server_default="daily"),  # an Edition
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("paper_count", sa.Integer, nullable=False, server_default="0"),
    # The rendered issue, stored once so a resumed or shared send mails the same bytes.
    sa.Column("html", sa.Text),
    sa.Column("text", sa.Text),
    sa.Column("preheader", sa.Text),
    # Also the issue's cut: it carries no paper first seen after it (docs/architecture.md).
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("edition", "issue_date", name="uq_issues_edition_date"),
)

issue_papers = sa.Table(
    "issue_papers",
    metadata,
    sa.Column(
        "issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("paper_id", sa.Text, sa.ForeignKey("papers.id"), primary_key=True),
    sa.Column("topic", sa.Text),
    sa.Column("position", sa.Integer),
    sa.Index("ix_issue_papers_paper_id", "paper_id"),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.Text, nullable=False, unique=True),  # normalised
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("unsubscribed_at", UTCDateTime),
    sa.Column("bounced_at", UTCDateTime),
    sa.Column("cadence", sa.Text, nullable=False, server_default="daily"),  # an Edition
    sa.Column("cadence_changed_at", UTCDateTime),  # NULL: never changed
)

#: An issue as a subscriber who switched cadence gets it: the same edition and date, built
#: from the papers first seen after ``since`` (the cut of the last issue they got).  One
#: per distinct window, rendered once.
issue_variants = sa.Table(
    "issue_variants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("since", UTCDateTime, nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("preheader", sa.Text),
    sa.Column("html", sa.Text),
    sa.Column("text", sa.Text),
    sa.Column("paper_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("issue_id", "since", name="uq_issue_variants_issue_since"),
)

variant_papers = sa.Table(
    "variant_papers",
    metadata,
    sa.Column(
        "variant_id",
        sa.Integer,
        sa.ForeignKey("issue_variants.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("paper_id", sa.Text, sa.ForeignKey("papers.id"), primary_key=True),
    sa.Column("topic", sa.Text),
    sa.Column("position", sa.Integer),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column(
        "issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("message_id", sa.Text),
    sa.Column("claimed_by", sa.Text),
    sa.Column("claimed_at", UTCDateTime),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("reply", sa.Text),  # the server's reply to DATA, or the failure's code and text
    # Set when a row found SENDING after a crash is sent again: the recipient may have two
    # copies (with the same Message-ID).
    sa.Column("in_doubt", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # The variant this subscriber gets (they switched cadence); NULL: the issue itself.
    sa.Column("variant_id", sa.Integer, sa.ForeignKey("issue_variants.id")),
    sa.Index("ix_deliveries_issue_status", "issue_id", "status"),
    # A subscriber's last issue (the start of a switcher's window).
    sa.Index("ix_deliveries_subscriber", "subscriber_id", "issue_id"),
)

bounces = sa.Table(
    "bounces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # The report's Message-ID, else "sha256:" and a hash of its bytes: with the recipient,
    # what makes recording the same report twice a no-op.
    sa.Column("message_key", sa.Text, nullable=False),
    sa.Column("recipient", sa.Text, nullable=False, server_default=""),  # "" when none found
    sa.Column("kind", sa.Text, nullable=False),  # a bounces.Kind value
    sa.Column("status", sa.Text),  # enhanced status code, e.g. 5.1.1
    sa.Column("diagnostic", sa.Text),
    # The delivery row (issue_id, subscriber_id) it is about, as far as it is known.
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="SET NULL")),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="SET NULL")),
    sa.Column("issue_date", sa.Date),  # from our return path or Message-ID, even without a row
    sa.Column("action", sa.Text),  # what it did to the subscriber: bounced, unsubscribed
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("message_key", "recipient", name="uq_bounces_message_recipient"),
    sa.Index("ix_bounces_subscriber", "subscriber_id", "kind", "received_at"),
    sa.Index("ix_bounces_issue", "issue_id", "kind"),
)

# A subscriber's stated interests; no row: none stated (their library is in subscriber_library).
subscriber_interests = sa.Table(
    "subscriber_interests",
    metadata,
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("keywords", sa.JSON, nullable=False),  # lists, cleaned (personal.stated)
    sa.Column("authors", sa.JSON, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("only_for_you", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Papers kept in subscribers' libraries, each stored once for everyone who keeps it.
library_papers = sa.Table(
    "library_papers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # store.interests.library_key: the canonical id (arxiv:..., doi:...), else "title:" and a
    # hash of the title's key; bounded, so it fits any index
    sa.Column("key", sa.Text, nullable=False, unique=True),
    sa.Column("paper_id", sa.Text),  # the canonical id, when the paper has one
    sa.Column("title", sa.Text, nullable=False, server_default=""),  # "": known by id alone
    sa.Column("abstract", sa.Text, nullable=False, server_default=""),
    sa.Column("authors", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Who keeps which library paper, in their order.
subscriber_library = sa.Table(
    "subscriber_library",
    metadata,
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("paper_id", sa.Integer, sa.ForeignKey("library_papers.id"), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Index("ix_subscriber_library_paper_id", "paper_id"),
)

# "For you" as each subscriber gets it in one issue, frozen before their row is sent: one
# row per distinct copy (subscribers with the same interests share one), docs/for-you.md.
personal_copies = sa.Table(
    "personal_copies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("key", sa.Text, nullable=False),  # personal.copies.copy_key: what it was made of
    sa.Column("html", sa.Text, nullable=False),  # the "For you" section, CSS inlined
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("topic_order", sa.JSON, nullable=False),  # the digest's topics (1-based), in order
    sa.Column("only_for_you", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("issue_id", "key", name="uq_personal_copies_issue_key"),
)

# Which copy a ledger row carries; no row: the plain issue.  Written with the ledger row.
personal_deliveries = sa.Table(
    "personal_deliveries",
    metadata,
    sa.Column("issue_id", sa.Integer, primary_key=True),
    sa.Column("subscriber_id", sa.Integer, primary_key=True),
    sa.Column(
        "copy_id",
        sa.Integer,
        sa.ForeignKey("personal_copies.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.ForeignKeyConstraint(
        ["issue_id", "subscriber_id"],
        ["deliveries.issue_id", "deliveries.subscriber_id"],
        ondelete="CASCADE",
    ),
    sa.Index("ix_personal_deliveries_copy_id", "copy_id"),
)
