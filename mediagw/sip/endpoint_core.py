"""Shared state and message-building helpers of the SIP endpoint (see :mod:`mediagw.sip.endpoint`).

:class:`EndpointCore` holds the legs, the dialog index and the transaction layer, and knows how to build
our Via, Contact and responses; :class:`~mediagw.sip.endpoint_uac.UacEndpoint` adds the UAC side and
:class:`~mediagw.sip.endpoint.SipEndpoint` the UAS side and the public sans-I/O interface. The split only
keeps modules small; nothing here is meant to be used on its own.
"""
from __future__ import annotations

import enum
import ipaddress
import logging
import secrets
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from mediagw.errors import LocalError, RemoteError, SipProtocolError
from mediagw.sip.dialog import Dialog, DialogId
from mediagw.sip.endpoint_events import (
    Address,
    AdmissionPolicy,
    CallHandle,
    CallTerminated,
    EndpointConfig,
    Event,
    Registrar,
    TerminationReason,
)
from mediagw.sip.grammar import parse_via, split_commas
from mediagw.sip.message import SipRequest, SipResponse, build_response
from mediagw.sip.transaction import (
    DEFAULT_PORTS,
    ClientInviteTransaction,
    ServerInviteTransaction,
    Transaction,
    TransactionLayer,
)

logger = logging.getLogger("mediagw.sip.endpoint")

KNOWN_METHODS = frozenset(
    {
        "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER",  # RFC 3261
        "INFO",  # RFC 6086
        "PRACK",  # RFC 3262
        "SUBSCRIBE", "NOTIFY",  # RFC 6665
        "UPDATE",  # RFC 3311
        "MESSAGE",  # RFC 3428
        "REFER",  # RFC 3515
        "PUBLISH",  # RFC 3903
    }
)
"""Methods we recognise: one of these that we do not offer gets 405, anything else 501 (RFC 3261 §8.2.1)."""

SDP = "application/sdp"
HANGUP_UNANSWERED_STATUS = 480  # what ``hangup`` answers an unanswered incoming INVITE with


class LegState(enum.Enum):
    """Where one call leg stands."""

    INCOMING = "incoming"  # INVITE received, no final response yet
    ANSWERED = "answered"  # our 2xx sent, waiting for the ACK
    CALLING = "calling"  # our INVITE sent, no final response yet
    CANCELLING = "cancelling"  # our INVITE sent, hangup asked for (CANCEL sent or waiting for a 1xx)
    CONFIRMED = "confirmed"
    TERMINATING = "terminating"  # our BYE sent
    TERMINATED = "terminated"


@dataclass(slots=True)
class Retransmission:
    """The 2xx to an INVITE that this core retransmits until the ACK (RFC 3261 §13.3.1.4)."""

    response: SipResponse
    transaction: ServerInviteTransaction
    data: bytes
    destination: Address
    transport: str
    cseq: int
    initial: bool
    interval: float
    next_at: float
    deadline: float


@dataclass(eq=False, slots=True)
class Leg:
    """One call leg: its INVITE, transactions, dialog and timers."""

    handle: CallHandle
    outgoing: bool
    state: LegState
    invite: SipRequest
    peer: Address
    transport: str
    local: Address
    local_tag: str
    server_tx: ServerInviteTransaction | None = None
    client_tx: ClientInviteTransaction | None = None
    dialog: Dialog | None = None
    early: dict[str, Dialog] = field(default_factory=dict)
    retransmission: Retransmission | None = None
    reinvite_tx: ServerInviteTransaction | None = None
    outgoing_reinvite: ClientInviteTransaction | None = None
    bye_pending: bool = False
    cancel_sent: bool = False
    cancel_deadline: float | None = None
    ack_data: bytes | None = None
    reinvite_ack: bytes | None = None
    terminated_reported: bool = False


