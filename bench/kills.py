"""Kill -9 the real bot again and again while cashiers and members flood it; count what is lost.

The Bot API emulator runs here; the bot is `pointsbot run` in a process of its own (forked by
bench/_crash_bot.py, so a restart costs the bot's start-up only), killed with SIGKILL at a
random moment after it has started answering, and started again; the last run is a plain
`python -m bot run` stopped with SIGTERM once everything is answered. Meanwhile bursts of
`/purchase` commands from ten cashiers (each with a receipt of its own) and `/mall` from members
(one each) keep arriving. At the end every update the emulator handed out must be in the
bot's update journal and handled, every receipt booked exactly once, every `/mall` answered,
and the ledger must pass the audit. tests/test_bot_crash.py runs a small round of this.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

from bot.clock import system_clock
from bot.config import load_config
from bot.programme.purchases import purchase_key
from bot.sandbox.server import BotApiEmulator
from storage.audit import audit
from storage.members import Profile, register_member
from storage.store import connect_sync, migrate

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "555000:KILL-BENCH"
# The tills: each cashier's updates are handled one at a time, in order (bot/updates.py).
CASHIERS = tuple(range(100000101, 100000111))
MEMBERS = 20
MEMBER_BASE = 20_000_000  # Telegram ids of the seeded members the cashiers award
MALL_BASE = 30_000_000  # Telegram ids of the members who each send one /mall
# Log lines that would mean a defect (a kill itself leaves none in the next run's log).
TROUBLE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


@dataclass
class KillReport:
    """What a round of kills left behind."""

    kills: int
    updates: int  # handed out by the emulator (its update ids 1..updates)
    purchases: int
    malls: int
    seconds: float
    lost_receipts: list[str] = field(default_factory=list)
    duplicated_effects: int = 0  # purchase operations beyond one per receipt
    unanswered_malls: list[int] = field(default_factory=list)
    not_journaled: int = 0  # update ids handed out but missing from the journal
    unfinished: int = 0  # journaled but never marked handled
    replays: int = 0  # updates handled again after a restart (journal attempts)
    extra_replies: int = 0  # answers to the cashiers beyond one per purchase
    audit_ok: bool = False
    audit_text: str = ""
    trouble: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Updates with neither their effect nor a reply."""
        return len(self.lost_receipts) + len(self.unanswered_malls) + self.not_journaled

    def __str__(self) -> str:
        return (
            f"{self.kills} kills in {self.seconds:.1f} s: {self.updates:,} updates"
            f" ({self.purchases:,} purchases, {self.malls:,} /mall);"
            f" lost {self.lost} ({len(self.lost_receipts):,} receipts not booked,"
            f" {len(self.unanswered_malls):,} /mall unanswered, {self.not_journaled:,} updates"
            f" not journaled), effects duplicated {self.duplicated_effects},"
            f" unfinished {self.unfinished}; replayed {self.replays:,},"
            f" extra replies {self.extra_replies:,}; audit {'OK' if self.audit_ok else 'FAILED'}"
        )


def prepare(workdir: Path, base_url: str) -> tuple[Path, list[str]]:
    """Write the configuration and seed the members; return the config path and member codes."""
    database = workdir / "bot.sqlite3"
    sample = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    replacements = {
        'base_url = ""': f'base_url = "{base_url}"',
        'path = "data/pointsbot.sqlite3"': f'path = "{database}"',
        # A kill of the process, not of the machine: committed work survives with NORMAL.
        'synchronous = "FULL"': 'synchronous = "NORMAL"',
    }
    for old, new in replacements.items():
        assert old in sample, old
        sample = sample.replace(old, new)
    # Every simulated cashier on the staff, as a cashier (the sample's staff keep their roles).
    sample += "".join(
        f'\n[[staff]]\ntelegram_id = {cashier}\nname = "cashier {n}"\nrole = "cashier"\n'
        for n, cashier in enumerate(CASHIERS, 1)
    )
    config = workdir / "config.toml"
    config.write_text(sample, encoding="utf-8")
    conn = connect_sync(database)
    try:
        migrate(conn)
        codes = [
            register_member(conn, Profile(MEMBER_BASE + i, f"m{i}"), None, system_clock())[
                0
            ].member_code
            for i in range(MEMBERS)
        ]
    finally:
        conn.close()
    return config, codes


