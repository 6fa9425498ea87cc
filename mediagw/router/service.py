"""The asyncio glue around the routing core: timers, events, hours decisions and contact records.

Theory of operation
===================

:class:`RouterService` owns one :class:`~mediagw.router.core.Router`, built from a profile (queues in
overflow order, then every agent that takes calls), and is the only thing that calls it. It follows the
aioquic adapter pattern:

* every command reads ``now`` from the service's ``clock`` (``loop.time`` unless a test gives another),
  calls the core, then *drains* the core's events and *re-arms* the one timer the core asks for with
  ``loop.call_at``; when the timer fires it calls :meth:`Router.handle_timer` and does the same;
* each event is first written to the contact record (:class:`~mediagw.store.contacts.ContactStore`,
  whose writes never await) and then handed to ``on_event``, the callback of the calls layer, which rings
  agents on :class:`~mediagw.router.core.AgentReserved`, sends CANCEL on
  :class:`~mediagw.router.core.AgentRingTimedOut`, plays or rejects on
  :class:`~mediagw.router.core.ContactOverflowed`, and so on. A callback may call back into the service;
  events it causes are delivered after the current one, in order.

Calendar decisions (hours of operation) use ``wall_clock`` (aware UTC ``datetime``), never the monotonic
clock. :meth:`RouterService.decide` applies, in this order: the number's queue, the first flag route whose
flag the caller has (:func:`~mediagw.router.flags.route_by_flags`), then that queue's hours; a closed queue
whose after-hours action is ``queue`` hands over to the target queue, whose own hours apply in turn.

A typical inbound call, as the calls layer drives it::

    contact_id = service.open_contact(caller=from_uri, number=user, call_id=call_id, flags=f, attributes=a)
    decision = service.route(contact_id, number_config)     # enqueues, or says which deflection to run
    # ... on_event(AgentReserved) -> INVITE the agent with service.agent_invite_headers(contact_id)
    service.agent_answered(contact_id, agent_id)              # 200 OK from the agent: whisper, countdown
    service.contact_connected(contact_id)                     # bridged
    service.contact_ended(contact_id, DisconnectReason.CALLER_HANGUP)

Disconnect reasons written to the record: a contact deflected after hours always ends ``after-hours``; one
that overflowed to a message or a rejection always ends ``overflow``; one that ends before it was connected
ends ``abandoned`` when the caller hung up (any other reason the owner gives, e.g. ``ended-by-supervisor``
or ``rtp-timeout``, is kept); otherwise the owner's reason is written.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mediagw.router.core import (
    ABANDONED,
    AgentReserved,
    AgentState,
    AgentView,
    ContactConnected,
    ContactEnded,
    ContactEnqueued,
    ContactOverflowed,
    ContactRequeued,
    ContactView,
    OverflowAction,
    QueueFigures,
    Router,
    RouterError,
    RouterEvent,
)
from mediagw.router.flags import flags_to_headers, route_by_flags
from mediagw.router.hours import Hours, is_open, next_change
from mediagw.router.profile import (
    AfterHoursConfig,
    QueueConfig,
    WhisperPlan,
    agent_header_names,
    agent_settings,
    flag_rules,
    hours_of,
    queue_order,
    queue_settings,
    whisper_plan,
)
from mediagw.store.contacts import ContactStore, DisconnectReason, Initiation

__all__ = ["AgentStatus", "QueueStatus", "RouteDecision", "RouteKind", "RouterService"]

logger = logging.getLogger(__name__)

_NEVER_RECHECK = timedelta(days=1)
"""How long a "never changes" answer of :func:`next_change` is reused."""

EventCallback = Callable[[RouterEvent], None]
"""What the calls layer supplies: called once per core event, in order, on the loop."""


class RouteKind(enum.StrEnum):
    """The outcome of :meth:`RouterService.decide`."""

    QUEUE = "queue"
    """Enqueue the caller in ``RouteDecision.queue_id``."""
    AFTER_HOURS = "after_hours"
    """``RouteDecision.queue_id`` is closed: run its deflection (``RouteDecision.after_hours``)."""


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where an inbound caller goes."""

    kind: RouteKind
    """Queue or deflection."""
    queue_id: str
    """QUEUE: the queue to enqueue in; AFTER_HOURS: the closed queue whose deflection runs."""
    after_hours: AfterHoursConfig | None
    """The deflection to run (AFTER_HOURS only)."""
    requested_queue: str
    """The number's queue, before flag routing and after-hours hand-overs."""
    flag: str | None = None
    """The flag whose route moved the caller, if one did."""
    path: tuple[str, ...] = ()
    """Every queue considered, in order (number's queue, flag route target, after-hours targets)."""


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """A queue's live figures and hours for the API."""

    queue_id: str
    """The queue."""
    name: str
    """Display name."""
    figures: QueueFigures
    """Contacts waiting and offered, oldest wait, agents by state (see :class:`QueueFigures`)."""
    open_now: bool
    """Inside the queue's hours right now."""
    next_change: datetime | None
    """When ``open_now`` next changes (UTC), ``None`` if never within about a year."""


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """An agent's routing state for the API (times as Unix seconds)."""

    agent_id: str
    """The agent."""
    name: str
    """Display name from the profile."""
    state: AgentState
    """Routing state (``missed`` is RONA)."""
    logged_in: bool
    """Registered (logged in)."""
    state_since: float | None
    """Unix time of the last state change; ``None`` before the first one."""
    contact_id: str | None
    """The contact the agent is rung for or on."""
    queue_id: str | None
    """That contact's queue."""


