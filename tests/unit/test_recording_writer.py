"""RecordingWriter: chunking, formats, pause spans, back-pressure figures, manifest, crash recovery."""

from __future__ import annotations

import json
import logging
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediagw.errors import ConfigError, LocalError
from mediagw.recording import writer as writer_module
from mediagw.recording.manifest import (
    STATE_COMPLETE,
    STATE_INTERRUPTED,
    STATE_RECORDING,
    Manifest,
    OpenChunk,
    read_manifest,
    sha256_file,
    write_manifest,
)
from mediagw.recording.writer import (
    DEFAULT_CHUNK_SIZE,
    FRAME_SAMPLES,
    WAV_HEADER_BYTES,
    RecordingFormat,
    RecordingWriter,
    WriterConfig,
    recover,
    wav_frames_per_chunk,
    wav_header,
)

STEREO_FRAME_BYTES = FRAME_SAMPLES * 2 * 2


def caller_signal(frame: int) -> np.ndarray:
    """A sample counter: sample n of the recording holds n mod 30000 (gaps and repeats show)."""
    start = frame * FRAME_SAMPLES
    return (np.arange(start, start + FRAME_SAMPLES) % 30000).astype(np.int16)


def agent_signal(frame: int) -> np.ndarray:
    """A second counter, distinct from the caller's, so swapped channels show."""
    start = frame * FRAME_SAMPLES
    return (-(np.arange(start, start + FRAME_SAMPLES) % 20000) - 1).astype(np.int16)


def decode(path: Path) -> tuple[np.ndarray, int]:
    """Decode a chunk with PyAV into (samples, channels) int16 and return the sample rate too."""
    blocks = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        channels = stream.codec_context.channels
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            if frame.format.is_planar:
                array = array.T
            else:
                array = array.reshape(-1, channels)
            blocks.append(array)
    data = np.concatenate(blocks) if blocks else np.zeros((0, channels))
    return data, rate


def write_frames(writer: RecordingWriter, count: int, first: int = 0) -> None:
    for frame in range(first, first + count):
        writer.write_frame(caller_signal(frame), agent_signal(frame))


def test_wav_frame_capacity_is_exact() -> None:
    assert wav_frames_per_chunk(DEFAULT_CHUNK_SIZE, 2) == (DEFAULT_CHUNK_SIZE - 44) // 640
    frames = wav_frames_per_chunk(DEFAULT_CHUNK_SIZE, 2)
    assert WAV_HEADER_BYTES + frames * 640 <= DEFAULT_CHUNK_SIZE < WAV_HEADER_BYTES + (frames + 1) * 640


def test_stereo_wav_chunks_are_playable_within_limit_and_contiguous(tmp_path: Path) -> None:
    limit = WAV_HEADER_BYTES + 10 * STEREO_FRAME_BYTES + 300  # ten frames fit, not eleven
    writer = RecordingWriter(
        tmp_path,
        "rec-1",
        contact_id="contact-1",
        queue="sales",
        config=WriterConfig(chunk_size=limit),
        wall_clock=lambda: 1_700_000_000.0,
    )
    writer.start()
    write_frames(writer, 95)
    manifest = writer.close()

    assert manifest.state == STATE_COMPLETE
    assert [c.index for c in manifest.chunks] == list(range(10))
    on_disk = read_manifest(tmp_path / "rec-1")
    assert on_disk.to_json() == manifest.to_json()
    decoded = []
    expected_start = 0
    for chunk in manifest.chunks:
        path = tmp_path / "rec-1" / chunk.file_name
        assert path.stat().st_size == chunk.size <= limit
        assert sha256_file(path) == chunk.sha256
        assert chunk.start_sample == expected_start
        data, rate = decode(path)
        assert rate == 8000 and data.shape[1] == 2
        assert data.shape[0] == chunk.sample_count
        with wave.open(str(path)) as w:  # the header sizes agree with the data
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
            assert w.getnframes() == chunk.sample_count
        decoded.append(data)
        expected_start += chunk.sample_count
    assert [c.sample_count for c in manifest.chunks] == [1600] * 9 + [800]
    audio = np.concatenate(decoded)
    expected_caller = np.concatenate([caller_signal(f) for f in range(95)])
    expected_agent = np.concatenate([agent_signal(f) for f in range(95)])
    np.testing.assert_array_equal(audio[:, 0], expected_caller)  # left: caller, no gap, no repeat
    np.testing.assert_array_equal(audio[:, 1], expected_agent)  # right: agent
    assert manifest.duration == pytest.approx(95 * 0.02)
    assert manifest.started_at == 1_700_000_000.0 and manifest.ended_at == 1_700_000_000.0
    figures = writer.figures()
    assert (figures.frames_queued, figures.frames_written, figures.frames_dropped) == (95, 95, 0)
    assert figures.chunks_closed == 10


