"""Setting a subscriber's interests: the job behind `subscribers set` (and what the web's
preferences page calls): the library read, its papers known by id alone looked up on arXiv
(only the ones no subscriber's library has a text for), everything stored in one
transaction. A look-up that fails costs only the papers it was for: they are stored by id,
reported, and looked up again the next time the subscriber's interests are set.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.personal.fetch import Lookup, complete, look_up
from newsletter.personal.interests import LibraryPaper, SubscriberInterests
from newsletter.personal.library import (
    MAX_BYTES,
    BadLibrary,
    LibraryEntry,
    LibraryFormat,
    ParsedLibrary,
    read_library,
)
from newsletter.personal.stated import InterestsChange
from newsletter.sources.http import Fetcher, default_user_agent

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.store import Store


@dataclass(frozen=True, slots=True)
class SetReport:
    """What setting a subscriber's interests did."""

    interests: SubscriberInterests  # as stored now
    #: one line each: what of the library given was not used as given ("line 3: ..."), and
    #: the papers still without a text (of the library given, or stored earlier), and why
    problems: tuple[str, ...] = ()
    lookup: Lookup | None = None  # None: nothing had to be asked
    filled: int = 0  # papers stored earlier by id alone that got their text now


def read_library_file(data: bytes, *, name: str, filename: str | None = None) -> ParsedLibrary:
    """A library file read as ``read_library`` does, and refused (``BadLibrary``) when not
    one paper of it can be used: an empty file or an export with no usable entry is a
    mistake, and would otherwise empty the subscriber's library. ``name`` is how the
    messages name the file."""
    try:
        library = read_library(data, filename=filename)
    except BadLibrary as e:
        raise BadLibrary(f"{name}: {e}") from None
    if not library.entries:
        first = f": {library.problems[0]}" if library.problems else ""
        more = (
            f" (and {len(library.problems) - 1} more problems)" if len(library.problems) > 1 else ""
        )
        raise BadLibrary(
            f"{name}: no paper found{first}{more}; expected a BibTeX or RIS export, or arXiv "
            "ids and DOIs one a line"
        )
    return library


#: How much of a library file is read: one byte over the cap tells a file that is too large.
READ_LIMIT = MAX_BYTES + 1


def make_fetcher(settings: Settings) -> Fetcher:
    """The fetcher the feeds use: the same politeness, timeouts, retries and User-Agent."""
    ua = settings.fetch.user_agent or default_user_agent(
        settings.list.base_url, settings.list.contact or settings.list.from_address
    )
    return Fetcher(settings.fetch, user_agent=ua)


def set_interests(
    settings: Settings,
    store: Store,
    subscriber_id: int,
    change: InterestsChange,
    *,
    library: ParsedLibrary | None = None,
    now: dt.datetime,
    fetcher: Fetcher | None = None,
    on_look_up: Callable[[int], None] | None = None,
) -> SetReport | None:
    """Apply ``change`` to the subscriber's interests, with ``library`` (read from what they
    gave) as their new library when given. The arXiv ids without a text (in ``library``,
    else in the library stored) are looked up through ``fetcher`` (default: one like the
    feeds') at ``fetch.arxiv_api_url``; ``on_look_up`` is told how many first (a long
    list takes a while: BATCH_SIZE ids a request, one request per ``fetch.min_interval``).
    ``None`` if there is no such subscriber."""
    if library is not None:
        waiting = library.without_text
    else:
        waiting = store.interests(subscriber_id).waiting
    texts = store.library_texts(waiting)
    asked = [i for i in waiting if i not in texts and i.startswith("arxiv:")]
    lookup = None
    if asked:
        if on_look_up is not None:
            on_look_up(len(asked))
        lookup = look_up(
            asked,
            fetcher=fetcher or make_fetcher(settings),
            known=texts,
            api_url=settings.fetch.arxiv_api_url,
        )
    filled = 0
    problems: tuple[str, ...] = ()
    if library is not None:
        library = complete(library, texts, lookup)
        problems = tuple(map(str, library.problems))
        change = dataclasses.replace(change, library=library.papers)
    elif lookup is not None and lookup.found:
        filled = store.save_library_texts(lookup.found, now=now)
    stored = store.update_interests(subscriber_id, change, now=now)
    if stored is None:
        return None
    if library is None and stored.waiting:
        # why the stored library still waits, said as for a library given (without lines)
        entries = tuple(LibraryEntry(LibraryPaper("", id=i), 0) for i in stored.waiting)
        still = complete(ParsedLibrary(LibraryFormat.LIST, entries), {}, lookup)
        problems = tuple(p.reason for p in still.problems)
    return SetReport(stored, problems, lookup, filled)
