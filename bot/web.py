"""The one HTTP server (aiohttp): the till API, the Telegram webhook, health and metrics.

Started in the application's post_init when anything is to be served ([api] enabled,
[telegram] mode = "webhook" or [server] enabled), on the application's event loop; stopped in
post_shutdown, once the updates in flight are handled.

The webhook is the getUpdates of webhook mode, with the same guarantees (bot/updates.py): an
update is journaled before Telegram gets its 200 (a bot killed after that replays it at the
next start), a copy Telegram delivers again is dropped, and the update joins the same queue,
so each member's updates are handled one at a time, in order.

A tap's webhook call, once its update is journaled, waits a little ([telegram]
answer_in_response_ms) for the handler's answer to the tap and carries it back as the HTTP
response's one method call (the Bot API allows one): a request fewer. The handler's
`query.answer()` is then handed over by MemberBot (bot/sending.py) and returns True at once.
An answer given before the update is journaled is posted at once instead (the response
could not go sooner than the commit, and a request travels to Telegram as fast as a
response), and so is one given after the wait: carrying it never makes the member wait.
`make bench` (bench/webhook.py) measures it against polling and against a webhook that never
waits.

On PostgreSQL (`inbox`), where several processes may sit behind the webhook URL, a call only
journals its update and answers 200: the journal is the inbox, and the leader alone handles,
taking the updates from it in update id order (bot/updates.py), its own deliveries included
(it looks at once after each). A tap's answer rides in the response only when the process
that received the tap leads: a standby's response never waits, and the leader posts that
answer as a request.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from aiohttp import web
from telegram import Update

from bot.config import Config, ConfigError
from bot.sending import TapAnswer, drop_tapped_keyboards

if TYPE_CHECKING:
    from telegram import Bot

    from bot.updates import UpdateJournal

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler]

# The header Telegram sends the webhook's secret_token in (Bot API, setWebhook).
SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header's name
# The updates the bot asks for, polling or webhook (anything else is never handled).
ALLOWED_UPDATES: Final = ("message", "edited_message", "callback_query", "my_chat_member")
# Telegram's updates are a few KiB; a photo's is still small (files are fetched apart).
MAX_UPDATE_BYTES: Final = 1024 * 1024


def serves_http(config: Config) -> bool:
    """Whether this configuration has anything for the HTTP server to serve."""
    return config.api.enabled or config.telegram.mode == "webhook" or config.server.enabled


class WebServer:
    """One aiohttp application and its runner, on [server] host and port."""

    def __init__(self, config: Config) -> None:
        self.host, self.port = config.server.host, config.server.port
        self.app = web.Application(client_max_size=MAX_UPDATE_BYTES)
        self._runner: web.AppRunner | None = None

    def add_routes(self, routes: list[Route]) -> None:
        """Serve each (method, path, handler); before start only."""
        for method, path, handler in routes:
            self.app.router.add_route(method, path, handler)

    def mount(self, prefix: str, app: web.Application) -> None:
        """Serve a whole aiohttp application under `prefix` (its middlewares apply to its paths
        only, its own 404s and 405s included); before start only."""
        self.app.add_subapp(prefix, app)

    async def start(self) -> None:
        """Serve on [server] host and port (port 0: a free one) and log the address; raises
        ConfigError when that address cannot be listened on."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"[server] cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        log.info("serving HTTP on %s", self.url)

    async def stop(self) -> None:
        """Stop serving (requests in flight finish first, within the shutdown timeout)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            log.info("HTTP server stopped")

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{self.host}:{self.port}"


class WebhookReceiver:
    """The webhook route: checks Telegram's secret, journals each update, queues it (or, in
    `inbox` mode, leaves it to the leader's inbox reader)."""

    def __init__(
        self,
        *,
        path: str,
        secret: str,
        bot: Bot,
        queue: asyncio.Queue[object],
        journal: UpdateJournal | None,
        on_contact: Callable[[], None] | None = None,
        answer_wait: float = 0.0,
        on_answer: Callable[[str], None] | None = None,
        inbox: bool = False,
        leads: Callable[[], bool] | None = None,
    ) -> None:
        self.path = path
        self.secret = secret
        self._secret = secret.encode()
        self.bot = bot
        self.queue = queue
        self.journal = journal
        # Told of every call Telegram made with the right secret (/healthz: Telegram is heard).
        self.on_contact = on_contact
        # How long a tap's call waits for the tap's answer to carry it in the response.
        self.answer_wait = answer_wait
        # Told whether each waited-for tap's answer came in time ("in_response", "waited_out").
        self.on_answer = on_answer
        # Several processes (PostgreSQL): journal only; the leader takes it from the journal.
        self.inbox = inbox
        # Whether this process leads (handles updates); always, without an election.
        self.leads = leads or (lambda: True)
        self._closing = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def routes(self) -> list[Route]:
        """The one route Telegram calls."""
        return [("POST", self.path, self._receive)]

    async def close(self) -> None:
        """Refuse new deliveries (503: Telegram tries again later) and wait until every update
        already received is journaled and queued."""
        self._closing = True
        await self._idle.wait()

    async def _receive(self, request: web.Request) -> web.Response:
        if self._closing:
            return web.Response(status=503, text="shutting down")
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            return web.Response(status=401, text="no secret token")
        # Compared in constant time: a timing difference would let the secret be guessed.
        if not hmac.compare_digest(given.encode(), self._secret):
            log.warning("webhook call with a wrong secret token refused")
            return web.Response(status=403, text="wrong secret token")
        if self.on_contact is not None:
            self.on_contact()
        self._in_flight += 1
        self._idle.clear()
        try:
            return await self._accept(request)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _accept(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.read())
            if not isinstance(data, dict) or type(data.get("update_id")) is not int:
                raise ValueError("not an update")
            update = Update.de_json(data, self.bot)
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="update too large")
        except Exception:  # bad JSON, bad UTF-8, or nothing PTB can read as an update
            log.warning("webhook call with a malformed update refused")
            return web.Response(status=400, text="malformed update")
        started = asyncio.get_running_loop().time()
        waiting = self._tap_answer(update)
        try:
            status, queued = await self._queue(update, data)
            if status != 200 or not queued or waiting is None:
                text = "" if status == 200 else "not journaled"
                return web.Response(status=status, text=text)
            waiting.journaled = True
            answer = await self._answer(waiting, started)
        finally:
            if waiting is not None:
                self._forget(update, waiting)
        if answer is None:
            return web.Response(text="")
        # The Bot API takes one method call in the webhook's response (its result unseen).
        return web.json_response({"method": "answerCallbackQuery", **answer})

    async def _queue(self, update: Update, data: dict[str, object]) -> tuple[int, bool]:
        """Journal and queue the update: the HTTP status to answer Telegram with, and whether
        it was queued (a copy of one received before is not)."""
        journal = self.journal
        if journal is None:
            await self.queue.put(update)
            return 200, True
        drop_tapped_keyboards([data])  # never read (bot/sending.py): not worth a write
        if self.inbox:
            return await self._journal_only(journal, update, data)
        # Newer than anything journaled, so no copy: handled while it is journaled (as a polled
        # batch is; killed before the commit, it was never acknowledged and comes again).
        handling = journal.surely_new(data)
        if handling:
            await self.queue.put(update)
        # Durable before acknowledged: the 200 below tells Telegram to forget it.
        try:
            fresh = await journal.delivered(data)
        except Exception:  # never acknowledged: Telegram delivers it again
            log.exception("could not journal webhook update %s", update.update_id)
            return 500, handling
        if fresh and not handling:
            await self.queue.put(update)
        # (Not fresh: a copy of one journaled before, acknowledged and handled once.)
        return 200, handling or fresh

    async def _journal_only(
        self, journal: UpdateJournal, update: Update, data: dict[str, object]
    ) -> tuple[int, bool]:
        """Journal the update for the leader to handle: the status, and whether this process
        is to handle it (it leads, and it is no copy)."""
        try:
            fresh = await journal.delivered(data)
        except Exception:  # never acknowledged: Telegram delivers it again
            log.exception("could not journal webhook update %s", update.update_id)
            return 500, False
        leads = self.leads()
        if fresh and leads:
            journal.wake_inbox()  # with whatever the other processes journaled before it
        return 200, fresh and leads

    def _tap_answer(self, update: Update) -> TapAnswer | None:
        """For a tap, when answers may ride in responses: where its handler's answer is handed
        over (MemberBot does, instead of posting answerCallbackQuery, once it is journaled)."""
        query = update.callback_query
        answers = getattr(self.bot, "answers_in_response", None)
        if query is None or self.answer_wait <= 0 or answers is None:
            return None
        if self.inbox and not self.leads():  # the leader handles it, and posts its answer
            return None
        waiting = answers[query.id] = TapAnswer()
        return waiting

    def _forget(self, update: Update, waiting: TapAnswer) -> None:
        """Stop waiting: an answer not handed over by now is posted by its handler."""
        assert update.callback_query is not None
        answers: dict[str, TapAnswer] = getattr(self.bot, "answers_in_response", {})
        if answers.get(update.callback_query.id) is waiting:
            del answers[update.callback_query.id]
        waiting.future.cancel()  # a no-op once it has its answer

    async def _answer(self, waiting: TapAnswer, started: float) -> dict[str, object] | None:
        """The tap's answer when its handler gives one within the wait, after the update was
        journaled; else None (the handler posts it itself)."""
        remaining = self.answer_wait - (asyncio.get_running_loop().time() - started)
        try:
            answer = await asyncio.wait_for(waiting.future, max(remaining, 0.0))
        except TimeoutError:
            answer, outcome = None, "waited_out"
        else:
            outcome = "posted_first" if answer is None else "in_response"
        if self.on_answer is not None:
            self.on_answer(outcome)
        return answer
