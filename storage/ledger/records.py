"""The ledger's vocabulary: operation kinds and sinks, and the values it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

EARN_KINDS: Final = frozenset(
    {
        "purchase",
        "birthday",
        "survey",
        "feedback",
        "game",
        "share_bonus",
        "task",
        "badge",
        "tier",
        "plan",
        "compensation",
        "campaign",
    }
)
# The sink a spend goes to decides its operation kind (and so the statement line).
SPEND_SINKS: Final[Mapping[str, str]] = {"redeemed": "redeem", "game_cost": "game_play"}
SPEND_KINDS: Final = frozenset(SPEND_SINKS.values())
# Operations whose reference is the receipt of the purchase they credit.
RECEIPT_KINDS: Final = frozenset({"purchase", "campaign"})
EXPIRED_SINK: Final = "expired"
ADJUSTMENT_SOURCE: Final = "adjustment"
DAY_SECONDS: Final = 86_400


@dataclass(frozen=True, slots=True)
class Consumed:
    """Points an operation took from one lot."""

    lot_id: int
    points: int


@dataclass(frozen=True, slots=True)
class OperationResult:
    """What an operation did; rebuilt identically from the database when its key is replayed."""

    operation_id: int
    kind: str
    member_id: int
    points: int
    # The member account's ledger balance right after the operation (it still counts expired
    # points that the next sweep will book; `balance()` gives what is spendable).
    balance_after: int
    lots_created: tuple[int, ...] = ()
    consumed: tuple[Consumed, ...] = ()
    recipient_id: int | None = None
    recipient_balance_after: int | None = None
    replayed: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    """What an expiry sweep booked."""

    lots: int
    points: int


@dataclass(frozen=True, slots=True)
class EarnRequest:
    """One credit of `earn_many` (a row of a purchase import)."""

    member_id: int
    points: int
    kind: str
    key: str
    actor: str
    expires_at: datetime | None
    now: datetime
    reason: str | None = None
    reference: str | None = None
    meta: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StoredPurchase:
    """A purchase booked before under a key: its operations (the purchase, then its campaign's
    extra points if any), member, points in all and stored facts (meta)."""

    operation_ids: tuple[int, ...]
    member_id: int
    points: int
    meta: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Balance:
    """A member's spendable points, when they expire, and what they ever earned."""

    member_id: int
    available: int
    # (expires_at, points) of unexpired lots, soonest first; None (never) last.
    expiring: tuple[tuple[datetime | None, int], ...]
    lifetime_earned: int
    # Points a purchase return could not take back, to be netted against the next purchase
    # earnings (storage.purchase_returns).
    owed: int = 0


@dataclass(frozen=True, slots=True)
class Lot:
    """A credit to a member with its own expiry."""

    id: int
    member_id: int
    operation_id: int
    points: int
    remainder: int
    expires_at: datetime | None
    origin_lot_id: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One operation as a member's statement shows it, with the facts a member recognises it by.

    Each fact is None when the operation has none (or an older one did not record it).
    """

    operation_id: int
    created_at: datetime
    kind: str
    points: int  # signed, from the member's point of view
    reason: str | None
    reference: str | None
    # A purchase's (or a campaign bonus's purchase's) receipt, amount spent and campaign id.
    receipt: str | None = None
    amount: Decimal | None = None
    campaign: str | None = None
    # A purchase's tier bonus: the tier held and the extra points it added (in `points`); a
    # tier entry reward's tier.
    tier: str | None = None
    tier_bonus: int | None = None
    # The mall redemption a redeem, refund or compensation belongs to; `code` is its code, or
    # the code of the voucher a game play won.
    sku: str | None = None
    code: str | None = None
    deduction_yuan: Decimal | None = None
    # Why the shop cancelled the redemption (a delisting or an order it could not fulfil).
    cancelled_because: str | None = None
    # A game play or prize: which game, and the prize once the member has seen it.
    game: str | None = None
    prize: str | None = None
    survey: str | None = None
    # A task reward's task, a badge-set prize's set.
    task: str | None = None
    badge_set: str | None = None
    # The other member of a transfer.
    counterparty: str | None = None
    # When the points an expiry booked were credited.
    earned_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RecentOperation:
    """An operation of one actor for one member: what a check for a retyped entry compares."""

    operation_id: int
    key: str
    created_at: datetime
    points: int
    reference: str | None
    meta: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Statement:
    """A page of a member's history, newest first, and how many lines there are in all."""

    lines: tuple[StatementLine, ...]
    total: int


@dataclass(frozen=True, slots=True)
class Posting:
    """One leg of an operation: `member:<id>` or a system account name, and a signed amount."""

    account: str
    amount: int


@dataclass(frozen=True, slots=True)
class OperationRecord:
    """An operation with its postings, created lots and consumed lots."""

    id: int
    kind: str
    key: str
    member_id: int
    counterparty_id: int | None
    points: int
    actor: str
    reason: str | None
    reference: str | None
    reverses_operation_id: int | None
    created_at: datetime
    meta: Mapping[str, Any] | None
    postings: tuple[Posting, ...]
    lots_created: tuple[int, ...]
    consumed: tuple[Consumed, ...]


@dataclass(frozen=True, slots=True)
class LedgerLine:
    """One posting with its operation's fields: a row of the audit-trail export."""

    posting_id: int
    operation_id: int
    created_at: datetime
    kind: str
    key: str
    actor: str
    reason: str | None
    reference: str | None
    reverses_operation_id: int | None
    account: str
    member_id: int | None
    amount: int
    meta: str | None
    # A transfer's (or its undo's) members, from whom to whom the points moved.
    moved_from: int | None = None
    moved_to: int | None = None
