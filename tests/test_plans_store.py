"""storage.plans on both engines: key customers marked once, a plan replacing the running one
(and closing an overlapping one already over), spend counted, the history, drafts, and the
top members by qualifying figures."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from storage import plans
from storage.members import Profile, register_member
from storage.plans import PlanTerms
from storage.tiers import add_months, change_tier
from tests.postgres import ENGINES, migrated_connection

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection


def member(conn: sqlite3.Connection, telegram_id: int, name: str = "") -> int:
    profile = Profile(telegram_id, name or f"m{telegram_id}")
    return register_member(conn, profile, None, NOW)[0].id


def terms(start: date, days: int, skus: tuple[str, ...] = ()) -> PlanTerms:
    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    return PlanTerms(
        categories=("eco",),
        multiplier=Decimal("1.5"),
        starts_on=start,
        ends_on=start + timedelta(days=days - 1),
        from_at=begin,
        until_at=begin + days * DAY,
        gift_threshold_fen=100_000,
        gift_points=50,
        skus=skus,
        advisor_id=None,
        advisor_contact=None,
    )


def test_key_customers_are_marked_once(conn: sqlite3.Connection) -> None:
    one, two = member(conn, 1), member(conn, 2)
    assert plans.mark(conn, one, actor="staff", reason="vip", now=NOW)
    assert not plans.mark(conn, one, actor="staff", reason="again", now=NOW)
    assert plans.key_customers_among(conn, [one, two]) == {one}
    marked = plans.key_customer(conn, one)
    assert marked is not None and (marked.actor, marked.marked_at) == ("staff", NOW)
    assert plans.unmark(conn, one, actor="staff", reason="left", now=NOW)
    assert not plans.unmark(conn, one, actor="staff", reason="left", now=NOW)
    assert [c.action for c in plans.plan_changes(conn, one)] == ["mark", "unmark"]


def test_a_plan_replaces_the_running_one_and_counts_spend(conn: sqlite3.Connection) -> None:
    one, two = member(conn, 1), member(conn, 2)
    first, replaced = plans.add_plan(
        conn, one, terms(date(2026, 11, 1), 60, ("SKU-1",)), actor="staff", reason="new", now=NOW
    )
    assert replaced is None and first.terms.multiplier == Decimal("1.5")
    assert plans.priority_skus_of(conn, one, NOW) == frozenset({"SKU-1"})
    assert plans.add_spend(conn, first.id, 30_000) == 30_000
    assert plans.add_spend(conn, first.id, 5_000) == 35_000
    second, replaced = plans.add_plan(
        conn, one, terms(date(2026, 12, 1), 30), actor="staff", reason="more", now=NOW
    )
    assert replaced is not None and replaced.id == first.id
    assert plans.plan(conn, first.id).ended_at == NOW
    assert plans.running_plans(conn, [one, two], NOW) == {one: [second]}
    assert plans.all_running(conn, NOW) == [second]
    assert plans.priority_skus_of(conn, one, NOW) == frozenset()  # not in its window yet
    ended = plans.end_plan(conn, one, actor="staff", reason="stop", now=NOW)
    assert ended is not None and ended.ended_at == NOW
    assert plans.end_plan(conn, one, actor="staff", reason="stop", now=NOW) is None
    assert [p.id for p in plans.plans_of(conn, one)] == [first.id, second.id]
    history = plans.plan_changes(conn, one)
    assert [c.action for c in history] == ["create", "change", "end"]
    assert history[1].terms is not None and history[1].terms["starts_on"] == "2026-12-01"


def test_a_staff_draft_is_kept_until_dropped(conn: sqlite3.Connection) -> None:
    one = member(conn, 1)
    plans.save_draft(conn, 77, one, "categories", {"categories": []}, now=NOW)
    plans.save_draft(conn, 77, one, "multiplier", {"categories": ["eco"]}, now=NOW)
    found = plans.draft(conn, 77)
    assert found is not None and (found.step, found.terms) == (
        "multiplier",
        {"categories": ["eco"]},
    )
    plans.drop_draft(conn, 77)
    assert plans.draft(conn, 77) is None


def test_top_members_by_fen_or_points(conn: sqlite3.Connection) -> None:
    ann, bob, cat = member(conn, 1, "Ann"), member(conn, 2, "Bob"), member(conn, 3, "Cat")
    add_months(
        conn,
        [
            (ann, "2026-10", 100, 900_000),
            (ann, "2026-11", 50, 0),
            (bob, "2026-11", 400, 200_000),
            (cat, "2025-01", 9_999, 9_999_999),  # outside the months asked
        ],
    )
    change_tier(conn, bob, None, "tree", reason="staff", total=0, actor="t", now=NOW)
    plans.mark(conn, ann, actor="staff", reason="vip", now=NOW)
    months = ["2026-10", "2026-11"]
    by_fen = plans.top_members(conn, months, by_fen=True, limit=5)
    assert [(t.member_id, t.points, t.fen, t.tier_id, t.key_customer) for t in by_fen] == [
        (ann, 150, 900_000, None, True),
        (bob, 400, 200_000, "tree", False),
    ]
    by_points = plans.top_members(conn, months, by_fen=False, limit=1)
    assert [(t.member_id, t.name) for t in by_points] == [(bob, "Bob")]
