"""The titles and abstracts of library papers given by arXiv id alone, from the arXiv API.

Through the same ``Fetcher`` as the feeds (one request per ``fetch.min_interval`` per host,
timeouts, retries) and the same Atom parsing, ``BATCH_SIZE`` ids a request. The caller
passes the ids whose text it already has (the store keeps every library paper's text once,
for every subscriber), so each paper is asked for once. DOIs are never looked up: there is
no DOI source; a DOI counts once a BibTeX or RIS export gives its title.
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.parse
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from newsletter.config import SourceSettings
from newsletter.errors import FeedError
from newsletter.models import SourceKind
from newsletter.personal.interests import LibraryPaper
from newsletter.personal.library import LibraryProblem, ParsedLibrary, merge
from newsletter.sources import unexpected
from newsletter.sources.http import Fetcher, one_line
from newsletter.sources.normalize import arxiv_id

log = logging.getLogger(__name__)

ARXIV_API_URL = "https://export.arxiv.org/api/query"
#: Ids per request: the API takes many in its id_list; 50 keep a URL short and an answer
#: small (some 150 KB), and a library of MAX_PAPERS in 40 requests.
BATCH_SIZE = 50

_SOURCE = SourceSettings(name="library", kind=SourceKind.ARXIV_API, announce_types=())
#: Only the papers' texts and ids are kept, never a date: any moment does for the parser.
_NO_DATE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the arXiv API said about the ids asked for."""

    found: tuple[LibraryPaper, ...] = ()  # in the order asked; new texts, for the store
    missing: tuple[str, ...] = ()  # arXiv answered, without them: no such paper
    failed: Mapping[str, str] = field(default_factory=dict)  # id -> why it went unanswered
    requests: int = 0


def look_up(
    ids: Iterable[str],
    *,
    fetcher: Fetcher,
    known: Collection[str] = (),
    api_url: str = ARXIV_API_URL,
    batch_size: int = BATCH_SIZE,
) -> Lookup:
    """Texts of the arXiv papers among ``ids`` (canonical: ``arxiv:2401.01234``) that are
    not in ``known``. A failed request costs its batch only: those ids are in ``failed``
    with the reason, and the other batches are still asked. Never raises for the API."""
    wanted = _wanted(ids, known)
    found: dict[str, LibraryPaper] = {}
    missing: set[str] = set()
    failed: dict[str, str] = {}
    requests = 0
    for start in range(0, len(wanted), batch_size):
        batch = wanted[start : start + batch_size]
        while batch:
            requests += 1
            try:
                papers = _ask(fetcher, api_url, batch)
            except FeedError as e:
                rejected = _rejected(e.reason, batch)
                if rejected is None:
                    log.warning("arXiv look-up of %d ids failed: %s", len(batch), e)
                    failed.update(dict.fromkeys(batch, one_line(e.reason)))
                    break
                # One id arXiv refuses would fail the whole batch: ask again without it.
                missing.add(rejected)
                batch = [i for i in batch if i != rejected]
                continue
            except Exception as e:
                # A bug, but this batch's: the others are still asked (as for a source).
                log.exception("arXiv look-up of %d ids: unexpected error", len(batch))
                failed.update(dict.fromkeys(batch, unexpected("unexpected error", e)))
                break
            for ident in batch:
                if ident in papers:
                    found[ident] = papers[ident]
                else:
                    missing.add(ident)
            break
    return Lookup(
        found=tuple(found[i] for i in wanted if i in found),
        missing=tuple(i for i in wanted if i in missing),
        failed=failed,
        requests=requests,
    )


def _wanted(ids: Iterable[str], known: Collection[str]) -> list[str]:
    """The arXiv ids to ask for, canonical, each once, in the order given."""
    out: dict[str, None] = {}
    for ident in ids:
        kind, _, value = ident.partition(":")
        if kind != "arxiv":
            continue  # a DOI: no source to ask
        parsed = arxiv_id(value)
        canonical = f"arxiv:{parsed[0]}" if parsed else None
        if canonical and canonical not in known and ident not in known:
            out[canonical] = None
    return list(out)


def _query_url(api_url: str, batch: Iterable[str]) -> str:
    """The query for ``batch`` (canonical ids): ``id_list`` and as many results as ids
    (the API's default is 10)."""
    ids = [i.removeprefix("arxiv:") for i in batch]
    query = urllib.parse.urlencode({"id_list": ",".join(ids), "max_results": len(ids)}, safe=",/")
    return f"{api_url}?{query}"


def _ask(fetcher: Fetcher, api_url: str, batch: list[str]) -> dict[str, LibraryPaper]:
    from newsletter.sources.parse import parse_document

    url = _query_url(api_url, batch)
    resp = fetcher.get(url)
    parsed = parse_document(
        resp.body, source=_SOURCE, url=url, content_type=resp.content_type, fetched_at=_NO_DATE
    )
    return {
        f"arxiv:{p.arxiv_id}": LibraryPaper(
            title=p.title, abstract=p.abstract, id=f"arxiv:{p.arxiv_id}", authors=p.authors
        )
        for p in parsed.papers
        if p.arxiv_id
    }


def _rejected(reason: str, batch: list[str]) -> str | None:
    """The id of the batch an arXiv API error names ("incorrect id format for 0704.0000")."""
    if not reason.startswith("arXiv API error:"):
        return None
    words = reason.split()
    found = arxiv_id(words[-1]) if words else None
    ident = f"arxiv:{found[0]}" if found else None
    return ident if ident in batch else None


def complete(
    library: ParsedLibrary,
    texts: Mapping[str, LibraryPaper],
    lookup: Lookup | None = None,
) -> ParsedLibrary:
    """``library`` with the texts of its papers known by id alone filled in from ``texts``
    (by canonical id: what the store has) and ``lookup.found``, duplicates merged again (an
    id's title may be another entry's). A paper still without text stays, with a problem
    saying it does not count yet, and until when."""
    known = dict(texts)
    if lookup is not None:
        known.update((p.id, p) for p in lookup.found if p.id)
    filled = []
    for entry in library.entries:
        paper = entry.paper
        text = known.get(paper.id) if paper.id and not entry.has_text else None
        if text is not None:
            paper = replace(
                paper,
                title=text.title,
                abstract=text.abstract,
                authors=paper.authors or text.authors,
            )
        filled.append(replace(entry, paper=paper))
    entries, repeats = merge(filled)
    waiting = [
        LibraryProblem(e.line, _not_yet(e.paper.id, lookup), e.key)
        for e in entries
        if e.paper.id and not e.has_text
    ]
    problems = sorted([*library.problems, *repeats, *waiting], key=lambda p: p.line)
    return ParsedLibrary(library.format, entries, tuple(problems))


def _not_yet(ident: str, lookup: Lookup | None) -> str:
    head = f"no title or abstract known for {ident}; it does not count until"
    if not ident.startswith("arxiv:"):
        return (
            f"{head} a BibTeX or RIS export gives its title (DOIs are not looked up: "
            "there is no DOI source)"
        )
    if lookup is not None and ident in lookup.failed:
        return f"{head} arXiv answers for it (the look-up failed: {lookup.failed[ident]})"
    if lookup is not None and ident in lookup.missing:
        return f"{head} the id is corrected: arXiv has no such paper"
    return f"{head} it is looked up on arXiv"
