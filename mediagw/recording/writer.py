"""The chunked recording writer and crash recovery.

Theory of operation
-------------------
The media clock calls :meth:`RecordingWriter.write_frame` every 20 ms with the caller's and the agent's
160 samples. That call only copies the samples onto an in-memory queue and wakes the writer's own thread;
it never touches the disk and never blocks, so a slow disk cannot stall the call's audio.

The writer thread drains the queue in order and appends each frame to the open chunk:

* stereo WAV (default): caller on the left channel, agent on the right, 16-bit PCM at 8 kHz;
* mono WAV: caller and agent mixed with saturation;
* Ogg/Opus: both channels encoded by libopus through PyAV (compact; for long-term storage).

A chunk is a complete, playable file of at most ``chunk_size`` bytes, cut on a 20 ms frame boundary. For
WAV the number of frames per chunk is exact: ``44 + n * frame_bytes <= chunk_size``. For Opus the writer
keeps a conservative estimate of the container's size (packet bytes plus Ogg page overhead plus a reserve
for the encoder's final packets) and starts the next chunk before the estimate could pass the limit.

Crash safety: a WAV chunk is created with a placeholder header (zero sizes) and its RIFF and data sizes
are rewritten every ``header_update_frames`` frames (one second by default) and at close; a closed chunk is
fsynced before the manifest lists it. The manifest always names the chunk being written
(``current_chunk``), so :func:`recover` can, after a ``kill -9`` or power loss, cut the open chunk back to
the last whole frame, fix its header, hash it and mark the recording ``interrupted``. An Ogg/Opus chunk
reaches the disk page by page (200 ms each); recovery cuts it back to its last complete page.

Batching: the thread wakes once per ``batch_frames`` frames (200 ms by default) and drains everything
queued, so hundreds of concurrent recordings cost hundreds of wake-ups per second, not thousands.

Back-pressure: the queue holds up to ``max_queue_frames`` frames (five minutes by default). Past
``warn_queue_frames`` the writer logs a warning once per episode; past the bound it drops frames, counts
them in :meth:`RecordingWriter.figures`, logs, and lists the gap in the manifest (``dropped_spans``), so
nothing is ever lost silently and the call goes on.

Pause/resume (redaction) are queued in order with the frames: while paused, frames are written as silence,
and each paused span is listed in the manifest in samples and seconds.
"""

from __future__ import annotations

import enum
import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from mediagw.errors import ConfigError, LocalError
from mediagw.recording.manifest import (
    CONFIG_SOURCE,
    KIND_CALL,
    RECORDING_KINDS,
    STATE_COMPLETE,
    STATE_INTERRUPTED,
    STATE_RECORDING,
    ChunkInfo,
    DroppedSpan,
    Manifest,
    ManifestError,
    OpenChunk,
    PausedSpan,
    fsync_directory,
    iter_recording_dirs,
    read_manifest,
    sha256_file,
    write_manifest,
)

logger = logging.getLogger(__name__)

SAMPLE_RATE = 8000  # Hz, G.711 narrowband
FRAME_SAMPLES = 160  # samples per channel in one 20 ms frame at 8 kHz
FRAME_SECONDS = 0.020
SAMPLE_BYTES = 2  # 16-bit PCM
WAV_HEADER_BYTES = 44  # RIFF + fmt (PCM, 16 bytes) + data chunk header
DEFAULT_CHUNK_SIZE = 52_428_800  # bytes, 50 MiB: the largest object the recording store accepts
DEFAULT_OPUS_BITRATE = 32_000  # bits per second (stereo), CBR


