"""RouterService with an explicit clock: offers, ring timeout and RONA, records with timestamps and reasons,
overflow, hours decisions across DST and holidays, flag routing, the one re-armed timer, and API views."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mediagw.router.core import (
    AgentReserved,
    AgentRingTimedOut,
    AgentState,
    AgentStateChanged,
    ContactConnected,
    ContactEnded,
    ContactEnqueued,
    ContactOverflowed,
    ContactRequeued,
    IllegalTransition,
    OverflowAction,
    RouterError,
    RouterEvent,
)
from mediagw.router.service import RouteKind, RouterService
from mediagw.store.contacts import ContactStore, DisconnectReason
from mediagw.store.db import Database, sqlite_url
from tests.unit.test_router_profile import load_cc

T0 = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # a Monday, 10:00 in New York
START = 1000.0

NY_WEEKDAYS = {day: ["09:00-17:00"] for day in ("monday", "tuesday", "wednesday", "thursday", "friday")}


def center() -> dict[str, Any]:
    """A center with a demo queue, a New York queue with holidays, a Berlin queue and a review queue."""
    return {
        "queues": [
            {
                "id": "demo",
                "name": "Demo",
                "ring_timeout": 15.0,
                "after_call_work": 5.0,
                "countdown": True,
                "max_size": 2,
                "overflow": "message",
                "overflow_message": "Full. Goodbye.",
            },
            {
                "id": "sales",
                "name": "Sales",
                "ring_timeout": 20.0,
                "hours": {
                    "timezone": "America/New_York",
                    "always_open": False,
                    "holidays": ["2026-12-25"],
                    **NY_WEEKDAYS,
                },
                "after_hours": {"action": "voicemail", "voicemail_max_seconds": 90},
            },
            {
                "id": "support",
                "hours": {"timezone": "America/New_York", "always_open": False, **NY_WEEKDAYS},
                "after_hours": {"action": "queue", "queue": "emea"},
            },
            {
                "id": "emea",
                "hours": {"timezone": "Europe/Berlin", "always_open": False, "monday": ["06:00-18:00"]},
                "after_hours": {"action": "transfer", "transfer_target": "sip:+18005550199@answer.example"},
            },
            {"id": "review", "whisper": "text", "whisper_text": "Flagged caller"},
        ],
        "agents": [
            {
                "id": "a1",
                "name": "Ann",
                "password": "x",
                "rona_recovery": 60.0,
                "routing": [{"queue": "demo"}, {"queue": "sales"}],
            },
            {
                "id": "a2",
                "name": "Bob",
                "password": "x",
                "routing": [{"queue": "demo"}, {"queue": "support"}, {"queue": "emea"}],
            },
            {"id": "r1", "password": "x", "routing": [{"queue": "review"}]},
            {"id": "sup", "password": "x", "role": "supervisor"},
        ],
        "numbers": [
            {"number": "2000", "action": "queue", "queue": "demo"},
            {"number": "3000", "action": "queue", "queue": "sales"},
            {"number": "4000", "action": "queue", "queue": "support"},
            {"number": "9000", "action": "echo"},
        ],
        "flag_routes": [
            {"flag": "bad_actor", "queue": "review"},
            {"flag": "unverified", "queue": "review", "applies_to": ["sales"]},
        ],
    }


class Clock:
    """Monotonic and wall clocks that move together, driven by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.now - START)


class Harness:
    """A service, its clock, its store and the events it delivered."""

    def __init__(self, service: RouterService, clock: Clock, store: ContactStore, profile: Any) -> None:
        self.service = service
        self.clock = clock
        self.store = store
        self.profile = profile
        self.events: list[RouterEvent] = []

    def take(self) -> list[RouterEvent]:
        events = list(self.events)
        self.events.clear()
        return events

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.service.handle_timer()

    def number(self, number: str) -> Any:
        return next(n for n in self.profile.numbers if n.number == number)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    database = Database(sqlite_url(tmp_path / "router.db"))
    clock = Clock()
    store = ContactStore(database, wall_clock=clock.wall)
    await store.start()
    profile = load_cc(center())
    service = RouterService(profile, contacts=store, clock=clock, wall_clock=clock.wall)
    h = Harness(service, clock, store, profile)
    service.on_event = h.events.append
    yield h
    service.close()
    await store.close()
    await database.dispose()


