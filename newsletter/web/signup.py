"""Double opt-in: the signed confirmation link and the email that carries it.

A confirmation token (purpose ``confirm``, expiring) names the subscriber id and a stamp of
their row at signing time (see :func:`newsletter.store.signup.signup_stamp`); nothing typed
into the form rides in it, so its length does not depend on the name or the address.  The
stamp makes a link sent before an unsubscribe useless after it.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING

from newsletter.links import Purpose
from newsletter.store.signup import CONFIRM_DAYS, signup_stamp
from newsletter.tokens import BadToken, sign, verify

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.delivery.transport import Transport
    from newsletter.models import Subscriber
    from newsletter.web.pages import Pages

#: id:stamp.  The older format, id:stamp:name (the name typed into the form), is still
#: read: such links were mailed before the upgrade and expire within CONFIRM_DAYS anyway.
_SUBJECT = re.compile(r"([0-9]{1,18}):([0-9]{1,20})(?::(.*))?", re.DOTALL)


class ExpiredToken(BadToken):
    """The link has expired."""


@dataclass(frozen=True, slots=True)
class Confirmation:
    subscriber_id: int
    stamp: str
    name: str = ""  # only in the older format; otherwise the row's name is kept


def confirm_token(secret: str, subscriber: Subscriber, *, now: float) -> str:
    """The link's token for ``subscriber`` as their row is now, valid for CONFIRM_DAYS."""
    expires = int(now) + CONFIRM_DAYS * 86_400
    return sign(
        secret, Purpose.CONFIRM, f"{subscriber.id}:{signup_stamp(subscriber)}", expires=expires
    )


def read_confirm_token(secret: str, token: str, *, now: float) -> Confirmation:
    """What a confirmation link says; :class:`ExpiredToken` or :class:`BadToken` otherwise."""
    try:
        subject = verify(secret, Purpose.CONFIRM, token, now=now)
    except BadToken:
        # Genuine but too old, or not genuine at all?  Checked at the dawn of time, a
        # genuine token has not expired yet.
        verify(secret, Purpose.CONFIRM, token, now=0)
        raise ExpiredToken("the link has expired") from None
    m = _SUBJECT.fullmatch(subject)
    if m is None:
        raise BadToken("the link is not valid")
    return Confirmation(int(m[1]), m[2], m[3] or "")


def confirmation_message(
    settings: Settings, pages: Pages, to: str, confirm_url: str, *, now: dt.datetime
) -> EmailMessage:
    lst = settings.list
    domain = lst.from_address.rpartition("@")[2] or "localhost"
    msg = EmailMessage(policy=email.policy.SMTP)
    username, _, addr_domain = lst.from_address.rpartition("@")
    from newsletter.subscribers import ascii_email, clean_name

    msg["From"] = Address(
        display_name=clean_name(lst.from_name), username=username, domain=addr_domain
    )
    if lst.reply_to:
        msg["Reply-To"] = lst.reply_to
    msg["To"] = ascii_email(to)  # a Unicode domain in a header is not an address
    msg["Subject"] = f"Confirm your subscription to {pages.list_name}"
    msg["Date"] = email.utils.format_datetime(now.astimezone(dt.UTC))
    msg["Message-ID"] = email.utils.make_msgid("confirm", domain=domain)
    # RFC 3834: sent by a program on someone's request; vacation responders stay quiet.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        pages.render(
            "confirm_email.txt.j2",
            list_name=pages.list_name,
            confirm_url=confirm_url,
            confirm_days=CONFIRM_DAYS,
            contact=pages.contact,
        )
    )
    return msg


def send_confirmation(
    settings: Settings, transport_factory: Callable[[], Transport], msg: EmailMessage
) -> str:
    """Hand one confirmation email to the configured transport; the server's reply."""
    transport = transport_factory()
    transport.open()
    try:
        return transport.send(
            settings.list.from_address, str(msg["To"]), msg.as_bytes(), lambda: None
        )
    finally:
        transport.close()
