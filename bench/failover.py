"""Fail the leader over while members and tills flood two bot processes on one PostgreSQL.

Two `pointsbot run` processes (forked by bench/_cluster_bot.py, so a restart costs the bot's
start-up only; a supervisor here starts a slot's process again whenever it ends, exit 75 after
a lost leadership being normal) share a throwaway PostgreSQL (`.ci/postgres start`, restarted
once with `pg_ctl restart -m fast`) and the Bot API emulator of this process.

The traffic. Members send updates, each with a nonce of its own: most send `/feedback nonce
<member>-<n> ...` (the text is stored with the member); every `cashier_every`th sender is a
cashier typing `/purchase CODE AMOUNT CATEGORY F<cashier>x<n>` (the receipt is the nonce, the
operation keyed by it). Five stores post signed purchases through the till API of either
process; 10% are sent again (half at once to the other process, half after the answer), a
tenth are returned in part, and a request that fails (connection lost, 5xx) is sent again,
signed anew, to the other process until answered, as a till would. Some members have their
birthday today. [push] sweep_at is midnight, so every new leader's catch-up finds the sweep
due; daily_at is a little into the round, so the leader of the time runs the daily pushes
and every later leader's catch-up finds them due.

The chaos. The leader (`leadership.holder`) is killed with SIGKILL `kills` times, each once a
standby waits in line (pg_locks); one kill lands mid-transaction: the leader is stopped with
SIGSTOP until one of its backends (matched by client port) is `idle in transaction` with an
xid, i.e. has written and cannot commit, then killed, and that transaction is checked
aborted. PostgreSQL is restarted once.

What is proved, from the database, the emulator's records and the logs: every nonce has its
effect exactly once, each sender's in the order sent (row ids); every till receipt and return
is booked once and answered 201 at most once; the audit passes (postings balance, no balance
below zero); getUpdates came from one process at a time (the emulator names each poller's
process from its client port, and ends a waiting getUpdates with 409 when another arrives,
as Telegram does: an ended poll of a dead process is an orphan, of a live one a failure);
each job tick started once, in the log of the leader of its epoch, and today's jobs ran once;
each failover (kill to the next leader's first getUpdates) took under the leader's check
interval plus one second; pushes sent twice (service pushes in doubt are sent again, by
design), replays and answers given again are counted; no process exited but as killed,
stopped, or (the leader deposed by the restart) with 75; and no ERROR or traceback is logged
but by the leader the restart deposed, or while the server was away. tests/test_failover.py
runs a smaller round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, cast

import aiohttp
import psycopg

from bot.clock import system_clock
from bot.config import Config, load_config
from bot.i18n import I18n
from bot.leader import CHECK_SECONDS
from bot.programme.calendar import local_today
from bot.programme.purchase_returns import return_key
from bot.programme.purchases import purchase_key
from bot.programme.till_api import draw_key, sign
from bot.sandbox.server import BotApiEmulator
from storage.api_keys import create_key
from storage.audit import audit
from storage.members import Profile, register_member
from storage.pg import PgConnection
from storage.pg_store import PgStore
from storage.pushes import set_birthday

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "555019:FAILOVER"
MEMBER_BASE = 40_000_000  # Telegram ids of the members (and cashiers) who send updates
# A failover takes at most this long: the leader's check interval (the standbys themselves
# wait in pg_advisory_lock and get it at once) plus a second for taking up the duties.
FAILOVER_BOUND = CHECK_SECONDS + 1.0
# Log lines that would mean a defect, unless the PostgreSQL restart explains them.
TROUBLE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")
LEADING = re.compile(r"leading as (\S+), epoch (\d+)")
TICK_STARTED = re.compile(r"job (\S+) for (.+): started \(epoch (\d+)\)")
DAILY_DONE = re.compile(r"(daily pushes|expiry sweep) for (\d{4}-\d\d-\d\d):")
# A job at work: started, or done with a day's sweep or pushes, or a catch-up.
JOB_WORK = re.compile(TICK_STARTED.pattern + "|" + DAILY_DONE.pattern + "|caught up: ")
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
FEEDBACK_NONCE = re.compile(r"^nonce (\d+)-(\d+) ")


@dataclass(frozen=True)
class Plan:
    """How big a round is and what happens in it."""

    members: int = 2_000
    updates: int = 20_000  # from the members, updates // members each
    stores: int = 5
    purchases: int = 400  # per store
    retried: float = 0.10
    returned: float = 0.10
    kills: int = 5
    restart_after: int = 3  # PostgreSQL restarts after this many kills
    torn_kill: int = 2  # this kill (1-based) lands mid-transaction
    rate: float = 250.0  # member updates a second
    cashier_every: int = 20  # every 20th sender is a cashier
    birthdays: float = 0.05
    seed: int = 19

    @property
    def per_member(self) -> int:
        """Updates each member sends."""
        return self.updates // self.members

    @property
    def seconds(self) -> float:
        """How long the members' updates take to send."""
        return self.updates / self.rate


