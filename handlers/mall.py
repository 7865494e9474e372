"""The points mall: /mall browsing, redemption with confirmation, /redemptions and returns.

Every view is derived from its callback data and the database, so a button still works
after a restart; a button that changes points carries an offer id created when the
confirmation was shown (DESIGN.md "Keys from Telegram"), and ownership is re-checked in
the store on every tap.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.config import Config, MallCategory
from bot.i18n import N_, resolve_language
from bot.programme.calendar import display_expiry
from bot.programme.errors import RuleError
from bot.programme.mall import (
    CANCEL,
    REJECTION_REASONS,
    RETURN_REASONS,
    ItemView,
    MallHome,
    PendingRedemption,
    PricedItem,
    cancel_redemption,
    confirm_redemption,
    item_view,
    mall_home,
    offer_redemption,
    redemptions_page,
    request_return,
    return_choice,
    returnable_after_pickup,
    sale_rate,
    shelf,
)
from bot.programme.staff import STAFF_ACTIONS, staff_holding
from bot.programme.tier_benefits import early_access
from bot.qr import qr_png
from handlers.common import BotContext, Texts, edit_in_place, member_for, texts_for
from handlers.points import format_code
from storage.errors import (
    CatalogPriceChanged,
    InsufficientPoints,
    InvalidState,
    LimitReached,
    NotAvailable,
    NotFound,
    OfferExpired,
    ReturnWindowClosed,
    SoldOut,
)
from storage.mall import USABLE_STATUSES, Redemption

log = logging.getLogger(__name__)

MALL_PREFIX = "mall"
REDEMPTIONS_PREFIX = "red"
# Staff reviewing a return: rv:a:CODE approve, rv:r:CODE reject (pick a reason),
# rv:n:CODE:I reject with REJECTION_REASONS[I], rv:b:CODE back to approve / reject.
REVIEW_PREFIX = "rv"
ITEMS_PER_PAGE = 5
REDEMPTIONS_PER_PAGE = 5
# Pages, amounts and offer ids in buttons are below this; anything larger is forged.
MAX_PAGE = 10**15
DEDUCTION_PRESETS = (1, 5, 10, 20, 50, 100)

STATUS_LABELS: dict[str, str] = {
    "issued": N_("redemption.status.issued"),
    "used": N_("redemption.status.used"),
    "return_requested": N_("redemption.status.return_requested"),
    "return_rejected": N_("redemption.status.return_rejected"),
    "returned": N_("redemption.status.returned"),
    "cancelled": N_("redemption.status.cancelled"),
}
RETURN_REASON_LABELS: dict[str, str] = {
    "damaged": N_("returns.reason.damaged"),
    "wrong_item": N_("returns.reason.wrong_item"),
    "not_as_described": N_("returns.reason.not_as_described"),
    "changed_mind": N_("returns.reason.changed_mind"),
    "other": N_("returns.reason.other"),
}
REJECTION_LABELS: dict[str, str] = {
    "not_brought": N_("returns.reject.not_brought"),
    "used": N_("returns.reject.used"),
    "incomplete": N_("returns.reject.incomplete"),
}
AVAILABILITY_ERRORS: dict[str, str] = {
    "not_started": N_("mall.not_started"),
    "ended": N_("mall.ended"),
    "delisted": N_("mall.delisted"),
    "unlisted": N_("mall.delisted"),
    "sold_out": N_("mall.sold_out"),
}


# --- callback data ---------------------------------------------------------------------------


def _page(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if number < MAX_PAGE else None


def decode_mall(data: str) -> tuple[str, tuple[str, ...]] | None:
    """(action, arguments) of a mall button, or None when the data is not well-formed."""
    prefix, *parts = data.split(":")
    if prefix != MALL_PREFIX or not parts:
        return None
    action, args = parts[0], tuple(parts[1:])
    shapes = {"home": 0, "cat": 2, "item": 1, "buy": 1, "deduct": 2, "ok": 1, "no": 1}
    if shapes.get(action) != len(args) or any(not a or len(a) > 32 for a in args):
        return None
    numeric = {"cat": (1,), "deduct": (1,), "ok": (0,), "no": (0,)}
    if any(_page(args[i]) is None for i in numeric.get(action, ())):
        return None
    return action, args


def mall_data(action: str, *args: object) -> str:
    """Callback data for a mall button."""
    return ":".join([MALL_PREFIX, action, *map(str, args)])


def redemption_data(action: str, *args: object) -> str:
    """Callback data for a redemptions-list button."""
    return ":".join([REDEMPTIONS_PREFIX, action, *map(str, args)])


# --- rendering -------------------------------------------------------------------------------


def _price_label(entry: PricedItem, config: Config, _: Texts) -> str:
    label = _plain_price_label(entry, _)
    needed = entry.access.needed
    if needed is not None:
        # Tier-only items say so on the shelf, before anyone taps them.
        label += " · " + _("benefits.tier_only_mark", emoji=needed.emoji, tier=needed.name)
    return label


def _plain_price_label(entry: PricedItem, _: Texts) -> str:
    if entry.price is None:
        return _("mall.deduction_rate", points=entry.rate)
    if entry.price.discount is not None:
        rate = sale_rate(entry.price.discount.percent, _.language)
        return _("mall.points_on_sale", points=entry.price.points, rate=rate)
    return _("mall.points", points=entry.price.points)


def _home(home: MallHome, _: Texts) -> tuple[str, InlineKeyboardMarkup]:
    rows = [
        [InlineKeyboardButton(c.name.get(_.language), callback_data=mall_data("cat", c.id, 0))]
        for c in home.shelves
    ]
    rows.append(
        [InlineKeyboardButton(_("mall.my_redemptions"), callback_data=redemption_data("mlist", 0))]
    )
    text = _("mall.home", points=home.available) if home.shelves else _("mall.empty")
    return text, InlineKeyboardMarkup(rows)


def _shelf(
    category: MallCategory, items: list[PricedItem], page: int, config: Config, _: Texts
) -> tuple[str, InlineKeyboardMarkup] | None:
    pages = max(1, -(-len(items) // ITEMS_PER_PAGE))
    if page >= pages:
        return None
    chunk = items[page * ITEMS_PER_PAGE : (page + 1) * ITEMS_PER_PAGE]
    rows = [
        [
            InlineKeyboardButton(
                f"{entry.item.name.get(_.language)} · {_price_label(entry, config, _)}",
                callback_data=mall_data("item", entry.item.sku),
            )
        ]
        for entry in chunk
    ]
    nav = []
    if page > 0:
        nav.append(
            InlineKeyboardButton(
                _("nav.prev"), callback_data=mall_data("cat", category.id, page - 1)
            )
        )
    if page + 1 < pages:
        nav.append(
            InlineKeyboardButton(
                _("nav.next"), callback_data=mall_data("cat", category.id, page + 1)
            )
        )
    if nav:
        rows.append(nav)
    rows.append([InlineKeyboardButton(_("mall.back_home"), callback_data=mall_data("home"))])
    text = _("mall.shelf", category=category.name.get(_.language), page=page + 1, pages=pages)
    return text, InlineKeyboardMarkup(rows)


def _deduction_amounts(config: Config) -> list[int]:
    low, high = config.mall.deduction_min_yuan, config.mall.deduction_max_yuan
    return sorted({low, high, *(y for y in DEDUCTION_PRESETS if low <= y <= high)})


def _item_card(view: ItemView, config: Config, _: Texts) -> tuple[str, InlineKeyboardMarkup]:
    item, state, price = view.item, view.state, view.price
    lang = _.language
    lines = [f"🎁 {item.name.get(lang)}", item.description.get(lang), ""]
    if price is None:
        lines.append(
            _(
                "mall.card.deduction",
                points=view.rate,
                low=config.mall.deduction_min_yuan,
                high=config.mall.deduction_max_yuan,
            )
        )
        if view.tier is not None and view.rate != view.standard_rate:
            lines.append(
                _(
                    "benefits.card.deduction_rate",
                    emoji=view.tier.emoji,
                    tier=view.tier.name,
                    points=view.rate,
                    standard=view.standard_rate,
                )
            )
    else:
        lines.append(_("mall.card.price", points=price.points))
        if price.discount is not None:
            lines.append(
                _(
                    "mall.card.discount",
                    sale=price.discount.name.get(lang),
                    rate=sale_rate(price.discount.percent, lang),
                    list_points=price.list_points,
                    ends=price.discount.ends.isoformat(),
                )
            )
    left = state.left
    lines.append(_("mall.card.unlimited") if left is None else _("mall.card.left", left=left))
    if state.per_member_limit:
        lines.append(_("mall.card.limit", limit=state.per_member_limit))
    if item.available_until is not None:
        until = item.available_until.astimezone(config.program.tz).date().isoformat()
        lines.append(_("mall.card.until", day=until))
    if item.valid_days is not None and view.valid_until is not None:
        day = view.valid_until.isoformat()
        lines.append(_("mall.card.valid_days", days=item.valid_days, day=day))
    lines += _access_lines(view, config, _)
    if item.image:
        lines.append(item.image)  # Telegram shows the picture as the link's preview
    availability = view.availability
    rows: list[list[InlineKeyboardButton]] = []
    if availability == "ok" and item.kind == "deduction":
        amounts = _deduction_amounts(config)
        buttons = [
            InlineKeyboardButton(
                _("mall.deduct_button", yuan=y), callback_data=mall_data("deduct", item.sku, y)
            )
            for y in amounts
        ]
        rows += [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    elif availability == "ok":
        rows.append(
            [
                InlineKeyboardButton(
                    _("mall.redeem_button"), callback_data=mall_data("buy", item.sku)
                )
            ]
        )
    elif availability != "tier_only":
        # A tier-only item said why above, naming the tier.
        lines.append(_(AVAILABILITY_ERRORS.get(availability, N_("mall.delisted"))))
    rows.append(
        [InlineKeyboardButton(_("mall.back"), callback_data=mall_data("cat", item.category, 0))]
    )
    return "\n".join(lines), InlineKeyboardMarkup(rows)


def _when(moment: datetime, config: Config) -> str:
    return moment.astimezone(config.program.tz).strftime("%Y-%m-%d %H:%M")


def _access_lines(view: ItemView, config: Config, _: Texts) -> list[str]:
    """What the member's tier changes about redeeming this item: tier-only, and early access
    before it opens for everyone (for them, and for the tiers that open earlier)."""
    access = view.access
    if access is None:
        return []
    lines = []
    needed = access.needed
    if needed is not None:
        key = (
            "benefits.card.tier_only"
            if view.availability == "tier_only"
            else "benefits.card.tier_only_yours"
        )
        lines.append(_(key, emoji=needed.emoji, tier=needed.name))
    general = access.general_at
    earlier = early_access(view.item, config)
    if general is None or not earlier or access.general_open or view.availability == "tier_only":
        return lines
    mine = access.opens_at or general
    for tier, moment in earlier:
        if moment < mine:
            when = _when(moment, config)
            lines.append(
                _("benefits.card.early_access", emoji=tier.emoji, tier=tier.name, when=when)
            )
    early = access.early_by
    if early is None:
        lines.append(_("benefits.card.opens_for_you", when=_when(general, config)))
        return lines
    key = (
        "benefits.card.early_yours"
        if access.reason == "not_started"
        else "benefits.card.early_open"
    )
    lines.append(
        _(
            key,
            emoji=early.emoji,
            tier=early.name,
            when=_when(mine, config),
            general=_when(general, config),
        )
    )
    return lines


def _plan_lines(plan: Sequence[tuple[datetime | None, int]], config: Config, _: Texts) -> list[str]:
    lines = []
    for expiry, points in plan:
        if expiry is None:
            lines.append(_("mall.confirm.uses_never", points=points))
        else:
            day = display_expiry(expiry, config).isoformat()
            lines.append(_("mall.confirm.uses", points=points, day=day))
    return lines


def status_key(redemption: Redemption) -> str:
    """The catalog message naming where a redemption stands, as the member sees it."""
    if redemption.status == "used" and redemption.return_requested_at is not None:
        # Collected goods whose return staff refused are back with the member.
        return STATUS_LABELS["return_rejected"]
    return STATUS_LABELS.get(redemption.status, N_("redemption.status.issued"))


def _status(redemption: Redemption, _: Texts) -> str:
    return _(status_key(redemption))


def _item_name(config: Config, sku: str, _: Texts) -> str:
    item = config.mall.item(sku)
    return item.name.get(_.language) if item is not None else sku


def redemption_title(redemption: Redemption, config: Config, _: Texts) -> str:
    name = _item_name(config, redemption.sku, _)
    if redemption.deduction_yuan is not None:
        name = _("mall.deduction_title", name=name, yuan=redemption.deduction_yuan)
    return name


def _deduction_rate_line(pending: PendingRedemption, _: Texts) -> str:
    """The rate a bill deduction is quoted at and, when the tier lowered it, the saving."""
    tier = pending.rate_tier
    if tier is None or not pending.saving:
        return _("benefits.confirm.rate", rate=pending.rate)
    return _(
        "benefits.confirm.rate_tier",
        rate=pending.rate,
        emoji=tier.emoji,
        tier=tier.name,
        standard=pending.standard_rate,
        saving=pending.saving,
    )


def _confirmation(
    pending: PendingRedemption, config: Config, _: Texts
) -> tuple[str, InlineKeyboardMarkup]:
    title = pending.item.name.get(_.language)
    if pending.yuan is not None:
        title = _("mall.deduction_title", name=title, yuan=pending.yuan)
    price = pending.price
    lines = [_("mall.confirm.title", item=title), _("mall.confirm.price", points=price.points)]
    if price.discount is not None:
        lines.append(
            _(
                "mall.confirm.discount",
                sale=price.discount.name.get(_.language),
                rate=sale_rate(price.discount.percent, _.language),
            )
        )
    if pending.rate is not None:
        lines.append(_deduction_rate_line(pending, _))
    lines += _plan_lines(pending.plan, config, _)
    lines.append(_("mall.confirm.after", points=pending.available_after))
    if pending.valid_until is not None:
        lines.append(_("mall.confirm.valid_until", day=pending.valid_until.isoformat()))
    lines.append(_("mall.confirm.valid", minutes=config.mall.offer_minutes))
    offer_id = pending.offer.id
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    _("mall.confirm.yes"), callback_data=mall_data("ok", offer_id)
                ),
                InlineKeyboardButton(_("mall.confirm.no"), callback_data=mall_data("no", offer_id)),
            ]
        ]
    )
    return "\n".join(lines), keyboard


# --- member handlers -------------------------------------------------------------------------


async def mall(update: Update, context: BotContext) -> None:
    """/mall: the shelves, and how many points the member has to spend."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    text, keyboard = _home(await mall_home(context.services, member.id), _)
    await message.reply_text(text, reply_markup=keyboard)


