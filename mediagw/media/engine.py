"""The media engine: every RTP leg and local player of the process, advanced once per 20 ms tick.

Theory of operation
-------------------
A *slot* is one media participant: an RTP leg (a socket pair from ``mediagw.media.ports``, a jitter buffer,
a codec, RFC 4733 state) or a local player (prompt, tone, hold music). What each slot hears is a row of
the listen matrix (``set_listen``); bridges are just disjoint groups of rows. The one media clock
(``mediagw.media.clock``) calls ``tick(now)`` every 20 ms; one tick is

1. *receive*: drain every socket (epoll + recvmmsg), parse RTP (RFC 3550 §5.1), latch/check the source,
   route telephone-events (RFC 4733) and audio into the jitter buffer; pop one frame per slot;
2. *mix*: ONE call of the mixing kernel (``mediagw._native.mix.mix_tick``) for all slots: decode, mix by
   the CSR listen matrix with Q12 gains and saturation, encode per listener codec;
3. *transmit*: an RTP header in front of each encoded row, one ``sendto`` per sending leg.

``MediaEngine`` does steps 1 and 3 in C (``mediagw._native.rtpio.RtpCore``): at scale no Python runs per
packet, per frame or per leg; Python only sees events (``events()``) and gives commands (``add_leg``,
``set_listen``, ``update_leg`` ...). ``ReferenceEngine`` is the same API in plain Python on the reference
modules (``rtp``, ``jitter``, ``dtmf``, ``mix.reference``) and ordinary sockets; tests hold the two to the
same output bytes. Neither reads a clock for media decisions: ``now`` is a parameter (the native side
only measures its own phase timings for ``figures()``).

Sockets are the caller's: the engine never closes them; call ``remove(slot)`` and then close them.
"""

from __future__ import annotations

import heapq
import logging
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mediagw.errors import LocalError
from mediagw.media import dtmf as dtmf_mod
from mediagw.media import mix as mix_mod
from mediagw.media.rtcp import RtcpScheduler, RtcpSenderInfo, ntp_timestamp
from mediagw.media.rtp import RtpReceiverStats

logger = logging.getLogger(__name__)

FRAME_SAMPLES = 160  # 20 ms at 8 kHz, RFC 3551 §4.5.14
TICK = 0.020  # seconds per frame
Q12_UNITY = 4096
PCMU = 0  # RFC 3551 §6 Table 4
PCMA = 8
DTMF_EVENTS = dtmf_mod.EVENTS  # event codes 0..15, RFC 4733 §3.2
DTMF_OPEN_TIMEOUT = 0.5  # seconds; an event whose end packets were all lost is reported after this
MAX_SEQUENTIAL_JUMP = 3000  # RFC 3550 Appendix A.1 MAX_DROPOUT: a backward jump this large re-bases
RTCP_PER_TICK = 32  # reports built per tick at most (2,000 legs every 5 s need 8 per tick on average)

Address = tuple[str, int]
Pcm = npt.NDArray[np.int16]


# ---- events (past tense, frozen, slotted) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A DTMF digit arrived as RFC 4733 telephone-events on a leg."""

    slot: int
    """The leg it came from."""
    digit: str
    """One of 0-9 * # A-D."""
    duration_ms: int
    """How long the key was held (the event's final duration, RFC 4733 §2.3.5)."""


@dataclass(frozen=True, slots=True)
class RtpTimedOut:
    """A receiving leg got no RTP for ``rtp_timeout`` seconds (the call then ends with reason rtp-timeout)."""

    slot: int
    """The silent leg."""
    idle_seconds: float
    """Seconds since the last packet (or since the leg started receiving)."""


@dataclass(frozen=True, slots=True)
class SsrcChanged:
    """The peer of a leg switched to another SSRC (RFC 3550 §8.2); the jitter buffer restarted."""

    slot: int
    """The leg."""
    old: int
    """The previous SSRC."""
    new: int
    """The SSRC now received."""


@dataclass(frozen=True, slots=True)
class PlayerFinished:
    """A non-looping player has played its last sample (the slot stays until ``remove``)."""

    slot: int
    """The player."""


MediaEvent = DtmfReceived | RtpTimedOut | SsrcChanged | PlayerFinished


