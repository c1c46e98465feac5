"""Matching the day's papers against stated keywords, authors and categories: pure, light.

Matching ignores case and accents ("Schrödinger" finds "schrodinger"), treats hyphens,
slashes and spaces alike ("test-time" finds "test time"), and takes whole words with an
optional plural on the last one ("transformer" finds "transformers", "RL" never "URL").
A ``DayIndex`` is built once per day and answers every subscriber's questions from it.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Protocol


def fold(text: str) -> str:
    """Case and accents removed, compatibility forms unified ("ﬁ" -> "fi", "É" -> "e")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


_NOT_NAME = re.compile(r"[^\w\s]+")


def name_key(name: str) -> str:
    """An author's name folded for comparison: "Jürgen  Schmidhuber" -> "jurgen schmidhuber",
    "LeCun, Yann" -> "yann lecun", "Y.-A. Le" -> "y a le"."""
    name = fold(name)
    last, comma, first = name.partition(",")
    if comma and "," not in first:  # "Last, First"
        name = f"{first} {last}"
    return " ".join(_NOT_NAME.sub(" ", name).split())


def same_author(wanted: str, written: str) -> bool:
    """Whether ``written`` (a paper's author) is ``wanted`` (a subscriber's); both name_key()s.

    The family name (last word) must be equal; the subscriber's given names, when they give
    any, must agree with the paper's first ones, an initial on either side standing for any
    name with that letter: "y lecun" is "yann lecun", "lecun" is any LeCun.
    """
    a, b = wanted.split(), written.split()
    if not a or not b or a[-1] != b[-1]:
        return False
    given_a, given_b = a[:-1], b[:-1]
    if len(given_a) > len(given_b):
        return False
    return all(
        x == y or ((len(x) == 1 or len(y) == 1) and x[0] == y[0])
        for x, y in zip(given_a, given_b, strict=False)
    )


_JOIN = r"[\s\-\u2010\u2011\u2013/]+"


def keyword_pattern(keyword: str) -> re.Pattern[str] | None:
    """A pattern over fold()ed text: the keyword's words in order with any run of spaces,
    hyphens or slashes between them; whole words ("C++" is taken literally)."""
    words = [w for w in re.split(_JOIN, fold(keyword)) if w]
    if not words:
        return None
    body = _JOIN.join(map(re.escape, words))
    last = words[-1]
    # a plural only after a real word: "GAN" finds "GANs", "ga" does not find "gas"
    plural = "(?:e?s)?" if len(last) >= 3 and last[-1].isalpha() else ""
    start = r"(?<!\w)" if re.match(r"\w", words[0]) else ""
    end = r"(?!\w)" if re.search(r"\w$", last) else ""
    return re.compile(start + body + plural + end)


def title_key(title: str) -> str:
    """A title folded for "is this the same paper": case, accents, punctuation ignored."""
    return " ".join(re.findall(r"\w+", fold(title)))


class _Paper(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def abstract(self) -> str: ...
    @property
    def authors(self) -> tuple[str, ...]: ...
    @property
    def categories(self) -> tuple[str, ...]: ...
    @property
    def arxiv_id(self) -> str | None: ...
    @property
    def doi(self) -> str | None: ...


#: Between two papers' texts in the day's blob: no keyword pattern can match across it.
_SEPARATOR = "\n\x00\n"


class DayIndex:
    """The day's papers indexed for keyword, author, category and identity look-ups.

    Answers are tuples of paper positions (ascending) or {position: as the paper writes it}.
    A keyword's answer is computed once per day and shared by every subscriber asking.
    """

    def __init__(self, papers: Sequence[_Paper]):
        texts = [fold(f"{p.title}\n{p.abstract}") for p in papers]
        self._blob = _SEPARATOR.join(texts)
        self._starts: list[int] = []
        at = 0
        for t in texts:
            self._starts.append(at)
            at += len(t) + len(_SEPARATOR)
        self._keywords: dict[str, tuple[int, ...]] = {}
        self._families: dict[str, list[tuple[int, str, str]]] = {}
        self._names: dict[str, list[tuple[int, str]]] = {}
        self._categories: dict[str, dict[int, str]] = {}
        self._ids: dict[str, int] = {}
        self._titles: dict[str, list[int]] = {}
        for i, p in enumerate(papers):
            for written in p.authors:
                key = name_key(written)
                if key:
                    self._families.setdefault(key.split()[-1], []).append((i, key, written))
                    self._names.setdefault(key, []).append((i, written))
            for c in p.categories:
                self._categories.setdefault(c.casefold(), {}).setdefault(i, c)
            for ident in _identities(p.id, p.arxiv_id, p.doi):
                self._ids.setdefault(ident, i)
            if tk := title_key(p.title):
                self._titles.setdefault(tk, []).append(i)

    def keyword(self, keyword: str) -> tuple[int, ...]:
        """Positions of the papers whose title or abstract mention ``keyword``."""
        pattern = keyword_pattern(keyword)
        if pattern is None:
            return ()
        if pattern.pattern not in self._keywords:
            found = {
                bisect.bisect_right(self._starts, m.start()) - 1
                for m in pattern.finditer(self._blob)
            }
            self._keywords[pattern.pattern] = tuple(sorted(found))
        return self._keywords[pattern.pattern]

    def author(self, name: str) -> dict[int, str]:
        """Papers by the subscriber's author ``name`` (see same_author), with the paper's
        spelling of the name."""
        wanted = name_key(name)
        if not wanted:
            return {}
        out: dict[int, str] = {}
        for i, key, written in self._families.get(wanted.split()[-1], ()):
            if i not in out and same_author(wanted, key):
                out[i] = written
        return out

    def coauthors(self, names: Iterable[str]) -> dict[int, list[str]]:
        """Papers with any of ``names`` (exact names, case and accents aside: a library's
        authors are full names, and an initial would match too many people) among their
        authors, with the paper's spellings of the ones found."""
        out: dict[int, list[str]] = {}
        for key in sorted({name_key(n) for n in names} - {""}):
            for i, written in self._names.get(key, ()):
                if written not in out.setdefault(i, []):
                    out[i].append(written)
        return out

    def category(self, category: str) -> dict[int, str]:
        """Papers filed (primary or cross-listed) under ``category``, as the paper writes it."""
        return self._categories.get(category.strip().casefold(), {})

    def copies(self, papers: Iterable[_LibraryEntry]) -> set[int]:
        """Positions of the day's papers that are one of ``papers``: the same id, or the same
        title (a journal version kept by DOI is the day's arXiv preprint of it)."""
        out: set[int] = set()
        for p in papers:
            out.update(self._ids[i] for i in _identities(p.id) if i in self._ids)
            if tk := title_key(p.title):
                out.update(self._titles.get(tk, ()))
        return out


class _LibraryEntry(Protocol):
    @property
    def id(self) -> str | None: ...
    @property
    def title(self) -> str: ...


def _identities(
    ident: str | None, arxiv_id: str | None = None, doi: str | None = None
) -> list[str]:
    """The forms under which a paper can be named: its canonical id, and an arXiv id or DOI
    in canonical form (an arXiv id with its version dropped, a DOI in lower case)."""
    out: list[str] = []
    if ident:
        kind, _, value = ident.partition(":")
        if kind == "arxiv":
            out.append("arxiv:" + re.sub(r"v\d+$", "", value))
        elif kind == "doi":
            out.append("doi:" + value.lower())
        else:
            out.append(ident)
    if arxiv_id:
        out.append("arxiv:" + re.sub(r"v\d+$", "", arxiv_id))
    if doi:
        out.append("doi:" + doi.lower())
    return out
