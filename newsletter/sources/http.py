"""Fetching feed documents: HTTP with timeouts, conditional GET, size cap, politeness, retries.

feedparser can fetch by itself but has no timeout and no size cap, so every byte the
program reads from a source comes through here; the parsers only ever see bytes.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import http.client
import io
import logging
import os
import re
import socket
import ssl
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsletter import __version__
from newsletter.config import FetchSettings
from newsletter.errors import FeedError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_CHUNK = 64 * 1024

# Line breaks, other control characters and lone surrogates: none belongs in a report line.
_NOT_IN_A_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one line of at most ``limit`` characters, for the fetch report and the log.

    Failure reasons quote what servers and documents said (a status line, an exception's
    message), which can hold line breaks and control characters and run to 64 KiB.
    """
    line = " ".join(_NOT_IN_A_LINE.sub(" ", text).split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


@dataclass(frozen=True)
class Response:
    """A document as fetched: 200 with a body, or 304 with none."""

    url: str  # after redirects
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    attempts: int = 1
    local: bool = False  # read from a file, not over HTTP

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


def default_user_agent(base_url: str = "", contact: str = "") -> str:
    extra = "; ".join(x for x in (f"+{base_url}" if base_url else "", contact) if x)
    return f"newsletter/{__version__}" + (f" ({extra})" if extra else "")


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be requested (checked before asking, so it is not retried)."""
    if _NOT_IN_A_LINE.search(url) or " " in url:
        return "it contains spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as e:  # "Invalid IPv6 URL"
        return str(e)
    try:
        parts.port  # noqa: B018 -- parsing it is the check
    except ValueError:
        return "the port is not a number up to 65535"
    if not parts.hostname:
        return "no host"
    try:
        parts.hostname.encode("idna")  # as http.client will
    except UnicodeError:
        return "not a valid host name"
    return None


class _Redirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, with the answer for one that cannot be followed in one line
    (urllib's loop message has three), and only to http and https (urllib also follows
    ftp)."""

    max_redirections = 5

    def http_error_302(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any
    ) -> Any:
        location = headers.get("location") or headers.get("uri") or ""
        try:  # urllib parses the Location before redirect_request sees it
            urllib.parse.urljoin(req.full_url, location)
        except ValueError as e:  # "Invalid IPv6 URL"
            fp.close()
            raise _Unfollowable(f"redirected to {location!r}: {e}", code) from None
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        chain: tuple[str, ...] = getattr(req, "redirect_chain", (req.full_url,))
        hops = len(chain)
        problem = None
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            problem = f"redirected to {newurl!r}: only http and https are followed"
        elif why := _url_problem(newurl):
            problem = f"redirected to {newurl!r}: {why}"
        elif newurl in chain:
            problem = f"a redirect loop: back to {newurl} after {hops} redirect{'s' * (hops > 1)}"
        elif hops > self.max_redirections:
            problem = f"more than {self.max_redirections} redirects (the next to {newurl})"
        if problem:
            fp.close()
            raise _Unfollowable(problem, code)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.redirect_chain = (*chain, newurl)  # type: ignore[attr-defined]
        return new


class _Unfollowable(Exception):
    def __init__(self, reason: str, status: int):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Fetcher:
    """Gets documents politely: at most one request per ``min_interval`` seconds per host.

    ``sleep`` and ``clock`` are injectable so the waiting can be observed in tests.
    """

    def __init__(
        self,
        settings: FetchSettings,
        *,
        user_agent: str | None = None,
        backoff: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self.user_agent = user_agent or settings.user_agent or default_user_agent()
        self.backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._last_request: dict[str, float] = {}

    # ------------------------------------------------------------------ public

    def get(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> Response:
        """Fetch ``url`` (http, https, file: or a local path); raise FeedError on failure."""
        try:
            scheme = urllib.parse.urlsplit(url).scheme.lower()
        except ValueError as e:  # "Invalid IPv6 URL"
            raise FeedError(url, f"not a valid URL: {e}") from None
        if scheme in ("http", "https"):
            return self._get_http(url, etag, last_modified)
        if scheme == "file":
            return self._get_file(
                url, Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
            )
        if scheme == "" or (len(scheme) == 1 and url[1:3] in (":\\", ":/")):  # Windows drive
            return self._get_file(url, Path(url))
        raise FeedError(url, f"unsupported URL scheme {scheme!r}")

    # ------------------------------------------------------------------ local files

    def _get_file(self, url: str, path: Path) -> Response:
        cap = self.settings.max_bytes
        try:
            # Refused before opening: opening a device can have effects of its own, and a
            # FIFO or a terminal would block.
            _refuse_unless_regular(url, os.stat(path).st_mode)
            # O_NONBLOCK: a FIFO swapped in since the stat does not wait for a writer.
            fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_CLOEXEC)
            with open(fd, "rb", buffering=0) as f:
                st = os.fstat(fd)
                _refuse_unless_regular(url, st.st_mode)
                if st.st_size > cap:
                    raise FeedError(url, _over_cap(cap, st.st_size))
                # The size is only a hint (a /proc file says 0; a file can grow): the
                # cap is counted on what is read.
                body = _read_capped(url, f.read, cap)
        except FileNotFoundError:
            raise FeedError(url, "no such file") from None
        except ValueError:  # os.stat: "embedded null byte"
            raise FeedError(url, "cannot read: the path contains a NUL character") from None
        except OSError as e:
            raise FeedError(url, f"cannot read: {e.strerror or e}") from None
        return Response(url=url, status=200, body=body, local=True)

    # ------------------------------------------------------------------ HTTP

    def _wait_turn(self, host: str) -> None:
        """Wait until ``min_interval`` has passed since the last answer from ``host`` ended:
        counted from the answer, not from the request, so that the server never sees two
        requests closer than that however long the first took to reach it."""
        last = self._last_request.get(host)
        if last is not None:
            wait = self.settings.min_interval - (self._clock() - last)
            if wait > 0:
                log.debug("waiting %.1f s before the next request to %s", wait, host)
                self._sleep(wait)

    def _get_http(self, url: str, etag: str | None, last_modified: str | None) -> Response:
        if problem := _url_problem(url):
            raise FeedError(url, f"not a valid URL: {problem}")
        host = urllib.parse.urlsplit(url).netloc.lower()
        headers = {
            "User-Agent": self.user_agent,
            "Accept": "application/rss+xml, application/atom+xml, application/rdf+xml, "
            "application/xml;q=0.9, application/json;q=0.9, text/xml;q=0.8, */*;q=0.5",
            "Accept-Encoding": "gzip, deflate",
        }
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        attempts = 0
        while True:
            attempts += 1
            self._wait_turn(host)
            try:
                try:
                    return self._once(url, headers, attempts)
                finally:  # whatever the answer was: the next request waits from here
                    self._last_request[host] = self._clock()
            except _Retryable as r:
                left = self.settings.retries - (attempts - 1)
                if left <= 0:
                    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
                    raise FeedError(url, r.reason + tries, status=r.status) from None
                delay = self.backoff * 2 ** (attempts - 1)
                if r.retry_after is not None:
                    if r.retry_after > self.settings.max_retry_after:
                        raise FeedError(
                            url,
                            f"{r.reason}; the server asks to retry after {r.retry_after:.0f} s, "
                            "longer than fetch.max_retry_after "
                            f"({self.settings.max_retry_after:.0f} s)",
                            status=r.status,
                        ) from None
                    delay = max(delay, r.retry_after)
                log.info("%s: %s; retrying in %.1f s (%d left)", url, r.reason, delay, left)
                self._sleep(delay)

    def _once(self, url: str, headers: dict[str, str], attempts: int) -> Response:
        # One deadline for the whole request: connecting, redirects, headers and body.
        deadline = _Deadline(self.settings.timeout)
        opener = urllib.request.build_opener(
            _Redirects(), _HTTPHandler(deadline), _HTTPSHandler(deadline)
        )
        req = urllib.request.Request(url, headers=headers, method="GET")
        try:
            resp = opener.open(req, timeout=self.settings.timeout)
        except _Unfollowable as e:
            raise FeedError(url, e.reason, status=e.status) from None
        except urllib.error.HTTPError as e:
            with e:
                if e.code == 304:
                    return Response(
                        url=e.url or url, status=304, headers=_lower(e.headers), attempts=attempts
                    )
                reason = one_line(f"HTTP {e.code} {e.reason}")  # the server's words
                if e.code in RETRY_STATUSES:
                    retry_after = parse_retry_after(
                        e.headers.get("Retry-After"), dt.datetime.now(dt.UTC)
                    )
                    raise _Retryable(reason, e.code, retry_after) from None
                raise FeedError(url, reason, status=e.code) from None
        except urllib.error.URLError as e:
            raise self._network_error(url, e.reason) from None
        except TimeoutError:
            raise self._too_slow() from None
        except (http.client.HTTPException, ConnectionError, OSError) as e:
            raise _Retryable(f"connection failed: {e}", None, None) from None
        with resp:
            status = resp.status
            hdrs = _lower(resp.headers)
            body = self._read_body(url, resp, hdrs)
        return Response(
            url=resp.url or url, status=status, body=body, headers=hdrs, attempts=attempts
        )

    def _too_slow(self) -> _Retryable:
        return _Retryable(f"took longer than {self.settings.timeout:g} s", None, None)

    def _network_error(self, url: str, reason: object) -> Exception:
        if isinstance(reason, TimeoutError):
            return self._too_slow()
        if isinstance(reason, ssl.SSLError):
            return FeedError(url, f"TLS error: {reason}")
        if isinstance(reason, socket.gaierror):
            return FeedError(url, f"cannot resolve host: {reason.strerror or reason}")
        if isinstance(reason, ConnectionRefusedError):
            return _Retryable("connection refused", None, None)
        if isinstance(reason, OSError):
            return _Retryable(f"connection failed: {reason.strerror or reason}", None, None)
        return FeedError(url, str(reason))

    def _read_body(
        self, url: str, resp: http.client.HTTPResponse, hdrs: Mapping[str, str]
    ) -> bytes:
        cap = self.settings.max_bytes
        declared = hdrs.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FeedError(url, _over_cap(cap, int(declared)))
        encoding = hdrs.get("content-encoding", "").lower()
        decoder = None
        if encoding in ("gzip", "x-gzip"):
            decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            decoder = zlib.decompressobj()
        try:
            return _read_capped(url, resp.read, cap, decoder)
        except TimeoutError:
            raise self._too_slow() from None
        except zlib.error as e:
            raise FeedError(url, f"corrupt {encoding} body: {e}") from None
        except http.client.IncompleteRead as e:
            raise _Retryable(
                f"connection closed early ({len(e.partial):,} bytes read)", None, None
            ) from None


def _read_capped(url: str, read: Callable[[int], bytes], cap: int, decoder: Any = None) -> bytes:
    """Everything ``read`` gives, decompressed by ``decoder`` if any; FeedError past ``cap``.

    Both HTTP bodies and local files come through here, so neither can grow past the cap
    (a gzip bomb, /proc, a file that keeps growing).
    """
    out = bytearray()
    while chunk := read(_CHUNK):
        if decoder is not None:
            chunk = decoder.decompress(chunk, cap + 1 - len(out))
        out += chunk
        if len(out) > cap:
            raise FeedError(url, _over_cap(cap))
    if decoder is not None:
        out += decoder.flush()
        if len(out) > cap:
            raise FeedError(url, _over_cap(cap))
    return bytes(out)


def _over_cap(cap: int, size: int | None = None) -> str:
    what = "the document" if size is None else f"the document of {size:,} bytes"
    return f"{what} is over the {cap:,}-byte cap (fetch.max_bytes)"


# Windows has neither flag (nor FIFOs in the file system).
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

_NOT_REGULAR = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def _refuse_unless_regular(url: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise FeedError(url, "is a directory, not a feed file")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _NOT_REGULAR if test(mode)), "a special file")
        raise FeedError(url, f"{kind}, not a regular file")


class _Retryable(Exception):
    def __init__(self, reason: str, status: int | None, retry_after: float | None):
        super().__init__(reason)
        self.reason = one_line(reason)  # it is logged at each retry
        self.status = status
        self.retry_after = retry_after


def _lower(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    return {k.lower(): v for k, v in headers.items()}


# ---------------------------------------------------------------------- the deadline


class _Deadline:
    """When one request must be done by.  A socket timeout bounds each read only: a server
    sending a byte a second, headers or body, never trips it."""

    def __init__(self, seconds: float):
        # The real clock, whatever the Fetcher was given: this feeds socket timeouts.
        self._at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left; TimeoutError (what a socket raises) when there are none."""
        left = self._at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long")
        return left


class _DeadlineSocket:
    """A connected socket whose every send and read waits at most the time left.

    http.client sends through ``sendall`` and reads the status line, headers and body
    through ``makefile("rb")``; everything else goes to the socket itself.
    """

    def __init__(self, sock: socket.socket, deadline: _Deadline):
        self._sock: Any = sock
        self._deadline = deadline

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def sendall(self, data: Any, *args: Any) -> None:
        self._sock.settimeout(self._deadline.left())
        self._sock.sendall(data, *args)

    def makefile(self, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode != "rb":
            return self._sock.makefile(mode, *args, **kwargs)
        # Unbuffered, the socket's own reader (it keeps the socket open until closed).
        raw = self._sock.makefile("rb", buffering=0)
        return io.BufferedReader(_DeadlineReader(raw, self._sock, self._deadline))


class _DeadlineReader(io.RawIOBase):
    def __init__(self, raw: Any, sock: socket.socket, deadline: _Deadline):
        self._raw = raw
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._deadline.left())
        n: int = self._raw.readinto(buffer)
        return n

    def fileno(self) -> int:
        return int(self._raw.fileno())

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._deadline = deadline
        # http.client's hook for opening the socket (its tests replace it too): connect
        # within the time left, and leave the TLS handshake only what remains after.
        self._create_connection = self._open_socket

    def _open_socket(
        self, address: tuple[str, int], _timeout: Any, source: Any = None
    ) -> socket.socket:
        sock = socket.create_connection(address, self._deadline.left(), source)
        try:
            sock.settimeout(self._deadline.left())
        except TimeoutError:
            sock.close()
            raise
        return sock

    def connect(self) -> None:
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self._deadline)


class _DeadlineHTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_DeadlineConnection, deadline=self._deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            functools.partial(_DeadlineHTTPSConnection, deadline=self._deadline), req
        )
