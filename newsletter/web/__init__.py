"""`newsletter serve`: the web endpoints the emails link to, served by waitress.

``make_app`` builds the WSGI application (:mod:`newsletter.web.app`); ``make_server``
binds waitress to a host and port with its limits set (:mod:`newsletter.web.server`);
``run`` serves until SIGINT or SIGTERM.  The operator runs it behind their web server
(TLS there); see docs/web.md.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from newsletter.errors import ConfigError
from newsletter.web.ratelimit import Rate
from newsletter.web.server import Limits, PortInUse, listening, make_server, run

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.delivery.transport import Transport
    from newsletter.store import Store
    from newsletter.web.app import WebApp

__all__ = [
    "Limits",
    "PortInUse",
    "Rate",
    "listening",
    "make_app",
    "make_server",
    "run",
    "secret_for",
]

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
