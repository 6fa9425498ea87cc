"""The contact-center call flow: queue a trunk caller, ring agents, whisper, bridge.

Theory of operation, for a number with ``action = "queue"``:

1. The caller's INVITE is negotiated (SDP) and its reserved-attribute headers are read into attributes
   and profile flags; a contact record is opened and ``RouterService.route`` decides: a queue (after flag
   routes and hours) or an after-hours deflection. The router answers synchronously through
   ``on_router_event``: an overflow (reject with a status, or a message) or already an agent reservation.
2. Queued, the caller is answered and hears hold music, interrupted every ``announcement_interval``
   seconds by the queue's announcement; both stop the moment the agent is bridged.
3. ``AgentReserved``: the gateway dials the agent's registered contact from its own leg, with the caller's
   identity in From and the contact's flags in headers. No answer within the ring timeout
   (``AgentRingTimedOut``): CANCEL; the router has put the agent in RONA and offers the next one. Busy
   (486/600) or declined (603 ...): the router is told and moves on.
4. The agent answers: the agent alone hears the whisper ("{call type} of {queue name}", text or file,
   at the queue's speed) then the countdown; the caller keeps hearing hold music. Then the listen matrix
   joins caller and agent, and the router marks the contact connected (so the whisper counts as wait).
5. Either side's BYE ends the other and the contact, with the reason recorded.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mediagw.errors import MediagwError, SdpError
from mediagw.media.ports import RtpPortsExhausted
from mediagw.media.prompts import Voice, beep, hold_music, silence
from mediagw.router.core import (
    AgentReserved,
    AgentRingTimedOut,
    ContactOverflowed,
    OverflowAction,
    RouterError,
)
from mediagw.router.flags import derive_flags, read_attributes
from mediagw.router.profile import attribute_mappings
from mediagw.router.service import RouteKind, RouterService
from mediagw.sdp import SessionDescription, create_offer, process_answer
from mediagw.sip.endpoint import (
    IncomingCallReceived,
    OutgoingCallAnswered,
    OutgoingCallFailed,
    OutgoingCallProgressed,
)
from mediagw.store.contacts import DisconnectReason

if TYPE_CHECKING:
    from mediagw.calls import Call, CallManager, Leg
    from mediagw.config import NumberConfig

logger = logging.getLogger(__name__)

BUSY_STATUSES = frozenset({486, 600})
"""Agent responses that mean the device cannot take calls: the router treats them like RONA."""
WHISPER_GAP = 0.3  # seconds of silence between the whisper and the countdown


@dataclass(eq=False)
class QueuedCall:
    """The contact-center state of one queued call."""

    call: Call
    contact_id: str
    queue_id: str = ""
    state: str = "routing"
    """routing, waiting, ringing, whisper, connected, ended."""
    agent_id: str | None = None
    agent_leg: Leg | None = None
    hold_slot: int | None = None
    announcement: asyncio.TimerHandle | None = None
    overflow: ContactOverflowed | None = None
    transfer: Any = None
    """The after-hours deflection being dialled out, if any."""
    held_by: set[str] = field(default_factory=set)
    """Roles (caller, agent) that put the bridged call on hold (a=sendonly/inactive re-INVITE)."""
    moh_slot: int | None = None
    """The music-on-hold player the other party hears meanwhile."""
    cancelled_agents: set[int] = field(default_factory=set)
    """Agent legs we CANCELled on ring timeout: their failure is not a decline."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class QueueFlow:
    """Runs queued calls for the CallManager, driven by SIP, media and router events."""

    def __init__(self, manager: CallManager, router: RouterService) -> None:
        self.manager = manager
        self.router = router
        self.profile = manager.profile
        self._by_contact: dict[str, QueuedCall] = {}
        self._hold_music = hold_music()

    @property
    def media(self) -> Any:
        return self.manager.media

    @property
    def endpoint(self) -> Any:
        return self.manager.endpoint

    def now(self) -> float:
        return self.manager.now()

    def queued(self, call: Call) -> QueuedCall | None:
        """The queue state of ``call``, if it is a queued call."""
        return self._by_contact.get(call.contact_id) if call.contact_id else None

    def calls(self) -> list[QueuedCall]:
        """Every live queued call."""
        return list(self._by_contact.values())

    # -- the caller arrives -----------------------------------------------------------------------------

    def start(self, call: Call, leg: Leg, event: IncomingCallReceived, number: NumberConfig) -> None:
        """Route a new caller for ``number``: answer and queue it, deflect it, or reject it."""
        request = event.request
        sdp = self.manager.local_answer(call, leg, request)
        if sdp is None:
            return  # 488 already sent
        trunk = self.manager.gateway.admission.trunk_for(event.source)
        headers: dict[str, list[str]] = {}
        for name, value in request.headers:
            headers.setdefault(name.lower(), []).append(value)
        attributes = read_attributes(attribute_mappings(trunk), headers, call_id=request.call_id) if trunk else {}
        flags = derive_flags(attributes)
        call.contact_id = self.router.open_contact(
            caller=str(request.from_.uri), number=number.number, call_id=request.call_id,
            flags=flags, attributes=attributes,
        )
        queued = QueuedCall(call, call.contact_id)
        self._by_contact[call.contact_id] = queued
        logger.info("call %s: contact %s, flags %s", call.id, call.contact_id, ",".join(sorted(flags)) or "-")
        decision = self.router.route(call.contact_id, number)
        queued.queue_id = decision.queue_id
        now = self.now()
        if decision.kind is RouteKind.AFTER_HOURS:
            self._after_hours(queued, leg, sdp, decision.after_hours)
            return
        overflow = queued.overflow
        if overflow is not None and overflow.action is OverflowAction.REJECT:
            logger.info("call %s: queue %s is full, rejected with %s", call.id, overflow.queue_id, overflow.status_code)
            self.endpoint.reject(leg.handle, overflow.status_code, overflow.reason_phrase or None, now=now)
            self._end(queued, DisconnectReason.OVERFLOW)
            self.manager.release(call, "overflow")
            return
        self.endpoint.answer(leg.handle, sdp, now=now)
        if overflow is not None and overflow.action is OverflowAction.MESSAGE:
            queue = self.router.queue_config(overflow.queue_id)
            self._play_then_hang_up(queued, leg, queue.overflow_message, queue.overflow_message_file, "overflow")
            return
        if queued.state == "routing":
            queued.state = "waiting"
        self._start_hold(queued)

    def _after_hours(self, queued: QueuedCall, leg: Leg, sdp: bytes, action: Any) -> None:
        """Run a closed queue's deflection: message, redirect, dial-out or voicemail."""
        call = queued.call
        now = self.now()
        kind = getattr(action, "action", "message")
        logger.info("call %s: queue %s is closed, deflection %s", call.id, queued.queue_id, kind)
        if kind == "transfer" and action.transfer_mode == "redirect":
            self.endpoint.reject(leg.handle, 302, "Moved Temporarily",
                                 headers=(("Contact", f"<{action.transfer_target}>"),), now=now)
            self._end(queued, DisconnectReason.AFTER_HOURS)
            self.manager.release(call, "after-hours")
            return
        self.endpoint.answer(leg.handle, sdp, now=now)
        if kind == "transfer":  # transfer_mode "dial": out through the trunk, then bridged
            queued.state = "transferring"
            self._start_hold(queued)
            self._dial_out(queued, action)
            return
        if kind == "voicemail" and self.manager.recording is not None:
            queued.state = "message"
            self._spawn(queued, self._voicemail(queued, leg, action))
            return
        if kind != "message":
            logger.warning("call %s: after-hours %s is not available on this gateway; playing the message",
                           call.id, kind)
        self._play_then_hang_up(queued, leg, getattr(action, "message_text", ""),
                                getattr(action, "message_file", ""), "after-hours")

    async def _voicemail(self, queued: QueuedCall, leg: Leg, action: Any) -> None:
        """Prompt and beep, then record the caller (at most ``voicemail_max_seconds``) as a voicemail."""
        call = queued.call
        try:
            prompt = await self.media.render(text=action.voicemail_prompt_text,
                                             file=action.voicemail_prompt_file or None)
        except MediagwError as exc:
            logger.error("call %s: voicemail prompt cannot be played: %s", call.id, exc)
            prompt = silence(0.2)
        if queued.state == "ended" or leg.media.closed:
            return
        pcm = np.concatenate([prompt, silence(0.2), beep()])
        self.media.play_pcm(leg.media, pcm, on_finished=lambda: self._record_voicemail(queued, leg, action))

    def _record_voicemail(self, queued: QueuedCall, leg: Leg, action: Any) -> None:
        call = queued.call
        recording = self.manager.recording
        if queued.state == "ended" or leg.media.closed or recording is None or leg.media.slot is None:
            return
        self.media.set_listen(leg.media, [])
        from mediagw.recording.service import new_recording_id

        call.recording_id = new_recording_id()
        recording.start_recording(call.recording_id, queued.contact_id, queued.queue_id, leg.media.slot, None,
                                  kind="voicemail", format="wav-mono")
        logger.info("call %s: voicemail %s for queue %s (at most %d s)", call.id, call.recording_id,
                    queued.queue_id, action.voicemail_max_seconds)
        self.manager.gateway.events.publish({
            "type": "voicemail.started", "recording_id": call.recording_id, "queue": queued.queue_id,
            "contact_id": queued.contact_id,
        })
        loop = asyncio.get_running_loop()
        queued.announcement = loop.call_later(action.voicemail_max_seconds,
                                              lambda: self.manager.hangup(call, "after-hours"))

    def _dial_out(self, queued: QueuedCall, action: Any) -> None:
        """Dial ``transfer_target`` through ``transfer_trunk`` from the gateway's own leg (B2BUA)."""
        call = queued.call
        trunk = next(t for t in self.profile.trunks if t.name == action.transfer_trunk)
        address = trunk.outbound_address
        assert address is not None  # the profile check guarantees it
        try:
            media = self.media.open_leg(nat=self.profile.rtp.nat_latch)
        except (OSError, RtpPortsExhausted) as exc:
            logger.error("call %s: no RTP port to dial out: %s", call.id, exc)
            self._transfer_failed(queued, action)
            return
        from mediagw.calls import LOCAL_CODECS, Leg

        leg = Leg(-1, "external", media)
        leg.local_sdp = create_offer(
            local_address=self.profile.rtp.address, local_port=media.port, codecs=LOCAL_CODECS,
            session_id=leg.session_id, session_version=leg.session_version,
        )
        handle = self.endpoint.invite(
            action.transfer_target, (address.host, address.port), address.transport,
            from_uri=call.caller_identity, to_uri=f"<{action.transfer_target}>", sdp=leg.local_sdp.serialize(),
            now=self.now(),
        )
        leg.handle = handle
        media.owner = handle
        self.manager.add_leg(call, leg)
        queued.agent_leg = leg
        queued.transfer = action
        logger.info("call %s: dialling %s through trunk %s", call.id, action.transfer_target, trunk.name)
        self.manager.gateway.pump()

    def _transfer_failed(self, queued: QueuedCall, action: Any) -> None:
        queued.agent_leg = None
        self._stop_hold(queued)
        self._play_then_hang_up(queued, queued.call.caller, action.message_text, action.message_file, "after-hours")

    def _play_then_hang_up(self, queued: QueuedCall, leg: Leg, text: str, file: str, reason: str) -> None:
        queued.state = "message"
        text = text or "We cannot take your call right now. Please call again later. Goodbye."
        self._spawn(queued, self._play_then_hang_up_task(queued, leg, text, file, reason))

    async def _play_then_hang_up_task(self, queued: QueuedCall, leg: Leg, text: str, file: str, reason: str) -> None:
        try:
            pcm = await self.media.render(text=text, file=file or None)
        except MediagwError as exc:
            logger.error("call %s: message cannot be played: %s", queued.call.id, exc)
            pcm = silence(0.5)
        if queued.state == "ended" or leg.media.closed:
            return
        self.media.play_pcm(leg.media, pcm, on_finished=lambda: self.manager.hangup(queued.call, reason))

    # -- waiting: hold music and announcements ----------------------------------------------------------

    def _start_hold(self, queued: QueuedCall) -> None:
        if queued.state not in ("waiting", "ringing", "whisper", "transferring"):
            return
        queue = self.router.queue_config(queued.queue_id)
        caller = queued.call.caller
        if queue.hold_music:
            self._spawn(queued, self._start_hold_file(queued, queue.hold_music))
        else:
            queued.hold_slot = self.media.play_pcm(caller.media, self._hold_music, loop=True)
        if queue.announcement_interval > 0 and (queue.announcement_text or queue.announcement_file):
            self._schedule_announcement(queued, queue.announcement_interval)

    async def _start_hold_file(self, queued: QueuedCall, path: str) -> None:
        try:
            pcm = await self.media.render(file=path)
        except MediagwError as exc:
            logger.error("hold music %s cannot be played (%s); using the generated loop", path, exc)
            pcm = self._hold_music
        if queued.state in ("waiting", "ringing", "whisper", "transferring"):
            queued.hold_slot = self.media.play_pcm(queued.call.caller.media, pcm, loop=True)

    def _schedule_announcement(self, queued: QueuedCall, delay: float) -> None:
        loop = asyncio.get_running_loop()
        queued.announcement = loop.call_later(delay, lambda: self._spawn(queued, self._announce(queued)))

    async def _announce(self, queued: QueuedCall) -> None:
        queue = self.router.queue_config(queued.queue_id)
        try:
            pcm = await self.media.render(text=queue.announcement_text, file=queue.announcement_file or None)
        except MediagwError as exc:
            logger.error("announcement cannot be played: %s", exc)
            return
        if queued.state not in ("waiting", "ringing"):
            return
        caller = queued.call.caller

        def back_to_hold() -> None:
            if queued.state in ("waiting", "ringing") and queued.hold_slot is not None:
                self.media.set_listen(caller.media, [(queued.hold_slot, 1.0)])
                self._schedule_announcement(queued, queue.announcement_interval)

        self.media.play_pcm(caller.media, pcm, on_finished=back_to_hold)

    def _stop_announcements(self, queued: QueuedCall) -> None:
        """No more announcements; one playing right now gives way to the hold music."""
        if queued.announcement is not None:
            queued.announcement.cancel()
            queued.announcement = None
        caller_media = queued.call.caller.media
        for slot in list(caller_media.players):
            if slot != queued.hold_slot:
                self.media.stop_player(slot)
        if queued.hold_slot is not None:
            self.media.set_listen(caller_media, [(queued.hold_slot, 1.0)])

    def _stop_hold(self, queued: QueuedCall) -> None:
        if queued.announcement is not None:
            queued.announcement.cancel()
            queued.announcement = None
        caller_media = queued.call.caller.media
        for slot in list(caller_media.players):
            self.media.stop_player(slot)
        queued.hold_slot = None

    # -- router events ----------------------------------------------------------------------------------

    def on_router_event(self, event: Any) -> None:
        """Act on the router's decisions (called synchronously from RouterService)."""
        queued = self._by_contact.get(getattr(event, "contact_id", ""))
        if queued is None or queued.state == "ended":
            return
        if isinstance(event, AgentReserved):
            self._ring_agent(queued, event.agent_id)
        elif isinstance(event, AgentRingTimedOut):
            leg = queued.agent_leg
            if leg is not None and queued.agent_id == event.agent_id:
                logger.info("call %s: agent %s did not answer in time (RONA)", queued.call.id, event.agent_id)
                queued.cancelled_agents.add(leg.handle)
                queued.agent_leg = None
                queued.agent_id = None
                queued.state = "waiting"
                self.endpoint.hangup(leg.handle, now=self.now())
                self.manager.gateway.pump()
        elif isinstance(event, ContactOverflowed):
            queued.overflow = event

    def _ring_agent(self, queued: QueuedCall, agent_id: str) -> None:
        call = queued.call
        now = self.now()
        bindings = self.manager.gateway.registrar.bindings(agent_id, now)
        if not bindings:
            logger.warning("call %s: agent %s has no registered contact; treated as busy", call.id, agent_id)
            self.router.agent_declined(queued.contact_id, agent_id, busy=True)
            return
        binding = bindings[0]
        try:
            media = self.media.open_leg(nat=self.profile.rtp.nat_latch)
        except (OSError, RtpPortsExhausted) as exc:
            logger.error("call %s: no RTP port to ring agent %s: %s", call.id, agent_id, exc)
            self.router.agent_declined(queued.contact_id, agent_id, busy=False)
            return
        from mediagw.calls import LOCAL_CODECS, Leg

        leg = Leg(-1, "agent", media)
        leg.local_sdp = create_offer(
            local_address=self.profile.rtp.address, local_port=media.port, codecs=LOCAL_CODECS,
            session_id=leg.session_id, session_version=leg.session_version,
        )
        caller_from = call.caller_identity
        domain = self.profile.sip.domain
        handle = self.endpoint.invite(
            str(binding.contact.uri), binding.source, binding.transport,
            from_uri=caller_from, to_uri=f"<sip:{agent_id}@{domain}>", sdp=leg.local_sdp.serialize(), now=now,
            headers=tuple(self.router.agent_invite_headers(queued.contact_id)),
        )
        leg.handle = handle
        media.owner = handle
        self.manager.add_leg(call, leg)
        queued.agent_leg = leg
        queued.agent_id = agent_id
        queued.state = "ringing"
        logger.info("call %s: ringing agent %s at %s", call.id, agent_id, binding.contact.uri)
        self.manager.gateway.pump()

    # -- agent leg events -------------------------------------------------------------------------------

    def on_agent_event(self, queued: QueuedCall, leg: Leg, event: Any) -> None:
        """SIP events of an agent leg (or of the dial-out leg of an after-hours transfer)."""
        if isinstance(event, OutgoingCallProgressed):
            return
        if leg.role == "external":
            self._external_event(queued, leg, event)
            return
        if isinstance(event, OutgoingCallAnswered):
            self._agent_answered(queued, leg, event)
        elif isinstance(event, OutgoingCallFailed):
            self.manager.forget_leg(queued.call, leg)
            if leg.handle in queued.cancelled_agents or queued.state == "ended" or leg is not queued.agent_leg:
                return
            agent_id = queued.agent_id or ""
            queued.agent_leg = None
            queued.agent_id = None
            queued.state = "waiting"
            busy = event.status in BUSY_STATUSES
            logger.info("call %s: agent %s answered %s (%s)", queued.call.id, agent_id, event.status,
                        "busy" if busy else "declined")
            self.router.agent_declined(queued.contact_id, agent_id, busy=busy)

    def _external_event(self, queued: QueuedCall, leg: Leg, event: Any) -> None:
        call = queued.call
        if isinstance(event, OutgoingCallFailed):
            self.manager.forget_leg(call, leg)
            if queued.state == "transferring":
                logger.info("call %s: dial-out answered %s; playing the after-hours message", call.id, event.status)
                self._transfer_failed(queued, queued.transfer)
            return
        if not isinstance(event, OutgoingCallAnswered) or queued.state != "transferring":
            return
        try:
            assert leg.local_sdp is not None
            negotiated = process_answer(leg.local_sdp, SessionDescription.parse(event.response.body))
        except SdpError as exc:
            logger.warning("call %s: the dialled party's SDP answer refused (%s)", call.id, exc)
            self.endpoint.hangup(leg.handle, now=self.now())
            return
        leg.negotiated = negotiated
        self.media.connect(leg.media, negotiated)
        self._stop_hold(queued)
        self.media.set_listen(call.caller.media, [(leg.media, 1.0)])
        self.media.set_listen(leg.media, [(call.caller.media, 1.0)])
        queued.state = "transferred"
        logger.info("call %s: transferred to %s", call.id, queued.transfer.transfer_target)

    def _agent_answered(self, queued: QueuedCall, leg: Leg, event: OutgoingCallAnswered) -> None:
        call = queued.call
        if leg is not queued.agent_leg or queued.state == "ended":
            self.endpoint.hangup(leg.handle, now=self.now())  # too late: RONA already moved on
            return
        try:
            assert leg.local_sdp is not None
            negotiated = process_answer(leg.local_sdp, SessionDescription.parse(event.response.body))
        except SdpError as exc:
            logger.warning("call %s: agent's SDP answer refused (%s)", call.id, exc)
            self.endpoint.hangup(leg.handle, now=self.now())
            return
        leg.negotiated = negotiated
        self.media.connect(leg.media, negotiated)
        try:
            self.router.agent_answered(queued.contact_id, queued.agent_id or "")
        except RouterError as exc:
            logger.warning("call %s: agent answer not accepted by the router (%s); hanging up the agent", call.id, exc)
            self.endpoint.hangup(leg.handle, now=self.now())
            return
        queued.state = "whisper"
        self._stop_announcements(queued)  # hold music goes on through the whisper; announcements stop now
        self.media.set_listen(leg.media, [])  # the agent hears nothing of the caller until the bridge
        self._spawn(queued, self._whisper(queued, leg))

    async def _whisper(self, queued: QueuedCall, leg: Leg) -> None:
        """Whisper and countdown to the agent alone, then the bridge."""
        plan = self.router.whisper(queued.queue_id)
        voice = Voice(name=plan.voice or "en-us", speed=plan.speed)
        parts: list[np.ndarray] = []
        try:
            if plan.file is not None:
                parts.append(await self.media.render(file=str(plan.file)))
            elif plan.text:
                parts.append(await self.media.render(text=plan.text, voice=voice))
            if plan.countdown_text:
                parts.append(silence(WHISPER_GAP))
                parts.append(await self.media.render(text=plan.countdown_text, voice=voice))
        except MediagwError as exc:
            logger.error("call %s: whisper cannot be played (%s); bridging without it", queued.call.id, exc)
            parts = []
        if queued.state != "whisper" or leg.media.closed:
            return
        if not parts:
            self._bridge(queued, leg)
            return
        pcm = np.concatenate(parts)
        self.media.play_pcm(leg.media, pcm, on_finished=lambda: self._bridge(queued, leg))

    def _bridge(self, queued: QueuedCall, leg: Leg) -> None:
        if queued.state != "whisper" or leg.media.closed:
            return
        caller = queued.call.caller
        self._stop_hold(queued)
        self.media.set_listen(caller.media, [(leg.media, 1.0)])
        self.media.set_listen(leg.media, [(caller.media, 1.0)])
        queued.state = "connected"
        try:
            self.router.contact_connected(queued.contact_id)
        except RouterError as exc:
            logger.warning("call %s: router refused the connection (%s)", queued.call.id, exc)
        logger.info("call %s: caller and agent %s bridged", queued.call.id, queued.agent_id)
        self.manager.on_bridged(queued.call, caller, leg)

    # -- hold during the conversation -------------------------------------------------------------------

    def hold_changed(self, queued: QueuedCall, leg: Leg, on_hold: bool) -> None:
        """A party of a bridged call held or resumed (RFC 3264 §8.4): the other hears the queue's music."""
        if queued.state != "connected" or leg.role not in ("caller", "agent"):
            return
        (queued.held_by.add if on_hold else queued.held_by.discard)(leg.role)
        if queued.held_by and queued.moh_slot is None:
            queued.moh_slot = self.media.add_player(queued.call.caller.media, self._hold_music, loop=True)
        elif not queued.held_by and queued.moh_slot is not None:
            self.media.stop_player(queued.moh_slot)
            queued.moh_slot = None
        logger.info("call %s: %s %s", queued.call.id, leg.role, "holds: music on hold" if on_hold else "resumed")
        self.manager.supervision.apply(queued.call)

    def music_on_hold_for(self, call: Call, listener_role: str) -> int | None:
        """The music-on-hold player ``listener_role`` hears instead of the other party, if held."""
        queued = self.queued(call)
        if queued is None or queued.moh_slot is None:
            return None
        other = "agent" if listener_role == "caller" else "caller"
        return queued.moh_slot if other in queued.held_by else None

    # -- ending -----------------------------------------------------------------------------------------

    def on_leg_ended(self, queued: QueuedCall, leg: Leg, reason: str) -> None:
        """A caller or agent leg ended: end the contact with the right reason."""
        if queued.state == "ended" or leg.role not in ("caller", "agent", "external"):
            return
        if leg.role in ("agent", "external") and leg is not queued.agent_leg:
            return
        if leg.role == "caller":
            mapped = {
                "remote-bye": DisconnectReason.CALLER_HANGUP, "cancelled": DisconnectReason.CALLER_HANGUP,
                "rtp-timeout": DisconnectReason.RTP_TIMEOUT, "shutdown": DisconnectReason.SHUTDOWN,
                "ended-by-supervisor": DisconnectReason.ENDED_BY_SUPERVISOR,
            }.get(queued.call.end_reason or reason, DisconnectReason.CALLER_HANGUP)
        else:
            mapped = {
                "rtp-timeout": DisconnectReason.RTP_TIMEOUT, "shutdown": DisconnectReason.SHUTDOWN,
                "ended-by-supervisor": DisconnectReason.ENDED_BY_SUPERVISOR,
            }.get(queued.call.end_reason, DisconnectReason.AGENT_HANGUP)
            queued.call.end_reason = queued.call.end_reason or "agent-hangup"
        self._end(queued, mapped)

    def _end(self, queued: QueuedCall, reason: DisconnectReason) -> None:
        if queued.state == "ended":
            return
        queued.state = "ended"
        self._stop_hold(queued)
        for task in list(queued.tasks):
            task.cancel()
        self._by_contact.pop(queued.contact_id, None)
        try:
            self.router.contact_ended(queued.contact_id, reason.value)
        except RouterError as exc:
            logger.warning("contact %s: %s", queued.contact_id, exc)
        logger.info("call %s: contact %s ended (%s)", queued.call.id, queued.contact_id, reason.value)

    def _spawn(self, queued: QueuedCall, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        queued.tasks.add(task)
        task.add_done_callback(queued.tasks.discard)
