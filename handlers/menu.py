"""The main menu: one button per feature that exists, and the callback data codec for it."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.i18n import N_
from handlers.common import Texts

MENU_PREFIX = "menu"

# (item, message id of its label), in the order members see them.
MENU_ITEMS: tuple[tuple[str, str], ...] = (
    ("balance", N_("menu.balance")),
    ("history", N_("menu.history")),
    ("card", N_("menu.card")),
    ("mall", N_("menu.mall")),
    ("wheel", N_("menu.wheel")),
    ("scratch", N_("menu.scratch")),
    ("surveys", N_("menu.surveys")),
    ("tasks", N_("menu.tasks")),
    ("tier", N_("menu.tier")),
    ("badges", N_("menu.badges")),
    ("family", N_("menu.family")),
    ("green", N_("menu.green")),
    ("settings", N_("menu.settings")),
    ("rules", N_("menu.rules")),
    ("help", N_("menu.help")),
    ("language", N_("menu.language")),
)


def encode_menu(item: str) -> str:
    """Callback data for a menu button."""
    return f"{MENU_PREFIX}:{item}"


def decode_menu(data: str) -> str | None:
    """The menu item a callback names, or None when it is not one of ours."""
    prefix, _, item = data.partition(":")
    if prefix != MENU_PREFIX or item not in {name for name, _ in MENU_ITEMS}:
        return None
    return item


def main_menu(_: Texts) -> InlineKeyboardMarkup:
    """The main menu keyboard, two buttons a row."""
    buttons = [
        InlineKeyboardButton(_(label), callback_data=encode_menu(item))
        for item, label in MENU_ITEMS
    ]
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])
