"""Numbered schema migrations, applied automatically and exactly once, in order.

Each migration is ``(version, description, function(connection))``.  To change the
schema: edit ``schema.py`` and append a migration that brings an existing database to the
new shape.  Migration 1 builds the tables from ``schema.py``; the first time a later
migration alters a table, freeze that table's version-1 definition inside ``_v1`` (the
test that migrates a fresh database twice-over fails until you do).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import sqlalchemy as sa

from newsletter.errors import StoreError
from newsletter.store import schema

Migration = tuple[int, str, Callable[[sa.Connection], None]]

log = logging.getLogger(__name__)


def _v1(conn: sa.Connection) -> None:
    # Tables a later migration altered, as version 1 made them; the others from schema.py.
    md = sa.MetaData()
    frozen = [
        sa.Table(
            "issues",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("issue_date", sa.Date, nullable=False, unique=True),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("subject", sa.Text),
            sa.Column("paper_count", sa.Integer, nullable=False, server_default="0"),
            sa.Column("html", sa.Text),
            sa.Column("text", sa.Text),
            sa.Column("preheader", sa.Text),
            sa.Column("created_at", schema.UTCDateTime, nullable=False),
            sa.Column("updated_at", schema.UTCDateTime, nullable=False),
        ),
        sa.Table(
            "subscribers",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("email", sa.Text, nullable=False, unique=True),
            sa.Column("name", sa.Text, nullable=False, server_default=""),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("created_at", schema.UTCDateTime, nullable=False),
            sa.Column("updated_at", schema.UTCDateTime, nullable=False),
            sa.Column("unsubscribed_at", schema.UTCDateTime),
            sa.Column("bounced_at", schema.UTCDateTime),
        ),
        sa.Table(
            "deliveries",
            md,
            sa.Column(
                "issue_id",
                sa.Integer,
                sa.ForeignKey("issues.id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column(
                "subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True
            ),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
            sa.Column("message_id", sa.Text),
            sa.Column("claimed_by", sa.Text),
            sa.Column("claimed_at", schema.UTCDateTime),
            sa.Column("sent_at", schema.UTCDateTime),
            sa.Column("reply", sa.Text),
            sa.Column("in_doubt", sa.Boolean, nullable=False, server_default=sa.false()),
            sa.Column("updated_at", schema.UTCDateTime, nullable=False),
            sa.Index("ix_deliveries_issue_status", "issue_id", "status"),
        ),
    ]
    schema.metadata.create_all(conn, tables=[schema.papers, schema.sources])
    md.create_all(conn, tables=frozen)
    schema.metadata.create_all(conn, tables=[schema.issue_papers])


def _v2(conn: sa.Connection) -> None:
    """Re-normalise stored addresses with IDNA 2008 (:func:`normalise_email`).

    Version 1 stored domains as IDNA 2003 A-labels (``jo@xn--bcher-kva.example``); they are
    now kept in Unicode (``jo@bücher.example``), so the same address typed again finds its
    row.  A row is never dropped or merged (deliveries refer to it): one the validator now
    refuses, or whose new form another row already has, is left as it is and reported in
    the log; `newsletter subscribers remove` takes it by its stored address.  ``updated_at``
    is not touched, so a pending sign-up's confirmation link keeps working.
    """
    from newsletter.subscribers import BadAddress, normalise_email

    t = schema.subscribers
    rows = conn.execute(sa.select(t.c.id, t.c.email).order_by(t.c.id)).all()
    taken = {r.email for r in rows}
    for row in rows:
        try:
            new = normalise_email(row.email)
        except BadAddress as e:
            log.warning(
                "subscriber %d: %s; left as it is (it would not be accepted today)", row.id, e
            )
            continue
        if new == row.email:
            continue
        if new in taken:
            log.warning(
                "subscriber %d: %s is the same address as %s, which another subscriber has; "
                "left as it is (remove one of the two)",
                row.id,
                row.email,
                new,
            )
            continue
        conn.execute(t.update().where(t.c.id == row.id).values(email=new))
        taken.discard(row.email)
        taken.add(new)


def _v3(conn: sa.Connection) -> None:
    """The bounces table, defined here as it was at version 3 so that later changes to
    ``schema.bounces`` (each with its own migration) do not change what this step does."""
    md = sa.MetaData()
    # Only what the foreign keys need to resolve; these tables exist already.
    sa.Table("subscribers", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("issues", md, sa.Column("id", sa.Integer, primary_key=True))
    bounces = sa.Table(
        "bounces",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_key", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False, server_default=""),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text),
        sa.Column("diagnostic", sa.Text),
        sa.Column(
            "subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="SET NULL")
        ),
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="SET NULL")),
        sa.Column("issue_date", sa.Date),
        sa.Column("action", sa.Text),
        sa.Column("received_at", schema.UTCDateTime, nullable=False),
        sa.Column("recorded_at", schema.UTCDateTime, nullable=False),
        sa.UniqueConstraint("message_key", "recipient", name="uq_bounces_message_recipient"),
        sa.Index("ix_bounces_subscriber", "subscriber_id", "kind", "received_at"),
        sa.Index("ix_bounces_issue", "issue_id", "kind"),
    )
    bounces.create(conn)


def _v4(conn: sa.Connection) -> None:
    """The title keys of papers stored so far (rows already duplicated stay two rows)."""
    from newsletter.models import Paper
    from newsletter.sources.merge import identity_key

    md = sa.MetaData()
    papers = sa.Table(  # as version 1 made it, the columns read here
        "papers",
        md,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("title", sa.Text),
        sa.Column("authors", sa.JSON),
    )
    table = sa.Table(
        "paper_titles",
        md,
        sa.Column(
            "paper_id", sa.Text, sa.ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("title_key", sa.Text, nullable=False),
        sa.Column("first_author", sa.Text, nullable=False),
        sa.Index("ix_paper_titles_title_key", "title_key"),
    )
    table.create(conn)
    rows = []
    for r in conn.execute(sa.select(papers.c.id, papers.c.title, papers.c.authors)):
        key = identity_key(Paper(id=r.id, title=r.title, authors=tuple(r.authors)))
        if key is not None:
            rows.append({"paper_id": r.id, "title_key": key[0], "first_author": key[1]})
    if rows:
        conn.execute(table.insert(), rows)


def _v5(conn: sa.Connection) -> None:
    """Subscribers' interests and libraries, defined here as they were at version 5."""
    md = sa.MetaData()
    sa.Table("subscribers", md, sa.Column("id", sa.Integer, primary_key=True))

    def subscriber() -> sa.ForeignKey:
        return sa.ForeignKey("subscribers.id", ondelete="CASCADE")

    tables = [
        sa.Table(
            "subscriber_interests",
            md,
            sa.Column("subscriber_id", sa.Integer, subscriber(), primary_key=True),
            sa.Column("keywords", sa.JSON, nullable=False),
            sa.Column("authors", sa.JSON, nullable=False),
            sa.Column("categories", sa.JSON, nullable=False),
            sa.Column("only_for_you", sa.Boolean, nullable=False, server_default=sa.false()),
            sa.Column("updated_at", schema.UTCDateTime, nullable=False),
        ),
        sa.Table(
            "library_papers",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("key", sa.Text, nullable=False, unique=True),
            sa.Column("paper_id", sa.Text),
            sa.Column("title", sa.Text, nullable=False, server_default=""),
            sa.Column("abstract", sa.Text, nullable=False, server_default=""),
            sa.Column("authors", sa.JSON, nullable=False),
            sa.Column("created_at", schema.UTCDateTime, nullable=False),
            sa.Column("updated_at", schema.UTCDateTime, nullable=False),
        ),
        sa.Table(
            "subscriber_library",
            md,
            sa.Column("subscriber_id", sa.Integer, subscriber(), primary_key=True),
            sa.Column("paper_id", sa.Integer, sa.ForeignKey("library_papers.id"), primary_key=True),
            sa.Column("position", sa.Integer, nullable=False),
            sa.Index("ix_subscriber_library_paper_id", "paper_id"),
        ),
    ]
    for table in tables:
        table.create(conn)


