"""A Bot API transport on aiohttp: several times the throughput of the default httpx one."""

from __future__ import annotations

import json
import re
from typing import Final
from urllib.parse import quote

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from bot.metrics import Metrics
from bot.ptb_private import DefaultValue, ODVInput

_USER_AGENT: Final = BaseRequest.USER_AGENT
_JSON_HEADERS: Final = {"User-Agent": _USER_AGENT, "Content-Type": "application/json"}
_FORM_HEADERS: Final = {"User-Agent": _USER_AGENT}  # aiohttp writes the multipart boundary
# The token sits in every Bot API URL as the path segment after "bot" (/bot<token>/method,
# /file/bot<token>/path); an aiohttp error names the URL (a redirect loop, a bad URL).
_TOKEN_SEGMENT: Final = re.compile(r"(/bot)[^/\s'\"]+")
REDACTED: Final = "<token>"


class NotSent(NetworkError):
    """The request never reached the server (no connection): repeating it cannot make a
    message arrive twice."""


class ConnectTimedOut(NotSent, TimedOut):
    """No connection within the connect (and pool) timeout: a TimedOut that sent nothing."""


def redact(text: str, url: str) -> str:
    """`text` without the bot token of `url` (as given or percent-encoded) or of any Bot API
    URL it names."""
    for segment in url.split("/"):
        if segment.startswith("bot") and len(segment) > 3:
            secret = segment[3:]
            for form in {secret, quote(secret, safe=""), quote(secret)}:
                text = text.replace(form, REDACTED)
    return _TOKEN_SEGMENT.sub(rf"\1{REDACTED}", text)


class AiohttpRequest(BaseRequest):
    """`BaseRequest` over one pooled aiohttp session, with PTB's timeouts and error mapping."""

    __slots__ = (
        "_connect",
        "_media_write",
        "_pool",
        "_pool_size",
        "_read",
        "_session",
        "_write",
        "metrics",
    )

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read = read_timeout
        self._write = write_timeout
        self._connect = connect_timeout
        self._pool = pool_timeout
        self._media_write = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        # Told of every failed call and every answered getUpdates (bot/app.py sets it).
        self.metrics: Metrics | None = None

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout (PTB adds it to long-poll timeouts)."""
        return self._read

    async def initialize(self) -> None:
        """Open the session (inside the running loop)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300)
            # No environment proxies, no cookies: a bot talks to exactly one API server.
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
            )

    async def shutdown(self) -> None:
        """Close the session; safe to call twice."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one request; map timeouts to TimedOut and transport errors to NetworkError
        (NotSent when no connection was made), their text without the token."""
        metrics = self.metrics
        timeouts = (read_timeout, write_timeout, connect_timeout, pool_timeout)
        if metrics is None:
            return await self._send(url, method, request_data, *timeouts)
        # Every Bot API call passes here: the one place to count what failed, and how.
        endpoint = "file" if "/file/bot" in url else url.rsplit("/", 1)[-1]
        try:
            code, payload = await self._send(url, method, request_data, *timeouts)
        except TimedOut:
            metrics.bot_api_error(endpoint, "timeout")
            raise
        except NetworkError:
            metrics.bot_api_error(endpoint, "network")
            raise
        if code == 200:
            if endpoint == "getUpdates":
                metrics.bot_api_contact()
        else:
            metrics.bot_api_error(endpoint, code)
        return code, payload

    async def _send(
        self,
        url: str,
        method: str,
        request_data: RequestData | None,
        read_timeout: ODVInput[float],
        write_timeout: ODVInput[float],
        connect_timeout: ODVInput[float],
        pool_timeout: ODVInput[float],
    ) -> tuple[int, bytes]:
        """`do_request` without the counting."""
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = (
            request_data.multipart_data if request_data and request_data.contains_files else None
        )
        read = self._read if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = self._connect if isinstance(connect_timeout, DefaultValue) else connect_timeout
        pool = self._pool if isinstance(pool_timeout, DefaultValue) else pool_timeout
        write = write_timeout
        if isinstance(write, DefaultValue):
            write = self._media_write if files else self._write
        # aiohttp has no separate write or pool timeout: the pool wait counts toward connecting,
        # and writing a body counts toward the read timeout of the response that follows it.
        sock_read = None if read is None else read + (write or 0)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None and pool is None else (connect or 0) + (pool or 0),
            sock_connect=connect,
            sock_read=sock_read,
        )
        body: aiohttp.FormData | bytes | None = None
        headers = _JSON_HEADERS
        if files:
            headers = _FORM_HEADERS
            form = aiohttp.FormData(quote_fields=False)
            for name, value in (request_data.json_parameters if request_data else {}).items():
                form.add_field(name, value)
            for name, part in files.items():
                filename, content, mimetype = part if len(part) == 3 else (*part, None)
                form.add_field(name, content, filename=filename, content_type=mimetype)
            body = form
        elif request_data is not None:
            # One JSON document, encoded once: the Bot API takes JSON bodies, and aiohttp's
            # form encoding of a dict costs more than the rest of the request.
            body = json.dumps(
                request_data.parameters, ensure_ascii=False, separators=(",", ":")
            ).encode("utf-8")
        try:
            async with self._session.request(
                method, url, data=body, timeout=timeout, headers=headers
            ) as response:
                return response.status, await response.read()
        # `from None`: aiohttp's exception names the URL, token included, and a traceback
        # that chains it would carry the token into any log; its class and redacted text
        # are in the message.
        except aiohttp.ConnectionTimeoutError:
            raise ConnectTimedOut("Timed out connecting") from None
        except TimeoutError:
            raise TimedOut from None
        except (
            aiohttp.ClientConnectorError,
            aiohttp.InvalidURL,
            aiohttp.NonHttpUrlClientError,
        ) as exc:
            raise NotSent(_describe(exc, url)) from None
        except aiohttp.ClientError as exc:
            raise NetworkError(_describe(exc, url)) from None


def _describe(exc: aiohttp.ClientError, url: str) -> str:
    """The error's class and text, without the token."""
    return redact(f"aiohttp.{exc.__class__.__name__}: {exc}", url)
