"""Store operations on issues and the send ledger (a part of :class:`newsletter.store.Store`).

Each (issue, subscriber) pair is one ``deliveries`` row, written before anything is sent
and moved through QUEUED → CLAIMED → SENDING → SENT / DEFERRED / FAILED / SKIPPED as it
happens, each step in its own short write transaction.  A claim is one UPDATE of rows that
are still QUEUED, so two senders can never take the same row; SENDING is written just
before DATA, so after a crash the only rows whose fate is unknown are those.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from newsletter.models import (
    SETTLED,
    Claim,
    DeliveryCounts,
    DeliveryStatus,
    Edition,
    IssueRecord,
    IssueStatus,
    Recovered,
    SubscriberStatus,
    VariantRecord,
)
from newsletter.store import schema
from newsletter.store.database import Database
from newsletter.store.personal import copy_columns, copy_from_row, with_copies
from newsletter.store.subscribers import subscriber_from_row


class ClaimLost(Exception):
    """This sender's claim on a row expired and another worker holds it now: do not send."""


#: Ledger rows that do not count as an issue the subscriber got.
NOT_RECEIVED = (DeliveryStatus.FAILED.value, DeliveryStatus.SKIPPED.value)
#: What the row of a switcher whose variant has no papers says (on_empty = "skip").
NOTHING_NEW = "nothing new since their last issue"


def _issue_from_row(row: Any) -> IssueRecord:
    return IssueRecord(
        id=row.id,
        issue_date=row.issue_date,
        status=IssueStatus(row.status),
        subject=row.subject or "",
        preheader=row.preheader or "",
        html=row.html or "",
        text=row.text or "",
        paper_count=row.paper_count,
        created_at=row.created_at,
        updated_at=row.updated_at,
        edition=Edition(row.edition),
    )


def _variant_from_row(row: Any) -> VariantRecord:
    return VariantRecord(
        id=row.id,
        issue_id=row.issue_id,
        since=row.since,
        subject=row.subject or "",
        preheader=row.preheader or "",
        html=row.html or "",
        text=row.text or "",
        paper_count=row.paper_count,
        created_at=row.created_at,
    )


