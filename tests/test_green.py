"""A member's green contribution against hand-computed figures: what counts (eco and refill
purchases, their campaign bonus), what does not (everyday goods, adjustments), and local
month and year boundaries with the clock at 23:30 in Shanghai on a month's last day."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import Config, load_config
from bot.programme.calendar import local_today
from bot.programme.green import (
    GreenContribution,
    contribution_of,
    decode_chart,
    encode_chart,
    monthly_series,
    report_due,
    report_pushes,
    report_span,
    shown_impact,
)
from bot.programme.purchases import award_purchase, purchase_requests
from bot.programme.tasks import advance_task
from storage import ledger
from storage.audit import audit
from storage.green import green_purchases_between, member_green_purchases
from storage.members import Profile, register_member
from storage.pushes import MARKETING, set_marketing
from tests.conftest import SAMPLE
from tests.postgres import ENGINES, migrated_connection

SHANGHAI = timedelta(hours=8)
GREEN = ["eco", "refill"]


def shanghai(*parts: int) -> datetime:
    """A Shanghai wall-clock time as an aware UTC instant."""
    return datetime(*parts, tzinfo=UTC) - SHANGHAI  # type: ignore[misc]


# 23:30 in Shanghai on the last day of November and of December 2026 (15:30 UTC, same day).
END_OF_NOVEMBER = shanghai(2026, 11, 30, 23, 30)
END_OF_YEAR = shanghai(2026, 12, 31, 23, 30)


@pytest.fixture
def config() -> Config:
    return load_config(SAMPLE)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine; the audit passes after every test."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection
        assert audit(connection).ok, str(audit(connection))


def new_member(conn: sqlite3.Connection, telegram_id: int) -> int:
    member, _ = register_member(
        conn, Profile(telegram_id, f"m{telegram_id}"), None, shanghai(2025, 1, 1, 9, 0)
    )
    return member.id


def buy(
    conn: sqlite3.Connection,
    config: Config,
    member_id: int,
    amount: str,
    category: str,
    at: datetime,
    receipt: str,
    now: datetime,
) -> int:
    """Book a purchase exactly as the till does; return the points it earned (bonus included)."""
    award = award_purchase(Decimal(amount), category, at, now, config)
    requests = purchase_requests(member_id, award, receipt=receipt, actor="till", now=now)
    [outcome] = ledger.earn_groups(conn, [requests])
    assert not isinstance(outcome, Exception)
    return sum(result.points for result in outcome)


def contribution(
    conn: sqlite3.Connection, config: Config, member_id: int, now: datetime
) -> GreenContribution:
    rows = member_green_purchases(conn, member_id, GREEN)
    return contribution_of(rows, local_today(now, config), config)


def test_month_boundaries_are_local_days(conn: sqlite3.Connection, config: Config) -> None:
    now = END_OF_NOVEMBER
    ann = new_member(conn, 1)
    # 23:10 on 30 November: this month (eco earns 2 points a yuan).
    assert buy(conn, config, ann, "100.00", "eco", shanghai(2026, 11, 30, 23, 10), "r1", now) == 200
    # 00:10 on 1 November in Shanghai is still 31 October in UTC: this month all the same.
    # Refill earns 1.5 points per full yuan: 50 × 1.5 = 75; the impact counts the fen too.
    assert buy(conn, config, ann, "50.50", "refill", shanghai(2026, 11, 1, 0, 10), "r2", now) == 75
    # 23:50 on 31 October: last month.
    assert buy(conn, config, ann, "40.00", "eco", shanghai(2026, 10, 31, 23, 50), "r3", now) == 80
    # 23:50 on 31 December 2025: last year.
    assert buy(conn, config, ann, "20.00", "eco", shanghai(2025, 12, 31, 23, 50), "r4", now) == 40
    # Not counted: everyday goods, points adjusted by hand, the green-share bonus.
    buy(conn, config, ann, "300.00", "general", shanghai(2026, 11, 20, 12, 0), "r5", now)
    ledger.adjust(conn, ann, 500, key="adj", actor="staff", reason="goodwill", now=now)
    green_share = config.task("green_share")
    assert green_share is not None
    advance_task(conn, green_share, ann, 1, config, now, actor="staff")
    # A replayed receipt counts once.
    buy(conn, config, ann, "100.00", "eco", shanghai(2026, 11, 30, 23, 10), "r1", now)

    seen = contribution(conn, config, ann, now)
    assert seen.month == date(2026, 11, 1)
    # This month: 100 + 50.50 yuan; 200 + 75 points; 100 × 0.05 + 50.50 × 0.08 = 9.04 kg.
    assert seen.this_month.spend == Decimal("150.50")
    assert seen.this_month.points == 275
    assert seen.this_month.impact_kg == Decimal("9.04")
    assert shown_impact(seen.this_month.impact_kg) == Decimal("9.0")
    assert seen.this_month.purchases == 2
    # This year adds October's 40 yuan (80 points, 2 kg).
    assert (seen.this_year.spend, seen.this_year.points) == (Decimal("190.50"), 355)
    assert seen.this_year.impact_kg == Decimal("11.04")
    # Overall adds December 2025's 20 yuan (40 points, 1 kg).
    assert (seen.overall.spend, seen.overall.points) == (Decimal("210.50"), 395)
    assert seen.overall.impact_kg == Decimal("12.04")
    assert seen.overall.bonus_points == 0
    assert [(c.id, f.spend, f.points) for c, f in seen.by_category] == [
        ("eco", Decimal("160.00"), 320),
        ("refill", Decimal("50.50"), 75),
    ]
    assert [(c.id, kg) for c, kg in seen.factors] == [
        ("eco", Decimal("0.05")),
        ("refill", Decimal("0.08")),
    ]


def test_campaign_bonus_counts_and_the_year_ends_at_local_midnight(
    conn: sqlite3.Connection, config: Config
) -> None:
    now = END_OF_YEAR
    bo = new_member(conn, 2)
    # The sample's green_winter campaign doubles eco and refill points all December.
    # 30 yuan eco: 60 points, doubled to 120 (60 of them a separate campaign operation).
    assert buy(conn, config, bo, "30.00", "eco", shanghai(2026, 12, 31, 23, 20), "c1", now) == 120
    # 00:05 on 1 December (30 November in UTC): December, in the campaign: 15 → 30.
    assert buy(conn, config, bo, "10.00", "refill", shanghai(2026, 12, 1, 0, 5), "c2", now) == 30
    # 23:55 on 30 November: before the campaign, November.
    assert buy(conn, config, bo, "10.00", "eco", shanghai(2026, 11, 30, 23, 55), "c3", now) == 20
    # 23:59 on 31 December 2025 (15:59 UTC): last year.
    assert buy(conn, config, bo, "5.00", "eco", shanghai(2025, 12, 31, 23, 59), "c4", now) == 10

    seen = contribution(conn, config, bo, now)
    assert seen.month == date(2026, 12, 1)
    # December: 40 yuan, 120 + 30 points of which 75 the campaign's, 1.5 + 0.8 kg.
    assert (seen.this_month.spend, seen.this_month.points) == (Decimal("40.00"), 150)
    assert seen.this_month.bonus_points == 75
    assert seen.this_month.impact_kg == Decimal("2.30")
    assert (seen.this_year.spend, seen.this_year.points) == (Decimal("50.00"), 170)
    assert seen.this_year.impact_kg == Decimal("2.80")
    # Overall: 3.05 kg, shown half up as 3.1.
    assert (seen.overall.spend, seen.overall.points) == (Decimal("55.00"), 180)
    assert shown_impact(seen.overall.impact_kg) == Decimal("3.1")

    # An hour later it is 2027 in Shanghai: the month and the year start from nothing.
    new_year = contribution(conn, config, bo, END_OF_YEAR + timedelta(hours=1))
    assert new_year.month == date(2027, 1, 1)
    assert not new_year.this_month.any and not new_year.this_year.any
    assert new_year.overall == seen.overall


def test_a_category_set_to_zero_stops_counting(conn: sqlite3.Connection, config: Config) -> None:
    now = END_OF_NOVEMBER
    cy = new_member(conn, 3)
    buy(conn, config, cy, "100.00", "eco", shanghai(2026, 11, 2, 10, 0), "z1", now)
    buy(conn, config, cy, "100.00", "refill", shanghai(2026, 11, 2, 10, 0), "z2", now)
    categories = [
        c.model_copy(update={"impact_kg_per_yuan": Decimal(0)}) if c.id == "refill" else c
        for c in config.earn.categories
    ]
    earn = config.earn.model_copy(update={"categories": categories})
    changed = config.model_copy(update={"earn": earn})
    seen = contribution(conn, changed, cy, now)
    assert seen.overall.spend == Decimal("100.00")
    assert [c.id for c, _ in seen.factors] == ["eco"]


def test_the_chart_series_is_six_months_ending_with_the_month(
    conn: sqlite3.Connection, config: Config
) -> None:
    now = END_OF_NOVEMBER
    di = new_member(conn, 4)
    buy(conn, config, di, "12.00", "eco", shanghai(2026, 6, 1, 0, 30), "s1", now)
    buy(conn, config, di, "8.00", "refill", shanghai(2026, 11, 30, 23, 0), "s2", now)
    buy(conn, config, di, "99.00", "eco", shanghai(2026, 5, 31, 23, 30), "s3", now)  # too old
    rows = member_green_purchases(conn, di, GREEN)
    series = monthly_series(rows, date(2026, 11, 1), config)
    assert [m for m, _ in series] == [date(2026, month, 1) for month in range(6, 12)]
    assert [f.spend for _, f in series] == [Decimal("12.00"), 0, 0, 0, 0, Decimal("8.00")]


def test_the_monthly_report_plans_one_push_per_member_with_eco_spend(
    conn: sqlite3.Connection, config: Config
) -> None:
    now = shanghai(2026, 12, 1, 9, 0)
    eve, fay, gus, hal = (new_member(conn, t) for t in (5, 6, 7, 8))
    buy(conn, config, eve, "20.00", "eco", shanghai(2026, 11, 30, 23, 59), "m1", now)
    buy(conn, config, eve, "10.00", "refill", shanghai(2026, 11, 1, 0, 1), "m2", now)
    buy(conn, config, fay, "20.00", "eco", shanghai(2026, 11, 15, 12, 0), "m3", now)
    set_marketing(conn, 6, False)  # fay turned promotions off
    buy(conn, config, gus, "80.00", "general", shanghai(2026, 11, 15, 12, 0), "m4", now)
    buy(conn, config, hal, "20.00", "eco", shanghai(2026, 10, 31, 23, 59), "m5", now)  # October
    buy(conn, config, hal, "20.00", "eco", shanghai(2026, 12, 1, 0, 1), "m6", now)  # December
    month = report_due(local_today(now, config), None, config)
    assert month == date(2026, 11, 1)
    first, last = report_span(month)
    assert (first, last) == (date(2026, 11, 1), date(2026, 11, 30))
    rows = green_purchases_between(conn, first, last, GREEN)
    [push] = report_pushes(rows, month, config)
    assert push.member_id == eve and push.category == MARKETING
    assert push.dedupe_key == f"green:{eve}:2026-11"
    # 30 yuan; 40 + 15 points; 20 × 0.05 + 10 × 0.08 = 1.8 kg.
    assert push.params == {
        "month": {"zh-CN": "2026年11月", "en": "November 2026"},
        "spend": "30.00",
        "points": 55,
        "impact": "1.8",
    }
    assert push.buttons == [[("green.chart_button", "green:chart:2026-11")]]


# SQLite only: it reads SQLite's statement trace and EXPLAIN QUERY PLAN.
@pytest.mark.parametrize("conn", ["sqlite"], indirect=True)
def test_the_member_query_walks_the_members_lots(conn: sqlite3.Connection) -> None:
    """One member's figures read that member's rows through indexes, not the whole ledger."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    member_green_purchases(conn, 1, GREEN)
    conn.set_trace_callback(None)
    plan = " | ".join(
        row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statements[-1]}").fetchall()
    )
    assert "lots_by_member" in plan
    assert "SCAN p" not in plan and "SCAN operations" not in plan


