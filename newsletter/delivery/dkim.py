"""DKIM signatures (RFC 6376) on final messages, for operators who send without a signing relay.

``DkimSigner(key_file, selector, domain).sign(message, now=...)`` returns the message with
a ``DKIM-Signature`` header in front: rsa-sha256, ``c=relaxed/simple``, over the headers
RFC 6376 recommends plus List-Unsubscribe-Post (RFC 8058 wants both List-Unsubscribe
headers signed), with From, To, Subject, Date, Message-ID and the List-Unsubscribe pair
signed once more than they occur so that none can be added later.

Why not ``dkim.sign()`` as it is: dkimpy does the RSA operation in pure Python (14-22 ms
for a 2048-bit key here, twice what sending a message costs), parses the key
on every call, and splits the whole message into lines with a regular expression to
find the headers.  So dkimpy provides the parts that decide interoperability (header
selection, relaxed canonicalization, folding, and the verifier the tests check against),
the key is loaded once, the body is hashed as it is (``simple`` body canonicalization
needs no pass over it but trimming trailing empty lines), and the signature comes from
OpenSSL through ``cryptography``.  The body differs per subscriber (their unsubscribe
link), so its hash cannot be computed once per issue; it costs about 0.03 ms for a
33 KiB message, against 0.3-0.7 ms for the RSA signature (bench/dkim_cost.py,
bench/RESULTS.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from pathlib import Path

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from dkim.canonicalization import Relaxed

from newsletter.config import Settings
from newsletter.errors import ConfigError

#: Headers signed when present (dkimpy's RFC 6376 list) and List-Unsubscribe-Post.
SIGNED = frozenset(name.decode() for name in dkim.DKIM.SHOULD) | {"list-unsubscribe-post"}
#: Headers signed one extra time, so that adding one breaks the signature.
OVERSIGNED = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
)
#: RFC 8301: verifiers must refuse keys under 1024 bits.
MIN_KEY_BITS = 1024
_NAME = b"DKIM-Signature"


class DkimSigner:
    """Signs messages for one domain and selector; the private key is read once."""

    def __init__(self, key_file: str | Path, selector: str, domain: str):
        self.selector = selector
        self.domain = domain
        try:
            data = Path(key_file).read_bytes()
        except OSError as e:
            raise ConfigError(
                f"cannot read {key_file}: {e.strerror}", key="smtp.dkim_key_file"
            ) from e
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise ConfigError(
                f"{key_file} is not an unencrypted PEM private key ({e})", key="smtp.dkim_key_file"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_KEY_BITS:
            raise ConfigError(
                f"{key_file}: expected an RSA key of at least {MIN_KEY_BITS} bits "
                "(2048 recommended)",
                key="smtp.dkim_key_file",
            )
        self.key = key

    def sign(self, message: bytes, *, now: dt.datetime) -> bytes:
        """``message`` (the bytes that will be sent) with its signature in front, with CRLF
        line endings as it will travel."""
        message = _crlf(message)
        return self._header(message, now) + message

    def _header(self, message: bytes, now: dt.datetime) -> bytes:
        """The ``DKIM-Signature`` header line (ending in CRLF) for a CRLF ``message``."""
        head, sep, body = message.partition(b"\r\n\r\n")
        headers, _ = dkim.rfc822_parse(head + b"\r\n\r\n")
        present = [name.lower() for name, _ in headers if name.lower().decode() in SIGNED]
        include = [*present, *(n.encode() for n in OVERSIGNED)]
        body_hash = _simple_body_hash(body if sep else b"")
        tags = [
            b"v=1",
            b"a=rsa-sha256",
            b"c=relaxed/simple",
            b"d=" + self.domain.encode(),
            b"s=" + self.selector.encode(),
            b"t=%d" % int(now.timestamp()),
            b"h=" + b" : ".join(include),
            b"bh=" + base64.b64encode(body_hash),
            b"b=",
        ]
        value = dkim.fold(b"; ".join(tags), namelen=len(_NAME))
        signed = Relaxed.canonicalize_headers(dkim.select_headers(headers, include))
        data = b"".join(name + b":" + v for name, v in signed)
        ((name, v),) = Relaxed.canonicalize_headers([(_NAME, b" " + value)])
        data += name + b":" + v.rstrip(b"\r\n")  # the signature header is hashed without CRLF
        sig = base64.b64encode(self.key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
        folded = b"\r\n ".join(sig[i : i + 72] for i in range(0, len(sig), 72))
        return _NAME + b": " + value + b"\r\n " + folded + b"\r\n"


def _crlf(message: bytes) -> bytes:
    """CRLF line endings, as SMTP carries the message (and as it is hashed).

    A message whose first line ends in CRLF is taken to use CRLF throughout, as every
    message delivery builds does: scanning 33 KiB for a bare LF would cost about as much
    as the RSA signature.
    """
    end = message.find(b"\n")
    if end <= 0 or message[end - 1 : end] == b"\r":
        return message
    return b"\r\n".join(message.replace(b"\r\n", b"\n").split(b"\n"))


def _simple_body_hash(body: bytes) -> bytes:
    """SHA-256 of the body in RFC 6376 ``simple`` canonicalization (trailing empty lines
    become one CRLF), without copying it."""
    end = len(body)
    while body.endswith(b"\r\n", 0, end):
        end -= 2
    h = hashlib.sha256(memoryview(body)[:end])
    h.update(b"\r\n")
    return h.digest()


def signer_from_settings(settings: Settings) -> DkimSigner | None:
    """The signer ``smtp.dkim_*`` asks for, or ``None`` when DKIM is not configured."""
    smtp = settings.smtp
    if not smtp.dkim_key_file:
        return None
    domain = smtp.dkim_domain or settings.list.from_address.rpartition("@")[2]
    return DkimSigner(smtp.dkim_key_file, smtp.dkim_selector, domain)
