"""/settings through the sandbox: a birthday (changed at most once a year), promotions, and
whether pushes can reach a member (a block, a group, a message after a 403)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import pytest

from bot.programme.birthdays import parse_birthday
from bot.sandbox.client import ChatClient
from storage.pushes import SERVICE, Push
from tests.conftest import NOW, Sandbox, joined

T = TypeVar("T")

TODAY = date(2026, 11, 25)


async def open_settings(sandbox: Sandbox, user_id: int = 5101, lang: str = "zh-hans") -> ChatClient:
    chat = sandbox.member(user_id, language_code=lang)
    await chat.send("/start")
    await chat.send("/settings")
    return chat


async def test_settings_show_what_is_set(sandbox: Sandbox) -> None:
    chat = await open_settings(sandbox)
    assert chat.last_text == (
        "⚙️ 您的设置\n生日：未设置\n优惠活动消息：开\n消费通知：开\n向家人公开积分：关\n"
        "（消费通知可以关闭；积分调整、退回和补偿的通知，以及到期提醒、生日祝福等服务通知总会发送。）"
    )
    assert chat.buttons() == [
        "🎂 设置生日",
        "👶🐾 家人生日",
        "📣 关闭优惠活动消息",
        "🧾 关闭消费通知",
        "👨‍👩‍👧 向家人公开积分",
        "🌐 语言 / Language",
    ]


async def test_setting_a_birthday_far_ahead_promises_the_gift(sandbox: Sandbox) -> None:
    sandbox.services.clock = lambda: datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    chat = await open_settings(sandbox)
    await chat.tap("🎂 设置生日")
    assert "请输入您的生日" in (chat.last_text or "")
    [saved] = await chat.send("1990-05-20")
    assert saved.text == "🎂 已保存生日：5 月 20 日。\n生日当天您将收到 88 积分生日礼。"
    prefs = await sandbox.services.pushes.preferences(5101)
    assert (prefs.birthday_year, prefs.birthday_month, prefs.birthday_day) == (1990, 5, 20)
    [shown] = await chat.send("/settings")
    assert "生日：1990-05-20" in (shown.text or "")
    assert "🎂 修改生日" in shown.buttons


async def test_a_birthday_set_just_before_the_date_says_there_is_no_gift_this_year(
    sandbox: Sandbox,
) -> None:
    sandbox.services.clock = lambda: datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    chat = await open_settings(sandbox, lang="en")
    await chat.tap("🎂 Set my birthday")
    [saved] = await chat.send("12/01")
    assert saved.text == (
        "🎂 Birthday saved: 12/1 (month/day).\n"
        "Because it was entered or changed within 30 days before the date, there is no gift"
        " this year; from next year on there is."
    )


async def test_a_birthday_changes_once_a_year(sandbox: Sandbox) -> None:
    now = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    sandbox.services.clock = lambda: now
    chat = await open_settings(sandbox)
    await chat.tap("🎂 设置生日")
    await chat.send("08-08")
    await chat.send("/settings")
    await chat.tap("🎂 修改生日")
    [changed] = await chat.send("09-09")
    assert (changed.text or "").startswith("🎂 已保存生日：9 月 9 日。")
    await chat.send("/settings")
    await chat.tap("🎂 修改生日")
    [refused] = await chat.send("10-10")
    assert refused.text == "生日一年内只能修改一次，这次没有修改。如有疑问请联系客服。"
    prefs = await sandbox.services.pushes.preferences(5101)
    assert (prefs.birthday_month, prefs.birthday_day) == (9, 9)
    # A year later it may change again.
    sandbox.services.clock = lambda: now + timedelta(days=366)
    await chat.send("/settings")
    await chat.tap("🎂 修改生日")
    [again] = await chat.send("10-10")
    assert (again.text or "").startswith("🎂 已保存生日：10 月 10 日。")


async def test_a_bad_date_is_explained_and_cancel_leaves_it_unset(sandbox: Sandbox) -> None:
    chat = await open_settings(sandbox)
    await chat.tap("🎂 设置生日")
    [bad] = await chat.send("02-30")
    assert (
        bad.text
        == "「02-30」不是有效的日期。请按 03-15 或 1990-03-15 的格式输入，或发送 /cancel 取消。"
    )
    [cancelled] = await chat.send("/cancel")
    assert cancelled.text == "已取消，设置没有变动。"
    prefs = await sandbox.services.pushes.preferences(5101)
    assert prefs.birthday_month is None
    # Outside the question, a date is just stray text: it is not taken as a birthday.
    [stray] = await chat.send("03-15")
    assert "没有看懂" in (stray.text or "")


async def test_promotions_toggle_off_and_on(sandbox: Sandbox) -> None:
    chat = await open_settings(sandbox)
    await chat.tap("📣 关闭优惠活动消息")
    assert chat.last_callback_answer == "已关闭优惠活动消息。"
    assert "优惠活动消息：关" in (chat.last_text or "")
    assert not (await sandbox.services.pushes.preferences(5101)).marketing_opt_in
    await chat.tap("📣 开启优惠活动消息")
    assert (await sandbox.services.pushes.preferences(5101)).marketing_opt_in


async def test_forged_settings_button(sandbox: Sandbox) -> None:
    chat = await open_settings(sandbox)
    last = chat.last_message
    assert last is not None
    await chat.tap_data(last.message_id, "set:mkt:maybe", expect=0)
    assert chat.last_callback_answer == "此按钮已失效，请重新操作。"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("03-15", (3, 15, None)),
        ("3/5", (3, 5, None)),
        ("1990-03-15", (3, 15, 1990)),
        ("1990年3月15日", (3, 15, 1990)),
        ("3月15日", (3, 15, None)),
        ("02-29", (2, 29, None)),
        ("1991-02-29", None),
        ("13-01", None),
        ("00-10", None),
        ("2030-01-01", None),
        ("1850-01-01", None),
        ("tomorrow", None),
        ("", None),
    ],
)
def test_parse_birthday(text: str, parsed: tuple[int, int, int | None] | None) -> None:
    assert parse_birthday(text, TODAY) == parsed


async def test_the_same_birthday_typed_again_keeps_the_gift_it_was_promised(
    sandbox: Sandbox,
) -> None:
    sandbox.services.clock = lambda: datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    chat = await open_settings(sandbox)
    await chat.tap("🎂 设置生日")
    await chat.send("05-20")
    # Ten days before the date the member types it again: nothing changed, so the gift stands
    # (the birthday job judges the first entry, and so does the reply).
    sandbox.services.clock = lambda: datetime(2027, 5, 10, 4, 0, tzinfo=UTC)
    await chat.send("/settings")
    await chat.tap("🎂 修改生日")
    [again] = await chat.send("05-20")
    assert again.text == "🎂 已保存生日：5 月 20 日。\n生日当天您将收到 88 积分生日礼。"


async def test_the_rules_state_the_birthday_terms_the_gift_is_given_on(sandbox: Sandbox) -> None:
    birthday = sandbox.config.birthday
    rules = joined(await sandbox.member(5102).send("/rules"))
    assert (
        f"• 生日当天赠送 {birthday.gift_points} 积分（请在 /settings 中填写生日；"
        f"生日前不足 {birthday.min_days_before} 天（含生日当天）才填写或修改的，当年不赠送；"
        "生日一年内只能修改一次）。"
    ) in (rules.text or "")


# --- whether pushes can reach a member -------------------------------------------------------

GREETING = "🎂 生日快乐！感谢您一直以来的支持。"


async def push_and_deliver(sandbox: Sandbox, user_id: int, key: str) -> list[str]:
    """Queue a service push to the member, drain the outbox; return the bot's texts to them."""
    member = await sandbox.services.members.by_telegram_id(user_id)
    assert member is not None
    push = Push(key, member.id, SERVICE, "push.birthday", {})
    await sandbox.services.pushes.enqueue([push], NOW)
    await sandbox.services.sender.drain()
    return [m.text or "" for m in sandbox.emu.messages(user_id) if m.from_bot]


