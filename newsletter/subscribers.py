"""Subscriber addresses: validation and normalisation, CSV import and export (pure)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from newsletter.errors import NewsletterError
from newsletter.models import Edition, Subscriber
from newsletter.personal.interests import SubscriberInterests
from newsletter.personal.stated import BadInterest, InterestsChange, change, join, split


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
    #: from the optional interest columns; None: the file has none (or its cells are empty)
    interests: InterestsChange | None = None
    cadence: Edition | None = None  # from the optional cadence column; None: not given


@dataclass(frozen=True, slots=True)
class ImportProblem:
    line: int
    reason: str


class BadCsv(NewsletterError):
    """A file that cannot be read as a CSV list of subscribers; nothing is imported."""

    exit_code = 2


#: Largest CSV file an import reads (a list of a million subscribers is some 50 MB).
MAX_CSV_BYTES = 100_000_000
#: A spreadsheet evaluates a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: C0 controls other than tab, LF and CR: in a "CSV" file, the mark of a binary one.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),  # little-endian; the codec reads the mark itself
    (b"\xfe\xff", "utf-16"),
)


def decode_csv(data: bytes, encoding: str | None = None) -> str:
    """The text of a CSV file: UTF-8 (or what its byte-order mark says), else ``encoding``.

    Not guessed: a wrong guess imports wrong names without a word.  A file that is not
    text in that encoding is one :class:`BadCsv` naming the line and the byte.
    """
    if encoding is None:
        encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), None)
        if encoding is None and b"\x00" in data:
            at = data.index(b"\x00")
            raise BadCsv(
                f"not a text file: a NUL byte at byte {at} (line {_line_at(data, at)}); if it "
                "is UTF-16 without a byte-order mark, give --encoding utf-16-le (or utf-16-be)"
            )
    try:
        text = data.decode(encoding or "utf-8")
    except LookupError:
        raise BadCsv(
            f"unknown encoding {encoding!r}; e.g. utf-8, latin-1, cp1252, utf-16"
        ) from None
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 1].hex()
        line = _line_at(data, e.start)
        if encoding is None:
            raise BadCsv(
                f"line {line}: byte 0x{bad} (at byte {e.start}) is not UTF-8; save the file "
                "as UTF-8, or give its encoding, e.g. --encoding latin-1 or cp1252"
            ) from None
        raise BadCsv(
            f"line {line}: byte 0x{bad} (at byte {e.start}) is not valid {encoding}"
        ) from None
    control = _CONTROL.search(text)
    if control:
        raise BadCsv(
            f"not a text file: control character U+{ord(control.group()):04X} on line "
            f"{text.count(chr(10), 0, control.start()) + 1}"
        )
    return text.removeprefix("\ufeff")


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_csv(text: str) -> tuple[list[ImportRow], list[ImportProblem]]:
    """Rows of a CSV with a header naming an ``email`` column (``name`` and ``cadence``,
    daily or weekly, optional; an empty cadence leaves it as it is).

    Optional interest columns: ``keywords``, ``authors`` and ``categories`` (values
    separated by ``;``) and ``only_for_you`` (yes or no). A cell with a value replaces that
    part of the subscriber's interests; an empty one leaves it as it is.

    Commas separate fields, or semicolons or tabs if the header has those and no comma
    (what spreadsheets write in many locales).  Bad rows are reported by line number and
    the good ones returned; a file whose rows cannot be told apart (a quote left open,
    which would swallow the lines after it into one field) is a :class:`BadCsv`.  A cell
    that :func:`write_csv` guarded against formulas is read back as it was.
    """
    problems: list[ImportProblem] = []
    rows: list[ImportRow] = []
    first = text.partition("\n")[0]
    delimiter = next((d for d in ",;\t" if d in first), ",")
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    records = _records(reader)
    try:
        _, header = next(records)
    except StopIteration:
        raise BadCsv("the CSV file is empty; expected a header row with an email column") from None
    cols = [h.strip().lower() for h in header]
    if "email" not in cols:
        raise BadCsv(
            f"the CSV header has no 'email' column (found: {', '.join(header) or 'nothing'})"
        )
    ei = cols.index("email")
    ni = cols.index("name") if "name" in cols else None
    interest_columns = {c: cols.index(c) for c in _INTEREST_COLUMNS if c in cols}
    ci = cols.index("cadence") if "cadence" in cols else None
    seen: set[str] = set()
    for line, record in records:
        if not any(c.strip() for c in record):
            continue
        if len(record) <= ei:
            problems.append(ImportProblem(line, "no email value"))
            continue
        try:
            email = normalise_email(_unguard(record[ei]))
        except BadAddress as e:
            problems.append(ImportProblem(line, str(e)))
            continue
        if email in seen:
            problems.append(ImportProblem(line, f"{email}: repeats an earlier row"))
            continue
        cell = record[ci].strip().lower() if ci is not None and len(record) > ci else ""
        if cell and cell not in {e.value for e in Edition}:
            problems.append(
                ImportProblem(line, f"{email}: cadence is {cell!r}; expected daily or weekly")
            )
            continue
        seen.add(email)
        name = clean_name(_unguard(record[ni])) if ni is not None and len(record) > ni else ""
        cells = {c: _unguard(record[i]) for c, i in interest_columns.items() if len(record) > i}
        try:
            interests = _interests(cells)
        except BadInterest as e:
            problems.append(ImportProblem(line, f"{email}: {e}"))
            continue
        rows.append(ImportRow(line, email, name, interests, Edition(cell) if cell else None))
    return rows, problems


_INTEREST_COLUMNS = ("keywords", "authors", "categories", "only_for_you")
_YES = ("yes", "true", "1", "y")
_NO = ("no", "false", "0", "n")


def _interests(cells: Mapping[str, str]) -> InterestsChange | None:
    """The change the interest cells of a row ask for (non-empty cells only)."""
    lists = {c: split(cells[c]) for c in ("keywords", "authors", "categories") if c in cells}
    flag = cells.get("only_for_you", "").strip().lower()
    if flag and flag not in _YES + _NO:
        raise BadInterest(f"only_for_you is {flag!r}; expected yes or no (or nothing)")
    found = change(
        keywords=lists.get("keywords") or None,
        authors=lists.get("authors") or None,
        categories=lists.get("categories") or None,
        only_for_you=(flag in _YES) if flag else None,
    )
    return None if found.is_empty else found


def _records(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each record; :class:`BadCsv` where the quoting breaks.

    No field of a subscriber list holds a line break, so a record running over several
    lines is a quote left open, not data: it is refused rather than imported as one row.
    """
    last = 0
    while True:
        start = last + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            where = f"line {start}" if "end of data" in str(e) else f"line {reader.line_num}"
            raise BadCsv(
                f"{where}: not valid CSV ({e}; a quote left open?); nothing was imported"
            ) from None
        last = reader.line_num
        if last > start and any("\n" in f or "\r" in f for f in record):
            raise BadCsv(
                f"lines {start}-{last} are one record: a quote opened on line {start} closes "
                f"only on line {last} (a quote left open?); nothing was imported"
            )
        yield start, record


