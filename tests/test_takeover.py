"""A standby that takes over on PostgreSQL carries on what its leader began: two applications
on one database and one Bot API, the first leading, the second waiting in line from the
start; and a leader that loses its place stops the job it runs. (bench/failover.py and
tests/test_failover.py kill the leaders of separate processes.)"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path
from types import SimpleNamespace

from bot.app import _once_per_tick, build_application, running
from bot.config import Config
from bot.i18n import I18n
from bot.leader import SoleLeader
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from handlers.common import BotApp
from storage.feedback import pending_feedback
from storage.leadership import Leadership
from storage.store import Store
from tests.conftest import MEMBER_ID, NOW, FixedClock


async def test_a_standby_taking_over_continues_a_conversation_begun_after_it_started(
    sample_config: Config, pg_url: str
) -> None:
    storage = sample_config.storage.model_copy(update={"url": pg_url})
    config = sample_config.model_copy(update={"storage": storage})
    i18n = I18n.load(config.program.default_language)
    async with BotApiEmulator() as emu, AsyncExitStack() as first:

        def application() -> BotApp:
            return build_application(
                config, emu.token, base_url=emu.base_url, schedule_jobs=False, clock=FixedClock(NOW)
            )

        leader, standby = application(), application()
        await first.enter_async_context(running(leader, poll_timeout=1))
        assert leader.bot_data.election.leads
        # The standby starts (and reads the conversations) before the member begins one.
        async with running(standby, poll_timeout=1):
            assert not standby.bot_data.election.leads
            chat = ChatClient(emu, MEMBER_ID, "小明")
            [prompt] = await chat.send("/feedback")
            assert (prompt.text or "").startswith(
                i18n.t("zh-CN", "feedback.prompt", min=10, max=1000)
            )
            # The leader goes; the standby takes over, and the member types the suggestion.
            await first.aclose()
            [thanks] = await chat.send("收银台旁边可以多放几个购物袋吗", timeout=10)
            assert standby.bot_data.election.leads
            filed, waiting = await standby.bot_data.store.read(
                lambda conn: pending_feedback(conn, limit=5)
            )
            assert [(item.telegram_id, item.text) for item in filed] == [
                (MEMBER_ID, "收银台旁边可以多放几个购物袋吗")
            ]
            assert (thanks.text or "").startswith(i18n.t("zh-CN", "feedback.thanks", id=1))


async def test_a_leader_that_loses_its_place_stops_the_job_it_is_running(
    sample_config: Config, tmp_path: Path
) -> None:
    async with Store(tmp_path / "jobs.sqlite3") as store:
        election = SoleLeader(store)
        await election.lead(NOW)
        services = SimpleNamespace(election=election, clock=lambda: NOW, config=sample_config)
        context = SimpleNamespace(bot_data=services, job=SimpleNamespace(name="daily-pushes"))
        begun, finished = asyncio.Event(), asyncio.Event()

        async def daily(context: object) -> None:
            begun.set()
            await asyncio.sleep(30)  # a long daily run (thousands of birthdays, say)
            finished.set()

        running_job = asyncio.create_task(_once_per_tick(daily)(context))  # type: ignore[arg-type]
        await begun.wait()
        # The lock connection broke (PostgreSQL restarted): another process leads from now on.
        election.lose("the lock connection failed")
        await asyncio.wait_for(running_job, 5)
        assert not finished.is_set()
        # The tick stays claimed: the next leader's catch-up runs what was not recorded done.
        claimed = await Leadership(store).claim_tick("daily-pushes", "2026-11-25", 1, NOW)
        assert claimed is False
