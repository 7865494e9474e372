"""Reward surveys through the sandbox: every kind of question, Back, Skip, /cancel and resume,
a restart halfway, one reward however often the last answer is tapped, and operators' stats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.config import Config, Survey
from bot.programme.calendar import display_expiry
from bot.programme.expiry import expires_at
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from storage.audit import audit
from storage.members import Member
from storage.persistence import conversation_counts
from storage.surveys import Progress
from tests.conftest import Sandbox, joined
from tests.restart_support import assert_audit_ok, bot_on

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # noon in Shanghai
BENEFITS = "benefits_2026"
DENIED = "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, the ledger, the surveys and their rewards must still add up."""
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


async def response(sandbox: Sandbox, who: Member, survey_id: str = BENEFITS) -> Progress:
    found = await sandbox.services.surveys.progress(survey_id, who.id)
    assert found is not None
    return found


def reward_day(config: Config) -> str:
    expiry = expires_at(NOW, config, "survey")
    assert expiry is not None
    return display_expiry(expiry, config).isoformat()


async def open_benefits(chat: ChatClient) -> None:
    await chat.send("/surveys")
    await chat.tap("积分权益问卷")


async def answer_first_three(chat: ChatClient) -> None:
    await chat.tap("积分抵现")
    await chat.tap("会员积分翻倍日")
    await chat.tap("更多合作门店")
    await chat.tap("完成")
    await chat.tap("4⭐")


async def test_a_full_survey_of_every_kind(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7101)
    [listing] = await chat.send("/surveys")
    assert listing.text == (
        "📋 有奖问卷\n"
        "• 积分权益问卷：共 4 题，完成可得 50 积分，2027-12-31 截止\n"
        "• 门店服务满意度调查：共 3 题，完成可得 20 积分，2027-06-30 截止\n"
        "💡 有想法？点下方按钮提建议，被采纳可得积分。"
    )
    assert listing.buttons == [
        "📝 积分权益问卷（+50 积分）",
        "📝 门店服务满意度调查（+20 积分）",
        "💡 提建议",
    ]
    await chat.tap("积分权益问卷")
    assert chat.last_text == (
        "📝 积分权益问卷\n"
        "告诉我们您最想要的积分权益，帮助我们改进会员计划。\n"
        "共 4 题，完成可得 50 积分，2027-12-31 截止\n\n"
        "【积分权益问卷】第 1/4 题\n您最常用积分做什么？\n请选择一项："
    )
    assert chat.buttons() == ["兑换商品", "兑换优惠券", "积分抵现", "转盘和刮刮乐"]
    # Single choice: one tap answers and moves on.
    await chat.tap("积分抵现")
    assert chat.last_text == (
        "【积分权益问卷】第 2/4 题\n您希望新增哪些权益？（最多选 3 项）\n"
        "最多选 3 项，选好后点「完成」："
    )
    # Multiple choice: taps toggle, Done confirms.
    await chat.tap("会员积分翻倍日")
    await chat.tap("更多合作门店")
    await chat.tap("积分有效期更长")
    await chat.tap("积分有效期更长")
    assert chat.buttons() == [
        "☑️ 会员积分翻倍日",
        "⬜ 积分兑换免运费",
        "☑️ 更多合作门店",
        "⬜ 积分有效期更长",
        "⬜ 旧物回收换积分",
        "✔️ 完成（已选 2 项）",
        "⬅️ 上一题",
    ]
    await chat.tap("完成")
    # Rating: 1 to 5.
    assert "第 3/4 题\n积分规则是否容易理解？" in (chat.last_text or "")
    assert chat.buttons() == ["1⭐", "2⭐", "3⭐", "4⭐", "5⭐", "⬅️ 上一题"]
    await chat.tap("4⭐")
    # Free text, optional.
    assert chat.last_text == (
        "【积分权益问卷】第 4/4 题\n还有什么想对我们说的？（选填）\n"
        "请直接输入您的回答（不超过 300 字）。\n（选填，可跳过）"
    )
    assert chat.buttons() == ["⬅️ 上一题", "跳过 ⏭"]
    assert await available(sandbox, who) == 0  # nothing is paid before the last answer
    [done] = await chat.send("希望增加旧衣回收点")
    assert done.text == (
        "🎉 感谢您完成「积分权益问卷」！\n"
        f"已获得 50 积分（{reward_day(sandbox.config)} 前有效）。\n"
        "当前可用积分：50\n发送 /surveys 查看其他问卷。"
    )
    assert await available(sandbox, who) == 50
    answers = (await response(sandbox, who)).answers
    assert answers["favourite"].choices == ("bill",)
    assert answers["wanted"].choices == ("double_days", "partner_shops")
    assert answers["ease"].rating == 4
    assert answers["ideas"].text == "希望增加旧衣回收点"
    [again] = await chat.send("/surveys")
    assert "积分权益问卷" not in (again.text or "")
    assert "您已完成 1 份问卷，感谢参与！" in (again.text or "")
    # Outside the survey, text is just text again.
    [stray] = await chat.send("还有一个想法")
    assert "没有看懂" in (stray.text or "")


