"""The pure-Python reference media engine: the same API as ``MediaEngine`` on the reference modules.

``ReferenceEngine`` runs every step of a tick in Python (``rtp``, ``jitter``, ``dtmf``, ``mix.reference``)
on ordinary sockets. It is slow on purpose and exists so that tests can hold the native engine to the same
output bytes and events (see the theory of operation in ``mediagw.media.engine``).
"""
from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mediagw.errors import LocalError, RtpError
from mediagw.media import dtmf as dtmf_mod
from mediagw.media import g711
from mediagw.media import mix as mix_mod
from mediagw.media.engine import (
    DTMF_OPEN_TIMEOUT,
    FRAME_SAMPLES,
    MAX_SEQUENTIAL_JUMP,
    PCMA,
    PCMU,
    Q12_UNITY,
    Address,
    DtmfReceived,
    LegIdentity,
    LegStats,
    MediaEngine,
    MediaEvent,
    Pcm,
    PlayerFinished,
    RtpTimedOut,
    SsrcChanged,
    _EngineBase,
    dtmf_duration_units,
    dtmf_event_code,
    gain_to_q12,
)
from mediagw.media.jitter import FrameKind, JitterBuffer
from mediagw.media.rtp import RtpPacket

logger = logging.getLogger(__name__)




@dataclass(slots=True)
class _RefSlot:
    """One slot of the reference engine."""

    tap_in: bool = False
    tap_out: bool = False


@dataclass(slots=True, kw_only=True)
class _RefLeg(_RefSlot):
    """An RTP leg of the reference engine: the same state the native ``Slot`` struct keeps."""

    rtp_sock: socket.socket
    rtcp_sock: socket.socket | None = None
    remote: Address | None = None
    signalled: Address | None = None
    payload_type: int = PCMU
    te_pt: int | None = None
    latch: bool = False
    latched: bool = False
    source: Any = None
    send: bool = True
    receive: bool = True
    jitter: JitterBuffer = field(default_factory=JitterBuffer)
    dtmf: dtmf_mod.DtmfReceiver = field(default_factory=dtmf_mod.DtmfReceiver)
    identity: LegIdentity = field(default_factory=lambda: LegIdentity(0, 0, 0))
    seq: int = 0
    tick0: int = 0
    marker: bool = True
    packets_received: int = 0
    octets_received: int = 0
    malformed: int = 0
    wrong_source: int = 0
    wrong_payload_type: int = 0
    rtcp_received: int = 0
    last_rx: float | None = None
    timed_out: bool = False
    ssrc: int | None = None
    max_seq: int = 0
    ext_max: int = 0
    base_ext: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    sent: int = 0
    octets_sent: int = 0
    dtmf_queue: list[tuple[str, int]] = field(default_factory=list)
    dtmf_packets: list[dtmf_mod.DtmfPacket] = field(default_factory=list)
    last_tx_ts: int = 0


@dataclass(slots=True)
class _RefPlayer(_RefSlot):
    """A local player of the reference engine."""

    pcm: Pcm = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    pos: int = 0
    loop: bool = False
    finished: bool = False


