"""The one database object every part of the store works over: the engine, transactions
that take the write lock from their start, and opening (creating, migrating) a database.

SQLite by default (one file, WAL, busy timeout, write transactions taken with ``BEGIN
IMMEDIATE`` so two processes queue instead of failing); any SQLAlchemy URL works,
PostgreSQL included.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy import event

from newsletter.errors import StoreError
from newsletter.store import migrations

#: How long a SQLite writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_S = 30.0


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


class Database:
    """An engine and its transactions; each part of the store (papers, subscribers, the
    ledger, ...) is a class over this one object, and :class:`newsletter.store.Store` is
    all of them at once."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        # SQLite has one writer.  Threads of this process queue on a mutex rather than in
        # SQLite's busy handler, which sleeps 1, 2, 5, 10 ms... between tries however soon
        # the lock is free (measured: 338 against 242 messages/s with 8 sender threads).
        self._write_mutex: AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )

    @classmethod
    def open(cls, url: str, *, now: dt.datetime | None = None) -> Self:
        """Connect, and create or migrate the schema if needed."""
        if url.startswith("sqlite:///") and ":memory:" not in url:
            from pathlib import Path

            parent = Path(url.removeprefix("sqlite:///")).parent
            if not parent.is_dir():
                raise StoreError(f"cannot create the database: folder {parent} does not exist")
        db = cls(_make_engine(url))
        try:
            with db.write(foreign_keys=False) as conn:
                if db.engine.dialect.name == "postgresql":
                    # Serialise concurrent first starts; released at commit.
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7263011)")
                migrations.migrate(conn, now or _utcnow())
        except sa.exc.OperationalError as e:
            db.close()
            raise StoreError(f"cannot open the database {db.safe_url}: {e.orig}") from e
        except sa.exc.DatabaseError as e:
            db.close()
            raise StoreError(f"{db.safe_url} is not a usable database: {e.orig}") from e
        except BaseException:
            db.close()
            raise
        return db

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
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