async def test_back_and_skip(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7102, "en")
    await chat.send("/surveys")
    await chat.tap("Points benefits survey")
    await chat.tap("Vouchers")
    await chat.tap("Double-points days")
    await chat.tap("⬅️ Back")
    # The earlier answer is marked; a different one replaces it.
    assert chat.buttons() == [
        "Redeeming goods",
        "✅ Vouchers",
        "Points off my bill",
        "The wheel and scratch cards",
    ]
    await chat.tap("Redeeming goods")
    # The ticks made before going back are still there.
    assert chat.buttons()[0] == "☑️ Double-points days"
    await chat.tap("Done")
    await chat.tap("5⭐")
    await chat.tap("Skip")
    assert (chat.last_text or "").startswith(
        '🎉 Thank you for completing "Points benefits survey"!'
    )
    answers = (await response(sandbox, who)).answers
    assert answers["favourite"].choices == ("goods",)
    assert answers["ideas"].status == "skipped" and answers["ideas"].text is None
    assert await available(sandbox, who) == 50


async def test_back_to_a_text_answer_can_keep_it(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7103)
    await chat.send("/surveys")
    await chat.tap("门店服务满意度调查")
    await chat.tap("5⭐")
    await chat.tap("每周")
    # The last question is typed; Back from the completion is impossible, so go back first.
    await chat.tap("⬅️ 上一题")
    await chat.tap("每月")
    assert "第 3/3 题" in (chat.last_text or "")
    [done] = await chat.send("收银排队太久")
    assert (done.text or "").startswith("🎉 感谢您完成「门店服务满意度调查」！\n已获得 20 积分")
    answers = (await response(sandbox, who, "satisfaction_2026h2")).answers
    assert answers["visit"].choices == ("monthly",) and answers["improve"].text == "收银排队太久"


async def test_cancel_and_resume(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7104)
    await open_benefits(chat)
    await chat.tap("积分抵现")
    await chat.tap("会员积分翻倍日")
    [paused] = await chat.send("/cancel")
    assert paused.text == "问卷已暂停，已作答的内容已保存。随时发送 /surveys 从当前题目继续。"
    [stray] = await chat.send("兑换商品")
    assert "没有看懂" in (stray.text or "")  # no longer taken as an answer
    [listing] = await chat.send("/surveys")
    assert listing.buttons[0] == "▶️ 继续：积分权益问卷（第 2/4 题）"
    await chat.tap("继续")
    # The same question, with the box ticked before /cancel still ticked.
    assert (chat.last_text or "").startswith("【积分权益问卷】第 2/4 题")
    assert chat.buttons()[0] == "☑️ 会员积分翻倍日"
    await chat.tap("完成")
    await chat.tap("3⭐")
    [done] = await chat.send("无")
    assert (done.text or "").startswith("🎉 感谢您完成「积分权益问卷」！")
    assert await available(sandbox, who) == 50


async def test_text_where_a_button_is_expected(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7105)
    await open_benefits(chat)
    hint, question = await chat.send("积分抵现", expect=2)
    assert hint.text == "请点击问题下方的按钮作答（或发送 /cancel 暂停问卷）。"
    assert "第 1/4 题" in (question.text or "") and question.buttons[2] == "积分抵现"
    assert (await response(sandbox, who)).answers == {}
    await chat.tap("积分抵现", message=question)
    assert (await response(sandbox, who)).position == 1


async def test_an_over_long_answer_is_refused(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7106)
    await open_benefits(chat)
    await answer_first_three(chat)
    [refused] = await chat.send("好" * 301)
    assert refused.text == "回答太长了（301 字），请控制在 300 字以内后重新发送。"
    assert (await response(sandbox, who)).position == 3
    assert await available(sandbox, who) == 0
    [done] = await chat.send("好" * 300)
    assert (done.text or "").startswith("🎉")
    assert (await response(sandbox, who)).answers["ideas"].text == "好" * 300


