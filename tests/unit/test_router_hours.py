"""Hours of operation: weekly spans, overnight spans, holidays, 24 h, and DST in both directions."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediagw.router.hours import Hours, HoursError, OpenSpan, is_open, next_change
from tests.support import unavailable

try:
    NEW_YORK = ZoneInfo("America/New_York")
    BERLIN = ZoneInfo("Europe/Berlin")
except ZoneInfoNotFoundError:  # pragma: no cover - depends on the machine
    unavailable("no IANA tz database on this machine (install tzdata)", module_level=True)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold).astimezone(UTC)  # type: ignore[misc]


WEEKDAYS_9_TO_17 = {day: [("09:00", "17:00")] for day in ("mon", "tue", "wed", "thu", "fri")}


def test_weekday_span_in_local_time() -> None:
    hours = Hours.build("America/New_York", WEEKDAYS_9_TO_17)
    # Wednesday 2026-07-15, EDT = UTC-4
    assert not is_open(hours, utc(2026, 7, 15, 12, 59))
    assert is_open(hours, utc(2026, 7, 15, 13, 0))
    assert is_open(hours, utc(2026, 7, 15, 20, 59, 59))
    assert not is_open(hours, utc(2026, 7, 15, 21, 0))
    # Saturday
    assert not is_open(hours, utc(2026, 7, 18, 15, 0))
    assert next_change(hours, utc(2026, 7, 15, 14, 0)) == utc(2026, 7, 15, 21, 0)
    assert next_change(hours, utc(2026, 7, 17, 22, 0)) == utc(2026, 7, 20, 13, 0)  # Friday night -> Monday


def test_any_aware_datetime_is_accepted_and_naive_is_refused() -> None:
    hours = Hours.build("Europe/Berlin", WEEKDAYS_9_TO_17)
    assert is_open(hours, datetime(2026, 7, 15, 9, 30, tzinfo=BERLIN))
    with pytest.raises(HoursError, match="naive"):
        is_open(hours, datetime(2026, 7, 15, 9, 30))


def test_overnight_span_belongs_to_its_opening_day() -> None:
    hours = Hours.build("Europe/Berlin", {"fri": [("22:00", "06:00")]})
    assert is_open(hours, local(BERLIN, 2026, 7, 17, 23, 0))  # Friday night
    assert is_open(hours, local(BERLIN, 2026, 7, 18, 5, 59))  # Saturday early
    assert not is_open(hours, local(BERLIN, 2026, 7, 18, 6, 0))
    assert not is_open(hours, local(BERLIN, 2026, 7, 17, 3, 0))  # Friday early: Thursday has no span
    assert next_change(hours, local(BERLIN, 2026, 7, 17, 23, 0)) == local(BERLIN, 2026, 7, 18, 6, 0)


def test_spans_that_touch_make_no_change_at_midnight() -> None:
    hours = Hours.build("Europe/Berlin", {"mon": [("18:00", "24:00")], "tue": [("00:00", "02:00")]})
    assert is_open(hours, local(BERLIN, 2026, 7, 13, 23, 59))
    assert is_open(hours, local(BERLIN, 2026, 7, 14, 0, 0))
    assert next_change(hours, local(BERLIN, 2026, 7, 13, 19, 0)) == local(BERLIN, 2026, 7, 14, 2, 0)


def test_always_open_and_holidays() -> None:
    hours = Hours.build("Europe/Berlin", always_open=True, holidays=["2026-12-25"])
    assert is_open(hours, local(BERLIN, 2026, 12, 24, 23, 59))
    assert not is_open(hours, local(BERLIN, 2026, 12, 25, 0, 0))
    assert not is_open(hours, local(BERLIN, 2026, 12, 25, 23, 59))
    assert is_open(hours, local(BERLIN, 2026, 12, 26, 0, 0))
    assert next_change(hours, local(BERLIN, 2026, 12, 20, 12, 0)) == local(BERLIN, 2026, 12, 25, 0, 0)
    assert next_change(hours, local(BERLIN, 2026, 12, 25, 12, 0)) == local(BERLIN, 2026, 12, 26, 0, 0)
    assert next_change(Hours.build("Europe/Berlin", always_open=True), utc(2026, 1, 1)) is None
    assert next_change(Hours.build("Europe/Berlin"), utc(2026, 1, 1)) is None


def test_holiday_closes_the_day_and_cuts_overnight_spans() -> None:
    every_night = {day: [("20:00", "04:00")] for day in range(7)}
    hours = Hours.build("America/New_York", every_night, holidays=[date(2026, 7, 4)])
    # Friday 3rd night runs into the holiday: cut at midnight.
    assert is_open(hours, local(NEW_YORK, 2026, 7, 3, 23, 59))
    assert not is_open(hours, local(NEW_YORK, 2026, 7, 4, 1, 0))
    # The holiday's own span does not open, not even its tail on the 5th.
    assert not is_open(hours, local(NEW_YORK, 2026, 7, 4, 21, 0))
    assert not is_open(hours, local(NEW_YORK, 2026, 7, 5, 2, 0))
    assert is_open(hours, local(NEW_YORK, 2026, 7, 5, 20, 0))
    assert next_change(hours, local(NEW_YORK, 2026, 7, 3, 21, 0)) == local(NEW_YORK, 2026, 7, 4, 0, 0)
    assert next_change(hours, local(NEW_YORK, 2026, 7, 4, 0, 0)) == local(NEW_YORK, 2026, 7, 5, 20, 0)


# ------------------------------------------------------------------------------------------ DST


def test_spring_forward_new_york_night_span_is_an_hour_shorter() -> None:
    # 2026-03-08: 02:00 EST -> 03:00 EDT. Saturday 22:00 to Sunday 06:00.
    hours = Hours.build("America/New_York", {"sat": [("22:00", "06:00")]})
    opened = next_change(hours, utc(2026, 3, 7, 12, 0))
    assert opened == utc(2026, 3, 8, 3, 0)  # 22:00 EST
    closed = next_change(hours, opened)
    assert closed == utc(2026, 3, 8, 10, 0)  # 06:00 EDT
    assert closed - opened == timedelta(hours=7)
    assert is_open(hours, utc(2026, 3, 8, 9, 59))
    assert not is_open(hours, utc(2026, 3, 8, 10, 0))


def test_fall_back_new_york_night_span_is_an_hour_longer() -> None:
    # 2026-11-01: 02:00 EDT -> 01:00 EST.
    hours = Hours.build("America/New_York", {"sat": [("22:00", "06:00")]})
    opened = next_change(hours, utc(2026, 10, 31, 12, 0))
    assert opened == utc(2026, 11, 1, 2, 0)  # 22:00 EDT
    closed = next_change(hours, opened)
    assert closed == utc(2026, 11, 1, 11, 0)  # 06:00 EST
    assert closed - opened == timedelta(hours=9)
    assert is_open(hours, local(NEW_YORK, 2026, 11, 1, 1, 30, fold=1))  # the second 01:30


def test_boundary_at_an_ambiguous_time_takes_the_first_occurrence() -> None:
    hours = Hours.build("America/New_York", {"sun": [("00:00", "01:30")]})
    first = local(NEW_YORK, 2026, 11, 1, 1, 30, fold=0)
    second = local(NEW_YORK, 2026, 11, 1, 1, 30, fold=1)
    assert second - first == timedelta(hours=1)
    assert is_open(hours, first - timedelta(seconds=1))
    assert not is_open(hours, first)
    assert not is_open(hours, second - timedelta(minutes=10))  # 01:20 EST: the wall clock repeats, we don't
    assert next_change(hours, local(NEW_YORK, 2026, 11, 1, 0, 10)) == first


def test_boundary_at_a_missing_time_takes_effect_at_the_jump() -> None:
    # 02:30 does not exist on 2026-03-08 in New York; the clock jumps 01:59:59 EST -> 03:00:00 EDT.
    hours = Hours.build("America/New_York", {"sun": [("02:30", "05:00")]})
    jump = utc(2026, 3, 8, 7, 0)
    assert not is_open(hours, jump - timedelta(seconds=1))
    assert is_open(hours, jump)
    assert next_change(hours, utc(2026, 3, 8, 0, 0)) == jump
    assert next_change(hours, jump) == local(NEW_YORK, 2026, 3, 8, 5, 0)


def test_berlin_day_span_across_both_changes() -> None:
    # Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
    hours = Hours.build("Europe/Berlin", {"sun": [("01:00", "04:00")]})
    opened = next_change(hours, utc(2026, 3, 28, 12, 0))
    assert opened == utc(2026, 3, 29, 0, 0)  # 01:00 CET
    assert next_change(hours, opened) == utc(2026, 3, 29, 2, 0)  # 04:00 CEST: 2 h of real time
    opened = next_change(hours, utc(2026, 10, 24, 12, 0))
    assert opened == utc(2026, 10, 24, 23, 0)  # 01:00 CEST
    assert next_change(hours, opened) == utc(2026, 10, 25, 3, 0)  # 04:00 CET: 4 h of real time


def test_weekly_schedule_follows_local_time_across_dst() -> None:
    hours = Hours.build("Europe/Berlin", WEEKDAYS_9_TO_17)
    assert is_open(hours, utc(2026, 3, 27, 8, 0))  # Friday 09:00 CET
    assert not is_open(hours, utc(2026, 3, 30, 6, 30))  # Monday 08:30 CEST
    assert is_open(hours, utc(2026, 3, 30, 7, 0))  # Monday 09:00 CEST


# ------------------------------------------------------------------------------------------ building


def test_build_accepts_friendly_input_and_rejects_bad_input() -> None:
    hours = Hours.build("UTC", {0: [(time(8), "12:30")], "Tuesday": [("13:00:30", "24:00")]})
    assert hours.weekly[0] == (OpenSpan(time(8), time(12, 30)),)
    assert hours.weekly[1] == (OpenSpan(time(13, 0, 30), time(0)),)
    assert hours.weekly[1][0].overnight
    with pytest.raises(HoursError, match="time zone"):
        Hours.build("Mars/Olympus_Mons")
    with pytest.raises(HoursError, match="weekday"):
        Hours.build("UTC", {"funday": [("09:00", "10:00")]})
    with pytest.raises(HoursError, match="time"):
        Hours.build("UTC", {"mon": [("9h", "10:00")]})
    with pytest.raises(HoursError, match="holiday"):
        Hours.build("UTC", holidays=["25/12/2026"])


@settings(max_examples=200, deadline=None)
@given(
    opening=st.integers(0, 23 * 60 + 59),
    length=st.integers(1, 24 * 60),
    start=st.datetimes(datetime(2026, 1, 1), datetime(2027, 1, 1)),
    zone=st.sampled_from(["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "UTC"]),
)
def test_next_change_agrees_with_is_open(opening: int, length: int, start: datetime, zone: str) -> None:
    close = (opening + length) % (24 * 60)
    spans = [(time(opening // 60, opening % 60), time(close // 60, close % 60))]
    hours = Hours.build(zone, {"mon": spans, "thu": spans}, holidays=[date(2026, 6, 11)])
    when = start.replace(tzinfo=UTC)
    change = next_change(hours, when)
    assert change is not None and change > when
    state = is_open(hours, when)
    assert is_open(hours, change) != state
    assert is_open(hours, change - timedelta(seconds=1)) == state
    assert is_open(hours, when + (change - when) / 2) == state
