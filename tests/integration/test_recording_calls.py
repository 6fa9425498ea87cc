"""Recordings of real bridged calls: small chunks, continuity across chunks, channels, kill -9 recovery."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from tests.audio import has_tone, tone_level
from tests.integration.conftest import GatewayFactory
from tests.integration.harness import GatewayProcess, PjsuaPeer
from tests.integration.test_contact_center import register, wait_for_log

pytestmark = pytest.mark.integration

FRAME_BYTES = 640  # 20 ms of 16-bit stereo at 8 kHz
CHUNK_FRAMES = 25  # half a second per chunk
SMALL_CHUNKS = f"""
[recording]
chunk_size = {44 + CHUNK_FRAMES * FRAME_BYTES}
exporter_interval = 0.5
"""
CALLER, AGENT = 440.0, 660.0
ADMIN = {"Authorization": "Bearer secret-admin-token"}
SUPERVISOR = {"Authorization": "Bearer secret-supervisor-token"}


def decode(path: Path) -> np.ndarray:
    """A chunk decoded with PyAV: (samples, 2) int16."""
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray() for frame in container.decode(audio=0)]
    data = np.concatenate(frames, axis=1) if frames[0].shape[0] == 2 else np.concatenate(frames, axis=1)
    if data.shape[0] == 1:  # packed stereo: interleaved in one plane
        return data.reshape(-1, 2)
    return data.T


def continuity_residual(signal: np.ndarray, frequency: float, at: int, half: int = 60) -> float:
    """How far ``signal`` around index ``at`` departs from one continuous sinusoid (0 = perfectly)."""
    window = signal[at - half : at + half].astype(np.float64)
    t = np.arange(len(window)) / 8000.0
    basis = np.column_stack([np.sin(2 * np.pi * frequency * t), np.cos(2 * np.pi * frequency * t), np.ones_like(t)])
    coefficients, *_ = np.linalg.lstsq(basis, window, rcond=None)
    residual = window - basis @ coefficients
    return float(np.sqrt(np.mean(residual**2)) / max(1.0, np.sqrt(np.mean(window**2))))


def bridged_call(gateway: GatewayProcess, peers: Callable[..., PjsuaPeer]) -> tuple[PjsuaPeer, PjsuaPeer]:
    agent = peers("agent1", tone=AGENT, auto_answer=200, answer_delay=0.3)
    register(agent, gateway, "agent1")
    wait_for_log(gateway, "agent agent1 registered: available")
    caller = peers("caller", tone=CALLER)
    caller.send(cmd="call", uri=f"sip:2000@127.0.0.1:{gateway.sip_port}")
    wait_for_log(gateway, ": recording rec-", timeout=25)
    return caller, agent


def exported(gateway: GatewayProcess, timeout: float = 20.0) -> tuple[dict, Path]:
    """The manifest and folder of the one recording, once the directory target has it all."""
    exports = gateway.workdir / "data" / "exports"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for manifest_path in exports.glob("*/manifest.json"):
            manifest = json.loads(manifest_path.read_text())
            names = [chunk["file_name"] for chunk in manifest["chunks"]]
            if manifest["state"] != "recording" and names and all((manifest_path.parent / n).exists() for n in names):
                return manifest, manifest_path.parent
        time.sleep(0.2)
    raise AssertionError(f"no complete export under {exports}:\n{gateway.read_log()[-3000:]}")


def test_bridged_call_recorded_in_small_chunks(start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]) -> None:
    gateway = start_gateway(overrides={"announcement_interval": 0.0, "countdown": False}, extra=SMALL_CHUNKS)
    caller, agent = bridged_call(gateway, peers)
    time.sleep(4.0)
    caller.send(cmd="hangup", call=0)
    caller.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)
    manifest, folder = exported(gateway)
    assert manifest["state"] == "complete" and manifest["contact_id"]
    chunks = manifest["chunks"]
    assert len(chunks) >= 6, "4 s at 0.5 s per chunk"
    limit = 44 + CHUNK_FRAMES * FRAME_BYTES
    pieces = []
    for index, chunk in enumerate(chunks):
        path = folder / chunk["file_name"]
        assert chunk["index"] == index
        assert path.stat().st_size <= limit and path.stat().st_size == chunk["size"]
        pcm = decode(path)  # every chunk is a complete, playable file
        assert len(pcm) == chunk["sample_count"] and len(pcm) % 160 == 0
        pieces.append(pcm)
    audio = np.concatenate(pieces)
    starts = np.cumsum([0] + [len(p) for p in pieces])
    assert [c["start_sample"] for c in chunks] == starts[:-1].tolist()  # offsets leave no gap, no overlap
    left, right = audio[:, 0], audio[:, 1]
    # channels hold the right parties: caller left, agent right
    assert has_tone(left, CALLER) and tone_level(left, AGENT) < 0.01
    assert has_tone(right, AGENT) and tone_level(right, CALLER) < 0.01
    # across every chunk boundary the caller's tone goes on as one sinusoid: no dropped or repeated frame
    for boundary in starts[1:-1]:
        assert continuity_residual(left, CALLER, int(boundary)) < 0.1, f"discontinuity at sample {boundary}"
    # the local copies went only after the target confirmed them
    local = gateway.workdir / "data" / "recordings" / manifest["recording_id"]
    assert not any(local.glob("*.wav")) if local.exists() else True
    assert gateway.stop() == 0


def test_kill_9_during_a_recording_then_restart_recovers_and_exports(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    gateway = start_gateway(overrides={"announcement_interval": 0.0, "countdown": False}, extra=SMALL_CHUNKS)
    caller, agent = bridged_call(gateway, peers)
    time.sleep(2.5)
    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait(timeout=5)
    restarted = GatewayProcess(gateway.workdir, gateway.workdir / "profile.toml", gateway.sip_port, gateway.api_port)
    start_gateway.gateways.append(restarted)
    wait_for_log(restarted, "recovered 1 interrupted recording(s)")
    manifest, folder = exported(restarted)
    assert manifest["state"] == "interrupted"
    assert manifest["duration"] > 1.0
    for chunk in manifest["chunks"]:
        pcm = decode(folder / chunk["file_name"])
        assert len(pcm) == chunk["sample_count"]
    left = np.concatenate([decode(folder / c["file_name"]) for c in manifest["chunks"]])[:, 0]
    assert has_tone(left, CALLER)
    assert restarted.stop() == 0


def test_recordings_listed_and_served_by_the_api_and_cli(
    start_gateway: GatewayFactory, peers: Callable[..., PjsuaPeer]
) -> None:
    # the only export target never answers: the chunks stay local, listed as pending, and are served
    unreachable = SMALL_CHUNKS + '\n[[recording.targets]]\nname = "crm"\nkind = "http"\nurl = "http://127.0.0.1:9/"\n'
    gateway = start_gateway(overrides={"announcement_interval": 0.0, "countdown": False}, extra=unreachable)
    caller, agent = bridged_call(gateway, peers)
    time.sleep(1.5)
    api = httpx.Client(base_url=gateway.api_url, timeout=5)
    (call,) = api.get("/api/v1/calls", headers=ADMIN).json()
    assert call["recording"] == "recording"
    caller.send(cmd="hangup", call=0)
    caller.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)
    deadline = time.monotonic() + 10
    while True:
        listed = api.get(f"/api/v1/contacts/{call['id']}/recordings", headers=ADMIN)
        assert listed.status_code == 200, listed.text
        if listed.json() and listed.json()[0]["chunks"]:
            break
        assert time.monotonic() < deadline, listed.text
        time.sleep(0.2)
    (recording,) = listed.json()
    assert recording["contact_id"] == call["id"] and recording["export_state"] != "exported"
    first = recording["chunks"][0]
    assert first["local"] is True
    chunk = api.get(f"/api/v1/recordings/{recording['id']}/chunks/0", headers=ADMIN)
    assert chunk.status_code == 200 and chunk.content[:4] == b"RIFF" and len(chunk.content) == first["size"]
    assert api.get(f"/api/v1/recordings/{recording['id']}/chunks/0", headers=SUPERVISOR).status_code == 403
    assert gateway.stop() == 0
    listing = subprocess.run(
        [sys.executable, "-m", "mediagw", "recordings", "--profile", str(gateway.workdir / "profile.toml"), "list"],
        capture_output=True, text=True, timeout=30,
    )
    assert listing.returncode == 0 and recording["id"] in listing.stdout, listing.stdout + listing.stderr
