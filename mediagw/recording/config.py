"""The ``[recording]`` profile section and a queue's recording policy, as frozen dataclasses.

Theory of operation
-------------------
These classes are plain frozen dataclasses with type hints that ``mediagw.config``'s generic loader walks
(tables become dataclasses, arrays become tuples, ``Literal`` fields are checked), so unknown keys and
wrong types are reported by the loader with the file and the dotted key. The rules that need more than
one field (a target of kind ``http`` needs ``url`` and must not set ``bucket``; names are unique; the
retention limit is at most seven days ...) live in :func:`validate_recording` and
:func:`validate_policy`, which raise :class:`mediagw.errors.ConfigError` naming the file and the key.

A profile looks like this::

    [recording]
    format = "wav"                 # "wav" (stereo: caller left, agent right), "wav-mono", "opus"
    chunk_size = 52428800          # bytes; every chunk is a standalone playable file
    retention_seconds = 604800     # nothing stays on local disk longer (default and maximum: 7 days)

    [[recording.targets]]
    name = "archive"
    kind = "directory"
    path = "/srv/recordings"       # relative paths are under the gateway's data directory

    [[recording.targets]]
    name = "crm"
    kind = "http"
    url = "https://crm.example.com/recordings"
    headers = ["Authorization: Bearer s3cr3t"]

    [[recording.targets]]
    name = "s3"
    kind = "s3"
    bucket = "calls"
    prefix = "center-1/"
    endpoint_url = "https://minio.example.com:9000"   # empty: AWS
    access_key = "..."             # both empty: boto3's usual credential chain
    secret_key = "..."

and a queue chooses with a :class:`RecordingPolicy` table (``enabled``, ``format``, ``targets``).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mediagw.errors import ConfigError
from mediagw.recording.writer import DEFAULT_CHUNK_SIZE, DEFAULT_OPUS_BITRATE, RecordingFormat, WriterConfig

FormatName = Literal["wav", "wav-mono", "opus"]
TargetKind = Literal["directory", "http", "s3"]

DEFAULT_TARGET_NAME = "local"
DEFAULT_EXPORT_DIRECTORY = "exports"
"""The default target: a directory under the data directory (the shipped loopback profile)."""
MAX_RETENTION_SECONDS = 7 * 24 * 3600  # 604,800 s; the same limit as mediagw.recording.retention (which
# pulls in the store, so the profile loader does not import it)
MAX_CHUNK_SIZE = 0xFFFF_FFFF  # bytes: a WAV chunk's RIFF size field is 32 bits
_TARGET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # fits ExportJob.target (String(64))
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # token, RFC 9110 §5.1 / §5.6.2


@dataclass(frozen=True, slots=True)
class ExportTargetConfig:
    """One place finished chunks are delivered to: a directory, an HTTP endpoint or an S3 bucket."""

    name: str
    """Stable name; export jobs refer to it (renaming a target exports everything pending again)."""
    kind: TargetKind
    """``directory``, ``http`` or ``s3``."""
    path: str = ""
    """directory: where chunks go (``<path>/<recording id>/``); relative to the data directory."""
    url: str = ""
    """http: the endpoint each chunk is POSTed to (http or https)."""
    headers: tuple[str, ...] = field(default=(), repr=False)
    """http: extra request headers, each ``"Name: value"`` (e.g. an Authorization header)."""
    bucket: str = ""
    """s3: the bucket."""
    prefix: str = ""
    """s3: key prefix; objects are ``<prefix><recording id>/<file name>``."""
    endpoint_url: str = ""
    """s3: an S3-compatible endpoint (MinIO, Ceph ...); empty for AWS."""
    access_key: str = ""
    """s3: access key id; empty (with ``secret_key``) for boto3's credential chain."""
    secret_key: str = field(default="", repr=False)
    """s3: secret access key."""
    region: str = "us-east-1"
    """s3: region name."""

    def header_dict(self) -> dict[str, str]:
        """``headers`` as a mapping (call after validation)."""
        parsed: dict[str, str] = {}
        for line in self.headers:
            name, _, value = line.partition(":")
            parsed[name.strip()] = value.strip()
        return parsed


