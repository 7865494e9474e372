"""Rewarded suggestions through the sandbox: /feedback with limits, and operators who approve
(paying once) or reject them; the member hears either way, and spam earns nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Config, FeedbackConfig
from bot.sandbox.client import ChatClient
from storage.audit import audit
from storage.members import Member
from tests.conftest import ADMIN_ID, Sandbox

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # noon in Shanghai
IDEA = "门店可以设置旧电池回收箱，方便大家环保回收。"
DENIED = "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, every reward paid must belong to an approved suggestion."""
    sandbox.services.clock = lambda: NOW
    yield
    report = await sandbox.services.store.read(lambda conn: audit(conn, integrity="quick"))
    assert report.ok, str(report)


async def member(
    sandbox: Sandbox, user_id: int, lang: str = "zh-hans"
) -> tuple[ChatClient, Member]:
    chat = sandbox.member(user_id, language_code=lang)
    await chat.send("/start")
    found = await sandbox.services.members.by_telegram_id(user_id)
    assert found is not None
    return chat, found


async def available(sandbox: Sandbox, who: Member) -> int:
    return (await sandbox.services.ledger.balance(who.id, NOW)).available


async def notice_to(chat: ChatClient, start: int) -> str:
    """The next message the member receives from the outbox (sent in the background)."""
    events = await chat.emu.wait_for_events(chat.user_id, start, 1, timeout=5)
    return events[0].text or ""


async def test_a_suggestion_in_two_steps_then_approved(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7201)
    [prompt] = await chat.send("/feedback")
    assert prompt.text == (
        "💡 请直接输入您的建议（10–1000 字），发送 /cancel 取消。\n"
        "建议经工作人员审核采纳后，可获得 20 积分。"
    )
    [thanks] = await chat.send(IDEA)
    assert thanks.text == (
        "🙏 已收到您的建议（编号 1），我们会认真阅读。\n审核结果会通知您；被采纳可得 20 积分。"
    )
    assert await available(sandbox, who) == 0  # nothing is paid for sending
    admin = sandbox.admin()
    title, item = await admin.send("/feedback_queue", expect=2)
    assert title.text == "💡 待审核建议共 1 条，以下是最早的 1 条："
    assert (item.text or "").splitlines()[1] == IDEA
    assert (item.text or "").startswith("💡 建议 #1 · 小明（会员号 ")
    assert item.buttons == ["✅ 采纳（+20 积分）", "❌ 不采纳"]
    seen = chat.emu.event_count(7201)
    await admin.tap("✅ 采纳（+20 积分）", message=item)
    assert admin.last_callback_answer == "已采纳，已发放 20 积分并通知会员。"
    decided = admin.emu.message(ADMIN_ID, item.message_id)
    assert decided is not None and decided.buttons == []
    assert (
        (decided.text or "")
        .splitlines()[-1]
        .startswith("✅ 已采纳（发放 20 积分）· telegram:100000001 · 2026-11-25 12:00")
    )
    assert await notice_to(chat, seen) == (
        "🎉 您的建议「门店可以设置旧电池回收箱，方便大家环保回收。」已被采纳，感谢！"
        "已为您发放 20 积分。"
    )
    assert await available(sandbox, who) == 20
    [statement] = await chat.send("/history")
    assert "建议被采纳  +20" in (statement.text or "")
    # The queue is empty now.
    [empty] = await admin.send("/feedback_queue")
    assert empty.text == "没有待审核的建议。"


async def test_approving_twice_pays_once(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7202)
    await chat.send(f"/feedback {IDEA}")
    admin = sandbox.admin()
    _title, item = await admin.send("/feedback_queue", expect=2)
    [approve] = [b for row in item.keyboard for b in row if b.text.startswith("✅")]
    assert approve.callback_data == "fb:a:1"
    # Two operators (or a double tap) approve at once.
    first = admin.emu.user_taps(ADMIN_ID, item.message_id, "fb:a:1")
    second = admin.emu.user_taps(ADMIN_ID, item.message_id, "fb:a:1")
    for _ in range(100):
        if admin.emu.callback_answer(first) and admin.emu.callback_answer(second):
            break
        await asyncio.sleep(0.02)
    answer = admin.emu.callback_answer(second)
    assert answer is not None and answer.text == "这条建议已处理：已采纳。"
    # A reject after the approval changes nothing either.
    await admin.tap_data(item.message_id, "fb:r:1", expect=0)
    assert admin.last_callback_answer == "这条建议已处理：已采纳。"
    assert await available(sandbox, who) == 20


