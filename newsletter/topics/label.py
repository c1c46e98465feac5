"""Topic labels from class-based TF-IDF (c-TF-IDF), without redundant or repeated terms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from newsletter.models import Paper
from newsletter.topics.text import BOILERPLATE, Analyzer, clean_for_display, display_form
from newsletter.topics.vectorize import STOP_WORDS, paper_text, thresholds

LABEL_TERMS = 3  # terms in a label (2..4 allowed by the model)
TERMS_KEPT = 8  # distinctive terms kept on Topic.terms
CANDIDATES = 40  # ranked terms looked at per topic
BIGRAM_BOOST = 1.3  # a phrase reads better than two loose words
#: Labels are computed on at most this many papers of a section (a seeded sample): phrase
#: statistics settle long before that, and the phrase tokeniser is the costly part.
LABEL_SAMPLE = 300
_STOP = frozenset(
    BOILERPLATE
    | {
        "of",
        "the",
        "a",
        "an",
        "and",
        "for",
        "to",
        "in",
        "on",
        "with",
        "by",
        "from",
        "as",
        "at",
        "or",
    }
)


#: Words too vague to lead a label ("quality", "paradigm", "data"): their weight is cut
#: so that a more specific term wins when there is one; they stay usable otherwise.
VAGUE = frozenset(
    """
    ability abilities accuracy accurate additional analysis application applications art
    aware capabilities capability complex critical crucial data deep diverse domain domains
    effectiveness efficiency end evidence form function functions general generation
    great human impact information insights large learning level limited limitations model
    models multiple order paradigm potential powerful practical process promising properties
    learn prove quality range real reliable remarkable robust robustness role scale set setting
    settings small specific standard strategies strategy structure struggle success successful
    support system systems theoretical time trained training type types understanding world
    """.split()  # noqa: SIM905
)
VAGUE_FACTOR = 0.35
#: A phrase of a plural noun and a past participle ("embeddings learned", "models trained")
#: is a clause cut short, not a name for a topic: weighted down like a vague term.
CLAUSE_FACTOR = 0.35
#: Weight x (1 + this x share of the topic's titles holding the term as written): authors'
#: own phrases ("speculative decoding") read better than abstract filler.
TITLE_BOOST = 1.0


def ctfidf(binary: sp.csr_matrix, groups: Sequence[np.ndarray]) -> np.ndarray:
    """Class-based TF-IDF, one row per group: (share of the group's papers with the term)
    x log(1 + papers / papers with the term). Terms in a single paper of a larger group get 0.
    """
    n = binary.shape[0]
    df_all = np.asarray(binary.sum(axis=0)).ravel()
    idf = np.log1p(n / np.maximum(df_all, 1))
    rows = []
    for idx in groups:
        df_c = np.asarray(binary[idx].sum(axis=0)).ravel()
        w = (df_c / max(len(idx), 1)) * idf
        w[df_c < min(2, len(idx))] = 0.0
        rows.append(w)
    return np.vstack(rows) if rows else np.zeros((0, binary.shape[1]))


def _abbreviates(short: str, long: str) -> bool:
    """ "cot" for "chain-of-thought", "llms" for "large language models"."""
    words = long.replace("-", " ").split()
    if " " in short or "-" in short or len(words) < 2:
        return False
    initials = "".join(w[0] for w in words)
    return short in (initials, initials + "s", initials.rstrip("s"), initials.rstrip("s") + "s")


def _is_clause(term: str) -> bool:
    """ "embeddings learned", "models trained": a plural noun then an -ed word."""
    words = term.split()
    return len(words) > 1 and words[-1].endswith("ed") and words[-2].endswith("s")


def _key(term: str) -> tuple[str, ...]:
    """Singular/plural variants share a key ("model"/"models", "llm"/"llms")."""
    return tuple(
        w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
        for w in term.split()
    )


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Two phrases say much the same: one's words inside the other's, they chain ("large
    language" / "language models") or start alike ("test time scaling" / "test time
    compute"). "test time" and "inference time" do not."""
    return set(a) <= set(b) or set(b) <= set(a) or a[-1] == b[0] or b[-1] == a[0] or a[0] == b[0]


def _pick_terms(ranked: list[str], avoid: set[tuple[str, ...]], limit: int) -> list[str]:
    """Greedy: no unigram inside a chosen bigram, no two bigrams sharing a word, no variants."""
    chosen: list[str] = []
    for term in ranked:
        key = _key(term)
        if key in avoid or any(_key(c) == key for c in chosen):
            continue
        words = set(key)
        if len(key) == 1:
            if any(key[0] in _key(c) for c in chosen):
                continue  # "test" after "test time"
        else:
            longer = [c for c in chosen if len(_key(c)) > 1 and set(_key(c)) < words]
            if any(len(_key(c)) > 1 and c not in longer and _overlap(key, _key(c)) for c in chosen):
                continue  # "language models" after "large language"
            inside = longer + [c for c in chosen if len(_key(c)) == 1 and _key(c)[0] in words]
            if inside:  # "test time" replaces "test" (and "time") where "test" stood;
                # "inference time scaling" replaces "inference time"
                at = chosen.index(inside[0])
                chosen = [c for c in chosen if c not in inside]
                chosen.insert(min(at, len(chosen)), term)
                continue
        chosen.append(term)
        if len(chosen) >= limit:
            break
    return chosen


def _shown(
    terms: list[str], texts: list[str], limit: int, elsewhere: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """(term, display form) pairs, skipping a term whose display words another already has:
    "long context" once "attention for long context" is shown. ``elsewhere``: forms shown
    in other labels, whose abbreviations (or long forms) are skipped too."""
    out: list[tuple[str, str]] = []
    for term in terms:
        form = display_form(term, texts, _STOP)
        words = set(form.replace("-", " ").split())
        if any(words <= set(f.replace("-", " ").split()) for _, f in out):
            continue
        if any(
            _abbreviates(form, f) or _abbreviates(f, form)
            for f in [*elsewhere, *(f for _, f in out)]
        ):
            continue  # "cot" beside "chain-of-thought", "llms" beside "large language models"
        out = [(t, f) for t, f in out if not set(f.replace("-", " ").split()) <= words]
        joined = next((i for i, (_, f) in enumerate(out) if _chain(f, form)), None)
        if joined is not None:  # "deep convolutional neural" + "neural networks": one phrase
            t, f = out[joined]
            out[joined] = (t, _chain(f, form))
            continue
        out.append((term, form))
        if len(out) >= limit:
            break
    return out


def _chain(a: str, b: str) -> str:
    """The phrase two multi-word forms make when one ends with the word the other starts
    with ("deep convolutional neural" + "neural networks"), else ""."""
    wa, wb = a.split(), b.split()
    if len(wa) < 2 or len(wb) < 2:
        return ""
    if wa[-1] == wb[0]:
        return " ".join(wa + wb[1:])
    if wb[-1] == wa[0]:
        return " ".join(wb + wa[1:])
    return ""


def phrase_vectors(
    papers: Sequence[Paper], groups: Sequence[np.ndarray], *, seed: int
) -> tuple[sp.csr_matrix, np.ndarray, list[np.ndarray], list[str], sp.csr_matrix]:
    """Binary paper-phrase and title-phrase matrices (unigrams, bigrams, compounds) of at
    most LABEL_SAMPLE papers per group: (binary, terms, groups as rows of it, raw texts,
    titles)."""
    rng = np.random.default_rng(seed)
    picked = [
        np.sort(rng.choice(g, LABEL_SAMPLE, replace=False)) if len(g) > LABEL_SAMPLE else g
        for g in groups
    ]
    order = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    sample = [papers[int(i)] for i in order]
    local, at = [], 0
    for g in picked:
        local.append(np.arange(at, at + len(g)))
        at += len(g)
    raw = [clean_for_display(f"{p.title}\n{p.abstract}") for p in sample]
    min_df, max_df = thresholds(len(sample))
    cv = CountVectorizer(
        analyzer=Analyzer(STOP_WORDS), min_df=min_df, max_df=max_df, binary=True, dtype=np.float32
    )
    try:
        binary = sp.csr_matrix(cv.fit_transform([paper_text(p) for p in sample]))
    except ValueError:  # no term survived: no phrase can label anything
        empty = sp.csr_matrix((len(sample), 0), dtype=np.float32)
        return empty, np.array([], dtype=object), local, raw, empty
    titles = sp.csr_matrix(cv.transform([p.title for p in sample]))
    return binary, cv.get_feature_names_out(), local, raw, titles


def label_groups(
    papers: Sequence[Paper], groups: Sequence[np.ndarray], *, seed: int
) -> list[tuple[str, tuple[str, ...]]]:
    """(label, distinctive terms) per group of ``papers`` (rows), groups in the order given
    (earlier ones win a contested term, so pass the biggest first). Labels are unique."""
    if not groups:  # every paper went to the Watched section
        return []
    binary, terms, local, raw, titles = phrase_vectors(papers, groups, seed=seed)
    return _label(binary, terms, local, raw, titles)


def _label(
    binary: sp.csr_matrix,
    terms: np.ndarray,
    groups: Sequence[np.ndarray],
    raw_texts: Sequence[str],
    titles: sp.csr_matrix | None = None,
) -> list[tuple[str, tuple[str, ...]]]:
    out: list[tuple[str, tuple[str, ...]]] = []
    if binary.shape[1] == 0:
        weights = np.zeros((len(groups), 0))
    else:
        weights = ctfidf(binary, groups)
        is_bigram = np.array([" " in t for t in terms])
        weights = weights * np.where(is_bigram, BIGRAM_BOOST, 1.0)
        vague = np.array([all(w in VAGUE or w in _STOP for w in t.split()) for t in terms])
        weights = weights * np.where(vague, VAGUE_FACTOR, 1.0)
        clause = np.array([_is_clause(t) for t in terms])
        weights = weights * np.where(clause, CLAUSE_FACTOR, 1.0)
        if titles is not None:
            share = np.vstack([np.asarray(titles[idx].mean(axis=0)).ravel() for idx in groups])
            weights = weights * (1.0 + TITLE_BOOST * share)
    used: set[tuple[str, ...]] = set()
    shown_before: list[str] = []  # display forms in earlier labels
    labels_seen: set[str] = set()
    for g, idx in enumerate(groups):
        w = weights[g]
        # best first; ties broken by the term itself so the order never depends on the input
        order = sorted((i for i in np.flatnonzero(w > 0)), key=lambda i: (-w[i], terms[i]))
        ranked = [str(terms[i]) for i in order[:CANDIDATES]]
        texts = [raw_texts[i] for i in idx]
        distinct = _shown(_pick_terms(ranked, set(), CANDIDATES), texts, TERMS_KEPT)
        pairs = _shown(_pick_terms(ranked, used, CANDIDATES), texts, LABEL_TERMS, shown_before)
        if len(pairs) < 2:  # everything distinctive was taken: share terms rather than lose them
            pairs = _shown(_pick_terms(ranked, set(), CANDIDATES), texts, LABEL_TERMS)
        chosen = [t for t, _ in pairs]
        shown = [d for _, d in pairs]
        label = ", ".join(shown) if len(shown) >= 2 else ""
        if not label:
            label = f"{shown[0]}, other papers" if shown else "other papers"
        base, extra = label, 2
        while label in labels_seen:
            label = f"{base} ({extra})"
            extra += 1
        labels_seen.add(label)
        used.update(_key(t) for t in chosen)
        shown_before += shown
        out.append((label, tuple(d for _, d in distinct)))
    return out
