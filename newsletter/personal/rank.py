""" "For you": the day's papers ranked for one subscriber, with reasons, and topic affinity.

Pure: the day's papers and vectors and one subscriber's interests in, picks out; no I/O,
clock or global random state, so the same inputs give the same picks, byte for byte.

How a paper is scored for a subscriber (see docs/for-you.md for the measurements):

* **Library** (what they keep). Each paper is a row ``[tf-idf, LSA_WEIGHT x LSA]``: the
  day's own TF-IDF, and its LSA, which lets "neural" and "network" vote for each other.
  With at least ``MIN_SVM_LIBRARY`` library papers a linear SVM is trained per subscriber,
  the library as positives and the day's papers as negatives (arxiv-sanity-lite's recipe:
  small C, balanced classes); with fewer, the mean similarity to the library. The scores
  are standardised over the day and smoothed over the day's nearest-neighbour graph, so a
  paper whose close neighbours score well rises too (the day as unlabelled data). The
  smoothing is strong for small libraries, which say little, and fades as they grow.
  A paper by an author of a library paper gets ``COAUTHOR_WEIGHT`` per such author.
* **Stated interests**: a fixed bonus per matched author, keyword and category.

A paper is only picked when something speaks for it: a stated interest it matches, a
library author, or a library score above the day's average.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

from newsletter.models import Paper, Topic
from newsletter.personal.interests import ForYou, ForYouPick, Interests, LibraryPaper
from newsletter.personal.match import DayIndex
from newsletter.topics.text import Analyzer
from newsletter.topics.vectorize import STOP_WORDS, Vectors, paper_text

#: LSA dimensions (at most; fewer on small days) and the weight of the LSA block in a row.
LSA_DIMS = 100
LSA_WEIGHT = 0.5
#: The per-subscriber SVM: few positives against a whole day, so a small C (strong
#: regularisation); a loose tolerance: the ranking it gives is settled long before.
SVM_C = 0.1
SVM_TOL = 1e-2
#: Below this many library papers: mean similarity to them instead of an SVM.
MIN_SVM_LIBRARY = 3
#: The day's nearest-neighbour graph, and how far scores spread over it: a library of m
#: papers gets SMOOTHING * SMOOTHING_HALF / (SMOOTHING_HALF + m) (0.6 for 1, 0.3 for 10).
GRAPH_NEIGHBOURS = 10
SMOOTHING = 0.6
SMOOTHING_HALF = 10
SMOOTHING_STEPS = 10
#: Bonuses, in standard deviations of the day's library scores.
COAUTHOR_WEIGHT = 1.0  # per author of a library paper (at most MAX_COAUTHORS counted)
MAX_COAUTHORS = 2
AUTHOR_WEIGHT = 3.0  # a stated author
KEYWORD_WEIGHT = 2.0  # the first stated keyword found; each further one adds a quarter
CATEGORY_WEIGHT = 1.0  # a stated category (primary or cross-list)
#: Cosine (of the rows above) from which a library paper counts as "close" in a reason.
CLOSE_SIM = 0.2
#: A topic's affinity: the mean score of its best this-many papers.
TOPIC_TOP = 3
#: Rows of the similarity matrix computed at once when building the graph (bounds memory).
GRAPH_BLOCK = 1024
#: Longest library title quoted in a reason.
REASON_TITLE = 60


class LibraryVectors:
    """Library papers as rows in one day's space, each paper vectorised once.

    Build one per day from every subscriber's library papers (or from a chunk of them) with
    ``Day.library_vectors``: a paper kept by many subscribers is vectorised once.
    """

    def __init__(self, papers: Sequence[LibraryPaper], rows: sp.csr_matrix):
        self._where = {p: i for i, p in enumerate(papers)}
        self._rows = rows

    def __contains__(self, paper: LibraryPaper) -> bool:
        return paper in self._where

    def __len__(self) -> int:
        return len(self._where)

    def rows(self, papers: Sequence[LibraryPaper]) -> sp.csr_matrix:
        return self._rows[[self._where[p] for p in papers]]

    @property
    def nbytes(self) -> int:
        """Memory of the rows (what keeping them for the day costs)."""
        r = self._rows
        return int(r.data.nbytes + r.indices.nbytes + r.indptr.nbytes)


class Day:
    """The day's papers prepared once for ranking every subscriber: see prepare_day."""

    def __init__(
        self,
        papers: tuple[Paper, ...],
        features: sp.csr_matrix,
        vocabulary: dict[str, int],
        idf: np.ndarray,
        components: np.ndarray,
        graph: sp.csr_matrix,
        topics: tuple[np.ndarray, ...],
    ):
        self.papers = papers
        self.ids = [p.id for p in papers]
        self.features = features
        self.graph = graph
        self.topics = topics
        self.index = DayIndex(papers)
        self._vocabulary = vocabulary
        self._idf = idf
        self._components = components
        # ranks of the ids: the tie-break of every ordering, whatever the input order
        self._id_rank = np.empty(len(papers), dtype=np.int64)
        self._id_rank[np.argsort(np.array(self.ids, dtype=object), kind="stable")] = np.arange(
            len(papers)
        )

    def library_vectors(self, papers: Iterable[LibraryPaper]) -> LibraryVectors:
        """The rows of ``papers`` (duplicates once) in the day's space."""
        unique = list(dict.fromkeys(papers))
        return LibraryVectors(unique, self._vectorize(unique))

    def _vectorize(self, papers: Sequence[LibraryPaper]) -> sp.csr_matrix:
        width = self.features.shape[1]
        if not papers or not self._vocabulary:
            return sp.csr_matrix((len(papers), width))
        counter = CountVectorizer(
            analyzer=Analyzer(STOP_WORDS), vocabulary=self._vocabulary, dtype=np.float64
        )
        texts = [paper_text(Paper(id="", title=p.title, abstract=p.abstract)) for p in papers]
        counts = sp.csr_matrix(counter.transform(texts), dtype=np.float64)
        np.log(counts.data, out=counts.data)  # sublinear tf, as the day's: 1 + log(count)
        counts.data += 1.0
        tfidf = normalize(sp.csr_matrix(counts.multiply(self._idf)))
        return _rows(tfidf, self._components)