class Flood:
    """Updates for the emulator: receipts from the cashiers and one /mall per new member."""

    def __init__(self, emu: BotApiEmulator, codes: list[str], category: str, seed: int) -> None:
        self.emu = emu
        self.codes = codes
        self.category = category
        self.rng = random.Random(seed)
        self.receipts: list[str] = []
        self.malls: list[int] = []
        self.last_update_id = 0
        for number, cashier in enumerate(CASHIERS, 1):
            emu.add_user(cashier, f"收银员{number}")

    def burst(self, purchases: int, malls: int) -> None:
        """Enqueue `purchases` till purchases and `malls` /mall commands, interleaved."""
        kinds = ["purchase"] * purchases + ["mall"] * malls
        self.rng.shuffle(kinds)
        for kind in kinds:
            if kind == "purchase":
                receipt = f"K{len(self.receipts) + 1:06d}"
                self.receipts.append(receipt)
                code = self.rng.choice(self.codes)
                amount = self.rng.randint(1, 500)
                text = f"/purchase {code} {amount} {self.category} {receipt}"
                cashier = self.rng.choice(CASHIERS)
                self.last_update_id = self.emu.user_sends_text(cashier, text)
            else:
                user = MALL_BASE + len(self.malls) + 1
                self.malls.append(user)
                self.emu.add_user(user, f"会员{len(self.malls)}")
                self.last_update_id = self.emu.user_sends_text(user, "/mall")


