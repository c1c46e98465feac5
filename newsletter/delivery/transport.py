"""Transports: the one small interface that hands a message to the world.

``send(sender, recipient, data, before_data)`` returns the server's reply, raises
:class:`~newsletter.errors.SendError` for a failure of this message (transient or
permanent, as :func:`newsletter.delivery.policy.classify` judges a refusal), or
:class:`TransportUnavailable` when nothing can be sent at all (server unreachable, login
refused): the run stops and the ledger stays resumable.  ``before_data`` is called at the
last moment before the message leaves, so the ledger can mark it in flight.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from newsletter.config import Settings, check_smtp_login
from newsletter.delivery.message import wire_address
from newsletter.delivery.policy import classify
from newsletter.errors import DeliveryError, SendError, SendStage
from newsletter.subscribers import BadAddress

log = logging.getLogger(__name__)


class TransportUnavailable(DeliveryError):
    """Nothing can be sent: the server cannot be reached or refuses the login."""


class Transport(Protocol):
    def open(self) -> None: ...

    def send(
        self, sender: str, recipient: str, data: bytes, before_data: Callable[[], None]
    ) -> str: ...

    def close(self) -> None: ...


class RateLimiter:
    """At most ``rate`` acquisitions per second over all threads (0: unlimited)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock = clock

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


# --------------------------------------------------------------------------- outbox


class OutboxTransport:
    """Writes each message as an .eml file: the offline default, and a record to inspect.

    The file name is derived from the recipient, so sending the same message again
    replaces the file instead of adding a copy.
    """

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TransportUnavailable(
                f"cannot create the outbox folder {self.folder}: {e.strerror}"
            ) from e

    def send(
        self, sender: str, recipient: str, data: bytes, before_data: Callable[[], None]
    ) -> str:
        safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", recipient)
        path = self.folder / f"{safe}.eml"
        tmp = path.with_suffix(f".eml.{os.getpid()}.{threading.get_ident()}.tmp")
        before_data()
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise TransportUnavailable(
                f"cannot write to the outbox {self.folder}: {e.strerror}"
            ) from e
        return f"250 written to {path}"

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- SMTP


