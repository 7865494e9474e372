"""Webhook mode against polling: the same members doing the same thing through the sandbox.

Each member, in a closed loop, sends /mall, waits for the shelves, taps the first one and
waits for the tap's answer (answerCallbackQuery, what stops the member's spinner) and the
edited message. The real bot runs in the benchmark's process against the emulator twice,
with fresh databases: once long-polling, once served by the emulator's webhook deliveries
on the one HTTP server. Printed: updates/s, the latency of a message (sent to reply) and of
a tap (tapped to answered), each mode, and the ratios webhook/polling.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench.ledger import SAMPLE_CONFIG
from bot.app import build_application, running
from bot.config import Config, StorageConfig, TelegramConfig, load_config
from bot.sandbox.server import BotApiEmulator

SECRET = "bench-webhook-secret"  # noqa: S105 - the benchmark's own, against the sandbox
FIRST_MEMBER = 700_000


@dataclass
class Run:
    """What one mode did: seconds, updates handled, each message's and each tap's latency."""

    seconds: float = 0.0
    updates: int = 0
    messages: list[float] = field(default_factory=list)
    taps: list[float] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _configured(config: Config, path: Path, mode: str, base_url: str) -> Config:
    storage = StorageConfig(path=str(path), synchronous="FULL")
    # Members tapping as fast as the bot answers are a flood to the guard: lift it for both.
    limits = config.limits.model_copy(update={"flood_updates": 1000, "flood_seconds": 1})
    update: dict[str, object] = {"storage": storage, "limits": limits}
    if mode == "webhook":
        port = _free_port()
        update["telegram"] = TelegramConfig(
            base_url=base_url, mode="webhook", webhook_url=f"http://127.0.0.1:{port}/tg"
        )
        update["server"] = config.server.model_copy(update={"port": port})
    return config.model_copy(update=update)


def _shelves(emu: BotApiEmulator, user_id: int, after: int) -> tuple[int, str] | None:
    """The mall's home among the bot's outputs since `after`: (message id, first shelf's data)."""
    for event in emu.events(user_id, after=after):
        message = emu.message(user_id, event.message_id) if event.message_id else None
        if message is not None and message.keyboard:
            data = message.keyboard[0][0].callback_data
            if data is not None and data.startswith("mall:"):
                return message.message_id, data
    return None


def _edited(emu: BotApiEmulator, user_id: int, after: int) -> bool:
    return any(e.kind != "callback_answer" for e in emu.events(user_id, after=after))


async def _member_loop(emu: BotApiEmulator, user_id: int, rounds: int, run: Run) -> None:
    for _ in range(rounds):
        seen = emu.event_count(user_id)
        started = time.perf_counter()
        emu.user_sends_text(user_id, "/mall")
        await emu.wait_for(user_id, partial(_shelves, emu, user_id, seen), 30)
        run.messages.append(time.perf_counter() - started)
        shelves = _shelves(emu, user_id, seen)
        assert shelves is not None
        seen = emu.event_count(user_id)
        started = time.perf_counter()
        query = emu.user_taps(user_id, *shelves)
        await emu.wait_for(user_id, partial(emu.callback_answer, query), 30)
        run.taps.append(time.perf_counter() - started)
        # The shelf itself (the edit) before the next round, as a member reads it first.
        await emu.wait_for(user_id, partial(_edited, emu, user_id, seen), 30)
        run.updates += 2


async def _run(config: Config, path: Path, mode: str, members: int, rounds: int) -> Run:
    run = Run()
    async with BotApiEmulator(record_calls=False) as emu:
        config = _configured(config, path, mode, emu.base_url)
        app = build_application(config, emu.token, base_url=emu.base_url, schedule_jobs=False)
        app.bot_data.webhook_secret = SECRET
        users = range(FIRST_MEMBER, FIRST_MEMBER + members)
        async with running(app, poll_timeout=10):
            for user_id in users:  # joined before the clock starts
                emu.add_user(user_id, f"m{user_id}")
                emu.user_sends_text(user_id, "/start")
                await emu.wait_for(user_id, partial(emu.event_count, user_id), 30)
            await asyncio.sleep(0.5)  # the welcomes' other messages
            started = time.perf_counter()
            await asyncio.gather(*(_member_loop(emu, u, rounds, run) for u in users))
            run.seconds = time.perf_counter() - started
    return run


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _line(mode: str, run: Run, members: int) -> str:
    def ms(values: list[float], fraction: float) -> str:
        return f"{_percentile(values, fraction) * 1000:.1f}"

    return (
        f"{mode:<8} {members} members, {run.updates:,} updates: {run.updates / run.seconds:,.0f}"
        f" updates/s; message p50 {ms(run.messages, 0.5)} ms p99 {ms(run.messages, 0.99)} ms;"
        f" tap answered p50 {ms(run.taps, 0.5)} ms p99 {ms(run.taps, 0.99)} ms"
    )


def main(argv: list[str] | None = None) -> None:
    """Run both modes on the same workload and print each and their ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench webhook")
    parser.add_argument("--quick", action="store_true", help="smoke run, ~100x smaller")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    members, rounds = (5, 3) if quick else (50, 20)
    config = load_config(SAMPLE_CONFIG)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the bot's start-up chatter, twice
    try:
        with tempfile.TemporaryDirectory(prefix="pointsbot-bench-") as tmp:
            runs = {
                mode: asyncio.run(_run(config, Path(tmp, f"{mode}.db"), mode, members, rounds))
                for mode in ("polling", "webhook")
            }
    finally:
        root.setLevel(level)
    for mode, run in runs.items():
        print(_line(mode, run, members))
    polling, webhook = runs["polling"], runs["webhook"]
    rate = (webhook.updates / webhook.seconds) / (polling.updates / polling.seconds)
    message = statistics.median(webhook.messages) / statistics.median(polling.messages)
    tap = statistics.median(webhook.taps) / statistics.median(polling.taps)
    print(
        f"ratio webhook/polling: updates/s {rate:.3f}, message p50 {message:.3f},"
        f" tap answered p50 {tap:.3f}"
    )


if __name__ == "__main__":
    main()
