"""The monthly report as people read it: the localized summary (for /report, the owners' message
on the 1st, and the CLI in English), its charts, and the CSV files `pointsbot report` writes.
The figures and their rules are in bot/programme/reports.py."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from bot.charts import Bar, ChartPicture, Column, Panel, chart_painter
from bot.config import Config, Localized
from bot.i18n import N_
from bot.programme.reports import (
    BREAKAGE_DEFINITION,
    LIABILITY_DEFINITION,
    CostLine,
    ExpiryBucket,
    MonthlyReport,
)

# (key, **params) -> the message in the reader's language (handlers.common.Texts is one).
Translate = Callable[..., str]

# The ledger's source accounts as a reader calls them; a source added later shows its name.
SOURCE_NAMES: Final = {
    "purchase": N_("report.source.purchase"),
    "birthday": N_("report.source.birthday"),
    "survey": N_("report.source.survey"),
    "feedback": N_("report.source.feedback"),
    "game": N_("report.source.game"),
    "share_bonus": N_("report.source.share_bonus"),
    "task": N_("report.source.task"),
    "badge": N_("report.source.badge"),
    "tier": N_("report.source.tier"),
    "plan": N_("report.source.plan"),
    "campaign": N_("report.source.campaign"),
    "compensation": N_("report.source.compensation"),
    "adjustment": N_("report.source.adjustment"),
}
KIND_NAMES: Final = {
    "goods": N_("report.kind.goods"),
    "voucher": N_("report.kind.voucher"),
    "deduction": N_("report.kind.deduction"),
    "service": N_("report.kind.service"),
    "other": N_("report.kind.other"),
}
# Lines of a chat message: Telegram's limit is 4096 characters; items past these are summed.
SHOWN_ITEMS: Final = 10
SHOWN_BUCKETS: Final = 13


def yuan(amount: Decimal) -> str:
    """Money as shown: two decimals with thousands separators."""
    return f"{amount:,.2f}"


def _source(name: str, _: Translate) -> str:
    key = SOURCE_NAMES.get(name)
    return _(key) if key is not None else name


def _named(name: Localized | None, fallback: str) -> Localized | str:
    return name if name is not None else fallback


def _bucket_label(bucket: ExpiryBucket, _: Translate) -> str:
    if bucket.overdue:
        return _("report.outstanding_overdue", points=bucket.points, yuan=yuan(bucket.yuan))
    if bucket.month is None:
        return _("report.outstanding_never", points=bucket.points, yuan=yuan(bucket.yuan))
    return _(
        "report.outstanding_month",
        month=f"{bucket.month:%Y-%m}",
        points=bucket.points,
        yuan=yuan(bucket.yuan),
    )


def _costs(title: str, lines: Sequence[CostLine], _: Translate) -> list[str]:
    if not lines:
        return []
    out = [_(title)]
    for line in lines:
        out.append(
            _(
                "report.cost_line",
                name=_named(line.name, line.id),
                points=line.points,
                yuan=yuan(line.yuan),
                count=line.operations,
            )
        )
    return out


def summary_lines(report: MonthlyReport, _: Translate) -> list[str]:
    """The report as short lines in the reader's language (everything a chat shows)."""
    roll = report.roll
    lines = [_("report.title", month=report.label)]
    if not report.complete:
        lines.append(
            _("report.to_date", time=f"{report.end.astimezone(report.start.tzinfo):%Y-%m-%d %H:%M}")
        )
    lines.append("")
    lines.append(_("report.issued", points=roll.issued))
    for source in report.sources:
        if source.issued or source.taken_back:
            lines.append(
                _("report.issued_source", source=_source(source.source, _), points=source.issued)
            )
    if roll.taken_back:
        lines.append(_("report.taken_back", points=roll.taken_back))
    owed = report.owed
    if owed.recorded or owed.settled or owed.outstanding:
        lines.append(
            _(
                "report.owed",
                recorded=owed.recorded,
                settled=owed.settled,
                outstanding=owed.outstanding,
            )
        )
    lines.append(_("report.redeemed", points=roll.redeemed))
    for item in report.items[:SHOWN_ITEMS]:
        lines.append(
            _(
                "report.redeemed_item",
                name=_named(item.name, item.sku),
                kind=_(KIND_NAMES.get(item.kind, KIND_NAMES["other"])),
                count=item.redeemed,
                points=item.net_points,
            )
        )
    if len(report.items) > SHOWN_ITEMS:
        rest = report.items[SHOWN_ITEMS:]
        lines.append(
            _("report.more_items", count=len(rest), points=sum(i.net_points for i in rest))
        )
    if roll.game_cost:
        lines.append(_("report.game_cost", points=roll.game_cost))
    lines.append(_("report.expired", points=roll.expired))
    breakage = report.breakage
    lines.append(
        _("report.breakage", rate=f"{breakage}")
        if breakage is not None
        else _("report.breakage_none")
    )
    lines.append("")
    lines.append(
        _(
            "report.outstanding",
            points=report.closing,
            rate=report.points_per_yuan,
            yuan=yuan(report.liability),
        )
    )
    for bucket in report.outstanding[:SHOWN_BUCKETS]:
        lines.append(_bucket_label(bucket, _))
    if len(report.outstanding) > SHOWN_BUCKETS:
        rest_points = sum(b.points for b in report.outstanding[SHOWN_BUCKETS:])
        lines.append(_("report.outstanding_more", points=rest_points))
    lines.append("")
    lines.append(
        _(
            "report.roll",
            opening=roll.opening,
            issued=roll.issued,
            taken_back=roll.taken_back,
            redeemed=roll.redeemed,
            game=roll.game_cost,
            expired=roll.expired,
            other=sum(roll.other.values()),
            closing=roll.closing_lots,
        )
    )
    if roll.reconciles:
        lines.append(_("report.roll_ok"))
    else:
        lines.append(
            _(
                "report.roll_broken",
                expected=roll.expected,
                postings=roll.closing_postings,
                lots=roll.closing_lots,
            )
        )
    lines.append("")
    lines.append(
        _(
            "report.members",
            total=report.members_total,
            new=report.members_new,
            active=report.members_active,
        )
    )
    if report.tiers:
        parts = [
            _("report.tier_count", name=_named(t.name, t.tier), count=t.members)
            for t in report.tiers
        ]
        lines.append(_("report.tiers", tiers=_("list.separator").join(parts)))
    game = report.game
    if game.budget is not None:
        share = f"{Decimal(100) * game.paid / game.budget:.1f}" if game.budget else "0"
        lines.append(
            _(
                "report.game",
                paid=game.paid,
                yuan=yuan(game.paid_yuan),
                budget=game.budget,
                share=share,
                days=game.days_at_budget,
            )
        )
    lines += _costs("report.campaigns", report.campaigns, _)
    lines += _costs("report.tasks", report.tasks, _)
    return lines


