"""Turn a Digest into the email a subscriber reads: HTML (CSS inlined once) and plain text.

Pure: no clock, no network, no global state that changes output; the same Digest and
Settings always give byte-identical results.  Per-subscriber parts (unsubscribe link,
greeting) are left as placeholder tokens (:mod:`newsletter.placeholders`) and filled in
per subscriber by a cheap string substitution, so the expensive CSS inlining runs once
per issue.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import string
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.errors import TemplateError
from newsletter.links import contact_url
from newsletter.models import Digest, Edition, Paper, Topic
from newsletter.placeholders import PLACEHOLDERS
from newsletter.splice import Kind, Layout, marker, tidy_text
from newsletter.templating import environment, render, template_dirs
from newsletter.text import clean, day_month_year, long_date, snippet

if TYPE_CHECKING:
    import jinja2

    from newsletter.config import Settings

log = logging.getLogger(__name__)

HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"

#: Gmail clips a message whose HTML is over ~102 KB.  We stay well under it so that the
#: personalised parts and the transfer encoding (quoted-printable adds a few percent) fit.
HTML_BUDGET_BYTES = 90_000
#: The text part is wrapped to this width; only URLs may be longer.
TEXT_WIDTH = 76
#: Room kept in the HTML budget for a subscriber's "For you" section: its heading and
#: each pick, inlined (measured on the bundled templates with 300-character titles).
FOR_YOU_HEAD_BYTES = 600
FOR_YOU_PICK_BYTES = 700
#: Longest ``{topics}`` part of a subject line, in characters.
SUBJECT_TOPICS_CHARS = 60
#: Longest shown paper title, author name, category tag and topic label: feed text is cut
#: where it is shown (a 10,000-character title happens).
TITLE_CHARS = 300
AUTHOR_CHARS = 100
TAG_CHARS = 40
LABEL_CHARS = 120


@dataclass(frozen=True)
class RenderedIssue:
    """One issue, rendered once; :func:`newsletter.placeholders.personalize` fills in the
    per-subscriber parts."""

    subject: str
    preheader: str
    html: str  # CSS inlined; contains the PLACEHOLDERS tokens
    text: str  # plain text, wrapped; same tokens


# --------------------------------------------------------------------------- public API


def render_issue(
    digest: Digest, settings: Settings, *, web_url: str | None = None, markers: bool = True
) -> RenderedIssue:
    """Render ``digest`` as HTML (CSS inlined) and text, degrading to fit Gmail's clip limit.

    The ladder of plans goes from "everything" to "one pick per topic, no snippets"; the
    first whose inlined HTML fits the budget wins (:data:`HTML_BUDGET_BYTES`, less room for
    a "For you" section).  The Jinja pass is cheap and its size predicts the inlined size,
    so premailer normally runs exactly once.

    ``markers``: mark what a subscriber's copy changes (``newsletter.splice``); the
    issue without its markers is byte for byte the issue rendered without them.
    """
    env = _environment(settings)
    html_marks = _markers("html" if markers else None)
    budget = HTML_BUDGET_BYTES - for_you_reserve(settings)
    subject = subject_for(digest, settings)
    preheader = _preheader(digest)
    plans = _plans(settings)
    html = ""
    chosen = plans[-1]
    inflation = _INFLATION
    for i, plan in enumerate(plans):
        last = i == len(plans) - 1
        if not last and _shown(digest, plan) * _MIN_ITEM_BYTES > budget:
            continue  # hopeless: do not even build it (a 2,000-paper day at "everything")
        context = _context(digest, settings, plan, subject, preheader, web_url)
        raw = render(env, HTML_TEMPLATE, context | html_marks)
        raw_size = len(raw.encode())
        if not last and raw_size * inflation > budget:
            continue
        html = inline_css(raw)
        chosen = plan
        size = len(html.encode())
        if last or size <= budget:
            break
        # The estimate was off (an operator's template?): learn this template's ratio.
        inflation = max(inflation, size / raw_size * 1.02)
        log.debug("inlined HTML over budget at plan %d (%d bytes)", i, size)
    if len(html.encode()) > budget:
        log.warning(
            "issue %s: HTML is %d bytes, over the %d-byte budget even at the most compact "
            "layout; Gmail may clip it",
            digest.issue_date,
            len(html.encode()),
            budget,
        )
    context = _context(digest, settings, chosen, subject, preheader, web_url)
    raw_text = render(env, TEXT_TEMPLATE, context | _markers("text" if markers else None))
    try:  # an operator's template may have its markers out of order
        Layout.of(html, "html")
    except ValueError as e:
        raise TemplateError(f"{HTML_TEMPLATE}: a subscriber's copy cannot be made: {e}") from None
    try:
        text = tidy_text(raw_text)
        Layout.of(text, "text")
    except ValueError as e:
        raise TemplateError(f"{TEXT_TEMPLATE}: a subscriber's copy cannot be made: {e}") from None
    return RenderedIssue(subject=subject, preheader=preheader, html=html, text=text)


#: The names ``render.subject`` may use, each as a plain ``{name}``.
SUBJECT_KEYS = ("list_name", "date", "long_date", "topics", "count")
#: Longest ``render.subject`` template, in characters.
SUBJECT_TEMPLATE_CHARS = 200


def subject_template_problem(template: str) -> str | None:
    """What is wrong with a ``render.subject`` template, or ``None``.

    Only plain ``{name}`` fields of :data:`SUBJECT_KEYS` (and ``{{``/``}}`` for braces): no
    attribute or index access (``{list_name.__class__}`` would reach into the program), no
    conversions, no format specs (``{count:>99999999}`` would build a huge string).
    """
    known = ", ".join("{" + k + "}" for k in SUBJECT_KEYS)
    if len(template) > SUBJECT_TEMPLATE_CHARS:
        return f"expected at most {SUBJECT_TEMPLATE_CHARS} characters, got {len(template)}"
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as e:
        return f"cannot read {template!r} ({e}); write a literal brace as {{{{ or }}}}"
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        shown = (
            "{"
            + name
            + (f"!{conversion}" if conversion else "")
            + (f":{spec}" if spec else "")
            + "}"
        )
        if name not in SUBJECT_KEYS:
            return f"{shown} is not a known name; known: {known}"
        if spec or conversion:
            return f"{shown}: no format specs or conversions; write {{{name}}}"
    return None


def subject_for(digest: Digest, settings: Settings) -> str:
    """The subject line from ``render.subject``; one line, whole topic labels, never CR/LF.

    Keys: ``{list_name}``, ``{date}`` (ISO), ``{long_date}``, ``{topics}``, ``{count}``.
    """
    if digest.is_empty:
        topics = f"nothing new {_period(digest)}"
    else:
        topics = _join_labels([clean(t.label, neutralise=True) for t in digest.topics])
        if not topics:
            topics = f"{digest.paper_count} new paper{'s' if digest.paper_count != 1 else ''}"
    values = {
        "list_name": clean(settings.list.name, neutralise=True),
        "date": _week_of(digest, digest_day(digest).isoformat()),
        "long_date": _issue_title(digest),
        "topics": topics,
        "count": str(digest.paper_count),
    }
    problem = subject_template_problem(settings.render.subject)
    if problem:  # the config loader refuses such a template; settings built by hand may not
        raise TemplateError(f"render.subject: {problem}")
    subject = "".join(
        literal + (values[name] if name is not None else "")
        for literal, name, _, _ in string.Formatter().parse(settings.render.subject)
    )
    # Neutralised too: the subject is also the HTML <title>, which personalize() scans.
    return clean(subject, neutralise=True)


def inline_css(html: str) -> str:
    """Inline the ``<style>`` rules into style attributes, keeping the block for @media."""
    import premailer

    return str(
        premailer.Premailer(
            html,
            keep_style_tags=True,  # @media (mobile, dark mode) rules live on in <style>
            strip_important=False,  # the dark-mode overrides need !important to win
            remove_classes=False,  # ... and the classes to match
            disable_link_rewrites=True,
            allow_network=False,  # never fetch a stylesheet
            allow_loading_external_files=False,
            disable_validation=True,
            # cssutils logs every property it does not know (mso-*, color-scheme, ...).
            cssutils_logging_level=logging.CRITICAL,
        ).transform(pretty_print=False)
    )


def for_you_reserve(settings: Settings) -> int:
    """Bytes of the HTML budget kept for a subscriber's "For you" (render.for_you picks)."""
    n = settings.render.for_you
    return FOR_YOU_HEAD_BYTES + n * FOR_YOU_PICK_BYTES if n else 0


