"""SIP registrar: REGISTER processing per RFC 3261 §10.3, bindings with their source address, events.

Theory of operation
-------------------
``Registrar.handle_register`` takes one REGISTER that the transaction layer delivered (retransmissions are
absorbed there) and returns the final response. It is sans-I/O: ``now`` is the monotonic time of the request
and every binding stores an absolute ``expires_at`` on that clock. The only wall-clock read is the optional
``wall_clock`` callable used for the informational Date header of a 200 (RFC 3261 §10.3 step 8, §20.17);
pass ``wall_clock=None`` to leave Date out, or a fixed function in tests.

The steps follow §10.3, each one answered before anything changes (the request is atomic, step 6/7):

1. a source blocked by ``AuthThrottle`` gets 403 without its credentials being looked at (we answer
   rather than drop so that an agent who mistyped a password sees a final reason, and an attacker learns
   nothing new);
2. step 4, authentication: no or unusable credentials -> 401 with one WWW-Authenticate per algorithm
   (``stale=true`` for an expired nonce or a replayed nc); malformed credentials or a uri directive that is
   not the Request-URI -> 400 (RFC 7616 §3.4.6); a wrong password counts towards the throttle;
3. step 5, authorization: the authenticated user must be the user part of the To URI (the address-of-record),
   else 403;
4. step 6: ``*`` with other contacts or with an Expires other than 0 -> 400; per contact the ``expires``
   parameter overrides the Expires header, which overrides ``default_expires``; values above ``max_expires``
   are shortened to it; ``0 < expires < min_expires`` -> 423 with Min-Expires (§10.3 step 6, §20.23);
5. step 7: for an existing binding with the same Call-ID, a CSeq not higher than the stored one aborts the
   whole update. The RFC only says "the request fails"; we answer 500, the code §12.2.2 uses for an
   out-of-order CSeq, because the request is well-formed yet cannot be applied now;
6. step 8: 200 with every current binding of the AOR as a Contact carrying its remaining ``expires``, and a
   Date header. A REGISTER without Contact is a query and changes nothing.

Bindings keep the (host, port) and transport the REGISTER arrived from, so the gateway can reach an agent
behind NAT at the address the request came from (RFC 3261 §18.2.2 answers to the received address; RFC 5626
§5 does the same for requests). ``is_registered_source`` uses that to admit INVITEs from registered agents.
Contact URIs are compared with a simplified §19.1.4 rule: scheme, user, password, host (case-insensitive),
port, and the ``transport``/``user``/``maddr`` parameters.

Events (``BindingAdded``, ``BindingRemoved``, ``BindingExpired``) queue up for ``next_event``; a refresh of an
existing binding emits nothing. The queue is bounded (``max_events``); the oldest events drop first, with one
warning, when the application does not drain it.
"""

from __future__ import annotations

import email.utils
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mediagw.errors import LocalError, SipProtocolError
from mediagw.sip.auth import AuthThrottle, DigestAuthenticator
from mediagw.sip.grammar import NameAddr, SipUri
from mediagw.sip.message import SipRequest, SipResponse, build_response

__all__ = [
    "Binding",
    "BindingAdded",
    "BindingExpired",
    "BindingRemoved",
    "Registrar",
    "RegistrarEvent",
]

logger = logging.getLogger(__name__)

Address = tuple[str, int]

DEFAULT_EXPIRES = 3600  # seconds, RFC 3261 §10.2.1.1 suggests one hour when the UA gives none
MALFORMED_EXPIRES = 3600  # seconds, RFC 3261 §20.19: a malformed Expires is treated as 3600


@dataclass(frozen=True, slots=True)
class Binding:
    """One Contact bound to an address-of-record (RFC 3261 §10.3 step 7)."""

    user: str
    """The address-of-record's user part (the agent's SIP user name)."""
    contact: NameAddr
    """The Contact as registered (its ``expires`` parameter reflects the request, not the remaining time)."""
    expires_at: float
    """Monotonic time at which the binding lapses."""
    source: Address
    """(host, port) the REGISTER came from: where to send requests to an agent behind NAT."""
    transport: str
    """"udp" or "tcp", the transport the REGISTER came over."""
    call_id: str
    """Call-ID of the REGISTER that created or last refreshed the binding."""
    cseq: int
    """CSeq number of that REGISTER."""
    q: float | None = None
    """The Contact's ``q`` preference (RFC 3261 §20.10), None when absent or unparsable."""

    def remaining(self, now: float) -> int:
        """Whole seconds left at ``now`` (0 when expired)."""
        return max(0, int(self.expires_at - now + 0.5))


