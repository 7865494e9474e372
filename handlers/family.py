"""/family: a household at a glance, invitations by link and by code, leaving, removing a
member and handing over the head role; /join CODE; staff /dissolve_household.

Every button is decoded by a shape table and re-checked in the store (bot/programme/family.py
and storage/family.py): a stale or forged one changes nothing. Destructive steps ask for a
second tap. The invitation token, not its id, is in the accept and decline buttons, so no one
can answer an invitation they were not given.
"""

from __future__ import annotations

import re
import warnings
from typing import Final

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.i18n import N_
from bot.programme import family
from bot.programme.errors import RuleError
from bot.programme.till import find_member, split_member_code
from handlers.common import BotContext, Texts, edit_in_place, member_for, texts_for
from handlers.questions import asks
from handlers.staff import staff_texts

FAMILY_PREFIX: Final = "fam"
ASK_CODE: Final = 0
# What each action carries: fam:<action>[:<argument>]. A token is URL-safe base64, a member
# id digits; anything else is forged.
_SHAPES: Final = {
    "view": None,
    "new": None,
    "inv": None,
    "lv": None,
    "lvy": None,
    "rm": re.compile(r"[0-9]{1,15}"),
    "rmy": re.compile(r"[0-9]{1,15}"),
    "hd": re.compile(r"[0-9]{1,15}"),
    "hdy": re.compile(r"[0-9]{1,15}"),
    "rml": None,
    "hdl": None,
    "ok": re.compile(r"[A-Za-z0-9_-]{8,48}"),
    "no": re.compile(r"[A-Za-z0-9_-]{8,48}"),
}


def family_data(action: str, argument: object | None = None) -> str:
    """Callback data for a household button."""
    return f"{FAMILY_PREFIX}:{action}" + ("" if argument is None else f":{argument}")


def decode_family(data: str) -> tuple[str, str | None] | None:
    """(action, argument) of a household button, or None when the data is not one of ours."""
    prefix, _, rest = data.partition(":")
    action, sep, argument = rest.partition(":")
    if prefix != FAMILY_PREFIX or action not in _SHAPES:
        return None
    shape = _SHAPES[action]
    if shape is None:
        return (action, None) if not sep else None
    if not sep or shape.fullmatch(argument) is None:
        return None
    return action, argument


def _actor(member_id: int) -> str:
    return f"member:{member_id}"


# --- views -----------------------------------------------------------------------------------


def _intro(_: Texts, max_members: int) -> tuple[str, InlineKeyboardMarkup]:
    keyboard = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(_("family.create_button"), callback_data=family_data("new"))],
            [InlineKeyboardButton(_("family.code_button"), callback_data="fam:code")],
        ]
    )
    return _("family.intro", max=max_members), keyboard


def render_glance(glance: family.Glance, _: Texts, max_members: int) -> str:
    """The household at a glance: names (head marked), shared balances, the total."""
    lines = [_("family.title", count=len(glance.members), max=max_members)]
    for m in glance.members:
        name = m.name + (_("family.you") if m.is_you else "")
        mark = "👑" if m.is_head else "•"
        if m.available is None:
            lines.append(_("family.line_private", mark=mark, name=name))
        elif m.next_expiry is not None and m.next_expiring is not None:
            lines.append(
                _(
                    "family.line_expiring",
                    mark=mark,
                    name=name,
                    points=m.available,
                    expiring=m.next_expiring,
                    day=m.next_expiry.isoformat(),
                )
            )
        else:
            lines.append(_("family.line_shared", mark=mark, name=name, points=m.available))
    lines.append(_("family.total", points=glance.shared_total, sharing=glance.sharing))
    if not glance.you_share:
        lines.append(_("family.share_hint"))
    return "\n".join(lines)


