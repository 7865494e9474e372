"""/tasks through the sandbox: a new member's open tasks, progress made by a purchase task, a
completed one with its reward and reset day; the survey kind completed by answering the survey
in the chat; and the tasks-and-badges section of /rules in both languages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from telegram.constants import MessageLimit

from bot.programme.tasks import advance_task
from bot.sandbox.client import ChatClient
from storage.audit import audit
from storage.members import Member
from storage.tasks import TaskStep, completions, progress_of
from tests.conftest import NOW, Sandbox, available


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, every task reward must still match its completion."""
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


async def purchase_progress(sandbox: Sandbox, who: Member, delta: int) -> TaskStep:
    """What a booked eco purchase does to the monthly purchases task (the purchase itself is
    the purchase tasks' work)."""
    config = sandbox.config
    task = config.task("eco_monthly")
    assert task is not None
    return await sandbox.services.store.write(
        lambda conn: advance_task(conn, task, who.id, delta, config, NOW, actor="till:test")
    )


async def test_a_new_member_sees_every_open_task_with_no_progress(sandbox: Sandbox) -> None:
    chat, _who = await member(sandbox, 8101)
    [reply] = await chat.send("/tasks")
    text = reply.text or ""
    assert text.startswith("🎯 任务挑战（进行中 8 项，本期已完成 0 项）\n\n📸 分享绿色消费\n")
    assert (
        "🌿 本月 3 次绿色消费\n"
        "░░░ 0/3 次消费 · 2026-11-30 截止\n"
        "奖励：30 积分 + 🌿「绿色常客」勋章\n"
        "做法：购买绿色环保商品、补充装与裸装商品，每次消费计 1 次"
    ) in text
    assert "░ 0/1 次分享 · 今天截止\n" in text
    assert "░░░░░░░░░░ 0/300 元 · 2026-11-30 截止\n奖励：50 积分\n" in text
    assert "📋 完成积分权益问卷\n░ 0/1 份问卷 · 长期有效\n奖励：📋「会员之声」勋章\n" in text
    assert "做法：在活动现场扫码，或发送 /checkin 加活动码签到" in text
    assert len(text) <= MessageLimit.MAX_TEXT_LENGTH
    # No English in a Chinese reply (the only Latin letters are the commands).
    assert not re.search("[A-Za-z]", re.sub(r"/[a-z_]+", "", text))


async def test_the_menu_button_and_english(sandbox: Sandbox) -> None:
    chat, _who = await member(sandbox, 8102, "en")
    await chat.tap("🎯 Tasks")
    text = chat.last_text or ""
    assert text.startswith("🎯 Tasks (8 to do, 0 done this time round)")
    assert "░░░ 0/3 purchases · until 2026-11-30\n" in text
    assert "░ 0/1 share · ends today\n" in text
    assert (
        "Reward: the 📋 “Member's voice” badge\nHow: complete “Points benefits survey” in /surveys"
        in text
    )
    assert len(text) <= MessageLimit.MAX_TEXT_LENGTH


async def test_progress_then_completion_pays_once_and_says_when_it_resets(
    sandbox: Sandbox,
) -> None:
    chat, who = await member(sandbox, 8103)
    await purchase_progress(sandbox, who, 2)
    [reply] = await chat.send("/tasks")
    assert "🌿 本月 3 次绿色消费\n▓▓░ 2/3 次消费 · 2026-11-30 截止\n" in (reply.text or "")
    done = await purchase_progress(sandbox, who, 1)
    assert done.completed_now and done.reward_operation_id is not None
    # A later purchase the same month moves progress but pays nothing more.
    again = await purchase_progress(sandbox, who, 1)
    assert not again.completed_now and again.progress == 4
    assert await available(sandbox, who) == 30
    [reply] = await chat.send("/tasks")
    text = reply.text or ""
    assert text.startswith("🎯 任务挑战（进行中 7 项，本期已完成 1 项）")
    # Done tasks come after the ones still to do.
    assert text.endswith("✅ 本月 3 次绿色消费：已完成\n   2026-12-01 起可再次完成")
    assert "▓▓▓" not in text


async def test_answering_the_named_survey_completes_the_survey_task(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 8104)
    await chat.send("/surveys")
    await chat.tap("积分权益问卷")
    await chat.tap("积分抵现")
    await chat.tap("会员积分翻倍日")
    await chat.tap("完成")
    await chat.tap("4⭐")
    before = sandbox.emu.event_count(8104)
    [done] = await chat.send("希望增加旧衣回收点")
    assert (done.text or "").startswith("🎉 感谢您完成「积分权益问卷」！")
    steps = await sandbox.services.store.read(
        lambda conn: progress_of(conn, who.id, [("benefits_survey", "once")])
    )
    step = steps[("benefits_survey", "once")]
    # Completed with the survey; a badge-only task books no points of its own.
    assert step.completed and step.progress == 1 and step.reward_operation_id is None
    assert await available(sandbox, who) == 50  # the survey's own reward, once
    await sandbox.services.sender.drain()
    told = [e.text for e in sandbox.emu.events(8104, after=before)]
    assert "🎯 任务完成：完成积分权益问卷！" in told
    [reply] = await chat.send("/tasks")
    text = reply.text or ""
    assert text.endswith("✅ 完成积分权益问卷：已完成")  # done once, never resets
    # The other survey completes no task.
    await chat.send("/surveys")
    await chat.tap("门店服务满意度调查")
    await chat.tap("5⭐")
    await chat.tap("每周")
    await chat.send("很好")
    count = await sandbox.services.store.read(
        lambda conn: completions(conn, who.id, "benefits_survey")
    )
    assert count == 1


async def test_rules_list_tasks_badges_and_sets(sandbox: Sandbox) -> None:
    chat, _who = await member(sandbox, 8105)
    replies = await chat.send("/rules")
    text = "\n".join(r.text or "" for r in replies)
    assert "【任务与勋章】\n• 分享绿色消费（每天可完成一次）：" in text
    assert (
        "• 完成积分权益问卷（限完成一次）：在 /surveys 中完成「积分权益问卷」，"
        "目标 1 份问卷；奖励：📋「会员之声」勋章"
    ) in text
    assert "• 🌍「千元绿色消费」：绿色消费累计满 1000 元" in text
    assert "• 📋「会员之声」：首次完成「完成积分权益问卷」" in text
    assert "大奖：500 积分（每人一次）" in text
    assert "大奖：「帆布环保购物袋」一份（每人一次）" in text
    english = sandbox.member(8106, language_code="en")
    await english.send("/start")
    replies = await english.send("/rules")
    text = "\n".join(r.text or "" for r in replies)
    assert "【Tasks and badges】\n• Share a green purchase (once a day): " in text
    assert "target 300 yuan; reward: 50 points" in text
    assert "for a grand prize of 500 points (once per member)" in text
    assert "for a grand prize: Canvas shopping bag (once per member)" in text
