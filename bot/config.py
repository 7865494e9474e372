"""Configuration: `config.toml` loaded with tomllib and validated at start."""

from __future__ import annotations

import os
import tomllib
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

LANGUAGES: tuple[str, ...] = ("zh-CN", "en")
TOKEN_ENV = "POINTSBOT_TOKEN"  # noqa: S105 - the variable's name, not a secret
WEBHOOK_SECRET_ENV = "POINTSBOT_WEBHOOK_SECRET"  # noqa: S105 - the variable's name
# What Telegram accepts as a webhook's secret_token (Bot API, setWebhook): 1-256 of these.
WEBHOOK_SECRET_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
)

Language = Literal["zh-CN", "en"]
PositiveInt = Annotated[int, Field(gt=0)]
# Telegram user ids are positive and have at most 52 significant bits (Bot API, User.id);
# a negative id is a group chat, never a person.
MAX_TELEGRAM_USER_ID = 2**52 - 1
# Points per yuan, at most: 1,000 already makes a point worth a tenth of a fen, which nobody
# reads as money, and it keeps the largest purchase times every multiplier far inside
# SQLite's 64-bit integers; a value like 1e12 is a typo that would mint points without end.
MAX_POINTS_PER_YUAN = 1000


def _telegram_user_id(value: object) -> object:
    """Accept only a whole positive number: "123" (quoted) or 1.0 is a mistake, not an id."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"a Telegram user id is a whole number without quotes, not {value!r}")
    if not 0 < value <= MAX_TELEGRAM_USER_ID:
        raise ValueError(f"a Telegram user id is a positive number, not {value}")
    return value


TelegramUserId = Annotated[int, BeforeValidator(_telegram_user_id)]


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Localized(_Section):
    """A text in every supported language."""

    zh_CN: str = Field(alias="zh-CN", min_length=1)
    en: str = Field(min_length=1)

    def get(self, language: str) -> str:
        """Return the text in `language` (zh-CN for anything else)."""
        return self.en if language == "en" else self.zh_CN


class ProgramConfig(_Section):
    """[program]: who runs the programme and for whom."""

    brand: str = Field(min_length=1)
    name: Localized
    timezone: str = "Asia/Shanghai"
    default_language: Language = "zh-CN"
    # May be empty for tooling (check-config warns); `pointsbot run` refuses (see unrunnable).
    admins: list[TelegramUserId] = Field(default_factory=list)
    support_contact: str = ""

    @field_validator("admins", mode="before")
    @classmethod
    def _a_list(cls, value: object) -> object:
        # TOML `admins = "100000001"` or `admins = 100000001`: pydantic would only say "list".
        if not isinstance(value, list):
            raise ValueError(
                f"must be a list of Telegram user ids, e.g. admins = [100000001], not {value!r}"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name such as Asia/Shanghai)"
            ) from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        """The programme's timezone."""
        return ZoneInfo(self.timezone)


class TelegramConfig(_Section):
    """[telegram]: where the Bot API is, and how updates reach the bot."""

    base_url: str = ""
    # polling: the bot asks for updates (getUpdates); webhook: Telegram POSTs each one to
    # `webhook_url`, served by [server] (its path is the route).
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""
    # Webhook mode: how long a tap's webhook call waits for its handler's answer, to carry it
    # in the HTTP response instead of a request of its own (0: never wait, always a request).
    answer_in_response_ms: int = Field(default=250, ge=0, le=5000)

    @field_validator("base_url", "webhook_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (or be empty)")
        return value

    @model_validator(mode="after")
    def _webhook(self) -> Self:
        if self.mode != "webhook":
            return self
        if not self.webhook_url:
            raise ValueError('webhook_url: required when mode = "webhook"')
        # Telegram calls HTTPS URLs only; a self-hosted Bot API server (or the sandbox) also
        # calls plain HTTP ones.
        if not self.base_url and not self.webhook_url.startswith("https://"):
            raise ValueError("webhook_url: Telegram calls https:// URLs only")
        return self

    @property
    def webhook_path(self) -> str:
        """The route the webhook is served on: the path of `webhook_url`."""
        from urllib.parse import urlsplit

        return urlsplit(self.webhook_url).path or "/"


class StorageConfig(_Section):
    """[storage]: the SQLite database, or a PostgreSQL one when `url` is set."""

    path: str = "data/pointsbot.sqlite3"
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    # postgresql://user@host:port/database: PostgreSQL instead of the SQLite file (its
    # password from the environment, PGPASSWORD, or ~/.pgpass; never in this file).
    url: str = ""
    # PostgreSQL only: connections a process writes on at once (each waits on its own round
    # trips while the others go on). SQLite has one writer, whatever this says.
    writers: int = Field(default=1, ge=1, le=32)

    @field_validator("url")
    @classmethod
    def _a_postgresql_url(cls, value: str) -> str:
        if not value:
            return value
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must start with postgresql:// (or be empty for SQLite)")
        if parts.password:
            raise ValueError(
                "holds a password: keep it out of the file (PGPASSWORD in the environment,"
                " or ~/.pgpass)"
            )
        if not parts.path.strip("/"):
            raise ValueError("names no database: postgresql://user@host:5432/pointsbot")
        return value

    @property
    def postgres(self) -> bool:
        """Whether the store is PostgreSQL."""
        return bool(self.url)

    @property
    def shown(self) -> str:
        """The database as logs and messages name it."""
        return self.url or self.path

    @field_validator("path")
    @classmethod
    def _a_file_path(cls, value: str) -> str:
        # The store creates missing folders, so only what exists can be wrong: the path
        # itself a folder ("/", "data/"), or a file where a folder has to be.
        if not value.strip():
            raise ValueError("is empty: give the database file, e.g. data/pointsbot.sqlite3")
        path = Path(value)
        if value.endswith(("/", "\\")) or path.is_dir():
            raise ValueError(
                f"{value!r} is a folder: give the database file, e.g. data/pointsbot.sqlite3"
            )
        for folder in path.parents:
            if folder.exists():
                if not folder.is_dir():
                    raise ValueError(f"{value!r}: {str(folder)!r} is a file, not a folder")
                break
        return value


class LoggingConfig(_Section):
    """[logging]: how `pointsbot run` writes its log lines (bot/logs.py)."""

    # "json": one object per line (time, level, logger, message, update_id, member hashed,
    # operation_id) for a log shipper; "text": the plain lines, for a terminal.
    format: Literal["text", "json"] = "text"
    # `pointsbot -v` logs DEBUG whatever this says.
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"


