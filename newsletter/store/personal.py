"""Store operations on subscribers' frozen "For you" copies (mixed into
:class:`newsletter.store.Store`).

A copy (``personal_copies``) is made once per issue and distinct interests, before any row
carrying it is queued; a ledger row gets its copy (``personal_deliveries``) in the same
transaction that queues it, so every row, however late it was queued, is sent with the copy
it was queued with, and a resend after a crash is the same message byte for byte.  A row
without one gets the plain issue.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from newsletter.models import DeliveryStatus, Paper, PersonalCopy
from newsletter.store import schema
from newsletter.store.database import Database

#: Rows per IN (...) list and per insert: below SQLite's old limit of 999 bound parameters.
_CHUNK = 500


def copy_from_row(row: Any) -> PersonalCopy | None:
    """The copy of a row joined with ``personal_copies`` (None: the plain issue)."""
    if row.copy_html is None:
        return None
    return PersonalCopy(
        row.copy_html, row.copy_text, tuple(row.copy_order), bool(row.copy_only_for_you)
    )


def copy_columns() -> list[sa.ColumnElement[Any]]:
    """The columns :func:`copy_from_row` reads, for a query joined with personal_copies."""
    c = schema.personal_copies.c
    return [
        c.html.label("copy_html"),
        c.text.label("copy_text"),
        c.topic_order.label("copy_order"),
        c.only_for_you.label("copy_only_for_you"),
    ]


def with_copies(rows: sa.FromClause) -> sa.FromClause:
    """``rows`` (deliveries) joined with the copies they carry, if any."""
    d, pd, pc = schema.deliveries, schema.personal_deliveries, schema.personal_copies
    return rows.outerjoin(
        pd, sa.and_(pd.c.issue_id == d.c.issue_id, pd.c.subscriber_id == d.c.subscriber_id)
    ).outerjoin(pc, pc.c.id == pd.c.copy_id)


class PersonalStore(Database):
    """Each subscriber's frozen "For you" copies, and the issue's topics they are made of."""

    def issue_topics(
        self, issue_id: int, variant_id: int | None = None
    ) -> list[tuple[str, list[Paper]]]:
        """The papers an issue (or its variant) carries, by topic label, in the digest's
        order (``issue_papers``, ``variant_papers``, as ``pipeline.digest_papers`` wrote
        them: a watched section first, then the topics)."""
        from newsletter.store.papers import _paper_from_row

        p = schema.papers
        if variant_id is None:
            ip = schema.issue_papers
            which = ip.c.issue_id == issue_id
        else:
            ip = schema.variant_papers
            which = ip.c.variant_id == variant_id
        with self.read() as conn:
            rows = conn.execute(
                sa.select(ip.c.topic, p)
                .join(p, p.c.id == ip.c.paper_id)
                .where(which)
                .order_by(ip.c.position)
            ).all()
        groups: dict[str, list[Paper]] = {}
        for row in rows:
            groups.setdefault(row.topic or "", []).append(_paper_from_row(row))
        return list(groups.items())

    def unqueued(self, issue_id: int) -> list[int]:
        """The subscribers waiting for the issue (active, of its cadence, without a row),
        by id."""
        from newsletter.store.ledger import _previous, _waiting

        s = schema.subscribers
        with self.read() as conn:
            edition, _ = _previous(conn, issue_id)
            query = sa.select(s.c.id).where(*_waiting(issue_id, edition)).order_by(s.c.id)
            return list(conn.execute(query).scalars())

    def queue_personal(
        self,
        issue_id: int,
        rows: Sequence[tuple[int, str | None]],
        copies: Mapping[str, PersonalCopy],
        *,
        now: dt.datetime,
        variant_id: int | None = None,
        skipped: bool = False,
    ) -> int:
        """Queue a row for each ``(subscriber id, copy key)`` (key None: the plain issue),
        with its copy, in one transaction; a subscriber no longer waiting for the issue
        (:meth:`unqueued`) is left alone.  A copy stored before under the same key is the
        one used.  ``variant_id``: the rows are of that variant (their subscribers switched
        cadence); ``skipped``: it has nothing to send, the rows are SKIPPED.  Returns the
        rows queued."""
        from newsletter.store.ledger import NOTHING_NEW, _previous, _waiting

        d, s = schema.deliveries, schema.subscribers
        pc, pd = schema.personal_copies, schema.personal_deliveries
        ids = [sid for sid, _ in rows]
        queued = 0
        status = DeliveryStatus.SKIPPED if skipped else DeliveryStatus.QUEUED
        with self.write() as conn:
            edition, _ = _previous(conn, issue_id)
            keys = sorted({k for _, k in rows if k is not None})
            stored = self._copy_ids(conn, issue_id, keys)
            new = [
                {
                    "issue_id": issue_id,
                    "key": k,
                    "html": copies[k].html,
                    "text": copies[k].text,
                    "topic_order": list(copies[k].order),
                    "only_for_you": copies[k].only_for_you,
                    "created_at": now,
                }
                for k in keys
                if k not in stored
            ]
            for i in range(0, len(new), _CHUNK // 8):
                conn.execute(pc.insert(), new[i : i + _CHUNK // 8])
            if new:
                stored = self._copy_ids(conn, issue_id, keys)
            key_of = dict(rows)
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                fresh = list(
                    conn.execute(
                        sa.select(s.c.id).where(s.c.id.in_(chunk), *_waiting(issue_id, edition))
                    ).scalars()
                )
                if not fresh:
                    continue
                conn.execute(
                    d.insert(),
                    [
                        {
                            "issue_id": issue_id,
                            "subscriber_id": sid,
                            "status": status.value,
                            "reply": NOTHING_NEW if skipped else None,
                            "variant_id": variant_id,
                            "updated_at": now,
                        }
                        for sid in fresh
                    ],
                )
                carried = [
                    {"issue_id": issue_id, "subscriber_id": sid, "copy_id": stored[key]}
                    for sid in fresh
                    if (key := key_of[sid]) is not None
                ]
                if carried:
                    conn.execute(pd.insert(), carried)
                queued += len(fresh)
        return queued

    @staticmethod
    def _copy_ids(conn: sa.Connection, issue_id: int, keys: Sequence[str]) -> dict[str, int]:
        pc = schema.personal_copies
        out: dict[str, int] = {}
        for i in range(0, len(keys), _CHUNK):
            out.update(
                (r.key, r.id)
                for r in conn.execute(
                    sa.select(pc.c.key, pc.c.id).where(
                        pc.c.issue_id == issue_id, pc.c.key.in_(keys[i : i + _CHUNK])
                    )
                )
            )
        return out

    def frozen_copy(
        self, issue_id: int, subscriber_id: int
    ) -> tuple[int | None, PersonalCopy | None] | None:
        """(the variant, the copy) the subscriber's ledger row for the issue carries; None
        when they have no row."""
        d = schema.deliveries
        with self.read() as conn:
            row = conn.execute(
                sa.select(d.c.variant_id, *copy_columns())
                .select_from(with_copies(d))
                .where(d.c.issue_id == issue_id, d.c.subscriber_id == subscriber_id)
            ).first()
        return None if row is None else (row.variant_id, copy_from_row(row))
