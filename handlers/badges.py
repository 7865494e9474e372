"""/badges (🏅 in the menu): the member's badge wall as a picture, with the same wall as text
for screen readers (the caption, or a message after the picture when it is too long).

The rules (what earns a badge, set prizes) are in bot/programme/badges.py; the picture is
drawn by bot/badge_wall.py. A picture already sent is re-sent by the file id Telegram gave it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from telegram import Update
from telegram.error import BadRequest

from bot.badge_wall import PICTURE_CACHE, WallPicture, wall_painter
from bot.config import Config, Localized
from bot.i18n import N_
from bot.programme.badges import BadgeWall, WallBadge, WallSet, badge_wall
from bot.programme.calendar import local_today
from bot.sending import read_back
from handlers.common import BotContext, Texts, member_for, texts_for

log = logging.getLogger(__name__)

# Telegram's limit on a photo caption.
CAPTION_LIMIT: Final = 1024
# How a locked milestone badge says what earns it, by milestone.
MILESTONE_LINES: Final = {
    "eco_spend_yuan": N_("badges.locked_eco_spend_yuan"),
    "green_points": N_("badges.locked_green_points"),
    "surveys_completed": N_("badges.locked_surveys_completed"),
    "purchases": N_("badges.locked_purchases"),
}


def _localized(name: Localized, _: Texts) -> str:
    """A configured name in the reader's language."""
    return name.en if _.language == "en" else name.zh_CN


def _badge_line(number: int, entry: WallBadge, config: Config, _: Texts) -> str:
    badge = entry.badge
    name = _localized(badge.name, _)
    if entry.earned_at is not None:
        day = local_today(entry.earned_at, config).isoformat()
        return _("badges.earned", number=number, emoji=badge.emoji, name=name, day=day)
    if badge.task is not None:
        task = config.task(badge.task)
        task_name = _localized(task.name, _) if task is not None else badge.task
        return _("badges.locked_task", number=number, emoji=badge.emoji, name=name, task=task_name)
    return _(
        MILESTONE_LINES[badge.milestone or "purchases"],
        number=number,
        emoji=badge.emoji,
        name=name,
        threshold=badge.threshold,
    )


def _set_line(number: int, entry: WallSet, config: Config, _: Texts) -> str:
    badge_set = entry.badge_set
    params = {
        "number": number,
        "name": _localized(badge_set.name, _),
        "held": entry.held,
        "total": entry.total,
    }
    if entry.prize_received:
        return _("badges.set_received", **params)
    if badge_set.prize_item is not None and (item := config.mall.item(badge_set.prize_item)):
        return _("badges.set_item", item=_localized(item.name, _), **params)
    return _("badges.set_points", points=badge_set.prize_points or 0, **params)


def render_wall_text(wall: BadgeWall, config: Config, _: Texts) -> str:
    """The badge wall as text: the count, every badge earned or how to earn it, each set."""
    lines = [_("badges.summary", earned=wall.earned, total=len(wall.badges))]
    lines += [_badge_line(i, entry, config, _) for i, entry in enumerate(wall.badges, start=1)]
    if wall.sets:
        lines += ["", _("badges.sets_heading")]
        lines += [_set_line(i, entry, config, _) for i, entry in enumerate(wall.sets, start=1)]
    return "\n".join(lines)


async def _picture(wall: BadgeWall, config: Config, _: Texts) -> WallPicture | None:
    """The wall drawn (None when drawing fails: the text still tells everything)."""
    painter = wall_painter(config.wheel.font if config.wheel is not None else "")
    try:
        return await asyncio.to_thread(
            painter.render,
            _("badges.title"),
            [_localized(entry.badge.name, _) for entry in wall.badges],
            [entry.earned for entry in wall.badges],
            [(_localized(s.badge_set.name, _), s.held, s.total) for s in wall.sets],
        )
    except Exception:
        log.exception("could not draw the badge wall")
        return None


async def _send_photo(
    context: BotContext, chat_id: int, picture: WallPicture, caption: str
) -> None:
    """Send the wall: by the file id Telegram gave the same picture before, else uploaded."""
    uploaded = context.services.uploaded_photos
    file_id = uploaded.get(picture.key)
    if file_id is not None:
        try:
            await context.bot.send_photo(chat_id, file_id, caption=caption)
            uploaded.move_to_end(picture.key)
            return
        except BadRequest:  # the file id is not (or no longer) valid: upload it again
            uploaded.pop(picture.key, None)
    with read_back():
        sent = await context.bot.send_photo(chat_id, picture.png, caption=caption)
    if sent.photo:
        uploaded[picture.key] = sent.photo[-1].file_id
        while len(uploaded) > PICTURE_CACHE:
            uploaded.popitem(last=False)


async def badges_command(update: Update, context: BotContext) -> None:
    """Show the member's badge wall: the picture, and the wall as text beside it."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    config = context.services.config
    wall = await badge_wall(context.services, member.id)
    if not wall.badges:
        await context.bot.send_message(chat.id, _("badges.none"))
        return
    text = render_wall_text(wall, config, _)
    picture = await _picture(wall, config, _)
    if picture is None:
        await context.bot.send_message(chat.id, text)
        return
    if len(text) <= CAPTION_LIMIT:
        await _send_photo(context, chat.id, picture, text)
        return
    await _send_photo(
        context, chat.id, picture, _("badges.summary", earned=wall.earned, total=len(wall.badges))
    )
    await context.bot.send_message(chat.id, text)


async def badges_menu(update: Update, context: BotContext) -> None:
    """The 🏅 menu button: answer the tap, then show the wall."""
    query = update.callback_query
    if query is None:
        return
    await query.answer()
    await badges_command(update, context)
