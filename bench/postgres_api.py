"""Till-API purchases per second with one and with two bot processes on one PostgreSQL database.

Each bot is a real `pointsbot run` process of its own ([api] enabled on a port of its own,
[telegram] base_url at the Bot API emulator running here, [storage] url the database); with
two, the first started leads (it polls, drains the outbox: each purchase's receipt is a push
to the member) and the second is a standby, and both serve the till API (bot/leader.py).
Concurrent tills, running here and signing every request as bench/api.py's do, are spread
over the processes (till n books through process n mod N), each purchase a receipt of its
own; a few purchases a till warm up first, untimed. A request answered 500 (a write the
store gave up on after it kept conflicting) is sent again with the same receipt, as the API
asks, and counted. Afterwards every purchase must be booked exactly once, every request
answered 201 (200 for a retry that finds it booked), the audit clean, the first process the
only leader there was, and the bots' logs free of any other error. The baseline, in the same
run: one process on a SQLite file (synchronous = FULL, as shipped).

The tills and the emulator share this process; the bots, PostgreSQL and this process share
the machine's cores (a second process helps only as far as there is a core for it). The
PostgreSQL server is bench/postgres.py's: POINTSBOT_TEST_POSTGRES, else a throwaway one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import aiohttp

from bench.api import check_booked, percentile, purchase_rows, seed_members, signed_headers
from bench.ledger import SAMPLE_CONFIG
from bench.postgres import NO_POSTGRES, pg_database, pg_server, set_in_section
from bot.clock import system_clock
from bot.config import load_config
from bot.programme.till_api import draw_key
from bot.sandbox.server import BotApiEmulator
from storage.api_keys import create_key
from storage.leadership import current_leader
from storage.pg import PgConnection
from storage.pg_store import pg_migrate
from storage.store import connect_sync, migrate

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "666000:TILL-BENCH"
# Purchases each till books before the clock starts (the connections, the caches warm).
WARM_EACH = 3
# A till sends a request answered 500 again (the API says a retry is safe) this many times,
# this long after.
RETRIES = 5
RETRY_PAUSE = 0.1
# Log lines that would mean a defect (beyond a 500, which the figures count).
TROUBLE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")
# A write PostgreSQL kept refusing as conflicting until the store gave up: the till's 500.
GAVE_UP = re.compile(
    r"ERROR bot\.api: till API request POST /v1/purchases failed\n(?s:.*)"
    r"^sqlite3\.OperationalError: could not serialize access",
    re.MULTILINE,
)
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
# A labelled sample in /metrics: name{kind="writer"} value.
METRIC_LINE = re.compile(r'^(pointsbot_database_\w+)\{kind="(\w+)"\} (\S+)$', re.MULTILINE)


def write_config(
    path: Path,
    *,
    storage: tuple[str, str],
    base_url: str,
    port: int,
    writers: int | None = None,
) -> Path:
    """The sample programme with the till API on `port`, the Bot API at `base_url` and the
    store `storage` ("url" or "path", and its value), with `writers` write connections (None:
    as shipped); rate limits lifted."""
    text = SAMPLE_CONFIG.read_text(encoding="utf-8")
    text = set_in_section(text, "telegram", "base_url", json.dumps(base_url))
    text = set_in_section(text, "server", "port", str(port))
    text = set_in_section(text, "api", "enabled", "true")
    text = set_in_section(text, "api", "requests_per_minute", "100000")
    text = set_in_section(text, "storage", storage[0], json.dumps(storage[1]))
    if writers is not None:
        text = set_in_section(text, "storage", "writers", str(writers))
    path.write_text(text, encoding="utf-8")
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(conn: sqlite3.Connection, members: int) -> tuple[list[str], str, str]:
    """Seed a migrated database: `members` members and an API key; (codes, key id, secret)."""
    codes = seed_members(conn, members)
    key_id, secret = draw_key()
    create_key(conn, key_id, "bench", secret, now=system_clock())
    return codes, key_id, secret


class BotProcess:
    """One `pointsbot run` (`python -m bot run`), its output in a log file."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log

    @classmethod
    async def start(cls, config: Path, port: int, log: Path) -> BotProcess:
        """Start the bot and wait until its till API answers."""
        with log.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                "--config",
                str(config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**os.environ, "POINTSBOT_TOKEN": TOKEN},
                cwd=ROOT,
            )
        bot = cls(process, f"http://127.0.0.1:{port}", log)
        await bot._answering()
        return bot

    async def _answering(self, within: float = 120.0) -> None:
        """Wait until GET /v1/openapi.json answers 200; raises when the bot ended first."""
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"the bot ended ({self.process.returncode}): {self.tail()}")
                try:
                    async with session.get(self.url + "/v1/openapi.json") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the bot's till API did not answer: {self.tail()}")
                await asyncio.sleep(0.05)

    def records(self) -> list[str]:
        """The log's records (a line with its traceback, if any)."""
        records: list[str] = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if RECORD_START.match(line) or not records:
                records.append(line)
            else:
                records[-1] += "\n" + line
        return records

    def trouble(self) -> list[str]:
        """The records that mean a defect: errors, but for a write given up after conflicting
        again and again (answered 500, which the tills retry and the figures count)."""
        return [
            record
            for record in self.records()
            if TROUBLE.search(record) and not GAVE_UP.search(record)
        ]

    def tail(self) -> str:
        """The end of the bot's log."""
        return self.log.read_text(encoding="utf-8", errors="replace")[-2000:]

    async def stop(self) -> int:
        """SIGTERM the bot and wait for it; its exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=60)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return int(self.process.returncode or 0)


@dataclass(frozen=True)
class Booked:
    """What a round of tills did: how long it took, each purchase's latency (its retries
    included), and how many requests were answered 500 and sent again."""

    seconds: float
    latencies: list[float]
    retried: int


@dataclass(frozen=True)
class TillRun:
    """One measurement: the timed purchases, what booking them took and (PostgreSQL) what the
    processes' connections did meanwhile, summed over processes: {kind: (round trips, busy
    seconds, connections, conflicts)}."""

    purchases: int
    booked: Booked
    connections: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Purchases a second."""
        return self.purchases / self.booked.seconds

    def __str__(self) -> str:
        p50 = statistics.median(self.booked.latencies) * 1000
        p99 = percentile(self.booked.latencies, 0.99) * 1000
        line = (
            f"{self.rate:,.0f} purchases/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms,"
            f" {self.booked.retried} retried after a 500"
        )
        for kind, (trips, busy, count, conflicts) in self.connections.items():
            # Busy: the share of the timed seconds each connection of the kind spent in calls.
            share = busy / count / self.booked.seconds
            line += (
                f"\n    {kind}: {trips / self.purchases:.1f} statements a purchase,"
                f" {count:.0f} connection(s) busy {share:.0%}, {busy / trips * 1e6:,.0f} µs"
                f" a statement, {conflicts / self.purchases:.2f} conflicts a purchase"
            )
        return line


