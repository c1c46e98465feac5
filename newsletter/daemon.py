"""`newsletter daemon`: the daily job at the operator's local time, for months, unattended.

APScheduler 3's BlockingScheduler runs the same ``pipeline.run_send`` as `newsletter send`
from a CronTrigger in ``schedule.timezone``.  One daemon per database (a lock file next to
it); SIGTERM/SIGINT stop it cleanly (the message in flight is finished, the ledger left
consistent, exit 0); a second signal exits at once.  A JSON status file next to the
database tells `newsletter status` what the daemon is doing and when it runs next.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from newsletter import schedule as sched
from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.lock import LockHeld, hold_lock, lock_path
from newsletter.models import (
    BounceCheck,
    DaemonState,
    DaemonStatus,
    DeliveryCounts,
    Edition,
    IssueRecord,
    IssueStatus,
    LastSend,
    issue_name,
)
from newsletter.stopping import StopOnSignals
from newsletter.store import Store

log = logging.getLogger(__name__)


def status_path(settings: Settings) -> Path:
    """``<database>.daemon.json`` for SQLite, else ``newsletter-daemon.json`` by the config."""
    lock = lock_path(settings.database_url)
    if lock is not None:
        return lock.with_name(lock.name.removesuffix(".lock") + ".daemon.json")
    base = Path(settings.config_path).parent if settings.config_path else Path.cwd()
    return base / "newsletter-daemon.json"


def read_status(settings: Settings) -> DaemonStatus | None:
    """The daemon's status file, with ``running`` telling whether its pid is alive here;
    None when there is none (or it is not one)."""
    path = status_path(settings)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        pid, host, state = doc.get("pid"), doc.get("host"), doc.get("state")
    except (OSError, ValueError, AttributeError):
        return None
    alive = False
    if isinstance(pid, int) and host == socket.gethostname() and state != DaemonState.STOPPED:
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
    try:
        return DaemonStatus.from_json(doc, running=alive)
    except (KeyError, TypeError, ValueError):
        return None


class Daemon:
    def __init__(self, settings: Settings, store: Store, *, now: Callable[[], dt.datetime]):
        self.settings = settings
        self.store = store
        self.now = now
        self.tz = sched.zone(settings.schedule)
        self.stop = threading.Event()
        self.status = DaemonStatus(
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=now(),
            timezone=sched.zone_name(self.tz),
            send_at=settings.schedule.send_at,
            days=settings.schedule.days,
            weekly_day=settings.schedule.weekly_day,
            state=DaemonState.STARTING,
            checks_bounces=settings.bounces.kind != "none",
        )
        self._status_lock = threading.Lock()  # the send and the bounce jobs both write it
        self.scheduler: Any = None
        self.trigger: Any = None
        self._busy = threading.Lock()  # held while a job runs
        self._checking = threading.Lock()  # held while a bounce check runs (its own thread)

    # ------------------------------------------------------------------ status file

    def _write_status(self, **changes: Any) -> None:
        with self._status_lock:
            status = dataclasses.replace(self.status, **changes)
            if self.trigger is not None and status.state is not DaemonState.STOPPED:
                nxt = self.trigger.get_next_fire_time(None, self.now())
                status = dataclasses.replace(status, next_run=nxt)
            self.status = status
            path = status_path(self.settings)
            tmp = path.with_suffix(path.suffix + ".tmp")
            try:
                tmp.write_text(json.dumps(status.to_json(), indent=1) + "\n", encoding="utf-8")
                os.replace(tmp, path)
            except OSError as e:
                log.warning("cannot write the status file %s: %s", path, e.strerror)

    # ------------------------------------------------------------------ jobs

    def scheduled_job(self) -> None:
        """At send time: the daily issue if today is in ``days``, then the weekly one if
        it is ``weekly_day``."""
        from newsletter.pipeline import issue_date_for

        today = issue_date_for(self.now(), self.settings)
        for edition in sched.editions_on(today, self.settings.schedule):
            self.send_job("scheduled", today, edition)

    def send_job(
        self,
        when: str = "scheduled",
        issue_date: dt.date | None = None,
        edition: Edition = Edition.DAILY,
    ) -> None:
        """Send (or resume) the issue (``edition``, ``issue_date``), by default today's."""
        from newsletter.pipeline import AllSourcesFailed, issue_date_for, run_send

        if self.stop.is_set():
            return
        if issue_date is None:
            issue_date = issue_date_for(self.now(), self.settings)
        name = issue_name(issue_date, edition)
        self._write_status(state=DaemonState.SENDING, current=name)
        log.info("issue %s: %s run started", name, when)
        outcome: str
        issue: DeliveryCounts | None = None
        run: DeliveryCounts | None = None
        error: str | None = None
        try:
            report = run_send(
                self.settings,
                self.store,
                issue_date=issue_date,
                now=self.now,
                stop=self.stop,
                edition=edition,
            )
            outcome = report.outcome
            d = report.delivery
            if d is not None:
                # The issue's counts and this run's share, both from the ledger.
                issue, run = d.totals, d.run
                level = logging.WARNING if (d.failed or d.deferred or d.stopped) else logging.INFO
                stopped = f" ({d.stopped})" if d.stopped else ""
                log.log(level, "issue %s: %s: %s%s", name, outcome, d.summary(), stopped)
            else:
                log.info(
                    "issue %s: no new papers; skipped (schedule.on_empty = %s)",
                    name,
                    self.settings.schedule.on_empty,
                )
        except LockHeld as e:
            outcome = "locked"
            log.warning("issue %s: not sent by this daemon: %s", name, e)
        except (AllSourcesFailed, NewsletterError) as e:
            outcome, error = "failed", str(e)
            log.error("issue %s: %s", name, e)
        except Exception as e:  # keep the daemon alive for tomorrow; the traceback is logged
            outcome, error = "crashed", repr(e)
            log.exception("issue %s: the run crashed", name)
        last = LastSend(issue_date, outcome, self.now(), edition, issue, run, error)
        self._write_status(state=DaemonState.IDLE, current=None, last=last)
        self._log_next()

    def fetch_job(self) -> None:
        from newsletter.pipeline import run_fetch

        if self.stop.is_set():
            return
        try:
            report = run_fetch(self.settings, self.store, now=self.now())
        except NewsletterError as e:
            log.error("fetch failed: %s", e)
            return
        log.info(
            "fetched: %d new paper(s); %d of %d source(s) failed",
            report.new,
            len(report.failed),
            len(report.runs),
        )

    def bounce_job(self) -> None:
        """Read the bounce mailbox once (``newsletter bounces check``), beside the sends:
        it has its own thread, so an hour-long send does not hold bounces back."""
        from newsletter.bounces import run_bounce_check

        if self.stop.is_set():
            return
        with self._checking:
            try:
                report = run_bounce_check(self.settings, self.store, now=self.now, stop=self.stop)
            except NewsletterError as e:
                done = BounceCheck(self.now(), error=str(e))
                log.error("bounce check failed: %s", e)
            except Exception as e:  # keep the daemon alive; the traceback is logged
                done = BounceCheck(self.now(), error=repr(e))
                log.exception("bounce check crashed")
            else:
                done = BounceCheck(
                    self.now(),
                    read=report.read,
                    bounced=len(report.bounced),
                    unsubscribed=len(report.unsubscribed),
                    error=report.error or None,
                )
                level = logging.WARNING if report.error else logging.INFO
                log.log(level, "bounce check: %s", "; ".join(report.summary()))
            self._write_status(bounces=done)

    def _log_next(self) -> None:
        nxt = self.status.next_run
        if nxt:
            log.info("next run at %s", nxt.isoformat())

    # ------------------------------------------------------------------ signals

    def _on_stop(self) -> None:
        """The first SIGTERM/SIGINT (the stop event is set already)."""
        self._write_status(state=DaemonState.STOPPING)
        if self.scheduler is not None and self.scheduler.running:
            # wait=False: the handler runs on the main thread, which must get back to
            # run() to wait for the job (deliver() sees self.stop and winds down).
            self.scheduler.shutdown(wait=False)

    # ------------------------------------------------------------------ main

    def run(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.blocking import BlockingScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        s = self.settings.schedule
        self.trigger = sched.cron_trigger(s.send_at, sched.either_edition(s), self.tz)
        self.scheduler = BlockingScheduler(
            timezone=self.tz,
            executors={
                "default": ThreadPoolExecutor(max_workers=1),
                "bounces": ThreadPoolExecutor(max_workers=1),
            },
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": s.misfire_grace_time,
            },
        )
        self.scheduler.add_job(self._guarded(self.scheduled_job), self.trigger, id="send")
        if s.fetch_at:
            fetch_trigger = sched.cron_trigger(s.fetch_at, sched.either_edition(s), self.tz)
            self.scheduler.add_job(self._guarded(self.fetch_job), fetch_trigger, id="fetch")
        checks = self.settings.bounces
        if checks.kind != "none":
            # The first check at start-up (beside any catch-up send: its own thread), then
            # every check_interval minutes.
            self.scheduler.add_job(
                self.bounce_job,
                IntervalTrigger(minutes=checks.check_interval, timezone=self.tz),
                id="bounces",
                executor="bounces",
                next_run_time=self.now(),
            )
        due: list[tuple[dt.date, Edition]] = []
        for edition in Edition:
            late = self._interrupted_before_today(edition)
            if late is not None:
                log.info(
                    "catch-up: the issue of %s was interrupted; resuming",
                    issue_name(late, edition),
                )
                due.append((late, edition))
        for edition in Edition:
            decision = self._catch_up(edition)
            log.info(
                "%s%s: %s",
                "catch-up" if decision.due else "no catch-up",
                "" if edition is Edition.DAILY else f" ({edition.value})",
                decision.reason,
            )
            if decision.due:
                due.append((decision.issue_date, edition))
        if due:
            # one job, so the interrupted issues are finished before today's start
            self.scheduler.add_job(
                self._guarded(self.catch_up_job), "date", run_date=self.now(), args=[due]
            )
        with StopOnSignals(self.stop, on_stop=self._on_stop):
            log.info(
                "daemon started (pid %d): sending at %s %s on %s, the weekly on %s%s",
                os.getpid(),
                s.send_at,
                sched.zone_name(self.tz),
                s.days,
                s.weekly_day,
                f", fetching at {s.fetch_at}" if s.fetch_at else "",
            )
            if checks.kind != "none":
                log.info("reading the bounce mailbox every %d minute(s)", checks.check_interval)
            self._write_status(state=DaemonState.IDLE)
            self._log_next()
            self.scheduler.start()  # returns after shutdown (a signal)
            with self._busy, self._checking:  # wait for the jobs in flight to wind down
                pass
        self._write_status(state=DaemonState.STOPPED, next_run=None)
        log.info("daemon stopped")

    def _guarded(self, job: Callable[..., None]) -> Callable[..., None]:
        def run(*args: Any) -> None:
            with self._busy:
                job(*args)

        return run

    def catch_up_job(self, due: list[tuple[dt.date, Edition]]) -> None:
        for issue_date, edition in due:
            self.send_job("catch-up", issue_date, edition)

    def _finished(self, issue: IssueRecord | None) -> bool | None:
        """None: no issue; False: begun and unfinished; True: done."""
        if issue is None:
            return None
        return issue.status is IssueStatus.SENT or (
            self.store.unfinished(issue.id) == 0
            and self.store.delivery_counts(issue.id).recipients > 0
        )

    def _catch_up(self, edition: Edition) -> sched.CatchUp:
        """Whether today's issue of ``edition`` is due now, like a missed send time."""
        issue = self.store.issue(self.now().astimezone(self.tz).date(), edition)
        schedule = self.settings.schedule
        if edition is Edition.WEEKLY:
            schedule = sched.weekly_schedule(schedule)
        return sched.catch_up(self.now(), schedule, self.tz, issue_finished=self._finished(issue))

    def _interrupted_before_today(self, edition: Edition) -> dt.date | None:
        """The last issue of ``edition`` before today, when it was begun and not finished
        (the daemon was stopped or crashed across midnight) and is recent: yesterday's
        daily, or a weekly of the last six days.  Finishing it late beats leaving people
        out; older unfinished issues are left to ``newsletter send --date``, and a warning
        names them."""
        today = self.now().astimezone(self.tz).date()
        recent = today - dt.timedelta(days=1 if edition is Edition.DAILY else 6)
        late = None
        for issue in self.store.issues(limit=30, edition=edition):
            if issue.issue_date >= today or issue.status is not IssueStatus.READY:
                continue  # today's is the schedule's business; SENT and EMPTY are done
            if self._finished(issue) is not False:
                continue
            if issue.issue_date >= recent and late is None:
                late = issue.issue_date
            else:
                option = "" if edition is Edition.DAILY else f" --edition {edition.value}"
                log.warning(
                    "the issue of %s was interrupted and is not resumed (%s): "
                    "`newsletter send --date %s%s` finishes it",
                    issue.name,
                    "older than yesterday" if edition is Edition.DAILY else "a week old",
                    issue.issue_date,
                    option,
                )
        return late


def run_daemon(settings: Settings, store: Store, *, now: Callable[[], dt.datetime]) -> None:
    """Run until SIGTERM/SIGINT; :class:`LockHeld` at once if another daemon runs."""
    with hold_lock(store.engine, "daemon"):
        Daemon(settings, store, now=now).run()
