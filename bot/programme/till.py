"""What the staff's till commands share: the member a typed or scanned code names, and where a
command came from (its idempotency source)."""

from __future__ import annotations

from bot.i18n import N_
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from storage.errors import NotFound
from storage.members import Member, is_valid_member_code


def command_source(chat_id: int, message_id: int) -> str:
    """The unique source of a command sent to the bot: a redelivered update names it again."""
    return f"tg:{chat_id}:{message_id}"


async def find_member(programme: Programme, text: str) -> Member:
    """The member a typed or scanned code names (dashes allowed between groups); raises
    RuleError (not a member code, nobody has it)."""
    code = text.replace("-", "")
    if not is_valid_member_code(code):
        raise RuleError(N_("admin.code_invalid"), value=text[:32])
    try:
        return await programme.members.by_code(code)
    except NotFound:
        raise RuleError(N_("admin.member_not_found"), code=code) from None
