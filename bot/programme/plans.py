"""Key customers and personal plans (一对一积分权益定制): the one home of what a plan may hold,
what it pays on a purchase and when, who a member's advisor is, and the top members for staff.

A plan (one running per member; a new one replaces it) gives, for purchases dated in its
window of local days and booked while it runs (never replays): an extra multiplier on the
purchase's own points in its categories (bonus = floor(points × (multiplier − 1))), and once
the purchases it counted reach its spend threshold, a gift once per plan. Both are ledger
operations of kind "plan", booked by `plans_moved` inside the purchase's transaction (the
purchase hook bot.programme.task_progress.purchases_booked). After its end day (or once
ended early) a plan applies to nothing. Every mark, plan set, replaced or ended is recorded
in the append-only history (storage.plans.plan_changes).
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final

from bot.config import LANGUAGES, Config
from bot.i18n import N_, packaged
from bot.programme.calendar import end_of_day, local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from bot.programme.staff import is_staff
from bot.programme.tiers import measure, qualification_months, tier_named, tiers_on
from bot.programme.till import find_member
from storage import ledger
from storage import plans as store
from storage.members import Member
from storage.plans import Plan, PlanChange, PlanDraft, Plans, PlanTerms, TopMember
from storage.pushes import SERVICE, Push, enqueue
from storage.tiers import Qualifying

if TYPE_CHECKING:
    from bot.config import Tier
    from bot.programme.task_progress import BookedPurchase

PLAN_SOURCE: Final = "plan"
MULTIPLIER_MIN: Final = Decimal(1)
MULTIPLIER_MAX: Final = Decimal(5)
GIFT_MAX: Final = 1_000_000
# A spend threshold above this many yuan is a typo (a plan is for one member).
THRESHOLD_MAX_YUAN: Final = 100_000_000
VIP_DEFAULT: Final = 10
VIP_MAX: Final = 50
CONTACT_MAX: Final = 200
QUESTION_MAX: Final = 1000
REASON_MAX: Final = 200
# The steps of /plan, in order: categories are tapped, the rest typed, then confirmed.
STEPS: Final = ("categories", "multiplier", "window", "gift", "skus", "advisor", "confirm")
# What staff type for "none" at an optional step.
_NONE_WORDS: Final = frozenset({"-", "无", "没有", "none", "no", "0"})
_DAY: Final = re.compile(r"\d{4}-\d{1,2}-\d{1,2}")


class StalePlanStep(RuleError):
    """The /plan conversation no longer matches the draft kept (restart, another /plan)."""


def _plans(programme: Programme) -> Plans:
    """The plans facade over the programme's store."""
    return Plans(programme.store)


def _words(text: str) -> list[str]:
    """Typed text as words, full-width characters read as ASCII, commas as spaces."""
    return unicodedata.normalize("NFKC", text).replace(",", " ").replace("、", " ").split()


def _is_none(text: str) -> bool:
    return " ".join(_words(text)).casefold() in _NONE_WORDS


# --- validation of each typed step ------------------------------------------------------------


def parse_multiplier(text: str) -> Decimal:
    """The plan's multiplier as typed (1–5, at most two decimals); raises RuleError."""
    words = _words(text)
    shown = text.strip()[:24]
    try:
        value = Decimal(words[0].removesuffix("x").removesuffix("倍")) if len(words) == 1 else None
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise RuleError(N_("plans.error.multiplier_not_number"), value=shown)
    # Two decimals at most: the rate a member is told must be the rate that is applied.
    if not MULTIPLIER_MIN <= value <= MULTIPLIER_MAX or value != value.quantize(Decimal("0.01")):
        raise RuleError(N_("plans.error.multiplier_range"), value=shown)
    return value.normalize()


def parse_window(text: str, today: date) -> tuple[date, date]:
    """The plan's first and last local day typed as `2026-12-01 2027-03-31`; raises RuleError
    (not two dates, end before start, already over)."""
    words = [w for w in _words(text) if w not in ("~", "至", "到", "-", "to")]
    if len(words) != 2 or not all(_DAY.fullmatch(w) for w in words):
        raise RuleError(N_("plans.error.window_format"), value=text.strip()[:40])
    try:
        starts, ends = (date(*map(int, w.split("-"))) for w in words)
    except ValueError:
        raise RuleError(N_("plans.error.window_format"), value=text.strip()[:40]) from None
    if ends < starts:
        raise RuleError(N_("plans.error.window_reversed"), starts=starts, ends=ends)
    if ends < today:
        raise RuleError(N_("plans.error.window_over"), ends=ends, today=today)
    return starts, ends


