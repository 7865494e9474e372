"""One typed question at a time: when a member is asked a second question before answering the
first, their text answers the one asked last and the first is abandoned (a survey resumes from
/surveys), across a restart too, with /cancel and the timeouts as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from telegram.ext import ConversationHandler

from bot.config import Config
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from handlers.common import BotApp
from storage.feedback import pending_feedback
from storage.members import Member
from storage.persistence import conversation_counts
from tests.conftest import NOW, SEED_EXPIRY, Sandbox, assert_audit_ok
from tests.restart_support import assert_audit_ok as restart_audit_ok
from tests.restart_support import bot_on

ASK_BIRTHDAY = "请输入您的生日"
ASK_PET_BIRTHDAY = (
    "请发送「Mimi」的生日，例如 03-15 或 2020-03-15（年份可不填）。发送 /cancel 取消。"
)
PET_SAVED = "🎂 已保存「Mimi」的生日：3 月 1 日。\n生日当天您将收到一张「宠物生日蛋糕兑换券」。"
BIRTHDAY_SAVED = "🎂 已保存生日：5 月 20 日。"
FEEDBACK_PROMPT = "💡 请直接输入您的建议（10–1000 字）"
IDEA = "希望周末也能营业，多一些环保商品。"
STRAY = "没有看懂"


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, the ledger, surveys and transfers still add up."""
    yield
    await assert_audit_ok(sandbox)


async def started(sandbox: Sandbox, user_id: int, name: str = "小明") -> tuple[ChatClient, Member]:
    chat = sandbox.member(user_id, first_name=name)
    await chat.send("/start")
    found = await sandbox.services.members.by_telegram_id(user_id)
    assert found is not None
    return chat, found


async def ask_birthday(chat: ChatClient) -> None:
    """/settings, then the birthday button: the bot asks for the date."""
    await chat.send("/settings")
    await chat.tap("🎂 设置生日")
    assert ASK_BIRTHDAY in (chat.last_text or "")


async def ask_pet_name(chat: ChatClient) -> None:
    """Family birthdays (on the /settings message), add a pet: the bot asks for its name."""
    await chat.tap("👶🐾")
    await chat.tap("➕")
    await chat.tap("🐾 宠物")
    assert (chat.last_text or "").startswith("请发送宠物的名字")


async def answer_survey_up_to_its_text_question(chat: ChatClient) -> None:
    await chat.send("/surveys")
    await chat.tap("积分权益问卷")
    await chat.tap("积分抵现")
    await chat.tap("会员积分翻倍日")
    await chat.tap("完成")
    await chat.tap("4⭐")
    assert "第 4/4 题\n还有什么想对我们说的？" in (chat.last_text or "")


async def birthday_month(app: BotApp, user_id: int) -> int | None:
    return (await app.bot_data.pushes.preferences(user_id)).birthday_month


def conversation(app: BotApp, name: str) -> ConversationHandler:  # type: ignore[type-arg]
    [found] = [h for g in app.handlers.values() for h in g if getattr(h, "name", None) == name]
    assert isinstance(found, ConversationHandler)
    return found


async def test_birthday_asked_then_a_pet_added_the_name_goes_to_the_pet(sandbox: Sandbox) -> None:
    chat, _who = await started(sandbox, 7601)
    await ask_birthday(chat)
    await ask_pet_name(chat)
    [asked] = await chat.send("Mimi")
    assert asked.text == ASK_PET_BIRTHDAY
    [saved] = await chat.send("3月1日")
    assert saved.text == PET_SAVED
    # The birthday question was abandoned: a date now is stray text, the member's own birthday
    # is still unset.
    [stray] = await chat.send("05-20")
    assert STRAY in (stray.text or "")
    assert await birthday_month(sandbox.app, 7601) is None


async def test_feedback_asked_then_birthday_asked_the_date_is_saved(sandbox: Sandbox) -> None:
    chat, _who = await started(sandbox, 7602)
    [prompt] = await chat.send("/feedback")
    assert (prompt.text or "").startswith(FEEDBACK_PROMPT)
    await ask_birthday(chat)
    [saved] = await chat.send("1990-05-20")
    assert (saved.text or "").startswith(BIRTHDAY_SAVED)
    # The suggestion is no longer asked for: a text now files nothing.
    [stray] = await chat.send(IDEA)
    assert STRAY in (stray.text or "")
    _items, waiting = await sandbox.services.store.read(lambda c: pending_feedback(c, limit=1))
    assert waiting == 0


async def test_the_last_question_is_the_one_cancel_leaves(sandbox: Sandbox) -> None:
    chat, _who = await started(sandbox, 7603)
    await ask_birthday(chat)
    await ask_pet_name(chat)
    [cancelled] = await chat.send("/cancel")
    assert cancelled.text == "已取消，家人生日没有变动。"
    # Nothing is waiting any more: neither the pet's name nor the birthday takes this.
    [stray] = await chat.send("1990-05-20")
    assert STRAY in (stray.text or "")
    assert await birthday_month(sandbox.app, 7603) is None


