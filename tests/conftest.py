"""Fixtures for conversation tests: the real Application over HTTP against the sandbox."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bot.app import build_application, running
from bot.clock import FixedClock
from bot.config import Config, StorageConfig, load_config
from bot.sandbox.client import ChatClient, Reply
from bot.sandbox.server import BotApiEmulator
from handlers.common import BotApp, Services
from storage.audit import audit
from storage.members import Member

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
# The instant every conversation test runs at unless it moves the clock: noon in Shanghai on
# a Wednesday when every dated window of the sample programme (items, surveys) is open and
# none of its campaigns or sales runs. The suite passes on any real date.
NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
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
    """The real bot, polling the emulator, with a fresh database (PostgreSQL instead of the
    SQLite file with POINTSBOT_TEST_ENGINE=postgres: the whole suite's flows on it)."""
    config = sample_config
    for change in configure:
        config = change(config)
    async with AsyncExitStack() as stack:
        if os.environ.get("POINTSBOT_TEST_ENGINE") == "postgres" and not config.storage.url:
            from tests.postgres import fresh_database, require_server

            url = stack.enter_context(fresh_database(require_server(), migrated=True))
            storage = config.storage.model_copy(update={"url": url})
            config = config.model_copy(update={"storage": storage})
        yield await stack.enter_async_context(_running_sandbox(config))


@asynccontextmanager
async def _running_sandbox(config: Config) -> AsyncIterator[Sandbox]:
    """The real bot with `config`, polling a new emulator."""
    async with BotApiEmulator() as emu:
        # Tests run the daily jobs themselves, each with the "now" it needs.
        app = build_application(
            config,
            emu.token,
            base_url=emu.base_url,
            schedule_jobs=False,
            clock=FixedClock(NOW),
        )
        # Telegram dates messages by the bot's clock too, wherever a test moves it.
        emu.clock = lambda: app.bot_data.clock()
        async with running(app, poll_timeout=1):
            yield Sandbox(emu, app, config)


# Lots seeded by `member_with` last 200 days from NOW.
SEED_EXPIRY = NOW + timedelta(days=200)


async def member_with(sandbox: Sandbox, user_id: int, points: int, lang: str = "zh-hans") -> Member:
    """A member who sent /start, holding `points` in one lot expiring at SEED_EXPIRY."""
    await sandbox.member(user_id, language_code=lang).send("/start")
    member = await sandbox.services.members.by_telegram_id(user_id)
    assert member is not None
    if points:
        await sandbox.services.ledger.earn(
            member.id,
            points,
            kind="purchase",
            key=f"seed:{user_id}",
            actor="t",
            expires_at=SEED_EXPIRY,
        )
    return member


async def available(sandbox: Sandbox, member: Member) -> int:
    """The member's spendable points now."""
    return (await sandbox.services.ledger.balance(member.id)).available


async def assert_audit_ok(sandbox: Sandbox) -> None:
    """The running bot's ledger (and mall, games, surveys) passes the audit."""
    config = sandbox.services.config
    report = await sandbox.services.store.read(
        lambda conn: audit(
            conn,
            integrity="quick",
            tier_levels=[tier.id for tier in config.tiers.levels],
            tz=config.program.tz,
        )
    )
    assert report.ok, str(report)


class PinnedCliRunner(CliRunner):
    """A CliRunner whose commands run at a chosen instant instead of the real time."""

    def __init__(self, now: datetime = NOW) -> None:
        super().__init__()
        self.clock = FixedClock(now)

    def invoke(self, cli: Any, args: Any = None, **extra: Any) -> Result:  # type: ignore[override]
        """Invoke `cli` with this runner's clock in the click context object."""
        extra.setdefault("obj", {"clock": self.clock})
        return super().invoke(cli, args, **extra)


@dataclass(frozen=True, slots=True)
class Joined:
    """A reply that came in several messages (long /rules are cut between sections), read as
    one: `.text` is their texts, one after the other."""

    text: str


def joined(replies: Sequence[Reply]) -> Joined:
    """The messages of one long reply read as one."""
    return Joined("\n".join(reply.text or "" for reply in replies))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test (tests/postgres.py); skipped without
    a server, except under CI."""
    from tests.postgres import fresh_database, require_server

    with fresh_database(require_server()) as url:
        yield url
