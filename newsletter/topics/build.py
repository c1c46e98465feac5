"""build_digest: the day's papers in, a Digest of labelled topics out. Pure; imports sklearn."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence

import numpy as np

from newsletter.config import TopicSettings
from newsletter.models import Digest, Edition, Paper, Topic
from newsletter.topics import cluster, label, pick
from newsletter.topics.vectorize import Vectors, vectorize
from newsletter.topics.watch import watched

WATCHED_LABEL = "Watched"
HOT_TOP = 3  # a topic's trending is the mean of its this-many most upvoted papers


def _preference(p: Paper) -> tuple[object, ...]:
    """Among records sharing an id, keep the richest; a full tie-break keeps it order-free."""
    return (
        p.upvotes if p.upvotes is not None else -1,
        p.comments if p.comments is not None else -1,
        len(p.abstract),
        len(p.authors),
        p.title,
        p.abstract,
        p.url,
        p.source,
        p.authors,
    )


def unique_papers(papers: Sequence[Paper]) -> list[Paper]:
    """One paper per id, sorted by id."""
    best: dict[str, Paper] = {}
    for p in papers:
        if p.id not in best or _preference(p) > _preference(best[p.id]):
            best[p.id] = p
    return [best[k] for k in sorted(best)]


def _topic(
    label_text: str,
    terms: tuple[str, ...],
    papers: list[Paper],
    idx: np.ndarray,
    vec: Vectors,
    trend: np.ndarray,
    settings: TopicSettings,
    *,
    hot_weight: float,
    largest: int,
) -> Topic:
    members = [papers[i] for i in idx]
    picks, rest = pick.rank(
        members,
        vec.tfidf[idx],
        trend[idx],
        weight=settings.trending_weight,
        count=settings.picks_per_topic,
    )
    hot = float(np.mean(np.sort(trend[idx])[::-1][:HOT_TOP])) if len(idx) else 0.0
    score = (1.0 - hot_weight) * len(idx) / max(largest, 1) + hot_weight * hot
    return Topic(label_text, terms, len(idx), picks, rest, round(score, 6))


def same_topic(
    groups: list[np.ndarray], leads: list[frozenset[str]], centres: np.ndarray
) -> list[np.ndarray]:
    """Groups a reader takes for one topic, merged (transitively): their lead phrases share
    a content word ("test-time scaling" / "inference-time scaling") and each is the other's
    nearest group (``centres``: L2-normalised, one row per group), so that on a day of many
    fine sections "quantum optics" is not merged with "quantum gravity" because both say
    "quantum". Merged groups keep their rows sorted."""
    sims = centres @ centres.T
    np.fill_diagonal(sims, -np.inf)
    nearest = sims.argmax(axis=1) if len(groups) > 1 else np.zeros(len(groups), dtype=int)
    parent = list(range(len(groups)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(len(groups)), 2):
        if leads[i] & leads[j] and nearest[i] == j and nearest[j] == i:
            parent[root(j)] = root(i)
    merged: dict[int, list[np.ndarray]] = {}
    for i, g in enumerate(groups):
        merged.setdefault(root(i), []).append(g)
    return [np.sort(np.concatenate(parts)) for parts in merged.values()]


def build_digest(
    papers: Sequence[Paper],
    *,
    issue_date: dt.date,
    settings: TopicSettings,
    sources: tuple[str, ...] = (),
    edition: Edition = Edition.DAILY,
) -> Digest:
    """Group the day's (or the week's) papers into labelled topics with picks. Same papers
    (in any order), same settings: the same Digest."""
    unique = unique_papers(papers)
    notes: list[str] = []
    if len(unique) < len(papers):
        notes.append(f"{len(papers) - len(unique)} duplicate record(s) merged by id")
    if not unique:
        return Digest(issue_date, (), 0, sources, None, tuple(notes), edition)

    flags, matched = watched(unique, settings.watch_keywords, settings.watch_authors)
    rest_idx = np.flatnonzero(~np.asarray(flags, dtype=bool))
    clustered = len(rest_idx) >= settings.min_papers
    vec = vectorize(unique)
    weekly = edition is Edition.WEEKLY
    trend = pick.trending_over_week(unique) if weekly else pick.trending(unique)
    w = settings.trending_weight

    watched_idx = np.flatnonzero(flags)
    watch_topic = None
    if len(watched_idx):
        watch_topic = _topic(
            WATCHED_LABEL,
            matched,
            unique,
            watched_idx,
            vec,
            trend,
            settings,
            hot_weight=w,
            largest=len(watched_idx),
        )
        notes.append(
            f"watched: {len(watched_idx)} paper(s) matching {', '.join(matched)}, "
            "shown only in the Watched section"
        )

    groups: list[np.ndarray] = []
    if clustered:
        part = cluster.partition(
            vec.counts[rest_idx],
            vec.tfidf[rest_idx],
            settings.topics,
            settings.min_topics,
            settings.max_topics,
            seed=settings.seed,
        )
        groups = [rest_idx[part.labels == c] for c in range(part.choice.k)]
        groups = [g for g in groups if len(g)]
        notes.append(part.choice.note())
        on = f" (found on a sample of {part.sampled})" if part.sampled < len(rest_idx) else ""
        notes.append(
            f"k-means on {part.dims}-d LSA of TF-IDF{on}, refined by each section's words "
            f"({len(vec.terms)} terms, min_df={vec.min_df}, max_df={vec.max_df})"
        )
    elif len(rest_idx):
        groups = [rest_idx]
        notes.append(
            f"{len(rest_idx)} paper(s), under min_papers={settings.min_papers}: one section"
        )

    # biggest first, so a contested label term goes to the larger topic; then by first id
    groups.sort(key=lambda g: (-len(g), int(g[0])))
    known = frozenset(str(t) for t in vec.terms) or None  # what phrases may be made of
    phrases = label.Phrases.of(unique, groups, seed=settings.seed, known=known)
    if settings.topics == "auto" and len(groups) > 1:
        centres = np.vstack([np.asarray(vec.tfidf[g].mean(axis=0)) for g in groups])
        norms = np.linalg.norm(centres, axis=1, keepdims=True)
        merged = same_topic(groups, label.leads(phrases), centres / np.maximum(norms, 1e-12))
        if len(merged) < len(groups):
            notes.append(
                f"{len(groups) - len(merged)} section(s) merged into their nearest, whose "
                "best phrase shares a word with theirs"
            )
            groups = sorted(merged, key=lambda g: (-len(g), int(g[0])))
            phrases = label.Phrases.of(unique, groups, seed=settings.seed, known=known)
    labels = label.label_phrases(phrases)
    largest = max((len(g) for g in groups), default=0)
    topics = [
        _topic(lab, terms, unique, g, vec, trend, settings, hot_weight=w, largest=largest)
        for (lab, terms), g in zip(labels, groups, strict=True)
    ]
    topics.sort(key=lambda t: (-t.score, -t.size, t.label))
    return Digest(
        issue_date, tuple(topics), len(unique), sources, watch_topic, tuple(notes), edition
    )
