"""The yearly tier review of 1,000,000 members, against the floor of the same work.

A database of members holding every tier, with their qualifying months for the year just
reviewed, is built with raw executemany (the bench measures the review, not the set-up). The
review is the daily job's (`bot.programme.tier_review.tier_jobs` on 1 January, through the
async store, a batch of members per write transaction); the baseline on a copy of the same
database is the least any review must do: one aggregate read of every holder's year and one
UPDATE of every holder's row.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

from bot.config import Config, load_config
from bot.programme.tier_review import tier_jobs
from storage.store import Store, connect_sync, migrate
from storage.tier_reviews import TierReviews

SAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config.example.toml"
YEAR = 2026
# The months of the reviewed year a member bought in: three, spread over the year.
MONTHS = (f"{YEAR}-03", f"{YEAR}-07", f"{YEAR}-11")
BATCH = 50_000


def _build(path: Path, members: int, config: Config) -> int:
    """Members, the tiers they hold (a quarter each, the lowest as no row) and their months;
    return how many hold a tier above the lowest."""
    conn = connect_sync(path, synchronous="OFF")
    migrate(conn)
    levels = config.tiers.levels
    since = int(datetime(YEAR, 3, 1).timestamp())
    conn.execute("BEGIN IMMEDIATE")
    for start in range(1, members + 1, BATCH):
        ids = range(start, min(start + BATCH, members + 1))
        conn.executemany(
            "INSERT INTO members (id, telegram_id, member_code, first_name, joined_at,"
            " last_seen_at) VALUES (?, ?, ?, 'm', ?, ?)",
            ((n, n, f"B{n:08d}", since, since) for n in ids),
        )
        conn.executemany(
            "INSERT INTO member_tiers (member_id, tier_id, since) VALUES (?, ?, ?)",
            ((n, levels[n % len(levels)].id, since) for n in ids if n % len(levels)),
        )
        # Yearly totals from 0 to 30,000 yuan: every tier has members above and below its line.
        conn.executemany(
            "INSERT INTO tier_months (member_id, month, points, fen) VALUES (?, ?, ?, ?)",
            (
                (n, month, (n * 7_919) % 30_000 // 3, (n * 7_919) % 30_000 * 100 // 3)
                for n in ids
                for month in MONTHS
            ),
        )
    conn.execute("COMMIT")
    holders = int(conn.execute("SELECT count(*) FROM member_tiers").fetchone()[0])
    conn.close()
    return holders


async def _review(path: Path, config: Config) -> tuple[float, int]:
    """The daily job's review on 1 January; return (seconds, members moved down)."""
    async with Store(path, synchronous="FULL") as store:
        reviews = TierReviews(store)
        now = datetime(YEAR + 1, 1, 1, 9, 0, tzinfo=config.program.tz)
        started = time.perf_counter()
        report = await tier_jobs(reviews, config, date(YEAR + 1, 1, 1), now)
        return time.perf_counter() - started, report.downgrades


def _baseline(path: Path) -> float:
    """One aggregate read of every holder's year and one UPDATE of every holder's row."""
    conn = connect_sync(path, synchronous="FULL")
    started = time.perf_counter()
    rows = conn.execute(
        "SELECT mt.member_id, sum(tm.fen) FROM member_tiers AS mt"
        " JOIN tier_months AS tm ON tm.member_id = mt.member_id"
        " AND tm.month BETWEEN ? AND ? GROUP BY mt.member_id",
        (f"{YEAR}-01", f"{YEAR}-12"),
    ).fetchall()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE member_tiers SET since = since + 1")
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    assert rows
    conn.close()
    return elapsed


def _check(path: Path, moved: int) -> None:
    """Every move is recorded and told once; a second run moves nobody."""
    conn = sqlite3.connect(str(path))
    changes = conn.execute("SELECT count(*) FROM tier_changes WHERE reason = 'review'").fetchone()
    told = conn.execute("SELECT count(*) FROM outbox WHERE dedupe_key LIKE 'tier-review:%'")
    assert changes[0] == moved == told.fetchone()[0], (changes, moved)
    conn.close()


def main(argv: list[str] | None = None) -> None:
    """Print the review's time for 1,000,000 members and its ratio to the baseline."""
    parser = argparse.ArgumentParser(prog="python -m bench tiers")
    parser.add_argument("--quick", action="store_true", help="smoke run, ~100x smaller")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    members = 10_000 if quick else int(os.environ.get("BENCH_TIER_MEMBERS", 1_000_000))
    config = load_config(SAMPLE_CONFIG)
    with tempfile.TemporaryDirectory(prefix="pointsbot-bench-") as tmp:
        db, copy = Path(tmp, "tiers.db"), Path(tmp, "tiers-baseline.db")
        started = time.perf_counter()
        holders = _build(db, members, config)
        built = time.perf_counter() - started
        shutil.copyfile(db, copy)
        baseline = _baseline(copy)
        elapsed, moved = asyncio.run(_review(db, config))
        _check(db, moved)
        again, moved_again = asyncio.run(_review(db, config))
        assert moved_again == 0
        print(
            f"yearly tier review, {members:,} members ({holders:,} above the lowest tier,"
            f" {len(MONTHS) * members:,} qualifying months; built in {built:.1f} s):"
            f" {elapsed:.1f} s, {moved:,} moved down (target <= 60 s"
            f"{' for 1,000,000' if quick else ''}); baseline (one aggregate read + one UPDATE of"
            f" every holder) {baseline:.1f} s, ratio review/baseline {elapsed / baseline:.2f};"
            f" a second run {again:.2f} s, 0 moved"
        )
