"""The jitter buffer, driven with explicit ticks (no clock, no sleeps)."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediagw.media.jitter import SILENCE, Frame, FrameKind, JitterBuffer
from mediagw.media.rtp import RtpPacket

SSRC = 0x1234


def packet(index: int, *, ssrc: int = SSRC, base_ts: int = 1000, frames: int = 1, pt: int = 0) -> RtpPacket:
    """Packet ``index`` of a 20 ms stream; the payload names the index so tests can see what plays."""
    payload = b"".join(bytes([(index + n) & 0xFF]) * 160 for n in range(frames))
    return RtpPacket(
        payload_type=pt, sequence_number=index & 0xFFFF, timestamp=(base_ts + index * 160) & 0xFFFFFFFF,
        ssrc=ssrc, payload=payload,
    )


def played(frame: Frame) -> int | None:
    return frame.payload[0] if frame.kind is FrameKind.AUDIO else None


def run_steady(
    jb: JitterBuffer, count: int, *, start_tick: int = 100, skip: frozenset[int] = frozenset()
) -> list[Frame]:
    """One packet per tick, each put right after the previous tick's pop."""
    out = []
    for i in range(count):
        if i not in skip:
            jb.put(packet(i))
        out.append(jb.pop(start_tick + i + 1))
    return out


class TestPlayout:
    def test_silence_before_the_first_packet(self) -> None:
        jb = JitterBuffer()
        assert jb.pop(1) is SILENCE and jb.pop(2) is SILENCE

    def test_steady_stream_plays_in_order_after_min_depth(self) -> None:
        jb = JitterBuffer(min_depth=2)
        jb.pop(100)
        frames = run_steady(jb, 20)
        assert frames[0] is SILENCE  # the buffer fills for min_depth frames
        assert [played(f) for f in frames[1:]] == list(range(19))
        assert frames[1].payload_type == 0 and frames[1].payload == bytes([0]) * 160
        assert (jb.stats.received, jb.stats.played, jb.stats.lost, jb.stats.late) == (20, 19, 0, 0)
        assert jb.stats.depth == 2

    def test_reordered_packets_play_in_order(self) -> None:
        jb = JitterBuffer(min_depth=3)
        jb.pop(0)
        order = [0, 2, 1, 3, 5, 4, 6, 7, 8, 9]
        out = []
        for tick, index in enumerate(order, start=1):
            jb.put(packet(index))
            out.append(played(jb.pop(tick)))
        audio = [x for x in out if x is not None]
        assert audio == list(range(len(audio))) and len(audio) >= 7
        assert jb.stats.late == 0 and jb.stats.lost == 0

    def test_duplicates_are_dropped_and_counted(self) -> None:
        jb = JitterBuffer()
        jb.pop(0)
        jb.put(packet(0))
        jb.put(packet(0))  # buffered copy
        for tick in range(1, 4):
            jb.pop(tick)
        jb.put(packet(0))  # already played: a duplicate, not a late frame
        assert jb.stats.duplicates == 2 and jb.stats.late == 0 and jb.stats.received == 1

    def test_late_packet_is_dropped_counted_and_deepens_the_buffer(self) -> None:
        jb = JitterBuffer(min_depth=1, max_depth=5)
        jb.pop(0)
        jb.put(packet(0))
        results = [jb.pop(t) for t in range(1, 4)]  # plays 0, then 1 and 2 are missing
        assert played(results[0]) == 0
        jb.put(packet(1))
        assert jb.stats.late == 1 and jb.stats.depth == 2
        assert jb.stats.received == 1

    def test_loss_is_concealed_then_fades_to_silence(self) -> None:
        jb = JitterBuffer(min_depth=2, conceal_frames=3)
        jb.pop(100)
        frames = run_steady(jb, 12, skip=frozenset({3, 4, 5, 6, 7}))
        kinds = [f.kind for f in frames[1:]]
        assert kinds[:3] == [FrameKind.AUDIO] * 3
        conceal = frames[4:9]
        assert [f.kind for f in conceal] == [FrameKind.CONCEAL] * 3 + [FrameKind.SILENCE] * 2
        assert [f.gain_q12 for f in conceal[:3]] == [3072, 2048, 1024]
        assert all(f.payload == bytes([2]) * 160 for f in conceal[:3])  # the last good frame
        assert played(frames[9]) == 8
        assert jb.stats.lost == 5 and jb.stats.concealed == 3
        assert jb.stats.underruns == 4  # frame 8 was already queued when slot 7 came due

    def test_underrun_when_nothing_is_buffered(self) -> None:
        jb = JitterBuffer(min_depth=1)
        jb.pop(0)
        jb.put(packet(0))
        assert played(jb.pop(1)) == 0
        assert jb.pop(2).kind is FrameKind.CONCEAL
        assert jb.stats.underruns == 1 and jb.stats.lost == 1

    def test_timestamp_wrap(self) -> None:
        jb = JitterBuffer()
        jb.pop(0)
        base = 0xFFFFFFFF - 160 * 3 + 1
        out = []
        for i in range(10):
            jb.put(packet(i, base_ts=base))
            out.append(played(jb.pop(i + 1)))
        assert [x for x in out if x is not None] == list(range(9))

    def test_forty_ms_packets_fill_two_slots(self) -> None:
        jb = JitterBuffer(min_depth=2)
        jb.pop(0)
        out = []
        for tick in range(1, 13):
            if tick % 2 == 1:
                jb.put(packet(tick - 1, frames=2))
            out.append(played(jb.pop(tick)))
        audio = [x for x in out if x is not None]
        assert audio == list(range(len(audio))) and len(audio) >= 10

    def test_odd_payload_length_is_invalid(self) -> None:
        jb = JitterBuffer()
        jb.put(RtpPacket(ssrc=1, payload=b"\xff" * 80))
        jb.put(RtpPacket(ssrc=1, payload=b""))
        assert jb.stats.invalid == 2 and jb.buffered == 0

    def test_packets_before_the_first_pop_are_anchored_to_it(self) -> None:
        jb = JitterBuffer(min_depth=2)
        jb.put(packet(0))
        out = [played(jb.pop(5000)), played(jb.pop(5001))]
        jb.put(packet(1))
        out.append(played(jb.pop(5002)))
        assert out == [None, 0, 1] and jb.stats.skipped == 0 and jb.stats.lost == 0