async def test_required_and_too_many_are_explained(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7107)
    await open_benefits(chat)
    await chat.tap("积分抵现")
    await chat.tap("完成", expect=0)
    assert chat.last_callback_answer == "这道题是必答题，请先作答。"
    for option in ("会员积分翻倍日", "积分兑换免运费", "更多合作门店"):
        await chat.tap(option)
    await chat.tap("积分有效期更长", expect=0)
    assert chat.last_callback_answer == "最多只能选 3 项，请先取消一项。"
    assert (await response(sandbox, who)).answers["wanted"].choices == (
        "double_days",
        "free_delivery",
        "partner_shops",
    )


async def test_a_restart_halfway_continues_at_the_same_question(sample_config: Config) -> None:
    clock = lambda: NOW  # noqa: E731
    async with BotApiEmulator() as emu:
        chat = ChatClient(emu, 7108, first_name="小明")
        async with bot_on(emu, sample_config, clock) as app:
            await chat.send("/start")
            await open_benefits(chat)
            await chat.tap("积分抵现")
            await chat.tap("会员积分翻倍日")  # ticked, not yet Done
        # Stopped: the conversation and the answers so far are in the database.
        async with bot_on(emu, sample_config, clock) as app:
            assert await app.bot_data.store.read(conversation_counts) == {"survey": 1}
            # The old message's buttons still work: the store knows the question.
            assert chat.buttons()[0] == "☑️ 会员积分翻倍日"
            await chat.tap("更多合作门店")
            assert chat.buttons()[:3] == ["☑️ 会员积分翻倍日", "⬜ 积分兑换免运费", "☑️ 更多合作门店"]
            await chat.tap("完成")
            await chat.tap("4⭐")
        async with bot_on(emu, sample_config, clock) as app:
            # A typed answer goes to the survey: the restored state says so.
            [done] = await chat.send("多开几家门店")
            assert (done.text or "").startswith("🎉 感谢您完成「积分权益问卷」！\n已获得 50 积分")
            who = await app.bot_data.members.by_telegram_id(7108)
            assert who is not None
            progress = await app.bot_data.surveys.progress(BENEFITS, who.id)
            assert progress is not None and progress.completed
            assert progress.answers["wanted"].choices == ("double_days", "partner_shops")
            assert (await app.bot_data.ledger.balance(who.id, NOW)).available == 50
            await assert_audit_ok(app)


async def test_a_survey_changed_by_a_restart_starts_over(sample_config: Config) -> None:
    clock = lambda: NOW  # noqa: E731
    benefits = sample_config.surveys[0]
    shorter = benefits.model_copy(update={"questions": benefits.questions[:2]})
    changed = sample_config.model_copy(update={"surveys": [shorter]})
    async with BotApiEmulator() as emu:
        chat = ChatClient(emu, 7117, first_name="小明")
        async with bot_on(emu, sample_config, clock):
            await chat.send("/start")
            await open_benefits(chat)
            await chat.tap("积分抵现")
        async with bot_on(emu, changed, clock) as app:
            # The button of the old second question: the questions changed meanwhile.
            await chat.tap("会员积分翻倍日")
            assert (chat.last_text or "").startswith(
                "⚠️ 问卷内容已更新，需要从第一题重新作答。\n\n📝 积分权益问卷\n"
            )
            assert "【积分权益问卷】第 1/2 题" in (chat.last_text or "")
            await chat.tap("兑换商品")
            await chat.tap("更多合作门店")
            await chat.tap("完成")
            assert (chat.last_text or "").startswith("🎉 感谢您完成「积分权益问卷」！")
            who = await app.bot_data.members.by_telegram_id(7117)
            assert who is not None
            progress = await app.bot_data.surveys.progress(BENEFITS, who.id)
            assert progress is not None and set(progress.answers) == {"favourite", "wanted"}
            await assert_audit_ok(app)


def one_question_survey(**changes: Any) -> Callable[[Config], Config]:
    """A configuration with one more survey: a single rating question, 10 points."""

    def change(config: Config) -> Config:
        survey = Survey.model_validate(
            {
                "id": "quick",
                "title": {"zh-CN": "一题问卷", "en": "One question"},
                "reward_points": 10,
                "opens": "2026-11-01",
                "closes": "2026-11-30",
                "questions": [
                    {
                        "id": "mood",
                        "kind": "rating",
                        "text": {"zh-CN": "今天满意吗？", "en": "Happy?"},
                    }
                ],
                **changes,
            }
        )
        return config.model_copy(update={"surveys": [*config.surveys, survey]})

    return change


