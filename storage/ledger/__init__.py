"""The points ledger: double-entry, append-only, lot-based (DESIGN.md "The ledger").

The core is synchronous functions taking a `sqlite3.Connection` (`operations` writes,
`queries` reads, on the rows `bookkeeping` keeps): each is atomic on its own (a savepoint
inside the caller's transaction, or its own `BEGIN IMMEDIATE` otherwise), so tests, imports
and benchmarks can drive it directly. `Ledger` is the async facade: one `Store.write` (one
thread hop, one transaction) per operation. Import the ledger's names from here.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from storage.facade import Facade, looks_up, writes
from storage.ledger import bookkeeping, operations, queries
from storage.ledger.bookkeeping import applied, load_result, open_account
from storage.ledger.operations import (
    adjust,
    earn,
    earn_groups,
    earn_many,
    expire_batch,
    expire_due,
    extend_validity,
    refund,
    spend,
    transfer,
    undo_transfer,
)
from storage.ledger.queries import (
    available,
    balance,
    count_ledger_lines,
    existing_keys,
    history,
    iter_ledger,
    lots,
    operation,
    plan_spend,
    recent_operations,
    stored_purchases,
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
    RecentOperation,
    Statement,
    StatementLine,
    StoredPurchase,
)

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
    "RecentOperation",
    "Statement",
    "StatementLine",
    "StoredPurchase",
    "adjust",
    "applied",
    "available",
    "balance",
    "count_ledger_lines",
    "earn",
    "earn_groups",
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
    "recent_operations",
    "refund",
    "spend",
    "stored_purchases",
    "transfer",
    "undo_transfer",
]

# --- the async facade ----------------------------------------------------------------------


class Ledger(Facade):
    """The ledger over a `Store`: every operation is one write transaction (one thread hop)."""

    open_account = writes(bookkeeping.open_account)
    earn = writes(operations.earn)
    spend = writes(operations.spend)
    refund = writes(operations.refund)
    transfer = writes(operations.transfer)
    undo_transfer = writes(operations.undo_transfer)
    adjust = writes(operations.adjust)
    extend_validity = writes(operations.extend_validity)
    earn_many = writes(operations.earn_many)
    earn_groups = writes(operations.earn_groups)
    balance = looks_up(queries.balance)
    available = looks_up(queries.available)
    plan_spend = looks_up(queries.plan_spend)
    lots = looks_up(queries.lots)
    history = looks_up(queries.history)
    operation = looks_up(queries.operation)
    recent_operations = looks_up(queries.recent_operations)

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
