"""Expiry per source through the sandbox: lifetime purchase points, dated bonuses, reminders
only for what can expire, and /rules saying both, in zh-CN and en."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.imports import import_purchases
from bot.programme.calendar import end_of_day
from storage.audit import audit
from storage.errors import Conflict, InvalidRequest, StoreError
from storage.ledger import EarnRequest, earn_groups
from storage.members import Profile, register_member
from tests.conftest import NOW, Sandbox, assert_audit_ok
from tests.postgres import ENGINES, migrated_connection
from tests.test_jobs import deliver, member, set_birthday, texts

# Noon in Shanghai on 10 December 2026: the sample's green_winter campaign doubles eco.
CAMPAIGN_NOON = datetime(2026, 12, 10, 4, 0, tzinfo=UTC)

BALANCE = {
    "zh-hans": [
        "💰 可用积分：488",
        "到期时间：",
        "• 288 积分有效至 2027-12-10",
        "• 200 积分永久有效",
    ],
    "en": [
        "💰 Available points: 488",
        "When they expire:",
        "• 288 points valid through 2027-12-10",
        "• 200 points never expire",
    ],
}


@pytest.mark.parametrize("lang", ["zh-hans", "en"])
async def test_purchase_points_last_for_life_and_bonuses_twelve_months(
    sandbox: Sandbox, lang: str
) -> None:
    services = sandbox.services
    services.clock = lambda: CAMPAIGN_NOON
    user_id = 7101 if lang == "en" else 7102
    found = await member(sandbox, user_id, lang)
    # Entered long before, so today (10 December) brings the gift.
    await set_birthday(sandbox, user_id, 12, 10, entered=CAMPAIGN_NOON - timedelta(days=200))
    admin = sandbox.admin()
    # 100 yuan of eco in the campaign: 200 points of the purchase, 200 of the campaign.
    await admin.send(f"/purchase {found.member_code} 100 eco R-CAMP-1")
    await admin.send(f"/purchase {found.member_code} 100 eco R-CAMP-1")  # a replay
    await services.scheduler.daily(CAMPAIGN_NOON)
    lots = await services.ledger.lots(found.id)
    last_day = end_of_day(date(2027, 12, 10), sandbox.config)
    assert sorted(((lot.points, lot.expires_at) for lot in lots), key=str) == [
        (200, None),  # the purchase: for life
        (200, last_day),  # the campaign's extra points: 12 months
        (88, last_day),  # the birthday gift: 12 months
    ]
    [reply] = await sandbox.member(user_id, language_code=lang).send("/balance")
    assert (reply.text or "").splitlines()[:4] == BALANCE[lang]
    await assert_audit_ok(sandbox)


async def test_reminders_cover_only_points_that_can_expire(sandbox: Sandbox) -> None:
    services = sandbox.services
    lifetime = await member(sandbox, 7110)
    dated = await member(sandbox, 7111, "en")
    services.clock = lambda: CAMPAIGN_NOON
    admin = sandbox.admin()
    # Outside the campaign's categories: purchase points only, which never expire.
    await admin.send(f"/purchase {lifetime.member_code} 500 general R-LIFE-1")
    # In it: 200 for life and 200 that end on 2027-12-10.
    await admin.send(f"/purchase {dated.member_code} 100 eco R-DATED-1")
    # The daily job 7 days before the campaign points' last day, and on every reminder day.
    for days in (30, 7, 1):
        day = date(2027, 12, 10) - timedelta(days=days)
        at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=1)
        services.clock = lambda at=at: at  # type: ignore[misc]
        await services.scheduler.daily(at)
    await deliver(sandbox)
    assert [t for t in texts(sandbox, 7110) if t.startswith("⏰")] == []
    reminders = [t for t in texts(sandbox, 7111) if t.startswith("⏰")]
    assert len(reminders) == 3
    assert all("200 of your points expire on 2027-12-10" in t for t in reminders)
    await assert_audit_ok(sandbox)


RULES = {
    "zh-hans": [
        "【积分有效期】",
        "• 购物积分、补偿积分、客服补录积分：终身有效，永不过期。",
        "• 生日礼积分、游戏奖励积分、问卷奖励积分、建议奖励积分、活动额外奖励积分、"
        "分享奖励积分、任务奖励积分、勋章集齐大奖积分、会员等级奖励积分、专属积分方案积分："
        "自获得之日起 12 个月内有效。",
        "• 使用积分时优先扣除最早到期的积分。",
    ],
    "en": [
        "How long points last",
        "• Points from purchases, compensation points, points added by our staff:"
        " valid for life (they never expire).",
        "• Birthday gift points, points won in games, survey reward points, points for"
        " suggestions, extra points from campaigns, sharing bonus points, task reward points,"
        " badge-set prize points, tier reward points, personal plan points: valid for 12 months"
        " from the day they are earned.",
        "• When you spend points, those that expire soonest are used first.",
    ],
}


@pytest.fixture
def configure() -> list[object]:
    """Compensation and staff adjustments last for life too, so /rules groups three sources."""

    def lifetime_services(config):  # type: ignore[no-untyped-def]
        sources = {
            **config.expiry.sources,
            "compensation": config.expiry.sources["purchase"],
            "adjustment": config.expiry.sources["purchase"],
        }
        expiry = config.expiry.model_copy(update={"sources": sources})
        return config.model_copy(update={"expiry": expiry})

    return [lifetime_services]


@pytest.mark.parametrize("lang", ["zh-hans", "en"])
async def test_rules_state_each_policy_once_naming_its_sources(sandbox: Sandbox, lang: str) -> None:
    # Long rules arrive in several messages, cut between sections.
    replies = await sandbox.member(7120, language_code=lang).send("/rules")
    lines = "\n".join(reply.text or "" for reply in replies).splitlines()
    start = lines.index(RULES[lang][0])
    assert lines[start : start + 4] == RULES[lang]
    await assert_audit_ok(sandbox)


# --- the purchase and its campaign points, booked together ------------------------------------


async def test_the_till_and_the_import_book_a_campaign_receipt_alike(sandbox: Sandbox) -> None:
    services = sandbox.services
    services.clock = lambda: CAMPAIGN_NOON
    found = await member(sandbox, 7130)
    await sandbox.admin().send(f"/purchase {found.member_code} 100 eco R-BOTH-1")
    lines = [
        "receipt_id,member_code,amount,category,purchased_at\n",
        f"R-BOTH-1,{found.member_code},100.00,eco,2026-12-10T12:00:00+08:00\n",
        f"R-BOTH-2,{found.member_code},50,eco,2026-12-10T12:00:00+08:00\n",
    ]
    config, later = services.config, CAMPAIGN_NOON + timedelta(hours=1)
    summary = await services.store.write(
        lambda conn: import_purchases(conn, lines, config, actor="import:pos.csv", now=later)
    )
    # The till's receipt is a replay (both of its operations); the new one books both.
    assert (summary.imported, summary.replayed, summary.points) == (1, 1, 200)
    last_day = end_of_day(date(2027, 12, 10), sandbox.config)
    lots = await services.ledger.lots(found.id)
    assert sorted(((lot.points, lot.expires_at) for lot in lots), key=str) == [
        (100, None),
        (100, last_day),
        (200, None),
        (200, last_day),
    ]
    await assert_audit_ok(sandbox)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_group_is_booked_whole_or_not_at_all(engine: str, tmp_path: Path) -> None:
    with migrated_connection(engine, tmp_path) as conn:
        member_id = register_member(conn, Profile(1, "a"), None, NOW)[0].id
        base = EarnRequest(member_id, 10, "purchase", "purchase:R1", "till", None, NOW)
        bonus = EarnRequest(
            member_id,
            10,
            "campaign",
            "purchase:R1:campaign",
            "till",
            NOW + timedelta(days=365),
            NOW,
        )
        # Booked before without its campaign points: the pair describes something else.
        [alone] = earn_groups(conn, [(base,)])
        assert not isinstance(alone, StoreError)
        broken = dataclasses.replace(base, key="purchase:R2", points=0)
        mixed, invalid = earn_groups(
            conn, [(base, bonus), (dataclasses.replace(bonus, key="purchase:R2:campaign"), broken)]
        )
        assert isinstance(mixed, Conflict) and isinstance(invalid, InvalidRequest)
        assert conn.execute("SELECT count(*) FROM lots").fetchone()[0] == 1
        pair = (dataclasses.replace(base, key="purchase:R3"), dataclasses.replace(bonus, key="c3"))
        [first] = earn_groups(conn, [pair])
        [again] = earn_groups(conn, [pair])
        assert isinstance(first, tuple) and isinstance(again, tuple)
        assert [r.replayed for r in first] == [False, False]
        assert [r.replayed for r in again] == [True, True]
        assert conn.execute("SELECT count(*) FROM lots").fetchone()[0] == 3
        assert audit(conn).ok
