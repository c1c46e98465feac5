"""The fetcher against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from newsletter.config import FetchSettings
from newsletter.errors import FeedError
from newsletter.sources.http import Fetcher, default_user_agent, parse_retry_after

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


class Sleeps:
    """Records the waits the fetcher asks for, and waits a tiny fraction of them."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def fetcher(sleep=None, **kw) -> Fetcher:
    settings = FetchSettings(**({"timeout": 2.0, "min_interval": 0.0, "retries": 2} | kw))
    return Fetcher(settings, backoff=0.01, sleep=sleep or Sleeps())


def test_ok_with_user_agent_and_validators(feed_server):
    url = feed_server.add(
        "/feed",
        {
            "body": FEED,
            "headers": {
                "Content-Type": "application/rss+xml",
                "Last-Modified": "Mon, 27 Apr 2026 04:00:00 GMT",
            },
            "etag": '"v1"',
        },
    )
    r = fetcher().get(url)
    assert r.status == 200 and r.body == FEED
    assert r.headers["etag"] == '"v1"'
    assert r.content_type == "application/rss+xml"
    (seen,) = feed_server.hits("/feed")
    assert seen.headers["user-agent"].startswith("newsletter/")
    assert "if-none-match" not in seen.headers


def test_conditional_get_round_trip(feed_server):
    url = feed_server.add("/feed", {"body": FEED, "etag": '"v1"'})
    f = fetcher()
    first = f.get(url)
    second = f.get(url, etag=first.headers["etag"], last_modified="Mon, 27 Apr 2026 04:00:00 GMT")
    assert second.status == 304 and second.not_modified and second.body == b""
    hdrs = feed_server.hits("/feed")[1].headers
    assert hdrs["if-none-match"] == '"v1"'
    assert hdrs["if-modified-since"] == "Mon, 27 Apr 2026 04:00:00 GMT"


@pytest.mark.parametrize(
    ("status", "reason"),
    [(404, "HTTP 404 Not Found"), (403, "HTTP 403 Forbidden"), (410, "HTTP 410 Gone")],
)
def test_client_errors_fail_at_once(feed_server, status, reason):
    url = feed_server.add("/x", {"status": status, "body": b"<html>no</html>"})
    with pytest.raises(FeedError, match=reason) as info:
        fetcher().get(url)
    assert info.value.url == url and info.value.status == status
    assert len(feed_server.hits("/x")) == 1


def test_unknown_path_is_404(feed_server):
    with pytest.raises(FeedError, match="HTTP 404"):
        fetcher().get(feed_server.url("/missing"))


def test_server_errors_are_retried_then_reported(feed_server):
    url = feed_server.add("/x", {"status": 500, "body": b"oops"})
    sleeps = Sleeps()
    with pytest.raises(FeedError, match=r"HTTP 500 Internal Server Error \(after 3 attempts\)"):
        fetcher(sleep=sleeps).get(url)
    assert len(feed_server.hits("/x")) == 3
    assert sleeps.calls == [0.01, 0.02]  # exponential backoff


def test_retry_then_success(feed_server):
    url = feed_server.add("/x", {"status": 503}, {"status": 502}, {"body": FEED})
    r = fetcher().get(url)
    assert r.body == FEED and r.attempts == 3


def test_429_honours_retry_after(feed_server):
    url = feed_server.add("/x", {"status": 429, "headers": {"Retry-After": "7"}}, {"body": FEED})
    sleeps = Sleeps()
    assert fetcher(sleep=sleeps).get(url).body == FEED
    assert sleeps.calls == [7.0]


def test_too_long_retry_after_fails_the_source(feed_server):
    url = feed_server.add("/x", {"status": 429, "headers": {"Retry-After": "3600"}})
    with pytest.raises(FeedError, match=r"retry after 3600 s, longer than fetch.max_retry_after"):
        fetcher().get(url)
    assert len(feed_server.hits("/x")) == 1


