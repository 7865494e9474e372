"""What /rules says about earning, birthdays, 累计获得 and sales is what the bot does: the
sentences are read back and checked against the computation, in both languages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import pytest

from bot.clock import FixedClock
from bot.config import Config, MallDiscount, load_config
from bot.i18n import I18n
from bot.jobs import sale_announcement
from bot.programme.birthdays import gift_allowed
from bot.programme.errors import RuleError
from bot.programme.mall import sale_rate
from bot.programme.purchases import award_purchase
from handlers.common import Texts
from handlers.info import render_rules
from tests.conftest import NOW, Sandbox, assert_audit_ok, member_with

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
I18N = I18n.load()
AMOUNTS = ("0.5", "1", "99.5", "100")
# In the sample programme green_winter runs 2026-12-01..31 (Shanghai) for eco and refill.
OUTSIDE = NOW  # 2026-11-25: announced, not running yet
DURING = datetime(2026, 12, 10, 4, 0, tzinfo=UTC)
AFTER = datetime(2027, 1, 10, 4, 0, tzinfo=UTC)


@pytest.fixture
def config() -> Config:
    return load_config(SAMPLE)


# --- reading /rules back ---------------------------------------------------------------------

# Per language: the sentence that makes only full yuan count and rounds down (which the model
# below follows), a category's rate, its worked example, one campaign inside the example, and
# a campaign's announcement.
PATTERNS = {
    "zh-CN": {
        "full_yuan": "消费每满 1 元按商品类别获得积分，不足 1 元的部分不计积分",
        "rounding": "积分按类别算出后向下取整，活动期间乘以活动倍数后再次向下取整",
        "rate": re.compile(r"^  – (?P<category>.+)：每满 1 元 (?P<rate>[\d.]+) 积分$"),
        "example": re.compile(
            r"^    例：(?P<category>.+?)消费 (?P<amount>[\d.]+) 元，按 (?P<yuan>\d+) 元计，"
            r"得 (?P<points>\d+) 积分(?P<campaigns>.*)。$"
        ),
        "in_campaign": re.compile(r"；「(?P<campaign>[^」]+)」期间得 (?P<points>\d+) 积分"),
        "campaign": re.compile(
            r"^• 活动「(?P<campaign>[^」]+)」（(?P<starts>[\d-]+) 至 (?P<ends>[\d-]+)）："
            r"(?P<categories>.+)积分 ×(?P<multiplier>[\d.]+)。"
        ),
        "separator": "、",
    },
    "en": {
        "full_yuan": "Points for every full yuan you spend, by product category; the part of an"
        " amount under 1 yuan earns none",
        "rounding": "Points are rounded down to a whole point after the category rate, and again"
        " after a campaign's multiplier",
        "rate": re.compile(r"^  – (?P<category>.+): (?P<rate>[\d.]+) per full yuan$"),
        "example": re.compile(
            r"^    Example: (?P<amount>[\d.]+) yuan on (?P<category>.+?) counts as (?P<yuan>\d+)"
            r" yuan and earns (?P<points>\d+) points(?P<campaigns>.*)\.$"
        ),
        "in_campaign": re.compile(r"; (?P<points>\d+) points during “(?P<campaign>[^”]+)”"),
        "campaign": re.compile(
            r"^• Campaign “(?P<campaign>[^”]+)” \((?P<starts>[\d-]+) to (?P<ends>[\d-]+)\): "
            r"(?P<categories>.+) earn ×(?P<multiplier>[\d.]+)\."
        ),
        "separator": ", ",
    },
}


@dataclass(frozen=True)
class Announced:
    """A campaign as /rules announces it."""

    starts: date
    ends: date
    categories: frozenset[str]
    multiplier: Decimal


@dataclass(frozen=True)
class Said:
    """What the earn section of /rules says, read back from its text."""

    rates: dict[str, Decimal]
    examples: dict[str, tuple[Decimal, int, int, dict[str, int]]]
    campaigns: dict[str, Announced]


def read_rules(text: str, language: str) -> Said:
    """Parse the earn section of a /rules text; fails when a promised sentence is missing."""
    found = PATTERNS[language]
    assert found["full_yuan"] in text
    assert found["rounding"] in text
    rates: dict[str, Decimal] = {}
    examples: dict[str, tuple[Decimal, int, int, dict[str, int]]] = {}
    campaigns: dict[str, Announced] = {}
    for line in text.split("\n"):
        if m := found["rate"].match(line):
            rates[m["category"]] = Decimal(m["rate"])
        elif m := found["example"].match(line):
            inside = {c["campaign"]: int(c["points"]) for c in found["in_campaign"].finditer(line)}
            example = (Decimal(m["amount"]), int(m["yuan"]), int(m["points"]), inside)
            examples[m["category"]] = example
        elif m := found["campaign"].match(line):
            campaigns[m["campaign"]] = Announced(
                date.fromisoformat(m["starts"]),
                date.fromisoformat(m["ends"]),
                frozenset(m["categories"].split(found["separator"])),
                Decimal(m["multiplier"]),
            )
    return Said(rates, examples, campaigns)


def floor(value: Decimal) -> int:
    return int(value.to_integral_value(ROUND_FLOOR))


def said_points(said: Said, category: str, amount: Decimal, day: date) -> int:
    """The points a purchase earns by the words of /rules alone."""
    base = floor(floor(amount) * said.rates[category])
    running = [
        c.multiplier
        for c in said.campaigns.values()
        if category in c.categories and c.starts <= day <= c.ends
    ]
    # Campaigns never stack: the highest multiplier applies.
    return floor(base * max(running)) if running else base


def rules_text(config: Config, now: datetime, language: str) -> str:
    return render_rules(config, now, Texts(I18N, language))


@pytest.mark.parametrize("language", ["zh-CN", "en"])
@pytest.mark.parametrize("now", [OUTSIDE, DURING, AFTER], ids=["outside", "during", "after"])
def test_the_earn_rules_read_back_give_the_points_awarded(
    config: Config, language: str, now: datetime
) -> None:
    said = read_rules(rules_text(config, now, language), language)
    names = {c.id: c.name.get(language) for c in config.earn.categories}
    assert set(said.rates) == set(names.values())
    # A campaign over is no longer announced (AFTER): its days are then plain days.
    assert bool(said.campaigns) is (now != AFTER)
    day = now.astimezone(config.program.tz).date()
    for category_id, name in names.items():
        for text in AMOUNTS:
            amount = Decimal(text)
            expected = said_points(said, name, amount, day)
            if expected == 0:
                with pytest.raises(RuleError) as refused:
                    award_purchase(amount, category_id, now, now, config)
                assert refused.value.key == "error.purchase_under_one_yuan"
                continue
            award = award_purchase(amount, category_id, now, now, config)
            assert award.points == expected, (language, category_id, text)
            # The base is the rate alone; the campaign's extra is what is left of the total.
            assert award.base_points == said_points(said, name, amount, date.min)


@pytest.mark.parametrize("language", ["zh-CN", "en"])
@pytest.mark.parametrize("now", [OUTSIDE, DURING], ids=["outside", "during"])
def test_each_worked_example_is_what_that_purchase_earns(
    config: Config, language: str, now: datetime
) -> None:
    said = read_rules(rules_text(config, now, language), language)
    assert len(said.examples) == len(config.earn.categories)
    for category in config.earn.categories:
        amount, yuan, points, inside = said.examples[category.name.get(language)]
        assert amount != int(amount) and yuan == int(amount)  # it shows the full-yuan cut
        plain = datetime.combine(date(2026, 11, 25), time(12), tzinfo=config.program.tz)
        assert award_purchase(amount, category.id, plain, plain, config).points == points
        covered = [
            c
            for c in config.campaigns
            if c.applies(c.starts, category.id) and c.ends >= date(2026, 11, 25)
        ]
        assert set(inside) == {c.name.get(language) for c in covered}
        for campaign in covered:
            noon = datetime.combine(campaign.starts, time(12), tzinfo=config.program.tz)
            award = award_purchase(amount, category.id, noon, noon, config)
            assert award.points == inside[campaign.name.get(language)]


def test_the_sample_examples_are_the_ones_the_lead_decided(config: Config) -> None:
    said = read_rules(rules_text(config, OUTSIDE, "zh-CN"), "zh-CN")
    assert said.examples["绿色环保商品"] == (Decimal("99.5"), 99, 198, {"冬季绿色消费月": 396})
    assert said.examples["补充装与裸装商品"] == (Decimal("99.5"), 99, 148, {"冬季绿色消费月": 296})
    assert said.examples["日常商品"] == (Decimal("99.5"), 99, 99, {})
    text = rules_text(config, OUTSIDE, "zh-CN")
    assert (
        "例：绿色环保商品消费 99.5 元，按 99 元计，得 198 积分；「冬季绿色消费月」期间得 396 积分。"
        in text
    )


def test_a_category_earning_under_a_point_per_yuan_is_refused_by_its_own_words(
    config: Config,
) -> None:
    # 1 yuan × 0.5 is half a point: a full yuan, but nothing to book.
    half = config.earn.categories[0].model_copy(update={"multiplier": Decimal("0.5")})
    changed = config.model_copy(
        update={"earn": config.earn.model_copy(update={"categories": [half]})}
    )
    with pytest.raises(RuleError) as refused:
        award_purchase(Decimal("1.99"), half.id, NOW, NOW, changed)
    assert refused.value.key == "error.purchase_earns_nothing"
    assert award_purchase(Decimal("2"), half.id, NOW, NOW, changed).points == 1
    said = read_rules(rules_text(changed, NOW, "en"), "en")
    assert said.rates[half.name.en] == Decimal("0.5")


# --- birthdays -------------------------------------------------------------------------------

BIRTHDAY_DAYS = {
    "zh-CN": re.compile(r"生日前不足 (?P<days>\d+) 天（含生日当天）才填写或修改的，当年不赠送"),
    "en": re.compile(
        r"a birthday entered or changed fewer than (?P<days>\d+) days before the date, or on the"
        r" day itself, earns no gift that year"
    ),
}
NO_RESTRICTION = {"zh-CN": "随时填写均可获赠", "en": "at any time before or on the day"}


def with_min_days(config: Config, days: int) -> Config:
    birthday = config.birthday.model_copy(update={"min_days_before": days})
    return config.model_copy(update={"birthday": birthday})


@pytest.mark.parametrize("language", ["zh-CN", "en"])
@pytest.mark.parametrize("days", [30, 1, 0])
def test_the_birthday_sentence_is_the_rule_the_gift_follows(
    config: Config, language: str, days: int
) -> None:
    changed = with_min_days(config, days)
    text = rules_text(changed, NOW, language)
    birthday = date(2027, 3, 15)

    def entered(days_before: int) -> datetime:
        day = birthday - timedelta(days=days_before)
        return datetime.combine(day, time(12), tzinfo=changed.program.tz)

    said = BIRTHDAY_DAYS[language].search(text)
    if days == 0:
        # No restriction, and none claimed: set on the day itself still brings the gift.
        assert said is None and NO_RESTRICTION[language] in text
        assert gift_allowed(entered(0), birthday, changed)
        return
    assert said is not None and NO_RESTRICTION[language] not in text
    stated = int(said["days"])
    assert stated == days
    # "fewer than N days before, or on the day": refused at N-1 and 0, given at N.
    assert not gift_allowed(entered(stated - 1), birthday, changed)
    assert not gift_allowed(entered(0), birthday, changed)
    assert gift_allowed(entered(stated), birthday, changed)


# --- sales read as 折 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent", "zh", "en"),
    [(20, "8", "20"), (15, "85", "15"), (50, "5", "50"), (5, "95", "5"), (12, "88", "12")],
)
def test_a_sale_reads_as_a_shop_writes_it(percent: int, zh: str, en: str) -> None:
    assert (sale_rate(percent, "zh-CN"), sale_rate(percent, "en")) == (zh, en)


def test_every_configurable_sale_reads_as_the_price_paid() -> None:
    for percent in range(1, 91):
        rate = int(sale_rate(percent, "zh-CN"))
        # One digit: tenths of the price (8 折 = 80 %); two digits: hundredths (85 折).
        assert (rate * 10 if rate < 10 else rate) == 100 - percent


def test_the_sales_line_of_the_rules_reads_as_the_shop_writes_it(config: Config) -> None:
    assert "环保家居兑换享 8 折" in rules_text(config, NOW, "zh-CN")
    assert "20% off Green home" in rules_text(config, NOW, "en")


# --- conversations ---------------------------------------------------------------------------


async def registered(sandbox: Sandbox, user_id: int, language: str) -> str:
    await sandbox.member(user_id, language_code=language).send("/start")
    member = await sandbox.services.members.by_telegram_id(user_id)
    assert member is not None
    return member.member_code


async def rules_of(sandbox: Sandbox, user_id: int, language: str) -> str:
    """/rules as the member reads it (in parts when longer than one message)."""
    chat = sandbox.member(user_id, language_code=language)
    replies = await chat.send("/rules")
    return "\n\n".join(reply.text or "" for reply in replies)


TILL_DONE = {
    "zh-hans": re.compile(r"获得 (?P<points>\d+) 积分。"),
    "en": re.compile(r": (?P<points>\d+) points\. Available now"),
}


@pytest.mark.parametrize("language", ["zh-hans", "en"])
@pytest.mark.parametrize("when", [OUTSIDE, DURING], ids=["outside", "during"])
async def test_a_purchase_at_the_till_earns_what_the_rules_promise(
    sandbox: Sandbox, language: str, when: datetime
) -> None:
    sandbox.services.clock = lambda: when
    code = await registered(sandbox, 6101, language)
    catalog = "zh-CN" if language == "zh-hans" else "en"
    said = read_rules(await rules_of(sandbox, 6101, language), catalog)
    eco = sandbox.config.earn.category("eco")
    assert eco is not None
    amount, _yuan, outside, inside = said.examples[eco.name.get(catalog)]
    promised = inside[sandbox.config.campaigns[0].name.get(catalog)] if when == DURING else outside
    admin = sandbox.admin(language)
    [done] = await admin.send(f"/purchase {code} {amount} eco")
    found = TILL_DONE[language].search(done.text or "")
    assert found is not None, done.text
    assert int(found["points"]) == promised == (396 if when == DURING else 198)
    member = await sandbox.services.members.by_telegram_id(6101)
    assert member is not None
    assert (await sandbox.services.ledger.balance(member.id, when)).available == promised
    # Half a yuan earns nothing, and the cashier is told why in the words of /rules.
    [refused] = await admin.send(f"/purchase {code} 0.5 eco")
    reason = (
        "不足 1 元的部分不计积分" if language == "zh-hans" else "the part under 1 yuan earns none"
    )
    assert reason in (refused.text or "")
    assert (await sandbox.services.ledger.balance(member.id, when)).available == promised
    await assert_audit_ok(sandbox)


LIFETIME = {
    "zh-hans": (
        "💰 可用积分：600",
        "累计获得：600 积分（您账户收到过的全部积分",
        "「累计获得」是您账户收到过的全部积分",
    ),
    "en": (
        "💰 Available points: 600",
        "Received in total: 600 points (every point ever added to your account",
        "“Received in total” in /balance counts every point ever added to your account",
    ),
}


@pytest.mark.parametrize("language", ["zh-hans", "en"])
async def test_received_in_total_counts_an_adjustment_as_the_rules_say(
    sandbox: Sandbox, language: str
) -> None:
    code = await registered(sandbox, 6201, language)
    admin = sandbox.admin(language)
    await admin.send(f"/purchase {code} 500 general R-500")
    await admin.send(f"/adjust {code} +100 补录漏记积分")
    [balance] = await sandbox.member(6201, language_code=language).send("/balance")
    available, lifetime, defined = LIFETIME[language]
    assert available in (balance.text or "")
    assert lifetime in (balance.text or "")  # not "500" beside an available 600
    assert defined in await rules_of(sandbox, 6201, language)
    await assert_audit_ok(sandbox)


@pytest.mark.parametrize("language", ["zh-hans", "en"])
async def test_a_sale_is_announced_once_on_its_first_day(sandbox: Sandbox, language: str) -> None:
    await sandbox.member(6301, language_code=language).send("/start")
    services = sandbox.services
    # new_year_sale: 2026-12-25..2027-01-05, 20 % off the home shelf.
    morning = datetime(2026, 12, 25, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    services.clock = lambda: morning
    await services.scheduler.daily(morning)
    await services.sender.drain()
    await services.scheduler.daily(morning + timedelta(hours=1))  # a rerun plans nothing new
    await services.sender.drain()
    texts = [m.text or "" for m in sandbox.emu.messages(6301) if m.from_bot]
    if language == "zh-hans":
        expected = "🎉 积分商城「新年积分特惠」今天开始！环保家居兑换享 8 折，截至 2027-01-05。"
    else:
        expected = (
            "🎉 The points mall's “New Year points sale” starts today! 20% off Green home until"
        )
    assert sum(t.startswith(expected) for t in texts) == 1, texts
    # The day before and the day after announce nothing.
    for day in (morning - timedelta(days=1), morning + timedelta(days=1)):
        services.clock = FixedClock(day)
        await services.scheduler.daily(day)
        await services.sender.drain()
    later = [m.text or "" for m in sandbox.emu.messages(6301) if m.from_bot]
    assert sum("新年积分特惠" in t or "New Year points sale" in t for t in later) == 1
    await assert_audit_ok(sandbox)


def sale_of_15_today(config: Config) -> Config:
    """A 15 % sale on the home shelf running on NOW's day."""
    today = NOW.astimezone(config.program.tz).date()
    sale = MallDiscount.model_validate(
        {
            "id": "today",
            "name": {"zh-CN": "今日特惠", "en": "Today's sale"},
            "starts": today,
            "ends": today,
            "percent": 15,
            "categories": ["home"],
        }
    )
    return config.model_copy(update={"mall": config.mall.model_copy(update={"discounts": [sale]})})


