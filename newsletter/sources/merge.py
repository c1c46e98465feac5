"""Merge two records of one paper seen in different feeds (pure)."""

from __future__ import annotations

import dataclasses

from newsletter.models import Paper


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return a + tuple(x for x in b if x not in a)


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def merge_paper(old: Paper, new: Paper) -> Paper:
    """The first record wins where both have a value; gaps are filled from the second.

    Trending signals keep the highest count seen (a later Hugging Face pull carries more
    upvotes than an earlier one); categories and keywords are unioned in first-seen order.
    """
    if old.id != new.id:
        raise ValueError(f"cannot merge {old.id} with {new.id}")
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
