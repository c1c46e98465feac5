"""Every link and signed address a message or a page carries, and the token purpose
each one uses.

The web app (`newsletter serve`, :mod:`newsletter.web.app`) answers at these paths under
``list.base_url``; the emails, the archive pages and the confirmation mail point at them.
A token signed for one :class:`Purpose` never verifies for another
(:mod:`newsletter.tokens`), so each link's token says what it may do.  A message also
carries a Message-ID and an envelope sender that name the subscriber and the issue, so
that a bounce can be traced back (:mod:`newsletter.bounces.verp` reads them).  Pure: no I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import urllib.parse
from enum import StrEnum
from typing import TYPE_CHECKING

from newsletter.models import Edition
from newsletter.tokens import sign

if TYPE_CHECKING:
    from newsletter.config import Settings


class Purpose(StrEnum):
    """What a signed token is for; the values are part of every token ever sent."""

    #: ``/unsubscribe/<token>`` and the List-Unsubscribe mailto: the subscriber id, no
    #: expiry (the link in an old issue keeps working).
    UNSUBSCRIBE = "unsubscribe"
    #: ``/preferences/<token>``, the "Tune your digest" link: the subscriber id, expiring
    #: :data:`PREFERENCES_DAYS` after the issue that carries it.  Never an unsubscribe
    #: token, nor one of it.
    PREFERENCES = "preferences"
    #: ``/confirm/<token>``: the subscriber id and a stamp of their row, expiring
    #: (:mod:`newsletter.web.signup`).
    CONFIRM = "confirm"
    #: The sign-up form's hidden field: the browser's cookie, expiring.
    CSRF = "csrf"
    #: The tag of a VERP return path: the subscriber id and the issue date
    #: (:mod:`newsletter.bounces.verp`).
    RETURN_PATH = "bounce-return-path"


#: The sign-up form (also the web root).
SUBSCRIBE = "/subscribe"
#: The list of past issues; an issue is :func:`archive_path`.
ARCHIVE = "/archive/"
#: The list of past issues as an Atom feed.
ARCHIVE_FEED = "/archive.xml"
#: A personal link is this plus a token; alone, the page that explains where the personal
#: link is (what the archive's copies of an issue link to).
UNSUBSCRIBE = "/unsubscribe/"
#: Plus a confirmation token.
CONFIRM = "/confirm/"
#: A VERP tag's length: 80 bits, 16 base32 characters.
RETURN_PATH_TAG_BYTES = 10

#: Plus a preferences token; alone, the page that explains where the personal link is.
PREFERENCES = "/preferences/"

#: How long a "Tune your digest" link works after the date of the issue that carries it:
#: whoever holds the email can read and change the reader's interests, so an old email
#: forwarded or lying in a shared folder stops being a key; every new issue brings a new
#: link.  Counted from the issue date, so a resend carries the same link (and bytes).
PREFERENCES_DAYS = 90


def issue_path(issue_date: dt.date, edition: Edition = Edition.DAILY) -> str:
    """An issue's place under the archive: ``DATE``, or ``weekly/DATE``."""
    return issue_date.isoformat() if edition is Edition.DAILY else f"{edition.value}/{issue_date}"


def archive_path(issue_date: dt.date, edition: Edition = Edition.DAILY) -> str:
    return f"{ARCHIVE}{issue_path(issue_date, edition)}"


def public_url(settings: Settings, path: str) -> str:
    """``path`` under ``list.base_url``: where `newsletter serve` is reachable."""
    return f"{settings.list.base_url.rstrip('/')}{path}"


def issue_url(settings: Settings, issue_date: dt.date, edition: Edition = Edition.DAILY) -> str:
    """The issue in the archive: the "view in a browser" link of the email."""
    return public_url(settings, archive_path(issue_date, edition))


def unsubscribe_token(secret: str, subscriber_id: int) -> str:
    return sign(secret, Purpose.UNSUBSCRIBE, str(subscriber_id))


