"""The tier's earn multiplier: booked in the purchase's own operation, in the tier the member
holds when the purchase is booked (the crossing purchase at the old tier, the next at the new),
with a campaign as [tiers] combine says, the same at the till and in the CSV import; receipts
booked before stay replays after an upgrade; the audit checks every tier bonus."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bench import ledger as ledger_bench
from bot.config import Campaign, Config, Localized, load_config
from bot.export import write_ledger_csv
from bot.imports import HEADER, ImportSummary, import_purchases
from bot.programme.purchases import (
    award_purchase,
    earn_rules,
    purchase_earning,
    purchase_requests,
    record_purchase,
    tier_earning,
)
from bot.programme.statements import purchase as purchase_line
from storage.audit import audit
from storage.members import Member
from storage.store import connect_sync
from tests.conftest import NOW, Sandbox, member_with

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def _combine(config: Config, combine: str) -> Config:
    return config.model_copy(update={"tiers": config.tiers.model_copy(update={"combine": combine})})


def _campaign(config: Config, multiplier: str, categories: list[str]) -> Campaign:
    today = NOW.astimezone(config.program.tz).date()
    return Campaign(
        id="today",
        name=Localized.model_validate({"zh-CN": "今日加倍", "en": "Bonus Today"}),
        starts=today - timedelta(days=1),
        ends=today + timedelta(days=1),
        multiplier=Decimal(multiplier),
        categories=categories,
    )


@pytest.fixture
def config() -> Config:
    return load_config(SAMPLE)


# --- the computation, by hand ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("combine", "campaign", "tier", "expected"),
    [
        # 100 yuan of eco goods: base 200 points. (total, campaign's lot, tier bonus, campaign
        # applied)
        ("highest", None, "tree", (240, 0, 40, False)),
        ("multiply", None, "tree", (240, 0, 40, False)),
        # The campaign's ×2 beats the tree's ×1.2: today's result exactly, no tier bonus.
        ("highest", "2", "tree", (400, 200, 0, True)),
        # Both: floor(200 × 2 × 1.2) = 480, of which the campaign's lot is 200 as without tiers.
        ("multiply", "2", "tree", (480, 200, 80, True)),
        # The forest's ×1.5 beats a ×1.2 campaign: the tier alone, no campaign lot.
        ("highest", "1.2", "forest", (300, 0, 100, False)),
        ("multiply", "1.2", "forest", (360, 40, 120, True)),
        # Equal multipliers: the campaign applies (the tier's only when strictly higher).
        ("highest", "1.2", "tree", (240, 40, 0, True)),
        # The lowest tier adds nothing.
        ("multiply", "2", "sprout", (400, 200, 0, True)),
    ],
)
def test_the_tier_multiplier_with_and_without_a_campaign(
    config: Config,
    combine: str,
    campaign: str | None,
    tier: str,
    expected: tuple[int, int, int, bool],
) -> None:
    config = _combine(config, combine)
    eco = config.earn.category("eco")
    held = config.tiers.tier(tier)
    assert eco is not None and held is not None
    running = None if campaign is None else _campaign(config, campaign, ["eco"])
    earning = tier_earning(Decimal("100"), eco, running, held, config)
    total, campaign_lot, bonus, applied = expected
    assert earning.base_points == 200
    assert (earning.points, earning.campaign_bonus, earning.tier_bonus) == (
        total,
        campaign_lot,
        bonus,
    )
    assert (earning.campaign is not None) == applied
    assert (earning.tier is not None) == (bonus > 0)


def test_rounding_down_at_each_step(config: Config) -> None:
    # 99.50 yuan of general goods: 99 points; the leaf's ×1.1 makes floor(108.9) = 108.
    general, leaf = config.earn.category("general"), config.tiers.tier("leaf")
    assert general is not None and leaf is not None
    alone = purchase_earning(Decimal("99.5"), general, None, config, leaf)
    assert (alone.base_points, alone.points, alone.tier_bonus) == (99, 108, 9)
    # Multiplied with a ×2 campaign: floor(99 × 2 × 1.1) = 217, the campaign's 198 kept.
    both = purchase_earning(
        Decimal("99.5"),
        general,
        _campaign(config, "2", ["general"]),
        _combine(config, "multiply"),
        leaf,
    )
    assert (both.points, both.campaign_bonus, both.tier_bonus) == (217, 99, 19)
    # Too small a purchase for the multiplier to add a point: booked exactly as without tiers.
    small = purchase_earning(Decimal("9"), general, None, config, leaf)
    assert (small.points, small.tier, small.tier_bonus) == (9, None, 0)


def test_the_bonus_is_part_of_the_purchase_operation_and_its_facts(config: Config) -> None:
    config = _combine(config.model_copy(update={"campaigns": []}), "multiply")
    config = config.model_copy(update={"campaigns": [_campaign(config, "2", ["eco"])]})
    tree = config.tiers.tier("tree")
    award = award_purchase(Decimal("100"), "eco", NOW, NOW, config, tree)
    own, campaign = purchase_requests(7, award, receipt="R-1", actor="till", now=NOW)
    assert (own.kind, own.points, campaign.kind, campaign.points) == (
        "purchase",
        280,
        "campaign",
        200,
    )
    assert own.meta is not None
    assert {k: own.meta[k] for k in ("tier", "tier_multiplier", "tier_bonus")} == {
        "tier": "tree",
        "tier_multiplier": "1.2",
        "tier_bonus": 80,
    }
    # Without a bonus, the facts (and so the fingerprint) are what they were before tiers.
    plain = award_purchase(Decimal("100"), "general", NOW, NOW, config, config.tiers.tier("sprout"))
    [request] = purchase_requests(7, plain, receipt="R-2", actor="till", now=NOW)
    assert request.meta is not None and "tier" not in request.meta and request.points == 100


# --- at the till and in the import -------------------------------------------------------------


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, the ledger and every tier bonus in it must still add up."""
    yield
    report = await sandbox.services.store.read(lambda conn: _audit(conn, sandbox.config))
    assert report.ok, str(report)


def _audit(conn: sqlite3.Connection, config: Config) -> Any:
    return audit(
        conn,
        integrity="quick",
        tier_levels=[t.id for t in config.tiers.levels],
        tz=config.program.tz,
    )


def _purchases(conn: sqlite3.Connection, member_id: int) -> list[tuple[int, str | None]]:
    """A member's purchase operations: points and the tier of their bonus, in order."""
    return [
        (int(points), meta and json.loads(meta).get("tier"))
        for points, meta in conn.execute(
            "SELECT points, meta FROM operations WHERE kind = 'purchase' AND member_id = ?"
            " ORDER BY id",
            (member_id,),
        )
    ]


async def buy(
    sandbox: Sandbox, member: Member, amount: str, receipt: str, category: str = "general"
) -> Any:
    return await record_purchase(
        sandbox.services,
        member.member_code,
        amount,
        category,
        receipt,
        purchased_at=NOW - timedelta(hours=1),
        actor="till:test",
        now=NOW,
    )


async def test_a_till_purchase_crossing_a_threshold_earns_in_the_old_tier_the_next_in_the_new(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8401, 0)
    seen = sandbox.emu.event_count(8401)
    admin = sandbox.admin()
    await admin.send(f"/purchase {member.member_code} 999 general T-1")  # below: 绿芽
    await admin.send(f"/purchase {member.member_code} 1 general T-2")  # at 1,000: crosses
    await admin.send(f"/purchase {member.member_code} 100 general T-3")  # after: 绿叶 ×1.1
    assert "获得 110 积分" in (admin.last_text or "")
    assert "绿叶会员 ×1.1" in (admin.last_text or "")
    assert await sandbox.services.store.read(lambda c: _purchases(c, member.id)) == [
        (999, None),
        (1, None),
        (110, "leaf"),
    ]
    await sandbox.services.sender.drain()
    told = [e.text or "" for e in sandbox.emu.events(8401, after=seen)]
    assert told[-1] == (
        "🧾 消费积分到账：您消费 100.00 元（日常商品），含绿叶会员 1.1 倍加成，"
        "获得 110 积分。当前可用积分：1210。"  # 999 + 1 + 100 (entry reward) + 110
    )
    # The qualifying total counts the purchase's own points' yuan, never the bonus.
    found = await sandbox.services.tiers.qualifying_one(member.id, ("2026-11",))
    assert found.fen == 110_000
    # The statement line names the bonus.
    statement = await sandbox.services.ledger.history(member.id)
    newest = statement.lines[0]
    assert (newest.tier, newest.tier_bonus) == ("leaf", 10)
    entry = purchase_line(newest, sandbox.config, "zh-CN")
    assert entry.details[-1].key == "statement.tier_bonus"
    assert dict(entry.details[-1].params) == {"tier": "绿叶", "points": "10"}


@pytest.fixture
def configure(request: pytest.FixtureRequest) -> list[Callable[[Config], Config]]:
    """The sample programme, or what a test's parameter makes of it."""
    return list(getattr(request, "param", []))


def _eco_campaign_and(combine: str) -> Callable[[Config], Config]:
    def change(config: Config) -> Config:
        config = _combine(config, combine)
        return config.model_copy(update={"campaigns": [_campaign(config, "2", ["eco"])]})

    return change