def parse_gift(text: str) -> tuple[int, int] | None:
    """The spend-threshold gift typed as `<yuan> <points>` (满 ¥5,000 赠 500: `5000 500`), or
    None for none; raises RuleError."""
    if _is_none(text):
        return None
    words = [w.lstrip("¥￥").removesuffix("元").removesuffix("积分") for w in _words(text)]
    if len(words) != 2 or not all(w.isascii() and w.isdigit() for w in words):
        raise RuleError(N_("plans.error.gift_format"), value=text.strip()[:40])
    yuan, points = int(words[0]), int(words[1])
    if not 0 < yuan <= THRESHOLD_MAX_YUAN:
        raise RuleError(N_("plans.error.gift_threshold"), value=words[0])
    if not 0 < points <= GIFT_MAX:
        raise RuleError(N_("plans.error.gift_points"), value=words[1], max=GIFT_MAX)
    return yuan * 100, points


def parse_skus(text: str, config: Config) -> tuple[str, ...]:
    """The mall items with priority access, typed by SKU (any case), or none; raises RuleError
    naming an unknown one."""
    if _is_none(text):
        return ()
    skus: list[str] = []
    for word in _words(text):
        sku = word.upper()
        if config.mall.item(sku) is None:
            known = ", ".join(item.sku for item in config.mall.items)
            raise RuleError(N_("plans.error.unknown_sku"), value=word[:24], known=known)
        if sku not in skus:
            skus.append(sku)
    return tuple(skus)


def parse_advisor(text: str, config: Config) -> tuple[int, str] | None:
    """The advisor typed as `<staff Telegram id> <contact the member sees>`, or none; raises
    RuleError (not a number, not staff, no contact)."""
    if _is_none(text):
        return None
    first, _, contact = text.strip().partition(" ")
    first = unicodedata.normalize("NFKC", first)
    if not first.isascii() or not first.isdigit() or len(first) > 15:
        raise RuleError(N_("plans.error.advisor_format"), value=text.strip()[:40])
    if not is_staff(config, int(first)):  # any role may advise
        raise RuleError(N_("plans.error.advisor_not_staff"), value=first)
    contact = " ".join(contact.split())
    if not contact or len(contact) > CONTACT_MAX:
        raise RuleError(N_("plans.error.advisor_contact"), max=CONTACT_MAX)
    return int(first), contact


def _reason(text: str) -> str:
    """A reason typed for a change (required); raises RuleError."""
    reason = " ".join(text.split())
    if not reason:
        raise RuleError(N_("plans.error.reason_missing"))
    if len(reason) > REASON_MAX:
        raise RuleError(N_("plans.error.reason_long"), max=REASON_MAX)
    return reason


# --- key customers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MarkDone:
    """A mark or unmark: the member, and whether it changed anything."""

    member: Member
    changed: bool


async def mark_key_customer(
    programme: Programme, code: str, reason: str, *, marked: bool, actor: str
) -> MarkDone:
    """Mark (or unmark) the member with this code as a key customer, with a reason; raises
    RuleError (code, member, reason)."""
    member = await find_member(programme, code)
    why = _reason(reason)
    plans = _plans(programme)
    if marked:
        changed = await plans.mark(member.id, actor=actor, reason=why, now=programme.now())
    else:
        changed = await plans.unmark(member.id, actor=actor, reason=why, now=programme.now())
    return MarkDone(member, changed)


# --- the /plan conversation ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanStep:
    """Where a /plan conversation stands: the member, the step asked, the terms so far."""

    member: Member
    step: str
    terms: dict[str, Any]
    # The member's running plan, which confirming replaces.
    replaces: Plan | None = None


async def _step(programme: Programme, found: PlanDraft) -> PlanStep:
    member = await programme.members.by_id(found.member_id)
    replaces = await _plans(programme).running_plan(found.member_id, programme.now())
    return PlanStep(member, found.step, found.terms, replaces)


async def start_plan(programme: Programme, staff_id: int, code: str) -> PlanStep:
    """Open a /plan conversation for the member with this code (any earlier one is dropped);
    raises RuleError (code, member)."""
    member = await find_member(programme, code)
    plans = _plans(programme)
    await plans.save_draft(
        staff_id, member.id, "categories", {"categories": []}, now=programme.now()
    )
    replaces = await plans.running_plan(member.id, programme.now())
    return PlanStep(member, "categories", {"categories": []}, replaces)