async def mall_callback(update: Update, context: BotContext) -> None:
    """Every mall button: decode, re-check in the store, show the next view."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await texts_for(update, context)
    decoded = decode_mall(query.data or "")
    if decoded is None:
        await query.answer(_("button.expired"), show_alert=True)
        return
    action, args = decoded
    services = context.services
    try:
        if action in ("ok", "no"):
            await _settle_offer(update, context, _, action, int(args[0]))
        elif action == "home":
            member = await member_for(user, context)
            home = await mall_home(services, member.id)
            await query.answer()
            await edit_in_place(update, *_home(home, _))
        elif action == "cat":
            member = await member_for(user, context)
            category, items = await shelf(services, args[0], member.id)
            view = _shelf(category, items, int(args[1]), services.config, _)
            if view is None:
                await query.answer(_("button.expired"), show_alert=True)
                return
            await query.answer()
            await edit_in_place(update, *view)
        elif action == "item":
            member = await member_for(user, context)
            seen = await item_view(services, args[0], member.id)
            card = _item_card(seen, services.config, _)
            await query.answer()
            await edit_in_place(update, *card)
        else:
            await _offer(update, context, _, args[0], int(args[1]) if action == "deduct" else None)
    except RuleError as exc:
        await query.answer(_(exc.key, **exc.params), show_alert=True)


async def _offer(update: Update, context: BotContext, _: Texts, sku: str, yuan: int | None) -> None:
    """Redeem was tapped: price it now, record the offer, and show the confirmation."""
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    member = await member_for(user, context)
    try:
        pending = await offer_redemption(context.services, member.id, sku, yuan)
    except InsufficientPoints as exc:
        await query.answer()
        await query.message.reply_text(  # type: ignore[union-attr]
            _(
                "mall.insufficient",
                price=exc.requested,
                available=exc.available,
                short=exc.requested - exc.available,
            )
        )
        return
    except (SoldOut, NotAvailable, LimitReached, CatalogPriceChanged) as exc:
        await query.answer(_(_refusal_key(exc), **_refusal_params(exc)), show_alert=True)
        return
    await query.answer()
    await edit_in_place(update, *_confirmation(pending, context.services.config, _))


def _refusal_key(exc: Exception) -> str:
    if isinstance(exc, SoldOut):
        return N_("mall.sold_out")
    if isinstance(exc, LimitReached):
        return N_("mall.limit_reached")
    if isinstance(exc, NotAvailable):
        return AVAILABILITY_ERRORS.get(exc.reason, N_("mall.delisted"))
    if isinstance(exc, CatalogPriceChanged):
        return N_("mall.price_changed")
    return N_("button.expired")


def _refusal_params(exc: Exception) -> dict[str, object]:
    if isinstance(exc, LimitReached):
        return {"limit": exc.limit}
    if isinstance(exc, CatalogPriceChanged):
        return {"offered": exc.offered, "current": exc.current}
    return {}


async def _settle_offer(
    update: Update, context: BotContext, _: Texts, action: str, offer_id: int
) -> None:
    """Confirm or cancel: the offer must be this member's, still open and still at its price."""
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    services = context.services
    member = await services.members.by_telegram_id(user.id)
    if member is None:
        await query.answer(_("button.expired"), show_alert=True)
        return
    if action == "no":
        await query.answer()
        await edit_in_place(update, _("mall.cancelled"), None)
        return
    try:
        redeemed = await confirm_redemption(
            services, member.id, offer_id, actor=f"telegram:{user.id}"
        )
    except OfferExpired:
        await query.answer(_("button.expired"), show_alert=True)
        return
    except InsufficientPoints as exc:
        await query.answer(
            _("mall.insufficient_short", short=exc.requested - exc.available), show_alert=True
        )
        return
    except CatalogPriceChanged as exc:
        # The confirmation shows a price no longer charged: replace it, and offer the new one.
        text = _(_refusal_key(exc), **_refusal_params(exc))
        await query.answer(text, show_alert=True)
        again = InlineKeyboardButton(
            _("mall.price_changed.view"), callback_data=mall_data("item", exc.sku)
        )
        await edit_in_place(update, text, InlineKeyboardMarkup([[again]]))
        return
    except (SoldOut, NotAvailable, LimitReached) as exc:
        await query.answer(_(_refusal_key(exc), **_refusal_params(exc)), show_alert=True)
        return
    redemption = redeemed.redemption
    if redemption.replayed:
        # A double tap or a redelivered update: the redemption exists once already.
        await query.answer(_("mall.already_redeemed", code=redemption.code))
        return
    await query.answer()
    config = services.config
    text = _(
        "mall.redeemed",
        item=redemption_title(redemption, config, _),
        code=redemption.code,
        points=redemption.points,
        available=redeemed.available,
        days=config.redemption.return_window_days,
    )
    if returnable_after_pickup(redemption.kind):
        text += "\n" + _("mall.redeemed.returnable", days=config.redemption.return_window_days)
    caption = _("mall.voucher_caption", code=redemption.code)
    if redemption.valid_until is not None:
        day = redemption.valid_until.isoformat()
        remind = config.mall.voucher_reminder_days
        text += "\n" + _("mall.redeemed.valid_until", day=day, remind=remind)
        caption = _("mall.voucher_caption.valid_until", code=redemption.code, day=day)
    await edit_in_place(update, text, None)
    if query.message is not None:
        chat_id = query.message.chat.id
        await context.bot.send_photo(chat_id, qr_png(redemption.code), caption=caption)


