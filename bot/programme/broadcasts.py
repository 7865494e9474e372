"""Operators' broadcasts: a message to every member, previewed with its audience, queued once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bot.i18n import N_
from bot.programme.context import Programme
from bot.programme.errors import RuleError

# Leaves room for the frame around it within Telegram's 4096 characters.
MAX_BROADCAST_LENGTH: Final = 3000
# The catalog message each member receives, with the operator's text inside.
BROADCAST_MESSAGE: Final = N_("push.broadcast")


@dataclass(frozen=True, slots=True)
class BroadcastDraft:
    """A saved broadcast waiting for its author's confirmation, and how many it would reach."""

    id: int
    text: str
    audience: int


async def draft_broadcast(programme: Programme, text: str, *, actor: str) -> BroadcastDraft:
    """Save a broadcast for confirmation; raises RuleError (too long)."""
    if len(text) > MAX_BROADCAST_LENGTH:
        raise RuleError(N_("broadcast.too_long"), limit=MAX_BROADCAST_LENGTH)
    saved = await programme.pushes.create_broadcast(text, actor, programme.now())
    audience = await programme.pushes.member_count()
    return BroadcastDraft(saved.id, text, audience)


async def send_broadcast(programme: Programme, broadcast_id: int, *, actor: str) -> int:
    """Queue a drafted broadcast once for every member (only its author may); return how many
    messages were queued; raises NotFound (unknown, someone else's)."""
    return await programme.pushes.confirm_broadcast(
        broadcast_id, actor, programme.now(), BROADCAST_MESSAGE
    )
