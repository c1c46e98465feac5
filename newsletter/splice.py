"""The personal parts of a rendered issue: markers in the stored HTML and text, read back
into a layout that gives either the plain issue or one subscriber's copy by joining strings.

Pure: no I/O.  The issue is rendered once, with markers around what differs per subscriber:

* ``for-you``: a hole where their "For you" section goes (nothing for everyone else);
* ``topics`` ... ``/topics``: every topic (table of contents and sections), left out of a
  copy for a subscriber who reads "For you" alone;
* ``run`` ... ``/run``: consecutive items that can be put in another order, each
  ``t:N`` ... ``/t`` (the digest's topic N: its table-of-contents line, or its section);
* ``n`` ... ``/n``: a topic's number, which follows its place in the subscriber's order
  (``n:2``: padded to 2 characters, as ``%2d`` writes it).

In the HTML a marker is a comment, ``<!--nl:t:3-->`` (premailer and lxml keep comments where
they are); in the text it is ``%%NL:t:3%%`` ("%%" never survives in feed text, and the
per-subscriber placeholders are ``%%NL_NAME%%``, which these never match).  Removing every
marker gives the plain issue, byte for byte what the templates give without markers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from newsletter.models import PersonalCopy

Kind = Literal["html", "text"]

_SYNTAX: dict[Kind, tuple[str, str]] = {"html": ("<!--nl:", "-->"), "text": ("%%NL:", "%%")}
_NAME = r"(for-you|/?topics|/?run|t:\d+|/t|n(?::\d+)?|/n)"
_PATTERN: dict[Kind, re.Pattern[str]] = {
    kind: re.compile(re.escape(a) + _NAME + re.escape(b)) for kind, (a, b) in _SYNTAX.items()
}
#: Markers that open something (they stick to the line after them when alone on a line).
_OPENING = re.compile(r"for-you|topics|run|t:\d+|n(:\d+)?")


def marker(kind: Kind, name: str) -> str:
    """The marker ``name`` (``for-you``, ``t:3``, ``/t``, ...) as the ``kind`` body writes it."""
    a, b = _SYNTAX[kind]
    return f"{a}{name}{b}"


def has_markers(body: str, kind: Kind) -> bool:
    return _PATTERN[kind].search(body) is not None


def strip(body: str, kind: Kind) -> str:
    """``body`` without its markers: the plain issue."""
    return _PATTERN[kind].sub("", body)


# --------------------------------------------------------------------------- text layout


def tidy_text(text: str) -> str:
    """Trailing spaces and runs of blank lines removed, as the plain text wants them, with
    the text markers kept out of the way: a line holding nothing but markers lends them to
    the next line with text (opening markers) or the previous one (closing markers), so
    the lines, blank or not, are those of the text without markers."""
    pattern = _PATTERN["text"]
    lines = text.splitlines()
    out: list[str] = []
    waiting = ""  # opening markers for the next line with text
    for line in lines:
        bare = pattern.sub("", line)
        if bare.strip():
            out.append(waiting + _rstrip(line, pattern))
            waiting = ""
            continue
        for m in pattern.finditer(line):
            if _OPENING.fullmatch(m.group(1)):
                waiting += m.group(0)
            else:
                i = max((k for k, s in enumerate(out) if pattern.sub("", s).strip()), default=-1)
                if i < 0:
                    raise ValueError(f"closing marker {m.group(0)} before any text")
                out[i] += m.group(0)
        if not out or pattern.sub("", out[-1]).strip():
            out.append("")  # a blank line, kept once
    while out and not pattern.sub("", out[0]).strip():
        out.pop(0)
    while out and not pattern.sub("", out[-1]).strip():
        out.pop()
    if waiting:
        raise ValueError(f"opening markers {waiting} after the last text")
    return "\n".join(out) + "\n" if out else "\n"


def _rstrip(line: str, pattern: re.Pattern[str]) -> str:
    """The line without trailing spaces, also before the markers that end it."""
    tail = ""
    while True:
        line = line.rstrip()
        last = [m for m in pattern.finditer(line) if m.end() == len(line)]
        if not last:
            return line + tail
        tail = last[0].group(0) + tail
        line = line[: last[0].start()]


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True, slots=True)
class Number:
    """A topic's number as the plain issue shows it (its place in the digest), and the
    width it is padded to."""

    plain: str
    width: int = 0


@dataclass(frozen=True, slots=True)
class Item:
    topic: int  # the topic's place in the digest, 1-based
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Run:
    items: tuple[Item, ...]
    gaps: tuple[str, ...]  # what stands between places k and k + 1, whatever fills them


@dataclass(frozen=True, slots=True)
class Topics:
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Hole:
    """Where "For you" goes."""


Part = str | Number | Item | Run | Topics | Hole


@dataclass(frozen=True, slots=True)
class Layout:
    """A marked body read back; ``join`` gives the plain body or one subscriber's copy."""

    kind: Kind
    parts: tuple[Part, ...]
    personal: bool  # False: no markers (an operator's template without them, an old issue)

    @classmethod
    def of(cls, body: str, kind: Kind) -> Layout:
        tokens = _tokens(body, _PATTERN[kind])
        parts = _parse(tokens, None)
        if tokens:
            raise ValueError(f"unexpected marker {marker(kind, tokens[-1][1])}")
        return cls(kind, parts, any(not isinstance(p, str) for p in parts))

    def join(self, copy: PersonalCopy | None = None) -> str:
        """The plain body (``copy`` None), or one subscriber's."""
        return "".join(self.walk(copy))

    def walk(self, copy: PersonalCopy | None = None) -> Iterator[str]:
        """The body's pieces in order: the layout's own strings (the same objects every
        time, so a caller can keep an encoded form of each), and ``Fill``s, the text made
        for this copy."""
        section = Fill(copy.section(self.kind)) if copy is not None else None
        return _walk(self.parts, copy, section, 0)


