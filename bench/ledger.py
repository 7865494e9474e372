"""Ledger throughput: async single operations vs raw sqlite3, and the CSV purchase import.

Both sides of each comparison write the same rows into the same migrated schema (same
indexes and triggers, synchronous=FULL, WAL), so the ratio is the cost of our own code:
idempotency look-ups, lot selection, validation and the aiosqlite thread hop; for the import
also reading the CSV, checking each row and applying the purchase rule (`bot.imports`, the
code `pointsbot import-purchases` runs).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.clock import system_clock
from bot.config import Config, load_config
from bot.imports import import_purchases
from storage.audit import audit
from storage.ledger import Ledger
from storage.members import Profile, member_codes_by_id, register_member
from storage.store import Store, connect_sync, migrate

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config.example.toml"
YEAR = timedelta(days=365)


def _fresh_database(path: Path, members: int) -> None:
    conn = connect_sync(path)
    migrate(conn)
    conn.execute("BEGIN IMMEDIATE")
    for telegram_id in range(1, members + 1):
        register_member(conn, Profile(telegram_id, f"m{telegram_id}"), None, T0)
    conn.execute("COMMIT")
    conn.close()


# --- single operations ----------------------------------------------------------------------


async def _ledger_ops(path: Path, pairs: int, members: int) -> float:
    """Earn then spend, one awaited operation at a time, through the async Ledger."""
    async with Store(path, synchronous="FULL") as store:
        book = Ledger(store)
        started = time.perf_counter()
        for i in range(pairs):
            member = i % members + 1
            await book.earn(
                member,
                100,
                kind="purchase",
                key=f"e{i}",
                actor="bench",
                expires_at=T0 + YEAR,
                now=T0,
            )
            await book.spend(
                member, 60, key=f"s{i}", actor="bench", reason=None, reference=None, now=T0
            )
        elapsed = time.perf_counter() - started
        report = await store.read(audit)
        assert report.ok, str(report)
    return 2 * pairs / elapsed


def _raw_ops(path: Path, pairs: int, members: int) -> float:
    """The same rows with hand-written SQL, one BEGIN IMMEDIATE..COMMIT per operation."""
    conn = connect_sync(path, synchronous="FULL")
    accounts = {}
    for member in range(1, members + 1):
        cur = conn.execute("INSERT INTO accounts (kind, member_id) VALUES ('member', ?)", (member,))
        accounts[member] = cur.lastrowid
    purchase = conn.execute("SELECT id FROM accounts WHERE name = 'purchase'").fetchone()[0]
    redeemed = conn.execute("SELECT id FROM accounts WHERE name = 'redeemed'").fetchone()[0]
    expires = int((T0 + YEAR).timestamp())
    now = int(T0.timestamp())
    insert_op = (
        "INSERT INTO operations (kind, idempotency_key, fingerprint, member_id, points, actor,"
        " created_at) VALUES (?, ?, 'raw', ?, ?, 'bench', ?)"
    )
    insert_posting = "INSERT INTO postings (operation_id, account_id, amount) VALUES (?, ?, ?)"
    started = time.perf_counter()
    for i in range(pairs):
        member = i % members + 1
        conn.execute("BEGIN IMMEDIATE")
        op = conn.execute(insert_op, ("purchase", f"e{i}", member, 100, now)).lastrowid
        conn.execute(insert_posting, (op, purchase, -100))
        conn.execute(insert_posting, (op, accounts[member], 100))
        conn.execute(
            "INSERT INTO lots (member_id, operation_id, points, remainder, expires_at)"
            " VALUES (?, ?, 100, 100, ?)",
            (member, op, expires),
        )
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        lot = conn.execute(
            "SELECT id FROM lots WHERE member_id = ? AND remainder >= 60 LIMIT 1", (member,)
        ).fetchone()[0]
        op = conn.execute(insert_op, ("redeem", f"s{i}", member, 60, now)).lastrowid
        conn.execute(insert_posting, (op, accounts[member], -60))
        conn.execute(insert_posting, (op, redeemed, 60))
        conn.execute(
            "INSERT INTO allocations (operation_id, lot_id, points) VALUES (?, ?, 60)", (op, lot)
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return 2 * pairs / elapsed


# --- bulk import ----------------------------------------------------------------------------

CATEGORIES = ("", "general", "eco", "refill")


def _purchase_csv(
    path: Path, db: Path, total: int, members: int, now: datetime, config: Config
) -> None:
    """A till export of `total` purchases by the registered members over the last 200 days."""
    conn = connect_sync(db)
    codes = member_codes_by_id(conn, range(1, members + 1))
    conn.close()
    tz = config.program.tz
    start = now.astimezone(tz).replace(tzinfo=None, microsecond=0) - timedelta(days=200)
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["receipt_id", "member_code", "amount", "category", "purchased_at"])
        for n in range(total):
            # Spread over 200 days, in order, like a real export; amounts 1.00..999.99.
            moment = start + timedelta(seconds=n * 200 * 86_400 // total)
            cents = (n * 7_919) % 99_900 + 100
            # Half the times carry their offset, half are local (the programme's timezone).
            when = (moment if n % 2 else moment.replace(tzinfo=tz)).isoformat()
            out.writerow(
                [
                    f"R{n:08d}",
                    codes[n % members + 1],
                    f"{cents // 100}.{cents % 100:02d}",
                    CATEGORIES[n % 4],
                    when,
                ]
            )


def _csv_import(
    db: Path, csv_path: Path, config: Config, batch: int, total: int, now: datetime
) -> float:
    """`pointsbot import-purchases` minus the printing: bot.imports.import_purchases."""
    conn = connect_sync(db, synchronous="FULL")
    started = time.perf_counter()
    summary = import_purchases(conn, csv_path, config, actor="bench", now=now, batch_size=batch)
    elapsed = time.perf_counter() - started
    assert summary.ok and summary.imported == total, summary
    report = audit(
        conn,
        integrity="none",
        tier_levels=[tier.id for tier in config.tiers.levels],
        tz=config.program.tz,
    )
    # One lot per operation: each purchase, and the campaign's extra points of those made
    # during a campaign (how many depends on the dates the export spans).
    lots, operations = report.summary["lots"], report.summary["operations"]
    assert report.ok and lots == operations and lots >= total, str(report)
    conn.close()
    return elapsed


def _completions(db: Path) -> int:
    """How many task completions an import paid (each with its reward operation)."""
    conn = connect_sync(db)
    row = conn.execute(
        "SELECT count(*), count(reward_operation_id) FROM task_progress"
        " WHERE completed_at IS NOT NULL"
    ).fetchone()
    conn.close()
    assert row[0] == row[1], row
    return int(row[0])


def _tier_effects(db: Path) -> tuple[int, int]:
    """How many purchases an import booked with a tier bonus, and how many upgrades it made."""
    conn = connect_sync(db)
    bonuses = conn.execute(
        "SELECT count(*) FROM operations WHERE kind = 'purchase'"
        " AND json_extract(meta, '$.tier_bonus') IS NOT NULL"
    ).fetchone()[0]
    upgrades = conn.execute("SELECT count(*) FROM tier_changes").fetchone()[0]
    conn.close()
    return int(bonuses), int(upgrades)


def _raw_import(path: Path, total: int, batch: int, members: int) -> float:
    """Equivalent rows by executemany with precomputed ids: the floor for this schema."""
    conn = connect_sync(path, synchronous="FULL")
    conn.execute("BEGIN IMMEDIATE")
    accounts = {}
    for member in range(1, members + 1):
        cur = conn.execute("INSERT INTO accounts (kind, member_id) VALUES ('member', ?)", (member,))
        accounts[member] = cur.lastrowid
    conn.execute("COMMIT")
    purchase = conn.execute("SELECT id FROM accounts WHERE name = 'purchase'").fetchone()[0]
    expires = int((T0 + YEAR).timestamp())
    now = int(T0.timestamp())
    started = time.perf_counter()
    for start in range(0, total, batch):
        ops, postings, lots = [], [], []
        for n in range(start, min(start + batch, total)):
            op = n + 1
            member, points = n % members + 1, n % 500 + 1
            # The same facts (and so about the same bytes) as the import's operation meta.
            meta = (
                f'{{"amount":"{points}.00","category":"general",'
                f'"purchased_at":"2025-03-01T20:00:00+08:00"}}'
            )
            ops.append((op, f"purchase:R{n:08d}", member, points, f"R{n:08d}", now, meta))
            postings += [(op, purchase, -points), (op, accounts[member], points)]
            lots.append((op, member, op, points, points, expires))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO operations (id, kind, idempotency_key, fingerprint, member_id, points,"
            " actor, reference, created_at, meta)"
            " VALUES (?, 'purchase', ?, 'raw', ?, ?, 'import', ?, ?, ?)",
            ops,
        )
        conn.executemany(
            "INSERT INTO postings (operation_id, account_id, amount) VALUES (?, ?, ?)", postings
        )
        conn.executemany(
            "INSERT INTO lots (id, member_id, operation_id, points, remainder, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            lots,
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def _sqlite_version() -> str:
    return sqlite3.sqlite_version


def main(argv: list[str] | None = None) -> None:
    """Print ops/s (ledger vs raw) and the 1M-row CSV import time (import vs raw)."""
    parser = argparse.ArgumentParser(prog="python -m bench ledger")
    parser.add_argument("--quick", action="store_true", help="smoke run, ~100x smaller")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    pairs = 20 if quick else 2_000
    purchases = 10_000 if quick else int(os.environ.get("BENCH_IMPORT_ROWS", 1_000_000))
    batch = 10_000
    members = 100 if quick else 10_000
    print(f"sqlite {_sqlite_version()}, synchronous=FULL, WAL")

    with tempfile.TemporaryDirectory(prefix="pointsbot-bench-") as tmp:
        ledger_db, raw_db = Path(tmp, "ledger-ops.db"), Path(tmp, "raw-ops.db")
        _fresh_database(ledger_db, 100)
        _fresh_database(raw_db, 100)
        ledger_rate = asyncio.run(_ledger_ops(ledger_db, pairs, 100))
        raw_rate = _raw_ops(raw_db, pairs, 100)
        print(
            f"earn+spend, {2 * pairs} single-operation transactions:"
            f" ledger {ledger_rate:,.0f} ops/s, raw sqlite3 {raw_rate:,.0f} ops/s,"
            f" ratio {ledger_rate / raw_rate:.2f} (target >= 0.5)"
        )

        import_db, raw_db = Path(tmp, "import.db"), Path(tmp, "raw-import.db")
        csv_path = Path(tmp, "purchases.csv")
        _fresh_database(import_db, members)
        _fresh_database(raw_db, members)
        config = load_config(SAMPLE_CONFIG)
        # The export spans the last 200 days: over a rolling twelve months all of it counts
        # towards a tier on any date (the sample's calendar year counts none on 1 January).
        config = config.model_copy(
            update={"tiers": config.tiers.model_copy(update={"window": "rolling_12_months"})}
        )
        now = system_clock()
        _purchase_csv(csv_path, import_db, purchases, members, now, config)
        # The sample programme's purchase-driven tasks (purchases, spend, streak) against the
        # same import with no tasks at all, on a database of its own, in the same run.
        bare = config.model_copy(update={"tasks": [], "badges": [], "badge_sets": []})
        bare_db = Path(tmp, "import-no-tasks.db")
        shutil.copyfile(import_db, bare_db)  # the same members, so the same member codes
        # And the sample programme (tasks and tiers) against the same one without tiers.
        untiered = config.model_copy(
            update={"tiers": config.tiers.model_copy(update={"levels": []})}
        )
        untiered_db = Path(tmp, "import-no-tiers.db")
        shutil.copyfile(import_db, untiered_db)
        bare_time = _csv_import(bare_db, csv_path, bare, batch, purchases, now)
        untiered_time = _csv_import(untiered_db, csv_path, untiered, batch, purchases, now)
        import_time = _csv_import(import_db, csv_path, config, batch, purchases, now)
        completed = _completions(import_db)
        bonuses, upgrades = _tier_effects(import_db)
        raw_time = _raw_import(raw_db, purchases, batch, members)
        size = csv_path.stat().st_size / 1e6
        print(
            f"import-purchases, {purchases:,} CSV rows ({size:.0f} MB), {members:,} members,"
            f" batches of {batch:,}: {import_time:.1f} s ({purchases / import_time:,.0f} rows/s);"
            f" raw executemany of the same rows {raw_time:.1f} s"
            f" ({purchases / raw_time:,.0f} rows/s), ratio raw/import {raw_time / import_time:.2f}"
            f" (target <= 60 s{' for 1,000,000' if quick else ''})"
        )
        tasks = ", ".join(t.id for t in config.tasks if t.kind in ("purchases", "spend", "streak"))
        print(
            f"import-purchases with the purchase tasks ({tasks}) active: {import_time:.1f} s,"
            f" {completed:,} completions paid; without tasks {bare_time:.1f} s;"
            f" ratio {import_time / bare_time:.2f} (target <= 1.3, and <= 60 s)"
        )
        levels = "/".join(f"{t.id} x{t.earn_multiplier}" for t in config.tiers.levels)
        print(
            f"import-purchases with the sample tiers ({levels}) active, over a rolling 12 months:"
            f" {import_time:.1f} s,"
            f" {bonuses:,} purchases with a tier bonus, {upgrades:,} upgrades;"
            f" without tiers {untiered_time:.1f} s;"
            f" ratio {import_time / untiered_time:.2f} (target <= 1.2)"
        )
