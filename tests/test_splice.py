"""A subscriber's copy of the issue, spliced from the issue rendered once: the markers, the
plain issue they leave (byte for byte the issue rendered without them), the topics in a
subscriber's order with their numbers, "For you" alone, the "For you" section itself, and
what goes on the wire (it decodes to exactly the spliced issue)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.config import load_settings
from newsletter.delivery.message import MessageTemplate
from newsletter.errors import TemplateError
from newsletter.links import preferences_token, preferences_url
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.personal.interests import ForYouPick
from newsletter.placeholders import personalize as fill
from newsletter.render import RenderedIssue, render_issue
from newsletter.render.for_you import ForYouRenderer, PickView, pick_views
from newsletter.render.sample import sample_digest
from newsletter.splice import Layout, PersonalCopy, has_markers, strip, tidy_text

NOW = dt.datetime(2026, 4, 27, 5, 30, tzinfo=dt.UTC)
SETTINGS = load_settings(None, env={})
WEB = "https://papers.example.org/archive/2025-03-14"

DIGESTS = {
    "small": sample_digest(12, topics=4, picks=2, seed=1),
    "watched": sample_digest(40, topics=5, picks=2, seed=2, watched=3),
    "12 topics": sample_digest(300, topics=12, picks=2, seed=3),
    "one topic": sample_digest(3, topics=1, picks=1, seed=4),
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, RenderedIssue]:
    return {name: render_issue(d, SETTINGS, web_url=WEB) for name, d in DIGESTS.items()}


# --------------------------------------------------------------------------- the plain issue


@pytest.mark.parametrize("name", [*DIGESTS, "empty"])
def test_without_its_markers_the_issue_is_the_one_rendered_without_them(name):
    digest = DIGESTS.get(name) or sample_digest(0)
    marked = render_issue(digest, SETTINGS, web_url=WEB)
    plain = render_issue(digest, SETTINGS, web_url=WEB, markers=False)
    assert not has_markers(plain.html, "html") and not has_markers(plain.text, "text")
    assert has_markers(marked.html, "html") == (name != "empty")
    assert strip(marked.html, "html") == plain.html
    assert strip(marked.text, "text") == plain.text
    for kind, body in (("html", marked.html), ("text", marked.text)):
        layout = Layout.of(body, kind)  # type: ignore[arg-type]
        assert layout.join() == strip(body, kind)  # type: ignore[arg-type]
    # placeholders.personalize() gives a reader the plain issue
    assert "nl:" not in fill(marked, unsubscribe_url="https://u", preferences_url="https://p")[0]


def test_marker_lines_lend_their_markers_and_leave_the_lines_as_they_were():
    marked = (
        "a  \n%%NL:run%%\n\n%%NL:t:1%%\nb\n\n%%NL:/t%%\n\n\n%%NL:t:2%%c%%NL:/t%%\n%%NL:/run%%\n"
    )
    assert (
        tidy_text(marked)
        == "a\n\n%%NL:run%%%%NL:t:1%%b%%NL:/t%%\n\n%%NL:t:2%%c%%NL:/t%%%%NL:/run%%\n"
    )
    assert strip(tidy_text(marked), "text") == tidy_text(strip(marked, "text"))


@pytest.mark.parametrize(
    "body, problem",
    [
        ("<!--nl:run-->x<!--nl:/run-->", "a run holds topic items"),
        ("<!--nl:topics-->x", "/topics is missing"),
        ("x<!--nl:/t-->", "unexpected marker"),
        ("<!--nl:n--><!--nl:for-you--><!--nl:/n-->", "a number holds text only"),
    ],
)
def test_markers_out_of_order_are_refused(body, problem):
    with pytest.raises(ValueError, match=problem):
        Layout.of(body, "html")


def test_a_template_with_its_markers_out_of_order_is_a_template_error(tmp_path):
    (tmp_path / "digest.txt.j2").write_text('{{ mark("/t") }}\nx\n', encoding="utf-8")
    s = load_settings(None, env={"NEWSLETTER_RENDER__TEMPLATES_DIR": str(tmp_path)})
    with pytest.raises(TemplateError, match=r"digest\.txt\.j2: a subscriber's copy cannot be made"):
        render_issue(DIGESTS["small"], s)


# --------------------------------------------------------------------------- a copy


def toc_text(text: str) -> list[tuple[int, str]]:
    """(number, label) of the text's table of contents."""
    block = text.partition("IN THIS ISSUE\n")[2].partition("\n\n")[0]
    return [(int(m[1]), m[2]) for m in re.finditer(r"^ *(\d+)\. (.+?) \(\d+\)$", block, re.M)]


