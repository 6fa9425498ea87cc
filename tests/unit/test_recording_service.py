"""The recording service on a real media engine: taps to stereo files, pause, export, crash recovery.

The engines run with real UDP sockets on 127.0.0.1 and ``tick(now)`` driven by hand: each leg receives
its own PCMU tone from a test socket, and the files are checked by frequency (FFT).
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from mediagw.config import _build
from mediagw.errors import ConfigError, LocalError
from mediagw.media import g711
from mediagw.media.engine import MediaEngine
from mediagw.media.engine_reference import ReferenceEngine
from mediagw.media.rtp import RtpPacket
from mediagw.recording.config import (
    MAX_RETENTION_SECONDS,
    ExportTargetConfig,
    RecordingConfig,
    RecordingPolicy,
    validate_policy,
    validate_recording,
)
from mediagw.recording.export import UnknownRecording
from mediagw.recording.manifest import STATE_COMPLETE, STATE_INTERRUPTED, read_manifest
from mediagw.recording.retention import MAX_RETENTION_SECONDS as RETENTION_MAX
from mediagw.recording.service import (
    ChunkNotStored,
    RecordingNotActive,
    RecordingService,
    build_target,
    new_recording_id,
    read_targets_file,
    recordings_dir_of,
)
from mediagw.recording.targets import DirectoryTarget, HttpTarget, S3Target
from mediagw.recording.writer import WAV_HEADER_BYTES
from mediagw.store.db import sqlite_url
from tests.audio import dominant_frequency, has_tone, rms

CALLER_HZ = 440.0
AGENT_HZ = 1000.0
WHISPER_HZ = 2000.0
RATE = 8000
FRAME = 160
ENGINES = {"native": MediaEngine, "reference": ReferenceEngine}

Pcm = npt.NDArray[np.int16]


def tone(frequency: float, frames: int, amplitude: int = 8000) -> Pcm:
    t = np.arange(frames * FRAME)
    return (amplitude * np.sin(2 * np.pi * frequency * t / RATE)).astype(np.int16)


def read_stereo(paths: list[Path]) -> npt.NDArray[np.int16]:
    """Samples of several WAV chunks in order, shape (n, channels)."""
    parts = []
    for path in paths:
        with wave.open(str(path), "rb") as wav:
            assert wav.getframerate() == RATE and wav.getsampwidth() == 2
            channels = wav.getnchannels()
            parts.append(np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, channels))
    return np.concatenate(parts)


class Leg:
    """An engine leg on a real socket pair plus the test socket that plays the remote party."""

    def __init__(self, engine: MediaEngine | ReferenceEngine, frequency: float, ssrc: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.peer.bind(("127.0.0.1", 0))
        self.slot = engine.add_leg(self.sock, None, self.peer.getsockname(), 0, None, False)
        self.pcm = tone(frequency, 2000)
        self.ssrc = ssrc
        self.sequence = 0

    def send_frame(self) -> None:
        """Send the next 20 ms of the tone as one PCMU packet and wait until the leg's socket holds it."""
        n = self.sequence
        payload = g711.ulaw_encode(self.pcm[n * FRAME : (n + 1) * FRAME]).tobytes()
        packet = RtpPacket(
            payload_type=0, marker=n == 0, sequence_number=n, timestamp=n * FRAME, ssrc=self.ssrc, payload=payload
        )
        self.peer.sendto(packet.serialize(), self.sock.getsockname())
        readable, _, _ = select.select([self.sock], [], [], 2.0)
        assert readable, "the RTP packet did not arrive on loopback"
        self.sequence += 1

    def close(self) -> None:
        self.sock.close()
        self.peer.close()


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> MediaEngine | ReferenceEngine:
    return ENGINES[request.param](max_slots=16, seed=7, rtcp=False)


@pytest.fixture
def legs(engine: MediaEngine | ReferenceEngine) -> Iterator[tuple[Leg, Leg]]:
    caller, agent = Leg(engine, CALLER_HZ, 0x1111), Leg(engine, AGENT_HZ, 0x2222)
    yield caller, agent
    caller.close()
    agent.close()


