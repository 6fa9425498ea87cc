"""Contact records: one row per contact (a caller's journey through the center), written off the media path.

Theory of operation
===================

:class:`ContactRecord` is the table ``contacts`` on the shared :class:`~mediagw.store.models.Base`. Its
timestamps are timezone-aware UTC ``datetime`` values (:class:`UtcDateTime` stores them as naive UTC on
SQLite and as ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL and always reads them back aware); flags and
attributes are JSON. Nothing here is specific to a database: the same code runs on
``sqlite+aiosqlite://`` and ``postgresql+asyncpg://`` URLs.

:class:`ContactStore` is what the router service and the calls layer use. Its write methods
(:meth:`ContactStore.create`, :meth:`ContactStore.update`) are plain synchronous calls that only append to an
in-memory queue and update an in-memory copy of the record; they never await the database, so the
media path and the SIP path never wait for I/O. One writer task drains the queue: it takes everything that
is waiting (up to ``batch_size`` operations), coalesces the operations per contact, and writes them in one
transaction. A failed batch is retried with exponential backoff (the database may be restarting) and then,
contact by contact, so that one bad row cannot sink the others; what still fails is logged and dropped.

Reads (:meth:`ContactStore.get`, :meth:`ContactStore.list_recent`) see every write made before them: ``get``
answers from the in-memory copy while a contact has writes in flight, ``list_recent`` flushes first.
:meth:`ContactStore.flush` waits until everything written so far is committed (tests, shutdown);
:meth:`ContactStore.close` flushes and stops the writer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, String, Text, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from mediagw.errors import LocalError
from mediagw.store.db import Database
from mediagw.store.models import Base

__all__ = [
    "ContactRecord",
    "ContactSnapshot",
    "ContactStore",
    "ContactStoreClosed",
    "DisconnectReason",
    "Initiation",
    "UtcDateTime",
]

logger = logging.getLogger(__name__)


class Initiation(enum.StrEnum):
    """How a contact began."""

    INBOUND = "inbound"
    """A caller dialled one of the center's numbers."""
    TRANSFER = "transfer"
    """Another contact was transferred (``previous_contact_id`` names it)."""
    CALLBACK = "callback"
    """The center called a customer back (``previous_contact_id`` names the contact that asked for it)."""


class DisconnectReason(enum.StrEnum):
    """Why a contact ended (``ContactRecord.disconnect_reason``)."""

    CALLER_HANGUP = "caller-hangup"
    """The caller hung up while connected to an agent (or while hearing a prompt outside a queue)."""
    AGENT_HANGUP = "agent-hangup"
    """The agent hung up."""
    ABANDONED = "abandoned"
    """The caller hung up before being connected to an agent."""
    AFTER_HOURS = "after-hours"
    """The caller reached a closed queue and its after-hours deflection ran."""
    OVERFLOW = "overflow"
    """The queue was full and its overflow action played a message or rejected the call."""
    RTP_TIMEOUT = "rtp-timeout"
    """No media from the caller (or agent) for the configured time."""
    ENDED_BY_SUPERVISOR = "ended-by-supervisor"
    """Ended through the API."""
    SHUTDOWN = "shutdown"
    """The gateway stopped."""
    REJECTED = "rejected"
    """The gateway refused the call (number not served, admission control)."""
    TRANSFERRED = "transferred"
    """The contact continues as a new contact (whose ``previous_contact_id`` is this one)."""


