"""The monthly report against a hand-built ledger: every figure is written out here, worked out
by hand from the operations below, not recomputed with the report's code."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.cli import main
from bot.config import Config, StorageConfig, load_config
from bot.programme.mall import catalog_entries
from bot.programme.reports import (
    BadMonth,
    FutureMonth,
    last_complete_month,
    monthly_report,
    parse_month,
)
from storage import games, ledger, mall, tasks
from storage.audit import audit
from storage.family import create_household, join_household
from storage.games import Outcome, PlayRules
from storage.members import Profile, register_member
from storage.store import connect_sync, migrate
from tests.conftest import NOW, SAMPLE, PinnedCliRunner
from tests.postgres import ENGINES, migrated_connection

SH = ZoneInfo("Asia/Shanghai")
OCTOBER = date(2026, 10, 1)


def sh(*args: int) -> datetime:
    """A local instant in the programme's timezone."""
    return datetime(*args, tzinfo=SH)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    sample = load_config(SAMPLE)
    storage = StorageConfig(path=str(tmp_path / "bot.sqlite3"), synchronous="NORMAL")
    return sample.model_copy(update={"storage": storage})


def _earn(
    conn: sqlite3.Connection,
    member: int,
    points: int,
    at: datetime,
    *,
    kind: str = "purchase",
    expires: datetime | None = None,
    key: str,
    meta: dict[str, object] | None = None,
) -> None:
    ledger.earn(
        conn, member, points, kind=kind, key=key, actor="pos", expires_at=expires, now=at, meta=meta
    )


