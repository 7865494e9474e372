"""A message for every change of points a member did not make themselves, through the sandbox:
a purchase at the till or imported, a staff adjustment, a refund with compensation when an
item is withdrawn, a transfer received; in zh-CN and in English, once per booking, and
purchase receipts can be turned off in /settings while the other notices still arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bot.config import Campaign, Config, Localized
from bot.imports import ImportSummary, import_purchases
from bot.programme.mall import confirm_redemption, offer_redemption
from bot.programme.transfers import confirm_transfer, offer_transfer
from bot.sandbox.seed import DEMO_USER_ID, seed_demo
from storage.members import Member
from storage.store import connect_sync
from tests.conftest import ADMIN_ID, NOW, Sandbox, assert_audit_ok, member_with


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, the ledger (and the mall) must still add up."""
    yield
    await assert_audit_ok(sandbox)


async def member(sandbox: Sandbox, user_id: int, lang: str = "zh-hans") -> Member:
    """A member who sent /start (and read the welcome)."""
    return await member_with(sandbox, user_id, 0, lang)


async def told(sandbox: Sandbox, user_id: int, since: int) -> list[str]:
    """What the outbox delivered to the member since event `since` (drained now)."""
    await sandbox.services.sender.drain()
    return [e.text or "" for e in sandbox.emu.events(user_id, after=since)]


def grouped(code: str) -> str:
    return f"{code[:4]} {code[4:8]} {code[8:]}"


def green_today(config: Config) -> Config:
    """A campaign running today that doubles eco purchases."""
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


# --- a purchase at the till ------------------------------------------------------------------


@pytest.mark.parametrize("configure", [[green_today]])
async def test_a_till_purchase_tells_the_member_amount_points_campaign_and_balance(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    zh = await member(sandbox, 8101)
    en = await member(sandbox, 8102, "en")
    seen_zh, seen_en = sandbox.emu.event_count(8101), sandbox.emu.event_count(8102)
    admin = sandbox.admin()
    await admin.send(f"/purchase {zh.member_code} 128.50 general R-N1")
    await admin.send(f"/purchase {zh.member_code} 10 eco R-N2")
    await admin.send(f"/purchase {en.member_code} 10 eco R-N3")
    assert await told(sandbox, 8101, seen_zh) == [
        "🧾 消费积分到账：您消费 128.50 元（日常商品），获得 128 积分。当前可用积分：128。",
        "🧾 消费积分到账：您消费 10.00 元（绿色环保商品），赶上「今日双倍」2 倍积分，"
        "获得 40 积分。当前可用积分：168。",
    ]
    assert await told(sandbox, 8102, seen_en) == [
        "🧾 Points for your purchase: 10.00 yuan (Eco-friendly products) earned you 40 points"
        " with Double Today (×2). Available now: 40."
    ]


async def test_a_purchase_typed_again_or_redelivered_is_told_once(sandbox: Sandbox) -> None:
    who = await member(sandbox, 8103, "en")
    seen = sandbox.emu.event_count(8103)
    admin = sandbox.admin()
    await admin.send(f"/purchase {who.member_code} 30 general R-N4")
    [again] = await admin.send(f"/purchase {who.member_code} 30 general R-N4")
    assert again.text == "ℹ️ 小票 R-N4 已经记过账（30 积分），没有重复记录。"
    # Telegram redelivers a command without a receipt (after a restart): the same message,
    # handled twice, books once and tells once.
    command = {
        "message_id": 990001,
        "date": int(NOW.timestamp()),
        "chat": sandbox.emu.user(ADMIN_ID).chat_dict(),
        "from": sandbox.emu.user(ADMIN_ID).to_dict(),
        "text": f"/purchase {who.member_code} 20",
        "entities": [{"type": "bot_command", "offset": 0, "length": 9}],
    }
    for _ in range(2):
        start = sandbox.emu.event_count(ADMIN_ID)
        sandbox.emu.enqueue_raw_update({"message": command})
        await sandbox.emu.wait_for_events(ADMIN_ID, start, 1, timeout=5)
    replies = [e.text or "" for e in sandbox.emu.events(ADMIN_ID)[-2:]]
    assert "获得 20 积分" in replies[0]
    assert replies[1] == "ℹ️ 这笔消费已经记过账（20 积分），没有重复记录。"
    assert await told(sandbox, 8103, seen) == [
        "🧾 Points for your purchase: 30.00 yuan (Everyday goods) earned you 30 points."
        " Available now: 30.",
        "🧾 Points for your purchase: 20.00 yuan (Everyday goods) earned you 20 points."
        " Available now: 50.",
    ]


# --- adjustments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "added", "taken"),
    [
        (
            "zh-hans",
            "ℹ️ 积分调整：工作人员为您增加了 50 积分（原因：补录漏记积分）。当前可用积分：50。",
            "ℹ️ 积分调整：工作人员扣减了您 20 积分（原因：重复记账更正）。当前可用积分：30。",
        ),
        (
            "en",
            "ℹ️ Points adjusted: our staff added 50 points (reason: 补录漏记积分)."
            " Available now: 50.",
            "ℹ️ Points adjusted: our staff deducted 20 points (reason: 重复记账更正)."
            " Available now: 30.",
        ),
    ],
)
async def test_an_adjustment_up_or_down_tells_the_member_with_its_reason(
    sandbox: Sandbox, lang: str, added: str, taken: str
) -> None:
    who = await member(sandbox, 8104, lang)
    seen = sandbox.emu.event_count(8104)
    admin = sandbox.admin()
    await admin.send(f"/adjust {who.member_code} +50 补录漏记积分")
    await admin.send(f"/adjust {who.member_code} -20 重复记账更正")
    # Refused (more than the member has): nothing booked, nothing told.
    [refused] = await admin.send(f"/adjust {who.member_code} -99 再扣")
    assert refused.text == "⚠️ 该会员只有 30 积分可扣，不能扣除 99 积分。未做调整。"
    assert await told(sandbox, 8104, seen) == [added, taken]


