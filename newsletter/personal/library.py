"""A subscriber's library as they give it, read into LibraryPapers: pure, no I/O.

They give it as a list pasted by hand (arXiv ids, arXiv or doi.org links, DOIs: one a line),
or as a BibTeX or RIS export of their reference manager (Zotero, Mendeley, JabRef, Google
Scholar). The exports are parsed by bibtexparser and rispy; ids and LaTeX go through the
same rules as feeds (``newsletter.sources.normalize``), so a paper kept in a library has the
id the day's copy of it has. What cannot be used is reported by line (and BibTeX key), with
the rest kept. An arXiv id alone has no text yet: ``newsletter.personal.fetch`` finds it.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, NoReturn

from newsletter.errors import NewsletterError
from newsletter.personal.interests import LibraryPaper
from newsletter.personal.match import title_key
from newsletter.sources.normalize import (
    arxiv_id,
    canonical_id,
    clean_text,
    clean_title,
    find_doi,
)
from newsletter.subscribers import BadCsv, decode_csv

#: Largest file read: Zotero's BibTeX export takes some 1.8 KB a paper with its abstract,
#: so MAX_PAPERS of them fit (3.7 MB; tests/test_library.py checks it).
MAX_BYTES = 5_000_000
#: Most papers one library holds (after duplicates are merged).
MAX_PAPERS = 2_000
#: Most entries (BibTeX blocks, RIS records, ids of a list) a file may have, repeats and
#: broken ones included: reading stays under a second however the file is made.
MAX_ENTRIES = 5 * MAX_PAPERS
#: Longest piece of a bad line quoted back in a problem.
_QUOTE = 60


class LibraryFormat(StrEnum):
    """How a library is written."""

    BIBTEX = "bibtex"
    RIS = "ris"
    LIST = "list"  # arXiv ids, DOIs and their links, one a line


class BadLibrary(NewsletterError):
    """A library that cannot be read at all (too large, not text, too many papers); nothing
    of it is kept."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class LibraryProblem:
    """Something of the library that was not used as given, and why."""

    line: int  # where it starts in the file, from 1
    reason: str
    key: str = ""  # the BibTeX key (or RIS ID) of the entry, when it has one

    def __str__(self) -> str:
        return f"{_where(self.line, self.key)}: {self.reason}"


@dataclass(frozen=True, slots=True)
class LibraryEntry:
    """One paper of the library, with where the file gives it."""

    paper: LibraryPaper
    line: int
    key: str = ""

    @property
    def has_text(self) -> bool:
        return bool(self.paper.title.strip() or self.paper.abstract.strip())


@dataclass(frozen=True, slots=True)
class ParsedLibrary:
    """A library read: its papers in the file's order, duplicates merged, and its problems
    (sorted by line)."""

    format: LibraryFormat
    entries: tuple[LibraryEntry, ...]
    problems: tuple[LibraryProblem, ...] = ()

    @property
    def papers(self) -> tuple[LibraryPaper, ...]:
        return tuple(e.paper for e in self.entries)

    @property
    def without_text(self) -> tuple[str, ...]:
        """Ids of the papers known by id alone: they count once their text is found."""
        return tuple(e.paper.id for e in self.entries if e.paper.id and not e.has_text)


