"""The preferences page ("Tune your digest") and the interests on the sign-up form, through
werkzeug's test client against a real SQLite store; arXiv look-ups against a real HTTP server
on 127.0.0.1 playing the arXiv API (tests/conftest.py's FeedServer)."""

from __future__ import annotations

import datetime as dt
import html
import io
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client, TestResponse

from newsletter.config import Settings, load_settings
from newsletter.links import PREFERENCES_DAYS, preferences_token, unsubscribe_token
from newsletter.models import IssueStatus, SubscriberStatus
from newsletter.personal.stated import MAX_KEYWORDS
from newsletter.store import Store
from newsletter.tokens import sign
from newsletter.web import Rate, make_app
from newsletter.web.preferences import MAX_UPLOAD, MAX_UPLOAD_BODY, Lookups
from newsletter.web.signup import confirm_token

SECRET = "test-secret-key-for-the-preferences-tests"
DATA = Path(__file__).resolve().parent / "data"
API_ANSWER = (DATA / "feeds" / "arxiv_api_atom_legacy_2020-09-04_idlist_1entry.xml").read_bytes()
API_EMPTY = (DATA / "feeds" / "arxiv_api_empty.xml").read_bytes()
ATOM = {"Content-Type": "application/atom+xml; charset=UTF-8"}
FOUND_TITLE = "Inelastic effects in molecular transport junctions: The probe technique at high bias"


def api_path(*ids: str) -> str:
    return f"/api/query?id_list={','.join(ids)}&max_results={len(ids)}"


@dataclass
class Site:
    client: Client
    store: Store
    settings: Settings
    sid: int  # Ada, an active subscriber
    make: Callable[..., Client]  # another client (its own cookies) on the same app

    def path(self, sid: int | None = None, day: dt.date | None = None) -> str:
        token = preferences_token(SECRET, self.sid if sid is None else sid, day or today())
        return f"/preferences/{token}"


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def site(tmp_path: Path, feed_server: Any) -> Iterator[Site]:
    config = tmp_path / "newsletter.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path}/prefs.db"\n'
        "[fetch]\n"
        f'arxiv_api_url = "{feed_server.url("/api/query")}"\n'
        "min_interval = 0\n"
        '[list]\nbase_url = "http://127.0.0.1"\n'
        f'[delivery]\ntransport = "outbox"\noutbox_dir = "{tmp_path}/outbox"\n',
        encoding="utf-8",
    )
    settings = load_settings(config, env={"NEWSLETTER_SECRET_KEY": SECRET})
    store = Store.open(settings.database_url)
    sub, _ = store.add_subscriber("ada@example.org", "Ada", now=now())
    app = make_app(settings, store, client_rate=Rate(burst=0, every=0))
    try:
        yield Site(Client(app), store, settings, sub.id, lambda: Client(app))
    finally:
        store.close()


def text(r: TestResponse) -> str:
    return r.get_data(as_text=True)


def h1(r: TestResponse) -> str:
    m = re.search(r"<h1[^>]*>(.*?)</h1>", text(r), re.S)
    return m.group(1).strip() if m else ""


def problem(r: TestResponse) -> str:
    m = re.search(r'<p class="problem" role="alert"[^>]*>(.*?)</p>', text(r), re.S)
    return html.unescape(m.group(1)) if m else ""


def notes(r: TestResponse) -> list[str]:
    m = re.search(r'<ul class="notes" id="notes">(.*?)</ul>', text(r), re.S)
    return [html.unescape(n) for n in re.findall(r"<li>(.*?)</li>", m.group(1))] if m else []


def textarea(r: TestResponse, name: str) -> str:
    m = re.search(rf'<textarea id="{name}" name="{name}"[^>]*>(.*?)</textarea>', text(r), re.S)
    assert m, f"no textarea {name}"
    return html.unescape(m.group(1))


def csrf_of(r: TestResponse) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', text(r))
    assert m, text(r)[:2000]
    return m.group(1)


