"""Points moved to family: every transfer rule of `[family]`, the typed amount, the preview,
the booking with its notice, and the undo.

The rules live in `transfer_terms` (what /rules states) and become the `TransferLimits` the
store checks inside the booking transaction, so /rules, the buttons and the check cannot
disagree. Time comes from `programme.now()` only; "today" and "this month" are local.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import Final

from bot.config import Config, ExpirySource
from bot.i18n import N_
from bot.programme.booked import note_booked
from bot.programme.calendar import add_months, display_expiry, local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.notices import transfer_notice, undo_notice
from storage import transfers as store
from storage.errors import (
    AlreadyReversed,
    InsufficientPoints,
    InvalidState,
    NotFound,
    OfferExpired,
    SourceHeldBack,
)
from storage.family import HouseholdMember
from storage.ledger import OperationResult
from storage.transfers import TransferLimits, TransferOffer, TransferRefused

# How long a confirmation button stays good.
OFFER_MINUTES: Final = 10
# The ledger's source account for each expiry source (they differ only for sharing).
SOURCE_ACCOUNTS: Final[dict[str, str]] = {"share": "share_bonus"}
# Typed amounts: digits (full-width ones count), an optional unit after them.
_FULL_WIDTH: Final = str.maketrans("０１２３４５６７８９．", "0123456789.")
_POINTS: Final = re.compile(r"(?P<whole>[0-9]{1,12})(?P<fraction>\.[0-9]*)?", re.ASCII)
_UNITS: Final = ("积分", "分", "points", "point", "pts")
_MINUS: Final = ("-", "－", "−")
_SHOWN: Final = 24
REFUSALS: Final[dict[str, str]] = {
    "no_household": N_("transfer.no_household"),
    "not_together": N_("transfer.not_together"),
    "cooling_off": N_("transfer.cooling_off"),
    "below_minimum": N_("transfer.below_minimum"),
    "sender_day": N_("transfer.sender_day"),
    "sender_month": N_("transfer.sender_month"),
    "recipient_day": N_("transfer.recipient_day"),
    "recipient_month": N_("transfer.recipient_month"),
}


@dataclass(frozen=True, slots=True)
class TransferTerms:
    """The family rules as members are told them and as every transfer is checked."""

    max_members: int
    invitation_hours: int
    cooling_off_days: int
    min_transfer: int
    sender_daily_max: int
    sender_monthly_max: int
    recipient_daily_max: int
    recipient_monthly_max: int
    non_transferable: tuple[ExpirySource, ...]
    quick_amounts: tuple[int, ...]
    undo_minutes: int


def transfer_terms(config: Config) -> TransferTerms | None:
    """The programme's family rules, or None when it has no households."""
    family = config.family
    if not family.enabled:
        return None
    return TransferTerms(
        max_members=family.max_members,
        invitation_hours=family.invitation_hours,
        cooling_off_days=family.cooling_off_days,
        min_transfer=family.min_transfer,
        sender_daily_max=family.sender_daily_max,
        sender_monthly_max=family.sender_monthly_max,
        recipient_daily_max=family.recipient_daily_max,
        recipient_monthly_max=family.recipient_monthly_max,
        non_transferable=tuple(family.non_transferable),
        quick_amounts=tuple(sorted(set(family.quick_amounts))),
        undo_minutes=family.undo_minutes,
    )


def _terms(config: Config) -> TransferTerms:
    terms = transfer_terms(config)
    if terms is None:
        raise RuleError(N_("transfer.disabled"))
    return terms


def _local_midnight(day: date, config: Config) -> datetime:
    return datetime.combine(day, time(0), tzinfo=config.program.tz)


def limits_at(config: Config, now: datetime) -> TransferLimits:
    """The limits in force at `now`, with the local day and calendar month it falls in."""
    terms = _terms(config)
    today = local_today(now, config)
    first = today.replace(day=1)
    return TransferLimits(
        min_points=terms.min_transfer,
        sender_day=terms.sender_daily_max,
        sender_month=terms.sender_monthly_max,
        recipient_day=terms.recipient_daily_max,
        recipient_month=terms.recipient_monthly_max,
        day=(_local_midnight(today, config), _local_midnight(today + timedelta(days=1), config)),
        month=(_local_midnight(first, config), _local_midnight(add_months(first, 1), config)),
        cooling_off=timedelta(days=terms.cooling_off_days),
        held_back=frozenset(SOURCE_ACCOUNTS.get(s, s) for s in terms.non_transferable),
    )


def parse_points(text: str) -> int:
    """A typed number of points (whole, positive; full-width digits and a unit allowed);
    raises RuleError naming the value."""
    stripped = text.strip()
    shown = stripped if len(stripped) <= _SHOWN else stripped[:_SHOWN] + "…"
    cleaned = stripped.translate(_FULL_WIDTH)
    for unit in _UNITS:
        if cleaned.lower().endswith(unit):
            cleaned = cleaned[: -len(unit)].strip()
            break
    negative = cleaned.startswith(_MINUS)
    found = _POINTS.fullmatch(cleaned[1:] if negative else cleaned)
    if found is None:
        raise RuleError(N_("transfer.amount_not_number"), value=shown)
    if (found["fraction"] or ".").strip(".0"):
        raise RuleError(N_("transfer.amount_not_whole"), value=shown)
    points = int(found["whole"])
    if negative or points <= 0:
        raise RuleError(N_("transfer.amount_not_positive"), value=shown)
    return points