def kinds(events: list[RouterEvent]) -> list[str]:
    return [type(event).__name__ for event in events]


async def test_ring_timeout_goes_rona_and_the_next_agent_is_rung(harness: Harness) -> None:
    h, service = harness, harness.service
    assert service.agent_registered("a1") and service.agent_registered("a2", START + 1)
    assert not service.agent_registered("a1")  # a refresh
    assert not service.agent_registered("sup")  # supervisors are not routed
    h.take()
    h.clock.now += 2
    contact = service.open_contact(
        caller="sip:alice@example.com",
        number="2000",
        call_id="call-1",
        flags={"verified"},
        attributes={"verified_customer": "true"},
    )
    decision = service.route(contact, h.number("2000"))
    assert decision.kind is RouteKind.QUEUE and decision.queue_id == "demo"
    events = h.take()
    assert kinds(events) == ["ContactEnqueued", "AgentStateChanged", "AgentReserved"]
    reserved = events[-1]
    assert isinstance(reserved, AgentReserved) and reserved.agent_id == "a1" and reserved.ring_timeout == 15.0
    assert service.timer_deadline == START + 2 + 15.0
    assert ("X-Mediagw-Flags", "verified") in service.agent_invite_headers(contact)

    h.advance(14.9)
    assert h.take() == []
    h.advance(0.1)  # the ring timeout: CANCEL a1, a1 is RONA, a2 is rung
    events = h.take()
    assert isinstance(events[0], AgentRingTimedOut) and events[0].agent_id == "a1"
    assert AgentStateChanged("a1", AgentState.RESERVED, AgentState.MISSED, "ring_timeout") in events
    assert any(isinstance(e, ContactRequeued) and e.reason == "ring_timeout" for e in events)
    assert isinstance(events[-1], AgentReserved) and events[-1].agent_id == "a2"
    assert service.agent_status("a1").state is AgentState.MISSED
    assert service.timer_deadline == START + 17 + 15.0  # a2's ring timeout comes before a1's recovery

    h.clock.now += 3
    service.agent_answered(contact, "a2")
    h.clock.now += 4  # whisper and countdown
    service.contact_connected(contact)
    assert isinstance(h.take()[-1], ContactConnected)
    h.clock.now += 60
    service.contact_ended(contact, DisconnectReason.AGENT_HANGUP)
    events = h.take()
    assert ContactEnded(contact, "demo", "a2", "agent-hangup") in events
    assert service.agent_status("a2").state is AgentState.AFTER_CALL_WORK

    await h.store.flush()
    record = await h.store.get(contact)
    assert record is not None
    wall = h.clock.wall
    assert record.initiated_at == T0 + timedelta(seconds=2)
    assert record.enqueued_at == T0 + timedelta(seconds=2)
    assert record.offered_at == T0 + timedelta(seconds=17)  # the latest offer (to a2)
    assert record.connected_at == T0 + timedelta(seconds=24)
    assert record.disconnected_at == wall() == T0 + timedelta(seconds=84)
    assert (record.queue_id, record.agent_id, record.disconnect_reason) == ("demo", "a2", "agent-hangup")
    assert (
        record.caller == "sip:alice@example.com"
        and record.call_id == "call-1"
        and record.flags == ("verified",)
    )

    h.advance(5)  # a2's after-call work ends
    assert service.agent_status("a2").state is AgentState.AVAILABLE
    recovered = service.agent_status("a1")  # its RONA recovery (60 s) lapsed at 77 s
    assert (
        recovered.state is AgentState.AVAILABLE
        and recovered.state_since == (T0 + timedelta(seconds=77)).timestamp()
    )
    with pytest.raises(IllegalTransition):
        service.clear_rona("a1")


async def test_rona_recovers_after_the_configured_time(harness: Harness) -> None:
    h, service = harness, harness.service
    service.agent_registered("a1")
    contact = service.open_contact(number="2000")
    service.route(contact, h.number("2000"))
    h.advance(15)  # RONA; nobody else can take it
    assert service.agent_status("a1").state is AgentState.MISSED
    assert service.timer_deadline == START + 15 + 60
    h.advance(60)
    events = h.take()
    assert isinstance(events[-1], AgentReserved) and events[-1].agent_id == "a1"
    h.advance(15)  # missed again; this time a supervisor clears the RONA through the API
    assert service.agent_status("a1").state is AgentState.MISSED
    h.clock.now += 5
    status = service.clear_rona("a1")
    assert status.state is AgentState.RESERVED and status.contact_id == contact  # rung again at once
    assert status.state_since == h.clock.wall().timestamp()


