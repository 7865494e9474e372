"""/transfer through the sandbox with two and three members: by buttons and by a typed
amount, the confirmation's lots, both members told, the undo in time and too late, limits,
the cooling-off, held-back sources, stale confirmations and double taps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from bot.config import Config
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotEvent
from storage.members import Member
from tests.conftest import NOW, SEED_EXPIRY, Sandbox, assert_audit_ok

JOINED = NOW - timedelta(days=8)
SEED_DAY = "2027-06-13"  # the last valid local day of SEED_EXPIRY (NOW + 200 days)
TIP_KEY = "transfer"


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, the ledger (transfers within households, expiry kept) is sound."""
    yield
    await assert_audit_ok(sandbox)


async def member(
    sandbox: Sandbox,
    user_id: int,
    name: str,
    points: int = 0,
    lang: str = "zh-hans",
    **earn: object,
) -> tuple[ChatClient, Member]:
    chat = sandbox.member(user_id, first_name=name, language_code=lang)
    await chat.send("/start")
    found = await sandbox.services.members.by_telegram_id(user_id)
    assert found is not None
    if points:
        await sandbox.services.ledger.earn(
            found.id,
            points,
            kind=str(earn.get("kind", "purchase")),
            key=f"seed:{user_id}:{earn.get('kind', 'purchase')}",
            actor="t",
            expires_at=earn.get("expires_at", SEED_EXPIRY),  # type: ignore[arg-type]
            now=JOINED,
        )
    return chat, found


async def household(sandbox: Sandbox, *members: Member, at: object = JOINED) -> int:
    families = sandbox.services.families
    home = await families.create_household(members[0].id, actor="t", now=at)  # type: ignore[arg-type]
    for other in members[1:]:
        await families.join_household(
            home.id,
            other.id,
            max_members=6,
            actor="t",
            now=at,  # type: ignore[arg-type]
        )
    return home.id


async def available(sandbox: Sandbox, who: Member) -> int:
    return await sandbox.services.ledger.available(who.id, sandbox.services.clock())


async def notice_to(chat: ChatClient, start: int) -> str:
    """The next message the member receives from the outbox (sent in the background)."""
    events = await chat.emu.wait_for_events(chat.user_id, start, 1, timeout=5)
    return events[0].text or ""


async def tap(chat: ChatClient, label: str, **options: Any) -> BotEvent:
    """Tap a button; the one message the bot sent or edited for it."""
    outputs = await chat.tap(label, **options)
    [shown] = [o for o in outputs if o.kind != "callback_answer"]
    return shown


def data_of(chat: ChatClient, label: str) -> tuple[int, str]:
    """The message id and callback data of the latest button with this label."""
    for message in reversed(chat.messages):
        for row in message.keyboard:
            for button in row:
                if button.text == label and button.callback_data is not None:
                    return message.message_id, button.callback_data
    raise AssertionError(f"no button {label!r}")


def move_clock(sandbox: Sandbox, delta: timedelta) -> None:
    sandbox.services.clock = lambda: NOW + delta


async def to_confirmation(chat: ChatClient, name: str, amount: str) -> str:
    """/transfer → the member → an amount button; the confirmation's text."""
    [picker] = await chat.send("/transfer")
    await chat.tap(f"💸 {name}", message=picker)
    await chat.tap(amount)
    return chat.last_text or ""


