"""Each member's green contribution: eco spend, green points and estimated impact (/green), and
the monthly green report.

What counts, in one place:
- green categories are those whose `impact_kg_per_yuan` is above 0 in the configuration in
  force (a category set to 0 stops counting, for past purchases too);
- eco spend is the amount of every purchase booked in a green category, by the local day of
  purchase (a receipt imported later counts in the month it was bought); adjustments, task
  and share rewards, transfers and purchases taken back do not count;
- green points are those purchases' own points plus the campaign bonus booked on them;
- the impact is the sum of spend × the category's factor, an estimate rounded once when shown
  (to 0.1 kg under 100 kg, to the kilogram from there).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from bot.config import Category, Config
from bot.i18n import N_
from bot.programme.calendar import add_months, local_today
from bot.programme.context import Programme
from storage.green import GreenPurchases, MemberGreenPurchases
from storage.pushes import MARKETING, Push

# Months the monthly report's chart shows, ending with the month reported.
CHART_MONTHS: Final = 6
# Under this many kg an impact is shown to 0.1 kg, from here to the kilogram.
WHOLE_KG_FROM: Final = Decimal(100)
GREEN_PREFIX: Final = "green"
# The earliest month a chart button may name (older ones are forged).
FIRST_MONTH: Final = date(2000, 1, 1)
_EN_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True, slots=True)
class GreenFigures:
    """Eco spend, green points and estimated impact over some span."""

    spend: Decimal  # yuan
    points: int  # purchase points, campaign bonus included
    bonus_points: int  # of which the campaign bonus
    impact_kg: Decimal  # unrounded: round with `shown_impact`
    purchases: int

    @property
    def any(self) -> bool:
        """Whether anything green was bought."""
        return self.purchases > 0


NOTHING: Final = GreenFigures(Decimal("0.00"), 0, 0, Decimal(0), 0)


@dataclass(frozen=True, slots=True)
class GreenContribution:
    """What /green shows: this local month, this local year, overall, and per category."""

    month: date  # the first day of this local month
    this_month: GreenFigures
    this_year: GreenFigures
    overall: GreenFigures
    # Overall, per green category with any purchase, in configuration order.
    by_category: tuple[tuple[Category, GreenFigures], ...]
    # Every green category with its factor (kg CO2e per yuan), in configuration order.
    factors: tuple[tuple[Category, Decimal], ...]


def green_categories(config: Config) -> tuple[Category, ...]:
    """The categories that count as green: an impact factor above 0."""
    return tuple(c for c in config.earn.categories if c.impact_kg_per_yuan > 0)


def shown_impact(kg: Decimal) -> Decimal:
    """An impact as shown: to 0.1 kg under WHOLE_KG_FROM, else to the kilogram (half up)."""
    step = Decimal(1) if kg >= WHOLE_KG_FROM else Decimal("0.1")
    return kg.quantize(step, rounding=ROUND_HALF_UP)


def shown_yuan(amount: Decimal) -> str:
    """A spend as shown: two decimals."""
    return f"{amount:.2f}"


def month_of(day: date) -> date:
    """The first day of `day`'s month."""
    return day.replace(day=1)


def previous_month(day: date) -> date:
    """The first day of the month before `day`'s."""
    return month_of(month_of(day) - timedelta(days=1))


def month_label(month: date, language: str) -> str:
    """A month as members read it: 2026年11月, November 2026."""
    if language == "en":
        return f"{_EN_MONTHS[month.month - 1]} {month.year}"
    return f"{month.year}年{month.month}月"


def month_labels(month: date) -> dict[str, str]:
    """The month's label in every language (a push parameter)."""
    return {"zh-CN": month_label(month, "zh-CN"), "en": month_label(month, "en")}


def _add(rows: Iterable[GreenPurchases | MemberGreenPurchases], config: Config) -> GreenFigures:
    """The figures of these rows (categories not green now are left out)."""
    factors = {c.id: c.impact_kg_per_yuan for c in green_categories(config)}
    fen = points = bonus = purchases = 0
    impact = Decimal(0)
    for row in rows:
        factor = factors.get(row.category)
        if factor is None:
            continue
        fen += row.fen
        points += row.points + row.bonus_points
        bonus += row.bonus_points
        purchases += row.purchases
        impact += Decimal(row.fen) / 100 * factor
    if not purchases:
        return NOTHING
    return GreenFigures(Decimal(fen) / 100, points, bonus, impact, purchases)


