"""The per-issue message template: what it puts on the wire decodes to exactly what
`placeholders.personalize` gives, for any text, names and addresses."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.config import load_settings
from newsletter.delivery.message import MessageTemplate
from newsletter.links import PREFERENCES_DAYS, message_id, preferences_token, preferences_url
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.placeholders import PLACEHOLDERS, personalize
from newsletter.render import RenderedIssue
from newsletter.tokens import BadToken, verify

NOW = dt.datetime(2026, 4, 27, 5, 30, tzinfo=dt.UTC)
SETTINGS = load_settings(None, env={})
TOKENS = list(PLACEHOLDERS.values())

text_pieces = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=120),
    st.sampled_from(TOKENS),
    st.sampled_from([" ", "\n", "  \n", "=", "==", ".", "\n.\n", "From x", "é" * 90, "x" * 200]),
)
bodies = st.lists(text_pieces, max_size=25).map("".join)
names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
locals_ = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}", fullmatch=True)


def one_line(s: str) -> str:
    return " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", s).split())


def build(html: str, text: str, sub: Subscriber, subject: str = "Daily — 2026-04-27") -> bytes:
    template = MessageTemplate(
        SETTINGS, subject=subject, html=html, text=text, date=NOW, secret="k", issue_date=NOW.date()
    )
    return template.render(sub)[1]


def subscriber(name: str, local: str) -> Subscriber:
    return Subscriber(7, f"{local}@example.org", name, SubscriberStatus.ACTIVE, NOW, NOW)


@settings(max_examples=150, deadline=None)
@given(html=bodies, text=bodies, name=names, local=locals_)
def test_decodes_to_the_personalised_issue(html, text, name, local):
    sub = subscriber(name, local)
    raw = build(html, text, sub)
    lines = raw.split(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(x) for x in lines) <= 998
    _, _, body = raw.partition(b"\r\n\r\n")
    assert all(len(x) <= 76 for x in body.split(b"\r\n"))  # quoted-printable lines
    raw.decode("ascii")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    want_html, want_text = personalize(
        RenderedIssue("s", "p", html, text),
        unsubscribe_url=msg["List-Unsubscribe"].split(",")[0].strip("<> "),
        preferences_url=preferences_url(SETTINGS, preferences_token("k", 7, NOW.date())),
        name=name,
        email=sub.email,
    )
    # Line breaks travel as CRLF and come back as such.
    got_text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    got_html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
    # A body always ends with a line break on the wire.
    assert got_text.rstrip("\n") == want_text.replace("\r\n", "\n").rstrip("\n")
    assert got_html.rstrip("\n") == want_html.replace("\r\n", "\n").rstrip("\n")


@settings(max_examples=60, deadline=None)
@given(name=names, local=locals_, subject=st.text(max_size=200))
def test_headers_round_trip(name, local, subject):
    sub = subscriber(name, local)
    msg = email.message_from_bytes(
        build("<p>x</p>", "x", sub, subject), policy=email.policy.default
    )
    (to,) = msg["To"].addresses
    assert to.addr_spec == sub.email
    assert to.display_name == one_line(name)
    assert str(msg["Subject"]) == one_line(subject)
    assert msg["Message-ID"] == message_id(SETTINGS, "k", NOW.date(), 7)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_the_same_input_gives_the_same_bytes():
    sub = subscriber("Ada", "ada")
    assert build("<p>%%NL_GREETING%%</p>", "hi", sub) == build("<p>%%NL_GREETING%%</p>", "hi", sub)


def test_the_tune_your_digest_link_is_a_token_of_its_own_purpose():
    sub = subscriber("Ada", "ada")
    msg = email.message_from_bytes(
        build('<a href="%%NL_PREFERENCES_URL%%">Tune</a>', "%%NL_PREFERENCES_URL%%", sub),
        policy=email.policy.default,
    )
    text = msg.get_body(("plain",)).get_content().strip()
    assert msg.get_body(("html",)).get_content().strip() == f'<a href="{text}">Tune</a>'
    base = f"{SETTINGS.list.base_url.rstrip('/')}/preferences/"
    assert text.startswith(base)
    token = text.removeprefix(base)
    issued = dt.datetime.combine(NOW.date(), dt.time(), dt.UTC).timestamp()
    last = issued + PREFERENCES_DAYS * 86_400
    assert verify("k", "preferences", token, now=last) == str(sub.id)
    # Never an unsubscribe token, nor the other way round; it stops PREFERENCES_DAYS after.
    with pytest.raises(BadToken):
        verify("k", "unsubscribe", token, now=issued)
    with pytest.raises(BadToken):
        verify("k", "preferences", token, now=last + 1)
    unsubscribe = msg["List-Unsubscribe"].split(",")[0].strip("<> ").rsplit("/", 1)[1]
    with pytest.raises(BadToken):
        verify("k", "preferences", unsubscribe, now=issued)
