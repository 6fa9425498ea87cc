"""API authentication: bearer tokens from the profile, the roles they carry, and their permissions.

Theory of operation: the profile's ``[api]`` section lists tokens (``ApiToken``); each names a role
(admin, supervisor, agent) and optionally an explicit permission list that replaces the role's defaults.
``TokenAuthenticator.authenticate`` compares a presented token with *every* configured token using
``hmac.compare_digest`` over SHA-256 digests, so neither the position of the matching token nor the length
of the presented one shows in the timing. The result is a ``Principal``: the token's name, role,
supervisor id and permission set, and never the secret itself. Nothing in this module logs a token; the
``repr`` of an ``ApiToken`` hides it.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Literal, get_args

from mediagw.demo import DEMO_CREDENTIALS
from mediagw.errors import ConfigError

Role = Literal["admin", "supervisor", "agent"]
Permission = Literal["read", "monitor", "coach", "barge", "end_calls", "manage_agents", "recordings", "redact"]

ALL_PERMISSIONS: frozenset[str] = frozenset(get_args(Permission))
"""Every permission the API checks.

* ``read``: the list and detail endpoints (calls, contacts, agents, queues) and the event stream.
* ``monitor``: start a listen-only monitor leg.  ``coach``: coach (whisper) mode.  ``barge``: barge mode.
* ``end_calls``: end a call (both legs get BYE).
* ``manage_agents``: set an agent available or offline, clear RONA.
* ``recordings``: list a contact's recordings and download their chunks.
* ``redact``: pause and resume a call's recording.
"""

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": ALL_PERMISSIONS,
    "supervisor": frozenset({"read", "monitor", "coach", "barge", "end_calls"}),
    "agent": frozenset({"read"}),
}
"""Default permissions of each role; a token's explicit ``permissions`` replace them."""

MODE_PERMISSIONS: dict[str, str] = {"listen": "monitor", "coach": "coach", "barge": "barge"}
"""The permission a monitor mode needs, to start a monitor in it or to change one to it."""

MIN_TOKEN_LENGTH = 16
"""Shortest accepted token (the documented demo token is exempt, on loopback only)."""


