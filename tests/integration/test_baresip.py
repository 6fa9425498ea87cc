"""The gateway against a second real softphone: baresip (Debian baresip-core) in its own process.

baresip 1.0.0 (libre 1.x) answers digest MD5 only, and any WWW-Authenticate with another algorithm in
the 401 makes the whole REGISTER fail ("Register: Function not implemented", ENOSYS), whatever the order.
The default registrar offers SHA-256 and MD5, so registration tests run on a gateway whose profile sets
``[registrar] algorithms = ["MD5"]``; test_register_against_default_challenge records what happens on
the default profile (newer libre answers SHA-256 and registers there).
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.audio import has_tone, read_wav, rms, speech_energy_ratio, tone_level
from tests.integration.harness import GatewayProcess, require_program
from tests.integration.peers.baresip_peer import BaresipPeer, write_tone

pytestmark = pytest.mark.integration


def wait_for_log(gateway: GatewayProcess, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in gateway.read_log():
        assert time.monotonic() < deadline, f"{text!r} not in the gateway log:\n{gateway.read_log()[-3000:]}"
        time.sleep(0.05)


@pytest.fixture
def baresip(tmp_path: Path) -> Iterator[Callable[..., BaresipPeer]]:
    """Starts baresip peers in ``tmp_path``; stops them at teardown."""
    require_program("baresip")
    started: list[BaresipPeer] = []

    def make(name: str, **kwargs: object) -> BaresipPeer:
        peer = BaresipPeer(name, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(peer)
        return peer

    yield make
    for peer in started:
        peer.stop()


@pytest.fixture
def md5_gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    """A gateway like the ``gateway`` fixture's whose registrar challenges with MD5 only.

    Interop: baresip 1.0.0 (Debian bookworm, libre 1.x) fails the whole REGISTER ("Function not
    implemented") when a 401 carries any SHA-256 challenge, even next to an MD5 one. Deployments with such
    phones set the profile flag ``[registrar] algorithms = ["MD5"]``; the default stays SHA-256 first.
    """
    require_program("baresip")  # skip before starting a gateway nobody will talk to
    return start_gateway(overrides={"algorithms": ["MD5"]})


def bye_answered(peer: BaresipPeer) -> None:
    """The peer sent a BYE and the gateway answered it with 200 OK."""
    bye = peer.wait_for_sip(lambda m: m["first_line"].startswith("BYE "))
    call_id = re.search(r"^Call-ID: *(\S+)", bye["text"], re.MULTILINE | re.IGNORECASE)
    assert call_id is not None
    peer.wait_for_sip(lambda m: m["first_line"].startswith("SIP/2.0 200")
                      and re.search(r"^CSeq: *\d+ BYE", m["text"], re.MULTILINE | re.IGNORECASE) is not None
                      and call_id[1] in m["text"])


def test_register_as_agent2_with_digest(md5_gateway: GatewayProcess,
                                        baresip: Callable[..., BaresipPeer]) -> None:
    agent = baresip("agent2")
    aor = agent.register(md5_gateway.sip_port, "agent2", "secret-agent2")
    ok = agent.wait_for("register_ok", lambda e: e["accountaor"] == aor, timeout=10)
    assert ok["code"] == 200
    wait_for_log(md5_gateway, "registrar: agent2 registered")
    assert "secret-agent2" not in md5_gateway.read_log()
    log = agent.read_log()
    assert 'Authorization: Digest username="agent2"' in log  # it really answered a challenge


def test_register_with_wrong_password_fails(md5_gateway: GatewayProcess,
                                            baresip: Callable[..., BaresipPeer]) -> None:
    agent = baresip("agent2")
    aor = agent.register(md5_gateway.sip_port, "agent2", "not-the-password")
    failed = agent.wait_for("register_fail", lambda e: e["accountaor"] == aor, timeout=15)
    assert failed["code"] in (401, 403), failed
    agent.unregister(aor)  # baresip would otherwise retry every so often
    wait_for_log(md5_gateway, "bad-credentials")
    assert "registrar: agent2 registered" not in md5_gateway.read_log()


def test_echo_returns_the_660_hz_tone(baresip: Callable[..., BaresipPeer], gateway: GatewayProcess,
                                      tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "tone-660.wav", 660.0)
    caller = baresip("caller", tone_file=tone, record_dir=tmp_path / "rec")
    caller.dial(f"sip:9000@127.0.0.1:{gateway.sip_port}")
    caller.wait_for("call_established", timeout=10)
    time.sleep(3.0)
    caller.hangup()
    caller.wait_for("call_closed", timeout=10)
    pcm, rate = read_wav(caller.recorded("dec"))
    assert rate == 8000
    pcm = pcm[rate // 2:]  # skip the first half second (echo delay, first packets)
    assert len(pcm) > 2 * rate, f"only {len(pcm) / rate:.1f} s heard"
    assert rms(pcm) > 1000, "the echo is (nearly) silent"
    assert has_tone(pcm, 660.0, rate, threshold=0.5), "baresip does not hear its own 660 Hz tone back"
    sent, _ = read_wav(caller.recorded("enc"))
    assert has_tone(sent[rate // 2:], 660.0, rate, threshold=0.5), "the tone file was not what baresip sent"
    wait_for_log(gateway, "caller leg ended (remote-bye)")
    bye_answered(caller)


def test_call_1000_and_hang_up(baresip: Callable[..., BaresipPeer], gateway: GatewayProcess) -> None:
    caller = baresip("caller")
    caller.dial(f"sip:1000@127.0.0.1:{gateway.sip_port}")
    established = caller.wait_for("call_established", timeout=10)
    assert established["peeruri"].startswith("sip:1000@")
    time.sleep(0.5)
    caller.hangup()
    closed = caller.wait_for("call_closed", timeout=10)
    assert closed["peeruri"] == established["peeruri"]
    wait_for_log(gateway, "caller leg ended (remote-bye)")
    bye_answered(caller)
    assert "to 1000" in gateway.read_log()


def test_queue_call_rings_baresip_agent_who_answers(md5_gateway: GatewayProcess,
                                                   baresip: Callable[..., BaresipPeer],
                                                   tmp_path: Path) -> None:
    """A caller (660 Hz) dials the demo queue 2000; agent2 on baresip (440 Hz) is rung, answers, hears the
    whisper and countdown, then both are bridged and each hears the other's tone, not its own."""
    agent = baresip("agent2", tone_file=write_tone(tmp_path / "tone-440.wav", 440.0),
                    record_dir=tmp_path / "agent-rec")
    caller = baresip("caller", tone_file=write_tone(tmp_path / "tone-660.wav", 660.0),
                     record_dir=tmp_path / "caller-rec")
    aor = agent.register(md5_gateway.sip_port, "agent2", "secret-agent2")
    agent.wait_for("register_ok", lambda e: e["accountaor"] == aor, timeout=10)
    wait_for_log(md5_gateway, "agent agent2 registered: available")

    caller.dial(f"sip:2000@127.0.0.1:{md5_gateway.sip_port}")
    caller.wait_for("call_established", timeout=10)
    incoming = agent.wait_for("call_incoming", timeout=15)
    assert incoming["accountaor"] == aor
    assert incoming["peeruri"] == caller.aor
    agent.answer()
    agent.wait_for("call_established", timeout=10)
    wait_for_log(md5_gateway, "caller and agent agent2 bridged", timeout=20)  # after whisper + countdown
    time.sleep(3.0)
    caller.hangup()
    caller.wait_for("call_closed", timeout=10)
    agent.wait_for("call_closed", timeout=10)  # the gateway's BYE to the agent
    wait_for_log(md5_gateway, "caller leg ended (remote-bye)")

    bye_answered(caller)
    invite = agent.wait_for_sip(lambda m: m["first_line"].startswith("INVITE "))
    assert "X-Mediagw-Flags: unverified" in invite["text"]  # the caller profile flags reach the agent's phone
    assert agent.wait_for_sip(lambda m: m["first_line"].startswith("BYE "))["src"].endswith(
        f":{md5_gateway.sip_port}")  # the gateway ended the agent leg

    rate = 8000
    heard_by_agent, _ = read_wav(agent.recorded("dec"))
    heard_by_caller, _ = read_wav(caller.recorded("dec"))
    assert speech_energy_ratio(heard_by_agent[: 2 * rate], rate) > 0.2, "agent heard no whisper"
    agent_tail = heard_by_agent[-int(2.2 * rate): -int(0.2 * rate)]
    caller_tail = heard_by_caller[-int(2.2 * rate): -int(0.2 * rate)]
    assert has_tone(agent_tail, 660.0, rate, threshold=0.5), "agent does not hear the caller"
    assert has_tone(caller_tail, 440.0, rate, threshold=0.5), "caller does not hear the agent"
    assert tone_level(agent_tail, 440.0, rate) < 0.05, "agent hears itself"
    assert tone_level(caller_tail, 660.0, rate) < 0.05, "caller hears itself"