def glance_keyboard(glance: family.Glance, _: Texts) -> InlineKeyboardMarkup:
    """Invite; a transfer button per other member; family birthdays; the head's buttons;
    leave."""
    rows: list[list[InlineKeyboardButton]] = []
    if glance.places_left:
        rows.append(
            [InlineKeyboardButton(_("family.invite_button"), callback_data=family_data("inv"))]
        )
    # The transfer flow (handlers of `tr:`) and family birthdays (`dep:`) live elsewhere.
    others = [m for m in glance.members if not m.is_you]
    transfers = [
        InlineKeyboardButton(f"💸 {m.name}", callback_data=f"tr:to:{m.member_id}") for m in others
    ]
    rows += [transfers[i : i + 2] for i in range(0, len(transfers), 2)]
    rows.append([InlineKeyboardButton(_("family.birthdays_button"), callback_data="dep:list")])
    if glance.you_are_head and others:
        rows.append(
            [
                InlineKeyboardButton(_("family.remove_button"), callback_data=family_data("rml")),
                InlineKeyboardButton(_("family.head_button"), callback_data=family_data("hdl")),
            ]
        )
    rows.append([InlineKeyboardButton(_("family.leave_button"), callback_data=family_data("lv"))])
    return InlineKeyboardMarkup(rows)


async def _view(context: BotContext, member_id: int, _: Texts) -> tuple[str, InlineKeyboardMarkup]:
    """The member's household view, or the introduction when they are in none."""
    services = context.services
    max_members = services.config.family.max_members
    glance = await family.glance(services, member_id)
    if glance is None:
        return _intro(_, max_members)
    return render_glance(glance, _, max_members), glance_keyboard(glance, _)


def _back(_: Texts) -> list[InlineKeyboardButton]:
    return [InlineKeyboardButton(_("family.back"), callback_data=family_data("view"))]


def _offer_view(offer: family.InvitationOffer, _: Texts) -> tuple[str, InlineKeyboardMarkup]:
    """An invitation as its invitee sees it, with accept and decline."""
    names = _("list.separator").join(m.name for m in offer.household.members)
    text = _(
        "family.offer",
        inviter=offer.invitation.inviter_name,
        count=len(offer.household.members),
        names=names,
    )
    token = offer.invitation.token
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(_("family.accept"), callback_data=family_data("ok", token)),
                InlineKeyboardButton(_("family.decline"), callback_data=family_data("no", token)),
            ]
        ]
    )
    return text, keyboard


# --- member commands -------------------------------------------------------------------------


async def family_command(update: Update, context: BotContext) -> None:
    """/family: the household at a glance, or what a household is for."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    try:
        text, keyboard = await _view(context, member.id, _)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    await message.reply_text(text, reply_markup=keyboard)


async def show_invitation(update: Update, context: BotContext, token: str) -> None:
    """/start fam_<token>: who invites the member to which household, accept or decline."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    try:
        offer = await family.offer_by_token(context.services, member.id, token)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    text, keyboard = _offer_view(offer, _)
    await message.reply_text(text, reply_markup=keyboard)


async def _offer_for_code(update: Update, context: BotContext, text: str) -> bool:
    """Show the invitation a typed code names; False when the code was mistyped."""
    user, message = update.effective_user, update.effective_message
    assert user is not None and message is not None
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    try:
        offer = await family.offer_by_code(context.services, member.id, text)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return exc.key != "family.code_invalid"
    reply, keyboard = _offer_view(offer, _)
    await message.reply_text(reply, reply_markup=keyboard)
    return True


