"""A jitter buffer for 20 ms G.711 frames, with no clock of its own.

Theory of operation
-------------------
Time is the media clock's tick number (one tick = one 20 ms frame). ``put(packet)`` stores a packet's
payload, still encoded, in the slot its RTP timestamp names (slot = timestamp / 160, unwrapped); the media
loop calls ``pop(tick)`` once per tick and gets a ``Frame``: the payload to decode, a concealment
instruction, or silence.

The buffer plays slot ``tick - offset``. The offset is the playout delay in ticks, held at
``floor(transit) + target_depth`` where *transit* is how many ticks after its slot's nominal time a packet
arrives (the fastest recent packets set the floor; it drifts up slowly to follow clock skew) and
*target_depth* (frames, between ``min_depth`` and ``max_depth``) grows with the observed jitter (an RFC 3550
§6.4.1 / A.8 style estimate, in frames) and by one frame at once for every late packet, and shrinks by one
frame only after ``shrink_after`` ticks without a reason to stay deep. Growing repeats a frame (stretch),
shrinking skips one; both happen at most one frame per tick.

A packet whose slot has already been played is *late* (dropped and counted); a second copy of a buffered or
recently played slot is a *duplicate* (dropped and counted). A missing slot is *lost* (and also an
*underrun* when nothing at all is buffered: silence suppression, or the network stalled); the buffer
returns ``CONCEAL`` for the first ``conceal_frames`` ticks (the last good frame, to be decoded and
attenuated by the fading Q12 gain given), then ``SILENCE``. "Late packet" bumps are limited to one frame
per tick, so a burst after a stall deepens the buffer by one frame, not by the burst's length.

The first packet, a new SSRC and a timestamp far from the playout point (a jump) reset the timeline; the
counters are kept. Payloads that are a multiple of 160 octets (40 ms, 60 ms packets) fill several slots;
any other length is dropped and counted as ``invalid`` (ptime must be a multiple of 20 ms).
"""
from __future__ import annotations

import enum
import logging
import math
from collections import deque
from dataclasses import dataclass, field

from mediagw.media.rtp import RtpPacket, timestamp_diff

logger = logging.getLogger(__name__)

FRAME_SAMPLES = 160  # 20 ms at 8 kHz, RFC 3551 §4.5.14
Q12_UNITY = 4096


class FrameKind(enum.Enum):
    """What ``JitterBuffer.pop`` returns for one tick."""

    AUDIO = "audio"
    """``payload`` is the encoded frame received for this tick."""
    CONCEAL = "conceal"
    """No frame: decode ``payload`` (the last good frame) and scale it by ``gain_q12``."""
    SILENCE = "silence"
    """Nothing to play (not started yet, or concealment has faded out)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One tick of playout."""

    kind: FrameKind
    payload: bytes = b""
    """Encoded G.711 octets (AUDIO: this tick's frame; CONCEAL: the last good frame); empty for SILENCE."""
    payload_type: int | None = None
    """RTP payload type of ``payload`` (0 PCMU, 8 PCMA), None for SILENCE."""
    gain_q12: int = Q12_UNITY
    """Gain to apply after decoding, in Q12 (4096 = unity); below unity for concealment."""


SILENCE = Frame(FrameKind.SILENCE)


@dataclass(slots=True)
class JitterStats:
    """Counters of one jitter buffer (cumulative across resets)."""

    received: int = 0
    """Frames accepted into the buffer."""
    duplicates: int = 0
    late: int = 0
    lost: int = 0
    """Slots with no frame when their tick came (silence-suppression gaps count too)."""
    underruns: int = 0
    """Lost slots while nothing at all was buffered (a stall, or silence suppression)."""
    concealed: int = 0
    """Ticks answered with CONCEAL."""
    played: int = 0
    skipped: int = 0
    """Buffered frames thrown away to shrink the delay (or because ticks were missed)."""
    stretched: int = 0
    """Ticks repeated to grow the delay."""
    invalid: int = 0
    resets: int = 0
    depth: int = 0
    """Current target depth in frames."""
    jitter: float = 0.0
    """Interarrival jitter estimate in frames (RFC 3550 A.8 form)."""


