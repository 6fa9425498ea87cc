"""Export targets against real servers on 127.0.0.1: an HTTP server that fails first, moto's S3, a directory."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from mediagw.recording.export import BackoffPolicy, Exporter, ExportQueue
from mediagw.recording.manifest import read_manifest, sha256_file
from mediagw.recording.targets import (
    ChunkUpload,
    DirectoryTarget,
    ExportError,
    HttpTarget,
    S3Credentials,
    S3Target,
)
from mediagw.recording.writer import FRAME_SAMPLES, WAV_HEADER_BYTES, RecordingWriter, WriterConfig
from mediagw.store.db import Database, sqlite_url

pytestmark = pytest.mark.integration

T0 = 1_800_000_000.0


def record(recordings_dir: Path, recording_id: str, frames: int, frames_per_chunk: int) -> list[Path]:
    """A finished stereo WAV recording of a sample counter; returns its chunk paths in order."""
    config = WriterConfig(
        chunk_size=WAV_HEADER_BYTES + frames_per_chunk * 640, max_queue_frames=max(frames + 1, 15_000)
    )
    writer = RecordingWriter(
        recordings_dir,
        recording_id,
        contact_id="contact-7",
        queue="billing",
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


class CrmServer:
    """A webhook on 127.0.0.1 that answers 503 to its first ``failures`` POSTs, then 201."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with owner.lock:
                    status = 503 if owner.failures > 0 else 201
                    owner.failures -= status == 503
                    owner.requests.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/recordings"

    def confirmed(self) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b, status in self.requests if status == 201]


@pytest.fixture
def crm() -> Iterator[CrmServer]:
    server = CrmServer(failures=2)
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


async def test_http_target_retries_with_backoff_in_order_and_deletes_after_confirmation(
    tmp_path: Path, database: Database, crm: CrmServer
) -> None:
    recordings = tmp_path / "recordings"
    chunks = record(recordings, "call-1", frames=35, frames_per_chunk=10)
    assert len(chunks) == 4
    target = HttpTarget(crm.url, {"Authorization": "Bearer crm-token"}, name="crm", timeout=10)
    queue = ExportQueue(
        database, ["crm"], backoff=BackoffPolicy(base=10.0, cap=100.0, jitter=0.5), uniform=lambda: 0.5
    )
    exporter = Exporter(queue, [target], recordings)

    first = await exporter.run_once(T0)
    assert (first.attempted, first.failed) == (1, 1)  # 503: chunk 0 waits, the others are not tried
    assert all(c.exists() for c in chunks)
    assert (await exporter.run_once(T0 + 7.49)).attempted == 0  # 10 * (0.5 + 0.5 * 0.5) = 7.5 s
    second = await exporter.run_once(T0 + 7.5)
    assert (second.attempted, second.failed) == (1, 1)  # second 503: next delay 20 * 0.75 = 15 s
    assert (await exporter.run_once(T0 + 22.49)).attempted == 0
    assert all(c.exists() for c in chunks)
    third = await exporter.run_once(T0 + 22.5)
    assert (third.succeeded, third.failed) == (4, 0)

    assert [status for _, _, status in crm.requests] == [503, 503, 201, 201, 201, 201]
    confirmed = crm.confirmed()
    assert [int(h["X-Mediagw-Chunk-Index"]) for h, _ in confirmed] == [0, 1, 2, 3]
    manifest = read_manifest(recordings / "call-1")
    for (headers, body), chunk in zip(confirmed, manifest.chunks):
        assert headers["X-Mediagw-Recording-Id"] == "call-1"
        assert headers["X-Mediagw-Contact-Id"] == "contact-7"
        assert headers["X-Mediagw-Chunk-Count"] == "4"
        assert headers["X-Mediagw-Sha256"] == chunk.sha256 == hashlib.sha256(body).hexdigest()
        assert headers["Authorization"] == "Bearer crm-token"
        assert headers["Content-Type"] == "audio/wav"
        assert headers["Idempotency-Key"] == f"call-1/{chunk.index}"
        assert len(body) == chunk.size
    assert not any(c.exists() for c in chunks)
    assert manifest.export_state == "exported"
    (summary,) = await queue.list_recordings()
    assert summary.export_state == "exported"