@pytest.mark.parametrize("configure", [[one_question_survey()]])
async def test_a_double_tap_on_the_last_answer_pays_once(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat, who = await member(sandbox, 7109)
    await chat.send("/surveys")
    await chat.tap("一题问卷")
    question = chat.last_message
    assert question is not None
    [five] = [b for row in question.keyboard for b in row if b.text == "5⭐"]
    assert five.callback_data is not None
    # Both taps land before the first answer: they carry the same question.
    first = chat.emu.user_taps(7109, question.message_id, five.callback_data)
    second = chat.emu.user_taps(7109, question.message_id, five.callback_data)
    for _ in range(100):
        if chat.emu.callback_answer(first) and chat.emu.callback_answer(second):
            break
        await asyncio.sleep(0.02)
    answer = chat.emu.callback_answer(second)
    assert answer is not None and answer.text == "您已经完成这份问卷了，奖励已发放，感谢参与！"
    assert await available(sandbox, who) == 10
    # Completing twice by opening it again pays nothing either.
    await chat.tap_data(question.message_id, "sv:o:quick", expect=0)
    assert chat.last_callback_answer == "您已经完成这份问卷了，奖励已发放，感谢参与！"
    await chat.tap_data(question.message_id, "sv:r:quick:0:3", expect=0)
    assert await available(sandbox, who) == 10
    assert (await response(sandbox, who, "quick")).answers["mood"].rating == 5


@pytest.mark.parametrize(
    "configure",
    [
        [
            one_question_survey(id="later", opens="2027-01-01", closes="2027-01-31"),
            one_question_survey(id="over", opens="2026-10-01", closes="2026-10-31"),
        ]
    ],
)
async def test_closed_surveys_are_refused_politely(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat, who = await member(sandbox, 7110)
    [listing] = await chat.send("/surveys")
    assert "一题问卷" not in (listing.text or "")
    await chat.tap_data(listing.message_id, "sv:o:later", expect=0)
    assert chat.last_callback_answer == "这份问卷尚未开始，2027-01-01 00:00 起可以作答。"
    await chat.tap_data(listing.message_id, "sv:o:over", expect=0)
    assert chat.last_callback_answer == "这份问卷已于 2026-10-31 截止，感谢关注。"
    assert await sandbox.services.surveys.responses(who.id) == {}


@pytest.mark.parametrize("configure", [[one_question_survey(reward_points=0)]])
async def test_a_survey_that_closes_while_answering(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat, who = await member(sandbox, 7111)
    await open_benefits(chat)
    await chat.tap("积分抵现")
    sandbox.services.clock = lambda: datetime(2028, 1, 1, tzinfo=UTC)
    await chat.tap("会员积分翻倍日", expect=0)
    assert chat.last_callback_answer == "这份问卷已于 2027-12-31 截止，感谢关注。"
    sandbox.services.clock = lambda: NOW
    # A survey without a reward thanks without points.
    await chat.send("/surveys")
    await chat.tap("一题问卷")
    await chat.tap("3⭐")
    assert chat.last_text == "🎉 感谢您完成「一题问卷」！\n发送 /surveys 查看其他问卷。"
    assert await available(sandbox, who) == 0


async def test_forged_survey_buttons(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7112)
    [listing] = await chat.send("/surveys")
    for data in (
        "sv:p:benefits_2026:0:0",
        "sv:p:benefits_2026:0:99",
        "sv:x:benefits_2026",
        "sv:p:Bad!:0:0",
    ):
        await chat.tap_data(listing.message_id, data, expect=0)
        assert chat.last_callback_answer == "此按钮已失效，请重新操作。", data
    await chat.tap_data(listing.message_id, "sv:o:no_such_survey", expect=0)
    assert chat.last_callback_answer == "这份问卷已下线。发送 /surveys 查看当前问卷。"
    await chat.tap("积分权益问卷")
    for data in ("sv:p:benefits_2026:1:0", "sv:r:benefits_2026:0:4", "sv:b:benefits_2026:0"):
        await chat.tap_data(listing.message_id, data, expect=0)
    # A button for another question than the one asked answers nothing.
    assert (await response(sandbox, who)).answers == {}
    await chat.tap_data(listing.message_id, "sv:p:benefits_2026:1:0", expect=0)
    assert chat.last_callback_answer == "这道题已作答，请回答最新的问题。"


async def test_the_menu_button_lists_surveys(sandbox: Sandbox) -> None:
    chat = sandbox.member(7113, language_code="en")
    [welcome] = await chat.send("/start")
    assert "📋 Surveys" in welcome.buttons
    await chat.tap("📋 Surveys")
    listing = chat.last_message
    assert listing is not None
    assert (listing.text or "").startswith(
        "📋 Reward surveys\n• Points benefits survey: 4 questions, 50 points"
    )
    assert listing.buttons[0] == "📝 Points benefits survey (+50 points)"


async def test_operators_see_stats_and_a_chart(sandbox: Sandbox) -> None:
    for user_id, option, stars in ((7114, "积分抵现", "4⭐"), (7115, "兑换商品", "5⭐")):
        chat, _who = await member(sandbox, user_id)
        await open_benefits(chat)
        await chat.tap(option)
        await chat.tap("会员积分翻倍日")
        await chat.tap("完成")
        await chat.tap(stars)
        await chat.tap("跳过")
    admin = sandbox.admin()
    report, chart = await admin.send(f"/survey_stats {BENEFITS}", expect=2)
    lines = (report.text or "").splitlines()
    assert lines[:2] == [
        "📊 积分权益问卷（benefits_2026）",
        "已完成 2 份，进行中 0 份，已发放 100 积分",
    ]
    assert "  1. 兑换商品 — 1（50%）" in lines and "  3. 积分抵现 — 1（50%）" in lines
    assert "  1. 会员积分翻倍日 — 2（100%）" in lines
    assert "  平均 4.5 分（2 人评分）" in lines
    assert "Q4 还有什么想对我们说的？（选填）（作答 0，跳过 2）" in lines
    assert chart.kind == "photo" and chart.photo is not None and chart.photo.startswith(b"\x89PNG")
    # No CJK font on a test machine: the picture is numbered and the caption says so.
    assert chart.caption in (
        "📊 积分权益问卷",
        "📊 积分权益问卷：图中题目和选项按上方文字中的编号排列（本机没有中文字体）。",
    )
    [usage] = await admin.send("/survey_stats")
    assert usage.text == "用法：/survey_stats <问卷ID>\n问卷：benefits_2026, satisfaction_2026h2"
    [unknown] = await admin.send("/survey_stats nope")
    assert unknown.text == "⚠️ 没有问卷「nope」。问卷：benefits_2026, satisfaction_2026h2"
    [denied] = await sandbox.member(7114).send(f"/survey_stats {BENEFITS}")
    assert denied.text == DENIED


async def test_rules_and_help_mention_surveys(sandbox: Sandbox) -> None:
    chat = sandbox.member(7116)
    rules = joined(await chat.send("/rules"))
    assert "【问卷与建议】\n• 积分权益问卷：共 4 题，完成可得 50 积分，2027-12-31 截止" in (
        rules.text or ""
    )
    [help_text] = await chat.send("/help")
    assert "/surveys" in (help_text.text or "") and "/feedback" in (help_text.text or "")
    assert "/survey_stats" not in (help_text.text or "")


TEXT_FIRST = [
    {"id": "why", "kind": "text", "text": {"zh-CN": "为什么？", "en": "Why?"}, "max_length": 50},
    {"id": "mood", "kind": "rating", "text": {"zh-CN": "今天满意吗？", "en": "Happy?"}},
]


@pytest.mark.parametrize("configure", [[one_question_survey(questions=TEXT_FIRST)]])
async def test_back_to_a_typed_answer_shows_it_and_can_keep_it(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat, who = await member(sandbox, 7118)
    await chat.send("/surveys")
    await chat.tap("一题问卷")
    await chat.send("因为环保")
    await chat.tap("⬅️ 上一题")
    assert (chat.last_text or "").endswith(
        "您之前的回答：因为环保\n（输入新的回答即可修改，或点「保留原回答」继续）"
    )
    await chat.tap("保留原回答")
    assert "第 2/2 题" in (chat.last_text or "")
    await chat.tap("⬅️ 上一题")
    # Typing again replaces the answer.
    [second] = await chat.send("因为方便")
    assert "第 2/2 题" in (second.text or "")
    await chat.tap("5⭐", message=second)
    assert (await response(sandbox, who, "quick")).answers["why"].text == "因为方便"
    assert await available(sandbox, who) == 10


async def test_typing_after_the_survey_closed(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7119)
    await open_benefits(chat)
    await chat.tap("积分抵现")
    sandbox.services.clock = lambda: datetime(2028, 1, 1, tzinfo=UTC)
    [closed] = await chat.send("还能回答吗")
    assert closed.text == "这份问卷已于 2027-12-31 截止，感谢关注。"
    assert await available(sandbox, who) == 0
    [stray] = await chat.send("还能回答吗")  # the conversation ended with it
    assert "没有看懂" in (stray.text or "")