async def _draft_at(programme: Programme, staff_id: int, step: str | None = None) -> PlanDraft:
    found = await _plans(programme).draft(staff_id)
    if found is None or (step is not None and found.step != step):
        raise StalePlanStep(N_("button.expired"))
    return found


async def toggle_category(programme: Programme, staff_id: int, category_id: str) -> PlanStep:
    """A category button: add or take it out of the plan's categories; raises StalePlanStep
    (no such step open, a category not configured)."""
    found = await _draft_at(programme, staff_id, "categories")
    if programme.config.earn.category(category_id) is None:
        raise StalePlanStep(N_("button.expired"))
    chosen = list(found.terms.get("categories", []))
    if category_id in chosen:
        chosen.remove(category_id)
    else:
        chosen.append(category_id)
    order = [c.id for c in programme.config.earn.categories]
    terms = {**found.terms, "categories": sorted(chosen, key=order.index)}
    await _plans(programme).save_draft(
        staff_id, found.member_id, "categories", terms, now=programme.now()
    )
    return await _step(programme, PlanDraft(staff_id, found.member_id, "categories", terms))


async def categories_chosen(programme: Programme, staff_id: int) -> PlanStep:
    """The categories' "next" button: on to the multiplier; raises StalePlanStep."""
    found = await _draft_at(programme, staff_id, "categories")
    await _plans(programme).save_draft(
        staff_id, found.member_id, "multiplier", found.terms, now=programme.now()
    )
    return await _step(programme, PlanDraft(staff_id, found.member_id, "multiplier", found.terms))


async def answer_step(programme: Programme, staff_id: int, text: str) -> PlanStep:
    """A typed answer to the step asked: check it and move to the next step; raises RuleError
    (a bad answer: the step is asked again) or StalePlanStep (nothing is being asked)."""
    found = await _draft_at(programme, staff_id)
    config = programme.config
    terms = dict(found.terms)
    if found.step == "multiplier":
        terms["multiplier"] = str(parse_multiplier(text))
    elif found.step == "window":
        starts, ends = parse_window(text, local_today(programme.now(), config))
        terms["starts_on"], terms["ends_on"] = starts.isoformat(), ends.isoformat()
    elif found.step == "gift":
        gift = parse_gift(text)
        terms["gift"] = None if gift is None else list(gift)
    elif found.step == "skus":
        terms["skus"] = list(parse_skus(text, config))
    elif found.step == "advisor":
        advisor = parse_advisor(text, config)
        terms["advisor"] = None if advisor is None else list(advisor)
    else:
        raise StalePlanStep(N_("button.expired"))
    step = STEPS[STEPS.index(found.step) + 1]
    await _plans(programme).save_draft(staff_id, found.member_id, step, terms, now=programme.now())
    return await _step(programme, PlanDraft(staff_id, found.member_id, step, terms))


def draft_terms(terms: dict[str, Any], config: Config) -> PlanTerms:
    """The terms of a finished draft; raises StalePlanStep when one is missing or no longer
    valid (a category or item removed from the configuration since)."""
    try:
        starts = date.fromisoformat(terms["starts_on"])
        ends = date.fromisoformat(terms["ends_on"])
        gift, advisor = terms["gift"], terms["advisor"]
        categories = tuple(terms["categories"])
        skus = tuple(terms["skus"])
        multiplier = Decimal(terms["multiplier"])
    except (KeyError, ValueError, TypeError, InvalidOperation):
        raise StalePlanStep(N_("button.expired")) from None
    if any(config.earn.category(c) is None for c in categories) or any(
        config.mall.item(s) is None for s in skus
    ):
        raise StalePlanStep(N_("button.expired"))
    return PlanTerms(
        categories=categories,
        multiplier=multiplier,
        starts_on=starts,
        ends_on=ends,
        from_at=_midnight(starts, config),
        until_at=end_of_day(ends, config),
        gift_threshold_fen=None if gift is None else int(gift[0]),
        gift_points=None if gift is None else int(gift[1]),
        skus=skus,
        advisor_id=None if advisor is None else int(advisor[0]),
        advisor_contact=None if advisor is None else str(advisor[1]),
    )