def make_config(tmp_path: Path, **overrides: object) -> RecordingConfig:
    settings: dict[str, object] = {
        "chunk_size": WAV_HEADER_BYTES + 40 * 640,  # 0.8 s stereo per chunk: several chunks per test
        "targets": (
            ExportTargetConfig(name="archive", kind="directory", path=str(tmp_path / "archive")),
            ExportTargetConfig(name="other", kind="directory", path="other-exports"),
        ),
        "exporter_interval": 3600.0,  # rounds are run by hand below
    }
    settings.update(overrides)
    return RecordingConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
async def service(tmp_path: Path, engine: MediaEngine | ReferenceEngine) -> AsyncIterator[RecordingService]:
    svc = RecordingService(make_config(tmp_path), tmp_path / "data", sqlite_url(tmp_path / "store.db"), engine)
    assert await svc.start() == []
    yield svc
    await svc.close()


def run_ticks(engine: MediaEngine | ReferenceEngine, svc: RecordingService, legs: tuple[Leg, ...], count: int,
              clock: list[float]) -> None:
    for _ in range(count):
        for leg in legs:
            leg.send_frame()
        clock[0] += 0.020
        engine.tick(clock[0])
        svc.on_tick(clock[0])


async def test_stereo_recording_of_a_bridged_call_with_pause_and_export(
    tmp_path: Path, engine: MediaEngine | ReferenceEngine, legs: tuple[Leg, Leg], service: RecordingService
) -> None:
    caller, agent = legs
    clock = [100.0]
    engine.set_listen(caller.slot, [(agent.slot, 1.0)])
    engine.set_listen(agent.slot, [(caller.slot, 1.0)])
    run_ticks(engine, service, legs, 5, clock)  # the jitter buffers fill; not recorded yet
    whisper = engine.add_player(tone(WHISPER_HZ, 400), loop=True)
    engine.set_listen(agent.slot, [(caller.slot, 1.0), (whisper, 1.0)])  # the agent hears a whisper

    handle = service.start_recording("rec-1", "contact-1", "sales", caller.slot, agent.slot, ["archive"])
    assert handle.targets == ("archive",) and handle.format == "wav"
    assert service.fancy_indexed is isinstance(engine, MediaEngine)
    run_ticks(engine, service, legs, 60, clock)
    assert service.pause("rec-1") is True
    assert service.pause("rec-1") is False
    assert service.state("rec-1") == "paused"
    run_ticks(engine, service, legs, 40, clock)
    assert service.resume("rec-1") is True
    assert service.resume("rec-1") is False
    run_ticks(engine, service, legs, 60, clock)
    figures = service.figures()
    assert figures.active == 1 and figures.ticks == 160 and figures.hub_ticks_dropped == 0

    manifest = await service.stop_recording("rec-1")
    run_ticks(engine, service, legs, 5, clock)  # no longer recorded
    assert manifest.state == STATE_COMPLETE
    assert manifest.total_samples == 160 * FRAME
    assert len(manifest.chunks) == 4  # 40 frames per chunk
    assert manifest.dropped_spans == []
    (span,) = manifest.paused_spans
    assert (span.start_sample, span.end_sample) == (60 * FRAME, 100 * FRAME)
    assert service.state("rec-1") is None
    assert service.figures().frames_dropped == 0

    directory = recordings_dir_of(tmp_path / "data") / "rec-1"
    assert read_targets_file(directory) == ("archive",)
    audio = read_stereo([directory / c.file_name for c in manifest.chunks])
    assert audio.shape == (160 * FRAME, 2)
    before, paused, after = audio[: 60 * FRAME], audio[60 * FRAME : 100 * FRAME], audio[100 * FRAME :]
    assert not paused.any()  # redacted: exact silence on both channels
    for part in (before[2 * FRAME :], after):
        left, right = part[:, 0], part[:, 1]
        assert dominant_frequency(left) == pytest.approx(CALLER_HZ, abs=10)
        assert dominant_frequency(right) == pytest.approx(AGENT_HZ, abs=10)
        assert not has_tone(left, AGENT_HZ) and not has_tone(right, CALLER_HZ)
        assert not has_tone(right, WHISPER_HZ) and not has_tone(left, WHISPER_HZ)  # whisper is not recorded
        assert rms(left) > 3000 and rms(right) > 3000

    infos = await service.list_for_contact("contact-1")
    assert [info.id for info in infos] == ["rec-1"]
    assert infos[0].state == STATE_COMPLETE and infos[0].export_state == "pending"
    assert [(c.index, c.local, c.export_state) for c in infos[0].chunks] == [(i, True, "pending") for i in range(4)]
    assert infos[0].media_type == "audio/wav"
    assert await service.chunk_path("rec-1", 0) == directory / manifest.chunks[0].file_name
    with pytest.raises(UnknownRecording):
        await service.chunk_path("rec-1", 9)
    with pytest.raises(UnknownRecording):
        await service.chunk_path("nope", 0)

    result = await service.exporter.run_once(time.time())
    assert result.succeeded == 4 and result.failed == 0
    archive = tmp_path / "archive" / "rec-1"
    exported = read_stereo([archive / c.file_name for c in manifest.chunks])
    assert np.array_equal(exported, audio)
    assert not (tmp_path / "data" / "other-exports").exists()  # this queue exports to "archive" only
    infos = await service.list_for_contact("contact-1")
    assert infos[0].export_state == "exported"
    assert all(not c.local and c.export_state == "exported" for c in infos[0].chunks)
    with pytest.raises(ChunkNotStored):
        await service.chunk_path("rec-1", 0)
    with pytest.raises(RecordingNotActive):
        service.pause("rec-1")
    with pytest.raises(RecordingNotActive):
        service.stop_recording("rec-1")


async def test_running_recording_is_listed_and_closed_at_shutdown(
    tmp_path: Path, engine: MediaEngine | ReferenceEngine, legs: tuple[Leg, Leg]
) -> None:
    caller, agent = legs
    svc = RecordingService(make_config(tmp_path), tmp_path / "data", sqlite_url(tmp_path / "store.db"), engine)
    await svc.start()
    clock = [0.0]
    run_ticks(engine, svc, legs, 3, clock)
    svc.start_recording("rec-2", "contact-2", "support", caller.slot, agent.slot)
    run_ticks(engine, svc, legs, 50, clock)
    await asyncio.sleep(0.3)  # the writer thread closes chunk 0 (40 frames) in its own time
    (info,) = await svc.list_for_contact("contact-2")
    assert info.state == "recording" and info.export_state == "pending"
    with pytest.raises(ChunkNotStored):
        await svc.chunk_path("rec-2", len(info.chunks))  # the open chunk is still being written
    with pytest.raises(LocalError):
        svc.start_recording("rec-2", "contact-2", "support", caller.slot, agent.slot)
    await svc.close()  # stops and registers the running recording
    manifest = read_manifest(recordings_dir_of(tmp_path / "data") / "rec-2")
    assert manifest.state == STATE_COMPLETE and manifest.total_samples == 50 * FRAME
    assert read_targets_file(recordings_dir_of(tmp_path / "data") / "rec-2") == ("archive", "other")
    svc2 = RecordingService(make_config(tmp_path), tmp_path / "data", sqlite_url(tmp_path / "store.db"), engine)
    await svc2.start()
    detail = await svc2.queue.show_recording("rec-2")
    assert {job.target for job in detail.jobs} == {"archive", "other"}
    await svc2.close()


