"""Plain text for the emails and pages: one safe line of it, a snippet cut where a reader
expects the cut, and dates in words.  Pure."""

from __future__ import annotations

import datetime as dt
import re

# C0/C1 controls (CR, LF, NUL, ESC, ...), line/paragraph separators, bidi overrides.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SENTENCE_END = re.compile(r"[.!?](?=\s)")
_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def clean(value: str, *, neutralise: bool) -> str:
    """One line of plain text: control, line-break and bidi-override characters become
    spaces, runs of whitespace collapse.  ``neutralise`` breaks up "%%" so feed text can
    never contain a placeholder token (:mod:`newsletter.placeholders`)."""
    if not value:
        return ""
    value = " ".join(_UNSAFE_CHARS.sub(" ", value).split())
    if neutralise and "%%" in value:
        while "%%" in value:
            value = value.replace("%%", "%\u200b%")
    return value


def snippet(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, at a sentence end if one falls in the
    second half, else at a word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    window = text[: limit + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends and ends[-1] >= limit // 2:
        return text[: ends[-1]]
    cut = window[:limit].rsplit(" ", 1)[0] if " " in window[:limit] else window[: limit - 1]
    return cut.rstrip(" ,;:-\u2014\u2013") + "…"  # no dangling punctuation or dashes


def weekday(d: dt.date) -> str:
    """The day's name ("Friday") in English whatever the machine's locale
    (``strftime("%A")`` follows LC_TIME; the emails, pages and messages are English)."""
    return _WEEKDAYS[d.weekday()]


def day_month_year(d: dt.date) -> str:
    """``20 April 2026``, in English whatever the locale."""
    return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"


def long_date(d: dt.date) -> str:
    """The date as an email, a page or a subject line shows it: "Friday, 14 March 2025"."""
    return f"{weekday(d)}, {day_month_year(d)}"
