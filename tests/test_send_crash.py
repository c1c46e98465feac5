"""Crash and concurrency tests: real `newsletter send` processes against an SMTP sink process.

The sink is ``tests/smtp_server.py`` run as a script (aiosmtpd in its own process): it prints
one line per accepted message, ``<rcpt> <Message-ID>``, so what reached the "world" is known
independently of the ledger.  The sender is the installed console script, killed with SIGKILL.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from smtp_server import Faults, Handler, wait_for

from newsletter.config import load_settings
from newsletter.models import DeliveryStatus
from newsletter.store import Store

pytestmark = pytest.mark.slow

SECRET = "test-secret-key-0123456789abcdef"
NEWSLETTER = Path(sys.executable).parent / "newsletter"  # the venv's console script
SEED = 20261121


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_setup(
    tmp_path: Path, sample_feeds: Path, port: int, *, subscribers: int, connections: int
):
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
timezone = "UTC"
on_empty = "skip"
[fetch]
window_days = 1
[[sources]]
name = "hf-daily"
path = "{sample_feeds}/hf-daily.json"
[delivery]
transport = "smtp"
[smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
timeout = 30
connections = {connections}
max_per_connection = 50
""",
        encoding="utf-8",
    )
    settings = load_settings(cfg, env={"NEWSLETTER_SECRET_KEY": SECRET})
    emails = [f"reader{i:04d}@example.org" for i in range(subscribers)]
    with Store.open(settings.database_url) as store:
        store.import_subscribers([(e, "") for e in emails], now=utcnow())
    return cfg, db, emails


