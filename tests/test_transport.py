"""The aiohttp Bot API transport: PTB's timeouts and error mapping, kept; no error names the
token; a request that never left says so."""

from __future__ import annotations

import asyncio
import socket
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from telegram import Bot
from telegram.error import BadRequest, NetworkError, TimedOut

from bot.sandbox.server import BotApiEmulator
from bot.transport import AiohttpRequest, ConnectTimedOut, NotSent, redact

TOKEN = "123456:TRANSPORT"


async def test_api_errors_map_to_ptb_exceptions() -> None:
    async with BotApiEmulator(token=TOKEN) as emu:
        emu.add_user(1, "a")
        async with Bot(TOKEN, base_url=emu.base_url, request=AiohttpRequest()) as bot:
            me = await bot.get_me()
            assert me.is_bot
            with pytest.raises(BadRequest, match="too long"):
                await bot.send_message(1, "x" * 5000)


async def test_a_slow_server_is_a_timeout() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    request = AiohttpRequest(read_timeout=0.2, write_timeout=0.1)
    await request.initialize()
    try:
        with pytest.raises(TimedOut):
            await request.post(f"http://127.0.0.1:{port}/bot{TOKEN}/getMe")
    finally:
        await request.shutdown()
        await runner.cleanup()


async def test_nobody_listening_is_a_network_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the request: nothing listens
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(NetworkError):
            await request.post(f"http://127.0.0.1:{port}/bot{TOKEN}/getMe")
    finally:
        await request.shutdown()


async def test_an_uninitialized_transport_says_so() -> None:
    with pytest.raises(RuntimeError, match="not initialized"):
        await AiohttpRequest().do_request("http://127.0.0.1:1/x", "POST")


@asynccontextmanager
async def redirect_loop() -> AsyncIterator[int]:
    """A server on 127.0.0.1 that answers every request with a redirect to itself; its port."""

    async def again(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": str(request.rel_url)})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", again)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


SECRET = TOKEN.partition(":")[2]


async def test_a_redirect_loop_is_a_network_error_that_does_not_name_the_token() -> None:
    request = AiohttpRequest()
    await request.initialize()
    try:
        async with redirect_loop() as port:
            with pytest.raises(NetworkError) as caught:
                await request.post(f"http://127.0.0.1:{port}/bot{TOKEN}/sendMessage")
    finally:
        await request.shutdown()
    text = str(caught.value)
    assert "TooManyRedirects" in text and "/bot<token>/sendMessage" in text
    assert SECRET not in text
    # Nothing chained carries aiohttp's own text (the URL) into a traceback.
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert SECRET not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize(
    "url",
    [
        f"http://127.0.0.1:99999/bot{TOKEN}/getMe",  # a port out of range: InvalidUrlClientError
        f"http:///bot{TOKEN}/getMe",
        f"bot{TOKEN}/getMe",  # no scheme: NonHttpUrlClientError
    ],
)
async def test_a_bad_url_is_an_error_that_does_not_name_the_token(url: str) -> None:
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(NotSent) as caught:
            await request.post(url)
    finally:
        await request.shutdown()
    assert "<token>" in str(caught.value) and SECRET not in str(caught.value)


async def test_no_connection_is_not_sent_and_a_read_timeout_may_have_arrived() -> None:
    # A push whose request never left may go again; one that timed out reading may not.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(NotSent):
            await request.post(f"http://127.0.0.1:{port}/bot{TOKEN}/getMe")
    finally:
        await request.shutdown()
    assert issubclass(ConnectTimedOut, TimedOut) and issubclass(ConnectTimedOut, NotSent)
    assert not issubclass(TimedOut, NotSent)


def test_redact_removes_the_token_in_every_form() -> None:
    url = f"https://api.telegram.org/bot{TOKEN}/sendMessage"
    encoded = TOKEN.replace(":", "%3A")
    text = f"a {url} b {encoded} c {TOKEN} d /file/bot{TOKEN}/photos/1.jpg"
    redacted = redact(text, url)
    assert SECRET not in redacted and TOKEN not in redacted
    assert "/bot<token>/sendMessage" in redacted
    # Without the URL, any Bot API URL it names still loses its token.
    assert redact(f"see /bot{TOKEN}/getMe", "") == "see /bot<token>/getMe"