async def test_abandon_and_supervisor_end_are_recorded(harness: Harness) -> None:
    h, service = harness, harness.service
    first = service.open_contact(number="2000")
    second = service.open_contact(number="2000")
    service.route(first, h.number("2000"))
    service.route(second, h.number("2000"))
    h.clock.now += 30
    service.contact_ended(first, DisconnectReason.CALLER_HANGUP)
    service.contact_ended(second, DisconnectReason.ENDED_BY_SUPERVISOR)
    assert [e.reason for e in h.take() if isinstance(e, ContactEnded)] == ["abandoned", "abandoned"]
    await h.store.flush()
    one, two = await h.store.get(first), await h.store.get(second)
    assert one is not None and one.disconnect_reason == "abandoned" and one.connected_at is None
    assert two is not None and two.disconnect_reason == "ended-by-supervisor"
    assert one.disconnected_at == T0 + timedelta(seconds=30)


async def test_overflow_message_and_its_record(harness: Harness) -> None:
    h, service = harness, harness.service
    ids = [service.open_contact(number="2000") for _ in range(3)]
    assert [service.enqueue(contact, "demo") for contact in ids] == ["demo", "demo", None]
    overflowed = [e for e in h.take() if isinstance(e, ContactOverflowed)]
    assert len(overflowed) == 1 and overflowed[0].action is OverflowAction.MESSAGE
    assert overflowed[0].target == "Full. Goodbye." and overflowed[0].contact_id == ids[2]
    service.contact_ended(ids[2], DisconnectReason.CALLER_HANGUP)  # after the message played
    await h.store.flush()
    record = await h.store.get(ids[2])
    assert record is not None and record.disconnect_reason == "overflow" and record.queue_id == "demo"
    assert record.enqueued_at is None


@pytest.mark.parametrize(
    ("when", "kind"),
    [
        (datetime(2026, 3, 6, 13, 30, tzinfo=UTC), RouteKind.AFTER_HOURS),  # Fri 08:30 EST
        (datetime(2026, 3, 9, 13, 30, tzinfo=UTC), RouteKind.QUEUE),  # Mon 09:30 EDT (DST began on the 8th)
        (datetime(2026, 3, 9, 21, 30, tzinfo=UTC), RouteKind.AFTER_HOURS),  # Mon 17:30 EDT
        (datetime(2026, 10, 30, 13, 30, tzinfo=UTC), RouteKind.QUEUE),  # Fri 09:30 EDT
        (
            datetime(2026, 11, 2, 13, 30, tzinfo=UTC),
            RouteKind.AFTER_HOURS,
        ),  # Mon 08:30 EST (DST ended on the 1st)
        (datetime(2026, 11, 2, 21, 30, tzinfo=UTC), RouteKind.QUEUE),  # Mon 16:30 EST
        (datetime(2026, 12, 25, 15, 0, tzinfo=UTC), RouteKind.AFTER_HOURS),  # Fri 10:00 EST, a holiday
        (datetime(2026, 12, 28, 15, 0, tzinfo=UTC), RouteKind.QUEUE),  # the Monday after
        (datetime(2026, 12, 26, 15, 0, tzinfo=UTC), RouteKind.AFTER_HOURS),  # Saturday
    ],
)
async def test_hours_decision_across_dst_and_holiday(
    harness: Harness, when: datetime, kind: RouteKind
) -> None:
    decision = harness.service.decide(harness.number("3000"), when, flags={"verified"})
    assert decision.kind is kind and decision.queue_id == "sales"
    if kind is RouteKind.AFTER_HOURS:
        assert decision.after_hours is not None and decision.after_hours.action == "voicemail"
        assert decision.after_hours.voicemail_max_seconds == 90


