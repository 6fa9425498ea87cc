"""Contact records on a real SQLite file through aiosqlite: non-blocking writes, coalescing, read-your-writes,
aware UTC timestamps, retries and close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text

from mediagw.errors import LocalError
from mediagw.store.contacts import (
    ContactRecord,
    ContactStore,
    ContactStoreClosed,
    DisconnectReason,
    Initiation,
)
from mediagw.store.db import Database, sqlite_url

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(sqlite_url(tmp_path / "contacts.db"))
    yield database
    await database.dispose()


@pytest.fixture
async def store(database: Database) -> AsyncIterator[ContactStore]:
    store = ContactStore(database, wall_clock=lambda: T0)
    await store.start()
    yield store
    await store.close()


async def test_create_update_get_round_trip(store: ContactStore, database: Database) -> None:
    contact_id = store.create(
        caller="sip:alice@example.com",
        number="2000",
        call_id="abc@host",
        flags=["verified", "bad_actor"],
        attributes={"verified_customer": "true"},
    )
    store.update(contact_id, enqueued_at=T0 + timedelta(seconds=1), queue_id="demo")
    store.update(contact_id, offered_at=T0 + timedelta(seconds=5), agent_id="agent1")
    pending = await store.get(contact_id)  # read-your-writes before anything is committed
    assert pending is not None and pending.agent_id == "agent1" and pending.flags == ("bad_actor", "verified")
    await store.flush()
    store.update(contact_id, connected_at=T0 + timedelta(seconds=8))
    store.update(
        contact_id,
        disconnected_at=datetime(2026, 11, 21, 10, 1, tzinfo=timezone(timedelta(hours=1))),
        disconnect_reason=DisconnectReason.CALLER_HANGUP,
    )
    record = await store.get(contact_id)  # an update to a committed row is in flight: get waits for it
    assert record is not None
    assert record.id == contact_id and len(contact_id) == 36
    assert (record.channel, record.initiation, record.caller, record.number, record.call_id) == (
        "voice",
        "inbound",
        "sip:alice@example.com",
        "2000",
        "abc@host",
    )
    assert record.initiated_at == T0 and record.initiated_at.tzinfo is UTC
    assert record.enqueued_at == T0 + timedelta(seconds=1)
    assert record.offered_at == T0 + timedelta(seconds=5)
    assert record.connected_at == T0 + timedelta(seconds=8)
    assert record.disconnected_at == T0 + timedelta(minutes=1)  # 10:01+01:00 is 09:01 UTC
    assert record.disconnect_reason == "caller-hangup"
    assert record.queue_id == "demo" and record.agent_id == "agent1"
    assert record.flags == ("bad_actor", "verified") and record.attributes == {"verified_customer": "true"}
    api = record.api_fields()
    assert api["initiated_at"] == T0.timestamp() and api["queue"] == "demo" and api["agent"] == "agent1"
    async with database.session() as session:  # stored as naive UTC on SQLite
        raw = (await session.execute(text("SELECT initiated_at FROM contacts"))).scalar_one()
    assert str(raw).startswith("2026-11-21 09:00:00")


async def test_writes_never_await_and_are_batched(store: ContactStore, database: Database) -> None:
    commits = 0
    original = store._commit

    async def counting(merged: dict) -> None:  # type: ignore[type-arg]
        nonlocal commits
        commits += 1
        await original(merged)

    store._commit = counting  # type: ignore[method-assign]
    ids = [store.create(contact_id=f"c{i}", initiated_at=T0 + timedelta(seconds=i)) for i in range(50)]
    for contact_id in ids:
        store.update(contact_id, queue_id="q", enqueued_at=T0)
    await store.flush()
    assert commits <= 2  # 100 operations coalesced into one (or two) transactions
    async with database.session() as session:
        rows = (await session.scalars(select(ContactRecord))).all()
    assert len(rows) == 50 and {row.queue_id for row in rows} == {"q"}


async def test_list_recent_newest_first_with_filters(store: ContactStore) -> None:
    for index in range(5):
        store.create(
            contact_id=f"c{index}",
            initiated_at=T0 + timedelta(minutes=index),
            queue_id="a" if index % 2 else "b",
        )
    recent = await store.list_recent(3)
    assert [record.id for record in recent] == ["c4", "c3", "c2"]
    assert [record.id for record in await store.list_recent(queue_id="a")] == ["c3", "c1"]
    assert [r.id for r in await store.list_recent(since=T0 + timedelta(minutes=3))] == ["c4", "c3"]


async def test_transfer_keeps_previous_contact(store: ContactStore) -> None:
    first = store.create(contact_id="first")
    store.update(first, disconnected_at=T0, disconnect_reason=DisconnectReason.TRANSFERRED)
    second = store.create(initiation=Initiation.TRANSFER, previous_contact_id=first)
    await store.flush()
    record = await store.get(second)
    assert record is not None and record.initiation == "transfer" and record.previous_contact_id == "first"
    assert await store.get("unknown") is None


async def test_misuse_raises(store: ContactStore) -> None:
    with pytest.raises(LocalError):
        store.create(initiated_at=datetime(2026, 1, 1))  # naive
    with pytest.raises(ValueError):
        store.create(initiation="outbound-by-pigeon")
    with pytest.raises(LocalError):
        store.update("x", colour="blue")
    with pytest.raises(LocalError):
        store.update("x", id="y")


async def test_failed_batch_is_retried_then_written_one_by_one(database: Database) -> None:
    store = ContactStore(database, retry_attempts=2, retry_delay=0.0, wall_clock=lambda: T0)
    await store.start()
    store.create(contact_id="dup")
    await store.flush()
    store.create(contact_id="dup")  # a duplicate key fails every batch it is in ...
    store.create(contact_id="fine")  # ... but not the contact beside it
    await store.flush()
    assert store.dropped == 1
    assert await store.get("fine") is not None
    await store.close()


async def test_writes_before_start_wait_and_close_refuses_later_ones(database: Database) -> None:
    store = ContactStore(database, wall_clock=lambda: T0)
    store.create(contact_id="early")
    await store.start()
    await store.flush()
    assert (await store.get("early")) is not None
    await store.close()
    with pytest.raises(ContactStoreClosed):
        store.update("early", queue_id="x")
    await store.close()  # idempotent


async def test_full_queue_drops_instead_of_blocking(database: Database) -> None:
    store = ContactStore(database, max_pending=2, wall_clock=lambda: T0)
    for index in range(4):
        store.create(contact_id=f"c{index}")
    assert store.dropped == 2
    await store.start()
    await store.flush()
    assert [r.id for r in await store.list_recent()] in (["c0", "c1"], ["c1", "c0"])
    await store.close()


async def test_close_commits_what_is_queued(database: Database) -> None:
    store = ContactStore(database, wall_clock=lambda: T0)
    await store.start()
    store.create(contact_id="last")
    store.update("last", disconnect_reason=DisconnectReason.SHUTDOWN, disconnected_at=T0)
    await store.close()
    reader = ContactStore(database)
    await reader.start()
    record = await reader.get("last")
    assert record is not None and record.disconnect_reason == "shutdown"
    await reader.close()


async def test_flush_without_writer_and_nothing_queued_returns(database: Database) -> None:
    store = ContactStore(database)
    await asyncio.wait_for(store.flush(), 1.0)


def test_schema_is_portable_to_postgresql() -> None:
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    ddl = str(CreateTable(ContactRecord.__table__).compile(dialect=postgresql.dialect()))  # type: ignore[arg-type]
    assert "initiated_at TIMESTAMP WITH TIME ZONE NOT NULL" in ddl
    assert "flags JSON NOT NULL" in ddl and "attributes JSON NOT NULL" in ddl


async def test_api_fields_fit_the_api_contact_view(store: ContactStore) -> None:
    from mediagw.api.control import ContactView

    contact_id = store.create(flags=["verified"], attributes={"bad_actor": "false"}, queue_id="demo")
    record = await store.get(contact_id)
    assert record is not None
    view = ContactView(**record.api_fields())
    assert view.initiated_at == T0.timestamp() and view.flags == ["verified"] and view.queue == "demo"


async def test_database_outage_is_retried_with_backoff(database: Database) -> None:
    store = ContactStore(database, retry_attempts=4, retry_delay=0.0, wall_clock=lambda: T0)
    await store.start()
    original = store._commit
    failures = 2

    async def flaky(merged: dict) -> None:  # type: ignore[type-arg]
        nonlocal failures
        if failures:
            failures -= 1
            raise OSError("database restarting")
        await original(merged)

    store._commit = flaky  # type: ignore[method-assign]
    store.create(contact_id="survivor")
    await store.flush()
    assert failures == 0 and store.dropped == 0
    assert await store.get("survivor") is not None
    await store.close()
