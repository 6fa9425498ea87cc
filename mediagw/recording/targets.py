"""Export targets: where finished recording chunks are delivered (directory, HTTP webhook, S3).

Every target implements :class:`ExportTarget`: ``await target.send(chunk)`` returns a locator (a path, URL or
``s3://`` address) once the target has durably confirmed the chunk, and raises :class:`ExportError`
otherwise. Blocking I/O runs in a worker thread (``asyncio.to_thread``), never on the event loop. A chunk may
be delivered more than once (a confirmation lost in a crash is retried): targets overwrite by key and the
HTTP target sends an ``Idempotency-Key`` so that a receiver can deduplicate.

HTTP wire format (documented for the CRM side): one ``POST`` per chunk with the raw file as the body
(not multipart) and these headers:

=====================  ============================================================================
``Content-Type``       ``audio/wav`` or ``audio/ogg``
``Content-Length``     chunk size in bytes
``X-Mediagw-Contact-Id``, ``X-Mediagw-Recording-Id``
``X-Mediagw-Chunk-Index``  0-based position of the chunk; ``X-Mediagw-Chunk-Count`` chunks in all
``X-Mediagw-Sha256``   hex SHA-256 of the body; also ``Repr-Digest: sha-256=:<base64>:`` (RFC 9530)
``X-Mediagw-File-Name``, ``X-Mediagw-Queue``, ``X-Mediagw-Kind``, ``X-Mediagw-Start-Seconds``
``Idempotency-Key``    ``<recording id>/<chunk index>``
=====================  ============================================================================

Any 2xx response confirms the chunk; anything else (including redirects, which are not followed) or a
network error is a failure that the export queue retries with backoff.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mediagw.errors import MediagwError
from mediagw.recording.manifest import fsync_directory, sha256_file


class ExportError(MediagwError):
    """A target did not confirm a chunk; the export queue retries it with backoff."""


@dataclass(frozen=True, slots=True)
class ChunkUpload:
    """One local chunk file and what a target needs to know about it."""

    path: Path
    """The local chunk file."""
    recording_id: str
    contact_id: str
    queue: str
    kind: str
    chunk_index: int
    chunk_count: int
    file_name: str
    size: int
    sha256: str
    """Hex SHA-256 recorded in the manifest when the chunk was closed."""
    start_seconds: float = 0.0
    content_type: str = "application/octet-stream"
    manifest_path: Path | None = None
    """The recording's manifest, for targets that keep it next to the chunks."""


class ExportTarget(Protocol):
    """Somewhere chunks are delivered to."""

    name: str
    """Stable name of the target; export jobs refer to it, so renaming one re-exports everything."""

    async def send(self, chunk: ChunkUpload) -> str:
        """Deliver ``chunk`` and return where it landed; raises ExportError unless confirmed."""
        ...


