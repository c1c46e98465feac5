"""k-means over the LSA vectors, and the choice of k by stability across subsamples."""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

#: Above this many papers k-means runs in mini-batches (bounded memory, near-linear time).
MINIBATCH_ABOVE = 5000
#: k is chosen on at most this many papers (a seeded sample) however large the day.
CHOOSE_ON_AT_MOST = 2000
STABILITY_RUNS = 8
STABILITY_FRACTION = 0.8
#: k-means restarts per subsample: with one, bad local optima pass for instability.
STABILITY_INITS = 3
#: The largest k whose stability is within this of the best wins (see choose_k).
STABILITY_TOLERANCE = 0.05
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

    def note(self) -> str:
        if self.how == "auto" and self.stability:
            return (
                f"k={self.k} of {self.low}..{self.high} by stability "
                f"(mean ARI {self.stability[self.k]:.2f} over {STABILITY_RUNS} subsamples)"
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


def stability(x: np.ndarray, k: int, *, seed: int) -> float:
    """Mean pairwise ARI between k-means fitted on different seeded subsamples.

    A k matching real structure gives the same partition whatever the sample; a k that
    splits a coherent group (or merges two) splits it differently each time.
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    m = max(k + 1, int(STABILITY_FRACTION * n))
    labelings = []
    for run in range(STABILITY_RUNS):
        idx = np.sort(rng.choice(n, size=m, replace=False))
        km = KMeans(n_clusters=k, n_init=STABILITY_INITS, random_state=seed + run).fit(x[idx])
        labelings.append(km.predict(x))
    return float(
        np.mean([adjusted_rand_score(a, b) for a, b in itertools.combinations(labelings, 2)])
    )


def choose_k(
    x: np.ndarray, topics: int | str, min_topics: int, max_topics: int, *, seed: int
) -> KChoice:
    n = len(x)
    low, high = k_bounds(n, min_topics, max_topics)
    if topics != "auto":
        k = int(topics)
        return KChoice(min(k, n), low, high, "fixed" if k <= n else "bounded", {})
    if low == high:
        return KChoice(low, low, high, "auto", {})
    sample = x
    if n > CHOOSE_ON_AT_MOST:
        rng = np.random.default_rng(seed)
        sample = x[np.sort(rng.choice(n, size=CHOOSE_ON_AT_MOST, replace=False))]
    if len(np.unique(sample, axis=0)) <= high:  # too few distinct papers to tell
        return KChoice(low, low, high, "auto", {})
    scores = {k: stability(sample, k, seed=seed) for k in candidates(low, high)}
    # k=2 is left out of "best": halving any cloud of points is stable, structure or not
    best = max((s for k, s in scores.items() if k >= 3), default=max(scores.values()))
    k = max(k for k, s in scores.items() if s >= best - STABILITY_TOLERANCE)
    return KChoice(k, low, high, "auto", scores)


def candidates(low: int, high: int) -> list[int]:
    """Every k up to DENSE_UP_TO, then a geometric grid (wide ranges stay affordable)."""
    out = list(range(low, min(high, DENSE_UP_TO) + 1))
    k = float(max(low, DENSE_UP_TO))
    while k < high:
        k = max(k * GRID_STEP, k + 1)
        out.append(min(round(k), high))
    return sorted(set(out))


def null_reference(x: np.ndarray, *, seed: int) -> np.ndarray:
    """The same vectors with each dimension shuffled independently: same spread, no clusters."""
    rng = np.random.default_rng(seed)
    out = np.array(x, copy=True)
    for j in range(out.shape[1]):
        out[:, j] = out[rng.permutation(len(out)), j]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)
