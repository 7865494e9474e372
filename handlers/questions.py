"""One typed question at a time: a member's text answers the question they were asked last.

Six conversations wait for typed text (the birthday, family birthdays, /feedback, surveys, the
invitation code, a transfer amount). Were two waiting at once, python-telegram-bot would give
the next text to whichever is registered first, so a pet's name could be read as "not a date".
Instead, asking a question ends every other conversation of the chat: the earlier question is
abandoned, a survey keeps its answers in the store and continues from /surveys as always.

Only one conversation is then waiting, so its persisted state alone says after a restart which
question the text answers, and its own timeout and /cancel work as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeGuard, TypeVar

from telegram import Update
from telegram.ext import ConversationHandler

from bot.ptb_private import end_conversation
from handlers.common import BotContext

State = TypeVar("State")


def asks(
    callback: Callable[[Update, BotContext], Coroutine[Any, Any, State]],
) -> Callable[[Update, BotContext], Coroutine[Any, Any, State]]:
    """Wrap a conversation step that may ask a question: when it does, the chat's other
    conversations end."""

    @functools.wraps(callback)
    async def asking(update: Update, context: BotContext) -> State:
        state = await callback(update, context)
        chat, user = update.effective_chat, update.effective_user
        # The one place that decides: a step returning a state is waiting for an answer now,
        # so every conversation of this chat ends, this one included — PTB stores the state
        # returned here right after, so only the question asked last is left waiting.
        if state is not None and state != ConversationHandler.END and chat and user:
            for group in context.application.handlers.values():
                for handler in group:
                    if _keyed_by_chat_and_user(handler):
                        end_conversation(handler, (chat.id, user.id))
        return state

    return asking


def _keyed_by_chat_and_user(handler: object) -> TypeGuard[ConversationHandler[Any]]:
    """A conversation whose key is (chat id, user id), like all of ours."""
    return (
        isinstance(handler, ConversationHandler)
        and handler.per_chat
        and handler.per_user
        and not handler.per_message
    )
