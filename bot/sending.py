"""The bot object: replies are encoded directly and not read back while an update is served.

Every sendMessage, editMessageText or sendPhoto answers with the whole message, which
python-telegram-bot turns into a `Message` (for a message with a keyboard, some 300
attribute assignments: more than the database work behind most replies). Handlers send
and move on; nothing of ours reads what came back. So while an update is served
(bot/updates.py), a successful send returns True, the value the Bot API itself gives for
an edit it has nothing to show for, and code that does need the sent message (the file id
of an uploaded picture) asks for it with `read_back()`.

On the way out, python-telegram-bot passes every parameter through a generic converter
(defaults, datetimes, files, nested objects) and a keyboard through the generic
`to_dict`; for a reply with a keyboard that costs several times the JSON encoding itself.
A request whose parameters are plain values and inline keyboards of plain buttons (every
member-facing reply) is encoded here directly, to the same JSON; anything else (files,
dates, `Defaults` that insert values, a rate limiter) takes python-telegram-bot's path.
On the way in, the keyboard under a tapped message is dropped before parsing (nothing
reads it; see `drop_tapped_keyboards`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, Final

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.ext import ExtBot
from telegram.request import RequestData

from bot.ptb_private import (
    DEFAULT_NONE,
    MESSAGE_METHODS,
    DefaultValue,
    JSONDict,
    ODVInput,
    RequestParameter,
    inline_button_fields,
)

_READ_BACK: ContextVar[bool] = ContextVar("read_back_sent_messages", default=True)


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


# A button this module encodes itself has text and at most a callback or a link; any other
# field set (a web app, a login url, a style, ...) goes through python-telegram-bot.
_PLAIN_BUTTON_FIELDS: Final = ("text", "callback_data", "url")
_OTHER_BUTTON_FIELDS: Final = tuple(
    f for f in inline_button_fields() if f not in _PLAIN_BUTTON_FIELDS
)
_PLAIN_VALUES: Final = (str, int, float)


def _plain_button(button: InlineKeyboardButton) -> dict[str, object] | None:
    """The button's JSON when it is text plus a callback or a link, else None."""
    if button.api_kwargs or not isinstance(button.callback_data, str | None):
        return None
    for field in _OTHER_BUTTON_FIELDS:
        if getattr(button, field) is not None:
            return None
    out: dict[str, object] = {"text": button.text}
    if button.url is not None:
        out["url"] = button.url
    if button.callback_data is not None:
        out["callback_data"] = button.callback_data
    return out


def _plain_keyboard(markup: InlineKeyboardMarkup) -> dict[str, object] | None:
    """The keyboard's JSON when every button is plain, else None."""
    if markup.api_kwargs:
        return None
    rows: list[list[dict[str, object]]] = []
    for row in markup.inline_keyboard:
        encoded: list[dict[str, object]] = []
        for button in row:
            plain = _plain_button(button)
            if plain is None:
                return None
            encoded.append(plain)
        rows.append(encoded)
    return {"inline_keyboard": rows}


def plain_parameters(data: JSONDict) -> list[RequestParameter] | None:
    """The request's parameters when all are plain values or plain keyboards, else None."""
    # Unset values (None, or a default whose value is None) are left out, as PTB does; a
    # `DefaultValue` is its own value (the caller makes sure no `Defaults` apply).
    parameters: list[RequestParameter] = []
    for name, value in data.items():
        if isinstance(value, DefaultValue):
            value = value.value
        if value is None:
            continue
        if isinstance(value, _PLAIN_VALUES):  # bool is an int
            parameters.append(RequestParameter(name, value, None))
        elif isinstance(value, InlineKeyboardMarkup):
            keyboard = _plain_keyboard(value)
            if keyboard is None:
                return None
            parameters.append(RequestParameter(name, keyboard, None))
        else:
            return None
    return parameters


class TapAnswer:
    """A tap whose webhook call may carry the tap's answer in its response (bot/web.py)."""

    __slots__ = ("future", "journaled")

    def __init__(self) -> None:
        # The answer's parameters once handed over; None once it was posted instead.
        self.future: asyncio.Future[dict[str, object] | None]
        self.future = asyncio.get_running_loop().create_future()
        # Set once the update is journaled: from then on the call's 200 is due anyway, and an
        # answer riding on it reaches Telegram as soon as a request of its own would.
        self.journaled = False


class MemberBot(ExtBot[None]):
    """`ExtBot` that encodes plain replies itself and parses nothing nobody reads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Taps whose webhook call may carry their answer (bot/web.py), by callback query id.
        # (PTB freezes its objects after __init__; the dict itself stays mutable.)
        object.__setattr__(self, "answers_in_response", {})

    answers_in_response: dict[str, TapAnswer]

    def _answer_in_response(self, data: JSONDict) -> bool:
        """Hand a tap's answer to the webhook call waiting for it: True when handed over,
        False when it is to be posted (no call waits, or not yet journaled)."""
        waiting = self.answers_in_response.pop(str(data.get("callback_query_id")), None)
        if waiting is None or waiting.future.done():  # not waited for, or no longer
            return False
        parameters = plain_parameters(data) if waiting.journaled else None
        if parameters is None:
            # The call cannot answer Telegram before its update is journaled: a request
            # now stops the member's spinner sooner than the response could.
            waiting.future.set_result(None)
            return False
        waiting.future.set_result({p.name: p.value for p in parameters})
        return True

    # Overrides the private Bot._post (bot/ptb_private.py: BOT_POST, BOT_POST_PARAMETERS).
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
        """Post; while an update is served a sent or edited message comes back as True."""
        parameters = None
        if (
            data is not None
            and not api_kwargs
            and endpoint != "getUpdates"
            and self.rate_limiter is None
            and (self.defaults is None or not self.defaults.api_defaults)
        ):
            if (
                endpoint == "answerCallbackQuery"
                and self.answers_in_response
                and self._answer_in_response(data)
            ):
                return True  # what the Bot API answers for a tap answered
            parameters = plain_parameters(data)
        if parameters is None:
            result = await super()._post(
                endpoint,
                data,
                read_timeout=read_timeout,
                write_timeout=write_timeout,
                connect_timeout=connect_timeout,
                pool_timeout=pool_timeout,
                api_kwargs=api_kwargs,
            )
        else:
            result = await self.request.post(
                url=f"{self.base_url}/{endpoint}",
                request_data=RequestData(parameters),
                read_timeout=read_timeout,
                write_timeout=write_timeout,
                connect_timeout=connect_timeout,
                pool_timeout=pool_timeout,
            )
        if endpoint in MESSAGE_METHODS and isinstance(result, dict) and not _READ_BACK.get():
            return True
        if endpoint == "getUpdates" and isinstance(result, list):
            drop_tapped_keyboards(result)
        return result


def drop_tapped_keyboards(updates: list[JSONDict]) -> None:
    """Remove the keyboard of the message each tapped button sits on, before it is parsed."""
    # A tap carries the whole message it was made on, keyboard included: a mall shelf is a
    # dozen buttons to build objects for, on every tap. Handlers act on the button's data and
    # edit or answer; none reads the old keyboard back (code that would must not rely on
    # `callback_query.message.reply_markup`, which is always None here).
    for update in updates:
        query = update.get("callback_query")
        if isinstance(query, dict):
            message = query.get("message")
            if isinstance(message, dict):
                message.pop("reply_markup", None)
