"""What the staff's till commands share: the member a typed or scanned code names, a voucher
code as typed, and where a command came from (its idempotency source)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from bot.i18n import N_
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from storage.errors import NotFound
from storage.members import MEMBER_CODE_DIGITS, Member, luhn_digit

# What people put between the groups of a code: /card prints "1173 4896 81", receipts print
# dashes, Chinese input methods type full-width spaces and dashes. None of these is part of it.
_DASHES: Final = "-－‐‑‒–—"
_SEPARATORS: Final = " \t\u3000" + _DASHES
# Full-width digits and letters read as the ASCII ones (what a Chinese input method types).
_WIDE: Final = str.maketrans(
    "０１２３４５６７８９"
    "ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ"
    "ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ",
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
)
_COMPACT: Final = _WIDE | str.maketrans("", "", _SEPARATORS)
# One word of a member code typed in groups: digits, dashes only between them. A word that
# starts or ends with a sign ("-5", "+50") is an amount or points, never part of a code.
_CODE_GROUP: Final = re.compile(f"[0-9]+(?:[{_DASHES}][0-9]+)*")
# Redemption and prize voucher codes have this many characters (storage CODE_LENGTH).
VOUCHER_CODE_LENGTH: Final = 8
_VOUCHER_GROUP: Final = re.compile(f"[A-Za-z0-9]+(?:[{_DASHES}][A-Za-z0-9]+)*")
# How much of a refused code a message repeats.
_SHOWN: Final = 32


def compact_code(text: str) -> str:
    """A code as typed without its separators, full-width characters read as ASCII."""
    return text.translate(_COMPACT)


def member_code(text: str) -> str:
    """The 10 digits of a member code typed with or without separators; raises RuleError
    (not a number, wrong length, wrong check digit)."""
    code, shown = compact_code(text), text.strip()[:_SHOWN]
    if not code.isascii() or not code.isdigit():
        raise RuleError(N_("admin.code_not_number"), value=shown)
    if len(code) != MEMBER_CODE_DIGITS:
        raise RuleError(N_("admin.code_invalid"), value=shown)
    if luhn_digit(code[:-1]) != code[-1]:
        raise RuleError(N_("admin.code_check_digit"), value=shown)
    return code


def _split_code(words: Sequence[str], group: re.Pattern[str], length: int) -> tuple[str, list[str]]:
    """The leading words that spell one code of `length` characters, and the words after."""
    taken = gathered = 0
    for word in words:
        size = len(compact_code(word))
        if group.fullmatch(word.translate(_WIDE)) is None or gathered + size > length:
            break
        taken, gathered = taken + 1, gathered + size
        if gathered == length:
            break
    # A first word that is no code group at all (letters, too long) is the code as typed,
    # refused by name rather than read as something else.
    taken = max(taken, 1) if words else 0
    return " ".join(words[:taken]), list(words[taken:])


def split_member_code(words: Sequence[str]) -> tuple[str, list[str]]:
    """A command's words as (the member code as typed, the words after it): the code is the
    leading words of digits (groups like /card prints them) until 10 digits are gathered."""
    # `1173 4896 81 100` is the code and 100; a group that would pass 10 digits starts the
    # next argument, so a short code is refused for its length, not read with the amount.
    return _split_code(words, _CODE_GROUP, MEMBER_CODE_DIGITS)


def voucher_code(text: str) -> str:
    """A redemption or prize voucher code typed in any case, with spaces or dashes, as stored."""
    return compact_code(text).upper()


def split_voucher_code(words: Sequence[str]) -> tuple[str, list[str]]:
    """A command's words as (the voucher code as typed, the words after it): the leading
    words of letters and digits until a code's 8 characters are gathered."""
    return _split_code(words, _VOUCHER_GROUP, VOUCHER_CODE_LENGTH)


def command_source(chat_id: int, message_id: int) -> str:
    """The unique source of a command sent to the bot: a redelivered update names it again."""
    return f"tg:{chat_id}:{message_id}"


async def find_member(programme: Programme, text: str) -> Member:
    """The member a typed or scanned code names (spaces and dashes allowed between groups);
    raises RuleError (not a member code, nobody has it)."""
    code = member_code(text)
    try:
        return await programme.members.by_code(code)
    except NotFound:
        raise RuleError(N_("admin.member_not_found"), code=code) from None