def post(
    client: Client,
    path: str,
    *,
    csrf: str | None = None,
    file: tuple[bytes, str] | None = None,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> TestResponse:
    """The form as a browser sends it: multipart, the CSRF field of a fresh GET."""
    if csrf is None:
        csrf = csrf_of(client.get(path))
    data: dict[str, Any] = {"csrf": csrf, **fields}
    if file is not None:
        data["library_file"] = (io.BytesIO(file[0]), file[1])
    # follow_redirects (there are none): only then does closing the response close the
    # temporary file the test client spools a large body to.
    r = client.post(path, data=data, headers=headers or {}, follow_redirects=True)
    r.get_data()
    r.close()
    return r


def stored(site: Site, sid: int | None = None) -> Any:
    return site.store.interests(site.sid if sid is None else sid)


# --------------------------------------------------------------------------- the link


def test_the_page_shows_the_stored_interests_escaped(site):
    post(site.client, site.path(), keywords="retrieval", authors="Grace Hopper")
    r = site.client.get(site.path())
    assert r.status_code == 200
    assert h1(r) == "Tune your digest"
    assert "ada@example.org" in text(r)
    assert textarea(r, "keywords") == "retrieval"
    assert textarea(r, "authors") == "Grace Hopper"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Referrer-Policy"] == "no-referrer"  # the URL is a key
    assert "form-action 'self'" in r.headers["Content-Security-Policy"]
    cookie = r.headers.get("Set-Cookie") or site.make().get(site.path()).headers["Set-Cookie"]
    assert "Path=/preferences/" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_saving_stores_every_field(site):
    r = post(
        site.client,
        site.path(),
        keywords="dense retrieval, reranking\nRAG",
        authors="LeCun, Y.\nGeoffrey Hinton; Yoshua Bengio",
        categories="cs.ir, cs.CL\nhep-th",
        only_for_you="on",
    )
    assert r.status_code == 200, problem(r)
    assert 'id="saved"' in text(r)
    got = stored(site)
    assert got.interests.keywords == ("dense retrieval", "reranking", "RAG")
    # A comma belongs to a name: "LeCun, Y." is one author.
    assert got.interests.authors == ("LeCun, Y.", "Geoffrey Hinton", "Yoshua Bengio")
    assert got.interests.categories == ("cs.IR", "cs.CL", "hep-th")
    assert got.only_for_you is True
    # The page shows what is stored now, one a line.
    assert textarea(r, "categories") == "cs.IR\ncs.CL\nhep-th"
    # Unticking "only For you" and emptying a field are changes too.
    post(site.client, site.path(), keywords="", authors="LeCun, Y.", categories="")
    got = stored(site)
    assert got.interests.keywords == () and got.interests.categories == ()
    assert got.only_for_you is False


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_unsubscribe_token_never_opens_the_page(site, method):
    token = unsubscribe_token(SECRET, site.sid)
    r = site.client.open(f"/preferences/{token}", method=method, data={"keywords": "x"})
    assert r.status_code == 400 and h1(r) == "This link is not valid"
    assert stored(site).is_empty


def test_a_preferences_token_never_unsubscribes(site):
    token = site.path().rsplit("/", 1)[1]
    r = site.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 400
    assert site.store.subscriber(site.sid).status is SubscriberStatus.ACTIVE
    assert site.client.get(f"/confirm/{token}").status_code == 400


def test_forged_truncated_and_other_purpose_tokens_are_bad_links(site):
    valid = site.path().rsplit("/", 1)[1]
    payload, mac = valid.split(".")
    for token in (
        f"{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
        valid[:-2],
        payload,
        sign("another-secret", "preferences", str(site.sid)),
        sign(SECRET, "preferences", "not-an-id"),
        sign(SECRET, "confirm", str(site.sid)),
        sign(SECRET, "csrf", str(site.sid)),
        confirm_token(SECRET, site.store.subscriber(site.sid), now=time.time()),
        "é" + valid,
        "x" * 600,
    ):
        r = site.client.get("/preferences/" + urllib.parse.quote(token, safe=""))
        assert r.status_code == 400, token
        assert h1(r) == "This link is not valid"


def test_a_link_works_for_its_days_then_says_it_expired(site):
    old = today() - dt.timedelta(days=PREFERENCES_DAYS - 1)
    assert site.client.get(site.path(day=old)).status_code == 200
    r = site.client.get(site.path(day=old - dt.timedelta(days=2)))
    assert r.status_code == 410
    assert h1(r) == "This link has expired"
    assert f"{PREFERENCES_DAYS} days" in text(r)
    r = post(site.client, site.path(day=old - dt.timedelta(days=2)), csrf="x", keywords="a")
    assert r.status_code == 410 and stored(site).is_empty


def test_each_link_opens_its_own_subscriber_only(site):
    other, _ = site.store.add_subscriber("grace@example.org", "Grace", now=now())
    r = post(site.client, site.path(other.id), keywords="compilers")
    assert r.status_code == 200
    assert "grace@example.org" in text(r) and "ada@example.org" not in text(r)
    assert stored(site, other.id).interests.keywords == ("compilers",)
    assert stored(site).is_empty


@pytest.mark.parametrize("state", [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED])
def test_no_page_for_someone_who_gets_no_issues(site, state):
    site.store.set_subscriber_status(site.sid, state, now=now())
    r = site.client.get(site.path())
    assert r.status_code == 410 and h1(r) == "Not subscribed"
    assert 'href="/subscribe"' in text(r)


def test_the_page_without_a_token_explains_and_the_archive_links_there(site):
    r = site.client.get("/preferences/")
    assert r.status_code == 200 and "Tune your digest" in text(r)


# --------------------------------------------------------------------------- CSRF, limits


def test_csrf_is_required_and_what_was_typed_is_kept(site):
    typed = {"keywords": "graph neural networks", "authors": "Ada Lovelace"}
    fresh = site.make()
    for csrf, client in (("", site.client), ("forged", site.client), (None, fresh)):
        if client is fresh:  # a genuine field, but a browser without the cookie
            csrf_field = csrf_of(site.client.get(site.path()))
            r = fresh.post(site.path(), data={"csrf": csrf_field, **typed})
        else:
            r = post(client, site.path(), csrf=csrf, **typed)
        assert r.status_code == 400
        assert "did not come from this page" in problem(r)
        assert textarea(r, "keywords") == "graph neural networks"
        assert textarea(r, "authors") == "Ada Lovelace"
    r = post(site.client, site.path(), headers={"Sec-Fetch-Site": "cross-site"}, **typed)
    assert r.status_code == 400
    assert stored(site).is_empty


def test_posts_are_rate_limited_per_client(site, tmp_path):
    app = make_app(site.settings, site.store, client_rate=Rate(burst=2, every=60))
    client = Client(app)
    for _ in range(2):
        assert post(client, site.path(), keywords="x").status_code == 200
    r = post(client, site.path(), keywords="y")
    assert r.status_code == 429 and r.headers["Retry-After"] == "60"
    assert stored(site).interests.keywords == ("x",)
    assert client.get(site.path()).status_code == 200  # reading is not limited


# --------------------------------------------------------------------------- bad input


def test_300_keywords_are_refused_and_kept_in_the_form(site):
    typed = "\n".join(f"topic number {i}" for i in range(300))
    r = post(site.client, site.path(), keywords=typed, authors="Ada Lovelace")
    assert r.status_code == 400
    assert problem(r) == f"300 keywords; at most {MAX_KEYWORDS} can be stated"
    assert textarea(r, "keywords") == typed
    assert textarea(r, "authors") == "Ada Lovelace"
    assert stored(site).is_empty


def test_a_script_keyword_is_stored_as_text_and_shown_escaped(site):
    evil = '<script>alert("x")</script>'
    r = post(site.client, site.path(), keywords=evil, authors='"><img src=x onerror=alert(1)>')
    assert r.status_code == 200, problem(r)
    assert stored(site).interests.keywords == (evil,)
    body = text(r)
    assert "<script>" not in body and "<img" not in body
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in body
    assert textarea(r, "keywords") == evil


def test_non_ascii_names_and_keywords(site):
    r = post(
        site.client,
        site.path(),
        keywords="équivariance\n量子计算",
        authors="Łukasz Kaiser\nÑandú, J.\n湯川 秀樹",
    )
    assert r.status_code == 200, problem(r)
    got = stored(site).interests
    assert got.keywords == ("équivariance", "量子计算")
    assert got.authors == ("Łukasz Kaiser", "Ñandú, J.", "湯川 秀樹")
    assert textarea(site.client.get(site.path()), "authors") == "\n".join(got.authors)


@pytest.mark.parametrize(
    ("categories", "says"),
    [
        ("cs", "is an arXiv archive, not a category"),
        ("cs.IR, computer science", "'computer' is not an arXiv category"),
        ("foo.bar", "'foo.bar' is not an arXiv category"),
    ],
)
def test_a_category_must_be_an_arxiv_category(site, categories, says):
    r = post(site.client, site.path(), categories=categories, keywords="kept")
    assert r.status_code == 400
    assert says in problem(r)
    assert textarea(r, "categories") == categories and textarea(r, "keywords") == "kept"
    assert stored(site).is_empty


def test_a_control_character_is_named(site):
    r = post(site.client, site.path(), keywords="ok\x07bell")
    assert r.status_code == 400 and "U+0007" in problem(r)


def test_a_file_over_the_cap_is_refused_with_the_form_and_what_was_typed(site):
    big = b"@misc{a, title={" + b"x" * MAX_UPLOAD + b"}}\n"
    r = post(site.client, site.path(), file=(big, "huge.bib"), keywords="kept")
    assert r.status_code == 413
    assert problem(r).startswith("huge.bib is larger than 1 MB")
    assert textarea(r, "keywords") == "kept"
    assert stored(site).is_empty


def test_a_body_over_the_cap_is_refused_before_it_is_parsed(site):
    big = b"x" * MAX_UPLOAD_BODY
    r = post(site.client, site.path(), file=(big, "huge.bib"), keywords="never read")
    assert r.status_code == 413
    assert h1(r) == "The form is too large"
    assert "at most 1 MB" in text(r) and "Nothing was changed" in text(r)
    assert f'href="{site.path()}"' in text(r)  # back to the form
    assert stored(site).is_empty
    # The other forms keep their 16 KB cap.
    r = site.client.post(
        f"/unsubscribe/{unsubscribe_token(SECRET, site.sid)}",
        data={"List-Unsubscribe": "One-Click", "pad": "x" * 20_000},
    )
    assert r.status_code == 413 and h1(r) == "Request too large"
    assert site.store.subscriber(site.sid).status is SubscriberStatus.ACTIVE


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "not a text file"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(200), "not a text file"),
        ("Les références\n".encode("latin-1"), "is not UTF-8"),
    ],
    ids=["png", "zip", "latin-1"],
)
def test_a_binary_upload_is_refused_naming_the_file(site, data, says):
    r = post(site.client, site.path(), file=(data, "/home/ada/refs.bib"), keywords="k")
    assert r.status_code == 400
    assert problem(r).startswith("refs.bib: ")  # the name without a path
    assert says in problem(r)
    assert problem(r).endswith("export your library again, as UTF-8 text")
    assert "--encoding" not in problem(r)  # the CLI's advice
    assert stored(site).is_empty


