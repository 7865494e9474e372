"""/history in the member's words: a statement built through the bot, read back line by line.

Every line names what a member recognises (the item and its code, the game and the prize, the
receipt, the campaign, the survey, the staff's reason, the day expired points were earned) and
none shows an internal id (a SKU, an operation kind, a lot number), in Chinese and in English.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest

from bot.config import Campaign, Config, Localized, Survey
from bot.programme.transfers import confirm_transfer, offer_transfer
from bot.sandbox.client import ChatClient
from storage.members import Member
from tests.conftest import NOW, Sandbox, assert_audit_ok
from tests.games_support import BAG, P10, THANKS, ForcedDraws, with_wheel

# A line of /history: "2026-11-25 12:00  <what>  <points>[ · <detail>]..."
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d  (.+)$")
# What the ledger calls things, which a member must never read (case matters: "Scratch card"
# is a name, "scratch" an id; the prize id "bag" is left out, as "Canvas bag voucher" is words).
INTERNAL_IDS = re.compile(
    r"\b(purchase|redeem|refund|return|game_play|game|wheel|scratch|survey|adjust|expire"
    r"|quick|today|eco|p10|thanks)\b|· expired|VOUCHER-10|单号|\bref\b"
)


def double_eco_today(config: Config) -> Config:
    """An earn campaign running today that doubles eco purchases."""
    today = NOW.astimezone(config.program.tz).date()
    campaign = Campaign(
        id="today",
        name=Localized.model_validate({"zh-CN": "今日双倍", "en": "Double Today"}),
        starts=today - timedelta(days=1),
        ends=today + timedelta(days=1),
        multiplier=Decimal("2"),
        categories=["eco"],
    )
    return config.model_copy(update={"campaigns": [campaign]})


def quick_survey(config: Config) -> Config:
    """A one-question survey worth 10 points."""
    survey = Survey.model_validate(
        {
            "id": "quick",
            "title": {"zh-CN": "一题问卷", "en": "One question"},
            "reward_points": 10,
            "opens": "2026-11-01",
            "closes": "2026-11-30",
            "questions": [
                {"id": "mood", "kind": "rating", "text": {"zh-CN": "满意吗？", "en": "Happy?"}}
            ],
        }
    )
    return config.model_copy(update={"surveys": [survey]})


def unhurried(config: Config) -> Config:
    """No flood guard: one test here taps more than a person would in ten seconds."""
    limits = config.limits.model_copy(update={"flood_updates": 1000})
    return config.model_copy(update={"limits": limits})


@pytest.fixture
def configure() -> list[Callable[[Config], Config]]:
    """The sample programme with a campaign today, the test games and a short survey."""
    return [double_eco_today, with_wheel(), quick_survey, unhurried]


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did through the bot, the ledger, mall, games and surveys add up."""
    yield
    await assert_audit_ok(sandbox)


@dataclass(frozen=True)
class Words:
    """What one language's member taps and reads."""

    lang: str
    vouchers_shelf: str
    voucher: str
    redeem: str
    confirm: str
    return_prefix: str
    return_yes: str
    free_spin: str
    paid_spin: str
    buy_card: str
    scratch_all: str
    survey: str
    # The expected lines, as patterns (code: the redemption's code).
    purchase_in_campaign: str
    campaign_bonus: str
    purchase: str
    redeemed: str
    returned: str
    wheel_prize: str
    wheel_spin: str
    card_unrevealed: str
    card_lost: str
    survey_reward: str
    task_reward: str
    adjustment: str
    expired: str
    older: str


