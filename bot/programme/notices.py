"""What a member is told when their points change by someone else's hand: a purchase (at the
till or imported), a staff adjustment, a refund with compensation,
a transfer received or taken back.

Every notice is an outbox push of the category "service" (quiet hours hold only promotions),
queued in the transaction that books the change (`storage.pushes.book_and_notify`), with a
dedupe key per operation: nothing is booked untold, and a replayed or redelivered booking
queues nothing more. A member may turn purchase receipts off in /settings; the other
notices always go.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from bot.config import Config, Localized
from bot.i18n import N_
from storage.mall import Redemption
from storage.pushes import SERVICE, Booked, ImportedPurchases, Notice, Push


def _both(text: Localized) -> dict[str, str]:
    """A name in every language; the sender renders the member's (bot/jobs.py)."""
    return {"zh-CN": text.zh_CN, "en": text.en}


def _points_key(operation_id: int) -> str:
    """The dedupe key of the notice of one operation: one message per booking."""
    return f"points:{operation_id}"


def purchase_notice(
    amount: Decimal,
    category: Localized,
    campaign: tuple[Localized, Decimal] | None,
    points: int,
    tier: tuple[Localized, Decimal] | None = None,
) -> Notice:
    """The receipt of one purchase booked at the till (amount, category, the campaign that
    multiplied it, the tier whose bonus it includes, points, points after); nothing when the
    member turned receipts off."""

    def build(booked: Booked) -> Push | None:
        if not booked.receipts:
            return None
        params: dict[str, object] = {
            "amount": f"{amount:.2f}",
            "category": _both(category),
            # The purchase's points with the campaign's and the tier's extra ones.
            "points": points,
            "balance": booked.available,
        }
        key = N_("notice.purchase")
        if campaign is not None:
            key = N_("notice.purchase_campaign")
            params["campaign"] = _both(campaign[0])
            params["multiplier"] = format(campaign[1].normalize(), "f")
        if tier is not None:
            key = (
                N_("notice.purchase_campaign_tier")
                if campaign is not None
                else N_("notice.purchase_tier")
            )
            params["tier"] = _both(tier[0])
            params["tier_multiplier"] = format(tier[1].normalize(), "f")
        return Push(_points_key(booked.result.operation_id), booked.member_id, SERVICE, key, params)

    return build


def import_notice(imported: ImportedPurchases) -> Push | None:
    """One member's receipt for an import run: their purchases in it summed; nothing when
    they turned receipts off."""
    if not imported.receipts:
        return None
    return Push(
        # The run's first booking for the member: unique, and the same if it is queued again.
        f"points:import:{imported.member_id}:{imported.first_operation}",
        imported.member_id,
        SERVICE,
        N_("notice.import"),
        {
            "count": imported.purchases,
            "amount": f"{Decimal(imported.amount_fen) / 100:.2f}",
            "points": imported.points,
            "balance": imported.available,
        },
    )


def adjustment_notice(delta: int, reason: str) -> Notice:
    """The notice of a staff adjustment, up or down, with its reason (always sent)."""
    key = N_("notice.adjust_added") if delta > 0 else N_("notice.adjust_taken")

    def build(booked: Booked) -> Push:
        params = {"points": abs(delta), "reason": reason, "balance": booked.available}
        return Push(_points_key(booked.result.operation_id), booked.member_id, SERVICE, key, params)

    return build


def delist_notice(config: Config, reason: str) -> Callable[[Redemption, int, int], Push]:
    """The notice of a redemption cancelled because its item was withdrawn: points back,
    compensation, how long the refund stays valid (always sent)."""

    def build(redemption: Redemption, bonus: int, available: int) -> Push:
        item = config.mall.item(redemption.sku)
        params: dict[str, object] = {
            "item": _both(item.name) if item is not None else redemption.sku,
            "code": redemption.code,
            "reason": reason,
            "points": redemption.points,
            "bonus": bonus,
            "days": config.expiry.refund_min_validity_days,
            "balance": available,
        }
        key = N_("notice.delist_compensated") if bonus else N_("notice.delist_refunded")
        # One message per cancelled redemption for its refund and its compensation both.
        return Push(f"points:delist:{redemption.id}", redemption.member_id, SERVICE, key, params)

    return build


def transfer_notice(sender_name: str) -> Notice:
    """The notice to the member who received a transfer (always sent)."""

    def build(booked: Booked) -> Push:
        params = {
            "sender": sender_name,
            "points": booked.result.points,
            "balance": booked.available,
        }
        return Push(
            _points_key(booked.result.operation_id),
            booked.member_id,
            SERVICE,
            N_("notice.transfer_received"),
            params,
        )

    return build


def undo_notice(sender_name: str) -> Notice:
    """The notice to the member whose received transfer the sender took back (always sent)."""

    def build(booked: Booked) -> Push:
        params = {
            "sender": sender_name,
            "points": booked.result.points,
            "balance": booked.available,
        }
        return Push(
            _points_key(booked.result.operation_id),
            booked.member_id,
            SERVICE,
            N_("notice.transfer_undone"),
            params,
        )

    return build
