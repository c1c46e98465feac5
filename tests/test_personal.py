"""For you: matching stated interests, ranking against a library, reasons, determinism."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import lzma
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletter.config import TopicSettings
from newsletter.models import Paper
from newsletter.personal import ForYou, Interests, LibraryPaper
from newsletter.personal import rank as rank_module
from newsletter.personal.match import DayIndex, keyword_pattern, name_key, same_author
from newsletter.personal.match import fold as fold_text
from newsletter.personal.rank import Day, order_topics, prepare_day, rank
from newsletter.topics import build_digest
from newsletter.topics.build import unique_papers
from newsletter.topics.vectorize import vectorize

DATA = Path(__file__).parent / "data" / "topics"
ARCHIVES = ("astro-ph", "cs", "math", "q-bio")


def load_rows() -> list[dict]:
    with lzma.open(DATA / "four_archives.jsonl.xz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


_ROWS: list[dict] = []


def load_rows_cached() -> list[dict]:
    if not _ROWS:
        _ROWS.extend(load_rows())
    return _ROWS


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return load_rows_cached()


def as_paper(r: dict) -> Paper:
    return Paper(
        id=f"arxiv:{r['id']}",
        title=r["title"],
        abstract=r["abstract"],
        authors=tuple(r["authors"]),
        categories=(f"{r['archive']}.XX",),
    )


def as_library(r: dict, *, with_id: bool = True) -> LibraryPaper:
    return LibraryPaper(r["title"], r["abstract"], f"arxiv:{r['id']}" if with_id else None)


@pytest.fixture(scope="module")
def split(rows: list[dict]) -> tuple[list[dict], dict[str, list[dict]]]:
    """The day: 60 papers of each archive; the rest of each archive: library material."""
    day: list[dict] = []
    spare: dict[str, list[dict]] = {}
    for a in ARCHIVES:
        mine = [r for r in rows if r["archive"] == a]
        day += mine[:60]
        spare[a] = mine[60:]
    return day, spare


@pytest.fixture(scope="module")
def day(split: tuple[list[dict], dict[str, list[dict]]]) -> Day:
    papers = unique_papers([as_paper(r) for r in split[0]])
    return prepare_day(papers, vectorize(papers))


@pytest.fixture(scope="module")
def archive_of(split: tuple[list[dict], dict[str, list[dict]]]) -> dict[str, str]:
    return {f"arxiv:{r['id']}": r["archive"] for r in split[0]}


def make_day(papers: list[Paper]) -> Day:
    papers = unique_papers(papers)
    return prepare_day(papers, vectorize(papers))


# ------------------------------------------------------------------ laziness


def test_importing_interests_does_not_import_numpy() -> None:
    code = (
        "import sys, newsletter.personal; print('numpy' in sys.modules, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------ matching


@pytest.mark.parametrize(
    ("keyword", "text", "found"),
    [
        ("retrieval", "Dense Retrieval at scale", True),
        ("RETRIEVAL", "dense retrieval", True),
        ("Schrödinger", "the Schrodinger equation", True),
        ("schrodinger", "the SCHRÖDINGER equation", True),
        ("test-time", "test time scaling", True),
        ("test time", "test-time scaling", True),
        ("transformer", "Transformers are", True),
        ("process", "Gaussian processes", True),
        ("RL", "a URL shortener", False),
        ("RL", "offline RL.", True),
        ("ga", "a gas giant", False),
        ("graph", "paragraphs", False),
        ("C++", "written in c++ and Rust", True),
        ("large language model", "large  language\nmodels", True),
        ("   ", "anything", False),
    ],
)
def test_keyword_matching(keyword: str, text: str, found: bool) -> None:
    pattern = keyword_pattern(keyword)
    assert (pattern is not None and pattern.search(fold_text(text)) is not None) is found


@pytest.mark.parametrize(
    ("wanted", "written", "same"),
    [
        ("Yann LeCun", "Yann LeCun", True),
        ("yann lecun", "Yann LeCun", True),
        ("Y. LeCun", "Yann LeCun", True),
        ("LeCun, Yann", "Yann LeCun", True),
        ("Jürgen Schmidhuber", "Jurgen Schmidhuber", True),
        ("Jurgen Schmidhuber", "JÜRGEN SCHMIDHUBER", True),
        ("LeCun", "Yann LeCun", True),
        ("Z. LeCun", "Yann LeCun", False),
        ("Yann LeCun", "Yann Lecunn", False),
        ("Yann André LeCun", "Yann LeCun", False),  # more given names than the paper has
        ("Jean-Pierre Serre", "J.-P. Serre", True),
    ],
)
def test_author_matching(wanted: str, written: str, same: bool) -> None:
    assert same_author(name_key(wanted), name_key(written)) is same


def test_interests_are_cleaned() -> None:
    got = Interests.of(
        keywords=["  dense   retrieval ", "Dense Retrieval", "", "RAG"],
        authors=["Jürgen Schmidhuber", "jurgen schmidhuber"],
        categories=["cs.IR", "CS.IR", " "],
        library=[LibraryPaper("A"), LibraryPaper("A"), LibraryPaper("  ")],
    )
    assert got == Interests(
        ("dense retrieval", "RAG"), ("Jürgen Schmidhuber",), ("cs.IR",), (LibraryPaper("A"),)
    )
    assert Interests().is_empty and Interests.of(keywords=[" "]).is_empty


def test_day_index_finds_library_copies_by_id_version_and_title() -> None:
    papers = [
        Paper(id="arxiv:2401.00001", title="First: a paper", arxiv_id="2401.00001"),
        Paper(id="doi:10.1000/xyz", title="Second paper", doi="10.1000/xyz"),
        Paper(id="url:https://example.org/3", title="Third Paper — revisited"),
    ]
    index = DayIndex(papers)
    assert index.copies([LibraryPaper("other title", id="arxiv:2401.00001v3")]) == {0}
    assert index.copies([LibraryPaper("other title", id="doi:10.1000/XYZ")]) == {1}
    assert index.copies([LibraryPaper("third paper: REVISITED")]) == {2}
    # the journal version (by DOI) of the day's preprint: the same paper
    assert index.copies([LibraryPaper("First: A Paper", id="doi:10.5555/first")]) == {0}
    assert index.copies([LibraryPaper("A paper", id="arxiv:2501.99999")]) == set()


# ------------------------------------------------------------------ stated interests


@pytest.fixture(scope="module")
def small_day() -> Day:
    return make_day(
        [
            Paper(
                id="arxiv:2401.00001",
                title="Dense retrieval with learned sparse codes",
                abstract="We study retrieval for question answering over large corpora.",
                authors=("Ada Lovelace", "Grace Hopper"),
                categories=("cs.IR", "cs.CL"),
            ),
            Paper(
                id="arxiv:2401.00002",
                title="Exoplanet atmospheres from transit spectra",
                abstract="Transit spectroscopy reveals water in hot Jupiter atmospheres.",
                authors=("Émilie du Châtelet",),
                categories=("astro-ph.EP",),
            ),
            Paper(
                id="arxiv:2401.00003",
                title="Counting lattice points in polytopes",
                abstract="We give bounds for lattice points of rational polytopes.",
                authors=("Alan Turing",),
                categories=("math.CO",),
            ),
            Paper(
                id="arxiv:2401.00004",
                title="Protein folding under crowding",
                abstract="Crowded cells change the folding of proteins.",
                authors=("Rosalind Franklin",),
                categories=("q-bio.BM",),
            ),
        ]
    )


def picks_of(f: ForYou) -> list[tuple[str, str]]:
    return [(p.paper.id, p.reason) for p in f.picks]


def test_stated_interests_give_their_reasons(small_day: Day) -> None:
    got = rank(small_day, Interests.of(keywords=["RETRIEVAL"]))
    assert picks_of(got) == [("arxiv:2401.00001", "mentions 'RETRIEVAL'")]
    got = rank(small_day, Interests.of(authors=["Emilie du Chatelet"]))
    assert picks_of(got) == [("arxiv:2401.00002", "by Émilie du Châtelet")]
    got = rank(small_day, Interests.of(categories=["Q-BIO.bm"]))
    assert picks_of(got) == [("arxiv:2401.00004", "in q-bio.BM")]
    got = rank(small_day, Interests.of(categories=["cs.CL"]))  # a cross-list counts
    assert picks_of(got) == [("arxiv:2401.00001", "in cs.CL")]


def test_several_matches_rank_higher_and_say_so(small_day: Day) -> None:
    got = rank(
        small_day,
        Interests.of(keywords=["polytopes", "lattice points"], authors=["G. Hopper"]),
        count=2,
    )
    assert picks_of(got) == [
        ("arxiv:2401.00001", "by Grace Hopper"),
        ("arxiv:2401.00003", "mentions 'polytopes' and 'lattice points'"),
    ]
    assert got.picks[0].score > got.picks[1].score


def test_interests_matching_nothing_give_no_picks(small_day: Day) -> None:
    got = rank(small_day, Interests.of(keywords=["graphene"], authors=["Nobody Atall"]))
    assert got.picks == ()


# ------------------------------------------------------------------ library


def test_library_of_one_paper_finds_its_archive(
    day: Day, split: tuple[list[dict], dict[str, list[dict]]], archive_of: dict[str, str]
) -> None:
    hits = 0
    for a in ARCHIVES:
        for r in split[1][a][:3]:
            got = rank(day, Interests.of(library=[as_library(r)]))
            assert len(got.picks) == 5
            hits += sum(archive_of[p.paper.id] == a for p in got.picks)
    assert hits >= 36  # of 60; a random pick is right one time in four


@pytest.mark.parametrize("size", [2, 5, 20])
def test_library_picks_are_of_its_archive(
    day: Day,
    split: tuple[list[dict], dict[str, list[dict]]],
    archive_of: dict[str, str],
    size: int,
) -> None:
    hits = 0
    for a in ARCHIVES:
        lib = [as_library(r) for r in split[1][a][:size]]
        got = rank(day, Interests.of(library=lib), count=10)
        assert len(got.picks) == 10
        hits += sum(archive_of[p.paper.id] == a for p in got.picks)
    assert hits >= 30  # of 40; a random pick is right one time in four


def test_library_reason_counts_close_papers(day: Day, rows: list[dict]) -> None:
    """A library holding two copies-in-spirit of a day paper: "close to 2 papers"."""
    target = day.papers[0]
    twin = LibraryPaper(target.title, target.abstract)  # no id: matched by title
    near = LibraryPaper(target.title + " revisited", target.abstract)
    got = rank(day, Interests.of(library=[twin, near]))
    assert target.id not in [p.paper.id for p in got.picks]  # already in the library
    got = rank(day, Interests.of(library=[LibraryPaper("Another view", target.abstract)]))
    assert got.picks[0].paper.id == target.id
    assert got.picks[0].reason == "close to “Another view” in your library"
    two = [LibraryPaper("Another view", target.abstract), LibraryPaper("A third", target.abstract)]
    got = rank(day, Interests.of(library=two))
    assert got.picks[0].paper.id == target.id
    assert got.picks[0].reason == "close to 2 papers in your library"


def test_long_library_titles_are_cut_in_reasons(day: Day) -> None:
    target = day.papers[1]
    title = "A very long title " * 10
    got = rank(day, Interests.of(library=[LibraryPaper(title, target.abstract)]))
    reason = got.picks[0].reason
    assert reason.startswith("close to “A very long title") and reason.endswith(
        "…” in your library"
    )
    assert len(reason) < 100


def test_papers_already_in_the_library_are_not_recommended(
    day: Day, split: tuple[list[dict], dict[str, list[dict]]]
) -> None:
    in_day = split[0][:3]  # astro-ph papers of the day itself
    for with_id in (True, False):
        lib = [as_library(r, with_id=with_id) for r in in_day] + [
            as_library(r) for r in split[1]["astro-ph"][:5]
        ]
        got = rank(day, Interests.of(library=lib), count=20)
        picked = {p.paper.id for p in got.picks}
        assert picked and not picked & {f"arxiv:{r['id']}" for r in in_day}


def test_a_library_author_is_a_reason(
    day: Day, split: tuple[list[dict], dict[str, list[dict]]]
) -> None:
    target = split[0][70]  # a cs paper of the day
    lib = LibraryPaper("Zzyzx", authors=(target["authors"][0],))  # no words of the day
    got = rank(day, Interests.of(library=[lib]))
    assert got.picks[0].paper.id == f"arxiv:{target['id']}"
    assert got.picks[0].reason == f"by {target['authors'][0]}, an author in your library"


def test_library_without_shared_vocabulary_gives_no_picks(day: Day) -> None:
    got = rank(day, Interests.of(library=[LibraryPaper("Zzyzx qwertyuiop")]))
    assert got.picks == ()


def test_library_vectors_computed_once_give_the_same_picks(
    day: Day, split: tuple[list[dict], dict[str, list[dict]]]
) -> None:
    subscribers = [
        Interests.of(library=[as_library(r) for r in split[1][a][i : i + 6]])
        for a in ARCHIVES
        for i in (0, 3)
    ]
    shared = day.library_vectors(p for s in subscribers for p in s.library)
    assert len(shared) == sum(len(s.library) for s in subscribers) - 4 * 3  # overlaps once
    part = day.library_vectors(subscribers[0].library[:2])  # the rest computed on the fly
    for s in subscribers:
        assert rank(day, s, library=shared) == rank(day, s)
    assert rank(day, subscribers[0], library=part) == rank(day, subscribers[0])


def test_library_rows_are_the_days_own_rows(day: Day) -> None:
    """A library paper with a day paper's text gets that paper's rows: the library is
    counted over the day's vocabulary, and weighed and projected as the topics step did."""
    p = day.papers[5]
    same = LibraryPaper(p.title, p.abstract)
    counts = day.library_vectors([same]).counts([same])
    near, lsa = day.library_rows(counts)
    assert np.allclose(near.toarray(), day.near[5].toarray(), atol=1e-6)
    assert np.allclose(lsa, day.lsa[5], atol=1e-6)
    assert np.array_equal(counts.indices, day.logtf[5].indices)


