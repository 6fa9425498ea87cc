"""Events, configuration and hook types of :class:`mediagw.sip.endpoint.SipEndpoint`.

Kept apart so that ``endpoint.py`` stays under the style guide's module size; import them from
``mediagw.sip.endpoint``, which re-exports every name here.

Event contract (what the calls layer can rely on):

* An incoming leg starts with :class:`IncomingCallReceived`. Before it is answered it ends either by the
  TU's own ``reject``/``hangup`` (no event) or by :class:`CallCancelled` (the caller sent CANCEL, or BYE on
  the early dialog). Once answered it gets :class:`CallEstablished` when the ACK arrives and ends with
  exactly one :class:`CallTerminated`.
* An outgoing leg (``invite``) gets any number of :class:`OutgoingCallProgressed`, then exactly one of
  :class:`OutgoingCallAnswered` (we already sent the ACK) or :class:`OutgoingCallFailed` (also after our
  own ``hangup``, normally with 487). An answered outgoing leg ends with exactly one :class:`CallTerminated`.
* A BYE we send (``hangup``/``send_bye``) is reported by ``CallTerminated(reason="local-bye")`` when its
  transaction completes, or ``reason="timeout"`` when Timer F fires.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, Union

from mediagw.sip.message import SipRequest, SipResponse
from mediagw.sip.transaction import TimerSettings

Address = tuple[str, int]
CallHandle = int
"""Opaque handle of one call leg, unique for the endpoint's lifetime."""

TerminationReason = Literal["remote-bye", "local-bye", "ack-timeout", "timeout", "dialog-gone"]

DEFAULT_ALLOW: tuple[str, ...] = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "REGISTER")
"""Methods we implement (REGISTER only when a registrar is configured)."""


class Registrar(Protocol):
    """What the endpoint needs from :class:`mediagw.sip.registrar.Registrar`."""

    def handle_register(self, request: SipRequest, source: Address, transport: str, now: float) -> SipResponse: ...

    def is_registered_source(self, source: Address, now: float) -> str | None: ...


AdmissionPolicy = Callable[[SipRequest, Address, str, float], Union[SipResponse, None]]
"""``(request, source, transport, now) -> SipResponse | None``: None admits a new INVITE, a response
(403, a 401 challenge ...) rejects it."""


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """Settings of one :class:`SipEndpoint`."""

    local_addresses: Mapping[str, Address] = field(default_factory=dict)
    """Address advertised in Via and Contact per transport ("udp", "tcp"). Missing transports fall back
    to the local address the message arrived on (for a socket bound to 0.0.0.0 / ::, to the IP in the
    INVITE's Request-URI); outgoing calls need it set when the sockets are bound to a wildcard."""
    user_agent: str = "mediagw"
    """Value of the Server (responses) and User-Agent (requests) headers; empty to leave them out."""
    timers: TimerSettings = field(default_factory=TimerSettings)
    """T1, T2, T4 (RFC 3261 §17)."""
    allow: tuple[str, ...] = DEFAULT_ALLOW
    """Methods accepted; the Allow header lists them (REGISTER only with a registrar)."""
    supported: tuple[str, ...] = ()
    """Option tags we support (RFC 3261 §19.2); a Require listing anything else gets 420."""
    max_message_size: int = 65535
    """Largest message accepted (RFC 3261 §18.1.1); larger ones get 513."""
    contact_user: str = "mediagw"
    """User part of our Contact URI."""
    symmetric_signalling: bool = True
    """Send in-dialog requests to the address the dialog's first message came from (NAT-friendly,
    RFC 3581 spirit) rather than resolving the remote target / route set."""


# -- events ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncomingCallReceived:
    """A new INVITE passed every check and the admission policy; answer, reject or ring it."""

    call_handle: CallHandle
    """Handle for the commands on this leg."""
    request: SipRequest
    """The INVITE (its top Via carries received/rport as stamped by us)."""
    source: Address
    """The address the INVITE came from."""
    transport: str
    """"udp" or "tcp"."""
    registered_user: str | None = None
    """The registered user whose binding came from ``source``, if any (the registrar's answer)."""


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """The caller gave up before we answered (CANCEL, or BYE on the early dialog); 487 already sent."""

    call_handle: CallHandle
    """The incoming leg."""


@dataclass(frozen=True, slots=True)
class CallEstablished:
    """The ACK for our 2xx arrived: the incoming leg is confirmed (RFC 3261 §13.3.1.4)."""

    call_handle: CallHandle
    """The incoming leg."""
    ack: SipRequest
    """The ACK (it carries the SDP answer when our 2xx carried the offer)."""


@dataclass(frozen=True, slots=True)
class CallTerminated:
    """An answered leg ended; the handle is dead afterwards."""

    call_handle: CallHandle
    """The leg that ended."""
    reason: TerminationReason
    """remote-bye, local-bye (our BYE completed), ack-timeout (no ACK within 64*T1; we sent BYE),
    timeout (our BYE or another in-dialog request got no answer), dialog-gone (481/408 to an in-dialog
    request, RFC 3261 §12.2.1.2)."""


@dataclass(frozen=True, slots=True)
class ReinviteReceived:
    """A re-INVITE arrived on a confirmed dialog; answer it with ``answer_reinvite``."""

    call_handle: CallHandle
    """The leg whose dialog received it."""
    request: SipRequest
    """The re-INVITE (SDP offer in its body, e.g. a=sendonly for hold)."""


@dataclass(frozen=True, slots=True)
class InfoReceived:
    """An INFO arrived in a dialog (RFC 6086); we already answered 200."""

    call_handle: CallHandle
    """The leg."""
    request: SipRequest
    """The INFO (DTMF relay bodies and the like)."""


@dataclass(frozen=True, slots=True)
class OutgoingCallProgressed:
    """A provisional response (101-199) to our INVITE."""

    call_handle: CallHandle
    """The outgoing leg."""
    status: int
    """The status code (180, 183 ...)."""
    response: SipResponse | None = None
    """The response (a 183 may carry early-media SDP)."""


@dataclass(frozen=True, slots=True)
class OutgoingCallAnswered:
    """A 2xx to our INVITE; the ACK is already sent and the dialog confirmed."""

    call_handle: CallHandle
    """The outgoing leg."""
    response: SipResponse
    """The 2xx (SDP answer in its body)."""


@dataclass(frozen=True, slots=True)
class OutgoingCallFailed:
    """Our INVITE ended without a dialog: 3xx-6xx, 408 on Timer B, or 487 after our CANCEL."""

    call_handle: CallHandle
    """The outgoing leg."""
    status: int
    """The final status (408 when no answer came, RFC 3261 §17.1.1.2 Timer B)."""
    response: SipResponse | None = None
    """The final response, None on a timeout."""


@dataclass(frozen=True, slots=True)
class ReinviteAnswered:
    """A final response to our re-INVITE (``reinvite``); a 2xx is ACKed already."""

    call_handle: CallHandle
    """The leg."""
    status: int
    """The final status; non-2xx leaves the session as it was (491: retry later, RFC 3261 §14.1)."""
    response: SipResponse
    """The response."""


Event = Union[
    IncomingCallReceived,
    CallCancelled,
    CallEstablished,
    CallTerminated,
    ReinviteReceived,
    InfoReceived,
    OutgoingCallProgressed,
    OutgoingCallAnswered,
    OutgoingCallFailed,
    ReinviteAnswered,
]
