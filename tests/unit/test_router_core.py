"""Router core with an explicit clock: offer rule, RONA, after-call work, decline, abandon, overflow,
transfers, and a hypothesis state machine holding the invariants."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mediagw.errors import LocalError
from mediagw.router.core import (
    AgentReserved,
    AgentRingTimedOut,
    AgentSettings,
    AgentState,
    AgentStateChanged,
    ContactAbandoned,
    ContactConnected,
    ContactEnded,
    ContactEnqueued,
    ContactOverflowed,
    ContactRequeued,
    ContactState,
    IllegalTransition,
    OverflowAction,
    QueueSettings,
    Router,
    RouterError,
    RouterEvent,
    RoutingProfile,
)


def drain(router: Router) -> list[RouterEvent]:
    events = []
    while (event := router.next_event()) is not None:
        events.append(event)
    return events


def reservations(events: list[RouterEvent]) -> list[tuple[str, str]]:
    return [(e.contact_id, e.agent_id) for e in events if isinstance(e, AgentReserved)]


def make_router(
    *queues: QueueSettings, agents: dict[str, dict[str, int]], **agent_kw: float | None
) -> Router:
    router = Router()
    for queue in queues:
        router.add_queue(queue)
    for agent_id, profile in agents.items():
        router.add_agent(AgentSettings(agent_id, RoutingProfile.of(profile), **agent_kw))  # type: ignore[arg-type]
    return router


def pump(router: Router, now: float) -> None:
    """What the asyncio service does when its timer fires."""
    while (deadline := router.get_timer()) is not None and deadline <= now:
        router.handle_timer(now)


# ------------------------------------------------------------------------------------------ offer rule


def test_longest_idle_agent_wins() -> None:
    router = make_router(QueueSettings("q"), agents={"a1": {"q": 1}, "a2": {"q": 1}})
    router.agent_login("a2", 100.0)
    router.agent_login("a1", 105.0)
    router.enqueue("c1", "q", 110.0)
    assert reservations(drain(router)) == [("c1", "a2")]


def test_ties_in_idle_time_go_by_agent_id() -> None:
    router = make_router(QueueSettings("q"), agents={"bob": {"q": 1}, "alice": {"q": 1}, "carol": {"q": 1}})
    for agent_id in ("carol", "bob", "alice"):
        router.agent_login(agent_id, 50.0)
    drain(router)
    router.enqueue("c1", "q", 60.0)
    router.enqueue("c2", "q", 61.0)
    assert reservations(drain(router)) == [("c1", "alice"), ("c2", "bob")]


def test_agent_idle_longest_takes_the_waiting_contact_when_contacts_arrive_first() -> None:
    router = make_router(QueueSettings("q"), agents={"a1": {"q": 1}, "a2": {"q": 1}})
    router.enqueue("c1", "q", 0.0)
    router.enqueue("c2", "q", 1.0)
    router.agent_login("a1", 5.0)
    assert reservations(drain(router)) == [("c1", "a1")]
    router.agent_login("a2", 6.0)
    assert reservations(drain(router)) == [("c2", "a2")]


def test_routing_profile_priority_beats_wait_time() -> None:
    router = make_router(
        QueueSettings("sales"), QueueSettings("support"), agents={"a1": {"sales": 1, "support": 2}}
    )
    router.enqueue("old-support", "support", 0.0)
    router.enqueue("new-sales", "sales", 50.0)
    router.agent_login("a1", 60.0)
    assert reservations(drain(router)) == [("new-sales", "a1")]
    assert router.contact("old-support").position == 1  # type: ignore[union-attr]


def test_lower_priority_queue_is_served_when_the_better_one_is_empty() -> None:
    router = make_router(
        QueueSettings("sales"), QueueSettings("support"), agents={"a1": {"sales": 1, "support": 2}}
    )
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "support", 1.0)
    assert reservations(drain(router)) == [("c1", "a1")]


def test_queues_at_the_same_priority_level_are_served_oldest_first() -> None:
    router = make_router(QueueSettings("a"), QueueSettings("b"), agents={"x": {"a": 1, "b": 1}})
    router.enqueue("b-old", "b", 10.0)
    router.enqueue("a-new", "a", 20.0)
    router.agent_login("x", 30.0)
    assert reservations(drain(router)) == [("b-old", "x")]


def test_several_agents_and_queues_compete_by_agent_idle_order_then_profile() -> None:
    # a1 is idle longest and prefers support; a2 prefers sales. Both queues have work.
    router = make_router(
        QueueSettings("sales"),
        QueueSettings("support"),
        agents={"a1": {"support": 1, "sales": 2}, "a2": {"sales": 1, "support": 2}},
    )
    router.enqueue("s1", "sales", 0.0)
    router.enqueue("t1", "support", 1.0)
    router.enqueue("s2", "sales", 2.0)
    router.agent_login("a2", 10.0)  # a2 idle since 10, takes the oldest sales contact at once
    router.agent_login("a1", 11.0)
    assert reservations(drain(router)) == [("s1", "a2"), ("t1", "a1")]


def test_contacts_are_ordered_by_original_enqueue_time_then_contact_priority_first() -> None:
    router = make_router(QueueSettings("q"), agents={"a1": {"q": 1}})
    router.enqueue("late", "q", 100.0)
    router.enqueue("restored", "q", 101.0, enqueued_at=40.0)
    router.enqueue("vip", "q", 102.0, priority=-1)
    views = router.queue_contacts("q")
    assert [(v.contact_id, v.position) for v in views] == [("vip", 1), ("restored", 2), ("late", 3)]
    router.agent_login("a1", 103.0)
    assert reservations(drain(router))[-1] == ("vip", "a1")


def test_equal_enqueue_times_keep_arrival_order() -> None:
    router = make_router(QueueSettings("q"), agents={"a1": {"q": 1}})
    for contact_id in ("z", "m", "a"):
        router.enqueue(contact_id, "q", 5.0)
    assert [v.contact_id for v in router.queue_contacts("q")] == ["z", "m", "a"]


# ------------------------------------------------------------------------------------------ RONA


def test_ring_timeout_puts_agent_in_missed_and_requeues_the_contact_in_its_place() -> None:
    router = make_router(QueueSettings("q", ring_timeout=15.0), agents={"a1": {"q": 1}, "a2": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 10.0)
    router.enqueue("c2", "q", 11.0)
    router.enqueue("c3", "q", 12.0)
    events = drain(router)
    assert AgentReserved("c1", "a1", "q", 15.0) in events
    assert router.get_timer() == 25.0

    router.handle_timer(25.0)
    events = drain(router)
    assert events == [
        AgentRingTimedOut("c1", "a1", "q"),
        AgentStateChanged("a1", AgentState.RESERVED, AgentState.MISSED, "ring_timeout"),
        ContactRequeued("c1", "q", "a1", "ring_timeout", 1),
    ]
    assert router.agent("a1").state is AgentState.MISSED
    assert [v.contact_id for v in router.queue_contacts("q")] == ["c1", "c2", "c3"]
    assert router.contact("c1").enqueued_at == 10.0  # type: ignore[union-attr]

    router.agent_login("a2", 30.0)
    assert reservations(drain(router)) == [("c1", "a2")]


def test_rona_recovers_after_the_configured_time() -> None:
    router = make_router(QueueSettings("q", ring_timeout=10.0), agents={"a1": {"q": 1}}, rona_recovery=60.0)
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 0.0)
    router.handle_timer(10.0)
    drain(router)
    assert router.agent("a1").state is AgentState.MISSED
    assert router.get_timer() == 70.0
    router.handle_timer(69.9)
    assert router.agent("a1").state is AgentState.MISSED
    router.handle_timer(70.0)
    events = drain(router)
    assert events[0] == AgentStateChanged("a1", AgentState.MISSED, AgentState.AVAILABLE, "rona_recovered")
    assert reservations(events) == [("c1", "a1")]
    assert router.agent("a1").idle_since == 70.0


def test_rona_without_recovery_time_waits_for_clear_rona() -> None:
    router = make_router(QueueSettings("q", ring_timeout=10.0), agents={"a1": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 0.0)
    router.handle_timer(10.0)
    drain(router)
    assert router.get_timer() is None
    router.clear_rona("a1", 500.0)
    events = drain(router)
    assert events[0] == AgentStateChanged("a1", AgentState.MISSED, AgentState.AVAILABLE, "clear_rona")
    assert reservations(events) == [("c1", "a1")]


def test_clear_rona_on_an_agent_not_missed_names_state_and_event() -> None:
    router = make_router(QueueSettings("q"), agents={"a1": {"q": 1}})
    router.agent_login("a1", 0.0)
    with pytest.raises(IllegalTransition, match=r"agent 'a1' is AVAILABLE: 'clear_rona'") as info:
        router.clear_rona("a1", 1.0)
    assert info.value.state is AgentState.AVAILABLE
    assert isinstance(info.value, LocalError)


def test_late_timer_replays_deadlines_at_their_own_times() -> None:
    router = make_router(
        QueueSettings("q", ring_timeout=10.0), agents={"a1": {"q": 1}, "a2": {"q": 1}}, rona_recovery=5.0
    )
    router.agent_login("a1", 0.0)
    router.agent_login("a2", 1.0)
    router.enqueue("c1", "q", 2.0)
    drain(router)
    # Nobody answers anything; wake up very late.
    router.handle_timer(1000.0)
    events = drain(router)
    timeouts = [(e.agent_id) for e in events if isinstance(e, AgentRingTimedOut)]
    # a1 times out at 12, a2 is rung at 12 and times out at 22, a1 recovers at 17 and is rung at 22 ...
    assert timeouts[:3] == ["a1", "a2", "a1"]
    assert router.get_timer() is not None and router.get_timer() > 1000.0  # type: ignore[operator]


# ------------------------------------------------------------------------------------------ calls


def connect(router: Router, contact_id: str, agent_id: str, now: float) -> None:
    router.agent_answered(contact_id, agent_id, now)
    router.contact_connected(contact_id, now)


def test_answer_connect_end_and_after_call_work_from_the_queue() -> None:
    router = make_router(QueueSettings("q", after_call_work=30.0), agents={"a1": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 10.0)
    drain(router)
    router.agent_answered("c1", "a1", 14.0)
    assert router.contact("c1").state is ContactState.OFFERED  # type: ignore[union-attr]
    router.contact_connected("c1", 15.0)
    events = drain(router)
    assert events[-1] == ContactConnected("c1", "a1", "q", 5.0)
    router.enqueue("c2", "q", 20.0)
    assert reservations(drain(router)) == []  # voice concurrency 1

    router.contact_ended("c1", 100.0, "caller_bye")
    events = drain(router)
    assert events == [
        ContactEnded("c1", "q", "a1", "caller_bye"),
        AgentStateChanged("a1", AgentState.ON_CALL, AgentState.AFTER_CALL_WORK, "call_ended"),
    ]
    assert router.contact("c1") is None
    assert router.get_timer() == 130.0
    router.handle_timer(130.0)
    events = drain(router)
    assert events[0] == AgentStateChanged("a1", AgentState.AFTER_CALL_WORK, AgentState.AVAILABLE, "acw_ended")
    assert reservations(events) == [("c2", "a1")]
    assert router.agent("a1").idle_since == 130.0


def test_agent_after_call_work_overrides_the_queue_and_can_end_early() -> None:
    router = make_router(
        QueueSettings("q", after_call_work=30.0), agents={"a1": {"q": 1}}, after_call_work=90.0
    )
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 0.0)
    connect(router, "c1", "a1", 1.0)
    router.contact_ended("c1", 10.0, "agent_bye")
    assert router.get_timer() == 100.0
    router.set_agent_available("a1", 40.0)
    assert router.agent("a1").state is AgentState.AVAILABLE
    assert router.agent("a1").idle_since == 40.0
    assert router.get_timer() is None


def test_zero_after_call_work_still_reports_both_steps() -> None:
    router = make_router(QueueSettings("q"), agents={"a1": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 0.0)
    connect(router, "c1", "a1", 1.0)
    drain(router)
    router.contact_ended("c1", 10.0, "agent_bye")
    states = [(e.old, e.new) for e in drain(router) if isinstance(e, AgentStateChanged)]
    assert states == [
        (AgentState.ON_CALL, AgentState.AFTER_CALL_WORK),
        (AgentState.AFTER_CALL_WORK, AgentState.AVAILABLE),
    ]


def test_decline_goes_to_the_next_agent_and_the_decliner_stays_available() -> None:
    router = make_router(
        QueueSettings("q", decline_reoffer_delay=20.0), agents={"a1": {"q": 1}, "a2": {"q": 1}}
    )
    router.agent_login("a1", 0.0)
    router.agent_login("a2", 5.0)
    router.enqueue("c1", "q", 10.0)
    assert reservations(drain(router)) == [("c1", "a1")]
    router.agent_declined("c1", "a1", 12.0, busy=False)
    events = drain(router)
    assert AgentStateChanged("a1", AgentState.RESERVED, AgentState.AVAILABLE, "declined") in events
    assert ContactRequeued("c1", "q", "a1", "declined", 1) in events
    assert reservations(events) == [("c1", "a2")]
    assert router.agent("a1").state is AgentState.AVAILABLE
    assert router.agent("a1").idle_since == 0.0  # keeps its place in line

    # The decliner is first in line for other contacts.
    router.enqueue("c2", "q", 13.0)
    assert reservations(drain(router)) == [("c2", "a1")]


def test_declined_contact_comes_back_to_the_same_agent_only_after_the_delay() -> None:
    router = make_router(QueueSettings("q", decline_reoffer_delay=20.0), agents={"a1": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 10.0)
    drain(router)
    router.agent_declined("c1", "a1", 12.0, busy=False)
    assert reservations(drain(router)) == []
    assert router.contact("c1").declined_until == {"a1": 32.0}  # type: ignore[union-attr]
    assert router.get_timer() == 32.0
    router.handle_timer(32.0)
    assert reservations(drain(router)) == [("c1", "a1")]


def test_busy_agent_goes_missed() -> None:
    router = make_router(QueueSettings("q"), agents={"a1": {"q": 1}, "a2": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.agent_login("a2", 1.0)
    router.enqueue("c1", "q", 2.0)
    drain(router)
    router.agent_declined("c1", "a1", 3.0, busy=True)
    events = drain(router)
    assert AgentStateChanged("a1", AgentState.RESERVED, AgentState.MISSED, "busy") in events
    assert reservations(events) == [("c1", "a2")]


def test_answer_by_the_wrong_agent_and_connect_before_answer_raise() -> None:
    router = make_router(QueueSettings("q"), agents={"a1": {"q": 1}, "a2": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.agent_login("a2", 1.0)
    router.enqueue("c1", "q", 2.0)
    with pytest.raises(IllegalTransition, match="not offered to agent 'a2'"):
        router.agent_answered("c1", "a2", 3.0)
    with pytest.raises(IllegalTransition, match="OFFERED"):
        router.contact_connected("c1", 3.0)
    with pytest.raises(RouterError, match="unknown"):
        router.contact_ended("nope", 3.0, "bye")


# ------------------------------------------------------------------------------------------ abandon


def test_abandon_in_queue_records_abandoned() -> None:
    router = make_router(QueueSettings("q"), agents={"a1": {"q": 1}})
    router.enqueue("c1", "q", 10.0)
    router.enqueue("c2", "q", 11.0)
    drain(router)
    router.contact_ended("c1", 40.0, "caller_hangup")
    assert drain(router) == [
        ContactAbandoned("c1", "q", None, 30.0, "caller_hangup"),
        ContactEnded("c1", "q", None, "abandoned"),
    ]
    assert router.contact("c2").position == 1  # type: ignore[union-attr]
    assert router.queue_figures("q", 41.0).contacts_waiting == 1


def test_abandon_while_ringing_returns_the_agent_without_after_call_work() -> None:
    router = make_router(QueueSettings("q", after_call_work=60.0), agents={"a1": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 10.0)
    drain(router)
    router.contact_ended("c1", 15.0, "caller_hangup")
    assert drain(router) == [
        ContactAbandoned("c1", "q", "a1", 5.0, "caller_hangup"),
        ContactEnded("c1", "q", "a1", "abandoned"),
        AgentStateChanged("a1", AgentState.RESERVED, AgentState.AVAILABLE, "offer_cancelled"),
    ]
    assert router.agent("a1").idle_since == 0.0
    assert router.get_timer() is None


def test_abandon_during_whisper_is_still_abandoned() -> None:
    router = make_router(QueueSettings("q", after_call_work=60.0), agents={"a1": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 10.0)
    router.agent_answered("c1", "a1", 12.0)
    drain(router)
    router.contact_ended("c1", 13.0, "caller_hangup")
    events = drain(router)
    assert ContactEnded("c1", "q", "a1", "abandoned") in events
    assert router.agent("a1").state is AgentState.AVAILABLE


# ------------------------------------------------------------------------------------------ overflow


def test_size_limit_reject_with_sip_status() -> None:
    router = make_router(QueueSettings("q", max_size=2, overflow_status=503), agents={})
    router.enqueue("c1", "q", 0.0)
    router.enqueue("c2", "q", 1.0)
    drain(router)
    router.enqueue("c3", "q", 2.0)
    assert drain(router) == [
        ContactOverflowed("c3", "q", OverflowAction.REJECT, None, 503, "Service Unavailable")
    ]
    assert router.contact("c3") is None
    router.contact_ended("c1", 3.0, "caller_hangup")
    router.enqueue("c3", "q", 4.0)
    assert isinstance(drain(router)[-1], ContactEnqueued)


def test_size_limit_counts_offered_contacts_and_overflows_to_a_message() -> None:
    router = make_router(
        QueueSettings("q", max_size=1, overflow_action=OverflowAction.MESSAGE, overflow_target="busy-msg"),
        agents={"a1": {"q": 1}},
    )
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 1.0)  # offered to a1 at once, still counts
    drain(router)
    router.enqueue("c2", "q", 2.0)
    assert drain(router) == [ContactOverflowed("c2", "q", OverflowAction.MESSAGE, "busy-msg", None, None)]


def test_size_limit_overflow_to_another_queue_chains() -> None:
    router = Router()
    router.add_queue(QueueSettings("last", max_size=0))
    router.add_queue(
        QueueSettings("backup", max_size=1, overflow_action=OverflowAction.QUEUE, overflow_target="last")
    )
    router.add_queue(
        QueueSettings("main", max_size=1, overflow_action=OverflowAction.QUEUE, overflow_target="backup")
    )
    router.enqueue("c1", "main", 0.0)
    router.enqueue("c2", "main", 1.0)
    router.enqueue("c3", "main", 2.0)
    events = drain(router)
    assert events == [
        ContactEnqueued("c1", "main", 0.0, 1),
        ContactOverflowed("c2", "main", OverflowAction.QUEUE, "backup", None, None),
        ContactEnqueued("c2", "backup", 1.0, 1),
        ContactOverflowed("c3", "main", OverflowAction.QUEUE, "backup", None, None),
        ContactOverflowed("c3", "backup", OverflowAction.QUEUE, "last", None, None),
        ContactOverflowed("c3", "last", OverflowAction.REJECT, None, 486, "Busy Here"),
    ]
    assert router.contact("c2").queue_id == "backup"  # type: ignore[union-attr]


def test_overflow_target_must_exist_and_settings_are_checked() -> None:
    router = Router()
    with pytest.raises(RouterError, match="unknown"):
        router.add_queue(
            QueueSettings("a", max_size=1, overflow_action=OverflowAction.QUEUE, overflow_target="b")
        )
    with pytest.raises(RouterError, match="needs overflow_target"):
        QueueSettings("a", overflow_action=OverflowAction.MESSAGE)
    with pytest.raises(RouterError, match="400-699"):
        QueueSettings("a", overflow_status=200)
    with pytest.raises(RouterError, match="voice_concurrency"):
        RoutingProfile((("a", 1),), voice_concurrency=2)
    with pytest.raises(RouterError, match="unknown queue"):
        router.add_agent(AgentSettings("x", RoutingProfile.of({"zz": 1})))


# ------------------------------------------------------------------------------------------ transfers, status


def test_transfer_keeping_place_uses_the_original_enqueue_time() -> None:
    router = make_router(QueueSettings("a"), QueueSettings("b"), QueueSettings("c"), agents={"x": {"a": 1}})
    router.enqueue("b1", "b", 50.0)
    router.enqueue("b2", "b", 80.0)
    router.agent_login("x", 0.0)
    router.enqueue("c1", "a", 60.0)
    connect(router, "c1", "x", 61.0)
    router.transfer_contact("c1", "b", 100.0, keep_place=True)
    assert [v.contact_id for v in router.queue_contacts("b")] == ["b1", "c1", "b2"]
    assert router.agent("x").state is AgentState.AVAILABLE  # via ACW 0
    router.transfer_contact("c1", "c", 101.0, keep_place=False)
    router.transfer_contact("c1", "b", 102.0, keep_place=False)
    assert [v.contact_id for v in router.queue_contacts("b")] == ["b1", "b2", "c1"]


def test_offline_while_reserved_requeues_and_while_on_call_is_deferred() -> None:
    router = make_router(QueueSettings("q", after_call_work=10.0), agents={"a1": {"q": 1}, "a2": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 1.0)
    router.set_agent_offline("a1", 2.0)
    events = drain(router)
    assert ContactRequeued("c1", "q", "a1", "agent_offline", 1) in events
    assert router.agent("a1").state is AgentState.OFFLINE and router.agent("a1").logged_in

    router.agent_login("a2", 3.0)
    connect(router, "c1", "a2", 4.0)
    router.agent_logout("a2", 5.0)
    assert router.agent("a2").state is AgentState.ON_CALL and router.agent("a2").pending_offline
    router.contact_ended("c1", 20.0, "bye")
    assert router.agent("a2").state is AgentState.AFTER_CALL_WORK
    router.handle_timer(30.0)
    view = router.agent("a2")
    assert view.state is AgentState.OFFLINE and not view.logged_in and not view.pending_offline
    with pytest.raises(IllegalTransition, match="not logged in"):
        router.set_agent_available("a2", 31.0)


def test_set_available_cancels_a_pending_offline_even_during_after_call_work() -> None:
    router = make_router(QueueSettings("q", after_call_work=10.0), agents={"a1": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 1.0)
    connect(router, "c1", "a1", 2.0)
    router.set_agent_offline("a1", 3.0)
    router.contact_ended("c1", 4.0, "bye")
    router.set_agent_available("a1", 5.0)
    assert not router.agent("a1").pending_offline
    router.enqueue("c2", "q", 6.0)
    connect(router, "c2", "a1", 7.0)
    router.contact_ended("c2", 8.0, "bye")
    router.handle_timer(18.0)
    assert router.agent("a1").state is AgentState.AVAILABLE


def test_pending_offline_applies_when_the_caller_abandons_during_the_whisper() -> None:
    router = make_router(QueueSettings("q"), agents={"a1": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 1.0)
    router.agent_answered("c1", "a1", 2.0)
    router.set_agent_offline("a1", 3.0)
    router.enqueue("c2", "q", 3.5)
    router.contact_ended("c1", 4.0, "caller_hangup")
    assert router.agent("a1").state is AgentState.OFFLINE
    assert router.contact("c2").state is ContactState.QUEUED  # type: ignore[union-attr]


def test_queue_figures() -> None:
    router = make_router(
        QueueSettings("q", after_call_work=100.0),
        QueueSettings("other"),
        agents={"a1": {"q": 1}, "a2": {"q": 1}, "a3": {"q": 2, "other": 1}, "a4": {"other": 1}},
    )
    for i, agent_id in enumerate(("a1", "a2", "a3", "a4")):
        router.agent_login(agent_id, float(i))
    router.enqueue("c1", "q", 10.0)
    connect(router, "c1", "a1", 11.0)
    router.enqueue("c2", "q", 12.0)  # a2 rung
    router.enqueue("c3", "q", 13.0)  # a3 rung (q is its second queue)
    router.enqueue("c4", "q", 14.0)  # waits
    router.contact_ended("c1", 20.0, "bye")  # a1 in ACW
    figures = router.queue_figures("q", 30.0)
    assert (figures.contacts_waiting, figures.contacts_offered, figures.oldest_wait) == (1, 2, 16.0)
    assert (figures.agents_staffed, figures.agents_available, figures.agents_reserved) == (3, 0, 2)
    assert (figures.agents_on_call, figures.agents_in_acw) == (0, 1)
    assert router.queue_figures("other", 30.0).agents_available == 1


# ------------------------------------------------------------------------------------------ hypothesis

AGENT_IDS = ("a1", "a2", "a3", "a4")
QUEUE_IDS = ("q1", "q2", "q3")


class RouterMachine(RuleBasedStateMachine):
    """Random command sequences with a monotonic clock; the service's timer loop runs after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.router = Router()
        self.clock = 0.0
        self.next_contact = 0
        self.offered_ever: set[str] = set()
        self.enqueued_ever: set[str] = set()
        self.offers: dict[str, str] = {}  # contact -> agent, from the event stream

    @initialize(
        profiles=st.lists(
            st.dictionaries(st.sampled_from(QUEUE_IDS), st.integers(1, 3), min_size=1), min_size=4, max_size=4
        ),
        acw=st.sampled_from([0.0, 5.0]),
        recovery=st.sampled_from([None, 0.0, 7.0]),
        delay=st.sampled_from([0.0, 3.0]),
    )
    def setup(self, profiles: list[dict[str, int]], acw: float, recovery: float | None, delay: float) -> None:
        for queue_id in QUEUE_IDS:
            self.router.add_queue(
                QueueSettings(
                    queue_id, ring_timeout=4.0, after_call_work=acw, decline_reoffer_delay=delay, max_size=6
                )
            )
        for agent_id, profile in zip(AGENT_IDS, profiles):
            self.router.add_agent(AgentSettings(agent_id, RoutingProfile.of(profile), rona_recovery=recovery))

    def step(self) -> None:
        pump(self.router, self.clock)
        for event in drain(self.router):
            if isinstance(event, AgentReserved):
                assert event.contact_id not in self.offers, "contact offered to two agents"
                assert event.agent_id not in self.offers.values(), "agent reserved twice"
                self.offers[event.contact_id] = event.agent_id
                self.offered_ever.add(event.contact_id)
            elif isinstance(event, (ContactRequeued, ContactEnded, ContactConnected)):
                self.offers.pop(event.contact_id, None)
            elif isinstance(event, ContactEnqueued):
                self.enqueued_ever.add(event.contact_id)

    def agents_in(self, *states: AgentState) -> list[str]:
        return [a.agent_id for a in self.router.agents() if a.state in states]

    # -- rules

    @rule(dt=st.floats(0.0, 10.0))
    def advance(self, dt: float) -> None:
        self.clock += dt
        self.step()

    @rule(queue=st.sampled_from(QUEUE_IDS), priority=st.integers(-1, 1))
    def enqueue(self, queue: str, priority: int) -> None:
        self.next_contact += 1
        self.router.enqueue(f"c{self.next_contact}", queue, self.clock, priority=priority)
        self.step()

    @rule(agent=st.sampled_from(AGENT_IDS))
    def login_or_logout(self, agent: str) -> None:
        if self.router.agent(agent).logged_in:
            self.router.agent_logout(agent, self.clock)
        else:
            self.router.agent_login(agent, self.clock)
        self.step()

    @rule(agent=st.sampled_from(AGENT_IDS), available=st.booleans())
    def set_status(self, agent: str, available: bool) -> None:
        if not self.router.agent(agent).logged_in:
            return
        if available:
            self.router.set_agent_available(agent, self.clock)
        else:
            self.router.set_agent_offline(agent, self.clock)
        self.step()

    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        reserved = self.agents_in(AgentState.RESERVED)
        if not reserved:
            return
        agent = self.router.agent(data.draw(st.sampled_from(reserved)))
        assert agent.contact_id is not None
        self.router.agent_answered(agent.contact_id, agent.agent_id, self.clock)
        if data.draw(st.booleans()):
            self.router.contact_connected(agent.contact_id, self.clock)
        self.step()

    @rule(data=st.data())
    def connect_answered(self, data: st.DataObject) -> None:
        on_call = [
            a
            for a in self.router.agents()
            if a.state is AgentState.ON_CALL
            and self.router.contact(a.contact_id).state is ContactState.OFFERED  # type: ignore[arg-type,union-attr]
        ]
        if on_call:
            self.router.contact_connected(data.draw(st.sampled_from(on_call)).contact_id, self.clock)  # type: ignore[arg-type]
            self.step()

    @rule(data=st.data(), busy=st.booleans())
    def decline(self, data: st.DataObject, busy: bool) -> None:
        reserved = self.agents_in(AgentState.RESERVED)
        if not reserved:
            return
        agent = self.router.agent(data.draw(st.sampled_from(reserved)))
        self.router.agent_declined(agent.contact_id, agent.agent_id, self.clock, busy=busy)  # type: ignore[arg-type]
        self.step()

    @rule(data=st.data())
    def end(self, data: st.DataObject) -> None:
        contacts = self.router.contacts()
        if not contacts:
            return
        contact = data.draw(st.sampled_from(contacts))
        self.router.contact_ended(contact.contact_id, self.clock, "bye")
        self.step()

    @rule(data=st.data(), queue=st.sampled_from(QUEUE_IDS), keep_place=st.booleans())
    def transfer(self, data: st.DataObject, queue: str, keep_place: bool) -> None:
        movable = [
            c for c in self.router.contacts() if c.state in (ContactState.QUEUED, ContactState.CONNECTED)
        ]
        if not movable:
            return
        contact = data.draw(st.sampled_from(movable))
        self.router.transfer_contact(contact.contact_id, queue, self.clock, keep_place=keep_place)
        self.step()

    @rule(agent=st.sampled_from(AGENT_IDS))
    def clear_rona(self, agent: str) -> None:
        if self.router.agent(agent).state is AgentState.MISSED:
            self.router.clear_rona(agent, self.clock)
            self.step()

    # -- invariants

    @invariant()
    def reservations_are_one_to_one(self) -> None:
        contacts = {c.contact_id: c for c in self.router.contacts()}
        holders: dict[str, str] = {}
        for agent in self.router.agents():
            if agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
                assert agent.contact_id is not None
                assert agent.contact_id not in holders, "contact held by two agents"
                holders[agent.contact_id] = agent.agent_id
                contact = contacts[agent.contact_id]
                assert contact.agent_id == agent.agent_id
                expected = (
                    (ContactState.OFFERED,)
                    if agent.state is AgentState.RESERVED
                    else (ContactState.OFFERED, ContactState.CONNECTED)
                )
                assert contact.state in expected
            else:
                assert agent.contact_id is None
        for contact in contacts.values():
            if contact.state in (ContactState.OFFERED, ContactState.CONNECTED):
                assert holders.get(contact.contact_id) == contact.agent_id
            else:
                assert contact.agent_id is None and contact.position is not None
        assert {c: a for c, a in self.offers.items() if contacts[c].state is ContactState.OFFERED} == {
            c.contact_id: c.agent_id for c in contacts.values() if c.state is ContactState.OFFERED
        }

    @invariant()
    def no_available_agent_idles_while_it_could_take_a_contact(self) -> None:
        for agent in self.router.agents():
            if agent.state is not AgentState.AVAILABLE:
                continue
            profile = dict(self.router._agents[agent.agent_id].settings.routing_profile.queues)
            for queue_id in profile:
                for contact in self.router.queue_contacts(queue_id):
                    assert contact.declined_until.get(agent.agent_id, -1.0) > self.clock, (
                        f"{agent.agent_id} idle while {contact.contact_id} waits in {queue_id}"
                    )

    @invariant()
    def figures_match_the_contacts(self) -> None:
        for queue_id in QUEUE_IDS:
            figures = self.router.queue_figures(queue_id, self.clock)
            in_queue = [c for c in self.router.contacts() if c.queue_id == queue_id]
            assert figures.contacts_waiting == sum(c.state is ContactState.QUEUED for c in in_queue)
            assert figures.contacts_offered == sum(c.state is ContactState.OFFERED for c in in_queue)
            positions = [c.position for c in self.router.queue_contacts(queue_id)]
            assert positions == list(range(1, len(positions) + 1))

    @invariant()
    def timer_is_in_the_future(self) -> None:
        deadline = self.router.get_timer()
        assert deadline is None or deadline > self.clock

    def teardown(self) -> None:
        """Liveness: with every agent available and answering, every contact in a staffed queue is offered."""
        router = self.router
        for agent in router.agents():
            if not agent.logged_in:
                router.agent_login(agent.agent_id, self.clock)
            elif agent.state is AgentState.MISSED:
                router.clear_rona(agent.agent_id, self.clock)
            else:
                router.set_agent_available(agent.agent_id, self.clock)  # also cancels a pending offline
        self.step()
        staffed = {q for a in AGENT_IDS for q, _ in router._agents[a].settings.routing_profile.queues}
        for _ in range(200):
            if not any(c.state is ContactState.QUEUED and c.queue_id in staffed for c in router.contacts()):
                break
            for agent in router.agents():
                if agent.state is AgentState.RESERVED:
                    router.agent_answered(agent.contact_id, agent.agent_id, self.clock)  # type: ignore[arg-type]
                    router.contact_connected(agent.contact_id, self.clock)  # type: ignore[arg-type]
                elif agent.state is AgentState.MISSED:
                    router.clear_rona(agent.agent_id, self.clock)
            for contact in router.contacts():
                if (
                    contact.state is ContactState.OFFERED
                    and router.agent(contact.agent_id).state is AgentState.ON_CALL
                ):  # type: ignore[arg-type]
                    router.contact_connected(contact.contact_id, self.clock)
            for contact in router.contacts():
                if contact.state is ContactState.CONNECTED:
                    router.contact_ended(contact.contact_id, self.clock, "bye")
            self.step()
            if not self.agents_in(AgentState.RESERVED):  # time passes only while nobody is being rung
                self.clock = max(self.clock + 1.0, router.get_timer() or 0.0)
                self.step()
        left = [
            c.contact_id
            for c in router.contacts()
            if c.state is ContactState.QUEUED and c.queue_id in staffed
        ]
        assert not left, f"never offered: {left}"


RouterMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestRouterMachine = RouterMachine.TestCase


def test_contact_keeps_flags_and_read_only_attributes() -> None:
    router = make_router(QueueSettings("q"), QueueSettings("r"), agents={})
    attributes = {"verified_customer": "true"}
    router.enqueue("c1", "q", 1.0, flags={"verified"}, attributes=attributes)
    attributes["verified_customer"] = "false"
    view = router.contact("c1")
    assert view is not None
    assert view.flags == {"verified"} and view.attributes == {"verified_customer": "true"}
    with pytest.raises(TypeError):
        view.attributes["x"] = "y"  # type: ignore[index]
    router.transfer_contact("c1", "r", 2.0, keep_place=True)
    assert router.contact("c1").flags == {"verified"}  # type: ignore[union-attr]
    with pytest.raises(RouterError, match="exists already"):
        router.enqueue("c1", "q", 3.0)


def test_transfer_of_an_offered_contact_is_illegal() -> None:
    router = make_router(QueueSettings("q"), QueueSettings("r"), agents={"a1": {"q": 1}})
    router.agent_login("a1", 0.0)
    router.enqueue("c1", "q", 1.0)
    with pytest.raises(IllegalTransition, match="contact 'c1' is OFFERED: 'transfer'"):
        router.transfer_contact("c1", "r", 2.0, keep_place=True)
