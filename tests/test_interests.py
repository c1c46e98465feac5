"""Subscribers' interests: stored (SQLite and PostgreSQL, libraries shared), checked as typed,
set, shown, imported and exported through the CLI, library ids looked up against a real
HTTP server answering as the arXiv API does, and `digest --as`."""

from __future__ import annotations

import datetime as dt
import json
import lzma
import os
import re
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import both_backends
from test_library import ATOM, api_document, api_path

from newsletter.cli import cli
from newsletter.models import SubscriberStatus
from newsletter.personal import Interests, LibraryPaper, SubscriberInterests
from newsletter.personal.library import MAX_BYTES
from newsletter.personal.stated import (
    MAX_KEYWORDS,
    BadInterest,
    InterestsChange,
    category,
    change,
    clean_authors,
    clean_categories,
    clean_keywords,
)
from newsletter.store import Store, schema
from newsletter.store.interests import id_key, library_key

T0 = dt.datetime(2026, 4, 27, 6, 0, tzinfo=dt.UTC)
DATA = Path(__file__).parent / "data"
LIBRARIES = DATA / "library"


def load_rows() -> list[dict]:
    with lzma.open(DATA / "topics" / "four_archives.jsonl.xz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


ROWS = load_rows()


def lib(n: int, *, text: bool = True) -> LibraryPaper:
    r = ROWS[n]
    if not text:
        return LibraryPaper("", id=f"arxiv:{r['id']}")
    return LibraryPaper(r["title"], r["abstract"], f"arxiv:{r['id']}", tuple(r["authors"]))


@pytest.fixture
def store(database_url):
    s = Store.open(database_url, now=T0)
    yield s
    s.close()


def add(store: Store, email: str, status: SubscriberStatus = SubscriberStatus.ACTIVE) -> int:
    sub, _ = store.add_subscriber(email, "", now=T0)
    if status is not SubscriberStatus.ACTIVE:
        store.set_subscriber_status(sub.id, status, now=T0)
    return sub.id


def count(store: Store, table: sa.Table) -> int:
    with store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# --------------------------------------------------------------------------- stated interests


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("cs.ir", "cs.IR"),
        ("CS.IR", "cs.IR"),
        (" astro-ph.ga ", "astro-ph.GA"),
        ("physics.Optics", "physics.optics"),
        ("cond-mat.Stat-Mech", "cond-mat.stat-mech"),
        ("HEP-TH", "hep-th"),
        ("quant-ph", "quant-ph"),
    ],
)
def test_categories_are_written_as_arxiv_writes_them(typed, stored):
    assert category(typed) == stored


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("cs", "an arXiv archive, not a category"),
        ("astro-ph", "an arXiv archive"),
        ("sc.IR", "not an arXiv category"),
        ("cs IR", "not an arXiv category"),
        ("cs.IR.x", "not an arXiv category"),
        ("hep-th.XX", "not an arXiv category"),
        ("cs.", "not an arXiv category"),
        ("1234.5678", "not an arXiv category"),
    ],
)
def test_what_is_not_an_arxiv_category_is_refused(typed, reason):
    with pytest.raises(BadInterest, match=reason):
        clean_categories([typed])


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("   ", "is blank"),
        ("\t\n", "is blank"),
        ("\x07\x08", "holds the control character U\\+0007"),
        ("re\x00trieval", "U\\+0000"),
        ("bidi\u202eoverride", "U\\+202E"),
        ("a; b", "separates keywords"),
        ("--", "no letter or digit"),
        ("x" * 101, "longer than 100"),
    ],
)
def test_keywords_that_could_only_be_mistakes_are_refused(typed, reason):
    with pytest.raises(BadInterest, match=reason) as info:
        clean_keywords(["fine", typed])
    assert "\n" not in str(info.value)