class Category(_Section):
    """One purchase category and its earn multiplier."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: Localized
    multiplier: Decimal = Field(gt=0, le=100)
    # Estimated kg CO2e avoided per yuan spent in the category (/green); 0: not counted as
    # green. Illustrative figures in the sample, to be replaced by the programme's own.
    impact_kg_per_yuan: Decimal = Field(default=Decimal(0), ge=0, le=100)


class EarnConfig(_Section):
    """[earn]: how purchases turn into points."""

    points_per_yuan: int = Field(default=1, gt=0, le=MAX_POINTS_PER_YUAN)
    max_purchase_yuan: Decimal = Field(default=Decimal("50000"), gt=0)
    default_category: str = "general"
    categories: list[Category] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _share_bonus_moved(cls, data: object) -> object:
        if isinstance(data, dict) and {"share_bonus_points", "share_bonus_daily_limit"} & set(data):
            raise ValueError(
                "share_bonus_points and share_bonus_daily_limit moved: the green-share bonus"
                ' is a task now ([[tasks]] with kind = "share", repeat = "daily",'
                " reward_points = …)"
            )
        return data

    @model_validator(mode="after")
    def _categories_consistent(self) -> Self:
        ids = [c.id for c in self.categories]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"categories: duplicate id {', '.join(duplicates)}")
        if self.default_category not in ids:
            raise ValueError(
                f"default_category {self.default_category!r} is not one of the categories"
                f" ({', '.join(ids)})"
            )
        return self

    def category(self, category_id: str) -> Category | None:
        """Return the category with this id, or None."""
        for category in self.categories:  # a loop, not next(genexpr): once per row imported
            if category.id == category_id:
                return category
        return None


# Where points come from, each with its own expiry policy ([expiry.sources]); a source not
# listed there follows the top-level [expiry] policy.
ExpirySource = Literal[
    "purchase",
    "birthday",
    "game",
    "survey",
    "feedback",
    "campaign",
    "share",
    "task",
    "badge",
    "tier",
    "plan",
    "compensation",
    "adjustment",
]
EXPIRY_SOURCES: tuple[ExpirySource, ...] = get_args(ExpirySource)


class ExpiryPolicy(_Section):
    """How long points earned under one policy last."""

    mode: Literal["rolling", "year_end", "never"] = "rolling"
    months: int = Field(default=12, ge=1, le=120)
    years: int = Field(default=1, ge=0, le=10)

    def rule(self) -> tuple[str, int]:
        """The policy without the settings its mode ignores: equal rules expire alike."""
        if self.mode == "rolling":
            return ("rolling", self.months)
        if self.mode == "year_end":
            return ("year_end", self.years)
        return ("never", 0)


class ScheduledPolicy(ExpiryPolicy):
    """An announced change: the policy for points earned from `effective_on` (a local day)
    from one source (None: every source that follows the default)."""

    effective_on: date
    source: str | None = None
    # The policy it replaces: it applies while the file still says that one (or an earlier
    # change brought it); None (changes announced before issue 16) applies whatever it says.
    replaces: ExpiryPolicy | None = None


class AnnouncedChange(_Section):
    """An announced change of a promised term (bot/programme/policy.py), as /rules shows it."""

    term: str
    effective_on: date
    # JSON values: the value it was announced against (None: unknown) and the new one.
    replaces: Any = None
    value: Any


class ExpiryConfig(ExpiryPolicy):
    """[expiry]: how long points last; mode/months/years are the default for every source
    not listed in [expiry.sources]."""

    refund_min_validity_days: int = Field(default=30, ge=1, le=3650)
    policy_notice_days: int = Field(default=30, ge=30, le=3650)
    sources: dict[str, ExpiryPolicy] = Field(default_factory=dict)
    # Changes announced with `pointsbot schedule-policy-change`, loaded from the database at
    # start (never from the file: only an announced change may apply): the expiry ones as
    # policies, and every one (any term) as announced.
    scheduled: tuple[ScheduledPolicy, ...] = ()
    announced: tuple[AnnouncedChange, ...] = ()

    @field_validator("sources", mode="before")
    @classmethod
    def _known_sources(cls, value: object) -> object:
        if isinstance(value, dict):
            for name in value:
                if name not in EXPIRY_SOURCES:
                    raise ValueError(
                        f"unknown source {name!r} (sources: {', '.join(EXPIRY_SOURCES)})"
                    )
        return value

    @field_validator("scheduled")
    @classmethod
    def _in_order(cls, value: tuple[ScheduledPolicy, ...]) -> tuple[ScheduledPolicy, ...]:
        return tuple(sorted(value, key=lambda p: p.effective_on))

    def default_policy(self) -> ExpiryPolicy:
        """The file's default policy on its own (without the other [expiry] settings)."""
        # Built from fields already validated: no second validation (this is on the path of
        # every point earned, a million times in a large import).
        return ExpiryPolicy.model_construct(mode=self.mode, months=self.months, years=self.years)

    def policy_on(self, day: date, source: str) -> ExpiryPolicy:
        """The policy for points from `source` earned on local `day`: the file's, as every
        announced change in force by then rewrote it."""
        if source not in EXPIRY_SOURCES:
            raise ValueError(f"unknown expiry source {source!r}")
        listed = self.sources.get(source)
        policy = self.default_on(day) if listed is None else listed
        return _announced(policy, self.scheduled, source, day)

    def default_on(self, day: date) -> ExpiryPolicy:
        """The default policy (for sources not listed) for points earned on local `day`."""
        return _announced(self.default_policy(), self.scheduled, None, day)

    def with_scheduled(self, changes: tuple[ScheduledPolicy, ...]) -> ExpiryConfig:
        """This configuration with the announced changes from the database."""
        return self.model_copy(
            update={"scheduled": tuple(sorted(changes, key=lambda p: p.effective_on))}
        )


def _announced(
    policy: ExpiryPolicy,
    changes: tuple[ScheduledPolicy, ...],
    source: str | None,
    day: date,
) -> ExpiryPolicy:
    """`policy` rewritten by the changes of `source` in force on `day`, in order: a change
    applies while the policy is still the one it replaces (an operator who has since set
    something else in the file set something newer)."""
    for change in changes:
        if change.source != source or change.effective_on > day:
            continue
        if change.replaces is None or change.replaces.rule() == policy.rule():
            policy = change
    return policy


class RedemptionConfig(_Section):
    """[redemption]: spending points and returning what was redeemed."""

    deduction_points_per_yuan: PositiveInt = 100
    return_window_days: int = Field(default=7, ge=1, le=365)


