"""Purchases through the signed till API against the same purchases through `import-purchases`.

The API side is the real bot (`build_application`, [api] enabled, against the sandbox) serving
on 127.0.0.1: N concurrent tills, each signing every request (HMAC-SHA256, a fresh nonce) and
booking its own receipt, one purchase a request, each answered only once booked. The baseline,
in the same run, is `bot.imports.import_purchases` (what `pointsbot import-purchases` runs)
booking the same rows into a fresh copy of the same database. The tills run in the bot's
process and event loop, so the API's rate includes their signing and HTTP client work.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp

from bench.ledger import SAMPLE_CONFIG, T0
from bot.app import build_application, running
from bot.clock import system_clock
from bot.config import Config, StorageConfig, load_config
from bot.imports import HEADER, import_purchases
from bot.programme.till_api import draw_key, sign
from bot.sandbox.server import BotApiEmulator
from storage.audit import audit
from storage.members import Profile, member_codes_by_id, register_member
from storage.store import connect_sync, migrate

CATEGORIES = ("", "general", "eco", "refill")


def _fresh_database(path: Path, members: int) -> list[str]:
    """A migrated database of `members` registered members; return their codes."""
    conn = connect_sync(path)
    try:
        migrate(conn)
        return seed_members(conn, members)
    finally:
        conn.close()


def seed_members(conn: sqlite3.Connection, members: int) -> list[str]:
    """Register `members` members (Telegram ids 1..members) in one transaction on a migrated
    database (SQLite, or PostgreSQL through a PgConnection); return their codes."""
    conn.execute("BEGIN")
    for telegram_id in range(1, members + 1):
        register_member(conn, Profile(telegram_id, f"m{telegram_id}"), None, T0)
    conn.execute("COMMIT")
    codes = member_codes_by_id(conn, range(1, members + 1))
    return [codes[n] for n in range(1, members + 1)]


def purchase_rows(total: int, codes: list[str], now: datetime) -> list[dict[str, str]]:
    """`total` purchases of today, each its own receipt, spread over the members."""
    rows = []
    for n in range(total):
        cents = (n * 7_919) % 99_900 + 100
        row = {
            "receipt": f"A{n:08d}",
            "member_code": codes[n % len(codes)],
            "amount": f"{cents // 100}.{cents % 100:02d}",
            "purchased_at": now.isoformat(),
        }
        if category := CATEGORIES[n % 4]:
            row["category"] = category
        rows.append(row)
    return rows


def _check(path: Path, config: Config, total: int) -> None:
    """Every purchase booked once, and the ledger adds up."""
    conn = connect_sync(path)
    try:
        check_booked(conn, config, total)
    finally:
        conn.close()


def check_booked(conn: sqlite3.Connection, config: Config, total: int) -> None:
    """Every purchase (receipts A...) booked once, and the ledger adds up (SQLite or, through
    a PgConnection, PostgreSQL)."""
    booked = conn.execute(
        "SELECT count(*) FROM operations WHERE kind = 'purchase' AND idempotency_key LIKE ?",
        ("purchase:A%",),
    ).fetchone()[0]
    report = audit(
        conn,
        integrity="none",
        tier_levels=[tier.id for tier in config.tiers.levels],
        tz=config.program.tz,
    )
    assert booked == total, (booked, total)
    assert report.ok, str(report)


def signed_headers(key_id: str, secret: str, body: bytes, nonce: str) -> dict[str, str]:
    """The headers of a signed POST /v1/purchases with this body, signed now."""
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Pointsbot-Key": key_id,
        "X-Pointsbot-Timestamp": timestamp,
        "X-Pointsbot-Nonce": nonce,
        "X-Pointsbot-Signature": sign(secret, "POST", "/v1/purchases", timestamp, nonce, body),
    }


async def _through_api(
    path: Path, config: Config, rows: list[dict[str, str]], tills: int
) -> tuple[float, list[float]]:
    """Book `rows` through the running bot's API with `tills` concurrent signed clients;
    return (seconds, each request's latency in seconds)."""
    api = config.api.model_copy(update={"enabled": True, "requests_per_minute": 100_000})
    server = config.server.model_copy(update={"port": 0})
    storage = StorageConfig(path=str(path), synchronous="FULL")
    config = config.model_copy(update={"api": api, "server": server, "storage": storage})
    latencies: list[float] = []
    async with BotApiEmulator() as emu:
        app = build_application(config, emu.token, base_url=emu.base_url, schedule_jobs=False)
        async with running(app, poll_timeout=1):
            services = app.bot_data
            assert services.till_api is not None
            url = services.till_api.url
            key_id, secret = draw_key()
            await services.api_keys.create(key_id, "bench", secret)
            queue = iter(rows)
            connector = aiohttp.TCPConnector(limit=tills)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def till(number: int) -> None:
                    for sent, row in enumerate(queue):
                        body = json.dumps(row).encode()
                        nonce = f"t{number}-{sent}-{row['receipt']}"
                        headers = signed_headers(key_id, secret, body, nonce)
                        started = time.perf_counter()
                        async with session.post(
                            url + "/v1/purchases", data=body, headers=headers
                        ) as response:
                            answer = await response.read()
                            assert response.status == 201, (response.status, answer)
                        latencies.append(time.perf_counter() - started)

                started = time.perf_counter()
                await asyncio.gather(*(till(n) for n in range(tills)))
                elapsed = time.perf_counter() - started
    return elapsed, latencies


def _through_import(path: Path, config: Config, rows: list[dict[str, str]], now: datetime) -> float:
    """Book the same rows with `import_purchases` from a CSV file; return seconds."""
    csv_path = path.with_suffix(".csv")
    with csv_path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for row in rows:
            writer.writerow(
                [
                    row["receipt"],
                    row["member_code"],
                    row["amount"],
                    row.get("category", ""),
                    row["purchased_at"],
                ]
            )
    conn = connect_sync(path, synchronous="FULL")
    started = time.perf_counter()
    summary = import_purchases(conn, csv_path, config, actor="bench", now=now)
    elapsed = time.perf_counter() - started
    conn.close()
    assert summary.ok and summary.imported == len(rows), summary
    return elapsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    """Print purchases/s through the API and through import-purchases, their ratio, and the
    API's p50/p99 latency."""
    parser = argparse.ArgumentParser(prog="python -m bench api")
    parser.add_argument("--quick", action="store_true", help="smoke run, ~100x smaller")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    total = 200 if quick else int(os.environ.get("BENCH_API_PURCHASES", 5_000))
    tills = 10 if quick else 20
    members = 100 if quick else 1_000
    config = load_config(SAMPLE_CONFIG)
    now = system_clock()
    with tempfile.TemporaryDirectory(prefix="pointsbot-bench-") as tmp:
        api_db, import_db = Path(tmp, "api.db"), Path(tmp, "import.db")
        codes = _fresh_database(api_db, members)
        shutil.copyfile(api_db, import_db)  # the same members, so the same codes
        rows = purchase_rows(total, codes, now)
        # The sandbox refuses the bot's receipts to members it never met: keep that out of
        # view for the run (and put the level back: the suite runs this in its process).
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            api_seconds, latencies = asyncio.run(_through_api(api_db, config, rows, tills))
        finally:
            root.setLevel(level)
        _check(api_db, config, total)
        import_seconds = _through_import(import_db, config, rows, now)
        _check(import_db, config, total)
    api_rate, import_rate = total / api_seconds, total / import_seconds
    p50 = statistics.median(latencies) * 1000
    p99 = percentile(latencies, 0.99) * 1000
    print(
        f"till API, {total:,} purchases by {tills} concurrent signed tills, {members:,} members:"
        f" {api_rate:,.0f} purchases/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms;"
        f" import-purchases of the same rows {import_rate:,.0f} purchases/s;"
        f" ratio api/import {api_rate / import_rate:.3f}"
    )


if __name__ == "__main__":
    main()
