"""Profiles: TOML files under sip_profiles/ read into frozen dataclasses.

Theory of operation: every section of a profile is a frozen dataclass below. ``load_profile`` reads the
TOML with tomllib and walks the dataclasses' type hints, converting and validating each value; an unknown
key, a wrong type or an invalid value raises ``ConfigError`` naming the file and the dotted key (for
example ``agents[1].password``). Cross-field rules (port ranges, references between sections, the demo
credential rule) run after the structure is built, with the same kind of error.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from mediagw.api.auth import ApiConfig, validate_api_config
from mediagw.demo import DEMO_CREDENTIALS
from mediagw.errors import ConfigError
from mediagw.recording.config import RecordingConfig, RecordingPolicy, validate_policy, validate_recording
from mediagw.router.profile import (
    AttributeConfig,
    FlagHeadersConfig,
    FlagRouteConfig,
    QueueConfig,
    RoutingEntry,
    validate_contact_center,
)

DEFAULT_PROFILE_NAME = "default.toml"


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One SIP listening socket: ``udp:HOST:PORT`` or ``tcp:HOST:PORT``."""

    transport: Literal["udp", "tcp"]
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True when the address only reaches this machine."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


_LISTEN_RE = re.compile(r"^(udp|tcp):(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):(\d{1,5})$")


def parse_listen_address(text: str) -> ListenAddress:
    """Parse ``udp:HOST:PORT`` / ``tcp:[::1]:PORT``; raises ValueError with the reason."""
    match = _LISTEN_RE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not TRANSPORT:HOST:PORT with TRANSPORT udp or tcp")
    transport, host, port_text = match.groups()
    host = host.strip("[]")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return ListenAddress(transport=typing.cast(Literal["udp", "tcp"], transport), host=host, port=port)


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 §17.1.1.1 base timers, in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


@dataclass(frozen=True, slots=True)
class SipConfig:
    """Signalling: listening sockets, identity and limits."""

    listen: tuple[str, ...] = ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060")
    domain: str = "127.0.0.1"
    user_agent: str = "mediagw"
    max_message_size: int = 65535
    tcp_idle_timeout: float = 300.0
    drain_retry_after: int = 30
    drain_timeout: float = 10.0
    timers: TimerConfig = field(default_factory=TimerConfig)

    @property
    def listen_addresses(self) -> tuple[ListenAddress, ...]:
        """The parsed listen addresses."""
        return tuple(parse_listen_address(text) for text in self.listen)


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    """REGISTER handling and digest authentication (RFC 3261 §10.3, RFC 7616)."""

    realm: str = ""
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    nonce_ttl: float = 300.0
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    max_auth_failures: int = 5
    auth_failure_window: float = 60.0
    auth_block_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class RtpConfig:
    """Media addresses: the address put in SDP answers and the UDP port range for RTP/RTCP."""

    address: str = "127.0.0.1"
    port_min: int = 20000
    port_max: int = 20999
    nat_latch: bool = False
    timeout: float = 60.0
    jitter_min_frames: int = 1
    """Smallest jitter-buffer depth, in 20 ms frames; the buffer adapts between the two bounds."""
    jitter_max_frames: int = 8
    """Largest jitter-buffer depth, in 20 ms frames (at most 10)."""


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The database: embedded SQLite under the data dir by default, any SQLAlchemy async URL otherwise."""

    url: str = ""


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """A SIP trunk allowed to send INVITEs: source networks and optional digest credentials."""

    name: str
    sources: tuple[str, ...]
    username: str = ""
    password: str = ""
    attributes: tuple[AttributeConfig, ...] = ()
    """Reserved attributes (verified_customer, bad_actor, repeat_customer) read from this trunk's INVITEs."""
    outbound: str = ""
    """Where calls the gateway places through this trunk go (after-hours dial-out): ``udp:HOST:PORT`` or
    ``tcp:HOST:PORT``; empty for an inbound-only trunk."""

    @property
    def outbound_address(self) -> ListenAddress | None:
        """The parsed ``outbound`` address, if set."""
        return parse_listen_address(self.outbound) if self.outbound else None


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """An agent (or supervisor) softphone that registers with digest auth."""

    id: str
    password: str
    name: str = ""
    role: Literal["agent", "supervisor"] = "agent"
    routing: tuple[RoutingEntry, ...] = ()
    """The queues this agent takes, each with a priority (lower is served first)."""
    after_call_work: float | None = None
    """Seconds of after-call work; unset uses each queue's ``after_call_work``."""
    rona_recovery: float | None = None
    """Seconds after a missed offer (RONA) before the agent is offered calls again; unset: only when
    cleared through the API."""


