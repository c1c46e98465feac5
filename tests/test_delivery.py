"""Delivery through a real SMTP server (aiosmtpd on 127.0.0.1) and the outbox, with the ledger."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import both_backends
from smtp_server import Faults, Handler

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.lock import LockHeld, hold_lock
from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.pipeline import run_send
from newsletter.store import Store, schema
from newsletter.tokens import verify

pytestmark = both_backends

SECRET = "test-secret-key-0123456789abcdef"
ENV = {"NEWSLETTER_SECRET_KEY": SECRET}
DAY = dt.datetime.now(dt.UTC).date()  # papers count for the day they are first seen; see today


@pytest.fixture(autouse=True)
def today(monkeypatch):
    """DAY is read as each test starts, not when the module is imported: a run that crosses
    midnight would otherwise send yesterday's issue while the papers were first seen today.
    A test that would start in the last minute of a day waits for the next one."""
    now = dt.datetime.now(dt.UTC)
    tomorrow = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    if (tomorrow - now).total_seconds() < 60:
        time.sleep((tomorrow - now).total_seconds() + 0.1)
    monkeypatch.setattr(sys.modules[__name__], "DAY", dt.datetime.now(dt.UTC).date())


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    """Retries keep their order and count; the waits between them shrink."""
    from newsletter.delivery import policy

    monkeypatch.setattr(policy, "BACKOFF", 0.01)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def base_config(sample_feeds: Path, extra: str = "") -> str:
    return f"""