def flow_chart(report: MonthlyReport, _: Translate, font: str = "") -> ChartPicture:
    """Issued vs redeemed vs game cost vs expired in the month, as bars."""
    roll = report.roll
    bars = (
        Bar(_("report.chart.issued"), roll.issued),
        Bar(_("report.chart.redeemed"), max(roll.redeemed, 0)),
        Bar(_("report.chart.game"), max(roll.game_cost, 0)),
        Bar(_("report.chart.expired"), roll.expired),
    )
    title = _("report.chart.title", month=report.label)
    held = _("report.chart.held", opening=f"{roll.opening:,}", closing=f"{roll.closing_lots:,}")
    return chart_painter(font).render(
        title, [Panel(held, bars)], numbered_title=report.label, questions=False
    )


def outstanding_chart(report: MonthlyReport, _: Translate, font: str = "") -> ChartPicture:
    """Points outstanding at the month's end, one column per expiry month (∞: never)."""
    columns = []
    for bucket in report.outstanding:
        label = "!" if bucket.overdue else "∞" if bucket.month is None else f"{bucket.month:%y-%m}"
        columns.append(Column(label, float(bucket.points), f"{bucket.points:,}"))
    return chart_painter(font).render_columns(
        _("report.chart.outstanding", month=report.label),
        columns,
        fallback_title=f"{report.label} outstanding",
    )


def chart_caption(report: MonthlyReport, picture: ChartPicture, _: Translate) -> str:
    """The caption under the flow chart (naming the numbered bars when the font could not)."""
    key = "report.chart.caption_numbered" if picture.numbered else "report.chart.caption"
    return _(key, month=report.label)


