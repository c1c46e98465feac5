"""Time and peak memory of the whole topics step against the plain reference pipeline.

Reference: scikit-learn's TfidfVectorizer (default tokenisation; English stop words,
sublinear tf, min_df=3, max_df=0.5, as bench/quality.py's baseline) + KMeans (k-means++,
scikit-learn's default n_init) at the k our step chose for the same papers. Ours:
``build_digest`` with default settings (auto k), labels and picks included.

Each measurement is a fresh subprocess, so peak RSS (ru_maxrss) is that run's alone and
both sides pay for importing scikit-learn. CPU time (user + system, all threads) is
reported beside wall time: on a machine other jobs load, it moves far less. Papers are
resampled from the labelled set (ids
made unique) when a size exceeds it. With ``--repeat N`` both sides run N times,
interleaved, and the fastest of each is kept (the machine is shared). ``--threads 1`` caps
the thread pools of both sides (the reference's k-means runs OpenMP threads, which on a
busy machine spin and slow it down; ours runs its partition on one thread anyway).

    python bench/topics_speed.py [--sizes 1000 10000 100000] [--repeat 3] [--threads 1]
    python bench/topics_speed.py --profile 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "arxiv-labeled.jsonl.xz"
)

CHILD = r"""
import datetime as dt, json, lzma, resource, sys, time
import numpy as np
mode, n, k, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with lzma.open(data, "rt", encoding="utf-8") as fh:
    rows = [json.loads(line) for line in fh]
rng = np.random.default_rng(0)
idx = rng.choice(len(rows), size=n, replace=n > len(rows))
from newsletter.models import Paper
papers = [Paper(id=f"arxiv:{rows[i]['id']}v{j}", title=rows[i]["title"],
                abstract=rows[i]["abstract"]) for j, i in enumerate(idx)]
del rows
usage = resource.getrusage(resource.RUSAGE_SELF)
base, cpu0 = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
t = time.perf_counter()
if mode in ("ours", "profile"):
    from newsletter.config import TopicSettings
    from newsletter.topics import build_digest
    if mode == "profile":
        import cProfile, pstats
        prof = cProfile.Profile()
        prof.enable()
    d = build_digest(papers, issue_date=dt.date(2020, 1, 1), settings=TopicSettings())
    k = len(d.topics)
    extra = d.notes[0]
    if mode == "profile":
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
else:
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    tv = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=3, max_df=0.5)
    m = tv.fit_transform([p.title + " " + p.abstract for p in papers])
    KMeans(n_clusters=k, random_state=0).fit(m)
    extra = f"k={k}"
secs = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu = usage.ru_utime + usage.ru_stime - cpu0
print(json.dumps({"mode": mode, "n": n, "k": k, "seconds": secs, "cpu": cpu,
                  "peak_mb": usage.ru_maxrss / 1024, "input_mb": base / 1024, "extra": extra}))
"""


def run(mode: str, n: int, k: int, data: Path, threads: int | None = None) -> dict:
    env = dict(os.environ)
    if threads:  # both sides alike: OpenMP (k-means) and BLAS pools
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(n), str(k), str(data)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=None if mode == "profile" else subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", type=int, help="print cProfile of our step at this size")
    ap.add_argument(
        "--threads", type=int, help="thread pools of both sides capped at this (default: as is)"
    )
    args = ap.parse_args()
    if args.profile:
        run("profile", args.profile, 0, args.data)
        return
    print(
        "| papers | k | ours s | reference s | ratio | ours CPU s | reference CPU s | CPU ratio "
        "| peak RSS ours MB | peak RSS reference MB | input MB | notes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        ours: list[dict] = []
        ref: list[dict] = []
        for _ in range(args.repeat):
            ours.append(run("ours", n, 0, args.data, args.threads))
            ref.append(run("reference", n, ours[-1]["k"], args.data, args.threads))
        o = min(ours, key=lambda r: r["seconds"])
        b = min(ref, key=lambda r: r["seconds"])
        oc = min(r["cpu"] for r in ours)
        bc = min(r["cpu"] for r in ref)
        print(
            f"| {n} | {o['k']} | {o['seconds']:.1f} | {b['seconds']:.1f} "
            f"| {o['seconds'] / b['seconds']:.2f}x | {oc:.1f} | {bc:.1f} | {oc / bc:.2f}x "
            f"| {o['peak_mb']:.0f} | {b['peak_mb']:.0f} | {o['input_mb']:.0f} | {o['extra']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