def headings_text(text: str) -> list[tuple[int, str]]:
    return [
        (int(m[1]), m[2])
        for m in re.finditer(r"^={72}\n(\d+)\. (.+?) · \d+ papers?\n={72}$", text, re.M)
    ]


def toc_html(html: str) -> list[tuple[int, str]]:
    return [
        (int(m[1]), m[2])
        for m in re.finditer(r'<p class="toc-item"[^>]*>(\d+)\. <a href="#topic-(\d+)"', html)
    ]


def sections_html(html: str) -> list[str]:
    return re.findall(r'<a name="(topic-\d+)"', html)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_copy_has_the_topics_in_its_order_numbered_from_one(rendered, data):
    name = data.draw(st.sampled_from(sorted(DIGESTS)))
    issue, digest = rendered[name], DIGESTS[name]
    n = len(digest.topics)
    order = tuple(data.draw(st.permutations(range(1, n + 1))))
    copy = PersonalCopy("<tr><td>FY</td></tr>\n", "FOR YOU\n\n", order)
    html, text = fill(issue, unsubscribe_url="https://u", preferences_url="https://p", copy=copy)
    labels = [t.label for t in digest.topics]
    want = [(k, labels[t - 1]) for k, t in enumerate(order, 1)]
    assert toc_text(text) == want
    assert headings_text(text) == want
    assert toc_html(html) == [(k, str(t)) for k, t in enumerate(order, 1)]
    assert sections_html(html)[-n:] == [f"topic-{t}" for t in order]
    # "For you" comes first, after the greeting
    assert "%%NL_GREETING%%" not in text and text.index("FOR YOU") < text.index("IN THIS ISSUE")
    assert html.index("FY") < html.index('class="toc"')
    # the same lines, each where its topic went (numbers aside): nothing lost, nothing added
    plain_html, plain_text = fill(issue, unsubscribe_url="https://u", preferences_url="https://p")

    def lines(text: str) -> list[str]:
        return sorted(re.sub(r" *\d+", "#", text).splitlines())

    assert lines(text.replace("FOR YOU\n\n", "")) == lines(plain_text)
    assert len(html) == len(plain_html) + len(copy.html)
    if digest.watched:  # the watched section stays where it was, unnumbered
        assert "WATCHED - " in text and text.index("WATCHED - ") < text.index("\n1. ")


def test_the_digests_order_is_the_plain_issue_with_a_section():
    issue = render_issue(DIGESTS["12 topics"], SETTINGS, web_url=WEB)
    copy = PersonalCopy("<tr><td>FY</td></tr>\n", "FOR YOU\n\n", tuple(range(1, 13)))
    html, text = fill(issue, unsubscribe_url="https://u", preferences_url="https://p", copy=copy)
    plain_html, plain_text = fill(issue, unsubscribe_url="https://u", preferences_url="https://p")
    assert text == plain_text.replace("Hello,\n\n", "Hello,\n\nFOR YOU\n\n")
    assert html.replace("<tr><td>FY</td></tr>\n", "") == plain_html


def test_for_you_alone_leaves_every_topic_out(rendered):
    issue = rendered["watched"]
    copy = PersonalCopy("<tr><td>FY</td></tr>\n", "FOR YOU\n1. a paper", (), only_for_you=True)
    html, text = fill(issue, unsubscribe_url="https://u", preferences_url="https://p", copy=copy)
    assert "IN THIS ISSUE" not in text and "WATCHED" not in text and "=" * 72 not in text
    assert (
        text.startswith("Daily Papers\n") and "Hello,\n\nFOR YOU\n1. a paper\n\n" + "-" * 72 in text
    )
    assert 'class="toc"' not in html and 'name="topic-' not in html and "FY" in html
    assert "Unsubscribe" in html and "unsubscribe" in text.lower()


def test_without_markers_everyone_gets_the_plain_issue():
    """An issue stored before this version (or from an operator's template without
    markers) has no personal part: a copy changes nothing."""
    issue = render_issue(DIGESTS["small"], SETTINGS, web_url=WEB, markers=False)
    copy = PersonalCopy("FY", "FOR YOU", (4, 3, 2, 1), only_for_you=True)
    assert fill(issue, unsubscribe_url="https://u", preferences_url="https://p", copy=copy) == fill(
        issue, unsubscribe_url="https://u", preferences_url="https://p"
    )


# --------------------------------------------------------------------------- the wire


def build(issue: RenderedIssue, sub: Subscriber, copy: PersonalCopy | None = None) -> bytes:
    template = MessageTemplate(
        SETTINGS,
        subject=issue.subject,
        html=issue.html,
        text=issue.text,
        date=NOW,
        secret="k",
        issue_date=NOW.date(),
    )
    return template.render(sub, copy)[1]


