"""Parsing real and hand-built feed documents into Papers (no network, no mocks)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.config import SourceSettings
from newsletter.errors import FeedError
from newsletter.models import AnnounceType, Paper, SourceKind
from newsletter.sources.parse import MAX_COUNT, ParsedFeed, detect_kind, parse_document

FEEDS = Path(__file__).parent / "data" / "feeds"
FETCHED = dt.datetime(2026, 4, 27, 12, 0, tzinfo=dt.UTC)
ARXIV_RSS = "arxiv_rss_cs.AI_2026-04-27_3items.xml"
API_ONE = "arxiv_api_atom_legacy_2020-09-04_idlist_1entry.xml"
API_TWO = "arxiv_api_atom_legacy_2025-10-17_cs.RO_2entries.xml"


def body(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def parse(
    data: bytes | str,
    *,
    url: str = "https://example.org/feed",
    kind: SourceKind = SourceKind.AUTO,
    content_type: str | None = None,
    **settings: object,
) -> ParsedFeed:
    if isinstance(data, str):
        data = body(data)
    source = SourceSettings(name="test-source", url=url, kind=kind, **settings)  # type: ignore[arg-type]
    return parse_document(
        data, source=source, url=url, content_type=content_type, fetched_at=FETCHED
    )


def by_id(feed: ParsedFeed) -> dict[str, Paper]:
    return {p.id: p for p in feed.papers}


def assert_utc(value: dt.datetime | None) -> None:
    assert value is not None and value.tzinfo is not None
    assert value.utcoffset() == dt.timedelta(0)


# --------------------------------------------------------------------------------------------
# rss.arxiv.org (real document)


def test_arxiv_rss_real_document() -> None:
    feed = parse(ARXIV_RSS, url="https://rss.arxiv.org/rss/cs.AI")
    assert feed.kind == SourceKind.ARXIV_RSS
    assert feed.title == "cs.AI updates on arXiv.org"
    assert feed.skipped == 0 and feed.note == ""
    assert [p.id for p in feed.papers] == [
        "arxiv:2604.21935",
        "arxiv:2604.21936",
        "arxiv:2604.21937",
    ]
    first, second, third = feed.papers
    assert first.title == (
        "Math Takes Two: A test for emergent mathematical reasoning in communication"
    )
    assert first.abstract.startswith("Although language models demonstrate remarkable")
    assert first.abstract.endswith("with emergent numerical reasoning capabilities.")
    assert "Announce Type" not in first.abstract and "arXiv:" not in first.abstract
    assert first.authors == ("Michael Cooper", "Samuel Cooper")
    assert first.categories == ("cs.AI", "cs.LG")
    assert first.announce_type is AnnounceType.NEW
    assert first.arxiv_id == "2604.21935"
    assert first.url == "https://arxiv.org/abs/2604.21935"
    assert first.pdf_url == "https://arxiv.org/pdf/2604.21935"
    # pubDate "Mon, 27 Apr 2026 00:00:00 -0400" is the announcement, in UTC.
    assert first.announced == dt.datetime(2026, 4, 27, 4, 0, tzinfo=dt.UTC)
    assert_utc(first.announced)
    assert first.published is None
    assert first.source == "test-source"
    assert first.doi is None and first.upvotes is None

    assert len(second.authors) == 18
    assert second.authors[0] == "Lianrui Zuo" and second.authors[-1] == "Bennett A. Landman"
    assert "Aravind R. Krishnan" in second.authors
    assert second.categories == ("cs.AI", "cs.CV", "cs.MA")
    # \textbf{adaptability} in the real abstract reads as text.
    assert "central: adaptability, the ability" in second.abstract
    assert "\\textbf" not in second.abstract
    assert second.abstract.startswith("Medical imaging research is increasingly shifting")
    assert len(third.authors) == 17 and third.authors[-1] == "Zhengwei Xie"
    assert third.title.startswith("MolClaw: An Autonomous Agent")
    assert third.abstract.startswith("Computational drug discovery, particularly")


def test_arxiv_rss_announce_types_and_duplicates() -> None:
    feed = parse("arxiv_rss_mixed_announce_types.xml", url="https://rss.arxiv.org/rss/cs.LG")
    # new + cross kept; replace, replace-cross and a repeated entry dropped.
    assert [p.id for p in feed.papers] == ["arxiv:2604.22001", "arxiv:2604.22002"]
    assert feed.skipped == 3
    new, cross = feed.papers
    assert new.announce_type is AnnounceType.NEW
    assert cross.announce_type is AnnounceType.CROSS
    assert cross.abstract == "We dock proteins with message passing."  # the first listing wins
    assert new.title == "Scaling Laws for O(n log n) Attention: Sparse Is Enough"  # math rendered
    assert new.abstract == (
        r"We study sparse attention with $k \ll n$ keys per query. Our results hold for any "
        "kernel, see Fig. 3 and the appendix of Smith et al. We obtain a 40% speed-up & "
        "match dense quality."
    )
    assert new.authors == ("Ana García", "John Smith, Jr.", "Wei Zhang", "José Müller")
    assert cross.authors == ("Maria Rossi", "Kenji Tanaka")
    assert new.announced == dt.datetime(2026, 4, 28, 4, 0, tzinfo=dt.UTC)


def test_arxiv_rss_announce_types_are_configurable() -> None:
    everything = tuple(AnnounceType)
    feed = parse("arxiv_rss_mixed_announce_types.xml", announce_types=everything)
    assert [p.id for p in feed.papers] == [
        "arxiv:2604.22001",
        "arxiv:2604.22002",
        "arxiv:2603.12345",
        "arxiv:2602.01234",
    ]
    assert feed.skipped == 1  # only the repeat
    replaced = by_id(feed)["arxiv:2602.01234"]
    assert replaced.announce_type is AnnounceType.REPLACE_CROSS
    assert replaced.authors == ("Paul Martin", "Sofia Costa")
    only_replacements = parse(
        "arxiv_rss_mixed_announce_types.xml", announce_types=(AnnounceType.REPLACE,)
    )
    assert [p.id for p in only_replacements.papers] == ["arxiv:2603.12345"]


def test_category_filter() -> None:
    feed = parse("arxiv_rss_mixed_announce_types.xml", categories=("q-bio.BM",))
    assert [p.id for p in feed.papers] == ["arxiv:2604.22002"]
    assert feed.skipped == 4
    # An archive name keeps all of its categories; matching ignores case.
    assert [p.id for p in parse(ARXIV_RSS, categories=("CS",)).papers] == [
        "arxiv:2604.21935",
        "arxiv:2604.21936",
        "arxiv:2604.21937",
    ]
    assert [p.id for p in parse(ARXIV_RSS, categories=("cs.cv", "cs.LG")).papers] == [
        "arxiv:2604.21935",
        "arxiv:2604.21936",
    ]
    none_left = parse(ARXIV_RSS, categories=("astro-ph",))
    assert none_left.papers == () and none_left.skipped == 3
    assert none_left.note == "none of the 3 entries kept: 3 left out by the source's filters"


def test_empty_filters_keep_everything() -> None:
    feed = parse("arxiv_rss_mixed_announce_types.xml", announce_types=(), categories=())
    assert len(feed.papers) == 4 and feed.skipped == 1


def test_empty_arxiv_channel_is_a_valid_day_off() -> None:
    feed = parse("arxiv_rss_empty_weekend.xml", url="https://rss.arxiv.org/rss/cs.AI")
    assert feed.kind == SourceKind.ARXIV_RSS
    assert feed.papers == () and feed.skipped == 0
    assert "no announcement" in feed.note and "weekends" in feed.note
    # Detected from the document alone too (a local file).
    assert parse("arxiv_rss_empty_weekend.xml", url="feeds/weekend.xml").kind == (
        SourceKind.ARXIV_RSS
    )


# --------------------------------------------------------------------------------------------
# export.arxiv.org API (real documents)


def test_arxiv_api_real_document_with_doi() -> None:
    feed = parse(API_ONE, url="http://export.arxiv.org/api/query?id_list=1601.00001")
    assert feed.kind == SourceKind.ARXIV_API
    assert feed.title == "ArXiv Query: search_query=&id_list=1601.00001&start=0&max_results=10"
    (paper,) = feed.papers
    assert paper.id == "arxiv:1601.00001"
    assert paper.arxiv_id == "1601.00001"
    assert paper.doi == "10.1063/1.4944470"
    assert paper.title == (
        "Inelastic effects in molecular transport junctions: The probe technique at high bias"
    )
    assert paper.abstract.startswith("We extend the Landauer-Büttiker probe formalism")
    assert "distinct $I$-$V$ characteristics" in paper.abstract
    assert paper.authors == ("Michael Kilgour", "Dvira Segal")
    assert paper.categories == ("cond-mat.mes-hall",)
    assert paper.published == dt.datetime(2015, 12, 26, 21, 19, 45, tzinfo=dt.UTC)
    assert paper.announced == paper.published
    assert paper.url == "https://arxiv.org/abs/1601.00001"
    assert paper.pdf_url == "https://arxiv.org/pdf/1601.00001"
    assert paper.announce_type is None


def test_arxiv_api_primary_category_first() -> None:
    feed = parse(API_TWO, url="http://export.arxiv.org/api/query?search_query=cat:cs.RO")
    assert [p.id for p in feed.papers] == ["arxiv:2510.14968", "arxiv:2510.14827"]
    rdd, flow = feed.papers
    assert rdd.categories == ("cs.RO", "cs.AI", "cs.CV", "cs.LG", "cs.SY", "eess.SY")
    assert rdd.authors == ("Mingxuan Yan", "Yuping Wang", "Zechun Liu", "Jiachen Li")
    assert rdd.title == (
        "RDD: Retrieval-Based Demonstration Decomposer for Planner Alignment in Long-Horizon Tasks"
    )
    assert rdd.abstract.startswith("To tackle long-horizon tasks, recent hierarchical")
    assert rdd.published == dt.datetime(2025, 10, 16, 17, 59, 37, tzinfo=dt.UTC)
    assert flow.authors[-1] == "Martin Magnusson" and len(flow.authors) == 6
    assert flow.categories == ("cs.RO",)
    assert flow.doi is None


def test_arxiv_api_documents_are_detected_without_a_url_hint() -> None:
    assert parse(API_TWO, url="saved/query.xml").kind == SourceKind.ARXIV_API
    assert parse("arxiv_api_empty.xml", url="saved/empty.xml").kind == SourceKind.ARXIV_API


def test_arxiv_api_error_feed() -> None:
    url = "http://export.arxiv.org/api/query?id_list=1234.1234"
    with pytest.raises(FeedError) as info:
        parse("arxiv_api_error.xml", url=url)
    assert info.value.url == url
    assert info.value.reason == "arXiv API error: incorrect id format for 1234.1234"


def test_arxiv_api_zero_results_is_valid() -> None:
    feed = parse("arxiv_api_empty.xml", url="http://export.arxiv.org/api/query?search_query=x")
    assert feed.papers == () and feed.skipped == 0
    assert "no papers" in feed.note


# --------------------------------------------------------------------------------------------
# Hugging Face daily papers


HF_URL = "https://huggingface.co/api/daily_papers?date=2026-04-27"


def test_hf_daily_papers() -> None:
    feed = parse("hf_daily_papers_2026-04-27.json", url=HF_URL)
    assert feed.kind == SourceKind.HF_DAILY
    # No id, no title, and a non-object entry are skipped.
    assert feed.skipped == 3
    assert [p.id for p in feed.papers] == [
        "arxiv:2604.21935",
        "arxiv:2604.20001",
        "arxiv:2604.20002",
    ]
    math, video, sparse = feed.papers
    assert math.title == (
        "Math Takes Two: A test for emergent mathematical reasoning in communication"
    )
    assert math.upvotes == 42 and math.comments == 3
    assert math.keywords == ("emergent communication", "mathematical reasoning", "benchmark")
    assert math.authors == ("Michael Cooper", "Samuel Cooper")
    assert math.url == "https://arxiv.org/abs/2604.21935"
    assert math.pdf_url == "https://arxiv.org/pdf/2604.21935"
    assert math.arxiv_id == "2604.21935"
    assert math.published == dt.datetime(2026, 4, 24, 17, 59, 1, tzinfo=dt.UTC)
    assert math.announced == dt.datetime(2026, 4, 27, 6, 12, 44, 512000, tzinfo=dt.UTC)
    assert math.abstract.startswith("Although language models demonstrate")
    assert math.source == "test-source" and math.categories == ()
    assert video.title == "Video Diffusion with Long-Range Memory"
    assert video.authors == ("Yuki Sato", "Priya Raman")
    assert video.abstract == (
        "We add a memory bank to video diffusion models. It helps with minute-long clips."
    )
    assert video.comments == 0 and video.upvotes == 17
    # Missing optional fields: no authors, abstract, comments; announced falls back.
    assert sparse.authors == () and sparse.abstract == "" and sparse.comments is None
    assert sparse.upvotes == 5 and sparse.published is None
    assert sparse.announced == FETCHED


def test_hf_paper_is_the_same_paper_as_in_the_arxiv_rss() -> None:
    rss = by_id(parse(ARXIV_RSS))
    hf = by_id(parse("hf_daily_papers_2026-04-27.json", url=HF_URL))
    assert rss["arxiv:2604.21935"].title == hf["arxiv:2604.21935"].title


def test_hf_empty_day_is_valid() -> None:
    feed = parse("hf_daily_papers_empty.json", url=HF_URL)
    assert feed.kind == SourceKind.HF_DAILY
    assert feed.papers == () and feed.skipped == 0
    assert feed.note == "no daily papers listed for this date"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            b'{"error":"Invalid date format, expected YYYY-MM-DD"}',
            "Hugging Face API error: Invalid date format, expected YYYY-MM-DD",
        ),
        (b'{"papers": []}', "a JSON object, not a JSON list of daily papers"),
        (b'"just a string"', "not a JSON list of daily papers"),
        (b'[{"paper": ', "not valid JSON"),
        (b"", "the document is empty"),
    ],
)
def test_hf_bad_documents(data: bytes, reason: str) -> None:
    with pytest.raises(FeedError, match="^" + HF_URL.replace("?", r"\?") + ": ") as info:
        parse(data, url=HF_URL)
    assert reason in info.value.reason


def test_hf_error_fixture() -> None:
    with pytest.raises(FeedError, match="Invalid date format"):
        parse("hf_daily_papers_error.json", url=HF_URL)


def test_hf_tolerates_odd_values() -> None:
    data = json.dumps(
        [
            {
                "paper": {
                    "id": "2604.30001",
                    "title": "<b>Odd</b>\r\nvalues",
                    "upvotes": "1.2k",
                    "authors": None,
                    "ai_keywords": "not a list",
                    "publishedAt": "not a date",
                },
                "numComments": -1,
            },
            {
                "paper": {
                    "id": "2604.30002",
                    "title": "Counts as text",
                    "upvotes": "7",
                    "authors": ["Plain Name"],
                },
                "numComments": True,
            },
            {"paper": {"id": "hf-only-slug", "title": "Not on arXiv"}},
        ]
    ).encode()
    odd, text_counts, slug = parse(data, url=HF_URL).papers
    assert odd.title == "Odd values"
    assert odd.upvotes is None and odd.comments is None and odd.published is None
    assert odd.authors == () and odd.keywords == ()
    assert text_counts.upvotes == 7 and text_counts.comments is None
    assert text_counts.authors == ("Plain Name",)
    assert slug.id == "url:https://huggingface.co/papers/hf-only-slug"
    assert slug.arxiv_id is None and slug.pdf_url is None


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (7, 7),
        (0, 0),
        (10**29, MAX_COUNT),  # SQLite's INTEGER is 64-bit, PostgreSQL's 32-bit
        (MAX_COUNT + 1, MAX_COUNT),
        (-3, None),  # a negative count says nothing
        (12.0, 12),
        (12.7, 12),
        (1e300, MAX_COUNT),
        (-0.5, None),
        (True, None),
        ("42", 42),
        (" 42 ", 42),
        ("9" * 5000, MAX_COUNT),  # past int()'s 4,300-digit limit
        ("²", None),  # a digit to str.isdigit, not to int()
        ("٣", None),  # Arabic-Indic three: only ASCII digits count
        ("-5", None),
        ("1.2k", None),
        ({"n": 1}, None),
        ([1], None),
    ],
)
def test_hf_counts_are_clamped_or_unknown(value: object, count: int | None) -> None:
    data = json.dumps([{"paper": {"id": "2604.30003", "title": "T", "upvotes": value}}]).encode()
    (paper,) = parse(data, url=HF_URL).papers
    assert paper.upvotes == count


@pytest.mark.parametrize(
    "literal",
    [b"1" + b"0" * 5000, b"1e400", b"Infinity", b"NaN", b"-Infinity", b"-" + b"9" * 5000],
)
def test_hf_numbers_beyond_any_range(literal: bytes) -> None:
    data = b'[{"paper": {"id": "2604.30004", "title": "T", "upvotes": %s}, "numComments": %s}]' % (
        literal,
        literal,
    )
    (paper,) = parse(data, url=HF_URL).papers
    expected = MAX_COUNT if literal[:1] in b"1I" else None
    assert paper.upvotes == paper.comments == expected


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b"[" + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"]",
        b'[{"paper": {"id": "2604.30005", "title": "T", "authors": '
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}}]",
    ],
)
def test_hf_deeply_nested_json_is_a_feed_error(data: bytes) -> None:
    with pytest.raises(FeedError, match="JSON nested too deeply"):
        parse(data, url=HF_URL)


def test_every_string_is_storable() -> None:
    # json.loads lets a lone surrogate through (no database can encode it) and NUL
    # (PostgreSQL refuses it in text); both become U+FFFD wherever they are.
    hf = json.dumps(
        [
            {
                "paper": {
                    "id": "slug\ud800\u0000",
                    "title": "A \udc00 title",
                    "summary": "An \ud800 abstract",
                    "authors": [{"name": "Ada \udbff"}],
                    "ai_keywords": ["k\udfff"],
                }
            }
        ]
    ).encode()
    (paper,) = parse(hf, url=HF_URL).papers
    for value in (
        paper.id,
        paper.title,
        paper.abstract,
        paper.url,
        *paper.authors,
        *paper.keywords,
    ):
        assert value.encode("utf-8") and "\x00" not in value
    assert paper.id == "url:https://huggingface.co/papers/slug\ufffd\ufffd"
    assert paper.title == "A \ufffd title" and paper.keywords == ("k\ufffd",)
    assert paper.authors == ("Ada \ufffd",) and paper.abstract == "An \ufffd abstract"


def test_nul_in_xml_is_refused() -> None:
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item>'
        b"<title>Zero</title><link>https://n.example/a&#0;b</link></item></channel></rss>"
    )
    with pytest.raises(FeedError, match="not well-formed XML"):
        parse(rss)


# --------------------------------------------------------------------------------------------
# Any RSS / Atom


def test_rss10_rdf_journal_feed() -> None:
    feed = parse("journal_rss10_rdf.xml", url="https://journal.example.org/current.rss")
    assert feed.kind == SourceKind.RSS
    assert feed.title == "Journal of Example Physics: current issue"
    with_doi, without = feed.papers
    assert with_doi.id == "doi:10.5555/jep.2026.0101"
    assert with_doi.doi == "10.5555/jep.2026.0101"
    assert with_doi.title == "Spin liquids in kagome magnets & beyond"
    assert with_doi.abstract == "We report evidence of a quantum spin liquid. Second paragraph."
    assert with_doi.authors == ("Alice Smith", "Bob Jones")
    assert with_doi.categories == ("Condensed matter",)
    assert with_doi.url == "https://journal.example.org/articles/jep-2026-0101"
    assert with_doi.published == dt.datetime(2026, 4, 25, tzinfo=dt.UTC)
    assert with_doi.arxiv_id is None and with_doi.pdf_url is None
    # No DOI: the link is the id (fragment dropped from the id, kept in the url).
    assert without.id == "url:https://journal.example.org/articles/jep-2026-0102"
    assert without.url == "https://journal.example.org/articles/jep-2026-0102#abstract"
    assert without.authors == ("Carol White", "Dan Black")
    assert without.published == dt.datetime(2026, 4, 26, 8, 30, tzinfo=dt.UTC)


def test_atom_journal_feed_with_dois_and_arxiv_links() -> None:
    feed = parse("journal_atom_dois.xml", url="https://letters.example.org/recent.atom")
    assert feed.title == "Example Letters — Recent Articles"
    doi_paper, arxiv_paper, page = feed.papers
    assert doi_paper.id == "doi:10.5555/physrevexample.7.014001"
    assert doi_paper.title == "Topological Floquet phases"
    assert doi_paper.abstract == "Driven systems host anomalous edge states."
    assert doi_paper.authors == ("Hannah Kim", "Omar Haddad")
    assert doi_paper.categories == ("cond-mat.mes-hall",)
    assert doi_paper.url == "https://letters.example.org/abstract/10.5555/PhysRevExample.7.014001"
    # The relative PDF link is resolved against the feed's URL.
    assert doi_paper.pdf_url == "https://letters.example.org/pdf/10.5555/PhysRevExample.7.014001"
    assert doi_paper.published == dt.datetime(2026, 4, 26, 8, 0, tzinfo=dt.UTC)
    # An arxiv.org link makes the entry the arXiv paper (merges with the arXiv feeds).
    assert arxiv_paper.id == "arxiv:2604.21936" and arxiv_paper.arxiv_id == "2604.21936"
    assert arxiv_paper.url == "https://arxiv.org/abs/2604.21936"
    assert arxiv_paper.published == dt.datetime(2026, 4, 27, 5, 0, tzinfo=dt.UTC)
    assert page.id == "url:https://letters.example.org/editorial/3?lang=en"
    assert page.authors == ()
    # No date on the entry: the feed's own date.
    assert page.announced == dt.datetime(2026, 4, 27, 6, 0, tzinfo=dt.UTC)


def test_iso_8859_1_feed_decodes_accented_names() -> None:
    data = body("rss20_iso-8859-1.xml")
    assert "Müller".encode("latin-1") in data  # really not UTF-8 on disk
    feed = parse(data, url="https://revue.example.fr/rss")
    assert feed.title == "Revue française d'exemple"
    (paper,) = feed.papers
    assert paper.title == "Équations de Schrödinger non linéaires"
    assert paper.authors == ("José Müller", "Françoise Lefèvre", "Søren Ødegård")
    assert paper.abstract == "Étude des solutions à énergie finie."
    assert paper.id == "doi:10.5555/rev.2026.42"
    assert paper.published == dt.datetime(2026, 4, 27, 7, 15, tzinfo=dt.UTC)


def test_iso_8859_1_feed_survives_a_lying_content_type() -> None:
    # Servers often send a default charset; the document's own declaration wins.
    feed = parse("rss20_iso-8859-1.xml", content_type="text/xml; charset=utf-8")
    assert feed.papers[0].authors[0] == "José Müller"


def test_windows_1252_feed() -> None:
    (paper,) = parse("rss20_windows-1252.xml").papers
    assert paper.title == "“Smart quotes” — and a café"
    assert paper.abstract == "Zoë\u2019s summary… with €5 of compute."
    assert paper.authors == ("Zoë Brontë",)
    assert paper.id == "url:https://lab.example.com/posts/1"


def test_charset_from_content_type_when_the_document_declares_none() -> None:
    xml = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>K</title><item>'
        "<title>Привет, мир</title><link>https://k.example/1</link></item></channel></rss>"
    ).encode("koi8-r")
    feed = parse(xml, content_type="application/rss+xml; charset=KOI8-R")
    assert feed.papers[0].title == "Привет, мир"


def test_utf16_feed_with_bom() -> None:
    xml = (
        '<?xml version="1.0" encoding="utf-16"?><rss version="2.0"><channel><title>U</title>'
        "<item><title>Ünïcödé</title><link>https://u.example/1</link></item></channel></rss>"
    ).encode("utf-16")
    assert parse(xml).papers[0].title == "Ünïcödé"


def test_generic_feed_titles_with_markup_and_line_breaks() -> None:
    xml = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
    <item><title>&lt;script&gt;alert(1)&lt;/script&gt;Safe &amp;amp; sound\r\nsecond line</title>
      <link>https://t.example/1</link>
      <description>&lt;p&gt;Para&lt;/p&gt;&lt;script&gt;evil()&lt;/script&gt;</description></item>
    <item><link>https://t.example/no-title</link></item>
    <item><title>No link at all</title></item>
    </channel></rss>"""
    feed = parse(xml)
    (paper,) = feed.papers
    assert paper.title == "Safe & sound second line"
    assert paper.abstract == "Para"
    assert feed.skipped == 2  # the untitled entry and the one with no id of any kind


