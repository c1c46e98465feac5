"""The daily and the weekly edition: who gets which issue, and no paper lost or repeated
when someone switches cadence.

A week (or two) of sample days: each day's arXiv announcement is a real feed document
(items of the bundled sample feeds, a slice per day) served by a local HTTP server under
``/arxiv/<date>``; the sends run through the pipeline with a clock set to each day's send
time, into aiosmtpd.  Every check reads both what the SMTP server received (the papers
linked in each message) and the ledger.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections import defaultdict

import pytest
import sqlalchemy as sa
import test_web_preferences as wp
from click.testing import CliRunner
from conftest import both_backends
from test_web import serve  # noqa: F401  (the fixture: the app in waitress)
from test_web_preferences import site  # noqa: F401  (the fixture: the app, test client)

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.models import DeliveryStatus, Edition, IssueStatus
from newsletter.pipeline import SendReport, run_send
from newsletter.samples import FEEDS
from newsletter.store import Store, schema

SECRET = "test-secret-key-0123456789abcdef"
ENV = {"NEWSLETTER_SECRET_KEY": SECRET}
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
PER_DAY = 9  # announcement items per weekday

_ITEM = re.compile(r"\s*<item>.*?</item>", re.S)


def _items() -> list[str]:
    return [
        m.group(0)
        for f in ("arxiv-cs.xml", "arxiv-science.xml")
        for m in _ITEM.finditer((FEEDS / f).read_text(encoding="utf-8"))
    ]


def day_documents(first: dt.date, last: dt.date) -> dict[dt.date, bytes]:
    """An arXiv RSS document per date: PER_DAY items of the sample feeds on a weekday (each
    item on one day only), an empty channel at the weekend, as arXiv announces."""
    cs = (FEEDS / "arxiv-cs.xml").read_text(encoding="utf-8")
    head, tail = cs[: cs.index("    <item>")], cs[cs.rindex("</item>") + len("</item>") :]
    items = _items()
    docs: dict[dt.date, bytes] = {}
    n = 0
    day = first
    while day <= last:
        chosen = []
        if day.weekday() < 5:
            chosen, n = items[n : n + PER_DAY], n + PER_DAY
            assert len(chosen) == PER_DAY, "not enough sample items for so many days"
        docs[day] = (head.rstrip() + "".join(chosen) + "\n  " + tail.lstrip()).encode()
        day += dt.timedelta(days=1)
    return docs


class Clock:
    def __init__(self) -> None:
        self.t = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.t

    def at(self, day: dt.date, hhmm: str, tz: dt.tzinfo = BERLIN) -> dt.datetime:
        h, m = map(int, hhmm.split(":"))
        self.t = dt.datetime.combine(day, dt.time(h, m), tz).astimezone(dt.UTC)
        return self.t


class Weeks:
    """A list with daily and weekly subscribers over sample days, sent through the pipeline."""

    def __init__(self, write_config, feed_server, smtp_server, first: dt.date, last: dt.date):
        for day, doc in day_documents(first - dt.timedelta(days=7), last).items():
            feed_server.add(f"/arxiv/{day.isoformat()}", {"body": doc})
        self.smtp = smtp_server()
        path = write_config(
            f"""