def _local_minute(moment: datetime, config: Config) -> str:
    """A local time to the minute, rounded up: points may move from the minute shown."""
    local = (moment + timedelta(seconds=59)).astimezone(config.program.tz)
    return local.strftime("%Y-%m-%d %H:%M")


def _refusal(exc: TransferRefused, config: Config) -> RuleError:
    """A store refusal as the message that explains it to the sender."""
    params: dict[str, object] = {"limit": exc.limit, "left": exc.left}
    if exc.until is not None:
        params["day"] = _local_minute(exc.until, config)
        params["days"] = config.family.cooling_off_days
    return RuleError(REFUSALS[exc.reason], **params)


def _short(exc: InsufficientPoints) -> RuleError:
    if isinstance(exc, SourceHeldBack):
        return RuleError(
            N_("transfer.held_back"),
            movable=exc.available,
            held=exc.held_back,
            requested=exc.requested,
        )
    return RuleError(N_("transfer.insufficient"), available=exc.available, requested=exc.requested)


def offer_key(offer_id: int) -> str:
    """The idempotency key of booking one confirmation: a double tap books once."""
    return f"transfer:offer:{offer_id}"


def undo_key(operation_id: int) -> str:
    """The idempotency key of taking one transfer back."""
    return f"transfer:undo:{operation_id}"


# --- choosing whom and how much -----------------------------------------------------------


async def recipients(programme: Programme, member_id: int) -> tuple[HouseholdMember, ...]:
    """The members of the sender's household who can be sent points (past the sender's
    cooling-off); raises RuleError (no households, none, alone, cooling off)."""
    config, now = programme.config, programme.now()
    terms = _terms(config)
    household = await programme.families.household_of(member_id)
    if household is None:
        raise RuleError(N_("transfer.no_household"))
    me = household.member(member_id)
    others = tuple(m for m in household.members if m.member_id != member_id)
    if me is None or not others:
        raise RuleError(N_("transfer.alone"))
    ends = me.joined_at + timedelta(days=terms.cooling_off_days)
    if ends > now:
        day = _local_minute(ends, config)
        raise RuleError(N_("transfer.cooling_off"), day=day, days=terms.cooling_off_days)
    return others


@dataclass(frozen=True, slots=True)
class AmountChoice:
    """What the sender may send one member now: the most, the smallest and the buttons."""

    recipient: HouseholdMember
    most: int
    least: int
    quick: tuple[int, ...]
    # Points that stay with the sender (sources that are not transferable).
    held: int


async def _recipient(programme: Programme, sender_id: int, recipient_id: int) -> HouseholdMember:
    household = await programme.families.household_of(sender_id)
    found = None if household is None else household.member(recipient_id)
    if found is None or recipient_id == sender_id:
        raise RuleError(N_("transfer.not_together"))
    return found


async def amount_choice(programme: Programme, sender_id: int, recipient_id: int) -> AmountChoice:
    """How much the sender may send this member now; raises RuleError when nothing fits."""
    config, now = programme.config, programme.now()
    terms = _terms(config)
    limits = limits_at(config, now)
    recipient = await _recipient(programme, sender_id, recipient_id)
    transfers = programme.transfers
    try:
        await transfers.check_together(sender_id, recipient_id, limits, now)
    except TransferRefused as exc:
        raise _refusal(exc, config) from exc
    room, binding = await transfers.limit_room(sender_id, recipient_id, limits)
    movable, held = await transfers.movable(sender_id, limits.held_back, now)
    if room < terms.min_transfer:
        raise _refusal(
            TransferRefused(binding, limit=store.limit_of(limits, binding), left=room),
            config,
        )
    if movable < terms.min_transfer:
        key = N_("transfer.nothing_movable") if held else N_("transfer.too_few")
        raise RuleError(key, minimum=terms.min_transfer, available=movable, held=held)
    most = min(room, movable)
    quick = tuple(q for q in terms.quick_amounts if terms.min_transfer <= q <= most)
    return AmountChoice(recipient, most, terms.min_transfer, quick, held)


async def ask_amount(programme: Programme, sender_id: int, recipient_id: int) -> AmountChoice:
    """The sender will type an amount for this member: remember whom, say the bounds."""
    choice = await amount_choice(programme, sender_id, recipient_id)
    await programme.transfers.ask_amount(sender_id, recipient_id, now=programme.now())
    return choice


async def asked_for(programme: Programme, sender_id: int) -> int | None:
    """Whom the sender's typed amount is for, or None."""
    return await programme.transfers.asked_for(sender_id)