def _markers(kind: Kind | None) -> dict[str, Any]:
    """``mark(name)`` and ``topic_number(n)`` for the templates: the markers of what a
    subscriber's copy changes (``splice``) in the ``kind`` body, or nothing at all."""
    from markupsafe import Markup

    def mark(name: str) -> str:
        if kind is None:
            return ""
        return Markup(marker(kind, name)) if kind == "html" else marker(kind, name)

    def topic_number(n: int) -> str:
        return mark("n") + str(n) + mark("/n") if kind is not None else str(n)

    return {"mark": mark, "topic_number": topic_number}


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class _Plan:
    """How much of each topic to show; later plans are smaller."""

    max_picks: int | None  # None: all picks
    snippet_chars: int  # 0: no snippet
    max_rest: int | None  # None: the whole rest list


#: Inlined HTML is about this many times the raw Jinja output with the bundled templates
#: (measured 1.49-1.6 on issues near the budget; small issues inflate more but fit anyway).
_INFLATION = 1.6


#: No listed paper takes fewer bytes than this in the inlined HTML (a bare linked title).
_MIN_ITEM_BYTES = 120


def _shown(digest: Digest, plan: _Plan) -> int:
    """How many papers ``plan`` would list (picks and rest)."""
    total = 0
    for t in (*digest.topics, *([digest.watched] if digest.watched else [])):
        picks = len(t.picks) if plan.max_picks is None else min(len(t.picks), plan.max_picks)
        rest = len(t.picks) + len(t.rest) - picks
        total += picks + (rest if plan.max_rest is None else min(rest, plan.max_rest))
    return total


