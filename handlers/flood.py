"""A per-member flood limit: beyond it the bot answers politely once and does no work."""

from __future__ import annotations

import time
from collections import deque

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from handlers.common import BotContext, texts_for


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


async def flood_guard(update: Update, context: BotContext) -> None:
    """Runs before every handler: a member over the limit gets one polite answer, no work."""
    user, chat = update.effective_user, update.effective_chat
    services = context.services
    if user is None or services.config.is_admin(user.id):
        return  # a cashier at a busy till is not flooding
    if chat is not None and chat.type != chat.PRIVATE:
        return  # the bot serves private chats only; elsewhere nothing is answered anyway
    now = time.monotonic()
    allowed, tell = services.flood.check(user.id, now)
    if allowed:
        if services.flood.tracked > 10_000:  # housekeeping, rarely
            services.flood.forget_idle(now)
        return
    if tell:
        _ = await texts_for(update, context)
        seconds = int(services.flood.seconds)
        if update.callback_query is not None:
            await update.callback_query.answer(
                _("flood.slow_down", seconds=seconds), show_alert=True
            )
        elif update.effective_message is not None:
            await update.effective_message.reply_text(_("flood.slow_down", seconds=seconds))
    elif update.callback_query is not None:
        await update.callback_query.answer()  # stop the member's spinner; nothing else
    raise ApplicationHandlerStop
