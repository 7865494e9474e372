"""The one seam for time: nothing else in pointsbot reads the wall clock (a test enforces it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

# "Now" as an aware instant; the application, the store, the sender and the sandbox share one.
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The real time, in UTC: the clock of a running bot and of the CLI."""
    return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved: tests, scripted demos and benchmarks."""

    def __init__(self, now: datetime) -> None:
        self.now = _aware(now)

    def __call__(self) -> datetime:
        """The instant the clock shows."""
        return self.now

    def set(self, now: datetime) -> None:
        """Show `now` from here on."""
        self.now = _aware(now)

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by `delta` and return the new instant."""
        self.now += delta
        return self.now


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("a clock shows aware instants only")
    return now
