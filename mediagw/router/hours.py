"""Hours of operation of a queue: weekly schedule, holidays and a 24-hour option in an IANA time zone.

Theory of operation
===================

An :class:`Hours` value is pure data; :func:`is_open` and :func:`next_change` are pure functions of it and
an aware ``datetime``. Nothing here reads a clock. Time zones come from the standard library's
:mod:`zoneinfo`, which reads the system tz database (``/usr/share/zoneinfo``); on a system without one
(Windows, minimal containers) the ``tzdata`` package from PyPI must be installed.

Rules
-----
* The schedule is per local weekday (Monday = 0). Each day lists :class:`OpenSpan` values ``(open, close)``
  in local wall-clock time. ``close > open`` is a span within that day; ``close <= open`` is an *overnight*
  span that closes at ``close`` on the next day (``close = 00:00`` therefore means "until midnight", and
  ``open == close`` means 24 hours from ``open``). A span belongs to the day it opens on.
* Spans of the same or adjacent days may overlap or touch; the queue is open in their union, so a Monday
  span ending at 24:00 and a Tuesday span starting at 00:00 make no change at midnight.
* ``always_open`` (the 24-hour option) replaces the weekly schedule by 00:00-24:00 every day.
* A holiday is a local calendar date on which the queue is closed from 00:00 to 24:00: spans that open on
  a holiday do not open at all (not even their overnight tail on the next day), and an overnight span from
  the day before is cut at the holiday's midnight. Holidays apply to ``always_open`` queues too.

Daylight saving time
--------------------
Every boundary "local time T on date D" happens at the first instant at which the local wall clock on date D
reads T or later:

* a time that occurs twice (fall back, e.g. 01:30 in America/New_York on 2026-11-01) takes effect at its
  first occurrence (``fold=0``, PEP 495); a span 00:00-01:30 on that day is therefore open 1 h 30 min,
  not 2 h 30 min;
* a time that does not exist (spring forward, e.g. 02:30 in America/New_York on 2026-03-08) takes effect at
  the moment of the jump (03:00 EDT), the first instant the wall clock is past it.

So a span's length in real time follows the wall clock: a 00:00-06:00 span is 5 h on a spring-forward
night and 7 h on a fall-back night.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mediagw.errors import LocalError

__all__ = ["WEEKDAYS", "Hours", "HoursError", "OpenSpan", "is_open", "next_change"]

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
"""Weekday names in ``date.weekday()`` order; three-letter prefixes are accepted too."""

_MIDNIGHT = time(0, 0)
_SEARCH_DAYS = 400
"""How far ahead :func:`next_change` looks before concluding that nothing ever changes (covers a year of
holidays)."""


class HoursError(LocalError, ValueError):
    """An invalid hours definition (bad time zone, time or weekday)."""


@dataclass(frozen=True, slots=True)
class OpenSpan:
    """One opening on a weekday, in local wall-clock time; ``close <= open`` ends on the next day."""

    open: time
    """Local opening time."""
    close: time
    """Local closing time (on the next day when ``close <= open``)."""

    def __post_init__(self) -> None:
        if self.open.tzinfo is not None or self.close.tzinfo is not None:
            raise HoursError("opening times are local wall-clock times and must be naive")

    @property
    def overnight(self) -> bool:
        """Whether the span closes on the next day."""
        return self.close <= self.open


@dataclass(frozen=True, slots=True)
class Hours:
    """Hours of operation of one queue."""

    time_zone: str
    """IANA time zone name, e.g. ``America/New_York``."""
    weekly: tuple[tuple[OpenSpan, ...], ...] = ((),) * 7
    """Seven entries, Monday first: the spans opening on that weekday."""
    holidays: frozenset[date] = frozenset()
    """Local dates closed all day."""
    always_open: bool = False
    """The 24-hour option: open every non-holiday day 00:00-24:00, ``weekly`` ignored."""

    def __post_init__(self) -> None:
        _zone(self.time_zone)
        if len(self.weekly) != 7:
            raise HoursError(f"weekly schedule needs 7 days (Monday first), got {len(self.weekly)}")

    @property
    def zone(self) -> ZoneInfo:
        """The :class:`~zoneinfo.ZoneInfo` of ``time_zone``."""
        return _zone(self.time_zone)

    @classmethod
    def build(
        cls,
        time_zone: str,
        schedule: Mapping[str | int, Iterable[tuple[time | str, time | str]]] | None = None,
        *,
        holidays: Iterable[date | str] = (),
        always_open: bool = False,
    ) -> Hours:
        """Build from friendly data: ``{"mon": [("09:00", "17:00")], "fri": [("22:00", "06:00")]}``.

        Weekday keys are 0-6 (Monday = 0), names or three-letter prefixes; times are ``time`` values or
        ``"HH:MM"`` / ``"HH:MM:SS"`` (``"24:00"`` is accepted as a closing time meaning midnight); holidays are
        ``date`` values or ISO ``"YYYY-MM-DD"``. Raises :class:`HoursError` for anything unreadable.
        """
        days: list[list[OpenSpan]] = [[] for _ in range(7)]
        for key, spans in (schedule or {}).items():
            index = _weekday_index(key)
            for open_, close in spans:
                days[index].append(OpenSpan(_parse_time(open_), _parse_time(close)))
        parsed_holidays = frozenset(_parse_date(d) for d in holidays)
        return cls(time_zone, tuple(tuple(day) for day in days), parsed_holidays, always_open)


def is_open(hours: Hours, when: datetime) -> bool:
    """Whether the queue is open at ``when`` (an aware datetime, any zone; UTC is the norm)."""
    instant = _utc(when)
    local_day = instant.astimezone(hours.zone).date()
    for start, end in _intervals(hours, local_day - timedelta(days=1), local_day + timedelta(days=1)):
        if start <= instant < end:
            return True
    return False


def next_change(hours: Hours, when: datetime) -> datetime | None:
    """The first instant after ``when`` at which :func:`is_open` changes, in UTC; ``None`` if it never does
    within about a year (e.g. always open, or no opening spans at all)."""
    instant = _utc(when)
    local_day = instant.astimezone(hours.zone).date()
    horizon = 8
    while True:
        merged = _merge(_intervals(hours, local_day - timedelta(days=1), local_day + timedelta(days=horizon)))
        window_end = _resolve(hours.zone, local_day + timedelta(days=horizon), _MIDNIGHT)
        for start, end in merged:
            if end <= instant:
                continue
            change = start if start > instant else end
            if change < window_end:
                return change
            break
        if horizon >= _SEARCH_DAYS:
            return None
        horizon = _SEARCH_DAYS


# ------------------------------------------------------------------------------------------- internals


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HoursError(
            f"unknown IANA time zone {name!r} (is the tz database or tzdata installed?)"
        ) from exc


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise HoursError(f"{when!r} is naive; pass an aware datetime (UTC)")
    return when.astimezone(UTC)


def _resolve(zone: ZoneInfo, day: date, at: time) -> datetime:
    """The first instant (UTC) at which the wall clock on ``day`` in ``zone`` reads ``at`` or later."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first  # exists; fold=0 is its first occurrence if it occurs twice
    # In a gap (spring forward): fold=0 maps past the jump, fold=1 before it. The wall clock is monotonic
    # between the two, so bisect (whole seconds; tz transitions are on whole seconds) for the first instant
    # whose wall time is >= ``naive``, i.e. the jump itself.
    low = int(naive.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _intervals(hours: Hours, first_day: date, last_day: date) -> list[tuple[datetime, datetime]]:
    """Open intervals (UTC, half-open) of spans opening on ``first_day``..``last_day``, holidays applied."""
    zone = hours.zone
    full_day = (OpenSpan(_MIDNIGHT, _MIDNIGHT),)
    result: list[tuple[datetime, datetime]] = []
    day = first_day
    while day <= last_day:
        if day not in hours.holidays:
            spans = full_day if hours.always_open else hours.weekly[day.weekday()]
            for span in spans:
                close_day = day + timedelta(days=1) if span.overnight else day
                start = _resolve(zone, day, span.open)
                end = _resolve(zone, close_day, span.close)
                if close_day != day and close_day in hours.holidays:
                    end = min(end, _resolve(zone, close_day, _MIDNIGHT))
                if start < end:
                    result.append((start, end))
        day += timedelta(days=1)
    return result


def _merge(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")


def _parse_time(value: time | str) -> time:
    if isinstance(value, time):
        return value
    match = _TIME.match(value)
    if match is None:
        raise HoursError(f"unreadable time {value!r} (expected HH:MM or HH:MM:SS)")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if (hour, minute, second) == (24, 0, 0):
        return _MIDNIGHT
    try:
        return time(hour, minute, second)
    except ValueError as exc:
        raise HoursError(f"invalid time {value!r}: {exc}") from None


def _parse_date(value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise HoursError(f"unreadable holiday date {value!r} (expected YYYY-MM-DD)") from None


def _weekday_index(key: str | int) -> int:
    if isinstance(key, int):
        if 0 <= key <= 6:
            return key
        raise HoursError(f"weekday {key} out of range 0-6 (Monday = 0)")
    name = key.strip().lower()
    for index, day in enumerate(WEEKDAYS):
        if name == day or (len(name) >= 3 and day.startswith(name)):
            return index
    raise HoursError(f"unknown weekday {key!r}")
