"""Logs: one JSON object per line naming the update, the member (hashed) and the operation;
the token never written; the text lines unchanged unless [logging] asks for JSON."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import os
import re
import signal
import sys
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from telegram import Update
from telegram.ext import CommandHandler, TypeHandler

from bot.cli import main
from bot.config import ConfigError, LoggingConfig, load_config, parse_config
from bot.logs import (
    LOG_SALT_ENV,
    JsonFormatter,
    configure_logging,
    handling,
    member_hash,
    member_salt,
)
from bot.programme.booked import note_booked
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from handlers.common import BotContext
from tests.conftest import MEMBER_ID, Sandbox, member_with

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "424242:TOPSECRET-never-in-a-log"


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written, each parsed as one JSON object (fails on any other line)."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def json_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """A root handler writing JSON lines into a string, as `pointsbot run` sets it up."""
    monkeypatch.delenv(LOG_SALT_ENV, raising=False)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())  # what configure_logging puts on `run`'s handler
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def configure(json_log: io.StringIO) -> list[Any]:
    """The JSON handler is on the root logger before the sandbox builds the bot, as in `run`
    (building it puts the token filter on every root handler)."""
    return []


def test_each_line_is_one_json_object_with_the_fields(json_log: io.StringIO) -> None:
    log = logging.getLogger("pointsbot.test")
    log.info("outside any update")
    with handling(31, "a1b2c3"):
        note_booked(77)
        log.warning("booked %s points for %s", 12, "小明")
    log.info("after it")

    outside, inside, after = lines(json_log)
    assert inside["level"] == "WARNING"
    assert inside["logger"] == "pointsbot.test"
    assert inside["message"] == "booked 12 points for 小明"
    assert (inside["update_id"], inside["member"], inside["operation_id"]) == (31, "a1b2c3", 77)
    when = datetime.fromisoformat(inside["time"])
    assert when.utcoffset() is not None  # an instant, whatever the host's zone
    for line in (outside, after):  # nothing leaks from one update into other lines
        assert {"update_id", "member", "operation_id"}.isdisjoint(line)
        assert {"time", "level", "logger", "message"} <= set(line)


def test_an_operation_booked_outside_any_update_names_no_later_line(
    json_log: io.StringIO,
) -> None:
    # An aiohttp connection serves request after request in one task: a booking in one must
    # not be named on the next one's lines.
    def connection() -> None:
        note_booked(78)
        logging.getLogger("pointsbot.test").info("the next request")
        with handling():
            logging.getLogger("pointsbot.test").info("a request of its own")
            note_booked(79)
            logging.getLogger("pointsbot.test").info("booked")

    contextvars.copy_context().run(connection)  # the test's own context stays clean
    before, fresh, booked = lines(json_log)
    assert "operation_id" not in before and "operation_id" not in fresh
    assert booked["operation_id"] == 79


async def test_an_error_in_a_handler_is_one_line_with_the_update_and_no_token(
    sandbox: Sandbox, json_log: io.StringIO
) -> None:
    token = sandbox.app.bot.token

    async def fails(update: Update, context: BotContext) -> None:
        raise RuntimeError(f"cannot reach http://api/bot{token}/getChat\nsecond line")

    sandbox.app.add_handler(CommandHandler("boom", fails), group=-5)
    await sandbox.member().send("/start")
    json_log.truncate(0)
    json_log.seek(0)
    # The member hears of the error (and of an unknown command, from the handlers after it).
    assert await sandbox.member().send("/boom")

    errors = [line for line in lines(json_log) if line["level"] == "ERROR"]
    [error] = errors
    assert error["logger"] == "bot.app"
    assert isinstance(error["update_id"], int)
    assert error["message"] == f"update {error['update_id']} caused an error"
    assert error["member"] == member_hash(MEMBER_ID, member_salt(token))
    assert "RuntimeError: cannot reach http://api/bot<token>/getChat" in error["exc_info"]
    text = json_log.getvalue()
    assert token not in text
    assert str(MEMBER_ID) not in text


async def test_an_operator_finds_a_members_lines_by_their_code(
    sandbox: Sandbox, json_log: io.StringIO, tmp_path: Path
) -> None:
    member = await member_with(sandbox, MEMBER_ID, 0)

    async def fails(update: Update, context: BotContext) -> None:
        raise RuntimeError("the till printer is out of paper")

    sandbox.app.add_handler(CommandHandler("boom", fails), group=-5)
    await sandbox.member().send("/boom")
    [error] = [line for line in lines(json_log) if line["level"] == "ERROR"]
    config = tmp_path / "config.toml"
    config.write_text(
        (ROOT / "config.example.toml")
        .read_text(encoding="utf-8")
        .replace('path = "data/pointsbot.sqlite3"', f'path = "{sandbox.config.storage.path}"'),
        encoding="utf-8",
    )
    runner = CliRunner()
    env = {"POINTSBOT_TOKEN": sandbox.app.bot.token, LOG_SALT_ENV: ""}
    # As /card prints the code, spaced.
    spaced = " ".join(re.findall(".{1,4}", member.member_code))
    found = runner.invoke(main, ["log-member", "--config", str(config), spaced], env=env)
    assert found.exit_code == 0, found.output
    assert found.output == f"{error['member']}\n"
    no_salt = runner.invoke(
        main,
        ["log-member", "--config", str(config), member.member_code],
        env={"POINTSBOT_TOKEN": "", LOG_SALT_ENV: ""},
    )
    assert no_salt.exit_code == 2
    assert "POINTSBOT_LOG_SALT" in no_salt.output


async def test_a_purchase_booked_at_the_till_names_its_operation(
    sandbox: Sandbox, json_log: io.StringIO
) -> None:
    member = await member_with(sandbox, MEMBER_ID, 0)

    async def after_the_purchase(update: object, context: BotContext) -> None:
        logging.getLogger("pointsbot.test").info("handled")

    # After every handler of the update (the purchase's included), in the same update.
    sandbox.app.add_handler(TypeHandler(Update, after_the_purchase), group=99)
    [reply] = await sandbox.admin().send(f"/purchase {member.member_code} 128.50 eco R-1001")

    assert "256" in (reply.text or "")
    [handled] = [line for line in lines(json_log) if line["message"] == "handled"]
    operation = await sandbox.services.ledger.operation(handled["operation_id"])
    assert (operation.kind, operation.reference, operation.member_id) == (
        "purchase",
        "R-1001",
        member.id,
    )


def test_members_are_hashed_with_the_salt_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(LOG_SALT_ENV, raising=False)
    from_token = member_hash(MEMBER_ID, member_salt(TOKEN))
    assert from_token == member_hash(MEMBER_ID, member_salt(TOKEN))  # stable across restarts
    assert from_token != member_hash(MEMBER_ID, member_salt("424242:another-token"))
    assert from_token != member_hash(MEMBER_ID + 1, member_salt(TOKEN))
    monkeypatch.setenv(LOG_SALT_ENV, "the shop's own salt")
    # The salt set once keeps members' names in the logs when the token is changed.
    assert member_hash(MEMBER_ID, member_salt(TOKEN)) == member_hash(
        MEMBER_ID, member_salt("424242:another-token")
    )
    assert member_hash(MEMBER_ID, member_salt(TOKEN)) != from_token
    assert str(MEMBER_ID) not in from_token


def test_text_lines_are_unchanged_by_default() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert config.logging == LoggingConfig(format="text", level="INFO")
    stream = io.StringIO()
    root = logging.getLogger()
    # Only this handler while configuring: pytest's own keep their formatters.
    handlers, level = root.handlers, root.level
    root.handlers = [logging.StreamHandler(stream)]
    try:
        configure_logging(config.logging)
        with handling(31, "a1b2c3"):
            logging.getLogger("pointsbot.test").info("pointsbot starting (database %s)", "x")
        debug_hidden = not root.isEnabledFor(logging.DEBUG)
    finally:
        root.handlers = handlers
        root.setLevel(level)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO pointsbot.test: pointsbot starting"
        r" \(database x\)\n",
        stream.getvalue(),
    )
    assert debug_hidden


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"format": "xml"}, "[logging.format]"),
        ({"level": "LOUD"}, "[logging.level]"),
        ({"colour": True}, "[logging.colour]"),
    ],
)
def test_a_logging_mistake_names_the_key(section: dict[str, Any], expected: str) -> None:
    document = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    document["logging"] = section
    with pytest.raises(ConfigError) as error:
        parse_config(document, "config.toml")
    assert expected in str(error.value)


async def test_run_with_json_logs_writes_only_json_lines_and_never_the_token(
    tmp_path: Path,
) -> None:
    async with BotApiEmulator(token=TOKEN) as emu:
        sample = (ROOT / "config.example.toml").read_text(encoding="utf-8")
        config = tmp_path / "config.toml"
        config.write_text(
            sample.replace('base_url = ""', f'base_url = "{emu.base_url}"')
            .replace('path = "data/pointsbot.sqlite3"', f'path = "{tmp_path / "bot.sqlite3"}"')
            .replace('format = "text"', 'format = "json"'),
            encoding="utf-8",
        )
        env = {**os.environ, "POINTSBOT_TOKEN": TOKEN}
        env.pop(LOG_SALT_ENV, None)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "-v",  # DEBUG: python-telegram-bot's lines, which name its request URLs
            "run",
            "--config",
            str(config),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            [reply] = await ChatClient(emu, 9001, first_name="小红").send("/start", timeout=30)
            assert "欢迎加入红米好物" in (reply.text or "")
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    log = output.decode("utf-8")
    assert process.returncode == 0, log
    assert "TOPSECRET" not in log
    records = [json.loads(line) for line in log.splitlines()]
    assert any(r["message"].startswith("pointsbot starting") for r in records)
    assert any(r["level"] == "DEBUG" for r in records)  # -v still means DEBUG


def test_a_config_written_before_logging_existed_logs_text() -> None:
    document = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    del document["logging"]
    assert parse_config(document, "config.toml").logging == LoggingConfig(format="text")
