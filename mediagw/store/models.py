"""Declarative models of the mediagw store (one ``Base`` for every table).

Times are POSIX seconds (UTC) as floats: every core in mediagw takes ``now`` as a number, and a float
column means the same on SQLite and PostgreSQL. Identifiers of calls and recordings are strings chosen by
the gateway. A colleague adds contact records by subclassing :class:`Base` in this module (or another
module imported before ``create_all``); ``Recording.contact_id`` is a plain indexed string so that no
foreign key has to exist first.
"""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so that migrations (Alembic) are stable across databases."""


class Base(DeclarativeBase):
    """The declarative base of every mediagw table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Recording.export_state values
EXPORT_PENDING = "pending"
EXPORT_EXPORTED = "exported"
EXPORT_PURGED = "purged"  # removed locally by retention before every target confirmed

# Recording.local_state / RecordingChunk.local_state values
LOCAL_PRESENT = "present"
LOCAL_DELETED = "deleted"

# ExportJob.state values
JOB_PENDING = "pending"
JOB_DONE = "done"
JOB_ABANDONED = "abandoned"  # the local file was purged by retention before the target confirmed


class Recording(Base):
    """One recording known to the export queue (registered once its writer finished or was recovered)."""

    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(128), index=True)
    queue: Mapped[str] = mapped_column(String(128), default="")
    kind: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(16))
    sample_rate: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    """complete or interrupted (as in the manifest)."""
    started_at: Mapped[float] = mapped_column(Float, index=True)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    chunk_count: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(64), default="", index=True)
    """The gateway node whose local disk holds the chunks (several nodes may share one database)."""
    directory: Mapped[str] = mapped_column(Text)
    """Local directory of the chunks and manifest, on ``node``."""
    export_state: Mapped[str] = mapped_column(String(16), default=EXPORT_PENDING, index=True)
    local_state: Mapped[str] = mapped_column(String(16), default=LOCAL_PRESENT)
    registered_at: Mapped[float] = mapped_column(Float)
    exported_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    purged_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    purge_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)

    chunks: Mapped[list[RecordingChunk]] = relationship(
        back_populates="recording", order_by="RecordingChunk.index", cascade="all, delete-orphan"
    )


class RecordingChunk(Base):
    """One chunk file of a recording."""

    __tablename__ = "recording_chunks"
    __table_args__ = (UniqueConstraint("recording_id", "index", name="uq_recording_chunks_recording_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    duration: Mapped[float] = mapped_column(Float)
    start_sample: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    local_state: Mapped[str] = mapped_column(String(16), default=LOCAL_PRESENT)
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    recording: Mapped[Recording] = relationship(back_populates="chunks")


class ExportJob(Base):
    """Deliver one chunk to one target: the durable export queue (one row per chunk per target)."""

    __tablename__ = "export_jobs"
    __table_args__ = (
        UniqueConstraint("recording_id", "chunk_index", "target", name="uq_export_jobs_chunk_target"),
        Index("ix_export_jobs_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), index=True)
    chunk_index: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=JOB_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    last_attempt_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    confirmed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    locator: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Where the target stored the chunk (path, URL, s3://bucket/key)."""
    created_at: Mapped[float] = mapped_column(Float)


class AuditEntry(Base):
    """An append-only record of something an operator may have to account for (purges, retries...)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    """Who did it: a service name ("retention", "exporter") or an API user."""
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(128), index=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    """JSON text with the particulars."""
