"""The PostgreSQL store: the same calls as storage/store.py's Store, on a PostgreSQL database.

A write runs the storage function in one SERIALIZABLE transaction on a writer connection
(one by default, `writers`), each on a thread of its own, and is run again, from the start,
when PostgreSQL finds it conflicting with another process's (SQLSTATE 40001 or 40P01), after
a short random pause taken on the event loop (the writer meanwhile runs this process's other
writes): what SQLite's single writer gives for free, several processes get from that, and a
write never sees a balance another process is changing under it. A write marked
`stands_alone` (storage/sql.py: each statement right on its own, a nonce claimed by INSERT ...
ON CONFLICT) runs at READ COMMITTED on connections of its own beside the writers, so it
neither waits behind a purchase nor conflicts with one. A read runs in one REPEATABLE READ,
READ ONLY snapshot on a reader (a lookup too: a network hop is no place for the event loop).
Each connection counts its statements (round trips), seconds busy and conflicts (`use`, the
metrics' `pointsbot_database_*`). Migrations are numbered with
SQLite's (storage/migrations_pg): the first is a baseline that brings an empty database to
the SQLite schema's version at the time, and `schema_version` keeps the version, changed in
the same transaction as the schema, under an advisory lock so two processes starting at once
migrate once.

A connection found lost (PostgreSQL restarted, the network dropped it, an administrator
ended it) is replaced by a new one, connecting again with a growing pause for up to
`reconnect_seconds`, and the call is run again on it when that is certainly safe: a read
always, a write when the connection was lost before COMMIT was sent (PostgreSQL rolls back
a transaction whose connection dies). A connection lost during COMMIT leaves the outcome
unknown: that write raises CommitUnknown, and is not run again.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from math import ceil
from types import TracebackType
from typing import Any, Final, Literal, TypeVar, cast

from storage.errors import CommitUnknown, MigrationError
from storage.fence import with_fence
from storage.pg import CONNECT_TIMEOUT, PgConnection
from storage.sql import alone
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
# SQLSTATEs (besides class 08, connection exceptions) saying the server ended the session.
_SERVER_GONE: Final = frozenset({"57P01", "57P02", "57P03"})
# How long a lost connection is tried again, by default, before the call raises.
RECONNECT_SECONDS: Final = 15.0
# The pauses between tries to connect: the first, doubling up to the last (with jitter).
_FIRST_PAUSE: Final = 0.05
_LAST_PAUSE: Final = 1.0
# TCP keepalives, so a server gone silent across a network is noticed in about 11 s.
_KEEPALIVES: Final = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}

# writer: the SERIALIZABLE writes; alone: those that stand alone (storage.sql.stands_alone),
# at READ COMMITTED, beside them; reader: reads and lookups.
Role = Literal["writer", "alone", "reader"]
_BEGIN_WRITE: Final = "BEGIN ISOLATION LEVEL SERIALIZABLE"
# A write whose statements are each right on their own (storage.sql.stands_alone).
_BEGIN_ALONE: Final = "BEGIN ISOLATION LEVEL READ COMMITTED"
# The SERIALIZABLE writers plan with an index wherever there is one: a sequential scan locks
# the whole table for SERIALIZABLE's conflict tracking (PostgreSQL's manual, "Serializable
# Isolation Level"), and on a small table the planner prefers one (accounts, 17 rows before
# members' first purchases): every write then conflicted with every other.
_WRITER_OPTIONS: Final = "-c enable_seqscan=off"
# Connections per process, by default: SERIALIZABLE writes run on WRITERS (more than one
# lets a write go on while another waits on its round trips, but writes of different members
# then conflict on shared index pages and run again: README "PostgreSQL"), the writes that
# stand alone on ALONE beside them, reads on READERS.
WRITERS: Final = 1
ALONE: Final = 2
READERS: Final = 2


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
    """Whether the transaction may simply be run again (a conflict with another one)."""
    return getattr(exc, "pg_code", None) in _RETRYABLE


def connection_lost(conn: PgConnection, exc: BaseException) -> bool:
    """Whether `exc` (raised on `conn`) means the connection is gone and a new one is needed."""
    if conn.broken:
        return True
    code = getattr(exc, "pg_code", None) or ""
    return code.startswith("08") or code in _SERVER_GONE


def _roll_back(conn: PgConnection) -> None:
    """End the open transaction, if any (a lost connection's ended with it)."""
    if not conn.broken and conn.in_transaction:
        conn.execute("ROLLBACK")


class Conflicted(Exception):
    """A write PostgreSQL refused for conflicting with another (SQLSTATE 40001/40P01), rolled
    back: to be run again, after a pause that keeps the writer free for others."""

    def __init__(self, error: sqlite3.Error) -> None:
        super().__init__(str(error))
        self.error = error


def in_write(conn: PgConnection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` in one SERIALIZABLE transaction (READ COMMITTED when it `stands_alone`); rolls
    back on failure, raises Conflicted when PostgreSQL found it conflicting with another
    transaction (to run again), CommitUnknown when the connection is lost during COMMIT."""
    conn.execute(_BEGIN_ALONE if alone(fn) else _BEGIN_WRITE)
    try:
        result = fn(cast(sqlite3.Connection, conn))
        if conn.broken:  # lost under `fn`, which went on: nothing was committed
            raise sqlite3.OperationalError("the connection was lost during the transaction")
    except BaseException as exc:
        _roll_back(conn)
        if isinstance(exc, sqlite3.Error) and _retryable(exc):
            raise Conflicted(exc) from exc
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if connection_lost(conn, exc):  # COMMIT was sent: it may have been applied
            raise CommitUnknown(f"connection lost during COMMIT: {exc}") from exc
        _roll_back(conn)
        if _retryable(exc):
            raise Conflicted(exc) from exc
        raise
    return result


def conflict_pause(attempt: int) -> float:
    """Seconds to wait before running a conflicted write again: random, growing with the
    attempts up to 0.128 s (two writers that collided rarely collide again)."""
    return random.uniform(0, 0.002 * 2 ** min(attempt, 6))  # noqa: S311 - jitter, not secrets


def in_snapshot(conn: PgConnection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` in one read-only snapshot."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        return fn(cast(sqlite3.Connection, conn))
    finally:
        if not conn.broken:  # a lost connection's snapshot ended with it
            conn.execute("ROLLBACK")


class _Backoff:
    """The pauses between tries to connect: 0.05 s doubling to 1 s, with jitter, until a
    deadline `seconds` from now."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.pause_seconds = _FIRST_PAUSE

    def remaining(self) -> float:
        """Seconds left before the deadline (negative after it)."""
        return self.deadline - time.monotonic()

    def pause(self) -> bool:
        """Sleep before the next try; False (at once) when the time is up."""
        left = self.remaining()
        if left <= 0:
            return False
        jittered = random.uniform(self.pause_seconds / 2, self.pause_seconds)  # noqa: S311
        time.sleep(min(jittered, left))
        self.pause_seconds = min(self.pause_seconds * 2, _LAST_PAUSE)
        return True


class _Slot:
    """One connection of a role's pool, replaced in place when it is lost (None: closed), and
    what has run on it: statements sent (round trips) and seconds spent in calls."""

    __slots__ = ("busy_seconds", "conflicts", "conn", "round_trips")

    def __init__(self, conn: PgConnection) -> None:
        self.conn: PgConnection | None = conn
        self.round_trips = 0
        self.busy_seconds = 0.0
        # Transactions PostgreSQL refused as conflicting with another (run again).
        self.conflicts = 0


@dataclass(frozen=True, slots=True)
class RoleUse:
    """What one kind of connection did since the store opened: its connections, the statements
    they sent (each a round trip to the server) and the seconds they spent in calls."""

    connections: int
    round_trips: int
    busy_seconds: float
    # Transactions refused for conflicting with another's, and run again.
    conflicts: int = 0


class PgStore(ClockedStore):
    """The database on PostgreSQL: `async with PgStore(url) as store:` opens, migrates, closes."""

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = True,
        clock: Callable[[], datetime] | None = None,
        reconnect_seconds: float = RECONNECT_SECONDS,
        writers: int = WRITERS,
        readers: int = READERS,
    ) -> None:
        if writers < 1 or readers < 1:
            raise ValueError("a PostgreSQL store needs at least one writer and one reader")
        self.url = url
        # No file: what Store.path is to a SQLite store (the metrics skip the file size).
        self.path = None
        # The application's clock: "now" for a write or read that is not told the time.
        self.clock = clock
        self._migrate = migrate
        # How long a lost connection is tried again before the call raises.
        self.reconnect_seconds = reconnect_seconds
        self._sizes: Final[dict[Role, int]] = {
            "writer": writers,
            "alone": ALONE,
            "reader": readers,
        }
        # Each role's connections, between open() and close(): the idle ones wait in the
        # queue, and a call takes one for as long as it runs.
        self._pools: dict[Role, queue.SimpleQueue[_Slot]] = {}
        self._slots: dict[Role, list[_Slot]] = {}
        # As many threads as connections: a connection is used by one thread at a time, and
        # a thread that starts a call always finds one idle.
        self._threads: Final[dict[Role, ThreadPoolExecutor]] = {
            role: ThreadPoolExecutor(size, thread_name_prefix=f"pg-{role}")
            for role, size in self._sizes.items()
        }

    async def open(self) -> PgStore:
        """Connect the writers and the readers and apply pending migrations."""
        first = await self._on(self._threads["writer"], self._connect, CONNECT_TIMEOUT, "writer")
        slots: dict[Role, list[_Slot]] = {"writer": [_Slot(first)], "alone": [], "reader": []}
        try:
            if self._migrate:
                await self._on(self._threads["writer"], pg_migrate, first)
            for role, size in self._sizes.items():
                while len(slots[role]) < size:
                    conn = await self._on(self._threads[role], self._connect, CONNECT_TIMEOUT, role)
                    slots[role].append(_Slot(conn))
        except BaseException:
            for slot in (slot for role_slots in slots.values() for slot in role_slots):
                if slot.conn is not None:
                    slot.conn.close()
            raise
        for role, role_slots in slots.items():
            pool: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
            for slot in role_slots:
                pool.put(slot)
            self._pools[role], self._slots[role] = pool, role_slots
        return self

    async def close(self) -> None:
        """Close every connection (each once the call running on it ends); safe to call twice."""
        pools, self._pools = self._pools, {}  # calls from now on find the store closed
        for role, pool in pools.items():
            for _ in range(self._sizes[role]):
                await self._on(self._threads[role], self._close_one, pool)
        self._slots = {}

    @staticmethod
    def _close_one(pool: queue.SimpleQueue[_Slot]) -> None:
        """Close the next connection a call gives back (on a thread of its role)."""
        slot = pool.get()
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None

    def connections(self) -> list[PgConnection]:
        """The open connections, writers first (to look at their settings)."""
        return [
            slot.conn
            for role in ("writer", "alone", "reader")
            for slot in self._slots.get(role, [])
            if slot.conn is not None
        ]

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
        return "writer" in self._pools

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one SERIALIZABLE transaction on a writer (READ COMMITTED beside them
        when it stands alone; again after a conflict, or on a new connection when the last was
        lost before COMMIT); raises what `fn` raises (after rolling back), CommitUnknown when
        the connection was lost during COMMIT, RuntimeError when the store is closed."""
        fn = with_fence(fn)
        role: Role = "alone" if alone(fn) else "writer"
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return await self._run(role, lambda conn: in_write(conn, fn))
            except Conflicted as conflict:
                if attempt == WRITE_ATTEMPTS:
                    raise conflict.error from conflict
                # Paused here, not on the writer's thread: this process's other writes go on.
                await asyncio.sleep(conflict_pause(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the reader in one snapshot (again on a new connection when the last was
        lost); raises what `fn` raises, RuntimeError when the store is closed."""
        return await self._run("reader", lambda conn: in_snapshot(conn, fn))

    async def lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A short read: on the reader, as `read` (over a network it cannot be inline)."""
        return await self.read(fn)

    async def notifications(self, channel: str) -> AsyncIterator[None]:
        """Once per notification on `channel` (LISTEN, on a connection of its own, closed when
        the iteration ends); raises when that connection is lost."""
        import psycopg
        from psycopg import sql

        settings: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT, **_KEEPALIVES}
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, **settings)
        async with conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            async for _notice in conn.notifies():
                yield

    async def version(self) -> int:
        """The database's schema version."""
        return await self._run("reader", pg_schema_version)

    async def _run(self, role: Role, work: Callable[[PgConnection], T]) -> T:
        """Run `work` on the role's connection, on its thread; RuntimeError when closed."""
        if role not in self._pools:
            raise RuntimeError("store is not open")
        return await self._on(self._threads[role], self._run_here, role, work)

    def _run_here(self, role: Role, work: Callable[[PgConnection], T]) -> T:
        """Run `work` on an idle connection of the role, again on a new one after it was
        lost (until `reconnect_seconds` pass); `work` must be safe to run again after a lost
        connection."""
        pool = self._pools.get(role)
        if pool is None:  # closed while the call waited for a thread
            raise RuntimeError("store is not open")
        slot = pool.get()  # never waits: as many connections as threads
        started = time.perf_counter()
        try:
            return self._run_on(role, slot, work)
        finally:
            slot.busy_seconds += time.perf_counter() - started
            pool.put(slot)

    def _run_on(self, role: Role, slot: _Slot, work: Callable[[PgConnection], T]) -> T:
        """Run `work` on the slot's connection, replacing it when lost (see `_run_here`)."""
        backoff: _Backoff | None = None
        reason: BaseException | str = "found closed"
        while True:
            conn = slot.conn
            if conn is None:
                raise RuntimeError("store is not open")
            if conn.broken:
                backoff = backoff or _Backoff(self.reconnect_seconds)
                conn = self._reconnect(role, slot, reason, backoff)
            try:
                return self._counted(slot, conn, work)
            except CommitUnknown:
                conn.close()
                with suppress(sqlite3.Error):  # still down: the next call tries again
                    self._reconnect(
                        role, slot, "lost during COMMIT", _Backoff(self.reconnect_seconds)
                    )
                raise
            except sqlite3.Error as exc:
                if not connection_lost(conn, exc):
                    raise
                conn.close()
                if backoff is None:
                    backoff = _Backoff(self.reconnect_seconds)
                elif not backoff.pause():  # lost again and again: give up
                    raise
                reason = exc

    @staticmethod
    def _counted(slot: _Slot, conn: PgConnection, work: Callable[[PgConnection], T]) -> T:
        """Run `work` on `conn`, adding the statements it sent to the slot's count."""
        before = conn.round_trips
        try:
            return work(conn)
        except Conflicted:
            slot.conflicts += 1
            raise
        finally:
            slot.round_trips += conn.round_trips - before

    def use(self) -> dict[str, RoleUse]:
        """What each kind of connection ("writer", "alone", "reader") did since open()."""
        return {
            role: RoleUse(
                len(slots),
                sum(slot.round_trips for slot in slots),
                sum(slot.busy_seconds for slot in slots),
                sum(slot.conflicts for slot in slots),
            )
            for role, slots in self._slots.items()
        }

    def _reconnect(
        self, role: Role, slot: _Slot, reason: BaseException | str, backoff: _Backoff
    ) -> PgConnection:
        """Replace the slot's lost connection with a new one, trying with pauses until the
        backoff's deadline; raises the last attempt's error then."""
        where = _without_password(self.url)
        log.warning(
            "PostgreSQL %s connection to %s lost (%s); connecting again", role, where, reason
        )
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            timeout = max(2, min(CONNECT_TIMEOUT, ceil(backoff.remaining())))
            try:
                conn = self._connect(timeout, role)
            except sqlite3.OperationalError:
                if not backoff.pause():
                    raise
                continue
            slot.conn = conn
            log.info(
                "PostgreSQL %s connection to %s back after %d attempt(s) in %.2f s",
                role,
                where,
                attempts,
                time.monotonic() - started,
            )
            return conn

    def _connect(self, timeout: int, role: Role) -> PgConnection:
        """A new connection of the role to the store's URL, with TCP keepalives."""
        settings: dict[str, Any] = dict(_KEEPALIVES)
        if role == "writer":
            settings["options"] = _WRITER_OPTIONS
        return PgConnection.connect(self.url, connect_timeout=timeout, **settings)

    @staticmethod
    async def _on(thread: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(thread, fn, *args)


def _without_password(url: str) -> str:
    """The URL as it may be shown (a password in it replaced)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
