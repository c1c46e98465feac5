"""The send lock: one process at a time delivers issues for a database.

For SQLite a file lock next to the database file (``<db>.lock``, flock: released by the
kernel when the holder dies, even by SIGKILL); for PostgreSQL a session advisory lock.
The lock file says who holds it, so the second process can tell the operator.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from newsletter.errors import NewsletterError

_PG_KEY = 7263012


class LockHeld(NewsletterError):
    """Another newsletter process is delivering; the message says which."""


def lock_path(database_url: str) -> Path | None:
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database + ".lock")


@contextmanager
def send_lock(engine: sa.Engine, *, purpose: str = "send") -> Iterator[None]:
    """Hold the send lock for the block, or raise :class:`LockHeld` at once."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _PG_KEY}).scalar()
            conn.commit()
            if not got:
                raise LockHeld(
                    "another newsletter process is sending (PostgreSQL advisory lock held)"
                )
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_KEY})
                conn.commit()
        return
    path = lock_path(engine.url.render_as_string(hide_password=False))
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 500, 0).decode("utf-8", "replace").strip() or "unknown process"
            raise LockHeld(
                f"another newsletter process is sending: {holder} (lock {path})"
            ) from None
        since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        info = f"pid {os.getpid()} on {socket.gethostname()}, {purpose} since {since}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_holder(database_url: str) -> str | None:
    """Who holds the send lock now (for `newsletter status`), or None."""
    path = lock_path(database_url)
    if path is None or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 500, 0).decode("utf-8", "replace").strip() or "unknown process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
