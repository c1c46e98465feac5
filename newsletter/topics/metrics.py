"""How distinct a day's sections are and how well their labels name them: the measures
the labeller is judged by (bench/sections.py), kept free of the labeller's own choices.

Every measure reads the day's papers through a plain TF-IDF (English stop words,
sublinear tf, words stemmed with ``stem``), not through the vectors that made the sections.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

#: A word of a label or paper: letters, then letters or digits ("llm", "3d" is not one).
_WORD = re.compile(r"(?u)\b[^\W\d_][^\W_]+\b")
#: Suffixes stripped by ``stem``, longest first; each maps to what replaces it.
_SUFFIXES = [
    ("izations", ""),
    ("ational", ""),
    ("ization", ""),
    ("ations", ""),
    ("ation", ""),
    ("izing", ""),
    ("ments", ""),
    ("ities", ""),
    ("ness", ""),
    ("ment", ""),
    ("ings", ""),
    ("ized", ""),
    ("izes", ""),
    ("ity", ""),
    ("ing", ""),
    ("ies", "y"),
    ("ied", "y"),
    ("ize", ""),
    ("ate", ""),
    ("ive", ""),
    ("ers", ""),
    ("ic", ""),
    ("al", ""),
    ("er", ""),
    ("es", ""),
    ("ed", ""),
    ("s", ""),
    ("e", ""),
]
MIN_STEM = 3


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light suffix-stripping stem: the forms a reader takes for one word share it
    ("scale" / "scaling" / "scaled", "compute" / "computation" / "computational",
    "agent" / "agents" / "agentic", "model" / "models" / "modeling", "matrix" /
    "matrices", "vertex" / "vertices")."""
    word = word.lower()
    if word.endswith("ss"):  # "loss", "class": not plurals
        return word
    if len(word) >= 5 and word.endswith(("ix", "ex", "ices")):  # matrix / matrices
        return word[: -4 if word.endswith("ices") else -2] + "ic"
    for suffix, repl in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) + len(repl) >= MIN_STEM:
            return word[: len(word) - len(suffix)] + repl
    return word


@functools.cache
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@functools.lru_cache(maxsize=65536)
def content_stems(label: str) -> frozenset[str]:
    """The stems of a label's content words (stop words and one-letter words out;
    "test-time" is "test" and "time")."""
    stop = _stop_words()
    return frozenset(stem(w) for w in _WORD.findall(label.lower()) if w not in stop)


def shared_word_pairs(labels: Sequence[str]) -> list[tuple[int, int, frozenset[str]]]:
    """The label pairs that share a content word after stemming, with the shared stems:
    two sections a reader may take for one topic ("test-time scaling" / "inference-time
    scaling" share "time" and "scal")."""
    stems = [content_stems(lab) for lab in labels]
    return [
        (i, j, stems[i] & stems[j])
        for i, j in itertools.combinations(range(len(labels)), 2)
        if stems[i] & stems[j]
    ]


def _analyzer(text: str, stop: frozenset[str] = frozenset()) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in stop]


def _tfidf(texts: Sequence[str]) -> tuple[TfidfVectorizer, sp.csr_matrix]:
    """(fitted vectoriser, L2-normalised paper rows) of the plain, stemmed TF-IDF."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    stop = _stop_words()
    vec = TfidfVectorizer(analyzer=lambda t: _analyzer(t, stop), sublinear_tf=True)
    return vec, vec.fit_transform(texts)


def max_centroid_cosine(texts: Sequence[str], assignment: Sequence[int]) -> float:
    """The largest cosine between two sections' centroids (mean TF-IDF rows of their
    papers, plain TF-IDF of the day): near 1, two sections hold the same kind of papers."""
    from sklearn.preprocessing import normalize

    sections = sorted(set(assignment))
    if len(sections) < 2:
        return 0.0
    _, rows = _tfidf(texts)
    where = np.asarray(assignment)
    centres = normalize(np.vstack([np.asarray(rows[where == s].mean(axis=0)) for s in sections]))
    sims = centres @ centres.T
    np.fill_diagonal(sims, -1.0)
    return float(sims.max())


def label_fidelity(labels: Sequence[str], texts: Sequence[str], assignment: Sequence[int]) -> float:
    """The share of papers whose own section's label, read as a query over the day's papers
    (plain, stemmed TF-IDF: cosine of the label's and the paper's vectors), scores strictly
    highest among all the day's labels. ``assignment[i]`` indexes ``labels``. A paper that
    no label's words reach scores 0 everywhere and counts as a miss."""
    if not texts:
        return 1.0
    vec, rows = _tfidf(texts)
    scores = np.asarray((rows @ vec.transform(labels).T).todense())
    own = scores[np.arange(len(texts)), np.asarray(assignment)]
    others = scores.copy()
    others[np.arange(len(texts)), np.asarray(assignment)] = -np.inf
    best_other = others.max(axis=1) if len(labels) > 1 else np.zeros(len(texts))
    return float(np.mean((own > 0) & (own > best_other)))
