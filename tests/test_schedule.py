"""The schedule as pure arithmetic: the cron trigger across DST in two zones, the day specs,
and the start-up catch-up decision over (now, schedule, ledger state).  No clock is read:
every instant is a fixed datetime, and APScheduler's trigger is asked for its next fire
time after it (``get_next_fire_time(None, t)``), exactly what the scheduler asks.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import zoneinfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from newsletter.config import ScheduleSettings
from newsletter.schedule import catch_up, cron_trigger, parse_time, runs_on

UTC = dt.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def sched(send_at: str = "07:30", days: str = "*", tz: str = "Europe/Berlin", grace: int = 3600):
    return ScheduleSettings(send_at=send_at, timezone=tz, days=days, misfire_grace_time=grace)


def fires(
    at: str, days: str, tz: zoneinfo.ZoneInfo, start: dt.datetime, n: int
) -> list[dt.datetime]:
    """The next ``n`` fire times after ``start``, as UTC instants.

    Stepping is done in UTC: adding a timedelta to a local datetime keeps its wall time and
    drops ``fold``, which would step back into the first of two repeated hours.
    """
    trigger = cron_trigger(at, sched(at, days, tz.key), tz)
    out: list[dt.datetime] = []
    t = start
    for _ in range(n):
        nxt = trigger.get_next_fire_time(None, t)
        assert nxt is not None
        out.append(nxt.astimezone(UTC))
        t = nxt.astimezone(UTC) + dt.timedelta(microseconds=1)
    return out


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def wall(instant: dt.datetime, tz: zoneinfo.ZoneInfo) -> str:
    return instant.astimezone(tz).strftime("%a %Y-%m-%d %H:%M %z")


# --------------------------------------------------------------------------- the trigger across DST


@pytest.mark.parametrize(
    ("tz", "before", "after"),
    [
        # Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
        (
            BERLIN,
            ["Sat 2026-03-28 07:30 +0100"],
            ["Sun 2026-03-29 07:30 +0200", "Mon 2026-03-30 07:30 +0200"],
        ),
        (
            BERLIN,
            ["Sat 2026-10-24 07:30 +0200"],
            ["Sun 2026-10-25 07:30 +0100", "Mon 2026-10-26 07:30 +0100"],
        ),
        # America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
        (
            NEW_YORK,
            ["Sat 2026-03-07 07:30 -0500"],
            ["Sun 2026-03-08 07:30 -0400", "Mon 2026-03-09 07:30 -0400"],
        ),
        (
            NEW_YORK,
            ["Sat 2026-10-31 07:30 -0400"],
            ["Sun 2026-11-01 07:30 -0500", "Mon 2026-11-02 07:30 -0500"],
        ),
    ],
)
def test_send_time_stays_on_the_wall_clock_across_a_dst_change(tz, before, after):
    first_day = dt.datetime.strptime(before[0][4:14], "%Y-%m-%d").date()
    start = dt.datetime.combine(first_day, dt.time(0, 0), tz)
    got = fires("07:30", "*", tz, start, 3)
    assert [wall(t, tz) for t in got] == before + after
    # The UTC instant moves by the change of offset: one hour, in the right direction.
    offsets = [t.astimezone(tz).utcoffset() for t in got]
    assert offsets[0] != offsets[1] == offsets[2]
    assert {(got[1] - got[0]), (got[2] - got[1])} == {dt.timedelta(hours=24), got[1] - got[0]}
    assert abs((got[1] - got[0]) - dt.timedelta(hours=24)) == dt.timedelta(hours=1)


def test_the_utc_instants_of_0730_berlin_around_both_changes():
    spring = fires("07:30", "*", BERLIN, utc(2026, 3, 28), 2)
    assert spring == [utc(2026, 3, 28, 6, 30), utc(2026, 3, 29, 5, 30)]  # 23 hours apart
    autumn = fires("07:30", "*", BERLIN, utc(2026, 10, 24), 2)
    assert autumn == [utc(2026, 10, 24, 5, 30), utc(2026, 10, 25, 6, 30)]  # 25 hours apart


def test_mon_fri_from_a_friday_gives_monday():
    # Friday 2026-03-27 after the send time; the weekend (and Berlin's DST change) is skipped.
    got = fires("07:30", "mon-fri", BERLIN, utc(2026, 3, 27, 12), 2)
    assert [wall(t, BERLIN) for t in got] == [
        "Mon 2026-03-30 07:30 +0200",
        "Tue 2026-03-31 07:30 +0200",
    ]
    # Before the send time on the Friday itself: the Friday still counts.
    assert wall(fires("07:30", "mon-fri", BERLIN, utc(2026, 3, 27, 5), 1)[0], BERLIN).startswith(
        "Fri"
    )


def test_mon_wed_fri_and_weekends_only():
    week = fires("07:30", "mon,wed,fri", NEW_YORK, utc(2026, 3, 2), 6)  # from Monday 2026-03-02
    assert [wall(t, NEW_YORK) for t in week] == [
        "Mon 2026-03-02 07:30 -0500",
        "Wed 2026-03-04 07:30 -0500",
        "Fri 2026-03-06 07:30 -0500",
        "Mon 2026-03-09 07:30 -0400",  # after New York's spring forward on Sunday the 8th
        "Wed 2026-03-11 07:30 -0400",
        "Fri 2026-03-13 07:30 -0400",
    ]
    weekend = fires("09:00", "sat-sun", BERLIN, utc(2026, 10, 19), 4)  # from Monday 2026-10-19
    assert [wall(t, BERLIN) for t in weekend] == [
        "Sat 2026-10-24 09:00 +0200",
        "Sun 2026-10-25 09:00 +0100",  # Berlin falls back that night
        "Sat 2026-10-31 09:00 +0100",
        "Sun 2026-11-01 09:00 +0100",
    ]


def test_numeric_day_of_week_would_be_off_by_one_which_is_why_names_are_used():
    """APScheduler 3 counts Monday = 0: crontab's "1-5" would mean Tuesday to Saturday."""
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger(day_of_week="1-5", hour=7, minute=30, timezone=UTC)
    t, days = utc(2026, 3, 2), []  # a Monday
    for _ in range(5):
        t = trigger.get_next_fire_time(None, t) + dt.timedelta(seconds=1)
        days.append(f"{t:%a}")
    assert days == ["Tue", "Wed", "Thu", "Fri", "Sat"]


