"""Time and peak memory of the whole topics step vs the TF-IDF floor and the baseline.

Each size runs in its own subprocess so peak RSS (ru_maxrss) is that run's alone.
Papers are resampled from the labeled set (ids made unique) when a size exceeds it.

    python bench/topics_speed.py [--sizes 1000 10000 19308 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "arxiv-labeled.jsonl.xz"
)

CHILD = r"""
import datetime as dt, json, lzma, resource, sys, time
import numpy as np
mode, n, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with lzma.open(data, "rt", encoding="utf-8") as fh:
    rows = [json.loads(line) for line in fh]
rng = np.random.default_rng(0)
idx = rng.choice(len(rows), size=n, replace=n > len(rows))
from newsletter.models import Paper
papers = [Paper(id=f"arxiv:{rows[i]['id']}v{j}", title=rows[i]["title"],
                abstract=rows[i]["abstract"]) for j, i in enumerate(idx)]
del rows
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if mode == "ours":
    from newsletter.config import TopicSettings
    from newsletter.topics import build_digest
    d = build_digest(papers, issue_date=dt.date(2020, 1, 1), settings=TopicSettings())
    extra = f"{len(d.topics)} topics; " + d.notes[0]
elif mode == "floor":
    from newsletter.topics.vectorize import vectorize
    v = vectorize(papers, seed=42, lsa_dims=0)
    extra = f"{v.tfidf.shape[1]} terms"
else:
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    tv = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=3, max_df=0.5)
    m = tv.fit_transform([p.title + " " + p.abstract for p in papers])
    KMeans(n_clusters=12, n_init=1, random_state=0).fit(m)
    extra = "k=12"
secs = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mode": mode, "n": n, "seconds": secs, "peak_mb": peak / 1024,
                  "input_mb": base / 1024, "extra": extra}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 19308, 100000])
    args = ap.parse_args()
    print(
        "| papers | TF-IDF floor s | whole topics step s | ratio "
        "| baseline (TF-IDF + KMeans k=12) s | peak RSS ours MB | peak RSS baseline MB | notes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        r = {}
        for mode in ("floor", "ours", "baseline"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, mode, str(n), str(args.data)],
                capture_output=True,
                text=True,
                check=True,
            )
            r[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        f, o, b = r["floor"], r["ours"], r["baseline"]
        print(
            f"| {n} | {f['seconds']:.1f} | {o['seconds']:.1f} | {o['seconds'] / f['seconds']:.1f}x "
            f"| {b['seconds']:.1f} | {o['peak_mb']:.0f} | {b['peak_mb']:.0f} | {o['extra']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
