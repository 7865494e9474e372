"""Voucher validity through the sandbox: shown before and after redeeming, enforced by /fulfil,
reminded before it lapses, and refunded when it lapses unused only if the item's terms say so.

The sample VOUCHER-10 is valid for 30 days, the day of redemption counting as the first: bought
at NOW (25 November, noon in Shanghai) it can be used through 24 December, 23:59:59 local.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.config import Config
from bot.sandbox.client import ChatClient
from storage.mall import Redemption
from storage.members import Member
from tests.conftest import Sandbox, assert_audit_ok, available, joined, member_with

LAST_DAY = date(2026, 12, 24)
# Local instants around the last valid day (Shanghai is UTC+8).
LAST_MINUTE = datetime(2026, 12, 24, 15, 59, tzinfo=UTC)  # 23:59 on 24 December
DAY_AFTER = datetime(2026, 12, 24, 16, 0, 30, tzinfo=UTC)  # 00:00:30 on 25 December
REMINDER_DAY = datetime(2026, 12, 21, 1, 0, tzinfo=UTC)  # 09:00 on 21 December
NEXT_MORNING = datetime(2026, 12, 25, 1, 0, tzinfo=UTC)  # 09:00 on 25 December


@dataclass(frozen=True)
class Words:
    """What a member and a cashier read, in one language."""

    lang: str
    shelf: str
    item: str
    redeem: str
    confirm: str
    card: str
    confirmation: str
    redeemed: str
    caption: str
    listed: str
    expired: str
    refused: str
    reminder: str
    refunded: str
    rule_no_refund: str
    rule_refund: str
    to_mall: str


ZH = Words(
    lang="zh-hans",
    shelf="优惠券与抵扣",
    item="满 100 减 10 元券",
    redeem="🎁 兑换",
    confirm="✅ 确认兑换",
    card="⏳ 兑换后 30 天内有效（含兑换当天；今天兑换可用至 2026-12-24）",
    confirmation="⏳ 券码有效期至 2026-12-24（当天 23:59 前可用）",
    redeemed="⏳ 有效期至 2026-12-24（当天 23:59 前可用），到期前 3 天会提醒您。",
    caption="券码 {code}：请向店员出示此二维码。有效期至 2026-12-24（当天 23:59 前可用）。",
    listed="    ⏳ 有效期至 2026-12-24",
    expired="    ⌛ 已过期（有效期至 2026-12-24）",
    refused="⚠️ {code} 不能核销：已过期，有效期至 2026-12-24（当天 23:59:59 止）。",
    reminder=(
        "⏰ 提醒：您兑换的「满 100 减 10 元券」（券码 {code}）有效期至 2026-12-24，"
        "当天 23:59 后失效，请尽快使用。"
    ),
    refunded=(
        "您兑换的「满 100 减 10 元券」（券码 {code}）有效期至 2026-12-24，到期未使用。"
        "按兑换条款，800 积分已退回您的账户，退回的积分至少 30 天内有效。"
    ),
    rule_no_refund=(
        "• 满 100 减 10 元券：兑换后 30 天内有效（含兑换当天），到期前 3 天提醒您；"
        "到期未使用即作废，积分不退回。"
    ),
    rule_refund=(
        "• 满 100 减 10 元券：兑换后 30 天内有效（含兑换当天），到期前 3 天提醒您；"
        "到期未使用，积分全部退回，退回的积分至少 30 天内有效。"
    ),
    to_mall="🛍 去积分商城",
)
EN = Words(
    lang="en",
    shelf="Vouchers and bill deduction",
    item="¥10 off ¥100 voucher",
    redeem="🎁 Redeem",
    confirm="✅ Confirm",
    card="⏳ Valid for 30 days from redemption, that day included"
    " (redeemed today: usable through 2026-12-24)",
    confirmation="⏳ The code is valid through 2026-12-24 (until 23:59 that day)",
    redeemed="⏳ Valid through 2026-12-24 (until 23:59 that day);"
    " we will remind you 3 days before.",
    caption="Code {code}: show this QR code to staff."
    " Valid through 2026-12-24 (until 23:59 that day).",
    listed="    ⏳ valid through 2026-12-24",
    expired="    ⌛ expired (was valid through 2026-12-24)",
    refused="⚠️ {code} cannot be accepted: it has expired;"
    " it was valid through 2026-12-24 (until 23:59:59 that day).",
    reminder='⏰ Reminder: your "¥10 off ¥100 voucher" (code {code}) is valid through 2026-12-24'
    " and lapses after 23:59 that day. Use it soon.",
    refunded='Your "¥10 off ¥100 voucher" (code {code}) was valid through 2026-12-24 and was not'
    " used. As its terms promise, 800 points are back in your account, valid for at least"
    " 30 days.",
    rule_no_refund="• ¥10 off ¥100 voucher: valid for 30 days from redemption, that day included;"
    " we remind you 3 days before it lapses. If unused by then, it lapses and its points are"
    " not refunded.",
    rule_refund="• ¥10 off ¥100 voucher: valid for 30 days from redemption, that day included;"
    " we remind you 3 days before it lapses. If unused by then, its points come back in full,"
    " valid for at least 30 days.",
    to_mall="🛍 Go to the points mall",
)
LANGUAGES = pytest.mark.parametrize("words", [ZH, EN], ids=["zh-CN", "en"])


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, the ledger and the mall must still add up."""
    yield
    await assert_audit_ok(sandbox)


