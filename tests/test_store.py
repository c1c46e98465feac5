"""The store on a real SQLite file and on PostgreSQL: migrations, paper upserts and
merges, concurrency."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa
from conftest import both_backends

from newsletter.errors import StoreError
from newsletter.models import AnnounceType, FetchStatus, Paper, SourceState
from newsletter.store import Store, migrations, schema

T0 = dt.datetime(2026, 4, 27, 6, 0, tzinfo=dt.UTC)


def paper(n: int, **kw) -> Paper:
    base = dict(
        id=f"arxiv:2604.{n:05d}",
        title=f"Paper {n}",
        abstract=f"Abstract {n}.",
        authors=("Ada Lovelace", "Alan Turing"),
        url=f"https://arxiv.org/abs/2604.{n:05d}",
        categories=("cs.CL",),
        announced=T0,
        source="arxiv",
        announce_type=AnnounceType.NEW,
        arxiv_id=f"2604.{n:05d}",
    )
    base.update(kw)
    return Paper(**base)


@pytest.fixture
def store(database_url):
    s = Store.open(database_url, now=T0)
    yield s
    s.close()


@both_backends
def test_fresh_database_is_migrated_to_the_schema(store):
    assert store.schema_version() == migrations.LATEST
    insp = sa.inspect(store.engine)
    for table in schema.metadata.sorted_tables:
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert cols == {c.name for c in table.columns}, table.name


def test_sqlite_connections_are_set_up_for_concurrency(store):
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


@both_backends
def test_reopening_does_not_migrate_again(database_url, store):
    store.close()
    again = Store.open(database_url, now=T0 + dt.timedelta(days=1))
    with again.read() as conn:
        rows = conn.execute(sa.select(schema.schema_migrations)).all()
    again.close()
    assert [r.version for r in rows] == [m[0] for m in migrations.MIGRATIONS]
    assert rows[0].applied_at == T0


@both_backends
def test_newer_schema_is_refused(database_url, store):
    with store.write() as conn:
        conn.execute(
            schema.schema_migrations.insert().values(
                version=999, description="future", applied_at=T0
            )
        )
    store.close()
    with pytest.raises(StoreError, match="schema version 999, newer than this program"):
        Store.open(database_url)


def test_not_a_database_and_missing_folder(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database file at all" * 100)
    with pytest.raises(StoreError, match=r"not a usable database|cannot open"):
        Store.open(f"sqlite:///{junk}")
    with pytest.raises(StoreError, match=r"folder .* does not exist"):
        Store.open(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    with pytest.raises(StoreError, match="cannot use database URL"):
        Store.open("nosuchdb://x/y")


@both_backends
def test_upsert_stores_each_paper_once_and_round_trips(store):
    p = paper(
        1,
        pdf_url="https://arxiv.org/pdf/2604.00001",
        published=T0 - dt.timedelta(days=3),
        upvotes=None,
        keywords=("llm",),
        doi="10.1/x",
    )
    r = store.upsert_papers([p, paper(2)], seen_at=T0)
    assert (r.new, r.updated, r.unchanged) == (2, 0, 0)
    r = store.upsert_papers([p, paper(2)], seen_at=T0 + dt.timedelta(hours=1))
    assert (r.new, r.updated, r.unchanged) == (0, 0, 2)
    assert store.count_papers() == 2
    got = {x.id: x for x in store.papers()}
    assert got[p.id] == p
    assert got[p.id].announced.tzinfo is dt.UTC


@both_backends
def test_same_paper_from_two_sources_is_merged(store):
    arxiv = paper(7, source="arxiv-cs", categories=("cs.CL", "cs.LG"))
    hf = paper(
        7,
        source="hf-daily",
        abstract="",
        categories=("cs.AI",),
        upvotes=42,
        comments=3,
        keywords=("agents",),
        announce_type=None,
        pdf_url="https://arxiv.org/pdf/2604.00007",
    )
    store.upsert_papers([arxiv], seen_at=T0)
    r = store.upsert_papers([hf], seen_at=T0 + dt.timedelta(hours=2))
    assert (r.new, r.updated) == (0, 1)
    (merged,) = store.papers()
    assert merged.abstract == arxiv.abstract  # the first record's text is kept
    assert merged.upvotes == 42 and merged.comments == 3
    assert merged.categories == ("cs.CL", "cs.LG", "cs.AI")
    assert merged.pdf_url == "https://arxiv.org/pdf/2604.00007"
    assert merged.announce_type is AnnounceType.NEW
    assert merged.source == "arxiv-cs"
    assert store.paper_sources(merged.id) == ["arxiv-cs", "hf-daily"]
    # Later signals only ever raise the count; first_seen stays the first.
    store.upsert_papers(
        [paper(7, source="hf-daily", upvotes=10)], seen_at=T0 + dt.timedelta(days=1)
    )
    (again,) = store.papers(since=T0, until=T0 + dt.timedelta(minutes=1))
    assert again.upvotes == 42


@both_backends
def test_duplicates_within_one_batch_are_merged(store):
    r = store.upsert_papers([paper(3, upvotes=1), paper(3, upvotes=5)], seen_at=T0)
    assert r.new == 1
    assert store.papers()[0].upvotes == 5


@both_backends
def test_papers_window_and_unissued(store):
    store.upsert_papers([paper(1)], seen_at=T0 - dt.timedelta(days=2))
    store.upsert_papers([paper(2), paper(3)], seen_at=T0)
    assert [p.id for p in store.papers(since=T0)] == ["arxiv:2604.00002", "arxiv:2604.00003"]
    assert [p.id for p in store.papers(until=T0)] == ["arxiv:2604.00001"]
    assert len(store.papers(limit=2)) == 2
    with store.write() as conn:
        issue_id = conn.execute(
            schema.issues.insert().values(
                issue_date=dt.date(2026, 4, 26), status="sent", created_at=T0, updated_at=T0
            )
        ).inserted_primary_key[0]
        conn.execute(
            schema.issue_papers.insert().values(issue_id=issue_id, paper_id="arxiv:2604.00002")
        )
    assert [p.id for p in store.papers(not_issued_before=dt.date(2026, 4, 27))] == [
        "arxiv:2604.00003",
        "arxiv:2604.00001",
    ]
    # The issue's own date still sees its papers; an earlier date does not exclude them.
    assert len(store.papers(not_issued_before=dt.date(2026, 4, 26))) == 3


@both_backends
def test_many_papers_in_one_upsert(store):
    # More ids than SQLite's bound-parameter limit in one IN (...).
    batch = [paper(i) for i in range(1500)]
    assert store.upsert_papers(batch, seen_at=T0).new == 1500
    assert store.upsert_papers(batch, seen_at=T0).unchanged == 1500


@both_backends
def test_source_state_round_trip(store):
    assert store.source_state("x") is None
    s = SourceState(
        name="x",
        url="https://e/x",
        etag='"abc"',
        last_modified="Mon, 27 Apr 2026 04:00:00 GMT",
        last_status=FetchStatus.OK,
        last_http_status=200,
        last_attempt_at=T0,
        last_success_at=T0,
        last_new=3,
        last_total=9,
    )
    store.save_source_state(s)
    assert store.source_state("x") == s
    s2 = SourceState(
        name="x",
        url="https://e/x",
        last_status=FetchStatus.ERROR,
        last_error="HTTP 500",
        last_attempt_at=T0,
    )
    store.save_source_state(s2)
    assert store.source_state("x") == s2
    assert [st.name for st in store.source_states()] == ["x"]


@both_backends
def test_naive_datetimes_are_refused(store):
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        store.upsert_papers([paper(1)], seen_at=dt.datetime(2026, 1, 1))


WRITER = textwrap.dedent(
    """
    import datetime as dt, sys
    from newsletter.models import Paper
    from newsletter.store import Store
    url, start, n, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    now = dt.datetime(2026, 4, 27, tzinfo=dt.UTC)
    store = Store.open(url, now=now)
    for i in range(start, start + n, 10):
        batch = [Paper(id=f"arxiv:{j}", title=f"t{j}", source=src, upvotes=j % 7) for j in range(i, i + 10)]
        store.upsert_papers(batch, seen_at=now)
    print(store.count_papers())
    """
)


def test_two_processes_writing_at_once(tmp_path):
    """Two real processes create, migrate and fill the same fresh file concurrently."""
    url = f"sqlite:///{tmp_path}/shared.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(start), "400", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start, name in ((0, "a"), (200, "b"))
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with Store.open(url) as s:
        assert s.count_papers() == 600
        assert s.schema_version() == migrations.LATEST
        both = [x for x in s.papers() if x.id in ("arxiv:250", "arxiv:399")]
        assert all(sorted(s.paper_sources(x.id)) == ["a", "b"] for x in both)


@both_backends
def test_ledger_counts_and_a_lost_claim(store):
    """Queueing reports its count on every backend; a sender whose lease ran out and
    whose row another worker took cannot mark it SENDING (so it does not send), while
    the previous message it recorded in the same transaction stays SENT."""
    from newsletter.models import IssueStatus
    from newsletter.store.ledger import ClaimLost

    for i in range(3):
        store.add_subscriber(f"r{i}@example.org", "", now=T0)
    issue = store.save_issue(
        dt.date(2026, 4, 27),
        status=IssueStatus.READY,
        subject="s",
        preheader="p",
        html="<p>x</p>",
        text="x",
        papers=[],
        now=T0,
    )
    assert store.queue_deliveries(issue.id, now=T0) == 3
    assert store.queue_deliveries(issue.id, now=T0) == 0
    first, second, _ = store.claim(issue.id, "a:1:0", 10, now=T0)
    later = T0 + dt.timedelta(minutes=10)
    store.mark_sending(first, "<m1>", now=later - dt.timedelta(seconds=30))  # renews it
    taken = store.claim(issue.id, "b:2:0", 10, now=later, lease=60)
    assert [c.subscriber.id for c in taken] == [second.subscriber.id, second.subscriber.id + 1]
    with pytest.raises(ClaimLost, match="another worker took it"):
        store.mark_sending(second, "<m2>", now=later, sent=(first, "250 ok"))
    counts = store.delivery_counts(issue.id)
    assert counts.sent == 1  # the previous message's SENT was kept
    assert counts.claimed == 2  # still the new holder's
    # The new holder renews and records normally.
    assert store.renew_claims(issue.id, "b:2:0", now=later) == 2
    store.mark_sending(taken[0], "<m2>", now=later)
    store.mark_sent(taken[0], "250 ok", now=later)
    assert store.delivery_counts(issue.id).sent == 2


def test_migration_versions_run_one_to_latest_without_gaps() -> None:
    """A database at version N skips every migration numbered N or less: a version slotted
    in below the latest (two branches numbering theirs at once) would never run on the
    databases already past it, so the numbers must be exactly 1..LATEST, in order."""
    versions = [v for v, _, _ in migrations.MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))
    assert versions[-1] == migrations.LATEST


def test_a_write_lock_held_past_the_busy_timeout_is_a_store_error(tmp_path, monkeypatch):
    """Another process holding SQLite's write lock for longer than the busy timeout (a
    newsletter process stopped mid-write, a shell left in a transaction) ends in one line
    naming the file, not a traceback from inside a sender thread."""
    import sqlite3

    import newsletter.store.database

    monkeypatch.setattr(newsletter.store.database, "BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "locked.db"
    with Store.open(f"sqlite:///{path}") as s:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with (
                pytest.raises(StoreError, match=r"locked\.db.*locked by another process"),
                s.write() as conn,
            ):
                conn.execute(sa.text("SELECT 1"))
        finally:
            other.execute("ROLLBACK")
            other.close()
        with s.write() as conn:  # free again: the store still works
            conn.execute(sa.text("SELECT 1"))