class Zygote:
    """bench/_crash_bot.py: starts the bot in a fork, kills it with SIGKILL."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def open(cls, config: Path, log: Path, env: dict[str, str]) -> Zygote:
        """Start the forking process (it imports the bot once)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench._crash_bot",
            str(config),
            str(log),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        return cls(process)

    async def _ask(self, command: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{command}\n".encode())
        await self.process.stdin.drain()
        answer = (await asyncio.wait_for(self.process.stdout.readline(), 60)).decode().strip()
        if not answer or answer.startswith("error"):
            raise RuntimeError(f"bench._crash_bot answered {answer!r} to {command}")
        return answer

    async def start(self) -> int:
        """Start a bot; its pid."""
        return int(await self._ask("start"))

    async def kill(self) -> None:
        """SIGKILL the running bot and reap it."""
        status = int(await self._ask("kill"))
        if not os.WIFSIGNALED(status) or os.WTERMSIG(status) != signal.SIGKILL:
            raise RuntimeError(f"the bot ended before it was killed (wait status {status})")

    async def close(self) -> None:
        """End the forking process (and a bot it still runs)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        await asyncio.wait_for(self.process.wait(), 30)


async def run_kills(
    workdir: Path,
    *,
    kills: int,
    purchases: int,
    malls: int,
    max_delay: float,
    seed: int = 15,
    progress: Callable[[str], None] | None = None,
) -> KillReport:
    """`kills` rounds of burst, start, first answer, a random wait up to `max_delay`, SIGKILL;
    then a last run that answers everything; return what was lost or duplicated."""
    rng = random.Random(seed)
    started = time.monotonic()
    log = workdir / "bot.log"
    env = {**os.environ, "POINTSBOT_TOKEN": TOKEN}
    async with BotApiEmulator(token=TOKEN, record_calls=False) as emu:
        config, codes = prepare(workdir, emu.base_url)
        category = load_config(config).earn.categories[0].id
        flood = Flood(emu, codes, category, seed)
        zygote = await Zygote.open(config, log, env)
        try:
            for kill in range(kills):
                flood.burst(purchases, malls)
                answered = _cashier_answers(emu)
                await zygote.start()
                # Up and serving: it has answered something new (a replay or a new purchase).
                up_by = time.monotonic() + 60
                while _cashier_answers(emu) == answered:
                    if time.monotonic() > up_by:
                        raise TimeoutError("the bot answered nothing in 60 s")
                    await asyncio.sleep(0.005)
                flood.burst(purchases, malls)  # more arriving while it works
                await asyncio.sleep(rng.uniform(0, max_delay))
                await zygote.kill()
                if progress is not None:
                    progress(f"kill {kill + 1}: {emu.pending_update_count} updates pending")
        finally:
            await zygote.close()
        await _last_run(emu, config, env, log, flood)
        return _report(workdir, kills, flood, emu, started)


def _cashier_answers(emu: BotApiEmulator) -> int:
    """How many messages the bot has sent the cashiers."""
    return sum(emu.event_count(cashier) for cashier in CASHIERS)


async def _last_run(
    emu: BotApiEmulator, config: Path, env: dict[str, str], log: Path, flood: Flood
) -> None:
    """`python -m bot run` until every update is answered, then SIGTERM: it must exit 0."""
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--config", str(config),
            env=env, cwd=ROOT, stdout=out, stderr=out,
        )  # fmt: skip
        try:
            database = connect_sync(config.parent / "bot.sqlite3")
            try:
                # A long round leaves a long queue: allow 200 updates a second, and a minute.
                allowed = 60 + flood.last_update_id / 200
                deadline = time.monotonic() + allowed
                answers, quiet_since = -1, time.monotonic()
                while True:
                    now = time.monotonic()
                    if len(emu.events()) != answers:
                        answers, quiet_since = len(emu.events()), now
                    if _settled(database, emu, flood, now - quiet_since):
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"the last run left updates unanswered ({allowed:.0f} s)"
                        )
                    if process.returncode is not None:
                        raise RuntimeError(f"the last run exited with {process.returncode}")
                    await asyncio.sleep(0.1)
            finally:
                database.close()
            process.send_signal(signal.SIGTERM)
            if await asyncio.wait_for(process.wait(), 30) != 0:
                raise RuntimeError(f"the last run exited with {process.returncode} on SIGTERM")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def _settled(conn: sqlite3.Connection, emu: BotApiEmulator, flood: Flood, quiet: float) -> bool:
    """Every update acknowledged, journaled and handled, every /mall answered; without a
    journal (a bot before it), acknowledged and `quiet` seconds without an answer."""
    if emu.pending_update_count:
        return False
    try:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE done_at IS NULL) FROM update_journal"
        ).fetchone()
    except sqlite3.OperationalError:
        return quiet > 2
    answered = all(emu.event_count(user) for user in flood.malls)
    return bool(row[0] == flood.last_update_id and row[1] == 0 and answered)


def _report(
    workdir: Path, kills: int, flood: Flood, emu: BotApiEmulator, started: float
) -> KillReport:
    """Compare what was sent with what the database and the chats hold."""
    report = KillReport(
        kills=kills,
        updates=flood.last_update_id,
        purchases=len(flood.receipts),
        malls=len(flood.malls),
        seconds=time.monotonic() - started,
    )
    conn = connect_sync(workdir / "bot.sqlite3")
    try:
        booked: dict[str, int] = dict(
            conn.execute(
                "SELECT idempotency_key, count(*) FROM operations WHERE kind = 'purchase'"
                " GROUP BY idempotency_key"
            ).fetchall()
        )
        keys = {purchase_key(receipt): receipt for receipt in flood.receipts}
        report.lost_receipts = [r for key, r in keys.items() if key not in booked]
        report.duplicated_effects = sum(booked.values()) - len(booked.keys() & keys.keys())
        try:
            journaled, unfinished, replays = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE done_at IS NULL),"
                " coalesce(sum(attempts), 0) FROM update_journal"
                " WHERE update_id BETWEEN 1 AND ?",
                (flood.last_update_id,),
            ).fetchone()
        except sqlite3.OperationalError:  # a bot before the journal
            journaled, unfinished, replays = 0, 0, 0
        report.not_journaled = flood.last_update_id - journaled
        report.unfinished, report.replays = unfinished, replays
        sample = load_config(ROOT / "config.example.toml")
        checked = audit(
            conn,
            integrity="quick",
            tier_levels=[tier.id for tier in sample.tiers.levels],
            tz=sample.program.tz,
        )
        report.audit_ok, report.audit_text = checked.ok, str(checked)
    finally:
        conn.close()
    report.unanswered_malls = [user for user in flood.malls if not emu.event_count(user)]
    report.extra_replies = max(0, _cashier_answers(emu) - len(flood.receipts))
    report.trouble = [
        line
        for line in (workdir / "bot.log").read_text(encoding="utf-8", errors="replace").splitlines()
        if TROUBLE.search(line)
    ]
    return report


def main(argv: list[str] | None = None) -> None:
    """Run a round of kills and print what it lost."""
    parser = argparse.ArgumentParser(prog="python -m bench kills", description=__doc__)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--purchases", type=int, default=150, help="per burst (two a kill)")
    parser.add_argument("--malls", type=int, default=30, help="per burst")
    parser.add_argument("--max-delay", type=float, default=0.3, help="seconds, after a reply")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="5 kills")
    args = parser.parse_args(argv)
    kills = 5 if args.quick else args.kills
    with TemporaryDirectory(prefix="pointsbot-kills-") as tmp:
        report = asyncio.run(
            run_kills(
                Path(tmp),
                kills=kills,
                purchases=args.purchases,
                malls=args.malls,
                max_delay=args.max_delay,
                seed=args.seed,
                progress=lambda line: print(line, flush=True),
            )
        )
    print(report)
    for line in report.trouble[:20]:
        print(f"  log: {line}")
    if report.lost or report.duplicated_effects or not report.audit_ok:
        print(report.audit_text)
        sys.exit(1)


if __name__ == "__main__":
    main()
