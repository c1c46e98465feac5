"""`newsletter serve` over real HTTP: waitress on 127.0.0.1 in a thread (and once as the real
command in a subprocess), the confirmation emails caught by aiosmtpd, the archive built by
the real pipeline from the bundled sample feeds."""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import http.client
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter import links
from newsletter.cli import cli
from newsletter.config import Settings, load_settings
from newsletter.links import unsubscribe_token
from newsletter.models import IssueStatus, SubscriberStatus
from newsletter.store import Store
from newsletter.tokens import sign
from newsletter.web import Limits, Rate, make_app, make_server
from newsletter.web.signup import confirm_token

SECRET = "test-secret-key-for-the-web-tests"
ENV = {"NEWSLETTER_SECRET_KEY": SECRET}


# --------------------------------------------------------------------------- client


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: str

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


@dataclass
class Client:
    """One HTTP request per connection (Connection: close), cookies kept like a browser."""

    host: str
    port: int
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        cookies: bool = True,
    ) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            h = {"Connection": "close", **(headers or {})}
            if cookies and self.cookies:
                h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read().decode("utf-8", "replace")
            for value in (resp.headers.get_all("Set-Cookie") or []) if cookies else []:
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
            return Reply(resp.status, resp.headers, data)
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post_form(self, path: str, fields: dict[str, str], **kw: Any) -> Reply:
        body = urllib.parse.urlencode(fields).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **kw.pop("headers", {})}
        return self.request("POST", path, body, headers, **kw)

    def post_multipart(self, path: str, fields: dict[str, str]) -> Reply:
        boundary = "----nl-test-boundary-7MA4YWxkTrZu0gW"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
            for k, v in fields.items()
        ]
        body = ("".join(parts) + f"--{boundary}--\r\n").encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return self.request("POST", path, body, headers)


def form_field(html: str, name: str) -> str:
    m = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert m, f"no field {name!r} in the page"
    return m.group(1)


def h1(html: str) -> str:
    m = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    return m.group(1).strip() if m else ""


# --------------------------------------------------------------------------- server


@dataclass
class Web:
    client: Client
    settings: Settings
    store: Store
    base: str

    def path(self, url: str) -> str:
        """The path of one of our absolute URLs (links in emails are absolute)."""
        assert url.startswith(self.base), url
        return url[len(self.base) :]


@contextlib.contextmanager
def serving(server: Any) -> Iterator[int]:
    """Run a server from make_server in a thread for the ``with`` block; its port."""
    from waitress import wasyncore

    stop = threading.Event()

    def loop() -> None:
        # server.run() without end; this loop stops between two polls, so teardown can
        # close every socket from this thread's side of things.
        while not stop.is_set():
            wasyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        stop.set()
        thread.join(10)
        server.task_dispatcher.shutdown()
        for dispatcher in list(server._map.values()):
            dispatcher.close()  # the listening socket, the trigger, kept-alive channels


@pytest.fixture
def serve(tmp_path: Path, write_config: Callable[..., Path]) -> Iterator[Callable[..., Web]]:
    """``serve(extra_toml, database_url=, trusted_proxy=, limits=, **make_app_kwargs)``: the
    app in waitress on a free port."""
    with contextlib.ExitStack() as stack:

        def start(
            extra: str = "",
            *,
            database_url: str | None = None,
            trusted_proxy: str | None = None,
            limits: Limits | None = None,
            **kwargs: Any,
        ) -> Web:
            holder: dict[str, Any] = {}
            server = make_server(
                lambda env, sr: holder["app"](env, sr),
                host="127.0.0.1",
                port=0,
                trusted_proxy=trusted_proxy,
                limits=limits,
            )
            base = f"http://127.0.0.1:{server.effective_port}"
            db = f'database_url = "{database_url}"\n' if database_url else ""
            config = write_config(
                db + extra + "\n[list]\n"
                'name = "Test <Papers> & Co"\n'
                'from_address = "papers@example.org"\n'
                f'base_url = "{base}"\n'
            )
            settings = load_settings(config, env=ENV)
            store = Store.open(settings.database_url)
            stack.callback(store.close)  # after the server stops (callbacks run last first)
            holder["app"] = make_app(settings, store, **kwargs)
            port = stack.enter_context(serving(server))
            return Web(Client("127.0.0.1", port), settings, store, base)

        yield start


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def add_active(web: Web, addr: str = "ada@example.org", name: str = "Ada") -> int:
    sub, _ = web.store.add_subscriber(addr, name, now=now())
    return sub.id


def status(web: Web, sid: int | str) -> SubscriberStatus:
    sub = web.store.subscriber(sid)
    assert sub is not None
    return sub.status


# --------------------------------------------------------------------------- unsubscribe


def test_one_click_post_urlencoded_is_immediate_and_idempotent(serve):
    web = serve()
    sid = add_active(web)
    path = f"/unsubscribe/{unsubscribe_token(SECRET, sid)}"
    for _ in range(2):  # the same answer every time
        r = web.client.post_form(path, {"List-Unsubscribe": "One-Click"}, cookies=False)
        assert r.status == 200
        assert r.header("Location") == ""
        assert "You are unsubscribed" in r.body
        assert status(web, sid) is SubscriberStatus.UNSUBSCRIBED


