"""The HTTP control API over an in-memory control plane: auth, permissions, errors, events."""
from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from mediagw.api.app import INTERNAL_ERROR_MESSAGE, create_app
from mediagw.api.auth import ApiToken
from mediagw.api.control import (
    AgentView,
    CallView,
    Conflict,
    ContactView,
    ControlPlane,
    MonitorView,
    NotFound,
    QueueView,
    RecordingChunkView,
    RecordingState,
    RecordingView,
)
from mediagw.api.events import CLOSE_SLOW_CONSUMER, EventBus
from mediagw.router.core import AgentState, IllegalTransition

ADMIN = "admin-token-0123456789abcdef"
SUPERVISOR = "supervisor-token-0123456789"
OTHER_SUPERVISOR = "other-supervisor-token-0123"
AGENT = "agent-token-0123456789abcdef"
LISTENER = "listen-only-token-0123456789"
WRONG = "not-a-configured-token-999999"

TOKENS = (
    ApiToken("ops", ADMIN, "admin"),
    ApiToken("sup1", SUPERVISOR, "supervisor", supervisor_id="sup1"),
    ApiToken("sup2", OTHER_SUPERVISOR, "supervisor", supervisor_id="sup2"),
    ApiToken("desk", AGENT, "agent"),
    ApiToken("trainee", LISTENER, "supervisor", supervisor_id="sup3", permissions=("read", "monitor")),
)
SECRETS = (ADMIN, SUPERVISOR, OTHER_SUPERVISOR, AGENT, LISTENER, WRONG)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class MemoryControlPlane:
    """A small in-memory ``ControlPlane``: two calls, three agents, one queue, one recording."""

    def __init__(self, bus: EventBus | None = None, chunk_dir: Path | None = None) -> None:
        self.bus = bus
        self.chunk_dir = chunk_dir
        self.ids = itertools.count(1)
        self.calls: dict[str, dict[str, Any]] = {
            "c1": {"state": "connected", "queue": "sales", "agent": "a1", "caller": "+15550001", "recording": "recording"},
            "c2": {"state": "queued", "queue": "sales", "agent": None, "caller": "+15550002", "recording": "off"},
        }
        self.monitors: dict[str, dict[str, MonitorView]] = {"c1": {}, "c2": {}}
        self.agents: dict[str, AgentState] = {
            "a1": AgentState.ON_CALL,
            "a2": AgentState.AVAILABLE,
            "a3": AgentState.MISSED,
        }
        self.contacts: dict[str, ContactView] = {}
        self.actions: list[tuple[str, ...]] = []
        self.fail_next = False
        self.burst = 1
        """How many copies of each event to publish (a burst overflows a slow subscriber)."""

    def _publish(self, event: dict[str, Any]) -> None:
        if self.bus is not None:
            for _ in range(self.burst):
                self.bus.publish(event)

    def _call(self, call_id: str) -> dict[str, Any]:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("boom: the media core is on fire")
        if call_id not in self.calls:
            raise NotFound(f"no call {call_id!r}")
        return self.calls[call_id]

    def _view(self, call_id: str) -> CallView:
        call = self.calls[call_id]
        return CallView(
            id=call_id,
            state=call["state"],
            queue=call["queue"],
            agent=call["agent"],
            caller=call["caller"],
            number="8000",
            flags=["vip"] if call_id == "c1" else [],
            wait_seconds=12.5,
            talk_seconds=30.0 if call["state"] == "connected" else 0.0,
            monitors=list(self.monitors[call_id].values()),
            recording=call["recording"],
        )

    async def list_calls(self) -> list[CallView]:
        return [self._view(call_id) for call_id in self.calls]

    async def get_call(self, call_id: str) -> CallView:
        self._call(call_id)
        return self._view(call_id)

    async def get_contact(self, contact_id: str) -> ContactView:
        if contact_id in self.contacts:
            return self.contacts[contact_id]
        if contact_id not in self.calls:
            raise NotFound(f"no contact {contact_id!r}")
        call = self.calls[contact_id]
        return ContactView(
            id=contact_id,
            channel="voice",
            initiation="inbound",
            initiated_at=1_700_000_000.0,
            enqueued_at=1_700_000_001.0,
            queue=call["queue"],
            agent=call["agent"],
            attributes={"account": "42"},
        )

    async def start_monitor(self, call_id: str, supervisor_id: str, mode: Any, actor: str) -> MonitorView:
        call = self._call(call_id)
        if call["state"] != "connected":
            raise Conflict(f"call {call_id!r} is {call['state']}, not connected")
        if supervisor_id not in ("sup1", "sup2", "sup3"):
            raise NotFound(f"no supervisor {supervisor_id!r}")
        if any(m.supervisor_id == supervisor_id for m in self.monitors[call_id].values()):
            raise Conflict(f"supervisor {supervisor_id!r} already monitors call {call_id!r}")
        monitor = MonitorView(
            monitor_id=f"m{next(self.ids)}", supervisor_id=supervisor_id, mode=mode, started_at=1_700_000_100.0
        )
        self.monitors[call_id][monitor.monitor_id] = monitor
        self.actions.append(("start_monitor", call_id, supervisor_id, mode, actor))
        self._publish({"type": "monitor.started", "call_id": call_id, "monitor_id": monitor.monitor_id})
        return monitor

    def _monitor(self, call_id: str, monitor_id: str) -> MonitorView:
        self._call(call_id)
        if monitor_id not in self.monitors[call_id]:
            raise NotFound(f"no monitor {monitor_id!r} on call {call_id!r}")
        return self.monitors[call_id][monitor_id]

    async def change_monitor(self, call_id: str, monitor_id: str, mode: Any, actor: str) -> MonitorView:
        monitor = self._monitor(call_id, monitor_id).model_copy(update={"mode": mode})
        self.monitors[call_id][monitor_id] = monitor
        self.actions.append(("change_monitor", call_id, monitor_id, mode, actor))
        return monitor

    async def stop_monitor(self, call_id: str, monitor_id: str, actor: str) -> None:
        self._monitor(call_id, monitor_id)
        del self.monitors[call_id][monitor_id]
        self.actions.append(("stop_monitor", call_id, monitor_id, actor))

    async def end_call(self, call_id: str, actor: str) -> str:
        call = self._call(call_id)
        del self.calls[call_id]
        del self.monitors[call_id]
        self.contacts[call_id] = ContactView(
            id=call_id,
            channel="voice",
            initiation="inbound",
            initiated_at=1_700_000_000.0,
            disconnected_at=1_700_000_200.0,
            queue=call["queue"],
            agent=call["agent"],
            disconnect_reason="ended by supervisor",
        )
        self.actions.append(("end_call", call_id, actor))
        self._publish({"type": "call.ended", "call_id": call_id, "reason": "ended by supervisor"})
        return "ended by supervisor"

    def _agent_view(self, agent_id: str) -> AgentView:
        return AgentView(
            id=agent_id,
            name=agent_id.upper(),
            state=self.agents[agent_id].value,  # type: ignore[arg-type]
            state_since=1_700_000_000.0,
            current_call="c1" if agent_id == "a1" else None,
        )

    async def list_agents(self) -> list[AgentView]:
        return [self._agent_view(agent_id) for agent_id in self.agents]

    async def set_agent_state(self, agent_id: str, state: Any, actor: str) -> AgentView:
        if agent_id not in self.agents:
            raise NotFound(f"no agent {agent_id!r}")
        if self.agents[agent_id] is AgentState.ON_CALL:
            raise IllegalTransition("agent", agent_id, self.agents[agent_id], f"set_{state}")
        self.agents[agent_id] = AgentState(state)
        self.actions.append(("set_agent_state", agent_id, state, actor))
        self._publish({"type": "agent.state_changed", "agent_id": agent_id, "state": state})
        return self._agent_view(agent_id)

    async def clear_rona(self, agent_id: str, actor: str) -> AgentView:
        if agent_id not in self.agents:
            raise NotFound(f"no agent {agent_id!r}")
        if self.agents[agent_id] is not AgentState.MISSED:
            raise Conflict(f"agent {agent_id!r} is not in RONA")
        self.agents[agent_id] = AgentState.AVAILABLE
        self.actions.append(("clear_rona", agent_id, actor))
        return self._agent_view(agent_id)

    async def list_queues(self) -> list[QueueView]:
        waiting = sum(1 for call in self.calls.values() if call["state"] == "queued")
        return [
            QueueView(
                id="sales",
                name="Sales",
                waiting=waiting,
                oldest_wait_seconds=12.5 if waiting else 0.0,
                agents_available=sum(1 for s in self.agents.values() if s is AgentState.AVAILABLE),
                agents_on_call=sum(1 for s in self.agents.values() if s is AgentState.ON_CALL),
                agents_in_acw=0,
                open_now=True,
            )
        ]

    async def list_recordings(self, contact_id: str) -> list[RecordingView]:
        if contact_id not in self.calls and contact_id not in self.contacts:
            raise NotFound(f"no contact {contact_id!r}")
        if contact_id != "c1":
            return []
        return [
            RecordingView(
                id="r1",
                contact_id="c1",
                state="recording",
                media_type="audio/wav",
                started_at=1_700_000_050.0,
                duration_seconds=2.0,
                export_state="pending",
                chunks=[
                    RecordingChunkView(
                        index=0, size=44, duration_seconds=1.0, sha256="0" * 64, local=True, export_state="pending"
                    ),
                    RecordingChunkView(
                        index=1, size=44, duration_seconds=1.0, sha256="1" * 64, local=False, export_state="exported"
                    ),
                ],
            )
        ]

    async def read_chunk(self, recording_id: str, index: int) -> Path:
        if recording_id != "r1" or index not in (0, 1) or self.chunk_dir is None:
            raise NotFound(f"no chunk {index} of recording {recording_id!r}")
        return self.chunk_dir / f"r1-{index:05d}.wav"

    async def pause_recording(self, call_id: str, actor: str) -> RecordingState:
        call = self._call(call_id)
        if call["recording"] != "recording":
            raise Conflict(f"the recording of call {call_id!r} is {call['recording']}")
        call["recording"] = "paused"
        self.actions.append(("pause_recording", call_id, actor))
        return "paused"

    async def resume_recording(self, call_id: str, actor: str) -> RecordingState:
        call = self._call(call_id)
        if call["recording"] != "paused":
            raise Conflict(f"the recording of call {call_id!r} is {call['recording']}, not paused")
        call["recording"] = "recording"
        self.actions.append(("resume_recording", call_id, actor))
        return "recording"