def _default_targets() -> tuple[ExportTargetConfig, ...]:
    return (ExportTargetConfig(name=DEFAULT_TARGET_NAME, kind="directory", path=DEFAULT_EXPORT_DIRECTORY),)


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    """The ``[recording]`` section: file format, chunking, export targets, backoff and retention."""

    format: FormatName = "wav"
    """Default file format: stereo WAV (caller left, agent right, 16-bit 8 kHz), mono mix, or Ogg/Opus."""
    chunk_size: int = DEFAULT_CHUNK_SIZE
    """Largest chunk file in bytes (50 MiB by default)."""
    retention_seconds: float = float(MAX_RETENTION_SECONDS)
    """How long a recording may stay on local disk, exported or not (default and maximum 7 days)."""
    targets: tuple[ExportTargetConfig, ...] = field(default_factory=_default_targets)
    """Export targets; a queue uses all of them unless its policy names some."""
    backoff_base: float = 5.0
    """Seconds before the first retry of a failed delivery (doubles per attempt, with jitter)."""
    backoff_cap: float = 3600.0
    """Longest wait between two delivery attempts, seconds."""
    exporter_interval: float = 1.0
    """Seconds between two rounds of the exporter (new recordings, due retries)."""
    retention_interval: float = 60.0
    """Seconds between two retention sweeps."""
    opus_bitrate: int = DEFAULT_OPUS_BITRATE
    """Bits per second of the ``opus`` format (constant bit rate)."""

    @property
    def target_names(self) -> tuple[str, ...]:
        """Names of every configured target, in order."""
        return tuple(target.name for target in self.targets)

    def target(self, name: str) -> ExportTargetConfig | None:
        """The target called ``name``, if configured."""
        for target in self.targets:
            if target.name == name:
                return target
        return None

    def writer_config(self, fmt: str | None = None) -> WriterConfig:
        """The writer settings for ``fmt`` (the section's default format when None)."""
        return WriterConfig(
            format=RecordingFormat(fmt or self.format),
            chunk_size=self.chunk_size,
            opus_bitrate=self.opus_bitrate,
        )


@dataclass(frozen=True, slots=True)
class RecordingPolicy:
    """A queue's recording policy (a ``recording`` table inside the queue's configuration)."""

    enabled: bool = False
    """Record calls of this queue from the moment caller and agent are bridged."""
    format: Literal["", "wav", "wav-mono", "opus"] = ""
    """File format for this queue; empty: ``[recording].format``."""
    targets: tuple[str, ...] = ()
    """Names of ``[recording]`` targets to export to; empty: every configured target."""


