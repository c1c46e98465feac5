"""A subscriber's library: pasted ids, BibTeX and RIS exports read; arXiv ids looked up."""

from __future__ import annotations

import contextlib
import json
import lzma
import re
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletter.config import FetchSettings
from newsletter.personal import Interests, LibraryPaper
from newsletter.personal.fetch import BATCH_SIZE, Lookup, complete, look_up
from newsletter.personal.library import (
    MAX_BYTES,
    MAX_ENTRIES,
    MAX_PAPERS,
    BadLibrary,
    LibraryFormat,
    ParsedLibrary,
    identify,
    read_library,
)
from newsletter.sources.http import Fetcher
from newsletter.sources.normalize import clean_title

DATA = Path(__file__).parent / "data"
LIBRARIES = DATA / "library"
FEEDS = DATA / "feeds"


def read(name: str, **kw) -> ParsedLibrary:
    return read_library((LIBRARIES / name).read_bytes(), filename=name, **kw)


def by_id(library: ParsedLibrary) -> dict[str | None, LibraryPaper]:
    return {p.id: p for p in library.papers}


def problems(library: ParsedLibrary) -> list[str]:
    return [str(p) for p in library.problems]


ELL = "On the inconsistency of \u2113\u2081-penalised sparse precision matrix estimation"
LUKASIEWICZ = (
    "Reverse Engineering and Symbolic Knowledge Extraction on Łukasiewicz Fuzzy Logics "
    "using Linear Neural Networks"
)
KILGOUR = "Inelastic effects in molecular transport junctions: The probe technique at high bias"


# --------------------------------------------------------------------------------------------
# Exports as reference managers write them


def test_zotero_bibtex():
    lib = read("zotero.bib")
    assert lib.format is LibraryFormat.BIBTEX
    assert problems(lib) == []
    assert [p.id for p in lib.papers] == [
        "arxiv:1603.02532",
        "arxiv:1604.02774",
        "arxiv:1805.10174",
        "arxiv:1810.10909",
        "arxiv:1312.3168",
        "doi:10.1063/1.4944470",
    ]
    papers = by_id(lib)
    ell = papers["arxiv:1603.02532"]
    # Zotero writes arXiv's "$\ell_1$" as "\${\textbackslash}ell\_1\$" and protects
    # capitalised words with braces: both undone, the LaTeX rendered as in a feed's title
    assert ell.title == ELL
    assert ell.abstract.startswith("Various $\\ell_1$-penalised estimation methods such as")
    assert ell.authors == ("Otte Heinävaara", "Janne Leppä-aho", "Jukka Corander", "Antti Honkela")
    assert papers["arxiv:1604.02774"].title == LUKASIEWICZ
    assert "finite truth valued Łukasiewicz logic" in papers["arxiv:1604.02774"].abstract
    assert papers["arxiv:1805.10174"].title.startswith("f-CNN^x: A Toolflow for")
    assert papers["arxiv:1810.10909"].title == (
        "Une architecture cognitive et affective orientée interaction"
    )
    assert papers["arxiv:1312.3168"].authors == ("Bruno Mery", "Christian Retoré")
    journal = papers["doi:10.1063/1.4944470"]
    assert journal.title == KILGOUR
    assert journal.abstract == ""
    assert journal.authors == ("Michael Kilgour", "Dvira Segal")
    assert [e.key for e in lib.entries][:2] == [
        "heinavaara_inconsistency_2016",
        "leandro_reverse_2016",
    ]
    assert [e.line for e in lib.entries] == [1, 16, 31, 46, 61, 76]


def test_mendeley_bibtex():
    lib = read("mendeley.bib")
    assert problems(lib) == []
    papers = by_id(lib)
    assert list(papers) == [
        "arxiv:1205.6832",
        "arxiv:1211.0418",
        "arxiv:1603.02532",
        "arxiv:1707.05062",
    ]
    assert papers["arxiv:1205.6832"].title == (
        "Système d'aide à l'accès lexical : trouver le mot qu'on a sur le bout de la langue"
    )
    assert papers["arxiv:1205.6832"].authors[0] == "Gaëlle Lortal"
    assert papers["arxiv:1211.0418"].authors == (
        "Normunds Grūzītis",
        "Gunta Nešpore",
        "Baiba Saulīte",
    )
    # "{\$}{\backslash}ell{\_}1{\$}" is Mendeley's way of writing "$\ell_1$"
    assert papers["arxiv:1603.02532"].title == ELL
    assert papers["arxiv:1707.05062"].title == (
        "Speeding up the Köhler's method of contrast thresholding"
    )
    assert papers["arxiv:1707.05062"].abstract.startswith("Köhler's method is a useful")


def test_google_scholar_bibtex():
    lib = read("scholar.bib")
    assert problems(lib) == []
    # the arXiv id is only in "journal={arXiv preprint arXiv:1604.02774}"
    assert [p.id for p in lib.papers] == [
        "arxiv:1604.02774",
        "arxiv:1603.02532",
        "arxiv:1805.10174",
        None,  # a journal paper: Scholar gives neither DOI nor link; the title is kept
    ]
    assert lib.papers[0].title.startswith("Reverse engineering and symbolic knowledge extraction")
    assert "Łukasiewicz" in lib.papers[0].title
    assert lib.papers[1].authors[0] == "Otte Heinävaara"
    assert lib.papers[3].title == KILGOUR
    assert all(p.abstract == "" for p in lib.papers)
    # every one has a title, so every one counts
    assert len(Interests.of(library=lib.papers).library) == 4