class DependantGift(_Section):
    """[birthday.child], [birthday.pet]: the gift on a member's child's or pet's birthday."""

    # Exactly one: gift points, or a mall item (its SKU) given free.
    points: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    item: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_gift(self) -> Self:
        if (self.points is None) == (self.item is None):
            raise ValueError('give either points = N or item = "<sku>", exactly one of them')
        return self


class BirthdayConfig(_Section):
    """[birthday]: the birthday gift, and those for members' children and pets."""

    gift_points: int = Field(default=0, ge=0)
    # Where a 29 February birthday is celebrated in a common year.
    feb29_in_common_years: Literal["feb28", "mar1"] = "feb28"
    # A birthday entered (or changed) fewer days than this before the date earns no gift
    # that year, so nobody sets "today" to collect a gift.
    min_days_before: int = Field(default=30, ge=0, le=366)
    # The gift for each kind of dependant ([family] max_dependants); None: a greeting only.
    child: DependantGift | None = None
    pet: DependantGift | None = None


class FamilyConfig(_Section):
    """[family]: households, points moved between their members, and dependants' birthdays."""

    enabled: bool = True
    # Members of one household, the head included.
    max_members: int = Field(default=6, ge=2, le=50)
    # An invitation (link or short code) is for one person and lapses after this long.
    invitation_hours: int = Field(default=48, ge=1, le=24 * 14)
    # A member who joined a household moves no points (in or out) for this many days.
    cooling_off_days: int = Field(default=7, ge=0, le=365)
    # The smallest transfer, and the most a sender may send / a recipient may receive per
    # local day and per local calendar month.
    min_transfer: int = Field(default=10, ge=1, le=1_000_000)
    sender_daily_max: int = Field(default=2000, ge=1, le=10_000_000)
    sender_monthly_max: int = Field(default=10000, ge=1, le=100_000_000)
    recipient_daily_max: int = Field(default=2000, ge=1, le=10_000_000)
    recipient_monthly_max: int = Field(default=10000, ge=1, le=100_000_000)
    # Points from these sources stay with the member who earned them (e.g. game prizes).
    non_transferable: tuple[ExpirySource, ...] = ("game",)
    # The amounts offered as buttons (any other amount may be typed).
    quick_amounts: tuple[PositiveInt, ...] = (50, 100, 200, 500)
    # The sender may take a transfer back this long after it, if none of it was spent.
    undo_minutes: int = Field(default=10, ge=0, le=24 * 60)
    # Children and pets a member may add for their birthdays.
    max_dependants: int = Field(default=4, ge=0, le=20)

    @model_validator(mode="after")
    def _limits_consistent(self) -> Self:
        for name in ("sender_daily_max", "recipient_daily_max"):
            if getattr(self, name) < self.min_transfer:
                raise ValueError(f"{name} ({getattr(self, name)}) is below min_transfer")
        if self.sender_monthly_max < self.sender_daily_max:
            raise ValueError("sender_monthly_max is below sender_daily_max")
        if self.recipient_monthly_max < self.recipient_daily_max:
            raise ValueError("recipient_monthly_max is below recipient_daily_max")
        return self


class LimitsConfig(_Section):
    """[limits]: how much one member may ask of the bot."""

    # More than `flood_updates` updates within `flood_seconds` get one polite answer and no
    # work until the window has room again (staff are exempt).
    flood_updates: int = Field(default=20, ge=1, le=1000)
    flood_seconds: float = Field(default=10, gt=0, le=3600)


class PushConfig(_Section):
    """[push]: scheduled jobs and the rate-limited outbox sender."""

    # Telegram allows about 30 bulk messages a second; stay under it.
    rate_per_second: float = Field(default=25, gt=0, le=30)
    # Marketing messages wait outside these local hours (service notices always go).
    quiet_hours_start: time = time(22, 0)
    quiet_hours_end: time = time(8, 0)
    # Local times of the daily jobs: the expiry sweep, then greetings and reminders.
    sweep_at: time = time(0, 5)
    daily_at: time = time(9, 0)
    # Remind members this many days before their points expire (each sent once).
    reminder_days: list[int] = Field(default_factory=lambda: [30, 7, 1])
    # A daily job missed while the bot was down is caught up at the next start, at most
    # this many days back.
    catch_up_days: int = Field(default=7, ge=0, le=60)
    # A marketing push that may have reached Telegram without the bot learning so (a crash or
    # a lost answer) is not sent again (at most once) unless this is true (at least once).
    # Service pushes are always sent again (README "Pushes").
    resend_unconfirmed_marketing: bool = False

    @field_validator("quiet_hours_end")
    @classmethod
    def _not_the_start(cls, value: time, info: ValidationInfo) -> time:
        # Equal ends say neither "always" nor "never" clearly: make the operator choose.
        if value == info.data.get("quiet_hours_start"):
            raise ValueError(
                f"is the same as quiet_hours_start ({value:%H:%M}): give the hours marketing"
                " waits, e.g. 22:00:00 to 08:00:00"
            )
        return value

    @field_validator("reminder_days")
    @classmethod
    def _distinct_positive(cls, value: list[int]) -> list[int]:
        if any(day < 1 or day > 365 for day in value):
            raise ValueError("each reminder day must be between 1 and 365")
        if len(set(value)) != len(value):
            raise ValueError("reminder days must be distinct")
        return sorted(value, reverse=True)

    def is_quiet(self, local: time) -> bool:
        """True when marketing messages must wait at this local time."""
        # Equal start and end is refused at load, so the window is never empty.
        start, end = self.quiet_hours_start, self.quiet_hours_end
        return start <= local < end if start < end else (local >= start or local < end)


class Campaign(_Section):
    """[[campaigns]]: a time-limited earn multiplier, optionally for some categories only."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: Localized
    starts: date
    ends: date
    multiplier: Decimal = Field(gt=1, le=10)
    categories: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        if self.ends < self.starts:
            raise ValueError(f"campaign {self.id!r} ends ({self.ends}) before it starts")
        return self

    def applies(self, day: date, category_id: str) -> bool:
        """True when the campaign runs on local `day` for purchases of this category."""
        in_scope = not self.categories or category_id in self.categories
        return in_scope and self.starts <= day <= self.ends


class MallCategory(_Section):
    """[[mall.categories]]: a shelf of the points mall."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: Localized


