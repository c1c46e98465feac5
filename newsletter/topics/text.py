"""Text cleaning and tokenising for topic vectors: pure, and free of heavy imports."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

# Words that every abstract uses whatever its subject: they would only blur topics and labels.
BOILERPLATE = frozenset(
    """
    abstract accordingly achieve achieved achieves achieving additionally address addressed
    addresses addressing advantage allow allows also approach approaches article based
    benchmark benchmarks best better case cases challenge challenges challenging compared
    comparison comprehensive conduct conducted consider considered consistently contribution
    contributions current demonstrate demonstrated demonstrates described describe design
    designed develop developed different does effective effectively efficient efficiently
    enable enables et evaluate evaluated evaluation existing experiment experimental
    experiments extensive finally find findings framework frameworks furthermore given good
    high however important improve improved improvement improvements improves improving
    including introduce introduced introduces key leverage leverages leveraging like
    low lack main make makes method methods moreover new novel obtain obtained
    outperform outperforms paper particular particularly performance perform performed
    performs present presented presents previous problem problems propose proposed proposes
    provide provided provides recent recently remain remains result results achieve
    significant significantly simple specifically state study studies studied substantially
    superior task tasks technique techniques use used uses using various way ways work works
    wide widely yield yields years al demonstrating introducing proposing showing shown shows
    show thereby therefore thus paper's arxiv available publicly code https http www github
    com org html pdf significantly strong stronger able non
    """.lower().split()
)

_WEB = re.compile(r"(?:https?://|www\.)\S+")
_MAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)", re.S)
_LATEX_CMD = re.compile(r"\\[a-zA-Z@]+\*?|\\.")
#: Hyphens that join a compound's parts ("test-time"), and marks that separate two words
#: written together ("input/output", an en dash between two years).
_JOIN = re.compile(r"[-\u2010\u2011]")
_APART = re.compile(r"[/\u2013]")
#: A token: a letter followed by at least one letter or digit ("3d" and "2025" are not terms).
TOKEN_PATTERN = r"(?u)\b[^\W\d_][^\W_]+\b"
_TOKEN = re.compile(TOKEN_PATTERN)


def _drop_noise(text: str) -> str:
    """URLs, e-mail addresses, LaTeX math and commands out. Each pattern runs only when
    its marker is in the text: scanning every word for them was most of the tokeniser's
    time."""
    if "http" in text or "www." in text:
        text = _WEB.sub(" ", text)
    if "@" in text:
        text = _MAIL.sub(" ", text)
    if "$" in text or "\\" in text:
        text = _LATEX_CMD.sub(" ", _MATH.sub(" ", text))
    return text


class Words:
    """The unigram tokens of a text, stop words out: what clustering counts. The same
    tokens as the Analyzer's unigrams, at a fraction of its cost."""

    def __init__(self, stop_words: frozenset[str]):
        self.stop_words = stop_words

    def __call__(self, text: str) -> list[str]:
        stop = self.stop_words
        return [w for w in _TOKEN.findall(_drop_noise(text).lower()) if w not in stop]


#: Longest term: a word and a two-word compound ("test-time scaling").
MAX_NGRAM = 3
_BREAK = re.compile(r"[.,;:!?()\[\]\"|]+(?:\s|$)|[()\[\]\"|]")


class Analyzer:
    """Unigrams and bigrams (for labels); bigrams never cross punctuation (so "models
    (LLMs)" gives no "models llms") but do bridge dropped stop words ("chain thought").

    A hyphenated compound is one unit: "test-time" gives "test time", and with its
    neighbour "scaling test time", never "scaling test" straddling the compound's edge.
    """

    def __init__(self, stop_words: frozenset[str]):
        self.stop_words = stop_words

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        stop = self.stop_words
        tok = _TOKEN.findall
        text = _drop_noise(text).replace("{", " ").replace("}", " ").replace("~", " ")
        for segment in _BREAK.split(text.lower()):
            units: list[tuple[str, ...]] = []
            for chunk in segment.split():
                if chunk.isalpha():  # most words: one token or none, no regex needed
                    if len(chunk) > 1 and chunk not in stop:
                        units.append((chunk,))
                    continue
                for piece in _APART.split(chunk):
                    words = tuple(w for part in _JOIN.split(piece) for w in tok(part))
                    words = tuple(w for w in words if w not in stop)
                    if words:
                        units.append(words)
            for unit in units:
                out += unit
                if len(unit) > 1:
                    out.append(" ".join(unit))
            for a, b in itertools.pairwise(units):
                if len(a) + len(b) <= MAX_NGRAM:
                    out.append(" ".join(a + b))
        return out


def display_form(term: str, texts: Sequence[str], stop_words: frozenset[str]) -> str:
    """How the papers mostly write a multi-word term: ``test time`` -> ``test-time``,
    ``chain thought`` -> ``chain-of-thought`` (stop words the vectoriser dropped come back),
    ``scaling test time`` -> ``scaling test-time``. ``texts``: see clean_for_display."""
    parts = term.split()
    if len(parts) < 2:
        return _prefixed(term, texts)
    gap = r"((?:[\s-]+[^\W\d_]+){0,2}?)[\s-]+"
    body = gap.join(re.escape(p) for p in parts)
    pattern = re.compile(rf"(?<![\w-])(?:[^\W_]-)?{body}(?![\w-])(?:[\s-]+([^\W\d_]+))?", re.I)
    last = len(parts)  # the group of the word after the term
    forms: dict[str, int] = {}
    after: dict[str, int] = {}
    total = 0
    for text in texts:
        if parts[0] not in text.lower():
            continue
        for m in pattern.finditer(text):
            middles = m.groups()[: last - 1]
            if not all(
                w.lower() in stop_words for mid in middles for w in mid.replace("-", " ").split()
            ):
                continue
            end = m.start(last) if m.group(last) else m.end()
            form = " ".join(text[m.start() : end].lower().split()).rstrip(" -")
            forms[form] = forms.get(form, 0) + 1
            total += 1
            if m.group(last):
                nxt = m.group(last).lower()
                after[nxt] = after.get(nxt, 0) + 1
    if not forms:
        return term
    best = max(forms.items(), key=lambda kv: (kv[1], kv[0] == term, kv[0]))[0]
    # "large language" is nearly always followed by "models": show the phrase people say
    if after and len(parts) < MAX_NGRAM:
        nxt, count = max(after.items(), key=lambda kv: (kv[1], kv[0]))
        if count >= 3 and count >= 0.7 * total and nxt not in stop_words and len(nxt) > 2:
            best = f"{best} {nxt}"
    return best


def _prefixed(term: str, texts: Sequence[str]) -> str:
    """A unigram the papers mostly write after a one-character prefix the tokeniser drops:
    ``adic`` -> ``p-adic``."""
    pattern = re.compile(rf"(?<![\w-])(?:([^\W_])-)?{re.escape(term)}(?![\w-])", re.I)
    forms: dict[str, int] = {}
    for text in texts:
        if term not in text.lower():
            continue
        for m in pattern.finditer(text):
            key = f"{m.group(1).lower()}-{term}" if m.group(1) else term
            forms[key] = forms.get(key, 0) + 1
    if not forms:
        return term
    return max(forms.items(), key=lambda kv: (kv[1], kv[0] == term, kv[0]))[0]


def clean_for_display(text: str) -> str:
    """URLs and LaTeX out, case and hyphens kept: what display_form reads."""
    return _drop_noise(text)
