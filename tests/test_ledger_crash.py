"""SIGKILL a process in the middle of ledger work, again and again: nothing acknowledged is lost
and the ledger stays sound."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.audit import audit
from storage.family import create_household, join_household
from storage.members import Profile, register_member
from storage.store import connect_sync, migrate
from tests.conftest import NOW

KILLS = 24

# Runs random operations forever; after each commit prints "<operation id> <key>".
WORKER = r"""
import random, sys
from datetime import UTC, datetime, timedelta
from storage import ledger
from storage.errors import StoreError
from storage.store import connect_sync

path, run = sys.argv[1], int(sys.argv[2])
rng = random.Random(run)
conn = connect_sync(path)
members = [r[0] for r in conn.execute("SELECT id FROM members")]
now = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=2 * run)
serial = 0

def ack(*results):
    for result in results:
        print(result.operation_id, key, flush=True)

while True:
    serial += 1
    key = f"run{run}:{serial}"
    now += timedelta(minutes=rng.randint(1, 120))
    member = rng.choice(members)
    dice = rng.random()
    try:
        if dice < 0.35:
            expires = None if rng.random() < 0.3 else now + timedelta(hours=rng.randint(1, 96))
            ack(ledger.earn(conn, member, rng.randint(1, 200), kind="purchase", key=key,
                            actor="pos", expires_at=expires, now=now))
        elif dice < 0.55:
            ack(ledger.spend(conn, member, rng.randint(1, 150), key=key, actor="m",
                             reason=None, reference=None, now=now))
        elif dice < 0.65:
            other = rng.choice([m for m in members if m != member])
            ack(ledger.transfer(conn, member, other, rng.randint(1, 100), key=key, actor="m",
                                reason=None, now=now, meta={"household": 1}))
        elif dice < 0.75:
            row = conn.execute("SELECT id FROM operations WHERE kind = 'redeem'"
                               " ORDER BY random() LIMIT 1").fetchone()
            if row:
                ack(ledger.refund(conn, row[0], key=key, actor="ops", reason=None,
                                  merchant_fault=rng.random() < 0.5, now=now))
        elif dice < 0.82:
            ack(ledger.adjust(conn, member, rng.choice([-40, -5, 5, 40]), key=key,
                              actor="admin", reason="fix", now=now))
        elif dice < 0.9:
            requests = [ledger.EarnRequest(rng.choice(members), rng.randint(1, 50), "purchase",
                                           f"{key}:{i}", "import", None, now)
                        for i in range(rng.randint(1, 30))]
            for i, result in enumerate(ledger.earn_many(conn, requests)):
                if isinstance(result, ledger.OperationResult):
                    print(result.operation_id, f"{key}:{i}", flush=True)
        else:
            before = conn.execute("SELECT coalesce(max(id), 0) FROM operations").fetchone()[0]
            ledger.expire_due(conn, now, batch=3)
            for op_id, op_key in conn.execute(
                "SELECT id, idempotency_key FROM operations WHERE id > ?", (before,)
            ):
                print(op_id, op_key, flush=True)
    except StoreError:
        pass
"""


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "crash.db"
    conn = connect_sync(path)
    migrate(conn)
    ids = [
        register_member(conn, Profile(telegram_id, f"m{telegram_id}"), None, NOW)[0].id
        for telegram_id in range(1, 5)
    ]
    # One household long before the workers' clock, so their transfers stay inside it.
    since = datetime(2024, 1, 1, tzinfo=UTC)
    home = create_household(conn, ids[0], actor="t", now=since)
    for other in ids[1:]:
        join_household(conn, home.id, other, max_members=6, actor="t", now=since)
    conn.close()
    return path


def test_sigkill_loses_nothing_acknowledged(database: Path) -> None:
    rng = random.Random(20250301)
    acknowledged: dict[int, str] = {}
    started = time.monotonic()
    for run in range(KILLS):
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(database), str(run)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert worker.stdout is not None
        first = worker.stdout.readline()  # it is up and committing
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(worker.pid, signal.SIGKILL)
        rest = worker.stdout.read()
        worker.wait()
        assert worker.returncode == -signal.SIGKILL
        # A line cut short by the kill was never acknowledged to anyone.
        lines = (first + rest).split("\n")[:-1]
        assert lines, "the worker acknowledged nothing before the kill"
        for line in lines:
            op_id, key = line.split(" ")
            acknowledged[int(op_id)] = key

        conn = connect_sync(database)
        try:
            report = audit(conn, integrity="quick")
            assert report.ok, f"after kill {run}:\n{report}"
            stored = dict(conn.execute("SELECT id, idempotency_key FROM operations").fetchall())
        finally:
            conn.close()
        lost = {op_id: key for op_id, key in acknowledged.items() if stored.get(op_id) != key}
        assert not lost, f"after kill {run}, acknowledged but missing: {lost}"
    assert len(acknowledged) > KILLS
    assert time.monotonic() - started < 60