# --- /settings: receipts off ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "button", "toast", "line", "back_on"),
    [
        (
            "zh-hans",
            "🧾 关闭消费通知",
            "已关闭消费通知。积分调整、退回和补偿仍会通知您。",
            "消费通知：关",
            "🧾 开启消费通知",
        ),
        (
            "en",
            "🧾 Turn purchase receipts off",
            "Purchase receipts are off. Adjustments, refunds and compensation are still notified.",
            "Purchase receipts: off",
            "🧾 Turn purchase receipts on",
        ),
    ],
)
async def test_receipts_turned_off_silence_purchases_but_not_adjustments(
    sandbox: Sandbox, lang: str, button: str, toast: str, line: str, back_on: str
) -> None:
    who = await member(sandbox, 8105, lang)
    chat = sandbox.member(8105, language_code=lang)
    await chat.send("/settings")
    await chat.tap(button)
    assert chat.last_callback_answer == toast
    assert line in (chat.last_text or "")
    assert back_on in chat.buttons()
    seen = sandbox.emu.event_count(8105)
    admin = sandbox.admin()
    await admin.send(f"/purchase {who.member_code} 100 general R-N5")
    await admin.send(f"/adjust {who.member_code} +5 生日补发")
    texts = await told(sandbox, 8105, seen)
    assert len(texts) == 1 and ("生日补发" in texts[0])
    assert texts[0].startswith(("ℹ️ 积分调整", "ℹ️ Points adjusted"))
    # Turned on again, the next purchase is told.
    await chat.send("/settings")
    await chat.tap(back_on)
    seen = sandbox.emu.event_count(8105)
    await admin.send(f"/purchase {who.member_code} 10 general R-N6")
    [receipt] = await told(sandbox, 8105, seen)
    assert receipt.endswith(("当前可用积分：115。", "Available now: 115."))


