"""What a message in the bounce mailbox says, from its bytes alone (no I/O, no clock).

Complaints are ARF reports (RFC 5965).  Bounces are read from the RFC 3464 delivery-status
part when there is one (recipient, action, status code, diagnostic); flufl.bounce's
detectors (from Mailman) recognise the many servers that send something else.
Auto-replies (RFC 3834 ``Auto-Submitted``, vacation and out-of-office notices) are told
apart from bounces so that they never count as one.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum

from newsletter.delivery.policy import address_gone


class Kind(StrEnum):
    """What one report says about one recipient."""

    HARD = "hard"  # the address does not exist (5.1.x, 5.2.1, a 550 "no such user")
    SOFT = "soft"  # any other failure: mailbox full, policy rejection, server down for days
    DELAYED = "delayed"  # a delay warning: the server is still trying; never counted
    COMPLAINT = "complaint"  # the recipient reported the issue as spam (ARF abuse or fraud)
    AUTO_REPLY = "auto-reply"  # vacation and out-of-office replies; never counted
    OTHER = "other"  # a report that asks nothing of us (DMARC failure report, delivered)
    UNRECOGNISED = "unrecognised"  # none of the above could be read from it


#: Kinds that are about a subscriber's address and can change their status.
COUNTED = frozenset({Kind.HARD, Kind.SOFT, Kind.COMPLAINT})


@dataclass(frozen=True, slots=True)
class Finding:
    """One recipient of a report and what happened to them."""

    kind: Kind
    recipient: str = ""  # lower-case address as the report gives it; "" if none
    status: str | None = None  # enhanced status code (RFC 3463), e.g. "5.1.1"
    diagnostic: str | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """One message from the bounce mailbox."""

    key: str  # its Message-ID, else "sha256:" and a hash of its bytes
    findings: tuple[Finding, ...]  # at least one
    # Header values of the report and of the message it returns, where a return path
    # or a Message-ID of ours can be found when the report names no recipient we know.
    clues: tuple[str, ...]

    @property
    def kind(self) -> Kind:
        return self.findings[0].kind


_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_HARD = re.compile(r"\b55[013]\b")
_FEEDBACK_COMPLAINT = {"abuse", "fraud"}
#: Subjects of auto-replies that carry no Auto-Submitted header (older Exchange, Notes...).
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ _-]?(reply|response|antwort)|auto:|out of (the )?office|"
    r"abwesend|abwesenheit|absence|r[ée]ponse automatique|risposta automatica|"
    r"respuesta autom[áa]tica|automatische antwort|vacation|on vacation|away from)"
    r"|\((auto(matic)? ?(reply|response))\)\s*$|is out of the office",
    re.IGNORECASE,
)
#: Senders that only ever send bounces, never vacation notices.
_DAEMON = re.compile(r"^(mailer[-_]?daemon|postmaster|mail[-_]?daemon|mdaemon)\b", re.IGNORECASE)
#: Clue headers kept from a report and from the message it quotes.
_CLUE_HEADERS = (
    "to",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "return-path",
    "message-id",
    "in-reply-to",
    "references",
    "list-unsubscribe",
    "received",
)
_MAX_DIAGNOSTIC = 500


def read_report(data: bytes) -> Report:
    """Classify one message.  Never raises on malformed input: what cannot be read is
    :attr:`Kind.UNRECOGNISED`."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    try:
        findings = _findings(msg)
    except (LookupError, ValueError, TypeError, AttributeError, UnicodeError):
        # A detector tripped over a broken MIME structure or charset.
        findings = [Finding(Kind.UNRECOGNISED)]
    return Report(
        key=message_key(msg, data),
        findings=tuple(findings) or (Finding(Kind.UNRECOGNISED),),
        clues=tuple(_clues(msg)),
    )


def message_key(msg: Message, data: bytes) -> str:
    """The report's identity for recording it once: its Message-ID, else a hash of it."""
    mid = " ".join(str(msg.get("message-id", "")).split())
    if mid:
        return mid[:300]
    normal = data.replace(b"\r\n", b"\n")
    if normal.startswith(b"From "):  # an mbox separator line is not part of the message
        normal = normal.partition(b"\n")[2]
    return "sha256:" + hashlib.sha256(normal).hexdigest()