@pytest.mark.parametrize(
    "data",
    [
        b"@misc{a,\n  note = {no title, no id}\n}\n@comment{nothing}\n",
        b"",
        b"%% a BibTeX file with comments only\n",
    ],
    ids=["no-usable-entry", "empty", "comments"],
)
def test_a_bibtex_file_with_no_usable_entry_is_refused(site, data):
    post(site.client, site.path(), library="1601.00001")  # a library to lose
    before = stored(site)
    r = post(site.client, site.path(), file=(data, "refs.bib"))
    if not data:  # an empty file is no file: nothing changes, nothing is said
        assert r.status_code == 200
    else:
        assert r.status_code == 400
        assert problem(r).startswith("refs.bib: no paper found")
    assert stored(site) == before


def test_pasted_text_that_names_no_paper_is_refused(site):
    r = post(site.client, site.path(), library="my favourite papers\nthe one about attention")
    assert r.status_code == 400
    assert problem(r).startswith("The pasted list: no paper found")
    assert textarea(r, "library") == "my favourite papers\nthe one about attention"


# --------------------------------------------------------------------------- the library


def test_an_uploaded_bibtex_export_becomes_the_library(site):
    data = (DATA / "library" / "zotero.bib").read_bytes()
    r = post(site.client, site.path(), file=(data, "My Library.bib"))
    assert r.status_code == 200, problem(r)
    got = stored(site)
    ids = {p.id for p in got.interests.library}
    assert "arxiv:1603.02532" in ids and len(got.interests.library) >= 5
    page = text(site.client.get(site.path()))
    assert "On the inconsistency of" in page
    # RIS too, and a second export of the same papers adds nothing twice.
    ris = (DATA / "library" / "zotero.ris").read_bytes()
    post(site.client, site.path(), file=(ris, "refs.ris"))
    again = stored(site).interests.library
    assert len({p.id for p in again}) == len(again)
    assert {p.id for p in again} >= ids