def refund_if_unused(config: Config) -> Config:
    """The sample programme with VOUCHER-10's terms giving the points of a lapsed code back."""
    items = [
        item.model_copy(update={"refund_if_unused": True}) if item.sku == "VOUCHER-10" else item
        for item in config.mall.items
    ]
    return config.model_copy(update={"mall": config.mall.model_copy(update={"items": items})})


def texts(sandbox: Sandbox, user_id: int) -> list[str]:
    return [m.text or "" for m in sandbox.emu.messages(user_id) if m.from_bot]


async def redeem_voucher(sandbox: Sandbox, user_id: int, words: Words) -> Redemption:
    """A member with 1000 points buys VOUCHER-10 at NOW; checks what each step shows."""
    member = await member_with(sandbox, user_id, 1000, words.lang)
    chat = sandbox.member(user_id, language_code=words.lang)
    await chat.send("/mall")
    await chat.tap(words.shelf)
    await chat.tap(words.item)
    assert words.card in (chat.last_text or "").splitlines()
    await chat.tap(words.redeem)
    assert words.confirmation in (chat.last_text or "").splitlines()
    replies = await chat.tap(words.confirm, expect=2)
    [redemption], _total = await sandbox.services.mall.redemptions(member.id)
    assert redemption.valid_until == LAST_DAY
    done = chat.emu.message(user_id, replies[0].message_id)
    assert done is not None and (done.text or "").endswith("\n" + words.redeemed)
    [photo] = [r for r in replies if r.kind == "photo"]
    assert photo.text == words.caption.format(code=redemption.code)
    return redemption


async def listing(chat: ChatClient) -> list[str]:
    [reply] = await chat.send("/redemptions")
    return (reply.text or "").splitlines()


@LANGUAGES
async def test_a_redeemed_voucher_shows_its_last_valid_day(sandbox: Sandbox, words: Words) -> None:
    redemption = await redeem_voucher(sandbox, 9801, words)
    chat = sandbox.member(9801, language_code=words.lang)
    lines = await listing(chat)
    at = next(i for i, line in enumerate(lines) if line.startswith(redemption.code))
    assert lines[at + 1] == words.listed
    # Still shown as valid on its last day, late in the evening.
    sandbox.services.clock = lambda: LAST_MINUTE
    assert words.listed in await listing(chat)


@LANGUAGES
async def test_fulfil_on_the_last_day_at_2359_local_is_accepted(
    sandbox: Sandbox, words: Words
) -> None:
    redemption = await redeem_voucher(sandbox, 9802, words)
    sandbox.services.clock = lambda: LAST_MINUTE
    admin = sandbox.admin(words.lang)
    [done] = await admin.send(f"/fulfil {redemption.code}")
    assert redemption.code in (done.text or "") and "⚠️" not in (done.text or "")
    used = await sandbox.services.mall.redemption_by_code(redemption.code)
    assert used.status == "used"