def test_one_click_post_multipart(serve):
    web = serve()
    sid = add_active(web)
    r = web.client.post_multipart(
        f"/unsubscribe/{unsubscribe_token(SECRET, sid)}", {"List-Unsubscribe": "One-Click"}
    )
    assert r.status == 200
    assert status(web, sid) is SubscriberStatus.UNSUBSCRIBED


def test_one_click_post_must_say_one_click(serve):
    web = serve()
    sid = add_active(web)
    path = f"/unsubscribe/{unsubscribe_token(SECRET, sid)}"
    assert web.client.post_form(path, {"something": "else"}).status == 400
    assert web.client.request("POST", path).status == 400
    assert status(web, sid) is SubscriberStatus.ACTIVE


def test_get_shows_a_button_and_changes_nothing(serve):
    web = serve()
    sid = add_active(web, "o'brien+news@example.org")
    path = f"/unsubscribe/{unsubscribe_token(SECRET, sid)}"
    for _ in range(3):  # link scanners
        r = web.client.get(path)
        assert r.status == 200
        assert status(web, sid) is SubscriberStatus.ACTIVE
    assert "o&#39;brien+news@example.org" in r.body  # escaped
    action = re.search(r'<form method="post" action="([^"]+)"', r.body)
    assert action and action.group(1) == path
    assert form_field(r.body, "List-Unsubscribe") == "One-Click"
    # The button posts exactly what a mail client's one-click does.
    r = web.client.post_form(action.group(1), {"List-Unsubscribe": "One-Click"})
    assert r.status == 200
    assert status(web, sid) is SubscriberStatus.UNSUBSCRIBED


def _forgeries(valid: str) -> list[str]:
    payload, mac = valid.split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    return [
        f"{payload}.{flipped}",  # changed signature
        valid[:-3],  # truncated
        payload,  # no signature at all
        f"{payload}.",
        f".{mac}",
        f"{payload}.{mac}.{mac}",
        sign("another-secret", "unsubscribe", "1"),  # someone else's key
        "x" * 600,  # oversized
    ]


def test_forged_truncated_and_wrong_purpose_tokens_change_nothing(serve):
    web = serve()
    sid = add_active(web)
    valid = unsubscribe_token(SECRET, sid)
    other_purpose = [
        sign(SECRET, "confirm", str(sid)),
        sign(SECRET, "csrf", str(sid)),
        confirm_token(SECRET, web.store.subscriber(sid), now=time.time()),
    ]
    for token in _forgeries(valid) + other_purpose:
        quoted = urllib.parse.quote(token, safe="")
        for r in (
            web.client.get(f"/unsubscribe/{quoted}"),
            web.client.post_form(f"/unsubscribe/{quoted}", {"List-Unsubscribe": "One-Click"}),
        ):
            assert r.status in (400, 404), token
            assert "not valid" in r.body or "not found" in r.body.lower()
        assert status(web, sid) is SubscriberStatus.ACTIVE
    # An unsubscribe token is not a confirmation either.
    web.store.set_subscriber_status(sid, SubscriberStatus.UNSUBSCRIBED, now=now())
    assert web.client.get(f"/confirm/{valid}").status == 400
    assert status(web, sid) is SubscriberStatus.UNSUBSCRIBED


def test_fuzz_random_tokens_are_never_accepted(serve):
    web = serve()
    ids = [add_active(web, f"reader{i}@example.org") for i in range(5)]
    valid = unsubscribe_token(SECRET, ids[0])
    rng = random.Random(8058)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    tokens = []
    for i in range(400):  # bounded: ~1 s
        if i % 2:
            tokens.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))))
        else:  # near misses: one character of a real token changed
            pos = rng.randrange(len(valid))
            c = rng.choice(alphabet.replace(valid[pos], ""))
            tokens.append(valid[:pos] + c + valid[pos + 1 :])
    accepted = []
    for t in tokens:
        path = "/unsubscribe/" + urllib.parse.quote(t, safe="")
        r = web.client.post_form(path, {"List-Unsubscribe": "One-Click"})
        if r.status == 200:
            accepted.append(t)
        r = web.client.get("/confirm/" + urllib.parse.quote(t, safe=""))
        if r.status == 200:
            accepted.append(t)
    assert accepted == []
    assert all(status(web, i) is SubscriberStatus.ACTIVE for i in ids)


def test_unsubscribe_link_from_a_real_issue_works(serve, demo_db):
    db_url, _, eml = demo_db
    web = serve(database_url=db_url)
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    https = re.search(r"<(http[^>]+)>", str(msg["List-Unsubscribe"])).group(1)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = urllib.parse.urlsplit(https).path
    rcpt = str(msg["To"]).split("<")[-1].rstrip(">")
    r = web.client.post_form(path, {"List-Unsubscribe": "One-Click"}, cookies=False)
    assert r.status == 200
    assert status(web, rcpt) is SubscriberStatus.UNSUBSCRIBED


def test_unsubscribe_without_token_explains(serve):
    web = serve()
    r = web.client.get("/unsubscribe/")
    assert r.status == 200
    assert "Unsubscribe" in r.body


# --------------------------------------------------------------------------- sign-up


def signup(web: Web, addr: str, name: str = "", headers: dict[str, str] | None = None) -> Reply:
    form = web.client.get("/subscribe")
    assert form.status == 200
    return web.client.post_form(
        "/subscribe",
        {"csrf": form_field(form.body, "csrf"), "email": addr, "name": name},
        headers=headers or {},
    )