def test_papers_are_removed_with_their_boxes(site):
    data = (DATA / "library" / "zotero.bib").read_bytes()
    post(site.client, site.path(), file=(data, "refs.bib"))
    page = text(site.client.get(site.path()))
    keys = re.findall(r'name="remove" value="([^"]+)"', page)
    assert len(keys) == len(stored(site).interests.library)
    r = post(site.client, site.path(), remove=keys[:2])
    assert r.status_code == 200
    left = {p.id for p in stored(site).interests.library}
    assert keys[0] not in left and keys[1] not in left and keys[2] in left
    # A bad change elsewhere keeps the boxes ticked.
    r = post(site.client, site.path(), remove=keys[2:3], categories="nope")
    assert r.status_code == 400
    assert f'value="{keys[2]}" checked' in text(r)
    assert keys[2] in {p.id for p in stored(site).interests.library}


def test_ids_alone_are_looked_up_on_arxiv_while_the_reader_waits(site, feed_server):
    feed_server.add(api_path("1601.00001"), {"body": API_ANSWER, "headers": ATOM})
    r = post(site.client, site.path(), library="https://arxiv.org/abs/1601.00001v2")
    assert r.status_code == 200, problem(r)
    (paper,) = stored(site).interests.library
    assert paper.title == FOUND_TITLE and paper.id == "arxiv:1601.00001"
    assert FOUND_TITLE in text(r) and notes(r) == []
    # A text the store has is never asked for again, whoever gave it.
    other, _ = site.store.add_subscriber("grace@example.org", "", now=now())
    post(site.client, site.path(other.id), library="1601.00001")
    assert stored(site, other.id).interests.library[0].title == FOUND_TITLE
    assert len(feed_server.hits(api_path("1601.00001"))) == 1


