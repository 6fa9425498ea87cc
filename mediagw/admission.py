"""Who may start a call through the gateway: configured trunks and registered agents, nobody else.

An INVITE outside a dialog is admitted when its source address lies in a trunk's ``sources`` (and, for
a trunk with credentials, when it also carries valid digest credentials for that trunk), or when it comes
from the address a registered agent's binding was received from. Everything else gets 403: the gateway
is never an open relay (RFC 3261 §26.3.2.2 / §22). The gateway acts as a UAS, so its challenges are 401
with WWW-Authenticate (§22.1), not 407.
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from mediagw.config import Profile, TrunkConfig
from mediagw.sip.auth import AuthThrottle, DigestAuthenticator
from mediagw.sip.message import SipRequest, SipResponse, build_response
from mediagw.sip.registrar import Registrar

logger = logging.getLogger(__name__)

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who an admitted INVITE came from."""

    kind: str
    """``trunk`` or ``agent``."""
    name: str
    """The trunk name or the agent id."""


class Admission:
    """The admission policy the SIP endpoint consults for every dialog-creating INVITE."""

    def __init__(self, profile: Profile, registrar: Registrar, throttle: AuthThrottle | None = None) -> None:
        self.registrar = registrar
        self.throttle = throttle
        self._trunks: list[tuple[TrunkConfig, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]] = [
            (trunk, [ipaddress.ip_network(source, strict=False) for source in trunk.sources])
            for trunk in profile.trunks
        ]
        self._trunk_auth: dict[str, DigestAuthenticator] = {
            trunk.name: DigestAuthenticator(
                profile.realm,
                lambda user, trunk=trunk: trunk.password if user == trunk.username else None,  # type: ignore[misc]
                algorithms=profile.registrar.algorithms,
                nonce_ttl=profile.registrar.nonce_ttl,
            )
            for trunk in profile.trunks
            if trunk.username
        }

    def trunk_for(self, source: Address) -> TrunkConfig | None:
        """The trunk whose sources contain ``source``'s address, if any."""
        try:
            address = ipaddress.ip_address(source[0])
        except ValueError:
            return None
        for trunk, networks in self._trunks:
            if any(address in network for network in networks):
                return trunk
        return None

    def identify(self, source: Address, now: float) -> Caller | None:
        """Who is behind ``source``: a trunk or a registered agent (None for strangers)."""
        trunk = self.trunk_for(source)
        if trunk is not None:
            return Caller("trunk", trunk.name)
        agent = self.registrar.is_registered_source(source, now)
        if agent is not None:
            return Caller("agent", agent)
        return None

    def __call__(self, request: SipRequest, source: Address, transport: str, now: float) -> SipResponse | None:
        """None to admit the INVITE; otherwise the rejection (403, or a 401 digest challenge)."""
        if self.throttle is not None and self.throttle.is_blocked(source, now):
            return build_response(request, 403, "Forbidden")
        trunk = self.trunk_for(source)
        if trunk is not None:
            authenticator = self._trunk_auth.get(trunk.name)
            if authenticator is None:
                return None
            result = authenticator.verify(request, now)
            if result.ok:
                return None
            if result.is_failure and self.throttle is not None:
                self.throttle.record_failure(source, now)
            if result.reason not in ("missing", "stale-nonce", "replayed-nc"):
                logger.warning(
                    "trunk %s: INVITE from %s:%s failed digest auth (%s), Call-ID %s",
                    trunk.name, source[0], source[1], result.reason, _call_id(request),
                )
            headers = [("WWW-Authenticate", value) for value in authenticator.challenge(now, stale=result.stale)]
            return build_response(request, 401, "Unauthorized", headers=headers)
        if self.registrar.is_registered_source(source, now) is not None:
            return None
        logger.warning("INVITE from unknown source %s:%s refused, Call-ID %s", source[0], source[1], _call_id(request))
        return build_response(request, 403, "Forbidden")


def _call_id(request: SipRequest) -> str:
    try:
        return request.call_id
    except Exception:  # noqa: BLE001 - only for the log line
        return "?"
