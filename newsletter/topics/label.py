"""Section labels: phrases distinctive of a section on that day, no content word in two
labels, written as headings ("Test-time scaling · reward models")."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from newsletter.models import Paper
from newsletter.sources.normalize import render_latex
from newsletter.topics.metrics import content_stems
from newsletter.topics.text import Analyzer, clean_for_display, display_form
from newsletter.topics.vectorize import STOP_WORDS, thresholds

LABEL_TERMS = 3  # terms in a label
TERMS_KEPT = 8  # distinctive terms kept on Topic.terms
CANDIDATES = 40  # ranked terms looked at per section
BIGRAM_BOOST = 1.3  # a phrase reads better than two loose words
#: Labels are computed on at most this many papers of a section (a seeded sample): phrase
#: statistics settle long before that, and the phrase tokeniser is the costly part.
LABEL_SAMPLE = 300
#: How a phrase is written is read from at most this many of the section's papers with it.
DISPLAY_TEXTS = 50
#: A label term is at least this many times more frequent in its section than in the rest
#: of the day: a word most of the day's papers share ("language" on a day of LLM papers)
#: names no section, however often its own papers use it.
MIN_LIFT = 2.0
#: And no label term is in more than this share of the other sections' papers ("large
#: language models", in 44 % of a day of LLM papers and 30 % outside any one section,
#: says nothing that day).
MAX_REST_SHARE = 0.25
#: Between a heading's terms ("Test-time scaling · reward models").
SEPARATOR = " \u00b7 "

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
    algorithm algorithms number numbers single study studies
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
    """ "cot" for "chain-of-thought", "LLMs" for "large language models"."""
    short, long = short.lower(), long.lower()
    words = long.replace("-", " ").split()
    if " " in short or "-" in short or len(words) < 2:
        return False
    initials = "".join(w[0] for w in words)
    return short in (initials, initials + "s", initials.rstrip("s"), initials.rstrip("s") + "s")


def _is_clause(term: str) -> bool:
    """ "embeddings learned", "models trained": a plural noun then an -ed word."""
    words = term.split()
    return len(words) > 1 and words[-1].endswith("ed") and words[-2].endswith("s")


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


@dataclass(frozen=True)
class Phrases:
    """The phrases (unigrams, bigrams, compounds) of at most LABEL_SAMPLE papers per
    section: what labels are chosen from."""

    binary: sp.csr_matrix  # sampled paper x phrase, 0/1
    titles: sp.csr_matrix  # the same for the papers' titles
    terms: np.ndarray  # phrase of each column
    groups: list[np.ndarray]  # each section's rows of ``binary``
    texts: list[str]  # each row's title, a line break, its abstract (see display_form)
    forms: list[_Forms] = field(default_factory=list)  # per group, filled on first use

    def form(self, g: int) -> _Forms:
        """Section g's display forms (one cache for leads and labels)."""
        while len(self.forms) <= g:
            self.forms.append(_Forms(self, len(self.forms)))
        return self.forms[g]

    @classmethod
    def of(
        cls,
        papers: Sequence[Paper],
        groups: Sequence[np.ndarray],
        *,
        seed: int,
        known: frozenset[str] | None = None,
    ) -> Phrases:
        """``known``: the words that may make phrases (the day's vocabulary)."""
        rng = np.random.default_rng(seed)
        picked = [
            np.sort(rng.choice(g, LABEL_SAMPLE, replace=False)) if len(g) > LABEL_SAMPLE else g
            for g in groups
        ]
        sample = [papers[int(i)] for g in picked for i in g]
        bounds = np.cumsum([0, *(len(g) for g in picked)])
        local = [np.arange(a, b) for a, b in itertools.pairwise(bounds)]
        texts = [
            clean_for_display(f"{render_latex(p.title)}\n{render_latex(p.abstract)}")
            for p in sample
        ]
        min_df, max_df = thresholds(len(sample))
        cv = CountVectorizer(
            analyzer=Analyzer(STOP_WORDS, known),
            min_df=min_df,
            max_df=max_df,
            binary=True,
            dtype=np.float32,
        )
        try:
            # presence only: the title once (paper_text repeats it for the counts' sake)
            binary = sp.csr_matrix(cv.fit_transform([f"{p.title}. {p.abstract}" for p in sample]))
        except ValueError:  # no term survived: no phrase can label anything
            empty = sp.csr_matrix((len(sample), 0), dtype=np.float32)
            return cls(empty, empty, np.array([], dtype=object), local, texts)
        titles = sp.csr_matrix(cv.transform([p.title for p in sample]))
        return cls(binary, titles, cv.get_feature_names_out(), local, texts)

    def weights(self) -> np.ndarray:
        """Each section's score for each phrase: c-TF-IDF with the boosts and cuts above,
        0 where the phrase is not distinctive for the section on this day (MIN_LIFT,
        MAX_REST_SHARE)."""
        k = len(self.groups)
        if self.binary.shape[1] == 0:
            return np.zeros((k, 0))
        w = ctfidf(self.binary, self.groups)
        terms = self.terms
        w = w * np.where([" " in t for t in terms], BIGRAM_BOOST, 1.0)
        vague = np.array([all(x in VAGUE for x in t.split()) for t in terms])
        w = w * np.where(vague, VAGUE_FACTOR, 1.0)
        w = w * np.where([_is_clause(t) for t in terms], CLAUSE_FACTOR, 1.0)
        share = np.vstack([np.asarray(self.titles[g].mean(axis=0)).ravel() for g in self.groups])
        w = w * (1.0 + TITLE_BOOST * share)
        if k > 1:  # with one section the whole day is its subject
            n = self.binary.shape[0]
            df = np.asarray(self.binary.sum(axis=0)).ravel()
            for c, g in enumerate(self.groups):
                inside = np.asarray(self.binary[g].sum(axis=0)).ravel()
                rest = (df - inside) / max(n - len(g), 1)
                w[c, (inside / max(len(g), 1) < MIN_LIFT * rest) | (rest > MAX_REST_SHARE)] = 0.0
        return w


