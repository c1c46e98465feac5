"""Stopping on SIGTERM or SIGINT: the first signal asks the job to wind down, a second one
exits at once.

Both `newsletter send` (a systemd oneshot is stopped with SIGTERM; Ctrl-C is SIGINT) and
the daemon stop this way.  Winding down means the senders finish the message in DATA,
record it, hand their other rows back and return, so the caller can print its summary.
Exiting at once leaves at most one row per connection in flight: the next run resends it
with the same Message-ID and counts it in doubt.  Every ledger step is its own
transaction, so the ledger is consistent either way.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnSignals:
    """Within the block, SIGTERM/SIGINT set ``stop`` (and call ``on_stop``); a second one
    calls ``os._exit(1)``.  Install it from the main thread."""

    def __init__(
        self,
        stop: threading.Event,
        *,
        level: int = logging.INFO,
        on_stop: Callable[[], None] | None = None,
    ):
        self.stop = stop
        self.level = level
        self.on_stop = on_stop
        self.received = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignals:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received += 1
        name = signal.Signals(signum).name
        if self.received > 1:
            log.warning(
                "%s again: exiting now; the next run resumes (a message that was in DATA "
                "is sent again with the same Message-ID and counted in doubt)",
                name,
            )
            os._exit(1)
        log.log(
            self.level,
            "%s: stopping after the message(s) in flight (send it again to exit at once)",
            name,
        )
        self.stop.set()
        if self.on_stop is not None:
            self.on_stop()
