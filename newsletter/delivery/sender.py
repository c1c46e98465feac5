"""The senders of one delivery run: each claims rows, sends, records, and does what the
policy says with every row (:mod:`newsletter.delivery.policy`); none decides anything.

One :class:`Sender` per connection, on its own thread; what they share is a :class:`Run`.
A transient failure never holds up the list: the row waits in its sender's retry queue
(a heap ordered by the time before which it is not tried again) and the connection moves
on to the next subscriber.  The sender only waits when nothing else is left.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from newsletter.config import Settings
from newsletter.delivery import policy
from newsletter.delivery.message import IssueMailer
from newsletter.delivery.transport import RateLimiter, Transport, TransportUnavailable
from newsletter.errors import SendError
from newsletter.lock import worker_gone
from newsletter.models import Claim, DeliveryStatus, IssueRecord, SubscriberStatus
from newsletter.store import Store
from newsletter.store.ledger import ClaimLost

log = logging.getLogger(__name__)

#: Rows one sender claims at a time: small, so a stop leaves little to hand back.
BATCH = 10
#: Workers: at most this often a process asks whether the holders of claims are alive.
DEAD_CHECK_EVERY = 1.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Unrecorded:
    """A message the server accepted whose SENT is not written yet (one per connection).

    It is written in the same transaction as the next message's SENDING, or flushed
    before the sender waits or stops, so each message costs one ledger write, and a
    crash still leaves at most one row per connection whose fate is unknown.
    """

    def __init__(self, store: Store):
        self.store = store
        self.item: tuple[Claim, str] | None = None

    def take(self) -> tuple[Claim, str] | None:
        item, self.item = self.item, None
        return item

    def flush(self, now: dt.datetime) -> None:
        item = self.take()
        if item is not None:
            self.store.mark_sent(item[0], item[1], now=now)


class Budget:
    """How many more messages this run may send (``send --limit``)."""

    def __init__(self, limit: int | None):
        self.left = limit
        self.lock = threading.Lock()

    def take(self) -> bool:
        if self.left is None:
            return True
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


@dataclass(order=True)
class _Job:
    """A claimed row waiting for its (next) try; ordered by when it is due."""

    due: float  # time.monotonic() before which it is not tried
    seq: int
    claim: Claim = field(compare=False)
    tries: int = field(default=0, compare=False)  # attempts made in this run
    doubt: bool = field(default=False, compare=False)  # an earlier copy may have arrived

    @property
    def row(self) -> policy.Row:
        return policy.Row(self.claim.subscriber.status, self.tries, self.doubt)


class ConnectionGone(Exception):
    """This sender's connection cannot be (re)opened; the others may still work."""


