"""Quality and cost of "For you" (newsletter.personal) against the baselines, in one run.

Quality: simulated subscribers on the labeled arXiv sample. Each seed draws ``--days``
realistic days (bench/quality.py's draw_day: 200-1,500 papers, 60 % cs) and, per day,
``--subscribers`` subscribers: half of one category, half of two (uniform over the 39), each
with a library of 5 / 20 / 100 of their categories' papers that are not in the day (the
smaller libraries are the first papers of the larger, the categories alternating). The day's
papers carry title, abstract and authors, never their categories. A pick is relevant when
its primary category is one of the subscriber's. Precision@5 and @10, mean over the
subscribers of a seed; the table gives mean ± population s.d. over the seeds.

Baselines, on one TF-IDF per day in arxiv-sanity-lite's settings (1-2-grams, English stop
words, sublinear tf, min_df=5, max_df=0.1, 20,000 features) fitted on the day and that day's
libraries: random; keyword match (the library's 10 top TF-IDF terms, score = the paper's
weight on them); nearest neighbours (mean cosine to the 3 closest library papers); the
arxiv-sanity SVM (LinearSVC, C=0.01, balanced, tol=1e-6, the library against the day).
Ours: ``rank`` with the library alone, and without library authors (text only).

Cost (``--speed``): one 1,000-paper day, ``--speed-subscribers`` subscribers with distinct
20-paper libraries drawn from the papers not in the day: prepare_day, one library_vectors
for every distinct library paper, then rank per subscriber; CPU and wall time, peak RSS.

    python bench/for_you.py [--seeds 3] [--days 3] [--subscribers 70] [--sizes 5 20 100]
    python bench/for_you.py --papers 1000 --most-categories 1 --subscribers 50  # the issue's
    python bench/for_you.py --speed [--speed-subscribers 10000]
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DEFAULT_DATA, draw_day, load

from newsletter.models import Paper
from newsletter.personal import Interests, LibraryPaper
from newsletter.personal.rank import Day, LibraryVectors, prepare_day, rank
from newsletter.topics.build import unique_papers
from newsletter.topics.vectorize import vectorize

T = TypeVar("T")
SEED = 42  # prepare_day's seed (LSA), as TopicSettings' default
KEYWORDS = 10  # the keyword baseline's query: the library's top terms


def paper(r: dict) -> Paper:
    return Paper(
        id=f"arxiv:{r['id']}", title=r["title"], abstract=r["abstract"], authors=tuple(r["authors"])
    )


def library_paper(r: dict, authors: bool = True) -> LibraryPaper:
    return LibraryPaper(
        r["title"], r["abstract"], f"arxiv:{r['id']}", tuple(r["authors"]) if authors else ()
    )


def draw_subscribers(
    rows: list[dict],
    day_ids: set[str],
    count: int,
    largest: int,
    rng: np.random.Generator,
    most: int = 2,
) -> list[tuple[list[str], list[dict]]]:
    """(categories, library of ``largest`` papers, categories alternating) per subscriber:
    one category, then two, and so on up to ``most``."""
    by_cat: dict[str, list[int]] = collections.defaultdict(list)
    for i, r in enumerate(rows):
        if r["id"] not in day_ids:
            by_cat[r["category"]].append(i)
    cats = sorted(by_cat)
    out = []
    for s in range(count):
        chosen = [str(c) for c in rng.choice(cats, 1 + s % most, replace=False)]
        per = [rng.choice(by_cat[c], largest, replace=False) for c in chosen]
        library = [rows[per[j % len(chosen)][j // len(chosen)]] for j in range(largest)]
        out.append((chosen, library))
    return out


def draw_fixed_day(rows: list[dict], seed: int, n: int, cs_share: float = 0.6) -> list[dict]:
    """The issue's protocol: a day of exactly ``n`` papers, ``cs_share`` of them cs.* (as
    quality.draw_day, which draws the size itself)."""
    rng = np.random.default_rng(2000 + seed)
    cs = [i for i, r in enumerate(rows) if r["archive"] == "cs"]
    other = [i for i, r in enumerate(rows) if r["archive"] != "cs"]
    n_cs = round(cs_share * n)
    idx = [*rng.choice(cs, n_cs, replace=False), *rng.choice(other, n - n_cs, replace=False)]
    return [rows[i] for i in sorted(idx)]


def baseline_space(day: list[dict], libraries: list[list[dict]]) -> TfidfVectorizer:
    """arxiv-sanity-lite's vectoriser, fitted on the day and its subscribers' libraries."""
    tv = TfidfVectorizer(
        strip_accents="unicode",
        stop_words="english",
        token_pattern=r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b",
        ngram_range=(1, 2),
        max_features=20000,
        sublinear_tf=True,
        min_df=5,
        max_df=0.1,
    )
    seen = {r["id"]: r for r in day}
    for lib in libraries:
        for r in lib:
            seen.setdefault(r["id"], r)
    tv.fit([f"{r['title']} {r['abstract']}" for r in seen.values()])
    return tv


def svm_baseline(x: sp.csr_matrix, lib: sp.csr_matrix) -> np.ndarray:
    y = np.r_[np.ones(lib.shape[0]), np.zeros(x.shape[0])]
    svm = LinearSVC(class_weight="balanced", max_iter=10000, tol=1e-6, C=0.01, dual=True)
    return svm.fit(sp.vstack([lib, x], format="csr"), y).decision_function(x)


def keyword_baseline(x: sp.csr_matrix, lib: sp.csr_matrix) -> np.ndarray:
    weight = np.asarray(lib.sum(axis=0)).ravel()
    top = np.argsort(-weight, kind="stable")[:KEYWORDS]
    return np.asarray(x[:, top].sum(axis=1)).ravel()


def nn_baseline(x: sp.csr_matrix, lib: sp.csr_matrix) -> np.ndarray:
    sims = np.asarray((x @ lib.T).todense())
    k = min(3, sims.shape[1])
    return np.sort(sims, axis=1)[:, -k:].mean(axis=1)


def top(scores: np.ndarray, ids: list[str], k: int) -> list[int]:
    return sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:k]


def quality(rows: list[dict], args: argparse.Namespace) -> None:
    largest = max(args.sizes)
    # method -> size -> seed -> [(p@5, p@10) per subscriber]
    res: dict[str, dict[int, dict[int, list[tuple[float, float]]]]] = collections.defaultdict(
        lambda: collections.defaultdict(lambda: collections.defaultdict(list))
    )
    t0 = time.perf_counter()
    cost: dict[str, float] = collections.defaultdict(float)
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        for d in range(args.days):
            day_seed = 100 * (seed + 1) + d  # not the days the code was tuned on
            if args.papers:
                day_rows = draw_fixed_day(rows, day_seed, args.papers)
            else:
                day_rows = draw_day(rows, day_seed)
            day_ids = {r["id"] for r in day_rows}
            papers = unique_papers([paper(r) for r in day_rows])
            category = {f"arxiv:{r['id']}": r["category"] for r in day_rows}
            ids = [p.id for p in papers]
            truth = [category[i] for i in ids]
            subs = draw_subscribers(
                rows, day_ids, args.subscribers, largest, rng, args.most_categories
            )
            rand = np.random.default_rng([seed, d])
            t = time.process_time()
            day = prepare_day(papers, vectorize(papers), seed=SEED)
            cost["prepare"] += time.process_time() - t
            t = time.process_time()
            shared = {  # every library paper of the day tokenised once, as a send would
                a: day.library_vectors(library_paper(r, a) for _, lib in subs for r in lib)
                for a in (True, False)
            }
            cost["prepare"] += time.process_time() - t
            tv = baseline_space(day_rows, [lib for _, lib in subs])
            by_id = {f"arxiv:{r['id']}": r for r in day_rows}
            x = tv.transform([f"{by_id[i]['title']} {by_id[i]['abstract']}" for i in ids])
            for cats, lib in subs:
                relevant = np.array([c in cats for c in truth])
                for m in args.sizes:
                    mine = lib[:m]
                    lx = tv.transform([f"{r['title']} {r['abstract']}" for r in mine])
                    picks: dict[str, list[int]] = {}
                    picks["random"] = list(rand.permutation(len(ids))[:10])
                    for name, fn in (
                        ("keyword (library's top terms)", keyword_baseline),
                        ("nearest neighbours (TF-IDF)", nn_baseline),
                        ("SVM (arxiv-sanity)", svm_baseline),
                    ):
                        t = time.process_time()
                        picks[name] = top(fn(x, lx), ids, 10)
                        cost[name] += time.process_time() - t
                    where = {p: i for i, p in enumerate(ids)}
                    for name, authors in (("For you", True), ("For you, text only", False)):
                        interests = Interests.of(library=[library_paper(r, authors) for r in mine])
                        t = time.process_time()
                        got = rank(day, interests, count=10, library=shared[authors])
                        cost[name] += time.process_time() - t
                        picks[name] = [where[pk.paper.id] for pk in got.picks]
                    for name, chosen in picks.items():
                        hit = relevant[chosen] if chosen else np.zeros(0, dtype=bool)
                        res[name][m][seed].append((hit[:5].sum() / 5, hit[:10].sum() / 10))
            took = time.perf_counter() - t0
            print(f"<!-- seed {seed} day {d}: {len(papers)} papers, {took:.0f} s -->", flush=True)
    n_subs = args.days * args.subscribers
    print(
        f"\n{args.seeds} seeds x {args.days} days x {args.subscribers} subscribers "
        f"({n_subs * args.seeds} per library size; "
        + ("one category each" if args.most_categories == 1 else "half one category, half two")
        + (f"; days of {args.papers} papers" if args.papers else "")
        + ")\n"
    )
    head = "".join(f"| {m}: P@5 | {m}: P@10 " for m in args.sizes)
    print(f"| method {head}| CPU ms per subscriber and size |")
    print("|---" * (1 + 2 * len(args.sizes)) + "|---|")
    runs = args.seeds * n_subs * len(args.sizes)
    for name, by_size in res.items():
        cells = ""
        for m in args.sizes:
            for k in (0, 1):
                per_seed = [
                    float(np.mean([v[k] for v in by_size[m][s]])) for s in range(args.seeds)
                ]
                cells += f"| {fmt(per_seed)} "
        ms = f"{1000 * cost[name] / runs:.1f}" if name in cost else ""
        print(f"| {name} {cells}| {ms} |")
    # the same subscribers and days under both: the difference varies far less than either
    for ours in ("For you", "For you, text only"):
        for base in ("SVM (arxiv-sanity)", "nearest neighbours (TF-IDF)"):
            cells = ""
            for m in args.sizes:
                for k in (0, 1):
                    diff = [
                        float(np.mean([a[k] - b[k] for a, b in zip(mine, theirs, strict=True)]))
                        for mine, theirs in (
                            (res[ours][m][s], res[base][m][s]) for s in range(args.seeds)
                        )
                    ]
                    cells += f"| {fmt(diff, signed=True)} "
            print(f"| {ours} minus {base} {cells}| |")
    print(
        f"\nprepare_day and library_vectors: {cost['prepare'] / (args.seeds * args.days):.1f} s "
        "CPU per day; the baselines' vectoriser is not counted either"
    )


def fmt(vals: list[float], signed: bool = False) -> str:
    sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):{'+' if signed else ''}.3f} ± {sd:.3f}"


def rank_chunk(job: tuple[int, int]) -> tuple[list[tuple[tuple[str, float, str], ...]], float]:
    """Rank subscribers[start:stop] in a worker (forked: it shares the day's state)."""
    start, stop = job
    t = time.process_time()
    out = [
        tuple((p.paper.id, p.score, p.reason) for p in rank(_DAY, s, count=5, library=_LV).picks)
        for s in _SUBSCRIBERS[start:stop]
    ]
    return out, time.process_time() - t


_DAY: Day
_LV: LibraryVectors
_SUBSCRIBERS: list[Interests] = []


def speed(rows: list[dict], args: argparse.Namespace) -> None:
    global _DAY, _LV
    rng = np.random.default_rng(7)
    idx = rng.choice(len(rows), 1000, replace=False)
    day_rows = [rows[i] for i in sorted(idx)]
    day_ids = {r["id"] for r in day_rows}
    pool = [r for r in rows if r["id"] not in day_ids]
    libraries: set[tuple[int, ...]] = set()
    while len(libraries) < args.speed_subscribers:
        libraries.add(tuple(sorted(rng.choice(len(pool), 20, replace=False).tolist())))
    _SUBSCRIBERS[:] = [
        Interests.of(library=[library_paper(pool[i]) for i in lib]) for lib in sorted(libraries)
    ]
    distinct = sorted({p for s in _SUBSCRIBERS for p in s.library}, key=lambda p: p.id or "")
    papers = unique_papers([paper(r) for r in day_rows])
    del rows, pool
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    steps: list[tuple[str, float, float]] = []

    def timed(name: str, fn: Callable[[], T]) -> T:
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        steps.append((name, time.perf_counter() - w, time.process_time() - c))
        return out

    vec = timed("vectorize (the topics step's, shared)", lambda: vectorize(papers))
    _DAY = timed("prepare_day", lambda: prepare_day(papers, vec, seed=SEED))
    _LV = timed(
        f"library_vectors ({len(distinct)} distinct papers)",
        lambda: _DAY.library_vectors(distinct),
    )
    n = len(_SUBSCRIBERS)
    sample = min(n, args.speed_sample)
    serial, _ = timed(f"rank, 1 process, first {sample}", lambda: rank_chunk((0, sample)))
    chunks = [(a, min(n, a + 250)) for a in range(0, n, 250)]
    w0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as workers:
        done = workers.map(rank_chunk, chunks)
    wall = time.perf_counter() - w0
    picks = [p for chunk, _ in done for p in chunk]
    cpu = sum(c for _, c in done)
    steps.append((f"rank, {args.workers} processes, all {n}", wall, cpu))
    assert picks[:sample] == serial, "a worker ranked differently from the serial run"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"1,000-paper day, {n} subscribers with distinct 20-paper libraries\n")
    print("| step | wall s | CPU s | per subscriber |")
    print("|---|---|---|---|")
    for name, w, c in steps:
        count = sample if "first" in name else n
        each = (
            f"{1000 * c / count:.1f} ms CPU, {1000 * w / count:.1f} ms wall"
            if name.startswith("rank")
            else ""
        )
        print(f"| {name} | {w:.1f} | {c:.1f} | {each} |")
    print(
        f"\npeak RSS: parent {peak / 1024:.0f} MB ({base_rss / 1024:.0f} MB before the day: "
        f"data and subscribers), largest worker {child / 1024:.0f} MB; library counts "
        f"{_LV.nbytes / 2**20:.1f} MB; {sum(map(len, picks)) / n:.2f} picks per subscriber"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--subscribers", type=int, default=70, help="per day")
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 20, 100])
    ap.add_argument("--papers", type=int, default=0, help="days of exactly this many papers")
    ap.add_argument("--most-categories", type=int, default=2, choices=(1, 2))
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--speed-subscribers", type=int, default=10000)
    ap.add_argument("--speed-sample", type=int, default=500, help="ranked serially first")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    rows = load(args.data)
    if args.speed:
        speed(rows, args)
    else:
        quality(rows, args)


if __name__ == "__main__":
    main()
