"""Store operations on subscribers' interests and libraries (a part of
:class:`newsletter.store.Store`).

A library paper's text is stored once (``library_papers``), whoever keeps it; a library is
its subscriber's links to those rows (``subscriber_library``), in their order. A paper nobody
keeps any more is deleted when the last library holding it drops it (and when a sign-up that
kept it is purged), so the table holds the union of today's libraries and no more: a
reader's own BibTeX abstracts do not outlive their library, and a paper kept again later is
looked up again. Interests go with their subscriber: deleting the subscriber row deletes
them; unsubscribing keeps them, for when the subscriber comes back.

Reading many subscribers costs one query per table, whatever their number
(``interests_of``, ``all_interests``): bench/interests_store.py measures it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from newsletter.models import SubscriberStatus
from newsletter.personal.interests import Interests, LibraryPaper, SubscriberInterests
from newsletter.personal.match import title_key
from newsletter.personal.stated import InterestsChange
from newsletter.store import schema
from newsletter.store.database import Database

#: Rows per IN (...) list: below SQLite's old limit of 999 bound parameters.
_CHUNK = 500
#: Longest id used as a key as it is; a longer one (a hostile DOI) is hashed, so that every
#: key fits a PostgreSQL index entry.
_MAX_KEY = 200


def library_key(paper: LibraryPaper) -> str | None:
    """The key of the row ``paper`` is stored in: its canonical id; else a hash of its
    title as titles are compared (case, accents, punctuation aside), so two exports of
    one paper without an id share a row; else of its abstract. ``None``: nothing to key."""
    if paper.id:
        return id_key(paper.id)
    for kind, text in (("title", paper.title), ("abstract", paper.abstract)):
        folded = title_key(text)
        if folded:
            return f"{kind}:sha256:{hashlib.sha256(folded.encode()).hexdigest()}"
    return None


def id_key(ident: str) -> str:
    """The key of the paper with canonical id ``ident``."""
    if len(ident) <= _MAX_KEY:
        return ident
    return f"id:sha256:{hashlib.sha256(ident.encode()).hexdigest()}"


def _has_text(row: Any) -> bool:
    return bool(row.title or row.abstract)


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


# --------------------------------------------------------------------------- writing


def write_interests(
    conn: sa.Connection, subscriber_id: int, change: InterestsChange, now: dt.datetime
) -> bool:
    """Apply ``change`` to the interests of ``subscriber_id`` inside the caller's write
    transaction; False (nothing done) if there is no such subscriber."""
    subs = schema.subscribers
    # the subscriber's row locked (PostgreSQL): two changes to one subscriber queue
    found = conn.execute(
        sa.select(subs.c.id).where(subs.c.id == subscriber_id).with_for_update()
    ).first()
    if found is None:
        return False
    t = schema.subscriber_interests
    row = conn.execute(sa.select(t).where(t.c.subscriber_id == subscriber_id)).first()
    keywords, authors, categories, only = (
        (row.keywords, row.authors, row.categories, bool(row.only_for_you))
        if row
        else ((), (), (), False)
    )
    values = {
        "keywords": list(keywords if change.keywords is None else change.keywords),
        "authors": list(authors if change.authors is None else change.authors),
        "categories": list(categories if change.categories is None else change.categories),
        "only_for_you": only if change.only_for_you is None else change.only_for_you,
        "updated_at": now,
    }
    if change.library is not None:
        _replace_library(conn, subscriber_id, change.library, now)
    links = schema.subscriber_library
    has_library = (
        conn.execute(
            sa.select(links.c.paper_id).where(links.c.subscriber_id == subscriber_id).limit(1)
        ).first()
        is not None
    )
    stated = values["keywords"] or values["authors"] or values["categories"]
    if not (stated or values["only_for_you"] or has_library):
        conn.execute(t.delete().where(t.c.subscriber_id == subscriber_id))
    elif row is None:
        conn.execute(t.insert().values(subscriber_id=subscriber_id, **values))
    else:
        conn.execute(t.update().where(t.c.subscriber_id == subscriber_id).values(**values))
    return True


def _replace_library(
    conn: sa.Connection, subscriber_id: int, papers: Sequence[LibraryPaper], now: dt.datetime
) -> None:
    """The subscriber's library becomes ``papers`` (in this order); papers nobody keeps any
    more are deleted."""
    _lock_libraries(conn)
    keyed: dict[str, LibraryPaper] = {}
    for paper in papers:
        key = library_key(paper)
        if key is not None and key not in keyed:
            keyed[key] = paper
    rows = _library_rows(conn, keyed, now)
    links = schema.subscriber_library
    old = {
        r.paper_id
        for r in conn.execute(
            sa.select(links.c.paper_id).where(links.c.subscriber_id == subscriber_id)
        )
    }
    conn.execute(links.delete().where(links.c.subscriber_id == subscriber_id))
    new = [rows[key] for key in keyed]
    if new:
        conn.execute(
            links.insert(),
            [
                {"subscriber_id": subscriber_id, "paper_id": paper_id, "position": i}
                for i, paper_id in enumerate(dict.fromkeys(new))
            ],
        )
    prune_library(conn, old - set(new))


#: PostgreSQL advisory lock (the one-bigint form, beside lock.py's) that library changes
#: take for their transaction: two libraries dropping the last two links to one paper at
#: once would each still see the other's link and leave the paper behind, and a paper
#: could be deleted while another library links it. Libraries change seldom (a reader
#: editing them, an import): queuing these transactions costs nothing that matters.
#: SQLite's writers queue anyway.
_PG_LIBRARY_LOCK = 7263016


def _lock_libraries(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LIBRARY_LOCK})


def _library_rows(
    conn: sa.Connection, keyed: dict[str, LibraryPaper], now: dt.datetime
) -> dict[str, int]:
    """The row id of every paper of ``keyed`` (by key), inserting the new ones and giving a
    text to stored ones known by id alone. A stored text is not replaced: the first text of
    a paper serves everyone who keeps it. The caller holds _lock_libraries."""
    t = schema.library_papers
    found: dict[str, int] = {}
    for chunk in _chunks(list(keyed)):
        for row in conn.execute(
            sa.select(t.c.id, t.c.key, t.c.title, t.c.abstract, t.c.authors).where(
                t.c.key.in_(chunk)
            )
        ):
            found[row.key] = row.id
            paper = keyed[row.key]
            fill: dict[str, Any] = {}
            if not _has_text(row) and (paper.title or paper.abstract):
                fill = {"title": paper.title, "abstract": paper.abstract}
            if not row.authors and paper.authors:
                fill["authors"] = list(paper.authors)
            if fill:
                conn.execute(t.update().where(t.c.id == row.id).values(updated_at=now, **fill))
    new = [
        {
            "key": key,
            "paper_id": paper.id,
            "title": paper.title,
            "abstract": paper.abstract,
            "authors": list(paper.authors),
            "created_at": now,
            "updated_at": now,
        }
        for key, paper in keyed.items()
        if key not in found
    ]
    for chunk in _chunks(new):
        conn.execute(t.insert(), chunk)
        keys = [r["key"] for r in chunk]
        found.update(
            (r.key, r.id) for r in conn.execute(sa.select(t.c.key, t.c.id).where(t.c.key.in_(keys)))
        )
    return found


def prune_library(conn: sa.Connection, candidates: Iterable[int] | None = None) -> None:
    """Delete the library papers among ``candidates`` (row ids; ``None``: all) that nobody
    keeps, inside the caller's write transaction."""
    _lock_libraries(conn)
    t, links = schema.library_papers, schema.subscriber_library
    unkept = ~sa.exists().where(links.c.paper_id == t.c.id)
    if candidates is None:
        conn.execute(t.delete().where(unkept))
        return
    for chunk in _chunks(sorted(candidates)):
        conn.execute(t.delete().where(t.c.id.in_(chunk), unkept))


