"""The config the delivery benchmarks send with: the bundled HF sample feed, one SMTP sink."""

from __future__ import annotations

from pathlib import Path

FEED = Path(__file__).resolve().parent.parent / "newsletter" / "samples" / "feeds" / "hf-daily.json"


def config_text(
    database_url: str, port: int, connections: int, per_conn: int, *, lease: float | None = None
) -> str:
    """TOML for ``newsletter send`` to the sink on 127.0.0.1:``port``, no TLS."""
    lease_line = f"lease_seconds = {lease}\n" if lease is not None else ""
    return f"""database_url = "{database_url}"
[list]
name = "Lab Papers"
id = "lab-papers.example.org"
from_name = "Lab Papers"
from_address = "papers@example.org"
base_url = "https://papers.example.org"
[schedule]
timezone = "UTC"
[fetch]
window_days = 1
[[sources]]
name = "hf-daily"
path = "{FEED}"
[delivery]
transport = "smtp"
{lease_line}[smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
timeout = 30
connections = {connections}
max_per_connection = {per_conn}
"""
