"""RTP packets and receiver statistics (RFC 3550 §5.1, Appendix A.1, A.3, A.8)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediagw.errors import RtpError
from mediagw.media.rtp import (
    RtpCheck,
    RtpPacket,
    RtpReceiverStats,
    is_rtcp,
    padding_for,
    seq_diff,
    seq_gt,
    timestamp_diff,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rtp"


def load_hex(name: str) -> bytes:
    """A fixture written as annotated hex: '#' starts a comment, whitespace is ignored."""
    text = "".join(re.sub(r"#.*", "", line) for line in (FIXTURES / name).read_text().splitlines())
    return bytes.fromhex(re.sub(r"\s+", "", text))


class TestFixtures:
    def test_pcmu_20ms(self) -> None:
        data = load_hex("pcmu_20ms.hex")
        packet = RtpPacket.parse(data)
        assert (packet.payload_type, packet.marker, packet.sequence_number) == (0, False, 24103)
        assert (packet.timestamp, packet.ssrc) == (128000, 0x3A1B7C9D)
        assert len(packet.payload) == 160 and packet.csrc == [] and packet.extension_profile is None
        assert packet.padding == b""
        assert packet.serialize() == data

    def test_pcma_marker_csrc(self) -> None:
        data = load_hex("pcma_marker_csrc.hex")
        packet = RtpPacket.parse(data)
        assert (packet.payload_type, packet.marker) == (8, True)
        assert (packet.sequence_number, packet.timestamp) == (65535, 0xFFFFFF60)
        assert packet.csrc == [0x5C2E1107, 0x5C2E1108]
        assert len(packet.payload) == 160
        assert packet.serialize() == data

    def test_extension_and_padding(self) -> None:
        data = load_hex("pcmu_extension_padding.hex")
        packet = RtpPacket.parse(data)
        assert packet.extension_profile == 0xBEDE
        assert packet.extension == bytes.fromhex("10aa0000")
        assert packet.payload == b"\xff" * 8
        assert packet.padding == b"\x00\x00\x00\x04" and packet.padding_size == 4
        assert packet.serialize() == data

    def test_telephone_event(self) -> None:
        data = load_hex("dtmf_event5_end.hex")
        packet = RtpPacket.parse(data)
        assert (packet.payload_type, packet.payload) == (101, bytes.fromhex("058a0320"))
        assert packet.serialize() == data

    @pytest.mark.parametrize("name", ["rtcp_sr_sdes.hex", "rtcp_rr_sdes_bye.hex"])
    def test_rtcp_is_told_apart(self, name: str) -> None:
        assert is_rtcp(load_hex(name))
        assert not is_rtcp(load_hex("pcmu_20ms.hex"))
        assert not is_rtcp(load_hex("pcma_marker_csrc.hex"))  # marker + PT 8 = 0x88, below 192


class TestParseErrors:
    def test_short(self) -> None:
        with pytest.raises(RtpError, match="^RTP packet length is less than 12 bytes$"):
            RtpPacket.parse(b"\x80\x00" + bytes(9))

    def test_version(self) -> None:
        with pytest.raises(RtpError, match="^RTP packet has invalid version$"):
            RtpPacket.parse(b"\x40" + bytes(11))

    def test_truncated_csrc(self) -> None:
        with pytest.raises(RtpError, match="^RTP packet has truncated CSRC$"):
            RtpPacket.parse(b"\x82\x00" + bytes(10) + bytes(4))

    def test_truncated_extension_header(self) -> None:
        with pytest.raises(RtpError, match="truncated extension profile / length"):
            RtpPacket.parse(b"\x90\x00" + bytes(10) + b"\xbe\xde")

    def test_truncated_extension_value(self) -> None:
        with pytest.raises(RtpError, match="^RTP packet has truncated extension value$"):
            RtpPacket.parse(b"\x90\x00" + bytes(10) + b"\xbe\xde\x00\x02" + bytes(4))

    def test_padding_exceeds(self) -> None:
        message = "^RTP packet padding length 200 exceeds the 4 bytes after the header$"
        with pytest.raises(RtpError, match=message):
            RtpPacket.parse(b"\xa0\x00" + bytes(10) + b"\x00\x00\x00\xc8")

    def test_padding_zero(self) -> None:
        with pytest.raises(RtpError, match="^RTP packet padding length is zero$"):
            RtpPacket.parse(b"\xa0\x00" + bytes(10) + b"\x01\x00")

    def test_padding_may_cover_the_whole_payload(self) -> None:
        packet = RtpPacket.parse(b"\xa0\x00" + bytes(10) + padding_for(4))
        assert packet.payload == b"" and packet.padding_size == 4

    def test_error_is_a_remote_error(self) -> None:
        with pytest.raises(RtpError) as info:
            RtpPacket.parse(b"")
        assert info.value.status_code == 400

    @given(st.binary(max_size=64))
    def test_arbitrary_bytes_parse_or_raise_rtp_error(self, data: bytes) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            return
        assert packet.serialize() == data  # anything accepted round-trips byte-exact


class TestSerialize:
    @given(
        payload_type=st.integers(0, 127),
        marker=st.booleans(),
        sequence_number=st.integers(0, 0xFFFF),
        timestamp=st.integers(0, 0xFFFFFFFF),
        ssrc=st.integers(0, 0xFFFFFFFF),
        payload=st.binary(max_size=200),
        csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
        extension=st.one_of(st.none(), st.tuples(st.integers(0, 0xFFFF), st.integers(0, 4))),
        padding=st.integers(0, 255),
    )
    def test_round_trip(self, payload_type, marker, sequence_number, timestamp, ssrc, payload, csrc,
                        extension, padding) -> None:
        packet = RtpPacket(
            payload_type=payload_type, marker=marker, sequence_number=sequence_number, timestamp=timestamp,
            ssrc=ssrc, payload=payload, csrc=csrc,
            extension_profile=None if extension is None else extension[0],
            extension=b"" if extension is None else bytes(range(4 * extension[1])),
            padding=padding_for(padding) if padding else b"",
        )
        data = packet.serialize()
        assert RtpPacket.parse(data) == packet
        assert RtpPacket.parse(data).serialize() == data

    def test_rejects_bad_fields(self) -> None:
        with pytest.raises(ValueError, match="16 CSRCs"):
            RtpPacket(csrc=[0] * 16).serialize()
        with pytest.raises(ValueError, match="must end with its length"):
            RtpPacket(padding=b"\x00\x00").serialize()
        with pytest.raises(ValueError, match="multiple of 4"):
            RtpPacket(extension_profile=1, extension=b"\x00").serialize()


class TestSequenceArithmetic:
    def test_seq_gt_across_wrap(self) -> None:
        assert seq_gt(0, 65535) and not seq_gt(65535, 0)
        assert seq_gt(100, 99) and not seq_gt(99, 99)
        assert seq_diff(2, 65534) == 4 and seq_diff(65534, 2) == -4

    def test_timestamp_diff_across_wrap(self) -> None:
        assert timestamp_diff(0x00000060, 0xFFFFFF60) == 0x100
        assert timestamp_diff(0xFFFFFF60, 0x00000060) == -0x100


def _packets(ssrc: int, first_seq: int, first_ts: int, count: int, ptime: int = 160) -> list[RtpPacket]:
    return [
        RtpPacket(sequence_number=(first_seq + i) & 0xFFFF, timestamp=(first_ts + i * ptime) & 0xFFFFFFFF,
                  ssrc=ssrc, payload=b"\xff" * 160)
        for i in range(count)
    ]


class TestReceiverStats:
    def test_probation_then_valid(self) -> None:
        stats = RtpReceiverStats()
        packets = _packets(1, 100, 0, 3)
        assert stats.update(packets[0], 0.0) == RtpCheck.NEW_SOURCE | RtpCheck.PROBATION
        assert stats.update(packets[1], 0.02) == RtpCheck.VALID  # MIN_SEQUENTIAL = 2 (A.1)
        assert stats.update(packets[2], 0.04) == RtpCheck.VALID
        assert (stats.expected, stats.received, stats.lost) == (2, 2, 0)

    def test_extended_sequence_wraps(self) -> None:
        stats = RtpReceiverStats()
        for i, packet in enumerate(_packets(1, 65530, 0, 12)):
            stats.update(packet, i * 0.02)
        assert stats.cycles == 65536 and stats.max_seq == 5
        assert stats.extended_max_seq == 65536 + 5
        assert stats.expected == 11 and stats.lost == 0

    def test_loss_and_fraction(self) -> None:
        stats = RtpReceiverStats()
        packets = _packets(1, 0, 0, 12)
        for i, packet in enumerate(packets):
            if i not in (5, 6, 7):
                stats.update(packet, i * 0.02)
        assert stats.expected == 11 and stats.received == 8 and stats.lost == 3
        assert stats.fraction_lost() == (3 << 8) // 11
        assert stats.fraction_lost() == 0  # a new interval

    def test_duplicates_make_loss_negative(self) -> None:
        stats = RtpReceiverStats()
        packets = _packets(1, 0, 0, 4)
        for i, packet in enumerate(packets):
            stats.update(packet, i * 0.02)
        stats.update(packets[3], 0.1)
        assert stats.lost == -1

    def test_jitter_is_zero_for_a_steady_sender_and_grows_with_variation(self) -> None:
        stats = RtpReceiverStats()
        for i, packet in enumerate(_packets(1, 0, 0, 50)):
            stats.update(packet, 10.0 + i * 0.02)
        assert stats.jitter == pytest.approx(0.0, abs=1e-9)
        for i, packet in enumerate(_packets(1, 50, 50 * 160, 200)):
            stats.update(packet, 10.0 + (50 + i) * 0.02 + (0.01 if i % 2 else 0.0))
        # |D| alternates between 80 samples; J converges to 80 (A.8).
        assert stats.jitter == pytest.approx(80.0, rel=0.01)

    def test_new_ssrc_resets(self) -> None:
        stats = RtpReceiverStats()
        for i, packet in enumerate(_packets(1, 0, 0, 5)):
            stats.update(packet, i * 0.02)
        check = stats.update(_packets(2, 9000, 555, 1)[0], 0.2)
        assert RtpCheck.NEW_SOURCE in check and RtpCheck.PROBATION in check
        assert stats.ssrc == 2 and stats.received == 0

    def test_large_jump_needs_two_sequential_packets(self) -> None:
        stats = RtpReceiverStats()
        for i, packet in enumerate(_packets(1, 0, 0, 5)):
            stats.update(packet, i * 0.02)
        jumped = _packets(1, 20000, 1000, 2)
        assert stats.update(jumped[0], 0.2) == RtpCheck.BAD_SEQUENCE
        assert stats.update(jumped[1], 0.22) == RtpCheck.VALID | RtpCheck.RESTARTED
        assert stats.restarts == 1 and stats.base_seq == 20001

    def test_timestamp_jump_is_flagged_and_not_counted_as_jitter(self) -> None:
        stats = RtpReceiverStats()
        for i, packet in enumerate(_packets(1, 0, 0, 10)):
            stats.update(packet, i * 0.02)
        jump = RtpPacket(sequence_number=10, timestamp=10 * 160 + 80000, ssrc=1, marker=True)
        check = stats.update(jump, 0.2)
        assert RtpCheck.TIMESTAMP_JUMP in check and RtpCheck.MARKER in check and RtpCheck.VALID in check
        assert stats.timestamp_jumps == 1 and stats.jitter == 0.0

    def test_silence_suppression_gap_is_not_a_jump(self) -> None:
        stats = RtpReceiverStats()
        for i, packet in enumerate(_packets(1, 0, 0, 10)):
            stats.update(packet, i * 0.02)
        # 3 s of silence: the timestamp advances with the arrival time (RFC 3551 §4.1 marker).
        resume = RtpPacket(sequence_number=10, timestamp=9 * 160 + 24000, ssrc=1, marker=True)
        assert stats.update(resume, 0.18 + 3.0) == RtpCheck.VALID | RtpCheck.MARKER


class TestProperties:
    @given(a=st.integers(0, 0xFFFF), b=st.integers(0, 0xFFFF))
    def test_seq_gt_is_antisymmetric(self, a: int, b: int) -> None:
        if a == b or seq_diff(a, b) == -0x8000:
            assert not (seq_gt(a, b) and seq_gt(b, a))
        else:
            assert seq_gt(a, b) != seq_gt(b, a)
        assert (b + seq_diff(a, b)) & 0xFFFF == a

    @given(
        first=st.integers(0, 0xFFFF),
        count=st.integers(3, 400),
        dropped=st.sets(st.integers(2, 399)),
        swaps=st.lists(st.integers(2, 398), max_size=20),
    )
    def test_loss_accounting_with_reordering_and_wrap(self, first, count, dropped, swaps) -> None:
        stream = _packets(7, first, 0, count)
        order = list(range(count))
        for i in swaps:
            if i + 1 < count:
                order[i], order[i + 1] = order[i + 1], order[i]
        stats = RtpReceiverStats()
        kept = [i for i in order if i not in dropped]
        for n, i in enumerate(kept):
            stats.update(stream[i], n * 0.02)
        # The first packet is spent on probation (A.1, MIN_SEQUENTIAL = 2); counting starts at the second.
        highest = max(kept[1:])
        assert stats.base_seq == (first + 1) & 0xFFFF
        assert stats.extended_max_seq - stats.base_seq == highest - 1
        assert stats.expected == highest
        assert stats.received == len(kept) - 1
        assert stats.lost == stats.expected - stats.received
