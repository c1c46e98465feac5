"""Settings: layering, validation, error messages that name the file and the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from newsletter.config import Settings, effective_toml, load_settings
from newsletter.errors import ConfigError
from newsletter.models import AnnounceType, SourceKind

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, env={})
    assert s.sources == ()
    assert s.database_url == f"sqlite:///{tmp_path}/newsletter.db"
    assert s.topics.topics == "auto"
    assert s.schedule.days == "mon-fri"
    assert dataclasses.is_dataclass(s) and s.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_example_config_is_valid_and_documents_every_key():
    path = ROOT / "config.example.toml"
    s = load_settings(path, env={})
    assert len(s.sources) >= 3
    kinds = {src.kind for src in s.sources}
    assert {SourceKind.ARXIV_RSS, SourceKind.HF_DAILY} <= kinds
    text = path.read_text(encoding="utf-8")
    # Every settings field appears in the example, with a comment on its line or above it.
    for f in dataclasses.fields(Settings):
        value = getattr(s, f.name)
        if f.name in ("secrets", "config_path"):
            continue
        if dataclasses.is_dataclass(value):
            assert f"[{f.name}]" in text, f"section [{f.name}] missing"
            for sub in dataclasses.fields(value):
                assert f"\n{sub.name} =" in text or f"\n# {sub.name} =" in text, (
                    f"{f.name}.{sub.name}"
                )
    for sub in dataclasses.fields(s.sources[0]):
        assert f"{sub.name} =" in text, f"sources.{sub.name}"


def test_file_values_and_relative_paths(write_config, tmp_path):
    path = write_config(
        """
