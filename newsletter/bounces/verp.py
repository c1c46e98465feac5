"""Finding who a report is about: by our return path (VERP), else our Message-ID.

Both are made in :mod:`newsletter.links`.  With ``delivery.return_path =
"bounces@lists.example.org"`` each message's envelope sender is
``bounces+<subscriber id>-<YYYYMMDD>-<tag>@lists.example.org``: a bounce goes back to
that address, so even one that quotes nothing of the message names the
subscriber and the issue.  The tag is a :mod:`newsletter.tokens` token of its own
purpose, cut to 80 bits and written in lower-case base32: some servers lower-case the
address they bounce to, and the local part stays within RFC 5321's 64 octets (the
config refuses a local part that would not).

Reports without it are matched by our Message-ID (``<YYYYMMDD.id.hmac@domain>``, or
``<YYYYMMDD-weekly.id.hmac@domain>``, which bounces and complaints usually quote) before
falling back to the recipient address.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from newsletter.config import Settings
from newsletter.links import message_id, return_path_tag
from newsletter.models import Edition

_MESSAGE_ID = re.compile(r"<(\d{8})(?:-([a-z]+))?\.(\d{1,10})\.([0-9a-f]{16})@([^>\s]+)>")


@dataclass(frozen=True, slots=True)
class Target:
    """The delivery a report is about."""

    subscriber_id: int
    issue_date: dt.date


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
        if hmac.compare_digest(
            m.group(3).lower().encode(), return_path_tag(secret, sid, day).encode()
        ):
            return Target(sid, day)
    return None


def parse_message_id(settings: Settings, secret: str, text: str) -> Target | None:
    """The delivery whose Message-ID (made by :func:`newsletter.links.message_id`) is in
    ``text``."""
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
