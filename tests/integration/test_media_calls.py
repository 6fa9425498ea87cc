"""The media plane with real peers: echo, prompt, DTMF both ways, and RTP replayed by SIPp."""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.audio import has_tone, read_wav, speech_energy_ratio
from tests.integration.harness import GatewayProcess, PjsuaPeer
from tests.integration.test_sip_sipp import run_sipp

pytestmark = pytest.mark.integration


def recorded(peer: PjsuaPeer, call: int = 0) -> Path:
    return Path(peer.wait_for("recorded", lambda e: e["call"] == call, timeout=15)["file"])


def test_echo_number_returns_the_callers_tone(gateway: GatewayProcess, peers: Callable[..., PjsuaPeer]) -> None:
    caller = peers("caller", tone=440.0)
    caller.send(cmd="call", uri=f"sip:9000@127.0.0.1:{gateway.sip_port}")
    caller.wait_for("media_active", timeout=10)
    time.sleep(3.0)
    caller.send(cmd="hangup", call=0)
    pcm, rate = read_wav(recorded(caller))
    pcm = pcm[rate // 2 :]  # skip the first half second (jitter buffer fill, player start)
    assert len(pcm) > rate, "less than a second recorded"
    assert has_tone(pcm, 440.0, rate), "the caller does not hear its own 440 Hz tone back"


def test_prompt_number_speaks_then_hangs_up(gateway: GatewayProcess, peers: Callable[..., PjsuaPeer]) -> None:
    caller = peers("caller", record=True)
    caller.send(cmd="call", uri=f"sip:9001@127.0.0.1:{gateway.sip_port}")
    caller.wait_for("media_active", timeout=10)
    ended = caller.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=30)
    assert ended["last_status"] == 200  # the gateway's BYE, not ours
    pcm, rate = read_wav(recorded(caller))
    assert speech_energy_ratio(pcm, rate) > 0.2, "no speech in what the caller heard"


@pytest.mark.parametrize("method", ["rfc4733", "info"])
def test_dtmf_digits_are_reported(gateway: GatewayProcess, peers: Callable[..., PjsuaPeer], method: str) -> None:
    caller = peers("caller")
    caller.send(cmd="call", uri=f"sip:1000@127.0.0.1:{gateway.sip_port}")
    caller.wait_for("media_active", timeout=10)
    time.sleep(0.5)
    caller.send(cmd="dtmf", call=0, digits="1#9", method=method)
    deadline = time.monotonic() + 10
    reported: list[str] = []
    while time.monotonic() < deadline:
        reported = re.findall(r"DTMF (\S) \(\d+ ms, (\S+)\)", gateway.read_log())
        if len(reported) >= 3:
            break
        time.sleep(0.2)
    assert [digit for digit, _ in reported] == ["1", "#", "9"]
    assert {how for _, how in reported} == {method}
    caller.send(cmd="hangup", call=0)


def test_sipp_rtp_from_pcap_to_the_echo_number(gateway: GatewayProcess, tmp_path: Path) -> None:
    result = run_sipp(gateway, "uac_pcap_echo.xml", tmp_path, service="9000", timeout=40)
    messages = (tmp_path / "uac_pcap_echo.xml.msg").read_text(errors="replace")
    assert result.returncode == 0, messages[-3000:]
    log = gateway.read_log()
    assert re.search(r"DTMF 1 \(\d+ ms, rfc4733\)", log), "the digit in the pcap was not reported"


def test_hold_and_resume_reinvites_are_answered(gateway: GatewayProcess, peers: Callable[..., PjsuaPeer]) -> None:
    caller = peers("caller", tone=440.0, log_level=5)
    caller.send(cmd="call", uri=f"sip:9000@127.0.0.1:{gateway.sip_port}")
    caller.wait_for("media_active", timeout=10)
    caller.send(cmd="hold", call=0)  # re-INVITE a=sendonly: we answer recvonly and stop sending
    deadline = time.monotonic() + 10
    while "re-INVITE, we now recvonly" not in gateway.read_log():
        assert time.monotonic() < deadline, gateway.read_log()[-2000:]
        time.sleep(0.1)
    caller.send(cmd="unhold", call=0)
    while "re-INVITE, we now sendrecv" not in gateway.read_log():
        assert time.monotonic() < deadline, gateway.read_log()[-2000:]
        time.sleep(0.1)
    caller.wait_for_log("a=recvonly")  # our answer to the hold, as pjsua received it
    caller.send(cmd="hangup", call=0)
    caller.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)
