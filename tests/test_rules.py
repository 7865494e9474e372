"""Programme rules: purchase points, amount validation, expiry dates in the programme timezone."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import Config, load_config
from bot.programme.adjustments import (
    MAX_ADJUSTMENT,
    MAX_REASON_LENGTH,
    adjustment_key,
    adjustment_reason,
    parse_adjustment,
)
from bot.programme.calendar import display_expiry
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at, last_valid_day
from bot.programme.purchases import (
    CONFIRM_WITHIN,
    RETYPE_WINDOW,
    award_purchase,
    campaigns_ahead,
    check_receipt,
    confirmation_open,
    parse_amount,
    points_per_yuan,
    purchase_key,
    purchase_points,
    purchase_requests,
    retyped,
)
from bot.programme.till import command_source
from storage.ledger import RecentOperation
from tests.amount_cases import BAD_PARAMS, GOOD_PARAMS, refusal, shown
from tests.conftest import NOW

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


@pytest.fixture
def config() -> Config:
    return load_config(SAMPLE)


def with_expiry(config: Config, **changes: object) -> Config:
    return config.model_copy(update={"expiry": config.expiry.model_copy(update=changes)})


@pytest.mark.parametrize(
    ("amount", "category", "points"),
    [
        ("99.99", "general", 99),
        ("100", "eco", 200),
        ("10.50", "refill", 15),
        ("99.5", "refill", 148),
        ("0.99", "eco", 0),
    ],
)
def test_purchase_points(config: Config, amount: str, category: str, points: int) -> None:
    found = config.earn.category(category)
    assert found is not None
    assert purchase_points(Decimal(amount), found, config) == points


@pytest.mark.parametrize(("typed", "read"), GOOD_PARAMS)
def test_an_amount_is_read_to_two_decimals(config: Config, typed: str, read: str) -> None:
    amount = parse_amount(typed, config)
    assert amount == Decimal(read)
    assert str(amount) == read  # what the till echoes: "100.50 元", never "1E+4"


@pytest.mark.parametrize(("typed", "key"), BAD_PARAMS)
def test_a_bad_amount_is_refused_by_name(config: Config, typed: str, key: str) -> None:
    with pytest.raises(RuleError) as excinfo:
        parse_amount(typed, config)
    assert excinfo.value.key == key
    assert excinfo.value.params["value"] == shown(typed)
    assert shown(typed) in refusal(typed, key)  # both languages name it
    assert shown(typed) in refusal(typed, key, "en")


def test_the_cap_is_the_configured_one(config: Config) -> None:
    lower = config.model_copy(
        update={"earn": config.earn.model_copy(update={"max_purchase_yuan": Decimal("100")})}
    )
    assert parse_amount("100", lower) == Decimal("100")
    with pytest.raises(RuleError) as excinfo:
        parse_amount("100.01", lower)
    assert excinfo.value.params == {"value": "100.01", "limit": Decimal("100")}


def test_rolling_expiry_uses_the_local_day(config: Config) -> None:
    # 2026-03-31 16:30 UTC is already 1 April 00:30 in Shanghai: the local day counts.
    earned = datetime(2026, 3, 31, 16, 30, tzinfo=UTC)
    assert last_valid_day(earned, config, "birthday") == date(2027, 4, 1)
    expiry = expires_at(earned, config, "birthday")
    assert expiry is not None
    assert expiry == datetime(2027, 4, 1, 16, 0, tzinfo=UTC)  # Shanghai midnight of 2 April
    assert display_expiry(expiry, config) == date(2027, 4, 1)


def test_rolling_expiry_clamps_to_month_end(config: Config) -> None:
    earned = datetime(2026, 8, 31, 4, 0, tzinfo=UTC)
    assert last_valid_day(earned, with_expiry(config, months=6), "game") == date(2027, 2, 28)


def test_year_end_expiry(config: Config) -> None:
    # 31 December 23:30 in Shanghai is still 2026 there, though 15:30 UTC the same day.
    earned = datetime(2026, 12, 31, 15, 30, tzinfo=UTC)
    assert last_valid_day(earned, with_expiry(config, mode="year_end", years=1), "survey") == date(
        2027, 12, 31
    )
    earned_next_year = datetime(2026, 12, 31, 16, 30, tzinfo=UTC)
    policy = with_expiry(config, mode="year_end", years=1)
    assert last_valid_day(earned_next_year, policy, "survey") == date(2028, 12, 31)


def test_never_expiring_policy(config: Config) -> None:
    assert expires_at(NOW, with_expiry(config, mode="never"), "birthday") is None


SHANGHAI_NOON = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)


def test_award_applies_the_category_and_expiry(config: Config) -> None:
    award = award_purchase(Decimal("66.50"), "eco", SHANGHAI_NOON, SHANGHAI_NOON, config)
    # Per full yuan: 66 × 2, the 0.50 earns nothing; no campaign, so the base is the total.
    assert (award.points, award.category.id, award.campaign) == (132, "eco", None)
    # The sample programme keeps purchase points for life.
    assert award.expires_at is None and award.base_points == 132
    assert award.meta() == {"amount": "66.50", "category": "eco", "purchased_on": "2026-11-25"}


def test_award_without_category_uses_the_default(config: Config) -> None:
    award = award_purchase(Decimal("10"), None, SHANGHAI_NOON, SHANGHAI_NOON, config)
    assert award.category.id == "general" and award.points == 10


def test_campaign_multiplies_only_its_categories_and_days(config: Config) -> None:
    # green_winter: 2026-12-01..31 in Shanghai, ×2 for eco and refill.
    first_minute = datetime(2026, 11, 30, 16, 1, tzinfo=UTC)  # 1 Dec 00:01 in Shanghai
    eco = award_purchase(Decimal("10"), "eco", first_minute, first_minute, config)
    assert (eco.points, eco.base_points) == (40, 20) and eco.campaign is not None
    assert eco.meta()["campaign"] == "green_winter"
    general = award_purchase(Decimal("10"), "general", first_minute, first_minute, config)
    assert general.points == 10 and general.campaign is None
    day_before = datetime(2026, 11, 30, 15, 59, tzinfo=UTC)  # still 30 Nov in Shanghai
    assert award_purchase(Decimal("10"), "eco", day_before, day_before, config).points == 20


@pytest.mark.parametrize(
    ("amount", "category", "bought", "key"),
    [
        ("10", "toys", SHANGHAI_NOON, "error.unknown_category"),
        ("0.99", "general", SHANGHAI_NOON, "error.purchase_under_one_yuan"),
        ("10", "eco", SHANGHAI_NOON.replace(year=2027), "error.purchase_in_future"),
        ("10", "eco", SHANGHAI_NOON.replace(year=2024), "error.purchase_expired"),
    ],
)
def test_award_refusals(
    config: Config, amount: str, category: str, bought: datetime, key: str
) -> None:
    # Purchase points that can expire (the sample's never do) for the expired case.
    dated = config.expiry.model_copy(update={"sources": {}})
    config = config.model_copy(update={"expiry": dated})
    with pytest.raises(RuleError) as excinfo:
        award_purchase(Decimal(amount), category, bought, SHANGHAI_NOON, config)
    assert excinfo.value.key == key


# --- one booking for the till, the import and the seed ----------------------------------------


def test_a_receipt_is_the_key_whoever_books_it() -> None:
    till_message = command_source(-100, 42)
    assert purchase_key("R-1", till_message) == purchase_key("R-1") == "purchase:R-1"
    # No receipt: the till message itself, so a redelivered update is a replay.
    assert purchase_key(None, till_message) == purchase_key("", till_message)
    assert purchase_key(None, till_message) == "purchase:tg:-100:42"
    with pytest.raises(ValueError, match="source"):
        purchase_key(None)


def test_the_till_and_the_import_ask_the_ledger_for_the_same_operation(config: Config) -> None:
    # The till: amount typed "¥100", the message's time; the import: "100.00", read later.
    typed = award_purchase(parse_amount("¥100", config), "eco", NOW, NOW, config)
    later = NOW + timedelta(hours=12)
    exported = award_purchase(parse_amount("100.00", config), "eco", NOW, later, config)
    [till] = purchase_requests(
        7, typed, receipt="R-1", source=command_source(1, 2), actor="telegram:1", now=NOW
    )
    [imported] = purchase_requests(7, exported, receipt="R-1", actor="import:pos.csv", now=later)
    # Only who booked it and when differ: key, points, expiry, reference and facts agree.
    assert dataclasses.replace(till, actor=imported.actor, now=imported.now) == imported
    assert (imported.key, imported.kind, imported.reference) == ("purchase:R-1", "purchase", "R-1")
    assert (imported.points, imported.expires_at) == (200, None)
    assert imported.meta == typed.meta()


def test_a_campaign_purchase_is_two_lots_lifetime_and_dated(config: Config) -> None:
    # green_winter doubles eco in December: 100 yuan = 200 own points + 200 campaign points.
    in_campaign = datetime(2026, 12, 10, 4, 0, tzinfo=UTC)
    award = award_purchase(Decimal("100"), "eco", in_campaign, in_campaign, config)
    assert (award.points, award.base_points, award.bonus_points) == (400, 200, 200)
    base, bonus = purchase_requests(7, award, receipt="R-9", actor="till", now=in_campaign)
    assert (base.kind, base.key, base.points, base.expires_at) == (
        "purchase",
        "purchase:R-9",
        200,
        None,
    )
    assert (bonus.kind, bonus.key, bonus.points) == ("campaign", "purchase:R-9:campaign", 200)
    assert bonus.expires_at == expires_at(in_campaign, config, "campaign")
    assert display_expiry(bonus.expires_at, config) == date(2027, 12, 10)  # type: ignore[arg-type]
    assert bonus.meta == {"purchase": "purchase:R-9", "campaign": "green_winter", "receipt": "R-9"}


def test_the_campaign_points_of_an_old_receipt_that_have_expired_are_left_out(
    config: Config,
) -> None:
    bought = datetime(2025, 12, 10, 4, 0, tzinfo=UTC)
    campaign = config.campaigns[0].model_copy(
        update={"starts": date(2025, 12, 1), "ends": date(2025, 12, 31)}
    )
    old_campaign = config.model_copy(update={"campaigns": [campaign]})
    later = datetime(2026, 12, 20, 4, 0, tzinfo=UTC)
    award = award_purchase(Decimal("100"), "eco", bought, later, old_campaign)
    # 12 months later the campaign's points are gone; the purchase's own never expire.
    assert (award.points, award.base_points, award.bonus_points) == (200, 200, 0)
    assert len(purchase_requests(7, award, receipt="R-8", actor="till", now=later)) == 1


@pytest.mark.parametrize("receipt", ["R/1", "a b", "R:1", "x" * 65, ""])
def test_a_till_receipt_holds_letters_digits_dash_and_underscore(receipt: str) -> None:
    with pytest.raises(RuleError) as excinfo:
        check_receipt(receipt)
    assert excinfo.value.key == "admin.receipt_invalid"
    assert check_receipt("POS_7-0001") == "POS_7-0001"


def booked(key: str, amount: str = "100.00", category: str = "general") -> RecentOperation:
    """A purchase the same cashier booked for the same member a few minutes ago."""
    meta = {"amount": amount, "category": category, "purchased_on": "2026-11-25"}
    return RecentOperation(1, key, NOW - timedelta(minutes=5), 100, None, meta)


def test_a_retyped_purchase_is_one_of_the_same_amount_and_category(config: Config) -> None:
    award = award_purchase(Decimal("100"), None, NOW, NOW, config)  # general, 100.00
    key = purchase_key(None, command_source(1, 2))
    same = booked(purchase_key(None, command_source(1, 1)))
    assert retyped(award, key, [same], NOW) == same
    assert retyped(award, key, [booked("purchase:R-1")], NOW) is not None  # had a receipt
    assert retyped(award, key, [booked("purchase:tg:1:1", amount="100.50")], NOW) is None
    assert retyped(award, key, [booked("purchase:tg:1:1", category="eco")], NOW) is None
    assert retyped(award, key, [], NOW) is None
    # Booked five minutes before NOW: still the same purchase until ten minutes have passed.
    assert retyped(award, key, [same], NOW + timedelta(minutes=4, seconds=59)) == same
    assert retyped(award, key, [same], NOW + timedelta(minutes=5)) is None
    # This very command booked before (a redelivered update): the ledger replays it.
    assert retyped(award, key, [booked(key), same], NOW) is None


def test_the_question_about_a_retyped_purchase_stays_open_ten_minutes() -> None:
    assert RETYPE_WINDOW == CONFIRM_WITHIN == timedelta(minutes=10)
    assert confirmation_open(NOW, NOW)
    assert confirmation_open(NOW, NOW + timedelta(minutes=9, seconds=59))
    assert not confirmation_open(NOW, NOW + timedelta(minutes=10))


def test_the_rates_the_rules_announce_are_the_rates_awarded(config: Config) -> None:
    for category in config.earn.categories:
        announced = points_per_yuan(category, config) * 100
        assert purchase_points(Decimal(100), category, config) == announced


def test_the_campaigns_the_rules_announce_are_the_campaigns_awarded(config: Config) -> None:
    tz = config.program.tz
    announced = campaigns_ahead(date.min, config)
    assert [c for c, _scope in announced] == list(config.campaigns)
    for campaign, scope in announced:
        noon = datetime.combine(campaign.starts, time(12), tzinfo=tz)
        for category in config.earn.categories:
            award = award_purchase(Decimal(100), category.id, noon, noon, config)
            assert (award.campaign == campaign) is (category in scope)
        # Announced through its last day, over the day after.
        assert campaign in [c for c, _ in campaigns_ahead(campaign.ends, config)]
        over = campaign.ends + timedelta(days=1)
        assert campaign not in [c for c, _ in campaigns_ahead(over, config)]


@pytest.mark.parametrize(
    ("text", "delta"), [("+50", 50), ("-20", -20), ("７", 7), ("－5", -5), ("＋100000", 100_000)]
)
def test_an_adjustment_is_a_signed_whole_number(text: str, delta: int) -> None:
    assert parse_adjustment(text) == delta


@pytest.mark.parametrize("text", ["0", "+0", "ten", "1.5", "", "+100001", "12345678"])
def test_an_adjustment_outside_the_limit_is_refused(text: str) -> None:
    with pytest.raises(RuleError) as excinfo:
        parse_adjustment(text)
    assert (excinfo.value.key, excinfo.value.params["limit"]) == (
        "admin.adjust.points_invalid",
        MAX_ADJUSTMENT,
    )


def test_an_adjustment_needs_a_short_reason() -> None:
    assert adjustment_reason("  补录漏记积分 ") == "补录漏记积分"
    for text, key in (
        ("  ", "admin.adjust.reason_missing"),
        ("长" * (MAX_REASON_LENGTH + 1), "admin.adjust.reason_too_long"),
    ):
        with pytest.raises(RuleError) as excinfo:
            adjustment_reason(text)
        assert excinfo.value.key == key
    assert adjustment_key(command_source(5, 9)) == "adjust:tg:5:9"
