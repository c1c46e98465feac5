"""Normalisation of feed text, authors, ids and dates (pure functions)."""

from __future__ import annotations

import datetime as dt
import re
import time
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.sources.normalize import (
    arxiv_abs_url,
    arxiv_id,
    arxiv_pdf_url,
    canonical_id,
    clean_abstract,
    clean_text,
    clean_title,
    find_doi,
    first_author_key,
    split_arxiv_description,
    split_authors,
    title_key,
    to_utc,
)

# --------------------------------------------------------------------------------------------
# arXiv ids


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2604.21935", ("2604.21935", None)),
        ("2604.21935v1", ("2604.21935", 1)),
        ("0704.0001", ("0704.0001", None)),
        ("1412.9999v12", ("1412.9999", 12)),
        ("arXiv:2604.21935v3", ("2604.21935", 3)),
        ("oai:arXiv.org:2604.21935v1", ("2604.21935", 1)),
        ("https://arxiv.org/abs/2604.21935", ("2604.21935", None)),
        ("http://arxiv.org/abs/2510.12345v2", ("2510.12345", 2)),
        ("https://arxiv.org/pdf/2604.21935v2", ("2604.21935", 2)),
        ("https://arxiv.org/pdf/2604.21935v2.pdf", ("2604.21935", 2)),
        ("https://arxiv.org/pdf/2604.21935.pdf", ("2604.21935", None)),
        ("https://export.arxiv.org/abs/2604.21935/", ("2604.21935", None)),
        ("https://www.arxiv.org/abs/2604.21935?context=cs#x", ("2604.21935", None)),
        ("arxiv.org/html/2604.21935v1", ("2604.21935", 1)),
        ("  2604.21935  ", ("2604.21935", None)),
        ("hep-th/9901001", ("hep-th/9901001", None)),
        ("hep-th/9901001v2", ("hep-th/9901001", 2)),
        ("math.AG/0601001", ("math/0601001", None)),
        ("arXiv:math.GT/0309136v1", ("math/0309136", 1)),
        ("http://arxiv.org/abs/cond-mat/0102536v1", ("cond-mat/0102536", 1)),
        ("https://arxiv.org/pdf/astro-ph/0601001.pdf", ("astro-ph/0601001", None)),
        ("oai:arXiv.org:quant-ph/0201082", ("quant-ph/0201082", None)),
        ("10.48550/arXiv.2604.21935", ("2604.21935", None)),
        ("https://doi.org/10.48550/arXiv.2604.21935", ("2604.21935", None)),
    ],
)
def test_arxiv_id_finds_every_form(text: str, expected: tuple[str, int | None]) -> None:
    assert arxiv_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not an id",
        "10.1063/1.4944470",  # a DOI whose suffix looks like digits.digits
        "2613.12345",  # month 13
        "0612.1234",  # before April 2007 modern ids did not exist
        "1501.1234",  # from 2015 on sequence numbers have five digits
        "1312.12345",  # ...and before, four
        "https://example.org/abs/2604.21935",  # not arxiv.org
        "https://notarxiv.org/abs/2604.21935",
        "post/2024001",  # not an arXiv archive
        "The paper 2604.21935 is great",  # prose is not an id
        "tag:letters.example.org,2026:picks/17",
    ],
)
def test_arxiv_id_rejects_what_is_not_an_id(text: str | None) -> None:
    assert arxiv_id(text) is None


def test_arxiv_urls_are_https_and_unversioned() -> None:
    assert arxiv_abs_url("2604.21935") == "https://arxiv.org/abs/2604.21935"
    assert arxiv_pdf_url("hep-th/9901001") == "https://arxiv.org/pdf/hep-th/9901001"


modern_ids = st.builds(
    lambda yy, mm, n: f"{yy:02d}{mm:02d}.{n:05d}",
    st.integers(15, 99),
    st.integers(1, 12),
    st.integers(0, 99999),
)