def build_ledger(conn: sqlite3.Connection, config: Config) -> dict[str, int]:
    """Four members and a month (October 2026, Shanghai) of everything a programme does.

    Alice's lots: L1 1000 never (September), L2 500 never, L3 50 campaign bonus (to 2027-03).
    Her bag (300) takes L3's 50 then 250 of L1; her ¥5 deduction (500) takes 500 of L1; her
    transfer of 100 to Bob takes 100 of L1: she ends with L1 150 + L2 500 = 650.
    Bob: a birthday gift of 200 ending 2026-10-19; a spin costs 50 of it and wins 100 (to
    2026-12-31); the sweep on the 20th expires the gift's other 150; with Alice's 100 (never)
    and 80 for a task (to 2026-12-31) he ends with 280. Carol joins at 23:59 on 31 October
    with 70; her 30 at 00:00 on 1 November belong to November. Dave bought 10 in September
    and did nothing in October.
    """
    joined = {"alice": sh(2026, 9, 1, 10), "dave": sh(2026, 9, 1, 11)}
    joined |= {"bob": sh(2026, 10, 5, 9), "carol": sh(2026, 10, 31, 23, 59)}
    ids = {
        name: register_member(conn, Profile(i, name), None, at)[0].id
        for i, (name, at) in enumerate(joined.items(), 1)
    }
    alice, bob, carol, dave = ids["alice"], ids["bob"], ids["carol"], ids["dave"]
    mall.sync_catalog(conn, catalog_entries(config), sh(2026, 9, 1))
    _earn(conn, alice, 1000, sh(2026, 9, 20, 12), key="p0")
    _earn(conn, dave, 10, sh(2026, 9, 2, 12), key="d0")
    # October.
    _earn(conn, alice, 500, sh(2026, 10, 3, 12), key="p1")
    _earn(
        conn,
        alice,
        50,
        sh(2026, 10, 3, 12),
        kind="campaign",
        expires=sh(2027, 4, 1),
        key="p1:campaign",
        meta={"purchase": "p1", "campaign": "green_winter"},
    )
    _earn(conn, bob, 200, sh(2026, 10, 5, 10), kind="birthday", expires=sh(2026, 10, 20), key="b1")
    bag = mall.create_offer(
        conn, alice, "BAG-01", 300, now=sh(2026, 10, 8, 12), ttl=timedelta(minutes=10)
    )
    mall.redeem(conn, bag.id, alice, now=sh(2026, 10, 8, 12), actor="member")
    bill = mall.create_offer(
        conn,
        alice,
        "BILL-OFF",
        500,
        now=sh(2026, 10, 9, 12),
        ttl=timedelta(minutes=10),
        deduction_yuan=Decimal(5),
    )
    mall.redeem(conn, bill.id, alice, now=sh(2026, 10, 9, 12), actor="member")
    spin_day = date(2026, 10, 10)
    offer = games.create_offer(
        conn,
        bob,
        "wheel",
        50,
        local_day=spin_day,
        now=sh(2026, 10, 10, 12),
        ttl=timedelta(minutes=10),
    )
    games.play(
        conn,
        offer.id,
        bob,
        game="wheel",
        local_day=spin_day,
        rules=PlayRules(cost=50, free_per_day=0, daily_limit=5, daily_budget=20_000),
        drawn=Outcome("p100", "points", 100),
        fallback=Outcome("thanks", "nothing"),
        campaign=None,
        prize_expires_at=sh(2027, 1, 1),
        voucher_expires_at=sh(2027, 1, 1),
        actor="member",
        now=sh(2026, 10, 10, 12),
    )
    home = create_household(conn, alice, actor="t", now=sh(2026, 10, 11))
    join_household(conn, home.id, bob, max_members=6, actor="t", now=sh(2026, 10, 11))
    ledger.transfer(
        conn, alice, bob, 100, key="t1", actor="m", reason=None, now=sh(2026, 10, 12),
        meta={"household": home.id},
    )  # fmt: skip
    ledger.expire_due(conn, sh(2026, 10, 20, 0, 5))
    tasks.advance(
        conn,
        bob,
        "eco_monthly",
        "2026-10",
        1,
        target=1,
        reward=tasks.Reward(80, "task", sh(2027, 1, 1)),
        actor="system",
        now=sh(2026, 10, 25, 12),
    )
    # Alice is made the second tier by staff in October, Dave in November.
    second = config.tiers.levels[1].id
    for member, at in ((alice, sh(2026, 10, 15)), (dave, sh(2026, 11, 2))):
        conn.execute(
            "INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, total, actor,"
            " changed_at) VALUES (?, NULL, ?, 'staff', 0, 'owner', ?)",
            (member, second, int(at.timestamp())),
        )
    # Either side of the month's end, local time.
    _earn(conn, carol, 70, sh(2026, 10, 31, 23, 59), key="c1")
    _earn(conn, carol, 30, sh(2026, 11, 1, 0, 0), key="c2")
    return ids


@pytest.fixture(params=ENGINES)
def conn(
    request: pytest.FixtureRequest, config: Config, tmp_path: Path
) -> Iterator[sqlite3.Connection]:
    """The hand-built ledger on each engine."""
    with migrated_connection(request.param, tmp_path) as connection:
        build_ledger(connection, config)
        yield connection


@pytest.fixture
def file_conn(config: Config) -> Iterator[sqlite3.Connection]:
    """The hand-built ledger in the configuration's SQLite file, which the CLI reads."""
    connection = connect_sync(Path(config.storage.path))
    migrate(connection)
    build_ledger(connection, config)
    connection.commit()
    yield connection
    connection.close()


