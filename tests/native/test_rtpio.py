"""The media engine over real UDP sockets on 127.0.0.1: one test class, the native and the reference engine.

The clock is explicit: each test calls ``tick(now)`` itself with ``now`` advancing 20 ms per tick; the only
waits are for loopback datagrams to land (``select`` with a short timeout).
"""

from __future__ import annotations

import functools
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediagw.errors import LocalError
from mediagw.media import g711
from mediagw.media.dtmf import DtmfSender, TelephoneEvent
from mediagw.media.engine import (
    DtmfReceived,
    MediaEngine,
    PlayerFinished,
    RtpTimedOut,
    SsrcChanged,
)
from mediagw.media.engine_reference import ReferenceEngine
from mediagw.media.ports import PortAllocator
from mediagw.media.rtcp import RtcpByePacket, RtcpSdesPacket, RtcpSrPacket, parse_compound
from mediagw.media.rtp import RtpPacket
from tests.support import unavailable

ENGINES = {
    "native": MediaEngine,
    "native-connected": functools.partial(MediaEngine, connect_sockets=True),
    "reference": ReferenceEngine,
}
TE_PT = 101
RATE = 8000
FRAME = 160


def tone(freq: float, frames: int, amplitude: float = 8000.0, start: int = 0) -> np.ndarray:
    """``frames`` 20 ms frames of a sine at ``freq`` Hz as int16."""
    n = np.arange(start, start + frames * FRAME)
    return (amplitude * np.sin(2 * np.pi * freq * n / RATE)).astype(np.int16)


def peak_hz(pcm: np.ndarray) -> float:
    """The strongest frequency of ``pcm`` (8 kHz), by FFT."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum) * RATE / pcm.size)


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


@dataclass
class Peer:
    """A far end: a plain socket that sends RTP to a leg and collects what the leg sends back."""

    sock: socket.socket = field(default_factory=udp)
    ssrc: int = 0x11223344
    seq: int = 1000
    timestamp: int = 50000
    received: list[RtpPacket] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def packet(
        self,
        payload: bytes,
        *,
        pt: int = 0,
        marker: bool = False,
        seq: int | None = None,
        timestamp: int | None = None,
        ssrc: int | None = None,
    ) -> bytes:
        """An RTP packet; without ``seq``/``timestamp`` the next in sequence (advancing the peer)."""
        if seq is None:
            seq = self.seq
            self.seq = (self.seq + 1) & 0xFFFF
        if timestamp is None:
            timestamp = self.timestamp
            self.timestamp = (self.timestamp + FRAME) & 0xFFFFFFFF
        return RtpPacket(pt, marker, seq, timestamp, self.ssrc if ssrc is None else ssrc, payload).serialize()

    def send(self, to: tuple[str, int], data: bytes) -> None:
        self.sock.sendto(data, to)

    def collect(self, wait: float = 0.05) -> list[RtpPacket]:
        """Packets that arrived since the last call (waits up to ``wait`` for the first)."""
        got: list[RtpPacket] = []
        ready, _, _ = select.select([self.sock], [], [], wait)
        while ready:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                break
            got.append(RtpPacket.parse(data))
        self.received.extend(got)
        return got

    def close(self) -> None:
        self.sock.close()


@dataclass
class Leg:
    slot: int
    rtp: socket.socket
    rtcp: socket.socket

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.rtp.getsockname()[:2]
        return host, port


class Harness:
    """An engine, its legs' sockets and an explicit clock."""

    def __init__(self, engine: MediaEngine | ReferenceEngine) -> None:
        self.engine = engine
        self.now = 1000.0
        self.legs: list[Leg] = []
        self.peers: list[Peer] = []
        # Explicit ports, as in production: connect_sockets needs them (an auto-bound port is lost when
        # a connected UDP socket is dissolved to latch again).
        self.ports = PortAllocator(41000, 42999)
        self.fuzz_peer: Peer | None = None  # hypothesis reuses the fixture across examples

    def leg(self, remote: Peer | None, *, pt: int = 0, te: int | None = TE_PT, latch: bool = False) -> Leg:
        pair = self.ports.allocate()
        rtp, rtcp = pair.rtp, pair.rtcp
        slot = self.engine.add_leg(rtp, rtcp, remote.address if remote else None, pt, te, latch)
        leg = Leg(slot, rtp, rtcp)
        self.legs.append(leg)
        return leg

    def peer(self, **kwargs: int) -> Peer:
        peer = Peer(**kwargs)
        self.peers.append(peer)
        return peer

    def settle(self, legs: list[Leg] | None = None) -> None:
        """Wait until the datagrams just sent are readable on the legs (loopback delivery)."""
        socks = [leg.rtp for leg in (legs or self.legs)]
        select.select(socks, [], [], 0.05)

    def tick(self, count: int = 1) -> None:
        for _ in range(count):
            self.now += 0.02
            self.engine.tick(self.now)

    def close(self) -> None:
        for leg in self.legs:
            if self._in_use(leg.slot):
                self.engine.remove(leg.slot)
        self.ports.close()
        for peer in self.peers:
            peer.close()

    def _in_use(self, slot: int) -> bool:
        try:
            self.engine.stats(slot)
        except LocalError:
            return False
        return True