async def test_a_transfer_by_buttons_told_to_both_and_in_both_statements(
    sandbox: Sandbox,
) -> None:
    alice_chat, alice = await member(sandbox, 6101, "小明", 300)
    await sandbox.services.ledger.earn(
        alice.id, 100, kind="purchase", key="life", actor="t", expires_at=None, now=JOINED
    )
    bob_chat, bob = await member(sandbox, 6102, "小红")
    await household(sandbox, alice, bob)
    [picker] = await alice_chat.send("/transfer")
    assert picker.text == "💸 要把积分转给哪位家人？"
    assert picker.buttons == ["💸 小红"]
    amounts = await tap(alice_chat, "💸 小红")
    assert amounts.text == "💸 转给 小红\n本次可转 10–400 积分，请选择数量："
    assert amounts.buttons == ["50 积分", "100 积分", "200 积分", "✏️ 其他数量"]
    await alice_chat.tap("200 积分")
    assert alice_chat.last_text == "\n".join(
        [
            "💸 请确认转赠",
            "转给：小红",
            "数量：200 积分",
            "将使用您的以下积分：",
            f"• 200 积分（{SEED_DAY} 到期）",
            "小红 收到的积分有效期不变：到期日相同，永久有效的仍永久有效。",
            "转赠后您的可用积分：200",
            "请在 10 分钟内确认。",
        ]
    )
    seen = bob_chat.emu.event_count(6102)
    await alice_chat.tap("✅ 确认转赠")
    assert alice_chat.last_text == (
        "✅ 已转给 小红 200 积分，对方已收到通知。\n您的可用积分：200\n"
        "10 分钟内、对方还没有使用这些积分时，可以撤回。"
    )
    assert alice_chat.buttons() == ["↩️ 撤回转赠"]
    assert await notice_to(bob_chat, seen) == (
        "🎁 小明 转给您 200 积分，已存入您的账户。当前可用积分：200。"
    )
    assert (await available(sandbox, alice), await available(sandbox, bob)) == (200, 200)
    [sent] = await alice_chat.send("/history")
    assert "转出积分  -200 · 转给 小红" in (sent.text or "")
    [received] = await bob_chat.send("/history")
    assert "转入积分  +200 · 来自 小明" in (received.text or "")
    # The lifetime lot is used only once the dated one is gone, and stays lifetime for bob.
    text = await to_confirmation(alice_chat, "小红", "200 积分")
    assert f"• 100 积分（{SEED_DAY} 到期）\n• 100 积分（永久有效）" in text
    await alice_chat.tap("✅ 确认转赠")
    bob_lots = await sandbox.services.ledger.lots(bob.id)
    assert sorted((lot.points, lot.expires_at is None) for lot in bob_lots) == [
        (100, False),
        (100, True),
        (200, False),
    ]


async def test_a_typed_amount_with_mistakes_first(sandbox: Sandbox) -> None:
    alice_chat, alice = await member(sandbox, 6111, "小明", 300)
    _bob_chat, bob = await member(sandbox, 6112, "小红")
    await household(sandbox, alice, bob)
    [picker] = await alice_chat.send("/transfer")
    await alice_chat.tap("💸 小红", message=picker)
    ask = await tap(alice_chat, "✏️ 其他数量")
    assert ask.text == "请输入要转给 小红 的积分数（10–300），发送 /cancel 取消。"
    wrong, again = await alice_chat.send("abc", expect=2)
    assert wrong.text == "「abc」不是有效的积分数，请输入整数，例如 100。"
    assert again.text == "请重新输入积分数，或发送 /cancel 取消。"
    [wrong, _again] = await alice_chat.send("10.5", expect=2)
    assert wrong.text == "「10.5」不是整数，积分只能按整数转赠。"
    [wrong, _again] = await alice_chat.send("5", expect=2)
    assert wrong.text == "每次至少转赠 10 积分。"
    [wrong, _again] = await alice_chat.send("500", expect=2)
    assert wrong.text == "积分不足：您有 300 积分可用，转赠需要 500 积分。"
    [confirmation] = await alice_chat.send("１２０")
    assert (confirmation.text or "").startswith("💸 请确认转赠\n转给：小红\n数量：120 积分")
    await alice_chat.tap("✅ 确认转赠")
    assert await available(sandbox, bob) == 120
    # The conversation is over: a stray text is not another amount.
    [stray] = await alice_chat.send("50")
    assert "确认转赠" not in (stray.text or "")


async def test_undo_in_time_then_too_late(sandbox: Sandbox) -> None:
    alice_chat, alice = await member(sandbox, 6121, "小明", 300)
    bob_chat, bob = await member(sandbox, 6122, "小红")
    await household(sandbox, alice, bob)
    await to_confirmation(alice_chat, "小红", "100 积分")
    seen = bob_chat.emu.event_count(6122)
    await alice_chat.tap("✅ 确认转赠")
    assert (await notice_to(bob_chat, seen)).startswith("🎁 小明 转给您 100 积分")
    seen = bob_chat.emu.event_count(6122)
    move_clock(sandbox, timedelta(minutes=9))
    await alice_chat.tap("↩️ 撤回转赠")
    assert alice_chat.last_text == (
        "↩️ 已撤回转给 小红 的 100 积分，积分已退回，有效期不变。您的可用积分：300"
    )
    assert alice_chat.buttons(alice_chat.last_message) == []
    assert await notice_to(bob_chat, seen) == (
        "↩️ 小明 撤回了刚才转给您的 100 积分。当前可用积分：0。"
    )
    lots = await sandbox.services.ledger.lots(alice.id)
    assert {lot.expires_at for lot in lots if lot.remainder} == {SEED_EXPIRY}
    [history] = await alice_chat.send("/history")
    assert "撤回转赠，积分退回  +100 · 转给 小红" in (history.text or "")
    [bob_history] = await bob_chat.send("/history")
    assert "转赠被撤回  -100 · 来自 小明" in (bob_history.text or "")

    move_clock(sandbox, timedelta(minutes=20))
    await to_confirmation(alice_chat, "小红", "50 积分")
    await alice_chat.tap("✅ 确认转赠")
    move_clock(sandbox, timedelta(minutes=31))
    await alice_chat.tap("↩️ 撤回转赠")
    assert alice_chat.last_text == "转赠已超过 10 分钟，不能再撤回。"
    assert await available(sandbox, bob) == 50


