"""Calls: a Call binds SIP legs (dialogs), their media legs in the engine, and what the gateway does.

Theory of operation: ``CallManager.on_sip_event`` receives every ``SipEndpoint`` event. An admitted
INVITE becomes a ``Call`` with one inbound ``Leg``; the dialled number (Request-URI user part) picks the
flow from the profile:

* ``answer``: 200 OK with our SDP, then held until either side hangs up (signalling test number);
* ``ring``: 180 Ringing and never answered (until the caller cancels);
* ``echo``: answered; the caller hears itself (the leg listens to its own input);
* ``prompt``: answered; a text prompt is played, then the gateway hangs up;
* ``reject``: refused with the configured status.

SDP offer/answer (RFC 3264) runs here with ``mediagw.sdp``: an INVITE with an offer is answered in the
200; an INVITE without one (late offer) gets our offer in the 200 and the answer arrives in the ACK.
Re-INVITEs (hold/resume) are answered from the same media leg with its direction updated. Every handler
catches a peer's bad SDP as ``SdpError`` and answers 488 with a Warning; nothing a peer sends ends other
calls.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mediagw.errors import SdpError
from mediagw.media.ports import RtpPortsExhausted
from mediagw.media.service import MediaLeg, MediaService
from mediagw.queue_flow import QueueFlow
from mediagw.recording.service import RecordingService, new_recording_id
from mediagw.router.service import RouterService
from mediagw.sdp import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    NegotiatedAudio,
    SessionDescription,
    create_offer,
    negotiate_answer,
    process_answer,
)
from mediagw.sip.endpoint import (
    CallCancelled,
    CallEstablished,
    CallTerminated,
    IncomingCallReceived,
    InfoReceived,
    OutgoingCallAnswered,
    OutgoingCallFailed,
    OutgoingCallProgressed,
    ReinviteAnswered,
    ReinviteReceived,
)
from mediagw.sip.message import SipRequest
from mediagw.supervision import Supervision

if TYPE_CHECKING:
    from mediagw.gateway import Gateway

logger = logging.getLogger(__name__)

ROUTER_EVENT_TYPES = {
    "ContactEnqueued": "call.queued",
    "AgentReserved": "call.ringing",
    "AgentRingTimedOut": "agent.ring_timeout",
    "ContactRequeued": "call.requeued",
    "ContactConnected": "call.connected",
    "ContactAbandoned": "call.abandoned",
    "ContactOverflowed": "call.overflowed",
    "ContactEnded": "call.ended",
    "AgentStateChanged": "agent.state_changed",
}
"""How router events are named on the API's WebSocket stream."""

LOCAL_CODECS = (PCMU, PCMA, TELEPHONE_EVENT)
"""What we accept and offer, in our order of preference."""


@dataclass(eq=False)
class Leg:
    """One SIP dialog of a call and its media leg."""

    handle: int
    role: str
    """``caller`` (the inbound leg), ``agent`` or ``supervisor`` (legs the gateway dials)."""
    media: MediaLeg
    session_id: int = field(default_factory=lambda: secrets.randbelow(2**31))
    session_version: int = 1
    local_sdp: SessionDescription | None = None
    negotiated: NegotiatedAudio | None = None
    offer_pending: bool = False
    """True when our 200 carried an offer and the answer is expected in the ACK (late offer)."""


@dataclass(eq=False)
class Call:
    """One call through the gateway: its legs and what it does."""

    id: str
    number: str
    action: str
    caller: Leg
    call_id: str
    caller_identity: str = ""
    """The caller's From as a name-addr without its tag: the identity shown to the agents we ring."""
    contact_id: str = ""
    """The contact record of a queued call."""
    started_at: float = field(default_factory=time.time)
    connected_at: float | None = None
    """Wall-clock time caller and agent were bridged."""
    recording_id: str | None = None
    legs: dict[int, Leg] = field(default_factory=dict)
    ended: bool = False
    end_reason: str = ""


