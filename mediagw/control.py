"""The gateway's side of the HTTP control API: ``ControlPlane`` over calls, router, store and recordings.

Every method runs on the gateway's loop and reaches the other parts only through their service methods.
Call ids in the API are the contact id of a queued call (what a CRM knows) or the gateway's call id for
calls that never entered a queue (the test numbers).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mediagw.api.control import (
    AgentView,
    CallView,
    Conflict,
    ContactView,
    MonitorView,
    NotFound,
    QueueView,
    RecordingState,
    RecordingView,
)
from mediagw.store.contacts import DisconnectReason

if TYPE_CHECKING:
    from mediagw.calls import Call, CallManager
    from mediagw.router.service import AgentStatus, RouterService
    from mediagw.gateway import Gateway
    from mediagw.supervision import Monitor

ENDED_BY_SUPERVISOR = "ended by supervisor"


class GatewayControlPlane:
    """Implements ``mediagw.api.control.ControlPlane`` for one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def calls(self) -> CallManager:
        return self.gateway.calls

    def _call(self, call_id: str) -> Call:
        call = self.calls.find(call_id)
        if call is None or call.ended:
            raise NotFound(f"no live call {call_id!r}")
        return call

    def _view(self, call: Call) -> CallView:
        queued = self.calls.queues.queued(call) if self.calls.queues is not None else None
        now = time.time()
        if queued is None:
            state, queue, agent, flags = "connected", None, None, []
        else:
            state = {"connected": "connected", "ringing": "ringing", "whisper": "ringing"}.get(queued.state, "queued")
            queue, agent = queued.queue_id or None, queued.agent_id
            flags = sorted(self.gateway.router.contact_flags(queued.contact_id)) if self.gateway.router else []
        connected = call.connected_at
        return CallView(
            id=self.calls.api_id(call),
            state=state,  # type: ignore[arg-type]
            queue=queue,
            agent=agent,
            caller=call.caller_identity,
            number=call.number,
            flags=flags,
            wait_seconds=max(0.0, (connected or now) - call.started_at),
            talk_seconds=max(0.0, now - connected) if connected else 0.0,
            monitors=[_monitor_view(m) for m in self.calls.supervision.monitors(call)],
            recording=cast(RecordingState, self.calls.recording_state(call)),
        )

    async def list_calls(self) -> list[CallView]:
        return [self._view(call) for call in self.calls.live_calls()]

    async def get_call(self, call_id: str) -> CallView:
        return self._view(self._call(call_id))

    async def get_contact(self, contact_id: str) -> ContactView:
        store = self.gateway.contacts
        snapshot = await store.get(contact_id) if store is not None else None
        if snapshot is None:
            raise NotFound(f"no contact {contact_id!r}")
        fields = snapshot.api_fields()
        if fields.get("disconnect_reason") == DisconnectReason.ENDED_BY_SUPERVISOR.value:
            fields["disconnect_reason"] = ENDED_BY_SUPERVISOR
        return ContactView(**fields)

    async def start_monitor(self, call_id: str, supervisor_id: str, mode: str, actor: str) -> MonitorView:
        return _monitor_view(self.calls.supervision.start_monitor(self._call(call_id), supervisor_id, mode, actor))

    async def change_monitor(self, call_id: str, monitor_id: str, mode: str, actor: str) -> MonitorView:
        return _monitor_view(self.calls.supervision.change_mode(self._call(call_id), monitor_id, mode, actor))

    async def stop_monitor(self, call_id: str, monitor_id: str, actor: str) -> None:
        self.calls.supervision.stop_monitor(self._call(call_id), monitor_id, actor)

    async def end_call(self, call_id: str, actor: str) -> str:
        call = self._call(call_id)
        self.gateway.audit(actor, "call.end", call.id, {"api_id": call_id, "reason": ENDED_BY_SUPERVISOR})
        call.end_reason = DisconnectReason.ENDED_BY_SUPERVISOR.value
        self.calls.hangup(call, DisconnectReason.ENDED_BY_SUPERVISOR.value)
        return ENDED_BY_SUPERVISOR

    async def list_agents(self) -> list[AgentView]:
        router = self.gateway.router
        if router is None:
            return []
        return [_agent_view(status) for status in router.agents_status()]

    async def set_agent_state(self, agent_id: str, state: str, actor: str) -> AgentView:
        router = self._router_for(agent_id)
        status = router.set_agent_available(agent_id) if state == "available" else router.set_agent_offline(agent_id)
        self.gateway.audit(actor, "agent.state", agent_id, {"state": state}, subject_type="agent")
        return _agent_view(status)

    async def clear_rona(self, agent_id: str, actor: str) -> AgentView:
        status = self._router_for(agent_id).clear_rona(agent_id)
        self.gateway.audit(actor, "agent.clear_rona", agent_id, {}, subject_type="agent")
        return _agent_view(status)

    def _router_for(self, agent_id: str) -> RouterService:
        router = self.gateway.router
        if router is None or agent_id not in router.agent_ids():
            raise NotFound(f"no agent {agent_id!r}")
        return router

    async def list_queues(self) -> list[QueueView]:
        router = self.gateway.router
        if router is None:
            return []
        views = []
        for status in router.queue_status():
            figures = status.figures
            views.append(QueueView(
                id=status.queue_id, name=status.name, waiting=figures.contacts_waiting,
                oldest_wait_seconds=figures.oldest_wait or 0.0, agents_available=figures.agents_available,
                agents_on_call=figures.agents_on_call, agents_in_acw=figures.agents_in_acw,
                open_now=status.open_now,
            ))
        return views

    async def list_recordings(self, contact_id: str) -> list[RecordingView]:
        store = self.gateway.contacts
        if store is not None and await store.get(contact_id) is None:
            raise NotFound(f"no contact {contact_id!r}")
        recordings = self.gateway.recordings
        if recordings is None:
            return []
        return [RecordingView.model_validate(info, from_attributes=True)
                for info in await recordings.list_for_contact(contact_id)]

    async def read_chunk(self, recording_id: str, index: int) -> Path:
        recordings = self.gateway.recordings
        if recordings is None:
            raise NotFound("recording is not enabled on this gateway")
        from mediagw.recording.export import UnknownRecording
        from mediagw.recording.service import ChunkNotStored

        try:
            return await recordings.chunk_path(recording_id, index)
        except (UnknownRecording, ChunkNotStored) as exc:
            raise NotFound(str(exc)) from None

    async def pause_recording(self, call_id: str, actor: str) -> RecordingState:
        return self._pause_resume(call_id, actor, pause=True)

    async def resume_recording(self, call_id: str, actor: str) -> RecordingState:
        return self._pause_resume(call_id, actor, pause=False)

    def _pause_resume(self, call_id: str, actor: str, *, pause: bool) -> RecordingState:
        call = self._call(call_id)
        recording_id = self.calls.recording_id(call)
        recordings = self.gateway.recordings
        if recording_id is None or recordings is None:
            raise Conflict(f"call {call_id} is not being recorded")
        state = self.calls.recording_state(call)
        if pause and state != "recording":
            raise Conflict(f"the recording of call {call_id} is {state}")
        if not pause and state != "paused":
            raise Conflict(f"the recording of call {call_id} is {state}")
        (recordings.pause if pause else recordings.resume)(recording_id)
        self.gateway.audit(actor, "recording.pause" if pause else "recording.resume", call.id,
                           {"recording_id": recording_id})
        return "paused" if pause else "recording"


def _monitor_view(monitor: Monitor) -> MonitorView:
    return MonitorView(monitor_id=monitor.monitor_id, supervisor_id=monitor.supervisor_id,
                       mode=monitor.mode, started_at=monitor.started_at)  # type: ignore[arg-type]


def _agent_view(status: AgentStatus) -> AgentView:
    return AgentView(id=status.agent_id, name=status.name or status.agent_id, state=status.state.value,
                     state_since=status.state_since or 0.0, current_call=status.contact_id)