def _findings(msg: Message) -> list[Finding]:
    feedback = _part(msg, "message/feedback-report")
    if feedback is not None:
        return _complaint(msg, feedback)
    dsn = _dsn_findings(msg)
    if dsn:
        return dsn
    # Some servers mark their bounces Auto-Submitted: auto-replied too (Exim does).
    if _is_auto_reply(msg) and not _from_daemon(msg):
        return [Finding(Kind.AUTO_REPLY)]
    return _flufl_findings(msg) or [Finding(Kind.UNRECOGNISED)]


# --------------------------------------------------------------------------- ARF


def _complaint(msg: Message, part: Message) -> list[Finding]:
    fields = _fields(part)
    ftype = fields[0].get("feedback-type", "").strip().lower() if fields else ""
    kind = Kind.COMPLAINT if ftype in _FEEDBACK_COMPLAINT else Kind.OTHER
    recipients = [_address(v) for block in fields for v in block.get_all("original-rcpt-to", [])]
    if not recipients:
        original = _original(msg)
        if original is not None:
            to = email.utils.getaddresses(original.get_all("to", []))
            recipients = [_address(addr) for _, addr in to]
    diagnostic = f"feedback-type: {ftype or 'missing'}"
    found = [Finding(kind, r, None, diagnostic) for r in dict.fromkeys(recipients) if r]
    return found or [Finding(kind, "", None, diagnostic)]


# --------------------------------------------------------------------------- DSN


def _dsn_findings(msg: Message) -> list[Finding]:
    part = _part(msg, "message/delivery-status")
    if part is None:
        return []
    blocks = _fields(part)[1:]  # the first block is about the message, the rest per recipient
    found: list[Finding] = []
    for block in blocks:
        recipient = _address(block.get("original-recipient") or block.get("final-recipient") or "")
        action = str(block.get("action", "")).strip().lower().split(" ")[0]
        diagnostic = _one_line(str(block.get("diagnostic-code", ""))) or None
        status = _status(str(block.get("status", "")), diagnostic)
        if action in ("failed", "failure", "error"):
            kind = severity(status, diagnostic, permanent=(status or "5").startswith("5"))
        elif action == "delayed":
            kind = Kind.DELAYED
        else:  # delivered, relayed, expanded
            kind = Kind.OTHER
        if all(f.recipient != recipient for f in found):  # some servers repeat the block
            found.append(Finding(kind, recipient, status, diagnostic))
    if found and not all(f.recipient for f in found if f.kind in COUNTED):
        # An X.400 or otherwise unusable recipient field: the detectors find the address.
        detected = _flufl_findings(msg)
        if detected:
            return detected
    return found


def severity(status: str | None, diagnostic: str | None, *, permanent: bool) -> Kind:
    """Hard only when the address itself is bad; any other failure is soft.

    The same rule as a refusal while sending (:func:`newsletter.delivery.policy.
    address_gone`): 5.1.x (bad mailbox, bad domain) but the sender's 5.1.7 and 5.1.8,
    and 5.2.1 (mailbox disabled), are hard; so is a bare 5.0.0 whose server said 550, 551
    or 553.  A full mailbox (5.2.2) or a policy rejection (5.7.x) says nothing about the
    address: soft.  Without a status code, the detector's verdict.
    """
    if status is None:
        return Kind.HARD if permanent else Kind.SOFT
    klass = status.partition(".")[0]
    if klass != "5":
        return Kind.SOFT if klass == "4" else Kind.OTHER
    said = _SMTP_HARD.search(diagnostic or "")
    return Kind.HARD if address_gone(status, int(said.group(0)) if said else None) else Kind.SOFT


def _status(field: str, diagnostic: str | None) -> str | None:
    """The most specific enhanced status code of the Status field and the diagnostic."""
    codes = [m.group(0) for m in _STATUS.finditer(field)]
    codes += [m.group(0) for m in _STATUS.finditer(diagnostic or "")]
    for code in codes:
        if not code.endswith(".0.0"):
            return code
    return codes[0] if codes else None


