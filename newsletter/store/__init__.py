"""The store: papers, source state, issues, subscribers and deliveries behind named methods.

SQLite by default (one file, WAL, busy timeout, write transactions taken with
``BEGIN IMMEDIATE`` so two processes queue instead of failing); any SQLAlchemy URL works,
PostgreSQL included.  The schema is created and migrated on first use.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from newsletter.errors import StoreError
from newsletter.models import AnnounceType, Edition, FetchStatus, Paper, SourceState
from newsletter.sources.merge import id_rank, identity_key, merge_paper
from newsletter.store import migrations, schema
from newsletter.store.bounces import BounceStore
from newsletter.store.interests import InterestStore
from newsletter.store.ledger import Claim, IssueRecord, LedgerStore, Recovered, VariantRecord
from newsletter.store.signup import SignupStore
from newsletter.store.subscribers import ImportResult, SubscriberStore

__all__ = [
    "Claim",
    "ImportResult",
    "IssueRecord",
    "Recovered",
    "Store",
    "UpsertResult",
    "VariantRecord",
]

#: How long a SQLite writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_S = 30.0
#: Rows per IN (...) query: below SQLite's default limit of 999 bound parameters.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class UpsertResult:
    new: int = 0  # papers never stored before
    updated: int = 0  # known papers whose record changed (merged signals, filled gaps)
    unchanged: int = 0


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def client_name() -> str:
    """How this process shows itself to PostgreSQL (pg_stat_activity.application_name)."""
    return f"newsletter pid {os.getpid()} on {socket.gethostname()}"[:63]


def _make_engine(url: str) -> sa.Engine:
    kwargs: dict[str, Any] = {}
    try:
        if sa.engine.make_url(url).get_backend_name() == "postgresql":
            # Named, so a lock holder can be told apart; a pool big enough for the
            # sender threads, the lease heartbeat and the lock connections.
            kwargs = {"connect_args": {"application_name": client_name()}, "pool_size": 20}
        engine = sa.create_engine(url, **kwargs)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as e:
        raise StoreError(f"cannot use database URL {url!r}: {e}") from e
    if engine.dialect.name == "sqlite":
        # pysqlite's own transaction handling defers BEGIN until the first write and cannot
        # do BEGIN IMMEDIATE; take it over (SQLAlchemy's documented recipe).
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA foreign_keys = ON")
            if url.rstrip("/") not in ("sqlite:", "sqlite://") and ":memory:" not in url:
                _use_wal(cur)
                cur.execute("PRAGMA synchronous = NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            immediate = conn.get_execution_options().get("immediate", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _use_wal(cur: Any) -> None:
    """Put the file in WAL mode (it stays so).  Switching needs a lock that SQLite may
    refuse at once, busy timeout or not, while another process opens the same new file:
    an already-WAL file is left alone, and a refused switch is tried again."""
    import sqlite3

    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Store(SubscriberStore, LedgerStore, SignupStore, BounceStore, InterestStore):
    """Named operations on the database; open with :meth:`open`.

    Papers and sources are here; subscribers, the send ledger, bounces and subscribers'
    interests come from the mixins.
    """

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        # SQLite has one writer.  Threads of this process queue on a mutex rather than in
        # SQLite's busy handler, which sleeps 1, 2, 5, 10 ms... between tries however soon
        # the lock is free (measured: 338 against 242 messages/s with 8 sender threads).
        self._write_mutex: AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )

    @classmethod
    def open(cls, url: str, *, now: dt.datetime | None = None) -> Store:
        """Connect, and create or migrate the schema if needed."""
        if url.startswith("sqlite:///") and ":memory:" not in url:
            from pathlib import Path

            parent = Path(url.removeprefix("sqlite:///")).parent
            if not parent.is_dir():
                raise StoreError(f"cannot create the database: folder {parent} does not exist")
        store = cls(_make_engine(url))
        try:
            with store.write(foreign_keys=False) as conn:
                if store.engine.dialect.name == "postgresql":
                    # Serialise concurrent first starts; released at commit.
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7263011)")
                migrations.migrate(conn, now or _utcnow())
        except sa.exc.OperationalError as e:
            store.close()
            raise StoreError(f"cannot open the database {store.safe_url}: {e.orig}") from e
        except sa.exc.DatabaseError as e:
            store.close()
            raise StoreError(f"{store.safe_url} is not a usable database: {e.orig}") from e
        except BaseException:
            store.close()
            raise
        return store

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self, *, foreign_keys: bool = True) -> Iterator[sa.Connection]:
        """A transaction that holds the write lock from its start (SQLite: BEGIN IMMEDIATE).

        ``foreign_keys=False`` (migrations): on SQLite, foreign keys are off for it, so
        that rebuilding a table (SQLite cannot drop a constraint) does not cascade the
        DROP into the rows that refer to it; they are checked before the commit instead.
        """
        with self._write_mutex, self.engine.connect().execution_options(immediate=True) as conn:
            raw: Any = None
            if not foreign_keys and self.dialect == "sqlite":
                # Only outside a transaction does SQLite take this pragma.
                raw = conn.connection.driver_connection
                raw.execute("PRAGMA foreign_keys = OFF")
            try:
                with self._transaction(conn):
                    yield conn
                    if raw is not None:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                        if broken:
                            raise StoreError(f"a migration broke foreign keys: {broken[:5]}")
            finally:
                if raw is not None:
                    raw.execute("PRAGMA foreign_keys = ON")

    @contextmanager
    def _transaction(self, conn: sa.Connection) -> Iterator[None]:
        try:
            tx = conn.begin()
        except sa.exc.OperationalError as e:
            if self.dialect == "sqlite" and "locked" in str(e.orig):
                # Past the busy timeout: another process kept the one write lock (it
                # was stopped mid-write, or a shell sits in a transaction).
                raise StoreError(
                    f"{self.safe_url}: the database stayed locked by another process "
                    f"for {BUSY_TIMEOUT_S:g} s (a stopped or stuck process holding a "
                    "write?); nothing was lost, run the command again once it is free"
                ) from e
            raise
        with tx:
            yield

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def schema_version(self) -> int:
        with self.read() as conn:
            return migrations.current_version(conn)

    # ----------------------------------------------------------------------- papers

    def upsert_papers(self, papers: Iterable[Paper], *, seen_at: dt.datetime) -> UpsertResult:
        """Store new papers and merge known ones: one row per paper, whatever the source.

        A record is the known paper with its id, else the one with the same identity_key
        (folded title and first author's surname: the same paper under an arXiv id in one
        feed and a DOI or a link in another); the row keeps the id it was stored under.
        """
        incoming = _one_per_paper(papers)
        if not incoming:
            return UpsertResult()
        new = updated = unchanged = 0
        t = schema.papers
        with self.write() as conn:
            existing = self._stored(conn, sorted(incoming))
            unknown = [p for pid, p in incoming.items() if pid not in existing]
            found = self._stored_by_title(conn, unknown)
            existing |= self._stored(conn, sorted(set(found.values())))
            inserts = []
            for pid in sorted(incoming):
                paper = incoming[pid]
                target = pid if pid in existing else found.get(pid)
                if target is None:
                    inserts.append(
                        _paper_to_row(paper, [paper.source] if paper.source else [])
                        | {"first_seen_at": seen_at, "updated_at": seen_at}
                    )
                    new += 1
                    continue
                old, old_sources = existing[target]
                merged = merge_paper(old, paper)
                srcs = old_sources + (
                    [paper.source] if paper.source and paper.source not in old_sources else []
                )
                if merged == old and srcs == old_sources:
                    unchanged += 1
                    continue
                conn.execute(
                    t.update()
                    .where(t.c.id == target)
                    .values(**_paper_to_row(merged, srcs), updated_at=seen_at)
                )
                existing[target] = (merged, srcs)
                if identity_key(merged) != identity_key(old):  # a title or author filled in
                    pt = schema.paper_titles
                    conn.execute(pt.delete().where(pt.c.paper_id == target))
                    self._save_keys(conn, [merged])
                updated += 1
            if inserts:
                conn.execute(t.insert(), inserts)
                self._save_keys(conn, [incoming[r["id"]] for r in inserts])
        return UpsertResult(new=new, updated=updated, unchanged=unchanged)

    @staticmethod
    def _stored(conn: sa.Connection, ids: list[str]) -> dict[str, tuple[Paper, list[str]]]:
        """Stored papers by id, with their source lists."""
        t = schema.papers
        out: dict[str, tuple[Paper, list[str]]] = {}
        for i in range(0, len(ids), _CHUNK):
            for row in conn.execute(sa.select(t).where(t.c.id.in_(ids[i : i + _CHUNK]))):
                out[row.id] = (_paper_from_row(row), list(row.sources))
        return out

    @staticmethod
    def _stored_by_title(conn: sa.Connection, papers: list[Paper]) -> dict[str, str]:
        """For papers not stored under their own id: the id of a stored paper with the same
        identity_key (the first by id when several match), by incoming id."""
        keys = {p.id: k for p in papers if (k := identity_key(p)) is not None}
        wanted = sorted({k[0] for k in keys.values()})
        pt = schema.paper_titles
        stored: dict[tuple[str, str], str] = {}
        for i in range(0, len(wanted), _CHUNK):
            q = sa.select(pt).where(pt.c.title_key.in_(wanted[i : i + _CHUNK]))
            for row in conn.execute(q.order_by(pt.c.paper_id)):
                stored.setdefault((row.title_key, row.first_author), row.paper_id)
        return {pid: stored[k] for pid, k in keys.items() if k in stored}

    @staticmethod
    def _save_keys(conn: sa.Connection, papers: list[Paper]) -> None:
        rows = [
            {"paper_id": p.id, "title_key": k[0], "first_author": k[1]}
            for p in papers
            if (k := identity_key(p)) is not None
        ]
        if rows:
            conn.execute(schema.paper_titles.insert(), rows)

    def papers(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        not_issued_before: dt.date | None = None,
        edition: Edition = Edition.DAILY,
        limit: int | None = None,
    ) -> list[Paper]:
        """Stored papers first seen in [since, until), newest first then by id.

        ``not_issued_before``: leave out papers that an issue of ``edition`` dated before
        it carried (the issue of that date itself may hold them: rebuilding it gives the
        same papers).
        """
        t = schema.papers
        q = sa.select(t)
        if since is not None:
            q = q.where(t.c.first_seen_at >= since)
        if until is not None:
            q = q.where(t.c.first_seen_at < until)
        if not_issued_before is not None:
            ip, iss = schema.issue_papers, schema.issues
            q = q.where(
                ~sa.exists()
                .where(ip.c.paper_id == t.c.id, ip.c.issue_id == iss.c.id)
                .where(iss.c.issue_date < not_issued_before, iss.c.edition == edition.value)
            )
        q = q.order_by(t.c.first_seen_at.desc(), t.c.id)
        if limit is not None:
            q = q.limit(limit)
        with self.read() as conn:
            return [_paper_from_row(r) for r in conn.execute(q)]

    def paper_sources(self, paper_id: str) -> list[str]:
        with self.read() as conn:
            v = conn.execute(
                sa.select(schema.papers.c.sources).where(schema.papers.c.id == paper_id)
            ).scalar()
        return list(v or [])

    def count_papers(self) -> int:
        with self.read() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(schema.papers)).scalar_one()
            )

    # ----------------------------------------------------------------------- sources

    def source_state(self, name: str) -> SourceState | None:
        t = schema.sources
        with self.read() as conn:
            row = conn.execute(sa.select(t).where(t.c.name == name)).first()
        return None if row is None else _state_from_row(row)

    def save_source_state(self, state: SourceState) -> None:
        t = schema.sources
        values = {
            "url": state.url,
            "etag": state.etag,
            "last_modified": state.last_modified,
            "last_status": state.last_status.value if state.last_status else None,
            "last_http_status": state.last_http_status,
            "last_error": state.last_error,
            "last_attempt_at": state.last_attempt_at,
            "last_success_at": state.last_success_at,
            "last_new": state.last_new,
            "last_total": state.last_total,
        }
        with self.write() as conn:
            done = conn.execute(t.update().where(t.c.name == state.name).values(**values))
            if done.rowcount == 0:
                conn.execute(t.insert().values(name=state.name, **values))

    def source_states(self) -> list[SourceState]:
        t = schema.sources
        with self.read() as conn:
            return [_state_from_row(r) for r in conn.execute(sa.select(t).order_by(t.c.name))]


def _one_per_paper(papers: Iterable[Paper]) -> dict[str, Paper]:
    """The records of one batch merged per paper: by id, then across ids by identity_key
    (the record listed first keeps its text; the best id, arXiv then DOI then link, names
    the paper), by id."""
    by_id: dict[str, Paper] = {}
    for p in papers:
        by_id[p.id] = merge_paper(by_id[p.id], p) if p.id in by_id else p
    by_key: dict[tuple[str, str], str] = {}
    out: dict[str, Paper] = {}
    for pid, p in by_id.items():
        key = identity_key(p)
        if key is None or key not in by_key:
            out[pid] = p
            if key is not None:
                by_key[key] = pid
            continue
        first = by_key[key]
        merged = merge_paper(out.pop(first), p)
        best = min((first, pid), key=lambda i: (id_rank(i), i))
        out[best] = dataclasses.replace(merged, id=best)
        by_key[key] = best
    return out


def _state_from_row(row: Any) -> SourceState:
    return SourceState(
        name=row.name,
        url=row.url,
        etag=row.etag,
        last_modified=row.last_modified,
        last_status=FetchStatus(row.last_status) if row.last_status else None,
        last_http_status=row.last_http_status,
        last_error=row.last_error,
        last_attempt_at=row.last_attempt_at,
        last_success_at=row.last_success_at,
        last_new=row.last_new,
        last_total=row.last_total,
    )


def _paper_to_row(p: Paper, sources: list[str]) -> dict[str, Any]:
    return {
        "id": p.id,
        "title": p.title,
        "abstract": p.abstract,
        "authors": list(p.authors),
        "url": p.url,
        "pdf_url": p.pdf_url,
        "categories": list(p.categories),
        "published_at": p.published,
        "announced_at": p.announced,
        "announce_type": p.announce_type.value if p.announce_type else None,
        "sources": sources,
        "upvotes": p.upvotes,
        "comments": p.comments,
        "keywords": list(p.keywords),
        "arxiv_id": p.arxiv_id,
        "doi": p.doi,
    }


def _paper_from_row(row: Any) -> Paper:
    return Paper(
        id=row.id,
        title=row.title,
        abstract=row.abstract,
        authors=tuple(row.authors),
        url=row.url,
        pdf_url=row.pdf_url,
        categories=tuple(row.categories),
        published=row.published_at,
        announced=row.announced_at,
        source=row.sources[0] if row.sources else "",
        announce_type=AnnounceType(row.announce_type) if row.announce_type else None,
        upvotes=row.upvotes,
        comments=row.comments,
        keywords=tuple(row.keywords),
        arxiv_id=row.arxiv_id,
        doi=row.doi,
    )