def contribution_of(
    rows: Sequence[GreenPurchases], today: date, config: Config
) -> GreenContribution:
    """A member's contribution from their monthly rows, for local `today`."""
    this_month = f"{today:%Y-%m}"
    this_year = f"{today:%Y}-"
    green = green_categories(config)
    by_category = tuple(
        (category, figures)
        for category in green
        if (figures := _add((r for r in rows if r.category == category.id), config)).any
    )
    return GreenContribution(
        month=month_of(today),
        this_month=_add((r for r in rows if r.month == this_month), config),
        this_year=_add((r for r in rows if r.month.startswith(this_year)), config),
        overall=_add(rows, config),
        by_category=by_category,
        factors=tuple((c, c.impact_kg_per_yuan) for c in green),
    )


async def green_contribution(programme: Programme, member_id: int) -> GreenContribution:
    """What /green shows the member, as of now on the programme's clock."""
    config = programme.config
    ids = [c.id for c in green_categories(config)]
    rows = await programme.green.member_green_purchases(member_id, ids) if ids else []
    return contribution_of(rows, local_today(programme.now(), config), config)


def monthly_series(
    rows: Sequence[GreenPurchases], last: date, config: Config, months: int = CHART_MONTHS
) -> list[tuple[date, GreenFigures]]:
    """The figures of each of `months` months ending with `last`'s, oldest first."""
    series = []
    for back in range(months - 1, -1, -1):
        month = add_months(month_of(last), -back)
        wanted = f"{month:%Y-%m}"
        series.append((month, _add((r for r in rows if r.month == wanted), config)))
    return series


async def green_chart_series(
    programme: Programme, member_id: int, last: date
) -> list[tuple[date, GreenFigures]]:
    """The member's last CHART_MONTHS months ending with `last`'s, for the chart."""
    config = programme.config
    ids = [c.id for c in green_categories(config)]
    rows = await programme.green.member_green_purchases(member_id, ids) if ids else []
    return monthly_series(rows, last, config)


def chart_month_allowed(month: date, now: datetime, config: Config) -> bool:
    """Whether a chart may end with `month`: not before FIRST_MONTH, not after this month."""
    return FIRST_MONTH <= month <= month_of(local_today(now, config))


def encode_chart(month: date) -> str:
    """Callback data of the "see chart" button for the months ending with `month`."""
    return f"{GREEN_PREFIX}:chart:{month:%Y-%m}"


def decode_chart(data: str) -> date | None:
    """The month a chart button names, or None when the data is not one."""
    prefix, _, rest = data.partition(":")
    action, _, month = rest.partition(":")
    if prefix != GREEN_PREFIX or action != "chart" or len(month) != 7 or not month.isascii():
        return None
    try:
        return date.fromisoformat(f"{month}-01")
    except ValueError:
        return None


# --- the monthly report ----------------------------------------------------------------------


def report_key(member_id: int, month: date) -> str:
    """The dedupe key of a member's report of one month: one report per member and month."""
    return f"green:{member_id}:{month:%Y-%m}"


def report_due(today: date, last_run: date | None, config: Config) -> date | None:
    """The month to report on local `today` (the previous one), or None: already reported this
    month, or too far past the month's first day to catch up (`push.catch_up_days`)."""
    if last_run is not None and month_of(last_run) == month_of(today):
        return None
    if (today - month_of(today)).days > config.push.catch_up_days:
        return None
    return previous_month(today)


def report_params(figures: GreenFigures, month: date) -> dict[str, object]:
    """What a monthly report says: the month, spend, points and impact."""
    return {
        "month": month_labels(month),
        "spend": shown_yuan(figures.spend),
        "points": figures.points,
        "impact": format(shown_impact(figures.impact_kg), "f"),
    }


def report_pushes(rows: Sequence[MemberGreenPurchases], month: date, config: Config) -> list[Push]:
    """One marketing push per member with eco spend in `month`, its figures and a chart button."""
    by_member: dict[int, list[MemberGreenPurchases]] = {}
    for row in rows:
        by_member.setdefault(row.member_id, []).append(row)
    pushes = []
    for member_id, own in sorted(by_member.items()):
        figures = _add(own, config)
        if not figures.any:
            continue
        pushes.append(
            Push(
                report_key(member_id, month),
                member_id,
                MARKETING,
                N_("green.report"),
                report_params(figures, month),
                [[(N_("green.chart_button"), encode_chart(month))]],
            )
        )
    return pushes


def report_span(month: date) -> tuple[date, date]:
    """The first and last local day of `month`."""
    return month, add_months(month, 1) - timedelta(days=1)
