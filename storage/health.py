"""What /healthz and /metrics read from the database: the outbox's backlog, the ledger's totals.

One read each, cheap at any size: the pending pushes through the outbox's partial index,
the programme's system accounts (a handful of rows) through the unique index on their names.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from storage.sql import dt_or_none, engine


@dataclass(frozen=True, slots=True)
class StoreSample:
    """The outbox backlog and the system accounts' balances, from one snapshot."""

    # Pushes waiting to be sent, and when the oldest of them was queued (None: none waits).
    pending: int
    oldest_pending_at: datetime | None
    # The oldest pending push the sender may send now (a service push, or any push outside
    # quiet hours), or None: what a stuck sender leaves behind.
    oldest_sendable_at: datetime | None
    # Balance of each source account (negative: points issued) and sink account (points
    # redeemed, expired, paid for games), by account name.
    sources: dict[str, int]
    sinks: dict[str, int]
    # The database's size as the server counts it (PostgreSQL); None: a file, measured there.
    database_bytes: int | None = None


def store_sample(conn: sqlite3.Connection, *, marketing: bool) -> StoreSample:
    """The outbox backlog and the system accounts' balances; `marketing`: whether the sender
    sends marketing pushes now (outside quiet hours)."""
    pending, oldest, sendable = conn.execute(
        "SELECT count(*), min(created_at),"
        " min(CASE WHEN ? = 1 OR category = 'service' THEN created_at END)"
        " FROM outbox WHERE status = 'pending'",
        (int(marketing),),
    ).fetchone()
    sources: dict[str, int] = {}
    sinks: dict[str, int] = {}
    # `name IS NOT NULL`: only system accounts have a name, and its index finds them.
    for kind, name, balance in conn.execute(
        "SELECT kind, name, balance FROM account_balances WHERE name IS NOT NULL ORDER BY name"
    ):
        (sources if kind == "source" else sinks)[name] = int(balance)
    size = None
    if engine(conn) == "postgres":
        size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
    return StoreSample(
        database_bytes=size,
        pending=int(pending),
        oldest_pending_at=dt_or_none(oldest),
        oldest_sendable_at=dt_or_none(sendable),
        sources=sources,
        sinks=sinks,
    )


def take_write_lock(conn: sqlite3.Connection) -> None:
    """Nothing: run as a write, it proves the writer can take the database's write lock."""