def test_october_figures_match_the_hand_built_ledger(
    conn: sqlite3.Connection, config: Config
) -> None:
    report = monthly_report(conn, OCTOBER, config, now=NOW)
    assert report.complete
    issued = {line.source: line.issued for line in report.sources if line.issued}
    # Carol's 30 at 00:00 on 1 November are not October's.
    assert issued == {"purchase": 570, "campaign": 50, "birthday": 200, "game": 100, "task": 80}
    assert report.issued == 1000
    items = {(i.sku, i.kind): (i.redeemed, i.net_points) for i in report.items}
    assert items == {("BAG-01", "goods"): (1, 300), ("BILL-OFF", "deduction"): (1, 500)}
    assert report.redeemed == 800
    assert report.roll.game_cost == 50
    assert report.expired == 150
    assert report.breakage == Decimal("15.0")  # 150 of 800 + 50 + 150
    roll = report.roll
    assert (roll.opening, roll.closing_postings, roll.closing_lots) == (1010, 1010, 1010)
    assert roll.reconciles
    never = [b.points for b in report.outstanding if b.month is None and not b.overdue]
    dated = {b.month: b.points for b in report.outstanding if b.month is not None}
    assert never == [830]  # Alice 650, Bob's 100 from Alice, Carol 70, Dave 10
    assert dated == {date(2026, 12, 1): 180}  # Bob's prize and task, last valid day 31 Dec
    assert report.liability == Decimal("10.10")  # 1010 points at 100 a yuan
    assert (report.members_total, report.members_new, report.members_active) == (4, 2, 3)
    tiers = {t.tier: t.members for t in report.tiers}
    assert tiers[config.tiers.levels[0].id] == 3 and tiers[config.tiers.levels[1].id] == 1
    assert report.game.paid == 100 and report.game.budget == 20_000 * 31
    assert report.game.days_played == 1 and report.game.days_at_budget == 0
    assert [(c.id, c.points, c.yuan) for c in report.campaigns] == [
        ("green_winter", 50, Decimal("0.50"))
    ]
    assert [(t.id, t.operations, t.points, t.yuan) for t in report.tasks] == [
        ("eco_monthly", 1, 80, Decimal("0.80"))
    ]


def test_the_month_to_date_agrees_with_the_audit(conn: sqlite3.Connection, config: Config) -> None:
    november = monthly_report(conn, date(2026, 11, 1), config, now=NOW)
    assert not november.complete
    assert november.roll.opening == 1010
    assert november.issued == 30 and november.roll.reconciles
    assert audit(conn).summary["outstanding_points"] == november.closing == 1040
    tiers = {t.tier: t.members for t in november.tiers}
    assert tiers[config.tiers.levels[1].id] == 2  # Dave's change on 2 November counts now


def test_a_broken_ledger_does_not_reconcile(conn: sqlite3.Connection, config: Config) -> None:
    # A lot whose credit was never posted: what members hold no longer follows from the books.
    conn.execute(
        "INSERT INTO lots (member_id, operation_id, points, remainder) VALUES (1, 1, 5, 5)"
    )
    report = monthly_report(conn, OCTOBER, config, now=NOW)
    assert not report.roll.reconciles
    assert (report.roll.expected, report.roll.closing_lots) == (1010, 1015)


@pytest.mark.parametrize("text", ["2026-13", "2026/11", "11-2026", "nov", "2026-1"])
def test_a_malformed_month_is_refused(text: str) -> None:
    with pytest.raises(BadMonth):
        parse_month(text)


def test_a_future_month_is_refused(conn: sqlite3.Connection, config: Config) -> None:
    with pytest.raises(FutureMonth):
        monthly_report(conn, date(2026, 12, 1), config, now=NOW)


def test_the_default_month_is_the_last_complete_one_in_local_time(config: Config) -> None:
    # 1 December 00:30 in Shanghai is still 30 November in UTC.
    assert last_complete_month(sh(2026, 12, 1, 0, 30), config) == date(2026, 11, 1)
    assert last_complete_month(sh(2026, 11, 30, 23, 59), config) == OCTOBER
    assert last_complete_month(sh(2027, 1, 1, 0, 0), config) == date(2026, 12, 1)


# --- the CLI --------------------------------------------------------------------------------


def _config_file(tmp_path: Path, config: Config) -> Path:
    text = SAMPLE.read_text(encoding="utf-8")
    path = tmp_path / "config.toml"
    path.write_text(
        text.replace('path = "data/pointsbot.sqlite3"', f'path = "{config.storage.path}"'),
        encoding="utf-8",
    )
    return path