def test_email_only_authors_are_dropped() -> None:
    xml = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>M</title>'
        b"<item><title>Mail</title><link>https://m.example/1</link>"
        b"<author>editor@m.example</author></item>"
        b"<item><title>Mail 2</title><link>https://m.example/3</link>"
        b"<author>editor@journal.com</author></item>"
        b"<item><title>Named</title><link>https://m.example/2</link>"
        b"<author>editor@journal.com (Ed Itor)</author></item></channel></rss>"
    )
    mail, mail2, named = parse(xml).papers
    assert mail.authors == mail2.authors == ()
    assert named.authors == ("Ed Itor",)


def test_undefined_html_entity_is_tolerated_in_a_complete_feed() -> None:
    xml = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>E</title>'
        b"<item><title>A&nbsp;B</title><link>https://e.example/1</link></item>"
        b"<item><title>C</title><link>https://e.example/2</link></item></channel></rss>\n"
    )
    feed = parse(xml)
    assert [p.title for p in feed.papers] == ["A B", "C"]


# --------------------------------------------------------------------------------------------
# Documents that are not usable feeds


def test_html_error_page() -> None:
    with pytest.raises(FeedError) as info:
        parse(
            "html_error_page.html",
            url="https://journal.example.org/rss",
            content_type="text/html; charset=utf-8",
        )
    assert info.value.reason == (
        "an HTML page, not an RSS or Atom feed (page title: '503 Service Temporarily Unavailable')"
    )


