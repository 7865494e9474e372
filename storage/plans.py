"""Key customers and their personal plans: the marks, the plans' terms, the history of every
change staff made (append-only), and the drafts of the /plan conversation.

Like `storage.tiers`, the core is synchronous functions on a `sqlite3.Connection`; what a plan
pays and when lives in bot/programme/plans.py.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from storage.facade import Facade, looks_up, reads, writes
from storage.sql import atomic, dt, dt_or_none, insert_id, ts

_SELECT_PLANS = (
    "SELECT id, member_id, categories, multiplier, starts_on, ends_on, from_at, until_at,"
    " gift_threshold_fen, gift_points, spent_fen, skus, advisor_id, advisor_contact,"
    " created_at, actor, ended_at FROM plans"
)
# The plans of some members (a JSON list, :members) running after :now.
_RUNNING_OF_MEMBERS = (
    " WHERE ended_at IS NULL AND until_at > :now"
    " AND member_id IN (SELECT value FROM json_each(:members)) ORDER BY from_at, id"
)


@dataclass(frozen=True, slots=True)
class PlanTerms:
    """What staff set for a plan: categories (empty: all), the extra multiplier, the window of
    local days and its instants, the spend-threshold gift, priority SKUs and the advisor."""

    categories: tuple[str, ...]
    multiplier: Decimal
    starts_on: date
    ends_on: date
    from_at: datetime
    until_at: datetime
    gift_threshold_fen: int | None
    gift_points: int | None
    skus: tuple[str, ...]
    advisor_id: int | None
    advisor_contact: str | None

    def as_json(self) -> dict[str, Any]:
        """The terms as the history keeps them."""
        return {
            "categories": list(self.categories),
            "multiplier": str(self.multiplier),
            "starts_on": self.starts_on.isoformat(),
            "ends_on": self.ends_on.isoformat(),
            "gift_threshold_fen": self.gift_threshold_fen,
            "gift_points": self.gift_points,
            "skus": list(self.skus),
            "advisor_id": self.advisor_id,
            "advisor_contact": self.advisor_contact,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """A personal plan as stored."""

    id: int
    member_id: int
    terms: PlanTerms
    spent_fen: int
    created_at: datetime
    actor: str
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class PlanChange:
    """One change staff made: a mark, an unmark, a plan created, changed or ended."""

    id: int
    member_id: int
    plan_id: int | None
    action: str
    reason: str
    terms: dict[str, Any] | None
    actor: str
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class KeyCustomer:
    """A member marked as a key customer: when, by whom, why."""

    member_id: int
    marked_at: datetime
    actor: str
    reason: str


@dataclass(frozen=True, slots=True)
class PlanDraft:
    """A staff member's /plan conversation so far."""

    staff_id: int
    member_id: int
    step: str
    terms: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TopMember:
    """A member among the top by qualifying figures, with what /vip shows about them."""

    member_id: int
    member_code: str
    name: str
    points: int
    fen: int
    tier_id: str | None
    key_customer: bool


def _plan(row: Sequence[Any]) -> Plan:
    (pid, member, cats, mult, starts, ends, from_at, until_at, threshold, gift, spent, skus) = row[
        :12
    ]
    advisor_id, contact, created, actor, ended = row[12:]
    terms = PlanTerms(
        categories=tuple(json.loads(cats)),
        multiplier=Decimal(mult),
        starts_on=date.fromisoformat(starts),
        ends_on=date.fromisoformat(ends),
        from_at=dt(from_at),
        until_at=dt(until_at),
        gift_threshold_fen=threshold,
        gift_points=gift,
        skus=tuple(json.loads(skus)),
        advisor_id=advisor_id,
        advisor_contact=contact,
    )
    return Plan(
        int(pid), int(member), terms, int(spent), dt(created), str(actor), dt_or_none(ended)
    )


def record_change(
    conn: sqlite3.Connection,
    member_id: int,
    action: str,
    *,
    reason: str,
    actor: str,
    now: datetime,
    plan_id: int | None = None,
    terms: Mapping[str, Any] | None = None,
) -> None:
    """Append one change to the history."""
    conn.execute(
        "INSERT INTO plan_changes (member_id, plan_id, action, reason, terms, actor, changed_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            member_id,
            plan_id,
            action,
            reason,
            None if terms is None else json.dumps(terms, ensure_ascii=False, sort_keys=True),
            actor,
            ts(now),
        ),
    )


def mark(
    conn: sqlite3.Connection, member_id: int, *, actor: str, reason: str, now: datetime
) -> bool:
    """Mark a member as a key customer and record it; False (nothing written) if marked."""
    with atomic(conn):
        added = conn.execute(
            "INSERT INTO key_customers (member_id, marked_at, actor, reason) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (member_id) DO NOTHING",
            (member_id, ts(now), actor, reason),
        ).rowcount
        if added:
            record_change(conn, member_id, "mark", reason=reason, actor=actor, now=now)
    return bool(added)


