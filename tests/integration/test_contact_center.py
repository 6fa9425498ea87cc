"""The contact center end to end: trunk caller, queue, agents ringing, whisper and countdown, bridge.

Every party is a pjsua2 user agent in its own process with its own tone: the caller plays 440 Hz, the
agents 660 Hz. Who hears what is decided by FFT over their recordings.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.audio import has_tone, read_wav, rms, speech_energy_ratio, tone_level
from tests.integration.conftest import GatewayFactory
from tests.integration.harness import GatewayProcess, PjsuaPeer

pytestmark = pytest.mark.integration

FLAG_HEADERS = {"X-Verified-Customer": " YES ", "X-Bad-Actor": "0", "X-Repeat-Customer": "true"}
NO_ANNOUNCEMENTS = {"announcement_interval": 0.0}


def register(agent: PjsuaPeer, gateway: GatewayProcess, user: str, password: str = "") -> None:
    agent.send(cmd="register", registrar=f"sip:127.0.0.1:{gateway.sip_port}", user=user,
               password=password or f"secret-{user}")
    agent.wait_for("reg_state", lambda e: e["code"] == 200)


def wait_for_log(gateway: GatewayProcess, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in gateway.read_log():
        assert time.monotonic() < deadline, f"{text!r} not in the gateway log:\n{gateway.read_log()[-4000:]}"
        time.sleep(0.05)


def windows(pcm: np.ndarray, rate: int, seconds: float = 0.5) -> list[np.ndarray]:
    size = int(rate * seconds)
    return [pcm[i : i + size] for i in range(0, len(pcm) - size + 1, size)]


def first_window(pcm: np.ndarray, rate: int, test: Callable[[np.ndarray], bool]) -> int | None:
    for index, window in enumerate(windows(pcm, rate)):
        if test(window):
            return index
    return None


def closed_queue(queue_id: str, number: str, after_hours: str) -> str:
    """Profile text for a queue closed today (a holiday, yesterday to tomorrow) and the number reaching it."""
    today = dt.datetime.now(dt.UTC).date()
    holidays = ", ".join(f'"{today + dt.timedelta(days=d)}"' for d in (-1, 0, 1))
    return f"""
[[queues]]
id = "{queue_id}"
name = "{queue_id.title()}"

[queues.hours]
timezone = "UTC"
always_open = false
holidays = [{holidays}]
monday = ["09:00-17:00"]

[queues.after_hours]
{after_hours}

