"""`newsletter fetch` end to end: real feed documents over real HTTP into a real SQLite file."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import both_backends

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.models import FetchStatus
from newsletter.pipeline import day_window, run_fetch
from newsletter.sources.parse import MAX_COUNT
from newsletter.store import Store

NOW = dt.datetime(2026, 4, 27, 6, 0, tzinfo=dt.UTC)
FEEDS = Path(__file__).resolve().parent / "data" / "feeds"
ARXIV_ONE = "arxiv_rss_cs.AI_2026-04-27_3items.xml"


def serve_samples(feed_server, sample_feeds, day: dt.date = NOW.date()) -> dict[str, str]:  # noqa: B008
    return {
        "cs": feed_server.add(
            "/rss/cs",
            {
                "body": (sample_feeds / "arxiv-cs.xml").read_bytes(),
                "etag": '"cs-1"',
                "headers": {"Content-Type": "application/rss+xml; charset=utf-8"},
            },
        ),
        "science": feed_server.add(
            "/rss/science",
            {
                "body": (sample_feeds / "arxiv-science.xml").read_bytes(),
                "headers": {"Last-Modified": "Mon, 27 Apr 2026 04:00:00 GMT"},
            },
        ),
        "hf": feed_server.add(
            f"/api/daily_papers?date={day.isoformat()}",
            {
                "body": (sample_feeds / "hf-daily.json").read_bytes(),
                "headers": {"Content-Type": "application/json"},
            },
        ),
    }


def config_text(urls: dict[str, str], extra: str = "") -> str:
    hf_template = urls["hf"].split("?")[0] + "?date={date}"
    return f"""
