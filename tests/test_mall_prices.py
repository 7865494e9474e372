"""Mall prices: what the programme shows is what the store charges, at every instant."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import Config, MallDiscount, MallItem, load_config
from bot.programme.calendar import local_today
from bot.programme.errors import RuleError
from bot.programme.mall import catalog_entries, deduction_points, mall_price, sale_window
from storage import mall
from tests.postgres import ENGINES, migrated_connection

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
SYNCED_AT = datetime(2026, 11, 1, tzinfo=UTC)


def with_sales(timezone: str) -> Config:
    """The sample programme in `timezone`, with overlapping sales on shelves, SKUs and all."""
    config = load_config(SAMPLE)
    program = config.program.model_copy(update={"timezone": timezone})
    extra = [
        MallDiscount.model_validate(
            {
                "id": sale_id,
                "name": {"zh-CN": sale_id, "en": sale_id},
                "starts": starts,
                "ends": ends,
                "percent": percent,
                **scope,
            }
        )
        for sale_id, starts, ends, percent, scope in (
            ("bag_week", date(2026, 12, 28), date(2027, 1, 3), 35, {"skus": ["BAG-01"]}),
            ("everything", date(2026, 12, 31), date(2026, 12, 31), 5, {}),
            ("spring", date(2027, 3, 10), date(2027, 4, 10), 90, {"categories": ["services"]}),
            # Santiago's clocks change at midnight: 2026-09-06 has no 00:00, and the hour
            # before 2027-04-04 happens twice.
            ("gap", date(2026, 9, 6), date(2026, 9, 6), 15, {"categories": ["vouchers"]}),
            ("fold", date(2027, 4, 3), date(2027, 4, 4), 25, {"categories": ["vouchers"]}),
        )
    ]
    discounts = [*config.mall.discounts, *extra]
    shop = config.mall.model_copy(update={"discounts": discounts})
    return config.model_copy(update={"program": program, "mall": shop})


@pytest.fixture(
    scope="module",
    params=[
        (engine, zone)
        for engine in ENGINES
        for zone in ("Asia/Shanghai", "America/Santiago", "Pacific/Apia")
    ],
    ids=lambda param: "-".join(param),
)
def synced(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Config, sqlite3.Connection]]:
    """A programme and a database its catalog was synced into (one per engine and timezone)."""
    engine, zone = request.param
    config = with_sales(zone)
    with migrated_connection(engine, tmp_path_factory.mktemp("prices")) as conn:
        mall.sync_catalog(conn, catalog_entries(config), SYNCED_AT)
        yield config, conn


def boundaries(config: Config) -> list[datetime]:
    """Instants around every sale's start and end, where a wrong window would show."""
    moments = []
    for sale in config.mall.discounts:
        for edge in sale_window(sale, config):
            for step in (-1, 0, 1):
                moments.append(edge + step * timedelta(seconds=1))
            moments.append(edge - timedelta(microseconds=1))
    return moments


def priced_items(config: Config) -> list[MallItem]:
    return [item for item in config.mall.items if item.kind != "deduction"]


def assert_agree(config: Config, conn: sqlite3.Connection, at: datetime) -> None:
    day = local_today(at, config)
    for item in priced_items(config):
        shown = mall_price(item, at, config)
        charged = mall.price_at(conn, item.sku, at)
        assert (shown.points, shown.list_points) == (charged.points, charged.list_points), at
        # The sale runs exactly on its local days, as members read them in /rules.
        running = [d.percent for d in config.mall.discounts if d.applies(day, item)]
        percent = None if shown.discount is None else shown.discount.percent
        assert percent == max(running, default=None), (item.sku, at)


def test_the_shown_price_is_the_charged_price_at_every_sale_edge(
    synced: tuple[Config, sqlite3.Connection],
) -> None:
    config, conn = synced
    for at in boundaries(config):
        assert_agree(config, conn, at)


@given(at=st.datetimes(datetime(2026, 9, 1), datetime(2027, 5, 1), timezones=st.just(UTC)))
def test_the_shown_price_is_the_charged_price_at_any_instant(
    synced: tuple[Config, sqlite3.Connection], at: datetime
) -> None:
    config, conn = synced
    assert_agree(config, conn, at)


def test_a_bill_deduction_is_priced_per_yuan_and_never_on_sale() -> None:
    config = with_sales("Asia/Shanghai")
    [bill] = [e for e in catalog_entries(config) if e.kind == "deduction"]
    rate = config.redemption.deduction_points_per_yuan
    assert (bill.price, bill.discounts) == (rate, ())
    assert deduction_points(7, config) == 7 * rate
    with pytest.raises(RuleError):
        deduction_points(config.mall.deduction_max_yuan + 1, config)
