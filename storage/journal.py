"""The update journal: updates fetched from Telegram, kept until handled (bot/updates.py).

python-telegram-bot acknowledges a batch of updates to Telegram with the offset of its next
getUpdates, whether or not their handlers have finished. The bot records each batch here
before that can happen, marks updates done once handled, and at start hands back the ones a
crash left unfinished. In webhook mode on PostgreSQL it is also the inbox: any process
journals what Telegram delivers to it, and the leader reads the updates not yet done from
here, in update id order (`read_inbox`). This module sees plain JSON objects, never a
Telegram type.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from storage.facade import Facade, reads, writes
from storage.fence import check_epoch
from storage.sql import stands_alone, ts

# The PostgreSQL channel a commit that journaled new deliveries notifies (`Journal.deliver`),
# which the leader listens on to look in the inbox at once (`Journal.inbox_notices`).
INBOX_CHANNEL: Final = "pointsbot_inbox"


@dataclass(frozen=True, slots=True)
class Unfinished:
    """What a restart must do about the updates a crash left unhandled."""

    # (update_id, JSON body), oldest first: to be handled again.
    replay: list[tuple[int, str]]
    # Update ids whose handling was started `max_attempts` times after restarts and never
    # finished, now marked done without another try.
    given_up: list[int]
    # The ids of the last batch fetched: the only ones Telegram may deliver again.
    last_fetch: list[int]


@dataclass(frozen=True, slots=True)
class JournalCounts:
    """How many journaled updates are waiting to be handled, and how many are done."""

    unfinished: int
    done: int


def record_fetched(
    conn: sqlite3.Connection, updates: Sequence[Mapping[str, Any]], now: datetime
) -> set[int]:
    """Journal a fetched batch; return the ids Telegram delivered again (already journaled)."""
    ids = [int(update["update_id"]) for update in updates]
    if not ids:
        return set()
    again = set(ids).intersection(_last_fetch(conn))
    stamp = ts(now)
    conn.executemany(
        "INSERT INTO update_journal (update_id, body, fetched_at) VALUES (?, ?, ?)"
        " ON CONFLICT (update_id) DO UPDATE SET body = excluded.body,"
        " fetched_at = excluded.fetched_at, attempts = 0, done_at = NULL",
        (
            (update_id, json.dumps(update, ensure_ascii=False, separators=(",", ":")), stamp)
            for update_id, update in zip(ids, updates, strict=True)
            if update_id not in again
        ),
    )
    conn.execute(
        "INSERT INTO update_journal_last_fetch (id, update_ids) VALUES (1, ?)"
        " ON CONFLICT (id) DO UPDATE SET update_ids = excluded.update_ids",
        (json.dumps(ids),),
    )
    return again


def record_delivered(
    conn: sqlite3.Connection, updates: Sequence[Mapping[str, Any]], now: datetime
) -> set[int]:
    """Journal updates a webhook delivered; return the ids new here (the others are copies
    Telegram delivered again, handled or being handled: journaled unchanged)."""
    stamp = ts(now)
    fresh: set[int] = set()
    for update in updates:
        update_id = int(update["update_id"])
        cur = conn.execute(
            "INSERT INTO update_journal (update_id, body, fetched_at) VALUES (?, ?, ?)"
            " ON CONFLICT (update_id) DO NOTHING",
            (update_id, json.dumps(update, ensure_ascii=False, separators=(",", ":")), stamp),
        )
        if cur.rowcount == 1:
            fresh.add(update_id)
    return fresh


@dataclass(frozen=True, slots=True)
class Inbox:
    """What the leader finds in the journal to handle (webhook mode on PostgreSQL)."""

    # The ids of every journaled update not yet done, lowest first.
    unfinished: list[int]
    # (update_id, JSON body) of those not already taken, lowest first.
    new: list[tuple[int, str]]


def read_inbox(
    conn: sqlite3.Connection, taken: Collection[int], *, limit: int, epoch: int | None = None
) -> Inbox:
    """The updates journaled and not done, and the bodies of the first `limit` not among
    `taken`, in update id order, from one snapshot; raises NotLeader unless `epoch` (when
    given) leads."""
    check_epoch(conn, epoch)
    unfinished = [
        int(row[0])
        for row in conn.execute(
            "SELECT update_id FROM update_journal WHERE done_at IS NULL ORDER BY update_id"
        ).fetchall()
    ]
    wanted = [update_id for update_id in unfinished if update_id not in taken][:limit]
    if not wanted:
        return Inbox(unfinished, [])
    rows = conn.execute(
        "SELECT update_id, body FROM update_journal WHERE done_at IS NULL"
        " AND update_id IN (SELECT value FROM json_each(?)) ORDER BY update_id",
        (json.dumps(wanted),),
    ).fetchall()
    return Inbox(unfinished, [(int(row[0]), str(row[1])) for row in rows])


def notify_inbox(conn: sqlite3.Connection) -> None:
    """Notify INBOX_CHANNEL when this transaction commits (PostgreSQL only)."""
    conn.execute("SELECT pg_notify(?, '')", (INBOX_CHANNEL,))


def newest(conn: sqlite3.Connection) -> int | None:
    """The highest update id journaled (None: none)."""
    row = conn.execute("SELECT max(update_id) FROM update_journal").fetchone()
    return None if row[0] is None else int(row[0])


@stands_alone
def mark_done(conn: sqlite3.Connection, update_ids: Sequence[int], now: datetime) -> int:
    """Mark updates handled (their bodies are no longer needed); how many rows changed."""
    stamp = ts(now)
    cur = conn.executemany(
        "UPDATE update_journal SET done_at = ?, body = NULL"
        " WHERE update_id = ? AND done_at IS NULL",
        ((stamp, update_id) for update_id in update_ids),
    )
    return cur.rowcount


def take_unfinished(conn: sqlite3.Connection, now: datetime, *, max_attempts: int) -> Unfinished:
    """The unhandled updates, oldest first; one whose replay was started `max_attempts` times
    already is marked done instead (and listed as given up)."""
    rows = conn.execute(
        "SELECT update_id, body, attempts FROM update_journal WHERE done_at IS NULL"
        " ORDER BY update_id"
    ).fetchall()
    replay = [(int(r[0]), str(r[1])) for r in rows if r[2] < max_attempts]
    given_up = [int(r[0]) for r in rows if r[2] >= max_attempts]
    mark_done(conn, given_up, now)
    return Unfinished(replay, given_up, _last_fetch(conn))


def _last_fetch(conn: sqlite3.Connection) -> list[int]:
    row = conn.execute("SELECT update_ids FROM update_journal_last_fetch").fetchone()
    return [int(update_id) for update_id in json.loads(row[0])] if row else []


def count_attempts(conn: sqlite3.Connection, update_ids: Sequence[int]) -> None:
    """Count one more started replay of each update."""
    conn.executemany(
        "UPDATE update_journal SET attempts = attempts + 1 WHERE update_id = ?",
        ((update_id,) for update_id in update_ids),
    )


def prune_done(conn: sqlite3.Connection, handled_before: datetime) -> int:
    """Forget updates handled before `handled_before`; how many."""
    cur = conn.execute(
        "DELETE FROM update_journal WHERE done_at IS NOT NULL AND done_at < ?",
        (ts(handled_before),),
    )
    return cur.rowcount


def forget_all(conn: sqlite3.Connection) -> int:
    """Forget every journaled update (a new Bot API server starting its ids over); how many."""
    conn.execute("DELETE FROM update_journal_last_fetch")
    return conn.execute("DELETE FROM update_journal").rowcount


def journal_counts(conn: sqlite3.Connection) -> JournalCounts:
    """How many journaled updates wait to be handled, and how many are done."""
    unfinished, done = conn.execute(
        "SELECT count(*) FILTER (WHERE done_at IS NULL),"
        " count(*) FILTER (WHERE done_at IS NOT NULL) FROM update_journal"
    ).fetchone()
    return JournalCounts(int(unfinished), int(done))


class Journal(Facade):
    """The async facade over the update journal, on the store's single writer."""

    # Each runs this module's sync function of the same name (`counts`: journal_counts).
    mark_done = writes(mark_done)
    newest = reads(newest)
    take_unfinished = writes(take_unfinished)
    count_attempts = writes(count_attempts)
    prune_done = writes(prune_done)
    counts = reads(journal_counts)
    inbox = reads(read_inbox)

    async def record(
        self,
        updates: Sequence[Mapping[str, Any]],
        done: Sequence[int],
        now: datetime,
        *,
        epoch: int | None = None,
    ) -> set[int]:
        """Journal a fetched batch and mark `done` handled, in one transaction; return the ids
        Telegram delivered again. Raises NotLeader unless `epoch` (when given) leads."""

        @stands_alone
        def run(conn: sqlite3.Connection) -> set[int]:
            check_epoch(conn, epoch)
            again = record_fetched(conn, updates, now)
            # After the batch: `done` may hold updates of this batch, handled before it was
            # written (the bot journals a batch while its updates are being handled).
            if done:
                mark_done(conn, done, now)
            return again

        return await self._store.write(run)

    async def deliver(
        self,
        updates: Sequence[Mapping[str, Any]],
        done: Sequence[int],
        now: datetime,
        *,
        notify: bool = False,
    ) -> set[int]:
        """Journal updates a webhook delivered and mark `done` handled, in one transaction;
        return the ids new here. With `notify` (PostgreSQL), a commit that journaled any new
        notifies INBOX_CHANNEL."""

        @stands_alone
        def run(conn: sqlite3.Connection) -> set[int]:
            fresh = record_delivered(conn, updates, now)
            if done:
                mark_done(conn, done, now)
            if notify and fresh:
                notify_inbox(conn)
            return fresh

        return await self._store.write(run)

    def inbox_notices(self) -> AsyncIterator[None]:
        """Once per commit that journaled new deliveries with `notify`, from any process
        (PostgreSQL only); raises when the listening connection is lost."""
        from storage.pg_store import PgStore

        assert isinstance(self._store, PgStore), "notices need PostgreSQL"
        return self._store.notifications(INBOX_CHANNEL)
