"""Scale-out: N `newsletter send --worker --no-fetch` processes delivering one issue together.

    source .ci/postgres.sh start          # exports NEWSLETTER_TEST_DATABASE_URL (admin URL)
    python bench/scale_out.py             # 20,000 subscribers; 1, 2, 4 workers on PostgreSQL,
                                          # the failure run, 1 and 4 workers on SQLite
    python bench/scale_out.py --subscribers 2000 --workers 1 2 --sqlite-workers --no-failure

Every run gets a fresh database (PostgreSQL: ``CREATE DATABASE`` through the admin URL;
SQLite: a new file), its own SMTP sink process (``tests/smtp_server.py``'s ``SinkProcess``:
aiosmtpd, ``--latency`` added to the replies to MAIL, RCPT and DATA, so three round trips
per message) and the issue prepared before the clock starts: the sample feed
``newsletter/samples/feeds/hf-daily.json`` fetched, clustered and rendered with
``prepare_issue``, then one QUEUED ledger row per subscriber (``store.queue_deliveries``).

Timed: from starting the first worker process to the exit of the last (Python start-up,
imports and opening the store included).  Throughput = subscribers / that time.  Checked
at the sink, independently of the ledger: every subscriber got exactly one copy, every
worker exited 0, every ledger row is SENT.

The failure run: ``--failure-workers`` workers with ``delivery.lease_seconds = --lease``
(default 120, the shipped value); when the sink has seen half the list, one worker is
killed with SIGKILL.  Its liveness lock goes with it, so the others take over its rows
within seconds, not after the lease.  Reported: the longest time the sink sat idle after
the kill (target < 5 s).  Checked: nobody missed; at most one extra copy per connection of
the killed worker (a message in DATA when it died), each with the same Message-ID as the
first, and marked in doubt in the ledger.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pgdb import throwaway_database  # noqa: E402
from smtp_config import config_text  # noqa: E402
from smtp_server import SinkProcess, wait_for  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef"
ENV = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def email(i: int) -> str:
    return f"reader{i:06d}@example.org"


# --------------------------------------------------------------------------- databases


@contextmanager
def fresh_database(backend: str, workdir: Path, admin_url: str | None, tag: str):
    """A new, empty database URL; a PostgreSQL one is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir}/{tag}.db"
        return
    assert admin_url, "PostgreSQL needs --admin-url or NEWSLETTER_TEST_DATABASE_URL"
    with throwaway_database(admin_url, f"nl_scale_{tag}") as url:
        yield url


def prepare(cfg: Path, n: int) -> tuple[Any, int]:
    """Subscribers, the issue rendered once and its ledger rows queued (not timed)."""
    from newsletter.config import load_settings
    from newsletter.pipeline import prepare_issue
    from newsletter.store import Store

    settings = load_settings(cfg, env=ENV)
    day = utcnow().date()
    with Store.open(settings.database_url) as store:
        store.import_subscribers([(email(i), "") for i in range(n)], now=utcnow())
        issue, _ = prepare_issue(settings, store, day, now=utcnow(), fetch=True)
        assert issue is not None, "the sample feed gave no issue"
        store.queue_deliveries(issue.id, now=utcnow())
        # Counted in the ledger: on PostgreSQL queue_deliveries() returns 0 (rowcount -1
        # of INSERT ... SELECT without preserve_rowcount; see bench/RESULTS.md).
        queued = store.delivery_counts(issue.id).queued
    assert queued == n, (queued, n)
    return settings, issue.id


@dataclass
class Row:
    email: str
    status: str
    claimed_by: str
    message_id: str
    in_doubt: bool


def ledger(settings: Any) -> list[Row]:
    import sqlalchemy as sa

    from newsletter.store import Store, schema

    d, s = schema.deliveries, schema.subscribers
    with Store.open(settings.database_url) as store, store.read() as conn:
        q = sa.select(s.c.email, d.c.status, d.c.claimed_by, d.c.message_id, d.c.in_doubt).join(
            s, s.c.id == d.c.subscriber_id
        )
        return [
            Row(r.email, r.status, r.claimed_by or "", r.message_id or "", bool(r.in_doubt))
            for r in conn.execute(q)
        ]


# --------------------------------------------------------------------------- one run


@dataclass
class Result:
    backend: str
    workers: int
    connections: int
    n: int
    elapsed: float = 0.0
    worker_cpu: float = 0.0  # user + system seconds of all worker processes
    sink_cpu: float = 0.0
    received: int = 0
    distinct: int = 0
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    per_worker: dict[str, int] = field(default_factory=dict)  # pid -> rows it finished
    load: str = ""
    # failure run only
    killed_at_count: int = 0
    victim_held: int = 0  # rows the victim held (CLAIMED or SENDING) when it died
    victim_sending: int = 0
    in_doubt_rows: int = 0
    after_kill: float = 0.0
    idle_gap: float = 0.0  # the longest silence at the sink after the kill

    @property
    def rate(self) -> float:
        return self.n / self.elapsed if self.elapsed else 0.0


def proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_worker(cfg: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "newsletter", "-c", str(cfg), "send", "--worker", "--no-fetch"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
            cwd=log.parent,
        )


def run(
    backend: str,
    workers: int,
    args: argparse.Namespace,
    workdir: Path,
    *,
    kill_one: bool = False,
) -> Result:
    tag = f"{backend[:2]}{workers}{'k' if kill_one else ''}"
    lease = args.lease if kill_one else 120.0
    res = Result(backend, workers, args.connections, args.subscribers)
    sink = SinkProcess(args.latency)
    try:
        with fresh_database(backend, workdir, args.admin_url, tag) as url:
            cfg = workdir / f"{tag}.toml"
            cfg.write_text(
                config_text(url, sink.port, args.connections, args.per_connection, lease=lease),
                encoding="utf-8",
            )
            t = time.perf_counter()
            settings, _ = prepare(cfg, args.subscribers)
            print(
                f"  [{tag}] prepared {args.subscribers} subscribers + issue in "
                f"{time.perf_counter() - t:.1f}s",
                flush=True,
            )
            res.load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            sink_cpu0 = proc_cpu(sink.proc.pid)
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            logs = [workdir / f"{tag}-w{i}.log" for i in range(workers)]
            t0 = time.perf_counter()
            procs = [start_worker(cfg, log) for log in logs]
            victim = None
            if kill_one:
                half = args.subscribers // 2
                assert wait_for(lambda: sink.count() >= half, timeout=3600), "sink never saw half"
                victim = procs[-1]
                victim.send_signal(signal.SIGKILL)
                victim.wait(30)
                killed, killed_mono = time.perf_counter(), time.monotonic()
                res.killed_at_count = sink.count()
            for p, log in zip(procs, logs, strict=True):
                code = p.wait(7200)
                if p is not victim and code != 0:
                    raise RuntimeError(f"worker exited {code}:\n{log.read_text()[-3000:]}")
            if victim is not None:
                # What the victim held, as the survivor that took it over counted it (the
                # ledger cannot be read at the kill: the takeover may come first).
                taken = re.compile(
                    rf"worker \S+:{victim.pid}:\S+ is gone: (\d+) of its row\(s\) queued "
                    r"again, (\d+) of them in doubt"
                )
                for log in logs:
                    for m in taken.finditer(log.read_text()):
                        res.victim_held += int(m.group(1))
                        res.victim_sending += int(m.group(2))
            res.elapsed = time.perf_counter() - t0
            if kill_one:
                res.after_kill = time.perf_counter() - killed
                # From the kill to the last message: the sink's longest wait for the next.
                times = [killed_mono] + [a for a in sink.arrivals if a > killed_mono]
                res.idle_gap = max(b - a for a, b in itertools.pairwise(times))
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            res.worker_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            sink.settle()
            res.sink_cpu = proc_cpu(sink.proc.pid) - sink_cpu0
            copies = sink.copies()
            rows = ledger(settings)
    finally:
        sink.stop()
    res.received = sum(len(m) for m in copies.values())
    res.distinct = len(copies)
    res.duplicates = {r: m for r, m in copies.items() if len(m) > 1}
    res.per_worker = dict(Counter(r.claimed_by.split(":")[1] for r in rows if r.claimed_by))
    res.in_doubt_rows = sum(r.in_doubt for r in rows)

    # ---- checks
    expected = {email(i) for i in range(args.subscribers)}
    missing = expected - set(copies)
    assert not missing, f"{len(missing)} subscribers got nothing, e.g. {sorted(missing)[:3]}"
    assert set(copies) == expected, "the sink got mail for someone not on the list"
    statuses = Counter(r.status for r in rows)
    assert statuses == {"sent": args.subscribers}, statuses
    if not kill_one:
        assert not res.duplicates, f"{len(res.duplicates)} duplicates without a failure"
        assert len(res.per_worker) == workers, f"not every worker took part: {res.per_worker}"
    else:
        assert len(res.duplicates) <= args.connections, (
            f"{len(res.duplicates)} duplicates > the killed worker's {args.connections} connections"
        )
        same_id = all(len(set(m)) == 1 for m in res.duplicates.values())
        assert same_id, "a duplicate with a new Message-ID"
        doubt = {r.email: r for r in rows if r.in_doubt}
        for rcpt, mids in res.duplicates.items():
            assert rcpt in doubt, f"{rcpt} got two copies but is not marked in doubt"
            assert doubt[rcpt].message_id == mids[0], f"{rcpt}: ledger Message-ID differs"
    return res