@given(
    ident=modern_ids,
    version=st.integers(1, 40),
    form=st.sampled_from(
        [
            "{id}",
            "arXiv:{id}",
            "oai:arXiv.org:{id}",
            "https://arxiv.org/abs/{id}",
            "http://arxiv.org/pdf/{id}.pdf",
            "https://export.arxiv.org/abs/{id}",
        ]
    ),
)
def test_arxiv_id_round_trips_any_version(ident: str, version: int, form: str) -> None:
    assert arxiv_id(form.format(id=f"{ident}v{version}")) == (ident, version)
    assert arxiv_id(form.format(id=ident)) == (ident, None)


# --------------------------------------------------------------------------------------------
# DOIs and canonical ids


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1063/1.4944470", "10.1063/1.4944470"),
        ("doi:10.1038/S41586-024-00001-1", "10.1038/s41586-024-00001-1"),
        ("info:doi/10.1000/xyz123", "10.1000/xyz123"),
        ("https://doi.org/10.1103/PhysRevLett.132.010001", "10.1103/physrevlett.132.010001"),
        ("http://dx.doi.org/10.1063/1.4944470", "10.1063/1.4944470"),
        ("https://doi.org/10.1002%2F%28SICI%291097-4636", "10.1002/(sici)1097-4636"),
        ("see 10.1000/abc.", "10.1000/abc"),
        ("no doi here", None),
        ("", None),
        (None, None),
    ],
)
def test_find_doi(text: str | None, expected: str | None) -> None:
    assert find_doi(text) == expected


def test_canonical_id_prefers_arxiv_then_doi_then_link() -> None:
    assert canonical_id("2604.21935", "10.1/x", "https://a") == "arxiv:2604.21935"
    assert canonical_id(None, "10.1/X", "https://a") == "doi:10.1/x"
    assert canonical_id("", "", "https://a.org/p?id=3#frag") == "url:https://a.org/p?id=3"


@pytest.mark.parametrize(
    ("arxiv", "doi", "link", "expected"),
    [
        ("2604.21935v3", None, None, "arxiv:2604.21935"),
        ("arXiv:hep-th/9901001v2", None, None, "arxiv:hep-th/9901001"),
        (None, "https://doi.org/10.1063/1.4944470", None, "doi:10.1063/1.4944470"),
        (None, "http://dx.doi.org/10.1063/ABC", None, "doi:10.1063/abc"),
        (None, "doi:10.1063/ABC", None, "doi:10.1063/abc"),
        (None, "10.48550/arXiv.2604.21935", None, "arxiv:2604.21935"),
        (None, None, " https://x.org/a?b=1#c ", "url:https://x.org/a?b=1"),
    ],
)
def test_canonical_id_forms(
    arxiv: str | None, doi: str | None, link: str | None, expected: str
) -> None:
    assert canonical_id(arxiv, doi, link) == expected


def test_canonical_id_needs_something() -> None:
    with pytest.raises(ValueError, match="arXiv id, a DOI or a link"):
        canonical_id(None, " ", "")


@given(ident=modern_ids, v1=st.integers(1, 30), v2=st.integers(1, 30))
def test_canonical_id_is_stable_across_versions(ident: str, v1: int, v2: int) -> None:
    a = canonical_id(f"{ident}v{v1}", None, None)
    b = canonical_id(f"https://arxiv.org/abs/{ident}v{v2}", None, None)
    assert a == b == canonical_id(ident, "10.1/other", "https://x") == f"arxiv:{ident}"


