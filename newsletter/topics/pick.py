"""Representative papers per topic: centrality blended with trending, no near-duplicates."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from newsletter.models import Paper, Pick

#: MMR trade-off: 1 ranks by score alone; lower values push harder against similar picks.
MMR_LAMBDA = 0.7
#: Cosine at or above which two papers count as near-duplicates: never both picked while
#: another candidate remains.
DUPLICATE_SIM = 0.8


def trending(papers: Sequence[Paper]) -> np.ndarray:
    """Upvotes normalised within the day: log1p(upvotes) / log1p(max upvotes); None is 0."""
    votes = np.array([max(p.upvotes or 0, 0) for p in papers], dtype=np.float64)
    top = votes.max() if len(votes) else 0.0
    if top <= 0:
        return np.zeros(len(papers))
    return np.log1p(votes) / math.log1p(top)


def trending_over_week(papers: Sequence[Paper]) -> np.ndarray:
    """A weekly issue's trending: what stood out on its own day *and* against the week.

    The geometric mean of :func:`trending` within the paper's day (announced, else
    published; papers with neither form one group) and within the whole week.  Upvotes
    keep growing after a paper's day, so the week's scale alone favours the oldest days;
    its day's scale alone makes the best of a quiet day the equal of a week's best.  The
    mean ranks first what was trending on its day and still is among the week's most
    upvoted, and is 0 for a paper either scale puts at 0.
    """
    week = trending(papers)
    day = np.zeros(len(papers))
    days: dict[object, list[int]] = {}
    for i, p in enumerate(papers):
        when = p.announced or p.published
        days.setdefault(when.date() if when else None, []).append(i)
    for members in days.values():
        day[members] = trending([papers[i] for i in members])
    return np.sqrt(day * week)


def centrality(vectors: sp.csr_matrix | np.ndarray) -> np.ndarray:
    """Cosine of each (L2-normalised) row to the group's mean, clipped to 0..1."""
    if vectors.shape[0] == 0 or vectors.shape[1] == 0:
        return np.zeros(vectors.shape[0])
    centre = np.asarray(vectors.mean(axis=0)).ravel()
    norm = np.linalg.norm(centre)
    if norm == 0:
        return np.zeros(vectors.shape[0])
    sims = np.asarray(vectors @ (centre / norm)).ravel()
    return np.clip(sims, 0.0, 1.0)


def rank(
    papers: Sequence[Paper],
    vectors: sp.csr_matrix,
    trend: np.ndarray,
    *,
    weight: float,
    count: int,
) -> tuple[tuple[Pick, ...], tuple[Paper, ...]]:
    """(picks, rest) of one group. score = (1-w)*centrality/max centrality + w*trending;
    picks chosen greedily by MMR on that score; rest ordered by score, then id."""
    cent = centrality(vectors)
    top = cent.max() if len(cent) else 0.0
    rel = cent / top if top > 0 else cent
    score = (1.0 - weight) * rel + weight * trend
    ids = [p.id for p in papers]
    order = sorted(range(len(papers)), key=lambda i: (-score[i], ids[i]))
    chosen: list[int] = []
    max_sim = np.zeros(len(papers))
    position = np.empty(len(papers), dtype=np.int64)
    position[order] = np.arange(len(papers))
    for _ in range(min(count, len(papers))):
        val = MMR_LAMBDA * score - (1 - MMR_LAMBDA) * max_sim
        val[max_sim >= DUPLICATE_SIM] -= 2.0
        val[chosen] = -np.inf
        tied = np.flatnonzero(val >= val.max() - 1e-12)
        best = int(tied[np.argmin(position[tied])])  # ties: the earlier in (score, id) order
        chosen.append(best)
        if vectors.shape[1]:
            sims = np.asarray(vectors @ vectors[best].T.toarray()).ravel()
            max_sim = np.maximum(max_sim, sims)
    picks = tuple(
        Pick(
            papers[i],
            float(round(cent[i], 6)),
            float(round(trend[i], 6)),
            float(round(score[i], 6)),
        )
        for i in chosen
    )
    taken = set(chosen)
    rest = tuple(papers[i] for i in order if i not in taken)
    return picks, rest