class LedgerStore(Database):
    # ----------------------------------------------------------------------- issues

    def issue(self, issue_date: dt.date, edition: Edition = Edition.DAILY) -> IssueRecord | None:
        t = schema.issues
        with self.read() as conn:
            row = conn.execute(
                sa.select(t).where(t.c.issue_date == issue_date, t.c.edition == edition.value)
            ).first()
        return _issue_from_row(row) if row else None

    def issues(self, limit: int = 30, *, edition: Edition | None = None) -> list[IssueRecord]:
        """The latest issues, newest first (by date; on one date the weekly first)."""
        t = schema.issues
        q = sa.select(t).order_by(t.c.issue_date.desc(), t.c.edition.desc()).limit(limit)
        if edition is not None:
            q = q.where(t.c.edition == edition.value)
        with self.read() as conn:
            rows = conn.execute(q).all()
        return [_issue_from_row(r) for r in rows]

    def last_issue_date(self, edition: Edition, *, before: dt.date) -> dt.date | None:
        """The date of the last issue of ``edition`` dated before ``before``."""
        t = schema.issues
        with self.read() as conn:
            day: dt.date | None = conn.execute(
                sa.select(sa.func.max(t.c.issue_date)).where(
                    t.c.edition == edition.value, t.c.issue_date < before
                )
            ).scalar()
        return day

    def save_issue(
        self,
        issue_date: dt.date,
        *,
        status: IssueStatus,
        subject: str,
        preheader: str,
        html: str,
        text: str,
        papers: Sequence[tuple[str, str]],
        now: dt.datetime,
        edition: Edition = Edition.DAILY,
    ) -> IssueRecord:
        """Store a rendered issue and the papers it carries (paper id, topic label).

        If the issue exists already (another sender got there first), that one is kept
        and returned: an issue is rendered once.
        """
        t = schema.issues
        this = sa.and_(t.c.issue_date == issue_date, t.c.edition == edition.value)
        with self.write() as conn:
            row = conn.execute(sa.select(t).where(this)).first()
            if row is None:
                inserted = conn.execute(
                    t.insert().values(
                        issue_date=issue_date,
                        edition=edition.value,
                        status=status.value,
                        subject=subject,
                        preheader=preheader,
                        html=html,
                        text=text,
                        paper_count=len(papers),
                        created_at=now,
                        updated_at=now,
                    )
                )
                issue_id = inserted.inserted_primary_key[0]  # type: ignore[index]
                _save_papers(conn, schema.issue_papers, "issue_id", issue_id, papers)
            row = conn.execute(sa.select(t).where(this)).one()
        return _issue_from_row(row)

    # ----------------------------------------------------------------------- variants

    def variant(self, issue_id: int, since: dt.datetime) -> VariantRecord | None:
        t = schema.issue_variants
        with self.read() as conn:
            row = conn.execute(
                sa.select(t).where(t.c.issue_id == issue_id, t.c.since == since)
            ).first()
        return _variant_from_row(row) if row else None

    def variant_by_id(self, variant_id: int) -> VariantRecord:
        t = schema.issue_variants
        with self.read() as conn:
            return _variant_from_row(conn.execute(sa.select(t).where(t.c.id == variant_id)).one())

    def save_variant(
        self,
        issue_id: int,
        since: dt.datetime,
        *,
        subject: str,
        preheader: str,
        html: str,
        text: str,
        papers: Sequence[tuple[str, str]],
        now: dt.datetime,
    ) -> VariantRecord:
        """Store a rendered variant; one that exists already is kept (rendered once)."""
        t = schema.issue_variants
        this = sa.and_(t.c.issue_id == issue_id, t.c.since == since)
        with self.write() as conn:
            if conn.execute(sa.select(t.c.id).where(this)).first() is None:
                inserted = conn.execute(
                    t.insert().values(
                        issue_id=issue_id,
                        since=since,
                        subject=subject,
                        preheader=preheader,
                        html=html,
                        text=text,
                        paper_count=len(papers),
                        created_at=now,
                    )
                )
                variant_id = inserted.inserted_primary_key[0]  # type: ignore[index]
                _save_papers(conn, schema.variant_papers, "variant_id", variant_id, papers)
            row = conn.execute(sa.select(t).where(this)).one()
        return _variant_from_row(row)

    def switcher_windows(
        self, issue_id: int, *, floor: dt.datetime | None = None
    ) -> dict[dt.datetime, list[int]]:
        """Subscribers not queued yet for the issue who switched cadence, by the start of
        their window: the cut of the last issue they got (of the other edition), at the
        earliest ``floor``."""
        with self.read() as conn:
            return _switchers(conn, issue_id, floor)

    def set_issue_status(self, issue_id: int, status: IssueStatus, *, now: dt.datetime) -> None:
        t = schema.issues
        with self.write() as conn:
            conn.execute(
                t.update().where(t.c.id == issue_id).values(status=status.value, updated_at=now)
            )

    # ----------------------------------------------------------------------- ledger

    def queue_deliveries(
        self,
        issue_id: int,
        *,
        now: dt.datetime,
        floor: dt.datetime | None = None,
        skip_empty: bool = True,
        without_interests: bool = False,
    ) -> int:
        """One QUEUED row per active subscriber of the issue's edition (their cadence) who
        has none yet; the number of rows added.

        A subscriber who switched cadence (their last issue is of the other edition) gets
        the variant of their window (:meth:`switcher_windows`), named on the row; one
        whose variant is not stored yet is left out (store it and queue again).  With
        ``skip_empty``, a variant without papers is not sent: its rows are SKIPPED.
        ``without_interests``: only those who stated no interests (the others are queued
        with their "For you", :meth:`queue_personal`).
        """
        d, s = schema.deliveries, schema.subscribers
        with self.write() as conn:
            edition, previous = _previous(conn, issue_id)
            switchers = _switcher_rows(issue_id, edition, previous).with_only_columns(s.c.id)
            missing = sa.select(
                sa.literal(issue_id),
                s.c.id,
                sa.literal(DeliveryStatus.QUEUED.value),
                sa.literal(now, schema.UTCDateTime),
            ).where(
                *_waiting(issue_id, edition),
                s.c.id.not_in(switchers),
            )
            interested: set[int] = set()
            if without_interests:
                i = schema.subscriber_interests
                missing = missing.where(~sa.exists().where(i.c.subscriber_id == s.c.id))
                interested = set(conn.execute(sa.select(i.c.subscriber_id)).scalars())
            inserted = conn.execute(
                d.insert().from_select(
                    ["issue_id", "subscriber_id", "status", "updated_at"], missing
                ),
                execution_options={"preserve_rowcount": True},  # else -1 on psycopg
            ).rowcount
            added = max(inserted or 0, 0)
            v = schema.issue_variants
            variants = {
                r.since: r
                for r in conn.execute(
                    sa.select(v.c.id, v.c.since, v.c.paper_count).where(v.c.issue_id == issue_id)
                )
            }
            rows = []
            for since, subscriber_ids in _switchers(conn, issue_id, floor).items():
                variant = variants.get(since)
                if variant is None:
                    continue
                empty = skip_empty and variant.paper_count == 0
                status = DeliveryStatus.SKIPPED if empty else DeliveryStatus.QUEUED
                rows += [
                    {
                        "issue_id": issue_id,
                        "subscriber_id": sid,
                        "status": status.value,
                        "reply": NOTHING_NEW if empty else None,
                        "variant_id": variant.id,
                        "updated_at": now,
                    }
                    for sid in subscriber_ids
                    if sid not in interested
                ]
            if rows:
                conn.execute(d.insert(), rows)
        return added + len(rows)

    def recover(self, issue_id: int, *, now: dt.datetime, holder: str | None = None) -> Recovered:
        """Hand back rows left by a sender that died: all of them (call only while holding
        the send lock exclusively), or those of the run ``holder``, known to be dead.

        CLAIMED rows never reached a server and are simply queued again.  SENDING rows may
        or may not have been delivered: they are queued again and marked in doubt, so they
        go out with the same Message-ID and are counted.
        """
        d = schema.deliveries
        rows = self._rows_of(issue_id, None if holder is None else f"{holder}:")
        with self.write() as conn:
            requeued = conn.execute(
                d.update()
                .where(rows, d.c.status == DeliveryStatus.CLAIMED.value)
                .values(
                    status=DeliveryStatus.QUEUED.value,
                    claimed_by=None,
                    claimed_at=None,
                    updated_at=now,
                )
            ).rowcount
            in_doubt = conn.execute(
                d.update()
                .where(rows, d.c.status == DeliveryStatus.SENDING.value)
                .values(
                    status=DeliveryStatus.QUEUED.value,
                    in_doubt=True,
                    claimed_by=None,
                    claimed_at=None,
                    updated_at=now,
                )
            ).rowcount
        return Recovered(requeued or 0, in_doubt or 0)

    def claim(
        self,
        issue_id: int,
        worker: str,
        limit: int,
        *,
        now: dt.datetime,
        lease: float | None = None,
    ) -> list[Claim]:
        """Take up to ``limit`` rows for ``worker``, in subscriber order.

        QUEUED rows, and with ``lease`` (seconds) also rows whose holder has not renewed
        its claim for that long (a dead worker's): CLAIMED ones simply change hands,
        SENDING ones are marked in doubt.  One statement guarded by the same condition
        takes them, so two claimers never get the same row (SQLite: BEGIN IMMEDIATE;
        PostgreSQL: FOR UPDATE SKIP LOCKED).
        """
        d, s = schema.deliveries, schema.subscribers
        takeable = d.c.status == DeliveryStatus.QUEUED.value
        if lease is not None:
            expired = sa.and_(
                d.c.status.in_([DeliveryStatus.CLAIMED.value, DeliveryStatus.SENDING.value]),
                d.c.claimed_at < now - dt.timedelta(seconds=lease),
            )
            takeable = sa.or_(takeable, expired)
        with self.write() as conn:
            pick = (
                sa.select(d.c.subscriber_id)
                .where(d.c.issue_id == issue_id, takeable)
                .order_by(d.c.subscriber_id)
                .limit(limit)
            )
            if self.dialect == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            ids = list(conn.execute(pick).scalars())
            if not ids:
                return []
            conn.execute(
                d.update()
                .where(d.c.issue_id == issue_id, d.c.subscriber_id.in_(ids), takeable)
                .values(
                    status=DeliveryStatus.CLAIMED.value,
                    in_doubt=sa.case(
                        (d.c.status == DeliveryStatus.SENDING.value, sa.true()),
                        else_=d.c.in_doubt,
                    ),
                    claimed_by=worker,
                    claimed_at=now,
                    updated_at=now,
                )
            )
            rows = conn.execute(
                sa.select(s, d.c.attempts, d.c.in_doubt, d.c.variant_id, *copy_columns())
                .select_from(with_copies(s.join(d, d.c.subscriber_id == s.c.id)))
                .where(
                    d.c.issue_id == issue_id,
                    d.c.claimed_by == worker,
                    d.c.status == DeliveryStatus.CLAIMED.value,
                    d.c.subscriber_id.in_(ids),
                )
                .order_by(s.c.id)
            ).all()
        return [
            Claim(
                issue_id,
                subscriber_from_row(r),
                r.attempts,
                bool(r.in_doubt),
                worker,
                r.variant_id,
                copy_from_row(r),
            )
            for r in rows
        ]

    def claim_holders(self, issue_id: int) -> set[str]:
        """The runs (``host:pid:run``) holding CLAIMED or SENDING rows of the issue."""
        d = schema.deliveries
        with self.read() as conn:
            senders = conn.execute(
                sa.select(d.c.claimed_by)
                .distinct()
                .where(
                    d.c.issue_id == issue_id,
                    d.c.status.in_([DeliveryStatus.CLAIMED.value, DeliveryStatus.SENDING.value]),
                    d.c.claimed_by.is_not(None),
                )
            ).scalars()
            return {s.rpartition(":")[0] for s in senders}

    def renew_claims(self, issue_id: int, worker: str, *, now: dt.datetime) -> int:
        """Keep ``worker``'s claims from expiring (its heartbeat).

        Rows a sender of the same worker has locked right now are skipped (PostgreSQL: SKIP
        LOCKED): taking them in another order would deadlock with it, and that sender's own
        write renews them anyway (``_mark_in`` sets ``claimed_at``).
        """
        d = schema.deliveries
        mine = sa.select(d.c.subscriber_id).where(
            d.c.issue_id == issue_id,
            d.c.claimed_by == worker,
            d.c.status.in_([DeliveryStatus.CLAIMED.value, DeliveryStatus.SENDING.value]),
        )
        if self.dialect == "postgresql":
            mine = mine.with_for_update(skip_locked=True)
        with self.write() as conn:
            ids = list(conn.execute(mine).scalars())
            if not ids:
                return 0
            n = conn.execute(
                d.update()
                .where(d.c.issue_id == issue_id, d.c.subscriber_id.in_(ids))
                .where(d.c.claimed_by == worker)
                .values(claimed_at=now)
            ).rowcount
        return n or 0

    def _mark(self, claim: Claim, now: dt.datetime, **values: Any) -> None:
        with self.write() as conn:
            self._mark_in(conn, claim, now, **values)

    @staticmethod
    def _mark_in(conn: sa.Connection, claim: Claim, now: dt.datetime, **values: Any) -> int:
        """Update the claimed row; the number of rows changed (0: the claim was lost)."""
        # Only while the claim is still this sender's: after its lease expired and another
        # worker took the row over, a late write must not overwrite the new holder's.
        d = schema.deliveries
        changed = conn.execute(
            d.update()
            .where(
                d.c.issue_id == claim.issue_id,
                d.c.subscriber_id == claim.subscriber.id,
                d.c.claimed_by == claim.worker,
            )
            .values(**({"updated_at": now, "claimed_at": now} | values))
        ).rowcount
        return changed or 0

    def mark_sending(
        self,
        claim: Claim,
        message_id: str,
        *,
        now: dt.datetime,
        sent: tuple[Claim, str] | None = None,
    ) -> None:
        """The row is in DATA now.  ``sent``: the previous message on the same connection
        and the server's reply to it, recorded in the same transaction (one write per
        message; still at most one SENDING row per connection)."""
        with self.write() as conn:
            if sent is not None:
                self._mark_in(conn, sent[0], now, **self._sent_values(sent[1], now))
            mine = self._mark_in(
                conn,
                claim,
                now,
                status=DeliveryStatus.SENDING.value,
                message_id=message_id,
                attempts=schema.deliveries.c.attempts + 1,
            )
        if not mine:  # after the commit, so the previous message's SENT is kept
            raise ClaimLost(
                f"{claim.subscriber.email}: the claim expired and another worker took it"
            )

    def mark_sent(self, claim: Claim, reply: str, *, now: dt.datetime) -> None:
        self._mark(claim, now, **self._sent_values(reply, now))

    @staticmethod
    def _sent_values(reply: str, now: dt.datetime) -> dict[str, Any]:
        return {"status": DeliveryStatus.SENT.value, "reply": reply[:1000], "sent_at": now}

    def mark_done(
        self,
        claim: Claim,
        status: DeliveryStatus,
        reply: str,
        *,
        now: dt.datetime,
        in_doubt: bool = False,
    ) -> None:
        """FAILED, DEFERRED or SKIPPED, with the reason; ``in_doubt``: it may have arrived.

        ``claimed_by`` stays: a finished row names the run that finished it, which is how a
        run's own counts are read back (:meth:`delivery_counts` with ``by``)."""
        extra = {"in_doubt": True} if in_doubt else {}
        self._mark(claim, now, status=status.value, reply=reply[:1000], **extra)

    def mark_retry(self, claim: Claim, reply: str, *, now: dt.datetime, in_doubt: bool) -> None:
        """DATA failed transiently: the row is no longer in flight (SENDING), only held, and
        waits for its retry.  ``in_doubt``: the connection dropped before the server's reply,
        so the message may have arrived and any resend is a possible duplicate; the flag is
        written now, so a crash before the resend cannot lose it."""
        extra = {"in_doubt": True} if in_doubt else {}
        self._mark(claim, now, status=DeliveryStatus.CLAIMED.value, reply=reply[:1000], **extra)

    def requeue(self, claim: Claim, *, now: dt.datetime, in_doubt: bool = False) -> None:
        """Put one row back in the queue (the run stopped before its fate was settled).

        ``in_doubt``: it may have been delivered (the connection dropped in DATA); the mark
        is kept so the resend is counted.
        """
        extra = {"in_doubt": True} if in_doubt else {}
        self._mark(
            claim,
            now,
            status=DeliveryStatus.QUEUED.value,
            claimed_by=None,
            claimed_at=None,
            **extra,
        )

    def release(self, claims: Sequence[Claim], *, now: dt.datetime) -> None:
        """Give rows back untouched (a sender stopping before it reached them)."""
        d = schema.deliveries
        by_issue: dict[int, list[int]] = {}
        for c in claims:
            by_issue.setdefault(c.issue_id, []).append(c.subscriber.id)
        with self.write() as conn:
            for issue_id, ids in by_issue.items():
                conn.execute(
                    d.update()
                    .where(
                        d.c.issue_id == issue_id,
                        d.c.subscriber_id.in_(ids),
                        d.c.status == DeliveryStatus.CLAIMED.value,
                    )
                    .values(
                        status=DeliveryStatus.QUEUED.value,
                        claimed_by=None,
                        claimed_at=None,
                        updated_at=now,
                    )
                )

    def requeue_deferred(self, issue_id: int, *, now: dt.datetime) -> int:
        """``send --retry-failed``: transient failures go back in the queue."""
        d = schema.deliveries
        with self.write() as conn:
            n = conn.execute(
                d.update()
                .where(d.c.issue_id == issue_id, d.c.status == DeliveryStatus.DEFERRED.value)
                .values(status=DeliveryStatus.QUEUED.value, claimed_by=None, updated_at=now)
            ).rowcount
        return n or 0

    @staticmethod
    def _rows_of(issue_id: int, by: str | None) -> sa.ColumnElement[bool]:
        """The issue's rows; with ``by``, only those a run whose sender ids start with it
        holds or finished."""
        d = schema.deliveries
        cond = d.c.issue_id == issue_id
        if by is not None:
            cond = sa.and_(cond, sa.func.substr(d.c.claimed_by, 1, len(by)) == by)
        return cond

    def delivery_counts(self, issue_id: int, *, by: str | None = None) -> DeliveryCounts:
        """Rows per status and how many are in doubt: the one source of every count shown
        (the send summary, `newsletter status`, the daemon's status and log).

        ``by``: only the rows of one run (its sender ids' common prefix, see
        :func:`newsletter.delivery.deliver`), i.e. what that run did.
        """
        d = schema.deliveries
        rows_of = self._rows_of(issue_id, by)
        with self.read() as conn:
            rows = conn.execute(
                sa.select(d.c.status, sa.func.count()).where(rows_of).group_by(d.c.status)
            ).all()
            doubt = conn.execute(
                sa.select(sa.func.count()).where(rows_of, d.c.in_doubt.is_(True))
            ).scalar_one()
        return DeliveryCounts(**{str(status): int(n) for status, n in rows}, in_doubt=doubt)

    def delivery_problems(
        self, issue_id: int, limit: int = 50, *, by: str | None = None
    ) -> list[tuple[str, str, str]]:
        """(email, status, reply) of FAILED and DEFERRED rows (of one run, with ``by``)."""
        d, s = schema.deliveries, schema.subscribers
        with self.read() as conn:
            rows = conn.execute(
                sa.select(s.c.email, d.c.status, d.c.reply)
                .join(s, s.c.id == d.c.subscriber_id)
                .where(
                    self._rows_of(issue_id, by),
                    d.c.status.in_([DeliveryStatus.FAILED.value, DeliveryStatus.DEFERRED.value]),
                )
                .order_by(s.c.email)
                .limit(limit)
            ).all()
        return [(r.email, r.status, r.reply or "") for r in rows]

    def unfinished(self, issue_id: int) -> int:
        """Rows not in a final state."""
        d = schema.deliveries
        with self.read() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(
                        d.c.issue_id == issue_id, d.c.status.not_in([s.value for s in SETTLED])
                    )
                ).scalar_one()
            )


