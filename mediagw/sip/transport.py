"""The asyncio adapter around the sans-I/O SIP endpoint: the only socket code in ``mediagw.sip``.

Theory of operation (the aioquic ``asyncio/protocol.py`` pattern): every datagram or stream read is fed
to the core with ``loop.time()``; then ``pump()`` sends whatever the core queued, hands its events to the
owner's callback, and re-arms one ``call_at`` timer from ``core.get_timer()``. The owner calls ``pump()``
after every command it gives the core.

UDP: one socket per listen address; responses leave from the socket the request came in on.
TCP: one server per listen address; connections are kept in a table keyed by the peer's address and
reused for requests to that peer (RFC 3261 §18.2.2, §18.1.1), opened on demand, and closed after
``idle_timeout`` seconds without traffic. Stream framing is Content-Length based (§18.3); a message over
the size limit is answered with 513 where its headers can be read, and the connection is closed.
Nothing a peer sends can raise out of this module: every handler catches, logs once, and goes on.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from mediagw.config import ListenAddress
from mediagw.errors import RemoteError
from mediagw.sip.framing import StreamFramer
from mediagw.sip.message import SipRequest, build_response, parse_message

logger = logging.getLogger(__name__)

Address = tuple[str, int]


class SansIoCore(Protocol):
    """What the transport needs from the SIP endpoint."""

    def receive_data(self, data: bytes, source: Address, transport: str, now: float, local: Address) -> None: ...

    def datagrams_to_send(self) -> list[tuple[bytes, Address, str]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> Any: ...


def error_reply(error: RemoteError) -> bytes | None:
    """The serialized reply a framing or size error implies, when the request's headers were readable."""
    partial = getattr(error, "partial", None)
    if not isinstance(partial, SipRequest) or partial.method == "ACK":
        return None
    try:
        return build_response(partial, error.status_code, error.reason).serialize()
    except RemoteError:
        return None