@dataclass(frozen=True, slots=True)
class NumberConfig:
    """A dialled number (the Request-URI user part) and what the gateway does with it."""

    number: str
    action: Literal["answer", "ring", "echo", "prompt", "reject", "queue"] = "answer"
    prompt_text: str = ""
    reject_status: int = 480
    queue: str = ""
    """The queue callers go to, for ``action = "queue"`` (hours, flag routes and deflection apply)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """A whole profile, as loaded from one TOML file."""

    name: str = "mediagw"
    data_dir: str = "mediagw-data"
    log_level: str = "INFO"
    sip: SipConfig = field(default_factory=SipConfig)
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    rtp: RtpConfig = field(default_factory=RtpConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    trunks: tuple[TrunkConfig, ...] = ()
    agents: tuple[AgentConfig, ...] = ()
    numbers: tuple[NumberConfig, ...] = ()
    queues: tuple[QueueConfig, ...] = ()
    flag_routes: tuple[FlagRouteConfig, ...] = ()
    flag_headers: FlagHeadersConfig = field(default_factory=FlagHeadersConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    source: str = field(default="<memory>", metadata={"internal": True})

    @property
    def realm(self) -> str:
        """The digest realm: the registrar's, else the SIP domain."""
        return self.registrar.realm or self.sip.domain

    def number(self, user: str) -> NumberConfig | None:
        """The number entry for a Request-URI user part, if configured."""
        for entry in self.numbers:
            if entry.number == user:
                return entry
        return None

    def queue(self, queue_id: str) -> QueueConfig | None:
        """The queue entry with id ``queue_id``, if configured."""
        for entry in self.queues:
            if entry.id == queue_id:
                return entry
        return None

    def store_url(self, data_dir: Path) -> str:
        """The SQLAlchemy URL, with the embedded default under ``data_dir``."""
        return self.store.url or f"sqlite+aiosqlite:///{data_dir / 'mediagw.db'}"


# --------------------------------------------------------------------------------------------------------
# Loading


