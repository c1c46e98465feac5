"""Which papers match the operator's watched keywords and authors."""

from __future__ import annotations

import re
from collections.abc import Sequence

from newsletter.models import Paper


def _keyword_pattern(keyword: str) -> re.Pattern[str] | None:
    words = keyword.split()
    if not words:
        return None
    # whole words or phrases: "RL" does not match "URL"; any whitespace between phrase words
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, words)) + r"(?!\w)", re.I)


def _name(name: str) -> str:
    return " ".join(name.split()).casefold()


def watched(
    papers: Sequence[Paper], keywords: Sequence[str], authors: Sequence[str]
) -> tuple[list[bool], tuple[str, ...]]:
    """Per paper whether it is watched, and the keywords/authors that matched something."""
    patterns = [(k, p) for k in keywords if (p := _keyword_pattern(k)) is not None]
    names = {_name(a): a for a in authors if a.strip()}
    flags: list[bool] = []
    hits: set[str] = set()
    for paper in papers:
        text = f"{paper.title}\n{paper.abstract}"
        found = [k for k, p in patterns if p.search(text)]
        found += [names[n] for a in paper.authors if (n := _name(a)) in names]
        hits.update(found)
        flags.append(bool(found))
    matched = tuple(k for k in (*keywords, *authors) if k in hits)
    return flags, tuple(dict.fromkeys(matched))
