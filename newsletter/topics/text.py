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
#: A token: a letter followed by at least one letter or digit ("3d" and "2025" are not terms).
TOKEN_PATTERN = r"(?u)\b[^\W\d_][^\W_]+\b"
_TOKEN = re.compile(TOKEN_PATTERN)


def clean(text: str) -> str:
    """Lower-case text with URLs, LaTeX math and commands removed, hyphens made spaces.

    Hyphenated and spaced variants ("test-time" / "test time") become the same bigram.
    """
    text = _URL.sub(" ", text)
    text = _MATH.sub(" ", text)
    text = _LATEX_CMD.sub(" ", text)
    text = text.replace("{", " ").replace("}", " ").replace("~", " ")
    text = _HYPHEN.sub(" ", text)
    return text.lower()


_BREAK = re.compile(r"[.,;:!?()\[\]\"|]+(?:\s|$)|[()\[\]\"|]")


class Analyzer:
    """Unigrams and bigrams of cleaned text; bigrams never cross punctuation (so "models
    (LLMs)" gives no "models llms") but do bridge dropped stop words ("chain thought")."""

    def __init__(self, stop_words: frozenset[str]):
        self.stop_words = stop_words

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        stop = self.stop_words
        for segment in _BREAK.split(clean(text)):
            words = [w for w in _TOKEN.findall(segment) if w not in stop]
            out += words
            out += [f"{a} {b}" for a, b in itertools.pairwise(words)]
        return out


def tokens(text: str) -> list[str]:
    """The unigram tokens of already cleaned text (the same rule as the vectoriser)."""
    return _TOKEN.findall(text)


def display_form(term: str, raw_texts: list[str], stop_words: frozenset[str]) -> str:
    """How the papers mostly write a bigram: ``test time`` -> ``test-time``,
    ``chain thought`` -> ``chain-of-thought`` (stop words the vectoriser dropped come back)."""
    parts = term.split()
    if len(parts) != 2:
        return term
    a, b = (re.escape(p) for p in parts)
    pattern = re.compile(
        rf"(?<![\w-]){a}((?:[\s-]+[^\W\d_]+){{0,2}}?)[\s-]+{b}(?![\w-])(?:[\s-]+([^\W\d_]+))?",
        re.I,
    )
    forms: dict[str, int] = {}
    after: dict[str, int] = {}
    total = 0
    for text in raw_texts:
        for m in pattern.finditer(clean_for_display(text)):
            middle = m.group(1).replace("-", " ").split()
            if all(w.lower() in stop_words for w in middle):
                end = m.end(2) if m.group(2) else m.end()
                form = " ".join(
                    m.group(0)[: end - m.start() - (len(m.group(2)) if m.group(2) else 0)]
                    .lower()
                    .split()
                )
                form = form.rstrip(" -")
                forms[form] = forms.get(form, 0) + 1
                total += 1
                if m.group(2):
                    nxt = m.group(2).lower()
                    after[nxt] = after.get(nxt, 0) + 1
    if not forms:
        return term
    best = max(forms.items(), key=lambda kv: (kv[1], kv[0] == term, kv[0]))[0]
    # "large language" is nearly always followed by "models": show the phrase people say
    if after:
        nxt, count = max(after.items(), key=lambda kv: (kv[1], kv[0]))
        if count >= 3 and count >= 0.7 * total and nxt not in stop_words and len(nxt) > 2:
            best = f"{best} {nxt}"
    return best


def clean_for_display(text: str) -> str:
    """URLs and LaTeX out, case and hyphens kept."""
    text = _URL.sub(" ", text)
    text = _MATH.sub(" ", text)
    return _LATEX_CMD.sub(" ", text)
