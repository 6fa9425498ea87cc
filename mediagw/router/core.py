"""Contact routing core: queues, agents and contacts as one pure state machine.

Theory of operation
===================

The :class:`Router` is sans-I/O in the aioquic manner: it never reads a clock, never sleeps and never touches
a socket. Every command takes ``now`` (float epoch seconds, any monotonic base works as long as it is the
same everywhere) and returns nothing; what happened comes out of :meth:`Router.next_event`, and the one
deadline the owner must wake up for comes out of :meth:`Router.get_timer` and is fed back with
:meth:`Router.handle_timer`. ``mediagw/router/service.py`` is the asyncio glue around it.

Three kinds of record live here:

* **Queues** (:class:`QueueSettings`): ring timeout, after-call work (ACW) seconds, a size limit with an
  overflow action, and how long a declined contact stays away from the agent who declined it.
* **Agents** (:class:`AgentSettings`): a routing profile (queues with a priority, lower number = higher
  priority; voice concurrency 1) and the agent's state, one of :class:`AgentState`.
* **Contacts**: one per queued caller, in one of :class:`ContactState`.

Ordering
--------
Inside a queue, waiting contacts are ordered by the key ``(priority, enqueued_at, arrival sequence)``:
contact priority first (lower number first, default 0, negative numbers jump ahead), then the *original*
enqueue time, then the order in which the router first saw them (ties on equal timestamps).

The original enqueue time is kept:

* when an offer comes back (ring timeout / RONA, decline, busy, the agent going offline while rung): the
  contact returns to exactly its old place, ahead of everybody who arrived after it;
* when a contact is moved with :meth:`Router.transfer_contact` and ``keep_place=True``: it joins the
  target queue as if it had arrived there at its original enqueue time. With ``keep_place=False`` it gets
  ``now`` as its new enqueue time and a fresh sequence number, i.e. it joins at the back;
* when the owner re-creates a contact with ``enqueue(..., enqueued_at=t)`` (e.g. after a node restart).

Overflow into another queue at admission is a first arrival there, so the enqueue time is ``now``.

The offer rule (who gets what)
------------------------------
After every command and every timer the router runs one *dispatch pass*:

1. Take every AVAILABLE agent, sorted by ``(idle_since, agent_id)``: the agent idle longest goes first,
   ties broken by agent id (string order).
2. For that agent, walk its routing profile by priority level, best level first. At the first level that
   has an eligible waiting contact in any of its queues, take the contact with the smallest ordering key
   across *all* queues of that level (so two queues at the same level are served oldest-first between
   them). A contact is eligible for an agent unless that agent declined it less than the queue's
   ``decline_reoffer_delay`` ago.
3. Reserve that agent for that contact (agent RESERVED, contact OFFERED, :class:`AgentReserved` emitted),
   and go on with the next agent.

One pass is enough: a reservation only removes a contact and an agent, so an agent that found nothing
eligible will not find anything later in the same pass. Consequences worth knowing:

* With several agents and several queues competing, the *agent* order decides first: the longest-idle agent
  takes the best contact by *its own* profile, even if that contact is the best one for a later agent too.
* A queue that is priority 1 for one agent and priority 2 for another is drained first by the former.
* A contact is never offered to two agents at once and an agent is never reserved for two contacts (voice
  concurrency 1): both sides of a reservation point at each other until it ends.

Agent states and transitions
----------------------------
``_AGENT_TRANSITIONS`` is the whole table; anything not in it raises :class:`IllegalTransition` naming the
agent, its state and the input. Notes on the decisions it encodes:

* ``idle_since`` is set whenever an agent becomes AVAILABLE from OFFLINE, AFTER_CALL_WORK or MISSED
  (login, ready after wrap-up, RONA cleared). An offer that comes to nothing (declined, or the caller hung
  up while it rang) gives the agent back its old ``idle_since``, i.e. its old place in line.
* **Decline** (``agent_declined(..., busy=False)``, e.g. 603 from the softphone): the agent returns to
  AVAILABLE at once, the contact returns to its place, and the contact is not offered to *that* agent again
  for the queue's ``decline_reoffer_delay`` seconds (a timer re-runs dispatch when it lapses). Other agents
  may take it at once.
* **Busy** (``busy=True``, e.g. 486 from the softphone): the device cannot take calls, so the agent is
  treated like a ring timeout and goes MISSED.
* **Ring timeout**: when ``ring_timeout`` seconds pass without an answer, :class:`AgentRingTimedOut` is
  emitted, the agent goes MISSED (RONA, "redirect on no answer"), and the contact returns to its place and
  is offered to the next agent. MISSED lasts until :meth:`Router.clear_rona`,
  :meth:`Router.set_agent_available`, or the agent's ``rona_recovery`` seconds (``None``: manual only).
* **Answer and connect** are two steps: ``agent_answered`` (200 OK from the agent: agent ON_CALL while the
  whisper/countdown plays) and ``contact_connected`` (the bridge joined caller and agent: contact
  CONNECTED). A contact that ends before it is CONNECTED is *abandoned* (reason ``"abandoned"``, the
  caller's reason kept as ``cause`` on :class:`ContactAbandoned`); an agent that was ringing or listening
  to the whisper goes straight back to AVAILABLE with its old ``idle_since`` and no after-call work.
  Reporting an answer for an offer that is no longer current (a 200 OK crossing the CANCEL sent after
  :class:`AgentRingTimedOut`) raises :class:`IllegalTransition`: the owner checks :meth:`Router.contact`
  first, or catches it, and hangs that agent leg up (ACK + BYE).
* **After-call work**: when a connected contact ends (or is transferred away), its agent goes
  AFTER_CALL_WORK for the agent's ``after_call_work`` seconds if set, else the queue's; 0 still emits the
  ON_CALL -> AFTER_CALL_WORK -> AVAILABLE pair so that the event stream is the same shape every time.
  ``set_agent_available`` during ACW ends it early.
* **Offline while busy**: ``set_agent_offline`` / ``agent_logout`` while RESERVED cancel the offer (the
  contact goes back to its place). While ON_CALL they are remembered and applied when the agent would next
  become AVAILABLE (after ACW); ``set_agent_available`` while ON_CALL cancels such a pending change.
* ``agent_login`` / ``agent_logout`` open and close the agent's session; ``set_agent_offline`` /
  ``set_agent_available`` change the status of a logged-in agent.

Contacts: QUEUED -> OFFERED -> CONNECTED -> ENDED, with OFFERED -> QUEUED when an offer comes back and
QUEUED/CONNECTED -> QUEUED on transfer (``_CONTACT_TRANSITIONS``). An ENDED contact is forgotten right after
:class:`ContactEnded`; its id may be reused.

Size limit and overflow
-----------------------
A queue's size is its contacts in QUEUED or OFFERED state. ``enqueue`` into a queue at ``max_size`` emits
:class:`ContactOverflowed` and applies the queue's :class:`OverflowAction`: ``QUEUE`` admits the contact to
``overflow_target`` instead (whose own limit applies in turn), ``MESSAGE`` and ``REJECT`` leave the contact
out of the router altogether (the owner plays ``overflow_target`` or answers with ``overflow_status``).
Overflow targets must exist when a queue is added, so overflow chains cannot loop. Transfers are not subject
to the size limit: the caller was admitted already.

Timers
------
Deadlines: an agent's ring timeout (RESERVED), ACW end (AFTER_CALL_WORK), RONA recovery (MISSED), and the end
of a decline exclusion on a waiting contact. :meth:`Router.handle_timer` replays every deadline that is due,
in deadline order (ties: ring timeouts, then ACW ends, then RONA recoveries, then exclusions, each by id),
each *at its own deadline time*, so that a late wake-up gives the same result as a punctual one.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mediagw.errors import SIP_REASONS
from mediagw.router.model import (
    AgentReserved,
    AgentRingTimedOut,
    AgentSettings,
    AgentState,
    AgentStateChanged,
    AgentView,
    ContactAbandoned,
    ContactConnected,
    ContactEnded,
    ContactEnqueued,
    ContactOverflowed,
    ContactRequeued,
    ContactState,
    ContactView,
    IllegalTransition,
    OverflowAction,
    QueueFigures,
    QueueSettings,
    RouterError,
    RouterEvent,
    RoutingProfile,
)

__all__ = [
    "AgentReserved",
    "AgentRingTimedOut",
    "AgentSettings",
    "AgentState",
    "AgentStateChanged",
    "AgentView",
    "ContactAbandoned",
    "ContactConnected",
    "ContactEnded",
    "ContactEnqueued",
    "ContactOverflowed",
    "ContactRequeued",
    "ContactState",
    "ContactView",
    "IllegalTransition",
    "OverflowAction",
    "QueueFigures",
    "QueueSettings",
    "Router",
    "RouterError",
    "RouterEvent",
    "RoutingProfile",
]

ABANDONED = "abandoned"
"""``ContactEnded.reason`` of every contact that ended before it was connected to an agent."""



class _AgentInput(enum.StrEnum):
    LOGIN = "login"
    LOGOUT = "logout"
    SET_AVAILABLE = "set_available"
    SET_OFFLINE = "set_offline"
    RESERVE = "reserved"
    ANSWER = "answered"
    DECLINE = "declined"
    BUSY = "busy"
    RING_TIMEOUT = "ring_timeout"
    OFFER_CANCELLED = "offer_cancelled"
    CALL_ENDED = "call_ended"
    ACW_ENDED = "acw_ended"
    CLEAR_RONA = "clear_rona"
    RONA_RECOVERED = "rona_recovered"


class _ContactInput(enum.StrEnum):
    OFFER = "offer"
    REQUEUE = "requeue"
    ANSWER = "answer"
    CONNECT = "connect"
    TRANSFER = "transfer"
    END = "end"


_A = AgentState
_I = _AgentInput

_AGENT_TRANSITIONS: Mapping[tuple[AgentState, _AgentInput], AgentState] = MappingProxyType(
    {
        (_A.OFFLINE, _I.LOGIN): _A.AVAILABLE,
        (_A.OFFLINE, _I.SET_AVAILABLE): _A.AVAILABLE,
        (_A.OFFLINE, _I.SET_OFFLINE): _A.OFFLINE,
        (_A.OFFLINE, _I.LOGOUT): _A.OFFLINE,
        (_A.AVAILABLE, _I.RESERVE): _A.RESERVED,
        (_A.AVAILABLE, _I.SET_AVAILABLE): _A.AVAILABLE,
        (_A.AVAILABLE, _I.SET_OFFLINE): _A.OFFLINE,
        (_A.AVAILABLE, _I.LOGOUT): _A.OFFLINE,
        (_A.RESERVED, _I.ANSWER): _A.ON_CALL,
        (_A.RESERVED, _I.DECLINE): _A.AVAILABLE,
        (_A.RESERVED, _I.BUSY): _A.MISSED,
        (_A.RESERVED, _I.RING_TIMEOUT): _A.MISSED,
        (_A.RESERVED, _I.OFFER_CANCELLED): _A.AVAILABLE,
        (_A.RESERVED, _I.SET_OFFLINE): _A.OFFLINE,
        (_A.RESERVED, _I.LOGOUT): _A.OFFLINE,
        # (ON_CALL, SET_OFFLINE | LOGOUT) are deferred, not transitions: see the module docstring.
        (_A.ON_CALL, _I.CALL_ENDED): _A.AFTER_CALL_WORK,
        (_A.ON_CALL, _I.OFFER_CANCELLED): _A.AVAILABLE,
        (_A.AFTER_CALL_WORK, _I.ACW_ENDED): _A.AVAILABLE,
        (_A.AFTER_CALL_WORK, _I.SET_AVAILABLE): _A.AVAILABLE,
        (_A.AFTER_CALL_WORK, _I.SET_OFFLINE): _A.OFFLINE,
        (_A.AFTER_CALL_WORK, _I.LOGOUT): _A.OFFLINE,
        (_A.MISSED, _I.CLEAR_RONA): _A.AVAILABLE,
        (_A.MISSED, _I.RONA_RECOVERED): _A.AVAILABLE,
        (_A.MISSED, _I.SET_AVAILABLE): _A.AVAILABLE,
        (_A.MISSED, _I.SET_OFFLINE): _A.OFFLINE,
        (_A.MISSED, _I.LOGOUT): _A.OFFLINE,
    }
)
"""(agent state, input) -> next state. Anything missing is an :class:`IllegalTransition`."""

_IDLE_RESET_FROM = frozenset({_A.OFFLINE, _A.AFTER_CALL_WORK, _A.MISSED})
"""Becoming AVAILABLE from these states starts a new idle period (``idle_since = now``)."""

_C = ContactState
_CI = _ContactInput

_CONTACT_TRANSITIONS: Mapping[tuple[ContactState, _ContactInput], ContactState] = MappingProxyType(
    {
        (_C.QUEUED, _CI.OFFER): _C.OFFERED,
        (_C.QUEUED, _CI.TRANSFER): _C.QUEUED,
        (_C.QUEUED, _CI.END): _C.ENDED,
        (_C.OFFERED, _CI.REQUEUE): _C.QUEUED,
        (_C.OFFERED, _CI.ANSWER): _C.OFFERED,
        (_C.OFFERED, _CI.CONNECT): _C.CONNECTED,
        (_C.OFFERED, _CI.END): _C.ENDED,
        (_C.CONNECTED, _CI.TRANSFER): _C.QUEUED,
        (_C.CONNECTED, _CI.END): _C.ENDED,
    }
)
"""(contact state, input) -> next state. Anything missing is an :class:`IllegalTransition`."""


# --------------------------------------------------------------------------------------------------- records


@dataclass(slots=True)
class _Queue:
    settings: QueueSettings
    waiting: list[tuple[int, float, int, str]] = field(default_factory=list)
    """Sort keys ``(priority, enqueued_at, sequence, contact_id)`` of QUEUED contacts, in order."""
    offered: int = 0


@dataclass(slots=True)
class _Agent:
    settings: AgentSettings
    levels: tuple[tuple[str, ...], ...]
    state: AgentState = AgentState.OFFLINE
    logged_in: bool = False
    state_since: float | None = None
    idle_since: float | None = None
    contact_id: str | None = None
    queue_id: str | None = None
    """Queue of the current or last contact (after-call work uses it)."""
    deadline: float | None = None
    pending: _AgentInput | None = None


@dataclass(slots=True)
class _Contact:
    contact_id: str
    queue_id: str
    enqueued_at: float
    sequence: int
    priority: int
    flags: frozenset[str]
    attributes: Mapping[str, str]
    state: ContactState = ContactState.QUEUED
    agent_id: str | None = None
    answered: bool = False
    declined_until: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, float, int, str]:
        return (self.priority, self.enqueued_at, self.sequence, self.contact_id)


_TIMER_RANK = {_A.RESERVED: 0, _A.AFTER_CALL_WORK: 1, _A.MISSED: 2}
_EXCLUSION_RANK = 3


# --------------------------------------------------------------------------------------------------- router


class Router:
    """Queues, agents and contacts; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._agents: dict[str, _Agent] = {}
        self._contacts: dict[str, _Contact] = {}
        self._events: deque[RouterEvent] = deque()
        self._sequence = itertools.count()

    # ------------------------------------------------------------------ configuration

    def add_queue(self, settings: QueueSettings) -> None:
        """Add a queue. Raises :class:`RouterError` for a duplicate id or an unknown overflow queue."""
        if settings.queue_id in self._queues:
            raise RouterError(f"queue {settings.queue_id!r} exists already")
        if settings.overflow_action is OverflowAction.QUEUE and settings.overflow_target not in self._queues:
            raise RouterError(
                f"queue {settings.queue_id!r}: overflow queue {settings.overflow_target!r} is unknown "
                "(add overflow targets first)"
            )
        self._queues[settings.queue_id] = _Queue(settings)

    def add_agent(self, settings: AgentSettings) -> None:
        """Add an agent, OFFLINE and logged out. Raises :class:`RouterError` for a duplicate id or a profile
        naming an unknown queue."""
        if settings.agent_id in self._agents:
            raise RouterError(f"agent {settings.agent_id!r} exists already")
        for queue_id, _ in settings.routing_profile.queues:
            if queue_id not in self._queues:
                raise RouterError(
                    f"agent {settings.agent_id!r}: routing profile names unknown queue {queue_id!r}"
                )
        self._agents[settings.agent_id] = _Agent(settings, settings.routing_profile.levels())

    # ------------------------------------------------------------------ agent commands

    def agent_login(self, agent_id: str, now: float) -> None:
        """Open the agent's session; the agent becomes AVAILABLE."""
        agent = self._agent(agent_id)
        if agent.logged_in:
            raise IllegalTransition("agent", agent_id, agent.state, _I.LOGIN.value, "already logged in")
        agent.logged_in = True
        agent.pending = None
        self._agent_input(agent, _I.LOGIN, now)
        self._dispatch(now)

    def agent_logout(self, agent_id: str, now: float) -> None:
        """Close the agent's session (OFFLINE); deferred to the end of after-call work while ON_CALL."""
        agent = self._agent(agent_id)
        if not agent.logged_in:
            raise IllegalTransition("agent", agent_id, agent.state, _I.LOGOUT.value, "not logged in")
        self._go_offline(agent, _I.LOGOUT, now)

    def set_agent_offline(self, agent_id: str, now: float) -> None:
        """Set a logged-in agent's status to OFFLINE; deferred to the end of after-call work while ON_CALL."""
        agent = self._logged_in_agent(agent_id, _I.SET_OFFLINE)
        self._go_offline(agent, _I.SET_OFFLINE, now)

    def set_agent_available(self, agent_id: str, now: float) -> None:
        """Make a logged-in agent AVAILABLE (ends ACW or MISSED early). While RESERVED or ON_CALL it only
        cancels a pending offline/logout."""
        agent = self._logged_in_agent(agent_id, _I.SET_AVAILABLE)
        agent.pending = None
        if agent.state in (_A.RESERVED, _A.ON_CALL):
            return
        self._agent_input(agent, _I.SET_AVAILABLE, now)
        self._dispatch(now)

    def clear_rona(self, agent_id: str, now: float) -> None:
        """Return a MISSED agent to AVAILABLE."""
        agent = self._agent(agent_id)
        self._agent_input(agent, _I.CLEAR_RONA, now)
        self._dispatch(now)

    # ------------------------------------------------------------------ contact commands

    def enqueue(
        self,
        contact_id: str,
        queue_id: str,
        now: float,
        *,
        flags: Iterable[str] = (),
        attributes: Mapping[str, str] | None = None,
        priority: int = 0,
        enqueued_at: float | None = None,
    ) -> None:
        """Admit a new contact to a queue (or overflow it); ``enqueued_at`` defaults to ``now``.

        Emits :class:`ContactEnqueued` or :class:`ContactOverflowed` (then possibly :class:`ContactEnqueued`
        for the overflow queue). Raises :class:`RouterError` for a live duplicate id or unknown queue.
        """
        if contact_id in self._contacts:
            raise RouterError(f"contact {contact_id!r} exists already")
        self._queue(queue_id)
        contact = _Contact(
            contact_id=contact_id,
            queue_id=queue_id,
            enqueued_at=now if enqueued_at is None else enqueued_at,
            sequence=next(self._sequence),
            priority=priority,
            flags=frozenset(flags),
            attributes=MappingProxyType(dict(attributes or {})),
        )
        target: str | None = queue_id
        while target is not None:
            queue = self._queues[target]
            settings = queue.settings
            if settings.max_size is None or len(queue.waiting) + queue.offered < settings.max_size:
                contact.queue_id = target
                self._contacts[contact_id] = contact
                self._insert(contact)
                self._events.append(
                    ContactEnqueued(contact_id, target, contact.enqueued_at, self._position(contact))
                )
                break
            action = settings.overflow_action
            status = settings.overflow_status if action is OverflowAction.REJECT else None
            self._events.append(
                ContactOverflowed(
                    contact_id,
                    target,
                    action,
                    None if action is OverflowAction.REJECT else settings.overflow_target,
                    status,
                    None if status is None else SIP_REASONS.get(status, "Rejected"),
                )
            )
            target = settings.overflow_target if action is OverflowAction.QUEUE else None
        self._dispatch(now)

    def agent_answered(self, contact_id: str, agent_id: str, now: float) -> None:
        """The rung agent answered (200 OK): agent ON_CALL; the contact stays OFFERED until
        :meth:`contact_connected`."""
        contact, agent = self._offer(contact_id, agent_id, _CI.ANSWER)
        if contact.answered:
            raise IllegalTransition(
                "contact", contact_id, contact.state, _CI.ANSWER.value, "answered already"
            )
        self._agent_input(agent, _I.ANSWER, now)
        self._contact_input(contact, _CI.ANSWER)
        contact.answered = True

    def agent_declined(self, contact_id: str, agent_id: str, now: float, busy: bool = False) -> None:
        """The rung agent declined (``busy=False``: back to AVAILABLE, not offered this contact again for the
        queue's ``decline_reoffer_delay``) or was busy (``busy=True``: MISSED). The contact keeps its place."""
        contact, agent = self._offer(contact_id, agent_id, _CI.REQUEUE)
        if contact.answered:
            raise IllegalTransition("contact", contact_id, contact.state, "declined", "the agent answered it")
        self._agent_input(agent, _I.BUSY if busy else _I.DECLINE, now, contact_done=True)
        self._requeue(contact, "busy" if busy else "declined", agent_id, now)
        if not busy:
            delay = self._queues[contact.queue_id].settings.decline_reoffer_delay
            if delay > 0:
                contact.declined_until[agent_id] = now + delay
        self._dispatch(now)

    def contact_connected(self, contact_id: str, now: float) -> None:
        """Caller and the answering agent are bridged: contact CONNECTED."""
        contact = self._contact(contact_id)
        if contact.state is _C.OFFERED and not contact.answered:
            raise IllegalTransition(
                "contact", contact_id, contact.state, _CI.CONNECT.value, "agent has not answered"
            )
        self._contact_input(contact, _CI.CONNECT)
        self._queues[contact.queue_id].offered -= 1
        assert contact.agent_id is not None
        self._events.append(
            ContactConnected(contact_id, contact.agent_id, contact.queue_id, now - contact.enqueued_at)
        )

    def contact_ended(self, contact_id: str, now: float, reason: str) -> None:
        """The contact's call is over. Before CONNECTED it is abandoned; after, its agent goes to ACW."""
        contact = self._contact(contact_id)
        old_state = contact.state
        self._contact_input(contact, _CI.END)
        agent = None if contact.agent_id is None else self._agents[contact.agent_id]
        if old_state is _C.QUEUED:
            self._remove_waiting(contact)
        elif old_state is _C.OFFERED:
            self._queues[contact.queue_id].offered -= 1
        del self._contacts[contact_id]
        if old_state is _C.CONNECTED:
            final_reason = reason
        else:
            final_reason = ABANDONED
            self._events.append(
                ContactAbandoned(
                    contact_id, contact.queue_id, contact.agent_id, now - contact.enqueued_at, reason
                )
            )
        self._events.append(ContactEnded(contact_id, contact.queue_id, contact.agent_id, final_reason))
        if agent is not None:
            if old_state is _C.CONNECTED:
                self._call_ended(agent, now)
            else:
                self._agent_input(agent, _I.OFFER_CANCELLED, now, contact_done=True)
                self._apply_pending(agent, now)
        self._dispatch(now)

    def transfer_contact(self, contact_id: str, queue_id: str, now: float, *, keep_place: bool) -> None:
        """Move a QUEUED or CONNECTED contact to ``queue_id`` (which may be its own queue).

        ``keep_place=True`` keeps the original enqueue time (and sequence), so the contact is placed as if it
        had waited in the target queue all along; ``False`` puts it at the back (enqueue time ``now``). A
        connected contact's agent goes to after-call work. The size limit does not apply.
        """
        contact = self._contact(contact_id)
        self._queue(queue_id)
        old_state = contact.state
        self._contact_input(contact, _CI.TRANSFER)
        agent_id = contact.agent_id
        if old_state is _C.QUEUED:
            self._remove_waiting(contact)
        contact.queue_id = queue_id
        contact.agent_id = None
        contact.answered = False
        contact.declined_until.clear()
        if not keep_place:
            contact.enqueued_at = now
            contact.sequence = next(self._sequence)
        self._insert(contact)
        self._events.append(
            ContactRequeued(contact_id, queue_id, agent_id, "transferred", self._position(contact))
        )
        if agent_id is not None:
            self._call_ended(self._agents[agent_id], now)
        self._dispatch(now)

    # ------------------------------------------------------------------ events and timers

    def next_event(self) -> RouterEvent | None:
        """The oldest event not yet taken, or ``None``."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline at which :meth:`handle_timer` must be called, or ``None``."""
        due = self._due()
        return None if due is None else due[0]

    def handle_timer(self, now: float) -> None:
        """Process every deadline ``<= now``, in order, each at its own deadline time."""
        while (due := self._due()) is not None and due[0] <= now:
            deadline, rank, record_id, _ = due
            if rank == _EXCLUSION_RANK:
                contact = self._contacts[record_id]
                for excluded in [a for a, until in contact.declined_until.items() if until <= deadline]:
                    del contact.declined_until[excluded]
            else:
                agent = self._agents[record_id]
                if agent.state is _A.RESERVED:
                    self._ring_timed_out(agent, deadline)
                elif agent.state is _A.AFTER_CALL_WORK:
                    self._become_ready(agent, _I.ACW_ENDED, deadline)
                else:
                    self._agent_input(agent, _I.RONA_RECOVERED, deadline)
            self._dispatch(deadline)

    # ------------------------------------------------------------------ views

    def queue_ids(self) -> tuple[str, ...]:
        """Ids of all queues, in the order they were added."""
        return tuple(self._queues)

    def queue_figures(self, queue_id: str, now: float) -> QueueFigures:
        """Live figures of one queue."""
        queue = self._queue(queue_id)
        counts = dict.fromkeys(AgentState, 0)
        staffed = 0
        for agent in self._agents.values():
            if agent.logged_in and any(queue_id in level for level in agent.levels):
                staffed += 1
                counts[agent.state] += 1
        oldest = min((key[1] for key in queue.waiting), default=None)
        return QueueFigures(
            queue_id=queue_id,
            name=queue.settings.display_name,
            contacts_waiting=len(queue.waiting),
            contacts_offered=queue.offered,
            oldest_wait=None if oldest is None else max(0.0, now - oldest),
            agents_staffed=staffed,
            agents_available=counts[_A.AVAILABLE],
            agents_reserved=counts[_A.RESERVED],
            agents_on_call=counts[_A.ON_CALL],
            agents_in_acw=counts[_A.AFTER_CALL_WORK],
            agents_missed=counts[_A.MISSED],
        )

    def agent(self, agent_id: str) -> AgentView:
        """Snapshot of one agent. Raises :class:`RouterError` for an unknown id."""
        agent = self._agent(agent_id)
        return AgentView(
            agent_id=agent_id,
            state=agent.state,
            logged_in=agent.logged_in,
            state_since=agent.state_since,
            idle_since=agent.idle_since,
            contact_id=agent.contact_id,
            queue_id=None if agent.contact_id is None else agent.queue_id,
            pending_offline=agent.pending is not None,
        )

    def agents(self) -> tuple[AgentView, ...]:
        """Snapshots of all agents, by id."""
        return tuple(self.agent(agent_id) for agent_id in sorted(self._agents))

    def contact(self, contact_id: str) -> ContactView | None:
        """Snapshot of a live contact, or ``None`` if unknown or ended."""
        contact = self._contacts.get(contact_id)
        if contact is None:
            return None
        return ContactView(
            contact_id=contact_id,
            queue_id=contact.queue_id,
            state=contact.state,
            enqueued_at=contact.enqueued_at,
            priority=contact.priority,
            flags=contact.flags,
            attributes=contact.attributes,
            agent_id=contact.agent_id,
            position=self._position(contact) if contact.state is _C.QUEUED else None,
            declined_until=MappingProxyType(dict(contact.declined_until)),
        )

    def contacts(self) -> tuple[ContactView, ...]:
        """Snapshots of all live contacts, by id."""
        return tuple(view for cid in sorted(self._contacts) if (view := self.contact(cid)) is not None)

    def queue_contacts(self, queue_id: str) -> tuple[ContactView, ...]:
        """Snapshots of a queue's QUEUED contacts in routing order (position 1 first)."""
        queue = self._queue(queue_id)
        return tuple(view for key in queue.waiting if (view := self.contact(key[3])) is not None)

    # ------------------------------------------------------------------ internals: lookups

    def _queue(self, queue_id: str) -> _Queue:
        try:
            return self._queues[queue_id]
        except KeyError:
            raise RouterError(f"queue {queue_id!r} is unknown") from None

    def _agent(self, agent_id: str) -> _Agent:
        try:
            return self._agents[agent_id]
        except KeyError:
            raise RouterError(f"agent {agent_id!r} is unknown") from None

    def _logged_in_agent(self, agent_id: str, event: _AgentInput) -> _Agent:
        agent = self._agent(agent_id)
        if not agent.logged_in:
            raise IllegalTransition("agent", agent_id, agent.state, event.value, "not logged in")
        return agent

    def _contact(self, contact_id: str) -> _Contact:
        try:
            return self._contacts[contact_id]
        except KeyError:
            raise RouterError(f"contact {contact_id!r} is unknown (never enqueued, or ended)") from None

    def _offer(self, contact_id: str, agent_id: str, event: _ContactInput) -> tuple[_Contact, _Agent]:
        contact = self._contact(contact_id)
        agent = self._agent(agent_id)
        if contact.state is not _C.OFFERED or contact.agent_id != agent_id:
            raise IllegalTransition(
                "contact", contact_id, contact.state, event.value, f"it is not offered to agent {agent_id!r}"
            )
        return contact, agent

    # ------------------------------------------------------------------ internals: transitions

    def _agent_input(
        self, agent: _Agent, event: _AgentInput, now: float, *, contact_done: bool = False
    ) -> None:
        old = agent.state
        try:
            new = _AGENT_TRANSITIONS[(old, event)]
        except KeyError:
            raise IllegalTransition("agent", agent.settings.agent_id, old, event.value) from None
        if event is _I.LOGOUT:
            agent.logged_in = False
        if contact_done:
            agent.contact_id = None
        if new is _A.AVAILABLE and old in _IDLE_RESET_FROM:
            agent.idle_since = now
        agent.deadline = self._deadline_for(agent, new, now)
        if new is not old:
            agent.state = new
            agent.state_since = now
            self._events.append(AgentStateChanged(agent.settings.agent_id, old, new, event.value))

    def _deadline_for(self, agent: _Agent, state: AgentState, now: float) -> float | None:
        if state is _A.MISSED:
            recovery = agent.settings.rona_recovery
            return None if recovery is None else now + recovery
        if state is _A.AFTER_CALL_WORK:
            return now + self._acw_seconds(agent)
        if state is _A.RESERVED:
            assert agent.queue_id is not None
            return now + self._queues[agent.queue_id].settings.ring_timeout
        return None

    def _acw_seconds(self, agent: _Agent) -> float:
        if agent.settings.after_call_work is not None:
            return agent.settings.after_call_work
        assert agent.queue_id is not None
        return self._queues[agent.queue_id].settings.after_call_work

    def _contact_input(self, contact: _Contact, event: _ContactInput) -> None:
        try:
            contact.state = _CONTACT_TRANSITIONS[(contact.state, event)]
        except KeyError:
            raise IllegalTransition("contact", contact.contact_id, contact.state, event.value) from None

    def _go_offline(self, agent: _Agent, event: _AgentInput, now: float) -> None:
        if agent.state is _A.ON_CALL:
            agent.pending = event
            return
        if agent.state is _A.RESERVED:
            assert agent.contact_id is not None
            contact = self._contacts[agent.contact_id]
            self._agent_input(agent, event, now, contact_done=True)
            reason = "agent_logout" if event is _I.LOGOUT else "agent_offline"
            self._requeue(contact, reason, agent.settings.agent_id, now)
        else:
            self._agent_input(agent, event, now)
        agent.pending = None
        self._dispatch(now)

    def _call_ended(self, agent: _Agent, now: float) -> None:
        """ON_CALL -> AFTER_CALL_WORK, and straight on if there is no after-call work."""
        self._agent_input(agent, _I.CALL_ENDED, now, contact_done=True)
        if agent.deadline is not None and agent.deadline <= now:
            self._become_ready(agent, _I.ACW_ENDED, now)

    def _become_ready(self, agent: _Agent, event: _AgentInput, now: float) -> None:
        """End of after-call work: AVAILABLE, or the pending offline/logout."""
        pending, agent.pending = agent.pending, None
        self._agent_input(agent, pending or event, now)

    def _apply_pending(self, agent: _Agent, now: float) -> None:
        """An agent that was ON_CALL is AVAILABLE without after-call work: apply a pending offline/logout."""
        pending, agent.pending = agent.pending, None
        if pending is not None:
            self._agent_input(agent, pending, now)

    def _ring_timed_out(self, agent: _Agent, now: float) -> None:
        assert agent.contact_id is not None
        contact = self._contacts[agent.contact_id]
        agent_id = agent.settings.agent_id
        self._events.append(AgentRingTimedOut(contact.contact_id, agent_id, contact.queue_id))
        self._agent_input(agent, _I.RING_TIMEOUT, now, contact_done=True)
        self._requeue(contact, "ring_timeout", agent_id, now)

    def _requeue(self, contact: _Contact, reason: str, agent_id: str | None, now: float) -> None:
        """Put an OFFERED contact back at its original place."""
        self._contact_input(contact, _CI.REQUEUE)
        self._queues[contact.queue_id].offered -= 1
        contact.agent_id = None
        contact.answered = False
        for expired in [a for a, until in contact.declined_until.items() if until <= now]:
            del contact.declined_until[expired]
        self._insert(contact)
        self._events.append(
            ContactRequeued(contact.contact_id, contact.queue_id, agent_id, reason, self._position(contact))
        )

    # ------------------------------------------------------------------ internals: queue order

    def _insert(self, contact: _Contact) -> None:
        bisect.insort(self._queues[contact.queue_id].waiting, contact.key)

    def _remove_waiting(self, contact: _Contact) -> None:
        waiting = self._queues[contact.queue_id].waiting
        index = bisect.bisect_left(waiting, contact.key)
        if index < len(waiting) and waiting[index] == contact.key:
            del waiting[index]

    def _position(self, contact: _Contact) -> int:
        return bisect.bisect_left(self._queues[contact.queue_id].waiting, contact.key) + 1

    # ------------------------------------------------------------------ internals: dispatch and timers

    def _dispatch(self, now: float) -> None:
        """One pass of the offer rule (module docstring, "The offer rule")."""
        if not any(queue.waiting for queue in self._queues.values()):
            return
        available = sorted(
            (a for a in self._agents.values() if a.state is _A.AVAILABLE),
            key=lambda a: (a.idle_since if a.idle_since is not None else -math.inf, a.settings.agent_id),
        )
        for agent in available:
            contact = self._pick(agent, now)
            if contact is not None:
                self._reserve(agent, contact, now)

    def _pick(self, agent: _Agent, now: float) -> _Contact | None:
        agent_id = agent.settings.agent_id
        for level in agent.levels:
            best: _Contact | None = None
            for queue_id in level:
                for key in self._queues[queue_id].waiting:
                    contact = self._contacts[key[3]]
                    if contact.declined_until.get(agent_id, -math.inf) > now:
                        continue
                    if best is None or contact.key < best.key:
                        best = contact
                    break
            if best is not None:
                return best
        return None

    def _reserve(self, agent: _Agent, contact: _Contact, now: float) -> None:
        self._remove_waiting(contact)
        self._queues[contact.queue_id].offered += 1
        self._contact_input(contact, _CI.OFFER)
        contact.agent_id = agent.settings.agent_id
        contact.declined_until.pop(agent.settings.agent_id, None)
        agent.contact_id = contact.contact_id
        agent.queue_id = contact.queue_id
        self._agent_input(agent, _I.RESERVE, now)
        ring_timeout = self._queues[contact.queue_id].settings.ring_timeout
        self._events.append(
            AgentReserved(contact.contact_id, agent.settings.agent_id, contact.queue_id, ring_timeout)
        )

    def _due(self) -> tuple[float, int, str, str] | None:
        """Earliest ``(deadline, rank, record id, agent id)``; the order :meth:`handle_timer` follows."""
        best: tuple[float, int, str, str] | None = None
        for agent_id, agent in self._agents.items():
            if agent.deadline is not None:
                item = (agent.deadline, _TIMER_RANK[agent.state], agent_id, agent_id)
                if best is None or item < best:
                    best = item
        for contact_id, contact in self._contacts.items():
            if contact.state is _C.QUEUED:
                for agent_id, until in contact.declined_until.items():
                    item = (until, _EXCLUSION_RANK, contact_id, agent_id)
                    if best is None or item < best:
                        best = item
        return best