def prepare_day(
    papers: Sequence[Paper],
    vectors: Vectors,
    *,
    topics: Sequence[Topic] = (),
    seed: int = 42,
) -> Day:
    """Everything about the day that every subscriber's ranking shares, computed once.

    ``vectors`` are ``newsletter.topics.vectorize.vectorize(papers, ...)`` of exactly these
    papers in this order (its TF-IDF and vocabulary are reused; its LSA is not needed).
    ``topics`` are the digest's topics whose affinity ``rank`` reports, in this order.
    """
    papers = tuple(papers)
    n = len(papers)
    if vectors.tfidf.shape[0] != n:
        raise ValueError(f"vectors has {vectors.tfidf.shape[0]} rows for {n} papers")
    tfidf = sp.csr_matrix(vectors.tfidf, dtype=np.float64)
    width = tfidf.shape[1]
    # the idf the day's TfidfTransformer used (smooth_idf): from the document frequencies
    df = np.asarray((vectors.counts > 0).sum(axis=0)).ravel()
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    dims = min(LSA_DIMS, n - 1, width - 1)
    if dims >= 2:
        svd = TruncatedSVD(n_components=dims, random_state=seed, algorithm="randomized")
        with np.errstate(invalid="ignore", divide="ignore"):  # identical papers: 0/0 ratios
            svd.fit(tfidf)
        components = np.asarray(svd.components_, dtype=np.float64)
    else:
        components = np.zeros((0, width))
    features = _rows(tfidf, components)
    where = {p.id: i for i, p in enumerate(papers)}
    groups = tuple(
        np.array(sorted({where[p.id] for p in _members(t) if p.id in where}), dtype=np.int64)
        for t in topics
    )
    vocabulary = {str(t): i for i, t in enumerate(vectors.terms)}
    return Day(papers, features, vocabulary, idf, components, _graph(features), groups)


def _members(topic: Topic) -> tuple[Paper, ...]:
    return (*(pk.paper for pk in topic.picks), *topic.rest)


def _rows(tfidf: sp.csr_matrix, components: np.ndarray) -> sp.csr_matrix:
    """[tf-idf | LSA_WEIGHT x unit LSA] rows: TF-IDF for exact terms, LSA for related ones."""
    if not len(components):
        return sp.csr_matrix(tfidf)
    lsa = normalize(np.asarray(tfidf @ components.T)) * LSA_WEIGHT
    return sp.csr_matrix(sp.hstack([tfidf, sp.csr_matrix(lsa)], format="csr"))