def test_jabref_bibtex():
    lib = read("jabref.bib")
    assert problems(lib) == []
    # the versioned eprint ("1707.05062v1") names the paper, not a version of it
    assert [p.id for p in lib.papers] == ["arxiv:1707.05062", "arxiv:1211.0418"]
    assert lib.papers[0].title == "Speeding up the Köhler's method of contrast thresholding"
    assert lib.papers[1].authors == ("Normunds Grūzītis", "Gunta Nešpore", "Baiba Saulīte")
    assert [e.line for e in lib.entries] == [3, 16]


def test_zotero_ris():
    lib = read("zotero.ris")
    assert lib.format is LibraryFormat.RIS
    assert problems(lib) == []
    papers = by_id(lib)
    assert list(papers) == [
        "arxiv:1603.02532",
        "arxiv:1604.02774",
        "arxiv:1810.10909",
        "doi:10.1063/1.4944470",
    ]
    assert papers["arxiv:1603.02532"].title == ELL
    assert papers["arxiv:1604.02774"].title == LUKASIEWICZ
    # the abstract runs over five lines without a tag: all of it is read
    assert papers["arxiv:1810.10909"].abstract.startswith("In this paper, we present CAIO")
    assert papers["arxiv:1810.10909"].abstract.endswith("implementation on a Nao robot.")
    assert papers["doi:10.1063/1.4944470"].title == KILGOUR
    assert [e.line for e in lib.entries] == [1, 23, 41, 67]


def test_mendeley_ris():
    lib = read("mendeley.ris")
    assert problems(lib) == []
    assert [(e.paper.id, e.key) for e in lib.entries] == [
        ("arxiv:1205.6832", "Lortal2012"),
        ("arxiv:1312.3168", "Mery2013"),
        ("arxiv:1211.0418", "Gruzitis2012"),
    ]
    assert lib.papers[0].title.startswith("Système d'aide à l'accès lexical")
    assert lib.papers[1].authors == ("Bruno Mery", "Christian Retoré")


def test_endnote_ris_with_t1_a1_n2_and_crlf():
    lib = read("endnote.ris")
    assert problems(lib) == []
    (paper,) = lib.papers
    assert paper.id == "arxiv:1707.05062"
    assert paper.title == "Speeding up the Köhler's method of contrast thresholding"
    assert paper.authors == ("Guillaume Noyel",)
    assert paper.abstract.startswith("Köhler's method is a useful multi-thresholding technique")


def test_every_export_of_one_paper_reads_the_same():
    """Whatever wrote it, a paper reads as one text: the same title, abstract and authors."""
    seen: dict[tuple[str, str], set] = {}
    for name in (
        "zotero.bib",
        "mendeley.bib",
        "scholar.bib",
        "jabref.bib",
        "zotero.ris",
        "mendeley.ris",
        "endnote.ris",
    ):
        for p in read(name).papers:
            for field in ("title", "abstract", "authors"):
                value = getattr(p, field)
                if p.id and value and not (name == "scholar.bib" and field == "title"):
                    seen.setdefault((p.id, field), set()).add(value)  # Scholar lower-cases
    assert len({ident for ident, _ in seen}) == 9
    assert {key: values for key, values in seen.items() if len(values) > 1} == {}


# --------------------------------------------------------------------------------------------
# LaTeX


@pytest.mark.parametrize(
    ("written", "title"),
    [
        ("{BERT}: {Pre}-training of Deep Bidirectional Transformers", None),
        ("{{BERT: Pre-training of Deep Bidirectional Transformers}}", None),
        ("\\textit{{BERT}}: {Pre}-training of \\emph{Deep} Bidirectional Transformers", None),
        ("Reverse engineering on {\\L}ukasiewicz fuzzy logics", "on Łukasiewicz fuzzy"),
        ("Une architecture orient{\\'e}e interaction", "orientée interaction"),
        ("Une architecture orient\\'{e}e interaction", "orientée interaction"),
        ("Syst\\`eme d'aide \\`a l'acc\\`es", "Système d'aide à l'accès"),
        ("K{\\\"o}hler's {\\em method}", "Köhler's method"),
        ("On $\\ell_1$-penalised {GAN}s", "On \u2113\u2081-penalised GANs"),
        ("f-CNN$^{\\text{x}}$: {A} Toolflow", "f-CNN^x: A Toolflow"),
        ("Speeding up the {K}{\\textbackslash}\"ohler's method", "Speeding up the Köhler's method"),
        ("50\\% faster \\& smaller", "50% faster & smaller"),
    ],
)
def test_latex_in_bibtex_titles(written, title):
    lib = read_library(f"@article{{k,\n  title = {{{written}}},\n}}\n")
    got = lib.papers[0].title
    if title is None:
        assert got == "BERT: Pre-training of Deep Bidirectional Transformers"
    else:
        assert title in got
    assert "{" not in got.replace("{\\text{x}}", "") and "\\textit" not in got