def _ranked(w: np.ndarray, terms: np.ndarray) -> list[str]:
    """Phrases with a positive weight, best first; ties by the phrase (order-free)."""
    order = sorted(np.flatnonzero(w > 0), key=lambda i: (-w[i], terms[i]))
    return [str(terms[i]) for i in order[:CANDIDATES]]


class _Forms:
    """Display forms of one section's phrases, computed once each: display_form reads only
    the section's texts that hold the phrase's first word."""

    def __init__(self, ph: Phrases, g: int):
        self.texts = [ph.texts[i] for i in ph.groups[g]]
        self.lower = [t.lower() for t in self.texts]
        self.cache: dict[str, str] = {}

    def written(self, phrase: str) -> bool:
        """Whether at least two of the section's papers write ``phrase`` (any case)."""
        low = phrase.lower()
        return bool(low) and sum(low in text for text in self.lower) >= 2

    def __call__(self, term: str) -> str:
        if term not in self.cache:
            first = term.split(" ", 1)[0]
            texts = [t for t, low in zip(self.texts, self.lower, strict=True) if first in low]
            self.cache[term] = display_form(term, texts[:DISPLAY_TEXTS], STOP_WORDS)
        return self.cache[term]


def leads(ph: Phrases) -> list[frozenset[str]]:
    """The content stems of each section's best phrase: two sections whose leads share
    one are about the same thing to a reader ("test-time scaling" / "inference-time
    scaling")."""
    w = ph.weights()
    out = []
    for g in range(len(ph.groups)):
        ranked = _ranked(w[g], ph.terms)
        best = _choose(ranked, ph.form(g), limit=1, taken=set(), elsewhere=())
        out.append(frozenset(content_stems(best[0])) if best else frozenset())
    return out


