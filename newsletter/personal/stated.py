"""Stated interests as a subscriber types them (keywords, authors, arXiv categories): checked
and cleaned, and what a change of them replaces. Pure, light: the CLI, the CSV import and the
web pages share these checks.

A value that could only be a mistake (blank, a control character, a category arXiv does not
have, a keyword with nothing to match) is refused with a ``BadInterest`` naming it, rather
than stored and silently matching nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from newsletter.errors import NewsletterError
from newsletter.personal.interests import LibraryPaper
from newsletter.personal.match import fold, keyword_pattern, name_key

#: Most keywords, authors and categories a subscriber states (each); longest one, in characters.
MAX_KEYWORDS = 50
MAX_AUTHORS = 50
MAX_CATEGORIES = 50
MAX_CHARS = 100
#: What separates values in one CSV cell (and in the web form's fields): no value holds it.
SEPARATOR = ";"

#: arXiv's archives that are split into subject classes ("cs.IR"), and the ones that are
#: categories by themselves ("hep-th"): https://arxiv.org/category_taxonomy
ARCHIVES_WITH_SUBJECTS = frozenset(
    {
        "astro-ph",
        "cond-mat",
        "cs",
        "econ",
        "eess",
        "math",
        "nlin",
        "physics",
        "q-bio",
        "q-fin",
        "stat",
    }
)
ARCHIVES_ALONE = frozenset(
    {"gr-qc", "hep-ex", "hep-lat", "hep-ph", "hep-th", "math-ph", "nucl-ex", "nucl-th", "quant-ph"}
)
_CATEGORY = re.compile(r"^([a-z]+(?:-[a-z]+)?)(?:\.([a-z]+(?:-[a-z]+)?))?$", re.IGNORECASE)


class BadInterest(NewsletterError):
    """A keyword, author or category that cannot be used; nothing of the change is stored."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class InterestsChange:
    """A change to a subscriber's interests: each field given replaces that part of them, a
    field left ``None`` keeps what is stored. The lists are cleaned (see ``change``)."""

    keywords: tuple[str, ...] | None = None
    authors: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None
    library: tuple[LibraryPaper, ...] | None = None
    only_for_you: bool | None = None

    @classmethod
    def clear(cls) -> InterestsChange:
        """Everything emptied, the subscriber back to the whole digest."""
        return cls((), (), (), (), False)

    @property
    def is_empty(self) -> bool:
        """Nothing to change."""
        return all(
            v is None
            for v in (self.keywords, self.authors, self.categories, self.library, self.only_for_you)
        )


def change(
    *,
    keywords: Iterable[str] | None = None,
    authors: Iterable[str] | None = None,
    categories: Iterable[str] | None = None,
    library: Iterable[LibraryPaper] | None = None,
    only_for_you: bool | None = None,
    base: InterestsChange | None = None,
) -> InterestsChange:
    """An ``InterestsChange`` of the values given (``None``: keep that part), each list
    checked and cleaned; ``base``'s fields stand where none is given. Raises
    ``BadInterest`` naming the first bad value."""
    base = base or InterestsChange()
    return InterestsChange(
        base.keywords if keywords is None else clean_keywords(keywords),
        base.authors if authors is None else clean_authors(authors),
        base.categories if categories is None else clean_categories(categories),
        base.library if library is None else tuple(library),
        base.only_for_you if only_for_you is None else only_for_you,
    )


def split(cell: str) -> list[str]:
    """The values of one CSV cell or form field: ``;``-separated, blanks dropped."""
    return [v for v in cell.split(SEPARATOR) if v.strip()]


def join(values: Iterable[str]) -> str:
    """The values as one CSV cell: what ``split`` reads back."""
    return f"{SEPARATOR} ".join(values)


def clean_keywords(values: Iterable[str]) -> tuple[str, ...]:
    """Keywords, checked: each must have something to match ("C++" does; "--" does not)."""

    def check(value: str) -> str | None:
        return None if keyword_pattern(value) else "has no letter or digit to match"

    return _clean("keyword", values, check, fold, MAX_KEYWORDS)


def clean_authors(values: Iterable[str]) -> tuple[str, ...]:
    """Author names ("Yann LeCun", "LeCun, Y.", "LeCun")."""

    def check(value: str) -> str | None:
        return None if name_key(value) else "has no letter to match"

    return _clean("author", values, check, name_key, MAX_AUTHORS)


def clean_categories(values: Iterable[str]) -> tuple[str, ...]:
    """arXiv categories in arXiv's spelling ("cs.IR", "hep-th", "physics.optics"), whatever
    the case they were typed in."""
    return _clean(
        "category", (category(_plain("category", v)) for v in values), None, str, MAX_CATEGORIES
    )


def category(value: str) -> str:
    """One arXiv category in arXiv's spelling; ``BadInterest`` for anything else."""
    m = _CATEGORY.match(value.strip())
    archive, subject = (m.group(1).lower(), m.group(2)) if m else ("", None)
    if subject is None and archive in ARCHIVES_ALONE:
        return archive
    if subject is not None and archive in ARCHIVES_WITH_SUBJECTS:
        # arXiv writes two-letter subject classes in capitals (cs.IR, math.AG, astro-ph.GA)
        # and the longer ones in lower case (physics.optics, cond-mat.stat-mech)
        return f"{archive}.{subject.upper() if len(subject) == 2 else subject.lower()}"
    if subject is None and archive in ARCHIVES_WITH_SUBJECTS:
        raise BadInterest(
            f"category {_shown(value)} is an arXiv archive, not a category: give one of its "
            f"categories ({archive}.XX, listed at arxiv.org/category_taxonomy)"
        )
    raise BadInterest(
        f"category {_shown(value)} is not an arXiv category such as cs.IR, math.AG or hep-th"
    )


def _clean(
    what: str,
    values: Iterable[str],
    check: Callable[[str], str | None] | None,
    key: Callable[[str], str],
    most: int,
) -> tuple[str, ...]:
    """The values checked, each once (as ``key`` compares them: as they are matched), in
    the order given; ``BadInterest`` at the first bad one, or when there are too many."""
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        value = _plain(what, value)
        problem = check(value) if check else None
        if problem:
            raise BadInterest(f"{what} {_shown(value)} {problem}")
        if key(value) not in seen:
            seen.add(key(value))
            out.append(value)
    if len(out) > most:
        raise BadInterest(f"{len(out)} {what}s; at most {most} can be stated")
    return tuple(out)


def _plain(what: str, value: str) -> str:
    """``value`` with its whitespace collapsed; ``BadInterest`` if it is blank, too long, or
    holds a control character or the separator."""
    cleaned = " ".join(value.split())
    if not cleaned:
        only = " (it holds only control characters)" if value.strip(" ") else ""
        raise BadInterest(f"{what} {_shown(value)} is blank{only}")
    for c in cleaned:
        if not c.isprintable():
            raise BadInterest(f"{what} {_shown(value)} holds the control character U+{ord(c):04X}")
    if SEPARATOR in cleaned:
        raise BadInterest(
            f"{what} {_shown(value)} holds a {SEPARATOR!r}, which separates {what}s in a "
            f"list: give each {what} on its own"
        )
    if len(cleaned) > MAX_CHARS:
        raise BadInterest(f"{what} {_shown(value)} is longer than {MAX_CHARS} characters")
    return cleaned


def _shown(value: str) -> str:
    """``value`` quoted for a message: escapes visible, at most some 40 characters."""
    return repr(value if len(value) <= 40 else value[:39] + "…")
