"""``mediagw recordings``: list, show, retry and export against a real SQLite store and real chunk files."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from mediagw.recording.cli import format_duration, format_time, main, table
from mediagw.recording.export import BackoffPolicy, Exporter, ExportQueue
from mediagw.recording.manifest import read_manifest, sha256_file
from mediagw.recording.service import recordings_dir_of
from mediagw.recording.targets import ChunkUpload, DirectoryTarget, ExportError
from mediagw.recording.writer import FRAME_SAMPLES, WAV_HEADER_BYTES, RecordingWriter, WriterConfig
from mediagw.store.db import Database, sqlite_url

T0 = time.time() - 600.0


class RefusingTarget:
    """A target that is down: every delivery fails."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, chunk: ChunkUpload) -> str:
        raise ExportError("HTTP 503 Service Unavailable")


def write_recording(recordings_dir: Path, recording_id: str, contact_id: str, frames: int = 25) -> None:
    writer = RecordingWriter(
        recordings_dir,
        recording_id,
        contact_id=contact_id,
        queue="sales",
        config=WriterConfig(chunk_size=WAV_HEADER_BYTES + 10 * 640),  # 10 frames per chunk
        wall_clock=lambda: T0,
    )
    writer.start()
    for frame in range(frames):
        samples = (np.arange(frame * FRAME_SAMPLES, (frame + 1) * FRAME_SAMPLES) % 20000).astype(np.int16)
        writer.write_frame(samples, -samples)
    writer.close()


async def _populate(data_dir: Path, archive: Path) -> None:
    data_dir.mkdir(parents=True)
    database = Database(sqlite_url(data_dir / "mediagw.db"))
    await database.create_all()
    recordings = recordings_dir_of(data_dir)
    write_recording(recordings, "rec-ok", "contact-1")
    write_recording(recordings, "rec-down", "contact-2")
    write_recording(recordings, "rec-local", "contact-3")
    for recording_id, targets in (("rec-ok", ["archive"]), ("rec-down", ["crm"]), ("rec-local", ["crm"])):
        manifest = read_manifest(recordings / recording_id)
        await ExportQueue(database, targets).register(manifest, recordings / recording_id, T0)
    queue = ExportQueue(database, ["archive", "crm"], backoff=BackoffPolicy(base=3600.0, cap=7200.0))
    exporter = Exporter(queue, [DirectoryTarget(archive, name="archive"), RefusingTarget("crm")], recordings)
    await exporter.run_once(T0)
    await database.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    asyncio.run(_populate(directory, tmp_path / "archive"))
    return directory


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["recordings", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_list_shows_every_recording_with_its_export_state(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = cli(capsys, "list", "--data-dir", str(data_dir))
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID", "CONTACT", "QUEUE", "STATE", "STARTED", "DURATION", "CHUNKS", "EXPORT", "JOBS", "LOCAL", "NEXT",
        "ATTEMPT", "LAST", "ERROR",
    ]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"rec-ok", "rec-down", "rec-local"}
    ok = rows["rec-ok"].split()
    assert ok[1:4] == ["contact-1", "sales", "complete"]
    assert ok[6:10] == ["0:00:00.5", "3", "exported", "3/3"]
    assert "HTTP 503" in rows["rec-down"] and " pending " in rows["rec-down"] and "0/3" in rows["rec-down"]
    status, out, _ = cli(capsys, "--data-dir", str(data_dir), "list", "--export-state", "exported")
    assert status == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["rec-ok"]
    status, out, _ = cli(capsys, "list", "--data-dir", str(data_dir), "--export-state", "purged")
    assert status == 0 and out.strip() == "no recordings"