class EndpointCore:
    """State shared by the UAS and UAC halves of :class:`~mediagw.sip.endpoint.SipEndpoint`."""

    def __init__(
        self,
        config: EndpointConfig | None = None,
        registrar: Registrar | None = None,
        policy: AdmissionPolicy | None = None,
    ) -> None:
        self.config = config or EndpointConfig()
        self.registrar = registrar
        self.policy = policy
        self.transactions = TransactionLayer(self.config.timers)
        self._events: deque[Event] = deque()
        self._legs: dict[CallHandle, Leg] = {}
        self._dialogs: dict[DialogId, CallHandle] = {}
        self._timed: set[CallHandle] = set()
        """Handles of legs that may have a 2xx retransmission or a CANCEL guard armed."""
        self._next_handle = 1
        self._learned_local: dict[str, Address] = {}
        self.draining = False
        self.retry_after: int | None = None
        allow = [m.upper() for m in self.config.allow]
        if registrar is None and "REGISTER" in allow:
            allow.remove("REGISTER")
        for required in ("ACK", "CANCEL"):
            if required not in allow:
                allow.append(required)
        self.allow: tuple[str, ...] = tuple(allow)
        """Methods we accept (the Allow header), RFC 3261 §20.5."""
        self._supported = {tag.lower() for tag in self.config.supported}

    def _new_handle(self) -> CallHandle:
        handle = self._next_handle
        self._next_handle += 1
        return handle

    def _check_handle(self, handle: CallHandle) -> None:
        if not isinstance(handle, int) or not 0 < handle < self._next_handle:
            raise LocalError(f"unknown call handle {handle!r}")

    def _live_leg(self, handle: CallHandle) -> Leg | None:
        self._check_handle(handle)
        leg = self._legs.get(handle)
        if leg is None or leg.state is LegState.TERMINATED:
            return None
        return leg

    def _stale(self, handle: CallHandle, command: str, leg: Leg | None) -> None:
        """A command that lost a race with the peer (the leg ended or moved on): ignored, logged."""
        state = leg.state.name if leg is not None else "TERMINATED"
        logger.info("call %s: %s ignored in state %s", handle, command, state)

    def _dialog_leg(self, dialog_id: DialogId) -> Leg | None:
        handle = self._dialogs.get(dialog_id)
        return self._legs.get(handle) if handle is not None else None

    def _leg_for_request(self, request: SipRequest) -> Leg | None:
        """The leg whose dialog an incoming request belongs to (To tag = ours, From tag = theirs)."""
        return self._dialog_leg(DialogId(request.call_id, request.to_tag or "", request.from_tag or ""))

    def _finish(self, leg: Leg) -> None:
        """Forget a leg: its dialogs stop matching, its timers stop."""
        leg.state = LegState.TERMINATED
        leg.retransmission = None
        leg.cancel_deadline = None
        if leg.dialog is not None:
            leg.dialog.terminate()
            self._dialogs.pop(leg.dialog.id, None)
        for early in leg.early.values():
            self._dialogs.pop(early.id, None)
        leg.early.clear()
        self._legs.pop(leg.handle, None)

    def _report_terminated(self, leg: Leg, reason: TerminationReason) -> None:
        if not leg.terminated_reported:
            leg.terminated_reported = True
            self._events.append(CallTerminated(leg.handle, reason))

    def _send_bye(self, leg: Leg, now: float) -> None:
        leg.bye_pending = False
        if leg.dialog is None:
            self._finish(leg)
            return
        self._in_dialog_request(leg, "BYE", now)
        leg.state = LegState.TERMINATING

    def _in_dialog_request(
        self,
        leg: Leg,
        method: str,
        now: float,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Transaction:
        assert leg.dialog is not None
        extra = list(headers)
        if self.config.user_agent:
            extra.append(("User-Agent", self.config.user_agent))
        contact = self._contact(leg) if method == "INVITE" else None
        request = leg.dialog.create_request(
            method, via=self._via(leg.transport, leg.local), contact=contact, body=body,
            content_type=content_type, headers=extra,
        )
        destination, transport = self._in_dialog_destination(leg)
        tx = self.transactions.create_client(request, destination, transport, now)
        tx.call_handle = leg.handle
        tx.purpose = "reinvite" if method == "INVITE" else method.lower()
        return tx

    def _in_dialog_destination(self, leg: Leg) -> tuple[Address, str]:
        """Where in-dialog requests of a leg go: its peer (symmetric) or the route set / remote target."""
        if self.config.symmetric_signalling or leg.dialog is None:
            return leg.peer, leg.transport
        hop = leg.dialog.next_hop
        transport = hop.transport or leg.transport
        try:
            ipaddress.ip_address(hop.host)
        except ValueError:
            return leg.peer, leg.transport  # no resolver in the sans-I/O core: fall back to the peer
        return (hop.host, hop.port or DEFAULT_PORTS.get(transport, 5060)), transport

    def _local_address(self, transport: str, fallback: Address | None) -> Address:
        address = self.config.local_addresses.get(transport) or fallback or self._learned_local.get(transport)
        if address is None:
            raise LocalError(f"no local address known for transport {transport!r}; set local_addresses")
        return address

    def _via(self, transport: str, local: Address) -> str:
        host, port = self._local_address(transport, local)
        host = f"[{host}]" if ":" in host else host
        branch = self.transactions.new_branch()
        return f"SIP/2.0/{transport.upper()} {host}:{port};branch={branch};rport"

    def _contact(self, leg: Leg) -> str:
        return contact_value(self.config.contact_user, self._local_address(leg.transport, leg.local),
                              leg.transport)

    def _dialog_headers(
        self, leg: Leg, headers: Sequence[tuple[str, str]]
    ) -> tuple[tuple[str, str], ...]:
        out: list[tuple[str, str]] = [("Contact", self._contact(leg)), ("Allow", ", ".join(self.allow))]
        if not leg.outgoing:
            # §12.1.1: a dialog-establishing response copies the request's Record-Route values
            out.extend(("Record-Route", line) for line in leg.invite.headers.get_lines("Record-Route"))
        if self.config.supported:
            out.append(("Supported", ", ".join(self.config.supported)))
        return (*out, *headers)

    def _server_header(self) -> tuple[tuple[str, str], ...]:
        return (("Server", self.config.user_agent),) if self.config.user_agent else ()

    def _retry_after(self) -> tuple[tuple[str, str], ...]:
        return (("Retry-After", str(self.retry_after if self.retry_after is not None else 60)),)

    def _build(
        self,
        request: SipRequest,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipResponse:
        """A response per §8.2.6.2 with a To tag on everything but 100, and our Server header."""
        if to_tag is None and status > 100:
            try:
                has_tag = request.to_tag is not None
            except SipProtocolError:
                has_tag = True  # an unparsable To is copied verbatim, without a tag glued to it
            if not has_tag:
                to_tag = new_tag()
        return build_response(
            request, status, reason, to_tag=to_tag, headers=(*self._server_header(), *headers),
            body=body, content_type=content_type,
        )

    def _finish_response(self, response: SipResponse) -> None:
        """Give a response built elsewhere (registrar, policy) a To tag and our Server header."""
        if response.status_code > 100 and response.to_tag is None:
            to_value = response.headers.get("To")
            if to_value is not None:
                response.headers.set("To", f"{to_value};tag={new_tag()}")
        if self.config.user_agent and "Server" not in response.headers:
            response.headers.add("Server", self.config.user_agent)

    def _queue(self, data: bytes, destination: Address, transport: str) -> None:
        self.transactions.outbox.messages.append((data, destination, transport))


# ---------------------------------------------------------------------------------------------- helpers


def new_tag() -> str:
    """A From/To tag with 40 bits of randomness (RFC 3261 §19.3 asks for at least 32)."""
    return secrets.token_hex(5)


def reason_phrase(exc: RemoteError) -> str:
    """A reason phrase for an error reply; 400s name the problem (§21.4.1)."""
    if exc.status_code != 400:
        return exc.reason
    text = " ".join(str(exc).split())[:120]
    return text[:1].upper() + text[1:] if text else exc.reason


def advertised_address(local: Address, request: SipRequest) -> Address:
    """The address to put in Via/Contact for a leg that ``request`` started on socket ``local``.

    A socket bound to 0.0.0.0 / :: reports that as its address, which a peer cannot use; the
    Request-URI host, when it is an IP literal, is how the peer reached us, so it stands in. Configured
    ``local_addresses`` take precedence over both (see ``EndpointConfig``).
    """
    try:
        unspecified = ipaddress.ip_address(local[0]).is_unspecified
    except ValueError:
        return local
    if not unspecified:
        return local
    try:
        ipaddress.ip_address(request.uri.host)
    except ValueError:
        return local
    return (request.uri.host, local[1])


def contact_value(user: str, local: Address, transport: str) -> str:
    host, port = local
    host = f"[{host}]" if ":" in host else host
    suffix = "" if transport == "udp" else f";transport={transport}"
    return f"<sip:{user}@{host}:{port}{suffix}>"


def stamp_via(request: SipRequest, source: Address) -> None:
    """Add received (§18.2.1) and fill rport (RFC 3581 §4) in the top Via of a received request."""
    lines = request.headers.get_lines("Via")
    if not lines:
        raise SipProtocolError("Missing Via")
    parts = split_commas(lines[0])
    top = parse_via(parts[0])
    host = top.host.strip("[]")
    changed = False
    if "rport" in top.params:
        top.params["rport"] = str(source[1])
        top.params["received"] = source[0]  # RFC 3581 §4: MUST add received when rport is present
        changed = True
    elif host != source[0]:
        top.params["received"] = source[0]
        changed = True
    if not changed:
        return
    new_lines = [", ".join([str(top), *parts[1:]]), *lines[1:]]
    request.headers.remove("Via")
    for line in reversed(new_lines):
        request.headers.add("Via", line, first=True)
