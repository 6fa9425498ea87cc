"""The control plane the HTTP API drives, and the JSON models it speaks.

Theory of operation: the API never reaches into calls, the router or the recorder directly. The gateway
implements ``ControlPlane`` (async methods, all called on the gateway's loop) and hands it to
``mediagw.api.app.create_app``. Each method returns the pydantic models below, which are also the
published OpenAPI response schemas. Bad input is reported by raising:

* ``NotFound`` (HTTP 404): no such call, contact, monitor, agent, recording or chunk;
* ``Conflict`` (HTTP 409): the object exists but is in the wrong state (the call already ended, the agent
  is on a call, the recording is already paused, ...); ``mediagw.router.core.IllegalTransition`` is also
  answered with 409;
* ``ValueError`` (HTTP 400): any other invalid argument.

Permissions are checked by the API before a method is called; ``actor`` (``api:TOKEN-NAME``) is passed
to every mutating method for audit records. Times are Unix time in seconds (floats); durations are seconds.
Call, agent and queue changes are announced by the gateway on the ``mediagw.api.events.EventBus``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from mediagw.errors import MediagwError

CallState = Literal["queued", "ringing", "connected"]
"""queued: waiting in a queue; ringing: offered to an agent; connected: bridged to an agent."""
MonitorMode = Literal["listen", "coach", "barge"]
"""listen: hears both, heard by nobody; coach: also heard by the agent only; barge: heard by both."""
RecordingState = Literal["off", "recording", "paused", "stopped"]
AgentStateName = Literal["offline", "available", "reserved", "on_call", "after_call_work", "missed"]
"""The router's ``AgentState`` values; ``missed`` is RONA (ring-no-answer)."""
SettableAgentState = Literal["available", "offline"]


# ------------------------------------------------------------------------------------------------ errors


class ControlError(MediagwError):
    """A request the control plane refuses; ``http_status`` is the reply the API sends."""

    http_status: int = 400


class NotFound(ControlError):
    """The named object does not exist (HTTP 404)."""

    http_status = 404


class Conflict(ControlError):
    """The object is in a state that does not allow the request (HTTP 409)."""

    http_status = 409


# ------------------------------------------------------------------------------------------------ models


class _View(BaseModel):
    """Base of every response model: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class _Request(BaseModel):
    """Base of every request body: unknown fields are a 422."""

    model_config = ConfigDict(extra="forbid")


class MonitorView(_View):
    """A supervisor's monitor leg on a call."""

    monitor_id: str
    supervisor_id: str
    mode: MonitorMode
    started_at: float = Field(description="Unix time the monitor leg was started")


class CallView(_View):
    """A call in progress: queued, ringing an agent, or connected to one."""

    id: str = Field(description="call id (the contact id of the call's current contact)")
    state: CallState
    queue: str | None = Field(default=None, description="queue id, when the call went through a queue")
    agent: str | None = Field(default=None, description="agent id rung or connected")
    caller: str = Field(description="calling party (From user part or display)")
    number: str = Field(description="dialled number (Request-URI user part)")
    flags: list[str] = Field(default_factory=list, description="caller profile flags, e.g. vip")
    wait_seconds: float = Field(ge=0, description="time spent queued so far (or in total, once answered)")
    talk_seconds: float = Field(ge=0, description="time connected to the agent so far")
    monitors: list[MonitorView] = Field(default_factory=list, description="who is monitoring, in which mode")
    recording: RecordingState = "off"


class ContactView(_View):
    """One contact record (a call's journey: initiation, queue, agent, disconnect)."""

    id: str
    channel: str = Field(description="voice, task, ...")
    initiation: str = Field(description="inbound, outbound, callback, transfer, ...")
    initiated_at: float
    enqueued_at: float | None = None
    offered_at: float | None = None
    connected_at: float | None = None
    disconnected_at: float | None = None
    queue: str | None = None
    agent: str | None = None
    flags: list[str] = Field(default_factory=list)
    attributes: dict[str, str] = Field(default_factory=dict, description="reserved-attribute headers and more")
    disconnect_reason: str | None = Field(default=None, description="e.g. 'ended by supervisor'")
    previous_contact_id: str | None = Field(default=None, description="the contact this one continues")


class AgentView(_View):
    """An agent and its routing state."""

    id: str
    name: str
    state: AgentStateName
    state_since: float = Field(description="Unix time of the last state change")
    current_call: str | None = Field(default=None, description="call id the agent is reserved for or on")


class QueueView(_View):
    """A queue with its real-time figures."""

    id: str
    name: str
    waiting: int = Field(ge=0, description="contacts waiting")
    oldest_wait_seconds: float = Field(ge=0, description="wait of the oldest waiting contact, 0 when none")
    agents_available: int = Field(ge=0)
    agents_on_call: int = Field(ge=0)
    agents_in_acw: int = Field(ge=0, description="agents in after-call work")
    open_now: bool = Field(description="inside the queue's hours right now")


