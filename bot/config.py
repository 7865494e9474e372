"""Configuration: `config.toml` loaded with tomllib and validated at start."""

from __future__ import annotations

import os
import tomllib
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

LANGUAGES: tuple[str, ...] = ("zh-CN", "en")
TOKEN_ENV = "POINTSBOT_TOKEN"  # noqa: S105 - the variable's name, not a secret

Language = Literal["zh-CN", "en"]
PositiveInt = Annotated[int, Field(gt=0)]


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
    admins: list[int] = Field(default_factory=list)
    support_contact: str = ""

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
    """[telegram]: where the Bot API is."""

    base_url: str = ""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (or be empty)")
        return value


class StorageConfig(_Section):
    """[storage]: the SQLite database."""

    path: str = "data/pointsbot.sqlite3"
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"


class Category(_Section):
    """One purchase category and its earn multiplier."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: Localized
    multiplier: Decimal = Field(gt=0, le=100)


class EarnConfig(_Section):
    """[earn]: how purchases turn into points."""

    points_per_yuan: PositiveInt = 1
    max_purchase_yuan: Decimal = Field(default=Decimal("50000"), gt=0)
    share_bonus_points: int = Field(default=0, ge=0)
    share_bonus_daily_limit: int = Field(default=1, ge=0)
    default_category: str = "general"
    categories: list[Category] = Field(min_length=1)

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
        return next((c for c in self.categories if c.id == category_id), None)


class ExpiryConfig(_Section):
    """[expiry]: how long points last."""

    mode: Literal["rolling", "year_end", "never"] = "rolling"
    months: int = Field(default=12, ge=1, le=120)
    years: int = Field(default=1, ge=0, le=10)
    refund_min_validity_days: int = Field(default=30, ge=1, le=3650)
    policy_notice_days: int = Field(default=30, ge=30, le=3650)


class RedemptionConfig(_Section):
    """[redemption]: spending points and returning what was redeemed."""

    deduction_points_per_yuan: PositiveInt = 100
    return_window_days: int = Field(default=7, ge=1, le=365)


class BirthdayConfig(_Section):
    """[birthday]: the birthday gift."""

    gift_points: int = Field(default=0, ge=0)


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

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind != "deduction" and self.price <= 0:
            raise ValueError(f"item {self.sku}: price must be more than 0 points")
        for moment in (self.available_from, self.available_until):
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
    categories: list[MallCategory] = Field(default_factory=list)
    items: list[MallItem] = Field(default_factory=list)
    discounts: list[MallDiscount] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.deduction_max_yuan < self.deduction_min_yuan:
            raise ValueError("deduction_max_yuan is below deduction_min_yuan")
        shelves = [c.id for c in self.categories]
        skus = [i.sku for i in self.items]
        for what, ids in (("category", shelves), ("item sku", skus)):
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


class Config(_Section):
    """The whole validated configuration."""

    program: ProgramConfig
    telegram: TelegramConfig = TelegramConfig()
    storage: StorageConfig = StorageConfig()
    earn: EarnConfig
    expiry: ExpiryConfig = ExpiryConfig()
    redemption: RedemptionConfig = RedemptionConfig()
    birthday: BirthdayConfig = BirthdayConfig()
    campaigns: list[Campaign] = Field(default_factory=list)
    mall: MallConfig = MallConfig()

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

    def is_admin(self, telegram_id: int) -> bool:
        """True when this Telegram user is an operator."""
        return telegram_id in self.program.admins


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


def token_from_env() -> str | None:
    """Return the bot token from the environment, or None when unset or blank."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None
