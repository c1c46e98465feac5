"""How big is the email and what does rendering cost?  Run: python bench/render_size.py

For made-up days of 0 to 2,000 papers (newsletter.render.sample): the HTML size before and
after personalising (Gmail clips at 102 KB), the same as quoted-printable (what goes over
SMTP), the text size, the plan the size ladder chose, and timings: one full render_issue,
the premailer pass alone, and one personalize() call.
"""

from __future__ import annotations

import argparse
import quopri
import time

from lxml import html as lxml_html

import newsletter.render as render
from newsletter.config import Settings
from newsletter.placeholders import personalize
from newsletter.render.sample import sample_digest

WEB = "https://papers.example.org/issues/2025-03-14"
UNSUB = "https://papers.example.org/unsubscribe?list=daily&token=" + "k" * 43
PREFS = "https://papers.example.org/preferences/" + "k" * 43


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _timed(fn, log: list[float]):  # type: ignore[no-untyped-def]
    def wrapper(html: str) -> str:
        t0 = time.perf_counter()
        out = fn(html)
        log.append(time.perf_counter() - t0)
        return out

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    settings = Settings()
    render.render_issue(sample_digest(10), settings)  # imports, template compilation

    print(f"budget {render.HTML_BUDGET_BYTES:,} bytes; Gmail clips at {102 * 1024:,}")
    print(
        f"{'papers':>6} {'html':>8} {'personal':>8} {'as QP':>8} {'text':>8} {'shown':>6} "
        f"{'passes':>6} {'render ms':>9} {'premailer':>9} {'personal.':>9} {'ratio':>6}"
    )
    for n in (0, 120, 300, 1000, 2000):
        d = sample_digest(n, topics=8, watched=5 if n else 0)
        passes: list[float] = []
        real = render.inline_css
        render.inline_css = _timed(real, passes)
        try:
            issue = render.render_issue(d, settings, web_url=WEB)
            passes_first = len(passes)
            full = _best(lambda: render.render_issue(d, settings, web_url=WEB), args.repeat)  # noqa: B023
        finally:
            render.inline_css = real
        premailer_s = min(passes)
        html, text = personalize(
            issue, unsubscribe_url=UNSUB, preferences_url=PREFS, name="Ada", email="a@b.org"
        )
        per = _best(
            lambda: personalize(
                issue,  # noqa: B023
                unsubscribe_url=UNSUB,
                preferences_url=PREFS,
                name="Ada",
                email="a@b.org",
            ),
            200,
        )
        qp = len(quopri.encodestring(html.encode()))
        shown = len(lxml_html.document_fromstring(html).cssselect(".pick-title a, .rest a"))
        print(
            f"{n:>6} {len(issue.html.encode()):>8,} {len(html.encode()):>8,} {qp:>8,} "
            f"{len(text.encode()):>8,} {shown if n else 0:>6} {passes_first:>6} "
            f"{full * 1000:>9.1f} {premailer_s * 1000:>9.1f} {per * 1000:>9.3f} "
            f"{per / full:>6.2%}"
        )
    print(
        "\nshown: papers listed in the HTML (picks + rest); passes: premailer runs in one "
        "render_issue; ratio: personalize / full render."
    )


if __name__ == "__main__":
    main()
