"""The control API of a real gateway process: its demo center over HTTP, and schemathesis over its OpenAPI.

Unlike ``test_api_schemathesis`` (the app over an in-memory control plane), this runs ``mediagw run`` on the
shipped default profile and fuzzes the API it serves, with the real control plane behind it: the router's
agents and queue, the call manager, the contact store and the recording service. A raw-UDP caller keeps a
call to number 1000 up, so the operations on a call's id also meet a live call (and the ones that need a
monitor, a recording or a logged-in agent answer 409 rather than 404).
"""
from __future__ import annotations

import queue
import re
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.integration.conftest import GatewayFactory
from tests.integration.harness import GatewayProcess
from tests.integration.test_gateway_limits import ack, body_of, header, invite, ok_for, udp_socket

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer secret-admin-token"}
MAX_EXAMPLES = 15
"""Examples per operation and generation mode; keeps the whole run well under a minute."""


def api_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The ``{"error": {...}}`` body of an error reply, checked against ``status``."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == status and isinstance(body["error"]["message"], str), body
    error: dict[str, Any] = body["error"]
    return error


class Caller:
    """A raw-UDP SIP caller on a thread: places calls to number 1000 and answers every BYE with 200."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.sock = udp_socket()
        self.media = udp_socket()
        self.responses: queue.Queue[bytes] = queue.Queue()
        self.byes = 0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sip-caller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if data.startswith(b"SIP/2.0 "):
                self.responses.put(data)
            elif not data.startswith(b"ACK "):
                if data.startswith(b"BYE "):
                    self.byes += 1
                self.sock.sendto(ok_for(data), source)

    def call(self) -> str:
        """Place one call to 1000, answered and held; its SIP Call-ID."""
        self.count += 1
        call_id = f"api-fuzz-{self.count}"
        local_port = self.sock.getsockname()[1]
        target = ("127.0.0.1", self.gateway.sip_port)
        self.sock.sendto(invite(self.gateway.sip_port, call_id, local_port, self.media.getsockname()[1]), target)
        deadline = time.monotonic() + 5.0
        while True:
            reply = self.responses.get(timeout=max(0.01, deadline - time.monotonic()))
            if header(reply, "Call-ID") == call_id.encode() and re.match(rb"SIP/2\.0 [2-6]\d\d ", reply):
                break
        assert reply.startswith(b"SIP/2.0 200 ") and b"m=audio" in body_of(reply), reply
        to_value = header(reply, "To")
        assert to_value
        self.sock.sendto(ack(self.gateway.sip_port, call_id, local_port, to_value), target)
        return call_id

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        self.media.close()


def live_calls(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/api/v1/calls")
    assert response.status_code == 200, response.text
    calls: list[dict[str, Any]] = response.json()
    return calls


def ensure_live_call(client: httpx.Client, caller: Caller) -> str:
    """The API id of a call in progress, placing one when there is none (an earlier case may end it)."""
    calls = live_calls(client)
    if not calls:
        caller.call()
        deadline = time.monotonic() + 5.0
        while not (calls := live_calls(client)):
            assert time.monotonic() < deadline, "a call to 1000 did not show up in GET /api/v1/calls"
            time.sleep(0.05)
    return str(calls[0]["id"])


def test_api_of_a_real_gateway_serves_the_demo_center(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.api_url, timeout=5) as client:
        assert client.get("/healthz").status_code == 200

        queues = client.get("/api/v1/queues", headers=ADMIN)
        assert queues.status_code == 200, queues.text
        demo = [item for item in queues.json() if item["id"] == "demo"]
        assert demo, queues.json()
        assert demo[0]["name"] == "Demo Support" and demo[0]["waiting"] == 0 and demo[0]["open_now"] is True

        agents = client.get("/api/v1/agents", headers=ADMIN)
        assert agents.status_code == 200, agents.text
        by_id = {item["id"]: item for item in agents.json()}
        assert {"agent1", "agent2"} <= set(by_id), agents.json()
        assert by_id["agent1"]["state"] == "offline" and by_id["agent2"]["state"] == "offline", by_id
        assert by_id["agent1"]["current_call"] is None and by_id["agent2"]["current_call"] is None

        assert client.get("/api/v1/calls", headers=ADMIN).json() == []
        error = api_error(client.get("/api/v1/calls/no-such-call", headers=ADMIN), 404)
        assert "no-such-call" in error["message"]
        api_error(client.post("/api/v1/calls/no-such-call/end", headers=ADMIN), 404)
        api_error(client.post("/api/v1/agents/no-such-agent/state", headers=ADMIN, json={"state": "offline"}), 404)

        for method, path in [("GET", "/api/v1/calls"), ("GET", "/api/v1/queues"), ("GET", "/api/v1/agents"),
                             ("GET", "/api/v1/calls/no-such-call"), ("POST", "/api/v1/calls/no-such-call/end")]:
            missing = client.request(method, path)
            api_error(missing, 401)
            assert missing.headers.get("www-authenticate", "").startswith("Bearer"), missing.headers
            api_error(client.request(method, path, headers={"Authorization": "Bearer wrong-token"}), 401)
        # the demo tokens of the shipped profile are not valid here (the harness sets secret ones)
        api_error(client.get("/api/v1/queues", headers={"Authorization": "Bearer demo-admin-token"}), 401)


def _fuzz(strategy: Any, statuses: Counter[int]) -> Any:
    """A hypothesis test that sends cases drawn from ``strategy`` with the admin token, no 5xx allowed."""

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
        response = case.call_and_validate(headers=ADMIN, checks=[not_a_server_error], timeout=10)
        statuses[response.status_code] += 1

    return run


@pytest.mark.timeout(90)
def test_schemathesis_finds_no_server_error_on_a_real_gateway(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{gateway.api_url}/openapi.json", timeout=10)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [operation.label for operation in operations]
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    caller = Caller(gateway)
    client = httpx.Client(base_url=gateway.api_url, headers=ADMIN, timeout=5)
    try:
        for operation in operations:
            names = {parameter.name for parameter in operation.path_parameters}
            passes: list[tuple[str, GenerationMode, dict[str, Any] | None]] = [
                ("positive", GenerationMode.POSITIVE, None),
                ("negative", GenerationMode.NEGATIVE, None),
            ]
            if names:
                passes.append(("positive, live ids", GenerationMode.POSITIVE, {}))
            for label, mode, known in passes:
                if known is not None:
                    call_id = ensure_live_call(client, caller)
                    known = {"call_id": call_id, "contact_id": call_id, "agent_id": "agent1",
                             "monitor_id": "m1", "recording_id": "r1", "index": 0}
                    strategy = operation.as_strategy(
                        generation_mode=mode, path_parameters={name: known[name] for name in names}
                    )
                else:
                    strategy = operation.as_strategy(generation_mode=mode)
                try:
                    _fuzz(strategy, statuses)()
                except Unsatisfiable:  # nothing to make invalid (GET /healthz has no parameters)
                    assert mode is GenerationMode.NEGATIVE
                except Exception as exc:  # noqa: BLE001 -- collect every operation's failure, report them together
                    failures.append(f"{operation.label} ({label}): {exc}")
        assert not failures, "\n\n".join(failures)
        assert not any(status >= 500 for status in statuses), statuses
        assert sum(statuses.values()) > len(operations) * MAX_EXAMPLES
        # the live call was really reached: some cases were refused for its state, some were served
        assert {200, 404, 409, 422} <= set(statuses), statuses
        print("schemathesis statuses:", dict(sorted(statuses.items())), "calls placed:", caller.count)
        assert "Traceback" not in gateway.read_log(), gateway.read_log()[-5000:]
    finally:
        for call in live_calls(client):  # end our calls while the caller still answers the BYEs
            client.post(f"/api/v1/calls/{call['id']}/end")
        deadline = time.monotonic() + 5.0
        while live_calls(client) and time.monotonic() < deadline:
            time.sleep(0.05)
        client.close()
        caller.close()
    assert time.monotonic() - started < 60
