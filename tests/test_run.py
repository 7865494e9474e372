"""`pointsbot run` for real: long polling, SIGTERM, and never a token in the logs."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from bot.app import redact_token_in_logs
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from tests.conftest import NOW, Sandbox

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "424242:TOPSECRET-never-in-a-log"


async def test_run_serves_members_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    async with BotApiEmulator(token=TOKEN) as emu:
        sample = (ROOT / "config.example.toml").read_text(encoding="utf-8")
        config = tmp_path / "config.toml"
        config.write_text(
            sample.replace('base_url = ""', f'base_url = "{emu.base_url}"').replace(
                'path = "data/pointsbot.sqlite3"', f'path = "{tmp_path / "bot.sqlite3"}"'
            ),
            encoding="utf-8",
        )
        env = {**os.environ, "POINTSBOT_TOKEN": TOKEN}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "-v",
            "run",
            "--config",
            str(config),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            member = ChatClient(emu, 9001, first_name="小红")
            # The first reply waits for start-up (imports, migrations, the first long poll).
            [reply] = await member.send("/start", timeout=30)
            assert "欢迎加入红米好物" in (reply.text or "")
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    log = output.decode("utf-8", "replace")
    assert process.returncode == 0, log
    assert "TOPSECRET" not in log
    assert "pointsbot starting" in log
    assert (tmp_path / "bot.sqlite3").exists()


def test_the_token_is_scrubbed_from_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        redact_token_in_logs(TOKEN)
        log = logging.getLogger("test.redaction")
        log.warning("calling %s/getMe", f"http://api/bot{TOKEN}")
        try:
            raise ConnectionError(f"cannot reach http://api/bot{TOKEN}/getUpdates")
        except ConnectionError:
            log.exception("polling failed")
    finally:
        root.removeHandler(handler)
    text = stream.getvalue()
    assert "calling http://api/bot<token>/getMe" in text
    assert "cannot reach http://api/bot<token>/getUpdates" in text
    assert "TOPSECRET" not in text


async def test_the_services_are_built_complete_and_share_one_config_and_clock(
    sandbox: Sandbox,
) -> None:
    services = sandbox.services
    # Built once, at build time: nothing is filled in later by the handlers or post_init.
    assert services.flood.limit == sandbox.config.limits.flood_updates
    assert services.scheduler.pushes is services.pushes
    assert services.sender.pushes is services.pushes
    # A new configuration reaches everyone who holds one.
    limits = sandbox.config.limits.model_copy(update={"flood_updates": 3})
    changed = sandbox.config.model_copy(update={"surveys": [], "limits": limits})
    services.config = changed
    assert services.scheduler.config is changed and services.sender.config is changed
    assert services.flood.limit == 3
    # Moving the clock moves it for the store, the jobs and the sender.
    later = NOW + timedelta(days=3)
    services.clock = lambda: later
    assert services.store.now(None) == later
    assert services.scheduler.clock() == later and services.sender.clock() == later
