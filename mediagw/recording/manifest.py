"""The JSON manifest that orders a recording's chunks, and the helpers that write it safely.

Theory of operation
-------------------
Every recording lives in its own directory ``<recordings_dir>/<recording_id>/``; the directory holds the
numbered chunk files and ``manifest.json``. The manifest is the single source of truth about the
recording on disk: which chunks exist, in which order, how long each is, its SHA-256, the paused
(redacted) spans and the recording's state:

* ``recording``: a writer is (or was, if the process died) appending to ``current_chunk``;
* ``complete``: the writer closed cleanly, every chunk is listed in ``chunks``;
* ``interrupted``: the process died while recording; :func:`mediagw.recording.writer.recover` repaired the
  open chunk and listed it.

The manifest is always replaced atomically (write a temporary file, fsync it, rename it over the old one,
fsync the directory), so a crash leaves either the old or the new manifest, never a torn one.

Sample offsets count samples per channel at the recording's sample rate (8,000 per second); seconds are
derived from them.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mediagw.errors import LocalError

CONFIG_SOURCE = "<recording settings>"
"""Names the origin in ConfigError when a setting is checked without its profile file at hand."""

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

STATE_RECORDING = "recording"
STATE_COMPLETE = "complete"
STATE_INTERRUPTED = "interrupted"
RECORDING_STATES = (STATE_RECORDING, STATE_COMPLETE, STATE_INTERRUPTED)

KIND_CALL = "call"
KIND_VOICEMAIL = "voicemail"
RECORDING_KINDS = (KIND_CALL, KIND_VOICEMAIL)

EXPORT_PENDING = "pending"
EXPORT_EXPORTED = "exported"
EXPORT_PURGED = "purged"


class ManifestError(LocalError):
    """A manifest that cannot be read or does not describe a recording."""


@dataclass(frozen=True, slots=True)
class PausedSpan:
    """A span of the recording replaced by silence (pause/resume for redaction)."""

    start_sample: int
    """First silent sample (per channel, from the start of the recording)."""
    end_sample: int
    """One past the last silent sample; equal to ``start_sample`` for an empty span."""
    sample_rate: int = 8000
    """Samples per second, to derive the seconds fields."""

    @property
    def start_seconds(self) -> float:
        """Start offset in seconds."""
        return self.start_sample / self.sample_rate

    @property
    def end_seconds(self) -> float:
        """End offset in seconds."""
        return self.end_sample / self.sample_rate

    def to_json(self) -> dict[str, Any]:
        """The span as the manifest stores it."""
        return {
            "start_sample": self.start_sample,
            "end_sample": self.end_sample,
            "start_seconds": self.start_seconds,
            "end_seconds": self.end_seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], sample_rate: int) -> PausedSpan:
        """Parse one span of a manifest."""
        return cls(int(data["start_sample"]), int(data["end_sample"]), sample_rate)


@dataclass(frozen=True, slots=True)
class DroppedSpan:
    """Frames the writer had to drop because the disk fell behind (never silently: listed here)."""

    at_sample: int
    """Offset in the file where the missing audio would have been."""
    frames: int
    """How many 20 ms frames are missing at that point."""

    def to_json(self) -> dict[str, Any]:
        """The span as the manifest stores it."""
        return {"at_sample": self.at_sample, "frames": self.frames}


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    """One finished chunk file of a recording."""

    index: int
    """Position of the chunk in the recording, from 0."""
    file_name: str
    """File name inside the recording's directory."""
    size: int
    """File size in bytes."""
    start_sample: int
    """Offset of the chunk's first sample in the recording (per channel)."""
    sample_count: int
    """Samples per channel in the chunk."""
    sha256: str
    """Hex SHA-256 of the whole file."""
    sample_rate: int = 8000
    """Samples per second."""

    @property
    def duration(self) -> float:
        """Duration of the chunk in seconds."""
        return self.sample_count / self.sample_rate

    @property
    def start_seconds(self) -> float:
        """Start offset of the chunk in seconds."""
        return self.start_sample / self.sample_rate

    def to_json(self) -> dict[str, Any]:
        """The chunk as the manifest stores it."""
        return {
            "index": self.index,
            "file_name": self.file_name,
            "size": self.size,
            "duration": self.duration,
            "start_sample": self.start_sample,
            "start_seconds": self.start_seconds,
            "sample_count": self.sample_count,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], sample_rate: int) -> ChunkInfo:
        """Parse one chunk entry of a manifest."""
        return cls(
            index=int(data["index"]),
            file_name=str(data["file_name"]),
            size=int(data["size"]),
            start_sample=int(data["start_sample"]),
            sample_count=int(data["sample_count"]),
            sha256=str(data["sha256"]),
            sample_rate=sample_rate,
        )


@dataclass(frozen=True, slots=True)
class OpenChunk:
    """The chunk a writer is appending to; recovery repairs it after a crash."""

    index: int
    """Position of the chunk in the recording."""
    file_name: str
    """File name inside the recording's directory."""
    start_sample: int
    """Offset of the chunk's first sample in the recording."""

    def to_json(self) -> dict[str, Any]:
        """The open chunk as the manifest stores it."""
        return {"index": self.index, "file_name": self.file_name, "start_sample": self.start_sample}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OpenChunk:
        """Parse the open-chunk entry of a manifest."""
        return cls(int(data["index"]), str(data["file_name"]), int(data["start_sample"]))


