"""The 【会员等级】 section of /rules says what the tier code does: read back in both languages,
it follows the configuration (a threshold moved, the multiplier combined the other way, a
points measure over a rolling window) and agrees with the functions that move members."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from bot.config import Config
from bot.i18n import I18n
from bot.programme.tiers import tier_for_total
from bot.sandbox.client import ChatClient
from handlers.common import Texts
from handlers.info import message_parts, render_rules
from tests.conftest import NOW, Sandbox

I18N = I18n.load()


def section(text: str, heading: str) -> str:
    """The lines of one /rules section, from its heading to the blank line after it."""
    start = text.index(heading)
    end = text.find("\n\n", start)
    return text[start : end if end >= 0 else None]


def rules(config: Config, language: str) -> str:
    return render_rules(config, NOW, Texts(I18N, language))


async def rules_sent(sandbox: Sandbox, chat: ChatClient, language: str) -> str:
    """/rules as the member receives it, every part joined."""
    services = sandbox.services
    expected = render_rules(services.config, services.clock(), Texts(services.i18n, language))
    replies = await chat.send("/rules", expect=len(message_parts(expected)))
    return "\n\n".join(reply.text or "" for reply in replies)


def with_tiers(config: Config, **changes: object) -> Config:
    return config.model_copy(update={"tiers": config.tiers.model_copy(update=changes)}, deep=True)


def tree_at(threshold: int) -> Callable[[Config], Config]:
    """The sample programme with the third tier's threshold moved."""

    def change(config: Config) -> Config:
        levels = list(config.tiers.levels)
        levels[2] = levels[2].model_copy(update={"threshold": threshold})
        return with_tiers(config, levels=levels)

    return change


ZH_SECTION = "\n".join(
    [
        "【会员等级】",
        "会员等级按本自然年（1 月 1 日至 12 月 31 日，每年 1 月 1 日重新累计）"
        "的消费金额（按整元计）计算。",
        "• 🌱绿芽：注册即享。享受积分计划的全部基础权益",
        "• 🍃绿叶：本年度消费满 ¥1,000。消费积分 ×1.1；升级礼 100 积分；生日礼 128 积分",
        "• 🌳绿树：本年度消费满 ¥5,000。消费积分 ×1.2；升级礼 300 积分；生日礼 188 积分；"
        "积分转盘每天多 1 次免费机会",
        "• 🌲森林：本年度消费满 ¥20,000。消费积分 ×1.5；升级礼 800 积分；生日礼 288 积分；"
        "积分转盘每天多 2 次免费机会；积分抵现更划算：90 积分抵 ¥1（普通会员 100 积分）",
        "达到门槛即时升级：跨过门槛的那笔消费按原等级计积分，之后的消费按新等级计积分。",
        "每个等级的升级礼每人每个自然年只发一次；一次跨越多个等级时，途经的每个等级的升级礼都会发放。",
        "等级积分倍数与活动倍数不叠加，取较高者。",
        "等级每年 1 月 1 日评定（下次 2027-01-01）：未达保级标准的会员会提前 30 天收到通知并获知"
        "保级还需多少，每次评定最多下降 1 级；评定从不影响已获得的积分。",
        "退货会从消费当月的累计中扣除；如因此达不到今年新升的等级，将调回剩余消费所达到的等级"
        "（不低于年初时的等级），并收回该等级的升级礼；再次达到时升级礼会重新发放。"
        "其他消费已获得的积分不受影响。",
        "重要客户可由工作人员为其定制专属积分方案。",
    ]
)


async def test_rules_show_the_tiers_section_in_chinese(sandbox: Sandbox) -> None:
    text = await rules_sent(sandbox, sandbox.member(), "zh-CN")
    assert section(text, "【会员等级】") == ZH_SECTION


def test_the_english_section_says_the_same(sample_config: Config) -> None:
    text = section(rules(sample_config, "en"), "【Member tiers】")
    assert text.splitlines()[1] == (
        "Your tier follows your spending (whole yuan) over the calendar year"
        " (1 January to 31 December; it starts again every 1 January)."
    )
    assert (
        "• 🌳Tree: ¥5,000 spent this year. Purchase points ×1.2; Welcome gift: 300 points;"
        " Birthday gift: 188 points; Extra free wheel spins a day: 1"
    ) in text
    assert "A tier's points multiplier and a campaign's do not stack: the higher one applies." in (
        text
    )
    assert "go down at most 1 tier(s) at a review" in text
    assert "Key customers may be offered a personal points plan by our staff." in text