def test_latex_in_author_names():
    lib = read_library(
        '@article{k, title={T}, author={Hein{\\"{a}}vaara, Otte and Kaiser, {\\L}ukasz and '
        "von Neumann, John and Smith, Jr., John and {Google Research} and others}}"
    )
    assert lib.papers[0].authors == (
        "Otte Heinävaara",
        "Łukasz Kaiser",
        "John von Neumann",
        "John Smith Jr.",
        "Google Research",
    )


# --------------------------------------------------------------------------------------------
# Broken entries: reported with their line and key, the rest kept


def test_broken_bibtex_entries_are_reported_and_the_rest_kept():
    text = """\
@article{good1,
  title = {The first good one},
  eprint = {1706.03762},
}

@article{smith2020,
  title = {An unclosed {brace,
  author = {Smith, Jane},
}

@article{nocomma
  title = {No comma after the key},
}

@misc{untitled2019,
  author = {Doe, John},
  year = {2019},
}

@article{good2,
  title = {The second good one},
  doi = {10.1145/3292500.3330701},
}
"""
    lib = read_library(text)
    assert [(e.key, e.line, e.paper.id) for e in lib.entries] == [
        ("good1", 1, "arxiv:1706.03762"),
        ("good2", 20, "doi:10.1145/3292500.3330701"),
    ]
    reasons = problems(lib)
    assert len(reasons) == 3
    assert reasons[0].startswith("entry smith2020 (line 6): not valid BibTeX (")
    assert "the entry is left out" in reasons[0]
    assert reasons[1].startswith("entry nocomma (line 11): not valid BibTeX (")
    assert reasons[2] == "entry untitled2019 (line 15): no title, arXiv id or DOI"
    assert all("\n" not in r for r in reasons)


def test_an_entry_without_title_is_kept_by_its_id():
    lib = read_library("@misc{a, eprint = {1601.00001}, archivePrefix = {arXiv}}\n")
    assert lib.papers == (LibraryPaper(title="", id="arxiv:1601.00001"),)
    assert lib.without_text == ("arxiv:1601.00001",)
    # an eprint of another archive is no arXiv id
    lib = read_library("@misc{a, title={T}, eprint = {12345678}, eprinttype = {pubmed}}\n")
    assert lib.papers[0].id is None


def test_a_bibtex_file_cut_off_keeps_what_came_before():
    data = (LIBRARIES / "zotero.bib").read_bytes()
    cut = data[: data.index(b"@misc{pellier") + 300]
    lib = read_library(cut)
    assert [p.id for p in lib.papers] == [
        "arxiv:1603.02532",
        "arxiv:1604.02774",
        "arxiv:1805.10174",
    ]
    (problem,) = problems(lib)
    assert problem.startswith("entry pellier_architecture_2018 (line 46): not valid BibTeX")


def test_a_key_used_twice_loses_neither_paper():
    lib = read_library(
        "@article{k, title = {One paper on ranking}}\n@article{k, title = {Another paper}}\n"
        "@article{j, title = {One  Paper on {R}anking.}}\n@article{e, title = {Another Paper}}\n"
    )
    # the third is the first again (case and punctuation aside): merged, and said so; a
    # title of two words names no paper by itself: the fourth is another
    assert [p.title for p in lib.papers] == [
        "One paper on ranking",
        "Another paper",
        "Another Paper",
    ]
    assert problems(lib) == ["entry j (line 3): the same paper as entry k (line 1); counted once"]


def test_broken_ris_records():
    text = """\
TY  - JOUR
TI  - A record without its end
AU  - Doe, Jane
TY  - JOUR
TI  - The next one
DO  - 10.1145/3292500.3330701
ER  -

TY  - GEN
PY  - 2020
ER  -

TY  - JOUR
TI  - Cut off here
UR  - https://arxiv.org/abs/1706.03762v7
"""
    lib = read_library(text)
    assert [(e.line, e.paper.title, e.paper.id) for e in lib.entries] == [
        (1, "A record without its end", None),
        (4, "The next one", "doi:10.1145/3292500.3330701"),
        (13, "Cut off here", "arxiv:1706.03762"),
    ]
    assert lib.papers[0].authors == ("Jane Doe",)
    assert problems(lib) == [
        "line 1: the record has no ER line (read as far as it goes)",
        "line 9: no title, arXiv id or DOI",
        "line 13: the record has no ER line (read as far as it goes)",
    ]


# --------------------------------------------------------------------------------------------
# A list pasted by hand


