"""One row per paper across identities: the same paper under an arXiv id in one feed and a
DOI (or a plain link) in another is stored once, matched by folded title and first author."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from conftest import both_backends

from newsletter.config import SourceSettings
from newsletter.models import Paper, SourceKind
from newsletter.sources.merge import identity_key
from newsletter.sources.parse import parse_document
from newsletter.store import Store, migrations, schema

T0 = dt.datetime(2026, 4, 27, 6, 0, tzinfo=dt.UTC)

ARXIV_RSS = """<?xml version="1.0"?>
<rss xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/"
     version="2.0"><channel><title>cs.CL updates on arXiv.org</title>
<link>http://rss.arxiv.org/rss/cs.CL</link><description>cs.CL</description>
<item>
  <title>Inference Scaling \\scriptsize{F}Laws: The Limits of LLM Resampling with
    Imperfect Verifiers</title>
  <link>https://arxiv.org/abs/2411.17501</link>
  <description>arXiv:2411.17501v1 Announce Type: new
Abstract: Recent research has generated hope that inference scaling could help.</description>
  <guid isPermaLink="false">oai:arXiv.org:2411.17501v1</guid>
  <category>cs.LG</category>
  <pubDate>Mon, 27 Apr 2026 00:00:00 -0400</pubDate>
  <arxiv:announce_type>new</arxiv:announce_type>
  <dc:creator>Benedikt Stroebl, Sayash Kapoor, Arvind Narayanan</dc:creator>
</item>
<item>
  <title>Sparse attention for $\\mathcal{O}(n)$ long-context retrieval</title>
  <link>https://arxiv.org/abs/2411.17502</link>
  <description>arXiv:2411.17502v1 Announce Type: new
Abstract: Sparse attention.</description>
  <guid isPermaLink="false">oai:arXiv.org:2411.17502v1</guid>
  <category>cs.CL</category>
  <pubDate>Mon, 27 Apr 2026 00:00:00 -0400</pubDate>
  <arxiv:announce_type>new</arxiv:announce_type>
  <dc:creator>Ada Lovelace</dc:creator>
</item>
</channel></rss>
"""

JOURNAL_ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Example Letters</title><id>tag:letters.example.org,2026:recent</id>
  <updated>2026-04-28T06:00:00Z</updated>
  <entry>
    <title>Inference scaling FLaws: the limits of LLM resampling with imperfect verifiers</title>
    <id>https://doi.org/10.5555/Letters.2026.017</id>
    <link rel="alternate" href="https://letters.example.org/abstract/10.5555/Letters.2026.017"/>
    <author><name>Stroebl, Benedikt</name></author>
    <author><name>Kapoor, Sayash</name></author>
    <updated>2026-04-28T00:00:00Z</updated>
    <summary>The published version, with a longer abstract.</summary>
  </entry>
  <entry>
    <title>Sparse attention for O(n) long-context retrieval</title>
    <id>https://doi.org/10.5555/Letters.2026.018</id>
    <author><name>Grace Hopper</name></author>
    <updated>2026-04-28T00:00:00Z</updated>
    <summary>Same title, another first author: another paper.</summary>
  </entry>
</feed>
"""


def parsed(doc: str, name: str, kind: SourceKind, url: str) -> list[Paper]:
    source = SourceSettings(name=name, url=url, kind=kind)
    return list(parse_document(doc.encode(), source=source, url=url, fetched_at=T0).papers)


@pytest.fixture
def feeds() -> tuple[list[Paper], list[Paper]]:
    arxiv = parsed(ARXIV_RSS, "arxiv-cl", SourceKind.ARXIV_RSS, "https://rss.arxiv.org/rss/cs.CL")
    journal = parsed(JOURNAL_ATOM, "letters", SourceKind.RSS, "https://letters.example.org/a")
    return arxiv, journal


def test_titles_render_latex_so_the_two_records_share_a_key(feeds) -> None:
    arxiv, journal = feeds
    assert arxiv[0].title == (
        "Inference Scaling FLaws: The Limits of LLM Resampling with Imperfect Verifiers"
    )
    assert arxiv[1].title == "Sparse attention for O(n) long-context retrieval"
    assert arxiv[0].id == "arxiv:2411.17501" and journal[0].id == "doi:10.5555/letters.2026.017"
    assert identity_key(arxiv[0]) == identity_key(journal[0]) is not None
    assert identity_key(arxiv[1]) != identity_key(journal[1])  # Lovelace is not Hopper