def unmark(
    conn: sqlite3.Connection, member_id: int, *, actor: str, reason: str, now: datetime
) -> bool:
    """Take a member's key-customer mark away and record it; False if not marked."""
    with atomic(conn):
        removed = conn.execute(
            "DELETE FROM key_customers WHERE member_id = ?", (member_id,)
        ).rowcount
        if removed:
            record_change(conn, member_id, "unmark", reason=reason, actor=actor, now=now)
    return bool(removed)


def key_customers_among(conn: sqlite3.Connection, member_ids: Collection[int]) -> set[int]:
    """Which of these members are key customers."""
    rows = conn.execute(
        "SELECT member_id FROM key_customers WHERE member_id IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(member_ids)),),
    )
    return {int(m) for (m,) in rows}


def key_customer(conn: sqlite3.Connection, member_id: int) -> KeyCustomer | None:
    """The member's key-customer mark, if any."""
    row = conn.execute(
        "SELECT member_id, marked_at, actor, reason FROM key_customers WHERE member_id = ?",
        (member_id,),
    ).fetchone()
    return None if row is None else KeyCustomer(int(row[0]), dt(row[1]), str(row[2]), str(row[3]))


def add_plan(
    conn: sqlite3.Connection,
    member_id: int,
    terms: PlanTerms,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> tuple[Plan, Plan | None]:
    """Give a member a plan, replacing the plan still running (a change: one plan per member);
    return the new plan and the one it replaced. Both recorded. A plan already over whose
    window the new one overlaps is closed too (it applies to nothing any more)."""
    with atomic(conn):
        replaced = running_plan(conn, member_id, now)
        conn.execute(
            "UPDATE plans SET ended_at = :now WHERE member_id = :member AND ended_at IS NULL"
            " AND (until_at > :now OR (starts_on <= :ends AND ends_on >= :starts))",
            {
                "now": ts(now),
                "member": member_id,
                "starts": terms.starts_on.isoformat(),
                "ends": terms.ends_on.isoformat(),
            },
        )
        plan_id = insert_id(
            conn,
            "INSERT INTO plans (member_id, categories, multiplier, starts_on, ends_on, from_at,"
            " until_at, gift_threshold_fen, gift_points, skus, advisor_id, advisor_contact,"
            " created_at, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                member_id,
                json.dumps(list(terms.categories)),
                str(terms.multiplier),
                terms.starts_on.isoformat(),
                terms.ends_on.isoformat(),
                ts(terms.from_at),
                ts(terms.until_at),
                terms.gift_threshold_fen,
                terms.gift_points,
                json.dumps(list(terms.skus), ensure_ascii=False),
                terms.advisor_id,
                terms.advisor_contact,
                ts(now),
                actor,
            ),
        )
        record_change(
            conn,
            member_id,
            "create" if replaced is None else "change",
            reason=reason if replaced is None else f"{reason} (replaces plan {replaced.id})",
            actor=actor,
            now=now,
            plan_id=plan_id,
            terms=terms.as_json(),
        )
        return plan(conn, plan_id), replaced


def end_plan(
    conn: sqlite3.Connection, member_id: int, *, actor: str, reason: str, now: datetime
) -> Plan | None:
    """End the member's running plan early and record it; None when there is none."""
    with atomic(conn):
        running = running_plan(conn, member_id, now)
        if running is None:
            return None
        conn.execute("UPDATE plans SET ended_at = ? WHERE id = ?", (ts(now), running.id))
        record_change(
            conn, member_id, "end", reason=reason, actor=actor, now=now, plan_id=running.id
        )
        return plan(conn, running.id)


def plan(conn: sqlite3.Connection, plan_id: int) -> Plan:
    """A plan by id; raises KeyError."""
    row = conn.execute(_SELECT_PLANS + " WHERE id = ?", (plan_id,)).fetchone()
    if row is None:
        raise KeyError(plan_id)
    return _plan(row)


def running_plan(conn: sqlite3.Connection, member_id: int, now: datetime) -> Plan | None:
    """The member's plan not ended and not over by `now` (the earliest, should there be two
    for later windows)."""
    row = conn.execute(
        _SELECT_PLANS + " WHERE member_id = ? AND ended_at IS NULL"
        " AND until_at > ? ORDER BY from_at, id LIMIT 1",
        (member_id, ts(now)),
    ).fetchone()
    return None if row is None else _plan(row)


def running_plans(
    conn: sqlite3.Connection, member_ids: Collection[int], now: datetime
) -> dict[int, list[Plan]]:
    """The running plans (not ended, not over) of those of these members who have any: one
    query for a whole purchase batch, most of whose members have none."""
    rows = conn.execute(
        _SELECT_PLANS + _RUNNING_OF_MEMBERS,
        {"members": json.dumps(sorted(member_ids)), "now": ts(now)},
    )
    found: dict[int, list[Plan]] = {}
    for row in rows:
        item = _plan(row)
        found.setdefault(item.member_id, []).append(item)
    return found


def all_running(conn: sqlite3.Connection, now: datetime) -> list[Plan]:
    """Every running plan, soonest ending first (what /plans lists)."""
    rows = conn.execute(
        _SELECT_PLANS + " WHERE ended_at IS NULL AND until_at > ? ORDER BY until_at, id",
        (ts(now),),
    )
    return [_plan(row) for row in rows]


