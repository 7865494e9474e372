"""The Bot API sandbox, driven by python-telegram-bot itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    MessageEntity,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    RetryAfter,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.sandbox.client import ButtonNotFound, ChatClient, ReplyTimeout
from bot.sandbox.server import TINY_PNG, BotApiEmulator

TOKEN = "123456:SANDBOX"
ALICE = 4201
KEYBOARD = InlineKeyboardMarkup(
    [
        [InlineKeyboardButton("加 1 分", callback_data="add:1")],
        [InlineKeyboardButton("查看积分", callback_data="show")],
        [InlineKeyboardButton("规则", url="https://example.com/rules")],
    ]
)


@pytest.fixture
async def emu() -> AsyncIterator[BotApiEmulator]:
    async with BotApiEmulator(token=TOKEN, bot_username="pointsbot_sandbox_bot") as emulator:
        emulator.add_user(ALICE, "爱丽丝", username="alice")
        yield emulator


@pytest.fixture
async def bot(emu: BotApiEmulator) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=emu.base_url, base_file_url=emu.base_file_url) as client:
        yield client


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text("欢迎！", reply_markup=KEYBOARD)


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(f"echo: {update.effective_message.text}")


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and context.user_data is not None
    points = int(context.user_data.get("points", 0))
    if query.data == "add:1":
        context.user_data["points"] = points + 1
        await query.answer("已加 1 分")
        await query.edit_message_text(f"积分：{points + 1}", reply_markup=KEYBOARD)
    else:
        await query.answer(f"当前积分 {points}", show_alert=True)


@pytest.fixture
async def app(emu: BotApiEmulator) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    application = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(emu.base_url)
        .base_file_url(emu.base_file_url)
        .build()
    )
    application.add_handler(CommandHandler("start", start))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    application.add_handler(CallbackQueryHandler(on_button))
    async with application:
        assert application.updater is not None
        await application.updater.start_polling(timeout=5)
        await application.start()
        yield application
        await application.updater.stop()
        await application.stop()


@pytest.fixture
def alice(emu: BotApiEmulator) -> ChatClient:
    return ChatClient(emu, ALICE)


def seconds(value: int | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# ---------------------------------------------------------------------- Bot API surface


async def test_get_me_describes_the_bot(bot: Bot) -> None:
    me = await bot.get_me()
    assert me.is_bot
    assert me.id == 123456
    assert me.username == "pointsbot_sandbox_bot"


async def test_wrong_token_is_rejected_as_invalid_token(emu: BotApiEmulator) -> None:
    intruder = Bot("999:WRONG", base_url=emu.base_url)
    try:
        with pytest.raises(InvalidToken, match="rejected by the server"):
            await intruder.initialize()
    finally:
        await intruder.shutdown()


async def test_unknown_method_is_not_found(bot: Bot) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTeleportation", api_kwargs={"chat_id": ALICE})


async def test_wire_format_of_errors_and_json_or_query_requests(emu: BotApiEmulator) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{emu.base_url}999:WRONG/getMe") as response:
            assert response.status == 401
            assert await response.json() == {
                "ok": False,
                "error_code": 401,
                "description": "Unauthorized",
            }
        url = f"{emu.base_url}{TOKEN}/sendMessage"
        async with http.post(url, json={"chat_id": ALICE, "text": "JSON 请求"}) as response:
            body = await response.json()
            assert body["ok"] is True and body["result"]["text"] == "JSON 请求"
            assert isinstance(body["result"]["date"], int)
        async with http.get(url, params={"chat_id": str(ALICE), "text": "查询串"}) as response:
            assert (await response.json())["result"]["message_id"] == 2
        emu.fail_next("sendMessage", retry_after=3)
        async with http.post(url, data={"chat_id": str(ALICE), "text": "表单"}) as response:
            assert response.status == 429
            assert await response.json() == {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 3",
                "parameters": {"retry_after": 3},
            }


async def test_method_names_are_case_insensitive(bot: Bot) -> None:
    me = await bot.do_api_request("GETME")
    assert me["is_bot"] is True


async def test_confirmed_updates_are_not_returned_again(emu: BotApiEmulator, bot: Bot) -> None:
    first = emu.user_sends_text(ALICE, "一")
    second = emu.user_sends_text(ALICE, "二")
    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [first, second]
    assert await bot.get_updates(offset=second + 1) == ()
    third = emu.user_sends_text(ALICE, "三")
    assert [u.update_id for u in await bot.get_updates(offset=second + 1)] == [third]


async def test_long_poll_returns_as_soon_as_an_update_arrives(
    emu: BotApiEmulator, bot: Bot
) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=2))
    await emu.wait_for_long_poll()
    began = time.monotonic()
    emu.user_sends_text(ALICE, "在吗")
    updates = await poll
    assert time.monotonic() - began < 0.5
    assert [u.message.text for u in updates if u.message] == ["在吗"]


async def test_a_second_get_updates_ends_a_waiting_one_with_409_like_telegram(
    emu: BotApiEmulator, bot: Bot
) -> None:
    emu.record_polls = True
    # The waiting poll's connection is the first seen; the other bot's are the second.
    ports: dict[int | None, str] = {}
    emu.identify_poller = lambda port: ports.setdefault(port, "second" if ports else "first")
    waiting = asyncio.create_task(bot.get_updates(timeout=5))
    await emu.wait_for_long_poll()
    # Another process (its own connection) polls: the waiting request ends at once.
    async with Bot(TOKEN, base_url=emu.base_url) as other:
        assert await other.get_updates() == ()
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await waiting
        sent = emu.user_sends_text(ALICE, "抢")
        assert [u.update_id for u in await other.get_updates()] == [sent]
    [conflict] = emu.poll_conflicts
    assert (conflict.ended, conflict.by) == ("first", "second")
    # Recorded as answered: the newer poll at once, the ended one as it wakes, then the next.
    assert [(p.poller, p.status, p.updates) for p in emu.polls] == [
        ("second", 200, 0),
        ("first", 409, 0),
        ("second", 200, 1),
    ]
    assert all(p.arrived <= p.answered for p in emu.polls)


async def test_get_updates_limit_caps_the_batch(emu: BotApiEmulator, bot: Bot) -> None:
    for i in range(5):
        emu.user_sends_text(ALICE, str(i))
    assert len(await bot.get_updates(limit=2)) == 2


async def test_start_command_carries_a_bot_command_entity(emu: BotApiEmulator, bot: Bot) -> None:
    emu.user_sends_text(ALICE, "/start@pointsbot_sandbox_bot 邀请码")
    (update,) = await bot.get_updates()
    assert update.message is not None
    assert update.message.entities == (
        MessageEntity(MessageEntity.BOT_COMMAND, offset=0, length=28),
    )
    assert update.message.from_user is not None
    assert update.message.from_user.language_code == "zh-hans"


async def test_user_edit_arrives_as_edited_message(emu: BotApiEmulator, bot: Bot) -> None:
    emu.user_sends_text(ALICE, "100")
    (sent,) = await bot.get_updates()
    assert sent.message is not None
    emu.user_edits_text(ALICE, sent.message.message_id, "200")
    (edited,) = await bot.get_updates(offset=sent.update_id + 1)
    assert edited.edited_message is not None
    assert edited.edited_message.text == "200"
    assert emu.messages(ALICE)[0].text == "200"


async def test_set_my_commands_is_stored_per_language(emu: BotApiEmulator, bot: Bot) -> None:
    await bot.set_my_commands([("start", "开始"), ("points", "我的积分")], language_code="zh")
    assert [c.command for c in await bot.get_my_commands(language_code="zh")] == [
        "start",
        "points",
    ]
    assert await bot.get_my_commands() == ()
    assert emu.commands(language_code="zh")[1] == {"command": "points", "description": "我的积分"}


async def test_send_message_to_unknown_chat_is_bad_request(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="(?i)chat not found"):
        await bot.send_message(999, "hello")


async def test_empty_text_is_bad_request(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="(?i)message text is empty"):
        await bot.send_message(ALICE, "   ")


async def test_text_over_4096_utf16_units_is_too_long(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="(?i)message is too long"):
        await bot.send_message(ALICE, "a" * 4097)
    with pytest.raises(BadRequest, match="(?i)message is too long"):
        await bot.send_message(ALICE, "🎁" * 2049)  # 4098 UTF-16 code units
    await bot.send_message(ALICE, "🎁" * 2048)


async def test_caption_over_1024_is_too_long(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="(?i)caption is too long"):
        await bot.send_photo(ALICE, TINY_PNG, caption="字" * 1025)


async def test_callback_data_over_64_bytes_is_rejected(bot: Bot) -> None:
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("兑换", callback_data="兑" * 22)]])
    with pytest.raises(BadRequest, match="(?i)BUTTON_DATA_INVALID"):
        await bot.send_message(ALICE, "选择商品", reply_markup=too_long)
    fits = InlineKeyboardMarkup([[InlineKeyboardButton("兑换", callback_data="x" * 64)]])
    await bot.send_message(ALICE, "选择商品", reply_markup=fits)


async def test_html_is_rendered_and_broken_html_rejected(emu: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_message(
        ALICE, "余额 <b>120</b> 分 &lt;绿色&gt;", parse_mode=ParseMode.HTML
    )
    assert sent.text == "余额 120 分 <绿色>"
    assert sent.entities == (MessageEntity(MessageEntity.BOLD, offset=3, length=3),)
    with pytest.raises(BadRequest, match="(?i)can't parse entities"):
        await bot.send_message(ALICE, "积分 < 100", parse_mode=ParseMode.HTML)


async def test_markdown_v2_requires_escaping_reserved_characters(bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)Character '\.' is reserved"):
        await bot.send_message(ALICE, "余额 *12.5* 分", parse_mode=ParseMode.MARKDOWN_V2)
    sent = await bot.send_message(ALICE, r"余额 *12\.5* 分", parse_mode=ParseMode.MARKDOWN_V2)
    assert sent.text == "余额 12.5 分"


async def test_edit_message_text_changes_what_the_user_sees(emu: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_message(ALICE, "积分：0", reply_markup=KEYBOARD)
    edited = await bot.edit_message_text("积分：1", chat_id=ALICE, message_id=sent.message_id)
    assert isinstance(edited, type(sent)) and edited.edit_date is not None
    (current,) = emu.messages(ALICE)
    assert current.text == "积分：1"
    assert current.buttons == []  # no reply_markup in the edit removes the keyboard
    assert [e.kind for e in emu.events(ALICE)] == ["message", "edit"]


async def test_edit_with_identical_content_is_not_modified(bot: Bot) -> None:
    sent = await bot.send_message(ALICE, "积分：0", reply_markup=KEYBOARD)
    with pytest.raises(BadRequest, match="(?i)message is not modified"):
        await bot.edit_message_text(
            "积分：0", chat_id=ALICE, message_id=sent.message_id, reply_markup=KEYBOARD
        )


async def test_edit_reply_markup_replaces_the_buttons(emu: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_message(ALICE, "选择", reply_markup=KEYBOARD)
    smaller = InlineKeyboardMarkup([[InlineKeyboardButton("完成", callback_data="done")]])
    await bot.edit_message_reply_markup(ALICE, sent.message_id, reply_markup=smaller)
    assert emu.messages(ALICE)[0].buttons == ["完成"]
    with pytest.raises(BadRequest, match="(?i)message is not modified"):
        await bot.edit_message_reply_markup(ALICE, sent.message_id, reply_markup=smaller)


async def test_edit_of_missing_message_is_bad_request(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=ALICE, message_id=77)


async def test_delete_message_removes_it_from_the_chat(emu: BotApiEmulator, bot: Bot) -> None:
    keep = await bot.send_message(ALICE, "保留")
    gone = await bot.send_message(ALICE, "删除")
    assert await bot.delete_message(ALICE, gone.message_id)
    assert [m.message_id for m in emu.messages(ALICE)] == [keep.message_id]
    assert emu.events(ALICE)[-1].kind == "delete"
    with pytest.raises(BadRequest, match="(?i)message to delete not found"):
        await bot.delete_message(ALICE, gone.message_id)


async def test_blocked_user_is_forbidden_and_reported(emu: BotApiEmulator, bot: Bot) -> None:
    emu.user_blocks_bot(ALICE)
    with pytest.raises(Forbidden, match="(?i)bot was blocked by the user"):
        await bot.send_message(ALICE, "生日快乐")
    (update,) = await bot.get_updates()
    assert update.my_chat_member is not None
    assert update.my_chat_member.new_chat_member.status == "kicked"
    emu.user_unblocks_bot(ALICE)
    await bot.send_message(ALICE, "欢迎回来")


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_injected_429_raises_retry_after(emu: BotApiEmulator, bot: Bot) -> None:
    emu.fail_next("sendMessage", retry_after=7)
    with pytest.raises(RetryAfter) as raised:
        await bot.send_message(ALICE, "推送")
    assert seconds(raised.value.retry_after) == 7
    await bot.send_message(ALICE, "推送")  # only the next call fails
    assert [e.text for e in emu.events(ALICE)] == ["推送"]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_rate_limit_answers_429_beyond_the_rate(emu: BotApiEmulator, bot: Bot) -> None:
    emu.rate_limit(2)
    await bot.send_message(ALICE, "1")
    await bot.send_message(ALICE, "2")
    with pytest.raises(RetryAfter):
        await bot.send_message(ALICE, "3")


async def test_send_photo_stores_the_uploaded_bytes(emu: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_photo(ALICE, TINY_PNG, caption="会员卡")
    assert sent.caption == "会员卡"
    assert (sent.photo[-1].width, sent.photo[-1].height) == (1, 1)
    event = emu.events(ALICE)[-1]
    assert (event.kind, event.photo, event.caption) == ("photo", TINY_PNG, "会员卡")
    file = await bot.get_file(sent.photo[-1].file_id)
    assert bytes(await file.download_as_bytearray()) == TINY_PNG


async def test_send_photo_by_file_id_reuses_the_file(emu: BotApiEmulator, bot: Bot) -> None:
    first = await bot.send_photo(ALICE, TINY_PNG)
    await bot.send_photo(ALICE, first.photo[-1].file_id)
    assert emu.events(ALICE)[-1].photo == TINY_PNG
    with pytest.raises(BadRequest, match="(?i)wrong file identifier"):
        await bot.send_photo(ALICE, "no-such-file-id")


async def test_send_document_keeps_bytes_and_filename(emu: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_document(ALICE, b"id,points\n1,100\n", filename="statement.csv")
    assert sent.document is not None and sent.document.file_name == "statement.csv"
    event = emu.events(ALICE)[-1]
    assert (event.document, event.filename) == (b"id,points\n1,100\n", "statement.csv")


async def test_reply_keyboard_is_shown_then_removed(emu: BotApiEmulator, bot: Bot) -> None:
    keyboard = ReplyKeyboardMarkup([[KeyboardButton("我的积分"), "积分商城"]])
    await bot.send_message(ALICE, "菜单", reply_markup=keyboard)
    assert emu.reply_keyboard(ALICE) == (("我的积分", "积分商城"),)
    await bot.send_message(ALICE, "好的", reply_markup=ReplyKeyboardRemove())
    assert emu.reply_keyboard(ALICE) is None


async def test_unknown_callback_query_is_too_old(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="(?i)query is too old"):
        await bot.answer_callback_query("12345")


async def test_reply_to_a_missing_message_is_bad_request(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="(?i)message to be replied not found"):
        await bot.send_message(ALICE, "回复", reply_to_message_id=999)


# ---------------------------------------------------------------------- through an Application


@pytest.mark.usefixtures("app")
async def test_member_gets_an_echo(alice: ChatClient) -> None:
    (reply,) = await alice.send("你好")
    assert (reply.kind, reply.text) == ("message", "echo: 你好")
    assert alice.last_text == "echo: 你好"


@pytest.mark.usefixtures("app")
async def test_start_shows_the_inline_buttons(alice: ChatClient) -> None:
    (reply,) = await alice.send("/start")
    assert reply.text == "欢迎！"
    assert reply.buttons == ["加 1 分", "查看积分", "规则"]
    assert alice.buttons() == ["加 1 分", "查看积分", "规则"]


@pytest.mark.usefixtures("app")
async def test_tap_reaches_the_callback_handler_and_shows_the_toast(alice: ChatClient) -> None:
    await alice.send("/start")
    replies = await alice.tap("加 1 分")
    assert [r.kind for r in replies] == ["callback_answer", "edit"]
    assert alice.last_callback_answer == "已加 1 分"
    assert alice.last_text == "积分：1"
    assert alice.buttons() == ["加 1 分", "查看积分", "规则"]


@pytest.mark.usefixtures("app")
async def test_tap_by_substring_or_number_and_alert(alice: ChatClient) -> None:
    await alice.send("/start")
    await alice.tap("加 1")
    replies = await alice.tap(2, expect=0)
    assert [r.kind for r in replies] == ["callback_answer"]
    assert alice.last_callback_answer == "当前积分 1"
    assert alice.last_callback_event is not None and alice.last_callback_event.show_alert


@pytest.mark.usefixtures("app")
async def test_tapping_a_missing_label_lists_the_buttons(alice: ChatClient) -> None:
    await alice.send("/start")
    with pytest.raises(ButtonNotFound, match="加 1 分"):
        await alice.tap("兑换")
    with pytest.raises(ButtonNotFound, match="opens"):
        await alice.tap("规则")


@pytest.mark.usefixtures("app")
async def test_a_sticker_gets_no_reply(alice: ChatClient) -> None:
    assert await alice.send_sticker(expect=0) == []


async def test_a_missing_reply_says_what_was_sent(alice: ChatClient) -> None:
    with pytest.raises(ReplyTimeout, match="sent '有人吗'") as raised:
        await alice.send("有人吗", timeout=0.1)
    assert "member #1: 有人吗" in str(raised.value)


async def test_wait_for_events_wakes_on_new_output(emu: BotApiEmulator, bot: Bot) -> None:
    waiting = asyncio.create_task(emu.wait_for_events(ALICE, after_index=0, count=2, timeout=2))
    await bot.send_message(ALICE, "一")
    await bot.send_message(ALICE, "二")
    assert [e.text for e in await waiting] == ["一", "二"]
    with pytest.raises(TimeoutError):
        await emu.wait_for_events(ALICE, after_index=2, count=1, timeout=0.05)