def _v6(conn: sa.Connection) -> None:
    """Editions and cadence: an issue is (edition, date); subscribers choose daily or
    weekly; switchers' variants.  Existing issues and subscribers are daily.

    SQLite cannot drop a constraint, so ``issues`` is rebuilt (the store runs migrations
    with foreign keys off, so the rows referring to it stay, and checks them after).  What
    is there already (a column, a table, the index) is left as it is.
    """
    insp = sa.inspect(conn)
    has = {t: {c["name"] for c in insp.get_columns(t)} for t in ("issues", "subscribers")}
    has["deliveries"] = {c["name"] for c in insp.get_columns("deliveries")}
    indexes = {i["name"] for i in insp.get_indexes("deliveries")}
    tables = set(insp.get_table_names())
    md = sa.MetaData()
    sa.Table("papers", md, sa.Column("id", sa.Text, primary_key=True))
    sa.Table("subscribers", md, sa.Column("id", sa.Integer, primary_key=True))
    kept = [
        "id",
        "issue_date",
        "status",
        "subject",
        "paper_count",
        "html",
        "text",
        "preheader",
        "created_at",
        "updated_at",
    ]
    sqlite = conn.dialect.name == "sqlite"
    if "edition" not in has["issues"] and sqlite:
        new = sa.Table(
            "issues_v6",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("issue_date", sa.Date, nullable=False),
            sa.Column("edition", sa.Text, nullable=False, server_default="daily"),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("subject", sa.Text),
            sa.Column("paper_count", sa.Integer, nullable=False, server_default="0"),
            sa.Column("html", sa.Text),
            sa.Column("text", sa.Text),
            sa.Column("preheader", sa.Text),
            sa.Column("created_at", schema.UTCDateTime, nullable=False),
            sa.Column("updated_at", schema.UTCDateTime, nullable=False),
            sa.UniqueConstraint("edition", "issue_date", name="uq_issues_edition_date"),
        )
        new.create(conn)
        cols = ", ".join(kept)
        conn.exec_driver_sql(f"INSERT INTO issues_v6 ({cols}) SELECT {cols} FROM issues")
        conn.exec_driver_sql("DROP TABLE issues")
        conn.exec_driver_sql("ALTER TABLE issues_v6 RENAME TO issues")
    elif "edition" not in has["issues"]:
        conn.exec_driver_sql("ALTER TABLE issues ADD COLUMN edition TEXT NOT NULL DEFAULT 'daily'")
        for uc in insp.get_unique_constraints("issues"):
            if uc["column_names"] == ["issue_date"]:
                conn.exec_driver_sql(f'ALTER TABLE issues DROP CONSTRAINT "{uc["name"]}"')
        conn.exec_driver_sql(
            "ALTER TABLE issues ADD CONSTRAINT uq_issues_edition_date UNIQUE (edition, issue_date)"
        )
    sa.Table("issues", md, sa.Column("id", sa.Integer, primary_key=True))
    if "cadence" not in has["subscribers"]:
        conn.exec_driver_sql(
            "ALTER TABLE subscribers ADD COLUMN cadence TEXT NOT NULL DEFAULT 'daily'"
        )
    if "cadence_changed_at" not in has["subscribers"]:
        stamp = schema.UTCDateTime().compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE subscribers ADD COLUMN cadence_changed_at {stamp}")
    variants = sa.Table(
        "issue_variants",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "issue_id",
            sa.Integer,
            sa.ForeignKey("issues.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("since", schema.UTCDateTime, nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("preheader", sa.Text),
        sa.Column("html", sa.Text),
        sa.Column("text", sa.Text),
        sa.Column("paper_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", schema.UTCDateTime, nullable=False),
        sa.UniqueConstraint("issue_id", "since", name="uq_issue_variants_issue_since"),
    )
    variant_papers = sa.Table(
        "variant_papers",
        md,
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
    for table in (variants, variant_papers):
        if table.name not in tables:
            table.create(conn)
    if "variant_id" not in has["deliveries"]:
        conn.exec_driver_sql(
            "ALTER TABLE deliveries ADD COLUMN variant_id INTEGER REFERENCES issue_variants (id)"
        )
    if "ix_deliveries_subscriber" not in indexes:
        conn.exec_driver_sql(
            "CREATE INDEX ix_deliveries_subscriber ON deliveries (subscriber_id, issue_id)"
        )


def _v7(conn: sa.Connection) -> None:
    """Frozen "For you" copies and the ledger rows carrying them, as they were at version 7."""
    md = sa.MetaData()
    sa.Table("issues", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "deliveries",
        md,
        sa.Column("issue_id", sa.Integer, primary_key=True),
        sa.Column("subscriber_id", sa.Integer, primary_key=True),
    )
    copies = sa.Table(
        "personal_copies",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("topic_order", sa.JSON, nullable=False),
        sa.Column("only_for_you", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", schema.UTCDateTime, nullable=False),
        sa.UniqueConstraint("issue_id", "key", name="uq_personal_copies_issue_key"),
    )
    rows = sa.Table(
        "personal_deliveries",
        md,
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
    copies.create(conn)
    rows.create(conn)


MIGRATIONS: list[Migration] = [
    (1, "papers, sources, issues, subscribers, deliveries", _v1),
    (2, "subscriber addresses re-normalised with IDNA 2008", _v2),
    (3, "bounces: later bounces and complaints", _v3),
    (4, "paper title keys: one row per paper across identities", _v4),
    (5, "subscribers' interests and their libraries' papers, stored once", _v5),
    (6, "editions: daily and weekly issues, subscriber cadence, switchers' variants", _v6),
    (7, 'frozen "For you" copies of each issue, and the ledger rows carrying them', _v7),
]

LATEST = MIGRATIONS[-1][0]


def current_version(conn: sa.Connection) -> int:
    if not sa.inspect(conn).has_table("schema_migrations"):
        return 0
    v = conn.execute(sa.select(sa.func.max(schema.schema_migrations.c.version))).scalar()
    return int(v or 0)


def migrate(conn: sa.Connection, now: dt.datetime) -> list[int]:
    """Bring the database to the latest version inside the caller's write transaction.

    Returns the versions applied.  The caller holds the write lock (BEGIN IMMEDIATE on
    SQLite, an advisory lock on PostgreSQL), so two processes starting at once do not both
    migrate.
    """
    schema.schema_migrations.create(conn, checkfirst=True)
    have = current_version(conn)
    if have > LATEST:
        raise StoreError(
            f"the database is at schema version {have}, newer than this program knows "
            f"({LATEST}); upgrade newsletter"
        )
    applied = []
    for version, description, step in MIGRATIONS:
        if version <= have:
            continue
        step(conn)
        conn.execute(
            schema.schema_migrations.insert().values(
                version=version, description=description, applied_at=now
            )
        )
        applied.append(version)
    return applied
