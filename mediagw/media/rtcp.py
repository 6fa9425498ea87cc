"""RTCP (RFC 3550 §6): SR, RR, SDES, BYE and compound packets, and a clockless report scheduler.

Theory of operation
-------------------
``parse_compound(data)`` splits a datagram into its packets (RFC 3550 §6.1) and ``serialize_compound``
joins them back; a round trip is byte-exact for packets laid out as the RFC lays them out (padding octets,
profile-specific extensions of SR/RR and unknown packet types such as APP are kept as they came).
Malformed input raises ``RtpError``.

``RtcpScheduler`` is the small sans-I/O reporter a gateway leg needs: it says when the next report is due
(every ``interval`` seconds, the first after half an interval, RFC 3550 §6.2), remembers the last SR of
each source for the LSR/DLSR fields (§6.4.1), and builds the compound packets: SR (when we sent media since
the last report) or RR, always followed by SDES CNAME (§6.1), and at the end the same plus BYE (§6.6).
Time is a parameter: ``now`` in seconds on any monotonic clock, ``wallclock`` in Unix seconds for NTP.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Union

from mediagw.errors import RtpError
from mediagw.media.rtp import RtpReceiverStats

RTCP_SR = 200  # RFC 3550 §12.1
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
SDES_END = 0  # RFC 3550 §12.2
SDES_CNAME = 1
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01, RFC 5905 §6
RTCP_INTERVAL = 5.0  # seconds, RFC 3550 §6.2 recommended minimum

_HEADER = struct.Struct("!BBH")
_SENDER_INFO = struct.Struct("!QLLL")
_REPORT_BLOCK = struct.Struct("!LB3sLLLL")


def ntp_timestamp(wallclock: float) -> int:
    """64-bit NTP timestamp (RFC 3550 §4) of a Unix time in seconds."""
    return int(round((wallclock + NTP_EPOCH_OFFSET) * (1 << 32))) & 0xFFFFFFFFFFFFFFFF


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field of a report block (RFC 3550 §6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass(slots=True)
class RtcpReportBlock:
    """One reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0
    """Cumulative number of packets lost, signed 24 bits."""
    highest_sequence: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0
    """Delay since the last SR, in units of 1/65536 s."""

    @classmethod
    def parse(cls, data: bytes, pos: int) -> RtcpReportBlock:
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        packets_lost = int.from_bytes(lost, "big", signed=True)
        return cls(ssrc, fraction, packets_lost, highest, jitter, lsr, dlsr)

    def serialize(self) -> bytes:
        lost = self.packets_lost.to_bytes(3, "big", signed=True)
        return _REPORT_BLOCK.pack(
            self.ssrc, self.fraction_lost, lost, self.highest_sequence, self.jitter, self.lsr, self.dlsr
        )


@dataclass(slots=True)
class RtcpSenderInfo:
    """The sender information of an SR (RFC 3550 §6.4.1)."""

    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int


@dataclass(slots=True)
class RtcpSrPacket:
    """Sender report (PT 200, RFC 3550 §6.4.1)."""

    ssrc: int
    sender_info: RtcpSenderInfo
    reports: list[RtcpReportBlock] = field(default_factory=list)
    extension: bytes = b""
    """Profile-specific extension after the report blocks (§6.4.1), kept as received."""
    padding: bytes = b""


@dataclass(slots=True)
class RtcpRrPacket:
    """Receiver report (PT 201, RFC 3550 §6.4.2)."""

    ssrc: int
    reports: list[RtcpReportBlock] = field(default_factory=list)
    extension: bytes = b""
    padding: bytes = b""


@dataclass(slots=True)
class RtcpSdesChunk:
    """One SDES chunk: a source and its items as (type, value) pairs (RFC 3550 §6.5)."""

    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def cname(self) -> str | None:
        """The CNAME item (§6.5.1) decoded as UTF-8, if present."""
        for item_type, value in self.items:
            if item_type == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(slots=True)
class RtcpSdesPacket:
    """Source description (PT 202, RFC 3550 §6.5)."""

    chunks: list[RtcpSdesChunk] = field(default_factory=list)
    padding: bytes = b""


@dataclass(slots=True)
class RtcpByePacket:
    """Goodbye (PT 203, RFC 3550 §6.6)."""

    sources: list[int] = field(default_factory=list)
    reason: bytes | None = None
    padding: bytes = b""


@dataclass(slots=True)
class RtcpUnknownPacket:
    """Any other packet type (APP, XR, feedback ...), kept as received."""

    packet_type: int
    count: int
    body: bytes
    padding: bytes = b""


RtcpPacket = Union[RtcpSrPacket, RtcpRrPacket, RtcpSdesPacket, RtcpByePacket, RtcpUnknownPacket]


def _parse_reports(body: bytes, pos: int, count: int, name: str) -> tuple[list[RtcpReportBlock], bytes]:
    if pos + 24 * count > len(body):
        raise RtpError(f"RTCP {name} report blocks are truncated")
    reports = [RtcpReportBlock.parse(body, pos + 24 * i) for i in range(count)]
    return reports, body[pos + 24 * count :]


