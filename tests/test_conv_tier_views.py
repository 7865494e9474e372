"""What members see of tiers, through the sandbox: /tier (every tier, its threshold and all its
benefits, the member's own marked, what the next needs), the tier line of /balance below a
threshold, at the top and in a tier the total does not keep yet, a programme without tiers,
the tiers section of /rules following the configuration, the congratulation listing every
benefit, and the statement naming the tier of an entry reward."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import date
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FixedClock
from bot.config import Config
from bot.programme.purchases import record_purchase
from bot.sandbox.client import ChatClient
from storage import tiers as tier_store
from storage.members import Member
from tests.conftest import NOW, Sandbox, assert_audit_ok
from tests.test_rules_tiers import rules_sent

SHANGHAI = ZoneInfo("Asia/Shanghai")
REVIEW = date(NOW.astimezone(SHANGHAI).year + 1, 1, 1).isoformat()


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, the ledger must still pass the audit."""
    yield
    await assert_audit_ok(sandbox)


async def member(
    sandbox: Sandbox, user_id: int, lang: str = "zh-hans"
) -> tuple[ChatClient, Member]:
    chat = sandbox.member(user_id, language_code=lang)
    await chat.send("/start")
    found = await sandbox.services.members.by_telegram_id(user_id)
    assert found is not None
    return chat, found


async def buy(sandbox: Sandbox, who: Member, amount: str, receipt: str) -> None:
    """A purchase at the till now."""
    sandbox.services.clock = FixedClock(NOW)
    result = await record_purchase(
        sandbox.services,
        who.member_code,
        amount,
        "general",
        receipt,
        purchased_at=NOW,
        actor="till:test",
    )
    assert result.status == "recorded"


ZH_TIERS = "\n".join(
    [
        "🌳 会员等级",
        "",
        "🌱绿芽 · 注册即享",
        "  • 享受积分计划的全部基础权益",
        "",
        "🍃绿叶 · 本年度消费满 ¥1,000  👈 您当前的等级",
        "  • 消费积分 ×1.1",
        "  • 升级礼 100 积分",
        "  • 生日礼 128 积分",
        "",
        "🌳绿树 · 本年度消费满 ¥5,000",
        "  • 消费积分 ×1.2",
        "  • 升级礼 300 积分",
        "  • 生日礼 188 积分",
        "  • 积分转盘每天多 1 次免费机会",
        "",
        "🌲森林 · 本年度消费满 ¥20,000",
        "  • 消费积分 ×1.5",
        "  • 升级礼 800 积分",
        "  • 生日礼 288 积分",
        "  • 积分转盘每天多 2 次免费机会",
        "  • 积分抵现更划算：90 积分抵 ¥1（普通会员 100 积分）",
        "",
        "会员等级：🍃绿叶 · 本年度消费 ¥4,680",
        "▓▓▓▓▓▓▓▓▓░ 再消费 ¥320 升级为🌳绿树",
        "升级即时生效，退货可能撤销升级；等级每年 1 月 1 日评定，评定不影响已获得的积分。"
        "详见 /rules",
    ]
)


async def test_tier_below_a_threshold_lists_every_tier_and_what_the_next_needs(
    sandbox: Sandbox,
) -> None:
    chat, who = await member(sandbox, 9201)
    await buy(sandbox, who, "4680", "V1")
    [reply] = await chat.send("/tier")
    assert reply.text == ZH_TIERS
    # The same from the menu.
    await chat.send("/start")
    await chat.tap("🌳 会员等级")
    assert chat.last_text == ZH_TIERS


async def test_balance_below_a_threshold_in_both_languages(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 9202)
    await buy(sandbox, who, "4680", "B1")
    [reply] = await chat.send("/balance")
    assert (reply.text or "").endswith(
        "\n\n会员等级：🍃绿叶 · 本年度消费 ¥4,680\n▓▓▓▓▓▓▓▓▓░ 再消费 ¥320 升级为🌳绿树"
    )
    english, other = await member(sandbox, 9203, "en")
    await buy(sandbox, other, "999.99", "B2")  # whole yuan count: 999
    [reply] = await english.send("/balance")
    assert (reply.text or "").endswith(
        "\n\nTier: 🌱Sprout · ¥999 spent this year\n▓▓▓▓▓▓▓▓▓░ Spend ¥1 more to reach 🍃Leaf"
    )


