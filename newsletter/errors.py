"""One exception tree for everything a user can cause or fix.

Each exception's message is written for the operator: the CLI prints ``str(error)`` as a
single line and exits non-zero.  Bugs are not ``NewsletterError`` and keep their traceback.
"""

from __future__ import annotations

from typing import Literal

#: Where in a delivery a failure happened: opening the connection, or the reply to MAIL
#: FROM, RCPT TO or DATA.
SendStage = Literal["connect", "mail", "rcpt", "data"]


class NewsletterError(Exception):
    """Base of every error the program reports to the user as one line."""

    exit_code = 1


class ConfigError(NewsletterError):
    """The configuration is invalid: names the file, the key and what was expected."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        parts = [p for p in (file, key) if p]
        super().__init__(": ".join([*parts, message]))


class StoreError(NewsletterError):
    """The database could not be opened, migrated or written."""


class FeedError(NewsletterError):
    """A source could not be fetched or parsed; carries the source's URL."""

    def __init__(self, url: str, reason: str, *, status: int | None = None):
        self.url = url
        self.reason = reason
        self.status = status
        super().__init__(f"{url}: {reason}")


class TemplateError(NewsletterError):
    """A template is missing or broken; names the file and line."""


class DeliveryError(NewsletterError):
    """A message could not be handed to the transport."""


class SendError(DeliveryError):
    """The server did not take this message: ``permanent`` says whether retrying can help,
    ``bounce`` whether the address does not exist; ``code`` is the server's reply code,
    ``None`` when there was no reply (the connection was lost, or the address cannot be
    written for this server).  A delivery run decides what to do with it
    (:mod:`newsletter.delivery.policy`); elsewhere it is an error like any other."""

    def __init__(
        self,
        reason: str,
        *,
        stage: SendStage,
        code: int | None = None,
        permanent: bool = False,
        bounce: bool = False,
    ):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.permanent = permanent
        self.stage = stage
        self.bounce = bounce