def start_send(cfg: Path, day: dt.date, out: Path) -> subprocess.Popen:
    env = os.environ | {"NEWSLETTER_SECRET_KEY": SECRET}
    env.pop("NEWSLETTER_DATABASE_URL", None)
    with open(out.with_suffix(".out"), "wb") as so, open(out.with_suffix(".err"), "wb") as se:
        return subprocess.Popen(
            [str(NEWSLETTER), "-c", str(cfg), "send", "--date", day.isoformat()],
            stdout=so,
            stderr=se,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def ledger_rows(db: Path) -> list[tuple[str, str, str | None, int, int]]:
    """(email, status, message_id, attempts, in_doubt) of every ledger row."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(
            "SELECT s.email, d.status, d.message_id, d.attempts, d.in_doubt "
            "FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
        ).fetchall()
    finally:
        conn.close()


def in_flight(db: Path) -> set[tuple[str, int]]:
    """Rows marked SENDING (in DATA), keyed by (email, attempt number) so that a row left
    SENDING by one kill and still there after the next is counted once."""
    return {(e, a) for e, st, _m, a, _d in ledger_rows(db) if st == DeliveryStatus.SENDING.value}


def kill(proc: subprocess.Popen) -> bool:
    """SIGKILL ``proc``; True if it was still running (i.e. really killed)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    return proc.returncode == -signal.SIGKILL


RESUMED = re.compile(r"resuming after an interrupted send: (\d+) in doubt, (\d+) requeued")
SUMMARY = re.compile(r"sent (\d+), failed (\d+), deferred (\d+), skipped (\d+), in doubt (\d+)")


# --------------------------------------------------------------------------- crash


def test_sigkill_at_random_points_never_skips_anyone(tmp_path, sample_feeds, sink_process):
    """Kill `newsletter send` with SIGKILL many times, resume; nobody is missed, and every
    second copy has the same Message-ID and is one of the rows left in flight by a kill."""
    connections, subscribers = 2, 300
    sink = sink_process(0.01)  # 10 ms on each of MAIL, RCPT and DATA: sends take a while
    cfg, db, emails = write_setup(
        tmp_path, sample_feeds, sink.port, subscribers=subscribers, connections=connections
    )
    day = utcnow().date()
    rng = random.Random(SEED)
    events: dict[str, int] = Counter()  # email -> times its row was SENDING at a kill
    per_kill: list[tuple[str, int, int]] = []  # (how, messages this run, in-doubt rows)
    real_kills = 0

    # The first run fetches, clusters and renders before it sends anything: kill it once it
    # is sending.  Later runs are killed by one of three triggers, chosen by the seeded RNG:
    # a delay after start (may land in start-up, fetch, recovery or sending), after the sink
    # has seen n more messages, or as soon as a row is marked SENDING (the in-doubt window).
    later = ["time"] * 5 + ["count"] * 3 + ["sending"] * 3
    rng.shuffle(later)
    for k, how in enumerate(["count", *later]):
        before_sink, before_flight = sink.count(), in_flight(db)
        proc = start_send(cfg, day, tmp_path / f"run{k:02d}")
        deadline = time.monotonic() + 60
        if how == "time":
            time.sleep(rng.uniform(0.1, 1.5))
        elif how == "count":
            target = before_sink + rng.randint(1, 25)
            while time.monotonic() < deadline and proc.poll() is None:
                if sink.count() >= target:
                    break
                time.sleep(0.002)
        else:
            while time.monotonic() < deadline and proc.poll() is None:
                if in_flight(db) - before_flight:
                    break
                time.sleep(0.002)
        if kill(proc):
            real_kills += 1
        else:  # finished before the trigger: nothing left for the rest of the loop to kill
            assert proc.returncode == 0, (tmp_path / f"run{k:02d}.err").read_text()
            break
        after = in_flight(db)
        assert len(after) <= connections, f"kill {k}: {len(after)} rows in flight: {after}"
        new = after - before_flight
        for email, _attempt in new:
            events[email] += 1
        per_kill.append((how, sink.count() - before_sink, len(new)))
        # A run that got as far as recovery says what it found; it must match the ledger.
        m = RESUMED.search((tmp_path / f"run{k:02d}.err").read_text())
        if m:
            assert int(m.group(1)) == len(before_flight), m.group(0)

    # The last run goes to the end.
    stale = in_flight(db)
    final = start_send(cfg, day, tmp_path / "final")
    assert final.wait(120) == 0, (tmp_path / "final.err").read_text()
    out, err = (tmp_path / "final.out").read_text(), (tmp_path / "final.err").read_text()
    summary = SUMMARY.search(out)
    assert summary, out
    m = RESUMED.search(err)
    assert int(m.group(1) if m else 0) == len(stale)
    sink.settle()

    copies: dict[str, list[str]] = defaultdict(list)
    for rcpt, mid in sink.lines:
        copies[rcpt].append(mid)
    assert sorted(copies) == emails, "someone was never mailed (or a stranger was)"
    rows = {e: (st, mid, doubt) for e, st, mid, _a, doubt in ledger_rows(db)}
    assert {st for st, _m, _d in rows.values()} == {DeliveryStatus.SENT.value}
    assert len(rows) == subscribers
    duplicates = 0
    for email, mids in copies.items():
        assert set(mids) == {rows[email][1]}, f"{email}: copies with different Message-IDs {mids}"
        extra = len(mids) - 1
        duplicates += extra
        # Each second copy is one of this subscriber's rows left in flight by a kill.
        assert extra <= events[email], (
            f"{email}: {len(mids)} copies, in flight at {events[email]} kill(s)"
        )
    in_doubt_total = sum(events.values())
    assert duplicates <= in_doubt_total <= connections * real_kills
    # The ledger's in-doubt flags are exactly the rows that were in flight at some kill.
    assert {e for e, (_s, _m, d) in rows.items() if d} == set(events)
    assert real_kills >= 8, per_kill
    assert int(summary.group(5)) <= in_doubt_total
    print(
        f"\n{real_kills} kills {per_kill}; in doubt {in_doubt_total}, duplicates {duplicates}, "
        f"final run: {summary.group(0)}"
    )


# --------------------------------------------------------------------------- concurrency


def test_two_senders_at_once_one_sends_the_other_is_told_who(tmp_path, sample_feeds, sink_process):
    sink = sink_process(0.005)
    cfg, _db, emails = write_setup(
        tmp_path, sample_feeds, sink.port, subscribers=200, connections=2
    )
    day = utcnow().date()
    procs = [start_send(cfg, day, tmp_path / f"racer{i}") for i in range(2)]
    codes = [p.wait(120) for p in procs]
    outs = [(tmp_path / f"racer{i}.out").read_text() for i in range(2)]
    errs = [(tmp_path / f"racer{i}.err").read_text() for i in range(2)]
    assert sorted(codes) == [0, 1], (codes, outs, errs)
    win, lose = (0, 1) if codes[0] == 0 else (1, 0)
    assert "sent 200, failed 0" in outs[win], outs[win]
    assert f"another newsletter process is sending: pid {procs[win].pid} " in errs[lose], errs[lose]
    assert "sent" not in outs[lose]
    sink.settle()
    assert Counter(r for r, _ in sink.lines) == Counter(emails)  # exactly one copy each

    third = start_send(cfg, day, tmp_path / "third")
    assert third.wait(120) == 0
    assert "was already sent to everyone; nothing to do" in (tmp_path / "third.out").read_text()
    sink.settle(quiet=0.3)
    assert len(sink.lines) == 200


# --------------------------------------------------------------------------- drops in DATA
# A dropped connection in DATA is the in-process twin of a kill: the server may have the
# message.  These check that the ledger remembers it, so the resend is counted in doubt.


def test_stop_during_backoff_after_a_drop_in_data_keeps_the_row_in_doubt(
    write_config, sample_feeds, smtp_server, monkeypatch
):
    from newsletter.delivery import policy
    from newsletter.pipeline import run_send

    monkeypatch.setattr(policy, "BACKOFF", 4.0)  # a wait of 4 to 12 s to stop in
    victim = "reader000@example.org"
    # The drop is retried at once, on a new connection; the 451 then asks for time.
    handler = Handler(
        Faults(
            data={victim: ["DISCONNECT", "451 4.3.0 try again later", None]},
            deliver_before_disconnect=True,
        )
    )
    settings = drop_setup(write_config, sample_feeds, smtp_server(handler))
    day = utcnow().date()
    with Store.open(settings.database_url) as store:
        stop = threading.Event()

        # The server has the message, the client saw the connection drop, and the retry
        # got a 451: stop while the row waits for its next try.
        def stop_in_backoff() -> None:
            if wait_for(lambda: len(handler.received) >= 1, 30):
                time.sleep(0.5)
                stop.set()

        watcher = threading.Thread(target=stop_in_backoff)
        watcher.start()
        first = run_send(settings, store, issue_date=day, now=utcnow, stop=stop)
        watcher.join()
        # The connection moved on to the other subscriber while the victim waited.
        assert [r.rcpt_tos for r in handler.received] == [[victim], ["reader001@example.org"]]
        assert first.delivery is not None and first.delivery.sent == 1
        assert first.delivery.stopped
        second = run_send(settings, store, issue_date=day, now=utcnow)
    assert second.delivery is not None and second.delivery.sent == 1
    mids = [r.message["Message-ID"] for r in handler.by_rcpt()[victim]]
    assert len(mids) == 2 and mids[0] == mids[1]
    # The second copy is a resend of a message that may have arrived: it must be in doubt.
    assert second.delivery.in_doubt == 1


def drop_setup(write_config, sample_feeds: Path, server):
    path = write_config(
        f"""
[list]
name = "Lab Papers"
id = "lab-papers.example.org"
from_address = "papers@example.org"
base_url = "https://papers.example.org"
[schedule]
timezone = "UTC"
[fetch]
window_days = 1
[[sources]]
name = "hf-daily"
path = "{sample_feeds}/hf-daily.json"
"""
        + server.config()
    )
    settings = load_settings(path, env={"NEWSLETTER_SECRET_KEY": SECRET})
    with Store.open(settings.database_url) as store:
        store.import_subscribers(
            [("reader000@example.org", ""), ("reader001@example.org", "")], now=utcnow()
        )
    return settings


def test_deferred_after_a_drop_in_data_is_resent_in_doubt(
    write_config, sample_feeds, smtp_server, monkeypatch
):
    from newsletter.delivery import policy
    from newsletter.pipeline import run_send

    monkeypatch.setattr(policy, "MAX_ATTEMPTS", 1)  # the drop is the last attempt
    victim = "reader000@example.org"
    handler = Handler(Faults(data={victim: ["DISCONNECT", None]}, deliver_before_disconnect=True))
    settings = drop_setup(write_config, sample_feeds, smtp_server(handler))
    day = utcnow().date()
    with Store.open(settings.database_url) as store:
        first = run_send(settings, store, issue_date=day, now=utcnow)
        assert first.delivery is not None
        assert (first.delivery.sent, first.delivery.deferred) == (1, 1)
        retry = run_send(settings, store, issue_date=day, now=utcnow, retry_failed=True)
        counts = store.delivery_counts(first.issue.id)
    mids = [r.message["Message-ID"] for r in handler.by_rcpt()[victim]]
    assert len(mids) == 2 and mids[0] == mids[1]
    assert retry.delivery is not None and retry.delivery.sent == 1
    # The retry is the run that made the second copy; the ledger should say so.
    assert counts.in_doubt == 1
    assert retry.delivery.in_doubt == 1


# --------------------------------------------------------------------------- graceful stop
# systemd stops a oneshot `newsletter send` with SIGTERM; Ctrl-C is SIGINT.  Either one
# finishes the message in flight, records it, prints the summary and exits 1 (resumable).


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_send_gracefully_and_a_resume_sends_nobody_twice(
    tmp_path, sample_feeds, sink_process, sig
):
    sink = sink_process(0.01)
    cfg, db, emails = write_setup(tmp_path, sample_feeds, sink.port, subscribers=300, connections=2)
    day = utcnow().date()
    proc = start_send(cfg, day, tmp_path / "first")
    assert wait_for(lambda: sink.count() >= 40 or proc.poll() is not None, 60)
    os.kill(proc.pid, sig)
    assert proc.wait(30) == 1
    out, err = (tmp_path / "first.out").read_text(), (tmp_path / "first.err").read_text()
    sink.settle(quiet=0.3)
    summary = SUMMARY.search(out)
    assert summary, (out, err)
    assert "Aborted!" not in err
    assert f"{signal.Signals(sig).name}: stopping after the message(s) in flight" in err, err
    assert "stopped: asked to stop" in err and "again to resume" in err, err
    rows = ledger_rows(db)
    statuses = Counter(st for _e, st, _m, _a, _d in rows)
    # What the world has is what the ledger says: nothing unrecorded, nothing in flight.
    assert set(statuses) <= {"sent", "queued"}, statuses
    assert statuses["sent"] == sink.count() == int(summary.group(1))
    assert 40 <= sink.count() < 300

    final = start_send(cfg, day, tmp_path / "final")
    assert final.wait(120) == 0, (tmp_path / "final.err").read_text()
    assert "resuming after an interrupted send" not in (tmp_path / "final.err").read_text()
    sink.settle(quiet=0.3)
    assert Counter(r for r, _ in sink.lines) == Counter(emails)  # exactly one copy each
    assert {st for _e, st, _m, _a, _d in ledger_rows(db)} == {"sent"}


def test_a_second_signal_makes_send_exit_at_once(tmp_path, sample_feeds, sink_process):
    sink = sink_process(0.3)  # 0.9 s per message: the first signal has to wait for DATA
    cfg, db, emails = write_setup(tmp_path, sample_feeds, sink.port, subscribers=20, connections=2)
    day = utcnow().date()
    proc = start_send(cfg, day, tmp_path / "first")
    assert wait_for(lambda: sink.count() >= 2 or proc.poll() is not None, 60)
    assert wait_for(lambda: bool(in_flight(db)), 10)
    proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: "stopping after" in (tmp_path / "first.err").read_text(), 10)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert proc.wait(10) == 1
    assert time.monotonic() - t0 < 5
    assert "SIGTERM again: exiting now" in (tmp_path / "first.err").read_text()
    final = start_send(cfg, day, tmp_path / "final")
    assert final.wait(120) == 0, (tmp_path / "final.err").read_text()
    sink.settle(quiet=1.0)
    copies: dict[str, list[str]] = defaultdict(list)
    for rcpt, mid in sink.lines:
        copies[rcpt].append(mid)
    assert sorted(copies) == emails
    doubtful = {e for e, _st, _m, _a, d in ledger_rows(db) if d}
    assert len(doubtful) <= 2  # at most the messages in DATA at the second signal
    assert all(len(m) == 1 or e in doubtful for e, m in copies.items())