def message_chunks(lines: Sequence[str], limit: int = 4096) -> list[str]:
    """The lines joined into as few messages as Telegram's length limit allows."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit and current:
            chunks.append(current)
            candidate = line[:limit]
        current = candidate
    if current:
        chunks.append(current)
    return chunks


# --- the CLI's files ---------------------------------------------------------------------------


def _names(name: Localized | None) -> tuple[str, str]:
    return ("", "") if name is None else (name.zh_CN, name.en)


def report_tables(report: MonthlyReport) -> dict[str, tuple[Sequence[str], list[Sequence[Any]]]]:
    """Every table of the report: file stem (after the month) -> (header, rows)."""
    roll = report.roll
    breakage = report.breakage
    summary: list[Sequence[Any]] = [
        ("month", report.label),
        ("from", report.start.isoformat()),
        ("until", report.end.isoformat()),
        ("complete_month", "yes" if report.complete else "no (to date)"),
        ("issued", roll.issued),
        ("taken_back", roll.taken_back),
        ("owed_recorded", report.owed.recorded),
        ("owed_settled", report.owed.settled),
        ("owed_outstanding", report.owed.outstanding),
        ("redeemed_net", roll.redeemed),
        ("game_cost", roll.game_cost),
        ("expired", roll.expired),
        ("breakage_percent", "" if breakage is None else str(breakage)),
        ("breakage_definition", BREAKAGE_DEFINITION),
        ("outstanding_points", report.closing),
        ("points_per_yuan", report.points_per_yuan),
        ("liability_yuan", f"{report.liability:.2f}"),
        ("liability_definition", LIABILITY_DEFINITION),
        ("members_total", report.members_total),
        ("members_new", report.members_new),
        ("members_active", report.members_active),
        ("reconciles", "yes" if roll.reconciles else "NO"),
    ]
    rollforward: list[Sequence[Any]] = [
        ("opening", roll.opening),
        ("+ issued", roll.issued),
        ("- taken_back", roll.taken_back),
        ("- redeemed_net", roll.redeemed),
        ("- game_cost", roll.game_cost),
        ("- expired", roll.expired),
        *((f"- {name}", value) for name, value in sorted(roll.other.items())),
        ("= expected_closing", roll.expected),
        ("closing_from_postings", roll.closing_postings),
        ("closing_from_lots", roll.closing_lots),
    ]
    game = report.game
    return {
        "summary": (("metric", "value"), summary),
        "rollforward": (("line", "points"), rollforward),
        "issued": (
            ("source", "issued", "taken_back", "net"),
            [(s.source, s.issued, s.taken_back, s.net) for s in report.sources],
        ),
        "redeemed": (
            (
                "sku",
                "name_zh",
                "name_en",
                "kind",
                "redemptions",
                "points",
                "refunds",
                "refunded_points",
                "net_points",
            ),
            [
                (
                    i.sku,
                    *_names(i.name),
                    i.kind,
                    i.redeemed,
                    i.points,
                    i.refunded,
                    i.refunded_points,
                    i.net_points,
                )
                for i in report.items
            ],
        ),
        "outstanding": (
            ("expires_in", "points", "yuan"),
            [
                (
                    "overdue" if b.overdue else "never" if b.month is None else f"{b.month:%Y-%m}",
                    b.points,
                    f"{b.yuan:.2f}",
                )
                for b in report.outstanding
            ],
        ),
        "tiers": (
            ("tier", "name_zh", "name_en", "members"),
            [(t.tier, *_names(t.name), t.members) for t in report.tiers],
        ),
        "games": (
            ("metric", "value"),
            [
                ("prizes_paid_points", game.paid),
                ("prizes_paid_yuan", f"{game.paid_yuan:.2f}"),
                ("budget_points", "" if game.budget is None else game.budget),
                ("days_played", game.days_played),
                ("days_at_daily_budget", game.days_at_budget),
                ("busiest_day_points", game.busiest_day),
            ],
        ),
        "campaigns": (
            ("campaign", "name_zh", "name_en", "operations", "points", "yuan"),
            _cost_rows(report.campaigns),
        ),
        "tasks": (
            ("task", "name_zh", "name_en", "operations", "points", "yuan"),
            _cost_rows(report.tasks),
        ),
    }


def _cost_rows(lines: Iterable[CostLine]) -> list[Sequence[Any]]:
    return [(c.id, *_names(c.name), c.operations, c.points, f"{c.yuan:.2f}") for c in lines]


def write_report_files(
    report: MonthlyReport,
    directory: Path,
    _: Translate,
    config: Config,
    progress: Callable[[int, int | None], None] | None = None,
) -> list[Path]:
    """Write one CSV per table (UTF-8 with a BOM, as spreadsheets need) and the two charts into
    `directory`, telling `progress` (files written, files in all) after each; return the paths
    written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    tables = report_tables(report)
    files = len(tables) + 2
    for stem, (header, rows) in tables.items():
        path = directory / f"{report.label}-{stem}.csv"
        with path.open("w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows(rows)
        written.append(path)
        if progress is not None:
            progress(len(written), files)
    font = config.wheel.font if config.wheel is not None else ""
    for stem, picture in (
        ("flow", flow_chart(report, _, font)),
        ("outstanding", outstanding_chart(report, _, font)),
    ):
        path = directory / f"{report.label}-{stem}.png"
        path.write_bytes(picture.png)
        written.append(path)
        if progress is not None:
            progress(len(written), files)
    return written
