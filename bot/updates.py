"""Update processing: concurrent across members, one at a time and in order for each member.

python-telegram-bot either processes updates one by one (a slow member holds up everyone)
or all at once (two taps of one member may race through a conversation). This processor
does both right: each member's updates queue behind a lock of their own, in arrival order,
and a bounded number of members are served at the same time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Final

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.sending import resume_reading_back, stop_reading_back

# PTB's own semaphore is taken before our per-member lock; set so high it never blocks,
# so updates waiting behind their member's lock do not occupy the real slots below.
_UNBOUNDED: Final = 1_000_000


def member_key(update: object) -> int | None:
    """Whose queue an update joins: the user, else the chat; None for neither."""
    if not isinstance(update, Update):
        return None
    if update.effective_user is not None:
        return update.effective_user.id
    if update.effective_chat is not None:
        return update.effective_chat.id
    return None


class PerMemberUpdateProcessor(BaseUpdateProcessor):
    """Serve up to `workers` members at once; each member's updates strictly in order."""

    def __init__(self, workers: int = 256) -> None:
        super().__init__(max_concurrent_updates=_UNBOUNDED)
        self.workers = workers
        self._slots: asyncio.Semaphore | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._queued: dict[int, int] = {}

    async def initialize(self) -> None:
        """Create the worker slots inside the running loop."""
        self._slots = asyncio.Semaphore(self.workers)

    async def shutdown(self) -> None:
        """Nothing to release: locks go with their last update."""
        self._locks.clear()
        self._queued.clear()

    @property
    def busy_members(self) -> int:
        """How many members have updates being processed or queued."""
        return len(self._locks)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Wait for this member's earlier updates, then for a free slot, then process."""
        if self._slots is None:
            await self.initialize()
        assert self._slots is not None
        key = member_key(update)
        # Replies are sent, not read back (bot/sending.py); this task serves one update.
        reading = stop_reading_back()
        try:
            if key is None:
                async with self._slots:
                    await coroutine
                return
            lock = self._locks.setdefault(key, asyncio.Lock())
            self._queued[key] = self._queued.get(key, 0) + 1
            try:
                async with lock, self._slots:
                    await coroutine
            finally:
                self._queued[key] -= 1
                if not self._queued[key]:
                    del self._queued[key]
                    del self._locks[key]
        finally:
            resume_reading_back(reading)