async def test_http_target_refuses_non_2xx_and_unreachable(tmp_path: Path, crm: CrmServer) -> None:
    chunks = record(tmp_path / "recordings", "call-2", frames=5, frames_per_chunk=10)
    upload = ChunkUpload(
        path=chunks[0],
        recording_id="call-2",
        contact_id="c",
        queue="q",
        kind="call",
        chunk_index=0,
        chunk_count=1,
        file_name=chunks[0].name,
        size=chunks[0].stat().st_size,
        sha256=sha256_file(chunks[0]),
        content_type="audio/wav",
    )
    with pytest.raises(ExportError, match="503"):
        await HttpTarget(crm.url, timeout=10).send(upload)
    crm.server.shutdown()
    crm.server.server_close()
    with pytest.raises(ExportError):
        await HttpTarget(crm.url, timeout=2).send(upload)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


async def test_s3_target_single_and_multipart_uploads(
    tmp_path: Path, database: Database, moto_endpoint: str
) -> None:
    import boto3

    credentials = S3Credentials("testing", "testing")
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="recordings")
    recordings = tmp_path / "recordings"
    # 6 MiB chunks (over the 5 MiB threshold: multipart with 5 MiB parts) and a small last chunk.
    frames_per_chunk = 6 * 1024 * 1024 // 640
    chunks = record(recordings, "call-3", frames=2 * frames_per_chunk + 50, frames_per_chunk=frames_per_chunk)
    assert len(chunks) == 3
    target = S3Target(
        "recordings",
        "gw1/",
        moto_endpoint,
        credentials,
        multipart_threshold=5 * 1024 * 1024,
        multipart_part_size=5 * 1024 * 1024,
    )
    queue = ExportQueue(database, ["s3"])
    result = await Exporter(queue, [target], recordings).run_once(T0)
    assert (result.succeeded, result.failed) == (3, 0)

    manifest = read_manifest(recordings / "call-3")
    for chunk in manifest.chunks:
        key = f"gw1/call-3/{chunk.file_name}"
        head = s3.head_object(Bucket="recordings", Key=key)
        assert head["ContentLength"] == chunk.size
        assert head["Metadata"]["sha256"] == chunk.sha256
        assert head["Metadata"]["chunk-index"] == str(chunk.index)
        body = s3.get_object(Bucket="recordings", Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == chunk.sha256
        multipart = "-" in head["ETag"]
        assert multipart == (chunk.size > 5 * 1024 * 1024)
    assert not any(c.exists() for c in chunks)
    detail = await queue.show_recording("call-3")
    assert [j.locator for j in detail.jobs] == [
        f"s3://recordings/gw1/call-3/{c.file_name}" for c in manifest.chunks
    ]


async def test_s3_target_missing_bucket_is_a_retried_failure(
    tmp_path: Path, database: Database, moto_endpoint: str
) -> None:
    recordings = tmp_path / "recordings"
    chunks = record(recordings, "call-4", frames=5, frames_per_chunk=10)
    target = S3Target("no-such-bucket", "", moto_endpoint, S3Credentials("testing", "testing"))
    queue = ExportQueue(database, ["s3"], uniform=lambda: 0.0)
    result = await Exporter(queue, [target], recordings).run_once(T0)
    assert result.failed == 1 and chunks[0].exists()
    (job,) = (await queue.show_recording("call-4")).jobs
    assert job.attempts == 1 and "no-such-bucket" in (job.last_error or "")


async def test_directory_and_http_targets_together(
    tmp_path: Path, database: Database, crm: CrmServer
) -> None:
    recordings = tmp_path / "recordings"
    chunks = record(recordings, "call-5", frames=25, frames_per_chunk=10)
    archive = DirectoryTarget(tmp_path / "archive", name="archive")
    queue = ExportQueue(
        database, ["archive", "crm"], backoff=BackoffPolicy(base=1, cap=10), uniform=lambda: 1.0
    )
    exporter = Exporter(queue, [archive, HttpTarget(crm.url, name="crm", timeout=10)], recordings)
    await exporter.run_once(T0)
    # The archive has everything; the CRM failed chunk 0, so no local file may be deleted yet.
    assert all((tmp_path / "archive" / "call-5" / c.name).read_bytes() == c.read_bytes() for c in chunks)
    assert all(c.exists() for c in chunks)
    await exporter.run_once(T0 + 1)
    assert all(c.exists() for c in chunks)
    await exporter.run_once(T0 + 3)
    assert not any(c.exists() for c in chunks)
    assert (tmp_path / "archive" / "call-5" / "manifest.json").is_file()
