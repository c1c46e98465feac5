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
    "first_author_key",
    "render_latex",
    "split_arxiv_description",
    "split_authors",
    "title_key",
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


def _latex_to_text(s: str, *, title: bool = False) -> str:
    """Readable text from LaTeX text-mode markup; math spans are left exactly as written,
    or, in a title, rendered (see _render_math) with every other command dropped."""
    out: list[str] = []
    pos = 0
    for m in _MATH.finditer(s):
        out.append(_latex_text_segment(s[pos : m.start()], title=title))
        out.append(_render_math(m.group(0)) if title else m.group(0))
        pos = m.end()
    out.append(_latex_text_segment(s[pos:], title=title))
    return "".join(out)


def _latex_text_segment(s: str, *, title: bool = False) -> str:
    if "\\" in s:
        s = _ACCENT.sub(_accent, s)
        s = _LETTER.sub(lambda m: _LETTERS[m.group(2)], s)
        # Nested macros (\textbf{\emph{x}}) unwrap from the inside out.
        for _ in range(5):
            new = _FONT_SWITCH.sub(r"\1", _HREF.sub(r"\1", _TEXT_MACROS.sub(r"\1", s)))
            if new == s:
                break
            s = new
        if title:
            s = _title_commands(s)
        s = _ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], s)
    if "~" in s:
        s = _TIE.sub(" ", s)
    if title and ("{" in s or "}" in s):
        s = _BRACES.sub("", s)  # BibTeX-style case guards: "{GPT}-4"
    return s


# --------------------------------------------------------------------------------------------
# LaTeX in titles: a title is shown as a heading and matched across feeds, so commands are
# rendered or dropped there, never left as text ("\scriptsize{F}Laws" is "FLaws").

_LOGOS = {"LaTeX": "LaTeX", "TeX": "TeX", "ldots": "\u2026", "dots": "\u2026", "S": "\u00a7"}
#: Commands whose argument is not title text (a citation key, a footnote).
_NOT_TEXT = frozenset("cite citep citet ref eqref label footnote thanks".split())  # noqa: SIM905
_COMMAND = re.compile(r"\\([A-Za-z]+)\*?|\\(.)")
_BRACES = re.compile(r"(?<!\\)[{}]")


def _title_commands(s: str) -> str:
    """Text-mode commands outside the known macros: logos named, citations and footnotes
    dropped with their argument, any other command dropped alone (its braces go later, so
    ``\\scriptsize{F}Laws`` is "FLaws"). Escapes (``\\&``) stay for the caller."""
    out: list[str] = []
    pos = 0
    for m in _COMMAND.finditer(s):
        out.append(s[pos : m.start()])
        pos = m.end()
        name, char = m.group(1), m.group(2)
        if char is not None:  # "\\&" is text; "\\\\", "\\ " and "\\," are spaces
            out.append(m.group(0) if char in "&%_#${}" else " ")
        elif name in _LOGOS:
            out.append(_LOGOS[name])
            if s.startswith("{}", pos):
                pos += 2
        elif name in _NOT_TEXT:  # "results \\cite{x}." -> "results."
            out[-1] = out[-1].rstrip()
            _, pos = _argument(s, pos)
    out.append(s[pos:])
    return "".join(out)