def confirm_link(received: Any, addr: str) -> str:
    msgs = [r.message for r in received if addr in r.rcpt_tos]
    assert msgs, f"no confirmation email to {addr}"
    body = msgs[-1].get_content()
    m = re.search(r"(http://\S+/confirm/\S+)", body)
    assert m, body
    return m.group(1)


def test_double_opt_in_round_trip(serve, smtp_server):
    smtp = smtp_server()
    web = serve(smtp.config())
    r = signup(web, "  Ada.Lovelace@Example.ORG ", "Ada")
    assert r.status == 200
    assert h1(r.body) == "Check your inbox"
    addr = "ada.lovelace@example.org"
    sub = web.store.subscriber(addr)
    assert sub is not None and sub.status is SubscriberStatus.PENDING

    # The confirmation email, as aiosmtpd received it.
    assert len(smtp.received) == 1
    msg = smtp.received[0].message
    assert smtp.received[0].rcpt_tos == [addr]
    assert msg["To"] == addr
    assert "Confirm your subscription" in msg["Subject"]
    assert msg["Auto-Submitted"] == "auto-generated"
    link = confirm_link(smtp.received, addr)

    # A pending sign-up gets no issue: the ledger queues active subscribers only.
    issue = web.store.save_issue(
        dt.date(2025, 3, 14),
        status=IssueStatus.READY,
        subject="s",
        preheader="p",
        html="<html><body>x</body></html>",
        text="x",
        papers=[],
        now=now(),
    )
    assert web.store.queue_deliveries(issue.id, now=now()) == 0

    r = web.client.get(web.path(link), cookies=False)
    assert r.status == 200
    assert h1(r.body) == "You are subscribed"
    sub = web.store.subscriber(addr)
    assert sub.status is SubscriberStatus.ACTIVE and sub.name == "Ada"
    assert web.client.get(web.path(link)).status == 200  # clicking twice is harmless
    assert web.store.queue_deliveries(issue.id, now=now()) == 1


def test_long_non_ascii_name_and_longest_address_get_a_working_link(serve, smtp_server):
    smtp = smtp_server()
    web = serve(smtp.config())
    name = "\U0001f600" * 100  # 400 bytes of UTF-8: the name no longer rides in the link
    addr = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".org"
    assert len(addr) == 254
    r = signup(web, addr, name)
    assert r.status == 200 and h1(r.body) == "Check your inbox"
    link = confirm_link(smtp.received, addr)
    token = link.rsplit("/", 1)[1]
    assert len(token) < 80, len(token)  # the same size for any name and address
    r = web.client.get(web.path(link), cookies=False)
    assert r.status == 200, r.body
    assert h1(r.body) == "You are subscribed"
    sub = web.store.subscriber(addr)
    assert sub.status is SubscriberStatus.ACTIVE and sub.name == name


def test_a_unicode_domain_gets_its_confirmation_at_the_a_label(serve, smtp_server):
    """Stored as typed (IDNA 2008), mailed to the A-label form: the envelope and the To
    header are ASCII, and the link confirms the stored address."""
    smtp = smtp_server()
    web = serve(smtp.config())
    r = signup(web, "Hans@Straße.de", "Hans")
    assert r.status == 200 and h1(r.body) == "Check your inbox"
    assert "hans@straße.de" in r.body
    assert [m.rcpt_tos for m in smtp.received] == [["hans@xn--strae-oqa.de"]]
    msg = smtp.received[0].message
    assert msg["To"] == "hans@xn--strae-oqa.de"
    link = confirm_link(smtp.received, "hans@xn--strae-oqa.de")
    assert web.client.get(web.path(link)).status == 200
    assert status(web, "hans@straße.de") is SubscriberStatus.ACTIVE


def test_the_name_typed_last_is_kept_until_confirmed(serve, smtp_server):
    smtp = smtp_server()
    web = serve(smtp.config(), address_rate=Rate(burst=10, every=60))
    signup(web, "ada@example.org", "Ada")
    first = web.path(confirm_link(smtp.received, "ada@example.org"))
    signup(web, "ada@example.org", "Ada Lovelace")  # a typo fixed before confirming
    signup(web, "ada@example.org", "")  # no name: the one typed before stays
    assert web.client.get(first).status == 200  # the first link still works
    sub = web.store.subscriber("ada@example.org")
    assert sub.status is SubscriberStatus.ACTIVE and sub.name == "Ada Lovelace"
    # A form cannot rename someone already on the list, and their link keeps their name.
    web.store.set_subscriber_status(sub.id, SubscriberStatus.UNSUBSCRIBED, now=now())
    signup(web, "ada@example.org", "Mallory was here")
    assert web.store.subscriber("ada@example.org").name == "Ada Lovelace"
    assert web.client.get(web.path(confirm_link(smtp.received, "ada@example.org"))).status == 200
    sub = web.store.subscriber("ada@example.org")
    assert sub.status is SubscriberStatus.ACTIVE and sub.name == "Ada Lovelace"


