"""The SIP core against a real user agent: pjsua2 in its own process, on 127.0.0.1."""
from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.integration.harness import GatewayProcess, PjsuaPeer

pytestmark = pytest.mark.integration


def wait_for_log(gateway: GatewayProcess, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in gateway.read_log():
        assert time.monotonic() < deadline, f"{text!r} not in the gateway log:\n{gateway.read_log()[-3000:]}"
        time.sleep(0.05)


def registrar_uri(gateway: GatewayProcess) -> str:
    return f"sip:127.0.0.1:{gateway.sip_port}"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_with_digest_then_unregister(
    gateway: GatewayProcess, peers: Callable[..., PjsuaPeer], transport: str
) -> None:
    agent = peers("agent1")
    agent.send(cmd="register", registrar=registrar_uri(gateway), user="agent1", password="secret-agent1",
               transport=transport)
    state = agent.wait_for("reg_state", lambda e: e["code"] == 200)
    assert state["active"] is True
    agent.send(cmd="unregister")
    agent.wait_for("reg_state", lambda e: e["code"] == 200 and not e["active"])
    log = gateway.read_log()
    assert "secret-agent1" not in log


def test_register_with_wrong_password_fails(gateway: GatewayProcess, peers: Callable[..., PjsuaPeer]) -> None:
    agent = peers("agent1")
    agent.send(cmd="register", registrar=registrar_uri(gateway), user="agent1", password="wrong")
    state = agent.wait_for("reg_state", lambda e: e["code"] >= 300)
    assert state["code"] in (401, 403)
    assert state["active"] is False


def test_trunk_call_is_answered_and_hung_up(gateway: GatewayProcess, peers: Callable[..., PjsuaPeer]) -> None:
    caller = peers("caller")
    caller.send(cmd="call", uri=f"sip:1000@127.0.0.1:{gateway.sip_port}")
    caller.wait_for("call_state", lambda e: e["state"] == "CONFIRMED", timeout=10)
    caller.wait_for("media_active")
    caller.send(cmd="hangup", call=0)
    caller.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)
    wait_for_log(gateway, "caller leg ended (remote-bye)")


def test_gateway_bye_reaches_caller_on_shutdown(
    gateway: GatewayProcess, peers: Callable[..., PjsuaPeer]
) -> None:
    caller = peers("caller")
    caller.send(cmd="call", uri=f"sip:1000@127.0.0.1:{gateway.sip_port}")
    caller.wait_for("call_state", lambda e: e["state"] == "CONFIRMED", timeout=10)
    assert gateway.stop() == 0  # SIGTERM drains: BYE to the caller, then exit 0
    caller.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=5)
    assert "draining" in gateway.read_log()


def test_unknown_number_gets_404(gateway: GatewayProcess, peers: Callable[..., PjsuaPeer]) -> None:
    caller = peers("caller")
    caller.send(cmd="call", uri=f"sip:4242@127.0.0.1:{gateway.sip_port}")
    ended = caller.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)
    assert ended["last_status"] == 404


def test_cancel_before_answer_gets_487(start_gateway, peers: Callable[..., PjsuaPeer]) -> None:  # type: ignore[no-untyped-def]
    # A number that rings and is never answered, so the caller can CANCEL it.
    gateway = start_gateway(numbers='[[numbers]]\nnumber = "2999"\naction = "ring"\n')
    caller = peers("caller", log_level=5)
    caller.send(cmd="call", uri=f"sip:2999@127.0.0.1:{gateway.sip_port}")
    caller.wait_for("call_state", lambda e: e["state"] == "EARLY", timeout=10)
    caller.send(cmd="hangup", call=0)  # pjsua2 sends CANCEL for an unanswered call
    caller.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)
    caller.wait_for_log("Response msg 200/CANCEL")
    caller.wait_for_log("Response msg 487/INVITE")


def test_stranger_gets_403(start_gateway, peers: Callable[..., PjsuaPeer]) -> None:  # type: ignore[no-untyped-def]
    gateway = start_gateway(trunk_sources=("192.0.2.0/24",))
    caller = peers("caller")
    caller.send(cmd="call", uri=f"sip:1000@127.0.0.1:{gateway.sip_port}")
    ended = caller.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)
    assert ended["last_status"] == 403


def test_registered_agent_may_call(start_gateway, peers: Callable[..., PjsuaPeer]) -> None:  # type: ignore[no-untyped-def]
    gateway = start_gateway(trunk_sources=("192.0.2.0/24",))
    agent = peers("agent1")
    agent.send(cmd="register", registrar=registrar_uri(gateway), user="agent1", password="secret-agent1")
    agent.wait_for("reg_state", lambda e: e["code"] == 200)
    agent.send(cmd="call", uri=f"sip:1000@127.0.0.1:{gateway.sip_port}")
    agent.wait_for("call_state", lambda e: e["state"] == "CONFIRMED", timeout=10)
    agent.send(cmd="hangup", call=0)
    agent.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)