def test_the_terminal_progress_bar_shows_failures_as_they_happen(
    tmp_path, sample_feeds, smtp_server
):
    """`newsletter send` on a terminal (a pty): the bar counts the failed and deferred
    messages while it runs, not only in the summary at the end."""
    import pty

    faults = Faults(
        delay=0.01,
        rcpt={
            "reader0003@example.org": ["550 5.1.1 no such user"],
            "reader0007@example.org": ["550 5.1.1 no such user"],
        },
    )
    server = smtp_server(Handler(faults))
    cfg, _db, _emails = write_setup(
        tmp_path, sample_feeds, server.port, subscribers=60, connections=2
    )
    main, child = pty.openpty()
    env = os.environ | {"NEWSLETTER_SECRET_KEY": SECRET, "COLUMNS": "160"}
    env.pop("NEWSLETTER_DATABASE_URL", None)
    proc = subprocess.Popen(
        [str(NEWSLETTER), "-c", str(cfg), "send", "--date", utcnow().date().isoformat()],
        stdout=subprocess.DEVNULL,
        stderr=child,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.wait(60) == 1
    text = seen.decode("utf-8", "replace")
    frames = [f for f in re.split(r"[\r\n]", text) if "sending" in f]
    assert any("failed 1" in f for f in frames), text
    assert any("failed 2" in f for f in frames), text


# --------------------------------------------------------------------------- "For you"

WORDS = ["neural", "graph", "images", "financial", "question", "search", "test", "learning"]


def interests_now(i: int, k: int) -> tuple[str, ...] | None:
    """Subscriber ``i``'s keywords after ``k`` changes (None: they state none), so some
    share a copy and every change gives each of them other keywords."""
    if i % 3 == 0:
        return None if k == 0 else (WORDS[k % len(WORDS)],)  # they state some later
    return (WORDS[(i + k) % len(WORDS)], WORDS[(i // 3 + 2 * k) % len(WORDS)])


def test_sigkill_resends_each_frozen_for_you_byte_for_byte_whatever_changed(
    tmp_path, sample_feeds, sink_process
):
    """The crash loop with interests: every subscriber's interests change between each kill
    and the next run.  Each copy that reaches the server (first or resent) is the message
    frozen when the row was queued, byte for byte: same Message-ID, same "For you"."""
    from email import message_from_bytes
    from email.policy import default as parsed

    from newsletter.links import issue_url as web_url
    from newsletter.personal.copies import issue_digest, make_copies
    from newsletter.personal.interests import Interests, SubscriberInterests
    from newsletter.personal.stated import InterestsChange

    connections, subscribers = 2, 150
    kept = tmp_path / "kept"
    kept.mkdir()
    sink = sink_process(0.01, keep=kept)
    cfg, db, emails = write_setup(
        tmp_path, sample_feeds, sink.port, subscribers=subscribers, connections=connections
    )
    settings = load_settings(cfg, env={"NEWSLETTER_SECRET_KEY": SECRET})
    day = utcnow().date()

    def state(k: int) -> None:
        with Store.open(settings.database_url) as store:
            for i, addr in enumerate(emails):
                words = interests_now(i, k)
                if words is not None:
                    sub = store.subscriber(addr)
                    store.update_interests(sub.id, InterestsChange(keywords=words), now=utcnow())

    state(0)
    rng = random.Random(SEED + 1)
    hows = ["count", "sending", "count", "sending", "sending", "count", "sending"]
    events: dict[str, int] = Counter()
    for k, how in enumerate(hows):
        before_sink, before_flight = sink.count(), in_flight(db)
        proc = start_send(cfg, day, tmp_path / f"run{k:02d}")
        deadline = time.monotonic() + 60
        target = before_sink + rng.randint(1, 20)
        while time.monotonic() < deadline and proc.poll() is None:
            if (how == "count" and sink.count() >= target) or (
                how == "sending" and in_flight(db) - before_flight
            ):
                break
            time.sleep(0.002)
        if not kill(proc):
            assert proc.returncode == 0, (tmp_path / f"run{k:02d}.err").read_text()
            break
        for addr, _attempt in in_flight(db) - before_flight:
            events[addr] += 1
        state(k + 1)  # between the kill and the resume: everyone changes their mind
    final = start_send(cfg, day, tmp_path / "final")
    assert final.wait(120) == 0, (tmp_path / "final.err").read_text()
    sink.settle()

    # What each subscriber's copy must be: made from their interests when the first run
    # queued them (all were active then), never from a later change.
    with Store.open(settings.database_url) as store:
        issue = store.issue(day)
        digest = issue_digest(day, store.issue_topics(issue.id))
    first = {
        i + 1: SubscriberInterests(Interests(keywords=w)) if w else SubscriberInterests()
        for i, w in enumerate(interests_now(i, 0) for i in range(subscribers))
    }
    made = {}
    for batch in make_copies(digest, first, settings, web_url=web_url(settings, day)):
        made.update((sid, batch.copies[key] if key else None) for sid, key in batch.rows)
    files = sorted(kept.iterdir())
    assert len(files) == len(sink.lines)
    got: dict[str, list[bytes]] = defaultdict(list)
    for (rcpt, _mid), path in zip(sink.lines, files, strict=True):
        got[rcpt].append(path.read_bytes())
    assert sorted(got) == emails
    duplicates = 0
    for i, addr in enumerate(emails):
        copies = got[addr]
        assert len(set(copies)) == 1, f"{addr}: {len(copies)} copies, not all the same bytes"
        duplicates += len(copies) - 1
        assert len(copies) - 1 <= events[addr]
        msg = message_from_bytes(copies[0], policy=parsed)
        text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        copy = made[i + 1]
        if copy is None:
            assert "FOR YOU" not in text, addr
        else:
            assert copy.text in text, addr  # the section made from their first interests
    assert duplicates >= 1, "no copy was resent: the loop checked nothing"
    print(f"\n{sum(events.values())} in doubt, {duplicates} resent, all byte for byte")