def test_links_in_the_older_format_still_confirm(serve):
    """Links mailed before the name left the token (id:stamp:name) work until they expire."""
    from newsletter.store.signup import signup_stamp

    web = serve()
    sub = web.store.add_pending("grace@example.org", "", now=now())
    subject = f"{sub.id}:{signup_stamp(sub)}:Grace Hopper"
    token = sign(SECRET, "confirm", subject, expires=int(time.time()) + 3 * 86400)
    assert web.client.get(f"/confirm/{token}").status == 200
    sub = web.store.subscriber(sub.id)
    assert sub.status is SubscriberStatus.ACTIVE and sub.name == "Grace Hopper"


def test_the_answer_is_the_same_for_every_address(serve, smtp_server):
    smtp = smtp_server()
    web = serve(smtp.config())
    active = add_active(web, "active@example.org")
    gone = add_active(web, "gone@example.org")
    web.store.set_subscriber_status(gone, SubscriberStatus.UNSUBSCRIBED, now=now())
    pages = {}
    for addr in ("active@example.org", "gone@example.org", "new@example.org"):
        r = signup(web, addr)
        assert r.status == 200
        pages[addr] = r.body.replace(addr, "ADDRESS")
    assert len(set(pages.values())) == 1
    # Nobody's status changed silently; each address got the same email.
    assert status(web, active) is SubscriberStatus.ACTIVE
    assert status(web, gone) is SubscriberStatus.UNSUBSCRIBED
    assert status(web, "new@example.org") is SubscriberStatus.PENDING
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == [
        "active@example.org",
        "gone@example.org",
        "new@example.org",
    ]
    # Coming back after unsubscribing goes through the confirmation again.
    assert web.client.get(web.path(confirm_link(smtp.received, "gone@example.org"))).status == 200
    assert status(web, gone) is SubscriberStatus.ACTIVE


def test_confirmation_sent_before_an_unsubscribe_cannot_be_replayed(serve, smtp_server):
    smtp = smtp_server()
    web = serve(smtp.config())
    signup(web, "ada@example.org")
    link = web.path(confirm_link(smtp.received, "ada@example.org"))
    assert web.client.get(link).status == 200
    sid = web.store.subscriber("ada@example.org").id
    path = f"/unsubscribe/{unsubscribe_token(SECRET, sid)}"
    assert web.client.post_form(path, {"List-Unsubscribe": "One-Click"}).status == 200
    r = web.client.get(link)
    assert r.status == 410
    assert "no longer valid" in r.body
    assert status(web, sid) is SubscriberStatus.UNSUBSCRIBED


def test_expired_confirmation_is_refused_with_a_clear_page(serve):
    web = serve()
    sub = web.store.add_pending("late@example.org", "", now=now())
    token = confirm_token(SECRET, sub, now=time.time() - 4 * 86400)
    r = web.client.get(f"/confirm/{token}")
    assert r.status == 410
    assert h1(r.body) == "This link has expired"
    assert 'href="/subscribe"' in r.body
    assert status(web, sub.id) is SubscriberStatus.PENDING
    # A forged one is "not valid", not "expired".
    assert web.client.get(f"/confirm/{token[:-2]}").status == 400


def test_unconfirmed_sign_ups_are_deleted_once_no_link_works(serve):
    from newsletter.store.signup import CONFIRM_DAYS, signup_stamp

    web = serve()
    t = now()
    days = dt.timedelta(days=1)
    old = web.store.add_pending("old@example.org", "", now=t - 2 * CONFIRM_DAYS * days - days)
    # Signed up 5 days ago, again yesterday: every link of the first time had expired, so
    # the row is re-dated and kept while yesterday's link works.
    web.store.add_pending("again@example.org", "", now=t - 5 * days)
    again = web.store.add_pending("again@example.org", "", now=t - days)
    assert again.updated_at == t - days
    # Signed up 2 days ago and again now: the first link still works, so nothing changes.
    first = web.store.add_pending("twice@example.org", "", now=t - 2 * days)
    second = web.store.add_pending("twice@example.org", "", now=t)
    assert signup_stamp(second) == signup_stamp(first)
    active = add_active(web, "active@example.org")

    assert web.store.purge_pending(now=t) == 1
    assert web.store.subscriber(old.id) is None
    assert status(web, active) is SubscriberStatus.ACTIVE
    assert web.store.purge_pending(now=t) == 0
    for sub, sent_at in ((again, t - days), (first, t - 2 * days)):
        token = confirm_token(SECRET, sub, now=sent_at.timestamp())
        assert web.client.get(f"/confirm/{token}").status == 200
        assert status(web, sub.id) is SubscriberStatus.ACTIVE
    # A link to a deleted sign-up says so plainly.
    token = confirm_token(SECRET, old, now=time.time())
    r = web.client.get(f"/confirm/{token}")
    assert r.status == 410 and "no longer valid" in r.body


