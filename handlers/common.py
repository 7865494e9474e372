"""What every handler shares: typed services on the context, language choice, the edge mappers."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from telegram import Bot, InlineKeyboardMarkup, Message, Update, User
from telegram.error import BadRequest
from telegram.ext import Application, CallbackContext, ExtBot, JobQueue

from bot.clock import Clock, system_clock
from bot.config import Config
from bot.i18n import I18n, resolve_language
from bot.jobs import Scheduler, Sender
from bot.metrics import Metrics
from bot.programme.context import Programme
from bot.programme.game_rules import RandomSource, SystemRandomSource
from bot.programme.mall import catalog_entries
from bot.programme.policy import keep_promise
from bot.ratelimit import FloodGuard
from storage.api_keys import ApiKeys
from storage.badges import Badges
from storage.dependants import Dependants
from storage.events import Events
from storage.family import Families
from storage.games import Games
from storage.green import Green
from storage.ledger import Ledger
from storage.mall import Mall
from storage.members import Member, Members, Profile
from storage.pushes import Pushes
from storage.referrals import Referrals
from storage.store import Store
from storage.submissions import Submissions
from storage.surveys import Surveys
from storage.tasks import Tasks
from storage.tiers import Tiers
from storage.transfers import Transfers

if TYPE_CHECKING:
    from bot.api import TillApi
    from bot.leader import Election
    from bot.web import WebhookReceiver, WebServer


class Services(Programme):
    """The application's services, reached by handlers as `context.bot_data`."""

    # python-telegram-bot creates this with no arguments (ContextTypes); `wire` then builds
    # everything in it, once, in build_application, before the application starts.
    i18n: I18n
    # The configuration file as loaded; `config` is it completed by the announced changes.
    file_config: Config
    scheduler: Scheduler
    sender: Sender
    flood: FloodGuard
    # The Prometheus metrics (bot/metrics.py), made with the bot that feeds them.
    metrics: Metrics
    # Who leads among the bot's processes (bot/leader.py); build_application sets it.
    election: Election

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
        # The signed till API, while served ([api] enabled: started in post_init).
        self.till_api: TillApi | None = None
        # The one HTTP server and its webhook route, while served (started in post_init).
        self.web: WebServer | None = None
        self.webhook: WebhookReceiver | None = None
        # Telegram's webhook secret_token (webhook mode): from the environment unless given.
        self.webhook_secret: str | None = None

    def wire(
        self,
        *,
        config: Config,
        i18n: I18n,
        store: Store,
        bot: Bot,
        clock: Clock,
        schedule_jobs: bool,
        metrics: Metrics,
    ) -> None:
        """Build every service over `store` (which opens later, in post_init)."""
        self.clock = clock
        self.metrics = metrics
        self.i18n = i18n
        self.schedule_jobs = schedule_jobs
        self.store = store
        self.members = Members(store)
        self.ledger = Ledger(store)
        self.mall = Mall(store)
        self.games = Games(store)
        self.surveys = Surveys(store)
        self.families = Families(store)
        self.transfers = Transfers(store)
        self.tasks = Tasks(store)
        self.badges = Badges(store)
        self.tiers = Tiers(store)
        self.submissions = Submissions(store)
        self.green = Green(store)
        self.dependants = Dependants(store)
        self.events = Events(store)
        self.referrals = Referrals(store)
        self.pushes = Pushes(store)
        self.api_keys = ApiKeys(store)
        # Tests move the clock by replacing `self.clock`: the jobs read it through here.
        self.scheduler = Scheduler(
            config,
            self.pushes,
            self.ledger,
            self.mall,
            clock=lambda: self.clock(),
            dependants=self.dependants,
            green=self.green,
            bot=bot,
            i18n=i18n,
        )
        self.sender = Sender(bot, self.pushes, config, i18n, clock=lambda: self.clock())
        self.flood = FloodGuard(config.limits.flood_updates, config.limits.flood_seconds)
        self.config = config

    @property
    def config(self) -> Config:
        """The programme's rules in force."""
        return self._config

    @config.setter
    def config(self, config: Config) -> None:
        # A configuration set here is the file's (a reload): the announced changes complete it
        # at the next `refresh_policies`.
        self.file_config = config
        self._use(config)

    def _use(self, config: Config) -> None:
        # Everyone who holds the rules gets the new ones at once: no one keeps an old copy.
        self._config = config
        self.scheduler.config = config
        self.sender.config = config
        self.flood.limit = config.limits.flood_updates
        self.flood.seconds = config.limits.flood_seconds

    async def refresh_policies(self) -> None:
        """Put the rules in force today to use: the file completed by the changes announced
        (by the CLI) and in force by the local day, checked against the terms members were
        promised, which they then become; raises TermsRefused (bot/programme/policy.py)."""
        file, now = self.file_config, self.clock()
        config = await self.store.write(
            lambda conn: keep_promise(conn, file, now, "the configuration")
        )
        prices_changed = config.mall != self._config.mall
        self._use(config)
        if prices_changed:
            # A price change come into force: the redeeming transaction checks the store's.
            await self.mall.sync_catalog(catalog_entries(config), now)


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
