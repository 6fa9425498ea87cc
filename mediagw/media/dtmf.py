"""DTMF: RFC 4733 telephone-event payloads, a receiver, a sender, and SIP INFO bodies.

Theory of operation
-------------------
An RFC 4733 event is a run of packets sharing one RTP timestamp (the event's start, §2.5.1.1), each
carrying the duration so far; the last three carry the end bit (§2.5.1.4). ``DtmfReceiver.receive`` turns
that stream into one ``DtmfReceived`` per event, whichever packets are lost or repeated: at the first end
packet, or when a packet with another timestamp arrives while an event is open (its end packets were lost),
or when ``handle_timer(now)`` finds an open event silent for ``timeout`` seconds. Times are parameters.

``DtmfSender.build`` gives the payloads, marker bits, timestamps and send offsets of one digit at 20 ms
intervals, ending with three end packets (§2.5.1.4); the RTP leg adds sequence numbers and the SSRC.

``parse_dtmf_relay`` reads SIP INFO bodies: ``application/dtmf-relay`` (``Signal=5`` / ``Duration=160``,
duration in ms) and ``application/dtmf`` (the digit alone).
"""
from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

from mediagw.errors import RtpError, SipProtocolError
from mediagw.media.rtp import RtpPacket

EVENTS = "0123456789*#ABCD"  # event codes 0..15, RFC 4733 §3.2 Table 3
CLOCK_RATE = 8000  # telephone-event/8000, RFC 4733 §2.1
PACKET_INTERVAL_MS = 20
END_REPEATS = 3  # the final packet is sent three times, RFC 4733 §2.5.1.4
DEFAULT_VOLUME = 10  # -10 dBm0, a typical DTMF power level (RFC 4733 §2.3.4 range 0..63)
DEFAULT_RELAY_DURATION_MS = 250  # SIP INFO without a Duration line
_PAYLOAD = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """One DTMF digit received (in-band RFC 4733 or SIP INFO)."""

    digit: str
    """One of 0-9 * # A-D."""
    duration_ms: int
    """How long the key was held, in milliseconds."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-octet RFC 4733 §2.3 payload."""

    event: int
    end: bool = False
    volume: int = DEFAULT_VOLUME
    """Power level below 0 dBm0, 0..63 (RFC 4733 §2.3.4)."""
    duration: int = 0
    """Duration in timestamp units (1/8000 s), 0..65535 (RFC 4733 §2.3.5)."""
    reserved: bool = False
    """The R bit: sent as zero, ignored on receipt, kept for a byte-exact round trip."""

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        """Parse a telephone-event payload; raises ``RtpError`` when it is shorter than 4 octets."""
        if len(data) < 4:
            raise RtpError("telephone-event payload length is less than 4 bytes")
        event, flags, duration = _PAYLOAD.unpack_from(data)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration, bool(flags & 0x40))

    def serialize(self) -> bytes:
        """Return the 4-octet payload."""
        flags = (0x80 if self.end else 0) | (0x40 if self.reserved else 0) | (self.volume & 0x3F)
        return _PAYLOAD.pack(self.event, flags, self.duration)

    @property
    def digit(self) -> str | None:
        """The DTMF digit, or None for other events (flash, fax tones: RFC 4734)."""
        return EVENTS[self.event] if self.event < len(EVENTS) else None


@dataclass(slots=True)
class _OpenEvent:
    ssrc: int
    timestamp: int
    digit: str
    duration: int
    last_seen: float


