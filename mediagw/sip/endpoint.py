"""The SIP user-agent core of the B2BUA (RFC 3261 §8, §12-§15), sans-I/O (the aioquic pattern).

Theory of operation
-------------------
``receive_data(data, source, transport, now, local)`` parses one message (the transport frames TCP), and
drives the :class:`~mediagw.sip.transaction.TransactionLayer`; what must go out is collected by
``datagrams_to_send()``, what the calls layer must learn by ``next_event()``, and the next deadline by
``get_timer()`` / ``handle_timer(now)``. The core never reads a clock or touches a socket. Commands
(``answer``, ``reject``, ``hangup``, ``invite`` ...) take ``now`` as a keyword argument.

Request processing (UAS core, RFC 3261 §8.2), in order, each step answering through the server transaction
so that retransmissions get the same answer:

1. parse; a malformed request gets 400 (505, 513) built from the parser's ``.partial`` when it has the
   headers a response needs, else it is dropped; a malformed response is dropped;
2. the top Via gets ``received`` (sent-by differs from the source, §18.2.1) and, when ``rport`` is present,
   ``rport=<port>`` plus ``received`` (RFC 3581 §4); responses go per §18.2.2 / RFC 3581;
3. ACK: a non-2xx ACK goes to its INVITE transaction, an ACK for our 2xx to the dialog;
   a retransmission is absorbed by its transaction (which resends the last response);
4. method (§8.2.1): one we do not know at all gets 501; a known extension method we do not offer
   (SUBSCRIBE, NOTIFY, PUBLISH, MESSAGE, REFER, UPDATE, PRACK) gets 405; both carry Allow;
5. mandatory headers and CSeq method (400), Request-URI scheme other than sip/sips/tel (416, §8.2.2.1);
6. Max-Forwards 0 on a dialog-creating request other than OPTIONS/REGISTER gets 483: the B2BUA would
   route it onwards (§16.3 step 3 applied to the B2BUA; OPTIONS may be answered, §11); requests addressed
   to us inside a dialog are the end of their path and are processed;
7. a request carrying one of our own branches in its Via looped back (482, §16.3 step 4 in spirit); a
   merged request (same From tag, Call-ID and CSeq as a live transaction, different branch) gets 482
   (§8.2.2.2);
8. Require with an option tag we do not support gets 420 with Unsupported (§8.2.2.3; not for ACK/CANCEL);
9. dispatch: CANCEL (§9.2), in-dialog requests (To tag, §12.2.2: 481 for an unknown dialog, 500 for an
   out-of-order CSeq), OPTIONS (§11.2), REGISTER (the registrar), INVITE (content check 415, drain mode 503
   with Retry-After, the admission policy, then :class:`IncomingCallReceived`). While draining, OPTIONS
   pings get 503 too, so that a load balancer (Kamailio dispatcher probing) takes the node out.

A processing failure that is our own bug (or the admission policy's) is logged with its traceback and
answered 500 so that the transaction still ends; nothing a peer sends raises out of ``receive_data``.

2xx responses to INVITE are retransmitted by this core (RFC 3261 §13.3.1.4 as amended by RFC 6026): at T1,
doubling up to T2, until the ACK arrives; 64*T1 without an ACK ends the session with a BYE and
``CallTerminated(reason="ack-timeout")``. The ACK for a 2xx we receive is sent by this core too
(§13.2.2.4), and again for each retransmitted 2xx.

See :mod:`mediagw.sip.endpoint_events` for the event contract.
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence

from mediagw.errors import LocalError, RemoteError, SipProtocolError
from mediagw.sip.dialog import Dialog
from mediagw.sip.endpoint_core import (
    HANGUP_UNANSWERED_STATUS,
    KNOWN_METHODS,
    SDP,
    Leg,
    LegState,
    Retransmission,
    advertised_address,
    new_tag,
    reason_phrase,
    stamp_via,
)
from mediagw.sip.endpoint_events import (
    Address,
    AdmissionPolicy,
    CallCancelled,
    CallEstablished,
    CallHandle,
    CallTerminated,
    EndpointConfig,
    Event,
    IncomingCallReceived,
    InfoReceived,
    OutgoingCallAnswered,
    OutgoingCallFailed,
    OutgoingCallProgressed,
    Registrar,
    ReinviteAnswered,
    ReinviteReceived,
)
from mediagw.sip.endpoint_uac import UacEndpoint
from mediagw.sip.message import SipRequest, SipResponse, check_request, parse_message
from mediagw.sip.transaction import (
    ClientInviteState,
    ClientNonInviteState,
    ServerInviteState,
    ServerInviteTransaction,
    ServerTransaction,
    TimerSettings,
    response_destination,
)

__all__ = [
    "SipEndpoint",
    "EndpointConfig",
    "AdmissionPolicy",
    "Registrar",
    "CallHandle",
    "Event",
    "IncomingCallReceived",
    "CallCancelled",
    "CallEstablished",
    "CallTerminated",
    "ReinviteReceived",
    "InfoReceived",
    "OutgoingCallProgressed",
    "OutgoingCallAnswered",
    "OutgoingCallFailed",
    "ReinviteAnswered",
    "LegState",
    "TimerSettings",
    "KNOWN_METHODS",
]

logger = logging.getLogger(__name__)


class SipEndpoint(UacEndpoint):
    """The UAS/UAC core of the B2BUA: bytes and ``now`` in; datagrams, events and a timer out.

    ``SipEndpoint(config, registrar, policy)``: ``registrar`` answers REGISTER (None: REGISTER gets 405);
    ``policy`` admits or rejects each new INVITE (None: every INVITE is admitted).
    """

    def receive_data(self, data: bytes, source: Address, transport: str, now: float, local: Address) -> None:
        """Process one datagram or one framed stream message from ``source``."""
        transport = transport.lower()
        self._learned_local[transport] = local
        try:
            self._receive(data, source, transport, now, local)
            self._process_transaction_events(now)
        except RemoteError as exc:
            logger.warning("dropped message from %s:%s: %s", source[0], source[1], exc)
        except Exception:  # noqa: BLE001 - last resort: a peer's message must never raise out of the core
            logger.exception("SIP core failed on a message from %s:%s; dropped", source[0], source[1])

    def datagrams_to_send(self) -> list[tuple[bytes, Address, str]]:
        """Everything queued for sending since the last call: (data, destination, transport)."""
        out = self.transactions.outbox.messages
        self.transactions.outbox.messages = []
        return out

    def get_timer(self) -> float | None:
        """The next deadline (monotonic seconds), or None when nothing is pending."""
        deadlines: list[float] = []
        layer = self.transactions.get_timer()
        if layer is not None:
            deadlines.append(layer)
        for leg in self._timed_legs():
            if leg.retransmission is not None:
                r = leg.retransmission
                deadlines.append(min(r.next_at, r.deadline))
            if leg.cancel_deadline is not None:
                deadlines.append(leg.cancel_deadline)
        return min(deadlines) if deadlines else None

    def _timed_legs(self) -> list[Leg]:
        """Legs with a 2xx retransmission or a CANCEL guard armed (the set is pruned as they end)."""
        out: list[Leg] = []
        for handle in list(self._timed):
            leg = self._legs.get(handle)
            if leg is None or (leg.retransmission is None and leg.cancel_deadline is None):
                self._timed.discard(handle)
            else:
                out.append(leg)
        return out

    def handle_timer(self, now: float) -> None:
        """Fire every timer that is due at ``now``."""
        self.transactions.handle_timer(now)
        for leg in self._timed_legs():
            r = leg.retransmission
            if r is not None:
                if now >= r.deadline:
                    self._ack_timeout(leg, now)
                elif now >= r.next_at:
                    # §13.3.1.4 2xx retransmission, through the transaction while it is ACCEPTED (RFC 6026)
                    if r.transaction.state is ServerInviteState.ACCEPTED:
                        r.transaction.send_response(r.response, now)
                    else:
                        self._queue(r.data, r.destination, r.transport)
                    r.interval = min(2 * r.interval, self.config.timers.t2)
                    r.next_at = now + r.interval
            if leg.cancel_deadline is not None and now >= leg.cancel_deadline:
                leg.cancel_deadline = None
                if leg.client_tx is not None:
                    leg.client_tx.cancel_timeout(now)  # §9.1: give the INVITE up 64*T1 after CANCEL
        self._process_transaction_events(now)

    def next_event(self) -> Event | None:
        """The oldest pending event, or None."""
        return self._events.popleft() if self._events else None

    def report_transport_error(self, destination: Address, transport: str, now: float) -> None:
        """The transport could not reach ``destination`` (TCP connect failed, ICMP unreachable ...).

        Client transactions still waiting for a response there fail at once instead of at Timer B/F
        (RFC 3261 §17.1.4; an INVITE then ends with ``OutgoingCallFailed(status=503)``, §8.1.3.1).
        """
        transport = transport.lower()
        for tx in list(self.transactions.clients.values()):
            if tx.peer == destination and tx.transport == transport:
                tx.transport_error(now)
        self._process_transaction_events(now)

    def has_pending_transactions(self) -> bool:
        """True while a request of ours waits for its final response or a 2xx waits for its ACK."""
        for tx in self.transactions.clients.values():
            if tx.state in (ClientInviteState.CALLING, ClientInviteState.PROCEEDING,
                            ClientNonInviteState.TRYING, ClientNonInviteState.PROCEEDING):
                return True
        return any(leg.retransmission is not None for leg in self._legs.values())

    def start_draining(self, retry_after: int = 60) -> None:
        """Refuse new INVITEs (and OPTIONS pings) with 503 and Retry-After (RFC 3261 §21.5.4)."""
        self.draining = True
        self.retry_after = retry_after

    def stop_draining(self) -> None:
        """Accept new INVITEs again."""
        self.draining = False
        self.retry_after = None

    def call_state(self, handle: CallHandle) -> LegState:
        """The state of a leg (TERMINATED for one that ended); LocalError for a handle never issued."""
        self._check_handle(handle)
        leg = self._legs.get(handle)
        return leg.state if leg is not None else LegState.TERMINATED

    def dialog(self, handle: CallHandle) -> Dialog | None:
        """The dialog of a live leg (early or confirmed), if any."""
        leg = self._legs.get(handle)
        return leg.dialog if leg is not None else None

    def send_provisional(
        self,
        handle: CallHandle,
        status: int = 180,
        body: bytes | None = None,
        *,
        now: float,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Send 180/183 (any 101-199) on an unanswered incoming call; creates the early dialog (§12.1.1)."""
        if not 100 < status < 200:
            raise LocalError(f"send_provisional needs a status 101-199, not {status}")
        leg = self._live_leg(handle)
        if leg is None or leg.state is not LegState.INCOMING:
            self._stale(handle, "send_provisional", leg)
            return
        assert leg.server_tx is not None
        response = self._build(
            leg.invite, status, to_tag=leg.local_tag, headers=self._dialog_headers(leg, headers),
            body=body or b"", content_type=SDP if body else None,
        )
        if leg.dialog is None:
            leg.dialog = Dialog.create_uas(leg.invite, response, transport=leg.transport)
            self._dialogs[leg.dialog.id] = handle
        leg.server_tx.send_response(response, now)

    def answer(
        self, handle: CallHandle, sdp: bytes, *, now: float, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Answer an incoming call with 200 OK (Contact = us, application/sdp); retransmitted until ACK."""
        leg = self._live_leg(handle)
        if leg is None or leg.state is not LegState.INCOMING:
            self._stale(handle, "answer", leg)
            return
        assert leg.server_tx is not None
        response = self._build(
            leg.invite, 200, to_tag=leg.local_tag, headers=self._dialog_headers(leg, headers),
            body=sdp, content_type=SDP,
        )
        dialog = Dialog.create_uas(leg.invite, response, transport=leg.transport)
        if leg.dialog is not None:
            dialog.remote_cseq = leg.dialog.remote_cseq
        leg.dialog = dialog
        self._dialogs[dialog.id] = handle
        leg.server_tx.send_response(response, now)
        leg.state = LegState.ANSWERED
        self._start_retransmission(leg, leg.server_tx, response, initial=True, now=now)

    def reject(
        self,
        handle: CallHandle,
        status: int,
        reason: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        *,
        now: float,
    ) -> None:
        """Refuse an unanswered incoming call with a 3xx-6xx final response."""
        if not 300 <= status < 700:
            raise LocalError(f"reject needs a status 300-699, not {status}")
        leg = self._live_leg(handle)
        if leg is None or leg.state is not LegState.INCOMING:
            self._stale(handle, "reject", leg)
            return
        assert leg.server_tx is not None
        leg.server_tx.send_response(
            self._build(leg.invite, status, reason, to_tag=leg.local_tag, headers=headers), now
        )
        self._finish(leg)

    def answer_reinvite(
        self,
        handle: CallHandle,
        status: int,
        sdp: bytes | None = None,
        *,
        now: float,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Answer the pending re-INVITE: 2xx (with our SDP, retransmitted until ACK) or 3xx-6xx.

        A non-2xx leaves the session as it was (RFC 3261 §14.2). Ignored when the re-INVITE was cancelled
        or the leg ended meanwhile.
        """
        if not 200 <= status < 700:
            raise LocalError(f"answer_reinvite needs a final status, not {status}")
        if 200 <= status < 300 and sdp is None:
            raise LocalError("a 2xx to a re-INVITE carries our SDP answer")
        leg = self._live_leg(handle)
        if leg is None or leg.reinvite_tx is None or leg.reinvite_tx.final_sent:
            self._stale(handle, "answer_reinvite", leg)
            return
        tx = leg.reinvite_tx
        leg.reinvite_tx = None
        if status >= 300:
            tx.send_response(self._build(tx.request, status, headers=headers), now)
            return
        assert sdp is not None and leg.dialog is not None
        response = self._build(
            tx.request, status, headers=self._dialog_headers(leg, headers), body=sdp, content_type=SDP
        )
        leg.dialog.refresh_target(tx.request)  # RFC 6141 §3.3: the target refresh takes effect on 2xx
        tx.send_response(response, now)
        self._start_retransmission(leg, tx, response, initial=False, now=now)

    def hangup(self, handle: CallHandle, *, now: float) -> None:
        """End a leg whatever its state: BYE (confirmed), CANCEL (our pending INVITE), 480 (unanswered
        incoming), or a BYE once the ACK arrives / times out (answered, §15). Ignored for ended legs."""
        leg = self._live_leg(handle)
        if leg is None:
            self._stale(handle, "hangup", leg)
            return
        if leg.state is LegState.INCOMING:
            self.reject(handle, HANGUP_UNANSWERED_STATUS, now=now)
        elif leg.state is LegState.ANSWERED:
            leg.bye_pending = True  # §15: the callee MUST NOT send BYE before the ACK (or its timeout)
        elif leg.state is LegState.CONFIRMED:
            self.send_bye(handle, now=now)
        elif leg.state is LegState.CALLING:
            leg.state = LegState.CANCELLING
            self._maybe_cancel(leg, now)

    def send_bye(self, handle: CallHandle, *, now: float) -> None:
        """Send BYE on a confirmed dialog; ``CallTerminated`` follows when it completes (or times out)."""
        leg = self._live_leg(handle)
        if leg is None or leg.state is not LegState.CONFIRMED:
            if leg is not None and leg.state in (LegState.INCOMING, LegState.CALLING, LegState.ANSWERED):
                raise LocalError(f"call {handle}: BYE needs a confirmed dialog (state {leg.state.name})")
            self._stale(handle, "send_bye", leg)
            return
        self._send_bye(leg, now)

    def send_info(
        self,
        handle: CallHandle,
        body: bytes,
        content_type: str,
        *,
        now: float,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Send INFO on a confirmed dialog (RFC 6086); a 481/408 or timeout ends the call (§12.2.1.2)."""
        leg = self._live_leg(handle)
        if leg is None or leg.state is not LegState.CONFIRMED or leg.dialog is None:
            self._stale(handle, "send_info", leg)
            return
        self._in_dialog_request(leg, "INFO", now, body=body, content_type=content_type, headers=headers)

    def _receive(self, data: bytes, source: Address, transport: str, now: float, local: Address) -> None:
        if not data.strip(b"\r\n\t \x00"):
            return  # keep-alive (RFC 5626 §4.4.1 CRLF on a datagram): nothing to answer
        try:
            message = parse_message(
                data, datagram=transport == "udp", max_size=self.config.max_message_size
            )
        except SipProtocolError as exc:
            self._reply_malformed(exc, source, transport)
            return
        if isinstance(message, SipResponse):
            self._receive_response(message, now)
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s from %s:%s/%s Call-ID %s", message.method, source[0], source[1], transport,
                         message.headers.get("Call-ID"))
        stamp_via(message, source)
        try:
            # What every transaction, dialog and response needs (§8.1.1); the rest is checked in order.
            _ = (message.call_id, message.cseq, message.from_, message.to)
        except SipProtocolError as exc:
            if message.method != "ACK":
                self._reply_stateless(message, 400, reason_phrase(exc), source, transport)
            logger.warning("%s from %s:%s refused: %s", message.method, source[0], source[1], exc)
            return
        if message.method == "ACK":
            self._receive_ack(message, now)
            return
        existing = self.transactions.match_server(message)
        if existing is not None:
            existing.receive_request(message, now)  # a retransmission: absorbed, last response resent
            return
        try:
            tx = self.transactions.create_server(
                message, response_destination(message, source, transport), transport, now,
                trying_headers=self._server_header(), send_trying=False,
            )
        except SipProtocolError as exc:
            self._reply_stateless(message, exc.status_code, reason_phrase(exc), source, transport)
            return
        try:
            self._process_request(message, tx, source, transport, now, local)
        except RemoteError as exc:
            if not tx.final_sent:
                tx.send_response(self._build(message, exc.status_code, reason_phrase(exc)), now)
            logger.warning("%s from %s:%s refused: %s (Call-ID %s)", message.method, source[0], source[1],
                           exc, message.headers.get("Call-ID"))
        except Exception:  # noqa: BLE001 - our bug (or the policy's): answer 500 so the transaction ends
            logger.exception("failed to process %s from %s:%s (Call-ID %s)", message.method, source[0],
                             source[1], message.headers.get("Call-ID"))
            if not tx.final_sent:
                tx.send_response(self._build(message, 500), now)

    def _reply_malformed(self, exc: SipProtocolError, source: Address, transport: str) -> None:
        partial = getattr(exc, "partial", None)
        call_id = partial.headers.get("Call-ID") if isinstance(partial, SipRequest) else None
        logger.warning("malformed message from %s:%s: %s (Call-ID %s)", source[0], source[1], exc, call_id)
        if isinstance(partial, SipRequest) and partial.method != "ACK":
            try:
                stamp_via(partial, source)
            except RemoteError:
                pass
            self._reply_stateless(partial, exc.status_code, reason_phrase(exc), source, transport)

    def _reply_stateless(
        self, request: SipRequest, status: int, reason: str, source: Address, transport: str
    ) -> None:
        """Answer without a transaction (the request cannot be matched to one)."""
        try:
            response = self._build(request, status, reason)
            destination = response_destination(request, source, transport)
        except RemoteError:
            return
        self._queue(response.serialize(), destination, transport)

    def _process_request(
        self, request: SipRequest, tx: ServerTransaction, source: Address, transport: str, now: float,
        local: Address,
    ) -> None:
        method = request.method
        allow_header = ("Allow", ", ".join(self.allow))
        if method not in self.allow:
            status = 405 if method in KNOWN_METHODS else 501  # §8.2.1, §21.5.2
            tx.send_response(self._build(request, status, headers=(allow_header,)), now)
            return
        check_request(request)  # 400 (mandatory headers, CSeq method) / 416 (URI scheme)
        in_dialog = request.to_tag is not None
        if (
            request.max_forwards == 0 and not in_dialog and method not in ("OPTIONS", "REGISTER", "CANCEL")
        ):
            tx.send_response(self._build(request, 483), now)  # §16.3 step 3 (we route INVITEs onwards)
            return
        if any(self.transactions.is_own_branch(via.branch) for via in request.vias):
            tx.send_response(self._build(request, 482), now)  # our own request came back
            return
        if self.transactions.find_merged(request) is not None:
            tx.send_response(self._build(request, 482), now)  # §8.2.2.2 merged request
            return
        if method != "CANCEL":
            unsupported = [
                tag for tag in request.headers.get_all("Require") if tag.lower() not in self._supported
            ]
            if unsupported:  # §8.2.2.3
                tx.send_response(
                    self._build(request, 420, headers=(("Unsupported", ", ".join(unsupported)),)), now
                )
                return
        if method == "CANCEL":
            self._receive_cancel(request, tx, now)
        elif method == "REGISTER":
            self._receive_register(request, tx, source, transport, now)
        elif in_dialog:
            self._receive_in_dialog(request, tx, now)
        elif method == "OPTIONS":
            self._receive_options(request, tx, now)
        elif method == "INVITE":
            assert isinstance(tx, ServerInviteTransaction)
            self._receive_invite(request, tx, source, transport, now, local)
        else:
            tx.send_response(self._build(request, 481), now)  # BYE/INFO outside a dialog, §15.1.2

    def _receive_options(self, request: SipRequest, tx: ServerTransaction, now: float) -> None:
        """§11.2: 200 with Allow, Accept, Supported; 503 while draining (load balancers take us out)."""
        if self.draining:
            tx.send_response(self._build(request, 503, headers=self._retry_after()), now)
            return
        headers = [
            ("Allow", ", ".join(self.allow)),
            ("Accept", SDP),
            ("Supported", ", ".join(self.config.supported)),
        ]
        tx.send_response(self._build(request, 200, headers=headers), now)

    def _receive_register(
        self, request: SipRequest, tx: ServerTransaction, source: Address, transport: str, now: float
    ) -> None:
        assert self.registrar is not None
        response = self.registrar.handle_register(request, source, transport, now)
        self._finish_response(response)
        tx.send_response(response, now)

    def _receive_invite(
        self, request: SipRequest, tx: ServerInviteTransaction, source: Address, transport: str, now: float,
        local: Address,
    ) -> None:
        if not self._content_acceptable(request, tx, now):
            return
        if not request.contacts or request.is_wildcard_contact:
            raise SipProtocolError("Missing Contact")  # §8.1.1.8: an INVITE must carry one Contact
        if self.draining:
            tx.send_response(self._build(request, 503, headers=self._retry_after()), now)
            return
        if self.policy is not None:
            verdict = self.policy(request, source, transport, now)
            if verdict is not None:
                self._finish_response(verdict)
                tx.send_response(verdict, now)
                return
        registered = (
            self.registrar.is_registered_source(source, now) if self.registrar is not None else None
        )
        handle = self._new_handle()
        leg = Leg(handle, False, LegState.INCOMING, request, source, transport,
                  advertised_address(local, request), new_tag(), server_tx=tx)
        tx.call_handle = handle
        tx.purpose = "invite"
        tx.send_trying(now)  # §17.2.1: every check passed; the TU may take its time now
        self._legs[handle] = leg
        self._events.append(IncomingCallReceived(handle, request, source, transport, registered))

    def _content_acceptable(self, request: SipRequest, tx: ServerTransaction, now: float) -> bool:
        """§8.2.3: a body we cannot read gets 415 with Accept / Accept-Encoding."""
        if not request.body:
            return True
        encoding = request.headers.get("Content-Encoding")
        if encoding and encoding.strip().lower() != "identity":
            tx.send_response(self._build(request, 415, headers=(("Accept-Encoding", "identity"),)), now)
            return False
        content_type = request.content_type
        if content_type is not None and content_type.lower() != SDP:
            tx.send_response(self._build(request, 415, headers=(("Accept", SDP),)), now)
            return False
        return True

    def _receive_cancel(self, request: SipRequest, tx: ServerTransaction, now: float) -> None:
        """§9.2: 481 when nothing matches; else 200, and 487 to the INVITE when still unanswered."""
        target = self.transactions.match_cancelled(request)
        leg = self._legs.get(target.call_handle) if target is not None and target.call_handle else None
        if target is None:
            tx.send_response(self._build(request, 481), now)
            return
        tag = leg.local_tag if leg is not None and target is leg.server_tx else None
        tx.send_response(self._build(request, 200, to_tag=tag), now)
        if target.final_sent:
            return  # too late: the final response stands (§9.2)
        assert isinstance(target, ServerInviteTransaction)
        target.send_response(self._build(target.request, 487, to_tag=tag), now)
        if leg is None:
            return
        if target is leg.server_tx and leg.state is LegState.INCOMING:
            self._finish(leg)
            self._events.append(CallCancelled(leg.handle))
        elif target is leg.reinvite_tx:
            leg.reinvite_tx = None  # the session stays as it was (§14.2)

    def _receive_in_dialog(self, request: SipRequest, tx: ServerTransaction, now: float) -> None:
        """§12.2.2: find the dialog (481), check the CSeq (500), then BYE / INFO / re-INVITE / OPTIONS."""
        leg = self._leg_for_request(request)
        if leg is None or leg.dialog is None or leg.state is LegState.TERMINATED:
            tx.send_response(self._build(request, 481), now)
            return
        dialog = leg.dialog
        if dialog.check_request(request) is not None:
            tx.send_response(self._build(request, 500, "Out of Order CSeq"), now)
            return
        method = request.method
        if method == "BYE":
            tx.send_response(self._build(request, 200), now)
            self._receive_bye(leg, now)
        elif method == "INFO":
            tx.send_response(self._build(request, 200), now)
            self._events.append(InfoReceived(leg.handle, request))
        elif method == "OPTIONS":
            self._receive_options(request, tx, now)
        elif method == "INVITE":
            assert isinstance(tx, ServerInviteTransaction)
            self._receive_reinvite(leg, request, tx, now)
        else:
            tx.send_response(self._build(request, 405, headers=(("Allow", ", ".join(self.allow)),)), now)

    def _receive_bye(self, leg: Leg, now: float) -> None:
        if leg.reinvite_tx is not None and not leg.reinvite_tx.final_sent:
            leg.reinvite_tx.send_response(self._build(leg.reinvite_tx.request, 487), now)  # §15.1.2
        leg.reinvite_tx = None
        if leg.state is LegState.INCOMING:
            assert leg.server_tx is not None
            leg.server_tx.send_response(self._build(leg.invite, 487, to_tag=leg.local_tag), now)
            self._finish(leg)
            self._events.append(CallCancelled(leg.handle))
            return
        if leg.state in (LegState.CALLING, LegState.CANCELLING):
            return  # a BYE on an early dialog of our outgoing INVITE: the INVITE's outcome decides
        self._report_terminated(leg, "remote-bye")
        self._finish(leg)

    def _receive_reinvite(
        self, leg: Leg, request: SipRequest, tx: ServerInviteTransaction, now: float
    ) -> None:
        if leg.outgoing_reinvite is not None or leg.state in (LegState.CALLING, LegState.CANCELLING):
            tx.send_response(self._build(request, 491), now)  # §14.2: our INVITE is in progress (glare)
            return
        if leg.reinvite_tx is not None or leg.state in (LegState.INCOMING, LegState.ANSWERED):
            # §14.2: their earlier INVITE on this dialog has no final response / ACK yet
            retry = ("Retry-After", str(secrets.randbelow(11)))
            tx.send_response(self._build(request, 500, headers=(retry,)), now)
            return
        if leg.state is not LegState.CONFIRMED:
            tx.send_response(self._build(request, 481), now)
            return
        if not self._content_acceptable(request, tx, now):
            return
        tx.call_handle = leg.handle
        tx.purpose = "reinvite"
        tx.send_trying(now)
        leg.reinvite_tx = tx
        self._events.append(ReinviteReceived(leg.handle, request))

    def _receive_ack(self, request: SipRequest, now: float) -> None:
        tx = self.transactions.match_server(request)
        if isinstance(tx, ServerInviteTransaction) and tx.state is not ServerInviteState.ACCEPTED:
            tx.receive_request(request, now)  # ACK for a non-2xx final: the transaction's business
            return
        leg = self._leg_for_request(request)
        if leg is None:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("ACK for no dialog dropped, Call-ID %s", request.headers.get("Call-ID"))
            return
        r = leg.retransmission
        if r is None or request.cseq[0] != r.cseq:
            return  # a retransmitted ACK, or one for an older INVITE
        leg.retransmission = None
        if not r.initial:
            return
        leg.state = LegState.CONFIRMED
        self._events.append(CallEstablished(leg.handle, request))
        if leg.bye_pending:
            self._send_bye(leg, now)

    def _start_retransmission(
        self, leg: Leg, tx: ServerInviteTransaction, response: SipResponse, *, initial: bool, now: float
    ) -> None:
        t1 = self.config.timers.t1
        self._timed.add(leg.handle)
        leg.retransmission = Retransmission(
            response=response, transaction=tx, data=response.serialize(), destination=tx.peer, transport=tx.transport,
            cseq=tx.request.cseq[0], initial=initial, interval=t1, next_at=now + t1,
            deadline=now + self.config.timers.timeout,
        )

    def _ack_timeout(self, leg: Leg, now: float) -> None:
        """§13.3.1.4: 64*T1 without ACK: the dialog is confirmed but the session ends with a BYE."""
        leg.retransmission = None
        logger.warning("call %s: no ACK for our 2xx within 64*T1, sending BYE (Call-ID %s)",
                       leg.handle, leg.invite.headers.get("Call-ID"))
        self._report_terminated(leg, "ack-timeout")
        leg.state = LegState.CONFIRMED
        self._send_bye(leg, now)
