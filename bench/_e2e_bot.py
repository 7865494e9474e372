"""The bot side of bench/e2e.py, in its own process so its CPU and memory are its own.

`python -m bench._e2e_bot pointsbot CONFIG BASE_URL TOKEN` runs the real bot;
`python -m bench._e2e_bot echo - BASE_URL TOKEN` runs the fastest bare python-telegram-bot
echo bot we can build (the same aiohttp transport, 256 concurrent updates), and `echo-httpx`
the same with PTB's default transport. Each prints "ready" once polling; SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from telegram import Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.app import build_application, running
from bot.config import load_config
from bot.transport import AiohttpRequest


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
        builder = ApplicationBuilder().token(token).base_url(base_url).concurrent_updates(256)
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
            print("ready", flush=True)
            await stop.wait()
            await echo.updater.stop()
            await echo.stop()
        return
    config = load_config(config_path)
    app = build_application(config, token, base_url=base_url, schedule_jobs=False)
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
