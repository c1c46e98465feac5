"""Subscriber addresses: validation and normalisation, CSV import and export (pure)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

from newsletter.errors import NewsletterError
from newsletter.models import Subscriber


class BadAddress(NewsletterError):
    """An email address that cannot be used; the message says why."""


# Deliberately simple: the dot-atom form of RFC 5322 that real lists use.  Quoted local
# parts and IP-literal domains are refused rather than half-supported.
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalise_email(raw: str) -> str:
    """Trimmed, lower-cased, domain in IDNA; :class:`BadAddress` if unusable."""
    addr = raw.strip()
    if not addr:
        raise BadAddress("empty address")
    if any(c in addr for c in '\r\n\t\0 <>,;"()[]\\'):
        raise BadAddress(f"{addr!r}: contains a character not allowed in an address")
    if addr.count("@") != 1:
        raise BadAddress(f"{addr!r}: expected exactly one @")
    local, domain = addr.rsplit("@", 1)
    if not local or len(local) > 64 or not _LOCAL.match(local):
        raise BadAddress(f"{addr!r}: the part before @ is not valid")
    try:
        domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise BadAddress(f"{addr!r}: the domain is not valid") from None
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(x) for x in labels) or labels[-1].isdigit():
        raise BadAddress(f"{addr!r}: the domain is not valid")
    out = f"{local.lower()}@{domain}"
    if len(out) > 254:
        raise BadAddress(f"{addr!r}: longer than 254 characters")
    return out


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
