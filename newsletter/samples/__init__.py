"""Bundled sample feeds (real papers) for the offline demo and the tests."""

from __future__ import annotations

from pathlib import Path

FEEDS = Path(__file__).resolve().parent / "feeds"

#: (email, name) of the demo's subscribers; example.org never receives mail.
DEMO_SUBSCRIBERS = (
    ("ada@example.org", "Ada"),
    ("grace@example.org", "Grace"),
    ("alan@example.org", ""),
)
#: The demo's subscribers who chose the weekly edition.
DEMO_WEEKLY = (
    ("katherine@example.org", "Katherine"),
    ("edsger@example.org", ""),
)

_DEMO = """\
# A demo configuration written by `newsletter demo`: the bundled sample feeds, offline.
# Every key is explained in config.example.toml.
database_url = "sqlite:///newsletter.db"   # relative to this file

[list]
name = "Demo Papers"
id = "demo-papers.localhost"
from_name = "Demo Papers"
from_address = "papers@localhost"
# `newsletter serve` answers the emails' links here (its default port); without
# NEWSLETTER_SECRET_KEY it uses the public demo key, on this machine only.
base_url = "http://localhost:8080"

[fetch]
window_days = 3

[topics]
topics = "auto"
min_topics = 3
max_topics = 12
picks_per_topic = 3

[delivery]
transport = "outbox"
outbox_dir = "outbox"

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


def write_demo_config(directory: Path) -> Path:
    """Create ``directory`` with a demo ``newsletter.toml`` (kept if it already exists)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "newsletter.toml"
    if not path.exists():
        feeds = FEEDS.as_posix().replace("\\", "\\\\").replace('"', '\\"')
        path.write_text(_DEMO.replace("{feeds}", feeds), encoding="utf-8")
    return path
