"""The per-subscriber parts of an issue: the tokens rendering leaves in it, and what each
becomes for one subscriber (delivery, previews, test copies) or for nobody in particular
(the archive's copy).

An issue is rendered once, with CSS inlined once (:mod:`newsletter.render`); the
unsubscribe link, the greeting and the like are tokens in it, filled in per subscriber by
:func:`personalize` (one regex pass) or, for the wire, by
:class:`newsletter.delivery.message.MessageTemplate`, which encodes the bodies once and
splices the encoded values in.  A subscriber with interests also gets their "For you" and
topic order spliced in (:mod:`newsletter.splice`).  Both take the values from
:func:`values`.  Pure.
"""

from __future__ import annotations

import html as html_lib
import re
from typing import Protocol

from newsletter.splice import Layout, PersonalCopy
from newsletter.text import clean, snippet

#: "%%" never survives in feed text (:func:`newsletter.text.clean` with ``neutralise``), so
#: a paper title cannot forge a token; the tokens pass through premailer/lxml untouched.
PLACEHOLDERS = {
    "unsubscribe_url": "%%NL_UNSUBSCRIBE_URL%%",
    "preferences_url": "%%NL_PREFERENCES_URL%%",
    "greeting": "%%NL_GREETING%%",
    "recipient": "%%NL_RECIPIENT%%",
    "name": "%%NL_NAME%%",
    "email": "%%NL_EMAIL%%",
}
PLACEHOLDER_RE = re.compile(r"%%NL_[A-Z_]+%%")
#: A subscriber's name, as the greeting shows it, is cut to this many characters.
NAME_CHARS = 60


class Bodies(Protocol):
    """An issue's two bodies with the tokens in them (a rendered or a stored issue)."""

    @property
    def html(self) -> str: ...

    @property
    def text(self) -> str: ...


def values(
    *, unsubscribe_url: str, preferences_url: str, name: str = "", email: str = ""
) -> tuple[dict[str, str], dict[str, str]]:
    """What each token becomes for one subscriber: ``(for html, for text)``."""
    name = snippet(clean(name, neutralise=False), NAME_CHARS)
    email = clean(email, neutralise=False)
    text = {
        PLACEHOLDERS["unsubscribe_url"]: _url(unsubscribe_url),
        PLACEHOLDERS["preferences_url"]: _url(preferences_url),
        PLACEHOLDERS["greeting"]: f"Hello {name}," if name else "Hello,",
        PLACEHOLDERS["recipient"]: email or "you",
        PLACEHOLDERS["name"]: name,
        PLACEHOLDERS["email"]: email,
    }
    return {k: html_lib.escape(v, quote=True) for k, v in text.items()}, text


def personalize(
    issue: Bodies,
    *,
    unsubscribe_url: str,
    preferences_url: str,
    name: str = "",
    email: str = "",
    copy: PersonalCopy | None = None,
) -> tuple[str, str]:
    """Fill the tokens of ``issue``: ``(html, text)``.  One regex pass per body.

    ``copy``: the subscriber's "For you" and topic order, spliced in
    (:mod:`newsletter.splice`); without one, the plain issue (its markers removed)."""
    escaped, plain = values(
        unsubscribe_url=unsubscribe_url, preferences_url=preferences_url, name=name, email=email
    )
    html = Layout.of(issue.html, "html").join(copy)
    text = Layout.of(issue.text, "text").join(copy)
    # A single pass: a value that itself looks like a token is not expanded again.
    html = PLACEHOLDER_RE.sub(lambda m: escaped.get(m.group(0), m.group(0)), html)
    text = PLACEHOLDER_RE.sub(lambda m: plain.get(m.group(0), m.group(0)), text)
    return html, text


def _url(url: str) -> str:
    return clean(url, neutralise=False).replace(" ", "%20")
