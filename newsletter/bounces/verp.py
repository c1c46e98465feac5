"""Return paths that say who bounced (VERP), and finding who a report is about.

With ``delivery.return_path = "bounces@lists.example.org"`` each message's envelope
sender is ``bounces+<subscriber id>-<YYYYMMDD>-<tag>@lists.example.org``: a bounce goes
back to that address, so even one that quotes nothing of the message names the
subscriber and the issue.  The tag is a :mod:`newsletter.tokens` token of its own
purpose, cut to 80 bits and written in lower-case base32: some servers lower-case the
address they bounce to, and the local part stays within RFC 5321's 64 octets (the
config refuses a local part that would not).

Reports without it are matched by our Message-ID (``<YYYYMMDD.id.hmac@domain>``, or
``<YYYYMMDD-weekly.id.hmac@domain>``, which bounces and complaints usually quote) before
falling back to the recipient address.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from newsletter.config import Settings
from newsletter.links import Purpose
from newsletter.models import Edition
from newsletter.tokens import sign

#: The tag's length: 80 bits, 16 base32 characters.
_TAG_BYTES = 10
_MESSAGE_ID = re.compile(r"<(\d{8})(?:-([a-z]+))?\.(\d{1,10})\.([0-9a-f]{16})@([^>\s]+)>")


@dataclass(frozen=True, slots=True)
class Target:
    """The delivery a report is about."""

    subscriber_id: int
    issue_date: dt.date


def _tag(secret: str, subscriber_id: int, issue_date: dt.date) -> str:
    token = sign(secret, Purpose.RETURN_PATH, f"{subscriber_id}:{issue_date.isoformat()}")
    mac = token.partition(".")[2]
    raw = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))[:_TAG_BYTES]
    return base64.b32encode(raw).decode("ascii").lower()


def return_path(base: str, secret: str, subscriber_id: int, issue_date: dt.date) -> str:
    """The envelope sender for one (issue, subscriber): ``base`` with a signed tag."""
    local, _, domain = base.rpartition("@")
    tag = _tag(secret, subscriber_id, issue_date)
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


def _pattern(base: str) -> re.Pattern[str]:
    local, _, domain = base.rpartition("@")
    return re.compile(
        rf"{re.escape(local)}\+(\d{{1,10}})-(\d{{8}})-([a-z2-7]{{16}})@{re.escape(domain)}",
        re.IGNORECASE,
    )


def parse_return_path(base: str, secret: str, text: str) -> Target | None:
    """The delivery named by a return path of ours anywhere in ``text``; ``None`` if there
    is none or its tag does not verify (a forged or mangled address)."""
    for m in _pattern(base).finditer(text):
        try:
            sid, day = int(m.group(1)), dt.datetime.strptime(m.group(2), "%Y%m%d").date()
        except ValueError:
            continue
        if hmac.compare_digest(m.group(3).lower().encode(), _tag(secret, sid, day).encode()):
            return Target(sid, day)
    return None


def parse_message_id(settings: Settings, secret: str, text: str) -> Target | None:
    """The delivery whose Message-ID (made by ``delivery.message.message_id``) is in ``text``."""
    from newsletter.delivery.message import message_id

    for m in _MESSAGE_ID.finditer(text):
        try:
            day = dt.datetime.strptime(m.group(1), "%Y%m%d").date()
            edition = Edition(m.group(2) or Edition.DAILY)
        except ValueError:
            continue
        sid = int(m.group(3))
        ours = message_id(settings, secret, day, sid, edition)
        if hmac.compare_digest(m.group(0).encode(), ours.encode()):
            return Target(sid, day)
    return None


def find_target(settings: Settings, secret: str, clues: Iterable[str]) -> Target | None:
    """Who a report is about, from its clues: our return path first, then our Message-ID."""
    texts = list(clues)
    if settings.delivery.return_path:
        for text in texts:
            found = parse_return_path(settings.delivery.return_path, secret, text)
            if found:
                return found
    for text in texts:
        found = parse_message_id(settings, secret, text)
        if found:
            return found
    return None