# --------------------------------------------------------------------------- other bounces


def _flufl_findings(msg: Message) -> list[Finding]:
    from flufl.bounce import all_failures

    temporary, permanent = all_failures(msg)
    if not temporary and not permanent:
        return []
    text = _text(msg)
    found = []
    for raw, is_permanent in [(a, True) for a in permanent] + [(a, False) for a in temporary]:
        recipient = _address(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
        line = _line_about(text, recipient)
        status = _status("", line or text[:2000])
        # The detectors' temporary failures are the warnings of a server still trying.
        kind = severity(status, line, permanent=True) if is_permanent else Kind.DELAYED
        found.append(Finding(kind, recipient, status, line))
    return sorted(set(found), key=lambda f: (f.recipient, f.kind))


def _line_about(text: str, address: str) -> str | None:
    """The first line that names a status code, else the one naming the address."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if _STATUS.search(ln) or _SMTP_HARD.search(ln):
            return _one_line(ln)
    for ln in lines:
        if address and address in ln.lower():
            return _one_line(ln)
    return None


# --------------------------------------------------------------------------- auto-replies


def _is_auto_reply(msg: Message) -> bool:
    auto = str(msg.get("auto-submitted", "")).strip().lower()
    if auto.startswith("auto-replied"):
        return True
    if any(msg.get(h) for h in ("x-autoreply", "x-autorespond", "x-autoresponder")):
        return True
    if str(msg.get("precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(_decoded(msg.get("subject", ""))))


def _from_daemon(msg: Message) -> bool:
    for _, addr in email.utils.getaddresses([str(msg.get("from", ""))]):
        if _DAEMON.match(addr) or _DAEMON.match(addr.partition("@")[0]):
            return True
    return bool(re.search(r"mail delivery (system|subsystem)", str(msg.get("from", "")), re.I))


# --------------------------------------------------------------------------- helpers


def _part(msg: Message, content_type: str) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _fields(part: Message) -> list[Message]:
    """The header blocks of a delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    if part.get("content-transfer-encoding", "").lower() in ("base64", "quoted-printable"):
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else text
    blocks = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [email.message_from_string(b + "\n", policy=email.policy.compat32) for b in blocks]


def _original(msg: Message) -> Message | None:
    """The returned message (or its headers) that a report carries."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        if ctype == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return email.message_from_bytes(raw, policy=email.policy.compat32)
    return None


def _clues(msg: Message) -> list[str]:
    out = [str(v) for h in _CLUE_HEADERS for v in msg.get_all(h, [])]
    original = _original(msg)
    if original is not None:
        out += [str(v) for h in _CLUE_HEADERS for v in original.get_all(h, [])]
    # Bounces that quote the returned headers as plain text (qmail, many old servers).
    text = _text(msg)
    quoted = re.compile(r"\s*(message-id|return-path|to):", re.IGNORECASE)
    out += [ln for ln in text.splitlines() if quoted.match(ln)]
    return out


def _text(msg: Message) -> str:
    """The text/plain parts of the report, decoded; the message it returns is left out."""
    chunks = []
    for part in msg.walk():
        if part.get_content_type() != "text/plain":
            continue
        raw = part.get_payload(decode=True)
        if isinstance(raw, bytes):
            chunks.append(raw.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(chunks)[:100_000]


def _address(value: str) -> str:
    """``rfc822; <Ada@XN--BCHER-KVA.example>`` -> ``ada@bücher.example``, the stored form of
    an address; "" when there is none."""
    value = value.strip()
    kind, sep, rest = value.partition(";")
    if sep and " " not in kind.strip():
        if kind.strip().lower() != "rfc822":
            return ""  # x400 and other address types
        value = rest
    addr = email.utils.parseaddr(value.strip())[1] or value.strip().strip("<>")
    if "@" not in addr or " " in addr:
        return ""
    from newsletter.subscribers import BadAddress, normalise_email

    try:
        return normalise_email(addr)  # as subscribers are stored (a Unicode domain too)
    except BadAddress:
        return addr.lower()


def _decoded(value: object) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (LookupError, ValueError, UnicodeError):
        return str(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:_MAX_DIAGNOSTIC]
