"""Topics: the day's papers grouped into labelled sections with representative picks.

``build_digest`` is pure (no I/O, clock or global random state). scikit-learn is imported
only when it runs, so importing this package (and ``newsletter --help``) stays light.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from newsletter.config import TopicSettings
from newsletter.models import Digest, Edition, Paper
from newsletter.topics.formatting import format_digest

__all__ = ["build_digest", "format_digest"]


def build_digest(
    papers: Sequence[Paper],
    *,
    issue_date: dt.date,
    settings: TopicSettings,
    sources: tuple[str, ...] = (),
    edition: Edition = Edition.DAILY,
) -> Digest:
    """Group ``papers`` into topics, label them, pick representatives: see docs/topics.md.

    The same papers (in any order, duplicates by id merged) and settings give the same
    Digest.  A weekly edition's picks weigh what stayed trending over the week.
    """
    from newsletter.topics.build import build_digest as build  # heavy: numpy, scikit-learn

    return build(papers, issue_date=issue_date, settings=settings, sources=sources, edition=edition)
