"""Ledger throughput: async single operations vs raw sqlite3, and a bulk purchase import.

Both sides of each comparison write the same rows into the same migrated schema (same
indexes and triggers, synchronous=FULL, WAL), so the ratio is the cost of the ledger's own
code: idempotency look-ups, lot selection, validation and the aiosqlite thread hop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from storage.audit import audit
from storage.ledger import EarnRequest, Ledger, OperationResult
from storage.members import Profile, register_member
from storage.store import Store, connect_sync, migrate

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
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


def _purchases(start: int, count: int, members: int) -> Iterator[EarnRequest]:
    for n in range(start, start + count):
        yield EarnRequest(
            member_id=n % members + 1,
            points=n % 500 + 1,
            kind="purchase",
            key=f"receipt:{n}",
            actor="import",
            expires_at=T0 + YEAR,
            now=T0,
            reference=f"R{n}",
            meta={"amount": f"{n % 500 + 1}.00"},
        )


async def _ledger_import(path: Path, total: int, batch: int, members: int) -> float:
    async with Store(path, synchronous="FULL") as store:
        book = Ledger(store)
        started = time.perf_counter()
        for start in range(0, total, batch):
            results = await book.earn_many(
                list(_purchases(start, min(batch, total - start), members))
            )
            assert all(isinstance(r, OperationResult) for r in results)
        elapsed = time.perf_counter() - started
        report = await store.read(lambda c: audit(c, integrity="none"))
        assert report.ok and report.summary["lots"] == total, str(report)
    return elapsed


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
            ops.append(
                (op, f"receipt:{n}", member, points, f"R{n}", now, f'{{"amount":"{points}.00"}}')
            )
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
    """Print ops/s (ledger vs raw) and the 1M-purchase import time (ledger vs raw)."""
    parser = argparse.ArgumentParser(prog="python -m bench ledger")
    parser.add_argument("--quick", action="store_true", help="smoke run, ~100x smaller")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    pairs = 20 if quick else 2_000
    purchases = 10_000 if quick else 1_000_000
    batch = 1_000 if quick else 10_000
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

        ledger_db, raw_db = Path(tmp, "ledger-import.db"), Path(tmp, "raw-import.db")
        _fresh_database(ledger_db, members)
        _fresh_database(raw_db, members)
        ledger_time = asyncio.run(_ledger_import(ledger_db, purchases, batch, members))
        raw_time = _raw_import(raw_db, purchases, batch, members)
        print(
            f"import {purchases:,} purchases in batches of {batch:,} via earn_many:"
            f" {ledger_time:.1f} s ({purchases / ledger_time:,.0f}/s),"
            f" raw executemany {raw_time:.1f} s, ratio raw/ledger {raw_time / ledger_time:.2f}"
            f" (target <= 60 s{', scaled' if quick else ''})"
        )
