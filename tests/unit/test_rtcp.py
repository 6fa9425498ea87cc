"""RTCP packets, compound packets and the report scheduler (RFC 3550 §6)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediagw.errors import RtpError
from mediagw.media.rtcp import (
    RtcpByePacket,
    RtcpReportBlock,
    RtcpRrPacket,
    RtcpScheduler,
    RtcpSdesChunk,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtcpUnknownPacket,
    ntp_middle,
    ntp_timestamp,
    parse_compound,
    serialize_compound,
)
from mediagw.media.rtp import RtpPacket, RtpReceiverStats

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rtp"


def load_hex(name: str) -> bytes:
    text = "".join(re.sub(r"#.*", "", line) for line in (FIXTURES / name).read_text().splitlines())
    return bytes.fromhex(re.sub(r"\s+", "", text))


class TestFixtures:
    def test_sr_sdes(self) -> None:
        data = load_hex("rtcp_sr_sdes.hex")
        sr, sdes = parse_compound(data)
        assert isinstance(sr, RtcpSrPacket) and isinstance(sdes, RtcpSdesPacket)
        assert sr.ssrc == 0x3A1B7C9D
        assert sr.sender_info == RtcpSenderInfo(0xE95A8B1080000000, 128000, 250, 40000)
        assert sr.reports == [RtcpReportBlock(0x5C2E1107, 10, 3, 0x15E27, 18, 0x5A8B0CCC, 0x18000)]
        assert sdes.chunks == [RtcpSdesChunk(0x3A1B7C9D, [(1, b"agent42@10.0.0.5")])]
        assert sdes.chunks[0].cname == "agent42@10.0.0.5"
        assert serialize_compound([sr, sdes]) == data

    def test_rr_sdes_bye(self) -> None:
        data = load_hex("rtcp_rr_sdes_bye.hex")
        rr, sdes, bye = parse_compound(data)
        assert rr == RtcpRrPacket(0x1001, [])
        assert sdes.chunks[0].cname == "caller@192.0.2.1"
        assert bye == RtcpByePacket([0x1001], b"teardown")
        assert serialize_compound([rr, sdes, bye]) == data


class TestErrors:
    @pytest.mark.parametrize(
        "data, message",
        [
            (b"\x80\xc9", "less than 4 bytes"),
            (b"\x40\xc9\x00\x00", "invalid version"),
            (b"\x80\xc9\x00\x02\x00\x00\x00\x01", "exceeds the datagram"),
            (b"\x80\xc8\x00\x01\x00\x00\x00\x01", "SR is truncated"),
            (b"\x81\xc9\x00\x01\x00\x00\x00\x01", "RR report blocks are truncated"),
            (b"\x81\xca\x00\x01\x00\x00\x00\x01", "not terminated"),
            (b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x09ab", "SDES item is truncated"),
            (b"\x82\xcb\x00\x01\x00\x00\x00\x01", "BYE sources are truncated"),
            (b"\x81\xcb\x00\x02\x00\x00\x00\x01\x09abc", "BYE reason is truncated"),
            (b"\xa0\xc9\x00\x01\x00\x00\x00\x00", "padding length 0 is invalid"),
            (b"\x80\xc9\x00\x01\x00\x00\x00\x01\x80", "less than 4 bytes"),
        ],
    )
    def test_malformed(self, data: bytes, message: str) -> None:
        with pytest.raises(RtpError, match=message):
            parse_compound(data)

    @given(st.binary(max_size=80))
    def test_arbitrary_bytes_parse_or_raise_rtp_error(self, data: bytes) -> None:
        try:
            parse_compound(data)
        except RtpError:
            pass


blocks = st.builds(
    RtcpReportBlock,
    ssrc=st.integers(0, 0xFFFFFFFF), fraction_lost=st.integers(0, 255),
    packets_lost=st.integers(-0x800000, 0x7FFFFF), highest_sequence=st.integers(0, 0xFFFFFFFF),
    jitter=st.integers(0, 0xFFFFFFFF), lsr=st.integers(0, 0xFFFFFFFF), dlsr=st.integers(0, 0xFFFFFFFF),
)
u32 = st.integers(0, 0xFFFFFFFF)
paddings = st.sampled_from([b"", b"\x00\x00\x00\x04", b"\x00" * 7 + b"\x08"])
words = st.integers(0, 3).map(lambda n: bytes(range(4 * n)))
packets = st.one_of(
    st.builds(RtcpSrPacket, ssrc=u32,
              sender_info=st.builds(RtcpSenderInfo, st.integers(0, 2**64 - 1), u32, u32, u32),
              reports=st.lists(blocks, max_size=3), extension=words, padding=paddings),
    st.builds(RtcpRrPacket, ssrc=u32, reports=st.lists(blocks, max_size=3), extension=words,
              padding=paddings),
    st.builds(RtcpSdesPacket, chunks=st.lists(st.builds(
        RtcpSdesChunk, ssrc=u32,
        items=st.lists(st.tuples(st.integers(1, 8), st.binary(max_size=20)), max_size=3)), max_size=3),
        padding=paddings),
    st.builds(RtcpByePacket, sources=st.lists(u32, max_size=3),
              reason=st.one_of(st.none(), st.binary(max_size=20)), padding=paddings),
    st.builds(RtcpUnknownPacket, packet_type=st.sampled_from([204, 205, 206, 207]),
              count=st.integers(0, 31), body=words, padding=paddings),
)


class TestRoundTrip:
    @given(st.lists(packets, min_size=1, max_size=4))
    def test_compound_round_trip(self, compound) -> None:
        data = serialize_compound(compound)
        assert parse_compound(data) == compound
        assert serialize_compound(parse_compound(data)) == data

    def test_serialize_rejects(self) -> None:
        with pytest.raises(ValueError, match="at most 31"):
            serialize_compound([RtcpByePacket(list(range(32)))])
        with pytest.raises(ValueError, match="must end with its length"):
            serialize_compound([RtcpRrPacket(1, padding=b"\x00\x00\x00\x00")])


class TestNtp:
    def test_known_value(self) -> None:
        # 2024-01-01T00:00:00Z = 1704067200 Unix = 3913056000 NTP seconds.
        assert ntp_timestamp(1704067200.5) == (3913056000 << 32) | 0x80000000
        assert ntp_middle(0xE95A8B1080000000) == 0x8B108000


def _stats_with(count: int, lost: set[int]) -> RtpReceiverStats:
    stats = RtpReceiverStats()
    for i in range(count):
        if i not in lost:
            stats.update(RtpPacket(sequence_number=i, timestamp=i * 160, ssrc=0xAB), i * 0.02)
    return stats


class TestScheduler:
    def test_schedule(self) -> None:
        scheduler = RtcpScheduler(ssrc=7, cname="gw@198.51.100.1")
        assert scheduler.get_timer() is None and not scheduler.is_due(100.0)
        scheduler.start(100.0)
        assert scheduler.get_timer() == 102.5
        assert not scheduler.is_due(102.4) and scheduler.is_due(102.5)
        scheduler.build_report(102.5, [])
        assert scheduler.get_timer() == 107.5

    def test_receiver_report_with_lsr_dlsr(self) -> None:
        scheduler = RtcpScheduler(ssrc=7, cname="gw@198.51.100.1")
        stats = _stats_with(101, lost={50, 51})
        sr = RtcpSrPacket(0xAB, RtcpSenderInfo(0xE95A8B1080000000, 0, 0, 0))
        scheduler.handle_sender_report(sr, now=10.0)
        rr, sdes = parse_compound(scheduler.build_report(11.5, [stats]))
        assert isinstance(rr, RtcpRrPacket) and rr.ssrc == 7
        (block,) = rr.reports
        assert (block.ssrc, block.packets_lost, block.highest_sequence) == (0xAB, 2, 100)
        assert block.fraction_lost == (2 << 8) // 100
        assert (block.lsr, block.dlsr) == (0x8B108000, int(1.5 * 65536))
        assert sdes == RtcpSdesPacket([RtcpSdesChunk(7, [(1, b"gw@198.51.100.1")])])

    def test_sender_report_and_bye(self) -> None:
        scheduler = RtcpScheduler(ssrc=7, cname="gw")
        scheduler.start(0.0)
        info = RtcpSenderInfo(ntp_timestamp(1704067200.0), 8000, 50, 8000)
        sr, sdes, bye = parse_compound(scheduler.build_bye(60.0, [], info, reason="call ended"))
        assert isinstance(sr, RtcpSrPacket) and sr.sender_info == info and sr.reports == []
        assert sdes.chunks[0].cname == "gw"
        assert bye == RtcpByePacket([7], b"call ended")
        assert scheduler.get_timer() is None
