"""The durable export queue: order, backoff with an explicit clock, deletion after confirmation, restarts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from mediagw.errors import ConfigError
from mediagw.recording.export import (
    BackoffPolicy,
    Exporter,
    ExportQueue,
    UnknownRecording,
    export_recording_to_directory,
)
from mediagw.recording.manifest import read_manifest, sha256_file
from mediagw.recording.targets import ChunkUpload, DirectoryTarget, ExportError
from mediagw.recording.writer import FRAME_SAMPLES, WAV_HEADER_BYTES, RecordingWriter, WriterConfig
from mediagw.store.db import Database, sqlite_url
from mediagw.store.models import ExportJob

T0 = 1_800_000_000.0


class FlakyTarget:
    """An in-memory target that fails its first ``failures`` attempts and records what it received."""

    def __init__(self, name: str, failures: int = 0, error: type[Exception] = ExportError) -> None:
        self.name = name
        self.failures = failures
        self.error = error
        self.attempts: list[tuple[str, int]] = []
        self.received: list[tuple[str, int, bytes]] = []

    async def send(self, chunk: ChunkUpload) -> str:
        self.attempts.append((chunk.recording_id, chunk.chunk_index))
        if self.failures > 0:
            self.failures -= 1
            raise self.error("target unavailable")
        self.received.append((chunk.recording_id, chunk.chunk_index, chunk.path.read_bytes()))
        return f"mem://{chunk.recording_id}/{chunk.chunk_index}"


def record(
    recordings_dir: Path, recording_id: str, frames: int = 40, frames_per_chunk: int = 10
) -> list[Path]:
    """Write a finished stereo WAV recording; returns its chunk paths."""
    config = WriterConfig(chunk_size=WAV_HEADER_BYTES + frames_per_chunk * 640)
    writer = RecordingWriter(
        recordings_dir,
        recording_id,
        contact_id=f"contact-{recording_id}",
        queue="sales",
        config=config,
        wall_clock=lambda: T0,
    )
    writer.start()
    for frame in range(frames):
        samples = (np.arange(frame * FRAME_SAMPLES, (frame + 1) * FRAME_SAMPLES) % 30000).astype(np.int16)
        writer.write_frame(samples, -samples)
    manifest = writer.close()
    return [recordings_dir / recording_id / c.file_name for c in manifest.chunks]


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(sqlite_url(tmp_path / "store.db"))
    await db.create_all()
    yield db
    await db.dispose()


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = BackoffPolicy(base=2.0, cap=30.0, jitter=0.5)
    assert [policy.delay(n, lambda: 0.0) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert [policy.delay(n, lambda: 1.0) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.delay(3, lambda: 0.5) == 6.0
    assert BackoffPolicy(base=1, cap=10, jitter=0).delay(200, lambda: 0.9) == 10
    with pytest.raises(ConfigError):
        BackoffPolicy(base=10, cap=5)
    with pytest.raises(ConfigError):
        BackoffPolicy(jitter=1.5)


async def test_chunks_go_in_order_with_backoff_and_are_deleted_after_every_target(
    tmp_path: Path, database: Database
) -> None:
    recordings = tmp_path / "recordings"
    chunks = record(recordings, "r1")
    assert len(chunks) == 4
    mirror = DirectoryTarget(tmp_path / "mirror")
    flaky = FlakyTarget("crm")
    uniform_values = iter([0.0, 1.0, 0.5])
    backoff = BackoffPolicy(base=10.0, cap=100.0, jitter=0.5)
    queue = ExportQueue(database, ["directory", "crm"], backoff=backoff, uniform=lambda: next(uniform_values))
    exporter = Exporter(queue, [mirror, flaky], recordings)

    # A first recording with no failures: every chunk delivered to both targets, then deleted.
    first = await exporter.run_once(T0)
    assert first.registered == 1 and first.succeeded == 8
    assert [i for _, i, _ in flaky.received] == [0, 1, 2, 3]
    assert not any(c.exists() for c in chunks)
    manifest = read_manifest(recordings / "r1")
    assert manifest.export_state == "exported"

    # A second recording whose chunk 1 fails at the CRM three times.
    chunks2 = record(recordings, "r2")
    flaky.received.clear()
    flaky.attempts.clear()

    async def fail_on_chunk_one(chunk: ChunkUpload, _send=FlakyTarget.send) -> str:  # type: ignore[no-untyped-def]
        if chunk.chunk_index == 1 and failures_left[0] > 0:
            failures_left[0] -= 1
            flaky.attempts.append((chunk.recording_id, chunk.chunk_index))
            raise ExportError("HTTP 503")
        return await _send(flaky, chunk)

    failures_left = [3]
    flaky.send = fail_on_chunk_one  # type: ignore[method-assign]
    now = T0 + 100
    outcome = await exporter.run_once(now)
    assert outcome.registered == 1 and outcome.failed == 1
    assert [i for _, i, _ in flaky.received] == [0]
    assert not chunks2[0].exists()  # both targets confirmed chunk 0
    assert all(c.exists() for c in chunks2[1:])  # the directory has them, the CRM does not yet
    assert all((tmp_path / "mirror" / "r2" / c.name).is_file() for c in chunks2)

    # Attempt 1 failed with u=0.0: next try 5 s later; nothing happens before.
    detail = await queue.show_recording("r2")
    crm_job = next(j for j in detail.jobs if j.target == "crm" and j.chunk_index == 1)
    assert crm_job.attempts == 1 and crm_job.next_attempt_at == now + 5.0
    assert crm_job.last_error == "HTTP 503"
    assert (await exporter.run_once(now + 4.99)).attempted == 0
    # Attempt 2 at +5 fails with u=1.0: 20 s later. Attempt 3 at +25 fails with u=0.5: 30 s later.
    assert (await exporter.run_once(now + 5.0)).failed == 1
    assert (await exporter.run_once(now + 24.9)).attempted == 0
    assert (await exporter.run_once(now + 25.0)).failed == 1
    detail = await queue.show_recording("r2")
    crm_job = next(j for j in detail.jobs if j.target == "crm" and j.chunk_index == 1)
    assert crm_job.attempts == 3 and crm_job.next_attempt_at == now + 55.0
    assert all(c.exists() for c in chunks2[1:])
    # Chunks 2 and 3 were never tried at the CRM before chunk 1 succeeded.
    assert flaky.attempts == [("r2", 0), ("r2", 1), ("r2", 1), ("r2", 1)]

    final = await exporter.run_once(now + 55.0)
    assert final.succeeded == 3
    assert [i for _, i, _ in flaky.received] == [0, 1, 2, 3]
    for (_, index, body), path in zip(flaky.received, chunks2):
        assert body == (tmp_path / "mirror" / "r2" / path.name).read_bytes()
    assert not any(c.exists() for c in chunks2)
    assert read_manifest(recordings / "r2").export_state == "exported"
    summary = (await queue.show_recording("r2")).summary
    assert summary.export_state == "exported" and summary.jobs_done == summary.jobs_total == 8
    purges = [e for e in await queue.audit_entries("r2") if e.action == "purge"]
    assert [json.loads(e.detail or "{}")["chunk_index"] for e in purges] == [0, 1, 2, 3]
    assert {e.reason for e in purges} == {"exported"}


async def test_failures_survive_a_restart(tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    chunks = record(recordings, "r1", frames=20)
    url = sqlite_url(tmp_path / "store.db")
    db = Database(url)
    await db.create_all()
    down = FlakyTarget("crm", failures=1)
    queue = ExportQueue(db, ["crm"], backoff=BackoffPolicy(base=60, cap=600, jitter=0), uniform=lambda: 0.0)
    assert (await Exporter(queue, [down], recordings).run_once(T0)).failed == 1
    await db.dispose()

    # A new process: new engine, queue and exporter on the same database file.
    db2 = Database(url)
    await db2.create_all()
    target = FlakyTarget("crm")
    queue2 = ExportQueue(db2, ["crm"], backoff=BackoffPolicy(base=60, cap=600, jitter=0), uniform=lambda: 0.0)
    exporter2 = Exporter(queue2, [target], recordings)
    assert await queue2.due_jobs(T0 + 59) == []
    assert (await exporter2.run_once(T0 + 59)).registered == 0  # known from the store, not re-queued
    assert [(j.chunk_index, j.attempts) for j in await queue2.due_jobs(T0 + 60)] == [(0, 1)]
    result = await exporter2.run_once(T0 + 60)
    assert result.succeeded == 2 and [i for _, i, _ in target.received] == [0, 1]
    assert not any(c.exists() for c in chunks)
    await db2.dispose()


async def test_reconcile_deletes_a_confirmed_chunk_left_by_a_crash(
    tmp_path: Path, database: Database
) -> None:
    recordings = tmp_path / "recordings"
    chunks = record(recordings, "r1", frames=20)
    queue = ExportQueue(database, ["crm"])
    exporter = Exporter(queue, [FlakyTarget("crm", failures=100)], recordings)
    await exporter.scan(T0)
    # The crash: chunk 0 was confirmed and committed, but the process died before deleting the file.
    async with database.session() as session:
        await session.execute(update(ExportJob).where(ExportJob.chunk_index == 0).values(state="done"))
    assert await queue.reconcile(T0) == 1
    assert not chunks[0].exists() and chunks[1].exists()


async def test_a_target_bug_is_a_failure_not_a_crash(tmp_path: Path, database: Database) -> None:
    recordings = tmp_path / "recordings"
    record(recordings, "r1", frames=10)
    queue = ExportQueue(database, ["crm"], uniform=lambda: 0.0)
    exporter = Exporter(queue, [FlakyTarget("crm", failures=1, error=RuntimeError)], recordings)
    assert (await exporter.run_once(T0)).failed == 1
    (job,) = (await queue.show_recording("r1")).jobs
    assert job.last_error == "RuntimeError: target unavailable"


async def test_cli_facing_api(tmp_path: Path, database: Database) -> None:
    recordings = tmp_path / "recordings"
    chunks = record(recordings, "r1", frames=30)
    record(recordings, "r2", frames=10)
    queue = ExportQueue(database, ["crm"], backoff=BackoffPolicy(base=100, cap=1000), uniform=lambda: 0.0)
    target = FlakyTarget("crm", failures=1)
    exporter = Exporter(queue, [target], recordings)
    await exporter.run_once(T0)  # r1 chunk 0 fails once, r2 goes through (order of due jobs is by id)

    listed = {s.recording_id: s for s in await queue.list_recordings()}
    assert set(listed) == {"r1", "r2"}
    pending = [s for s in listed.values() if s.export_state == "pending"]
    assert len(pending) == 1 and pending[0].next_attempt_at == T0 + 50 and pending[0].last_error
    assert [s.recording_id for s in await queue.list_recordings(export_state="exported")] == [
        s.recording_id for s in listed.values() if s.export_state == "exported"
    ]
    stuck = pending[0].recording_id
    detail = await queue.show_recording(stuck)
    assert [c.index for c in detail.chunks] == list(range(len(detail.chunks)))
    assert detail.summary.contact_id == f"contact-{stuck}"

    # export one recording to a directory while it is still local
    assert stuck == "r1"  # its chunk 0 job was queued first, so it met the one failure
    copied = await export_recording_to_directory(recordings, "r1", tmp_path / "out")
    assert [p.name for p in copied] == [c.name for c in chunks]
    for path in copied:
        assert sha256_file(path) == sha256_file(recordings / "r1" / path.name)
    assert (tmp_path / "out" / "r1" / "manifest.json").is_file()

    assert await queue.retry_now(stuck, T0 + 1) == len(detail.chunks)
    assert (await exporter.run_once(T0 + 1)).succeeded == len(detail.chunks)
    assert all(s.export_state == "exported" for s in await queue.list_recordings())
    assert any(e.action == "retry-export" for e in await queue.audit_entries(stuck))
    with pytest.raises(UnknownRecording):
        await queue.show_recording("nope")
    with pytest.raises(UnknownRecording):
        await queue.retry_now("nope", T0)
    with pytest.raises(UnknownRecording):
        await export_recording_to_directory(recordings, "nope", tmp_path / "out")


async def test_directory_target_verifies_and_keeps_the_manifest(tmp_path: Path) -> None:
    chunks = record(tmp_path / "recordings", "r1", frames=10)
    upload = ChunkUpload(
        path=chunks[0],
        recording_id="r1",
        contact_id="c",
        queue="q",
        kind="call",
        chunk_index=0,
        chunk_count=1,
        file_name=chunks[0].name,
        size=chunks[0].stat().st_size,
        sha256=sha256_file(chunks[0]),
        manifest_path=chunks[0].parent / "manifest.json",
    )
    target = DirectoryTarget(tmp_path / "dest")
    locator = await target.send(upload)
    assert Path(locator).read_bytes() == chunks[0].read_bytes()
    assert (tmp_path / "dest" / "r1" / "manifest.json").is_file()
    with pytest.raises(ExportError):
        await target.send(replace(upload, sha256="0" * 64))
    assert not any(p.name.endswith(".part") for p in (tmp_path / "dest" / "r1").iterdir())


def test_queue_configuration_errors(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "x.db"))
    with pytest.raises(ConfigError):
        ExportQueue(db, [])
    with pytest.raises(ConfigError):
        ExportQueue(db, ["a", "a"])
    with pytest.raises(ConfigError):
        Exporter(ExportQueue(db, ["a"]), [FlakyTarget("b")], tmp_path)


async def test_each_node_exports_only_its_own_recordings(tmp_path: Path, database: Database) -> None:
    node_a, node_b = tmp_path / "a", tmp_path / "b"
    record(node_a, "from-a", frames=10)
    record(node_b, "from-b", frames=10)
    target_a, target_b = FlakyTarget("crm"), FlakyTarget("crm")
    queue_a = ExportQueue(database, ["crm"], node="gw-a")
    queue_b = ExportQueue(database, ["crm"], node="gw-b")
    await Exporter(queue_a, [target_a], node_a).scan(T0)
    await Exporter(queue_b, [target_b], node_b).scan(T0)
    assert {j.recording_id for j in await queue_a.due_jobs(T0)} == {"from-a"}
    assert {j.recording_id for j in await queue_b.due_jobs(T0)} == {"from-b"}
    await Exporter(queue_a, [target_a], node_a).run_once(T0)
    assert {r for r, _, _ in target_a.received} == {"from-a"} and not target_b.received
    listed = {s.recording_id: (s.node, s.export_state) for s in await queue_b.list_recordings()}
    assert listed == {"from-a": ("gw-a", "exported"), "from-b": ("gw-b", "pending")}


async def test_a_removed_target_keeps_its_chunks_without_breaking_the_others(
    tmp_path: Path, database: Database
) -> None:
    recordings = tmp_path / "recordings"
    chunks = record(recordings, "r1", frames=20)
    before = ExportQueue(database, ["archive", "crm"])
    await Exporter(
        before, [FlakyTarget("archive", failures=1), FlakyTarget("crm", failures=1)], recordings
    ).run_once(T0)
    # The operator removes the CRM target; the archive still delivers, the CRM's jobs wait (retention
    # purges the local files at the limit), and nothing raises.
    after = ExportQueue(database, ["archive"], uniform=lambda: 0.0)
    archive = FlakyTarget("archive")
    result = await Exporter(after, [archive], recordings).run_once(T0 + 3600)
    assert result.succeeded == 2 and [i for _, i, _ in archive.received] == [0, 1]
    assert all(c.exists() for c in chunks)
    assert {j.state for j in (await after.show_recording("r1")).jobs if j.target == "crm"} == {"pending"}


async def test_the_service_loop_exports_and_stops(tmp_path: Path, database: Database) -> None:
    import asyncio

    recordings = tmp_path / "recordings"
    chunks = record(recordings, "r1", frames=20)
    target = FlakyTarget("crm")
    exporter = Exporter(ExportQueue(database, ["crm"]), [target], recordings)
    task = asyncio.create_task(exporter.run(clock=lambda: T0, interval=0.01))
    for _ in range(500):
        if not any(c.exists() for c in chunks):
            break
        await asyncio.sleep(0.01)
    exporter.stop()
    await asyncio.wait_for(task, 5)
    assert [i for _, i, _ in target.received] == [0, 1]
    assert not any(c.exists() for c in chunks)