class CallManager:
    """All calls of one gateway, driven by SIP and media events."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.profile = gateway.profile
        self.media = MediaService(gateway.profile, gateway.data_dir, self.on_media_event)
        self.queues: QueueFlow | None = None
        self.supervision = Supervision(self, gateway.audit)
        self.recording: RecordingService | None = None
        self._calls: dict[str, Call] = {}
        self._by_handle: dict[int, Call] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._calls)

    async def start(self, router: RouterService | None = None) -> None:
        """Start the media plane; queued calls run on ``router``."""
        await self.media.start()
        if router is not None:
            self.queues = QueueFlow(self, router)

    def on_router_event(self, event: Any) -> None:
        """Router decisions for queued calls; each is also published on the API's event stream."""
        if self.queues is not None:
            self.queues.on_router_event(event)
        kind = ROUTER_EVENT_TYPES.get(type(event).__name__)
        if kind is None:
            return
        fields = dataclasses.asdict(event)
        self.gateway.events.publish({"type": kind, **fields})
        queue_id = fields.get("queue_id")
        router = self.gateway.router
        if queue_id and router is not None:
            figures = router.router.queue_figures(queue_id, router.now())
            self.gateway.events.publish({
                "type": "queue.updated", "queue_id": queue_id, "waiting": figures.contacts_waiting,
                "oldest_wait_seconds": figures.oldest_wait or 0.0, "agents_available": figures.agents_available,
                "agents_on_call": figures.agents_on_call, "agents_in_acw": figures.agents_in_acw,
            })

    async def close(self) -> None:
        """Stop the media plane and release every leg."""
        for call in list(self._calls.values()):
            self.release(call, "shutdown")
        await self.media.close()

    @property
    def endpoint(self) -> Any:
        return self.gateway.endpoint

    def now(self) -> float:
        return self.gateway.now()

    # -- SIP events -----------------------------------------------------------------------------------

    def on_sip_event(self, event: Any) -> None:
        """Dispatch one endpoint event."""
        if isinstance(event, IncomingCallReceived):
            self._incoming(event)
            return
        call = self._by_handle.get(getattr(event, "call_handle", -1))
        if call is None:
            return
        leg = call.legs.get(event.call_handle)
        if leg is None:
            return
        if isinstance(event, CallEstablished):
            self._established(call, leg, event)
        elif isinstance(event, (CallTerminated, CallCancelled)):
            reason = event.reason if isinstance(event, CallTerminated) else "cancelled"
            self._leg_ended(call, leg, reason)
        elif isinstance(event, ReinviteReceived):
            self._reinvite(call, leg, event.request)
        elif isinstance(event, InfoReceived):
            self.media.info_received(leg.media, event.request, call.call_id)
        elif isinstance(event, (OutgoingCallProgressed, OutgoingCallAnswered, OutgoingCallFailed)):
            queued = self.queues.queued(call) if self.queues is not None else None
            if leg.role == "supervisor":
                self.supervision.on_leg_event(call, leg, event)
            elif queued is not None:
                self.queues.on_agent_event(queued, leg, event)  # type: ignore[union-attr]
            elif isinstance(event, OutgoingCallFailed):
                self.forget_leg(call, leg)
        elif isinstance(event, ReinviteAnswered):
            logger.debug("call %s: re-INVITE answered %s on leg %s", call.id, event.status, leg.handle)

    def _incoming(self, event: IncomingCallReceived) -> None:
        request = event.request
        now = self.now()
        user = request.uri.user or ""
        feature = self.supervision.feature_code(user)
        if feature is not None:
            self._feature_code(event, *feature)
            return
        number = self.profile.number(user)
        if number is None:
            logger.info("INVITE for unknown number %r from %s:%s, Call-ID %s", user, *event.source, request.call_id)
            self.endpoint.reject(event.call_handle, 404, now=now)
            return
        if number.action == "reject":
            self.endpoint.reject(event.call_handle, number.reject_status, now=now)
            return
        try:
            media = self.media.open_leg(nat=self.profile.rtp.nat_latch)
        except (OSError, RtpPortsExhausted) as exc:
            logger.error("no RTP port for Call-ID %s: %s", request.call_id, exc)
            self.endpoint.reject(event.call_handle, 503, headers=(("Retry-After", "5"),), now=now)
            return
        media.owner = event.call_handle
        leg = Leg(event.call_handle, "caller", media)
        call = Call(f"call-{next(self._ids)}", user, number.action, leg, request.call_id,
                    caller_identity=_identity(request))
        call.legs[leg.handle] = leg
        self._calls[call.id] = call
        self._by_handle[leg.handle] = call
        logger.info(
            "call %s: %s from %s:%s to %s (%s), Call-ID %s",
            call.id, request.from_.uri, *event.source, user, number.action, request.call_id,
        )
        if number.action == "ring":
            self.endpoint.send_provisional(leg.handle, 180, now=now)
            return
        if number.action == "queue":
            if self.queues is None:
                self.endpoint.reject(leg.handle, 503, now=now)
                self.release(call, "no-router")
                return
            self.queues.start(call, leg, event, number)
            return
        sdp = self.local_answer(call, leg, request)
        if sdp is None:
            return
        self.endpoint.answer(leg.handle, sdp, now=now)
        if leg.negotiated is not None:
            self._start_flow(call, leg)

    def local_answer(self, call: Call, leg: Leg, request: SipRequest) -> bytes | None:
        """Our SDP for the 200 OK: an answer to the INVITE's offer, or an offer when it had none."""
        now = self.now()
        if not request.body:
            leg.local_sdp = create_offer(
                local_address=self.profile.rtp.address, local_port=leg.media.port, codecs=LOCAL_CODECS,
                session_id=leg.session_id, session_version=leg.session_version,
            )
            leg.offer_pending = True
            return leg.local_sdp.serialize()
        try:
            if (request.content_type or "").lower() != "application/sdp":
                raise SdpError(f"unsupported body type {request.content_type!r}", status_code=415)
            offer = SessionDescription.parse(request.body)
            answer, negotiated = negotiate_answer(
                offer, local_codecs=LOCAL_CODECS, local_address=self.profile.rtp.address,
                local_port=leg.media.port, session_id=leg.session_id, session_version=leg.session_version,
            )
        except SdpError as exc:
            logger.warning("call %s: SDP offer refused (%s), Call-ID %s", call.id, exc, call.call_id)
            headers: tuple[tuple[str, str], ...] = (("Warning", f'399 mediagw "{_warning_text(exc)}"'),)
            if exc.status_code == 415:
                headers += (("Accept", "application/sdp"),)
            self.endpoint.reject(leg.handle, exc.status_code if exc.status_code >= 400 else 488,
                                 headers=headers, now=now)
            self.release(call, "sdp-refused")
            return None
        leg.local_sdp = answer
        leg.negotiated = negotiated
        self.media.connect(leg.media, negotiated)
        return answer.serialize()

    def _established(self, call: Call, leg: Leg, event: CallEstablished) -> None:
        if not leg.offer_pending:
            return
        leg.offer_pending = False
        try:
            assert leg.local_sdp is not None
            negotiated = process_answer(leg.local_sdp, SessionDescription.parse(event.ack.body))
        except SdpError as exc:
            logger.warning("call %s: SDP answer in ACK refused (%s); hanging up", call.id, exc)
            self.hangup(call, "sdp-refused")
            return
        leg.negotiated = negotiated
        self.media.connect(leg.media, negotiated)
        queued = self.queues.queued(call) if self.queues is not None else None
        if queued is not None and queued.hold_slot is not None:  # late offer: the hold music started unheard
            self.media.set_listen(leg.media, [(queued.hold_slot, 1.0)])
        self._start_flow(call, leg)

    def _reinvite(self, call: Call, leg: Leg, request: SipRequest) -> None:
        """Answer a re-INVITE from the same media leg: hold (sendonly/inactive) and resume (RFC 3264 §8.4)."""
        now = self.now()
        leg.session_version += 1
        if not request.body:  # an offerless re-INVITE: we offer our current session again
            self.endpoint.answer_reinvite(leg.handle, 200, leg.local_sdp.serialize() if leg.local_sdp else b"",
                                          now=now)
            return
        try:
            offer = SessionDescription.parse(request.body)
            answer, negotiated = negotiate_answer(
                offer, local_codecs=LOCAL_CODECS, local_address=self.profile.rtp.address,
                local_port=leg.media.port, session_id=leg.session_id, session_version=leg.session_version,
            )
        except SdpError as exc:
            logger.warning("call %s: re-INVITE offer refused (%s)", call.id, exc)
            self.endpoint.answer_reinvite(leg.handle, 488, now=now,
                                          headers=(("Warning", f'399 mediagw "{_warning_text(exc)}"'),))
            return
        leg.local_sdp = answer
        leg.negotiated = negotiated
        self.media.connect(leg.media, negotiated)
        logger.info("call %s: re-INVITE, we now %s", call.id, negotiated.local_direction)
        self.endpoint.answer_reinvite(leg.handle, 200, answer.serialize(), now=now)
        queued = self.queues.queued(call) if self.queues is not None else None
        if queued is not None:
            self.queues.hold_changed(queued, leg, negotiated.remote_direction in ("sendonly", "inactive"))  # type: ignore[union-attr]

    # -- flows ----------------------------------------------------------------------------------------

    def _start_flow(self, call: Call, leg: Leg) -> None:
        """Media for the number's action, once the caller's leg has negotiated audio."""
        if call.action == "echo":
            self.media.set_listen(leg.media, [(leg.media, 1.0)])
        elif call.action == "prompt":
            number = self.profile.number(call.number)
            text = number.prompt_text if number is not None and number.prompt_text else "Thank you for calling."
            self.media.play_text(leg.media, text, on_finished=lambda: self.hangup(call, "prompt-finished"))

    # -- media events ---------------------------------------------------------------------------------

    def on_media_event(self, kind: str, media: MediaLeg, detail: Any) -> None:
        """Events from the media plane: ``dtmf`` (digit, duration ms, method), ``rtp-timeout``."""
        call = self._by_handle.get(media.owner) if media.owner is not None else None
        if call is None:
            return
        if kind == "dtmf":
            digit, duration, method = detail
            logger.info("call %s: DTMF %s (%d ms, %s), Call-ID %s", call.id, digit, duration, method, call.call_id)
        elif kind == "rtp-timeout":
            logger.warning("call %s: no RTP for %.0f s, ending it (rtp-timeout)", call.id, detail)
            self.hangup(call, "rtp-timeout")

    # -- ending ---------------------------------------------------------------------------------------

    def hangup(self, call: Call, reason: str) -> None:
        """End every leg of ``call`` (BYE, CANCEL or a final response, as each leg's state needs)."""
        if call.ended:
            return
        call.end_reason = call.end_reason or reason
        now = self.now()
        for leg in list(call.legs.values()):
            self.endpoint.hangup(leg.handle, now=now)
        self.gateway.pump()

    def hangup_all(self, reason: str) -> None:
        """End every call (drain)."""
        for call in list(self._calls.values()):
            self.hangup(call, reason)

    def _leg_ended(self, call: Call, leg: Leg, reason: str) -> None:
        logger.info("call %s: %s leg ended (%s)", call.id, leg.role, reason)
        if leg.role == "supervisor":
            self.supervision.on_leg_ended(call, leg)
            self.forget_leg(call, leg)
            return
        queued = self.queues.queued(call) if self.queues is not None else None
        ends_call = leg.role == "caller" or (queued is not None and leg is queued.agent_leg)
        if ends_call:
            self._stop_recording(call)
        if leg.role == "caller":
            call.end_reason = call.end_reason or ("caller-hangup" if reason in ("remote-bye", "cancelled") else reason)
        if queued is not None:
            self.queues.on_leg_ended(queued, leg, reason)  # type: ignore[union-attr]
        if ends_call:
            now = self.now()
            for other in list(call.legs.values()):
                if other is not leg:
                    self.endpoint.hangup(other.handle, now=now)
            self.gateway.pump()
        self.forget_leg(call, leg)

    def add_leg(self, call: Call, leg: Leg) -> None:
        """Attach a leg the gateway dialled (agent, supervisor) to ``call``."""
        call.legs[leg.handle] = leg
        self._by_handle[leg.handle] = call

    def forget_leg(self, call: Call, leg: Leg) -> None:
        """A leg is over: release its media; the call ends with its last leg."""
        self.media.close_leg(leg.media)
        call.legs.pop(leg.handle, None)
        self._by_handle.pop(leg.handle, None)
        if not call.legs and not call.ended:
            call.ended = True
            self._calls.pop(call.id, None)
            self.supervision.forget_call(call)
            logger.info("call %s ended: %s", call.id, call.end_reason or "ended")

    def on_bridged(self, call: Call, caller: Leg, agent: Leg) -> None:
        """Caller and agent were just joined: supervisors' matrix, and the recording starts."""
        call.connected_at = time.time()
        self.supervision.apply(call)
        queued = self.queues.queued(call) if self.queues is not None else None
        queue = self.profile.queue(queued.queue_id) if queued is not None else None
        if (self.recording is None or queue is None or not queue.recording or caller.media.slot is None
                or agent.media.slot is None):
            return
        call.recording_id = new_recording_id()
        self.recording.start_recording(
            call.recording_id, call.contact_id, queue.id, caller.media.slot, agent.media.slot,
            queue.recording_targets or None, format=queue.recording_format or None,
        )
        logger.info("call %s: recording %s started", call.id, call.recording_id)

    def _stop_recording(self, call: Call) -> None:
        if self.recording is not None and call.recording_id is not None \
                and self.recording.state(call.recording_id) is not None:
            self.recording.stop_recording(call.recording_id)
            self.gateway.events.publish({"type": "recording.stopped", "recording_id": call.recording_id,
                                         "call": self.api_id(call), "number": call.number})
            logger.info("call %s: recording %s stopped", call.id, call.recording_id)

    def recording_state(self, call: Call) -> str:
        """off, recording, paused or stopped: for the API."""
        if call.recording_id is None or self.recording is None:
            return "off"
        return self.recording.state(call.recording_id) or "stopped"

    def recording_id(self, call: Call) -> str | None:
        return call.recording_id

    # -- lookups for the control API ------------------------------------------------------------------

    def live_calls(self) -> list[Call]:
        """Every call in progress."""
        return [call for call in self._calls.values() if not call.ended]

    def api_id(self, call: Call) -> str:
        """The id the API shows: the contact id of a queued call, else the gateway's call id."""
        return call.contact_id or call.id

    def find(self, api_id: str) -> Call | None:
        """A live call by API id (contact id or call id)."""
        for call in self._calls.values():
            if api_id in (call.contact_id, call.id):
                return call
        return None

    def agent_leg(self, call: Call) -> Leg | None:
        """The agent leg of a queued call, once the agent answered."""
        queued = self.queues.queued(call) if self.queues is not None else None
        if queued is None or queued.state not in ("whisper", "connected"):
            return None
        return queued.agent_leg

    def is_bridged(self, call: Call) -> bool:
        """True once caller and agent hear each other."""
        queued = self.queues.queued(call) if self.queues is not None else None
        return queued is not None and queued.state == "connected"

    def _agent_call(self, agent_id: str) -> Call | None:
        if self.queues is None:
            return None
        for queued in self.queues.calls():
            if queued.agent_id == agent_id and queued.state == "connected":
                return queued.call
        return None

    def _feature_code(self, event: IncomingCallReceived, mode: str, agent_id: str) -> None:
        """A supervisor dialled ``*1<agent>`` (listen), ``*2`` (coach) or ``*3`` (barge)."""
        now = self.now()
        supervisor_id = event.registered_user
        supervisor = next((a for a in self.profile.agents if a.id == supervisor_id), None)
        if supervisor is None or supervisor.role != "supervisor" or not self.supervision.permitted(supervisor.id, mode):
            logger.warning("feature code %s for %s refused to %s", mode, agent_id, supervisor_id or "a stranger")
            self.endpoint.reject(event.call_handle, 403, now=now)
            return
        target = self._agent_call(agent_id)
        if target is None:
            self.endpoint.reject(event.call_handle, 404, "No Call For That Agent", now=now)
            return
        try:
            media = self.media.open_leg(nat=self.profile.rtp.nat_latch)
        except (OSError, RtpPortsExhausted):
            self.endpoint.reject(event.call_handle, 503, headers=(("Retry-After", "5"),), now=now)
            return
        media.owner = event.call_handle
        leg = Leg(event.call_handle, "supervisor", media)
        self.add_leg(target, leg)
        sdp = self.local_answer(target, leg, event.request)
        if sdp is None:
            self.forget_leg(target, leg)
            return
        self.endpoint.answer(leg.handle, sdp, now=now)
        self.supervision.join_dialled(target, supervisor.id, mode, leg)
        logger.info("call %s: supervisor %s joined by feature code in %s mode", target.id, supervisor.id, mode)

    def release(self, call: Call, reason: str) -> None:
        """Forget a call whose legs are already gone at the SIP level (or never answered)."""
        self._stop_recording(call)
        for leg in list(call.legs.values()):
            self.media.close_leg(leg.media)
            self._by_handle.pop(leg.handle, None)
        call.legs.clear()
        call.ended = True
        call.end_reason = call.end_reason or reason
        self._calls.pop(call.id, None)


def _identity(request: SipRequest) -> str:
    """The From header of ``request`` as a name-addr without the tag (RFC 3261 §8.1.1.3)."""
    sender = request.from_
    name = f'"{sender.display_name}" ' if sender.display_name else ""
    return f"{name}<{sender.uri}>"


def _warning_text(error: Exception) -> str:
    """A Warning header text (RFC 3261 §20.43) from an error: no quotes or control characters."""
    return "".join(ch for ch in str(error) if ch.isprintable() and ch not in '"\\')[:120]