def test_the_cli_writes_every_table_and_both_charts(
    file_conn: sqlite3.Connection, config: Config, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = PinnedCliRunner(NOW).invoke(
        main, ["report", "--month", "2026-10", "--config", str(_config_file(tmp_path, config)),
               "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Points issued: 1000" in result.output
    assert "liability is ¥10.10" in result.output
    assert "The books balance" in result.output
    with (out / "2026-10-issued.csv").open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["source", "issued", "taken_back", "net"]
    assert ["purchase", "570", "0", "570"] in rows
    assert (out / "2026-10-redeemed.csv").read_bytes().startswith("\ufeff".encode())
    with (out / "2026-10-outstanding.csv").open(encoding="utf-8-sig", newline="") as f:
        assert list(csv.reader(f)) == [
            ["expires_in", "points", "yuan"],
            ["2026-12", "180", "1.80"],
            ["never", "830", "8.30"],
        ]
    for chart in ("flow", "outstanding"):
        assert (out / f"2026-10-{chart}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_cli_defaults_to_last_month_and_the_current_folder(
    file_conn: sqlite3.Connection, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    runner = PinnedCliRunner(sh(2026, 11, 3, 9))
    result = runner.invoke(main, ["report", "--config", str(_config_file(tmp_path, config))])
    assert result.exit_code == 0, result.output
    assert "Points report for 2026-10" in result.output
    assert (here / "2026-10-summary.csv").is_file()


@pytest.mark.parametrize(
    ("month", "message"), [("2026-12", "has not begun"), ("2026-13", "YYYY-MM"), ("x", "YYYY-MM")]
)
def test_the_cli_refuses_a_future_or_malformed_month(
    file_conn: sqlite3.Connection, config: Config, tmp_path: Path, month: str, message: str
) -> None:
    result = PinnedCliRunner(NOW).invoke(
        main, ["report", "--month", month, "--config", str(_config_file(tmp_path, config)),
               "--output", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_the_cli_exits_1_when_the_books_do_not_balance(
    file_conn: sqlite3.Connection, config: Config, tmp_path: Path
) -> None:
    file_conn.execute(
        "INSERT INTO lots (member_id, operation_id, points, remainder) VALUES (1, 1, 5, 5)"
    )
    file_conn.commit()
    result = PinnedCliRunner(NOW).invoke(
        main, ["report", "--month", "2026-10", "--config", str(_config_file(tmp_path, config)),
               "--output", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "do NOT balance" in result.output


# --- the owners' report records ----------------------------------------------------------------


def test_an_owners_report_is_claimed_once_and_retried_only_after_a_failure(
    conn: sqlite3.Connection,
) -> None:
    from storage.reports import MAX_REPORT_ATTEMPTS, claim_owner_report, mark_owner_report

    at = sh(2026, 11, 1, 9)
    assert claim_owner_report(conn, 1, "2026-10", at)
    # Sending (or caught sending by a crash): never claimed again, so never sent twice.
    assert not claim_owner_report(conn, 1, "2026-10", at)
    mark_owner_report(conn, 1, "2026-10", sent=False, now=at, error="chat not found")
    for _attempt in range(MAX_REPORT_ATTEMPTS - 1):
        assert claim_owner_report(conn, 1, "2026-10", at)
        mark_owner_report(conn, 1, "2026-10", sent=False, now=at, error="chat not found")
    assert not claim_owner_report(conn, 1, "2026-10", at)  # given up: /report still works
    assert claim_owner_report(conn, 2, "2026-10", at)
    mark_owner_report(conn, 2, "2026-10", sent=True, now=at)
    assert not claim_owner_report(conn, 2, "2026-10", at)
    with pytest.raises(sqlite3.IntegrityError, match="never sent again"):
        conn.execute("UPDATE owner_reports SET status = 'failed' WHERE telegram_id = 2")
