"""End to end: the real bot, over HTTP, against the sandbox, with many members at once.

A database of 1,000,000 members (in households of two) and about 10,000,000 ledger rows; N
simulated members each loop through a mix of /balance, a /history page, browsing the mall,
redeeming with confirmation, spinning the wheel, moving points to their household partner,
/tasks and the /badges wall, waiting for each reply before the next step (every member has
this year's tier figures, so /balance shows its tier line). The bot runs in its own process
(bench/_e2e_bot.py) so its CPU and peak memory are its own. The baseline, in the same run on
the same sandbox, is the fastest bare python-telegram-bot echo bot we can build (aiohttp
transport, concurrent updates) driven by the same members; between them, the floor:
pointsbot's plumbing making pointsbot's requests, with no work of its own, the ceiling of any
pointsbot's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import load_config
from bot.programme.calendar import local_today
from bot.programme.tiers import month_of, tier_for_total
from bot.sandbox.server import BotApiEmulator
from storage.journal import forget_all
from storage.store import connect_sync, migrate

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "777000:E2E-BENCH"
TELEGRAM_BASE = 10_000_000
# Each seeded lot: a purchase worth enough that a member redeeming and spinning all run long
# never runs short (a refusal would be cheaper work than the redemption it replaces).
LOT_POINTS = 2000


def build_ledger(path: Path, members: int, lots_per_member: int) -> int:
    """Members, accounts, one purchase operation per lot with both postings, and the lots:
    a consistent ledger, filled set-based; return the number of ledger rows."""
    conn = connect_sync(path, synchronous="OFF")
    migrate(conn)
    now = int(datetime.now(UTC).timestamp())
    year = int((datetime.now(UTC) + timedelta(days=300)).timestamp())
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO members (id, telegram_id, member_code, first_name, language, joined_at,"
        " last_seen_at) VALUES (?, ?, ?, 'm', 'zh-CN', ?, ?)",
        ((i, TELEGRAM_BASE + i, f"{i:010d}", now, now) for i in range(1, members + 1)),
    )
    conn.execute(
        "INSERT INTO accounts (kind, member_id) SELECT 'member', id FROM members WHERE true"
    )
    lots = members * lots_per_member
    conn.executemany(
        "INSERT INTO operations (id, kind, idempotency_key, fingerprint, member_id, points,"
        " actor, created_at) VALUES (?, 'purchase', ?, 'bench', ?, ?, 'bench', ?)",
        (
            (i, f"seed:{i}", (i - 1) % members + 1, LOT_POINTS, now - 86_400)
            for i in range(1, lots + 1)
        ),
    )
    source = conn.execute("SELECT id FROM accounts WHERE name = 'purchase'").fetchone()[0]
    conn.execute(
        "INSERT INTO postings (operation_id, account_id, amount)"
        " SELECT id, ?, -points FROM operations WHERE true",
        (source,),
    )
    conn.execute(
        "INSERT INTO postings (operation_id, account_id, amount)"
        " SELECT o.id, a.id, o.points FROM operations AS o JOIN accounts AS a"
        " ON a.member_id = o.member_id"
    )
    conn.execute(
        "INSERT INTO lots (member_id, operation_id, points, remainder, expires_at)"
        " SELECT member_id, id, points, points, ? FROM operations WHERE true",
        (year,),
    )
    # Households of two (members 2k-1 and 2k), formed a month ago: past the cooling-off, so
    # every simulated member can move points to their partner.
    formed = now - 30 * 86_400
    conn.execute(
        "INSERT INTO households (id, created_by, head_id, created_at)"
        " SELECT (id + 1) / 2, id, id, ? FROM members WHERE id % 2 = 1 AND id < ?",
        (formed, members),
    )
    conn.execute(
        "INSERT INTO household_members (household_id, member_id, joined_at)"
        " SELECT (id + 1) / 2, id, ? FROM members WHERE id <= ? - ? % 2",
        (formed, members, members),
    )
    _tier_figures(conn, members, now)
    conn.execute("COMMIT")
    rows = sum(
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
        for table in ("accounts", "operations", "postings", "lots")
    )
    conn.close()
    return int(rows)


def _tier_figures(conn: sqlite3.Connection, members: int, now: int) -> None:
    """This month's purchases of every member, spread from nothing to past the top tier's
    threshold, and the tier each total reached: the tier line of /balance reads real figures
    for every member (and the next tier's need, or what keeps the top one)."""
    config = load_config(ROOT / "config.example.toml")
    month = month_of(local_today(datetime.fromtimestamp(now, UTC), config))
    top = config.tiers.levels[-1].threshold

    def spent(member_id: int) -> int:
        return (member_id * 7919) % (top + top // 4)

    conn.executemany(
        "INSERT INTO tier_months (member_id, month, points, fen) VALUES (?, ?, ?, ?)",
        ((i, month, spent(i), spent(i) * 100) for i in range(1, members + 1)),
    )
    lowest = config.tiers.levels[0].id
    held = ((i, tier_for_total(spent(i), config).id) for i in range(1, members + 1))
    conn.executemany(
        "INSERT INTO member_tiers (member_id, tier_id, since) VALUES (?, ?, ?)",
        ((i, tier, now) for i, tier in held if tier != lowest),
    )


def write_config(path: Path, database: Path) -> Path:
    """The sample programme on the bench database; the flood limit is lifted so the bench
    measures the work, not the polite refusal."""
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    text = text.replace('path = "data/pointsbot.sqlite3"', f'path = "{database}"')
    text = text.replace('synchronous = "FULL"', 'synchronous = "NORMAL"')
    text = text.replace("flood_updates = 20", "flood_updates = 1000")
    # The bag every redeeming member buys is a festival item: enough stock and no per-member
    # cap for the whole run, so each redemption is a real one (not a "sold out" alert).
    text = text.replace(
        "price = 300\nstock = 200\nper_member_limit = 2", "price = 300\nstock = 100000000"
    )
    if "stock = 100000000" not in text:
        raise RuntimeError("config.example.toml changed: the bench cannot stock its item")
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Tally:
    """Latencies (seconds) of every step, by the instant they completed."""

    latencies: list[float] = field(default_factory=list)
    handled: list[float] = field(default_factory=list)
    timeouts: int = 0
    by_step: dict[str, list[float]] = field(default_factory=dict)


Step = Callable[[BotApiEmulator, int], tuple[str, str, int | None]]


def _last_with(emu: BotApiEmulator, chat: int, prefix: str) -> tuple[int | None, str | None]:
    """The newest bot message with a button whose data starts with `prefix`."""
    for message in reversed(emu.messages(chat)):
        if not message.from_bot:
            continue
        for row in message.keyboard:
            for button in row:
                if button.callback_data and button.callback_data.startswith(prefix):
                    return message.message_id, button.callback_data
    return None, None


def _any_bot_message(emu: BotApiEmulator, chat: int) -> int | None:
    for message in reversed(emu.messages(chat)):
        if message.from_bot:
            return message.message_id
    return None


# The mix: each action is a sequence of steps; a step is text to send or a button to tap.
MIX: tuple[tuple[float, tuple[tuple[str, str], ...]], ...] = (
    (0.25, (("text", "/balance"),)),
    # The tasks with their progress, and the badge wall (a picture, drawn once, then re-sent).
    (0.03, (("text", "/tasks"),)),
    (0.02, (("text", "/badges"),)),
    (0.20, (("text", "/history"),)),
    (0.20, (("text", "/mall"), ("tap", "mall:cat:home"))),
    (
        0.10,
        (
            ("text", "/mall"),
            ("tap", "mall:cat:home"),
            ("tap", "mall:item:"),
            ("tap", "mall:buy:"),
            ("tap", "mall:ok:"),
        ),
    ),
    (0.15, (("text", "/wheel"), ("tap", "game"))),
    # Points to the household partner: whom, how much (the first quick amount), confirm.
    (
        0.05,
        (
            ("text", "/transfer"),
            ("tap", "tr:to:"),
            ("tap", "tr:amt:"),
            ("tap", "tr:ok:"),
        ),
    ),
)


class Handled:
    """How many updates of each chat the bot reports fully handled (its stdout, a chat id a
    line): a step is over when the bot is done with it, not after a guessed quiet spell."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self._waiting: dict[int, tuple[int, asyncio.Future[None]]] = {}

    async def read(self, stream: asyncio.StreamReader) -> None:
        """Count the bot's reports until its stdout closes."""
        while line := await stream.readline():
            chat = int(line)
            count = self.counts[chat] = self.counts.get(chat, 0) + 1
            waiting = self._waiting.get(chat)
            if waiting is not None and count >= waiting[0] and not waiting[1].done():
                waiting[1].set_result(None)

    async def wait(self, chat: int, count: int) -> None:
        """Wait until `count` updates of `chat` are handled."""
        if self.counts.get(chat, 0) >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[chat] = (count, future)
        try:
            await future
        finally:
            del self._waiting[chat]


async def _member(
    emu: BotApiEmulator,
    handled: Handled,
    chat: int,
    deadline: float,
    rng: random.Random,
    tally: Tally,
    think: float = 0.0,
    record_from: float = 0.0,
) -> None:
    weights = [w for w, _ in MIX]
    sent = 0
    if think:  # people do not all start at the same instant
        await asyncio.sleep(rng.uniform(0, 2 * think))
    while time.perf_counter() < deadline:
        _, steps = rng.choices(MIX, weights)[0]
        for kind, payload in steps:
            before = emu.event_count(chat)
            started = time.perf_counter()
            if kind == "text":
                emu.user_sends_text(chat, payload)
            else:
                message_id, data = _last_with(emu, chat, payload)
                if message_id is None:  # the echo bot shows no buttons: tap its last message
                    message_id = _any_bot_message(emu, chat)
                    data = payload + ("0" if payload.endswith(":") else ":0")
                if message_id is None or data is None:
                    break
                emu.user_taps(chat, message_id, data)
            sent += 1
            try:
                # The first answer (a message, or the tap's answer that stops the spinner)...
                await emu.wait_for(chat, lambda b=before: emu.event_count(chat) > b, 10.0)
                replied = time.perf_counter()
                # ...and the bot done with the update (edits, photos, its last write).
                async with asyncio.timeout(10.0):
                    await handled.wait(chat, sent)
            except TimeoutError:
                tally.timeouts += 1
                break
            if started >= record_from:  # the warm-up is not counted
                tally.latencies.append(replied - started)
                tally.handled.append(time.perf_counter() - started)
                tally.by_step.setdefault(payload, []).append(replied - started)
            if think:  # a person reads the answer before the next tap
                await asyncio.sleep(rng.expovariate(1 / think))


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def forget_updates(database: Path) -> None:
    """Empty the bot's update journal: each run's new emulator starts its update ids over,
    in chats of its own, so what the last run left there means nothing to it."""
    conn = connect_sync(database)
    try:
        conn.execute("BEGIN IMMEDIATE")
        forget_all(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()


@dataclass(frozen=True)
class Result:
    """One bot's figures."""

    rate: float
    p50: float
    p99: float
    handled_p99: float
    rss_mb: float
    timeouts: int
    # Per step of the mix: count, p50 and p99 (seconds).
    by_step: dict[str, tuple[int, float, float]]


async def run_load(
    kind: str, config: Path, concurrent: int, seconds: float, warmup: float, think: float = 0.0
) -> Result:
    """Start the bot process, drive `concurrent` members for `seconds`, read its peak RSS."""
    async with BotApiEmulator(token=TOKEN, record_calls=False) as emu:
        for i in range(1, concurrent + 1):
            emu.add_user(TELEGRAM_BASE + i, f"m{i}", language_code="zh-hans")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench._e2e_bot",
            kind,
            str(config),
            emu.base_url,
            TOKEN,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            assert process.stdout is not None
            ready = await asyncio.wait_for(process.stdout.readline(), timeout=120)
            assert ready.strip() == b"ready", ready
            handled = Handled()
            reader = asyncio.create_task(handled.read(process.stdout))
            rng = random.Random(7)
            # The harness (emulator and members) keeps every message: its own collector
            # pauses would be charged to the bot's latency.
            gc.collect()
            gc.freeze()
            gc.disable()
            # One continuous run; steps begun during the warm-up are not counted (a second
            # run would start every member at once, a burst no crowd produces).
            tally = Tally()
            started = time.perf_counter() + warmup
            end = started + seconds
            await asyncio.gather(
                *(
                    _member(
                        emu,
                        handled,
                        TELEGRAM_BASE + i,
                        end,
                        random.Random(rng.random()),
                        tally,
                        think,
                        started,
                    )
                    for i in range(1, concurrent + 1)
                )
            )
            elapsed = time.perf_counter() - started
            rss = _peak_rss_mb(process.pid)
            reader.cancel()
        finally:
            gc.enable()
            gc.unfreeze()
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), timeout=30)
                except TimeoutError:
                    process.kill()
    quantiles = statistics.quantiles(tally.latencies, n=100)
    handled_p99 = statistics.quantiles(tally.handled, n=100)[98]
    steps = {
        step: (len(values), *_p50_p99(values))
        for step, values in tally.by_step.items()
        if len(values) > 1
    }
    return Result(
        len(tally.latencies) / elapsed,
        quantiles[49],
        quantiles[98],
        handled_p99,
        rss,
        tally.timeouts,
        steps,
    )


def _p50_p99(values: list[float]) -> tuple[float, float]:
    """The median and the 99th percentile (the worst of fewer than 100)."""
    if len(values) < 100:
        return statistics.median(values), max(values)
    cuts = statistics.quantiles(values, n=100)
    return cuts[49], cuts[98]


def main(argv: list[str] | None = None) -> None:
    """Print the real bot's and the echo bot's throughput, latency and peak memory."""
    parser = argparse.ArgumentParser(prog="python -m bench e2e")
    parser.add_argument("--quick", action="store_true", help="smoke run, ~100x smaller")
    parser.add_argument("--concurrent", type=int, default=None, help="simulated members")
    parser.add_argument("--members", type=int, default=None, help="members in the database")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds")
    parser.add_argument(
        "--think", type=float, default=1.0, help="mean seconds a member reads between taps"
    )
    parser.add_argument("--breakdown", action="store_true", help="latency per kind of step")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    members = args.members or (10_000 if quick else 1_000_000)
    lots_each = 3
    concurrent = args.concurrent or (50 if quick else 500)
    seconds = args.seconds or (3.0 if quick else 20.0)
    warmup = min(3.0, seconds / 3)
    with tempfile.TemporaryDirectory(prefix="pointsbot-e2e-") as directory:
        tmp = Path(directory)
        database = tmp / "e2e.sqlite3"
        started = time.perf_counter()
        rows = build_ledger(database, members, lots_each)
        built = time.perf_counter() - started
        print(f"database: {members:,} members, {rows:,} ledger rows, built in {built:.0f} s")
        config = write_config(tmp / "config.toml", database)
        results = {}
        # Saturation: every member taps again the moment the answer settles (closed loop),
        # so latency there is mostly queueing; then members who read about `think` seconds
        # between taps, which is what a crowd of that size looks like.
        # The floor (saturated only) is pointsbot's plumbing making pointsbot's requests with
        # none of its work: the most any pointsbot could reach (bench/_e2e_bot.py).
        for label, think, kinds in (
            ("saturated", 0.0, ("echo", "floor", "pointsbot")),
            (f"think {args.think:g}s", args.think, ("echo", "pointsbot")),
        ):
            for kind in kinds:
                if kind == "pointsbot":
                    forget_updates(database)
                result = asyncio.run(run_load(kind, config, concurrent, seconds, warmup, think))
                results[(kind, think)] = result
                print(
                    f"{kind:9s} {label:10s} {concurrent} members: {result.rate:,.0f} updates/s,"
                    f" p50 {result.p50 * 1000:.1f} ms, p99 {result.p99 * 1000:.1f} ms"
                    f" (handled p99 {result.handled_p99 * 1000:.1f} ms),"
                    f" peak RSS {result.rss_mb:.0f} MB, timeouts {result.timeouts}"
                )
                # Each step of pointsbot's mix (the transfer's four beside the others).
                if args.breakdown or kind == "pointsbot":
                    for step, (count, p50, p99) in sorted(result.by_step.items()):
                        print(
                            f"    {step:14s} {count:6d} steps, p50 {p50 * 1000:.1f} ms,"
                            f" p99 {p99 * 1000:.1f} ms"
                        )
            if not think:
                echo, floor = results[("echo", 0.0)].rate, results[("floor", 0.0)].rate
                ratio = results[("pointsbot", 0.0)].rate / echo
                print(f"pointsbot/echo saturated throughput ratio {ratio:.2f}")
                print(
                    f"floor/echo {floor / echo:.2f} (pointsbot's requests, none of its work),"
                    f" pointsbot/floor {results[('pointsbot', 0.0)].rate / floor:.2f}"
                )
        print(
            "targets: >= 1,000 updates/s sustained, p99 <= 50 ms at 500 members,"
            " ratio >= 0.6 of the echo bot, peak RSS <= 250 MB"
        )


if __name__ == "__main__":
    main()