async def scrape_connections(urls: list[str]) -> dict[str, tuple[float, float, float, float]]:
    """The PostgreSQL connections' figures on the bots' /metrics, summed: {kind: (round
    trips, busy seconds, connections, conflicts)} (empty on SQLite)."""
    names = {
        "pointsbot_database_round_trips_total": 0,
        "pointsbot_database_busy_seconds_total": 1,
        "pointsbot_database_connections": 2,
        "pointsbot_database_conflicts_total": 3,
    }
    found: dict[str, list[float]] = {}
    async with aiohttp.ClientSession() as session:
        for url in urls:
            async with session.get(url + "/metrics") as response:
                text = await response.text()
            for match in METRIC_LINE.finditer(text):
                if match.group(1) in names:
                    figures = found.setdefault(match.group(2), [0.0, 0.0, 0.0, 0.0])
                    figures[names[match.group(1)]] += float(match.group(3))
    return {kind: (f[0], f[1], f[2], f[3]) for kind, f in found.items()}


async def _book(
    urls: list[str], rows: list[dict[str, str]], tills: int, key_id: str, secret: str
) -> Booked:
    """Book `rows` with `tills` concurrent signed tills, till n through `urls[n % len]`; a
    request answered 500 is sent again with the same receipt (and a new nonce), as the API
    asks, up to RETRIES times."""
    latencies: list[float] = []
    retried = 0
    queue = iter(rows)
    connector = aiohttp.TCPConnector(limit=tills)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def till(number: int) -> None:
            nonlocal retried
            url = urls[number % len(urls)] + "/v1/purchases"
            for sent, row in enumerate(queue):
                body = json.dumps(row).encode()
                started = time.perf_counter()
                for attempt in range(RETRIES + 1):
                    nonce = f"t{number}-{sent}-{attempt}-{row['receipt']}"
                    async with session.post(
                        url, data=body, headers=signed_headers(key_id, secret, body, nonce)
                    ) as response:
                        status, answer = response.status, await response.read()
                    # A retry finds the purchase booked (200) if the 500 came after it was.
                    if status == 201 or (attempt and status == 200):
                        break
                    if status != 500 or attempt == RETRIES:
                        raise RuntimeError(f"{url} answered {status}: {answer!r}")
                    retried += 1
                    await asyncio.sleep(RETRY_PAUSE)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(till(n) for n in range(tills)))
        return Booked(time.perf_counter() - started, latencies, retried)


