"""Each subscriber's copy of an issue ("For you" and their topic order), made once per
issue before their row is queued.

Ranking costs ~19 ms of CPU per subscriber (bench/for_you.py), far more than sending a
message, so it never happens per message: the day is prepared once (``prepare_day``), the
subscribers are grouped by their interests (the same interests give the same picks, so
they share one copy), each distinct group is ranked once, in worker processes when there
are many, and the copies are rendered (``newsletter.render.for_you``) and stored with the
ledger rows that carry them.  Deterministic: the same issue and interests give the same
copy, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import scipy.sparse as sp

from newsletter.config import Settings
from newsletter.models import Digest, Edition, Paper, Topic
from newsletter.personal.interests import (
    ForYou,
    ForYouPick,
    Interests,
    LibraryPaper,
    SubscriberInterests,
)
from newsletter.personal.rank import Day
from newsletter.splice import PersonalCopy

log = logging.getLogger(__name__)

#: Distinct interests ranked per task: small enough that the copies stream out while the
#: workers rank, large enough that a worker tokenises a library paper kept by several
#: subscribers of its task once.
TASK = 50
#: Below this many distinct interests, ranking stays in this process (starting workers
#: and handing them the day costs about a second).
POOL_FROM = 100


def copy_key(mine: SubscriberInterests, count: int, body: str = "") -> str:
    """What a copy is made of, hashed: subscribers with the same key get the same copy.
    ``body``: what it is a copy of, when not the issue itself (a variant)."""
    made_of = repr((mine.interests, mine.only_for_you, count, body))
    return hashlib.sha256(made_of.encode()).hexdigest()


def issue_digest(
    issue_date: dt.date,
    groups: Sequence[tuple[str, Sequence[Paper]]],
    edition: Edition = Edition.DAILY,
) -> Digest:
    """An issue's digest as far as ranking needs it (which papers, in which topic, in which
    order), from the papers it carries by topic (``Store.issue_topics``): the one source for
    the copies made when the issue is first queued and for those of subscribers queued
    later, so both rank against the same day."""
    from newsletter.topics.build import WATCHED_LABEL

    watched = None
    topics = []
    for i, (label, papers) in enumerate(groups):
        topic = Topic(label, (), len(papers), (), tuple(papers), 0.0)
        if i == 0 and label == WATCHED_LABEL:
            watched = topic
        else:
            topics.append(topic)
    count = sum(len(papers) for _, papers in groups)
    return Digest(issue_date, tuple(topics), count, (), watched, edition=edition)


@dataclass(frozen=True, slots=True)
class Batch:
    """Some subscribers' copies: ``rows`` (subscriber id, copy key; None: the plain issue)
    and the copies by key."""

    rows: list[tuple[int, str | None]]
    copies: dict[str, PersonalCopy]


def plain(interests: SubscriberInterests) -> bool:
    """Whether a subscriber gets the plain issue: nothing to rank by (a library still known
    by id alone, or "For you" alone asked without any interest)."""
    return interests.interests.is_empty


def make_copies(
    digest: Digest,
    interests: Mapping[int, SubscriberInterests],
    settings: Settings,
    *,
    web_url: str | None,
    processes: int = 1,
    stop: threading.Event | None = None,
    body: str = "",
) -> Iterator[Batch]:
    """The copies of the subscribers in ``interests`` (by id), a batch at a time: first
    those who get the plain issue, then the others as their interests are ranked.  Ends
    early, between batches, once ``stop`` is set.  ``body``: what ``digest`` is, when not
    the issue itself (a variant: its copies are keyed apart)."""
    count = settings.render.for_you
    plain_rows: list[tuple[int, str | None]] = []
    by_key: dict[str, list[int]] = {}
    distinct: dict[str, SubscriberInterests] = {}
    for sid, mine in sorted(interests.items()):
        if plain(mine) or not (digest.topics or digest.watched):
            plain_rows.append((sid, None))
            continue
        key = copy_key(mine, count, body)
        by_key.setdefault(key, []).append(sid)
        distinct.setdefault(key, mine)
    if plain_rows:
        yield Batch(plain_rows, {})
    if not distinct:
        return
    from newsletter.render.for_you import ForYouRenderer

    day = prepare(digest, settings)
    renderer = ForYouRenderer(settings, web_url=web_url)
    order = sorted(distinct)
    tasks = [order[i : i + TASK] for i in range(0, len(order), TASK)]
    stop = stop or threading.Event()
    ranked_tasks = _ranked(day, [[distinct[k] for k in t] for t in tasks], count, processes, stop)
    for task, ranked in zip(tasks, ranked_tasks, strict=False):
        copies = {}
        for key, for_you in zip(task, ranked, strict=True):
            copies[key] = _copy(digest, for_you, distinct[key], settings, renderer)
        yield Batch([(sid, key) for key in task for sid in by_key[key]], copies)


def prepare(digest: Digest, settings: Settings) -> Day:
    """The day's ranking state: the papers and topics as ``personal_digest`` prepares them
    (so a copy shows what ``newsletter digest --as`` shows)."""
    from newsletter.personal.digest import digest_papers
    from newsletter.personal.rank import prepare_day
    from newsletter.topics.vectorize import vectorize

    papers = digest_papers(digest)
    return prepare_day(papers, vectorize(papers), topics=digest.topics, seed=settings.topics.seed)


def _copy(
    digest: Digest,
    for_you: ForYou,
    mine: SubscriberInterests,
    settings: Settings,
    renderer: object,
) -> PersonalCopy:
    from newsletter.personal.rank import order_topics
    from newsletter.render.for_you import ForYouRenderer, pick_views

    assert isinstance(renderer, ForYouRenderer)
    place = {id(t): i for i, t in enumerate(digest.topics, 1)}
    order = tuple(place[id(t)] for t in order_topics(digest.topics, for_you.topic_affinity))
    if settings.render.for_you == 0:  # no section: the topics in their order, all of them
        return PersonalCopy("", "", order, False)
    only = mine.only_for_you
    views = pick_views(for_you.picks, settings)
    return PersonalCopy(
        renderer.html(views, only_for_you=only),
        renderer.text(views, only_for_you=only),
        order,
        only,
    )


# --------------------------------------------------------------------------- ranking

#: What picks come back from a worker as: (paper's place in the day, score, reason).
_Ranked = tuple[tuple[tuple[int, float, str], ...], tuple[float, ...]]


def _ranked(
    day: Day,
    tasks: list[list[SubscriberInterests]],
    count: int,
    processes: int,
    stop: threading.Event,
) -> Iterator[list[ForYou]]:
    """Each task's interests ranked, task by task, in order, until ``stop`` is set."""
    total = sum(map(len, tasks))
    workers = min(processes, len(tasks)) if total >= POOL_FROM else 1
    jobs = [([m.interests for m in task], count) for task in tasks]
    if workers <= 1:
        known: dict[LibraryPaper, sp.csr_matrix] = {}
        for job in jobs:
            if stop.is_set():
                return
            yield [_for_you(day, r) for r in _rank_task(day, job, known)]
        return
    # forkserver: the workers start from a clean process that has imported the ranking
    # once (never a fork of this one, its threads and connections), and get the day once.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    blob = pickle.dumps(day, protocol=pickle.HIGHEST_PROTOCOL)
    log.info("ranking %d distinct interests in %d processes", total, workers)
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(blob,)
    )
    try:
        for ranked in pool.map(_worker_task, jobs):
            if stop.is_set():
                return
            yield [_for_you(day, r) for r in ranked]
    except BrokenProcessPool:
        # a stop by signal reaches the workers too (systemd signals the whole group): the
        # rows not queued yet wait for the next run; any other death is a failure
        if not stop.is_set():
            raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _rank_task(
    day: Day, job: tuple[list[Interests], int], known: dict[LibraryPaper, sp.csr_matrix]
) -> list[_Ranked]:
    """Rank a task's interests. ``known``: the term counts of the library papers this
    process has met (a paper is kept by ~10 of 10,000 random libraries: tokenising it once
    per process rather than once per task saves ~12 ms a subscriber)."""
    from newsletter.personal.rank import LibraryVectors, rank

    interests, count = job
    papers = list(dict.fromkeys(p for i in interests for p in i.library))
    new = [p for p in papers if p not in known]
    if new:
        fresh = day.library_vectors(new).counts(new)
        known.update((p, fresh[k]) for k, p in enumerate(new))
    vectors = LibraryVectors(
        papers,
        sp.vstack([known[p] for p in papers], format="csr")
        if papers
        else sp.csr_matrix((0, len(day.vocabulary))),
    )
    place = {id(p): i for i, p in enumerate(day.papers)}
    out = []
    for mine in interests:
        got = rank(day, mine, count=count, library=vectors)
        picks = tuple((place[id(p.paper)], p.score, p.reason) for p in got.picks)
        out.append((picks, got.topic_affinity))
    return out


def _for_you(day: Day, ranked: _Ranked) -> ForYou:
    picks, affinity = ranked
    return ForYou(tuple(ForYouPick(day.papers[i], s, r) for i, s, r in picks), affinity)


_DAY: Day | None = None  # a worker's day, unpickled once
_KNOWN: dict[LibraryPaper, sp.csr_matrix] = {}  # a worker's library papers, tokenised


def _start_worker(blob: bytes) -> None:
    global _DAY
    # Ctrl-C reaches the whole process group: the parent stops between batches, gracefully
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _DAY = pickle.loads(blob)


def _worker_task(job: tuple[list[Interests], int]) -> list[_Ranked]:
    assert _DAY is not None
    return _rank_task(_DAY, job, _KNOWN)


def worker_count() -> int:
    """Processes to rank in: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