class MallItem(_Section):
    """[[mall.items]]: one thing members can redeem points for."""

    sku: str = Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,23}$")
    name: Localized
    description: Localized
    category: str
    kind: Literal["goods", "voucher", "deduction", "service"]
    # Points per unit; for a bill deduction the member picks the amount and the rate decides.
    price: int = Field(default=0, ge=0, le=10_000_000)
    stock: int | None = Field(default=None, ge=0)
    per_member_limit: int | None = Field(default=None, ge=1)
    available_from: datetime | None = None
    available_until: datetime | None = None
    image: str = ""
    # A code used at a till or a partner shop (voucher, deduction, service) may be valid for
    # this many local days, the day of redemption counting as the first; None = no limit.
    valid_days: int | None = Field(default=None, ge=1, le=3650)
    # The item's terms: a code that lapses unused gives its points back (merchant-fault rules).
    refund_if_unused: bool = False
    # Tier-only: only members holding this tier or a higher one may redeem it ([tiers]).
    min_tier: str | None = None
    # Early access ("优先购买新品资格"): members of a tier (or higher) may redeem from this
    # moment, before available_from: tier id -> moment with an offset.
    tier_available_from: dict[str, datetime] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind != "deduction" and self.price <= 0:
            raise ValueError(f"item {self.sku}: price must be more than 0 points")
        if self.valid_days is not None and self.kind == "goods":
            # Goods are handed over in store; how long they wait there is not a code's validity.
            raise ValueError(
                f"item {self.sku}: valid_days is for a voucher, deduction or service, not goods"
            )
        if self.refund_if_unused and self.valid_days is None:
            raise ValueError(f"item {self.sku}: refund_if_unused needs valid_days")
        for moment in (
            self.available_from,
            self.available_until,
            *self.tier_available_from.values(),
        ):
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"item {self.sku}: give times with an offset, e.g. +08:00")
        if (
            self.available_from is not None
            and self.available_until is not None
            and self.available_until <= self.available_from
        ):
            raise ValueError(f"item {self.sku}: available_until is not after available_from")
        return self


class MallDiscount(_Section):
    """[[mall.discounts]]: a time-limited percentage off some categories or SKUs (or all)."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: Localized
    starts: date
    ends: date
    percent: int = Field(ge=1, le=90)
    categories: list[str] = Field(default_factory=list)
    skus: list[str] = Field(default_factory=list)

    def applies(self, day: date, item: MallItem) -> bool:
        """True when the discount runs on local `day` for this item."""
        everything = not self.categories and not self.skus
        in_scope = everything or item.category in self.categories or item.sku in self.skus
        return in_scope and self.starts <= day <= self.ends


class MallConfig(_Section):
    """[mall]: the points mall."""

    offer_minutes: int = Field(default=10, ge=1, le=1440)
    delist_compensation_percent: int = Field(default=10, ge=0, le=100)
    deduction_min_yuan: int = Field(default=1, ge=1)
    deduction_max_yuan: int = Field(default=50, ge=1)
    # Members are reminded this many days before a voucher's last valid day.
    voucher_reminder_days: int = Field(default=3, ge=1, le=90)
    categories: list[MallCategory] = Field(default_factory=list)
    items: list[MallItem] = Field(default_factory=list)
    discounts: list[MallDiscount] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.deduction_max_yuan < self.deduction_min_yuan:
            raise ValueError("deduction_max_yuan is below deduction_min_yuan")
        shelves = [c.id for c in self.categories]
        skus = [i.sku for i in self.items]
        sales = [d.id for d in self.discounts]
        for what, ids in (("category", shelves), ("item sku", skus), ("discount", sales)):
            if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
                raise ValueError(f"duplicate {what} {', '.join(duplicates)}")
        for item in self.items:
            if item.category not in shelves:
                raise ValueError(f"item {item.sku}: unknown category {item.category!r}")
        for discount in self.discounts:
            if discount.ends < discount.starts:
                raise ValueError(f"discount {discount.id!r} ends before it starts")
            if unknown := sorted(set(discount.categories) - set(shelves)):
                raise ValueError(f"discount {discount.id!r}: unknown categories {unknown}")
            if unknown := sorted(set(discount.skus) - set(skus)):
                raise ValueError(f"discount {discount.id!r}: unknown skus {unknown}")
        return self

    def item(self, sku: str) -> MallItem | None:
        """The item with this SKU, or None."""
        return next((i for i in self.items if i.sku == sku), None)

    def category(self, category_id: str) -> MallCategory | None:
        """The shelf with this id, or None."""
        return next((c for c in self.categories if c.id == category_id), None)


# The wheel stays readable, and every scratch-card prize gets its own symbol, up to this many.
MAX_GAME_PRIZES = 12


class GamePrize(_Section):
    """[[wheel.prizes]]: one prize of a points game, drawn with probability weight / total."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    label: Localized
    kind: Literal["points", "voucher", "nothing"]
    # Strict: `weight = true` or `2.5` is a mistake, not 1 or 2.
    weight: int = Field(gt=0, le=1_000_000, strict=True)
    points: int = Field(default=0, ge=0, le=1_000_000, strict=True)
    # What a voucher is good for, shown with its code.
    terms: Localized | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "points" and self.points <= 0:
            raise ValueError(f"prize {self.id!r}: a points prize needs points > 0")
        if self.kind != "points" and self.points:
            raise ValueError(f"prize {self.id!r}: only a points prize has points")
        if self.terms is not None and self.kind != "voucher":
            raise ValueError(f"prize {self.id!r}: only a voucher prize has terms")
        return self


def _check_prize_table(prizes: list[GamePrize], fallback: str) -> None:
    """Distinct ids, a readable number of prizes, a fallback that costs no budget."""
    ids = [p.id for p in prizes]
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        raise ValueError(f"duplicate prize id {', '.join(duplicates)}")
    if len(prizes) > MAX_GAME_PRIZES:
        raise ValueError(f"at most {MAX_GAME_PRIZES} prizes, not {len(prizes)}")
    chosen = next((p for p in prizes if p.id == fallback), None)
    if chosen is None:
        raise ValueError(f"fallback {fallback!r} is not one of the prizes ({', '.join(ids)})")
    if chosen.kind == "points":
        raise ValueError(
            f"fallback {fallback!r} must be a voucher or nothing prize: it is what members get"
            " once the day's points budget is spent"
        )