async def test_players_as_parties_mono_and_errors(tmp_path: Path) -> None:
    engine = ReferenceEngine(max_slots=8, seed=1, rtcp=False)
    caller = engine.add_player(tone(CALLER_HZ, 400), loop=True)
    agent = engine.add_player(tone(AGENT_HZ, 400), loop=True)
    svc = RecordingService(make_config(tmp_path), tmp_path / "data", sqlite_url(tmp_path / "store.db"), engine)
    with pytest.raises(LocalError):
        svc.start_recording("early", "c", "q", caller, agent)  # not started
    await svc.start()
    with pytest.raises(LocalError):
        svc.start_recording("bad", "c", "q", caller, agent, ["nowhere"])
    with pytest.raises(LocalError):
        svc.start_recording("bad", "c", "q", caller, agent, format="mp3")
    with pytest.raises(LocalError):
        svc.start_recording("bad", "c", "q", caller, 7)  # no such slot
    svc.start_recording("mono", "c", "q", caller, agent, format="wav-mono")
    svc.start_recording("stereo", "c", "q", caller, agent)  # the same slots twice: taps are shared
    for n in range(50):
        engine.tick(n * 0.02)
        svc.on_tick(n * 0.02)
    mono = await svc.stop_recording("mono")
    for n in range(50, 60):
        engine.tick(n * 0.02)
        svc.on_tick(n * 0.02)
    stereo = await svc.stop_recording("stereo")
    assert mono.channels == 1 and mono.total_samples == 50 * FRAME
    assert stereo.total_samples == 60 * FRAME
    directory = recordings_dir_of(tmp_path / "data")
    mixed = read_stereo([directory / "mono" / c.file_name for c in mono.chunks])[:, 0]
    assert has_tone(mixed, CALLER_HZ) and has_tone(mixed, AGENT_HZ)
    with pytest.raises(LocalError):
        engine.tap(caller)  # the last recording of the slot switched its tap off
    await svc.close()


@pytest.mark.parametrize("engine_name", sorted(ENGINES))
async def test_a_voicemail_beside_a_call_records_silence_for_the_missing_party(
    tmp_path: Path, engine_name: str
) -> None:
    engine = ENGINES[engine_name](max_slots=8, seed=1, rtcp=False)
    caller = engine.add_player(tone(CALLER_HZ, 400), loop=True)
    agent = engine.add_player(tone(AGENT_HZ, 400), loop=True)
    voice = engine.add_player(tone(WHISPER_HZ, 400), loop=True)
    svc = RecordingService(make_config(tmp_path), tmp_path / "data", sqlite_url(tmp_path / "store.db"), engine)
    await svc.start()
    svc.start_recording("call", "c1", "q", caller, agent)
    svc.start_recording("vm", "c2", "q", voice, None, kind="voicemail")
    assert svc.fancy_indexed is (engine_name == "native")
    for n in range(30):
        engine.tick(n * 0.02)
        svc.on_tick(n * 0.02)
    call = await svc.stop_recording("call")
    voicemail = await svc.stop_recording("vm")
    await svc.close()
    directory = recordings_dir_of(tmp_path / "data")
    assert voicemail.kind == "voicemail"
    vm_audio = read_stereo([directory / "vm" / c.file_name for c in voicemail.chunks])
    call_audio = read_stereo([directory / "call" / c.file_name for c in call.chunks])
    assert vm_audio.shape == call_audio.shape == (30 * FRAME, 2)
    assert not vm_audio[:, 1].any() and dominant_frequency(vm_audio[:, 0]) == pytest.approx(WHISPER_HZ, abs=10)
    assert dominant_frequency(call_audio[:, 0]) == pytest.approx(CALLER_HZ, abs=10)
    assert dominant_frequency(call_audio[:, 1]) == pytest.approx(AGENT_HZ, abs=10)