def test_an_id_arxiv_does_not_know_is_said_so(site, feed_server):
    feed_server.add(api_path("2401.99999"), {"body": API_EMPTY, "headers": ATOM})
    r = post(site.client, site.path(), library="arXiv:2401.99999")
    assert r.status_code == 200
    assert stored(site).waiting == ("arxiv:2401.99999",)
    assert notes(r) == ["arxiv:2401.99999: arXiv has no such paper. Check the id, or remove it."]
    assert "arxiv:2401.99999: waiting for its title" in text(r)


def test_a_failed_look_up_keeps_the_id_waiting_until_a_later_save(site, feed_server):
    path = api_path("1601.00001")
    feed_server.add(
        path,
        {"status": 503, "body": b"busy"},
        {"body": API_ANSWER, "headers": ATOM},
    )
    r = post(site.client, site.path(), library="1601.00001\n10.1000/xyz123", keywords="k")
    assert r.status_code == 200  # saved all the same
    assert stored(site).interests.keywords == ("k",)
    assert stored(site).waiting == ("arxiv:1601.00001", "doi:10.1000/xyz123")
    said = notes(r)
    assert said[0].startswith("arxiv:1601.00001: arXiv did not answer (HTTP 503")
    assert said[0].endswith("it is looked up again when you save.")
    assert said[1].startswith("doi:10.1000/xyz123: a DOI alone is not looked up")
    assert len(feed_server.hits(path)) == 1  # no retry inside the request
    # The next save asks again; nothing new needs to be typed.
    r = post(site.client, site.path(), keywords="k")
    assert stored(site).interests.library[0].title == FOUND_TITLE
    assert stored(site).waiting == ("doi:10.1000/xyz123",)


