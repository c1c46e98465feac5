"""One subscriber's email, built from a per-issue template in a few string joins.

The wire format: multipart/alternative with the text part first and the HTML last, both
quoted-printable (no line over 76 octets), CRLF line endings, RFC 2047 for non-ASCII
header text, RFC 8058 one-click unsubscribe headers, and a Message-ID that is the same
every time for the same (issue, subscriber).

Serialising an ``EmailMessage`` per subscriber costs 7 to 12 ms (the pure-Python
quoted-printable encoder and thousands of small writes); a list of thousands cannot
afford that.  So the issue's bodies are encoded once, cut at the per-subscriber
placeholders, and each subscriber's message is the encoded pieces joined with the encoded
values, separated by soft line breaks (``=`` CRLF), which decode to nothing.  The fixed
headers are folded once by the ``email`` package; only To, Message-ID and
List-Unsubscribe are made per subscriber.  A subscriber with interests gets the same pieces
in their topic order, with their "For you" section (encoded once per distinct copy) in its
hole: a few more string joins.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.quoprimime
import email.utils
import functools
import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING

from newsletter.config import Settings
from newsletter.links import (
    envelope_sender,
    message_id,
    preferences_token,
    preferences_url,
    unsubscribe_mailto,
    unsubscribe_token,
    unsubscribe_url,
)
from newsletter.models import Edition, Subscriber
from newsletter.placeholders import PLACEHOLDER_RE, personalize, values
from newsletter.splice import Fill, Kind, Layout, PersonalCopy

if TYPE_CHECKING:
    from newsletter.models import IssueRecord, VariantRecord

#: Header folding for the wire: CRLF, RFC 2047 for non-ASCII text.  Folded only past 998
#: octets: folding at 78 turns a long unbreakable List-Unsubscribe URI into an RFC 2047
#: encoded word, which mail clients do not decode there (RFC 2369 wants the bare URIs).
WIRE = email.policy.SMTP.clone(max_line_length=998)
#: The same for a message to an address with a non-ASCII local part (sent with SMTPUTF8):
#: its To header carries the address in UTF-8, since no encoding of it exists.
WIRE_UTF8 = WIRE.clone(utf8=True)
_CRLF = "\r\n"
_SOFT_BREAK = "=\r\n"


def _one_line(s: str) -> str:
    return " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", s).split())


def wire_address(addr: str) -> tuple[str, bool]:
    """(the address as it goes on the wire, whether it needs SMTPUTF8).

    The domain goes as its A-label (:func:`newsletter.subscribers.ascii_email`: IDNA 2008),
    which every server takes; :class:`~newsletter.subscribers.BadAddress` if it has none.
    A non-ASCII local part has no ASCII form: only a server offering SMTPUTF8 (RFC 6531)
    can take it, with the To header in UTF-8 (RFC 6532).
    """
    from newsletter.subscribers import ascii_email

    wire = ascii_email(addr)
    return wire, not wire.rpartition("@")[0].isascii()


def _address(name: str, addr: str) -> Address:
    from newsletter.subscribers import ascii_email

    # A Unicode domain in a header would become an RFC 2047 word, which is not an address.
    username, _, domain = ascii_email(addr).rpartition("@")
    return Address(display_name=_one_line(name), username=username, domain=domain)


def _header(name: str, value: str, policy: email.policy.Policy = WIRE) -> str:
    """``Name: value`` CRLF, folded and RFC 2047-encoded by the email package."""
    return str(policy.header_factory(name, value).fold(policy=policy))  # type: ignore[attr-defined]


def _qp(text: str) -> str:
    """Quoted-printable of UTF-8 ``text`` with CRLF line breaks.

    Lines of at most 75 octets, so the soft break appended after a piece keeps every line
    within quoted-printable's 76.
    """
    if not text:
        return ""
    return email.quoprimime.body_encode(
        text.encode("utf-8").decode("latin-1"), maxlinelen=75, eol=_CRLF
    )


def _cut(text: str, pattern: re.Pattern[str]) -> list[str]:
    """``text`` quoted-printable, cut at the placeholders: encoded literal text, then a
    token, alternately."""
    pieces: list[str] = []
    pos = 0
    for m in pattern.finditer(text):
        pieces += [_qp(text[pos : m.start()]), m.group(0)]
        pos = m.end()
    pieces.append(_qp(text[pos:]))
    return pieces


def _add(out: list[str], encoded: str) -> None:
    """Append an encoded piece, after a soft line break unless a line ended just before."""
    if encoded:
        if out and not out[-1].endswith(_CRLF):
            out.append(_SOFT_BREAK)
        out.append(encoded)


def _fill(out: list[str], pieces: list[str], values: dict[str, str]) -> None:
    for i, piece in enumerate(pieces):
        # Odd positions are tokens; an unknown token stays as it was, like personalize().
        _add(out, _qp(values.get(piece, piece)) if i % 2 else piece)


def _end(out: list[str]) -> str:
    body = "".join(out)
    return body if body.endswith(_CRLF) else body + _CRLF


class _Body:
    """A body encoded once, with holes where per-subscriber values go, and, for the
    subscribers with a "For you", the same cut at its markers too (``newsletter.splice``):
    their copy is the pieces in their order with their section, encoded once per copy."""

    def __init__(self, text: str, kind: Kind, pattern: re.Pattern[str]):
        text = text.replace("\r\n", "\n")
        self.layout = Layout.of(text, kind)
        self.plain = self.layout.join()  # the plain body: no markers
        self.pieces = _cut(self.plain, pattern)
        # each literal of the layout, encoded (the plain walk meets every one of them)
        self._cut = (
            {p: _cut(p, pattern) for p in self.layout.walk()} if self.layout.personal else {}
        )
        # sections and numbers, encoded once for the copies sharing them
        self._encoded = functools.lru_cache(maxsize=64)(_qp)

    def fill(self, values: dict[str, str], copy: PersonalCopy | None = None) -> str:
        out: list[str] = []
        if copy is None or not self.layout.personal:
            _fill(out, self.pieces, values)
            return _end(out)
        for piece in self.layout.walk(copy):
            if isinstance(piece, Fill):
                _add(out, self._encoded(piece))
            else:
                _fill(out, self._cut[piece], values)
        return _end(out)


class MessageTemplate:
    """One issue's email with the per-subscriber parts left open."""

    def __init__(
        self,
        settings: Settings,
        *,
        subject: str,
        html: str,
        text: str,
        date: dt.datetime,
        secret: str,
        issue_date: dt.date,
        edition: Edition = Edition.DAILY,
    ):
        self.settings = settings
        self.secret = secret
        self.issue_date = issue_date
        self.edition = edition
        lst = settings.list
        fixed = EmailMessage(policy=WIRE)
        fixed["From"] = _address(lst.from_name, lst.from_address)
        if lst.reply_to:
            fixed["Reply-To"] = lst.reply_to
        fixed["Subject"] = _one_line(subject)
        fixed["Date"] = email.utils.format_datetime(date.astimezone(dt.UTC))
        fixed["List-Id"] = f"{_one_line(lst.name)} <{lst.id}>"
        fixed["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        fixed["MIME-Version"] = "1.0"
        self.headers = "".join(_header(k, v) for k, v in fixed.items())
        self.html = _Body(html, "html", PLACEHOLDER_RE)
        self.text = _Body(text, "text", PLACEHOLDER_RE)
        # "==" never occurs in quoted-printable output, so the boundary cannot either.  Made
        # of the plain issue: a plain copy is the message an issue without markers gives.
        plain = self.html.plain
        digest = hashlib.sha256(f"{issue_date}{subject}{plain}".encode()).hexdigest()[:24]
        self.boundary = f"==nl-{digest}=="

    def render(self, subscriber: Subscriber, copy: PersonalCopy | None = None) -> tuple[str, bytes]:
        """(Message-ID, the message as it goes on the wire) for one subscriber; ``copy``:
        their "For you" and topic order (else the plain issue)."""
        token = unsubscribe_token(self.secret, subscriber.id)
        url = unsubscribe_url(self.settings, token)
        prefs = preferences_url(
            self.settings, preferences_token(self.secret, subscriber.id, self.issue_date)
        )
        html_values, text_values = values(
            unsubscribe_url=url, preferences_url=prefs, name=subscriber.name, email=subscriber.email
        )
        mid = message_id(self.settings, self.secret, self.issue_date, subscriber.id, self.edition)
        to, utf8 = wire_address(subscriber.email)
        mailto = unsubscribe_mailto(self.settings, token)
        b = self.boundary
        parts = [
            self.headers,
            _header("To", str(_address(subscriber.name, to)), WIRE_UTF8 if utf8 else WIRE),
            f"Message-ID: {mid}{_CRLF}",
            f"List-Unsubscribe: <{url}>, <{mailto}>{_CRLF}",
            f'Content-Type: multipart/alternative; boundary="{b}"{_CRLF}',
            _CRLF,
            f"--{b}{_CRLF}",
            f'Content-Type: text/plain; charset="utf-8"{_CRLF}',
            f"Content-Transfer-Encoding: quoted-printable{_CRLF}{_CRLF}",
            self.text.fill(text_values, copy),
            f"--{b}{_CRLF}",
            f'Content-Type: text/html; charset="utf-8"{_CRLF}',
            f"Content-Transfer-Encoding: quoted-printable{_CRLF}{_CRLF}",
            self.html.fill(html_values, copy),
            f"--{b}--{_CRLF}",
        ]
        # Every part is ASCII by construction, but the To header of an SMTPUTF8 address.
        return mid, "".join(parts).encode("utf-8" if utf8 else "ascii")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One subscriber's copy of an issue, ready for :meth:`Transport.send`."""

    message_id: str
    sender: str  # the envelope sender (MAIL FROM), where bounces go
    data: bytes  # the message as it goes on the wire


class IssueMailer:
    """Turns the stored issue into one subscriber's message; cheap per subscriber.

    A subscriber who switched cadence gets a variant of the issue (their ledger row names
    it): ``variants`` loads one by id, and its template is made once.
    """

    def __init__(
        self,
        settings: Settings,
        issue: IssueRecord,
        secret: str,
        now: dt.datetime,
        variants: Callable[[int], VariantRecord] | None = None,
    ):
        from newsletter.delivery.dkim import signer_from_settings

        self.settings = settings
        self.issue = issue
        self.secret = secret
        self.now = now  # the Date header's time, and the DKIM signature's
        self.signer = signer_from_settings(settings)  # the key is read once, here
        self.variants = variants
        self.template = self._template(issue.subject, issue.html, issue.text)
        self._by_variant: dict[int, MessageTemplate] = {}
        self._lock = threading.Lock()

    def _template(self, subject: str, html: str, text: str) -> MessageTemplate:
        return MessageTemplate(
            self.settings,
            subject=subject,
            html=html,
            text=text,
            date=self.now,
            secret=self.secret,
            issue_date=self.issue.issue_date,
            edition=self.issue.edition,
        )

    def _variant(self, variant_id: int) -> MessageTemplate:
        with self._lock:  # sender threads share the mailer
            if variant_id not in self._by_variant:
                if self.variants is None:
                    raise ValueError(f"variant {variant_id} asked of a mailer without variants")
                v = self.variants(variant_id)
                self._by_variant[variant_id] = self._template(v.subject, v.html, v.text)
            return self._by_variant[variant_id]

    def personal(
        self,
        subscriber: Subscriber,
        variant_id: int | None = None,
        copy: PersonalCopy | None = None,
    ) -> tuple[str, str, str]:
        """(html, text, unsubscribe token) for one subscriber, as the message carries them
        (of the variant their row names, with their "For you" and topic order)."""
        token = unsubscribe_token(self.secret, subscriber.id)
        if variant_id is not None and self.variants is None:
            raise ValueError(f"variant {variant_id} asked of a mailer without variants")
        bodies = self.issue if variant_id is None else self.variants(variant_id)  # type: ignore[misc]
        html, text = personalize(
            bodies,
            unsubscribe_url=unsubscribe_url(self.settings, token),
            preferences_url=preferences_url(
                self.settings,
                preferences_token(self.secret, subscriber.id, self.issue.issue_date),
            ),
            name=subscriber.name,
            email=subscriber.email,
            copy=copy,
        )
        return html, text, token

    def message(
        self,
        subscriber: Subscriber,
        variant_id: int | None = None,
        copy: PersonalCopy | None = None,
    ) -> Outgoing:
        """The subscriber's copy (of the issue, or of the variant their row names, with
        their "For you" and topic order when their row carries them): every message of an
        issue, sent, test copy, preview or dry run, is made here, envelope sender and final
        bytes included: the return path that names the subscriber and the issue
        (``delivery.return_path``, else the From address) and, last, the DKIM signature
        when ``smtp.dkim_*`` asks for one."""
        template = self.template if variant_id is None else self._variant(variant_id)
        mid, data = template.render(subscriber, copy)
        sender = envelope_sender(self.settings, self.secret, subscriber.id, self.issue.issue_date)
        if self.signer is not None:
            data = self.signer.sign(data, now=self.now)
        return Outgoing(mid, sender, data)