@both_backends
def test_same_paper_from_an_arxiv_and_a_doi_feed_is_stored_once(database_url, feeds) -> None:
    arxiv, journal = feeds
    with Store.open(database_url, now=T0) as store:
        assert store.upsert_papers(arxiv, seen_at=T0).new == 2
        r = store.upsert_papers(journal, seen_at=T0 + dt.timedelta(days=1))
        assert (r.new, r.updated) == (1, 1)  # Hopper's paper is new; the DOI record merges
        assert store.count_papers() == 3
        row = next(p for p in store.papers() if p.id == "arxiv:2411.17501")
        assert row.doi == "10.5555/letters.2026.017"  # the gap filled from the DOI record
        assert row.abstract.startswith("Recent research")  # the first record's text stays
        assert store.paper_sources(row.id) == ["arxiv-cl", "letters"]
        # seen again from either side: still one row, nothing changes
        r = store.upsert_papers([*journal, *arxiv], seen_at=T0 + dt.timedelta(days=2))
        assert (r.new, r.updated, r.unchanged) == (0, 0, 3)
        assert store.count_papers() == 3


@both_backends
def test_in_one_batch_the_arxiv_id_names_the_paper(database_url, feeds) -> None:
    arxiv, journal = feeds
    with Store.open(database_url, now=T0) as store:
        r = store.upsert_papers([journal[0], arxiv[0]], seen_at=T0)
        assert r.new == 1
        (row,) = store.papers()
        assert row.id == "arxiv:2411.17501" and row.doi == "10.5555/letters.2026.017"
        assert row.abstract == "The published version, with a longer abstract."  # listed first


@both_backends
def test_a_doi_stored_first_keeps_its_row(database_url, feeds) -> None:
    arxiv, journal = feeds
    with Store.open(database_url, now=T0) as store:
        store.upsert_papers(journal, seen_at=T0)
        store.upsert_papers(arxiv, seen_at=T0 + dt.timedelta(hours=1))
        ids = sorted(p.id for p in store.papers())
        # ids are never rewritten (issues may already carry them): the DOI row absorbs it
        assert ids == [
            "arxiv:2411.17502",
            "doi:10.5555/letters.2026.017",
            "doi:10.5555/letters.2026.018",
        ]
        row = next(p for p in store.papers() if p.id == "doi:10.5555/letters.2026.017")
        assert row.arxiv_id == "2411.17501"


def test_short_or_unauthored_titles_need_more_than_the_title() -> None:
    a = Paper(id="url:https://a.example/1", title="Editorial", authors=())
    b = Paper(id="url:https://b.example/1", title="Editorial", authors=())
    assert identity_key(a) is None and identity_key(b) is None  # never matched
    c = Paper(id="doi:10.1/c", title="Deep learning for protein folding", authors=("Ann Lee",))
    d = Paper(id="doi:10.1/d", title="Deep Learning for Protein-Folding", authors=("Lee, A.",))
    e = Paper(id="doi:10.1/e", title="Deep learning for protein folding", authors=("Bo Chen",))
    assert identity_key(c) == identity_key(d) != identity_key(e)


def tables_before(version: int) -> set[str]:
    """The tables a database has at ``version - 1``: the earlier migrations run on a scratch
    database."""
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        schema.schema_migrations.create(conn)
        for v, _, step in migrations.MIGRATIONS:
            if v < version:
                step(conn)
        return set(sa.inspect(conn).get_table_names())


def test_upgrading_an_older_database_keys_the_papers_it_holds(tmp_path, feeds) -> None:
    arxiv, journal = feeds
    url = f"sqlite:///{tmp_path}/old.db"
    keys = next(v for v, what, _ in migrations.MIGRATIONS if "title keys" in what)
    with Store.open(url, now=T0) as store:  # make it look like a database from before
        store.upsert_papers(arxiv, seen_at=T0)
        with store.write() as conn:
            # as it was before the title keys: that migration and every later one run again
            before = tables_before(keys)
            for table in reversed(schema.metadata.sorted_tables):
                if table.name not in before:
                    table.drop(conn)
            sm = schema.schema_migrations
            conn.execute(sm.delete().where(sm.c.version >= keys))
    with Store.open(url, now=T0) as store:
        assert store.schema_version() == migrations.LATEST
        with store.read() as conn:
            assert (
                conn.execute(sa.select(sa.func.count()).select_from(schema.paper_titles)).scalar()
                == 2
            )
        store.upsert_papers(journal, seen_at=T0 + dt.timedelta(days=1))
        assert store.count_papers() == 3