def _plans(settings: Settings) -> list[_Plan]:
    """From everything down to one pick per topic and no snippets.  Each step is a cheap
    Jinja pass; the steps are fine-grained so a big day keeps as much as fits."""
    s = settings.render.snippet_chars
    return [
        _Plan(None, s, None),
        _Plan(None, s, 40),
        _Plan(None, s, 30),
        _Plan(3, min(s, 240), 25),
        _Plan(3, min(s, 240), 20),
        _Plan(3, min(s, 180), 15),
        _Plan(2, min(s, 140), 10),
        _Plan(2, min(s, 100), 6),
        _Plan(1, 0, 3),
        _Plan(1, 0, 0),
    ]


# --------------------------------------------------------------------------- view model
# Templates see only these plain objects, built from the Digest with every feed string
# cleaned; they never see raw feed text (which could otherwise carry a placeholder).


@dataclass(frozen=True)
class PaperView:
    title: str
    url: str
    pdf_url: str
    authors: str  # "A, B, C et al."
    tags: str  # categories, else the source
    upvotes: int | None
    trending: bool
    snippet: str


@dataclass(frozen=True)
class TopicView:
    anchor: str
    label: str
    size: int
    picks: tuple[PaperView, ...]
    rest: tuple[PaperView, ...]
    more: int  # rest papers not shown