class Run:
    """What the senders of one delivery run share."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        issue: IssueRecord,
        mailer: IssueMailer,
        *,
        now: Callable[[], dt.datetime],
        stop: threading.Event,
        limit: int | None,
        lease: float | None,
        senders: int,
        progress: Callable[[DeliveryStatus], None] | None,
    ):
        self.store = store
        self.issue = issue
        self.mailer = mailer
        self.now = now
        self.stop = stop
        self.limit = limit
        self.lease = lease
        self.progress = progress
        smtp = settings.delivery.transport == "smtp"
        self.rate = RateLimiter(settings.smtp.rate_limit if smtp else 0)
        self.budget = Budget(limit)
        # Sender n of this run is "<id>:<n>": the rows it settles keep that name, so the
        # run's own counts can be read back from the ledger.
        self.id = f"{worker_id()}:{secrets.token_hex(3)}"
        self.lock = threading.Lock()
        self.stopped: str | None = None
        self.lost: str | None = None  # why a sender's connection gave out
        self.crashed: list[BaseException] = []
        self.live = senders
        self._next_dead_check = 0.0

    def sender_id(self, n: int) -> str:
        return f"{self.id}:{n}"

    def halt(self, reason: str) -> None:
        with self.lock:
            self.stopped = self.stopped or reason
        self.stop.set()

    def settled(self, status: DeliveryStatus) -> None:
        # Live progress only; the report's counts are read back from the ledger.
        if self.progress:
            self.progress(status)

    def take_over_dead(self) -> bool:
        """Workers: queue again the rows of workers known to be dead (their liveness lock,
        :func:`newsletter.lock.worker_alive`, is free), at once rather than after their
        lease; a live worker, even a stalled one, keeps its rows until its lease runs out.
        True when rows came back."""
        with self.lock:
            if time.monotonic() < self._next_dead_check:
                return False
            self._next_dead_check = time.monotonic() + DEAD_CHECK_EVERY
        took = False
        for holder in sorted(self.store.claim_holders(self.issue.id) - {self.id}):
            if not worker_gone(self.store.engine, holder):
                continue
            back = self.store.recover(self.issue.id, now=self.now(), holder=holder)
            if back.requeued or back.in_doubt:
                took = True
                log.warning(
                    "worker %s is gone: %d of its row(s) queued again, %d of them in doubt "
                    "(they were in DATA when it died)",
                    holder,
                    back.requeued + back.in_doubt,
                    back.in_doubt,
                )
        return took

    def leave(self, n: int, lost: str | None) -> None:
        """Sender ``n`` is done; ``lost``: because its connection could not be reopened.
        The run stops when that happens to the last sender still at work."""
        with self.lock:
            self.live -= 1
            last = self.live == 0
            if lost:
                self.lost = lost
        if lost and last:
            self.halt(lost)
        elif lost:
            log.warning(
                "connection %d: %s; going on with the other connections (is smtp.connections "
                "more than the server allows?)",
                n,
                lost,
            )


class Sender:
    """One connection: claims rows, sends them, keeps its transient failures for later."""

    def __init__(self, run: Run, n: int, transport: Transport):
        self.run_ = run
        self.n = n
        self.me = run.sender_id(n)
        self.transport = transport
        self.unrecorded = Unrecorded(run.store)
        self.fresh: deque[Claim] = deque()  # claimed, not tried yet
        self.retries: list[_Job] = []  # a heap: the next due first
        self.seq = itertools.count()

    def run(self) -> None:
        r = self.run_
        lost: str | None = None
        try:
            if r.stop.is_set():  # asked to stop before delivery began (during the fetch)
                return
            self._connect()
            while (job := self._next()) is not None:
                self._do(job, policy.next_step(job.row, stopping=r.stop.is_set()))
        except ConnectionGone as e:
            lost = str(e)
        except TransportUnavailable as e:
            r.halt(str(e))
        except BaseException as e:  # a bug: stop the others, re-raised by deliver()
            r.crashed.append(e)
            r.halt(f"a sender crashed: {e!r}")
        finally:
            try:
                self._hand_back()
            finally:
                r.leave(self.n, lost)

    # ------------------------------------------------------------------ the queue

    def _next(self) -> _Job | None:
        """The next row to try: a retry that is due, else a fresh claim; waits for a retry
        that is not due yet when nothing else is left.  None: this sender is done."""
        r = self.run_
        while not r.stop.is_set():
            if self.retries and self.retries[0].due <= time.monotonic():
                return heapq.heappop(self.retries)
            if self.fresh:
                if not r.budget.take():
                    r.halt(f"stopped after --limit {r.limit}")
                    return None
                claim = self.fresh.popleft()
                return _Job(0.0, next(self.seq), claim, 0, claim.in_doubt)
            claims = r.store.claim(r.issue.id, self.me, BATCH, now=r.now(), lease=r.lease)
            if claims:
                self.fresh.extend(claims)
                continue
            self.unrecorded.flush(r.now())  # before waiting: one unrecorded row at most
            if self.retries:
                r.stop.wait(max(0.0, self.retries[0].due - time.monotonic()))
                continue
            if r.lease is None or r.store.unfinished(r.issue.id) == 0:
                return None
            # Other workers hold the rest: take over a dead one's, else look again soon.
            if not r.take_over_dead():
                r.stop.wait(min(r.lease / 4, 1.0))
        return None

    def _hand_back(self) -> None:
        """Record the last accepted message and give back every row not settled."""
        r = self.run_
        try:
            self.unrecorded.flush(r.now())
            rest = list(self.fresh) + [job.claim for job in self.retries]
            if rest:
                # CLAIMED rows go back to QUEUED; an in-doubt mark stays with the row.
                r.store.release(rest, now=r.now())
        finally:
            self.fresh.clear()
            self.retries.clear()
            self.transport.close()

    # ------------------------------------------------------------------ doing

    def _connect(self) -> None:
        """Open the connection, retrying transient failures; :class:`ConnectionGone`
        when it cannot be opened (the server cannot be reached, or refuses more
        connections), :class:`TransportUnavailable` when nothing can be sent at all."""
        r = self.run_
        for attempt in itertools.count(1):
            try:
                self.transport.open()
                return
            except SendError as e:
                delay = policy.reopen_delay(attempt)
                if delay is None:
                    raise ConnectionGone(e.reason) from e
                log.info("%s; trying again in %.1f s", e.reason, delay)
                self.unrecorded.flush(r.now())
                if r.stop.wait(delay):
                    return

    def _do(self, job: _Job, step: policy.Step) -> None:
        """Carry out ``step`` for ``job``: the one place rows change state in a run."""
        r = self.run_
        claim, sub = job.claim, job.claim.subscriber
        match step:
            case policy.Send():
                self._send(job)
            case policy.Skip(reason):
                r.store.mark_done(claim, DeliveryStatus.SKIPPED, reason, now=r.now())
                r.settled(DeliveryStatus.SKIPPED)
            case policy.Reconnect():
                heapq.heappush(self.retries, _Job(0.0, next(self.seq), claim, job.tries, job.doubt))
                self._connect()
            case policy.Requeue(doubt):
                r.store.requeue(claim, now=r.now(), in_doubt=doubt)
            case policy.Fail(reason, bounce, doubt):
                r.store.mark_done(claim, DeliveryStatus.FAILED, reason, now=r.now(), in_doubt=doubt)
                if bounce:
                    r.store.set_subscriber_status(sub.id, SubscriberStatus.BOUNCED, now=r.now())
                r.settled(DeliveryStatus.FAILED)
            case policy.Defer(reason, doubt):
                r.store.mark_done(
                    claim, DeliveryStatus.DEFERRED, reason, now=r.now(), in_doubt=doubt
                )
                r.settled(DeliveryStatus.DEFERRED)
            case policy.Retry(reason, delay, tries, doubt, in_flight):
                if in_flight:  # the row was SENDING: written back, with the doubt
                    r.store.mark_retry(claim, reason, now=r.now(), in_doubt=doubt)
                due = time.monotonic() + delay
                heapq.heappush(self.retries, _Job(due, next(self.seq), claim, tries, doubt))
                log.info("%s: %s; retrying in %.1f s", sub.email, reason, delay)

    def _send(self, job: _Job) -> None:
        r = self.run_
        claim, sub = job.claim, job.claim.subscriber
        out = r.mailer.message(sub, claim.variant_id, claim.copy)
        r.rate.acquire()
        try:
            reply = self.transport.send(
                out.sender,
                sub.email,  # the transport writes it for the wire (A-label domain)
                out.data,
                lambda: r.store.mark_sending(
                    claim, out.message_id, now=r.now(), sent=self.unrecorded.take()
                ),
            )
        except ClaimLost as e:
            # Our lease ran out (a long stall) and another worker has the row now.
            log.warning("%s; not sent by this worker", e)
        except SendError as e:
            stopping = r.stop.is_set()
            self._do(job, policy.next_step(job.row, e, stopping=stopping, draw=random.random()))
        else:
            # Recorded with the next message's SENDING, or flushed: one write a message.
            self.unrecorded.item = (claim, reply)
            r.settled(DeliveryStatus.SENT)