@pytest.mark.parametrize(
    ("written", "ident"),
    [
        ("2401.01234", "arxiv:2401.01234"),
        ("2401.01234v3", "arxiv:2401.01234"),
        ("arXiv:2401.01234v2", "arxiv:2401.01234"),
        ("1501.0001", None),  # four digits after 2014: no such id
        ("0704.0001", "arxiv:0704.0001"),
        ("hep-th/9901001", "arxiv:hep-th/9901001"),
        ("math.AG/0601001v2", "arxiv:math/0601001"),
        ("https://arxiv.org/abs/2401.01234", "arxiv:2401.01234"),
        ("http://arxiv.org/pdf/2401.01234v1.pdf", "arxiv:2401.01234"),
        ("https://arxiv.org/html/2401.01234v2#S3", "arxiv:2401.01234"),
        ("arxiv.org/abs/hep-th/9901001", "arxiv:hep-th/9901001"),
        ("https://export.arxiv.org/abs/2401.01234", "arxiv:2401.01234"),
        ("10.48550/arXiv.2401.01234", "arxiv:2401.01234"),
        ("https://doi.org/10.48550/arXiv.2401.01234", "arxiv:2401.01234"),
        ("10.1038/nature14539", "doi:10.1038/nature14539"),
        ("10.1038/NATURE14539.", "doi:10.1038/nature14539"),
        ("doi:10.1145/3292500.3330701", "doi:10.1145/3292500.3330701"),
        ("DOI: 10.1145/3292500.3330701", "doi:10.1145/3292500.3330701"),
        ("https://doi.org/10.1007/978-3-030-58452-8_13", "doi:10.1007/978-3-030-58452-8_13"),
        ("https://dx.doi.org/10.1063%2F1.4944470", "doi:10.1063/1.4944470"),
        ("doi.org/10.1063/1.4944470", "doi:10.1063/1.4944470"),
        ("info:doi/10.1063/1.4944470", "doi:10.1063/1.4944470"),
        ("https://link.springer.com/article/10.1007/s10994-021-05946-3", None),
        ("https://openreview.net/forum?id=YicbFdNTTy", None),
        ("Attention", None),
        ("2413.01234", None),
    ],
)
def test_identify(written, ident):
    assert identify(written) == ident


def test_a_pasted_list():
    text = """\
# papers I keep
2401.01234
arXiv:1810.04805v2 [cs.CL]

https://arxiv.org/abs/math.AG/0601001   # old style, subject class dropped
https://doi.org/10.1038/nature14539
% another comment
1706.03762, 1810.04805 ; DOI: 10.1145/3292500.3330701
not an id
https://openreview.net/forum?id=YicbFdNTTy
10.1038/NATURE14539
"""
    lib = read_library(text)
    assert lib.format is LibraryFormat.LIST
    assert [(e.line, e.paper.id) for e in lib.entries] == [
        (2, "arxiv:2401.01234"),
        (3, "arxiv:1810.04805"),
        (5, "arxiv:math/0601001"),
        (6, "doi:10.1038/nature14539"),
        (8, "arxiv:1706.03762"),
        (8, "doi:10.1145/3292500.3330701"),
    ]
    assert all(p.title == "" for p in lib.papers)
    assert problems(lib) == [
        "line 8: the same paper as line 3; counted once",
        "line 9: 'not' (and 2 more on the line) is not an arXiv id, DOI or URL",
        "line 10: 'https://openreview.net/forum?id=YicbFdNTTy' is a link to neither an arXiv "
        "paper nor a DOI; give its arXiv id or DOI",
        "line 11: the same paper as line 6; counted once",
    ]
    assert lib.without_text == tuple(e.paper.id for e in lib.entries)


def test_a_long_bad_line_is_quoted_short():
    lib = read_library("x" * 5000 + "\n")
    (problem,) = problems(lib)
    assert len(problem) < 120 and problem.startswith("line 1: 'xxxx") and "…" in problem


# --------------------------------------------------------------------------------------------
# Duplicates


def test_the_preprint_and_its_journal_version_are_one_paper():
    text = (LIBRARIES / "zotero.bib").read_text() + (
        "\n@misc{kilgour_preprint_2016,\n\ttitle = {Inelastic effects in molecular transport "
        "junctions: {The} probe technique at high bias},\n\tdoi = {10.48550/arXiv.1601.00001},\n"
        '\tabstract = {We extend the Landauer-B{\\textbackslash}"uttiker probe formalism},\n}\n'
    )
    lib = read_library(text)
    assert len(lib.papers) == 6
    merged = lib.papers[-1]
    # the arXiv id names it (the day's copy of it has that one), with the journal's
    # authors and the preprint's abstract
    assert merged.id == "arxiv:1601.00001"
    assert merged.title == KILGOUR
    assert merged.abstract == "We extend the Landauer-Büttiker probe formalism"
    assert merged.authors == ("Michael Kilgour", "Dvira Segal")
    assert problems(lib) == [
        "entry kilgour_preprint_2016 (line 92): the same paper as entry kilgour_inelastic_2016 "
        "(line 76); counted once"
    ]


def test_two_arxiv_papers_with_one_title_stay_two():
    lib = read_library(
        "@misc{a, title={Notes on ranking}, eprint={1601.00001}}\n"
        "@misc{b, title={Notes on Ranking}, eprint={1601.00002}}\n"
    )
    assert [p.id for p in lib.papers] == ["arxiv:1601.00001", "arxiv:1601.00002"]
    assert problems(lib) == []


# --------------------------------------------------------------------------------------------
# Encodings, sizes, formats


def test_a_file_that_is_not_utf8_is_refused_naming_the_line_and_byte():
    data = (LIBRARIES / "mendeley.ris").read_text().encode("cp1252", "replace")
    with pytest.raises(BadLibrary) as e:
        read_library(data)
    assert str(e.value).startswith("line 3: byte 0xeb (at byte ")
    assert "not UTF-8" in str(e.value) and "cp1252" in str(e.value)
    lib = read_library(data, encoding="cp1252")
    assert lib.papers[0].authors[0] == "Gaëlle Lortal"