@dataclass
class FailoverReport:
    """What a round left behind, and what it measured."""

    plan: Plan
    seconds: float = 0.0
    nonces: int = 0  # member updates sent, each a nonce
    feedback_nonces: int = 0
    cashier_nonces: int = 0
    till_purchases: int = 0
    till_returns: int = 0
    till_sent_again: int = 0
    till_failed_attempts: int = 0  # connections lost, 5xx: tried again
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    till_unbooked: list[str] = field(default_factory=list)
    till_doubled: list[str] = field(default_factory=list)
    till_refused: list[str] = field(default_factory=list)
    till_created_twice: list[str] = field(default_factory=list)
    gifts_doubled: list[str] = field(default_factory=list)
    audit_ok: bool = False
    audit_text: str = ""
    polls: int = 0
    pollers: int = 0
    pollers_at_once: list[str] = field(default_factory=list)
    orphan_conflicts: int = 0
    live_conflicts: list[str] = field(default_factory=list)
    tick_problems: list[str] = field(default_factory=list)
    daily: str = ""  # when the daily pushes were due and who ran them
    handled_seconds: float = 0.0  # from the first update sent to the last handled
    ticks: int = 0
    epochs: int = 0
    catch_ups: int = 0
    kills: list[float] = field(default_factory=list)  # failover seconds, one per kill
    torn: str = ""  # the transaction a kill tore, as seen in pg_stat_activity
    restarts: int = 0
    restart_seconds: float = 0.0  # pg_ctl restart, start to end
    restart_failover: float | None = None  # restart start to the next leader's first poll
    exits: Counter[str] = field(default_factory=Counter)
    unexpected_exits: list[str] = field(default_factory=list)
    pushes: int = 0
    pushes_doubled: int = 0
    pushes_missing: int = 0
    push_statuses: dict[str, int] = field(default_factory=dict)
    replays: int = 0  # journal attempts: updates handled again by a successor
    replies_again: int = 0  # feedback and purchase answers beyond one per nonce
    apologies: int = 0  # "something went wrong" answers
    trouble: list[str] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        """Each assertion the round broke, in words (empty: all held)."""
        checks = [
            (not self.lost, f"{len(self.lost)} nonces lost: {self.lost[:5]}"),
            (not self.doubled, f"{len(self.doubled)} effects doubled: {self.doubled[:5]}"),
            (not self.out_of_order, f"order broken: {self.out_of_order[:5]}"),
            (not self.till_unbooked, f"till receipts not booked: {self.till_unbooked[:5]}"),
            (not self.till_doubled, f"till bookings doubled: {self.till_doubled[:5]}"),
            (not self.till_refused, f"till requests refused: {self.till_refused[:5]}"),
            (not self.till_created_twice, f"201 twice: {self.till_created_twice[:5]}"),
            (not self.gifts_doubled, f"birthday gifts doubled: {self.gifts_doubled[:5]}"),
            (self.audit_ok, f"audit failed: {self.audit_text}"),
            (not self.pollers_at_once, f"two pollers at once: {self.pollers_at_once[:5]}"),
            (not self.live_conflicts, f"409 to a live poller: {self.live_conflicts[:5]}"),
            (not self.tick_problems, f"job ticks: {self.tick_problems[:5]}"),
            (
                len(self.kills) == self.plan.kills,
                f"{len(self.kills)} failovers measured of {self.plan.kills} kills",
            ),
            (
                all(s <= FAILOVER_BOUND for s in self.kills),
                f"failover over {FAILOVER_BOUND:.1f} s: {self.kills}",
            ),
            (bool(self.torn), "no kill landed mid-transaction"),
            (self.restarts == 1 and self.restart_failover is not None, "no restart measured"),
            (not self.unexpected_exits, f"unexpected exits: {self.unexpected_exits}"),
            (not self.pushes_missing, f"{self.pushes_missing} pushes marked sent never arrived"),
            (not self.trouble, f"log trouble: {self.trouble[:5]}"),
        ]
        return [text for ok, text in checks if not ok]

    def __str__(self) -> str:
        plan = self.plan
        failovers = ", ".join(f"{s:.2f}" for s in self.kills)
        restart = "-" if self.restart_failover is None else f"{self.restart_failover:.2f}"
        return "\n".join(
            [
                f"failover: {self.nonces:,} updates from {plan.members:,} members"
                f" ({self.feedback_nonces:,} /feedback, {self.cashier_nonces:,} /purchase),"
                f" {self.till_purchases:,} till purchases from {plan.stores} stores"
                f" ({self.till_sent_again:,} sent again, {self.till_returns:,} returns,"
                f" {self.till_failed_attempts:,} attempts failed and retried),"
                f" {len(self.kills)} kills (one mid-transaction), {self.restarts} PostgreSQL"
                f" restart, in {self.seconds:.1f} s",
                f"  lost {len(self.lost)}, doubled {len(self.doubled)}, out of order"
                f" {len(self.out_of_order)}; till unbooked {len(self.till_unbooked)}, doubled"
                f" {len(self.till_doubled)}, refused {len(self.till_refused)}, 201 twice"
                f" {len(self.till_created_twice)}; audit {'OK' if self.audit_ok else 'FAILED'}",
                f"  getUpdates {self.polls:,} from {self.pollers} processes, at once"
                f" {len(self.pollers_at_once)}; 409 to orphaned polls {self.orphan_conflicts},"
                f" to live ones {len(self.live_conflicts)}",
                f"  handled in {self.handled_seconds:.1f} s from the first update sent"
                f" ({self.nonces / max(self.handled_seconds, 0.001):,.0f} updates/s)",
                f"  epochs {self.epochs}, job ticks {self.ticks} (catch-ups {self.catch_ups}),"
                f" tick problems {len(self.tick_problems)}; {self.daily}",
                f"  failover after kill (s): {failovers} (bound {FAILOVER_BOUND:.1f});"
                f" PostgreSQL restart {self.restart_seconds:.2f} s, next leader polling"
                f" {restart} s after it began",
                f"  torn transaction: {self.torn or '-'}",
                f"  exits {dict(self.exits)}; unexpected {self.unexpected_exits}",
                f"  pushes {self.pushes:,} {self.push_statuses}: sent twice"
                f" {self.pushes_doubled}, missing {self.pushes_missing}; updates replayed"
                f" {self.replays:,}, answers again {self.replies_again:,}, apologies"
                f" {self.apologies}",
                f"  log trouble {len(self.trouble)}, explained by the restart"
                f" {len(self.explained)}",
            ]
        )


# --------------------------------------------------------------------------- PostgreSQL