def _context(
    digest: Digest,
    settings: Settings,
    plan: _Plan,
    subject: str,
    preheader: str,
    web_url: str | None,
) -> dict[str, Any]:
    r = settings.render
    topics = [
        _topic_view(t, f"topic-{i}", plan, r.max_authors) for i, t in enumerate(digest.topics, 1)
    ]
    watched = (
        _topic_view(digest.watched, "watched", plan, r.max_authors)
        if digest.watched and (digest.watched.picks or digest.watched.rest)
        else None
    )
    contact = clean(settings.list.contact or settings.list.from_address, neutralise=True)
    n = digest.paper_count
    return {
        "subject": subject,
        "preheader": preheader,
        "list_name": clean(settings.list.name, neutralise=True),
        "date_iso": digest.issue_date.isoformat(),
        "date_long": _issue_title(digest),
        "period": _period(digest),
        "paper_count": n,
        "papers_word": "paper" if n == 1 else "papers",
        "topic_count": len(topics),
        "topics": topics,
        "watched": watched,
        "empty": digest.is_empty,
        "sources": [clean(s, neutralise=True) for s in digest.sources],
        "web_url": clean(web_url or "", neutralise=False) or None,
        # Always false: an operator's template copied from an older bundled one may still
        # test it (the issue was once also rendered as a web page from the same template).
        "web": False,
        "contact": contact,
        "contact_url": contact_url(contact),
        "unsubscribe_url": PLACEHOLDERS["unsubscribe_url"],
        "preferences_url": PLACEHOLDERS["preferences_url"],
        "greeting": PLACEHOLDERS["greeting"],
        "recipient": PLACEHOLDERS["recipient"],
        "subscriber_name": PLACEHOLDERS["name"],
        "subscriber_email": PLACEHOLDERS["email"],
        "truncated": any(t.more for t in topics) or bool(watched and watched.more),
    }


def _topic_view(topic: Topic, anchor: str, plan: _Plan, max_authors: int) -> TopicView:
    shown = list(topic.picks if plan.max_picks is None else topic.picks[: plan.max_picks])
    demoted = [p.paper for p in topic.picks[len(shown) :]]
    rest = demoted + list(topic.rest)
    rest_shown = rest[: plan.max_rest] if plan.max_rest is not None else rest
    return TopicView(
        anchor=anchor,
        label=snippet(clean(topic.label, neutralise=True), LABEL_CHARS),
        size=topic.size,
        picks=tuple(
            _paper_view(p.paper, plan.snippet_chars, max_authors, trending=p.trending >= 0.5)
            for p in shown
        ),
        rest=tuple(_paper_view(p, 0, max_authors) for p in rest_shown),
        more=len(rest) - len(rest_shown),
    )


def _paper_view(
    paper: Paper, snippet_chars: int, max_authors: int, *, trending: bool = False
) -> PaperView:
    authors = [
        snippet(a, AUTHOR_CHARS) for a in (clean(a, neutralise=True) for a in paper.authors) if a
    ]
    keep = max(1, max_authors)
    author_text = ", ".join(authors[:keep]) + (" et al." if len(authors) > keep else "")
    tags = [
        snippet(t, TAG_CHARS)
        for t in (clean(c, neutralise=True) for c in paper.categories[:3])
        if t
    ]
    abstract = clean(paper.abstract, neutralise=True)
    return PaperView(
        title=snippet(clean(paper.title, neutralise=True), TITLE_CHARS) or "(untitled)",
        url=_safe_url(paper.url),
        pdf_url=_safe_url(paper.pdf_url or ""),
        authors=author_text,
        tags=", ".join(tags) or clean(paper.source, neutralise=True),
        upvotes=paper.upvotes if paper.upvotes else None,
        trending=trending and bool(paper.upvotes),
        snippet=snippet(abstract, snippet_chars) if snippet_chars > 0 else "",
    )


def _preheader(digest: Digest) -> str:
    if digest.is_empty:
        return f"Nothing new {_period(digest)}."
    labels = _join_labels([clean(t.label, neutralise=True) for t in digest.topics], limit=90)
    n = digest.paper_count
    head = f"{n} new paper{'s' if n != 1 else ''}"
    return f"{head}: {labels}" if labels else head


