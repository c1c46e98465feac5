"""k-means over the LSA vectors, and the choice of k by stability across subsamples."""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning

#: Above this many papers k-means runs in mini-batches (bounded memory, near-linear time).
MINIBATCH_ABOVE = 5000
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
    how: str  # "auto", "fixed", "bounded"
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


def fit(x: np.ndarray, k: int, *, seed: int, n_init: int = 4) -> np.ndarray:
    """Labels of k-means (k-means++) on the rows of x; deterministic for a given seed."""
    if k <= 1 or len(x) <= k:
        return np.arange(len(x)) if len(x) <= k else np.zeros(len(x), dtype=np.int64)
    if len(x) > MINIBATCH_ABOVE:
        model: KMeans | MiniBatchKMeans = MiniBatchKMeans(
            n_clusters=k, n_init=3, batch_size=4096, random_state=seed, max_iter=100
        )
    else:
        model = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    with warnings.catch_warnings():
        # duplicate papers can leave fewer distinct points than k: k-means then returns
        # fewer clusters, which build_digest handles (empty clusters are dropped)
        warnings.simplefilter("ignore", ConvergenceWarning)
        return np.asarray(model.fit_predict(x), dtype=np.int64)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability ~ squared distance."""
    n = len(x)
    centres = np.empty((k, x.shape[1]), dtype=x.dtype)
    centres[0] = x[rng.integers(n)]
    d2 = np.maximum(((x - centres[0]) ** 2).sum(axis=1), 0.0)
    for j in range(1, k):
        total = d2.sum()
        i = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centres[j] = x[i]
        d2 = np.minimum(d2, ((x - x[i]) ** 2).sum(axis=1))
    return centres


def _assign(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each row and the squared distance to it."""
    d = (centres**2).sum(axis=1)[None, :] - 2.0 * (x @ centres.T)
    labels = d.argmin(axis=1)
    return labels, d[np.arange(len(x)), labels] + (x**2).sum(axis=1)


def lloyd(x: np.ndarray, k: int, *, seed: int, n_init: int, max_iter: int = 50) -> np.ndarray:
    """Centres of plain k-means (k-means++ seeding, Lloyd iterations, best of n_init).

    A small numpy k-means for the many fits of the stability scan: on a few thousand rows
    scikit-learn's per-call overhead (validation, thread pools) costs more than the fit.
    """
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(n_init):
        centres = _kmeans_pp(x, k, rng)
        labels = np.full(len(x), -1)
        for _ in range(max_iter):
            new, dist = _assign(x, centres)
            if np.array_equal(new, labels):
                break
            labels = new
            counts = np.bincount(labels, minlength=k)
            onehot = np.zeros((k, len(x)), dtype=x.dtype)
            onehot[labels, np.arange(len(x))] = 1.0
            sums = onehot @ x
            filled = counts > 0
            centres[filled] = sums[filled] / counts[filled, None]
            if not filled.all():  # an emptied centre restarts at the worst-served row
                centres[~filled] = x[np.argsort(-dist, kind="stable")[: int((~filled).sum())]]
        inertia = float(_assign(x, centres)[1].sum())
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
        labelings.append(_assign(x, centres)[0])
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
    sample = x
    if n > CHOOSE_ON_AT_MOST:
        rng = np.random.default_rng(seed)
        sample = x[np.sort(rng.choice(n, size=CHOOSE_ON_AT_MOST, replace=False))]
    if len(np.unique(sample, axis=0)) <= high:  # too few distinct papers to tell
        return KChoice(low, low, high, "auto", {})
    scores = {k: stability(sample, k, seed=seed) for k in candidates(floor, high)}
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