def _parse_sdes(body: bytes, count: int) -> list[RtcpSdesChunk]:
    chunks = []
    pos = 0
    for _ in range(count):
        if pos + 4 > len(body):
            raise RtpError("RTCP SDES chunk is truncated")
        chunk = RtcpSdesChunk(struct.unpack_from("!L", body, pos)[0])
        pos += 4
        while True:
            if pos >= len(body):
                raise RtpError("RTCP SDES item list is not terminated")
            item_type = body[pos]
            if item_type == SDES_END:
                pos = (pos + 4) & ~3  # the null octet(s) up to the next 32-bit boundary, §6.5
                break
            if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
                raise RtpError("RTCP SDES item is truncated")
            length = body[pos + 1]
            chunk.items.append((item_type, bytes(body[pos + 2 : pos + 2 + length])))
            pos += 2 + length
        chunks.append(chunk)
    if pos > len(body):
        raise RtpError("RTCP SDES chunk is truncated")
    return chunks


def _parse_bye(body: bytes, count: int) -> RtcpByePacket:
    if 4 * count > len(body):
        raise RtpError("RTCP BYE sources are truncated")
    sources = list(struct.unpack_from(f"!{count}L", body, 0))
    reason = None
    pos = 4 * count
    if pos < len(body):
        length = body[pos]
        if pos + 1 + length > len(body):
            raise RtpError("RTCP BYE reason is truncated")
        reason = bytes(body[pos + 1 : pos + 1 + length])
    return RtcpByePacket(sources, reason)


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Split and parse an RTCP compound packet (RFC 3550 §6.1); raises ``RtpError`` when malformed."""
    packets: list[RtcpPacket] = []
    pos = 0
    if len(data) < 4:
        raise RtpError("RTCP packet length is less than 4 bytes")
    while pos < len(data):
        if pos + 4 > len(data):
            raise RtpError("RTCP packet length is less than 4 bytes")
        first, packet_type, length = _HEADER.unpack_from(data, pos)
        if first >> 6 != 2:
            raise RtpError("RTCP packet has invalid version")
        end = pos + 4 + 4 * length
        if end > len(data):
            raise RtpError("RTCP packet length exceeds the datagram")
        count = first & 0x1F
        body = data[pos + 4 : end]
        padding = b""
        if first & 0x20:  # §6.4.1 P bit: the last octet counts the padding octets
            padding_length = body[-1] if body else 0
            if padding_length == 0 or padding_length > len(body):
                raise RtpError(f"RTCP packet padding length {padding_length} is invalid")
            padding = bytes(body[-padding_length:])
            body = body[:-padding_length]
        packets.append(_parse_one(packet_type, count, bytes(body), padding))
        pos = end
    return packets


def _parse_one(packet_type: int, count: int, body: bytes, padding: bytes) -> RtcpPacket:
    if packet_type == RTCP_SR:
        if len(body) < 24:
            raise RtpError("RTCP SR is truncated")
        ssrc = struct.unpack_from("!L", body)[0]
        info = RtcpSenderInfo(*_SENDER_INFO.unpack_from(body, 4))
        reports, extension = _parse_reports(body, 24, count, "SR")
        return RtcpSrPacket(ssrc, info, reports, extension, padding)
    if packet_type == RTCP_RR:
        if len(body) < 4:
            raise RtpError("RTCP RR is truncated")
        ssrc = struct.unpack_from("!L", body)[0]
        reports, extension = _parse_reports(body, 4, count, "RR")
        return RtcpRrPacket(ssrc, reports, extension, padding)
    if packet_type == RTCP_SDES:
        return RtcpSdesPacket(_parse_sdes(body, count), padding)
    if packet_type == RTCP_BYE:
        bye = _parse_bye(body, count)
        bye.padding = padding
        return bye
    return RtcpUnknownPacket(packet_type, count, body, padding)


def _pad32(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def serialize_packet(packet: RtcpPacket) -> bytes:
    """One RTCP packet as bytes, header included. Raises ``ValueError`` on fields that do not fit."""
    if isinstance(packet, RtcpSrPacket):
        info = packet.sender_info
        body = struct.pack("!L", packet.ssrc) + _SENDER_INFO.pack(
            info.ntp_timestamp, info.rtp_timestamp, info.packet_count, info.octet_count
        )
        body += b"".join(r.serialize() for r in packet.reports) + packet.extension
        packet_type, count = RTCP_SR, len(packet.reports)
    elif isinstance(packet, RtcpRrPacket):
        body = struct.pack("!L", packet.ssrc) + b"".join(r.serialize() for r in packet.reports)
        body += packet.extension
        packet_type, count = RTCP_RR, len(packet.reports)
    elif isinstance(packet, RtcpSdesPacket):
        chunks = []
        for chunk in packet.chunks:
            items = b"".join(bytes([t, len(v)]) + v for t, v in chunk.items)
            chunks.append(_pad32(struct.pack("!L", chunk.ssrc) + items + b"\x00"))
        body = b"".join(chunks)
        packet_type, count = RTCP_SDES, len(packet.chunks)
    elif isinstance(packet, RtcpByePacket):
        body = struct.pack(f"!{len(packet.sources)}L", *packet.sources)
        if packet.reason is not None:
            body += _pad32(bytes([len(packet.reason)]) + packet.reason)
        packet_type, count = RTCP_BYE, len(packet.sources)
    else:
        body = packet.body
        packet_type, count = packet.packet_type, packet.count
    if count > 31:
        raise ValueError(f"RTCP packet type {packet_type} carries {count} items, at most 31 fit")
    padding = packet.padding
    if padding and padding[-1] != len(padding):
        raise ValueError(f"RTCP padding of {len(padding)} octets must end with its length")
    total = len(body) + len(padding)
    if total % 4:
        raise ValueError(f"RTCP packet type {packet_type} is not a multiple of 32 bits long")
    first = 0x80 | (0x20 if padding else 0) | count
    return _HEADER.pack(first, packet_type, total // 4) + body + padding


def serialize_compound(packets: list[RtcpPacket]) -> bytes:
    """Join packets into one compound datagram (RFC 3550 §6.1)."""
    return b"".join(serialize_packet(p) for p in packets)


def report_block(stats: RtpReceiverStats, lsr: int = 0, dlsr: int = 0) -> RtcpReportBlock:
    """A report block from a source's receive statistics (RFC 3550 §6.4.1, A.3); starts a new interval."""
    assert stats.ssrc is not None, "no packet received from this source yet"
    return RtcpReportBlock(
        ssrc=stats.ssrc,
        fraction_lost=stats.fraction_lost(),
        packets_lost=stats.lost,
        highest_sequence=stats.extended_max_seq & 0xFFFFFFFF,
        jitter=int(stats.jitter),
        lsr=lsr,
        dlsr=dlsr,
    )


