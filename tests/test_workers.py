"""Several `newsletter send --worker` processes sharing one issue through the ledger, on
SQLite and PostgreSQL: exactly once at the server, and a worker killed with SIGKILL has
its rows taken over by the others once its lease runs out."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import both_backends
from smtp_server import wait_for

from newsletter.config import load_settings
from newsletter.models import DeliveryStatus
from newsletter.store import Store, schema

pytestmark = [pytest.mark.slow, both_backends]

SECRET = "test-secret-key-0123456789abcdef"
ENV = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET}


def setup(write_config, sample_feeds: Path, port: int, *, subscribers: int, lease: float):
    path = write_config(
        f"""
[list]
from_address = "papers@example.org"
base_url = "https://papers.example.org"
[schedule]
timezone = "UTC"
[fetch]
window_days = 1
[delivery]
transport = "smtp"
lease_seconds = {lease}
[smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
connections = 2
[[sources]]
name = "hf-daily"
path = "{sample_feeds}/hf-daily.json"
"""
    )
    settings = load_settings(path, env=ENV)
    with Store.open(settings.database_url) as store:
        rows = [(f"reader{i:04d}@example.org", "") for i in range(subscribers)]
        store.import_subscribers(rows, now=dt.datetime.now(dt.UTC))
    return path, settings


def worker(path: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "newsletter", "-c", str(path), "send", "--worker"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
        )


def ledger(settings) -> list[tuple[str, str, str | None, bool]]:
    d = schema.deliveries
    with Store.open(settings.database_url) as store, store.read() as conn:
        return [
            (r.status, r.claimed_by or "", r.message_id, bool(r.in_doubt))
            for r in conn.execute(
                sa.select(d.c.status, d.c.claimed_by, d.c.message_id, d.c.in_doubt)
            )
        ]


def test_two_workers_deliver_one_issue_exactly_once(
    write_config, sample_feeds, sink_process, tmp_path
):
    sink = sink_process(delay=0.01)
    path, settings = setup(write_config, sample_feeds, sink.port, subscribers=400, lease=30)
    procs = [worker(path, tmp_path / f"w{i}.log") for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(180) == 0, (tmp_path / f"w{i}.log").read_text()
    sink.settle()
    copies = sink.copies()
    assert len(copies) == 400
    assert all(len(mids) == 1 for mids in copies.values())
    rows = ledger(settings)
    assert {r[0] for r in rows} == {DeliveryStatus.SENT.value}
    # Both processes took part: the rows name two different pids.
    pids = {by.split(":")[1] for _, by, _, _ in rows}
    assert len(pids) == 2, pids


def test_a_killed_workers_rows_are_taken_over_at_once_not_after_its_lease(
    write_config, sample_feeds, sink_process, tmp_path
):
    """SIGKILL releases the victim's liveness lock (a PostgreSQL session lock, or an flock
    next to the SQLite file): the survivor takes its rows over within seconds, although
    the lease is two minutes."""
    sink = sink_process(delay=0.02)
    lease = 120.0
    path, settings = setup(write_config, sample_feeds, sink.port, subscribers=300, lease=lease)
    victim = worker(path, tmp_path / "victim.log")
    assert wait_for(lambda: sink.count() >= 20, timeout=60), (tmp_path / "victim.log").read_text()
    survivor = worker(path, tmp_path / "survivor.log")
    assert wait_for(lambda: sink.count() >= 80, timeout=60)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed_at = time.monotonic()
    assert survivor.wait(180) == 0, (tmp_path / "survivor.log").read_text()
    assert time.monotonic() - killed_at < lease / 4, "the survivor waited for the lease"
    assert re.search(
        r"worker \S+ is gone: \d+ of its row\(s\) queued again",
        (tmp_path / "survivor.log").read_text(),
    )
    check_exactly_once_but_in_flight(sink, settings, connections=2)


def test_a_stalled_worker_keeps_its_rows_until_its_lease_runs_out(
    write_config, sample_feeds, sink_process, tmp_path
):
    """A worker that is alive but stalled (SIGSTOP) still holds its liveness lock: its rows
    are taken over only once its lease runs out; resumed (SIGCONT), it finds them gone and
    does not send them again."""
    sink = sink_process(delay=0.02)
    lease = 4.0
    path, settings = setup(write_config, sample_feeds, sink.port, subscribers=300, lease=lease)
    victim = worker(path, tmp_path / "victim.log")
    assert wait_for(lambda: sink.count() >= 20, timeout=60), (tmp_path / "victim.log").read_text()
    survivor = worker(path, tmp_path / "survivor.log")
    assert wait_for(lambda: sink.count() >= 80, timeout=60)
    stop_between_writes(victim, settings)
    stopped_at = time.monotonic()
    try:
        assert survivor.wait(180) == 0, (tmp_path / "survivor.log").read_text()
        assert time.monotonic() - stopped_at >= lease - 0.5
    finally:
        victim.send_signal(signal.SIGCONT)
    assert victim.wait(60) == 0, (tmp_path / "victim.log").read_text()
    assert "is gone" not in (tmp_path / "survivor.log").read_text()
    check_exactly_once_but_in_flight(sink, settings, connections=2)


def stop_between_writes(victim: subprocess.Popen, settings) -> None:
    """SIGSTOP ``victim`` at a moment it holds no database transaction.

    Stopped inside one, it would hold SQLite's single write lock (the others give up after
    the busy timeout: "stayed locked by another process") or, on PostgreSQL, row locks the
    others must wait for: a stalled database session, not the stalled worker this test is
    about.  So: stop it, look, and let it run a moment more until it is caught outside."""
    for _ in range(200):
        victim.send_signal(signal.SIGSTOP)
        if not in_transaction(victim.pid, settings):
            return
        victim.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("the victim was inside a transaction at every look")


def in_transaction(pid: int, settings) -> bool:
    url = sa.engine.make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        import sqlite3

        probe = sqlite3.connect(url.database, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")  # refused at once while anyone holds the lock
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    engine = sa.create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            busy = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE :name "
                    "AND state <> 'idle'"
                ),
                {"name": f"newsletter pid {pid} %"},
            ).scalar()
        return bool(busy)
    finally:
        engine.dispose()


def check_exactly_once_but_in_flight(sink, settings, *, connections: int) -> None:
    """Nobody missed; a second copy only where a worker was in DATA when it was killed or
    stalled: at most one per connection, with the same Message-ID, marked in doubt."""
    sink.settle()
    copies = sink.copies()
    assert len(copies) == 300
    rows = ledger(settings)
    assert {r[0] for r in rows} == {DeliveryStatus.SENT.value}
    doubled = {rcpt: mids for rcpt, mids in copies.items() if len(mids) > 1}
    assert len(doubled) <= connections, doubled
    assert all(len(set(mids)) == 1 for mids in doubled.values())
    in_doubt = {mid for _, _, mid, doubt in rows if doubt}
    assert {mids[0] for mids in doubled.values()} <= in_doubt


KEYWORDS = [
    "neural", "graph", "images", "financial", "question", "search",
    "test", "learning", "privacy", "robots", "language", "network",
]  # fmt: skip


def test_workers_send_each_subscriber_the_for_you_frozen_once(
    write_config, sample_feeds, sink_process, tmp_path
):
    """Two workers start together: one makes the copies (in worker processes: there are
    over 100 distinct interests) while the other waits for the issue; both then send, and
    each subscriber gets one message, with the copy stored for their row."""
    from email import message_from_bytes
    from email.policy import default as parsed

    from newsletter.personal.stated import InterestsChange
    from newsletter.splice import PersonalCopy

    kept = tmp_path / "kept"
    kept.mkdir()
    sink = sink_process(delay=0.005, keep=kept)
    path, settings = setup(write_config, sample_feeds, sink.port, subscribers=240, lease=30)
    with Store.open(settings.database_url) as store:
        for i in range(160):  # two thirds state two keywords: 144 distinct pairs
            sub = store.subscriber(f"reader{i:04d}@example.org")
            words = (KEYWORDS[i % 12], KEYWORDS[(i // 12) % 12])
            change = InterestsChange(keywords=words)
            assert store.update_interests(sub.id, change, now=dt.datetime.now(dt.UTC))
    procs = [worker(path, tmp_path / f"w{i}.log") for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(300) == 0, (tmp_path / f"w{i}.log").read_text()
    sink.settle()
    assert all(len(mids) == 1 for mids in sink.copies().values())
    assert len(sink.copies()) == 240
    pc, pd, s = schema.personal_copies, schema.personal_deliveries, schema.subscribers
    with Store.open(settings.database_url) as store, store.read() as conn:
        frozen = {
            r.email: PersonalCopy(r.html, r.text, tuple(r.topic_order), r.only_for_you)
            for r in conn.execute(
                sa.select(s.c.email, pc.c.html, pc.c.text, pc.c.topic_order, pc.c.only_for_you)
                .join(pd, pd.c.subscriber_id == s.c.id)
                .join(pc, pc.c.id == pd.c.copy_id)
            )
        }
        distinct = conn.execute(sa.select(sa.func.count()).select_from(pc)).scalar_one()
    assert len(frozen) == 160 and distinct == 144  # one copy per distinct interests, once
    for (rcpt, _mid), eml in zip(sink.lines, sorted(kept.iterdir()), strict=True):
        text = message_from_bytes(eml.read_bytes(), policy=parsed).get_body(("plain",))
        content = text.get_content().replace("\r\n", "\n")
        if rcpt in frozen:
            assert frozen[rcpt].text in content and "FOR YOU · " in content, rcpt
        else:
            assert "FOR YOU" not in content, rcpt