[list]
name = "Lab Papers"
id = "lab-papers.example.org"
from_name = "Lab Papers — Ünïcode"
from_address = "papers@example.org"
base_url = "https://papers.example.org"
[schedule]
timezone = "UTC"
on_empty = "skip"
[fetch]
window_days = 1
[[sources]]
name = "hf-daily"
path = "{sample_feeds}/hf-daily.json"
{extra}
"""


@pytest.fixture
def setup(write_config, sample_feeds, tmp_path):
    """A config with the bundled sample feeds plus a way to add SMTP settings and subscribers."""

    def make(extra: str = "", subscribers: int = 5, names: dict[str, str] | None = None):
        path = write_config(base_config(sample_feeds) + extra)
        settings = load_settings(path, env=ENV)
        with Store.open(settings.database_url) as store:
            rows = [(f"reader{i:03d}@example.org", "") for i in range(subscribers)]
            rows += list((names or {}).items())
            store.import_subscribers(rows, now=now())
        return path, settings

    return make


def send(path: Path, *args: str, env: dict | None = None):
    result = CliRunner().invoke(
        cli, ["-c", str(path), "send", "--date", DAY.isoformat(), *args], env=env or ENV
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug: show its traceback
    return result


def ledger(settings) -> dict[str, str]:
    with Store.open(settings.database_url) as store, store.read() as conn:
        d, s = schema.deliveries, schema.subscribers
        rows = conn.execute(
            sa.select(s.c.email, d.c.status).join_from(d, s, s.c.id == d.c.subscriber_id)
        ).all()
        return {r.email: r.status for r in rows}


# --------------------------------------------------------------------------- messages


def test_each_subscriber_gets_one_well_formed_message(setup, smtp_server):
    server = smtp_server()
    path, settings = setup(
        server.config(), subscribers=3, names={"zoe@example.org": "Zoë Ñandú\r\nBcc: evil@x.org"}
    )
    r = send(path)
    assert r.exit_code == 0, r.output
    assert "sent 4, failed 0" in r.stdout
    got = server.handler.by_rcpt()
    assert sorted(got) == [
        "reader000@example.org",
        "reader001@example.org",
        "reader002@example.org",
        "zoe@example.org",
    ]
    assert all(len(v) == 1 for v in got.values())

    raw = got["zoe@example.org"][0].data
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert b"Bcc:" not in raw.split(b"\r\n\r\n")[0]  # a CR/LF in a name never makes a header
    msg = got["zoe@example.org"][0].message
    assert msg["To"].addresses[0].display_name == "Zoë Ñandú Bcc: evil@x.org"
    assert msg["From"].addresses[0].display_name == "Lab Papers — Ünïcode"
    assert msg["From"].addresses[0].addr_spec == "papers@example.org"
    assert msg["List-Id"] == "Lab Papers <lab-papers.example.org>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Subject"].startswith(f"Lab Papers — {DAY.isoformat()}: ")
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in msg.iter_parts())

    # The unsubscribe link carries a token that verifies for this subscriber only.
    https, mailto = [u.strip(" <>") for u in msg["List-Unsubscribe"].split(",")]
    assert https.startswith("https://papers.example.org/unsubscribe/")
    assert mailto.startswith("mailto:papers@example.org?subject=unsubscribe%20")
    token = https.rsplit("/", 1)[1]
    with Store.open(settings.database_url) as store:
        zoe = store.subscriber("zoe@example.org")
    assert verify(SECRET, "unsubscribe", token, now=time.time()) == str(zoe.id)
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert https in html and https in text
    assert "%%NL_" not in html and "%%NL_" not in text

    # The Message-ID is stable for (issue, subscriber): a preview for the same pair agrees.
    mids = {m[0].message["Message-ID"] for m in got.values()}
    assert len(mids) == 4 and all(m.endswith("@example.org>") for m in mids)


def test_rerun_sends_nobody_twice_and_status_shows_it(setup, smtp_server):
    server = smtp_server()
    path, _settings = setup(server.config(), subscribers=4)
    assert send(path).exit_code == 0
    again = send(path)
    assert again.exit_code == 0
    assert "already sent to everyone" in again.stdout
    assert len(server.received) == 4
    row = status_table(path)[DAY.isoformat()]
    assert row[:3] == [DAY.isoformat(), "daily", "sent"] and row[4:7] == ["4", "4", "0"]


def test_subscribers_added_later_get_the_issue_on_the_next_run(setup, smtp_server):
    server = smtp_server()
    path, _settings = setup(server.config(), subscribers=2)
    assert send(path).exit_code == 0
    CliRunner().invoke(cli, ["-c", str(path), "subscribers", "add", "late@example.org"], env=ENV)
    r = send(path)
    assert "sent 1" in r.stdout
    assert sorted(server.handler.by_rcpt()) == [
        "late@example.org",
        "reader000@example.org",
        "reader001@example.org",
    ]


def test_unsubscribed_are_never_mailed(setup, smtp_server):
    server = smtp_server()
    path, _settings = setup(server.config(), subscribers=3)
    CliRunner().invoke(
        cli, ["-c", str(path), "subscribers", "remove", "reader001@example.org"], env=ENV
    )
    assert send(path).exit_code == 0
    assert sorted(server.handler.by_rcpt()) == ["reader000@example.org", "reader002@example.org"]


# --------------------------------------------------------------------------- TLS and login


def test_starttls_and_login(setup, smtp_server, tls_ca, tmp_path):
    ca, cert = tls_ca
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = smtp_server(tls="starttls", cert=cert, users={"sender": "s3cret"})
    path, _settings = setup(server.config(username="sender", ca_file=str(ca_file)), subscribers=3)
    r = send(path, env=ENV | {"NEWSLETTER_SMTP_PASSWORD": "s3cret"})
    assert r.exit_code == 0, r.output
    assert len(server.received) == 3


# aiosmtpd warns that AUTH without required TLS is unsafe; its notion of TLS does not
# include implicit TLS, which is what this server uses.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_implicit_tls(setup, smtp_server, tls_ca, tmp_path):
    ca, cert = tls_ca
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = smtp_server(tls="tls", cert=cert, users={"sender": "pw"})
    path, _ = setup(server.config(username="sender", ca_file=str(ca_file)), subscribers=2)
    r = send(path, env=ENV | {"NEWSLETTER_SMTP_PASSWORD": "pw"})
    assert r.exit_code == 0, r.output
    assert len(server.received) == 2


def test_untrusted_certificate_stops_before_anyone_is_mailed(setup, smtp_server, tls_ca):
    _, cert = tls_ca
    server = smtp_server(tls="starttls", cert=cert)
    path, _settings = setup(server.config(), subscribers=2)
    r = send(path)
    assert r.exit_code == 1
    assert "TLS with 127.0.0.1" in r.stderr and "certificate verify failed" in r.stderr
    assert server.received == []
    assert set(ledger(_settings).values()) == {DeliveryStatus.QUEUED.value}


def test_wrong_password_stops_and_a_rerun_resumes(setup, smtp_server, tls_ca, tmp_path):
    ca, cert = tls_ca
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = smtp_server(tls="starttls", cert=cert, users={"sender": "right"})
    path, _settings = setup(server.config(username="sender", ca_file=str(ca_file)), subscribers=3)
    bad = send(path, env=ENV | {"NEWSLETTER_SMTP_PASSWORD": "wrong"})
    assert bad.exit_code == 1
    assert "refused the login for 'sender'" in bad.stderr
    assert "run `newsletter send` again to resume" in bad.stderr
    assert server.received == []
    good = send(path, env=ENV | {"NEWSLETTER_SMTP_PASSWORD": "right"})
    assert good.exit_code == 0, good.output
    assert len(server.received) == 3


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_a_login_without_the_password_is_named_before_anything_is_sent(setup, smtp_server):
    """smtp.username set, NEWSLETTER_SMTP_PASSWORD unset: `config check` and `send` name the
    missing variable, instead of passing and then reporting a refused login."""
    server = smtp_server(users={"sender": "right"})
    path, settings = setup(server.config(username="sender"), subscribers=2)
    check = CliRunner().invoke(cli, ["-c", str(path), "config", "check"], env=ENV)
    assert check.exit_code == 2, check.output
    assert "smtp.username is set ('sender') but NEWSLETTER_SMTP_PASSWORD is not" in check.stderr
    r = send(path)
    assert r.exit_code == 2, r.output
    assert "NEWSLETTER_SMTP_PASSWORD is not" in r.stderr and "refused" not in r.stderr
    assert server.received == []
    with Store.open(settings.database_url) as store:
        assert store.issues() == []  # stopped before fetching and rendering
    ok = send(path, env=ENV | {"NEWSLETTER_SMTP_PASSWORD": "right"})
    assert ok.exit_code == 0, ok.output


INTERNATIONAL = {"zoë@example.org": "Zoë", "ana@bücher.example": "Ana"}


def add_international(settings) -> None:
    """Addresses as the normaliser keeps them: a non-ASCII local part, a Unicode domain."""
    with Store.open(settings.database_url) as store:
        for email_, name in INTERNATIONAL.items():
            store.add_subscriber(email_, name, now=now())


def test_international_addresses_through_a_server_with_smtputf8(setup, smtp_server):
    server = smtp_server(smtputf8=True)
    path, settings = setup(server.config(), subscribers=2)
    add_international(settings)
    r = send(path)
    assert r.exit_code == 0, r.output
    got = server.handler.by_rcpt()
    # The domain goes as its A-label (IDNA 2008); the local part as UTF-8 under SMTPUTF8.
    assert sorted(got) == [
        "ana@xn--bcher-kva.example",
        "reader000@example.org",
        "reader001@example.org",
        "zoë@example.org",
    ]
    zoe = got["zoë@example.org"][0].data
    assert "<zoë@example.org>".encode() in zoe.split(b"\r\n\r\n")[0]
    ana = got["ana@xn--bcher-kva.example"][0].data
    assert b"<ana@xn--bcher-kva.example>" in ana.split(b"\r\n\r\n")[0]
    assert set(ledger(settings).values()) == {"sent"}


def test_a_non_ascii_local_part_without_smtputf8_fails_saying_why(setup, smtp_server):
    server = smtp_server(smtputf8=False)
    path, settings = setup(server.config(), subscribers=2)
    add_international(settings)
    r = send(path)
    assert r.exit_code == 1, r.output
    assert "sent 3, failed 1" in r.stdout
    assert re.search(r"zoë@example.org: .*does not offer SMTPUTF8", r.stderr), r.stderr
    assert sorted(server.handler.by_rcpt()) == [
        "ana@xn--bcher-kva.example",
        "reader000@example.org",
        "reader001@example.org",
    ]
    assert ledger(settings)["zoë@example.org"] == "failed"
    with Store.open(settings.database_url) as store:  # the address is fine: not a bounce
        assert store.subscriber("zoë@example.org").status is SubscriberStatus.ACTIVE


def test_unreachable_server(setup):
    from smtp_server import free_port

    path, settings = setup(
        f'[delivery]\ntransport = "smtp"\n[smtp]\nhost = "127.0.0.1"\nport = {free_port()}\ntls = "none"\ntimeout = 2\n'
    )
    r = send(path)
    assert r.exit_code == 1
    assert "cannot connect to 127.0.0.1" in r.stderr
    assert set(ledger(settings).values()) == {DeliveryStatus.QUEUED.value}


def test_missing_secret_key_is_a_config_error(setup, smtp_server):
    server = smtp_server()
    path, _ = setup(server.config())
    r = send(path, env={"NEWSLETTER_SECRET_KEY": ""})
    assert r.exit_code == 2 and "NEWSLETTER_SECRET_KEY is not set" in r.stderr
    assert server.received == []


# --------------------------------------------------------------------------- faults


def test_faults_are_retried_recorded_and_bounced(setup, smtp_server, monkeypatch):
    from newsletter.delivery import policy

    monkeypatch.setattr(policy, "MAX_ATTEMPTS", 3)
    faults = Faults(
        mail=["421 4.3.2 try again later"],
        rcpt={
            "reader001@example.org": ["550 5.1.1 no such user"],
            "reader002@example.org": ["452 4.2.2 mailbox full"],
        },
        data={
            "reader003@example.org": ["451 4.3.0 temporary", "451 4.3.0 temporary", None],
            "reader004@example.org": ["554 5.7.1 rejected as spam"],
            "reader005@example.org": ["DISCONNECT", None],
        },
    )
    server = smtp_server(Handler(faults))
    path, settings = setup(server.config(), subscribers=7)
    r = send(path)
    assert r.exit_code == 1, r.output
    got = server.handler.by_rcpt()
    assert sorted(got) == [
        "reader000@example.org",
        "reader003@example.org",
        "reader005@example.org",
        "reader006@example.org",
    ]
    assert all(len(v) == 1 for v in got.values())
    assert "sent 4, failed 2, deferred 1, skipped 0, in doubt 1" in r.stdout
    assert "reader001@example.org: 550 5.1.1 no such user" in r.stderr
    states = ledger(settings)
    assert states["reader001@example.org"] == "failed"
    assert states["reader002@example.org"] == "deferred"
    assert states["reader004@example.org"] == "failed"
    with Store.open(settings.database_url) as store:
        assert store.subscriber("reader001@example.org").status is SubscriberStatus.BOUNCED
        assert store.subscriber("reader004@example.org").status is SubscriberStatus.ACTIVE
    status = CliRunner().invoke(
        cli, ["-c", str(path), "status", "--date", DAY.isoformat()], env=ENV
    )
    assert (
        "deferred: reader002@example.org: 452 4.2.2 mailbox full (after RCPT TO)" in status.stdout
    )

    # --retry-failed resends only the transient failure.
    faults.rcpt.pop("reader002@example.org")
    retry = send(path, "--retry-failed")
    assert retry.exit_code == 0, retry.output  # this run failed nobody
    assert "sent 1, failed 0" in retry.stdout and "issue total: 5 of 7 sent" in retry.stdout
    assert len(server.handler.by_rcpt()["reader002@example.org"]) == 1


def status_table(path: Path, *args: str) -> dict[str, list[str]]:
    """`newsletter status` rows by issue date, and its other lines under "lines"."""
    r = CliRunner().invoke(cli, ["-c", str(path), "status", *args], env=ENV)
    assert r.exit_code == 0, r.output
    rows: dict[str, list[str]] = {"lines": r.stdout.splitlines()}
    for line in r.stdout.splitlines():
        cells = line.split()
        if cells and re.fullmatch(r"\d{4}-\d\d-\d\d", cells[0]):
            rows[cells[0]] = cells
    return rows


def test_a_resend_after_a_drop_in_data_is_in_doubt_in_the_ledger_too(setup, smtp_server):
    """The server kept the message but the connection dropped before its reply: the resend
    in the same run is a possible duplicate, and the summary, the ledger and `status` all
    say so."""
    victim = "reader001@example.org"
    handler = Handler(Faults(data={victim: ["DISCONNECT", None]}, deliver_before_disconnect=True))
    server = smtp_server(handler)
    path, settings = setup(server.config(), subscribers=3)
    r = send(path)
    assert r.exit_code == 0, r.output
    assert len(server.handler.by_rcpt()[victim]) == 2
    assert "sent 3, failed 0, deferred 0, skipped 0, in doubt 1" in r.stdout
    with Store.open(settings.database_url) as store, store.read() as conn:
        d, s = schema.deliveries, schema.subscribers
        flagged = (
            conn.execute(
                sa.select(s.c.email)
                .join_from(d, s, s.c.id == d.c.subscriber_id)
                .where(d.c.in_doubt)
            )
            .scalars()
            .all()
        )
    assert flagged == [victim]
    row = status_table(path)[DAY.isoformat()]
    assert row[2] == "sent" and row[4:10] == ["3", "3", "0", "0", "0", "1"]


def test_a_plain_send_after_deferrals_says_what_is_left_and_how_to_retry(setup, smtp_server):
    faults = Faults(
        rcpt={
            "reader001@example.org": ["550 5.1.1 no such user"],
            "reader002@example.org": ["452 4.2.2 mailbox full"],
        }
    )
    server = smtp_server(Handler(faults))
    path, _settings = setup(server.config(), subscribers=4)
    first = send(path)
    assert first.exit_code == 1
    assert "sent 2, failed 1, deferred 1" in first.stdout
    # The issue is not "sent" while a deferred row can still be retried.
    assert status_table(path)[DAY.isoformat()][2] == "deferred"

    again = send(path)
    assert again.exit_code == 1, again.output
    assert "already sent to everyone" not in again.output
    assert "1 deferred" in again.output and "--retry-failed" in again.output
    assert len(server.received) == 2  # nobody mailed twice

    faults.rcpt.pop("reader002@example.org")
    retry = send(path, "--retry-failed")
    assert retry.exit_code == 0, retry.output
    row = status_table(path)[DAY.isoformat()]
    assert row[2] == "sent" and row[5:8] == ["3", "1", "0"]


def test_the_problem_list_says_how_many_it_leaves_out(setup, smtp_server):
    faults = Faults(
        rcpt={f"reader{i:03d}@example.org": ["550 5.1.1 no such user"] for i in range(25)}
    )
    server = smtp_server(Handler(faults))
    path, _settings = setup(server.config(), subscribers=26)
    r = send(path)
    assert r.exit_code == 1
    listed = [line for line in r.stderr.splitlines() if "no such user" in line]
    assert len(listed) == 20
    assert "and 5 more" in r.stderr and "newsletter status --date" in r.stderr
    status = status_table(path, "--date", DAY.isoformat())["lines"]
    assert len([line for line in status if "no such user" in line]) == 25


def test_a_transient_failure_does_not_hold_up_the_list(setup, smtp_server, monkeypatch):
    """One connection; the first subscriber gets a 451: the connection moves on to the
    others and comes back to it when its retry is due."""
    from newsletter.delivery import policy

    monkeypatch.setattr(policy, "BACKOFF", 0.5)
    faults = Faults(rcpt={"reader000@example.org": ["451 4.3.0 try again later", None]})
    server = smtp_server(Handler(faults))
    path, _settings = setup(server.config(connections=1), subscribers=6)
    r = send(path)
    assert r.exit_code == 0, r.output
    order = [m.rcpt_tos[0] for m in server.received]
    assert order == [f"reader00{i}@example.org" for i in (1, 2, 3, 4, 5, 0)]


def test_full_mailboxes_are_retried_side_by_side_not_one_after_another(
    setup, smtp_server, monkeypatch
):
    """`--retry-failed` on mailboxes that stay full: each gets its tries, and the waits
    between them overlap instead of adding up (the first tries of all, then the second
    tries of all, ...), so the run takes about one retry schedule."""
    from newsletter.delivery import policy

    monkeypatch.setattr(policy, "BACKOFF", 0.2)
    full = [f"reader00{i}@example.org" for i in range(5)]
    faults = Faults(rcpt={a: ["452 4.2.2 mailbox full"] for a in full})
    server = smtp_server(Handler(faults))
    path, settings = setup(server.config(connections=1), subscribers=6)
    assert send(path).exit_code == 1
    server.handler.rcpt_order.clear()
    retry = send(path, "--retry-failed")
    assert retry.exit_code == 1
    assert "sent 0, failed 0, deferred 5" in retry.stdout
    tries = [a for a in server.handler.rcpt_order if a in full]
    assert len(tries) == 3 * len(full)
    for k in range(3):  # round k holds the k-th try of every address
        assert sorted(tries[5 * k : 5 * k + 5]) == full, tries
    assert {e: st for e, st in ledger(settings).items() if e in full} == dict.fromkeys(
        full, "deferred"
    )


def test_connections_beyond_the_servers_limit_are_dropped_not_fatal(setup, smtp_server):
    """smtp.connections = 4 against a relay that takes 2 at once: the two refused senders
    give up (with a warning that says why) and the other two mail everyone."""
    server = smtp_server(max_sessions=2)
    path, settings = setup(server.config(connections=4), subscribers=30)
    r = send(path)
    assert r.exit_code == 0, r.output
    assert "421 4.7.0 Too many concurrent connections" in r.stderr
    assert "going on with the other connections" in r.stderr
    got = server.handler.by_rcpt()
    assert len(got) == 30 and all(len(v) == 1 for v in got.values())
    assert set(ledger(settings).values()) == {"sent"}


def test_progress_is_logged_when_nobody_watches_a_terminal(setup, smtp_server, monkeypatch):
    """Without a terminal (cron, a log file) `-v send` logs a progress line every few
    seconds."""
    import newsletter.delivery as delivery

    monkeypatch.setattr(delivery, "PROGRESS_EVERY", 0.2)
    faults = Faults(delay=0.02, rcpt={"reader003@example.org": ["550 5.1.1 no such user"]})
    server = smtp_server(Handler(faults))
    path, _settings = setup(server.config(connections=2), subscribers=40)
    day = DAY.isoformat()
    r = CliRunner().invoke(cli, ["-v", "-c", str(path), "send", "--date", day], env=ENV)
    assert r.exit_code == 1, r.output
    lines = re.findall(
        rf"issue {day}: (\d+) of 40 sent, (\d+) failed, 0 deferred, (\d+) to go; "
        r"[\d.]+ msg/s, ETA (?:\d+ s|\d+ min \d\d s|unknown)$",
        r.stderr,
        re.M,
    )
    assert len(lines) >= 2, r.stderr
    assert any(0 < int(sent) < 39 and int(left) > 0 for sent, _f, left in lines), lines


def test_progress_lines_in_the_json_log_carry_their_counts_as_keys(setup, smtp_server, monkeypatch):
    import json

    import newsletter.delivery as delivery

    monkeypatch.setattr(delivery, "PROGRESS_EVERY", 0.2)
    server = smtp_server(Handler(Faults(delay=0.02)))
    path, _settings = setup(server.config(connections=2), subscribers=41)
    day = DAY.isoformat()
    r = CliRunner().invoke(
        cli, ["--log-format", "json", "-v", "-c", str(path), "send", "--date", day], env=ENV
    )
    assert r.exit_code == 0, r.output
    docs = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    progress = [d for d in docs if "eta_seconds" in d]
    assert progress, r.stderr
    for doc in progress:
        assert doc["issue"] == day and doc["recipients"] == 41
        assert all(isinstance(doc[k], int) for k in ("sent", "failed", "deferred", "pending"))
        assert isinstance(doc["rate"], float)
        assert doc["event"].startswith(f"issue {day}: {doc['sent']} of 41 sent")


def test_slow_server_within_the_timeout(setup, smtp_server):
    server = smtp_server(Handler(Faults(delay=0.3)))
    path, _ = setup(server.config(), subscribers=2)
    assert send(path).exit_code == 0
    assert len(server.received) == 2


def test_connection_reuse_cap_and_parallel_connections(setup, smtp_server):
    server = smtp_server()
    path, _ = setup(server.config(max_per_connection=4, connections=3), subscribers=25)
    assert send(path).exit_code == 0
    got = server.handler.by_rcpt()
    assert len(got) == 25 and all(len(v) == 1 for v in got.values())
    per_session: dict[int, int] = {}
    for m in server.received:
        per_session[m.session] = per_session.get(m.session, 0) + 1
    assert max(per_session.values()) <= 4
    assert len(per_session) >= 7  # 25 messages, at most 4 per connection


def test_rate_limit(setup, smtp_server):
    server = smtp_server()
    path, _ = setup(server.config(rate_limit=20.0), subscribers=10)
    start = time.monotonic()
    assert send(path).exit_code == 0
    assert time.monotonic() - start >= 0.45  # 10 messages at 20/s


# --------------------------------------------------------------------------- the ledger


def test_crash_leftovers_are_resent_in_doubt_with_the_same_message_id(setup, smtp_server):
    server = smtp_server()
    path, settings = setup(server.config(), subscribers=4)
    assert send(path, "--limit", "2").exit_code == 1  # stopped after --limit: resumable
    assert len(server.received) == 2
    first = {m.rcpt_tos[0]: m.message["Message-ID"] for m in server.received}
    # Pretend the process died in DATA for one sent row and after claiming another.
    with Store.open(settings.database_url) as store, store.write() as conn:
        d, s = schema.deliveries, schema.subscribers
        sent_id = conn.execute(s.select().where(s.c.email == "reader000@example.org")).one().id
        queued_id = conn.execute(s.select().where(s.c.email == "reader003@example.org")).one().id
        conn.execute(d.update().where(d.c.subscriber_id == sent_id).values(status="sending"))
        conn.execute(
            d.update()
            .where(d.c.subscriber_id == queued_id)
            .values(status="claimed", claimed_by="dead:1")
        )
    r = send(path)
    assert r.exit_code == 0, r.output
    assert "in doubt 1" in r.stdout
    got = server.handler.by_rcpt()
    assert all(len(got[f"reader00{i}@example.org"]) == 1 for i in (1, 2, 3))
    copies = got["reader000@example.org"]
    assert len(copies) == 2 and copies[1].message["Message-ID"] == first["reader000@example.org"]


def test_a_second_sender_is_told_who_holds_the_lock(setup, smtp_server):
    server = smtp_server()
    path, settings = setup(server.config(), subscribers=2)
    with Store.open(settings.database_url) as store, hold_lock(store.engine, "send"):
        r = send(path)
        assert r.exit_code == 1
        assert re.search(r"another newsletter process is sending: .*pid \d+", r.stderr)
        with pytest.raises(LockHeld):
            run_send(settings, store, issue_date=DAY, now=now)
        status = CliRunner().invoke(cli, ["-c", str(path), "status"], env=ENV)
        assert re.search(r"sending now: .*pid \d+", status.stdout)
    assert server.received == []
    assert send(path).exit_code == 0


def test_dry_run_and_test_copy_leave_the_ledger_alone(setup, smtp_server):
    server = smtp_server()
    path, settings = setup(server.config(), subscribers=3)
    dry = send(path, "--dry-run")
    assert dry.exit_code == 0 and "3 message(s) built" in dry.stdout
    assert server.received == []
    copy = send(path, "--to", "Editor@Example.ORG")
    assert copy.exit_code == 0, copy.output
    assert [m.rcpt_tos for m in server.received] == [["editor@example.org"]]
    with Store.open(settings.database_url) as store:
        assert store.issues() == []
    bad = send(path, "--to", "not-an-address")
    assert bad.exit_code == 1 and "must have an @-sign" in bad.stderr


def test_without_a_return_path_bounces_go_to_the_lists_address(setup, smtp_server):
    server = smtp_server()
    path, settings = setup(server.config(), subscribers=2)
    assert send(path).exit_code == 0
    assert send(path, "--to", "editor@example.org").exit_code == 0
    assert [r.mail_from for r in server.received] == [settings.list.from_address] * 3


def test_each_copy_has_a_return_path_naming_its_subscriber_and_issue(setup, smtp_server):
    """delivery.return_path: every copy (test copies too) is sent from a return path of
    its own; the From header stays the list's."""
    from newsletter.bounces.verp import Target, parse_return_path

    server = smtp_server()
    base = "bounces@lists.example.org"
    config = server.config().replace("[delivery]\n", f'[delivery]\nreturn_path = "{base}"\n')
    path, settings = setup(config, subscribers=2)
    assert send(path).exit_code == 0
    assert send(path, "--to", "editor@example.org").exit_code == 0
    with Store.open(settings.database_url) as store:
        ids = {s.email: s.id for s in store.subscribers()}
    ids["editor@example.org"] = 0  # a test copy: on nobody's ledger row
    assert sorted(r.rcpt_tos[0] for r in server.received) == sorted(ids)
    for r in server.received:
        assert r.mail_from.startswith("bounces+") and r.mail_from.endswith("@lists.example.org")
        assert parse_return_path(base, ENV["NEWSLETTER_SECRET_KEY"], r.mail_from) == Target(
            ids[r.rcpt_tos[0]], DAY
        )
        assert r.message["From"].addresses[0].addr_spec == settings.list.from_address