[list]
name = "Lab Papers"
id = "lab-papers.example.org"
from_address = "papers@example.org"
base_url = "https://papers.example.org"
[schedule]
timezone = "Europe/Berlin"
send_at = "07:30"
days = "mon-fri"
weekly_day = "mon"
on_empty = "skip"
[fetch]
window_days = 3
min_interval = 0
retries = 0
[[sources]]
name = "arxiv"
kind = "arxiv-rss"
url = "{feed_server.url("/arxiv/{date}")}"
"""
            + self.smtp.config()
        )
        self.path = path
        self.settings = load_settings(path, env=ENV)
        self.store = Store.open(self.settings.database_url)
        self.clock = Clock()

    def close(self) -> None:
        self.store.close()

    def subscribe(self, day: dt.date, **cadences: Edition) -> None:
        self.clock.at(day, "06:00")
        emails = {f"{name}@example.org": c for name, c in cadences.items()}
        self.store.import_subscribers([(e, "") for e in emails], now=self.clock(), cadences=emails)

    def switch(self, name: str, cadence: Edition, day: dt.date, hhmm: str = "12:00") -> None:
        self.clock.at(day, hhmm)
        r = CliRunner().invoke(
            cli,
            [
                "-c",
                str(self.path),
                "subscribers",
                "set",
                f"{name}@example.org",
                "--cadence",
                cadence.value,
            ],
            env=ENV,
        )
        assert r.exit_code == 0, r.output
        # The CLI's own clock said when; the tests' clock is what the sends see.
        with self.store.write() as conn:
            t = schema.subscribers
            conn.execute(
                t.update()
                .where(t.c.email == f"{name}@example.org")
                .values(cadence_changed_at=self.clock())
            )

    def send(self, day: dt.date, edition: Edition, hhmm: str = "07:30") -> SendReport:
        self.clock.at(day, hhmm)
        report = run_send(
            self.settings, self.store, issue_date=day, now=self.clock, edition=edition
        )
        assert report.outcome in ("sent", "empty", "already-sent"), report.outcome
        return report

    def day(self, day: dt.date) -> None:
        """What the daemon does on ``day``: the daily on weekdays, then the weekly on Monday."""
        if day.weekday() < 5:
            self.send(day, Edition.DAILY)
        if day.weekday() == 0:
            self.send(day, Edition.WEEKLY, "07:31")

    # ------------------------------------------------------------------ what arrived

    def received(self) -> dict[str, list[tuple[str, set[str]]]]:
        """Per address, (Message-ID, arXiv ids linked in the text part) of each message."""
        got: dict[str, list[tuple[str, set[str]]]] = defaultdict(list)
        for r in self.smtp.received:
            msg = r.message
            text = msg.get_body(("plain",)).get_content()
            assert "more in this topic" not in text  # the whole issue is in the message
            ids = {f"arxiv:{i}" for i in re.findall(r"https://arxiv\.org/abs/(\S+)", text)}
            for rcpt in r.rcpt_tos:
                got[rcpt].append((msg["Message-ID"], ids))
        return got

    def ledger(self) -> dict[str, list[tuple[str, str, str, set[str]]]]:
        """Per address, (edition, Message-ID, status, paper ids) of each ledger row, oldest
        first: the papers of the issue, or of the variant the row names."""
        d, s, i = schema.deliveries, schema.subscribers, schema.issues
        ip, vp = schema.issue_papers, schema.variant_papers
        out: dict[str, list[tuple[str, str, str, set[str]]]] = defaultdict(list)
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(
                    s.c.email, i.c.id, i.c.edition, d.c.message_id, d.c.status, d.c.variant_id
                )
                .select_from(d.join(s, s.c.id == d.c.subscriber_id).join(i, i.c.id == d.c.issue_id))
                .order_by(i.c.id)
            ).all()
            for email, issue_id, edition, mid, status, variant_id in rows:
                if variant_id is None:
                    q = sa.select(ip.c.paper_id).where(ip.c.issue_id == issue_id)
                else:
                    q = sa.select(vp.c.paper_id).where(vp.c.variant_id == variant_id)
                out[email].append((edition, mid, status, set(conn.execute(q).scalars())))
        return out

    def first_seen_until(self, until: dt.datetime) -> set[str]:
        p = schema.papers
        with self.store.read() as conn:
            return set(conn.execute(sa.select(p.c.id).where(p.c.first_seen_at <= until)).scalars())

    def check(self) -> dict[str, list[str]]:
        """Every subscriber got each paper first seen up to their last issue exactly once,
        the messages carry what the ledger says; per address, the editions received."""
        received, ledger = self.received(), self.ledger()
        i = schema.issues
        editions: dict[str, list[str]] = {}
        for email, rows in ledger.items():
            sent = [r for r in rows if r[2] == DeliveryStatus.SENT.value]
            assert {r[2] for r in rows} <= {"sent", "skipped"}, (email, rows)
            mails = dict(received[email])
            assert len(mails) == len(received[email]) == len(sent), email  # one copy each
            papers: list[str] = []
            for _edition, mid, _status, ids in sent:
                assert mails[mid] == ids, (email, mid)  # the message is what the ledger says
                papers += ids
            assert len(papers) == len(set(papers)), f"{email}: a paper twice"
            with self.store.read() as conn:
                last_cut = conn.execute(
                    sa.select(sa.func.max(i.c.created_at)).where(
                        i.c.id.in_(
                            sa.select(schema.deliveries.c.issue_id)
                            .join(schema.subscribers)
                            .where(
                                schema.subscribers.c.email == email,
                                schema.deliveries.c.status == "sent",
                            )
                        )
                    )
                ).scalar_one()
            missed = self.first_seen_until(last_cut) - set(papers)
            assert not missed, f"{email}: never got {sorted(missed)}"
            editions[email.split("@")[0]] = [r[0] for r in sent]
        return editions


@pytest.fixture
def weeks(write_config, feed_server, smtp_server):
    made: list[Weeks] = []

    def make(first: dt.date, last: dt.date) -> Weeks:
        made.append(Weeks(write_config, feed_server, smtp_server, first, last))
        return made[-1]

    yield make
    for w in made:
        w.close()


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


MON = dt.date(2026, 4, 13)  # a Monday


@both_backends
def test_a_week_each_gets_their_cadence_and_a_switch_mid_week_loses_and_repeats_nothing(weeks):
    w = weeks(MON, MON + dt.timedelta(days=14))
    w.subscribe(
        MON,
        ada=Edition.DAILY,
        bob=Edition.DAILY,
        wes=Edition.WEEKLY,
        wil=Edition.WEEKLY,
        dee=Edition.DAILY,  # daily -> weekly on Wednesday of the second week
        wen=Edition.WEEKLY,  # weekly -> daily on Wednesday of the second week
        tom=Edition.DAILY,  # daily -> weekly on Tuesday, back to daily on Thursday
    )
    wed = MON + dt.timedelta(days=9)
    for day in days(MON, MON + dt.timedelta(days=14)):
        if day == wed:
            w.day(day)
            w.switch("dee", Edition.WEEKLY, day)
            w.switch("wen", Edition.DAILY, day)
        elif day == wed - dt.timedelta(days=1):
            w.day(day)
            w.switch("tom", Edition.WEEKLY, day)
        elif day == wed + dt.timedelta(days=1):
            w.switch("tom", Edition.DAILY, day, "06:00")
            w.day(day)
        else:
            w.day(day)
    got = w.check()
    daily, weekly = Edition.DAILY.value, Edition.WEEKLY.value
    assert got["ada"] == got["bob"] == [daily] * 11  # two weeks of weekdays, and a Monday
    assert got["wes"] == got["wil"] == [weekly] * 3  # three Mondays
    assert got["dee"] == [daily] * 8 + [weekly]  # Mon-Fri, Mon-Wed; then the Monday weekly
    assert got["wen"] == [weekly] * 2 + [daily] * 3  # two Mondays; then Thu, Fri, Mon
    assert got["tom"] == [daily] * 7 + [daily] * 3  # no Wednesday; Thursday covers it
    ledger = w.ledger()
    # Only the switchers' first issues after the switch were variants: one per window.
    with w.store.read() as conn:
        variants = conn.execute(sa.select(sa.func.count()).select_from(schema.issue_variants))
        assert variants.scalar_one() == 3
    wen_thu = ledger["wen@example.org"][2][3]
    assert wen_thu > ledger["ada@example.org"][8][3]  # Mon-Thu, not only Thursday's papers
    # Message-IDs say the edition: a daily and a weekly on one date never share one.
    mids = [mid for rows in ledger.values() for _e, mid, _s, _p in rows]
    assert len(mids) == len(set(mids))
    assert all(
        ("-weekly." in mid) == (e == weekly) for rows in ledger.values() for e, mid, _s, _p in rows
    )


# --------------------------------------------------------------------------- the store


T0 = dt.datetime(2026, 4, 20, 5, 30, tzinfo=dt.UTC)


def _version_4_database(url: str) -> None:
    """A database as the release before editions left it, with an issue that was sent,
    its papers, its ledger and a bounce: everything the rebuilt ``issues`` is referred to by."""
    from newsletter.store import migrations

    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        # As the store connects: foreign keys on, so a careless rebuild would cascade.
        sa.event.listen(engine, "connect", lambda c, _r: c.execute("PRAGMA foreign_keys = ON"))
    naive = T0.replace(tzinfo=None)
    with engine.begin() as conn:
        schema.schema_migrations.create(conn)
        for version, _description, step in migrations.MIGRATIONS[:4]:
            step(conn)
            conn.execute(
                schema.schema_migrations.insert().values(
                    version=version, description="", applied_at=T0
                )
            )
        for sql, values in [
            (
                "INSERT INTO papers (id, title, abstract, authors, url, categories, sources, "
                "keywords, first_seen_at, updated_at) VALUES ('arxiv:1', 'A paper', '', '[]', "
                "'', '[]', '[]', '[]', :t, :t)",
                {},
            ),
            (
                "INSERT INTO issues (id, issue_date, status, subject, paper_count, html, text, "
                "preheader, created_at, updated_at) VALUES (7, :d, 'sent', 'S', 1, '<p>h</p>', "
                "'t', 'p', :t, :t)",
                {"d": T0.date()},
            ),
            (
                "INSERT INTO issue_papers (issue_id, paper_id, topic, position) VALUES "
                "(7, 'arxiv:1', 'x', 0)",
                {},
            ),
            (
                "INSERT INTO subscribers (id, email, name, status, created_at, updated_at) "
                "VALUES (3, 'ada@example.org', '', 'active', :t, :t)",
                {},
            ),
            (
                "INSERT INTO deliveries (issue_id, subscriber_id, status, attempts, message_id, "
                "in_doubt, updated_at) VALUES (7, 3, 'sent', 1, '<m>', false, :t)",
                {},
            ),
            (
                "INSERT INTO bounces (message_key, recipient, kind, subscriber_id, issue_id, "
                "received_at, recorded_at) VALUES ('k', 'ada@example.org', 'hard', 3, 7, :t, :t)",
                {},
            ),
        ]:
            conn.execute(sa.text(sql), {"t": naive, **values})
    engine.dispose()


@both_backends
def test_migrating_keeps_every_issue_and_what_refers_to_it(database_url):
    _version_4_database(database_url)
    with Store.open(database_url, now=T0) as store:
        issue = store.issue(T0.date())
        assert issue is not None and issue.id == 7 and issue.edition is Edition.DAILY
        assert store.issue(T0.date(), Edition.WEEKLY) is None
        sub = store.subscriber("ada@example.org")
        assert sub is not None and sub.cadence is Edition.DAILY
        assert store.delivery_counts(7).sent == 1
        assert store.bounce_counts([7]) == {7: {"hard": 1}}
        with store.read() as conn:
            assert conn.execute(sa.select(schema.issue_papers.c.paper_id)).scalars().all() == [
                "arxiv:1"
            ]
        # A weekly issue of the same date is a second issue now, not a clash.
        weekly = store.save_issue(
            T0.date(),
            status=IssueStatus.READY,
            subject="W",
            preheader="",
            html="",
            text="",
            papers=[("arxiv:1", "x")],
            now=T0,
            edition=Edition.WEEKLY,
        )
        assert weekly.id != 7 and weekly.edition is Edition.WEEKLY
    if database_url.startswith("sqlite"):
        with sa.create_engine(database_url).connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []


def test_cadence_by_import_export_round_trip_and_set(tmp_path):
    cfg = tmp_path / "newsletter.toml"
    cfg.write_text(f'database_url = "sqlite:///{tmp_path}/n.db"\n', encoding="utf-8")
    people = tmp_path / "people.csv"
    people.write_text(
        "email,name,cadence\nada@example.org,Ada,weekly\nbob@example.org,,\n"
        "cy@example.org,Cy,Weekly\ndee@example.org,,monthly\n",
        encoding="utf-8",
    )
    run = CliRunner()
    imported = run.invoke(cli, ["-c", str(cfg), "subscribers", "import", str(people)])
    assert imported.exit_code == 1  # one bad row, the others imported
    assert "line 5: dee@example.org: cadence is 'monthly'; expected daily or weekly" in (
        imported.stderr
    )
    exported = run.invoke(cli, ["-c", str(cfg), "subscribers", "export"])
    rows = {line.split(",")[0]: line.split(",")[5] for line in exported.stdout.splitlines()}
    assert rows == {
        "email": "cadence",
        "ada@example.org": "weekly",
        "bob@example.org": "daily",
        "cy@example.org": "weekly",
    }
    # What export wrote reads back to the same cadences, over a list that changed meanwhile.
    switched = run.invoke(
        cli, ["-c", str(cfg), "subscribers", "set", "ADA@example.org", "--cadence", "daily"]
    )
    assert switched.exit_code == 0 and switched.stdout == "set: ada@example.org: daily\n"
    (tmp_path / "back.csv").write_text(exported.stdout, encoding="utf-8")
    again = run.invoke(cli, ["-c", str(cfg), "subscribers", "import", str(tmp_path / "back.csv")])
    assert again.exit_code == 0, again.output
    listed = run.invoke(cli, ["-c", str(cfg), "subscribers", "list"]).stdout.splitlines()
    assert [line.split()[-2] for line in listed[2:]] == ["weekly", "daily", "weekly"]
    nobody = run.invoke(
        cli, ["-c", str(cfg), "subscribers", "set", "zed@example.org", "--cadence", "weekly"]
    )
    assert nobody.exit_code == 1 and "no subscriber zed@example.org" in nobody.output
    bad = run.invoke(
        cli, ["-c", str(cfg), "subscribers", "set", "ada@example.org", "--cadence", "hourly"]
    )
    assert bad.exit_code == 2 and "'hourly' is not one of 'daily', 'weekly'" in bad.output


# --------------------------------------------------------------------------- downtime, DST


def subjects(w: Weeks, email: str) -> list[str]:
    return [str(r.message["Subject"]) for r in w.smtp.received if email in r.rcpt_tos]


def test_a_missed_monday_is_caught_up_by_the_next_weekly(weeks):
    """No weekly went out on the second Monday (the daily did): the third Monday's covers
    both weeks, and weekly readers miss nothing."""
    w = weeks(MON, MON + dt.timedelta(days=14))
    w.subscribe(MON, ada=Edition.DAILY, wes=Edition.WEEKLY)
    missed = MON + dt.timedelta(days=7)
    for day in days(MON, MON + dt.timedelta(days=14)):
        if day == missed:
            w.send(day, Edition.DAILY)
        else:
            w.day(day)
    got = w.check()
    assert got["wes"] == [Edition.WEEKLY.value] * 2 and len(got["ada"]) == 11
    ledger = w.ledger()
    first, second = (ids for _e, _m, _s, ids in ledger["wes@example.org"])
    dailies = [ids for _e, _m, _s, ids in ledger["ada@example.org"]]
    assert first == dailies[0] and second == set().union(*dailies[1:])
    assert subjects(w, "wes@example.org")[1].startswith("Lab Papers — Week of 2026-04-13: ")


def test_a_week_across_the_spring_dst_change(weeks):
    """Europe/Berlin goes from UTC+1 to UTC+2 on Sunday 29 March 2026: 07:30 stays 07:30
    local, every day's papers land in one issue of each edition, and a switch between the
    Monday daily and the Monday weekly waits (nothing new yet) for the next week."""
    mon = dt.date(2026, 3, 23)
    w = weeks(mon, mon + dt.timedelta(days=14))
    w.subscribe(mon, ada=Edition.DAILY, wes=Edition.WEEKLY, dan=Edition.DAILY)
    after_dst = mon + dt.timedelta(days=7)
    for day in days(mon, mon + dt.timedelta(days=14)):
        if day == after_dst:
            w.send(day, Edition.DAILY)
            w.switch("dan", Edition.WEEKLY, day, "07:30")
            w.clock.t += dt.timedelta(seconds=30)  # changed after the daily was built
            w.send(day, Edition.WEEKLY, "07:31")
        else:
            w.day(day)
    got = w.check()
    assert got["wes"] == [Edition.WEEKLY.value] * 3
    assert got["dan"] == [Edition.DAILY.value] * 6 + [Edition.WEEKLY.value]
    with w.store.read() as conn:
        i = schema.issues
        cuts = conn.execute(
            sa.select(i.c.issue_date, i.c.created_at).where(i.c.edition == "daily")
        ).all()
    assert {d.isoformat(): c.hour for d, c in cuts if d.day in (27, 30)} == {
        "2026-03-27": 6,  # 07:30 CET
        "2026-03-30": 5,  # 07:30 CEST
    }
    dan = w.ledger()["dan@example.org"]
    # The Monday weekly had nothing for dan yet (the daily of an hour before had it all).
    assert [(e, s, len(p)) for e, _m, s, p in dan[-2:-1]] == [("weekly", "skipped", 0)]
    week = [ids for _e, _m, _s, ids in w.ledger()["ada@example.org"]][-5:]
    assert dan[-1][2:] == ("sent", set().union(*week))  # Tuesday to Monday
    assert subjects(w, "wes@example.org")[1].startswith("Lab Papers — Week of 2026-03-23: ")


# --------------------------------------------------------------------------- the week's picks


def test_the_weeks_trending_weighs_a_papers_own_day_and_the_whole_week():
    from newsletter.models import Paper
    from newsletter.topics.pick import trending, trending_over_week

    def paper(n: int, day: int, votes: int | None) -> Paper:
        return Paper(
            id=f"arxiv:{n}",
            title=f"P{n}",
            announced=dt.datetime(2026, 4, 20 + day, 4, tzinfo=dt.UTC),
            upvotes=votes,
        )

    # A busy Monday and a quiet Friday; upvotes as the week ended (Monday's had longer).
    papers = [paper(1, 0, 100), paper(2, 0, 20), paper(3, 4, 15), paper(4, 4, 1), paper(5, 4, None)]
    alone = trending(papers)
    assert alone[1] > alone[2]  # the week's scale alone: Monday's second above Friday's best
    week = trending_over_week(papers)
    order = sorted(range(len(papers)), key=lambda i: -week[i])
    # Friday's best topped its day and holds up in the week: above Monday's second.
    assert order == [0, 2, 1, 3, 4] and week[4] == 0.0
    assert week[0] == 1.0 and all(0.0 <= x <= 1.0 for x in week)
    assert list(trending_over_week(papers[::-1])) == list(week[::-1])  # order-free


# --------------------------------------------------------------------------- the daemon


def daemon_setup(tmp_path, sample_feeds, port: int, send_at: str, zone: str, weekly_day: str):
    """Five subscribers, two of them weekly, the weekly edition on ``weekly_day``."""
    from test_daemon import hf_source, write_config

    cfg, db, emails = write_config(
        tmp_path,
        smtp_port=port,
        send_at=send_at,
        timezone=zone,
        sources=hf_source(sample_feeds),
        subscribers=5,
    )
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(text.replace('days = "*"', f'days = "*"\nweekly_day = "{weekly_day}"'))
    with Store.open(f"sqlite:///{db}") as store:
        for email in emails[3:]:
            store.set_cadence(email, Edition.WEEKLY, now=dt.datetime.now(dt.UTC))
    return cfg, db, emails


def by_edition(server) -> dict[str, list[str]]:
    """Recipients of the daily and of the weekly messages the server received."""
    out: dict[str, list[str]] = {"daily": [], "weekly": []}
    for r in server.received:
        out["weekly" if "-weekly." in r.message["Message-ID"] else "daily"] += r.rcpt_tos
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.slow
def test_the_daemon_sends_both_editions_on_the_weekly_day_each_to_its_own(
    tmp_path, sample_feeds, smtp_server
):
    from smtp_server import wait_for
    from test_daemon import Daemon, clock, noon_zone, status

    server = smtp_server()
    zone, tz = noon_zone()
    today = dt.datetime.now(tz).date()
    send_at = clock(tz, 5)
    cfg, _db, emails = daemon_setup(
        tmp_path, sample_feeds, server.port, send_at, zone, f"{today:%a}".lower()
    )
    d = Daemon(cfg, "daemon")
    try:
        d.wait_log(r"daemon started \(pid \d+\)")
        assert "no catch-up (weekly): today's send time" in d.log
        d.wait_log(rf"issue {today} weekly: sent: .*issue total: 2 of 2 sent, 0 failed", 40)
        assert d.log.index(f"issue {today}: sent: sent 3, ") < d.log.index(
            f"issue {today} weekly: scheduled run started"
        )
        assert wait_for(lambda: len(server.received) == 5, 10)
        assert by_edition(server) == {"daily": emails[:3], "weekly": emails[3:]}
        shown = status(cfg)
        assert f"; last: {today} weekly sent, sent 2/2" in shown, shown
        rows = [line.split()[:3] for line in shown.splitlines() if line.startswith(str(today))]
        assert rows == [[str(today), "weekly", "sent"], [str(today), "daily", "sent"]]
        d.signal()
        assert d.wait(30) == 0
    finally:
        d.kill()


@pytest.mark.slow
def test_a_weekly_missed_within_the_grace_is_caught_up_at_start(
    tmp_path, sample_feeds, smtp_server
):
    """Started two minutes after the send time on the weekly day: both editions are sent
    at once, like the daily catch-up; on another day the weekly is not."""
    from smtp_server import wait_for
    from test_daemon import Daemon, clock, noon_zone

    server = smtp_server()
    zone, tz = noon_zone()
    today = dt.datetime.now(tz).date()
    cfg, _db, emails = daemon_setup(
        tmp_path, sample_feeds, server.port, clock(tz, -120), zone, f"{today:%a}".lower()
    )
    d = Daemon(cfg, "daemon")
    try:
        d.wait_log(r"catch-up \(weekly\): today's send time passed 2 min ago; sending now")
        d.wait_log(rf"issue {today} weekly: sent: .*issue total: 2 of 2 sent", 40)
        assert f"issue {today} weekly: catch-up run started" in d.log
        assert wait_for(lambda: len(server.received) == 5, 10)
        assert by_edition(server) == {"daily": emails[:3], "weekly": emails[3:]}
        d.signal()
        assert d.wait(30) == 0
    finally:
        d.kill()
    tomorrow = f"{today + dt.timedelta(days=1):%a}".lower()
    other = tmp_path / "other"
    other.mkdir()
    cfg2, _db2, _ = daemon_setup(other, sample_feeds, server.port, clock(tz, -120), zone, tomorrow)
    d2 = Daemon(cfg2, "daemon")
    try:
        d2.wait_log(rf"no catch-up \(weekly\): {today:%A} is not a sending day \({tomorrow}\)")
        d2.wait_log(rf"issue {today}: sent: .*issue total: 3 of 3 sent", 40)
        d2.signal()
        assert d2.wait(30) == 0
    finally:
        d2.kill()
    assert len(server.received) == 8  # the second list: only the daily, to its three


# --------------------------------------------------------------------------- SIGKILL


@pytest.mark.slow
def test_sigkill_during_the_weekly_send_mails_each_weekly_reader_once_with_their_variant(
    tmp_path, sample_feeds, smtp_server
):
    """`newsletter send --edition weekly` killed again and again, then run to the end: the
    weekly readers (plain ones and daily->weekly switchers, who get a variant) are each
    mailed, a second copy only for a row that was in DATA at a kill, with the same
    Message-ID and the same content; the daily readers get nothing of it."""
    import os
    import random
    import subprocess
    import time

    from smtp_server import Faults, Handler
    from test_send_crash import NEWSLETTER, in_flight, kill, write_setup

    server = smtp_server(Handler(Faults(delay=0.004)))
    cfg, db, _ = write_setup(tmp_path, sample_feeds, server.port, subscribers=0, connections=2)
    # The daily before: another source, so the week has papers the daily did not carry.
    daily_cfg = tmp_path / "daily.toml"
    daily_cfg.write_text(
        cfg.read_text()
        .replace('name = "hf-daily"', 'name = "arxiv-science"\nkind = "arxiv-rss"')
        .replace("hf-daily.json", "arxiv-science.xml")
    )
    switchers = [f"switch{i:03d}@example.org" for i in range(60)]
    weekly = [f"weekly{i:03d}@example.org" for i in range(90)]
    daily = [f"daily{i:03d}@example.org" for i in range(30)]
    url = f"sqlite:///{db}"
    with Store.open(url) as store:
        store.import_subscribers([(e, "") for e in switchers], now=dt.datetime.now(dt.UTC))
    env = os.environ | ENV
    env.pop("NEWSLETTER_DATABASE_URL", None)
    day = dt.datetime.now(dt.UTC).date()

    def send(config: object, name: str, *args: str) -> subprocess.Popen:
        out = tmp_path / name
        with open(f"{out}.out", "wb") as so, open(f"{out}.err", "wb") as se:
            return subprocess.Popen(
                [str(NEWSLETTER), "-c", str(config), "send", "--date", str(day), *args],
                stdout=so,
                stderr=se,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    assert send(daily_cfg, "daily").wait(120) == 0, (tmp_path / "daily.err").read_text()
    assert len(server.received) == len(switchers)
    server.handler.received.clear()
    with Store.open(url) as store:
        for email in switchers:
            store.set_cadence(email, Edition.WEEKLY, now=dt.datetime.now(dt.UTC))
        store.import_subscribers(
            [(e, "") for e in weekly + daily],
            now=dt.datetime.now(dt.UTC),
            cadences=dict.fromkeys(weekly, Edition.WEEKLY),
        )

    rng = random.Random(18)
    kills = 0
    flight: dict[str, int] = defaultdict(int)
    for k in range(12):
        before = in_flight(db)
        proc = send(cfg, f"weekly{k:02d}", "--edition", "weekly")
        if k == 0 or rng.random() < 0.5:  # once it is sending (the first run renders first)
            target = len(server.received) + rng.randint(1, 20)
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                if len(server.received) >= target:
                    break
                time.sleep(0.002)
        else:  # in the in-doubt window: as soon as a row is in DATA
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                if in_flight(db) - before:
                    break
                time.sleep(0.001)
        if not kill(proc):
            break
        kills += 1
        for email, _attempt in in_flight(db) - before:
            flight[email] += 1
    final = send(cfg, "final", "--edition", "weekly")
    assert final.wait(120) == 0, (tmp_path / "final.err").read_text()
    assert kills >= 6

    copies = defaultdict(list)
    for r in server.received:
        copies[r.rcpt_tos[0]].append(r.message)
    assert sorted(copies) == sorted(switchers + weekly)  # the daily readers: nothing
    for email, messages in copies.items():
        assert len(messages) == 1 or len(messages) - 1 <= flight[email], email
        first = messages[0]
        assert "-weekly." in first["Message-ID"]
        for again in messages[1:]:
            assert again["Message-ID"] == first["Message-ID"]
            assert (
                again.get_body(("html",)).get_content() == first.get_body(("html",)).get_content()
            )
    with Store.open(url) as store, store.read() as conn:
        d, s = schema.deliveries, schema.subscribers
        rows = conn.execute(
            sa.select(s.c.email, d.c.status, d.c.variant_id).join(s, s.c.id == d.c.subscriber_id)
        ).all()
        weekly_issue = store.issue(day, Edition.WEEKLY)
    weekly_rows = {e: (st, v) for e, st, v in rows if e not in switchers or v is not None}
    assert {st for st, _v in weekly_rows.values()} == {"sent"}
    variants = {v for e, (_st, v) in weekly_rows.items() if e in switchers}
    assert len(variants) == 1 and None not in variants  # one window, one variant
    assert all(weekly_rows[e][1] is None for e in weekly)
    # The switchers' week holds only what the daily did not carry.
    first_switcher = copies[switchers[0]][0].get_body(("plain",)).get_content()
    first_weekly = copies[weekly[0]][0].get_body(("plain",)).get_content()
    assert weekly_issue is not None and len(first_switcher) < len(first_weekly)


# --------------------------------------------------------------------------- the schedule


def test_the_send_trigger_fires_on_the_daily_days_and_the_weekly_day():
    from newsletter.config import ScheduleSettings
    from newsletter.schedule import cron_trigger, editions_on, either_edition

    s = ScheduleSettings(days="tue-fri", weekly_day="Mon", timezone="Europe/Berlin")
    trigger = cron_trigger("07:30", either_edition(s), BERLIN)
    t, fired = dt.datetime(2026, 3, 27, 12, tzinfo=dt.UTC), []  # Friday, after 07:30
    for _ in range(5):
        nxt = trigger.get_next_fire_time(None, t)
        fired.append(f"{nxt:%a %H:%M %z}")
        t = nxt + dt.timedelta(seconds=1)
    # The weekly's Monday is a send day too, across the DST change; the weekend is not.
    assert fired == [f"{d} 07:30 +0200" for d in ("Mon", "Tue", "Wed", "Thu", "Fri")]
    week = [dt.date(2026, 3, 30) + dt.timedelta(days=i) for i in range(7)]
    assert [[e.value for e in editions_on(d, s)] for d in week] == [
        ["weekly"],
        ["daily"],
        ["daily"],
        ["daily"],
        ["daily"],
        [],
        [],
    ]
    both = ScheduleSettings(days="*", weekly_day="sun")
    assert [e.value for e in editions_on(dt.date(2026, 4, 5), both)] == ["daily", "weekly"]


def test_weekly_day_must_be_one_day_name(tmp_path):
    from newsletter.config import load_settings
    from newsletter.errors import ConfigError

    cfg = tmp_path / "n.toml"
    cfg.write_text('[schedule]\nweekly_day = "mon-fri"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"schedule\.weekly_day: expected one day name"):
        load_settings(cfg, env={})


# --------------------------------------------------------------------------- workers


@both_backends
@pytest.mark.slow
def test_weekly_workers_share_the_issue_and_its_variant_and_take_over_a_killed_one(
    write_config, sample_feeds, sink_process, tmp_path
):
    """Two `send --worker --edition weekly` processes (on PostgreSQL as on SQLite): one is
    killed with SIGKILL mid-send; the other takes its rows over; every weekly reader is
    mailed once (a second copy only for a row in DATA at the kill), switchers with their
    variant, and the daily readers get nothing."""
    import os
    import signal
    import subprocess
    import sys

    from smtp_server import wait_for

    sink = sink_process(delay=0.01)
    common = f"""