async def test_at_the_top_tier_balance_and_tier_say_it_is_kept(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 9204, "en")
    await buy(sandbox, who, "20500", "T1")
    [reply] = await chat.send("/balance")
    assert (reply.text or "").endswith(
        "\n\nTier: 🌲Forest · ¥20,500 spent this year\n"
        f"▓▓▓▓▓▓▓▓▓▓ Top tier, and you have already kept it for the review on {REVIEW}"
    )
    [reply] = await chat.send("/tier")
    text = reply.text or ""
    assert "🌲Forest · ¥20,000 spent this year  👈 your tier" in text
    assert "  • Cheaper bill deduction: 90 points take ¥1 off (standard 100)" in text
    assert "🍃Leaf · ¥1,000 spent this year\n" in text  # only the member's own is marked
    zh, other = await member(sandbox, 9205)
    await buy(sandbox, other, "30000", "T2")
    [reply] = await zh.send("/balance")
    assert (reply.text or "").endswith(
        "会员等级：🌲森林 · 本年度消费 ¥30,000\n"
        f"▓▓▓▓▓▓▓▓▓▓ 已是最高等级，本年度已达保级标准（{REVIEW} 评定）"
    )


async def change_tier(sandbox: Sandbox, who: Member, tier_id: str) -> None:
    """Staff put the member in a tier (or a return took the total below it): held, not kept."""
    await sandbox.services.store.write(
        lambda conn: tier_store.change_tier(
            conn, who.id, None, tier_id, reason="staff", total=0, actor="staff:test", now=NOW
        )
    )


async def test_a_tier_the_total_does_not_keep_says_what_keeps_it(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 9206)
    await buy(sandbox, who, "1200", "K1")
    await change_tier(sandbox, who, "tree")
    [reply] = await chat.send("/balance")
    assert (reply.text or "").endswith(
        "会员等级：🌳绿树 · 本年度消费 ¥1,200\n"
        "░░░░░░░░░░ 再消费 ¥18,800 升级为🌲森林\n"
        f"再消费 ¥3,800 即可保级（{REVIEW} 评定）"
    )
    # At the top, the bar is the way to keeping the tier.
    english, other = await member(sandbox, 9207, "en")
    await buy(sandbox, other, "10000", "K2")
    await change_tier(sandbox, other, "forest")
    [reply] = await english.send("/balance")
    assert (reply.text or "").endswith(
        "Tier: 🌲Forest · ¥10,000 spent this year\n"
        f"▓▓▓▓▓░░░░░ Spend ¥10,000 more to keep your tier at the review on {REVIEW}"
    )


def no_tiers(config: Config) -> Config:
    return config.model_copy(
        update={"tiers": config.tiers.model_copy(update={"levels": []})}, deep=True
    )


@pytest.mark.parametrize("configure", [[no_tiers]])
async def test_without_tiers_nothing_about_tiers_is_shown(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat, who = await member(sandbox, 9208)
    await buy(sandbox, who, "4680", "N1")
    [reply] = await chat.send("/balance")
    assert "会员等级" not in (reply.text or "")
    assert (reply.text or "").endswith("家人转入）")
    [reply] = await chat.send("/tier")
    assert reply.text == "本积分计划暂未设置会员等级。"
    english = sandbox.member(9209, language_code="en")
    [reply] = await english.send("/tier")
    assert reply.text == "This programme has no member tiers."
    assert "【会员等级】" not in await rules_sent(sandbox, chat, "zh-CN")


async def test_the_congratulation_lists_every_benefit_and_the_statement_names_the_tier(
    sandbox: Sandbox,
) -> None:
    chat, who = await member(sandbox, 9210)
    seen = sandbox.emu.event_count(9210)
    await buy(sandbox, who, "5100", "C1")  # past leaf, into tree
    await sandbox.services.sender.drain()
    told = [e.text or "" for e in sandbox.emu.events(9210, after=seen)]
    assert (
        "🎉 恭喜升级为🌳绿树会员！\n"
        "• 消费积分 ×1.2\n"
        "• 升级礼 300 积分\n"
        "• 生日礼 188 积分\n"
        "• 积分转盘每天多 1 次免费机会"
    ) in told
    [reply] = await chat.send("/history")
    lines = (reply.text or "").splitlines()
    # Each entry reward names its tier (both paid, the skipped leaf's too).
    assert any(line.endswith("  🌳绿树会员礼  +300") for line in lines), lines
    assert any(line.endswith("  🍃绿叶会员礼  +100") for line in lines), lines
    english = sandbox.member(9210, language_code="en")
    await english.send("/language")
    await english.tap("English")
    [reply] = await english.send("/history")
    assert "  🌳Tree welcome gift  +300" in (reply.text or "")
