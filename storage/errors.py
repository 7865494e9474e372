"""The store's exceptions: callers catch exactly what they handle."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of everything the store raises on purpose."""


class MigrationError(StoreError):
    """A migration failed or the database is newer than this code."""


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


class AlreadyReversed(StoreError):
    """The operation was already refunded or reversed."""


class InvalidRequest(StoreError, ValueError):
    """The request breaks a ledger rule (non-positive points, transfer to oneself, no reason)."""
