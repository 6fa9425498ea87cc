"""Supervisors end to end: listen, coach and barge by tone, through the control API, with real phones.

caller 440 Hz, agent 660 Hz, supervisor1 880 Hz, supervisor2 1100 Hz; every party records what it hears,
and each phase of the test is cut out of the recordings by wall-clock time.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.audio import has_tone, read_wav, tone_level
from tests.integration.conftest import GatewayFactory
from tests.integration.harness import PjsuaPeer
from tests.integration.test_contact_center import register, wait_for_log

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer secret-admin-token"}
VIEWER = {"Authorization": "Bearer viewer-token-0123456789"}
EXTRA = """
[[agents]]
id = "supervisor2"
password = "secret-supervisor2"
role = "supervisor"

[[api.tokens]]
name = "viewer"
token = "viewer-token-0123456789"
role = "agent"
"""
CALLER, AGENT, SUP1, SUP2 = 440.0, 660.0, 880.0, 1100.0
PHASE = 3.0  # seconds per phase; the middle two seconds are analysed


class Recording:
    """A peer's recording, addressable by wall-clock time."""

    def __init__(self, peer: PjsuaPeer, call: int = 0) -> None:
        self.start = peer.wait_for("media_active", lambda e: e["call"] == call)["t"]
        self.pcm, self.rate = read_wav(Path(peer.wait_for("recorded", lambda e: e["call"] == call, timeout=20)["file"]))

    def between(self, begin: float, end: float) -> np.ndarray:
        first = int((begin - self.start) * self.rate)
        last = int((end - self.start) * self.rate)
        assert 0 <= first < last <= len(self.pcm), f"recording does not cover {begin - self.start:.1f}s"
        return self.pcm[first:last]


def hears(pcm: np.ndarray, frequency: float) -> bool:
    return has_tone(pcm, frequency, threshold=0.03)


def silent_on(pcm: np.ndarray, frequency: float) -> bool:
    return tone_level(pcm, frequency) < 0.005


def test_listen_coach_barge_matrix_and_end_call(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    gateway = start_gateway(overrides={"announcement_interval": 0.0, "countdown": False}, extra=EXTRA)
    agent = peers("agent1", tone=AGENT, auto_answer=200, answer_delay=0.3)
    sup1 = peers("supervisor1", tone=SUP1, auto_answer=200, answer_delay=0.2)
    sup2 = peers("supervisor2", tone=SUP2, auto_answer=200, answer_delay=0.2)
    register(agent, gateway, "agent1")
    register(sup1, gateway, "supervisor1", "secret-supervisor")
    register(sup2, gateway, "supervisor2")
    wait_for_log(gateway, "agent agent1 registered: available")
    caller = peers("caller", tone=CALLER)
    caller.send(cmd="call", uri=f"sip:2000@127.0.0.1:{gateway.sip_port}")
    wait_for_log(gateway, "caller and agent agent1 bridged", timeout=25)
    api = httpx.Client(base_url=gateway.api_url, timeout=5)
    (call,) = api.get("/api/v1/calls", headers=ADMIN).json()
    call_id = call["id"]
    assert call["state"] == "connected" and call["agent"] == "agent1" and call["monitors"] == []

    # no token: 401; a token without the permission: 403, and nothing changes
    assert api.post(f"/api/v1/calls/{call_id}/monitors", json={"supervisor_id": "supervisor1", "mode": "listen"}
                    ).status_code == 401
    refused = api.post(f"/api/v1/calls/{call_id}/monitors", headers=VIEWER,
                       json={"supervisor_id": "supervisor1", "mode": "barge"})
    assert refused.status_code == 403 and "error" in refused.json()
    assert api.get(f"/api/v1/calls/{call_id}", headers=ADMIN).json()["monitors"] == []

    started = api.post(f"/api/v1/calls/{call_id}/monitors", headers=ADMIN,
                       json={"supervisor_id": "supervisor1", "mode": "listen"})
    assert started.status_code == 201, started.text
    monitor1 = started.json()["monitor_id"]
    sup1.wait_for("media_active", timeout=10)
    time.sleep(0.5)
    phases: dict[str, tuple[float, float]] = {}

    def phase(name: str) -> None:
        begin = time.time()
        time.sleep(PHASE)
        phases[name] = (begin + 0.5, begin + PHASE - 0.5)

    phase("listen")
    assert api.patch(f"/api/v1/calls/{call_id}/monitors/{monitor1}", headers=ADMIN,
                     json={"mode": "coach"}).status_code == 200
    phase("coach")
    assert api.patch(f"/api/v1/calls/{call_id}/monitors/{monitor1}", headers=ADMIN,
                     json={"mode": "barge"}).status_code == 200
    phase("barge")
    # two supervisors at once: supervisor1 back to listen, supervisor2 barges
    assert api.patch(f"/api/v1/calls/{call_id}/monitors/{monitor1}", headers=ADMIN,
                     json={"mode": "listen"}).status_code == 200
    second = api.post(f"/api/v1/calls/{call_id}/monitors", headers=ADMIN,
                      json={"supervisor_id": "supervisor2", "mode": "barge"})
    assert second.status_code == 201, second.text
    sup2.wait_for("media_active", timeout=10)
    time.sleep(0.5)
    phase("two")
    monitors = api.get(f"/api/v1/calls/{call_id}", headers=ADMIN).json()["monitors"]
    assert {(m["supervisor_id"], m["mode"]) for m in monitors} == {("supervisor1", "listen"), ("supervisor2", "barge")}

    ended = api.post(f"/api/v1/calls/{call_id}/end", headers=ADMIN)
    assert ended.status_code == 200 and ended.json()["disconnect_reason"] == "ended by supervisor"
    for peer in (caller, agent, sup1, sup2):
        peer.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)

    heard = {name: Recording(peer) for name, peer in
             (("caller", caller), ("agent", agent), ("sup1", sup1))}
    sup2_heard = Recording(sup2)

    def cut(who: str, name: str) -> np.ndarray:
        return heard[who].between(*phases[name])

    # listen: the supervisor hears caller and agent; nobody hears the supervisor
    assert hears(cut("sup1", "listen"), CALLER) and hears(cut("sup1", "listen"), AGENT)
    assert silent_on(cut("caller", "listen"), SUP1) and silent_on(cut("agent", "listen"), SUP1)
    assert hears(cut("caller", "listen"), AGENT) and hears(cut("agent", "listen"), CALLER)
    # coach: the agent hears the supervisor, the caller does not
    assert hears(cut("agent", "coach"), SUP1) and silent_on(cut("caller", "coach"), SUP1)
    assert hears(cut("sup1", "coach"), CALLER) and hears(cut("sup1", "coach"), AGENT)
    # barge: both hear the supervisor
    assert hears(cut("agent", "barge"), SUP1) and hears(cut("caller", "barge"), SUP1)
    # two supervisors: the listener is heard by nobody, the barger by both, and both hear the call
    for who in ("caller", "agent"):
        assert silent_on(cut(who, "two"), SUP1) and hears(cut(who, "two"), SUP2)
    window = sup2_heard.between(*phases["two"])
    assert hears(window, CALLER) and hears(window, AGENT)

    # the agent's phone saw no in-dialog request (no re-INVITE, no INFO) while supervisors came and went
    methods = [e["method"] for e in agent.events.events if e["event"] == "in_dialog_request"]
    assert set(methods) <= {"BYE"}, methods

    assert gateway.stop() == 0
    connection = sqlite3.connect(gateway.workdir / "data" / "mediagw.db")
    try:
        (reason,) = connection.execute("SELECT disconnect_reason FROM contacts").fetchone()
        actions = [row[0] for row in connection.execute("SELECT action FROM audit_log ORDER BY id")]
    finally:
        connection.close()
    assert reason == "ended-by-supervisor"
    assert actions.count("monitor.start") == 2 and actions.count("monitor.change") == 3
    assert "call.end" in actions


