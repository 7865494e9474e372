"""The ledger operation booked while an update is handled, for whatever is logged next."""

from __future__ import annotations

from contextvars import ContextVar

# Each update is handled in its own task (bot/updates.py), so this names one update's
# operation only; the logs read it (bot/logs.py) without the rules knowing about logging.
booked_operation: ContextVar[int | None] = ContextVar("booked_operation", default=None)


def note_booked(operation_id: int) -> None:
    """Name this ledger operation (booked now or replayed) in what this update logs next."""
    booked_operation.set(operation_id)