async def test_undo_after_the_recipient_spent_and_a_second_undo(sandbox: Sandbox) -> None:
    alice_chat, alice = await member(sandbox, 6131, "小明", 300)
    _bob_chat, bob = await member(sandbox, 6132, "小红")
    await household(sandbox, alice, bob)
    await to_confirmation(alice_chat, "小红", "100 积分")
    await alice_chat.tap("✅ 确认转赠")
    undo_message, _undo_data = data_of(alice_chat, "↩️ 撤回转赠")
    await sandbox.services.ledger.spend(
        bob.id, 10, key="bob buys", actor="t", reason=None, reference=None, now=NOW
    )
    await alice_chat.tap("↩️ 撤回转赠")
    assert alice_chat.last_text == "小红 已经使用了这笔积分，不能再撤回。"
    assert await available(sandbox, bob) == 90
    # A forged undo of an operation that is no transfer of hers is a stale button.
    await alice_chat.tap_data(undo_message, "tr:undo:1", expect=0)
    assert alice_chat.last_callback_answer == "此按钮已失效，请重新操作。"


async def test_a_double_tap_books_once(sandbox: Sandbox) -> None:
    alice_chat, alice = await member(sandbox, 6141, "小明", 300)
    _bob_chat, bob = await member(sandbox, 6142, "小红")
    await household(sandbox, alice, bob)
    await to_confirmation(alice_chat, "小红", "100 积分")
    message_id, data = data_of(alice_chat, "✅ 确认转赠")
    await alice_chat.tap("✅ 确认转赠")
    # The same update delivered again (the button is gone from the edited message).
    await alice_chat.tap_data(message_id, data, expect=0)
    assert alice_chat.last_callback_answer == "这笔转赠已经完成，不会重复转出。"
    assert (await available(sandbox, alice), await available(sandbox, bob)) == (200, 100)


async def test_a_stale_confirmation_after_the_recipient_left(sandbox: Sandbox) -> None:
    alice_chat, alice = await member(sandbox, 6151, "小明", 300)
    _bob_chat, bob = await member(sandbox, 6152, "小红")
    _carol_chat, carol = await member(sandbox, 6153, "小刚")
    await household(sandbox, alice, bob, carol)
    [picker] = await alice_chat.send("/transfer")
    assert picker.buttons == ["💸 小红", "💸 小刚"]
    await alice_chat.tap("💸 小红", message=picker)
    await alice_chat.tap("100 积分")
    await sandbox.services.families.end_stay(bob.id, "left", actor="t", now=NOW)
    move_clock(sandbox, timedelta(minutes=1))
    await alice_chat.tap("✅ 确认转赠")
    assert alice_chat.last_text == "对方已不在您的家庭中，无法转赠。发送 /family 查看家庭成员。"
    assert alice_chat.buttons(alice_chat.last_message) == []
    assert await available(sandbox, alice) == 300
    # The others still can.
    [picker] = await alice_chat.send("/transfer")
    assert picker.buttons == ["💸 小刚"]
    await alice_chat.tap("💸 小刚", message=picker)
    await alice_chat.tap("50 积分")
    await alice_chat.tap("✅ 确认转赠")
    assert await available(sandbox, carol) == 50


async def test_an_expired_confirmation(sandbox: Sandbox) -> None:
    alice_chat, alice = await member(sandbox, 6161, "小明", 300)
    _bob_chat, bob = await member(sandbox, 6162, "小红")
    await household(sandbox, alice, bob)
    await to_confirmation(alice_chat, "小红", "100 积分")
    move_clock(sandbox, timedelta(minutes=11))
    await alice_chat.tap("✅ 确认转赠")
    assert alice_chat.last_text == (
        "确认已超过 10 分钟，已失效，积分没有转出。请发送 /transfer 重新操作。"
    )
    assert await available(sandbox, bob) == 0


async def test_not_in_a_household_alone_or_cooling_off(sandbox: Sandbox) -> None:
    alice_chat, alice = await member(sandbox, 6171, "小明", 300)
    _bob_chat, bob = await member(sandbox, 6172, "小红")
    [answer] = await alice_chat.send("/transfer")
    assert answer.text == (
        "您还没有加入家庭，积分只能转给同一家庭的成员。发送 /family 创建家庭或接受家人的邀请。"
    )
    home = await household(sandbox, alice)
    [answer] = await alice_chat.send("/transfer")
    assert answer.text == (
        "您的家庭里还没有其他成员。发送 /family 邀请家人加入后，就可以互相转赠积分了。"
    )
    # Bob joined three days ago: alice may start, but not toward bob yet.
    await sandbox.services.families.join_household(
        home, bob.id, max_members=6, actor="t", now=NOW - timedelta(days=3)
    )
    [picker] = await alice_chat.send("/transfer")
    refused = await tap(alice_chat, "💸 小红", message=picker)
    assert refused.text == (
        "为保障账户安全，双方加入家庭都满 7 天后才能转赠积分，2026-11-29 12:00 起即可转赠。"
    )
    # A forged button toward someone outside the household.
    await alice_chat.tap_data(picker.message_id, "tr:amt:999:50")
    assert alice_chat.last_text == "对方已不在您的家庭中，无法转赠。发送 /family 查看家庭成员。"


async def test_a_newcomer_sees_when_the_cooling_off_ends(sandbox: Sandbox) -> None:
    alice_chat, alice = await member(sandbox, 6181, "小明", 300)
    _bob_chat, bob = await member(sandbox, 6182, "小红")
    home = await household(sandbox, bob, at=JOINED)
    await sandbox.services.families.join_household(
        home, alice.id, max_members=6, actor="t", now=NOW - timedelta(days=1)
    )
    [answer] = await alice_chat.send("/transfer")
    assert answer.text == (
        "为保障账户安全，双方加入家庭都满 7 天后才能转赠积分，2026-12-01 12:00 起即可转赠。"
    )


def small_limits(config: Config) -> Config:
    family = config.family.model_copy(
        update={
            "sender_daily_max": 150,
            "recipient_daily_max": 120,
            "quick_amounts": (50, 100, 200),
        }
    )
    return config.model_copy(update={"family": family})