def test_retry_after_as_http_date():
    now = dt.datetime(2026, 4, 27, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Mon, 27 Apr 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 27 Apr 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("12", now) == 12.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_slow_server_hits_the_timeout(feed_server):
    url = feed_server.add("/slow", {"body": FEED, "delay": 1.5})
    with pytest.raises(FeedError, match=r"took longer than 0.3 s \(after 2 attempts\)"):
        fetcher(timeout=0.3, retries=1).get(url)


# The timeout bounds the whole request.  A socket timeout bounds each read only, so a
# server sending a byte now and then held a fetch for as long as it liked.


def test_a_server_dripping_the_body_is_cut_at_the_timeout(feed_server):
    url = feed_server.add("/drip", {"body": b"x" * 200, "drip": 0.05})  # 10 s
    started = time.monotonic()
    with pytest.raises(FeedError, match=r"took longer than 1 s \(after 2 attempts\)$"):
        fetcher(timeout=1.0, retries=1).get(url)
    assert time.monotonic() - started < 2 * 1.0 + 3  # two attempts and slack, not 2 x 10 s
    assert len(feed_server.hits("/drip")) == 2  # retried like any timeout


@contextmanager
def dripping_server(answer: bytes, interval: float) -> Iterator[str]:
    """A bare server answering every request with ``answer``, one byte per ``interval`` s,
    status line and headers included (http.server cannot drip those)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a segment a byte
            conn.recv(65536)  # the request
            if not interval:
                conn.sendall(answer)
                return
            for i in range(len(answer)):
                if stop.is_set():
                    return
                try:
                    conn.sendall(answer[i : i + 1])
                except OSError:  # the client gave up
                    return
                time.sleep(interval)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/feed"
    finally:
        stop.set()
        server.join()
        listener.close()


def test_a_server_dripping_its_headers_is_cut_at_the_timeout():
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: %d\r\n" % len(
        FEED
    )
    with dripping_server(head + b"X-Padding: " + b"p" * 300 + b"\r\n\r\n" + FEED, 0.02) as url:
        started = time.monotonic()
        with pytest.raises(FeedError, match=r"took longer than 1 s$"):
            fetcher(timeout=1.0, retries=0).get(url)
        assert time.monotonic() - started < 1.0 + 3  # not the 7 s of headers


@pytest.fixture
def https_server(tls_ca, tmp_path, monkeypatch) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose certificate the fetcher trusts: /feed answers
    FEED, /drip drips it a byte every 100 ms."""
    import http.server
    import ssl

    ca, cert = tls_ca
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(FEED)))
            self.end_headers()
            try:
                for i in range(len(FEED)):
                    self.wfile.write(FEED[i : i + 1])
                    self.wfile.flush()
                    if self.path == "/drip":
                        time.sleep(0.1)
            except OSError:
                pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_https_within_the_deadline(https_server):
    assert fetcher().get(https_server + "/feed").body == FEED
    started = time.monotonic()
    with pytest.raises(FeedError, match=r"took longer than 1 s$"):
        fetcher(timeout=1.0, retries=0).get(https_server + "/drip")  # 8.6 s of bytes
    assert time.monotonic() - started < 1.0 + 3


