"""The private python-telegram-bot APIs in bot/ptb_private.py are still there and still behave
as pointsbot relies on: a library upgrade that moves one fails here, naming it."""

from __future__ import annotations

import importlib
import inspect
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import telegram
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import (
    ApplicationBuilder,
    ConversationHandler,
    Defaults,
    DictPersistence,
    ExtBot,
    MessageHandler,
    PersistenceInput,
    filters,
)
from telegram.request import BaseRequest, HTTPXRequest

from bot import ptb_private
from bot.sending import MemberBot

# (module, name) of every private import in bot/ptb_private.py.
PRIVATE_IMPORTS = [
    ("telegram._utils.defaultvalue", "DEFAULT_NONE"),
    ("telegram._utils.defaultvalue", "DefaultValue"),
    ("telegram._utils.types", "JSONDict"),
    ("telegram._utils.types", "ODVInput"),
    ("telegram.ext._utils.types", "CDCData"),
    ("telegram.ext._utils.types", "ConversationKey"),
    ("telegram.ext._utils.trackingdict", "TrackingDict"),
    ("telegram.request._requestparameter", "RequestParameter"),
]
UPGRADED = f"python-telegram-bot {telegram.__version__}"


@pytest.mark.parametrize(("module", "name"), PRIVATE_IMPORTS)
def test_each_private_name_is_still_where_we_import_it_from(module: str, name: str) -> None:
    try:
        found = importlib.import_module(module)
    except ImportError:
        pytest.fail(f"{UPGRADED} has no module {module} (bot/ptb_private.py imports {name})")
    assert hasattr(found, name), f"{UPGRADED}: {module} has no {name} any more"
    assert getattr(ptb_private, name) is getattr(found, name)


def test_bot_post_still_takes_the_parameters_memberbot_is_called_with() -> None:
    method = getattr(ExtBot, ptb_private.BOT_POST, None)
    assert method is not None, f"{UPGRADED}: ExtBot.{ptb_private.BOT_POST} is gone"
    theirs = list(inspect.signature(method).parameters)[1:]
    assert theirs == list(ptb_private.BOT_POST_PARAMETERS), (
        f"{UPGRADED}: ExtBot.{ptb_private.BOT_POST} now takes {theirs}; MemberBot overrides it "
        f"with {list(ptb_private.BOT_POST_PARAMETERS)}"
    )
    ours = list(inspect.signature(MemberBot._post).parameters)[1:]
    assert ours == theirs


class _SentBot(ExtBot[None]):
    """A bot whose every Bot API call answers `_result`, with no network (PTB freezes a bot's
    public attributes, hence the underscores)."""

    def __init__(self, result: object) -> None:
        super().__init__("123:abc")
        self._result = result
        self._endpoints: list[str] = []

    async def _post(self, endpoint: str, data: Any = None, **kwargs: Any) -> Any:
        self._endpoints.append(endpoint)
        return self._result


def _message_json() -> dict[str, object]:
    return {
        "message_id": 7,
        "date": 1_700_000_000,
        "chat": {"id": 42, "type": "private"},
        "text": "hi",
    }


async def _call_each_message_method(bot: _SentBot) -> list[object]:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("ok", callback_data="x")]])
    return [
        await bot.send_message(42, "hi", reply_markup=keyboard),
        await bot.send_photo(42, "AgACAgIAAxkBAAIB"),
        await bot.send_document(42, "BQACAgIAAxkBAAIC"),
        await bot.edit_message_text("hi", chat_id=42, message_id=7),
        await bot.edit_message_caption(chat_id=42, message_id=7, caption="c"),
        await bot.edit_message_reply_markup(chat_id=42, message_id=7, reply_markup=keyboard),
    ]


async def test_a_true_answer_to_a_message_method_is_returned_unparsed() -> None:
    bot = _SentBot(True)
    results = await _call_each_message_method(bot)
    assert set(bot._endpoints) == ptb_private.MESSAGE_METHODS
    for endpoint, result in zip(bot._endpoints, results, strict=True):
        assert result is True, f"{UPGRADED}: {endpoint} no longer passes True through"
    # ...and a message answer is still parsed: the work MemberBot saves is real.
    parsed = await _call_each_message_method(_SentBot(_message_json()))
    assert all(isinstance(r, Message) for r in parsed)


def test_the_default_sentinel_is_a_default_value_of_none() -> None:
    assert isinstance(ptb_private.DEFAULT_NONE, ptb_private.DefaultValue)
    assert ptb_private.DEFAULT_NONE.value is None
    # The transport compares timeouts against BaseRequest's public alias of the sentinel.
    assert BaseRequest.DEFAULT_NONE is ptb_private.DEFAULT_NONE