@pytest.mark.parametrize(
    ("configure", "combine"),
    [([_eco_campaign_and("highest")], "highest"), ([_eco_campaign_and("multiply")], "multiply")],
    indirect=["configure"],
)
async def test_the_till_with_a_campaign_under_each_combine_mode(
    sandbox: Sandbox, combine: str
) -> None:
    member = await member_with(sandbox, 8402, 0)
    await buy(sandbox, member, "1000", "C-1")  # 1,000 yuan of general goods: into 绿叶
    eco = await buy(sandbox, member, "100", "C-2", "eco")  # base 200, campaign ×2, 绿叶 ×1.1
    general = await buy(sandbox, member, "100", "C-3")  # no campaign: ×1.1 alone
    if combine == "highest":
        # The campaign's ×2 beats ×1.1: 400 as without tiers; the purchase keeps its 200.
        assert (eco.points, eco.award.tier_bonus) == (400, 0)
        expected = [(1000, None), (200, None), (110, "leaf")]
    else:
        # floor(200 × 2 × 1.1) = 440: the campaign's lot 200, the purchase 200 + 40.
        assert (eco.points, eco.award.tier_bonus) == (440, 40)
        expected = [(1000, None), (240, "leaf"), (110, "leaf")]
    assert general.points == 110
    assert await sandbox.services.store.read(lambda c: _purchases(c, member.id)) == expected
    campaign_lots = await sandbox.services.store.read(
        lambda c: c.execute(
            "SELECT points FROM operations WHERE kind = 'campaign' AND member_id = ?", (member.id,)
        ).fetchall()
    )
    assert [row[0] for row in campaign_lots] == [200]


def run_import(sandbox: Sandbox, rows: list[str], batch_size: int) -> ImportSummary:
    conn = connect_sync(sandbox.config.storage.path)
    try:
        return import_purchases(
            conn,
            [",".join(HEADER) + "\n", *(row + "\n" for row in rows)],
            sandbox.config,
            actor="import:pos.csv",
            now=NOW,
            batch_size=batch_size,
        )
    finally:
        conn.close()


@pytest.mark.parametrize("batch_size", [2, 100])
async def test_an_import_upgrading_mid_file_earns_as_the_till_does(
    sandbox: Sandbox, batch_size: int
) -> None:
    till, imported = await member_with(sandbox, 8403, 0), await member_with(sandbox, 8404, 0)
    amounts = ["600", "399", "1", "100", "4000", "100"]  # 绿芽, 绿叶 at 1,000, 绿树 at 5,100
    for n, amount in enumerate(amounts):
        await buy(sandbox, till, amount, f"TILL-{n}")
    bought = (NOW - timedelta(hours=1)).isoformat()
    rows = [f"IMP-{n},{imported.member_code},{a},general,{bought}" for n, a in enumerate(amounts)]
    summary = run_import(sandbox, rows, batch_size)
    assert (summary.imported, summary.replayed, summary.skipped_total) == (6, 0, 0)
    at_till = await sandbox.services.store.read(lambda c: _purchases(c, till.id))
    assert at_till == [
        (600, None),
        (399, None),
        (1, None),  # crosses 1,000: earned in 绿芽
        (110, "leaf"),
        (4400, "leaf"),  # crosses 5,000 at 绿叶's ×1.1
        (120, "tree"),
    ]
    assert await sandbox.services.store.read(lambda c: _purchases(c, imported.id)) == at_till
    # The writer's tiers and the purchase hook's moves agree: the same held tier, and the audit
    # (run after the test) finds every bonus in the tier the history says was held.
    assert await sandbox.services.tiers.held_one(imported.id) == "tree"
    changes = await sandbox.services.tiers.tier_changes(imported.id)
    assert [(c.from_tier, c.to_tier) for c in changes] == [(None, "leaf"), ("leaf", "tree")]


async def test_a_replayed_csv_after_an_upgrade_is_replayed_not_a_conflict(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8405, 0)
    bought = (NOW - timedelta(hours=1)).isoformat()
    rows = [
        f"RP-1,{member.member_code},600,general,{bought}",
        f"RP-2,{member.member_code},600,general,{bought}",  # into 绿叶
        f"RP-3,{member.member_code},100,general,{bought}",  # 110 in 绿叶
    ]
    first = run_import(sandbox, rows, 100)
    assert (first.imported, first.points) == (3, 600 + 600 + 110)

    def count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM operations").fetchone()[0])

    before = await sandbox.services.store.read(count)
    # In 绿叶 now, RP-1 would earn 660: still the same purchase, so a replay.
    again = run_import(sandbox, rows, 100)
    assert (again.imported, again.replayed, again.skipped_total) == (0, 3, 0)
    assert await sandbox.services.store.read(count) == before
    # The same at the till: the original points reported.
    replayed = await buy(sandbox, member, "600", "RP-1")
    assert (replayed.status, replayed.points) == ("replayed", 600)
    # Another purchase under a booked receipt is still a conflict.
    changed = run_import(sandbox, [f"RP-1,{member.member_code},601,general,{bought}"], 100)
    assert dict(changed.skipped) == {"conflict": 1}
    assert (await buy(sandbox, member, "601", "RP-1")).status == "conflict"
    assert await sandbox.services.store.read(count) == before


