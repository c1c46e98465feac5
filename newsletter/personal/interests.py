"""What one subscriber asked for (their interests), and what "For you" gives them back.

Plain frozen data, free of heavy imports: the CLI, the web pages and the renderer use these
without loading numpy. The ranking itself is in ``newsletter.personal.rank``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from newsletter.models import Paper
from newsletter.personal.match import fold, name_key


@dataclass(frozen=True, slots=True)
class LibraryPaper:
    """A paper a subscriber keeps: what the ranking learns their taste from.

    ``id`` is canonical like ``Paper.id`` (``arxiv:2401.01234``, ``doi:10.1/x``) when known:
    the day's copy of a library paper is never recommended back to its owner (papers
    without an id are recognised by their title).
    """

    title: str
    abstract: str = ""
    id: str | None = None
    authors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Interests:
    """What one subscriber asked for. ``Interests.of`` builds a cleaned one."""

    keywords: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()  # arXiv categories, e.g. "cs.IR"
    library: tuple[LibraryPaper, ...] = ()

    @classmethod
    def of(
        cls,
        keywords: Iterable[str] = (),
        authors: Iterable[str] = (),
        categories: Iterable[str] = (),
        library: Iterable[LibraryPaper] = (),
    ) -> Interests:
        """Whitespace collapsed, blank entries and duplicates (as they are matched: case
        and accents ignored) dropped. The subscriber's order is kept: it decides which
        keyword a reason names first."""
        return cls(
            _unique(keywords, fold),
            _unique(authors, name_key),
            _unique(categories, str.casefold),
            tuple(dict.fromkeys(p for p in library if p.title.strip() or p.abstract.strip())),
        )

    @property
    def is_empty(self) -> bool:
        return not (self.keywords or self.authors or self.categories or self.library)


def _unique(values: Iterable[str], key: Callable[[str], str]) -> tuple[str, ...]:
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        value = " ".join(value.split())
        k = key(value)
        if k and k not in seen:
            seen.add(k)
            out.append(value)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SubscriberInterests:
    """A subscriber's interests as the store keeps them: what ``rank`` takes (the library
    papers with a text, in the subscriber's order), whether they want "For you" alone, and
    the library papers still known by id alone (they count once their text is found)."""

    interests: Interests = Interests()
    only_for_you: bool = False
    waiting: tuple[str, ...] = ()  # canonical ids, in the subscriber's order

    @property
    def library_size(self) -> int:
        return len(self.interests.library) + len(self.waiting)

    @property
    def is_empty(self) -> bool:
        return self.interests.is_empty and not self.waiting and not self.only_for_you


@dataclass(frozen=True, slots=True)
class ForYouPick:
    """One paper of a subscriber's "For you", with the one line saying why it is there."""

    paper: Paper
    score: float  # what ranked it (higher first); comparable within one subscriber's day
    reason: str  # e.g. "mentions 'retrieval'; close to 3 papers in your library"


@dataclass(frozen=True, slots=True)
class ForYou:
    """One subscriber's share of one issue: their picks, and how much each topic suits them."""

    picks: tuple[ForYouPick, ...] = ()
    #: per topic given to prepare_day, in that order; all 0.0 when nothing is known of them
    topic_affinity: tuple[float, ...] = ()
