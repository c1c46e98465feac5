"""Clustering quality of newsletter.topics against arXiv's own labels, with the baseline.

Baseline (the data README's reference): TF-IDF of title + abstract, English stop words,
sublinear tf, min_df=3, max_df=0.5, k-means with k = number of labels.

    python bench/topics_quality.py [--seeds 3] [--data ../shared/data/arxiv-labeled.jsonl.xz]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import lzma
import statistics
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, v_measure_score

from newsletter.config import TopicSettings
from newsletter.models import Paper
from newsletter.topics import build_digest

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "arxiv-labeled.jsonl.xz"
)


def load(path: Path) -> list[dict]:
    with lzma.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def draw(rows: list[dict], key: str, values: list[str] | None, per: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if values is None or r[key] in values:
            groups.setdefault(r[key], []).append(r)
    out = []
    for g in sorted(groups):
        idx = rng.choice(len(groups[g]), size=min(per, len(groups[g])), replace=False)
        out += [groups[g][i] for i in sorted(idx)]
    return out


def baseline(data: list[dict], key: str, seed: int) -> np.ndarray:
    k = len({r[key] for r in data})
    x = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=3, max_df=0.5)
    m = x.fit_transform([r["title"] + " " + r["abstract"] for r in data])
    return KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(m)


def ours(data: list[dict], topics: int | str, seed: int) -> tuple[np.ndarray, int]:
    papers = [Paper(id=f"arxiv:{r['id']}", title=r["title"], abstract=r["abstract"]) for r in data]
    s = TopicSettings(topics=topics, seed=seed)  # type: ignore[arg-type]
    d = build_digest(papers, issue_date=dt.date(2020, 1, 1), settings=s)
    where = {
        p.id: i for i, t in enumerate(d.topics) for p in [*(pk.paper for pk in t.picks), *t.rest]
    }
    return np.array([where[p.id] for p in papers]), len(d.topics)


def scores(y: list[str], pred: np.ndarray) -> tuple[float, float, float]:
    return (
        normalized_mutual_info_score(y, pred),
        adjusted_rand_score(y, pred),
        v_measure_score(y, pred),
    )


def fmt(vals: list[float]) -> str:
    sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.3f} ± {sd:.3f}"


SUBSETS = [
    # name, label key, label values (None: all), papers per label
    (
        "4 far-apart archives (astro-ph, math, q-bio, cs), 100 each",
        "archive",
        ["astro-ph", "math", "q-bio", "cs"],
        100,
    ),
    ("4 far-apart archives, 500 each", "archive", ["astro-ph", "math", "q-bio", "cs"], 500),
    ("12 archives, 250 each", "archive", None, 250),
    ("39 categories, 100 each", "category", None, 100),
    ("cs.CL / cs.LG / cs.AI, 300 each", "category", ["cs.CL", "cs.LG", "cs.AI"], 300),
    (
        "6 astro-ph subcategories, 200 each",
        "category",
        ["astro-ph.CO", "astro-ph.EP", "astro-ph.GA", "astro-ph.HE", "astro-ph.IM", "astro-ph.SR"],
        200,
    ),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    rows = load(args.data)
    print(
        "| subset | n | baseline NMI (k=#labels) | ours NMI (k=#labels) | ours NMI (auto k) "
        "| auto k | baseline ARI | ours ARI (k=#labels) | ours ARI (auto) | ours V (k=#labels) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, key, values, per in SUBSETS:
        res: dict[str, list[float]] = {}
        ks: list[int] = []
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            data = draw(rows, key, values, per, seed)
            y = [r[key] for r in data]
            k = len(set(y))
            b = scores(y, baseline(data, key, seed))
            o, _ = ours(data, k, seed)
            of = scores(y, o)
            a, ka = ours(data, "auto", seed)
            oa = scores(y, a)
            ks.append(ka)
            for tag, v in (("b", b), ("o", of), ("a", oa)):
                for m, x in zip("nav", v, strict=True):
                    res.setdefault(tag + m, []).append(x)
        print(
            f"| {name} | {len(data)} | {fmt(res['bn'])} | {fmt(res['on'])} | {fmt(res['an'])} "
            f"| {', '.join(map(str, ks))} | {fmt(res['ba'])} | {fmt(res['oa'])} "
            f"| {fmt(res['aa'])} | {fmt(res['ov'])} |",
            flush=True,
        )
        print(f"<!-- {name}: {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
