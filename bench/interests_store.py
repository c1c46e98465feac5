"""Reading every active subscriber's interests at once, as a personalised send needs them.

``--subscribers`` subscribers (10,000), each with 3 keywords, 1 author, 1 category and a
library of ``--library`` (20) papers drawn at random from the labeled arXiv sample (19,308
papers, so a paper is in some ten libraries: the store keeps its text once). Libraries are
set one subscriber at a time, as `subscribers set` and the web page do.

Then, each in a fresh process so its peak memory is its own, on the same database:

* ``subscribers`` (baseline): the active subscribers' rows alone, what a send reads today;
* ``all_interests``: every active subscriber's interests, three queries in all;
* ``interests_of by 500``: the same in chunks of 500 subscribers (three queries each),
  for a caller that does not hold everyone at once;
* ``one at a time`` (the naive way, baseline): ``interests(id)`` per subscriber.

Wall and CPU time, and the process's peak RSS (its base, the store opened, is the
``open`` line). SQLite in a temporary file, or ``--database-url`` (e.g. the PostgreSQL of
.ci/postgres.sh: an empty database is created and dropped).

    python bench/interests_store.py [--subscribers 10000] [--library 20]
    python bench/interests_store.py --database-url postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from newsletter.models import SubscriberStatus
from newsletter.personal import LibraryPaper
from newsletter.personal.stated import change
from newsletter.store import Store

NOW = dt.datetime(2026, 4, 27, 6, 0, tzinfo=dt.UTC)
KEYWORDS = ("retrieval", "graph neural network", "galaxy", "protein", "option pricing", "lasso")


def fill(url: str, subscribers: int, library: int, seed: int) -> dict[str, float]:
    # here, not at the top: the measuring processes import this module, and should not
    # hold what quality.py imports
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from quality import DEFAULT_DATA, load

    rows = load(DEFAULT_DATA)
    papers = [
        LibraryPaper(r["title"], r["abstract"], f"arxiv:{r['id']}", tuple(r["authors"]))
        for r in rows
    ]
    rng = random.Random(seed)
    with Store.open(url, now=NOW) as store:
        t = time.perf_counter()
        emails = [f"reader{i:05d}@example.org" for i in range(subscribers)]
        interests = {
            e: change(
                keywords=rng.sample(KEYWORDS, 3),
                authors=[rng.choice(papers).authors[0]],
                categories=[rng.choice(rows)["category"]],
            )
            for e in emails
        }
        store.import_subscribers([(e, "") for e in emails], now=NOW, interests=interests)
        imported = time.perf_counter() - t
        ids = [s.id for s in store.subscribers(SubscriberStatus.ACTIVE)]
        t = time.perf_counter()
        for sid in ids:
            store.update_interests(sid, change(library=rng.sample(papers, library)), now=NOW)
        libraries = time.perf_counter() - t
    return {"import (stated interests)": imported, "libraries, one set per subscriber": libraries}


def _measure(url: str, how: str, out: Any) -> None:
    store = Store.open(url, now=NOW)
    store.subscribers(SubscriberStatus.ACTIVE)  # connections and caches warm
    base = _peak_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    if how == "subscribers":
        got = len(store.subscribers(SubscriberStatus.ACTIVE))
    elif how == "all_interests":
        got = len(store.all_interests())
    elif how == "interests_of by 500":
        ids = [s.id for s in store.subscribers(SubscriberStatus.ACTIVE)]
        got = 0
        for i in range(0, len(ids), 500):
            got += len(store.interests_of(ids[i : i + 500]))
    else:
        ids = [s.id for s in store.subscribers(SubscriberStatus.ACTIVE)]
        got = sum(not store.interests(i).is_empty for i in ids)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = _peak_mb()
    store.close()
    out.put((how, got, wall, cpu, base, peak))


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(url: str, how: str) -> Any:
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: its own peak RSS
    out = spawn.Queue()
    p = spawn.Process(target=_measure, args=(url, how, out))
    p.start()
    result = out.get()
    p.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--library", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--database-url", help="a PostgreSQL server's URL; default: SQLite")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.database_url:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from pgdb import throwaway_database

            context = throwaway_database(args.database_url, "nl_bench")
        else:
            from contextlib import nullcontext

            context = nullcontext(f"sqlite:///{tmp}/bench.db")
        with context as url:
            print(
                f"{args.subscribers:,} subscribers, libraries of {args.library} papers "
                f"({'PostgreSQL' if 'postgres' in url else 'SQLite'})"
            )
            for what, seconds in fill(url, args.subscribers, args.library, args.seed).items():
                print(f"  {what}: {seconds:.1f} s")
            with Store.open(url) as store, store.read() as conn:
                shared = conn.exec_driver_sql("SELECT count(*) FROM library_papers").scalar()
            print(f"  library papers stored: {shared:,} (of {args.subscribers * args.library:,})")
            print()
            print("| read | subscribers | wall | CPU | RSS open | peak RSS |")
            print("|---|---|---|---|---|---|")
            for how in ("subscribers", "all_interests", "interests_of by 500", "one at a time"):
                name, got, wall, cpu, base, peak = measure(url, how)
                print(
                    f"| {name} | {got:,} | {wall:.2f} s | {cpu:.2f} s | {base:.0f} MB "
                    f"| {peak:.0f} MB |"
                )


if __name__ == "__main__":
    main()
