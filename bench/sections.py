"""Distinct sections and labels that name them, on real days (issue 12, items 2 and 3).

Per day, with the reader-facing defaults (auto k): the largest cosine between two section
centroids, the label pairs sharing a content word after stemming (target 0), and label
fidelity (the share of papers whose own label, as a TF-IDF query over the day's papers,
scores highest; target >= 0.85). Measures: newsletter.topics.metrics (plain stemmed
TF-IDF, not the vectors that made the sections). Days:

- the bundled sample (`newsletter demo`: the sample feeds fetched into a store);
- the LLM-era listings (../shared/data/listings/listings.jsonl, duplicates by title out);
- realistic arXiv days (bench/quality.py's draw_day: 200-1,500 papers, 60 % cs).

    python bench/sections.py [--days 8] [--labels] [--topics N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from quality import DEFAULT_DATA, draw_day, load

from newsletter.config import TopicSettings
from newsletter.models import Digest, Paper
from newsletter.topics import build_digest
from newsletter.topics.metrics import label_fidelity, max_centroid_cosine, shared_word_pairs

LISTINGS = DEFAULT_DATA.parent / "listings" / "listings.jsonl"
DAY = dt.date(2026, 4, 27)


def sample_papers() -> list[Paper]:
    """The bundled sample as `newsletter demo` stores it."""
    from newsletter.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "newsletter", "demo", "--dir", tmp],
            check=True,
            capture_output=True,
        )
        with Store.open(f"sqlite:///{tmp}/newsletter.db") as store:
            return store.papers()


def listing_papers() -> list[Paper]:
    seen: set[str] = set()
    out = []
    for line in LISTINGS.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["title"] not in seen:
            seen.add(r["title"])
            out.append(
                Paper(id=f"url:listing/{len(out)}", title=r["title"], abstract=r["abstract"])
            )
    return out


def day_papers(rows: list[dict], day: int) -> list[Paper]:
    return [
        Paper(id=f"arxiv:{r['id']}", title=r["title"], abstract=r["abstract"])
        for r in draw_day(rows, day)
    ]


def measure(papers: list[Paper], settings: TopicSettings) -> tuple[Digest, dict[str, object]]:
    d = build_digest(papers, issue_date=DAY, settings=settings)
    labels = [t.label for t in d.topics]
    members = [
        (i, p) for i, t in enumerate(d.topics) for p in [*(k.paper for k in t.picks), *t.rest]
    ]
    texts = [f"{p.title} {p.abstract}" for _, p in members]
    where = [i for i, _ in members]
    pairs = shared_word_pairs(labels)
    return d, {
        "n": len(members),
        "k": len(labels),
        "cos": max_centroid_cosine(texts, where),
        "pairs": pairs,
        "fidelity": label_fidelity(labels, texts, where),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--days", type=int, default=8)
    ap.add_argument("--labels", action="store_true", help="print every day's labels")
    ap.add_argument("--topics", type=int, help="a fixed number of sections instead of auto")
    args = ap.parse_args()
    rows = load(args.data)
    days = [("bundled sample", sample_papers()), ("LLM-era listings", listing_papers())]
    days += [(f"arXiv day {d}", day_papers(rows, d)) for d in range(args.days)]
    print(
        "| day | papers | sections | largest centroid cosine | label pairs sharing a word "
        "| label fidelity |"
    )
    print("|---|---|---|---|---|---|")
    shown = []
    for name, papers in days:
        settings = TopicSettings(topics=args.topics) if args.topics else TopicSettings()
        d, m = measure(papers, settings)
        pairs = m["pairs"]
        assert isinstance(pairs, list)
        words = "; ".join(f"{i + 1}-{j + 1}: {', '.join(sorted(s))}" for i, j, s in pairs)
        print(
            f"| {name} | {m['n']} | {m['k']} | {m['cos']:.2f} | {len(pairs)}"
            f"{f' ({words})' if words else ''} | {m['fidelity']:.2f} |",
            flush=True,
        )
        shown.append((name, d))
    if args.labels:
        for name, d in shown:
            print(f"\n{name}:")
            for i, t in enumerate(d.topics, 1):
                print(f"  {i}. {t.label} ({t.size})")


if __name__ == "__main__":
    main()
