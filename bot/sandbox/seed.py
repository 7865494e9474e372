"""The demo's sample data: a member who already holds points in lots that expire at different
times, earned and spent through the real ledger and rules."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.programme.context import Programme
from bot.programme.expiry import expires_at
from bot.programme.purchases import record_purchase
from storage.members import Profile

DEMO_USER_ID = 100000099
DEMO_FIRST_NAME = "小绿"
DEMO_LANGUAGE = "zh-hans"
DEMO_ACTOR = "demo-seed"

# (days ago, amount in yuan, category, receipt): old purchases expire soon, recent ones late.
DEMO_PURCHASES: tuple[tuple[int, str, str, str], ...] = (
    (350, "128.00", "general", "DEMO-0001"),
    (300, "66.50", "eco", "DEMO-0002"),
    (120, "45.00", "refill", "DEMO-0003"),
    (10, "199.00", "eco", "DEMO-0004"),
)


async def seed_demo(programme: Programme, now: datetime) -> int:
    """Register the demo member with purchases, a birthday gift and a redemption; return their
    member id (running it twice adds nothing: every operation has a fixed key)."""
    member, _ = await programme.members.register(
        Profile(DEMO_USER_ID, DEMO_FIRST_NAME, language_code=DEMO_LANGUAGE),
        now=now - timedelta(days=400),
    )
    for days_ago, amount, category, receipt in DEMO_PURCHASES:
        # Booked when it was bought, so the statement reads like a real member's; the way the
        # till books one (the CSV import builds the same request).
        bought = now - timedelta(days=days_ago)
        await record_purchase(
            programme,
            member.member_code,
            amount,
            category,
            receipt,
            purchased_at=bought,
            actor=DEMO_ACTOR,
            now=bought,
            tell_member=False,  # history, not news: no receipt pushed at the demo's start
        )
    config, ledger = programme.config, programme.ledger
    await ledger.spend(
        member.id,
        50,
        key=f"redeem:{member.id}:demo",
        actor=DEMO_ACTOR,
        reason="环保购物袋",
        reference="DEMO-R1",
        now=now - timedelta(days=5),
    )
    if config.birthday.gift_points:
        await ledger.earn(
            member.id,
            config.birthday.gift_points,
            kind="birthday",
            key=f"birthday:{member.id}:demo",
            actor=DEMO_ACTOR,
            expires_at=expires_at(now, config),
            now=now,
        )
    return member.id
