"""RFC 3261 §17 transactions (with the RFC 6026 "Accepted" state), sans-I/O.

Theory of operation
-------------------
A transaction is a small state machine driven by three kinds of input: a message from the network
(``receive_request`` / ``receive_response``), a command from the transaction user (``send_response``),
and the clock (``handle_timer(now)``). It never reads a clock or touches a socket: what it wants sent is
appended, already serialized, to a shared :class:`Outbox` (``messages``) together with the destination and
transport, and what the transaction user (TU) must learn is appended to ``Outbox.events``.

Every state change goes through one transition table per transaction kind (the h11 ``_state.py``
pattern). Input from the *peer* that the table does not list is absorbed silently (a late or duplicated
message is not an error, RFC 3261 §17.1.1.2 and §17.2.1); a *local* command or timer the table does not
list is our own bug and raises :class:`TransactionError`, which names the state and the event.

Timers carry their RFC names (A to K, plus L and M from RFC 6026 §8.4 and §8.11). Timers whose RFC value is
zero for reliable transports (D, I, J, K) are not armed there: the transition happens at once. Timers A, E
and G (retransmissions) exist only on unreliable transports (§17.1.1.2, §17.1.2.2, §17.2.1).

RFC 6026 changes what happens to 2xx responses to INVITE: the client transaction enters ACCEPTED and passes
every 2xx to the TU (which sends the ACK, §13.2.2.4); the server transaction enters ACCEPTED, forwards the
TU's 2xx retransmissions (§13.3.1.4 makes them the TU's job), absorbs retransmitted INVITEs and leaves the
ACK for the TU. Both leave ACCEPTED on Timer L / Timer M (64*T1).

:class:`TransactionLayer` holds the live transactions, matches messages to them (§17.1.3, §17.2.3, with the
RFC 2543 fallback for requests without the magic cookie), detects merged requests (§8.2.2.2), generates
branches that let it recognise its own requests looping back, and aggregates timers in one heap (stale
entries are skipped lazily), so ``get_timer`` stays cheap with thousands of live transactions.
"""
from __future__ import annotations

import enum
import heapq
import logging
import secrets
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from mediagw.errors import ConfigError, LocalError, RemoteError
from mediagw.sip.message import SipRequest, SipResponse, build_response

logger = logging.getLogger(__name__)

Address = tuple[str, int]

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7: branches of RFC 3261 compliant requests start with this
RELIABLE_TRANSPORTS = frozenset({"tcp", "tls", "sctp", "ws", "wss"})  # RFC 3261 §18, RFC 7118
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "sctp": 5060, "tls": 5061, "ws": 80, "wss": 443}  # §19.1.2