def test_show_prints_chunks_and_jobs(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = cli(capsys, "show", "rec-down", "--data-dir", str(data_dir))
    assert status == 0 and err == ""
    fields = {line[:12].strip(): line[14:] for line in out.split("\n\n")[0].splitlines()}
    assert fields["recording"] == "rec-down" and fields["contact"] == "contact-2"
    assert fields["export"] == "pending (0/3 jobs done)"
    assert fields["last error"] == "HTTP 503 Service Unavailable"
    chunk_rows = [line for line in out.splitlines() if line.startswith(("0 ", "1 ", "2 "))]
    assert any("rec-down-00000.wav" in line and "present" in line for line in chunk_rows)
    job_rows = [line for line in out.splitlines() if " crm " in line]
    assert len(job_rows) == 3
    assert "pending  1 " in job_rows[0] and "HTTP 503" in job_rows[0]  # attempted once, failed
    status, out, _ = cli(capsys, "show", "rec-ok", "--data-dir", str(data_dir))
    assert status == 0 and "deleted" in out and "done" in out and str(Path("archive") / "rec-ok") in out
    status, out, err = cli(capsys, "show", "nope", "--data-dir", str(data_dir))
    assert status == 1 and out == "" and "unknown recording 'nope'" in err


def test_retry_makes_pending_jobs_due_now_and_is_audited(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def read_back() -> tuple[list[float], list[tuple[str, str]]]:
        database = Database(sqlite_url(data_dir / "mediagw.db"))
        queue = ExportQueue(database, ["crm"])
        detail = await queue.show_recording("rec-down")
        entries = [(entry.action, entry.actor) for entry in await queue.audit_entries("rec-down")]
        await database.dispose()
        return [job.next_attempt_at for job in detail.jobs], entries

    attempts, audit = asyncio.run(read_back())
    assert attempts[0] >= T0 + 1800.0  # chunk 0 backed off after its failure; the others wait behind it
    assert ("retry-export", "cli") not in audit
    before = time.time()
    status, out, err = cli(capsys, "retry", "rec-down", "--data-dir", str(data_dir))
    assert status == 0 and err == ""
    assert out.startswith("3 pending export job(s) of rec-down are due now")
    attempts, audit = asyncio.run(read_back())
    assert all(before - 1 <= t <= time.time() + 1 for t in attempts)
    assert ("retry-export", "cli") in audit
    status, out, _ = cli(capsys, "retry", "rec-ok", "--data-dir", str(data_dir))
    assert status == 0 and "no pending export job" in out
    status, _, err = cli(capsys, "retry", "nope", "--data-dir", str(data_dir))
    assert status == 1 and "unknown recording" in err


def test_export_copies_local_chunks_to_a_directory(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    destination = tmp_path / "usb"
    status, out, err = cli(capsys, "export", "rec-local", str(destination), "--data-dir", str(data_dir))
    assert status == 0 and err == ""
    source = recordings_dir_of(data_dir) / "rec-local"
    manifest = read_manifest(source)
    for chunk in manifest.chunks:
        assert sha256_file(destination / "rec-local" / chunk.file_name) == chunk.sha256
        assert str(destination / "rec-local" / chunk.file_name) in out
    assert (destination / "rec-local" / "manifest.json").is_file()
    assert out.splitlines()[-1].startswith("3 chunk(s) of rec-local copied to")
    status, _, err = cli(capsys, "export", "rec-ok", str(destination), "--data-dir", str(data_dir))
    assert status == 1 and "no longer on local disk" in err  # exported: the local copies are gone
    status, _, err = cli(capsys, "export", "nope", str(destination), "--data-dir", str(data_dir))
    assert status == 1 and "not on local disk" in err


def test_errors_and_an_empty_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = cli(capsys, "list", "--profile", str(tmp_path / "missing.toml"))
    assert status == 2 and "cannot read" in err
    bad = tmp_path / "bad.toml"
    bad.write_text('nonsense = "x"\n')
    status, _, err = cli(capsys, "list", "--profile", str(bad))
    assert status == 2 and "nonsense" in err
    empty = tmp_path / "empty"
    status, out, _ = cli(capsys, "list", "--data-dir", str(empty))
    assert status == 0 and out.startswith("no recordings")
    status, _, err = cli(capsys, "show", "x", "--data-dir", str(empty))
    assert status == 1 and "unknown recording 'x'" in err
    assert not empty.exists()  # reading never creates a store
    with pytest.raises(SystemExit) as caught:
        main(["recordings", "list", "--limit", "0"])
    assert caught.value.code == 2


def test_text_helpers() -> None:
    assert format_time(0.0) == "1970-01-01 00:00:00Z" and format_time(None) == "-"
    assert format_duration(3725.25) == "1:02:05.2"
    assert table(["A", "BB"], [["xxx", "y"]]) == "A    BB\nxxx  y"
