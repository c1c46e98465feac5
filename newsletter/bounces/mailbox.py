"""The bounce mailbox behind one small interface: IMAP over TLS, a local Maildir or mbox.

``messages()`` yields what is in the folder, one message at a time (a connection lost
half-way loses only what was not read yet); ``processed(item)`` moves one message to the
processed folder and is called only after it was recorded.  Nothing is ever deleted
before that: a message recorded but not moved (a crash, a dropped connection) is read
again next time, and recording it again changes nothing.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox as stdlib_mailbox
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from newsletter.config import BounceSettings
from newsletter.errors import NewsletterError


class MailboxError(NewsletterError):
    """The bounce mailbox could not be opened or read; names it and the reason."""


@dataclass(frozen=True, slots=True)
class MailItem:
    ref: str  # the mailbox's own id: an IMAP UID, a Maildir or mbox key
    data: bytes


class Mailbox(Protocol):
    def messages(self) -> Iterator[MailItem]: ...

    def processed(self, item: MailItem) -> None: ...

    def close(self) -> None: ...


def open_mailbox(
    settings: BounceSettings, password: str, *, ssl_context: ssl.SSLContext | None = None
) -> Mailbox:
    """The configured mailbox, opened (``bounces.kind``)."""
    if settings.kind == "imap":
        return ImapMailbox(settings, password, ssl_context=ssl_context)
    if settings.kind == "maildir":
        return MaildirMailbox(Path(settings.url), settings.processed_folder)
    if settings.kind == "mbox":
        return MboxMailbox(Path(settings.url), settings.processed_folder)
    raise MailboxError("no bounce mailbox configured: set bounces.kind and bounces.url")


# --------------------------------------------------------------------------- IMAP


def _quote(name: str) -> str:
    """An IMAP folder name as a quoted string (imaplib sends arguments as they are)."""
    if not name.isascii() or any(c in name for c in "\r\n"):
        raise MailboxError(f"IMAP folder name {name!r}: only ASCII names are supported")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapMailbox:
    """A folder on an IMAP server, over TLS only: imaps://, or imap:// with STARTTLS."""

    def __init__(
        self, settings: BounceSettings, password: str, *, ssl_context: ssl.SSLContext | None
    ):
        m = re.match(r"^(imaps?)://([^/:]+)(?::(\d+))?/?$", settings.url)
        if not m:
            raise MailboxError(f"bounces.url: expected imaps://host[:port], got {settings.url!r}")
        scheme, self.host = m.group(1), m.group(2)
        self.port = int(m.group(3) or (993 if scheme == "imaps" else 143))
        self.settings = settings
        self.where = f"IMAP {settings.username}@{self.host}:{self.port}"
        if not settings.username or not password:
            raise MailboxError(
                f"{self.where}: set bounces.username and NEWSLETTER_BOUNCES_PASSWORD"
            )
        ctx = ssl_context or ssl.create_default_context(cafile=settings.ca_file or None)
        try:
            if scheme == "imaps":
                self.conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    self.host, self.port, ssl_context=ctx, timeout=settings.timeout
                )
            else:
                self.conn = imaplib.IMAP4(self.host, self.port, timeout=settings.timeout)
        except OSError as e:
            raise MailboxError(f"{self.where}: cannot connect: {e}") from e
        try:
            self._start(password, ctx, starttls=scheme == "imap")
        except BaseException:
            self.conn.shutdown()
            raise

    def _start(self, password: str, ctx: ssl.SSLContext, *, starttls: bool) -> None:
        """Log in, select the folder, make sure the processed folder exists."""
        settings = self.settings
        try:
            if starttls:
                self.conn.starttls(ssl_context=ctx)
            self.conn.login(settings.username, password)
        except imaplib.IMAP4.error as e:
            raise MailboxError(f"{self.where}: {_reason(e)}") from e
        except OSError as e:
            raise MailboxError(f"{self.where}: cannot connect: {e}") from e
        self._check(self.conn.select(_quote(settings.folder)), f"no folder {settings.folder!r}")
        self.can_move = "MOVE" in self.conn.capabilities
        self.have_folder = False  # the processed folder, made sure of on the first move

    def _check(self, reply: tuple[str, Any], what: str) -> list[Any]:
        typ, data = reply
        if typ != "OK":
            raise MailboxError(f"{self.where}: {what}: {_reason(data)}")
        return data

    def messages(self) -> Iterator[MailItem]:
        try:
            data = self._check(self.conn.uid("SEARCH", "UNDELETED"), "search failed")
            uids = data[0].split() if data and isinstance(data[0], bytes) else []
            for uid in uids:
                fetched = self._check(
                    self.conn.uid("FETCH", uid.decode(), "(BODY.PEEK[])"), "fetch failed"
                )
                body = next((p[1] for p in fetched if isinstance(p, tuple)), None)
                if isinstance(body, bytes):  # None: expunged by someone else meanwhile
                    yield MailItem(uid.decode(), body)
        except (imaplib.IMAP4.error, OSError) as e:
            raise self._lost(e) from e

    def processed(self, item: MailItem) -> None:
        folder = _quote(self.settings.processed_folder)
        try:
            if not self.have_folder:
                typ, data = self.conn.list('""', folder)
                if typ != "OK" or not [d for d in data if d]:
                    self._check(self.conn.create(folder), f"cannot create folder {folder}")
                self.have_folder = True
            if self.can_move:
                self._check(self.conn.uid("MOVE", item.ref, folder), "move failed")
                return
            self._check(self.conn.uid("COPY", item.ref, folder), "copy failed")
            self._check(
                self.conn.uid("STORE", item.ref, "+FLAGS.SILENT", r"(\Deleted)"), "store failed"
            )
            if "UIDPLUS" in self.conn.capabilities:
                self._check(self.conn.uid("EXPUNGE", item.ref), "expunge failed")
            else:
                self._check(self.conn.expunge(), "expunge failed")
        except (imaplib.IMAP4.error, OSError) as e:
            raise self._lost(e) from e

    def _lost(self, e: Exception) -> MailboxError:
        if isinstance(e, imaplib.IMAP4.abort | OSError):
            return MailboxError(f"{self.where}: the connection was lost: {e}")
        return MailboxError(f"{self.where}: {_reason(e)}")

    def close(self) -> None:
        # Already gone is fine: nothing is left half-done on our side.  (A failed LOGOUT
        # leaves imaplib's socket open.)
        try:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                self.conn.logout()
        finally:
            with contextlib.suppress(OSError):
                self.conn.shutdown()


