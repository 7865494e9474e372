"""The bot token never reaches the database, its WAL or the logs, whatever an error names.

aiohttp's errors for a redirect loop or a bad URL carry the request URL, and every Bot API URL
carries the token: such an error, met by the outbox sender through the real transport, used
to be kept in `outbox.last_error` (and so in every backup).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from telegram import Bot

from bot.app import redact_token_in_logs
from bot.config import Config
from bot.i18n import I18n
from bot.jobs import Sender
from bot.transport import AiohttpRequest
from storage.members import Members, Profile
from storage.pushes import MARKETING, SERVICE, Push, Pushes
from storage.store import Store
from tests.conftest import NOW
from tests.test_transport import redirect_loop

TOKEN = "987654321:AAHsecretTokenAtRest_abcdefghijklmno"
SECRET = TOKEN.partition(":")[2]


def holds_token(path: Path) -> bool:
    """True when the file exists and holds the token's secret part, in any common encoding."""
    if not path.exists():
        return False
    data = path.read_bytes()
    return any(form in data for form in (SECRET.encode(), SECRET.encode("utf-16-le")))


async def test_a_redirect_loop_leaves_no_token_in_the_database_wal_or_logs(
    sample_config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # As the bot does at start: python-telegram-bot itself logs its URLs at DEBUG.
    redact_token_in_logs(TOKEN)
    database = Path(sample_config.storage.path)
    request = AiohttpRequest()
    await request.initialize()
    try:
        async with redirect_loop() as port, Store(database, clock=lambda: NOW) as store:
            member, _ = await Members(store).register(Profile(7001, "安"), now=NOW)
            pushes = Pushes(store)
            await pushes.enqueue(
                [
                    Push("token:service", member.id, SERVICE, "push.birthday", {}),
                    Push("token:marketing", member.id, MARKETING, "push.birthday", {}),
                ],
                NOW,
            )
            bot = Bot(TOKEN, base_url=f"http://127.0.0.1:{port}/bot", request=request)
            sender = Sender(bot, pushes, sample_config, I18n.load(), clock=lambda: NOW)
            sender.interval = 0.0
            await sender.drain()
            rows = await store.read(
                lambda c: c.execute("SELECT status, last_error FROM outbox ORDER BY id").fetchall()
            )
            # The error was kept (so the check below means something), without the token.
            for _status, error in rows:
                assert "TooManyRedirects" in error and "/bot<token>/sendMessage" in error
            # While the store is open the latest pages sit in the WAL.
            assert not holds_token(database.with_name(database.name + "-wal"))
        assert not holds_token(database)
        assert not holds_token(database.with_name(database.name + "-wal"))
    finally:
        await request.shutdown()
    assert caplog.records  # the transport and PTB did log (DEBUG) what they did
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in record.getMessage()