async def redemptions(update: Update, context: BotContext) -> None:
    """/redemptions: the member's redemptions with their codes and status."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    text, keyboard = await _redemptions_view(member.id, 0, context, _)
    await message.reply_text(text, reply_markup=keyboard)


def _mall_row(from_mall: bool, _: Texts) -> list[InlineKeyboardButton]:
    """The way from the redemptions list to the mall: back to it, when it was opened there."""
    label = _("redemptions.back_to_mall") if from_mall else _("redemptions.to_mall")
    return [InlineKeyboardButton(label, callback_data=mall_data("home"))]


async def _redemptions_view(
    member_id: int, page: int, context: BotContext, _: Texts, *, from_mall: bool = False
) -> tuple[str, InlineKeyboardMarkup | None]:
    config = context.services.config
    # Paging keeps where the list was opened from ("mlist": in the mall), and so its way back.
    listing = "mlist" if from_mall else "list"
    found = await redemptions_page(
        context.services,
        member_id,
        offset=page * REDEMPTIONS_PER_PAGE,
        limit=REDEMPTIONS_PER_PAGE,
    )
    if found.total == 0:
        return _("redemptions.empty"), InlineKeyboardMarkup([_mall_row(from_mall, _)])
    pages = max(1, -(-found.total // REDEMPTIONS_PER_PAGE))
    lines = [_("redemptions.title", page=page + 1, pages=pages, total=found.total)]
    rows: list[list[InlineKeyboardButton]] = []
    for redemption, option in found.redemptions:
        day = redemption.created_at.astimezone(config.program.tz).date().isoformat()
        lines.append(
            _(
                "redemptions.line",
                code=redemption.code,
                item=redemption_title(redemption, config, _),
                points=redemption.points,
                day=day,
                status=_status(redemption, _),
            )
        )
        if redemption.id in found.expired:
            assert redemption.valid_until is not None
            lines.append(_("redemptions.expired", day=redemption.valid_until.isoformat()))
        elif redemption.valid_until is not None and redemption.status in USABLE_STATUSES:
            lines.append(_("redemptions.valid_until", day=redemption.valid_until.isoformat()))
        if option is not None:
            label = "redemptions.cancel_button" if option == CANCEL else "redemptions.return_button"
            rows.append(
                [
                    InlineKeyboardButton(
                        _(label, code=redemption.code),
                        callback_data=redemption_data("ret", redemption.code),
                    )
                ]
            )
    nav = []
    if page > 0:
        nav.append(
            InlineKeyboardButton(_("nav.prev"), callback_data=redemption_data(listing, page - 1))
        )
    if page + 1 < pages:
        nav.append(
            InlineKeyboardButton(_("nav.next"), callback_data=redemption_data(listing, page + 1))
        )
    if nav:
        rows.append(nav)
    rows.append(_mall_row(from_mall, _))
    return "\n".join(lines), InlineKeyboardMarkup(rows)


async def redemptions_callback(update: Update, context: BotContext) -> None:
    """Paging the list; cancelling an uncollected redemption or returning collected goods."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await texts_for(update, context)
    prefix, _sep, rest = (query.data or "").partition(":")
    action, _sep, argument = rest.partition(":")
    code, _sep, reason = argument.partition(":")
    member = await context.services.members.by_telegram_id(user.id)
    if prefix != REDEMPTIONS_PREFIX or member is None or not code or len(code) > 16:
        await query.answer(_("button.expired"), show_alert=True)
        return
    if action in ("list", "mlist") and not reason:
        page = _page(code)
        if page is None:
            await query.answer(_("button.expired"), show_alert=True)
            return
        text, keyboard = await _redemptions_view(
            member.id, page, context, _, from_mall=action == "mlist"
        )
        await query.answer()
        await edit_in_place(update, text, keyboard)
    elif action == "ret" and not reason:
        await _ask_return(update, context, _, member.id, code)
    elif action == "rety" and not reason:
        await _cancel(update, context, _, member.id, code)
    elif action == "rs" and reason.isascii() and reason.isdigit() and len(reason) < 3:
        index = int(reason)
        if index >= len(RETURN_REASONS):
            await query.answer(_("button.expired"), show_alert=True)
            return
        await _request_return(update, context, _, member.id, code, RETURN_REASONS[index])
    else:
        await query.answer(_("button.expired"), show_alert=True)