class Postgres:
    """A throwaway PostgreSQL server (`.ci/postgres start`) that this round may restart."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder

    def restart(self) -> None:
        """`pg_ctl restart -m fast` (as the postgres user when root): every connection ends."""
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        )
        if not found:
            raise RuntimeError("no /usr/lib/postgresql/*/bin: is PostgreSQL installed?")
        data, log = self.folder / "data", self.folder / "server.log"
        command = [
            str(found[-1] / "pg_ctl"), "-D", str(data), "-l", str(log),
            "-m", "fast", "-w", "-t", "60", "restart",
        ]  # fmt: skip
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root (.ci/postgres as_postgres)
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)


class NoPostgres(RuntimeError):
    """No PostgreSQL server of this round's own could be started (is it installed?)."""


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of this round's own (never the shared one: it is restarted);
    raises NoPostgres when `.ci/postgres start` fails."""
    script = str(ROOT / ".ci" / "postgres")
    try:
        started = subprocess.run(
            [script, "start"], capture_output=True, text=True, check=True, timeout=600
        )
    except (subprocess.SubprocessError, OSError) as exc:
        output = getattr(exc, "stderr", None) or ""
        raise NoPostgres(f".ci/postgres start failed: {exc} {output}".strip()) from exc
    found = dict(
        line.removeprefix("export ").split("=", 1)
        for line in started.stdout.splitlines()
        if "=" in line
    )
    try:
        yield Postgres(found["POINTSBOT_TEST_POSTGRES"], Path(found["POINTSBOT_TEST_PGDIR"]))
    finally:
        subprocess.run([script, "stop", found["POINTSBOT_TEST_PGDIR"]], check=False)


class Observer:
    """The harness's own connection to the database (connected again after a restart)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of one query; [] while the server is away."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=2
                )
            cur = await self._conn.execute(sql.encode(), params)
            return list(await cur.fetchall())
        except psycopg.OperationalError:
            await self.close()
            return []

    async def close(self) -> None:
        """Close the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


# --------------------------------------------------------------------------- processes


def tcp_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets process `pid` holds (Linux: /proc)."""
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        return set()
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass
class BotRun:
    """One `pointsbot run` process: its slot, pid, log, and how it ended."""

    slot: int
    pid: int
    log: Path
    started: float
    ended: float | None = None
    status: int | None = None
    killed_at: float | None = None
    stopped: bool = False  # sent SIGTERM at the end

    def dead_at(self, when: float) -> bool:
        """Whether the process was gone (killed, or ended) at `when`."""
        if self.killed_at is not None and self.killed_at <= when:
            return True
        return self.ended is not None and self.ended <= when

    @property
    def outcome(self) -> str:
        """How it ended, in words."""
        status = self.status
        if status is None:
            return "running"
        if os.WIFSIGNALED(status):
            name = signal.Signals(os.WTERMSIG(status)).name
            return "killed" if name == "SIGKILL" and self.killed_at is not None else name
        code = os.WEXITSTATUS(status)
        if code == 75:
            return "exit 75"
        return "stopped" if code == 0 and self.stopped else f"exit {code}"


class Supervisor:
    """Keeps two bots running (bench/_cluster_bot.py forks them), starting a slot's process
    again whenever it ends; kills and stops them when told."""

    def __init__(self, configs: list[Path], workdir: Path, env: dict[str, str]) -> None:
        self.configs = configs
        self.workdir = workdir
        self.env = env
        self.runs: list[BotRun] = []
        self.stopping = False
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None
        self._all_ended = asyncio.Event()
        self.on_end: Callable[[BotRun], None] | None = None

    async def open(self) -> None:
        """Start the forking process (it imports the bot once) and the watch."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench._cluster_bot",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=self.env, cwd=ROOT,
        )  # fmt: skip
        self._watch = asyncio.create_task(self._watch_forever(), name="supervisor")

    async def _ask(self, command: str) -> str:
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        async with self._lock:
            process.stdin.write(f"{command}\n".encode())
            await process.stdin.drain()
            line = await asyncio.wait_for(process.stdout.readline(), 60)
        answer = line.decode().strip()
        if not answer or answer.startswith("error"):
            raise RuntimeError(f"bench._cluster_bot answered {answer!r} to {command}")
        return answer

    async def start(self, slot: int) -> BotRun:
        """Start a bot in `slot` (its configuration, a log of its own)."""
        log = self.workdir / f"bot-{slot}-{sum(run.slot == slot for run in self.runs) + 1}.log"
        pid = int(await self._ask(f"start {self.configs[slot]} {log}"))
        run = BotRun(slot, pid, log, time.monotonic())
        self.runs.append(run)
        return run

    def alive(self) -> list[BotRun]:
        """The processes running now."""
        return [run for run in self.runs if run.ended is None and run.killed_at is None]

    def by_pid(self, pid: int) -> BotRun | None:
        """The run of process `pid`."""
        return next((run for run in self.runs if run.pid == pid), None)

    def kill(self, run: BotRun) -> float:
        """SIGKILL a bot; the instant it was sent."""
        run.killed_at = time.monotonic()
        os.kill(run.pid, signal.SIGKILL)
        return run.killed_at

    async def _watch_forever(self) -> None:
        while True:
            answer = await self._ask("reap")
            for word in answer.split() if answer != "-" else []:
                pid, status = (int(part) for part in word.split(":"))
                run = self.by_pid(pid)
                assert run is not None
                run.ended, run.status = time.monotonic(), status
                if self.on_end is not None:
                    self.on_end(run)
                if not self.stopping:
                    await self.start(run.slot)
            if self.stopping and all(run.ended is not None for run in self.runs):
                self._all_ended.set()
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM every bot, wait until all have ended, and end the forking process."""
        self.stopping = True
        for run in self.alive():
            run.stopped = True
            os.kill(run.pid, signal.SIGTERM)
        if any(run.ended is None for run in self.runs):
            await asyncio.wait_for(self._all_ended.wait(), 60)
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._process is not None and self._process.stdin is not None:
            self._process.stdin.close()
            await asyncio.wait_for(self._process.wait(), 30)


# --------------------------------------------------------------------------- traffic