# --- the confirmation, the booking and the undo ------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedLots:
    """Points a transfer takes from the sender's lots of one expiry (None: lifetime), and the
    last local day they stay valid for the recipient too."""

    points: int
    last_day: date | None


@dataclass(frozen=True, slots=True)
class PendingTransfer:
    """The confirmation: the offer its button books and what it would do."""

    offer: TransferOffer
    recipient: HouseholdMember
    lots: tuple[PlannedLots, ...]
    available_after: int
    minutes: int


async def offer_transfer(
    programme: Programme, sender_id: int, recipient_id: int, points: int
) -> PendingTransfer:
    """Check a transfer could be booked now and record the offer its confirmation books;
    raises RuleError."""
    config, now = programme.config, programme.now()
    limits = limits_at(config, now)
    recipient = await _recipient(programme, sender_id, recipient_id)
    try:
        offer = await programme.transfers.create_offer(
            sender_id,
            recipient_id,
            points,
            limits=limits,
            ttl=timedelta(minutes=OFFER_MINUTES),
            now=now,
        )
    except TransferRefused as exc:
        raise _refusal(exc, config) from exc
    except InsufficientPoints as exc:
        raise _short(exc) from exc
    lots = tuple(
        PlannedLots(taken, None if expiry is None else display_expiry(expiry, config))
        for expiry, taken in offer.plan
    )
    available = await programme.ledger.available(sender_id, now)
    return PendingTransfer(offer, recipient, lots, available - points, OFFER_MINUTES)


@dataclass(frozen=True, slots=True)
class Transferred:
    """A booked transfer (or the one a repeated tap already booked)."""

    result: OperationResult
    recipient_name: str
    available: int
    undo_minutes: int


async def _names(programme: Programme, sender_id: int, recipient_id: int) -> tuple[str, str]:
    """The two members' names as the household shows them (their Telegram names)."""
    names = await programme.transfers.member_names([sender_id, recipient_id])
    return names.get(sender_id, ""), names.get(recipient_id, "")


async def confirm_transfer(
    programme: Programme, sender_id: int, offer_id: int, *, actor: str
) -> Transferred:
    """Book the sender's offer once, every rule checked again now, and tell the recipient in
    the same transaction; raises RuleError (stale, left, limits, points gone)."""
    config, now = programme.config, programme.now()
    terms = _terms(config)
    limits = limits_at(config, now)
    transfers = programme.transfers
    try:
        pending = await transfers.offer(offer_id, sender_id)
    except OfferExpired as exc:
        raise RuleError(N_("button.expired")) from exc
    sender_name, recipient_name = await _names(programme, sender_id, pending.recipient_id)
    book = partial(
        store.confirm,
        offer_id=offer_id,
        sender_id=sender_id,
        limits=limits,
        key=offer_key(offer_id),
        actor=actor,
        now=now,
    )
    try:
        result = await programme.pushes.book_and_notify(book, transfer_notice(sender_name), now)
        note_booked(result.operation_id)
    except OfferExpired as exc:
        raise RuleError(N_("transfer.offer_expired"), minutes=OFFER_MINUTES) from exc
    except TransferRefused as exc:
        raise _refusal(exc, config) from exc
    except InsufficientPoints as exc:
        raise _short(exc) from exc
    available = await programme.ledger.available(sender_id, now)
    return Transferred(result, recipient_name, available, terms.undo_minutes)


@dataclass(frozen=True, slots=True)
class Undone:
    """A transfer taken back (or the undo a repeated tap already booked)."""

    result: OperationResult
    recipient_name: str
    available: int


async def undo_transfer(
    programme: Programme, sender_id: int, operation_id: int, *, actor: str
) -> Undone:
    """Take a transfer back within the undo window if none of it was spent, and tell the
    recipient in the same transaction; raises RuleError (too late, spent, not theirs)."""
    config, now = programme.config, programme.now()
    terms = _terms(config)
    transfers = programme.transfers
    try:
        record = await transfers.transfer_record(operation_id)
    except NotFound as exc:
        raise RuleError(N_("button.expired")) from exc
    if record.sender_id != sender_id:
        raise RuleError(N_("button.expired"))
    sender_name, recipient_name = await _names(programme, sender_id, record.recipient_id)
    book = partial(
        store.undo,
        transfer_operation_id=operation_id,
        sender_id=sender_id,
        within=timedelta(minutes=terms.undo_minutes),
        key=undo_key(operation_id),
        actor=actor,
        now=now,
    )
    try:
        result = await programme.pushes.book_and_notify(book, undo_notice(sender_name), now)
        note_booked(result.operation_id)
    except NotFound as exc:
        raise RuleError(N_("button.expired")) from exc
    except AlreadyReversed as exc:
        raise RuleError(N_("transfer.undo_already")) from exc
    except InvalidState as exc:
        key = N_("transfer.undo_spent") if exc.status == "spent" else N_("transfer.undo_too_late")
        raise RuleError(key, minutes=terms.undo_minutes, name=recipient_name) from exc
    available = await programme.ledger.available(sender_id, now)
    return Undone(result, recipient_name, available)