async def test_opus_recording(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    engine = ReferenceEngine(max_slots=8, seed=1, rtcp=False)
    caller = engine.add_player(tone(CALLER_HZ, 400), loop=True)
    agent = engine.add_player(tone(AGENT_HZ, 400), loop=True)
    svc = RecordingService(
        make_config(tmp_path, format="opus", chunk_size=1_000_000),
        tmp_path / "data",
        sqlite_url(tmp_path / "store.db"),
        engine,
    )
    await svc.start()
    svc.start_recording("opus", "c", "q", caller, agent)
    for n in range(100):
        engine.tick(n * 0.02)
        svc.on_tick(n * 0.02)
    manifest = await svc.stop_recording("opus")
    await svc.close()
    path = recordings_dir_of(tmp_path / "data") / "opus" / manifest.chunks[0].file_name
    assert path.suffix == ".ogg"
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
    pcm = np.concatenate([f.reshape(-1, 2) if f.shape[0] == 1 else f.T for f in frames])
    left = (pcm[:, 0] * (32767 if pcm.dtype.kind == "f" else 1)).astype(np.int16)
    right = (pcm[:, 1] * (32767 if pcm.dtype.kind == "f" else 1)).astype(np.int16)
    skip = rate // 10  # the encoder's start-up
    assert dominant_frequency(left[skip:], rate) == pytest.approx(CALLER_HZ, abs=15)
    assert dominant_frequency(right[skip:], rate) == pytest.approx(AGENT_HZ, abs=15)


async def test_a_stalled_disk_shows_in_figures_and_logs_while_ticks_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mediagw.recording import writer as writer_module

    disk = threading.Event()
    original = writer_module._WavSink.write

    def stalled_write(self: object, pcm: Pcm) -> None:
        disk.wait(30)
        original(self, pcm)  # type: ignore[arg-type]

    monkeypatch.setattr(writer_module._WavSink, "write", stalled_write)
    engine = ReferenceEngine(max_slots=8, seed=1, rtcp=False)
    caller = engine.add_player(tone(CALLER_HZ, 50), loop=True)
    agent = engine.add_player(tone(AGENT_HZ, 50), loop=True)
    svc = RecordingService(make_config(tmp_path), tmp_path / "data", sqlite_url(tmp_path / "store.db"), engine)
    await svc.start()
    svc.start_recording("slow", "c", "q", caller, agent)
    with caplog.at_level(logging.WARNING, logger="mediagw.recording.writer"):
        for n in range(120):
            engine.tick(n * 0.02)
            svc.on_tick(n * 0.02)
        for _ in range(100):  # the hub hands every frame to the writer's queue; the disk takes none
            if svc.figures().writers["slow"].frames_queued == 120:
                break
            await asyncio.sleep(0.01)
    figures = svc.figures()
    assert figures.ticks == 120 and figures.hub_ticks_dropped == 0
    assert figures.lagging == ("slow",) and figures.writers["slow"].queue_depth >= 100
    assert any("disk falling behind" in record.getMessage() for record in caplog.records)
    disk.set()
    manifest = await svc.stop_recording("slow")
    assert manifest.total_samples == 120 * FRAME and manifest.dropped_spans == []
    await svc.close()


CRASHING_PROCESS = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    import numpy as np
    from mediagw.media.engine_reference import ReferenceEngine
    from mediagw.recording.config import ExportTargetConfig, RecordingConfig
    from mediagw.recording.service import RecordingService
    from mediagw.store.db import sqlite_url

    tmp = Path(sys.argv[1])

    def tone(frequency):
        t = np.arange(8000)
        return (8000 * np.sin(2 * np.pi * frequency * t / 8000)).astype(np.int16)

    async def main():
        engine = ReferenceEngine(max_slots=8, seed=1, rtcp=False)
        caller = engine.add_player(tone(440.0), loop=True)
        agent = engine.add_player(tone(1000.0), loop=True)
        config = RecordingConfig(
            chunk_size=44 + 40 * 640,
            targets=(
                ExportTargetConfig(name="archive", kind="directory", path=str(tmp / "archive")),
                ExportTargetConfig(name="other", kind="directory", path="other-exports"),
            ),
            exporter_interval=3600.0,
        )
        svc = RecordingService(config, tmp / "data", sqlite_url(tmp / "store.db"), engine)
        await svc.start()
        svc.start_recording("crashed", "contact-9", "sales", caller, agent, ["archive"])
        svc.pause("crashed")
        for n in range(10):
            engine.tick(n * 0.02)
            svc.on_tick(n * 0.02)
        svc.resume("crashed")
        for n in range(10, 110):
            engine.tick(n * 0.02)
            svc.on_tick(n * 0.02)
        while svc.figures().writers["crashed"].frames_written < 110:
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.5)  # the writer flushes its header once a second
        print("READY", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_kill_9_then_the_next_start_recovers_and_exports(tmp_path: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_PROCESS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), *sys.path])}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if line.strip() != b"READY":
            pytest.fail(f"the recording process did not get ready: {line!r} {await process.stderr.read()!r}")
    finally:
        os.kill(process.pid, signal.SIGKILL)  # no clean shutdown: the writer is in the middle of a chunk
        await process.wait()
    directory = recordings_dir_of(tmp_path / "data") / "crashed"
    assert read_manifest(directory).state == "recording"  # left open by the kill

    engine = ReferenceEngine(max_slots=8, seed=1, rtcp=False)
    svc = RecordingService(make_config(tmp_path), tmp_path / "data", sqlite_url(tmp_path / "store.db"), engine)
    assert await svc.start() == ["crashed"]
    manifest = read_manifest(directory)
    assert manifest.state == STATE_INTERRUPTED
    assert manifest.total_samples >= 50 * FRAME and manifest.total_samples % FRAME == 0
    (span,) = manifest.paused_spans
    assert (span.start_sample, span.end_sample) == (0, 10 * FRAME)
    detail = await svc.queue.show_recording("crashed")
    assert detail.summary.state == STATE_INTERRUPTED
    assert {job.target for job in detail.jobs} == {"archive"}  # the queue's targets survived the crash

    for _ in range(200):  # the exporter's first round (started by start()) delivers it
        if (await svc.queue.show_recording("crashed")).summary.export_state == "exported":
            break
        await asyncio.sleep(0.05)
    detail = await svc.queue.show_recording("crashed")
    assert detail.summary.export_state == "exported"
    assert all(job.state == "done" and job.attempts == 1 for job in detail.jobs)
    exported = read_stereo([tmp_path / "archive" / "crashed" / c.file_name for c in manifest.chunks])
    assert exported.shape[0] == manifest.total_samples
    assert not exported[: 10 * FRAME].any()
    assert dominant_frequency(exported[10 * FRAME :, 0]) == pytest.approx(CALLER_HZ, abs=10)
    assert dominant_frequency(exported[10 * FRAME :, 1]) == pytest.approx(AGENT_HZ, abs=10)
    (info,) = await svc.list_for_contact("contact-9")
    assert info.state == STATE_INTERRUPTED and info.export_state == "exported"
    await svc.close()

    svc = RecordingService(make_config(tmp_path), tmp_path / "data", sqlite_url(tmp_path / "store.db"), engine)
    assert await svc.start() == []  # nothing left to repair, nothing registered twice
    await svc.close()


