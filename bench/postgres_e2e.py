"""The end-to-end mix (bench/e2e.py) with the bot's store on PostgreSQL beside the SQLite file.

The same database (bench/e2e.py's: members in households of two, three purchases each, this
year's tier figures) built as a SQLite file, then copied as it is into a fresh PostgreSQL
database (`pointsbot migrate-to-postgres`'s copy, then VACUUM ANALYZE, as autovacuum would
do in time). The same real bot in its own process (bench/_e2e_bot.py), one process each, on
one store or the other, driven by the same simulated members through the same mix on the
same Bot API emulator: saturated (each member taps again the moment the answer settles) and
members who read between taps. The SQLite run is the baseline: the ratio is PostgreSQL's
figure over SQLite's. The runs alternate (SQLite, PostgreSQL, SQLite, PostgreSQL) so that a
noisy neighbour weighs on both. The PostgreSQL server is bench/postgres.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import cast

from bench.e2e import Result, build_ledger, forget_updates, run_load, write_config
from bench.postgres import NO_POSTGRES, pg_database, pg_server, set_in_section
from storage.journal import forget_all
from storage.pg import PgConnection
from storage.pg_copy import copy_to_postgres
from storage.pg_store import pg_migrate
from storage.store import connect_sync


def copy_into(database: Path, url: str) -> int:
    """Copy the SQLite database into the empty PostgreSQL one at `url` and analyze it; the
    rows copied."""
    source = connect_sync(database)
    target = PgConnection.connect(url)
    try:
        pg_migrate(target)
        copied = copy_to_postgres(source, target)
        # A fresh copy has no statistics yet: the planner's and the visibility map's, now
        # rather than from autovacuum in the middle of a measurement.
        target.execute("VACUUM ANALYZE")
    finally:
        source.close()
        target.close()
    return copied.total


def forget_updates_pg(url: str) -> None:
    """bench/e2e.py's `forget_updates` for the PostgreSQL database: each run's emulator starts
    its update ids over."""
    conn = PgConnection.connect(url)
    try:
        conn.execute("BEGIN IMMEDIATE")
        forget_all(cast(sqlite3.Connection, conn))
        conn.execute("COMMIT")
    finally:
        conn.close()


def _line(engine: str, label: str, concurrent: int, result: Result) -> str:
    return (
        f"{engine:10s} {label:10s} {concurrent} members: {result.rate:,.0f} updates/s,"
        f" p50 {result.p50 * 1000:.1f} ms, p99 {result.p99 * 1000:.1f} ms"
        f" (handled p99 {result.handled_p99 * 1000:.1f} ms),"
        f" peak RSS {result.rss_mb:.0f} MB, timeouts {result.timeouts}"
    )


def main(argv: list[str] | None = None) -> None:
    """Print the real bot's throughput and latency on SQLite and on PostgreSQL, and the ratio."""
    parser = argparse.ArgumentParser(prog="python -m bench postgres_e2e")
    parser.add_argument("--quick", action="store_true", help="smoke run, ~100x smaller")
    parser.add_argument("--concurrent", type=int, default=None, help="simulated members")
    parser.add_argument("--members", type=int, default=None, help="members in the database")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds")
    parser.add_argument(
        "--think",
        type=float,
        default=1.0,
        help="mean seconds a member reads between taps (0: the saturated runs only)",
    )
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    members = args.members or (10_000 if quick else 1_000_000)
    concurrent = args.concurrent or (50 if quick else 500)
    seconds = args.seconds or (3.0 if quick else 20.0)
    warmup = min(3.0, seconds / 3)
    with pg_server() as server:
        if server is None:
            print(NO_POSTGRES)
            return
        with tempfile.TemporaryDirectory(prefix="pointsbot-e2e-") as directory:
            tmp = Path(directory)
            database = tmp / "e2e.sqlite3"
            started = time.perf_counter()
            rows = build_ledger(database, members, 3)
            built = time.perf_counter() - started
            sqlite_config = write_config(tmp / "sqlite.toml", database)
            with pg_database(server) as url:
                started = time.perf_counter()
                copied = copy_into(database, url)
                print(
                    f"database: {members:,} members, {rows:,} ledger rows, built in {built:.0f} s;"
                    f" {copied:,} rows copied into PostgreSQL in"
                    f" {time.perf_counter() - started:.0f} s",
                    flush=True,
                )
                pg_config = tmp / "postgres.toml"
                pg_config.write_text(
                    set_in_section(
                        sqlite_config.read_text(encoding="utf-8"), "storage", "url", json.dumps(url)
                    ),
                    encoding="utf-8",
                )
                loads = [("saturated", 0.0)]
                if args.think > 0:
                    loads.append((f"think {args.think:g}s", args.think))
                for label, think in loads:
                    results: dict[str, Result] = {}
                    for engine, config in (("SQLite", sqlite_config), ("PostgreSQL", pg_config)):
                        if engine == "SQLite":
                            forget_updates(database)
                        else:
                            forget_updates_pg(url)
                        results[engine] = asyncio.run(
                            run_load("pointsbot", config, concurrent, seconds, warmup, think)
                        )
                        print(_line(engine, label, concurrent, results[engine]), flush=True)
                    sqlite, pg = results["SQLite"], results["PostgreSQL"]
                    print(
                        f"ratio PostgreSQL/SQLite {label}: updates/s {pg.rate / sqlite.rate:.2f},"
                        f" p50 {pg.p50 / sqlite.p50:.2f}, p99 {pg.p99 / sqlite.p99:.2f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