class RecordingFormat(str, enum.Enum):
    """File formats the writer produces."""

    WAV_STEREO = "wav"
    """16-bit PCM WAV, 8 kHz, caller left and agent right."""
    WAV_MONO = "wav-mono"
    """16-bit PCM WAV, 8 kHz, caller and agent mixed."""
    OPUS = "opus"
    """Ogg/Opus (libopus via PyAV), 8 kHz input, caller left and agent right."""

    @property
    def channels(self) -> int:
        """Channels in the file."""
        return 1 if self is RecordingFormat.WAV_MONO else 2

    @property
    def extension(self) -> str:
        """File name extension of a chunk."""
        return "ogg" if self is RecordingFormat.OPUS else "wav"

    @property
    def content_type(self) -> str:
        """MIME type of a chunk."""
        return "audio/ogg" if self is RecordingFormat.OPUS else "audio/wav"


@dataclass(frozen=True, slots=True)
class WriterConfig:
    """How a writer cuts and writes its files."""

    format: RecordingFormat = RecordingFormat.WAV_STEREO
    chunk_size: int = DEFAULT_CHUNK_SIZE
    """Largest chunk file in bytes."""
    header_update_frames: int = 50
    """Rewrite the WAV header sizes (and flush) every this many frames: 50 frames = 1 s."""
    max_queue_frames: int = 15_000
    """Frames buffered in memory before the writer drops (15,000 = 5 min, about 9.6 MB stereo)."""
    warn_queue_frames: int = 50
    """Queue depth (frames) that counts as the disk falling behind and is logged (50 = 1 s)."""
    opus_bitrate: int = DEFAULT_OPUS_BITRATE
    """Opus bit rate in bits per second (constant bit rate)."""
    batch_frames: int = 10
    """The writer thread wakes once per this many frames (10 = 200 ms), not per frame: with hundreds
    of recordings, per-frame wake-ups would make the threads fight the media clock for the GIL."""

    def __post_init__(self) -> None:
        minimum = WAV_HEADER_BYTES + FRAME_SAMPLES * SAMPLE_BYTES * self.format.channels
        if self.format is RecordingFormat.OPUS:
            minimum = _OPUS_RESERVE_BYTES + 8 * (_opus_packet_bytes(self.opus_bitrate) + 30)
        if self.chunk_size < minimum:
            raise ConfigError(
                CONFIG_SOURCE, "recording.chunk_size", f"{self.chunk_size} is below {minimum} bytes"
            )
        if self.header_update_frames < 1:
            raise ConfigError(CONFIG_SOURCE, "recording.header_update_frames", "must be at least 1")
        if self.batch_frames < 1:
            raise ConfigError(CONFIG_SOURCE, "recording.batch_frames", "must be at least 1")
        if not self.batch_frames < self.warn_queue_frames <= self.max_queue_frames:
            raise ConfigError(
                CONFIG_SOURCE,
                "recording.max_queue_frames",
                "need batch_frames < warn_queue_frames <= max_queue_frames",
            )


@dataclass(frozen=True, slots=True)
class WriterFigures:
    """Counters of one writer, for the API and the logs."""

    frames_queued: int
    """Frames accepted by write_frame."""
    frames_written: int
    """Frames the writer thread has appended to a chunk."""
    frames_dropped: int
    """Frames refused because the queue was full (or the writer failed); listed in the manifest."""
    queue_depth: int
    """Frames waiting for the disk now."""
    max_lag_frames: int
    """Deepest the queue has been."""
    chunks_closed: int
    """Chunks finished and listed in the manifest."""
    error: str | None
    """Why the writer thread stopped, if it failed."""

    @property
    def max_lag_seconds(self) -> float:
        """Deepest the queue has been, in seconds of audio."""
        return self.max_lag_frames * FRAME_SECONDS


Samples = npt.NDArray[np.int16]


def chunk_file_name(recording_id: str, index: int, fmt: RecordingFormat) -> str:
    """File name of chunk ``index`` of a recording."""
    return f"{recording_id}-{index:05d}.{fmt.extension}"


