"""The one HTTP server (aiohttp): the till API, the Telegram webhook, health and metrics.

Started in the application's post_init when anything is to be served ([api] enabled,
[telegram] mode = "webhook" or [server] enabled), on the application's event loop; stopped in
post_shutdown, once the updates in flight are handled.

The webhook is the getUpdates of webhook mode, with the same guarantees (bot/updates.py): an
update is journaled before Telegram gets its 200 (a bot killed after that replays it at the
next start), a copy Telegram delivers again is dropped, and the update joins the same queue,
so each member's updates are handled one at a time, in order.
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
from bot.sending import drop_tapped_keyboards

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
    """The webhook route: checks Telegram's secret, journals each update, queues it."""

    def __init__(
        self,
        *,
        path: str,
        secret: str,
        bot: Bot,
        queue: asyncio.Queue[object],
        journal: UpdateJournal | None,
        on_contact: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self._secret = secret.encode()
        self.bot = bot
        self.queue = queue
        self.journal = journal
        # Told of every call Telegram made with the right secret (/healthz: Telegram is heard).
        self.on_contact = on_contact
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
        journal = self.journal
        if journal is None:
            await self.queue.put(update)
            return web.Response(text="")
        drop_tapped_keyboards([data])  # never read (bot/sending.py): not worth a write
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
            return web.Response(status=500, text="not journaled")
        if fresh and not handling:
            await self.queue.put(update)
        # (Not fresh: a copy of one journaled before, acknowledged and handled once.)
        return web.Response(text="")
