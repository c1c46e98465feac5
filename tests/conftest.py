"""Shared fixtures: a real HTTP server on 127.0.0.1 serving feed documents, config files."""

from __future__ import annotations

import gzip
import http.server
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


@dataclass
class Route:
    """What the server answers on one path; ``responses`` are played in order, the last repeats."""

    responses: list[dict] = field(default_factory=list)
    hits: int = 0


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    at: float


class FeedServer:
    """A real HTTP server on 127.0.0.1 with scripted answers per path.

    An answer is a dict: ``status`` (200), ``body`` (bytes), ``headers`` (dict),
    ``delay`` (seconds before answering), ``etag`` (answers 304 to a matching
    If-None-Match), ``gzip`` (compress the body), ``drip`` (seconds between bytes).
    """

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(
                    Seen(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, time.monotonic()
                    )
                )
                route = server.routes.get(self.path)
                if route is None:
                    self._send(
                        404, b"<html><body>Not Found</body></html>", {"Content-Type": "text/html"}
                    )
                    return
                answer = route.responses[min(route.hits, len(route.responses) - 1)]
                route.hits += 1
                if answer.get("delay"):
                    time.sleep(answer["delay"])
                etag = answer.get("etag")
                if etag and self.headers.get("If-None-Match") == etag:
                    self._send(304, b"", {"ETag": etag})
                    return
                headers = dict(answer.get("headers", {}))
                if etag:
                    headers["ETag"] = etag
                body = answer.get("body", b"")
                if answer.get("gzip"):
                    body = gzip.compress(body)
                    headers["Content-Encoding"] = "gzip"
                self._send(answer.get("status", 200), body, headers, drip=answer.get("drip"))

            def _send(
                self, status: int, body: bytes, headers: dict, drip: float | None = None
            ) -> None:
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    if "Content-Length" not in headers:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if drip:
                        for i in range(len(body)):
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(drip)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, *answers: dict) -> str:
        self.routes[path] = Route(list(answers))
        return self.url(path)

    def hits(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def sample_feeds() -> Path:
    from newsletter.samples import FEEDS

    return FEEDS


BACKENDS = ["sqlite", "postgresql"]
#: The modules whose tests run on every backend: ``pytestmark = both_backends``.
both_backends = pytest.mark.parametrize("database_url", BACKENDS, indirect=True)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: pytestmark of the tests that drive a headless Chromium (skipped where there is none).
needs_chromium = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason="headless Chromium not installed (apt-get install chromium)",
    ),
]


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file in tmp_path, or (parametrised with
    "postgresql") a new database in the cluster that NEWSLETTER_TEST_DATABASE_URL points
    at, dropped afterwards.  Without that variable the PostgreSQL cases are skipped."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/test.db"
        return
    admin_url = os.environ.get("NEWSLETTER_TEST_DATABASE_URL")
    if not admin_url:
        pytest.skip("PostgreSQL: set NEWSLETTER_TEST_DATABASE_URL (see .ci/postgres.sh)")
    from pgdb import throwaway_database

    with throwaway_database(admin_url, "nl_test") as url:
        yield url


@pytest.fixture
def write_config(tmp_path: Path, database_url: str) -> Callable[[str], Path]:
    """Write a TOML config into tmp_path, pointing at the test's database unless it says
    otherwise."""

    def write(text: str, name: str = "newsletter.toml") -> Path:
        path = tmp_path / name
        if "database_url" not in text:
            text = f'database_url = "{database_url}"\n' + text
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def smtp_server():
    """Start real SMTP servers (aiosmtpd on 127.0.0.1): ``smtp_server(handler=..., tls=...)``."""
    from smtp_server import SmtpServer

    started: list[SmtpServer] = []

    def start(*args, **kwargs) -> SmtpServer:
        server = SmtpServer(*args, **kwargs).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def sink_process():
    """Start SMTP sinks in their own processes: ``sink_process(delay=0.01)`` (``keep=folder``:
    the sink writes every message it accepts there)."""
    from smtp_server import SinkProcess

    sinks: list[SinkProcess] = []

    def start(delay: float = 0.0, keep: Path | None = None) -> SinkProcess:
        sinks.append(SinkProcess(delay, keep))
        return sinks[-1]

    yield start
    for s in sinks:
        s.stop()


@pytest.fixture(scope="session")
def tls_ca():
    """A throwaway certificate authority and a server certificate for 127.0.0.1."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    return ca, ca.issue_cert("127.0.0.1", "localhost")