def test_a_slow_arxiv_costs_the_reader_the_deadline_at_most(site, feed_server):
    feed_server.add(api_path("1601.00001"), {"body": API_ANSWER, "headers": ATOM, "delay": 3})
    lookups = Lookups(site.settings, seconds=0.5)
    start = time.monotonic()
    got = lookups.look_up(["arxiv:1601.00001"], known={})
    assert time.monotonic() - start < 2
    assert got is not None and got.found == ()
    assert "took longer than 0.5 s" in got.failed["arxiv:1601.00001"]


def test_one_look_up_at_a_time_and_not_too_often(site, feed_server):
    feed_server.add(api_path("1601.00001"), {"body": API_ANSWER, "headers": ATOM, "delay": 1})
    clock = [100.0]
    settings = load_settings(
        site.settings.config_path,
        env={"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_FETCH__MIN_INTERVAL": "3"},
    )
    lookups = Lookups(settings, clock=lambda: clock[0])
    first: list[Any] = []
    running = threading.Thread(
        target=lambda: first.append(lookups.look_up(["arxiv:1601.00001"], known={}))
    )
    running.start()
    time.sleep(0.3)
    assert lookups.look_up(["arxiv:1601.00001"], known={}) is None  # busy: not asked
    running.join(10)
    assert first[0].found[0].title == FOUND_TITLE
    clock[0] += 2.9
    assert lookups.look_up(["arxiv:1601.00001"], known={}) is None  # arXiv's 3 s
    clock[0] += 0.2
    assert lookups.look_up(["arxiv:1601.00001"], known={}) is not None
    assert len(feed_server.hits(api_path("1601.00001"))) == 2
    # DOIs and nothing at all are never asked.
    assert lookups.look_up(["doi:10.1/x"], known={}) is None


def test_a_busy_look_up_leaves_the_ids_waiting_with_a_note(site, feed_server):
    settings = load_settings(
        site.settings.config_path,
        env={"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_FETCH__MIN_INTERVAL": "60"},
    )
    feed_server.add(api_path("1601.00001"), {"body": API_EMPTY, "headers": ATOM})
    feed_server.add(api_path("1601.00002"), {"body": API_EMPTY, "headers": ATOM})
    client = Client(make_app(settings, site.store, client_rate=Rate(burst=0, every=0)))
    post(client, site.path(), library="1601.00001")
    r = post(client, site.path(), library="1601.00002")
    assert "arxiv:1601.00002: not looked up yet; it is when you save again in a minute." in notes(r)
    assert len(feed_server.requests) == 1


# --------------------------------------------------------------------------- sign-up


def sign_up(client: Client, addr: str, **fields: Any) -> TestResponse:
    return post(client, "/subscribe", email=addr, name="", **fields)


