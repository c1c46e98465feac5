"""The day's papers ranked for one subscriber ("For you"), with reasons and topic affinity.

Pure: the day's papers and vectors and one subscriber's interests in, picks out; no I/O,
clock or global random state, so the same inputs give the same picks, byte for byte.

How a paper is scored for a subscriber (measured in bench/RESULTS.md, "For you"):

* **Library** (the papers they keep). A linear SVM per subscriber, their library as the
  positives and the day's papers as the negatives (arxiv-sanity-lite's recipe: small C,
  balanced classes), over TF-IDF rows in a space of the day *and their library*: a term
  counts when the day and the library together use it ``MIN_DF`` times, and its idf is
  taken over both, so a term their library shares with a single paper of the day is not
  lost. Each row also carries the paper's LSA (fitted on the day), which lets "galaxy"
  vote for "stellar"; the smaller the library, the more it weighs. Below
  ``MIN_SVM_LIBRARY`` papers: the mean similarity to them instead. The scores are
  standardised over the day and smoothed over the day's nearest-neighbour graph (a paper
  whose neighbours score well rises too: the day as unlabelled data), strongly for small
  libraries, which say little, fading as they grow. A paper by an author of a library
  paper gets ``COAUTHOR_WEIGHT`` per such author.
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

#: A term enters a subscriber's space when the day and their library use it this often.
MIN_DF = 2
#: LSA dimensions (at most; fewer on small days), and the weight of a row's LSA block for a
#: library of m papers: LSA_WEIGHT * LSA_HALF / (LSA_HALF + m).
LSA_DIMS = 50
LSA_WEIGHT = 0.5
LSA_HALF = 20
#: The per-subscriber SVM: C measured best of 0.03..1 (arxiv-sanity-lite uses 0.01 with its
#: own vocabulary); a loose tolerance: the ranking it gives is settled long before.
SVM_C = 0.3
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
#: Cosine (TF-IDF and LSA of the day, NEAR_LSA_WEIGHT) from which a library paper counts
#: as "close" in a reason; the same rows build the graph.
CLOSE_SIM = 0.2
NEAR_LSA_WEIGHT = 0.5
#: A topic's affinity: the mean score of its best this-many papers.
TOPIC_TOP = 3
#: Cells of the similarity matrix computed at once when building the graph (16 Mi floats:
#: 128 MB, whatever the day's size).
GRAPH_CELLS = 1 << 24
#: Longest library title quoted in a reason.
REASON_TITLE = 60


class LibraryVectors:
    """Library papers' term counts over one day's vocabulary, each paper counted once.

    Build one per day from every subscriber's library papers (or from a chunk of them) with
    ``Day.library_vectors``: a paper kept by many subscribers is tokenised once.
    """

    def __init__(self, papers: Sequence[LibraryPaper], counts: sp.csr_matrix):
        self._where = {p: i for i, p in enumerate(papers)}
        self._counts = counts

    def __contains__(self, paper: LibraryPaper) -> bool:
        return paper in self._where

    def __len__(self) -> int:
        return len(self._where)

    def counts(self, papers: Sequence[LibraryPaper]) -> sp.csr_matrix:
        return sp.csr_matrix(self._counts[[self._where[p] for p in papers]])

    @property
    def nbytes(self) -> int:
        """Memory of the counts (what keeping them for the day costs)."""
        c = self._counts
        return int(c.data.nbytes + c.indices.nbytes + c.indptr.nbytes)


class Day:
    """The day's papers prepared once for ranking every subscriber: see prepare_day."""

    def __init__(
        self,
        papers: tuple[Paper, ...],
        vocabulary: dict[str, int],
        counts: sp.csr_matrix,
        topic_terms: np.ndarray,
        topic_idf: np.ndarray,
        components: np.ndarray,
        topics: tuple[np.ndarray, ...],
    ):
        self.papers = papers
        self.ids = [p.id for p in papers]
        self.topics = topics
        self.index = DayIndex(papers)
        self.vocabulary = vocabulary
        # one counter for the day: it checks its (large) vocabulary once, not per call
        self._counter = CountVectorizer(
            analyzer=Analyzer(STOP_WORDS), vocabulary=vocabulary, dtype=np.float32
        )
        self.df = np.asarray((counts > 0).sum(axis=0)).ravel()
        self.logtf = _sublinear(counts)  # n x vocabulary: every term of the day
        # the topics step's TF-IDF space: its terms are columns topic_terms of ours; over
        # our columns, its idf (0 off its terms) and where each column is in its space
        self._topic_terms = topic_terms
        self._topic_idf = np.zeros(len(vocabulary))
        self._topic_idf[topic_terms] = topic_idf
        self._topic_column = np.zeros(len(vocabulary), dtype=np.int64)
        self._topic_column[topic_terms] = np.arange(len(topic_terms))
        self._components = components
        self.near, self.lsa = self._near_and_lsa(self.logtf)
        self.graph = _graph(self.near)
        # ranks of the ids: the tie-break of every ordering, whatever the input order
        self.id_rank = np.empty(len(papers), dtype=np.int64)
        self.id_rank[np.argsort(np.array(self.ids, dtype=object), kind="stable")] = np.arange(
            len(papers)
        )

    def library_vectors(self, papers: Iterable[LibraryPaper]) -> LibraryVectors:
        """The term counts of ``papers`` (duplicates once) over the day's vocabulary."""
        unique = list(dict.fromkeys(papers))
        if not unique or not self.vocabulary:
            return LibraryVectors(unique, sp.csr_matrix((len(unique), len(self.vocabulary))))
        texts = [paper_text(Paper(id="", title=p.title, abstract=p.abstract)) for p in unique]
        return LibraryVectors(unique, sp.csr_matrix(self._counter.transform(texts)))

    def library_rows(self, counts: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
        """Library papers' counts as (rows comparable with ``near``, LSA rows)."""
        return self._near_and_lsa(_sublinear(counts))

    def _topic_tfidf(self, logtf: sp.csr_matrix) -> sp.csr_matrix:
        """The topics step's TF-IDF rows (its columns) of sublinear counts over ours."""
        tfidf = _weigh(logtf, self._topic_idf)
        return sp.csr_matrix(
            (tfidf.data, self._topic_column[tfidf.indices], tfidf.indptr),
            shape=(tfidf.shape[0], len(self._topic_terms)),
        )

    def _near_and_lsa(self, logtf: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
        """Rows for "how close are two papers" (the topics step's TF-IDF and the LSA), and
        the unit LSA rows alone."""
        tfidf = self._topic_tfidf(logtf)
        if len(self._components):
            lsa = normalize(np.asarray(tfidf @ self._components.T))
        else:
            lsa = np.zeros((logtf.shape[0], 0))
        return _join(tfidf, lsa, NEAR_LSA_WEIGHT), lsa


def _sublinear(counts: sp.csr_matrix) -> sp.csr_matrix:
    """1 + log(count) for every stored count (TfidfTransformer's sublinear_tf)."""
    out = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    out.eliminate_zeros()
    np.log(out.data, out=out.data)
    out.data += 1.0
    return out


def _weigh(logtf: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Rows of logtf x idf, L2-normalised; columns of idf 0 are left out.

    Done on the arrays: scipy's generic operations cost more than the arithmetic here,
    and this runs once per subscriber on the whole day.
    """
    n = logtf.shape[0]
    rows = np.repeat(np.arange(n), np.diff(logtf.indptr))
    data = logtf.data * idf[logtf.indices]
    keep = data != 0
    data, indices, rows = data[keep], logtf.indices[keep], rows[keep]
    norms = np.sqrt(np.bincount(rows, data * data, minlength=n))
    norms[norms == 0] = 1.0
    data /= norms[rows]
    indptr = np.zeros(n + 1, dtype=logtf.indptr.dtype)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return sp.csr_matrix((data, indices, indptr), shape=logtf.shape)


def _join(tfidf: sp.csr_matrix, dense: np.ndarray, weight: float) -> sp.csr_matrix:
    """[tfidf | weight x dense]: TF-IDF for the exact terms, LSA for related ones. (On the
    arrays, as _weigh: scipy's hstack goes through COO.)"""
    n, width = tfidf.shape
    d = dense.shape[1]
    if not d or weight == 0:
        return tfidf
    indptr = tfidf.indptr.astype(np.int64) + np.arange(n + 1) * d
    total = int(indptr[-1])
    data = np.empty(total)
    indices = np.empty(total, dtype=np.int64)
    sparse_at = np.arange(tfidf.nnz) + np.repeat(np.arange(n) * d, np.diff(tfidf.indptr))
    dense_at = np.ones(total, dtype=bool)
    dense_at[sparse_at] = False
    data[sparse_at] = tfidf.data
    indices[sparse_at] = tfidf.indices
    data[dense_at] = (dense * weight).ravel()
    indices[dense_at] = np.tile(np.arange(width, width + d), n)
    return sp.csr_matrix((data, indices, indptr), shape=(n, width + d))


def prepare_day(
    papers: Sequence[Paper],
    vectors: Vectors,
    *,
    topics: Sequence[Topic] = (),
    seed: int = 42,
) -> Day:
    """Everything about the day that every subscriber's ranking shares, computed once.

    ``papers`` in a fixed order (build_digest's: by id), and ``vectors`` their
    ``newsletter.topics.vectorize.vectorize(papers)`` (its TF-IDF gives the LSA and
    the nearest-neighbour graph). ``topics``: the digest's topics
    whose affinity ``rank`` reports, in this order.
    """
    papers = tuple(papers)
    n = len(papers)
    if vectors.tfidf.shape[0] != n:
        raise ValueError(f"vectors has {vectors.tfidf.shape[0]} rows for {n} papers")
    counter = CountVectorizer(analyzer=Analyzer(STOP_WORDS), dtype=np.float64)
    try:
        counts = sp.csr_matrix(counter.fit_transform([paper_text(p) for p in papers]))
        vocabulary = {str(t): int(i) for t, i in counter.vocabulary_.items()}
    except ValueError:  # not one term in the whole day
        counts, vocabulary = sp.csr_matrix((n, 0)), {}
    topic_terms = np.array([vocabulary.get(str(t), -1) for t in vectors.terms], dtype=np.int64)
    if (topic_terms < 0).any():
        raise ValueError("vectors' terms are not these papers' terms")
    # the idf the topics step used (TfidfTransformer, smooth_idf): from document frequencies
    df = np.asarray((vectors.counts > 0).sum(axis=0)).ravel()
    topic_idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    tfidf = sp.csr_matrix(vectors.tfidf, dtype=np.float64)
    dims = min(LSA_DIMS, n - 1, tfidf.shape[1] - 1)
    if dims >= 2:
        svd = TruncatedSVD(n_components=dims, random_state=seed, algorithm="randomized")
        with np.errstate(invalid="ignore", divide="ignore"):  # identical papers: 0/0 ratios
            svd.fit(tfidf)
        components = np.asarray(svd.components_, dtype=np.float64)
    else:
        components = np.zeros((0, tfidf.shape[1]))
    where = {p.id: i for i, p in enumerate(papers)}
    groups = tuple(
        np.array(sorted({where[p.id] for p in _members(t) if p.id in where}), dtype=np.int64)
        for t in topics
    )
    return Day(papers, vocabulary, counts, topic_terms, topic_idf, components, groups)


def _members(topic: Topic) -> tuple[Paper, ...]:
    return (*(pk.paper for pk in topic.picks), *topic.rest)


def _graph(features: sp.csr_matrix) -> sp.csr_matrix:
    """Each paper linked to its GRAPH_NEIGHBOURS most similar ones (symmetrised, weighted by
    cosine, normalised D^-1/2 W D^-1/2 so smoothing neither grows nor shrinks scores)."""
    n = features.shape[0]
    k = min(GRAPH_NEIGHBOURS, n - 1)
    if k < 1 or features.shape[1] == 0:
        return sp.csr_matrix((n, n))
    unit = normalize(features)
    rows, cols, vals = [], [], []
    block = max(1, GRAPH_CELLS // n)
    for start in range(0, n, block):
        stop = min(n, start + block)
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


def library_scores(
    day: Day, counts: sp.csr_matrix, lsa: np.ndarray, exclude: set[int]
) -> np.ndarray:
    """How much each of the day's papers resembles the library (its papers' term counts over
    the day's vocabulary, and their LSA rows), standardised over the day and smoothed over
    its graph: see the module's docstring. ``exclude``: the day's copies of library papers
    (not negatives)."""
    n = len(day.papers)
    m = counts.shape[0]
    # the subscriber's space: the day's terms that the day and the library use MIN_DF times
    df = day.df + np.asarray((counts > 0).sum(axis=0)).ravel()
    idf = np.where(df >= MIN_DF, np.log((1.0 + n + m) / (1.0 + df)) + 1.0, 0.0)
    weight = LSA_WEIGHT * LSA_HALF / (LSA_HALF + m)
    x = _join(_weigh(day.logtf, idf), day.lsa, weight)
    library = _join(_weigh(_sublinear(counts), idf), lsa, weight)
    if m >= MIN_SVM_LIBRARY:
        negatives = x[[i for i in range(n) if i not in exclude]] if exclude else x
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
            svm.fit(
                sp.vstack([library, negatives], format="csr"),
                np.r_[np.ones(m), np.zeros(negatives.shape[0])],
            )
        raw = np.asarray(x @ svm.coef_.ravel()).ravel() + svm.intercept_[0]
    else:
        raw = np.asarray(normalize(x) @ normalize(library).T.mean(axis=1)).ravel()
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

    ``library``: (some of) the subscriber's library papers from ``day.library_vectors``,
    computed once for all subscribers; papers missing from it are tokenised here.
    """
    if count < 0:
        raise ValueError(f"count must be 0 or more, not {count}")
    n = len(day.papers)
    if interests.is_empty or n == 0:
        return ForYou((), tuple(0.0 for _ in day.topics))
    index = day.index
    copies = index.copies(interests.library)
    score = np.zeros(n)

    kept, counts = _library(day, interests.library, library)
    text: np.ndarray | None = None
    near = sp.csr_matrix((0, day.near.shape[1]))
    if kept:
        near, lsa = day.library_rows(counts)
        text = library_scores(day, counts, lsa, copies)
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
    order = candidates[np.lexsort((day.id_rank[candidates], -score[candidates]))][:count]

    close = _close(day, near, order)
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
    """The library papers that share a term with the day, in the subscriber's order (it
    decides which title a reason quotes on a tie), and their counts."""
    known = [p for p in papers if vectors is not None and p in vectors]
    missing = [p for p in papers if vectors is None or p not in vectors]
    blocks = [day.library_vectors(missing).counts(missing)]
    if vectors is not None and known:
        blocks.insert(0, vectors.counts(known))
    counts = sp.vstack(blocks, format="csr")
    where = {p: i for i, p in enumerate([*known, *missing])}
    order = np.array([where[p] for p in papers], dtype=np.int64)
    counts = sp.csr_matrix(counts[order])
    nonzero = np.flatnonzero(np.diff(counts.indptr))
    return [papers[int(r)] for r in nonzero], sp.csr_matrix(counts[nonzero])


def _close(day: Day, library: sp.csr_matrix, picked: np.ndarray) -> list[list[int]]:
    """Per picked paper, the library papers at cosine >= CLOSE_SIM, closest first."""
    if not library.shape[0] or not len(picked):
        return [[] for _ in picked]
    sims = np.asarray(
        (normalize(day.near[picked]) @ normalize(library).T).todense(), dtype=np.float64
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
        who = "an author" if len(coauthors) == 1 else "authors"
        parts.append(f"by {_names(coauthors[:2])}, {who} in your library")
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
