"""Clustering quality of newsletter.topics against arXiv's own labels, with the baseline.

Baseline (the data README's reference), computed in the same run: TF-IDF of title +
abstract, English stop words, sublinear tf, min_df=3, max_df=0.5, KMeans with k = number of
labels (n_init=1). Ours: ``build_digest`` with ``topics = #labels`` and with ``topics =
"auto"``. On the balanced subsets auto k gets bounds that contain the true k
(min_topics=2, max_topics=max(8, 2 x true k)); on the realistic days it gets the reader-facing
defaults (3..8). Scores: NMI, ARI, V-measure against the subset's own labels and against the
other level (category / archive), mean ± population s.d. over the seeds.

    python bench/quality.py [--seeds 3] [--days 8] [--data ../shared/data/arxiv-labeled.jsonl.xz]
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
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    normalized_mutual_info_score,
    v_measure_score,
)

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
    """``per`` papers of each label (balanced), seeded."""
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


def draw_day(rows: list[dict], seed: int, cs_share: float = 0.6) -> list[dict]:
    """A realistic day: 200-1,500 papers, ``cs_share`` of them cs.*, the rest spread
    uniformly over the other categories' papers."""
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(200, 1501))
    cs = [i for i, r in enumerate(rows) if r["archive"] == "cs"]
    other = [i for i, r in enumerate(rows) if r["archive"] != "cs"]
    n_cs = round(cs_share * n)
    idx = [*rng.choice(cs, size=n_cs, replace=False), *rng.choice(other, n - n_cs, replace=False)]
    return [rows[i] for i in sorted(idx)]


def baseline(data: list[dict], key: str, seed: int, k: int | None = None) -> np.ndarray:
    """The reference clustering, told the number of ``key`` labels (or ``k``)."""
    k = k or len({r[key] for r in data})
    x = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=3, max_df=0.5)
    m = x.fit_transform([r["title"] + " " + r["abstract"] for r in data])
    return KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(m)


def ours(data: list[dict], settings: TopicSettings) -> tuple[np.ndarray, int]:
    papers = [Paper(id=f"arxiv:{r['id']}", title=r["title"], abstract=r["abstract"]) for r in data]
    d = build_digest(papers, issue_date=dt.date(2020, 1, 1), settings=settings)
    where = {
        p.id: i for i, t in enumerate(d.topics) for p in [*(pk.paper for pk in t.picks), *t.rest]
    }
    return np.array([where[p.id] for p in papers]), len(d.topics)


def scores(y: list[str], pred: np.ndarray) -> tuple[float, float, float, float]:
    return (
        normalized_mutual_info_score(y, pred),
        adjusted_rand_score(y, pred),
        v_measure_score(y, pred),
        adjusted_mutual_info_score(y, pred),
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

#: AMI is NMI corrected for chance: a random partition into many clusters scores well on NMI
#: when clusters are few papers each (39 clusters of a 270-paper day), never on AMI.
METRICS = ("NMI", "ARI", "V", "AMI")


def run_subsets(rows: list[dict], seeds: int, only: set[int] | None) -> None:
    print(
        "| subset | n | true k | auto bounds | auto k per seed | metric | baseline (k=true) "
        "| ours (k=true) | ours (auto k) | other level: baseline | other level: ours auto |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for si, (name, key, values, per) in enumerate(SUBSETS):
        if only is not None and si not in only:
            continue
        other = "category" if key == "archive" else "archive"
        res: dict[str, list[float]] = {}
        ks: list[int] = []
        t0 = time.perf_counter()
        for seed in range(seeds):
            data = draw(rows, key, values, per, seed)
            y = [r[key] for r in data]
            y2 = [r[other] for r in data]
            k = len(set(y))
            high = max(8, 2 * k)
            b = baseline(data, key, seed)
            f, _ = ours(data, TopicSettings(topics=k, seed=seed))
            a, ka = ours(data, TopicSettings(min_topics=2, max_topics=high, seed=seed))
            ks.append(ka)
            b2 = baseline(data, other, seed)  # told the number of labels at the other level
            for tag, v in (
                ("b", scores(y, b)),
                ("f", scores(y, f)),
                ("a", scores(y, a)),
                ("B", scores(y2, b2)),
                ("A", scores(y2, a)),
            ):
                for m, x in zip(METRICS, v, strict=True):
                    res.setdefault(tag + m, []).append(x)
        single = len(set(y2)) == 1  # cs.* or astro-ph.* alone: one archive, nothing to score
        for i, m in enumerate(METRICS):
            head = (
                f"| {name} | {len(data)} | {k} ({key}) | 2..{high} | {', '.join(map(str, ks))} "
                if i == 0
                else "| | | | | "
            )
            tail = (
                f"| (one {other}) | |"
                if single
                else f"| {fmt(res['B' + m])} ({other}) | {fmt(res['A' + m])} |"
            )
            print(
                head
                + f"| {m} | {fmt(res['b' + m])} | {fmt(res['f' + m])} | {fmt(res['a' + m])} "
                + tail,
                flush=True,
            )
        print(f"<!-- {name}: {time.perf_counter() - t0:.0f} s -->", flush=True)


def run_days(rows: list[dict], days: int) -> None:
    """Realistic days with the reader-facing bounds (3..8). Besides the baseline told the
    number of labels, two reference points at the category level: the baseline told *our*
    k (the same number of sections), and the best our clustering can do within the bounds,
    its k picked per day by looking at the labels (an oracle no rule can beat)."""
    print(
        "\n| day | n | categories / archives present | auto k (3..8) | metric "
        "| category: baseline (k=#categories) | category: baseline (k=ours) "
        "| category: ours, best k of 3..8 (oracle) | category: ours auto "
        "| archive: baseline (k=#archives) | archive: ours auto |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    res: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for day in range(days):
        data = draw_day(rows, day)
        yc = [r["category"] for r in data]
        ya = [r["archive"] for r in data]
        a, ka = ours(data, TopicSettings(seed=day))
        fixed = [ours(data, TopicSettings(topics=k, seed=day))[0] for k in range(3, 9)]
        oracle = max((scores(yc, f) for f in fixed), key=lambda v: v[0])
        row = {
            "bc": scores(yc, baseline(data, "category", day)),
            "kc": scores(yc, baseline(data, "category", day, k=ka)),
            "oc": oracle,
            "ac": scores(yc, a),
            "ba": scores(ya, baseline(data, "archive", day)),
            "aa": scores(ya, a),
        }
        for tag, v in row.items():
            for m, x in zip(METRICS, v, strict=True):
                res.setdefault(tag + m, []).append(x)
        print(
            f"| {day} | {len(data)} | {len(set(yc))} / {len(set(ya))} | {ka} | NMI "
            + "".join(f"| {v[0]:.3f} " for v in row.values())
            + "|",
            flush=True,
        )
    for m in METRICS:
        print(
            f"| mean ± s.d. | | | | {m} "
            + "".join(f"| {fmt(res[tag + m])} " for tag in ("bc", "kc", "oc", "ac", "ba", "aa"))
            + "|"
        )
    print(f"<!-- days: {time.perf_counter() - t0:.0f} s -->", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--days", type=int, default=8)
    ap.add_argument("--subsets", type=int, nargs="*", help="indexes into SUBSETS (default all)")
    args = ap.parse_args()
    rows = load(args.data)
    run_subsets(rows, args.seeds, set(args.subsets) if args.subsets is not None else None)
    if args.days:
        run_days(rows, args.days)


if __name__ == "__main__":
    main()
