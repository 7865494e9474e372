"""Check-in events: the events staff create and the members who check in at them.

A check-in is one row per member per event, written in the same transaction as the task
progress it causes (the caller's `advance`), so a check-in and its reward commit together or
not at all. The database holds the window, the capacity and the once-per-member rule itself
(migration 0022). Like `storage.tasks`, the core is synchronous functions on a
`sqlite3.Connection`; the `Events` facade serves them.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from storage.facade import Facade, looks_up, reads, writes
from storage.sql import atomic, dt, required_now, ts

# Event codes are read off a poster and typed on a phone: no 0/O, 1/I/L look-alikes.
CODE_ALPHABET: Final = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH: Final = 6


def new_event_code() -> str:
    """A random event code (6 characters of CODE_ALPHABET: about 887 million codes)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


@dataclass(frozen=True, slots=True)
class Event:
    """An event members check in at."""

    id: int
    code: str
    name: str
    starts_at: datetime
    ends_at: datetime
    capacity: int | None
    created_by: str
    created_at: datetime


_SELECT: Final = (
    "SELECT id, code, name, starts_at, ends_at, capacity, created_by, created_at FROM events"
)


def _event(row: tuple[object, ...]) -> Event:
    event_id, code, name, starts_at, ends_at, capacity, created_by, created_at = row
    assert isinstance(event_id, int) and isinstance(starts_at, int) and isinstance(ends_at, int)
    assert isinstance(created_at, int)
    return Event(
        id=event_id,
        code=str(code),
        name=str(name),
        starts_at=dt(starts_at),
        ends_at=dt(ends_at),
        capacity=capacity if isinstance(capacity, int) else None,
        created_by=str(created_by),
        created_at=dt(created_at),
    )


def create_event(
    conn: sqlite3.Connection,
    name: str,
    starts_at: datetime,
    ends_at: datetime,
    capacity: int | None,
    *,
    created_by: str,
    now: datetime | None = None,
) -> Event:
    """Create an event with a fresh code (drawn again on a collision)."""
    now = required_now(now)
    with atomic(conn):
        while True:
            # A code drawn twice inserts nothing (no IntegrityError: on PostgreSQL a failed
            # statement spoils the transaction); draw again.
            drawn = conn.execute(
                "INSERT INTO events (code, name, starts_at, ends_at, capacity, created_by,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (code) DO NOTHING"
                " RETURNING id",
                (new_event_code(), name, ts(starts_at), ts(ends_at), capacity, created_by, ts(now)),
            ).fetchone()
            if drawn is not None:
                break
        row = conn.execute(_SELECT + " WHERE id = ?", (drawn[0],)).fetchone()
        return _event(row)


def event_by_code(conn: sqlite3.Connection, code: str) -> Event | None:
    """The event with this code (as stored: upper case), or None."""
    row = conn.execute(_SELECT + " WHERE code = ?", (code,)).fetchone()
    return None if row is None else _event(row)


# checked_in: recorded now; already: this member checked in before; full: no places left.
CheckInStatus = Literal["checked_in", "already", "full"]


@dataclass(frozen=True, slots=True)
class CheckIn:
    """What a check-in did."""

    status: CheckInStatus
    # The checkin task this check-in completed (None: none, or nothing recorded now).
    task_id: str | None = None


def check_in(
    conn: sqlite3.Connection,
    event_id: int,
    member_id: int,
    *,
    day: str,
    advance: Callable[[sqlite3.Connection], str | None],
    now: datetime | None = None,
) -> CheckIn:
    """Check the member in at the event once, running `advance` (the task progress it causes,
    returning the task it completed) in the same transaction; the window is the caller's to
    check first (the database refuses a check-in outside it: IntegrityError)."""
    now = required_now(now)
    with atomic(conn):
        if conn.execute(
            "SELECT 1 FROM checkins WHERE event_id = ? AND member_id = ?", (event_id, member_id)
        ).fetchone():
            return CheckIn("already")
        capacity, taken = conn.execute(
            "SELECT capacity, (SELECT count(*) FROM checkins WHERE event_id = events.id)"
            " FROM events WHERE id = ?",
            (event_id,),
        ).fetchone()
        if capacity is not None and taken >= capacity:
            return CheckIn("full")
        task_id = advance(conn)
        conn.execute(
            "INSERT INTO checkins (event_id, member_id, checked_in_at, day, task_id)"
            " VALUES (?, ?, ?, ?, ?)",
            (event_id, member_id, ts(now), day, task_id),
        )
        return CheckIn("checked_in", task_id)


@dataclass(frozen=True, slots=True)
class EventCounts:
    """An event's check-ins so far."""

    checked_in: int
    # (local day, check-ins that day), in day order.
    by_day: tuple[tuple[str, int], ...]
    # Check-ins that completed a checkin task.
    completed_task: int


def event_counts(conn: sqlite3.Connection, event_id: int) -> EventCounts:
    """How many checked in at the event, per local day, and how many completed a task by it."""
    by_day = tuple(
        (str(day), int(count))
        for day, count in conn.execute(
            "SELECT day, count(*) FROM checkins WHERE event_id = ? GROUP BY day ORDER BY day",
            (event_id,),
        )
    )
    completed = conn.execute(
        "SELECT count(*) FROM checkins WHERE event_id = ? AND task_id IS NOT NULL", (event_id,)
    ).fetchone()[0]
    return EventCounts(sum(count for _day, count in by_day), by_day, int(completed))


class Events(Facade):
    """Async access to events and check-ins (one write transaction per call)."""

    create = writes(create_event)
    by_code = looks_up(event_by_code)
    check_in = writes(check_in)
    counts = reads(event_counts)
