"""Tier qualification: a purchase that crosses a threshold moves the member up at once, in its
own transaction, paying each tier reached on the way its entry reward once per year."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FixedClock
from bot.config import Config, load_config
from bot.programme import tiers
from bot.programme.purchases import record_purchase
from storage.audit import audit
from storage.members import Member
from storage.tiers import Qualifying
from tests.conftest import NOW, Sandbox, member_with

SHANGHAI = ZoneInfo("Asia/Shanghai")
SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


@pytest.fixture
def config() -> Config:
    return load_config(SAMPLE)


def test_windows_and_thresholds(config: Config) -> None:
    assert tiers.qualification_months(date(2026, 3, 9), config) == ("2026-01", "2026-02", "2026-03")
    rolling = config.model_copy(
        update={"tiers": config.tiers.model_copy(update={"window": "rolling_12_months"})}
    )
    months = tiers.qualification_months(date(2026, 3, 9), rolling)
    assert months[0] == "2025-04" and months[-1] == "2026-03" and len(months) == 12
    assert [tiers.tier_for_total(n, config).id for n in (0, 999, 1000, 4999, 5000, 20000)] == [
        "sprout",
        "sprout",
        "leaf",
        "leaf",
        "tree",
        "forest",
    ]
    # Whole yuan: 999.99 yuan spent is 999 yuan towards a tier.
    assert tiers.measure(Qualifying(points=5, fen=99_999), config) == 999
    assert tiers.next_review(date(2026, 12, 2)) == date(2027, 1, 1)


async def buy(sandbox: Sandbox, member: Member, amount: str, receipt: str) -> None:
    sandbox.services.clock = FixedClock(NOW)
    result = await record_purchase(
        sandbox.services,
        member.member_code,
        amount,
        "general",
        receipt,
        purchased_at=NOW,
        actor="till:test",
    )
    assert result.status == "recorded"


async def test_one_purchase_skipping_two_tiers_pays_both_entry_rewards_once(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8301, 0)
    await buy(sandbox, member, "999", "T1")
    assert await sandbox.services.tiers.held_one(member.id) is None  # still the lowest
    await buy(sandbox, member, "4100", "T2")  # 5,099 yuan this year: past leaf, into tree
    assert await sandbox.services.tiers.held_one(member.id) == "tree"
    [change] = await sandbox.services.tiers.tier_changes(member.id)
    assert (change.from_tier, change.to_tier, change.reason, change.total) == (
        None,
        "tree",
        "upgrade",
        5099,
    )
    balance = await sandbox.services.ledger.balance(member.id)
    assert balance.available == 999 + 4100 + 100 + 300  # leaf's and tree's entry rewards

    def rewards(conn: object) -> list[tuple[str, int]]:
        return [
            (str(r[0]), int(r[1]))
            for r in conn.execute(  # type: ignore[attr-defined]
                "SELECT idempotency_key, points FROM operations WHERE kind = 'tier' ORDER BY 1"
            )
        ]

    year = str(NOW.astimezone(SHANGHAI).year)
    assert await sandbox.services.store.read(rewards) == [
        (f"tier_entry:leaf:{member.id}:{year}", 100),
        (f"tier_entry:tree:{member.id}:{year}", 300),
    ]
    # Another purchase in the same tier pays nothing more.
    await buy(sandbox, member, "10", "T3")
    assert len(await sandbox.services.store.read(rewards)) == 2
    report = await sandbox.services.store.read(audit)
    assert report.ok, str(report)


async def test_standing_says_what_the_next_tier_needs(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8302, 0)
    await buy(sandbox, member, "4680", "S1")
    sandbox.services.clock = FixedClock(NOW)
    found = await tiers.standing(sandbox.services, member.id)
    assert found is not None
    assert (found.tier.id, found.total, found.next_tier and found.next_tier.id, found.to_next) == (
        "leaf",
        4680,
        "tree",
        320,
    )
    assert found.to_keep == 0 and found.review_on == date(NOW.astimezone(SHANGHAI).year + 1, 1, 1)


async def test_an_entry_reward_at_local_new_year_passes_the_audit_with_or_without_tz(
    sandbox: Sandbox,
) -> None:
    """`pointsbot backup` verifies its copy without the configuration: a reward booked at
    00:30 on 1 January in Shanghai (16:30 UTC the day before) must not fail it."""
    member = await member_with(sandbox, 8303, 0)
    new_year = datetime(2027, 1, 1, 0, 30, tzinfo=SHANGHAI)
    sandbox.services.clock = FixedClock(new_year)
    result = await record_purchase(
        sandbox.services,
        member.member_code,
        "1200",
        "general",
        "NY1",
        purchased_at=new_year,
        actor="till:test",
    )
    assert result.status == "recorded"
    assert await sandbox.services.tiers.held_one(member.id) == "leaf"
    store = sandbox.services.store
    assert (await store.read(audit)).ok
    assert (await store.read(lambda conn: audit(conn, tz=SHANGHAI))).ok
    # Read in the wrong timezone the change happened in 2026, the reward is keyed 2027.
    wrong = await store.read(lambda conn: audit(conn, tz=UTC))
    assert {v.check for v in wrong.violations} == {"tier_entry_reward"}