def unsubscribe_url(settings: Settings, token: str) -> str:
    return public_url(settings, UNSUBSCRIBE + token)


def unsubscribe_mailto(settings: Settings, token: str) -> str:
    """The List-Unsubscribe mailto: a mail to the list's address naming the token."""
    subject = urllib.parse.quote(f"unsubscribe {token}")
    return f"mailto:{settings.list.from_address}?subject={subject}"


def preferences_token(secret: str, subscriber_id: int, issue_date: dt.date) -> str:
    """The token of the "Tune your digest" link in the issue of ``issue_date``."""
    last = dt.datetime.combine(issue_date, dt.time(), dt.UTC) + dt.timedelta(days=PREFERENCES_DAYS)
    return sign(secret, Purpose.PREFERENCES, str(subscriber_id), expires=int(last.timestamp()))


def preferences_url(settings: Settings, token: str) -> str:
    return public_url(settings, PREFERENCES + token)


def confirm_url(settings: Settings, token: str) -> str:
    return public_url(settings, CONFIRM + token)


def contact_url(contact: str) -> str:
    """Where the "contact" of the emails and pages links to: ``list.contact`` when it is
    a web or mailto link, a mailto when it is an address, else nowhere ("")."""
    if contact.startswith(("http://", "https://", "mailto:")):
        return contact
    return "mailto:" + contact if "@" in contact else ""


# --------------------------------------------------------------------------- addresses


def message_id(
    settings: Settings,
    secret: str,
    issue_date: dt.date,
    subscriber_id: int,
    edition: Edition = Edition.DAILY,
) -> str:
    """Stable for (issue, subscriber): a resend after a crash carries the same Message-ID.

    The keyed hash stops anyone from guessing other subscribers' ids from one message.
    A weekly issue's says so (``<YYYYMMDD-weekly.…>``): the daily and the weekly of one
    date are two messages.
    """
    issue = issue_date.isoformat()
    day = f"{issue_date:%Y%m%d}"
    if edition is not Edition.DAILY:
        issue, day = f"{edition.value}:{issue}", f"{day}-{edition.value}"
    tag = hmac.new(secret.encode(), f"{issue}:{subscriber_id}".encode(), hashlib.sha256)
    domain = settings.list.from_address.rpartition("@")[2] or "localhost"
    return f"<{day}.{subscriber_id}.{tag.hexdigest()[:16]}@{domain}>"


def return_path_tag(secret: str, subscriber_id: int, issue_date: dt.date) -> str:
    """The signed tag of a VERP return path: a token of its own purpose, cut to 80 bits and
    written in lower-case base32 (some servers lower-case the address they bounce to)."""
    token = sign(secret, Purpose.RETURN_PATH, f"{subscriber_id}:{issue_date.isoformat()}")
    mac = token.partition(".")[2]
    raw = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))[:RETURN_PATH_TAG_BYTES]
    return base64.b32encode(raw).decode("ascii").lower()


def return_path(base: str, secret: str, subscriber_id: int, issue_date: dt.date) -> str:
    """The envelope sender for one (issue, subscriber): ``base`` with a signed tag."""
    local, _, domain = base.rpartition("@")
    tag = return_path_tag(secret, subscriber_id, issue_date)
    tagged = f"{local}+{subscriber_id}-{issue_date:%Y%m%d}-{tag}"
    if len(tagged) > 64:  # config validation keeps the base short enough; a bug otherwise
        raise ValueError(f"return path local part {tagged!r} is longer than 64 octets")
    return f"{tagged}@{domain}"


def envelope_sender(
    settings: Settings, secret: str, subscriber_id: int, issue_date: dt.date
) -> str:
    """The MAIL FROM for one subscriber's copy of an issue: the VERP return path when
    ``delivery.return_path`` is set, else ``list.from_address``."""
    if not settings.delivery.return_path:
        return settings.list.from_address
    return return_path(settings.delivery.return_path, secret, subscriber_id, issue_date)