def _convert(value: Any, hint: Any, file: str, key: str) -> Any:
    """Convert a TOML value to the type ``hint``; raise ConfigError naming ``key`` when it does not fit."""
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"expected a table, got {type(value).__name__}")
        return _build(hint, value, file, key)
    if origin is tuple:
        item_hint = get_args(hint)[0]
        if not isinstance(value, list):
            raise ConfigError(file, key, f"expected an array, got {type(value).__name__}")
        return tuple(_convert(item, item_hint, file, f"{key}[{index}]") for index, item in enumerate(value))
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            choices = ", ".join(repr(choice) for choice in allowed)
            raise ConfigError(file, key, f"{value!r} is not one of {choices}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in get_args(hint) if arg is not type(None)]
        return _convert(value, options[0], file, key)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(file, key, f"expected a number, got {type(value).__name__}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(file, key, f"expected an integer, got {type(value).__name__}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, key, f"expected true or false, got {type(value).__name__}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(file, key, f"expected a string, got {type(value).__name__}")
        return value
    raise ConfigError(file, key, f"unsupported type {hint!r}")  # our own bug: a hint we do not handle


def _build(cls: Any, table: dict[str, Any], file: str, prefix: str) -> Any:
    """Build dataclass ``cls`` from ``table``; unknown keys and missing required keys are errors."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(file, key, f"unknown key (known keys here: {known})")
        kwargs[name] = _convert(value, hints[name], file, key)
    for name, spec in fields.items():
        if name not in kwargs and spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            key = f"{prefix}.{name}" if prefix else name
            raise ConfigError(file, key, "is required")
    return cls(**kwargs)


def _validate(profile: Profile) -> None:
    """Cross-field rules; raise ConfigError naming the key."""
    file = profile.source
    for index, text in enumerate(profile.sip.listen):
        try:
            parse_listen_address(text)
        except ValueError as exc:
            raise ConfigError(file, f"sip.listen[{index}]", str(exc)) from None
    if not profile.sip.listen:
        raise ConfigError(file, "sip.listen", "needs at least one address")
    timers = profile.sip.timers
    if not 0 < timers.t1 <= timers.t2:
        raise ConfigError(file, "sip.timers", "needs 0 < t1 <= t2")
    if timers.t4 <= 0:
        raise ConfigError(file, "sip.timers.t4", "must be positive")
    if profile.sip.max_message_size < 1500:
        raise ConfigError(file, "sip.max_message_size", "must be at least 1500 bytes")
    reg = profile.registrar
    if not 0 < reg.min_expires <= reg.default_expires <= reg.max_expires:
        raise ConfigError(file, "registrar", "needs 0 < min_expires <= default_expires <= max_expires")
    for index, algorithm in enumerate(reg.algorithms):
        if algorithm not in ("SHA-256", "MD5"):
            raise ConfigError(file, f"registrar.algorithms[{index}]", f"{algorithm!r} is not SHA-256 or MD5")
    rtp = profile.rtp
    if not 1024 <= rtp.port_min < rtp.port_max <= 65535:
        raise ConfigError(file, "rtp", "needs 1024 <= port_min < port_max <= 65535")
    if not 1 <= rtp.jitter_min_frames <= rtp.jitter_max_frames <= 10:
        raise ConfigError(file, "rtp", "needs 1 <= jitter_min_frames <= jitter_max_frames <= 10")
    if rtp.port_max - rtp.port_min < 3:
        raise ConfigError(file, "rtp", "the port range must hold at least two RTP/RTCP pairs")
    try:
        ipaddress.ip_address(rtp.address)
    except ValueError:
        raise ConfigError(file, "rtp.address", f"{rtp.address!r} is not an IP address") from None
    for index, trunk in enumerate(profile.trunks):
        if not trunk.sources:
            raise ConfigError(file, f"trunks[{index}].sources", "needs at least one address or CIDR")
        for source_index, source in enumerate(trunk.sources):
            try:
                ipaddress.ip_network(source, strict=False)
            except ValueError:
                raise ConfigError(
                    file, f"trunks[{index}].sources[{source_index}]", f"{source!r} is not an address or CIDR"
                ) from None
        if bool(trunk.username) != bool(trunk.password):
            raise ConfigError(file, f"trunks[{index}]", "username and password go together")
        if trunk.outbound:
            try:
                parse_listen_address(trunk.outbound)
            except ValueError as exc:
                raise ConfigError(file, f"trunks[{index}].outbound", str(exc)) from None
    _check_unique(file, "agents", [agent.id for agent in profile.agents])
    _check_unique(file, "numbers", [number.number for number in profile.numbers])
    _check_unique(file, "trunks", [trunk.name for trunk in profile.trunks])
    for index, agent in enumerate(profile.agents):
        if not agent.password:
            raise ConfigError(file, f"agents[{index}].password", "must not be empty")
    for index, number in enumerate(profile.numbers):
        if number.action == "reject" and not 400 <= number.reject_status <= 699:
            raise ConfigError(file, f"numbers[{index}].reject_status", "must be a SIP status 400-699")
    validate_contact_center(profile, file)
    trunks = {trunk.name: trunk for trunk in profile.trunks}
    for index, queue in enumerate(profile.queues):
        after = queue.after_hours
        if after.action == "transfer" and after.transfer_mode == "dial" and not trunks[after.transfer_trunk].outbound:
            raise ConfigError(file, f"queues[{index}].after_hours.transfer_trunk",
                              f"trunk {after.transfer_trunk!r} has no outbound address to dial out through")
    validate_api_config(profile.api, file)
    validate_recording(profile.recording, file)
    for index, queue in enumerate(profile.queues):
        policy = RecordingPolicy(enabled=queue.recording, format=queue.recording_format,
                                 targets=queue.recording_targets)
        validate_policy(policy, profile.recording, file, f"queues[{index}]")
    _check_demo_credentials(profile)


def _check_unique(file: str, section: str, names: list[str]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise ConfigError(file, f"{section}[{index}]", f"duplicate {name!r}")
        seen.add(name)


def _check_demo_credentials(profile: Profile) -> None:
    """Refuse a profile that listens off loopback while any credential is a documented demo one."""
    exposed = [str(a) for a in profile.sip.listen_addresses if not a.is_loopback]
    if not exposed:
        return
    for index, agent in enumerate(profile.agents):
        if agent.password in DEMO_CREDENTIALS:
            raise ConfigError(
                profile.source,
                f"agents[{index}].password",
                f"is the documented demo credential {agent.password!r} while the gateway listens on "
                f"{', '.join(exposed)}; set a real password or listen on loopback only",
            )
    for index, trunk in enumerate(profile.trunks):
        if trunk.password in DEMO_CREDENTIALS:
            raise ConfigError(
                profile.source,
                f"trunks[{index}].password",
                f"is a documented demo credential while the gateway listens on {', '.join(exposed)}",
            )


def profile_from_dict(data: dict[str, Any], source: str = "<memory>") -> Profile:
    """Build and validate a profile from parsed TOML data."""
    profile: Profile = dataclasses.replace(_build(Profile, data, source, ""), source=source)
    _validate(profile)
    return profile


def load_profile(path: str | Path | None = None) -> Profile:
    """Load ``path``, or the embedded default profile when None; raises ConfigError."""
    if path is None:
        text = resources.files("mediagw").joinpath("profiles", DEFAULT_PROFILE_NAME).read_text("utf-8")
        source = f"<embedded {DEFAULT_PROFILE_NAME}>"
    else:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"invalid TOML: {exc}") from None
    return profile_from_dict(data, source)


def with_overrides(
    profile: Profile,
    *,
    listen: list[str] | None = None,
    data_dir: str | None = None,
    log_level: str | None = None,
    api_listen: str | None = None,
) -> Profile:
    """Apply command-line overrides (they win over the profile) and validate again."""
    sip = profile.sip
    if listen:
        sip = dataclasses.replace(sip, listen=tuple(listen))
    result = dataclasses.replace(
        profile,
        sip=sip,
        data_dir=data_dir if data_dir is not None else profile.data_dir,
        log_level=log_level if log_level is not None else profile.log_level,
        api=dataclasses.replace(profile.api, listen=api_listen) if api_listen else profile.api,
    )
    _validate(result)
    return result
