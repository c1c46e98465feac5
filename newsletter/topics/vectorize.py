"""Word counts and TF-IDF vectors of papers' title + abstract, thresholds adapted to the day."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer, TfidfTransformer

from newsletter.models import Paper
from newsletter.topics.text import BOILERPLATE, Words

STOP_WORDS = frozenset(ENGLISH_STOP_WORDS | BOILERPLATE)
TITLE_WEIGHT = 2  # the title is repeated: it is the author's own summary


@dataclass(frozen=True)
class Vectors:
    counts: sp.csr_matrix  # word counts (what the sections' word distributions are fitted on)
    tfidf: sp.csr_matrix  # sublinear TF-IDF, L2-normalised rows (LSA, centrality, duplicates)
    terms: np.ndarray  # vocabulary, column order
    min_df: int
    max_df: float


def paper_text(p: Paper) -> str:
    return ". ".join([p.title] * TITLE_WEIGHT + [p.abstract])


def thresholds(n: int) -> tuple[int, float]:
    """min_df and max_df for a day of n papers: tiny days keep every term."""
    if n < 20:
        return 1, 1.0
    if n < 200:
        return 2, 0.6
    if n < 5000:
        return 3, 0.5
    return max(3, n // 2000), 0.5


def vectorize(papers: Sequence[Paper]) -> Vectors:
    """Unigram counts and TF-IDF of the papers (bigrams are for labels only: label.py).

    Measured on the bench subsets, unigrams cluster as well as unigrams + bigrams (NMI
    within ±0.01) at a third of the cost: the tokeniser is most of this step's time.
    """
    n = len(papers)
    min_df, max_df = thresholds(n)
    texts = [paper_text(p) for p in papers]
    cv = CountVectorizer(analyzer=Words(STOP_WORDS), min_df=min_df, max_df=max_df, dtype=np.float32)
    try:
        counts = cv.fit_transform(texts)
    except ValueError:  # no term survived (empty or all stop words): fall back to every term
        cv.set_params(min_df=1, max_df=1.0)
        try:
            counts = cv.fit_transform(texts)
        except ValueError:
            counts = sp.csr_matrix((n, 0), dtype=np.float32)
    counts = sp.csr_matrix(counts)
    if counts.shape[1]:
        terms = cv.get_feature_names_out()
        tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(counts).astype(np.float32)
    else:
        terms, tfidf = np.array([], dtype=object), counts
    return Vectors(counts, sp.csr_matrix(tfidf), terms, min_df, max_df)
