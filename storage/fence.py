"""The leader's fence: the epoch a leader-only write checks in its own transaction.

A write names its epoch (`check_epoch(conn, epoch)`, as the journal and the outbox do), or
runs in a task the leader fenced (`fenced(epoch)`: a scheduled job and every task it
starts), and then the store checks it before the write's own statements (`with_fence`, in
Store.write and PgStore.write). Either way a process that lost its place without noticing
changes nothing once another leads: the write raises NotLeader and is rolled back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from storage.errors import NotLeader
from storage.sql import marked_like

T = TypeVar("T")
# The epoch the running task writes for (None: not fenced, as a member's update is).
_fence: ContextVar[int | None] = ContextVar("leader_fence", default=None)


def check_epoch(conn: sqlite3.Connection, epoch: int | None) -> None:
    """Raise NotLeader unless `epoch` is the current one (None: not fenced, nothing checked)."""
    if epoch is None:
        return
    row = conn.execute("SELECT epoch FROM leadership WHERE id = 1").fetchone()
    current = None if row is None else int(row[0])
    if current != epoch:
        raise NotLeader(epoch, current)


@contextmanager
def fenced(epoch: int) -> Iterator[None]:
    """Within the block, every write of this task and of the tasks started in it checks
    `epoch` first, in its own transaction."""
    token = _fence.set(epoch)
    try:
        yield
    finally:
        _fence.reset(token)


def with_fence(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """`fn`, checking first the epoch the calling task is fenced with (`fn` itself if none)."""
    epoch = _fence.get()
    if epoch is None:
        return fn

    def run(conn: sqlite3.Connection) -> T:
        check_epoch(conn, epoch)
        return fn(conn)

    return marked_like(fn, run)
