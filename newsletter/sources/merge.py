"""Merge two records of one paper seen in different feeds, and tell when two records with
different ids are one paper (pure)."""

from __future__ import annotations

import dataclasses

from newsletter.models import Paper
from newsletter.sources.normalize import first_author_key, title_key

#: Titles this short ("Editorial", "Book review", "Erratum") name many papers: never matched.
MIN_TITLE_WORDS = 3


def identity_key(p: Paper) -> tuple[str, str] | None:
    """(folded title, first author's surname): two records with different ids and the same
    key are one paper (an arXiv id in one feed, a DOI or a plain link in another). None
    when the title is too short to tell."""
    if len(p.title.split()) < MIN_TITLE_WORDS:
        return None
    key = title_key(p.title)
    return (key, first_author_key(p.authors)) if key else None


def id_rank(paper_id: str) -> int:
    """Which id names a paper best when it has several: arXiv, then DOI, then a link."""
    for rank, prefix in enumerate(("arxiv:", "doi:")):
        if paper_id.startswith(prefix):
            return rank
    return 2


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return a + tuple(x for x in b if x not in a)


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def merge_paper(old: Paper, new: Paper) -> Paper:
    """The first record wins where both have a value (its id too: the caller has decided
    the two are one paper, by id or by identity_key); gaps are filled from the second.

    Trending signals keep the highest count seen (a later Hugging Face pull carries more
    upvotes than an earlier one); categories and keywords are unioned in first-seen order.
    """
    published = min((d for d in (old.published, new.published) if d is not None), default=None)
    return dataclasses.replace(
        old,
        title=old.title or new.title,
        abstract=old.abstract or new.abstract,
        authors=old.authors or new.authors,
        url=old.url or new.url,
        pdf_url=old.pdf_url or new.pdf_url,
        categories=_union(old.categories, new.categories),
        published=published,
        announced=old.announced or new.announced,
        announce_type=old.announce_type or new.announce_type,
        upvotes=_max(old.upvotes, new.upvotes),
        comments=_max(old.comments, new.comments),
        keywords=_union(old.keywords, new.keywords),
        arxiv_id=old.arxiv_id or new.arxiv_id,
        doi=old.doi or new.doi,
    )