def test_outbox_transport_writes_one_file_per_subscriber(setup, tmp_path):
    path, _settings = setup(
        '[delivery]\ntransport = "outbox"\noutbox_dir = "mail"\n', subscribers=3
    )
    assert send(path).exit_code == 0
    files = sorted((tmp_path / "mail" / DAY.isoformat()).glob("*.eml"))
    assert [f.name for f in files] == [f"reader00{i}@example.org.eml" for i in range(3)]
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "reader000@example.org"


def test_an_empty_day_sends_nothing(write_config, tmp_path):
    empty = tmp_path / "empty.xml"
    empty.write_text(
        '<?xml version="1.0"?><rss version="2.0" xmlns:arxiv="http://arxiv.org/schemas/atom"><channel><title>cs updates on arXiv.org</title><link>http://rss.arxiv.org/rss/cs</link><description>x</description></channel></rss>'
    )
    path = write_config(
        f'[schedule]\ntimezone = "UTC"\n[[sources]]\nname = "a"\nkind = "arxiv-rss"\npath = "{empty}"\n'
    )
    settings = load_settings(path, env=ENV)
    with Store.open(settings.database_url) as store:
        store.add_subscriber("a@example.org", "", now=now())
    r = send(path)
    assert r.exit_code == 0 and "no new papers; nothing sent" in r.stdout