@dataclass(frozen=True, slots=True)
class BindingAdded:
    """A new binding was created by a REGISTER."""

    user: str
    """The address-of-record's user."""
    contact: NameAddr
    """The Contact that was bound."""


@dataclass(frozen=True, slots=True)
class BindingRemoved:
    """A binding was removed by a REGISTER (Expires 0, ``*``), displaced by a newer one, or ``unbind``."""

    user: str
    """The address-of-record's user."""
    contact: NameAddr
    """The Contact that was removed."""


@dataclass(frozen=True, slots=True)
class BindingExpired:
    """A binding lapsed without a refresh (found by ``Registrar.expire``)."""

    user: str
    """The address-of-record's user."""
    contact: NameAddr
    """The Contact that expired."""


RegistrarEvent = BindingAdded | BindingRemoved | BindingExpired

_ContactKey = tuple[str, str | None, str | None, str, int | None, str | None, str | None, str | None]


class _Reject(Exception):
    """A final non-2xx answer decided while reading the request (internal control flow)."""

    def __init__(
        self, status_code: int, reason: str | None = None, headers: tuple[tuple[str, str], ...] = ()
    ):
        super().__init__(status_code)
        self.status_code = status_code
        self.reason = reason
        self.headers = headers


class Registrar:
    """Bindings of one realm's users, updated by REGISTER (RFC 3261 §10.3).

    ``throttle`` may be None to disable failure blocking. ``max_bindings_per_user`` bounds memory: a new
    binding past it displaces the binding that would lapse first (a phone whose NAT mapping changed leaves
    its old contact behind until then). Raises LocalError for inconsistent limits.
    """

    def __init__(
        self,
        auth: DigestAuthenticator,
        throttle: AuthThrottle | None = None,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = DEFAULT_EXPIRES,
        *,
        max_bindings_per_user: int = 10,
        max_events: int = 4096,
        wall_clock: Callable[[], float] | None = time.time,
    ) -> None:
        if not 0 <= min_expires <= max_expires or not min_expires <= default_expires <= max_expires:
            raise LocalError("Registrar needs 0 <= min_expires <= default_expires <= max_expires")
        if max_bindings_per_user < 1 or max_events < 1:
            raise LocalError("Registrar needs max_bindings_per_user >= 1 and max_events >= 1")
        self.auth = auth
        self.throttle = throttle
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_bindings_per_user = max_bindings_per_user
        self._wall_clock = wall_clock
        self._bindings: dict[str, dict[_ContactKey, Binding]] = {}
        self._events: deque[RegistrarEvent] = deque()
        self._max_events = max_events
        self._events_dropped = False

    # -- REGISTER -------------------------------------------------------------------------------------------

    def handle_register(
        self, request: SipRequest, source: Address, transport: str, now: float
    ) -> SipResponse:
        """Process one REGISTER received from ``source`` over ``transport`` at ``now``; the final response.

        Never raises for a peer's input (a malformed header becomes 400). Raises LocalError when ``request``
        is not a REGISTER.
        """
        if request.method != "REGISTER":
            raise LocalError(f"Registrar.handle_register got a {request.method} request")
        try:
            return self._handle(request, source, transport, now)
        except _Reject as reject:
            return _respond(request, reject.status_code, reject.reason, headers=reject.headers)
        except SipProtocolError as error:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("REGISTER from %s rejected: %s", source, error)
            return _respond(request, error.status_code, error.reason)

    def _handle(self, request: SipRequest, source: Address, transport: str, now: float) -> SipResponse:
        if self.throttle is not None and self.throttle.is_blocked(source, now):
            return _respond(request, 403, "Forbidden")

        # RFC 3261 §10.3 step 4: authenticate.
        result = self.auth.verify(request, now)
        if not result.ok:
            if result.reason in ("malformed", "uri-mismatch"):
                self._log_failure(request, source, result.reason, result.username)
                return _respond(request, 400, "Bad Request")
            if result.is_failure:
                self._log_failure(request, source, result.reason, result.username)
                if self.throttle is not None:
                    self.throttle.record_failure(source, now)
            elif logger.isEnabledFor(logging.DEBUG):
                logger.debug("REGISTER from %s: %s, challenging", source, result.reason)
            challenges = self.auth.challenge(now, stale=result.stale)
            return _respond(
                request, 401, "Unauthorized", headers=tuple(("WWW-Authenticate", c) for c in challenges)
            )

        # Step 5: authorize. The AOR is the To URI; the authenticated user may only touch its own.
        user = request.to.uri.user
        if not user or user != result.username:
            self._log_failure(request, source, "user does not own the To address-of-record", result.username)
            return _respond(request, 403, "Forbidden")

        call_id = request.call_id
        cseq, _ = request.cseq
        header_expires = self._header_expires(request)
        current = self._bindings.get(user, {})

        # Step 6 and 7: read every contact and check it before changing anything.
        if _is_wildcard(request):
            if len(request.headers.get_all("Contact")) != 1 or header_expires != 0:
                raise _Reject(400, "Bad Request")
            for binding in current.values():
                self._check_order(binding, call_id, cseq)
            for binding in list(current.values()):
                self._emit(BindingRemoved(user, binding.contact))
            self._bindings.pop(user, None)
            logger.info("registrar: %s unregistered all contacts from %s", user, _fmt_address(source))
            return self._ok(request, user, now)

        updates: list[tuple[_ContactKey, NameAddr, int]] = []
        for contact in request.contacts:
            expires = self._contact_expires(contact, header_expires)
            if 0 < expires < self.min_expires:
                # §10.3 step 6 / §21.4.17: 423 with Min-Expires, the whole request fails.
                raise _Reject(423, "Interval Too Brief", (("Min-Expires", str(self.min_expires)),))
            key = _contact_key(contact.uri)
            existing = current.get(key)
            if existing is not None:
                self._check_order(existing, call_id, cseq)
            updates = [u for u in updates if u[0] != key]  # the last of duplicate contacts wins
            updates.append((key, contact, min(expires, self.max_expires)))

        if updates:
            self._apply(user, updates, source, transport, call_id, cseq, now)
        return self._ok(request, user, now)

    def _apply(
        self,
        user: str,
        updates: list[tuple[_ContactKey, NameAddr, int]],
        source: Address,
        transport: str,
        call_id: str,
        cseq: int,
        now: float,
    ) -> None:
        bindings = self._bindings.setdefault(user, {})
        for key, contact, expires in updates:
            existing = bindings.get(key)
            if expires == 0:
                if existing is not None:
                    del bindings[key]
                    self._emit(BindingRemoved(user, existing.contact))
                    logger.info("registrar: %s unregistered %s", user, contact.uri)
                continue
            binding = Binding(
                user=user,
                contact=contact,
                expires_at=now + expires,
                source=source,
                transport=transport,
                call_id=call_id,
                cseq=cseq,
                q=_parse_q(contact),
            )
            if existing is not None:
                bindings[key] = binding
                continue
            while len(bindings) >= self.max_bindings_per_user:
                displaced_key = min(bindings, key=lambda k: bindings[k].expires_at)
                displaced = bindings.pop(displaced_key)
                self._emit(BindingRemoved(user, displaced.contact))
            bindings[key] = binding
            self._emit(BindingAdded(user, contact))
            logger.info(
                "registrar: %s registered %s from %s/%s for %d s",
                user,
                contact.uri,
                _fmt_address(source),
                transport,
                expires,
            )
        if not bindings:
            del self._bindings[user]

    def _check_order(self, binding: Binding, call_id: str, cseq: int) -> None:
        """RFC 3261 §10.3 step 7: same Call-ID needs a higher CSeq, else the update is aborted."""
        if binding.call_id == call_id and cseq <= binding.cseq:
            raise _Reject(500, "Server Internal Error: REGISTER CSeq not higher than the binding's")

    def _header_expires(self, request: SipRequest) -> int | None:
        try:
            value = request.expires
        except SipProtocolError:
            return MALFORMED_EXPIRES  # RFC 3261 §20.19
        if value is None:
            return None
        return max(0, value)

    def _contact_expires(self, contact: NameAddr, header_expires: int | None) -> int:
        """RFC 3261 §10.3 step 6: contact ``expires`` param, then Expires header, then the default."""
        raw = contact.params.get("expires")
        if raw is not None:
            text = raw.strip()
            if text.isdigit():
                return int(text)
            return MALFORMED_EXPIRES
        if header_expires is not None:
            return header_expires
        return self.default_expires

    def _ok(self, request: SipRequest, user: str, now: float) -> SipResponse:
        """RFC 3261 §10.3 step 8: 200 listing every current binding, with Date."""
        headers: list[tuple[str, str]] = [
            ("Contact", _format_contact(binding, now)) for binding in self.bindings(user, now)
        ]
        if self._wall_clock is not None:
            headers.append(("Date", email.utils.formatdate(self._wall_clock(), usegmt=True)))
        return _respond(request, 200, "OK", headers=tuple(headers))

    def _log_failure(self, request: SipRequest, source: Address, reason: str, username: str | None) -> None:
        try:
            call_id = request.call_id
        except SipProtocolError:
            call_id = "?"
        logger.info(
            "registrar: REGISTER from %s (user %r, Call-ID %s) refused: %s",
            _fmt_address(source),
            username,
            call_id,
            reason,
        )

    # -- queries and housekeeping ---------------------------------------------------------------------------

    def bindings(self, user: str, now: float) -> list[Binding]:
        """Valid bindings of ``user`` at ``now``: highest q first (none counts 1.0), then latest to lapse."""
        current = [b for b in self._bindings.get(user, {}).values() if b.expires_at > now]
        current.sort(key=lambda b: (-(b.q if b.q is not None else 1.0), -b.expires_at))
        return current

    def users(self, now: float) -> list[str]:
        """Every user with at least one valid binding at ``now``."""
        return [
            user
            for user, bindings in self._bindings.items()
            if any(b.expires_at > now for b in bindings.values())
        ]

    def is_registered_source(self, source: Address, now: float) -> str | None:
        """The user with a valid binding registered from exactly ``source`` (host, port), else None."""
        for user, bindings in self._bindings.items():
            for binding in bindings.values():
                if binding.source == source and binding.expires_at > now:
                    return user
        return None

    def unbind(self, user: str) -> int:
        """Drop every binding of ``user`` (an agent disabled by an administrator); one BindingRemoved each."""
        bindings = self._bindings.pop(user, {})
        for binding in bindings.values():
            self._emit(BindingRemoved(user, binding.contact))
        if bindings:
            logger.info("registrar: %s unbound by the application (%d contacts)", user, len(bindings))
        return len(bindings)

    def expire(self, now: float) -> int:
        """Remove bindings lapsed at ``now`` (a ``BindingExpired`` each) and age auth state; the count."""
        count = 0
        for user in list(self._bindings):
            bindings = self._bindings[user]
            for key in [k for k, b in bindings.items() if b.expires_at <= now]:
                binding = bindings.pop(key)
                self._emit(BindingExpired(user, binding.contact))
                logger.info("registrar: %s binding %s expired", user, binding.contact.uri)
                count += 1
            if not bindings:
                del self._bindings[user]
        self.auth.purge(now)
        if self.throttle is not None:
            self.throttle.purge(now)
        return count

    def get_timer(self) -> float | None:
        """When the next binding lapses (call ``expire`` then), or None without bindings."""
        return min(
            (b.expires_at for bindings in self._bindings.values() for b in bindings.values()),
            default=None,
        )

    def next_event(self) -> RegistrarEvent | None:
        """The oldest pending event, or None."""
        return self._events.popleft() if self._events else None

    def _emit(self, event: RegistrarEvent) -> None:
        if len(self._events) >= self._max_events:
            self._events.popleft()
            if not self._events_dropped:
                self._events_dropped = True
                logger.warning(
                    "registrar: event queue full (%d), dropping the oldest events", self._max_events
                )
        self._events.append(event)


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def _is_wildcard(request: SipRequest) -> bool:
    flag = getattr(request, "is_wildcard_contact", None)
    if flag is not None:
        return bool(flag)
    return any(value.strip() == "*" for value in request.headers.get_all("Contact"))


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def _contact_key(uri: SipUri) -> _ContactKey:
    """A simplified RFC 3261 §19.1.4 comparison key for Contact URIs."""
    params = {str(k).lower(): v for k, v in uri.params.items()}
    return (
        (uri.scheme or "").lower(),
        uri.user,
        uri.password,
        (uri.host or "").lower(),
        uri.port,
        _lower(params.get("transport")),
        _lower(params.get("user")),
        _lower(params.get("maddr")),
    )


def _parse_q(contact: NameAddr) -> float | None:
    raw = contact.params.get("q")
    if raw is None:
        return None
    try:
        q = float(raw)
    except ValueError:
        return None
    return q if 0.0 <= q <= 1.0 else None


def _format_contact(binding: Binding, now: float) -> str:
    """A 200 OK Contact value: the registered URI and parameters, ``expires`` set to the time left."""
    parts = [f"<{binding.contact.uri}>"]
    for name, value in binding.contact.params.items():
        if name.lower() == "expires":
            continue
        parts.append(f";{name}" if value is None else f";{name}={value}")
    parts.append(f";expires={binding.remaining(now)}")
    return "".join(parts)


def _respond(
    request: SipRequest, status_code: int, reason: str | None, headers: tuple[tuple[str, str], ...] = ()
) -> SipResponse:
    """A final response; RFC 3261 §8.2.6.2: a To tag is added when the request's To has none."""
    return build_response(request, status_code, reason, to_tag=secrets.token_hex(8), headers=headers)


def _fmt_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