def _guard(cell: str) -> str:
    """A cell a spreadsheet will not run as a formula: ``'`` before a risky first
    character (and before a leading ``'``, so that :func:`_unguard` can tell)."""
    return "'" + cell if cell.startswith((*_FORMULA_START, "'")) else cell


def _unguard(cell: str) -> str:
    """The cell :func:`_guard` was given; any other cell as it is."""
    if cell.startswith("'") and cell[1:].startswith((*_FORMULA_START, "'")):
        return cell[1:]
    return cell


def write_csv(
    subscribers: Iterable[Subscriber], interests: Mapping[int, SubscriberInterests] | None = None
) -> str:
    """The subscribers as CSV for a spreadsheet or :func:`read_csv`, with their stated
    interests (``interests``, by subscriber id; libraries are not written); text cells
    guarded."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        ["email", "name", "status", "created_at", "unsubscribed_at", "cadence", *_INTEREST_COLUMNS]
    )
    for s in subscribers:
        mine = (interests or {}).get(s.id, SubscriberInterests())
        stated = mine.interests
        w.writerow(
            [
                _guard(s.email),
                _guard(s.name),
                s.status.value,
                s.created_at.isoformat(),
                s.unsubscribed_at.isoformat() if s.unsubscribed_at else "",
                s.cadence.value,
                _guard(join(stated.keywords)),
                _guard(join(stated.authors)),
                _guard(join(stated.categories)),
                "yes" if mine.only_for_you else "",
            ]
        )
    return out.getvalue()
