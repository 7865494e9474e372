"""Conversation states survive a restart: a BasePersistence on our own SQLite store.

Only ConversationHandler states are kept (DESIGN.md "Conversations"): user, chat and bot data
and callback data are not (`PersistenceInput` all False). Keys and states are stored as JSON
in the `conversations` table, through the store's single writer, never in pickle files.

python-telegram-bot loads persistent conversations in `Application.initialize()`, before
`post_init` opens the store, so this class opens the shared `Store` itself on first use; the
application's `post_init` finds it open, and `post_shutdown` closes it after the last flush.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final

from telegram.ext import BasePersistence, ConversationHandler, PersistenceInput

from bot.clock import Clock, system_clock
from bot.ptb_private import CDCData, ConversationKey
from storage.persistence import Conversations, StateChange
from storage.store import Store

log = logging.getLogger(__name__)

# How often PTB hands changed states over (it also does on stop): a crash loses at most this
# much. The writes are tiny and batched, one transaction per run.
UPDATE_INTERVAL: Final = 5.0


class StorePersistence(BasePersistence[dict[Any, Any], dict[Any, Any], Any]):
    """Persist ConversationHandler states in the `conversations` table of our store."""

    def __init__(
        self,
        store: Store,
        *,
        update_interval: float = UPDATE_INTERVAL,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            store_data=PersistenceInput(
                bot_data=False, chat_data=False, user_data=False, callback_data=False
            ),
            update_interval=update_interval,
        )
        self.store = store
        self.conversations = Conversations(store)
        self.clock: Clock = clock or system_clock
        # A conversation that times out in memory is not restored after it would have:
        # PTB keeps no timeout for restored states. Filled from the handlers by the app.
        self.timeouts: dict[str, timedelta] = {}
        self._pending: dict[tuple[str, str], StateChange] = {}
        self._write_lock = asyncio.Lock()
        self._open_lock = asyncio.Lock()

    async def _ready(self) -> None:
        """Open the shared store on first use (PTB asks before post_init runs)."""
        async with self._open_lock:
            if not self.store.is_open:
                await self.store.open()

    # -- conversations: what this persistence is for --

    async def get_conversations(self, name: str) -> dict[ConversationKey, object]:
        """The stored states of conversation `name`, except those that would have timed out
        (which are forgotten)."""
        await self._ready()
        timeout = self.timeouts.get(name)
        not_before = None
        if timeout is not None:
            not_before = self.clock() - timeout
            await self.conversations.forget_older(name, not_before)
        restored = await self.conversations.load(name, not_before=not_before)
        if restored:
            log.info("restored %d %s conversation(s)", len(restored), name)
        return dict(restored)

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        """Record a conversation's new state (None: it ended)."""
        self._pending[(name, repr(key))] = StateChange(name, tuple(key), new_state)
        await self._write_pending()

    async def _write_pending(self) -> None:
        # PTB calls update_conversation for every changed key at once: the first call writes
        # what has gathered, later ones find little or nothing left, so a run is one or two
        # transactions however many members are mid-conversation.
        async with self._write_lock:
            if not self._pending:
                return
            batch = dict(self._pending)
            self._pending.clear()
            try:
                await self._ready()
                await self.conversations.save(list(batch.values()), self.clock())
            except BaseException:
                # Keep what was not written for the next run, unless a newer state came.
                for slot, change in batch.items():
                    self._pending.setdefault(slot, change)
                raise

    async def flush(self) -> None:
        """Write anything still pending (PTB calls this on shutdown, before post_shutdown)."""
        await self._write_pending()

    # -- everything else is not persisted (PersistenceInput above says so to PTB) --

    async def get_user_data(self) -> dict[int, dict[Any, Any]]:
        """User data is not persisted: nothing to restore."""
        return {}

    async def get_chat_data(self) -> dict[int, dict[Any, Any]]:
        """Chat data is not persisted: nothing to restore."""
        return {}

    async def get_bot_data(self) -> Any:
        """Bot data holds the live services, which are built, never restored."""
        raise RuntimeError("bot_data is not persisted (PersistenceInput(bot_data=False))")

    async def get_callback_data(self) -> CDCData | None:
        """Callback data is not persisted: our buttons carry their own keys."""
        return None

    async def update_user_data(self, user_id: int, data: dict[Any, Any]) -> None:
        """User data is not persisted."""

    async def update_chat_data(self, chat_id: int, data: dict[Any, Any]) -> None:
        """Chat data is not persisted."""

    async def update_bot_data(self, data: Any) -> None:
        """Bot data is not persisted."""

    async def update_callback_data(self, data: CDCData) -> None:
        """Callback data is not persisted."""

    async def drop_chat_data(self, chat_id: int) -> None:
        """Chat data is not persisted."""

    async def drop_user_data(self, user_id: int) -> None:
        """User data is not persisted."""

    async def refresh_user_data(self, user_id: int, user_data: dict[Any, Any]) -> None:
        """User data is not persisted."""

    async def refresh_chat_data(self, chat_id: int, chat_data: dict[Any, Any]) -> None:
        """Chat data is not persisted."""

    async def refresh_bot_data(self, bot_data: Any) -> None:
        """Bot data is not persisted."""


def conversation_timeouts(handlers: Mapping[int, Any]) -> dict[str, timedelta]:
    """Each persistent conversation's timeout, from the application's handler groups."""
    timeouts: dict[str, timedelta] = {}
    for group in handlers.values():
        for handler in group:
            if isinstance(handler, ConversationHandler) and handler.persistent and handler.name:
                timeout = handler.conversation_timeout
                if isinstance(timeout, int | float) and timeout > 0:
                    timeouts[handler.name] = timedelta(seconds=timeout)
                elif isinstance(timeout, timedelta) and timeout > timedelta(0):
                    timeouts[handler.name] = timeout
    return timeouts
