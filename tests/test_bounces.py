"""Bounces that arrive later, complaints and DKIM, with real parts: real-world DSN, ARF and
auto-reply samples (tests/data/bounces/README.md), a throwaway dovecot IMAP server over TLS
(.ci/dovecot.sh; skipped with a reason where dovecot is not installed), a TCP proxy that
cuts the IMAP connection part-way, real SQLite files, and dkimpy's verifier with a stub DNS
answer."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import imaplib
import mailbox
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dkim
import pytest
from click.testing import CliRunner
from conftest import DATA, both_backends

from newsletter.bounces import Kind, run_bounce_check
from newsletter.bounces.parse import read_report, severity
from newsletter.bounces.policy import SoftBounce, decide, soft_occasions
from newsletter.bounces.verp import Target, parse_message_id, parse_return_path
from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.errors import ConfigError
from newsletter.links import envelope_sender, message_id, return_path
from newsletter.models import SubscriberStatus as S
from newsletter.store import Store

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = DATA / "bounces"
SECRET = "test-secret-key-0123456789abcdef"
T0 = dt.datetime(2026, 4, 27, 9, 0, tzinfo=dt.UTC)
BASE = "bounces@lists.example.org"

#: Every sample, what it says: (kind, recipient, status) per finding.
EXPECTED = {
    "flufl-dsn_01.eml": [("soft", "userx@example.com", "5.0.0")],  # 5.0.0 disk quota
    "flufl-dsn_02.eml": [("soft", "zzzzz@example.uk", "4.4.7")],  # X.400 recipient
    "flufl-dsn_05.eml": [("delayed", "userx@example.cz", "4.4.1")],
    "flufl-dsn_10.eml": [("hard", "anne.person@dom.ain", "5.0.0")],  # 5.0.0 with a 550
    "flufl-dsn_11.eml": [("hard", "joem@example.com", "5.1.1")],  # the block repeated
    "flufl-dsn_12.eml": [("hard", "userx@example.jp", "5.1.1")],
    "flufl-dsn_14.eml": [("hard", "userx@example.com.dk", "5.1.1")],
    "flufl-dsn_17.eml": [("delayed", "userx@example.fi", "4.3.0")],
    "flufl-exim_01.eml": [("hard", "userx@its.example.nl", "5.1.1")],
    "flufl-groupwise_01.eml": [("hard", "userx@example.edu", None)],
    "flufl-llnl_01.eml": [("hard", "user1@example.gov", None)],
    "flufl-postfix_01.eml": [("hard", "xxxxx@local.ie", "5.1.1")],
    "flufl-qmail_01.eml": [("hard", "userx@example.de", None)],
    "flufl-simple_03.eml": [("delayed", "userx@example.za", None)],  # "delayed 24 hours"
    "flufl-smtp32_01.eml": [("hard", "userx@example.ph", None)],
    "flufl-yahoo_11.eml": [("hard", "bad_user@aol.com", "5.1.1")],
    "sisimai-arf-03.eml": [("complaint", "", None)],  # the recipient is redacted
    "sisimai-arf-05.eml": [
        ("complaint", "fake.rcpt@example.com", None),
        ("complaint", "fake.rcpt2@example.net", None),
    ],
    "sisimai-arf-07.eml": [("other", "fake.rcpt@example.com", None)],  # DMARC auth-failure
    "sisimai-rfc3834-01.eml": [("auto-reply", "", None)],  # Return-Path <>, no header
    "sisimai-rfc3834-02.eml": [("auto-reply", "", None)],  # Lotus Notes "AUTO:" subject
    "sisimai-rfc3834-03.eml": [("auto-reply", "", None)],  # Auto-Submitted: auto-replied
    "sisimai-rfc3834-04.eml": [("auto-reply", "", None)],
}

#: On the list: the addresses the samples bounce, complain or reply from (not all of them,
#: so some findings are unmatched), and what the policy makes of each.
SUBSCRIBERS = {
    "anne.person@dom.ain": S.BOUNCED,
    "joem@example.com": S.BOUNCED,
    "userx@example.jp": S.BOUNCED,
    "xxxxx@local.ie": S.BOUNCED,
    "userx@its.example.nl": S.BOUNCED,
    "bad_user@aol.com": S.BOUNCED,
    "userx@example.com": S.ACTIVE,  # one soft bounce (mailbox full) is not enough
    "userx@example.cz": S.ACTIVE,  # a delay warning
    "userx@example.fi": S.ACTIVE,
    "userx@example.za": S.ACTIVE,
    "fake.rcpt@example.com": S.UNSUBSCRIBED,  # the complaint; its DMARC report is not one
    "fred@example.com": S.ACTIVE,  # vacation replies never count
    "john.smith@b.c": S.ACTIVE,
    "fredbloggs@test.com": S.ACTIVE,
    "uppercrustcook@aol.com": S.ACTIVE,
}
#: Findings about nobody on the list: 5 hard, 1 soft, 2 complaints.
UNMATCHED = 8


def samples() -> list[Path]:
    return sorted(SAMPLES.glob("*.eml"))


def counts_expected() -> dict[str, int]:
    out: dict[str, int] = {}
    for findings in EXPECTED.values():
        for kind, _, _ in findings:
            out[kind] = out.get(kind, 0) + 1
    return out


# --------------------------------------------------------------------------- parsing


def test_every_sample_is_listed():
    assert sorted(p.name for p in samples()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_world_samples_are_classified(name):
    report = read_report((SAMPLES / name).read_bytes())
    got = [(f.kind.value, f.recipient, f.status) for f in report.findings]
    assert got == EXPECTED[name]


def test_reports_without_a_message_id_get_a_stable_key():
    data = (SAMPLES / "flufl-yahoo_11.eml").read_bytes()
    assert b"message-id" not in data.lower()
    one, crlf = read_report(data), read_report(data.replace(b"\n", b"\r\n"))
    assert one.key.startswith("sha256:") and one.key == crlf.key
    assert read_report(b"From MAILER-DAEMON Mon Apr 27 09:00:00 2026\n" + data).key == one.key


def test_garbage_is_unrecognised_not_an_error():
    for data in (b"", b"\x00\xff" * 100, b"Content-Type: multipart/report\n\n--x\n"):
        assert read_report(data).kind is Kind.UNRECOGNISED


@pytest.mark.parametrize(
    ("status", "diagnostic", "permanent", "kind"),
    [
        ("5.1.1", None, True, Kind.HARD),  # no such user
        ("5.1.10", None, True, Kind.HARD),  # null MX
        ("5.2.1", None, True, Kind.HARD),  # mailbox disabled
        ("5.2.2", None, True, Kind.SOFT),  # mailbox full
        ("5.7.1", "550 5.7.1 rejected as spam", True, Kind.SOFT),  # policy, not the address
        ("5.0.0", "said: 550 unknown user", True, Kind.HARD),
        ("5.0.0", "quota exceeded", True, Kind.SOFT),
        ("4.4.1", None, False, Kind.SOFT),
        ("2.0.0", None, False, Kind.OTHER),
        (None, None, True, Kind.HARD),  # the detector's verdict
        (None, None, False, Kind.SOFT),
    ],
)
def test_severity_table(status, diagnostic, permanent, kind):
    assert severity(status, diagnostic, permanent=permanent) is kind


# --------------------------------------------------------------------------- policy


@pytest.mark.parametrize(
    ("kind", "status", "soft_count", "expected"),
    [
        (Kind.HARD, S.ACTIVE, 0, S.BOUNCED),
        (Kind.HARD, S.UNSUBSCRIBED, 0, None),  # who left stays left
        (Kind.HARD, S.BOUNCED, 0, None),
        (Kind.HARD, S.PENDING, 0, None),
        (Kind.SOFT, S.ACTIVE, 1, None),
        (Kind.SOFT, S.ACTIVE, 2, None),
        (Kind.SOFT, S.ACTIVE, 3, S.BOUNCED),
        (Kind.SOFT, S.ACTIVE, 4, S.BOUNCED),
        (Kind.SOFT, S.UNSUBSCRIBED, 9, None),
        (Kind.COMPLAINT, S.ACTIVE, 0, S.UNSUBSCRIBED),
        (Kind.COMPLAINT, S.BOUNCED, 0, S.UNSUBSCRIBED),
        (Kind.COMPLAINT, S.PENDING, 0, S.UNSUBSCRIBED),
        (Kind.COMPLAINT, S.UNSUBSCRIBED, 0, None),
        (Kind.DELAYED, S.ACTIVE, 9, None),
        (Kind.AUTO_REPLY, S.ACTIVE, 9, None),
        (Kind.OTHER, S.ACTIVE, 9, None),
        (Kind.UNRECOGNISED, S.ACTIVE, 9, None),
    ],
)
def test_policy_table(kind, status, soft_count, expected):
    assert decide(kind, status, soft_count=soft_count, soft_limit=3) is expected


def _soft(days_ago: float, issue: int | None) -> SoftBounce:
    day = dt.date(2026, 4, issue) if issue else None
    return SoftBounce(T0 - dt.timedelta(days=days_ago), day)


@pytest.mark.parametrize(
    ("history", "since_days_ago", "expected"),
    [
        ([], 100, 0),
        ([_soft(1, 20), _soft(2, 21), _soft(3, 22)], 100, 3),
        ([_soft(1, 20), _soft(1.1, 20), _soft(1.2, 20)], 100, 1),  # one issue, three reports
        ([_soft(1, None), _soft(1.01, None), _soft(2, None)], 100, 2),  # no issue: per day
        ([_soft(1, 20), _soft(20, 1), _soft(30, 2)], 100, 1),  # outside the 14 days
        ([_soft(1, 20), _soft(2, 21), _soft(3, 22)], 2.5, 2),  # before a re-activation
        ([_soft(-1, 20)], 100, 0),  # in the future: not yet
    ],
)
def test_soft_occasions_table(history, since_days_ago, expected):
    since = T0 - dt.timedelta(days=since_days_ago)
    assert soft_occasions(history, since=since, now=T0, days=14) == expected


# --------------------------------------------------------------------------- VERP


def test_return_path_round_trip_and_limits():
    day = dt.date(2026, 4, 27)
    addr = return_path(BASE, SECRET, 1234567, day)
    local, _, domain = addr.rpartition("@")
    assert domain == "lists.example.org" and local.startswith("bounces+1234567-20260427-")
    assert re.fullmatch(r"[a-z0-9+-]+", local) and len(local) <= 64
    target = parse_return_path(BASE, SECRET, f"Delivered-To: {addr}")
    assert target is not None and (target.subscriber_id, target.issue_date) == (1234567, day)
    # Some servers lower- or upper-case the address they bounce to.
    assert parse_return_path(BASE, SECRET, addr.upper()) == target
    assert parse_return_path(BASE, "another-key", addr) is None
    assert parse_return_path(BASE, SECRET, addr.replace("1234567-", "1234568-")) is None
    assert parse_return_path(BASE, SECRET, addr.replace("20260427", "20260428")) is None
    longest = "b" * 27 + "@lists.example.org"
    assert len(return_path(longest, SECRET, 2**31 - 1, day).partition("@")[0]) == 64


def test_envelope_sender_follows_the_config(tmp_path):
    day = dt.date(2026, 4, 27)
    off = load_settings(None, env={})
    assert envelope_sender(off, SECRET, 5, day) == off.list.from_address
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[delivery]\nreturn_path = "{BASE}"\n')
    on = load_settings(cfg, env={})
    assert envelope_sender(on, SECRET, 5, day) == return_path(BASE, SECRET, 5, day)


def test_return_path_config_is_checked(tmp_path):
    cfg = tmp_path / "c.toml"
    for bad in ("bounces", "b+x@example.org", "b" * 28 + "@example.org", "bounces@-bad-"):
        cfg.write_text(f'[delivery]\nreturn_path = "{bad}"\n')
        with pytest.raises(ConfigError, match=r"delivery\.return_path"):
            load_settings(cfg, env={})
    cfg.write_text(f'[delivery]\nreturn_path = "{BASE}"\n')
    assert load_settings(cfg, env={}).delivery.return_path == BASE


def test_our_message_id_names_the_delivery():
    settings = load_settings(None, env={})
    mid = message_id(settings, SECRET, dt.date(2026, 4, 20), 42)
    target = parse_message_id(settings, SECRET, f"Message-ID: {mid}")
    assert target is not None and (target.subscriber_id, target.issue_date) == (
        42,
        dt.date(2026, 4, 20),
    )
    forged = mid.replace(".42.", ".43.")
    assert parse_message_id(settings, SECRET, forged) is None


# --------------------------------------------------------------------------- local mailboxes


@pytest.fixture
def store(database_url) -> Iterator[Store]:
    """The store, on SQLite (or PostgreSQL where a test asks for both backends)."""
    s = Store.open(database_url, now=T0)
    for email in SUBSCRIBERS:
        s.add_subscriber(email, "", now=T0 - dt.timedelta(days=30))
    yield s
    s.close()


def settings_for(tmp_path: Path, bounces: str, extra: str = "", **env: str):
    cfg = tmp_path / "newsletter.toml"
    cfg.write_text(
        f"{extra}\n[bounces]\n{bounces}\n",  # the tests hand run_bounce_check their store
        encoding="utf-8",
    )
    return load_settings(
        cfg, env={"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_BOUNCES_PASSWORD": "", **env}
    )


def make_maildir(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(path, create=True)
    for data in messages:
        box.add(data)
    box.close()
    return path


def statuses(store: Store) -> dict[str, S]:
    return {s.email: s.status for s in store.subscribers()}


def clock():
    return T0


@both_backends
def test_a_maildir_of_real_samples(tmp_path, store):
    md = make_maildir(tmp_path / "Maildir", [p.read_bytes() for p in samples()])
    settings = settings_for(tmp_path, f'kind = "maildir"\nurl = "{md}"')
    report = run_bounce_check(settings, store, now=clock)
    assert report.error is None and report.read == len(EXPECTED)
    assert {k.value: n for k, n in report.kinds.items()} == counts_expected()
    assert report.unmatched == UNMATCHED and report.already_recorded == 0
    assert statuses(store) == SUBSCRIBERS
    assert sorted(report.bounced) == sorted(e for e, s in SUBSCRIBERS.items() if s is S.BOUNCED)
    assert report.unsubscribed == ["fake.rcpt@example.com"]
    box = mailbox.Maildir(md, create=False)
    assert len(box) == 0 and len(box.get_folder("Processed")) == len(EXPECTED)
    # The same messages delivered again (a second copy of the mailbox): nothing changes.
    for p in samples():
        box.add(p.read_bytes())
    again = run_bounce_check(settings, store, now=clock)
    assert again.read == len(EXPECTED) and sum(again.kinds.values()) == 0
    assert again.already_recorded == sum(counts_expected().values())
    assert again.bounced == again.unsubscribed == [] and statuses(store) == SUBSCRIBERS


def mbox_length(path: Path) -> int:
    box = mailbox.mbox(path, create=False)
    try:
        return len(box)
    finally:
        box.close()


def test_an_mbox(tmp_path, store):
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    for p in samples()[:5]:
        box.add(p.read_bytes())
    box.close()
    settings = settings_for(
        tmp_path, f'kind = "mbox"\nurl = "{path}"\nprocessed_folder = "done.mbox"'
    )
    report = run_bounce_check(settings, store, now=clock)
    assert report.read == 5 and report.error is None
    assert mbox_length(path) == 0 and mbox_length(tmp_path / "done.mbox") == 5
    assert statuses(store)["userx@example.com"] is S.ACTIVE  # dsn_01: soft, once
    assert statuses(store)["anne.person@dom.ain"] is S.BOUNCED  # dsn_10


def test_vacation_replies_never_count(tmp_path, store):
    """Auto-replies addressed to our return path of a subscriber who is on the list."""
    md = tmp_path / "Maildir"
    sid = store.subscriber("fred@example.com").id
    rp = return_path(BASE, SECRET, sid, dt.date(2026, 4, 24))
    replies = [
        re.sub(rb"(?m)^To: .*$", f"To: {rp}".encode(), p.read_bytes(), count=1)
        for p in SAMPLES.glob("sisimai-rfc3834-*.eml")
    ]
    make_maildir(md, replies * 3)
    settings = settings_for(
        tmp_path,
        f'kind = "maildir"\nurl = "{md}"\nsoft_limit = 1',
        f'[delivery]\nreturn_path = "{BASE}"',
    )
    report = run_bounce_check(settings, store, now=clock)
    assert report.count(Kind.AUTO_REPLY) == 4 and report.already_recorded == 8
    assert sum(report.kinds.values()) == 4 and report.bounced == []
    assert statuses(store)["fred@example.com"] is S.ACTIVE


def _retarget(data: bytes, to: str, new_id: str) -> bytes:
    """A real DSN as the server would have sent it to our return path: its To and its own
    Message-ID replaced (the report's content is untouched)."""
    data = re.sub(rb"(?m)^To: .*$", f"To: {to}".encode(), data, count=1)
    return re.sub(rb"(?mi)^Message-I[dD]: .*$", f"Message-ID: <{new_id}>".encode(), data, count=1)


def test_soft_bounces_on_distinct_issues_bounce_via_the_return_path(tmp_path, store):
    """dsn_01 (a full mailbox) for a subscriber whose address is nowhere in it: the return
    path names them.  Two reports about one issue count once; the third issue bounces."""
    sub = store.add_subscriber("reader@example.net", "", now=T0 - dt.timedelta(days=30))[0]
    dsn = (SAMPLES / "flufl-dsn_01.eml").read_bytes()
    days = [dt.date(2026, 4, 22), dt.date(2026, 4, 22), dt.date(2026, 4, 23), dt.date(2026, 4, 24)]
    mails = [
        _retarget(dsn, return_path(BASE, SECRET, sub.id, d), f"r{i}@mx.example")
        for i, d in enumerate(days)
    ]
    md = tmp_path / "Maildir"
    settings = settings_for(
        tmp_path, f'kind = "maildir"\nurl = "{md}"', f'[delivery]\nreturn_path = "{BASE}"'
    )
    make_maildir(md, mails[:3])
    first = run_bounce_check(settings, store, now=clock)
    assert first.count(Kind.SOFT) == 3 and first.unmatched == 0 and first.bounced == []
    assert store.subscriber(sub.id).status is S.ACTIVE  # two issues so far
    make_maildir(md, mails[3:])
    second = run_bounce_check(settings, store, now=clock)
    assert second.bounced == ["reader@example.net"]
    # An operator brings them back: the old soft bounces no longer count.
    store.add_subscriber("reader@example.net", "", now=T0 + dt.timedelta(hours=1))
    later = [_retarget(dsn, return_path(BASE, SECRET, sub.id, dt.date(2026, 4, 27)), "r9@mx")]
    make_maildir(md, later)
    run_bounce_check(settings, store, now=lambda: T0 + dt.timedelta(hours=2))
    assert store.subscriber(sub.id).status is S.ACTIVE


def test_an_international_domain_matches_its_stored_form(tmp_path, store):
    """Reports name the domain in A-labels (xn--); the subscriber is stored in Unicode."""
    store.add_subscriber("userx@bücher.example", "", now=T0 - dt.timedelta(days=30))
    dsn = (SAMPLES / "flufl-dsn_12.eml").read_bytes()
    md = make_maildir(
        tmp_path / "Maildir", [dsn.replace(b"@example.jp", b"@XN--BCHER-KVA.example")]
    )
    report = run_bounce_check(
        settings_for(tmp_path, f'kind = "maildir"\nurl = "{md}"'), store, now=clock
    )
    assert report.bounced == ["userx@bücher.example"] and report.unmatched == 0


def test_a_complaint_quoting_our_message_id_unsubscribes(tmp_path, store):
    """arf-03 redacts the recipient; the complained-about message it carries is ours."""
    settings = settings_for(tmp_path, 'kind = "maildir"\nurl = "x"')
    sub = store.subscriber("userx@example.com")
    mid = message_id(settings, SECRET, dt.date(2026, 4, 24), sub.id)
    arf = (SAMPLES / "sisimai-arf-03.eml").read_bytes()
    arf = arf.replace(b"<f6fbba8a761ce682e1b00a323a21b372@example.net>", mid.encode())
    md = make_maildir(tmp_path / "Maildir", [arf])
    settings = settings_for(tmp_path, f'kind = "maildir"\nurl = "{md}"')
    report = run_bounce_check(settings, store, now=clock)
    assert report.unsubscribed == ["userx@example.com"] and report.unmatched == 0


def test_cli_check_dry_run_and_exit_codes(tmp_path, store, database_url):
    md = make_maildir(tmp_path / "Maildir", [p.read_bytes() for p in samples()])
    cfg = tmp_path / "newsletter.toml"
    cfg.write_text(f'database_url = "{database_url}"\n[bounces]\nkind = "maildir"\nurl = "{md}"\n')
    env = {"NEWSLETTER_SECRET_KEY": SECRET}
    runner = CliRunner()
    dry = runner.invoke(cli, ["-c", str(cfg), "bounces", "check", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("dry run, nothing recorded or moved: read 23 message(s)")
    assert "hard bounces 11," in dry.output and f"unmatched {UNMATCHED};" in dry.output
    assert statuses(store) == {e: S.ACTIVE for e in SUBSCRIBERS}
    assert len(mailbox.Maildir(md, create=False)) == len(EXPECTED)
    assert not (md / ".Processed").exists()
    real = runner.invoke(cli, ["-c", str(cfg), "bounces", "check"], env=env)
    assert real.exit_code == 0, real.output
    assert (
        "read 23 message(s): hard bounces 11, soft bounces 2, complaints 3, auto-replies "
        "ignored 4, delay warnings ignored 3, other reports 1, unrecognised 0; unmatched 8; "
        "already recorded 0"
    ) in real.output
    assert "unsubscribed (complaint): fake.rcpt@example.com" in real.output
    listed = runner.invoke(cli, ["-c", str(cfg), "subscribers", "list", "--status", "bounced"])
    assert "anne.person@dom.ain" in listed.output and "userx@example.com " not in listed.output
    cfg.write_text(f'database_url = "{database_url}"\n')
    off = runner.invoke(cli, ["-c", str(cfg), "bounces", "check"], env=env)
    assert off.exit_code == 2 and "bounces.kind" in off.output
    cfg.write_text(f'[bounces]\nkind = "maildir"\nurl = "{tmp_path}/nowhere"\n')
    missing = runner.invoke(cli, ["-c", str(cfg), "bounces", "check"], env=env)
    assert missing.exit_code == 1 and "not a Maildir" in missing.output


def test_bounces_config_is_checked(tmp_path):
    cfg = tmp_path / "c.toml"
    for text, key in [
        ('[bounces]\nkind = "imap"\nurl = "https://x"', "bounces.url"),
        ('[bounces]\nkind = "pop3"', "bounces.kind"),
        ('[bounces]\nkind = "maildir"', "bounces.url"),
        ("[bounces]\nsoft_limit = 0", "bounces.soft_limit"),
        ('[smtp]\ndkim_key_file = "k.pem"', "smtp.dkim_selector"),
        ('[smtp]\ndkim_key_file = "k.pem"\ndkim_selector = "a b"', "smtp.dkim_selector"),
    ]:
        cfg.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(key)):
            load_settings(cfg, env={})
    cfg.write_text(
        '[bounces]\nkind = "maildir"\nurl = "box"\n[smtp]\ndkim_key_file = "k.pem"\ndkim_selector = "s1"'
    )
    s = load_settings(cfg, env={"NEWSLETTER_BOUNCES_PASSWORD": "pw"})
    assert s.bounces.url == str(tmp_path / "box") and s.smtp.dkim_key_file == str(
        tmp_path / "k.pem"
    )
    assert s.secrets.bounces_password == "pw" and "pw" not in repr(s)


# --------------------------------------------------------------------------- IMAP (dovecot)


@dataclass
class Imap:
    port: int
    starttls_port: int
    ca: str
    user: str
    password: str

    def client(self, port: int | None = None) -> imaplib.IMAP4_SSL:
        ctx = ssl.create_default_context(cafile=self.ca)
        conn = imaplib.IMAP4_SSL("127.0.0.1", port or self.port, ssl_context=ctx, timeout=10)
        conn.login(self.user, self.password)
        return conn

    def folder(self, messages: list[bytes]) -> str:
        """A new folder holding ``messages``, delivered by APPEND."""
        name = f"t{uuid.uuid4().hex[:10]}"
        conn = self.client()
        try:
            assert conn.create(name)[0] == "OK"
            for data in messages:
                assert conn.append(name, None, None, data)[0] == "OK"
        finally:
            conn.logout()
        return name

    def folders(self) -> set[str]:
        conn = self.client()
        try:
            typ, data = conn.list()
            assert typ == "OK", data
            return {line.decode().rsplit(" ", 1)[1].strip('"') for line in data}
        finally:
            conn.logout()

    def count(self, folder: str) -> int:
        conn = self.client()
        try:
            typ, data = conn.select(f'"{folder}"', readonly=True)
            assert typ == "OK", data
            return int(data[0])
        finally:
            conn.logout()


@pytest.fixture(scope="session")
def imap() -> Iterator[Imap]:
    """The IMAP server .ci/dovecot.sh started (NEWSLETTER_TEST_IMAP_*), else one started
    here for the session; skipped where dovecot is not installed."""
    env = dict(os.environ)
    started = False
    if "NEWSLETTER_TEST_IMAP_PORT" not in env:
        if not (shutil.which("dovecot") or os.path.exists("/usr/sbin/dovecot")):
            pytest.skip("dovecot is not installed (apt-get install dovecot-imapd; .ci/dovecot.sh)")
        out = subprocess.run(
            ["bash", "-c", "source .ci/dovecot.sh start >&2 && env"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            pytest.fail(f".ci/dovecot.sh start failed: {out.stderr[-500:]}")
        env.update(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        started = True
    server = Imap(
        int(env["NEWSLETTER_TEST_IMAP_PORT"]),
        int(env["NEWSLETTER_TEST_IMAP_STARTTLS_PORT"]),
        env["NEWSLETTER_TEST_IMAP_CA"],
        env["NEWSLETTER_TEST_IMAP_USER"],
        env["NEWSLETTER_TEST_IMAP_PASSWORD"],
    )
    yield server
    if started:
        subprocess.run(
            ["bash", ".ci/dovecot.sh", "stop"],
            cwd=ROOT,
            env={**os.environ, "DOVECOT_TEST_DIR": env["DOVECOT_TEST_DIR"]},
            timeout=60,
            check=False,
        )


def imap_settings(tmp_path: Path, imap: Imap, folder: str, port: int | None = None):
    return settings_for(
        tmp_path,
        f'kind = "imap"\nurl = "imaps://127.0.0.1:{port or imap.port}"\n'
        f'username = "{imap.user}"\nfolder = "{folder}"\nprocessed_folder = "{folder}-done"\n'
        f'ca_file = "{imap.ca}"\ntimeout = 10',
        NEWSLETTER_BOUNCES_PASSWORD=imap.password,
    )


def test_imap_check_records_moves_and_is_idempotent(tmp_path, store, imap):
    messages = [p.read_bytes() for p in samples()]
    folder = imap.folder(messages)
    settings = imap_settings(tmp_path, imap, folder)
    report = run_bounce_check(settings, store, now=clock)
    assert report.error is None and report.read == len(EXPECTED)
    assert {k.value: n for k, n in report.kinds.items()} == counts_expected()
    assert report.unmatched == UNMATCHED and statuses(store) == SUBSCRIBERS
    assert recorded_rows(store) == sum(counts_expected().values())
    assert imap.count(folder) == 0 and imap.count(f"{folder}-done") == len(EXPECTED)
    assert run_bounce_check(settings, store, now=clock).read == 0
    # The same reports delivered once more: read again, recorded never twice.
    again_folder = imap.folder(messages)
    again = run_bounce_check(imap_settings(tmp_path, imap, again_folder), store, now=clock)
    assert again.read == len(EXPECTED) and sum(again.kinds.values()) == 0
    assert again.already_recorded == sum(counts_expected().values())
    assert recorded_rows(store) == sum(counts_expected().values())


def test_imap_starttls_and_a_dry_run_that_changes_nothing(tmp_path, store, imap):
    folder = imap.folder([p.read_bytes() for p in samples()])
    settings = settings_for(
        tmp_path,
        f'kind = "imap"\nurl = "imap://127.0.0.1:{imap.starttls_port}"\n'
        f'username = "{imap.user}"\nfolder = "{folder}"\nprocessed_folder = "{folder}-done"\n'
        f'ca_file = "{imap.ca}"',
        NEWSLETTER_BOUNCES_PASSWORD=imap.password,
    )
    report = run_bounce_check(settings, store, now=clock, dry_run=True)
    assert report.read == len(EXPECTED) and report.error is None
    assert {k.value: n for k, n in report.kinds.items()} == counts_expected()
    assert report.unmatched == UNMATCHED and report.bounced == []
    assert statuses(store) == {e: S.ACTIVE for e in SUBSCRIBERS} and recorded_rows(store) == 0
    assert imap.count(folder) == len(EXPECTED) and f"{folder}-done" not in imap.folders()
    real = run_bounce_check(settings, store, now=clock)
    assert real.read == len(EXPECTED) and statuses(store) == SUBSCRIBERS
    assert imap.count(f"{folder}-done") == len(EXPECTED)


def test_imap_login_refused_is_one_clear_error(tmp_path, store, imap):
    from newsletter.bounces import MailboxError

    settings = imap_settings(tmp_path, imap, "INBOX")
    wrong = settings_for(
        tmp_path,
        f'kind = "imap"\nurl = "imaps://127.0.0.1:{imap.port}"\nusername = "{imap.user}"\n'
        f'ca_file = "{imap.ca}"',
        NEWSLETTER_BOUNCES_PASSWORD="wrong",
    )
    with pytest.raises(MailboxError, match=r"IMAP bounces@127\.0\.0\.1:\d+: .*(?i:fail)"):
        run_bounce_check(wrong, store, now=clock)
    untrusted = settings_for(
        tmp_path,
        f'kind = "imap"\nurl = "imaps://127.0.0.1:{imap.port}"\nusername = "{imap.user}"',
        NEWSLETTER_BOUNCES_PASSWORD=imap.password,
    )
    with pytest.raises(MailboxError, match=r"cannot connect: .*certificate verify failed"):
        run_bounce_check(untrusted, store, now=clock)
    assert settings.bounces.kind == "imap"


class CuttingProxy:
    """Relays TCP connections to the IMAP server; the first one is cut once the server has
    sent ``limit`` bytes through it (TLS and all: the proxy cannot read the commands)."""

    def __init__(self, upstream: int, limit: int):
        self.upstream, self.limit = upstream, limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            limit = self.limit if self.connections == 1 else None
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, limit), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(4096):
                if limit is not None and sent + len(data) > limit:
                    dst.sendall(data[: limit - sent])
                    self.cut.set()
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()


def test_imap_connection_cut_mid_batch_loses_nothing_and_counts_nothing_twice(
    tmp_path, store, imap
):
    messages = [p.read_bytes() for p in samples()]
    folder = imap.folder(messages)
    # Past the TLS handshake, login and search, about half-way through the messages.
    proxy = CuttingProxy(imap.port, 8000 + sum(len(m) for m in messages) // 2)
    try:
        first = run_bounce_check(
            imap_settings(tmp_path, imap, folder, proxy.port), store, now=clock
        )
    finally:
        proxy.close()
    assert proxy.cut.is_set() and first.error is not None
    assert "connection was lost" in first.error
    assert 0 < first.read < len(EXPECTED)
    left = imap.count(folder)
    assert 0 < left < len(EXPECTED)
    second = run_bounce_check(imap_settings(tmp_path, imap, folder), store, now=clock)
    assert second.error is None and second.read == left
    total = first.kinds + second.kinds
    assert {k.value: n for k, n in total.items()} == counts_expected()
    assert first.unmatched + second.unmatched == UNMATCHED
    assert sorted(first.bounced + second.bounced) == sorted(
        e for e, s in SUBSCRIBERS.items() if s is S.BOUNCED
    )
    assert statuses(store) == SUBSCRIBERS
    assert recorded_rows(store) == sum(counts_expected().values())
    # The message being moved when the connection went may have been copied without being
    # expunged: it is read again (recorded already) and moved again, so the processed
    # folder can hold it twice.  Never less than everything.
    assert imap.count(folder) == 0
    assert len(EXPECTED) <= imap.count(f"{folder}-done") <= len(EXPECTED) + 1


def recorded_rows(store: Store) -> int:
    import sqlalchemy as sa

    from newsletter.store import schema

    with store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(schema.bounces)).scalar_one()


def test_a_send_then_its_bounces_arrive_in_the_imap_mailbox(
    tmp_path, smtp_server, sample_feeds, imap, dkim_key
):
    """An issue sent through a real SMTP server, each copy from its own return path and
    DKIM-signed; later, real-world reports about some of those messages arrive by IMAP:
    most quote the Message-ID its subscriber got, one quotes nothing and is matched by the
    return path it was sent back to."""
    server = smtp_server()
    day = dt.datetime.now(dt.UTC).date()
    key_file, record = dkim_key
    cfg = tmp_path / "newsletter.toml"
    cfg.write_text(
        f'database_url = "sqlite:///{tmp_path}/send.db"\n'
        '[list]\nfrom_address = "papers@example.org"\nbase_url = "https://papers.example.org"\n'
        '[schedule]\ntimezone = "UTC"\n[fetch]\nwindow_days = 1\n'
        f'[[sources]]\nname = "hf-daily"\npath = "{sample_feeds}/hf-daily.json"\n'
        + server.config(dkim_key_file=str(key_file), dkim_selector="news").replace(
            "[delivery]\n", '[delivery]\nreturn_path = "bounces@example.org"\n'
        )
        + f'[bounces]\nkind = "imap"\nurl = "imaps://127.0.0.1:{imap.port}"\n'
        f'username = "{imap.user}"\nca_file = "{imap.ca}"\nsoft_limit = 2\n'
        'folder = "FOLDER"\nprocessed_folder = "FOLDER-done"\n'
    )
    env = {"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_BOUNCES_PASSWORD": imap.password}
    runner = CliRunner()
    people = ["ada@example.net", "bob@example.net", "cyd@example.net", "dee@example.net"]
    for person in people:
        assert runner.invoke(cli, ["-c", str(cfg), "subscribers", "add", person]).exit_code == 0
    sent = runner.invoke(cli, ["-c", str(cfg), "send", "--date", day.isoformat()], env=env)
    assert sent.exit_code == 0, sent.output
    mids = {r.rcpt_tos[0]: str(r.message["Message-ID"]) for r in server.received}
    assert sorted(mids) == people
    senders = {r.rcpt_tos[0]: r.mail_from for r in server.received}
    with Store.open(f"sqlite:///{tmp_path}/send.db") as store:
        ids = {s.email: s.id for s in store.subscribers()}
    for r in server.received:
        person = r.rcpt_tos[0]
        # The envelope names the subscriber and the issue; the From header is the list's.
        assert parse_return_path("bounces@example.org", SECRET, r.mail_from) == Target(
            ids[person], day
        )
        assert r.message["From"].addresses[0].addr_spec == "papers@example.org"
        assert dkim.verify(r.data, dnsfunc=stub_dns(record)), person
    assert len(set(senders.values())) == 4

    def about(name: str, quoted: str, person: str) -> bytes:
        data = (SAMPLES / name).read_bytes()
        assert quoted.encode() in data
        return data.replace(quoted.encode(), mids[person].encode())

    reports = [
        # A hard bounce (5.1.1) that names another address: the Message-ID says it is Ada.
        about(
            "flufl-dsn_11.eml",
            "<mailman.0.1035637201.19036.mailman-developers@python.org>",
            "ada@example.net",
        ),
        # A complaint through a feedback loop, the recipient redacted: Bob.
        about(
            "sisimai-arf-03.eml",
            "<f6fbba8a761ce682e1b00a323a21b372@example.net>",
            "bob@example.net",
        ),
        # A full mailbox (soft): Dee stays until it happens on soft_limit issues.
        about("flufl-dsn_01.eml", "<F1218V8zDv60gxapzha000001ae@hotmail.com>", "dee@example.net"),
        # An out-of-office reply and a bounce about someone who was never on the list.
        (SAMPLES / "sisimai-rfc3834-03.eml").read_bytes(),
        (SAMPLES / "flufl-exim_01.eml").read_bytes(),
        # The same Exim bounce, quoting nothing of ours, sent back to Cyd's return path.
        _retarget(
            (SAMPLES / "flufl-exim_01.eml").read_bytes(),
            senders["cyd@example.net"],
            "exim-again@mx.example",
        ),
    ]
    folder = imap.folder(reports)
    cfg.write_text(cfg.read_text().replace("FOLDER", folder))
    checked = runner.invoke(cli, ["-c", str(cfg), "bounces", "check"], env=env)
    assert checked.exit_code == 0, checked.output
    assert (
        "read 6 message(s): hard bounces 3, soft bounces 1, complaints 1, auto-replies "
        "ignored 1, delay warnings ignored 0, other reports 0, unrecognised 0; unmatched 1;"
    ) in checked.output
    assert "marked bounced: ada@example.net, cyd@example.net" in checked.output
    assert "unsubscribed (complaint): bob@example.net" in checked.output
    with Store.open(f"sqlite:///{tmp_path}/send.db") as store:
        assert statuses(store) == {
            "ada@example.net": S.BOUNCED,
            "bob@example.net": S.UNSUBSCRIBED,
            "cyd@example.net": S.BOUNCED,
            "dee@example.net": S.ACTIVE,
        }
        issue = store.issue(day)
        assert issue is not None
        assert store.bounce_counts([issue.id]) == {issue.id: {"hard": 2, "soft": 1, "complaint": 1}}
    assert imap.count(folder) == 0 and imap.count(f"{folder}-done") == 6
    bounced = runner.invoke(cli, ["-c", str(cfg), "subscribers", "list", "--status", "bounced"])
    assert [w[0] for w in map(str.split, bounced.output.splitlines()) if w and "@" in w[0]] == [
        "ada@example.net",
        "cyd@example.net",
    ]
    shown = runner.invoke(cli, ["-c", str(cfg), "status"], env=env)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "subscribers: 0 pending, 1 active, 1 unsubscribed, 2 bounced" in lines
    header = next(line.split() for line in lines if line.startswith("ISSUE"))
    assert header[-3:] == ["DOUBT", "BOUNCES", "COMPLAINTS"]
    row = next(line.split() for line in lines if line.startswith(day.isoformat()))
    # sent 4 of 4; later: ada and cyd hard, dee soft (3 bounces), bob's complaint (1)
    assert row[1] == "daily" and row[4:6] == ["4", "4"] and row[-2:] == ["3", "1"], shown.output


# --------------------------------------------------------------------------- DKIM


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory) -> tuple[Path, bytes]:
    """A 2048-bit RSA key file and its DNS TXT record."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("dkim") / "news.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def stub_dns(record: bytes, name: bytes = b"news._domainkey.example.org."):
    """dkimpy's dnsfunc: the TXT record for our selector, nothing for any other name."""

    def lookup(qname: bytes, timeout: int = 5) -> bytes | None:
        return record if qname == name else None

    return lookup


def issue_message() -> bytes:
    """One subscriber's real message, as delivery builds it."""
    from newsletter.delivery.message import MessageTemplate
    from newsletter.models import Subscriber
    from newsletter.render import render_issue
    from newsletter.render.sample import sample_digest

    settings = load_settings(None, env={})
    issue = render_issue(sample_digest(40), settings)
    template = MessageTemplate(
        settings,
        subject=issue.subject,
        html=issue.html,
        text=issue.text,
        date=T0,
        secret=SECRET,
        issue_date=T0.date(),
    )
    sub = Subscriber(7, "zoe@example.net", "Zoë Ñandú", S.ACTIVE, T0, T0)
    return template.render(sub)[1]


def test_dkim_signature_verifies_with_dkimpy(dkim_key):
    from newsletter.delivery.dkim import DkimSigner

    path, record = dkim_key
    signer = DkimSigner(path, "news", "example.org")
    message = issue_message()
    signed = signer.sign(message, now=T0)
    assert signed.endswith(message) and signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert dkim.verify(signed, dnsfunc=stub_dns(record))
    sig = dkim.util.parse_tag_value(
        signed.split(b"\r\nFrom:")[0].partition(b":")[2].replace(b"\r\n", b"")
    )
    signed_names = [h.strip() for h in sig[b"h"].split(b":")]
    for name in (b"list-unsubscribe", b"list-unsubscribe-post", b"from", b"subject"):
        assert signed_names.count(name) == 2  # once, and once more so none can be added
    assert sig[b"t"] == str(int(T0.timestamp())).encode()
    assert signer.sign(message, now=T0) == signed  # deterministic
    # What a receiver must refuse: changed body, changed or added header, wrong key.
    head, _, body = signed.partition(b"\r\n\r\n")
    dns = stub_dns(record)
    assert not dkim.verify(head + b"\r\n\r\n" + body.replace(b"a", b"b", 1), dnsfunc=dns)
    assert not dkim.verify(signed.replace(b"Subject: ", b"Subject: FW: ", 1), dnsfunc=dns)
    added = head + b"\r\nList-Unsubscribe-Post: List-Unsubscribe=Nope\r\n\r\n" + body
    assert not dkim.verify(added, dnsfunc=dns)
    other = DkimSigner(path, "other", "example.org").sign(message, now=T0)
    assert not dkim.verify(other, dnsfunc=stub_dns(record))


@pytest.mark.parametrize(
    "body", [b"", b"\r\n\r\n", b"one line", b"text\r\n\r\n\r\n", b"  spaced  \r\nout\t\r\n"]
)
def test_dkim_bodies_and_line_endings(dkim_key, body):
    from newsletter.delivery.dkim import DkimSigner

    path, record = dkim_key
    signer = DkimSigner(path, "news", "example.org")
    head = b"From: Papers <papers@example.org>\r\nTo: a@example.net\r\nSubject: x\r\n\r\n"
    assert dkim.verify(signer.sign(head + body, now=T0), dnsfunc=stub_dns(record))
    lf = signer.sign((head + body).replace(b"\r\n", b"\n"), now=T0)
    assert b"\n" not in lf.replace(b"\r\n", b"") and dkim.verify(lf, dnsfunc=stub_dns(record))


def test_dkim_key_problems_name_the_setting(tmp_path, dkim_key):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from newsletter.delivery.dkim import DkimSigner, signer_from_settings

    with pytest.raises(ConfigError, match=r"smtp\.dkim_key_file: cannot read"):
        DkimSigner(tmp_path / "missing.pem", "news", "example.org")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        DkimSigner(tmp_path / "junk.pem", "news", "example.org")
    # cryptography will not make a 512-bit key any more; OpenSSL still does.
    subprocess.run(
        ["openssl", "genrsa", "-out", str(tmp_path / "short.pem"), "512"],
        check=True,
        capture_output=True,
    )
    (tmp_path / "ec.pem").write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for name in ("short.pem", "ec.pem"):
        with pytest.raises(ConfigError, match="expected an RSA key of at least 1024 bits"):
            DkimSigner(tmp_path / name, "news", "example.org")
    assert signer_from_settings(load_settings(None, env={})) is None
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[list]\nfrom_address = "papers@example.org"\n'
        f'[smtp]\ndkim_key_file = "{dkim_key[0]}"\ndkim_selector = "news"\n'
    )
    signer = signer_from_settings(load_settings(cfg, env={}))
    assert signer is not None and (signer.domain, signer.selector) == ("example.org", "news")