def test_seventy_megabytes_become_a_fifty_and_a_twenty_megabyte_chunk(tmp_path: Path) -> None:
    audio_bytes = 70 * 1024 * 1024  # 70 MB as the store counts them (MiB), like the 50 MB limit
    frames = audio_bytes // STEREO_FRAME_BYTES  # 114,688 frames, about 38 minutes
    writer = RecordingWriter(tmp_path, "long", contact_id="c", config=WriterConfig())
    writer.start()
    caller = np.full(FRAME_SAMPLES, 1000, dtype=np.int16)
    agent = np.full(FRAME_SAMPLES, -1000, dtype=np.int16)
    for frame in range(frames):
        writer.write_frame(caller, agent)
        if frame % 1000 == 0:  # faster than real time: give the disk the time a real call would
            while writer.figures().queue_depth > 5000:
                time.sleep(0.001)
    manifest = writer.close()
    assert writer.figures().frames_dropped == 0
    sizes = [c.size for c in manifest.chunks]
    assert len(sizes) == 2
    assert sizes[0] == WAV_HEADER_BYTES + wav_frames_per_chunk(DEFAULT_CHUNK_SIZE, 2) * STEREO_FRAME_BYTES
    assert sizes[0] <= DEFAULT_CHUNK_SIZE
    assert sizes[1] == WAV_HEADER_BYTES + audio_bytes - (sizes[0] - WAV_HEADER_BYTES)
    assert 20 * 1024 * 1024 <= sizes[1] < 20 * 1024 * 1024 + 1024


def test_mono_wav_mixes_with_saturation(tmp_path: Path) -> None:
    config = WriterConfig(format=RecordingFormat.WAV_MONO, chunk_size=WAV_HEADER_BYTES + 7 * 320)
    writer = RecordingWriter(tmp_path, "mono", contact_id="c", config=config)
    writer.start()
    loud = np.full(FRAME_SAMPLES, 30000, dtype=np.int16)
    for frame in range(20):
        writer.write_frame(caller_signal(frame), agent_signal(frame))
    writer.write_frame(loud, loud)
    manifest = writer.close()
    audio = np.concatenate([decode(tmp_path / "mono" / c.file_name)[0] for c in manifest.chunks])
    assert audio.shape[1] == 1 and manifest.channels == 1
    expected = np.concatenate(
        [caller_signal(f).astype(np.int32) + agent_signal(f).astype(np.int32) for f in range(20)]
        + [np.full(FRAME_SAMPLES, 32767)]
    )
    np.testing.assert_array_equal(audio[:, 0], expected)
    assert all(c.size <= config.chunk_size for c in manifest.chunks)


def dominant_frequency(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal.astype(np.float64) * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[int(np.argmax(spectrum))])


