"""The PostgreSQL store: the same calls as storage/store.py's Store, on a PostgreSQL database.

A write runs the storage function in one SERIALIZABLE transaction on the writer's own thread
and is run again, from the start, when PostgreSQL finds it conflicting with another
process's (SQLSTATE 40001 or 40P01): what SQLite's single writer gives for free, several
processes get from that, and a write never sees a balance another process is changing
under it. A read runs in one REPEATABLE READ, READ ONLY snapshot on the reader's thread (a
lookup too: a network hop is no place for the event loop). Migrations are numbered with
SQLite's (storage/migrations_pg): the first is a baseline that brings an empty database to
the SQLite schema's version at the time, and `schema_version` keeps the version, changed in
the same transaction as the schema, under an advisory lock so two processes starting at once
migrate once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from importlib import resources
from types import TracebackType
from typing import Any, Final, TypeVar, cast

from storage.errors import MigrationError
from storage.pg import PgConnection
from storage.store import ClockedStore

log = logging.getLogger(__name__)

T = TypeVar("T")
_MIGRATION_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any number: the key of the advisory lock migrations take (pointsbot's own).
_MIGRATION_LOCK: Final = 0x706F696E7473  # "points"
# A write that keeps conflicting is given up after this many tries (it raises then).
WRITE_ATTEMPTS: Final = 30
# SQLSTATEs after which a transaction may simply be run again.
_RETRYABLE: Final = frozenset({"40001", "40P01"})


def pg_migrations() -> list[tuple[int, str, str]]:
    """The packaged PostgreSQL migrations as (version, name, sql), in order; raises
    MigrationError on a gap after the baseline."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("storage.migrations_pg").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, name, _sql) in enumerate(found, start=found[0][0] if found else 1):
        if version != expected:
            raise MigrationError(f"migration {name} is out of sequence (expected {expected:04d})")
    return found


def pg_schema_version(conn: PgConnection) -> int:
    """The database's schema version (0: nothing of pointsbot's in it yet)."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists[0]:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def pg_migrate(conn: PgConnection) -> list[int]:
    """Apply pending migrations, each with its version, in one transaction; raises
    MigrationError."""
    available = pg_migrations()
    latest = available[-1][0] if available else 0
    applied: list[int] = []
    # READ COMMITTED: a process that waited for the lock then sees the version the one
    # before it committed (a snapshot taken at the lock would not).
    conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        current = pg_schema_version(conn)
        if current > latest:
            raise MigrationError(
                f"database schema version {current} is newer than this pointsbot ({latest})"
            )
        for version, name, sql in available:
            if version <= current:
                continue
            try:
                conn.raw.execute(sql.encode())  # a script: no parameters, several statements
            except Exception as exc:
                raise MigrationError(f"migration {name} failed: {exc}") from exc
            log.info("applied migration %s", name)
            applied.append(version)
        if applied:
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (applied[-1],))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return applied


def _retryable(exc: BaseException) -> bool:
    return getattr(exc, "pg_code", None) in _RETRYABLE


def in_serializable(conn: PgConnection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` in one SERIALIZABLE transaction, again from the start after a conflict with
    another transaction (a few times, with a growing random pause); rolls back on failure."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        try:
            result = fn(cast(sqlite3.Connection, conn))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not _retryable(exc) or attempt == WRITE_ATTEMPTS:
                raise
            time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))  # noqa: S311 - jitter
            continue
        return result
    raise AssertionError("unreachable")  # pragma: no cover


def in_snapshot(conn: PgConnection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` in one read-only snapshot."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        return fn(cast(sqlite3.Connection, conn))
    finally:
        conn.execute("ROLLBACK")


class PgStore(ClockedStore):
    """The database on PostgreSQL: `async with PgStore(url) as store:` opens, migrates, closes."""

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.url = url
        # No file: what Store.path is to a SQLite store (the metrics skip the file size).
        self.path = None
        # The application's clock: "now" for a write or read that is not told the time.
        self.clock = clock
        self._migrate = migrate
        self._writer: PgConnection | None = None
        self._reader: PgConnection | None = None
        # One thread each: a connection is used by one thread at a time.
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="pg-writer")
        self._read_thread = ThreadPoolExecutor(1, thread_name_prefix="pg-reader")

    async def open(self) -> PgStore:
        """Connect the writer and the reader and apply pending migrations."""
        self._writer = await self._on(self._write_thread, PgConnection.connect, self.url)
        if self._migrate:
            await self._on(self._write_thread, pg_migrate, self._writer)
        self._reader = await self._on(self._read_thread, PgConnection.connect, self.url)
        return self

    async def close(self) -> None:
        """Close both connections; safe to call twice."""
        for conn, thread in ((self._reader, self._read_thread), (self._writer, self._write_thread)):
            if conn is not None:
                await self._on(thread, conn.close)
        self._reader = self._writer = None

    async def __aenter__(self) -> PgStore:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"PgStore({_without_password(self.url)!r})"

    @property
    def is_open(self) -> bool:
        """True between open() and close()."""
        return self._writer is not None

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one SERIALIZABLE transaction on the writer (again after a conflict);
        raises what `fn` raises (after rolling back), RuntimeError when the store is closed."""
        if self._writer is None:
            raise RuntimeError("store is not open")
        return await self._on(self._write_thread, in_serializable, self._writer, fn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the reader in one snapshot; raises what `fn` raises, RuntimeError when
        the store is closed."""
        if self._reader is None:
            raise RuntimeError("store is not open")
        return await self._on(self._read_thread, in_snapshot, self._reader, fn)

    async def lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A short read: on the reader, as `read` (over a network it cannot be inline)."""
        return await self.read(fn)

    async def version(self) -> int:
        """The database's schema version."""
        if self._reader is None:
            raise RuntimeError("store is not open")
        return await self._on(self._read_thread, pg_schema_version, self._reader)

    @staticmethod
    async def _on(thread: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(thread, fn, *args)


def _without_password(url: str) -> str:
    """The URL as it may be shown (a password in it replaced)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