def test_html_page_where_an_arxiv_feed_was_expected() -> None:
    with pytest.raises(FeedError, match="an HTML page, not an arXiv feed"):
        parse("html_error_page.html", url="https://rss.arxiv.org/rss/cs.AI")


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.9, 0.999])
def test_truncated_xml_is_an_error_not_partial_entries(cut: float) -> None:
    data = body(ARXIV_RSS)
    with pytest.raises(FeedError, match="not well-formed XML") as info:
        parse(data[: int(len(data) * cut)], url="https://rss.arxiv.org/rss/cs.AI")
    assert "line" in info.value.reason and "looks truncated" in info.value.reason


def test_truncated_after_a_whole_item_is_still_an_error() -> None:
    data = body(ARXIV_RSS)
    cut = data.index(b"</item>") + len(b"</item>")
    with pytest.raises(FeedError, match="not well-formed XML"):
        parse(data[:cut])


def test_mismatched_tags() -> None:
    xml = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>X</title>'
        b"<item><title>A</item></title></channel></rss>"
    )
    with pytest.raises(FeedError, match="mismatched tag"):
        parse(xml)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the document is empty"),
        (b"  \n\t ", "the document is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "binary data"),
        (bytes(range(256)) * 4, "binary data"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "gzip-compressed"),
        (b'{"error": "rate limited"}', "a JSON document, not an RSS or Atom feed"),
        (b"[]", "a JSON document"),
        (b"Service unavailable, try later", "plain text, not an RSS or Atom feed"),
        (b"<?xml version='1.0'?><config><a>1</a></config>", "an XML document, not"),
        (
            b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><head>'
            b"<title>Not found</title></head><body/></html>",
            "an HTML page",
        ),
    ],
)
def test_not_a_feed(data: bytes, reason: str) -> None:
    with pytest.raises(FeedError) as info:
        parse(data, kind=SourceKind.RSS)
    assert reason in info.value.reason
    assert "\n" not in str(info.value)


