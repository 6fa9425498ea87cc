"""Supervisors on live calls: listen, coach and barge legs in one per-call listen matrix.

Theory of operation: a monitor is one more leg of the call, to the supervisor's softphone, either dialled
by the gateway (``start_monitor`` from the API: the gateway rings the supervisor's registered contact) or
dialled by the supervisor (a feature code, ``*1<agent>`` listen, ``*2<agent>`` coach, ``*3<agent>``
barge). Whatever the number of monitors and their modes, the call's listen matrix is recomputed from
scratch by ``apply``:

* every supervisor hears the caller and the agent;
* the caller hears the agent and every barge supervisor;
* the agent hears the caller, every coach and every barge supervisor;
* nobody hears a listen supervisor;
* while one party holds the call (a=sendonly/inactive), the other hears the queue's music on hold instead.

The matrix takes effect on the next 20 ms media tick. The caller's and the agent's SIP dialogs are never
touched: no re-INVITE, no INFO, no tone when a supervisor joins, changes mode or leaves. When the call ends,
every monitor leg gets BYE; a supervisor hanging up only removes their monitor.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mediagw.api.auth import ROLE_PERMISSIONS, required_permission_for_mode
from mediagw.api.control import Conflict, NotFound
from mediagw.errors import SdpError
from mediagw.media.ports import RtpPortsExhausted
from mediagw.sdp import SessionDescription, create_offer, process_answer
from mediagw.sip.endpoint import OutgoingCallAnswered, OutgoingCallFailed

if TYPE_CHECKING:
    from mediagw.calls import Call, CallManager, Leg

logger = logging.getLogger(__name__)

MODES = ("listen", "coach", "barge")
FEATURE_CODES = {"*1": "listen", "*2": "coach", "*3": "barge"}
"""Dialled by a registered supervisor: ``*1agent1`` listens to agent1's current call, and so on."""


@dataclass(eq=False)
class Monitor:
    """One supervisor on one call."""

    monitor_id: str
    supervisor_id: str
    mode: str
    leg: Leg
    started_at: float
    active: bool = False
    """True once the supervisor's phone answered (or, for a feature code, once we answered it)."""


