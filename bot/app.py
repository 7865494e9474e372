"""The one wiring file: builds the Application, opens resources in post_init, closes them after."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, time, tzinfo
from typing import Any, Final, cast

from telegram import BotCommand, Update
from telegram.ext import ApplicationBuilder, ContextTypes, Defaults, ExtBot, JobQueue

import handlers
from bot.clock import Clock, system_clock
from bot.config import (
    LANGUAGES,
    WEBHOOK_SECRET_ENV,
    Config,
    ConfigError,
    StorageConfig,
    webhook_secret_from_env,
)
from bot.i18n import I18n
from bot.logs import member_salt
from bot.metrics import Metrics
from bot.persistence import StorePersistence, conversation_timeouts
from bot.programme.mall import catalog_entries
from bot.sending import MemberBot
from bot.transport import AiohttpRequest
from bot.updates import JournalingRequest, PerMemberUpdateProcessor, UpdateJournal
from bot.web import ALLOWED_UPDATES, WebhookReceiver, WebServer, serves_http
from handlers.common import BotApp, BotContext, Services, texts_for
from storage.journal import Journal
from storage.store import Store

log = logging.getLogger(__name__)


def quiet_http_logs() -> None:
    """PTB puts the token in request URLs: keep the HTTP client loggers at WARNING."""
    for name in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


class TokenRedactor(logging.Filter):
    """Replace the bot token in every record a handler emits, exception text included."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record without the token; never drop it."""
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, "<token>"), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and self.token in record.exc_text:
            record.exc_text = record.exc_text.replace(self.token, "<token>")
        return True