async def test_after_hours_route_records_the_deflection(harness: Harness) -> None:
    h, service = harness, harness.service
    contact = service.open_contact(number="3000", flags={"verified"})
    decision = service.route(contact, h.number("3000"), datetime(2026, 12, 25, 15, 0, tzinfo=UTC))
    assert decision.kind is RouteKind.AFTER_HOURS and service.live_contact(contact) is None
    assert h.take() == []  # the router never saw it
    h.clock.now += 95  # the voicemail ran
    service.contact_ended(contact, DisconnectReason.CALLER_HANGUP)
    await h.store.flush()
    record = await h.store.get(contact)
    assert record is not None and record.disconnect_reason == "after-hours" and record.queue_id == "sales"
    assert record.disconnected_at == T0 + timedelta(seconds=95)


async def test_after_hours_hand_over_to_another_queue(harness: Harness) -> None:
    service = harness.service
    number = harness.number("4000")
    # Monday 2026-11-23 04:00 UTC: 23:00 in New York on Sunday (closed), 05:00 in Berlin (closed too).
    early = service.decide(number, datetime(2026, 11, 23, 4, 0, tzinfo=UTC))
    assert (
        early.kind is RouteKind.AFTER_HOURS and early.queue_id == "emea" and early.path == ("support", "emea")
    )
    assert early.after_hours is not None and early.after_hours.action == "transfer"
    assert early.after_hours.transfer_mode == "redirect"
    # 06:30 UTC: 07:30 in Berlin, still night in New York.
    later = service.decide(number, datetime(2026, 11, 23, 6, 30, tzinfo=UTC))
    assert later.kind is RouteKind.QUEUE and later.queue_id == "emea" and later.requested_queue == "support"
    with pytest.raises(RouterError):
        service.decide(harness.number("9000"), T0)


async def test_flag_routes_send_bad_actors_to_review(harness: Harness) -> None:
    h, service = harness, harness.service
    service.agent_registered("r1")
    h.take()
    bad = service.decide(h.number("2000"), T0, flags={"verified", "bad_actor"})
    assert bad.kind is RouteKind.QUEUE and bad.queue_id == "review" and bad.flag == "bad_actor"
    assert bad.path == ("demo", "review")
    assert (
        service.decide(h.number("2000"), T0, flags={"unverified"}).queue_id == "demo"
    )  # rule only for sales
    assert service.decide(h.number("3000"), T0, flags={"unverified"}).queue_id == "review"
    assert service.decide(h.number("3000"), T0, flags={"verified"}).queue_id == "sales"

    contact = service.open_contact(
        number="2000", flags={"bad_actor", "unverified"}, attributes={"bad_actor": "true"}
    )
    assert service.route(contact, h.number("2000")).queue_id == "review"
    reserved = [e for e in h.take() if isinstance(e, AgentReserved)]
    assert reserved and reserved[0].agent_id == "r1" and reserved[0].queue_id == "review"
    headers = dict(service.agent_invite_headers(contact))
    assert headers["X-Mediagw-Flags"] == "bad_actor,unverified" and headers["X-Mediagw-Bad-Actor"] == "true"
    assert service.whisper("review").text == "Flagged caller"
    assert service.whisper("demo").countdown_text == "your next call begins in 3, 2, 1"
    await h.store.flush()
    record = await h.store.get(contact)
    assert record is not None and record.queue_id == "review" and record.offered_at == T0


async def test_timer_is_one_call_at_re_armed_on_the_loop() -> None:
    import asyncio

    profile = load_cc(center())
    loop = asyncio.get_running_loop()
    service = RouterService(profile)  # loop.time clock, no store
    try:
        service.agent_registered("a1")
        assert service.timer_deadline is None
        contact = service.open_contact()
        service.enqueue(contact, "demo")
        deadline = service.timer_deadline
        assert deadline is not None and abs(deadline - (loop.time() + 15.0)) < 1.0
        handle = service._timer
        assert handle is not None and abs(handle.when() - deadline) < 1e-6
        service.agent_answered(contact, "a1")  # no deadline while on the call
        assert service.timer_deadline is None and handle.cancelled()
        service.contact_connected(contact)
        service.contact_ended(contact, DisconnectReason.CALLER_HANGUP)  # 5 s of after-call work
        assert service.timer_deadline is not None and service._timer is not None
    finally:
        service.close()
    assert service._timer is None


