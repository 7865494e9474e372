"""The signed till API's rules: how a store's request is signed and checked, and what a
purchase, a return and a member look-up through it do (no HTTP here: bot/api.py serves it).

A request is signed with the store's secret: hex HMAC-SHA256 over
"METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\n" + the hex SHA-256 of the body (`signed_text`). It is
accepted when its key is known and not revoked, the signature matches, the timestamp is within
[api] clock_skew_seconds of the programme's clock and the key never signed with the nonce
before. Purchases and returns go through `record_purchase` and `return_purchase`, the very
functions the till command and the CSV import use; the first answer to each receipt (or
return id) is kept, so a retry of the same request gets it again and a different request
under the same receipt is a conflict.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final, Literal
from weakref import WeakValueDictionary

from bot.programme.context import Programme
from bot.programme.purchase_returns import return_purchase
from bot.programme.purchases import check_receipt, find_category, parse_amount, record_purchase
from bot.programme.tiers import member_tier
from bot.programme.till import compact_code, find_member
from storage.api_keys import ApiKey, ResultKind

# What a nonce may be: long enough not to repeat by chance, short and plain enough to store.
NONCE: Final = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# A signature as sent: the hex of an HMAC-SHA256.
_SIGNATURE: Final = re.compile(r"^[0-9a-fA-F]{64}$")
# A timestamp as sent: Unix seconds (no sign, no fraction).
_TIMESTAMP: Final = re.compile(r"^[0-9]{1,12}$")
KEY_PREFIX: Final = "pk_"


class ApiRefused(Exception):
    """A request refused before anything is booked; `code` names why (the JSON error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def draw_key() -> tuple[str, str]:
    """A new key id and secret, from the CSPRNG."""
    return KEY_PREFIX + secrets.token_hex(8), secrets.token_urlsafe(32)


def signed_text(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What a request's signature covers: method, path, timestamp, nonce and the body's hash."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{digest}".encode()


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """The hex HMAC-SHA256 signature of a request with a key's secret."""
    text = signed_text(method, path, timestamp, nonce, body)
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request as the till signed it: the signature headers, method, path and body."""

    key_id: str | None
    timestamp: str | None
    nonce: str | None
    signature: str | None
    method: str
    path: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A request whose signature checked out: the key that signed it, when and with what."""

    key: ApiKey
    signed_at: datetime
    nonce: str

    @property
    def actor(self) -> str:
        """Who the ledger records as booking what this request books."""
        return f"api:{self.key.store}"


async def authenticate(programme: Programme, request: SignedRequest) -> Authenticated:
    """The key that signed this request, its signature checked and its timestamp within the
    skew window; nothing is written (the nonce is claimed by `claim_nonce`); raises ApiRefused
    (missing_signature, bad_signature_headers, unknown_key, revoked_key, bad_signature,
    stale_timestamp)."""
    key_id, timestamp, nonce, signature = (
        request.key_id,
        request.timestamp,
        request.nonce,
        request.signature,
    )
    if not key_id or not timestamp or not nonce or not signature:
        raise ApiRefused(
            "missing_signature",
            "sign the request: X-Pointsbot-Key, X-Pointsbot-Timestamp, X-Pointsbot-Nonce and"
            " X-Pointsbot-Signature are all required",
        )
    if not _TIMESTAMP.match(timestamp):
        raise ApiRefused("bad_signature_headers", "X-Pointsbot-Timestamp is Unix seconds")
    if not NONCE.match(nonce):
        raise ApiRefused(
            "bad_signature_headers", "X-Pointsbot-Nonce is 8 to 64 of A-Z, a-z, 0-9, _ and -"
        )
    if not _SIGNATURE.match(signature):
        raise ApiRefused(
            "bad_signature_headers", "X-Pointsbot-Signature is the hex of an HMAC-SHA256"
        )
    key = await programme.api_keys.by_key_id(key_id)
    if key is None:
        raise ApiRefused("unknown_key", "no such API key")
    if key.revoked:
        raise ApiRefused("revoked_key", "this API key was revoked")
    expected = sign(key.secret, request.method, request.path, timestamp, nonce, request.body)
    if not hmac.compare_digest(expected, signature.lower()):
        raise ApiRefused("bad_signature", "the signature does not match the request")
    signed_at = datetime.fromtimestamp(int(timestamp), UTC)
    skew = timedelta(seconds=programme.config.api.clock_skew_seconds)
    if abs(signed_at - programme.now()) > skew:
        raise ApiRefused(
            "stale_timestamp",
            f"the timestamp is more than {int(skew.total_seconds())} s from the server's clock"
            f" ({int(programme.now().timestamp())})",
        )
    return Authenticated(key, signed_at, nonce)


async def claim_nonce(programme: Programme, signed: Authenticated) -> None:
    """Record the request's nonce for its key; raises ApiRefused (replayed_nonce) when the key
    signed with it before."""
    skew = timedelta(seconds=programme.config.api.clock_skew_seconds)
    claimed = await programme.api_keys.claim_nonce(
        signed.key.id, signed.nonce, signed.signed_at, stale_before=programme.now() - skew
    )
    if not claimed:
        raise ApiRefused("replayed_nonce", "this nonce was used before: sign each request anew")


def _fingerprint(facts: dict[str, str]) -> str:
    """The fingerprint of a request, normalized (so "12.5" and "12.50" are one request)."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


# One booking per receipt (or return id) at a time in this process: a retry that arrives
# while the first is booking waits for its answer instead of racing it.
_booking: WeakValueDictionary[tuple[str, str], asyncio.Lock] = WeakValueDictionary()


def _lock(kind: ResultKind, request_key: str) -> asyncio.Lock:
    lock = _booking.get((kind, request_key))
    if lock is None:
        lock = _booking[(kind, request_key)] = asyncio.Lock()
    return lock


# created: booked now; replayed: the same request as before, the first answer again;
# conflict: the receipt (or return id) was used for something else, nothing booked.
BookingStatus = Literal["created", "replayed", "conflict"]


@dataclass(frozen=True, slots=True)
class TillPurchase:
    """A purchase booked through the API: what the till shows."""

    receipt: str
    member_code: str
    points: int
    # The member's spendable points right after it was first booked through the API (or
    # when the API first answered for a receipt the till command or an import booked).
    available: int
    # The tier the member held right after (None: the programme has no tiers).
    tier: str | None


@dataclass(frozen=True, slots=True)
class TillReturn:
    """A purchase return booked through the API: what the till shows."""

    receipt: str
    return_id: str
    member_code: str
    refunded: str
    points: int
    taken: int
    owed: int
    available: int


@dataclass(frozen=True, slots=True)
class Booking:
    """What a purchase or return request did, and its answer (None: a conflict)."""

    status: BookingStatus
    purchase: TillPurchase | None = None
    purchase_return: TillReturn | None = None


async def book_purchase(
    programme: Programme,
    signed: Authenticated,
    *,
    receipt: str,
    member_code: str,
    amount: str,
    category: str | None,
    purchased_at: datetime | None,
) -> Booking:
    """Book a till's purchase once per receipt (`record_purchase`, the member told), or give
    the first answer again; raises RuleError (receipt, member code, amount, category, time)."""
    config = programme.config
    check_receipt(receipt)
    facts = {
        "receipt": receipt,
        "member_code": compact_code(member_code),
        "amount": f"{parse_amount(amount, config):.2f}",
        "category": find_category(category, config).id,
        "purchased_at": "" if purchased_at is None else purchased_at.astimezone(UTC).isoformat(),
    }
    fingerprint = _fingerprint(facts)
    async with _lock("purchase", receipt):
        if (kept := await programme.api_keys.kept_result("purchase", receipt)) is not None:
            if kept.fingerprint != fingerprint:
                return Booking("conflict")
            return Booking("replayed", purchase=TillPurchase(**kept.result))
        now = programme.now()
        recorded = await record_purchase(
            programme,
            member_code,
            amount,
            category,
            receipt,
            purchased_at=now if purchased_at is None else purchased_at,
            actor=signed.actor,
            now=now,
        )
        if recorded.status == "conflict":
            return Booking("conflict")
        tier = await member_tier(programme, recorded.member.id)
        available = recorded.available
        if available is None:  # booked before by the till command or an import
            available = await programme.ledger.available(recorded.member.id, now)
        answer = TillPurchase(
            receipt=receipt,
            member_code=recorded.member.member_code,
            points=recorded.points,
            available=available,
            tier=None if tier is None else tier.id,
        )
        kept = await programme.api_keys.keep_result(
            "purchase", receipt, signed.key.id, fingerprint, asdict(answer)
        )
        status: BookingStatus = "created" if recorded.status == "recorded" else "replayed"
        return Booking(status, purchase=TillPurchase(**kept.result))


async def book_return(
    programme: Programme,
    signed: Authenticated,
    *,
    receipt: str,
    return_id: str,
    amount: str | None,
) -> Booking:
    """Take a refunded purchase's points back once per return id (`return_purchase`), or give
    the first answer again; raises RuleError (receipt, return id, amount)."""
    config = programme.config
    check_receipt(receipt)
    check_receipt(return_id)
    facts = {
        "receipt": receipt,
        "return_id": return_id,
        "amount": "" if amount is None else f"{parse_amount(amount, config):.2f}",
    }
    fingerprint = _fingerprint(facts)
    async with _lock("purchase_return", return_id):
        kept = await programme.api_keys.kept_result("purchase_return", return_id)
        if kept is not None:
            if kept.fingerprint != fingerprint:
                return Booking("conflict")
            return Booking("replayed", purchase_return=TillReturn(**kept.result))
        returned = await return_purchase(
            programme, receipt, amount, return_id=return_id, actor=signed.actor
        )
        if returned.status == "conflict":
            return Booking("conflict")
        refunded: Decimal = returned.refunded
        available: int | None = returned.available
        if available is None:
            available = await programme.ledger.available(returned.member.id, programme.now())
        answer = TillReturn(
            receipt=receipt,
            return_id=return_id,
            member_code=str(returned.member.member_code),
            refunded=f"{refunded:.2f}",
            points=int(returned.points),
            taken=int(returned.taken),
            owed=int(returned.owed),
            available=available,
        )
        kept = await programme.api_keys.keep_result(
            "purchase_return", return_id, signed.key.id, fingerprint, asdict(answer)
        )
        status: BookingStatus = "created" if returned.status == "returned" else "replayed"
        return Booking(status, purchase_return=TillReturn(**kept.result))


@dataclass(frozen=True, slots=True)
class TillMember:
    """What a till screen may show of a member: nothing personal beyond a name's initial."""

    member_code: str
    name_initial: str
    tier: str | None
    available: int


async def till_member(programme: Programme, code: str) -> TillMember:
    """The member a till looked up by code; raises RuleError (not a code, nobody has it)."""
    member = await find_member(programme, code)
    tier = await member_tier(programme, member.id)
    available = await programme.ledger.available(member.id, programme.now())
    return TillMember(
        member_code=member.member_code,
        name_initial=member.display_name[:1],
        tier=None if tier is None else tier.id,
        available=available,
    )