class Members:
    """The members' updates: each a nonce, each member's sent in order, at a steady rate."""

    def __init__(self, emu: BotApiEmulator, plan: Plan, codes: list[str], category: str) -> None:
        self.emu = emu
        self.plan = plan
        self.codes = codes
        self.category = category
        self.rng = random.Random(plan.seed)
        self.senders = [MEMBER_BASE + n for n in range(plan.members)]
        self.cashiers = frozenset(self.senders[:: plan.cashier_every])
        for n, user in enumerate(self.senders):
            emu.add_user(user, f"会员{n}")
        order = [user for user in self.senders for _ in range(plan.per_member)]
        self.rng.shuffle(order)
        self.order = order
        self.sent = 0
        # Each sender's nonces, in the order sent.
        self.feedback: dict[int, list[str]] = defaultdict(list)
        self.receipts: dict[int, list[str]] = defaultdict(list)
        self.last_update_id = 0

    def send_next(self, count: int) -> None:
        """Send the next `count` updates."""
        for user in self.order[self.sent : self.sent + count]:
            if user in self.cashiers:
                receipt = f"F{user}x{len(self.receipts[user]):02d}"
                self.receipts[user].append(receipt)
                code = self.rng.choice(self.codes)
                text = f"/purchase {code} {self.rng.randint(2, 500)} {self.category} {receipt}"
            else:
                nonce = f"{user}-{len(self.feedback[user]):02d}"
                self.feedback[user].append(nonce)
                text = f"/feedback nonce {nonce} {self.rng.getrandbits(32):08x}"
            self.last_update_id = self.emu.user_sends_text(user, text)
        self.sent = min(len(self.order), self.sent + count)

    @property
    def done(self) -> bool:
        """Whether every update was sent."""
        return self.sent >= len(self.order)

    async def flood(self) -> None:
        """Send everything at `plan.rate` a second."""
        started = time.monotonic()
        while not self.done:
            due = int((time.monotonic() - started) * self.plan.rate) + 1
            self.send_next(due - self.sent)
            await asyncio.sleep(0.05)


@dataclass
class TillRequest:
    """One purchase or return a till books, and every answer it got."""

    path: str
    body: dict[str, str]
    key: str  # its receipt or return id
    answers: list[int] = field(default_factory=list)


class Tills:
    """Five stores' tills posting signed purchases to either process until answered."""

    def __init__(
        self, plan: Plan, keys: list[tuple[str, str]], codes: list[str], ports: list[int]
    ) -> None:
        self.plan = plan
        self.keys = keys
        self.codes = codes
        self.urls = [f"http://127.0.0.1:{port}" for port in ports]
        self.rng = random.Random(plan.seed + 1)
        self.requests: list[TillRequest] = []
        self.sent_again = 0
        self.failed_attempts = 0
        self.finished = False

    async def run(self) -> None:
        """Every store's purchases, spread over the members' sending time."""
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._store(session, n) for n in range(self.plan.stores)))
        self.finished = True

    async def _store(self, session: aiohttp.ClientSession, store: int) -> None:
        pause = self.plan.seconds / max(1, self.plan.purchases)
        rng = random.Random(self.plan.seed * 100 + store)
        pending: list[asyncio.Task[None]] = []
        for n in range(self.plan.purchases):
            receipt = f"S{store}-{n:05d}"
            amount = f"{rng.randint(2, 800)}.{rng.randint(0, 99):02d}"
            body = {"receipt": receipt, "member_code": rng.choice(self.codes), "amount": amount}
            request = TillRequest("/v1/purchases", body, receipt)
            self.requests.append(request)
            slot = rng.randrange(2)
            draw = rng.random()
            if draw < self.plan.retried / 2:  # sent again at once, to the other process
                self.sent_again += 1
                await asyncio.gather(
                    self._until_answered(session, store, request, slot),
                    self._until_answered(session, store, request, 1 - slot),
                )
            else:
                await self._until_answered(session, store, request, slot)
                if draw < self.plan.retried:  # the answer was lost, say: the same again
                    self.sent_again += 1
                    await self._until_answered(session, store, request, rng.randrange(2))
            if rng.random() < self.plan.returned:
                back = {"receipt": receipt, "return_id": f"{receipt}-R", "amount": "1.00"}
                returned = TillRequest("/v1/purchase-returns", back, f"{receipt}-R")
                self.requests.append(returned)
                pending.append(
                    asyncio.create_task(
                        self._until_answered(session, store, returned, rng.randrange(2))
                    )
                )
            await asyncio.sleep(pause * rng.uniform(0.5, 1.5))
        await asyncio.gather(*pending)

    async def _until_answered(
        self, session: aiohttp.ClientSession, store: int, request: TillRequest, slot: int
    ) -> None:
        """Post (signed anew each time) until a process answers other than 5xx."""
        key_id, secret = self.keys[store]
        body = json.dumps(request.body).encode()
        while True:
            timestamp = str(int(time.time()))
            nonce = f"n{self.rng.getrandbits(64):016x}"
            headers = {
                "Content-Type": "application/json",
                "X-Pointsbot-Key": key_id,
                "X-Pointsbot-Timestamp": timestamp,
                "X-Pointsbot-Nonce": nonce,
                "X-Pointsbot-Signature": sign(secret, "POST", request.path, timestamp, nonce, body),
            }
            try:
                async with session.post(
                    self.urls[slot] + request.path, data=body, headers=headers
                ) as response:
                    await response.read()
                    if response.status < 500:
                        request.answers.append(response.status)
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.failed_attempts += 1
            slot = 1 - slot  # the other process, as a till with two addresses would
            await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- the round


def write_configs(
    workdir: Path, base_url: str, url: str, cashiers: list[int], daily_at: str
) -> list[Path]:
    """Two configurations, one per slot: the same database, each its own till API port."""
    sample = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    settings = {
        ("telegram", "base_url"): f'"{base_url}"',
        ("storage", "url"): f'"{url}"',
        ("api", "enabled"): "true",
        ("api", "requests_per_minute"): "100000",
        # The sweep is due at once: every new leader's catch-up finds it due (and done, but
        # once); the daily pushes come due mid-round, at the leader of the time.
        ("push", "sweep_at"): "00:00:00",
        ("push", "daily_at"): daily_at,
        ("feedback", "daily_limit"): "100",
    }
    for (section, key), value in settings.items():
        sample = _set(sample, section, key, value)
    sample += "".join(
        f'\n[[staff]]\ntelegram_id = {cashier}\nname = "cashier {n}"\nrole = "cashier"\n'
        for n, cashier in enumerate(cashiers, 1)
    )
    configs = []
    for slot, port in enumerate(_free_ports(2)):
        config = workdir / f"config-{slot}.toml"
        config.write_text(_set(sample, "server", "port", str(port)), encoding="utf-8")
        configs.append(config)
    return configs


def _set(toml: str, section: str, key: str, value: str) -> str:
    """`key = value` in `[section]` of the sample (the key must be there)."""
    start = toml.index(f"\n[{section}]\n")
    end = toml.find("\n[", start + 1)
    end = len(toml) if end < 0 else end
    body, count = re.subn(
        rf"^{key} = .*$", f"{key} = {value}", toml[start:end], count=1, flags=re.MULTILINE
    )
    assert count == 1, (section, key)
    return toml[:start] + body + toml[end:]


