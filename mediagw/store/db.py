"""The async SQLAlchemy engine and session factory of mediagw.

SQLite through aiosqlite is the embedded default; any async SQLAlchemy URL (for example
``postgresql+asyncpg://user:pass@host/db``) works without a code change. Every model lives on
:class:`mediagw.store.models.Base`, so ``create_all`` builds the whole schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from mediagw.store.models import Base

DEFAULT_URL = "sqlite+aiosqlite:///mediagw.db"


def sqlite_url(path: Path | str) -> str:
    """The aiosqlite URL of the database file at ``path``."""
    return f"sqlite+aiosqlite:///{Path(path)}"


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """WAL for concurrent readers, enforced foreign keys, and a busy timeout instead of instant errors.

    The driver's own implicit BEGIN is switched off so that :func:`_begin_immediate` decides how each
    transaction starts.
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    """Take SQLite's write lock when a transaction starts (waiting up to busy_timeout).

    A deferred transaction that reads and then writes fails at once with "database is locked" when
    another connection wrote in between; starting every transaction IMMEDIATE makes them queue instead.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str = DEFAULT_URL, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``; SQLite connections get WAL, foreign keys, a busy timeout and
    transactions that start IMMEDIATE (see _begin_immediate). Other databases are used as configured."""
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        event.listen(engine.sync_engine, "begin", _begin_immediate)
    return engine


class Database:
    """One engine plus its session factory; the object services share."""

    def __init__(self, url: str = DEFAULT_URL, *, engine: AsyncEngine | None = None) -> None:
        self.url = url
        self.engine = engine if engine is not None else create_engine(url)
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )

    async def create_all(self) -> None:
        """Create every table of Base that does not exist yet (migrations are a later concern)."""
        async with self.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session inside a transaction: committed on success, rolled back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


async def open_database(url: str = DEFAULT_URL) -> Database:
    """A Database for ``url`` with its schema created."""
    database = Database(url)
    await database.create_all()
    return database