def read_library(
    data: bytes | str,
    *,
    filename: str | None = None,
    encoding: str | None = None,
    format: LibraryFormat | None = None,
) -> ParsedLibrary:
    """Read a library from a file's bytes or pasted text.

    The format is told by the content (a ``@type{`` entry is BibTeX, a ``TY  -`` tag is
    RIS, anything else a list), else by ``filename``'s extension; ``format`` forces one.
    Bytes are UTF-8 (or what their byte-order mark, or JabRef's ``% Encoding:`` line, says)
    unless ``encoding`` is given.
    Raises ``BadLibrary`` for a file that cannot be read at all; anything smaller (a broken
    entry, a line that is no id) is a problem of the result, and the rest is kept.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")  # a lone surrogate is reported below
    if len(data) > MAX_BYTES:
        raise BadLibrary(
            f"the file has {len(data):,} bytes, more than the {MAX_BYTES:,} a library may have"
        )
    try:
        text = decode_csv(data, encoding or _declared_encoding(data))
    except BadCsv as e:
        raise BadLibrary(str(e)) from None
    # One line numbering for every parser: "\r\n" and a lone "\r" end a line as "\n" does.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kind = format or detect_format(text, filename)
    if kind is LibraryFormat.BIBTEX and text.count("@") > MAX_ENTRIES:
        # "@" starts every block; bibtexparser would split them all before answering
        _too_many_entries()
    if kind is LibraryFormat.BIBTEX:
        found, problems = _read_bibtex(text)
    elif kind is LibraryFormat.RIS:
        found, problems = _read_ris(text)
    else:
        found, problems = _read_list(text)
    entries, repeats = merge(found)
    if len(entries) > MAX_PAPERS:
        raise BadLibrary(
            f"the library has {len(entries):,} papers, more than the {MAX_PAPERS:,} it may "
            "hold: keep the ones closest to what you want to read"
        )
    return ParsedLibrary(kind, entries, _sorted([*problems, *repeats]))


def _too_many_entries() -> NoReturn:
    raise BadLibrary(
        f"the file has more than {MAX_ENTRIES:,} entries; a library holds at most "
        f"{MAX_PAPERS:,} papers: is it the right file?"
    )


def _declared_encoding(data: bytes) -> str | None:
    """The encoding a JabRef file names on its first line ("% Encoding: windows-1252"), if
    Python knows it."""
    first = data.split(b"\n", 1)[0].strip()
    if not first.lower().startswith(b"% encoding:"):
        return None
    name = first.split(b":", 1)[1].strip().decode("ascii", "replace")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def detect_format(text: str, filename: str | None = None) -> LibraryFormat:
    """BibTeX or RIS when a line says so (an ``@article{`` or ``TY  - JOUR`` line), else
    what ``filename``'s extension says, else a list. Raises ``BadLibrary`` for JSON and XML
    (CSL JSON, Zotero RDF, EndNote XML): the message says which exports are read."""
    import rispy

    ris = rispy.RisParser()
    for line in text.split("\n"):
        stripped = line.strip()
        if _starts_bibtex_entry(stripped):
            return LibraryFormat.BIBTEX
        if ris.parse_line(stripped)[0] == "TY":
            return LibraryFormat.RIS
    extension = os.path.splitext(filename or "")[1].lower()
    if extension in (".bib", ".bibtex"):
        return LibraryFormat.BIBTEX
    if extension == ".ris":
        return LibraryFormat.RIS
    first = text.lstrip()[:1]
    if first in ("<", "{", "["):
        kind = "an XML" if first == "<" else "a JSON"
        raise BadLibrary(
            f"{kind} file, not a library: export it as BibTeX or RIS, or give arXiv ids "
            "and DOIs one a line"
        )
    return LibraryFormat.LIST


def _starts_bibtex_entry(line: str) -> bool:
    """``@article{``, ``@misc (``: an entry type, then its opening brace or parenthesis."""
    if not line.startswith("@"):
        return False
    kind = line[1:].split("{", 1)[0].split("(", 1)[0]
    return len(kind) < len(line) - 1 and kind.strip().isalpha()


# --------------------------------------------------------------------------------------------
# Identifiers

_DOI_HOSTS = ("doi.org", "dx.doi.org", "www.doi.org")


def identify(text: str) -> str | None:
    """The canonical id (``arxiv:<id>``, ``doi:<doi>``) named by an arXiv id, ``arXiv:``
    reference, arXiv link, DOI, ``doi:`` or doi.org link; ``None`` for anything else (a DOI
    inside another site's link is not taken: it may be that of a citing paper)."""
    text = text.strip()
    found = arxiv_id(text)
    if found is not None:
        return f"arxiv:{found[0]}"
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")):
        lowered = lowered.split("://", 1)[1]
        if lowered.split("/", 1)[0] not in _DOI_HOSTS:
            return None
    elif not lowered.startswith(("10.", "doi:", "info:doi/", *(h + "/" for h in _DOI_HOSTS))):
        return None
    doi = find_doi(text)
    return canonical_id(None, doi, None) if doi else None


def _arxiv_in_prose(text: str) -> str | None:
    """An arXiv id written in running text: "arXiv preprint arXiv:1810.04805",
    "arXiv:1706.03762 [cs]". Only words naming arXiv count: a page range is no id."""
    for word in text.split():
        word = word.strip("()[],;")
        if "arxiv" in word.lower():
            found = arxiv_id(word)
            if found is not None:
                return found[0]
    return None


def _paper(
    *,
    title: str,
    abstract: str,
    authors: Iterable[str],
    arxiv: str | None,
    doi: str | None,
) -> LibraryPaper:
    ident = canonical_id(arxiv, doi, None) if arxiv or doi else None
    return LibraryPaper(
        title=title, abstract=abstract, id=ident, authors=tuple(a for a in authors if a)
    )


# --------------------------------------------------------------------------------------------
# A list pasted by hand


def _read_list(text: str) -> tuple[list[LibraryEntry], list[LibraryProblem]]:
    """One id, link or DOI a line; blank lines and ``#`` comments are skipped. Several ids
    on a line (separated by spaces, commas or semicolons) are taken too, "DOI: 10.1/x" is
    one, and arXiv's ``[cs.CL]`` after an id is ignored."""
    found: list[LibraryEntry] = []
    problems: list[LibraryProblem] = []
    count = 0
    for n, line in enumerate(text.split("\n"), 1):
        content = _uncommented(line)
        if not content:
            continue
        words = content.replace(",", " ").replace(";", " ").split()
        count += len(words)
        if count > MAX_ENTRIES:
            _too_many_entries()
        bad: list[str] = []
        ids = 0
        for i, word in enumerate(words):
            if word.lower() in ("doi:", "arxiv:") and i + 1 < len(words):
                words[i + 1] = word + words[i + 1]
                continue
            if word.startswith("[") and word.endswith("]"):
                continue
            ident = identify(word)
            if ident is None:
                bad.append(word)
            else:
                ids += 1
                found.append(LibraryEntry(LibraryPaper(title="", id=ident), n))
        if bad or not ids:
            problems.append(LibraryProblem(n, _not_an_id(bad or [content])))
    return found, problems


def _uncommented(line: str) -> str:
    """The line without a ``#`` comment: a whole line, or one after a space (a ``#`` inside
    a link is its fragment)."""
    stripped = line.strip()
    if stripped.startswith(("#", "%")):
        return ""
    for i, c in enumerate(stripped):
        if c == "#" and stripped[i - 1].isspace():
            return stripped[:i]
    return stripped


def _not_an_id(words: list[str]) -> str:
    word = words[0]
    shown = word if len(word) <= _QUOTE else word[: _QUOTE - 1] + "…"
    more = f" (and {len(words) - 1} more on the line)" if len(words) > 1 else ""
    lowered = word.lower()
    if lowered.startswith(("http://", "https://", "www.")):
        return (
            f"{shown!r}{more} is a link to neither an arXiv paper nor a DOI; give its arXiv "
            "id or DOI"
        )
    return f"{shown!r}{more} is not an arXiv id, DOI or URL"


# --------------------------------------------------------------------------------------------
# BibTeX


def _read_bibtex(text: str) -> tuple[list[LibraryEntry], list[LibraryProblem]]:
    import bibtexparser
    from bibtexparser import model
    from bibtexparser.middlewares import NormalizeFieldKeys

    try:
        library = bibtexparser.parse_string(text, append_middleware=[NormalizeFieldKeys()])
    except Exception as e:  # the parser's own bugs on hostile input: the file is unreadable
        raise BadLibrary(
            f"the BibTeX file could not be read: {_one_line(f'{type(e).__name__}: {e}')}"
        ) from e
    found: list[LibraryEntry] = []
    problems: list[LibraryProblem] = []
    for block in library.blocks:
        line = (block.start_line or 0) + 1  # bibtexparser counts lines from 0
        # A key used twice (or a middleware's failure) is no reason to lose a paper: the
        # library keeps the entry as it was read. The same paper twice is merged later.
        entry = block.ignore_error_block if isinstance(block, model.ParsingFailedBlock) else block
        if isinstance(entry, model.Entry):
            paper = _bibtex_paper(entry)
            key = _one_line(entry.key)
            if paper.title or paper.abstract or paper.id:
                found.append(LibraryEntry(paper, line, key))
            else:
                problems.append(LibraryProblem(line, "no title, arXiv id or DOI", key))
        elif isinstance(block, model.ParsingFailedBlock) and entry is None:
            problems.append(
                LibraryProblem(line, _bibtex_error(block.error), _raw_key(block.raw or ""))
            )
    return found, problems


def _bibtex_paper(entry: Any) -> LibraryPaper:
    fields = {f.key: f.value for f in entry.fields if isinstance(f.value, str)}
    prefix = (fields.get("archiveprefix") or fields.get("eprinttype") or "arxiv").lower()
    arxiv = None
    for name in ("eprint", "arxivid", "arxiv", "doi", "url"):
        if name == "eprint" and prefix != "arxiv":
            continue
        found = arxiv_id(fields.get(name, "").strip())
        if found is not None:
            arxiv = found[0]
            break
    else:
        for name in ("journal", "journaltitle", "note", "howpublished", "number"):
            arxiv = arxiv or _arxiv_in_prose(fields.get(name, ""))
    doi = None
    for name in ("doi", "url"):
        ident = identify(fields.get(name, ""))
        if ident and ident.startswith("doi:"):
            doi = ident.removeprefix("doi:")
            break
    return _paper(
        title=clean_title(_bibtex_text(fields.get("title", ""))),
        abstract=clean_text(_bibtex_text(fields.get("abstract", ""))),
        authors=_bibtex_names(fields.get("author", "")),
        arxiv=arxiv,
        doi=doi,
    )


def _bibtex_names(value: str) -> list[str]:
    """BibTeX's "Last, First and Other, Name" as ["First Last", "Name Other"]."""
    from bibtexparser.middlewares.names import (
        parse_single_name_into_parts,
        split_multiple_persons_names,
    )

    names: list[str] = []
    for written in split_multiple_persons_names(value):
        if written.strip().lower() == "others":  # "and others": et al.
            continue
        name = parse_single_name_into_parts(written, strict=False).merge_first_name_first
        names.append(clean_text(_bibtex_text(name)))
    return names


#: How Zotero and Mendeley write the characters that BibTeX would read as markup. A title
#: kept from arXiv is LaTeX ("$\\ell_1$-penalised"), which they export escaped, as text
#: ("\\${\\textbackslash}ell\\_1\\$" and "{\\$}{\\backslash}ell{\\_}1{\\$}"): undone, it is the
#: LaTeX it was, cleaned like a feed's.
_ESCAPED = {
    "{\\textbackslash}": (
        ("\\{\\vphantom{\\}}", "{"),
        ("\\vphantom{\\{}\\}", "}"),
        ("{\\textbackslash}", "\\"),
        ("{\\textasciitilde}", "~"),
        ("{\\textasciicircum}", "^"),
        ("{\\textbar}", "|"),
        ("{\\textless}", "<"),
        ("{\\textgreater}", ">"),
        *((f"\\{c}", c) for c in "#$%&_{}"),
    ),
    "{\\backslash}": (
        ("{\\backslash}", "\\"),
        ("{\\^{}}", "^"),
        ("{\\~{}}", "~"),
        *((f"{{\\{c}}}", c) for c in "#$%&_{}"),
    ),
}


def _bibtex_text(value: str) -> str:
    """A field's text, its case guards removed and an exporter's escaping undone."""
    value = unguard(value)
    for marker, pairs in _ESCAPED.items():
        if marker in value:
            for escaped, char in pairs:
                value = value.replace(escaped, char)
            value = unguard(value)  # the guards of the LaTeX that was escaped
    return value


def _bibtex_error(error: Exception) -> str:
    reason = getattr(error, "abort_reason", "") or str(error) or type(error).__name__
    return "not valid BibTeX (" + _one_line(reason).rstrip(". ") + "); the entry is left out"


def _raw_key(raw: str) -> str:
    """The key of an entry that did not parse: what stands between its brace and comma."""
    head = raw.split("\n", 1)[0]
    for opening in "{(":
        if opening in head:
            key = head.split(opening, 1)[1].split(",", 1)[0].strip()
            return _one_line(key) if key and "=" not in key else ""
    return ""


#: What unguard() looks at: a command or escaped character, a brace, a dollar.
_TOKEN = re.compile(r"\\(?:[A-Za-z]+|.?)|[{}$]", re.DOTALL)


def unguard(value: str) -> str:
    """BibTeX's case-protecting braces removed ("{BERT}: {Pre}-training" ->
    "BERT: Pre-training"); braces that are LaTeX's (a command's argument, ``{\\"u}``,
    ``{\\em ...}``, inside ``$...$``) are kept for the LaTeX cleaning to read."""
    if "{" not in value:
        return value
    out: list[str] = []
    kept: list[bool] = []  # per open brace: whether it was kept
    math = after_command = False
    at = 0
    for m in _TOKEN.finditer(value):
        between = value[at : m.start()]
        if between:
            out.append(between)
            after_command = after_command and between.isspace()
        token = m.group()
        at = m.end()
        if token.startswith("\\"):
            out.append(token)
            after_command = True
        elif token == "{" and not math:
            keep = after_command or value.startswith("\\", at)
            kept.append(keep)
            if keep:
                out.append(token)
            after_command = False
        elif token == "}" and not math and kept:
            # after an argument, a group is the next argument ("\\frac{a}{b}"); after a
            # guard, another guard
            after_command = kept.pop()
            if after_command:
                out.append(token)
        else:
            math = math != (token == "$")
            out.append(token)
            after_command = False
    out.append(value[at:])
    return "".join(out)


# --------------------------------------------------------------------------------------------
# RIS


def _read_ris(text: str) -> tuple[list[LibraryEntry], list[LibraryProblem]]:
    """Records from ``TY`` to ``ER``; a record cut off (no ``ER``, or a new ``TY`` first) is
    still read, and said so."""
    import rispy

    parser = rispy.RisParser()
    found: list[LibraryEntry] = []
    problems: list[LibraryProblem] = []
    for start, lines, closed in _ris_records(text, parser):
        if not closed:
            problems.append(
                LibraryProblem(start, "the record has no ER line (read as far as it goes)")
            )
            lines = [*lines, "ER  - "]
        records = rispy.loads("\n".join(lines))
        record = records[0] if records else {}
        key = _one_line(_ris_first(record.get("id")))
        paper = _ris_paper(record)
        if paper.title or paper.abstract or paper.id:
            found.append(LibraryEntry(paper, start, key))
        else:
            problems.append(LibraryProblem(start, "no title, arXiv id or DOI", key))
    return found, problems


def _ris_records(text: str, parser: Any) -> Iterator[tuple[int, list[str], bool]]:
    """(line of the TY tag, the record's lines, whether it ended with ER) per record."""
    start = count = 0
    lines: list[str] = []
    for n, line in enumerate(text.split("\n"), 1):
        tag = parser.parse_line(line.strip())[0]
        if tag == "TY":
            count += 1
            if count > MAX_ENTRIES:
                _too_many_entries()
            if lines:
                yield start, lines, False
            start, lines = n, [line.strip()]
        elif lines:
            # stripped: rispy reads a tag only at the start of a line
            lines.append(line.strip())
            if tag == "ER":
                yield start, lines, True
                lines = []
    if lines:
        yield start, lines, False


def _ris_paper(record: dict[str, Any]) -> LibraryPaper:
    title = _ris_first(record.get("title")) or _ris_first(record.get("primary_title"))
    abstract = _ris_first(record.get("abstract")) or _ris_first(record.get("notes_abstract"))
    authors = _ris_list(record.get("authors")) or _ris_list(record.get("first_authors"))
    doi_field = _ris_first(record.get("doi"))
    urls = _ris_list(record.get("urls"))
    arxiv = None
    for value in (doi_field, *urls, _ris_first(record.get("accession_number"))):
        found = arxiv_id(value)
        if found is not None:
            arxiv = found[0]
            break
    else:
        prose = (
            *_ris_list(record.get("notes")),
            _ris_first(record.get("journal_name")),
            _ris_first(record.get("secondary_title")),
            _ris_first(record.get("type_of_work")),
            _ris_first(record.get("note")),
        )
        arxiv = next(filter(None, map(_arxiv_in_prose, prose)), None)
    doi = None
    for value in (doi_field, *urls):
        ident = identify(value)
        if ident and ident.startswith("doi:"):
            doi = ident.removeprefix("doi:")
            break
    return _paper(
        # arXiv's LaTeX, as a reference manager kept it: braces are its case guards
        title=clean_title(unguard(title)),
        abstract=clean_text(unguard(abstract)),
        authors=(_ris_name(a) for a in authors),
        arxiv=arxiv,
        doi=doi,
    )


def _ris_first(value: object) -> str:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), "")
    return value if isinstance(value, str) else ""


def _ris_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _ris_name(written: str) -> str:
    """RIS's "Last, First[, Suffix]" as "First Last[, Suffix]" (the form feeds give)."""
    parts = [p.strip() for p in written.split(",")]
    if len(parts) >= 2 and parts[0] and parts[1]:
        name = f"{parts[1]} {parts[0]}" + "".join(f", {p}" for p in parts[2:] if p)
    else:
        name = written
    return clean_text(name)


# --------------------------------------------------------------------------------------------
# Duplicates


#: Titles of fewer words ("Editorial", "Lecture notes") name no paper by themselves.
_MIN_TITLE_WORDS = 3


def merge(entries: Iterable[LibraryEntry]) -> tuple[tuple[LibraryEntry, ...], list[LibraryProblem]]:
    """Entries naming one paper (the same id, or the same title of at least
    _MIN_TITLE_WORDS words without conflicting ids) merged into the first of them, which
    takes what it lacks from the others; each merged one is reported."""
    kept: list[LibraryEntry] = []
    by_id: dict[str, int] = {}
    by_title: dict[str, int] = {}
    problems: list[LibraryProblem] = []
    for entry in entries:
        paper = entry.paper
        at = by_id.get(paper.id) if paper.id else None
        if at is None and (tk := title_key(paper.title)) in by_title:
            other = kept[by_title[tk]].paper.id
            if not (paper.id and other and paper.id.split(":")[0] == other.split(":")[0]):
                at = by_title[tk]
        if at is None:
            at = len(kept)
            kept.append(entry)
        else:
            first = kept[at]
            kept[at] = replace(first, paper=_combine(first.paper, paper))
            problems.append(
                LibraryProblem(
                    entry.line,
                    f"the same paper as {_where(first.line, first.key)}; counted once",
                    entry.key,
                )
            )
        merged = kept[at].paper
        for ident in (paper.id, merged.id):
            if ident:
                by_id.setdefault(ident, at)
        if len((tk := title_key(merged.title)).split()) >= _MIN_TITLE_WORDS:
            by_title.setdefault(tk, at)
    return tuple(kept), problems


def _combine(first: LibraryPaper, other: LibraryPaper) -> LibraryPaper:
    ident = first.id
    if other.id and (not ident or (other.id.startswith("arxiv:") and ident.startswith("doi:"))):
        ident = other.id  # the arXiv id, as the day's copy has it
    return LibraryPaper(
        title=first.title or other.title,
        abstract=first.abstract or other.abstract,
        id=ident,
        authors=first.authors or other.authors,
    )


# --------------------------------------------------------------------------------------------
# Helpers


def _where(line: int, key: str) -> str:
    return f"entry {key} (line {line})" if key else f"line {line}"


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 2 * _QUOTE else line[: 2 * _QUOTE - 1] + "…"


def _sorted(problems: Sequence[LibraryProblem]) -> tuple[LibraryProblem, ...]:
    return tuple(sorted(problems, key=lambda p: p.line))