@LANGUAGES
async def test_fulfil_the_day_after_the_last_day_is_refused(sandbox: Sandbox, words: Words) -> None:
    member_id = 9803
    redemption = await redeem_voucher(sandbox, member_id, words)
    sandbox.services.clock = lambda: DAY_AFTER
    admin = sandbox.admin(words.lang)
    [refused] = await admin.send(f"/fulfil {redemption.code.lower()}")
    assert refused.text == words.refused.format(code=redemption.code)
    still = await sandbox.services.mall.redemption_by_code(redemption.code)
    assert still.status == "issued" and still.used_at is None
    # The member sees it as expired, with no way to return it instead.
    [reply] = await sandbox.member(member_id, language_code=words.lang).send("/redemptions")
    assert words.expired in (reply.text or "").splitlines()
    assert reply.buttons == [words.to_mall]


async def reminders(sandbox: Sandbox, user_id: int, words: Words, code: str) -> int:
    await sandbox.services.sender.drain()
    return texts(sandbox, user_id).count(words.reminder.format(code=code))


@LANGUAGES
async def test_the_member_is_reminded_once_three_days_before(
    sandbox: Sandbox, words: Words
) -> None:
    user_id = 9804
    redemption = await redeem_voucher(sandbox, user_id, words)
    scheduler = sandbox.services.scheduler
    # Four days before: too early.
    sandbox.services.clock = lambda: REMINDER_DAY - timedelta(days=1)
    assert (await scheduler.vouchers(REMINDER_DAY - timedelta(days=1))).reminders == 0
    assert await reminders(sandbox, user_id, words, redemption.code) == 0
    sandbox.services.clock = lambda: REMINDER_DAY
    assert (await scheduler.vouchers(REMINDER_DAY)).reminders == 1
    assert await reminders(sandbox, user_id, words, redemption.code) == 1
    # A rerun the same day (a restart) and the next days' runs send nothing more.
    for later in (REMINDER_DAY, REMINDER_DAY + timedelta(days=1), LAST_MINUTE):
        sandbox.services.clock = lambda at=later: at
        assert (await scheduler.vouchers(later)).reminders == 0
    assert await reminders(sandbox, user_id, words, redemption.code) == 1


async def test_a_reminder_missed_while_down_is_caught_up(sandbox: Sandbox) -> None:
    redemption = await redeem_voucher(sandbox, 9805, ZH)
    # Down from 20 to 22 December: the first start after 09:00 on the 23rd still reminds.
    start = REMINDER_DAY + timedelta(days=2)
    sandbox.services.clock = lambda: start
    assert "voucher_validity 2026-12-23" in await sandbox.services.scheduler.catch_up(start)
    assert await reminders(sandbox, 9805, ZH, redemption.code) == 1
    # A used voucher is not reminded.
    await sandbox.admin().send(f"/fulfil {redemption.code}")
    assert (await sandbox.services.scheduler.vouchers(start + timedelta(days=1))).reminders == 0


async def seed_short_lived(sandbox: Sandbox, user_id: int, words: Words) -> Member:
    """A member whose 1000 points lapse with the voucher: at the end of 24 December."""
    await sandbox.member(user_id, language_code=words.lang).send("/start")
    member = await sandbox.services.members.by_telegram_id(user_id)
    assert member is not None
    lapse = datetime(2026, 12, 24, 16, 0, tzinfo=UTC)  # midnight after 24 December, local
    await sandbox.services.ledger.earn(
        member.id, 1000, kind="purchase", key=f"short:{user_id}", actor="t", expires_at=lapse
    )
    return member


async def buy(sandbox: Sandbox, member: Member, user_id: int, words: Words) -> Redemption:
    chat = sandbox.member(user_id, language_code=words.lang)
    await chat.send("/mall")
    await chat.tap(words.shelf)
    await chat.tap(words.item)
    await chat.tap(words.redeem)
    await chat.tap(words.confirm, expect=2)
    [redemption], _total = await sandbox.services.mall.redemptions(member.id)
    return redemption