[list]
from_address = "papers@example.org"
base_url = "https://papers.example.org"
[schedule]
timezone = "UTC"
[fetch]
window_days = 1
[delivery]
transport = "smtp"
lease_seconds = 120
[smtp]
host = "127.0.0.1"
port = {sink.port}
tls = "none"
connections = 2
"""
    source = '[[sources]]\nname = "{0}"\nkind = "{1}"\npath = "{2}/{3}"\n'
    daily_cfg = write_config(
        common + source.format("science", "arxiv-rss", sample_feeds, "arxiv-science.xml"),
        "daily.toml",
    )
    weekly_cfg = write_config(
        common + source.format("hf-daily", "hf-daily", sample_feeds, "hf-daily.json")
    )
    settings = load_settings(weekly_cfg, env=ENV)
    switchers = [f"switch{i:03d}@example.org" for i in range(50)]
    weekly = [f"weekly{i:03d}@example.org" for i in range(200)]
    daily = [f"daily{i:03d}@example.org" for i in range(20)]
    with Store.open(settings.database_url) as store:
        store.import_subscribers([(e, "") for e in switchers], now=dt.datetime.now(dt.UTC))
    env = os.environ | ENV
    env.pop("NEWSLETTER_DATABASE_URL", None)
    day = dt.datetime.now(dt.UTC).date().isoformat()

    def newsletter(cfg, log: str, *args: str) -> subprocess.Popen:
        with (tmp_path / log).open("w") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "newsletter", "-c", str(cfg), "send", "--date", day, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    assert newsletter(daily_cfg, "daily.log").wait(120) == 0, (tmp_path / "daily.log").read_text()
    sink.settle()
    before = sink.count()
    with Store.open(settings.database_url) as store:
        for email in switchers:
            store.set_cadence(email, Edition.WEEKLY, now=dt.datetime.now(dt.UTC))
        store.import_subscribers(
            [(e, "") for e in weekly + daily],
            now=dt.datetime.now(dt.UTC),
            cadences=dict.fromkeys(weekly, Edition.WEEKLY),
        )
    args = ("--edition", "weekly", "--worker")
    victim = newsletter(weekly_cfg, "victim.log", *args)
    assert wait_for(lambda: sink.count() >= before + 20, 60), (tmp_path / "victim.log").read_text()
    survivor = newsletter(weekly_cfg, "survivor.log", *args)
    assert wait_for(lambda: sink.count() >= before + 80, 60)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    assert survivor.wait(180) == 0, (tmp_path / "survivor.log").read_text()
    assert "is gone" in (tmp_path / "survivor.log").read_text()
    sink.settle()
    # Only the weekly's Message-IDs (the switchers also got the daily before).
    weekly_copies = {r: [m for m in mids if "-weekly." in m] for r, mids in sink.copies().items()}
    weekly_copies = {r: mids for r, mids in weekly_copies.items() if mids}
    assert sorted(weekly_copies) == sorted(switchers + weekly)
    doubled = {r: mids for r, mids in weekly_copies.items() if len(mids) > 1}
    assert len(doubled) <= 2 and all(len(set(m)) == 1 for m in doubled.values())
    with Store.open(settings.database_url) as store, store.read() as conn:
        d, s = schema.deliveries, schema.subscribers
        issue = store.issue(dt.date.fromisoformat(day), Edition.WEEKLY)
        assert issue is not None
        rows = conn.execute(
            sa.select(s.c.email, d.c.status, d.c.variant_id)
            .join(s, s.c.id == d.c.subscriber_id)
            .where(d.c.issue_id == issue.id)
        ).all()
    assert {st for _e, st, _v in rows} == {"sent"}
    assert sorted(e for e, _st, _v in rows) == sorted(switchers + weekly)
    assert len({v for e, _st, v in rows if e in switchers} - {None}) == 1
    assert all(v is None for e, _st, v in rows if e in weekly)


# --------------------------------------------------------------------------- the archive


@pytest.fixture
def web(request):
    return request.getfixturevalue("serve")()


def _archive_issues(store: Store) -> None:
    """A weekly and a daily issue of one Monday, a daily the Friday before, an empty day."""
    for day, edition, subject, status in (
        (dt.date(2026, 4, 24), Edition.DAILY, 'Fri <b>&amp; "Ünïcode" ☃', IssueStatus.SENT),
        (dt.date(2026, 4, 25), Edition.DAILY, "empty", IssueStatus.EMPTY),
        (dt.date(2026, 4, 27), Edition.DAILY, "Mon daily", IssueStatus.SENT),
        (dt.date(2026, 4, 27), Edition.WEEKLY, "Week of 2026-04-20: a & b", IssueStatus.SENT),
    ):
        store.save_issue(
            day,
            status=status,
            subject=subject,
            preheader=f"3 new papers: {subject}",
            html=""
            if status is IssueStatus.EMPTY
            else f"<html><body><p>{edition}</p></body></html>",
            text="",
            papers=[],
            now=dt.datetime.combine(day, dt.time(5, 30), dt.UTC),
            edition=edition,
        )


def test_the_archive_lists_weekly_issues_beside_the_daily_ones_and_as_atom(web):
    import feedparser

    _archive_issues(web.store)
    body = web.client.get("/archive/").body
    hrefs = re.findall(r'href="(/archive/[^"]+)"', body)
    assert hrefs[:3] == ["/archive/weekly/2026-04-27", "/archive/2026-04-27", "/archive/2026-04-24"]
    assert "Monday, 27 April 2026 · weekly" in body and 'href="/archive.xml"' in body
    assert "<p>weekly</p>" in web.client.get("/archive/weekly/2026-04-27").body
    assert "<p>daily</p>" in web.client.get("/archive/2026-04-27").body
    assert web.client.get("/archive/weekly/2026-04-24").status == 404  # only a daily
    assert web.client.get("/archive/weekly/2026-02-30").status == 404

    reply = web.client.get("/archive.xml")
    assert reply.status == 200 and reply.header("Content-Type").startswith("application/atom+xml")
    feed = feedparser.parse(reply.body.encode())
    assert feed.version == "atom10" and not feed.bozo, feed.get("bozo_exception")
    assert feed.feed.title == "Test <Papers> & Co: past issues"
    assert feed.feed.link == f"{web.base}/archive/"
    entries = [(e.title, e.link, e.updated, e.tags[0].term) for e in feed.entries]
    assert entries == [
        (
            "Week of 2026-04-20: a & b",
            f"{web.base}/archive/weekly/2026-04-27",
            "2026-04-27T05:30:00Z",
            "weekly",
        ),
        ("Mon daily", f"{web.base}/archive/2026-04-27", "2026-04-27T05:30:00Z", "daily"),
        (
            'Fri <b>&amp; "Ünïcode" ☃',  # text, escaped in the XML: never markup
            f"{web.base}/archive/2026-04-24",
            "2026-04-24T05:30:00Z",
            "daily",
        ),
    ]
    assert "<b>" not in reply.body and "&lt;b&gt;&amp;amp;" in reply.body
    assert len({e.id for e in feed.entries}) == 3
    assert feed.entries[0].summary == "0 papers. 3 new papers: Week of 2026-04-20: a & b"


def test_archive_build_writes_weekly_pages_and_the_feed(web, tmp_path):
    import feedparser

    _archive_issues(web.store)
    out = tmp_path / "site"
    r = CliRunner().invoke(
        cli, ["-c", web.settings.config_path, "archive", "build", str(out)], env=ENV
    )
    assert r.exit_code == 0, r.output
    assert "wrote 3 issue page(s), the index and the feed" in r.output
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="weekly/2026-04-27/"' in index and 'href="2026-04-27/"' in index
    weekly = (out / "weekly" / "2026-04-27" / "index.html").read_text(encoding="utf-8")
    assert 'href="../../"' in weekly  # back to the list, two folders up
    served = web.client.get("/archive.xml").body.encode()
    assert (out / "archive.xml").read_bytes() == served
    assert feedparser.parse(served).version == "atom10"


# --------------------------------------------------------------------------- the web forms


@pytest.fixture
def prefs_site(request):
    """test_web_preferences' site: the app through werkzeug's test client, Ada subscribed."""
    return request.getfixturevalue("site")


def changed_at(store: Store, email: str) -> dt.datetime | None:
    t = schema.subscribers
    with store.read() as conn:
        return conn.execute(
            sa.select(t.c.cadence_changed_at).where(t.c.email == email)
        ).scalar_one()


def checked(page) -> str:
    m = re.search(r'id="cadence-(\w+)" name="cadence" value="\w+" checked', wp.text(page))
    assert m, wp.text(page)[:3000]
    return m.group(1)


def test_the_preferences_page_switches_cadence(prefs_site):
    app = prefs_site
    assert checked(app.client.get(app.path())) == "daily"
    r = wp.post(app.client, app.path(), cadence="weekly")
    assert r.status_code == 200 and 'id="saved"' in wp.text(r) and checked(r) == "weekly"
    ada = app.store.subscriber(app.sid)
    changed = changed_at(app.store, ada.email)
    assert ada.cadence is Edition.WEEKLY and changed is not None
    # Saving the interests again leaves the cadence, and when it changed, as they were.
    wp.post(app.client, app.path(), cadence="weekly", keywords="retrieval")
    assert changed_at(app.store, ada.email) == changed
    bad = wp.post(app.client, app.path(), cadence="hourly", keywords="kept")
    assert bad.status_code == 400 and "How often" in wp.problem(bad)
    assert app.store.subscriber(app.sid).cadence is Edition.WEEKLY


def test_the_sign_up_form_takes_a_cadence(prefs_site):
    import time

    from newsletter.web.signup import confirm_token

    app = prefs_site
    assert checked(app.client.get("/subscribe")) == "daily"
    r = wp.sign_up(app.client, "wes@example.org", cadence="weekly")
    assert r.status_code == 200 and wp.h1(r) == "Check your inbox"
    pending = app.store.subscriber("wes@example.org")
    assert pending.cadence is Edition.WEEKLY
    app.client.get(f"/confirm/{confirm_token(wp.SECRET, pending, now=time.time())}")
    wes = app.store.subscriber("wes@example.org")
    assert wes.status.value == "active" and wes.cadence is Edition.WEEKLY
    # Daily (the default) alone is no interest at all: nothing is stored for it.
    wp.sign_up(app.make(), "dee@example.org", cadence="daily")
    dee = app.store.subscriber("dee@example.org")
    assert dee.cadence is Edition.DAILY and changed_at(app.store, dee.email) is None