def test_csrf_is_required(serve, smtp_server):
    smtp = smtp_server()
    web = serve(smtp.config())
    form = web.client.get("/subscribe")
    token = form_field(form.body, "csrf")
    assert "nl_csrf" in web.client.cookies
    assert "HttpOnly" in form.header("Set-Cookie")
    assert "SameSite=Strict" in form.header("Set-Cookie")
    fields = {"csrf": token, "email": "victim@example.org"}
    attempts = [
        web.client.post_form("/subscribe", {**fields, "csrf": ""}),  # no token
        web.client.post_form("/subscribe", fields, cookies=False),  # no cookie
        web.client.post_form(
            "/subscribe", {**fields, "csrf": sign(SECRET, "csrf", "someone-elses-cookie-value")}
        ),
        web.client.post_form(  # expired form
            "/subscribe",
            {**fields, "csrf": sign(SECRET, "csrf", web.client.cookies["nl_csrf"], expires=1)},
        ),
        web.client.post_form("/subscribe", fields, headers={"Sec-Fetch-Site": "cross-site"}),
    ]
    for r in attempts:
        assert r.status == 400
        assert "expired or did not come from this page" in r.body
    assert web.store.subscriber("victim@example.org") is None
    assert smtp.received == []
    assert web.client.post_form("/subscribe", fields).status == 200  # the real form works


def test_sign_up_rate_limits(serve, smtp_server):
    smtp = smtp_server()
    web = serve(
        smtp.config(), address_rate=Rate(burst=1, every=3600), client_rate=Rate(burst=4, every=60)
    )
    # Per address: the second request looks the same but sends nothing.
    assert signup(web, "ada@example.org").status == 200
    assert signup(web, "ada@example.org").status == 200
    assert len(smtp.received) == 1
    assert signup(web, "grace@example.org").status == 200
    assert signup(web, "alan@example.org").status == 200
    # Per client: the fifth post from this IP is refused.
    r = signup(web, "edsger@example.org")
    assert r.status == 429
    assert r.header("Retry-After") == "60"
    assert web.store.subscriber("edsger@example.org") is None
    assert len(smtp.received) == 3


@pytest.mark.parametrize("proxy", [None, "127.0.0.1"])
def test_the_client_limit_counts_forwarded_clients_only_from_the_proxy(serve, proxy):
    web = serve(client_rate=Rate(burst=1, every=3600), trusted_proxy=proxy)
    first = signup(web, "ada@example.org", headers={"X-Forwarded-For": "192.0.2.1"})
    other = signup(web, "alan@example.org", headers={"X-Forwarded-For": "192.0.2.2"})
    again = signup(web, "grace@example.org", headers={"X-Forwarded-For": "192.0.2.1"})
    assert first.status == 200
    # From the proxy, each forwarded client has its own limit; from anyone else the
    # header is ignored and every post counts against the connecting address.
    assert other.status == (200 if proxy else 429)
    assert again.status == 429


def test_bad_address_is_shown_escaped(serve):
    web = serve()
    r = signup(web, '<script>alert(1)</script>@x"y')
    assert r.status == 400
    assert "<script>alert" not in r.body
    assert "&lt;script&gt;" in r.body
    assert "Please check the address" in r.body


def test_smtp_down_gives_a_retry_page(serve):
    from smtp_server import free_port

    nobody = free_port()  # nothing listens there
    web = serve(
        f'[delivery]\ntransport = "smtp"\n[smtp]\nhost = "127.0.0.1"\nport = {nobody}\n'
        'tls = "none"\ntimeout = 2\n'
    )
    r = signup(web, "ada@example.org")
    assert r.status == 503
    assert "try again later" in r.body.lower()


# --------------------------------------------------------------------------- safety


def test_security_headers_and_no_redirects(serve):
    web = serve()
    r = web.client.get("/subscribe")
    csp = r.header("Content-Security-Policy")
    assert "default-src 'none'" in csp and "style-src 'sha256-" in csp
    assert "frame-ancestors 'none'" in csp
    assert r.header("X-Content-Type-Options") == "nosniff"
    assert r.header("Referrer-Policy") == "no-referrer"
    assert r.header("Cache-Control") == "no-store"
    assert "Test &lt;Papers&gt; &amp; Co" in r.body  # the list name, escaped
    for path in ("/archive", "/archive/", "//archive/", "/subscribe/", "/"):
        r = web.client.get(path)
        assert r.status in (200, 404), path
        assert r.header("Location") == "", path


def test_error_pages(serve):
    web = serve()
    r = web.client.get("/no/such/page")
    assert r.status == 404 and h1(r.body) == "Page not found"
    assert r.header("Content-Type").startswith("text/html")
    r = web.client.request("PUT", "/subscribe", b"x")
    assert r.status == 405 and h1(r.body) == "Method not allowed"
    assert set(r.header("Allow").replace(" ", "").split(",")) >= {"GET", "POST"}
    assert web.client.request("DELETE", "/unsubscribe/abc").status == 405
    for bad in ("2025-13-45", "yesterday", "2025-03-14x", "0000-00-00"):
        assert web.client.get(f"/archive/{bad}").status == 404


