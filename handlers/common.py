"""What every handler shares: typed services on the context, language choice, the edge mappers."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from telegram import InlineKeyboardMarkup, Message, Update, User
from telegram.error import BadRequest
from telegram.ext import Application, CallbackContext, ExtBot, JobQueue

from bot.clock import Clock, system_clock
from bot.i18n import I18n, resolve_language
from bot.jobs import Scheduler, Sender
from bot.programme.context import Programme
from bot.programme.game_rules import RandomSource, SystemRandomSource
from storage.members import Member, Profile

if TYPE_CHECKING:
    from handlers.flood import FloodGuard


class Services(Programme):
    """The application's services, reached by handlers as `context.bot_data` (set at build)."""

    i18n: I18n
    scheduler: Scheduler
    sender: Sender

    def __init__(self) -> None:
        # Members' /language choices, so most updates need no database read to pick a language.
        self.chosen_language: dict[int, str | None] = {}
        # Telegram's file id of each picture uploaded once (a wheel stop), by picture key.
        self.uploaded_photos: OrderedDict[tuple[object, ...], str] = OrderedDict()
        # Where game prizes are drawn from: the CSPRNG; only tests put a seeded source here.
        self.game_random: RandomSource = SystemRandomSource()
        # "Now" for jobs and rules that depend on the day; tests replace it.
        self.clock: Clock = system_clock
        # Tests drive the daily jobs themselves with a chosen "now".
        self.schedule_jobs = True
        self.flood: FloodGuard


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], Services]):
    """The callback context with typed services."""

    @property
    def services(self) -> Services:
        """The application's services."""
        return self.bot_data


BotApp = Application[
    ExtBot[None], BotContext, dict[Any, Any], dict[Any, Any], Services, JobQueue[BotContext]
]


def profile_from(user: User) -> Profile:
    """Convert a Telegram user into the store's plain profile."""
    return Profile(
        telegram_id=user.id,
        first_name=user.first_name,
        last_name=user.last_name,
        username=user.username,
        language_code=user.language_code,
    )


async def member_for(user: User, context: BotContext) -> Member:
    """The member behind a Telegram user, registered on first contact (any command works)."""
    members = context.services.members
    member = await members.by_telegram_id(user.id)
    if member is None:
        member, _ = await members.register(profile_from(user))
    return member


async def language_for(user: User | None, context: BotContext) -> str:
    """The language to answer this user in: /language choice, else Telegram's, else default."""
    services = context.services
    default = services.config.program.default_language
    if user is None:
        return default
    if user.id not in services.chosen_language:
        member = await services.members.by_telegram_id(user.id)
        services.chosen_language[user.id] = member.language if member else None
    return resolve_language(services.chosen_language[user.id], user.language_code, default)


async def texts_for(update: Update, context: BotContext) -> Texts:
    """A translator bound to the language of whoever sent this update."""
    language = await language_for(update.effective_user, context)
    return Texts(context.services.i18n, language)


class Texts:
    """Message lookup bound to one language."""

    def __init__(self, i18n: I18n, language: str) -> None:
        self.i18n = i18n
        self.language = language

    def __call__(self, key: str, /, **params: Any) -> str:
        """Return message `key` in this language."""
        return self.i18n.t(self.language, key, **params)


async def edit_in_place(
    update: Update, text: str, keyboard: InlineKeyboardMarkup | None = None
) -> None:
    """Show a view in place of the tapped message (or below it, when that is a photo); a
    repeated tap that would change nothing is not an error ("message is not modified")."""
    query = update.callback_query
    assert query is not None
    message = query.message
    if isinstance(message, Message) and message.text is None:
        # A button under a photo (a QR, a wheel): a photo's text cannot become the view.
        await message.reply_text(text, reply_markup=keyboard)
        return
    try:
        await query.edit_message_text(text, reply_markup=keyboard)
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise
