"""Fixtures for conversation tests: the real Application over HTTP against the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.app import build_application, running
from bot.config import Config, StorageConfig, load_config
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from handlers.common import BotApp, Services

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
ADMIN_ID = 100000001  # the sample programme's operator
MEMBER_ID = 5001


@pytest.fixture
def sample_config(tmp_path: Path) -> Config:
    """The sample programme with a fresh database in this test's folder."""
    config = load_config(SAMPLE)
    storage = StorageConfig(path=str(tmp_path / "bot.sqlite3"), synchronous="NORMAL")
    return config.model_copy(update={"storage": storage})


@dataclass
class Sandbox:
    """A running bot, its emulator, and a way to make members who chat with it."""

    emu: BotApiEmulator
    app: BotApp
    config: Config

    @property
    def services(self) -> Services:
        """The running bot's services (store, ledger, members)."""
        return self.app.bot_data

    def member(
        self,
        user_id: int = MEMBER_ID,
        first_name: str = "小明",
        language_code: str | None = "zh-hans",
    ) -> ChatClient:
        """A Telegram user chatting with the bot."""
        return ChatClient(self.emu, user_id, first_name=first_name, language_code=language_code)

    def admin(self, language_code: str | None = "zh-hans") -> ChatClient:
        """The programme's operator (an admin in the configuration)."""
        return self.member(ADMIN_ID, "店员", language_code)


@pytest.fixture
def configure() -> list[Callable[[Config], Config]]:
    """Tests append changes to the sample configuration here before `sandbox` starts."""
    return []


@pytest.fixture
async def sandbox(
    sample_config: Config, configure: list[Callable[[Config], Config]]
) -> AsyncIterator[Sandbox]:
    """The real bot, polling the emulator, with a fresh database."""
    config = sample_config
    for change in configure:
        config = change(config)
    async with BotApiEmulator() as emu:
        # Tests run the daily jobs themselves, each with the "now" it needs.
        app = build_application(config, emu.token, base_url=emu.base_url, schedule_jobs=False)
        async with running(app, poll_timeout=1):
            yield Sandbox(emu, app, config)