@pytest.fixture
def chunk_dir(tmp_path: Path) -> Path:
    (tmp_path / "r1-00000.wav").write_bytes(b"RIFF" + b"\0" * 40)
    return tmp_path


@pytest.fixture
def bus() -> EventBus:
    return EventBus(max_queue=16)


@pytest.fixture
def control(bus: EventBus, chunk_dir: Path) -> MemoryControlPlane:
    return MemoryControlPlane(bus, chunk_dir)


@pytest.fixture
async def client(control: MemoryControlPlane, bus: EventBus) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(control, TOKENS, bus=bus)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


def assert_error(response: httpx.Response, status: int, contains: str = "") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"status", "message"}
    assert body["error"]["status"] == status
    message: str = body["error"]["message"]
    assert message
    assert contains in message
    return message


def test_memory_control_plane_implements_the_protocol(control: MemoryControlPlane) -> None:
    assert isinstance(control, ControlPlane)


# ------------------------------------------------------------------------------------------------ 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/calls"),
        ("GET", "/api/v1/calls/c1"),
        ("POST", "/api/v1/calls/c1/end"),
        ("GET", "/api/v1/agents"),
        ("GET", "/api/v1/queues"),
        ("GET", "/api/v1/contacts/c1/recordings"),
        ("GET", "/api/v1/recordings/r1/chunks/0"),
    ],
)
async def test_no_token_is_401(client: httpx.AsyncClient, control: MemoryControlPlane, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert_error(response, 401, "missing bearer token")
    assert response.headers["www-authenticate"] == "Bearer"
    assert control.actions == []
    assert "c1" in control.calls


async def test_wrong_token_is_401(client: httpx.AsyncClient, control: MemoryControlPlane) -> None:
    response = await client.post("/api/v1/calls/c1/end", headers=bearer(WRONG))
    assert_error(response, 401, "invalid bearer token")
    assert "invalid_token" in response.headers["www-authenticate"]
    assert "c1" in control.calls


@pytest.mark.parametrize("header", [f"Basic {ADMIN}", ADMIN, "Bearer", "Bearer ", f"Token {ADMIN}"])
async def test_malformed_authorization_is_401(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/api/v1/calls", headers={"Authorization": header})
    assert_error(response, 401)


async def test_401_comes_before_validation(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/calls/c1/monitors", json={"mode": "shout"})
    assert_error(response, 401)


# ------------------------------------------------------------------------------------------------ 403


async def test_agent_cannot_end_a_call_and_nothing_changes(client: httpx.AsyncClient, control: MemoryControlPlane) -> None:
    before = await client.get("/api/v1/calls", headers=bearer(AGENT))
    assert before.status_code == 200
    response = await client.post("/api/v1/calls/c1/end", headers=bearer(AGENT))
    assert_error(response, 403, "'end_calls'")
    assert control.actions == []
    after = await client.get("/api/v1/calls", headers=bearer(AGENT))
    assert after.json() == before.json()


async def test_agent_cannot_manage_agents(client: httpx.AsyncClient, control: MemoryControlPlane) -> None:
    response = await client.post("/api/v1/agents/a2/state", headers=bearer(AGENT), json={"state": "offline"})
    assert_error(response, 403, "'manage_agents'")
    response = await client.post("/api/v1/agents/a3/clear-rona", headers=bearer(SUPERVISOR))
    assert_error(response, 403, "'manage_agents'")
    assert control.agents["a2"] is AgentState.AVAILABLE
    assert control.agents["a3"] is AgentState.MISSED
    assert control.actions == []


async def test_listen_only_token_cannot_barge_or_coach(client: httpx.AsyncClient, control: MemoryControlPlane) -> None:
    for mode in ("barge", "coach"):
        response = await client.post(
            "/api/v1/calls/c1/monitors", headers=bearer(LISTENER), json={"supervisor_id": "sup3", "mode": mode}
        )
        assert_error(response, 403, f"'{mode}'")
    assert control.monitors["c1"] == {}
    response = await client.post(
        "/api/v1/calls/c1/monitors", headers=bearer(LISTENER), json={"supervisor_id": "sup3", "mode": "listen"}
    )
    assert response.status_code == 201
    monitor_id = response.json()["monitor_id"]
    response = await client.patch(
        f"/api/v1/calls/c1/monitors/{monitor_id}", headers=bearer(LISTENER), json={"mode": "barge"}
    )
    assert_error(response, 403, "'barge'")
    assert control.monitors["c1"][monitor_id].mode == "listen"


async def test_supervisor_monitors_only_as_itself(client: httpx.AsyncClient, control: MemoryControlPlane) -> None:
    response = await client.post(
        "/api/v1/calls/c1/monitors", headers=bearer(SUPERVISOR), json={"supervisor_id": "sup2", "mode": "listen"}
    )
    assert_error(response, 403, "'sup1'")
    assert control.monitors["c1"] == {}
    # an admin may start a monitor for any supervisor
    response = await client.post(
        "/api/v1/calls/c1/monitors", headers=bearer(ADMIN), json={"supervisor_id": "sup2", "mode": "listen"}
    )
    assert response.status_code == 201
    monitor_id = response.json()["monitor_id"]
    # sup1 may neither change nor stop sup2's monitor
    response = await client.patch(
        f"/api/v1/calls/c1/monitors/{monitor_id}", headers=bearer(SUPERVISOR), json={"mode": "barge"}
    )
    assert_error(response, 403)
    response = await client.delete(f"/api/v1/calls/c1/monitors/{monitor_id}", headers=bearer(SUPERVISOR))
    assert_error(response, 403)
    assert control.monitors["c1"][monitor_id].mode == "listen"


async def test_agent_cannot_read_recordings_or_pause_them(client: httpx.AsyncClient, control: MemoryControlPlane) -> None:
    assert_error(await client.get("/api/v1/contacts/c1/recordings", headers=bearer(AGENT)), 403, "'recordings'")
    assert_error(await client.get("/api/v1/recordings/r1/chunks/0", headers=bearer(SUPERVISOR)), 403, "'recordings'")
    assert_error(await client.post("/api/v1/calls/c1/recording/pause", headers=bearer(SUPERVISOR)), 403, "'redact'")
    assert control.calls["c1"]["recording"] == "recording"


# ------------------------------------------------------------------------------------------- happy paths


async def test_list_calls_agents_queues(client: httpx.AsyncClient) -> None:
    calls = (await client.get("/api/v1/calls", headers=bearer(AGENT))).json()
    assert [call["id"] for call in calls] == ["c1", "c2"]
    assert calls[0]["state"] == "connected" and calls[0]["agent"] == "a1" and calls[0]["flags"] == ["vip"]
    assert calls[1]["state"] == "queued" and calls[1]["wait_seconds"] == 12.5
    agents = (await client.get("/api/v1/agents", headers=bearer(AGENT))).json()
    assert {agent["id"]: agent["state"] for agent in agents} == {"a1": "on_call", "a2": "available", "a3": "missed"}
    queues = (await client.get("/api/v1/queues", headers=bearer(AGENT))).json()
    assert queues == [
        {
            "id": "sales",
            "name": "Sales",
            "waiting": 1,
            "oldest_wait_seconds": 12.5,
            "agents_available": 1,
            "agents_on_call": 1,
            "agents_in_acw": 0,
            "open_now": True,
        }
    ]


async def test_monitor_lifecycle(client: httpx.AsyncClient, control: MemoryControlPlane) -> None:
    response = await client.post(
        "/api/v1/calls/c1/monitors", headers=bearer(SUPERVISOR), json={"supervisor_id": "sup1", "mode": "coach"}
    )
    assert response.status_code == 201
    monitor = response.json()
    assert monitor["supervisor_id"] == "sup1" and monitor["mode"] == "coach"
    call = (await client.get("/api/v1/calls/c1", headers=bearer(SUPERVISOR))).json()
    assert call["monitors"] == [monitor]
    path = f"/api/v1/calls/c1/monitors/{monitor['monitor_id']}"
    response = await client.patch(path, headers=bearer(SUPERVISOR), json={"mode": "barge"})
    assert response.status_code == 200 and response.json()["mode"] == "barge"
    response = await client.delete(path, headers=bearer(SUPERVISOR))
    assert response.status_code == 204 and response.content == b""
    assert control.monitors["c1"] == {}
    assert [action[0] for action in control.actions] == ["start_monitor", "change_monitor", "stop_monitor"]
    assert all(action[-1] == "api:sup1" for action in control.actions)


async def test_end_call(client: httpx.AsyncClient, control: MemoryControlPlane) -> None:
    response = await client.post("/api/v1/calls/c1/end", headers=bearer(SUPERVISOR))
    assert response.status_code == 200
    assert response.json() == {"call_id": "c1", "disconnect_reason": "ended by supervisor"}
    assert control.actions == [("end_call", "c1", "api:sup1")]
    assert_error(await client.get("/api/v1/calls/c1", headers=bearer(SUPERVISOR)), 404, "no call 'c1'")
    contact = (await client.get("/api/v1/contacts/c1", headers=bearer(AGENT))).json()
    assert contact["disconnect_reason"] == "ended by supervisor"


async def test_manage_agents(client: httpx.AsyncClient, control: MemoryControlPlane) -> None:
    response = await client.post("/api/v1/agents/a2/state", headers=bearer(ADMIN), json={"state": "offline"})
    assert response.status_code == 200 and response.json()["state"] == "offline"
    response = await client.post("/api/v1/agents/a3/clear-rona", headers=bearer(ADMIN))
    assert response.status_code == 200 and response.json()["state"] == "available"
    assert control.agents["a2"] is AgentState.OFFLINE


async def test_recordings_and_chunks(client: httpx.AsyncClient) -> None:
    recordings = (await client.get("/api/v1/contacts/c1/recordings", headers=bearer(ADMIN))).json()
    assert [chunk["index"] for chunk in recordings[0]["chunks"]] == [0, 1]
    response = await client.get("/api/v1/recordings/r1/chunks/0", headers=bearer(ADMIN))
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.content.startswith(b"RIFF")
    # chunk 1 was exported and deleted locally
    assert_error(await client.get("/api/v1/recordings/r1/chunks/1", headers=bearer(ADMIN)), 404, "no longer stored")
    assert_error(await client.get("/api/v1/recordings/r9/chunks/0", headers=bearer(ADMIN)), 404)
    assert (await client.get("/api/v1/contacts/c2/recordings", headers=bearer(ADMIN))).json() == []


async def test_pause_and_resume_recording(client: httpx.AsyncClient, control: MemoryControlPlane) -> None:
    response = await client.post("/api/v1/calls/c1/recording/pause", headers=bearer(ADMIN))
    assert response.json() == {"call_id": "c1", "recording": "paused"}
    assert_error(await client.post("/api/v1/calls/c1/recording/pause", headers=bearer(ADMIN)), 409, "paused")
    response = await client.post("/api/v1/calls/c1/recording/resume", headers=bearer(ADMIN))
    assert response.json() == {"call_id": "c1", "recording": "recording"}
    assert control.calls["c1"]["recording"] == "recording"


async def test_healthz_needs_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


# ---------------------------------------------------------------------------------------------- errors


async def test_404_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/calls/nope", headers=bearer(ADMIN)), 404, "no call 'nope'")
    assert_error(await client.get("/api/v1/contacts/nope", headers=bearer(ADMIN)), 404)
    assert_error(await client.get("/api/v1/nothing-here", headers=bearer(ADMIN)), 404, "no such endpoint")
    assert_error(await client.get("/"), 404)


async def test_405_json(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/v1/calls", headers=bearer(ADMIN))
    assert_error(response, 405, "PUT")
    assert "GET" in response.headers["allow"]


async def test_409_json(client: httpx.AsyncClient, control: MemoryControlPlane) -> None:
    # a queued call cannot be monitored
    response = await client.post(
        "/api/v1/calls/c2/monitors", headers=bearer(ADMIN), json={"supervisor_id": "sup1", "mode": "listen"}
    )
    assert_error(response, 409, "queued")
    # the router's IllegalTransition is a conflict too
    response = await client.post("/api/v1/agents/a1/state", headers=bearer(ADMIN), json={"state": "offline"})
    assert_error(response, 409)
    assert control.agents["a1"] is AgentState.ON_CALL


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/calls/c1/monitors", {"supervisor_id": "sup1", "mode": "shout"}),
        ("POST", "/api/v1/calls/c1/monitors", {"mode": "listen"}),
        ("POST", "/api/v1/calls/c1/monitors", {"supervisor_id": "sup1", "mode": "listen", "extra": 1}),
        ("POST", "/api/v1/calls/c1/monitors", None),
        ("PATCH", "/api/v1/calls/c1/monitors/m1", {"mode": 3}),
        ("POST", "/api/v1/agents/a2/state", {"state": "on_call"}),
        ("GET", "/api/v1/recordings/r1/chunks/-1", None),
        ("GET", "/api/v1/recordings/r1/chunks/abc", None),
    ],
)
async def test_422_json(
    client: httpx.AsyncClient, control: MemoryControlPlane, method: str, path: str, body: Any
) -> None:
    response = await client.request(method, path, headers=bearer(ADMIN), json=body)
    assert_error(response, 422, "invalid request")
    assert control.actions == []


async def test_malformed_json_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/agents/a2/state",
        headers={**bearer(ADMIN), "content-type": "application/json"},
        content=b"{not json",
    )
    assert_error(response, 422)


async def test_unexpected_error_is_generic_500_with_traceback_logged_only(
    client: httpx.AsyncClient, control: MemoryControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    control.fail_next = True
    with caplog.at_level(logging.DEBUG):
        response = await client.get("/api/v1/calls/c1", headers=bearer(ADMIN))
    message = assert_error(response, 500)
    assert message == INTERNAL_ERROR_MESSAGE
    assert "boom" not in response.text
    assert "boom: the media core is on fire" in caplog.text
    assert "Traceback" in caplog.text
    assert ADMIN not in caplog.text


async def test_tokens_never_logged(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        for token in SECRETS:
            await client.get("/api/v1/calls", headers=bearer(token))
            await client.post("/api/v1/calls/c9/end", headers=bearer(token))
            await client.post("/api/v1/calls/c1/monitors", headers=bearer(token), json={"mode": "bad"})
            await client.get(f"/api/v1/calls?token={token}", headers=bearer(token))
        await client.post("/api/v1/calls/c1/end", headers=bearer(ADMIN))
    assert "api:ops ended call c1" in caplog.text  # the audit line names the token, not the secret
    # httpx (the test's own client) logs the URLs it requests; every other logger is the server side
    server_records = [record for record in caplog.records if not record.name.startswith("httpx")]
    assert any(record.name == "mediagw.api.access" for record in server_records)
    for record in server_records:
        text = record.getMessage() + (record.exc_text or "")
        assert not any(token in text for token in SECRETS), text


# ------------------------------------------------------------------------------------------------ OpenAPI


async def test_openapi_published_with_bearer_scheme_and_error_model(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearer"]["description"],
    }
    paths = spec["paths"]
    expected = {
        ("get", "/api/v1/calls"),
        ("get", "/api/v1/calls/{call_id}"),
        ("post", "/api/v1/calls/{call_id}/monitors"),
        ("patch", "/api/v1/calls/{call_id}/monitors/{monitor_id}"),
        ("delete", "/api/v1/calls/{call_id}/monitors/{monitor_id}"),
        ("post", "/api/v1/calls/{call_id}/end"),
        ("post", "/api/v1/calls/{call_id}/recording/pause"),
        ("post", "/api/v1/calls/{call_id}/recording/resume"),
        ("get", "/api/v1/contacts/{contact_id}"),
        ("get", "/api/v1/contacts/{contact_id}/recordings"),
        ("get", "/api/v1/recordings/{recording_id}/chunks/{index}"),
        ("get", "/api/v1/agents"),
        ("post", "/api/v1/agents/{agent_id}/state"),
        ("post", "/api/v1/agents/{agent_id}/clear-rona"),
        ("get", "/api/v1/queues"),
    }
    published = {(method, path) for path, item in paths.items() for method in item}
    assert expected <= published
    for method, path in expected:
        operation = paths[path][method]
        assert operation["security"] == [{"bearer": []}]
        error = operation["responses"]["401"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorResponse"}
        if "422" in operation["responses"]:
            assert operation["responses"]["422"]["content"]["application/json"]["schema"] == error
    assert "HTTPValidationError" not in spec["components"]["schemas"]


# ----------------------------------------------------------------------------------------------- events


def test_websocket_receives_published_events(control: MemoryControlPlane, bus: EventBus) -> None:
    app = create_app(control, TOKENS, bus=bus)
    with TestClient(app) as http, http.websocket_connect(f"/api/v1/events?token={AGENT}") as ws:
        response = http.post("/api/v1/calls/c1/end", headers=bearer(ADMIN))
        assert response.status_code == 200
        event = ws.receive_json()
        assert event["type"] == "call.ended" and event["call_id"] == "c1"
        assert event["seq"] == 1 and isinstance(event["at"], float)


def test_websocket_accepts_authorization_header_and_filters_topics(
    control: MemoryControlPlane, bus: EventBus
) -> None:
    app = create_app(control, TOKENS, bus=bus)
    with (
        TestClient(app) as http,
        http.websocket_connect("/api/v1/events?topics=agent", headers=bearer(SUPERVISOR)) as ws,
    ):
        http.post("/api/v1/calls/c1/end", headers=bearer(ADMIN))  # a call event: filtered out
        http.post("/api/v1/agents/a2/state", headers=bearer(ADMIN), json={"state": "offline"})
        event = ws.receive_json()
        assert event["type"] == "agent.state_changed" and event["agent_id"] == "a2"


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ("", {}, 401),
        (f"?token={WRONG}", {}, 401),
        ("", {"Authorization": f"Basic {ADMIN}"}, 401),
        (f"?token={ADMIN}&topics=weather", {}, 400),
    ],
)
def test_websocket_refused(
    control: MemoryControlPlane, bus: EventBus, query: str, headers: dict[str, str], status: int
) -> None:
    app = create_app(control, TOKENS, bus=bus)
    with TestClient(app) as http:
        with (
            pytest.raises(WebSocketDenialResponse) as refused,
            http.websocket_connect(f"/api/v1/events{query}", headers=headers),
        ):
            pass
        assert refused.value.status_code == status
        assert refused.value.json()["error"]["status"] == status
    assert len(bus) == 0


def test_websocket_without_read_permission_is_403(control: MemoryControlPlane, bus: EventBus) -> None:
    tokens = (*TOKENS, ApiToken("barge-only", "barge-only-token-0123456789", "supervisor", "sup9", ("barge",)))
    app = create_app(control, tokens, bus=bus)
    with TestClient(app) as http:
        with (
            pytest.raises(WebSocketDenialResponse) as refused,
            http.websocket_connect("/api/v1/events?token=barge-only-token-0123456789"),
        ):
            pass
        assert refused.value.status_code == 403


def test_slow_websocket_subscriber_is_closed(control: MemoryControlPlane) -> None:
    bus = EventBus(max_queue=2)
    control.bus = bus
    app = create_app(control, TOKENS, bus=bus)
    control.burst = 5  # five events published in one go overflow a queue of two before any is sent
    with TestClient(app) as http, http.websocket_connect(f"/api/v1/events?token={ADMIN}") as ws:
        http.post("/api/v1/agents/a2/state", headers=bearer(ADMIN), json={"state": "offline"})
        message = ws.receive()
        while message["type"] != "websocket.close":
            message = ws.receive()
        assert message["code"] == CLOSE_SLOW_CONSUMER
    assert bus.dropped == 1
    assert len(bus) == 0


# ---------------------------------------------------------------------------------------------- the bus


async def test_bus_drops_slow_subscriber_without_blocking_the_publisher() -> None:
    bus = EventBus(max_queue=3)
    slow = bus.subscribe()
    fast = bus.subscribe()
    received: list[str] = []

    async def read_fast() -> None:
        while (text := await fast.get()) is not None:
            received.append(text)

    reader = asyncio.create_task(read_fast())
    for number in range(10):
        bus.publish({"type": "call.queued", "n": number})  # synchronous: can never block
        await asyncio.sleep(0)  # let the fast reader run; the slow one never reads
    assert slow.closed and slow.close_code == CLOSE_SLOW_CONSUMER
    assert await slow.get() is None
    assert bus.dropped == 1
    assert len(bus) == 1
    bus.close()
    await asyncio.wait_for(reader, 1)
    assert len(received) == 10
    assert fast.close_code == 1001


async def test_bus_topics_and_sequence() -> None:
    bus = EventBus()
    agents = bus.subscribe(["agent"])
    everything = bus.subscribe()
    assert bus.publish({"type": "call.connected"}) == 1
    assert bus.publish({"type": "agent.state_changed", "at": 5.0}) == 2
    assert '"seq":2' in (await agents.get() or "")
    assert len(agents) == 0 and len(everything) == 2
    with pytest.raises(ValueError):
        bus.subscribe(["weather"])
    with pytest.raises(ValueError):
        bus.publish({"no": "type"})
    bus.close()
    late = bus.subscribe()
    assert late.closed and await late.get() is None
