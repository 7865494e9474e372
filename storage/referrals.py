"""Referrals: friends who registered through a member's link, and their first purchase.

A friend is recorded once, in the transaction that registers them (`register_referred`), and
only when they are new and not the referrer. Their first purchase is recorded once, inside the
purchase's booking transaction (`credit_first_purchase`), and credits the referrer at most once
and within the month's cap; a replayed purchase finds the first purchase recorded and does
nothing. The database keeps each of those facts once (migration 0022). Like `storage.tasks`,
the core is synchronous functions on a `sqlite3.Connection`; the `Referrals` facade serves them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from storage.facade import Facade, looks_up, writes
from storage.members import Member, Profile, register_member
from storage.sql import atomic, required_now, ts

# joined: recorded as the referrer's friend; not_new: already a member, nothing recorded;
# own: the referrer's own link (already a member); unknown: no member has that code.
Referred = Literal["joined", "not_new", "own", "unknown"]


@dataclass(frozen=True, slots=True)
class Registered:
    """A /start through a referral link: the member, whether new, and what became of it."""

    member: Member
    is_new: bool
    outcome: Referred
    referrer_name: str | None = None


def register_referred(
    conn: sqlite3.Connection,
    profile: Profile,
    payload: str,
    referrer_code: str,
    *,
    now: datetime | None = None,
) -> Registered:
    """Register the member at /start (as `register_member`) and, when they are new, record
    them as the friend of the member with `referrer_code`, in one transaction."""
    now = required_now(now)
    with atomic(conn):
        referrer = conn.execute(
            "SELECT id, first_name FROM members WHERE member_code = ?", (referrer_code,)
        ).fetchone()
        member, is_new = register_member(conn, profile, payload, now)
        if referrer is None:
            return Registered(member, is_new, "unknown")
        referrer_id, referrer_name = int(referrer[0]), str(referrer[1])
        if referrer_id == member.id:
            return Registered(member, is_new, "own")
        if not is_new:
            return Registered(member, is_new, "not_new", referrer_name)
        conn.execute(
            "INSERT INTO referrals (referee_id, referrer_id, started_at) VALUES (?, ?, ?)",
            (member.id, referrer_id, ts(now)),
        )
        return Registered(member, is_new, "joined", referrer_name)


@dataclass(frozen=True, slots=True)
class FirstPurchase:
    """A referred friend's first purchase, just recorded."""

    referrer_id: int
    referee_id: int
    referee_name: str
    # It credits the referrer (within the month's cap, with a referral task open).
    credited: bool
    # The referrer's friends credited in the month, this one included when credited.
    credited_in_month: int


def credited_count(conn: sqlite3.Connection, referrer_id: int, month: str) -> int:
    """How many of the referrer's friends were credited in the local month ('2026-11')."""
    row = conn.execute(
        "SELECT count(*) FROM referrals WHERE referrer_id = ? AND month = ?", (referrer_id, month)
    ).fetchone()
    return int(row[0])


def awaiting_first_purchase(conn: sqlite3.Connection, member_ids: Collection[int]) -> set[int]:
    """Those of these members who are referred friends yet to make a first purchase (one
    query for a whole import batch: only they need `credit_first_purchase`)."""
    return {
        int(row[0])
        for row in conn.execute(
            "SELECT referee_id FROM referrals WHERE first_purchase_op IS NULL"
            " AND referee_id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(member_ids)),),
        )
    }


def credit_first_purchase(
    conn: sqlite3.Connection,
    member_id: int,
    operation_id: int,
    *,
    month: str | None,
    cap: int,
    now: datetime | None = None,
) -> FirstPurchase | None:
    """Inside a purchase's booking transaction: when the member is a referred friend whose
    first purchase this is, record it (operation `operation_id`) and credit the referrer in
    local `month` if fewer than `cap` friends were credited then (month None: no referral
    task open, nothing credited). None when the member was not referred or bought before."""
    now = required_now(now)
    with atomic(conn):
        row = conn.execute(
            "UPDATE referrals SET first_purchase_op = ?, first_purchase_at = ?"
            " WHERE referee_id = ? AND first_purchase_op IS NULL RETURNING referrer_id",
            (operation_id, ts(now), member_id),
        ).fetchone()
        if row is None:
            return None
        referrer_id = int(row[0])
        name = conn.execute("SELECT first_name FROM members WHERE id = ?", (member_id,)).fetchone()
        counted = credited_count(conn, referrer_id, month) if month is not None else 0
        credited = month is not None and counted < cap
        if credited:
            conn.execute(
                "UPDATE referrals SET credited_at = ?, month = ? WHERE referee_id = ?",
                (ts(now), month, member_id),
            )
            counted += 1
        return FirstPurchase(referrer_id, member_id, str(name[0]), credited, counted)


@dataclass(frozen=True, slots=True)
class ReferralCounts:
    """A referrer's friends: joined through the link, bought, credited (ever and this month)."""

    joined: int
    purchased: int
    credited: int
    credited_in_month: int


def referral_counts(conn: sqlite3.Connection, referrer_id: int, month: str) -> ReferralCounts:
    """The referrer's friends so far, and those credited in local `month`."""
    joined, purchased, credited, in_month = conn.execute(
        "SELECT count(*), count(first_purchase_op), count(credited_at),"
        # count(... OR NULL), not sum(a = b): PostgreSQL sums no booleans.
        " count(month = ? OR NULL) FROM referrals WHERE referrer_id = ?",
        (month, referrer_id),
    ).fetchone()
    return ReferralCounts(int(joined), int(purchased), int(credited), int(in_month))


class Referrals(Facade):
    """Async access to referrals (one write transaction per call)."""

    register = writes(register_referred)
    credit_first_purchase = writes(credit_first_purchase)
    counts = looks_up(referral_counts)
