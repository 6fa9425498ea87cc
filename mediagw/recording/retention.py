"""Local retention: no recording stays on this machine past the limit, exported or not.

Theory of operation
-------------------
The limit (default and maximum seven days) is measured from a recording's start (``started_at`` in its
manifest; the newest file's modification time when the manifest cannot be read). A recording directory
older than the limit is removed whole, whatever its export state: a recording that no target took in a
week is an operator's problem the audit log reports, never a reason to fill the disk or to keep personal
data longer than promised. Every purge is written to the audit log with reason ``retention-limit``
(purges after a successful export are audited by the export queue with reason ``exported``), and the
store marks the recording's pending export jobs abandoned.

The policy is a pure function of ``now``; :class:`RetentionService` applies it to a directory and a store.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mediagw.errors import ConfigError
from mediagw.recording.export import REASON_RETENTION, ExportQueue
from mediagw.recording.manifest import CONFIG_SOURCE, ManifestError, read_manifest

logger = logging.getLogger(__name__)

MAX_RETENTION_SECONDS = 7 * 24 * 3600  # 604,800 s: the longest any recording may stay on local disk
DEFAULT_RETENTION_SECONDS = MAX_RETENTION_SECONDS


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long recordings may stay on local disk."""

    limit_seconds: float = DEFAULT_RETENTION_SECONDS

    def __post_init__(self) -> None:
        if not 0 < self.limit_seconds <= MAX_RETENTION_SECONDS:
            raise ConfigError(
                CONFIG_SOURCE,
                "recording.retention_seconds",
                f"{self.limit_seconds} is outside 0 < limit <= {MAX_RETENTION_SECONDS} (7 days)",
            )

    def is_expired(self, started_at: float, now: float) -> bool:
        """Whether a recording started at ``started_at`` must be gone at ``now``."""
        return now - started_at >= self.limit_seconds


@dataclass(frozen=True, slots=True)
class PurgeRecord:
    """One recording removed from local disk."""

    recording_id: str
    reason: str
    age_seconds: float
    files_removed: int
    export_state: str | None
    """The manifest's export state at the time (None when the manifest was unreadable)."""


def _recording_age_basis(directory: Path) -> tuple[float, str | None]:
    """When the recording in ``directory`` started, and its export state if the manifest says."""
    try:
        manifest = read_manifest(directory)
        return manifest.started_at, manifest.export_state
    except ManifestError:
        times = [p.stat().st_mtime for p in directory.iterdir()] or [directory.stat().st_mtime]
        return max(times), None


def _scan(recordings_dir: Path) -> list[tuple[Path, float, str | None]]:
    if not recordings_dir.is_dir():
        return []
    found = []
    for directory in sorted(recordings_dir.iterdir()):
        if directory.is_dir() and not directory.name.startswith("."):
            started_at, export_state = _recording_age_basis(directory)
            found.append((directory, started_at, export_state))
    return found


def _remove(directory: Path) -> int:
    count = sum(1 for p in directory.rglob("*") if p.is_file())
    shutil.rmtree(directory)
    return count


class RetentionService:
    """Applies a RetentionPolicy to the recordings directory and records each purge in the store."""

    def __init__(self, recordings_dir: Path | str, policy: RetentionPolicy, queue: ExportQueue) -> None:
        self.recordings_dir = Path(recordings_dir)
        self.policy = policy
        self.queue = queue
        self._stop = asyncio.Event()

    async def purge_expired(self, now: float) -> list[PurgeRecord]:
        """Remove every recording older than the limit at ``now``; each purge is audited."""
        purged: list[PurgeRecord] = []
        for directory, started_at, export_state in await asyncio.to_thread(_scan, self.recordings_dir):
            if not self.policy.is_expired(started_at, now):
                continue
            age = now - started_at
            files = await asyncio.to_thread(_remove, directory)
            await self.queue.record_purge(
                directory.name,
                now,
                REASON_RETENTION,
                actor="retention",
                age_seconds=age,
                files_removed=files,
                limit_seconds=self.policy.limit_seconds,
            )
            level = logging.INFO if export_state == "exported" else logging.WARNING
            logger.log(
                level,
                "retention: purged recording %s (%.0f s old, export state %s, %d files)",
                directory.name,
                age,
                export_state,
                files,
            )
            purged.append(PurgeRecord(directory.name, REASON_RETENTION, age, files, export_state))
        return purged

    async def run(self, clock: Callable[[], float] = time.time, interval: float = 60.0) -> None:
        """Purge every ``interval`` seconds until stop()."""
        self._stop.clear()
        while not self._stop.is_set():
            try:
                await self.purge_expired(clock())
            except Exception:
                logger.exception("retention round failed; trying again in %.0f s", interval)
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    def stop(self) -> None:
        """Make run() return after the current round."""
        self._stop.set()