class TestResets:
    def test_new_ssrc_starts_a_new_timeline(self) -> None:
        jb = JitterBuffer(min_depth=1)
        jb.pop(0)
        for i in range(5):
            jb.put(packet(i))
            jb.pop(i + 1)
        for i in range(5):
            jb.put(packet(i + 100, ssrc=99, base_ts=777777))
            assert played(jb.pop(i + 6)) == (i + 100) & 0xFF
        assert jb.stats.resets == 1 and jb.stats.late == 0

    def test_timestamp_jump_resets(self) -> None:
        jb = JitterBuffer(min_depth=1)
        jb.pop(0)
        for i in range(5):
            jb.put(packet(i))
            jb.pop(i + 1)
        jb.put(packet(5, base_ts=1000 + 160 * 100_000))
        assert played(jb.pop(6)) == 5
        assert jb.stats.resets == 1

    def test_silence_suppression_gap_plays_on(self) -> None:
        jb = JitterBuffer(min_depth=1)
        jb.pop(0)
        for i in range(5):
            jb.put(packet(i))
            jb.pop(i + 1)
        for tick in range(6, 36):  # 600 ms of nothing (DTX): the playout point keeps moving
            jb.pop(tick)
        jb.put(packet(35))
        assert played(jb.pop(36)) == 35
        assert jb.stats.resets == 0 and jb.stats.late == 0


class TestAdaptation:
    def test_depth_grows_with_jitter_and_shrinks_when_calm(self) -> None:
        rng = random.Random(7)
        jb = JitterBuffer(min_depth=1, max_depth=8, shrink_after=50)
        jb.pop(0)
        # Packets arrive up to 4 ticks late, in bursts.
        pending: list[tuple[float, int]] = []
        for i in range(400):
            pending.append((i + rng.uniform(0, 4), i))
            pending.sort()
            tick = i + 1
            while pending and pending[0][0] < tick:
                arrival, index = pending.pop(0)
                jb.put(packet(index), arrival_tick=arrival)
            jb.pop(tick)
        assert jb.stats.depth >= 4
        deep = jb.stats.depth
        late_while_jittery = jb.stats.late
        assert late_while_jittery < 40  # the buffer deepened instead of dropping every late packet
        for i in range(400, 2000):  # calm again
            jb.put(packet(i), arrival_tick=i + 0.5)
            jb.pop(i + 1)
        assert jb.stats.depth < deep and jb.stats.depth <= 2
        assert jb.stats.late == late_while_jittery

    def test_depth_never_exceeds_max(self) -> None:
        jb = JitterBuffer(min_depth=1, max_depth=3)
        jb.pop(0)
        for i in range(200):
            jb.put(packet(i), arrival_tick=i + (10 if i % 2 else 0))
            jb.pop(i + 1)
        assert jb.stats.depth == 3

    def test_invalid_configuration(self) -> None:
        with pytest.raises(ValueError, match="min_depth"):
            JitterBuffer(min_depth=5, max_depth=2)


class TestProperties:
    @settings(max_examples=200, deadline=None)
    @given(
        delays=st.lists(st.floats(0, 6), min_size=1, max_size=120),
        dropped=st.sets(st.integers(0, 119)),
        duplicated=st.sets(st.integers(0, 119)),
        min_depth=st.integers(1, 4),
    )
    def test_plays_in_order_once_and_accounts_for_every_frame(
        self, delays, dropped, duplicated, min_depth
    ) -> None:
        jb = JitterBuffer(min_depth=min_depth, max_depth=6, shrink_after=20)
        arrivals = []
        for i, delay in enumerate(delays):
            if i not in dropped:
                arrivals.append((i + delay, i))
                if i in duplicated:
                    arrivals.append((i + delay + 0.5, i))
        arrivals.sort()
        puts = len(arrivals)
        heard = []
        for tick in range(len(delays) + 20):
            while arrivals and arrivals[0][0] < tick:
                arrival, index = arrivals.pop(0)
                jb.put(packet(index), arrival_tick=arrival)
            frame = jb.pop(tick)
            if frame.kind is FrameKind.AUDIO:
                heard.append(frame.payload[0])
            if frame.kind is FrameKind.CONCEAL:
                assert 0 < frame.gain_q12 < 4096
        assert heard == sorted(set(heard))  # in order, never twice
        s = jb.stats
        assert s.received == s.played + s.skipped + jb.buffered
        assert s.played == len(heard)
        assert s.received + s.late + s.duplicates == puts  # every copy put is accounted for once
        assert s.resets == 0
        assert 1 <= s.depth <= 6