async def _refuse_return(update: Update, _: Texts, context: BotContext, exc: Exception) -> None:
    """Explain why this redemption cannot be cancelled or returned (a toast)."""
    query = update.callback_query
    assert query is not None
    if isinstance(exc, ReturnWindowClosed):
        day = exc.deadline.astimezone(context.services.config.program.tz).date().isoformat()
        await query.answer(_("redemptions.window_closed", day=day), show_alert=True)
    elif isinstance(exc, InvalidState):
        status = _(STATUS_LABELS.get(exc.status, N_("redemption.status.issued")))
        await query.answer(_("redemptions.not_returnable", status=status), show_alert=True)
    else:  # NotFound: someone else's code, or a forged one
        await query.answer(_("button.expired"), show_alert=True)


async def _ask_return(
    update: Update, context: BotContext, _: Texts, member_id: int, code: str
) -> None:
    """Cancel: confirm first; return: ask why (buttons whose data the store re-checks)."""
    query = update.callback_query
    assert query is not None
    try:
        redemption, option = await return_choice(context.services, member_id, code)
    except (NotFound, InvalidState, ReturnWindowClosed) as exc:
        await _refuse_return(update, _, context, exc)
        return
    await query.answer()
    item = redemption_title(redemption, context.services.config, _)
    back = InlineKeyboardButton(
        _("redemptions.return_no"), callback_data=redemption_data("list", 0)
    )
    if option == CANCEL:
        text = _(
            "redemptions.cancel_ask", item=item, code=redemption.code, points=redemption.points
        )
        yes = InlineKeyboardButton(
            _("redemptions.cancel_yes"), callback_data=redemption_data("rety", redemption.code)
        )
        await edit_in_place(update, text, InlineKeyboardMarkup([[yes, back]]))
        return
    rows = [
        [
            InlineKeyboardButton(
                _(RETURN_REASON_LABELS[reason]),
                callback_data=redemption_data("rs", redemption.code, index),
            )
        ]
        for index, reason in enumerate(RETURN_REASONS)
    ]
    rows.append([back])
    text = _("redemptions.reason_ask", item=item, code=redemption.code)
    await edit_in_place(update, text, InlineKeyboardMarkup(rows))