@pytest.mark.parametrize(
    ("tz", "day", "at", "fire_utc", "fire_local"),
    [
        # 02:30 does not exist on the spring-forward day: APScheduler 3.11 fires once, at the
        # instant the wall time would have had with the old offset: 03:30 new local time.
        (BERLIN, dt.date(2026, 3, 29), "02:30", utc(2026, 3, 29, 1, 30), "03:30 +0200"),
        (NEW_YORK, dt.date(2026, 3, 8), "02:30", utc(2026, 3, 8, 7, 30), "03:30 -0400"),
        (BERLIN, dt.date(2026, 3, 29), "02:00", utc(2026, 3, 29, 1, 0), "03:00 +0200"),
        (BERLIN, dt.date(2026, 3, 29), "02:59:59", utc(2026, 3, 29, 1, 59, 59), "03:59 +0200"),
    ],
)
def test_a_send_time_in_the_skipped_hour_fires_once_an_hour_later(
    tz, day, at, fire_utc, fire_local
):
    start = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(12), tz)
    got = fires(at, "*", tz, start, 2)
    assert got[0] == fire_utc
    assert got[0].astimezone(tz).strftime("%H:%M %z") == fire_local
    # Once on that day only; the next day is at the configured wall time again.
    assert got[1].astimezone(tz).date() == day + dt.timedelta(days=1)
    assert got[1].astimezone(tz).time() == parse_time(at)


@pytest.mark.parametrize(
    ("tz", "day", "at", "first", "second"),
    [
        # 02:30 happens twice in Berlin on 2026-10-25: first at +02:00, then at +01:00.
        (
            BERLIN,
            dt.date(2026, 10, 25),
            "02:30",
            utc(2026, 10, 25, 0, 30),
            utc(2026, 10, 25, 1, 30),
        ),
        # New York repeats 01:00-02:00 on 2026-11-01 (02:30 there happens once).
        (NEW_YORK, dt.date(2026, 11, 1), "01:30", utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)),
    ],
)
def test_a_send_time_in_the_repeated_hour_fires_twice(tz, day, at, first, second):
    """The trigger fires at both occurrences of the wall time.  The second firing runs the
    same issue date again; it finds the issue sent and the ledger sends nobody twice
    (`run_send` answers "already-sent"; see tests/test_delivery.py for the rerun)."""
    start = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(12), tz)
    got = fires(at, "*", tz, start, 3)
    assert got[:2] == [first, second]
    assert [t.astimezone(tz).strftime("%H:%M") for t in got[:2]] == [at, at]
    assert {t.astimezone(tz).date() for t in got[:2]} == {day}  # the same issue date twice
    assert got[2].astimezone(tz).date() == day + dt.timedelta(days=1)


