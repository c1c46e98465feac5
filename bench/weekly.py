"""The weekly edition at scale: a week of realistic days, its topics step and its email.

A week is five announcement days drawn from the labelled arXiv set as bench/quality.py
draws a realistic day (60 % cs.*, the rest spread over the other categories), here
1,200-2,000 papers a day, so 6,000-10,000 a week; every paper carries its day (the
``announced`` time), and a seeded ~5 % of each day has Hugging Face-like upvotes (a
lognormal count; the labelled set has none, and the week's picks weigh them).

For each week, each side runs in a fresh subprocess (peak RSS is ru_maxrss of that run
alone; both pay for importing scikit-learn), as bench/topics_speed.py does:

- ours: ``build_digest(..., edition=WEEKLY)`` with default settings (auto k, labels, the
  week's trending in the picks), then, untimed, the email: ``render_issue`` on the size
  ladder, personalised, and its size as quoted-printable (what goes over SMTP);
- reference: scikit-learn's TfidfVectorizer (English stop words, sublinear tf, min_df=3,
  max_df=0.5) + KMeans (k-means++, default n_init) at the k ours chose.

With ``--repeat N`` both sides run N times, interleaved; the fastest of each is kept.

    python bench/weekly.py [--weeks 3] [--repeat 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "arxiv-labeled.jsonl.xz"
)

CHILD = r"""
import datetime as dt, json, lzma, resource, sys, time
import numpy as np
mode, seed, k, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with lzma.open(data, "rt", encoding="utf-8") as fh:
    rows = [json.loads(line) for line in fh]
from newsletter.models import Edition, Paper
rng = np.random.default_rng(2000 + seed)
cs = [i for i, r in enumerate(rows) if r["archive"] == "cs"]
other = [i for i, r in enumerate(rows) if r["archive"] != "cs"]
monday = dt.date(2026, 4, 20)
papers = []
for day in range(5):
    n = int(rng.integers(1200, 2001))
    n_cs = round(0.6 * n)
    # A paper of the set may come back on a later day (more cs papers than the set has):
    # it is a new record with an id of its own, as a resampled day in topics_speed.
    idx = [*rng.choice(cs, n_cs), *rng.choice(other, n - n_cs)]
    when = dt.datetime.combine(monday + dt.timedelta(days=day), dt.time(4), dt.UTC)
    votes = np.where(rng.random(n) < 0.05, np.round(rng.lognormal(2.5, 1.2, n)), 0)
    for j, i in enumerate(idx):
        r = rows[i]
        papers.append(Paper(
            id=f"arxiv:{r['id']}#{day}.{j}", title=r["title"], abstract=r["abstract"],
            authors=tuple(r["authors"][:8]), url=f"https://arxiv.org/abs/{r['id']}",
            categories=tuple(r["categories"]), announced=when,
            upvotes=int(votes[j]) or None, source="arxiv",
        ))
del rows
usage = resource.getrusage(resource.RUSAGE_SELF)
base, cpu0 = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
t = time.perf_counter()
out = {"mode": mode, "n": len(papers)}
if mode == "ours":
    from newsletter.config import TopicSettings
    from newsletter.topics import build_digest
    d = build_digest(papers, issue_date=monday + dt.timedelta(days=7),
                     settings=TopicSettings(), edition=Edition.WEEKLY)
    k = len(d.topics)
    out["extra"] = d.notes[0]
else:
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    tv = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=3, max_df=0.5)
    m = tv.fit_transform([p.title + " " + p.abstract for p in papers])
    KMeans(n_clusters=k, random_state=0).fit(m)
    out["extra"] = f"k={k}"
secs = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_SELF)
out |= {"k": k, "seconds": secs, "cpu": usage.ru_utime + usage.ru_stime - cpu0,
        "peak_mb": usage.ru_maxrss / 1024, "input_mb": base / 1024}
if mode == "ours":  # the email, after the measurement
    import dataclasses, quopri
    from newsletter.config import Settings
    from newsletter.render import personalize, render_issue
    d = dataclasses.replace(d, since=monday)
    issue = render_issue(d, Settings(), web_url="https://papers.example.org/archive/weekly/x")
    html, text = personalize(issue, unsubscribe_url="https://papers.example.org/unsubscribe/"
                             + "k" * 60, name="Ada Lovelace", email="ada@example.org")
    from lxml import html as lxml_html
    shown = len(lxml_html.document_fromstring(html).cssselect(".pick-title a, .rest a"))
    out |= {"html": len(issue.html.encode()), "personal": len(html.encode()),
            "qp": len(quopri.encodestring(html.encode())), "text": len(text.encode()),
            "subject": issue.subject, "listed": shown}
print(json.dumps(out))
"""


def run(mode: str, seed: int, k: int, data: Path, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:  # both sides alike: OpenMP (k-means) and BLAS pools
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(seed), str(k), str(data)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--weeks", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, help="thread pools of both sides capped at this")
    args = ap.parse_args()
    print(
        "| week | papers | k | ours s | reference s | ratio | ours CPU s | reference CPU s "
        "| peak RSS ours MB | peak RSS reference MB | input MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    emails = []
    for week in range(args.weeks):
        ours: list[dict] = []
        ref: list[dict] = []
        for _ in range(args.repeat):
            ours.append(run("ours", week, 0, args.data, args.threads))
            ref.append(run("reference", week, ours[-1]["k"], args.data, args.threads))
        o = min(ours, key=lambda r: r["seconds"])
        b = min(ref, key=lambda r: r["seconds"])
        oc, bc = min(r["cpu"] for r in ours), min(r["cpu"] for r in ref)
        print(
            f"| {week} | {o['n']:,} | {o['k']} | {o['seconds']:.1f} | {b['seconds']:.1f} "
            f"| {o['seconds'] / b['seconds']:.2f}x | {oc:.1f} | {bc:.1f} "
            f"| {o['peak_mb']:.0f} | {b['peak_mb']:.0f} | {o['input_mb']:.0f} |",
            flush=True,
        )
        emails.append(o)
    print(
        "\n| week | papers | HTML bytes | personalised | as quoted-printable | text bytes "
        "| listed | under 102 KB | subject |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for week, o in enumerate(emails):
        print(
            f"| {week} | {o['n']:,} | {o['html']:,} | {o['personal']:,} | {o['qp']:,} "
            f"| {o['text']:,} | {o['listed']} | "
            f"{'yes' if o['personal'] < 102 * 1024 else 'NO'} | {o['subject']} |"
        )


if __name__ == "__main__":
    main()