@LANGUAGES
@pytest.mark.parametrize("configure", [[refund_if_unused]])
async def test_a_lapsed_unused_voucher_is_refunded_once_when_its_terms_say_so(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]], words: Words
) -> None:
    user_id = 9806
    member = await seed_short_lived(sandbox, user_id, words)
    redemption = await buy(sandbox, member, user_id, words)
    assert await available(sandbox, member) == 200
    scheduler = sandbox.services.scheduler
    # On its last day it is still the member's to use.
    sandbox.services.clock = lambda: LAST_MINUTE
    assert (await scheduler.vouchers(LAST_MINUTE)).refunded == 0
    sandbox.services.clock = lambda: NEXT_MORNING
    assert (await scheduler.vouchers(NEXT_MORNING)).refunded == 1
    await sandbox.services.sender.drain()
    assert texts(sandbox, user_id).count(words.refunded.format(code=redemption.code)) == 1
    # The 800 points are back, valid 30 days from the refund although their lot had lapsed
    # (the 200 not spent lapsed with it).
    await scheduler.sweep(NEXT_MORNING)
    assert await available(sandbox, member) == 800
    lots = [lot for lot in await sandbox.services.ledger.lots(member.id) if lot.remainder]
    floor = NEXT_MORNING + timedelta(days=30)
    assert {(lot.remainder, lot.expires_at) for lot in lots if lot.origin_lot_id} == {(800, floor)}
    cancelled = await sandbox.services.mall.redemption_by_code(redemption.code)
    assert cancelled.status == "cancelled" and cancelled.refund_operation_id is not None
    # Rerunning (a restart, the next day) refunds and tells nothing more.
    for later in (NEXT_MORNING, NEXT_MORNING + timedelta(days=1)):
        assert (await scheduler.vouchers(later)).refunded == 0
    await sandbox.services.sender.drain()
    assert texts(sandbox, user_id).count(words.refunded.format(code=redemption.code)) == 1
    # And /fulfil cannot take a refunded code.
    [refused] = await sandbox.admin(words.lang).send(f"/fulfil {redemption.code}")
    assert "⚠️" in (refused.text or "")


@pytest.mark.parametrize("configure", [[refund_if_unused]])
async def test_terms_withdrawn_after_redeeming_still_refund_that_voucher(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    user_id = 9809
    member = await seed_short_lived(sandbox, user_id, ZH)
    promised = await buy(sandbox, member, user_id, ZH)
    # The operator drops the promise for codes redeemed from now on.
    services = sandbox.services
    items = [i.model_copy(update={"refund_if_unused": False}) for i in services.config.mall.items]
    mall_config = services.config.mall.model_copy(update={"items": items})
    services.config = services.config.model_copy(update={"mall": mall_config})
    services.clock = lambda: NEXT_MORNING
    assert (await services.scheduler.vouchers(NEXT_MORNING)).refunded == 1
    await services.sender.drain()
    assert ZH.refunded.format(code=promised.code) in texts(sandbox, user_id)
    rules = joined(await sandbox.member(user_id).send("/rules"))
    assert ZH.rule_no_refund in (rules.text or "").splitlines()


@LANGUAGES
async def test_without_the_terms_a_lapsed_voucher_just_shows_as_expired(
    sandbox: Sandbox, words: Words
) -> None:
    user_id = 9807
    member = await seed_short_lived(sandbox, user_id, words)
    redemption = await buy(sandbox, member, user_id, words)
    sandbox.services.clock = lambda: NEXT_MORNING
    report = await sandbox.services.scheduler.vouchers(NEXT_MORNING)
    assert report.refunded == 0
    await sandbox.services.sender.drain()
    assert words.refunded.format(code=redemption.code) not in texts(sandbox, user_id)
    # The 200 points left lapsed with their lot; the voucher's 800 are not given back.
    await sandbox.services.scheduler.sweep(NEXT_MORNING)
    assert await available(sandbox, member) == 0
    still = await sandbox.services.mall.redemption_by_code(redemption.code)
    assert still.status == "issued" and still.refund_operation_id is None
    [reply] = await sandbox.member(user_id, language_code=words.lang).send("/redemptions")
    assert words.expired in (reply.text or "").splitlines()


@LANGUAGES
@pytest.mark.parametrize(
    ("configure", "refunds"), [([], False), ([refund_if_unused], True)], ids=["kept", "refunded"]
)
async def test_rules_state_the_validity_and_the_unused_voucher_rule(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]], refunds: bool, words: Words
) -> None:
    await member_with(sandbox, 9808, 0, words.lang)
    # Long rules arrive in several messages, cut between sections.
    replies = await sandbox.member(9808, language_code=words.lang).send("/rules")
    lines = "\n".join(reply.text or "" for reply in replies).splitlines()
    assert (words.rule_refund if refunds else words.rule_no_refund) in lines
    assert (words.rule_no_refund if refunds else words.rule_refund) not in lines
