"""The bot side of bench/e2e.py, in its own process so its CPU and memory are its own.

`python -m bench._e2e_bot pointsbot CONFIG BASE_URL TOKEN` runs the real bot;
`python -m bench._e2e_bot echo - BASE_URL TOKEN` runs the fastest bare python-telegram-bot
echo bot we can build (the same aiohttp transport, 256 concurrent updates), and `echo-httpx`
the same with PTB's default transport. Each prints "ready" once polling, then one line with
the chat id of every update it has finished handling (the harness waits for it instead of
guessing when a step's last edit has arrived); SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from typing import Any

from telegram import Update
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

from bot.app import build_application, running, settle_collector
from bot.config import load_config
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


async def _serve(kind: str, config_path: str, base_url: str, token: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
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