def _graph(features: sp.csr_matrix) -> sp.csr_matrix:
    """Each paper linked to its GRAPH_NEIGHBOURS most similar ones (symmetrised, weighted by
    cosine, normalised D^-1/2 W D^-1/2 so smoothing neither grows nor shrinks scores)."""
    n = features.shape[0]
    k = min(GRAPH_NEIGHBOURS, n - 1)
    if k < 1 or features.shape[1] == 0:
        return sp.csr_matrix((n, n))
    unit = normalize(features)
    rows, cols, vals = [], [], []
    for start in range(0, n, GRAPH_BLOCK):
        stop = min(n, start + GRAPH_BLOCK)
        sims = np.asarray((unit[start:stop] @ unit.T).todense())
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        near = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(np.arange(start, stop), k))
        cols.append(near.ravel())
        vals.append(np.maximum(np.take_along_axis(sims, near, axis=1).ravel(), 0.0))
    w = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    w = w.maximum(w.T)
    degree = np.asarray(w.sum(axis=1)).ravel()
    scale = sp.diags(1.0 / np.sqrt(np.where(degree > 0, degree, 1.0)))
    return sp.csr_matrix(scale @ w @ scale)


def library_scores(day: Day, library: sp.csr_matrix, exclude: set[int]) -> np.ndarray:
    """How much each of the day's papers resembles the library rows, standardised over the
    day and smoothed over its graph (see the module's docstring)."""
    n = len(day.papers)
    m = library.shape[0]
    if m >= MIN_SVM_LIBRARY:
        keep = np.array([i for i in range(n) if i not in exclude], dtype=np.int64)
        negatives = day.features[keep] if exclude else day.features
        x = sp.vstack([library, negatives], format="csr")
        y = np.r_[np.ones(m), np.zeros(negatives.shape[0])]
        svm = LinearSVC(
            C=SVM_C,
            class_weight="balanced",
            dual=True,
            tol=SVM_TOL,
            max_iter=1000,
            random_state=0,
        )
        with warnings.catch_warnings():
            # a loose tolerance is the point (see SVM_TOL): an unfinished fit ranks the same
            warnings.simplefilter("ignore", ConvergenceWarning)
            raw = svm.fit(x, y).decision_function(day.features)
    else:
        raw = np.asarray(day.features @ library.T.mean(axis=1)).ravel()
    spread = raw.std()
    # a day of one paper (or of identical ones) has nothing to compare: resemblance counts
    z = (raw - raw.mean()) / spread if spread > 0 else (raw > 0).astype(np.float64)
    alpha = SMOOTHING * SMOOTHING_HALF / (SMOOTHING_HALF + m)
    smoothed = z
    for _ in range(SMOOTHING_STEPS):
        smoothed = (1.0 - alpha) * z + alpha * (day.graph @ smoothed)
    return np.asarray(smoothed, dtype=np.float64)


def rank(
    day: Day,
    interests: Interests,
    *,
    count: int = 5,
    library: LibraryVectors | None = None,
) -> ForYou:
    """The subscriber's best ``count`` papers of the day with reasons, and topic affinity.

    ``library``: rows of (some of) the subscriber's library papers from
    ``day.library_vectors``; papers missing from it are vectorised here.
    """
    n = len(day.papers)
    if interests.is_empty or n == 0:
        return ForYou((), tuple(0.0 for _ in day.topics))
    index = day.index
    copies = index.copies(interests.library)
    score = np.zeros(n)

    kept, rows = _library(day, interests.library, library)
    text: np.ndarray | None = None
    if kept:
        text = library_scores(day, rows, copies)
        score += text
    coauthors = index.coauthors(a for p in interests.library for a in p.authors)
    for i, names in coauthors.items():
        score[i] += COAUTHOR_WEIGHT * min(len(names), MAX_COAUTHORS)
    authors: dict[int, list[str]] = {}
    for name in interests.authors:
        for i, written in index.author(name).items():
            authors.setdefault(i, []).append(written)
    for i, names in authors.items():
        score[i] += AUTHOR_WEIGHT * len(names)
    keywords: dict[int, list[str]] = {}
    for kw in interests.keywords:
        for i in index.keyword(kw):
            keywords.setdefault(i, []).append(kw)
    for i, kws in keywords.items():
        score[i] += KEYWORD_WEIGHT * (1.0 + 0.25 * (len(kws) - 1))
    categories: dict[int, str] = {}
    for cat in interests.categories:
        for i, written in index.category(cat).items():
            categories.setdefault(i, written)
    for i in categories:
        score[i] += CATEGORY_WEIGHT
    score = np.round(score, 6)  # what is compared and shown: the same on every machine

    eligible = np.zeros(n, dtype=bool)
    eligible[list(authors.keys() | keywords.keys() | categories.keys() | coauthors.keys())] = True
    if text is not None:
        eligible |= text > 0
    eligible[list(copies)] = False
    candidates = np.flatnonzero(eligible)
    order = candidates[np.lexsort((day._id_rank[candidates], -score[candidates]))][:count]

    close = _close(day, rows, order)
    picks = tuple(
        ForYouPick(
            day.papers[i],
            float(score[i]),
            _reason(
                authors.get(i, []),
                keywords.get(i, []),
                categories.get(i),
                coauthors.get(i, []),
                [kept[j].title for j in close[k]],
                from_library=text is not None and text[i] > 0,
            ),
        )
        for k, i in enumerate(order)
    )
    affinity = tuple(
        round(float(np.mean(np.sort(score[g])[::-1][:TOPIC_TOP])), 6) if len(g) else 0.0
        for g in day.topics
    )
    return ForYou(picks, affinity)