SALE_SHOWN = {
    "zh-hans": (
        "环保家居",
        "帆布环保购物袋 · 255 积分 · 85 折",
        "🎉 今日特惠：85 折（原价 300 积分",
        "🎁 兑换",
        "🎉 已按「今日特惠」85 折",
        "环保家居兑换享 85 折",
    ),
    "en": (
        "Green home",
        "Canvas shopping bag · 255 points · 15% off",
        "🎉 Today's sale: 15% off (usually 300 points",
        "🎁 Redeem",
        "🎉 Today's sale: 15% off applied",
        "15% off Green home",
    ),
}


@pytest.mark.parametrize("configure", [[sale_of_15_today]])
@pytest.mark.parametrize("language", ["zh-hans", "en"])
async def test_a_sale_reads_the_same_on_the_shelf_the_card_and_in_the_rules(
    sandbox: Sandbox, language: str
) -> None:
    shelf, button, card, redeem, confirm, rules = SALE_SHOWN[language]
    await member_with(sandbox, 6401, 1000, language)
    chat = sandbox.member(6401, language_code=language)
    await chat.send("/mall")
    await chat.tap(shelf)
    assert button in chat.buttons()
    await chat.tap(button)
    assert card in (chat.last_text or "")
    await chat.tap(redeem)
    assert confirm in (chat.last_text or "")
    assert rules in await rules_of(sandbox, 6401, language)
    await assert_audit_ok(sandbox)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("zh-CN", "🎉 积分商城「全场特惠」今天开始！全部商品兑换享 85 折，截至 2027-01-05。"),
        ("en", "🎉 The points mall's “Storewide sale” starts today! 15% off everything until"),
    ],
)
def test_a_sale_on_everything_is_announced_as_such(
    config: Config, language: str, expected: str
) -> None:
    sale = MallDiscount.model_validate(
        {
            "id": "all",
            "name": {"zh-CN": "全场特惠", "en": "Storewide sale"},
            "starts": date(2026, 12, 25),
            "ends": date(2027, 1, 5),
            "percent": 15,
        }
    )
    key, params, buttons = sale_announcement(sale, config)
    rendered = {
        name: value[language] if isinstance(value, dict) else value
        for name, value in params.items()
    }
    assert I18N.t(language, key, **rendered).startswith(expected)
    assert buttons == [[("push.open_mall", "mall:home")]]