def is_reliable(transport: str) -> bool:
    """True for transports that deliver reliably (RFC 3261 §17: no retransmission timers there)."""
    return transport.lower() in RELIABLE_TRANSPORTS


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """The RFC 3261 timer base values (Table 4 of §A); every timer A to M derives from them."""

    t1: float = 0.5
    """RTT estimate, seconds (RFC 3261 §17.1.1.1, default 500 ms)."""
    t2: float = 4.0
    """Maximum retransmit interval for non-INVITE requests and INVITE responses, seconds (§17.1.2.2)."""
    t4: float = 5.0
    """Maximum duration a message stays in the network, seconds (§17.1.2.2)."""
    timer_d: float = 32.0
    """Wait time for response retransmits in the client INVITE transaction (§17.1.1.2: at least 32 s)."""

    def __post_init__(self) -> None:
        if self.t1 <= 0 or self.t2 <= 0 or self.t4 <= 0 or self.timer_d < 0:
            raise ConfigError("<timers>", "sip.timers", "T1, T2 and T4 must be positive")
        if self.t2 < self.t1:
            raise ConfigError("<timers>", "sip.timers.t2", "T2 must not be smaller than T1")

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J (unreliable), L and M (RFC 3261 §17, RFC 6026 §8)."""
        return 64 * self.t1


class TransactionError(LocalError):
    """A transaction was driven by an event its current state does not accept (our bug)."""

    def __init__(self, kind: str, state: enum.Enum, event: str) -> None:
        self.state = state
        self.event = event
        super().__init__(f"{kind}: event {event!r} is not allowed in state {state.name}")


class ClientInviteState(enum.Enum):
    """RFC 3261 Figure 5 with RFC 6026 Figure 3 (ACCEPTED)."""

    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class ClientNonInviteState(enum.Enum):
    """RFC 3261 Figure 6."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class ServerInviteState(enum.Enum):
    """RFC 3261 Figure 7 with RFC 6026 Figure 5 (ACCEPTED)."""

    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class ServerNonInviteState(enum.Enum):
    """RFC 3261 Figure 8."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


_CI = ClientInviteState
_CN = ClientNonInviteState
_SI = ServerInviteState
_SN = ServerNonInviteState

# Transition tables: (state, event) -> next state. Events: "1xx", "2xx", "3xx-6xx" (responses received or,
# prefixed with "send_", sent by the TU), "request" (a retransmission), "ack", "timer_X".
CLIENT_INVITE_TRANSITIONS: dict[tuple[ClientInviteState, str], ClientInviteState] = {
    (_CI.CALLING, "timer_a"): _CI.CALLING,  # §17.1.1.2 retransmit, A doubles
    (_CI.CALLING, "timer_b"): _CI.TERMINATED,  # §17.1.1.2 timeout, TU informed
    (_CI.CALLING, "1xx"): _CI.PROCEEDING,
    (_CI.CALLING, "2xx"): _CI.ACCEPTED,  # RFC 6026 §8.4
    (_CI.CALLING, "3xx-6xx"): _CI.COMPLETED,  # ACK sent by the transaction, §17.1.1.3
    (_CI.PROCEEDING, "1xx"): _CI.PROCEEDING,
    (_CI.PROCEEDING, "2xx"): _CI.ACCEPTED,
    (_CI.PROCEEDING, "3xx-6xx"): _CI.COMPLETED,
    (_CI.COMPLETED, "3xx-6xx"): _CI.COMPLETED,  # retransmitted final: ACK again, not passed up
    (_CI.COMPLETED, "timer_d"): _CI.TERMINATED,
    (_CI.ACCEPTED, "2xx"): _CI.ACCEPTED,  # RFC 6026 §8.4: every 2xx goes to the TU
    (_CI.ACCEPTED, "timer_m"): _CI.TERMINATED,
    (_CI.CALLING, "transport_error"): _CI.TERMINATED,
    (_CI.PROCEEDING, "transport_error"): _CI.TERMINATED,
    (_CI.PROCEEDING, "cancel_timeout"): _CI.TERMINATED,  # §9.1: no final 64*T1 after CANCEL
}

CLIENT_NON_INVITE_TRANSITIONS: dict[tuple[ClientNonInviteState, str], ClientNonInviteState] = {
    (_CN.TRYING, "timer_e"): _CN.TRYING,  # §17.1.2.2 retransmit, E doubles up to T2
    (_CN.TRYING, "timer_f"): _CN.TERMINATED,
    (_CN.TRYING, "1xx"): _CN.PROCEEDING,
    (_CN.TRYING, "final"): _CN.COMPLETED,
    (_CN.PROCEEDING, "timer_e"): _CN.PROCEEDING,  # retransmit every T2
    (_CN.PROCEEDING, "timer_f"): _CN.TERMINATED,
    (_CN.PROCEEDING, "1xx"): _CN.PROCEEDING,
    (_CN.PROCEEDING, "final"): _CN.COMPLETED,
    (_CN.COMPLETED, "timer_k"): _CN.TERMINATED,
    (_CN.TRYING, "transport_error"): _CN.TERMINATED,
    (_CN.PROCEEDING, "transport_error"): _CN.TERMINATED,
}

SERVER_INVITE_TRANSITIONS: dict[tuple[ServerInviteState, str], ServerInviteState] = {
    (_SI.PROCEEDING, "send_1xx"): _SI.PROCEEDING,
    (_SI.PROCEEDING, "send_2xx"): _SI.ACCEPTED,  # RFC 6026 §8.5
    (_SI.PROCEEDING, "send_3xx-6xx"): _SI.COMPLETED,
    (_SI.PROCEEDING, "request"): _SI.PROCEEDING,  # retransmitted INVITE: resend the last provisional
    (_SI.COMPLETED, "request"): _SI.COMPLETED,  # resend the final response
    (_SI.COMPLETED, "timer_g"): _SI.COMPLETED,  # §17.2.1 retransmit, G doubles up to T2
    (_SI.COMPLETED, "timer_h"): _SI.TERMINATED,  # ACK never came: TU informed
    (_SI.COMPLETED, "ack"): _SI.CONFIRMED,
    (_SI.CONFIRMED, "ack"): _SI.CONFIRMED,  # absorbed
    (_SI.CONFIRMED, "request"): _SI.CONFIRMED,  # absorbed
    (_SI.CONFIRMED, "timer_i"): _SI.TERMINATED,
    (_SI.ACCEPTED, "send_2xx"): _SI.ACCEPTED,  # RFC 6026 §8.7: TU's 2xx retransmissions pass through
    (_SI.ACCEPTED, "request"): _SI.ACCEPTED,  # RFC 6026 §8.7: absorbed, not passed to the TU
    (_SI.ACCEPTED, "ack"): _SI.ACCEPTED,  # RFC 6026 §8.7: passed to the TU
    (_SI.ACCEPTED, "timer_l"): _SI.TERMINATED,
    (_SI.PROCEEDING, "transport_error"): _SI.TERMINATED,
    (_SI.COMPLETED, "transport_error"): _SI.TERMINATED,
}

SERVER_NON_INVITE_TRANSITIONS: dict[tuple[ServerNonInviteState, str], ServerNonInviteState] = {
    (_SN.TRYING, "request"): _SN.TRYING,  # §17.2.2: retransmissions discarded
    (_SN.TRYING, "send_1xx"): _SN.PROCEEDING,
    (_SN.TRYING, "send_final"): _SN.COMPLETED,
    (_SN.PROCEEDING, "request"): _SN.PROCEEDING,  # resend the last provisional
    (_SN.PROCEEDING, "send_1xx"): _SN.PROCEEDING,
    (_SN.PROCEEDING, "send_final"): _SN.COMPLETED,
    (_SN.COMPLETED, "request"): _SN.COMPLETED,  # resend the final response
    (_SN.COMPLETED, "timer_j"): _SN.TERMINATED,
    (_SN.TRYING, "transport_error"): _SN.TERMINATED,
    (_SN.PROCEEDING, "transport_error"): _SN.TERMINATED,
    (_SN.COMPLETED, "transport_error"): _SN.TERMINATED,
}


# -- events passed to the transaction user ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A client transaction passes a response up to its TU (RFC 3261 §17.1)."""

    transaction: ClientTransaction
    """The client transaction the response matched."""
    response: SipResponse
    """The response, as parsed."""


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """A transaction failed for lack of an answer (Timer B, F or H, or the §9.1 CANCEL guard)."""

    transaction: Transaction
    """The transaction that gave up."""
    timer: str
    """The RFC name of the timer that fired: "B", "F", "H" (or "CANCEL" for the §9.1 guard)."""


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """A transaction reached TERMINATED and has been forgotten by the layer."""

    transaction: Transaction
    """The transaction that ended."""