@pytest.mark.parametrize("configure", [[small_limits]])
async def test_daily_limits_shape_the_buttons_and_refuse_beyond(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    alice_chat, alice = await member(sandbox, 6191, "小明", 500)
    _bob_chat, bob = await member(sandbox, 6192, "小红")
    carol_chat, carol = await member(sandbox, 6193, "小刚", 500)
    await household(sandbox, alice, bob, carol)
    [picker] = await alice_chat.send("/transfer")
    amounts = await tap(alice_chat, "💸 小红", message=picker)
    # Bob may receive 120 a day: 200 is not offered.
    assert amounts.buttons == ["50 积分", "100 积分", "✏️ 其他数量"]
    await alice_chat.tap("100 积分")
    await alice_chat.tap("✅ 确认转赠")
    # Bob's daily limit counts every sender: carol may add 20 more.
    [picker] = await carol_chat.send("/transfer")
    await carol_chat.tap("💸 小红", message=picker)
    await carol_chat.tap("✏️ 其他数量")
    [refused, _again] = await carol_chat.send("30", expect=2)
    assert refused.text == "对方今天最多还能接收 20 积分（每人每天上限 120 积分）。"
    [confirmation] = await carol_chat.send("20")
    assert "数量：20 积分" in (confirmation.text or "")
    # Alice's own daily limit (150) leaves her 50 for carol.
    [picker] = await alice_chat.send("/transfer")
    amounts = await tap(alice_chat, "💸 小刚", message=picker)
    assert amounts.text == "💸 转给 小刚\n本次可转 10–50 积分，请选择数量："
    await alice_chat.tap("✏️ 其他数量")
    [refused, _again] = await alice_chat.send("60", expect=2)
    assert refused.text == "您今天最多还能转出 50 积分（每天上限 150 积分）。"
    assert (await available(sandbox, bob), await available(sandbox, carol)) == (100, 500)


async def test_game_prizes_are_not_offered(sandbox: Sandbox) -> None:
    alice_chat, alice = await member(sandbox, 6201, "小明", 100, kind="game")
    await sandbox.services.ledger.earn(
        alice.id, 60, kind="purchase", key="p", actor="t", expires_at=None, now=JOINED
    )
    _bob_chat, bob = await member(sandbox, 6202, "小红")
    await household(sandbox, alice, bob)
    [picker] = await alice_chat.send("/transfer")
    amounts = await tap(alice_chat, "💸 小红", message=picker)
    assert amounts.text == (
        "💸 转给 小红\n本次可转 10–60 积分，请选择数量：\n"
        "（另有 100 积分来自不可转赠的来源，会留在您的账户里）"
    )
    assert amounts.buttons == ["50 积分", "✏️ 其他数量"]
    await alice_chat.tap("✏️ 其他数量")
    [refused, _again] = await alice_chat.send("80", expect=2)
    assert refused.text == (
        "您可转赠的积分只有 60：另有 100 积分（如游戏奖励积分）不能转赠，详见 /rules。"
    )


async def test_in_english(sandbox: Sandbox) -> None:
    alice_chat, alice = await member(sandbox, 6211, "Alice", 300, lang="en")
    bob_chat, bob = await member(sandbox, 6212, "Bob", lang="en")
    await household(sandbox, alice, bob)
    [picker] = await alice_chat.send("/transfer")
    assert picker.text == "💸 Whom would you like to give points to?"
    amounts = await tap(alice_chat, "💸 Bob", message=picker)
    assert amounts.text == "💸 Points for Bob\nYou can give 10–300 points now. How many?"
    await alice_chat.tap("50 points")
    assert alice_chat.last_text == "\n".join(
        [
            "💸 Please confirm",
            "To: Bob",
            "Points: 50",
            "It uses these points of yours:",
            f"• 50 points that expire on {SEED_DAY}",
            "Bob gets them with the same expiry: the same last day, and points that never"
            " expire still never expire.",
            "Your points afterwards: 250",
            "Please confirm within 10 minutes.",
        ]
    )
    seen = bob_chat.emu.event_count(6212)
    await alice_chat.tap("✅ Give the points")
    assert (alice_chat.last_text or "").startswith(
        "✅ 50 points given to Bob; they have been told."
    )
    assert await notice_to(bob_chat, seen) == (
        "🎁 Alice sent you 50 points; they are in your account. Available now: 50."
    )


async def test_rules_describe_households_and_transfers(sandbox: Sandbox) -> None:
    chat, _who = await member(sandbox, 6221, "小明")
    replies = await chat.send("/rules", expect=1)
    text = "\n".join(r.text or "" for r in replies)
    section = text[text.index("【家庭与积分转赠】") :].split("\n\n")[0]
    assert section.splitlines() == [
        "【家庭与积分转赠】",
        "• 家庭：每个家庭最多 6 人；邀请链接或邀请码 48 小时内有效，只限一人使用；"
        "每人同一时间只能加入一个家庭，可随时退出。",
        "• 加入家庭满 7 天后，才能转出或接收积分。",
        "• 积分可转给同一家庭的成员，每次至少 10 积分；每人每天最多转出 2000 积分、"
        "每月最多 10000 积分；每人每天最多接收 2000 积分、每月最多 10000 积分。",
        "• 游戏奖励积分不能转赠。",
        "• 转赠的积分有效期不变：到期日与原来相同，永久有效的仍永久有效。",
        "• 转出后 10 分钟内、对方还没有使用时可以撤回；之后不能撤回。",
    ]


def no_family(config: Config) -> Config:
    family = config.family.model_copy(update={"enabled": False})
    return config.model_copy(update={"family": family})


@pytest.mark.parametrize("configure", [[no_family]])
async def test_without_households(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat, _who = await member(sandbox, 6231, "小明")
    [answer] = await chat.send("/transfer")
    assert answer.text == "本计划暂未开放积分转赠。"
    replies = await chat.send("/rules")
    assert all("家庭与积分转赠" not in (r.text or "") for r in replies)
