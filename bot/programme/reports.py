"""The monthly report: what the programme issued, what members spent and let expire, what they
still hold (the points liability), and what campaigns, tasks and games cost.

The rules live here: a month is a calendar month in the programme's timezone; the ledger is
read as it stood at the month's end; the liability is what members hold at the base
bill-deduction rate; breakage is the share of points leaving members that expired unused. The
roll-forward must reconcile: opening + issued − taken back − redeemed − game cost − expired −
other debits = closing, with the closing computed independently from the lots members hold.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from bot.config import Config, Localized
from bot.programme.calendar import add_months, local_today
from bot.programme.context import Programme
from storage import reports as figures
from storage.ledger import EXPIRED_SINK
from storage.sql import dt, ts

REDEEMED_SINK: Final = "redeemed"
GAME_COST_SINK: Final = "game_cost"
GAME_SOURCE: Final = "game"
# What members owe after purchase returns they had already spent the points of
# (bot.programme.purchase_returns): a receivable, not a source that issues points.
OWED_ACCOUNT: Final = "owed"
CENT: Final = Decimal("0.01")
_MONTH: Final = re.compile(r"^(\d{4})-(\d{2})$")

# What the report says its figures mean (the CLI prints these; the chat has its own words).
BREAKAGE_DEFINITION: Final = (
    "breakage = points expired ÷ points that left members (redeemed net of refunds + game cost"
    " + expired) in the month"
)
LIABILITY_DEFINITION: Final = (
    "liability = points outstanding at the month's end ÷ the base bill-deduction rate"
    " (points per yuan); tiers with a better rate would cost more"
)


class ReportError(Exception):
    """A month the report cannot be made for."""


class BadMonth(ReportError):
    """Not a month written YYYY-MM."""


class FutureMonth(ReportError):
    """A month that has not begun yet."""


def parse_month(text: str) -> date:
    """The first day of a month written YYYY-MM; raises BadMonth."""
    match = _MONTH.match(text.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1970:
        raise BadMonth(text)
    return date(int(match.group(1)), int(match.group(2)), 1)


def month_label(month: date) -> str:
    """A month as YYYY-MM."""
    return f"{month:%Y-%m}"


def last_complete_month(now: datetime, config: Config) -> date:
    """The latest month that has ended, in the programme's timezone."""
    return add_months(local_today(now, config).replace(day=1), -1)


def check_month(month: date, now: datetime, config: Config) -> None:
    """Accept the current month (reported to date) and earlier ones; raises FutureMonth."""
    if month > local_today(now, config).replace(day=1):
        raise FutureMonth(month_label(month))


def owner_report_due(now: datetime, config: Config) -> date | None:
    """The month whose report owners are sent at `now`: last month, from the 1st until
    `push.catch_up_days` after it (a bot down that long leaves it to /report); None outside."""
    today = local_today(now, config)
    if (today - today.replace(day=1)).days > config.push.catch_up_days:
        return None
    return add_months(today.replace(day=1), -1)


def month_bounds(month: date, config: Config) -> tuple[datetime, datetime]:
    """The instants a month begins and ends: local midnights of its 1st and the next month's."""
    tz = config.program.tz
    return (
        datetime.combine(month, time(0), tzinfo=tz),
        datetime.combine(add_months(month, 1), time(0), tzinfo=tz),
    )


def points_in_yuan(points: int, config: Config) -> Decimal:
    """What points are worth at the base bill-deduction rate, to the fen."""
    rate = config.redemption.deduction_points_per_yuan
    return (Decimal(points) / Decimal(rate)).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class SourceLine:
    """One source account in the month: points issued, and points taken back into it (a
    purchase return, a correction downwards)."""

    source: str
    issued: int
    taken_back: int

    @property
    def net(self) -> int:
        """Issued less taken back."""
        return self.issued - self.taken_back


@dataclass(frozen=True, slots=True)
class ItemLine:
    """One mall item (or 'other' spends into the redeemed account): redemptions in the month and
    the refunds booked in it."""

    sku: str
    name: Localized | None
    kind: str
    redeemed: int
    points: int
    refunded: int
    refunded_points: int

    @property
    def net_points(self) -> int:
        """Points redeemed less points given back."""
        return self.points - self.refunded_points


@dataclass(frozen=True, slots=True)
class ExpiryBucket:
    """Points outstanding at the month's end whose last valid day is in one local month (None:
    they never expire); an `overdue` bucket (no month) expired already and waits for the sweep."""

    month: date | None
    points: int
    yuan: Decimal
    overdue: bool = False


