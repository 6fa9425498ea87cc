"""The UAC half of the SIP endpoint: outgoing INVITEs, re-INVITEs, CANCEL, and what comes back.

RFC 3261 §13.2 (INVITE client), §9.1 (CANCEL: only after a provisional response; the INVITE is given up
64*T1 after the CANCEL when no final response comes), §13.2.2.4 (we send the ACK for every 2xx, again for
each retransmitted 2xx; a 2xx from a second fork is ACKed and ended with BYE), §12.2.1.2 (481/408 or no
answer to an in-dialog request ends the dialog). Responses reach this code as transaction events.
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence

from mediagw.errors import LocalError, RemoteError, SipProtocolError
from mediagw.sip.dialog import Dialog, DialogId
from mediagw.sip.endpoint_core import SDP, EndpointCore, Leg, LegState, contact_value, new_tag
from mediagw.sip.endpoint_events import (
    Address,
    CallHandle,
    OutgoingCallAnswered,
    OutgoingCallFailed,
    OutgoingCallProgressed,
    ReinviteAnswered,
)
from mediagw.sip.message import SipRequest, SipResponse
from mediagw.sip.transaction import (
    ClientInviteState,
    ClientInviteTransaction,
    ResponseReceived,
    Transaction,
    TransactionTimedOut,
)

logger = logging.getLogger("mediagw.sip.endpoint")


class UacEndpoint(EndpointCore):
    """Outgoing calls and the handling of responses (the UAC core)."""

    def invite(
        self,
        target_uri: str,
        destination: Address,
        transport: str,
        *,
        from_uri: str,
        to_uri: str,
        sdp: bytes | None,
        now: float,
        headers: Sequence[tuple[str, str]] = (),
    ) -> CallHandle:
        """Start an outgoing call: INVITE ``target_uri`` sent to ``destination`` over ``transport``.

        ``from_uri`` / ``to_uri`` are the From and To values (name-addr or URI) without tags.
        """
        transport = transport.lower()
        local = self._local_address(transport, None)
        handle = self._new_handle()
        local_tag = new_tag()
        from_value = from_uri if "<" in from_uri else f"<{from_uri}>"
        to_value = to_uri if "<" in to_uri else f"<{to_uri}>"
        extra: list[tuple[str, str]] = [("Allow", ", ".join(self.allow))]
        if self.config.supported:
            extra.append(("Supported", ", ".join(self.config.supported)))
        if self.config.user_agent:
            extra.append(("User-Agent", self.config.user_agent))
        request = SipRequest.new(
            "INVITE",
            target_uri,
            via=self._via(transport, local),
            from_=f"{from_value};tag={local_tag}",
            to=to_value,
            call_id=f"{secrets.token_hex(12)}@mediagw",
            cseq=1,
            contact=contact_value(self.config.contact_user, local, transport),
            headers=(*extra, *headers),
            body=sdp or b"",
            content_type=SDP if sdp else None,
        )
        leg = Leg(handle, True, LegState.CALLING, request, destination, transport, local, local_tag)
        tx = self.transactions.create_client(request, destination, transport, now)
        assert isinstance(tx, ClientInviteTransaction)
        tx.call_handle = handle
        tx.purpose = "invite"
        leg.client_tx = tx
        self._legs[handle] = leg
        return handle

    def reinvite(
        self, handle: CallHandle, sdp: bytes, *, now: float, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Send a re-INVITE (hold/resume, new offer) on a confirmed dialog; ``ReinviteAnswered`` follows."""
        leg = self._live_leg(handle)
        if leg is None or leg.state is not LegState.CONFIRMED or leg.dialog is None:
            self._stale(handle, "reinvite", leg)
            return
        if leg.outgoing_reinvite is not None or leg.reinvite_tx is not None:
            raise LocalError(f"call {handle}: an INVITE is already in progress on this dialog (§14.1)")
        tx = self._in_dialog_request(leg, "INVITE", now, body=sdp, content_type=SDP, headers=headers)
        assert isinstance(tx, ClientInviteTransaction)
        leg.outgoing_reinvite = tx

    def _maybe_cancel(self, leg: Leg, now: float) -> None:
        """Send CANCEL once a provisional response came (§9.1: not before)."""
        tx = leg.client_tx
        if tx is None or leg.cancel_sent or tx.state is not ClientInviteState.PROCEEDING:
            return
        leg.cancel_sent = True
        invite = leg.invite
        headers = [("Route", value) for value in invite.headers.get_all("Route")]
        cancel = SipRequest.new(
            "CANCEL", invite.uri, via=str(invite.top_via), from_=invite.headers.get("From") or "",
            to=invite.headers.get("To") or "", call_id=invite.call_id, cseq=invite.cseq[0],
            headers=headers,
        )
        cancel_tx = self.transactions.create_client(cancel, tx.peer, tx.transport, now)
        cancel_tx.call_handle = leg.handle
        cancel_tx.purpose = "cancel"
        leg.cancel_deadline = now + self.config.timers.timeout
        self._timed.add(leg.handle)

    def _ack_and_bye(
        self, invite: SipRequest, response: SipResponse, destination: Address, transport: str,
        local: Address | None, now: float,
    ) -> None:
        """ACK a 2xx nobody wants and end that dialog with BYE at once (§13.2.2.4, §15)."""
        try:
            dialog = Dialog.create_uac(invite, response, transport=transport)
        except SipProtocolError:
            return
        local = self._local_address(transport, local)
        ack = dialog.create_request("ACK", via=self._via(transport, local), cseq=invite.cseq[0])
        self._queue(ack.serialize(), destination, transport)
        bye = dialog.create_request("BYE", via=self._via(transport, local))
        tx = self.transactions.create_client(bye, destination, transport, now)
        tx.purpose = "stray-bye"

    def _receive_response(self, response: SipResponse, now: float) -> None:
        if len(response.vias) != 1:
            # §18.1.2: a response with more than one Via was not meant for this element
            logger.warning("response with %d Via values dropped (Call-ID %s)", len(response.vias),
                           response.headers.get("Call-ID"))
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%d %s response, Call-ID %s", response.status_code, response.reason,
                         response.headers.get("Call-ID"))
        try:
            tx = self.transactions.match_client(response)
        except SipProtocolError as exc:
            logger.warning("malformed response dropped: %s", exc)
            return
        if tx is not None:
            tx.receive_response(response, now)
            return
        if response.cseq[1] == "INVITE" and 200 <= response.status_code < 300:
            # A 2xx retransmitted after the INVITE transaction ended (RFC 6026 Timer M): ACK it again.
            leg = self._dialog_leg(DialogId(response.call_id, response.from_tag or "", response.to_tag or ""))
            if leg is not None and leg.ack_data is not None:
                self._queue(leg.ack_data, leg.peer, leg.transport)
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("stray %d response dropped, Call-ID %s", response.status_code, response.call_id)

    def _process_transaction_events(self, now: float) -> None:
        events = self.transactions.outbox.events
        while events:
            event = events.popleft()
            try:
                if isinstance(event, ResponseReceived):
                    self._on_response(event.transaction, event.response, now)
                elif isinstance(event, TransactionTimedOut):
                    self._on_timeout(event.transaction, event.timer, now)
            except RemoteError as exc:
                logger.warning("response dropped: %s", exc)
        self.transactions.collect()

    def _on_response(self, tx: Transaction, response: SipResponse, now: float) -> None:
        leg = self._legs.get(tx.call_handle) if tx.call_handle is not None else None
        if leg is None:
            if tx.purpose == "invite" and 200 <= response.status_code < 300:
                # nobody wants this call anymore
                self._ack_and_bye(tx.request, response, tx.peer, tx.transport, None, now)
            return
        status = response.status_code
        if tx.purpose == "invite":
            self._on_invite_response(leg, response, now)
        elif tx.purpose == "reinvite":
            if status < 200:
                return
            if leg.outgoing_reinvite is not tx:
                # a retransmitted 2xx (our ACK was lost): ACK it again, the TU already knows (§13.2.2.4)
                if status < 300 and leg.reinvite_ack is not None:
                    self._queue(leg.reinvite_ack, *self._in_dialog_destination(leg))
                return
            leg.outgoing_reinvite = None
            if status < 300 and leg.dialog is not None:
                leg.dialog.refresh_target(response)  # §12.2.1.2 target refresh on 2xx
                ack = leg.dialog.create_request(
                    "ACK", via=self._via(leg.transport, leg.local), cseq=tx.request.cseq[0]
                )
                leg.reinvite_ack = ack.serialize()
                self._queue(leg.reinvite_ack, *self._in_dialog_destination(leg))
            self._events.append(ReinviteAnswered(leg.handle, status, response))
            if status in (408, 481):
                self._dialog_gone(leg, now, status)
        elif tx.purpose == "bye":
            if status >= 200:
                self._report_terminated(leg, "local-bye")
                self._finish(leg)
        elif tx.purpose == "info":
            if status in (408, 481):
                self._dialog_gone(leg, now, status)

    def _on_invite_response(self, leg: Leg, response: SipResponse, now: float) -> None:
        status = response.status_code
        to_tag = response.to_tag
        assert leg.client_tx is not None
        if status < 200:
            if to_tag is not None and to_tag not in leg.early and leg.dialog is None:
                try:
                    early = Dialog.create_uac(leg.invite, response, transport=leg.transport)
                except SipProtocolError:
                    early = None
                if early is not None:
                    leg.early[to_tag] = early
                    self._dialogs[early.id] = leg.handle
            if leg.state is LegState.CANCELLING:
                self._maybe_cancel(leg, now)
            elif status > 100:
                self._events.append(OutgoingCallProgressed(leg.handle, status, response))
            return
        if status >= 300:
            self._finish(leg)
            self._events.append(OutgoingCallFailed(leg.handle, status, response))
            return
        if leg.dialog is not None:
            if to_tag == leg.dialog.remote_tag:
                if leg.ack_data is not None:
                    self._queue(leg.ack_data, *self._in_dialog_destination(leg))  # retransmitted 2xx
            else:
                # §13.2.2.4: a second fork answered
                self._ack_and_bye(leg.invite, response, leg.peer, leg.transport, leg.local, now)
            return
        early = leg.early.pop(to_tag or "", None)
        if early is not None:
            early.confirm(response)
            dialog = early
        else:
            try:
                dialog = Dialog.create_uac(leg.invite, response, transport=leg.transport)
            except SipProtocolError as exc:
                # A 2xx we cannot build a dialog from (no Contact, no To tag): nothing to ACK towards.
                logger.warning("call %s: unusable 2xx (%s), giving the call up (Call-ID %s)",
                               leg.handle, exc, response.headers.get("Call-ID"))
                self._finish(leg)
                self._events.append(OutgoingCallFailed(leg.handle, 502, response))
                return
        for other in leg.early.values():
            self._dialogs.pop(other.id, None)
        leg.early.clear()
        leg.dialog = dialog
        self._dialogs[dialog.id] = leg.handle
        ack = dialog.create_request("ACK", via=self._via(leg.transport, leg.local), cseq=leg.invite.cseq[0])
        leg.ack_data = ack.serialize()
        self._queue(leg.ack_data, *self._in_dialog_destination(leg))
        if leg.state is LegState.CANCELLING:
            # Our CANCEL lost the race with the 2xx: end the dialog at once (§9.1, §15).
            leg.terminated_reported = True
            leg.cancel_deadline = None
            self._events.append(OutgoingCallFailed(leg.handle, 487, response))
            leg.state = LegState.CONFIRMED
            self._send_bye(leg, now)
            return
        leg.state = LegState.CONFIRMED
        self._events.append(OutgoingCallAnswered(leg.handle, response))

    def _on_timeout(self, tx: Transaction, timer: str, now: float) -> None:
        leg = self._legs.get(tx.call_handle) if tx.call_handle is not None else None
        if leg is None:
            return
        if tx.purpose == "invite" and tx is leg.client_tx:
            if leg.state in (LegState.CALLING, LegState.CANCELLING):
                self._finish(leg)
                # Timer B: 408 (§17.1.1.2); transport failure: 503 (§8.1.3.1); §9.1 CANCEL guard: 487
                status = {"CANCEL": 487, "transport": 503}.get(timer, 408)
                self._events.append(OutgoingCallFailed(leg.handle, status))
        elif tx.purpose == "bye":
            self._report_terminated(leg, "timeout")
            self._finish(leg)
        elif tx.purpose in ("info", "reinvite"):
            if tx.purpose == "reinvite":
                leg.outgoing_reinvite = None
            self._report_terminated(leg, "timeout")  # §12.2.1.2: no answer ends the dialog
            if leg.state is LegState.CONFIRMED:
                self._send_bye(leg, now)
            else:
                self._finish(leg)

    def _dialog_gone(self, leg: Leg, now: float, status: int) -> None:
        """§12.2.1.2: 481/408 to an in-dialog request: the dialog is over (BYE only after a 408; after
        a 481 the peer has no dialog left to end)."""
        self._report_terminated(leg, "dialog-gone")
        if leg.state is LegState.CONFIRMED and status != 481:
            self._send_bye(leg, now)
        else:
            self._finish(leg)