def test_stated_values_are_cleaned_and_counted_once_as_they_are_matched():
    assert clean_keywords(["  dense   retrieval ", "Dense Retrieval", "C++", "Schrödinger"]) == (
        "dense retrieval",
        "C++",
        "Schrödinger",
    )
    assert clean_authors(["Yann LeCun", "LeCun, Yann", "Y. Bengio"]) == ("Yann LeCun", "Y. Bengio")
    assert clean_categories(["cs.IR", "CS.ir", "hep-th"]) == ("cs.IR", "hep-th")
    with pytest.raises(BadInterest, match="no letter"):
        clean_authors(["..."])
    with pytest.raises(BadInterest, match=f"at most {MAX_KEYWORDS}"):
        clean_keywords([f"word{i}" for i in range(MAX_KEYWORDS + 1)])


def test_a_change_keeps_what_it_does_not_name():
    base = change(keywords=["a"], only_for_you=True)
    assert change(authors=["Ada Lovelace"], base=base) == InterestsChange(
        keywords=("a",), authors=("Ada Lovelace",), only_for_you=True
    )
    assert InterestsChange().is_empty and not InterestsChange.clear().is_empty


# --------------------------------------------------------------------------- the store


@both_backends
def test_a_database_from_before_gets_the_interest_tables_and_keeps_its_subscribers(database_url):
    from newsletter.store import migrations

    mine = next(v for v, what, _ in migrations.MIGRATIONS if "interests" in what)
    # As the version before left it: the earlier migrations run on an empty database (a
    # later migration may change tables too, which dropping tables cannot take back).
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        schema.schema_migrations.create(conn)
        for version, _, step in migrations.MIGRATIONS[: mine - 1]:
            step(conn)
            conn.execute(
                schema.schema_migrations.insert().values(
                    version=version, description="", applied_at=T0
                )
            )
        conn.execute(
            sa.text(
                "INSERT INTO subscribers (email, name, status, created_at, updated_at) "
                "VALUES ('ada@example.org', '', 'active', :t, :t)"
            ),
            {"t": T0.replace(tzinfo=None)},
        )
    engine.dispose()
    with Store.open(database_url, now=T0) as store:
        assert store.schema_version() == migrations.LATEST
        ada = store.subscriber("ada@example.org")
        assert ada is not None
        got = store.update_interests(ada.id, change(keywords=["x"], library=[lib(0)]), now=T0)
        assert got is not None and got.interests.library == (lib(0),)


@both_backends
def test_interests_round_trip_and_each_part_replaces_only_itself(store):
    ada = add(store, "ada@example.org")
    assert store.interests(ada) == SubscriberInterests()
    got = store.update_interests(
        ada,
        change(keywords=["retrieval"], authors=["Yann LeCun"], categories=["cs.IR"]),
        now=T0,
    )
    assert got == store.interests(ada)
    assert got.interests == Interests(("retrieval",), ("Yann LeCun",), ("cs.IR",))
    assert not got.only_for_you
    got = store.update_interests(
        ada, change(keywords=["rag", "dense retrieval"], only_for_you=True), now=T0
    )
    assert got.interests.keywords == ("rag", "dense retrieval")
    assert got.interests.authors == ("Yann LeCun",)  # not named: kept
    assert got.only_for_you
    got = store.update_interests(ada, InterestsChange.clear(), now=T0)
    assert got == SubscriberInterests()
    assert count(store, schema.subscriber_interests) == 0  # nothing stated: no row


@both_backends
def test_an_unknown_subscriber_gets_none_and_nothing_is_stored(store):
    assert store.update_interests(999, change(keywords=["x"], library=[lib(0)]), now=T0) is None
    assert count(store, schema.library_papers) == 0


@both_backends
def test_library_papers_are_stored_once_and_shared(store):
    ada, bob = add(store, "ada@example.org"), add(store, "bob@example.org")
    store.update_interests(ada, change(library=[lib(0), lib(1), lib(2)]), now=T0)
    # Bob's copy of paper 1 has another title (his export's): the first text serves both
    other = LibraryPaper("Another title", "Another abstract", lib(1).id)
    store.update_interests(bob, change(library=[lib(3), other]), now=T0)
    assert count(store, schema.library_papers) == 4
    assert store.interests(ada).interests.library == (lib(0), lib(1), lib(2))
    assert store.interests(bob).interests.library == (lib(3), lib(1))  # his order
    both = store.all_interests()
    assert both[ada].interests.library[1] is both[bob].interests.library[1]  # one object