# --------------------------------------------------------------------------------------------
# clean_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  plain   text  ", "plain text"),
        ("line one\nline two\r\nline\tthree", "line one line two line three"),
        ("non\u00a0breaking\u2009spaces", "non breaking spaces"),
        ("<p>One</p><p>Two</p>", "One Two"),
        ("A<br/>B<br>C", "A B C"),
        ("H<sub>2</sub>O and x<sup>2</sup>", "H2O and x2"),
        ('<a href="https://x.org">a link</a> here', "a link here"),
        ("<i>kagome</i> magnets", "kagome magnets"),
        ("Fish &amp; Chips", "Fish & Chips"),
        ("em&#x2014;dash and &#8211; en", "em\u2014dash and \u2013 en"),
        ("caf&eacute; &nbsp; &lt;3", "caf\u00e9 <3"),
        ("double &amp;lt;escaped&amp;gt;", "double &lt;escaped&gt;"),
        ("<script>alert(1)</script>Title", "Title"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;Title", "Title"),
        ("<style>p{color:red}</style>Styled", "Styled"),
        ("x<!-- a comment -->y", "x y"),
        ("Tab\x00Null\x07Bell\x1b", "Tab Null Bell"),
        ("soft\u00adhyphen zero\u200bwidth", "softhyphen zerowidth"),
        (None, ""),
        ("", ""),
    ],
)
def test_clean_text_html_entities_whitespace(raw: str | None, expected: str) -> None:
    assert clean_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (r"\textbf{adaptability}, the ability", "adaptability, the ability"),
        (r"\emph{any} and \textit{every}", "any and every"),
        (r"\textbf{\emph{nested}} macros", "nested macros"),
        (r"code at \url{https://github.com/x/y}", "code at https://github.com/x/y"),
        (r"\href{https://x.org}{our site}", "our site"),
        (r"{\bf bold} and {\it italic}", "bold and italic"),
        (r"40\% faster \& better, a\_b \#1", "40% faster & better, a_b #1"),
        (r"costs \$5", "costs $5"),
        (r"see Fig.~3 and Smith~et~al.", "see Fig. 3 and Smith et al."),
        ("pages 3--5 --- or so", "pages 3--5 --- or so"),
        ("about ~10% of http://x.org/~user", "about ~10% of http://x.org/~user"),
        (r"Landauer-B\"uttiker", "Landauer-B\u00fcttiker"),
        (r"Schr\"{o}dinger and {\"o} and Erd\H{o}s", "Schr\u00f6dinger and \u00f6 and Erd\u0151s"),
        (
            r"Garc\'{\i}a, Garc\'ia, Fran\c{c}ois, \v{S}ime\v{c}ek",
            "Garc\u00eda, Garc\u00eda, Fran\u00e7ois, \u0160ime\u010dek",
        ),
        (r"Gau\ss{} and {\o}rsted", "Gau\u00df and \u00f8rsted"),
        (r"$\mathcal{O}(n \log n)$ Attention", r"$\mathcal{O}(n \log n)$ Attention"),
        (r"$k \ll n$ and $a~b$ stay", r"$k \ll n$ and $a~b$ stay"),
        (r"$$\textbf{x}$$ is math", r"$$\textbf{x}$$ is math"),
        ("$x<a and b>c$ and x<b and c>d", "$x<a and b>c$ and x<b and c>d"),
        (r"\cite{foo} and \unknown{bar}", r"\cite{foo} and \unknown{bar}"),
    ],
)
def test_clean_text_latex(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


def test_clean_title_drops_markup_and_line_breaks() -> None:
    raw = "<script>x()</script>On <b>Bold</b> &amp; Safe\r\nTitles\u2028here"
    assert clean_title(raw) == "On Bold & Safe Titles here"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            r"Inference Scaling \scriptsize{F}Laws: The Limits of LLM Resampling",
            "Inference Scaling FLaws: The Limits of LLM Resampling",
        ),
        (r"On Diamond's $L^1$ criterion", "On Diamond's L\u00b9 criterion"),
        (r"Algebras over ${\rm SL}_3(\mathbb{Z}_p) $", "Algebras over SL\u2083(\u2124\u209a)"),
        (r"A global approach to $p$-adic operators", "A global approach to p-adic operators"),
        (
            r"$\mathcal{O}(n \log n)$ Attention with $k \ll n$",
            "O(n log n) Attention with k \u226a n",
        ),
        (r"A $\frac{1}{2}$-approximation in $O(n^{2.5})$", "A 1/2-approximation in O(n^(2.5))"),
        (
            r"$\alpha$-Divergence and $\sqrt{d}$ and $x^{n+1}$",
            "\u03b1-Divergence and \u221ad and x\u207f\u207a\u00b9",
        ),
        (r"{GPT}-4 reads \LaTeX{} in {\bf bold}", "GPT-4 reads LaTeX in bold"),
        (r"Small \tiny{caps} and \textsc{Names} \cite{key}\footnote{x}.", "Small caps and Names."),
        (r"Costs \$5 \& a new line\\here", "Costs $5 & a new line here"),
        (r"Schr\"{o}dinger bridges", "Schr\u00f6dinger bridges"),
    ],
)
def test_clean_title_renders_latex_never_glued_to_words(raw: str, expected: str) -> None:
    assert clean_title(raw) == expected
    assert "\\" not in clean_title(raw) and "{" not in clean_title(raw)