TransactionEvent = Union[ResponseReceived, TransactionTimedOut, TransactionTerminated]


@dataclass(slots=True)
class Outbox:
    """What transactions produce: serialized messages to send and events for the TU."""

    messages: list[tuple[bytes, Address, str]] = field(default_factory=list)
    """(data, destination, transport), in the order they must be sent."""
    events: deque[TransactionEvent] = field(default_factory=deque)
    """Events for the TU, oldest first."""
    schedule: list[tuple[float, int, str, Transaction]] = field(default_factory=list)
    """Heap of armed timers (deadline, sequence, timer name, transaction); stale entries are skipped."""
    terminated: list[Transaction] = field(default_factory=list)
    """Transactions that reached TERMINATED since the layer last collected them."""
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class TransactionKey:
    """What §17.1.3 / §17.2.3 compare to match a message to a transaction."""

    branch: str
    """The top Via branch (RFC 3261 requests) or a digest of the RFC 2543 matching fields."""
    sent_by: str
    """host:port of the top Via sent-by (server transactions only; "" for client transactions)."""
    method: str
    """The request method (ACK counts as INVITE on the server side, §17.2.3)."""


def server_key(request: SipRequest) -> TransactionKey:
    """The §17.2.3 server transaction key of a request; raises SipProtocolError on a broken Via."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    port = via.port or DEFAULT_PORTS.get(via.transport.lower(), 5060)
    sent_by = f"{via.host.lower()}:{port}"
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return TransactionKey(branch, sent_by, method)
    # RFC 2543 fallback (§17.2.3): Request-URI, From tag, Call-ID, CSeq number and top Via. The To tag is
    # left out so that the ACK (which carries our tag) matches the INVITE (which did not).
    legacy = "|".join(
        (str(request.uri), request.from_tag or "", request.call_id, str(request.cseq[0]), str(via))
    )
    return TransactionKey("rfc2543:" + legacy, sent_by, method)


def client_key(message: SipRequest | SipResponse) -> TransactionKey | None:
    """The §17.1.3 client key: top Via branch and CSeq method; None when the branch is missing."""
    branch = message.branch
    if branch is None:
        return None
    return TransactionKey(branch, "", message.cseq[1])


def response_destination(request: SipRequest, source: Address, transport: str) -> Address:
    """Where responses to ``request`` go, RFC 3261 §18.2.2 with RFC 3581 §4 (rport).

    Reliable transports answer on the connection the request came in on (the source address). Otherwise:
    maddr, then received/rport, then the sent-by.
    """
    if is_reliable(transport):
        return source
    via = request.top_via
    port = via.port or DEFAULT_PORTS.get(via.transport.lower(), 5060)
    maddr = via.params.get("maddr")
    if maddr:
        return (maddr, port)
    rport = via.rport
    if isinstance(rport, int) and not isinstance(rport, bool):
        return (via.received or source[0], rport)
    if via.received:
        return (via.received, port)
    return (via.host.strip("[]"), port)


def status_class(status_code: int) -> str:
    """The transition-table event name of a response status code."""
    if status_code < 200:
        return "1xx"
    if status_code < 300:
        return "2xx"
    return "3xx-6xx"


class Transaction:
    """State, timers and outbox shared by the four transaction kinds."""

    kind = "transaction"
    TRANSITIONS: ClassVar[Mapping[tuple[Any, str], Any]] = {}
    """The kind's transition table, ``(state, event) -> next state`` (set by each subclass)."""
    _state: Any

    def __init__(
        self,
        request: SipRequest,
        key: TransactionKey,
        peer: Address,
        transport: str,
        settings: TimerSettings,
        outbox: Outbox,
    ) -> None:
        self.request = request
        """The request that created the transaction."""
        self.key = key
        self.peer = peer
        """Where this transaction sends (requests for client, responses for server transactions)."""
        self.transport = transport
        self.reliable = is_reliable(transport)
        self.settings = settings
        self.outbox = outbox
        self.timers: dict[str, float] = {}
        """Armed timers: RFC name ("A" ... "M") -> absolute deadline."""
        self.intervals: dict[str, float] = {}
        """Current retransmission interval of the doubling timers A, E and G."""
        self.call_handle: int | None = None
        """Set by the TU to find its call again; opaque to the transaction."""
        self.purpose: str = ""
        """Set by the TU: what the request was for (e.g. "bye", "info"); opaque to the transaction."""

    @property
    def state(self) -> enum.Enum:
        raise NotImplementedError

    @property
    def terminated(self) -> bool:
        """True once the transaction reached TERMINATED."""
        return self.state.name == "TERMINATED"

    # -- timers -------------------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest armed deadline, or None."""
        return min(self.timers.values()) if self.timers else None

    def handle_timer(self, now: float) -> None:
        """Fire every timer whose deadline is due, earliest first."""
        while self.timers:
            name = min(self.timers, key=self.timers.__getitem__)
            if self.timers[name] > now:
                return
            del self.timers[name]
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s %s: timer %s fired in %s", self.kind, self.key.branch, name, self.state.name)
            self._on_timer(name, now)

    def _arm(self, name: str, now: float, delay: float) -> None:
        """Arm timer ``name``; a zero delay (reliable transports) fires it at once."""
        if delay <= 0:
            self.timers.pop(name, None)
            self._on_timer(name, now)
        else:
            self._set(name, now + delay)

    def _on_timer(self, name: str, now: float) -> None:
        raise NotImplementedError

    def _set(self, name: str, deadline: float) -> None:
        """Arm timer ``name`` at ``deadline`` and register it in the shared timer heap."""
        self.timers[name] = deadline
        outbox = self.outbox
        outbox.sequence += 1
        heapq.heappush(outbox.schedule, (deadline, outbox.sequence, name, self))

    def _terminate(self) -> None:
        self.timers.clear()
        self.outbox.events.append(TransactionTerminated(self))
        self.outbox.terminated.append(self)

    def _send(self, data: bytes) -> None:
        self.outbox.messages.append((data, self.peer, self.transport))

    def _go(self, event: str, *, local: bool) -> Any:
        """Take ``event``'s transition from the class's ``TRANSITIONS`` table and return the new state.

        Returns None when the table has no such transition: a peer's input is absorbed, while our own
        (``local``) misuse raises TransactionError naming the state and the event.
        """
        state = self.state
        nxt = self.TRANSITIONS.get((state, event))
        if nxt is None:
            if local:
                raise TransactionError(self.kind, state, event)
            return None
        if logger.isEnabledFor(logging.DEBUG) and nxt is not state:
            logger.debug("%s %s: %s -> %s on %s", self.kind, self.key.branch, state.name, nxt.name, event)
        self._state = nxt
        return nxt