def test_json_where_arxiv_xml_expected() -> None:
    with pytest.raises(FeedError, match="a JSON document, not an arXiv feed"):
        parse(b"[]", url="http://export.arxiv.org/api/query?search_query=x")


def test_xml_where_json_expected() -> None:
    with pytest.raises(FeedError, match="an XML document, not a JSON list of daily papers"):
        parse(ARXIV_RSS, url=HF_URL)
    with pytest.raises(FeedError, match="an HTML page, not a JSON list"):
        parse("html_error_page.html", kind=SourceKind.HF_DAILY)


def test_bytes_are_never_opened_as_a_file_name(tmp_path: Path) -> None:
    # feedparser opens a bytes argument as a path if it can; the parser must not.
    feed_file = tmp_path / "feed.xml"
    feed_file.write_bytes(body(ARXIV_RSS))
    with pytest.raises(FeedError):
        parse(str(feed_file).encode(), kind=SourceKind.RSS)


# --------------------------------------------------------------------------------------------
# Detecting the kind


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://rss.arxiv.org/rss/cs.AI", SourceKind.ARXIV_RSS),
        ("https://rss.arxiv.org/atom/cs.AI+cs.LG", SourceKind.ARXIV_RSS),
        ("http://arxiv.org/rss/cs.AI", SourceKind.ARXIV_RSS),
        ("http://export.arxiv.org/api/query?search_query=cat:cs.AI", SourceKind.ARXIV_API),
        ("https://arxiv.org/api/query?id_list=1", SourceKind.ARXIV_API),
        ("https://huggingface.co/api/daily_papers?date=2026-04-27", SourceKind.HF_DAILY),
        ("https://www.nature.com/nature.rss", SourceKind.RSS),
    ],
)
def test_detect_kind_from_url(url: str, expected: SourceKind) -> None:
    assert detect_kind(b"", url, None) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (ARXIV_RSS, SourceKind.ARXIV_RSS),
        ("arxiv_rss_empty_weekend.xml", SourceKind.ARXIV_RSS),
        (API_ONE, SourceKind.ARXIV_API),
        (API_TWO, SourceKind.ARXIV_API),
        ("arxiv_api_empty.xml", SourceKind.ARXIV_API),
        ("hf_daily_papers_2026-04-27.json", SourceKind.HF_DAILY),
        ("hf_daily_papers_empty.json", SourceKind.HF_DAILY),
        ("journal_rss10_rdf.xml", SourceKind.RSS),
        ("journal_atom_dois.xml", SourceKind.RSS),
        ("rss20_iso-8859-1.xml", SourceKind.RSS),
    ],
)
def test_detect_kind_from_document(name: str, expected: SourceKind) -> None:
    assert detect_kind(body(name), f"/srv/feeds/{name}", None) == expected