@pytest.fixture(params=sorted(ENGINES))
def h(request: pytest.FixtureRequest) -> Iterator[Harness]:
    harness = Harness(ENGINES[request.param](max_slots=64, seed=7))
    yield harness
    harness.close()


def ulaw(pcm: np.ndarray) -> bytes:
    return g711.reference.ulaw_encode(pcm).tobytes()


def decode(packets: list[RtpPacket]) -> np.ndarray:
    out = []
    for packet in packets:
        codes = np.frombuffer(packet.payload, dtype=np.uint8)
        out.append(
            g711.reference.alaw_decode(codes)
            if packet.payload_type == 8
            else g711.reference.ulaw_decode(codes)
        )
    return np.concatenate(out) if out else np.zeros(0, np.int16)


def bridge(h: Harness, pt_a: int = 0, pt_b: int = 0) -> tuple[Peer, Leg, Peer, Leg]:
    """Two legs, each hearing the other (an agent and a caller)."""
    peer_a, peer_b = h.peer(), h.peer(ssrc=0x55667788)
    a, b = h.leg(peer_a, pt=pt_a), h.leg(peer_b, pt=pt_b)
    h.engine.set_listen(a.slot, [(b.slot, 1.0)])
    h.engine.set_listen(b.slot, [(a.slot, 1.0)])
    return peer_a, a, peer_b, b