class Supervision:
    """Monitors of every call and the listen matrix they imply."""

    def __init__(self, manager: CallManager, audit: Callable[[str, str, str, dict[str, Any]], None]) -> None:
        self.manager = manager
        self.audit = audit
        self._ids = itertools.count(1)
        self._monitors: dict[str, dict[str, Monitor]] = {}
        """call id -> monitor id -> monitor."""

    def monitors(self, call: Call) -> list[Monitor]:
        """The monitors of ``call``, oldest first."""
        return list(self._monitors.get(call.id, {}).values())

    def monitor_for_leg(self, call: Call, leg: Leg) -> Monitor | None:
        """The monitor whose leg is ``leg``."""
        for monitor in self.monitors(call):
            if monitor.leg is leg:
                return monitor
        return None

    # -- commands ---------------------------------------------------------------------------------------

    def start_monitor(self, call: Call, supervisor_id: str, mode: str, actor: str) -> Monitor:
        """Ring ``supervisor_id``'s registered phone; it joins ``call`` in ``mode`` once answered."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if call.ended:
            raise Conflict(f"call {call.id} has ended")
        supervisor = next((a for a in self.manager.profile.agents if a.id == supervisor_id), None)
        if supervisor is None or supervisor.role != "supervisor":
            raise NotFound(f"no supervisor {supervisor_id!r} in the profile")
        now = self.manager.now()
        bindings = self.manager.gateway.registrar.bindings(supervisor_id, now)
        if not bindings:
            raise Conflict(f"supervisor {supervisor_id!r} has no registered phone")
        binding = bindings[0]
        from mediagw.calls import LOCAL_CODECS, Leg

        try:
            media = self.manager.media.open_leg(nat=self.manager.profile.rtp.nat_latch)
        except (OSError, RtpPortsExhausted) as exc:
            raise Conflict(f"no RTP port available: {exc}") from None
        leg = Leg(-1, "supervisor", media)
        leg.local_sdp = create_offer(
            local_address=self.manager.profile.rtp.address, local_port=media.port, codecs=LOCAL_CODECS,
            session_id=leg.session_id, session_version=leg.session_version,
        )
        domain = self.manager.profile.sip.domain
        handle = self.manager.endpoint.invite(
            str(binding.contact.uri), binding.source, binding.transport,
            from_uri=f'"Monitor {call.number}" <sip:monitor@{domain}>', to_uri=f"<sip:{supervisor_id}@{domain}>",
            sdp=leg.local_sdp.serialize(), now=now,
        )
        leg.handle = handle
        media.owner = handle
        self.manager.add_leg(call, leg)
        monitor = self._add(call, supervisor_id, mode, leg)
        self.audit(actor, "monitor.start", call.id, {"monitor_id": monitor.monitor_id, "supervisor": supervisor_id,
                                                     "mode": mode})
        self.manager.gateway.pump()
        logger.info("call %s: ringing supervisor %s to %s (monitor %s)", call.id, supervisor_id, mode,
                    monitor.monitor_id)
        return monitor

    def change_mode(self, call: Call, monitor_id: str, mode: str, actor: str) -> Monitor:
        """Switch a monitor to ``mode`` from the next media tick, with no signalling to anyone."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        monitor = self._get(call, monitor_id)
        old = monitor.mode
        monitor.mode = mode
        self.apply(call)
        self.audit(actor, "monitor.change", call.id, {"monitor_id": monitor_id, "from": old, "to": mode,
                                                      "supervisor": monitor.supervisor_id})
        logger.info("call %s: monitor %s %s -> %s", call.id, monitor_id, old, mode)
        return monitor

    def stop_monitor(self, call: Call, monitor_id: str, actor: str) -> None:
        """End a monitor: BYE to the supervisor only."""
        monitor = self._get(call, monitor_id)
        self.audit(actor, "monitor.stop", call.id, {"monitor_id": monitor_id, "supervisor": monitor.supervisor_id})
        self._remove(call, monitor)
        self.manager.endpoint.hangup(monitor.leg.handle, now=self.manager.now())
        self.manager.gateway.pump()
        self.apply(call)

    def feature_code(self, user: str) -> tuple[str, str] | None:
        """``(mode, agent id)`` when ``user`` is a feature code (``*1agent1``), else None."""
        for prefix, mode in FEATURE_CODES.items():
            if user.startswith(prefix) and len(user) > len(prefix):
                return mode, user[len(prefix):]
        return None

    def permitted(self, supervisor_id: str, mode: str) -> bool:
        """Whether a supervisor may monitor in ``mode``: the permissions of their API tokens."""
        needed = required_permission_for_mode(mode)
        for token in self.manager.profile.api.tokens:
            if token.supervisor_id == supervisor_id or (token.role == "admin" and token.name == supervisor_id):
                granted = frozenset(token.permissions) or ROLE_PERMISSIONS[token.role]
                if needed in granted:
                    return True
        return False

    def join_dialled(self, call: Call, supervisor_id: str, mode: str, leg: Leg) -> Monitor:
        """A supervisor's own INVITE (feature code), already answered: it joins at once."""
        monitor = self._add(call, supervisor_id, mode, leg)
        monitor.active = True
        self.audit(f"sip:{supervisor_id}", "monitor.start", call.id,
                   {"monitor_id": monitor.monitor_id, "supervisor": supervisor_id, "mode": mode, "via": "feature-code"})
        self.apply(call)
        return monitor

    # -- SIP events of monitor legs ---------------------------------------------------------------------

    def on_leg_event(self, call: Call, leg: Leg, event: Any) -> None:
        """Answer or failure of a monitor leg we dialled."""
        monitor = self.monitor_for_leg(call, leg)
        if monitor is None:
            return
        if isinstance(event, OutgoingCallAnswered):
            try:
                assert leg.local_sdp is not None
                negotiated = process_answer(leg.local_sdp, SessionDescription.parse(event.response.body))
            except SdpError as exc:
                logger.warning("call %s: supervisor's SDP answer refused (%s)", call.id, exc)
                self.manager.endpoint.hangup(leg.handle, now=self.manager.now())
                return
            leg.negotiated = negotiated
            self.manager.media.connect(leg.media, negotiated)
            monitor.active = True
            self.apply(call)
            logger.info("call %s: supervisor %s joined in %s mode", call.id, monitor.supervisor_id, monitor.mode)
        elif isinstance(event, OutgoingCallFailed):
            logger.info("call %s: supervisor %s did not answer (%s)", call.id, monitor.supervisor_id, event.status)
            self._remove(call, monitor)
            self.manager.forget_leg(call, leg)

    def on_leg_ended(self, call: Call, leg: Leg) -> None:
        """A supervisor hung up: their monitor goes, the call goes on untouched."""
        monitor = self.monitor_for_leg(call, leg)
        if monitor is not None:
            self._remove(call, monitor)
            self.audit(f"sip:{monitor.supervisor_id}", "monitor.stop", call.id,
                       {"monitor_id": monitor.monitor_id, "supervisor": monitor.supervisor_id, "via": "hangup"})
            self.apply(call)

    def forget_call(self, call: Call) -> None:
        """The call is over."""
        self._monitors.pop(call.id, None)

    # -- the matrix -------------------------------------------------------------------------------------

    def apply(self, call: Call) -> None:
        """Recompute who hears whom on ``call`` (next tick); the two parties only once they are bridged."""
        media = self.manager.media
        caller = call.caller
        agent = self.manager.agent_leg(call)
        active = [m for m in self.monitors(call) if m.active and m.leg.media.slot is not None]
        parties = [caller] + ([agent] if agent is not None else [])
        for monitor in active:
            media.set_listen(monitor.leg.media, [(party.media, 1.0) for party in parties])
        if agent is None or not self.manager.is_bridged(call):
            return
        barge = [(m.leg.media, 1.0) for m in active if m.mode == "barge"]
        coach = [(m.leg.media, 1.0) for m in active if m.mode == "coach"]
        queues = self.manager.queues
        caller_moh = queues.music_on_hold_for(call, "caller") if queues is not None else None
        agent_moh = queues.music_on_hold_for(call, "agent") if queues is not None else None
        hears_agent = (caller_moh, 1.0) if caller_moh is not None else (agent.media, 1.0)
        hears_caller = (agent_moh, 1.0) if agent_moh is not None else (caller.media, 1.0)
        media.set_listen(caller.media, [hears_agent, *barge])
        media.set_listen(agent.media, [hears_caller, *coach, *barge])

    # -- bookkeeping ------------------------------------------------------------------------------------

    def _add(self, call: Call, supervisor_id: str, mode: str, leg: Leg) -> Monitor:
        monitor = Monitor(f"mon-{next(self._ids)}", supervisor_id, mode, leg, time.time())
        self._monitors.setdefault(call.id, {})[monitor.monitor_id] = monitor
        return monitor

    def _get(self, call: Call, monitor_id: str) -> Monitor:
        monitor = self._monitors.get(call.id, {}).get(monitor_id)
        if monitor is None:
            raise NotFound(f"no monitor {monitor_id!r} on call {call.id}")
        return monitor

    def _remove(self, call: Call, monitor: Monitor) -> None:
        self._monitors.get(call.id, {}).pop(monitor.monitor_id, None)
