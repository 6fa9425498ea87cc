"""The engine's Python side without sockets: the listen matrix, conversions, events, the media clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from mediagw.errors import LocalError
from mediagw.media import mix
from mediagw.media.clock import MediaClock
from mediagw.media.engine import (
    DtmfReceived,
    MediaEngine,
    PlayerFinished,
    RtpTimedOut,
    SsrcChanged,
    _event,
    dtmf_duration_units,
    dtmf_event_code,
    gain_to_q12,
)
from mediagw.media.engine_reference import ReferenceEngine

ENGINES = {"native": MediaEngine, "reference": ReferenceEngine}


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> MediaEngine | ReferenceEngine:
    return ENGINES[request.param](max_slots=8, seed=1)


def test_gain_to_q12() -> None:
    assert gain_to_q12(1.0) == 4096
    assert gain_to_q12(0.5) == 2048
    assert gain_to_q12(-1.0) == -4096
    assert gain_to_q12(100.0) == 32767 and gain_to_q12(-100.0) == -32768


def test_dtmf_codes_and_durations() -> None:
    assert [dtmf_event_code(d) for d in "09*#AbcD"] == [0, 9, 10, 11, 12, 13, 14, 15]  # RFC 4733 §3.2
    with pytest.raises(ValueError):
        dtmf_event_code("x")
    assert dtmf_duration_units(160) == 1280
    assert dtmf_duration_units(1) == 160  # rounded up to whole 20 ms packets
    with pytest.raises(ValueError):
        dtmf_duration_units(9000)


def test_native_event_tuples_become_dataclasses() -> None:
    assert _event((1, 3, 11, 1280)) == DtmfReceived(3, "#", 160)
    assert _event((2, 4, 60.5, 0)) == RtpTimedOut(4, 60.5)
    assert _event((3, 5, 1, 2)) == SsrcChanged(5, 1, 2)
    assert _event((4, 6, 0, 0)) == PlayerFinished(6)


def test_listen_matrix_follows_commands(engine: MediaEngine | ReferenceEngine) -> None:
    a = engine.add_player(np.zeros(160, np.int16), loop=True)
    b = engine.add_player(np.zeros(160, np.int16), loop=True)
    c = engine.add_player(np.zeros(160, np.int16), loop=True)
    engine.set_listen(a, [(b, 1.0), (c, 0.5)])
    engine.set_listen(b, [(a, 1.0)])
    assert engine.listening(a) == [(b, 1.0), (c, 0.5)]
    engine._csr(3)
    np.testing.assert_array_equal(engine._row_ptr, [0, 2, 3, 3])
    np.testing.assert_array_equal(engine._col, [b, c, a])
    np.testing.assert_array_equal(engine._gain, [4096, 2048, 4096])
    engine.remove(c)
    assert engine.listening(a) == [(b, 1.0)]
    engine.set_listen(b, [])
    engine._csr(2)
    np.testing.assert_array_equal(engine._row_ptr, [0, 1, 1])


def test_misuse_raises(engine: MediaEngine | ReferenceEngine) -> None:
    with pytest.raises(LocalError):
        engine.set_listen(5, [])
    player = engine.add_player(np.zeros(10, np.int16))
    with pytest.raises(LocalError):
        engine.set_listen(player, [(7, 1.0)])
    with pytest.raises(LocalError):
        engine.send_dtmf(player, "1")
    with pytest.raises(LocalError):
        engine.tap(player)
    with pytest.raises(LocalError):
        engine.remove(6)


def test_player_mixes_without_sockets(engine: MediaEngine | ReferenceEngine) -> None:
    player = engine.add_player(np.full(400, 1000, np.int16))
    listener = engine.add_player(np.zeros(160, np.int16), loop=True)
    engine.set_listen(listener, [(player, 0.5)])
    engine.enable_tap(listener)
    engine.enable_tap(player)
    outputs = []
    for k in range(4):
        engine.tick(k * 0.02)
        outputs.append(engine.tap_output(listener).copy())
    assert [int(o[0]) for o in outputs] == [500, 500, 500, 0]
    assert int(outputs[2][79]) == 500 and int(outputs[2][80]) == 0  # 400 samples = 2.5 frames
    assert engine.events() == [PlayerFinished(player)]
    figures = engine.figures()
    assert figures["ticks"] == 4 and figures["legs"] == 0 and figures["players"] == 2


def test_matches_mix_constants() -> None:
    from mediagw._native import rtpio

    assert (rtpio.CODEC_PCMU, rtpio.CODEC_PCMA, rtpio.CODEC_PCM, rtpio.CODEC_NONE) == (
        mix.CODEC_PCMU,
        mix.CODEC_PCMA,
        mix.CODEC_PCM,
        mix.CODEC_NONE,
    )


class FakeHandle:
    def __init__(self) -> None:
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


class FakeLoop:
    """Just enough of an event loop for MediaClock: a settable time and a list of timers."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], None], Any]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Any:
        handle = FakeHandle()
        self.timers.append((when, callback, handle))
        return handle

    def run_next(self, delay: float = 0.0) -> None:
        """Fire the earliest timer, ``delay`` seconds after it was due."""
        self.timers.sort(key=lambda t: t[0])
        when, callback, handle = self.timers.pop(0)
        if not handle.cancelled():
            self.now = max(self.now, when + delay)
            callback()


class CountingEngine:
    def __init__(self, loop: FakeLoop, cost: float = 0.0) -> None:
        self.loop = loop
        self.cost = cost
        self.calls: list[float] = []

    def tick(self, now: float) -> None:
        self.calls.append(now)
        self.loop.now += self.cost


def test_clock_keeps_an_absolute_schedule() -> None:
    loop = FakeLoop()
    engine = CountingEngine(loop, cost=0.003)
    clock = MediaClock(engine, loop=loop)  # type: ignore[arg-type]
    clock.start()
    for _ in range(10):
        loop.run_next(delay=0.001)
    assert engine.calls == pytest.approx([100.0 + 0.02 * n + 0.001 for n in range(1, 11)])
    assert clock.figures.late_ticks == 0
    assert clock.figures.max_lateness == pytest.approx(0.001)
    clock.stop()
    assert not clock.running


def test_clock_counts_late_ticks_and_catches_up() -> None:
    loop = FakeLoop()
    engine = CountingEngine(loop)
    clock = MediaClock(engine, loop=loop)  # type: ignore[arg-type]
    clock.start()
    loop.run_next()
    loop.run_next(delay=0.045)  # tick 2 starts 45 ms late: ticks 3 and 4 are already due
    assert len(engine.calls) == 4
    assert clock.figures.late_ticks == 2  # ticks 2 and 3 (45 and 25 ms); tick 4 was 5 ms late
    assert clock.figures.max_lateness == pytest.approx(0.045)
    assert loop.timers[-1][0] == pytest.approx(100.0 + 0.02 * 5)


def test_clock_skips_when_hopelessly_behind() -> None:
    loop = FakeLoop()
    engine = CountingEngine(loop)
    clock = MediaClock(engine, loop=loop, max_catch_up=3)  # type: ignore[arg-type]
    clock.start()
    loop.run_next(delay=1.0)
    assert clock.figures.skipped_ticks >= 40
    assert len(engine.calls) == 1