class ContactStoreClosed(LocalError):
    """A write after :meth:`ContactStore.close`."""


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC ``datetime`` on every database: naive UTC on SQLite (which keeps no offset), ``TIMESTAMP
    WITH TIME ZONE`` elsewhere; values read back are always aware UTC. Naive input is a bug and raises."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware -> UTC (naive UTC for SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{value!r} is naive; contact timestamps must be aware (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Whatever the driver returns -> aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ContactRecord(Base):
    """One contact: how it began, when it reached each stage, where it went and why it ended."""

    __tablename__ = "contacts"
    __table_args__ = (Index("ix_contacts_queue_initiated", "queue_id", "initiated_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), default="voice")
    initiation: Mapped[str] = mapped_column(String(16), default=Initiation.INBOUND.value)
    initiated_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    offered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    """The latest offer to an agent (a RONA followed by an offer to the next agent moves it)."""
    connected_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    disconnected_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    queue_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    agent_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    caller: Mapped[str] = mapped_column(Text, default="")
    """The caller's From URI."""
    number: Mapped[str] = mapped_column(String(128), default="")
    """The dialled number (Request-URI user part)."""
    call_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    """SIP Call-ID of the caller's leg."""
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    attributes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    disconnect_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    previous_contact_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


_COLUMNS = tuple(column.key for column in ContactRecord.__table__.columns)
_TIMESTAMPS = ("initiated_at", "enqueued_at", "offered_at", "connected_at", "disconnected_at")


@dataclass(frozen=True, slots=True)
class ContactSnapshot:
    """A read-only copy of a contact record."""

    id: str
    channel: str
    initiation: str
    initiated_at: datetime
    enqueued_at: datetime | None = None
    offered_at: datetime | None = None
    connected_at: datetime | None = None
    disconnected_at: datetime | None = None
    queue_id: str | None = None
    agent_id: str | None = None
    caller: str = ""
    number: str = ""
    call_id: str | None = None
    flags: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)
    disconnect_reason: str | None = None
    previous_contact_id: str | None = None

    @classmethod
    def from_row(cls, row: ContactRecord) -> ContactSnapshot:
        """A snapshot of a loaded row."""
        values = {name: getattr(row, name) for name in _COLUMNS}
        values["flags"] = tuple(values["flags"] or ())
        values["attributes"] = dict(values["attributes"] or {})
        return cls(**values)

    def api_fields(self) -> dict[str, Any]:
        """The fields of the API's ``ContactView`` (times as Unix seconds)."""
        return {
            "id": self.id,
            "channel": self.channel,
            "initiation": self.initiation,
            **{name: _unix(getattr(self, name)) for name in _TIMESTAMPS},
            "queue": self.queue_id,
            "agent": self.agent_id,
            "flags": list(self.flags),
            "attributes": dict(self.attributes),
            "disconnect_reason": self.disconnect_reason,
            "previous_contact_id": self.previous_contact_id,
        }


def _unix(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


@dataclass(slots=True)
class _Write:
    contact_id: str
    values: dict[str, Any]
    create: bool


@dataclass(slots=True)
class _Pending:
    """A contact with writes in flight: how many are not yet committed and, when the store knows the whole
    record (it was created since the last commit), its latest values."""

    snapshot: ContactSnapshot | None
    operations: int = 0


_Item = _Write | asyncio.Future[None] | None


class ContactStore:
    """Contact records with non-blocking writes (one writer task) and read-your-writes reads.

    ``start`` must run (on the loop that will use the store) before writes reach the database; writes made
    earlier wait in the queue. ``wall_clock`` supplies ``initiated_at`` when ``create`` is not given one.
    """

    def __init__(
        self,
        database: Database,
        *,
        batch_size: int = 200,
        max_pending: int = 100_000,
        retry_attempts: int = 5,
        retry_delay: float = 0.2,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.database = database
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.retry_attempts = retry_attempts
        self.retry_delay = retry_delay
        self._wall_clock = wall_clock
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._pending: dict[str, _Pending] = {}
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.dropped = 0
        """Operations dropped: queue full, or failed after every retry."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Create the ``contacts`` table if needed and start the writer task."""
        if self._writer is not None:
            return
        async with self.database.engine.begin() as connection:
            await connection.run_sync(
                lambda sync: Base.metadata.tables[ContactRecord.__tablename__].create(sync, checkfirst=True)
            )
        self._writer = asyncio.get_running_loop().create_task(self._run(), name="contact-store-writer")

    async def flush(self) -> None:
        """Wait until every write made before this call is committed (or dropped after its retries)."""
        if self._writer is None or self._writer.done():
            if self._queue.qsize():
                raise LocalError("ContactStore.flush: the writer is not running (call start() first)")
            return
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(marker)
        await marker

    async def close(self) -> None:
        """Flush, then stop the writer; later writes raise :class:`ContactStoreClosed`."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None and not self._writer.done():
            self._queue.put_nowait(None)
            await self._writer

    # ------------------------------------------------------------------ writes (never await)

    def create(
        self,
        *,
        contact_id: str | None = None,
        channel: str = "voice",
        initiation: str = Initiation.INBOUND,
        initiated_at: datetime | None = None,
        caller: str = "",
        number: str = "",
        call_id: str | None = None,
        queue_id: str | None = None,
        flags: Sequence[str] = (),
        attributes: Mapping[str, str] | None = None,
        previous_contact_id: str | None = None,
    ) -> str:
        """Record a new contact and return its id (a new UUID unless ``contact_id`` is given)."""
        if initiation not in set(Initiation):
            raise ValueError(f"initiation {initiation!r} is not one of {', '.join(Initiation)}")
        contact_id = contact_id or str(uuid.uuid4())
        if contact_id in self._pending:
            raise LocalError(f"contact {contact_id!r} is being created already")
        snapshot = ContactSnapshot(
            id=contact_id,
            channel=channel,
            initiation=str(initiation),
            initiated_at=_aware(initiated_at or self._wall_clock(), "initiated_at"),
            queue_id=queue_id,
            caller=caller,
            number=number,
            call_id=call_id,
            flags=tuple(sorted(flags)),
            attributes=dict(attributes or {}),
            previous_contact_id=previous_contact_id,
        )
        values = _row_values(snapshot)
        self._submit(_Write(contact_id, values, create=True), snapshot)
        return contact_id

    def update(self, contact_id: str, **values: Any) -> None:
        """Change fields of a contact (column names of :class:`ContactRecord`, e.g. ``connected_at=...``)."""
        unknown = set(values) - set(_COLUMNS) | ({"id"} & set(values))
        if unknown:
            raise LocalError(f"ContactStore.update: unknown or read-only fields {sorted(unknown)}")
        for name in _TIMESTAMPS:
            if values.get(name) is not None:
                values[name] = _aware(values[name], name)
        if "flags" in values:
            values["flags"] = sorted(values["flags"] or ())
        if "attributes" in values:
            values["attributes"] = dict(values["attributes"] or {})
        if "disconnect_reason" in values and values["disconnect_reason"] is not None:
            values["disconnect_reason"] = str(values["disconnect_reason"])
        pending = self._pending.get(contact_id)
        snapshot = None
        if pending is not None and pending.snapshot is not None:
            changes = dict(values)
            if "flags" in changes:
                changes["flags"] = tuple(changes["flags"])
            snapshot = dataclasses.replace(pending.snapshot, **changes)
        self._submit(_Write(contact_id, values, create=False), snapshot)

    def _submit(self, write: _Write, snapshot: ContactSnapshot | None) -> None:
        if self._closed:
            raise ContactStoreClosed(f"contact store is closed: write to {write.contact_id!r} refused")
        if self._queue.qsize() >= self.max_pending:
            self.dropped += 1
            logger.error(
                "contact store: %d writes waiting; dropped a write to contact %s",
                self.max_pending,
                write.contact_id,
            )
            return
        pending = self._pending.setdefault(write.contact_id, _Pending(snapshot))
        pending.snapshot = snapshot
        pending.operations += 1
        self._queue.put_nowait(write)

    # ------------------------------------------------------------------ reads

    async def get(self, contact_id: str) -> ContactSnapshot | None:
        """The contact, including writes not yet committed; ``None`` if unknown."""
        pending = self._pending.get(contact_id)
        if pending is not None:
            if pending.snapshot is not None:
                return pending.snapshot
            await self.flush()  # an update to a committed row is in flight: let it land, then read
        async with self.database.session() as session:
            row = await session.get(ContactRecord, contact_id)
            return None if row is None else ContactSnapshot.from_row(row)

    async def list_recent(
        self, limit: int = 50, *, queue_id: str | None = None, since: datetime | None = None
    ) -> list[ContactSnapshot]:
        """The most recently initiated contacts, newest first (optionally of one queue, or since a time)."""
        await self.flush()
        statement = (
            select(ContactRecord).order_by(ContactRecord.initiated_at.desc(), ContactRecord.id).limit(limit)
        )
        if queue_id is not None:
            statement = statement.where(ContactRecord.queue_id == queue_id)
        if since is not None:
            statement = statement.where(ContactRecord.initiated_at >= _aware(since, "since"))
        async with self.database.session() as session:
            rows = (await session.scalars(statement)).all()
            return [ContactSnapshot.from_row(row) for row in rows]

    # ------------------------------------------------------------------ the writer

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            batch: list[_Write] = []
            markers: list[asyncio.Future[None]] = []
            item: _Item = first
            while True:
                if item is None:
                    stop = True
                    break
                if isinstance(item, _Write):
                    batch.append(item)
                else:
                    markers.append(item)
                    break  # commit what came before the marker, then answer it
                if len(batch) >= self.batch_size or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                try:
                    await self._write(batch)
                except Exception:  # a bug, not the database: keep the writer (and flush()) alive
                    logger.exception("contact store: dropped a batch of %d writes", len(batch))
                    self.dropped += len(batch)
                    self._settle(batch)
            for marker in markers:
                if not marker.done():
                    marker.set_result(None)
        while not self._queue.empty():  # writes queued behind the stop: keep them
            item = self._queue.get_nowait()
            if isinstance(item, _Write):
                await self._write([item])
            elif item is not None and not item.done():
                item.set_result(None)

    async def _write(self, batch: list[_Write]) -> None:
        merged = _coalesce(batch)
        delay = self.retry_delay
        for attempt in range(1, self.retry_attempts + 1):
            try:
                await self._commit(merged)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any database error: retry, then contact by contact
                if attempt == self.retry_attempts:
                    logger.warning(
                        "contact store: batch of %d contacts failed (%s); writing one by one",
                        len(merged),
                        exc,
                    )
                    await self._write_each(merged)
                    break
                logger.warning("contact store: write failed (%s), retry %d in %.1f s", exc, attempt, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._settle(batch)

    async def _write_each(self, merged: dict[str, _Write]) -> None:
        for contact_id, write in merged.items():
            try:
                await self._commit({contact_id: write})
            except Exception:
                self.dropped += 1
                logger.exception("contact store: dropped the write to contact %s", contact_id)

    async def _commit(self, merged: dict[str, _Write]) -> None:
        creates = [write.values for write in merged.values() if write.create]
        async with self.database.session() as session:
            if creates:
                await session.execute(insert(ContactRecord), creates)
            for contact_id, write in merged.items():
                if not write.create and write.values:
                    await session.execute(
                        update(ContactRecord).where(ContactRecord.id == contact_id).values(**write.values)
                    )

    def _settle(self, batch: list[_Write]) -> None:
        for write in batch:
            pending = self._pending.get(write.contact_id)
            if pending is not None:
                pending.operations -= 1
                if pending.operations <= 0:
                    del self._pending[write.contact_id]


def _coalesce(batch: list[_Write]) -> dict[str, _Write]:
    """One write per contact: a create absorbs the updates after it; updates merge, later values win."""
    merged: dict[str, _Write] = {}
    for write in batch:
        current = merged.get(write.contact_id)
        if current is None:
            merged[write.contact_id] = _Write(write.contact_id, dict(write.values), write.create)
        elif write.create:
            # An update queued before its own create found no row to change; the create stands.
            merged[write.contact_id] = _Write(write.contact_id, dict(write.values), True)
        else:
            current.values.update(write.values)
    return merged


def _row_values(snapshot: ContactSnapshot) -> dict[str, Any]:
    values = {name: getattr(snapshot, name) for name in _COLUMNS}
    values["flags"] = list(snapshot.flags)
    values["attributes"] = dict(snapshot.attributes)
    return values


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise LocalError(f"{name} must be an aware datetime (UTC), got {value!r}")
    return value.astimezone(UTC)