[list]
name = "Lab Papers"
[[sources]]
name = "local"
path = "feeds/x.xml"
categories = ["cs.CL"]
announce_types = ["new"]
[delivery]
outbox_dir = "out"
"""
    )
    s = load_settings(path, env={})
    assert s.list.name == "Lab Papers"
    assert s.database_url == f"sqlite:///{tmp_path}/test.db"
    assert s.sources[0].path == str(tmp_path / "feeds/x.xml")
    assert s.sources[0].categories == ("cs.CL",)
    assert s.sources[0].announce_types == (AnnounceType.NEW,)
    assert s.delivery.outbox_dir == str(tmp_path / "out")
    assert s.config_path == str(path.resolve())


def test_layers_env_over_file_flags_over_env(write_config):
    path = write_config('[smtp]\nhost = "file.example"\nport = 2525\n[topics]\ntopics = 5\n')
    env = {
        "NEWSLETTER_SMTP__HOST": "env.example",
        "NEWSLETTER_TOPICS__WATCH_KEYWORDS": "diffusion, graph neural",
        "NEWSLETTER_TOPICS__TOPICS": "auto",
        "NEWSLETTER_FETCH__TIMEOUT": "2.5",
        "NEWSLETTER_SCHEDULE__TIMEZONE": "Europe/Berlin",
        "NEWSLETTER_TEST_DATABASE_URL": "ignored",  # tests' own variables are not settings
    }
    s = load_settings(path, env=env)
    assert s.smtp.host == "env.example"
    assert s.smtp.port == 2525
    assert s.topics.watch_keywords == ("diffusion", "graph neural")
    assert s.topics.topics == "auto"
    assert s.fetch.timeout == 2.5
    s2 = load_settings(path, env=env, overrides={"smtp.host": "flag.example", "database_url": None})
    assert s2.smtp.host == "flag.example"
    assert s2.database_url == s.database_url


def test_database_url_from_env(write_config, tmp_path):
    path = write_config("")
    s = load_settings(path, env={"NEWSLETTER_DATABASE_URL": "sqlite:///other.db"})
    assert s.database_url == f"sqlite:///{tmp_path}/other.db"


def test_secrets_only_from_environment(write_config):
    path = write_config("")
    s = load_settings(
        path, env={"NEWSLETTER_SMTP_PASSWORD": "hunter2", "NEWSLETTER_SECRET_KEY": "k" * 32}
    )
    assert s.secrets.smtp_password == "hunter2"
    shown = effective_toml(s)
    assert "hunter2" not in shown and "k" * 32 not in shown
    assert "smtp_password: set, hidden" in shown
    assert "hunter2" not in repr(s)
    bad = write_config('[secrets]\nsmtp_password = "x"\n', name="bad.toml")
    with pytest.raises(ConfigError, match=r"bad\.toml: secrets: .*NEWSLETTER_SMTP_PASSWORD"):
        load_settings(bad, env={})
    with pytest.raises(ConfigError, match="password"):
        load_settings(write_config('[smtp]\npassword = "x"\n', name="b2.toml"), env={})


def test_password_in_database_url_is_masked(write_config):
    s = load_settings(write_config('database_url = "postgresql+psycopg://u:pw@db/news"\n'), env={})
    assert "pw" not in effective_toml(s).replace("psycopg", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n", r"bad\.toml: colour: unknown key"),
        ("[smtp]\nhots = 'x'\n", r"bad\.toml: smtp\.hots: unknown key"),
        ("[smtp]\nport = 'twenty-five'\n", r"smtp\.port: expected an integer, got 'twenty-five'"),
        ("[smtp]\nport = 70000\n", r"smtp\.port: expected a port"),
        ("[smtp]\ntls = 'yes'\n", r"smtp\.tls: expected one of 'starttls', 'tls', 'none'"),
        ("[topics]\ntopics = 'many'\n", r"topics\.topics: expected an integer or one of 'auto'"),
        ("[topics]\ntopics = 0\n", r"topics\.topics: expected \"auto\" or a positive integer"),
        ("[topics]\nmin_topics = 9\nmax_topics = 3\n", r"topics\.max_topics"),
        (
            "[topics]\ntrending_weight = 1.5\n",
            r"topics\.trending_weight: expected a number from 0 to 1",
        ),
        (
            "[topics]\nwatch_keywords = 'llm'\n",
            r"topics\.watch_keywords: expected a list of strings",
        ),
        ("[schedule]\nsend_at = '7:30'\n", r"schedule\.send_at: expected HH:MM"),
        ("[schedule]\ndays = '1-5'\n", r"schedule\.days: expected day names"),
        ("[schedule]\ntimezone = 'Mars/Olympus'\n", r"schedule\.timezone: expected an IANA"),
        ("[schedule]\non_empty = 'maybe'\n", r"schedule\.on_empty"),
        ("[list]\nfrom_address = 'nobody'\n", r"list\.from_address: expected an email"),
        ("[list]\nbase_url = 'example.org'\n", r"list\.base_url: expected an http"),
        ("smtp = 3\n", r"smtp: expected a table, got 3"),
        ("database_url = 'newsletter.db'\n", r"database_url: expected a database URL"),
        ("[[sources]]\nurl = 'https://x'\n", r"sources\[0\]\.name: is required"),
        ("[[sources]]\nname = 'a'\n", r"sources\[0\]: expected exactly one of url or path"),
        ("[[sources]]\nname = 'a'\nurl = 'ftp://x'\n", r"sources\[0\]\.url: expected an http"),
        (
            "[[sources]]\nname = 'a'\nurl = 'https://x'\nkind = 'atom'\n",
            r"sources\[0\]\.kind: expected one of 'auto'",
        ),
        (
            "[[sources]]\nname = 'a'\nurl = 'https://x'\n[[sources]]\nname = 'a'\nurl = 'https://y'\n",
            r"sources\[1\]\.name: duplicate",
        ),
        (
            "[[sources]]\nname = 'has space'\nurl = 'https://x'\n",
            r"sources\[0\]\.name: expected letters",
        ),
        (
            "[[sources]]\nname = 'a'\nurl = 'https://x'\nannounce_types = ['fresh']\n",
            r"announce_types\[0\]: expected one of 'new'",
        ),
        (
            "[[sources]]\nname = 'a'\nurl = 'https://x'\nenabled = 'no'\n",
            r"sources\[0\]\.enabled: expected true or false",
        ),
        ("[fetch]\ntimeout = 0\n", r"fetch\.timeout: expected a positive number"),
        ("this is not toml\n", r"bad\.toml: not valid TOML"),
    ],
)
def test_bad_config_names_file_key_and_expectation(write_config, text, message):
    path = write_config(text, name="bad.toml")
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, env={})
    assert "\n" not in str(info.value)


def test_unknown_key_suggests_a_close_name(write_config):
    with pytest.raises(ConfigError, match="did you mean 'max_topics'"):
        load_settings(write_config("[topics]\nmaxtopics = 3\n"), env={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"NEWSLETTER_SMTP__PORT": "abc"},
            r"environment: NEWSLETTER_SMTP__PORT: expected an integer",
        ),
        (
            {"NEWSLETTER_SMTP_HOST": "x"},
            r"NEWSLETTER_SMTP_HOST: is not a setting .*double underscore",
        ),
        ({"NEWSLETTER_SOURCES": "x"}, r"NEWSLETTER_SOURCES: is not a setting"),
        ({"NEWSLETTER_SOURCES__NAME": "x"}, r"is not a setting"),
        ({"NEWSLETTER_SCHEDULE__TIMEZONE": "Nowhere/City"}, r"schedule\.timezone"),
        ({"NEWSLETTER_DELIVERY__TRANSPORT": "pigeon"}, r"delivery\.transport: expected one of"),
    ],
)
def test_bad_environment(write_config, env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(write_config(""), env=env)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file"):
        load_settings(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(tmp_path, env={})
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(binary, env={})


def test_effective_toml_round_trips(write_config, tmp_path):
    import tomllib

    s = load_settings(ROOT / "config.example.toml", env={})
    doc = tomllib.loads(effective_toml(s))
    assert doc["smtp"]["host"] == s.smtp.host
    assert [x["name"] for x in doc["sources"]] == [x.name for x in s.sources]
