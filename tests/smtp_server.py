"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 with scripted faults.

Used by the delivery tests and, run as ``python tests/smtp_server.py``, as a sink in a separate
process for the crash tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def free_port() -> int:
    """aiosmtpd's Controller cannot take port 0: find a free port first."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    session: int  # which connection delivered it

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class Faults:
    """Scripted misbehaviour.  ``rcpt`` / ``data`` map an address to a list of replies played
    in order on successive attempts (``None`` = accept); ``"DISCONNECT"`` drops the
    connection in DATA after reading the message (it may count as received or not, see
    ``deliver_before_disconnect``)."""

    rcpt: dict[str, list[str | None]] = field(default_factory=dict)
    data: dict[str, list[str | None]] = field(default_factory=dict)
    mail: list[str | None] = field(default_factory=list)  # replies to successive MAIL FROMs
    delay: float = 0.0  # seconds added to every reply to MAIL, RCPT and DATA
    deliver_before_disconnect: bool = False


class Handler:
    def __init__(self, faults: Faults | None = None):
        self.faults = faults or Faults()
        self.received: list[Received] = []
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.sessions = 0
        self._session_ids: dict[int, int] = {}
        self.rcpt_order: list[str] = []  # every RCPT TO, in the order the server saw them
        self.lock = threading.Lock()

    def _session(self, session: Any) -> int:
        with self.lock:
            key = id(session)
            if key not in self._session_ids:
                self.sessions += 1
                self._session_ids[key] = self.sessions
            return self._session_ids[key]

    def _play(self, script: dict[str, list[str | None]], stage: str, addr: str) -> str | None:
        with self.lock:
            n = self.attempts[(stage, addr)]
            self.attempts[(stage, addr)] += 1
        replies = script.get(addr)
        if not replies:
            return None
        return replies[min(n, len(replies) - 1)]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        self._session(session)
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        with self.lock:
            n = self.attempts[("mail", "")]
            self.attempts[("mail", "")] += 1
        if n < len(self.faults.mail) and self.faults.mail[n]:
            return self.faults.mail[n]  # type: ignore[return-value]
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        with self.lock:
            self.rcpt_order.append(address)
        reply = self._play(self.faults.rcpt, "rcpt", address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        reply = self._play(self.faults.data, "data", rcpt)
        record = Received(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            envelope.original_content or envelope.content,
            self._session(session),
        )
        if reply == "DISCONNECT":
            if self.faults.deliver_before_disconnect:
                with self.lock:
                    self.received.append(record)
            server.transport.close()
            return "421 closing"  # never reaches the client
        if reply:
            return reply
        with self.lock:
            self.received.append(record)
        return "250 2.0.0 Message accepted"

    # ------------------------------------------------------------------ queries

    def by_rcpt(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = defaultdict(list)
        for r in self.received:
            for to in r.rcpt_tos:
                out[to].append(r)
        return out


class _LimitedController(Controller):
    """A server that greets connections beyond ``max_sessions`` at once with a 421 and
    closes them, as relays that cap concurrent connections do."""

    def __init__(self, handler: Any, max_sessions: int, **kwargs: Any):
        super().__init__(handler, **kwargs)
        self.max_sessions = max_sessions
        self.active = 0

    def factory(self) -> SMTP:
        controller = self

        class Limited(SMTP):
            async def _handle_client(self) -> None:
                if controller.active >= controller.max_sessions:
                    await self.push("421 4.7.0 Too many concurrent connections")
                    assert self.transport is not None
                    self.transport.close()
                    return
                controller.active += 1
                try:
                    await super()._handle_client()
                finally:
                    controller.active -= 1

        return Limited(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    """aiosmtpd on 127.0.0.1 in a thread; ``tls`` is None, "starttls" or "tls" (implicit);
    ``max_sessions``: refuse connections beyond that many at once; ``smtputf8``: offer
    SMTPUTF8 (RFC 6531, internationalised addresses)."""

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        tls: str | None = None,
        cert: Any = None,  # a trustme LeafCert for TLS
        users: dict[str, str] | None = None,
        max_sessions: int | None = None,
        smtputf8: bool = False,
    ):
        self.handler = handler or Handler()
        self.port = free_port()
        self.tls = tls
        self.users = users
        kwargs: dict[str, Any] = {"ready_timeout": 10, "enable_SMTPUTF8": smtputf8}
        ctx = None
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(ctx)
        if tls == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        elif tls == "tls":
            kwargs.update(ssl_context=ctx)
        if users is not None:
            # aiosmtpd cannot tell that an implicit-TLS session is encrypted, so it would hide
            # AUTH there if it were told to require TLS for it.
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=tls == "starttls",
            )
        if max_sessions is None:
            self.controller = Controller(
                self.handler, hostname="127.0.0.1", port=self.port, **kwargs
            )
        else:
            self.controller = _LimitedController(
                self.handler, max_sessions, hostname="127.0.0.1", port=self.port, **kwargs
            )

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self.users is not None:
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(user) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def config(self, **extra: Any) -> str:
        """The [delivery] and [smtp] tables pointing at this server."""
        lines = [
            "[delivery]",
            'transport = "smtp"',
            "[smtp]",
            'host = "127.0.0.1"',
            f"port = {self.port}",
            f'tls = "{self.tls or "none"}"',
            "timeout = 5",
        ]
        lines += [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in extra.items()]
        return "\n".join(lines).replace("'", '"') + "\n"


class SinkProcess:
    """``python tests/smtp_server.py PORT DELAY`` in its own process; collects its lines.

    What reached the "world" is then known independently of the sender and its ledger,
    and a sender killed with SIGKILL cannot take the server down with it.
    """

    def __init__(self, delay: float = 0.0, keep: Any = None):
        """``keep``: a folder where the sink writes each message it accepts, numbered."""
        import subprocess
        import sys
        from pathlib import Path

        self.port = free_port()
        self.lines: list[tuple[str, str]] = []  # (recipient, Message-ID) in arrival order
        self.arrivals: list[float] = []  # time.monotonic() each line was read, in order
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(self.port), str(delay)]
            + ([str(keep)] if keep is not None else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(30):
            self.stop()
            raise RuntimeError("the SMTP sink did not say ready within 30 s")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line == "ready":
                self._ready.set()
            elif line:
                rcpt, _, mid = line.partition(" ")
                self.lines.append((rcpt, mid))
                self.arrivals.append(time.monotonic())

    def count(self) -> int:
        return len(self.lines)

    def settle(self, quiet: float = 0.5, timeout: float = 10) -> None:
        """Wait until no line has arrived for ``quiet`` seconds (in-flight replies land)."""
        deadline = time.monotonic() + timeout
        n, since = self.count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if self.count() != n:
                n, since = self.count(), time.monotonic()
            elif time.monotonic() - since >= quiet:
                return

    def copies(self) -> dict[str, list[str]]:
        """Recipient → the Message-IDs of every copy it got."""
        out: dict[str, list[str]] = defaultdict(list)
        for rcpt, mid in self.lines:
            out[rcpt].append(mid)
        return out

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


if __name__ == "__main__":
    # A sink in its own process: `python tests/smtp_server.py PORT [DELAY [FOLDER]]` prints
    # "ready" and counts what it receives; each message's recipient and Message-ID go to
    # stdout, and with FOLDER the message itself to FOLDER/<n>.eml.
    import sys
    from pathlib import Path

    port = int(sys.argv[1])
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    keep = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    kept = iter(range(1, 1 << 30))

    class Sink(Handler):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if self.faults.delay:
                await asyncio.sleep(self.faults.delay)
            mid = ""
            for line in (envelope.original_content or envelope.content).split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    mid = line.split(b":", 1)[1].strip().decode()
                    break
                if not line:
                    break
            if keep is not None:
                (keep / f"{next(kept):06d}.eml").write_bytes(envelope.original_content)
            print(f"{envelope.rcpt_tos[0]} {mid}", flush=True)
            return "250 OK"

    ctl = Controller(Sink(Faults(delay=delay)), hostname="127.0.0.1", port=port, ready_timeout=10)
    ctl.start()
    print("ready", flush=True)
    try:
        threading.Event().wait()
    finally:
        ctl.stop()