@dataclass(slots=True)
class RtcpScheduler:
    """When to send RTCP for one leg, and what (SR/RR + SDES CNAME, BYE at the end); no clock inside."""

    ssrc: int
    cname: str
    interval: float = RTCP_INTERVAL
    next_due: float | None = None
    _last_sr: dict[int, tuple[int, float]] = field(default_factory=dict, init=False, repr=False)

    def start(self, now: float) -> None:
        """Arm the first report half an interval from now (RFC 3550 §6.2: the initial interval is halved)."""
        self.next_due = now + self.interval / 2

    def get_timer(self) -> float | None:
        """When the next report is due, or None before ``start``."""
        return self.next_due

    def is_due(self, now: float) -> bool:
        """True when a report should be sent at ``now``."""
        return self.next_due is not None and now >= self.next_due

    def handle_sender_report(self, packet: RtcpSrPacket, now: float) -> None:
        """Remember a peer's SR for the LSR/DLSR fields of our next report (RFC 3550 §6.4.1)."""
        self._last_sr[packet.ssrc] = (ntp_middle(packet.sender_info.ntp_timestamp), now)

    def _blocks(self, sources: list[RtpReceiverStats], now: float) -> list[RtcpReportBlock]:
        blocks = []
        for stats in sources[:31]:  # RC is 5 bits; a gateway leg has one source
            if stats.ssrc is None:
                continue
            lsr, seen = self._last_sr.get(stats.ssrc, (0, now))
            dlsr = int((now - seen) * 65536) if lsr else 0
            blocks.append(report_block(stats, lsr, dlsr))
        return blocks

    def build_report(
        self, now: float, sources: list[RtpReceiverStats], sender_info: RtcpSenderInfo | None = None
    ) -> bytes:
        """The compound report due now: SR when ``sender_info`` is given (we sent media), else RR; then
        SDES CNAME (RFC 3550 §6.1). Arms the next report ``interval`` seconds later."""
        self.next_due = now + self.interval
        return serialize_compound(self._report_packets(now, sources, sender_info))

    def build_bye(
        self,
        now: float,
        sources: list[RtpReceiverStats],
        sender_info: RtcpSenderInfo | None = None,
        reason: str | None = None,
    ) -> bytes:
        """The final compound packet: report, SDES CNAME and BYE (RFC 3550 §6.6); stops the schedule."""
        self.next_due = None
        packets = self._report_packets(now, sources, sender_info)
        packets.append(RtcpByePacket([self.ssrc], None if reason is None else reason.encode()[:255]))
        return serialize_compound(packets)

    def _report_packets(
        self, now: float, sources: list[RtpReceiverStats], sender_info: RtcpSenderInfo | None
    ) -> list[RtcpPacket]:
        blocks = self._blocks(sources, now)
        report: RtcpPacket
        if sender_info is not None:
            report = RtcpSrPacket(self.ssrc, sender_info, blocks)
        else:
            report = RtcpRrPacket(self.ssrc, blocks)
        sdes = RtcpSdesPacket([RtcpSdesChunk(self.ssrc, [(SDES_CNAME, self.cname.encode()[:255])])])
        return [report, sdes]