_GREEK = {
    name: chr(code)
    for name, code in [
        ("alpha", 0x3B1), ("beta", 0x3B2), ("gamma", 0x3B3), ("delta", 0x3B4),
        ("epsilon", 0x3B5), ("varepsilon", 0x3B5), ("zeta", 0x3B6), ("eta", 0x3B7),
        ("theta", 0x3B8), ("vartheta", 0x3D1), ("iota", 0x3B9), ("kappa", 0x3BA),
        ("lambda", 0x3BB), ("mu", 0x3BC), ("nu", 0x3BD), ("xi", 0x3BE), ("pi", 0x3C0),
        ("varpi", 0x3D6), ("rho", 0x3C1), ("varrho", 0x3F1), ("sigma", 0x3C3),
        ("varsigma", 0x3C2), ("tau", 0x3C4), ("upsilon", 0x3C5), ("phi", 0x3C6),
        ("varphi", 0x3C6), ("chi", 0x3C7), ("psi", 0x3C8), ("omega", 0x3C9),
        ("Gamma", 0x393), ("Delta", 0x394), ("Theta", 0x398), ("Lambda", 0x39B),
        ("Xi", 0x39E), ("Pi", 0x3A0), ("Sigma", 0x3A3), ("Upsilon", 0x3A5), ("Phi", 0x3A6),
        ("Psi", 0x3A8), ("Omega", 0x3A9),
    ]
}  # fmt: skip
_SYMBOLS = {
    **_GREEK,
    "infty": "\u221e", "times": "\u00d7", "cdot": "\u00b7", "leq": "\u2264", "le": "\u2264",
    "geq": "\u2265", "ge": "\u2265", "neq": "\u2260", "ne": "\u2260", "to": "\u2192",
    "rightarrow": "\u2192", "leftarrow": "\u2190", "mapsto": "\u21a6", "pm": "\u00b1",
    "mp": "\u2213", "approx": "\u2248", "sim": "~", "simeq": "\u2243", "equiv": "\u2261",
    "ll": "\u226a", "gg": "\u226b", "in": "\u2208", "notin": "\u2209", "subset": "\u2282",
    "subseteq": "\u2286", "cup": "\u222a", "cap": "\u2229", "setminus": "\u2216",
    "emptyset": "\u2205", "ell": "\u2113", "partial": "\u2202", "nabla": "\u2207",
    "sum": "\u2211", "prod": "\u220f", "int": "\u222b", "circ": "\u2218", "star": "\u22c6",
    "ast": "\u2217", "otimes": "\u2297", "oplus": "\u2295", "forall": "\u2200",
    "exists": "\u2203", "neg": "\u00ac", "wedge": "\u2227", "vee": "\u2228", "mid": "|",
    "prime": "\u2032", "ldots": "\u2026", "cdots": "\u22ef", "dots": "\u2026",
    "hbar": "\u210f", "sqrt": "\u221a", "langle": "\u27e8", "rangle": "\u27e9",
    "lfloor": "\u230a", "rfloor": "\u230b", "lceil": "\u2308", "rceil": "\u2309",
    "propto": "\u221d", "perp": "\u22a5", "parallel": "\u2225", "deg": "\u00b0",
}  # fmt: skip
#: Operator names written in roman type: shown as the word.
_WORDS = frozenset(
    """log ln exp sin cos tan sinh cosh tanh arg max min sup inf lim det dim ker deg gcd Pr
    mod bmod argmax argmin""".split()  # noqa: SIM905
)
#: Sizing and spacing that shows nothing.
_SILENT = frozenset(
    """left right big Big bigg Bigg bigl bigr Bigl Bigr displaystyle textstyle scriptstyle
    limits nolimits""".split()  # noqa: SIM905
)
_DOUBLE_STRUCK = {"C": "\u2102", "H": "\u210d", "N": "\u2115", "P": "\u2119", "Q": "\u211a",
                  "R": "\u211d", "Z": "\u2124"}  # fmt: skip
_SUPERSCRIPT = dict(
    zip("0123456789+-=()niT", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
        "\u207a\u207b\u207c\u207d\u207e\u207f\u2071\u1d40", strict=True)
)  # fmt: skip
_SUBSCRIPT = dict(
    zip("0123456789+-=()aehijklmnoprstuvx", "\u2080\u2081\u2082\u2083\u2084\u2085\u2086"
        "\u2087\u2088\u2089\u208a\u208b\u208c\u208d\u208e\u2090\u2091\u2095\u1d62"
        "\u2c7c\u2096\u2097\u2098\u2099\u2092\u209a\u1d63\u209b\u209c\u1d64\u1d65"
        "\u2093", strict=True)
)  # fmt: skip


def _argument(src: str, i: int) -> tuple[str, int]:
    """The argument starting at src[i] (spaces skipped): a braced group, a command or one
    character; and the position after it."""
    while i < len(src) and src[i] == " ":
        i += 1
    if i >= len(src):
        return "", i
    if src[i] == "{":
        depth = 0
        for j in range(i, len(src)):
            depth += {"{": 1, "}": -1}.get(src[j], 0)
            if depth == 0:
                return src[i + 1 : j], j + 1
        return src[i + 1 :], len(src)
    if src[i] == "\\":
        m = _COMMAND.match(src, i)
        assert m is not None  # a backslash always starts a command or an escape
        return m.group(0), m.end()
    return src[i], i + 1


def _script(text: str, marks: dict[str, str], sign: str) -> str:
    """``text`` as superscript (or subscript) characters where Unicode has them all, else
    written ``^x`` / ``^(xy)``."""
    if text and all(c in marks for c in text):
        return "".join(marks[c] for c in text)
    return sign + (text if len(text) <= 1 else f"({text})")