@dataclass(frozen=True, slots=True)
class RollForward:
    """The month's movement of the points members hold, and whether it reconciles."""

    opening: int
    issued: int
    taken_back: int
    redeemed: int
    game_cost: int
    expired: int
    # Net debits into any other system account (a sink added later), by name.
    other: Mapping[str, int]
    # What members held at the end: from their postings, and independently from their lots.
    closing_postings: int
    closing_lots: int

    @property
    def expected(self) -> int:
        """Opening + issued − taken back − redeemed − game cost − expired − other debits."""
        spent = self.redeemed + self.game_cost + self.expired + sum(self.other.values())
        return self.opening + self.issued - self.taken_back - spent

    @property
    def reconciles(self) -> bool:
        """The roll-forward lands on both independent closings."""
        return self.expected == self.closing_postings == self.closing_lots


@dataclass(frozen=True, slots=True)
class CostLine:
    """Points a campaign or a task cost in the month, and what they are worth."""

    id: str
    name: Localized | None
    operations: int
    points: int
    yuan: Decimal


@dataclass(frozen=True, slots=True)
class GameLine:
    """Game prizes paid in the month against the wheel's daily budget over its days."""

    paid: int
    paid_yuan: Decimal
    # The daily budget × the month's days (None: no games configured).
    budget: int | None
    days_played: int
    days_at_budget: int
    busiest_day: int


@dataclass(frozen=True, slots=True)
class OwedLine:
    """Points members owe after purchase returns: recorded and settled in the month, and
    still owed at its end (not part of what they hold: owed points are never a negative
    balance)."""

    recorded: int
    settled: int
    outstanding: int


@dataclass(frozen=True, slots=True)
class TierLine:
    """Members holding one tier at the month's end."""

    tier: str
    name: Localized | None
    members: int


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    """Every figure of one month's report."""

    month: date
    start: datetime
    end: datetime
    # False: the current month, read as far as `end` (now).
    complete: bool
    sources: tuple[SourceLine, ...]
    items: tuple[ItemLine, ...]
    roll: RollForward
    outstanding: tuple[ExpiryBucket, ...]
    liability: Decimal
    points_per_yuan: int
    members_total: int
    members_new: int
    members_active: int
    tiers: tuple[TierLine, ...]
    game: GameLine
    campaigns: tuple[CostLine, ...]
    tasks: tuple[CostLine, ...]
    owed: OwedLine = OwedLine(0, 0, 0)

    @property
    def label(self) -> str:
        """The month as YYYY-MM."""
        return month_label(self.month)

    @property
    def issued(self) -> int:
        """Points issued by every source."""
        return self.roll.issued

    @property
    def redeemed(self) -> int:
        """Points redeemed in the mall, net of refunds."""
        return self.roll.redeemed

    @property
    def expired(self) -> int:
        """Points expired."""
        return self.roll.expired

    @property
    def closing(self) -> int:
        """Points outstanding at the end (from the lots)."""
        return self.roll.closing_lots

    @property
    def breakage(self) -> Decimal | None:
        """Expired ÷ (redeemed + game cost + expired), as a percentage to one decimal; None
        when no points left members."""
        left = self.roll.redeemed + self.roll.game_cost + self.roll.expired
        if left <= 0:
            return None
        return (Decimal(100) * self.roll.expired / left).quantize(
            Decimal("0.1"), rounding=ROUND_HALF_UP
        )


def _buckets(
    rows: list[tuple[int | None, int]], end: datetime, config: Config
) -> tuple[ExpiryBucket, ...]:
    """Lots' remainders per expiry instant, gathered per local month of their last valid day."""
    tz = config.program.tz
    end_ts = ts(end)
    months: dict[date | None, int] = {}
    overdue = 0
    for at, points in rows:
        if at is None:
            months[None] = months.get(None, 0) + points
        elif at <= end_ts:
            overdue += points
        else:
            # The last valid day is the one before the expiry instant (a local midnight).
            day = (dt(at).astimezone(tz) - timedelta(microseconds=1)).date()
            months[day.replace(day=1)] = months.get(day.replace(day=1), 0) + points
    buckets = []
    if overdue:
        buckets.append(ExpiryBucket(None, overdue, points_in_yuan(overdue, config), overdue=True))
    dated = sorted(m for m in months if m is not None)
    for month in [*dated, *([None] if None in months else [])]:
        buckets.append(ExpiryBucket(month, months[month], points_in_yuan(months[month], config)))
    return tuple(buckets)


