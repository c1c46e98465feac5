"""One subscriber's email: headers, the personal unsubscribe link, MIME structure (pure).

multipart/alternative with the text part first and the HTML last, quoted-printable so no
line exceeds 998 octets, CRLF line endings (``email.policy.SMTP``), RFC 2047 for any
non-ASCII header text, RFC 8058 one-click unsubscribe headers, and a Message-ID that is
the same every time for the same (issue, subscriber).
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import hashlib
import hmac
import re
import urllib.parse
from email.headerregistry import Address
from email.message import EmailMessage

from newsletter.config import Settings
from newsletter.models import Subscriber
from newsletter.tokens import sign

UNSUBSCRIBE = "unsubscribe"
#: Serialisation for the wire: CRLF line endings, RFC 2047 for non-ASCII header text.
#: Headers are folded only past 998 octets: folding at 78 turns a long unbreakable
#: List-Unsubscribe URI into an RFC 2047 encoded word, which mail clients do not decode
#: there (RFC 2369 wants the URIs as they are).  Body lines stay short (quoted-printable).
WIRE = email.policy.SMTP.clone(max_line_length=998)


def _domain(settings: Settings) -> str:
    return settings.list.from_address.rpartition("@")[2] or "localhost"


def message_id(settings: Settings, secret: str, issue_date: dt.date, subscriber_id: int) -> str:
    """Stable for (issue, subscriber): a resend after a crash carries the same Message-ID.

    The keyed hash stops anyone from guessing other subscribers' ids from one message.
    """
    tag = hmac.new(
        secret.encode(), f"{issue_date.isoformat()}:{subscriber_id}".encode(), hashlib.sha256
    ).hexdigest()[:16]
    return f"<{issue_date:%Y%m%d}.{subscriber_id}.{tag}@{_domain(settings)}>"


def unsubscribe_token(secret: str, subscriber_id: int) -> str:
    return sign(secret, UNSUBSCRIBE, str(subscriber_id))


def unsubscribe_url(settings: Settings, token: str) -> str:
    return f"{settings.list.base_url.rstrip('/')}/unsubscribe/{token}"


def web_url(settings: Settings, issue_date: dt.date) -> str:
    return f"{settings.list.base_url.rstrip('/')}/archive/{issue_date.isoformat()}"


def _one_line(s: str) -> str:
    return " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", s).split())


def _address(name: str, addr: str) -> Address:
    username, _, domain = addr.rpartition("@")
    return Address(display_name=_one_line(name), username=username, domain=domain)


def build_message(
    *,
    settings: Settings,
    subscriber: Subscriber,
    subject: str,
    html: str,
    text: str,
    token: str,
    msg_id: str,
    date: dt.datetime,
) -> EmailMessage:
    """The complete message for one subscriber; ``html`` and ``text`` are already personal."""
    lst = settings.list
    msg = EmailMessage(policy=WIRE)
    msg["From"] = _address(lst.from_name, lst.from_address)
    msg["To"] = _address(subscriber.name, subscriber.email)
    if lst.reply_to:
        msg["Reply-To"] = lst.reply_to
    msg["Subject"] = _one_line(subject)
    msg["Date"] = email.utils.format_datetime(date.astimezone(dt.UTC))
    msg["Message-ID"] = msg_id
    msg["List-Id"] = f"{_one_line(lst.name)} <{lst.id}>"
    mailto = f"mailto:{lst.from_address}?subject=" + urllib.parse.quote(f"unsubscribe {token}")
    msg["List-Unsubscribe"] = f"<{unsubscribe_url(settings, token)}>, <{mailto}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["MIME-Version"] = "1.0"
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def to_bytes(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=WIRE)