def stream(h: Harness, peer: Peer, leg: Leg, pcm: np.ndarray, encode=ulaw, pt: int = 0) -> None:
    """Send ``pcm`` frame by frame to ``leg`` from ``peer``, one frame per tick."""
    for k in range(pcm.size // FRAME):
        peer.send(leg.address, peer.packet(encode(pcm[k * FRAME : (k + 1) * FRAME]), pt=pt))
        h.settle([leg])
        h.tick()


class TestEngine:
    def test_bridge_carries_tone_both_ways(self, h: Harness) -> None:
        peer_a, a, peer_b, b = bridge(h)
        for k in range(25):
            peer_a.send(a.address, peer_a.packet(ulaw(tone(440, 1, start=k * FRAME))))
            peer_b.send(b.address, peer_b.packet(ulaw(tone(1000, 1, start=k * FRAME))))
            h.settle()
            h.tick()
        to_b, to_a = peer_b.collect(), peer_a.collect()
        assert len(to_b) == 25 and len(to_a) == 25
        assert abs(peak_hz(decode(to_b[2:])) - 440) < 20
        assert abs(peak_hz(decode(to_a[2:])) - 1000) < 20
        seqs = [p.sequence_number for p in to_b]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(25)]
        assert [p.timestamp - to_b[0].timestamp for p in to_b] == [FRAME * i for i in range(25)]
        assert to_b[0].marker and not any(p.marker for p in to_b[1:])  # RFC 3551 §4.1
        assert len({p.ssrc for p in to_b}) == 1
        stats = h.engine.stats(a.slot)
        assert stats.received == 25 and stats.lost == 0 and stats.sent == 25

    def test_pcmu_to_pcma_transcoding(self, h: Harness) -> None:
        peer_a, a, peer_b, b = bridge(h, pt_a=0, pt_b=8)
        pcm = tone(440, 25)
        for k in range(25):
            frame = pcm[k * FRAME : (k + 1) * FRAME]
            peer_a.send(a.address, peer_a.packet(ulaw(frame)))
            peer_b.send(
                b.address,
                peer_b.packet(g711.reference.alaw_encode(tone(1000, 1, start=k * FRAME)).tobytes(), pt=8),
            )
            h.settle()
            h.tick()
        to_b, to_a = peer_b.collect(), peer_a.collect()
        assert {p.payload_type for p in to_b} == {8} and {p.payload_type for p in to_a} == {0}
        assert abs(peak_hz(decode(to_b)) - 440) < 20
        assert abs(peak_hz(decode(to_a)) - 1000) < 20
        # Exact: decode u-law, encode A-law, frame for frame (unity gain, one source).
        expected = g711.reference.alaw_encode(
            g711.reference.ulaw_decode(np.frombuffer(ulaw(pcm[:FRAME]), np.uint8))
        )
        assert to_b[0].payload == expected.tobytes()

    def test_tap_gives_received_pcm(self, h: Harness) -> None:
        peer = h.peer()
        a = h.leg(peer)
        h.engine.enable_tap(a.slot)
        frame = ulaw(tone(440, 1))
        peer.send(a.address, peer.packet(frame))
        h.settle()
        h.tick()
        np.testing.assert_array_equal(
            h.engine.tap(a.slot), g711.reference.ulaw_decode(np.frombuffer(frame, np.uint8))
        )
        assert not h.engine.tap_output(a.slot).any()  # nobody speaks to it

    def test_reorder_duplicate_late(self, h: Harness) -> None:
        peer = h.peer()
        a = h.leg(peer)
        h.engine.enable_tap(a.slot)
        codes = [bytes([0x80 | k]) * FRAME for k in range(8)]  # frame k decodes to a distinct level
        levels = [int(g711.reference.ulaw_decode(np.frombuffer(c[:1], np.uint8))[0]) for c in codes]
        played: list[int] = []

        def send(k: int) -> None:
            peer.send(a.address, peer.packet(codes[k], seq=1000 + k, timestamp=50000 + k * FRAME))

        def tick() -> None:
            h.settle()
            h.tick()
            played.append(int(h.engine.tap(a.slot)[0]))

        send(0)
        tick()
        send(2)
        send(1)  # reordered within one tick
        tick()
        tick()
        send(3)
        send(3)  # duplicate
        tick()
        tick()  # 4 is missing: concealed (repeat of 3)
        send(4)  # ... and arrives after its tick: late, the buffer deepens by one frame
        send(5)
        tick()
        tick()
        stats = h.engine.stats(a.slot)
        assert played[:4] == levels[:4]
        assert played[4] == (levels[3] * 3072 + 2048) >> 12  # concealment: the last frame, fading (3/4)
        assert played[5] == (levels[3] * 2048 + 2048) >> 12  # stretched while the delay grows
        assert played[6] == levels[5]
        assert stats.depth_frames == 2 + 1
        assert stats.duplicates == 1
        assert stats.late == 1
        assert stats.concealed >= 1

    def test_sequence_wrap(self, h: Harness) -> None:
        peer = h.peer(seq=65530, timestamp=0xFFFFFF00)
        a = h.leg(peer)
        h.engine.enable_tap(a.slot)
        stream(h, peer, a, tone(440, 12))
        stats = h.engine.stats(a.slot)
        assert stats.received == 12 and stats.expected == 12 and stats.lost == 0
        assert stats.concealed == 0 and stats.late == 0

    def test_ssrc_change(self, h: Harness) -> None:
        peer_a, a, peer_b, _ = bridge(h)
        stream(h, peer_a, a, tone(440, 5))
        peer_a.ssrc, peer_a.seq, peer_a.timestamp = 0xABCDEF01, 7, 123456789
        stream(h, peer_a, a, tone(440, 10))
        events = [e for e in h.engine.events() if isinstance(e, SsrcChanged)]
        assert events == [SsrcChanged(a.slot, 0x11223344, 0xABCDEF01)]
        got = peer_b.collect()
        assert len(got) == 15
        assert abs(peak_hz(decode(got[6:])) - 440) < 20  # audio continues from the new source
        assert h.engine.stats(a.slot).received == 15

    def test_nat_latch_ignores_other_sources(self, h: Harness) -> None:
        peer, intruder, listener = h.peer(), h.peer(ssrc=0x99), h.peer()
        a = h.leg(None, latch=True)  # SDP address unusable (behind NAT): learn it from the first packet
        b = h.leg(listener)
        h.engine.set_listen(b.slot, [(a.slot, 1.0)])
        h.engine.set_listen(a.slot, [(b.slot, 1.0)])
        for k in range(10):
            peer.send(a.address, peer.packet(ulaw(tone(440, 1, start=k * FRAME))))
            intruder.send(a.address, intruder.packet(ulaw(tone(2000, 1, start=k * FRAME))))
            h.settle()
            h.tick()
        assert len(peer.collect()) >= 9  # symmetric RTP: we send back where the first packet came from
        assert intruder.collect(0.01) == []
        assert abs(peak_hz(decode(listener.collect())) - 440) < 20
        wrong = h.engine.stats(a.slot).wrong_source
        connected = getattr(h.engine, "connect_sockets", False)
        assert wrong == 10 or (connected and wrong <= 1)  # a connected socket: the kernel drops them
        assert not [e for e in h.engine.events() if isinstance(e, SsrcChanged)]

    def test_reinvite_with_same_address_keeps_the_latch(self, h: Harness) -> None:
        peer, intruder = h.peer(), h.peer(ssrc=0x99)
        private = ("127.0.0.1", 9)  # what a phone behind NAT writes in its SDP
        a = h.leg(None, latch=True)
        h.engine.update_leg(a.slot, remote=private)

        def exchange(sender: Peer) -> None:
            sender.send(a.address, sender.packet(ulaw(tone(440, 1))))
            h.settle()
            h.tick()

        exchange(peer)
        h.engine.update_leg(a.slot, remote=private, send=True)  # re-INVITE, same SDP
        exchange(intruder)
        exchange(peer)
        assert len(peer.collect()) == 3 and intruder.collect(0.01) == []
        h.engine.update_leg(a.slot, remote=("127.0.0.1", 11))  # a new address: latch again
        exchange(intruder)
        assert len(intruder.collect()) == 1

    def test_hold_stops_sending(self, h: Harness) -> None:
        peer = h.peer()
        a = h.leg(peer)
        h.tick(3)
        assert len(peer.collect()) == 3
        h.engine.update_leg(a.slot, send=False)  # re-INVITE with a=sendonly / inactive
        h.tick(5)
        assert peer.collect(0.02) == []
        h.engine.update_leg(a.slot, send=True)
        h.tick(2)
        resumed = peer.collect()
        assert len(resumed) == 2 and resumed[0].marker
        assert resumed[1].timestamp - peer.received[2].timestamp == 7 * FRAME  # the clock ran on

    def test_receive_off_mutes_the_leg_and_suspends_the_timeout(self, h: Harness) -> None:
        engine = type(h.engine)(max_slots=8, rtp_timeout=0.1)
        h.engine = engine
        peer_a, a, peer_b, _ = bridge(h)
        engine.update_leg(a.slot, receive=False)  # a=inactive from A: nothing of A is played
        stream(h, peer_a, a, tone(440, 10))
        assert not decode(peer_b.collect()).any()
        assert not [e for e in engine.events() if isinstance(e, RtpTimedOut) and e.slot == a.slot]

    def test_codec_change_by_update(self, h: Harness) -> None:
        peer_a, a, peer_b, b = bridge(h)
        stream(h, peer_a, a, tone(440, 2))
        h.engine.update_leg(b.slot, payload_type=8)  # re-INVITE answered with PCMA
        stream(h, peer_a, a, tone(440, 2))
        assert [p.payload_type for p in peer_b.collect()] == [0, 0, 8, 8]

    def test_dtmf_received_once_with_duration(self, h: Harness) -> None:
        peer = h.peer()
        a = h.leg(peer)
        stream(h, peer, a, tone(440, 3))
        for packet in DtmfSender(payload_type=TE_PT).build("5", 160, peer.timestamp):
            peer.send(
                a.address,
                peer.packet(packet.payload, pt=TE_PT, marker=packet.marker, timestamp=packet.timestamp),
            )
            h.settle()
            h.tick()
        peer.timestamp += 10 * FRAME
        stream(h, peer, a, tone(440, 3))
        digits = [e for e in h.engine.events() if isinstance(e, DtmfReceived)]
        assert digits == [DtmfReceived(a.slot, "5", 160)]

    def test_dtmf_lost_end_reported_by_timer(self, h: Harness) -> None:
        peer = h.peer()
        a = h.leg(peer)
        for packet in DtmfSender(payload_type=TE_PT).build("#", 100, peer.timestamp)[:-3]:
            peer.send(
                a.address,
                peer.packet(packet.payload, pt=TE_PT, marker=packet.marker, timestamp=packet.timestamp),
            )
            h.settle()
            h.tick()
        h.tick(30)
        assert [e for e in h.engine.events() if isinstance(e, DtmfReceived)] == [
            DtmfReceived(a.slot, "#", 80)
        ]

    def test_send_dtmf(self, h: Harness) -> None:
        peer = h.peer()
        a = h.leg(peer)
        h.tick(2)
        h.engine.send_dtmf(a.slot, "#", 160)
        h.tick(12)
        got = peer.collect()
        events = [p for p in got if p.payload_type == TE_PT]
        assert len(events) == 10
        parsed = [TelephoneEvent.parse(p.payload) for p in events]
        assert {e.event for e in parsed} == {11}
        assert [e.end for e in parsed] == [False] * 7 + [True] * 3  # RFC 4733 §2.5.1.4
        assert [e.duration for e in parsed] == [160 * k for k in range(1, 8)] + [1280] * 3
        assert len({p.timestamp for p in events}) == 1 and events[0].marker
        assert [p.marker for p in events[1:]] == [False] * 9
        seqs = [p.sequence_number for p in got]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(got))]
        assert got[-1].payload_type == 0 and got[-1].timestamp == events[0].timestamp + 11 * FRAME

    def test_rtp_timeout(self, h: Harness) -> None:
        engine = type(h.engine)(max_slots=8, rtp_timeout=0.2)
        h.engine = engine
        peer = h.peer()
        a = h.leg(peer)
        stream(h, peer, a, tone(440, 2))
        h.tick(9)
        assert not engine.events()
        h.tick(3)
        timeouts = engine.events()
        assert len(timeouts) == 1 and isinstance(timeouts[0], RtpTimedOut) and timeouts[0].slot == a.slot
        assert timeouts[0].idle_seconds == pytest.approx(0.2, abs=0.021)
        h.tick(20)
        assert engine.events() == []  # once

    def test_player_then_finished(self, h: Harness) -> None:
        peer = h.peer()
        a = h.leg(peer)
        player = h.engine.add_player(tone(440, 10)[:-40], loop=False)  # 9.75 frames
        h.engine.set_listen(a.slot, [(player, 1.0)])
        h.tick(9)
        assert h.engine.events() == []
        h.tick(1)
        assert h.engine.events() == [PlayerFinished(player)]
        h.tick(3)
        got = peer.collect()
        assert len(got) == 13
        pcm = decode(got)
        assert abs(peak_hz(pcm[: 9 * FRAME]) - 440) < 20
        assert not decode(got[10:]).any()  # silence after the end
        assert h.engine.events() == []

    def test_matrix_change_takes_effect_next_tick(self, h: Harness) -> None:
        peer = h.peer()
        a = h.leg(peer)
        low = h.engine.add_player(tone(440, 50), loop=True)
        high = h.engine.add_player(tone(1000, 50), loop=True)
        h.engine.set_listen(a.slot, [(low, 1.0)])
        h.tick(3)
        h.engine.set_listen(a.slot, [(high, 0.5)])
        h.tick(1)
        got = peer.collect()
        assert got[2].payload == ulaw(tone(440, 1, start=2 * FRAME))
        assert got[3].payload == ulaw(
            (tone(1000, 1, start=3 * FRAME).astype(np.int32) * 2048 + 2048 >> 12).astype(np.int16)
        )

    def test_remove_forgets_slot(self, h: Harness) -> None:
        peer = h.peer()
        a = h.leg(peer)
        player = h.engine.add_player(tone(440, 5), loop=True)
        h.engine.set_listen(a.slot, [(player, 1.0)])
        h.engine.remove(player)
        assert h.engine.listening(a.slot) == []
        h.tick(2)
        assert [p.payload for p in peer.collect()] == [ulaw(np.zeros(FRAME, np.int16))] * 2

    def test_ipv6_leg(self, h: Harness) -> None:
        try:
            rtp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            rtp.bind(("::1", 0))
        except OSError:
            unavailable("no IPv6 loopback here")
        peer_sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        peer_sock.bind(("::1", 0))
        peer_sock.setblocking(False)
        rtp.setblocking(False)
        peer = Peer(sock=peer_sock)
        h.peers.append(peer)
        slot = h.engine.add_leg(rtp, None, ("::1", peer_sock.getsockname()[1]), 0, None, False)
        player = h.engine.add_player(tone(440, 5), loop=True)
        h.engine.set_listen(slot, [(player, 1.0)])
        peer.send(rtp.getsockname()[:2], peer.packet(ulaw(tone(440, 1))))
        h.settle([Leg(slot, rtp, rtp)])
        h.tick(3)
        assert len(peer.collect()) == 3
        assert h.engine.stats(slot).received == 1
        h.engine.remove(slot)
        rtp.close()

    def test_40ms_packets_fill_two_frames(self, h: Harness) -> None:
        peer = h.peer()
        a = h.leg(peer)
        h.engine.enable_tap(a.slot)
        pcm = tone(440, 20)
        heard = []
        for k in range(10):  # ptime 40: one packet every other tick, timestamps 320 apart
            peer.send(a.address, peer.packet(ulaw(pcm[k * 320 : (k + 1) * 320]), timestamp=k * 320, seq=k))
            for _ in range(2):
                h.settle()
                h.tick()
                heard.append(h.engine.tap(a.slot).copy())
        stats = h.engine.stats(a.slot)
        assert stats.received == 10 and stats.lost == 0 and stats.late == 0
        assert stats.concealed <= 3  # stretches while the buffer deepens to the 40 ms packet rhythm
        assert abs(peak_hz(np.concatenate(heard[2:])) - 440) < 20

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(datagrams=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=8))
    def test_garbage_is_dropped_not_raised(self, h: Harness, datagrams: list[bytes]) -> None:
        if h.fuzz_peer is None:
            h.fuzz_peer = h.peer()
            h.leg(h.fuzz_peer, te=TE_PT)
        leg, peer = h.legs[0], h.fuzz_peer
        for data in datagrams:
            if data[:1]:
                data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]  # mostly version 2: reach the parser
            peer.send(leg.address, data)
        h.settle()
        h.tick()
        h.engine.events()
        stats = h.engine.stats(leg.slot)
        assert stats.received + stats.malformed <= 8 * 1000