@dataclass(slots=True)
class _ContactInfo:
    """What the service remembers about a contact until it ends."""

    flags: frozenset[str] = frozenset()
    attributes: Mapping[str, str] = field(default_factory=dict)
    forced_reason: str | None = None
    """``after-hours`` or ``overflow`` once the contact was deflected: the reason it ends with."""
    end_reason: str | None = None
    """The reason the owner gave to :meth:`RouterService.contact_ended`."""


class RouterService:
    """Queues, agents and contacts of one gateway, on the asyncio loop.

    ``profile`` is a :class:`mediagw.config.Profile` (``queues``, ``agents``, ``flag_routes``,
    ``flag_headers``, ``source``). ``clock`` gives the core's ``now`` (monotonic seconds, ``loop.time`` by
    default); ``wall_clock`` gives aware UTC datetimes for hours and contact records. ``contacts`` is
    optional: without a store nothing is recorded.
    """

    def __init__(
        self,
        profile: Any,
        *,
        contacts: ContactStore | None = None,
        on_event: EventCallback | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._profile = profile
        self._source: str = getattr(profile, "source", "<memory>")
        self._store = contacts
        self.on_event = on_event
        self._loop = loop
        self._clock = clock
        self._wall_clock = wall_clock or (lambda: datetime.now(UTC))
        self._router = Router()
        queues: tuple[QueueConfig, ...] = tuple(getattr(profile, "queues", ()))
        self._queues: dict[str, QueueConfig] = {queue.id: queue for queue in queues}
        self._hours: dict[str, Hours] = {queue.id: hours_of(queue.hours) for queue in queues}
        for queue in queue_order(queues):
            self._router.add_queue(queue_settings(queue))
        self._agents: dict[str, Any] = {}
        for agent in getattr(profile, "agents", ()):
            if getattr(agent, "role", "agent") == "agent" or getattr(agent, "routing", ()):
                self._router.add_agent(agent_settings(agent))
                self._agents[agent.id] = agent
        self._flag_routes = tuple(getattr(profile, "flag_routes", ()))
        self._header_names = agent_header_names(getattr(profile, "flag_headers", None))
        self._contacts: dict[str, _ContactInfo] = {}
        self._next_change: dict[str, tuple[datetime, datetime | None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._draining = False
        self._closed = False

    # ------------------------------------------------------------------ time

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def now(self) -> float:
        """The core's current time (``clock``, else ``loop.time()``)."""
        return self._clock() if self._clock is not None else self._get_loop().time()

    def wall_now(self) -> datetime:
        """The current wall-clock time, aware UTC."""
        return self._wall_clock()

    @property
    def timer_deadline(self) -> float | None:
        """The core deadline the armed timer is for (in ``clock`` time), ``None`` if none is armed."""
        return self._timer_at

    def handle_timer(self) -> None:
        """Process every core deadline that is due at ``now()`` (the timer calls this; tests may too)."""
        try:
            self._router.handle_timer(self.now())
        finally:
            self._after_command()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if not self._closed:
            self.handle_timer()

    def _rearm(self) -> None:
        """One ``call_at`` for the core's earliest deadline; cancelled and replaced when it moves."""
        deadline = None if self._closed else self._router.get_timer()
        if deadline == self._timer_at and (deadline is None or self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            loop = self._get_loop()
            if self._clock is None:  # the core runs on loop.time: its deadline is the loop's
                self._timer = loop.call_at(deadline, self._on_timer)
            else:  # another clock base (tests, a replay): translate through the remaining delay
                self._timer = loop.call_later(max(0.0, deadline - self._clock()), self._on_timer)

    def close(self) -> None:
        """Stop the timer; the service takes no more timer callbacks."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    # ------------------------------------------------------------------ events

    def _after_command(self) -> None:
        self._drain()
        self._rearm()

    def _drain(self) -> None:
        if self._draining:
            return  # a callback called back into us: the outer loop delivers what that caused, in order
        self._draining = True
        try:
            while (event := self._router.next_event()) is not None:
                try:
                    self._record(event)
                except Exception:  # e.g. the store was closed too early: log it, keep routing
                    logger.exception("recording router event %r failed", event)
                if self.on_event is not None:
                    try:
                        self.on_event(event)
                    except Exception:
                        logger.exception("router event handler failed on %r", event)
        finally:
            self._draining = False

    def _record(self, event: RouterEvent) -> None:
        """Write what ``event`` changes to the contact record."""
        store = self._store
        wall = self._wall_clock()
        if isinstance(event, ContactEnqueued):
            if store is not None:
                store.update(event.contact_id, enqueued_at=wall, queue_id=event.queue_id)
        elif isinstance(event, ContactOverflowed):
            if event.action is not OverflowAction.QUEUE:
                self._info(event.contact_id).forced_reason = DisconnectReason.OVERFLOW.value
                if store is not None:
                    store.update(event.contact_id, queue_id=event.queue_id)
        elif isinstance(event, AgentReserved):
            if store is not None:
                store.update(
                    event.contact_id, offered_at=wall, agent_id=event.agent_id, queue_id=event.queue_id
                )
        elif isinstance(event, ContactRequeued):
            if store is not None:
                store.update(event.contact_id, agent_id=None, queue_id=event.queue_id)
        elif isinstance(event, ContactConnected):
            if store is not None:
                store.update(
                    event.contact_id, connected_at=wall, agent_id=event.agent_id, queue_id=event.queue_id
                )
        elif isinstance(event, ContactEnded):
            info = self._contacts.pop(event.contact_id, None) or _ContactInfo()
            reason = _final_reason(event.reason, info)
            if store is not None:
                store.update(
                    event.contact_id,
                    disconnected_at=wall,
                    disconnect_reason=reason,
                    queue_id=event.queue_id,
                    agent_id=event.agent_id,
                )

    def _info(self, contact_id: str) -> _ContactInfo:
        return self._contacts.setdefault(contact_id, _ContactInfo())

    # ------------------------------------------------------------------ decisions

    def decide(
        self, number: Any, now_utc: datetime | None = None, *, flags: Iterable[str] = ()
    ) -> RouteDecision:
        """Where a caller of ``number`` (a ``NumberConfig`` with ``action = "queue"``) goes at ``now_utc``.

        Flag routes first (for callers carrying a routed flag), then hours; a closed queue whose deflection is
        ``queue`` hands over to that queue. Raises :class:`RouterError` for a number that does not route to
        a queue or names an unknown one.
        """
        if getattr(number, "action", None) != "queue":
            raise RouterError(f"number {getattr(number, 'number', '?')!r} does not route to a queue")
        requested: str = number.queue
        self._queue_config(requested)
        when = now_utc if now_utc is not None else self._wall_clock()
        flag_set = frozenset(flags)
        rules = flag_rules(self._flag_routes, requested)
        queue_id = route_by_flags(rules, flag_set, requested)
        matched = next((rule.flag for rule in rules if rule.flag in flag_set), None)
        path = [requested] if queue_id == requested else [requested, queue_id]
        while True:
            if is_open(self._hours[queue_id], when):
                return RouteDecision(RouteKind.QUEUE, queue_id, None, requested, matched, tuple(path))
            after = self._queues[queue_id].after_hours
            if after.action != "queue":
                return RouteDecision(RouteKind.AFTER_HOURS, queue_id, after, requested, matched, tuple(path))
            if after.queue in path or after.queue not in self._queues:
                raise RouterError(
                    f"queue {queue_id!r}: after-hours hand-over to {after.queue!r} loops or is unknown"
                )
            queue_id = after.queue
            path.append(queue_id)

    def is_open(self, queue_id: str, now_utc: datetime | None = None) -> bool:
        """Whether ``queue_id`` is inside its hours at ``now_utc`` (default: now)."""
        self._queue_config(queue_id)
        return is_open(self._hours[queue_id], now_utc if now_utc is not None else self._wall_clock())

    # ------------------------------------------------------------------ contact commands

    def open_contact(
        self,
        *,
        caller: str = "",
        number: str = "",
        call_id: str | None = None,
        flags: Iterable[str] = (),
        attributes: Mapping[str, str] | None = None,
        initiation: str = Initiation.INBOUND,
        previous_contact_id: str | None = None,
        contact_id: str | None = None,
    ) -> str:
        """Start a contact record (initiated now) and remember its flags; returns the contact id."""
        flag_set = frozenset(flags)
        attrs = dict(attributes or {})
        if self._store is not None:
            contact_id = self._store.create(
                contact_id=contact_id,
                initiation=initiation,
                initiated_at=self._wall_clock(),
                caller=caller,
                number=number,
                call_id=call_id,
                flags=sorted(flag_set),
                attributes=attrs,
                previous_contact_id=previous_contact_id,
            )
        elif contact_id is None:
            contact_id = str(uuid.uuid4())
        self._contacts[contact_id] = _ContactInfo(flag_set, attrs)
        return contact_id

    def route(self, contact_id: str, number: Any, now_utc: datetime | None = None) -> RouteDecision:
        """:meth:`decide` for an open contact (its flags), then act: enqueue it, or mark it deflected after
        hours (the record gets the closed queue; the contact will end ``after-hours``)."""
        if contact_id not in self._contacts:
            self.open_contact(contact_id=contact_id, number=getattr(number, "number", ""))
        info = self._contacts[contact_id]
        decision = self.decide(number, now_utc, flags=info.flags)
        if decision.kind is RouteKind.QUEUE:
            self.enqueue(contact_id, decision.queue_id)
        else:
            info.forced_reason = DisconnectReason.AFTER_HOURS.value
            if self._store is not None:
                self._store.update(contact_id, queue_id=decision.queue_id)
        return decision

    def enqueue(
        self,
        contact_id: str,
        queue_id: str,
        *,
        flags: Iterable[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        priority: int = 0,
    ) -> str | None:
        """Put a contact in a queue; returns the queue it waits in (another one after an overflow to a queue),
        or ``None`` when it overflowed to a message or a rejection (``on_event`` got the
        :class:`ContactOverflowed` already). A contact not opened with :meth:`open_contact` gets a record now.
        """
        info = self._contacts.get(contact_id)
        if info is None:
            self.open_contact(contact_id=contact_id, flags=flags or (), attributes=attributes)
            info = self._contacts[contact_id]
        if flags is not None:
            info.flags = frozenset(flags)
        if attributes is not None:
            info.attributes = dict(attributes)
        try:
            self._router.enqueue(
                contact_id,
                queue_id,
                self.now(),
                flags=info.flags,
                attributes=info.attributes,
                priority=priority,
            )
        finally:
            self._after_command()
        view = self._router.contact(contact_id)
        return None if view is None else view.queue_id

    def agent_answered(self, contact_id: str, agent_id: str) -> None:
        """The rung agent answered (200 OK): whisper and countdown play, then :meth:`contact_connected`."""
        try:
            self._router.agent_answered(contact_id, agent_id, self.now())
        finally:
            self._after_command()

    def agent_declined(self, contact_id: str, agent_id: str, *, busy: bool = False) -> None:
        """The rung agent declined (603: kept away from this contact for a while) or was busy (486: RONA)."""
        try:
            self._router.agent_declined(contact_id, agent_id, self.now(), busy=busy)
        finally:
            self._after_command()

    def contact_connected(self, contact_id: str) -> None:
        """Caller and agent are bridged."""
        try:
            self._router.contact_connected(contact_id, self.now())
        finally:
            self._after_command()

    def contact_ended(self, contact_id: str, reason: str) -> None:
        """The contact's call is over (``reason``: a :class:`DisconnectReason` value). Works for contacts in
        the router and for those that never entered it or left it (deflected, overflowed, rejected)."""
        reason = str(reason)
        if self._router.contact(contact_id) is not None:
            self._info(contact_id).end_reason = reason
            try:
                self._router.contact_ended(contact_id, self.now(), reason)
            finally:
                self._after_command()
            return
        info = self._contacts.pop(contact_id, None) or _ContactInfo()
        info.end_reason = reason
        if self._store is not None:
            self._store.update(
                contact_id, disconnected_at=self._wall_clock(), disconnect_reason=_final_reason(reason, info)
            )

    def transfer_contact(self, contact_id: str, queue_id: str, *, keep_place: bool = True) -> None:
        """Move a waiting or connected contact to another queue (the agent of a connected one goes to ACW)."""
        try:
            self._router.transfer_contact(contact_id, queue_id, self.now(), keep_place=keep_place)
        finally:
            self._after_command()

    # ------------------------------------------------------------------ agent commands

    def agent_registered(self, agent_id: str, now: float | None = None) -> bool:
        """A routable agent's phone registered: log in (AVAILABLE). Returns False for ids the router does not
        route to (supervisors, unknown) and for an agent logged in already (a refresh)."""
        if agent_id not in self._agents or self._router.agent(agent_id).logged_in:
            return False
        try:
            self._router.agent_login(agent_id, self.now() if now is None else now)
        finally:
            self._after_command()
        return True

    def agent_unregistered(self, agent_id: str, now: float | None = None) -> bool:
        """The agent's last registration ended: log out (deferred to the end of after-call work while on a
        call). Returns False when there was nothing to do."""
        if agent_id not in self._agents or not self._router.agent(agent_id).logged_in:
            return False
        try:
            self._router.agent_logout(agent_id, self.now() if now is None else now)
        finally:
            self._after_command()
        return True

    def set_agent_available(self, agent_id: str) -> AgentStatus:
        """API: make a logged-in agent available (ends ACW or RONA early). Raises ``IllegalTransition``."""
        try:
            self._router.set_agent_available(agent_id, self.now())
        finally:
            self._after_command()
        return self.agent_status(agent_id)

    def set_agent_offline(self, agent_id: str) -> AgentStatus:
        """API: set a logged-in agent offline (after the current call's ACW while on a call)."""
        try:
            self._router.set_agent_offline(agent_id, self.now())
        finally:
            self._after_command()
        return self.agent_status(agent_id)

    def clear_rona(self, agent_id: str) -> AgentStatus:
        """API: return an agent in RONA (missed) to available. Raises ``IllegalTransition`` otherwise."""
        try:
            self._router.clear_rona(agent_id, self.now())
        finally:
            self._after_command()
        return self.agent_status(agent_id)

    # ------------------------------------------------------------------ views and lookups

    def _queue_config(self, queue_id: str) -> QueueConfig:
        try:
            return self._queues[queue_id]
        except KeyError:
            raise RouterError(f"queue {queue_id!r} is unknown") from None

    def queue_config(self, queue_id: str) -> QueueConfig:
        """The profile entry of a queue (whisper, hold music, announcements, deflection ...)."""
        return self._queue_config(queue_id)

    def queue_ids(self) -> tuple[str, ...]:
        """Queue ids in profile order."""
        return tuple(self._queues)

    def agent_ids(self) -> tuple[str, ...]:
        """Ids of the agents the router routes to, in profile order."""
        return tuple(self._agents)

    def whisper(self, queue_id: str) -> WhisperPlan:
        """What an agent taking a contact of ``queue_id`` hears before the bridge."""
        return whisper_plan(self._queue_config(queue_id), self._source)

    def agent_invite_headers(self, contact_id: str) -> list[tuple[str, str]]:
        """Flag headers for the INVITE that rings an agent for ``contact_id`` (named by ``flag_headers``)."""
        if not self._header_names:
            return []
        info = self._contacts.get(contact_id) or _ContactInfo()
        return flags_to_headers(info.flags, info.attributes, self._header_names)

    def contact_flags(self, contact_id: str) -> frozenset[str]:
        """The flags of an open contact (empty when unknown)."""
        info = self._contacts.get(contact_id)
        return frozenset() if info is None else info.flags

    def _unix(self, monotonic: float | None) -> float | None:
        if monotonic is None:
            return None
        return self._wall_clock().timestamp() - (self.now() - monotonic)

    def queue_status(self, now_utc: datetime | None = None) -> list[QueueStatus]:
        """Every queue's figures and hours, in profile order."""
        when = now_utc if now_utc is not None else self._wall_clock()
        now = self.now()
        return [
            QueueStatus(
                queue_id=queue_id,
                name=queue.display_name,
                figures=self._router.queue_figures(queue_id, now),
                open_now=is_open(self._hours[queue_id], when),
                next_change=self._next_change_after(queue_id, when),
            )
            for queue_id, queue in self._queues.items()
        ]

    def _next_change_after(self, queue_id: str, when: datetime) -> datetime | None:
        """:func:`next_change`, cached: the answer found at ``t`` holds for every instant from ``t`` until it
        (a day for "never", which costs a year's search)."""
        cached = self._next_change.get(queue_id)
        if cached is not None:
            computed_at, change = cached
            valid_until = change if change is not None else computed_at + _NEVER_RECHECK
            if computed_at <= when < valid_until:
                return change
        change = next_change(self._hours[queue_id], when)
        self._next_change[queue_id] = (when, change)
        return change

    def agent_status(self, agent_id: str) -> AgentStatus:
        """One routable agent's state. Raises :class:`RouterError` for an unknown id."""
        view: AgentView = self._router.agent(agent_id)
        return AgentStatus(
            agent_id=agent_id,
            name=getattr(self._agents[agent_id], "name", "") or agent_id,
            state=view.state,
            logged_in=view.logged_in,
            state_since=self._unix(view.state_since),
            contact_id=view.contact_id,
            queue_id=view.queue_id,
        )

    def agents_status(self) -> list[AgentStatus]:
        """Every routable agent, in profile order."""
        return [self.agent_status(agent_id) for agent_id in self._agents]

    def live_contacts(self) -> tuple[ContactView, ...]:
        """Contacts in the router (queued, offered, connected), by id."""
        return self._router.contacts()

    def live_contact(self, contact_id: str) -> ContactView | None:
        """One contact in the router, or ``None``."""
        return self._router.contact(contact_id)

    @property
    def router(self) -> Router:
        """The core, for read-only views the service does not wrap; commands go through the service."""
        return self._router

    @property
    def contacts(self) -> ContactStore | None:
        """The contact store, if any."""
        return self._store


def _final_reason(router_reason: str, info: _ContactInfo) -> str:
    """The disconnect reason written to the record (module docstring, last paragraph)."""
    if info.forced_reason is not None:
        return info.forced_reason
    owner = info.end_reason or router_reason
    if router_reason == ABANDONED and owner in (DisconnectReason.CALLER_HANGUP, ABANDONED):
        return DisconnectReason.ABANDONED.value
    return owner
