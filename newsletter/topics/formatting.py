"""format_digest: a Digest as plain terminal text (what `newsletter digest` prints)."""

from __future__ import annotations

import textwrap

from newsletter.models import Digest, Paper, Pick, Topic


def _authors(p: Paper, limit: int = 3) -> str:
    if not p.authors:
        return ""
    names = ", ".join(p.authors[:limit])
    return names + (" et al." if len(p.authors) > limit else "")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _pick_lines(pk: Pick, width: int) -> list[str]:
    p = pk.paper
    head = textwrap.wrap(
        _one_line(p.title) or p.id, width=width, initial_indent="  * ", subsequent_indent="    "
    )
    meta = [x for x in (_authors(p), p.url or p.id) if x]
    if p.upvotes is not None:
        meta.append(f"{p.upvotes} upvotes")
    meta.append(f"centrality {pk.centrality:.2f}, trending {pk.trending:.2f}")
    body = textwrap.wrap(
        " · ".join(meta), width=width, initial_indent="    ", subsequent_indent="    "
    )
    return head + body


def _topic_lines(n: int | None, t: Topic, width: int) -> list[str]:
    title = f"{n}. {t.label}" if n is not None else t.label
    lines = textwrap.wrap(
        f"{title} ({t.size} paper{'s' if t.size != 1 else ''})",
        width=width,
        subsequent_indent="   ",
    )
    if t.terms:
        lines += textwrap.wrap(
            "terms: " + ", ".join(t.terms),
            width=width,
            initial_indent="   ",
            subsequent_indent="   ",
        )
    for pk in t.picks:
        lines += _pick_lines(pk, width)
    if t.rest:
        lines.append(f"  also ({len(t.rest)}):")
        for p in t.rest:
            lines.append(
                textwrap.shorten(
                    "    - " + _one_line(p.title or p.id), width=width, placeholder=" …"
                )
            )
    return lines


def format_digest(digest: Digest, *, width: int = 100) -> str:
    """The digest as terminal text, lines at most ``width`` characters (long words aside)."""
    width = max(width, 40)
    head = f"Digest for {digest.issue_date.isoformat()}: {digest.paper_count} paper"
    head += "s" if digest.paper_count != 1 else ""
    head += f" in {len(digest.topics)} topic{'s' if len(digest.topics) != 1 else ''}"
    lines = [head]
    if digest.sources:
        lines += textwrap.wrap("sources: " + ", ".join(digest.sources), width=width)
    lines.append("=" * min(width, len(head)))
    if digest.is_empty:
        lines.append("No new papers.")
    if digest.watched is not None:
        lines += ["", *_topic_lines(None, digest.watched, width)]
    for n, t in enumerate(digest.topics, 1):
        lines += ["", *_topic_lines(n, t, width)]
    if digest.notes:
        lines += ["", "how this was built:"]
        for note in digest.notes:
            lines += textwrap.wrap(
                note, width=width, initial_indent="  - ", subsequent_indent="    "
            )
    return "\n".join(lines) + "\n"
