"""Staff at the till: /purchase_return <receipt> [amount], a purchase refunded in full or in
part takes its points back (the rule: bot.programme.purchase_returns)."""

from __future__ import annotations

from telegram import Update

from bot.programme.errors import RuleError
from bot.programme.purchase_returns import PurchaseReturned, return_purchase
from bot.programme.till import command_source
from handlers.admin import amount_words, staff_actor
from handlers.common import BotContext, Texts
from handlers.points import format_code
from handlers.staff import staff_texts


def return_args(args: list[str]) -> tuple[str, str | None] | None:
    """`<receipt> [amount]` as (receipt, amount or None for everything left), or None."""
    if not args:
        return None
    receipt, rest = args[0], args[1:]
    if not rest:
        return receipt, None
    words = amount_words(rest)
    if words is None or words[1]:
        return None
    return receipt, words[0]


def returned_text(returned: PurchaseReturned, _: Texts) -> str:
    """What the cashier reads about a return booked now, before, or refused as a conflict."""
    if returned.status == "conflict":
        return _("purchase_return.conflict", receipt=returned.receipt)
    member = returned.member
    params: dict[str, object] = {
        "receipt": returned.receipt,
        "name": member.display_name,
        "code": format_code(member.member_code),
        "amount": f"{returned.refunded:.2f}",
        "points": returned.points,
        "taken": returned.taken,
        "owed": returned.owed,
    }
    if returned.status == "replayed":
        return _("purchase_return.replayed", **params)
    params["balance"] = returned.available
    key = "purchase_return.done_owed" if returned.owed else "purchase_return.done"
    return _(key, **params)


async def purchase_return(update: Update, context: BotContext) -> None:
    """`/purchase_return <receipt> [amount]`: take back the points of a refunded purchase."""
    asked = await staff_texts(update, context, "/purchase_return")
    if asked is None:
        return
    message, _ = asked
    parsed = return_args(context.args or [])
    if parsed is None:
        await message.reply_text(_("purchase_return.usage"))
        return
    receipt, amount = parsed
    try:
        returned = await return_purchase(
            context.services,
            receipt,
            amount,
            return_id=None,
            actor=staff_actor(update),
            # The message's own id: a redelivered update makes the same return once.
            source=command_source(message.chat_id, message.id),
        )
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    if returned.status == "returned":
        context.services.sender.wake()  # the member's message was queued with the return
    await message.reply_text(returned_text(returned, _))