ZH = Words(
    lang="zh-hans",
    vouchers_shelf="优惠券与抵扣",
    voucher="满 100 减 10 元券",
    redeem="🎁 兑换",
    confirm="✅ 确认兑换",
    return_prefix="取消兑换",
    return_yes="确定取消",
    free_spin="免费转一次",
    paid_spin="转一次（50 积分）",
    buy_card="买一张",
    scratch_all="全部刮开",
    survey="一题问卷",
    # The purchase's own points (for life) and the campaign's extra ones (dated), two lots.
    purchase_in_campaign=r"消费积分  \+1000 · 小票 R-2001 · 消费 ¥500\.00 · 活动：今日双倍",
    campaign_bonus=r"活动加赠  \+1000 · 活动：今日双倍 · 小票 R-2001 · 消费 ¥500\.00",
    purchase=r"消费积分  \+20 · 小票 R-2002 · 消费 ¥20\.00",
    redeemed=r"兑换  -800 · 满 100 减 10 元券 · 券码 {code}",
    returned=r"积分退回  \+800 · 满 100 减 10 元券 · 券码 {code}",
    wheel_prize=r"转盘奖励  \+10",
    wheel_spin=r"转盘抽奖  -50 · 中奖：帆布袋兑换券 · 券码 \w{8}",
    card_unrevealed=r"刮刮乐  -30 · 还没刮开",
    card_lost=r"刮刮乐  -30 · 未中奖",
    survey_reward=r"问卷奖励  \+10 · 「一题问卷」",
    # The 500-yuan eco purchase completes the sample's spend task (300 yuan this month).
    task_reward=r"任务奖励  \+50 · 「本月绿色消费满 300 元」",
    adjustment=r"人工调整  \+5 · 原因：补录漏记积分",
    expired=r"积分到期  -\d+ · 2026-11-25 获得的积分",
    older="较早 ▶",
)
EN = Words(
    lang="en",
    vouchers_shelf="Vouchers and bill deduction",
    voucher="¥10 off ¥100 voucher",
    redeem="🎁 Redeem",
    confirm="✅ Confirm",
    return_prefix="Cancel",
    return_yes="Yes, cancel it",
    free_spin="Spin for free",
    paid_spin="Spin (50 points)",
    buy_card="Get a card",
    scratch_all="Scratch all",
    survey="One question",
    purchase_in_campaign=(
        r"Purchase  \+1000 · receipt R-2001 · spent ¥500\.00 · campaign: Double Today"
    ),
    campaign_bonus=(
        r"Campaign bonus  \+1000 · campaign: Double Today · receipt R-2001 · spent ¥500\.00"
    ),
    purchase=r"Purchase  \+20 · receipt R-2002 · spent ¥20\.00",
    redeemed=r"Redeemed  -800 · ¥10 off ¥100 voucher · code {code}",
    returned=r"Points returned  \+800 · ¥10 off ¥100 voucher · code {code}",
    wheel_prize=r"Wheel prize  \+10",
    wheel_spin=r"Wheel spin  -50 · won: Canvas bag voucher · code \w{8}",
    card_unrevealed=r"Scratch card  -30 · not scratched yet",
    card_lost=r"Scratch card  -30 · no prize",
    survey_reward=r"Survey reward  \+10 · “One question”",
    task_reward=r"Task reward  \+50 · “¥300 of green purchases this month”",
    adjustment=r"Adjustment  \+5 · reason: 补录漏记积分",
    expired=r"Points expired  -\d+ · earned 2026-11-25",
    older="Older ▶",
)


async def statement(chat: ChatClient, words: Words) -> list[str]:
    """Every line of /history, all pages, newest first, without the date and time."""
    [first] = await chat.send("/history")
    texts = [first.text or ""]
    while words.older in chat.buttons():
        await chat.tap(words.older)
        texts.append(chat.last_text or "")
    lines = []
    for text in texts:
        for line in text.splitlines()[1:]:
            match = LINE.match(line)
            assert match is not None, line
            lines.append(match.group(1))
    return lines


def assert_reads(lines: list[str], pattern: str) -> None:
    """Exactly one line is `pattern`, whole."""
    matching = [line for line in lines if re.fullmatch(pattern, line)]
    assert len(matching) == 1, (pattern, lines)


def assert_no_internal_ids(lines: list[str]) -> None:
    """No line shows what only the ledger knows."""
    leaks = [line for line in lines if INTERNAL_IDS.search(line)]
    assert leaks == []


async def registered(sandbox: Sandbox, user_id: int, words: Words) -> tuple[ChatClient, Member]:
    chat = sandbox.member(user_id, language_code=words.lang)
    await chat.send("/start")
    member = await sandbox.services.members.by_telegram_id(user_id)
    assert member is not None
    return chat, member


async def redeem_and_return_the_voucher(chat: ChatClient, words: Words) -> str:
    """Redeem the ¥10 voucher in the mall and return it at once; its code."""
    await chat.send("/mall")
    await chat.tap(words.vouchers_shelf)
    await chat.tap(words.voucher)
    await chat.tap(words.redeem)
    await chat.tap(words.confirm, expect=2)
    [listing] = await chat.send("/redemptions")
    [label] = [b for b in listing.buttons if b.startswith(words.return_prefix)]
    await chat.tap(label)
    await chat.tap(words.return_yes)
    return label.removeprefix(words.return_prefix).strip()


