"""Codes and categories as people type them: member codes in groups, voucher codes in any case,
purchase categories by id or name, amounts with a currency sign or 元 (bot/programme/till.py,
bot/programme/purchases.py, the stores' code lookups)."""

from __future__ import annotations

import pytest

from bot.config import Config, load_config
from bot.i18n import I18n
from bot.programme.errors import RuleError
from bot.programme.purchases import category_named, find_category, parse_amount
from bot.programme.till import (
    member_code,
    split_member_code,
    split_voucher_code,
    voucher_code,
)
from storage.members import luhn_digit
from tests.conftest import SAMPLE

# A valid code (its last digit is the Luhn check digit of the first nine) and how /card
# prints it; the same code with its last digit off by one.
CODE = "117348968" + luhn_digit("117348968")
BAD_CHECK = CODE[:-1] + str((int(CODE[-1]) + 1) % 10)
GROUPED = f"{CODE[:4]} {CODE[4:8]} {CODE[8:]}"


@pytest.fixture
def config() -> Config:
    return load_config(SAMPLE)


@pytest.mark.parametrize(
    "typed",
    [
        CODE,
        f"{CODE[:4]}-{CODE[4:8]}-{CODE[8:]}",
        f" {CODE} ",
        f"{CODE[:4]}\u3000{CODE[4:8]}\u3000{CODE[8:]}",  # full-width spaces
        f"{CODE[:4]}－{CODE[4:8]}－{CODE[8:]}",  # full-width dashes
        CODE.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
        f"{CODE[:4]} - {CODE[4:]}",
    ],
)
def test_a_member_code_typed_in_groups_reads_as_its_digits(typed: str) -> None:
    assert member_code(typed) == CODE


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        (BAD_CHECK, "admin.code_check_digit"),
        (f"{BAD_CHECK[:4]} {BAD_CHECK[4:8]} {BAD_CHECK[8:]}", "admin.code_check_digit"),
        (CODE[:-1], "admin.code_invalid"),
        (CODE + "0", "admin.code_invalid"),
        ("12345", "admin.code_invalid"),
        ("C0DE123456", "admin.code_not_number"),
        ("1173 48g6 81", "admin.code_not_number"),
        ("+" + CODE, "admin.code_not_number"),
        ("", "admin.code_not_number"),
        # Other digit systems are not member codes, however they read.
        ("١١٧٣٤٨٩٦٨١", "admin.code_not_number"),
        ("¹¹⁷³⁴⁸⁹⁶⁸¹", "admin.code_not_number"),
    ],
)
def test_a_wrong_member_code_is_refused_for_what_is_wrong(typed: str, key: str) -> None:
    with pytest.raises(RuleError) as refused:
        member_code(typed)
    assert refused.value.key == key
    assert refused.value.params == {"value": typed.strip()}


def test_the_check_digit_message_says_so_in_both_languages() -> None:
    with pytest.raises(RuleError) as refused:
        member_code(BAD_CHECK)
    texts = I18n.load()
    zh = texts.t("zh-CN", refused.value.key, **refused.value.params)
    en = texts.t("en", refused.value.key, **refused.value.params)
    assert zh == f"会员号有误（校验位不符）：{BAD_CHECK}。请核对后重试。"
    assert en.startswith("The member code is wrong (check digit does not match)")


