"""Numbered schema migrations, applied automatically and exactly once, in order.

Each migration is ``(version, description, function(connection))``.  To change the
schema: edit ``schema.py`` and append a migration that brings an existing database to the
new shape.  Migration 1 builds the tables from ``schema.py``; the first time a later
migration alters a table, freeze that table's version-1 definition inside ``_v1`` (the
test that migrates a fresh database twice-over fails until you do).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa

from newsletter.errors import StoreError
from newsletter.store import schema

Migration = tuple[int, str, Callable[[sa.Connection], None]]


def _v1(conn: sa.Connection) -> None:
    tables = [
        schema.papers,
        schema.sources,
        schema.issues,
        schema.issue_papers,
        schema.subscribers,
        schema.deliveries,
    ]
    schema.metadata.create_all(conn, tables=tables)


MIGRATIONS: list[Migration] = [
    (1, "papers, sources, issues, subscribers, deliveries", _v1),
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
