"""The durable export queue: every chunk to every target, in order, with backoff, then local deletion.

Theory of operation
-------------------
A finished recording (manifest ``complete`` or ``interrupted``) is *registered*: one ``recordings`` row,
one ``recording_chunks`` row per chunk and one ``export_jobs`` row per chunk per target, all in one
transaction. A job is *due* when it is pending, its ``next_attempt_at`` has come, and every earlier chunk
of the same recording has been confirmed by the same target (chunk n+1 only after chunk n). A success
marks the job done; a failure counts the attempt and moves ``next_attempt_at`` out by exponential backoff
with jitter (:class:`BackoffPolicy`). Because ``next_attempt_at`` is a column, retries survive restarts.

When every target has confirmed a chunk, its local file is deleted (and the deletion audited with reason
``exported``); when every chunk is gone the recording's export state becomes ``exported`` in the store and
in its manifest. A crash between confirmation and deletion is repaired by :meth:`ExportQueue.reconcile`,
which every round of the exporter runs first. Delivery is at least once: a target may see a chunk twice.

:class:`ExportQueue` is the sans-clock core: every method takes ``now`` (POSIX seconds). :class:`Exporter`
is the asyncio service around it: ``run_once(now)`` for tests and ``run()`` for production.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random as random_module
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mediagw.errors import ConfigError, LocalError
from mediagw.recording.manifest import (
    CONFIG_SOURCE,
    EXPORT_EXPORTED,
    STATE_COMPLETE,
    STATE_INTERRUPTED,
    Manifest,
    ManifestError,
    fsync_directory,
    iter_recording_dirs,
    manifest_path,
    read_manifest,
    write_manifest,
)
from mediagw.recording.targets import ChunkUpload, DirectoryTarget, ExportError, ExportTarget
from mediagw.recording.writer import RecordingFormat
from mediagw.store.db import Database
from mediagw.store.models import (
    EXPORT_PENDING,
    JOB_ABANDONED,
    JOB_DONE,
    JOB_PENDING,
    LOCAL_DELETED,
    LOCAL_PRESENT,
    AuditEntry,
    ExportJob,
    Recording,
    RecordingChunk,
)

logger = logging.getLogger(__name__)

REASON_EXPORTED = "exported"
REASON_RETENTION = "retention-limit"


class UnknownRecording(LocalError):
    """No recording with that id is known to the store."""


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential backoff with jitter: attempt n waits ``min(cap, base * 2**(n-1))``, jitter shaved off.

    ``jitter`` is the fraction of that delay that is random: the wait is
    ``d * (1 - jitter) + d * jitter * u`` with ``u`` in [0, 1) from an injectable source, so retries of
    many recordings spread out but never come sooner than ``d * (1 - jitter)`` nor later than ``cap``.
    """

    base: float = 5.0
    """Seconds before the first retry (before jitter)."""
    cap: float = 3600.0
    """Longest wait between two attempts, in seconds."""
    jitter: float = 0.5
    """Fraction of the delay drawn at random, 0 (none) to 1 ("full jitter")."""

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ConfigError(CONFIG_SOURCE, "recording.export.backoff", "need 0 < base <= cap")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigError(CONFIG_SOURCE, "recording.export.backoff.jitter", "must be between 0 and 1")

    def delay(self, attempts: int, uniform: Callable[[], float]) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1 for the first failure)."""
        exponent = min(max(attempts, 1) - 1, 62)
        ceiling = min(self.cap, self.base * (2.0**exponent))
        return ceiling * (1.0 - self.jitter) + ceiling * self.jitter * uniform()


@dataclass(frozen=True, slots=True)
class JobView:
    """A detached snapshot of one export job."""

    id: int
    recording_id: str
    chunk_index: int
    target: str
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    confirmed_at: float | None
    locator: str | None

    @classmethod
    def of(cls, job: ExportJob) -> JobView:
        """Snapshot of an ORM row."""
        return cls(
            id=job.id,
            recording_id=job.recording_id,
            chunk_index=job.chunk_index,
            target=job.target,
            state=job.state,
            attempts=job.attempts,
            next_attempt_at=job.next_attempt_at,
            last_error=job.last_error,
            confirmed_at=job.confirmed_at,
            locator=job.locator,
        )


@dataclass(frozen=True, slots=True)
class ChunkView:
    """A detached snapshot of one chunk row."""

    index: int
    file_name: str
    size: int
    duration: float
    sha256: str
    local_state: str


@dataclass(frozen=True, slots=True)
class RecordingSummary:
    """One line of ``mediagw recordings list``."""

    recording_id: str
    contact_id: str
    queue: str
    kind: str
    state: str
    node: str
    started_at: float
    duration: float
    chunk_count: int
    export_state: str
    local_state: str
    jobs_done: int
    jobs_total: int
    next_attempt_at: float | None
    """When the next delivery is tried (first pending chunk of each target), if any job is pending."""
    last_error: str | None


@dataclass(frozen=True, slots=True)
class RecordingDetail:
    """Everything ``mediagw recordings show ID`` prints."""

    summary: RecordingSummary
    directory: str
    chunks: list[ChunkView]
    jobs: list[JobView]


@dataclass(frozen=True, slots=True)
class SuccessOutcome:
    """What a confirmation led to."""

    chunk_complete: bool
    """Every target has confirmed this chunk (its local file is now deleted)."""
    recording_exported: bool
    """Every chunk of the recording is confirmed everywhere."""


def _audit(
    session: AsyncSession,
    now: float,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    reason: str | None = None,
    **detail: Any,
) -> None:
    session.add(
        AuditEntry(
            at=now,
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            reason=reason,
            detail=json.dumps(detail, sort_keys=True) if detail else None,
        )
    )


def _delete_file(path: Path) -> bool:
    """Remove ``path`` durably; False when it was already gone."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_directory(path.parent)
    return True