@both_backends
def test_papers_by_id_alone_wait_for_their_text_which_fills_every_library(store):
    ada, bob = add(store, "ada@example.org"), add(store, "bob@example.org")
    store.update_interests(ada, change(library=[lib(0), lib(1, text=False)]), now=T0)
    got = store.interests(ada)
    assert got.interests.library == (lib(0),)
    assert got.waiting == (lib(1).id,)
    assert got.library_size == 2
    # Bob gives the same paper with its text: the stored row gets it, for Ada too
    store.update_interests(bob, change(library=[lib(1)]), now=T0)
    assert store.interests(ada).interests.library == (lib(0), lib(1))
    assert store.interests(ada).waiting == ()
    # a text found later fills a waiting paper; a text never replaces a stored one
    store.update_interests(ada, change(library=[lib(2, text=False), lib(0)]), now=T0)
    assert store.save_library_texts([lib(2), LibraryPaper("Replaced?", "", lib(0).id)], now=T0) == 1
    assert store.interests(ada).interests.library == (lib(2), lib(0))
    assert store.library_texts([lib(0).id, lib(2).id, "arxiv:0000.00000"]) == {
        lib(0).id: lib(0),
        lib(2).id: lib(2),
    }


@both_backends
def test_a_paper_nobody_keeps_is_deleted_and_a_shared_one_kept(store):
    ada, bob = add(store, "ada@example.org"), add(store, "bob@example.org")
    store.update_interests(ada, change(library=[lib(0), lib(1)]), now=T0)
    store.update_interests(bob, change(library=[lib(1)]), now=T0)
    store.update_interests(ada, change(library=[lib(2)]), now=T0)
    with store.read() as conn:
        keys = set(conn.execute(sa.select(schema.library_papers.c.key)).scalars())
    assert keys == {lib(1).id, lib(2).id}  # paper 0 went with Ada's old library
    store.update_interests(bob, InterestsChange.clear(), now=T0)
    store.update_interests(ada, change(library=()), now=T0)
    assert count(store, schema.library_papers) == 0
    assert count(store, schema.subscriber_library) == 0


@both_backends
def test_deleting_a_subscriber_deletes_their_interests_and_unkept_papers(store):
    pending = store.add_pending("new@example.org", "", now=T0)
    ada = add(store, "ada@example.org")
    store.update_interests(pending.id, change(keywords=["x"], library=[lib(0), lib(1)]), now=T0)
    store.update_interests(ada, change(library=[lib(1)]), now=T0)
    # unsubscribing keeps them (for a return); a sign-up never confirmed is purged
    store.set_subscriber_status(ada, SubscriberStatus.UNSUBSCRIBED, now=T0)
    assert store.interests(ada).interests.library == (lib(1),)
    assert store.purge_pending(now=T0 + dt.timedelta(days=30)) == 1
    assert store.interests(pending.id) == SubscriberInterests()
    assert count(store, schema.subscriber_interests) == 1
    with store.read() as conn:
        keys = list(conn.execute(sa.select(schema.library_papers.c.key)).scalars())
    assert keys == [lib(1).id]


@both_backends
def test_papers_without_an_id_are_keyed_by_title_and_long_ids_fit_the_index(store):
    ada, bob = add(store, "ada@example.org"), add(store, "bob@example.org")
    exported = LibraryPaper("Attention Is All You Need", "We propose the Transformer.")
    typed = LibraryPaper("attention is all you need!", "")
    hostile = LibraryPaper("A paper", "", "doi:10.1/" + "x" * 5000)
    abstract_only = LibraryPaper("", "Only an abstract, no title or id.")
    store.update_interests(ada, change(library=[exported, hostile, abstract_only]), now=T0)
    store.update_interests(bob, change(library=[typed]), now=T0)
    assert library_key(exported) == library_key(typed)
    assert len(id_key(hostile.id or "")) < 100
    assert store.interests(bob).interests.library == (exported,)  # the first text
    assert store.interests(ada).interests.library == (exported, hostile, abstract_only)
    assert count(store, schema.library_papers) == 3