def test_request_bodies_are_capped(serve):
    web = serve()
    sid = add_active(web)
    path = f"/unsubscribe/{unsubscribe_token(SECRET, sid)}"
    big = urllib.parse.urlencode({"List-Unsubscribe": "One-Click", "pad": "x" * 100_000})
    r = web.client.request(
        "POST", path, big.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status == 413
    assert status(web, sid) is SubscriberStatus.ACTIVE


def test_serve_needs_the_secret_key(tmp_path, write_config):
    config = write_config('[delivery]\ntransport = "smtp"\n')
    r = CliRunner(env={"NEWSLETTER_SECRET_KEY": None}).invoke(
        cli, ["-c", str(config), "serve", "--port", "0"]
    )
    assert r.exit_code == 2
    assert r.output.startswith("error: NEWSLETTER_SECRET_KEY is not set: "), r.output
    assert len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        ("0.0.0.0", "http://localhost:8080"),  # reachable from elsewhere
        ("192.0.2.1", "http://localhost:8080"),
        ("127.0.0.1", "https://papers.example.org"),  # behind a public web server
        ("localhost", "http://127.0.0.1.example.org"),
    ],
)
def test_the_public_demo_key_is_for_this_machine_only(write_config, host, base_url):
    """Without a key, an outbox-only setup may serve the demo's links, but only where
    nobody else can reach it: anyone can forge links with a published key."""
    config = write_config(f'[list]\nbase_url = "{base_url}"\n')
    r = CliRunner(env={"NEWSLETTER_SECRET_KEY": None}).invoke(
        cli, ["-c", str(config), "serve", "--host", host, "--port", "0"]
    )
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: NEWSLETTER_SECRET_KEY is not set: "), r.output
    assert "public demo key" in r.output
    assert len(r.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_demo_web_side_works_without_a_key(tmp_path):
    """`newsletter demo`, then `serve` for its config (a real process, no key): the
    unsubscribe link in a real .eml from the outbox unsubscribes, and a sign-up's
    confirmation link from the outbox confirms."""
    demo = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "demo")])
    assert demo.exit_code == 0, demo.output
    assert "newsletter.toml serve" in demo.output  # the demo says how to try the web side
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    config = tmp_path / "demo" / "newsletter.toml"
    emls = sorted((tmp_path / "demo" / "outbox").glob("*/*.eml"))
    assert emls, "the demo wrote no .eml"
    msg = email.message_from_bytes(emls[0].read_bytes(), policy=email.policy.default)
    url = re.search(r"<(http[^>]+)>", str(msg["List-Unsubscribe"])).group(1)
    rcpt = str(msg["To"]).split("<")[-1].rstrip(">")

    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "-c", str(config), "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        said = []
        while not (m := re.search(r" on http://127\.0\.0\.1:(\d+) ", said[-1] if said else "")):
            line = proc.stderr.readline()
            assert line, "".join(said)
            said.append(line)
        assert "public demo key" in "".join(said)  # loudly
        client = Client("127.0.0.1", int(m.group(1)))
        path = urllib.parse.urlsplit(url).path
        r = client.get(path)
        assert r.status == 200 and rcpt in r.body
        r = client.post_form(path, {"List-Unsubscribe": "One-Click"})
        assert r.status == 200 and "You are unsubscribed" in r.body

        form = client.get("/subscribe")
        fields = {"csrf": form_field(form.body, "csrf"), "email": "newcomer@example.org"}
        r = client.post_form("/subscribe", fields)
        assert r.status == 200 and h1(r.body) == "Check your inbox"
        confirmations = list((tmp_path / "demo" / "outbox" / "confirmations").rglob("*.eml"))
        assert len(confirmations) == 1
        body = (
            email.message_from_bytes(confirmations[0].read_bytes(), policy=email.policy.default)
            .get_body(("plain",))
            .get_content()
        )
        link = re.search(r"(http://\S+/confirm/\S+)", body).group(1)
        r = client.get(urllib.parse.urlsplit(link).path)
        assert r.status == 200 and h1(r.body) == "You are subscribed"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            proc.stderr.close()
    assert proc.returncode == 0
    with Store.open(load_settings(config, env={}).database_url) as store:
        assert store.subscriber(rcpt).status is SubscriberStatus.UNSUBSCRIBED
        assert store.subscriber("newcomer@example.org").status is SubscriberStatus.ACTIVE


def serve_cli(config: Path, *args: str) -> Any:
    return CliRunner(env=ENV).invoke(cli, ["-c", str(config), "serve", *args])


@pytest.mark.parametrize(
    "host",
    [
        "999.1.1.1",  # not an address, and no such name
        "no-such-host.invalid",
        "a" * 70 + ".example",  # a label too long for a host name
        "10.254.254.254",  # an address, but not one of this machine's
        "192.0.2.1",
    ],
)
def test_serve_on_a_bad_host_is_one_line_and_exit_2(write_config, host):
    r = serve_cli(write_config(""), "--host", host, "--port", "0")
    assert r.exit_code == 2, r.output
    assert r.output.count("\n") == 1, r.output
    assert r.output.startswith(f"error: cannot listen on {host}:0: "), r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("proxy", ["proxy.local", "10.0.0.300", "*"])
def test_serve_with_a_trusted_proxy_that_is_not_an_address(write_config, proxy):
    """waitress compares it with the client's address as text: a name never matches."""
    r = serve_cli(write_config(""), "--port", "0", "--trusted-proxy", proxy)
    assert r.exit_code == 2, r.output
    assert (
        r.output
        == f"error: trusted proxy {proxy!r}: expected the IP address the front web server connects from\n"
    )


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(write_config):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = serve_cli(write_config(""), "--port", str(port))
    assert r.exit_code == 1, r.output
    assert r.output.count("\n") == 1, r.output
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in r.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root may listen on any port")
def test_serve_on_a_privileged_port_is_one_line_and_exit_2(write_config):
    r = serve_cli(write_config(""), "--port", "1")
    assert r.exit_code == 2, r.output
    assert r.output.count("\n") == 1, r.output
    assert "cannot listen on 127.0.0.1:1: permission denied" in r.output


