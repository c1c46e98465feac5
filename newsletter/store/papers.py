"""Papers and sources in the store: one row per paper whatever the source, and what each
source said last (for conditional GET)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from newsletter.models import AnnounceType, Edition, FetchStatus, Paper, SourceState
from newsletter.sources.merge import id_rank, identity_key, merge_paper
from newsletter.store import schema
from newsletter.store.database import Database

#: Rows per IN (...) query: below SQLite's default limit of 999 bound parameters.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class UpsertResult:
    new: int = 0  # papers never stored before
    updated: int = 0  # known papers whose record changed (merged signals, filled gaps)
    unchanged: int = 0


class PaperStore(Database):
    """Storing and reading papers; each source's last state."""

    def upsert_papers(self, papers: Iterable[Paper], *, seen_at: dt.datetime) -> UpsertResult:
        """Store new papers and merge known ones: one row per paper, whatever the source.

        A record is the known paper with its id, else the one with the same identity_key
        (folded title and first author's surname: the same paper under an arXiv id in one
        feed and a DOI or a link in another); the row keeps the id it was stored under.
        """
        incoming = _one_per_paper(papers)
        if not incoming:
            return UpsertResult()
        new = updated = unchanged = 0
        t = schema.papers
        with self.write() as conn:
            existing = self._stored(conn, sorted(incoming))
            unknown = [p for pid, p in incoming.items() if pid not in existing]
            found = self._stored_by_title(conn, unknown)
            existing |= self._stored(conn, sorted(set(found.values())))
            inserts = []
            for pid in sorted(incoming):
                paper = incoming[pid]
                target = pid if pid in existing else found.get(pid)
                if target is None:
                    inserts.append(
                        _paper_to_row(paper, [paper.source] if paper.source else [])
                        | {"first_seen_at": seen_at, "updated_at": seen_at}
                    )
                    new += 1
                    continue
                old, old_sources = existing[target]
                merged = merge_paper(old, paper)
                srcs = old_sources + (
                    [paper.source] if paper.source and paper.source not in old_sources else []
                )
                if merged == old and srcs == old_sources:
                    unchanged += 1
                    continue
                conn.execute(
                    t.update()
                    .where(t.c.id == target)
                    .values(**_paper_to_row(merged, srcs), updated_at=seen_at)
                )
                existing[target] = (merged, srcs)
                if identity_key(merged) != identity_key(old):  # a title or author filled in
                    pt = schema.paper_titles
                    conn.execute(pt.delete().where(pt.c.paper_id == target))
                    self._save_keys(conn, [merged])
                updated += 1
            if inserts:
                conn.execute(t.insert(), inserts)
                self._save_keys(conn, [incoming[r["id"]] for r in inserts])
        return UpsertResult(new=new, updated=updated, unchanged=unchanged)

    @staticmethod
    def _stored(conn: sa.Connection, ids: list[str]) -> dict[str, tuple[Paper, list[str]]]:
        """Stored papers by id, with their source lists."""
        t = schema.papers
        out: dict[str, tuple[Paper, list[str]]] = {}
        for i in range(0, len(ids), _CHUNK):
            for row in conn.execute(sa.select(t).where(t.c.id.in_(ids[i : i + _CHUNK]))):
                out[row.id] = (_paper_from_row(row), list(row.sources))
        return out

    @staticmethod
    def _stored_by_title(conn: sa.Connection, papers: list[Paper]) -> dict[str, str]:
        """For papers not stored under their own id: the id of a stored paper with the same
        identity_key (the first by id when several match), by incoming id."""
        keys = {p.id: k for p in papers if (k := identity_key(p)) is not None}
        wanted = sorted({k[0] for k in keys.values()})
        pt = schema.paper_titles
        stored: dict[tuple[str, str], str] = {}
        for i in range(0, len(wanted), _CHUNK):
            q = sa.select(pt).where(pt.c.title_key.in_(wanted[i : i + _CHUNK]))
            for row in conn.execute(q.order_by(pt.c.paper_id)):
                stored.setdefault((row.title_key, row.first_author), row.paper_id)
        return {pid: stored[k] for pid, k in keys.items() if k in stored}

    @staticmethod
    def _save_keys(conn: sa.Connection, papers: list[Paper]) -> None:
        rows = [
            {"paper_id": p.id, "title_key": k[0], "first_author": k[1]}
            for p in papers
            if (k := identity_key(p)) is not None
        ]
        if rows:
            conn.execute(schema.paper_titles.insert(), rows)

    def papers(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        not_issued_before: dt.date | None = None,
        edition: Edition = Edition.DAILY,
        limit: int | None = None,
    ) -> list[Paper]:
        """Stored papers first seen in [since, until), newest first then by id.

        ``not_issued_before``: leave out papers that an issue of ``edition`` dated before
        it carried (the issue of that date itself may hold them: rebuilding it gives the
        same papers).
        """
        t = schema.papers
        q = sa.select(t)
        if since is not None:
            q = q.where(t.c.first_seen_at >= since)
        if until is not None:
            q = q.where(t.c.first_seen_at < until)
        if not_issued_before is not None:
            ip, iss = schema.issue_papers, schema.issues
            q = q.where(
                ~sa.exists()
                .where(ip.c.paper_id == t.c.id, ip.c.issue_id == iss.c.id)
                .where(iss.c.issue_date < not_issued_before, iss.c.edition == edition.value)
            )
        q = q.order_by(t.c.first_seen_at.desc(), t.c.id)
        if limit is not None:
            q = q.limit(limit)
        with self.read() as conn:
            return [_paper_from_row(r) for r in conn.execute(q)]

    def paper_sources(self, paper_id: str) -> list[str]:
        with self.read() as conn:
            v = conn.execute(
                sa.select(schema.papers.c.sources).where(schema.papers.c.id == paper_id)
            ).scalar()
        return list(v or [])

    def count_papers(self) -> int:
        with self.read() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(schema.papers)).scalar_one()
            )

    # ----------------------------------------------------------------------- sources

    def source_state(self, name: str) -> SourceState | None:
        t = schema.sources
        with self.read() as conn:
            row = conn.execute(sa.select(t).where(t.c.name == name)).first()
        return None if row is None else _state_from_row(row)

    def save_source_state(self, state: SourceState) -> None:
        t = schema.sources
        values = {
            "url": state.url,
            "etag": state.etag,
            "last_modified": state.last_modified,
            "last_status": state.last_status.value if state.last_status else None,
            "last_http_status": state.last_http_status,
            "last_error": state.last_error,
            "last_attempt_at": state.last_attempt_at,
            "last_success_at": state.last_success_at,
            "last_new": state.last_new,
            "last_total": state.last_total,
        }
        with self.write() as conn:
            done = conn.execute(t.update().where(t.c.name == state.name).values(**values))
            if done.rowcount == 0:
                conn.execute(t.insert().values(name=state.name, **values))

    def source_states(self) -> list[SourceState]:
        t = schema.sources
        with self.read() as conn:
            return [_state_from_row(r) for r in conn.execute(sa.select(t).order_by(t.c.name))]