def _midnight(day: date, config: Config) -> datetime:
    """The instant a local day begins."""
    return datetime(day.year, day.month, day.day, tzinfo=config.program.tz)


@dataclass(frozen=True, slots=True)
class PlanSet:
    """A plan set for a member, and the plan it replaced."""

    member: Member
    plan: Plan
    replaced: Plan | None


async def confirm_plan(programme: Programme, staff_id: int, *, actor: str) -> PlanSet:
    """The confirm button: set the plan (replacing the running one), record it, tell the member,
    all in one transaction; raises StalePlanStep (no finished draft, or one no longer valid)."""
    found = await _draft_at(programme, staff_id, "confirm")
    config, now = programme.config, programme.now()
    terms = draft_terms(found.terms, config)
    member = await programme.members.by_id(found.member_id)

    def book(conn: sqlite3.Connection) -> tuple[Plan, Plan | None]:
        current = store.draft(conn, staff_id)
        if current is None or current.step != "confirm" or current.terms != found.terms:
            raise StalePlanStep(N_("button.expired"))  # a second tap, or another /plan since
        made, replaced = store.add_plan(
            conn, found.member_id, terms, actor=actor, reason="/plan", now=now
        )
        store.drop_draft(conn, staff_id)
        enqueue(
            conn,
            [
                Push(
                    f"plan:{made.id}:set",
                    found.member_id,
                    SERVICE,
                    # /advisor is only worth naming when the plan gives one.
                    N_("plans.notice_set")
                    if terms.advisor_id is not None
                    else N_("plans.notice_set_no_advisor"),
                    {"terms": terms_text(terms, config)},
                )
            ],
            now,
        )
        return made, replaced

    made, replaced = await programme.store.write(book)
    return PlanSet(member, made, replaced)


async def drop_plan_draft(programme: Programme, staff_id: int) -> None:
    """/cancel or the cancel button: forget the /plan conversation."""
    await _plans(programme).drop_draft(staff_id)


# --- what a plan says ---------------------------------------------------------------------------


def terms_lines(
    terms: PlanTerms, config: Config, language: str
) -> list[tuple[str, dict[str, object]]]:
    """A plan's terms as catalog lines (message key, params) in one language."""
    names = [
        category.name.get(language)
        for category in config.earn.categories
        if not terms.categories or category.id in terms.categories
    ]
    separator = "、" if language == "zh-CN" else ", "
    lines: list[tuple[str, dict[str, object]]] = [
        (
            N_("plans.terms.window"),
            {"starts": terms.starts_on.isoformat(), "ends": terms.ends_on.isoformat()},
        )
    ]
    if terms.multiplier > 1:
        key = (
            N_("plans.terms.multiplier_all")
            if not terms.categories
            else N_("plans.terms.multiplier")
        )
        lines.append(
            (
                key,
                {"multiplier": format(terms.multiplier, "f"), "categories": separator.join(names)},
            )
        )
    if terms.gift_threshold_fen is not None and terms.gift_points is not None:
        lines.append(
            (
                N_("plans.terms.gift"),
                {
                    "yuan": f"{terms.gift_threshold_fen // 100:,}",
                    "points": f"{terms.gift_points:,}",
                },
            )
        )
    if terms.skus:
        items = [config.mall.item(sku) for sku in terms.skus]
        lines.append(
            (
                N_("plans.terms.skus"),
                {"items": separator.join(i.name.get(language) for i in items if i is not None)},
            )
        )
    if terms.advisor_contact is not None:
        lines.append((N_("plans.terms.advisor"), {"contact": terms.advisor_contact}))
    return lines


def terms_text(terms: PlanTerms, config: Config) -> dict[str, str]:
    """A plan's terms, one line each, in every language (for the member's message)."""
    i18n = packaged()
    return {
        language: "\n".join(
            i18n.t(language, key, **params) for key, params in terms_lines(terms, config, language)
        )
        for language in LANGUAGES
    }


def plan_state(plan: Plan, now: datetime) -> str:
    """'running', 'ahead' (its window not begun), 'ended' (early) or 'expired'."""
    # A plan closed after its end (a new plan overlapping its old window) simply expired.
    if plan.ended_at is not None and plan.ended_at < plan.terms.until_at:
        return "ended"
    if plan.ended_at is not None or now >= plan.terms.until_at:
        return "expired"
    return "ahead" if now < plan.terms.from_at else "running"


# --- ending, listing, history ------------------------------------------------------------------


