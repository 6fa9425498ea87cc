"""The in-process event bus behind ``WS /api/v1/events``.

Theory of operation: the gateway calls ``EventBus.publish(event)`` on its loop whenever a call, agent,
monitor, queue or recording changes. ``publish`` never blocks and never awaits: it stamps the event with a
sequence number (and the time, when missing), serializes it to JSON once, and appends the text to each
subscriber's bounded queue. A subscriber whose queue is full is too slow to keep up: it is dropped on the
spot (its queue is emptied and it is marked closed with ``CLOSE_SLOW_CONSUMER``), so a stuck dashboard can
never hold the gateway back or grow its memory. The WebSocket route then closes the connection with that
code; the client reconnects and reloads the REST snapshot.

Events are JSON objects with at least ``type`` (``TOPIC.what_happened``, e.g. ``call.connected``), ``seq``
(per bus, increasing by one; a gap means events were lost) and ``at`` (Unix time). The topic (the part of
``type`` before the first dot) lets a subscriber filter: ``call``, ``monitor``, ``agent``, ``queue``,
``recording``. Suggested types: ``call.queued``, ``call.ringing``, ``call.connected``, ``call.ended``,
``monitor.started``, ``monitor.changed``, ``monitor.stopped``, ``agent.state_changed``, ``queue.updated``,
``recording.paused``, ``recording.resumed``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001  # RFC 6455 §7.4.1: the server is going down
CLOSE_POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1: used when a WebSocket is refused for lack of a token
CLOSE_SLOW_CONSUMER = 1013  # RFC 6455 §7.4.1 / IANA "Try Again Later": dropped for not keeping up
DEFAULT_MAX_QUEUE = 1000
"""Events buffered per subscriber before it counts as too slow and is dropped."""

TOPICS: frozenset[str] = frozenset({"call", "monitor", "agent", "queue", "recording"})


def topic_of(event_type: str) -> str:
    """The topic of an event type: the part before the first dot."""
    return event_type.split(".", 1)[0]


class Subscription:
    """One subscriber's bounded queue of serialized events."""

    def __init__(self, bus: EventBus, max_queue: int, topics: frozenset[str] | None) -> None:
        self._bus = bus
        self._items: deque[str] = deque()
        self._max_queue = max_queue
        self._wakeup = asyncio.Event()
        self.topics = topics
        """Topics this subscriber wants; None for all."""
        self.close_code: int | None = None
        """Why the bus closed this subscription (a WebSocket close code), or None while open."""
        self.close_reason = ""

    @property
    def closed(self) -> bool:
        """True once the bus dropped or closed this subscription, or the subscriber left."""
        return self.close_code is not None

    def __len__(self) -> int:
        return len(self._items)

    def wants(self, topic: str) -> bool:
        """True when this subscriber asked for ``topic``."""
        return self.topics is None or topic in self.topics

    def offer(self, text: str) -> bool:
        """Queue one serialized event; False (and nothing queued) when the queue is full or closed."""
        if self.closed or len(self._items) >= self._max_queue:
            return False
        self._items.append(text)
        self._wakeup.set()
        return True

    def close(self, code: int = CLOSE_GOING_AWAY, reason: str = "") -> None:
        """Stop this subscription: pending events are discarded and ``get`` returns None."""
        if self.closed:
            return
        self.close_code = code
        self.close_reason = reason
        self._items.clear()
        self._wakeup.set()
        self._bus._discard(self)

    async def get(self) -> str | None:
        """The next serialized event, waiting for one; None once the subscription is closed."""
        while not self._items:
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()


class EventBus:
    """Fan-out of gateway events to WebSocket subscribers; publishing never blocks."""

    def __init__(self, max_queue: int = DEFAULT_MAX_QUEUE, clock: Callable[[], float] = time.time) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.max_queue = max_queue
        self._clock = clock
        self._subscribers: list[Subscription] = []
        self._seq = 0
        self.dropped = 0
        """Subscribers dropped for being too slow, since start."""
        self.closed = False

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(self, topics: Iterable[str] | None = None, max_queue: int | None = None) -> Subscription:
        """A new subscription to every event, or to ``topics`` only. Raises ValueError for unknown topics."""
        wanted: frozenset[str] | None = None
        if topics is not None:
            wanted = frozenset(topics)
            unknown = wanted - TOPICS
            if unknown:
                raise ValueError(
                    f"unknown topic(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(TOPICS))}"
                )
        subscription = Subscription(self, max_queue or self.max_queue, wanted)
        if self.closed:
            subscription.close(CLOSE_GOING_AWAY, "the gateway is shutting down")
        else:
            self._subscribers.append(subscription)
        return subscription

    def publish(self, event: Mapping[str, Any]) -> int:
        """Send ``event`` to every subscriber that wants its topic; returns its sequence number.

        ``event`` needs a string ``type``; ``seq`` is set here and ``at`` when missing. Values that JSON
        cannot hold are sent as strings. Call on the gateway's loop (not thread-safe).
        """
        event_type = event.get("type")
        if not isinstance(event_type, str) or not event_type:
            raise ValueError("an event needs a non-empty string 'type'")
        self._seq += 1
        payload = dict(event)
        payload["seq"] = self._seq
        payload.setdefault("at", self._clock())
        text = json.dumps(payload, default=str, separators=(",", ":"))
        topic = topic_of(event_type)
        for subscription in list(self._subscribers):
            if subscription.wants(topic) and not subscription.offer(text):
                self.dropped += 1
                logger.warning(
                    "event subscriber dropped: %d events queued without being read", len(subscription)
                )
                subscription.close(CLOSE_SLOW_CONSUMER, "too slow: events were dropped; reconnect")
        return self._seq

    def close(self) -> None:
        """Close every subscription (going away); later subscriptions start closed."""
        self.closed = True
        for subscription in list(self._subscribers):
            subscription.close(CLOSE_GOING_AWAY, "the gateway is shutting down")

    def _discard(self, subscription: Subscription) -> None:
        try:
            self._subscribers.remove(subscription)
        except ValueError:
            pass
