"""The one wiring file: builds the Application, opens resources in post_init, closes them after."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
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
from bot.leader import election_for
from bot.logs import member_salt
from bot.metrics import Metrics
from bot.persistence import StorePersistence, conversation_timeouts
from bot.programme.calendar import local_today
from bot.programme.mall import catalog_entries
from bot.ptb_private import reread_conversations
from bot.sending import MemberBot
from bot.transport import AiohttpRequest
from bot.updates import JournalingRequest, PerMemberUpdateProcessor, UpdateJournal
from bot.web import ALLOWED_UPDATES, WebhookReceiver, WebServer, serves_http
from handlers.common import BotApp, BotContext, Services, texts_for
from storage.errors import NotLeader
from storage.fence import fenced
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

        return cast(Store, PgStore(storage.url, clock=clock, writers=storage.writers))
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
    # Who leads: on PostgreSQL, one of several processes (bot/leader.py).
    app.bot_data.election = election_for(store, config.storage.url)
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
    if services.schedule_jobs:
        # Every process puts the rules of the new day in force for what it serves.
        _schedule_rules_job(app)
    # The leader's duties start now if nobody else leads (always, on SQLite); otherwise this
    # process serves the tills while it waits in line (`running`, bot/leader.py).
    leads = await services.election.try_lead(services.clock())
    if leads:
        await _lead(app)
    # Order matters: tills and Telegram are served once the store is open and the rules in
    # force, and the webhook once the replays are queued.
    if serves_http(services.config):
        await _serve_http(app)
    if leads and services.webhook is not None:
        await _set_webhook(app)
    settle_collector()


async def _lead(app: BotApp) -> None:
    """Take up the leader's duties: the command menu, the jobs, the outbox, the replays."""
    services = app.bot_data
    epoch = services.election.epoch
    # The leader-only writes check this epoch (storage/leadership.py).
    services.metrics.leader_epoch.set(epoch or 0)
    services.sender.epoch = epoch
    services.sender.on_not_leader = services.election.lose
    await _publish_commands(app)
    if services.schedule_jobs:
        _schedule_jobs(app)
    services.sender.start()
    # Order matters: this runs before polling starts (and before the webhook is set), so the
    # updates a crash left unhandled are queued ahead of anything fetched now
    # (bot/updates.py).
    if (journal := _journal(app)) is not None:
        journal.epoch = epoch
        journal.on_not_leader = services.election.lose
        await journal.resume(app.bot, app.update_queue)
        if uses_inbox(services.config):
            # Then whatever any process journals, in update id order (bot/updates.py).
            election = services.election
            journal.read_inbox(app.bot, app.update_queue, lambda: election.leads)


def uses_inbox(config: Config) -> bool:
    """Whether updates reach the leader through the journal (webhook mode on PostgreSQL,
    where any of several processes may receive them) rather than straight from the
    receiving process."""
    return config.telegram.mode == "webhook" and config.storage.postgres


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
    """Start the one HTTP server with what this configuration serves (in webhook mode, the
    route Telegram delivers to; the leader tells Telegram so, `_set_webhook`)."""
    services = app.bot_data
    config = services.config
    server = WebServer(config)
    if config.api.enabled:
        from bot.api import TillApi

        services.till_api = TillApi(services, services.i18n, on_booked=services.sender.wake)
        services.till_api.mount(server)
    if config.telegram.mode == "webhook":
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
            inbox=uses_inbox(config),
            leads=lambda: services.election.leads,
        )
        if services.webhook.inbox and (journal := _journal(app)) is not None:
            # A standby's deliveries: the leader hears of them and looks in the inbox at once.
            election = services.election
            journal.notify_inbox = lambda: not election.leads
        server.add_routes(services.webhook.routes())
    from bot.health import routes as health_routes

    server.add_routes(health_routes(services))
    await server.start()
    services.web = server