def test_an_untrusted_certificate_fails_at_once(https_server, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(FeedError, match=r": TLS error: .*CERTIFICATE_VERIFY_FAILED.*$"):
        fetcher().get(https_server + "/feed")


def test_a_slow_answer_within_the_timeout_is_read_whole(feed_server):
    url = feed_server.add("/steady", {"body": FEED, "drip": 0.005})  # about 0.5 s
    assert fetcher(timeout=3.0, retries=0).get(url).body == FEED


def test_oversized_body_is_refused(feed_server):
    url = feed_server.add("/big", {"body": b"x" * 5000})
    with pytest.raises(FeedError, match="over the 1,000-byte cap"):
        fetcher(max_bytes=1000).get(url)


def test_oversized_body_without_content_length(feed_server):
    # A gzip body declares its compressed length; the cap applies to what it expands to.
    url = feed_server.add("/bomb", {"body": b"<" * 200_000, "gzip": True})
    with pytest.raises(FeedError, match="over the 10,000-byte cap"):
        fetcher(max_bytes=10_000).get(url)


def test_gzip_is_decoded(feed_server):
    url = feed_server.add("/gz", {"body": FEED, "gzip": True})
    assert fetcher().get(url).body == FEED
    assert "gzip" in feed_server.hits("/gz")[0].headers["accept-encoding"]


def test_corrupt_gzip(feed_server):
    url = feed_server.add(
        "/badgz", {"body": b"not gzip at all", "headers": {"Content-Encoding": "gzip"}}
    )
    with pytest.raises(FeedError, match="corrupt gzip body"):
        fetcher().get(url)


def test_connection_refused_is_retried_and_reported():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(FeedError, match=r"connection refused \(after 3 attempts\)"):
        fetcher().get(f"http://127.0.0.1:{port}/feed")


def test_redirects_are_followed(feed_server):
    target = feed_server.add("/new", {"body": FEED})
    url = feed_server.add("/old", {"status": 301, "headers": {"Location": target}})
    r = fetcher().get(url)
    assert r.body == FEED and r.url == target


@pytest.mark.parametrize(
    ("routes", "start", "reason"),
    [
        ({"/self": "/self"}, "/self", "a redirect loop: back to {base}/self after 1 redirect"),
        ({"/a": "/b", "/b": "/a"}, "/a", "a redirect loop: back to {base}/a after 2 redirects"),
        (
            {f"/r{i}": f"/r{i + 1}" for i in range(8)},
            "/r0",
            "more than 5 redirects (the next to {base}/r6)",
        ),
        (
            {"/ftp": "ftp://127.0.0.1:9/feed"},
            "/ftp",
            "redirected to 'ftp://127.0.0.1:9/feed': only http and https are followed",
        ),
    ],
)
def test_redirects_that_cannot_be_followed_are_one_line(feed_server, routes, start, reason):
    for path, target in routes.items():
        feed_server.add(path, {"status": 302, "headers": {"Location": target}})
    sleeps = Sleeps()
    with pytest.raises(FeedError) as info:
        fetcher(sleep=sleeps).get(feed_server.url(start))
    assert info.value.reason == reason.format(base=feed_server.base)
    assert info.value.status == 302 and sleeps.calls == []  # not retried


def test_five_redirects_are_followed(feed_server):
    for i in range(5):
        feed_server.add(f"/r{i}", {"status": 301, "headers": {"Location": f"/r{i + 1}"}})
    feed_server.add("/r5", {"body": FEED})
    r = fetcher().get(feed_server.url("/r0"))
    assert r.body == FEED and r.url == feed_server.url("/r5")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1/feed", "not a valid URL: Invalid IPv6 URL"),
        ("http://127.0.0.1:99999/feed", "not a valid URL: the port is not a number up to 65535"),
        ("http://127.0.0.1:80a/feed", "not a valid URL: the port is not a number up to 65535"),
        ("http://127.0.0.1/a feed", "not a valid URL: it contains spaces or control characters"),
        ("http://127.0.0.1/a\r\nX: y", "not a valid URL: it contains spaces or control characters"),
        ("http:///feed", "not a valid URL: no host"),
        ("http://" + "a" * 64 + ".example/feed", "not a valid URL: not a valid host name"),
    ],
)
def test_invalid_urls_fail_at_once(url, reason):
    sleeps = Sleeps()
    with pytest.raises(FeedError) as info:
        fetcher(sleep=sleeps).get(url)
    assert info.value.reason == reason and sleeps.calls == []


def test_a_redirect_to_an_invalid_url(feed_server):
    url = feed_server.add("/x", {"status": 302, "headers": {"Location": "http://[::1/feed"}})
    with pytest.raises(FeedError, match=r": redirected to 'http://\[::1/feed': Invalid IPv6 URL$"):
        fetcher().get(url)


def test_what_a_server_says_is_one_line_in_an_error():
    # A status line may carry control characters and run to 64 KiB.
    status = b"HTTP/1.1 404 Not\x0bFound\x01 " + b"x" * 20_000 + b"\r\nContent-Length: 0\r\n\r\n"
    with dripping_server(status, 0) as url, pytest.raises(FeedError) as info:
        fetcher().get(url)
    reason = info.value.reason
    assert reason.startswith("HTTP 404 Not Found xxx") and reason.endswith("x\u2026")
    assert len(reason) == 300 and reason.isprintable()


