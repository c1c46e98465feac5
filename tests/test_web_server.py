"""waitress as `newsletter serve` runs it, over real sockets: slow and half-open clients
are cut off within a bounded time, and waitress's own error pages carry the same safety
headers as the app's.  The limits are shortened (seconds, not tens of seconds); the
defaults and what they bound are in docs/web.md."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import test_web
from test_web import assert_our_headers, serving

from newsletter.web import Limits, make_server
from newsletter.web.app import MAX_BODY
from newsletter.web.server import MAX_HEADER, MAX_UPLOAD_RECEIVED

serve = test_web.serve  # the fixture: the app in waitress on a free port

#: Short limits so that the tests take seconds.
LIMITS = Limits(connections=20, request_seconds=1.0, idle_seconds=2.0)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def closed_by_server(sock: socket.socket, wait: float) -> bool:
    """Whether the server closed ``sock`` within ``wait`` seconds (we send nothing more)."""
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset
        return True


def raw(port: int, data: bytes) -> test_web.Reply:
    """Send ``data`` as it is and read the answer up to the server's close."""
    with connect(port) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = http.client.HTTPMessage()
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return test_web.Reply(int(lines[0].split()[1]), headers, body.decode("utf-8", "replace"))


def timed_get(port: int, path: str = "/subscribe", timeout: float = 30) -> tuple[int, float]:
    t = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.monotonic() - t
    finally:
        conn.close()


@contextlib.contextmanager
def running(application: Callable[..., Any], **kwargs: Any) -> Iterator[int]:
    """``application`` served by make_server on a free port, for the ``with`` block."""
    with serving(make_server(application, host="127.0.0.1", port=0, **kwargs)) as port:
        yield port


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


# --------------------------------------------------------------------------- slow clients


