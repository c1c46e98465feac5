"""`newsletter serve`: the web endpoints the emails link to, served by waitress.

``make_app`` builds the WSGI application (:mod:`newsletter.web.app`); ``make_server``
binds waitress to a host and port; ``run`` serves until SIGINT or SIGTERM.  The operator
runs it behind their web server (TLS there); see docs/web.md.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from newsletter.errors import ConfigError, NewsletterError
from newsletter.web.ratelimit import Rate

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.delivery.transport import Transport
    from newsletter.store import Store
    from newsletter.web.app import WebApp

__all__ = ["Rate", "make_app", "make_server", "run", "secret_for"]

log = logging.getLogger(__name__)


def make_app(
    settings: Settings,
    store: Store,
    *,
    secret: str | None = None,
    transport_factory: Callable[[], Transport] | None = None,
    clock: Callable[[], float] = time.time,
    address_rate: Rate | None = None,
    client_rate: Rate | None = None,
) -> WebApp:
    """The WSGI app.  ``secret``: the key the emails' links were signed with; by default
    NEWSLETTER_SECRET_KEY (:func:`secret_for` also allows the offline demo's key)."""
    from pathlib import Path

    from newsletter.delivery.transport import make_transport_factory
    from newsletter.web import app

    secret = secret or settings.secrets.secret_key
    if not secret:
        raise _no_key()
    factory = transport_factory or make_transport_factory(
        settings, str(Path(settings.delivery.outbox_dir) / "confirmations")
    )
    return app.WebApp(
        settings,
        store,
        secret=secret,
        transport_factory=factory,
        clock=clock,
        address_rate=address_rate or app.ADDRESS_RATE,
        client_rate=client_rate or app.CLIENT_RATE,
    )


def secret_for(settings: Settings, host: str) -> str:
    """The key to check links with when serving on ``host``: NEWSLETTER_SECRET_KEY.

    Without one, a local demo may run: with the outbox transport (nothing is mailed), a
    ``list.base_url`` on this machine and ``host`` a loopback address, it is the public
    key the outbox's links were signed with (:data:`newsletter.delivery.DEMO_SECRET`).
    Anywhere else it is refused: anyone can forge links with a published key.
    """
    from urllib.parse import urlsplit

    from newsletter.delivery import DEMO_SECRET

    if settings.secrets.secret_key:
        return settings.secrets.secret_key
    if settings.delivery.transport != "outbox":
        raise _no_key()
    problems = []
    if not _loopback(host):
        problems.append(f"--host {host} is not a loopback address")
    if not _loopback(urlsplit(settings.list.base_url).hostname or ""):
        problems.append(f"list.base_url {settings.list.base_url} is not on this machine")
    if problems:
        raise _no_key(
            "the public demo key is for a local demo only, and "
            + " and ".join(problems)
            + " (anyone can forge links signed with a published key)"
        )
    log.warning(
        "NEWSLETTER_SECRET_KEY is not set: serving the offline demo's links with the "
        "public demo key, on this machine only; set a key before anybody else uses it"
    )
    return DEMO_SECRET


def _no_key(
    why: str = "`newsletter serve` checks the links in the emails with it (use the same "
    "value as `newsletter send`)",
) -> ConfigError:
    return ConfigError(f"NEWSLETTER_SECRET_KEY is not set: {why}")


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_server(
    application: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    threads: int = 4,
    trusted_proxy: str | None = None,
) -> Any:
    """A waitress server bound to ``host``:``port`` (0: any free port), not yet serving.

    ``trusted_proxy``: the address of the front web server whose X-Forwarded-For names
    the client (for the per-client sign-up limit); from anyone else the header is dropped.
    """
    from waitress import create_server

    from newsletter.web.app import MAX_BODY

    proxy = _proxy_address(trusted_proxy) if trusted_proxy else None  # before binding
    options: dict[str, Any] = {
        "sockets": _bind(host, port),
        "threads": threads,
        "ident": "newsletter",
        "max_request_body_size": MAX_BODY,
        "max_request_header_size": 32 * 1024,
    }
    if proxy:
        options |= {
            "trusted_proxy": proxy,
            "trusted_proxy_headers": {"x-forwarded-for"},
            "trusted_proxy_count": 1,
            "clear_untrusted_proxy_headers": True,
        }
    try:
        return create_server(application, **options)
    except Exception:
        for sock in options["sockets"]:
            sock.close()
        raise


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
