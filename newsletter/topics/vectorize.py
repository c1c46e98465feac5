"""TF-IDF (and LSA) vectors of papers' title + abstract, thresholds adapted to the day's size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer, TfidfTransformer
from sklearn.preprocessing import normalize

from newsletter.models import Paper
from newsletter.topics.text import BOILERPLATE, Analyzer

STOP_WORDS = frozenset(ENGLISH_STOP_WORDS | BOILERPLATE)
TITLE_WEIGHT = 2  # the title is repeated: it is the author's own summary
LSA_DIMS = 100  # at most; fewer on small days (see lsa_dims_for)


@dataclass(frozen=True)
class Vectors:
    counts: sp.csr_matrix  # binary document-term matrix (for labels)
    tfidf: sp.csr_matrix  # L2-normalised rows (for centrality and near-duplicates)
    lsa: np.ndarray  # L2-normalised dense rows: what k-means clusters
    terms: np.ndarray  # vocabulary, column order
    min_df: int
    max_df: float
    titles: sp.csr_matrix  # binary title-term matrix, same columns (for labels)


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


def lsa_dims_for(n: int) -> int:
    """LSA dimensions for n papers: few on small days, where extra dimensions are noise.

    Measured on 4 far-apart arXiv archives (600 papers): NMI 0.63 with 20 dims, 0.47 with 100.
    """
    return min(LSA_DIMS, max(10, n // 25))


def vectorize(papers: Sequence[Paper], *, seed: int, lsa_dims: int | None = None) -> Vectors:
    """Vectors of the papers; ``lsa_dims=0`` skips LSA (the lsa field is then empty)."""
    n = len(papers)
    min_df, max_df = thresholds(n)
    texts = [paper_text(p) for p in papers]
    cv = CountVectorizer(
        analyzer=Analyzer(STOP_WORDS),
        min_df=min_df,
        max_df=max_df,
        dtype=np.float32,
    )
    try:
        counts = cv.fit_transform(texts)
    except ValueError:  # no term survived (empty or all stop words): fall back to every term
        cv.set_params(min_df=1, max_df=1.0)
        try:
            counts = cv.fit_transform(texts)
        except ValueError:
            counts = sp.csr_matrix((n, 0), dtype=np.float32)
    terms = cv.get_feature_names_out() if counts.shape[1] else np.array([], dtype=object)
    if counts.shape[1]:
        tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(counts).astype(np.float32)
    else:
        tfidf = counts
    tfidf = sp.csr_matrix(tfidf)
    binary = sp.csr_matrix(counts, copy=True)
    binary.data[:] = 1
    if counts.shape[1]:
        title_cv = CountVectorizer(
            analyzer=Analyzer(STOP_WORDS), vocabulary=cv.vocabulary_, binary=True, dtype=np.float32
        )
        titles = sp.csr_matrix(title_cv.transform([p.title for p in papers]))
    else:
        titles = sp.csr_matrix((n, 0), dtype=np.float32)
    if lsa_dims is None:
        lsa_dims = lsa_dims_for(n)
    dims = min(lsa_dims, tfidf.shape[1] - 1, n - 1)
    if lsa_dims == 0:
        lsa = np.zeros((n, 0), dtype=np.float32)
    elif dims >= 2:
        svd = TruncatedSVD(n_components=dims, random_state=seed, algorithm="randomized")
        # identical documents make the explained-variance ratio 0/0; the projection is fine
        with np.errstate(invalid="ignore", divide="ignore"):
            lsa = normalize(svd.fit_transform(tfidf)).astype(np.float32)
    else:
        lsa = tfidf.toarray()
    return Vectors(binary, tfidf, lsa, terms, min_df, max_df, titles)
