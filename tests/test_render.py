"""Rendering: content, escaping, placeholders, size budget, templates, text wrapping."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import html as lxml_html

import newsletter.render as render
import newsletter.templating as templating
from newsletter.config import ListSettings, RenderSettings, Settings
from newsletter.errors import TemplateError
from newsletter.models import Digest, Paper, Pick, Topic
from newsletter.placeholders import PLACEHOLDERS, personalize
from newsletter.render import (
    HTML_BUDGET_BYTES,
    RenderedIssue,
    render_issue,
    subject_for,
)
from newsletter.render.sample import sample_digest
from newsletter.templating import bundled_templates_dir
from newsletter.text import snippet

DAY = dt.date(2025, 3, 14)
WEB = "https://papers.example.org/issues/2025-03-14"
UNSUB = "https://papers.example.org/u?token=abc&list=daily"
PREFS = "https://papers.example.org/preferences/abc"
GMAIL_CLIP = 102 * 1024


def paper(n: int, **kw: object) -> Paper:
    base: dict[str, object] = {
        "id": f"arxiv:2503.{n:05d}",
        "title": f"Paper number {n}",
        "abstract": "First sentence here. Second sentence is longer than the first one.",
        "authors": ("Ada Lovelace", "Alan Turing"),
        "url": f"https://arxiv.org/abs/2503.{n:05d}",
        "pdf_url": f"https://arxiv.org/pdf/2503.{n:05d}",
        "categories": ("cs.LG",),
        "source": "arxiv-cs",
    }
    base.update(kw)
    return Paper(**base)  # type: ignore[arg-type]


def topic(label: str, picks: list[Paper], rest: list[Paper] = (), score: float = 1.0) -> Topic:  # type: ignore[assignment]
    return Topic(
        label=label,
        terms=tuple(label.split()),
        size=len(picks) + len(rest),
        picks=tuple(Pick(p, 0.9, 0.9 if (p.upvotes or 0) > 50 else 0.0, 0.9) for p in picks),
        rest=tuple(rest),
        score=score,
    )


def digest(*topics: Topic, watched: Topic | None = None) -> Digest:
    count = sum(t.size for t in topics) + (watched.size if watched else 0)
    return Digest(
        issue_date=DAY, topics=topics, paper_count=count, sources=("arxiv-cs",), watched=watched
    )


def settings(**render_kw: object) -> Settings:
    return Settings(
        list=ListSettings(name="ML Reading Group", from_address="papers@lab.example.org"),
        render=RenderSettings(**render_kw),  # type: ignore[arg-type]
    )


def doc(html: str) -> lxml_html.HtmlElement:
    return lxml_html.document_fromstring(html.encode())


@pytest.fixture(scope="module")
def small() -> tuple[Digest, RenderedIssue]:
    d = digest(
        topic(
            "diffusion models",
            [
                paper(
                    1,
                    title="Denoising at Scale",
                    upvotes=120,
                    authors=("A One", "B Two", "C Three", "D Four", "E Five"),
                ),
                paper(
                    2,
                    title="Score Matching Revisited",
                    categories=(),
                    source="hf-daily",
                    pdf_url=None,
                ),
            ],
            [paper(3, title="A Rest Paper"), paper(4, title="Another Rest Paper")],
        ),
        topic("LLM reasoning", [paper(5, title="Thinking Step by Step")]),
        watched=topic("watched: Turing", [paper(6, title="Watched Paper")]),
    )
    return d, render_issue(d, settings(), web_url=WEB)


# --------------------------------------------------------------------------- content


def test_content_header_toc_and_sections(small: tuple[Digest, RenderedIssue]) -> None:
    _, issue = small
    root = doc(issue.html)
    body = root.text_content()
    assert "ML Reading Group" in body
    assert "Friday, 14 March 2025" in body
    assert "6 new papers in 2 topics" in body
    # table of contents links to each section's anchor, the watched one first
    toc = [a.get("href") for a in root.cssselect(".toc a")]
    assert toc == ["#watched", "#topic-1", "#topic-2"]
    for href in toc:
        assert root.cssselect(f'a[name="{href[1:]}"]')
    labels = [h.text_content() for h in root.cssselect("h2.topic-label")]
    assert labels[0].startswith("watched: Turing")
    assert labels[1].startswith("diffusion models") and "4 papers" in labels[1]
    assert labels[2].startswith("LLM reasoning") and "1 paper" in labels[2]


def test_picks_have_links_authors_tags_trending_snippet(
    small: tuple[Digest, RenderedIssue],
) -> None:
    _, issue = small
    root = doc(issue.html)
    titles = {a.text_content(): a.get("href") for a in root.cssselect(".pick-title a")}
    assert titles["Denoising at Scale"] == "https://arxiv.org/abs/2503.00001"
    picks = root.cssselect(".pick")
    first = next(p for p in picks if "Denoising at Scale" in p.text_content())
    text = " ".join(first.text_content().split())
    assert "A One, B Two, C Three et al." in text  # max_authors = 3
    assert "D Four" not in text
    assert "cs.LG" in text
    assert "▲ trending, 120 upvotes" in text
    assert "First sentence here." in text
    links = {a.text_content(): a.get("href") for a in first.cssselect(".links a")}
    assert links == {
        "Abstract": "https://arxiv.org/abs/2503.00001",
        "PDF": "https://arxiv.org/pdf/2503.00001",
    }
    second = next(p for p in picks if "Score Matching" in p.text_content())
    assert "hf-daily" in second.text_content()  # the source when there are no categories
    assert "PDF" not in second.text_content()  # no pdf_url
    assert "upvote" not in second.text_content()
    rest = [a.text_content() for a in root.cssselect(".rest a")]
    assert rest == ["A Rest Paper", "Another Rest Paper"]


def test_watched_section_comes_first(small: tuple[Digest, RenderedIssue]) -> None:
    _, issue = small
    assert issue.html.index("Watched Paper") < issue.html.index("Denoising at Scale")
    assert issue.text.index("Watched Paper") < issue.text.index("Denoising at Scale")


def test_footer_unsubscribe_web_and_contact(small: tuple[Digest, RenderedIssue]) -> None:
    _, issue = small
    root = doc(issue.html)
    footer = root.cssselect(".footer")[0]
    hrefs = {a.text_content(): a.get("href") for a in footer.cssselect("a")}
    assert hrefs["Unsubscribe"] == PLACEHOLDERS["unsubscribe_url"]
    assert hrefs["Tune your digest"] == PLACEHOLDERS["preferences_url"]
    assert hrefs["View in a browser"] == WEB
    assert hrefs["papers@lab.example.org"] == "mailto:papers@lab.example.org"
    assert "ML Reading Group" in footer.text_content()
    assert PLACEHOLDERS["unsubscribe_url"] in issue.text
    assert PLACEHOLDERS["preferences_url"] in issue.text
    assert WEB in issue.text and "papers@lab.example.org" in issue.text


def test_contact_setting_wins_and_no_web_link_without_url() -> None:
    s = dataclasses.replace(
        settings(), list=ListSettings(contact="editors@example.org", from_address="x@y.org")
    )
    issue = render_issue(digest(topic("t", [paper(1)])), s)
    assert "editors@example.org" in issue.html and "x@y.org" not in issue.html
    assert "View in a browser" not in issue.html and "View in a browser" not in issue.text


def test_preheader_summarises_topics_and_is_hidden(small: tuple[Digest, RenderedIssue]) -> None:
    _, issue = small
    assert issue.preheader == "6 new papers: diffusion models, LLM reasoning"
    pre = doc(issue.html).cssselect(".preheader")[0]
    assert "display:none" in pre.get("style").replace(" ", "")
    assert pre.text_content().startswith(issue.preheader)
    # it is the first text in <body>, so clients show it as the preview line
    assert issue.html.index(issue.preheader) < issue.html.index("ML Reading Group</p>")


def test_empty_day() -> None:
    d = Digest(issue_date=DAY, topics=(), paper_count=0)
    issue = render_issue(d, settings(), web_url=WEB)
    assert "nothing new today" in issue.subject
    assert "Nothing new today" in issue.html and "Nothing new today" in issue.text
    assert "In this issue" not in issue.html and "IN THIS ISSUE" not in issue.text
    assert PLACEHOLDERS["unsubscribe_url"] in issue.html
    assert issue.preheader == "Nothing new today."


def test_max_authors_and_snippet_settings() -> None:
    long = " ".join(f"Sentence number {i} says something." for i in range(40))
    d = digest(topic("t", [paper(1, abstract=long, authors=("A", "B", "C"))]))
    issue = render_issue(d, settings(max_authors=1, snippet_chars=100))
    pick = doc(issue.html).cssselect(".snippet")[0].text_content()
    assert len(pick) <= 100 and pick.endswith(".")
    assert "A\u00a0et\u00a0al." in issue.html  # "et al." never starts a line


def test_unsafe_urls_are_not_links() -> None:
    d = digest(topic("t", [paper(1, url="javascript:alert(1)", pdf_url="data:text/html,x")]))
    issue = render_issue(d, settings())
    assert "javascript:" not in issue.html and "data:text" not in issue.html
    assert "Paper number 1" in issue.html


# --------------------------------------------------------------------------- safety

HOSTILE = '<script>alert("x")</script></td></table> & {{ 7*7 }} {% if 1 %}y{% endif %} '


@pytest.fixture(scope="module")
def hostile() -> RenderedIssue:
    p = paper(
        1,
        title=HOSTILE + "%%NL_UNSUBSCRIBE_URL%%\r\nBcc: evil@example.org",
        abstract=HOSTILE + "line\r\nbreak %%NL_GREETING%% \x00\x1b[31m",
        authors=("<b>Mallory</b>\r\n", "%%NL_EMAIL%%"),
        categories=("cs.LG</td>",),
    )
    d = digest(topic("<i>label</i> & \r\nSubject: x %%NL_NAME%%", [p], [paper(2, title=HOSTILE)]))
    return render_issue(d, settings(), web_url=WEB)


def test_feed_text_never_becomes_markup(hostile: RenderedIssue) -> None:
    html, _ = personalize(
        hostile, unsubscribe_url=UNSUB, preferences_url=PREFS, name="Ann", email="ann@example.org"
    )
    root = doc(html)
    assert not root.cssselect("script, b, i")
    harmless = digest(topic("t", [paper(1)], [paper(2)]))
    plain = doc(render_issue(harmless, settings(), web_url=WEB).html)
    for tag in ("table", "tr", "td", "a", "p", "div"):  # same markup as a harmless issue
        assert len(root.cssselect(tag)) == len(plain.cssselect(tag)), tag
    assert "&lt;script&gt;" in html
    assert "{{ 7*7 }}" in root.text_content() and "49" not in root.text_content()
    assert "{% if 1 %}y{% endif %}" in root.text_content()
    assert "Mallory" in root.text_content()
    # the only unsubscribe link is the footer's; the title's token stayed text
    assert [a.get("href") for a in root.cssselect("a") if a.get("href") == UNSUB] == [UNSUB]
    assert html.count("ann@example.org") == 1  # the footer, not the author list
    assert "Hello Ann," in html and html.count("Hello Ann") == 1


def test_text_part_has_no_markup_entities_or_control_chars(hostile: RenderedIssue) -> None:
    _, text = personalize(
        hostile, unsubscribe_url=UNSUB, preferences_url=PREFS, name="Ann", email="ann@example.org"
    )
    assert '<script>alert("x")</script>' in text
    assert not re.search(r"&(amp|lt|gt|quot|#\d+);", text)
    assert "\r" not in text and "\x00" not in text and "\x1b" not in text
    assert not re.search(r"^Bcc:", text, re.MULTILINE)
    assert text.count(UNSUB) == 1 and text.count("Hello Ann,") == 1


def test_subject_is_one_line_whatever_the_labels(hostile: RenderedIssue) -> None:
    assert "\r" not in hostile.subject and "\n" not in hostile.subject
    assert "Subject: x" in hostile.subject  # just text inside the subject
    assert "%%NL_NAME%%" not in hostile.subject  # the title is scanned by personalize


def test_personalize_escapes_values_and_does_one_pass() -> None:
    issue = render_issue(digest(topic("t", [paper(1)])), settings())
    html, text = personalize(
        issue,
        unsubscribe_url='https://x.example/u?a=1&b="2"\r\n',
        preferences_url=PREFS,
        name='<b>Ann</b> & "Bo" %%NL_EMAIL%%',
        email="ann@example.org",
    )
    assert 'href="https://x.example/u?a=1&amp;b=&quot;2&quot;"' in html
    assert "&lt;b&gt;Ann&lt;/b&gt; &amp; &quot;Bo&quot; %%NL_EMAIL%%," in html
    assert "<b>Ann</b>" not in html
    assert 'Hello <b>Ann</b> & "Bo" %%NL_EMAIL%%,' in text  # text is not HTML
    assert 'https://x.example/u?a=1&b="2"\n' in text
    plain_html, plain_text = personalize(issue, unsubscribe_url=UNSUB, preferences_url=PREFS)
    assert "Hello," in plain_html and "Hello,\n" in plain_text
    assert "because you subscribed" in plain_html
    assert not re.search(r"%%NL_[A-Z_]+%%", plain_html + plain_text)


# --------------------------------------------------------------------------- subject


def test_subject_format_and_trimming() -> None:
    labels = ["diffusion models", "LLM reasoning", "robot manipulation", "speech", "graphs"]
    d = digest(*(topic(lab, [paper(i)]) for i, lab in enumerate(labels)))
    s = subject_for(d, settings())
    assert s.startswith("ML Reading Group — 2025-03-14: diffusion models, LLM reasoning")
    topics_part = s.split(": ", 1)[1]
    assert len(topics_part) <= render.SUBJECT_TOPICS_CHARS
    assert all(part in labels for part in topics_part.split(", "))  # whole labels only
    custom = settings(subject="[{list_name}] {count} papers, {long_date}")
    assert subject_for(d, custom) == "[ML Reading Group] 5 papers, Friday, 14 March 2025"
    huge = digest(topic("x" * 200, [paper(1)]))
    assert len(subject_for(huge, settings())) < 100


def test_subject_with_unknown_key_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"render\.subject.*\{list_name\}"):
        subject_for(digest(topic("t", [paper(1)])), settings(subject="{nope}"))


# --------------------------------------------------------------------------- output shape


def test_deterministic() -> None:
    d = sample_digest(300, topics=6, watched=3, seed=7)
    a = render_issue(d, settings(), web_url=WEB)
    b = render_issue(d, settings(), web_url=WEB)
    assert a == b


def test_css_is_inlined_and_media_rules_kept(small: tuple[Digest, RenderedIssue]) -> None:
    _, issue = small
    root = doc(issue.html)
    link = root.cssselect(".pick-title a")[0]
    assert "color:#0b57d0" in link.get("style").replace(" ", "")
    assert "font-family" in root.cssselect("td.header")[0].get("style")
    style = root.cssselect("head style")[0].text
    assert "@media (prefers-color-scheme: dark)" in style
    assert "@media only screen and (max-width: 480px)" in style
    assert root.cssselect('meta[name="color-scheme"]')[0].get("content") == "light dark"
    assert not root.cssselect("script, link[rel=stylesheet]")
    assert issue.html.lstrip().lower().startswith("<!doctype html>")


def test_typical_day_shows_everything_with_one_premailer_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    real = render.inline_css

    def counting(html: str) -> str:
        calls.append(html)
        return real(html)

    monkeypatch.setattr(render, "inline_css", counting)
    d = sample_digest(120, topics=6, watched=2)
    issue = render_issue(d, settings(), web_url=WEB)
    assert len(calls) == 1
    assert "more on the" not in issue.html
    assert len(doc(issue.html).cssselect(".pick-title a, .rest a")) == 122


def test_2000_paper_day_stays_under_gmail_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = render.inline_css

    def counting(html: str) -> str:
        calls.append(html)
        return real(html)

    monkeypatch.setattr(render, "inline_css", counting)
    d = sample_digest(2000, topics=8, watched=5)
    issue = render_issue(d, settings(), web_url=WEB)
    assert len(calls) == 1
    html, text = personalize(
        issue,
        unsubscribe_url="https://papers.example.org/u/" + "x" * 200,
        preferences_url="https://papers.example.org/preferences/" + "x" * 200,
        name="A" * 80,
        email="someone.with.a.long.name@subdomain.example.org",
    )
    assert len(issue.html.encode()) <= HTML_BUDGET_BYTES
    assert len(html.encode()) < GMAIL_CLIP
    root = doc(html)
    assert len(root.cssselect("h2.topic-label")) == 9  # every topic is still there
    more = root.cssselect(".more a")
    assert more and all(a.get("href").startswith(WEB + "#") for a in more)
    assert "more on the web version" in text
    m = re.search(r"and (\d+) more", text)
    assert m and int(m.group(1)) > 0


def test_text_lines_are_wrapped() -> None:
    long_word = "Supercalifragilistic" * 3
    d = digest(
        topic(
            "a label that is rather long " * 3,
            [
                paper(
                    1,
                    title="A very long title " * 8,
                    abstract="word " * 200,
                    authors=tuple(f"Author Name{i}" for i in range(10)),
                ),
                paper(2, title=long_word, url="https://example.org/" + "p" * 120),
            ],
            [paper(3, title="Rest title that goes on " * 6)],
        )
    )
    issue = render_issue(d, settings(max_authors=10), web_url=WEB + "/" + "w" * 100)
    _, text = personalize(
        issue, unsubscribe_url="https://u.example/" + "t" * 150, preferences_url=PREFS, name="Ann"
    )
    for line in text.splitlines():
        if len(line) > 78:
            words = line.split()
            long = [w for w in words if len(w) > 60]
            assert long, f"line too long: {line!r}"
            assert all(re.match(r"https?://", w) or w == long_word for w in long), line
            assert len(words) <= 2, f"a long URL should sit (almost) alone: {line!r}"
    assert max(len(x) for x in text.splitlines() if "://" not in x) <= 78


def test_sample_issue_text_reads_well() -> None:
    from newsletter.splice import strip

    issue = render_issue(sample_digest(60, topics=4), settings(), web_url=WEB)
    text = strip(issue.text, "text")  # as a reader gets it: the "For you" markers removed
    lines = text.splitlines()
    assert lines[0] == "ML Reading Group"
    assert all(len(x) <= 78 for x in lines if "://" not in x)
    assert "\n\n\n" not in text and text.endswith("\n")
    assert all(x == x.rstrip() for x in lines)


# --------------------------------------------------------------------------- templates


def test_bundled_templates_exist() -> None:
    d = bundled_templates_dir()
    assert (d / "digest.html.j2").is_file() and (d / "digest.txt.j2").is_file()


def test_operator_template_wins(tmp_path: pytest.TempPathFactory) -> None:
    (tmp_path / "digest.html.j2").write_text(  # type: ignore[operator]
        "<html><body><p class=x>{{ list_name }} custom {{ paper_count }}</p>"
        "<a href='{{ unsubscribe_url }}'>bye</a></body></html>"
    )
    issue = render_issue(digest(topic("t", [paper(1)])), settings(templates_dir=str(tmp_path)))
    assert "ML Reading Group custom 1" in issue.html
    assert "Paper number 1" in issue.text  # the text template is still the bundled one
    html, _ = personalize(issue, unsubscribe_url=UNSUB, preferences_url=PREFS)
    assert UNSUB.replace("&", "&amp;") in html


def test_operator_partial_wins(tmp_path: pytest.TempPathFactory) -> None:
    (tmp_path / "_style.css.j2").write_text(".title { color: #123456; }")  # type: ignore[operator]
    issue = render_issue(digest(topic("t", [paper(1)])), settings(templates_dir=str(tmp_path)))
    assert "color:#123456" in doc(issue.html).cssselect("h1.title")[0].get("style")


def test_broken_template_names_file_and_line(tmp_path: pytest.TempPathFactory) -> None:
    (tmp_path / "digest.html.j2").write_text("<p>\n\n{% if %}</p>\n")  # type: ignore[operator]
    with pytest.raises(TemplateError) as e:
        render_issue(digest(topic("t", [paper(1)])), settings(templates_dir=str(tmp_path)))
    assert f"{tmp_path}/digest.html.j2:3" in str(e.value)


def test_undefined_variable_names_file_and_line(tmp_path: pytest.TempPathFactory) -> None:
    (tmp_path / "digest.txt.j2").write_text("ok\n{{ list_name }}\n{{ no_such_thing }}\n")  # type: ignore[operator]
    with pytest.raises(TemplateError) as e:
        render_issue(digest(topic("t", [paper(1)])), settings(templates_dir=str(tmp_path)))
    assert f"{tmp_path}/digest.txt.j2:3" in str(e.value)
    assert "no_such_thing" in str(e.value)


def test_missing_template_is_a_template_error(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(templating, "bundled_templates_dir", lambda: tmp_path)
    with pytest.raises(TemplateError, match=r"digest\.html\.j2.*not found"):
        render_issue(digest(topic("t", [paper(1)])), settings())


# --------------------------------------------------------------------------- snippets, speed


def test_snippet_cuts_at_sentence_then_word() -> None:
    text = "Short one. This second sentence is a good deal longer than the first. Third."
    assert snippet(text, 200) == text
    second = "Short one. This second sentence is a good deal longer than the first."
    assert snippet(text, 75) == second
    assert snippet(text, 30) == "Short one. This second…"  # the sentence end is too early
    assert snippet(text, 16) == "Short one."
    cut = snippet("alpha beta gamma delta epsilon", 17)
    assert cut == "alpha beta gamma…"
    assert snippet("e.g. 3.5 percent of cases.", 12).endswith("…")  # no cut inside "3.5"


@given(st.text(min_size=0, max_size=400), st.integers(min_value=2, max_value=300))
def test_snippet_never_exceeds_limit(text: str, limit: int) -> None:
    cut = snippet(text, limit)
    assert len(cut) <= limit
    assert text.startswith(cut.removesuffix("…").rstrip())


def test_import_is_lazy() -> None:
    code = (
        "import sys, newsletter.render, newsletter.render.sample; "
        "print(sorted(m for m in ('premailer', 'jinja2', 'lxml', 'cssutils') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- caps on shown text


@pytest.mark.parametrize("word", ["Scaling ", "x"], ids=["words", "one-word"])
def test_long_titles_names_and_labels_are_capped_where_shown(word: str) -> None:
    """A 10,000-character title (or author, category, label, subscriber name) must not make
    a 10,000-character line: each is cut where it is shown, and the text part keeps its
    width except for URLs."""
    huge = (word * 10_000)[:10_000]
    d = digest(
        topic(
            huge,
            [paper(1, title=huge, authors=(huge, "Ada Lovelace"), categories=(huge,))],
            [paper(2, title=huge)],
        )
    )
    issue = render_issue(d, settings(), web_url=WEB)
    html, text = personalize(
        issue, unsubscribe_url=UNSUB, preferences_url=PREFS, name=huge, email="ann@example.org"
    )
    for line in text.splitlines():
        assert len(line) <= render.TEXT_WIDTH or line.strip().startswith("http"), line[:100]
    root = doc(html)
    titles = [a.text_content() for a in root.cssselect(".pick-title a")]
    assert titles and all(len(t) <= render.TITLE_CHARS for t in titles)
    assert all(t.endswith("…") for t in titles)
    assert max(len(t) for t in root.body.itertext()) <= 2 * render.TITLE_CHARS
    assert len(issue.subject) < 200


@pytest.mark.parametrize("name", ["digest.html.j2", "_style.css.j2"])
def test_a_template_not_in_utf8_is_a_template_error(tmp_path, name: str) -> None:
    """An operator's template saved in Latin-1 (or a directory where a template should be)
    is one line naming the file, not a traceback."""
    (tmp_path / name).write_bytes("<p>Caf\xe9 {{ list_name }}</p>\n".encode("latin-1"))
    with pytest.raises(TemplateError, match=rf"{name}.*UTF-8"):
        render_issue(digest(topic("t", [paper(1)])), settings(templates_dir=str(tmp_path)))


@pytest.mark.parametrize("name", ["style.css.j2", "archive.html.j2"])
def test_a_web_template_not_in_utf8_is_a_template_error_too(tmp_path, name: str) -> None:
    """The web pages share the emails' Jinja setup (newsletter.templating), so an
    operator's broken web template is the same one line."""
    from newsletter.web.pages import Pages

    (tmp_path / "web").mkdir()
    (tmp_path / "web" / name).write_bytes("<p>Caf\xe9 {{ list_name }}</p>\n".encode("latin-1"))
    with pytest.raises(TemplateError, match=rf"web/{name}.*UTF-8"):
        pages = Pages(settings(templates_dir=str(tmp_path)))
        pages.page("archive.html.j2", title="t", subscribe_url="/s", archive_url="/a", entries=[])


def test_a_template_copied_when_issues_had_a_web_version_still_renders(tmp_path) -> None:
    """``web`` is always false now; an operator's copy of an older digest.html.j2 tests it."""
    bundled = bundled_templates_dir() / "digest.html.j2"
    (tmp_path / "digest.html.j2").write_text(
        bundled.read_text().replace("<body>", "<body>{% if not web %}<p>mail</p>{% endif %}")
    )
    issue = render_issue(digest(topic("t", [paper(1)])), settings(templates_dir=str(tmp_path)))
    assert "<p>mail</p>" in issue.html
