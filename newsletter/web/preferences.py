"""The interests a reader edits on the web: the preferences page and the sign-up form.

What they typed is read, checked (``personal.stated``: categories must be arXiv's, no blank
or control characters, at most 50 of each) and turned into one change of their interests;
a library pasted or uploaded is read like the CLI reads one (``personal.library``). Every
call into the interests store is in this module, so the web side follows it in one place.

Library papers given by arXiv id alone are looked up on the arXiv API inside the request,
but briefly: one request of at most ``fetch.BATCH_SIZE`` ids, within ``LOOKUP_SECONDS``,
one look-up at a time and no two within ``fetch.min_interval`` (arXiv asks for 3 s between
requests). Whatever is not found then is stored by id, shown as waiting, and looked up
again the next time the reader (or `newsletter subscribers set`) saves the interests; a
reader is never kept waiting on a slow API, and a flood of form posts cannot make us flood
arXiv.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.errors import FeedError
from newsletter.models import Edition
from newsletter.personal.fetch import BATCH_SIZE, Lookup, complete, look_up
from newsletter.personal.interests import LibraryPaper, SubscriberInterests
from newsletter.personal.library import (
    MAX_PAPERS,
    BadLibrary,
    LibraryEntry,
    LibraryFormat,
    ParsedLibrary,
    merge,
)
from newsletter.personal.stated import BadInterest, InterestsChange, change
from newsletter.personal.update import read_library_file
from newsletter.sources.http import Fetcher
from newsletter.store.interests import library_key

if TYPE_CHECKING:
    from werkzeug.datastructures import FileStorage, ImmutableMultiDict

    from newsletter.config import Settings
    from newsletter.store import Store

#: Largest library file a reader may upload (the CLI reads up to 5 MB): some 550 papers of a
#: Zotero export with abstracts, and thousands without.
MAX_UPLOAD = 1_000_000
#: Largest body of a form that carries a library: the file, a pasted list and the rest.
MAX_UPLOAD_BODY = MAX_UPLOAD + 100_000
#: Longest a reader waits for the arXiv API when they save.
LOOKUP_SECONDS = 5.0

_KEYWORDS = re.compile(r"[\n,;]")
_AUTHORS = re.compile(r"[\n;]")  # a comma belongs to a name: "LeCun, Y."
_CATEGORIES = re.compile(r"[\s,;]")


class FormProblem(Exception):
    """What the reader must fix; nothing was stored. The message is shown on the form."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Typed:
    """The interests fields as typed, shown again with a problem so that nothing is lost."""

    keywords: str = ""
    authors: str = ""
    categories: str = ""
    only_for_you: bool = False
    library: str = ""  # pasted ids, links, DOIs (or a BibTeX/RIS export)
    remove: frozenset[str] = frozenset()  # keys of stored library papers to drop
    cadence: str = ""  # "daily" or "weekly" (an Edition); "": not given

    @classmethod
    def of_form(cls, form: ImmutableMultiDict[str, str]) -> Typed:
        return cls(
            keywords=form.get("keywords", ""),
            authors=form.get("authors", ""),
            categories=form.get("categories", ""),
            only_for_you=form.get("only_for_you", "") == "on",
            library=form.get("library", ""),
            remove=frozenset(form.getlist("remove")),
            cadence=form.get("cadence", ""),
        )

    @classmethod
    def of_stored(cls, stored: SubscriberInterests, cadence: Edition | None = None) -> Typed:
        i = stored.interests
        return cls(
            "\n".join(i.keywords),
            "\n".join(i.authors),
            "\n".join(i.categories),
            stored.only_for_you,
            cadence=cadence.value if cadence else "",
        )

    @property
    def is_blank(self) -> bool:
        return not (
            self.keywords.strip()
            or self.authors.strip()
            or self.categories.strip()
            or self.only_for_you
            or self.library.strip()
            or self.cadence not in ("", Edition.DAILY.value)
        )


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    data: bytes