def test_the_topics_steps_tfidf_is_reproduced(
    split: tuple[list[dict], dict[str, list[dict]]],
) -> None:
    """The day's rows (and so every library paper's) are the topics step's TF-IDF: if
    topics/ changes how it weighs terms, this fails rather than the ranking drifting."""
    papers = unique_papers([as_paper(r) for r in split[0]])
    vectors = vectorize(papers)
    day = prepare_day(papers, vectors)
    width = vectors.tfidf.shape[1]
    assert np.allclose(day.near[:, :width].toarray(), vectors.tfidf.toarray(), atol=1e-6)


# ------------------------------------------------------------------ topics


def test_topic_affinity_orders_topics(rows: list[dict]) -> None:
    day_rows = [r for r in rows if r["archive"] in ("astro-ph", "math")][::2]
    papers = unique_papers([as_paper(r) for r in day_rows])
    digest = build_digest(papers, issue_date=dt.date(2026, 4, 27), settings=TopicSettings())
    day = prepare_day(papers, vectorize(papers), topics=digest.topics)
    math_lib = [as_library(r) for r in rows if r["archive"] == "math"][1::2][:10]
    got = rank(day, Interests.of(library=math_lib))
    assert len(got.topic_affinity) == len(digest.topics)
    ordered = order_topics(digest.topics, got.topic_affinity)
    assert sorted(ordered, key=lambda t: t.label) == sorted(digest.topics, key=lambda t: t.label)
    archive = {f"arxiv:{r['id']}": r["archive"] for r in day_rows}
    first = [archive[p.id] for p in (*(pk.paper for pk in ordered[0].picks), *ordered[0].rest)]
    assert first.count("math") > len(first) / 2