def _save_papers(
    conn: sa.Connection,
    table: sa.Table,
    key: str,
    owner: int,
    papers: Sequence[tuple[str, str]],
) -> None:
    if papers:
        conn.execute(
            table.insert(),
            [
                {key: owner, "paper_id": pid, "topic": topic, "position": i}
                for i, (pid, topic) in enumerate(papers)
            ],
        )


def _waiting(issue_id: int, edition: str) -> tuple[sa.ColumnElement[bool], ...]:
    """Active subscribers of the edition's cadence without a row for the issue."""
    d, s = schema.deliveries, schema.subscribers
    return (
        s.c.status == SubscriberStatus.ACTIVE.value,
        s.c.cadence == edition,
        ~sa.exists().where(d.c.issue_id == issue_id, d.c.subscriber_id == s.c.id),
    )


def _last_issue(issue_id: int) -> sa.ScalarSelect[Any]:
    """The id of the last issue before ``issue_id`` the subscriber got (ids grow with
    creation): a row that is not failed or skipped (a queued or deferred one will be)."""
    d, s = schema.deliveries, schema.subscribers
    d2 = d.alias("got")
    return (
        sa.select(sa.func.max(d2.c.issue_id))
        .where(
            d2.c.subscriber_id == s.c.id,
            d2.c.issue_id < issue_id,
            d2.c.status.not_in(NOT_RECEIVED),
        )
        .scalar_subquery()
    )