def _free_ports(count: int) -> list[int]:
    """`count` ports free on 127.0.0.1 now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def seed(
    db: sqlite3.Connection, plan: Plan, config: Config, senders: list[int], now: datetime
) -> tuple[list[str], list[tuple[str, str]]]:
    """Register the members (some with their birthday today, entered long ago) and issue the
    stores' keys; their codes and (key id, secret) pairs."""
    rng = random.Random(plan.seed + 2)
    today = local_today(now, config)
    long_ago = now - timedelta(days=60)
    codes = []
    for n, user in enumerate(senders):
        member, _ = register_member(db, Profile(user, f"m{n}"), None, now)
        codes.append(member.member_code)
        if rng.random() < plan.birthdays:
            set_birthday(
                db, user, today.month, today.day, 1990, now=long_ago, change_allowed_after=None
            )
    keys = []
    for store in range(plan.stores):
        key_id, secret = draw_key()
        create_key(db, key_id, f"store {store}", secret, now=now)
        keys.append((key_id, secret))
    return codes, keys


class Round:
    """One round: the processes, the traffic, the chaos, then the report."""

    def __init__(self, workdir: Path, plan: Plan, progress: Callable[[str], None] | None) -> None:
        self.workdir = workdir
        self.plan = plan
        self.progress = progress or (lambda line: None)
        self.rng = random.Random(plan.seed + 3)
        self.kills: list[tuple[float, int]] = []  # (instant, pid)
        self.torn = ""
        self.restart: tuple[float, float, int] | None = None  # (began, ended, leader pid)
        self.restart_wall = (0.0, 0.0)  # the same (began, ended) by the wall clock
        self.port_owner: dict[int, int] = {}
        self.handled_seconds = 0.0
        self.daily_at = ""

    async def run(self) -> FailoverReport:
        """Run the round against a throwaway PostgreSQL; the report."""
        await self._within_one_day()
        started = time.monotonic()
        with throwaway_postgres() as server:
            self.server = server
            self.observer = Observer(server.url)
            try:
                async with BotApiEmulator(token=TOKEN, record_calls=False) as emu:
                    emu.record_polls = True
                    emu.identify_poller = self._identify
                    self.emu = emu
                    await self._play(emu)
            finally:
                await self.observer.close()
            report = self._report(time.monotonic() - started)
        return report

    def _identify(self, port: int | None) -> object:
        """The pid of the bot process whose connection has this local port."""
        if port is None:
            return None
        if port in self.port_owner:
            return self.port_owner[port]
        for run in self.supervisor.alive():
            if port in tcp_ports(run.pid):
                self.port_owner[port] = run.pid
                return run.pid
        return f"port {port}"

    def _forget(self, run: BotRun) -> None:
        """A process ended: its ports may be another's from now on."""
        for port in [port for port, pid in self.port_owner.items() if pid == run.pid]:
            del self.port_owner[port]

    async def _within_one_day(self) -> None:
        """The checks of today's jobs need the round within one local day: one that would
        reach local midnight (its sending and a backlog as long) starts just after it."""
        tz = load_config(ROOT / "config.example.toml").program.tz
        now = datetime.now(tz)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tz)
        if (left := (midnight - now).total_seconds()) < 60 + self.plan.seconds * 6:
            await asyncio.sleep(left + 2)

    async def _play(self, emu: BotApiEmulator) -> None:
        plan = self.plan
        sample = load_config(ROOT / "config.example.toml")
        self.config = sample
        senders = [MEMBER_BASE + n for n in range(plan.members)]
        cashiers = senders[:: plan.cashier_every]
        # Due a little into the round (the first leader's catch-up does not find them due;
        # later ones do, once the leader of the time ran them).
        due = datetime.now(sample.program.tz) + timedelta(seconds=5 + plan.seconds * 0.4)
        self.daily_at = due.strftime("%H:%M:%S")
        configs = write_configs(
            self.workdir, emu.base_url, self.server.url, cashiers, self.daily_at
        )
        self.ports = [load_config(config).server.port for config in configs]
        async with PgStore(self.server.url) as store:  # migrated here, seeded in one write
            now = system_clock()
            codes, keys = await store.write(lambda db: seed(db, plan, sample, senders, now))
        category = sample.earn.categories[0].id
        self.members = Members(emu, plan, codes, category)
        self.tills = Tills(plan, keys, codes, self.ports)
        env = {**os.environ, "POINTSBOT_TOKEN": TOKEN}
        self.supervisor = Supervisor(configs, self.workdir, env)
        self.supervisor.on_end = self._forget
        await self.supervisor.open()
        try:
            # The first leads; the second waits in line.
            await self.supervisor.start(0)
            await self._until(self._leader_polling, 60, "the first bot to lead")
            await self.supervisor.start(1)
            await self._until(self._standby_waiting, 60, "the second bot to wait in line")
            self.progress("two bots up: flooding")
            flooding = time.monotonic()
            flood = asyncio.create_task(self.members.flood())
            tills = asyncio.create_task(self.tills.run())
            await self._chaos()
            await flood
            await tills
            await self._settle()
            self.handled_seconds = time.monotonic() - flooding
        finally:
            await self.supervisor.stop()

    async def _until(self, check: Callable[[], Any], seconds: float, what: str) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if found := await check():
                return found
            await asyncio.sleep(0.02)
        raise TimeoutError(f"waited {seconds:.0f} s for {what}")

    async def _leader(self) -> BotRun | None:
        """The live bot `leadership.holder` names."""
        rows = await self.observer.rows("SELECT holder FROM leadership WHERE id = 1")
        if not rows:
            return None
        pid = int(str(rows[0][0]).rsplit(":", 1)[1])
        run = self.supervisor.by_pid(pid)
        return run if run is not None and run in self.supervisor.alive() else None

    async def _leader_polling(self) -> BotRun | None:
        """The leader, once it has fetched updates (its getUpdates arrived)."""
        run = await self._leader()
        if run is None or not any(poll.poller == run.pid for poll in self.emu.polls[-50:]):
            return None
        return run

    async def _standby_waiting(self) -> bool:
        """Whether a process waits in line for the leader's lock."""
        rows = await self.observer.rows(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        return bool(rows) and int(rows[0][0]) >= 1

    async def _ready(self) -> BotRun:
        """A leader at work and a standby in line: the leader."""

        async def both() -> BotRun | None:
            leader = await self._leader_polling()
            return leader if leader is not None and await self._standby_waiting() else None

        leader: BotRun = await self._until(both, 60, "a polling leader and a standby")
        return leader

    async def _chaos(self) -> None:
        """The kills and the restart, spread over the members' sending time."""
        plan = self.plan
        events = ["kill"] * plan.kills
        events.insert(plan.restart_after, "restart")
        started = time.monotonic()
        for n, event in enumerate(events, 1):
            at = started + plan.seconds * n / (len(events) + 1)
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            leader = await self._ready()
            if event == "restart":
                began, wall = time.monotonic(), time.time()
                await asyncio.to_thread(self.server.restart)
                self.restart = (began, time.monotonic(), leader.pid)
                self.restart_wall = (wall, time.time())
                self.progress(f"PostgreSQL restarted in {time.monotonic() - began:.2f} s")
                continue
            if len(self.kills) + 1 == plan.torn_kill:
                at_kill = await self._torn_kill(leader)
            else:
                at_kill = self.supervisor.kill(leader)
            self.kills.append((at_kill, leader.pid))
            self.progress(
                f"kill {len(self.kills)}: leader {leader.pid};"
                f" {self.emu.pending_update_count} updates pending"
            )

    async def _torn_kill(self, leader: BotRun) -> float:
        """Kill the leader while one of its transactions has written and not committed:
        stopped (SIGSTOP), its backends looked at, killed when one is `idle in transaction`
        with an xid (it cannot commit while stopped), else let go and tried again."""
        pid = leader.pid
        for tries in range(1, 1001):
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(0.005)  # statements in flight finish
                rows = await self.observer.rows(
                    "SELECT pid, backend_xid::text, left(query, 60) FROM pg_stat_activity"
                    " WHERE state = 'idle in transaction' AND backend_xid IS NOT NULL"
                    " AND client_port = ANY(%s)",
                    (list(tcp_ports(pid)),),
                )
                if rows:
                    at = self.supervisor.kill(leader)
            finally:
                if leader.killed_at is None:
                    os.kill(pid, signal.SIGCONT)
            if rows:
                backend, xid, query = rows[0]
                status = await self._xact_status(int(xid))
                if status == "aborted":  # else not torn after all: the check fails
                    self.torn = f"look {tries}: backend {backend}, xid {xid} ({query!r}) aborted"
                return at
            await asyncio.sleep(self.rng.uniform(0.005, 0.03))
        return self.supervisor.kill(leader)

    async def _xact_status(self, xid: int) -> str:
        """The outcome of transaction `xid` once its backend has ended."""
        deadline = time.monotonic() + 10
        status = "unknown"
        while time.monotonic() < deadline:
            rows = await self.observer.rows("SELECT txid_status(%s)", (xid,))
            status = str(rows[0][0]) if rows else "unknown"
            if status not in ("in progress", "unknown"):
                break
            await asyncio.sleep(0.02)
        return status

    async def _settle(self) -> None:
        """Wait until every update is fetched and handled, every push delivered."""
        total = self.members.last_update_id
        deadline = time.monotonic() + 120 + total / 50
        quiet_since: float | None = None
        while True:
            rows = await self.observer.rows(
                "SELECT (SELECT count(*) FROM update_journal WHERE update_id <= %s),"
                " (SELECT count(*) FROM update_journal WHERE done_at IS NULL),"
                " (SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending'))",
                (total,),
            )
            settled = (
                bool(rows)
                and rows[0] == (total, 0, 0)
                and self.emu.pending_update_count == 0
                and self.tills.finished
            )
            now = time.monotonic()
            if not settled:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since > 1.0:
                return
            if now > deadline:
                raise TimeoutError(f"not settled: journal/unfinished/outbox {rows}")
            await asyncio.sleep(0.1)

    # ----------------------------------------------------------------------- the report

    def _report(self, seconds: float) -> FailoverReport:
        plan, members, tills = self.plan, self.members, self.tills
        report = FailoverReport(plan, seconds=seconds, handled_seconds=self.handled_seconds)
        report.nonces = members.sent
        report.feedback_nonces = sum(len(nonces) for nonces in members.feedback.values())
        report.cashier_nonces = sum(len(receipts) for receipts in members.receipts.values())
        report.till_purchases = sum(r.path == "/v1/purchases" for r in tills.requests)
        report.till_returns = len(tills.requests) - report.till_purchases
        report.till_sent_again = tills.sent_again
        report.till_failed_attempts = tills.failed_attempts
        conn = PgConnection.connect(self.server.url)
        try:
            db = cast(Any, conn)
            self._check_effects(report, db)
            self._check_tills(report, db)
            self._check_pushes(report, db)
            checked = audit(
                db,
                integrity="none",
                tier_levels=[tier.id for tier in self.config.tiers.levels],
                tz=self.config.program.tz,
            )
            report.audit_ok, report.audit_text = checked.ok, str(checked)
            self._check_ticks(report, db)
        finally:
            conn.close()
        self._check_polls(report)
        self._check_logs(report)
        return report

    def _check_effects(self, report: FailoverReport, db: Any) -> None:
        """Each nonce's effect once, each sender's in the order sent."""
        members = self.members
        stored: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for user, row_id, text in db.execute(
            "SELECT m.telegram_id, f.id, f.text FROM feedback f"
            " JOIN members m ON m.id = f.member_id ORDER BY f.id"
        ).fetchall():
            match = FEEDBACK_NONCE.match(text)
            if match is not None:
                stored[int(user)].append((int(row_id), f"{match[1]}-{match[2]}"))
        for user, nonces in members.feedback.items():
            found = [nonce for _, nonce in stored.get(user, [])]
            counts = Counter(found)
            report.lost += [nonce for nonce in nonces if not counts[nonce]]
            report.doubled += [nonce for nonce, n in counts.items() if n > 1]
            if found != sorted(found):
                report.out_of_order.append(f"member {user}: {found}")
        booked: dict[str, list[int]] = defaultdict(list)
        for row_id, key in db.execute(
            "SELECT id, idempotency_key FROM operations WHERE kind = 'purchase' ORDER BY id"
        ).fetchall():
            booked[str(key)].append(int(row_id))
        for user, receipts in members.receipts.items():
            ids = []
            for receipt in receipts:
                rows = booked.get(purchase_key(receipt), [])
                if not rows:
                    report.lost.append(receipt)
                elif len(rows) > 1:
                    report.doubled.append(receipt)
                ids += rows[:1]
            if ids != sorted(ids):
                report.out_of_order.append(f"cashier {user}: operations {ids}")
        self.booked = booked
        (report.replays,) = db.execute(
            "SELECT coalesce(sum(attempts), 0) FROM update_journal"
        ).fetchone()
        gifts = db.execute(
            "SELECT idempotency_key, count(*) FROM operations"
            " WHERE idempotency_key LIKE 'birthday:%' GROUP BY idempotency_key"
        ).fetchall()
        report.gifts_doubled = [str(key) for key, n in gifts if n > 1]

    def _check_tills(self, report: FailoverReport, db: Any) -> None:
        """Each receipt and return booked once, answered 201 at most once, never refused."""
        returns: Counter[str] = Counter(
            str(key)
            for (key,) in db.execute(
                "SELECT idempotency_key FROM operations WHERE idempotency_key LIKE ?",
                ("purchase_return:%",),
            ).fetchall()
        )
        for request in self.tills.requests:
            if request.path == "/v1/purchases":
                booked = len(self.booked.get(purchase_key(request.key), []))
            else:
                booked = returns[return_key(request.key, None)]
            if booked == 0:
                report.till_unbooked.append(request.key)
            elif booked > 1:
                report.till_doubled.append(request.key)
            if any(status not in (200, 201) for status in request.answers):
                report.till_refused.append(f"{request.key}: {request.answers}")
            if request.answers.count(201) > 1:
                report.till_created_twice.append(request.key)

    def _check_pushes(self, report: FailoverReport, db: Any) -> None:
        """Each push's message counted in its member's chat; feedback and purchase answers
        beyond one per nonce counted as answers again."""
        i18n = I18n.load(self.config.program.default_language)
        language = self.config.program.default_language
        rows = db.execute(
            "SELECT m.telegram_id, o.message_key, o.params, o.status FROM outbox o"
            " JOIN members m ON m.id = o.member_id"
        ).fetchall()
        report.pushes = len(rows)
        report.push_statuses = dict(Counter(str(row[3]) for row in rows))
        # Per member, each push's text: sent (it must have arrived) or unconfirmed (it may).
        expected: dict[int, Counter[str]] = defaultdict(Counter)
        confirmed: dict[int, Counter[str]] = defaultdict(Counter)
        for user, key, params, status in rows:
            values = {
                name: value.get(language, next(iter(value.values())))
                if isinstance(value, dict) and value
                else value
                for name, value in json.loads(params).items()
            }
            text = i18n.t(language, str(key), **values)
            if status in ("sent", "unconfirmed"):
                expected[int(user)][text] += 1
            if status == "sent":
                confirmed[int(user)][text] += 1
        apology = i18n.t(language, "error.internal")
        thanks = re.compile(
            re.escape(i18n.t(language, "feedback.thanks", id=999_999)).replace("999999", r"\d+")
        )
        answers = 0
        for user in self.members.senders:
            texts = Counter(event.text or "" for event in self.emu.events(user))
            report.apologies += texts[apology]
            for text, n in expected[user].items():
                report.pushes_doubled += max(0, texts[text] - n)
                report.pushes_missing += max(0, confirmed[user][text] - texts[text])
                texts[text] = 0
            if user in self.members.cashiers:
                replies = sum(texts.values()) - texts[apology]
                answers += max(0, replies - len(self.members.receipts[user]))
            else:
                replies = sum(n for text, n in texts.items() if thanks.match(text))
                answers += max(0, replies - len(self.members.feedback[user]))
        report.replies_again = answers

    def _check_ticks(self, report: FailoverReport, db: Any) -> None:
        """Job ticks: one catch-up per epoch that ran one, today's daily jobs done once."""
        ticks = db.execute("SELECT job, tick, epoch FROM job_ticks").fetchall()
        report.ticks = len(ticks)
        (report.epochs,) = db.execute("SELECT epoch FROM leadership").fetchone()
        catch_ups = [(tick, epoch) for job, tick, epoch in ticks if job == "catch-up"]
        report.catch_ups = len(catch_ups)
        for tick, epoch in catch_ups:
            if tick != f"epoch {epoch}":
                report.tick_problems.append(f"catch-up tick {tick!r} claimed by epoch {epoch}")
        today = local_today(system_clock(), self.config).isoformat()
        ran = {str(job) for job, day in db.execute("SELECT job, day FROM job_runs").fetchall()
               if day == today}  # fmt: skip
        for job in ("expiry_sweep", "daily_pushes"):
            if job not in ran:
                report.tick_problems.append(f"{job} never ran for {today}")
        scheduled = [epoch for job, tick, epoch in ticks if (job, tick) == ("daily-pushes", today)]
        report.daily = f"daily pushes due at {self.daily_at}: " + (
            f"run by the leader of epoch {scheduled[0]}"
            if scheduled
            else "run by a catch-up (the leader of the time was gone)"
        )
        self.job_ticks = {(str(job), str(tick)): int(epoch) for job, tick, epoch in ticks}

    def _check_polls(self, report: FailoverReport) -> None:
        """getUpdates from one process at a time; 409s only to orphaned polls; failovers."""
        polls = self.emu.polls
        report.polls = len(polls)
        spans: dict[object, list[float]] = {}
        for poll in polls:
            span = spans.setdefault(poll.poller, [poll.arrived, poll.arrived])
            span[0], span[1] = min(span[0], poll.arrived), max(span[1], poll.arrived)
        report.pollers = len(spans)
        ordered = sorted(spans.items(), key=lambda item: item[1][0])
        for (before, (_, last)), (after, (first, _)) in itertools.pairwise(ordered):
            if first <= last:
                report.pollers_at_once.append(
                    f"{after} polled {last - first:.3f} s before {before}'s last poll"
                )
        for conflict in self.emu.poll_conflicts:
            run = (
                self.supervisor.by_pid(conflict.ended) if isinstance(conflict.ended, int) else None
            )
            if run is not None and run.dead_at(conflict.at):
                report.orphan_conflicts += 1
            else:
                report.live_conflicts.append(f"{conflict.ended} ended by {conflict.by}")
        for at, pid in self.kills:
            after = [p.arrived for p in polls if p.arrived > at and p.poller not in (pid, None)]
            if after:
                report.kills.append(min(after) - at)
        if self.restart is not None:
            began, ended, leader = self.restart
            report.restarts = 1
            report.restart_seconds = ended - began
            after = [p.arrived for p in polls if p.arrived > began and p.poller != leader]
            report.restart_failover = min(after) - began if after else None
        report.torn = self.torn

    def _check_logs(self, report: FailoverReport) -> None:
        """Trouble in the logs; each tick started once, by the leader of its epoch."""
        started: Counter[tuple[str, str]] = Counter()
        daily: Counter[tuple[str, str]] = Counter()
        restart_leader = self.restart[2] if self.restart is not None else None
        for run in sorted(self.supervisor.runs, key=lambda run: run.started):
            report.exits[run.outcome] += 1
            if run.outcome not in ("killed", "exit 75", "stopped"):
                report.unexpected_exits.append(f"{run.pid}: {run.outcome}")
            if run.outcome == "exit 75" and run.pid != restart_leader:
                report.unexpected_exits.append(f"{run.pid}: exit 75 without a restart")
            text = run.log.read_text(encoding="utf-8", errors="replace")
            epochs = [int(m[2]) for m in LEADING.finditer(text)]
            for match in TICK_STARTED.finditer(text):
                job, tick, epoch = match[1], match[2], int(match[3])
                started[job, tick] += 1
                if epoch not in epochs:
                    report.tick_problems.append(f"{job} {tick} ran in {run.pid}, not epoch {epoch}")
                if self.job_ticks.get((job, tick)) != epoch:
                    report.tick_problems.append(f"{job} {tick} by epoch {epoch} not in job_ticks")
            for match in DAILY_DONE.finditer(text):
                daily[match[1], match[2]] += 1
            deposed = False  # this process logged that it lost the leadership
            for when, lines in log_records(text):
                if any("Conflict" in line for line in lines):
                    report.live_conflicts.append(f"{run.pid} logged: {lines[0]}")
                if deposed and JOB_WORK.search(lines[0]):
                    report.tick_problems.append(f"{run.pid} after losing the lead: {lines[0]}")
                deposed = deposed or "leadership lost" in lines[0]
                if not any(TROUBLE.search(line) for line in lines):
                    continue
                # The first line and, for a traceback, the exception it ended with.
                shown = f"{run.log.name}: {lines[0][:160]}" + (
                    f" / {lines[-1][:120]}" if len(lines) > 1 else ""
                )
                if self._explained(run, when):
                    report.explained.append(shown)
                else:
                    report.trouble.append(shown)
        report.tick_problems += [f"{job} {tick} started {n} times" for (job, tick), n in
                                 started.items() if n > 1]  # fmt: skip
        report.tick_problems += [f"{job} for {day} logged {n} times" for (job, day), n in
                                 daily.items() if n > 1]  # fmt: skip

    def _explained(self, run: BotRun, when: float | None) -> bool:
        """Whether the PostgreSQL restart explains an error logged at `when` (wall clock): by
        the leader it deposed, from the restart until that process ended; by any process,
        while the server was away and a second after."""
        if self.restart is None or when is None:
            return False
        began, ended = self.restart_wall
        if run.pid == self.restart[2]:
            return when >= began
        return began <= when <= ended + 1.0


def log_records(text: str) -> Iterator[tuple[float | None, list[str]]]:
    """A log's records: when each was logged (wall clock) and its lines (a traceback's too)."""
    when: float | None = None
    lines: list[str] = []
    for line in text.splitlines():
        stamp = LOG_TIME.match(line)
        if stamp is not None:
            if lines:
                yield when, lines
            when = datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            lines = [line]
        else:
            lines.append(line)
    if lines:
        yield when, lines


async def run_failover(
    workdir: Path, plan: Plan, progress: Callable[[str], None] | None = None
) -> FailoverReport:
    """Run one round in `workdir` (logs, configurations); its report."""
    return await Round(workdir, plan, progress).run()


def main(argv: list[str] | None = None) -> None:
    """Run a round and print what it measured; exit 1 when an assertion broke."""
    parser = argparse.ArgumentParser(prog="python -m bench failover", description=__doc__)
    defaults = Plan()
    parser.add_argument("--members", type=int, default=defaults.members)
    parser.add_argument("--updates", type=int, default=defaults.updates)
    parser.add_argument("--purchases", type=int, default=defaults.purchases, help="per store")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="updates a second")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--keep", type=Path, help="keep the logs in this folder")
    parser.add_argument("--quick", action="store_true", help="the test's size (2,000 updates)")
    args = parser.parse_args(argv)
    plan = (
        QUICK
        if args.quick
        else Plan(
            members=args.members,
            updates=args.updates,
            purchases=args.purchases,
            rate=args.rate,
            seed=args.seed,
        )
    )
    with TemporaryDirectory(prefix="pointsbot-failover-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            report = asyncio.run(
                run_failover(workdir, plan, progress=lambda line: print(line, flush=True))
            )
        except NoPostgres as exc:
            print(f"skipped: no PostgreSQL of its own to restart ({exc})")
            return
    print(report)
    failures = report.failures()
    for line in report.explained[:20]:
        print(f"  explained by the restart: {line}")
    for line in report.trouble[:20]:
        print(f"  log: {line}")
    for failure in failures:
        print(f"  FAILED: {failure}")
    if failures:
        sys.exit(1)


# The round tests/test_failover.py runs (and `--quick`).
QUICK = Plan(members=200, updates=2_000, purchases=40, rate=100.0)


if __name__ == "__main__":
    main()