# --------------------------------------------------------------------------- text helpers


def _safe_url(url: str) -> str:
    """Only http(s) links from feeds; anything else (javascript:, data:) is dropped."""
    url = clean(url, neutralise=True).replace(" ", "%20")
    return url if re.match(r"^https?://", url, re.IGNORECASE) else ""


_URL_START = re.compile(r"^(https?|mailto):", re.IGNORECASE)


def _join_labels(labels: list[str], limit: int = SUBJECT_TOPICS_CHARS) -> str:
    """Whole labels, comma-separated, up to ``limit`` characters; the first one is cut
    at a word if even it does not fit."""
    labels = [lab for lab in labels if lab]
    out: list[str] = []
    for lab in labels:
        candidate = ", ".join([*out, lab])
        if len(candidate) > limit:
            break
        out.append(lab)
    if not out and labels:
        return snippet(labels[0], limit)
    return ", ".join(out)


def digest_day(digest: Digest) -> dt.date:
    """The date an issue is named by: its date, or for a weekly issue the first day it
    covers (the issue of Monday 27 April is the week of 20 April)."""
    if digest.edition is Edition.WEEKLY and digest.since is not None:
        return digest.since
    return digest.issue_date


def _period(digest: Digest) -> str:
    return "this week" if digest.edition is Edition.WEEKLY else "today"


def _week_of(digest: Digest, day: str) -> str:
    return f"Week of {day}" if digest.edition is Edition.WEEKLY else day


def _issue_title(digest: Digest) -> str:
    """ "Monday, 27 April 2026"; a weekly issue: "Week of 20 April 2026"."""
    d = digest_day(digest)
    if digest.edition is Edition.WEEKLY:
        return _week_of(digest, day_month_year(d))
    return long_date(d)


def _wrap(value: str, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None) -> str:
    """Jinja filter: wrap one paragraph.  URLs are never broken (a broken link is dead);
    any other word too long for a line is cut into pieces that fit."""
    room = width - max(len(indent), len(first or ""))
    if room > 0 and any(len(w) > room for w in value.split()):
        value = " ".join(
            " ".join(w[i : i + room] for i in range(0, len(w), room))
            if len(w) > room and not _URL_START.match(w)
            else w
            for w in value.split()
        )
    lines = textwrap.wrap(
        value,
        width=width,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join(lines)


def _numbered(
    context: Any,
    value: str,
    n: int | None,
    total: int,
    fmt: str = "%d",
    indent: str = "",
    first: str | None = None,
) -> str:
    """Jinja filter: ``value`` (which starts with topic ``n``'s number, ``fmt % n``)
    wrapped, the number marked: a subscriber's copy puts another there.  Measured as if it
    were the widest number of the issue, so any number fits the lines as wrapped."""
    if n is None:
        return _wrap(value, indent=indent, first=first)
    shown = fmt % n
    room = len(fmt % total) - len(shown)
    text = _wrap(value, TEXT_WIDTH - max(room, 0), indent, first)
    at = len(indent if first is None else first)
    if text[at : at + len(shown)] != shown:
        return text
    mark = context.get("mark") or (lambda name: "")
    width = len(fmt % 0)  # what the format pads every number to ("%2d": 2)
    return text[:at] + mark(f"n:{width}") + shown + mark("/n") + text[at + len(shown) :]


def _environment(settings: Settings) -> jinja2.Environment:
    """The emails' environment: the shared one (:mod:`newsletter.templating`) with the
    text template's filters."""
    import jinja2

    filters = (
        ("wrap", _wrap),
        ("plural", _plural),
        ("numbered", jinja2.pass_context(_numbered)),  # marks the function itself: cacheable
    )
    return environment(template_dirs(settings), filters)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


__all__ = [
    "HTML_BUDGET_BYTES",
    "RenderedIssue",
    "inline_css",
    "render_issue",
    "subject_for",
]