async def all_handled(sandbox: Sandbox) -> None:
    """Wait until every update the emulator holds was fetched and has finished processing."""
    processor = sandbox.app.update_processor
    idle = 0
    for _ in range(500):
        busy = (
            sandbox.emu.pending_update_count
            or not sandbox.app.update_queue.empty()
            or processor.current_concurrent_updates
        )
        idle = 0 if busy else idle + 1
        if idle == 3:  # idle across a few loop turns: nothing is between queue and processor
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the bot did not finish the updates")


async def test_removing_the_bot_from_a_group_keeps_the_member_reachable(
    sandbox: Sandbox,
) -> None:
    chat = sandbox.member(5201)
    await chat.send("/start")
    sandbox.emu.user_removes_bot_from_group(5201, group_id=-100777, title="门店群")
    await all_handled(sandbox)
    assert (await sandbox.services.pushes.preferences(5201)).reachable
    assert GREETING in await push_and_deliver(sandbox, 5201, "after-group")


async def test_blocking_in_private_still_stops_pushes_and_a_group_removal_does_not_undo_it(
    sandbox: Sandbox,
) -> None:
    chat = sandbox.member(5202)
    await chat.send("/start")
    chat.block()
    sandbox.emu.user_removes_bot_from_group(5202, group_id=-100778)
    await all_handled(sandbox)
    assert not (await sandbox.services.pushes.preferences(5202)).reachable
    assert (await sandbox.services.pushes.counts()).get("unreachable") is None
    await push_and_deliver(sandbox, 5202, "while-blocked")
    assert (await sandbox.services.pushes.counts()).get("unreachable") == 1


async def test_a_private_message_makes_a_member_marked_unreachable_reachable_again(
    sandbox: Sandbox,
) -> None:
    chat = sandbox.member(5203)
    await chat.send("/start")
    # A 403 once (or a group removal recorded by an older version) marked them unreachable.
    sandbox.emu.fail_next("sendMessage", error_code=403)
    assert GREETING not in await push_and_deliver(sandbox, 5203, "refused")
    assert not (await sandbox.services.pushes.preferences(5203)).reachable
    # The member writes to the bot privately: it can reach them.
    [reply] = await chat.send("/balance")
    assert (reply.text or "").startswith("💰 可用积分")
    assert (await sandbox.services.pushes.preferences(5203)).reachable
    assert GREETING in await push_and_deliver(sandbox, 5203, "after-message")


async def test_a_private_update_of_a_reachable_member_writes_nothing(sandbox: Sandbox) -> None:
    chat = sandbox.member(5204)
    await chat.send("/start")
    pushes = sandbox.services.pushes
    writes = 0
    write = pushes._write

    async def counting(fn: Callable[[sqlite3.Connection], T]) -> T:
        nonlocal writes
        writes += 1
        return await write(fn)

    pushes._write = counting  # type: ignore[method-assign]
    try:
        [reply] = await chat.send("/balance")
    finally:
        del pushes._write
    assert (reply.text or "").startswith("💰 可用积分")
    assert writes == 0  # knowing the member is reachable costs no write