# --------------------------------------------------------------------------- main


def table(results: list[Result], args: argparse.Namespace) -> str:
    base = {r.backend: r.rate for r in results if r.workers == 1 and not r.killed_at_count}
    lines = [
        "| backend | workers x connections | wall time (s) | msg/s | vs 1 worker | "
        "worker CPU s/1k msg | sink CPU (s) | at the sink | duplicates | sink idle after kill | "
        "rows per worker | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        label = f"{r.workers} x {r.connections}" + (" (1 killed)" if r.killed_at_count else "")
        speed = f"{r.rate / base[r.backend]:.2f}x" if r.backend in base else "-"
        per = ", ".join(str(v) for v in sorted(r.per_worker.values(), reverse=True))
        lines.append(
            f"| {'PostgreSQL' if r.backend == 'postgresql' else 'SQLite'} | {label} | "
            f"{r.elapsed:.1f} | {r.rate:.0f} | {speed} | {1000 * r.worker_cpu / r.n:.1f} | "
            f"{r.sink_cpu:.0f} | {r.distinct} recipients, {r.received} messages | "
            f"{len(r.duplicates)} | {f'{r.idle_gap:.2f} s' if r.killed_at_count else '-'} | "
            f"{per} | {r.load} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--connections", type=int, default=4, help="smtp.connections per worker")
    ap.add_argument("--per-connection", type=int, default=100, help="smtp.max_per_connection")
    ap.add_argument("--latency", type=float, default=0.02, help="seconds added to MAIL, RCPT, DATA")
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4], help="PostgreSQL runs")
    ap.add_argument("--sqlite-workers", type=int, nargs="*", default=[1, 4], help="SQLite runs")
    ap.add_argument("--failure-workers", type=int, default=4)
    ap.add_argument("--lease", type=float, default=120.0, help="lease_seconds in the failure run")
    ap.add_argument("--no-failure", action="store_true", help="skip the failure run")
    ap.add_argument(
        "--admin-url",
        default=os.environ.get("NEWSLETTER_TEST_DATABASE_URL"),
        help="PostgreSQL URL allowed to CREATE DATABASE (default: $NEWSLETTER_TEST_DATABASE_URL)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = ap.parse_args()
    if not args.admin_url and (args.workers or not args.no_failure):
        ap.error("PostgreSQL runs need --admin-url or NEWSLETTER_TEST_DATABASE_URL")

    workdir = Path(tempfile.mkdtemp(prefix="scale-out-"))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average {load}\n"
        f"{args.subscribers} subscribers, sink latency {args.latency * 1000:.0f} ms x 3 replies, "
        f"{args.connections} connections per worker, max_per_connection {args.per_connection}; "
        f"work directory {workdir}",
        flush=True,
    )
    results: list[Result] = []
    bench_t0 = time.perf_counter()
    try:
        plan = [("postgresql", w, False) for w in args.workers]
        if not args.no_failure:
            plan.append(("postgresql", args.failure_workers, True))
        plan += [("sqlite", w, False) for w in args.sqlite_workers]
        for backend, w, kill in plan:
            r = run(backend, w, args, workdir, kill_one=kill)
            results.append(r)
            extra = ""
            if kill:
                extra = (
                    f"; killed at {r.killed_at_count} delivered, it held {r.victim_held} rows "
                    f"({r.victim_sending} in DATA), {len(r.duplicates)} duplicates, "
                    f"{r.in_doubt_rows} rows in doubt, survivors done {r.after_kill:.1f}s later, "
                    f"longest idle gap at the sink after the kill {r.idle_gap:.2f}s "
                    f"(lease {args.lease:.0f}s)"
                )
            print(
                f"  {backend} {w} worker(s){' (1 killed)' if kill else ''}: {r.elapsed:.1f}s, "
                f"{r.rate:.0f} msg/s, worker CPU {r.worker_cpu:.0f}s{extra}",
                flush=True,
            )
        print()
        print(table(results, args))
        print(f"\nwhole bench: {time.perf_counter() - bench_t0:.0f}s")
        pg = {
            r.workers: r.rate
            for r in results
            if r.backend == "postgresql" and not r.killed_at_count
        }
        if 1 in pg and 4 in pg:
            ratio = pg[4] / pg[1]
            print(
                f"PostgreSQL 4 workers / 1 worker: {ratio:.2f}x (target >= 3x: "
                f"{'met' if ratio >= 3 else 'NOT met'})"
            )
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