def _order(
    ranked: list[str],
    taken: set[str],
    forms: Callable[[str], str] | None = None,
    enough: int = CANDIDATES,
) -> list[str]:
    """Phrases best first, with none that says again what an earlier one says: no content
    stem in ``taken`` or shared with an earlier phrase ("scale" after "test time scaling"),
    except that a longer phrase replaces the shorter ones it contains where the first of
    them stood ("test time" replaces "test", "inference time scaling" replaces "inference
    time"); a phrase that chains with an earlier one ("deep convolutional neural" /
    "neural networks") stays for _choose to join. With ``forms``, a phrase the papers never
    write (no display form) is skipped. Past ``enough`` kept phrases only replacements are
    looked at."""
    out: list[str] = []
    for term in ranked:
        stems = content_stems(term)
        if not stems or stems & taken:
            continue
        words = set(term.split())
        inside = [t for t in out if set(t.split()) < words]
        if any(content_stems(t) & stems for t in out if t not in inside and not _chain(t, term)):
            continue
        if not inside and len(out) >= enough:
            continue  # it would come after enough others: only a replacement matters now
        if forms is not None and not forms(term):  # last: display forms cost a text scan
            continue
        if inside:
            at = out.index(inside[0])
            out = [t for t in out if t not in inside]
            out.insert(at, term)
        else:
            out.append(term)
    return out


def _choose(
    ranked: list[str],
    forms: Callable[[str], str],
    *,
    limit: int,
    taken: set[str],
    elsewhere: Sequence[str],
    written: Callable[[str], bool] = lambda phrase: True,
) -> list[str]:
    """Display forms of up to ``limit`` phrases for a section, from ``_order``: a form
    that brings back a word already shown (display forms may add one: "large language" ->
    "large language models") is skipped, and so is an abbreviation of a form shown here or
    ``elsewhere`` ("cot" beside "chain-of-thought"); two forms that chain become one
    ("deep convolutional neural" + "neural networks") when the papers write the joined
    phrase (``written``: not "magnetic field" + "field theory")."""
    chosen: list[str] = []
    # a few spare phrases: a later one may replace or join an earlier one, or be skipped
    for term in _order(ranked, taken, forms, enough=limit + 2):
        form = forms(term)
        stems = content_stems(form)
        if not form or stems & taken:
            continue
        if any(_abbreviates(form, f) or _abbreviates(f, form) for f in [*elsewhere, *chosen]):
            continue
        joins = [(i, j) for i, f in enumerate(chosen) if (j := _chain(f, form)) and written(j)]
        if joins:
            i, joined = joins[0]
            others = [f for k, f in enumerate(chosen) if k != i]
            if not any(content_stems(f) & content_stems(joined) for f in others):
                chosen[i] = joined
            continue
        if any(content_stems(f) & stems for f in chosen):
            continue
        chosen.append(form)
        if len(chosen) >= limit:
            break
    return chosen


def heading(forms: Sequence[str]) -> str:
    """ "test-time scaling", "reward models" -> "Test-time scaling · reward models"; a first
    word the papers write with capitals inside ("t-SNE", "LLMs") is left as it is."""
    text = SEPARATOR.join(forms)
    first = text.split(" ", 1)[0]
    if text and not any(c.isupper() for c in first):
        text = text[0].upper() + text[1:]
    return text


def label_phrases(ph: Phrases) -> list[tuple[str, tuple[str, ...]]]:
    """(label, distinctive terms) per section of ``ph``, in its order (earlier ones win a
    contested word, so build it biggest first). Labels are unique."""
    w = ph.weights()
    taken: set[str] = set()  # content stems used by earlier labels
    shown: list[str] = []  # their forms
    seen: set[str] = set()
    out: list[tuple[str, tuple[str, ...]]] = []
    for g in range(len(ph.groups)):
        forms = ph.form(g)
        ranked = _ranked(w[g], ph.terms)
        distinct = _choose(
            ranked, forms, limit=TERMS_KEPT, taken=set(), elsewhere=(), written=forms.written
        )
        chosen = _choose(
            ranked, forms, limit=LABEL_TERMS, taken=taken, elsewhere=shown, written=forms.written
        )
        label = heading(chosen) if chosen else "Other papers"
        base, extra = label, 2
        while label in seen:  # the last resort: every distinctive word was taken
            label = f"{base} ({extra})"
            extra += 1
        seen.add(label)
        for f in chosen:
            taken |= content_stems(f)
        shown += chosen
        out.append((label, tuple(distinct)))
    return out
