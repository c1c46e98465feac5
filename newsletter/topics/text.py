"""Text cleaning and tokenising for topic vectors: pure, and free of heavy imports."""

from __future__ import annotations

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
    With ``known`` (the day's vocabulary), a word outside it is left out and no phrase
    spans it: such phrases are too rare to count, and counting them was most of the cost.
    """

    def __init__(self, stop_words: frozenset[str], known: frozenset[str] | None = None):
        self.stop_words = stop_words
        self.known = known

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        stop = self.stop_words
        known = self.known
        tok = _TOKEN.findall
        text = _drop_noise(text).replace("{", " ").replace("}", " ").replace("~", " ")
        for segment in _BREAK.split(text.lower()):
            prev, prev_n = "", 0  # the last unit of the segment and its word count
            for chunk in segment.split():
                if chunk.isalpha():  # most words: one token or none, no regex needed
                    if len(chunk) < 2 or chunk in stop:
                        continue
                    if known is not None and chunk not in known:
                        prev = ""  # a rare word: no phrase through it, none with it
                        continue
                    out.append(chunk)
                    if prev and prev_n < MAX_NGRAM:
                        out.append(f"{prev} {chunk}")
                    prev, prev_n = chunk, 1
                    continue
                for piece in _APART.split(chunk):
                    words = [w for part in _JOIN.split(piece) for w in tok(part) if w not in stop]
                    if not words:
                        continue
                    if known is not None and not all(w in known for w in words):
                        prev = ""
                        continue
                    out += words
                    unit = " ".join(words)
                    if len(words) > 1:
                        out.append(unit)
                    if prev and prev_n + len(words) <= MAX_NGRAM:
                        out.append(f"{prev} {unit}")
                    prev, prev_n = unit, len(words)
        return out


#: Words a phrase may hold between the words of its term: "chain of thought", "state of
#: the art". Not "and": "field and a character" is two things, not one name.
CONNECTORS = frozenset({"of", "the", "a", "an", "for", "to", "in", "on"})


def display_form(term: str, texts: Sequence[str], stop_words: frozenset[str]) -> str:
    """How the papers mostly write a term, case included: ``test time`` -> ``test-time``,
    ``chain thought`` -> ``chain-of-thought`` (stop words the vectoriser dropped come back),
    ``llm inference`` -> ``LLM inference``, ``adic`` -> ``p-adic``; a word nearly always
    after it (not one of ``stop_words``) joins it: ``large language`` -> ``large language
    models``. ``texts``: title, a line break, then the abstract (see clean_for_display).
    "" when the papers never write it with only CONNECTORS between its words: a bigram the
    tokeniser made across a dropped word ("inference llm" from "inference system for LLM")
    is no phrase."""
    parts = term.split()
    gap = r"((?:[\s-]+[^\W\d_]+){0,2}?)[\s-]+"
    body = gap.join(re.escape(p) for p in parts)
    pattern = re.compile(rf"(?<![\w-])(?:[^\W_]-)?{body}(?![\w-])(?:[\s-]+([^\W\d_]+))?", re.I)
    last = len(parts)  # the group of the word after the term
    votes: dict[str, dict[str, int]] = {}  # form in lower case -> cased form -> votes
    after: dict[str, int] = {}
    total = 0
    for text in texts:
        if parts[0] not in text.lower():
            continue
        title_end = text.find("\n")
        for m in pattern.finditer(text):
            middles = m.groups()[: last - 1]
            if not all(
                w.lower() in CONNECTORS for mid in middles for w in mid.replace("-", " ").split()
            ):
                continue
            end = m.start(last) if m.group(last) else m.end()
            form = " ".join(text[m.start() : end].split()).rstrip(" -")
            cased, weight = _cased(form, text, m.start(), title_end)
            forms = votes.setdefault(form.lower(), {})
            forms[cased] = forms.get(cased, 0) + weight
            total += 1
            if m.group(last):
                nxt = m.group(last)
                after[nxt] = after.get(nxt, 0) + 1
    if not votes:
        return ""
    best = max(votes, key=lambda f: (sum(votes[f].values()), f == term, f))
    shown = _case(best, votes[best])
    # "large language" is nearly always followed by "models", "natural" by "language": show
    # the phrase people say
    if after and len(parts) < MAX_NGRAM:
        nxt, count = _next_word(after)
        if count >= 3 and count >= 0.7 * total and nxt.lower() not in stop_words and len(nxt) > 2:
            shown = f"{shown} {nxt}"
    return shown


def _next_word(after: dict[str, int]) -> tuple[str, int]:
    """The word that follows most often, counting its forms together ("plasma" and
    "plasmas", "LLM" and "LLMs"), shown as most write it; and how often."""
    from newsletter.topics.metrics import stem

    by_stem: dict[str, dict[str, int]] = {}
    for word, n in after.items():
        forms = by_stem.setdefault(stem(word), {})
        forms[word] = forms.get(word, 0) + n
    forms = max(by_stem.values(), key=lambda f: (sum(f.values()), max(f)))
    word = max(forms.items(), key=lambda kv: (kv[1], kv[0]))[0]
    return _lower_unless_acronym(word), sum(forms.values())


_SENTENCE_END = frozenset(".!?:\n")


def _cased(form: str, text: str, start: int, title_end: int) -> tuple[str, int]:
    """A vote for how ``form`` is written: as is in the middle of an abstract's sentence
    (weight 2); in a title or at a sentence start only its acronyms keep their capitals
    ("Test-Time Scaling for LLMs" votes "test-time scaling for LLMs"), weight 1."""
    before = text[:start].rstrip(" \t")
    if start > title_end >= 0 and before and before[-1] not in _SENTENCE_END:
        return form, 2
    return " ".join(_lower_unless_acronym(w) for w in form.split(" ")), 1


def _case(form: str, votes: dict[str, int]) -> str:
    """Word by word, the case the votes give ``form``: an acronym as most write it ("LLM",
    "NeRF"), a capital initial only when at least 3 in 4 votes have it ("Bayesian"; not
    "Neural Networks", which some abstracts write when they introduce "NNs")."""
    words = form.split(" ")
    out = []
    for i, word in enumerate(words):
        seen: dict[str, int] = {}
        for cased, weight in votes.items():
            w = cased.split(" ")[i] if len(cased.split(" ")) == len(words) else word
            seen[w] = seen.get(w, 0) + weight
        total = sum(seen.values())
        top = max(seen.items(), key=lambda kv: (kv[1], kv[0] == word, kv[0]))[0]
        if _lower_unless_acronym(top) != top.lower():  # an acronym, however it is voted
            out.append(top)
        elif sum(v for w, v in seen.items() if w != w.lower()) >= 0.75 * total:
            out.append(max((w for w in seen if w != w.lower()), key=lambda w: (seen[w], w)))
        else:
            out.append(word)
    return " ".join(out)


def _lower_unless_acronym(word: str) -> str:
    """ "LLMs", "GPT-4", "NeRF" keep their case; "Test-Time" and "Scaling" do not."""
    return "-".join(
        p if sum(c.isupper() for c in p) >= 2 or any(c.isupper() for c in p[1:]) else p.lower()
        for p in word.split("-")
    )


_DANGLING = re.compile(r"(?<!\w)-+|-+(?!\w)")


def clean_for_display(text: str) -> str:
    """URLs and LaTeX out, case and hyphens kept (but not one left hanging where math was:
    "$L$-functions"): what display_form reads."""
    return _DANGLING.sub(" ", _drop_noise(text))
