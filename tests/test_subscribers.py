"""Subscriber addresses (IDNA 2008, invisible characters), the migration that re-normalises
stored addresses, and CSV import/export against hostile files: real SQLite files, the CLI
through click's CliRunner."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.store import Store, migrations, schema
from newsletter.subscribers import BadAddress, ascii_email, normalise_email

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("raw", "stored", "envelope"),
    [
        # IDNA 2008: ß is a letter of its own; IDNA 2003 made it "ss", another domain.
        ("hans@straße.de", "hans@straße.de", "hans@xn--strae-oqa.de"),
        ("Hans@STRASSE.de", "hans@strasse.de", "hans@strasse.de"),
        ("x@xn--strae-oqa.de", "x@straße.de", "x@xn--strae-oqa.de"),
        ("  Ann.Lee+papers@Example.ORG ", "ann.lee+papers@example.org", None),
        (
            "x@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.org",
            "x@example.org",
            None,
        ),  # full-width (UTS 46)
        ("Jürgen@Bücher.example", "jürgen@bücher.example", "jürgen@xn--bcher-kva.example"),
        ("=1+2@example.org", "=1+2@example.org", None),
    ],
)
def test_addresses_are_normalised_with_idna_2008(raw, stored, envelope):
    assert normalise_email(raw) == stored
    assert ascii_email(stored) == (envelope or stored)
    assert normalise_email(stored) == stored  # stable


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("ha\u200bns@example.org", "ZERO WIDTH SPACE"),
        ("hans@exam\u00adple.org", "SOFT HYPHEN"),
        ("hans@example\u202e.org", "RIGHT-TO-LEFT OVERRIDE"),
        ("hans@exa\u200dmple.org", "ZERO WIDTH JOINER"),
        ("hans\u0000@example.org", "NULL|invalid|unsafe"),
        ("hans@example.org\r\nBcc: x@y.org", "invalid|unsafe|after the @"),
        ("user@localhost", "period|special-use"),
        ("a@b", "period"),
        ('"quoted"@example.org', "Quoting"),
        ("a@[127.0.0.1]", "bracketed"),
        ("a..b@example.org", "two periods"),
        ("a@xn--ls8h.la", "IDNA"),  # an emoji domain: allowed by IDNA 2003, not 2008
        ("", "empty"),
        ("no-at-sign", "@"),
        ("a@" + "b" * 64 + ".org", "too many"),
    ],
)
def test_unusable_addresses_are_refused_with_a_reason(raw, reason):
    with pytest.raises(BadAddress, match=reason) as info:
        normalise_email(raw)
    assert "\n" not in str(info.value)


def test_cli_add_keeps_the_idna_2008_domain_and_refuses_invisible_characters(tmp_path):
    db = f"sqlite:///{tmp_path}/subs.db"
    runner = CliRunner()
    r = runner.invoke(cli, ["--database-url", db, "subscribers", "add", "hans@straße.de"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "added: hans@straße.de\n"
    r = runner.invoke(cli, ["--database-url", db, "subscribers", "add", "hans@strasse.de"])
    assert r.stdout == "added: hans@strasse.de\n"  # a different domain, a different person
    r = runner.invoke(cli, ["--database-url", db, "subscribers", "add", "ha\u200bns@example.org"])
    assert r.exit_code == 1
    assert "ZERO WIDTH SPACE" in r.stderr and "Traceback" not in r.output
    with Store.open(db) as store:
        assert [s.email for s in store.subscribers()] == ["hans@strasse.de", "hans@straße.de"]


# --------------------------------------------------------------------------- migration 2


def _version_1_file(path, emails):
    """A database as the previous release left it: schema version 1, addresses stored by
    the IDNA 2003 normaliser (or by hand)."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        schema.schema_migrations.create(conn)
        migrations.MIGRATIONS[0][2](conn)
        conn.execute(
            schema.schema_migrations.insert().values(version=1, description="v1", applied_at=NOW)
        )
        for email in emails:
            conn.execute(
                schema.subscribers.insert().values(
                    email=email, name="", status="active", created_at=NOW, updated_at=NOW
                )
            )
    engine.dispose()


