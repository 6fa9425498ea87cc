"""RTP port allocation: one socket pair per call leg from the profile's port range.

RTP goes on an even port and RTCP on the next odd one (RFC 3550 §11, RFC 3551 §8 historically; RFC 3605
lets SDP say otherwise, we keep the convention). ``allocate()`` binds both sockets, non-blocking, and
hands them out as an ``RtpPortPair``; ``release(pair)`` closes them and returns the port to the pool.
Ports are reused least-recently-released first, so that a late packet of an ended call rarely reaches the
next call on the same port. A port another process holds is skipped and retried later.
"""

from __future__ import annotations

import errno
import socket
from collections import deque
from dataclasses import dataclass

from mediagw.errors import MediagwError

RECEIVE_BUFFER = 256 * 1024  # bytes per RTP socket: several seconds of G.711 at 50 pps


class RtpPortsExhausted(MediagwError):
    """No even port of the range could be bound (every pair in use); the call is refused with 503."""

    status_code = 503
    reason = "Service Unavailable"
    http_status = 503


@dataclass(frozen=True, slots=True)
class RtpPortPair:
    """A bound RTP socket (even port) and its RTCP socket (port + 1), both non-blocking."""

    port: int
    """The RTP port (even); RTCP is ``port + 1``."""
    rtp: socket.socket
    rtcp: socket.socket
    host: str


class PortAllocator:
    """Even RTP ports in ``[port_min, port_max]`` (RTCP on the next port), bound on ``host``."""

    def __init__(self, port_min: int, port_max: int, host: str = "127.0.0.1") -> None:
        first = port_min + (port_min & 1)
        if first + 1 > port_max:
            raise ValueError(f"the range {port_min}-{port_max} holds no RTP/RTCP pair")
        self.host = host
        self.port_min = port_min
        self.port_max = port_max
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._free: deque[int] = deque(range(first, port_max, 2))  # port + 1 <= port_max
        self._used: dict[int, RtpPortPair] = {}

    @property
    def capacity(self) -> int:
        """How many pairs the range holds."""
        return len(self._free) + len(self._used)

    @property
    def in_use(self) -> int:
        """Pairs handed out and not yet released."""
        return len(self._used)

    def allocate(self) -> RtpPortPair:
        """Bind the next free pair; raises ``RtpPortsExhausted`` when every port of the range is taken."""
        for _ in range(len(self._free)):
            port = self._free.popleft()
            pair = self._bind(port)
            if pair is not None:
                self._used[port] = pair
                return pair
            self._free.append(port)  # held by someone else: try again later
        raise RtpPortsExhausted(f"no free RTP port pair in {self.port_min}-{self.port_max} on {self.host}")

    def release(self, pair: RtpPortPair) -> None:
        """Close both sockets and return the port to the pool (idempotent)."""
        pair.rtp.close()
        pair.rtcp.close()
        if self._used.pop(pair.port, None) is not None:
            self._free.append(pair.port)

    def close(self) -> None:
        """Release every pair still in use."""
        for pair in list(self._used.values()):
            self.release(pair)

    def _bind(self, port: int) -> RtpPortPair | None:
        rtp = socket.socket(self._family, socket.SOCK_DGRAM)
        rtcp = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            rtp.bind((self.host, port))
            rtcp.bind((self.host, port + 1))
        except OSError as exc:
            rtp.close()
            rtcp.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return None
            raise
        for sock in (rtp, rtcp):
            sock.setblocking(False)
        try:
            rtp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError:
            pass  # the kernel caps it at net.core.rmem_max; the default still works
        return RtpPortPair(port, rtp, rtcp, self.host)
