"""Measure pushes doubled and lost per 1,000 when the sender is killed (SIGKILL) at random.

    .venv/bin/python -m tests.push_kills --pushes 1000

One database, N members, a service push (a greeting) and a marketing push (a broadcast) to
each; a child process drains the outbox through the real transport into the Bot API
emulator (this process) and is killed at a random instant, again and again, until a child
finishes; then each member's deliveries are counted at the emulator. Not part of `make test`
(about a minute of two cores); tests/test_push_crashes.py checks the same accounting in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.config import load_config
from bot.i18n import I18n
from bot.jobs import Sender
from bot.sandbox.server import BotApiEmulator
from bot.transport import AiohttpRequest
from storage.members import Members, Profile
from storage.pushes import MARKETING, SERVICE, Push, Pushes
from storage.store import Store

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
NOON = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # outside quiet hours
GREETING = "🎂 生日快乐！感谢您一直以来的支持。"
OFFER = "📣 周末会员日"
FIRST_USER = 900_000


async def child(database: str, base_url: str, token: str, interval: float) -> None:
    """Drain the outbox until nothing is due (the part that gets killed)."""
    from telegram import Bot

    config = load_config(SAMPLE)
    async with Store(database, synchronous="FULL", clock=lambda: NOON) as store:
        request = AiohttpRequest()
        await request.initialize()
        bot = Bot(token, base_url=base_url, request=request)
        sender = Sender(bot, Pushes(store), config, I18n.load(), clock=lambda: NOON)
        sender.interval = interval
        print("ready", flush=True)
        while await sender.drain():
            pass
        print("drained", flush=True)  # from here on a kill would measure nothing
        await request.shutdown()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What arrived how often after a run under kills."""

    pushes: int
    kills: int
    statuses: dict[str, int]
    doubled: Counter[str]
    lost: Counter[str]

    def report(self) -> str:
        """The measure in words, per 1,000 pushes of each kind."""
        lines = [f"{self.pushes} pushes of each kind, {self.kills} kills; outbox {self.statuses}"]
        for kind in (SERVICE, MARKETING):
            lines.append(
                f"{kind}: doubled {1000 * self.doubled[kind] / self.pushes:.1f} per 1,000,"
                f" lost {1000 * self.lost[kind] / self.pushes:.1f} per 1,000"
            )
        return "\n".join(lines)


async def measure(pushes: int, max_kill_after: float, interval: float, seed: int) -> Outcome:
    """Run children under random kills until one finishes; count what arrived how often."""
    draw = random.Random(seed)
    with tempfile.TemporaryDirectory() as folder:
        database = str(Path(folder) / "kills.sqlite3")
        async with BotApiEmulator(record_calls=False) as emu:
            async with Store(database, clock=lambda: NOON) as store:
                members = Members(store)
                queued: list[Push] = []
                for user_id in range(FIRST_USER, FIRST_USER + pushes):
                    emu.add_user(user_id, f"m{user_id}")
                    member, _ = await members.register(Profile(user_id, f"m{user_id}"))
                    queued.append(Push(f"svc:{member.id}", member.id, SERVICE, "push.birthday", {}))
                    queued.append(
                        Push(
                            f"bc:{member.id}",
                            member.id,
                            MARKETING,
                            "push.broadcast",
                            {"text": "周末会员日"},
                        )
                    )
                await Pushes(store).enqueue(queued, NOON)
            kills = 0
            while True:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tests.push_kills",
                    "--child",
                    database,
                    emu.base_url,
                    emu.token,
                    str(interval),
                    stdout=asyncio.subprocess.PIPE,
                )
                assert process.stdout is not None
                await process.stdout.readline()  # "ready": the store is open, sending starts
                try:
                    drained = await asyncio.wait_for(
                        process.stdout.readline(), timeout=draw.uniform(0, max_kill_after)
                    )
                except TimeoutError:
                    process.kill()
                    await process.wait()
                    kills += 1
                    continue
                if drained.strip() == b"drained" and await process.wait() == 0:
                    break
                raise SystemExit(f"the child failed: exit {await process.wait()}")
            async with Store(database, clock=lambda: NOON) as store:
                statuses = dict(
                    await store.read(
                        lambda c: c.execute(
                            "SELECT status, count(*) FROM outbox GROUP BY status"
                        ).fetchall()
                    )
                )
            doubled: Counter[str] = Counter()
            lost: Counter[str] = Counter()
            for user_id in range(FIRST_USER, FIRST_USER + pushes):
                texts = Counter(m.text for m in emu.messages(user_id) if m.from_bot)
                for kind, text in ((SERVICE, GREETING), (MARKETING, OFFER)):
                    doubled[kind] += texts[text] > 1
                    lost[kind] += texts[text] == 0
    return Outcome(pushes, kills, statuses, doubled, lost)


def main() -> None:
    """Parse the command line; run the measure, or (internally) one child."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        database, base_url, token, interval = sys.argv[2:6]
        asyncio.run(child(database, base_url, token, float(interval)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=1000, help="pushes of each kind")
    parser.add_argument("--kill-within", type=float, default=0.5, help="seconds after a start")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between pushes")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    print(asyncio.run(measure(args.pushes, args.kill_within, args.interval, args.seed)).report())


if __name__ == "__main__":
    main()
