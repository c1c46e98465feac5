"""Store queries for the web endpoints: sign-ups awaiting confirmation and the archive list
(a part of :class:`newsletter.store.Store`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from newsletter.models import Edition, IssueStatus, Subscriber, SubscriberStatus
from newsletter.store import schema
from newsletter.store.database import Database
from newsletter.store.interests import prune_library
from newsletter.store.subscribers import (
    activate_subscriber,
    insert_subscriber,
    subscriber_from_row,
)

#: How long a confirmation link works.  A PENDING row is re-dated when someone signs up
#: again after every link for it has expired, so no link outlives its row by more than
#: this; rows PENDING for twice as long have no working link left and are deleted.
CONFIRM_DAYS = 3


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One issue in the archive list: what the index page shows, without the bodies."""

    issue_date: dt.date
    subject: str
    paper_count: int
    edition: Edition = Edition.DAILY
    preheader: str = ""
    created_at: dt.datetime | None = None  # when it was built (the Atom feed's "updated")


def signup_stamp(subscriber: Subscriber) -> str:
    """A value that changes whenever the subscriber's status changes (their ``updated_at``).

    A confirmation link carries it, so a link sent before an unsubscribe (or any other
    change of status) cannot be replayed afterwards to sign the person up again.  A pending
    sign-up's new name leaves it as it is (see :meth:`SignupStore.add_pending`).
    """
    return str(int(subscriber.updated_at.timestamp() * 1_000_000))


class SignupStore(Database):
    """Web sign-ups: PENDING until confirmed; and the list of issues for the archive."""

    def add_pending(self, email: str, name: str, *, now: dt.datetime) -> Subscriber:
        """The subscriber for ``email``, created PENDING with ``name`` if there is none.

        Anyone can type any address into a web form, so an existing subscriber (active,
        unsubscribed, bounced) is returned as it is, name included: only a confirmed link
        changes their status, and it keeps their name.  A PENDING row (nobody has confirmed
        it yet) takes the name typed last, so the link confirms what was asked for last;
        its stamp does not change, so the links already mailed keep working.  And a PENDING
        row whose links have all expired is re-dated to ``now``, so that
        :meth:`purge_pending` keeps it while the new link works (re-dating changes the
        stamp, but no working link carried the old one).
        """
        t = schema.subscribers
        try:
            with self.write() as conn:
                row = conn.execute(sa.select(t).where(t.c.email == email)).first()
                if row is None:
                    insert_subscriber(conn, email, name, SubscriberStatus.PENDING, now)
                    row = conn.execute(sa.select(t).where(t.c.email == email)).one()
                elif row.status == SubscriberStatus.PENDING.value:
                    values: dict[str, object] = {}
                    if name and name != row.name:
                        values["name"] = name
                    if subscriber_from_row(row).updated_at <= now - dt.timedelta(days=CONFIRM_DAYS):
                        values["updated_at"] = now
                    if values:
                        conn.execute(t.update().where(t.c.id == row.id).values(**values))
                        row = conn.execute(sa.select(t).where(t.c.id == row.id)).one()
        except sa.exc.IntegrityError:
            # Another request inserted the same address between our SELECT and INSERT
            # (possible on PostgreSQL, where writes do not take a lock up front).
            with self.read() as conn:
                row = conn.execute(sa.select(t).where(t.c.email == email)).one()
        return subscriber_from_row(row)

    def confirm_subscriber(
        self, subscriber_id: int, stamp: str, *, name: str, now: dt.datetime
    ) -> Subscriber | None:
        """Activate a sign-up whose row is unchanged since the link was sent.

        An active subscriber stays as they are (confirming twice is harmless).  ``None``
        when there is no such subscriber or the row changed since (the link is stale).
        """
        t = schema.subscribers
        with self.write() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == subscriber_id)).first()
            if row is None:
                return None
            current = subscriber_from_row(row)
            if current.status is SubscriberStatus.ACTIVE:
                return current
            if signup_stamp(current) != stamp:
                return None
            activate_subscriber(conn, row, name, now)
            row = conn.execute(sa.select(t).where(t.c.id == subscriber_id)).one()
        return subscriber_from_row(row)

    def purge_pending(self, *, now: dt.datetime) -> int:
        """Delete sign-ups left unconfirmed for 2 x CONFIRM_DAYS (no link for them works
        any more: the address was typed into a form and never confirmed, so it is not kept).
        Returns how many were deleted."""
        t = schema.subscribers
        cutoff = now - dt.timedelta(days=2 * CONFIRM_DAYS)
        with self.write() as conn:
            result = conn.execute(
                t.delete().where(
                    t.c.status == SubscriberStatus.PENDING.value,
                    t.c.updated_at < cutoff,
                    ~sa.exists().where(schema.deliveries.c.subscriber_id == t.c.id),
                )
            )
            if result.rowcount:
                prune_library(conn)  # the papers only their libraries kept
        return int(result.rowcount or 0)

    def archive_entries(self, limit: int | None = None) -> list[ArchiveEntry]:
        """Issues that were sent or are being sent, daily and weekly, newest first (on one
        date the weekly first; empty days left out)."""
        t = schema.issues
        q = (
            sa.select(
                t.c.issue_date,
                t.c.subject,
                t.c.paper_count,
                t.c.edition,
                t.c.preheader,
                t.c.created_at,
            )
            .where(
                t.c.status.in_(
                    [IssueStatus.READY.value, IssueStatus.SENT.value, IssueStatus.DEFERRED.value]
                ),
                t.c.html.is_not(None),
                t.c.html != "",
            )
            .order_by(t.c.issue_date.desc(), t.c.edition.desc())
            .limit(limit)
        )
        with self.read() as conn:
            rows = conn.execute(q).all()
        return [
            ArchiveEntry(
                r.issue_date,
                r.subject or "",
                r.paper_count,
                Edition(r.edition),
                r.preheader or "",
                r.created_at,
            )
            for r in rows
        ]