@dataclass(frozen=True, slots=True)
class LegStats:
    """Counters of one leg (cumulative since ``add_leg``)."""

    received: int
    """RTP packets accepted from the peer (audio and telephone-events)."""
    lost: int
    """Packets expected from the sequence numbers but not received (RFC 3550 §6.4.1), not below 0."""
    duplicates: int
    """Frames received twice (dropped by the jitter buffer)."""
    late: int
    """Frames that arrived after their playout time (dropped)."""
    concealed: int
    """Ticks played from concealment (repeat of the last frame, fading)."""
    sent: int
    """RTP packets sent (audio and telephone-events)."""
    jitter_ms: float
    """Interarrival jitter estimate (RFC 3550 A.8 form, in frames of the media clock) in milliseconds."""
    depth_frames: int
    """Current target depth of the jitter buffer."""
    last_rx: float | None
    """``now`` of the tick that received the last packet, None before the first."""
    expected: int = 0
    """Packets expected from the extended sequence numbers (RFC 3550 Appendix A.3)."""
    underruns: int = 0
    """Ticks with nothing at all buffered (silence suppression or a stalled network)."""
    wrong_source: int = 0
    """Packets ignored because they came from another address than the latched one."""
    malformed: int = 0
    """Datagrams that were not valid RTP (dropped)."""
    rtcp_received: int = 0
    """Datagrams received on the RTCP port."""


@dataclass(frozen=True, slots=True)
class LegIdentity:
    """What we send with on a leg: RFC 3550 §5.1 says SSRC, sequence number and timestamp start random."""

    ssrc: int
    sequence_number: int
    timestamp: int


def gain_to_q12(gain: float) -> int:
    """A linear gain as Q12 (4096 = 1.0), saturated to the int16 range of the kernel."""
    return max(-32768, min(32767, round(gain * Q12_UNITY)))