@dataclass(frozen=True, slots=True)
class ApiToken:
    """One bearer token of the profile's ``[[api.tokens]]``."""

    name: str
    """Who holds it; shown in logs and audit records instead of the token."""
    token: str = field(repr=False)
    """The secret; compared in constant time, never logged, hidden from ``repr``."""
    role: Role
    """admin, supervisor or agent; gives the default permissions."""
    supervisor_id: str = ""
    """For supervisor tokens: the supervisor (agent id of the softphone) this token may monitor as."""
    permissions: tuple[str, ...] = ()
    """When not empty, exactly these permissions instead of the role's defaults."""


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The profile's ``[api]`` section: where the HTTP API listens and who may use it."""

    listen: str = "127.0.0.1:8080"
    """``HOST:PORT`` (``[::1]:8080`` for IPv6); port 0 picks a free port."""
    tokens: tuple[ApiToken, ...] = ()

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` parsed into (host, port); raises ValueError."""
        return parse_api_address(self.listen)


_ADDRESS_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]\s]+):(\d{1,5})$")


def parse_api_address(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[::1]:8080`` for IPv6) into (host, port); raises ValueError with the reason."""
    match = _ADDRESS_RE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not HOST:PORT (use [ADDRESS]:PORT for IPv6)")
    host, port_text = match.groups()
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return host.strip("[]"), port


def is_loopback_host(host: str) -> bool:
    """True when ``host`` only reaches this machine."""
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(frozen=True, slots=True)
class Principal:
    """The holder of an accepted token, as the routes see it (no secret inside)."""

    name: str
    role: Role
    supervisor_id: str
    permissions: frozenset[str]

    @property
    def actor(self) -> str:
        """How the control plane records this principal in audit trails: ``api:NAME``."""
        return f"api:{self.name}"

    @property
    def is_admin(self) -> bool:
        """True for the admin role."""
        return self.role == "admin"

    def has(self, permission: str) -> bool:
        """True when this principal holds ``permission``."""
        return permission in self.permissions


def permissions_for(token: ApiToken) -> frozenset[str]:
    """The effective permissions of ``token``: its explicit list, else its role's defaults."""
    if token.permissions:
        return frozenset(token.permissions)
    return ROLE_PERMISSIONS[token.role]


def _digest(secret: str) -> bytes:
    """SHA-256 of a token, so that every comparison is over 32 bytes whatever was presented."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


class TokenAuthenticator:
    """Maps presented bearer tokens to principals, comparing in constant time."""

    def __init__(self, tokens: Iterable[ApiToken]) -> None:
        self._entries: list[tuple[bytes, Principal]] = [
            (
                _digest(token.token),
                Principal(
                    name=token.name,
                    role=token.role,
                    supervisor_id=token.supervisor_id,
                    permissions=permissions_for(token),
                ),
            )
            for token in tokens
        ]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"TokenAuthenticator({len(self._entries)} token(s))"

    def authenticate(self, presented: str | None) -> Principal | None:
        """The principal of ``presented``, or None when it matches no configured token.

        Every configured token is compared (no early exit), each with ``hmac.compare_digest``.
        """
        if not presented:
            return None
        digest = _digest(presented)
        match: Principal | None = None
        for secret_digest, principal in self._entries:
            if hmac.compare_digest(digest, secret_digest) and match is None:
                match = principal
        return match


def validate_api_config(config: ApiConfig, file: str, prefix: str = "api") -> None:
    """Check an ``[api]`` section; raise ConfigError naming the file and the dotted key.

    Rules: the listen address parses; token names and secrets are unique; secrets are at least
    ``MIN_TOKEN_LENGTH`` characters (except documented demo tokens); permissions are known; supervisor
    tokens name their supervisor; a documented demo token is refused when the API listens off loopback.
    """
    try:
        host, _port = parse_api_address(config.listen)
    except ValueError as exc:
        raise ConfigError(file, f"{prefix}.listen", str(exc)) from None
    exposed = not is_loopback_host(host)
    names: set[str] = set()
    digests: set[bytes] = set()
    for index, token in enumerate(config.tokens):
        key = f"{prefix}.tokens[{index}]"
        if not token.name:
            raise ConfigError(file, f"{key}.name", "must not be empty")
        if token.name in names:
            raise ConfigError(file, f"{key}.name", f"duplicate {token.name!r}")
        names.add(token.name)
        digest = _digest(token.token)
        if digest in digests:
            raise ConfigError(file, f"{key}.token", "the same token is configured twice")
        digests.add(digest)
        if token.token in DEMO_CREDENTIALS:
            if exposed:
                raise ConfigError(
                    file,
                    f"{key}.token",
                    f"is a documented demo token while the API listens on {config.listen}; "
                    "set a real token or listen on loopback only",
                )
        elif len(token.token) < MIN_TOKEN_LENGTH:
            raise ConfigError(file, f"{key}.token", f"must be at least {MIN_TOKEN_LENGTH} characters")
        if any(ch.isspace() for ch in token.token) or not token.token.isprintable():
            raise ConfigError(file, f"{key}.token", "must not contain spaces or control characters")
        for perm_index, permission in enumerate(token.permissions):
            if permission not in ALL_PERMISSIONS:
                known = ", ".join(sorted(ALL_PERMISSIONS))
                raise ConfigError(
                    file, f"{key}.permissions[{perm_index}]", f"{permission!r} is not one of {known}"
                )
        if token.role == "supervisor" and not token.supervisor_id:
            raise ConfigError(file, f"{key}.supervisor_id", "is required for supervisor tokens")


def required_permission_for_mode(mode: str) -> str:
    """The permission needed to put a monitor in ``mode``; raises ValueError for an unknown mode."""
    try:
        return MODE_PERMISSIONS[mode]
    except KeyError:
        raise ValueError(f"unknown monitor mode {mode!r}") from None