def resolve_directory(path: str, data_dir: Path | str) -> Path:
    """A directory target's path: absolute as given, relative ones under ``data_dir``."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else Path(data_dir) / candidate


def validate_recording(config: RecordingConfig, file: str, key: str = "recording") -> None:
    """Check the rules that span fields of ``[recording]``; raises ConfigError(file, dotted key, message)."""
    try:
        RecordingFormat(config.format)
    except ValueError:
        raise ConfigError(file, f"{key}.format", f"{config.format!r} is not one of 'wav', 'wav-mono', 'opus'") from None
    if config.chunk_size > MAX_CHUNK_SIZE:
        raise ConfigError(file, f"{key}.chunk_size", f"{config.chunk_size} is above {MAX_CHUNK_SIZE} bytes")
    if config.opus_bitrate < 6000 or config.opus_bitrate > 510_000:
        raise ConfigError(file, f"{key}.opus_bitrate", "must be between 6000 and 510000 bits per second")
    for fmt in ("wav", "wav-mono", "opus"):
        try:
            config.writer_config(fmt)  # the writer's own minimum chunk size per format
        except ConfigError as exc:
            raise ConfigError(file, f"{key}.chunk_size", f"too small for format {fmt!r}: {exc.message}") from None
    if not 0 < config.retention_seconds <= MAX_RETENTION_SECONDS:
        raise ConfigError(
            file,
            f"{key}.retention_seconds",
            f"{config.retention_seconds:g} is outside 0 < limit <= {MAX_RETENTION_SECONDS} (7 days)",
        )
    if not 0 < config.backoff_base <= config.backoff_cap:
        raise ConfigError(file, f"{key}.backoff_base", "needs 0 < backoff_base <= backoff_cap")
    if config.exporter_interval <= 0:
        raise ConfigError(file, f"{key}.exporter_interval", "must be positive")
    if config.retention_interval <= 0:
        raise ConfigError(file, f"{key}.retention_interval", "must be positive")
    if not config.targets:
        raise ConfigError(file, f"{key}.targets", "needs at least one export target")
    seen: set[str] = set()
    for index, target in enumerate(config.targets):
        where = f"{key}.targets[{index}]"
        if not _TARGET_NAME_RE.match(target.name):
            raise ConfigError(
                file, f"{where}.name", f"{target.name!r} must be 1-64 letters, digits, '_', '.' or '-'"
            )
        if target.name in seen:
            raise ConfigError(file, f"{where}.name", f"duplicate target name {target.name!r}")
        seen.add(target.name)
        _validate_target(target, file, where)


_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "directory": ("path",),
    "http": ("url", "headers"),
    "s3": ("bucket", "prefix", "endpoint_url", "access_key", "secret_key", "region"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {"directory": ("path",), "http": ("url",), "s3": ("bucket",)}


def _validate_target(target: ExportTargetConfig, file: str, where: str) -> None:
    if target.kind not in _KIND_FIELDS:
        raise ConfigError(file, f"{where}.kind", f"{target.kind!r} is not one of 'directory', 'http', 's3'")
    for name in _REQUIRED[target.kind]:
        if not getattr(target, name):
            raise ConfigError(file, f"{where}.{name}", f"is required for a target of kind {target.kind!r}")
    defaults = ExportTargetConfig(name="", kind=target.kind)
    for kind, names in _KIND_FIELDS.items():
        if kind == target.kind:
            continue
        for name in names:
            if name not in _KIND_FIELDS[target.kind] and getattr(target, name) != getattr(defaults, name):
                raise ConfigError(file, f"{where}.{name}", f"is not used by a target of kind {target.kind!r}")
    if target.kind == "http":
        parsed = urllib.parse.urlsplit(target.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(file, f"{where}.url", f"{target.url!r} is not an http:// or https:// URL")
        for index, line in enumerate(target.headers):
            name, colon, value = line.partition(":")
            if not colon or not _HEADER_NAME_RE.match(name.strip()) or name != name.strip():
                raise ConfigError(file, f"{where}.headers[{index}]", f"{line!r} is not 'Name: value'")
            if any(ch in value for ch in "\r\n\0"):
                raise ConfigError(file, f"{where}.headers[{index}]", "a header value must not contain CR, LF or NUL")
    elif target.kind == "s3":
        if bool(target.access_key) != bool(target.secret_key):
            raise ConfigError(file, f"{where}.access_key", "access_key and secret_key go together")
        if target.endpoint_url:
            parsed = urllib.parse.urlsplit(target.endpoint_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ConfigError(
                    file, f"{where}.endpoint_url", f"{target.endpoint_url!r} is not an http:// or https:// URL"
                )
        if not target.region:
            raise ConfigError(file, f"{where}.region", "must not be empty")


def validate_policy(policy: RecordingPolicy, config: RecordingConfig, file: str, key: str) -> None:
    """Check a queue's recording policy against ``[recording]`` (``key`` names the policy table)."""
    if policy.format and policy.format not in ("wav", "wav-mono", "opus"):
        raise ConfigError(file, f"{key}.format", f"{policy.format!r} is not one of 'wav', 'wav-mono', 'opus'")
    known = set(config.target_names)
    seen: set[str] = set()
    for index, name in enumerate(policy.targets):
        if name not in known:
            choices = ", ".join(repr(n) for n in config.target_names)
            raise ConfigError(file, f"{key}.targets[{index}]", f"unknown target {name!r} (configured: {choices})")
        if name in seen:
            raise ConfigError(file, f"{key}.targets[{index}]", f"duplicate target {name!r}")
        seen.add(name)