def test_jabref_says_its_encoding_and_is_read_in_it():
    text = (LIBRARIES / "jabref.bib").read_text()
    text = text.replace("% Encoding: UTF-8", "% Encoding: windows-1252")
    text = text.replace(
        "Normunds Grūzītis and Gunta Nešpore and Baiba Saulīte", "Normunds Grüzitis"
    )
    lib = read_library(text.encode("cp1252"))
    assert lib.papers[0].title == "Speeding up the Köhler's method of contrast thresholding"
    assert lib.papers[1].authors == ("Normunds Grüzitis",)


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: t.encode("utf-8-sig"),
        lambda t: t.encode("utf-16"),  # with its byte-order mark: Windows Notepad's "Unicode"
        lambda t: t.replace("\n", "\r\n").encode(),
        lambda t: t.replace("\n", "\r").encode(),
    ],
)
def test_byte_order_marks_and_line_ends(encode):
    text = (LIBRARIES / "mendeley.ris").read_text()
    lib = read_library(encode(text))
    assert [e.line for e in lib.entries] == [1, 13, 24]
    assert lib.papers[0].title.startswith("Système")


def test_binary_files_are_refused():
    with pytest.raises(BadLibrary, match="not a text file"):
        read_library(b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog \x00 >>")
    with pytest.raises(BadLibrary, match="not a text file"):
        read_library(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")


def test_a_file_over_the_size_cap_is_refused_before_reading():
    data = b"% padding\n" * (MAX_BYTES // 10 + 1)
    with pytest.raises(BadLibrary) as e:
        read_library(data)
    assert str(e.value) == (
        f"the file has {len(data):,} bytes, more than the {MAX_BYTES:,} a library may have"
    )


def zotero_export(count: int) -> str:
    """``count`` entries as Zotero writes them: the sample's arXiv ones, each with an id of
    its own."""
    sample = (LIBRARIES / "zotero.bib").read_text()
    entries = [e for e in sample.split("\n\n") if e.startswith("@misc")]
    out = []
    for k in range(count):
        entry = entries[k % len(entries)]
        old = re.search(r"arxiv\.org/abs/(\S+?)\}", entry).group(1)
        entry = entry.replace(old, f"1601.{k + 1:05d}").replace(",\n", f"_{k},\n", 1)
        out.append(entry)
    return "\n\n".join(out) + "\n"


def test_the_most_papers_a_library_holds_fit_the_size_cap():
    text = zotero_export(MAX_PAPERS)
    assert len(text.encode()) < MAX_BYTES
    lib = read_library(text)
    assert len(lib.papers) == MAX_PAPERS and problems(lib) == []
    assert lib.papers[-1].id == f"arxiv:1601.{MAX_PAPERS:05d}"


def test_one_paper_more_is_refused():
    with pytest.raises(BadLibrary) as e:
        read_library(zotero_export(MAX_PAPERS + 1))
    assert str(e.value) == (
        f"the library has {MAX_PAPERS + 1:,} papers, more than the {MAX_PAPERS:,} it may hold: "
        "keep the ones closest to what you want to read"
    )
    ids = "\n".join(f"1601.{k:05d}" for k in range(1, MAX_PAPERS + 2))
    with pytest.raises(BadLibrary, match="more than the 2,000 it may hold"):
        read_library(ids)
    # repeats do not count
    assert len(read_library(ids.rsplit("\n", 1)[0] + "\n1601.00001\n").papers) == MAX_PAPERS


@pytest.mark.parametrize(
    "text",
    [
        "@misc{" * (MAX_ENTRIES + 1),
        "TY  - JOUR\nER  -\n" * (MAX_ENTRIES + 1),
        "2401.01234 " * (MAX_ENTRIES + 1),
        "not an id\n" * (MAX_ENTRIES // 3 + 1),
    ],
    ids=["bibtex", "ris", "list", "junk"],
)
def test_a_file_of_too_many_entries_is_refused_whatever_they_are(text):
    """Broken or repeated entries cost as much to read as good ones: a file of more than
    MAX_ENTRIES is refused before they are all read."""
    assert len(text) < MAX_BYTES
    with pytest.raises(BadLibrary) as e:
        read_library(text)
    assert str(e.value) == (
        f"the file has more than {MAX_ENTRIES:,} entries; a library holds at most "
        f"{MAX_PAPERS:,} papers: is it the right file?"
    )


def test_the_format_is_told_by_the_content_then_the_file_name():
    ris = (LIBRARIES / "mendeley.ris").read_bytes()
    assert read_library(ris, filename="library.bib").format is LibraryFormat.RIS
    assert read_library(b"", filename="empty.bib").format is LibraryFormat.BIBTEX
    assert read_library(b"", filename="empty.ris").format is LibraryFormat.RIS
    assert read_library(b"", filename="ids.txt").format is LibraryFormat.LIST
    assert read_library(b"  @Article (k, title = {T})\n").format is LibraryFormat.BIBTEX
    # a list given as such is read as one, whatever it holds
    forced = read_library(ris, format=LibraryFormat.LIST)
    assert forced.format is LibraryFormat.LIST
    # only its links name papers
    assert [p.id for p in forced.papers] == [
        "arxiv:1205.6832",
        "arxiv:1312.3168",
        "arxiv:1211.0418",
    ]
    assert (
        problems(forced)[0]
        == "line 1: 'TY' (and 2 more on the line) is not an arXiv id, DOI or URL"
    )


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('[{"id": "http://zotero.org/users/1/items/ABC", "type": "article"}]', "a JSON"),
        ('<?xml version="1.0"?>\n<rdf:RDF xmlns:rdf="...">', "an XML"),
    ],
)
def test_other_exports_are_named(text, kind):
    with pytest.raises(BadLibrary) as e:
        read_library(text)
    assert str(e.value) == (
        f"{kind} file, not a library: export it as BibTeX or RIS, or give arXiv ids and DOIs "
        "one a line"
    )


def test_reading_is_deterministic():
    data = (LIBRARIES / "zotero.bib").read_bytes() + (LIBRARIES / "scholar.bib").read_bytes()
    assert read_library(data) == read_library(data)
    # merged across the two exports: Scholar's copies of Zotero's arXiv papers
    assert len(read_library(data).papers) == 6


# --------------------------------------------------------------------------------------------
# Properties


ID_FORMS = [
    "2401.01234",
    "arXiv:2401.05678v2",
    "https://arxiv.org/abs/hep-th/9901001",
    "https://arxiv.org/pdf/1706.03762v5",
    "10.1038/nature14539",
    "https://doi.org/10.1063/1.4944470",
    "1501.0001",
    "https://example.org/paper",
    "# a comment",
    "% a comment",
    "",
    "  ",
    "[cs.LG]",
    "x,y",
]


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(
        st.one_of(
            st.lists(st.sampled_from(ID_FORMS), min_size=1, max_size=3).map(" ".join),
            st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
        ),
        max_size=30,
    )
)
def test_every_line_of_a_list_is_a_paper_a_problem_or_nothing_to_read(lines):
    text = "\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines)
    lib = read_library(text, format=LibraryFormat.LIST)
    used = {e.line for e in lib.entries}
    reported = {p.line for p in lib.problems}
    for n, line in enumerate(text.split("\n"), 1):
        content = line.strip()
        if not content or content.startswith(("#", "%")):
            assert n not in used and n not in reported, line
        else:
            assert n in used or n in reported, line
    assert len({p.id for p in lib.papers}) == len(lib.papers)


FRAGMENTS = [
    "@article{",
    "@misc(",
    "@string{x = ",
    "@comment{",
    "@preamble{",
    "}",
    "{",
    ")",
    ",",
    "=",
    '"',
    "#",
    "title",
    "author = {",
    "eprint = {2401.01234}",
    "doi = {10.1/x}",
    "\\",
    "\\'{e}",
    "{\\textbackslash}",
    "$",
    "\n",
    "TY  - JOUR\n",
    "TI  - ",
    "ER  - \n",
    "AU  - ",
    "DO  - 10.1038/nature14539",
    "UR  - https://arxiv.org/abs/2401.01234",
]


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40),
    kind=st.sampled_from([None, *LibraryFormat]),
)
def test_any_text_gives_a_library_or_bad_library(parts, kind):
    text = "".join(parts)
    try:
        lib = read_library(text, format=kind)
    except BadLibrary as e:
        assert str(e) and "\n" not in str(e)
        return
    for problem in lib.problems:
        assert problem.line >= 1 and "\n" not in str(problem)
    for paper in lib.papers:
        assert paper.title or paper.abstract or paper.id
        assert "\n" not in paper.title


