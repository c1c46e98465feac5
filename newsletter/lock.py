"""Locks between processes: one sender at a time, one daemon at a time, per database.

For SQLite a file lock next to the database file (``<db>.lock`` for sending,
``<db>.daemon.lock`` for the daemon; flock, released by the kernel when the holder dies,
even by SIGKILL); for PostgreSQL a session advisory lock.  A lock file says who holds it,
so the second process can tell the operator.

Send workers also each hold a lock of their own while they deliver (:func:`worker_alive`):
its holder's death releases it at once, so the other workers can tell a dead worker
(:func:`worker_gone`) from one that is only slow, and take its rows over without waiting
for its lease to run out.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import socket
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import sqlalchemy as sa

from newsletter.errors import NewsletterError

#: The locks: one process sending (or several workers, sharing it), one daemon, one
#: process preparing an issue.
LockName = Literal["send", "daemon", "prepare"]
#: PostgreSQL advisory lock keys, one per kind of lock (the one-bigint form).
_PG_KEYS: dict[LockName, int] = {"send": 7263012, "daemon": 7263013, "prepare": 7263014}
#: The first key of the workers' liveness locks (the two-int form: namespace, worker).
_PG_WORKER_NAMESPACE = 7263015
#: Who holds an advisory lock: the holders' application_name (see store.client_name).
#: objsubid 1 is the one-bigint form, so a worker's lock never counts as a holder.
_PG_HOLDERS = sa.text(
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = :k AND l.objsubid = 1 "
    "ORDER BY a.pid"
)
_WHAT: dict[LockName, str] = {
    "send": "sending",
    "daemon": "running as the daemon",
    "prepare": "preparing an issue",
}


class LockHeld(NewsletterError):
    """Another newsletter process holds the lock; the message says which."""


def lock_path(database_url: str, name: LockName = "send") -> Path | None:
    """``<db>.lock`` (send) or ``<db>.daemon.lock``; None when the database is no file."""
    return _beside(database_url, ".lock" if name == "send" else f".{name}.lock")


def _beside(database_url: str, suffix: str) -> Path | None:
    """The SQLite database file's path with ``suffix`` appended; None when it is no file."""
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database + suffix)


@contextmanager
def hold_lock(
    engine: sa.Engine, name: LockName, *, shared: bool = False, wait: bool = False
) -> Iterator[None]:
    """Hold the lock ``name`` ("send", "daemon" or "prepare") for the block.

    ``shared``: many holders at once (send workers), but none beside an exclusive holder.
    Raises :class:`LockHeld` at once when taken, unless ``wait``.
    """
    what = _WHAT[name]
    if engine.dialect.name == "postgresql":
        key = _PG_KEYS[name]
        kind = "_shared" if shared else ""
        take = f"pg_{'' if wait else 'try_'}advisory_lock{kind}(:k)"
        with engine.connect() as conn:
            got = conn.execute(sa.text(f"SELECT {take}"), {"k": key}).scalar()
            conn.commit()
            if not wait and not got:
                holders = conn.execute(_PG_HOLDERS, {"k": key}).scalars().all()
                who = ", ".join(h or "an unnamed client" for h in holders) or "unknown"
                raise LockHeld(
                    f"another newsletter process is {what}: {who} (PostgreSQL advisory lock)"
                )
            try:
                yield
            finally:
                conn.execute(sa.text(f"SELECT pg_advisory_unlock{kind}(:k)"), {"k": key})
                conn.commit()
        return
    path = lock_path(engine.url.render_as_string(hide_password=False), name)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 500, 0).decode("utf-8", "replace").strip()
            holder = holder or "one or more send workers"
            raise LockHeld(
                f"another newsletter process is {what}: {holder} (lock {path})"
            ) from None
        if not shared:  # shared holders would overwrite each other's line
            since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            info = f"pid {os.getpid()} on {socket.gethostname()}, {what} since {since}\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
        try:
            yield
        finally:
            if not shared:
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_holder(engine: sa.Engine, name: LockName = "send") -> str | None:
    """Who holds the lock exclusively now (for `newsletter status`), or None."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            holders = conn.execute(_PG_HOLDERS, {"k": _PG_KEYS[name]}).scalars().all()
        return ", ".join(h or "an unnamed client" for h in holders) or None
    path = lock_path(engine.url.render_as_string(hide_password=False), name)
    if path is None or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            # A shared probe: it never stands in the way of a sender taking the lock.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 500, 0).decode("utf-8", "replace").strip() or "unknown process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- workers


def _worker_key(worker: str) -> int:
    """The second key of a worker's PostgreSQL lock: a signed 32-bit hash of its id."""
    return int.from_bytes(zlib.crc32(worker.encode()).to_bytes(4, "big"), "big", signed=True)


def _worker_file(engine: sa.Engine, worker: str) -> Path | None:
    """``<db>.worker.<host>.<pid>.<run>.lock`` for a SQLite file, else None."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", ".", worker)
    return _beside(engine.url.render_as_string(hide_password=False), f".worker.{safe}.lock")


@contextmanager
def worker_alive(engine: sa.Engine, worker: str) -> Iterator[None]:
    """Hold, for the block, the lock that tells other send workers that ``worker`` (a
    ``host:pid:run`` id) is alive: a session advisory lock on PostgreSQL, an flock on a
    file next to a SQLite database.  Its death, even by SIGKILL, releases it at once."""
    if engine.dialect.name == "postgresql":
        key = {"ns": _PG_WORKER_NAMESPACE, "k": _worker_key(worker)}
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:ns, :k)"), key)
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:ns, :k)"), key)
                conn.commit()
        return
    path = _worker_file(engine, worker)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def worker_gone(engine: sa.Engine, worker: str) -> bool:
    """True when ``worker`` (a ``host:pid:run`` id) is known to be dead: nobody holds its
    :func:`worker_alive` lock.  False when it holds it (alive, if perhaps stalled) or
    cannot be told (a SQLite worker on another host, an id of another form): its rows
    then wait for their lease."""
    parts = worker.split(":")
    if len(parts) != 3:
        return False
    if engine.dialect.name == "postgresql":
        key = {"ns": _PG_WORKER_NAMESPACE, "k": _worker_key(worker)}
        with engine.connect() as conn:
            free = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:ns, :k)"), key).scalar())
            if free:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:ns, :k)"), key)
            conn.commit()
        return free
    path = _worker_file(engine, worker)
    if path is None or parts[0] != socket.gethostname():
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:  # made before its first claim, removed after its last
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        path.unlink(missing_ok=True)  # the dead worker's file
        return True
    finally:
        os.close(fd)
