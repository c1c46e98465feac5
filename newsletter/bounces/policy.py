"""What a bounce or a complaint does to a subscriber: pure decisions, no I/O, no clock.

- A complaint unsubscribes at once (anyone but someone who already left).
- A hard bounce marks an active subscriber bounced.
- Soft bounces mark an active subscriber bounced once they happened on ``soft_limit``
  distinct occasions within ``soft_days``: an occasion is an issue (several reports about
  one message count once), or a day when the report names no issue.
- Delay warnings, auto-replies and other reports never change anything.

Soft bounces recorded before the subscriber's record last changed (an explicit
``subscribers add`` brings a bounced subscriber back) do not count.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from newsletter.bounces.parse import Kind
from newsletter.models import SubscriberStatus


@dataclass(frozen=True, slots=True)
class SoftBounce:
    received_at: dt.datetime
    issue_date: dt.date | None


def soft_occasions(
    history: Sequence[SoftBounce], *, since: dt.datetime, now: dt.datetime, days: int
) -> int:
    """Distinct issues (or days, where no issue is known) with a soft bounce in the window."""
    start = max(since, now - dt.timedelta(days=days))
    keys = {
        b.issue_date if b.issue_date is not None else b.received_at.date()
        for b in history
        if start <= b.received_at <= now
    }
    return len(keys)


def decide(
    kind: Kind,
    status: SubscriberStatus,
    *,
    soft_count: int,
    soft_limit: int,
) -> SubscriberStatus | None:
    """The subscriber's new status, or ``None`` to leave it.

    ``soft_count`` is :func:`soft_occasions` with this bounce included.
    """
    if kind is Kind.COMPLAINT:
        return None if status is SubscriberStatus.UNSUBSCRIBED else SubscriberStatus.UNSUBSCRIBED
    if status is not SubscriberStatus.ACTIVE:
        return None
    if kind is Kind.HARD or (kind is Kind.SOFT and soft_count >= soft_limit):
        return SubscriberStatus.BOUNCED
    return None