@dataclass(slots=True)
class DtmfReceiver:
    """Turns telephone-event packets of one SSRC into ``DtmfReceived`` events, exactly once per event."""

    timeout: float = 0.5
    """Seconds without packets after which an event with lost end packets is finished."""
    clock_rate: int = CLOCK_RATE
    _open: _OpenEvent | None = field(default=None, init=False, repr=False)
    _finished: deque[tuple[int, int]] = field(
        default_factory=lambda: deque(maxlen=8), init=False, repr=False
    )
    """(ssrc, timestamp) of recently finished events: their repeated end packets are ignored."""

    def receive(self, packet: RtpPacket, now: float) -> list[DtmfReceived]:
        """Feed one telephone-event packet; returns the digits it completed (0, 1 or 2).

        Raises ``RtpError`` when the payload is shorter than 4 octets (drop and count it).
        """
        event = TelephoneEvent.parse(packet.payload)
        digit = event.digit
        key = (packet.ssrc, packet.timestamp)
        done: list[DtmfReceived] = []
        if digit is None or key in self._finished:
            return done  # not a DTMF event, or a repeated end packet of a finished event (§2.5.1.4)
        if self._open is not None and (self._open.ssrc, self._open.timestamp) != key:
            # A new event started (same timestamp = same event, §2.5.1.1): the open one lost its end.
            done.append(self._finish())
        if self._open is None:
            self._open = _OpenEvent(packet.ssrc, packet.timestamp, digit, event.duration, now)
        else:
            self._open.duration = max(self._open.duration, event.duration)
            self._open.last_seen = now
        if event.end:
            done.append(self._finish())
        return done

    def _finish(self) -> DtmfReceived:
        assert self._open is not None
        opened = self._open
        self._open = None
        self._finished.append((opened.ssrc, opened.timestamp))
        return DtmfReceived(opened.digit, opened.duration * 1000 // self.clock_rate)

    def get_timer(self) -> float | None:
        """When ``handle_timer`` should next be called, or None with no open event."""
        return None if self._open is None else self._open.last_seen + self.timeout

    def handle_timer(self, now: float) -> list[DtmfReceived]:
        """Finish an open event that has been silent for ``timeout`` seconds (its end packets were lost)."""
        if self._open is not None and now >= self._open.last_seen + self.timeout:
            return [self._finish()]
        return []

    @property
    def pending_digit(self) -> str | None:
        """The digit of the event in progress, if any (for early barge-in of prompts)."""
        return None if self._open is None else self._open.digit


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """One telephone-event packet to send: the RTP leg adds sequence number and SSRC."""

    payload: bytes
    marker: bool
    timestamp: int
    send_offset_ms: int
    """When to send it, in ms after the first packet of the event."""


@dataclass(slots=True)
class DtmfSender:
    """Builds the RFC 4733 §2.5.1 packet sequence of one digit."""

    payload_type: int = 101
    volume: int = DEFAULT_VOLUME
    clock_rate: int = CLOCK_RATE

    def build(self, digit: str, duration_ms: int, timestamp: int) -> list[DtmfPacket]:
        """Packets for ``digit`` held ``duration_ms`` (rounded up to 20 ms), starting at RTP ``timestamp``.

        The first packet sets the marker (§2.5.1.3); every packet carries the event's start timestamp and
        the duration so far; the last is repeated three times with the end bit (§2.5.1.4), 20 ms apart.
        Raises ``ValueError`` for a character that is not a DTMF digit or a duration that does not fit.
        """
        event = _event_code(digit)
        step = self.clock_rate * PACKET_INTERVAL_MS // 1000
        total = max(1, -(-duration_ms // PACKET_INTERVAL_MS)) * step
        if total > 0xFFFF:
            raise ValueError(f"DTMF duration {duration_ms} ms exceeds one RFC 4733 event (8.19 s)")
        packets: list[DtmfPacket] = []
        offset = 0
        for duration in range(step, total, step):
            payload = TelephoneEvent(event, False, self.volume, duration).serialize()
            packets.append(DtmfPacket(payload, not packets, timestamp, offset))
            offset += PACKET_INTERVAL_MS
        end = TelephoneEvent(event, True, self.volume, total).serialize()
        for _ in range(END_REPEATS):
            packets.append(DtmfPacket(end, not packets, timestamp, offset))
            offset += PACKET_INTERVAL_MS
        return packets


def _event_code(digit: str) -> int:
    code = EVENTS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"{digit!r} is not a DTMF digit (0-9 * # A-D)")
    return code


def parse_dtmf_relay(body: str, content_type: str = "application/dtmf-relay") -> DtmfReceived:
    """Parse a SIP INFO DTMF body; raises ``SipProtocolError`` (400) when it names no valid digit.

    ``application/dtmf-relay``: lines ``Signal=5`` and ``Duration=160`` (ms), in any order and case, spaces
    allowed around ``=``. ``application/dtmf``: the digit alone (some send the event code, 10 = '*').
    """
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/dtmf":
        text = body.strip()
        if text.isdigit() and 10 <= int(text) < len(EVENTS):
            text = EVENTS[int(text)]
        return DtmfReceived(_relay_digit(text), DEFAULT_RELAY_DURATION_MS)
    if kind != "application/dtmf-relay":
        raise SipProtocolError(f"unsupported DTMF body type {content_type!r}", status_code=415)
    fields: dict[str, str] = {}
    for line in body.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    if "signal" not in fields:
        raise SipProtocolError("dtmf-relay body has no Signal line")
    duration = DEFAULT_RELAY_DURATION_MS
    if "duration" in fields:
        try:
            duration = int(fields["duration"])
        except ValueError:
            raise SipProtocolError(f"dtmf-relay Duration {fields['duration']!r} is not a number") from None
        if duration < 0:
            raise SipProtocolError(f"dtmf-relay Duration {duration} is negative")
    return DtmfReceived(_relay_digit(fields["signal"]), duration)


def _relay_digit(text: str) -> str:
    if len(text) != 1 or text.upper() not in EVENTS:
        raise SipProtocolError(f"{text!r} is not a DTMF digit")
    return text.upper()
