"""What does one issue cost to render, and what does each subscriber's message cost on top?

Run: python bench/render_speed.py [--sizes 200 1000 2000] [--repeat 5] [--messages 200]

For made-up days (newsletter.render.sample, 8 topics, 5 watched papers) it times, in one run:

- ``render``: one full ``render_issue`` (size ladder, Jinja, premailer CSS inlining, text
  part), best of ``--repeat``;
- ``premailer``: the CSS-inlining pass alone, inside that render;
- ``personalize``: filling one subscriber's placeholders (the render-side per-subscriber cost);
- ``message``: one complete personalised message as delivery builds it,
  ``newsletter.delivery.IssueMailer.message``: signed unsubscribe token, personalize,
  headers, MIME multipart/alternative, quoted-printable serialisation to wire bytes.
  Mean over ``--messages`` distinct subscribers, best of ``--repeat`` such batches.

Target: one message < 5 % of one full render.  ``--profile`` prints where a message's time
goes (cProfile, top functions by cumulative time) for the largest size.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import platform
import pstats
import time
from collections.abc import Callable

import newsletter.render as render
from newsletter.config import Settings
from newsletter.delivery import IssueMailer
from newsletter.models import IssueRecord, IssueStatus, Subscriber, SubscriberStatus
from newsletter.placeholders import personalize
from newsletter.render.sample import sample_digest

NOW = dt.datetime(2025, 3, 14, 6, 0, tzinfo=dt.UTC)
SECRET = "bench-secret-" + "k" * 32
TARGET = 0.05


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _subscribers(n: int) -> list[Subscriber]:
    return [
        Subscriber(
            i + 1,
            f"reader{i:05d}@example.org",
            f"Reader {i}" if i % 3 else "",
            SubscriberStatus.ACTIVE,
            NOW,
            NOW,
        )
        for i in range(n)
    ]


def _mailer(settings: Settings, issue: render.RenderedIssue, papers: int) -> IssueMailer:
    record = IssueRecord(
        id=1,
        issue_date=NOW.date(),
        status=IssueStatus.READY,
        subject=issue.subject,
        preheader=issue.preheader,
        html=issue.html,
        text=issue.text,
        paper_count=papers,
        created_at=NOW,
        updated_at=NOW,
    )
    return IssueMailer(settings, record, SECRET, NOW)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 2000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--messages", type=int, default=200, help="subscribers per timed batch")
    ap.add_argument("--profile", action="store_true", help="profile message() at the last size")
    args = ap.parse_args()

    settings = Settings()
    web = "https://papers.example.org/archive/2025-03-14"
    render.render_issue(sample_digest(10), settings)  # imports, template compilation
    subs = _subscribers(args.messages)
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; best of {args.repeat}; "
        f"message = mean of {args.messages} subscribers"
    )
    print(
        f"{'papers':>6} {'html B':>7} {'msg B':>7} {'render ms':>9} {'premailer':>9} "
        f"{'personal.':>9} {'message ms':>10} {'msg/render':>10} {'verdict':>7}"
    )
    mailer = None
    for n in args.sizes:
        d = sample_digest(n, topics=8, watched=5)
        passes: list[float] = []
        real = render.inline_css

        def timed(html: str, real=real, passes=passes) -> str:  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            out = real(html)
            passes.append(time.perf_counter() - t0)
            return out

        render.inline_css = timed
        try:
            issue = render.render_issue(d, settings, web_url=web)
            full = _best(lambda d=d: render.render_issue(d, settings, web_url=web), args.repeat)  # type: ignore[misc]
        finally:
            render.inline_css = real
        mailer = _mailer(settings, issue, n)
        per_personal = _best(
            lambda issue=issue: personalize(  # type: ignore[misc]
                issue,
                unsubscribe_url="https://papers.example.org/unsubscribe/x" * 2,
                preferences_url="https://papers.example.org/preferences/x" * 2,
                name="Ada",
            ),
            200,
        )

        def batch(mailer: IssueMailer = mailer) -> None:
            for s in subs:
                mailer.message(s)

        per_msg = _best(batch, args.repeat) / len(subs)
        size = len(mailer.message(subs[0]).data)
        ratio = per_msg / full
        print(
            f"{n:>6} {len(issue.html.encode()):>7,} {size:>7,} {full * 1000:>9.1f} "
            f"{min(passes) * 1000:>9.1f} {per_personal * 1000:>9.3f} {per_msg * 1000:>10.2f} "
            f"{ratio:>10.1%} {'ok' if ratio < TARGET else 'MISS':>7}"
        )
    print(
        f"\nmsg/render: one personalised message / one full render (target < {TARGET:.0%}). "
        "msg B: wire bytes of one message."
    )
    if args.profile and mailer is not None:
        prof = cProfile.Profile()
        prof.enable()
        for s in subs:
            mailer.message(s)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
        print(f"\nprofile of {len(subs)} messages at {args.sizes[-1]} papers:")
        print(out.getvalue())


if __name__ == "__main__":
    main()
