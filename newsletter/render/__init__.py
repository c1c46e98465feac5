"""Turn a Digest into the email a subscriber reads: HTML (CSS inlined once) and plain text.

Pure: no clock, no network, no global state that changes output; the same Digest and
Settings always give byte-identical results.  Per-subscriber parts (unsubscribe link,
greeting) are left as placeholder tokens and filled in by :func:`personalize`, a cheap
string substitution, so the expensive CSS inlining runs once per issue.
"""

from __future__ import annotations

import datetime as dt
import functools
import html as html_lib
import logging
import pathlib
import re
import string
import textwrap
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.errors import TemplateError
from newsletter.models import Digest, Paper, Topic

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
#: Longest ``{topics}`` part of a subject line, in characters.
SUBJECT_TOPICS_CHARS = 60
#: Longest shown paper title, author name, category tag, topic label and subscriber name:
#: feed and sign-up text is cut where it is shown (a 10,000-character title happens).
TITLE_CHARS = 300
AUTHOR_CHARS = 100
TAG_CHARS = 40
LABEL_CHARS = 120
NAME_CHARS = 60

# Per-subscriber placeholders.  "%%" never survives in feed text (see _clean), so a paper
# title cannot forge one; the tokens pass through premailer/lxml untouched.
PLACEHOLDERS = {
    "unsubscribe_url": "%%NL_UNSUBSCRIBE_URL%%",
    "preferences_url": "%%NL_PREFERENCES_URL%%",
    "greeting": "%%NL_GREETING%%",
    "recipient": "%%NL_RECIPIENT%%",
    "name": "%%NL_NAME%%",
    "email": "%%NL_EMAIL%%",
}
PLACEHOLDER_RE = re.compile(r"%%NL_[A-Z_]+%%")

_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@dataclass(frozen=True)
class RenderedIssue:
    """One issue, rendered once; :func:`personalize` fills in the per-subscriber parts."""

    subject: str
    preheader: str
    html: str  # CSS inlined; contains the PLACEHOLDERS tokens
    text: str  # plain text, wrapped; same tokens


# --------------------------------------------------------------------------- public API


def bundled_templates_dir() -> pathlib.Path:
    """The templates shipped with the program: inside the installed package, else the repo's."""
    from importlib import resources

    packaged = resources.files("newsletter") / "templates"
    if packaged.is_dir() and isinstance(packaged, pathlib.Path):
        return packaged
    return pathlib.Path(__file__).resolve().parents[2] / "templates"


def render_issue(
    digest: Digest, settings: Settings, *, web_url: str | None = None
) -> RenderedIssue:
    """Render ``digest`` as HTML (CSS inlined) and text, degrading to fit Gmail's clip limit.

    The ladder of plans goes from "everything" to "one pick per topic, no snippets"; the
    first whose inlined HTML fits :data:`HTML_BUDGET_BYTES` wins.  The Jinja pass is cheap
    and its size predicts the inlined size, so premailer normally runs exactly once.
    """
    env = _environment(_template_dirs(settings))
    subject = subject_for(digest, settings)
    preheader = _preheader(digest)
    plans = _plans(settings)
    html = ""
    chosen = plans[-1]
    inflation = _INFLATION
    for i, plan in enumerate(plans):
        last = i == len(plans) - 1
        if not last and _shown(digest, plan) * _MIN_ITEM_BYTES > HTML_BUDGET_BYTES:
            continue  # hopeless: do not even build it (a 2,000-paper day at "everything")
        context = _context(digest, settings, plan, subject, preheader, web_url, web=False)
        raw = _render(env, HTML_TEMPLATE, context)
        raw_size = len(raw.encode())
        if not last and raw_size * inflation > HTML_BUDGET_BYTES:
            continue
        html = inline_css(raw)
        chosen = plan
        size = len(html.encode())
        if last or size <= HTML_BUDGET_BYTES:
            break
        # The estimate was off (an operator's template?): learn this template's ratio.
        inflation = max(inflation, size / raw_size * 1.02)
        log.debug("inlined HTML over budget at plan %d (%d bytes)", i, size)
    if len(html.encode()) > HTML_BUDGET_BYTES:
        log.warning(
            "issue %s: HTML is %d bytes, over the %d-byte budget even at the most compact "
            "layout; Gmail may clip it",
            digest.issue_date,
            len(html.encode()),
            HTML_BUDGET_BYTES,
        )
    context = _context(digest, settings, chosen, subject, preheader, web_url, web=False)
    text = _tidy_text(_render(env, TEXT_TEMPLATE, context))
    return RenderedIssue(subject=subject, preheader=preheader, html=html, text=text)