@both_backends
def test_many_subscribers_are_read_in_three_queries(store):
    ids = [add(store, f"s{i}@example.org") for i in range(30)]
    for i, sid in enumerate(ids):
        store.update_interests(
            sid,
            change(keywords=[f"k{i}"], library=[lib(i), lib(i + 1), lib(50, text=False)]),
            now=T0,
        )
    store.set_subscriber_status(ids[0], SubscriberStatus.BOUNCED, now=T0)
    nobody = add(store, "none@example.org")
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        active = store.all_interests()
        assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 3
        statements.clear()
        chosen = store.interests_of([*ids[:10], nobody, 12345])
        assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 3
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    assert sorted(active) == ids[1:]  # the bounced one and the one without interests left out
    assert sorted(chosen) == ids[:10]
    assert store.all_interests(None).keys() == set(ids)
    got = active[ids[5]]
    assert got.interests.keywords == ("k5",)
    assert got.interests.library == (lib(5), lib(6))
    assert got.waiting == (lib(50).id,)
    assert chosen[ids[5]] == got


@both_backends
def test_import_sets_interests_of_new_and_active_subscribers_only(store):
    left = add(store, "left@example.org", SubscriberStatus.UNSUBSCRIBED)
    ada = add(store, "ada@example.org")
    store.update_interests(ada, change(keywords=["old"], authors=["Ada Lovelace"]), now=T0)
    result = store.import_subscribers(
        [("ada@example.org", ""), ("new@example.org", "New"), ("left@example.org", "")],
        now=T0,
        interests={
            "ada@example.org": change(keywords=["new"]),
            "new@example.org": change(categories=["cs.IR"], only_for_you=True),
            "left@example.org": change(keywords=["never"]),
        },
    )
    assert (result.added, result.unchanged, result.kept_out, result.interests_set) == (
        1,
        1,
        ("left@example.org",),
        2,
    )
    assert store.interests(ada).interests == Interests(("new",), ("Ada Lovelace",))
    new = store.subscriber("new@example.org")
    assert new is not None
    assert store.interests(new.id) == SubscriberInterests(Interests(categories=("cs.IR",)), True)
    assert store.interests(left) == SubscriberInterests()