async def test_the_ledger_export_marks_tier_bonuses(sandbox: Sandbox, tmp_path: Path) -> None:
    member = await member_with(sandbox, 8406, 0)
    await buy(sandbox, member, "1000", "X-1")
    await buy(sandbox, member, "100", "X-2")
    out = tmp_path / "ledger.csv"

    def export(conn: sqlite3.Connection) -> None:
        with out.open("w", encoding="utf-8", newline="") as fh:
            write_ledger_csv(conn, fh, sandbox.config, member.id)

    await sandbox.services.store.read(export)
    with out.open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["kind"] == "purchase"]
    assert [(r["reference"], r["tier"], r["tier_bonus_points"]) for r in rows] == [
        ("X-1", "", ""),
        ("X-2", "leaf", "10"),
    ]


# --- the audit ---------------------------------------------------------------------------------


async def _forge(sandbox: Sandbox, *statements: str) -> set[str]:
    """Tamper with the bot's database (append-only triggers out of the way) and audit it."""

    def tamper(conn: sqlite3.Connection) -> set[str]:
        conn.execute("DROP TRIGGER operations_append_only_update")
        for statement in statements:
            conn.execute(statement)
        found = {v.check for v in _audit(conn, sandbox.config).violations}
        conn.execute("ROLLBACK")
        return found

    conn = connect_sync(sandbox.config.storage.path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        return tamper(conn)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("forgery", "caught"),
    [
        # Booked as if the member held 森林 (they held 绿叶).
        (
            "UPDATE operations SET meta = json_set(meta, '$.tier', 'forest',"
            " '$.tier_multiplier', '1.5', '$.tier_bonus', 50), points = 150"
            " WHERE idempotency_key = 'purchase:F-2'",
            {"tier_bonus_tier", "triggers"},
        ),
        # The right tier, a bonus its multiplier does not give.
        (
            "UPDATE operations SET meta = json_set(meta, '$.tier_bonus', 11), points = 111"
            " WHERE idempotency_key = 'purchase:F-2'",
            {"tier_bonus_arithmetic", "triggers"},
        ),
        # A bonus on the purchase that crossed the threshold (it earned in 绿芽).
        (
            "UPDATE operations SET meta = json_set(meta, '$.tier', 'leaf',"
            " '$.tier_multiplier', '1.1', '$.tier_bonus', 0)"
            " WHERE idempotency_key = 'purchase:F-1'",
            {"tier_bonus_tier", "tier_bonus_arithmetic", "triggers"},
        ),
        # An entry reward for a tier the member never reached.
        (
            "UPDATE operations SET idempotency_key = replace(idempotency_key, ':leaf:', ':tree:')"
            " WHERE kind = 'tier'",
            {"tier_entry_reward", "triggers"},
        ),
    ],
)
async def test_the_audit_catches_a_forged_tier_bonus(
    sandbox: Sandbox, forgery: str, caught: set[str]
) -> None:
    member = await member_with(sandbox, 8407, 0)
    await buy(sandbox, member, "1000", "F-1")  # into 绿叶, earned in 绿芽
    await buy(sandbox, member, "100", "F-2")  # 110 in 绿叶
    assert await _forge(sandbox) == {"triggers"}  # the untouched ledger: only the trigger gone
    assert await _forge(sandbox, forgery) == caught


def test_rules_work_their_example_for_each_tier(config: Config) -> None:
    [general, *_] = earn_rules(NOW.date(), config)
    # 99.50 yuan: 99 points; 绿叶 floor(108.9), 绿树 floor(118.8), 森林 floor(148.5).
    assert [(e.tier and e.tier.id, e.points) for e in general.in_tiers] == [
        ("leaf", 108),
        ("tree", 118),
        ("forest", 148),
    ]


def test_the_import_benchmark_compares_with_and_without_tiers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger_bench.main(["--quick"])
    out = capsys.readouterr().out
    found = re.search(
        r"with the sample tiers \(sprout x1/leaf x1.1/tree x1.2/forest x1.5\) active,"
        r" over a rolling 12 months: [\d.]+ s,"
        r" ([\d,]+) purchases with a tier bonus, ([\d,]+) upgrades; without tiers [\d.]+ s;"
        r" ratio ([\d.]+) \(target <= 1.2\)",
        out,
    )
    assert found is not None, out
    assert int(found[1].replace(",", "")) > 0 and int(found[2].replace(",", "")) > 0
    assert float(found[3]) > 0