def _previous(conn: sa.Connection, issue_id: int) -> tuple[str, int | None]:
    """The issue's edition, and the id of the issue of that edition before it."""
    i = schema.issues
    edition = conn.execute(sa.select(i.c.edition).where(i.c.id == issue_id)).scalar_one()
    previous = conn.execute(
        sa.select(sa.func.max(i.c.id)).where(i.c.edition == edition, i.c.id < issue_id)
    ).scalar()
    return edition, previous


def _switch_condition(last: sa.FromClause, previous: int | None) -> sa.ColumnElement[bool]:
    """The subscriber changed cadence after the last issue they got (``last``), and that
    was not the issue of this edition before this one (whose cut is where this one
    starts): the issue itself would not start where they left off."""
    s = schema.subscribers
    cond = sa.and_(s.c.cadence_changed_at.is_not(None), last.c.created_at <= s.c.cadence_changed_at)
    return cond if previous is None else sa.and_(cond, last.c.id != previous)


def _switcher_rows(issue_id: int, edition: str, previous: int | None) -> sa.Select[Any]:
    """(subscriber id, cut of their last issue) of the switchers waiting for the issue."""
    s = schema.subscribers
    last = schema.issues.alias("last")
    return (
        sa.select(s.c.id, last.c.created_at)
        .select_from(s.join(last, last.c.id == _last_issue(issue_id)))
        .where(*_waiting(issue_id, edition), _switch_condition(last, previous))
    )


def _switchers(
    conn: sa.Connection, issue_id: int, floor: dt.datetime | None
) -> dict[dt.datetime, list[int]]:
    edition, previous = _previous(conn, issue_id)
    rows = conn.execute(_switcher_rows(issue_id, edition, previous).order_by("id")).all()
    out: dict[dt.datetime, list[int]] = {}
    for sid, cut in rows:
        out.setdefault(cut if floor is None else max(cut, floor), []).append(sid)
    return out