class GameCampaign(_Section):
    """[[wheel.campaigns]]: local days on which the games' points prizes are multiplied."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: Localized
    starts: date
    ends: date
    multiplier: Decimal = Field(gt=1, le=10)

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        if self.ends < self.starts:
            raise ValueError(f"game campaign {self.id!r} ends ({self.ends}) before it starts")
        return self

    def applies(self, day: date) -> bool:
        """True when the campaign runs on local `day`."""
        return self.starts <= day <= self.ends


class ScratchConfig(_Section):
    """[wheel.scratch]: the scratch card (积分刮刮乐); without prizes of its own, the wheel's."""

    enabled: bool = True
    cost: int = Field(default=30, ge=0, le=1_000_000)
    free_cards_per_day: int = Field(default=0, ge=0, le=100)
    daily_limit: int = Field(default=5, ge=1, le=1000)
    # Cells a member uncovers before the whole card shows (or they tap "scratch all").
    reveal_after: int = Field(default=3, ge=1, le=9)
    prizes: list[GamePrize] = Field(default_factory=list)
    fallback: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.free_cards_per_day > self.daily_limit:
            raise ValueError(
                f"free_cards_per_day ({self.free_cards_per_day}) is more than daily_limit"
                f" ({self.daily_limit})"
            )
        if self.prizes:
            _check_prize_table(self.prizes, self.fallback)
        elif self.fallback:
            raise ValueError("fallback is only for the card's own prizes (it has none)")
        return self


class WheelConfig(_Section):
    """[wheel]: the points wheel (积分转盘) and, in [wheel.scratch], the scratch card."""

    enabled: bool = True
    cost: int = Field(default=50, ge=0, le=1_000_000)
    free_spins_per_day: int = Field(default=1, ge=0, le=100)
    daily_limit: int = Field(default=10, ge=1, le=1000)
    # Prize points all members together may win per local day, wheel and scratch card alike.
    daily_budget: int = Field(ge=0, le=1_000_000_000)
    fallback: str
    voucher_days: int = Field(default=30, ge=1, le=365)
    offer_minutes: int = Field(default=10, ge=1, le=1440)
    # A font file with Chinese glyphs for the wheel picture (empty: look for one).
    font: str = ""
    prizes: list[GamePrize] = Field(min_length=1)
    campaigns: list[GameCampaign] = Field(default_factory=list)
    scratch: ScratchConfig | None = None

    @field_validator("font")
    @classmethod
    def _font_file(cls, value: str) -> str:
        if value and not Path(value).is_file():
            raise ValueError(f"no font file {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.free_spins_per_day > self.daily_limit:
            raise ValueError(
                f"free_spins_per_day ({self.free_spins_per_day}) is more than daily_limit"
                f" ({self.daily_limit})"
            )
        _check_prize_table(self.prizes, self.fallback)
        ids = [c.id for c in self.campaigns]
        if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"campaigns: duplicate id {', '.join(duplicates)}")
        return self

    def prize_table(self, game: str) -> tuple[list[GamePrize], str]:
        """A game's prizes and fallback prize id (the card falls back to the wheel's)."""
        if game == "scratch" and self.scratch is not None and self.scratch.prizes:
            return self.scratch.prizes, self.scratch.fallback
        return self.prizes, self.fallback

    def prize(self, game: str, prize_id: str) -> GamePrize | None:
        """The prize of a game with this id, or None."""
        return next((p for p in self.prize_table(game)[0] if p.id == prize_id), None)

    def campaign_on(self, day: date) -> GameCampaign | None:
        """The game campaign with the highest multiplier on local `day`."""
        running = [c for c in self.campaigns if c.applies(day)]
        return max(running, key=lambda c: c.multiplier, default=None)


# A survey stays answerable in a chat: a handful of questions, each fitting its buttons.
MAX_SURVEY_QUESTIONS = 20
MAX_SURVEY_OPTIONS = 10
MAX_OPTION_LABEL = 40


class SurveyOption(_Section):
    """[[surveys.questions.options]]: one answer of a choice question."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_]{0,15}$")
    label: Localized

    @model_validator(mode="after")
    def _short_label(self) -> Self:
        if max(len(self.label.zh_CN), len(self.label.en)) > MAX_OPTION_LABEL:
            raise ValueError(
                f"option {self.id!r}: a label fits on a button (at most {MAX_OPTION_LABEL}"
                " characters)"
            )
        return self


class SurveyQuestion(_Section):
    """[[surveys.questions]]: single or multiple choice, a 1–5 rating, or free text."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    kind: Literal["single", "multiple", "rating", "text"]
    text: Localized
    required: bool = True
    options: list[SurveyOption] = Field(default_factory=list)
    # multiple: at most this many options may be ticked (none: any number).
    max_choices: int | None = Field(default=None, ge=1)
    # text: the longest answer taken, in characters.
    max_length: int = Field(default=500, ge=1, le=2000)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind in ("single", "multiple"):
            if not 2 <= len(self.options) <= MAX_SURVEY_OPTIONS:
                raise ValueError(
                    f"question {self.id!r}: a choice question has 2 to {MAX_SURVEY_OPTIONS}"
                    f" options, not {len(self.options)}"
                )
            ids = [o.id for o in self.options]
            if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
                raise ValueError(f"question {self.id!r}: duplicate option {', '.join(duplicates)}")
        elif self.options:
            raise ValueError(f"question {self.id!r}: only a choice question has options")
        if self.max_choices is not None:
            if self.kind != "multiple":
                raise ValueError(f"question {self.id!r}: max_choices is for multiple choice")
            if self.max_choices > len(self.options):
                raise ValueError(
                    f"question {self.id!r}: max_choices ({self.max_choices}) is more than the"
                    f" {len(self.options)} options"
                )
        return self