class RecordingChunkView(_View):
    """One chunk of a recording: a standalone playable file of at most the configured size."""

    index: int = Field(ge=0)
    size: int = Field(ge=0, description="bytes")
    duration_seconds: float = Field(ge=0)
    sha256: str
    local: bool = Field(description="still stored on this gateway (downloadable here)")
    export_state: str = Field(description="pending, exporting, exported, failed, ...")


class RecordingView(_View):
    """A recording of a contact, with its chunks in order and its export state."""

    id: str
    contact_id: str
    state: str = Field(description="recording, paused, finished, recovered, ...")
    media_type: str = Field(description="media type of every chunk, e.g. audio/wav")
    started_at: float
    duration_seconds: float = Field(ge=0)
    export_state: str = Field(description="overall export state: pending, exported, failed, ...")
    chunks: list[RecordingChunkView] = Field(default_factory=list)


class EndCallResult(_View):
    """The outcome of ending a call."""

    call_id: str
    disconnect_reason: str


class RecordingStateResult(_View):
    """A call's recording state after pause or resume."""

    call_id: str
    recording: RecordingState


class ErrorBody(_View):
    """The ``error`` member of every error response."""

    status: int = Field(description="HTTP status, repeated")
    message: str = Field(description="what went wrong, for a human")


class ErrorResponse(_View):
    """Every error the API returns: ``{"error": {"status": N, "message": "..."}}``."""

    error: ErrorBody


class StartMonitorRequest(_Request):
    """Body of ``POST /calls/{id}/monitors``."""

    supervisor_id: str = Field(min_length=1, max_length=128, description="the supervisor whose phone joins")
    mode: MonitorMode = "listen"


class ChangeMonitorRequest(_Request):
    """Body of ``PATCH /calls/{id}/monitors/{monitor_id}``."""

    mode: MonitorMode


class AgentStateRequest(_Request):
    """Body of ``POST /agents/{id}/state``."""

    state: SettableAgentState


# ------------------------------------------------------------------------------------------- the protocol


@runtime_checkable
class ControlPlane(Protocol):
    """What the gateway offers the API. Every method runs on the gateway's loop and may raise
    ``NotFound``, ``Conflict`` or ``ValueError`` (see the module docstring)."""

    async def list_calls(self) -> list[CallView]:
        """Calls in progress (queued, ringing, connected), oldest first."""
        ...

    async def get_call(self, call_id: str) -> CallView:
        """One call in progress; NotFound when it is not (or no longer) in progress."""
        ...

    async def get_contact(self, contact_id: str) -> ContactView:
        """One contact record, in progress or finished; NotFound when unknown."""
        ...

    async def start_monitor(self, call_id: str, supervisor_id: str, mode: MonitorMode, actor: str) -> MonitorView:
        """Ring ``supervisor_id``'s phone and join it to the call in ``mode``; the agent is not signalled.

        NotFound: no such call or supervisor. Conflict: the call is not connected, or this supervisor
        already monitors it.
        """
        ...

    async def change_monitor(self, call_id: str, monitor_id: str, mode: MonitorMode, actor: str) -> MonitorView:
        """Switch a monitor leg to ``mode`` (listen, coach, barge) without signalling the agent."""
        ...

    async def stop_monitor(self, call_id: str, monitor_id: str, actor: str) -> None:
        """End a monitor leg (BYE to the supervisor's phone); the call goes on."""
        ...

    async def end_call(self, call_id: str, actor: str) -> str:
        """End a call: BYE to both legs, disconnect reason 'ended by supervisor'; returns that reason."""
        ...

    async def list_agents(self) -> list[AgentView]:
        """Every configured agent with its routing state."""
        ...

    async def set_agent_state(self, agent_id: str, state: SettableAgentState, actor: str) -> AgentView:
        """Set an agent available or offline. Conflict when the router does not allow it now."""
        ...

    async def clear_rona(self, agent_id: str, actor: str) -> AgentView:
        """Clear an agent's RONA (missed) state back to available. Conflict when not in RONA."""
        ...

    async def list_queues(self) -> list[QueueView]:
        """Every queue with its real-time figures."""
        ...

    async def list_recordings(self, contact_id: str) -> list[RecordingView]:
        """The recordings of a contact (empty when it has none); NotFound when the contact is unknown."""
        ...

    async def read_chunk(self, recording_id: str, index: int) -> Path:
        """The local file of one chunk. NotFound: no such recording or chunk, or not stored here any more."""
        ...

    async def pause_recording(self, call_id: str, actor: str) -> RecordingState:
        """Pause a call's recording (redaction); returns the new state. Conflict when not recording."""
        ...

    async def resume_recording(self, call_id: str, actor: str) -> RecordingState:
        """Resume a paused recording; returns the new state. Conflict when not paused."""
        ...


CHUNK_MEDIA_TYPES: dict[str, str] = {
    ".wav": "audio/wav",
    ".opus": "audio/ogg",
    ".ogg": "audio/ogg",
}
"""Media type of a recording chunk by file suffix; anything else is served as octet-stream."""


def chunk_media_type(path: Path) -> str:
    """The media type a chunk file is served with."""
    return CHUNK_MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


def error_payload(status: int, message: str) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"status": status, "message": message}}
