"""The signed till API: a real aiohttp server in the running bot, an aiohttp client as the
till. Signatures good and bad, skewed clocks, replays, revoked and unknown keys, idempotent
receipts under concurrency, oversized and malformed bodies, the rate limit, member look-ups,
the OpenAPI description, and the api-keys CLI."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib.util
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.api import TillApi
from bot.api_openapi import OPENAPI
from bot.cli import main
from bot.clock import FixedClock
from bot.config import Config, ConfigError, load_config
from bot.programme.till_api import draw_key, sign
from bot.web import WebServer
from storage.api_keys import ApiKey
from storage.members import Member
from tests.conftest import NOW, PinnedCliRunner, Sandbox, assert_audit_ok
from tests.postgres import ENGINES, opened_store

ROOT = Path(__file__).resolve().parent.parent


def _api_on(**settings: Any) -> Callable[[Config], Config]:
    def change(config: Config) -> Config:
        api = config.api.model_copy(update={"enabled": True, **settings})
        server = config.server.model_copy(update={"port": 0})
        return config.model_copy(update={"api": api, "server": server})

    return change


@pytest.fixture
def configure() -> list[Callable[[Config], Config]]:
    """The sample programme with the till API served on a free port."""
    return [_api_on()]


@pytest.fixture
async def sandbox(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    """The running bot serving the API; whatever a test did, the ledger still adds up."""
    yield sandbox
    await assert_audit_ok(sandbox)


class StoreTill:
    """A store's till: signs with its key and calls the running API."""

    def __init__(self, sandbox: Sandbox, session: aiohttp.ClientSession, key: ApiKey) -> None:
        self.sandbox = sandbox
        self.session = session
        self.key_id = key.key_id
        self.secret = key.secret
        self.nonces = 0

    @property
    def url(self) -> str:
        api = self.sandbox.services.till_api
        assert api is not None
        return api.url

    def headers(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        skew: int = 0,
        nonce: str | None = None,
        secret: str | None = None,
    ) -> dict[str, str]:
        """Signature headers on the bot's clock (moved by `skew` seconds)."""
        self.nonces += 1
        nonce = nonce or f"nonce-{self.nonces:04d}-{id(self)}"
        timestamp = str(int(self.sandbox.services.now().timestamp()) + skew)
        return {
            "X-Pointsbot-Key": self.key_id,
            "X-Pointsbot-Timestamp": timestamp,
            "X-Pointsbot-Nonce": nonce,
            "X-Pointsbot-Signature": sign(
                secret or self.secret, method, path, timestamp, nonce, body
            ),
            "Content-Type": "application/json",
        }

    async def call(
        self,
        method: str,
        path: str,
        payload: object = None,
        *,
        body: bytes | None = None,
        **signing: Any,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One signed request: (status, JSON answer, response headers)."""
        if body is None:
            body = b"" if payload is None else json.dumps(payload).encode()
        headers = self.headers(method, path, body, **signing)
        async with self.session.request(
            method, self.url + path, data=body, headers=headers
        ) as response:
            answer = await response.json(content_type=None)
            return response.status, answer, dict(response.headers)

    async def purchase(self, **fields: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        return await self.call("POST", "/v1/purchases", fields)


async def new_key(sandbox: Sandbox, store: str = "南京西路店") -> ApiKey:
    key_id, secret = draw_key()
    return await sandbox.services.api_keys.create(key_id, store, secret)


@pytest.fixture
async def till(sandbox: Sandbox) -> AsyncIterator[StoreTill]:
    key = await new_key(sandbox)
    async with aiohttp.ClientSession() as session:
        yield StoreTill(sandbox, session, key)


async def member(sandbox: Sandbox, user_id: int = 7001, name: str = "王小明") -> Member:
    await sandbox.member(user_id, first_name=name).send("/start")
    found = await sandbox.services.members.by_telegram_id(user_id)
    assert found is not None
    return found


async def counts(sandbox: Sandbox) -> dict[str, int]:
    """Rows of what a request may write: operations, nonces, kept answers."""

    def read(conn: sqlite3.Connection) -> dict[str, int]:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("operations", "api_nonces", "api_results")
        }

    return await sandbox.services.store.read(read)


# --------------------------------------------------------------------------- signatures


async def test_a_signed_purchase_is_booked_for_the_store(sandbox: Sandbox, till: StoreTill) -> None:
    buyer = await member(sandbox)
    status, answer, _ = await till.purchase(
        receipt="R-1001", member_code=buyer.member_code, amount="128.50", category="eco"
    )
    assert status == 201, answer
    available = (await sandbox.services.ledger.balance(buyer.id)).available
    assert answer["receipt"] == "R-1001"
    assert answer["member_code"] == buyer.member_code
    assert answer["points"] > 0
    assert answer["available"] == available == answer["points"]
    assert answer["tier"]["id"] == sandbox.config.tiers.levels[0].id
    assert answer["tier"]["name"]["zh-CN"] == sandbox.config.tiers.levels[0].name.zh_CN
    recent = await sandbox.services.ledger.recent_operations(
        buyer.id, kind="purchase", actor="api:南京西路店", since=NOW - timedelta(minutes=1)
    )
    assert [op.key for op in recent] == ["purchase:R-1001"]


async def test_the_member_is_told_of_a_purchase_booked_through_the_api(
    sandbox: Sandbox, till: StoreTill
) -> None:
    buyer = await member(sandbox)
    chat = sandbox.member(7001)
    told = len(chat.bot_messages)
    status, answer, _ = await till.purchase(
        receipt="R-1002", member_code=buyer.member_code, amount="66.00"
    )
    assert status == 201
    for _ in range(100):  # the sender was woken: the receipt leaves within moments
        if len(chat.bot_messages) > told:
            break
        await asyncio.sleep(0.05)
    receipt = chat.bot_messages[-1].text or ""
    assert str(answer["points"]) in receipt
    assert "66" in receipt


async def test_a_busy_port_is_a_clear_error(sandbox: Sandbox) -> None:
    served = sandbox.services.web
    assert served is not None
    second = WebServer(sandbox.services.config)
    TillApi(sandbox.services, sandbox.services.i18n).mount(second)
    second.port = served.port
    with pytest.raises(ConfigError, match=rf"\[server\] cannot listen on 127.0.0.1:{served.port}"):
        await second.start()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"secret": "not-the-secret"}, "bad_signature"),
        ({"skew": 301}, "stale_timestamp"),
        ({"skew": -301}, "stale_timestamp"),
    ],
    ids=["bad signature", "clock ahead", "clock behind"],
)
async def test_a_bad_signature_or_skewed_clock_is_refused_and_nothing_written(
    sandbox: Sandbox, till: StoreTill, change: dict[str, Any], code: str
) -> None:
    buyer = await member(sandbox)
    before = await counts(sandbox)
    status, answer, _ = await till.call(
        "POST",
        "/v1/purchases",
        {"receipt": "R-2001", "member_code": buyer.member_code, "amount": "50"},
        **change,
    )
    assert status == 401
    assert answer["error"]["code"] == code
    assert await counts(sandbox) == before


async def test_the_skew_window_follows_the_bots_clock(sandbox: Sandbox, till: StoreTill) -> None:
    buyer = await member(sandbox)
    # Signed 300 s ahead: just inside the window; 5 minutes later the till's clock is right.
    status, _, _ = await till.call(
        "GET", f"/v1/members/{buyer.member_code}", skew=300, nonce="edge-of-window"
    )
    assert status == 200
    sandbox.services.clock = FixedClock(NOW + timedelta(minutes=20))
    status, answer, _ = await till.call("GET", f"/v1/members/{buyer.member_code}", skew=-299)
    assert status == 200, answer


async def test_a_replayed_nonce_is_refused(sandbox: Sandbox, till: StoreTill) -> None:
    buyer = await member(sandbox)
    path = f"/v1/members/{buyer.member_code}"
    first = await till.call("GET", path, nonce="same-nonce-1")
    again = await till.call("GET", path, nonce="same-nonce-1")
    assert first[0] == 200
    assert again[0] == 401
    assert again[1]["error"]["code"] == "replayed_nonce"


async def test_nonces_outside_the_window_are_pruned(sandbox: Sandbox, till: StoreTill) -> None:
    buyer = await member(sandbox)
    path = f"/v1/members/{buyer.member_code}"
    for n in range(3):
        assert (await till.call("GET", path, nonce=f"old-nonce-{n}"))[0] == 200
    sandbox.services.clock = FixedClock(NOW + timedelta(minutes=6))
    assert (await till.call("GET", path, nonce="new-nonce-1"))[0] == 200
    assert (await counts(sandbox))["api_nonces"] == 1


async def test_a_revoked_or_unknown_key_is_refused(sandbox: Sandbox, till: StoreTill) -> None:
    buyer = await member(sandbox)
    path = f"/v1/members/{buyer.member_code}"
    assert (await till.call("GET", path))[0] == 200
    await sandbox.services.api_keys.revoke(till.key_id)
    status, answer, _ = await till.call("GET", path)
    assert (status, answer["error"]["code"]) == (401, "revoked_key")
    till.key_id = "pk_0000000000000000"
    status, answer, _ = await till.call("GET", path)
    assert (status, answer["error"]["code"]) == (401, "unknown_key")


async def test_an_unsigned_request_is_refused(sandbox: Sandbox, till: StoreTill) -> None:
    buyer = await member(sandbox)
    async with till.session.get(f"{till.url}/v1/members/{buyer.member_code}") as response:
        answer = await response.json()
    assert response.status == 401
    assert answer["error"]["code"] == "missing_signature"
    assert "X-Pointsbot-Signature" in answer["error"]["message"]


# --------------------------------------------------------------------------- idempotency


async def test_concurrent_duplicates_book_once_and_all_get_the_first_answer(
    sandbox: Sandbox, till: StoreTill
) -> None:
    buyer = await member(sandbox)
    before = await counts(sandbox)
    fields = {"receipt": "R-3001", "member_code": buyer.member_code, "amount": "99.90"}
    answers = await asyncio.gather(*(till.purchase(**fields) for _ in range(10)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * 9 + [201]
    bodies = {json.dumps(body, sort_keys=True) for _, body, _ in answers}
    assert len(bodies) == 1
    assert all(h.get("Idempotent-Replayed") == "true" for s, _, h in answers if s == 200)
    after = await counts(sandbox)
    assert after["operations"] == before["operations"] + 1
    assert (await sandbox.services.ledger.balance(buyer.id)).available == answers[0][1]["points"]


async def test_the_same_receipt_later_gets_the_first_answer(
    sandbox: Sandbox, till: StoreTill
) -> None:
    buyer = await member(sandbox)
    fields = {"receipt": "R-3002", "member_code": buyer.member_code, "amount": "20.00"}
    status, first, _ = await till.purchase(**fields)
    assert status == 201
    # Another purchase meanwhile moves the balance; the retry still gets the first answer,
    # the amount written another way is the same purchase.
    assert (await till.purchase(receipt="R-3003", member_code=buyer.member_code, amount="30"))[
        0
    ] == 201
    status, again, headers = await till.purchase(**{**fields, "amount": "20"})
    assert (status, again) == (200, first)
    assert headers["Idempotent-Replayed"] == "true"


async def test_a_different_body_for_a_receipt_is_a_conflict(
    sandbox: Sandbox, till: StoreTill
) -> None:
    buyer = await member(sandbox)
    fields = {"receipt": "R-4001", "member_code": buyer.member_code, "amount": "20.00"}
    assert (await till.purchase(**fields))[0] == 201
    before = await counts(sandbox)
    status, answer, _ = await till.purchase(**{**fields, "amount": "200.00"})
    assert status == 409
    assert answer["error"]["code"] == "receipt_conflict"
    after = await counts(sandbox)
    assert after["operations"] == before["operations"]
    assert after["api_results"] == before["api_results"]


async def test_a_receipt_booked_at_the_till_command_is_a_replay_or_conflict(
    sandbox: Sandbox, till: StoreTill
) -> None:
    from bot.programme.purchases import record_purchase

    buyer = await member(sandbox)
    await record_purchase(
        sandbox.services,
        buyer.member_code,
        "20.00",
        receipt="R-4002",
        purchased_at=NOW,
        actor="tg:1",
    )
    fields = {"receipt": "R-4002", "member_code": buyer.member_code, "amount": "20.00"}
    status, answer, _ = await till.purchase(**fields)
    assert status == 200
    assert answer["available"] == answer["points"] > 0
    status, answer, _ = await till.purchase(
        receipt="R-4002", member_code=buyer.member_code, amount="21.00"
    )
    assert (status, answer["error"]["code"]) == (409, "receipt_conflict")


# --------------------------------------------------------------------------- bodies


async def test_a_10_mb_body_is_refused_unread_and_nothing_written(
    sandbox: Sandbox, till: StoreTill
) -> None:
    before = await counts(sandbox)
    body = b'{"receipt": "R-5001", "padding": "' + b"x" * 10_000_000 + b'"}'
    status, answer, _ = await till.call("POST", "/v1/purchases", body=body)
    assert status == 413
    assert answer["error"]["code"] == "body_too_large"
    assert await counts(sandbox) == before


async def test_a_long_body_without_a_length_is_refused_too(
    sandbox: Sandbox, till: StoreTill
) -> None:
    before = await counts(sandbox)
    body = b"x" * 200_000

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16_384):
            yield body[start : start + 16_384]

    headers = till.headers("POST", "/v1/purchases", body)
    async with till.session.post(
        till.url + "/v1/purchases", data=chunks(), headers=headers
    ) as response:
        answer = await response.json()
    assert response.status == 413
    assert answer["error"]["code"] == "body_too_large"
    assert await counts(sandbox) == before


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b'{"receipt": "R-1",', 400, "malformed_json", None),
        (b"[1, 2]", 400, "malformed_json", None),
        (b"\xff\xfe", 400, "malformed_json", None),
        (b'{"receipt": "R-1", "amount": "10"}', 422, "missing_field", "member_code"),
        (b'{"receipt": "R-1", "member_code": "1", "amount": 10}', 422, "invalid_field", "amount"),
        (
            b'{"receipt": "R-1", "member_code": "1", "amount": "1", "tip": "2"}',
            422,
            "unknown_field",
            "tip",
        ),
        (
            b'{"receipt": "R-1", "member_code": "1", "amount": "1",'
            b' "purchased_at": "2026-11-25T10:00:00"}',
            422,
            "invalid_field",
            "purchased_at",
        ),
    ],
    ids=["cut short", "not an object", "not utf-8", "missing", "a number", "unknown", "naive"],
)
async def test_a_malformed_body_is_refused_naming_the_field(
    sandbox: Sandbox,
    till: StoreTill,
    body: bytes,
    status: int,
    code: str,
    field: str | None,
) -> None:
    before = await counts(sandbox)
    got, answer, _ = await till.call("POST", "/v1/purchases", body=body)
    assert (got, answer["error"]["code"], answer["error"].get("field")) == (status, code, field)
    # The signature checked out, so its nonce is spent; nothing else is written.
    after = await counts(sandbox)
    assert after["operations"] == before["operations"]
    assert after["api_results"] == before["api_results"]


async def test_a_return_id_that_could_not_key_a_return_is_refused(
    sandbox: Sandbox, till: StoreTill
) -> None:
    before = await counts(sandbox)
    status, answer, _ = await till.call(
        "POST", "/v1/purchase-returns", {"receipt": "R-1", "return_id": "R-1 第一次"}
    )
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (
        422,
        "invalid_field",
        "return_id",
    )
    assert (await counts(sandbox))["operations"] == before["operations"]


async def test_a_rule_refusal_speaks_the_programmes_language(
    sandbox: Sandbox, till: StoreTill
) -> None:
    buyer = await member(sandbox)
    status, answer, _ = await till.purchase(
        receipt="R-6001", member_code=buyer.member_code, amount="12,50"
    )
    assert status == 422
    assert answer["error"]["code"] == "error.amount_not_number"
    assert answer["error"]["field"] == "amount"
    assert "12,50" in answer["error"]["message"]
    assert re.search(r"[\u4e00-\u9fff]", answer["error"]["message"])
    status, answer, _ = await till.purchase(receipt="R-6002", member_code="1234567890", amount="5")
    assert (status, answer["error"]["field"]) == (422, "member_code")


# --------------------------------------------------------------------------- returns
# POST /v1/purchase-returns books through bot.programme.purchase_returns (issue 17's purchase
# returns, built alongside): these tests run once it is there.


async def test_a_partial_return_takes_its_points_back_once(
    sandbox: Sandbox, till: StoreTill
) -> None:
    buyer = await member(sandbox)
    status, bought, _ = await till.purchase(
        receipt="R-9001", member_code=buyer.member_code, amount="100.00"
    )
    assert status == 201, bought
    fields = {"receipt": "R-9001", "return_id": "R-9001-1", "amount": "50.00"}
    answers = await asyncio.gather(
        *(till.call("POST", "/v1/purchase-returns", fields) for _ in range(5))
    )
    assert sorted(status for status, _, _ in answers) == [200] * 4 + [201]
    assert len({json.dumps(body, sort_keys=True) for _, body, _ in answers}) == 1
    returned = answers[0][1]
    assert returned["receipt"] == "R-9001"
    assert returned["return_id"] == "R-9001-1"
    assert returned["member_code"] == buyer.member_code
    assert returned["refunded"] == "50.00"
    assert 0 < returned["points"] < bought["points"]
    assert returned["taken"] + returned["owed"] == returned["points"]
    available = (await sandbox.services.ledger.balance(buyer.id)).available
    assert returned["available"] == available == bought["points"] - returned["taken"]


async def test_another_request_under_a_return_id_is_a_conflict(
    sandbox: Sandbox, till: StoreTill
) -> None:
    buyer = await member(sandbox)
    await till.purchase(receipt="R-9002", member_code=buyer.member_code, amount="100.00")
    fields = {"receipt": "R-9002", "return_id": "R-9002-1", "amount": "10.00"}
    assert (await till.call("POST", "/v1/purchase-returns", fields))[0] == 201
    before = await counts(sandbox)
    status, answer, _ = await till.call(
        "POST", "/v1/purchase-returns", {**fields, "amount": "20.00"}
    )
    assert (status, answer["error"]["code"]) == (409, "return_conflict")
    after = await counts(sandbox)
    assert after["operations"] == before["operations"]


async def test_a_return_of_an_unknown_receipt_is_refused(sandbox: Sandbox, till: StoreTill) -> None:
    before = await counts(sandbox)
    status, answer, _ = await till.call(
        "POST", "/v1/purchase-returns", {"receipt": "R-NONE", "return_id": "R-NONE-1"}
    )
    assert (status, answer["error"]["code"]) == (404, "returns.error.unknown_receipt"), answer
    assert answer["error"]["code"]
    assert answer["error"]["message"]
    after = await counts(sandbox)
    assert after["operations"] == before["operations"]
    assert after["api_results"] == before["api_results"]


async def test_a_return_without_an_amount_returns_the_whole_purchase(
    sandbox: Sandbox, till: StoreTill
) -> None:
    buyer = await member(sandbox)
    _, bought, _ = await till.purchase(
        receipt="R-9003", member_code=buyer.member_code, amount="80.00"
    )
    status, returned, _ = await till.call(
        "POST", "/v1/purchase-returns", {"receipt": "R-9003", "return_id": "R-9003-1"}
    )
    assert status == 201, returned
    assert returned["refunded"] == "80.00"
    assert returned["points"] == bought["points"]
    assert returned["available"] == 0


# --------------------------------------------------------------------------- rate limit


@pytest.mark.parametrize("configure", [[_api_on(requests_per_minute=3)]])
async def test_a_key_over_its_rate_is_refused_with_retry_after(
    sandbox: Sandbox, till: StoreTill
) -> None:
    buyer = await member(sandbox)
    path = f"/v1/members/{buyer.member_code}"
    for _ in range(3):
        assert (await till.call("GET", path))[0] == 200
    status, answer, headers = await till.call("GET", path)
    assert status == 429
    assert answer["error"]["code"] == "rate_limited"
    assert headers["Retry-After"] == "60"
    # Another store's key has its own minute; this one has room again a minute later.
    other = StoreTill(sandbox, till.session, await new_key(sandbox, "徐家汇店"))
    assert (await other.call("GET", path))[0] == 200
    sandbox.services.clock = FixedClock(NOW + timedelta(seconds=61))
    assert (await till.call("GET", path))[0] == 200


# --------------------------------------------------------------------------- look-up


async def test_a_member_look_up_shows_a_till_screen_and_nothing_more(
    sandbox: Sandbox, till: StoreTill
) -> None:
    buyer = await member(sandbox, name="王小明")
    await till.purchase(receipt="R-7001", member_code=buyer.member_code, amount="100")
    spaced = f"{buyer.member_code[:4]} {buyer.member_code[4:8]} {buyer.member_code[8:]}"
    status, answer, _ = await till.call("GET", "/v1/members/" + spaced.replace(" ", "%20"))
    assert status == 200, answer
    assert set(answer) == {"member_code", "name_initial", "tier", "available"}
    assert answer["member_code"] == buyer.member_code
    assert answer["name_initial"] == "王"
    assert answer["available"] == (await sandbox.services.ledger.balance(buyer.id)).available
    assert answer["tier"]["id"] == sandbox.config.tiers.levels[0].id


async def test_an_unknown_member_is_404(sandbox: Sandbox, till: StoreTill) -> None:
    buyer = await member(sandbox)
    # A valid code (check digit and all) that nobody has: the member's with its digits moved.
    from storage.members import luhn_digit

    nobody = next(
        code
        for n in range(1000)
        if (code := f"{n:09d}" + luhn_digit(f"{n:09d}")) != buyer.member_code
    )
    status, answer, _ = await till.call("GET", f"/v1/members/{nobody}")
    assert (status, answer["error"]["code"]) == (404, "admin.member_not_found")
    status, answer, _ = await till.call("GET", "/v1/members/12345")
    assert (status, answer["error"]["field"]) == (422, "member_code")
    status, answer, _ = await till.call("GET", "/v1/nothing-here")
    assert (status, answer["error"]["code"]) == (404, "not_found")


# --------------------------------------------------------------------------- description


async def test_openapi_describes_every_route_served_and_no_other(
    sandbox: Sandbox, till: StoreTill
) -> None:
    async with till.session.get(till.url + "/v1/openapi.json") as response:
        served = await response.json()
    assert response.status == 200
    assert served == json.loads(json.dumps(OPENAPI))
    api = sandbox.services.till_api
    assert api is not None
    # What the server routes, read from aiohttp's router (not from our own list).
    routes = {
        (route.resource.canonical, route.method.lower())
        for route in api.app.router.routes()
        if route.resource is not None
    }
    described = {(path, method) for path, ops in served["paths"].items() for method in ops}
    assert routes == described
    async with till.session.delete(till.url + "/v1/purchases") as response:
        refused = await response.json()
    assert (response.status, refused["error"]["code"]) == (405, "method_not_allowed")
    assert served["openapi"].startswith("3.1")
    description = served["info"]["description"]
    for header in ("X-Pointsbot-Key", "X-Pointsbot-Timestamp", "X-Pointsbot-Nonce"):
        assert header in description
    assert "HMAC-SHA256" in description


def test_the_api_is_off_unless_enabled(sample_config: Config) -> None:
    assert sample_config.api.enabled is False
    assert sample_config.api.clock_skew_seconds == 300


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("clock_skew_seconds = 300", 'clock_skew_seconds = 300\nsecret = "x"', "[api.secret]"),
        ("port = 8080", "port = 70000", "[server.port]"),
    ],
    ids=["unknown key", "bad port"],
)
def test_the_api_section_rejects_what_it_does_not_know(
    tmp_path: Path, old: str, new: str, named: str
) -> None:
    config_file = tmp_path / "config.toml"
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    config_file.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(config_file)


def test_signing_follows_the_documented_scheme() -> None:
    body = b'{"receipt": "R-1"}'
    text = (
        b"POST\n/v1/purchases\n1764043200\nabcdefgh\n" + hashlib.sha256(body).hexdigest().encode()
    )
    expected = hmac.new(b"s3cret", text, hashlib.sha256).hexdigest()
    assert sign("s3cret", "POST", "/v1/purchases", "1764043200", "abcdefgh", body) == expected


# --------------------------------------------------------------------------- examples/till.py


def _example_till() -> Any:
    spec = importlib.util.spec_from_file_location("example_till", ROOT / "examples" / "till.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_example_till_signs_as_the_server_checks(
    sandbox: Sandbox, till: StoreTill, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = _example_till()
    buyer = await member(sandbox)
    # The example's till against the running server (its clock: the bot's, as in a store).
    client = example.Till(till.url, till.key_id, till.secret)
    now = sandbox.services.now().timestamp()

    def call(method: str, path: str, payload: dict[str, Any] | None) -> Any:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = example.signed_headers(client.key_id, client.secret, method, path, body, now)
        assert headers["X-Pointsbot-Signature"] == sign(
            client.secret,
            method,
            path,
            headers["X-Pointsbot-Timestamp"],
            headers["X-Pointsbot-Nonce"],
            body,
        )
        return headers

    call("POST", "/v1/purchases", {"receipt": "R-8001"})
    # Its own HTTP calls: urllib in a thread, the example's timestamp on the bot's clock.
    # (example.time is the time module itself: patched for this test only.)
    monkeypatch.setattr(example.time, "time", lambda: now)
    status, answer = await asyncio.to_thread(
        client.call,
        "POST",
        "/v1/purchases",
        {"receipt": "R-8001", "member_code": buyer.member_code, "amount": "128.00"},
    )
    assert status == 201, answer
    status, answer = await asyncio.to_thread(
        client.call, "GET", f"/v1/members/{buyer.member_code}", None
    )
    assert status == 200, answer
    assert answer["available"] == (await sandbox.services.ledger.balance(buyer.id)).available > 0


# --------------------------------------------------------------------------- the CLI


def test_api_keys_cli_creates_lists_and_revokes(sample_config: Config, tmp_path: Path) -> None:
    config_file = tmp_path / "config.toml"
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    config_file.write_text(
        text.replace('path = "data/pointsbot.sqlite3"', f'path = "{tmp_path / "db.sqlite3"}"'),
        encoding="utf-8",
    )
    runner = PinnedCliRunner()
    assert runner.invoke(main, ["init-db", "--config", str(config_file)]).exit_code == 0
    created = runner.invoke(
        main, ["api-keys", "create", "--store", "南京西路店", "--config", str(config_file)]
    )
    assert created.exit_code == 0, created.output
    key_id = re.search(r"^key id  (pk_[0-9a-f]{16})$", created.output, re.MULTILINE)
    secret = re.search(r"^secret  (\S{32,})$", created.output, re.MULTILINE)
    assert key_id and secret, created.output
    assert "shown only now" in created.output

    listed = runner.invoke(main, ["api-keys", "list", "--config", str(config_file)])
    assert listed.exit_code == 0, listed.output
    assert key_id.group(1) in listed.output
    assert "南京西路店" in listed.output
    assert "2026-11-25 12:00" in listed.output  # created, local time
    assert secret.group(1) not in listed.output

    revoked = runner.invoke(
        main, ["api-keys", "revoke", key_id.group(1), "--config", str(config_file)]
    )
    assert revoked.exit_code == 0, revoked.output
    listed = runner.invoke(main, ["api-keys", "list", "--config", str(config_file)])
    row = next(line for line in listed.output.splitlines() if key_id.group(1) in line)
    assert row.count("2026-11-25 12:00") == 2

    unknown = runner.invoke(
        main, ["api-keys", "revoke", "pk_nothing", "--config", str(config_file)]
    )
    assert unknown.exit_code == 2
    assert "no API key pk_nothing" in unknown.output


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_key_is_revoked_for_good(engine: str, tmp_path: Path) -> None:
    from storage.api_keys import ApiKeys

    async with opened_store(engine, tmp_path) as store:
        keys = ApiKeys(store)
        key_id, secret = draw_key()
        key = await keys.create(key_id, "store", secret, now=NOW)
        await keys.revoke(key_id, now=NOW + timedelta(days=1))
        again = await keys.revoke(key_id, now=NOW + timedelta(days=2))
        assert again.revoked_at == NOW + timedelta(days=1)
        with pytest.raises(sqlite3.IntegrityError, match="revoked once"):
            await store.write(
                lambda conn: conn.execute(
                    "UPDATE api_keys SET revoked_at = NULL WHERE id = ?", (key.id,)
                )
            )


def test_the_demo_serves_the_api_for_the_example_till(tmp_path: Path) -> None:
    config_file = tmp_path / "config.toml"
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    config_file.write_text(text.replace("port = 8080", "port = 0"), encoding="utf-8")
    demo = subprocess.Popen(
        [sys.executable, "-m", "bot", "demo", "--api", "--config", str(config_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        assert demo.stdout is not None
        lines = []
        while not (line := demo.stdout.readline()).lstrip().startswith("python examples/till.py"):
            assert line, "".join(lines)
            lines.append(line)
        env_line = lines[-1]
        key = re.search(r"POINTSBOT_API_KEY=(\S+) POINTSBOT_API_SECRET=(\S+)", env_line)
        assert key, env_line
        example = subprocess.run(
            [sys.executable, *line.split()[1:]],
            env={**os.environ, "POINTSBOT_API_KEY": key[1], "POINTSBOT_API_SECRET": key[2]},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
        )
    finally:
        demo.communicate("", timeout=60)
    assert re.search(r"^GET /v1/members/\d{10} -> 200$", example.stdout, re.MULTILINE)
    assert "POST /v1/purchases -> 201" in example.stdout, example.stdout
    assert '"name_initial": "小"' in example.stdout


async def test_each_request_is_logged_with_its_key_status_and_the_operation_it_booked(
    sandbox: Sandbox, till: StoreTill
) -> None:
    import io
    import logging

    from bot.logs import JsonFormatter

    buyer = await member(sandbox)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())  # as `pointsbot run` with [logging] format = "json"
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        status, _, _ = await till.call(
            "POST",
            "/v1/purchases",
            {"receipt": "R-LOG-1", "member_code": buyer.member_code, "amount": "88.00"},
        )
        refused, _, _ = await till.call("GET", "/v1/members/NOSUCHCODE")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert (status, refused) == (201, 422)
    logged = [json.loads(line) for line in stream.getvalue().splitlines()]
    [booked] = [line for line in logged if line["message"].startswith("till API POST")]
    assert booked["message"] == f"till API POST /v1/purchases (key {till.key_id}): 201"
    operation = await sandbox.services.ledger.operation(booked["operation_id"])
    assert (operation.kind, operation.member_id) == ("purchase", buyer.id)
    assert "R-LOG-1" in (operation.reference or "")
    # A refusal books nothing, and its line names no operation (not the one before it).
    [looked_up] = [line for line in logged if line["message"].startswith("till API GET")]
    assert looked_up["message"].endswith(": 422") and "operation_id" not in looked_up