class ExportQueue:
    """The sans-clock core of the export queue, backed by the store. Every method takes ``now``."""

    def __init__(
        self,
        database: Database,
        target_names: Sequence[str],
        *,
        backoff: BackoffPolicy | None = None,
        uniform: Callable[[], float] = random_module.random,
        actor: str = "exporter",
        node: str = "",
    ) -> None:
        """``node`` names this gateway: it only exports recordings on its own disk (shared databases)."""
        if not target_names:
            raise ConfigError(
                CONFIG_SOURCE, "recording.export.targets", "at least one export target is required"
            )
        if len(set(target_names)) != len(target_names):
            raise ConfigError(CONFIG_SOURCE, "recording.export.targets", "target names must be unique")
        self.database = database
        self.target_names = tuple(target_names)
        self.backoff = backoff if backoff is not None else BackoffPolicy()
        self.uniform = uniform
        self.actor = actor
        self.node = node
        self._settle_lock = asyncio.Lock()  # one node; PostgreSQL deployments also lock the chunk row

    # ---- registration ------------------------------------------------------------------------------

    async def register(self, manifest: Manifest, directory: Path, now: float) -> bool:
        """Queue a finished recording for every target; False when it was already registered."""
        if manifest.state not in (STATE_COMPLETE, STATE_INTERRUPTED):
            raise LocalError(f"recording {manifest.recording_id} is still {manifest.state}")
        async with self.database.session() as session:
            if await session.get(Recording, manifest.recording_id) is not None:
                return False
            exported = not manifest.chunks or manifest.export_state == EXPORT_EXPORTED
            recording = Recording(
                id=manifest.recording_id,
                contact_id=manifest.contact_id,
                queue=manifest.queue,
                kind=manifest.kind,
                format=manifest.format,
                sample_rate=manifest.sample_rate,
                channels=manifest.channels,
                state=manifest.state,
                started_at=manifest.started_at,
                ended_at=manifest.ended_at,
                duration=manifest.duration,
                chunk_count=len(manifest.chunks),
                node=self.node,
                directory=str(directory),
                export_state=EXPORT_EXPORTED if exported else EXPORT_PENDING,
                local_state=LOCAL_PRESENT,
                registered_at=now,
                exported_at=now if exported else None,
            )
            session.add(recording)
            await session.flush()  # the parent row first: jobs reference it without an ORM relationship
            for chunk in manifest.chunks:
                session.add(
                    RecordingChunk(
                        recording_id=manifest.recording_id,
                        index=chunk.index,
                        file_name=chunk.file_name,
                        size=chunk.size,
                        duration=chunk.duration,
                        start_sample=chunk.start_sample,
                        sha256=chunk.sha256,
                        local_state=LOCAL_PRESENT,
                    )
                )
                if exported:
                    continue
                for target in self.target_names:
                    session.add(
                        ExportJob(
                            recording_id=manifest.recording_id,
                            chunk_index=chunk.index,
                            target=target,
                            state=JOB_PENDING,
                            attempts=0,
                            next_attempt_at=now,
                            created_at=now,
                        )
                    )
        logger.info(
            "recording %s queued for export: %d chunks x %d targets",
            manifest.recording_id,
            len(manifest.chunks),
            len(self.target_names),
        )
        return True

    async def is_registered(self, recording_id: str) -> bool:
        """Whether the store knows ``recording_id``."""
        async with self.database.session() as session:
            return await session.get(Recording, recording_id) is not None

    # ---- the queue ---------------------------------------------------------------------------------

    async def due_jobs(self, now: float, limit: int = 100) -> list[JobView]:
        """Pending jobs whose time has come and whose earlier chunks that target has confirmed."""
        first_pending = (
            select(
                ExportJob.recording_id.label("recording_id"),
                ExportJob.target.label("target"),
                func.min(ExportJob.chunk_index).label("first_index"),
            )
            .where(ExportJob.state == JOB_PENDING)
            .group_by(ExportJob.recording_id, ExportJob.target)
            .subquery()
        )
        query = (
            select(ExportJob)
            .join(Recording, Recording.id == ExportJob.recording_id)
            .join(
                first_pending,
                and_(
                    ExportJob.recording_id == first_pending.c.recording_id,
                    ExportJob.target == first_pending.c.target,
                    ExportJob.chunk_index == first_pending.c.first_index,
                ),
            )
            .where(
                ExportJob.state == JOB_PENDING,
                ExportJob.next_attempt_at <= now,
                ExportJob.target.in_(self.target_names),  # jobs of a target since removed wait
                Recording.node == self.node,
            )
            .order_by(ExportJob.next_attempt_at, ExportJob.id)
            .limit(limit)
        )
        async with self.database.session() as session:
            return [JobView.of(job) for job in (await session.scalars(query)).all()]

    async def next_due_at(self) -> float | None:
        """The earliest ``next_attempt_at`` of any pending job (for the service's sleep)."""
        async with self.database.session() as session:
            value = await session.scalar(
                select(func.min(ExportJob.next_attempt_at))
                .join(Recording, Recording.id == ExportJob.recording_id)
                .where(ExportJob.state == JOB_PENDING, Recording.node == self.node)
            )
            return float(value) if value is not None else None

    async def upload_for(self, job: JobView) -> ChunkUpload:
        """What the target needs to deliver ``job``'s chunk."""
        async with self.database.session() as session:
            recording = await session.get(Recording, job.recording_id)
            chunk = await session.scalar(
                select(RecordingChunk).where(
                    RecordingChunk.recording_id == job.recording_id, RecordingChunk.index == job.chunk_index
                )
            )
            if recording is None or chunk is None:
                raise UnknownRecording(f"no chunk {job.chunk_index} of recording {job.recording_id}")
            directory = Path(recording.directory)
            try:
                content_type = RecordingFormat(recording.format).content_type
            except ValueError:
                content_type = "application/octet-stream"
            return ChunkUpload(
                path=directory / chunk.file_name,
                recording_id=recording.id,
                contact_id=recording.contact_id,
                queue=recording.queue,
                kind=recording.kind,
                chunk_index=chunk.index,
                chunk_count=recording.chunk_count,
                file_name=chunk.file_name,
                size=chunk.size,
                sha256=chunk.sha256,
                start_seconds=chunk.start_sample / recording.sample_rate,
                content_type=content_type,
                manifest_path=manifest_path(directory),
            )

    async def mark_failure(self, job: JobView, now: float, error: str = "") -> float:
        """Count a failed attempt and schedule the next one; returns its time."""
        async with self.database.session() as session:
            row = await session.get(ExportJob, job.id)
            if row is None or row.state != JOB_PENDING:
                return now
            row.attempts += 1
            row.last_attempt_at = now
            row.last_error = error[:2000]
            row.next_attempt_at = now + self.backoff.delay(row.attempts, self.uniform)
            next_at = row.next_attempt_at
            attempts = row.attempts
        logger.warning(
            "export of %s chunk %d to %s failed (attempt %d), next try in %.1f s: %s",
            job.recording_id,
            job.chunk_index,
            job.target,
            attempts,
            next_at - now,
            error,
        )
        return next_at

    async def mark_success(self, job: JobView, now: float, locator: str = "") -> SuccessOutcome:
        """Record the target's confirmation; deletes the local chunk once every target confirmed it."""
        async with self.database.session() as session:
            row = await session.get(ExportJob, job.id)
            if row is None:
                raise LocalError(f"export job {job.id} does not exist")
            row.state = JOB_DONE
            row.attempts += 1
            row.last_attempt_at = now
            row.confirmed_at = now
            row.locator = locator
            row.last_error = None
        # The confirmation is committed before anything is deleted: a crash here leaves a file that
        # reconcile() deletes, never a deleted file that no target has.
        return await self._settle_chunk(job.recording_id, job.chunk_index, now)

    async def _settle_chunk(self, recording_id: str, chunk_index: int, now: float) -> SuccessOutcome:
        async with self._settle_lock:
            return await self._settle_chunk_locked(recording_id, chunk_index, now)

    async def _settle_chunk_locked(self, recording_id: str, chunk_index: int, now: float) -> SuccessOutcome:
        async with self.database.session() as session:
            open_jobs = await session.scalar(
                select(func.count(ExportJob.id)).where(
                    ExportJob.recording_id == recording_id,
                    ExportJob.chunk_index == chunk_index,
                    ExportJob.state != JOB_DONE,
                )
            )
            if open_jobs:
                return SuccessOutcome(chunk_complete=False, recording_exported=False)
            recording = await session.get(Recording, recording_id)
            chunk = await session.scalar(
                select(RecordingChunk)
                .where(RecordingChunk.recording_id == recording_id, RecordingChunk.index == chunk_index)
                .with_for_update()
            )
            if recording is None or chunk is None:
                return SuccessOutcome(chunk_complete=True, recording_exported=False)
            directory = Path(recording.directory)
            if chunk.local_state == LOCAL_PRESENT:
                await asyncio.to_thread(_delete_file, directory / chunk.file_name)
                chunk.local_state = LOCAL_DELETED
                chunk.deleted_at = now
                _audit(
                    session,
                    now,
                    self.actor,
                    "purge",
                    "recording_chunk",
                    recording_id,
                    REASON_EXPORTED,
                    chunk_index=chunk_index,
                    file_name=chunk.file_name,
                    sha256=chunk.sha256,
                    targets=list(self.target_names),
                )
            remaining = await session.scalar(
                select(func.count(RecordingChunk.id)).where(
                    RecordingChunk.recording_id == recording_id,
                    RecordingChunk.local_state == LOCAL_PRESENT,
                    RecordingChunk.index != chunk_index,
                )
            )
            exported = not remaining and recording.export_state == EXPORT_PENDING
            if exported:
                recording.export_state = EXPORT_EXPORTED
                recording.exported_at = now
        if exported:
            await asyncio.to_thread(_mark_manifest_exported, directory)
            logger.info("recording %s exported to every target; local chunks deleted", recording_id)
        return SuccessOutcome(chunk_complete=True, recording_exported=exported)

    async def reconcile(self, now: float) -> int:
        """Finish chunks that every target confirmed but whose local file survived a crash; returns count."""
        fully_done = (
            select(RecordingChunk.recording_id, RecordingChunk.index)
            .join(Recording, Recording.id == RecordingChunk.recording_id)
            .where(RecordingChunk.local_state == LOCAL_PRESENT, Recording.node == self.node)
            .where(
                ~select(ExportJob.id)
                .where(
                    ExportJob.recording_id == RecordingChunk.recording_id,
                    ExportJob.chunk_index == RecordingChunk.index,
                    ExportJob.state != JOB_DONE,
                )
                .exists()
            )
            .where(
                select(ExportJob.id)
                .where(
                    ExportJob.recording_id == RecordingChunk.recording_id,
                    ExportJob.chunk_index == RecordingChunk.index,
                )
                .exists()
            )
        )
        async with self.database.session() as session:
            pairs = [(r, i) for r, i in (await session.execute(fully_done)).all()]
        for recording_id, index in pairs:
            await self._settle_chunk(recording_id, index, now)
        return len(pairs)

    async def retry_now(self, recording_id: str, now: float, actor: str = "operator") -> int:
        """Make every pending job of a recording due at ``now``; returns how many. Audited."""
        async with self.database.session() as session:
            if await session.get(Recording, recording_id) is None:
                raise UnknownRecording(f"unknown recording {recording_id!r}")
            result = await session.execute(
                update(ExportJob)
                .where(ExportJob.recording_id == recording_id, ExportJob.state == JOB_PENDING)
                .values(next_attempt_at=now)
            )
            count = int(getattr(result, "rowcount", 0) or 0)
            _audit(session, now, actor, "retry-export", "recording", recording_id, None, jobs=count)
        return count

    async def record_purge(
        self, recording_id: str, now: float, reason: str, actor: str = "retention", **detail: Any
    ) -> None:
        """Note that a recording's local files are gone (retention); pending jobs are abandoned. Audited."""
        async with self.database.session() as session:
            recording = await session.get(Recording, recording_id)
            if recording is not None:
                recording.local_state = LOCAL_DELETED
                recording.purged_at = now
                recording.purge_reason = reason
                if recording.export_state == EXPORT_PENDING:
                    recording.export_state = "purged"
                await session.execute(
                    update(RecordingChunk)
                    .where(
                        RecordingChunk.recording_id == recording_id,
                        RecordingChunk.local_state == LOCAL_PRESENT,
                    )
                    .values(local_state=LOCAL_DELETED, deleted_at=now)
                )
                await session.execute(
                    update(ExportJob)
                    .where(ExportJob.recording_id == recording_id, ExportJob.state == JOB_PENDING)
                    .values(state=JOB_ABANDONED, last_error=f"local copy purged: {reason}")
                )
                detail.setdefault("export_state", recording.export_state)
            _audit(session, now, actor, "purge", "recording", recording_id, reason, **detail)

    # ---- CLI-facing reads --------------------------------------------------------------------------

    async def _summaries(
        self, session: AsyncSession, recordings: Sequence[Recording]
    ) -> list[RecordingSummary]:
        if not recordings:
            return []
        ids = [r.id for r in recordings]
        rows = (
            await session.execute(
                select(
                    ExportJob.recording_id,
                    func.count(ExportJob.id),
                    func.sum(case((ExportJob.state == JOB_DONE, 1), else_=0)),
                )
                .where(ExportJob.recording_id.in_(ids))
                .group_by(ExportJob.recording_id)
            )
        ).all()
        counts = {rid: (int(total), int(done or 0)) for rid, total, done in rows}
        pending = (
            await session.execute(
                select(
                    ExportJob.recording_id, ExportJob.target, ExportJob.next_attempt_at, ExportJob.last_error
                )
                .where(ExportJob.recording_id.in_(ids), ExportJob.state == JOB_PENDING)
                .order_by(ExportJob.chunk_index)
            )
        ).all()
        heads: dict[tuple[str, str], tuple[float, str | None]] = {}
        for rid, target, next_at, error in pending:  # the first pending chunk per target gates the rest
            heads.setdefault((rid, target), (float(next_at), error))
        first_pending: dict[str, tuple[float, str | None]] = {}
        for (rid, _target), head in heads.items():
            if rid not in first_pending or head[0] < first_pending[rid][0]:
                first_pending[rid] = head
        summaries = []
        for r in recordings:
            total, done = counts.get(r.id, (0, 0))
            gate = first_pending.get(r.id)
            summaries.append(
                RecordingSummary(
                    recording_id=r.id,
                    contact_id=r.contact_id,
                    queue=r.queue,
                    kind=r.kind,
                    state=r.state,
                    node=r.node,
                    started_at=r.started_at,
                    duration=r.duration,
                    chunk_count=r.chunk_count,
                    export_state=r.export_state,
                    local_state=r.local_state,
                    jobs_done=done,
                    jobs_total=total,
                    next_attempt_at=gate[0] if gate is not None else None,
                    last_error=gate[1] if gate is not None else None,
                )
            )
        return summaries

    async def list_recordings(
        self, *, export_state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[RecordingSummary]:
        """Recordings with their export state, newest first (optionally only one export state)."""
        query = (
            select(Recording).order_by(Recording.started_at.desc(), Recording.id).limit(limit).offset(offset)
        )
        if export_state is not None:
            query = query.where(Recording.export_state == export_state)
        async with self.database.session() as session:
            recordings = (await session.scalars(query)).all()
            return await self._summaries(session, recordings)

    async def show_recording(self, recording_id: str) -> RecordingDetail:
        """One recording with its chunks and jobs; raises UnknownRecording."""
        async with self.database.session() as session:
            recording = await session.get(Recording, recording_id)
            if recording is None:
                raise UnknownRecording(f"unknown recording {recording_id!r}")
            chunks = (
                await session.scalars(
                    select(RecordingChunk)
                    .where(RecordingChunk.recording_id == recording_id)
                    .order_by(RecordingChunk.index)
                )
            ).all()
            jobs = (
                await session.scalars(
                    select(ExportJob)
                    .where(ExportJob.recording_id == recording_id)
                    .order_by(ExportJob.chunk_index, ExportJob.target)
                )
            ).all()
            (summary,) = await self._summaries(session, [recording])
            return RecordingDetail(
                summary=summary,
                directory=recording.directory,
                chunks=[
                    ChunkView(c.index, c.file_name, c.size, c.duration, c.sha256, c.local_state)
                    for c in chunks
                ],
                jobs=[JobView.of(j) for j in jobs],
            )

    async def audit_entries(self, subject_id: str | None = None) -> list[AuditEntry]:
        """Audit log entries in order (optionally for one subject)."""
        query = select(AuditEntry).order_by(AuditEntry.at, AuditEntry.id)
        if subject_id is not None:
            query = query.where(AuditEntry.subject_id == subject_id)
        async with self.database.session() as session:
            return list((await session.scalars(query)).all())


def _mark_manifest_exported(directory: Path) -> None:
    try:
        manifest = read_manifest(directory)
    except ManifestError:
        logger.warning("recording in %s exported, but its manifest cannot be updated", directory)
        return
    manifest.export_state = EXPORT_EXPORTED
    write_manifest(directory, manifest)


@dataclass(frozen=True, slots=True)
class ExportRound:
    """What one round of the exporter did."""

    registered: int
    attempted: int
    succeeded: int
    failed: int


class Exporter:
    """The asyncio service: finds finished recordings, runs due jobs against their targets."""

    def __init__(
        self,
        queue: ExportQueue,
        targets: Sequence[ExportTarget],
        recordings_dir: Path | str,
        *,
        concurrency: int = 4,
    ) -> None:
        self.queue = queue
        self.targets: Mapping[str, ExportTarget] = {t.name: t for t in targets}
        if set(self.targets) != set(queue.target_names):
            raise ConfigError(
                CONFIG_SOURCE, "recording.export.targets", "exporter targets differ from the queue's"
            )
        self.recordings_dir = Path(recordings_dir)
        self._known: set[str] = set()
        self._unfinished: dict[str, int] = {}  # directory name -> manifest mtime_ns when last read
        self._semaphore = asyncio.Semaphore(concurrency)
        self._stop = asyncio.Event()

    async def scan(self, now: float) -> int:
        """Register every finished recording under recordings_dir not yet in the store; returns count."""
        dirs = await asyncio.to_thread(iter_recording_dirs, self.recordings_dir)
        registered = 0
        for directory in dirs:
            if directory.name in self._known:
                continue
            try:
                mtime_ns = manifest_path(directory).stat().st_mtime_ns
            except OSError:
                continue
            if self._unfinished.get(directory.name) == mtime_ns:
                continue  # still recording, manifest unchanged since the last look
            try:
                manifest = await asyncio.to_thread(read_manifest, directory)
            except ManifestError:
                logger.exception("export: unreadable manifest in %s", directory)
                self._known.add(directory.name)
                continue
            if manifest.state not in (STATE_COMPLETE, STATE_INTERRUPTED):
                self._unfinished[directory.name] = mtime_ns  # still being written (or awaiting recover())
                continue
            if await self.queue.register(manifest, directory, now):
                registered += 1
            self._known.add(directory.name)
            self._unfinished.pop(directory.name, None)
        return registered

    async def _attempt(self, job: JobView, now: float) -> bool:
        async with self._semaphore:
            target = self.targets[job.target]
            try:
                upload = await self.queue.upload_for(job)
                if not upload.path.is_file():
                    raise ExportError(f"local chunk {upload.path} is missing")
                locator = await target.send(upload)
            except (ExportError, UnknownRecording) as exc:
                await self.queue.mark_failure(job, now, str(exc))
                return False
            except Exception as exc:  # a target bug must not stop the other recordings' exports
                logger.exception("export target %s raised", job.target)
                await self.queue.mark_failure(job, now, f"{type(exc).__name__}: {exc}")
                return False
            await self.queue.mark_success(job, now, locator)
            return True

    async def run_once(self, now: float) -> ExportRound:
        """One round at time ``now``: scan, reconcile, then run due jobs until none is due."""
        registered = await self.scan(now)
        await self.queue.reconcile(now)
        attempted: set[int] = set()
        succeeded = failed = 0
        while True:
            due = [job for job in await self.queue.due_jobs(now) if job.id not in attempted]
            if not due:
                break
            attempted.update(job.id for job in due)
            results = await asyncio.gather(*(self._attempt(job, now) for job in due))
            succeeded += sum(results)
            failed += len(results) - sum(results)
        return ExportRound(registered, len(attempted), succeeded, failed)

    async def run(self, clock: Callable[[], float] = time.time, interval: float = 1.0) -> None:
        """Run rounds until stop(); sleeps at most ``interval`` seconds between rounds."""
        self._stop.clear()
        while not self._stop.is_set():
            try:
                await self.run_once(clock())
            except Exception:
                logger.exception("export round failed; trying again in %.1f s", interval)
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    def stop(self) -> None:
        """Make run() return after the current round."""
        self._stop.set()


async def export_recording_to_directory(
    recordings_dir: Path | str, recording_id: str, destination: Path | str
) -> list[Path]:
    """Copy one recording's local chunks and manifest into ``destination/<recording id>/`` (verified).

    For an operator (``mediagw recordings export ID DIR``); does not touch the export queue. Raises
    UnknownRecording when the recording is not on local disk any more.
    """
    directory = Path(recordings_dir) / recording_id
    try:
        manifest = await asyncio.to_thread(read_manifest, directory)
    except ManifestError as exc:
        raise UnknownRecording(f"recording {recording_id!r} is not on local disk: {exc}") from exc
    target = DirectoryTarget(destination, name="cli")
    content_type = RecordingFormat(manifest.format).content_type
    copied: list[Path] = []
    for chunk in manifest.chunks:
        path = directory / chunk.file_name
        if not path.is_file():
            raise UnknownRecording(f"chunk {chunk.index} of {recording_id!r} is no longer on local disk")
        upload = ChunkUpload(
            path=path,
            recording_id=recording_id,
            contact_id=manifest.contact_id,
            queue=manifest.queue,
            kind=manifest.kind,
            chunk_index=chunk.index,
            chunk_count=len(manifest.chunks),
            file_name=chunk.file_name,
            size=chunk.size,
            sha256=chunk.sha256,
            start_seconds=chunk.start_seconds,
            content_type=content_type,
            manifest_path=manifest_path(directory),
        )
        copied.append(Path(await target.send(upload)))
    return copied
