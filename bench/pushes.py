"""Scheduled work at scale: the nightly expiry sweep and reminder planning, the outbox
sender's rate against the sandbox, and /balance latency while a sweep runs.

Each figure is reported with a baseline measured in the same run: a full scan of the lots
table (what this machine does in the time), the configured send rate, and /balance with no
sweep running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.app import build_application, running
from bot.config import Config, StorageConfig, load_config
from bot.jobs import Scheduler, Sender
from bot.programme.calendar import end_of_day, local_today
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from storage.ledger import Ledger
from storage.mall import Mall
from storage.pushes import SERVICE, Push, Pushes
from storage.store import Store, connect_sync, migrate

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, the daily run
LOT_POINTS = 100
DUE_SHARE = 0.01  # lots already past their expiry when the sweep runs


def _config(path: Path, *, rate: float = 25) -> Config:
    config = load_config(ROOT / "config.example.toml")
    push = config.push.model_copy(update={"rate_per_second": rate})
    storage = StorageConfig(path=str(path), synchronous="NORMAL")
    # One member asks /balance back to back to time it: lift the flood limit, which would
    # (rightly) answer the 21st ask within 10 s with "slow down" and then nothing.
    limits = config.limits.model_copy(update={"flood_updates": 1000})
    return config.model_copy(update={"storage": storage, "push": push, "limits": limits})


def build_database(path: Path, members: int, lots: int, config: Config) -> int:
    """A consistent ledger: `members` members with `lots` lots spread over the coming year,
    about 1% already expired; return how many lots are due. Filled with set-based SQL."""
    conn = connect_sync(path, synchronous="OFF")
    migrate(conn)
    today = local_today(NOW, config)
    due = int(lots * DUE_SHARE)
    now_ts = int(NOW.timestamp())
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO members (id, telegram_id, member_code, first_name, joined_at, last_seen_at)"
        " VALUES (?, ?, ?, 'm', ?, ?)",
        ((i, 10_000_000 + i, f"{i:010d}", now_ts, now_ts) for i in range(1, members + 1)),
    )
    conn.execute(
        "INSERT INTO accounts (kind, member_id) SELECT 'member', id FROM members WHERE true"
    )
    conn.execute(
        "INSERT INTO operations (id, kind, idempotency_key, fingerprint, member_id, points, actor,"
        " created_at) VALUES (1, 'purchase', 'bench-seed', 'bench', 1, ?, 'bench', ?)",
        (lots * LOT_POINTS, now_ts - 86_400 * 400),
    )
    day_ends = [int(end_of_day(today + timedelta(days=d), config).timestamp()) for d in range(400)]
    expired_at = now_ts - 3600

    def lot_rows() -> object:
        for i in range(lots):
            expires = expired_at if i < due else day_ends[i % 400]
            yield (i % members + 1, LOT_POINTS, LOT_POINTS, expires)

    conn.executemany(
        "INSERT INTO lots (member_id, operation_id, points, remainder, expires_at)"
        " VALUES (?, 1, ?, ?, ?)",
        lot_rows(),  # type: ignore[arg-type]
    )
    source = conn.execute("SELECT id FROM accounts WHERE name = 'purchase'").fetchone()[0]
    conn.execute(
        "INSERT INTO postings (operation_id, account_id, amount) VALUES (1, ?, ?)",
        (source, -lots * LOT_POINTS),
    )
    conn.execute(
        "INSERT INTO postings (operation_id, account_id, amount)"
        " SELECT 1, a.id, sum(l.points) FROM lots AS l JOIN accounts AS a"
        " ON a.member_id = l.member_id GROUP BY a.id"
    )
    conn.execute("COMMIT")
    conn.close()
    return due


def scan_baseline(path: Path) -> float:
    """Seconds for one full scan of the lots table: this machine's speed, same run."""
    conn = connect_sync(path)
    started = time.perf_counter()
    conn.execute("SELECT count(*), sum(remainder), max(expires_at) FROM lots").fetchone()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


async def sweep_and_plan(path: Path, config: Config) -> tuple[float, float, int, int]:
    """Time the nightly sweep and the daily planning (reminders for every window)."""
    async with Store(path, synchronous="NORMAL") as store:
        ledger, pushes = Ledger(store), Pushes(store)
        scheduler = Scheduler(config, pushes, ledger, Mall(store))
        started = time.perf_counter()
        booked = await scheduler.sweep(NOW)
        swept = time.perf_counter() - started
        started = time.perf_counter()
        report = await scheduler.daily(NOW)
        planned = time.perf_counter() - started
    return swept, planned, booked, report.reminders