def test_detect_kind_from_content_type() -> None:
    assert detect_kind(b"\xef\xbb\xbf  []", "file.dat", None) == SourceKind.HF_DAILY
    assert detect_kind(b"", "file.dat", "application/json") == SourceKind.HF_DAILY
    assert detect_kind(b"", "file.dat", "application/rss+xml") == SourceKind.RSS


def test_explicit_kind_overrides_detection() -> None:
    feed = parse(ARXIV_RSS, kind=SourceKind.RSS, url="https://rss.arxiv.org/rss/cs.AI")
    assert feed.kind == SourceKind.RSS
    # A plain-RSS reading of an arXiv feed still finds the ids and announce types.
    assert feed.papers[0].id == "arxiv:2604.21935"
    assert feed.papers[0].announce_type is AnnounceType.NEW


# --------------------------------------------------------------------------------------------
# Invariants over every fixture that parses


PARSEABLE = [
    ARXIV_RSS,
    API_ONE,
    API_TWO,
    "arxiv_rss_mixed_announce_types.xml",
    "arxiv_rss_empty_weekend.xml",
    "arxiv_api_empty.xml",
    "hf_daily_papers_2026-04-27.json",
    "hf_daily_papers_empty.json",
    "journal_rss10_rdf.xml",
    "journal_atom_dois.xml",
    "rss20_iso-8859-1.xml",
    "rss20_windows-1252.xml",
]


