"""The bot object: sent messages are not read back while an update is being served.

Every sendMessage, editMessageText or sendPhoto answers with the whole message, which
python-telegram-bot turns into a `Message` (for a message with a keyboard, some 300
attribute assignments: more than the database work behind most replies). Handlers send
and move on; nothing of ours reads what came back. So while an update is served
(bot/updates.py), a successful send returns True, the value the Bot API itself gives for
an edit it has nothing to show for, and code that does need the sent message (the file id
of an uploaded picture) asks for it with `read_back()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, Final

from telegram._utils.defaultvalue import DEFAULT_NONE
from telegram._utils.types import JSONDict, ODVInput
from telegram.ext import ExtBot

_READ_BACK: ContextVar[bool] = ContextVar("read_back_sent_messages", default=True)
# Methods PTB answers with Message.de_json unless the result is True (Bot._send_message).
_MESSAGE_METHODS: Final = frozenset(
    (
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
    )
)


def stop_reading_back() -> Token[bool]:
    """From here on in this task, sent messages are not parsed (reset with the token)."""
    return _READ_BACK.set(False)


def resume_reading_back(token: Token[bool]) -> None:
    """Undo `stop_reading_back`."""
    _READ_BACK.reset(token)


@contextmanager
def read_back() -> Iterator[None]:
    """Inside this block, sends return the sent `Message` as usual."""
    token = _READ_BACK.set(True)
    try:
        yield
    finally:
        _READ_BACK.reset(token)


class MemberBot(ExtBot[None]):
    """`ExtBot` that, while serving an update, does not build `Message`s nobody reads."""

    async def _post(
        self,
        endpoint: str,
        data: JSONDict | None = None,
        *,
        read_timeout: ODVInput[float] = DEFAULT_NONE,
        write_timeout: ODVInput[float] = DEFAULT_NONE,
        connect_timeout: ODVInput[float] = DEFAULT_NONE,
        pool_timeout: ODVInput[float] = DEFAULT_NONE,
        api_kwargs: JSONDict | None = None,
    ) -> Any:
        """Post as usual; a sent or edited message comes back as True unless read back."""
        result = await super()._post(
            endpoint,
            data,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
            api_kwargs=api_kwargs,
        )
        if endpoint in _MESSAGE_METHODS and isinstance(result, dict) and not _READ_BACK.get():
            return True
        return result
