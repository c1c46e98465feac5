"""Delivery throughput: `run_send` through SMTP vs a naive sender, against an aiosmtpd sink.

    python bench/send_speed.py                       # 10,000 subscribers, 0 and 20 ms
    python bench/send_speed.py --subscribers 2000 --configs 8x200 16x200
    python bench/send_speed.py --profile 8x200 --latency 0   # where the time goes

The sink is aiosmtpd in a separate process (this file, run with ``--sink``).  ``--latency``
is added to *every* reply the server sends, the greeting, EHLO, QUIT and the 354 to DATA
included: one simulated round trip to a remote relay per command.  (The TCP handshake is
not delayed, which favours the naive baseline.)  Every message is one line on the sink's
stdout, so each run is checked: every subscriber got exactly one copy.

Baseline, measured in the same run against the same sink: one message at a time, a new
smtplib connection per message (connect, EHLO, MAIL, RCPT, DATA, QUIT), the message built
the same way as ours (`IssueMailer.message`), no ledger.  With latency it is measured on a
subset (``--baseline-n``): its rate does not depend on the number of messages.

"Ours" is ``newsletter.pipeline.run_send(fetch=False)`` on a copy of a database holding the
subscribers and the rendered sample issue: ledger rows queued, claimed, marked SENDING and
SENT, messages personalised and built, sent over ``connections`` x ``max_per_connection``.
The rate is wall-clock over the whole call.

    python bench/send_speed.py --fault-mix --subscribers 500 --latency 0.005
    python bench/send_speed.py --retry-full 20 --subscribers 100 --latency 0.005
    python bench/send_speed.py --dkim 2048 --subscribers 2000 --latency 0 --repeat 5

The fault mix: ours with the default ``smtp.connections`` (or ``--configs``), a clean send
and the same send with faulty addresses, each against a fresh sink, alternating for
``--repeat`` rounds.  "transient": 5 % of the addresses fail their first try (every
other one a ``451`` to DATA, the others a connection dropped in DATA before the server
took the message) and are accepted afterwards; target: at most 1.2x the clean send's
time.  Reported apart: 5 % with a persistent ``452`` to RCPT (deferred after their
retries) and 5 % whose DATA reply takes 2 s.  ``--retry-full N``: how long
``send --retry-failed`` takes when N mailboxes are still full.  ``--dkim BITS``: the
same send unsigned and signed with a fresh RSA key, alternating; the difference per
message is what signing costs (target: under 10 % at 0 ms latency).

    python bench/send_speed.py --personal                 # 10,000 subscribers, 20 ms

The personalised run ("For you"): one realistic day of 1,000 papers from
../shared/data/arxiv-labeled.jsonl.xz (bench/for_you.py's speed day) as the issue, and
every subscriber with a distinct library of 20 of the other papers.  Two sends of that
issue against fresh sinks, each in a fresh process, alternating for ``--repeat`` rounds:
plain (the same database, nobody's interests) and personal.  Each is timed in two parts:
queueing the rows, which for the personal send makes every subscriber's copy (ranking,
in worker processes; "preparation"), then delivering them (``run_send``, which finds the
rows queued).  Throughput is messages over the delivery time; peak memory is the highest
sum of the proportional set sizes (PSS) of the process and its descendants (the ranking
workers), sampled every 0.1 s, and the preparation's CPU time is theirs too.  Every
message is checked for a "For you" (personal) or its absence (plain); tests/ check what
is in it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import io
import os
import platform
import pstats
import shutil
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from smtp_config import config_text

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-key-0123456789abcdef"


# --------------------------------------------------------------------------- the sink


def run_sink(port: int, latency: float, faults_file: str = "") -> None:
    """aiosmtpd on 127.0.0.1:port; ``latency`` seconds before every final reply line.
    ``faults_file``: JSON {address: "451-once" | "drop-once" | "452" | "slow"}."""
    import json

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    faults: dict[str, str] = json.loads(Path(faults_file).read_text()) if faults_file else {}
    tried: set[str] = set()

    class SlowSMTP(SMTP):
        async def push(self, status: Any) -> None:
            line = status.encode() if isinstance(status, str) else status
            if latency and line[3:4] != b"-":  # not a continuation line of EHLO
                await asyncio.sleep(latency)
            await super().push(status)

    out = sys.stdout

    class Sink:
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: Any
        ) -> str:
            if faults.get(address) == "452":
                return "452 4.2.2 Mailbox full"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            rcpt = envelope.rcpt_tos[0]
            fault = faults.get(rcpt)
            if fault in ("451-once", "drop-once") and rcpt not in tried:
                tried.add(rcpt)
                if fault == "drop-once":  # the connection drops before the message is taken
                    server.transport.close()
                return "451 4.3.0 Try again later"
            if fault == "slow":
                await asyncio.sleep(2.0)
            mid = ""
            for line in envelope.original_content.split(b"\r\n"):
                if line[:11].lower() == b"message-id:":
                    mid = line[11:].strip().decode()
                    break
                if not line:
                    break
            data = envelope.original_content
            out.write(f"{envelope.rcpt_tos[0]} {mid} {len(data)} {int(b'FOR YOU' in data)}\n")
            return "250 OK"

    class SlowController(Controller):
        def factory(self) -> SMTP:
            return SlowSMTP(self.handler, **self.SMTP_kwargs)

    ctl = SlowController(Sink(), hostname="127.0.0.1", port=port, ready_timeout=30)
    ctl.start()
    print("ready", flush=True)
    try:
        for _ in sys.stdin:  # until the parent closes our stdin
            pass
    finally:
        ctl.stop()
        out.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SinkProcess:
    def __init__(self, latency: float, workdir: Path, faults: dict[str, str] | None = None):
        import json

        self.port = free_port()
        self.log = workdir / f"sink-{self.port}.txt"
        faults_file = workdir / f"faults-{self.port}.json"
        faults_file.write_text(json.dumps(faults or {}))
        self._out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--sink", str(self.port), str(latency), str(faults_file)],
            stdin=subprocess.PIPE,
            stdout=self._out,
        )
        deadline = time.monotonic() + 30
        while "ready" not in self.log.read_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the sink did not start")
            time.sleep(0.05)

    def cpu(self) -> float:
        """CPU seconds the sink has used so far (Linux)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> list[str]:
        """Stop the sink and return the recipients it received, one per message."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        self._out.close()
        return [ln.split(" ", 1)[0] for ln in self.log.read_text().splitlines()[1:] if ln]

    def messages(self) -> list[tuple[str, int, bool]]:
        """(recipient, size, whether it has a "For you") of every message, once stopped."""
        lines = [ln.split() for ln in self.log.read_text().splitlines()[1:] if ln]
        return [(f[0], int(f[2]), f[3] == "1") for f in lines]


# --------------------------------------------------------------------------- setup


def settings_for(
    workdir: Path,
    db: Path,
    port: int,
    connections: int = 1,
    per_conn: int = 200,
    dkim_key: Path | None = None,
):
    from newsletter.config import load_settings

    cfg = workdir / f"bench-{port}-{connections}-{per_conn}.toml"
    text = config_text(f"sqlite:///{db}", port, connections, per_conn)
    if dkim_key is not None:  # [smtp] is the last table
        text += f'dkim_key_file = "{dkim_key}"\ndkim_selector = "bench"\n'
    cfg.write_text(text, encoding="utf-8")
    return load_settings(cfg, env={"NEWSLETTER_SECRET_KEY": SECRET})


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_template(workdir: Path, n: int, day: dt.date) -> Path:
    """A database with ``n`` subscribers and the day's issue rendered from the sample feed."""
    from newsletter.pipeline import prepare_issue
    from newsletter.store import Store

    db = workdir / "template.db"
    settings = settings_for(workdir, db, 25)
    with Store.open(settings.database_url) as store:
        names = ["", "Ada Lovelace", "Zoë Ñandú", "李小龙", ""]
        store.import_subscribers(
            [(f"reader{i:05d}@example.org", names[i % len(names)]) for i in range(n)], now=utcnow()
        )
        issue, _ = prepare_issue(settings, store, day, now=utcnow(), fetch=True)
        assert issue is not None, "the sample feed gave no issue"
    return db


