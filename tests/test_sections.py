"""Distinct sections and labels that name them: the measures (newsletter.topics.metrics)
and what the digest does with near-identical themes and day-wide words."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from test_topics import all_papers, check_invariants, load_archives

from newsletter.config import TopicSettings
from newsletter.models import Digest, Paper
from newsletter.topics import build_digest
from newsletter.topics.build import same_topic
from newsletter.topics.metrics import (
    content_stems,
    label_fidelity,
    max_centroid_cosine,
    shared_word_pairs,
    stem,
)

DAY = dt.date(2026, 4, 27)


# ------------------------------------------------------------------ the measures


@pytest.mark.parametrize(
    "words",
    [
        ("scale", "scaling", "scaled", "scales"),
        ("compute", "computation", "computational", "computing"),
        ("agent", "agents", "agentic"),
        ("model", "models", "modeling"),
        ("reason", "reasoning", "reasoner"),
        ("optimize", "optimization", "optimizing", "optimal"),
        ("language", "languages"),
        ("query", "queries"),
        ("matrix", "matrices"),
        ("vertex", "vertices"),
        ("index", "indices"),
    ],
)
def test_stem_joins_the_forms_of_a_word(words: tuple[str, ...]) -> None:
    assert len({stem(w) for w in words}) == 1, {w: stem(w) for w in words}


def test_stem_keeps_different_words_apart() -> None:
    stems = [stem(w) for w in ("loss", "class", "graph", "grammar", "time", "test", "image")]
    assert len(set(stems)) == len(stems)
    assert stem("loss") == "loss" and stem("class") == "class"  # not plurals


def test_shared_word_pairs() -> None:
    labels = [
        "Test-time scaling · compute-optimal reasoning",
        "Inference-time scaling · language · compute budget",
        "Large language models · AI systems · agents",
        "Speculative decoding",
    ]
    pairs = {(i, j): words for i, j, words in shared_word_pairs(labels)}
    assert pairs == {
        (0, 1): {"tim", "scal", "comput"},
        (1, 2): {"languag"},
    }
    assert content_stems("Test-time scaling · the reasoning") == {"test", "tim", "scal", "reason"}
    assert shared_word_pairs(["Galaxies · dark matter", "Primes · L-functions"]) == []


def test_max_centroid_cosine() -> None:
    texts = [
        "galaxy cluster dark matter halo",
        "dark matter halo of a galaxy cluster",
        "prime numbers and zeta functions",
        "zeta functions of prime fields",
        "galaxy cluster halo dark matter",
        "dark matter galaxy cluster halo",
    ]
    apart = max_centroid_cosine(texts, [0, 0, 1, 1, 0, 0])
    same = max_centroid_cosine(texts, [0, 0, 1, 1, 2, 2])  # one theme in two sections
    assert apart < 0.2 and same > 0.9
    assert max_centroid_cosine(texts, [0] * 6) == 0.0  # one section: nothing to compare


def test_label_fidelity() -> None:
    texts = [
        "galaxy clusters and dark matter",
        "dark matter in dwarf galaxy halos",
        "prime gaps and the zeta function",
        "zeta zeros and prime numbers",
        "a note on something else entirely",
    ]
    where = [0, 0, 1, 1, 1]
    assert label_fidelity(["Galaxies · dark matter", "Primes · zeta"], texts, where) == 0.8
    # swapped labels name nobody's own section; a paper no label reaches is a miss
    assert label_fidelity(["Primes · zeta", "Galaxies · dark matter"], texts, where) == 0.0
    # a label that names the other section's papers better loses them
    assert label_fidelity(["Dark matter · zeta zeros · prime gaps", "Numbers"], texts, where) == 0.4
    assert label_fidelity([], [], []) == 1.0


# ------------------------------------------------------------------ the digest


def _planted(start: int, title: str, abstract: str, topics: list[str]) -> list[Paper]:
    return [
        Paper(
            id=f"arxiv:2501.{start + i:05d}",
            title=title.format(topic),
            abstract=abstract.format(topic),
        )
        for i, topic in enumerate(topics)
    ]


TOPICS = [
    "math word problems",
    "code generation",
    "theorem proving",
    "multi-hop questions",
    "planning tasks",
    "puzzle solving",
    "scientific questions",
    "agentic tool use",
    "competition math",
    "logical deduction",
    "chess endgames",
    "symbolic integration",
]
#: One theme a reader calls the same (spending more compute when answering), written in
#: two vocabularies that share little but "scaling" and "time".
TEST_TIME = (
    "Test-time scaling with verifiers for {}",
    "Test-time scaling samples many candidate answers for {} and lets a learned verifier "
    "pick one; best-of-n sampling with verifier feedback beats majority voting.",
)
INFERENCE_TIME = (
    "Inference-time scaling through tree search on {}",
    "Inference-time scaling explores {} with Monte Carlo tree search; a compute-optimal "
    "search budget allocates rollouts across branches of the search tree.",
)


def test_two_planted_near_identical_themes_end_up_in_one_section() -> None:
    far = [p for p, a in load_archives() if a in ("astro-ph", "math")][::2]  # 100 papers
    test_time = _planted(0, *TEST_TIME, TOPICS)
    inference_time = _planted(100, *INFERENCE_TIME, TOPICS)
    papers = far + test_time + inference_time
    # k fixed by the bounds (4..4): k-means keeps the two wordings apart ...
    fixed = build_digest(papers, issue_date=DAY, settings=TopicSettings(topics=4))
    homes = {
        i
        for i, t in enumerate(fixed.topics)
        for p in all_papers(Digest(DAY, (t,), 0))
        if p.id in {q.id for q in test_time + inference_time}
    }
    assert len(homes) == 2, [t.label for t in fixed.topics]
    # ... and with auto k their leads share a word: one section, whose heading says so
    s = TopicSettings(min_topics=4, max_topics=4)
    d = build_digest(papers, issue_date=DAY, settings=s)
    check_invariants(d, papers, s)
    planted = {p.id for p in test_time + inference_time}
    (home,) = [t for t in d.topics if planted & {p.id for p in all_papers(Digest(DAY, (t,), 0))}]
    assert planted <= {p.id for p in all_papers(Digest(DAY, (home,), 0))}
    assert "scal" in content_stems(home.label) or "tim" in content_stems(home.label), home.label
    assert any("merged" in note for note in d.notes)


def test_same_topic_merges_nearest_groups_whose_leads_share_a_word() -> None:
    groups = [np.array([0, 2]), np.array([1]), np.array([3, 4]), np.array([5])]
    leads = [
        frozenset({"test", "tim", "scal"}),
        frozenset({"galaxi"}),
        frozenset({"inferenc", "tim", "scal"}),
        frozenset(),
    ]
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.9, 0.0, 0.436], [0.0, 0.0, 1.0]])
    merged = same_topic(groups, leads, centres)
    assert [list(g) for g in merged] == [[0, 2, 3, 4], [1], [5]]
    # the same words, but each group nearer another: kept apart
    apart = np.array([[1.0, 0.0, 0.0], [0.95, 0.31, 0.0], [0.0, 0.0, 1.0], [0.0, 0.31, 0.95]])
    assert len(same_topic(groups, leads, apart)) == 4
    # nearest, but no word in common: kept apart
    assert len(same_topic(groups, [frozenset({str(i)}) for i in range(4)], centres)) == 4


def test_a_word_every_paper_shares_is_in_no_label() -> None:
    papers = [
        dataclasses.replace(
            p, title=f"{p.title}: a photonic view", abstract=f"{p.abstract} Photonic."
        )
        for p, _ in load_archives()[::2]
    ]
    d = build_digest(papers, issue_date=DAY, settings=TopicSettings())
    check_invariants(d, papers)
    assert len(d.topics) >= 3
    for t in d.topics:
        assert "photon" not in content_stems(t.label), t.label
        assert all("photon" not in content_stems(term) for term in t.terms), t.terms