# --- an item withdrawn ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "zh-hans",
            "很抱歉：您兑换的 合作门店洗车一次（券码 {code}）因「合作门店停业」已下架。"
            "1500 积分已退回，另补偿 150 积分；退回的积分至少 30 天内有效。当前可用积分：1650。",
        ),
        (
            "en",
            "We are sorry: One car wash at a partner shop (code {code}) was withdrawn:"
            " 合作门店停业. Your 1500 points are back, plus 150 points for the trouble;"
            " the returned points stay valid for at least 30 days. Available now: 1650.",
        ),
    ],
)
async def test_a_withdrawn_item_tells_the_member_of_refund_and_compensation(
    sandbox: Sandbox, lang: str, expected: str
) -> None:
    who = await member_with(sandbox, 8106, 1500, lang)
    services = sandbox.services
    offer = await offer_redemption(services, who.id, "CARWASH-01")
    redeemed = await confirm_redemption(services, who.id, offer.offer.id, actor="t")
    seen = sandbox.emu.event_count(8106)
    [done] = await sandbox.admin().send("/delist CARWASH-01 合作门店停业")
    assert "1 笔未完成的兑换" in (done.text or "")
    assert await told(sandbox, 8106, seen) == [expected.format(code=redeemed.redemption.code)]
    # Delisted again: nothing open, nobody told twice.
    await sandbox.admin().send("/delist CARWASH-01 合作门店停业")
    assert await told(sandbox, 8106, seen + 1) == []


# --- a transfer received --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("zh-hans", "🎁 小明 转给您 80 积分，已存入您的账户。当前可用积分：80。"),
        ("en", "🎁 小明 sent you 80 points; they are in your account. Available now: 80."),
    ],
)
async def test_a_transfer_received_tells_the_recipient_once(
    sandbox: Sandbox, lang: str, expected: str
) -> None:
    giver = await member_with(sandbox, 8107, 200)
    taker = await member(sandbox, 8108, lang)
    families, settled = sandbox.services.families, NOW - timedelta(days=8)
    home = await families.create_household(giver.id, actor="t", now=settled)
    await families.join_household(home.id, taker.id, max_members=6, actor="t", now=settled)
    seen_giver, seen_taker = sandbox.emu.event_count(8107), sandbox.emu.event_count(8108)
    pending = await offer_transfer(sandbox.services, giver.id, taker.id, 80)
    for _ in range(2):  # a repeated confirmation (the same offer) moves and tells once
        await confirm_transfer(sandbox.services, giver.id, pending.offer.id, actor="telegram:8107")
    assert await told(sandbox, 8108, seen_taker) == [expected]
    assert await told(sandbox, 8107, seen_giver) == []  # the giver moved them themselves
    balance = await sandbox.services.ledger.balance(taker.id)
    assert balance.available == 80


# --- the CSV import -------------------------------------------------------------------------


def import_rows(sandbox: Sandbox, rows: Iterable[str], **extra: Any) -> ImportSummary:
    """`pointsbot import-purchases` of these CSV rows into the running bot's database."""
    lines = ["receipt_id,member_code,amount,category,purchased_at\n", *(r + "\n" for r in rows)]
    conn = connect_sync(sandbox.config.storage.path)
    try:
        return import_purchases(
            conn, lines, sandbox.config, actor="import:pos.csv", now=NOW, **extra
        )
    finally:
        conn.close()


def pos_rows(zh: Member, en: Member) -> list[str]:
    bought = (NOW - timedelta(hours=3)).isoformat()
    return [
        f"P1,{zh.member_code},10.50,general,{bought}",
        f"P2,{en.member_code},20,eco,{bought}",
        f"P3,{zh.member_code},30,general,{bought}",
        f"P4,{zh.member_code},5,eco,{bought}",
        f"P5,{en.member_code},1,general,{bought}",
    ]