def copy_db(src: Path, dst: Path) -> None:
    for p in (dst, Path(f"{dst}-wal"), Path(f"{dst}-shm")):
        p.unlink(missing_ok=True)
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


# --------------------------------------------------------------------------- runs


def run_baseline(workdir: Path, template: Path, day: dt.date, latency: float, n: int) -> dict:
    from newsletter.delivery import IssueMailer
    from newsletter.models import SubscriberStatus
    from newsletter.store import Store

    sink = SinkProcess(latency, workdir)
    db = workdir / "baseline.db"
    copy_db(template, db)
    settings = settings_for(workdir, db, sink.port)
    with Store.open(settings.database_url) as store:
        issue = store.issue(day)
        assert issue is not None
        subs = list(store.iter_subscribers(SubscriberStatus.ACTIVE))[:n]
    mailer = IssueMailer(settings, issue, SECRET, utcnow())
    size = 0
    sink0, cpu0 = sink.cpu(), time.process_time()
    t0 = time.perf_counter()
    for sub in subs:
        data = mailer.message(sub).data
        size += len(data)
        conn = smtplib.SMTP("127.0.0.1", sink.port, timeout=30)
        conn.sendmail(settings.list.from_address, [sub.email], data)
        conn.quit()
    elapsed = time.perf_counter() - t0
    cpu, sink_cpu = time.process_time() - cpu0, sink.cpu() - sink0
    got = sink.stop()
    assert sorted(got) == sorted(s.email for s in subs), "baseline: sink count mismatch"
    return {
        "n": len(subs),
        "elapsed": elapsed,
        "rate": len(subs) / elapsed,
        "size": size / len(subs),
        "cpu": cpu,
        "sink_cpu": sink_cpu,
    }