def test_title_and_author_keys() -> None:
    a = clean_title(r"Inference Scaling \scriptsize{F}Laws: the limits")
    assert (
        title_key(a)
        == title_key("Inference scaling FLaws -- The Limits!")
        == ("inferencescalingflawsthelimits")
    )
    assert title_key(clean_title(r"$L^1$ bounds")) == title_key("L^1 bounds") == "l1bounds"
    assert title_key("Schrödinger Bridges") == title_key("Schrodinger bridges")
    assert first_author_key(("Sayash Kapoor", "A. N. Other")) == "kapoor"
    assert first_author_key(("Kapoor, Sayash",)) == "kapoor"
    assert first_author_key(("John Smith, Jr.",)) == "smith"
    assert first_author_key(("Ødegård, Søren",)) == first_author_key(("Søren Ødegård",))
    assert first_author_key(()) == ""


def test_clean_text_keeps_unicode_text() -> None:
    assert clean_text("Søren Ødegård — 東京大学") == "Søren Ødegård — 東京大学"


printable = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="&"), max_size=80
)
PIECES = [
    "<p>",
    "</p>",
    "<b>",
    "</b>",
    "<br/>",
    "<script>bad()</script>",
    "\r\n",
    "\x00",
    "\u00a0",
    "\\textbf{",
    "}",
    "$",
    "~",
    "Fig.~3",
]
markup = st.lists(
    st.one_of(printable, st.sampled_from([*PIECES, "\\&", "&amp;", "&lt;b&gt;"])), max_size=12
).map("".join)
# Without '&': clean_text unescapes exactly once, so "&amp;lt;" legitimately changes twice.
markup_without_entities = st.lists(st.one_of(printable, st.sampled_from(PIECES)), max_size=12).map(
    "".join
)


@given(markup)
def test_clean_text_never_yields_control_chars_or_known_tags(s: str) -> None:
    out = clean_text(s)
    assert not any(unicodedata.category(c) == "Cc" for c in out)
    assert "<script" not in out.lower()
    assert out == out.strip()
    assert "  " not in out


@given(markup_without_entities)
def test_clean_text_is_idempotent_without_entities(s: str) -> None:
    once = clean_text(s)
    assert clean_text(once) == once


latex_titles = st.lists(
    st.one_of(
        printable,
        st.sampled_from(
            [
                "$",
                "\\",
                "{",
                "}",
                "^",
                "_",
                "\\alpha",
                "\\frac",
                "\\mathbb{",
                "\\scriptsize",
                "\\bf ",
            ]
        ),
    ),
    max_size=14,
).map("".join)


@given(latex_titles)
def test_clean_title_never_shows_a_command(s: str) -> None:
    out = clean_title(s)
    assert not re.search(r"\\[A-Za-z]", out), out
    if "\\{" not in s and "\\}" not in s:
        assert "{" not in out and "}" not in out, out


# --------------------------------------------------------------------------------------------
# arXiv descriptions and abstracts


def test_split_arxiv_description() -> None:
    raw = "arXiv:2604.21935v1 Announce Type: new \nAbstract: Although language models"
    assert split_arxiv_description(raw) == ("2604.21935v1", "new", "Although language models")
    raw = "arXiv:2602.01234v3 Announce Type: replace-cross \nAbstract: A cross"
    assert split_arxiv_description(raw)[:2] == ("2602.01234v3", "replace-cross")
    assert split_arxiv_description("Just an abstract.") == (None, None, "Just an abstract.")
    assert split_arxiv_description(None) == (None, None, "")


