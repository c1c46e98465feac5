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
        ("[smtp]\nport = 70000\n", r"smtp\.port: expected an integer from 1 to 65535, got 70000"),
        ("[smtp]\ntls = 'yes'\n", r"smtp\.tls: expected one of 'starttls', 'tls', 'none'"),
        ("[topics]\ntopics = 'many'\n", r"topics\.topics: expected an integer or one of 'auto'"),
        ("[topics]\ntopics = 0\n", r"topics\.topics: expected an integer from 1 to 50, got 0"),
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
        (
            "[list]\nfrom_address = 'nobody'\n",
            r"list\.from_address: not a usable address: 'nobody': .*@",
        ),
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
        (
            "[fetch]\ntimeout = 0\n",
            r"fetch\.timeout: expected a number above 0 and at most 600, got 0",
        ),
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


# --------------------------------------------------------------------------- hostile values


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Non-finite numbers: TOML has nan and inf literals.
        ("[fetch]\ntimeout = nan\n", r"fetch\.timeout: expected a finite number, got nan"),
        ("[fetch]\ntimeout = inf\n", r"fetch\.timeout: expected a finite number, got inf"),
        ("[smtp]\nrate_limit = -inf\n", r"smtp\.rate_limit: expected a finite number"),
        ("[topics]\ntrending_weight = nan\n", r"topics\.trending_weight: expected a finite"),
        # Out of range.
        ("[fetch]\nretries = 1000000\n", r"fetch\.retries: expected an integer from 0 to 10"),
        ("[smtp]\nrate_limit = -1\n", r"smtp\.rate_limit: expected a number from 0 to 10000"),
        ("[fetch]\ntimeout = 1e9\n", r"fetch\.timeout: expected a number above 0 and at most"),
        ("[topics]\nseed = -1\n", r"topics\.seed: expected an integer from 0 to 4294967295"),
        ("[topics]\ntopics = 1000\n", r"topics\.topics: expected an integer from 1 to 50"),
        ("[schedule]\nmisfire_grace_time = -5\n", r"schedule\.misfire_grace_time"),
        ("[smtp]\nconnections = 500\n", r"smtp\.connections: expected an integer from 1 to 64"),
        ("[render]\nsnippet_chars = -1\n", r"render\.snippet_chars"),
        # Control characters in strings that end up in headers (or anywhere).
        (
            '[list]\nid = "a.example\\r\\nBcc: x@y.org"\n',
            r"list\.id: contains a control character \(U\+000D\)",
        ),
        (
            '[list]\nreply_to = "a@example.org\\nBcc: x@y.org"\n',
            r"list\.reply_to: contains a control",
        ),
        (
            '[list]\nname = "Papers\\u2028Today"\n',
            r"list\.name: contains a control character \(U\+2028\)",
        ),
        ('[fetch]\nuser_agent = "x\\ty"\n', r"fetch\.user_agent: contains a control"),
        ('[delivery]\noutbox_dir = "out\\u0000"\n', r"delivery\.outbox_dir: contains a control"),
        ('[topics]\nwatch_keywords = ["ok", "a\\nb"]\n', r"topics\.watch_keywords\[1\]: contains"),
        # Header-bound values checked for what they are.
        ('[list]\nid = "has space.example"\n', r"list\.id: expected a domain-like"),
        ('[list]\nid = "nodot"\n', r"list\.id: expected a domain-like"),
        ('[list]\nreply_to = "not an address"\n', r"list\.reply_to: not a usable address"),
        ('[list]\nfrom_address = "a@straße..de"\n', r"list\.from_address: not a usable address"),
        ('[list]\nfrom_address = "a\\u200b@example.org"\n', r"list\.from_address: .*ZERO WIDTH"),
        ('[list]\nname = ""\n', r"list\.name: expected a non-empty name"),
        ('[smtp]\nhost = "mail host"\n', r"smtp\.host: expected a host name"),
        ('[list]\nbase_url = "https://x.org/a b"\n', r"list\.base_url: expected an http"),
        # The subject template: only the documented names, plain.
        (
            '[render]\nsubject = "{list_name.__class__.__mro__}"\n',
            r"render\.subject: .*\{list_name\.__class__\.__mro__\}.*known: \{list_name\}",
        ),
        ('[render]\nsubject = "{date[0]}"\n', r"render\.subject: "),
        ('[render]\nsubject = "{count:>99999999}"\n', r"render\.subject: .*format"),
        ('[render]\nsubject = "{topics!r}"\n', r"render\.subject: "),
        ('[render]\nsubject = "{nope}"\n', r"render\.subject: .*\{nope\}"),
        ('[render]\nsubject = "{0}"\n', r"render\.subject: "),
        ('[render]\nsubject = "{}"\n', r"render\.subject: "),
        ('[render]\nsubject = "unclosed {date"\n', r"render\.subject: "),
        ('[render]\nsubject = "}"\n', r"render\.subject: "),
        # Database URLs: what the store cannot use is a config error too.
        ("database_url = 'mysql://u@db/news'\n", r"database_url: unsupported database 'mysql'"),
        ("database_url = 'sqlite://host/x.db'\n", r"database_url: expected sqlite:///FILE"),
        ("database_url = 'postgresql://u@db/news'\n", r"database_url: .*postgresql\+psycopg://"),
    ],
)
def test_hostile_values_are_config_errors(write_config, text, message):
    path = write_config(text, name="bad.toml")
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, env={})
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_hostile_environment_values_are_config_errors(write_config):
    path = write_config("")
    for env, message in [
        ({"NEWSLETTER_FETCH__TIMEOUT": "nan"}, r"fetch\.timeout: expected a finite number"),
        ({"NEWSLETTER_SMTP__RATE_LIMIT": "-1"}, r"smtp\.rate_limit: expected a number from 0"),
        ({"NEWSLETTER_DATABASE_URL": "mysql://db/x"}, r"database_url: unsupported database"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_settings(path, env=env)


def test_documented_edges_of_the_ranges_are_accepted(write_config):
    s = load_settings(
        write_config(
            "[fetch]\nretries = 0\nmin_interval = 0\ntimeout = 600\n"
            "[smtp]\nrate_limit = 0\nconnections = 64\n[topics]\nseed = 4294967295\n"
            '[render]\nsubject = "{{{list_name}}} {long_date} {count} {topics} {date}"\n'
            '[list]\nfrom_address = "Papers@Straße.example.org"\nreply_to = "ed@example.org"\n'
        ),
        env={},
    )
    assert (s.fetch.retries, s.smtp.connections, s.topics.seed) == (0, 64, 4294967295)
    # The sender's address as the validator normalises it, in the A-label form headers need.
    assert s.list.from_address == "papers@xn--strae-oqa.example.org"


def test_config_check_cli_reports_a_hostile_value_with_exit_2(write_config):
    from click.testing import CliRunner

    from newsletter.cli import cli

    path = write_config('[render]\nsubject = "{list_name.__class__}"\n')
    r = CliRunner().invoke(cli, ["-c", str(path), "config", "check"])
    assert r.exit_code == 2, r.output
    assert "render.subject" in r.stderr and "Traceback" not in r.output
    path = write_config("database_url = 'mysql://u@db/news'\n", name="my.toml")
    r = CliRunner().invoke(cli, ["-c", str(path), "config", "check"])
    assert r.exit_code == 2 and "database_url" in r.stderr


# --------------------------------------------------------------------------- the printer


def _settings_doc(s: Settings) -> dict:
    d = dataclasses.asdict(s)
    d.pop("config_path")
    d.pop("secrets")
    return d


def test_printed_config_parses_back_to_the_same_settings(write_config, tmp_path):
    import tomllib

    odd_path = 'feeds/ü "x".xml'
    quoted = 'say "hi" \\ back\\slash ✓'
    path = write_config(
        "[list]\n"
        "name = 'Papers \"Daily\" \\ ünï ✓'\n"
        "[topics]\n"
        f"watch_keywords = [{json_str(quoted)}, 'plain', \"it's\"]\n"
        f"watch_authors = [{json_str('Ørsted, H. C.')}]\n"
        "[render]\n"
        "subject = '{list_name} \"{date}\" \\\\ {{literal}}'\n"
        "[[sources]]\n"
        "name = 'local'\n"
        f"path = {json_str(odd_path)}\n"
        "categories = ['cs.CL', 'physics.gen-ph']\n"
    )
    s = load_settings(path, env={})
    printed = effective_toml(s)
    again = tmp_path / "again.toml"
    again.write_text(printed, encoding="utf-8")
    s2 = load_settings(again, env={})
    assert _settings_doc(s2) == _settings_doc(s)
    assert tomllib.loads(printed)["sources"][0]["path"] == str(tmp_path / odd_path)


def test_printer_writes_valid_toml_for_any_string():
    """The loader refuses line breaks, but the printer must not depend on that."""
    import tomllib

    awkward = "one\ntwo\r\n\"three\" \\ 'four' \u2028 \x7f ünï ✓ \ud7ff"
    s = dataclasses.replace(
        Settings(),
        list=dataclasses.replace(Settings().list, name=awkward, contact="a\tb"),
        topics=dataclasses.replace(Settings().topics, watch_keywords=(awkward, "x")),
    )
    doc = tomllib.loads(effective_toml(s))
    assert doc["list"]["name"] == awkward and doc["list"]["contact"] == "a\tb"
    assert doc["topics"]["watch_keywords"] == [awkward, "x"]


def test_printer_comment_lines_stay_comments(tmp_path, database_url):
    import tomllib

    odd = tmp_path / "odd\nname = 1"
    odd.mkdir()
    cfg = odd / "newsletter.toml"
    cfg.write_text(f"database_url = {json_str(database_url)}\n", encoding="utf-8")
    doc = tomllib.loads(effective_toml(load_settings(cfg, env={})))
    assert "name" not in doc


def json_str(s: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML ones)."""
    import json

    return json.dumps(s, ensure_ascii=False)