class TestRtcp:
    def test_sender_report_then_bye(self, h: Harness) -> None:
        ports = PortAllocator(40000, 40999)  # the peer needs RTCP on its RTP port + 1
        pair = ports.allocate()
        try:
            peer = Peer(sock=pair.rtp)
            a = h.leg(peer)
            stream(h, peer, a, tone(440, 10))
            h.tick(180)  # the first report: after 0.5..1.5 x half an interval (RFC 3550 §6.2, §6.3.1)
            select.select([pair.rtcp], [], [], 0.05)
            packets = parse_compound(pair.rtcp.recv(2048))
            sr, sdes = packets
            assert isinstance(sr, RtcpSrPacket) and isinstance(sdes, RtcpSdesPacket)
            assert 60 <= sr.sender_info.packet_count <= 190
            assert sr.sender_info.octet_count == sr.sender_info.packet_count * 160
            assert sdes.chunks[0].ssrc == sr.ssrc and (sdes.chunks[0].cname or "").endswith("@mediagw")
            [block] = sr.reports
            assert block.ssrc == peer.ssrc
            assert block.highest_sequence == 1009 and block.packets_lost == 0
            h.engine.remove(a.slot)
            last: list[object] = []
            while select.select([pair.rtcp], [], [], 0.05)[0]:
                last = parse_compound(pair.rtcp.recv(2048))
            assert isinstance(last[-1], RtcpByePacket) and last[-1].sources == [sr.ssrc]
        finally:
            ports.close()


