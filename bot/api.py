"""The signed till API over HTTP (aiohttp): parse a request, check its signature, call one
programme function (bot/programme/till_api.py), answer in JSON.

Served by `pointsbot run` when [api] enabled, under /v1 on the one HTTP server (bot/web.py,
[server] host and port). Every refusal is `{"error": {"code", "message"}}` (with
`field` when one field is at fault) and writes nothing; /v1/openapi.json describes it all.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import asdict
from datetime import datetime
from typing import Any, Final

from aiohttp import web

from bot.api_openapi import OPENAPI
from bot.config import Config
from bot.i18n import I18n
from bot.logs import handling
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.purchases import TILL_RECEIPT
from bot.programme.till_api import (
    ApiRefused,
    Authenticated,
    Booking,
    SignedRequest,
    authenticate,
    book_purchase,
    book_return,
    claim_nonce,
    till_member,
)
from bot.ratelimit import FloodGuard
from bot.web import WebServer

log = logging.getLogger(__name__)

KEY_HEADER: Final = "X-Pointsbot-Key"
TIMESTAMP_HEADER: Final = "X-Pointsbot-Timestamp"
NONCE_HEADER: Final = "X-Pointsbot-Nonce"
SIGNATURE_HEADER: Final = "X-Pointsbot-Signature"
# Set on a 200 that repeats the first answer to a purchase or return.
REPLAYED_HEADER: Final = "Idempotent-Replayed"
# Every path of the API starts with this (its version).
PREFIX: Final = "/v1"
# The key the request being served was signed with (its log line names it).
_signed_with: ContextVar[str | None] = ContextVar("till_key", default=None)

# The field a programme refusal is about, by its message id (the till highlights it).
_RULE_FIELDS: Final = {
    "returns.error.unknown_receipt": "receipt",
    "returns.error.fully_returned": "receipt",
    "returns.error.return_id_invalid": "return_id",
    "returns.error.over_left": "amount",
    "admin.receipt_invalid": "receipt",
    "admin.code_not_number": "member_code",
    "admin.code_invalid": "member_code",
    "admin.code_check_digit": "member_code",
    "admin.member_not_found": "member_code",
    "error.amount_not_number": "amount",
    "error.amount_too_precise": "amount",
    "error.amount_not_positive": "amount",
    "error.amount_too_large": "amount",
    "error.purchase_under_one_yuan": "amount",
    "error.purchase_earns_nothing": "amount",
    "error.unknown_category": "category",
    "error.purchase_in_future": "purchased_at",
    "error.purchase_expired": "purchased_at",
}
# Programme refusals that mean "no such thing" rather than "a bad value".
_NOT_FOUND: Final = frozenset({"admin.member_not_found", "returns.error.unknown_receipt"})


class Refusal(Exception):
    """An HTTP refusal with its JSON error (status, code, message, the field at fault)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The refusal as a JSON error response."""
        error: dict[str, str] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return _json({"error": error}, self.status, self.headers)


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False),
        status=status,
        content_type="application/json",
        headers=headers,
    )


# What each field of a request body may be: (type, required).
_Fields = dict[str, tuple[type, bool]]
PURCHASE_FIELDS: Final[_Fields] = {
    "receipt": (str, True),
    "member_code": (str, True),
    "amount": (str, True),
    "category": (str, False),
    "purchased_at": (str, False),
}
RETURN_FIELDS: Final[_Fields] = {
    "receipt": (str, True),
    "return_id": (str, True),
    "amount": (str, False),
}


def _fields(body: bytes, spec: _Fields) -> dict[str, Any]:
    """The JSON object of a request body, each field checked against `spec`; raises Refusal
    (400 malformed JSON, 422 naming the missing, unknown or mistyped field)."""
    try:
        data = json.loads(body)
    except ValueError:  # bad UTF-8 too (UnicodeDecodeError is a ValueError)
        raise Refusal(400, "malformed_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Refusal(400, "malformed_json", "the body is a JSON object")
    for name in data:
        if name not in spec:
            raise Refusal(422, "unknown_field", f"no field {name!r} here", field=name)
    for name, (kind, required) in spec.items():
        value = data.get(name)
        if value is None:
            if required:
                raise Refusal(422, "missing_field", f"{name} is required", field=name)
            continue
        if not isinstance(value, kind):
            raise Refusal(422, "invalid_field", f"{name} is a JSON string", field=name)
    if "return_id" in spec and not TILL_RECEIPT.match(data["return_id"]):
        # Checked here: the programme's refusal of an id names the receipt.
        raise Refusal(
            422,
            "invalid_field",
            "return_id is 1 to 64 of A-Z, a-z, 0-9, _ and -",
            field="return_id",
        )
    return data


def _instant(text: str | None, field: str) -> datetime | None:
    """An ISO 8601 instant with its UTC offset; raises Refusal (422) for anything else."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise Refusal(
            422,
            "invalid_field",
            f"{field} is an ISO 8601 time with its offset, like 2026-11-25T12:00:00+08:00",
            field=field,
        )
    return moment