class Fill(str):
    """Text made for one copy (a "For you" section, a topic's number), not from the layout."""

    __slots__ = ()


def _tokens(body: str, pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """[("text", s) | ("marker", name)], in order, reversed (popped from the end)."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in pattern.finditer(body):
        if m.start() > pos:
            out.append(("text", body[pos : m.start()]))
        out.append(("marker", m.group(1)))
        pos = m.end()
    if pos < len(body):
        out.append(("text", body[pos:]))
    out.reverse()
    return out


def _parse(tokens: list[tuple[str, str]], until: str | None) -> tuple[Part, ...]:
    parts: list[Part] = []
    while tokens:
        kind, value = tokens[-1]
        if kind == "text":
            tokens.pop()
            parts.append(value)
            continue
        if value == until:
            tokens.pop()
            return tuple(parts)
        if value.startswith("/"):
            break  # the caller's closing marker, or a stray one: the caller says which
        tokens.pop()
        if value == "for-you":
            parts.append(Hole())
        elif value == "topics":
            parts.append(Topics(_parse(tokens, "/topics")))
        elif value == "run":
            parts.append(_run(_parse(tokens, "/run")))
        elif value == "n" or value.startswith("n:"):
            inner = _parse(tokens, "/n")
            if not all(isinstance(p, str) for p in inner):
                raise ValueError("a number holds text only")
            width = int(value[2:]) if value.startswith("n:") else 0
            parts.append(Number("".join(inner), width))  # type: ignore[arg-type]
        else:
            parts.append(Item(int(value[2:]), _parse(tokens, "/t")))
    if until is not None:
        raise ValueError(f"{until} is missing")
    return tuple(parts)


def _run(parts: tuple[Part, ...]) -> Run:
    items: list[Item] = []
    gaps: list[str] = []
    for p in parts:
        if isinstance(p, Item):
            items.append(p)
        elif isinstance(p, str) and items:
            if len(gaps) == len(items):
                gaps[-1] += p
            else:
                gaps.append(p)
        else:
            raise ValueError("a run holds topic items, and text between them only")
    if len(gaps) == len(items) and items:
        raise ValueError("a run ends with its last item")
    return Run(tuple(items), tuple(gaps))


def _walk(
    parts: Sequence[Part], copy: PersonalCopy | None, section: Fill | None, place: int
) -> Iterator[str]:
    for p in parts:
        if isinstance(p, str):
            yield p
        elif isinstance(p, Hole):
            if section:
                yield section
        elif isinstance(p, Topics):
            if copy is None or not copy.only_for_you:
                yield from _walk(p.parts, copy, section, place)
        elif isinstance(p, Run):
            for k, item in enumerate(_ordered(p.items, copy)):
                if k:
                    yield p.gaps[k - 1]
                yield from _walk(item.parts, copy, section, k + 1)
        elif isinstance(p, Number):
            if copy is None or not place:
                yield p.plain
            else:
                yield Fill(str(place).rjust(p.width))
        else:  # an Item outside a run stays where it is
            yield from _walk(p.parts, copy, section, place)


def _ordered(items: tuple[Item, ...], copy: PersonalCopy | None) -> tuple[Item, ...]:
    """The items in the subscriber's order; any the order does not name follow, as they were."""
    if copy is None:
        return items
    by_topic = {item.topic: item for item in items}
    first = [by_topic.pop(t) for t in copy.order if t in by_topic]
    return (*first, *(i for i in items if i.topic in by_topic))