@pytest.mark.parametrize("words", [ZH, EN], ids=["zh-CN", "en"])
async def test_every_line_reads_in_the_members_words(sandbox: Sandbox, words: Words) -> None:
    user_id = 7300 if words is ZH else 7301
    chat, member = await registered(sandbox, user_id, words)
    admin = sandbox.admin()
    # At the till: an eco purchase in the campaign (×2 ×2), an everyday one outside it.
    await admin.send(f"/purchase {member.member_code} 500 eco R-2001")
    await admin.send(f"/purchase {member.member_code} 20 general R-2002")
    code = await redeem_and_return_the_voucher(chat, words)
    # The wheel: a free spin wins 10 points, a paid one the bag voucher.
    sandbox.services.game_random = ForcedDraws(P10, BAG, THANKS)
    await chat.send("/wheel")
    await chat.tap(words.free_spin, expect=2)
    await chat.tap(words.paid_spin, expect=2)
    # A scratch card: paid for, and its prize not given away before it is scratched.
    await chat.send("/scratch")
    await chat.tap(words.buy_card, expect=2)
    card = chat.last_message
    assert card is not None
    lines = await statement(chat, words)
    assert_reads(lines, words.card_unrevealed)
    await chat.tap(words.scratch_all, message=card)
    # A survey, and a correction by staff with their reason.
    await chat.send("/surveys")
    await chat.tap(words.survey)
    await chat.tap("5⭐")
    await admin.send(f"/adjust {member.member_code} +5 补录漏记积分")

    lines = await statement(chat, words)
    assert len(lines) == 11
    for pattern in (
        words.purchase_in_campaign,
        words.campaign_bonus,
        words.purchase,
        words.redeemed.format(code=code),
        words.returned.format(code=code),
        words.wheel_prize,
        words.wheel_spin,
        words.card_lost,
        words.survey_reward,
        words.task_reward,
        words.adjustment,
    ):
        assert_reads(lines, pattern)
    assert_no_internal_ids(lines)
    await assert_audit_ok(sandbox)

    # Two years on, every dated lot has lapsed; the sweep books each one.
    later = NOW + timedelta(days=730)
    sandbox.services.clock = lambda: later
    assert await sandbox.services.scheduler.sweep(later) > 0
    lines = await statement(chat, words)
    expired = [line for line in lines if re.fullmatch(words.expired, line)]
    assert expired and len(lines) == 11 + len(expired)
    # The newest lines are the expiries: the statement pages from newest to oldest.
    assert lines[: len(expired)] == expired
    assert_no_internal_ids(lines)


@pytest.mark.parametrize(
    ("words", "refund", "bonus"),
    [
        (
            ZH,
            "积分退回  +1500 · 合作门店洗车一次 · 券码 {code} · 商家取消：合作门店停业",
            "商家补偿  +150 · 合作门店洗车一次 · 券码 {code} · 商家取消：合作门店停业",
        ),
        (
            EN,
            "Points returned  +1500 · One car wash at a partner shop · code {code}"
            " · cancelled by the shop: 合作门店停业",
            "Compensation from the shop  +150 · One car wash at a partner shop · code {code}"
            " · cancelled by the shop: 合作门店停业",
        ),
    ],
    ids=["zh-CN", "en"],
)
async def test_a_delisted_redemption_says_what_was_cancelled_and_why(
    sandbox: Sandbox, words: Words, refund: str, bonus: str
) -> None:
    user_id = 7310 if words is ZH else 7311
    chat, member = await registered(sandbox, user_id, words)
    await sandbox.admin().send(f"/purchase {member.member_code} 800 eco R-3001")
    shelf = "合作门店服务" if words is ZH else "Partner services"
    item = "合作门店洗车一次" if words is ZH else "One car wash at a partner shop"
    await chat.send("/mall")
    await chat.tap(shelf)
    await chat.tap(item)
    await chat.tap(words.redeem)
    await chat.tap(words.confirm, expect=2)
    [listing] = await chat.send("/redemptions")
    [label] = [b for b in listing.buttons if b.startswith(words.return_prefix)]
    code = label.removeprefix(words.return_prefix).strip()
    seen = len(chat.bot_messages)
    await sandbox.admin().send("/delist CARWASH-01 合作门店停业")
    await chat.emu.wait_for(user_id, lambda: len(chat.bot_messages) > seen, 5)
    lines = await statement(chat, words)
    assert lines[:2] == [bonus.format(code=code), refund.format(code=code)]
    assert_no_internal_ids(lines)


@pytest.mark.parametrize(
    ("words", "sent", "received"),
    [
        (ZH, "转出积分  -100 · 转给 阿芳", "转入积分  +100 · 来自 小明"),
        (EN, "Points sent  -100 · to 阿芳", "Points received  +100 · from 小明"),
    ],
    ids=["zh-CN", "en"],
)
async def test_a_transfer_names_the_other_member(
    sandbox: Sandbox, words: Words, sent: str, received: str
) -> None:
    user_id = 7320 if words is ZH else 7321
    chat, member = await registered(sandbox, user_id, words)
    family = sandbox.member(user_id + 100, "阿芳", words.lang)
    await family.send("/start")
    relative = await sandbox.services.members.by_telegram_id(user_id + 100)
    assert relative is not None
    await sandbox.admin().send(f"/purchase {member.member_code} 100 general R-4001")
    families, settled = sandbox.services.families, NOW - timedelta(days=8)
    home = await families.create_household(member.id, actor="t", now=settled)
    await families.join_household(home.id, relative.id, max_members=6, actor="t", now=settled)
    pending = await offer_transfer(sandbox.services, member.id, relative.id, 100)
    await confirm_transfer(sandbox.services, member.id, pending.offer.id, actor="t")
    assert (await statement(chat, words))[0] == sent
    assert (await statement(family, words))[0] == received
