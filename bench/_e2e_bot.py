"""The bot side of bench/e2e.py, in its own process so its CPU and memory are its own.

`python -m bench._e2e_bot pointsbot CONFIG BASE_URL TOKEN` runs the real bot;
`python -m bench._e2e_bot echo - BASE_URL TOKEN` runs the fastest bare python-telegram-bot
echo bot we can build (the same aiohttp transport, 256 concurrent updates), and `echo-httpx`
the same with PTB's default transport. `floor` is pointsbot's plumbing (its bot object,
transport, update processor, collector settings) making the very requests pointsbot makes
for each step of the mix, with none of its work: no database, no conversations, no
rendering. No pointsbot can be faster than its floor.

Each prints "ready" once polling, then one line with the chat id of every update it has
finished handling (the harness waits for it instead of guessing when a step's last edit has
arrived); SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from typing import Any
from zoneinfo import ZoneInfo

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    SimpleUpdateProcessor,
    filters,
)

from bot.app import build_application, member_bot, running, settle_collector
from bot.config import load_config
from bot.qr import qr_png
from bot.sending import read_back
from bot.transport import AiohttpRequest
from bot.updates import PerMemberUpdateProcessor, member_key


def _report_done(update: object) -> None:
    """Tell the harness (one line on stdout) that this member's update is fully handled."""
    key = member_key(update)
    if key is not None:
        os.write(1, b"%d\n" % key)


class _ReportingPerMember(PerMemberUpdateProcessor):
    """pointsbot's processor, reporting each update once handled."""

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Process as usual, then report."""
        try:
            await super().do_process_update(update, coroutine)
        finally:
            _report_done(update)


class _ReportingSimple(SimpleUpdateProcessor):
    """PTB's concurrent processor for the echo bot, reporting each update once handled."""

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Process as usual, then report."""
        try:
            await super().do_process_update(update, coroutine)
        finally:
            _report_done(update)


async def _echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.effective_message is not None:
        await update.effective_message.reply_text(update.effective_message.text or "?")


async def _answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.callback_query is not None:
        await update.callback_query.answer("ok")


# The floor's replies: about the size of pointsbot's, with a button for every step of the mix.
_FLOOR_TEXT = "您好！可用积分 5,700 分；2027-09-20 将有 2,000 分到期。\n" * 3
_FLOOR_KEYBOARD = InlineKeyboardMarkup(
    [
        [
            InlineKeyboardButton("积分商城", callback_data="mall:cat:home"),
            InlineKeyboardButton("环保袋", callback_data="mall:item:1"),
        ],
        [
            InlineKeyboardButton("兑换", callback_data="mall:buy:1"),
            InlineKeyboardButton("确认兑换", callback_data="mall:ok:1"),
        ],
        [InlineKeyboardButton("转一次 · 10 积分", callback_data="game:spin:1")],
    ]
)
_FLOOR_PHOTOS: dict[str, str] = {}


async def _floor_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command: one message with a keyboard, as /balance, /history, /mall and /wheel send."""
    if update.effective_chat is not None:
        await context.bot.send_message(
            update.effective_chat.id, _FLOOR_TEXT, reply_markup=_FLOOR_KEYBOARD
        )


async def _floor_tap(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A tap: answered, then what pointsbot does for it (an edit; a spin, a confirmation)."""
    query = update.callback_query
    if query is None or query.message is None:
        return
    data, chat = query.data or "", query.message.chat.id
    await query.answer()
    edited = f"{_FLOOR_TEXT}{data} {query.id}"  # an edit must change the message
    if data.startswith("game"):
        # Spin: the offer's button taken off, the wheel sent by its file id (uploaded once).
        await query.edit_message_reply_markup(None)
        file_id = _FLOOR_PHOTOS.get("wheel")
        if file_id is None:
            with read_back():
                sent = await context.bot.send_photo(
                    chat, qr_png("wheel", scale=24), caption=edited, reply_markup=_FLOOR_KEYBOARD
                )
            _FLOOR_PHOTOS["wheel"] = sent.photo[-1].file_id
        else:
            await context.bot.send_photo(
                chat, file_id, caption=edited, reply_markup=_FLOOR_KEYBOARD
            )
    elif data.startswith("mall:ok"):
        # Confirm: the order edited into a receipt, the voucher's QR uploaded.
        await query.edit_message_text(edited)
        code = f"RM{query.id[-8:]}"
        await context.bot.send_photo(chat, qr_png(code), caption=code)
    else:
        await query.edit_message_text(edited, reply_markup=_FLOOR_KEYBOARD)


async def _serve_floor(base_url: str, token: str, stop: asyncio.Event) -> None:
    """pointsbot's plumbing with handlers that only make pointsbot's requests."""
    bot = member_bot(token, base_url, ZoneInfo("Asia/Shanghai"))
    floor: Application = (  # type: ignore[type-arg]
        ApplicationBuilder().bot(bot).concurrent_updates(_ReportingPerMember()).build()
    )
    floor.add_handler(MessageHandler(filters.TEXT, _floor_text))
    floor.add_handler(CallbackQueryHandler(_floor_tap))
    async with running(floor, poll_timeout=1):
        settle_collector()
        print("ready", flush=True)
        await stop.wait()


async def _serve(kind: str, config_path: str, base_url: str, token: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if kind == "floor":
        await _serve_floor(base_url, token, stop)
        return
    if kind in ("echo", "echo-httpx"):
        processor: BaseUpdateProcessor = _ReportingSimple(256)
        builder = ApplicationBuilder().token(token).base_url(base_url).concurrent_updates(processor)
        if kind == "echo":
            builder = builder.request(AiohttpRequest()).get_updates_request(
                AiohttpRequest(connection_pool_size=2)
            )
        echo: Application = builder.build()  # type: ignore[type-arg]
        echo.add_handler(MessageHandler(filters.ALL, _echo))
        echo.add_handler(CallbackQueryHandler(_answer))
        async with echo:
            assert echo.updater is not None
            await echo.updater.start_polling(timeout=1)
            await echo.start()
            settle_collector()  # the collector settings pointsbot serves with
            print("ready", flush=True)
            await stop.wait()
            await echo.updater.stop()
            await echo.stop()
        return
    config = load_config(config_path)
    app = build_application(
        config,
        token,
        base_url=base_url,
        schedule_jobs=False,
        update_processor=_ReportingPerMember(),
    )
    async with running(app, poll_timeout=1):
        print("ready", flush=True)
        await stop.wait()


def main() -> None:
    """Run one bot until SIGTERM."""
    logging.basicConfig(level=logging.WARNING)
    kind, config_path, base_url, token = sys.argv[1:5]
    asyncio.run(_serve(kind, config_path, base_url, token))


if __name__ == "__main__":
    main()
