"""What every storage module shares: how instants are stored, and all-or-nothing blocks.

Instants are stored as integer Unix seconds and read back as aware UTC datetimes. A sync core
function makes itself atomic with `atomic(conn)`; a facade runs a whole write transaction
through `sole_operation`, so nested `atomic` blocks need no savepoints.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def ts(moment: datetime) -> int:
    """Unix seconds of an aware datetime; raises ValueError for a naive one (whose midnight?)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware one")
    return int(moment.timestamp())


def ts_or_none(moment: datetime | None) -> int | None:
    """`ts(moment)`, or None for None."""
    return None if moment is None else ts(moment)


def dt(value: int) -> datetime:
    """The aware UTC datetime of stored Unix seconds."""
    return datetime.fromtimestamp(value, UTC)


def dt_or_none(value: int | None) -> datetime | None:
    """`dt(value)`, or None for NULL."""
    return None if value is None else dt(value)


def insert_id(conn: sqlite3.Connection, sql: str, parameters: Any = ()) -> int:
    """Run one single-row INSERT and return the id it drew (`RETURNING id`: both engines
    have it, where a cursor's lastrowid is SQLite's alone)."""
    row = conn.execute(f"{sql} RETURNING id", parameters).fetchone()
    assert row is not None, "an INSERT ... RETURNING id gives its row"
    return int(row[0])


def engine(conn: sqlite3.Connection) -> str:
    """Which engine `conn` talks to: "sqlite", or "postgres" (storage/pg.py's connection)."""
    return str(getattr(conn, "engine", "sqlite"))


def table_names(conn: sqlite3.Connection) -> set[str]:
    """The database's tables."""
    if engine(conn) == "postgres":
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return {str(row[0]) for row in conn.execute(sql)}


def trigger_names(conn: sqlite3.Connection) -> set[str]:
    """The database's triggers (PostgreSQL's own, for foreign keys, left out)."""
    if engine(conn) == "postgres":
        sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    return {str(row[0]) for row in conn.execute(sql)}


def column_names(conn: sqlite3.Connection, table: str) -> list[str]:
    """A table's columns, in order."""
    if engine(conn) == "postgres":
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
        return [str(row[0]) for row in rows]
    return [str(row[1]) for row in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))]


def required_now(now: datetime | None) -> datetime:
    """`now` as given (a facade fills it in from the store's clock); raises TypeError for None."""
    if now is None:
        raise TypeError("pass now= (only a facade fills it in from the store's clock)")
    return now


# Set while a core function runs as the whole of a facade's Store.write transaction.
_sole_operation = threading.local()


@contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[None]:
    """Make a block all-or-nothing: a savepoint inside a transaction, else BEGIN IMMEDIATE."""
    if getattr(_sole_operation, "conn", None) is conn:
        # Store.write rolls the whole transaction back on any exception: a savepoint would
        # only add two statements to every operation.
        yield
    elif conn.in_transaction:
        conn.execute("SAVEPOINT ledger_operation")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO ledger_operation")
            conn.execute("RELEASE ledger_operation")
            raise
        conn.execute("RELEASE ledger_operation")
    else:
        # IMMEDIATE: take the write lock up front, so a read never has to be upgraded.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


@contextmanager
def savepoint(conn: sqlite3.Connection) -> Iterator[None]:
    """A block whose failure is caught by the caller and the transaction goes on: always a
    savepoint inside a transaction (even a Store.write's whole one), else BEGIN IMMEDIATE.
    On PostgreSQL a failed statement spoils its whole transaction unless rolled back to a
    savepoint: wrap any statement expected to fail (an INSERT whose key may be taken) in one."""
    if not conn.in_transaction:
        with atomic(conn):
            yield
        return
    conn.execute("SAVEPOINT expected_failure")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK TO expected_failure")
        conn.execute("RELEASE expected_failure")
        raise
    conn.execute("RELEASE expected_failure")


@contextmanager
def batch(conn: sqlite3.Connection) -> Iterator[None]:
    """`atomic`, whose inner `atomic` blocks add no savepoints of their own: for a block that
    is all-or-nothing as a whole (an import batch, where a savepoint around the ledger's bulk
    inserts would write a statement journal of every row)."""
    with atomic(conn):
        if getattr(_sole_operation, "conn", None) is conn:
            yield  # already the whole of a Store.write transaction
            return
        _sole_operation.conn = conn
        try:
            yield
        finally:
            _sole_operation.conn = None


def sole_operation(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """Run `fn` as the only work of its Store.write transaction (no savepoint needed)."""

    def run(conn: sqlite3.Connection) -> T:
        _sole_operation.conn = conn
        try:
            return fn(conn)
        finally:
            _sole_operation.conn = None

    return marked_like(fn, run)


def stands_alone(fn: F) -> F:
    """Mark a write each of whose statements is right on its own, whatever runs beside it (an
    INSERT ... ON CONFLICT, a DELETE below a bound, a SELECT of what it just wrote): on
    PostgreSQL it runs at READ COMMITTED, out of SERIALIZABLE's conflict tracking, so it
    never conflicts with the writes of other members (SQLite runs every write alone anyway)."""
    fn.stands_alone = True  # type: ignore[attr-defined]
    return fn


def alone(fn: Callable[..., Any]) -> bool:
    """Whether `fn` is marked `stands_alone`."""
    return bool(getattr(fn, "stands_alone", False))


def marked_like(fn: Callable[..., Any], wrapper: F) -> F:
    """`wrapper`, marked `stands_alone` when the `fn` it wraps is."""
    return stands_alone(wrapper) if alone(fn) else wrapper
