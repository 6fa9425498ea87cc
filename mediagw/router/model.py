"""The router's vocabulary: errors, states, settings, events and read-only views.

``mediagw.router.core`` holds the state machine that uses them (and re-exports every name here).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

from mediagw.errors import LocalError

# --------------------------------------------------------------------------------------------------- errors


class RouterError(LocalError):
    """Misuse of the router API: unknown or duplicate id, invalid settings, wrong agent for a contact."""


class IllegalTransition(RouterError):
    """An input that the current state does not accept; names the record, its state and the input."""

    def __init__(self, kind: str, record_id: str, state: enum.Enum, event: str, detail: str = "") -> None:
        self.kind = kind
        self.record_id = record_id
        self.state = state
        self.event = event
        message = f"{kind} {record_id!r} is {state.name}: {event!r} is not allowed in that state"
        super().__init__(f"{message} ({detail})" if detail else message)


# --------------------------------------------------------------------------------------------------- states


class AgentState(enum.StrEnum):
    """Routing state of an agent (the value is what the API shows)."""

    OFFLINE = "offline"
    AVAILABLE = "available"
    RESERVED = "reserved"
    """Rung for a contact; waiting for the agent to answer."""
    ON_CALL = "on_call"
    AFTER_CALL_WORK = "after_call_work"
    MISSED = "missed"
    """RONA: did not answer (or was busy); not routable until cleared or recovered."""


class ContactState(enum.StrEnum):
    """Routing state of a contact."""

    QUEUED = "queued"
    OFFERED = "offered"
    CONNECTED = "connected"
    ENDED = "ended"


class OverflowAction(enum.StrEnum):
    """What happens to a contact that arrives at a full queue."""

    QUEUE = "queue"
    """Admit it to another queue (``QueueSettings.overflow_target``)."""
    MESSAGE = "message"
    """Play a message (``overflow_target`` names it) and hang up; the contact never enters the router."""
    REJECT = "reject"
    """Refuse the call with a SIP status (``QueueSettings.overflow_status``)."""


# --------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Routing settings of one queue."""

    queue_id: str
    """Unique id (profile key)."""
    name: str = ""
    """Display name (whisper "{call type} of {queue name}", dashboard); defaults to the id."""
    ring_timeout: float = 20.0
    """Seconds an agent is rung before RONA."""
    after_call_work: float = 0.0
    """Seconds of after-call work for agents whose own setting is ``None``."""
    max_size: int | None = None
    """Most contacts QUEUED or OFFERED at once; ``None`` is unlimited."""
    overflow_action: OverflowAction = OverflowAction.REJECT
    """What happens to a contact that finds the queue full."""
    overflow_target: str | None = None
    """Queue id for ``QUEUE``; message (prompt) name for ``MESSAGE``; unused for ``REJECT``."""
    overflow_status: int = 486
    """SIP status for ``REJECT`` (486 Busy Here by default, RFC 3261 §21.4.24)."""
    decline_reoffer_delay: float = 10.0
    """Seconds a declined contact is kept away from the agent who declined it."""

    def __post_init__(self) -> None:
        where = f"queue {self.queue_id!r}"
        if not self.queue_id:
            raise RouterError("queue_id must not be empty")
        if not (self.ring_timeout > 0 and math.isfinite(self.ring_timeout)):
            raise RouterError(f"{where}: ring_timeout must be a positive number of seconds")
        if not (self.after_call_work >= 0 and math.isfinite(self.after_call_work)):
            raise RouterError(f"{where}: after_call_work must be >= 0 seconds")
        if not (self.decline_reoffer_delay >= 0 and math.isfinite(self.decline_reoffer_delay)):
            raise RouterError(f"{where}: decline_reoffer_delay must be >= 0 seconds")
        if self.max_size is not None and self.max_size < 0:
            raise RouterError(f"{where}: max_size must be >= 0 or None")
        if self.overflow_action is not OverflowAction.REJECT and not self.overflow_target:
            raise RouterError(f"{where}: overflow action {self.overflow_action.value} needs overflow_target")
        if self.overflow_action is OverflowAction.QUEUE and self.overflow_target == self.queue_id:
            raise RouterError(f"{where}: a queue cannot overflow into itself")
        if not 400 <= self.overflow_status <= 699:
            raise RouterError(f"{where}: overflow_status must be a SIP final error status (400-699)")

    @property
    def display_name(self) -> str:
        """``name`` or, when empty, the id."""
        return self.name or self.queue_id