async def run_tills(
    workdir: Path,
    storage: tuple[str, str],
    processes: int,
    *,
    members: int,
    purchases: int,
    tills: int,
    writers: int | None = None,
) -> TillRun:
    """Seed the store, start `processes` bots on it, book `purchases` (after the warm-up)
    with `tills` tills, stop the bots and check every purchase booked once; the figures."""
    kind, where = storage
    conn: sqlite3.Connection
    if kind == "url":
        pg = PgConnection.connect(where)
        pg_migrate(pg)
        conn = cast(sqlite3.Connection, pg)
    else:
        conn = connect_sync(Path(where))
        migrate(conn)
    try:
        codes, key_id, secret = prepare(conn, members)
    finally:
        conn.close()
    warm = WARM_EACH * tills
    rows = purchase_rows(warm + purchases, codes, system_clock())
    bots: list[BotProcess] = []
    failed: Exception | None = None
    connections: dict[str, tuple[float, float, float, float]] = {}
    async with BotApiEmulator(token=TOKEN, record_calls=False) as emu:
        for telegram_id in range(1, members + 1):  # the receipts' pushes reach them
            emu.add_user(telegram_id, f"m{telegram_id}")
        try:
            # One after the other: the first started leads, the others stand by.
            for n in range(processes):
                port = free_port()
                config = write_config(
                    workdir / f"bot{n}.toml",
                    storage=storage,
                    base_url=emu.base_url,
                    port=port,
                    writers=writers,
                )
                bots.append(await BotProcess.start(config, port, workdir / f"bot{n}.log"))
            urls = [bot.url for bot in bots]
            await _book(urls, rows[:warm], tills, key_id, secret)
            before = await scrape_connections(urls)
            booked = await _book(urls, rows[warm:], tills, key_id, secret)
            after = await scrape_connections(urls)
            connections = {
                kind: (
                    figures[0] - before[kind][0],
                    figures[1] - before[kind][1],
                    figures[2],
                    figures[3] - before[kind][3],
                )
                for kind, figures in after.items()
            }
        except (RuntimeError, TimeoutError) as exc:  # the bots' logs say why: below
            failed = exc
        finally:
            statuses = [await bot.stop() for bot in reversed(bots)]
    trouble = [record for bot in bots for record in bot.trouble()]
    if failed is not None or trouble or any(statuses):
        raise RuntimeError(
            f"{failed or 'the bots logged trouble'} (exit {statuses})\n" + "\n".join(trouble[:5])
        )
    _check(storage, warm + purchases, leader=bots[0].process.pid)
    return TillRun(purchases, booked, connections)


def _check(storage: tuple[str, str], total: int, leader: int) -> None:
    """Every purchase booked exactly once, the audit clean, and the process `leader` (a pid)
    the one leader there was (the others stood by throughout)."""
    kind, where = storage
    config = load_config(SAMPLE_CONFIG)
    if kind == "url":
        conn = cast(sqlite3.Connection, PgConnection.connect(where))
    else:
        conn = connect_sync(Path(where))
    try:
        check_booked(conn, config, total)
        led = current_leader(conn)
    finally:
        conn.close()
    if led is None or led.epoch != 1 or not led.holder.endswith(f":{leader}"):
        raise RuntimeError(f"process {leader} was to lead throughout, but the leader is {led}")