@both_backends
def test_concurrent_library_changes_sharing_papers_lose_nothing(store):
    """Threads on their own connections replace libraries that share papers, dropping and
    taking them back, while the last keeper's drop deletes the paper: on PostgreSQL the
    deletes and the links race (SQLite's writers queue)."""
    subs = [add(store, f"s{i}@example.org") for i in range(4)]
    shared = [lib(i) for i in range(6)]
    errors: list[BaseException] = []

    def churn(k: int) -> None:
        try:
            for round_ in range(15):
                mine = [shared[(k + round_ + j) % len(shared)] for j in range(round_ % 3)]
                store.update_interests(subs[k], change(library=mine), now=T0)
        except BaseException as e:  # reported below, with the thread's traceback
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(k,)) for k in range(len(subs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    everyone = store.all_interests()
    kept = {p.id for s in everyone.values() for p in s.interests.library}
    with store.read() as conn:
        stored = set(conn.execute(sa.select(schema.library_papers.c.paper_id)).scalars())
    assert stored == kept  # nothing unkept left behind, nothing kept lost
    for sid, got in everyone.items():
        assert all(p in shared for p in got.interests.library), sid


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def config(write_config, feed_server) -> Path:
    """A config whose arXiv API is the test's HTTP server: impolite, no retries."""
    return write_config(
        "[fetch]\nmin_interval = 0\nretries = 0\ntimeout = 5\n"
        f'arxiv_api_url = "{feed_server.url("/api/query")}"\n'
    )


def run(config: Path, *args: str, input: bytes | str | None = None):
    r = CliRunner().invoke(cli, ["-c", str(config), *args], input=input)
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception  # a traceback is a bug: show it
    return r


def show(config: Path, email: str = "ada@example.org") -> str:
    r = run(config, "subscribers", "show", email)
    assert r.exit_code == 0, r.output
    return r.stdout


def one_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def ada(config: Path) -> Path:
    r = run(config, "subscribers", "add", "ada@example.org", "--name", "Ada")
    assert r.exit_code == 0, r.output
    return config


def test_set_replaces_the_parts_given_and_show_prints_them(ada):
    r = run(
        ada, "subscribers", "set", "ADA@example.org", "-k", "retrieval", "-k", "dense  retrieval",
        "--author", "Yann LeCun", "--category", "cs.ir", "--category", "CS.CL",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "set: ada@example.org: 2 keywords, 1 author, 2 categories, a library of 0 papers; "
        '"For you" and every topic\n'
    )
    assert show(ada).splitlines()[1:] == [
        "keywords:   retrieval; dense retrieval",
        "authors:    Yann LeCun",
        "categories: cs.IR; cs.CL",
        'email:      "For you" above every topic',
        "library:    0 papers",
    ]
    assert run(ada, "subscribers", "set", "ada@example.org", "-a", "Geoffrey Hinton").exit_code == 0
    assert "keywords:   retrieval; dense retrieval\nauthors:    Geoffrey Hinton\n" in show(ada)
    assert (
        run(ada, "subscribers", "set", "ada@example.org", "-k", "", "--only-for-you").exit_code == 0
    )
    shown = show(ada)
    assert "keywords:   -\n" in shown and '"For you" only' in shown
    r = run(ada, "subscribers", "set", "ada@example.org", "--clear", "-k", "rag")
    assert r.exit_code == 0, r.output
    assert "1 keyword, 0 authors, 0 categories" in r.stdout and "every topic" in r.stdout
    run(ada, "subscribers", "set", "ada@example.org", "--clear")
    assert "no interests stated" in show(ada)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["nobody@example.org", "-k", "x"], 1, "no subscriber nobody@example.org"),
        (["not an address", "-k", "x"], 1, "not an address"),
        (["ada@example.org", "-k", "   "], 2, "keyword '   ' is blank"),
        (["ada@example.org", "-k", "\x01\x02"], 2, "holds the control character U+0001"),
        (["ada@example.org", "-k", "a;b"], 2, "separates keywords"),
        (["ada@example.org", "--category", "cs"], 2, "an arXiv archive, not a category"),
        (["ada@example.org", "--category", "computer science"], 2, "not an arXiv category"),
        (["ada@example.org", "--author", "-"], 2, "no letter"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(ada, args, code, message):
    run(ada, "subscribers", "set", "ada@example.org", "-k", "kept")
    before = show(ada)
    r = run(ada, "subscribers", "set", *args, "--only-for-you")
    assert r.exit_code == code, r.output
    assert message in one_line(r.stderr)
    assert show(ada) == before


def test_a_library_is_looked_up_once_and_shared_between_subscribers(ada, feed_server, tmp_path):
    rows = ROWS[:3]
    feed_server.add(
        api_path(*(r["id"] for r in rows)), {"body": api_document(rows), "headers": ATOM}
    )
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"https://arxiv.org/abs/{r['id']}v2\n" for r in rows))
    r = run(ada, "subscribers", "set", "ada@example.org", "--library", str(ids))
    assert r.exit_code == 0, r.output
    assert "a library of 3 papers;" in r.stdout
    assert "looking up 3 arXiv id(s) in 1 request(s)...\n" in r.stderr
    assert "looked up 3 arXiv id(s) in 1 request(s): 3 found, 0 unknown, 0 not answered" in r.stderr
    shown = show(ada)
    assert "library:    3 papers\n" in shown
    assert f"  - {' '.join(rows[0]['title'].split())[:89]}" in shown
    # the same papers again, and for someone else: never asked again; a new one is
    assert run(ada, "subscribers", "set", "ada@example.org", "--library", str(ids)).exit_code == 0
    run(ada, "subscribers", "add", "bob@example.org")
    feed_server.add(api_path(ROWS[3]["id"]), {"body": api_document([ROWS[3]]), "headers": ATOM})
    r = run(
        ada, "subscribers", "set", "bob@example.org", "--library", "-",
        input=f"{rows[1]['id']}\narXiv:{ROWS[3]['id']}\n",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "looked up 1 arXiv id(s)" in r.stderr
    assert [s.path for s in feed_server.requests] == [
        api_path(*(r["id"] for r in rows)),
        api_path(ROWS[3]["id"]),
    ]
    with Store.open(load_db(ada)) as store:
        assert count(store, schema.library_papers) == 4


def load_db(config: Path) -> str:
    from newsletter.config import load_settings

    return load_settings(config, env={}).database_url


def test_arxiv_down_is_a_warning_the_rest_is_stored_and_asked_again_later(
    ada, feed_server, tmp_path
):
    rows = ROWS[10:12]
    path = api_path(*(r["id"] for r in rows))
    feed_server.add(path, {"status": 503}, {"body": api_document(rows), "headers": ATOM})
    library = tmp_path / "mine.bib"
    library.write_bytes(
        (LIBRARIES / "zotero.bib").read_bytes()
        + "".join(f"\n@misc{{k{r['id']}, eprint = {{{r['id']}}}}}\n" for r in rows).encode()
    )
    r = run(ada, "subscribers", "set", "ada@example.org", "--library", str(library), "-k", "x")
    assert r.exit_code == 0, r.output
    assert "(2 without a title yet)" in r.stdout
    warnings = [x for x in r.stderr.splitlines() if "look-up failed" in x]
    assert len(warnings) == 2 and "HTTP 503" in warnings[0], r.stderr
    assert warnings[0].startswith(f"warning: entry k{rows[0]['id']} (line ")
    shown = show(ada)
    assert "library:    8 papers\n" in shown
    assert f"without a title yet (they count once it is found): arxiv:{rows[0]['id']}" in shown
    # arXiv answers now: any `set` asks for the papers still waiting
    r = run(ada, "subscribers", "set", "ada@example.org")
    assert r.exit_code == 0, r.output
    assert "2 found" in r.stderr and "without a title yet" not in r.stdout
    assert "keywords:   x\n" in show(ada)  # nothing else changed
    assert "without a title" not in show(ada)
    assert len(feed_server.hits(path)) == 2


def test_duplicates_are_warned_about_and_counted_once(ada, feed_server, tmp_path):
    library = tmp_path / "twice.bib"
    library.write_bytes((LIBRARIES / "zotero.bib").read_bytes() * 2)
    r = run(ada, "subscribers", "set", "ada@example.org", "--library", str(library))
    assert r.exit_code == 0, r.output
    assert "a library of 6 papers;" in r.stdout
    assert r.stderr.count("; counted once") == 6
    assert feed_server.requests == []  # every paper had its text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no paper found"),
        (b"   \n# just a comment\n", "no paper found"),
        (b"\x00\x01\x02binary\xff", "not a text file"),
        (b"@article{a, year = {2020}}\n@misc{b, note = {x}}\n", "no paper found: entry a"),
        (b"not an id\nnor this\n", "is not an arXiv id, DOI or URL (and 1 more problems)"),
        (b'{"items": []}', "a JSON file, not a library"),
        (b"x" * (MAX_BYTES + 1), f"more than the {MAX_BYTES:,} a library may have"),
        (None, "not a regular file"),
        ("missing", "cannot read: No such file or directory"),
    ],
)
def test_a_file_that_is_no_library_stores_nothing(ada, tmp_path, content, message):
    run(ada, "subscribers", "set", "ada@example.org", "--library", "-", input="1706.03762\n")
    before = show(ada)
    if content is None:
        path = str(tmp_path)  # a directory
    elif content == "missing":
        path = str(tmp_path / "missing.bib")
    else:
        (tmp_path / "lib.txt").write_bytes(content)
        path = str(tmp_path / "lib.txt")
    r = run(ada, "subscribers", "set", "ada@example.org", "--library", path, "-k", "new")
    assert r.exit_code == 2, r.output
    assert message in one_line(r.stderr)
    assert show(ada) == before