def test_clean_abstract_multi_line() -> None:
    raw = (
        "arXiv:2604.21936v1 Announce Type: new \nAbstract: Two requirements:\n"
        "\\textbf{adaptability}; and\n\n  \\textbf{reproducibility}."
    )
    assert clean_abstract(raw) == "Two requirements: adaptability; and reproducibility."
    assert clean_abstract('  We extend the\nLandauer-B\\"uttiker formalism\n') == (
        "We extend the Landauer-B\u00fcttiker formalism"
    )


# --------------------------------------------------------------------------------------------
# Authors


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Michael Cooper, Samuel Cooper", ("Michael Cooper", "Samuel Cooper")),
        ("A. One, B. Two and C. Three", ("A. One", "B. Two", "C. Three")),
        ("A. One, B. Two, and C. Three", ("A. One", "B. Two", "C. Three")),
        ("Maria Rossi and Kenji Tanaka", ("Maria Rossi", "Kenji Tanaka")),
        ("Maria Rossi AND Kenji Tanaka", ("Maria Rossi", "Kenji Tanaka")),
        ("Laurel & Hardy", ("Laurel", "Hardy")),
        ("Paul Martin; Sofia Costa", ("Paul Martin", "Sofia Costa")),
        ("Smith, J.; Doe, J.", ("Smith, J.", "Doe, J.")),
        ("John Smith, Jr., Jane Doe", ("John Smith, Jr.", "Jane Doe")),
        (
            "John Smith, Jr, Jane Doe, Henry Ford III",
            ("John Smith, Jr", "Jane Doe", "Henry Ford III"),
        ),
        ("Ann Lee, III, Bo Ek", ("Ann Lee, III", "Bo Ek")),
        ("Ann Lee, V. Roe", ("Ann Lee", "V. Roe")),
        ("Wei Zhang (Tsinghua University, Beijing), Ann Lee (MIT)", ("Wei Zhang", "Ann Lee")),
        ("A (x (nested, y)), B", ("A", "B")),
        ("  Ann\n  Lee ,\n Bob   Roe ,, ", ("Ann Lee", "Bob Roe")),
        ("Anderson Sandler, Brandon Andrews", ("Anderson Sandler", "Brandon Andrews")),
        (r"Jos\'e M\"uller, Ana Garc\'ia", ("Jos\u00e9 M\u00fcller", "Ana Garc\u00eda")),
        ("", ()),
        (None, ()),
        (" , and ; ", ()),
    ],
)
def test_split_authors(raw: str | None, expected: tuple[str, ...]) -> None:
    assert split_authors(raw) == expected


@given(st.lists(st.from_regex(r"[A-Z][a-z]{1,8} [A-Z][a-z]{1,10}", fullmatch=True), max_size=8))
def test_split_authors_round_trips_comma_joined_names(names: list[str]) -> None:
    assert split_authors(", ".join(names)) == tuple(names)


# --------------------------------------------------------------------------------------------
# Dates


def test_to_utc() -> None:
    utc = dt.UTC
    expected = dt.datetime(2026, 4, 27, 4, 0, tzinfo=utc)
    assert to_utc(time.struct_time((2026, 4, 27, 4, 0, 0, 0, 117, 0))) == expected
    assert to_utc("2026-04-27T04:00:00Z") == expected
    assert to_utc("2026-04-27T00:00:00-04:00") == expected
    assert to_utc("2026-04-27T04:00:00.000Z") == expected
    assert to_utc(dt.datetime(2026, 4, 27, 4, 0)) == expected  # naive means UTC
    tokyo = dt.timezone(dt.timedelta(hours=9))
    assert to_utc(dt.datetime(2026, 4, 27, 13, 0, tzinfo=tokyo)) == expected
    assert to_utc(dt.date(2026, 4, 27)) == dt.datetime(2026, 4, 27, tzinfo=utc)
    assert to_utc("2026-04-27") == dt.datetime(2026, 4, 27, tzinfo=utc)
    for bad in (None, "", "yesterday", 12, "2026-13-01"):
        assert to_utc(bad) is None
    # Parseable, but out of range once moved to UTC: unknown, not an OverflowError.
    for edge in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        assert to_utc(edge) is None
    result = to_utc("2026-04-27T04:00:00+02:00")
    assert result is not None and result.tzinfo is dt.UTC