@pytest.mark.parametrize("name", PARSEABLE)
def test_invariants(name: str) -> None:
    feed = parse(name, url=f"/srv/feeds/{name}")
    assert feed.kind != SourceKind.AUTO
    ids = [p.id for p in feed.papers]
    assert len(ids) == len(set(ids))
    for paper in feed.papers:
        assert paper.id.split(":", 1)[0] in ("arxiv", "doi", "url")
        assert paper.title and paper.title == paper.title.strip()
        for text in (paper.title, paper.abstract, *paper.authors):
            assert not any(ord(c) < 32 for c in text)
            assert "<" not in text or "$" in text
        assert_utc(paper.announced)
        if paper.published is not None:
            assert_utc(paper.published)
        assert paper.source == "test-source"
        if paper.arxiv_id:
            assert paper.id == f"arxiv:{paper.arxiv_id}"


def test_fetched_at_is_used_only_when_the_document_has_no_date() -> None:
    xml = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>N</title>'
        b"<item><title>Undated</title><link>https://n.example/1</link></item>"
        b"</channel></rss>"
    )
    (paper,) = parse(xml).papers
    assert paper.announced == FETCHED and paper.published is None


def test_feedparser_is_imported_lazily() -> None:
    code = (
        "import sys, newsletter.sources.parse, newsletter.sources.normalize;"
        "print('feedparser' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