@pytest.mark.parametrize(
    ("words", "code", "rest"),
    [
        # Three groups, then an amount: the amount is not read into the code.
        ("1173 4896 81 100", "1173 4896 81", ["100"]),
        ("1173 4896 81 100元 eco R-1", "1173 4896 81", ["100元", "eco", "R-1"]),
        ("1173489681 100", "1173489681", ["100"]),
        ("1173-4896-81 100", "1173-4896-81", ["100"]),
        ("1173 4896-81 5", "1173 4896-81", ["5"]),
        ("11734 89681 5", "11734 89681", ["5"]),
        # A group that would pass ten digits starts the next argument.
        ("1173 4896 8 100", "1173 4896 8", ["100"]),
        ("1173 4896 81100", "1173 4896", ["81100"]),
        # Signed numbers (points to adjust, a negative amount) never join the code.
        ("1173 4896 81 -5", "1173 4896 81", ["-5"]),
        ("1173 4896 8 -5 wrong", "1173 4896 8", ["-5", "wrong"]),
        ("1173 4896 +50 reason", "1173 4896", ["+50", "reason"]),
        # Not digits at all: the first word is the code as typed, refused by name later.
        ("C0DE 10", "C0DE", ["10"]),
        ("12345678901 10", "12345678901", ["10"]),
        ("-1173 4896 81", "-1173", ["4896", "81"]),
        ("", "", []),
    ],
)
def test_a_member_code_is_split_from_the_words_after_it(
    words: str, code: str, rest: list[str]
) -> None:
    assert split_member_code(words.split()) == (code, rest)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("ABCD1234", "ABCD1234"),
        ("abcd1234", "ABCD1234"),
        ("abcd-1234", "ABCD1234"),
        ("ABCD 1234", "ABCD1234"),
        ("ａｂｃｄ－１２３４", "ABCD1234"),
        (" aBcD\u30001234 ", "ABCD1234"),
    ],
)
def test_a_voucher_code_reads_in_any_case_and_grouping(typed: str, stored: str) -> None:
    assert voucher_code(typed) == stored


@pytest.mark.parametrize(
    ("words", "code", "rest"),
    [
        ("ABCD1234", "ABCD1234", []),
        ("abcd-1234 opened box", "abcd-1234", ["opened", "box"]),
        ("ABCD 1234 opened", "ABCD 1234", ["opened"]),
        ("AB CD 12 34", "AB CD 12 34", []),
        ("ABCD1234 12", "ABCD1234", ["12"]),
        ("ABC 1234 damaged", "ABC 1234", ["damaged"]),
        ("拆封 ABCD1234", "拆封", ["ABCD1234"]),
    ],
)
def test_a_voucher_code_is_split_from_the_reason_after_it(
    words: str, code: str, rest: list[str]
) -> None:
    assert split_voucher_code(words.split()) == (code, rest)


@pytest.mark.parametrize(
    ("typed", "category"),
    [
        (None, "general"),
        ("", "general"),
        ("eco", "eco"),
        ("ECO", "eco"),
        ("Eco", "eco"),
        ("ｅｃｏ", "eco"),
        ("绿色环保商品", "eco"),
        ("Eco-friendly products", "eco"),
        ("eco-friendly PRODUCTS", "eco"),
        ("  Eco-friendly   products ", "eco"),
        ("日常商品", "general"),
        ("everyday goods", "general"),
        ("REFILL", "refill"),
        ("补充装与裸装商品", "refill"),
    ],
)
def test_a_category_is_found_by_its_id_or_either_name(
    config: Config, typed: str | None, category: str
) -> None:
    assert find_category(typed, config).id == category


@pytest.mark.parametrize("typed", ["toys", "绿色", "eco friendly", "eco products", "ec o"])
def test_an_unknown_category_lists_the_choices_in_the_readers_language(
    config: Config, typed: str
) -> None:
    assert category_named(typed, config) is None
    with pytest.raises(RuleError) as refused:
        find_category(typed, config)
    texts = I18n.load()
    zh = texts.t("zh-CN", refused.value.key, **refused.value.params)
    en = texts.t("en", refused.value.key, **refused.value.params)
    assert zh == (
        f"没有「{typed}」这个商品类别。可用的类别：日常商品（general）、绿色环保商品（eco）、"
        "补充装与裸装商品（refill）。"
    )
    assert en == (
        f"There is no product category “{typed}”. Categories: Everyday goods (general), "
        "Eco-friendly products (eco), Refills and package-free goods (refill)."
    )


@pytest.mark.parametrize("typed", ["1 00", "¥ 1 00", "100 元 元", "¥ ¥100"])
def test_a_space_inside_the_digits_is_still_not_an_amount(config: Config, typed: str) -> None:
    with pytest.raises(RuleError) as refused:
        parse_amount(typed, config)
    assert refused.value.key == "error.amount_not_number"