def read_upload(files: ImmutableMultiDict[str, FileStorage]) -> Upload | None:
    """The library file of the form, read up to MAX_UPLOAD bytes; ``None`` if none was chosen."""
    storage = files.get("library_file")
    if storage is None or not (storage.filename or "").strip():
        return None
    data = storage.stream.read(MAX_UPLOAD + 1)
    name = _file_name(storage.filename or "")
    if len(data) > MAX_UPLOAD:
        raise FormProblem(
            f"{name} is larger than {MAX_UPLOAD // 1_000_000} MB, the most a library file "
            "may have here: export fewer papers (the ones closest to what you want to read)",
            413,
        )
    return Upload(name, data)


def _file_name(name: str) -> str:
    """The name a browser sent, without any path, one line, short enough to quote."""
    base = re.split(r"[/\\]", name)[-1]
    base = " ".join("".join(c if c.isprintable() else " " for c in base).split())
    return (base if len(base) <= 60 else base[:59] + "…") or "the file"


@dataclass(frozen=True, slots=True)
class LibraryRow:
    """One paper of a stored library as the page lists it."""

    key: str  # what the page's "remove" checkbox sends
    title: str  # "" while it is known by id alone
    ident: str  # its canonical id, "" if it has none


def library_rows(stored: SubscriberInterests) -> list[LibraryRow]:
    rows = []
    for paper in _stored_papers(stored):
        key = library_key(paper)
        if key is not None:
            rows.append(LibraryRow(key, paper.title or paper.abstract[:120], paper.id or ""))
    return rows


