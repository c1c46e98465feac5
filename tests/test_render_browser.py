"""The rendered email in a real browser: no horizontal scrolling on a phone, every section
visible, dark mode applied.  Screenshots are saved (set NEWSLETTER_TEST_SCREENSHOTS=<dir> to
keep them, e.g. for docs/)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Any

import pytest
from conftest import CHROMIUM, needs_chromium
from lxml import html as lxml_html

from newsletter.config import ListSettings, Settings
from newsletter.models import Digest, Paper, Pick, Topic
from newsletter.placeholders import personalize
from newsletter.render import render_issue
from newsletter.render.sample import sample_digest

pytestmark = needs_chromium

WIDTHS = (375, 1024)

# Test-only page: the email goes into same-origin srcdoc iframes of the exact widths (headless
# windows cannot be narrower than 500 px), and a script measures it.  The email has no JS.
WRAPPER = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>measure</title></head>
<body style="margin:0">
%(frames)s
<pre id="result"></pre>
<script>
const EMAIL = %(email)s;
const WIDTHS = %(widths)s;
let pending = WIDTHS.length;
const out = {};
function measure(w) {
  const d = document.getElementById('f' + w).contentDocument;
  const win = d.defaultView;
  const vis = (sel) => Array.from(d.querySelectorAll(sel)).map((el) => {
    const r = el.getBoundingClientRect();
    const s = win.getComputedStyle(el);
    // on screen, not hidden, and the text fits its own box (not cut off by overflow)
    return {text: el.textContent.trim().replace(/\\s+/g, ' '),
            ok: r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= w + 0.5
                && s.visibility !== 'hidden' && s.display !== 'none' && s.opacity !== '0'
                && el.scrollWidth <= el.clientWidth + 1 && el.scrollHeight <= el.clientHeight + 1};
  });
  out[w] = {
    scrollWidth: d.documentElement.scrollWidth,
    clientWidth: d.documentElement.clientWidth,
    dark: win.matchMedia('(prefers-color-scheme: dark)').matches,
    containerBg: win.getComputedStyle(d.querySelector('.container')).backgroundColor,
    titleColor: win.getComputedStyle(d.querySelector('.title')).color,
    labels: vis('.topic-label'),
    picks: vis('.pick-title'),
  };
  if (--pending === 0) document.getElementById('result').textContent = JSON.stringify(out);
}
for (const w of WIDTHS) {
  const f = document.getElementById('f' + w);
  f.onload = () => measure(w);
  f.srcdoc = EMAIL;
}
</script></body></html>
"""


def _chromium(args: list[str], profile: pathlib.Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True)


def _hard_digest() -> Digest:
    """The sample day plus the papers most likely to break a phone layout."""
    base = sample_digest(40, topics=4, watched=2)
    long_word = "Hyperparameteroptimisationbenchmarkingframeworkwithoutanyspaces" * 2
    nasty = (
        Paper(
            id="x:1",
            title=long_word,
            abstract="A" * 400,
            authors=("Averyveryveryverylongfirstname Averyveryveryverylonglastname",) * 5,
            url="https://example.org/" + "p" * 150,
            pdf_url="https://example.org/pdf",
            categories=("cs.LG",),
            upvotes=999,
        ),
        Paper(id="x:2", title="<b>Markup</b> & {{ braces }} in a title", url="https://e.org/2"),
    )
    odd = Topic(
        label="a rather long topic label with many words in it",
        terms=("long",),
        size=3,
        picks=tuple(Pick(p, 1.0, 1.0, 1.0) for p in nasty),
        rest=(Paper(id="x:3", title=long_word, url="https://example.org/" + "r" * 150),),
        score=0.1,
    )
    return Digest(
        issue_date=base.issue_date,
        topics=(*base.topics, odd),
        paper_count=base.paper_count + 3,
        sources=base.sources,
        watched=base.watched,
    )