@dataclass(slots=True)
class Manifest:
    """Everything known about one recording on disk (mutable; replaced atomically on disk)."""

    recording_id: str
    contact_id: str
    queue: str
    kind: str
    format: str
    sample_rate: int
    channels: int
    started_at: float
    """Wall-clock start, POSIX seconds (UTC)."""
    ended_at: float | None = None
    """Wall-clock end, POSIX seconds (UTC); None while recording."""
    state: str = STATE_RECORDING
    chunks: list[ChunkInfo] = field(default_factory=list)
    paused_spans: list[PausedSpan] = field(default_factory=list)
    dropped_spans: list[DroppedSpan] = field(default_factory=list)
    current_chunk: OpenChunk | None = None
    pause_start: int | None = None
    """Start sample of a pause still in progress (so recovery can close the span)."""
    export_state: str = EXPORT_PENDING
    """``pending`` until every target confirmed every chunk, then ``exported``."""

    @property
    def total_samples(self) -> int:
        """Samples per channel in the listed chunks."""
        return sum(chunk.sample_count for chunk in self.chunks)

    @property
    def duration(self) -> float:
        """Duration of the listed chunks in seconds."""
        return self.total_samples / self.sample_rate

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict."""
        return {
            "version": MANIFEST_VERSION,
            "recording_id": self.recording_id,
            "contact_id": self.contact_id,
            "queue": self.queue,
            "kind": self.kind,
            "format": self.format,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "started_at_utc": _utc(self.started_at),
            "ended_at_utc": _utc(self.ended_at) if self.ended_at is not None else None,
            "state": self.state,
            "export_state": self.export_state,
            "duration": self.duration,
            "chunks": [chunk.to_json() for chunk in self.chunks],
            "paused_spans": [span.to_json() for span in self.paused_spans],
            "dropped_spans": [span.to_json() for span in self.dropped_spans],
            "current_chunk": self.current_chunk.to_json() if self.current_chunk is not None else None,
            "pause_start": self.pause_start,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Parse a manifest dict; raises ManifestError when a field is missing or invalid."""
        try:
            rate = int(data["sample_rate"])
            state = str(data["state"])
            if state not in RECORDING_STATES:
                raise ManifestError(f"unknown recording state {state!r}")
            current = data.get("current_chunk")
            ended = data.get("ended_at")
            return cls(
                recording_id=str(data["recording_id"]),
                contact_id=str(data["contact_id"]),
                queue=str(data["queue"]),
                kind=str(data["kind"]),
                format=str(data["format"]),
                sample_rate=rate,
                channels=int(data["channels"]),
                started_at=float(data["started_at"]),
                ended_at=float(ended) if ended is not None else None,
                state=state,
                chunks=[ChunkInfo.from_json(c, rate) for c in data.get("chunks", [])],
                paused_spans=[PausedSpan.from_json(s, rate) for s in data.get("paused_spans", [])],
                dropped_spans=[
                    DroppedSpan(int(s["at_sample"]), int(s["frames"])) for s in data.get("dropped_spans", [])
                ],
                current_chunk=OpenChunk.from_json(current) if current is not None else None,
                pause_start=int(data["pause_start"]) if data.get("pause_start") is not None else None,
                export_state=str(data.get("export_state", EXPORT_PENDING)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"invalid manifest: {exc!r}") from exc

    def copy(self) -> Manifest:
        """A copy whose lists can be changed without touching this one."""
        return dataclasses.replace(
            self,
            chunks=list(self.chunks),
            paused_spans=list(self.paused_spans),
            dropped_spans=list(self.dropped_spans),
        )


def _utc(posix_seconds: float) -> str:
    """ISO 8601 UTC text for operators reading a manifest (the float fields are authoritative)."""
    return datetime.datetime.fromtimestamp(posix_seconds, datetime.UTC).isoformat(timespec="milliseconds")


def manifest_path(recording_dir: Path) -> Path:
    """Where the manifest of the recording in ``recording_dir`` lives."""
    return recording_dir / MANIFEST_NAME


def fsync_directory(directory: Path) -> None:
    """Make a rename or create inside ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON: temporary file, fsync, rename, fsync of the directory."""
    tmp = path.with_name(f".{path.name}.tmp")
    payload = json.dumps(data, indent=2, sort_keys=True).encode("utf-8")
    with open(tmp, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def write_manifest(recording_dir: Path, manifest: Manifest) -> None:
    """Atomically write ``manifest`` into ``recording_dir``."""
    write_json_atomic(manifest_path(recording_dir), manifest.to_json())


def read_manifest(recording_dir: Path) -> Manifest:
    """Read the manifest of the recording in ``recording_dir``; raises ManifestError."""
    path = manifest_path(recording_dir)
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: manifest is not a JSON object")
    return Manifest.from_json(data)


def sha256_file(path: Path, block_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def iter_recording_dirs(recordings_dir: Path) -> list[Path]:
    """Recording directories (those holding a manifest) under ``recordings_dir``, sorted by name."""
    if not recordings_dir.is_dir():
        return []
    return sorted(p for p in recordings_dir.iterdir() if p.is_dir() and manifest_path(p).is_file())