class ThreadProfiles:
    """cProfile in every thread started while active (the senders), merged at the end."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._orig = threading.Thread.run

    def __enter__(self) -> ThreadProfiles:
        profiles, orig = self.profiles, self._orig

        def run(thread: threading.Thread) -> None:
            prof = cProfile.Profile()
            profiles.append(prof)
            prof.runcall(orig, thread)

        threading.Thread.run = run  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        threading.Thread.run = self._orig  # type: ignore[method-assign]

    def report(self, main: cProfile.Profile, top: int = 30) -> str:
        buf = io.StringIO()
        stats = pstats.Stats(main, stream=buf)
        for p in self.profiles:
            stats.add(p)
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        return buf.getvalue()


def run_ours(
    workdir: Path,
    template: Path,
    day: dt.date,
    latency: float,
    connections: int,
    per_conn: int,
    n: int,
    profile: bool = False,
    faults: dict[str, str] | None = None,
    dkim_key: Path | None = None,
) -> dict:
    from newsletter.pipeline import run_send
    from newsletter.store import Store

    faults = faults or {}
    sink = SinkProcess(latency, workdir, faults)
    db = workdir / f"ours-{connections}-{per_conn}.db"
    copy_db(template, db)
    settings = settings_for(workdir, db, sink.port, connections, per_conn, dkim_key)
    main = cProfile.Profile()
    with Store.open(settings.database_url) as store:
        sink0, cpu0 = sink.cpu(), time.process_time()
        t0 = time.perf_counter()
        if profile:
            with ThreadProfiles() as tp:
                main.enable()
                report = run_send(settings, store, issue_date=day, now=utcnow, fetch=False)
                main.disable()
        else:
            report = run_send(settings, store, issue_date=day, now=utcnow, fetch=False)
        elapsed = time.perf_counter() - t0
        cpu, sink_cpu = time.process_time() - cpu0, sink.cpu() - sink0
    got = sink.stop()
    d = report.delivery
    deferred = sum(kind == "452" for kind in faults.values())
    assert d is not None and d.sent == n - deferred and d.deferred == deferred, report
    assert d.failed == 0, report
    expect = n - deferred
    assert len(got) == expect and len(set(got)) == expect, f"sink got {len(got)} ({len(set(got))})"
    out = {
        "n": n,
        "elapsed": elapsed,
        "rate": n / elapsed,
        "deliver_rate": d.rate,
        "cpu": cpu,
        "sink_cpu": sink_cpu,
    }
    if profile:
        out["profile"] = tp.report(main)
    return out


def what_if_write_lock() -> None:
    """Proposed fix, tried here without editing newsletter/: one in-process mutex around every
    SQLite write transaction, so sender threads queue on it instead of in SQLite's busy
    handler (which sleeps 1, 2, 5, 10 ... ms between tries, however soon the lock frees)."""
    import contextlib

    from newsletter.store import Store

    original = Store.write
    mutex = threading.Lock()

    @contextlib.contextmanager
    def write(self: Store):  # type: ignore[no-untyped-def]
        with mutex, original(self) as conn:
            yield conn

    Store.write = write  # type: ignore[method-assign]


def fault_mix(
    workdir: Path, template: Path, day: dt.date, n: int, latency: float, spec: str, repeat: int
) -> None:
    """The clean send against sends with faulty addresses, alternating, same conditions."""
    c, m = parse_config(spec or "default")
    emails = [f"reader{i:05d}@example.org" for i in range(n)]
    every = 20  # 5 %
    picked = emails[every // 2 :: every]
    transient = {a: ("451-once" if i % 2 else "drop-once") for i, a in enumerate(picked)}
    mixes = {
        "clean": {},
        "transient 5 % (451 or dropped in DATA, once)": transient,
        "persistent 452 on 5 %": dict.fromkeys(picked, "452"),
        "2-s DATA reply on 5 %": dict.fromkeys(picked, "slow"),
    }
    print(
        f"fault mix: {n} subscribers, latency {latency * 1000:.0f} ms per reply, "
        f"connections={c} max_per_connection={m}, {len(picked)} faulty addresses per mix",
        flush=True,
    )
    times: dict[str, list[float]] = {name: [] for name in mixes}
    for k in range(repeat):
        for name, faults in mixes.items():
            r = run_ours(workdir, template, day, latency, c, m, n, faults=faults)
            times[name].append(r["elapsed"])
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"  round {k + 1}: {name}: {r['elapsed']:.2f}s (load {load})", flush=True)
    clean = sorted(times["clean"])[len(times["clean"]) // 2]
    print()
    print("| mix | runs (s) | median s | vs clean |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        med = sorted(ts)[len(ts) // 2]
        runs = ", ".join(f"{t:.2f}" for t in ts)
        print(f"| {name} | {runs} | {med:.2f} | {med / clean:.2f}x |")


def dkim_cost(
    workdir: Path,
    template: Path,
    day: dt.date,
    n: int,
    latency: float,
    spec: str,
    repeat: int,
    bits: int,
) -> None:
    """The same send unsigned and DKIM-signed (an RSA key of ``bits``), alternating."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    c, m = parse_config(spec or "default")
    key = workdir / f"dkim-{bits}.pem"
    key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=bits).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    print(
        f"DKIM: {n} subscribers, latency {latency * 1000:.0f} ms per reply, "
        f"connections={c} max_per_connection={m}, RSA-{bits}",
        flush=True,
    )
    times: dict[str, list[float]] = {"unsigned": [], "signed": []}
    for k in range(repeat):
        for name, signer in (("unsigned", None), ("signed", key)):
            r = run_ours(workdir, template, day, latency, c, m, n, dkim_key=signer)
            times[name].append(r["elapsed"])
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"  round {k + 1}: {name}: {r['elapsed']:.2f}s, CPU {r['cpu']:.2f}s (load {load})",
                flush=True,
            )
    plain, signed = (sorted(ts)[len(ts) // 2] for ts in times.values())
    print()
    print("| send | runs (s) | median s | ms per message | vs unsigned |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        med = sorted(ts)[len(ts) // 2]
        runs = ", ".join(f"{t:.2f}" for t in ts)
        print(f"| {name} | {runs} | {med:.2f} | {med / n * 1000:.3f} | {med / plain:.3f}x |")
    print(
        f"signing adds {(signed - plain) / n * 1000:.3f} ms per message ({signed / plain - 1:+.1%})"
    )


def retry_full_mailboxes(
    workdir: Path, template: Path, day: dt.date, latency: float, spec: str, full: int
) -> None:
    """`send --retry-failed` while ``full`` mailboxes stay full (452 to every RCPT): the
    time it takes to deliver nothing, which should be about one retry schedule."""
    from newsletter.pipeline import run_send
    from newsletter.store import Store

    c, m = parse_config(spec or "default")
    sink = SinkProcess(latency, workdir, {f"reader{i:05d}@example.org": "452" for i in range(full)})
    db = workdir / "retry-full.db"
    copy_db(template, db)
    settings = settings_for(workdir, db, sink.port, c, m)
    with Store.open(settings.database_url) as store:
        first = run_send(settings, store, issue_date=day, now=utcnow, fetch=False)
        t0 = time.perf_counter()
        again = run_send(
            settings, store, issue_date=day, now=utcnow, fetch=False, retry_failed=True
        )
        elapsed = time.perf_counter() - t0
    sink.stop()
    assert first.delivery is not None and first.delivery.deferred == full, first
    assert again.delivery is not None and again.delivery.deferred == full, again
    assert again.delivery.sent == 0, again
    print(
        f"send --retry-failed on {full} full mailboxes, connections={c}, latency "
        f"{latency * 1000:.0f} ms: {elapsed:.2f}s to deliver nothing",
        flush=True,
    )


def parse_config(s: str) -> tuple[int, int]:
    """ "CxM" (connections x max_per_connection), or "default": the shipped defaults."""
    if s == "default":
        from newsletter.config import SmtpSettings

        return SmtpSettings().connections, SmtpSettings().max_per_connection
    c, _, m = s.partition("x")
    return int(c), int(m or 200)


# --------------------------------------------------------------------------- "For you"

LIBRARY = 20  # papers per subscriber's library
DAY_PAPERS = 1000


def make_personal_template(workdir: Path, n: int, day: dt.date) -> tuple[Path, dict[str, float]]:
    """``n`` subscribers, each with a distinct 20-paper library, and the issue of a
    1,000-paper day (both from the labelled arXiv sample), stored; no row queued."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from quality import DEFAULT_DATA, load

    from newsletter.models import Paper, SubscriberStatus
    from newsletter.personal import LibraryPaper
    from newsletter.personal.stated import InterestsChange
    from newsletter.pipeline import prepare_issue
    from newsletter.store import Store
    from newsletter.store.interests import write_interests

    rows = load(DEFAULT_DATA)
    rng = np.random.default_rng(7)  # bench/for_you.py --speed: the same day and draw
    chosen = sorted(rng.choice(len(rows), DAY_PAPERS, replace=False).tolist())
    in_day = set(chosen)
    pool = [r for i, r in enumerate(rows) if i not in in_day]
    libraries: set[tuple[int, ...]] = set()
    while len(libraries) < n:
        libraries.add(tuple(sorted(rng.choice(len(pool), LIBRARY, replace=False).tolist())))
    db = workdir / "personal.db"
    settings = settings_for(workdir, db, 25)
    times = {}
    with Store.open(settings.database_url) as store:
        store.import_subscribers(
            [(f"reader{i:05d}@example.org", "") for i in range(n)], now=utcnow()
        )
        papers = [
            Paper(
                id=f"arxiv:{r['id']}",
                title=r["title"],
                abstract=r["abstract"],
                authors=tuple(r["authors"]),
                url=f"https://arxiv.org/abs/{r['id']}",
                categories=tuple(r["categories"]),
                source="arxiv",
            )
            for r in (rows[i] for i in chosen)
        ]
        store.upsert_papers(papers, seen_at=utcnow())
        t = time.perf_counter()
        issue, _ = prepare_issue(settings, store, day, now=utcnow(), fetch=False)
        assert issue is not None
        times["the day's issue (topics, render)"] = time.perf_counter() - t
        t = time.perf_counter()
        ids = [s.id for s in store.iter_subscribers(SubscriberStatus.ACTIVE)]
        with store.write() as conn:  # setup, not measured: one transaction for all
            for sid, lib in zip(ids, sorted(libraries), strict=True):
                kept = tuple(
                    LibraryPaper(p["title"], p["abstract"], f"arxiv:{p['id']}", tuple(p["authors"]))
                    for p in (pool[i] for i in lib)
                )
                write_interests(conn, sid, InterestsChange(library=kept), utcnow())
        times[f"{n:,} libraries stored"] = time.perf_counter() - t
    return db, times


def _tree() -> dict[int, tuple[int, float]]:
    """(proportional set size in bytes, CPU seconds so far) of this process and each of its
    descendants, by pid.  PSS shares each page among the processes mapping it: the ranking
    workers fork from a server that imported numpy and scikit-learn once, and RSS would
    count those pages once per process."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(d.name))
    out, todo = {}, [os.getpid()]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        pss = next(int(ln.split()[1]) * 1024 for ln in rollup.splitlines() if ln.startswith("Pss:"))
        fields = stats[pid]
        out[pid] = (pss, (int(fields[11]) + int(fields[12])) / tick)
    return out


def personal_child(db: str, port: int, connections: int, per_conn: int, day: str) -> None:
    """One timed send in this (fresh) process: queue (and make the copies), then deliver;
    prints a JSON line."""
    import json

    from newsletter.pipeline import queue_issue, run_send
    from newsletter.store import Store

    workdir = Path(db).parent
    settings = settings_for(workdir, Path(db), port, connections, per_conn)
    peak = [0]
    cpu: dict[int, float] = {}  # the last CPU time seen of each process of the tree
    done = threading.Event()

    def sample() -> None:
        while True:
            tree = _tree()
            peak[0] = max(peak[0], sum(pss for pss, _ in tree.values()))
            cpu.update((pid, seconds) for pid, (_, seconds) in tree.items())
            if done.wait(0.1):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    issue_date = dt.date.fromisoformat(day)
    with Store.open(settings.database_url) as store:
        issue = store.issue(issue_date)
        assert issue is not None
        w, c0 = time.perf_counter(), sum(cpu.values())
        queued = queue_issue(settings, store, issue, now=utcnow())
        prep, prep_cpu = time.perf_counter() - w, sum(cpu.values()) - c0
        prep_peak = peak[0]
        w = time.perf_counter()
        report = run_send(settings, store, issue_date=issue_date, now=utcnow, fetch=False)
        send = time.perf_counter() - w
    done.set()
    sampler.join()
    assert report.delivery is not None and report.delivery.sent == queued, report
    print(
        json.dumps(
            {
                "queued": queued,
                "prep": prep,
                "prep_cpu": prep_cpu,
                "send": send,
                "prep_peak_mb": prep_peak / 2**20,
                "peak_mb": peak[0] / 2**20,
            }
        ),
        flush=True,
    )


def personal_run(
    workdir: Path, template: Path, day: dt.date, latency: float, spec: str, n: int, personal: bool
) -> dict:
    import json

    import sqlalchemy as sa

    from newsletter.store import Store, schema

    c, m = parse_config(spec)
    sink = SinkProcess(latency, workdir)
    db = workdir / ("run-personal.db" if personal else "run-plain.db")
    copy_db(template, db)
    if not personal:  # the same database, nobody's interests: the plain send
        conn = sqlite3.connect(db)
        with conn:
            conn.execute(f"DELETE FROM {schema.subscriber_library.name}")
            conn.execute(f"DELETE FROM {schema.subscriber_interests.name}")
        conn.close()
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET}
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--personal-child",
            str(db),
            str(sink.port),
            str(c),
            str(m),
            day.isoformat(),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    got = sink.stop()
    if out.returncode:
        raise RuntimeError(out.stderr)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(got) == n and len(set(got)) == n, f"sink got {len(got)} ({len(set(got))})"
    messages = sink.messages()
    # every message has a "For you" (personal) or none (plain); tests/ check their content
    assert all(fy == personal for _, _, fy in messages)
    with Store.open(f"sqlite:///{db}") as store, store.read() as conn:
        copies = conn.execute(sa.select(sa.func.count()).select_from(schema.personal_copies))
        r["copies"] = copies.scalar_one()
    r["size"] = sum(size for _, size, _ in messages) / n
    return r


def personal_bench(workdir: Path, n: int, day: dt.date, latency: float, repeat: int) -> None:
    t = time.perf_counter()
    template, times = make_personal_template(workdir, n, day)
    for what, secs in times.items():
        print(f"setup: {what} in {secs:.1f}s", flush=True)
    print(f"setup: {time.perf_counter() - t:.1f}s ({workdir})", flush=True)
    results: dict[bool, list[dict]] = {False: [], True: []}
    for k in range(repeat):
        for personal in (False, True):
            r = personal_run(workdir, template, day, latency, "default", n, personal)
            results[personal].append(r)
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"round {k + 1}: {'personal' if personal else 'plain'}: queue {r['prep']:.1f}s "
                f"(CPU {r['prep_cpu']:.1f}s), deliver {r['send']:.1f}s = "
                f"{n / r['send']:.1f} msg/s, {r['copies']} copies, "
                f"{r['size'] / 1024:.1f} KiB/msg, peak {r['peak_mb']:.0f} MB (load {load})",
                flush=True,
            )
    print()
    print(
        f"{n:,} subscribers, latency {latency * 1000:.0f} ms per reply, the default "
        f"connections ({parse_config('default')[0]}), {repeat} round(s), medians:"
    )
    print()
    print("| send | queue s | deliver s | msg/s | vs plain | queue + deliver s | peak MB |")
    print("|---|---|---|---|---|---|---|")
    med = {p: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for p, rs in results.items()}
    for personal in (False, True):
        r = med[personal]
        what = f"personal, {n:,} distinct libraries" if personal else "plain (no interests)"
        print(
            f"| {what} | {r['prep']:.1f} | {r['send']:.1f} | {n / r['send']:.1f} "
            f"| {med[False]['send'] / r['send']:.2f} | {r['prep'] + r['send']:.1f} "
            f"| {r['peak_mb']:.0f} |"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--sink":
        run_sink(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "")
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--personal-child":
        personal_child(
            sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        )
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument(
        "--latency", type=float, nargs="+", default=[0.0, 0.02], help="seconds per reply"
    )
    ap.add_argument(
        "--configs",
        nargs="+",
        default=["1x200", "4x200", "8x200", "8x1000", "16x200"],
        help='CONNECTIONSxMAX_PER_CONNECTION, or "default" (the shipped smtp settings)',
    )
    ap.add_argument(
        "--baseline-n",
        type=int,
        default=None,
        help="messages for the baseline (default: all with no latency, 500 with latency)",
    )
    ap.add_argument("--profile", metavar="CxM", help="profile one config of ours instead")
    ap.add_argument(
        "--fault-mix",
        action="store_true",
        help="clean vs faulty addresses (first --configs entry, else the default config)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the fault mix")
    ap.add_argument(
        "--retry-full",
        type=int,
        metavar="N",
        help="time `send --retry-failed` on N mailboxes that stay full (first --configs entry, "
        "else the default config)",
    )
    ap.add_argument(
        "--dkim",
        type=int,
        metavar="BITS",
        help="unsigned vs DKIM-signed sends with an RSA key of BITS, alternating --repeat "
        "times (first --configs entry, else the default config)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument(
        "--personal",
        action="store_true",
        help='"For you": plain vs personal sends of a 1,000-paper day (--repeat rounds)',
    )
    ap.add_argument(
        "--what-if-write-lock",
        action="store_true",
        help="try the proposed fix (a mutex around SQLite writes), patched in here",
    )
    args = ap.parse_args()
    if args.what_if_write_lock:
        what_if_write_lock()
        print("WHAT-IF: Store.write serialised by an in-process mutex (not the shipped code)")

    workdir = Path(tempfile.mkdtemp(prefix="send-speed-"))
    day = utcnow().date()
    n = args.subscribers
    if args.personal:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; load average {load}"
        )
        lat = args.latency[0] if "--latency" in sys.argv else 0.02
        try:
            personal_bench(workdir, n, day, lat, args.repeat if "--repeat" in sys.argv else 1)
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        return
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}; load average {load}"
    )
    t = time.perf_counter()
    template = make_template(workdir, n, day)
    print(
        f"setup: {n} subscribers and the sample issue in {time.perf_counter() - t:.1f}s ({workdir})"
    )
    try:
        if args.retry_full:
            spec = args.configs[0] if "--configs" in sys.argv else ""
            for lat in args.latency:
                retry_full_mailboxes(workdir, template, day, lat, spec, args.retry_full)
            return
        if args.dkim:
            spec = args.configs[0] if "--configs" in sys.argv else ""
            for lat in args.latency:
                dkim_cost(workdir, template, day, n, lat, spec, args.repeat, args.dkim)
            return
        if args.fault_mix:
            spec = args.configs[0] if "--configs" in sys.argv else ""
            for lat in args.latency:
                fault_mix(workdir, template, day, n, lat, spec, args.repeat)
            return
        if args.profile:
            c, m = parse_config(args.profile)
            for lat in args.latency:
                r = run_ours(workdir, template, day, lat, c, m, n, profile=True)
                print(f"ours {c}x{m}, latency {lat * 1000:.0f} ms: {r['rate']:.0f} msg/s")
                print(r["profile"])
            return
        rows = []
        for lat in args.latency:
            bn = args.baseline_n or (n if lat == 0 else min(n, 500))
            b = run_baseline(workdir, template, day, lat, bn)
            print(
                f"latency {lat * 1000:.0f} ms: baseline {b['rate']:.1f} msg/s "
                f"({b['n']} msgs in {b['elapsed']:.1f}s, {b['size'] / 1024:.1f} KiB each; "
                f"CPU: ours {b['cpu']:.1f}s, sink {b['sink_cpu']:.1f}s)",
                flush=True,
            )
            rows.append(
                (lat, "baseline: new connection per message", b["n"], b["elapsed"], b["rate"], 1.0)
            )
            for spec in args.configs:
                c, m = parse_config(spec)
                r = run_ours(workdir, template, day, lat, c, m, n)
                print(
                    f"latency {lat * 1000:.0f} ms: ours {c}x{m} {r['rate']:.1f} msg/s "
                    f"({r['elapsed']:.1f}s; CPU: ours {r['cpu']:.1f}s, sink {r['sink_cpu']:.1f}s)",
                    flush=True,
                )
                rows.append(
                    (
                        lat,
                        f"ours: connections={c} max_per_connection={m}"
                        + (" (the default config)" if spec == "default" else ""),
                        n,
                        r["elapsed"],
                        r["rate"],
                        r["rate"] / b["rate"],
                    )
                )
        print()
        print("| latency per reply | sender | messages | time s | msg/s | vs baseline |")
        print("|---|---|---|---|---|---|")
        for lat, who, k, el, rate, x in rows:
            print(f"| {lat * 1000:.0f} ms | {who} | {k:,} | {el:.1f} | {rate:.1f} | {x:.1f}x |")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
