"""The one media clock: every 20 ms, on an absolute schedule, for all legs and bridges of the process.

Tick n is due at ``start + n * interval`` (loop time); each is armed with ``loop.call_at``, so lateness
never accumulates into drift. A tick that starts more than one interval after it was due is counted as
*late*; when the loop fell further behind, the missed ticks run back to back (up to ``max_catch_up``) so
that the media timeline (RTP timestamps, jitter buffers) keeps its pace; past that they are skipped and
counted. There are no per-leg timers: ``engine.tick(now)`` does everything, then ``on_tick`` (if any) may
drain ``engine.events()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

logger = logging.getLogger(__name__)

TICK_INTERVAL = 0.020  # seconds: one 20 ms G.711 frame, RFC 3551 §4.5.14
LATE_LOG = 20


class Tickable(Protocol):
    """What the clock drives: ``MediaEngine`` and ``ReferenceEngine`` both are."""

    def tick(self, now: float) -> None: ...


@dataclass(slots=True)
class ClockFigures:
    """What the clock measured."""

    ticks: int = 0
    """Ticks run."""
    late_ticks: int = 0
    """Ticks that started more than one interval after they were due."""
    max_lateness: float = 0.0
    """The largest start delay seen, seconds."""
    total_lateness: float = 0.0
    skipped_ticks: int = 0
    """Ticks dropped because the loop fell more than ``max_catch_up`` ticks behind."""
    busy_seconds: float = 0.0
    """Time spent inside ``engine.tick`` and ``on_tick``."""
    late_log: list[tuple[int, float]] = field(default_factory=list)
    """The first ``LATE_LOG`` late ticks: (tick number, lateness in seconds), for diagnosis."""


class MediaClock:
    """Calls ``engine.tick(now)`` every ``interval`` seconds on ``loop``, on an absolute schedule."""

    def __init__(
        self,
        engine: Tickable,
        *,
        interval: float = TICK_INTERVAL,
        on_tick: Callable[[float], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        max_catch_up: int = 5,
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.on_tick = on_tick
        self.max_catch_up = max_catch_up
        self.figures = ClockFigures()
        self._loop = loop
        self._start = 0.0
        self._n = 0
        self._handle: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._handle is not None

    def start(self) -> None:
        """Start ticking; the first tick is due one interval from now."""
        if self._handle is not None:
            raise RuntimeError("the media clock is already running")
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self._start = loop.time()
        self._n = 1
        self._handle = loop.call_at(self._start + self.interval, self._fire)

    def stop(self) -> None:
        """Stop ticking (the tick in progress, if any, completes)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def due(self, n: int) -> float:
        """Loop time at which tick ``n`` is due."""
        return self._start + n * self.interval

    def _fire(self) -> None:
        loop = self._loop
        assert loop is not None
        figures = self.figures
        caught_up = 0
        while True:
            now = loop.time()
            lateness = now - self.due(self._n)
            if lateness > self.interval:
                figures.late_ticks += 1
                if len(figures.late_log) < LATE_LOG:
                    figures.late_log.append((self._n, lateness))
            figures.max_lateness = max(figures.max_lateness, lateness)
            if lateness > 0:
                figures.total_lateness += lateness
            try:
                self.engine.tick(now)
                if self.on_tick is not None:
                    self.on_tick(now)
            except Exception:  # the media loop must survive a bug in one tick; it is logged loudly
                logger.exception("media tick %d failed", self._n)
            figures.ticks += 1
            figures.busy_seconds += loop.time() - now
            self._n += 1
            behind = int((loop.time() - self.due(self._n)) // self.interval)
            if behind < 0:
                break
            if behind >= self.max_catch_up:
                figures.skipped_ticks += behind
                self._n += behind
                if logger.isEnabledFor(logging.WARNING):
                    logger.warning("media clock %d ticks behind; skipped them", behind)
                break
            caught_up += 1
            if caught_up >= self.max_catch_up:
                break
        if self._handle is not None:
            self._handle = loop.call_at(self.due(self._n), self._fire)