def test_serve_command_in_a_subprocess(tmp_path, write_config):
    config = write_config('[list]\nbase_url = "http://127.0.0.1"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "-c", str(config), "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENV},
        cwd=tmp_path,
    )
    try:
        line = proc.stderr.readline()
        m = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
        assert m, line
        client = Client("127.0.0.1", int(m.group(1)))
        assert client.get("/subscribe").status == 200
        assert client.get("/archive/").status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            proc.stderr.close()
    assert proc.returncode == 0


# --------------------------------------------------------------------------- archive


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dt.date, Path]:
    """A database with one issue sent through the real pipeline (sample feeds, outbox)."""
    from newsletter.pipeline import issue_date_for, run_fetch, run_send
    from newsletter.samples import DEMO_SUBSCRIBERS, write_demo_config

    config = write_demo_config(tmp_path_factory.mktemp("demo"))
    settings = load_settings(config, env=ENV)
    when = now()
    issue_date = issue_date_for(when, settings)
    with Store.open(settings.database_url) as store:
        store.import_subscribers(DEMO_SUBSCRIBERS, now=when)
        run_fetch(settings, store, now=when)
        report = run_send(settings, store, issue_date=issue_date, now=now, fetch=False)
        assert report.delivery.sent == len(DEMO_SUBSCRIBERS)
    emls = sorted((Path(settings.delivery.outbox_dir) / issue_date.isoformat()).glob("*.eml"))
    return settings.database_url, issue_date, emls[0]


def test_archive_pages(serve, demo_db):
    db_url, issue_date, eml = demo_db
    web = serve(database_url=db_url)
    index = web.client.get("/archive/")
    assert index.status == 200
    href = f'href="/archive/{issue_date.isoformat()}"'
    assert href in index.body
    stored = web.store.issue(issue_date)
    page = web.client.get(f"/archive/{issue_date.isoformat()}")
    assert page.status == 200
    assert "style-src 'unsafe-inline'" in page.header("Content-Security-Policy")
    assert "default-src 'none'" in page.header("Content-Security-Policy")
    # The email's look (its inlined CSS), none of anybody's data.
    assert "<title>" + stored.subject.replace("&", "&amp;")[:20] in page.body
    assert 'class="container"' in page.body
    assert "%%NL_" not in page.body
    for addr, name in (("ada@example.org", "Ada"), ("grace@example.org", "Grace")):
        assert addr not in page.body
        assert f"Hello {name}" not in page.body
    assert re.search(r"/unsubscribe/[A-Za-z0-9_-]+\.", page.body) is None
    assert 'href="/archive/"' in page.body  # back to the list
    # The email's "view in a browser" link is this page.
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    html = msg.get_body(("html",)).get_content()
    web_link = re.search(r'href="(https?://[^"]+/archive/[0-9-]+)"', html).group(1)
    assert web.client.get(urllib.parse.urlsplit(web_link).path).status == 200


def test_every_link_we_make_is_a_page_of_serve(serve, demo_db):
    """Each URL links.py makes for an email, a page or a confirmation mail is answered by
    the app (which routes the same paths), with the page it promises."""
    db_url, issue_date, _ = demo_db
    web = serve(database_url=db_url)
    s = web.settings
    sid = add_active(web, "lin@example.org")
    pending = web.store.add_pending("new@example.org", "New", now=now())
    pages = {
        links.public_url(s, links.SUBSCRIBE): "Subscribe",
        links.public_url(s, links.ARCHIVE): "Past issues",
        links.public_url(s, links.UNSUBSCRIBE): "Unsubscribe",
        links.unsubscribe_url(s, links.unsubscribe_token(SECRET, sid)): "Unsubscribe",
        links.confirm_url(s, confirm_token(SECRET, pending, now=time.time())): "confirmed",
        links.public_url(s, links.PREFERENCES): "Tune your digest",
        links.preferences_url(s, links.preferences_token(SECRET, sid, issue_date)): "Tune",
        links.issue_url(s, issue_date): web.store.issue(issue_date).subject[:20],
    }
    for url, promise in pages.items():
        r = web.client.get(web.path(url))
        assert r.status == 200, url
        assert promise.replace("&", "&amp;") in r.body, (url, r.body[:300])
    assert status(web, sid) is SubscriberStatus.ACTIVE  # a GET changes nobody
    assert status(web, pending.id) is SubscriberStatus.ACTIVE  # ... but a confirmation


def test_archive_is_newest_first_and_skips_empty_days(serve):
    web = serve()
    for d, st in (
        (dt.date(2025, 3, 12), IssueStatus.SENT),
        (dt.date(2025, 3, 14), IssueStatus.READY),
        (dt.date(2025, 3, 13), IssueStatus.EMPTY),
    ):
        web.store.save_issue(
            d,
            status=st,
            subject=f"Issue <{d}>",
            preheader="",
            html="" if st is IssueStatus.EMPTY else f"<html><body><p>{d}</p></body></html>",
            text="",
            papers=[],
            now=now(),
        )
    body = web.client.get("/archive/").body
    assert body.index("2025-03-14") < body.index("2025-03-12")
    assert "Issue &lt;2025-03-14&gt;" in body
    assert "2025-03-13" not in body
    assert web.client.get("/archive/2025-03-13").status == 404
    assert web.client.get("/archive/2025-03-12").status == 200


