"""Subscriber addresses: validation and normalisation, CSV import and export (pure)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from newsletter.errors import NewsletterError
from newsletter.models import Subscriber


class BadAddress(NewsletterError):
    """An email address that cannot be used; the message says why."""


def normalise_email(raw: str) -> str:
    """The stored form of an address; :class:`BadAddress` (saying why) if it is unusable.

    email-validator checks the syntax (no DNS look-up): IDNA 2008 / UTS 46 for the domain,
    so ``straße.de`` stays ``straße.de`` (IDNA 2003 turned it into another domain,
    ``strasse.de``), and invisible or unsafe characters (zero-width space, soft hyphen,
    bidi controls) are refused rather than silently dropped.  Quoted local parts and
    IP-literal domains are refused; non-ASCII local parts are allowed (they need a server
    that offers SMTPUTF8).  The stored form is the validator's, with the local part
    lower-cased as it always was here (every mailbox provider in use treats it so, and it
    keeps ``Ann@x.org`` and ``ann@x.org`` one subscriber); the domain is kept in Unicode:
    :func:`ascii_email` gives the A-label form the SMTP envelope needs.
    """
    addr = raw.strip()
    if not addr:
        raise BadAddress("empty address")
    checked = _validated(addr)
    lowered = f"{checked.local_part.lower()}@{checked.domain}"
    if lowered != checked.normalized:
        # Lower-casing can leave a local part that is not in normal form ("İ").
        checked = _validated(lowered, shown=addr)
    return str(checked.normalized)


def ascii_email(address: str) -> str:
    """``address`` (as stored) with its domain in IDNA A-labels (``xn--...``): the form the
    SMTP envelope and the To header take.  The local part is left as it is: if it is not
    ASCII, the message needs a server that offers SMTPUTF8."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address  # already the A-label form (and rows stored before IDNA 2008 are)
    return f"{local}@{_validated(address).ascii_domain}"


def _validated(addr: str, *, shown: str | None = None) -> Any:
    import email_validator

    try:
        return email_validator.validate_email(
            addr, check_deliverability=False, allow_quoted_local=False
        )
    except email_validator.EmailNotValidError as e:
        raise BadAddress(f"{shown or addr!r}: {e}") from None


def clean_name(raw: str) -> str:
    """A display name with control characters and line breaks removed."""
    return " ".join("".join(c if c.isprintable() else " " for c in raw).split())[:200]


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class ImportProblem:
    line: int
    reason: str


def read_csv(text: str) -> tuple[list[ImportRow], list[ImportProblem]]:
    """Rows of a CSV with a header naming an ``email`` column (``name`` optional).

    Bad rows are reported by line number; the good ones are returned to be imported.
    """
    problems: list[ImportProblem] = []
    rows: list[ImportRow] = []
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        raise BadAddress(
            "the CSV file is empty; expected a header row with an email column"
        ) from None
    cols = [h.strip().lower() for h in header]
    if "email" not in cols:
        raise BadAddress(
            f"the CSV header has no 'email' column (found: {', '.join(header) or 'nothing'})"
        )
    ei = cols.index("email")
    ni = cols.index("name") if "name" in cols else None
    seen: set[str] = set()
    try:
        for record in reader:
            line = reader.line_num
            if not any(c.strip() for c in record):
                continue
            if len(record) <= ei:
                problems.append(ImportProblem(line, "no email value"))
                continue
            try:
                email = normalise_email(record[ei])
            except BadAddress as e:
                problems.append(ImportProblem(line, str(e)))
                continue
            if email in seen:
                problems.append(ImportProblem(line, f"{email}: repeats an earlier row"))
                continue
            seen.add(email)
            name = clean_name(record[ni]) if ni is not None and len(record) > ni else ""
            rows.append(ImportRow(line, email, name))
    except csv.Error as e:
        problems.append(ImportProblem(reader.line_num, f"unreadable CSV: {e}"))
    return rows, problems


def write_csv(subscribers: Iterable[Subscriber]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["email", "name", "status", "created_at", "unsubscribed_at"])
    for s in subscribers:
        w.writerow(
            [
                s.email,
                s.name,
                s.status.value,
                s.created_at.isoformat(),
                s.unsubscribed_at.isoformat() if s.unsubscribed_at else "",
            ]
        )
    return out.getvalue()