def test_migration_2_renormalises_stored_addresses_and_reports_what_it_cannot(tmp_path, caplog):
    path = tmp_path / "old.db"
    _version_1_file(
        path,
        [
            "ann@example.org",
            "jo@xn--bcher-kva.example",  # stored by IDNA 2003 from "jo@bücher.example"
            "pat@xn--ls8h.la",  # an emoji domain: IDNA 2008 refuses it
            "Ann@example.org",  # inserted by another tool: the same person as row 1
        ],
    )
    with caplog.at_level(logging.WARNING, logger="newsletter"):
        store = Store.open(f"sqlite:///{path}", now=NOW)
    with store:
        assert store.schema_version() == migrations.LATEST  # 2 and every later one
        emails = [s.email for s in store.subscribers()]
        # Rows are kept and re-keyed, never merged away or dropped: deliveries point at ids.
        assert sorted(emails) == sorted(
            ["ann@example.org", "jo@bücher.example", "pat@xn--ls8h.la", "Ann@example.org"]
        )
        jo = store.subscriber("jo@bücher.example")
        assert jo is not None and jo.updated_at == NOW  # a pending link's stamp survives
    warnings = [r.getMessage() for r in caplog.records]
    assert any("pat@xn--ls8h.la" in w and "left as it is" in w for w in warnings), warnings
    assert any("Ann@example.org" in w and "ann@example.org" in w for w in warnings), warnings
    # Both left-over rows can still be removed by the address they are stored under.
    runner = CliRunner()
    db = f"sqlite:///{path}"
    for addr in ("pat@xn--ls8h.la", "Ann@example.org"):
        r = runner.invoke(cli, ["--database-url", db, "subscribers", "remove", addr])
        assert r.exit_code == 0, r.output
        assert r.stdout == f"unsubscribed: {addr}\n"
    with sqlite3.connect(path) as conn:
        rows = dict(conn.execute("SELECT email, status FROM subscribers").fetchall())
    assert rows == {
        "ann@example.org": "active",
        "jo@bücher.example": "active",
        "pat@xn--ls8h.la": "unsubscribed",
        "Ann@example.org": "unsubscribed",
    }


# --------------------------------------------------------------------------- on the wire


def test_a_unicode_domain_goes_out_as_its_a_label(write_config, sample_feeds, smtp_server):
    server = smtp_server()
    path = write_config(
        f"""
[list]
from_address = "papers@example.org"
base_url = "https://papers.example.org"
[schedule]
timezone = "UTC"
[fetch]
window_days = 1
[[sources]]
name = "hf-daily"
path = "{sample_feeds}/hf-daily.json"
"""
        + server.config()
    )
    env = {"NEWSLETTER_SECRET_KEY": "k" * 32}
    runner = CliRunner()
    r = runner.invoke(
        cli, ["-c", str(path), "subscribers", "add", "Hans@Straße.de", "--name", "Hans"]
    )
    assert r.stdout == "added: hans@straße.de\n"
    day = dt.datetime.now(dt.UTC).date().isoformat()
    r = runner.invoke(cli, ["-c", str(path), "send", "--date", day], env=env)
    assert r.exit_code == 0, r.output
    (got,) = server.received
    assert got.rcpt_tos == ["hans@xn--strae-oqa.de"]
    assert got.message["To"].addresses[0].addr_spec == "hans@xn--strae-oqa.de"


# --------------------------------------------------------------------------- CSV import


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path}/subs.db"


def run(db: str, *args: str, input: bytes | None = None):
    r = CliRunner().invoke(cli, ["--database-url", db, "subscribers", *args], input=input)
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception  # a traceback is a bug: show it
    return r


def stored(db: str) -> dict[str, str]:
    with Store.open(db) as store:
        return {s.email: s.name for s in store.subscribers()}


def one_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


ROWS = "email,name\njosé@example.org,José Müller\nann@example.org,Ann\n"