async def test_callbacks_may_call_back_and_events_stay_in_order(harness: Harness) -> None:
    service = harness.service
    seen: list[str] = []

    def on_event(event: RouterEvent) -> None:
        seen.append(type(event).__name__)
        if isinstance(event, AgentReserved):  # an auto-answering phone
            service.agent_answered(event.contact_id, event.agent_id)
            service.contact_connected(event.contact_id)
        broken = isinstance(event, ContactEnqueued)
        if broken:
            raise LookupError("a broken handler is logged, routing goes on")

    service.on_event = on_event
    service.agent_registered("a1")
    contact = service.open_contact()
    service.enqueue(contact, "demo")
    assert seen == [
        "AgentStateChanged",
        "ContactEnqueued",
        "AgentStateChanged",
        "AgentReserved",
        "AgentStateChanged",
        "ContactConnected",
    ]
    assert service.live_contact(contact) is not None and service.live_contact(contact).state == "connected"


async def test_unregister_while_rung_requeues_to_the_next_agent(harness: Harness) -> None:
    h, service = harness, harness.service
    service.agent_registered("a1")
    h.clock.now += 1
    service.agent_registered("a2")
    contact = service.open_contact()
    service.enqueue(contact, "demo")
    assert [e.agent_id for e in h.take() if isinstance(e, AgentReserved)] == ["a1"]
    assert service.agent_unregistered("a1")
    assert not service.agent_unregistered("a1")
    events = h.take()
    assert any(isinstance(e, ContactRequeued) and e.reason == "agent_logout" for e in events)
    assert [e.agent_id for e in events if isinstance(e, AgentReserved)] == ["a2"]


async def test_views_for_the_api(harness: Harness) -> None:
    h, service = harness, harness.service
    service.agent_registered("a1")
    h.clock.now += 10
    service.set_agent_offline("a1")
    contact = service.open_contact()
    service.enqueue(contact, "demo")
    h.clock.now += 7
    statuses = {status.queue_id: status for status in service.queue_status()}
    assert list(statuses) == ["demo", "sales", "support", "emea", "review"]
    demo = statuses["demo"]
    assert demo.name == "Demo" and demo.open_now and demo.next_change is None
    assert demo.figures.contacts_waiting == 1 and demo.figures.oldest_wait == 7.0
    sales = statuses["sales"]
    assert sales.open_now and sales.next_change == datetime(2026, 11, 23, 22, 0, tzinfo=UTC)  # 17:00 EST
    assert service.queue_status()[1].next_change == sales.next_change  # cached answer, still right
    later = service.queue_status(datetime(2026, 11, 23, 22, 30, tzinfo=UTC))[1]
    assert not later.open_now and later.next_change == datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    agents = {a.agent_id: a for a in service.agents_status()}
    assert list(agents) == ["a1", "a2", "r1"]
    assert agents["a1"].state is AgentState.OFFLINE and agents["a1"].logged_in and agents["a1"].name == "Ann"
    assert agents["a1"].state_since == (T0 + timedelta(seconds=10)).timestamp()
    assert agents["r1"].name == "r1"
    with pytest.raises(IllegalTransition):
        service.set_agent_available("a2")  # not registered
    assert service.set_agent_available("a1").state is AgentState.RESERVED  # takes the waiting contact at once
    assert [c.contact_id for c in service.live_contacts()] == [contact]
    assert service.queue_config("sales").after_hours.action == "voicemail"
    assert service.is_open("emea", datetime(2026, 11, 23, 4, 0, tzinfo=UTC)) is False
    with pytest.raises(RouterError):
        service.queue_config("nope")


async def test_transfer_to_another_queue(harness: Harness) -> None:
    h, service = harness, harness.service
    contact = service.open_contact()
    service.enqueue(contact, "demo")
    service.agent_registered("r1")
    h.take()
    service.transfer_contact(contact, "review")
    events = h.take()
    assert any(isinstance(e, ContactRequeued) and e.reason == "transferred" for e in events)
    assert [e.agent_id for e in events if isinstance(e, AgentReserved)] == ["r1"]
    await h.store.flush()
    record = await h.store.get(contact)
    assert record is not None and record.queue_id == "review"


async def test_service_without_store_needs_no_database() -> None:
    clock = Clock()
    service = RouterService(load_cc(center()), clock=clock, wall_clock=clock.wall)
    contact = service.open_contact(contact_id="c1")
    assert contact == "c1" and service.enqueue(contact, "demo") == "demo"
    service.contact_ended(contact, DisconnectReason.CALLER_HANGUP)
    assert service.live_contact(contact) is None
    service.close()
