"""Store operations on subscribers (a part of :class:`newsletter.store.Store`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from newsletter.models import Edition, Subscriber, SubscriberStatus
from newsletter.personal.stated import InterestsChange
from newsletter.store import schema
from newsletter.store.database import Database
from newsletter.store.interests import write_interests


@dataclass(frozen=True, slots=True)
class ImportResult:
    added: int = 0
    unchanged: int = 0  # already active
    kept_out: tuple[str, ...] = ()  # unsubscribed or bounced: an import does not bring them back
    interests_set: int = 0  # subscribers added or already active whose interests were set


def insert_subscriber(
    conn: sa.Connection, email: str, name: str, status: SubscriberStatus, now: dt.datetime
) -> None:
    t = schema.subscribers
    conn.execute(
        t.insert().values(
            email=email, name=name, status=status.value, created_at=now, updated_at=now
        )
    )


def activate_subscriber(conn: sa.Connection, row: Any, name: str, now: dt.datetime) -> None:
    """Make the subscriber of ``row`` active again (an explicit add or a confirmed link),
    keeping their name unless a new one is given."""
    t = schema.subscribers
    conn.execute(
        t.update()
        .where(t.c.id == row.id)
        .values(
            status=SubscriberStatus.ACTIVE.value,
            name=name or row.name,
            updated_at=now,
            unsubscribed_at=None,
            bounced_at=None,
        )
    )


def subscriber_from_row(row: Any) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        status=SubscriberStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        unsubscribed_at=row.unsubscribed_at,
        bounced_at=row.bounced_at,
        cadence=Edition(row.cadence),
    )


class SubscriberStore(Database):
    """Adding, removing and listing subscribers; addresses arrive already normalised."""

    def add_subscriber(self, email: str, name: str, *, now: dt.datetime) -> tuple[Subscriber, bool]:
        """Add or re-activate ``email`` (an explicit add brings back someone who left).

        Returns the subscriber and whether anything changed.
        """
        t = schema.subscribers
        with self.write() as conn:
            row = conn.execute(sa.select(t).where(t.c.email == email)).first()
            if row is None:
                insert_subscriber(conn, email, name, SubscriberStatus.ACTIVE, now)
                changed = True
            elif row.status != SubscriberStatus.ACTIVE or (name and name != row.name):
                activate_subscriber(conn, row, name, now)
                changed = True
            else:
                changed = False
            row = conn.execute(sa.select(t).where(t.c.email == email)).one()
        return subscriber_from_row(row), changed

    def import_subscribers(
        self,
        rows: Iterable[tuple[str, str]],
        *,
        now: dt.datetime,
        interests: Mapping[str, InterestsChange] | None = None,
        cadences: Mapping[str, Edition] | None = None,
    ) -> ImportResult:
        """Add many (email, name) pairs in one transaction; people who left stay out.

        ``interests``: changes to the interests of some of them (by address), applied to
        the ones added and the ones already active; ``cadences``: the cadence of some of
        them, set likewise.
        """
        t = schema.subscribers
        added = unchanged = interests_set = 0
        kept_out: list[str] = []
        with self.write() as conn:
            for email, name in rows:
                row = conn.execute(sa.select(t.c.id, t.c.status).where(t.c.email == email)).first()
                if row is None:
                    insert_subscriber(conn, email, name, SubscriberStatus.ACTIVE, now)
                    added += 1
                elif row.status == SubscriberStatus.ACTIVE:
                    unchanged += 1
                else:
                    kept_out.append(email)
                    continue
                change = (interests or {}).get(email)
                if change is not None:
                    if row is None:
                        row = conn.execute(sa.select(t.c.id).where(t.c.email == email)).one()
                    write_interests(conn, row.id, change, now)
                    interests_set += 1
                cadence = (cadences or {}).get(email)
                if cadence is not None:
                    _set_cadence(conn, t.c.email == email, cadence, now)
        return ImportResult(added, unchanged, tuple(kept_out), interests_set)

    def set_cadence(
        self, subscriber: int | str, cadence: Edition, *, now: dt.datetime
    ) -> Subscriber | None:
        """Daily or weekly, by id or address; ``None`` if there is no such subscriber.

        The next issue they get starts where the last one they got ended, whichever
        edition each is (docs/architecture.md, "Switching cadence")."""
        t = schema.subscribers
        where = t.c.id == subscriber if isinstance(subscriber, int) else t.c.email == subscriber
        with self.write() as conn:
            _set_cadence(conn, where, cadence, now)
            row = conn.execute(sa.select(t).where(where)).first()
        return subscriber_from_row(row) if row else None

    def set_subscriber_status(
        self, subscriber: int | str, status: SubscriberStatus, *, now: dt.datetime
    ) -> Subscriber | None:
        """Unsubscribe or mark bounced, by id or address; ``None`` if there is no such one."""
        t = schema.subscribers
        where = t.c.id == subscriber if isinstance(subscriber, int) else t.c.email == subscriber
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if status is SubscriberStatus.UNSUBSCRIBED:
            values["unsubscribed_at"] = now
        elif status is SubscriberStatus.BOUNCED:
            values["bounced_at"] = now
        with self.write() as conn:
            row = conn.execute(sa.select(t).where(where)).first()
            if row is None:
                return None
            if row.status != status.value:
                conn.execute(t.update().where(t.c.id == row.id).values(**values))
            row = conn.execute(sa.select(t).where(t.c.id == row.id)).one()
        return subscriber_from_row(row)

    def subscriber(self, subscriber: int | str) -> Subscriber | None:
        t = schema.subscribers
        where = t.c.id == subscriber if isinstance(subscriber, int) else t.c.email == subscriber
        with self.read() as conn:
            row = conn.execute(sa.select(t).where(where)).first()
        return subscriber_from_row(row) if row else None

    def subscribers(self, status: SubscriberStatus | None = None) -> list[Subscriber]:
        return list(self.iter_subscribers(status))

    def iter_subscribers(self, status: SubscriberStatus | None = None) -> Iterator[Subscriber]:
        t = schema.subscribers
        q = sa.select(t).order_by(t.c.email)
        if status is not None:
            q = q.where(t.c.status == status.value)
        with self.read() as conn:
            rows = conn.execute(q).all()
        for row in rows:
            yield subscriber_from_row(row)

    def count_subscribers(self) -> dict[SubscriberStatus, int]:
        t = schema.subscribers
        with self.read() as conn:
            rows = conn.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status)).all()
        counts = dict.fromkeys(SubscriberStatus, 0)
        counts.update({SubscriberStatus(s): n for s, n in rows})
        return counts


def _set_cadence(
    conn: sa.Connection, where: sa.ColumnElement[bool], cadence: Edition, now: dt.datetime
) -> None:
    t = schema.subscribers
    conn.execute(
        t.update()
        .where(where, t.c.cadence != cadence.value)
        .values(cadence=cadence.value, cadence_changed_at=now, updated_at=now)
    )