@pytest.mark.parametrize(
    "data",
    [
        ROWS.encode("utf-8"),
        b"\xef\xbb\xbf" + ROWS.encode("utf-8"),
        ROWS.encode("utf-16"),  # with its byte-order mark, little-endian here
        b"\xfe\xff" + ROWS.encode("utf-16-be"),
        ROWS.replace("\n", "\r\n").encode("utf-8"),
        ROWS.replace(",", ";").encode("utf-8"),  # what a spreadsheet in many locales writes
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-bom", "utf-16-be-bom", "crlf", "semicolons"],
)
def test_import_reads_utf8_and_byte_order_marked_files(db, tmp_path, data):
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    r = run(db, "import", str(path))
    assert r.exit_code == 0, r.output
    assert r.stdout == "imported 2, already subscribed 0, kept out 0, bad rows 0\n"
    assert stored(db) == {"josé@example.org": "José Müller", "ann@example.org": "Ann"}


def test_a_latin1_file_is_refused_by_line_and_read_with_encoding(db, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(ROWS.encode("latin-1"))
    r = run(db, "import", str(path))
    assert r.exit_code == 2
    msg = one_line(r.stderr)
    assert "line 2" in msg and "UTF-8" in msg and "--encoding" in msg and "0xe9" in msg
    assert stored(db) == {}  # nothing imported
    r = run(db, "import", "--encoding", "latin-1", str(path))
    assert r.exit_code == 0, r.output
    assert stored(db) == {"josé@example.org": "José Müller", "ann@example.org": "Ann"}
    r = run(db, "import", "--encoding", "klingon", str(path))
    assert r.exit_code == 2 and "unknown encoding 'klingon'" in one_line(r.stderr)
    r = run(db, "import", "--encoding", "ascii", str(path))
    assert r.exit_code == 2 and "not valid ascii" in one_line(r.stderr)


def test_utf16_without_a_byte_order_mark_and_binary_files_are_one_clear_error(db, tmp_path):
    path = tmp_path / "u16.csv"
    path.write_bytes(ROWS.encode("utf-16-le"))
    r = run(db, "import", str(path))
    assert r.exit_code == 2
    assert "utf-16-le" in one_line(r.stderr)
    assert run(db, "import", "--encoding", "utf-16-le", str(path)).exit_code == 0
    png = tmp_path / "logo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    r = run(db, "import", str(png))
    assert r.exit_code == 2
    assert "not a text file" in one_line(r.stderr) or "binary" in r.stderr
    r = run(db, "import", "--encoding", "latin-1", str(png))  # decodes, but is no text
    assert r.exit_code == 2 and "control character" in one_line(r.stderr)
    assert stored(db) == {"josé@example.org": "José Müller", "ann@example.org": "Ann"}


def test_an_endless_file_is_refused_at_the_size_cap(db, monkeypatch):
    import newsletter.subscribers

    monkeypatch.setattr(newsletter.subscribers, "MAX_CSV_BYTES", 1_000_000)
    r = run(db, "import", "/dev/zero")
    assert r.exit_code == 2 and "larger than 1,000,000 bytes" in one_line(r.stderr)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        # The quote opened on line 3 swallows lines 4 and 5 into one name.
        (
            'email,name\nann@example.org,Ann\nbob@example.org,"Bob\ncy@example.org,Cy\n'
            'dee@example.org,Dee"\neve@example.org,Eve\n',
            "lines 3-5",
        ),
        # Never closed: everything after it would vanish into one field.
        (
            'email,name\nann@example.org,Ann\nbob@example.org,"Bob\ncy@example.org,Cy\n',
            "line 3",
        ),
        ('email,name\nann@example.org,"An"n\n', "line 2"),
    ],
)
def test_a_broken_quote_stops_the_import_and_names_the_lines(db, tmp_path, text, where):
    path = tmp_path / "q.csv"
    path.write_text(text, encoding="utf-8")
    r = run(db, "import", str(path))
    assert r.exit_code == 2
    msg = one_line(r.stderr)
    assert where in msg and "nothing was imported" in msg
    assert stored(db) == {}


def test_bad_rows_are_reported_and_the_rest_imported(db, tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text(
        "name,email\nAnn,ann@example.org\nBob,bob@exam\u00adple.org\n\nCy,\nAnn again,ANN@example.org\n",
        encoding="utf-8",
    )
    r = run(db, "import", str(path))
    assert r.exit_code == 1
    assert r.stdout == "imported 1, already subscribed 0, kept out 0, bad rows 3\n"
    assert "line 3: " in r.stderr and "SOFT HYPHEN" in r.stderr
    assert "line 5: empty address" in r.stderr
    assert "line 6: ann@example.org: repeats an earlier row" in r.stderr
    assert stored(db) == {"ann@example.org": "Ann"}


# --------------------------------------------------------------------------- CSV export


HOSTILE = {
    "=cmd@example.org": '=HYPERLINK("http://evil.example","click")',
    "+1@example.org": "+44 20 7946 0000",
    "-x@example.org": "-2+3",
    "at@example.org": "@SUM(A1:A2)",
    "quote@example.org": "'Tis me",
    "guarded@example.org": "'=already guarded",
    "plain@example.org": "Plain Name",
}


def test_export_neutralises_formulas_and_import_reads_them_back(db, tmp_path):
    with Store.open(db) as store:
        for email, name in HOSTILE.items():
            store.add_subscriber(email, name, now=NOW)
        store.add_subscriber("tab@example.org", "", now=NOW)
    r = run(db, "export")
    assert r.exit_code == 0, r.output
    import csv
    import io

    cells = [c for row in csv.reader(io.StringIO(r.stdout)) for c in row[:2]]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    assert '\'=HYPERLINK("http://evil.example","click")' in cells
    assert "''Tis me" in cells and "''=already guarded" in cells
    # What export wrote, import reads back as it was.
    path = tmp_path / "export.csv"
    path.write_text(r.stdout, encoding="utf-8")
    other = f"sqlite:///{tmp_path}/other.db"
    r = run(other, "import", str(path))
    assert r.exit_code == 0, r.output
    assert stored(other) == stored(db)
    assert stored(other)["=cmd@example.org"] == HOSTILE["=cmd@example.org"]