def test_half_open_connections_do_not_lock_out_a_normal_request(serve, sockets):
    """Past the connection limit, a normal request waits only until the half-open ones
    are cut off (waitress's defaults kept it out for minutes: channel_timeout 120 s,
    checked every 30 s, and a half-open request counted as activity)."""
    web = serve(limits=LIMITS)
    port = web.client.port
    for i in range(LIMITS.connections + 15):
        s = connect(port)
        sockets.append(s)
        if i % 3:  # most send part of a request; some connect and say nothing
            s.sendall(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n")
    time.sleep(0.3)  # the server has taken all it will take
    status, took = timed_get(port)
    assert status == 200
    # The request deadline or the idle timeout (2 s) and waitress's next look (at most a
    # second each for its loop and its idle check), with room for a loaded machine.
    bound = max(LIMITS.request_seconds, LIMITS.idle_seconds) + 2 + 3
    assert took < bound, took
    # None of them holds a connection for long: each is cut off in turn, the ones that
    # waited in the queue once they were accepted.
    deadline = time.monotonic() + 2 * bound
    still_open = [
        s for s in sockets if not closed_by_server(s, max(0.01, deadline - time.monotonic()))
    ]
    assert still_open == []


def test_a_header_dripped_slowly_is_cut_off(serve, sockets):
    web = serve(limits=LIMITS)
    s = connect(web.client.port)
    sockets.append(s)
    s.sendall(b"GET /subscribe HTTP/1.1\r\n")
    start = time.monotonic()
    s.settimeout(0.2)
    lines = 0
    while True:
        try:
            if s.recv(1) == b"":
                break
        except TimeoutError:
            pass
        except OSError:
            break
        try:
            s.sendall(b"X-Drip-%d: y\r\n" % lines)  # activity every 0.2 s
        except OSError:
            break
        lines += 1
        assert time.monotonic() - start < 10, "still open after 10 s"
    took = time.monotonic() - start
    assert LIMITS.request_seconds <= took < LIMITS.request_seconds + 3, took
    assert lines >= 3  # it was active all along, just never finished


def test_a_body_dripped_slowly_is_cut_off(serve, sockets):
    web = serve(limits=LIMITS)
    s = connect(web.client.port)
    sockets.append(s)
    s.sendall(
        b"POST /subscribe HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
    )
    start = time.monotonic()
    for _ in range(40):
        if closed_by_server(s, 0.2):
            break
        try:
            s.sendall(b"e")
        except OSError:
            break
    took = time.monotonic() - start
    assert LIMITS.request_seconds <= took < LIMITS.request_seconds + 3, took


def test_a_slow_but_complete_request_and_a_kept_alive_connection_are_served(serve):
    web = serve(limits=LIMITS)
    with connect(web.client.port) as s, s.makefile("rb") as f:
        # Delivered in pieces, whole within the deadline.
        for piece in (b"GET /subscribe HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            s.sendall(piece)
            time.sleep(0.25)
        assert f.readline().startswith(b"HTTP/1.1 200")
        _skip_response(f)
        # The deadline is per request: a second one on the same connection, later than
        # one request's deadline but within the idle timeout, is served as well.
        time.sleep(LIMITS.request_seconds + 0.3)
        s.sendall(b"GET /archive/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert f.readline().startswith(b"HTTP/1.1 200")


def _skip_response(f: Any) -> None:
    length = 0
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    f.read(length)


def test_a_pipelined_request_waiting_behind_a_slow_one_is_not_cut_off():
    """While waitress serves one request it reads nothing more: the next one's clock
    waits too (a pipelining client is not late because the app is slow)."""

    def slow(environ: dict, start_response: Callable[..., Any]) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            time.sleep(LIMITS.request_seconds + 1)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    with running(slow, limits=LIMITS) as port, connect(port) as s:
        # The second request begins in the same packet and ends after the first answer.
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n")
        with s.makefile("rb") as f:
            assert f.readline().startswith(b"HTTP/1.1 200")
            _skip_response(f)
            s.sendall(b"\r\n")
            assert f.readline().startswith(b"HTTP/1.1 200")


def test_an_idle_connection_is_closed(serve, sockets):
    web = serve(limits=LIMITS)
    s = connect(web.client.port)
    sockets.append(s)
    start = time.monotonic()
    assert closed_by_server(s, LIMITS.idle_seconds + 3)
    assert time.monotonic() - start >= LIMITS.idle_seconds - 0.1


# --------------------------------------------------------------------------- waitress's pages


def _headers_of_size(size: int) -> bytes:
    """A request whose line and headers are ``size`` bytes: just at waitress's limit, it
    has read every byte when it answers 431, so its close resets nothing before we read."""
    head, tail = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", b"\r\n\r\n"
    return head + b"a" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /unsubscribe/MQA.\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # not ASCII
        (b"GET /confirm/MQA.\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"NOT A REQUEST\r\n\r\n", 400),
        (b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"POST /unsubscribe/x HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n", 413),
        (b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\n", 413),
        (_headers_of_size(MAX_HEADER), 431),
        (b"POST /subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ],
)
def test_waitress_error_pages_carry_the_safety_headers(serve, request_bytes, status):
    web = serve()
    r = raw(web.client.port, request_bytes)
    assert r.status == status, r.body
    assert_our_headers(r)
    assert r.header("Cache-Control") == "no-store"


def test_waitress_500_page_carries_the_safety_headers():
    """The app answers its own failures; waitress's 500 is for what escapes any app."""

    def broken(environ: dict, start_response: Callable[..., Any]) -> list[bytes]:
        raise RuntimeError("a bug")

    with running(broken) as port:
        r = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 500
    assert "a bug" not in r.body  # no traceback shown
    assert_our_headers(r)


@pytest.mark.parametrize(
    ("method", "path", "cap"),
    [
        ("POST", "/unsubscribe/x", MAX_BODY),
        ("GET", "/preferences/x", MAX_BODY),
        ("POST", "/archive/", MAX_BODY),
        ("POST", "/subscribe", MAX_UPLOAD_RECEIVED),
        ("POST", "/preferences/x", MAX_UPLOAD_RECEIVED),
    ],
)
def test_waitress_takes_large_bodies_only_for_the_forms_that_carry_a_library(
    serve, method, path, cap
):
    web = serve()
    for length in (cap, cap + 1):  # waitress refuses a body as long as its cap
        r = raw(
            web.client.port,
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode(),
        )
        assert r.status == 413, r.body
        assert f"at most {cap:,} bytes" in r.body and "nothing was changed" in r.body
        assert_our_headers(r)
    # One byte less is taken: waitress waits for the body (and answers once it has it).
    with connect(web.client.port) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {cap - 1}\r\n\r\n".encode()
        )
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)