async def _cancel(update: Update, context: BotContext, _: Texts, member_id: int, code: str) -> None:
    """Cancel an uncollected redemption: the points are back at once, no visit needed."""
    query = update.callback_query
    assert query is not None
    services = context.services
    try:
        settled = await cancel_redemption(services, member_id, code, actor=f"member:{member_id}")
    except (NotFound, InvalidState, ReturnWindowClosed) as exc:
        await _refuse_return(update, _, context, exc)
        return
    redemption = settled.redemption
    if settled.replayed:
        await query.answer(_("redemptions.already_cancelled", code=redemption.code))
        return
    await query.answer()
    text = _(
        "redemptions.cancelled",
        item=redemption_title(redemption, services.config, _),
        code=redemption.code,
        points=redemption.points,
        available=settled.available,
    )
    await edit_in_place(update, text, None)


async def _request_return(
    update: Update, context: BotContext, _: Texts, member_id: int, code: str, reason: str
) -> None:
    """File a return of collected goods with its reason, and put it in front of staff."""
    query = update.callback_query
    assert query is not None
    services = context.services
    try:
        redemption = await request_return(
            services, member_id, code, reason, actor=f"member:{member_id}"
        )
    except (NotFound, InvalidState, ReturnWindowClosed) as exc:
        await _refuse_return(update, _, context, exc)
        return
    if redemption.replayed:
        await query.answer(_("redemptions.return_pending", code=redemption.code))
        return
    await query.answer()
    text = _(
        "redemptions.return_requested",
        item=redemption_title(redemption, services.config, _),
        code=redemption.code,
        points=redemption.points,
        reason=_(RETURN_REASON_LABELS[reason]),
    )
    await edit_in_place(update, text, None)
    await tell_staff(context, redemption)


