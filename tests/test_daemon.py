"""`newsletter daemon` as a real process: scheduled sends, catch-up, SIGTERM, one instance.

Each daemon is ``python -m newsletter -c CFG daemon`` in its own process; mail goes to a
real aiosmtpd server, in-process (``smtp_server`` fixture) or as a sink process
(``tests/smtp_server.py PORT DELAY``, one ``<rcpt> <Message-ID>`` line per message) so what
reached the "world" is known independently of the ledger.

The schedule's zone is a fixed-offset IANA zone (``Etc/GMT±N``) chosen so that it is about
noon there whenever the tests run: "a few seconds ahead" and "two minutes ago" then never
cross midnight, and the issue date is the local date in that zone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import mailbox
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from smtp_server import free_port, wait_for

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.store import Store

pytestmark = pytest.mark.slow

SECRET = "test-secret-key-0123456789abcdef"
ENV = {"NEWSLETTER_SECRET_KEY": SECRET}
DATA = Path(__file__).resolve().parent / "data" / "feeds"


def noon_zone() -> tuple[str, dt.tzinfo]:
    """An ``Etc/GMT±N`` zone where it is now between 11:30 and 12:30."""
    now = dt.datetime.now(dt.UTC)
    k = 12 - round(now.hour + now.minute / 60)  # hours east of UTC
    k = max(-12, min(14, k))
    name = "Etc/GMT" + (f"{-k:+d}" if k else "+0")  # Etc signs are inverted: GMT-3 is UTC+3
    return name, dt.timezone(dt.timedelta(hours=k))


def clock(tz: dt.tzinfo, seconds: float = 0) -> str:
    """The wall time in ``tz`` ``seconds`` from now, as send_at wants it (HH:MM:SS)."""
    return (dt.datetime.now(tz) + dt.timedelta(seconds=seconds)).strftime("%H:%M:%S")


def write_config(
    tmp_path: Path,
    *,
    smtp_port: int,
    send_at: str,
    timezone: str,
    sources: str,
    subscribers: int,
    connections: int = 1,
    on_empty: str = "skip",
    grace: int = 3600,
) -> tuple[Path, Path, list[str]]:
    db = tmp_path / "news.db"
    cfg = tmp_path / "newsletter.toml"
    cfg.write_text(
        f"""database_url = "sqlite:///{db}"