def test_a_send_time_in_new_yorks_repeated_hour_does_not_repeat_0230():
    got = fires("02:30", "*", NEW_YORK, utc(2026, 10, 31, 12), 2)
    assert got == [utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)]


# --------------------------------------------------------------------------- runs_on


def brute_force_days(spec: str) -> set[int]:
    """Weekday numbers (Monday = 0) in ``spec``, walking each range forward, wrapping at Sunday."""
    if spec.strip() == "*":
        return set(range(7))
    out: set[int] = set()
    for part in spec.strip().lower().split(","):
        first, _, last = part.partition("-")
        i = DAYS.index(first)
        out.add(i)
        if last:
            while i != DAYS.index(last):
                i = (i + 1) % 7
                out.add(i)
    return out


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("*", "mon tue wed thu fri sat sun"),
        ("mon-fri", "mon tue wed thu fri"),
        ("mon,wed,fri", "mon wed fri"),
        ("sat-sun", "sat sun"),
        ("sun", "sun"),
        ("tue-thu,sun", "tue wed thu sun"),
        ("fri-mon", "mon fri sat sun"),  # a range across the weekend wraps round
        ("MON-Fri", "mon tue wed thu fri"),
        (" mon-fri ", "mon tue wed thu fri"),
    ],
)
def test_runs_on_every_day_spec(spec, expected):
    monday = dt.date(2026, 3, 2)
    week = [monday + dt.timedelta(days=i) for i in range(7)]
    got = [DAYS[d.weekday()] for d in week if runs_on(d, ScheduleSettings(days=spec))]
    assert " ".join(got) == expected


day_name = st.sampled_from(DAYS)
day_part = st.one_of(day_name, st.tuples(day_name, day_name).map("-".join))
day_spec = st.one_of(st.just("*"), st.lists(day_part, min_size=1, max_size=4).map(",".join))
dates_2026 = st.dates(dt.date(2026, 1, 1), dt.date(2026, 12, 31))
#: The DST change days of the zones below, and the days either side, drawn often.
CHANGE_DAYS = [
    d + dt.timedelta(days=k)
    for pair in (
        (dt.date(2026, 3, 29), dt.date(2026, 10, 25)),  # Europe/Berlin
        (dt.date(2026, 3, 8), dt.date(2026, 11, 1)),  # America/New_York
        (dt.date(2026, 4, 5), dt.date(2026, 10, 4)),  # Australia/Lord_Howe (30 min)
    )
    for d in pair
    for k in (-1, 0, 1)
]


@given(spec=day_spec, day=dates_2026)
def test_runs_on_agrees_with_a_brute_force_reading(spec, day):
    assert runs_on(day, ScheduleSettings(days=spec)) == (day.weekday() in brute_force_days(spec))


@given(spec=day_spec, day=dates_2026)
def test_the_trigger_fires_on_exactly_the_days_runs_on_accepts(spec, day):
    trigger = cron_trigger("07:30", ScheduleSettings(days=spec), BERLIN)
    midnight = dt.datetime.combine(day, dt.time(), BERLIN)
    nxt = trigger.get_next_fire_time(None, midnight)
    fires_that_day = nxt is not None and nxt.astimezone(BERLIN).date() == day
    assert fires_that_day == runs_on(day, ScheduleSettings(days=spec))


def test_a_day_range_across_the_weekend_makes_a_trigger():
    trigger = cron_trigger("07:30", ScheduleSettings(days="fri-mon"), BERLIN)
    t, got = utc(2026, 3, 2), []  # a Monday, before 07:30 local
    for _ in range(5):
        nxt = trigger.get_next_fire_time(None, t)
        got.append(f"{nxt:%a}")
        t = nxt.astimezone(UTC) + dt.timedelta(seconds=1)
    assert got == ["Mon", "Fri", "Sat", "Sun", "Mon"]


# --------------------------------------------------------------------------- catch_up

MONDAY = dt.date(2026, 3, 30)  # Berlin is on CEST (+02:00); 07:30 local is 05:30 UTC


