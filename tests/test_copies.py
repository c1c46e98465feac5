"""Subscribers' copies of an issue (``newsletter.personal.copies``), made once per distinct
interests: what ``digest --as`` shows, shared by equal interests, the plain issue when there
is nothing to rank by, and the same whether ranked here or in worker processes."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import lzma
import threading
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.models import Paper
from newsletter.personal import Interests, LibraryPaper, SubscriberInterests
from newsletter.personal.copies import POOL_FROM, TASK, copy_key, issue_digest, make_copies
from newsletter.personal.digest import personal_digest
from newsletter.pipeline import digest_papers
from newsletter.splice import PersonalCopy
from newsletter.topics import build_digest

DATA = Path(__file__).parent / "data" / "topics" / "four_archives.jsonl.xz"
DAY = dt.date(2026, 4, 27)
SETTINGS = load_settings(None, env={})
WEB = "https://papers.example.org/archive/2026-04-27"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with lzma.open(DATA, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def day(rows):
    """A 300-paper day, as stored: its digest rebuilt from what the issue carries."""
    papers = [
        Paper(id=f"arxiv:{r['id']}", title=r["title"], abstract=r["abstract"],
              authors=tuple(r["authors"]), url=f"https://arxiv.org/abs/{r['id']}")
        for r in rows[:300]
    ]  # fmt: skip
    digest = build_digest(papers, issue_date=DAY, settings=SETTINGS.topics)
    by_id = {p.id: p for p in papers}
    groups: dict[str, list[Paper]] = {}
    for pid, label in digest_papers(digest):  # what issue_papers holds
        groups.setdefault(label, []).append(by_id[pid])
    return digest, issue_digest(DAY, list(groups.items()))


def library(rows: list[dict], start: int, size: int = 4) -> tuple[LibraryPaper, ...]:
    return tuple(
        LibraryPaper(r["title"], r["abstract"], f"arxiv:{r['id']}")
        for r in rows[300 + start : 300 + start + size]
    )


def made(batches) -> tuple[dict[int, str | None], dict[str, PersonalCopy]]:
    rows, copies = {}, {}
    for batch in batches:
        rows.update(batch.rows)
        copies.update(batch.copies)
    return rows, copies


def test_a_copy_is_what_digest_as_shows_and_equal_interests_share_it(rows, day):
    full, stored = day
    ada = SubscriberInterests(Interests(keywords=("galaxy",), library=library(rows, 0)))
    cy = SubscriberInterests(Interests(keywords=("theorem",)), only_for_you=True)
    interests = {
        1: ada,
        2: SubscriberInterests(),  # nothing stated
        3: SubscriberInterests(waiting=("arxiv:1901.00001",)),  # a library without texts yet
        4: SubscriberInterests(only_for_you=True),  # "For you" alone, but nothing to rank by
        5: cy,
        6: ada,
    }
    batches = list(make_copies(stored, interests, SETTINGS, web_url=WEB))
    assert batches[0].rows == [(2, None), (3, None), (4, None)] and not batches[0].copies
    keys, copies = made(batches)
    assert keys[1] == keys[6] == copy_key(ada, SETTINGS.render.for_you) and len(copies) == 2
    for sid, mine in ((1, ada), (5, cy)):
        seen = personal_digest(full, mine, count=5, seed=SETTINGS.topics.seed)
        copy = copies[keys[sid]]  # type: ignore[index]
        place = {t.label: i for i, t in enumerate(full.topics, 1)}
        assert copy.order == tuple(place[t.label] for t in seen.digest.topics)
        assert copy.only_for_you == mine.only_for_you
        assert len(seen.for_you.picks) == 5
        for pick in seen.for_you.picks:
            assert pick.reason.replace("'", "&#39;") in copy.html
            assert f"Why: {pick.reason}" in " ".join(copy.text.split())
    assert copies[keys[5]].text.endswith(WEB)  # type: ignore[index]  # alone: the web version
    assert copies[keys[1]].order != tuple(range(1, len(full.topics) + 1))  # type: ignore[index]


def test_for_you_off_gives_the_order_alone(rows, day):
    _, stored = day
    off = load_settings(None, env={"NEWSLETTER_RENDER__FOR_YOU": "0"})
    mine = SubscriberInterests(Interests(keywords=("galaxy",)), only_for_you=True)
    _, copies = made(make_copies(stored, {1: mine}, off, web_url=WEB))
    [copy] = copies.values()
    assert (copy.html, copy.text, copy.only_for_you) == ("", "", False)
    assert sorted(copy.order) == list(range(1, len(stored.topics) + 1))


def distinct_libraries(rows: list[dict], n: int) -> dict[int, SubscriberInterests]:
    pairs = itertools.combinations(range(100), 2)  # two of the 100 papers not in the day
    return {
        sid: SubscriberInterests(Interests(library=library(rows, a, 1) + library(rows, b, 1)))
        for sid, (a, b) in zip(range(1, n + 1), pairs, strict=False)
    }


@pytest.mark.slow
def test_worker_processes_make_the_same_copies(rows, day):
    """Past POOL_FROM distinct interests the ranking runs in worker processes (forkserver,
    the day pickled to each): the copies are the same bytes as ranked here."""
    _, stored = day
    interests = distinct_libraries(rows, POOL_FROM + 20)
    here = made(make_copies(stored, interests, SETTINGS, web_url=WEB, processes=1))
    pooled = made(make_copies(stored, interests, SETTINGS, web_url=WEB, processes=2))
    assert len(here[1]) == POOL_FROM + 20
    assert pooled == here


@pytest.mark.slow
def test_a_stop_ends_the_copies_between_batches(rows, day):
    """A signal during the preparation stops it at the next batch (the workers shut down);
    what was made is whole, the rest is made by the next run."""
    _, stored = day
    stop = threading.Event()
    got = []
    for batch in make_copies(
        stored, distinct_libraries(rows, POOL_FROM + 50), SETTINGS, web_url=WEB, processes=2,
        stop=stop,
    ):  # fmt: skip
        got.append(batch)
        stop.set()
    assert len(got) == 1 and len(got[0].copies) == len(got[0].rows) == TASK