[list]
name = "Lab Papers"
id = "lab-papers.example.org"
from_address = "papers@example.org"
base_url = "https://papers.example.org"
[schedule]
send_at = "{send_at}"
timezone = "{timezone}"
days = "*"
misfire_grace_time = {grace}
on_empty = "{on_empty}"
[fetch]
window_days = 1
retries = 0
{sources}
[delivery]
transport = "smtp"
[smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
timeout = 30
connections = {connections}
max_per_connection = 100
""",
        encoding="utf-8",
    )
    settings = load_settings(cfg, env=ENV)
    emails = [f"reader{i:04d}@example.org" for i in range(subscribers)]
    with Store.open(settings.database_url) as store:
        store.import_subscribers([(e, "") for e in emails], now=dt.datetime.now(dt.UTC))
    return cfg, db, emails


def hf_source(sample_feeds: Path) -> str:
    return f'[[sources]]\nname = "hf-daily"\npath = "{sample_feeds}/hf-daily.json"\n'


class Daemon:
    """``python -m newsletter -c CFG [ARGS] daemon``; stdout and stderr go to files."""

    def __init__(self, cfg: Path, name: str, *args: str):
        self.err_path = cfg.parent / f"{name}.err"
        self.out_path = cfg.parent / f"{name}.out"
        env = os.environ | ENV
        for k in list(env):
            if k.startswith("NEWSLETTER_") and k not in ENV:
                env.pop(k)
        with self.out_path.open("wb") as so, self.err_path.open("wb") as se:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "newsletter", "-c", str(cfg), *args, "daemon"],
                stdout=so,
                stderr=se,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self.pid = self.proc.pid

    @property
    def log(self) -> str:
        return self.err_path.read_text(encoding="utf-8")

    def wait_log(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first match of ``pattern`` in the log, waiting for it (fails if it exits first)."""
        rx = re.compile(pattern)
        found = wait_for(lambda: bool(rx.search(self.log)) or self.proc.poll() is not None, timeout)
        m = rx.search(self.log)
        assert found and m, f"no {pattern!r} in the log (exit {self.proc.poll()}):\n{self.log}"
        return m

    def signal(self, sig: int = signal.SIGTERM) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the daemon did not exit within {timeout} s:\n{self.log}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def daemons() -> Callable[..., Daemon]:
    started: list[Daemon] = []

    def start(cfg: Path, name: str, *args: str) -> Daemon:
        started.append(Daemon(cfg, name, *args))
        return started[-1]

    yield start
    for d in started:
        d.kill()


def query(db: Path, sql: str) -> list[Any]:
    """Rows of ``sql`` read straight from the SQLite file, beside the daemon."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def ledger(db: Path) -> dict[str, tuple[str, str | None, int]]:
    """email -> (status, message_id, in_doubt) for every ledger row."""
    rows = query(
        db,
        "SELECT s.email, d.status, d.message_id, d.in_doubt "
        "FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id",
    )
    return {e: (st, mid, doubt) for e, st, mid, doubt in rows}


def issues(db: Path) -> list[tuple[str, str]]:
    return query(db, "SELECT issue_date, status FROM issues")


def status(cfg: Path) -> str:
    result = CliRunner().invoke(cli, ["-c", str(cfg), "status"], env=ENV)
    assert result.exit_code == 0, result.output
    return result.stdout


# --------------------------------------------------------------------------- scheduled run


def test_scheduled_run_delivers_once_then_sigterm_exits_cleanly(
    tmp_path, sample_feeds, smtp_server, daemons
):
    """Started a few seconds before send_at: no catch-up, the trigger fires, everyone gets
    one message; status shows the daemon idle with tomorrow's run; SIGTERM exits 0."""
    server = smtp_server()
    zone, tz = noon_zone()
    send_at = clock(tz, 5)
    cfg, db, emails = write_config(
        tmp_path,
        smtp_port=server.port,
        send_at=send_at,
        timezone=zone,
        sources=hf_source(sample_feeds),
        subscribers=5,
    )
    today = dt.datetime.now(tz).date()
    d = daemons(cfg, "daemon")
    d.wait_log(r"daemon started \(pid \d+\)")
    assert f"no catch-up: today's send time {send_at} is still ahead" in d.log
    assert f"sending at {send_at} {zone} on *" in d.log
    assert wait_for(lambda: "next run" in status(cfg), 10)
    before = status(cfg)
    assert re.search(
        rf"^daemon: idle \(pid {d.pid} since [^)]+\); next run {today}T{send_at}[+-]\d\d:00$",
        before,
        re.M,
    ), before
    assert "no issues yet" in before
    assert server.received == []  # nothing before the send time

    d.wait_log(
        rf"issue {today}: sent: sent 5, .*; issue total: 5 of 5 sent, 0 failed, 0 deferred", 40
    )
    assert f"issue {today}: scheduled run started" in d.log
    started = re.search(r"^(\S+) INFO newsletter\.daemon: issue \S+: scheduled run", d.log, re.M)
    assert started is not None
    # Every line starts with an ISO 8601 time with its UTC offset: unambiguous in a log.
    for line in d.log.splitlines():
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d ", line), line
    # It fired at the send time (not early), within a second or two.
    fired = dt.datetime.fromisoformat(started.group(1)).astimezone(tz)
    assert fired.strftime("%H:%M:%S") >= send_at
    assert (
        fired - dt.datetime.combine(today, dt.time.fromisoformat(send_at), tz)
    ).total_seconds() < 3
    tomorrow = today + dt.timedelta(days=1)
    d.wait_log(rf"next run at {tomorrow}T{send_at}")
    assert Counter(r for m in server.received for r in m.rcpt_tos) == Counter(emails)

    running = status(cfg)
    assert re.search(
        rf"^daemon: idle \(pid {d.pid} since .*; next run {tomorrow}T{send_at}.*"
        rf"; last: {today} sent, sent 5/5$",
        running,
        re.M,
    ), running
    assert re.search(
        rf"^{today}\s+daily\s+sent\s+\d+\s+5\s+5\s+0\s+0\s+0\s+0\s+0\s+0$", running, re.M
    ), running

    d.signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert d.wait(10) == 0, d.log
    assert time.monotonic() - t0 < 3
    assert "SIGTERM: stopping after the message(s) in flight" in d.log
    assert d.log.rstrip().endswith("daemon stopped")
    assert {st for st, _m, _d in ledger(db).values()} == {"sent"}
    assert issues(db) == [(today.isoformat(), "sent")]
    after = status(cfg)
    assert f"daemon: not running (last seen as pid {d.pid}, stopped)" in after
    assert re.search(rf"^{today}\s+daily\s+sent\s+\d+\s+5\s+5", after, re.M), after
    assert len(server.received) == 5  # nothing more on the way out
    doc = json.loads((tmp_path / "news.db.daemon.json").read_text())
    assert doc["state"] == "stopped" and doc["next_run"] is None
    assert doc["last"]["outcome"] == "sent" and doc["last"]["issue"]["sent"] == 5


# --------------------------------------------------------------------------- stop and resume


def test_sigterm_mid_send_then_restart_resumes_everyone_exactly_once(
    tmp_path, sample_feeds, sink_process, daemons
):
    """2,000 subscribers through a slow sink.  SIGTERM while sending: exit 0 within seconds,
    the ledger consistent (every message the sink has is recorded sent, nothing left
    claimed or in flight).  A restart within the grace resumes by catch-up; the sink then
    has every subscriber exactly once, each with its own Message-ID."""
    sink = sink_process(0.002)  # 2 ms on each of MAIL, RCPT and DATA
    zone, tz = noon_zone()
    cfg, db, emails = write_config(
        tmp_path,
        smtp_port=sink.port,
        send_at=clock(tz, -120),  # two minutes ago: due at start, within the grace
        timezone=zone,
        sources=hf_source(sample_feeds),
        subscribers=2000,
        connections=2,
    )
    today = dt.datetime.now(tz).date()
    first = daemons(cfg, "first")
    first.wait_log(r"catch-up: today's send time passed 2 min ago; sending now")
    assert wait_for(lambda: sink.count() >= 300 or first.proc.poll() is not None, 60)
    first.signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert first.wait(10) == 0, first.log
    stop_time = time.monotonic() - t0
    assert stop_time < 3, (stop_time, first.log)
    sink.settle(quiet=0.3)
    rows = ledger(db)
    statuses = Counter(st for st, _m, _d in rows.values())
    assert 300 <= statuses["sent"] < 2000, statuses
    assert set(statuses) <= {"sent", "queued"}, statuses  # nothing claimed or in flight
    assert sum(doubt for _s, _m, doubt in rows.values()) == 0
    assert sink.count() == statuses["sent"]  # what the world has is what the ledger says
    assert re.search(
        rf"issue {today}: \w+: .*issue total: {statuses['sent']} of 2000 sent", first.log
    ), first.log
    assert "daemon stopped" in first.log
    assert f"daemon: not running (last seen as pid {first.pid}, stopped)" in status(cfg)

    second = daemons(cfg, "second")
    second.wait_log(rf"catch-up: the issue of {today} was interrupted; resuming")
    second.wait_log(rf"issue {today}: sent: .*issue total: 2000 of 2000 sent, 0 failed", 60)
    second.signal(signal.SIGTERM)
    assert second.wait(10) == 0, second.log
    sink.settle(quiet=0.3)

    copies = sink.copies()
    assert sorted(copies) == emails
    assert all(len(m) == 1 for m in copies.values()), "someone got two copies"
    mids = [m[0] for m in copies.values()]
    assert len(set(mids)) == 2000 and all(mids)
    rows = ledger(db)
    assert {st for st, _m, _d in rows.values()} == {"sent"}
    assert {e: rows[e][1] for e in emails} == {e: copies[e][0] for e in emails}
    print(
        f"\nfirst daemon stopped after {statuses['sent']} of 2000 in {stop_time:.2f} s; "
        f"the restart sent {2000 - statuses['sent']}"
    )


def test_yesterdays_interrupted_issue_is_finished_at_start_up(
    tmp_path, sample_feeds, sink_process, daemons
):
    """A send cut off before midnight (here: yesterday's issue, 4 of 10 sent) is finished
    when the daemon starts the next day, even though today's send time is still ahead; an
    older interrupted issue is named in a warning and left alone."""
    from newsletter.pipeline import run_send

    sink = sink_process()
    zone, tz = noon_zone()
    cfg, db, _emails = write_config(
        tmp_path,
        smtp_port=sink.port,
        send_at=clock(tz, 3 * 3600),  # this afternoon
        timezone=zone,
        sources=hf_source(sample_feeds),
        subscribers=10,
    )
    # The older issue takes its papers from another feed (a paper is in one issue only).
    older_cfg = tmp_path / "older.toml"
    older_cfg.write_text(
        cfg.read_text(encoding="utf-8").replace(
            hf_source(sample_feeds),
            '[[sources]]\nname = "arxiv-science"\nkind = "arxiv-rss"\n'
            f'path = "{sample_feeds}/arxiv-science.xml"\n',
        ),
        encoding="utf-8",
    )
    today = dt.datetime.now(tz).date()
    yesterday, older = today - dt.timedelta(days=1), today - dt.timedelta(days=3)
    for config, day, limit in ((older_cfg, older, 2), (cfg, yesterday, 4)):
        settings = load_settings(config, env=ENV)
        at = dt.datetime.combine(day, dt.time(12), tz)
        with Store.open(settings.database_url) as store:
            report = run_send(settings, store, issue_date=day, now=lambda at=at: at, limit=limit)
        assert report.delivery is not None and report.delivery.sent == limit, report
    sink.settle(quiet=0.3)
    assert sink.count() == 6

    d = daemons(cfg, "late")
    d.wait_log(rf"catch-up: the issue of {yesterday} was interrupted; resuming")
    d.wait_log(rf"issue {yesterday}: sent: .*issue total: 10 of 10 sent, 0 failed", 60)
    assert re.search(rf"the issue of {older} was interrupted and is not resumed", d.log)
    assert re.search(r"no catch-up: today's send time \S+ is still ahead", d.log), d.log
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0, d.log
    sink.settle(quiet=0.3)

    assert sink.count() == 6 + 6  # yesterday's other six; nothing more of the older issue
    rows = query(
        db,
        "SELECT i.issue_date, d.status, count(*) FROM deliveries d "
        "JOIN issues i ON i.id = d.issue_id GROUP BY i.issue_date, d.status",
    )
    assert sorted(rows) == [
        (older.isoformat(), "queued", 8),
        (older.isoformat(), "sent", 2),
        (yesterday.isoformat(), "sent", 10),
    ]
    assert sorted(day for day, _status in issues(db)) == [older.isoformat(), yesterday.isoformat()]


def test_second_sigterm_exits_at_once_and_send_completes_the_issue(
    tmp_path, sample_feeds, sink_process, daemons
):
    """While stopping (the message in flight is slow), a second SIGTERM exits at once.  A
    following `newsletter send` finishes the issue: everyone has it, a second copy only
    where the ledger says the row was in doubt, and then with the same Message-ID."""
    sink = sink_process(0.25)  # 0.75 s per message: a stop has to wait for it
    zone, tz = noon_zone()
    cfg, db, emails = write_config(
        tmp_path,
        smtp_port=sink.port,
        send_at=clock(tz, -60),
        timezone=zone,
        sources=hf_source(sample_feeds),
        subscribers=10,
        connections=2,
    )
    d = daemons(cfg, "daemon")
    assert wait_for(lambda: sink.count() >= 2 or d.proc.poll() is not None, 60)
    d.signal(signal.SIGTERM)
    d.wait_log(r"SIGTERM: stopping after the message\(s\) in flight")
    d.signal(signal.SIGTERM)
    t0 = time.monotonic()
    code = d.wait(5)
    assert time.monotonic() - t0 < 1.5
    assert code == 1, d.log
    assert "SIGTERM again: exiting now" in d.log
    assert "daemon stopped" not in d.log
    # The daemon lock went with the process: a status shows it not running.
    assert "daemon: not running" in status(cfg)

    env = os.environ | ENV
    for k in list(env):
        if k.startswith("NEWSLETTER_") and k not in ENV:
            env.pop(k)
    send = subprocess.run(
        [sys.executable, "-m", "newsletter", "-c", str(cfg), "send"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert send.returncode == 0, send.stdout + send.stderr
    summary = re.search(
        r"in doubt (\d+) in .*issue total: 10 of 10 sent, 0 failed, 0 deferred, 0 pending",
        send.stdout,
    )
    assert summary, send.stdout
    sink.settle(quiet=0.6)
    rows = ledger(db)
    assert {st for st, _m, _d in rows.values()} == {"sent"}
    copies = sink.copies()
    assert sorted(copies) == emails
    doubtful = {e for e, (_s, _m, doubt) in rows.items() if doubt}
    for email, mids in copies.items():
        assert set(mids) == {rows[email][1]}, (email, mids)  # one Message-ID per subscriber
        if len(mids) > 1:
            assert email in doubtful, f"{email}: {len(mids)} copies but not in doubt"
    assert len(doubtful) <= 2  # at most one row in flight per connection
    assert int(summary.group(1)) == len(doubtful)


# --------------------------------------------------------------------------- one instance


def test_two_daemons_started_together_one_runs(tmp_path, sample_feeds, smtp_server, daemons):
    server = smtp_server()
    zone, tz = noon_zone()
    cfg, _db, _emails = write_config(
        tmp_path,
        smtp_port=server.port,
        send_at=clock(tz, 3600),  # not today within the test
        timezone=zone,
        sources=hf_source(sample_feeds),
        subscribers=2,
    )
    pair = [daemons(cfg, "a"), daemons(cfg, "b")]
    assert wait_for(lambda: any(p.proc.poll() is not None for p in pair), 30)
    time.sleep(0.5)  # the other one had time to fail too, if it were going to
    codes = [p.proc.poll() for p in pair]
    assert sorted(codes, key=lambda c: c is None) == [1, None], codes
    lost, won = (pair[0], pair[1]) if codes[0] == 1 else (pair[1], pair[0])
    won.wait_log(r"daemon started")
    assert (
        f"error: another newsletter process is running as the daemon: pid {won.pid} on " in lost.log
    ), lost.log
    assert "daemon started" not in lost.log
    # The loser did not touch the status file: it still names the winner.
    assert f"daemon: idle (pid {won.pid} since" in status(cfg)
    won.signal(signal.SIGINT)  # SIGINT stops it like SIGTERM
    assert won.wait(10) == 0, won.log
    assert "SIGINT: stopping" in won.log
    assert server.received == []


# --------------------------------------------------------------------------- empty and failed days


def test_json_log_and_empty_or_failed_days(tmp_path, smtp_server, daemons):
    """With --log-format json every stderr line is one JSON object with time, level and
    event.  An empty arXiv channel (a weekend) is "skipped" and sends nothing; a day on
    which every source fails is logged as an error, not as skipped."""
    server = smtp_server()
    zone, tz = noon_zone()
    today = dt.datetime.now(tz).date()
    empty_dir, broken_dir = tmp_path / "empty", tmp_path / "broken"
    empty_dir.mkdir()
    broken_dir.mkdir()
    common = {
        "smtp_port": server.port,
        "send_at": clock(tz, -60),
        "timezone": zone,
        "subscribers": 3,
    }
    empty_cfg, empty_db, _ = write_config(
        empty_dir,
        sources=f'[[sources]]\nname = "arxiv-ai"\npath = "{DATA}/arxiv_rss_empty_weekend.xml"\n',
        **common,
    )
    broken_cfg, broken_db, _ = write_config(
        broken_dir,
        sources=(
            f'[[sources]]\nname = "gone"\npath = "{tmp_path}/no-such-feed.xml"\n'
            '[[sources]]\nname = "down"\nurl = "http://127.0.0.1:9/rss"\n'
        ),
        **common,
    )
    empty = daemons(empty_cfg, "daemon", "--log-format", "json")
    broken = daemons(broken_cfg, "daemon", "--log-format", "json")
    empty.wait_log(r"no new papers; skipped")
    broken.wait_log(r"every source failed")
    for d in (empty, broken):
        d.wait_log(r"next run at")
    assert f"; last: {today} empty" in status(empty_cfg)
    assert (
        f"; last: {today} failed (every source failed, so there is no issue to send: gone: "
        in status(broken_cfg)
    )
    for d in (empty, broken):
        d.signal(signal.SIGTERM)
        assert d.wait(10) == 0, d.log

    def events(d: Daemon) -> list[dict]:
        docs = []
        for line in d.log.splitlines():
            doc = json.loads(line)  # every line is JSON
            assert {"time", "level", "event"} <= set(doc), doc
            dt.datetime.fromisoformat(doc["time"])
            docs.append(doc)
        return docs

    got = events(empty)
    skipped = [e for e in got if "skipped" in e["event"]]
    assert skipped and all(e["level"] == "info" for e in skipped), got
    assert f"issue {today}: no new papers; skipped (schedule.on_empty = skip)" in [
        e["event"] for e in skipped
    ]
    assert not [e for e in got if e["level"] in ("error", "critical")], got
    assert got[-1]["event"] == "daemon stopped"
    assert issues(empty_db) == []  # nothing stored, nothing queued
    assert json.loads((empty_dir / "news.db.daemon.json").read_text())["last"]["outcome"] == "empty"

    got = events(broken)
    failed = [e for e in got if "every source failed" in e["event"]]
    assert [e["level"] for e in failed] == ["error"], got
    assert failed[0]["event"].startswith(f"issue {today}: every source failed")
    assert "gone:" in failed[0]["event"] and "down:" in failed[0]["event"]
    assert not [e for e in got if "skipped" in e["event"]], got
    assert issues(broken_db) == []
    last = json.loads((broken_dir / "news.db.daemon.json").read_text())["last"]
    assert last["outcome"] == "failed" and "every source failed" in last["error"]
    assert server.received == []


def test_status_keeps_the_last_result_after_the_daemon_stopped(tmp_path, daemons):
    zone, tz = noon_zone()
    today = dt.datetime.now(tz).date()
    cfg, _db, _ = write_config(
        tmp_path,
        smtp_port=free_port(),
        send_at=clock(tz, -60),
        timezone=zone,
        sources=f'[[sources]]\nname = "gone"\npath = "{tmp_path}/no-such-feed.xml"\n',
        subscribers=1,
    )
    d = daemons(cfg, "daemon")
    d.wait_log(r"every source failed")  # the catch-up run is over (not just scheduled)
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0, d.log
    out = status(cfg)
    assert f"daemon: not running (last seen as pid {d.pid}, stopped)" in out
    assert f"last: {today} failed (every source failed" in out, out


def test_a_send_stopped_by_the_daemon_reports_stopped(write_config, sample_feeds, smtp_server):
    from smtp_server import Faults, Handler

    from newsletter.pipeline import run_send

    handler = Handler(Faults(delay=0.01))
    server = smtp_server(handler)
    path = write_config(hf_source(sample_feeds) + "[fetch]\nwindow_days = 1\n" + server.config())
    settings = load_settings(path, env=ENV)
    now = lambda: dt.datetime.now(dt.UTC)  # noqa: E731
    with Store.open(settings.database_url) as store:
        store.import_subscribers([(f"r{i}@example.org", "") for i in range(40)], now=now())
        stop = threading.Event()
        watcher = threading.Thread(
            target=lambda: wait_for(lambda: len(handler.received) >= 3, 30) and stop.set()
        )
        watcher.start()
        report = run_send(settings, store, issue_date=now().date(), now=now, stop=stop)
        watcher.join()
    assert report.delivery is not None
    assert 3 <= report.delivery.sent < 40
    assert report.outcome == "stopped"
    assert report.delivery.stopped


def test_a_missed_run_is_logged_as_json_too(tmp_path, smtp_server, daemons):
    """The daemon is frozen (SIGSTOP) across its send time with a 1-s grace, then thawed:
    APScheduler drops the run as missed and says so; that line must be JSON as well."""
    server = smtp_server()
    zone, tz = noon_zone()
    cfg, _db, _ = write_config(
        tmp_path,
        smtp_port=server.port,
        send_at=clock(tz, 3),
        timezone=zone,
        sources=f'[[sources]]\nname = "arxiv-ai"\npath = "{DATA}/arxiv_rss_empty_weekend.xml"\n',
        subscribers=1,
        grace=1,
    )
    d = daemons(cfg, "daemon", "--log-format", "json")
    # The last line before the scheduler starts: frozen earlier (a slow start-up on a busy
    # machine), the scheduler would only plan the run when thawed, for tomorrow.
    d.wait_log(r"next run at")
    d.signal(signal.SIGSTOP)
    try:
        time.sleep(6)
    finally:
        d.signal(signal.SIGCONT)
    assert wait_for(lambda: "missed" in d.log, 10), d.log
    time.sleep(0.3)
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0, d.log
    assert "run started" not in d.log  # the run was dropped, not run late
    for line in d.log.splitlines():
        doc = json.loads(line)
        assert {"time", "level", "event"} <= set(doc)


def test_the_daemons_status_counts_the_issue_not_only_its_run(
    write_config, sample_feeds, smtp_server, caplog
):
    """A run that resumes an issue (4 of 10 sent before it) reports the issue's totals from
    the ledger, and this run's share apart: in its log line, its status file and `status`."""
    from newsletter.cli import _daemon_summary
    from newsletter.daemon import Daemon
    from newsletter.pipeline import run_send

    server = smtp_server()
    path = write_config(hf_source(sample_feeds) + "[fetch]\nwindow_days = 1\n" + server.config())
    settings = load_settings(path, env=ENV)
    now = lambda: dt.datetime.now(dt.UTC)  # noqa: E731
    day = now().date()
    with Store.open(settings.database_url) as store:
        store.import_subscribers([(f"r{i}@example.org", "") for i in range(10)], now=now())
        run_send(settings, store, issue_date=day, now=now, limit=4)
        caplog.set_level("INFO", logger="newsletter")
        Daemon(settings, store, now=now).send_job("catch-up", day)
    assert len(server.received) == 10
    logged = [r.getMessage() for r in caplog.records if r.name == "newsletter.daemon"]
    assert any(
        m.startswith(f"issue {day}: sent: sent 6, failed 0, deferred 0, skipped 0, in doubt 0")
        and "issue total: 10 of 10 sent, 0 failed, 0 deferred, 0 pending, 0 in doubt" in m
        for m in logged
    ), logged
    line = _daemon_summary(settings)
    assert line is not None and f"last: {day} sent, sent 10/10 (6 this run)" in line, line


def test_the_daemon_reads_the_bounce_mailbox_on_its_own_schedule(tmp_path, daemons):
    """A hard bounce waiting in a Maildir: the daemon reads it at start-up, beside the
    day's (failing) catch-up run, marks the subscriber bounced and says so in `status`;
    SIGTERM still exits cleanly."""
    zone, tz = noon_zone()
    cfg, db, emails = write_config(
        tmp_path,
        smtp_port=free_port(),
        send_at=clock(tz, 3600),  # no send due: only the bounce check runs
        timezone=zone,
        sources=f'[[sources]]\nname = "gone"\npath = "{tmp_path}/no-such-feed.xml"\n',
        subscribers=2,
    )
    dsn = (Path(__file__).parent / "data" / "bounces" / "flufl-dsn_11.eml").read_bytes()
    assert b"Final-Recipient: RFC822; <joem@example.com>" in dsn  # a 5.1.1 for joem
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(dsn.replace(b"joem@example.com", emails[1].encode()))
    box.close()
    cfg.write_text(
        cfg.read_text(encoding="utf-8")
        + f'[bounces]\nkind = "maildir"\nurl = "{tmp_path}/Maildir"\ncheck_interval = 60\n',
        encoding="utf-8",
    )
    d = daemons(cfg, "daemon")
    d.wait_log(r"bounce check: read 1 message\(s\): hard bounces 1")
    assert "reading the bounce mailbox every 60 minute(s)" in d.log
    assert "marked bounced: " + emails[1] in d.log
    assert dict(query(db, "SELECT email, status FROM subscribers")) == {
        emails[0]: "active",
        emails[1]: "bounced",
    }
    assert wait_for(lambda: "bounce check: " in status(cfg), 10)
    out = status(cfg)
    assert re.search(r"bounce check: \S+, read 1, marked bounced 1, unsubscribed 0", out), out
    assert "subscribers: 0 pending, 1 active, 0 unsubscribed, 1 bounced" in out
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0, d.log
    assert len(mailbox.Maildir(tmp_path / "Maildir", create=False).get_folder("Processed")) == 1


def test_the_status_file_reads_back_what_the_daemon_wrote():
    """DaemonStatus is the one shape of <db>.daemon.json: written by the daemon, read by
    `newsletter status`; a file from before it (no queued/claimed/sending counts) reads too."""
    from newsletter.models import (
        BounceCheck,
        DaemonState,
        DaemonStatus,
        DeliveryCounts,
        Edition,
        LastSend,
    )

    at = dt.datetime(2026, 3, 2, 7, 30, 5, tzinfo=dt.UTC)
    status = DaemonStatus(
        pid=41,
        host="h",
        started_at=at,
        timezone="Europe/Berlin",
        send_at="07:30",
        days="mon-fri",
        weekly_day="mon",
        state=DaemonState.IDLE,
        next_run=at + dt.timedelta(days=1),
        last=LastSend(
            at.date(),
            "partial",
            at,
            Edition.WEEKLY,
            issue=DeliveryCounts(queued=2, sent=7, failed=1, in_doubt=1),
            run=DeliveryCounts(sent=3, in_doubt=1),
        ),
        checks_bounces=True,
        bounces=BounceCheck(at, error="mailbox unreachable"),
    )
    doc = json.loads(json.dumps(status.to_json()))
    assert doc["last"]["issue"]["pending"] == 2 and doc["last"]["issue"]["recipients"] == 10
    assert doc["bounces"] == {"at": "2026-03-02T07:30:05+00:00", "error": "mailbox unreachable"}
    assert doc["last"]["edition"] == "weekly" and doc["weekly_day"] == "mon"
    assert DaemonStatus.from_json(doc, running=True) == dataclasses.replace(status, running=True)

    older = {
        "pid": 41, "host": "h", "started_at": "2026-03-02T07:30:05+00:00",
        "timezone": "UTC", "send_at": "07:30", "days": "*", "state": "stopped",
        "next_run": None, "last": {
            "issue_date": "2026-03-02", "at": "2026-03-02T07:31:00+00:00", "outcome": "sent",
            "issue": {"recipients": 5, "sent": 5, "failed": 0, "deferred": 0, "pending": 0,
                      "in_doubt": 0},
            "run": {"sent": 5, "failed": 0, "deferred": 0, "skipped": 0, "in_doubt": 0},
        },
    }  # fmt: skip
    read = DaemonStatus.from_json(older, running=False)
    assert read.last is not None and read.last.issue == DeliveryCounts(sent=5)
    assert not read.checks_bounces and read.state is DaemonState.STOPPED
    assert read.last.edition is Edition.DAILY and read.last.name == "2026-03-02"