[fetch]
min_interval = 0
retries = 1
timeout = 2
[schedule]
timezone = "UTC"
[[sources]]
name = "arxiv-cs"
url = "{urls["cs"]}"
[[sources]]
name = "arxiv-science"
url = "{urls["science"]}"
kind = "arxiv-rss"
[[sources]]
name = "hf-daily"
url = "{hf_template}"
{extra}
"""


def test_fetch_stores_merges_and_remembers_validators(feed_server, sample_feeds, write_config):
    urls = serve_samples(feed_server, sample_feeds)
    settings = load_settings(write_config(config_text(urls)), env={})
    with Store.open(settings.database_url) as store:
        report = run_fetch(settings, store, now=NOW)
        assert report.ok
        by = {r.result.name: r for r in report.runs}
        assert by["arxiv-cs"].new == 93 and by["arxiv-cs"].result.skipped == 5  # replacements
        assert by["arxiv-science"].new == 84
        # Every Hugging Face paper is also in the arXiv cs feed: merged, not duplicated.
        assert by["hf-daily"].new == 0 and by["hf-daily"].updated == 20
        assert store.count_papers() == 93 + 84
        trending = [p for p in store.papers() if p.upvotes is not None]
        assert len(trending) == 20
        assert all(store.paper_sources(p.id) == ["arxiv-cs", "hf-daily"] for p in trending)
        assert store.source_state("arxiv-cs").etag == '"cs-1"'
        assert store.source_state("arxiv-science").last_modified == "Mon, 27 Apr 2026 04:00:00 GMT"

        # The second pull: conditional GET, nothing stored twice.
        again = run_fetch(settings, store, now=NOW + dt.timedelta(hours=1))
        by = {r.result.name: r for r in again.runs}
        assert by["arxiv-cs"].result.status is FetchStatus.NOT_MODIFIED
        assert by["arxiv-science"].result.status is FetchStatus.OK
        assert again.new == 0
        assert store.count_papers() == 177
    cs_hits = feed_server.hits("/rss/cs")
    assert cs_hits[1].headers["if-none-match"] == '"cs-1"'
    assert (
        feed_server.hits("/rss/science")[1].headers["if-modified-since"]
        == "Mon, 27 Apr 2026 04:00:00 GMT"
    )


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"status": 500}, "HTTP 500"),
        ({"status": 404}, "HTTP 404"),
        (
            {
                "body": b"<!DOCTYPE html><html><head><title>Oops</title></head><body>maintenance</body></html>",
                "headers": {"Content-Type": "text/html"},
            },
            "HTML",
        ),
        (
            {
                "body": b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title><item><title>cut'
            },
            "XML",
        ),
        ({"body": b""}, "empty"),
    ],
)
def test_a_broken_source_never_stops_the_others(
    feed_server, sample_feeds, write_config, answer, reason
):
    urls = serve_samples(feed_server, sample_feeds)
    broken = feed_server.add("/broken", answer)
    extra = f'[[sources]]\nname = "broken"\nurl = "{broken}"\nkind = "rss"\n'
    settings = load_settings(write_config(config_text(urls) + extra), env={})
    with Store.open(settings.database_url) as store:
        report = run_fetch(settings, store, now=NOW)
        assert not report.ok and not report.all_failed
        (bad,) = report.failed
        assert bad.result.name == "broken" and reason.lower() in bad.result.error.lower()
        assert store.count_papers() == 177
        state = store.source_state("broken")
        assert state.last_status is FetchStatus.ERROR and state.last_error == bad.result.error


# A Hugging Face document with everything a database refuses: integers past 64 bits, a lone
# surrogate (JSON can escape one), NUL in an id (PostgreSQL refuses NUL in text).
HOSTILE_HF = json.dumps(
    [
        {
            "paper": {"id": "2604.90001", "title": "Huge counts", "upvotes": 10**29},
            "numComments": 10**29,
        },
        {"paper": {"id": "2604.90002", "title": "Lone \ud800 surrogate", "authors": ["A \udfff"]}},
        {"paper": {"id": "slug\u0000with-nul", "title": "NUL in the id"}},
    ]
).encode()


def hostile_first(feed_server, sample_feeds, write_config, answer: dict) -> Path:
    """A config whose first source answers ``answer``, followed by the three samples."""
    urls = serve_samples(feed_server, sample_feeds)
    hostile = feed_server.add("/hostile", answer)
    return write_config(
        config_text(urls).replace(
            "[[sources]]", f'[[sources]]\nname = "hostile"\nurl = "{hostile}"\n[[sources]]', 1
        )
    )


@both_backends
def test_values_no_database_can_store_are_made_storable(
    feed_server, sample_feeds, write_config, database_url
):
    answer = {"body": HOSTILE_HF, "headers": {"Content-Type": "application/json"}}
    settings = load_settings(hostile_first(feed_server, sample_feeds, write_config, answer), env={})
    with Store.open(settings.database_url) as store:
        report = run_fetch(settings, store, now=NOW)
        assert report.ok, [(r.result.name, r.result.error) for r in report.failed]
        assert [r.new for r in report.runs] == [3, 93, 84, 0]
        huge = next(p for p in store.papers() if p.id == "arxiv:2604.90001")
        assert huge.upvotes == huge.comments == MAX_COUNT
        odd = next(p for p in store.papers() if p.id == "arxiv:2604.90002")
        assert odd.title == "Lone \ufffd surrogate" and odd.authors == ("A \ufffd",)
        assert any(
            p.id == "url:https://huggingface.co/papers/slug\ufffdwith-nul" for p in store.papers()
        )


def test_the_issue_goes_out_despite_hostile_documents(tmp_path, sample_feeds, write_config):
    (tmp_path / "huge.json").write_bytes(HOSTILE_HF)
    (tmp_path / "deep.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    path = write_config(
        '[schedule]\ntimezone = "UTC"\n[delivery]\ntransport = "outbox"\noutbox_dir = "mail"\n'
        f'[[sources]]\nname = "huge"\npath = "{tmp_path}/huge.json"\n'
        f'[[sources]]\nname = "deep"\npath = "{tmp_path}/deep.json"\n'
        f'[[sources]]\nname = "arxiv-cs"\npath = "{sample_feeds}/arxiv-cs.xml"\n'
    )
    settings = load_settings(path, env={})
    with Store.open(settings.database_url) as store:
        store.add_subscriber("reader@example.org", "", now=dt.datetime.now(dt.UTC))
    env = {"NEWSLETTER_SECRET_KEY": "test-secret-key-0123456789abcdef"}
    r = CliRunner().invoke(cli, ["-c", str(path), "send", "--date", today().isoformat()], env=env)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "source deep failed" in r.stderr and "JSON nested too deeply to read" in r.stderr
    assert "sent 1, failed 0" in r.stdout, r.output
    (message,) = (tmp_path / "mail").glob("*/*.eml")
    assert b"Huge counts" in message.read_bytes()


@both_backends
@pytest.mark.parametrize("etag", ['"a\x00b"', '"' + "x" * 5000 + '"'])
def test_a_validator_not_worth_storing_is_dropped(feed_server, write_config, database_url, etag):
    url = feed_server.add("/feed", {"body": (FEEDS / ARXIV_ONE).read_bytes(), "etag": etag})
    settings = load_settings(
        write_config(f'[fetch]\nmin_interval = 0\n[[sources]]\nname = "a"\nurl = "{url}"\n'), env={}
    )
    with Store.open(settings.database_url) as store:
        assert run_fetch(settings, store, now=NOW).ok
        assert store.source_state("a").etag is None
        assert run_fetch(settings, store, now=NOW).ok  # fetched again, unconditionally
    assert "if-none-match" not in feed_server.hits("/feed")[1].headers


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
        (b'[{"paper": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001 + b"]", "nested too deeply"),
    ],
)
def test_a_hostile_document_fails_its_source_only(
    feed_server, sample_feeds, write_config, body, reason
):
    answer = {"body": body, "headers": {"Content-Type": "application/json"}}
    settings = load_settings(hostile_first(feed_server, sample_feeds, write_config, answer), env={})
    with Store.open(settings.database_url) as store:
        report = run_fetch(settings, store, now=NOW)
        (bad,) = report.failed
        assert bad.result.name == "hostile" and reason in bad.result.error
        assert store.count_papers() == 177
        assert store.source_state("hostile").last_error == bad.result.error


def test_a_bug_fails_its_source_with_a_traceback_in_the_log(
    feed_server, sample_feeds, write_config, monkeypatch, caplog
):
    # No input is known to hit a bug any more, so one is planted: the parser blows up on
    # the first source only.
    from newsletter.sources import parse

    real = parse.parse_document

    def buggy(body, *, source, **kwargs):
        if source.name == "hostile":
            raise ZeroDivisionError("division by zero")
        return real(body, source=source, **kwargs)

    monkeypatch.setattr(parse, "parse_document", buggy)
    answer = {"body": b"[]", "headers": {"Content-Type": "application/json"}}
    settings = load_settings(hostile_first(feed_server, sample_feeds, write_config, answer), env={})
    with Store.open(settings.database_url) as store, caplog.at_level(logging.ERROR):
        report = run_fetch(settings, store, now=NOW)
        (bad,) = report.failed
        assert bad.result.name == "hostile"
        assert (
            bad.result.error
            == "unexpected error (ZeroDivisionError: division by zero); see the log"
        )
        assert store.count_papers() == 177
    (record,) = [r for r in caplog.records if r.exc_info]
    assert "hostile" in record.getMessage() and record.exc_info[0] is ZeroDivisionError


def test_papers_the_store_refuses_fail_their_source_only(
    feed_server, sample_feeds, write_config, monkeypatch, caplog
):
    # The parser makes every value storable; a store that still refuses one source's papers
    # is stood in for, since no real input reaches it.
    real = Store.upsert_papers

    def refusing(self, papers, **kwargs):
        papers = list(papers)
        if any(p.source == "hf-daily" for p in papers):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return real(self, papers, **kwargs)

    monkeypatch.setattr(Store, "upsert_papers", refusing)
    urls = serve_samples(feed_server, sample_feeds)
    settings = load_settings(write_config(config_text(urls)), env={})
    with Store.open(settings.database_url) as store, caplog.at_level(logging.ERROR):
        report = run_fetch(settings, store, now=NOW)
        (bad,) = report.failed
        assert bad.result.name == "hf-daily" and bad.total == 0
        assert bad.result.error == (
            "its papers could not be stored (OverflowError: Python int too large to convert "
            "to SQLite INTEGER); see the log"
        )
        assert store.count_papers() == 177
        assert store.source_state("hf-daily").last_error == bad.result.error
    assert any(r.exc_info and r.exc_info[0] is OverflowError for r in caplog.records)


def test_weekend_arxiv_channel_is_empty_not_an_error(feed_server, write_config):
    url = feed_server.add(
        "/rss/cs.AI", {"body": (FEEDS / "arxiv_rss_empty_weekend.xml").read_bytes()}
    )
    settings = load_settings(
        write_config(f'[fetch]\nmin_interval = 0\n[[sources]]\nname = "a"\nurl = "{url}"\n'), env={}
    )
    with Store.open(settings.database_url) as store:
        report = run_fetch(settings, store, now=NOW)
    assert report.ok
    assert report.runs[0].result.status is FetchStatus.EMPTY
    assert "no announcement" in report.runs[0].result.note


def test_all_sources_failing_is_reported_as_such(feed_server, write_config):
    a, b = feed_server.add("/a", {"status": 500}), feed_server.add("/b", {"status": 403})
    settings = load_settings(
        write_config(
            f'[fetch]\nmin_interval = 0\nretries = 0\n[[sources]]\nname = "a"\nurl = "{a}"\n'
            f'[[sources]]\nname = "b"\nurl = "{b}"\n[[sources]]\nname = "c"\nurl = "{a}"\nenabled = false\n'
        ),
        env={},
    )
    with Store.open(settings.database_url) as store:
        report = run_fetch(settings, store, now=NOW)
    assert report.all_failed
    assert [r.result.status for r in report.runs] == [
        FetchStatus.ERROR,
        FetchStatus.ERROR,
        FetchStatus.DISABLED,
    ]


def test_day_window_follows_the_operator_zone(write_config):
    settings = load_settings(
        write_config('[schedule]\ntimezone = "Europe/Berlin"\n[fetch]\nwindow_days = 1\n'), env={}
    )
    start, end = day_window(dt.date(2026, 4, 27), settings)
    assert start == dt.datetime(2026, 4, 26, 22, 0, tzinfo=dt.UTC)
    assert end == dt.datetime(2026, 4, 27, 22, 0, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- the CLI


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()  # the CLI reads the clock; the config says UTC


def test_cli_fetch_prints_a_table_and_exit_code(feed_server, sample_feeds, write_config):
    urls = serve_samples(feed_server, sample_feeds, today())
    broken = feed_server.add("/broken", {"status": 500})
    path = write_config(config_text(urls) + f'[[sources]]\nname = "broken"\nurl = "{broken}"\n')
    result = CliRunner().invoke(cli, ["-c", str(path), "fetch"])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SOURCE", "STATUS", "NEW", "TOTAL", "TIME", "ERROR", "/", "NOTE"]
    row = {ln.split()[0]: ln.split() for ln in lines[2:]}
    assert row["arxiv-cs"][1:4] == ["ok", "93", "93"]
    assert row["hf-daily"][1:4] == ["ok", "0", "20"]
    assert row["broken"][1] == "error" and "HTTP 500" in " ".join(row["broken"])
    assert f"broken: {broken}: HTTP 500" in result.stderr
    assert "1 source(s) failed" in result.stderr

    ok = CliRunner().invoke(
        cli, ["-c", str(path), "fetch", "--source", "arxiv-cs", "-s", "hf-daily"]
    )
    assert ok.exit_code == 0, ok.output
    assert "0 new paper(s) from 2 source(s); 177 stored in all" in ok.stderr

    unknown = CliRunner().invoke(cli, ["-c", str(path), "fetch", "--source", "nope"])
    assert unknown.exit_code == 2 and "no source named 'nope'" in unknown.stderr


def test_cli_every_fetch_error_is_one_line(feed_server, tmp_path, write_config):
    loop = feed_server.add("/loop", {"status": 301, "headers": {"Location": "/loop"}})
    config = write_config(
        f'[fetch]\nmin_interval = 0\nretries = 0\n[[sources]]\nname = "loop"\nurl = "{loop}"\n'
        '[[sources]]\nname = "zero"\npath = "/dev/zero"\n'
        f'[[sources]]\nname = "dir"\npath = "{tmp_path}"\n'
    )
    r = CliRunner().invoke(cli, ["-c", str(config), "fetch"])
    assert r.exit_code == 1, r.output
    errors = r.stderr.splitlines()[-3:]
    assert errors == [
        f"  loop: {loop}: a redirect loop: back to {loop} after 1 redirect",
        "  zero: /dev/zero: a character device, not a regular file",
        f"  dir: {tmp_path}: is a directory, not a feed file",
    ]
    table = r.stdout.splitlines()
    assert len(table) == 2 + 3 and "a redirect loop" in table[2]


def test_cli_papers_and_digest(feed_server, sample_feeds, write_config):
    urls = serve_samples(feed_server, sample_feeds, today())
    path = write_config(config_text(urls))
    runner = CliRunner()
    assert runner.invoke(cli, ["-c", str(path), "fetch"]).exit_code == 0
    listed = runner.invoke(cli, ["-c", str(path), "papers", "-n", "5"])
    assert listed.exit_code == 0
    assert len(listed.stdout.splitlines()) == 2 + 5
    as_json = runner.invoke(cli, ["-c", str(path), "papers", "--json", "--since", "2000-01-01"])
    assert len(as_json.stdout.splitlines()) == 177
    future = runner.invoke(cli, ["-c", str(path), "papers", "--since", "2999-01-01"])
    assert "0 paper(s)" in future.stderr
    bad = runner.invoke(cli, ["-c", str(path), "papers", "--since", "yesterday"])
    assert bad.exit_code == 2 and "expected a date as YYYY-MM-DD" in bad.output
    digest = runner.invoke(cli, ["-c", str(path), "digest", "--date", today().isoformat()])
    assert digest.exit_code == 0, digest.output
    assert "177 papers" in digest.stdout


def test_cli_config_check(write_config):
    good = write_config('[list]\nname = "Lab"\n')
    r = CliRunner().invoke(
        cli, ["-c", str(good), "config", "check"], env={"NEWSLETTER_SMTP_PASSWORD": "s3cret"}
    )
    assert r.exit_code == 0
    assert 'name = "Lab"' in r.stdout and "s3cret" not in r.output
    bad = write_config("[smtp]\nport = 'x'\n", name="bad.toml")
    r = CliRunner().invoke(cli, ["-c", str(bad), "config", "check"])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        f"error: {bad}: smtp.port: expected an integer, got 'x'"
    ]


def test_cli_fetch_without_sources(write_config):
    r = CliRunner().invoke(cli, ["-c", str(write_config("")), "fetch"])
    assert r.exit_code == 2 and "no sources configured" in r.stderr


def test_cli_bad_database(tmp_path, write_config):
    path = write_config(
        f'database_url = "sqlite:///{tmp_path}/missing/dir/x.db"\n[[sources]]\nname="a"\npath="x"\n'
    )
    r = CliRunner().invoke(cli, ["-c", str(path), "fetch"])
    assert r.exit_code == 1 and "does not exist" in r.stderr and "Traceback" not in r.output


def test_demo_runs_offline_end_to_end(tmp_path):
    r = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "demo")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "demo" / "newsletter.toml").is_file()
    assert "arxiv-cs" in r.stdout and "177 papers" in r.stdout
    assert "sent 3, failed 0" in r.stdout and " weekly: sent 2, failed 0" in r.stdout
    outbox = tmp_path / "demo" / "outbox"
    emls = sorted(str(p.relative_to(outbox).parent) + ":" + p.name for p in outbox.glob("*/*.eml"))
    daily = [e for e in emls if "-weekly:" not in e]
    assert [e.split(":")[1] for e in daily] == [
        "ada@example.org.eml",
        "alan@example.org.eml",
        "grace@example.org.eml",
    ]
    assert [e.split(":")[1] for e in emls if "-weekly:" in e] == [
        "edsger@example.org.eml",
        "katherine@example.org.eml",
    ]
    again = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "demo")])
    assert again.exit_code == 0, again.output
    assert "sent 0" in again.stdout and "already sent to everyone" in again.stdout
    assert again.stdout.count("was already sent to everyone") == 2
    assert (
        sorted(str(p.relative_to(outbox).parent) + ":" + p.name for p in outbox.glob("*/*.eml"))
        == emls
    )


def _commands(group, prefix=()):
    import click

    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", list(_commands(cli)))
def test_every_command_has_help(path):
    r = CliRunner().invoke(cli, [*path, "--help"])
    assert r.exit_code == 0
    assert len(r.stdout.split("\n\n")[1].strip()) > 10  # a real description, not just usage


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys\nfrom newsletter.cli import cli\n"
        "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('sklearn', 'feedparser', 'premailer', 'sqlalchemy', 'numpy') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY="


def test_non_utf8_and_api_feeds_over_http(feed_server, write_config):
    latin = feed_server.add(
        "/revue.xml",
        {
            "body": (FEEDS / "rss20_iso-8859-1.xml").read_bytes(),
            "headers": {"Content-Type": "application/rss+xml; charset=ISO-8859-1"},
        },
    )
    api = feed_server.add(
        "/api/query?search_query=cat:cs.RO",
        {
            "body": (FEEDS / "arxiv_api_atom_legacy_2025-10-17_cs.RO_2entries.xml").read_bytes(),
            "headers": {"Content-Type": "application/atom+xml"},
        },
    )
    settings = load_settings(
        write_config(
            f'[fetch]\nmin_interval = 0\n[[sources]]\nname = "revue"\nurl = "{latin}"\n'
            f'[[sources]]\nname = "api"\nurl = "{api}"\nkind = "arxiv-api"\n'
        ),
        env={},
    )
    with Store.open(settings.database_url) as store:
        report = run_fetch(settings, store, now=NOW)
        assert report.ok, [r.result.error for r in report.runs]
        assert [r.new for r in report.runs] == [1, 2]
        (revue,) = [p for p in store.papers() if p.source == "revue"]
        assert revue.title == "Équations de Schrödinger non linéaires"
        assert revue.authors == ("José Müller", "Françoise Lefèvre", "Søren Ødegård")
        api_papers = [p for p in store.papers() if p.source == "api"]
        assert all(p.id.startswith("arxiv:") and p.categories and p.authors for p in api_papers)