def too_large_reply(data: bytes, limit: int) -> bytes | None:
    """A serialized 513 for an oversize datagram whose request line and headers can be read, else None."""
    try:
        parse_message(data, max_size=limit)
    except RemoteError as exc:
        return error_reply(exc)
    except Exception:  # noqa: BLE001 - a peer's bytes must never raise out of the transport
        logger.exception("unexpected error reading an oversize message")
    return None


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport, listen: ListenAddress) -> None:
        self.owner = owner
        self.listen = listen
        self.transport: asyncio.DatagramTransport | None = None
        self.local: Address = (listen.host, listen.port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's are not subclasses
        sockname = self.transport.get_extra_info("sockname")
        self.local = (sockname[0], sockname[1])

    def datagram_received(self, data: bytes, addr: Any) -> None:
        source: Address = (addr[0], addr[1])
        self.owner._feed(data, source, "udp", self.local)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the transaction layer's timers handle the consequences.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("UDP error on %s: %s", self.local, exc)


@dataclass(eq=False)
class _TcpConnection(asyncio.Protocol):
    owner: SipTransport
    local: Address = ("", 0)
    peer: Address = ("", 0)
    transport: asyncio.Transport | None = None
    framer: StreamFramer = field(default_factory=StreamFramer)
    last_activity: float = 0.0
    pending: list[bytes] = field(default_factory=list)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        sock = self.transport.get_extra_info("sockname")
        self.peer = (peer[0], peer[1])
        self.local = (sock[0], sock[1])
        self.framer = StreamFramer(max_message_size=self.owner.max_message_size)
        self.last_activity = self.owner.loop.time()
        self.owner._connections[self.peer] = self
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.owner.loop.time()
        try:
            messages = self.framer.feed(data)
        except RemoteError as exc:
            logger.warning("closing TCP connection from %s:%s: %s", self.peer[0], self.peer[1], exc)
            reply = error_reply(exc)
            if reply is not None and self.transport is not None:
                self.transport.write(reply)
            self.close()
            return
        except Exception:  # noqa: BLE001 - a peer's bytes must never raise out of the transport
            logger.exception("framing error from %s:%s; closing", *self.peer)
            self.close()
            return
        for message in messages:
            if message == b"\r\n\r\n":  # RFC 5626 §4.4.1 keep-alive ping: answer with a pong
                if self.transport is not None:
                    self.transport.write(b"\r\n")
                continue
            self.owner._feed(message, self.peer, "tcp", self.local)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner._connections.get(self.peer) is self:
            del self.owner._connections[self.peer]

    def write(self, data: bytes) -> None:
        self.last_activity = self.owner.loop.time()
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SipTransport:
    """Binds the listen addresses, feeds the core, sends what it queues, and dispatches its events."""

    def __init__(
        self,
        core: SansIoCore,
        on_event: Callable[[Any], None],
        *,
        max_message_size: int = 65535,
        idle_timeout: float = 300.0,
    ) -> None:
        self.core = core
        self.on_event = on_event
        self.max_message_size = max_message_size
        self.idle_timeout = idle_timeout
        self.loop = asyncio.get_running_loop()
        self._udp: dict[str, _UdpProtocol] = {}
        self._udp_default: _UdpProtocol | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: dict[Address, _TcpConnection] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self.bound: list[ListenAddress] = []
        self._pumping = False
        self.after_pump: Callable[[], None] | None = None
        """Called after every pump (the gateway drains the registrar's events there)."""

    async def start(self, listen: tuple[ListenAddress, ...]) -> list[ListenAddress]:
        """Bind every listen address; returns them with the ports actually bound (port 0 resolved)."""
        for address in listen:
            if address.transport == "udp":
                _, protocol = await self.loop.create_datagram_endpoint(
                    lambda address=address: _UdpProtocol(self, address),  # type: ignore[misc]
                    local_addr=(address.host, address.port),
                )
                self._udp[protocol.local[0]] = protocol
                self._udp_default = self._udp_default or protocol
                self.bound.append(ListenAddress("udp", protocol.local[0], protocol.local[1]))
            else:
                server = await self.loop.create_server(
                    lambda: _TcpConnection(self), host=address.host, port=address.port, reuse_address=True
                )
                self._servers.append(server)
                sockname = server.sockets[0].getsockname()
                self.bound.append(ListenAddress("tcp", sockname[0], sockname[1]))
        self._idle_task = self.loop.create_task(self._close_idle_connections())
        return self.bound

    async def close(self) -> None:
        """Close every socket and connection."""
        if self._timer is not None:
            self._timer.cancel()
        if self._idle_task is not None:
            self._idle_task.cancel()
        for protocol in self._udp.values():
            if protocol.transport is not None:
                protocol.transport.close()
        for connection in list(self._connections.values()):
            connection.close()
        for server in self._servers:
            server.close()
            await server.wait_closed()

    # -- feeding the core -----------------------------------------------------------------------------

    def _feed(self, data: bytes, source: Address, transport: str, local: Address) -> None:
        if len(data) > self.max_message_size:
            logger.warning("%s message of %d bytes from %s:%s exceeds the limit", transport, len(data), *source)
            reply = too_large_reply(data, self.max_message_size)
            if reply is not None:
                self._send(reply, source, transport)
            return
        try:
            self.core.receive_data(data, source, transport, self.loop.time(), local)
        except Exception:  # noqa: BLE001 - the core answers peers itself; anything else is our bug, logged
            logger.exception("SIP core failed on a message from %s:%s; dropped", *source)
        self.pump()

    def pump(self) -> None:
        """Send what the core queued, dispatch its events, and re-arm the timer."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while True:
                for data, destination, transport in self.core.datagrams_to_send():
                    self._send(data, destination, transport)
                event = self.core.next_event()
                if event is None:
                    break
                try:
                    self.on_event(event)
                except Exception:  # noqa: BLE001 - one call's handler failing must not stop the others
                    logger.exception("event handler failed on %r", type(event).__name__)
            for data, destination, transport in self.core.datagrams_to_send():
                self._send(data, destination, transport)
        finally:
            self._pumping = False
        if self.after_pump is not None:
            try:
                self.after_pump()
            except Exception:  # noqa: BLE001
                logger.exception("after-pump hook failed")
        self._arm_timer()

    def _arm_timer(self) -> None:
        when = self.core.get_timer()
        if when == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self.loop.call_at(max(when, self.loop.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.core.handle_timer(self.loop.time())
        except Exception:  # noqa: BLE001
            logger.exception("SIP core timer handling failed")
        self.pump()

    # -- sending --------------------------------------------------------------------------------------

    def _send(self, data: bytes, destination: Address, transport: str) -> None:
        if transport == "tcp":
            connection = self._connections.get(destination)
            if connection is None:
                connection = self._connect(destination)
            connection.write(data)
            return
        protocol = self._udp_default
        if protocol is None or protocol.transport is None:
            logger.error("no UDP socket to send to %s:%s", *destination)
            return
        protocol.transport.sendto(data, destination)

    def _connect(self, destination: Address) -> _TcpConnection:
        """Open a TCP connection to a peer we have none with; data written meanwhile is queued."""
        connection = _TcpConnection(self, peer=destination)
        self._connections[destination] = connection
        logger.info("opening a TCP connection to %s:%s (none to reuse)", destination[0], destination[1])

        async def connect() -> None:
            try:
                await self.loop.create_connection(lambda: connection, destination[0], destination[1])
            except OSError as exc:
                logger.warning("TCP connection to %s:%s failed: %s", destination[0], destination[1], exc)
                if self._connections.get(destination) is connection:
                    del self._connections[destination]

        self.loop.create_task(connect())
        return connection

    async def _close_idle_connections(self) -> None:
        interval = max(1.0, min(30.0, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            deadline = self.loop.time() - self.idle_timeout
            for connection in list(self._connections.values()):
                if connection.transport is not None and connection.last_activity < deadline:
                    logger.info("closing idle TCP connection with %s:%s", *connection.peer)
                    connection.close()
