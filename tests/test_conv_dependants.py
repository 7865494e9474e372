"""Family birthdays in /settings through the sandbox: add a child and a pet, bad names and dates,
the limit, a change too soon, removal, /cancel, stale and forged buttons, /rules, a restart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Config
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from tests.conftest import NOW, Sandbox, assert_audit_ok
from tests.restart_support import assert_audit_ok as restart_audit_ok
from tests.restart_support import bot_on


async def member_id(sandbox: Sandbox, user_id: int) -> int:
    """The member id of a Telegram user."""
    found = await sandbox.services.members.by_telegram_id(user_id)
    assert found is not None
    return found.id


async def family(sandbox: Sandbox, user_id: int = 7201, lang: str = "zh-hans") -> ChatClient:
    chat = sandbox.member(user_id, language_code=lang)
    await chat.send("/start")
    await chat.send("/settings")
    await chat.tap("👶🐾")
    return chat


async def add(chat: ChatClient, kind: str, name: str, birthday: str) -> str:
    """Add a dependant through the buttons and typed answers; the last reply."""
    await chat.tap("➕")
    await chat.tap(kind)
    await chat.send(name)
    [saved] = await chat.send(birthday)
    return saved.text or ""


async def test_add_a_child_and_a_pet(sandbox: Sandbox) -> None:
    chat = await family(sandbox)
    assert chat.last_text == (
        "👶🐾 家人生日\n添加孩子或宠物的生日，生日当天我们会为 TA 送上祝福和礼物。"
        "最多可添加 4 位（已添加 0 位）。\n还没有添加家人。"
    )
    await chat.tap("➕ 添加孩子或宠物")
    assert chat.last_text == "要添加的是孩子还是宠物？"
    assert chat.buttons() == ["👶 孩子", "🐾 宠物", "⬅️ 返回家人生日"]
    await chat.tap("👶 孩子")
    assert chat.last_text == "请发送孩子的名字或小名（最多 20 个字）。发送 /cancel 取消。"
    [asked] = await chat.send("  小宝  ")
    assert asked.text == (
        "请发送「小宝」的生日，例如 03-15 或 2020-03-15（年份可不填）。发送 /cancel 取消。"
    )
    [saved] = await chat.send("2021-05-20")
    assert saved.text == "🎂 已保存「小宝」的生日：5 月 20 日。\n生日当天您将收到 66 积分生日礼。"
    await chat.tap("⬅️ 返回家人生日")
    await chat.tap("➕ 添加孩子或宠物")
    await chat.tap("🐾 宠物")
    await chat.send("Mimi")
    [saved] = await chat.send("3月1日")
    assert saved.text == (
        "🎂 已保存「Mimi」的生日：3 月 1 日。\n生日当天您将收到一张「宠物生日蛋糕兑换券」。"
    )
    await chat.tap("⬅️ 返回家人生日")
    assert chat.last_text is not None
    assert chat.last_text.endswith("（已添加 2 位）。\n👶 小宝：5 月 20 日\n🐾 Mimi：3 月 1 日")
    assert chat.buttons() == [
        "✏️ 修改「小宝」的生日",
        "🗑 删除「小宝」",
        "✏️ 修改「Mimi」的生日",
        "🗑 删除「Mimi」",
        "➕ 添加孩子或宠物",
    ]


async def test_bad_names_and_dates_are_explained(sandbox: Sandbox) -> None:
    chat = await family(sandbox)
    await chat.tap("➕")
    await chat.tap("🐾 宠物")
    [bad] = await chat.send("一二三四五六七八九十一二三四五六七八九十一")
    assert bad.text == (
        "名字需为 1–20 个字，且不能包含换行等特殊字符。请重新发送，或发送 /cancel 取消。"
    )
    [bad] = await chat.send("Mi\nmi")
    assert bad.text is not None and bad.text.startswith("名字需为 1–20 个字")
    await chat.send("Mimi")
    [bad] = await chat.send("02-30")
    assert bad.text == (
        "「02-30」不是有效的日期。请按 03-15 或 1990-03-15 的格式输入，或发送 /cancel 取消。"
    )
    [saved] = await chat.send("12-01")  # six days ahead at NOW
    assert saved.text == (
        "🎂 已保存「Mimi」的生日：12 月 1 日。\n"
        "由于是在生日前 30 天内添加或修改的，今年不送生日礼；明年起照常赠送。"
    )
    # The same name again is refused, and another may be typed.
    await chat.tap("⬅️ 返回家人生日")
    await chat.tap("➕")
    await chat.tap("🐾 宠物")
    [taken] = await chat.send("mimi")
    assert taken.text == "您已经添加过「mimi」了。请换一个名字，或发送 /cancel 取消。"
    [cancelled] = await chat.send("/cancel")
    assert cancelled.text == "已取消，家人生日没有变动。"
    # Outside the conversation a date is stray text, not a birthday.
    await chat.send("03-03")
    [member] = [m for m in [await sandbox.services.members.by_telegram_id(7201)] if m]
    assert len(await sandbox.services.dependants.dependants_of(member.id)) == 1


def two_dependants(config: Config) -> Config:
    return config.model_copy(
        update={"family": config.family.model_copy(update={"max_dependants": 2})}
    )


def unhurried(config: Config) -> Config:
    """No flood guard in the way of a long scripted conversation."""
    return config.model_copy(
        update={"limits": config.limits.model_copy(update={"flood_updates": 1000})}
    )


@pytest.mark.parametrize("configure", [[two_dependants, unhurried]])
async def test_the_limit_then_remove_one(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat = await family(sandbox, 7202)
    await add(chat, "🐾 宠物", "Mimi", "06-01")
    await chat.tap("⬅️")
    await add(chat, "👶 孩子", "小宝", "07-01")
    await chat.tap("⬅️")
    await chat.tap("➕")
    await chat.tap("🐾 宠物")
    assert chat.last_text == "最多可添加 2 位孩子或宠物的生日，请先删除一位再添加。"
    # Typed text now is no name: nothing was asked.
    await chat.send("Coco")
    await chat.send("/settings")
    await chat.tap("👶🐾")
    await chat.tap("🗑 删除「Mimi」")
    assert (
        chat.last_text == "确定删除「Mimi」吗？重新添加时，生日一年内只能修改一次的规则仍然有效。"
    )
    await chat.tap("确定删除")
    assert chat.last_text is not None and chat.last_text.startswith("已删除「Mimi」。\n\n")
    assert "Mimi" not in chat.last_text.split("\n\n", 1)[1]
    # The confirmation tapped again (a double tap) removes nothing more: the same list.
    shown = chat.last_message
    assert shown is not None
    mimi = (await sandbox.services.dependants.history_of(await member_id(sandbox, 7202)))[0]
    await chat.tap_data(shown.message_id, f"dep:rmok:{mimi.id}", expect=0)
    assert chat.last_text == shown.text
    text = await add(chat, "🐾 宠物", "Coco", "08-01")
    assert text.startswith("🎂 已保存「Coco」的生日")
    await assert_audit_ok(sandbox)


@pytest.mark.parametrize("configure", [[unhurried]])
async def test_a_change_too_soon_in_english(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat = await family(sandbox, 7203, lang="en")
    await chat.tap("➕ Add a child or pet")
    await chat.tap("🐾 A pet")
    assert (
        chat.last_text == "Please send your pet's name (up to 20 characters). Send /cancel to stop."
    )
    await chat.send("Rex")
    [saved] = await chat.send("2020-04-04")
    assert saved.text == (
        "🎂 Rex's birthday is saved: 4/4 (month/day).\n"
        "On the day you will receive a Pet birthday cake voucher."
    )
    await chat.tap("⬅️ Back to family birthdays")
    await chat.tap("✏️ Change Rex's birthday")
    assert chat.last_text == (
        "Please send Rex's new birthday, e.g. 03-15. A birthday can be changed once a year."
        " Send /cancel to stop."
    )
    [changed] = await chat.send("04-05")
    assert (changed.text or "").startswith("🎂 Rex's birthday is saved: 4/5 (month/day).")
    await chat.tap("⬅️ Back to family birthdays")
    await chat.tap("✏️ Change Rex's birthday")
    assert chat.last_text == (
        "Rex's birthday can be changed only once a year; it was not changed. Please contact"
        " customer service with any questions."
    )
    # Removing it and adding it again with another date is the same change: refused too.
    await chat.send("/settings")
    await chat.tap("👶🐾")
    await chat.tap("🗑 Remove Rex")
    await chat.tap("Yes, remove")
    await chat.tap("➕ Add a child or pet")
    await chat.tap("🐾 A pet")
    await chat.send("rex")
    [refused] = await chat.send("09-09")
    text = refused.text
    assert text == (
        "rex was added before, and a birthday can be changed only once a year: please send the"
        " birthday you gave before, or change it next year."
    )
    # A year later the change is allowed.
    later = NOW + timedelta(days=366)
    sandbox.services.clock = lambda: later
    await chat.tap("⬅️ Back to family birthdays")
    text = await add(chat, "🐾 A pet", "Rex", "09-09")
    assert text.startswith("🎂 Rex's birthday is saved: 9/9 (month/day).")


async def test_stale_and_forged_buttons(sandbox: Sandbox) -> None:
    owner = await family(sandbox, 7204)
    await add(owner, "🐾 宠物", "Mimi", "06-01")
    await owner.tap("⬅️")
    removal = owner.last_message
    assert removal is not None
    other = sandbox.member(7205)
    await other.send("/start")
    [menu] = await other.send("/settings")
    # Someone else's dependant id in a forged button: expired, nothing removed.
    mimi = (await sandbox.services.dependants.history_of(await member_id(sandbox, 7204)))[0]
    await other.tap_data(menu.message_id, f"dep:rmok:{mimi.id}")
    assert other.last_text == "此按钮已失效，请重新操作。"
    await other.tap_data(menu.message_id, f"dep:chg:{mimi.id}")
    assert other.last_text == "此按钮已失效，请重新操作。"
    await other.tap_data(menu.message_id, "dep:rm:x", expect=0)
    assert other.last_callback_answer == "此按钮已失效，请重新操作。"
    await other.tap_data(menu.message_id, "dep:kind:dragon", expect=0)
    assert other.last_callback_answer == "此按钮已失效，请重新操作。"
    assert len(await sandbox.services.dependants.dependants_of(mimi.member_id)) == 1


async def test_rules_name_the_family_gifts(sandbox: Sandbox) -> None:
    chat = sandbox.member(7206)
    await chat.send("/start")
    replies = await chat.send("/rules")
    rules = "\n".join(r.text or "" for r in replies)
    assert "• 孩子生日：在 /settings 的「家人生日」中添加孩子，生日当天赠送 66 积分。" in rules
    pet = (
        "• 宠物生日：在 /settings 的「家人生日」中添加宠物，"
        "生日当天赠送一张「宠物生日蛋糕兑换券」（赠券不能取消换回积分）。"
    )
    assert pet in rules
    assert "• 最多可添加 4 位孩子或宠物；" in rules
    english = sandbox.member(7207, language_code="en")
    await english.send("/start")
    replies = await english.send("/rules", expect=2)
    rules = "\n".join(r.text or "" for r in replies)
    assert "receive a Pet birthday cake voucher on the day" in rules
    # In /rules right after the member's own birthday line.
    lines = rules.split("\n")
    own = next(i for i, line in enumerate(lines) if "On your birthday" in line)
    # (Its tiers' gifts first: they are about the member's own birthday too.)
    assert lines[own + 1].startswith("• Birthday gift by tier")
    assert lines[own + 2].startswith("• Children's birthdays")


async def test_time_moves_and_the_list_stays(sandbox: Sandbox) -> None:
    chat = await family(sandbox, 7208)
    await add(chat, "👶 孩子", "小宝", "05-20")
    sandbox.services.clock = lambda: datetime(2027, 5, 1, 4, tzinfo=UTC)
    await chat.send("/settings")
    await chat.tap("👶🐾")
    assert "👶 小宝：5 月 20 日" in (chat.last_text or "")


async def test_a_restart_between_name_and_birthday_loses_nothing(sample_config: Config) -> None:
    async with BotApiEmulator() as emu:
        chat = ChatClient(emu, 7209, first_name="小明")
        async with bot_on(emu, sample_config):
            await chat.send("/start")
            await chat.send("/settings")
            await chat.tap("👶🐾")
            await chat.tap("➕")
            await chat.tap("🐾 宠物")
            await chat.send("旺财")
        # A new process on the same database: the bot still waits for 旺财's birthday.
        async with bot_on(emu, sample_config) as app:
            [saved] = await chat.send("2022-06-06")
            assert saved.text == (
                "🎂 已保存「旺财」的生日：6 月 6 日。\n生日当天您将收到一张「宠物生日蛋糕兑换券」。"
            )
            await restart_audit_ok(app)
