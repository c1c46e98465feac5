"""The schedule: when the daemon fetches and sends, and whether a missed send is due now.

The decisions here are pure (a time, the schedule, the issue's state in; a decision out);
``newsletter.daemon`` does the waiting and the signals.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import warnings
import zoneinfo
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.config import ScheduleSettings
from newsletter.errors import ConfigError
from newsletter.models import Edition
from newsletter.text import weekday

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger(__name__)

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_time(hhmm: str) -> dt.time:
    """ "07:30" or "07:30:15" (validated by the config loader)."""
    parts = [int(p) for p in hhmm.split(":")] + [0]
    return dt.time(parts[0], parts[1], parts[2])


def zone(schedule: ScheduleSettings) -> dt.tzinfo:
    """schedule.timezone, else the machine's zone; either way a zone with its DST rules."""
    if schedule.timezone:
        return zoneinfo.ZoneInfo(schedule.timezone)
    return machine_zone()


def machine_zone() -> dt.tzinfo:
    """The machine's time zone (TZ, else /etc/localtime and friends) as an IANA zone.

    Not ``datetime.now().astimezone().tzinfo``: that is today's fixed offset (CET, +01:00),
    which sends an hour late from the spring change on.  tzlocal reads the zone once per
    process.  A zone it cannot name (a POSIX rule such as TZ="CET-1CEST,M3.5.0,M10.5.0/3",
    conflicting settings) is a configuration error; what it only warns about (no setting
    at all, so UTC; a setting that disagrees with the clock's offset) goes to the log.
    """
    import tzlocal

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tz: dt.tzinfo = tzlocal.get_localzone()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as e:
            tz_env = os.environ.get("TZ")
            why = f"TZ={tz_env!r} is not an IANA zone name" if tz_env else str(e).split("\n")[0]
            raise ConfigError(
                f"cannot tell this machine's time zone ({why}); set it, "
                'e.g. timezone = "Europe/Berlin"',
                key="schedule.timezone",
            ) from None
    for w in caught:
        log.warning(
            "the machine's time zone: %s; set schedule.timezone to be sure", str(w.message).strip()
        )
    return tz


def zone_name(tz: dt.tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


def cron_trigger(at: str, schedule: ScheduleSettings, tz: dt.tzinfo) -> CronTrigger:
    """A CronTrigger at local wall-clock time ``at`` on ``schedule.days``, in ``tz``.

    Day names only: APScheduler 3 counts numeric days from Monday = 0, unlike crontab.
    """
    from apscheduler.triggers.cron import CronTrigger

    t = parse_time(at)
    return CronTrigger(
        day_of_week=cron_days(schedule.days),
        hour=t.hour,
        minute=t.minute,
        second=t.second,
        timezone=tz,
    )


def cron_days(spec: str) -> str:
    """``days`` for APScheduler: a range across Sunday ("fri-mon"), which it refuses, is
    split in two ("fri-sun,mon-mon")."""
    parts = []
    for part in spec.strip().lower().split(","):
        first, _, last = part.partition("-")
        if last and first != "*" and _DAY_NAMES.index(first) > _DAY_NAMES.index(last):
            parts += [f"{first}-sun", f"mon-{last}"]
        else:
            parts.append(part)
    return ",".join(parts)


def runs_on(day: dt.date, schedule: ScheduleSettings) -> bool:
    """Whether ``schedule.days`` includes ``day``."""
    spec = schedule.days.strip().lower()
    if spec == "*":
        return True
    today = day.weekday()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        a = _DAY_NAMES.index(first)
        b = _DAY_NAMES.index(last) if last else a
        if (a <= today <= b) if a <= b else (today >= a or today <= b):
            return True
    return False


def weekly_on(day: dt.date, schedule: ScheduleSettings) -> bool:
    """Whether the weekly edition goes out on ``day`` (``schedule.weekly_day``)."""
    return day.weekday() == _DAY_NAMES.index(schedule.weekly_day.strip().lower())


def editions_on(day: dt.date, schedule: ScheduleSettings) -> list[Edition]:
    """The editions due on ``day``, in the order they are sent: the daily, then the weekly."""
    due = [Edition.DAILY] if runs_on(day, schedule) else []
    return due + ([Edition.WEEKLY] if weekly_on(day, schedule) else [])


def either_edition(schedule: ScheduleSettings) -> ScheduleSettings:
    """The schedule of the days either edition goes out: ``days`` and ``weekly_day``."""
    days = schedule.days.strip().lower()
    if days != "*":
        days += "," + schedule.weekly_day.strip().lower()
    return dataclasses.replace(schedule, days=days)


def weekly_schedule(schedule: ScheduleSettings) -> ScheduleSettings:
    """The schedule of the weekly edition alone: its day, the same time and grace."""
    return dataclasses.replace(schedule, days=schedule.weekly_day.strip().lower())


@dataclass(frozen=True, slots=True)
class CatchUp:
    due: bool
    issue_date: dt.date
    reason: str


def catch_up(
    now: dt.datetime, schedule: ScheduleSettings, tz: dt.tzinfo, *, issue_finished: bool | None
) -> CatchUp:
    """Whether today's issue should be sent now, at start-up.

    Due when today is a sending day, its send time has passed by no more than
    ``misfire_grace_time`` seconds, and the issue is not finished (``issue_finished``:
    None = no issue yet, False = begun and unfinished, True = done).
    """
    local = now.astimezone(tz)
    today = local.date()
    if issue_finished:
        return CatchUp(False, today, f"the issue of {today} is already sent")
    if not runs_on(today, schedule):
        return CatchUp(False, today, f"{weekday(today)} is not a sending day ({schedule.days})")
    send_at = dt.datetime.combine(today, parse_time(schedule.send_at), tz)
    # A wall-clock time inside a DST gap does not exist; fold it onto the real timeline.
    send_at = send_at.astimezone(dt.UTC).astimezone(tz)
    # Elapsed time, not wall-clock difference: the two differ across a DST change.
    late = (now.astimezone(dt.UTC) - send_at.astimezone(dt.UTC)).total_seconds()
    if late < 0:
        return CatchUp(False, today, f"today's send time {schedule.send_at} is still ahead")
    if late > schedule.misfire_grace_time:
        if issue_finished is False:
            # Begun and interrupted: finishing it late beats leaving people out.
            return CatchUp(True, today, f"the issue of {today} was interrupted; resuming")
        return CatchUp(
            False,
            today,
            f"missed today's send time by {late / 60:.0f} min, more than the "
            f"{schedule.misfire_grace_time / 60:.0f}-min grace (schedule.misfire_grace_time)",
        )
    if issue_finished is False:
        return CatchUp(True, today, f"the issue of {today} was interrupted; resuming")
    return CatchUp(True, today, f"today's send time passed {late / 60:.0f} min ago; sending now")