class ClientTransaction(Transaction):
    """Common part of the client transactions: sending the request and matching responses."""

    def receive_response(self, response: SipResponse, now: float) -> None:
        raise NotImplementedError

    def transport_error(self, now: float) -> None:
        """The transport failed to deliver the request (§17.1.4): terminate and inform the TU."""
        raise NotImplementedError


class ClientInviteTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 with RFC 6026 §8.4 (ACCEPTED on 2xx, Timer M)."""

    TRANSITIONS = CLIENT_INVITE_TRANSITIONS
    _state: ClientInviteState

    kind = "client INVITE transaction"

    def __init__(
        self,
        request: SipRequest,
        peer: Address,
        transport: str,
        settings: TimerSettings,
        outbox: Outbox,
        now: float,
    ) -> None:
        key = client_key(request)
        if key is None:
            raise LocalError("a client transaction needs a request with a Via branch")
        super().__init__(request, key, peer, transport, settings, outbox)
        self._state = ClientInviteState.CALLING
        self._data = request.serialize()
        self.last_final: SipResponse | None = None
        self._ack: bytes | None = None
        self._send(self._data)
        if not self.reliable:
            self.intervals["A"] = settings.t1
            self._set("A", now + settings.t1)  # §17.1.1.2: Timer A = T1, unreliable only
        self._set("B", now + settings.timeout)  # Timer B = 64*T1

    @property
    def state(self) -> ClientInviteState:
        return self._state

    def receive_response(self, response: SipResponse, now: float) -> None:
        """A response matched this transaction (§17.1.1.2)."""
        event = status_class(response.status_code)
        before = self._state
        if self._go(event, local=False) is None:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s %s: %d absorbed in %s", self.kind, self.key.branch, response.status_code, before.name)
            return
        if event == "1xx":
            self.timers.pop("A", None)
            self.timers.pop("B", None)  # Timer B only runs in CALLING (§17.1.1.2)
            self.outbox.events.append(ResponseReceived(self, response))
        elif event == "2xx":
            if before is not ClientInviteState.ACCEPTED:
                self.timers.clear()
                self._set("M", now + self.settings.timeout)  # RFC 6026 §8.4
            self.outbox.events.append(ResponseReceived(self, response))
        else:
            if before is ClientInviteState.COMPLETED:
                if self._ack is not None:
                    self._send(self._ack)  # §17.1.1.2: retransmitted final -> ACK again, TU not told
                return
            self.timers.clear()
            self.last_final = response
            self._ack = build_non_2xx_ack(self.request, response).serialize()
            self._send(self._ack)
            self.outbox.events.append(ResponseReceived(self, response))
            self._arm("D", now, 0.0 if self.reliable else self.settings.timer_d)

    def cancel_timeout(self, now: float) -> None:
        """§9.1: no final response 64*T1 after our CANCEL; the TU gives the transaction up."""
        if self._go("cancel_timeout", local=False) is None:
            return
        self.outbox.events.append(TransactionTimedOut(self, "CANCEL"))
        self._terminate()

    def transport_error(self, now: float) -> None:
        if self._go("transport_error", local=False) is None:
            return
        self.outbox.events.append(TransactionTimedOut(self, "transport"))
        self._terminate()

    def _on_timer(self, name: str, now: float) -> None:
        self._go("timer_" + name.lower(), local=True)
        if name == "A":
            self._send(self._data)
            self.intervals["A"] *= 2  # §17.1.1.2: 2*A, no T2 cap for INVITE
            self._set("A", now + self.intervals["A"])
        elif name == "B":
            self.outbox.events.append(TransactionTimedOut(self, "B"))
            self._terminate()
        else:  # D, M
            self._terminate()


class ClientNonInviteTransaction(ClientTransaction):
    """RFC 3261 §17.1.2: Timer E retransmits (doubling to T2), F times out, K absorbs late responses."""

    TRANSITIONS = CLIENT_NON_INVITE_TRANSITIONS
    _state: ClientNonInviteState

    kind = "client non-INVITE transaction"

    def __init__(
        self,
        request: SipRequest,
        peer: Address,
        transport: str,
        settings: TimerSettings,
        outbox: Outbox,
        now: float,
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise LocalError(f"{request.method} cannot use a non-INVITE client transaction")
        key = client_key(request)
        if key is None:
            raise LocalError("a client transaction needs a request with a Via branch")
        super().__init__(request, key, peer, transport, settings, outbox)
        self._state = ClientNonInviteState.TRYING
        self._data = request.serialize()
        self.last_final: SipResponse | None = None
        self._send(self._data)
        if not self.reliable:
            self.intervals["E"] = settings.t1
            self._set("E", now + settings.t1)  # §17.1.2.2: Timer E = T1, unreliable only
        self._set("F", now + settings.timeout)  # Timer F = 64*T1

    @property
    def state(self) -> ClientNonInviteState:
        return self._state

    def receive_response(self, response: SipResponse, now: float) -> None:
        """A response matched this transaction (§17.1.2.2)."""
        event = "1xx" if response.status_code < 200 else "final"
        if self._go(event, local=False) is None:
            return
        self.outbox.events.append(ResponseReceived(self, response))
        if event == "final":
            self.last_final = response
            self.timers.clear()
            self._arm("K", now, 0.0 if self.reliable else self.settings.t4)  # Timer K = T4 / 0

    def transport_error(self, now: float) -> None:
        if self._go("transport_error", local=False) is None:
            return
        self.outbox.events.append(TransactionTimedOut(self, "transport"))
        self._terminate()

    def _on_timer(self, name: str, now: float) -> None:
        self._go("timer_" + name.lower(), local=True)
        if name == "E":
            self._send(self._data)
            if self._state is ClientNonInviteState.PROCEEDING:
                self.intervals["E"] = self.settings.t2  # §17.1.2.2: T2 in PROCEEDING
            else:
                self.intervals["E"] = min(2 * self.intervals["E"], self.settings.t2)
            self._set("E", now + self.intervals["E"])
        elif name == "F":
            self.outbox.events.append(TransactionTimedOut(self, "F"))
            self._terminate()
        else:  # K
            self._terminate()


class ServerTransaction(Transaction):
    """Common part of the server transactions: absorbing retransmissions, sending responses."""

    def __init__(
        self,
        request: SipRequest,
        peer: Address,
        transport: str,
        settings: TimerSettings,
        outbox: Outbox,
    ) -> None:
        super().__init__(request, server_key(request), peer, transport, settings, outbox)
        self.last_response: SipResponse | None = None
        """The most recent response sent (what a retransmitted request gets again)."""
        self._last_data: bytes | None = None

    @property
    def final_sent(self) -> bool:
        """True once a final response went out."""
        return self.last_response is not None and self.last_response.status_code >= 200

    def receive_request(self, request: SipRequest, now: float) -> None:
        raise NotImplementedError

    def send_response(self, response: SipResponse, now: float) -> None:
        raise NotImplementedError


class ServerInviteTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 with RFC 6026 §8.5-8.7: 100 at once, G retransmits non-2xx finals, H waits for ACK."""

    TRANSITIONS = SERVER_INVITE_TRANSITIONS
    _state: ServerInviteState

    kind = "server INVITE transaction"

    def __init__(
        self,
        request: SipRequest,
        peer: Address,
        transport: str,
        settings: TimerSettings,
        outbox: Outbox,
        now: float,
        *,
        trying_headers: Sequence[tuple[str, str]] = (),
        send_trying: bool = True,
    ) -> None:
        if request.method != "INVITE":
            raise LocalError(f"a server INVITE transaction cannot be created from {request.method}")
        super().__init__(request, peer, transport, settings, outbox)
        self._state = ServerInviteState.PROCEEDING
        self._trying_headers = tuple(trying_headers)
        if send_trying:
            self.send_trying(now)

    def send_trying(self, now: float) -> None:
        """Send 100 Trying (§17.2.1: at once unless the TU answers within 200 ms).

        A TU that answers synchronously (our UAS core refusing a request after its checks) creates the
        transaction with ``send_trying=False`` and calls this only when it hands the INVITE on.
        """
        if self.last_response is None:
            self.send_response(build_response(self.request, 100, headers=self._trying_headers), now)

    @property
    def state(self) -> ServerInviteState:
        return self._state

    def receive_request(self, request: SipRequest, now: float) -> None:
        """A retransmitted INVITE, or an ACK, matched this transaction."""
        if request.method == "ACK":
            before = self._state
            if self._go("ack", local=False) is None:
                return
            if before is ServerInviteState.COMPLETED:
                self.timers.clear()
                self._arm("I", now, 0.0 if self.reliable else self.settings.t4)  # Timer I = T4 / 0
            return
        if self._go("request", local=False) is None:
            return
        if self._state in (ServerInviteState.PROCEEDING, ServerInviteState.COMPLETED) and self._last_data:
            self._send(self._last_data)  # §17.2.1: resend the most recent response

    def send_response(self, response: SipResponse, now: float) -> None:
        """Send a response from the TU; 2xx moves to ACCEPTED, 3xx-6xx to COMPLETED (Timers G, H)."""
        event = "send_" + status_class(response.status_code)
        before = self._state
        self._go(event, local=True)
        data = response.serialize()
        self._send(data)
        if before is ServerInviteState.ACCEPTED:
            return  # a TU retransmission of the 2xx: the first one is what a retransmitted INVITE sees
        self.last_response = response
        self._last_data = data
        if event == "send_2xx":
            self._set("L", now + self.settings.timeout)  # RFC 6026 §8.7: Timer L = 64*T1
        elif event == "send_3xx-6xx":
            if not self.reliable:
                self.intervals["G"] = self.settings.t1
                self._set("G", now + self.settings.t1)  # Timer G = T1, unreliable only
            self._set("H", now + self.settings.timeout)  # Timer H = 64*T1

    def transport_error(self, now: float) -> None:
        """The transport could not send our response (§17.2.4): terminate."""
        if self._go("transport_error", local=False) is not None:
            self.outbox.events.append(TransactionTimedOut(self, "transport"))
            self._terminate()

    def _on_timer(self, name: str, now: float) -> None:
        self._go("timer_" + name.lower(), local=True)
        if name == "G":
            if self._last_data is not None:
                self._send(self._last_data)
            self.intervals["G"] = min(2 * self.intervals["G"], self.settings.t2)  # §17.2.1
            self._set("G", now + self.intervals["G"])
        elif name == "H":
            self.outbox.events.append(TransactionTimedOut(self, "H"))
            self._terminate()
        else:  # I, L
            self._terminate()