def render_web(digest: Digest, settings: Settings) -> str:
    """The complete issue as one web page: every paper, no size budget, no placeholders."""
    env = _environment(_template_dirs(settings))
    subject = subject_for(digest, settings)
    context = _context(
        digest,
        settings,
        _Plan(None, settings.render.snippet_chars, None),
        subject,
        _preheader(digest),
        None,
        web=True,
    )
    return _render(env, HTML_TEMPLATE, context)


def placeholder_values(
    *, unsubscribe_url: str, preferences_url: str, name: str = "", email: str = ""
) -> tuple[dict[str, str], dict[str, str]]:
    """What each placeholder token becomes for one subscriber: ``(for html, for text)``."""
    name = snippet(_clean(name, neutralise=False), NAME_CHARS)
    email = _clean(email, neutralise=False)
    values = {
        PLACEHOLDERS["unsubscribe_url"]: _clean(unsubscribe_url, neutralise=False).replace(
            " ", "%20"
        ),
        PLACEHOLDERS["preferences_url"]: _clean(preferences_url, neutralise=False).replace(
            " ", "%20"
        ),
        PLACEHOLDERS["greeting"]: f"Hello {name}," if name else "Hello,",
        PLACEHOLDERS["recipient"]: email or "you",
        PLACEHOLDERS["name"]: name,
        PLACEHOLDERS["email"]: email,
    }
    return {k: html_lib.escape(v, quote=True) for k, v in values.items()}, values