async def _set_webhook(app: BotApp) -> None:
    """The leader tells Telegram where to deliver, and asks now and then that it still does."""
    services = app.bot_data
    config, webhook = services.config, services.webhook
    assert webhook is not None
    # A quiet shop gets no webhook calls for hours: asking Telegram about the webhook now
    # and then keeps /healthz's "Telegram is heard" true while Telegram answers.
    if app.job_queue is not None:
        app.job_queue.run_repeating(
            _webhook_heartbeat, interval=WEBHOOK_HEARTBEAT_SECONDS, name="webhook-heartbeat"
        )
    # Pending updates are kept (never dropped): each is a member's tap or a purchase.
    await app.bot.set_webhook(
        url=config.telegram.webhook_url,
        secret_token=webhook.secret,
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


def _schedule_rules_job(app: BotApp) -> None:
    """Announced changes come into force at local midnight, before anything else that day (in
    every process: each serves by the rules in force)."""
    queue = app.job_queue
    assert queue is not None  # python-telegram-bot[job-queue] is a dependency
    tz = app.bot_data.config.program.tz
    queue.run_daily(_rules_job, time(0, 0, tzinfo=tz), name="rules-in-force")


JobCallback = Callable[[BotContext], Coroutine[Any, Any, None]]


def _once_per_tick(callback: JobCallback, *, per_leadership: bool = False) -> JobCallback:
    """The job run only by the leader that claims its tick first: the local day it runs for
    (a catch-up: the leadership it runs for), claimed with the epoch in one transaction."""

    async def run(context: BotContext) -> None:
        services = context.bot_data
        election = services.election
        if not election.leads or election.epoch is None:
            return
        now = services.clock()
        tick = f"epoch {election.epoch}" if per_leadership else local_today(now, services.config)
        job = (context.job.name if context.job is not None else None) or callback.__name__
        try:
            claimed = await election.leadership.claim_tick(job, str(tick), election.epoch, now)
        except NotLeader as exc:
            election.lose(str(exc))
            return
        if not claimed:
            log.info("job %s for %s: run already (by epoch or process before)", job, tick)
            return
        log.info("job %s for %s: started (epoch %d)", job, tick, election.epoch)
        # A leader that loses its place stops the job at once rather than finish it beside its
        # successor, and until it knows, each of the job's writes checks the epoch (fenced):
        # every job may run again, and the next leader's catch-up runs whatever was not
        # recorded done.
        with fenced(election.epoch):  # the job's task, and any it starts, write fenced
            work = asyncio.ensure_future(callback(context))
        lost = asyncio.ensure_future(election.lost.wait())
        try:
            await asyncio.wait((work, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if work.cancelled() and election.lost.is_set():
            log.warning("job %s for %s: stopped, the leadership lost", job, tick)
            return
        if not work.cancelled() and isinstance(refused := work.exception(), NotLeader):
            log.warning("job %s for %s: stopped, another process leads (%s)", job, tick, refused)
            election.lose(str(refused))
            return
        work.result()  # the job's own failure, for the job queue to report

    run.__name__ = callback.__name__
    return run


def _schedule_jobs(app: BotApp) -> None:
    """Daily jobs at their local times, and a catch-up of anything missed, right after start:
    the leader's, each tick claimed once (`_once_per_tick`)."""
    push = app.bot_data.config.push
    tz = app.bot_data.config.program.tz
    queue = app.job_queue
    assert queue is not None  # python-telegram-bot[job-queue] is a dependency
    daily = (
        (_sweep_job, push.sweep_at, "expiry-sweep"),
        (_daily_job, push.daily_at, "daily-pushes"),
        (_voucher_job, push.daily_at, "voucher-validity"),
        # Every day: only the first run of a month reports (bot.jobs.Scheduler.green_report).
        (_green_job, push.daily_at, "green-report"),
        # Every day too: only owners still without last month's report get it.
        (_owner_report_job, push.daily_at, "owner-report"),
    )
    for callback, at, name in daily:
        queue.run_daily(_once_per_tick(callback), at.replace(tzinfo=tz), name=name)
    queue.run_once(_once_per_tick(_catch_up_job, per_leadership=True), 1, name="catch-up")


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
    which handles what is queued); the leader reading the inbox takes what it holds."""
    if (webhook := getattr(app.bot_data, "webhook", None)) is not None:
        await webhook.close()
        if webhook.inbox and (journal := _journal(app)) is not None:
            await journal.stop_inbox(last_look=webhook.leads())


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
    # Last: the leadership is given up once the leader's last writes are done.
    await app.bot_data.election.close()


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


async def _take_over(app: BotApp, polls: bool, **polling: Any) -> None:
    """Wait in line for the leadership, then take up the leader's duties and start fetching
    updates (polling, or setting the webhook)."""
    services = app.bot_data
    election = services.election
    await election.lead(services.clock())
    try:
        # Order matters: the conversations the leader carried on since this process read them
        # at start are read again before any update (a replay first) is handled here.
        if app.persistence is not None:
            await reread_conversations(app)
        await _lead(app)
        assert app.updater is not None
        if polls:
            await app.updater.start_polling(**polling)
        else:
            await _set_webhook(app)
    except Exception as exc:  # half a leader is none: stop, for the next in line to lead
        log.exception("could not take up the leader's duties")
        election.lose(f"taking over failed ({exc})")


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
        polls = getattr(app.bot_data, "webhook", None) is None
        election = getattr(app.bot_data, "election", None)
        taking_over: asyncio.Task[None] | None = None
        if election is None or election.leads:
            if polls:
                await app.updater.start_polling(timeout=poll_timeout, **polling)
        else:  # a standby: serves the tills, and takes over when the leader goes
            taking_over = asyncio.create_task(
                _take_over(app, polls, timeout=poll_timeout, **polling), name="take-over"
            )
        await app.start()
        try:
            yield app
        finally:
            if taking_over is not None:
                taking_over.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await taking_over
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
