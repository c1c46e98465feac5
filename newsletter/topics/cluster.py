"""Sections: k-means over LSA vectors, k chosen by stability across subsamples, then each
section's word distribution (naive Bayes over every term) reassigns the papers."""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.exceptions import ConvergenceWarning
from sklearn.naive_bayes import MultinomialNB
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

#: Sections are found on at most this many papers (a seeded sample); every paper is then
#: assigned by the sections' word distributions. Bounds time and memory on huge days.
CLUSTER_ON_AT_MOST = 20000
#: k-means itself runs on at most this many of them (the rest join the nearest centre
#: before the refinement): on the bench subsets NMI did not move, the time fell by 3.
KMEANS_ON_AT_MOST = 4000
LSA_DIMS = 100  # at most; fewer on small days (see lsa_dims_for)
#: Naive Bayes refinement: fitted on this share of each section (the papers nearest its
#: centre), smoothed by REFINE_ALPHA, repeated REFINE_ROUNDS times (see refine).
REFINE_SHARE = 0.8
REFINE_ALPHA = 0.3
REFINE_ROUNDS = 2
#: k is chosen on at most this many papers (a seeded sample) however large the day.
CHOOSE_ON_AT_MOST = 2000
STABILITY_RUNS = 8
STABILITY_FRACTION = 0.8
#: k-means restarts per subsample: with one, bad local optima pass for instability.
STABILITY_INITS = 3
#: The largest k whose stability is within tolerance(n) of the best wins (see choose_k).
TOLERANCE_MIN = 0.05
TOLERANCE_MAX = 0.4
TOLERANCE_PER_DOUBLING = 0.1
TOLERANCE_FROM = 300
#: "auto" gives a day at least n / SECTION_PAPERS sections (within the bounds): a section is
#: read as a list of titles, and one much longer than this is scrolled past, not read.
SECTION_PAPERS = 150
#: Candidate k are every integer up to this, then a geometric grid (x GRID_STEP).
DENSE_UP_TO = 12
GRID_STEP = 1.15


@dataclass(frozen=True)
class KChoice:
    k: int
    low: int
    high: int
    how: Literal["auto", "fixed", "bounded"]
    stability: dict[int, float]  # k -> mean pairwise ARI, when chosen automatically
    floor: int = 0  # the fewest sections "auto" allowed for the day's size (see reader_floor)

    def note(self) -> str:
        if self.how == "auto" and self.stability:
            fewest = f", at least {self.floor} for the day's size" if self.floor > self.low else ""
            return (
                f"k={self.k} of {self.low}..{self.high} by stability "
                f"(mean ARI {self.stability[self.k]:.2f} over {STABILITY_RUNS} subsamples"
                f"{fewest})"
            )
        if self.how == "auto" and self.floor > self.low:
            return (
                f"k={self.k} of {self.low}..{self.high} "
                f"(the most allowed; at most ~{SECTION_PAPERS} papers a section)"
            )
        if self.how == "auto":
            return f"k={self.k} (the only choice for {self.low}..{self.high})"
        if self.how == "bounded":
            return f"k={self.k} (configured more than the day's papers allow)"
        return f"k={self.k} (configured)"


def k_bounds(n: int, min_topics: int, max_topics: int) -> tuple[int, int]:
    """Candidate k for n papers: within config, at most ~sqrt(n/2) so sections have papers."""
    high = min(max_topics, max(2, round(math.sqrt(n / 2))), n)
    low = min(min_topics, high)
    return max(1, low), max(1, high)


def reader_floor(n: int, low: int, high: int) -> int:
    """The fewest sections "auto" may give n papers: about SECTION_PAPERS each, in low..high."""
    return min(high, max(low, math.ceil(n / SECTION_PAPERS)))