def _library(
    day: Day, papers: Sequence[LibraryPaper], vectors: LibraryVectors | None
) -> tuple[list[LibraryPaper], sp.csr_matrix]:
    """The library papers that share vocabulary with the day, and their rows."""
    known = [p for p in papers if vectors is not None and p in vectors]
    missing = [p for p in papers if vectors is None or p not in vectors]
    blocks = []
    if known:
        assert vectors is not None
        blocks.append(vectors.rows(known))
    if missing:
        blocks.append(day.library_vectors(missing).rows(missing))
    if not blocks:
        return [], sp.csr_matrix((0, day.features.shape[1]))
    rows = sp.vstack(blocks, format="csr")
    order = [*known, *missing]
    nonzero = np.flatnonzero(np.diff(rows.indptr))
    # back in the subscriber's order: it decides which title a reason quotes on a tie
    position = {p: i for i, p in enumerate(papers)}
    nonzero = np.array(sorted(nonzero, key=lambda r: position[order[r]]), dtype=np.int64)
    return [order[r] for r in nonzero], rows[nonzero]


def _close(day: Day, rows: sp.csr_matrix, picked: np.ndarray) -> list[list[int]]:
    """Per picked paper, the library rows at cosine >= CLOSE_SIM, closest first."""
    if not rows.shape[0] or not len(picked):
        return [[] for _ in picked]
    sims = np.asarray(
        (normalize(day.features[picked]) @ normalize(rows).T).todense(), dtype=np.float64
    )
    out = []
    for row in np.round(sims, 6):
        near = np.flatnonzero(row >= CLOSE_SIM)
        out.append([int(j) for j in near[np.lexsort((near, -row[near]))]])
    return out


def _quote(title: str) -> str:
    title = " ".join(title.split())
    if len(title) > REASON_TITLE:
        title = title[: REASON_TITLE - 1].rstrip() + "…"
    return f"“{title}”"


def _names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _reason(
    authors: list[str],
    keywords: list[str],
    category: str | None,
    coauthors: list[str],
    close_titles: list[str],
    *,
    from_library: bool,
) -> str:
    """One line: the stated interests the paper matches first, then what the library says;
    at most two parts."""
    parts = []
    if authors:
        parts.append("by " + _names(authors[:2]))
    if keywords:
        parts.append("mentions " + _names([f"'{k}'" for k in keywords[:2]]))
    if category:
        parts.append(f"in {category}")
    if coauthors:
        parts.append(f"by {_names(coauthors[:2])}, as in your library")
    if len(close_titles) > 1:
        parts.append(f"close to {len(close_titles)} papers in your library")
    elif close_titles:
        parts.append(f"close to {_quote(close_titles[0])} in your library")
    elif from_library:
        parts.append("like the papers in your library")
    return "; ".join(parts[:2])


def order_topics(topics: Sequence[Topic], affinity: Sequence[float]) -> tuple[Topic, ...]:
    """Topics by the subscriber's affinity, highest first; ties keep the digest's order (so
    a subscriber with no interests sees the digest's order)."""
    if len(topics) != len(affinity):
        raise ValueError(f"{len(affinity)} affinities for {len(topics)} topics")
    order = sorted(range(len(topics)), key=lambda i: (-affinity[i], i))
    return tuple(topics[i] for i in order)