def plans_of(conn: sqlite3.Connection, member_id: int) -> list[Plan]:
    """Every plan the member was given, oldest first (running, ended and expired alike)."""
    rows = conn.execute(
        _SELECT_PLANS + " WHERE member_id = ? ORDER BY id",
        (member_id,),
    )
    return [_plan(row) for row in rows]


def add_spend(conn: sqlite3.Connection, plan_id: int, fen: int) -> int:
    """Add purchases' spend to a plan; return what it has counted now."""
    row = conn.execute(
        "UPDATE plans SET spent_fen = spent_fen + ? WHERE id = ? RETURNING spent_fen",
        (fen, plan_id),
    ).fetchone()
    return int(row[0])


def plan_changes(conn: sqlite3.Connection, member_id: int) -> list[PlanChange]:
    """A member's history of marks and plans, oldest first."""
    rows = conn.execute(
        "SELECT id, member_id, plan_id, action, reason, terms, actor, changed_at"
        " FROM plan_changes WHERE member_id = ? ORDER BY changed_at, id",
        (member_id,),
    )
    return [
        PlanChange(
            int(i), int(m), p, str(a), str(r), None if t is None else json.loads(t), str(w), dt(at)
        )
        for i, m, p, a, r, t, w, at in rows
    ]


def save_draft(
    conn: sqlite3.Connection,
    staff_id: int,
    member_id: int,
    step: str,
    terms: Mapping[str, Any],
    *,
    now: datetime,
) -> None:
    """Keep a staff member's /plan conversation as it stands (one per staff member)."""
    conn.execute(
        "INSERT INTO plan_drafts (staff_id, member_id, step, terms, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (staff_id) DO UPDATE SET"
        " member_id = excluded.member_id, step = excluded.step, terms = excluded.terms,"
        " updated_at = excluded.updated_at",
        (staff_id, member_id, step, json.dumps(terms, ensure_ascii=False), ts(now)),
    )


def draft(conn: sqlite3.Connection, staff_id: int) -> PlanDraft | None:
    """A staff member's /plan conversation, if one is open."""
    row = conn.execute(
        "SELECT staff_id, member_id, step, terms FROM plan_drafts WHERE staff_id = ?",
        (staff_id,),
    ).fetchone()
    return (
        None
        if row is None
        else PlanDraft(int(row[0]), int(row[1]), str(row[2]), json.loads(row[3]))
    )


def drop_draft(conn: sqlite3.Connection, staff_id: int) -> None:
    """Forget a staff member's /plan conversation."""
    conn.execute("DELETE FROM plan_drafts WHERE staff_id = ?", (staff_id,))


def top_members(
    conn: sqlite3.Connection, months: Collection[str], *, by_fen: bool, limit: int
) -> list[TopMember]:
    """The members with the highest qualifying figures over these months (by fen spent or by
    purchase points), with their held tier and key-customer mark."""
    rows = conn.execute(
        "SELECT q.member_id, m.member_code, m.first_name, m.last_name, q.points, q.fen,"
        " t.tier_id, k.member_id IS NOT NULL"
        " FROM (SELECT member_id, sum(points) AS points, sum(fen) AS fen FROM tier_months"
        "  WHERE month IN (SELECT value FROM json_each(?)) GROUP BY member_id) AS q"
        " JOIN members AS m ON m.id = q.member_id"
        " LEFT JOIN member_tiers AS t ON t.member_id = q.member_id"
        " LEFT JOIN key_customers AS k ON k.member_id = q.member_id"
        " ORDER BY CASE WHEN ? = 1 THEN q.fen ELSE q.points END DESC, q.member_id LIMIT ?",
        (json.dumps(sorted(months)), 1 if by_fen else 0, limit),
    )
    return [
        TopMember(
            int(mid),
            str(code),
            " ".join(p for p in (first, last) if p),
            int(points),
            int(fen),
            tier,
            bool(key),
        )
        for mid, code, first, last, points, fen, tier, key in rows
    ]


def priority_skus_of(conn: sqlite3.Connection, member_id: int, now: datetime) -> frozenset[str]:
    """The mall items the member's plan running at `now` (inside its window) gives priority to."""
    rows = conn.execute(
        "SELECT skus FROM plans WHERE member_id = ? AND ended_at IS NULL"
        " AND from_at <= ? AND until_at > ?",
        (member_id, ts(now), ts(now)),
    )
    return frozenset(sku for (skus,) in rows for sku in json.loads(skus))


class Plans(Facade):
    """Async access to key customers and personal plans."""

    mark = writes(mark)
    unmark = writes(unmark)
    end_plan = writes(end_plan)
    add_plan = writes(add_plan)
    save_draft = writes(save_draft)
    drop_draft = writes(drop_draft)
    draft = looks_up(draft)
    running_plan = looks_up(running_plan)
    all_running = reads(all_running)
    plan_changes = reads(plan_changes)
    plans_of = reads(plans_of)
    key_customer = looks_up(key_customer)
    key_customers_among = looks_up(key_customers_among)
    top_members = reads(top_members)