@pytest.mark.parametrize(
    ("now", "finished", "due", "reason"),
    [
        (utc(2026, 3, 30, 5, 0), None, False, "today's send time 07:30 is still ahead"),
        (utc(2026, 3, 30, 5, 0), False, False, "still ahead"),  # a manual partial send earlier
        (utc(2026, 3, 30, 5, 30), None, True, "passed 0 min ago; sending now"),
        (utc(2026, 3, 30, 5, 45), None, True, "passed 15 min ago; sending now"),
        (utc(2026, 3, 30, 6, 30), None, True, "passed 60 min ago"),  # the grace's last second
        (
            utc(2026, 3, 30, 6, 30, 1),
            None,
            False,
            "missed today's send time by 60 min, more than the 60-min grace",
        ),
        (utc(2026, 3, 30, 9, 0), None, False, "missed today's send time by 210 min"),
        (utc(2026, 3, 30, 5, 45), False, True, "the issue of 2026-03-30 was interrupted; resuming"),
        (utc(2026, 3, 30, 21, 0), False, True, "the issue of 2026-03-30 was interrupted; resuming"),
        (utc(2026, 3, 30, 5, 45), True, False, "the issue of 2026-03-30 is already sent"),
        (utc(2026, 3, 30, 21, 0), True, False, "already sent"),
    ],
)
def test_catch_up_on_a_sending_day(now, finished, due, reason):
    d = catch_up(now, sched(days="mon-fri"), BERLIN, issue_finished=finished)
    assert d.due is due
    assert reason in d.reason
    assert d.issue_date == MONDAY


def test_catch_up_not_on_a_day_off():
    saturday_late = utc(2026, 3, 28, 7, 0)  # 08:00 CET on a Saturday
    d = catch_up(saturday_late, sched(days="mon-fri"), BERLIN, issue_finished=None)
    assert (d.due, d.issue_date) == (False, dt.date(2026, 3, 28))
    assert d.reason == "Saturday is not a sending day (mon-fri)"


def test_catch_up_uses_the_local_date_not_the_utc_date():
    # 23:30 UTC on Sunday is 01:30 on Monday in Berlin: Monday's issue, still ahead.
    d = catch_up(utc(2026, 3, 29, 23, 30), sched(days="mon-fri"), BERLIN, issue_finished=None)
    assert (d.due, d.issue_date) == (False, MONDAY)
    # 03:00 UTC on Tuesday is 23:00 on Monday in New York: Monday's issue, long missed.
    d = catch_up(
        utc(2026, 3, 31, 3),
        sched(days="mon-fri", tz="America/New_York"),
        NEW_YORK,
        issue_finished=None,
    )
    assert (d.due, d.issue_date) == (False, MONDAY)
    assert "missed" in d.reason


def test_catch_up_with_the_send_time_in_the_dst_gap_agrees_with_the_trigger():
    """02:30 on Berlin's spring-forward day is 03:30 CEST (01:30 UTC), for both."""
    s = sched("02:30")
    gap_day = dt.date(2026, 3, 29)
    assert fires("02:30", "*", BERLIN, utc(2026, 3, 28, 12), 1) == [utc(2026, 3, 29, 1, 30)]
    early = catch_up(utc(2026, 3, 29, 1, 15), s, BERLIN, issue_finished=None)  # 03:15 CEST
    assert (early.due, early.issue_date) == (False, gap_day)
    on_time = catch_up(utc(2026, 3, 29, 1, 30), s, BERLIN, issue_finished=None)
    assert on_time.due and "passed 0 min ago" in on_time.reason
    late = catch_up(utc(2026, 3, 29, 2, 31), s, BERLIN, issue_finished=None)  # 61 min late
    assert not late.due and "missed" in late.reason


def test_catch_up_grace_is_elapsed_time_across_a_dst_change():
    fall = catch_up(
        utc(2026, 10, 25, 2, 15), sched("01:30", grace=7200), BERLIN, issue_finished=None
    )
    spring = catch_up(
        utc(2026, 3, 29, 1, 45), sched("01:30", grace=5400), BERLIN, issue_finished=None
    )
    repeated = catch_up(
        utc(2026, 10, 25, 1, 45), sched("02:30", grace=1800), BERLIN, issue_finished=None
    )
    assert (fall.due, spring.due, repeated.due) == (False, True, False), (fall, spring, repeated)
    assert "missed today's send time by 165 min" in fall.reason
    assert "passed 75 min ago" in spring.reason
    assert "missed today's send time by 75 min" in repeated.reason


def test_catch_up_in_the_repeated_hour_first_occurrence():
    """02:30 on Berlin's fall-back day, during the first 02:30-03:00 (+02:00): measured from
    the first occurrence (00:30 UTC), as the trigger's first firing is."""
    d = catch_up(utc(2026, 10, 25, 0, 45), sched("02:30", grace=1800), BERLIN, issue_finished=None)
    assert d.due and "passed 15 min ago" in d.reason


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]


