"""Pure helpers that turn the text, ids and dates found in feeds into normalised values."""

from __future__ import annotations

import calendar
import datetime as dt
import html
import re
import time
import unicodedata
import urllib.parse

__all__ = [
    "arxiv_abs_url",
    "arxiv_id",
    "arxiv_pdf_url",
    "canonical_id",
    "clean_abstract",
    "clean_text",
    "clean_title",
    "find_doi",
    "split_arxiv_description",
    "split_authors",
    "to_utc",
]

# --------------------------------------------------------------------------------------------
# arXiv identifiers

# Modern ids: YYMM.NNNN (2007-2014) or YYMM.NNNNN (2015 on); the digit count is checked in
# _valid_modern so that a DOI suffix or a page number is not mistaken for an id.
_MODERN = r"(?P<modern>(?P<yy>\d{2})(?P<mm>\d{2})\.(?P<num>\d{4,5}))"
# Old-style ids: archive[.SUBJECT-CLASS]/YYMMNNN, e.g. hep-th/9901001, math.AG/0601001.
# Only the archives that existed before 2007, so "post/2024001" in a blog's guid is no id.
_OLD_ARCHIVES = (
    "acc-phys|adap-org|alg-geom|ao-sci|astro-ph|atom-ph|bayes-an|chao-dyn|chem-ph|cmp-lg|"
    "comp-gas|cond-mat|cs|dg-ga|funct-an|gr-qc|hep-ex|hep-lat|hep-ph|hep-th|math-ph|math|"
    "mtrl-th|nlin|nucl-ex|nucl-th|patt-sol|physics|plasm-ph|q-alg|q-bio|quant-ph|solv-int|"
    "supr-con"
)
_OLD = rf"(?P<old>(?P<archive>{_OLD_ARCHIVES})(?:\.[A-Za-z]+(?:-[a-z]+)?)?/(?P<oldnum>\d{{7}}))"
_VERSION = r"(?:v(?P<version>\d+))?"
_ID = rf"(?:{_MODERN}|{_OLD}){_VERSION}"

