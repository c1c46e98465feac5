"""waitress for `newsletter serve`: the sockets bound, the limits set, its own pages safe.

waitress reads requests in one thread (asyncore) and hands only complete ones to its
worker threads, so a slow client cannot tie up a worker; it can hold a connection.  What
bounds that here (see docs/web.md for what the front web server must add):

- at most ``Limits.connections`` at once; past it waitress stops accepting, and the
  others wait in the kernel's queue, in order;
- a request must arrive whole (request line, headers and body) within
  ``Limits.request_seconds`` of its first byte: waitress has no such deadline (a header
  line every few seconds kept a connection forever), so the channel keeps one;
- a connection with no request in progress is closed after ``Limits.idle_seconds``.

waitress answers malformed requests itself (400, 413, 431, 501) and a crashed
application with a 500: those pages carry the same safety headers as the app's.
"""

from __future__ import annotations

import copy
import errno
import ipaddress
import signal
import socket
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from newsletter import links
from newsletter.errors import ConfigError, NewsletterError
from newsletter.web.app import MAX_BODY, SAFETY_HEADERS
from newsletter.web.preferences import MAX_UPLOAD, MAX_UPLOAD_BODY

#: Largest request line and headers together: a browser sends 1-2 KB; past it, 431.
MAX_HEADER = 32 * 1024
#: The posts that may carry a library file (newsletter.web.app.UPLOAD_ENDPOINTS): their
#: bodies are taken up to MAX_UPLOAD_RECEIVED, every other request's up to MAX_BODY.
UPLOAD_PATHS = (links.SUBSCRIBE, links.PREFERENCES)
#: Twice what the app takes: a file somewhat too large is received whole and refused by
#: the app with its form's page naming the cap (a browser shows a server's answer only
#: once it has sent the body); a larger one is refused at once, before its body is read.
MAX_UPLOAD_RECEIVED = 2 * MAX_UPLOAD_BODY
#: waitress's own error pages are plain text with nothing to load.
_ERROR_HEADERS = (
    *SAFETY_HEADERS,
    ("Content-Security-Policy", "default-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    ("Cache-Control", "no-store"),
)


@dataclass(frozen=True, slots=True)
class Limits:
    """How many connections waitress keeps and how long it waits for a client."""

    #: Open connections at once.  Behind a web server a few suffice (it sends each
    #: request whole and quickly); this leaves room for bursts without letting a flood of
    #: idle connections use up file descriptors (the usual limit is 1,024).
    connections: int = 100
    #: From a request's first byte to its last: a sign-up form is a few hundred bytes, so
    #: even a poor mobile link sends it in a second or two.
    request_seconds: float = 10.0
    #: A kept-alive connection with nothing in progress (and one that never sends a byte).
    idle_seconds: float = 20.0

    @property
    def check_every(self) -> float:
        """How often waitress looks for idle connections (it also wakes at least once a
        second, which bounds how late a request deadline is noticed)."""
        return max(0.1, min(1.0, self.idle_seconds / 10))


def make_server(
    application: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    threads: int = 4,
    trusted_proxy: str | None = None,
    limits: Limits | None = None,
) -> Any:
    """A waitress server bound to ``host``:``port`` (0: any free port), not yet serving.

    ``trusted_proxy``: the address of the front web server whose X-Forwarded-For names
    the client (for the per-client sign-up limit); from anyone else the header is dropped.
    """
    limits = limits or Limits()
    proxy = _proxy_address(trusted_proxy) if trusted_proxy else None  # before binding
    options: dict[str, Any] = {
        "sockets": _bind(host, port),
        "threads": threads,
        "ident": "newsletter",
        "max_request_body_size": MAX_UPLOAD_RECEIVED,
        "max_request_header_size": MAX_HEADER,
        "connection_limit": limits.connections,
        "channel_timeout": limits.idle_seconds,
        "cleanup_interval": limits.check_every,
    }
    if proxy:
        options |= {
            "trusted_proxy": proxy,
            "trusted_proxy_headers": {"x-forwarded-for"},
            "trusted_proxy_count": 1,
            "clear_untrusted_proxy_headers": True,
        }
    listeners: dict[int, Any] = {}  # waitress's socket map: our listeners, its channels
    try:
        server = create_server(application, listeners, **options)
    except Exception:
        for sock in options["sockets"]:
            sock.close()
        raise
    for dispatcher in listeners.values():
        if isinstance(dispatcher, BaseWSGIServer):
            small = copy.copy(dispatcher.adj)
            small.max_request_body_size = MAX_BODY
            parser = type("Parser", (_Parser,), {"small": small})
            dispatcher.channel_class = type(
                "Channel",
                (_Channel,),
                {"request_seconds": limits.request_seconds, "parser_class": parser},
            )
    return server


class _Parser(HTTPRequestParser):
    """Bodies of at most MAX_BODY, except for the posts of UPLOAD_PATHS."""

    small: Any  # waitress's Adjustments with max_request_body_size = MAX_BODY

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        # The body limit is checked after this, against self.adj.
        if not (self.command == "POST" and str(self.path).startswith(UPLOAD_PATHS)):
            self.adj = self.small

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        if isinstance(getattr(self, "error", None), RequestEntityTooLarge):
            # waitress says "exceeds max_body of N": say it as the pages do.
            upload = self.adj is not self.small
            self.error = RequestEntityTooLarge(
                f"This server takes requests of at most {self.adj.max_request_body_size:,} bytes"
                + (f" (a library file: {MAX_UPLOAD // 1_000_000} MB)" if upload else "")
                + "; nothing was changed."
            )
        return consumed


class _ErrorTask(ErrorTask):
    """waitress's own error page (400, 413, 431, 500, 501) with our safety headers."""

    def build_response_header(self) -> bytes:
        self.response_headers.extend(_ERROR_HEADERS)
        return super().build_response_header()


class _Channel(HTTPChannel):
    """A connection that must deliver each request whole within ``request_seconds``."""

    error_task_class = _ErrorTask
    request_seconds = 10.0
    #: When the request being received (``self.request``) began; None between requests.
    receiving_since: float | None = None

    def received(self, data: bytes) -> bool:
        before = self.request
        result: bool = super().received(data)
        if self.request is None:
            self.receiving_since = None
        elif self.request is not before:  # a new request began in this chunk
            self.receiving_since = time.monotonic()
        return result

    def readable(self) -> bool:
        # waitress asks every channel this on each turn of its loop (at least once a
        # second), which makes it the place to cut off a request that takes too long.
        reading = bool(super().readable())
        since = self.receiving_since
        if since is not None:
            now = time.monotonic()
            if not reading:
                # Not reading (a pipelined request waits while the one before it is
                # served or its answer is sent): the client cannot be late meanwhile.
                self.receiving_since = now
            elif now - since > self.request_seconds:
                self.receiving_since = None
                self.will_close = True  # closed at once: writable() is true, nothing to send
                return False
        return reading


def _proxy_address(value: str) -> str:
    """waitress compares the proxy's address with the client's as text: normalise it, and
    refuse a name or a typo, which would never match and silently drop X-Forwarded-For."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigError(
            f"trusted proxy {value!r}: expected the IP address the front web server connects from"
        ) from None


def _bind(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` (as waitress would bind them), or one
    clear error.  Bound here, not by waitress: it reports any failed look-up as "Invalid
    host/port specified." and leaves its threads and trigger behind on a failed bind."""
    where = f"{host}:{port}"
    try:
        found = socket.getaddrinfo(
            None if host == "*" else host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, UnicodeError) as e:
        raise ConfigError(
            f"cannot listen on {where}: not an address or a host name that resolves "
            f"({getattr(e, 'strerror', None) or e})"
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as e:
        for sock in sockets:
            sock.close()
        raise _listen_error(where, e) from e
    return sockets


class PortInUse(NewsletterError):
    """Another server listens on the port: stop it or choose another (exit code 1, as for
    any resource another process holds)."""


def _listen_error(where: str, e: OSError) -> NewsletterError:
    if e.errno == errno.EADDRINUSE:
        return PortInUse(f"cannot listen on {where}: the port is in use (choose another --port)")
    if e.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need privileges: use a higher port)"
    elif e.errno == errno.EADDRNOTAVAIL:
        reason = "not an address of this machine"
    else:
        reason = e.strerror or str(e)
    return ConfigError(f"cannot listen on {where}: {reason}")


def listening(server: Any) -> list[str]:
    """``http://host:port`` for each socket the server listens on."""
    if hasattr(server, "effective_listen"):
        pairs = server.effective_listen
    else:
        pairs = [(server.effective_host, server.effective_port)]
    return [f"http://{'[' + h + ']' if ':' in str(h) else h}:{p}" for h, p in pairs]


def run(server: Any) -> None:
    """Serve until SIGINT or SIGTERM; requests in progress are cut off at exit."""

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