def wav_header(channels: int, data_bytes: int, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 44-byte canonical PCM WAV header for ``data_bytes`` of 16-bit samples."""
    block_align = channels * SAMPLE_BYTES
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # WAVE_FORMAT_PCM
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        SAMPLE_BYTES * 8,
        b"data",
        data_bytes,
    )


def wav_frames_per_chunk(chunk_size: int, channels: int) -> int:
    """How many 20 ms frames fit in a WAV chunk of at most ``chunk_size`` bytes."""
    return (chunk_size - WAV_HEADER_BYTES) // (FRAME_SAMPLES * SAMPLE_BYTES * channels)


class _ChunkSink(Protocol):
    def has_room(self) -> bool: ...

    def write(self, pcm: Samples) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> int: ...


class _WavSink:
    """One WAV chunk being written, with a placeholder header that is kept up to date."""

    def __init__(self, path: Path, channels: int, chunk_size: int) -> None:
        self._channels = channels
        self._frame_bytes = FRAME_SAMPLES * SAMPLE_BYTES * channels
        self._capacity = wav_frames_per_chunk(chunk_size, channels)
        self._frames = 0
        self._handle = open(path, "wb")  # noqa: SIM115 (open for the chunk's life; close() closes it)
        self._handle.write(wav_header(channels, 0))

    def has_room(self) -> bool:
        return self._frames < self._capacity

    def write(self, pcm: Samples) -> None:
        self._handle.write(pcm.astype("<i2", copy=False).tobytes())
        self._frames += 1

    def sync(self) -> None:
        data_bytes = self._frames * self._frame_bytes
        self._handle.seek(4)
        self._handle.write(struct.pack("<I", 36 + data_bytes))
        self._handle.seek(40)
        self._handle.write(struct.pack("<I", data_bytes))
        self._handle.seek(0, os.SEEK_END)
        self._handle.flush()

    def close(self) -> int:
        self.sync()
        os.fsync(self._handle.fileno())
        self._handle.close()
        return self._frames * FRAME_SAMPLES


_OPUS_RESERVE_BYTES = 4096  # stream headers (OpusHead, OpusTags) and slack for the final page
_OGG_PAGE_HEADER = 27  # bytes before the lacing table of each page (RFC 3533 §6)
_OGG_PACKETS_PER_PAGE_MIN = 5  # pages hold 200 ms (10 packets); assume half that, conservatively


def _opus_packet_bytes(bitrate: int) -> int:
    return bitrate * 20 // 8000 + 8  # one 20 ms CBR packet, with slack for TOC/padding


class _OpusSink:
    """One Ogg/Opus chunk encoded by PyAV (libopus) with a conservative running size estimate."""

    def __init__(self, path: Path, channels: int, chunk_size: int, bitrate: int) -> None:
        import av  # deferred: only Opus recordings need the codec libraries

        self._av = av
        self._layout = "stereo" if channels == 2 else "mono"
        # flush_packets: each finished Ogg page reaches the file at once, so a crash loses at most the
        # page being filled (page_duration: 200 ms of audio, in microseconds).
        self._container: Any = av.open(
            str(path), "w", format="ogg", options={"flush_packets": "1", "page_duration": "200000"}
        )
        self._stream: Any = self._container.add_stream("libopus", rate=SAMPLE_RATE, layout=self._layout)
        self._stream.bit_rate = bitrate
        self._stream.codec_context.options = {"vbr": "off", "application": "voip"}
        self._limit = chunk_size
        self._packet_max = _opus_packet_bytes(bitrate)
        self._payload = 0  # packet bytes plus their lacing values
        self._packets = 0
        self._frames = 0
        self._path = path

    def _estimate(self) -> int:
        pages = self._packets // _OGG_PACKETS_PER_PAGE_MIN + 1
        return _OPUS_RESERVE_BYTES + self._payload + pages * _OGG_PAGE_HEADER

    def has_room(self) -> bool:
        # Room for this frame plus up to three packets the encoder may still flush at close, each on
        # its own page in the worst case.
        per_packet = self._packet_max + self._packet_max // 255 + 1 + _OGG_PAGE_HEADER
        return self._estimate() + 4 * per_packet <= self._limit

    def write(self, pcm: Samples) -> None:
        frame = self._av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=self._layout)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._frames * FRAME_SAMPLES
        self._mux(self._stream.encode(frame))
        self._frames += 1

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self._payload += packet.size + packet.size // 255 + 1
            self._packet_max = max(self._packet_max, packet.size)
            self._packets += 1
            self._container.mux(packet)

    def sync(self) -> None:
        """Ogg is a streaming format: pages already on disk stay playable; nothing to rewrite."""

    def close(self) -> int:
        self._mux(self._stream.encode(None))
        self._container.close()
        with open(self._path, "rb+") as handle:
            os.fsync(handle.fileno())
        return self._frames * FRAME_SAMPLES


_FRAME = 0
_PAUSE = 1
_RESUME = 2
_CLOSE = 3
_GAP = 4


class RecordingWriter:
    """Writes one recording as numbered chunk files plus a manifest, from its own thread.

    Use: ``writer.start()``, then ``write_frame`` every 20 ms from the media clock, ``pause``/``resume``
    around sensitive audio, and ``await writer.aclose()`` (or ``close()`` off the event loop) at hang-up.
    """

    def __init__(
        self,
        recordings_dir: Path | str,
        recording_id: str,
        *,
        contact_id: str,
        queue: str = "",
        kind: str = KIND_CALL,
        config: WriterConfig | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if kind not in RECORDING_KINDS:
            raise LocalError(f"unknown recording kind {kind!r}")
        if not recording_id or "/" in recording_id or recording_id.startswith("."):
            raise LocalError(f"invalid recording id {recording_id!r}")
        self.recording_id = recording_id
        self.config = config if config is not None else WriterConfig()
        self.directory = Path(recordings_dir) / recording_id
        self._wall_clock = wall_clock
        self._channels = self.config.format.channels
        self._manifest = Manifest(
            recording_id=recording_id,
            contact_id=contact_id,
            queue=queue,
            kind=kind,
            format=self.config.format.value,
            sample_rate=SAMPLE_RATE,
            channels=self._channels,
            started_at=0.0,
        )
        self._queue: deque[tuple[Any, ...]] = deque()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._paused = False  # as seen by the producer
        self._pending_drop = 0
        self._lagging = False
        # Counters: each written by exactly one thread, read by figures().
        self._frames_queued = 0
        self._frames_dropped = 0
        self._max_lag = 0
        self._frames_written = 0
        self._chunks_closed = 0
        self._error: str | None = None
        # Writer-thread state.
        self._sink: _ChunkSink | None = None
        self._chunk_index = 0
        self._chunk_start = 0
        self._samples_written = 0
        self._pause_start: int | None = None
        self._silence = np.zeros(FRAME_SAMPLES * self._channels, dtype=np.int16)

    # ---- producer side (event loop) ------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread; the directory and first chunk are created there, not here."""
        if self._thread is not None:
            raise LocalError(f"recording {self.recording_id} already started")
        self._manifest.started_at = self._wall_clock()
        self._thread = threading.Thread(target=self._run, name=f"recording-{self.recording_id}", daemon=True)
        self._thread.start()

    def write_frame(self, caller: npt.ArrayLike, agent: npt.ArrayLike) -> None:
        """Queue one 20 ms frame (160 int16 samples per party); never blocks, never touches the disk.

        Raises LocalError for a frame of the wrong size or a writer that is not running (a bug).
        """
        if self._thread is None or self._closing:
            raise LocalError(f"recording {self.recording_id} is not accepting frames")
        left = np.array(caller, dtype=np.int16, copy=True).reshape(-1)
        right = np.array(agent, dtype=np.int16, copy=True).reshape(-1)
        if left.shape[0] != FRAME_SAMPLES or right.shape[0] != FRAME_SAMPLES:
            raise LocalError(
                f"frame must hold {FRAME_SAMPLES} samples per party, got {left.shape[0]} and {right.shape[0]}"
            )
        depth = len(self._queue)
        if depth >= self.config.max_queue_frames or self._error is not None:
            self._frames_dropped += 1
            self._pending_drop += 1
            if self._pending_drop == 1:
                logger.warning(
                    "recording %s: dropping frames, writer %s (queue %d frames)",
                    self.recording_id,
                    "failed: " + self._error if self._error else "behind",
                    depth,
                )
            return
        if self._pending_drop:
            logger.warning("recording %s: dropped %d frames", self.recording_id, self._pending_drop)
            self._queue.append((_GAP, self._pending_drop))
            self._pending_drop = 0
        self._queue.append((_FRAME, left, right))
        self._frames_queued += 1
        depth += 1
        self._max_lag = max(self._max_lag, depth)
        if depth >= self.config.warn_queue_frames and not self._lagging:
            self._lagging = True
            logger.warning(
                "recording %s: disk falling behind, %d frames (%.2f s) queued",
                self.recording_id,
                depth,
                depth * FRAME_SECONDS,
            )
        elif self._lagging and depth < self.config.warn_queue_frames // 2:
            self._lagging = False
        if depth >= self.config.batch_frames and not self._wakeup.is_set():
            self._wakeup.set()  # otherwise the thread wakes on its own every batch period

    def pause(self) -> None:
        """From the next frame on, write silence (redaction) until resume(); idempotent."""
        if self._paused or self._thread is None or self._closing:
            return
        self._paused = True
        self._queue.append((_PAUSE,))
        self._wakeup.set()

    def resume(self) -> None:
        """Write the parties' audio again after pause(); idempotent."""
        if not self._paused or self._thread is None or self._closing:
            return
        self._paused = False
        self._queue.append((_RESUME,))
        self._wakeup.set()

    @property
    def paused(self) -> bool:
        """Whether frames written now become silence."""
        return self._paused

    def stop(self) -> None:
        """Ask the writer to finish after the queued frames; returns at once."""
        if self._thread is None or self._closing:
            return
        self._closing = True
        if self._pending_drop:
            self._queue.append((_GAP, self._pending_drop))
            self._pending_drop = 0
        self._queue.append((_CLOSE, self._wall_clock()))
        self._wakeup.set()

    def close(self, timeout: float | None = None) -> Manifest:
        """Stop and wait for the thread (blocking: call off the event loop, or use aclose)."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.manifest

    async def aclose(self) -> Manifest:
        """Stop and wait for the writer thread without blocking the event loop."""
        import asyncio

        self.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        return self.manifest

    @property
    def manifest(self) -> Manifest:
        """A copy of the manifest as the writer thread last left it."""
        return self._manifest.copy()

    def figures(self) -> WriterFigures:
        """Current counters (safe to call from any thread)."""
        return WriterFigures(
            frames_queued=self._frames_queued,
            frames_written=self._frames_written,
            frames_dropped=self._frames_dropped,
            queue_depth=len(self._queue),
            max_lag_frames=self._max_lag,
            chunks_closed=self._chunks_closed,
            error=self._error,
        )

    # ---- writer thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fsync_directory(self.directory.parent)
            self._open_chunk()
            since_sync = 0
            while True:
                self._wakeup.wait(self.config.batch_frames * FRAME_SECONDS)
                self._wakeup.clear()
                while self._queue:
                    item = self._queue.popleft()
                    kind = item[0]
                    if kind == _FRAME:
                        self._write(item[1], item[2])
                        since_sync += 1
                        if since_sync >= self.config.header_update_frames:
                            assert self._sink is not None
                            self._sink.sync()
                            since_sync = 0
                    elif kind == _PAUSE:
                        self._pause_start = self._samples_written
                        self._manifest.pause_start = self._pause_start
                        write_manifest(self.directory, self._manifest)
                    elif kind == _RESUME:
                        self._end_pause()
                        write_manifest(self.directory, self._manifest)
                    elif kind == _GAP:
                        self._manifest.dropped_spans.append(DroppedSpan(self._samples_written, item[1]))
                        write_manifest(self.directory, self._manifest)
                    elif kind == _CLOSE:
                        self._finish(item[1])
                        return
        except Exception as exc:  # a disk error must not pass unnoticed, nor take the process down
            self._error = f"{type(exc).__name__}: {exc}"
            logger.exception("recording %s: writer failed; keeping what is on disk", self.recording_id)
            self._salvage()

    def _salvage(self) -> None:
        """After a failure: close the open file and repair the recording as ``interrupted`` if possible."""
        if self._sink is not None:
            try:
                self._sink.close()
            except Exception:
                logger.debug("recording %s: open chunk could not be closed", self.recording_id, exc_info=True)
            self._sink = None
        try:
            recover_recording(self.directory)
            self._manifest = read_manifest(self.directory)
        except Exception:
            logger.exception("recording %s: left as 'recording' for recover() at startup", self.recording_id)

    def _write(self, caller: Samples, agent: Samples) -> None:
        if self._pause_start is not None:
            pcm = self._silence
        elif self._channels == 2:
            pcm = np.empty(FRAME_SAMPLES * 2, dtype=np.int16)
            pcm[0::2] = caller
            pcm[1::2] = agent
        else:
            mixed = caller.astype(np.int32) + agent.astype(np.int32)
            pcm = np.clip(mixed, -32768, 32767).astype(np.int16)
        assert self._sink is not None
        if not self._sink.has_room():
            self._rotate()
        self._sink.write(pcm)
        self._samples_written += FRAME_SAMPLES
        self._frames_written += 1

    def _end_pause(self) -> None:
        if self._pause_start is not None:
            self._manifest.paused_spans.append(
                PausedSpan(self._pause_start, self._samples_written, SAMPLE_RATE)
            )
            self._pause_start = None
            self._manifest.pause_start = None

    def _open_chunk(self) -> None:
        name = chunk_file_name(self.recording_id, self._chunk_index, self.config.format)
        self._chunk_start = self._samples_written
        self._manifest.current_chunk = OpenChunk(self._chunk_index, name, self._chunk_start)
        # The manifest names the chunk before the file exists, so recovery always knows about it.
        write_manifest(self.directory, self._manifest)
        path = self.directory / name
        fmt = self.config.format
        if fmt is RecordingFormat.OPUS:
            self._sink = _OpusSink(path, self._channels, self.config.chunk_size, self.config.opus_bitrate)
        else:
            self._sink = _WavSink(path, self._channels, self.config.chunk_size)
        fsync_directory(self.directory)

    def _close_chunk(self) -> None:
        assert self._sink is not None and self._manifest.current_chunk is not None
        samples = self._sink.close()
        self._sink = None
        current = self._manifest.current_chunk
        path = self.directory / current.file_name
        self._manifest.chunks.append(
            ChunkInfo(
                index=current.index,
                file_name=current.file_name,
                size=path.stat().st_size,
                start_sample=current.start_sample,
                sample_count=samples,
                sha256=sha256_file(path),
                sample_rate=SAMPLE_RATE,
            )
        )
        self._manifest.current_chunk = None
        self._chunks_closed += 1

    def _rotate(self) -> None:
        self._close_chunk()
        self._chunk_index += 1
        self._open_chunk()  # writes the manifest listing the closed chunk and naming the new one

    def _finish(self, ended_at: float) -> None:
        self._end_pause()
        self._close_chunk()
        self._manifest.ended_at = ended_at
        self._manifest.state = STATE_COMPLETE
        write_manifest(self.directory, self._manifest)
        logger.info(
            "recording %s complete: %d chunks, %.2f s, %d frames dropped",
            self.recording_id,
            len(self._manifest.chunks),
            self._manifest.duration,
            self._frames_dropped,
        )


# ---- crash recovery -----------------------------------------------------------------------------------


def _repair_wav(path: Path, channels: int) -> int:
    """Cut a WAV chunk back to its last whole 20 ms frame and fix its header; returns samples/channel."""
    frame_bytes = FRAME_SAMPLES * SAMPLE_BYTES * channels
    size = path.stat().st_size
    data_bytes = max(0, size - WAV_HEADER_BYTES) // frame_bytes * frame_bytes
    with open(path, "r+b") as handle:
        handle.truncate(WAV_HEADER_BYTES + data_bytes)
        handle.seek(0)
        handle.write(wav_header(channels, data_bytes))
        handle.flush()
        os.fsync(handle.fileno())
    return data_bytes // (SAMPLE_BYTES * channels)


def _repair_ogg(path: Path) -> None:
    """Cut an Ogg file back to its last complete page (RFC 3533 §6 page layout)."""
    data = path.read_bytes()
    end = 0
    while end + 27 <= len(data) and data[end : end + 4] == b"OggS":
        segments = data[end + 26]
        table_end = end + 27 + segments
        if table_end > len(data):
            break
        page_end = table_end + sum(data[end + 27 : table_end])
        if page_end > len(data):
            break
        end = page_end
    if end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())


def _count_opus_samples(path: Path) -> int:
    """Samples per channel (at 8 kHz) that a possibly truncated Ogg/Opus chunk decodes to."""
    import av

    decoded = 0
    rate = SAMPLE_RATE
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or SAMPLE_RATE
            for frame in container.decode(stream):
                decoded += frame.samples
    except (av.FFmpegError, IndexError):
        logger.warning("recovery: %s decodes only partly", path)
    return decoded * SAMPLE_RATE // rate


def recover_recording(recording_dir: Path) -> bool:
    """Repair one recording if its manifest is still ``recording``; True when it was repaired.

    The open chunk is cut back to the data actually on disk (a whole number of frames), its header fixed,
    hashed and listed; a pause still open is closed at the end; the recording becomes ``interrupted`` with
    ``ended_at`` taken from the chunk file's modification time. Raises ManifestError for an unreadable
    manifest.
    """
    manifest = read_manifest(recording_dir)
    if manifest.state != STATE_RECORDING:
        return False
    ended_at = manifest.started_at
    current = manifest.current_chunk
    if current is not None:
        path = recording_dir / current.file_name
        if path.is_file():
            ended_at = max(ended_at, path.stat().st_mtime)
            if manifest.format == RecordingFormat.OPUS.value:
                _repair_ogg(path)
                samples = _count_opus_samples(path)
            else:
                samples = _repair_wav(path, manifest.channels)
            if samples > 0 or not manifest.chunks:
                manifest.chunks.append(
                    ChunkInfo(
                        index=current.index,
                        file_name=current.file_name,
                        size=path.stat().st_size,
                        start_sample=current.start_sample,
                        sample_count=samples,
                        sha256=sha256_file(path),
                        sample_rate=manifest.sample_rate,
                    )
                )
            else:
                path.unlink()
        manifest.current_chunk = None
    total = manifest.total_samples
    if manifest.pause_start is not None:
        manifest.paused_spans.append(PausedSpan(manifest.pause_start, total, manifest.sample_rate))
        manifest.pause_start = None
    manifest.paused_spans = [
        PausedSpan(s.start_sample, min(s.end_sample, total), s.sample_rate)
        for s in manifest.paused_spans
        if s.start_sample < total
    ]
    manifest.ended_at = ended_at
    manifest.state = STATE_INTERRUPTED
    write_manifest(recording_dir, manifest)
    logger.warning(
        "recovered interrupted recording %s: %d chunks, %.2f s",
        manifest.recording_id,
        len(manifest.chunks),
        manifest.duration,
    )
    return True


def recover(recordings_dir: Path | str) -> list[str]:
    """Repair every recording whose manifest is still ``recording``; returns the recovered ids.

    Call at startup, before any writer starts (a live writer's recording would be cut short).
    """
    recovered: list[str] = []
    for recording_dir in iter_recording_dirs(Path(recordings_dir)):
        try:
            if recover_recording(recording_dir):
                recovered.append(recording_dir.name)
        except ManifestError:
            logger.exception("recovery: unreadable manifest in %s; left for an operator", recording_dir)
        except OSError:
            logger.exception("recovery: cannot repair %s; left for the next start", recording_dir)
    return recovered