def test_empty_interests_give_nothing_and_keep_the_topic_order(rows: list[dict]) -> None:
    papers = unique_papers([as_paper(r) for r in rows[:120]])
    digest = build_digest(papers, issue_date=dt.date(2026, 4, 27), settings=TopicSettings())
    day = prepare_day(papers, vectorize(papers), topics=digest.topics)
    got = rank(day, Interests())
    assert got == ForYou((), tuple(0.0 for _ in digest.topics))
    assert order_topics(digest.topics, got.topic_affinity) == digest.topics
    with pytest.raises(ValueError, match="2 affinities for"):
        order_topics(digest.topics, (0.0, 1.0))


# ------------------------------------------------------------------ edge days


def test_empty_and_tiny_days() -> None:
    empty = make_day([])
    assert rank(empty, Interests.of(keywords=["x"], library=[LibraryPaper("x y")])) == ForYou()
    one = make_day([Paper(id="arxiv:1", title="Graph neural networks", abstract="On graphs.")])
    got = rank(one, Interests.of(library=[LibraryPaper("Neural networks on graphs")]))
    assert [p.paper.id for p in got.picks] == ["arxiv:1"]


def test_the_graph_is_the_same_built_in_blocks(day: Day, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large day builds its neighbour graph a few rows at a time: the same graph."""
    monkeypatch.setattr(rank_module, "GRAPH_CELLS", 7 * len(day.papers))
    assert (rank_module._graph(day.near) != day.graph).nnz == 0


def test_a_negative_count_is_refused(small_day: Day) -> None:
    with pytest.raises(ValueError, match="count must be 0 or more, not -1"):
        rank(small_day, Interests.of(keywords=["retrieval"]), count=-1)


def test_vectors_of_other_papers_are_refused(day: Day) -> None:
    papers = list(day.papers[:10])
    with pytest.raises(ValueError, match="rows for 10 papers"):
        prepare_day(papers, vectorize(list(day.papers[:11])))


# ------------------------------------------------------------------ determinism and properties


def test_same_input_same_output(split: tuple[list[dict], dict[str, list[dict]]], day: Day) -> None:
    interests = Interests.of(
        keywords=["galaxy", "protein"],
        library=[as_library(r) for r in split[1]["q-bio"][:8]],
    )
    first = rank(day, interests, count=10)
    again = make_day([as_paper(r) for r in reversed(split[0])])  # input order does not matter
    assert repr(rank(again, interests, count=10)) == repr(first)
    assert repr(rank(day, interests, count=10)) == repr(first)


WORDS = ["galaxy", "star", "protein", "graph", "network", "learning", "prime", "cell", "xyz"]


@st.composite
def interests_strategy(draw: st.DrawFn) -> Interests:
    rows = load_rows_cached()
    library_idx = draw(st.lists(st.integers(0, len(rows) - 1), max_size=12, unique=True))
    names = [r["authors"][0] for r in rows[:40]]
    categories = [f"{a}.XX" for a in ARCHIVES]
    return Interests.of(  # words of the day's papers, and anything at all
        keywords=draw(st.lists(st.sampled_from(WORDS) | st.text(max_size=10), max_size=3)),
        authors=draw(st.lists(st.sampled_from(names) | st.text(max_size=12), max_size=2)),
        categories=draw(st.lists(st.sampled_from(categories) | st.text(max_size=6), max_size=2)),
        library=[
            dataclasses.replace(as_library(rows[i]), authors=tuple(rows[i]["authors"]))
            for i in library_idx
        ],
    )


@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(interests=interests_strategy(), count=st.integers(0, 12))
def test_any_interests_give_distinct_papers_of_the_day_in_score_order(
    day: Day, interests: Interests, count: int
) -> None:
    got = rank(day, interests, count=count)
    ids = [p.paper.id for p in got.picks]
    assert len(ids) == len(set(ids)) <= count
    assert set(ids) <= set(day.ids)
    assert not set(ids) & {p.id for p in interests.library}
    scores = [p.score for p in got.picks]
    assert scores == sorted(scores, reverse=True)
    assert all(p.reason and "\n" not in p.reason for p in got.picks)
    assert repr(rank(day, interests, count=count)) == repr(got)