SUB = Subscriber(7, "ada@example.org", "Ada", SubscriberStatus.ACTIVE, NOW, NOW)
hostile = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=300
)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), html=hostile, text=hostile, only=st.booleans())
def test_what_goes_on_the_wire_decodes_to_the_spliced_issue(rendered, data, html, text, only):
    name = data.draw(st.sampled_from(sorted(DIGESTS)))
    issue = rendered[name]
    order = tuple(data.draw(st.permutations(range(1, len(DIGESTS[name].topics) + 1))))
    copy = PersonalCopy(html, text, order, only)
    raw = build(issue, SUB, copy)
    _, _, body = raw.partition(b"\r\n\r\n")
    assert all(len(x) <= 76 for x in body.split(b"\r\n"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    want_html, want_text = fill(
        issue,
        unsubscribe_url=msg["List-Unsubscribe"].split(",")[0].strip("<> "),
        preferences_url=preferences_url(SETTINGS, preferences_token("k", SUB.id, NOW.date())),
        name=SUB.name,
        email=SUB.email,
        copy=copy,
    )
    got_text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    got_html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert got_text.rstrip("\n") == want_text.replace("\r\n", "\n").rstrip("\n")
    assert got_html.rstrip("\n") == want_html.replace("\r\n", "\n").rstrip("\n")


def test_a_plain_message_is_the_message_of_the_issue_without_markers(rendered):
    """Subscribers without interests: today's bytes, from today's path."""
    for name, issue in rendered.items():
        unmarked = render_issue(DIGESTS[name], SETTINGS, web_url=WEB, markers=False)
        assert build(issue, SUB) == build(unmarked, SUB)
    copy = PersonalCopy("<tr><td>FY</td></tr>\n", "FOR YOU\n\n", (2, 1, 3, 4))
    mine = build(rendered["small"], SUB, copy)
    assert mine != build(rendered["small"], SUB)
    assert mine == build(rendered["small"], SUB, dataclasses.replace(copy))  # deterministic


# --------------------------------------------------------------------------- the section


@pytest.fixture(scope="module")
def renderer() -> ForYouRenderer:
    return ForYouRenderer(SETTINGS, web_url=WEB)


def test_the_section_shows_each_pick_with_why_escaped_as_the_issue_escapes(renderer):
    paper = DIGESTS["small"].topics[0].picks[0].paper
    hostile_paper = dataclasses.replace(
        paper, title='<script>alert("x")</script> & %%NL_EMAIL%%', url="javascript:alert(1)"
    )
    picks = [
        ForYouPick(paper, 3.0, "mentions 'retrieval'; close to 3 papers in your library"),
        ForYouPick(hostile_paper, 1.0, "close to “<b>bold</b>” in your library"),
    ]
    views = pick_views(picks, SETTINGS)
    assert views[1].url == ""  # a link that is not http(s) is dropped, as in the topics
    html = renderer.html(views, only_for_you=False)
    assert html.startswith('<tr><td class="topic for-you"') and html.endswith("</td></tr>\n")
    assert f'<a href="{paper.url}"' in html and "· 2 papers" in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp;" in html
    assert "%%NL_EMAIL%%" not in html and "<script>" not in html and "<b>" not in html
    assert "mentions &#39;retrieval&#39;; close to 3 papers in your library" in html
    assert 'style="' in html  # inlined once, copied into every pick
    assert html.count('<div class="pick"') == 2 and "nl:" not in html
    text = renderer.text(views, only_for_you=False)
    assert text.startswith("=" * 72 + "\nFOR YOU · 2 papers\n") and text.endswith("\n\n")
    assert " 1. " + paper.title[:30] in text
    assert "    Why: mentions 'retrieval'; close to 3 papers in your library\n" in text
    assert '<script>alert("x")</script>' in text and "%%NL_EMAIL%%" not in text
    assert max(len(x) for x in text.splitlines() if "://" not in x) <= 76


def test_no_pick_and_for_you_alone_say_so(renderer):
    html = renderer.html([], only_for_you=True)
    assert "Nothing in today's papers matches your interests." in html
    assert f'<a href="{WEB}"' in html and "· 0 papers" in html
    text = renderer.text([], only_for_you=True)
    assert "Nothing in today's papers matches your interests." in text
    assert text.endswith(WEB)  # the last line: the topics that would follow are left out
    view = PickView("A title", "", "A. Author · cs.IR", "by A. Author")
    assert "<a " not in renderer.html([view], only_for_you=False).partition("pick-title")[2][:80]