@asks
async def join_command(update: Update, context: BotContext) -> int:
    """/join CODE shows the invitation; /join alone asks for the code."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return ConversationHandler.END
    if context.args:
        await _offer_for_code(update, context, " ".join(context.args))
        return ConversationHandler.END
    _ = await texts_for(update, context)
    await message.reply_text(_("family.ask_code"))
    return ASK_CODE


@asks
async def ask_code(update: Update, context: BotContext) -> int:
    """The "join with a code" button: ask for the code."""
    query = update.callback_query
    if query is None:
        return ConversationHandler.END
    await query.answer()
    _ = await texts_for(update, context)
    if query.message is not None:
        await context.bot.send_message(query.message.chat.id, _("family.ask_code"))
    return ASK_CODE


async def receive_code(update: Update, context: BotContext) -> int:
    """A typed code: show its invitation; a mistyped one may be typed again."""
    message = update.effective_message
    if message is None or message.text is None:
        return ASK_CODE
    shown = await _offer_for_code(update, context, message.text)
    return ConversationHandler.END if shown else ASK_CODE


async def cancel(update: Update, context: BotContext) -> int:
    """/cancel: no code typed; nothing changes."""
    if update.effective_message is not None:
        _ = await texts_for(update, context)
        await update.effective_message.reply_text(_("family.cancelled"))
    return ConversationHandler.END


def family_conversation() -> ConversationHandler:  # type: ignore[type-arg]
    """Ask for an invitation code and wait for it, with /cancel to leave."""
    private_text = filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND
    incoming = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    with warnings.catch_warnings():
        # The entry may be a button and the answer a typed message: tracked per chat and user.
        warnings.filterwarnings("ignore", message=".*per_message=False", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[
                CommandHandler("join", join_command, filters=incoming),
                CallbackQueryHandler(ask_code, pattern=rf"^{FAMILY_PREFIX}:code$"),
            ],
            states={ASK_CODE: [MessageHandler(private_text, receive_code)]},
            fallbacks=[CommandHandler("cancel", cancel)],
            name="family_code",
            # /join CODE typed while the code is being asked for is answered, not dropped.
            allow_reentry=True,
            persistent=True,
            conversation_timeout=600,
        )


# --- buttons ---------------------------------------------------------------------------------


async def family_callback(update: Update, context: BotContext) -> None:
    """Every household button: decode, re-check in the store, show the next view."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await texts_for(update, context)
    decoded = decode_family(query.data or "")
    if decoded is None:
        await query.answer(_("button.expired"), show_alert=True)
        return
    action, argument = decoded
    member = await member_for(user, context)
    services = context.services
    try:
        if action in ("ok", "no"):
            assert argument is not None
            await _answer(update, context, _, member.id, member.display_name, argument, action)
            return
        if action == "new":
            await family.create(services, member.id, actor=_actor(member.id))
            await query.answer(_("family.created"))
            await edit_in_place(update, *await _view(context, member.id, _))
        elif action == "view":
            await query.answer()
            await edit_in_place(update, *await _view(context, member.id, _))
        elif action == "inv":
            await _invite(update, context, _, member.id)
        elif action == "lv":
            await _ask_leave(update, context, _, member.id)
        elif action == "lvy":
            await family.leave(services, member.id, member.display_name, actor=_actor(member.id))
            await query.answer()
            await edit_in_place(update, _("family.left"), None)
        elif action in ("rml", "hdl"):
            await _pick_member(update, context, _, member.id, "rm" if action == "rml" else "hd")
        elif action in ("rm", "hd"):
            assert argument is not None
            await _ask_member_step(update, context, _, member.id, action, int(argument))
        elif action == "rmy":
            assert argument is not None
            _departure, gone = await family.remove(
                services, member.id, int(argument), actor=_actor(member.id)
            )
            await query.answer(_("family.removed", name=gone.name))
            await edit_in_place(update, *await _view(context, member.id, _))
        elif action == "hdy":
            assert argument is not None
            _change, new_head = await family.hand_over(
                services, member.id, int(argument), actor=_actor(member.id)
            )
            await query.answer(_("family.head_handed", name=new_head.name))
            await edit_in_place(update, *await _view(context, member.id, _))
    except RuleError as exc:
        await query.answer(_(exc.key, **exc.params), show_alert=True)