@pytest.mark.parametrize(
    ("kg", "shown"),
    [
        ("0", "0.0"),
        ("0.04", "0.0"),
        ("0.05", "0.1"),
        ("12.04", "12.0"),
        ("3.05", "3.1"),
        ("99.94", "99.9"),
        ("100.4", "100"),
        ("1234.5", "1235"),
    ],
)
def test_impact_is_rounded_once_when_shown(kg: str, shown: str) -> None:
    assert format(shown_impact(Decimal(kg)), "f") == shown


@pytest.mark.parametrize(
    ("today", "last_run", "due"),
    [
        (date(2026, 12, 1), None, date(2026, 11, 1)),
        (date(2027, 1, 1), date(2026, 12, 1), date(2026, 12, 1)),  # across the year
        (date(2026, 12, 1), date(2026, 12, 1), None),  # done already this month
        (date(2026, 12, 5), date(2026, 11, 1), date(2026, 11, 1)),  # missed days catch up
        (date(2026, 12, 8), None, date(2026, 11, 1)),  # 7 days late: still caught up
        (date(2026, 12, 9), None, None),  # later than catch_up_days: skipped
    ],
)
def test_the_report_is_due_once_a_month(
    config: Config, today: date, last_run: date | None, due: date | None
) -> None:
    assert report_due(today, last_run, config) == due


@pytest.mark.parametrize(
    "data", ["green:chart:2026-13", "green:chart:26-11", "green:chart:", "green:x:2026-11", "x"]
)
def test_a_forged_chart_button_is_not_read(data: str) -> None:
    assert decode_chart(data) is None


def test_a_chart_button_round_trips() -> None:
    assert decode_chart(encode_chart(date(2026, 11, 1))) == date(2026, 11, 1)