def lsa_dims_for(n: int) -> int:
    """LSA dimensions for n papers: few on small days, where extra dimensions are noise.

    Measured on 4 far-apart arXiv archives (600 papers): NMI 0.63 with 20 dims, 0.47 with
    100. On all 19,308 papers (k = 39) 200 or 300 dimensions gave no more than 100.
    """
    return min(LSA_DIMS, max(10, n // 25))


def lsa(tfidf: sp.csr_matrix, *, seed: int) -> np.ndarray:
    """L2-normalised LSA rows of TF-IDF rows (the TF-IDF itself when too few terms)."""
    n = tfidf.shape[0]
    dims = min(lsa_dims_for(n), tfidf.shape[1] - 1, n - 1)
    if dims < 2:
        return np.asarray(tfidf.toarray(), dtype=np.float64)
    svd = TruncatedSVD(n_components=dims, random_state=seed, algorithm="randomized")
    # identical documents make the explained-variance ratio 0/0; the projection is fine
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(normalize(svd.fit_transform(tfidf)), dtype=np.float64)


def sample(n: int, at_most: int, seed: int) -> np.ndarray:
    """Sorted row numbers of a seeded sample of at most ``at_most`` of n rows."""
    if n <= at_most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, at_most, replace=False))


def fit(x: np.ndarray, k: int, *, seed: int, n_init: int = 10) -> np.ndarray:
    """Labels of k-means (k-means++, fitted on at most KMEANS_ON_AT_MOST rows) on the rows
    of x; deterministic for a given seed. Ten restarts, not four: on six overlapping
    astro-ph categories NMI rose from 0.265 to 0.283 (5 draws), elsewhere within ±0.005."""
    if k <= 1 or len(x) <= k:
        return np.arange(len(x)) if len(x) <= k else np.zeros(len(x), dtype=np.int64)
    model = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    with warnings.catch_warnings():
        # duplicate papers can leave fewer distinct points than k: k-means then returns
        # fewer clusters, which build_digest handles (empty clusters are dropped)
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x[sample(len(x), KMEANS_ON_AT_MOST, seed)])
    return np.asarray(model.predict(x), dtype=np.int64)


def _kmeans_pp(x: np.ndarray, sq: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability ~ squared distance.
    ``sq``: the rows' squared norms."""
    n = len(x)
    chosen = [int(rng.integers(n))]
    d2 = np.maximum(sq + sq[chosen[0]] - 2.0 * (x @ x[chosen[0]]), 0.0)
    for _ in range(1, k):
        cum = np.cumsum(d2)
        if cum[-1] > 0:
            i = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), n - 1)
        else:
            i = int(rng.integers(n))
        chosen.append(i)
        d2 = np.minimum(d2, np.maximum(sq + sq[i] - 2.0 * (x @ x[i]), 0.0))
    return x[chosen].copy()