class SmtpTransport:
    """One SMTP connection, reused for up to ``max_per_connection`` messages."""

    def __init__(self, settings: Settings, *, ssl_context: ssl.SSLContext | None = None):
        self.cfg = settings.smtp
        self.password = settings.secrets.smtp_password
        self.ssl_context = ssl_context or _ssl_context(self.cfg.ca_file)
        self.conn: smtplib.SMTP | None = None
        self.sent_on_conn = 0

    def _where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def open(self) -> None:
        self._connect_or_explain()

    def _connect(self) -> None:
        self.close()
        cfg = self.cfg
        conn: smtplib.SMTP | None = None
        try:
            if cfg.tls == "tls":
                conn = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout, context=self.ssl_context
                )
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            self._greet(conn)
        except BaseException:
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()
            raise
        self.conn = conn
        self.sent_on_conn = 0

    def _greet(self, conn: smtplib.SMTP) -> None:
        """EHLO, STARTTLS and login on a fresh connection, failures named for the operator."""
        cfg = self.cfg
        try:
            conn.ehlo()
            if cfg.tls == "starttls":
                if not conn.has_extn("starttls"):
                    raise TransportUnavailable(
                        f"SMTP server {self._where()} does not offer STARTTLS; "
                        'set smtp.tls = "tls" or "none" if that is intended'
                    )
                conn.starttls(context=self.ssl_context)
                conn.ehlo()
            if cfg.username:
                conn.login(cfg.username, self.password)
        except smtplib.SMTPAuthenticationError as e:
            raise TransportUnavailable(
                f"SMTP server {self._where()} refused the login for {cfg.username!r}: "
                f"{e.smtp_code} {_text(e.smtp_error)}"
            ) from e
        except smtplib.SMTPNotSupportedError as e:
            raise TransportUnavailable(f"SMTP server {self._where()}: {e}") from e
        except smtplib.SMTPResponseException as e:
            raise SendError(
                f"{e.smtp_code} {_text(e.smtp_error)}", code=e.smtp_code, stage="connect"
            ) from e

    def _connect_or_explain(self) -> None:
        """Connect; network failures become a transient SendError or TransportUnavailable."""
        try:
            self._connect()
        except socket.gaierror as e:
            raise TransportUnavailable(
                f"cannot resolve SMTP host {self.cfg.host!r}: {e.strerror}"
            ) from e
        except ssl.SSLCertVerificationError as e:
            raise TransportUnavailable(
                f"TLS with {self._where()} failed: certificate verify failed: "
                f"{e.verify_message}; set smtp.ca_file if the server uses a private CA"
            ) from e
        except ssl.SSLError as e:
            raise TransportUnavailable(f"TLS with {self._where()} failed: {e.reason or e}") from e
        except smtplib.SMTPConnectError as e:  # a refusal in the greeting (421: too busy)
            raise SendError(
                f"cannot connect to {self._where()}: {e.smtp_code} {_text(e.smtp_error)}",
                code=e.smtp_code,
                stage="connect",
            ) from e
        except smtplib.SMTPServerDisconnected as e:
            raise SendError(f"cannot connect to {self._where()}: {e}", stage="connect") from e
        except (TimeoutError, OSError) as e:
            raise SendError(
                f"cannot connect to {self._where()}: {e.strerror or e}", stage="connect"
            ) from e

    def send(
        self, sender: str, recipient: str, data: bytes, before_data: Callable[[], None]
    ) -> str:
        try:
            rcpt, utf8 = wire_address(recipient)
        except BadAddress as e:  # a domain with no IDNA 2008 form
            raise SendError(str(e), permanent=True, stage="rcpt") from e
        if self.conn is None or self.sent_on_conn >= self.cfg.max_per_connection:
            self._connect_or_explain()
        conn = self.conn
        assert conn is not None
        options: list[str] = []
        if utf8:  # a non-ASCII local part: only SMTPUTF8 can carry it
            if not conn.has_extn("smtputf8"):
                raise SendError(
                    f"the address has a non-ASCII local part and the SMTP server "
                    f"{self._where()} does not offer SMTPUTF8",
                    permanent=True,
                    stage="rcpt",
                )
            options = ["SMTPUTF8"] + (["BODY=8BITMIME"] if conn.has_extn("8bitmime") else [])
        stage: SendStage = "mail"
        try:
            code, resp = conn.mail(sender, options)
            if code != 250:
                raise self._refused(code, resp, stage)
            stage = "rcpt"
            code, resp = conn.rcpt(rcpt)
            if code not in (250, 251):
                raise self._refused(code, resp, stage)
            stage = "data"
            try:
                before_data()
            except Exception:  # the ledger says not to send: end the SMTP transaction
                self._reset()
                raise
            code, resp = conn.data(data)
            if code != 250:  # smtplib returns, not raises, a refusal of the message itself
                raise self._refused(code, resp, stage)
        except smtplib.SMTPDataError as e:
            self._reset()
            raise classify(e.smtp_code, _text(e.smtp_error), "data") from e
        except smtplib.SMTPResponseException as e:
            self._drop()
            raise classify(e.smtp_code, _text(e.smtp_error), stage) from e
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            self._drop()
            raise SendError(f"connection lost during {stage.upper()}: {e}", stage=stage) from e
        except UnicodeEncodeError as e:  # the sender's address (list.from_address)
            self._reset()
            raise SendError(
                f"cannot send from {sender!r}: not ASCII", permanent=True, stage=stage
            ) from e
        self.sent_on_conn += 1
        return f"{code} {_text(resp)}"

    def _refused(self, code: int, resp: bytes, stage: SendStage) -> SendError:
        """The error for a refusal; the connection is reset, or dropped after a 421."""
        if code == 421:  # the server is closing the connection
            self._drop()
        else:
            self._reset()
        return classify(code, _text(resp), stage)

    def _reset(self) -> None:
        try:
            if self.conn is not None:
                self.conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()
        self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self.conn.quit()
            self._drop()


def _text(resp: bytes | str) -> str:
    s = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return " ".join(s.split())


def _ssl_context(ca_file: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            raise TransportUnavailable(f"smtp.ca_file {ca_file}: cannot load: {e}") from e
    return ctx


def make_transport_factory(
    settings: Settings, outbox_dir: str | None = None
) -> Callable[[], Transport]:
    """A function returning a fresh transport, one per parallel sender; ConfigError for
    an SMTP login without its password."""
    if settings.delivery.transport == "smtp":
        check_smtp_login(settings)
        ctx = _ssl_context(settings.smtp.ca_file)
        return lambda: SmtpTransport(settings, ssl_context=ctx)
    folder = outbox_dir or settings.delivery.outbox_dir
    return lambda: OutboxTransport(folder)