async def test_a_rejected_suggestion_earns_nothing_and_the_member_is_told(
    sandbox: Sandbox,
) -> None:
    chat, who = await member(sandbox, 7203, "en")
    [thanks] = await chat.send("/feedback Please open on Sundays too, it would help a lot.")
    assert thanks.text == (
        "🙏 Thank you: suggestion No.1 received; we read every one.\n"
        "We will tell you the outcome; if adopted, you earn 20 points."
    )
    admin = sandbox.admin("en")
    _title, item = await admin.send("/feedback_queue", expect=2)
    seen = chat.emu.event_count(7203)
    await admin.tap("Decline", message=item)
    assert admin.last_callback_answer == "Declined; the member has been told."
    assert await notice_to(chat, seen) == (
        'Thank you for your suggestion "Please open on Sundays too, it would he…". We are not'
        " adopting it this time; more ideas are always welcome."
    )
    assert await available(sandbox, who) == 0
    await admin.tap_data(item.message_id, "fb:a:1", expect=0)
    assert admin.last_callback_answer == "This suggestion was already decided: not adopted."
    assert await available(sandbox, who) == 0


async def test_three_a_day(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7204)
    for n in range(3):
        [thanks] = await chat.send(f"/feedback 第 {n + 1} 条建议：多一些环保商品")
        assert (thanks.text or "").startswith(f"🙏 已收到您的建议（编号 {n + 1}）")
    [refused] = await chat.send("/feedback 第 4 条建议：多一些环保商品")
    assert refused.text == "今天已提交 3 条建议，已达上限，欢迎明天再来。"
    [refused_early] = await chat.send("/feedback")
    assert refused_early.text == refused.text  # refused before asking for the text
    _items, total = await sandbox.services.surveys.pending_feedback(limit=10)
    assert total == 3
    # The next local day (the programme's midnight) has room again.
    sandbox.services.clock = lambda: NOW + timedelta(hours=12)
    [tomorrow] = await chat.send("/feedback 第 4 条建议：多一些环保商品")
    assert (tomorrow.text or "").startswith("🙏 已收到您的建议（编号 4）")


async def test_length_limits_and_cancel(sandbox: Sandbox) -> None:
    chat, _who = await member(sandbox, 7205)
    await chat.send("/feedback")
    [short] = await chat.send("太贵")
    assert short.text == "建议太短了（2 字），请至少写 10 字，或发送 /cancel 取消。"
    [long] = await chat.send("长" * 1001)
    assert long.text == (
        "建议太长了（1001 字），请控制在 1000 字以内后重新发送，或发送 /cancel 取消。"
    )
    [cancelled] = await chat.send("/cancel")
    assert cancelled.text == "已取消，没有提交建议。"
    [stray] = await chat.send(IDEA)
    assert "没有看懂" in (stray.text or "")  # not filed once cancelled
    assert (await sandbox.services.surveys.pending_feedback(limit=5))[1] == 0


async def test_the_suggestion_button_under_surveys(sandbox: Sandbox) -> None:
    chat, _who = await member(sandbox, 7206)
    await chat.send("/surveys")
    await chat.tap("💡 提建议")
    assert (chat.last_text or "").startswith("💡 请直接输入您的建议")
    [thanks] = await chat.send(IDEA)
    assert (thanks.text or "").startswith("🙏 已收到您的建议（编号 1）")


async def test_members_cannot_review(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7207)
    await chat.send(f"/feedback {IDEA}")
    [denied] = await chat.send("/feedback_queue")
    assert denied.text == DENIED
    # A forged approve button of their own suggestion is refused too.
    last = chat.last_message
    assert last is not None
    await chat.tap_data(last.message_id, "fb:a:1", expect=0)
    assert chat.last_callback_answer == DENIED
    assert await available(sandbox, who) == 0
    assert (await sandbox.services.surveys.feedback_item(1)).status == "pending"


@pytest.mark.parametrize("data", ["fb:a:999", "fb:a:0", "fb:a:x", "fb:a:1:2", "fb:zz", "fb:r:-1"])
async def test_forged_review_buttons(sandbox: Sandbox, data: str) -> None:
    chat, who = await member(sandbox, 7208)
    await chat.send(f"/feedback {IDEA}")
    admin = sandbox.admin()
    [_title, item] = await admin.send("/feedback_queue", expect=2)
    await admin.tap_data(item.message_id, data, expect=0)
    assert admin.last_callback_answer == "此按钮已失效，请重新操作。"
    assert (await sandbox.services.surveys.feedback_item(1)).status == "pending"
    assert await available(sandbox, who) == 0


def feedback_off(config: Config) -> Config:
    return config.model_copy(update={"feedback": FeedbackConfig(enabled=False)})


@pytest.mark.parametrize("configure", [[feedback_off]])
async def test_feedback_switched_off(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat, _who = await member(sandbox, 7209)
    [off] = await chat.send(f"/feedback {IDEA}")
    assert off.text == "暂不接受建议，感谢关注。"
    [listing] = await chat.send("/surveys")
    assert "💡 提建议" not in listing.buttons