# --------------------------------------------------------------------------- reading


#: Narrows a query on a table with a subscriber_id column to some subscribers.
_Restrict = Callable[[sa.Select[Any], sa.ColumnElement[int]], sa.Select[Any]]


def _of_ids(ids: Sequence[int]) -> _Restrict:
    return lambda q, column: q.where(column.in_(ids))


def _of_status(status: SubscriberStatus | None) -> _Restrict:
    subs = schema.subscribers
    if status is None:
        return lambda q, column: q
    return lambda q, column: q.join(subs, subs.c.id == column).where(subs.c.status == status.value)


def _read(conn: sa.Connection, restrict: _Restrict) -> dict[int, SubscriberInterests]:
    """Interests of the subscribers ``restrict`` keeps, by id: three queries."""
    t, links, papers = schema.subscriber_interests, schema.subscriber_library, schema.library_papers
    stated = conn.execute(
        restrict(sa.select(t), t.c.subscriber_id).order_by(t.c.subscriber_id)
    ).all()
    if not stated:
        return {}
    kept = restrict(sa.select(links.c.paper_id), links.c.subscriber_id)
    texts: dict[int, LibraryPaper | str] = {}
    for text in conn.execute(
        sa.select(
            papers.c.id, papers.c.paper_id, papers.c.title, papers.c.abstract, papers.c.authors
        ).where(papers.c.id.in_(kept.scalar_subquery()))
    ):
        if _has_text(text):
            texts[text.id] = LibraryPaper(
                text.title, text.abstract, text.paper_id, tuple(text.authors)
            )
        else:
            texts[text.id] = text.paper_id or ""
    library: dict[int, list[LibraryPaper | str]] = {}
    for link in conn.execute(
        restrict(
            sa.select(links.c.subscriber_id, links.c.paper_id), links.c.subscriber_id
        ).order_by(links.c.subscriber_id, links.c.position)
    ):
        library.setdefault(link.subscriber_id, []).append(texts[link.paper_id])
    out = {}
    for row in stated:
        mine = library.get(row.subscriber_id, [])
        out[row.subscriber_id] = SubscriberInterests(
            Interests(
                tuple(row.keywords),
                tuple(row.authors),
                tuple(row.categories),
                tuple(p for p in mine if isinstance(p, LibraryPaper)),
            ),
            bool(row.only_for_you),
            tuple(p for p in mine if isinstance(p, str) and p),
        )
    return out


