"""/settings through the sandbox: a birthday (changed at most once a year), promotions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bot.programme.birthdays import parse_birthday
from bot.sandbox.client import ChatClient
from tests.conftest import Sandbox

TODAY = date(2026, 11, 25)


async def open_settings(sandbox: Sandbox, user_id: int = 5101, lang: str = "zh-hans") -> ChatClient:
    chat = sandbox.member(user_id, language_code=lang)
    await chat.send("/start")
    await chat.send("/settings")
    return chat


async def test_settings_show_what_is_set(sandbox: Sandbox) -> None:
    chat = await open_settings(sandbox)
    assert chat.last_text == (
        "⚙️ 您的设置\n生日：未设置\n优惠活动消息：开\n（到期提醒、生日祝福等服务通知总会发送。）"
    )
    assert chat.buttons() == ["🎂 设置生日", "📣 关闭优惠活动消息", "🌐 语言 / Language"]


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
    [rules] = await sandbox.member(5102).send("/rules")
    assert (
        f"• 生日当天赠送 {birthday.gift_points} 积分（请在 /settings 中填写生日；"
        f"生日前 {birthday.min_days_before} 天内才填写或修改的，当年不赠送；"
        "生日一年内只能修改一次）。"
    ) in (rules.text or "")
