"""Conversation states of the Telegram layer, kept so a restart continues every conversation.

The caller (bot/persistence.py) hands over plain JSON-able keys and states; this module never
sees a Telegram object. `Conversations` is the async facade over the store's single writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from storage.errors import InvalidRequest
from storage.facade import Facade, reads, writes
from storage.sql import ts

# A conversation key: python-telegram-bot's tuple of chat and user ids (ints or strings).
Key = tuple[int | str, ...]


@dataclass(frozen=True, slots=True)
class StateChange:
    """A conversation's new state for one key; None ends the conversation."""

    name: str
    key: Key
    state: object | None


def _key_json(key: Sequence[int | str]) -> str:
    if not all(isinstance(part, int | str) and not isinstance(part, bool) for part in key):
        raise InvalidRequest(f"a conversation key holds ints and strings, not {key!r}")
    return json.dumps(list(key), separators=(",", ":"), ensure_ascii=False)


def _state_json(state: object) -> str:
    try:
        return json.dumps(state, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"a conversation state must be JSON, not {state!r}") from exc


def load_conversations(
    conn: sqlite3.Connection, name: str, *, not_before: datetime | None = None
) -> dict[Key, object]:
    """The stored states of conversation `name`, leaving out those last changed before
    `not_before` (a conversation that would have timed out)."""
    cutoff = -1 if not_before is None else ts(not_before)
    return {
        tuple(json.loads(key)): json.loads(state)
        for key, state in conn.execute(
            "SELECT key, state FROM conversations WHERE name = ? AND updated_at >= ?",
            (name, cutoff),
        )
    }


def save_states(conn: sqlite3.Connection, changes: Sequence[StateChange], now: datetime) -> None:
    """Record new states (and forget ended conversations) in one go."""
    now_ts = ts(now)
    upserts = []
    deletes = []
    for change in changes:
        key = _key_json(change.key)
        if change.state is None:
            deletes.append((change.name, key))
        else:
            upserts.append((change.name, key, _state_json(change.state), now_ts))
    conn.executemany("DELETE FROM conversations WHERE name = ? AND key = ?", deletes)
    conn.executemany(
        "INSERT INTO conversations (name, key, state, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (name, key) DO UPDATE SET state = excluded.state,"
        " updated_at = excluded.updated_at",
        upserts,
    )


def forget_older(conn: sqlite3.Connection, name: str, not_before: datetime) -> int:
    """Forget states of conversation `name` last changed before `not_before`; how many."""
    cur = conn.execute(
        "DELETE FROM conversations WHERE name = ? AND updated_at < ?", (name, ts(not_before))
    )
    return cur.rowcount


def conversation_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """How many chats are inside each conversation."""
    return {
        name: int(count)
        for name, count in conn.execute(
            "SELECT name, count(*) FROM conversations GROUP BY name ORDER BY name"
        )
    }


class Conversations(Facade):
    """Conversation states over a `Store`: one write transaction per batch of changes."""

    load = reads(load_conversations)
    forget_older = writes(forget_older)
    counts = reads(conversation_counts)

    async def save(self, changes: Sequence[StateChange], now: datetime) -> None:
        """Record a batch of state changes in one transaction."""
        batch = tuple(changes)
        if batch:
            await self._store.write(lambda c: save_states(c, batch, now))