def test_supervisor_feature_code_coaches_the_agents_call(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    gateway = start_gateway(overrides={"announcement_interval": 0.0, "countdown": False})
    agent = peers("agent1", tone=AGENT, auto_answer=200, answer_delay=0.3)
    supervisor = peers("supervisor1", tone=SUP1)
    register(agent, gateway, "agent1")
    register(supervisor, gateway, "supervisor1", "secret-supervisor")
    wait_for_log(gateway, "agent agent1 registered: available")
    caller = peers("caller", tone=CALLER)
    caller.send(cmd="call", uri=f"sip:2000@127.0.0.1:{gateway.sip_port}")
    wait_for_log(gateway, "caller and agent agent1 bridged", timeout=25)
    supervisor.send(cmd="call", uri=f"sip:*2agent1@127.0.0.1:{gateway.sip_port}")  # *2 = coach
    supervisor.wait_for("media_active", timeout=10)
    wait_for_log(gateway, "joined by feature code in coach mode")
    time.sleep(0.5)
    begin = time.time()
    time.sleep(PHASE)
    window = (begin + 0.5, begin + PHASE - 0.5)
    supervisor.send(cmd="hangup", call=0)  # the supervisor leaves; the call goes on
    supervisor.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)
    time.sleep(0.5)
    api = httpx.Client(base_url=gateway.api_url, timeout=5)
    (call,) = api.get("/api/v1/calls", headers=ADMIN).json()
    assert call["state"] == "connected" and call["monitors"] == []
    caller.send(cmd="hangup", call=0)
    heard_agent = Recording(agent).between(*window)
    heard_caller = Recording(caller).between(*window)
    heard_supervisor = Recording(supervisor).between(*window)
    assert hears(heard_agent, SUP1) and silent_on(heard_caller, SUP1)
    assert hears(heard_supervisor, CALLER) and hears(heard_supervisor, AGENT)
    methods = [e["method"] for e in agent.events.events if e["event"] == "in_dialog_request"]
    assert set(methods) <= {"BYE"}, methods


def test_feature_code_needs_a_supervisor_with_the_permission(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    gateway = start_gateway()
    agent = peers("agent2", log_level=5)
    register(agent, gateway, "agent2")
    agent.send(cmd="call", uri=f"sip:*3agent1@127.0.0.1:{gateway.sip_port}")  # an agent tries to barge
    agent.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)
    agent.wait_for_log("Response msg 403/INVITE")
    wait_for_log(gateway, "feature code barge for agent1 refused to agent2")