def redact_token_in_logs(token: str) -> None:
    """PTB logs its API URLs (token included) at DEBUG: scrub the token on every root handler."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, TokenRedactor) and f.token == token for f in handler.filters):
            handler.addFilter(TokenRedactor(token))


def member_bot(
    token: str,
    base_url: str | None,
    tz: tzinfo,
    journal: UpdateJournal | None = None,
    metrics: Metrics | None = None,
) -> ExtBot[None]:
    """The bot object pointsbot serves with: MemberBot over the aiohttp transport (its
    getUpdates journaling each batch first when given a journal, bot/updates.py; both
    transports counting failures and contacts in `metrics` when given)."""
    request = AiohttpRequest()
    updates_request = (
        AiohttpRequest(connection_pool_size=2)
        if journal is None
        else JournalingRequest(journal, connection_pool_size=2)
    )
    request.metrics = updates_request.metrics = metrics
    defaults = Defaults(tzinfo=tz)
    if base_url:  # the sandbox or a self-hosted Bot API server
        file_url = base_url.replace("/bot", "/file/bot", 1)
        return MemberBot(token, base_url, file_url, request, updates_request, defaults=defaults)
    # PTB's default, the public Bot API; handlers see a plain ExtBot either way.
    return MemberBot(token, request=request, get_updates_request=updates_request, defaults=defaults)


def make_store(storage: StorageConfig, *, clock: Callable[[], datetime] | None = None) -> Store:
    """The store [storage] names: the SQLite file, or PostgreSQL when `url` is set (the same
    calls either way; storage/pg_store.py)."""
    if storage.postgres:
        from storage.pg_store import PgStore

        return cast(Store, PgStore(storage.url, clock=clock))
    return Store(storage.path, synchronous=storage.synchronous, clock=clock)


def build_application(
    config: Config,
    token: str,
    *,
    i18n: I18n | None = None,
    base_url: str | None = None,
    schedule_jobs: bool = True,
    update_processor: PerMemberUpdateProcessor | None = None,
    clock: Clock = system_clock,
) -> BotApp:
    """Build the Application for this configuration (nothing is opened before it starts)."""
    quiet_http_logs()
    redact_token_in_logs(token)
    context_types = ContextTypes(context=BotContext, bot_data=Services)
    # Order matters: PTB restores conversations in initialize(), before post_init, so the
    # persistence opens this (shared, single-writer) store on first use (bot/persistence.py).
    # One clock for everything: tests move it by replacing `services.clock`, so the store
    # and the persistence read it through the services at each call.
    store = make_store(config.storage, clock=lambda: app.bot_data.clock())
    persistence = StorePersistence(store, clock=lambda: app.bot_data.clock())
    # Every fetched update is kept until handled: journaled by the getUpdates transport,
    # marked done by the update processor, replayed in post_init after a crash.
    journal = UpdateJournal(Journal(store), clock=lambda: app.bot_data.clock())
    processor = update_processor or PerMemberUpdateProcessor()
    processor.journal = journal
    processor.member_salt = member_salt(token)
    # One set of metrics per application, fed by the transports and the update processor.
    metrics = Metrics()
    processor.metrics = metrics
    bot = member_bot(
        token, base_url or config.telegram.base_url, config.program.tz, journal, metrics
    )
    builder = (
        ApplicationBuilder()
        .bot(bot)
        .context_types(context_types)
        .job_queue(JobQueue[BotContext]())
        .persistence(persistence)
        # Members are served concurrently, each one's updates in order (bot/updates.py).
        .concurrent_updates(processor)
        .post_init(_post_init)
        .post_stop(_post_stop)
        .post_shutdown(_post_shutdown)
    )
    app: BotApp = builder.build()
    app.bot_data.wire(
        config=config,
        i18n=i18n or I18n.load(config.program.default_language),
        store=store,
        bot=app.bot,
        clock=clock,
        schedule_jobs=schedule_jobs,
        metrics=metrics,
    )
    handlers.register(app)
    persistence.timeouts = conversation_timeouts(app.handlers)
    app.add_error_handler(_on_error)
    return app


async def _post_init(app: BotApp) -> None:
    # Order matters: the store must be open before the first update is processed.
    services = app.bot_data
    if not services.store.is_open:  # the persistence opened it, unless nothing is persistent
        await services.store.open()
    # Order matters: the points-value guarantee is checked before anything is served (it
    # raises TermsRefused), and announced changes in force complete the rules the others read.
    await services.refresh_policies()
    # The catalog in the configuration is the source of names and prices; stock and sales
    # live in the database and survive this sync (storage.mall.sync_catalog).
    await services.mall.sync_catalog(catalog_entries(services.config), services.clock())
    await _publish_commands(app)
    if services.schedule_jobs:
        _schedule_jobs(app)
    services.sender.start()
    # Order matters: post_init runs before polling starts (and before the webhook is served),
    # so the updates a crash left unhandled are queued ahead of anything fetched now
    # (bot/updates.py).
    if (journal := _journal(app)) is not None:
        await journal.resume(app.bot, app.update_queue)
    # Order matters: tills and Telegram are served once the store is open and the rules in
    # force, and the webhook once the replays are queued.
    if serves_http(services.config):
        await _serve_http(app)
    settle_collector()


# How often webhook mode asks Telegram about its webhook (well inside [health]'s window).
WEBHOOK_HEARTBEAT_SECONDS: Final = 60


async def _webhook_heartbeat(context: BotContext) -> None:
    """Ask Telegram about the webhook; an answer counts as Telegram heard (/healthz), and a
    webhook someone else removed or changed is logged."""
    info = await context.bot.get_webhook_info()
    context.bot_data.metrics.bot_api_contact()
    if info.url != context.bot_data.config.telegram.webhook_url:
        log.warning("Telegram's webhook is %r, not this bot's [telegram] webhook_url", info.url)


async def _serve_http(app: BotApp) -> None:
    """Start the one HTTP server with what this configuration serves; in webhook mode, then
    tell Telegram where to deliver."""
    services = app.bot_data
    config = services.config
    server = WebServer(config)
    if config.api.enabled:
        from bot.api import TillApi

        services.till_api = TillApi(services, services.i18n, on_booked=services.sender.wake)
        services.till_api.mount(server)
    webhook = config.telegram.mode == "webhook"
    if webhook:
        secret = services.webhook_secret or webhook_secret_from_env()
        if secret is None:
            raise ConfigError(f'[telegram] mode = "webhook" needs {WEBHOOK_SECRET_ENV} set')
        services.webhook = WebhookReceiver(
            path=config.telegram.webhook_path,
            secret=secret,
            bot=app.bot,
            queue=app.update_queue,
            journal=_journal(app),
            on_contact=services.metrics.bot_api_contact,
            answer_wait=config.telegram.answer_in_response_ms / 1000,
            on_answer=services.metrics.tap_answer,
        )
        server.add_routes(services.webhook.routes())
        # A quiet shop gets no webhook calls for hours: asking Telegram about the webhook now
        # and then keeps /healthz's "Telegram is heard" true while Telegram answers.
        if app.job_queue is not None:
            app.job_queue.run_repeating(
                _webhook_heartbeat, interval=WEBHOOK_HEARTBEAT_SECONDS, name="webhook-heartbeat"
            )
    from bot.health import routes as health_routes

    server.add_routes(health_routes(services))
    await server.start()
    services.web = server
    if webhook:
        # Pending updates are kept (never dropped): each is a member's tap or a purchase.
        await app.bot.set_webhook(
            url=config.telegram.webhook_url,
            secret_token=secret,
            allowed_updates=list(ALLOWED_UPDATES),
            drop_pending_updates=False,
        )
        log.info("webhook set; Telegram delivers to %s", config.telegram.webhook_url)


def _journal(app: BotApp) -> UpdateJournal | None:
    """The update journal build_application gave the update processor."""
    processor = app.update_processor
    return processor.journal if isinstance(processor, PerMemberUpdateProcessor) else None


# Young objects are collected after this many allocations (Python's default is 700).
GC_YOUNG_THRESHOLD = 10_000


def settle_collector() -> None:
    """Set the garbage collector up for serving, once everything long-lived is built."""
    # Everything built at start (catalogs, configuration, handlers) lives as long as the bot:
    # keep it out of the collector's full passes, which otherwise pause every member at once.
    gc.collect()
    gc.freeze()
    # With hundreds of updates in flight, each holding its parsed objects, Python's default
    # ran a young collection every ~7 updates and a full one every ~800: 7% of the bot's
    # time in the e2e bench, 3% with this threshold.
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _schedule_jobs(app: BotApp) -> None:
    """Daily jobs at their local times, and a catch-up of anything missed, right after start."""
    push = app.bot_data.config.push
    tz = app.bot_data.config.program.tz
    queue = app.job_queue
    assert queue is not None  # python-telegram-bot[job-queue] is a dependency
    # Announced changes come into force at local midnight, before anything else that day.
    queue.run_daily(_rules_job, time(0, 0, tzinfo=tz), name="rules-in-force")
    queue.run_daily(_sweep_job, push.sweep_at.replace(tzinfo=tz), name="expiry-sweep")
    queue.run_daily(_daily_job, push.daily_at.replace(tzinfo=tz), name="daily-pushes")
    queue.run_daily(_voucher_job, push.daily_at.replace(tzinfo=tz), name="voucher-validity")
    # Every day: only the first run of a month reports (bot.jobs.Scheduler.green_report).
    queue.run_daily(_green_job, push.daily_at.replace(tzinfo=tz), name="green-report")
    # Every day too: only owners still without last month's report get it.
    queue.run_daily(_owner_report_job, push.daily_at.replace(tzinfo=tz), name="owner-report")
    queue.run_once(_catch_up_job, 1, name="catch-up")


async def _rules_job(context: BotContext) -> None:
    services = context.bot_data
    try:
        await services.refresh_policies()
    except ConfigError:
        # The file is read once, at start, so this cannot newly fail; if it did, keep serving
        # yesterday's rules rather than none, and say so loudly.
        log.exception("the rules in force could not be updated")


async def _sweep_job(context: BotContext) -> None:
    services = context.bot_data
    await services.scheduler.sweep(services.clock())


async def _daily_job(context: BotContext) -> None:
    services = context.bot_data
    await services.refresh_policies()
    await services.scheduler.daily(services.clock())
    services.sender.wake()


async def _voucher_job(context: BotContext) -> None:
    services = context.bot_data
    await services.scheduler.vouchers(services.clock())
    services.sender.wake()


async def _green_job(context: BotContext) -> None:
    services = context.bot_data
    if await services.scheduler.green_report(services.clock()) is not None:
        services.sender.wake()


async def _owner_report_job(context: BotContext) -> None:
    services = context.bot_data
    await services.scheduler.owner_reports(services.clock())


async def _catch_up_job(context: BotContext) -> None:
    services = context.bot_data
    await services.refresh_policies()
    if done := await services.scheduler.catch_up(services.clock()):
        log.info("caught up: %s", ", ".join(done))
        services.sender.wake()


async def stop_receiving(app: BotApp) -> None:
    """Webhook mode: refuse new deliveries and queue the ones received (before app.stop(),
    which handles what is queued)."""
    if (webhook := getattr(app.bot_data, "webhook", None)) is not None:
        await webhook.close()


async def _post_stop(app: BotApp) -> None:
    # Order matters: the sender stops while the bot can still record what it sent.
    await app.bot_data.sender.stop()


async def _post_shutdown(app: BotApp) -> None:
    # Order matters: the server stops (tills' bookings finished) before the store closes.
    services = app.bot_data
    if (server := services.web) is not None:
        services.web = services.till_api = services.webhook = None
        await server.stop()
    # Order matters: the last done marks are written while the store is open.
    if (journal := _journal(app)) is not None:
        await journal.stop(flush=app.bot_data.store.is_open)
    await app.bot_data.store.close()


async def _publish_commands(app: BotApp) -> None:
    """Set the command menu in every language (zh-CN also as the default for everyone else)."""
    i18n = app.bot_data.i18n
    for language in LANGUAGES:
        commands = [BotCommand(name, i18n.t(language, key)) for name, key in handlers.COMMANDS]
        code = None if language == app.bot_data.config.program.default_language else language
        await app.bot.set_my_commands(commands, language_code=code)


async def _on_error(update: object, context: BotContext) -> None:
    """Log every failure once, with the update id; tell the member something went wrong."""
    update_id = update.update_id if isinstance(update, Update) else None
    log.error("update %s caused an error", update_id, exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat is not None:
        try:
            _ = await texts_for(update, context)
            await context.bot.send_message(update.effective_chat.id, _("error.internal"))
        except Exception:  # the apology must never raise a second error
            log.exception("could not tell the member about the error in update %s", update_id)


@asynccontextmanager
async def running(app: BotApp, *, poll_timeout: int = 10, **polling: Any) -> AsyncIterator[BotApp]:
    """Run the application inside an event loop we own (`pointsbot run` in webhook mode,
    tests, demo, bench): long polling, or in webhook mode serving the webhook."""
    await app.initialize()
    try:
        if app.post_init is not None:
            await app.post_init(app)
        assert app.updater is not None
        # Webhook mode: post_init started the webhook route (a bench's plain Application,
        # with no Services, polls).
        if getattr(app.bot_data, "webhook", None) is None:
            await app.updater.start_polling(timeout=poll_timeout, **polling)
        await app.start()
        try:
            yield app
        finally:
            if app.updater.running:
                await app.updater.stop()
            await stop_receiving(app)
            if app.running:
                await app.stop()
                if app.post_stop is not None:
                    await app.post_stop(app)
    finally:
        await app.shutdown()
        if app.post_shutdown is not None:
            await app.post_shutdown(app)
