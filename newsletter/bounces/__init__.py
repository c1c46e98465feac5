"""Bounces that arrive later, and complaints: read the bounce mailbox, record, decide.

:func:`run_bounce_check` is the one job (``newsletter bounces check``; the daemon runs it
every ``bounces.check_interval`` minutes): each message of the mailbox is classified
(``parse``), matched to its delivery (``verp``: our return path or Message-ID, else the
recipient address), recorded once (``store.bounces``) with the policy's decision
(``policy``) in the same transaction, and only then moved to the processed folder
(``mailbox``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newsletter.bounces.mailbox import Mailbox, MailboxError, MailItem, open_mailbox
from newsletter.bounces.parse import COUNTED, Finding, Kind, Report, read_report
from newsletter.bounces.policy import SoftBounce, decide, soft_occasions
from newsletter.bounces.verp import Target, find_target
from newsletter.config import Settings
from newsletter.models import Subscriber, SubscriberStatus

if TYPE_CHECKING:
    import ssl
    import threading

    from newsletter.store import Store
    from newsletter.store.bounces import SoftHistory

__all__ = ["CheckReport", "Kind", "MailboxError", "run_bounce_check"]

log = logging.getLogger(__name__)


@dataclass
class CheckReport:
    """What one check did.  Counts are of findings (one per recipient of a report) newly
    recorded in this run; in a dry run, of findings that would be."""

    dry_run: bool = False
    read: int = 0  # messages read from the mailbox
    already_recorded: int = 0  # findings recorded by an earlier check (not counted below)
    kinds: Counter[Kind] = field(default_factory=Counter)
    unmatched: int = 0  # hard, soft or complaint findings about nobody on the list
    bounced: list[str] = field(default_factory=list)  # subscribers this run marked bounced
    unsubscribed: list[str] = field(default_factory=list)  # ... and unsubscribed
    error: str | None = None  # the mailbox failed part-way; what was read is recorded

    def count(self, kind: Kind) -> int:
        return self.kinds[kind]

    def summary(self) -> list[str]:
        """What the check found, as the CLI prints it (and a log line can carry it)."""
        c = self.count
        lines = [
            ("dry run, nothing recorded or moved: " if self.dry_run else "")
            + f"read {self.read} message(s): hard bounces {c(Kind.HARD)}, "
            f"soft bounces {c(Kind.SOFT)}, complaints {c(Kind.COMPLAINT)}, "
            f"auto-replies ignored {c(Kind.AUTO_REPLY)}, "
            f"delay warnings ignored {c(Kind.DELAYED)}, other reports {c(Kind.OTHER)}, "
            f"unrecognised {c(Kind.UNRECOGNISED)}; unmatched {self.unmatched}; "
            f"already recorded {self.already_recorded}"
        ]
        if self.bounced:
            lines.append("marked bounced: " + ", ".join(self.bounced))
        if self.unsubscribed:
            lines.append("unsubscribed (complaint): " + ", ".join(self.unsubscribed))
        return lines


def run_bounce_check(
    settings: Settings,
    store: Store,
    *,
    now: Callable[[], dt.datetime],
    dry_run: bool = False,
    mailbox: Mailbox | None = None,
    ssl_context: ssl.SSLContext | None = None,
    stop: threading.Event | None = None,
) -> CheckReport:
    """Read the bounce mailbox once.  A mailbox that cannot be opened raises
    :class:`MailboxError`; one that fails part-way ends the run with ``report.error`` set
    (everything read before is recorded and moved; the rest waits for the next check).
    ``stop`` (the daemon's) ends the run between two messages."""
    box = mailbox or open_mailbox(
        settings.bounces, settings.secrets.bounces_password, ssl_context=ssl_context
    )
    report = CheckReport(dry_run=dry_run)
    if not settings.secrets.secret_key:
        log.warning(
            "NEWSLETTER_SECRET_KEY is not set: bounces are matched by address only, "
            "not by the return path or Message-ID of the message"
        )
    try:
        for item in box.messages():
            if stop is not None and stop.is_set():
                break
            report.read += 1
            _handle(settings, store, item, report, now=now())
            if not dry_run:
                box.processed(item)
    except MailboxError as e:
        report.error = str(e)
        log.warning("bounce check stopped: %s", e)
    finally:
        box.close()
    return report


def _handle(
    settings: Settings, store: Store, item: MailItem, report: CheckReport, *, now: dt.datetime
) -> None:
    parsed = read_report(item.data)
    secret = settings.secrets.secret_key
    target = find_target(settings, secret, parsed.clues) if secret else None
    for finding in parsed.findings:
        _record(settings, store, parsed, finding, target, report, now=now)


def _record(
    settings: Settings,
    store: Store,
    parsed: Report,
    finding: Finding,
    target: Target | None,
    report: CheckReport,
    *,
    now: dt.datetime,
) -> None:
    from newsletter.store.bounces import BounceEvent

    if report.dry_run:
        if store.bounce_recorded(parsed.key, finding.recipient):
            report.already_recorded += 1
            return
        report.kinds[finding.kind] += 1
        if finding.kind in COUNTED and not _known(store, finding, target):
            report.unmatched += 1
        return
    event = BounceEvent(
        message_key=parsed.key,
        recipient=finding.recipient,
        kind=finding.kind.value,
        # When we read it: a report's own Date can be missing, wrong or forged.
        received_at=now,
        status=finding.status,
        diagnostic=finding.diagnostic,
        subscriber_id=target.subscriber_id if target else None,
        issue_date=target.issue_date if target else None,
    )
    limit, days = settings.bounces.soft_limit, settings.bounces.soft_days

    def policy(sub: Subscriber, history: SoftHistory) -> SubscriberStatus | None:
        soft = [SoftBounce(at, issue) for at, issue in history]
        count = soft_occasions(soft, since=sub.updated_at, now=now, days=days)
        return decide(finding.kind, sub.status, soft_count=count, soft_limit=limit)

    done = store.record_bounce(event, decide=policy, now=now)
    if not done.new:
        report.already_recorded += 1
        return
    report.kinds[finding.kind] += 1
    if done.subscriber is None and finding.kind in COUNTED:
        report.unmatched += 1
    if done.subscriber is not None and done.changed_to is SubscriberStatus.BOUNCED:
        report.bounced.append(done.subscriber.email)
    if done.subscriber is not None and done.changed_to is SubscriberStatus.UNSUBSCRIBED:
        report.unsubscribed.append(done.subscriber.email)
    log.info(
        "%s %s: %s%s",
        finding.kind.value,
        parsed.key,
        done.subscriber.email if done.subscriber else finding.recipient or "(nobody)",
        f" -> {done.changed_to.value}" if done.changed_to else "",
    )


def _known(store: Store, finding: Finding, target: Target | None) -> bool:
    if target is not None:
        return store.subscriber(target.subscriber_id) is not None
    return bool(finding.recipient) and store.subscriber(finding.recipient) is not None
