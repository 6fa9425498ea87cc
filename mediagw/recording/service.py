"""The recording service: engine taps in, chunk files out, exports and retention in the background.

Theory of operation
-------------------
``RecordingService`` joins the parts of :mod:`mediagw.recording` to the media engine and the store:

* **Start-up** (:meth:`RecordingService.start`): :func:`mediagw.recording.writer.recover` repairs every
  recording a crash or ``kill -9`` left open (in a worker thread), then every finished recording on disk
  that the store does not know yet is registered with the durable export queue, and the
  :class:`~mediagw.recording.export.Exporter` and
  :class:`~mediagw.recording.retention.RetentionService` loops start as asyncio tasks (their file and
  network work runs in worker threads; the store is async).
* **Recording** (:meth:`start_recording`): once caller and agent are bridged the calls layer names their
  two engine slots; the service enables the engine's taps on both (what each slot *received*: the caller's
  voice and the agent's voice, never the whisper or countdown the agent heard) and starts a
  :class:`~mediagw.recording.writer.RecordingWriter`.
* **Every tick** (:meth:`on_tick`, called by the media clock right after ``engine.tick``): ONE batched
  hand-off for all recordings. The taps of the native engine are rows of one ``(slots, 160)`` int16 array,
  so a single ``take`` copies every active caller and agent row into one new ``(2 * n, 160)`` block; the
  block goes on the queue of one *hub* thread, which calls each writer's ``write_frame`` (which only
  enqueues for that writer's own disk thread). Nothing per recording runs on the event loop and nothing
  there touches a disk; a disk that falls behind shows in the writers' figures and logs, never in the tick.
* **Pause/resume/stop** go through the same hub queue, so they apply exactly between two ticks' frames.
  :meth:`stop_recording` detaches the recording from the tick at once (before the call's legs are
  removed, a slot can never be recorded for the wrong call) and returns a task that closes the writer off
  the loop and registers the chunks for export with the recording's targets.

A queue may export to some of the configured targets only: the names chosen at :meth:`start_recording`
are kept in the recording's directory (``export-targets.json``) so that a recording recovered after a
crash is exported where it would have been.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from mediagw.errors import LocalError
from mediagw.recording.config import ExportTargetConfig, RecordingConfig, resolve_directory
from mediagw.recording.export import BackoffPolicy, Exporter, ExportQueue, UnknownRecording
from mediagw.recording.manifest import (
    KIND_CALL,
    STATE_COMPLETE,
    STATE_INTERRUPTED,
    Manifest,
    ManifestError,
    iter_recording_dirs,
    read_manifest,
    write_json_atomic,
)
from mediagw.recording.retention import RetentionPolicy, RetentionService
from mediagw.recording.targets import DirectoryTarget, ExportTarget, HttpTarget, S3Credentials, S3Target
from mediagw.recording.writer import FRAME_SAMPLES, RecordingFormat, RecordingWriter, WriterFigures, recover
from mediagw.store.db import Database
from mediagw.store.models import (
    EXPORT_EXPORTED,
    JOB_ABANDONED,
    JOB_DONE,
    LOCAL_PRESENT,
    ExportJob,
    Recording,
    RecordingChunk,
)

logger = logging.getLogger(__name__)

RECORDINGS_SUBDIR = "recordings"
"""Recordings live in ``<data dir>/recordings/<recording id>/``."""
TARGETS_FILE = "export-targets.json"
"""Names of the targets a recording is exported to, next to its manifest."""
HUB_MAX_TICKS = 500  # ticks (10 s) the hub may lag before frames are dropped (only a starved CPU does that)
HUB_WARN_TICKS = 50  # ticks (1 s) of hub lag that are logged


class ChunkNotStored(UnknownRecording):
    """The recording exists but this chunk is not (or not yet, or no longer) a file on this gateway."""


class RecordingNotActive(LocalError):
    """No recording with that id is running on this gateway."""


class TapEngine(Protocol):
    """What the service needs of the media engine (``MediaEngine`` and ``ReferenceEngine`` both are)."""

    def enable_tap(self, slot: int, output: bool = True) -> None: ...

    def disable_tap(self, slot: int) -> None: ...

    def tap(self, slot: int) -> npt.NDArray[np.int16]: ...


def recordings_dir_of(data_dir: Path | str) -> Path:
    """Where a gateway with ``data_dir`` keeps its recordings."""
    return Path(data_dir) / RECORDINGS_SUBDIR


def new_recording_id(now: float | None = None) -> str:
    """A fresh recording id that sorts by start time: ``rec-YYYYMMDDTHHMMSSZ-<8 hex>``."""
    moment = datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.UTC)
    return f"rec-{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def build_target(config: ExportTargetConfig, data_dir: Path | str) -> ExportTarget:
    """The export target a validated ``ExportTargetConfig`` describes."""
    if config.kind == "directory":
        return DirectoryTarget(resolve_directory(config.path, data_dir), name=config.name)
    if config.kind == "http":
        return HttpTarget(config.url, config.header_dict(), name=config.name)
    if config.kind == "s3":
        credentials = S3Credentials(config.access_key, config.secret_key) if config.access_key else None
        return S3Target(
            config.bucket,
            config.prefix,
            config.endpoint_url or None,
            credentials,
            region_name=config.region,
            name=config.name,
        )
    raise LocalError(f"unknown export target kind {config.kind!r}")


def read_targets_file(directory: Path) -> tuple[str, ...] | None:
    """The target names kept next to a recording's manifest; None when absent or unreadable."""
    try:
        data = json.loads((directory / TARGETS_FILE).read_bytes())
        names = data["targets"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return None
    return tuple(names)


def _write_targets_file(directory: Path, names: Sequence[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / TARGETS_FILE, {"targets": list(names)})


# ---- views for the API ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordingHandle:
    """A recording started by :meth:`RecordingService.start_recording`."""

    recording_id: str
    contact_id: str
    queue: str
    caller_slot: int
    """Engine slot whose received audio is the left channel (the caller)."""
    agent_slot: int | None
    """Engine slot whose received audio is the right channel (the agent); None records silence there
    (a voicemail: only the caller speaks)."""
    format: str
    targets: tuple[str, ...]
    """Export targets of this recording."""
    directory: Path


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    """One chunk of a recording as the API lists it (field names as ``RecordingChunkView``)."""

    index: int
    size: int
    duration_seconds: float
    sha256: str
    local: bool
    """Still a file on this gateway (downloadable here)."""
    export_state: str
    """``pending``, ``exported`` or ``abandoned`` (purged by retention before a target confirmed it)."""


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """A recording of a contact as the API lists it (field names as ``RecordingView``)."""

    id: str
    contact_id: str
    queue: str
    state: str
    """``recording``, ``paused``, ``stopping`` (being closed), ``complete`` or ``interrupted``."""
    media_type: str
    started_at: float
    duration_seconds: float
    export_state: str
    """``pending`` (also while recording), ``exported`` or ``purged``."""
    chunks: list[ChunkInfo] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RecordingFigures:
    """What the recording service measured; for the API, the dashboard and the logs."""

    active: int
    """Recordings being written."""
    paused: int
    """Of those, how many are paused."""
    ticks: int
    """Ticks handed to the hub (ticks with at least one recording)."""
    hand_off_seconds: float
    """Event-loop time spent in on_tick, cumulative."""
    max_hand_off_seconds: float
    """Longest single on_tick."""
    hub_queue_depth: int
    """Ticks waiting for the hub thread now."""
    hub_max_depth: int
    """Deepest the hub queue has been."""
    hub_ticks_dropped: int
    """Ticks dropped because the hub lagged HUB_MAX_TICKS (a starved CPU; logged)."""
    frames_dropped: int
    """Frames writers dropped because their disk fell behind (since start; listed in manifests)."""
    lagging: tuple[str, ...]
    """Recordings whose writer queue holds a second or more of audio now."""
    failed: tuple[str, ...]
    """Recordings whose writer failed (disk error); the call goes on, the file keeps what it has."""
    unregistered: int
    """Finished recordings waiting to be registered for export (the store was unavailable)."""
    writers: Mapping[str, WriterFigures]
    """Per active recording."""


# ---- the hub thread ------------------------------------------------------------------------------------

_FRAMES = 0
_CALL = 1
_STOP = 2


class _Hub:
    """One thread that turns each tick's block of tap rows into ``write_frame`` calls, in order."""

    def __init__(self, max_ticks: int = HUB_MAX_TICKS, warn_ticks: int = HUB_WARN_TICKS) -> None:
        self._queue: deque[tuple[Any, ...]] = deque()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        self._max_ticks = max_ticks
        self._warn_ticks = warn_ticks
        self._frame_items = 0  # frame blocks queued and not yet delivered (producer +, hub -)
        self._delivered = 0  # written only by the hub thread
        self._queued = 0  # written only by the producer
        self.max_depth = 0
        self.dropped = 0
        self._dropping = False
        self._lagging = False
        self._failed_writers: set[str] = set()

    @property
    def depth(self) -> int:
        """Frame blocks waiting for the hub."""
        return self._queued - self._delivered

    def start(self) -> None:
        """Start the hub thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recording-hub", daemon=True)
            self._thread.start()

    def put_frames(self, block: npt.NDArray[np.int16], writers: tuple[RecordingWriter, ...]) -> None:
        """Queue one tick: ``block[2 * i]`` and ``block[2 * i + 1]`` are caller and agent of ``writers[i]``."""
        depth = self._queued - self._delivered
        if depth >= self._max_ticks:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                logger.error("recording hub %d ticks behind: dropping ticks (CPU starved?)", depth)
            return
        if self._dropping:
            self._dropping = False
            logger.error("recording hub caught up; %d ticks dropped so far", self.dropped)
        self._queue.append((_FRAMES, block, writers))
        self._queued += 1
        depth += 1
        self.max_depth = max(self.max_depth, depth)
        if depth >= self._warn_ticks and not self._lagging:
            self._lagging = True
            logger.warning("recording hub lagging: %d ticks queued", depth)
        elif self._lagging and depth < self._warn_ticks // 2:
            self._lagging = False
        self._wakeup.set()

    def put_call(self, function: Callable[[], None], done: Callable[[], None] | None = None) -> None:
        """Run ``function`` on the hub thread after the ticks queued before it (then ``done``); never dropped."""
        self._queue.append((_CALL, function, done))
        self._wakeup.set()

    def stop(self) -> None:
        """Finish what is queued, then end the thread (blocking: call off the event loop)."""
        if self._thread is None:
            return
        self._queue.append((_STOP,))
        self._wakeup.set()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        while True:
            self._wakeup.wait(0.2)
            self._wakeup.clear()
            while self._queue:
                item = self._queue.popleft()
                if item[0] == _FRAMES:
                    self._deliver(item[1], item[2])
                    self._delivered += 1
                elif item[0] == _CALL:
                    try:
                        item[1]()
                    except Exception:
                        logger.exception("recording hub: command failed")
                    if item[2] is not None:
                        item[2]()
                else:
                    return

    def _deliver(self, block: npt.NDArray[np.int16], writers: tuple[RecordingWriter, ...]) -> None:
        for i, writer in enumerate(writers):
            try:
                writer.write_frame(block[2 * i], block[2 * i + 1])
            except Exception:
                if writer.recording_id not in self._failed_writers:
                    self._failed_writers.add(writer.recording_id)
                    logger.exception("recording %s: frame refused", writer.recording_id)


class _TapGather:
    """Copies the tap rows of every active recording into one block with one numpy call per tick.

    ``views[i]`` is None for a party that is not there (a voicemail's agent): its row is silence.
    """

    def __init__(self, views: list[npt.NDArray[np.int16] | None]) -> None:
        present = [view for view in views if view is not None]
        self._silent = np.flatnonzero(np.array([view is None for view in views]))
        stand_in = present[0] if present else np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._views = [stand_in if view is None else view for view in views]
        self._base: npt.NDArray[np.int16] | None = None
        self._rows: npt.NDArray[np.intp] | None = None
        shared = _rows_of_one_array(self._views)
        if shared is not None:
            self._base, self._rows = shared

    @property
    def fancy_indexed(self) -> bool:
        """True when a tick costs one ``take`` on the engine's tap array (the native engine)."""
        return self._base is not None

    def collect(self) -> npt.NDArray[np.int16]:
        """A new ``(2 * n, 160)`` array: caller and agent rows of each recording in turn."""
        if self._base is not None and self._rows is not None:
            block = self._base.take(self._rows, axis=0)
        else:
            block = np.stack(self._views)
        if self._silent.size:
            block[self._silent] = 0
        return block


def _rows_of_one_array(
    views: list[npt.NDArray[np.int16]],
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.intp]] | None:
    """When every view is a whole row of one C-contiguous ``(n, 160)`` int16 array: that array and the rows."""
    if not views:
        return None
    base = views[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 2 or base.shape[1] != FRAME_SAMPLES:
        return None
    if base.dtype != np.int16 or not base.flags.c_contiguous:
        return None
    origin = base.ctypes.data
    stride = base.strides[0]
    rows = []
    for view in views:
        if view.base is not base or view.shape != (FRAME_SAMPLES,) or not view.flags.c_contiguous:
            return None
        offset = view.ctypes.data - origin
        if offset % stride or not 0 <= offset // stride < base.shape[0]:
            return None
        rows.append(offset // stride)
    return base, np.asarray(rows, dtype=np.intp)


# ---- the service ---------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Active:
    """A recording this gateway is writing (or closing)."""

    handle: RecordingHandle
    writer: RecordingWriter
    targets_written: asyncio.Future[None]
    paused: bool = False
    stopping: bool = False
    done: asyncio.Task[Manifest] | None = None


class _ServiceExporter(Exporter):
    """The exporter, registering what the service hands it instead of scanning the directory each round."""

    def __init__(self, service: RecordingService, queue: ExportQueue, targets: Sequence[ExportTarget]) -> None:
        super().__init__(queue, targets, service.recordings_dir)
        self._service = service

    async def scan(self, now: float) -> int:
        """Register finished recordings whose registration failed earlier (the service registers the rest)."""
        return await self._service._register_pending(now)


class RecordingService:
    """Records bridged calls from the engine's taps and exports, retains and serves the recordings."""

    def __init__(
        self,
        config: RecordingConfig,
        data_dir: Path | str,
        database: str | Database,
        engine: TapEngine,
        *,
        node: str = "",
        wall_clock: Callable[[], float] = time.time,
        close_timeout: float = 10.0,
    ) -> None:
        """``database`` is a store URL (the service then owns and disposes it) or a shared ``Database``;
        ``node`` names this gateway when several share one database; ``wall_clock`` gives POSIX time."""
        self.config = config
        self.data_dir = Path(data_dir)
        self.recordings_dir = recordings_dir_of(self.data_dir)
        self._owns_database = isinstance(database, str)
        self.database = Database(database) if isinstance(database, str) else database
        self.engine = engine
        self.node = node
        self._wall_clock = wall_clock
        self._close_timeout = close_timeout
        targets = [build_target(target, self.data_dir) for target in config.targets]
        self.queue = ExportQueue(
            self.database,
            config.target_names,
            backoff=BackoffPolicy(base=config.backoff_base, cap=config.backoff_cap),
            node=node,
        )
        self.exporter: Exporter = _ServiceExporter(self, self.queue, targets)
        self.retention = RetentionService(
            self.recordings_dir, RetentionPolicy(config.retention_seconds), self.queue
        )
        self._hub = _Hub()
        self._recordings: dict[str, _Active] = {}
        self._gather: _TapGather | None = None
        self._writers: tuple[RecordingWriter, ...] = ()
        self._tap_refs: Counter[int] = Counter()
        self._unregistered: dict[str, tuple[Path, tuple[str, ...]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False
        self._ticks = 0
        self._hand_off_seconds = 0.0
        self._max_hand_off_seconds = 0.0
        self._frames_dropped_finished = 0

    # ---- life cycle ------------------------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Recover interrupted recordings, queue every finished one for export, start the background loops.

        Returns the ids of the recordings repaired by recovery. Call once, before any start_recording.
        """
        if self._started:
            raise LocalError("the recording service is already started")
        await self.database.create_all()
        recovered = await asyncio.to_thread(recover, self.recordings_dir)
        registered = await self._register_finished_on_disk()
        logger.info(
            "recordings: %d interrupted recording(s) recovered, %d queued for export", len(recovered), registered
        )
        self._hub.start()
        self._loops = [
            asyncio.create_task(
                self.exporter.run(self._wall_clock, self.config.exporter_interval), name="recording-exporter"
            ),
            asyncio.create_task(
                self.retention.run(self._wall_clock, self.config.retention_interval), name="recording-retention"
            ),
        ]
        self._started = True
        return recovered

    async def close(self) -> None:
        """Stop every recording (closing and registering it), the background loops and the hub thread."""
        if self._closed:
            return
        self._closed = True
        for recording_id, active in list(self._recordings.items()):
            if not active.stopping:
                self.stop_recording(recording_id)
        pending = [a.done for a in self._recordings.values() if a.done is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.sleep(0)  # loops created just now must start (their run() resets the stop flag)
        self.exporter.stop()
        self.retention.stop()
        for task in self._loops:
            try:
                await asyncio.wait_for(task, self._close_timeout)
            except TimeoutError:
                logger.warning("recording service: %s did not stop in time; cancelled", task.get_name())
            except Exception:
                logger.exception("recording service: %s failed", task.get_name())
        self._loops = []
        await asyncio.to_thread(self._hub.stop)
        if self._owns_database:
            await self.database.dispose()

    # ---- recordings ------------------------------------------------------------------------------------

    def start_recording(
        self,
        recording_id: str,
        contact_id: str,
        queue: str,
        caller_slot: int,
        agent_slot: int | None,
        targets: Sequence[str] | None = None,
        *,
        format: str | None = None,
        kind: str = KIND_CALL,
    ) -> RecordingHandle:
        """Record what ``caller_slot`` and ``agent_slot`` receive from the next tick on (left and right).

        ``agent_slot`` None records silence on the agent's channel (a voicemail, with ``kind="voicemail"``
        and usually ``format="wav-mono"``).
        ``targets`` names configured export targets (None or empty: all); ``format`` overrides
        ``[recording].format``. Returns at once; the files are created by the writer's thread.
        Raises LocalError for an unknown target or format, a duplicate id, a slot without a leg, or a
        service that is not started.
        """
        if not self._started or self._closed:
            raise LocalError("the recording service is not running")
        if recording_id in self._recordings:
            raise LocalError(f"recording {recording_id!r} is already running")
        names = self._resolve_targets(targets)
        try:
            writer_config = self.config.writer_config(format)
        except ValueError:
            raise LocalError(f"unknown recording format {format!r}") from None
        writer = RecordingWriter(
            self.recordings_dir,
            recording_id,
            contact_id=contact_id,
            queue=queue,
            kind=kind,
            config=writer_config,
            wall_clock=self._wall_clock,
        )
        self._tap(caller_slot)
        if agent_slot is not None:
            try:
                self._tap(agent_slot)
            except Exception:
                self._untap(caller_slot)
                raise
        try:
            writer.start()
        except Exception:
            self._untap(caller_slot)
            if agent_slot is not None:
                self._untap(agent_slot)
            raise
        loop = asyncio.get_running_loop()
        targets_written = loop.run_in_executor(None, _write_targets_file, writer.directory, names)
        handle = RecordingHandle(
            recording_id=recording_id,
            contact_id=contact_id,
            queue=queue,
            caller_slot=caller_slot,
            agent_slot=agent_slot,
            format=writer_config.format.value,
            targets=names,
            directory=writer.directory,
        )
        self._recordings[recording_id] = _Active(handle, writer, targets_written)
        self._rebuild()
        logger.info(
            "recording %s started: contact %s, queue %s, %s, slots %s/%s, targets %s",
            recording_id, contact_id, queue, handle.format, caller_slot, agent_slot, ",".join(names),
        )
        return handle

    def on_tick(self, now: float) -> None:
        """After each engine tick: hand every active recording's frame to the hub in ONE batch."""
        gather = self._gather
        if gather is None:
            return
        started = time.perf_counter()
        self._hub.put_frames(gather.collect(), self._writers)
        self._ticks += 1
        elapsed = time.perf_counter() - started
        self._hand_off_seconds += elapsed
        self._max_hand_off_seconds = max(self._max_hand_off_seconds, elapsed)

    def pause(self, recording_id: str) -> bool:
        """Write silence from the next tick on (redaction); False when it was already paused.

        Raises RecordingNotActive when no such recording is running here.
        """
        active = self._running(recording_id)
        if active.paused:
            return False
        active.paused = True
        self._hub.put_call(active.writer.pause)
        logger.info("recording %s paused", recording_id)
        return True

    def resume(self, recording_id: str) -> bool:
        """Record the parties again from the next tick on; False when it was not paused.

        Raises RecordingNotActive when no such recording is running here.
        """
        active = self._running(recording_id)
        if not active.paused:
            return False
        active.paused = False
        self._hub.put_call(active.writer.resume)
        logger.info("recording %s resumed", recording_id)
        return True

    def state(self, recording_id: str) -> str | None:
        """``recording``, ``paused`` or ``stopping`` for a recording running here; None otherwise."""
        active = self._recordings.get(recording_id)
        if active is None:
            return None
        if active.stopping:
            return "stopping"
        return "paused" if active.paused else "recording"

    def stop_recording(self, recording_id: str) -> asyncio.Task[Manifest]:
        """Stop recording NOW (from this tick on; call it before the legs leave the engine).

        Returns a task that closes the writer off the loop and registers the chunks for export; await it
        for the final manifest, or leave it (``close`` waits for it). Stopping twice returns the same task.
        Raises RecordingNotActive for an unknown id.
        """
        active = self._recordings.get(recording_id)
        if active is None:
            raise RecordingNotActive(f"no recording {recording_id!r} is running here")
        if active.done is not None:
            return active.done
        active.stopping = True
        self._rebuild()
        self._untap(active.handle.caller_slot)
        if active.handle.agent_slot is not None:
            self._untap(active.handle.agent_slot)
        loop = asyncio.get_running_loop()
        barrier: asyncio.Future[None] = loop.create_future()

        def signal_done() -> None:
            loop.call_soon_threadsafe(_set_result, barrier)

        self._hub.put_call(active.writer.stop, signal_done)
        task = loop.create_task(self._finish(active, barrier), name=f"recording-stop-{recording_id}")
        active.done = task
        return task

    async def _finish(self, active: _Active, barrier: asyncio.Future[None]) -> Manifest:
        handle = active.handle
        try:
            await barrier
            manifest = await active.writer.aclose()
            self._frames_dropped_finished += active.writer.figures().frames_dropped
            try:
                await active.targets_written
            except OSError:
                logger.exception("recording %s: export targets not saved beside it", handle.recording_id)
            if manifest.state in (STATE_COMPLETE, STATE_INTERRUPTED):
                await self._register(manifest, handle.directory, handle.targets)
            else:
                logger.error(
                    "recording %s: writer failed and could not repair it; the next start recovers it",
                    handle.recording_id,
                )
            return manifest
        finally:
            self._recordings.pop(handle.recording_id, None)

    def _running(self, recording_id: str) -> _Active:
        active = self._recordings.get(recording_id)
        if active is None or active.stopping:
            raise RecordingNotActive(f"no recording {recording_id!r} is running here")
        return active

    def _resolve_targets(self, targets: Sequence[str] | None) -> tuple[str, ...]:
        configured = self.config.target_names
        if not targets:
            return configured
        unknown = [name for name in targets if name not in configured]
        if unknown:
            raise LocalError(f"unknown export target(s) {', '.join(unknown)} (configured: {', '.join(configured)})")
        return tuple(dict.fromkeys(targets))

    def _tap(self, slot: int) -> None:
        if self._tap_refs[slot] == 0:
            self.engine.enable_tap(slot, output=False)
        self._tap_refs[slot] += 1

    def _untap(self, slot: int) -> None:
        self._tap_refs[slot] -= 1
        if self._tap_refs[slot] <= 0:
            del self._tap_refs[slot]
            try:
                self.engine.disable_tap(slot)
            except LocalError:
                pass  # the leg already left the engine

    def _rebuild(self) -> None:
        """Recompute the tick's gather after a recording started or stopped (not per tick)."""
        running = [a for a in self._recordings.values() if not a.stopping]
        if not running:
            self._gather = None
            self._writers = ()
            return
        views: list[npt.NDArray[np.int16] | None] = []
        for active in running:
            views.append(self.engine.tap(active.handle.caller_slot))
            agent = active.handle.agent_slot
            views.append(None if agent is None else self.engine.tap(agent))
        self._gather = _TapGather(views)
        self._writers = tuple(active.writer for active in running)

    # ---- export registration -----------------------------------------------------------------------------

    async def _register(self, manifest: Manifest, directory: Path, targets: Sequence[str]) -> bool:
        names = self._known_targets(manifest.recording_id, targets)
        queue = ExportQueue(self.database, names, node=self.node)
        try:
            await queue.register(manifest, directory, self._wall_clock())
        except Exception:
            logger.exception("recording %s: cannot queue it for export now; retrying", manifest.recording_id)
            self._unregistered[manifest.recording_id] = (directory, names)
            return False
        self._unregistered.pop(manifest.recording_id, None)
        return True

    def _known_targets(self, recording_id: str, targets: Sequence[str] | None) -> tuple[str, ...]:
        configured = self.config.target_names
        names = tuple(name for name in (targets or ()) if name in configured)
        if targets and len(names) != len(tuple(targets)):
            gone = sorted(set(targets) - set(configured))
            logger.warning("recording %s: export target(s) %s no longer configured", recording_id, ", ".join(gone))
        if not names:
            return configured
        return names

    async def _register_pending(self, now: float) -> int:
        """Retry the registrations that failed (called by the exporter each round)."""
        count = 0
        for recording_id, (directory, names) in list(self._unregistered.items()):
            try:
                manifest = await asyncio.to_thread(read_manifest, directory)
            except ManifestError:
                logger.exception("recording %s: manifest unreadable; not exported", recording_id)
                self._unregistered.pop(recording_id, None)
                continue
            if await self._register(manifest, directory, names):
                count += 1
        return count

    async def _register_finished_on_disk(self) -> int:
        """Register every finished recording on disk that the store does not know (start-up)."""
        found = await asyncio.to_thread(_finished_recordings, self.recordings_dir)
        if not found:
            return 0
        ids = [manifest.recording_id for _, manifest, _ in found]
        known: set[str] = set()
        async with self.database.session() as session:
            for start in range(0, len(ids), 500):
                batch = ids[start : start + 500]
                known.update((await session.scalars(select(Recording.id).where(Recording.id.in_(batch)))).all())
        count = 0
        for directory, manifest, targets in found:
            if manifest.recording_id in known:
                continue
            if await self._register(manifest, directory, targets or ()):
                count += 1
        return count

    # ---- reads for the API and the CLI -------------------------------------------------------------------

    async def list_for_contact(self, contact_id: str) -> list[RecordingInfo]:
        """The recordings of a contact, oldest first: running ones and those the store knows."""
        infos: dict[str, RecordingInfo] = {}
        async with self.database.session() as session:
            recordings = (
                await session.scalars(
                    select(Recording).where(Recording.contact_id == contact_id).order_by(Recording.started_at)
                )
            ).all()
            ids = [r.id for r in recordings]
            chunks: dict[str, list[RecordingChunk]] = {rid: [] for rid in ids}
            job_states: dict[tuple[str, int], list[str]] = {}
            if ids:
                for chunk in (
                    await session.scalars(
                        select(RecordingChunk)
                        .where(RecordingChunk.recording_id.in_(ids))
                        .order_by(RecordingChunk.recording_id, RecordingChunk.index)
                    )
                ).all():
                    chunks[chunk.recording_id].append(chunk)
                rows = await session.execute(
                    select(ExportJob.recording_id, ExportJob.chunk_index, ExportJob.state).where(
                        ExportJob.recording_id.in_(ids)
                    )
                )
                for rid, index, state in rows.all():
                    job_states.setdefault((rid, index), []).append(state)
        for r in recordings:
            infos[r.id] = RecordingInfo(
                id=r.id,
                contact_id=r.contact_id,
                queue=r.queue,
                state=r.state,
                media_type=_media_type(r.format),
                started_at=r.started_at,
                duration_seconds=r.duration,
                export_state=r.export_state,
                chunks=[
                    ChunkInfo(
                        index=c.index,
                        size=c.size,
                        duration_seconds=c.duration,
                        sha256=c.sha256,
                        local=c.local_state == LOCAL_PRESENT and r.node == self.node,
                        export_state=_chunk_export_state(r.export_state, job_states.get((r.id, c.index), [])),
                    )
                    for c in chunks[r.id]
                ],
            )
        for active in list(self._recordings.values()):
            handle = active.handle
            if handle.contact_id != contact_id or handle.recording_id in infos:
                continue
            manifest = active.writer.manifest
            infos[handle.recording_id] = RecordingInfo(
                id=handle.recording_id,
                contact_id=contact_id,
                queue=handle.queue,
                state=self.state(handle.recording_id) or "stopping",
                media_type=_media_type(handle.format),
                started_at=manifest.started_at,
                duration_seconds=manifest.duration,
                export_state="pending",
                chunks=[
                    ChunkInfo(c.index, c.size, c.duration, c.sha256, True, "pending") for c in manifest.chunks
                ],
            )
        return sorted(infos.values(), key=lambda info: (info.started_at, info.id))

    async def chunk_path(self, recording_id: str, index: int) -> Path:
        """The local file of a finished chunk, for the API to serve.

        Raises UnknownRecording (no such recording or chunk) or its subclass ChunkNotStored (the chunk is
        still being written, was exported and deleted, purged, or lives on another node).
        """
        path: Path | None = None
        active = self._recordings.get(recording_id)
        if active is not None:
            manifest = active.writer.manifest
            for chunk in manifest.chunks:
                if chunk.index == index:
                    path = active.handle.directory / chunk.file_name
            if path is None:
                if index == len(manifest.chunks):
                    raise ChunkNotStored(f"chunk {index} of recording {recording_id!r} is still being written")
                raise UnknownRecording(f"recording {recording_id!r} has no chunk {index}")
        else:
            async with self.database.session() as session:
                recording = await session.get(Recording, recording_id)
                if recording is None:
                    raise UnknownRecording(f"unknown recording {recording_id!r}")
                chunk_row = await session.scalar(
                    select(RecordingChunk).where(
                        RecordingChunk.recording_id == recording_id, RecordingChunk.index == index
                    )
                )
                if chunk_row is None:
                    raise UnknownRecording(f"recording {recording_id!r} has no chunk {index}")
                if recording.node != self.node:
                    raise ChunkNotStored(f"recording {recording_id!r} is stored on node {recording.node!r}")
                if chunk_row.local_state != LOCAL_PRESENT:
                    raise ChunkNotStored(f"chunk {index} of recording {recording_id!r} is no longer stored here")
                path = Path(recording.directory) / chunk_row.file_name
        if not await asyncio.to_thread(path.is_file):
            raise ChunkNotStored(f"chunk {index} of recording {recording_id!r} is no longer stored here")
        return path

    def figures(self) -> RecordingFigures:
        """Counters of the service and of every active writer."""
        writers = {rid: active.writer.figures() for rid, active in list(self._recordings.items())}
        warn = {rid: active.writer.config.warn_queue_frames for rid, active in list(self._recordings.items())}
        return RecordingFigures(
            active=sum(1 for a in self._recordings.values() if not a.stopping),
            paused=sum(1 for a in self._recordings.values() if a.paused and not a.stopping),
            ticks=self._ticks,
            hand_off_seconds=self._hand_off_seconds,
            max_hand_off_seconds=self._max_hand_off_seconds,
            hub_queue_depth=self._hub.depth,
            hub_max_depth=self._hub.max_depth,
            hub_ticks_dropped=self._hub.dropped,
            frames_dropped=self._frames_dropped_finished + sum(f.frames_dropped for f in writers.values()),
            lagging=tuple(sorted(rid for rid, f in writers.items() if f.queue_depth >= warn[rid])),
            failed=tuple(sorted(rid for rid, f in writers.items() if f.error is not None)),
            unregistered=len(self._unregistered),
            writers=writers,
        )

    @property
    def fancy_indexed(self) -> bool:
        """True when the current tick hand-off is one ``take`` on the engine's tap array."""
        return self._gather is not None and self._gather.fancy_indexed


def _set_result(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _media_type(fmt: str) -> str:
    try:
        return RecordingFormat(fmt).content_type
    except ValueError:
        return "application/octet-stream"


def _chunk_export_state(recording_export_state: str, job_states: list[str]) -> str:
    if not job_states:
        return "exported" if recording_export_state == EXPORT_EXPORTED else recording_export_state
    if all(state == JOB_DONE for state in job_states):
        return "exported"
    if any(state == JOB_ABANDONED for state in job_states):
        return "abandoned"
    return "pending"


def _finished_recordings(recordings_dir: Path) -> list[tuple[Path, Manifest, tuple[str, ...] | None]]:
    """Finished recordings on disk with their manifest and saved targets (blocking: run in a thread)."""
    found = []
    for directory in iter_recording_dirs(recordings_dir):
        try:
            manifest = read_manifest(directory)
        except ManifestError:
            logger.exception("recordings: unreadable manifest in %s; not exported", directory)
            continue
        if manifest.state in (STATE_COMPLETE, STATE_INTERRUPTED):
            found.append((directory, manifest, read_targets_file(directory)))
    return found


__all__ = [
    "RECORDINGS_SUBDIR",
    "ChunkInfo",
    "ChunkNotStored",
    "RecordingFigures",
    "RecordingHandle",
    "RecordingInfo",
    "RecordingNotActive",
    "RecordingService",
    "TapEngine",
    "build_target",
    "new_recording_id",
    "read_targets_file",
    "recordings_dir_of",
]