# --- staff reviewing a return ----------------------------------------------------------------


def review_data(action: str, code: str, index: int | None = None) -> str:
    """Callback data for a staff button on a return."""
    return ":".join([REVIEW_PREFIX, action, code, *([] if index is None else [str(index)])])


def render_return(redemption: Redemption, config: Config, _: Texts) -> str:
    """A return as staff review it: who, what, why, when, and the decision once there is one."""
    tz = config.program.tz
    reason = redemption.return_reason
    requested = redemption.return_requested_at or redemption.created_at
    lines = [
        _(
            "returns.item",
            name=redemption.member_name or "-",
            member=format_code(redemption.member_code),
            item=redemption_title(redemption, config, _),
            code=redemption.code,
            points=redemption.points,
            reason=_(RETURN_REASON_LABELS[reason]) if reason in RETURN_REASON_LABELS else "-",
            when=requested.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            day=redemption.created_at.astimezone(tz).date().isoformat(),
        )
    ]
    if redemption.status != "return_requested":
        lines.append(
            _(
                "returns.decided",
                status=_status(redemption, _),
                who=redemption.handled_by or "-",
                note=redemption.note or "-",
            )
        )
    return "\n".join(lines)


def review_keyboard(code: str, _: Texts) -> InlineKeyboardMarkup:
    """Approve / Reject under a return."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(_("returns.approve"), callback_data=review_data("a", code)),
                InlineKeyboardButton(_("returns.reject"), callback_data=review_data("r", code)),
            ]
        ]
    )


def rejection_keyboard(code: str, _: Texts) -> InlineKeyboardMarkup:
    """The reasons staff can refuse a return with, and a way back."""
    rows = [
        [
            InlineKeyboardButton(
                _(REJECTION_LABELS[reason]), callback_data=review_data("n", code, index)
            )
        ]
        for index, reason in enumerate(REJECTION_REASONS)
    ]
    rows.append([InlineKeyboardButton(_("returns.back"), callback_data=review_data("b", code))])
    return InlineKeyboardMarkup(rows)


async def staff_texts(context: BotContext, telegram_id: int) -> Texts:
    """A translator in a staff member's language (their /language if they are a member)."""
    services = context.services
    member = await services.members.by_telegram_id(telegram_id)
    language = resolve_language(
        member.language if member else None,
        member.telegram_language if member else None,
        services.config.program.default_language,
    )
    return Texts(services.i18n, language)


async def tell_staff(context: BotContext, redemption: Redemption) -> None:
    """Put a new return in front of every staff member who handles returns (owners and
    managers), with Approve / Reject (best effort: /returns lists whatever a failed message
    missed)."""
    config = context.services.config
    for admin in staff_holding(config, STAFF_ACTIONS["/returns"].permission):
        _ = await staff_texts(context, admin)
        text = _("returns.new") + "\n" + render_return(redemption, config, _)
        try:
            await context.bot.send_message(
                admin, text, reply_markup=review_keyboard(redemption.code, _)
            )
        except Forbidden:
            log.info("operator %s has blocked the bot; not told about a return", admin)
        except BadRequest:
            # An operator who never opened a chat with the bot ("chat not found"): /returns
            # still lists it; a traceback would only hide the one line that matters.
            log.warning("operator %s has no chat with the bot; not told about a return", admin)
        except TelegramError:
            log.warning("could not tell operator %s about a return", admin, exc_info=True)