def _stored_papers(stored: SubscriberInterests) -> list[LibraryPaper]:
    return [*stored.interests.library, *(LibraryPaper("", id=i) for i in stored.waiting)]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A change ready to store, and what the reader should know about it."""

    change: InterestsChange
    notes: tuple[str, ...] = ()  # what of the library given was not used, and why
    lookup: Lookup | None = None  # what arXiv said; None: not asked this time
    cadence: Edition | None = None  # daily or weekly; None: not given


def prepare(
    typed: Typed,
    upload: Upload | None,
    *,
    stored: SubscriberInterests | None,
    store: Store,
    lookups: Lookups,
) -> Prepared:
    """The change of interests the form asks for: its fields replace the stated interests;
    the library becomes the stored one (``None`` on the sign-up form) without the papers
    ticked for removal, plus the papers pasted and uploaded. ``FormProblem`` names the
    first thing to fix."""
    if typed.cadence not in ("", *(e.value for e in Edition)):
        raise FormProblem("How often: choose every sending day or once a week")
    try:
        stated = change(
            keywords=_values(_KEYWORDS, typed.keywords),
            authors=_values(_AUTHORS, typed.authors),
            categories=_values(_CATEGORIES, typed.categories),
            only_for_you=typed.only_for_you,
        )
    except BadInterest as e:
        raise FormProblem(_sentence(str(e))) from None
    entries = [
        LibraryEntry(p, 0)
        for p in (_stored_papers(stored) if stored else [])
        if library_key(p) not in typed.remove
    ]
    notes: list[str] = []
    given: list[tuple[str, bytes, str | None]] = [("The pasted list", typed.library.encode(), None)]
    if upload is not None:
        given.append((upload.filename, upload.data, upload.filename))
    for name, data, filename in given:
        if not data.strip():
            continue
        try:
            library = read_library_file(data, name=name, filename=filename)
        except BadLibrary as e:
            raise FormProblem(_for_the_web(str(e))) from None
        entries += library.entries
        notes += [f"{name}, {p}" for p in library.problems]
    # A paper given again, or kept already, is simply one paper: no note for that.
    merged, _ = merge(entries)
    if len(merged) > MAX_PAPERS:
        raise FormProblem(
            f"Your library would hold {len(merged):,} papers, more than the {MAX_PAPERS:,} it "
            "may: keep the ones closest to what you want to read"
        )
    waiting = [e.paper.id for e in merged if e.paper.id and not e.has_text]
    texts = store.library_texts(waiting)
    lookup = lookups.look_up([i for i in waiting if i not in texts], known=texts)
    library = complete(ParsedLibrary(LibraryFormat.LIST, merged), texts, lookup)
    return Prepared(
        dataclasses.replace(stated, library=library.papers),
        tuple(notes),
        lookup,
        Edition(typed.cadence) if typed.cadence else None,
    )


def save(
    store: Store, subscriber_id: int, prepared: Prepared, *, now: dt.datetime
) -> SubscriberInterests | None:
    """Store the change, and the cadence when one was chosen (a switch loses and repeats
    nothing: docs/architecture.md); the interests as they now are (``None``: no such
    subscriber)."""
    if prepared.cadence is not None:
        store.set_cadence(subscriber_id, prepared.cadence, now=now)
    return store.update_interests(subscriber_id, prepared.change, now=now)


def stored_interests(store: Store, subscriber_id: int) -> SubscriberInterests:
    return store.interests(subscriber_id)


def waiting_notes(stored: SubscriberInterests, lookup: Lookup | None) -> list[str]:
    """One line per library paper still known by id alone: why, and what happens next."""
    notes = []
    for ident in stored.waiting:
        if not ident.startswith("arxiv:"):
            notes.append(
                f"{ident}: a DOI alone is not looked up; it counts once a BibTeX or RIS "
                "export gives its title."
            )
        elif lookup is not None and ident in lookup.missing:
            notes.append(f"{ident}: arXiv has no such paper. Check the id, or remove it.")
        elif lookup is not None and ident in lookup.failed:
            notes.append(
                f"{ident}: arXiv did not answer ({lookup.failed[ident]}); it is looked up "
                "again when you save."
            )
        else:
            notes.append(f"{ident}: not looked up yet; it is when you save again in a minute.")
    return notes


def _values(separators: re.Pattern[str], text: str) -> list[str]:
    return [v for v in separators.split(text) if v.strip()]


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def _for_the_web(message: str) -> str:
    """A library reader's message, without the advice it gives the CLI's user: a file that is
    not UTF-8 text, or UTF-16 without a byte-order mark, can be read with ``--encoding``,
    which a reader on the web cannot give."""
    if "--encoding" not in message:
        return message
    return message.split(";", 1)[0] + ": export your library again, as UTF-8 text"


class Lookups:
    """Brief arXiv look-ups for the web pages: see the module's docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        seconds: float = LOOKUP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        from newsletter.sources.http import default_user_agent

        # No retries: a reader does not wait for them; the next save is the retry.
        self.fetch = dataclasses.replace(settings.fetch, timeout=seconds, retries=0)
        lst = settings.list
        self.user_agent = settings.fetch.user_agent or default_user_agent(
            lst.base_url, lst.contact or lst.from_address
        )
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None

    def look_up(self, ids: Sequence[str], *, known: Collection[str]) -> Lookup | None:
        """What arXiv says of the first BATCH_SIZE arXiv ids of ``ids``; ``None`` when
        none was asked: nothing to ask, another look-up is running, or the last one began
        less than ``fetch.min_interval`` ago."""
        asked = [i for i in ids if i.startswith("arxiv:")][:BATCH_SIZE]
        if not asked or not self._lock.acquire(blocking=False):
            return None
        try:
            start = self.clock()
            if self._last is not None and start - self._last < self.fetch.min_interval:
                return None
            self._last = start
            fetcher = Fetcher(
                self.fetch,
                user_agent=self.user_agent,
                sleep=self._sleep_until(start + self.seconds),
                clock=self.clock,
            )
            return look_up(asked, fetcher=fetcher, known=known, api_url=self.fetch.arxiv_api_url)
        finally:
            self._lock.release()

    def _sleep_until(self, deadline: float) -> Callable[[float], None]:
        """A sleep that refuses to go past ``deadline``: the Fetcher waits between two
        requests (an id arXiv refuses makes ``look_up`` ask again without it), and the
        reader must not."""
        api = self.fetch.arxiv_api_url

        def sleep(seconds: float) -> None:
            if self.clock() + seconds > deadline:
                raise FeedError(api, f"no answer within {self.seconds:g} s")
            time.sleep(seconds)

        return sleep