def _copy_verified(source: Path, destination: Path, expected_sha256: str) -> None:
    """Copy to a temporary name, fsync, check the SHA-256, rename into place, fsync the directory."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.part")
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(tmp, "wb") as writer:
        while block := reader.read(1 << 20):
            digest.update(block)
            writer.write(block)
        writer.flush()
        os.fsync(writer.fileno())
    if digest.hexdigest() != expected_sha256 or sha256_file(tmp) != expected_sha256:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{source}: SHA-256 mismatch while copying to {destination}")
    os.replace(tmp, destination)
    fsync_directory(destination.parent)


class DirectoryTarget:
    """Copies chunks into ``<path>/<recording id>/`` (fsynced and verified), with the manifest beside them."""

    def __init__(self, path: Path | str, *, name: str = "directory") -> None:
        self.path = Path(path)
        self.name = name

    def _send(self, chunk: ChunkUpload) -> str:
        destination = self.path / chunk.recording_id / chunk.file_name
        try:
            _copy_verified(chunk.path, destination, chunk.sha256)
            if chunk.manifest_path is not None and chunk.manifest_path.is_file():
                manifest_copy = destination.with_name(chunk.manifest_path.name)
                tmp = manifest_copy.with_name(f".{manifest_copy.name}.part")
                shutil.copyfile(chunk.manifest_path, tmp)
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.replace(tmp, manifest_copy)
                fsync_directory(manifest_copy.parent)
        except OSError as exc:
            raise ExportError(f"directory target {self.path}: {exc}") from exc
        return str(destination)

    async def send(self, chunk: ChunkUpload) -> str:
        """Copy, fsync and verify the chunk; returns the destination path."""
        return await asyncio.to_thread(self._send, chunk)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not a confirmation: urllib would turn the POST into a body-less GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class HttpTarget:
    """POSTs each chunk as a raw body with metadata headers (see the module docstring); 2xx confirms."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        name: str = "http",
        timeout: float = 60.0,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.name = name
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect())

    def request_headers(self, chunk: ChunkUpload) -> dict[str, str]:
        """The headers sent with ``chunk`` (configured headers first, ours override)."""
        digest = base64.b64encode(bytes.fromhex(chunk.sha256)).decode("ascii")
        return {
            **self.headers,
            "Content-Type": chunk.content_type,
            "Content-Length": str(chunk.size),
            "X-Mediagw-Contact-Id": chunk.contact_id,
            "X-Mediagw-Recording-Id": chunk.recording_id,
            "X-Mediagw-Chunk-Index": str(chunk.chunk_index),
            "X-Mediagw-Chunk-Count": str(chunk.chunk_count),
            "X-Mediagw-Sha256": chunk.sha256,
            "X-Mediagw-File-Name": chunk.file_name,
            "X-Mediagw-Queue": chunk.queue,
            "X-Mediagw-Kind": chunk.kind,
            "X-Mediagw-Start-Seconds": f"{chunk.start_seconds:.3f}",
            "Repr-Digest": f"sha-256=:{digest}:",  # RFC 9530 §3
            "Idempotency-Key": f"{chunk.recording_id}/{chunk.chunk_index}",
        }

    def _send(self, chunk: ChunkUpload) -> str:
        try:
            with open(chunk.path, "rb") as body:
                request = urllib.request.Request(
                    self.url, data=body, method="POST", headers=self.request_headers(chunk)
                )
                with self._opener.open(request, timeout=self.timeout) as response:
                    status = int(response.status)
                    response.read()
        except urllib.error.HTTPError as exc:
            raise ExportError(f"POST {self.url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ExportError(f"POST {self.url}: {exc}") from exc
        if not 200 <= status < 300:
            raise ExportError(f"POST {self.url}: HTTP {status}")
        return f"{self.url}#{chunk.recording_id}/{chunk.chunk_index}"

    async def send(self, chunk: ChunkUpload) -> str:
        """POST the chunk from a worker thread; returns the URL with the chunk's key as fragment."""
        return await asyncio.to_thread(self._send, chunk)


@dataclass(frozen=True, slots=True)
class S3Credentials:
    """Static credentials for an S3-compatible store (omit to use boto3's usual credential chain)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


DEFAULT_MULTIPART_THRESHOLD = 8 * 1024 * 1024  # bytes; boto3's own default
DEFAULT_MULTIPART_PART_SIZE = 8 * 1024 * 1024  # bytes; S3 requires at least 5 MiB per part but the last


class S3Target:
    """Uploads chunks to ``s3://bucket/<prefix><recording id>/<file name>`` with boto3, from a thread.

    Chunks above ``multipart_threshold`` bytes go up as a multipart upload. The SHA-256 travels as object
    metadata (``x-amz-meta-sha256``); the upload is confirmed by a HEAD that checks size and that metadata.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        credentials: S3Credentials | None = None,
        *,
        region_name: str = "us-east-1",
        name: str = "s3",
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        multipart_part_size: int = DEFAULT_MULTIPART_PART_SIZE,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.credentials = credentials
        self.region_name = region_name
        self.name = name
        self.multipart_threshold = multipart_threshold
        self.multipart_part_size = multipart_part_size
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            import boto3  # type: ignore[import-untyped]  # deferred: only S3 deployments need it

            kwargs: dict[str, Any] = {"region_name": self.region_name}
            if self.endpoint_url is not None:
                kwargs["endpoint_url"] = self.endpoint_url
            if self.credentials is not None:
                kwargs["aws_access_key_id"] = self.credentials.access_key_id
                kwargs["aws_secret_access_key"] = self.credentials.secret_access_key
                kwargs["aws_session_token"] = self.credentials.session_token
            self._client = boto3.session.Session().client("s3", **kwargs)
        return self._client

    def key_for(self, chunk: ChunkUpload) -> str:
        """Object key of ``chunk``."""
        return f"{self.prefix}{chunk.recording_id}/{chunk.file_name}"

    def _send(self, chunk: ChunkUpload) -> str:
        from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        key = self.key_for(chunk)
        config = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_part_size,
            use_threads=False,
        )
        extra = {
            "ContentType": chunk.content_type,
            "Metadata": {
                "sha256": chunk.sha256,
                "contact-id": chunk.contact_id,
                "recording-id": chunk.recording_id,
                "chunk-index": str(chunk.chunk_index),
                "chunk-count": str(chunk.chunk_count),
            },
        }
        try:
            client = self._get_client()
            client.upload_file(str(chunk.path), self.bucket, key, ExtraArgs=extra, Config=config)
            head = client.head_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise ExportError(f"s3://{self.bucket}/{key}: {exc}") from exc
        if int(head["ContentLength"]) != chunk.size or head.get("Metadata", {}).get("sha256") != chunk.sha256:
            raise ExportError(f"s3://{self.bucket}/{key}: stored object does not match the chunk")
        return f"s3://{self.bucket}/{key}"

    async def send(self, chunk: ChunkUpload) -> str:
        """Upload (multipart above the threshold) from a worker thread; returns the s3:// address."""
        return await asyncio.to_thread(self._send, chunk)
