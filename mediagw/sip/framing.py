"""Content-Length framing of SIP over stream transports (RFC 3261 §18.3), sans-I/O.

Theory of operation
-------------------
Bytes arrive in arbitrary pieces. The framer keeps one buffer and, for each message, first finds the
CRLFCRLF that ends the headers (scanning only the new bytes each time, so feeding one byte at a time stays
linear), then reads Content-Length from the header block and waits until the whole body is there.

* CRLF before a start line is ignored (RFC 3261 §7.5); a CRLFCRLF "ping" between messages is returned as
  the item ``b"\\r\\n\\r\\n"`` and should be answered with a single CRLF "pong" (RFC 5626 §4.4.1).
* A message (headers + body) larger than ``max_message_size`` raises :class:`SipMessageTooLarge` (513), as
  does a header block that grows past the limit without ending.
* Content-Length is mandatory on streams (RFC 3261 §20.14); missing, malformed or conflicting values raise
  :class:`SipProtocolError` (400). Either error leaves the stream unframeable: the transport answers when
  it can (``.partial``) and closes the connection; further ``feed`` calls raise again.
"""
from __future__ import annotations

from mediagw.errors import SipMessageTooLarge, SipProtocolError
from mediagw.sip.message import MAX_MESSAGE_SIZE, SipRequest, parse_message

__all__ = ["KEEPALIVE_PING", "KEEPALIVE_PONG", "StreamFramer"]

KEEPALIVE_PING = b"\r\n\r\n"  # RFC 5626 §4.4.1 double-CRLF keep-alive
KEEPALIVE_PONG = b"\r\n"  # RFC 5626 §4.4.1 answer


def _partial_from_head(head: bytes) -> SipRequest | None:
    """Best-effort request from a header block, to answer 400/513 before closing."""
    try:
        message = parse_message(head + b"\r\n\r\n", datagram=True, max_size=len(head) + 4)
    except SipProtocolError as exc:
        partial: SipRequest | None = getattr(exc, "partial", None)
        return partial
    return message if isinstance(message, SipRequest) else None


def _stream_error(message: str, head: bytes | None, too_large: bool = False) -> SipProtocolError:
    err = SipMessageTooLarge(message) if too_large else SipProtocolError(message)
    err.partial = _partial_from_head(head) if head is not None else None  # type: ignore[attr-defined]
    return err


def _content_length_of(head: bytes) -> int:
    """Content-Length (or ``l``) from a header block; folded lines handled (RFC 3261 §7.3.1, §20.14)."""
    lines = head.split(b"\r\n")
    values: set[int] = set()
    i, n = 1, len(lines)
    while i < n:
        line = lines[i]
        i += 1
        while i < n and lines[i][:1] in (b" ", b"\t"):
            line += lines[i]
            i += 1
        colon = line.find(b":")
        if colon <= 0:
            continue
        name = line[:colon].rstrip(b" \t").lower()
        if name not in (b"content-length", b"l"):
            continue
        value = line[colon + 1:].strip(b" \t")
        if not value.isdigit() or len(value) > 10:
            raise _stream_error(f"malformed Content-Length {value[:20]!r}", head)
        values.add(int(value))
    if not values:
        raise _stream_error("missing Content-Length on a stream transport", head)
    if len(values) > 1:
        raise _stream_error("conflicting Content-Length values", head)
    return values.pop()


class StreamFramer:
    """Cuts a TCP/TLS byte stream into complete SIP messages by Content-Length (RFC 3261 §18.3)."""

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the current head already searched for CRLFCRLF
        self._head_len: int | None = None  # header block length incl. CRLFCRLF, once found
        self._total: int | None = None  # whole message length, once Content-Length is known
        self._failed: SipProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete messages (and keep-alive pings) now available."""
        if self._failed is not None:
            raise self._failed
        self._buffer += data
        out: list[bytes] = []
        try:
            while self._next(out):
                pass
        except SipProtocolError as exc:
            self._failed = exc
            raise
        return out

    def _next(self, out: list[bytes]) -> bool:
        buf = self._buffer
        if self._head_len is None:
            # RFC 3261 §7.5 / RFC 5626 §4.4.1: leading CRLFs are pings or noise, never part of a message
            while buf[:2] == b"\r\n":
                if buf[:4] == KEEPALIVE_PING:
                    del buf[:4]
                    out.append(KEEPALIVE_PING)
                elif len(buf) < 4 and (len(buf) == 2 or buf[2:3] == b"\r"):
                    return False  # might still become a ping
                else:
                    del buf[:2]
                self._scanned = 0
            if buf[:1] == b"\r" and len(buf) == 1:
                return False
            if not buf:
                return False
            end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
            if end < 0:
                self._scanned = len(buf)
                if len(buf) > self.max_message_size:
                    raise _stream_error(f"header block exceeds {self.max_message_size} octets", None, True)
                return False
            self._head_len = end + 4
            head = bytes(buf[:end])
            length = _content_length_of(head)
            self._total = self._head_len + length
            if self._total > self.max_message_size:
                raise _stream_error(f"message of {self._total} octets exceeds {self.max_message_size}",
                                    head, True)
        assert self._total is not None
        if len(buf) < self._total:
            return False
        out.append(bytes(buf[:self._total]))
        del buf[:self._total]
        self._head_len = None
        self._total = None
        self._scanned = 0
        return True