def test_a_device_is_refused_unread(ada):
    r = run(ada, "subscribers", "set", "ada@example.org", "--library", os.devnull)
    assert r.exit_code == 2 and "not a regular file" in one_line(r.stderr)


def test_an_unsubscribed_subscribers_interests_are_kept_for_their_return(ada):
    run(ada, "subscribers", "remove", "ada@example.org")
    r = run(ada, "subscribers", "set", "ada@example.org", "-k", "retrieval")
    assert r.exit_code == 0, r.output
    assert "note: ada@example.org is unsubscribed: nothing is sent to them" in r.stderr
    run(ada, "subscribers", "add", "ada@example.org")
    assert "keywords:   retrieval\n" in show(ada)


def test_import_reads_interest_columns_and_export_round_trips_them(ada, tmp_path, write_config):
    run(ada, "subscribers", "set", "ada@example.org", "-k", "old", "-a", "Ada Lovelace")
    csv = tmp_path / "members.csv"
    csv.write_text(
        "email;name;keywords;authors;categories;only_for_you\n"
        'ada@example.org;Ada;"retrieval; =sum(1)";;;\n'
        'bob@example.org;Bob;graphs;"LeCun, Yann; Bengio";cs.LG;yes\n'
        "cy@example.org;Cy;;;computer science;\n"
        "di@example.org;Di;x;;;maybe\n"
        "ed@example.org;Ed;;;;\n",
        encoding="utf-8",
    )
    r = run(ada, "subscribers", "import", str(csv))
    assert r.exit_code == 1, r.output
    assert r.stdout == (
        "imported 2, already subscribed 1, kept out 0, bad rows 2, interests set 2\n"
    )
    assert "line 4: cy@example.org: category 'computer science' is not an arXiv" in r.stderr
    assert "line 5: di@example.org: only_for_you is 'maybe'; expected yes or no" in r.stderr
    assert "keywords:   retrieval; =sum(1)\nauthors:    Ada Lovelace\n" in show(ada)
    assert show(ada, "bob@example.org").splitlines()[1:4] == [
        "keywords:   graphs",
        "authors:    LeCun, Yann; Bengio",
        "categories: cs.LG",
    ]
    assert "no interests stated" in show(ada, "ed@example.org")
    exported = run(ada, "subscribers", "export")
    assert exported.exit_code == 0
    assert "\nada@example.org,Ada,active," in exported.stdout
    assert ",retrieval; =sum(1),Ada Lovelace,," in exported.stdout
    assert ',graphs,"LeCun, Yann; Bengio",cs.LG,yes\n' in exported.stdout
    (tmp_path / "export.csv").write_text(exported.stdout, encoding="utf-8")
    other = write_config(f'database_url = "sqlite:///{tmp_path}/other.db"\n', name="other.toml")
    r = run(other, "subscribers", "import", str(tmp_path / "export.csv"))
    assert r.exit_code == 0, r.output
    for email in ("ada@example.org", "bob@example.org", "ed@example.org"):
        assert show(other, email).splitlines()[1:] == show(ada, email).splitlines()[1:]


