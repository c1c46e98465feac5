"""`newsletter preview` end to end: the bundled sample feeds (real arXiv and Hugging Face
papers) fetched into a real SQLite file, clustered, rendered and written out as a sample
subscriber gets it; then the written HTML in headless Chromium at phone and desktop widths."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import html as lxml_html

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.models import Digest, Topic
from newsletter.pipeline import build_issue_digest, run_fetch
from newsletter.samples import FEEDS
from newsletter.store import Store

NOW = dt.datetime(2026, 4, 27, 6, 0, tzinfo=dt.UTC)
DAY = NOW.date()
SECRET = "preview-test-secret-" + "s" * 24

CONFIG = """\
database_url = "sqlite:///newsletter.db"

[list]
name = "Sample Papers"
id = "sample-papers.example.org"
from_name = "Sample Papers"
from_address = "papers@example.org"
base_url = "https://papers.example.org"

[schedule]
timezone = "UTC"

[fetch]
window_days = 3

[topics]
topics = "auto"
max_topics = 8
picks_per_topic = 3
watch_keywords = ["quantum"]

[delivery]
transport = "outbox"

[[sources]]
name = "arxiv-cs"
kind = "arxiv-rss"
path = "{feeds}/arxiv-cs.xml"

[[sources]]
name = "arxiv-science"
kind = "arxiv-rss"
path = "{feeds}/arxiv-science.xml"

[[sources]]
name = "hf-daily"
kind = "hf-daily"
path = "{feeds}/hf-daily.json"
"""


class Preview:
    def __init__(self, out: Path, stdout: str, digest: Digest):
        self.out = out
        self.stdout = stdout
        self.digest = digest
        self.html = (out / "issue.html").read_text(encoding="utf-8")
        self.text = (out / "issue.txt").read_text(encoding="utf-8")
        self.eml = (out / "issue.eml").read_bytes()

    @property
    def sections(self) -> list[Topic]:
        return ([self.digest.watched] if self.digest.watched else []) + list(self.digest.topics)


@pytest.fixture(scope="module")
def preview(tmp_path_factory: pytest.TempPathFactory) -> Preview:
    root = tmp_path_factory.mktemp("preview")
    config = root / "newsletter.toml"
    config.write_text(CONFIG.replace("{feeds}", FEEDS.as_posix()), encoding="utf-8")
    settings = load_settings(config, env={})
    with Store.open(settings.database_url) as store:
        report = run_fetch(settings, store, now=NOW)
        assert report.ok, [r.result.error for r in report.failed]
        digest = build_issue_digest(store, settings, DAY)  # what preview will render
    out = root / "out"
    result = CliRunner().invoke(
        cli,
        ["-c", str(config), "preview", "--date", DAY.isoformat(), "--out", str(out)],
        env={"NEWSLETTER_SECRET_KEY": SECRET},
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return Preview(out, result.stdout, digest)


def test_writes_the_three_files_and_prints_their_paths(preview: Preview) -> None:
    names = ("issue.html", "issue.txt", "issue.eml")
    assert preview.stdout.splitlines() == [str(preview.out / n) for n in names]
    assert all((preview.out / n).stat().st_size > 1000 for n in names)


def test_sample_day_is_a_real_issue(preview: Preview) -> None:
    d = preview.digest
    assert d.paper_count > 100 and len(d.topics) >= 3
    assert d.watched is not None and d.watched.picks  # "quantum" is in the sample feeds
    assert "%%NL_" not in preview.html and "%%NL_" not in preview.text


def test_eml_is_text_then_html_with_unsubscribe_headers(preview: Preview) -> None:
    msg = email.message_from_bytes(preview.eml, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert msg["To"].addresses[0].addr_spec == "reader@example.org"
    assert msg["Subject"].startswith("Sample Papers — 2026-04-27: ")
    unsub = " ".join(str(msg["List-Unsubscribe"]).split())  # unfolded
    m = re.fullmatch(r"<(https://papers\.example\.org/unsubscribe/[^>]+)>, <mailto:[^>]+>", unsub)
    assert m, unsub
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = parts[1].get_content().replace("\r\n", "\n")
    text = parts[0].get_content().replace("\r\n", "\n")
    # The message carries the same personalised parts as the files next to it, and the
    # unsubscribe link in the body is the one in the header.
    assert html.rstrip("\n") == preview.html.rstrip("\n")
    assert text.rstrip("\n") == preview.text.rstrip("\n")
    assert f'href="{m.group(1)}"' in html
    assert m.group(1) in text
    assert max(len(line) for line in preview.eml.split(b"\r\n")) <= 998


def test_list_unsubscribe_is_sent_as_plain_uris(preview: Preview) -> None:
    # RFC 2369 readers do not decode RFC 2047 encoded words: the URIs must be there as they are.
    head = preview.eml.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = re.sub(r"\r\n[ \t]+", " ", head)
    line = next(x for x in unfolded.split("\r\n") if x.startswith("List-Unsubscribe:"))
    assert "=?" not in line and "<mailto:papers@example.org?subject=unsubscribe" in line


def test_html_has_every_topic_label_and_pick(preview: Preview) -> None:
    root = lxml_html.document_fromstring(preview.html)
    labels = [" ".join(h.text_content().split()) for h in root.cssselect("h2.topic-label")]
    assert len(labels) == len(preview.sections)
    for shown, section in zip(labels, preview.sections, strict=True):
        assert shown.startswith(section.label), (shown, section.label)
    titles = [" ".join(p.text_content().split()) for p in root.cssselect(".pick-title")]
    assert titles == [p.paper.title for s in preview.sections for p in s.picks]
    assert root.cssselect(".greeting")[0].text_content() == "Hello Sample Reader,"


def test_text_part_reads_in_a_terminal(preview: Preview) -> None:
    lines = preview.text.splitlines()
    for line in lines:
        if len(line) > 78:  # only a URL may be longer
            assert re.fullmatch(r"\s*(\S+: +)?https?://\S+", line), line
    assert all(line == line.rstrip() for line in lines)
    for section in preview.sections:
        assert section.label in preview.text
    assert "Hello Sample Reader," in lines
    assert "&amp;" not in preview.text and "<a " not in preview.text


# --------------------------------------------------------------------------- in a browser

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
@pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"headless Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)",
)
@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_preview_in_chromium(preview: Preview, dark: bool) -> None:
    from test_render_browser import WIDTHS, measure

    results = measure(preview.out / "issue.html", dark)
    labels = [s.label for s in preview.sections]
    titles = [p.paper.title for s in preview.sections for p in s.picks]
    assert sorted(results) == sorted(WIDTHS) == [375, 1024]
    for width, r in results.items():
        assert r["scrollWidth"] <= width, f"horizontal scrolling at {width}px: {r['scrollWidth']}"
        assert r["dark"] is dark
        hidden = [x["text"] for x in r["labels"] + r["picks"] if not x["ok"]]
        assert hidden == [], f"not fully visible at {width}px"
        shown = [x["text"] for x in r["labels"]]
        assert len(shown) == len(labels)
        assert all(s.startswith(lab) for s, lab in zip(shown, labels, strict=True)), width
        assert [" ".join(x["text"].split()) for x in r["picks"]] == [
            " ".join(t.split()) for t in titles
        ]