def _scenario(engine: MediaEngine | ReferenceEngine) -> tuple[list[bytes], list[object]]:
    """A deterministic run with loss, reordering, transcoding, a player and DTMF both ways: every byte the
    peers got, and the engine's events."""
    h = Harness(engine)
    try:
        peer_a, a, peer_b, b = bridge(h, pt_a=0, pt_b=8)
        player = engine.add_player(tone(700, 20), loop=False)
        engine.set_listen(b.slot, [(a.slot, 1.0), (player, 0.25)])
        pcm = tone(440, 40)
        order = list(range(40))
        order[10], order[11] = order[11], order[10]
        del order[20]  # lost
        sender = DtmfSender(payload_type=TE_PT)
        digits = {  # tick -> telephone-event packets from B: "1" complete, "2" without ends, "3", an old end
            k: [] for k in range(40)
        }
        for i, packet in enumerate(sender.build("1", 100, 1000)):
            digits[2 + i].append(packet)
        for i, packet in enumerate(sender.build("2", 100, 2000)[:-3]):
            digits[12 + i].append(packet)
        for i, packet in enumerate(sender.build("3", 60, 3000)):
            digits[20 + i].append(packet)
        digits[30].append(sender.build("1", 100, 1000)[-1])
        for k in order:
            peer_a.send(
                a.address,
                peer_a.packet(
                    ulaw(pcm[k * FRAME : (k + 1) * FRAME]), seq=100 + k, timestamp=8000 + k * FRAME
                ),
            )
            for event in digits[k]:
                peer_b.send(
                    b.address,
                    peer_b.packet(event.payload, pt=TE_PT, marker=event.marker, timestamp=event.timestamp),
                )
            if k == 30:
                engine.send_dtmf(a.slot, "7", 60)
            if k == 10:
                continue  # 11 and 10 arrive in the same tick
            h.settle()
            h.tick()
        h.tick(30)
        sent = [p.serialize() for p in peer_a.collect()] + [p.serialize() for p in peer_b.collect()]
        return sent, engine.events()
    finally:
        h.close()


def test_native_and_reference_send_identical_bytes() -> None:
    native, native_events = _scenario(MediaEngine(max_slots=16, seed=42))
    reference, reference_events = _scenario(ReferenceEngine(max_slots=16, seed=42))
    assert len(native) == len(reference) > 70
    assert native == reference
    assert native_events == reference_events
    assert [(e.digit, e.duration_ms) for e in native_events if isinstance(e, DtmfReceived)] == [
        ("1", 100),
        ("2", 80),
        ("3", 60),
    ]
    assert [e for e in native_events if isinstance(e, PlayerFinished)]
