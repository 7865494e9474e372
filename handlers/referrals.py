"""Referrals: /invite shows the member's personal link; /start ref_<code> registers a friend
(handlers/info.py) and says what became of the link."""

from __future__ import annotations

from telegram import Message, Update

from bot.programme.referrals import invitation, referral_link
from handlers.common import BotContext, Texts, member_for, texts_for
from storage.referrals import Registered


async def invite(update: Update, context: BotContext) -> None:
    """/invite: the member's personal link, the reward for a friend's first purchase, and how
    their friends stand this month."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    shown = await invitation(context.services, member)
    link = referral_link(context.bot.username, member)
    counts = shown.counts
    if shown.task is None:
        terms = _("referral.no_reward")
    else:
        terms = _(
            "referral.terms",
            points=shown.task.reward_points,
            max=shown.task.max_per_month,
        )
    standing = _(
        "referral.standing",
        joined=counts.joined,
        purchased=counts.purchased,
        month=counts.credited_in_month,
    )
    await message.reply_text(_("referral.invite", link=link, terms=terms, standing=standing))


def render_referred(joined: Registered, _: Texts) -> str | None:
    """What /start through a referral link adds to the welcome (None: nothing)."""
    if joined.outcome == "joined":
        return _("referral.joined", name=joined.referrer_name or "")
    if joined.outcome == "own":
        return _("referral.own_link")
    if joined.outcome == "not_new":
        return _("referral.not_new")
    return None


async def tell_referred(message: Message, joined: Registered, _: Texts) -> None:
    """After the welcome: the friend's note on the link they opened."""
    text = render_referred(joined, _)
    if text is not None:
        await message.reply_text(text)