def test_opus_chunks_are_playable_within_limit_with_the_right_channels(tmp_path: Path) -> None:
    config = WriterConfig(format=RecordingFormat.OPUS, chunk_size=12_000)
    writer = RecordingWriter(tmp_path, "opus", contact_id="c", config=config)
    writer.start()
    t = np.arange(FRAME_SAMPLES) / 8000
    frames = 500  # 10 s
    for frame in range(frames):
        offset = frame * FRAME_SAMPLES / 8000
        caller = (8000 * np.sin(2 * np.pi * 440 * (t + offset))).astype(np.int16)
        agent = (8000 * np.sin(2 * np.pi * 1000 * (t + offset))).astype(np.int16)
        writer.write_frame(caller, agent)
    manifest = writer.close()
    assert len(manifest.chunks) >= 2
    assert manifest.format == "opus"
    total = 0
    for chunk in manifest.chunks:
        path = tmp_path / "opus" / chunk.file_name
        assert path.stat().st_size == chunk.size <= config.chunk_size
        data, rate = decode(path)
        assert data.shape[1] == 2
        samples_8k = data.shape[0] * 8000 // rate
        assert abs(samples_8k - chunk.sample_count) <= 2 * FRAME_SAMPLES  # codec delay/padding
        total += chunk.sample_count
        middle = data[data.shape[0] // 4 : data.shape[0] // 4 + rate // 2]
        assert dominant_frequency(middle[:, 0], rate) == pytest.approx(440, abs=5)
        assert dominant_frequency(middle[:, 1], rate) == pytest.approx(1000, abs=5)
    assert total == frames * FRAME_SAMPLES


def test_paused_spans_are_silence_and_listed(tmp_path: Path) -> None:
    limit = WAV_HEADER_BYTES + 15 * STEREO_FRAME_BYTES
    writer = RecordingWriter(tmp_path, "pause", contact_id="c", config=WriterConfig(chunk_size=limit))
    writer.start()
    write_frames(writer, 20, 0)
    writer.pause()
    writer.pause()  # idempotent
    assert writer.paused
    write_frames(writer, 20, 20)
    writer.resume()
    write_frames(writer, 10, 40)
    writer.pause()
    write_frames(writer, 5, 50)  # paused until close
    manifest = writer.close()

    spans = [(s.start_sample, s.end_sample) for s in manifest.paused_spans]
    assert spans == [(3200, 6400), (8000, 8800)]
    assert manifest.paused_spans[0].start_seconds == pytest.approx(0.4)
    assert manifest.paused_spans[0].end_seconds == pytest.approx(0.8)
    on_disk = json.loads((tmp_path / "pause" / "manifest.json").read_text())
    assert on_disk["paused_spans"][0] == {
        "start_sample": 3200,
        "end_sample": 6400,
        "start_seconds": 0.4,
        "end_seconds": 0.8,
    }
    audio = np.concatenate([decode(tmp_path / "pause" / c.file_name)[0] for c in manifest.chunks])
    expected = np.concatenate([caller_signal(f) for f in range(55)])
    assert audio.shape[0] == 55 * FRAME_SAMPLES
    assert not audio[3200:6400].any() and not audio[8000:8800].any()
    np.testing.assert_array_equal(audio[:3200, 0], expected[:3200])
    np.testing.assert_array_equal(audio[6400:8000, 0], expected[6400:8000])


def test_write_frame_rejects_misuse(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path, "misuse", contact_id="c")
    with pytest.raises(LocalError):
        writer.write_frame(caller_signal(0), agent_signal(0))  # not started
    writer.start()
    with pytest.raises(LocalError):
        writer.write_frame(np.zeros(80, dtype=np.int16), agent_signal(0))
    writer.close()
    with pytest.raises(LocalError):
        writer.write_frame(caller_signal(0), agent_signal(0))  # closed
    with pytest.raises(ConfigError):
        WriterConfig(chunk_size=100)
    with pytest.raises(ConfigError):
        WriterConfig(batch_frames=50, warn_queue_frames=50)
    with pytest.raises(LocalError):
        RecordingWriter(tmp_path, "../escape", contact_id="c")


def test_slow_disk_is_counted_logged_and_listed_never_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gate = threading.Event()
    original = writer_module._WavSink.write

    def slow_write(self: writer_module._WavSink, pcm: np.ndarray) -> None:
        gate.wait(10)
        original(self, pcm)

    monkeypatch.setattr(writer_module._WavSink, "write", slow_write)
    config = WriterConfig(max_queue_frames=5, warn_queue_frames=3, batch_frames=1)
    writer = RecordingWriter(tmp_path, "slow", contact_id="c", config=config)
    writer.start()
    with caplog.at_level(logging.WARNING, logger="mediagw.recording.writer"):
        write_frames(writer, 30)  # returns at once although the disk is stuck
        figures = writer.figures()
        assert figures.frames_dropped > 0
        assert figures.frames_queued + figures.frames_dropped == 30
        assert figures.max_lag_frames == 5
        assert figures.max_lag_seconds == pytest.approx(0.1)
        gate.set()
        manifest = writer.close()
    assert "falling behind" in caplog.text and "dropping frames" in caplog.text
    final = writer.figures()
    assert final.frames_written == final.frames_queued
    assert sum(s.frames for s in manifest.dropped_spans) == final.frames_dropped
    assert manifest.total_samples == final.frames_written * FRAME_SAMPLES


async def test_aclose_does_not_block_the_loop(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path, "async", contact_id="c")
    writer.start()
    write_frames(writer, 10)
    manifest = await writer.aclose()
    assert manifest.state == STATE_COMPLETE and manifest.total_samples == 1600


def test_recover_repairs_a_torn_wav_chunk(tmp_path: Path) -> None:
    directory = tmp_path / "torn"
    directory.mkdir()
    pcm = np.stack([np.concatenate([caller_signal(f) for f in range(4)])] * 2, axis=1).astype("<i2")
    payload = pcm.tobytes()[: int(3.5 * STEREO_FRAME_BYTES)]  # three and a half frames
    (directory / "torn-00000.wav").write_bytes(wav_header(2, 0) + payload)  # placeholder sizes
    manifest = Manifest(
        recording_id="torn",
        contact_id="c",
        queue="q",
        kind="call",
        format="wav",
        sample_rate=8000,
        channels=2,
        started_at=100.0,
        current_chunk=OpenChunk(0, "torn-00000.wav", 0),
        pause_start=160,
    )
    write_manifest(directory, manifest)

    assert recover(tmp_path) == ["torn"]
    repaired = read_manifest(directory)
    assert repaired.state == STATE_INTERRUPTED and repaired.current_chunk is None
    (chunk,) = repaired.chunks
    assert chunk.sample_count == 3 * FRAME_SAMPLES
    path = directory / chunk.file_name
    assert path.stat().st_size == chunk.size == WAV_HEADER_BYTES + 3 * STEREO_FRAME_BYTES
    assert sha256_file(path) == chunk.sha256
    assert struct.unpack("<I", path.read_bytes()[40:44])[0] == 3 * STEREO_FRAME_BYTES
    data, _ = decode(path)
    np.testing.assert_array_equal(data[:, 0], pcm[: 3 * FRAME_SAMPLES, 0])
    assert [(s.start_sample, s.end_sample) for s in repaired.paused_spans] == [(160, 480)]
    assert recover(tmp_path) == []  # idempotent: nothing left in state "recording"


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from mediagw.recording.writer import RecordingWriter, WriterConfig, FRAME_SAMPLES
    from mediagw.recording.writer import RecordingFormat
    fmt = RecordingFormat(sys.argv[2])
    limit = 44 + 25 * 640 if fmt is not RecordingFormat.OPUS else 12_000
    writer = RecordingWriter(sys.argv[1], "killed", contact_id="c-9", queue="support",
                             config=WriterConfig(format=fmt, chunk_size=limit, header_update_frames=5))
    writer.start()
    frame = 0
    announced = False
    while True:
        start = frame * FRAME_SAMPLES
        caller = (np.arange(start, start + FRAME_SAMPLES) % 30000).astype(np.int16)
        agent = (-(np.arange(start, start + FRAME_SAMPLES) % 20000) - 1).astype(np.int16)
        writer.write_frame(caller, agent)
        frame += 1
        if frame == 30:
            writer.pause()
        if frame == 40:
            writer.resume()
        if not announced and writer.figures().frames_written >= int(sys.argv[3]):
            print("ready", flush=True)
            announced = True
        time.sleep(0.001)
    """
)


def test_kill_minus_nine_while_writing_is_recovered(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path), "wav", "80"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL

    assert read_manifest(tmp_path / "killed").state == STATE_RECORDING
    assert recover(tmp_path) == ["killed"]
    manifest = read_manifest(tmp_path / "killed")
    assert manifest.state == STATE_INTERRUPTED
    assert manifest.contact_id == "c-9" and manifest.queue == "support"
    assert manifest.ended_at is not None and manifest.ended_at >= manifest.started_at
    assert len(manifest.chunks) >= 4
    start = 0
    decoded = []
    for index, chunk in enumerate(manifest.chunks):
        path = tmp_path / "killed" / chunk.file_name
        assert chunk.index == index and chunk.start_sample == start
        assert path.stat().st_size == chunk.size <= 44 + 25 * 640
        assert sha256_file(path) == chunk.sha256
        with wave.open(str(path)) as w:
            assert w.getnframes() == chunk.sample_count
        data, _ = decode(path)
        assert data.shape[0] == chunk.sample_count
        decoded.append(data)
        start += chunk.sample_count
    audio = np.concatenate(decoded)
    frames = audio.shape[0] // FRAME_SAMPLES
    assert frames >= 80 and audio.shape[0] % FRAME_SAMPLES == 0
    expected = np.concatenate([caller_signal(f) for f in range(frames)])
    expected[30 * FRAME_SAMPLES : 40 * FRAME_SAMPLES] = 0
    np.testing.assert_array_equal(audio[:, 0], expected)
    assert [(s.start_sample, s.end_sample) for s in manifest.paused_spans] == [(4800, 6400)]


def test_a_disk_error_is_reported_and_the_recording_salvaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = writer_module._WavSink.write
    written = [0]
    failed = threading.Event()

    def failing_write(self: writer_module._WavSink, pcm: np.ndarray) -> None:
        if written[0] == 12:
            failed.set()
            raise OSError(28, "No space left on device")
        written[0] += 1
        original(self, pcm)

    monkeypatch.setattr(writer_module._WavSink, "write", failing_write)
    writer = RecordingWriter(tmp_path, "full", contact_id="c", config=WriterConfig())
    writer.start()
    write_frames(writer, 20)
    assert failed.wait(5)
    writer._thread.join(5)  # type: ignore[union-attr]
    write_frames(writer, 5, 20)  # the call goes on; frames are counted as dropped
    figures = writer.figures()
    assert figures.error is not None and "No space left" in figures.error
    assert figures.frames_written == 12
    assert figures.frames_dropped >= 5
    manifest = writer.close()
    assert manifest.state == STATE_INTERRUPTED
    assert manifest.total_samples == 12 * FRAME_SAMPLES
    data, _ = decode(tmp_path / "full" / manifest.chunks[0].file_name)
    np.testing.assert_array_equal(data[:, 0], np.concatenate([caller_signal(f) for f in range(12)]))
    assert "writer failed" in caplog.text


def test_kill_minus_nine_of_an_opus_recording_is_recovered(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path), "opus", "700"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert recover(tmp_path) == ["killed"]
    manifest = read_manifest(tmp_path / "killed")
    assert manifest.state == STATE_INTERRUPTED and len(manifest.chunks) >= 2
    start = 0
    for chunk in manifest.chunks:
        path = tmp_path / "killed" / chunk.file_name
        assert chunk.start_sample == start and path.stat().st_size == chunk.size <= 12_000
        assert sha256_file(path) == chunk.sha256
        data, rate = decode(path)
        assert abs(data.shape[0] * 8000 // rate - chunk.sample_count) <= 2 * FRAME_SAMPLES
        start += chunk.sample_count
    # Everything but the Ogg page being filled at the kill (200 ms) and the encoder's look-ahead survives.
    assert manifest.total_samples >= (700 - 20) * FRAME_SAMPLES


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    frames_per_chunk=st.integers(min_value=1, max_value=12),
    spare_bytes=st.integers(min_value=0, max_value=639),
    frames=st.integers(min_value=0, max_value=60),
    mono=st.booleans(),
)
def test_any_chunk_size_keeps_every_sample_once(
    tmp_path_factory: pytest.TempPathFactory, frames_per_chunk: int, spare_bytes: int, frames: int, mono: bool
) -> None:
    fmt = RecordingFormat.WAV_MONO if mono else RecordingFormat.WAV_STEREO
    frame_bytes = FRAME_SAMPLES * 2 * fmt.channels
    limit = WAV_HEADER_BYTES + frames_per_chunk * frame_bytes + spare_bytes % frame_bytes
    directory = tmp_path_factory.mktemp("prop")
    writer = RecordingWriter(
        directory, "p", contact_id="c", config=WriterConfig(format=fmt, chunk_size=limit)
    )
    writer.start()
    silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    for frame in range(frames):
        writer.write_frame(caller_signal(frame), silence)
    manifest = writer.close()
    assert len(manifest.chunks) == max(1, -(-frames // frames_per_chunk))
    with_data = [c for c in manifest.chunks if c.sample_count]
    assert all(c.size <= limit for c in manifest.chunks)
    audio = (
        np.concatenate([decode(directory / "p" / c.file_name)[0][:, 0] for c in with_data])
        if with_data
        else np.zeros(0, dtype=np.int16)
    )
    expected = np.concatenate([caller_signal(f) for f in range(frames)]) if frames else np.zeros(0)
    np.testing.assert_array_equal(audio, expected)