def test_politeness_one_request_per_interval_per_host(feed_server):
    """The interval runs from the end of one answer to the next request: the server never
    sees two requests closer than min_interval, however late the first reached it (here
    its answer took 0.3 s; counted from the first request's start, the second came 0.1 s
    after that answer)."""
    url = feed_server.add("/x", {"body": FEED, "delay": 0.3})
    f = Fetcher(FetchSettings(min_interval=0.4, retries=0), backoff=0.01)
    for _ in range(3):
        f.get(url)
    times = [h.at for h in feed_server.hits("/x")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= 0.7 for g in gaps), gaps


def test_local_files(tmp_path):
    p = tmp_path / "feed.xml"
    p.write_bytes(FEED)
    f = fetcher()
    assert f.get(str(p)).body == FEED
    assert f.get(p.as_uri()).body == FEED
    assert f.get(str(p)).local
    with pytest.raises(FeedError, match="no such file"):
        f.get(str(tmp_path / "nope.xml"))
    with pytest.raises(FeedError, match="is a directory"):
        f.get(str(tmp_path))
    with pytest.raises(FeedError, match="over the 10-byte cap"):
        fetcher(max_bytes=10).get(str(p))
    with pytest.raises(FeedError, match="unsupported URL scheme 'ftp'"):
        f.get("ftp://example.org/feed")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/dev/zero", "a character device"),
        ("file:///dev/zero", "a character device"),
        ("file:///dev/urandom", "a character device"),
        ("/dev/null", "a character device"),
    ],
)
def test_devices_are_refused(path, kind):
    started = time.monotonic()
    with pytest.raises(FeedError, match=f"^{path}: {kind}, not a regular file$"):
        fetcher().get(path)
    assert time.monotonic() - started < 1


def test_a_fifo_without_a_writer_is_refused_at_once(tmp_path):
    fifo = tmp_path / "feed.fifo"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def get() -> None:
        try:
            fetcher().get(str(fifo))
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    reader = threading.Thread(target=get, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # it blocks in open(): let it go before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(5)
        pytest.fail("reading a FIFO without a writer hung")
    (error,) = outcome
    assert isinstance(error, FeedError) and error.reason == "a FIFO, not a regular file"


def test_a_socket_file_is_refused(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(FeedError, match="a socket, not a regular file"):
            fetcher().get(str(path))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_the_cap_holds_for_a_file_whose_size_lies():
    # /proc files are regular files of size 0 that read as more: the cap is counted on
    # what is read, not on what stat says.
    assert os.stat("/proc/self/status").st_size == 0
    with pytest.raises(FeedError, match="over the 100-byte cap"):
        fetcher(max_bytes=100).get("/proc/self/status")
    assert b"Name:" in fetcher().get("/proc/self/status").body


def test_unusable_paths_are_one_line_errors(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "file").write_bytes(FEED)
    f = fetcher()
    with pytest.raises(FeedError, match=r"cannot read: Too many levels of symbolic links$"):
        f.get(str(tmp_path / "loop"))
    with pytest.raises(FeedError, match=r"cannot read: Not a directory$"):
        f.get(str(tmp_path / "file" / "x.xml"))
    with pytest.raises(FeedError, match=r"cannot read: the path contains a NUL character$"):
        f.get((tmp_path / "file").as_uri() + "%00.xml")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file(tmp_path):
    p = tmp_path / "secret.xml"
    p.write_bytes(FEED)
    p.chmod(0)
    with pytest.raises(FeedError, match=r"cannot read: Permission denied$"):
        fetcher().get(str(p))


def test_default_user_agent_names_the_operator():
    ua = default_user_agent("https://papers.example.org", "ops@example.org")
    assert (
        ua.startswith("newsletter/")
        and "+https://papers.example.org" in ua
        and "ops@example.org" in ua
    )