# Per language: a tier's line and its threshold.
THRESHOLD_LINES = {
    "zh-CN": ("【会员等级】", re.compile(r"^• \W*(\w+)：本年度消费满 ¥([\d,]+)。", re.M)),
    "en": ("【Member tiers】", re.compile(r"^• \W*(\w+): ¥([\d,]+) spent this year\.", re.M)),
}


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_each_threshold_read_back_is_where_the_code_moves_members(
    sample_config: Config, language: str
) -> None:
    heading, pattern = THRESHOLD_LINES[language]
    text = section(rules(sample_config, language), heading)
    shown = {name: int(amount.replace(",", "")) for name, amount in pattern.findall(text)}
    assert len(shown) == len(sample_config.tiers.levels) - 1  # the lowest has no threshold
    for tier in sample_config.tiers.levels[1:]:
        threshold = shown[tier.name.get(language)]
        assert tier_for_total(threshold, sample_config).id == tier.id
        assert tier_for_total(threshold - 1, sample_config).id != tier.id
        # Each benefit /rules names for the tier is the tier's own figure.
        line = next(line for line in text.splitlines() if tier.name.get(language) in line)
        assert f"×{tier.earn_multiplier.normalize():f}" in line
        assert f" {tier.entry_reward_points} " in line


@pytest.mark.parametrize("configure", [[tree_at(6000)]])
async def test_moving_a_threshold_moves_rules_and_tier(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat = sandbox.member(9301)
    text = section(await rules_sent(sandbox, chat, "zh-CN"), "【会员等级】")
    assert "• 🌳绿树：本年度消费满 ¥6,000。" in text
    assert "¥5,000" not in text
    [reply] = await chat.send("/tier")
    assert "🌳绿树 · 本年度消费满 ¥6,000" in (reply.text or "")
    assert "░░░░░░░░░░ 再消费 ¥1,000 升级为🍃绿叶" in (reply.text or "")


def test_the_other_combination_and_a_points_measure_over_a_rolling_window(
    sample_config: Config,
) -> None:
    config = with_tiers(
        sample_config, combine="multiply", measure="purchase_points", window="rolling_12_months"
    )
    zh, en = section(rules(config, "zh-CN"), "【会员等级】"), rules(config, "en")
    assert "等级积分倍数与活动倍数相乘。" in zh
    assert "取较高者" not in zh
    # NOW is in November 2026: this month and the 11 before it.
    assert "会员等级按近 12 个月（2025-12 至 2026-11）的消费积分（不含活动和等级加赠）计算。" in zh
    assert "• 🌳绿树：近 12 个月消费积分满 5,000。" in zh
    assert "A tier's points multiplier and a campaign's are multiplied together." in en
    assert "• 🌳Tree: 5,000 purchase points in the last 12 months." in en
    steps = with_tiers(sample_config, max_downgrade_steps=2, downgrade_notice_days=14)
    assert "提前 14 天收到通知" in rules(steps, "zh-CN")
    assert "每次评定最多下降 2 级" in rules(steps, "zh-CN")


def test_a_tier_only_item_and_early_access_are_benefits(sample_config: Config) -> None:
    items = list(sample_config.mall.items)
    opens = NOW.replace(year=NOW.year + 1)
    early = opens.replace(month=1)
    items[0] = items[0].model_copy(update={"min_tier": "tree"})
    items[1] = items[1].model_copy(
        update={"available_from": opens, "tier_available_from": {"leaf": early}}
    )
    config = sample_config.model_copy(
        update={"mall": sample_config.mall.model_copy(update={"items": items})}, deep=True
    )
    text = section(rules(config, "zh-CN"), "【会员等级】")
    early_day = early.astimezone(config.program.tz).strftime("%Y-%m-%d %H:%M")
    lines = {line.split("：", 1)[0]: line for line in text.splitlines() if line.startswith("• ")}
    assert f"专享商品：{items[0].name.zh_CN}" in lines["• 🌳绿树"]
    assert f"专享商品：{items[0].name.zh_CN}" in lines["• 🌲森林"]  # higher tiers too
    assert "专享商品" not in lines["• 🍃绿叶"]
    assert f"新品优先购：{items[1].name.zh_CN}，{early_day} 起可先兑换" in lines["• 🍃绿叶"]
    assert "新品优先购" not in lines["• 🌱绿芽"]


def test_message_parts_count_emoji_as_telegram_does() -> None:
    """Telegram measures a message in UTF-16 units (an emoji is two): a text of emoji lines
    near the limit is cut into parts Telegram accepts, losing nothing."""
    line = "🌳绿树会员 " * 40  # 40 × (2 + 5) = 280 units, 240 characters
    text = "\n".join([line] * 20) + "\n\n" + "🌲" * 5000
    parts = message_parts(text)
    assert all(len(part.encode("utf-16-le")) // 2 <= 4096 for part in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")