def _closeness(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """2 x.c - |c|^2 per row and centre: the nearest centre (in Euclidean distance) has the
    largest value, and |x|^2 minus it is the squared distance."""
    sim = x @ centres.T
    sim *= 2.0
    sim -= np.einsum("ij,ij->i", centres, centres)
    return sim


def _assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Nearest centre of each row."""
    return _closeness(x, centres).argmax(axis=1)


def lloyd(x: np.ndarray, k: int, *, seed: int, n_init: int, max_iter: int = 50) -> np.ndarray:
    """Centres of plain k-means (k-means++ seeding, Lloyd iterations, best of n_init).

    A small numpy k-means for the many fits of the stability scan: on a few thousand rows
    scikit-learn's per-call overhead (validation, thread pools) costs more than the fit.
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    sq = np.einsum("ij,ij->i", x, x)
    best, best_inertia = None, np.inf
    for _ in range(n_init):
        centres = _kmeans_pp(x, sq, k, rng)
        labels = np.full(n, -1)
        for _ in range(max_iter):
            sim = _closeness(x, centres)
            new = sim.argmax(axis=1)
            if np.array_equal(new, labels):
                break
            labels = new
            counts = np.bincount(labels, minlength=k)
            onehot = np.zeros((k, n), dtype=x.dtype)
            onehot[labels, np.arange(n)] = 1.0
            sums = onehot @ x
            filled = counts > 0
            centres[filled] = sums[filled] / counts[filled, None]
            if not filled.all():  # an emptied centre restarts at the worst-served row
                dist = sq - sim[np.arange(n), labels]
                centres[~filled] = x[np.argsort(-dist, kind="stable")[: int((~filled).sum())]]
        inertia = float((sq - _closeness(x, centres).max(axis=1)).sum())
        if inertia < best_inertia:
            best, best_inertia = centres.copy(), inertia
    assert best is not None
    return best


def ari(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings (integer labels from 0); equals scikit-learn's."""
    kb = int(b.max()) + 1
    table = np.bincount(a * kb + b, minlength=(int(a.max()) + 1) * kb).astype(np.float64)

    def pairs(v: np.ndarray) -> float:
        return float((v * (v - 1)).sum() / 2)

    sum_cells = pairs(table)
    sum_a = pairs(table.reshape(-1, kb).sum(axis=1))
    sum_b = pairs(table.reshape(-1, kb).sum(axis=0))
    total = pairs(np.array([float(len(a))]))
    expected = sum_a * sum_b / total if total else 0.0
    top = (sum_a + sum_b) / 2
    if top == expected:  # both labelings trivial (one cluster each, or all singletons)
        return 1.0
    return (sum_cells - expected) / (top - expected)


def stability(x: np.ndarray, k: int, *, seed: int) -> float:
    """Mean pairwise ARI between k-means fitted on different seeded subsamples.

    A k matching real structure gives the same partition whatever the sample; a k that
    splits a coherent group (or merges two) splits it differently each time.
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    m = max(k + 1, int(STABILITY_FRACTION * n))
    x = np.asarray(x, dtype=np.float64)
    labelings = []
    for run in range(STABILITY_RUNS):
        idx = np.sort(rng.choice(n, size=m, replace=False))
        centres = lloyd(x[idx], k, seed=seed + run, n_init=STABILITY_INITS)
        labelings.append(_assign(x, centres))
    return float(np.mean([ari(a, b) for a, b in itertools.combinations(labelings, 2)]))


def choose_k(
    x: np.ndarray, topics: int | str, min_topics: int, max_topics: int, *, seed: int
) -> KChoice:
    n = len(x)
    low, high = k_bounds(n, min_topics, max_topics)
    if topics != "auto":
        k = int(topics)
        return KChoice(min(k, n), low, high, "fixed" if k <= n else "bounded", {})
    floor = reader_floor(n, low, high)
    if floor == high:
        return KChoice(high, low, high, "auto", {}, floor)
    some = x[sample(n, CHOOSE_ON_AT_MOST, seed)]
    if len(np.unique(some, axis=0)) <= high:  # too few distinct papers to tell
        return KChoice(low, low, high, "auto", {})
    scores = {k: stability(some, k, seed=seed) for k in candidates(floor, high)}
    # k=2 is left out of "best": halving any cloud of points is stable, structure or not
    best = max((s for k, s in scores.items() if k >= 3), default=max(scores.values()))
    k = max(k for k, s in scores.items() if s >= best - tolerance(n))
    return KChoice(k, low, high, "auto", scores, floor)


def tolerance(n: int) -> float:
    """How far below the best stability a larger k may score and still win, for n papers.

    0.05 up to 300 papers, +0.1 per doubling above, at most 0.4 (0.1 at 600, 0.2 at 1,200,
    0.3 at 2,400). Stability falls fast up to the coarsest clean split and is then flat and
    noisy; a bigger day both supports and needs more sections, and NMI against real labels
    keeps rising along that plateau (measured in bench/RESULTS.md).
    """
    t = TOLERANCE_PER_DOUBLING * math.log2(max(n, 1) / TOLERANCE_FROM)
    return min(TOLERANCE_MAX, max(TOLERANCE_MIN, t))


def candidates(low: int, high: int) -> list[int]:
    """Every k up to DENSE_UP_TO, then a geometric grid (wide ranges stay affordable)."""
    out = list(range(low, min(high, DENSE_UP_TO) + 1))
    k = float(max(low, DENSE_UP_TO))
    while k < high:
        k = max(k * GRID_STEP, k + 1)
        out.append(min(round(k), high))
    return sorted(set(out))


def refine(
    counts: sp.csr_matrix, x: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, MultinomialNB | None]:
    """Sections re-estimated from every term: a multinomial naive Bayes model of each
    section's words, fitted on its REFINE_SHARE papers nearest the centre in ``x``,
    reassigns all papers (hard EM started from k-means, REFINE_ROUNDS times).

    LSA keeps ~100 directions of the TF-IDF; the tail of rarer terms it drops is where
    neighbouring fields differ. On all 19,308 labelled papers (k = 39) this lifts NMI
    from 0.507 (k-means alone) to 0.545, against 0.496 for the plain baseline; measured
    in bench/RESULTS.md. Returns the labels and the last model (None when nothing was
    fitted), which assigns papers outside the sample.
    """
    model = None
    if counts.shape[1] == 0 or len(np.unique(labels)) < 2:
        return labels, model
    for _ in range(REFINE_ROUNDS):
        train = np.zeros(len(labels), dtype=bool)
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            closeness = x[members] @ x[members].mean(axis=0)
            keep = max(1, math.ceil(REFINE_SHARE * len(members)))
            train[members[np.argsort(-closeness, kind="stable")[:keep]]] = True
        fitted = MultinomialNB(alpha=REFINE_ALPHA).fit(counts[train], labels[train])
        new = np.asarray(fitted.predict(counts), dtype=np.int64)
        if len(np.unique(new)) < 2:  # one section swallowed the rest: keep what we had
            break
        model = fitted
        if np.array_equal(new, labels):
            break
        labels = new
    return labels, model


@dataclass(frozen=True)
class Partition:
    labels: np.ndarray  # section of each row, 0..k-1 (some may be empty)
    choice: KChoice
    dims: int  # LSA dimensions k-means ran on
    sampled: int  # rows the sections were found on (all rows when the day is small)


def partition(
    counts: sp.csr_matrix,
    tfidf: sp.csr_matrix,
    topics: int | str,
    min_topics: int,
    max_topics: int,
    *,
    seed: int,
) -> Partition:
    """The papers' sections: k-means on LSA of (a sample of) the rows, k from choose_k,
    refined by the sections' word distributions, which then assign every row.

    One thread for BLAS and OpenMP: these matrices are small, and on a machine whose
    cores are busy, thread pools that spin while waiting made the step 3-6x slower
    (measured on 10,000 papers: LSA 3.3 s -> 0.8 s, k-means 2.2 s -> 0.35 s)."""
    with threadpool_limits(limits=1):
        return _partition(counts, tfidf, topics, min_topics, max_topics, seed=seed)


def _partition(
    counts: sp.csr_matrix,
    tfidf: sp.csr_matrix,
    topics: int | str,
    min_topics: int,
    max_topics: int,
    *,
    seed: int,
) -> Partition:
    n = tfidf.shape[0]
    rows = sample(n, CLUSTER_ON_AT_MOST, seed)
    x = lsa(tfidf[rows], seed=seed)
    choice = choose_k(x, topics, min_topics, max_topics, seed=seed)
    labels, model = refine(counts[rows], x, fit(x, choice.k, seed=seed))
    if len(rows) < n:
        if model is not None:
            labels = np.asarray(model.predict(counts), dtype=np.int64)
        else:  # no word model (one section, or no terms): the nearest section centre
            present = np.unique(labels)
            centres = np.vstack([tfidf[rows[labels == c]].mean(axis=0) for c in present])
            near = np.asarray(tfidf @ normalize(centres).T).argmax(axis=1)
            labels = np.asarray(present[near], dtype=np.int64)
    return Partition(labels, choice, x.shape[1], len(rows))
