"""DTMF: RFC 4733 payloads, receiver, sender, SIP INFO bodies."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediagw.errors import RtpError, SipProtocolError
from mediagw.media.dtmf import (
    DtmfReceived,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    parse_dtmf_relay,
)
from mediagw.media.rtp import RtpPacket

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rtp"
SSRC = 0x3A1B7C9D


def load_hex(name: str) -> bytes:
    text = "".join(re.sub(r"#.*", "", line) for line in (FIXTURES / name).read_text().splitlines())
    return bytes.fromhex(re.sub(r"\s+", "", text))


def to_rtp(sender: DtmfSender, digit: str, duration_ms: int, timestamp: int, seq: int = 0) -> list[RtpPacket]:
    return [
        RtpPacket(payload_type=sender.payload_type, marker=p.marker, sequence_number=seq + i,
                  timestamp=p.timestamp, ssrc=SSRC, payload=p.payload)
        for i, p in enumerate(sender.build(digit, duration_ms, timestamp))
    ]


class TestTelephoneEvent:
    def test_fixture(self) -> None:
        packet = RtpPacket.parse(load_hex("dtmf_event5_end.hex"))
        event = TelephoneEvent.parse(packet.payload)
        assert (event.event, event.end, event.volume, event.duration) == (5, True, 10, 800)
        assert event.digit == "5"
        assert event.serialize() == packet.payload

    @given(st.binary(min_size=4, max_size=4))
    def test_round_trip(self, data: bytes) -> None:
        assert TelephoneEvent.parse(data).serialize() == data

    def test_short_payload(self) -> None:
        with pytest.raises(RtpError, match="less than 4 bytes"):
            TelephoneEvent.parse(b"\x05\x8a")

    def test_digits(self) -> None:
        assert [TelephoneEvent(e).digit for e in range(17)] == list("0123456789*#ABCD") + [None]


class TestSender:
    def test_sequence_for_100_ms(self) -> None:
        packets = DtmfSender().build("5", 100, timestamp=32000)
        events = [TelephoneEvent.parse(p.payload) for p in packets]
        assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
        assert [e.end for e in events] == [False] * 4 + [True] * 3
        assert [p.marker for p in packets] == [True] + [False] * 6
        assert {p.timestamp for p in packets} == {32000}
        assert [p.send_offset_ms for p in packets] == [0, 20, 40, 60, 80, 100, 120]
        assert packets[-1].payload == load_hex("dtmf_event5_end.hex")[12:]

    def test_short_digit_is_all_end_packets_with_marker_first(self) -> None:
        packets = DtmfSender().build("#", 10, timestamp=0)
        assert len(packets) == 3 and packets[0].marker and not packets[1].marker
        assert TelephoneEvent.parse(packets[0].payload) == TelephoneEvent(11, True, 10, 160)

    def test_rejects(self) -> None:
        with pytest.raises(ValueError, match="not a DTMF digit"):
            DtmfSender().build("x", 100, 0)
        with pytest.raises(ValueError, match="exceeds"):
            DtmfSender().build("1", 9000, 0)


class TestReceiver:
    def test_one_event_exactly_once(self) -> None:
        receiver = DtmfReceiver()
        out = []
        for i, packet in enumerate(to_rtp(DtmfSender(), "7", 100, 5000)):
            out += receiver.receive(packet, i * 0.02)
        assert out == [DtmfReceived("7", 100)]
        assert receiver.get_timer() is None

    @given(
        digits=st.lists(st.sampled_from("0123456789*#ABCD"), min_size=1, max_size=5),
        drop=st.sets(st.integers(0, 60)),
        repeat=st.sets(st.integers(0, 60)),
    )
    def test_each_event_reported_once_despite_loss_and_repeats(self, digits, drop, repeat) -> None:
        receiver = DtmfReceiver()
        sender = DtmfSender()
        stream: list[RtpPacket] = []
        for n, digit in enumerate(digits):
            stream += to_rtp(sender, digit, 100, 10_000 + n * 8000)
        now, out, seen = 0.0, [], []
        for i, packet in enumerate(stream):
            now += 0.02
            if i in drop:
                continue
            seen.append(packet.timestamp)
            out += receiver.receive(packet, now)
            if i in repeat:
                out += receiver.receive(packet, now)
        out += receiver.handle_timer(now + 1.0)
        expected_events = list(dict.fromkeys(seen))
        assert [d.digit for d in out] == [digits[(ts - 10_000) // 8000] for ts in expected_events]

    def test_lost_end_is_finished_by_the_next_event(self) -> None:
        receiver = DtmfReceiver()
        first = to_rtp(DtmfSender(), "1", 100, 0)[:3]  # no end packets
        second = to_rtp(DtmfSender(), "2", 60, 8000)
        out = []
        for packet in first + second:
            out += receiver.receive(packet, 0.0)
        assert out == [DtmfReceived("1", 60), DtmfReceived("2", 60)]

    def test_lost_end_is_finished_by_the_timer(self) -> None:
        receiver = DtmfReceiver(timeout=0.5)
        for i, packet in enumerate(to_rtp(DtmfSender(), "9", 200, 0)[:5]):
            assert receiver.receive(packet, 1.0 + i * 0.02) == []
        assert receiver.pending_digit == "9"
        assert receiver.get_timer() == pytest.approx(1.58)
        assert receiver.handle_timer(1.5) == []
        assert receiver.handle_timer(1.58) == [DtmfReceived("9", 100)]
        assert receiver.handle_timer(5.0) == []

    def test_only_end_packets_arrive(self) -> None:
        receiver = DtmfReceiver()
        ends = to_rtp(DtmfSender(), "A", 100, 0)[-3:]
        out = [d for p in ends for d in receiver.receive(p, 0.0)]
        assert out == [DtmfReceived("A", 100)]

    def test_non_dtmf_events_are_ignored(self) -> None:
        receiver = DtmfReceiver()
        flash = RtpPacket(payload_type=101, ssrc=1, payload=TelephoneEvent(16, True, 10, 800).serialize())
        assert receiver.receive(flash, 0.0) == []


class TestSipInfo:
    def test_dtmf_relay(self) -> None:
        assert parse_dtmf_relay("Signal=5\r\nDuration=160\r\n") == DtmfReceived("5", 160)
        assert parse_dtmf_relay("signal= *\nduration = 250") == DtmfReceived("*", 250)
        assert parse_dtmf_relay("Signal=#\r\n") == DtmfReceived("#", 250)
        assert parse_dtmf_relay("Signal=d\r\nDuration=100") == DtmfReceived("D", 100)

    def test_application_dtmf(self) -> None:
        assert parse_dtmf_relay("7\r\n", "application/dtmf") == DtmfReceived("7", 250)
        assert parse_dtmf_relay("11", "application/dtmf") == DtmfReceived("#", 250)

    @pytest.mark.parametrize(
        "body, content_type, message",
        [
            ("Duration=160", "application/dtmf-relay", "no Signal"),
            ("Signal=X", "application/dtmf-relay", "not a DTMF digit"),
            ("Signal=5\nDuration=abc", "application/dtmf-relay", "not a number"),
            ("Signal=5\nDuration=-3", "application/dtmf-relay", "negative"),
            ("5", "text/plain", "unsupported"),
        ],
    )
    def test_bad_bodies(self, body: str, content_type: str, message: str) -> None:
        with pytest.raises(SipProtocolError, match=message):
            parse_dtmf_relay(body, content_type)

    def test_unsupported_type_is_415(self) -> None:
        with pytest.raises(SipProtocolError) as info:
            parse_dtmf_relay("5", "text/plain")
        assert info.value.status_code == 415
