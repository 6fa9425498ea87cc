"""The HTTP API on a real socket: ApiServer inside a running loop, and schemathesis over the published OpenAPI.

The app runs with the in-memory control plane of ``tests.unit.test_api_app`` under ``ApiServer`` on
127.0.0.1 port 0, in an event loop of its own thread (as the gateway's loop would run it). schemathesis
loads ``/openapi.json`` over HTTP and sends generated requests (valid and invalid) to every operation with an
admin token; no response may be a server error.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

from mediagw.api.app import create_app
from mediagw.api.events import EventBus
from mediagw.api.server import ApiServer
from tests.unit.test_api_app import ADMIN, AGENT, TOKENS, MemoryControlPlane, bearer

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

MAX_EXAMPLES = 20
"""Examples per operation and generation mode; keeps the run well under a minute."""


KNOWN_IDS = {
    "call_id": "c1",
    "monitor_id": "m1",
    "contact_id": "c1",
    "recording_id": "r1",
    "agent_id": "a3",
    "index": 0,
}
"""Path parameters that exist in a freshly reset control plane, so generated requests also get past 404."""


class ServerThread:
    """An ApiServer serving in a uvloop event loop that runs in a background thread."""

    def __init__(self, chunk_dir: Path) -> None:
        self.chunk_dir = chunk_dir
        self.loop = uvloop.new_event_loop()  # the gateway's loop kind
        self.bus = EventBus()
        self.app = create_app(MemoryControlPlane(self.bus, chunk_dir), TOKENS, bus=self.bus)
        self.server = ApiServer(self.app, "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.loop.run_forever, name="api-loop", daemon=True)

    def call(self, coroutine: Any, timeout: float = 10.0) -> Any:
        """Run ``coroutine`` on the server's loop and wait for its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def reset(self) -> None:
        """A fresh control plane with a monitor ``m1`` on call ``c1``."""

        async def fresh() -> None:
            control = MemoryControlPlane(self.bus, self.chunk_dir)
            control.ids = itertools.count(1)
            await control.start_monitor("c1", "sup1", "listen", "test")
            control.actions.clear()
            self.app.state.control = control

        self.call(fresh())

    def start(self) -> str:
        self.thread.start()
        self.call(self.server.start())
        return self.server.url

    def stop(self) -> None:
        try:
            self.call(self.server.stop(), timeout=15.0)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    chunk_dir = tmp_path_factory.mktemp("chunks")
    (chunk_dir / "r1-00000.wav").write_bytes(b"RIFF" + b"\0" * 40)
    server = ServerThread(chunk_dir)
    server.start()
    yield server
    server.stop()


def test_served_on_a_real_socket(api_server: ServerThread) -> None:
    assert api_server.server.port not in (None, 0)
    response = httpx.get(f"{api_server.server.url}/healthz", timeout=5)
    assert response.status_code == 200
    response = httpx.get(f"{api_server.server.url}/api/v1/calls", timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["status"] == 401
    response = httpx.get(f"{api_server.server.url}/api/v1/queues", headers=bearer(AGENT), timeout=5)
    assert response.status_code == 200


def _fuzz(strategy: Any, headers: dict[str, str], statuses: Counter[int]) -> Any:
    """A hypothesis test that sends cases drawn from ``strategy`` and checks for server errors."""

    @given(data=st.data())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(data: st.DataObject) -> None:
        case = data.draw(strategy)
        response = case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=10)
        statuses[response.status_code] += 1

    return run


def test_schemathesis_finds_no_server_error(api_server: ServerThread) -> None:
    started = time.monotonic()
    api_server.reset()
    schema = schemathesis.openapi.from_url(f"{api_server.server.url}/openapi.json", timeout=10)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    headers = bearer(ADMIN)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    passes: list[tuple[str, GenerationMode, dict[str, Any] | None]] = [
        ("positive", GenerationMode.POSITIVE, None),
        ("negative", GenerationMode.NEGATIVE, None),
        ("positive, known ids", GenerationMode.POSITIVE, KNOWN_IDS),
    ]
    for operation in operations:
        names = {parameter.name for parameter in operation.path_parameters}
        for label, mode, known in passes:
            if known is not None:
                if not names:
                    continue
                api_server.reset()
                strategy = operation.as_strategy(
                    generation_mode=mode, path_parameters={name: known[name] for name in names}
                )
            else:
                strategy = operation.as_strategy(generation_mode=mode)

            run = _fuzz(strategy, headers, statuses)
            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (GET /healthz has no parameters)
                assert mode is GenerationMode.NEGATIVE
            except Exception as exc:  # noqa: BLE001 -- collect every operation's failure, report them together
                failures.append(f"{operation.label} ({label}): {exc}")
    assert not failures, "\n\n".join(failures)
    assert not any(status >= 500 for status in statuses)
    assert sum(statuses.values()) > len(operations) * MAX_EXAMPLES
    assert {200, 204, 404, 409, 422} <= set(statuses), statuses
    print("schemathesis statuses:", dict(sorted(statuses.items())))
    assert time.monotonic() - started < 60


async def test_api_server_in_the_running_loop_leaves_signals_alone(caplog: pytest.LogCaptureFixture) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    bus = EventBus()
    control = MemoryControlPlane(bus)
    server = ApiServer(create_app(control, TOKENS, bus=bus), "127.0.0.1", 0)
    with caplog.at_level(logging.DEBUG):
        await server.start()
        try:
            assert {sig: signal.getsignal(sig) for sig in before} == before
            assert server.port and server.url == f"http://127.0.0.1:{server.port}"
            # the port really is taken: a second server on it fails with OSError, not SystemExit
            with pytest.raises(OSError):
                await ApiServer(create_app(control, TOKENS), "127.0.0.1", server.port).start()
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
                response = await client.get("/api/v1/agents", headers=bearer(ADMIN))
                assert response.status_code == 200
                import websockets

                async with websockets.connect(f"ws://127.0.0.1:{server.port}/api/v1/events?token={AGENT}") as ws:
                    response = await client.post("/api/v1/calls/c1/end", headers=bearer(ADMIN))
                    assert response.status_code == 200
                    event = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    assert event["type"] == "call.ended"
                    # browsers cannot, but other clients may send the token in a header (logged by websockets)
                    async with websockets.connect(
                        f"ws://127.0.0.1:{server.port}/api/v1/events?topics=agent", additional_headers=bearer(ADMIN)
                    ) as header_ws:
                        await client.post("/api/v1/agents/a2/state", headers=bearer(ADMIN), json={"state": "offline"})
                        event = json.loads(await asyncio.wait_for(header_ws.recv(), 5))
                        assert event["type"] == "agent.state_changed"
                    # stopping the server closes the stream with "going away"
                    await server.stop()
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        while True:  # the agent event is still queued for this all-topics stream
                            await asyncio.wait_for(ws.recv(), 10)
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        finally:
            await server.stop()
    assert not server.started
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port or 1), timeout=1).close()
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert "uvicorn" in caplog.text or "HTTP API listening" in caplog.text
    # the test's own clients (httpx, websockets.client) log what they send; everything else is the server
    for record in caplog.records:
        if not record.name.startswith(("httpx", "httpcore", "websockets.client")):
            text = record.getMessage()
            assert AGENT not in text and ADMIN not in text, (record.name, text)
