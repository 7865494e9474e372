"""Who leads: the leader epoch, checked by the writes only the leader makes (bot/leader.py).

One process at a time fetches updates, runs the scheduled jobs and drains the outbox. Each
process that becomes the leader takes the next epoch here; the leader-only writes pass their
epoch to `check_epoch` inside their own transaction, or run fenced (storage/fence.py), so a
process that lost its place without noticing (paused for a while, cut off from the
database) has no effect once another took over: its transaction raises NotLeader instead.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from storage.facade import Facade, reads, writes
from storage.fence import check_epoch
from storage.sql import dt, ts


@dataclass(frozen=True, slots=True)
class Leader:
    """The current leader: its epoch, who it is (host and pid) and since when."""

    epoch: int
    holder: str
    since: datetime


def take_leadership(conn: sqlite3.Connection, holder: str, now: datetime) -> int:
    """Become the leader: the next epoch (the first is 1)."""
    row = conn.execute(
        "INSERT INTO leadership (id, epoch, holder, since) VALUES (1, 1, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET epoch = leadership.epoch + 1,"
        " holder = excluded.holder, since = excluded.since RETURNING epoch",
        (holder, ts(now)),
    ).fetchone()
    return int(row[0])


def current_leader(conn: sqlite3.Connection) -> Leader | None:
    """The leader as last recorded (None: no process has led this database)."""
    row = conn.execute("SELECT epoch, holder, since FROM leadership WHERE id = 1").fetchone()
    return None if row is None else Leader(int(row[0]), str(row[1]), dt(row[2]))


def claim_tick(conn: sqlite3.Connection, job: str, tick: str, epoch: int, now: datetime) -> bool:
    """Claim a scheduled job's tick for this epoch before it runs: False when some leader
    claimed it already (it is not to run again); raises NotLeader."""
    check_epoch(conn, epoch)
    row = conn.execute(
        "INSERT INTO job_ticks (job, tick, epoch, started_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (job, tick) DO NOTHING RETURNING epoch",
        (job, tick, epoch, ts(now)),
    ).fetchone()
    return row is not None


class Leadership(Facade):
    """The async facade over the leader epoch."""

    take = writes(take_leadership)
    current = reads(current_leader)
    claim_tick = writes(claim_tick)
