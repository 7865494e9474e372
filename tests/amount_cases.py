"""One table of typed amounts for every reader of one: the rule itself (tests/test_rules.py),
the till's /purchase (tests/test_conv_admin.py) and the CSV import (tests/test_import.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.i18n import I18n

# The sample programme's single-purchase cap (config.example.toml, earn.max_purchase_yuan).
CAP = Decimal("50000")

# (as typed, the amount read, two decimals): every one earns points in the default category.
GOOD: list[tuple[str, str]] = [
    ("100", "100.00"),
    ("100.5", "100.50"),
    ("99.99", "99.99"),
    ("007", "7.00"),
    ("100.", "100.00"),
    ("¥128.50", "128.50"),
    ("￥128.50", "128.50"),
    ("128.50元", "128.50"),
    ("￥128.5元", "128.50"),
    # What Chinese input methods type: full-width digits and point.
    ("１００", "100.00"),
    ("１００．５", "100.50"),
    ("￥１２８．５０元", "128.50"),
    ("1００.5", "100.50"),
    # A space between the sign or 元 and the digits (a separate word in a till command).
    ("100 元", "100.00"),
    ("100\u3000元", "100.00"),
    ("¥ 100", "100.00"),
    ("￥ 128.50 元", "128.50"),
    ("１００ 元", "100.00"),
    ("50000", "50000.00"),
]

# (as typed, the i18n key of the refusal)
BAD: list[tuple[str, str]] = [
    ("abc", "error.amount_not_number"),
    ("NaN", "error.amount_not_number"),
    ("Infinity", "error.amount_not_number"),
    ("inf", "error.amount_not_number"),
    # No exponent: Decimal would read these, and 1e400 used to overflow the rounding.
    ("1e4", "error.amount_not_number"),
    ("1E+4", "error.amount_not_number"),
    ("1e400", "error.amount_not_number"),
    ("１ｅ４", "error.amount_not_number"),
    # No grouping: `1,0,0` used to be 100 yuan.
    ("1,0,0", "error.amount_not_number"),
    ("1,000", "error.amount_not_number"),
    ("1_000", "error.amount_not_number"),
    ("1'000", "error.amount_not_number"),
    ("1，000", "error.amount_not_number"),
    # No sign.
    ("+5", "error.amount_not_number"),
    ("-5", "error.amount_not_positive"),
    ("－5", "error.amount_not_positive"),
    # No other digit systems: Arabic-Indic, extended Arabic-Indic, Devanagari, superscript.
    ("١٠٠", "error.amount_not_number"),
    ("۱۰۰", "error.amount_not_number"),
    ("१००", "error.amount_not_number"),
    ("¹⁰⁰", "error.amount_not_number"),
    # One decimal point, ASCII or full-width; the ideographic full stop is not one.
    ("1.2.3", "error.amount_not_number"),
    ("１００．５．５", "error.amount_not_number"),
    ("100。5", "error.amount_not_number"),
    (".5", "error.amount_not_number"),
    ("0x10", "error.amount_not_number"),
    ("¥", "error.amount_not_number"),
    ("元", "error.amount_not_number"),
    ("100元元", "error.amount_not_number"),
    ("0", "error.amount_not_positive"),
    ("0.00", "error.amount_not_positive"),
    ("1.005", "error.amount_too_precise"),
    ("１．００５", "error.amount_too_precise"),
    ("50000.01", "error.amount_too_large"),
    ("9" * 200, "error.amount_too_large"),
    ("9" * 200 + ".99", "error.amount_too_large"),
]

GOOD_PARAMS = [pytest.param(t, read, id=f"ok{n}-{t[:12]}") for n, (t, read) in enumerate(GOOD)]
BAD_PARAMS = [pytest.param(t, key, id=f"bad{n}-{t[:12]}") for n, (t, key) in enumerate(BAD)]
_TEXTS = I18n.load()


def shown(typed: str) -> str:
    """The value as an error message repeats it (cut short after 24 characters)."""
    return typed if len(typed) <= 24 else typed[:24] + "…"


def refusal(typed: str, key: str, language: str = "zh-CN") -> str:
    """The refusal an operator reads for an amount, in the language given."""
    return _TEXTS.t(language, key, value=shown(typed), limit=CAP)