[[numbers]]
number = "{number}"
action = "queue"
queue = "{queue_id}"
"""


def contact_rows(gateway: GatewayProcess) -> list[sqlite3.Row]:
    connection = sqlite3.connect(gateway.workdir / "data" / "mediagw.db")
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute("SELECT * FROM contacts ORDER BY initiated_at").fetchall()
    finally:
        connection.close()


def test_queued_call_whisper_then_bridge_with_flags(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    gateway = start_gateway(overrides=NO_ANNOUNCEMENTS)
    agent = peers("agent1", tone=660.0, auto_answer=200, answer_delay=1.0)
    register(agent, gateway, "agent1")
    wait_for_log(gateway, "agent agent1 registered: available")
    caller = peers("caller", tone=440.0)
    caller.send(cmd="call", uri=f"sip:2000@127.0.0.1:{gateway.sip_port}", headers=FLAG_HEADERS)
    incoming = agent.wait_for("incoming_call", timeout=10)
    # the agent's INVITE carries the caller's identity and profile flags
    message = incoming["message"]
    assert "X-Mediagw-Flags:" in message
    flags_line = next(line for line in message.splitlines() if line.startswith("X-Mediagw-Flags:"))
    assert "verified" in flags_line and "repeat_customer" in flags_line and "bad_actor" not in flags_line
    assert "caller@" in next(line for line in message.splitlines() if line.lower().startswith("from:"))
    wait_for_log(gateway, "bridged", timeout=25)
    time.sleep(3.0)
    caller.send(cmd="hangup", call=0)
    agent_pcm, rate = read_wav(Path(agent.wait_for("recorded", timeout=15)["file"]))
    caller_pcm, _ = read_wav(Path(caller.wait_for("recorded", timeout=15)["file"]))

    # the agent: speech (whisper, countdown) first, then the caller's 440 Hz
    speech_at = first_window(agent_pcm, rate, lambda w: speech_energy_ratio(w, rate) > 0.3)
    tone_at = first_window(agent_pcm, rate, lambda w: has_tone(w, 440.0, rate, threshold=0.3))
    assert speech_at is not None, "the agent heard no whisper"
    assert tone_at is not None, "the agent never heard the caller"
    assert speech_at < tone_at
    # no caller audio leaks to the agent during the whisper
    assert not any(has_tone(w, 440.0, rate, threshold=0.3) for w in windows(agent_pcm, rate)[:tone_at])

    # the caller: no speech at all (the whisper is the agent's alone), then the agent's 660 Hz
    assert all(speech_energy_ratio(w, rate) < 0.3 for w in windows(caller_pcm, rate)), "the caller heard speech"
    agent_at = first_window(caller_pcm, rate, lambda w: has_tone(w, 660.0, rate, threshold=0.3))
    assert agent_at is not None, "the caller never heard the agent"
    before = windows(caller_pcm, rate)[:agent_at]
    assert before and any(rms(w) > 100 for w in before), "the caller heard nothing (no hold music) while waiting"

    assert gateway.stop() == 0
    (row,) = contact_rows(gateway)
    assert row["queue_id"] == "demo" and row["agent_id"] == "agent1"
    assert set(eval_json(row["flags"])) == {"verified", "repeat_customer"}
    assert eval_json(row["attributes"])["verified_customer"] == "true"
    assert row["disconnect_reason"] == "caller-hangup"
    assert row["connected_at"] is not None and row["enqueued_at"] is not None


def eval_json(text: str) -> object:
    import json

    return json.loads(text)


def test_unanswered_agent_goes_rona_and_the_call_reaches_the_next(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    gateway = start_gateway(overrides={**NO_ANNOUNCEMENTS, "ring_timeout": 3.0, "countdown": False})
    sleepy = peers("agent1")  # rings, never answers
    register(sleepy, gateway, "agent1")
    wait_for_log(gateway, "agent agent1 registered: available")
    time.sleep(0.2)  # agent1 has been idle longest: it is offered the call first
    awake = peers("agent2", tone=660.0, auto_answer=200, answer_delay=0.5)
    register(awake, gateway, "agent2")
    wait_for_log(gateway, "agent agent2 registered: available")
    caller = peers("caller", tone=440.0)
    caller.send(cmd="call", uri=f"sip:2000@127.0.0.1:{gateway.sip_port}")
    sleepy.wait_for("incoming_call", timeout=10)
    sleepy.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)  # CANCEL after 3 s
    wait_for_log(gateway, "agent agent1 did not answer in time (RONA)")
    awake.wait_for("incoming_call", timeout=10)
    wait_for_log(gateway, "caller and agent agent2 bridged", timeout=20)
    caller.send(cmd="hangup", call=0)
    caller.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)
    assert gateway.stop() == 0
    (row,) = contact_rows(gateway)
    assert row["agent_id"] == "agent2"


def test_after_hours_call_gets_the_message_and_a_bye(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    extra = closed_queue("closed", "2100", 'action = "message"\n'
                         'message_text = "We are closed today. Please call again tomorrow. Goodbye."')
    gateway = start_gateway(extra=extra)
    caller = peers("caller", record=True)
    caller.send(cmd="call", uri=f"sip:2100@127.0.0.1:{gateway.sip_port}")
    caller.wait_for("media_active", timeout=10)
    caller.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=30)
    wait_for_log(gateway, "queue closed is closed, deflection message")
    pcm, rate = read_wav(Path(caller.wait_for("recorded", timeout=15)["file"]))
    assert speech_energy_ratio(pcm, rate) > 0.2, "no message was played"
    assert gateway.stop() == 0
    (row,) = contact_rows(gateway)
    assert row["disconnect_reason"] == "after-hours" and row["queue_id"] == "closed"


def test_after_hours_voicemail_is_recorded_for_the_queue(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    extra = closed_queue("nightdesk", "2200", 'action = "voicemail"\n'
                         'voicemail_prompt_text = "Please leave a message after the tone."\n'
                         "voicemail_max_seconds = 3")
    gateway = start_gateway(extra=extra)
    caller = peers("caller", tone=440.0)
    caller.send(cmd="call", uri=f"sip:2200@127.0.0.1:{gateway.sip_port}")
    wait_for_log(gateway, "voicemail rec-", timeout=20)
    caller.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=20)  # the gateway ends it
    exports = gateway.workdir / "data" / "exports"
    deadline = time.monotonic() + 15
    manifest = None
    while time.monotonic() < deadline and manifest is None:
        for path in exports.glob("*/manifest.json"):
            data = json.loads(path.read_text())
            if data["state"] == "complete" and data["chunks"]:
                manifest, folder = data, path.parent
        time.sleep(0.2)
    assert manifest is not None, gateway.read_log()[-3000:]
    assert manifest["kind"] == "voicemail" and manifest["queue"] == "nightdesk"
    assert 2.0 <= manifest["duration"] <= 4.0
    pcm, rate = read_wav(folder / manifest["chunks"][0]["file_name"])
    assert has_tone(pcm, 440.0, rate), "the caller's voice (440 Hz) is not in the voicemail"
    assert gateway.stop() == 0
    (row,) = contact_rows(gateway)
    assert row["disconnect_reason"] == "after-hours" and row["queue_id"] == "nightdesk"


def test_full_queue_rejects_with_its_status_and_closed_queue_redirects(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    extra = """
[[queues]]
id = "tiny"
name = "Tiny"
max_size = 1
overflow = "reject"
overflow_status = 486