# Where an id may appear: the bare id, "arXiv:ID", an OAI guid, an arXiv DOI, or an
# arxiv.org abs/pdf/html URL (any arxiv.org host, optional ".pdf", query or fragment).
_ARXIV_FORMS = re.compile(
    rf"""^\s*(?:
        (?:arxiv:)?
      | oai:arxiv\.org:
      | (?:https?://)?(?:doi\.org/|dx\.doi\.org/|doi:)?10\.48550/arxiv\.
      | (?:https?://)?(?:[a-z0-9-]+\.)*arxiv\.org/(?:abs|pdf|html|format)/
    ){_ID}(?:\.pdf)?/?(?:[?#].*)?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


def _valid_modern(yy: str, mm: str, num: str) -> bool:
    year, month = int(yy), int(mm)
    if not 1 <= month <= 12 or (year, month) < (7, 4):
        return False
    # Five-digit sequence numbers started in January 2015.
    return len(num) == (5 if year >= 15 else 4)


def arxiv_id(text: str | None) -> tuple[str, int | None] | None:
    """Find an arXiv id in an id, ``arXiv:`` reference, URL, OAI guid or arXiv DOI.

    Returns ``(id without version, version or None)``; old-style ids lose their subject
    class (``math.AG/0601001`` is ``math/0601001`` to arXiv).  ``None`` when there is none.
    """
    if not text:
        return None
    m = _ARXIV_FORMS.match(text)
    if m is None:
        return None
    version = int(m["version"]) if m["version"] else None
    if m["modern"]:
        if not _valid_modern(m["yy"], m["mm"], m["num"]):
            return None
        return m["modern"], version
    return f"{m['archive'].lower()}/{m['oldnum']}", version


def arxiv_abs_url(ident: str) -> str:
    """The abstract page of an arXiv paper (latest version)."""
    return f"https://arxiv.org/abs/{ident}"


def arxiv_pdf_url(ident: str) -> str:
    """The PDF of an arXiv paper (latest version)."""
    return f"https://arxiv.org/pdf/{ident}"


# --------------------------------------------------------------------------------------------
# DOIs and canonical ids

_DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"'<>]+)", re.IGNORECASE)
_DOI_PREFIX = re.compile(r"^\s*(?:https?://(?:dx\.)?doi\.org/|doi:\s*|info:doi/)", re.IGNORECASE)


def find_doi(text: str | None) -> str | None:
    """The DOI in a DOI, ``doi:`` identifier or doi.org URL, lower-cased; else ``None``."""
    if not text:
        return None
    # doi.org URLs percent-encode some characters; DOIs themselves never contain '%xx'.
    candidate = urllib.parse.unquote(_DOI_PREFIX.sub("", text.strip()))
    m = _DOI.search(candidate)
    if m is None:
        return None
    # Trailing punctuation belongs to the surrounding sentence, not the DOI.
    return m.group(1).rstrip(".,;:)]}").lower() or None


def canonical_id(arxiv: str | None, doi: str | None, link: str | None) -> str:
    """The paper's identity across feeds: ``arxiv:<id>``, else ``doi:<doi>``, else ``url:<link>``.

    Versions are dropped so every version of a paper gets the same id; an arXiv DOI
    (10.48550/arXiv.*) counts as the arXiv id.  Raises ``ValueError`` when all are empty.
    """
    if arxiv and arxiv.strip():
        parsed = arxiv_id(arxiv)
        return f"arxiv:{parsed[0] if parsed else arxiv.strip()}"
    if doi and doi.strip():
        as_arxiv = arxiv_id(doi)
        if as_arxiv is not None:
            return f"arxiv:{as_arxiv[0]}"
        found = find_doi(doi)
        return f"doi:{found or _DOI_PREFIX.sub('', doi.strip()).lower()}"
    if link and link.strip():
        url, _fragment = urllib.parse.urldefrag(link.strip())
        return f"url:{url}"
    raise ValueError("a paper needs an arXiv id, a DOI or a link")


# --------------------------------------------------------------------------------------------
# Text

_WS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # exactly Unicode category Cc
# Kept separate from the general tag pattern: their content is code, never text.
_SCRIPT = re.compile(
    r"<\s*(script|style|iframe|object|embed|noscript|template)\b[^>]*>.*?(?:<\s*/\s*\1\s*>|$)",
    re.IGNORECASE | re.DOTALL,
)
_LONE_SCRIPT = re.compile(
    r"<\s*/?\s*(?:script|style|iframe|object|embed|noscript|template)\b[^>]*>", re.IGNORECASE
)
_COMMENT = re.compile(r"<!--.*?(?:-->|$)|<!\[CDATA\[|\]\]>", re.DOTALL)
_BLOCK_TAGS = (
    "address|article|aside|blockquote|br|caption|dd|div|dl|dt|figcaption|figure|footer|"
    "h[1-6]|header|hr|li|main|nav|ol|p|pre|section|table|tbody|td|tfoot|th|thead|tr|ul"
)
_INLINE_TAGS = (
    "a|abbr|b|bdi|bdo|big|cite|code|del|dfn|em|font|i|img|ins|kbd|mark|math|mi|mn|mo|mrow|"
    "msub|msup|q|s|samp|small|span|strike|strong|sub|sup|time|tt|u|var|wbr"
)
# Only HTML's own tag names with well-formed attributes are markup, so that math written
# without dollars ("x<a and b>c", "p<i>q") is left alone.
_ATTRS = r"""(?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'<>]+))*\s*/?\s*>"""
_BLOCK = re.compile(rf"<\s*/?\s*(?:{_BLOCK_TAGS}){_ATTRS}", re.IGNORECASE)
_INLINE = re.compile(rf"<\s*/?\s*(?:{_INLINE_TAGS}){_ATTRS}", re.IGNORECASE)

# $$...$$ or $...$ not preceded by a backslash (\$ is a literal dollar sign).
_MATH = re.compile(r"(?<!\\)\$\$.+?(?<!\\)\$\$|(?<!\\)\$[^$]+?(?<!\\)\$", re.DOTALL)

_TEXT_MACROS = re.compile(
    r"\\(?:textbf|textit|textsl|textrm|textsf|texttt|textsc|textup|textmd|textnormal|emph|"
    r"underline|mbox|text|url|nolinkurl)\s*\{([^{}]*)\}"
)
_HREF = re.compile(r"\\href\s*\{[^{}]*\}\s*\{([^{}]*)\}")
_FONT_SWITCH = re.compile(r"\{\\(?:bf|it|em|sl|sc|tt|rm|sf)\s+([^{}]*)\}")
_ESCAPES = {"\\&": "&", "\\%": "%", "\\_": "_", "\\#": "#", "\\$": "$", "\\{": "{", "\\}": "}"}
_ESCAPE = re.compile(r"\\[&%_#${}]")
# A tie joins two words ("Fig.~3", "Smith~et~al."); "~" elsewhere (URLs, "~10%") is text.
_TIE = re.compile(r"(?<=[\w.,;:)\]])~(?=[\w(\\])")

_ACCENTS = {
    '"': "\u0308",
    "'": "\u0301",
    "`": "\u0300",
    "^": "\u0302",
    "~": "\u0303",
    "=": "\u0304",
    ".": "\u0307",
    "c": "\u0327",
    "v": "\u030c",
    "u": "\u0306",
    "H": "\u030b",
    "k": "\u0328",
    "r": "\u030a",
}
# \"u, \"{u}, {\"u}, \'{\i}, \c{c}, \v{s}: symbol accents may go without braces, letter
# accents (\c, \v, ...) only with them, so "\cite" and "\url" are left alone.
_ACCENT = re.compile(
    r"(?P<outer>\{)?\\(?:(?P<sym>[\"'`^~=.])\s*(?P<inner>\{)?(?P<a>\\i|\\j|[A-Za-z])(?(inner)\})"
    r"|(?P<let>[cvuHkr])\s*\{(?P<b>\\i|\\j|[A-Za-z])\})(?(outer)\})"
)
_LETTERS = {
    "\\ss": "ß",
    "\\o": "ø",
    "\\O": "Ø",
    "\\aa": "å",
    "\\AA": "Å",
    "\\ae": "æ",
    "\\AE": "Æ",
    "\\l": "ł",
    "\\L": "Ł",
    "\\oe": "œ",
    "\\OE": "Œ",
}
_LETTER = re.compile(
    r"(?P<outer>\{)?(\\(?:ss|o|O|aa|AA|ae|AE|l|L|oe|OE))(?![A-Za-z])(?:\{\})?(?(outer)\})"
)

# Invisible characters that only get in the way of matching and display.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\ufeff\u2060"), None)


def _accent(m: re.Match[str]) -> str:
    mark = _ACCENTS[m["sym"] or m["let"]]
    base = m["a"] or m["b"]
    base = {"\\i": "i", "\\j": "j"}.get(base, base)
    return unicodedata.normalize("NFC", base + mark)


def _strip_markup(s: str) -> str:
    s = _SCRIPT.sub(" ", s)
    s = _LONE_SCRIPT.sub(" ", s)
    s = _COMMENT.sub(" ", s)
    s = _BLOCK.sub(" ", s)
    return _INLINE.sub("", s)


def _latex_to_text(s: str) -> str:
    """Readable text from LaTeX text-mode markup; math spans are left exactly as written."""
    out: list[str] = []
    pos = 0
    for m in _MATH.finditer(s):
        out.append(_latex_text_segment(s[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_latex_text_segment(s[pos:]))
    return "".join(out)


def _latex_text_segment(s: str) -> str:
    if "\\" in s:
        s = _ACCENT.sub(_accent, s)
        s = _LETTER.sub(lambda m: _LETTERS[m.group(2)], s)
        # Nested macros (\textbf{\emph{x}}) unwrap from the inside out.
        for _ in range(5):
            new = _FONT_SWITCH.sub(r"\1", _HREF.sub(r"\1", _TEXT_MACROS.sub(r"\1", s)))
            if new == s:
                break
            s = new
        s = _ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], s)
    if "~" in s:
        s = _TIE.sub(" ", s)
    return s


def clean_text(s: str | None) -> str:
    """Plain, single-line text from feed text that may hold HTML, entities and LaTeX.

    HTML tags are dropped (block tags become spaces, script/style lose their content),
    entities are unescaped exactly once, LaTeX text macros and accents become text while
    ``$...$`` math stays as written, and whitespace and control characters collapse to
    single spaces.
    """
    if not s:
        return ""
    s = _strip_markup(s)
    s = html.unescape(s)
    # Publishers double-escape markup far more often than they mean a literal tag in a
    # title, so markup that only appears after unescaping is markup too.
    s = _strip_markup(s)
    s = _latex_to_text(s)
    s = s.translate(_INVISIBLE)
    # Control characters (CR, LF, NUL, C1 ...) become spaces so words never fuse.
    s = _CONTROL.sub(" ", s)
    return _WS.sub(" ", s).strip()


def clean_title(s: str | None) -> str:
    """A title as one line of plain text (never markup, CR/LF or control characters)."""
    return clean_text(s)


_ARXIV_PREFIX = re.compile(
    r"^\s*arXiv:(?P<id>\S+?)\s+Announce\s+Type:\s*(?P<type>[\w-]+)\s*(?:Abstract:\s*)?",
    re.IGNORECASE,
)


def split_arxiv_description(s: str | None) -> tuple[str | None, str | None, str]:
    """Split an rss.arxiv.org description into (versioned id, announce type, abstract).

    The description reads ``arXiv:2604.21935v1 Announce Type: new \\nAbstract: ...``;
    text without that prefix is returned unchanged with ``None`` for both.
    """
    if not s:
        return None, None, ""
    m = _ARXIV_PREFIX.match(s)
    if m is None:
        return None, None, s
    return m["id"], m["type"].lower(), s[m.end() :]


def clean_abstract(s: str | None) -> str:
    """An abstract as plain text, without rss.arxiv.org's ``arXiv:... Abstract:`` prefix."""
    return clean_text(split_arxiv_description(s)[2])


# --------------------------------------------------------------------------------------------
# Authors

# "V"/"VI" are left out: in "Doe, V." a lone V is far more often an initial.
_SUFFIX = re.compile(r"^(?:jr|sr|ii|iii|iv|2nd|3rd|phd|md)\.?$", re.IGNORECASE)
_AND = re.compile(r"\s+(?:and|&)\s+", re.IGNORECASE)
_LEADING_AND = re.compile(r"^(?:and|&)\s+", re.IGNORECASE)


def _drop_parentheses(s: str) -> str:
    """Remove parenthesised (possibly nested) affiliations: "Ann Lee (MIT, USA)" -> "Ann Lee"."""
    out: list[str] = []
    depth = 0
    for c in s:
        if c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(c)
    return "".join(out)


def split_authors(s: str | None) -> tuple[str, ...]:
    """Split an author string ("A, B and C", "A; B", "A and B") into cleaned names.

    Affiliations in parentheses are dropped; generational suffixes stay with their name
    ("John Smith, Jr., Jane Doe" gives "John Smith, Jr." and "Jane Doe").  With semicolons
    present, only they separate authors, so "Smith, J.; Doe, J." keeps "Last, First" names.
    """
    if not s:
        return ()
    text = clean_text(_drop_parentheses(s))
    separator = ";" if ";" in text else ","
    parts: list[str] = []
    for chunk in text.split(separator):
        parts.extend(_AND.split(chunk.strip()))
    names: list[str] = []
    for part in parts:
        name = _LEADING_AND.sub("", part.strip(" ,;")).strip(" ,;")
        if not name or name.lower() in ("and", "&"):
            continue
        if names and _SUFFIX.match(name):
            names[-1] = f"{names[-1]}, {name}"
        else:
            names.append(name)
    return tuple(names)


# --------------------------------------------------------------------------------------------
# Dates


def to_utc(value: object) -> dt.datetime | None:
    """A timezone-aware UTC datetime from a datetime, ISO-8601 string or UTC struct_time.

    Naive values are taken to be UTC (feedparser's ``*_parsed`` already are); anything
    unparseable gives ``None``.
    """
    if value is None or value == "":
        return None
    try:
        if isinstance(value, dt.datetime):
            moment = value
        elif isinstance(value, dt.date):
            moment = dt.datetime(value.year, value.month, value.day)
        elif isinstance(value, time.struct_time):
            moment = dt.datetime.fromtimestamp(calendar.timegm(value), dt.UTC)
        elif isinstance(value, str):
            moment = dt.datetime.fromisoformat(value.strip())
        else:
            return None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC)  # year 1 at +01:00 is before year 1 in UTC
    except (ValueError, OverflowError, OSError):
        return None
