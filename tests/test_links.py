"""links.py: the URLs and token purposes every email and page uses.  That each link lands
on a page of `newsletter serve` is tested end to end in test_web.py."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter import links
from newsletter.config import load_settings
from newsletter.links import Purpose, return_path
from newsletter.tokens import BadToken, verify

SETTINGS = load_settings(None, env={})  # list.base_url = http://localhost:8080
DAY = dt.date(2025, 3, 14)


def test_links_mailed_before_links_py_existed_still_work():
    """The purposes are part of every token already sent: these were made by the code
    before the purposes moved here, and must come out the same."""
    assert links.unsubscribe_token("a-secret", 42) == "NDIA.4uFp6m0T20TMS_tFueUilPpf"
    assert (
        links.preferences_token("a-secret", 42, DAY)
        == "NDIAMTc0OTY4NjQwMA.zjdVd6WxPLPrTM0DdaGisTY4"
    )
    assert (
        return_path("bounces@lists.example.org", "a-secret", 42, DAY)
        == "bounces+42-20250314-jstjnkqiiknyysoi@lists.example.org"
    )
    assert links.unsubscribe_url(SETTINGS, "T") == "http://localhost:8080/unsubscribe/T"
    assert links.issue_url(SETTINGS, DAY) == "http://localhost:8080/archive/2025-03-14"
    assert links.preferences_url(SETTINGS, "T") == "http://localhost:8080/preferences/T"


def test_a_token_of_one_purpose_opens_no_other_link():
    token = links.unsubscribe_token("a-secret", 42)
    assert verify("a-secret", Purpose.UNSUBSCRIBE, token, now=0) == "42"
    for other in set(Purpose) - {Purpose.UNSUBSCRIBE}:
        with pytest.raises(BadToken):
            verify("a-secret", other, token, now=0)


def test_the_mailto_names_the_token_in_its_subject():
    assert links.unsubscribe_mailto(SETTINGS, "ab.c+d") == (
        f"mailto:{SETTINGS.list.from_address}?subject=unsubscribe%20ab.c%2Bd"
    )


@pytest.mark.parametrize(
    ("contact", "url"),
    [
        ("editor@example.org", "mailto:editor@example.org"),
        ("https://example.org/contact", "https://example.org/contact"),
        ("mailto:editor@example.org", "mailto:editor@example.org"),
        ("the editors", ""),
        ("javascript:alert(1)", ""),
    ],
)
def test_the_contact_link(contact, url):
    assert links.contact_url(contact) == url