async def sender_rate(tmp: Path, messages: int, rate: float) -> float:
    """Messages per second the sender achieves against the sandbox at a configured rate."""
    path = tmp / "sender.sqlite3"
    config = _config(path, rate=rate)
    build_database(path, messages, messages, config)
    async with BotApiEmulator(record_calls=False) as emu, Store(path) as store:
        for i in range(1, messages + 1):
            emu.add_user(10_000_000 + i, f"m{i}")
        pushes = Pushes(store)
        await pushes.enqueue(
            [Push(f"bench:{i}", i, SERVICE, "push.birthday", {}) for i in range(1, messages + 1)],
            NOW,
        )
        from telegram import Bot

        from bot.i18n import I18n

        async with Bot(emu.token, base_url=emu.base_url) as bot:
            sender = Sender(bot, pushes, config, I18n.load(), clock=lambda: NOW)
            started = time.perf_counter()
            while await sender.drain():
                pass
            elapsed = time.perf_counter() - started
        assert sender.sent == messages, sender.sent
    return messages / elapsed


async def balance_latency(tmp: Path, members: int, lots: int, asks: int) -> tuple[float, float]:
    """p99 of /balance (send to reply, through the sandbox) with no sweep, then during one."""
    path = tmp / "latency.sqlite3"
    config = _config(path)
    build_database(path, members, lots, config)
    async with BotApiEmulator(record_calls=False) as emu:
        app = build_application(config, emu.token, base_url=emu.base_url, schedule_jobs=False)
        async with running(app, poll_timeout=1):
            member = ChatClient(emu, 10_000_001, settle=0)

            async def p99() -> float:
                samples = []
                for _ in range(asks):
                    started = time.perf_counter()
                    await member.send("/balance")
                    samples.append(time.perf_counter() - started)
                return statistics.quantiles(samples, n=100)[98]

            quiet = await p99()
            sweep = asyncio.create_task(app.bot_data.scheduler.sweep(NOW))
            await asyncio.sleep(0)
            busy = await p99()
            await sweep
    return quiet, busy


def main(argv: list[str] | None = None) -> None:
    """Print the sweep/planning time, the sender's rate, and /balance p99 with a sweep."""
    parser = argparse.ArgumentParser(prog="python -m bench pushes")
    parser.add_argument("--quick", action="store_true", help="smoke run, ~100x smaller")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    members, lots = (10_000, 50_000) if quick else (1_000_000, 5_000_000)
    messages, rate = (25, 25.0) if quick else (250, 25.0)
    with tempfile.TemporaryDirectory(prefix="pointsbot-bench-") as directory:
        tmp = Path(directory)
        path = tmp / "big.sqlite3"
        config = _config(path)
        started = time.perf_counter()
        due = build_database(path, members, lots, config)
        built = time.perf_counter() - started
        print(f"built {members:,} members, {lots:,} lots ({due:,} due) in {built:.1f} s")
        scan = scan_baseline(path)
        swept, planned, booked, reminders = asyncio.run(sweep_and_plan(path, config))
        total = swept + planned
        print(
            f"sweep {booked:,} expired lots {swept:.1f} s + plan {reminders:,} reminders"
            f" {planned:.1f} s = {total:.1f} s (target <= 60 s); full lots scan {scan:.2f} s,"
            f" ratio {total / scan:.1f}x a scan"
        )
        achieved = asyncio.run(sender_rate(tmp, messages, rate))
        print(
            f"sender: {messages} messages at {achieved:.1f}/s against the sandbox,"
            f" configured {rate:.0f}/s, ratio {achieved / rate:.2f} (target >= 0.95)"
        )
        lat_members, lat_lots = (2_000, 10_000) if quick else (100_000, 2_000_000)
        quiet, busy = asyncio.run(balance_latency(tmp, lat_members, lat_lots, 40 if quick else 300))
        print(
            f"/balance p99 through the sandbox: {quiet * 1000:.1f} ms idle,"
            f" {busy * 1000:.1f} ms during a sweep of {int(lat_lots * DUE_SHARE):,} lots,"
            f" ratio {busy / quiet:.2f}"
        )
