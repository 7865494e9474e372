"""Households: members who share points, and the history of who belonged when.

A member belongs to at most one household at a time (a unique index says so); a stay is a
row in `household_members` that is ended, never deleted, so whether two members shared a
household at the instant of a transfer can be checked afterwards (`pointsbot audit`). Like
`storage.feedback`, the core is synchronous functions on a `sqlite3.Connection`, each
all-or-nothing through `storage.sql.atomic`; the `Families` facade serves them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from storage.errors import InvalidState, LimitReached, NotFound
from storage.facade import Facade, looks_up, writes
from storage.sql import atomic, dt, required_now, ts

LeftHow = Literal["left", "removed", "dissolved"]


@dataclass(frozen=True, slots=True)
class HouseholdMember:
    """One current member of a household."""

    member_id: int
    telegram_id: int
    member_code: str
    name: str
    joined_at: datetime
    is_head: bool
    # The member lets the household see their balance and what expires soon.
    shares_balance: bool


@dataclass(frozen=True, slots=True)
class Household:
    """A household and its current members (the head first, then by joining)."""

    id: int
    head_id: int
    created_at: datetime
    members: tuple[HouseholdMember, ...]

    def member(self, member_id: int) -> HouseholdMember | None:
        """The current member with this id, or None."""
        for m in self.members:
            if m.member_id == member_id:
                return m
        return None


_MEMBERS_SELECT: Final = (
    "SELECT hm.member_id, m.telegram_id, m.member_code,"
    " trim(m.first_name || ' ' || coalesce(m.last_name, '')), hm.joined_at, m.share_balance"
    " FROM household_members AS hm JOIN members AS m ON m.id = hm.member_id"
    " WHERE hm.household_id = ? AND hm.left_at IS NULL ORDER BY hm.joined_at, hm.id"
)


def household_by_id(conn: sqlite3.Connection, household_id: int) -> Household:
    """A household that has not been dissolved, with its current members; raises NotFound."""
    row = conn.execute(
        "SELECT id, head_id, created_at FROM households WHERE id = ? AND dissolved_at IS NULL",
        (household_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"household {household_id}")
    members = [
        HouseholdMember(
            member_id=r[0],
            telegram_id=r[1],
            member_code=r[2],
            name=r[3],
            joined_at=dt(r[4]),
            is_head=r[0] == row[1],
            shares_balance=bool(r[5]),
        )
        for r in conn.execute(_MEMBERS_SELECT, (household_id,))
    ]
    members.sort(key=lambda m: not m.is_head)  # stable: the head first, then by joining
    return Household(id=row[0], head_id=row[1], created_at=dt(row[2]), members=tuple(members))


def household_id_of(conn: sqlite3.Connection, member_id: int) -> int | None:
    """The id of the member's current household, or None."""
    row = conn.execute(
        "SELECT household_id FROM household_members WHERE member_id = ? AND left_at IS NULL",
        (member_id,),
    ).fetchone()
    return None if row is None else int(row[0])


def household_of(conn: sqlite3.Connection, member_id: int) -> Household | None:
    """The member's current household, or None."""
    household_id = household_id_of(conn, member_id)
    return None if household_id is None else household_by_id(conn, household_id)


def current_stay_since(conn: sqlite3.Connection, member_id: int) -> datetime | None:
    """When the member joined their current household (the cooling-off counts from it)."""
    row = conn.execute(
        "SELECT joined_at FROM household_members WHERE member_id = ? AND left_at IS NULL",
        (member_id,),
    ).fetchone()
    return None if row is None else dt(row[0])


def shared_household_at(
    conn: sqlite3.Connection, member_a: int, member_b: int, at: datetime
) -> int | None:
    """The household both members belonged to at instant `at`, or None."""
    at_ts = ts(at)
    row = conn.execute(
        "SELECT a.household_id FROM household_members AS a"
        " JOIN household_members AS b ON b.household_id = a.household_id"
        " WHERE a.member_id = ? AND b.member_id = ?"
        " AND a.joined_at <= ? AND (a.left_at IS NULL OR a.left_at > ?)"
        " AND b.joined_at <= ? AND (b.left_at IS NULL OR b.left_at > ?)",
        (member_a, member_b, at_ts, at_ts, at_ts, at_ts),
    ).fetchone()
    return None if row is None else int(row[0])


def record_event(
    conn: sqlite3.Connection,
    household_id: int,
    kind: str,
    *,
    member_id: int | None,
    actor: str,
    now: datetime,
    reason: str | None = None,
) -> None:
    """Append one line to the household's audit trail."""
    conn.execute(
        "INSERT INTO household_events (household_id, kind, member_id, actor, reason, at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (household_id, kind, member_id, actor, reason, ts(now)),
    )


def create_household(
    conn: sqlite3.Connection, member_id: int, *, actor: str, now: datetime | None = None
) -> Household:
    """A new household with the member as its head; raises InvalidState when the member
    already belongs to one."""
    now = required_now(now)
    with atomic(conn):
        if household_id_of(conn, member_id) is not None:
            raise InvalidState("in a household")
        household_id = conn.execute(
            "INSERT INTO households (created_by, head_id, created_at) VALUES (?, ?, ?)",
            (member_id, member_id, ts(now)),
        ).lastrowid
        assert household_id is not None
        conn.execute(
            "INSERT INTO household_members (household_id, member_id, joined_at) VALUES (?, ?, ?)",
            (household_id, member_id, ts(now)),
        )
        record_event(conn, household_id, "created", member_id=member_id, actor=actor, now=now)
        return household_by_id(conn, household_id)


def join_household(
    conn: sqlite3.Connection,
    household_id: int,
    member_id: int,
    *,
    max_members: int,
    actor: str,
    now: datetime | None = None,
) -> Household:
    """Add a member to a household; raises NotFound (dissolved), InvalidState (already in a
    household) and LimitReached (full)."""
    now = required_now(now)
    with atomic(conn):
        household = household_by_id(conn, household_id)
        if household_id_of(conn, member_id) is not None:
            raise InvalidState("in a household")
        if len(household.members) >= max_members:
            raise LimitReached(max_members)
        conn.execute(
            "INSERT INTO household_members (household_id, member_id, joined_at) VALUES (?, ?, ?)",
            (household_id, member_id, ts(now)),
        )
        record_event(conn, household_id, "joined", member_id=member_id, actor=actor, now=now)
        return household_by_id(conn, household_id)


def end_stay(
    conn: sqlite3.Connection,
    member_id: int,
    how: LeftHow,
    *,
    actor: str,
    now: datetime | None = None,
    reason: str | None = None,
) -> int:
    """End the member's current stay (left or removed) and return the household's id; raises
    NotFound when the member is in no household."""
    now = required_now(now)
    with atomic(conn):
        household_id = household_id_of(conn, member_id)
        if household_id is None:
            raise NotFound(f"member {member_id} is in no household")
        conn.execute(
            "UPDATE household_members SET left_at = ?, left_how = ?"
            " WHERE member_id = ? AND left_at IS NULL",
            (ts(now), how, member_id),
        )
        if how != "dissolved":
            record_event(
                conn, household_id, how, member_id=member_id, actor=actor, now=now, reason=reason
            )
        return household_id


class Families(Facade):
    """Async access to households (one write transaction per call)."""

    household_of = looks_up(household_of)
    household_by_id = looks_up(household_by_id)
    current_stay_since = looks_up(current_stay_since)
    create_household = writes(create_household)
    join_household = writes(join_household)
    end_stay = writes(end_stay)
