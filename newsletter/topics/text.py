"""Text cleaning and tokenising for topic vectors: pure, and free of heavy imports."""

from __future__ import annotations

import itertools
import re

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

_URL = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+\.\w+")
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)", re.S)
_LATEX_CMD = re.compile(r"\\[a-zA-Z@]+\*?|\\.")
_HYPHEN = re.compile(r"(?<=[^\W\d_])[-\u2010\u2011\u2013/](?=[^\W\d_])")
#: A hyphenated compound ("test-time", "chain-of-thought"), before hyphens become spaces.
_COMPOUND = re.compile(r"[^\W_]+(?:[-\u2010\u2011][^\W_]+)+")
#: A token: a letter followed by at least one letter or digit ("3d" and "2025" are not terms).
TOKEN_PATTERN = r"(?u)\b[^\W\d_][^\W_]+\b"
_TOKEN = re.compile(TOKEN_PATTERN)


def clean(text: str, *, keep_compounds: bool = False) -> str:
    """Lower-case text with URLs, LaTeX math and commands removed, hyphens made spaces.

    Hyphenated and spaced variants ("test-time" / "test time") become the same bigram.
    ``keep_compounds`` joins a compound's parts with a marker instead, for the Analyzer.
    """
    text = _URL.sub(" ", text)
    text = _MATH.sub(" ", text)
    text = _LATEX_CMD.sub(" ", text)
    text = text.replace("{", " ").replace("}", " ").replace("~", " ")
    if keep_compounds:
        text = _COMPOUND.sub(lambda m: _HYPHEN.sub(COMPOUND_JOIN, m.group(0)), text)
    text = _HYPHEN.sub(" ", text)
    return text.lower()


#: What joins a compound's parts inside the Analyzer (a private-use character).
COMPOUND_JOIN = "\ue000"
_COMPOUND_MARK = re.compile(COMPOUND_JOIN)


#: Longest term: a word and a two-word compound ("test-time scaling").
MAX_NGRAM = 3
_BREAK = re.compile(r"[.,;:!?()\[\]\"|]+(?:\s|$)|[()\[\]\"|]")


class Analyzer:
    """Unigrams and bigrams of cleaned text; bigrams never cross punctuation (so "models
    (LLMs)" gives no "models llms") but do bridge dropped stop words ("chain thought")."""

    def __init__(self, stop_words: frozenset[str]):
        self.stop_words = stop_words

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        stop = self.stop_words
        for segment in _BREAK.split(clean(text, keep_compounds=True)):
            # units: plain words, and hyphenated compounds as one unit ("test-time" ->
            # "test time"), so a bigram never straddles a compound's edge ("scaling
            # test-time" gives "scaling test time", not "scaling test")
            units: list[list[str]] = []
            for chunk in segment.split():
                words = [
                    w
                    for part in _COMPOUND_MARK.split(chunk)
                    for w in _TOKEN.findall(part)
                    if w not in stop
                ]
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


def tokens(text: str) -> list[str]:
    """The unigram tokens of already cleaned text (the same rule as the vectoriser)."""
    return _TOKEN.findall(text)


def display_form(term: str, raw_texts: list[str], stop_words: frozenset[str]) -> str:
    """How the papers mostly write a multi-word term: ``test time`` -> ``test-time``,
    ``chain thought`` -> ``chain-of-thought`` (stop words the vectoriser dropped come back),
    ``scaling test time`` -> ``scaling test-time``."""
    parts = term.split()
    if len(parts) < 2:
        return _prefixed(term, raw_texts)
    gap = r"((?:[\s-]+[^\W\d_]+){0,2}?)[\s-]+"
    body = gap.join(re.escape(p) for p in parts)
    pattern = re.compile(rf"(?<![\w-])(?:[^\W_]-)?{body}(?![\w-])(?:[\s-]+([^\W\d_]+))?", re.I)
    last = len(parts)  # the group of the word after the term
    forms: dict[str, int] = {}
    after: dict[str, int] = {}
    total = 0
    for text in raw_texts:
        text = clean_for_display(text)
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


def _prefixed(term: str, raw_texts: list[str]) -> str:
    """A unigram the papers mostly write after a one-character prefix the tokeniser drops:
    ``adic`` -> ``p-adic``."""
    pattern = re.compile(rf"(?<![\w-])(?:([^\W_])-)?{re.escape(term)}(?![\w-])", re.I)
    forms: dict[str, int] = {}
    for text in raw_texts:
        for m in pattern.finditer(clean_for_display(text)):
            key = f"{m.group(1).lower()}-{term}" if m.group(1) else term
            forms[key] = forms.get(key, 0) + 1
    if not forms:
        return term
    return max(forms.items(), key=lambda kv: (kv[1], kv[0] == term, kv[0]))[0]


def clean_for_display(text: str) -> str:
    """URLs and LaTeX out, case and hyphens kept."""
    text = _URL.sub(" ", text)
    text = _MATH.sub(" ", text)
    return _LATEX_CMD.sub(" ", text)