[[numbers]]
number = "2300"
action = "queue"
queue = "tiny"
""" + closed_queue("moved", "2400", 'action = "transfer"\ntransfer_mode = "redirect"\n'
                    'transfer_target = "sip:+15550199@carrier.example.com"')
    gateway = start_gateway(extra=extra)
    caller = peers("caller", log_level=5)
    caller.send(cmd="call", uri=f"sip:2300@127.0.0.1:{gateway.sip_port}")  # waits: no agent is logged in
    caller.wait_for("call_state", lambda e: e["call"] == 0 and e["state"] == "CONFIRMED", timeout=10)
    caller.send(cmd="call", uri=f"sip:2300@127.0.0.1:{gateway.sip_port}")  # the queue (size 1) is full
    caller.wait_for("call_state", lambda e: e["call"] == 1 and e["state"] == "DISCONNECTED", timeout=10)
    caller.wait_for_log("Response msg 486/INVITE")
    caller.send(cmd="call", uri=f"sip:2400@127.0.0.1:{gateway.sip_port}")
    caller.wait_for_log("Response msg 302/INVITE")
    caller.wait_for_log("Contact: <sip:+15550199@carrier.example.com>")
    assert gateway.stop() == 0
    reasons = sorted((row["queue_id"], row["disconnect_reason"]) for row in contact_rows(gateway))
    assert reasons == [("moved", "after-hours"), ("tiny", "overflow"), ("tiny", "shutdown")]


def test_after_hours_transfer_dials_out_through_the_trunk_and_bridges(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    outside = peers("outside", tone=660.0, auto_answer=200, answer_delay=0.5)  # the external number
    outside.send(cmd="listen")
    extra = f"""