class InterestStore(Database):
    """Each subscriber's interests: keywords, authors, categories, "For you" only, library."""

    def update_interests(
        self, subscriber_id: int, change: InterestsChange, *, now: dt.datetime
    ) -> SubscriberInterests | None:
        """Apply ``change`` (each part given replaces that part; see InterestsChange) in one
        transaction; the interests as they now are, or ``None`` if there is no such
        subscriber. Library papers without a text are kept by id, waiting for it."""
        with self.write() as conn:
            if not write_interests(conn, subscriber_id, change, now):
                return None
            found = _read(conn, _of_ids([subscriber_id]))
        return found.get(subscriber_id, SubscriberInterests())

    def interests(self, subscriber_id: int) -> SubscriberInterests:
        """One subscriber's interests (empty ones if they stated none)."""
        with self.read() as conn:
            found = _read(conn, _of_ids([subscriber_id]))
        return found.get(subscriber_id, SubscriberInterests())

    def interests_of(self, subscriber_ids: Iterable[int]) -> dict[int, SubscriberInterests]:
        """The interests of these subscribers, by id; those who stated none are left out.
        Three queries per 500 subscribers."""
        ids = sorted(set(subscriber_ids))
        out: dict[int, SubscriberInterests] = {}
        with self.read() as conn:
            for chunk in _chunks(ids):
                out.update(_read(conn, _of_ids(chunk)))
        return out

    def all_interests(
        self, status: SubscriberStatus | None = SubscriberStatus.ACTIVE
    ) -> dict[int, SubscriberInterests]:
        """The interests of every subscriber of ``status`` (``None``: any) who stated some,
        by id, in three queries (what a send needs for the whole list at once). A paper
        kept by several of them is one ``LibraryPaper`` object, shared."""
        with self.read() as conn:
            return _read(conn, _of_status(status))

    def library_texts(self, ids: Iterable[str]) -> dict[str, LibraryPaper]:
        """The stored texts of the library papers with these canonical ids (those known by
        id alone are left out): a paper some subscriber keeps is never looked up again."""
        keys = {id_key(i): i for i in ids}
        t = schema.library_papers
        out: dict[str, LibraryPaper] = {}
        with self.read() as conn:
            for chunk in _chunks(sorted(keys)):
                for row in conn.execute(sa.select(t).where(t.c.key.in_(chunk))):
                    if _has_text(row):
                        ident = keys[row.key]
                        out[ident] = LibraryPaper(
                            row.title, row.abstract, ident, tuple(row.authors)
                        )
        return out

    def save_library_texts(self, papers: Iterable[LibraryPaper], *, now: dt.datetime) -> int:
        """Give the stored library papers known by id alone the texts found for them since
        (by their ids); a paper nobody keeps is not stored. Returns how many were filled."""
        t = schema.library_papers
        filled = 0
        with self.write() as conn:
            for paper in papers:
                if not paper.id or not (paper.title or paper.abstract):
                    continue
                done = conn.execute(
                    t.update()
                    .where(t.c.key == id_key(paper.id), t.c.title == "", t.c.abstract == "")
                    .values(
                        title=paper.title,
                        abstract=paper.abstract,
                        authors=list(paper.authors),
                        updated_at=now,
                    )
                )
                filled += int(done.rowcount or 0)
        return filled
