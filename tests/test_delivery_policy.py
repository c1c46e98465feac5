"""The delivery policy as tables: what a row's next step is, and how a refusal is read.

Pure functions, no server: the end-to-end behaviour (the ledger, the retry queue, the
crash loop) is in test_delivery.py and test_send_crash.py.
"""

from __future__ import annotations

import pytest

from newsletter.bounces.parse import Kind, severity
from newsletter.delivery import policy
from newsletter.delivery.policy import (
    Defer,
    Fail,
    Reconnect,
    Requeue,
    Retry,
    Row,
    Send,
    Skip,
    address_gone,
    classify,
    enhanced_status,
    next_step,
    reopen_delay,
)
from newsletter.errors import DeliveryError, NewsletterError, SendError
from newsletter.models import SubscriberStatus

ACTIVE = SubscriberStatus.ACTIVE

# --------------------------------------------------------------------------- replies

# (code, text, stage) -> (permanent, bounce).  Gmail, Postfix, Exim, qmail and Exchange
# phrasing; smtplib hands the text over without the code and the continuation dashes.
REPLIES = [
    # The address does not exist: the subscriber is marked bounced.
    (550, "5.1.1 The email account that you tried to reach does not exist.", "rcpt", True, True),
    (550, "No such user here", "rcpt", True, True),  # no enhanced status: the basic code
    (551, "User not local; please try <ana@elsewhere.example>", "rcpt", True, True),
    (553, "Requested action not taken: mailbox name not allowed", "rcpt", True, True),
    (554, "5.1.1 <ana@example.org>: Recipient address rejected", "rcpt", True, True),
    (501, "5.1.3 Bad recipient address syntax", "rcpt", True, True),
    (550, "5.1.10 Recipient domain example.org has a null MX", "rcpt", True, True),
    (550, "5.1.6 Recipient mailbox has moved", "rcpt", True, True),
    (550, "5.2.1 Mailbox disabled, not accepting messages", "rcpt", True, True),
    (550, "5.0.0 <ana@example.org>... User unknown", "rcpt", True, True),
    (550, "sorry, no mailbox here by that name. (#5.1.1)", "rcpt", True, True),
    # One recipient per transaction: a 5.1.x after DATA is about that recipient.
    (550, "5.1.1 <ana@example.org>: user unknown", "data", True, True),
    # Permanent, but nothing wrong with the address: FAILED, the subscriber stays.
    (550, "5.7.1 Service unavailable; client host [192.0.2.1] blocked", "rcpt", True, False),
    (554, "5.7.1 <ana@example.org>: Relay access denied", "rcpt", True, False),
    (553, "sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", "rcpt", True, False),
    (
        553,
        "5.1.8 <papers@example.org>: Sender address rejected: Domain not found",
        "rcpt",
        True,
        False,
    ),
    (550, "5.1.7 Bad sender's mailbox address syntax", "rcpt", True, False),
    (550, "5.1.0 <papers@example.org>: Sender address rejected: User unknown", "rcpt", True, False),
    (552, "5.2.2 Mailbox full", "rcpt", True, False),
    (550, "5.4.1 Recipient address rejected: Access denied", "rcpt", True, False),
    (554, "5.7.1 Message rejected as spam", "data", True, False),
    (550, "Message content rejected", "data", True, False),  # a bare 550 counts at RCPT only
    (550, "5.1.0 Sender rejected", "mail", True, False),
    (553, "sender address not allowed", "mail", True, False),
    # Transient: retried, never a bounce, whatever the status says.
    (
        450,
        "4.1.1 <ana@example.org>: Recipient address rejected: unverified address",
        "rcpt",
        False,
        False,
    ),
    (452, "4.2.2 Mailbox full", "rcpt", False, False),
    (451, "4.3.0 Temporary lookup failure", "data", False, False),
    (421, "4.7.0 Too many connections", "mail", False, False),
]


@pytest.mark.parametrize(("code", "text", "stage", "permanent", "bounce"), REPLIES)
def test_a_refusal_is_read_as_permanent_and_as_a_bounce_or_not(
    code, text, stage, permanent, bounce
):
    e = classify(code, text, stage)
    assert (e.permanent, e.bounce) == (permanent, bounce)
    assert e.code == code and e.stage == stage
    assert e.reason == f"{code} {text} (after {policy.COMMANDS[stage]})"


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("5.1.1 no such user", "5.1.1"),
        ("5.1.10 null MX", "5.1.10"),
        ("no mailbox here by that name. (#5.1.1)", "5.1.1"),
        ("5.1.1.2 is no status", None),
        ("client host [5.1.22.4] blocked", None),  # an address, not a status
        ("User unknown", None),
    ],
)
def test_the_enhanced_status_is_read_where_servers_put_it(text, status):
    assert enhanced_status(text) == status


@pytest.mark.parametrize(
    ("status", "diagnostic"),
    [("5.1.1", None), ("5.2.1", None), ("5.0.0", "550 User unknown"), ("5.1.8", None),
     ("5.1.7", None), ("5.7.1", None), ("5.2.2", None), ("5.0.0", "554 rejected")],
)  # fmt: skip
def test_a_report_in_the_bounce_mailbox_is_judged_by_the_same_rule(status, diagnostic):
    """A bounce read later from the mailbox and a refusal while sending agree on whether
    the address is gone."""
    code = int(diagnostic.split()[0]) if diagnostic else None
    hard = severity(status, diagnostic, permanent=True) is Kind.HARD
    assert hard == address_gone(status, code)


