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

`--cluster`: webhook mode on PostgreSQL, the same members through one `pointsbot run` process
and through two (real processes, the emulator spreading its deliveries over both as a load
balancer would): any process journals what it receives, the leader alone handles it
(bot/updates.py), so a second process shares the receiving, not the handling. Needs
POINTSBOT_TEST_POSTGRES, else starts a throwaway server (`.ci/postgres`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import aiohttp

from bench.ledger import SAMPLE_CONFIG
from bench.postgres import pg_database, pg_server
from bot.app import build_application, running
from bot.config import Config, StorageConfig, TelegramConfig, load_config
from bot.sandbox.server import BotApiEmulator

SECRET = "bench-webhook-secret"  # noqa: S105 - the benchmark's own, against the sandbox
FIRST_MEMBER = 700_000
ROOT = Path(__file__).resolve().parent.parent


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
        async with running(app, poll_timeout=10):
            await _measure(emu, members, rounds, run)
    return run


async def _measure(emu: BotApiEmulator, members: int, rounds: int, run: Run) -> None:
    """The members join, then do their rounds against the clock."""
    users = range(FIRST_MEMBER, FIRST_MEMBER + members)
    for user_id in users:  # joined before the clock starts
        emu.add_user(user_id, f"m{user_id}")
        emu.user_sends_text(user_id, "/start")
        await emu.wait_for(user_id, partial(emu.event_count, user_id), 30)
    await asyncio.sleep(0.5)  # the welcomes' other messages
    requests, in_response = emu.requests_served, emu.webhook_response_calls
    started = time.perf_counter()
    await asyncio.gather(*(_member_loop(emu, u, rounds, run) for u in users))
    run.seconds = time.perf_counter() - started
    run.requests = emu.requests_served - requests
    run.in_response = emu.webhook_response_calls - in_response


def _cluster_config(workdir: Path, database: str, base_url: str, public: str, port: int) -> Path:
    """The sample programme in webhook mode on `database`, served on `port`; its path."""
    sample = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    replacements = {
        'base_url = ""': f'base_url = "{base_url}"',
        'mode = "polling"': 'mode = "webhook"',
        'webhook_url = ""': f'webhook_url = "{public}"',
        "port = 8080": f"port = {port}",
        'never here. Empty: the file above.\nurl = ""': (
            f'never here. Empty: the file above.\nurl = "{database}"'
        ),
        # Members tapping as fast as the bot answers are a flood to the guard: lifted.
        "flood_updates = 20": "flood_updates = 1000",
        "flood_seconds = 10": "flood_seconds = 1",
    }
    for old, new in replacements.items():
        assert old in sample, old
        sample = sample.replace(old, new, 1)
    path = workdir / f"config-{port}.toml"
    path.write_text(sample, encoding="utf-8")
    return path


def _tail(log: Path) -> str:
    """The end of a bot's log, to say why it failed."""
    return log.read_text(encoding="utf-8", errors="replace")[-2000:]


async def _serving(port: int, child: asyncio.subprocess.Process, log: Path) -> None:
    """Wait until the process answers on its port (its /healthz, whatever it says)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if child.returncode is not None:
                raise RuntimeError(f"pointsbot run exited: {_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/healthz"):
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"pointsbot run never served on {port}: {_tail(log)}")


async def _cluster_run(
    database: str, workdir: Path, processes: int, members: int, rounds: int, round_trip: float
) -> Run:
    """The members through `processes` real `pointsbot run` processes on one database."""
    run = Run()
    async with BotApiEmulator(record_calls=False) as emu:
        emu.round_trip_seconds = round_trip
        ports = [_free_port() for _ in range(processes)]
        urls = [f"http://127.0.0.1:{port}/tg" for port in ports]
        env = {**os.environ, "POINTSBOT_TOKEN": emu.token, "POINTSBOT_WEBHOOK_SECRET": SECRET}
        children: list[asyncio.subprocess.Process] = []
        try:
            for port in ports:
                config = _cluster_config(workdir, database, emu.base_url, urls[0], port)
                log = workdir / f"bot-{port}.log"
                with log.open("ab") as out:
                    child = await asyncio.create_subprocess_exec(
                        *(sys.executable, "-m", "bot", "run", "--config", str(config)),
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=out,
                        stderr=out,
                        env=env,
                        cwd=ROOT,
                    )
                children.append(child)
                await _serving(port, child, log)
                for _ in range(300):  # the first leads: it sets the webhook
                    if emu.webhook_url:
                        break
                    await asyncio.sleep(0.1)
            emu.webhook_targets = urls
            await _measure(emu, members, rounds, run)
        finally:
            for child in children:
                if child.returncode is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                await asyncio.wait_for(child.wait(), 60)
    return run


def cluster(members: int, rounds: int, round_trip: float) -> dict[str, Run] | None:
    """One process against two in webhook mode on PostgreSQL; None without a server."""
    runs: dict[str, Run] = {}
    with pg_server() as server, tempfile.TemporaryDirectory(prefix="pointsbot-bench-") as tmp:
        if server is None:
            return None
        for processes in (1, 2):
            name = "1 process" if processes == 1 else f"{processes} processes"
            with pg_database(server) as database:
                runs[name] = asyncio.run(
                    _cluster_run(database, Path(tmp), processes, members, rounds, round_trip)
                )
    return runs


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
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="webhook mode on PostgreSQL: one bot process against two behind one URL",
    )
    args = parser.parse_args(argv)
    round_trip = args.round_trip / 1000
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    members, rounds = (5, 3) if quick else (50, 20)
    if args.cluster:
        _print_cluster(args.round_trip, members, rounds)
        return
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


def _print_cluster(round_trip_ms: float, members: int, rounds: int) -> None:
    runs = cluster(members, rounds, round_trip_ms / 1000)
    if runs is None:
        print("no PostgreSQL (POINTSBOT_TEST_POSTGRES, or .ci/postgres): nothing measured")
        return
    print(f"webhook mode on PostgreSQL, emulated round trip {round_trip_ms:g} ms")
    for name, run in runs.items():
        print(_line(name, run, members))
    print(_ratios("2 processes/1 process", runs["2 processes"], runs["1 process"]))


if __name__ == "__main__":
    main()