class ServerNonInviteTransaction(ServerTransaction):
    """RFC 3261 §17.2.2: absorb retransmissions, resend the last response, Timer J."""

    TRANSITIONS = SERVER_NON_INVITE_TRANSITIONS
    _state: ServerNonInviteState

    kind = "server non-INVITE transaction"

    def __init__(
        self,
        request: SipRequest,
        peer: Address,
        transport: str,
        settings: TimerSettings,
        outbox: Outbox,
        now: float,
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise LocalError(f"{request.method} cannot use a non-INVITE server transaction")
        super().__init__(request, peer, transport, settings, outbox)
        self._state = ServerNonInviteState.TRYING

    @property
    def state(self) -> ServerNonInviteState:
        return self._state

    def receive_request(self, request: SipRequest, now: float) -> None:
        """A retransmission matched: resend the last response (nothing in TRYING)."""
        if self._go("request", local=False) is None:
            return
        if self._last_data is not None:
            self._send(self._last_data)

    def send_response(self, response: SipResponse, now: float) -> None:
        """Send a response from the TU; a final one starts Timer J (64*T1, zero when reliable)."""
        event = "send_1xx" if response.status_code < 200 else "send_final"
        self._go(event, local=True)
        data = response.serialize()
        self.last_response = response
        self._last_data = data
        self._send(data)
        if event == "send_final":
            self._arm("J", now, 0.0 if self.reliable else self.settings.timeout)

    def transport_error(self, now: float) -> None:
        """The transport could not send our response (§17.2.4): terminate."""
        if self._go("transport_error", local=False) is not None:
            self.outbox.events.append(TransactionTimedOut(self, "transport"))
            self._terminate()

    def _on_timer(self, name: str, now: float) -> None:
        self._go("timer_" + name.lower(), local=True)
        self._terminate()  # J


def build_non_2xx_ack(request: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client INVITE transaction sends for a 3xx-6xx response (RFC 3261 §17.1.1.3)."""
    headers: list[tuple[str, str]] = [(name, value) for name, value in _route_headers(request)]
    to_value = response.headers.get("To")
    from_value = request.headers.get("From")
    if to_value is None or from_value is None:
        raise RemoteError("response without To or From")
    return SipRequest.new(
        "ACK",
        request.uri,
        via=str(request.top_via),
        from_=from_value,
        to=to_value,
        call_id=request.call_id,
        cseq=request.cseq[0],
        max_forwards=70,
        headers=headers,
    )


def _route_headers(request: SipRequest) -> Iterable[tuple[str, str]]:
    for value in request.headers.get_all("Route"):
        yield ("Route", value)


ClientTransactionT = Union[ClientInviteTransaction, ClientNonInviteTransaction]
ServerTransactionT = Union[ServerInviteTransaction, ServerNonInviteTransaction]


class TransactionLayer:
    """The live transactions, matching (§17.1.3, §17.2.3), merged-request detection, branches, timers."""

    def __init__(self, settings: TimerSettings | None = None) -> None:
        self.settings = settings or TimerSettings()
        self.outbox = Outbox()
        self.clients: dict[TransactionKey, ClientTransactionT] = {}
        self.servers: dict[TransactionKey, ServerTransactionT] = {}
        self._merge_index: dict[tuple[str, str, int, str], TransactionKey] = {}
        # §8.1.1.7: branches are unique over space and time; the prefix also marks our own requests so
        # that one looping back is recognised (§8.2.2.2 / §16.3 step 4 spirit).
        self.branch_prefix = f"{MAGIC_COOKIE}-mg{secrets.token_hex(4)}-"
        self._counter = 0

    def new_branch(self) -> str:
        """A fresh RFC 3261 branch (magic cookie, our prefix, a counter and randomness)."""
        self._counter += 1
        return f"{self.branch_prefix}{self._counter:x}{secrets.token_hex(4)}"

    def is_own_branch(self, branch: str | None) -> bool:
        """True when ``branch`` was generated by this layer."""
        return branch is not None and branch.startswith(self.branch_prefix)

    # -- matching -----------------------------------------------------------------------------------------

    def match_server(self, request: SipRequest) -> ServerTransactionT | None:
        """The server transaction a request belongs to (§17.2.3), or None for a new request."""
        return self.servers.get(server_key(request))

    def match_cancelled(self, cancel: SipRequest) -> ServerTransactionT | None:
        """The transaction a CANCEL targets (§9.2): same key except the method."""
        key = server_key(cancel)
        for method in ("INVITE",):
            tx = self.servers.get(TransactionKey(key.branch, key.sent_by, method))
            if tx is not None:
                return tx
        return None

    def match_client(self, response: SipResponse) -> ClientTransactionT | None:
        """The client transaction a response belongs to (§17.1.3), or None."""
        key = client_key(response)
        return self.clients.get(key) if key is not None else None

    def find_merged(self, request: SipRequest) -> ServerTransactionT | None:
        """A live server transaction that ``request`` would merge with (§8.2.2.2), or None.

        Only requests without a To tag are checked: same From tag, Call-ID and CSeq as a transaction that
        the request does not match.
        """
        if request.to_tag is not None or request.method == "ACK":
            return None
        index = (request.from_tag or "", request.call_id, request.cseq[0], request.cseq[1])
        key = self._merge_index.get(index)
        if key is None or key == server_key(request):
            return None
        return self.servers.get(key)

    # -- creation -----------------------------------------------------------------------------------------

    def create_server(
        self,
        request: SipRequest,
        peer: Address,
        transport: str,
        now: float,
        *,
        trying_headers: Sequence[tuple[str, str]] = (),
        send_trying: bool = True,
    ) -> ServerTransactionT:
        """Create the server transaction for a new request (not ACK); ``peer`` per §18.2.2."""
        tx: ServerTransactionT
        if request.method == "INVITE":
            tx = ServerInviteTransaction(
                request, peer, transport, self.settings, self.outbox, now, trying_headers=trying_headers,
                send_trying=send_trying,
            )
        else:
            tx = ServerNonInviteTransaction(request, peer, transport, self.settings, self.outbox, now)
        self.servers[tx.key] = tx
        try:
            if request.to_tag is None:
                index = (request.from_tag or "", request.call_id, request.cseq[0], request.cseq[1])
                self._merge_index.setdefault(index, tx.key)
        except RemoteError:
            pass  # without From/Call-ID/CSeq there is nothing to merge with; the TU answers 400
        return tx

    def create_client(
        self, request: SipRequest, destination: Address, transport: str, now: float
    ) -> ClientTransactionT:
        """Create (and start: the request is sent at once) a client transaction."""
        tx: ClientTransactionT
        if request.method == "INVITE":
            tx = ClientInviteTransaction(request, destination, transport, self.settings, self.outbox, now)
        else:
            tx = ClientNonInviteTransaction(request, destination, transport, self.settings, self.outbox, now)
        if tx.key in self.clients:
            raise LocalError(f"client transaction {tx.key} already exists")
        self.clients[tx.key] = tx
        return tx

    # -- timers and housekeeping --------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline over every transaction (a heap: O(log n))."""
        heap = self.outbox.schedule
        while heap:
            deadline, _, name, tx = heap[0]
            if tx.timers.get(name) == deadline:
                return deadline
            heapq.heappop(heap)  # disarmed or re-armed since: stale
        return None

    def handle_timer(self, now: float) -> None:
        """Fire due timers of every transaction, then forget the terminated ones."""
        heap = self.outbox.schedule
        while heap and heap[0][0] <= now:
            deadline, _, name, tx = heapq.heappop(heap)
            if tx.timers.get(name) == deadline:
                tx.handle_timer(now)
        self.collect()

    def collect(self) -> None:
        """Forget transactions that reached TERMINATED."""
        done = self.outbox.terminated
        self.outbox.terminated = []
        for tx in done:
            if isinstance(tx, ServerTransaction):
                if self.servers.get(tx.key) is tx:
                    del self.servers[tx.key]
                req = tx.request
                try:
                    index = (req.from_tag or "", req.call_id, req.cseq[0], req.cseq[1])
                except RemoteError:
                    continue
                if self._merge_index.get(index) == tx.key:
                    del self._merge_index[index]
            elif self.clients.get(tx.key) is tx:
                del self.clients[tx.key]
