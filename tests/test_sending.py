"""The member bot's own request encoding: the same JSON as python-telegram-bot's, cheaper."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    WebAppInfo,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import Defaults, ExtBot
from telegram.request import BaseRequest, RequestData

from bot.sending import MemberBot, plain_parameters

TOKEN = "123456:SENDING"
_ME = {"id": 123456, "is_bot": True, "first_name": "pointsbot", "username": "pointsbot"}
_SENT = {
    "message_id": 9,
    "date": 1_700_000_000,
    "chat": {"id": 42, "type": "private"},
    "text": "ok",
}

_TAP = {
    "update_id": 5,
    "callback_query": {
        "id": "q5",
        "from": {"id": 42, "is_bot": False, "first_name": "小明"},
        "chat_instance": "c",
        "data": "mall:cat:home:0",
        "message": {
            **_SENT,
            "text": "🛒 积分商城",
            "reply_markup": {"inline_keyboard": [[{"text": "家居", "callback_data": "x"}]]},
        },
    },
}


class RecordingRequest(BaseRequest):
    """Answers like the Bot API and keeps each request's method and decoded JSON body."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], bool]] = []

    @property
    def read_timeout(self) -> float | None:
        """No real reads."""
        return None

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Record, then answer: getMe with the bot, a too-long text with 400, else a message."""
        endpoint = url.rsplit("/", 1)[1]
        params = json.loads(request_data.json_payload) if request_data else {}
        decoded = {k: _maybe_json(v) for k, v in params.items()}
        files = bool(request_data and request_data.contains_files)
        self.sent.append((endpoint, decoded, files))
        if endpoint == "getMe":
            return 200, json.dumps({"ok": True, "result": _ME}).encode()
        if endpoint == "getUpdates":
            return 200, json.dumps({"ok": True, "result": [_TAP]}).encode()
        if len(str(decoded.get("text", ""))) > 4096:
            body = {"ok": False, "error_code": 400, "description": "Bad Request: text too long"}
            return 400, json.dumps(body).encode()
        result: object = True if endpoint == "answerCallbackQuery" else _SENT
        return 200, json.dumps({"ok": True, "result": result}).encode()


def _maybe_json(value: str) -> object:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("🛒 家居", callback_data="mall:cat:home")],
            [
                InlineKeyboardButton("‹", callback_data="hist:1"),
                InlineKeyboardButton("规则", url="https://example.org/rules"),
            ],
        ]
    )


Call = Callable[[Bot], Awaitable[object]]

CALLS: dict[str, Call] = {
    "text": lambda b: b.send_message(42, "余额 1,234 分"),
    "keyboard": lambda b: b.send_message(42, "商城", reply_markup=_keyboard()),
    "parse mode": lambda b: b.send_message(42, "<b>x</b>", parse_mode=ParseMode.HTML),
    "silent": lambda b: b.send_message(42, "x", disable_notification=True),
    "edit": lambda b: b.edit_message_text("新", chat_id=42, message_id=9, reply_markup=_keyboard()),
    "drop keyboard": lambda b: b.edit_message_reply_markup(42, 9, reply_markup=None),
    "answer": lambda b: b.answer_callback_query("q1", "已过期", show_alert=True),
    "photo by id": lambda b: b.send_photo(42, "AgACAgIAAxk", caption="转盘"),
    "web app button": lambda b: b.send_message(
        42,
        "x",
        reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("app", web_app=WebAppInfo("https://example.org/app"))]]
        ),
    ),
    "preview off": lambda b: b.send_message(
        42, "x", link_preview_options=LinkPreviewOptions(is_disabled=True)
    ),
    "photo upload": lambda b: b.send_photo(42, b"\x89PNG\r\n\x1a\n", caption="转盘"),
}


async def _record(bot_class: type[ExtBot[None]], call: Call) -> tuple[str, dict[str, Any], bool]:
    request = RecordingRequest()
    defaults = Defaults(tzinfo=ZoneInfo("Asia/Shanghai"))
    bot = bot_class(TOKEN, request=request, get_updates_request=request, defaults=defaults)
    async with bot:
        await call(bot)
    return request.sent[-1]


@pytest.mark.parametrize("name", list(CALLS))
async def test_every_reply_goes_out_exactly_as_python_telegram_bot_would_send_it(
    name: str,
) -> None:
    assert await _record(MemberBot, CALLS[name]) == await _record(ExtBot, CALLS[name])


def test_plain_replies_skip_the_generic_encoder_and_the_rest_do_not() -> None:
    plain = plain_parameters({"chat_id": 42, "text": "x", "reply_markup": _keyboard()})
    assert plain is not None
    assert {p.name: p.value for p in plain}["reply_markup"] == _keyboard().to_dict()
    web_app = InlineKeyboardButton("app", web_app=WebAppInfo("https://example.org/app"))
    assert plain_parameters({"reply_markup": InlineKeyboardMarkup([[web_app]])}) is None
    assert plain_parameters({"until_date": datetime(2026, 1, 1, tzinfo=UTC)}) is None


async def test_an_error_from_the_api_is_still_the_usual_exception() -> None:
    request = RecordingRequest()
    async with MemberBot(TOKEN, request=request, get_updates_request=request) as bot:
        with pytest.raises(BadRequest, match="too long"):
            await bot.send_message(42, "x" * 5000)
    assert request.sent[-1][0] == "sendMessage"


async def test_a_tap_arrives_whole_but_for_the_keyboard_it_was_made_on() -> None:
    request = RecordingRequest()
    async with MemberBot(TOKEN, request=request, get_updates_request=request) as bot:
        (update,) = await bot.get_updates()
    query = update.callback_query
    assert query is not None and query.data == "mall:cat:home:0" and query.from_user.id == 42
    assert isinstance(query.message, Message) and query.message.text == "🛒 积分商城"
    assert query.message.reply_markup is None
