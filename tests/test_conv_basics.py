"""First contact through the sandbox: /start, /rules, /help, /language, and the fallbacks."""

from __future__ import annotations

import pytest

from handlers.common import Texts
from handlers.info import render_rules
from tests.conftest import Sandbox, joined


async def test_start_registers_a_new_member_and_shows_the_menu(sandbox: Sandbox) -> None:
    member = sandbox.member()
    [reply] = await member.send("/start")
    assert "欢迎加入红米好物「绿色消费积分」，小明" in (reply.text or "")
    registered = await sandbox.services.members.by_telegram_id(member.user_id)
    assert registered is not None
    assert registered.member_code in (reply.text or "")
    assert reply.buttons[:3] == ["💰 我的积分", "🧾 积分明细", "🪪 会员码"]
    assert "📜 积分规则" in reply.buttons


async def test_returning_member_is_welcomed_back_with_the_same_code(sandbox: Sandbox) -> None:
    member = sandbox.member()
    [first] = await member.send("/start")
    [again] = await member.send("/start")
    assert "欢迎回来，小明" in (again.text or "")
    assert await sandbox.services.members.count() == 1
    registered = await sandbox.services.members.by_telegram_id(member.user_id)
    assert registered is not None
    assert registered.member_code in (first.text or "")
    assert registered.member_code in (again.text or "")


async def test_deep_link_payload_is_kept_for_referrals(sandbox: Sandbox) -> None:
    member = sandbox.member()
    await member.send("/start ref_1234567897")
    registered = await sandbox.services.members.by_telegram_id(member.user_id)
    assert registered is not None and registered.start_payload == "ref_1234567897"


async def test_rules_in_chinese_are_generated_from_the_configuration(sandbox: Sandbox) -> None:
    reply = joined(await sandbox.member().send("/rules"))
    text = reply.text or ""
    assert text.startswith("📜 红米好物「绿色消费积分」规则")
    assert "绿色环保商品：每满 1 元 2 积分" in text
    assert "12 个月内有效" in text
    assert "兑换后 7 天内，可在 /redemptions 办理取消或退货" in text
    assert "退回的积分至少 30 天内有效" in text
    assert "至少提前 30 天通知" in text
    assert "400-800-1234" in text


async def test_rules_in_english_for_an_english_telegram_client(sandbox: Sandbox) -> None:
    # Longer than one Telegram message in English: sent in parts, cut between sections.
    replies = await sandbox.member(language_code="en-GB").send("/rules", expect=2)
    assert all(len(reply.text or "") <= 4096 for reply in replies)
    text = "\n\n".join(reply.text or "" for reply in replies)
    services = sandbox.services
    whole = render_rules(services.config, services.clock(), Texts(services.i18n, "en"))
    assert text == whole  # nothing lost or repeated at the cut
    assert "Green Consumption Points" in text
    assert "Eco-friendly products: 2 per full yuan" in text
    assert "12 months" in text
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in text.replace("红米好物", ""))


async def test_language_button_switches_and_is_remembered(sandbox: Sandbox) -> None:
    member = sandbox.member()
    [ask] = await member.send("/language")
    assert ask.buttons == ["中文", "English"]
    await member.tap("English")
    assert member.last_text == "✅ Language switched to English."
    [help_reply] = await member.send("/help")
    assert "/balance — your points" in (help_reply.text or "")
    stored = await sandbox.services.members.by_telegram_id(member.user_id)
    assert stored is not None and stored.language == "en"


async def test_language_argument_switches_at_once(sandbox: Sandbox) -> None:
    member = sandbox.member(language_code="en")
    [reply] = await member.send("/language 中文")
    assert reply.text == "✅ 语言已切换为中文。"
    rules = joined(await member.send("/rules"))
    assert "规则" in (rules.text or "")


async def test_unknown_language_argument_offers_the_buttons(sandbox: Sandbox) -> None:
    [reply] = await sandbox.member().send("/language klingon")
    assert "klingon" in (reply.text or "")
    assert reply.buttons == ["中文", "English"]


async def test_help_lists_member_commands_and_not_staff_ones(sandbox: Sandbox) -> None:
    [reply] = await sandbox.member().send("/help")
    text = reply.text or ""
    for command in ("/start", "/balance", "/history", "/card", "/rules", "/language"):
        assert command in text
    assert "/purchase" not in text
    assert "400-800-1234" in text


async def test_help_for_staff_adds_the_till_commands(sandbox: Sandbox) -> None:
    [reply] = await sandbox.admin().send("/help")
    assert "/purchase" in (reply.text or "") and "/adjust" in (reply.text or "")


@pytest.mark.parametrize(
    ("language", "expected"),
    [("zh-hans", "未知命令 /teleport"), ("en", "Unknown command /teleport")],
)
async def test_unknown_command_points_to_help(
    sandbox: Sandbox, language: str, expected: str
) -> None:
    [reply] = await sandbox.member(language_code=language).send("/teleport now")
    assert expected in (reply.text or "")
    assert "/help" in (reply.text or "")


async def test_a_sticker_gets_a_text_only_answer(sandbox: Sandbox) -> None:
    [reply] = await sandbox.member(language_code="en").send_sticker()
    assert reply.text == "I can only read text messages. Send /help to see what I can do."


async def test_stray_text_shows_the_menu(sandbox: Sandbox) -> None:
    [reply] = await sandbox.member().send("你好")
    assert "💰 我的积分" in reply.buttons


async def test_forged_button_gets_the_expired_alert(sandbox: Sandbox) -> None:
    member = sandbox.member()
    [start] = await member.send("/start")
    await member.tap_data(start.message_id, "mall:buy:999", expect=0)
    assert member.last_callback_answer == "此按钮已失效，请重新操作。"
    assert member.last_callback_event is not None and member.last_callback_event.show_alert


async def test_command_menus_are_published_in_both_languages(sandbox: Sandbox) -> None:
    default = [c["command"] for c in sandbox.emu.commands()]
    english = {c["command"]: c["description"] for c in sandbox.emu.commands(language_code="en")}
    assert default[:4] == ["start", "balance", "history", "card"]
    assert english["balance"] == "My points and when they expire"
    assert "purchase" not in default  # staff commands stay out of everyone's menu