class Survey(_Section):
    """[[surveys]]: a reward survey members answer in the chat, once each."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    title: Localized
    # Shown before the first question.
    description: Localized | None = None
    # Points credited once, when a member completes the survey (0: no reward).
    reward_points: int = Field(default=0, ge=0, le=100_000, strict=True)
    # A local date (the survey opens at its first moment and closes after its last), or a
    # time with an offset.
    opens: date | datetime
    closes: date | datetime
    questions: list[SurveyQuestion] = Field(min_length=1, max_length=MAX_SURVEY_QUESTIONS)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for name, moment in (("opens", self.opens), ("closes", self.closes)):
            if isinstance(moment, datetime) and moment.tzinfo is None:
                raise ValueError(
                    f"survey {self.id!r}: give {name} as a date or a time with an offset,"
                    " e.g. 2026-06-01T09:00:00+08:00"
                )
        ids = [q.id for q in self.questions]
        if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"survey {self.id!r}: duplicate question {', '.join(duplicates)}")
        return self

    def opens_at(self, tz: ZoneInfo) -> datetime:
        """The first moment members may answer."""
        if isinstance(self.opens, datetime):
            return self.opens
        return datetime.combine(self.opens, time(0), tz)

    def closes_at(self, tz: ZoneInfo) -> datetime:
        """The first moment members may no longer answer (a date closes after that day)."""
        if isinstance(self.closes, datetime):
            return self.closes
        return datetime.combine(self.closes + timedelta(days=1), time(0), tz)

    def question(self, question_id: str) -> SurveyQuestion | None:
        """The question with this id, or None."""
        return next((q for q in self.questions if q.id == question_id), None)


class FeedbackConfig(_Section):
    """[feedback]: rewarded suggestions (/feedback), paid when an operator approves one."""

    enabled: bool = True
    reward_points: int = Field(default=20, ge=0, le=100_000, strict=True)
    # Suggestions per member per local day (approved or not): spam earns nothing anyway.
    daily_limit: int = Field(default=3, ge=1, le=100)
    min_length: int = Field(default=10, ge=1, le=500)
    max_length: int = Field(default=1000, ge=10, le=3000)

    @model_validator(mode="after")
    def _lengths(self) -> Self:
        if self.max_length < self.min_length:
            raise ValueError(
                f"max_length ({self.max_length}) is below min_length ({self.min_length})"
            )
        return self


TaskKind = Literal[
    "share", "review", "checkin", "purchases", "spend", "streak", "survey", "referral"
]
TaskRepeat = Literal["once", "daily", "weekly", "monthly"]
# What each kind's target counts.
TASK_TARGET_UNITS: Final[dict[str, str]] = {
    "share": "shares",
    "review": "reviews",
    "checkin": "events",
    "purchases": "purchases",
    "spend": "yuan",
    "streak": "weeks",
    "survey": "surveys",
    "referral": "friends",
}


class Task(_Section):
    """[[tasks]]: a challenge members complete for points and/or a badge."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: Localized
    description: Localized
    kind: TaskKind
    # How many of what the kind counts (TASK_TARGET_UNITS): shares, purchases, yuan, weeks...
    target: PositiveInt = 1
    # A task may be completed once, or once per local day, ISO week or calendar month.
    repeat: TaskRepeat = "once"
    # Local dates, both included; None: open-ended.
    starts: date | None = None
    ends: date | None = None
    # Points paid on each completion; a badge that names this task ([[badges]] task) is earned
    # on the first.
    reward_points: int = Field(default=0, ge=0, le=100_000, strict=True)
    # purchases, spend, streak, review: the categories that count (empty: every category).
    categories: tuple[str, ...] = ()
    # survey: the survey to complete.
    survey: str | None = None
    # share: credited at once, without staff review (still once per photo and within the
    # task's target per period).
    auto_approve: bool = False
    # review: the member bought in one of the categories within this many days.
    within_days: int = Field(default=30, ge=1, le=365)
    # review: the least characters of text.
    min_text_length: int = Field(default=15, ge=1, le=1000)
    # referral: at most this many friends rewarded per calendar month.
    max_per_month: int = Field(default=5, ge=1, le=1000)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.starts and self.ends and self.ends < self.starts:
            raise ValueError(f"task {self.id!r}: ends before it starts")
        if (self.survey is None) == (self.kind == "survey"):
            raise ValueError(f"task {self.id!r}: survey is for (and required by) kind survey")
        if self.categories and self.kind not in ("purchases", "spend", "streak", "review"):
            raise ValueError(f"task {self.id!r}: categories are for purchase and review tasks")
        if self.auto_approve and self.kind != "share":
            raise ValueError(f"task {self.id!r}: auto_approve is for share tasks")
        return self

    def open_on(self, day: date) -> bool:
        """Whether local `day` is inside the task's window."""
        return (self.starts is None or self.starts <= day) and (
            self.ends is None or day <= self.ends
        )


BadgeMilestone = Literal["eco_spend_yuan", "green_points", "surveys_completed", "purchases"]


class Badge(_Section):
    """[[badges]]: a badge and how it is earned: a task done, or a milestone reached."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: Localized
    emoji: str = Field(min_length=1, max_length=8)
    # Exactly one condition: a task's first completion (the task names this badge), or a
    # lifetime milestone reaching `threshold`.
    task: str | None = None
    milestone: BadgeMilestone | None = None
    threshold: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> Self:
        if (self.task is None) == (self.milestone is None):
            raise ValueError(f"badge {self.id!r}: give exactly one of task or milestone")
        if (self.milestone is None) != (self.threshold is None):
            raise ValueError(f"badge {self.id!r}: a milestone needs a threshold (and only it)")
        return self


class BadgeSet(_Section):
    """[[badge_sets]]: badges that, all collected, bring a grand prize once per member."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: Localized
    badges: tuple[str, ...] = Field(min_length=2)
    # The prize: points, or a mall item given free (exactly one).
    prize_points: int | None = Field(default=None, ge=1, le=1_000_000)
    prize_item: str | None = None

    @model_validator(mode="after")
    def _one_prize(self) -> Self:
        if (self.prize_points is None) == (self.prize_item is None):
            raise ValueError(
                f"badge set {self.id!r}: give exactly one of prize_points or prize_item"
            )
        return self


class Tier(_Section):
    """[[tiers.levels]]: one member tier, the lowest first, and its benefits."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: Localized
    # How /tier and the badge of the tier are drawn: a colour "#2E7D32" and an emoji.
    colour: str = Field(pattern=r"^#[0-9A-Fa-f]{6}$")
    emoji: str = Field(default="", max_length=8)
    # The qualifying total ([tiers] measure over its window) that reaches this tier; the
    # lowest tier's is 0 (every member holds at least that one).
    threshold: int = Field(ge=0, le=1_000_000_000, strict=True)
    # Purchase points are multiplied by this ([tiers] combine says how with a campaign's).
    earn_multiplier: Decimal = Field(default=Decimal(1), ge=1, le=10)
    # Paid once per member per tier per qualification period on reaching it (skipped tiers
    # on the way included).
    entry_reward_points: int = Field(default=0, ge=0, le=1_000_000, strict=True)
    # The member's birthday gift in this tier (None: [birthday] gift_points).
    birthday_gift_points: int | None = Field(default=None, ge=0, le=1_000_000, strict=True)
    # Free wheel spins a day on top of [wheel] free_spins_per_day.
    extra_free_spins: int = Field(default=0, ge=0, le=100)
    # Points per yuan of a bill deduction in this tier (None: [redemption]'s); lower is better.
    deduction_points_per_yuan: PositiveInt | None = None


class TiersConfig(_Section):
    """[tiers]: member tiers, how members qualify, and how they keep or lose a tier."""

    # What qualifies: purchase points earned (before campaign and tier bonuses) or yuan spent.
    measure: Literal["purchase_points", "spend_yuan"] = "spend_yuan"
    # Over which months: this calendar year, or the current local month and the 11 before it.
    window: Literal["calendar_year", "rolling_12_months"] = "calendar_year"
    # A tier's earn multiplier with a campaign's: the higher one only, or both multiplied.
    combine: Literal["highest", "multiply"] = "highest"
    # Members about to drop a tier at the yearly review (1 January, local) are told this many
    # days before, with what keeps the tier.
    downgrade_notice_days: int = Field(default=30, ge=1, le=365)
    # At most this many tiers down at one review.
    max_downgrade_steps: int = Field(default=1, ge=1, le=10)
    # The tiers, lowest first; none: the programme has no tiers.
    levels: list[Tier] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        ids = [t.id for t in self.levels]
        if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"tiers: duplicate id {', '.join(duplicates)}")
        if self.levels and self.levels[0].threshold != 0:
            raise ValueError("tiers: the first (lowest) tier's threshold must be 0")
        for lower, higher in zip(self.levels, self.levels[1:], strict=False):
            if higher.threshold <= lower.threshold:
                raise ValueError(
                    f"tiers: {higher.id!r} must have a higher threshold than {lower.id!r}"
                )
        return self

    def tier(self, tier_id: str) -> Tier | None:
        """The tier with this id, or None."""
        return next((t for t in self.levels if t.id == tier_id), None)

    def rank(self, tier_id: str) -> int:
        """A tier's place, 0 for the lowest; raises KeyError for an unknown id."""
        for index, tier in enumerate(self.levels):
            if tier.id == tier_id:
                return index
        raise KeyError(tier_id)


