"""Store operations on bounces and complaints (a part of :class:`newsletter.store.Store`).

One row per (report, recipient), unique on the report's Message-ID (or hash) and the
recipient: recording a report that is already there changes nothing, so reading the
same mailbox twice, or again after a crash, is safe.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from newsletter.models import Subscriber, SubscriberStatus
from newsletter.store import schema
from newsletter.store.database import Database
from newsletter.store.subscribers import subscriber_from_row

#: (received_at, issue_date or None) of each soft bounce counted for a subscriber.
SoftHistory = list[tuple[dt.datetime, dt.date | None]]
#: The policy: given the subscriber and their soft bounces (this one included), their new
#: status or None.  Called inside the recording transaction.
Decide = Callable[[Subscriber, SoftHistory], SubscriberStatus | None]


@dataclass(frozen=True, slots=True)
class BounceEvent:
    """One finding of one report, ready to record."""

    message_key: str
    recipient: str  # lower-case address, "" if the report names none
    kind: str  # a bounces.parse.Kind value
    received_at: dt.datetime
    status: str | None = None
    diagnostic: str | None = None
    subscriber_id: int | None = None  # known from a return path or Message-ID of ours
    issue_date: dt.date | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    new: bool  # False: this report was recorded before; nothing changed
    subscriber: Subscriber | None  # who it is about, as they are now; None: unmatched
    changed_to: SubscriberStatus | None = None  # the status it gave them


class BounceStore(Database):
    """Recording bounces and complaints, and counting them."""

    def bounce_recorded(self, message_key: str, recipient: str) -> bool:
        with self.read() as conn:
            return _exists(conn, message_key, recipient)

    def record_bounce(self, event: BounceEvent, *, decide: Decide, now: dt.datetime) -> Recorded:
        """Record ``event`` once, link it to its delivery, and apply ``decide`` to the
        subscriber, all in one transaction."""
        b, s, iss = schema.bounces, schema.subscribers, schema.issues
        try:
            with self.write() as conn:
                if _exists(conn, event.message_key, event.recipient):
                    return Recorded(False, None)
                if event.subscriber_id is not None:
                    row = conn.execute(sa.select(s).where(s.c.id == event.subscriber_id)).first()
                elif event.recipient:
                    row = conn.execute(sa.select(s).where(s.c.email == event.recipient)).first()
                else:
                    row = None
                issue_id = None
                if event.issue_date is not None:
                    # The daily and the weekly of one date: the one mailed to them.
                    d = schema.deliveries
                    mailed = sa.exists().where(
                        d.c.issue_id == iss.c.id, d.c.subscriber_id == (row.id if row else None)
                    )
                    issue_id = conn.execute(
                        sa.select(iss.c.id)
                        .where(iss.c.issue_date == event.issue_date)
                        .order_by(mailed.desc(), iss.c.id)
                        .limit(1)
                    ).scalar()
                values: dict[str, Any] = {
                    "message_key": event.message_key,
                    "recipient": event.recipient,
                    "kind": event.kind,
                    "status": event.status,
                    "diagnostic": event.diagnostic,
                    "subscriber_id": row.id if row else None,
                    "issue_id": issue_id,
                    "issue_date": event.issue_date,
                    "received_at": event.received_at,
                    "recorded_at": now,
                }
                inserted = conn.execute(b.insert().values(**values)).inserted_primary_key
                assert inserted is not None
                bounce_id = inserted[0]
                if row is None:
                    return Recorded(True, None)
                sub = subscriber_from_row(row)
                new_status = decide(sub, _soft_history(conn, sub))
                if new_status is None or new_status.value == row.status:
                    return Recorded(True, sub)
                bounced = new_status is SubscriberStatus.BOUNCED
                stamp = "bounced_at" if bounced else "unsubscribed_at"
                conn.execute(
                    s.update()
                    .where(s.c.id == row.id)
                    .values(status=new_status.value, updated_at=now, **{stamp: now})
                )
                conn.execute(b.update().where(b.c.id == bounce_id).values(action=new_status.value))
                row = conn.execute(sa.select(s).where(s.c.id == row.id)).one()
                return Recorded(True, subscriber_from_row(row), new_status)
        except sa.exc.IntegrityError:
            # Another process recorded the same report between our check and insert.
            if self.bounce_recorded(event.message_key, event.recipient):
                return Recorded(False, None)
            raise

    def bounce_counts(self, issue_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        """Per issue, how many reports of each kind were recorded against it."""
        b = schema.bounces
        ids = list(issue_ids)
        out: dict[int, dict[str, int]] = {i: {} for i in ids}
        if not ids:
            return out
        q = (
            sa.select(b.c.issue_id, b.c.kind, sa.func.count())
            .where(b.c.issue_id.in_(ids))
            .group_by(b.c.issue_id, b.c.kind)
        )
        with self.read() as conn:
            for issue_id, kind, n in conn.execute(q):
                out[issue_id][kind] = int(n)
        return out


def _exists(conn: sa.Connection, message_key: str, recipient: str) -> bool:
    b = schema.bounces
    q = sa.select(b.c.id).where(b.c.message_key == message_key, b.c.recipient == recipient)
    return conn.execute(q).first() is not None


def _soft_history(conn: sa.Connection, sub: Subscriber) -> SoftHistory:
    """The subscriber's soft bounces with their issues (the policy picks the window)."""
    b = schema.bounces
    q = sa.select(b.c.received_at, b.c.issue_date).where(
        b.c.subscriber_id == sub.id, b.c.kind == "soft"
    )
    return [(r.received_at, r.issue_date) for r in conn.execute(q)]