def test_every_source_failing_is_a_failure(write_config, tmp_path):
    path = write_config(f'[[sources]]\nname = "a"\npath = "{tmp_path}/missing.xml"\n')
    r = send(path)
    assert r.exit_code == 1 and "every source failed" in r.stderr and "no such file" in r.stderr


def test_send_deletes_sign_ups_never_confirmed(setup):
    from newsletter.store.signup import CONFIRM_DAYS

    path, settings = setup('[delivery]\ntransport = "outbox"\n', subscribers=2)
    with Store.open(settings.database_url) as store:
        long_ago = now() - dt.timedelta(days=2 * CONFIRM_DAYS + 1)
        store.add_pending("never@example.org", "", now=long_ago)
        store.add_pending("recent@example.org", "", now=now())
    r = CliRunner().invoke(cli, ["-v", "-c", str(path), "send", "--date", DAY.isoformat()], env=ENV)
    assert r.exit_code == 0, r.output
    assert "deleted 1 web sign-up(s) never confirmed" in r.stderr
    with Store.open(settings.database_url) as store:
        assert store.subscriber("never@example.org") is None
        pending = store.subscriber("recent@example.org")
        assert pending is not None and pending.status is SubscriberStatus.PENDING
    assert sorted(ledger(settings)) == ["reader000@example.org", "reader001@example.org"]


def test_a_refused_test_copy_is_one_line_not_a_traceback(setup, smtp_server):
    server = smtp_server(Handler(Faults(rcpt={"editor@example.org": ["550 5.1.1 no such user"]})))
    path, _settings = setup(server.config(), subscribers=1)
    r = send(path, "--to", "editor@example.org")
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines()[-1].endswith("550 5.1.1 no such user (after RCPT TO)")
    assert server.received == []
