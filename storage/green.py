"""Green purchases as the ledger records them: spend, points and campaign bonus per month.

A purchase operation (kind 'purchase') keeps its amount, category and local purchase day in
its meta (bot.programme.purchases `PurchaseAward.meta`); a campaign's extra points are a
'campaign' operation keyed `<purchase key>:campaign` whose meta names the purchase. These
queries add the two up per local month and category; which categories count as green and
what the figures mean is the programme's business (bot.programme.green).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from storage.facade import Facade, reads

# One purchase's facts and points. The amount is kept as text with two decimals, so
# round(amount × 100) is its exact number of fen and the sums stay exact integers.
_PURCHASES = """
SELECT {group},
       json_extract(p.meta, '$.category') AS category,
       sum(CAST(round(CAST(json_extract(p.meta, '$.amount') AS REAL) * 100) AS INTEGER)),
       sum(p.points),
       sum(coalesce(c.points, 0)),
       count(*)
FROM operations AS p
LEFT JOIN operations AS c
    ON c.idempotency_key = p.idempotency_key || ':campaign'
    AND c.kind = 'campaign' AND c.member_id = p.member_id
    AND json_extract(c.meta, '$.purchase') = p.idempotency_key
WHERE {where}
    AND p.kind = 'purchase'
    AND json_extract(p.meta, '$.category') IN (SELECT value FROM json_each(?))
    -- A purchase taken back by a later operation no longer counts.
    AND NOT EXISTS (SELECT 1 FROM operations AS r WHERE r.reverses_operation_id = p.id)
GROUP BY 1, 2
ORDER BY 1, 2
"""


@dataclass(frozen=True, slots=True)
class GreenPurchases:
    """One member's purchases in one category and local month, added up."""

    # The local month of purchase, 'YYYY-MM'.
    month: str
    category: str
    # The amount spent, in fen (hundredths of a yuan).
    fen: int
    # The purchases' own points, and the campaign bonus booked on them.
    points: int
    bonus_points: int
    purchases: int


@dataclass(frozen=True, slots=True)
class MemberGreenPurchases:
    """A member's purchases in one category over a span of days, added up."""

    member_id: int
    category: str
    fen: int
    points: int
    bonus_points: int
    purchases: int


def member_green_purchases(
    conn: sqlite3.Connection, member_id: int, categories: Collection[str]
) -> list[GreenPurchases]:
    """A member's purchases in `categories`, per local month and category, oldest first."""
    # Every credit to a member is a lot: walking the member's lots (lots_by_member) reaches
    # their operations by primary key, so a member's figures cost their own rows only.
    sql = _PURCHASES.format(
        group="substr(json_extract(p.meta, '$.purchased_on'), 1, 7) AS month",
        where="p.id IN (SELECT operation_id FROM lots WHERE member_id = ?) AND p.member_id = ?",
    )
    rows = conn.execute(sql, (member_id, member_id, json.dumps(sorted(categories))))
    return [GreenPurchases(*row) for row in rows if row[0] is not None]


def green_purchases_between(
    conn: sqlite3.Connection,
    first: date,
    last: date,
    categories: Collection[str],
    *,
    marketing_only: bool = True,
) -> list[MemberGreenPurchases]:
    """Every member's purchases in `categories` made on local days `first`..`last`, per member
    and category (only members who accept marketing messages when `marketing_only`)."""
    # A scan of the purchases, once a month for the monthly report.
    where = "json_extract(p.meta, '$.purchased_on') BETWEEN ? AND ?"
    if marketing_only:
        where += " AND p.member_id IN (SELECT id FROM members WHERE marketing_opt_in = 1)"
    sql = _PURCHASES.format(group="p.member_id", where=where)
    rows = conn.execute(sql, (first.isoformat(), last.isoformat(), json.dumps(sorted(categories))))
    return [MemberGreenPurchases(*row) for row in rows]


class Green(Facade):
    """Async access to members' green purchases (reads, on the reader connection)."""

    member_green_purchases = reads(member_green_purchases)
    green_purchases_between = reads(green_purchases_between)