def _one_per_paper(papers: Iterable[Paper]) -> dict[str, Paper]:
    """The records of one batch merged per paper: by id, then across ids by identity_key
    (the record listed first keeps its text; the best id, arXiv then DOI then link, names
    the paper), by id."""
    by_id: dict[str, Paper] = {}
    for p in papers:
        by_id[p.id] = merge_paper(by_id[p.id], p) if p.id in by_id else p
    by_key: dict[tuple[str, str], str] = {}
    out: dict[str, Paper] = {}
    for pid, p in by_id.items():
        key = identity_key(p)
        if key is None or key not in by_key:
            out[pid] = p
            if key is not None:
                by_key[key] = pid
            continue
        first = by_key[key]
        merged = merge_paper(out.pop(first), p)
        best = min((first, pid), key=lambda i: (id_rank(i), i))
        out[best] = dataclasses.replace(merged, id=best)
        by_key[key] = best
    return out


def _state_from_row(row: Any) -> SourceState:
    return SourceState(
        name=row.name,
        url=row.url,
        etag=row.etag,
        last_modified=row.last_modified,
        last_status=FetchStatus(row.last_status) if row.last_status else None,
        last_http_status=row.last_http_status,
        last_error=row.last_error,
        last_attempt_at=row.last_attempt_at,
        last_success_at=row.last_success_at,
        last_new=row.last_new,
        last_total=row.last_total,
    )


def _paper_to_row(p: Paper, sources: list[str]) -> dict[str, Any]:
    return {
        "id": p.id,
        "title": p.title,
        "abstract": p.abstract,
        "authors": list(p.authors),
        "url": p.url,
        "pdf_url": p.pdf_url,
        "categories": list(p.categories),
        "published_at": p.published,
        "announced_at": p.announced,
        "announce_type": p.announce_type.value if p.announce_type else None,
        "sources": sources,
        "upvotes": p.upvotes,
        "comments": p.comments,
        "keywords": list(p.keywords),
        "arxiv_id": p.arxiv_id,
        "doi": p.doi,
    }


def _paper_from_row(row: Any) -> Paper:
    return Paper(
        id=row.id,
        title=row.title,
        abstract=row.abstract,
        authors=tuple(row.authors),
        url=row.url,
        pdf_url=row.pdf_url,
        categories=tuple(row.categories),
        published=row.published_at,
        announced=row.announced_at,
        source=row.sources[0] if row.sources else "",
        announce_type=AnnounceType(row.announce_type) if row.announce_type else None,
        upvotes=row.upvotes,
        comments=row.comments,
        keywords=tuple(row.keywords),
        arxiv_id=row.arxiv_id,
        doi=row.doi,
    )