def _render_math(span: str) -> str:
    """A ``$...$`` span as plain text: ``$L^1$`` -> ``L\u00b9``, ``$\\mathbb{Z}_p$`` ->
    ``\u2124\u209a``, ``$\\alpha$-divergence`` keeps its hyphen outside."""
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if span.startswith(left) and span.endswith(right) and len(span) >= len(left + right):
            span = span[len(left) : len(span) - len(right)]
            break
    return " ".join(_math(span).split())


def _math(src: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(src):
        c = src[i]
        if c == "\\":
            m = _COMMAND.match(src, i)
            assert m is not None
            i = m.end()
            name, char = m.group(1), m.group(2)
            if char is not None:
                out.append(char if char in "{}$%&#_|" else " ")
            elif name in _SYMBOLS and name != "sqrt":
                out.append(_SYMBOLS[name])
            elif name in _WORDS:
                out.append(name)
            elif name == "frac":
                num, i = _argument(src, i)
                den, i = _argument(src, i)
                out.append(f"{_math(num)}/{_math(den)}")
            elif name == "sqrt":
                arg, i = _argument(src, i)
                inner = _math(arg)
                out.append("\u221a" + (inner if len(inner) <= 1 else f"({inner})"))
            elif name == "mathbb":
                arg, i = _argument(src, i)
                out.append("".join(_DOUBLE_STRUCK.get(ch, ch) for ch in _math(arg)))
            elif name not in _SILENT and i < len(src) and src[i] == "{":
                arg, i = _argument(src, i)  # \\mathrm{x}, \\text{x}, \\hat{x}, ...: x
                out.append(_math(arg))
            # any other command (\\rm, \\left, \\quad) shows nothing
        elif c in "^_":
            arg, i = _argument(src, i + 1)
            text = _math(arg).replace(" ", "")
            out.append(
                _script(text, _SUPERSCRIPT, "^") if c == "^" else _script(text, _SUBSCRIPT, "_")
            )
        elif c == "{":
            arg, i = _argument(src, i)
            out.append(_math(arg))
        elif c == "~":
            out.append(" ")
            i += 1
        elif c == "}":
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def clean_text(s: str | None, *, render_latex: bool = False) -> str:
    """Plain, single-line text from feed text that may hold HTML, entities and LaTeX.

    HTML tags are dropped (block tags become spaces, script/style lose their content),
    entities are unescaped exactly once, LaTeX text macros and accents become text while
    ``$...$`` math stays as written (``render_latex``: see clean_title), and whitespace
    and control characters collapse to single spaces.
    """
    if not s:
        return ""
    s = _strip_markup(s)
    s = html.unescape(s)
    # Publishers double-escape markup far more often than they mean a literal tag in a
    # title, so markup that only appears after unescaping is markup too.
    s = _strip_markup(s)
    s = _latex_to_text(s, title=render_latex)
    s = s.translate(_INVISIBLE)
    # Control characters (CR, LF, NUL, C1 ...) become spaces so words never fuse.
    s = _CONTROL.sub(" ", s)
    return _WS.sub(" ", s).strip()


def render_latex(s: str) -> str:
    """Already clean text with its LaTeX rendered as clean_title does (math as text,
    commands dropped): how a reader sees an abstract's ``$p$-adic``."""
    return _latex_to_text(s, title=True) if "$" in s or "\\" in s else s


def clean_title(s: str | None) -> str:
    """A title as one line of plain text (never markup, CR/LF or control characters), with
    LaTeX rendered or dropped: ``$L^1$`` -> ``L\u00b9``, ``\\scriptsize{F}Laws`` -> ``FLaws``."""
    return clean_text(s, render_latex=True)


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


def title_key(title: str) -> str:
    """What two records of one paper share in their titles whatever the feed did to them:
    case, accents, punctuation, spacing and rendered LaTeX aside ("FLaws" from
    ``\\scriptsize{F}Laws``, "L1" from ``$L^1$``, ``L^1`` or "L¹"). Feed the cleaned title."""
    folded = unicodedata.normalize("NFKD", title.casefold())
    return "".join(c for c in folded if c.isalnum())


def first_author_key(authors: tuple[str, ...]) -> str:
    """The first author's surname, folded like title_key ("Kapoor" from "Sayash Kapoor" and
    from "Kapoor, S."); "" without authors."""
    if not authors:
        return ""
    name = authors[0]
    last, _, rest = name.partition(",")
    if rest and not _SUFFIX.match(rest.strip()):
        surname = last  # "Kapoor, Sayash"
    else:
        words = last.split()  # "Sayash Kapoor" or "John Smith, Jr."
        surname = words[-1] if words else ""
    return title_key(surname)


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
