"""Webhook mode against polling: the same members doing the same thing through the sandbox.

Each member, in a closed loop, sends /mall, waits for the shelves, taps the first one and
waits for the tap's answer (answerCallbackQuery, what stops the member's spinner) and the
edited message. The real bot runs in the benchmark's process against the emulator three
times, with fresh databases: long-polling; served by the emulator's webhook deliveries on the
one HTTP server, every tap answered by a request of its own ([telegram]
answer_in_response_ms = 0); and the same with each tap's answer carried back in its webhook
call's response (the default wait) when the handler answers after the update is journaled
(an answer ready sooner is posted at once: the response cannot leave before the commit).
Loopback hides what a saved request is worth, so the
emulator plays a network: every Bot API request and every webhook delivery waits
`--round-trip` ms first (0: loopback). Printed for each: updates/s, the latency of a message
(sent to reply) and of a tap (tapped to answered), Bot API requests per round, and the
ratios against polling and against the webhook that never waits.
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
    # Bot API requests the bot made during the timed rounds, and the rounds.
    requests: int = 0
    rounds: int = 0
    # Taps whose answer rode in their webhook call's response.
    in_response: int = 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Each mode: how updates arrive, and how long a tap's webhook call waits for its answer.
MODES: dict[str, tuple[str, int]] = {
    "polling": ("polling", 0),
    "webhook": ("webhook", 0),
    "webhook+answer": ("webhook", 250),
}


def _configured(config: Config, path: Path, mode: str, base_url: str) -> Config:
    storage = StorageConfig(path=str(path), synchronous="FULL")
    # Members tapping as fast as the bot answers are a flood to the guard: lift it for both.
    limits = config.limits.model_copy(update={"flood_updates": 1000, "flood_seconds": 1})
    update: dict[str, object] = {"storage": storage, "limits": limits}
    receiving, wait_ms = MODES[mode]
    if receiving == "webhook":
        port = _free_port()
        update["telegram"] = TelegramConfig(
            base_url=base_url,
            mode="webhook",
            webhook_url=f"http://127.0.0.1:{port}/tg",
            answer_in_response_ms=wait_ms,
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
        run.rounds += 1


async def _run(
    config: Config, path: Path, mode: str, members: int, rounds: int, round_trip: float
) -> Run:
    run = Run()
    async with BotApiEmulator(record_calls=False) as emu:
        emu.round_trip_seconds = round_trip
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
            requests = emu.requests_served
            started = time.perf_counter()
            await asyncio.gather(*(_member_loop(emu, u, rounds, run) for u in users))
            run.seconds = time.perf_counter() - started
            run.requests = emu.requests_served - requests
            run.in_response = emu.webhook_response_calls
    return run


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _line(mode: str, run: Run, members: int) -> str:
    def ms(values: list[float], fraction: float) -> str:
        return f"{_percentile(values, fraction) * 1000:.1f}"

    return (
        f"{mode:<14} {members} members, {run.updates:,} updates: "
        f"{run.updates / run.seconds:,.0f} updates/s; message p50 {ms(run.messages, 0.5)} ms"
        f" p99 {ms(run.messages, 0.99)} ms; tap answered p50 {ms(run.taps, 0.5)} ms"
        f" p99 {ms(run.taps, 0.99)} ms; {run.requests / run.rounds:.2f} Bot API requests a round"
        f" ({run.in_response / run.rounds:.0%} of taps answered in the webhook response)"
    )


def _ratios(name: str, run: Run, base: Run) -> str:
    rate = (run.updates / run.seconds) / (base.updates / base.seconds)
    message = statistics.median(run.messages) / statistics.median(base.messages)
    tap = statistics.median(run.taps) / statistics.median(base.taps)
    requests = (run.requests / run.rounds) / (base.requests / base.rounds)
    return (
        f"ratio {name}: updates/s {rate:.3f}, message p50 {message:.3f},"
        f" tap answered p50 {tap:.3f}, requests {requests:.3f}"
    )


def main(argv: list[str] | None = None) -> None:
    """Run both modes on the same workload and print each and their ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench webhook")
    parser.add_argument("--quick", action="store_true", help="smoke run, ~100x smaller")
    parser.add_argument(
        "--round-trip",
        type=float,
        default=20.0,
        help="ms the emulated network adds to each request and delivery (default 20)",
    )
    args = parser.parse_args(argv)
    round_trip = args.round_trip / 1000
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    members, rounds = (5, 3) if quick else (50, 20)
    config = load_config(SAMPLE_CONFIG)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the bot's start-up chatter, twice
    try:
        with tempfile.TemporaryDirectory(prefix="pointsbot-bench-") as tmp:
            runs = {
                mode: asyncio.run(
                    _run(config, Path(tmp, f"{mode}.db"), mode, members, rounds, round_trip)
                )
                for mode in MODES
            }
    finally:
        root.setLevel(level)
    print(f"emulated round trip {args.round_trip:g} ms")
    for mode, run in runs.items():
        print(_line(mode, run, members))
    print(_ratios("webhook/polling", runs["webhook"], runs["polling"]))
    print(_ratios("webhook+answer/polling", runs["webhook+answer"], runs["polling"]))
    print(_ratios("webhook+answer/webhook", runs["webhook+answer"], runs["webhook"]))


if __name__ == "__main__":
    main()
