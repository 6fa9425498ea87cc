"""Serving the API with uvicorn inside the gateway's own event loop.

Theory of operation: ``ApiServer.start`` binds the listening socket itself (so a bind error is a plain
``OSError`` and port 0 reports the port it got), loads a ``uvicorn.Config`` for the app, runs uvicorn's
startup (lifespan, ``loop.create_server``) and leaves uvicorn's one-line housekeeping loop running as a
task. uvicorn never sees a signal: ``serve()``/``run()`` are not used, and the server subclass turns
``capture_signals``/``install_signal_handlers`` into no-ops, because the gateway owns SIGINT/SIGTERM and
calls ``ApiServer.stop`` while it drains. uvicorn's logging is left to the gateway (``log_config=None``);
its access log is off (``mediagw.api.app`` logs requests without query strings or headers) and a filter
on uvicorn's loggers redacts ``token=`` query values (WebSocket clients pass their token that way) and
Authorization header values (the websockets library logs handshake headers at DEBUG).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

from mediagw.api.auth import is_loopback_host, parse_api_address

__all__ = [
    "ApiServer",
    "RedactSecrets",
    "install_log_redaction",
    "is_loopback_host",
    "parse_api_address",
    "redact_secrets",
]

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 5.0
"""How long ``stop`` lets open requests finish before cancelling them."""

_SECRET_RE = re.compile(
    r"(?i)((?:access_)?token=)[^&\s\"']*"  # a query-string token (WebSocket clients)
    r"|(authorization:\s*)[^\r\n\"']+"  # a header line, as websockets logs them at DEBUG
    r"|(bearer\s+)[^\s\"',]+"  # a credential anywhere else
)


def redact_secrets(text: str) -> str:
    """``text`` with ``token=...`` query values, Authorization header values and ``Bearer ...`` credentials
    replaced by ``<redacted>``."""
    return _SECRET_RE.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "<redacted>", text)


class RedactSecrets(logging.Filter):
    """A logging filter that redacts tokens from a record's formatted message (never drops the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # a malformed record: leave it to the handler to report
            return True
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


_REDACTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def install_log_redaction() -> None:
    """Put ``RedactSecrets`` on uvicorn's loggers (once)."""
    for name in _REDACTED_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(existing, RedactSecrets) for existing in target.filters):
            target.addFilter(RedactSecrets())


class _EmbeddedServer(uvicorn.Server):
    """uvicorn's server with its signal handling removed: the gateway owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def install_signal_handlers(self) -> None:  # the hook of older uvicorn releases
        return None


async def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); raises OSError."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, _type, _proto, _canon, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class ApiServer:
    """The HTTP API on one address, served by uvicorn on the running loop."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        """The bound port, once started (the real one when 0 was asked for)."""
        self._server: _EmbeddedServer | None = None
        self._socket: socket.socket | None = None
        self._housekeeping: asyncio.Task[None] | None = None

    @classmethod
    def from_address(cls, app: Any, text: str) -> ApiServer:
        """An ApiServer for ``HOST:PORT``; raises ValueError for a malformed address."""
        host, port = parse_api_address(text)
        return cls(app, host, port)

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:8080``."""
        if self.port is None:
            raise RuntimeError("the API server is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def started(self) -> bool:
        """True between a successful ``start`` and ``stop``."""
        return self._server is not None

    async def start(self) -> None:
        """Bind and start serving; returns once the socket accepts connections. Raises OSError."""
        if self._server is not None:
            raise RuntimeError("the API server is already started")
        install_log_redaction()
        sock = await _bind(self.host, self.requested_port)
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.requested_port,
            log_config=None,
            access_log=False,
            lifespan="on",
            interface="asgi3",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_SECONDS),
        )
        server = _EmbeddedServer(config)
        try:
            config.load()
            server.lifespan = config.lifespan_class(config)
            await server.startup(sockets=[sock])
        except SystemExit:  # uvicorn exits the process on a failed startup; we report instead
            sock.close()
            raise OSError(f"the API failed to start on {self.host}:{self.requested_port}") from None
        except BaseException:
            sock.close()
            raise
        if server.should_exit:  # the app's lifespan startup failed
            sock.close()
            raise OSError("the API application failed its startup")
        self._server = server
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._housekeeping = asyncio.create_task(server.main_loop(), name="api-housekeeping")
        logger.info("HTTP API listening on %s", self.url)

    async def stop(self) -> None:
        """Close the event streams, stop accepting, let open requests finish (bounded), stop the app."""
        server, sock = self._server, self._socket
        if server is None:
            return
        self._server = None
        self._socket = None
        bus = getattr(getattr(self.app, "state", None), "bus", None)
        if bus is not None and hasattr(bus, "close"):
            bus.close()
        server.should_exit = True
        if self._housekeeping is not None:
            await self._housekeeping
            self._housekeeping = None
        await server.shutdown(sockets=[sock] if sock is not None else None)
        logger.info("HTTP API stopped")
