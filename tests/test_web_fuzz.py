"""Hostile input against the real WSGI app: arbitrary unicode and bytes in paths, tokens,
form fields, cookies and headers never make a 500, and every answer carries the page
headers.  Driven through werkzeug's test client (no sockets: thousands of requests in
seconds); test_web.py speaks real HTTP for the same routes."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client, TestResponse

from newsletter.config import load_settings
from newsletter.links import preferences_token, unsubscribe_token
from newsletter.models import SubscriberStatus
from newsletter.store import Store
from newsletter.web import Rate, make_app

SECRET = "test-secret-key-for-the-fuzz-tests"
#: Headers every answer carries, error pages included.
PAGE_HEADERS = (
    "Content-Security-Policy",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "X-Frame-Options",
    "Cross-Origin-Opener-Policy",
    "Cache-Control",
)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Any text, including lone surrogates, controls, NUL and characters outside the BMP.
any_text = st.text(st.characters(codec=None), max_size=80)
#: A header value as it can arrive: any bytes but CR, LF and NUL, read as Latin-1 (WSGI).
header_value = st.binary(max_size=80).map(lambda b: b.translate(None, b"\r\n\0").decode("latin-1"))
#: Text that looks a little like a token, so that the parser gets past its first checks.
tokenish = st.text(
    st.sampled_from("ABCabc019-_.=%/é\u200b\x00\ud800😀 \n"),
    min_size=1,
    max_size=80,
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[Client, Store, int]]:
    config = tmp_path / "newsletter.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path}/fuzz.db"\n'
        '[list]\nbase_url = "http://127.0.0.1"\n'
        f'[delivery]\ntransport = "outbox"\noutbox_dir = "{tmp_path}/outbox"\n'
        # library ids typed into a form are looked up here: nothing listens on port 9
        '[fetch]\narxiv_api_url = "http://127.0.0.1:9/api/query"\nmin_interval = 0\n',
        encoding="utf-8",
    )
    settings_ = load_settings(config, env={"NEWSLETTER_SECRET_KEY": SECRET})
    store = Store.open(settings_.database_url)
    sub, _ = store.add_subscriber("ada@example.org", "Ada", now=_now())
    # No rate limits: the fuzz is to reach the code behind them.
    web = make_app(
        settings_, store, address_rate=Rate(burst=0, every=0), client_rate=Rate(burst=0, every=0)
    )
    try:
        yield Client(web), store, sub.id
    finally:
        store.close()


def _now():  # type: ignore[no-untyped-def]
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def _utf8_header(text: str) -> str:
    """``text`` sent as UTF-8 bytes in a header, as WSGI hands it over (Latin-1)."""
    raw = text.encode("utf-8", "surrogatepass").translate(None, b"\r\n\0")
    return raw.decode("latin-1")


def check(r: TestResponse) -> TestResponse:
    assert r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:500])
    missing = [h for h in PAGE_HEADERS if h not in r.headers]
    assert missing == [], (r.status_code, missing)
    assert r.mimetype == "text/html"
    return r


def h1(r: TestResponse) -> str:
    m = re.search(r"<h1[^>]*>(.*?)</h1>", r.get_data(as_text=True), re.S)
    return m.group(1).strip() if m else ""


def path_of(segment: str | bytes) -> str:
    """``segment`` percent-encoded as one path segment (bytes as they are, text as UTF-8
    with lone surrogates kept as the bytes a careless encoder would send)."""
    if isinstance(segment, str):
        segment = segment.encode("utf-8", "surrogatepass")
    return urllib.parse.quote_from_bytes(segment, safe="")


@FUZZ
@given(token=st.one_of(any_text, tokenish, st.binary(max_size=80)))
def test_any_token_is_a_bad_link_page(app, token):
    client, store, sid = app
    seg = path_of(token)
    for method, route in (
        ("GET", "/unsubscribe/"),
        ("POST", "/unsubscribe/"),
        ("GET", "/confirm/"),
        ("GET", "/preferences/"),
        ("POST", "/preferences/"),
    ):
        r = check(
            client.open(
                route + seg,
                method=method,
                data={"List-Unsubscribe": "One-Click"} if method == "POST" else None,
            )
        )
        decoded = urllib.parse.unquote(seg, errors="replace")
        if decoded and "/" not in decoded:
            assert r.status_code == 400, (route, token, r.status_code)
            assert h1(r) == "This link is not valid"
    assert store.subscriber(sid).status is SubscriberStatus.ACTIVE


@FUZZ
@given(path=st.one_of(any_text, st.binary(max_size=120)), method=st.sampled_from(["GET", "POST"]))
def test_any_path_is_answered_with_a_page(app, path, method):
    client, _, _ = app
    raw = path.encode("utf-8", "surrogatepass") if isinstance(path, str) else path
    check(client.open("/" + urllib.parse.quote_from_bytes(raw, safe="/"), method=method))
    check(client.open("/archive/" + path_of(path), method=method))


@FUZZ
@given(
    csrf=st.one_of(any_text, tokenish),
    email=any_text,
    name=st.one_of(any_text, st.text(max_size=400)),
    cookie=st.one_of(st.none(), any_text, tokenish),
    genuine_csrf=st.booleans(),
)
def test_any_sign_up_form_is_answered_with_a_page(app, csrf, email, name, cookie, genuine_csrf):
    client, _, _ = app
    if genuine_csrf:  # get past the CSRF check, to the address and name handling
        form = client.get("/subscribe")
        m = re.search(r'name="csrf" value="([^"]+)"', form.get_data(as_text=True))
        assert m
        csrf = m.group(1)
    elif cookie is not None:
        client.set_cookie("nl_csrf", _utf8_header(cookie))
    fields = {
        "csrf": csrf.encode("utf-8", "surrogatepass"),
        "email": email.encode("utf-8", "surrogatepass"),
        "name": name.encode("utf-8", "surrogatepass"),
    }
    body = urllib.parse.urlencode(fields).encode()
    r = check(
        client.post("/subscribe", data=body, content_type="application/x-www-form-urlencoded")
    )
    assert r.status_code in (200, 400), r.status_code


@FUZZ
@given(
    body=st.binary(max_size=300),
    content_type=st.one_of(
        st.sampled_from(
            [
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=xyz",
                "multipart/form-data",
                "text/plain",
            ]
        ),
        header_value,
    ),
    header=st.one_of(header_value, any_text.map(_utf8_header)),
)
def test_any_body_and_headers_are_answered_with_a_page(app, body, content_type, header):
    client, store, sid = app
    token = unsubscribe_token(SECRET, sid)
    headers = {
        "Content-Type": content_type,
        "Cookie": header,
        "Sec-Fetch-Site": header,
        "Accept-Language": header,
    }
    prefs = f"/preferences/{preferences_token(SECRET, sid, _now().date())}"
    for path in (f"/unsubscribe/{token}", "/subscribe", prefs):
        check(client.post(path, data=body, headers=headers))
    check(client.get(prefs, headers=headers))
    check(client.get("/subscribe", headers=headers))
    # Only a body that says One-Click unsubscribes; anything else changes nothing.
    if b"One-Click" not in body:
        assert store.subscriber(sid).status is SubscriberStatus.ACTIVE


def multipart(fields: list[tuple[str, str]], upload: tuple[bytes, str] | None) -> tuple[bytes, str]:
    """A multipart/form-data body as a careless client may send it: text as UTF-8 with lone
    surrogates kept as their bytes (not UTF-8 at all), a file name with any characters."""
    boundary = "fuzz-boundary-5Tq2"
    out = bytearray()
    for name, value in fields:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode("utf-8", "surrogatepass") + b"\r\n"
    if upload is not None:
        data, filename = upload
        quoted = filename.encode("utf-8", "surrogatepass").translate(None, b'\r\n"\\')
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="library_file"; '.encode()
            + b'filename="'
            + (quoted or b"f")
            + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
            + data
            + b"\r\n"
        )
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


@FUZZ
@given(
    keywords=any_text,
    authors=any_text,
    categories=any_text,
    library=any_text,
    only=st.sampled_from(["on", "", "yes", "\x00"]),
    remove=st.lists(any_text, max_size=3),
    upload=st.one_of(st.none(), st.tuples(st.binary(max_size=300), any_text)),
)
def test_any_preferences_form_is_answered_with_a_page(
    app, keywords, authors, categories, library, only, remove, upload
):
    client, store, sid = app
    path = f"/preferences/{preferences_token(SECRET, sid, _now().date())}"
    form = client.get(path)
    m = re.search(r'name="csrf" value="([^"]+)"', form.get_data(as_text=True))
    assert m
    fields = [
        ("csrf", m.group(1)),
        ("keywords", keywords),
        ("authors", authors),
        ("categories", categories),
        ("library", library),
        ("only_for_you", only),
        *(("remove", key) for key in remove),
    ]
    body, content_type = multipart(fields, upload)
    before = store.interests(sid)
    r = check(client.post(path, data=body, content_type=content_type))
    assert r.status_code in (200, 400), r.status_code
    if r.status_code == 400:  # refused, and said why: nothing stored
        assert '<p class="problem" role="alert"' in r.get_data(as_text=True)
        assert store.interests(sid) == before