async def test_retention_loop_purges_old_recordings(tmp_path: Path) -> None:
    engine = ReferenceEngine(max_slots=8, seed=1, rtcp=False)
    caller = engine.add_player(tone(CALLER_HZ, 50), loop=True)
    agent = engine.add_player(tone(AGENT_HZ, 50), loop=True)
    now = [time.time()]  # near the files' mtimes: retention ages a manifest-less directory by them
    config = make_config(tmp_path, retention_seconds=60.0, retention_interval=0.05)
    svc = RecordingService(
        config, tmp_path / "data", sqlite_url(tmp_path / "store.db"), engine, wall_clock=lambda: now[0]
    )
    await svc.start()
    svc.start_recording("old", "c", "q", caller, agent)
    for n in range(10):
        engine.tick(n * 0.02)
        svc.on_tick(n * 0.02)
    await svc.stop_recording("old")
    directory = recordings_dir_of(tmp_path / "data") / "old"
    assert directory.is_dir()
    now[0] += 61.0
    for _ in range(100):
        if not directory.exists():
            break
        await asyncio.sleep(0.05)
    assert not directory.exists()
    (info,) = await svc.list_for_contact("c")
    assert info.export_state == "purged" and all(c.export_state == "abandoned" for c in info.chunks)
    await svc.close()


# ---- configuration ---------------------------------------------------------------------------------------