@contextmanager
def _store(label: str, workdir: Path, server: str) -> Iterator[tuple[str, str]]:
    """The store of one measurement: a SQLite file in `workdir`, or a new PostgreSQL database
    (dropped after)."""
    if label == "SQLite":
        yield ("path", str(workdir / "bot.sqlite3"))
        return
    with pg_database(server) as url:
        yield ("url", url)


def _fsync(server: str) -> str:
    """The server's fsync setting, for the figures' reader."""
    conn = PgConnection.connect(server)
    try:
        return str(conn.execute("SHOW fsync").fetchone()[0])
    finally:
        conn.close()


def round_trip_seconds(url: str, count: int = 2_000) -> float:
    """Seconds one statement takes through the store's connection class when the server has
    nothing to do (`SELECT 1`): the round trip's floor on this machine."""
    conn = PgConnection.connect(url)
    try:
        for _ in range(100):  # prepared, warm
            conn.execute("SELECT 1").fetchone()
        started = time.perf_counter()
        for _ in range(count):
            conn.execute("SELECT 1").fetchone()
        return (time.perf_counter() - started) / count
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> None:
    """Print till-API purchases/s on PostgreSQL with one and two processes, and on SQLite."""
    parser = argparse.ArgumentParser(prog="python -m bench postgres_api")
    parser.add_argument("--quick", action="store_true", help="smoke run, ~100x smaller")
    parser.add_argument("--purchases", type=int, default=None, help="timed purchases a run")
    parser.add_argument("--tills", type=int, default=None, help="concurrent tills")
    parser.add_argument("--members", type=int, default=None, help="members in the database")
    parser.add_argument(
        "--writers", type=int, default=None, help="PostgreSQL write connections a process"
    )
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    purchases = args.purchases or (200 if quick else 5_000)
    tills = args.tills or (10 if quick else 20)
    members = args.members or (100 if quick else 1_000)
    with pg_server() as server:
        if server is None:
            print(NO_POSTGRES)
            return
        size = f"{purchases:,} purchases by {tills} tills, {members:,} members"
        runs: dict[str, TillRun] = {}
        with tempfile.TemporaryDirectory(prefix="pointsbot-bench-") as tmp:
            for label, processes in (("SQLite", 1), ("PostgreSQL", 1), ("PostgreSQL", 2)):
                workdir = Path(tmp, f"{label}-{processes}")
                workdir.mkdir()
                with _store(label, workdir, server) as storage:
                    run = asyncio.run(
                        run_tills(
                            workdir,
                            storage,
                            processes,
                            members=members,
                            purchases=purchases,
                            tills=tills,
                            writers=args.writers,
                        )
                    )
                runs[f"{label} {processes}"] = run
                noun = "process" if processes == 1 else "processes"
                print(f"till API on {label}, {processes} {noun}, {size}: {run}", flush=True)
        one, two, sqlite = runs["PostgreSQL 1"], runs["PostgreSQL 2"], runs["SQLite 1"]
        trip = round_trip_seconds(server)
        writer = one.connections.get("writer")
        line = f"round trip (SELECT 1, idle server) {trip * 1e6:,.0f} µs"
        if writer is not None and writer[2] == 1:  # one writer: the bound is plain
            per_purchase = writer[0] / one.purchases
            line += (
                f": one process's serial writer, {per_purchase:.1f} statements a purchase,"
                f" books at most {1 / (per_purchase * trip):,.0f} purchases/s"
            )
        print(line)
        print(
            f"ratio PostgreSQL two processes/one {two.rate / one.rate:.2f};"
            f" PostgreSQL one process/SQLite one process {one.rate / sqlite.rate:.2f}"
            f" (PostgreSQL fsync {_fsync(server)}, SQLite synchronous FULL)"
        )


if __name__ == "__main__":
    main()