async def _answer(  # noqa: PLR0913 - the tap's parts, decoded once by the caller
    update: Update,
    context: BotContext,
    _: Texts,
    member_id: int,
    name: str,
    token: str,
    action: str,
) -> None:
    query = update.callback_query
    assert query is not None
    accept = action == "ok"
    invitation = await family.answer_by_token(
        context.services, member_id, name, token, accept=accept, actor=_actor(member_id)
    )
    if not accept:
        await query.answer()
        await edit_in_place(update, _("family.declined", inviter=invitation.inviter_name), None)
        return
    await query.answer(_("family.joined_toast"))
    text, keyboard = await _view(context, member_id, _)
    joined = _("family.joined", inviter=invitation.inviter_name)
    await edit_in_place(update, f"{joined}\n\n{text}", keyboard)


async def _invite(update: Update, context: BotContext, _: Texts, member_id: int) -> None:
    query = update.callback_query
    assert query is not None
    services = context.services
    invitation = await family.invite(services, member_id)
    await query.answer()
    link = family.invitation_link(context.bot.username, invitation)
    text = _(
        "family.invitation",
        link=link,
        code=invitation.code,
        hours=services.config.family.invitation_hours,
    )
    if query.message is not None:
        await context.bot.send_message(query.message.chat.id, text)


async def _ask_leave(update: Update, context: BotContext, _: Texts, member_id: int) -> None:
    query = update.callback_query
    assert query is not None
    preview = await family.leave_preview(context.services, member_id)
    if preview.last:
        text = _("family.leave_ask_last")
    elif preview.successor is not None:
        text = _("family.leave_ask_head", name=preview.successor)
    else:
        text = _("family.leave_ask")
    await query.answer()
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(_("family.leave_yes"), callback_data=family_data("lvy")),
                *_back(_),
            ]
        ]
    )
    await edit_in_place(update, text, keyboard)


async def _pick_member(
    update: Update, context: BotContext, _: Texts, member_id: int, action: str
) -> None:
    """The head picks whom to remove or make head."""
    query = update.callback_query
    assert query is not None
    glance = await family.glance(context.services, member_id)
    if glance is None:
        raise RuleError(N_("family.not_in"))
    if not glance.you_are_head:
        raise RuleError(N_("family.not_head"))
    await query.answer()
    rows = [
        [InlineKeyboardButton(m.name, callback_data=family_data(action, m.member_id))]
        for m in glance.members
        if not m.is_you
    ]
    rows.append(_back(_))
    key = "family.remove_pick" if action == "rm" else "family.head_pick"
    await edit_in_place(update, _(key), InlineKeyboardMarkup(rows))


async def _ask_member_step(
    update: Update, context: BotContext, _: Texts, member_id: int, action: str, chosen_id: int
) -> None:
    """Removing a member or handing over the head role: a second tap confirms."""
    query = update.callback_query
    assert query is not None
    chosen = await family.member_choice(context.services, member_id, chosen_id)
    await query.answer()
    if action == "rm":
        text, yes = _("family.remove_ask", name=chosen.name), _("family.remove_yes")
    else:
        text, yes = _("family.head_ask", name=chosen.name), _("family.head_yes")
    keyboard = InlineKeyboardMarkup(
        [[InlineKeyboardButton(yes, callback_data=family_data(f"{action}y", chosen_id)), *_back(_)]]
    )
    await edit_in_place(update, text, keyboard)


# --- staff -----------------------------------------------------------------------------------


async def dissolve_household(update: Update, context: BotContext) -> None:
    """Staff: `/dissolve_household <member code> <reason>` ends that member's household."""
    asked = await staff_texts(update, context, "/dissolve_household")
    if asked is None:
        return
    message, _ = asked
    code, rest = split_member_code(context.args or [])
    if not code:
        await message.reply_text(_("family.dissolve_usage"))
        return
    user = update.effective_user
    actor = f"telegram:{user.id if user else 0}"
    try:
        member = await find_member(context.services, code)
        dissolved = await family.dissolve(context.services, member.id, " ".join(rest), actor=actor)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    await message.reply_text(
        _(
            "family.dissolved",
            id=dissolved.household_id,
            count=len(dissolved.members),
            reason=dissolved.reason,
        )
    )