class TillApi:
    """The till API's web application over a programme, and the server that serves it."""

    def __init__(
        self, programme: Programme, i18n: I18n, *, on_booked: Callable[[], None] | None = None
    ) -> None:
        self.programme = programme
        self.i18n = i18n
        # Called after a booking queued a member's notice (the bot wakes its sender).
        self.on_booked = on_booked
        api = programme.config.api
        self.max_body = api.max_body_bytes
        self.limits = FloodGuard(api.requests_per_minute, 60)
        self.server: WebServer | None = None
        # Its own application, mounted on the one server: its error middleware answers for
        # its own paths only (their 404s and 405s included), in its JSON.
        self.app = web.Application(middlewares=[self._errors])
        for method, path, handler in self.routes():
            self.app.router.add_route(method, path.removeprefix(PREFIX), handler)

    def routes(self) -> list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]]]:
        """Every route served: (method, path, handler); /v1/openapi.json describes the same."""
        return [
            ("POST", "/v1/purchases", self._purchases),
            ("POST", "/v1/purchase-returns", self._purchase_returns),
            ("GET", "/v1/members/{code}", self._member),
            ("GET", "/v1/openapi.json", self._openapi),
        ]

    def mount(self, server: WebServer) -> None:
        """Be served under /v1 by the one HTTP server (before it starts)."""
        server.mount(PREFIX, self.app)
        self.server = server

    @property
    def url(self) -> str:
        """The base URL tills call."""
        assert self.server is not None, "mounted on the server first"
        return self.server.url

    @property
    def config(self) -> Config:
        """The programme's rules in force."""
        return self.programme.config

    # ---------------------------------------------------------------- every request

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every refusal as a JSON error; every failure logged once; every request logged with
        its answer, and in JSON logs the operation it booked."""
        # One connection serves request after request in one task: both are reset after each.
        key_token = _signed_with.set(None)
        try:
            with handling():  # names the operation booked on this request's lines, only theirs
                response = await self._answer(request, handler)
                key = _signed_with.get() or "-"
                log.info(
                    "till API %s %s (key %s): %d",
                    request.method,
                    request.path,
                    key,
                    response.status,
                )
                return response
        finally:
            _signed_with.reset(key_token)

    async def _answer(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refusal as refusal:
            return refusal.response()
        except web.HTTPException as exc:  # no such route, method not allowed
            code = exc.reason.lower().replace(" ", "_")
            return Refusal(exc.status, code, exc.reason).response()
        except Exception:
            log.exception("till API request %s %s failed", request.method, request.path)
            # A retry is safe: a receipt or return id never books twice.
            return Refusal(
                500, "internal", "something went wrong; retry with the same receipt or return id"
            ).response()

    async def _signed(self, request: web.Request) -> tuple[Authenticated, bytes]:
        """The request's key, checked, and its body; raises Refusal (401, 413, 429)."""
        if request.content_length is not None and request.content_length > self.max_body:
            raise self._too_large()
        # Read up to the API's own limit (the server's is the webhook's, larger): a body with
        # no Content-Length is refused once it grows past it.
        body = await request.content.read(self.max_body + 1)
        while len(body) <= self.max_body and not request.content.at_eof():
            body += await request.content.read(self.max_body + 1 - len(body))
        if len(body) > self.max_body:
            raise self._too_large()
        headers = request.headers
        signed = SignedRequest(
            key_id=headers.get(KEY_HEADER),
            timestamp=headers.get(TIMESTAMP_HEADER),
            nonce=headers.get(NONCE_HEADER),
            signature=headers.get(SIGNATURE_HEADER),
            method=request.method,
            path=request.rel_url.raw_path,
            body=body,
        )
        try:
            authenticated = await authenticate(self.programme, signed)
            _signed_with.set(authenticated.key.key_id)  # for the request's log line
            # Counted once the signature checked out: nobody else can spend a store's quota.
            now = self.programme.now().timestamp()
            allowed, _ = self.limits.check(authenticated.key.id, now)
            if not allowed:
                wait = math.ceil(self.limits.retry_after(authenticated.key.id, now)) or 1
                raise Refusal(
                    429,
                    "rate_limited",
                    f"more than {self.limits.limit} requests a minute with this key",
                    headers={"Retry-After": str(wait)},
                )
            await claim_nonce(self.programme, authenticated)
        except ApiRefused as refused:
            raise Refusal(401, refused.code, refused.message) from None
        return authenticated, body

    def _too_large(self) -> Refusal:
        return Refusal(413, "body_too_large", f"the body is longer than {self.max_body} bytes")

    def _rule(self, error: RuleError) -> Refusal:
        """A programme refusal in the programme's language, its message id as the code."""
        language = self.config.program.default_language
        message = self.i18n.t(language, error.key, **error.params)
        status = 404 if error.key in _NOT_FOUND else 422
        return Refusal(status, error.key, message, field=_RULE_FIELDS.get(error.key))

    def _tier(self, tier_id: str | None) -> dict[str, Any] | None:
        """A tier as the till shows it: its id and names."""
        tier = next((t for t in self.config.tiers.levels if t.id == tier_id), None)
        if tier is None:
            return None if tier_id is None else {"id": tier_id, "name": None}
        return {"id": tier.id, "name": {"zh-CN": tier.name.zh_CN, "en": tier.name.en}}

    def _booked(self, booking: Booking, answer: dict[str, Any], what: str) -> web.Response:
        """201 for a booking made now, 200 (marked replayed) for the first answer again;
        raises Refusal (409) for another request under the same `what` (receipt, return)."""
        if booking.status == "conflict":
            raise Refusal(
                409,
                f"{what}_conflict",
                f"this {what} id was booked before with other details; nothing was booked",
                field="receipt" if what == "receipt" else "return_id",
            )
        if booking.status == "created":
            if self.on_booked is not None:
                self.on_booked()  # the member's notice was queued with the booking
            return _json(answer, 201)
        return _json(answer, 200, {REPLAYED_HEADER: "true"})

    # ---------------------------------------------------------------- endpoints

    async def _purchases(self, request: web.Request) -> web.Response:
        signed, body = await self._signed(request)
        fields = _fields(body, PURCHASE_FIELDS)
        purchased_at = _instant(fields.get("purchased_at"), "purchased_at")
        try:
            booking = await book_purchase(
                self.programme,
                signed,
                receipt=fields["receipt"],
                member_code=fields["member_code"],
                amount=fields["amount"],
                category=fields.get("category"),
                purchased_at=purchased_at,
            )
        except RuleError as error:
            raise self._rule(error) from None
        answer: dict[str, Any] = {}
        if booking.purchase is not None:
            answer = asdict(booking.purchase)
            answer["tier"] = self._tier(booking.purchase.tier)
        return self._booked(booking, answer, "receipt")

    async def _purchase_returns(self, request: web.Request) -> web.Response:
        signed, body = await self._signed(request)
        fields = _fields(body, RETURN_FIELDS)
        try:
            booking = await book_return(
                self.programme,
                signed,
                receipt=fields["receipt"],
                return_id=fields["return_id"],
                amount=fields.get("amount"),
            )
        except RuleError as error:
            raise self._rule(error) from None
        answer = {} if booking.purchase_return is None else asdict(booking.purchase_return)
        return self._booked(booking, answer, "return")

    async def _member(self, request: web.Request) -> web.Response:
        await self._signed(request)
        try:
            member = await till_member(self.programme, request.match_info["code"])
        except RuleError as error:
            raise self._rule(error) from None
        answer = asdict(member)
        answer["tier"] = self._tier(member.tier)
        return _json(answer)

    async def _openapi(self, request: web.Request) -> web.Response:
        return _json(OPENAPI)
