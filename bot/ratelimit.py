"""A per-member rate limit over a sliding window: plain bookkeeping, no Telegram."""

from __future__ import annotations

from collections import deque


class FloodGuard:
    """A sliding window of each member's recent updates."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._seen: dict[int, deque[float]] = {}
        self._told: dict[int, float] = {}

    def check(self, user_id: int, now: float) -> tuple[bool, bool]:
        """(allowed, tell): whether to do the work, and whether to say why not (once a window)."""
        seen = self._seen.setdefault(user_id, deque())
        while seen and seen[0] <= now - self.seconds:
            seen.popleft()
        if len(seen) < self.limit:
            seen.append(now)
            return True, False
        told = self._told.get(user_id)
        tell = told is None or told <= now - self.seconds
        if tell:
            self._told[user_id] = now
        return False, tell

    def retry_after(self, user_id: int, now: float) -> float:
        """Seconds until the window has room for `user_id` again (0: it has room now)."""
        seen = self._seen.get(user_id)
        if not seen or len(seen) < self.limit:
            return 0.0
        return max(0.0, seen[-self.limit] + self.seconds - now)

    @property
    def tracked(self) -> int:
        """How many members the window holds."""
        return len(self._seen)

    def forget_idle(self, now: float) -> None:
        """Drop members quiet for a whole window (keeps memory flat over a long run)."""
        for user_id in [
            u for u, seen in self._seen.items() if not seen or seen[-1] <= now - self.seconds
        ]:
            del self._seen[user_id]
            self._told.pop(user_id, None)