def test_interests_given_at_sign_up_are_kept_for_the_confirmed_subscriber(site, feed_server):
    feed_server.add(api_path("1601.00001"), {"body": API_ANSWER, "headers": ATOM})
    r = sign_up(
        site.client,
        "new@example.org",
        keywords="retrieval",
        categories="cs.IR",
        only_for_you="on",
        library="1601.00001",
    )
    assert r.status_code == 200 and h1(r) == "Check your inbox"
    pending = site.store.subscriber("new@example.org")
    assert pending.status is SubscriberStatus.PENDING
    got = stored(site, pending.id)
    assert got.interests.keywords == ("retrieval",) and got.only_for_you
    assert got.interests.library[0].title == FOUND_TITLE
    # Confirming keeps them, and the confirmed page links to the preferences.
    r = site.client.get(f"/confirm/{confirm_token(SECRET, pending, now=time.time())}")
    assert h1(r) == "You are subscribed"
    link = re.search(r'href="(/preferences/[^"]+)" id="tune"', text(r)).group(1)
    page = site.client.get(link)
    assert page.status_code == 200 and textarea(page, "keywords") == "retrieval"


def test_the_sign_up_form_never_changes_an_existing_subscriber(site):
    post(site.client, site.path(), keywords="mine")
    r = sign_up(site.make(), "ada@example.org", keywords="someone else's", only_for_you="on")
    assert r.status_code == 200 and h1(r) == "Check your inbox"  # the same answer
    assert stored(site).interests.keywords == ("mine",) and not stored(site).only_for_you


def test_a_bad_interest_at_sign_up_is_shown_with_everything_kept(site):
    r = sign_up(site.client, "new@example.org", keywords="ok", categories="physics")
    assert r.status_code == 400
    assert "is an arXiv archive, not a category" in problem(r)
    assert 'value="new@example.org"' in text(r)
    assert textarea(r, "categories") == "physics"
    assert '<details id="tune" open>' in text(r)
    assert site.store.subscriber("new@example.org") is None


def test_the_plain_sign_up_form_still_works(site):
    form = site.client.get("/subscribe")
    assert '<details id="tune">' in text(form)  # closed until something is typed
    r = site.client.post(
        "/subscribe",
        data=urllib.parse.urlencode({"csrf": csrf_of(form), "email": "plain@example.org"}),
        content_type="application/x-www-form-urlencoded",
    )
    assert r.status_code == 200 and h1(r) == "Check your inbox"
    assert stored(site, site.store.subscriber("plain@example.org").id).is_empty


def test_archive_pages_carry_no_personal_link(site):
    site.store.save_issue(
        dt.date(2025, 3, 14),
        status=IssueStatus.SENT,
        subject="s",
        preheader="p",
        html='<html><body><a href="%%NL_UNSUBSCRIBE_URL%%">u</a>'
        '<a href="%%NL_PREFERENCES_URL%%">Tune your digest</a></body></html>',
        text="",
        papers=[],
        now=now(),
    )
    page = text(site.client.get("/archive/2025-03-14"))
    assert 'href="http://127.0.0.1/preferences/"' in page
    assert re.search(r"/preferences/[A-Za-z0-9_-]+\.", page) is None


def test_a_pending_sign_up_takes_the_interests_typed_last(site):
    sign_up(site.client, "new@example.org", keywords="first")
    sid = site.store.subscriber("new@example.org").id
    sign_up(site.make(), "new@example.org")  # nothing typed: what was given stays
    assert stored(site, sid).interests.keywords == ("first",)
    sign_up(site.make(), "new@example.org", keywords="second", authors="Ada Lovelace")
    got = stored(site, sid).interests
    assert got.keywords == ("second",) and got.authors == ("Ada Lovelace",)


def test_the_sample_subscriber_of_previews_opens_nobodys_page(site):
    r = site.client.get(site.path(0))  # `preview` and `send --to` sign for id 0
    assert r.status_code == 410 and h1(r) == "Not subscribed"