[[trunks]]
name = "pstn"
sources = ["192.0.2.0/24"]
outbound = "udp:127.0.0.1:{outside.port}"
""" + closed_queue("frontdesk", "2500", 'action = "transfer"\ntransfer_mode = "dial"\ntransfer_trunk = "pstn"\n'
                   'transfer_target = "sip:+15550123@127.0.0.1"')
    gateway = start_gateway(extra=extra)
    caller = peers("caller", tone=440.0)
    caller.send(cmd="call", uri=f"sip:2500@127.0.0.1:{gateway.sip_port}")
    incoming = outside.wait_for("incoming_call", timeout=10)
    assert "+15550123@" in incoming["message"].splitlines()[0]
    assert "caller@" in next(line for line in incoming["message"].splitlines() if line.lower().startswith("from:"))
    wait_for_log(gateway, "transferred to sip:+15550123@127.0.0.1", timeout=10)
    time.sleep(2.5)
    caller.send(cmd="hangup", call=0)
    outside.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)  # the gateway's BYE
    caller_pcm, rate = read_wav(Path(caller.wait_for("recorded", timeout=15)["file"]))
    outside_pcm, _ = read_wav(Path(outside.wait_for("recorded", timeout=15)["file"]))
    assert has_tone(caller_pcm[-rate:], 660.0, rate) and has_tone(outside_pcm[-rate:], 440.0, rate)
    assert gateway.stop() == 0
    (row,) = contact_rows(gateway)
    assert row["disconnect_reason"] == "after-hours" and row["queue_id"] == "frontdesk"


def test_caller_on_hold_gives_the_agent_music_on_hold(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    from tests.integration.test_supervisors import Recording

    gateway = start_gateway(overrides={**NO_ANNOUNCEMENTS, "countdown": False})
    agent = peers("agent1", tone=660.0, auto_answer=200, answer_delay=0.3)
    register(agent, gateway, "agent1")
    wait_for_log(gateway, "agent agent1 registered: available")
    caller = peers("caller", tone=440.0)
    caller.send(cmd="call", uri=f"sip:2000@127.0.0.1:{gateway.sip_port}")
    wait_for_log(gateway, "caller and agent agent1 bridged", timeout=25)
    time.sleep(1.0)
    caller.send(cmd="hold", call=0)
    wait_for_log(gateway, "caller holds: music on hold")
    held = time.time()
    time.sleep(3.0)
    caller.send(cmd="unhold", call=0)
    wait_for_log(gateway, "caller resumed")
    resumed = time.time()
    time.sleep(2.5)
    caller.send(cmd="hangup", call=0)
    heard = Recording(agent)
    during = heard.between(held + 0.5, held + 2.5)
    after = heard.between(resumed + 0.5, resumed + 2.0)
    assert tone_level(during, 440.0) < 0.01, "the agent still hears the held caller"
    assert any(has_tone(during, f, threshold=0.05) for f in (261.63, 329.63, 392.0)), "no music on hold"
    assert has_tone(after, 440.0), "the agent does not hear the caller after the resume"
    agent_in_dialog = [e["method"] for e in agent.events.events if e["event"] == "in_dialog_request"]
    assert set(agent_in_dialog) <= {"BYE"}  # the hold is the gateway's business: no re-INVITE to the agent


def test_agent_registered_over_tcp_is_rung_on_its_own_connection(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    gateway = start_gateway(overrides=NO_ANNOUNCEMENTS)
    agent = peers("agent1")
    agent.send(cmd="register", registrar=f"sip:127.0.0.1:{gateway.sip_port}", user="agent1",
               password="secret-agent1", transport="tcp")
    agent.wait_for("reg_state", lambda e: e["code"] == 200)
    wait_for_log(gateway, "agent agent1 registered: available")
    caller = peers("caller")
    caller.send(cmd="call", uri=f"sip:2000@127.0.0.1:{gateway.sip_port}")
    incoming = agent.wait_for("incoming_call", timeout=10)
    assert "SIP/2.0/TCP" in next(line for line in incoming["message"].splitlines() if line.lower().startswith("via:"))
    # RFC 3261 §18.2.2 / RFC 5626 spirit: the INVITE went down the connection the REGISTER came in on
    assert "opening a TCP connection" not in gateway.read_log()
    caller.send(cmd="hangup", call=0)


def test_announcements_play_while_waiting_and_stop_when_the_agent_answers(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    from tests.integration.test_supervisors import Recording

    gateway = start_gateway(overrides={"announcement_interval": 1.0, "countdown": False})
    caller = peers("caller", record=True)
    caller.send(cmd="call", uri=f"sip:2000@127.0.0.1:{gateway.sip_port}")  # no agent yet: the caller waits
    caller.wait_for("media_active", timeout=10)
    time.sleep(6.0)
    agent = peers("agent1", tone=660.0, auto_answer=200, answer_delay=0.2)
    register(agent, gateway, "agent1")
    answered = agent.wait_for("media_active", timeout=15)["t"]
    wait_for_log(gateway, "caller and agent agent1 bridged", timeout=15)
    time.sleep(4.0)
    caller.send(cmd="hangup", call=0)
    heard = Recording(caller)
    waiting = heard.between(heard.start + 1.0, answered - 0.5)
    after = heard.between(answered + 0.5, answered + 3.5)
    assert speech_energy_ratio(waiting) > 0.1, "no announcement while waiting"
    assert all(speech_energy_ratio(w) < 0.1 for w in windows(after, 8000)), "announcements after the answer"


def test_event_stream_shows_the_call_agent_and_queue(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    import threading

    from websockets.sync.client import connect

    gateway = start_gateway(overrides={**NO_ANNOUNCEMENTS, "countdown": False})
    received: list[dict[str, object]] = []
    with connect(f"ws://127.0.0.1:{gateway.api_port}/api/v1/events?token=secret-admin-token",
                 open_timeout=5) as stream:

        def read() -> None:
            try:
                for message in stream:
                    received.append(json.loads(message))
            except Exception:  # noqa: BLE001 - the stream ends when the test closes it
                pass

        threading.Thread(target=read, daemon=True).start()
        agent = peers("agent1", tone=660.0, auto_answer=200, answer_delay=0.2)
        register(agent, gateway, "agent1")
        caller = peers("caller", tone=440.0)
        caller.send(cmd="call", uri=f"sip:2000@127.0.0.1:{gateway.sip_port}")
        wait_for_log(gateway, "caller and agent agent1 bridged", timeout=20)
        caller.send(cmd="hangup", call=0)
        deadline = time.monotonic() + 10
        while not any(event["type"] == "call.ended" for event in received):
            assert time.monotonic() < deadline, received
            time.sleep(0.1)
    types = [event["type"] for event in received]
    calls = [t for t in types if t.startswith("call.")]
    assert calls[:2] == ["call.queued", "call.ringing"] and calls[-2:] == ["call.connected", "call.ended"]
    contact = {event["contact_id"] for event in received if str(event["type"]).startswith("call.")}
    assert len(contact) == 1
    states = [event["new"] for event in received if event["type"] == "agent.state_changed"]
    assert "available" in states and "on_call" in states
    queue = [event for event in received if event["type"] == "queue.updated"]
    assert queue and all(event["queue_id"] == "demo" for event in queue)
    assert gateway.stop() == 0