# Staff roles, from most to least trusted (the permissions of each: bot.programme.staff).
Role = Literal["owner", "manager", "cashier", "partner", "reviewer"]


class StaffMember(_Section):
    """[[staff]]: one person who runs the programme, with their role (and a partner's scope)."""

    telegram_id: TelegramUserId
    name: str = Field(min_length=1)
    role: Role
    # A partner's SKUs or mall category ids: it fulfils and stocks only those.
    scope: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _scope_for_partners(self) -> Self:
        if self.role == "partner" and not self.scope:
            raise ValueError(
                f"staff {self.name!r}: a partner needs a scope (the SKUs or mall categories"
                ' it fulfils), e.g. scope = ["carwash"]'
            )
        if self.role != "partner" and self.scope:
            raise ValueError(f"staff {self.name!r}: only a partner has a scope")
        return self


class ServerConfig(_Section):
    """[server]: the one HTTP server (till API, webhook, health and metrics)."""

    # Serve health and metrics even with neither the till API nor the webhook on.
    enabled: bool = False
    # Loopback by default: put a TLS-terminating proxy in front before opening it further.
    host: str = Field(default="127.0.0.1", min_length=1)
    # 0: any free port (tests, the demo), logged at start.
    port: int = Field(default=8080, ge=0, le=65535)


class ApiConfig(_Section):
    """[api]: the signed till API, served by `pointsbot run` when enabled."""

    enabled: bool = False
    # A request body longer than this is refused (413) before it is read.
    max_body_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    # Per key, over a sliding minute; more are refused (429) with Retry-After.
    requests_per_minute: int = Field(default=600, ge=1, le=100_000)
    # How far a request's signed timestamp may be from our clock, either way.
    clock_skew_seconds: int = Field(default=300, ge=1, le=3600)


class HealthConfig(_Section):
    """[health]: when GET /healthz calls the bot unhealthy (README "Health and metrics")."""

    # The store must answer a read, and its writer take the write lock, within this long.
    store_timeout_seconds: float = Field(default=2, gt=0, le=60)
    # Telegram must have been heard from this recently: a getUpdates answered (polling comes
    # back at least every poll timeout, 10 s) or a webhook call received.
    contact_within_seconds: float = Field(default=120, ge=1, le=7 * 24 * 3600)
    # A push the sender may send now (any service push; marketing outside quiet hours)
    # waiting longer than this means the outbox is stuck. Keep it above the time your largest
    # broadcast takes to drain (members / [push] rate_per_second).
    outbox_stuck_after_seconds: float = Field(default=3600, ge=60, le=7 * 24 * 3600)