def test_config_loads_with_the_generic_loader_and_validates() -> None:
    table = {
        "format": "wav-mono",
        "chunk_size": 1_000_000,
        "retention_seconds": 86400,
        "targets": [
            {"name": "archive", "kind": "directory", "path": "/srv/rec"},
            {"name": "crm", "kind": "http", "url": "https://crm.example/rec", "headers": ["Authorization: Bearer x"]},
            {"name": "s3", "kind": "s3", "bucket": "calls", "prefix": "a/", "access_key": "k", "secret_key": "s"},
        ],
    }
    config = _build(RecordingConfig, table, "p.toml", "recording")
    validate_recording(config, "p.toml")
    assert config.target_names == ("archive", "crm", "s3")
    assert config.targets[1].header_dict() == {"Authorization": "Bearer x"}
    assert "Bearer" not in repr(config) and "'s'" not in repr(config)
    assert config.retention_seconds == 86400.0
    targets = [build_target(t, "/data") for t in config.targets]
    assert isinstance(targets[0], DirectoryTarget) and isinstance(targets[1], HttpTarget)
    assert isinstance(targets[2], S3Target) and targets[2].credentials is not None
    assert build_target(ExportTargetConfig("d", "directory", path="rel"), "/data").path == Path("/data/rel")  # type: ignore[union-attr]
    validate_recording(RecordingConfig(), "p.toml")  # the defaults: one local directory target
    assert MAX_RETENTION_SECONDS == RETENTION_MAX == 604800
    with pytest.raises(ConfigError, match=r"recording\.targets\[0\]\.nope"):
        _build(RecordingConfig, {"targets": [{"name": "a", "kind": "directory", "nope": 1}]}, "p.toml", "recording")
    with pytest.raises(ConfigError, match="is not one of"):
        _build(RecordingConfig, {"format": "mp3"}, "p.toml", "recording")


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"retention_seconds": MAX_RETENTION_SECONDS + 1}, "recording.retention_seconds"),
        ({"retention_seconds": 0}, "recording.retention_seconds"),
        ({"chunk_size": 100}, "recording.chunk_size"),
        ({"backoff_base": 10.0, "backoff_cap": 5.0}, "recording.backoff_base"),
        ({"exporter_interval": 0.0}, "recording.exporter_interval"),
        ({"targets": ()}, "recording.targets"),
        ({"targets": (ExportTargetConfig("a", "http"),)}, "recording.targets[0].url"),
        ({"targets": (ExportTargetConfig("a", "http", url="ftp://x/"),)}, "recording.targets[0].url"),
        ({"targets": (ExportTargetConfig("a", "http", url="http://x/", headers=("bad",)),)}, "recording.targets[0].headers[0]"),
        ({"targets": (ExportTargetConfig("a", "directory", path="p", url="http://x/"),)}, "recording.targets[0].url"),
        ({"targets": (ExportTargetConfig("a", "s3"),)}, "recording.targets[0].bucket"),
        ({"targets": (ExportTargetConfig("a", "s3", bucket="b", access_key="k"),)}, "recording.targets[0].access_key"),
        ({"targets": (ExportTargetConfig("a b", "directory", path="p"),)}, "recording.targets[0].name"),
        (
            {"targets": (ExportTargetConfig("a", "directory", path="p"), ExportTargetConfig("a", "directory", path="q"))},
            "recording.targets[1].name",
        ),
    ],
)
def test_invalid_settings_name_the_key(settings: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_recording(RecordingConfig(**settings), "p.toml")  # type: ignore[arg-type]
    assert caught.value.file == "p.toml" and caught.value.key == key


def test_queue_policy_names_configured_targets() -> None:
    config = RecordingConfig(
        targets=(ExportTargetConfig("a", "directory", path="x"), ExportTargetConfig("b", "directory", path="y"))
    )
    validate_policy(RecordingPolicy(enabled=True, format="opus", targets=("b",)), config, "p.toml", "queues[0].recording")
    with pytest.raises(ConfigError) as caught:
        validate_policy(RecordingPolicy(targets=("b", "c")), config, "p.toml", "queues[0].recording")
    assert caught.value.key == "queues[0].recording.targets[1]"
    with pytest.raises(ConfigError):
        validate_policy(RecordingPolicy(targets=("a", "a")), config, "p.toml", "queues[0].recording")
    assert new_recording_id(0.0).startswith("rec-19700101T000000Z-")