@pytest.fixture(scope="module")
def email_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, Digest]:
    d = _hard_digest()
    settings = Settings(list=ListSettings(name="ML Reading Group"))
    issue = render_issue(d, settings, web_url="https://papers.example.org/issues/2025-03-14")
    html, _ = personalize(
        issue,
        unsubscribe_url="https://papers.example.org/u/abc",
        preferences_url="https://papers.example.org/preferences/abc",
        name="Ada",
        email="ada@example.org",
    )
    out = tmp_path_factory.mktemp("email") / "issue.html"
    out.write_text(html, encoding="utf-8")
    return out, d


def measure(email: pathlib.Path, dark: bool) -> dict[int, dict[str, Any]]:
    """Load ``email`` at each of WIDTHS in headless Chromium; what the page script measured:
    scrollWidth/clientWidth, dark mode, colours, and for every ``.topic-label`` and
    ``.pick-title`` its text and whether it is fully visible (``ok``)."""
    frames = "\n".join(
        f'<iframe id="f{w}" style="width:{w}px;height:1500px;border:0;display:block"></iframe>'
        for w in WIDTHS
    )
    email_js = json.dumps(email.read_text(encoding="utf-8")).replace("</", "<\\/")
    page = WRAPPER % {"frames": frames, "email": email_js, "widths": json.dumps(WIDTHS)}
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = pathlib.Path(tmp) / "measure.html"
        wrapper.write_text(page, encoding="utf-8")
        flags = ["--force-dark-mode", "--blink-settings=preferredColorScheme=0"] if dark else []
        proc = _chromium(
            [
                *flags,
                "--window-size=1100,1200",
                "--virtual-time-budget=5000",
                "--dump-dom",
                wrapper.as_uri(),
            ],
            pathlib.Path(tmp) / "profile",
        )
    pre = lxml_html.document_fromstring(proc.stdout).get_element_by_id("result")
    assert pre.text, f"the measuring script did not finish: {proc.stderr[-2000:]}"
    return {int(k): v for k, v in json.loads(pre.text).items()}


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_no_overflow_everything_visible(
    email_file: tuple[pathlib.Path, Digest], dark: bool
) -> None:
    email, d = email_file
    results = measure(email, dark)
    expected_labels = [t.label for t in ([d.watched] if d.watched else []) + list(d.topics)]
    expected_picks = [
        p.paper.title for t in ([d.watched] if d.watched else []) + list(d.topics) for p in t.picks
    ]
    for width, r in results.items():
        assert r["scrollWidth"] <= width, f"horizontal scrolling at {width}px: {r['scrollWidth']}"
        assert [x["text"] for x in r["labels"] if not x["ok"]] == [], width
        assert [x["text"] for x in r["picks"] if not x["ok"]] == [], width
        labels = [x["text"] for x in r["labels"]]
        assert len(labels) == len(expected_labels)
        assert all(lab.startswith(exp) for lab, exp in zip(labels, expected_labels, strict=True))
        assert [x["text"] for x in r["picks"]] == expected_picks
        assert r["dark"] is dark
        if dark:
            assert r["containerBg"] == "rgb(22, 27, 34)"
            assert r["titleColor"] == "rgb(230, 237, 243)"
        else:
            assert r["containerBg"] == "rgb(255, 255, 255)"
            assert r["titleColor"] == "rgb(31, 35, 40)"


def test_screenshots(email_file: tuple[pathlib.Path, Digest], tmp_path: pathlib.Path) -> None:
    email, _ = email_file
    keep = os.environ.get("NEWSLETTER_TEST_SCREENSHOTS")
    shots = []
    for width, height in ((375, 2400), (1024, 1600)):
        for dark in (False, True):
            png = tmp_path / f"stress-{width}-{'dark' if dark else 'light'}.png"
            flags = ["--force-dark-mode", "--blink-settings=preferredColorScheme=0"] if dark else []
            _chromium(
                [*flags, f"--window-size={width},{height}", f"--screenshot={png}", email.as_uri()],
                tmp_path / f"profile-{width}-{dark}",
            )
            assert png.stat().st_size > 10_000  # a real picture, not a blank page
            shots.append(png)
    if keep:
        pathlib.Path(keep).mkdir(parents=True, exist_ok=True)
        for png in shots:
            shutil.copy(png, pathlib.Path(keep) / png.name)