def personalize(
    issue: RenderedIssue,
    *,
    unsubscribe_url: str,
    preferences_url: str,
    name: str = "",
    email: str = "",
) -> tuple[str, str]:
    """Fill the per-subscriber placeholders: ``(html, text)``.  One regex pass per part."""
    escaped, values = placeholder_values(
        unsubscribe_url=unsubscribe_url, preferences_url=preferences_url, name=name, email=email
    )
    # A single pass: a value that itself looks like a token is not expanded again.
    html = PLACEHOLDER_RE.sub(lambda m: escaped.get(m.group(0), m.group(0)), issue.html)
    text = PLACEHOLDER_RE.sub(lambda m: values.get(m.group(0), m.group(0)), issue.text)
    return html, text


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
        topics = "nothing new today"
    else:
        topics = _join_labels([_clean(t.label, neutralise=True) for t in digest.topics])
        if not topics:
            topics = f"{digest.paper_count} new paper{'s' if digest.paper_count != 1 else ''}"
    values = {
        "list_name": _clean(settings.list.name, neutralise=True),
        "date": digest.issue_date.isoformat(),
        "long_date": _long_date(digest.issue_date),
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
    return _clean(subject, neutralise=True)


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
    *,
    web: bool,
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
    contact = _clean(settings.list.contact or settings.list.from_address, neutralise=True)
    if contact.startswith(("http://", "https://", "mailto:")):
        contact_url = contact
    else:
        contact_url = "mailto:" + contact if "@" in contact else ""
    n = digest.paper_count
    return {
        "subject": subject,
        "preheader": preheader,
        "list_name": _clean(settings.list.name, neutralise=True),
        "date_iso": digest.issue_date.isoformat(),
        "date_long": _long_date(digest.issue_date),
        "paper_count": n,
        "papers_word": "paper" if n == 1 else "papers",
        "topic_count": len(topics),
        "topics": topics,
        "watched": watched,
        "empty": digest.is_empty,
        "sources": [_clean(s, neutralise=True) for s in digest.sources],
        "web_url": _clean(web_url or "", neutralise=False) or None,
        "web": web,
        "contact": contact,
        "contact_url": contact_url,
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
        label=snippet(_clean(topic.label, neutralise=True), LABEL_CHARS),
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
        snippet(a, AUTHOR_CHARS) for a in (_clean(a, neutralise=True) for a in paper.authors) if a
    ]
    keep = max(1, max_authors)
    author_text = ", ".join(authors[:keep]) + (" et al." if len(authors) > keep else "")
    tags = [
        snippet(t, TAG_CHARS)
        for t in (_clean(c, neutralise=True) for c in paper.categories[:3])
        if t
    ]
    abstract = _clean(paper.abstract, neutralise=True)
    return PaperView(
        title=snippet(_clean(paper.title, neutralise=True), TITLE_CHARS) or "(untitled)",
        url=_safe_url(paper.url),
        pdf_url=_safe_url(paper.pdf_url or ""),
        authors=author_text,
        tags=", ".join(tags) or _clean(paper.source, neutralise=True),
        upvotes=paper.upvotes if paper.upvotes else None,
        trending=trending and bool(paper.upvotes),
        snippet=snippet(abstract, snippet_chars) if snippet_chars > 0 else "",
    )


def _preheader(digest: Digest) -> str:
    if digest.is_empty:
        return "Nothing new today."
    labels = _join_labels([_clean(t.label, neutralise=True) for t in digest.topics], limit=90)
    n = digest.paper_count
    head = f"{n} new paper{'s' if n != 1 else ''}"
    return f"{head}: {labels}" if labels else head


# --------------------------------------------------------------------------- text helpers

# C0/C1 controls (CR, LF, NUL, ESC, ...), line/paragraph separators, bidi overrides.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _clean(value: str, *, neutralise: bool) -> str:
    """One line of plain text: control, line-break and bidi-override characters become
    spaces, runs of whitespace collapse.  ``neutralise`` breaks up "%%" so feed text can
    never contain a placeholder token."""
    if not value:
        return ""
    value = " ".join(_UNSAFE_CHARS.sub(" ", value).split())
    if neutralise and "%%" in value:
        while "%%" in value:
            value = value.replace("%%", "%\u200b%")
    return value


def _safe_url(url: str) -> str:
    """Only http(s) links from feeds; anything else (javascript:, data:) is dropped."""
    url = _clean(url, neutralise=True).replace(" ", "%20")
    return url if re.match(r"^https?://", url, re.IGNORECASE) else ""


_SENTENCE_END = re.compile(r"[.!?](?=\s)")
_URL_START = re.compile(r"^(https?|mailto):", re.IGNORECASE)


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


def _long_date(d: dt.date) -> str:
    return f"{_WEEKDAYS[d.weekday()]}, {d.day} {_MONTHS[d.month - 1]} {d.year}"


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


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if not line and out and not out[-1]:
            continue  # no double blank lines
        out.append(line)
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- jinja


def _template_dirs(settings: Settings) -> tuple[str, ...]:
    dirs = [settings.render.templates_dir] if settings.render.templates_dir else []
    return (*dirs, str(bundled_templates_dir()))


@functools.lru_cache(maxsize=8)
def _environment(dirs: tuple[str, ...]) -> jinja2.Environment:
    import jinja2

    def autoescape(name: str | None) -> bool:
        return bool(name) and name.endswith((".html.j2", ".html"))  # type: ignore[union-attr]

    class Loader(jinja2.FileSystemLoader):
        def get_source(
            self, environment: jinja2.Environment, template: str
        ) -> tuple[str, str, Callable[[], bool]]:
            try:
                return super().get_source(environment, template)
            except UnicodeDecodeError as e:
                where = next(
                    (str(p) for d in dirs if (p := pathlib.Path(d) / template).is_file()),
                    template,
                )
                raise TemplateError(
                    f"{where}: not UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start}); "
                    "save the template as UTF-8"
                ) from None

    env = jinja2.Environment(
        loader=Loader(list(dirs)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = _wrap
    env.filters["plural"] = _plural
    return env


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _render(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    import jinja2

    dirs = env.loader.searchpath if isinstance(env.loader, jinja2.FileSystemLoader) else []
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as e:
        raise TemplateError(
            f"template {e.name!r} not found in {', '.join(map(str, dirs))}"
        ) from None
    except jinja2.TemplateSyntaxError as e:
        where = e.filename or e.name or name
        raise TemplateError(f"{where}:{e.lineno}: template syntax error: {e.message}") from e
    except jinja2.TemplateError as e:  # UndefinedError and friends, raised while rendering
        where = _template_frame(e, name)
        raise TemplateError(f"{where}: {type(e).__name__}: {e}") from e


def _template_frame(e: BaseException, default: str) -> str:
    """The innermost ``file:line`` inside a template from a rendering traceback."""
    frames = [
        f for f in traceback.extract_tb(e.__traceback__) if f.filename.endswith((".j2", ".css"))
    ]
    if not frames:
        return default
    return f"{frames[-1].filename}:{frames[-1].lineno}"


# Re-exported for the preview command and tests.
__all__ = [
    "HTML_BUDGET_BYTES",
    "PLACEHOLDERS",
    "RenderedIssue",
    "bundled_templates_dir",
    "inline_css",
    "personalize",
    "render_issue",
    "render_web",
    "snippet",
    "subject_for",
]