@given(
    zone=st.sampled_from(ZONES),
    day=st.one_of(dates_2026, st.sampled_from(CHANGE_DAYS)),
    at=st.times().map(lambda t: t.replace(microsecond=0)),
    offset=st.integers(-3 * 3600, 4 * 3600),
    grace=st.integers(0, 3 * 3600),
    finished=st.sampled_from([None, False, True]),
)
def test_catch_up_agrees_with_the_trigger(zone, day, at, offset, grace, finished):
    """Daily at ``at``: catch-up is due iff the trigger's firing of today is at most
    ``grace`` seconds ago (or the issue was interrupted after it), and the issue is not
    finished.  Send times in DST gaps and repeated hours included (Lord Howe shifts by
    30 min), also when the clock changes between the firing and now."""
    tz = zoneinfo.ZoneInfo(zone)
    send_at = at.strftime("%H:%M:%S")
    s = sched(send_at, "*", zone, grace)
    midnight = dt.datetime.combine(day, dt.time(), tz)
    fire = cron_trigger(send_at, s, tz).get_next_fire_time(None, midnight)
    assert fire is not None
    assume(fire.astimezone(tz).date() == day)
    now = fire.astimezone(UTC) + dt.timedelta(seconds=offset)
    assume(now.astimezone(tz).date() == day)
    d = catch_up(now, s, tz, issue_finished=finished)
    expected = not finished and (offset >= 0 and (offset <= grace or finished is False))
    assert d.due == expected, d.reason
    assert d.issue_date == day


# --------------------------------------------------------------------------- the machine's zone


def _with_tz(tz: str, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter whose TZ is ``tz`` (the zone is read once a process)."""
    env = {**os.environ, "TZ": tz}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )


_FIRES = """
import datetime as dt
from newsletter.config import ScheduleSettings
from newsletter.schedule import cron_trigger, zone, zone_name
s = ScheduleSettings(send_at="07:30", days="*")  # timezone = "": the machine's
tz = zone(s)
print(zone_name(tz))
trigger = cron_trigger(s.send_at, s, tz)
for start in ("2026-03-27", "2026-10-23"):
    t = dt.datetime.fromisoformat(start + "T12:00:00+00:00")
    for _ in range(4):
        t = trigger.get_next_fire_time(None, t)
        print(t.astimezone(dt.UTC).isoformat())
        t = t + dt.timedelta(seconds=1)
"""


def test_the_machines_zone_keeps_0730_local_across_both_dst_changes():
    """With schedule.timezone empty and TZ=Europe/Berlin, the send stays at 07:30 on the
    wall clock: a fixed +01:00 taken in winter would send at 08:30 all summer."""
    r = _with_tz("Europe/Berlin", _FIRES)
    assert r.returncode == 0, r.stderr
    name, *instants = r.stdout.split()
    assert name == "Europe/Berlin"
    got = [wall(dt.datetime.fromisoformat(t), BERLIN) for t in instants]
    assert got == [
        "Sat 2026-03-28 07:30 +0100",
        "Sun 2026-03-29 07:30 +0200",  # the spring change was at 02:00 that night
        "Mon 2026-03-30 07:30 +0200",
        "Tue 2026-03-31 07:30 +0200",
        "Sat 2026-10-24 07:30 +0200",
        "Sun 2026-10-25 07:30 +0100",  # the autumn change
        "Mon 2026-10-26 07:30 +0100",
        "Tue 2026-10-27 07:30 +0100",
    ]
    # And the issue date and the day window follow the same zone.
    code = (
        "import datetime as dt\n"
        "from newsletter.config import Settings\n"
        "from newsletter.pipeline import day_window, issue_date_for\n"
        "s = Settings()\n"
        "print(issue_date_for(dt.datetime(2026, 7, 1, 22, 30, tzinfo=dt.UTC), s))\n"
        "print(day_window(dt.date(2026, 7, 1), s)[1].isoformat())\n"
    )
    r = _with_tz("Europe/Berlin", code)
    assert r.stdout.split() == ["2026-07-02", "2026-07-01T22:00:00+00:00"], r.stderr


def test_a_machine_zone_that_cannot_be_named_is_a_config_error():
    """A POSIX rule in TZ has no IANA name and no history: say so, and say what to set."""
    for args in (["config", "check"], ["digest"]):
        r = subprocess.run(
            [sys.executable, "-m", "newsletter", "--database-url", "sqlite://", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "TZ": "CET-1CEST,M3.5.0,M10.5.0/3"},
            timeout=60,
        )
        assert r.returncode == 2, (args, r.stderr)
        (line,) = r.stderr.strip().splitlines()
        assert "schedule.timezone" in line and "CET-1CEST" in line and "Europe/Berlin" in line


def test_config_check_names_the_zone_it_will_use(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "newsletter", "--database-url", "sqlite://", "config", "check"],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "America/New_York"},
        cwd=tmp_path,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "time zone America/New_York (the machine's" in r.stderr
