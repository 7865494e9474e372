"""The points ledger: double-entry, append-only, lot-based (DESIGN.md "The ledger").

The core is synchronous functions taking a `sqlite3.Connection` (`operations` writes,
`queries` reads, on the rows `bookkeeping` keeps): each is atomic on its own (a savepoint
inside the caller's transaction, or its own `BEGIN IMMEDIATE` otherwise), so tests, imports
and benchmarks can drive it directly. `Ledger` is the async facade: one `Store.write` (one
thread hop, one transaction) per operation. Import the ledger's names from here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from storage.errors import StoreError
from storage.ledger.bookkeeping import load_result, open_account
from storage.ledger.operations import (
    adjust,
    earn,
    earn_many,
    expire_batch,
    expire_due,
    extend_validity,
    refund,
    spend,
    transfer,
)
from storage.ledger.queries import (
    available,
    balance,
    existing_keys,
    history,
    iter_ledger,
    lots,
    operation,
    plan_spend,
)
from storage.ledger.records import (
    ADJUSTMENT_SOURCE,
    DAY_SECONDS,
    EARN_KINDS,
    EXPIRED_SINK,
    SPEND_KINDS,
    SPEND_SINKS,
    Balance,
    Consumed,
    EarnRequest,
    ExpiryReport,
    LedgerLine,
    Lot,
    OperationRecord,
    OperationResult,
    Posting,
    Statement,
    StatementLine,
)
from storage.sql import sole_operation
from storage.store import Store

__all__ = [
    "ADJUSTMENT_SOURCE",
    "DAY_SECONDS",
    "EARN_KINDS",
    "EXPIRED_SINK",
    "SPEND_KINDS",
    "SPEND_SINKS",
    "Balance",
    "Consumed",
    "EarnRequest",
    "ExpiryReport",
    "Ledger",
    "LedgerLine",
    "Lot",
    "OperationRecord",
    "OperationResult",
    "Posting",
    "Statement",
    "StatementLine",
    "adjust",
    "available",
    "balance",
    "earn",
    "earn_many",
    "existing_keys",
    "expire_batch",
    "expire_due",
    "extend_validity",
    "history",
    "iter_ledger",
    "load_result",
    "lots",
    "open_account",
    "operation",
    "plan_spend",
    "refund",
    "spend",
    "transfer",
]

T = TypeVar("T")


# --- the async facade ----------------------------------------------------------------------


class Ledger:
    """The ledger over a `Store`: every operation is one write transaction (one thread hop)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._store.write(sole_operation(fn))

    async def open_account(self, member_id: int) -> int:
        """Open the member's account (e.g. at registration); raises NotFound."""
        return await self._write(lambda c: open_account(c, member_id))

    async def earn(
        self,
        member_id: int,
        points: int,
        *,
        kind: str,
        key: str,
        actor: str,
        expires_at: datetime | None,
        reason: str | None = None,
        reference: str | None = None,
        meta: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> OperationResult:
        """Credit a member as one new lot; raises NotFound, Conflict, InvalidRequest."""
        when = self._store.now(now)
        return await self._write(
            lambda c: earn(
                c,
                member_id,
                points,
                kind=kind,
                key=key,
                actor=actor,
                expires_at=expires_at,
                reason=reason,
                reference=reference,
                meta=meta,
                now=when,
            )
        )

    async def spend(
        self,
        member_id: int,
        points: int,
        *,
        key: str,
        actor: str,
        sink: str = "redeemed",
        reason: str | None,
        reference: str | None,
        now: datetime | None = None,
    ) -> OperationResult:
        """Spend unexpired points; raises InsufficientPoints, NotFound, Conflict, InvalidRequest."""
        when = self._store.now(now)
        return await self._write(
            lambda c: spend(
                c,
                member_id,
                points,
                key=key,
                actor=actor,
                sink=sink,
                reason=reason,
                reference=reference,
                now=when,
            )
        )

    async def refund(
        self,
        spend_operation_id: int,
        *,
        key: str,
        actor: str,
        reason: str | None,
        merchant_fault: bool,
        min_validity_days: int = 30,
        now: datetime | None = None,
    ) -> OperationResult:
        """Refund a spend once; raises NotFound, AlreadyReversed, Conflict."""
        when = self._store.now(now)
        return await self._write(
            lambda c: refund(
                c,
                spend_operation_id,
                key=key,
                actor=actor,
                reason=reason,
                merchant_fault=merchant_fault,
                min_validity_days=min_validity_days,
                now=when,
            )
        )

    async def transfer(
        self,
        from_member: int,
        to_member: int,
        points: int,
        *,
        key: str,
        actor: str,
        reason: str | None,
        now: datetime | None = None,
    ) -> OperationResult:
        """Transfer points keeping their expiry; raises InsufficientPoints, NotFound, Conflict,
        InvalidRequest."""
        when = self._store.now(now)
        return await self._write(
            lambda c: transfer(
                c, from_member, to_member, points, key=key, actor=actor, reason=reason, now=when
            )
        )

    async def adjust(
        self,
        member_id: int,
        delta: int,
        *,
        key: str,
        actor: str,
        reason: str,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> OperationResult:
        """An admin correction; raises InsufficientPoints, NotFound, Conflict, InvalidRequest."""
        when = self._store.now(now)
        return await self._write(
            lambda c: adjust(
                c,
                member_id,
                delta,
                key=key,
                actor=actor,
                reason=reason,
                expires_at=expires_at,
                now=when,
            )
        )

    async def extend_validity(
        self,
        member_id: int,
        *,
        until: datetime,
        key: str,
        actor: str,
        reason: str | None,
        now: datetime | None = None,
        lot_ids: Iterable[int] | None = None,
    ) -> OperationResult:
        """Extend the validity of a member's lots to `until`; raises NotFound, Conflict,
        InvalidRequest."""
        when = self._store.now(now)
        chosen = None if lot_ids is None else tuple(lot_ids)
        return await self._write(
            lambda c: extend_validity(
                c,
                member_id,
                until=until,
                key=key,
                actor=actor,
                reason=reason,
                now=when,
                lot_ids=chosen,
            )
        )

    async def expire_due(
        self, now: datetime | None = None, *, batch: int = 1000, actor: str = "system:expiry"
    ) -> ExpiryReport:
        """Book every due lot as expired, one transaction per batch so members' taps interleave."""
        when = self._store.now(now)
        lots = points = 0
        cursor: tuple[int, int] | None = (-(2**63), 0)
        while cursor is not None:
            report, cursor = await self._write(
                partial(expire_batch, now=when, limit=batch, after=cursor, actor=actor)
            )
            lots += report.lots
            points += report.points
        return ExpiryReport(lots, points)

    async def earn_many(
        self, requests: Sequence[EarnRequest]
    ) -> list[OperationResult | StoreError]:
        """Apply many credits in one transaction; a result or error per request."""
        return await self._write(lambda c: earn_many(c, requests))

    async def balance(self, member_id: int, now: datetime | None = None) -> Balance:
        """Spendable points and their expiry schedule; raises NotFound."""
        when = self._store.now(now)
        return await self._store.lookup(lambda c: balance(c, member_id, when))

    async def available(self, member_id: int, now: datetime | None = None) -> int:
        """Spendable points now (one indexed query: for views that show only the total)."""
        when = self._store.now(now)
        return await self._store.lookup(lambda c: available(c, member_id, when))

    async def plan_spend(
        self, member_id: int, points: int, now: datetime | None = None
    ) -> tuple[tuple[datetime | None, int], ...]:
        """Which (expires_at, points) a spend would consume now; raises InsufficientPoints,
        NotFound, InvalidRequest."""
        when = self._store.now(now)
        return await self._store.lookup(lambda c: plan_spend(c, member_id, points, when))

    async def lots(self, member_id: int) -> list[Lot]:
        """Every lot of a member, oldest first."""
        return await self._store.lookup(lambda c: lots(c, member_id))

    async def history(self, member_id: int, *, offset: int = 0, limit: int = 20) -> Statement:
        """A page of the member's statement, newest first."""
        return await self._store.lookup(lambda c: history(c, member_id, offset=offset, limit=limit))

    async def operation(self, operation_id: int) -> OperationRecord:
        """One operation in full; raises NotFound."""
        return await self._store.lookup(lambda c: operation(c, operation_id))