def test_a_send_error_is_an_error_of_the_one_tree():
    e = classify(550, "5.1.1 no such user", "rcpt")
    assert isinstance(e, DeliveryError) and isinstance(e, NewsletterError)
    assert e.exit_code == 1 and str(e) == "550 5.1.1 no such user (after RCPT TO)"


# --------------------------------------------------------------------------- steps


def dropped(stage="data") -> SendError:
    return SendError(f"connection lost during {stage.upper()}: gone", stage=stage)


def refused(code: int, text: str = "", stage="rcpt") -> SendError:
    return classify(code, text or f"{code // 100}.0.0 no", stage)


NO_SUCH_USER = classify(550, "5.1.1 no such user", "rcpt")
SPAM = classify(554, "5.7.1 rejected as spam", "data")
FULL = classify(452, "4.2.2 mailbox full", "rcpt")
BUSY = classify(451, "4.3.0 try again", "data")
CANNOT_CONNECT = SendError("cannot connect to h:25: refused", stage="connect")
NOT_ASCII = SendError("does not offer SMTPUTF8", permanent=True, stage="rcpt")

# (row, failure, stopping) -> step; BACKOFF is 0.5 and the draw 0.5 (no jitter).
STEPS = [
    # Before a try.
    (Row(ACTIVE), None, False, Send()),
    (Row(ACTIVE), None, True, Requeue(False)),
    (Row(ACTIVE, 0, True), None, True, Requeue(True)),
    (Row(SubscriberStatus.UNSUBSCRIBED), None, False, Skip("subscriber is unsubscribed")),
    (Row(SubscriberStatus.BOUNCED), None, True, Skip("subscriber is bounced")),
    # Permanent failures settle at once, stopping or not, on any try.
    (Row(ACTIVE), NO_SUCH_USER, False, Fail(NO_SUCH_USER.reason, True, False)),
    (Row(ACTIVE, 2), NO_SUCH_USER, True, Fail(NO_SUCH_USER.reason, True, False)),
    (Row(ACTIVE), SPAM, False, Fail(SPAM.reason, False, False)),
    (Row(ACTIVE, 1, True), SPAM, False, Fail(SPAM.reason, False, True)),
    (Row(ACTIVE), NOT_ASCII, False, Fail(NOT_ASCII.reason, False, False)),
    # A 4xx asks for time: 0.5 s, then 1 s, then the row is deferred.
    (Row(ACTIVE, 0), FULL, False, Retry(FULL.reason, 0.5, 1, False, False)),
    (Row(ACTIVE, 1), FULL, False, Retry(FULL.reason, 1.0, 2, False, False)),
    (Row(ACTIVE, 2), FULL, False, Defer(FULL.reason, False)),
    (Row(ACTIVE, 0), FULL, True, Requeue(False)),
    # ... in DATA the row was SENDING: it goes back to CLAIMED, not in doubt (a reply came).
    (Row(ACTIVE, 0), BUSY, False, Retry(BUSY.reason, 0.5, 1, False, True)),
    (Row(ACTIVE, 2), BUSY, False, Defer(BUSY.reason, False)),
    # A drop in DATA may have delivered: in doubt from now on; a new connection at once.
    (Row(ACTIVE, 0), dropped(), False, Retry(dropped().reason, 0.0, 1, True, True)),
    (Row(ACTIVE, 1, True), dropped(), False, Retry(dropped().reason, 1.0, 2, True, True)),
    (Row(ACTIVE, 2), dropped(), False, Defer(dropped().reason, True)),
    (Row(ACTIVE, 0), dropped(), True, Requeue(True)),
    # ... before DATA nothing can have arrived.
    (Row(ACTIVE, 0), dropped("mail"), False, Retry(dropped("mail").reason, 0.0, 1, False, False)),
    (Row(ACTIVE, 0), dropped("rcpt"), True, Requeue(False)),
    # A 421 closes the connection but is a reply: time, not an immediate retry.
    (Row(ACTIVE, 0), refused(421, stage="mail"), False,
     Retry(refused(421, stage="mail").reason, 0.5, 1, False, False)),
    # The connection could not be reopened: not this message's failure.
    (Row(ACTIVE, 1, True), CANNOT_CONNECT, False, Reconnect()),
    (Row(ACTIVE, 1, True), CANNOT_CONNECT, True, Requeue(True)),
]  # fmt: skip


@pytest.mark.parametrize(("row", "failure", "stopping", "step"), STEPS)
def test_next_step(row, failure, stopping, step):
    assert next_step(row, failure, stopping=stopping) == step


def test_the_jitter_spreads_a_retry_between_half_and_one_and_a_half_times_its_delay():
    low = next_step(Row(ACTIVE, 1), FULL, draw=0.0)
    high = next_step(Row(ACTIVE, 1), FULL, draw=0.999)
    assert isinstance(low, Retry) and isinstance(high, Retry)
    assert low.delay == 0.5 and 1.49 < high.delay < 1.5


def test_a_row_is_settled_within_the_retry_window():
    """Three tries, the retries at most 1.5 x (0.5 + 1) s after each other: 2.25 s."""
    row, waited = Row(ACTIVE), 0.0
    while isinstance(step := next_step(row, FULL, draw=0.999999), Retry):
        waited += step.delay
        row = Row(ACTIVE, step.tries, step.in_doubt)
    assert isinstance(step, Defer) and row.tries == policy.MAX_ATTEMPTS - 1
    assert waited == pytest.approx(2.25, abs=1e-4)


def test_a_connection_is_tried_three_times_before_it_drops_out():
    assert [reopen_delay(a) for a in (1, 2, 3)] == [0.5, 1.0, None]