async def end_member_plan(
    programme: Programme, code: str, reason: str, *, actor: str
) -> tuple[Member, Plan]:
    """End the running plan of the member with this code early, with a reason; raises
    RuleError (code, member, reason, no running plan)."""
    member = await find_member(programme, code)
    why = _reason(reason)
    ended = await _plans(programme).end_plan(
        member.id, actor=actor, reason=why, now=programme.now()
    )
    if ended is None:
        raise RuleError(N_("plans.error.no_plan"), name=member.display_name)
    return member, ended


@dataclass(frozen=True, slots=True)
class PlanListed:
    """A running plan with its member, for /plans."""

    plan: Plan
    member: Member
    key_customer: bool


async def running_plans(programme: Programme) -> list[PlanListed]:
    """Every running plan (soonest ending first) with its member."""
    plans = _plans(programme)
    found = await plans.all_running(programme.now())
    marked = await plans.key_customers_among([p.member_id for p in found])
    return [
        PlanListed(p, await programme.members.by_id(p.member_id), p.member_id in marked)
        for p in found
    ]


@dataclass(frozen=True, slots=True)
class PlanHistory:
    """A member's plans (each with its state now) and every change staff made."""

    member: Member
    plans: list[tuple[Plan, str]]
    changes: list[PlanChange]


async def plan_history(programme: Programme, code: str) -> PlanHistory:
    """The member's plans and history of marks and plans; raises RuleError (code, member)."""
    member = await find_member(programme, code)
    plans, now = _plans(programme), programme.now()
    given = [(p, plan_state(p, now)) for p in await plans.plans_of(member.id)]
    return PlanHistory(member, given, await plans.plan_changes(member.id))


# --- earning: THE plan part of the purchase hook --------------------------------------------------


def plan_bonus(points: int, multiplier: Decimal) -> int:
    """A plan's extra points on a purchase's own points: floor(points × (multiplier − 1))."""
    return int((Decimal(points) * (multiplier - 1)).to_integral_value(ROUND_FLOOR))


def plan_bonus_key(plan_id: int, operation_id: int) -> str:
    """Idempotency key of a plan's bonus on one purchase."""
    return f"plan:{plan_id}:{operation_id}"


def plan_gift_key(plan_id: int) -> str:
    """Idempotency key of a plan's spend-threshold gift: once per plan."""
    return f"plan_gift:{plan_id}"


@dataclass(frozen=True, slots=True)
class PlanMoved:
    """What plans booked for a batch: bonuses (plan id, purchase op, points) and gifts
    (plan id, points)."""

    bonuses: tuple[tuple[int, int, int], ...] = ()
    gifts: tuple[tuple[int, int], ...] = ()


def _governing(plans: Sequence[Plan], day: date) -> Plan | None:
    """The plan whose window holds a purchase's local day (running plans never overlap)."""
    return next((p for p in plans if p.terms.starts_on <= day <= p.terms.ends_on), None)


def plans_moved(
    conn: sqlite3.Connection,
    booked: Sequence[BookedPurchase],
    config: Config,
    now: datetime,
    *,
    actor: str,
) -> PlanMoved:
    """THE plan part of the purchase hook, in the transaction that booked the purchases (never
    replays): each purchase dated in a running plan's window earns the plan's extra points in
    its categories, and counts towards its spend threshold (the gift once per plan)."""
    if not booked:
        return PlanMoved()
    # One query for the batch: most members have no plan at all.
    running = store.running_plans(conn, {p.member_id for p in booked}, now)
    if not running:
        return PlanMoved()
    bonuses: list[tuple[int, int, int]] = []
    spent: dict[int, int] = defaultdict(int)
    governing: dict[int, Plan] = {}
    expiry = expires_at(now, config, PLAN_SOURCE)
    for purchase in booked:
        plans = running.get(purchase.member_id)
        plan = _governing(plans, purchase.day) if plans else None
        if plan is None:
            continue
        governing[plan.id] = plan
        spent[plan.id] += purchase.fen
        terms = plan.terms
        if terms.categories and purchase.category_id not in terms.categories:
            continue
        if (points := plan_bonus(purchase.points, terms.multiplier)) <= 0:
            continue
        ledger.earn(
            conn,
            purchase.member_id,
            points,
            kind=PLAN_SOURCE,
            key=plan_bonus_key(plan.id, purchase.operation_id),
            actor=actor,
            expires_at=expiry,
            reason=f"plan {plan.id}",
            meta={
                "plan": plan.id,
                "purchase_operation": purchase.operation_id,
                "multiplier": str(terms.multiplier),
            },
            now=now,
        )
        bonuses.append((plan.id, purchase.operation_id, points))
    gifts: list[tuple[int, int]] = []
    pushes: list[Push] = []
    for plan_id, fen in sorted(spent.items()):
        total = store.add_spend(conn, plan_id, fen)
        plan = governing[plan_id]
        threshold, gift = plan.terms.gift_threshold_fen, plan.terms.gift_points
        if threshold is None or gift is None or total < threshold:
            continue
        key = plan_gift_key(plan_id)
        if ledger.existing_keys(conn, [key]):
            continue
        ledger.earn(
            conn,
            plan.member_id,
            gift,
            kind=PLAN_SOURCE,
            key=key,
            actor=actor,
            expires_at=expiry,
            reason=f"plan {plan_id} gift",
            meta={"plan": plan_id, "threshold_fen": threshold},
            now=now,
        )
        gifts.append((plan_id, gift))
        pushes.append(
            Push(
                f"plan:{plan_id}:gift",
                plan.member_id,
                SERVICE,
                N_("plans.notice_gift"),
                {"yuan": f"{threshold // 100:,}", "points": f"{gift:,}"},
            )
        )
    if pushes:
        enqueue(conn, pushes, now)
    return PlanMoved(tuple(bonuses), tuple(gifts))