def dtmf_duration_units(duration_ms: int) -> int:
    """Event duration in timestamp units, rounded up to whole 20 ms packets (as ``DtmfSender.build``)."""
    total = max(1, -(-duration_ms // 20)) * FRAME_SAMPLES
    if total > 0xFFFF:
        raise ValueError(f"DTMF duration {duration_ms} ms exceeds one RFC 4733 event (8.19 s)")
    return total


def dtmf_event_code(digit: str) -> int:
    """RFC 4733 §3.2 event code of a DTMF digit; raises ``ValueError`` for anything else."""
    code = DTMF_EVENTS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"{digit!r} is not a DTMF digit (0-9 * # A-D)")
    return code


@dataclass(slots=True)
class _RtcpLeg:
    """RTCP of one leg (RFC 3550 §6): a report every ``RTCP_INTERVAL`` seconds, BYE when it ends."""

    scheduler: RtcpScheduler
    sock: socket.socket
    source: RtpReceiverStats | None = None
    packets_sent_at_last_report: int = 0
    reports: int = 0


class _EngineBase:
    """What both engines share: the listen matrix, slot bookkeeping, identities, RTCP, figures.

    RTCP runs in Python at its own low rate (one report per leg every 5 s, RFC 3550 §6.2), from the
    counters the engine keeps; a heap of due times makes a tick with nothing due cost one comparison.
    """

    def __init__(
        self,
        max_slots: int,
        jitter_min_frames: int,
        jitter_max_frames: int,
        rtp_timeout: float,
        seed: int | None,
        rtcp: bool = True,
    ) -> None:
        if max_slots <= 0:
            raise ValueError("max_slots must be positive")
        self.max_slots = max_slots
        self.jitter_min_frames = jitter_min_frames
        self.jitter_max_frames = jitter_max_frames
        self.rtp_timeout = rtp_timeout
        self._rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self._listen: dict[int, list[tuple[int, int]]] = {}
        self._matrix_dirty = True
        self._csr_n = -1
        self._row_ptr = np.zeros(1, dtype=np.int32)
        self._col = np.zeros(0, dtype=np.int32)
        self._gain = np.zeros(0, dtype=np.int16)
        self._mix_seconds = 0.0
        self._tick_seconds = 0.0
        self._max_tick_seconds = 0.0
        self._rtcp_enabled = rtcp
        self._cname = f"{self._rng.getrandbits(64):016x}@mediagw"  # RFC 7022 §4.2: random, per session
        self._rtcp_legs: dict[int, _RtcpLeg] = {}
        self._rtcp_heap: list[tuple[float, int]] = []
        self._rtcp_unstarted: list[int] = []
        self._rtcp_sent = 0
        self._now: float | None = None

    # -- shared helpers -------------------------------------------------------------------------------

    def _new_identity(self) -> LegIdentity:
        """Random SSRC, first sequence number and timestamp (RFC 3550 §5.1); seeded engines repeat them."""
        return LegIdentity(self._rng.getrandbits(32), self._rng.getrandbits(16), self._rng.getrandbits(32))

    def _check_slot(self, slot: int) -> None:
        raise NotImplementedError

    def _rtcp_snapshot(self, slot: int) -> dict[str, Any]:
        """The counters RTCP needs (the keys of the native ``RtpCore.leg_stats``)."""
        raise NotImplementedError

    # -- RTCP (RFC 3550 §6), Python at low rate ---------------------------------------------------------

    def _rtcp_add(self, slot: int, rtcp_sock: socket.socket | None, ssrc: int) -> None:
        if self._rtcp_enabled and rtcp_sock is not None:
            self._rtcp_legs[slot] = _RtcpLeg(RtcpScheduler(ssrc, self._cname), rtcp_sock)
            self._rtcp_unstarted.append(slot)

    def _rtcp_run(self, now: float) -> None:
        """Send the reports that are due (called at the end of each tick), at most ``RTCP_PER_TICK``.

        Intervals are randomized to 0.5..1.5 times the nominal one (RFC 3550 §6.3.1), so legs set up in
        the same tick do not all report in the same later tick; the cap bounds the Python work per tick.
        """
        self._now = now
        heap = self._rtcp_heap
        if self._rtcp_unstarted:
            for slot in self._rtcp_unstarted:
                entry = self._rtcp_legs.get(slot)
                if entry is not None:
                    entry.scheduler.start(now)  # first report after half an interval (RFC 3550 §6.2)
                    self._rtcp_arm(entry, slot, now, entry.scheduler.interval / 2)
            self._rtcp_unstarted.clear()
        budget = RTCP_PER_TICK
        while heap and heap[0][0] <= now and budget > 0:
            due, slot = heapq.heappop(heap)
            entry = self._rtcp_legs.get(slot)
            if entry is None or entry.scheduler.next_due != due:
                continue  # removed, or a stale entry
            budget -= 1
            snap = self._rtcp_snapshot(slot)
            sources, sender_info = self._rtcp_inputs(entry, snap)
            data = entry.scheduler.build_report(now, sources, sender_info)
            self._rtcp_send(entry, snap, data)
            self._rtcp_arm(entry, slot, now, entry.scheduler.interval)

    def _rtcp_arm(self, entry: _RtcpLeg, slot: int, now: float, interval: float) -> None:
        due = now + interval * (0.5 + self._rng.random())  # RFC 3550 §6.3.1: randomized to 0.5..1.5
        entry.scheduler.next_due = due
        heapq.heappush(self._rtcp_heap, (due, slot))

    def _rtcp_inputs(
        self, entry: _RtcpLeg, snap: dict[str, Any]
    ) -> tuple[list[RtpReceiverStats], RtcpSenderInfo | None]:
        """Receiver statistics of the current source and, if we sent since the last report, sender info."""
        sources: list[RtpReceiverStats] = []
        if snap["ssrc"] is not None:
            source = entry.source
            if source is None or source.ssrc != snap["ssrc"]:
                source = RtpReceiverStats()
                source.ssrc = snap["ssrc"]
                source.probation = 0
                entry.source = source
            extended = int(snap["extended_max_seq"])
            source.base_seq = int(snap["base_seq"])
            source.max_seq = extended & 0xFFFF
            source.cycles = extended - (extended & 0xFFFF)
            source.received = int(snap["source_received"])
            source.jitter = float(snap["jitter_units"])
            sources.append(source)
        sender_info = None
        if snap["sent"] > entry.packets_sent_at_last_report:  # RFC 3550 §6.4: SR only from active senders
            sender_info = RtcpSenderInfo(
                ntp_timestamp(time.time()),  # wallclock, RFC 3550 §6.4.1; only ever used here
                int(snap["tx_timestamp"]) & 0xFFFFFFFF,
                int(snap["sent"]) & 0xFFFFFFFF,
                int(snap["octets_sent"]) & 0xFFFFFFFF,
            )
            entry.packets_sent_at_last_report = int(snap["sent"])
        return sources, sender_info

    def _rtcp_send(self, entry: _RtcpLeg, snap: dict[str, Any], data: bytes) -> None:
        remote = snap["remote"]
        if remote is None:
            return
        try:
            entry.sock.sendto(data, (remote[0], remote[1] + 1))  # RTCP on the next port, RFC 3550 §11
        except OSError:
            return
        entry.reports += 1
        self._rtcp_sent += 1

    def _rtcp_bye(self, slot: int) -> None:
        """RFC 3550 §6.6: a last report and BYE when a leg is removed (after at least one tick)."""
        entry = self._rtcp_legs.pop(slot, None)
        if entry is None or self._now is None:
            return
        snap = self._rtcp_snapshot(slot)
        sources, sender_info = self._rtcp_inputs(entry, snap)
        self._rtcp_send(entry, snap, entry.scheduler.build_bye(self._now, sources, sender_info))

    def set_listen(self, listener_slot: int, sources: Sequence[tuple[int, float]]) -> None:
        """``listener_slot`` hears ``sources`` (slot, linear gain) from the next tick on; [] hears nothing."""
        self._check_slot(listener_slot)
        entries: list[tuple[int, int]] = []
        for source, gain in sources:
            self._check_slot(source)
            entries.append((source, gain_to_q12(gain)))
        if len(entries) > mix_mod.MAX_ROW_ENTRIES:
            raise ValueError(f"a listener hears at most {mix_mod.MAX_ROW_ENTRIES} sources")
        if entries:
            self._listen[listener_slot] = entries
        else:
            self._listen.pop(listener_slot, None)
        self._matrix_dirty = True

    def listening(self, listener_slot: int) -> list[tuple[int, float]]:
        """The sources ``listener_slot`` hears, with their gains."""
        return [(source, q12 / Q12_UNITY) for source, q12 in self._listen.get(listener_slot, [])]

    def _forget_in_matrix(self, slot: int) -> None:
        self._listen.pop(slot, None)
        for listener, entries in list(self._listen.items()):
            kept = [entry for entry in entries if entry[0] != slot]
            if len(kept) != len(entries):
                if kept:
                    self._listen[listener] = kept
                else:
                    del self._listen[listener]
        self._matrix_dirty = True

    def _csr(self, n: int) -> None:
        """Rebuild the CSR arrays of the listen matrix for ``n`` slots (only after a change)."""
        if not self._matrix_dirty and n == self._csr_n:
            return
        triples = [
            (listener, source, q12)
            for listener, entries in self._listen.items()
            if listener < n
            for source, q12 in entries
            if source < n
        ]
        self._row_ptr, self._col, self._gain = mix_mod.listen_matrix(n, triples)
        self._csr_n = n
        self._matrix_dirty = False


# ---- the native engine ------------------------------------------------------------------------------------


class MediaEngine(_EngineBase):
    """The production engine: RTP I/O, jitter buffers and packetization in C, one kernel call per tick."""

    def __init__(
        self,
        max_slots: int = 4096,
        jitter_min_frames: int = 1,
        jitter_max_frames: int = 8,
        rtp_timeout: float = 60.0,
        *,
        seed: int | None = None,
        connect_sockets: bool = False,
        rtcp: bool = True,
    ) -> None:
        """``seed`` makes SSRCs, sequence numbers and timestamps repeatable (tests); ``connect_sockets``
        connects each leg's RTP socket to its peer once known: half the send cost on Linux (no route lookup
        per packet), and the kernel then drops packets from other sources (strict symmetric RTP); the
        sockets must then be bound to an explicit port (``PortAllocator`` does): Linux forgets an automatic
        port when a connection is dissolved to latch again;
        ``rtcp`` sends RTCP reports and BYE (RFC 3550 §6) on legs that have an RTCP socket."""
        super().__init__(max_slots, jitter_min_frames, jitter_max_frames, rtp_timeout, seed, rtcp)
        self.connect_sockets = connect_sockets
        from mediagw._native import mix as mix_kernel
        from mediagw._native import rtpio

        self._kernel = mix_kernel.mix_tick
        self._codes = np.zeros((max_slots, FRAME_SAMPLES), dtype=np.uint8)
        self._in_codec = np.full(max_slots, mix_mod.CODEC_NONE, dtype=np.uint8)
        self._pcm_in = np.zeros((max_slots, FRAME_SAMPLES), dtype=np.int16)
        self._out_codec = np.full(max_slots, mix_mod.CODEC_NONE, dtype=np.uint8)
        self._out_codes = np.zeros((max_slots, FRAME_SAMPLES), dtype=np.uint8)
        self._out_pcm = np.zeros((max_slots, FRAME_SAMPLES), dtype=np.int16)
        self._core = rtpio.RtpCore(
            max_slots,
            jitter_min_frames,
            jitter_max_frames,
            rtp_timeout,
            self._codes,
            self._in_codec,
            self._pcm_in,
            self._out_codec,
            self._out_codes,
            self._out_pcm,
            connect_sockets,
        )
        self._views: tuple[Any, ...] = ()
        self._views_n = -1
        self._taps: set[int] = set()

    def _check_slot(self, slot: int) -> None:
        if not self._core.in_use(slot):
            raise LocalError(f"slot {slot} is not in use")

    def _check_leg(self, slot: int) -> None:
        if not self._core.is_leg(slot):
            raise LocalError(f"slot {slot} is not an RTP leg")

    # -- commands ---------------------------------------------------------------------------------------

    def add_leg(
        self,
        rtp_sock: socket.socket,
        rtcp_sock: socket.socket | None,
        remote: Address | None,
        payload_type: int,
        telephone_event_pt: int | None,
        latch: bool,
    ) -> int:
        """Start a leg on a bound non-blocking socket pair; returns its slot. Sends once a remote is known."""
        identity = self._new_identity()
        slot = int(
            self._core.add_leg(
                rtp_sock.fileno(),
                rtcp_sock.fileno() if rtcp_sock is not None else -1,
                int(rtp_sock.family),
                remote,
                payload_type,
                -1 if telephone_event_pt is None else telephone_event_pt,
                latch,
                identity.ssrc,
                identity.sequence_number,
                identity.timestamp,
            )
        )
        self._rtcp_add(slot, rtcp_sock, identity.ssrc)
        return slot

    def update_leg(
        self,
        slot: int,
        *,
        remote: Address | None = None,
        payload_type: int | None = None,
        telephone_event_pt: int | None = None,
        send: bool | None = None,
        receive: bool | None = None,
    ) -> None:
        """Change a leg after a re-INVITE; ``send=False`` is hold (RFC 3264 §8.4: sendonly/inactive)."""
        self._check_leg(slot)
        self._core.update_leg(
            slot,
            remote,
            -1 if payload_type is None else payload_type,
            -2 if telephone_event_pt is None else telephone_event_pt,
            -1 if send is None else int(send),
            -1 if receive is None else int(receive),
        )

    def add_player(self, pcm: Pcm, loop: bool = False) -> int:
        """A local source playing ``pcm`` (int16, 8 kHz mono); returns its slot."""
        data = np.array(pcm, dtype=np.int16, copy=True).reshape(-1)  # the core reads it in place
        return int(self._core.add_player(data, loop))

    def remove(self, slot: int) -> None:
        """Forget a leg or player (and every matrix entry naming it); the caller then closes the sockets."""
        self._check_slot(slot)
        self._rtcp_bye(slot)
        self._core.remove(slot)
        self._taps.discard(slot)
        self._forget_in_matrix(slot)

    def send_dtmf(self, slot: int, digit: str, duration_ms: int = 160) -> None:
        """Send ``digit`` as RFC 4733 telephone-events (§2.5.1) on the next ticks, queued behind others."""
        self._check_leg(slot)
        self._core.send_dtmf(slot, dtmf_event_code(digit), dtmf_duration_units(duration_ms))

    def enable_tap(self, slot: int, output: bool = True) -> None:
        """Keep the decoded PCM this slot receives (and, with ``output``, what it is sent) for ``tap``."""
        self._check_slot(slot)
        self._core.set_tap(slot, True, output)
        self._taps.add(slot)

    def disable_tap(self, slot: int) -> None:
        """Stop keeping PCM for ``slot``."""
        self._check_slot(slot)
        self._core.set_tap(slot, False, False)
        self._taps.discard(slot)

    def tap(self, slot: int) -> Pcm:
        """View of the 160 samples ``slot`` received in the last tick (after jitter buffer, concealment)."""
        if slot not in self._taps:
            raise LocalError(f"slot {slot} has no tap; call enable_tap first")
        view: Pcm = self._pcm_in[slot]
        return view

    def tap_output(self, slot: int) -> Pcm:
        """View of the 160 samples ``slot`` was sent (its mix) in the last tick."""
        if slot not in self._taps:
            raise LocalError(f"slot {slot} has no tap; call enable_tap first")
        view: Pcm = self._out_pcm[slot]
        return view

    # -- the tick ---------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Advance every slot by one 20 ms frame: receive, play out, mix (one kernel call), transmit."""
        started = time.perf_counter()
        n = self._core.receive(now)
        if n:
            self._csr(n)
            if n != self._views_n:
                self._views = (
                    self._codes[:n],
                    self._in_codec[:n],
                    self._out_codec[:n],
                    self._out_codes[:n],
                    self._pcm_in[:n],
                    self._out_pcm[:n],
                )
                self._views_n = n
            codes, in_codec, out_codec, out_codes, pcm_in, out_pcm = self._views
            mixed = time.perf_counter()
            self._kernel(
                codes, in_codec, self._row_ptr, self._col, self._gain, out_codec, out_codes, pcm_in, out_pcm
            )
            self._mix_seconds += time.perf_counter() - mixed
            self._core.transmit(now)
        self._rtcp_run(now)
        elapsed = time.perf_counter() - started
        self._tick_seconds += elapsed
        self._max_tick_seconds = max(self._max_tick_seconds, elapsed)

    def _rtcp_snapshot(self, slot: int) -> dict[str, Any]:
        snap: dict[str, Any] = self._core.leg_stats(slot)
        return snap

    def events(self) -> list[MediaEvent]:
        """Events since the last call, oldest first."""
        return [_event(raw) for raw in self._core.pop_events()]

    def stats(self, slot: int) -> LegStats:
        """Counters of one leg."""
        self._check_leg(slot)
        raw = self._core.leg_stats(slot)
        return LegStats(
            received=raw["received"],
            lost=raw["lost"],
            duplicates=raw["duplicates"],
            late=raw["late"],
            concealed=raw["concealed"],
            sent=raw["sent"],
            jitter_ms=raw["jitter_ms"],
            depth_frames=raw["depth_frames"],
            last_rx=raw["last_rx"],
            expected=raw["expected"],
            underruns=raw["underruns"],
            wrong_source=raw["wrong_source"],
            malformed=raw["malformed"],
            rtcp_received=raw["rtcp_received"],
        )

    def figures(self) -> dict[str, float]:
        """Engine-wide figures: ticks, slots, packets, and seconds spent per phase (cumulative)."""
        core = self._core
        ticks = max(1, core.ticks)
        return {
            "ticks": core.ticks,
            "slots": core.slots_used,
            "legs": core.legs,
            "players": core.slots_used - core.legs,
            "packets_in": core.packets_in,
            "packets_out": core.packets_out,
            "packets_in_per_tick": core.packets_in / ticks,
            "packets_out_per_tick": core.packets_out / ticks,
            "packets_in_last_tick": core.last_packets_in,
            "packets_out_last_tick": core.last_packets_out,
            "rtcp_in": core.rtcp_in,
            "send_errors": core.send_errors,
            "syscalls_rx": core.syscalls_rx,
            "syscalls_tx": core.syscalls_tx,
            "seconds_rx": core.time_rx,
            "seconds_playout": core.time_playout,
            "seconds_mix": self._mix_seconds,
            "seconds_tx": core.time_tx,
            "seconds_tick": self._tick_seconds,
            "max_tick_seconds": self._max_tick_seconds,
            "rtcp_sent": self._rtcp_sent,
        }


def _event(raw: tuple[int, int, Any, Any]) -> MediaEvent:
    """A native event tuple (mediagw._native.rtpio.EVENT_*) as a dataclass."""
    kind, slot, a, b = raw
    if kind == 1:
        return DtmfReceived(slot, DTMF_EVENTS[a], _units_to_ms(b))
    if kind == 2:
        return RtpTimedOut(slot, float(a))
    if kind == 3:
        return SsrcChanged(slot, int(a), int(b))
    return PlayerFinished(slot)


def _units_to_ms(units: int) -> int:
    """Timestamp units of telephone-event/8000 (RFC 4733 §2.1) in whole milliseconds."""
    return int(units) * 1000 // 8000