@dataclass(slots=True)
class JitterBuffer:
    """Reorders 20 ms G.711 frames for one media leg and plays one per tick; see the module docstring."""

    min_depth: int = 2
    """Smallest target delay in frames (1 frame = play on the tick after arrival at the earliest)."""
    max_depth: int = 10
    conceal_frames: int = 3
    """Missing frames concealed by repetition before silence; gains fade linearly to zero."""
    shrink_after: int = 250
    """Ticks (5 s) of calm before the target depth may shrink by one frame."""
    resync_frames: int = 50
    """A packet further than this many frames from the playout point resets the timeline (1 s)."""
    stats: JitterStats = field(default_factory=JitterStats)

    _ssrc: int | None = field(default=None, init=False, repr=False)
    _frames: dict[int, tuple[bytes, int]] = field(default_factory=dict, init=False, repr=False)
    _recent: deque[int] = field(default_factory=lambda: deque(maxlen=64), init=False, repr=False)
    _recent_set: set[int] = field(default_factory=set, init=False, repr=False)
    _base_timestamp: int = field(default=0, init=False, repr=False)
    _ext_timestamp: int = field(default=0, init=False, repr=False)
    _last_timestamp: int = field(default=0, init=False, repr=False)
    _offset: int = field(default=0, init=False, repr=False)
    _next_index: int = field(default=0, init=False, repr=False)
    _first_index: int = field(default=0, init=False, repr=False)
    _transit_floor: float = field(default=0.0, init=False, repr=False)
    _last_transit: float | None = field(default=None, init=False, repr=False)
    _target: int = field(default=0, init=False, repr=False)
    _calm_ticks: int = field(default=0, init=False, repr=False)
    _last_tick: int | None = field(default=None, init=False, repr=False)
    _loss_run: int = field(default=0, init=False, repr=False)
    _last_good: bytes = field(default=b"", init=False, repr=False)
    _last_payload_type: int | None = field(default=None, init=False, repr=False)
    _started: bool = field(default=False, init=False, repr=False)
    _anchored: bool = field(default=True, init=False, repr=False)
    _last_bump_tick: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.min_depth <= self.max_depth:
            raise ValueError(f"need 1 <= min_depth <= max_depth, got {self.min_depth}, {self.max_depth}")
        self._target = self.min_depth
        self.stats.depth = self._target

    # -- input ------------------------------------------------------------------------------------------

    def put(self, packet: RtpPacket, arrival_tick: float | None = None) -> None:
        """Store ``packet``. ``arrival_tick`` is the arrival time in ticks (fractions allowed); it defaults
        to the last tick popped, i.e. "arrived after that tick's frame was played"."""
        if arrival_tick is not None:
            arrival = arrival_tick
        elif self._last_tick is not None:
            arrival = float(self._last_tick)
        else:
            arrival = 0.0  # re-anchored on the first pop, see _anchor
        payload = packet.payload
        if not payload or len(payload) % FRAME_SAMPLES:
            self.stats.invalid += 1
            return
        if packet.ssrc != self._ssrc or not self._started:
            self._reset(packet, arrival)
            self._anchored = arrival_tick is not None or self._last_tick is not None
        index = self._index(packet.timestamp)
        if abs(index - self._next_index) > self.resync_frames + self.max_depth:
            # RFC 3550 §5.1 lets a timestamp start anywhere; a sender that jumps (re-INVITE, media source
            # switch without SSRC change) gets a new timeline rather than a second of silence or drops.
            self._reset(packet, arrival)
            index = self._index(packet.timestamp)
        frames = len(payload) // FRAME_SAMPLES
        for n in range(frames):
            self._store(index + n, payload[n * FRAME_SAMPLES : (n + 1) * FRAME_SAMPLES], packet, arrival)

    def _index(self, timestamp: int) -> int:
        """Slot of an RTP timestamp: unwrapped relative to the last one seen, rounded to 160 samples."""
        self._ext_timestamp += timestamp_diff(timestamp, self._last_timestamp)
        self._last_timestamp = timestamp
        return (self._ext_timestamp - self._base_timestamp + FRAME_SAMPLES // 2) // FRAME_SAMPLES

    def _store(self, index: int, payload: bytes, packet: RtpPacket, arrival: float) -> None:
        if index in self._frames or index in self._recent_set:
            self.stats.duplicates += 1
            return
        if index < self._next_index:
            self.stats.late += 1
            if self._last_bump_tick != self._last_tick:  # one frame deeper per tick at most
                self._last_bump_tick = self._last_tick
                self._grow_target(self._target + 1)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("late frame %d (playing %d), ssrc %08x", index, self._next_index, packet.ssrc)
            return
        self._frames[index] = (payload, packet.payload_type)
        self.stats.received += 1
        self._observe_transit(arrival - index)

    def _observe_transit(self, transit: float) -> None:
        """Track the transit floor and the jitter (RFC 3550 A.8: J += (|D| - J) / 16, here in frames)."""
        if self._last_transit is not None:
            self.stats.jitter += (abs(transit - self._last_transit) - self.stats.jitter) / 16.0
        self._last_transit = transit
        if transit < self._transit_floor:
            self._transit_floor = transit
        else:
            self._transit_floor += (transit - self._transit_floor) / 512.0  # follow clock skew slowly
        want = min(self.max_depth, max(self.min_depth, math.ceil(3.0 * self.stats.jitter) + 1))
        self._grow_target(want)

    def _grow_target(self, want: int) -> None:
        want = min(self.max_depth, want)
        if want > self._target:
            self._target = want
            self._calm_ticks = 0
        self.stats.depth = self._target

    def _reset(self, packet: RtpPacket, arrival: float) -> None:
        """Start a new timeline at ``packet`` (first packet, new SSRC, timestamp jump)."""
        if self._started:
            self.stats.resets += 1
        self._ssrc = packet.ssrc
        self._frames.clear()
        self._recent.clear()
        self._recent_set.clear()
        self._base_timestamp = packet.timestamp
        self._ext_timestamp = packet.timestamp
        self._last_timestamp = packet.timestamp
        self._transit_floor = arrival
        self._last_transit = None
        self._offset = math.floor(arrival) + self._target
        self._next_index = math.floor(arrival) + 1 - self._offset
        self._first_index = 0
        self._started = True

    # -- output -----------------------------------------------------------------------------------------

    def pop(self, tick: int) -> Frame:
        """Return the frame to play at ``tick`` (call once per 20 ms tick, ticks increasing)."""
        self._last_tick = tick
        if not self._started:
            return SILENCE
        if not self._anchored:
            self._anchor(tick)
        self._adapt()
        index = tick - self._offset
        if index < self._next_index:
            # The delay grew: repeat instead of playing ahead of time.
            self.stats.stretched += 1
            return self._conceal(count_loss=False)
        if index > self._next_index:
            for skipped in sorted(k for k in self._frames if k < index):
                del self._frames[skipped]
                self.stats.skipped += 1
                self._remember(skipped)
        self._next_index = index + 1
        entry = self._frames.pop(index, None)
        if entry is not None:
            self._remember(index)
            payload, payload_type = entry
            self._loss_run = 0
            self._last_good = payload
            self._last_payload_type = payload_type
            self.stats.played += 1
            return Frame(FrameKind.AUDIO, payload, payload_type)
        if index < self._first_index:
            return SILENCE
        return self._conceal(count_loss=True)

    def _anchor(self, tick: int) -> None:
        """Packets arrived before the first pop with no arrival time: say they arrived just before it."""
        shift = tick - 1
        self._transit_floor += shift
        self._offset += shift
        if self._last_transit is not None:
            self._last_transit += shift
        self._anchored = True

    def _remember(self, index: int) -> None:
        """Note a slot that was received and played (or skipped), to tell duplicates from late frames."""
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(index)
        self._recent_set.add(index)

    def _conceal(self, count_loss: bool) -> Frame:
        """Repeat the last good frame with a fading gain for ``conceal_frames`` ticks, then silence."""
        if count_loss:
            self.stats.lost += 1
            if not self._frames:
                self.stats.underruns += 1
        self._loss_run += 1
        if not self._last_good or self._loss_run > self.conceal_frames:
            return SILENCE
        gain = Q12_UNITY * (self.conceal_frames + 1 - self._loss_run) // (self.conceal_frames + 1)
        self.stats.concealed += 1
        return Frame(FrameKind.CONCEAL, self._last_good, self._last_payload_type, gain)

    def _adapt(self) -> None:
        """Move the playout offset one tick towards floor(transit floor) + target depth."""
        self._calm_ticks += 1
        if self._calm_ticks >= self.shrink_after and self._target > self.min_depth:
            want = min(self.max_depth, max(self.min_depth, math.ceil(3.0 * self.stats.jitter) + 1))
            if want < self._target:
                self._target -= 1
                self.stats.depth = self._target
            self._calm_ticks = 0
        desired = math.floor(self._transit_floor) + self._target
        if desired > self._offset:
            self._offset += 1
        elif desired < self._offset:
            self._offset -= 1

    @property
    def buffered(self) -> int:
        """Frames waiting to be played."""
        return len(self._frames)
