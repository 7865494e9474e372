"""What the restart tests share: the real bot started, stopped and started again on one
database against one Bot API emulator (the chats carry over, as they would on Telegram)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from bot.app import build_application, running
from bot.clock import FixedClock
from bot.config import Config
from bot.sandbox.server import BotApiEmulator
from handlers.common import BotApp
from storage.audit import audit
from tests.conftest import NOW


@asynccontextmanager
async def bot_on(
    emu: BotApiEmulator, config: Config, clock: Callable[[], datetime] | None = None
) -> AsyncIterator[BotApp]:
    """One run of the bot: built, started, and (leaving the block) stopped and shut down."""
    app = build_application(
        config,
        emu.token,
        base_url=emu.base_url,
        schedule_jobs=False,
        clock=clock or FixedClock(NOW),
    )
    emu.clock = lambda: app.bot_data.clock()
    async with running(app, poll_timeout=1):
        yield app


async def assert_audit_ok(app: BotApp) -> None:
    """The ledger and everything tied to it still add up."""
    report = await app.bot_data.store.read(lambda conn: audit(conn, integrity="quick"))
    assert report.ok, str(report)
