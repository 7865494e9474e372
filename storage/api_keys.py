"""The till API's keys, the nonces they signed with, and the answers they were given.

Each store's till signs its requests with a key issued here (`create_key`, by the CLI) until
it is revoked (`revoke_key`). A nonce is claimed once per key (`claim_nonce`: the primary key
refuses a second claim), and claims older than the clock-skew window are pruned in the same
transaction. The first answer to a purchase or return is kept with the fingerprint of its
request (`keep_result`), so a retry is answered alike (migration 0028).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from storage.errors import NotFound
from storage.facade import Facade, looks_up, writes
from storage.sql import atomic, dt, dt_or_none, required_now, stands_alone, ts

# What an answer is kept for: a purchase by its receipt, a return by its return id.
ResultKind = Literal["purchase", "purchase_return"]


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A store's key: `key_id` is sent with every request, `secret` signs it."""

    id: int
    key_id: str
    store: str
    secret: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        """Whether the key was revoked (for good)."""
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class KeptResult:
    """The first answer given to a purchase or return, and the request it answered."""

    fingerprint: str
    result: dict[str, Any]


def _key(row: sqlite3.Row | tuple[Any, ...]) -> ApiKey:
    return ApiKey(
        int(row[0]), str(row[1]), str(row[2]), str(row[3]), dt(row[4]), dt_or_none(row[5])
    )


def create_key(
    conn: sqlite3.Connection, key_id: str, store: str, secret: str, *, now: datetime | None = None
) -> ApiKey:
    """Record a new key for `store` (id and secret drawn by the caller)."""
    now = required_now(now)
    with atomic(conn):
        row = conn.execute(
            "INSERT INTO api_keys (key_id, store, secret, created_at) VALUES (?, ?, ?, ?)"
            " RETURNING id, key_id, store, secret, created_at, revoked_at",
            (key_id, store, secret, ts(now)),
        ).fetchone()
    return _key(row)


def revoke_key(conn: sqlite3.Connection, key_id: str, *, now: datetime | None = None) -> ApiKey:
    """Revoke a key for good (revoking it again changes nothing); raises NotFound."""
    now = required_now(now)
    with atomic(conn):
        conn.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            (ts(now), key_id),
        )
        found = key_by_id(conn, key_id)
    if found is None:
        raise NotFound(f"no API key {key_id!r}")
    return found


def key_by_id(conn: sqlite3.Connection, key_id: str) -> ApiKey | None:
    """The key with this key id, revoked or not, or None."""
    row = conn.execute(
        "SELECT id, key_id, store, secret, created_at, revoked_at FROM api_keys WHERE key_id = ?",
        (key_id,),
    ).fetchone()
    return None if row is None else _key(row)


def all_keys(conn: sqlite3.Connection) -> list[ApiKey]:
    """Every key ever issued, the oldest first."""
    rows = conn.execute(
        "SELECT id, key_id, store, secret, created_at, revoked_at FROM api_keys ORDER BY id"
    )
    return [_key(row) for row in rows]


@stands_alone
def claim_nonce(
    conn: sqlite3.Connection,
    key: int,
    nonce: str,
    signed_at: datetime,
    *,
    stale_before: datetime,
) -> bool:
    """Record that key `key` (its row id) signed with `nonce` at `signed_at`; False when it
    did before. Claims signed before `stale_before` are pruned first: their requests are
    refused as stale whatever their nonce."""
    with atomic(conn):
        conn.execute("DELETE FROM api_nonces WHERE signed_at < ?", (ts(stale_before),))
        claimed = conn.execute(
            "INSERT INTO api_nonces (key_ref, nonce, signed_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key_ref, nonce) DO NOTHING",
            (key, nonce, ts(signed_at)),
        )
        return claimed.rowcount == 1


def kept_result(conn: sqlite3.Connection, kind: ResultKind, request_key: str) -> KeptResult | None:
    """The first answer to the purchase (receipt) or return (return id), or None."""
    row = conn.execute(
        "SELECT fingerprint, result FROM api_results WHERE kind = ? AND request_key = ?",
        (kind, request_key),
    ).fetchone()
    return None if row is None else KeptResult(str(row[0]), json.loads(row[1]))


@stands_alone
def keep_result(
    conn: sqlite3.Connection,
    kind: ResultKind,
    request_key: str,
    key: int,
    fingerprint: str,
    result: dict[str, Any],
    *,
    now: datetime | None = None,
) -> KeptResult:
    """Keep the answer to a purchase or return unless one is kept already; return the kept
    one (the first answer wins)."""
    now = required_now(now)
    with atomic(conn):
        conn.execute(
            "INSERT INTO api_results (kind, request_key, key_ref, fingerprint, result, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, request_key) DO NOTHING",
            (kind, request_key, key, fingerprint, json.dumps(result, sort_keys=True), ts(now)),
        )
        kept = kept_result(conn, kind, request_key)
    assert kept is not None  # inserted or already there, in this transaction
    return kept


class ApiKeys(Facade):
    """The till API's keys, nonces and kept answers, served from the store."""

    create = writes(create_key)
    revoke = writes(revoke_key)
    by_key_id = looks_up(key_by_id)
    claim_nonce = writes(claim_nonce)
    kept_result = looks_up(kept_result)
    keep_result = writes(keep_result)