class Config(_Section):
    """The whole validated configuration."""

    program: ProgramConfig
    telegram: TelegramConfig = TelegramConfig()
    storage: StorageConfig = StorageConfig()
    logging: LoggingConfig = LoggingConfig()
    earn: EarnConfig
    expiry: ExpiryConfig = ExpiryConfig()
    redemption: RedemptionConfig = RedemptionConfig()
    birthday: BirthdayConfig = BirthdayConfig()
    campaigns: list[Campaign] = Field(default_factory=list)
    push: PushConfig = PushConfig()
    limits: LimitsConfig = LimitsConfig()
    mall: MallConfig = MallConfig()
    # The points games; None (no [wheel] section): no games.
    wheel: WheelConfig | None = None
    surveys: list[Survey] = Field(default_factory=list)
    feedback: FeedbackConfig = FeedbackConfig()
    family: FamilyConfig = FamilyConfig()
    tasks: list[Task] = Field(default_factory=list)
    badges: list[Badge] = Field(default_factory=list)
    badge_sets: list[BadgeSet] = Field(default_factory=list)
    tiers: TiersConfig = TiersConfig()
    staff: list[StaffMember] = Field(default_factory=list)
    api: ApiConfig = ApiConfig()
    health: HealthConfig = HealthConfig()
    server: ServerConfig = ServerConfig()

    @model_validator(mode="after")
    def _staff_consistent(self) -> Self:
        ids = [s.telegram_id for s in self.staff]
        if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"staff: telegram_id {', '.join(map(str, duplicates))} listed twice")
        if both := sorted(set(ids) & set(self.program.admins)):
            raise ValueError(
                f"staff: telegram_id {', '.join(map(str, both))} is also in [program] admins"
                " (list each person once: admins are owners)"
            )
        known = {item.sku for item in self.mall.items} | {c.id for c in self.mall.categories}
        for member in self.staff:
            if unknown := sorted(set(member.scope) - known):
                raise ValueError(
                    f"staff {member.name!r}: scope names {', '.join(unknown)},"
                    " neither a SKU nor a mall category"
                )
        return self

    def staff_member(self, telegram_id: int) -> StaffMember | None:
        """Who this Telegram user is on the staff ([program] admins are owners), or None."""
        if telegram_id in self.program.admins:
            return StaffMember(telegram_id=telegram_id, name=str(telegram_id), role="owner")
        return next((s for s in self.staff if s.telegram_id == telegram_id), None)

    def owners(self) -> list[int]:
        """The Telegram ids of every owner ([program] admins and [[staff]] owners)."""
        return [*self.program.admins, *(s.telegram_id for s in self.staff if s.role == "owner")]

    @model_validator(mode="after")
    def _tiers_named_exist(self) -> Self:
        known = {t.id for t in self.tiers.levels}
        for item in self.mall.items:
            for tier_id in filter(None, (item.min_tier, *item.tier_available_from)):
                if tier_id not in known:
                    raise ValueError(f"item {item.sku}: no tier {tier_id!r} in [[tiers.levels]]")
        return self

    @model_validator(mode="after")
    def _campaigns_consistent(self) -> Self:
        ids = [c.id for c in self.campaigns]
        if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"campaigns: duplicate id {', '.join(duplicates)}")
        known = {c.id for c in self.earn.categories}
        for campaign in self.campaigns:
            if unknown := sorted(set(campaign.categories) - known):
                raise ValueError(
                    f"campaign {campaign.id!r} names unknown categories {', '.join(unknown)}"
                )
        return self

    @model_validator(mode="after")
    def _dependant_gifts_exist(self) -> Self:
        for kind in ("child", "pet"):
            gift: DependantGift | None = getattr(self.birthday, kind)
            if gift is None or gift.item is None:
                continue
            item = self.mall.item(gift.item)
            if item is None:
                raise ValueError(
                    f"birthday.{kind}.item: no mall item {gift.item!r} in [[mall.items]]"
                )
            if item.kind == "deduction":
                raise ValueError(
                    f"birthday.{kind}.item: {gift.item!r} is a bill deduction, not a gift"
                )
            if item.refund_if_unused:
                # A gift left unused would come back as its price in points.
                raise ValueError(
                    f"birthday.{kind}.item: {gift.item!r} gives points back when unused"
                    " (refund_if_unused), which a gift cannot"
                )
        return self

    @model_validator(mode="after")
    def _surveys_consistent(self) -> Self:
        ids = [s.id for s in self.surveys]
        if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"surveys: duplicate id {', '.join(duplicates)}")
        tz = self.program.tz
        for survey in self.surveys:
            if survey.closes_at(tz) <= survey.opens_at(tz):
                raise ValueError(f"survey {survey.id!r} closes before it opens")
        return self

    @model_validator(mode="after")
    def _tasks_and_badges_consistent(self) -> Self:
        for what, ids in (
            ("tasks", [t.id for t in self.tasks]),
            ("badges", [b.id for b in self.badges]),
            ("badge_sets", [s.id for s in self.badge_sets]),
        ):
            if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
                raise ValueError(f"{what}: duplicate id {', '.join(duplicates)}")
        categories = {c.id for c in self.earn.categories}
        surveys = {s.id for s in self.surveys}
        badged = {b.task for b in self.badges if b.task is not None}
        for task in self.tasks:
            if unknown := sorted(set(task.categories) - categories):
                raise ValueError(f"task {task.id!r} names unknown categories {', '.join(unknown)}")
            if task.survey is not None and task.survey not in surveys:
                raise ValueError(f"task {task.id!r} names unknown survey {task.survey!r}")
            if not task.reward_points and task.id not in badged:
                raise ValueError(
                    f"task {task.id!r}: give reward_points, or a badge that names this task"
                )
        tasks = {t.id for t in self.tasks}
        for badge in self.badges:
            if badge.task is not None and badge.task not in tasks:
                raise ValueError(f"badge {badge.id!r} names unknown task {badge.task!r}")
        badges = {b.id for b in self.badges}
        skus = {item.sku for item in self.mall.items}
        for badge_set in self.badge_sets:
            if unknown := sorted(set(badge_set.badges) - badges):
                raise ValueError(
                    f"badge set {badge_set.id!r} names unknown badges {', '.join(unknown)}"
                )
            if badge_set.prize_item is not None and badge_set.prize_item not in skus:
                raise ValueError(
                    f"badge set {badge_set.id!r}: prize_item {badge_set.prize_item!r}"
                    " is not in the catalog"
                )
        return self

    def task(self, task_id: str) -> Task | None:
        """The task with this id, or None."""
        return next((t for t in self.tasks if t.id == task_id), None)

    def survey(self, survey_id: str) -> Survey | None:
        """The survey with this id, or None."""
        return next((s for s in self.surveys if s.id == survey_id), None)


def unrunnable(config: Config) -> dict[str, str]:
    """What keeps `pointsbot run` from starting with a valid configuration: key -> message."""
    problems: dict[str, str] = {}
    if not config.owners():
        # Valid for tooling (a template, a check in CI), but a running programme without an
        # operator cannot award a purchase or answer a member's complaint.
        problems["program.admins"] = (
            "is empty and [[staff]] name no owner: `pointsbot run` needs at least one owner's"
            " Telegram user id"
        )
    return problems


def check_runnable(config: Config, source: str) -> None:
    """Raise ConfigError naming each key that keeps `pointsbot run` from starting."""
    if problems := unrunnable(config):
        lines = [f"  [{key}] {message}" for key, message in problems.items()]
        raise ConfigError("\n".join([f"{source}: invalid configuration", *lines]))


def _key(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a TOML key path, e.g. earn.categories[2].id."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        key = _key(tuple(p for p in err["loc"] if p not in ("function-after",)))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "is required but missing"
        elif err["type"] == "extra_forbidden":
            message = "is not a known setting (check the spelling)"
        lines.append(f"  [{key}] {message}")
    return "\n".join(lines)


def parse_config(data: dict[str, object], source: str = "config") -> Config:
    """Validate an already-parsed TOML document; raises ConfigError naming each bad key."""
    expiry = data.get("expiry")
    for key in ("scheduled", "announced"):
        if isinstance(expiry, dict) and key in expiry:
            raise ConfigError(
                f"{source}: invalid configuration\n  [expiry.{key}] a change of the rules"
                " must be announced: use `pointsbot schedule-policy-change`"
            )
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML configuration file; raises ConfigError."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: no such file (copy config.example.toml to {file} and edit it)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read it: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_config(data, str(file))


def webhook_secret_from_env() -> str | None:
    """The webhook's secret token from the environment; None when unset or blank; raises
    ConfigError when Telegram would refuse it."""
    secret = os.environ.get(WEBHOOK_SECRET_ENV, "").strip()
    if secret and (len(secret) > 256 or not set(secret) <= WEBHOOK_SECRET_CHARS):
        raise ConfigError(
            f"{WEBHOOK_SECRET_ENV}: 1-256 characters, only A-Z, a-z, 0-9, _ and - (Telegram's rule)"
        )
    return secret or None


def token_from_env() -> str | None:
    """Return the bot token from the environment, or None when unset or blank."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None
