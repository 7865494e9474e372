"""The store's exceptions: callers catch exactly what they handle."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from typing import Literal


class StoreError(Exception):
    """Base class of everything the store raises on purpose."""


class MigrationError(StoreError):
    """A migration failed or the database is newer than this code."""


class CommitUnknown(sqlite3.OperationalError):
    """The connection was lost during COMMIT: the transaction may or may not have committed."""


class BackupRefused(StoreError):
    """A backup's destination is the live database (or one of its files), or is taken."""


class NotFound(StoreError):
    """The member, operation or lot asked for does not exist."""


class Conflict(StoreError):
    """An idempotency key was reused for a different request."""


class InsufficientPoints(StoreError):
    """A member account would go below zero."""

    def __init__(self, available: int, requested: int) -> None:
        super().__init__(f"available {available}, requested {requested}")
        self.available = available
        self.requested = requested


class SourceHeldBack(InsufficientPoints):
    """Enough points, but some come from sources that stay with their member (a transfer):
    `available` is what may move, `held_back` what may not."""

    def __init__(self, available: int, requested: int, held_back: int) -> None:
        super().__init__(available, requested)
        self.held_back = held_back


class AlreadyReversed(StoreError):
    """The operation was already refunded or reversed."""


class InvalidRequest(StoreError, ValueError):
    """The request breaks a ledger rule (non-positive points, transfer to oneself, no reason)."""


# --- the mall, games, surveys and suggestions -------------------------------------------------


class SoldOut(StoreError):
    """Every unit of the item has been redeemed."""


class NotAvailable(StoreError):
    """The item cannot be redeemed now (not started, ended, delisted or unlisted)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not available: {reason}")
        self.reason = reason


class LimitReached(StoreError):
    """The member already redeemed the item as often as one member may."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} per member")
        self.limit = limit


class OfferExpired(StoreError):
    """The confirmation button is stale, unknown or someone else's."""


class ReturnWindowClosed(StoreError):
    """The redemption is older than the return window."""

    def __init__(self, deadline: datetime) -> None:
        super().__init__(f"returns closed at {deadline.isoformat()}")
        self.deadline = deadline


class VoucherExpired(StoreError):
    """The voucher's last valid day (a local day, through 23:59:59) has passed."""

    def __init__(self, valid_until: date) -> None:
        super().__init__(f"valid until {valid_until.isoformat()}")
        self.valid_until = valid_until


class InvalidState(StoreError):
    """The record's status (a redemption's, card's, voucher's, suggestion's) forbids this step."""

    def __init__(self, status: str) -> None:
        super().__init__(f"not allowed while {status}")
        self.status = status


class CatalogPriceChanged(StoreError):
    """The offer's points are not what the catalog charges now (a sale ended, a price changed)."""

    def __init__(self, sku: str, offered: int, current: int) -> None:
        super().__init__(f"{sku} offered at {offered} points, the catalog charges {current}")
        self.sku = sku
        self.offered = offered
        self.current = current


class PriceChanged(StoreError):
    """The button promised another price than the play costs now (a free play was used up)."""

    def __init__(self, promised: int, cost: int) -> None:
        super().__init__(f"the button said {promised} points, a play costs {cost} now")
        self.promised = promised
        self.cost = cost


class SurveyClosed(StoreError):
    """The survey is not open now: `reason` is 'not_open' (yet) or 'closed'."""

    def __init__(
        self, reason: Literal["not_open", "closed"], opens_at: datetime, closes_at: datetime
    ) -> None:
        super().__init__(f"survey {reason.replace('_', ' ')}")
        self.reason = reason
        self.opens_at = opens_at
        self.closes_at = closes_at


class AlreadyCompleted(StoreError):
    """The member completed this survey already (and was rewarded then)."""


class StaleQuestion(StoreError):
    """The button answers another question than the one being asked (`position`)."""

    def __init__(self, position: int) -> None:
        super().__init__(f"the question being asked is number {position + 1}")
        self.position = position


class SurveyChanged(StoreError):
    """The survey's questions changed since the member started: open it again to start over."""


class InvalidAnswer(InvalidRequest):
    """The answer does not fit the question; `reason` says how, `limit` is the bound broken."""

    def __init__(self, reason: str, limit: int = 0) -> None:
        super().__init__(f"invalid answer: {reason}")
        self.reason = reason
        self.limit = limit


class NotLeader(StoreError):
    """A write only the leader makes, by a process whose epoch is no longer the current one."""

    def __init__(self, epoch: int, current: int | None) -> None:
        super().__init__(f"leader epoch {epoch} is over (the current one is {current})")
        self.epoch = epoch
        self.current = current