# --- the mall's priority access ------------------------------------------------------------------


def priority_skus(conn: sqlite3.Connection, member_id: int, now: datetime) -> frozenset[str]:
    """The mall items the member's running plan gives priority access to (none without one)."""
    return store.priority_skus_of(conn, member_id, now)


# --- the advisor ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Advisor:
    """A member's advisor: the staff member's Telegram id and the contact the member sees."""

    telegram_id: int
    contact: str


async def advisor_of(programme: Programme, member_id: int) -> Advisor | None:
    """The advisor of the member's plan running now (within its window), if it names one."""
    now = programme.now()
    plan = await _plans(programme).running_plan(member_id, now)
    if plan is None or plan_state(plan, now) != "running":
        return None
    terms = plan.terms
    if terms.advisor_id is None or terms.advisor_contact is None:
        return None
    return Advisor(terms.advisor_id, terms.advisor_contact)


@dataclass(frozen=True, slots=True)
class Question:
    """A member's question for their advisor, ready to forward."""

    advisor: Advisor
    member: Member
    text: str


async def ask_advisor(programme: Programme, member: Member, text: str) -> Question:
    """A member's question for their advisor; raises RuleError (no advisor, empty, too long)."""
    advisor = await advisor_of(programme, member.id)
    if advisor is None:
        raise RuleError(
            N_("plans.advisor_none"), support=programme.config.program.support_contact or "-"
        )
    question = text.strip()
    if not question:
        raise RuleError(N_("plans.advisor_empty"))
    if len(question) > QUESTION_MAX:
        raise RuleError(N_("plans.advisor_too_long"), max=QUESTION_MAX)
    return Question(advisor, member, question)


# --- /vip -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VipLine:
    """One of the top members: their total, tier, key-customer mark and plan."""

    member: TopMember
    total: int
    tier: Tier | None
    plan: Plan | None


def vip_count(args: Sequence[str]) -> int:
    """How many /vip lists (default 10, at most 50); raises RuleError."""
    if not args:
        return VIP_DEFAULT
    text = unicodedata.normalize("NFKC", args[0])
    if len(args) > 1 or not text.isascii() or not text.isdigit() or not 1 <= int(text) <= VIP_MAX:
        raise RuleError(N_("plans.vip_usage"), max=VIP_MAX)
    return int(text)


async def top_members(programme: Programme, count: int) -> list[VipLine]:
    """The top `count` members by qualifying total this window, highest first."""
    config, now = programme.config, programme.now()
    months = qualification_months(local_today(now, config), config)
    plans = _plans(programme)
    found = await plans.top_members(
        months, by_fen=config.tiers.measure == "spend_yuan", limit=count
    )
    lines: list[VipLine] = []
    for top in found:
        lines.append(
            VipLine(
                top,
                measure(Qualifying(top.points, top.fen), config),
                tier_named(top.tier_id, config) if tiers_on(config) else None,
                await plans.running_plan(top.member_id, now),
            )
        )
    return lines
