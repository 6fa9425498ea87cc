"""Retention: nothing stays on local disk past the limit, exported or not; every purge is audited."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from mediagw.errors import ConfigError
from mediagw.recording.export import Exporter, ExportQueue
from mediagw.recording.retention import MAX_RETENTION_SECONDS, RetentionPolicy, RetentionService
from mediagw.recording.targets import ChunkUpload, DirectoryTarget, ExportError
from mediagw.recording.writer import FRAME_SAMPLES, WAV_HEADER_BYTES, RecordingWriter, WriterConfig
from mediagw.store.db import Database, sqlite_url

DAY = 86_400.0
T0 = 1_800_000_000.0


class DownTarget:
    """A target that never confirms."""

    name = "crm"

    async def send(self, chunk: ChunkUpload) -> str:
        raise ExportError("connection refused")


def record(recordings_dir: Path, recording_id: str, started_at: float) -> None:
    writer = RecordingWriter(
        recordings_dir,
        recording_id,
        contact_id="c",
        wall_clock=lambda: started_at,
        config=WriterConfig(chunk_size=WAV_HEADER_BYTES + 5 * 640),
    )
    writer.start()
    for _ in range(12):
        writer.write_frame(np.ones(FRAME_SAMPLES, np.int16), np.zeros(FRAME_SAMPLES, np.int16))
    writer.close()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(sqlite_url(tmp_path / "store.db"))
    await db.create_all()
    yield db
    await db.dispose()


def test_policy_default_is_the_maximum_and_more_is_an_error() -> None:
    assert RetentionPolicy().limit_seconds == MAX_RETENTION_SECONDS == 604_800
    assert RetentionPolicy(3600).is_expired(T0, T0 + 3600)
    assert not RetentionPolicy(3600).is_expired(T0, T0 + 3599.9)
    with pytest.raises(ConfigError, match="7 days"):
        RetentionPolicy(MAX_RETENTION_SECONDS + 1)
    with pytest.raises(ConfigError):
        RetentionPolicy(0)


async def test_unexported_recordings_are_purged_at_the_limit_and_audited(
    tmp_path: Path, database: Database
) -> None:
    recordings = tmp_path / "recordings"
    record(recordings, "old", T0)
    record(recordings, "young", T0 + 2 * DAY)
    queue = ExportQueue(database, ["crm"])
    exporter = Exporter(queue, [DownTarget()], recordings)
    await exporter.run_once(T0 + 2 * DAY)  # registered, first attempts fail
    service = RetentionService(recordings, RetentionPolicy(), queue)

    assert await service.purge_expired(T0 + 7 * DAY - 1) == []
    purged = await service.purge_expired(T0 + 7 * DAY)
    assert [(p.recording_id, p.reason, p.export_state) for p in purged] == [
        ("old", "retention-limit", "pending")
    ]
    assert purged[0].files_removed == 4  # three chunks and the manifest
    assert not (recordings / "old").exists() and (recordings / "young").is_dir()

    (entry,) = [e for e in await queue.audit_entries("old") if e.action == "purge"]
    assert (entry.reason, entry.actor, entry.at) == ("retention-limit", "retention", T0 + 7 * DAY)
    assert json.loads(entry.detail or "{}")["age_seconds"] == 7 * DAY
    detail = await queue.show_recording("old")
    assert detail.summary.export_state == "purged" and detail.summary.local_state == "deleted"
    assert {j.state for j in detail.jobs} == {"abandoned"}
    assert all(c.local_state == "deleted" for c in detail.chunks)
    assert await queue.due_jobs(T0 + 30 * DAY) != []  # only the young recording's jobs remain
    assert {j.recording_id for j in await queue.due_jobs(T0 + 30 * DAY)} == {"young"}

    assert [p.recording_id for p in await service.purge_expired(T0 + 9 * DAY)] == ["young"]
    assert not any(recordings.iterdir())


async def test_exported_recordings_leave_two_kinds_of_audit_entry(tmp_path: Path, database: Database) -> None:
    recordings = tmp_path / "recordings"
    record(recordings, "r1", T0)
    queue = ExportQueue(database, ["archive"])
    await Exporter(queue, [DirectoryTarget(tmp_path / "archive", name="archive")], recordings).run_once(T0)
    assert sorted(p.name for p in (recordings / "r1").iterdir()) == ["manifest.json"]
    service = RetentionService(recordings, RetentionPolicy(DAY), queue)
    purged = await service.purge_expired(T0 + DAY)
    assert [(p.recording_id, p.export_state) for p in purged] == [("r1", "exported")]
    reasons = [e.reason for e in await queue.audit_entries("r1") if e.action == "purge"]
    assert reasons == ["exported", "exported", "exported", "retention-limit"]
    assert (await queue.show_recording("r1")).summary.export_state == "exported"


async def test_a_directory_without_a_readable_manifest_is_purged_by_file_age(
    tmp_path: Path, database: Database
) -> None:
    recordings = tmp_path / "recordings"
    stray = recordings / "stray"
    stray.mkdir(parents=True)
    (stray / "stray-00000.wav").write_bytes(b"RIFF")
    (stray / "manifest.json").write_text("{not json")
    mtime = (stray / "manifest.json").stat().st_mtime
    queue = ExportQueue(database, ["crm"])
    service = RetentionService(recordings, RetentionPolicy(), queue)
    assert await service.purge_expired(mtime + 6 * DAY) == []
    (purge,) = await service.purge_expired(mtime + 7 * DAY)
    assert purge.recording_id == "stray" and purge.export_state is None
    assert not stray.exists()
    assert [e.reason for e in await queue.audit_entries("stray")] == ["retention-limit"]