@hsettings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_any_bytes_give_a_library_or_bad_library(data):
    with contextlib.suppress(BadLibrary):
        read_library(data)


# --------------------------------------------------------------------------------------------
# Looking up arXiv ids, against a real HTTP server answering with API documents


def fetcher(**settings) -> Fetcher:
    fetch = FetchSettings(**({"timeout": 5.0, "min_interval": 0.0, "retries": 0} | settings))
    return Fetcher(fetch, backoff=0.01)


def api_path(*ids: str) -> str:
    return f"/api/query?id_list={','.join(ids)}&max_results={len(ids)}"


def load_rows() -> list[dict]:
    with lzma.open(DATA / "topics" / "four_archives.jsonl.xz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def api_document(rows: list[dict]) -> bytes:
    """An answer of the arXiv API to an id_list query, laid out as its real ones are."""
    ids = ",".join(r["id"] for r in rows)
    entries = "".join(
        f"""  <entry>
    <id>http://arxiv.org/abs/{r["id"]}v1</id>
    <updated>2019-01-01T00:00:00Z</updated>
    <published>2019-01-01T00:00:00Z</published>
    <title>{escape(r["title"])}</title>
    <summary>  {escape(r["abstract"])}
</summary>
{"".join(f"    <author>{chr(10)}      <name>{escape(a)}</name>{chr(10)}    </author>{chr(10)}" for a in r["authors"])}\
    <link href="http://arxiv.org/abs/{r["id"]}v1" rel="alternate" type="text/html"/>
    <link title="pdf" href="http://arxiv.org/pdf/{r["id"]}v1" rel="related" type="application/pdf"/>
    <arxiv:primary_category xmlns:arxiv="http://arxiv.org/schemas/atom" term="{r["archive"]}" scheme="http://arxiv.org/schemas/atom"/>
    <category term="{r["archive"]}" scheme="http://arxiv.org/schemas/atom"/>
  </entry>
"""
        for r in rows
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <link href="http://arxiv.org/api/query?search_query%3D%26id_list%3D{ids}%26start%3D0%26max_results%3D{len(rows)}" rel="self" type="application/atom+xml"/>
  <title type="html">ArXiv Query: search_query=&amp;id_list={ids}&amp;start=0&amp;max_results={len(rows)}</title>
  <id>http://arxiv.org/api/tGxYm2Nk3dMXh0x6r5t0uXyq1bA</id>
  <updated>2019-01-01T00:00:00-05:00</updated>
  <opensearch:totalResults xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">{len(rows)}</opensearch:totalResults>
  <opensearch:startIndex xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">0</opensearch:startIndex>
  <opensearch:itemsPerPage xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">{len(rows)}</opensearch:itemsPerPage>
{entries}</feed>
""".encode()


ATOM = {"Content-Type": "application/atom+xml; charset=UTF-8"}


def test_look_up_reads_the_api_answer(feed_server):
    body = (FEEDS / "arxiv_api_atom_legacy_2020-09-04_idlist_1entry.xml").read_bytes()
    feed_server.add(api_path("1601.00001"), {"body": body, "headers": ATOM})
    got = look_up(["arxiv:1601.00001"], fetcher=fetcher(), api_url=feed_server.url("/api/query"))
    (paper,) = got.found
    assert paper.id == "arxiv:1601.00001"
    assert paper.title == (
        "Inelastic effects in molecular transport junctions: The probe technique at high bias"
    )
    assert paper.abstract.startswith("We extend the Landauer-Büttiker probe formalism")
    assert paper.authors == ("Michael Kilgour", "Dvira Segal")
    assert (got.missing, got.failed, got.requests) == ((), {}, 1)
    (request,) = feed_server.requests
    assert request.headers["user-agent"].startswith("newsletter/")


@pytest.mark.parametrize("empty_entry", [False, True], ids=["left-out", "empty-entry"])
def test_an_id_arxiv_does_not_know_is_missing(feed_server, empty_entry):
    # The API leaves an id it does not know out of its answer; it used to answer with an
    # entry that has no id and no title for it.
    body = (FEEDS / "arxiv_api_atom_legacy_2025-10-17_cs.RO_2entries.xml").read_bytes()
    if empty_entry:
        body = body.replace(
            b"</feed>",
            b"  <entry>\n    <updated>2025-10-17T00:00:00-04:00</updated>\n  </entry>\n</feed>",
        )
    feed_server.add(
        api_path("2510.14968", "2510.99999", "2510.14827"), {"body": body, "headers": ATOM}
    )
    got = look_up(
        ["arxiv:2510.14968", "arxiv:2510.99999v2", "arxiv:2510.14827"],
        fetcher=fetcher(),
        api_url=feed_server.url("/api/query"),
    )
    assert [p.id for p in got.found] == ["arxiv:2510.14968", "arxiv:2510.14827"]
    assert got.found[1].title == "Neural Implicit Flow Fields for Spatio-Temporal Motion Mapping"
    assert got.missing == ("arxiv:2510.99999",)
    assert got.failed == {}


def test_batches_and_politeness(feed_server):
    rows = load_rows()[: BATCH_SIZE + 3]
    ids = [r["id"] for r in rows]
    first = api_path(*ids[:BATCH_SIZE])
    second = api_path(*ids[BATCH_SIZE:])
    feed_server.add(first, {"body": api_document(rows[:BATCH_SIZE]), "headers": ATOM})
    feed_server.add(second, {"body": api_document(rows[BATCH_SIZE:]), "headers": ATOM})
    waits: list[float] = []
    polite = Fetcher(FetchSettings(timeout=5.0, min_interval=3.0, retries=0), sleep=waits.append)
    got = look_up(
        [f"arxiv:{i}" for i in ids] + ["doi:10.1038/nature14539"],
        fetcher=polite,
        api_url=feed_server.url("/api/query"),
    )
    assert [r.path for r in feed_server.requests] == [first, second]
    assert got.requests == 2
    assert [p.id for p in got.found] == [f"arxiv:{i}" for i in ids]
    assert got.found[0].title == clean_title(rows[0]["title"])
    assert (got.missing, got.failed) == ((), {})
    # one request per 3 s to the API's host: the second waited its turn
    assert len(waits) == 1 and 2.0 < waits[0] <= 3.0


def test_a_failed_batch_costs_only_its_own_ids(feed_server):
    rows = load_rows()[:6]
    ids = [r["id"] for r in rows]
    for k in (0, 2, 4):
        answer = {"body": api_document(rows[k : k + 2]), "headers": ATOM}
        if k == 2:
            answer = {"status": 503, "body": b"Service Unavailable"}
        feed_server.add(api_path(*ids[k : k + 2]), answer)
    got = look_up(
        [f"arxiv:{i}" for i in ids],
        fetcher=fetcher(retries=1),
        api_url=feed_server.url("/api/query"),
        batch_size=2,
    )
    assert [p.id for p in got.found] == [f"arxiv:{i}" for i in ids[:2] + ids[4:]]
    assert got.failed == {
        f"arxiv:{i}": "HTTP 503 Service Unavailable (after 2 attempts)" for i in ids[2:4]
    }
    assert got.missing == ()
    assert len(feed_server.hits(api_path(*ids[2:4]))) == 2  # retried once, as configured
    assert got.requests == 3


def test_an_id_the_api_refuses_is_dropped_and_the_rest_asked_again(feed_server):
    error = (FEEDS / "arxiv_api_error.xml").read_text().replace("1234.1234", "0704.0000")
    rows = load_rows()[:2]
    ids = [rows[0]["id"], "0704.0000", rows[1]["id"]]
    feed_server.add(api_path(*ids), {"body": error.encode(), "headers": ATOM})
    feed_server.add(api_path(ids[0], ids[2]), {"body": api_document(rows), "headers": ATOM})
    got = look_up(
        [f"arxiv:{i}" for i in ids], fetcher=fetcher(), api_url=feed_server.url("/api/query")
    )
    assert [p.id for p in got.found] == [f"arxiv:{ids[0]}", f"arxiv:{ids[2]}"]
    assert got.missing == ("arxiv:0704.0000",)
    assert got.requests == 2
    # alone in its batch, it is missing all the same
    feed_server.add(api_path("0704.0000"), {"body": error.encode(), "headers": ATOM})
    alone = look_up(["arxiv:0704.0000"], fetcher=fetcher(), api_url=feed_server.url("/api/query"))
    assert (alone.found, alone.missing, alone.failed) == ((), ("arxiv:0704.0000",), {})


def test_known_ids_and_dois_are_never_asked(feed_server):
    got = look_up(
        ["arxiv:1601.00001", "arxiv:1601.00001v2", "doi:10.1063/1.4944470", "not-an-id"],
        fetcher=fetcher(),
        known={"arxiv:1601.00001"},
        api_url=feed_server.url("/api/query"),
    )
    assert got == Lookup()
    assert feed_server.requests == []


def test_an_html_error_page_fails_the_batch_with_a_reason(feed_server):
    feed_server.add(
        api_path("1601.00001"),
        {"body": b"<!DOCTYPE html><html><title>Maintenance</title></html>"},
    )
    got = look_up(["arxiv:1601.00001"], fetcher=fetcher(), api_url=feed_server.url("/api/query"))
    assert got.failed == {
        "arxiv:1601.00001": "an HTML page, not an arXiv feed (page title: 'Maintenance')"
    }


# --------------------------------------------------------------------------------------------
# Completing a library with the texts found


def test_complete_fills_in_texts_and_says_what_does_not_count_yet(feed_server):
    text = """\
@misc{byid, eprint = {1601.00001}, archivePrefix = {arXiv}}
@article{kilgour_inelastic_2016,
  title = {Inelastic effects in molecular transport junctions: {The} probe technique at high bias},
  doi = {10.1063/1.4944470},
  author = {Kilgour, Michael and Segal, Dvira},
}
@misc{stored, eprint = {1706.03762}}
@misc{typo, eprint = {2510.99999}}
@misc{down, eprint = {2510.14968}}
@article{journal, doi = {10.1038/nature14539}}
"""
    lib = read_library(text)
    assert lib.without_text == (
        "arxiv:1601.00001",
        "arxiv:1706.03762",
        "arxiv:2510.99999",
        "arxiv:2510.14968",
        "doi:10.1038/nature14539",
    )
    body = (FEEDS / "arxiv_api_atom_legacy_2020-09-04_idlist_1entry.xml").read_bytes()
    feed_server.add(api_path("1601.00001", "2510.99999"), {"body": body, "headers": ATOM})
    feed_server.add(api_path("2510.14968"), {"status": 500})
    stored = {
        "arxiv:1706.03762": LibraryPaper(
            title="Attention Is All You Need",
            abstract="The dominant sequence transduction models are based on complex recurrent",
            id="arxiv:1706.03762",
        )
    }
    lookup = look_up(
        lib.without_text,
        fetcher=fetcher(),
        known=stored,
        api_url=feed_server.url("/api/query"),
        batch_size=2,
    )
    done = complete(lib, stored, lookup)
    papers = by_id(done)
    # the id-only entry got its title, which is the next entry's: one paper, by its arXiv id
    assert papers["arxiv:1601.00001"].abstract.startswith("We extend the Landauer-Büttiker")
    assert papers["arxiv:1601.00001"].authors == ("Michael Kilgour", "Dvira Segal")
    assert "doi:10.1063/1.4944470" not in papers
    assert papers["arxiv:1706.03762"].title == "Attention Is All You Need"
    assert problems(done) == [
        "entry kilgour_inelastic_2016 (line 2): the same paper as entry byid (line 1); "
        "counted once",
        "entry typo (line 8): no title or abstract known for arxiv:2510.99999; it does not "
        "count until the id is corrected: arXiv has no such paper",
        "entry down (line 9): no title or abstract known for arxiv:2510.14968; it does not "
        "count until arXiv answers for it (the look-up failed: HTTP 500 Internal Server Error)",
        "entry journal (line 10): no title or abstract known for doi:10.1038/nature14539; it "
        "does not count until a BibTeX or RIS export gives its title (DOIs are not looked "
        "up: there is no DOI source)",
    ]
    counted = Interests.of(library=done.papers).library
    assert [p.id for p in counted] == ["arxiv:1601.00001", "arxiv:1706.03762"]


def test_complete_without_a_look_up():
    lib = read_library("2401.01234\n")
    (problem,) = problems(complete(lib, {}))
    assert problem == (
        "line 1: no title or abstract known for arxiv:2401.01234; it does not count until it "
        "is looked up on arXiv"
    )
