"""Signed tokens for links in emails (unsubscribe, confirm): HMAC-SHA256, URL-safe.

A token binds a purpose and a subject (a subscriber id or an address) and, optionally, an
expiry; a token made for one purpose never verifies for another.  Unsubscribe tokens have
no expiry so the link in an old issue keeps working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from newsletter.errors import NewsletterError


class BadToken(NewsletterError):
    """The link is not valid: it was changed, cut short, made for something else or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, payload: str) -> str:
    key = hashlib.sha256(b"newsletter-token\0" + secret.encode()).digest()
    return _b64(hmac.new(key, f"{purpose}\0{payload}".encode(), hashlib.sha256).digest()[:18])


def sign(secret: str, purpose: str, subject: str, *, expires: int | None = None) -> str:
    """A token for ``subject``; ``expires`` is a Unix time after which it is refused."""
    if not secret:
        raise ValueError("an empty secret cannot sign")
    payload = _b64(f"{subject}\0{expires if expires is not None else ''}".encode())
    return f"{payload}.{_mac(secret, purpose, payload)}"


def verify(secret: str, purpose: str, token: str, *, now: float) -> str:
    """The subject of a valid token; :class:`BadToken` otherwise, whatever ``token`` holds."""
    # A genuine token is ASCII.  Anything else is refused before hmac.compare_digest, which
    # raises TypeError on a str with other characters; it compares bytes here all the same.
    if not token.isascii():
        raise BadToken("the link is not valid")
    try:
        payload, mac = token.split(".")
        expected = _mac(secret, purpose, payload)
        if not hmac.compare_digest(mac.encode("ascii"), expected.encode("ascii")):
            raise BadToken("the link is not valid")
        subject, _, expires = _unb64(payload).decode().partition("\0")
    except (ValueError, UnicodeDecodeError):
        raise BadToken("the link is not valid") from None
    if expires and now > int(expires):
        raise BadToken("the link has expired")
    return subject
