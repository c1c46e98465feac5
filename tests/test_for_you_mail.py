""" "For you" in the email as it reaches a real SMTP server, on SQLite and PostgreSQL: each
subscriber's picks with their reasons and their topic order, the plain issue byte for byte
for everyone else, copies frozen with the ledger rows (a resend is the same message whatever
changed since; a subscriber queued later gets theirs), shared between equal interests, and
`newsletter preview --as`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import both_backends
from smtp_server import Handler
from test_editions import weeks  # noqa: F401  (the fixture: a list over sample days)

from newsletter.cli import cli
from newsletter.config import Settings, load_settings
from newsletter.delivery import IssueMailer
from newsletter.links import issue_url as web_url
from newsletter.models import DeliveryStatus
from newsletter.personal import LibraryPaper
from newsletter.personal.digest import personal_digest
from newsletter.personal.stated import InterestsChange
from newsletter.pipeline import build_issue_digest, run_fetch, run_send
from newsletter.render import render_issue
from newsletter.store import Store, schema

pytestmark = both_backends

SECRET = "test-secret-key-0123456789abcdef"
T0 = dt.datetime(2026, 4, 27, 6, 0, tzinfo=dt.UTC)
DAY = T0.date()
#: Subscribers and what they ask for (keywords, categories, "For you" alone).
ASKS = {
    "ada@example.org": (("language model", "robot"), (), False),
    "bob@example.org": None,
    "cy@example.org": (("graph",), (), True),
    "dee@example.org": (("attack",), ("cs.CR",), False),
    "eve@example.org": (("attack",), ("cs.CR",), False),  # as Dee: one copy for both
    "fay@example.org": "library",
}


def now() -> dt.datetime:
    return T0


@pytest.fixture
def day(write_config, sample_feeds, smtp_server) -> tuple[Settings, Handler, Path]:
    """The sample feeds fetched; the subscribers of ASKS with their interests; an SMTP server."""
    handler = Handler()
    server = smtp_server(handler)
    path = write_config(
        '[list]\nfrom_address = "papers@example.org"\nbase_url = "https://papers.example.org"\n'
        '[schedule]\ntimezone = "UTC"\n[topics]\nwatch_keywords = ["quantum"]\n'
        + "".join(
            f'[[sources]]\nname = "{n}"\nkind = "arxiv-rss"\npath = "{sample_feeds}/{n}.xml"\n'
            for n in ("arxiv-cs", "arxiv-science")
        )
        + server.config(connections=2)
    )
    settings = load_settings(path, env={"NEWSLETTER_SECRET_KEY": SECRET})
    with Store.open(settings.database_url) as store:
        assert run_fetch(settings, store, now=T0).ok
        robots = [p for p in store.papers() if "robot" in p.title.lower()][:4]
        assert len(robots) == 4
        for addr, ask in ASKS.items():
            sub, _ = store.add_subscriber(addr, addr[0].upper() + addr[1:3], now=T0)
            if ask == "library":  # four of the day's robot papers (never picked back)
                change = InterestsChange(
                    library=tuple(LibraryPaper(p.title, p.abstract, p.id) for p in robots)
                )
            elif ask is not None:
                change = InterestsChange(keywords=ask[0], categories=ask[1], only_for_you=ask[2])
            else:
                continue
            assert store.update_interests(sub.id, change, now=T0) is not None
    return settings, handler, path


def send(settings: Settings, **kwargs) -> None:
    with Store.open(settings.database_url) as store:
        report = run_send(settings, store, issue_date=DAY, now=now, fetch=False, **kwargs)
    assert report.delivery is not None and report.delivery.failed == 0, report


def texts(handler: Handler, addr: str) -> list[tuple[bytes, str, str]]:
    """(raw bytes, text, html) of every copy ``addr`` got, in order."""
    out = []
    for r in handler.by_rcpt()[addr]:
        msg = email.message_from_bytes(r.data, policy=email.policy.default)
        text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
        out.append((r.data, text, html))
    return out


def for_you_lines(text: str) -> list[tuple[str, str]]:
    """(the first line of each pick's title, its reason) of the text's "For you"."""
    section = text.partition("FOR YOU · ")[2].partition("\nIN THIS ISSUE")[0]
    picks = re.findall(r"^ ?\d+\. (.+)\n(?:    .+\n)*?    Why: (.+(?:\n      .+)*)", section, re.M)
    return [(title, " ".join(why.split())) for title, why in picks]


def toc(text: str) -> list[tuple[int, str]]:
    block = text.partition("IN THIS ISSUE\n")[2].partition("\n\n")[0]
    return [(int(m[1]), m[2]) for m in re.finditer(r"^ *(\d+)\. (.+?) \(\d+\)$", block, re.M)]


def headings(text: str) -> list[tuple[int, str]]:
    return [
        (int(m[1]), m[2])
        for m in re.finditer(r"^={72}\n(\d+)\. (.+?) · \d+ papers?\n={72}$", text, re.M)
    ]


def expected(settings: Settings, addr: str):
    """What `newsletter digest --as` shows for ``addr``: rank's picks and topic order."""
    with Store.open(settings.database_url) as store:
        sub = store.subscriber(addr)
        assert sub is not None
        digest = build_issue_digest(store, settings, DAY)
        mine = store.interests(sub.id)
    return personal_digest(digest, mine, count=settings.render.for_you, seed=settings.topics.seed)


def test_each_subscriber_gets_their_for_you_and_topic_order_everyone_else_the_plain_issue(day):
    settings, handler, _ = day
    send(settings)
    assert sorted(handler.by_rcpt()) == sorted(ASKS)

    for addr in ("ada@example.org", "fay@example.org", "dee@example.org"):
        seen = expected(settings, addr)
        [(_, text, html)] = texts(handler, addr)
        picks = for_you_lines(text)
        assert len(picks) == len(seen.for_you.picks) == 5, addr
        for (line, why), pick in zip(picks, seen.for_you.picks, strict=True):
            assert " ".join(pick.paper.title.split()).startswith(line)
            assert why == pick.reason
        labels = [t.label for t in seen.digest.topics]  # in the subscriber's order
        numbered = list(enumerate(labels, 1))
        assert toc(text) == numbered and headings(text) == numbered, addr
        # the HTML: the section above the table of contents, then the topics in this order
        assert html.index('class="topic for-you"') < html.index('class="toc"')
        section = html.partition('class="topic for-you"')[2].partition('class="toc"')[0]
        assert section.count('<div class="pick"') == 5
        for pick in seen.for_you.picks:
            assert f'<a href="{pick.paper.url}"' in section
        toc_html = re.findall(r'class="toc-item"[^>]*>(\d+)\. <a href="#topic-(\d+)"', html)
        anchors = re.findall(r'<a name="(topic-\d+)"', html)
        assert [int(k) for k, _ in toc_html] == list(range(1, len(labels) + 1))
        assert [f"topic-{t}" for _, t in toc_html] == anchors
    # Ada's picks are her keywords'; Fay's come from her library
    assert all(
        "mentions '" in why for _, why in for_you_lines(texts(handler, "ada@example.org")[0][1])
    )
    fay = for_you_lines(texts(handler, "fay@example.org")[0][1])
    assert all("in your library" in why for _, why in fay)
    # the topics really were reordered for someone
    plain_labels = [t.label for t in expected(settings, "bob@example.org").digest.topics]
    assert [t.label for t in expected(settings, "ada@example.org").digest.topics] != plain_labels

    # Cy reads "For you" alone: no table of contents, no topic, the web version named
    [(_, cy, cy_html)] = texts(handler, "cy@example.org")
    assert "FOR YOU · 5 papers" in cy and "IN THIS ISSUE" not in cy and "WATCHED" not in cy
    assert headings(cy) == [] and 'class="toc"' not in cy_html and 'name="topic-' not in cy_html
    assert web_url(settings, DAY) in cy and "Unsubscribe with one click" in cy

    # Bob has no interests: the issue rendered without any "For you" machinery, byte for byte
    with Store.open(settings.database_url) as store:
        issue = store.issue(DAY)
        bob = store.subscriber("bob@example.org")
        digest = build_issue_digest(store, settings, DAY)
    assert issue is not None and bob is not None
    unmarked = render_issue(digest, settings, web_url=web_url(settings, DAY), markers=False)
    plain = dataclasses.replace(issue, html=unmarked.html, text=unmarked.text)
    [(bob_bytes, bob_text, _)] = texts(handler, "bob@example.org")
    want = IssueMailer(settings, plain, SECRET, issue.created_at).message(bob).data
    assert bob_bytes.replace(b"\r\n", b"\n") == want.replace(b"\r\n", b"\n")
    assert "FOR YOU" not in bob_text and toc(bob_text) == list(enumerate(plain_labels, 1))

    # Dee and Eve asked for the same: one copy, carried by both rows
    [(_, dee, _)], [(_, eve, _)] = (
        texts(handler, "dee@example.org"),
        texts(handler, "eve@example.org"),
    )
    footer = "-" * 72
    assert (
        dee.partition("FOR YOU")[2].partition(footer)[0]
        == (eve.partition("FOR YOU")[2].partition(footer)[0])
    )
    with Store.open(settings.database_url) as store, store.read() as conn:
        copies = conn.execute(
            sa.select(sa.func.count()).select_from(schema.personal_copies)
        ).scalar_one()
        carried = conn.execute(sa.select(schema.personal_deliveries.c.copy_id)).scalars().all()
    assert copies == 4 and len(carried) == 5  # Ada, Cy, Dee = Eve, Fay


def test_a_resend_is_the_copy_frozen_with_the_row_and_a_late_subscriber_gets_theirs(day):
    """Ada's message is in flight when the sender dies (her row left SENDING); she then
    changes her interests.  The resend is the first message byte for byte.  Gus, who
    subscribes after the first run, is queued by the second with a copy of his own."""
    settings, handler, path = day
    send(settings)
    [(first, first_text, _)] = texts(handler, "ada@example.org")
    d = schema.deliveries
    with Store.open(settings.database_url) as store:
        ada = store.subscriber("ada@example.org")
        assert ada is not None
        with store.write() as conn:  # what a SIGKILL in DATA leaves (tests/test_send_crash.py)
            conn.execute(
                d.update()
                .where(d.c.subscriber_id == ada.id)
                .values(status=DeliveryStatus.SENDING.value, claimed_by="dead:1:run:0")
            )
        store.update_interests(ada.id, InterestsChange(keywords=("quantum",)), now=T0)
        gus, _ = store.add_subscriber("gus@example.org", "Gus", now=T0)
        store.update_interests(gus.id, InterestsChange(keywords=("robot",)), now=T0)
    send(settings)
    [(_, _, _), (again, _, _)] = texts(handler, "ada@example.org")
    assert again == first  # same Message-ID, same "For you", same order: same bytes
    assert "mentions 'robot'" in first_text and "mentions 'quantum'" not in first_text
    assert [r.rcpt_tos for r in handler.received[len(ASKS) :]] in (
        [["ada@example.org"], ["gus@example.org"]],
        [["gus@example.org"], ["ada@example.org"]],
    )
    [(_, gus_text, _)] = texts(handler, "gus@example.org")
    assert for_you_lines(gus_text) and all(
        "mentions 'robot'" in why for _, why in for_you_lines(gus_text)
    )

    # preview --as: the copy frozen with her row, not her interests of now
    out = path.parent / "preview"
    r = CliRunner().invoke(
        cli,
        [
            "-c",
            str(path),
            "preview",
            "--date",
            DAY.isoformat(),
            "--out",
            str(out),
            "--as",
            "ADA@example.org",
        ],
        env={"NEWSLETTER_SECRET_KEY": SECRET},
    )
    assert r.exit_code == 0, r.output
    shown = (out / "issue.txt").read_text(encoding="utf-8")
    assert shown.rstrip("\n") == first_text.rstrip("\n")
    assert (out / "issue.eml").read_bytes() == first  # the message itself, Date and all
    assert "FOR YOU" in (out / "issue.html").read_text(encoding="utf-8").upper()


def test_preview_as_someone_not_queued_yet_shows_their_interests_of_now(day):
    settings, _handler, path = day
    out = path.parent / "preview"

    def preview(*args: str) -> str:
        r = CliRunner().invoke(
            cli,
            ["-c", str(path), "preview", "--date", DAY.isoformat(), "--out", str(out), *args],
            env={"NEWSLETTER_SECRET_KEY": SECRET},
        )
        assert r.exit_code == 0, r.output
        return (out / "issue.txt").read_text(encoding="utf-8")

    ada = preview("--as", "ada@example.org")  # a draft: nothing stored, nothing queued
    seen = expected(settings, "ada@example.org")
    assert [why for _, why in for_you_lines(ada)] == [p.reason for p in seen.for_you.picks]
    assert toc(ada) == list(enumerate((t.label for t in seen.digest.topics), 1))
    sample = preview()
    assert "FOR YOU" not in sample and "Hello Sample Reader," in sample
    r = CliRunner().invoke(
        cli, ["-c", str(path), "preview", "--out", str(out), "--as", "zed@example.org"]
    )
    assert r.exit_code == 1 and "no subscriber zed@example.org" in r.output


def test_for_you_off_keeps_each_subscribers_topic_order(day, write_config):
    settings, handler, path = day
    off = write_config(path.read_text() + "[render]\nfor_you = 0\n", name="off.toml")
    settings = load_settings(off, env={"NEWSLETTER_SECRET_KEY": SECRET})
    send(settings)
    [(_, text, html)] = texts(handler, "ada@example.org")
    assert "FOR YOU" not in text and "for-you" not in html
    labels = [t.label for t in expected(settings, "ada@example.org").digest.topics]
    assert toc(text) == list(enumerate(labels, 1)) == headings(text)
    # "For you" alone without a "For you": every topic, in Cy's order
    [(_, cy, _)] = texts(handler, "cy@example.org")
    cy_labels = [t.label for t in expected(settings, "cy@example.org").digest.topics]
    assert toc(cy) == list(enumerate(cy_labels, 1))


def test_an_issue_queued_before_the_upgrade_goes_out_plain_to_everyone(day):
    """A database from the version before copies, with today's issue rendered (without
    markers) and queued: it upgrades, and the rows go out as they were queued."""
    from test_paper_identity import tables_before

    from newsletter.models import IssueStatus
    from newsletter.pipeline import digest_papers
    from newsletter.store import migrations

    settings, handler, _ = day
    mine = next(v for v, what, _ in migrations.MIGRATIONS if "For you" in what)
    with Store.open(settings.database_url) as store:
        digest = build_issue_digest(store, settings, DAY)
        old = render_issue(digest, settings, web_url=web_url(settings, DAY), markers=False)
        issue = store.save_issue(
            DAY,
            status=IssueStatus.READY,
            subject=old.subject,
            preheader=old.preheader,
            html=old.html,
            text=old.text,
            papers=digest_papers(digest),
            now=T0,
        )
        assert store.queue_deliveries(issue.id, now=T0) == len(ASKS)
        with store.write() as conn:  # as the version before left it
            before = tables_before(mine)
            for table in reversed(schema.metadata.sorted_tables):
                if table.name not in before:
                    table.drop(conn)
            sm = schema.schema_migrations
            conn.execute(sm.delete().where(sm.c.version >= mine))
        assert store.schema_version() == mine - 1
    send(settings)
    with Store.open(settings.database_url) as store:
        assert store.schema_version() == migrations.LATEST
    assert sorted(handler.by_rcpt()) == sorted(ASKS)
    for addr in ASKS:
        [(_, text, _)] = texts(handler, addr)
        assert "FOR YOU" not in text and toc(text) == list(
            enumerate((t.label for t in digest.topics), 1)
        )


def test_a_switcher_gets_for_you_ranked_on_the_papers_of_their_variant(weeks):  # noqa: F811
    """Dee reads the daily and switches to the weekly mid-week: her first weekly is a
    variant (only what her dailies did not carry), and her "For you" is ranked on its
    papers, a copy of its own; Wes, a weekly reader with the same interests, gets the
    issue's.  Everyone still gets every paper once (the editions' own check)."""
    from test_editions import MON, days

    from newsletter.models import Edition

    w = weeks(MON, MON + dt.timedelta(days=7))
    w.subscribe(MON, dee=Edition.DAILY, wes=Edition.WEEKLY, ann=Edition.DAILY)
    for name in ("dee", "wes"):
        sub = w.store.subscriber(f"{name}@example.org")
        assert sub is not None
        change = InterestsChange(keywords=("learning", "model"))
        assert w.store.update_interests(sub.id, change, now=w.clock())
    wed = MON + dt.timedelta(days=2)
    for day in days(MON, MON + dt.timedelta(days=7)):
        w.day(day)
        if day == wed:
            w.switch("dee", Edition.WEEKLY, day)
    got = w.check()  # each message carries exactly its ledger row's papers, each paper once
    assert got["dee"] == [Edition.DAILY.value] * 3 + [Edition.WEEKLY.value]
    d, pd, pc = schema.deliveries, schema.personal_deliveries, schema.personal_copies
    weekly = w.store.issue(MON + dt.timedelta(days=7), Edition.WEEKLY)
    assert weekly is not None
    with w.store.read() as conn:
        rows = {
            r.email: (r.variant_id, r.text)
            for r in conn.execute(
                sa.select(schema.subscribers.c.email, d.c.variant_id, pc.c.text)
                .select_from(d.join(schema.subscribers).outerjoin(pd).outerjoin(pc))
                .where(d.c.issue_id == weekly.id)
            )
        }
    (dee_variant, dee_text), (wes_variant, wes_text) = (
        rows["dee@example.org"],
        rows["wes@example.org"],
    )
    assert dee_variant is not None and wes_variant is None
    assert dee_text and wes_text and dee_text != wes_text  # two copies: of two bodies
    ledger = w.ledger()
    for name, text in (("dee", dee_text), ("wes", wes_text)):
        picked = {f"arxiv:{i}" for i in re.findall(r"https://arxiv\.org/abs/(\S+)", text)}
        papers = ledger[f"{name}@example.org"][-1][3]
        assert picked and picked <= papers, name  # ranked on what their message carries
    message = next(
        r.message for r in w.smtp.received if r.rcpt_tos == ["dee@example.org"]
        and "weekly" in r.message["Message-ID"]
    )  # fmt: skip
    assert dee_text in message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "ann@example.org" in {t for r in w.smtp.received for t in r.rcpt_tos}