def _reason(data: object) -> str:
    if isinstance(data, list):
        data = b" ".join(d for d in data if isinstance(d, bytes))
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


# --------------------------------------------------------------------------- local files


class MaildirMailbox:
    """A local Maildir; processed messages move into its subfolder (Maildir++ ``.Name``)."""

    def __init__(self, path: Path, processed_folder: str):
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise MailboxError(f"{path}: not a Maildir (no cur/ and new/ folders)")
        self.box = stdlib_mailbox.Maildir(path, factory=None, create=False)
        self.processed_folder = processed_folder
        self.done: stdlib_mailbox.Maildir | None = None  # opened on the first move

    def messages(self) -> Iterator[MailItem]:
        for key in sorted(self.box.iterkeys()):
            try:
                yield MailItem(key, self.box.get_bytes(key))
            except KeyError:  # removed by someone else meanwhile
                continue

    def processed(self, item: MailItem) -> None:
        if self.done is None:
            try:
                self.done = self.box.get_folder(self.processed_folder)
            except stdlib_mailbox.NoSuchMailboxError:
                self.done = self.box.add_folder(self.processed_folder)
        self.done.add(self.box.get_message(item.ref))
        self.box.discard(item.ref)

    def close(self) -> None:
        self.box.close()


class MboxMailbox:
    """A local mbox file, locked while it is read; processed messages are appended to the
    mbox ``processed_folder`` beside it and removed from this one when it is closed."""

    def __init__(self, path: Path, processed_folder: str):
        if not path.is_file():
            raise MailboxError(f"{path}: no such mbox file")
        self.box = stdlib_mailbox.mbox(path, create=False)
        self._keys: dict[str, Any] = {}
        self.done_path = path.parent / processed_folder
        self.done: stdlib_mailbox.mbox | None = None  # opened on the first move
        try:
            self.box.lock()
        except stdlib_mailbox.ExternalClashError as e:
            self.box.close()
            raise MailboxError(f"{path}: locked by another program: {e}") from e

    def messages(self) -> Iterator[MailItem]:
        self._keys = {str(key): key for key in self.box.iterkeys()}  # ints, whatever typeshed says
        for ref, key in self._keys.items():
            yield MailItem(ref, self.box.get_bytes(key))

    def processed(self, item: MailItem) -> None:
        key = self._keys[item.ref]
        if self.done is None:
            self.done = stdlib_mailbox.mbox(self.done_path, create=True)
            try:
                self.done.lock()
            except stdlib_mailbox.ExternalClashError as e:
                self.done.close()
                self.done = None
                raise MailboxError(f"{self.done_path}: locked by another program: {e}") from e
        self.done.add(self.box.get_message(key))
        self.done.flush()  # in the processed mbox before it leaves this one
        self.box.discard(key)

    def close(self) -> None:
        try:
            self.box.flush()
        finally:
            self.box.unlock()
            self.box.close()
            if self.done is not None:
                self.done.unlock()
                self.done.close()