def monthly_report(
    conn: sqlite3.Connection, month: date, config: Config, *, now: datetime | None = None
) -> MonthlyReport:
    """The report of `month` (its first day) read from the ledger in one snapshot; a month not
    over at `now` is read up to `now`. Raises FutureMonth."""
    start, end = month_bounds(month, config)
    complete = True
    if now is not None:
        check_month(month, now, config)
        if now < end:
            end, complete = now, False
    s, e = ts(start), ts(end)
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")  # one snapshot: the figures must agree with each other
    try:
        movements = figures.account_movements(conn, s, e)
        lots = figures.outstanding_by_expiry(conn, e)
        redemptions = figures.redemptions_by_item(conn, s, e)
        campaigns = figures.campaign_costs(conn, s, e)
        tasks = figures.task_costs(conn, s, e)
        last_day = (end - timedelta(microseconds=1)).astimezone(config.program.tz).date()
        budget = config.wheel.daily_budget if config.wheel is not None else 0
        games = figures.game_days(conn, month, last_day, budget)
        members = figures.member_counts(conn, s, e)
        tiers = figures.tiers_at(conn, e)
    finally:
        if began:
            conn.execute("COMMIT")

    sources = tuple(
        # A source posts its issue as a debit (it goes negative) and takes points back as a
        # credit.
        SourceLine(str(m.name), m.debits, m.credits)
        for m in movements
        if m.kind == "source" and m.name != OWED_ACCOUNT
    )
    # A return books the points it could not take from the member against the owed account
    # (debit) and a later settlement pays it (credit): what members actually gave back is
    # what the sources took back, less the one, plus the other.
    owed_account = next(
        (m for m in movements if m.kind == "source" and m.name == OWED_ACCOUNT), None
    )
    owed = OwedLine(0, 0, 0)
    if owed_account is not None:
        owed = OwedLine(
            recorded=owed_account.debits,
            settled=owed_account.credits,
            outstanding=-(owed_account.before + owed_account.credits - owed_account.debits),
        )
    sinks = {str(m.name): m.credits - m.debits for m in movements if m.kind == "sink"}
    member = movements[-1]
    roll = RollForward(
        opening=member.before,
        issued=sum(line.issued for line in sources),
        taken_back=sum(line.taken_back for line in sources) - owed.recorded + owed.settled,
        redeemed=sinks.pop(REDEEMED_SINK, 0),
        game_cost=sinks.pop(GAME_COST_SINK, 0),
        expired=sinks.pop(EXPIRED_SINK, 0),
        other={name: value for name, value in sinks.items() if value},
        closing_postings=member.before + member.credits - member.debits,
        closing_lots=sum(points for _at, points in lots),
    )
    items = [
        ItemLine(
            r.sku,
            item.name if (item := config.mall.item(r.sku)) is not None else None,
            r.kind,
            r.redeemed,
            r.points,
            r.refunded,
            r.refunded_points,
        )
        for r in redemptions
    ]
    # Spends into the redeemed account that are no mall redemption still count, as 'other'.
    unmatched = roll.redeemed - sum(line.net_points for line in items)
    if unmatched:
        items.append(ItemLine("other", None, "other", 0, unmatched, 0, 0))
    outstanding = _buckets(lots, end, config)
    levels = config.tiers.levels
    tier_lines: tuple[TierLine, ...] = ()
    if levels:
        counted = dict(tiers)
        lowest = levels[0].id
        counted[lowest] = counted.get(lowest, 0) + members.total - sum(tiers.values())
        tier_lines = tuple(TierLine(t.id, t.name, counted.pop(t.id, 0)) for t in levels) + tuple(
            TierLine(tier, None, count) for tier, count in sorted(counted.items())
        )
    game_paid = next((line.net for line in sources if line.source == GAME_SOURCE), 0)
    days = (add_months(month, 1) - month).days
    game = GameLine(
        paid=game_paid,
        paid_yuan=points_in_yuan(game_paid, config),
        budget=None if config.wheel is None else config.wheel.daily_budget * days,
        days_played=games.days_played,
        days_at_budget=games.days_at_budget if config.wheel is not None else 0,
        busiest_day=games.busiest_day,
    )
    campaign_names = {c.id: c.name for c in config.campaigns}
    task_names = {t.id: t.name for t in config.tasks}
    return MonthlyReport(
        month=month,
        start=start,
        end=end,
        complete=complete,
        sources=sources,
        items=tuple(items),
        roll=roll,
        outstanding=outstanding,
        liability=points_in_yuan(roll.closing_lots, config),
        points_per_yuan=config.redemption.deduction_points_per_yuan,
        members_total=members.total,
        members_new=members.new,
        members_active=members.active,
        tiers=tier_lines,
        game=game,
        campaigns=tuple(
            CostLine(
                c.id,
                campaign_names.get(c.id),
                c.operations,
                c.points,
                points_in_yuan(c.points, config),
            )
            for c in campaigns
        ),
        tasks=tuple(
            CostLine(
                t.id, task_names.get(t.id), t.operations, t.points, points_in_yuan(t.points, config)
            )
            for t in tasks
        ),
        owed=owed,
    )


async def report_for(programme: Programme, month_text: str | None = None) -> MonthlyReport:
    """The report an owner asked for: `month_text` (YYYY-MM), or the last complete month;
    the current month is reported to date. Raises BadMonth, FutureMonth."""
    now = programme.now()
    config = programme.config
    month = last_complete_month(now, config) if month_text is None else parse_month(month_text)
    check_month(month, now, config)
    return await programme.store.read(lambda conn: monthly_report(conn, month, config, now=now))