async def test_the_question_asked_last_times_out_as_before(sandbox: Sandbox) -> None:
    chat, _who = await started(sandbox, 7604)
    await ask_birthday(chat)
    await ask_pet_name(chat)
    key = (7604, 7604)
    # The abandoned birthday question's timer runs out: it ends nothing that is waiting.
    birthday = conversation(sandbox.app, "birthday")
    await birthday.timeout_jobs[key].run(sandbox.app)
    [asked] = await chat.send("Mimi")
    assert asked.text == ASK_PET_BIRTHDAY
    # The pet's question keeps its own timer; when it runs out, that question ends too.
    await conversation(sandbox.app, "dependants").timeout_jobs[key].run(sandbox.app)
    [stray] = await chat.send("3月1日")
    assert STRAY in (stray.text or "")


async def test_a_survey_waits_while_the_birthday_is_answered_then_continues(
    sandbox: Sandbox,
) -> None:
    chat, who = await started(sandbox, 7605)
    await answer_survey_up_to_its_text_question(chat)
    await ask_birthday(chat)
    [saved] = await chat.send("1990-05-20")
    assert (saved.text or "").startswith(BIRTHDAY_SAVED)
    # The survey kept its answers; it continues from /surveys, at the same question.
    [listing] = await chat.send("/surveys")
    assert listing.buttons[0] == "▶️ 继续：积分权益问卷（第 4/4 题）"
    await chat.tap("继续")
    assert "第 4/4 题\n还有什么想对我们说的？" in (chat.last_text or "")
    [done] = await chat.send("多开几家门店")
    assert (done.text or "").startswith("🎉 感谢您完成「积分权益问卷」！")
    balance = await sandbox.services.ledger.balance(who.id, NOW)
    assert balance.available == 50


# --- transfers: two members of one household --------------------------------------------------


async def with_partner(sandbox: Sandbox, alice_id: int, bob_id: int) -> ChatClient:
    """Alice (300 points) and Bob share a household since 8 days; Alice's chat."""
    joined = NOW - timedelta(days=8)
    alice_chat, alice = await started(sandbox, alice_id)
    _bob_chat, bob = await started(sandbox, bob_id, "小红")
    await sandbox.services.ledger.earn(
        alice.id,
        300,
        kind="purchase",
        key=f"seed:{alice_id}",
        actor="t",
        expires_at=SEED_EXPIRY,
        now=joined,
    )
    families = sandbox.services.families
    home = await families.create_household(alice.id, actor="t", now=joined)
    await families.join_household(home.id, bob.id, max_members=6, actor="t", now=joined)
    return alice_chat


async def ask_amount(chat: ChatClient) -> None:
    [picker] = await chat.send("/transfer")
    await chat.tap("💸 小红", message=picker)
    await chat.tap("✏️ 其他数量")
    assert chat.last_text == "请输入要转给 小红 的积分数（10–300），发送 /cancel 取消。"


async def test_an_amount_asked_then_feedback_the_suggestion_is_filed(sandbox: Sandbox) -> None:
    chat = await with_partner(sandbox, 7611, 7612)
    await ask_amount(chat)
    await chat.send("/feedback")
    [thanks] = await chat.send(IDEA)
    assert (thanks.text or "").startswith("🙏 已收到您的建议")
    [stray] = await chat.send("120")
    assert STRAY in (stray.text or "")


async def test_feedback_asked_then_an_amount_the_amount_is_offered(sandbox: Sandbox) -> None:
    chat = await with_partner(sandbox, 7613, 7614)
    await chat.send("/feedback")
    await ask_amount(chat)
    [confirmation] = await chat.send("120")
    assert (confirmation.text or "").startswith("💸 请确认转赠\n转给：小红\n数量：120 积分")


async def test_birthday_asked_then_an_invitation_code_the_code_is_read(sandbox: Sandbox) -> None:
    chat, _who = await started(sandbox, 7615)
    await ask_birthday(chat)
    [asked] = await chat.send("/join")
    [refused] = await chat.send("05-20")
    assert refused.text != asked.text
    assert (refused.text or "").startswith("邀请码应为")
    assert await birthday_month(sandbox.app, 7615) is None


# --- a restart in between ----------------------------------------------------------------------


async def test_after_a_restart_the_question_asked_last_is_still_the_one_answered(
    sample_config: Config,
) -> None:
    async with BotApiEmulator() as emu:
        pets = ChatClient(emu, 7621, first_name="小明")
        surveyed = ChatClient(emu, 7622, first_name="小红")
        async with bot_on(emu, sample_config):
            await pets.send("/start")
            await ask_birthday(pets)
            await ask_pet_name(pets)
            await surveyed.send("/start")
            await answer_survey_up_to_its_text_question(surveyed)
            await ask_birthday(surveyed)
        # A new process on the same database: one question waits for each member.
        async with bot_on(emu, sample_config) as app:
            assert await app.bot_data.store.read(conversation_counts) == {
                "birthday": 1,
                "dependants": 1,
            }
            [asked] = await pets.send("Mimi")
            assert asked.text == ASK_PET_BIRTHDAY
            [saved] = await pets.send("3月1日")
            assert saved.text == PET_SAVED
            assert await birthday_month(app, 7621) is None

            [saved] = await surveyed.send("1990-05-20")
            assert (saved.text or "").startswith(BIRTHDAY_SAVED)
            [listing] = await surveyed.send("/surveys")
            assert listing.buttons[0] == "▶️ 继续：积分权益问卷（第 4/4 题）"
            await surveyed.tap("继续")
            [done] = await surveyed.send("多开几家门店")
            assert (done.text or "").startswith("🎉 感谢您完成「积分权益问卷」！")
            await restart_audit_ok(app)