@dataclass(frozen=True, slots=True)
class RoutingProfile:
    """The queues an agent takes, each with a priority (lower number = served first)."""

    queues: tuple[tuple[str, int], ...]
    """``(queue_id, priority)`` pairs; a queue appears once."""
    voice_concurrency: int = 1
    """Voice contacts at once; only 1 is supported."""

    def __post_init__(self) -> None:
        ids = [queue_id for queue_id, _ in self.queues]
        if len(set(ids)) != len(ids):
            raise RouterError(f"routing profile lists a queue twice: {ids}")
        if self.voice_concurrency != 1:
            raise RouterError("routing profile: voice_concurrency must be 1")

    @classmethod
    def of(cls, queues: Mapping[str, int]) -> RoutingProfile:
        """Build a profile from ``{queue_id: priority}``."""
        return cls(tuple(queues.items()))

    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Queue ids grouped by priority, best level first; ids sorted inside a level."""
        by_priority: dict[int, list[str]] = {}
        for queue_id, priority in self.queues:
            by_priority.setdefault(priority, []).append(queue_id)
        return tuple(tuple(sorted(by_priority[p])) for p in sorted(by_priority))


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Routing settings of one agent."""

    agent_id: str
    """Unique id; also the tie-breaker between agents idle equally long."""
    routing_profile: RoutingProfile
    """The queues the agent takes and their priorities."""
    after_call_work: float | None = None
    """Seconds of after-call work; ``None`` uses the queue's setting."""
    rona_recovery: float | None = None
    """Seconds after a missed offer before the agent is AVAILABLE again; ``None``: only when cleared."""

    def __post_init__(self) -> None:
        if not self.agent_id:
            raise RouterError("agent_id must not be empty")
        for name in ("after_call_work", "rona_recovery"):
            value = getattr(self, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise RouterError(f"agent {self.agent_id!r}: {name} must be >= 0 seconds or None")


# --------------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class RouterEvent:
    """Base class of everything :meth:`Router.next_event` returns."""


@dataclass(frozen=True, slots=True)
class ContactEnqueued(RouterEvent):
    """A contact entered a queue (first arrival, or admission to an overflow queue)."""

    contact_id: str
    """The contact."""
    queue_id: str
    """The queue it now waits in."""
    enqueued_at: float
    """Its original enqueue time, which orders it in the queue."""
    position: int
    """1-based position among the queue's waiting contacts right after it entered."""


@dataclass(frozen=True, slots=True)
class AgentReserved(RouterEvent):
    """An agent was chosen for a contact: ring the agent now."""

    contact_id: str
    """The contact offered."""
    agent_id: str
    """The agent to ring."""
    queue_id: str
    """The queue the contact was taken from (whisper, statistics)."""
    ring_timeout: float
    """Seconds the router waits for ``agent_answered`` before RONA."""


@dataclass(frozen=True, slots=True)
class AgentRingTimedOut(RouterEvent):
    """An agent did not answer within the ring timeout: stop ringing (CANCEL). The agent goes MISSED."""

    contact_id: str
    """The contact that was offered."""
    agent_id: str
    """The agent who did not answer."""
    queue_id: str
    """The contact's queue."""


@dataclass(frozen=True, slots=True)
class ContactRequeued(RouterEvent):
    """A contact is waiting again: an offer came back, or it was transferred."""

    contact_id: str
    """The contact."""
    queue_id: str
    """The queue it now waits in (the target queue for a transfer)."""
    agent_id: str | None
    """The agent it came back from, if any."""
    reason: str
    """``ring_timeout``, ``declined``, ``busy``, ``agent_offline``, ``agent_logout`` or ``transferred``."""
    position: int
    """1-based position among the queue's waiting contacts right after requeueing."""


@dataclass(frozen=True, slots=True)
class ContactConnected(RouterEvent):
    """Caller and agent are bridged."""

    contact_id: str
    """The contact."""
    agent_id: str
    """The agent it is connected to."""
    queue_id: str
    """The queue it was taken from."""
    wait: float
    """Seconds from the original enqueue time to the connection."""


@dataclass(frozen=True, slots=True)
class ContactAbandoned(RouterEvent):
    """A contact ended before it was connected (followed by :class:`ContactEnded` with ``"abandoned"``)."""

    contact_id: str
    """The contact."""
    queue_id: str
    """The queue it was in."""
    agent_id: str | None
    """The agent that was being rung (or hearing the whisper) at the time, if any."""
    wait: float
    """Seconds from the original enqueue time to the abandon."""
    cause: str
    """The reason the owner gave to ``contact_ended`` (e.g. ``caller_hangup``)."""


@dataclass(frozen=True, slots=True)
class ContactOverflowed(RouterEvent):
    """A contact found its queue full; ``action`` says what to do with it."""

    contact_id: str
    """The contact."""
    queue_id: str
    """The full queue."""
    action: OverflowAction
    """``QUEUE``: it was admitted to ``target`` (or overflowed again); ``MESSAGE``/``REJECT``: it is not in
    the router, the owner plays ``target`` or answers ``status_code``."""
    target: str | None
    """Target queue id (``QUEUE``) or message name (``MESSAGE``); ``None`` for ``REJECT``."""
    status_code: int | None
    """SIP status to answer with for ``REJECT``; ``None`` otherwise."""
    reason_phrase: str | None
    """Reason phrase for ``status_code`` (RFC 3261 §21); ``None`` otherwise."""


@dataclass(frozen=True, slots=True)
class AgentStateChanged(RouterEvent):
    """An agent changed state."""

    agent_id: str
    """The agent."""
    old: AgentState
    """State before."""
    new: AgentState
    """State after."""
    reason: str
    """What caused it: the input name (``login``, ``answered``, ``ring_timeout``, ``call_ended``,
    ``acw_ended`` ...)."""


@dataclass(frozen=True, slots=True)
class ContactEnded(RouterEvent):
    """A contact left the router for good; it is forgotten after this event."""

    contact_id: str
    """The contact."""
    queue_id: str
    """The queue it was last in."""
    agent_id: str | None
    """The agent it was with (connected, or being rung), if any."""
    reason: str
    """Disconnect reason: ``"abandoned"`` if it never connected, else the owner's reason."""


# --------------------------------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """Live figures of one queue for the API and dashboard."""

    queue_id: str
    """The queue."""
    name: str
    """Display name."""
    contacts_waiting: int
    """Contacts QUEUED."""
    contacts_offered: int
    """Contacts OFFERED (an agent is being rung or hears the whisper)."""
    oldest_wait: float | None
    """Seconds the oldest QUEUED contact has waited since its original enqueue time; ``None`` if none."""
    agents_staffed: int
    """Logged-in agents whose profile includes the queue."""
    agents_available: int
    """Of those, AVAILABLE."""
    agents_reserved: int
    """Of those, RESERVED (for any queue)."""
    agents_on_call: int
    """Of those, ON_CALL (for any queue)."""
    agents_in_acw: int
    """Of those, in AFTER_CALL_WORK."""
    agents_missed: int
    """Of those, MISSED."""


@dataclass(frozen=True, slots=True)
class AgentView:
    """Read-only snapshot of an agent."""

    agent_id: str
    """The agent."""
    state: AgentState
    """Routing state."""
    logged_in: bool
    """Whether the agent has a session (OFFLINE agents may be logged in with status offline)."""
    state_since: float | None
    """When the current state began; ``None`` before the first change."""
    idle_since: float | None
    """Start of the current idle period (meaningful while AVAILABLE)."""
    contact_id: str | None
    """The contact the agent is reserved for or on, if any."""
    queue_id: str | None
    """That contact's queue."""
    pending_offline: bool
    """Goes OFFLINE (or logs out) when the current call's after-call work ends."""


@dataclass(frozen=True, slots=True)
class ContactView:
    """Read-only snapshot of a live contact."""

    contact_id: str
    """The contact."""
    queue_id: str
    """Its queue."""
    state: ContactState
    """Routing state."""
    enqueued_at: float
    """Original enqueue time."""
    priority: int
    """Contact priority (lower first)."""
    flags: frozenset[str]
    """Caller profile flags (see :mod:`mediagw.router.flags`)."""
    attributes: Mapping[str, str]
    """Contact attributes (read-only)."""
    agent_id: str | None
    """The agent it is offered to or connected with."""
    position: int | None
    """1-based position among the queue's waiting contacts; ``None`` unless QUEUED."""
    declined_until: Mapping[str, float]
    """Agents it is kept away from after they declined it, and until when."""
