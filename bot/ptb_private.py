"""Every private python-telegram-bot API pointsbot leans on, in one place.

python-telegram-bot may change its underscored modules and methods in any release without
notice. pointsbot uses a few of them to send replies without PTB's generic encoding
(bot/sending.py), to speak PTB's timeout convention in its transport (bot/transport.py) and to
name the shapes its persistence stores (bot/persistence.py), to end a member's other
conversations when one asks a question (handlers/questions.py), and to read the conversations
afresh when a standby takes over (bot/app.py). They are imported or named here
only, and tests/test_ptb_private.py checks each one (it exists, takes the parameters we pass,
behaves as we rely on), so an upgrade that moves one fails there, by name, not in production.
"""

from __future__ import annotations

import itertools
from typing import Any, Final

from telegram import InlineKeyboardButton
from telegram.ext import Application, ConversationHandler

try:
    # The sentinel PTB uses for "not given, use the default" in every timeout and flag.
    from telegram._utils.defaultvalue import DEFAULT_NONE, DefaultValue

    # PTB's type aliases: a JSON object, and "a value or the default sentinel".
    from telegram._utils.types import JSONDict, ODVInput

    # The dict a conversation keeps its states in, tracking what changed for the persistence.
    from telegram.ext._utils.trackingdict import TrackingDict

    # The shapes BasePersistence hands over: a conversation's key, the callback-data cache.
    from telegram.ext._utils.types import CDCData, ConversationKey

    # One parameter of a Bot API request, as PTB's transports encode it.
    from telegram.request._requestparameter import RequestParameter
except ImportError as exc:  # pragma: no cover - only on a python-telegram-bot upgrade
    raise ImportError(
        f"python-telegram-bot changed a private API pointsbot uses ({exc}); "
        "bot/ptb_private.py must follow (see tests/test_ptb_private.py)"
    ) from exc

__all__ = (
    "BOT_POST",
    "BOT_POST_PARAMETERS",
    "DEFAULT_NONE",
    "MESSAGE_METHODS",
    "CDCData",
    "ConversationKey",
    "DefaultValue",
    "end_conversation",
    "JSONDict",
    "inline_button_fields",
    "ODVInput",
    "reread_conversations",
    "RequestParameter",
    "TrackingDict",
)

# The method every Bot API call goes through (Bot._post -> Bot._do_post), which MemberBot
# overrides, and the parameters it is called with and passes on.
BOT_POST: Final = "_post"
BOT_POST_PARAMETERS: Final = (
    "endpoint",
    "data",
    "read_timeout",
    "write_timeout",
    "connect_timeout",
    "pool_timeout",
    "api_kwargs",
)

# Methods PTB answers with `Message.de_json(result)` unless `_post` returned True
# (Bot._send_message): MemberBot returns True for these while an update is served.
MESSAGE_METHODS: Final = frozenset(
    (
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
    )
)


def inline_button_fields() -> tuple[str, ...]:
    """Every field an inline button can carry (its `__slots__`: PTB lists no fields publicly)."""
    return tuple(InlineKeyboardButton.__slots__)


def end_conversation(handler: ConversationHandler[Any], key: ConversationKey) -> None:
    """End `handler`'s conversation for `key` the way its own timeout does (`_update_state`
    with END): PTB has no public way to end a conversation from outside it. The state dict
    of a persistent conversation tracks the removal, so the next persistence run forgets it."""
    handler._update_state(ConversationHandler.END, key)


async def reread_conversations(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Read every persistent conversation's states afresh from the persistence, forgetting the
    ones held in memory: PTB reads them once, in `initialize()` (`_add_ch_to_persistence`), so
    a standby that takes over the leader's updates later would carry on from the states of
    when it started. For an application that has handled no update since (what it holds is
    only what it read then): each handler gets a new, untracked state dict, which replaces
    the old in the application's list of dicts to write once it is read."""
    for handler in itertools.chain.from_iterable(application.handlers.values()):
        if isinstance(handler, ConversationHandler) and handler.persistent and handler.name:
            _forget_states(handler)
            await application._add_ch_to_persistence(handler)


def _forget_states(handler: ConversationHandler[Any]) -> None:
    """Give a conversation (and those nested in it) empty state dicts, untracked."""
    handler._conversations = TrackingDict()
    for child in handler._child_conversations:
        _forget_states(child)