def test_archive_build_writes_the_same_pages(serve, demo_db, tmp_path):
    db_url, issue_date, _ = demo_db
    web = serve(database_url=db_url)
    out = tmp_path / "site"
    config = web.settings.config_path
    r = CliRunner().invoke(
        cli, ["-c", config, "archive", "build", str(out)], env={"NEWSLETTER_SECRET_KEY": SECRET}
    )
    assert r.exit_code == 0, r.output
    assert "wrote 1 issue page(s)" in r.output
    index = (out / "index.html").read_text(encoding="utf-8")
    assert f'href="{issue_date.isoformat()}/"' in index
    static = (out / issue_date.isoformat() / "index.html").read_text(encoding="utf-8")
    served = web.client.get(f"/archive/{issue_date.isoformat()}").body
    # The same page; only the links between pages are relative in the static copy.
    assert (
        static.replace('href="../"', 'href="/archive/"').replace(
            f'href="{web.base}/subscribe"', 'href="/subscribe"'
        )
        == served
    )


# --------------------------------------------------------------------------- rate limiter


def test_token_buckets_refill_and_stay_bounded():
    from newsletter.web.ratelimit import TokenBuckets

    t = [0.0]
    buckets = TokenBuckets(Rate(burst=2, every=10), clock=lambda: t[0], max_keys=3)
    assert [buckets.allow("a") for _ in range(3)] == [True, True, False]
    t[0] = 9.9
    assert not buckets.allow("a")
    t[0] = 10.1  # 10.1 s after the bucket ran dry: one token back
    assert buckets.allow("a")
    assert not buckets.allow("a")
    assert buckets.allow("b")  # keys are independent
    for key in "cdef":
        buckets.allow(key)
    assert len(buckets._buckets) == 3  # least recently used dropped
    assert TokenBuckets(Rate(burst=0, every=1)).allow("x")  # 0: no limit


# --------------------------------------------------------------------------- hostile input

#: What every page of ours carries (the app's responses and waitress's own error pages).
PAGE_HEADERS = (
    "Content-Security-Policy",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "X-Frame-Options",
    "Cross-Origin-Opener-Policy",
    "Cache-Control",
)


def assert_our_headers(r: Reply) -> None:
    missing = [h for h in PAGE_HEADERS if not r.header(h)]
    assert missing == [], f"HTTP {r.status} lacks {missing}"
    assert "default-src 'none'" in r.header("Content-Security-Policy")
    assert r.header("X-Content-Type-Options") == "nosniff"


def assert_bad_link_page(r: Reply) -> None:
    assert r.status == 400, (r.status, r.body[:300])
    assert h1(r.body) == "This link is not valid"
    assert_our_headers(r)


#: Tokens that are not ASCII, or not UTF-8 at all, as they arrive percent-encoded.
NON_ASCII_TOKENS = (
    "MQA.%C3%A9",  # é where the signature goes
    "%C3%A9.MQA",  # é where the payload goes
    "%C3%A9",
    "MQA.%E2%80%8B",  # a zero-width space
    "%F0%9F%98%80.%F0%9F%98%80",  # emoji
    "MQA.%FF%FE",  # not UTF-8
    "MQA.%00",
)


def test_non_ascii_tokens_are_a_bad_link_page_in_every_route(serve):
    web = serve()
    sid = add_active(web)
    for token in NON_ASCII_TOKENS:
        assert_bad_link_page(web.client.get(f"/unsubscribe/{token}"))
        assert_bad_link_page(
            web.client.post_form(f"/unsubscribe/{token}", {"List-Unsubscribe": "One-Click"})
        )
        assert_bad_link_page(web.client.get(f"/confirm/{token}"))
    # Signed with our key but naming no subscriber id: digits of another script are
    # digits to str.isdigit(), not to int().
    later = int(time.time()) + 3600
    for subject in ("²", "\u0661", f"{sid}\n", "-1"):
        token = urllib.parse.quote(sign(SECRET, "unsubscribe", subject), safe="")
        assert_bad_link_page(web.client.get(f"/unsubscribe/{token}"))
        token = urllib.parse.quote(sign(SECRET, "confirm", f"{subject}:1:", expires=later))
        assert_bad_link_page(web.client.get(f"/confirm/{token}"))
    assert status(web, sid) is SubscriberStatus.ACTIVE


def test_non_ascii_csrf_field_is_the_form_again(serve):
    web = serve()
    form = web.client.get("/subscribe")
    valid = form_field(form.body, "csrf")
    for bad in ("é", f"{valid}é", valid.replace(".", ".é"), "\u200b." + valid, "a.b.c"):
        r = web.client.post_form("/subscribe", {"csrf": bad, "email": "ada@example.org"})
        assert r.status == 400, bad
        assert "expired or did not come from this page" in r.body
        assert_our_headers(r)
    assert web.store.subscriber("ada@example.org") is None
    # A cookie that is not what we set is a fresh form, whatever it holds.
    r = web.client.post_form(
        "/subscribe",
        {"csrf": valid, "email": "ada@example.org"},
        cookies=False,
        headers={"Cookie": "nl_csrf=" + web.client.cookies["nl_csrf"] + "%C3%A9"},
    )
    assert r.status == 400
    assert web.store.subscriber("ada@example.org") is None