@pytest.mark.parametrize(
    "value",
    ["小明", 42, 1.5, True, {"inline_keyboard": [[{"text": "ok", "callback_data": "x"}]]}],
)
def test_a_plain_request_parameter_encodes_as_ptb_would(value: object) -> None:
    ours = ptb_private.RequestParameter("p", value, None)
    theirs = ptb_private.RequestParameter.from_input("p", value)
    assert (ours.name, ours.json_value, ours.input_files) == (
        theirs.name,
        theirs.json_value,
        theirs.input_files,
    ), f"{UPGRADED}: RequestParameter encodes {value!r} differently"


def test_inline_button_fields_list_every_field_a_button_takes() -> None:
    fields = set(ptb_private.inline_button_fields())
    takes = set(inspect.signature(InlineKeyboardButton).parameters) - {"api_kwargs"}
    assert takes <= fields, f"{UPGRADED}: InlineKeyboardButton fields {takes - fields} unlisted"


def test_the_bot_sends_through_its_request_and_defaults_without_api_values() -> None:
    request, updates = HTTPXRequest(), HTTPXRequest()
    bot = ExtBot("123:abc", request=request, get_updates_request=updates)
    assert bot.request is request  # MemberBot posts every reply through it
    # With only a time zone set, no value is inserted into requests: MemberBot may encode.
    assert Defaults(tzinfo=ZoneInfo("Asia/Shanghai")).api_defaults == {}


def test_persistence_shapes_are_what_our_store_writes() -> None:
    assert ptb_private.ConversationKey == tuple[int | str, ...]
    assert ptb_private.CDCData == tuple[list[tuple[str, float, dict[str, Any]]], dict[str, str]]


_USER = {"id": 42, "is_bot": False, "first_name": "a"}


async def _noop(update: Update, context: object) -> None:
    """A callback never called: only which handler would take an update matters here."""


def test_a_conversation_ended_from_outside_no_longer_takes_text() -> None:
    theirs = list(inspect.signature(ConversationHandler._update_state).parameters)[1:]
    assert theirs[:2] == ["new_state", "key"], (
        f"{UPGRADED}: ConversationHandler._update_state now takes {theirs}; "
        "bot/ptb_private.py end_conversation must follow"
    )
    waiting: ConversationHandler[Any] = ConversationHandler(
        entry_points=[], states={0: [MessageHandler(filters.TEXT, _noop)]}, fallbacks=[]
    )
    text = Update.de_json({"update_id": 1, "message": {**_message_json(), "from": _USER}}, None)
    waiting._update_state(0, (42, 42))  # waiting for text, as after an entry returned 0
    assert waiting.check_update(text) is not None
    ptb_private.end_conversation(waiting, (42, 42))
    assert waiting.check_update(text) is None, f"{UPGRADED}: the conversation did not end"
    ptb_private.end_conversation(waiting, (42, 42))  # ending one that is over is harmless


async def test_conversations_read_again_replace_those_read_at_start() -> None:
    persistence: DictPersistence = DictPersistence(
        store_data=PersistenceInput(
            bot_data=False, chat_data=False, user_data=False, callback_data=False
        )
    )
    app = ApplicationBuilder().token("1:a").persistence(persistence).updater(None).build()
    talk: ConversationHandler[Any] = ConversationHandler(
        entry_points=[],
        states={0: [MessageHandler(filters.TEXT, _noop)]},
        fallbacks=[],
        name="talk",
        persistent=True,
    )
    app.add_handler(talk)
    await persistence.update_conversation("talk", (42, 42), 0)
    for theirs in (app._add_ch_to_persistence, talk._initialize_persistence):
        assert callable(theirs), f"{UPGRADED}: {theirs} is gone; bot/ptb_private.py must follow"
    await app._add_ch_to_persistence(talk)  # what initialize() does
    from_42 = Update.de_json({"update_id": 1, "message": {**_message_json(), "from": _USER}}, None)
    seven = {**_USER, "id": 7}
    chat_7 = {**_message_json(), "from": seven, "chat": {"id": 7, "type": "private"}}
    from_7 = Update.de_json({"update_id": 2, "message": chat_7}, None)
    assert talk.check_update(from_42) is not None and talk.check_update(from_7) is None
    # Meanwhile another process ended 42's conversation and began 7's.
    await persistence.update_conversation("talk", (42, 42), None)
    await persistence.update_conversation("talk", (7, 7), 0)
    await ptb_private.reread_conversations(app)
    assert talk.check_update(from_42) is None, f"{UPGRADED}: a stale state was kept"
    assert talk.check_update(from_7) is not None, f"{UPGRADED}: the stored state was not read"
    # The application writes from the new dict, and reading wrote nothing back.
    assert app._conversation_handler_conversations["talk"] is talk._conversations
    assert talk._conversations.pop_accessed_write_items() == []