ZH_IMPORT = "🧾 消费积分到账：您有 3 笔消费共 45.50 元已入账，获得 50 积分。当前可用积分：50。"
EN_IMPORT = (
    "🧾 Points for your purchases: 2 purchase(s) totalling 21.00 yuan earned you 41 points."
    " Available now: 41."
)


async def test_an_import_tells_each_member_once_and_a_re_import_tells_nobody(
    sandbox: Sandbox,
) -> None:
    zh, en = await member(sandbox, 8109), await member(sandbox, 8110, "en")
    seen_zh, seen_en = sandbox.emu.event_count(8109), sandbox.emu.event_count(8110)
    # Batches of two rows: one message per member for the whole run, not per batch or row.
    summary = import_rows(sandbox, pos_rows(zh, en), batch_size=2)
    assert (summary.imported, summary.notified) == (5, 2)
    assert await told(sandbox, 8109, seen_zh) == [ZH_IMPORT]
    assert await told(sandbox, 8110, seen_en) == [EN_IMPORT]
    again = import_rows(sandbox, pos_rows(zh, en))
    assert (again.imported, again.replayed, again.notified) == (0, 5, 0)
    assert await told(sandbox, 8109, seen_zh + 1) == []
    assert await told(sandbox, 8110, seen_en + 1) == []


async def test_an_import_that_stopped_before_its_end_tells_members_at_the_next_run(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    zh, en = await member(sandbox, 8111), await member(sandbox, 8112, "en")
    seen_zh = sandbox.emu.event_count(8111)

    def stopped(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("the import stopped after its last batch")

    with monkeypatch.context() as patch:
        patch.setattr("bot.imports.release_import_notices", stopped)
        with pytest.raises(RuntimeError):
            import_rows(sandbox, pos_rows(zh, en), batch_size=2)
    assert await told(sandbox, 8111, seen_zh) == []
    # The file again: every row booked already, and the members are told what the run booked.
    again = import_rows(sandbox, pos_rows(zh, en))
    assert (again.imported, again.replayed, again.notified) == (0, 5, 2)
    assert await told(sandbox, 8111, seen_zh) == [ZH_IMPORT]


async def test_an_import_respects_receipts_turned_off(sandbox: Sandbox) -> None:
    zh, en = await member(sandbox, 8113), await member(sandbox, 8114, "en")
    await sandbox.services.pushes.set_receipts(8113, False)
    seen_zh, seen_en = sandbox.emu.event_count(8113), sandbox.emu.event_count(8114)
    summary = import_rows(sandbox, pos_rows(zh, en))
    assert (summary.imported, summary.notified) == (5, 1)
    assert await told(sandbox, 8113, seen_zh) == []
    assert await told(sandbox, 8114, seen_en) == [EN_IMPORT]


async def test_notices_are_service_messages_sent_in_quiet_hours(sandbox: Sandbox) -> None:
    who = await member(sandbox, 8115)
    # 23:30 in Shanghai: promotions wait for the morning, points notices do not.
    late = datetime(2026, 11, 25, 15, 30, tzinfo=NOW.tzinfo)
    assert sandbox.config.push.is_quiet(late.astimezone(sandbox.config.program.tz).time())
    sandbox.services.clock = lambda: late
    seen = sandbox.emu.event_count(8115)
    await sandbox.admin().send(f"/adjust {who.member_code} +7 夜班补录")
    [notice] = await told(sandbox, 8115, seen)
    assert "夜班补录" in notice


async def test_the_demo_s_history_is_not_news(sandbox: Sandbox) -> None:
    # The seed books a year of purchases as the till would, but nobody is told of them.
    await seed_demo(sandbox.services, NOW)
    await sandbox.services.sender.drain()
    assert await sandbox.services.pushes.counts() == {}
    # Yet the demo member's balance shows those purchases.
    member = await sandbox.services.members.by_telegram_id(DEMO_USER_ID)
    assert member is not None
    assert (await sandbox.services.ledger.balance(member.id)).available > 0