class ReferenceEngine(_EngineBase):
    """The same API as ``MediaEngine`` in plain Python: reference modules, ordinary sockets, per packet."""

    def __init__(
        self,
        max_slots: int = 4096,
        jitter_min_frames: int = 1,
        jitter_max_frames: int = 8,
        rtp_timeout: float = 60.0,
        *,
        seed: int | None = None,
        rtcp: bool = True,
    ) -> None:
        super().__init__(max_slots, jitter_min_frames, jitter_max_frames, rtp_timeout, seed, rtcp)
        self._slots: dict[int, _RefLeg | _RefPlayer] = {}
        self._tick_index = 0
        self._events: list[MediaEvent] = []
        self._pcm_in: dict[int, Pcm] = {}
        self._out_pcm: dict[int, Pcm] = {}
        self._packets_in = 0
        self._packets_out = 0
        self._rx_seconds = 0.0
        self._tx_seconds = 0.0

    def _check_slot(self, slot: int) -> None:
        if slot not in self._slots:
            raise LocalError(f"slot {slot} is not in use")

    def _leg(self, slot: int) -> _RefLeg:
        leg = self._slots.get(slot)
        if not isinstance(leg, _RefLeg):
            raise LocalError(f"slot {slot} is not an RTP leg")
        return leg

    def _alloc(self) -> int:
        for slot in range(self.max_slots):
            if slot not in self._slots:
                return slot
        raise RuntimeError(f"all {self.max_slots} media slots are in use")

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
        """See ``MediaEngine.add_leg``."""
        if payload_type not in (PCMU, PCMA):
            raise ValueError(f"payload type {payload_type} is not PCMU (0) or PCMA (8)")
        identity = self._new_identity()
        slot = self._alloc()
        leg = _RefLeg(
            rtp_sock=rtp_sock,
            rtcp_sock=rtcp_sock,
            remote=_address(remote),
            signalled=_address(remote),
            payload_type=payload_type,
            te_pt=telephone_event_pt,
            latch=latch,
            jitter=JitterBuffer(min_depth=self.jitter_min_frames, max_depth=self.jitter_max_frames),
            dtmf=dtmf_mod.DtmfReceiver(timeout=DTMF_OPEN_TIMEOUT),
            identity=identity,
            seq=identity.sequence_number,
            tick0=self._tick_index,
        )
        self._rtcp_add(slot, rtcp_sock, identity.ssrc)
        self._slots[slot] = leg
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
        """See ``MediaEngine.update_leg``."""
        leg = self._leg(slot)
        if remote is not None:
            signalled = _address(remote)
            if signalled != leg.signalled:
                leg.signalled = signalled
                leg.remote = signalled
                leg.latched = False  # a new signalled address: the next packet's source is the peer again
        if payload_type is not None:
            if payload_type not in (PCMU, PCMA):
                raise ValueError(f"payload type {payload_type} is not PCMU (0) or PCMA (8)")
            leg.payload_type = payload_type
        if telephone_event_pt is not None:
            leg.te_pt = None if telephone_event_pt < 0 else telephone_event_pt
        if send is not None:
            if send and not leg.send:
                leg.marker = True
            leg.send = send
        if receive is not None:
            leg.receive = receive
            if receive:
                leg.timed_out = False
                leg.last_rx = None

    def add_player(self, pcm: Pcm, loop: bool = False) -> int:
        """See ``MediaEngine.add_player``."""
        slot = self._alloc()
        self._slots[slot] = _RefPlayer(pcm=np.array(pcm, dtype=np.int16, copy=True).reshape(-1), loop=loop)
        return slot

    def remove(self, slot: int) -> None:
        """See ``MediaEngine.remove``."""
        self._check_slot(slot)
        if isinstance(self._slots[slot], _RefLeg):
            self._rtcp_bye(slot)
        del self._slots[slot]
        self._pcm_in.pop(slot, None)
        self._out_pcm.pop(slot, None)
        self._forget_in_matrix(slot)

    def send_dtmf(self, slot: int, digit: str, duration_ms: int = 160) -> None:
        """See ``MediaEngine.send_dtmf``."""
        leg = self._leg(slot)
        if leg.te_pt is None:
            raise ValueError(f"slot {slot} has no telephone-event payload type")
        dtmf_event_code(digit)
        dtmf_duration_units(duration_ms)
        leg.dtmf_queue.append((digit, duration_ms))

    def enable_tap(self, slot: int, output: bool = True) -> None:
        """See ``MediaEngine.enable_tap``."""
        self._check_slot(slot)
        self._slots[slot].tap_in = True
        self._slots[slot].tap_out = output
        self._pcm_in[slot] = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._out_pcm[slot] = np.zeros(FRAME_SAMPLES, dtype=np.int16)

    def disable_tap(self, slot: int) -> None:
        """See ``MediaEngine.disable_tap``."""
        self._check_slot(slot)
        self._slots[slot].tap_in = self._slots[slot].tap_out = False
        self._pcm_in.pop(slot, None)
        self._out_pcm.pop(slot, None)

    def tap(self, slot: int) -> Pcm:
        """See ``MediaEngine.tap``."""
        if slot not in self._pcm_in:
            raise LocalError(f"slot {slot} has no tap; call enable_tap first")
        return self._pcm_in[slot]

    def tap_output(self, slot: int) -> Pcm:
        """See ``MediaEngine.tap_output``."""
        if slot not in self._out_pcm:
            raise LocalError(f"slot {slot} has no tap; call enable_tap first")
        return self._out_pcm[slot]

    # -- the tick ---------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """See ``MediaEngine.tick``: the same steps, one packet and one leg at a time."""
        started = time.perf_counter()
        self._tick_index += 1
        for slot, leg in self._slots.items():
            if isinstance(leg, _RefLeg):
                self._drain(slot, leg, now)
        self._rx_seconds += time.perf_counter() - started
        n = max(self._slots) + 1 if self._slots else 0
        if n == 0:
            self._now = now
            return
        codes = np.zeros((n, FRAME_SAMPLES), dtype=np.uint8)
        in_codec = np.full(n, mix_mod.CODEC_NONE, dtype=np.uint8)
        out_codec = np.full(n, mix_mod.CODEC_NONE, dtype=np.uint8)
        pcm_in = np.zeros((n, FRAME_SAMPLES), dtype=np.int16)
        for slot, entry in self._slots.items():
            self._playout(slot, entry, now, codes, in_codec, pcm_in, out_codec)
        self._csr(n)
        mixed = time.perf_counter()
        out_pcm = np.zeros((n, FRAME_SAMPLES), dtype=np.int16)
        out_codes, _ = mix_mod.reference.mix_tick(
            codes, in_codec, self._row_ptr, self._col, self._gain, out_codec, pcm_in=pcm_in, out_pcm=out_pcm
        )
        self._mix_seconds += time.perf_counter() - mixed
        sending = time.perf_counter()
        for slot, entry in self._slots.items():
            if entry.tap_out:
                self._out_pcm[slot][:] = out_pcm[slot]
            if isinstance(entry, _RefLeg):
                self._transmit(entry, out_codes[slot])
        self._tx_seconds += time.perf_counter() - sending
        self._rtcp_run(now)
        self._tick_seconds += time.perf_counter() - started

    def _drain(self, slot: int, leg: _RefLeg, now: float) -> None:
        if leg.rtcp_sock is not None:
            while True:
                try:
                    leg.rtcp_sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                leg.rtcp_received += 1
        while True:
            try:
                data, source = leg.rtp_sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. ICMP port unreachable reported on a connected path
                continue
            self._packet(slot, leg, data, source, now)

    def _packet(self, slot: int, leg: _RefLeg, data: bytes, source: Any, now: float) -> None:
        """One datagram: the same rules as the native ``RtpCore._packet``."""
        if len(data) < 12 or data[0] >> 6 != 2:
            leg.malformed += 1
            return
        if leg.latch:
            if not leg.latched:
                leg.source = source  # NAT latching: symmetric RTP (RFC 4961) to the first source
                leg.remote = source
                leg.latched = True
            elif source != leg.source:
                leg.wrong_source += 1
                return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            leg.malformed += 1
            return
        self._packets_in += 1
        leg.packets_received += 1
        leg.octets_received += len(packet.payload)
        leg.last_rx = now
        leg.timed_out = False
        seq = packet.sequence_number
        if leg.ssrc is None or packet.ssrc != leg.ssrc:
            if leg.ssrc is not None:
                leg.expected_prior += leg.ext_max - leg.base_ext + 1
                leg.received_prior = leg.packets_received - 1
                self._events.append(SsrcChanged(slot, leg.ssrc, packet.ssrc))
            leg.ssrc = packet.ssrc
            leg.max_seq = seq
            leg.ext_max = leg.base_ext = seq
        else:
            d = ((seq - leg.max_seq + 0x8000) & 0xFFFF) - 0x8000
            if d > 0:
                leg.ext_max += d
                leg.max_seq = seq
            elif d < -MAX_SEQUENTIAL_JUMP:
                leg.expected_prior += leg.ext_max - leg.base_ext + 1
                leg.received_prior = leg.packets_received - 1
                leg.max_seq = seq
                leg.ext_max = leg.base_ext = seq
        if not leg.receive:
            return
        if leg.te_pt is not None and packet.payload_type == leg.te_pt:
            try:
                digits = leg.dtmf.receive(packet, now)
            except RtpError:
                leg.malformed += 1
                return
            for digit in digits:
                self._events.append(DtmfReceived(slot, digit.digit, digit.duration_ms))
        elif packet.payload_type in (PCMU, PCMA):
            leg.jitter.put(packet)
        else:
            leg.wrong_payload_type += 1

    def _playout(
        self,
        slot: int,
        entry: _RefLeg | _RefPlayer,
        now: float,
        codes: npt.NDArray[np.uint8],
        in_codec: npt.NDArray[np.uint8],
        pcm_in: Pcm,
        out_codec: npt.NDArray[np.uint8],
    ) -> None:
        if isinstance(entry, _RefPlayer):
            out_codec[slot] = mix_mod.CODEC_PCM if entry.tap_out else mix_mod.CODEC_NONE
            if entry.finished or entry.pcm.size == 0:
                if not entry.finished:
                    entry.finished = True
                    self._events.append(PlayerFinished(slot))
                self._tap_in(slot, entry, None)
                return
            frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            filled = 0
            while filled < FRAME_SAMPLES:
                take = min(FRAME_SAMPLES - filled, entry.pcm.size - entry.pos)
                frame[filled : filled + take] = entry.pcm[entry.pos : entry.pos + take]
                filled += take
                entry.pos += take
                if entry.pos >= entry.pcm.size:
                    if entry.loop:
                        entry.pos = 0
                    else:
                        entry.finished = True
                        self._events.append(PlayerFinished(slot))
                        break
            pcm_in[slot] = frame
            in_codec[slot] = mix_mod.CODEC_PCM
            self._tap_in(slot, entry, frame)
            return
        leg = entry
        for digit in leg.dtmf.handle_timer(now):
            self._events.append(DtmfReceived(slot, digit.digit, digit.duration_ms))
        if leg.receive:
            frame_out = leg.jitter.pop(self._tick_index)
            if leg.last_rx is None:
                leg.last_rx = now
            elif not leg.timed_out and now - leg.last_rx >= self.rtp_timeout:
                leg.timed_out = True
                self._events.append(RtpTimedOut(slot, now - leg.last_rx))
        else:
            frame_out = None
        if frame_out is None or frame_out.kind is FrameKind.SILENCE:
            self._tap_in(slot, leg, None)
        else:
            payload = np.frombuffer(frame_out.payload, dtype=np.uint8)
            if frame_out.kind is FrameKind.AUDIO and not leg.tap_in:
                codes[slot] = payload
                in_codec[slot] = mix_mod.CODEC_PCMA if frame_out.payload_type == PCMA else mix_mod.CODEC_PCMU
            else:
                decode = (
                    g711.reference.alaw_decode
                    if frame_out.payload_type == PCMA
                    else g711.reference.ulaw_decode
                )
                pcm = decode(payload).astype(np.int32)
                if frame_out.gain_q12 != Q12_UNITY:
                    pcm = (pcm * frame_out.gain_q12 + 2048) >> 12
                pcm_in[slot] = pcm.astype(np.int16)
                in_codec[slot] = mix_mod.CODEC_PCM
                self._tap_in(slot, leg, pcm_in[slot])
        if leg.send and leg.remote is not None:
            out_codec[slot] = mix_mod.CODEC_PCMA if leg.payload_type == PCMA else mix_mod.CODEC_PCMU
        else:
            out_codec[slot] = mix_mod.CODEC_PCM if leg.tap_out else mix_mod.CODEC_NONE

    def _tap_in(self, slot: int, entry: _RefSlot, frame: Pcm | None) -> None:
        if entry.tap_in:
            if frame is None:
                self._pcm_in[slot][:] = 0
            else:
                self._pcm_in[slot][:] = frame

    def _transmit(self, leg: _RefLeg, encoded: npt.NDArray[np.uint8]) -> None:
        if not leg.send or leg.remote is None:
            return
        timestamp = (leg.identity.timestamp + FRAME_SAMPLES * (self._tick_index - leg.tick0)) & 0xFFFFFFFF
        if not leg.dtmf_packets and leg.dtmf_queue and leg.te_pt is not None:
            digit, duration_ms = leg.dtmf_queue.pop(0)
            sender = dtmf_mod.DtmfSender(payload_type=leg.te_pt)
            leg.dtmf_packets = list(sender.build(digit, duration_ms, timestamp))
        if leg.dtmf_packets:
            event = leg.dtmf_packets.pop(0)
            packet = RtpPacket(
                payload_type=leg.te_pt or 0,
                marker=event.marker,
                sequence_number=leg.seq,
                timestamp=event.timestamp,
                ssrc=leg.identity.ssrc,
                payload=event.payload,
            )
        else:
            packet = RtpPacket(
                payload_type=leg.payload_type,
                marker=leg.marker,
                sequence_number=leg.seq,
                timestamp=timestamp,
                ssrc=leg.identity.ssrc,
                payload=encoded.tobytes(),
            )
        leg.marker = False
        leg.seq = (leg.seq + 1) & 0xFFFF
        leg.last_tx_ts = packet.timestamp
        try:
            leg.rtp_sock.sendto(packet.serialize(), leg.remote)
        except OSError:
            return
        leg.sent += 1
        leg.octets_sent += len(packet.payload)
        self._packets_out += 1

    def _rtcp_snapshot(self, slot: int) -> dict[str, Any]:
        leg = self._leg(slot)
        expected = leg.expected_prior + ((leg.ext_max - leg.base_ext + 1) if leg.ssrc is not None else 0)
        return {
            "ssrc": leg.ssrc,
            "extended_max_seq": leg.ext_max if leg.ssrc is not None else None,
            "base_seq": leg.base_ext if leg.ssrc is not None else None,
            "source_received": leg.packets_received - leg.received_prior,
            "jitter_units": leg.jitter.stats.jitter * FRAME_SAMPLES,
            "sent": leg.sent,
            "octets_sent": leg.octets_sent,
            "tx_timestamp": leg.last_tx_ts,
            "remote": leg.remote,
            "expected": expected,
        }

    def events(self) -> list[MediaEvent]:
        """See ``MediaEngine.events``."""
        out, self._events = self._events, []
        return out

    def stats(self, slot: int) -> LegStats:
        """See ``MediaEngine.stats``."""
        leg = self._leg(slot)
        expected = leg.expected_prior + ((leg.ext_max - leg.base_ext + 1) if leg.ssrc is not None else 0)
        jstats = leg.jitter.stats
        return LegStats(
            received=leg.packets_received,
            lost=max(0, expected - leg.packets_received),
            duplicates=jstats.duplicates,
            late=jstats.late,
            concealed=jstats.concealed,
            sent=leg.sent,
            jitter_ms=jstats.jitter * 20.0,
            depth_frames=jstats.depth,
            last_rx=leg.last_rx,
            expected=expected,
            underruns=jstats.underruns,
            wrong_source=leg.wrong_source,
            malformed=leg.malformed,
            rtcp_received=leg.rtcp_received,
        )

    def figures(self) -> dict[str, float]:
        """See ``MediaEngine.figures`` (the reference keeps fewer figures)."""
        ticks = max(1, self._tick_index)
        return {
            "ticks": self._tick_index,
            "slots": len(self._slots),
            "legs": sum(isinstance(entry, _RefLeg) for entry in self._slots.values()),
            "players": sum(isinstance(entry, _RefPlayer) for entry in self._slots.values()),
            "packets_in": self._packets_in,
            "packets_out": self._packets_out,
            "packets_in_per_tick": self._packets_in / ticks,
            "packets_out_per_tick": self._packets_out / ticks,
            "seconds_rx": self._rx_seconds,
            "seconds_mix": self._mix_seconds,
            "seconds_tx": self._tx_seconds,
            "seconds_tick": self._tick_seconds,
            "rtcp_sent": self._rtcp_sent,
        }


def _address(remote: Address | None) -> Address | None:
    """A remote as the tuple ``sendto`` wants (port checked)."""
    if remote is None:
        return None
    host, port = remote[0], int(remote[1])
    if not 0 < port < 65536:
        raise ValueError(f"remote port {port} is out of range")
    return (str(host), port)


Engine = MediaEngine | ReferenceEngine
__all__ = [
    "DtmfReceived",
    "Engine",
    "LegStats",
    "MediaEngine",
    "MediaEvent",
    "PlayerFinished",
    "ReferenceEngine",
    "RtpTimedOut",
    "SsrcChanged",
    "gain_to_q12",
]
