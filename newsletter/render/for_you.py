"""A subscriber's "For you" section, as HTML (CSS inlined) and text, made per subscriber
without running premailer per subscriber.

Inlining costs 10 to 250 ms a document: far too much for thousands of different sections.
So the HTML template is rendered and inlined once per issue with stand-ins for the fields
(a pick with a link, one without, no pick), cut into pieces, and a subscriber's section is
those pieces with their fields filled in, escaped.  The text section needs no inlining and
is rendered per subscriber.  Pure: the same picks and settings give the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.errors import TemplateError
from newsletter.render import _environment, _markers, _paper_view, _plural, inline_css
from newsletter.splice import marker, tidy_text
from newsletter.templating import render
from newsletter.text import clean

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.personal.interests import ForYouPick

HTML_TEMPLATE = "_for_you.html.j2"
TEXT_TEMPLATE = "_for_you.txt.j2"

#: Stand-ins for the fields, filled per subscriber ("%%" never survives in feed text).
_FIELDS = ("title", "url", "meta", "reason", "count")
_STAND_IN = {f: f"%%NL_FY_{f.upper()}%%" for f in _FIELDS}
_STAND_IN_RE = re.compile("|".join(re.escape(s) for s in _STAND_IN.values()))
_SECTION = (marker("html", "section"), marker("html", "/section"))
_PICK = (marker("html", "pick"), marker("html", "/pick"))


@dataclass(frozen=True, slots=True)
class PickView:
    """One pick as the templates see it: cleaned, cut to length."""

    title: str
    url: str
    meta: str  # "A, B et al. · cs.IR"
    reason: str


def pick_views(picks: Sequence[ForYouPick], settings: Settings) -> tuple[PickView, ...]:
    out = []
    for pick in picks:
        view = _paper_view(pick.paper, 0, settings.render.max_authors)
        meta = " · ".join(x for x in (view.authors, view.tags) if x)
        reason = clean(pick.reason, neutralise=True) or "close to your interests"
        out.append(PickView(view.title, view.url, meta, reason))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Pieces:
    """The inlined section cut at its picks: head, then the picks joined by ``between``,
    then tail; ``empty`` when there is no pick."""

    head: str
    between: str
    tail: str
    empty: str


class ForYouRenderer:
    """Renders "For you" sections for one issue; build it once (it inlines CSS four times)."""

    def __init__(self, settings: Settings, *, web_url: str | None = None):
        self.settings = settings
        self.env = _environment(settings)
        self.web_url = clean(web_url or "", neutralise=False) or None
        css = render(self.env, "_style.css.j2", {})
        self._linked, self._unlinked, self._pieces = "", "", {}
        for only in (False, True):
            section = self._inlined(css, only, picks=True)
            head, picks, tail = _cut(section, _PICK, many=True)
            if len(picks) != 3:
                raise TemplateError(
                    f"{HTML_TEMPLATE}: each pick must be between mark('pick') and mark('/pick')"
                )
            self._linked, between, self._unlinked = picks
            empty = self._inlined(css, only, picks=False)
            self._pieces[only] = _Pieces(head, between, tail, empty)

    def _inlined(self, css: str, only: bool, *, picks: bool) -> str:
        title, url, meta, reason = (_STAND_IN[f] for f in ("title", "url", "meta", "reason"))
        # a pick with a link and one without: the two shapes a pick takes
        stand_ins = [PickView(title, url, meta, reason), PickView(title, "", meta, reason)]
        if not picks:
            stand_ins = []
        context = self._context(stand_ins, _STAND_IN["count"], only) | _markers("html")
        section = render(self.env, HTML_TEMPLATE, context)
        doc = (
            f"<!DOCTYPE html><html><head><style>{css}</style></head><body><table>"
            f"{_SECTION[0]}{section}{_SECTION[1]}</table></body></html>"
        )
        _, inner, _ = _cut(inline_css(doc), _SECTION, many=False)
        return inner[0]

    def _context(self, picks: Sequence[PickView], count: str, only: bool) -> dict[str, Any]:
        return {"picks": picks, "count": count, "only_for_you": only, "web_url": self.web_url}

    def html(self, picks: Sequence[PickView], *, only_for_you: bool) -> str:
        """The section as HTML rows of the email's main table."""
        p = self._pieces[only_for_you]
        count = _plural(len(picks), "paper")
        if not picks:
            return _fill(p.empty, {"count": count})
        rows = [
            _fill(
                self._linked if pick.url else self._unlinked,
                {"title": pick.title, "url": pick.url, "meta": pick.meta, "reason": pick.reason},
            )
            for pick in picks
        ]
        return _fill(p.head, {"count": count}) + p.between.join(rows) + _fill(p.tail, {})

    def text(self, picks: Sequence[PickView], *, only_for_you: bool) -> str:
        """The section as text, ending where the issue's next line starts (after a blank
        line), or, for a subscriber who reads it alone, with its last line."""
        count = _plural(len(picks), "paper")
        text = tidy_text(render(self.env, TEXT_TEMPLATE, self._context(picks, count, only_for_you)))
        return text.rstrip("\n") if only_for_you else text + "\n"


def _fill(piece: str, values: dict[str, str]) -> str:
    from markupsafe import escape

    return _STAND_IN_RE.sub(lambda m: str(escape(values.get(m.group(0)[8:-2].lower(), ""))), piece)


def _cut(html: str, marks: tuple[str, str], *, many: bool) -> tuple[str, list[str], str]:
    """(before the first mark, [inside, between, inside, ...], after the last)."""
    start, end = marks
    if start not in html or end not in html:
        raise TemplateError(f"{HTML_TEMPLATE}: {start} ... {end} not found after inlining")
    head, _, rest = html.partition(start)
    inner: list[str] = []
    while True:
        piece, _, rest = rest.partition(end)
        inner.append(piece)
        if not many or start not in rest:
            break
        between, _, rest = rest.partition(start)
        inner.append(between)
    return head, inner, rest
