"""One subscriber's view of a day's digest: their "For you" picks and their topic order, and
the text `newsletter digest --as` prints. Pure: the digest and the interests in, text out.
"""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass

from newsletter.models import Digest, Paper
from newsletter.personal.interests import ForYou, SubscriberInterests


@dataclass(frozen=True, slots=True)
class PersonalDigest:
    """The day as one subscriber gets it."""

    digest: Digest  # its topics in the subscriber's order (affinity, highest first)
    for_you: ForYou
    count: int  # the picks asked for (render.for_you); 0: no "For you" section
    interests: SubscriberInterests


def digest_papers(digest: Digest) -> list[Paper]:
    """Every paper the digest carries, once, by id: the order ``prepare_day`` takes."""
    topics = [*([digest.watched] if digest.watched else []), *digest.topics]
    found = {p.id: p for t in topics for p in (*(pk.paper for pk in t.picks), *t.rest)}
    return [found[k] for k in sorted(found)]


def personal_digest(
    digest: Digest, interests: SubscriberInterests, *, count: int, seed: int
) -> PersonalDigest:
    """``digest`` seen by one subscriber: their best ``count`` papers with the reasons
    (``personal.rank``) and the topics in the order they care for them. ``seed``: the
    topics step's (``topics.seed``), so the day's vectors are the ones it used."""
    if interests.interests.is_empty:  # nothing to rank by: the digest as it is
        return PersonalDigest(digest, ForYou((), (0.0,) * len(digest.topics)), count, interests)
    from newsletter.personal.rank import order_topics, prepare_day, rank
    from newsletter.topics.vectorize import vectorize

    papers = digest_papers(digest)
    day = prepare_day(papers, vectorize(papers), topics=digest.topics, seed=seed)
    for_you = rank(day, interests.interests, count=count)
    ordered = order_topics(digest.topics, for_you.topic_affinity)
    return PersonalDigest(dataclasses.replace(digest, topics=ordered), for_you, count, interests)


def format_personal(seen: PersonalDigest, *, who: str, width: int = 100) -> str:
    """What `newsletter digest --as` prints: "For you", then the topics in the
    subscriber's order (or a line saying they read "For you" alone)."""
    from newsletter.topics import format_digest

    if seen.interests.interests.is_empty:
        head = (
            f'For you ({who}): no interests stated, so no "For you" and the topics in the '
            "digest's order (`newsletter subscribers set` states some)\n"
        )
    elif seen.count == 0:
        head = "For you: off (render.for_you = 0); the topics in their order\n"
    else:
        head = format_for_you(seen.for_you, who=who, width=width)
    if seen.interests.only_for_you:
        return head + f'\n{who} reads "For you" only: the topics are not in their email\n'
    return head + "\n" + format_digest(seen.digest, width=width)


def format_for_you(for_you: ForYou, *, who: str, width: int = 100) -> str:
    """The "For you" section as terminal text: each pick's title, the line saying why, its
    authors and id."""
    width = max(width, 40)
    n = len(for_you.picks)
    head = f"For you ({who}): {n} paper{'s' if n != 1 else ''}"
    lines = [head, "=" * min(width, len(head))]
    if not n:
        lines.append("Nothing of today's papers matches their interests.")
    for i, pick in enumerate(for_you.picks, 1):
        p = pick.paper
        lines += textwrap.wrap(
            " ".join(p.title.split()) or p.id,
            width=width,
            initial_indent=f"{i:>2}. ",
            subsequent_indent="    ",
        )
        lines += textwrap.wrap(
            f"why: {pick.reason}", width=width, initial_indent="    ", subsequent_indent="      "
        )
        authors = ", ".join(p.authors[:3]) + (" et al." if len(p.authors) > 3 else "")
        meta = " · ".join(x for x in (authors, p.url or p.id) if x)
        lines += textwrap.wrap(meta, width=width, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines) + "\n"