# --------------------------------------------------------------------------- digest --as

DAY = T0.date()


@pytest.fixture
def day_config(write_config, sample_feeds) -> Path:
    """The bundled sample feeds fetched into the test's database, Ada subscribed."""
    from newsletter.config import load_settings
    from newsletter.pipeline import run_fetch

    path = write_config(
        '[schedule]\ntimezone = "UTC"\n[topics]\nwatch_keywords = ["quantum"]\n'
        + "".join(
            f'[[sources]]\nname = "{n}"\nkind = "arxiv-rss"\npath = "{sample_feeds}/{n}.xml"\n'
            for n in ("arxiv-cs", "arxiv-science")
        )
    )
    settings = load_settings(path, env={})
    with Store.open(settings.database_url) as store:
        assert run_fetch(settings, store, now=T0).ok
        store.add_subscriber("ada@example.org", "Ada", now=T0)
    return path


def digest_as(config: Path, *args: str) -> str:
    r = run(config, "digest", "--date", DAY.isoformat(), *args)
    assert r.exit_code == 0, r.output
    return r.stdout


def test_digest_as_puts_their_picks_with_reasons_above_their_topic_order(day_config):
    from newsletter.config import load_settings
    from newsletter.personal.digest import digest_papers
    from newsletter.personal.rank import prepare_day, rank
    from newsletter.pipeline import build_issue_digest
    from newsletter.topics.vectorize import vectorize

    plain = digest_as(day_config)
    run(day_config, "subscribers", "set", "ada@example.org", "-k", "language model", "-k", "robot")
    mine = digest_as(day_config, "--as", "ada@example.org")
    assert mine == digest_as(day_config, "--as", "ADA@example.org")  # deterministic
    head, _, topics = mine.partition("\nDigest for ")
    assert head.startswith("For you (ada@example.org): 5 papers\n")
    assert head.count("    why: mentions ") == 5
    # the picks and the topic order are rank's, computed here from the same digest
    settings = load_settings(day_config, env={})
    with Store.open(settings.database_url) as store:
        digest = build_issue_digest(store, settings, DAY)
    papers = digest_papers(digest)
    ranked = rank(
        prepare_day(papers, vectorize(papers), topics=digest.topics),
        Interests(keywords=("language model", "robot")),
        count=5,
    )
    shown = [line[4:] for line in head.splitlines() if re.match(r"^[ \d]\d\. ", line)]
    assert len(shown) == len(ranked.picks) == 5
    for line, pick in zip(shown, ranked.picks, strict=True):
        assert " ".join(pick.paper.title.split()).startswith(line)  # its first line
        assert f"    why: {pick.reason}" in head
    order = sorted(range(len(digest.topics)), key=lambda i: (-ranked.topic_affinity[i], i))
    labels = [line.split(". ", 1)[1].rsplit(" (", 1)[0] for line in topics.splitlines()
              if line[:1].isdigit() and ". " in line]  # fmt: skip
    assert labels == [digest.topics[i].label for i in order]
    assert labels != [t.label for t in digest.topics]  # reordered: the test shows something

    def unnumbered(text: str) -> list[str]:
        return sorted(re.sub(r"^\d+\. ", "", line) for line in text.splitlines())

    # the same topics, each as the plain digest shows it
    assert unnumbered(topics) == unnumbered(plain.partition("Digest for ")[2])


def test_digest_as_without_interests_only_for_you_and_the_section_off(day_config, write_config):
    plain = digest_as(day_config)
    none = digest_as(day_config, "--as", "ada@example.org")
    assert none.startswith('For you (ada@example.org): no interests stated, so no "For you"')
    assert none.endswith(plain)
    run(day_config, "subscribers", "set", "ada@example.org", "-k", "robot", "--only-for-you")
    only = digest_as(day_config, "--as", "ada@example.org")
    assert only.startswith("For you (ada@example.org): ")
    assert "Digest for" not in only
    assert only.endswith(
        'ada@example.org reads "For you" only: the topics are not in their email\n\n'
    )
    r = run(day_config, "digest", "--as", "nobody@example.org")
    assert r.exit_code == 1 and "no subscriber nobody@example.org" in one_line(r.stderr)
    off = write_config(day_config.read_text() + "[render]\nfor_you = 0\n", name="off.toml")
    run(off, "subscribers", "set", "ada@example.org", "--all-topics")
    shown = digest_as(off, "--as", "ada@example.org")
    assert shown.startswith("For you: off (render.for_you = 0); the topics in their order\n")
    assert "why:" not in shown
