"""RTP packets (RFC 3550 §5.1) and receiver statistics (RFC 3550 Appendix A), without a clock.

Theory of operation
-------------------
``RtpPacket.parse(data)`` turns one datagram into a packet and ``serialize()`` gives the same bytes back:
CSRCs, the header extension (profile and words) and padding (every padding octet, as sent) are kept so that
a parse/serialize round trip is byte-exact. A malformed datagram raises ``RtpError`` with a fixed message;
the media loop drops it and counts it.

``RtpReceiverStats`` follows one SSRC: the sequence-number bookkeeping of RFC 3550 Appendix A.1 (extended
sequence with wrap, probation, resync after a restart), the loss figures of A.3 and the interarrival jitter
of A.8. Arrival times are parameters (seconds, any monotonic origin); nothing here reads a clock. A packet
from a new SSRC resets the statistics; a timestamp that disagrees with the arrival time by more than a
configurable amount is reported as a jump and does not pollute the jitter estimate.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from mediagw.errors import RtpError

RTP_VERSION = 2  # RFC 3550 §5.1
RTP_HEADER_LENGTH = 12  # fixed header, RFC 3550 §5.1
RTP_SEQ_MOD = 1 << 16  # RFC 3550 Appendix A.1
RTP_TS_MOD = 1 << 32
MAX_DROPOUT = 3000  # packets, RFC 3550 Appendix A.1
MAX_MISORDER = 100  # packets, RFC 3550 Appendix A.1
MIN_SEQUENTIAL = 2  # packets in sequence before a source is valid, RFC 3550 Appendix A.1

_FIXED_HEADER = struct.Struct("!BBHLL")
_EXTENSION_HEADER = struct.Struct("!HH")


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two 16-bit sequence numbers, in [-32768, 32767]."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_gt(a: int, b: int) -> bool:
    """True when sequence number ``a`` is newer than ``b`` in 16-bit serial arithmetic (RFC 1982)."""
    return seq_diff(a, b) > 0


def timestamp_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two 32-bit RTP timestamps."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def is_rtcp(data: bytes) -> bool:
    """True when a datagram on a muxed port is RTCP: second octet 192..223 (RFC 5761 §4)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1). ``padding`` holds the padding octets as sent, count octet included."""

    payload_type: int = 0
    marker: bool = False
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    csrc: list[int] = field(default_factory=list)
    extension_profile: int | None = None
    """The 16-bit profile-defined field of the header extension (RFC 3550 §5.3.1), None without one."""
    extension: bytes = b""
    """The header extension words (a multiple of 4 octets), without the profile/length word."""
    padding: bytes = b""

    @property
    def padding_size(self) -> int:
        """Number of padding octets at the end of the packet (0 without padding)."""
        return len(self.padding)

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP datagram; raises ``RtpError`` when it is not a valid RTP packet."""
        if len(data) < RTP_HEADER_LENGTH:
            raise RtpError("RTP packet length is less than 12 bytes")
        first, second, sequence_number, timestamp, ssrc = _FIXED_HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError("RTP packet has invalid version")
        has_padding = bool(first & 0x20)
        has_extension = bool(first & 0x10)
        csrc_count = first & 0x0F
        pos = RTP_HEADER_LENGTH
        end = len(data)

        # RFC 3550 §5.1: P bit; the last octet counts the padding octets, itself included.
        padding = b""
        if has_padding:
            padding_length = data[-1]
            if padding_length == 0:
                raise RtpError("RTP packet padding length is zero")
            end -= padding_length

        csrc_end = pos + 4 * csrc_count
        if csrc_end > len(data):
            raise RtpError("RTP packet has truncated CSRC")
        csrc = list(struct.unpack_from(f"!{csrc_count}L", data, pos))
        pos = csrc_end

        extension_profile: int | None = None
        extension = b""
        if has_extension:  # RFC 3550 §5.3.1
            if pos + 4 > len(data):
                raise RtpError("RTP packet has truncated extension profile / length")
            extension_profile, words = _EXTENSION_HEADER.unpack_from(data, pos)
            pos += 4
            if pos + 4 * words > len(data):
                raise RtpError("RTP packet has truncated extension value")
            extension = data[pos : pos + 4 * words]
            pos += 4 * words

        if has_padding:
            if end < pos:
                raise RtpError(
                    f"RTP packet padding length {data[-1]} exceeds "
                    f"the {len(data) - pos} bytes after the header"
                )
            padding = data[end:]

        return cls(
            payload_type=second & 0x7F,
            marker=bool(second & 0x80),
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            csrc=csrc,
            extension_profile=extension_profile,
            extension=bytes(extension),
            padding=bytes(padding),
        )

    def serialize(self) -> bytes:
        """Return the packet as bytes. Raises ``ValueError`` on fields that do not fit RFC 3550 §5.1."""
        if len(self.csrc) > 15:
            raise ValueError(f"RTP packet has {len(self.csrc)} CSRCs, at most 15 fit")
        if self.padding and self.padding[-1] != len(self.padding):
            raise ValueError(f"RTP padding of {len(self.padding)} octets must end with its length")
        if len(self.extension) % 4:
            raise ValueError("RTP header extension length must be a multiple of 4 octets")
        first = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension_profile is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [
            _FIXED_HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrc)}L", *self.csrc),
        ]
        if self.extension_profile is not None:
            parts.append(_EXTENSION_HEADER.pack(self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        parts.append(self.padding)
        return b"".join(parts)


def padding_for(length: int) -> bytes:
    """Padding octets of ``length`` (1..255) as RFC 3550 §5.1 lays them out: zeros, then the count."""
    if not 1 <= length <= 255:
        raise ValueError(f"RTP padding length must be 1..255, not {length}")
    return bytes(length - 1) + bytes([length])


class RtpCheck(enum.Flag):
    """What ``RtpReceiverStats.update`` learned from one packet."""

    NONE = 0
    VALID = enum.auto()
    """The packet belongs to a validated source and should be played (RFC 3550 Appendix A.1)."""
    NEW_SOURCE = enum.auto()
    """First packet, or a new SSRC: statistics were reset; the jitter buffer should reset too."""
    PROBATION = enum.auto()
    """The source is not yet validated (MIN_SEQUENTIAL packets in sequence)."""
    RESTARTED = enum.auto()
    """Two sequential packets after a large jump: the sender restarted its sequence (A.1 resync)."""
    BAD_SEQUENCE = enum.auto()
    """A very large jump or a very old packet (A.1 ``bad_seq``); the packet should be dropped."""
    TIMESTAMP_JUMP = enum.auto()
    """The timestamp disagrees with the arrival time by more than ``max_timestamp_jump`` seconds."""
    MARKER = enum.auto()
    """The marker bit is set: for audio, the first packet of a talkspurt (RFC 3551 §4.1)."""


@dataclass(slots=True)
class RtpReceiverStats:
    """Per-source receive statistics, RFC 3550 Appendix A.1 (sequence), A.3 (loss) and A.8 (jitter)."""

    clock_rate: int = 8000
    max_timestamp_jump: float = 1.0
    """Seconds of disagreement between timestamp and arrival time counted as a timestamp jump."""
    ssrc: int | None = field(default=None, init=False)
    base_seq: int = field(default=0, init=False)
    max_seq: int = field(default=0, init=False)
    cycles: int = field(default=0, init=False)
    bad_seq: int = field(default=RTP_SEQ_MOD + 1, init=False)
    probation: int = field(default=MIN_SEQUENTIAL, init=False)
    received: int = field(default=0, init=False)
    expected_prior: int = field(default=0, init=False)
    received_prior: int = field(default=0, init=False)
    jitter: float = field(default=0.0, init=False)
    """Interarrival jitter in timestamp units (RFC 3550 §6.4.1, A.8)."""
    timestamp_jumps: int = field(default=0, init=False)
    restarts: int = field(default=0, init=False)
    _transit: int | None = field(default=None, init=False, repr=False)
    _last_timestamp: int = field(default=0, init=False, repr=False)
    _last_arrival: float = field(default=0.0, init=False, repr=False)

    # -- RFC 3550 Appendix A.1 -------------------------------------------------------------------------

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1  # so seq == bad_seq is false
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def _reset(self, packet: RtpPacket) -> None:
        self.ssrc = packet.ssrc
        self._init_seq(packet.sequence_number)
        self.max_seq = (packet.sequence_number - 1) & 0xFFFF
        self.probation = MIN_SEQUENTIAL
        self.jitter = 0.0
        self._transit = None

    def _update_seq(self, seq: int) -> RtpCheck:
        """RFC 3550 Appendix A.1 ``update_seq``, returning what happened instead of 0/1."""
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            # Source is not valid until MIN_SEQUENTIAL packets with sequential numbers have arrived.
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return RtpCheck.VALID
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return RtpCheck.PROBATION
        if udelta < MAX_DROPOUT:
            # In order, with a permissible gap.
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD  # sequence number wrapped
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # The sequence number made a very large jump.
            if seq == self.bad_seq:
                # Two sequential packets: assume the other side restarted without telling us.
                self._init_seq(seq)
                self.restarts += 1
                self.received += 1
                return RtpCheck.VALID | RtpCheck.RESTARTED
            self.bad_seq = (seq + 1) & 0xFFFF
            return RtpCheck.BAD_SEQUENCE
        # else: a duplicate or reordered packet; counted as received.
        self.received += 1
        return RtpCheck.VALID

    def update(self, packet: RtpPacket, arrival: float) -> RtpCheck:
        """Account for ``packet`` that arrived at ``arrival`` seconds; returns what it showed."""
        check = RtpCheck.NONE
        if packet.ssrc != self.ssrc:
            self._reset(packet)
            check |= RtpCheck.NEW_SOURCE
        if packet.marker:
            check |= RtpCheck.MARKER
        seq_check = self._update_seq(packet.sequence_number)
        check |= seq_check
        if RtpCheck.VALID in seq_check and self._update_jitter(packet, arrival, check):
            check |= RtpCheck.TIMESTAMP_JUMP
        return check

    def _update_jitter(self, packet: RtpPacket, arrival: float, check: RtpCheck) -> bool:
        """RFC 3550 Appendix A.8: J += (|D(i-1,i)| - J) / 16, in timestamp units; True on a timestamp jump."""
        jumped = False
        arrival_units = int(round(arrival * self.clock_rate))
        if self._transit is not None and RtpCheck.RESTARTED not in check:
            elapsed = (arrival - self._last_arrival) * self.clock_rate
            drift = timestamp_diff(packet.timestamp, self._last_timestamp) - elapsed
            if abs(drift) > self.max_timestamp_jump * self.clock_rate:
                # The sender's timeline moved (new media source, bad implementation): restart the
                # transit reference instead of feeding the jump into the jitter estimate.
                self.timestamp_jumps += 1
                jumped = True
                self._transit = None
        transit = (arrival_units - packet.timestamp) & 0xFFFFFFFF
        if self._transit is not None:
            d = abs(((transit - self._transit + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
            self.jitter += (d - self.jitter) / 16.0
        self._transit = transit
        self._last_timestamp = packet.timestamp
        self._last_arrival = arrival
        return jumped

    # -- RFC 3550 Appendix A.3 -------------------------------------------------------------------------

    @property
    def extended_max_seq(self) -> int:
        """Extended highest sequence number received: cycles plus max_seq (RFC 3550 §6.4.1)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected since the source was validated (RFC 3550 Appendix A.3)."""
        if self.ssrc is None or self.probation:
            return 0
        return self.extended_max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost; negative with duplicates (RFC 3550 §6.4.1), clamped to 24 bits signed."""
        return max(-0x800000, min(0x7FFFFF, self.expected - self.received))

    def fraction_lost(self) -> int:
        """Fraction lost since the previous call, 8-bit fixed point (RFC 3550 A.3); starts a new interval."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            return 0
        return (lost_interval << 8) // expected_interval
