"""`pointsbot audit`: check the ledger's invariants with set-based SQL, fast on big databases."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Final, Literal

from storage.sql import column_names, engine, table_names, trigger_names

MALL_TABLES: Final = ("catalog_items", "offers", "redemptions")
# Triggers the mall's state machines rest on (storage/migrations/0003_mall.sql).
MALL_TRIGGERS: Final = (
    "catalog_items_no_delete",
    "offers_fixed",
    "redemptions_fixed_identity",
    "redemptions_status_flow",
    "redemptions_settled_once",
    "redemptions_no_delete",
)
GAME_TABLES: Final = ("game_offers", "game_plays", "game_vouchers")
# Triggers the games rest on (storage/migrations/0004_games.sql).
GAME_TRIGGERS: Final = (
    "game_offers_fixed",
    "game_offers_no_delete",
    "game_plays_fixed_identity",
    "game_plays_scratch_forward",
    "game_plays_no_delete",
    "game_vouchers_fixed_identity",
    "game_vouchers_used_once",
    "game_vouchers_no_delete",
)
# A voucher's last valid day never changes (storage/migrations/0013_voucher_validity.sql).
VALIDITY_TRIGGERS: Final = ("redemptions_fixed_validity",)
# Returns after pickup (storage/migrations/0012_returns.sql).
RETURNS_TRIGGERS: Final = ("redemptions_return_history_kept",)
# The day's prize totals (storage/migrations/0007_game_budget.sql).
BUDGET_TRIGGERS: Final = ("game_plays_count_budget", "game_day_budget_no_delete")
SURVEY_TABLES: Final = ("survey_responses", "survey_answers", "feedback")
# Triggers surveys and suggestions rest on (storage/migrations/0006_surveys.sql).
SURVEY_TRIGGERS: Final = (
    "survey_responses_completed_final",
    "survey_responses_fixed_identity",
    "survey_responses_no_delete",
    "survey_answers_final_insert",
    "survey_answers_final_update",
    "survey_answers_final_delete",
    "feedback_fixed_identity",
    "feedback_decided_once",
    "feedback_no_delete",
)
# Triggers the guarantees rest on: the ledger's (storage/migrations/0002_ledger.sql), then
# the mall's.
REQUIRED_TRIGGERS: Final = (
    "postings_maintain_balance",
    "allocations_maintain_remainder",
    "operations_append_only_update",
    "operations_append_only_delete",
    "postings_append_only_update",
    "postings_append_only_delete",
    "allocations_append_only_update",
    "allocations_append_only_delete",
    "lots_append_only_update",
    "lots_remainder_only_decreases",
    "lots_append_only_delete",
    "accounts_fixed_identity",
    "accounts_no_delete",
    *MALL_TRIGGERS,
)
# Transfers (storage/migrations/0017_transfers.sql).
TRANSFER_TRIGGERS: Final = (
    "transfer_offers_fixed",
    "transfer_offers_no_delete",
    "operations_transfer_undo_matches",
)
LEDGER_TABLES: Final = ("accounts", "operations", "postings", "lots", "allocations")
# Enough examples to act on without flooding the report on a badly broken database.
MAX_EXAMPLES: Final = 20

Integrity = Literal["full", "quick", "none"]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant, with a few offending rows as examples."""

    check: str
    detail: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Every violation found, and what was looked at."""

    violations: tuple[Violation, ...]
    summary: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no invariant is broken."""
        return not self.violations

    def __str__(self) -> str:
        lines = [f"{name}: {value}" for name, value in self.summary.items()]
        lines += [f"VIOLATION {v.check}: {v.detail}" for v in self.violations]
        lines.append("audit passed" if self.ok else f"audit FAILED ({len(self.violations)})")
        return "\n".join(lines)


def _examples(rows: Sequence[Sequence[object]]) -> str:
    shown = "; ".join(", ".join(str(v) for v in row) for row in rows[:MAX_EXAMPLES])
    more = " …" if len(rows) > MAX_EXAMPLES else ""
    return shown + more


# (check name, what the columns are, query returning offending rows). Each query is one
# pass of grouped scans so the audit stays set-based on millions of rows.
_ROW_CHECKS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "operation_conservation",
        "operation, sum of postings",
        "SELECT operation_id, sum(amount) FROM postings GROUP BY operation_id"
        " HAVING sum(amount) <> 0",
    ),
    (
        "member_not_negative",
        "account, member, balance",
        "SELECT id, member_id, balance FROM accounts WHERE kind = 'member' AND balance < 0",
    ),
    (
        "sink_not_negative",
        "account, name, balance",
        "SELECT id, name, balance FROM account_balances WHERE kind = 'sink' AND balance < 0",
    ),
    (
        "cached_balance",
        "account, cached balance, sum of postings",
        "SELECT a.id, a.balance, coalesce(p.total, 0) FROM account_balances AS a"
        " LEFT JOIN (SELECT account_id, sum(amount) AS total FROM postings GROUP BY account_id)"
        " AS p ON p.account_id = a.id WHERE a.balance <> coalesce(p.total, 0)",
    ),
    (
        "balance_equals_lots",
        "member, balance, sum of lot remainders",
        # UNION ALL + GROUP BY rather than FULL JOIN, which needs SQLite 3.39.
        "SELECT member_id, sum(balance), sum(remainder) FROM ("
        "  SELECT member_id, balance, 0 AS remainder FROM accounts WHERE kind = 'member'"
        "  UNION ALL SELECT member_id, 0, remainder FROM lots"
        ") AS held GROUP BY member_id HAVING sum(balance) <> sum(remainder)",
    ),
    (
        "lot_remainder",
        "lot, points, remainder, allocated",
        "SELECT l.id, l.points, l.remainder, coalesce(al.total, 0) FROM lots AS l"
        " LEFT JOIN (SELECT lot_id, sum(points) AS total FROM allocations GROUP BY lot_id)"
        " AS al ON al.lot_id = l.id"
        " WHERE l.remainder < 0 OR l.remainder > l.points"
        " OR l.remainder <> l.points - coalesce(al.total, 0)",
    ),
    (
        # Every point credited to a member is a lot of that operation, and every point
        # debited is an allocation of it: the history is the balance.
        "credits_are_lots",
        "operation, member, credited, lot points",
        "SELECT operation_id, member_id, sum(credited), sum(lot_points) FROM ("
        "  SELECT p.operation_id, a.member_id, p.amount AS credited, 0 AS lot_points"
        "  FROM postings AS p JOIN accounts AS a ON a.id = p.account_id"
        "  WHERE a.kind = 'member' AND p.amount > 0"
        "  UNION ALL SELECT operation_id, member_id, 0, points FROM lots"
        ") AS parts GROUP BY operation_id, member_id HAVING sum(credited) <> sum(lot_points)",
    ),
    (
        "debits_are_allocations",
        "operation, member, debited, allocated",
        "SELECT operation_id, member_id, sum(debited), sum(allocated) FROM ("
        "  SELECT p.operation_id, a.member_id, -p.amount AS debited, 0 AS allocated"
        "  FROM postings AS p JOIN accounts AS a ON a.id = p.account_id"
        "  WHERE a.kind = 'member' AND p.amount < 0"
        "  UNION ALL SELECT al.operation_id, l.member_id, 0, al.points"
        "  FROM allocations AS al JOIN lots AS l ON l.id = al.lot_id"
        ") AS parts GROUP BY operation_id, member_id HAVING sum(debited) <> sum(allocated)",
    ),
    (
        "refund_matches_spend",
        "refund, reversed operation, kind, refunded, spent",
        "SELECT r.id, s.id, s.kind, r.points, s.points FROM operations AS r"
        " JOIN operations AS s ON s.id = r.reverses_operation_id"
        # Undos and tier rewards taken back are checked on their own (transfer_undo_matches,
        # tier_reward_taken_back).
        " WHERE r.kind NOT IN ('transfer_undo', 'tier_reversal')"
        " AND (s.kind NOT IN ('redeem', 'game_play') OR r.points <> s.points)",
    ),
    (
        # An undo gives back exactly a transfer, between the same two members.
        "transfer_undo_matches",
        "undo, reversed operation, kind, members, reversed members, points, reversed points",
        "SELECT u.id, t.id, t.kind, u.member_id || '>' || u.counterparty_id,"
        " t.member_id || '>' || t.counterparty_id, u.points, t.points FROM operations AS u"
        " LEFT JOIN operations AS t ON t.id = u.reverses_operation_id"
        " WHERE u.kind = 'transfer_undo' AND (t.id IS NULL OR t.kind <> 'transfer'"
        " OR u.member_id <> t.member_id OR u.counterparty_id IS NOT t.counterparty_id"
        " OR u.points <> t.points)",
    ),
    (
        # Transfers (and their undos) must not extend validity by ping-pong: each lot they
        # create carries the expiry of the lot it came from, which belonged to the other side.
        "transfer_keeps_expiry",
        "lot, origin lot, expires_at, origin expires_at, lot member, origin member",
        "SELECT l.id, o.id, l.expires_at, o.expires_at, l.member_id, o.member_id FROM lots AS l"
        " JOIN operations AS op ON op.id = l.operation_id"
        " AND op.kind IN ('transfer', 'transfer_undo')"
        " LEFT JOIN lots AS o ON o.id = l.origin_lot_id"
        " WHERE o.id IS NULL OR l.expires_at IS NOT o.expires_at OR l.member_id = o.member_id"
        " OR l.member_id NOT IN (op.member_id, op.counterparty_id)"
        " OR o.member_id NOT IN (op.member_id, op.counterparty_id)",
    ),
)

# Transfers against household membership (only once migration 16 created households): both
# members shared the household the transfer recorded at the instant it was booked. Times are
# whole seconds, so a stay that ended in the very second of a transfer still covers it: the
# booking transaction saw both members in the household, and a leave after it shares the
# second.
_HOUSEHOLD_CHECKS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "transfer_within_household",
        "transfer, sender, recipient, recorded household",
        "SELECT t.id, t.member_id, t.counterparty_id, json_extract(t.meta, '$.household')"
        " FROM operations AS t WHERE t.kind = 'transfer' AND NOT EXISTS ("
        "  SELECT 1 FROM household_members AS a"
        "  JOIN household_members AS b ON b.household_id = a.household_id"
        "  WHERE a.member_id = t.member_id AND b.member_id = t.counterparty_id"
        "  AND a.household_id IS CAST(json_extract(t.meta, '$.household') AS BIGINT)"
        "  AND a.joined_at <= t.created_at AND (a.left_at IS NULL OR a.left_at >= t.created_at)"
        "  AND b.joined_at <= t.created_at AND (b.left_at IS NULL OR b.left_at >= t.created_at))",
    ),
)

# The mall's state machines against the ledger (only once migration 3 created the mall).
_MALL_CHECKS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        # Units sold are exactly the redemptions still holding one.
        "mall_sold",
        "sku, sold, open or used redemptions",
        "SELECT c.sku, c.sold, coalesce(r.n, 0) FROM catalog_items AS c"
        " LEFT JOIN (SELECT sku, count(*) AS n FROM redemptions"
        "   WHERE status NOT IN ('returned', 'cancelled') GROUP BY sku) AS r ON r.sku = c.sku"
        " WHERE c.sold <> coalesce(r.n, 0)",
    ),
    (
        "redemption_spend",
        "redemption, spend operation, kind, member, operation member, points, operation points",
        "SELECT r.id, r.spend_operation_id, o.kind, r.member_id, o.member_id, r.points, o.points"
        " FROM redemptions AS r LEFT JOIN operations AS o ON o.id = r.spend_operation_id"
        " WHERE o.id IS NULL OR o.kind <> 'redeem' OR o.member_id <> r.member_id"
        " OR o.points <> r.points",
    ),
    (
        # Points came back exactly for returned and cancelled redemptions, by their refund.
        "redemption_refund",
        "redemption, status, refund operation, operation reversing the spend",
        "SELECT r.id, r.status, r.refund_operation_id, f.id FROM redemptions AS r"
        " LEFT JOIN operations AS f ON f.reverses_operation_id = r.spend_operation_id"
        " WHERE r.refund_operation_id IS NOT f.id"
        " OR (r.status IN ('returned', 'cancelled')) <> (f.id IS NOT NULL)",
    ),
)

# The games against the ledger (only once migration 4 created the game tables): every spin
# and card's cost and prize are ledger operations of the right kind, member and amount, and
# every operation keyed as a game's belongs to a play.
_GAME_CHECKS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "game_cost",
        "play, cost, cost operation, kind, member, operation member, operation points, key",
        "SELECT g.id, g.cost, g.cost_operation_id, o.kind, g.member_id, o.member_id, o.points,"
        " o.idempotency_key FROM game_plays AS g"
        " LEFT JOIN operations AS o ON o.id = g.cost_operation_id"
        " WHERE g.cost > 0 AND (o.id IS NULL OR o.kind <> 'game_play'"
        " OR o.member_id <> g.member_id OR o.points <> g.cost"
        " OR o.idempotency_key <> 'game:' || g.offer_id || ':cost')",
    ),
    (
        # A points prize is paid exactly when its play is revealed, by one 'game' operation.
        "game_prize",
        "play, prize kind, points, revealed, prize operation, kind, operation member,"
        " operation points",
        "SELECT g.id, g.prize_kind, g.prize_points, g.revealed_at, g.prize_operation_id, o.kind,"
        " o.member_id, o.points FROM game_plays AS g"
        " LEFT JOIN operations AS o ON o.id = g.prize_operation_id"
        " WHERE (g.prize_kind = 'points' AND g.revealed_at IS NOT NULL) <> (o.id IS NOT NULL)"
        " OR (o.id IS NOT NULL AND (o.kind <> 'game' OR o.member_id <> g.member_id"
        " OR o.points <> g.prize_points"
        " OR o.idempotency_key <> 'game:' || g.offer_id || ':prize'))",
    ),
    (
        "game_operation_has_play",
        "operation, kind, key",
        "SELECT o.id, o.kind, o.idempotency_key FROM operations AS o"
        # A range on the unique key's index rather than LIKE, which would scan every row.
        " WHERE o.idempotency_key >= 'game:' AND o.idempotency_key < 'game;'"
        " AND NOT EXISTS (SELECT 1 FROM game_plays AS g WHERE g.cost_operation_id = o.id)"
        " AND NOT EXISTS (SELECT 1 FROM game_plays AS g WHERE g.prize_operation_id = o.id)",
    ),
    (
        # A voucher prize is issued exactly when its play is revealed, to the play's member.
        "game_voucher",
        "play, prize kind, revealed, voucher, voucher member, play member",
        "SELECT g.id, g.prize_kind, g.revealed_at, v.id, v.member_id, g.member_id"
        " FROM game_plays AS g LEFT JOIN game_vouchers AS v ON v.play_id = g.id"
        " WHERE (g.prize_kind = 'voucher' AND g.revealed_at IS NOT NULL) <> (v.id IS NOT NULL)"
        " OR v.member_id <> g.member_id OR v.prize_id <> g.prize_id",
    ),
    (
        "game_play_offer",
        "play, offer, play member, offer member, play game, offer game",
        "SELECT g.id, f.id, g.member_id, f.member_id, g.game, f.game FROM game_plays AS g"
        " LEFT JOIN game_offers AS f ON f.id = g.offer_id"
        " WHERE f.id IS NULL OR f.member_id <> g.member_id OR f.game <> g.game",
    ),
)


# The daily budget's running totals against the plays (only once migration 7 created them).
_BUDGET_CHECKS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        # The day's prize total the budget reads is the sum of that day's plays.
        "game_day_budget",
        "day, prize total, sum of plays",
        "SELECT d, t, s FROM (SELECT g.local_day AS d, b.prize_points AS t,"
        " sum(g.prize_points) AS s FROM game_plays AS g"
        " LEFT JOIN game_day_budget AS b ON b.local_day = g.local_day"
        " GROUP BY g.local_day, b.prize_points"
        " UNION ALL SELECT b.local_day, b.prize_points, 0 FROM game_day_budget AS b"
        " WHERE NOT EXISTS (SELECT 1 FROM game_plays AS g WHERE g.local_day = b.local_day))"
        " AS days WHERE t IS NOT s",
    ),
)

# Surveys and suggestions against the ledger (only once migration 6 created their tables): a
# reward is paid exactly for a completed response or an approved suggestion, once, by a
# 'survey' (a suggestion's: 'feedback') operation of the right member, amount and key; and a
# completed response answered every question.
_SURVEY_CHECKS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "survey_reward",
        "response, survey, completed, reward, operation, kind, member, operation member,"
        " operation points, key",
        "SELECT r.id, r.survey_id, r.completed_at, r.reward_points, o.id, o.kind, r.member_id,"
        " o.member_id, o.points, o.idempotency_key FROM survey_responses AS r"
        " LEFT JOIN operations AS o ON o.id = r.reward_operation_id"
        " WHERE (r.completed_at IS NOT NULL AND r.reward_points > 0) <> (o.id IS NOT NULL)"
        " OR (o.id IS NOT NULL AND (o.kind <> 'survey' OR o.member_id <> r.member_id"
        " OR o.points <> r.reward_points"
        " OR o.idempotency_key <> 'survey:' || r.member_id || ':' || r.survey_id))",
    ),
    (
        "survey_operation_has_response",
        "operation, kind, key",
        "SELECT o.id, o.kind, o.idempotency_key FROM operations AS o"
        # A range on the unique key's index rather than LIKE, which would scan every row.
        " WHERE o.idempotency_key >= 'survey:' AND o.idempotency_key < 'survey;'"
        " AND NOT EXISTS (SELECT 1 FROM survey_responses AS r"
        "   WHERE r.reward_operation_id = o.id)",
    ),
    (
        "survey_answers_complete",
        "response, questions, finished answers, draft answers",
        "SELECT r.id, r.questions, count(a.status IN ('answered', 'skipped') OR NULL),"
        " count(a.status = 'draft' OR NULL) FROM survey_responses AS r"
        " LEFT JOIN survey_answers AS a ON a.response_id = r.id"
        " WHERE r.completed_at IS NOT NULL GROUP BY r.id, r.questions"
        " HAVING count(a.status IN ('answered', 'skipped') OR NULL) <> r.questions"
        " OR count(a.status = 'draft' OR NULL) > 0",
    ),
    (
        "feedback_reward",
        "suggestion, status, reward, operation, kind, member, operation member,"
        " operation points, key",
        "SELECT f.id, f.status, f.reward_points, o.id, o.kind, f.member_id, o.member_id,"
        " o.points, o.idempotency_key FROM feedback AS f"
        " LEFT JOIN operations AS o ON o.id = f.reward_operation_id"
        " WHERE (f.status = 'approved' AND f.reward_points > 0) <> (o.id IS NOT NULL)"
        # 'survey': how rewards approved before migration 8 were booked (operations never change).
        " OR (o.id IS NOT NULL AND (o.kind NOT IN ('feedback', 'survey')"
        " OR o.member_id <> f.member_id"
        " OR o.points <> f.reward_points OR o.idempotency_key <> 'feedback:' || f.id))",
    ),
    (
        "feedback_operation_has_suggestion",
        "operation, kind, key",
        "SELECT o.id, o.kind, o.idempotency_key FROM operations AS o"
        " WHERE o.idempotency_key >= 'feedback:' AND o.idempotency_key < 'feedback;'"
        " AND NOT EXISTS (SELECT 1 FROM feedback AS f WHERE f.reward_operation_id = o.id)",
    ),
)

# Task rewards against the ledger (only once migration 19 created task_progress): every
# completion that paid points names an operation of kind 'task' (the green-share bonus:
# 'share_bonus') of the same member, keyed 'task:<task>:<member>:<period>' for that very
# completion; and every such operation belongs to a completion (so none was paid twice or
# without one).
_TASK_CHECKS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "task_reward",
        "member, task, period, completed, operation, kind, operation member, operation points, key",
        "SELECT p.member_id, p.task_id, p.period, p.completed_at, p.reward_operation_id,"
        " o.kind, o.member_id, o.points, o.idempotency_key FROM task_progress AS p"
        " LEFT JOIN operations AS o ON o.id = p.reward_operation_id"
        " WHERE p.reward_operation_id IS NOT NULL AND (o.id IS NULL OR p.completed_at IS NULL"
        " OR o.kind NOT IN ('task', 'share_bonus') OR o.member_id <> p.member_id"
        " OR o.points <= 0"
        " OR o.idempotency_key <> 'task:' || p.task_id || ':' || p.member_id || ':' || p.period)",
    ),
    (
        "task_operation_has_completion",
        "operation, kind, member, key",
        "SELECT o.id, o.kind, o.member_id, o.idempotency_key FROM operations AS o"
        " WHERE (o.kind IN ('task', 'share_bonus')"
        # A range on the unique key's index rather than LIKE, which would scan every row.
        " OR (o.idempotency_key >= 'task:' AND o.idempotency_key < 'task;'))"
        " AND NOT EXISTS (SELECT 1 FROM task_progress AS p"
        "   WHERE p.reward_operation_id = o.id)",
    ),
)
# Triggers a completion's finality rests on (storage/migrations/0019_tasks.sql).
TASK_TRIGGERS: Final = ("task_progress_completed_once", "task_progress_no_delete")


# Purchase returns and owed points (only once migration 27 created their tables): every
# return operation has its row and posts what the row says (taken from the member, owed to
# the 'owed' account, the rest back to the sources); a purchase refunded in full gave back
# exactly the points it earned (its own, its campaign's, a plan's bonus on it); and each
# member's owed points are what returns recorded minus what settlements paid, never below 0;
# a tier entry reward taken back (kind 'tier_reversal') reverses a whole reward of its member.
RETURN_TABLES: Final = ("purchase_returns", "owed_points")
RETURN_TRIGGERS: Final = (
    "purchase_returns_chained",
    "purchase_returns_no_update",
    "purchase_returns_no_delete",
)
_RETURN_CHECKS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "purchase_return_postings",
        "operation, return row, member, row member, points, row points, taken, row taken,"
        " owed, row owed",
        "SELECT * FROM (SELECT o.id, r.operation_id, o.member_id AS m, r.member_id AS rm,"
        " o.points AS pts, r.points AS rpts,"
        " coalesce((SELECT -sum(p.amount) FROM postings AS p JOIN accounts AS a"
        "   ON a.id = p.account_id WHERE p.operation_id = o.id AND a.kind = 'member'), 0) AS took,"
        " r.taken AS rtook,"
        " coalesce((SELECT -sum(p.amount) FROM postings AS p JOIN accounts AS a"
        "   ON a.id = p.account_id WHERE p.operation_id = o.id AND a.name = 'owed'), 0) AS owes,"
        " r.owed AS rowes"
        " FROM operations AS o LEFT JOIN purchase_returns AS r ON r.operation_id = o.id"
        " WHERE o.kind = 'purchase_return') AS ret"
        " WHERE rm IS NULL OR m <> rm OR pts <> rpts OR took <> rtook OR owes <> rowes"
        " UNION ALL SELECT r.operation_id, o.id, r.member_id, o.member_id, r.points, o.points,"
        " NULL, r.taken, NULL, r.owed FROM purchase_returns AS r"
        " LEFT JOIN operations AS o ON o.id = r.operation_id"
        " WHERE o.id IS NULL OR o.kind <> 'purchase_return'",
    ),
    (
        "purchase_return_of_purchase",
        "return, purchase operation, kind, member, purchase member",
        "SELECT r.operation_id, r.purchase_operation_id, o.kind, r.member_id, o.member_id"
        " FROM purchase_returns AS r LEFT JOIN operations AS o ON o.id = r.purchase_operation_id"
        " WHERE o.id IS NULL OR o.kind <> 'purchase' OR o.member_id <> r.member_id",
    ),
    (
        "purchase_return_full",
        "purchase operation, points taken back, points it earned",
        "SELECT pid, back, earned FROM (SELECT f.pid, f.back, o.points"
        " + coalesce((SELECT c.points FROM operations AS c"
        "   WHERE c.idempotency_key = o.idempotency_key || ':campaign'), 0)"
        " + coalesce((SELECT sum(b.points) FROM operations AS b WHERE b.kind = 'plan'"
        "   AND CAST(json_extract(b.meta, '$.purchase_operation') AS BIGINT) = o.id), 0) AS earned"
        " FROM (SELECT purchase_operation_id AS pid, sum(points) AS back FROM purchase_returns"
        "   GROUP BY purchase_operation_id HAVING sum(refunded_fen) = max(amount_fen)) AS f"
        " JOIN operations AS o ON o.id = f.pid) AS full_returns WHERE back <> earned",
    ),
    (
        "owed_reconciled",
        "member, owed points, recorded by returns (and entry rewards they undid), settled",
        "SELECT member_id, sum(cached), sum(recorded), sum(settled) FROM ("
        "  SELECT member_id, points AS cached, 0 AS recorded, 0 AS settled FROM owed_points"
        "  UNION ALL SELECT member_id, 0, owed, 0 FROM purchase_returns WHERE owed > 0"
        "  UNION ALL SELECT o.member_id, 0, -p.amount, 0 FROM operations AS o"
        "  JOIN postings AS p ON p.operation_id = o.id JOIN accounts AS a ON a.id = p.account_id"
        "  WHERE o.kind = 'tier_reversal' AND a.name = 'owed'"
        "  UNION ALL SELECT member_id, 0, 0, points FROM operations"
        "  WHERE kind = 'owed_settlement'"
        ") AS parts GROUP BY member_id HAVING sum(cached) <> sum(recorded) - sum(settled)"
        " OR sum(cached) < 0",
    ),
    (
        "tier_reward_taken_back",
        "operation, reward, its kind, member, its member, points, its points",
        "SELECT o.id, o.reverses_operation_id, r.kind, o.member_id, r.member_id, o.points,"
        " r.points FROM operations AS o LEFT JOIN operations AS r"
        " ON r.id = o.reverses_operation_id WHERE o.kind = 'tier_reversal'"
        " AND (r.id IS NULL OR r.kind <> 'tier' OR r.member_id <> o.member_id"
        " OR r.points <> o.points)",
    ),
    (
        "owed_account",
        "owed account balance, minus the owed points",
        "SELECT a.balance, -coalesce((SELECT sum(points) FROM owed_points), 0)"
        " FROM account_balances AS a WHERE a.name = 'owed'"
        " AND a.balance <> -coalesce((SELECT sum(points) FROM owed_points), 0)",
    ),
)


# Badges and badge-set prizes (only once migration 23 created their tables): a set's prize is
# paid once per member and set (the primary key), by a 'badge' operation of that member keyed
# 'badgeset:<set>:<member>' that names the set; no 'badge' operation without its prize row;
# and the member held every badge the set had (as recorded with the prize) when it was paid.
BADGE_TABLES: Final = ("member_badges", "badge_set_prizes")
BADGE_TRIGGERS: Final = (
    "member_badges_no_update",
    "member_badges_no_delete",
    "badge_set_prizes_no_update",
    "badge_set_prizes_no_delete",
)
_BADGE_CHECKS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "badge_prize_operation",
        "member, set, operation or redemption, kind, its member, key",
        "SELECT p.member_id, p.set_id, o.id, o.kind, o.member_id, o.idempotency_key"
        " FROM badge_set_prizes AS p JOIN operations AS o ON o.id = p.operation_id"
        " WHERE o.kind <> 'badge' OR o.member_id <> p.member_id"
        " OR o.idempotency_key <> 'badgeset:' || p.set_id || ':' || p.member_id"
        " OR json_extract(o.meta, '$.badge_set') IS NOT p.set_id"
        " UNION ALL SELECT p.member_id, p.set_id, r.id, 'redemption', r.member_id, NULL"
        " FROM badge_set_prizes AS p JOIN redemptions AS r ON r.id = p.redemption_id"
        " WHERE r.member_id <> p.member_id",
    ),
    (
        "badge_operation_has_prize",
        "operation, member, key, set",
        "SELECT o.id, o.member_id, o.idempotency_key, json_extract(o.meta, '$.badge_set')"
        " FROM operations AS o WHERE o.kind = 'badge'"
        " AND NOT EXISTS (SELECT 1 FROM badge_set_prizes AS p WHERE p.operation_id = o.id)",
    ),
    (
        "badge_prize_set_held",
        "member, set, badge not held when the prize was paid",
        "SELECT p.member_id, p.set_id, j.value FROM badge_set_prizes AS p, json_each(p.badges) AS j"
        " WHERE NOT EXISTS (SELECT 1 FROM member_badges AS b WHERE b.member_id = p.member_id"
        "   AND b.badge_id = j.value AND b.earned_at <= p.awarded_at)",
    ),
)
# With the configured sets ({set: [badges]}, as JSON): a member holding every badge of a set
# has its prize.
_BADGE_SET_UNPAID: Final = (
    "WITH def AS (SELECT s.key AS set_id, b.value AS badge_id"
    "   FROM json_each(?) AS s, json_each(s.value) AS b),"
    " size AS (SELECT set_id, count(*) AS n FROM def GROUP BY set_id)"
    " SELECT m.member_id, d.set_id FROM member_badges AS m JOIN def AS d"
    "   ON d.badge_id = m.badge_id GROUP BY m.member_id, d.set_id"
    " HAVING count(*) = (SELECT n FROM size WHERE size.set_id = d.set_id)"
    " AND NOT EXISTS (SELECT 1 FROM badge_set_prizes AS p"
    "   WHERE p.member_id = m.member_id AND p.set_id = d.set_id)"
    " LIMIT ?"
)


# Tiers (only once migration 24 created their tables). Each purchase with a tier bonus, with
# the tier its member held when it was booked: the last change before it (one recorded in the
# same second counts when it is not the change that purchase itself caused: an upgrade names
# the purchase that crossed, which earned in the old tier); none: the lowest tier.
_TIER_BONUSES: Final = (
    "SELECT o.id, o.member_id, o.points, json_extract(o.meta, '$.tier'),"
    " json_extract(o.meta, '$.tier_multiplier'),"
    # A whole number or nothing (PostgreSQL's json_extract gives text: the type is asked).
    " CASE WHEN json_type(o.meta, '$.tier_bonus') = 'integer'"
    "   THEN CAST(json_extract(o.meta, '$.tier_bonus') AS BIGINT) END,"
    " json_extract(o.meta, '$.campaign_multiplier'),"
    " (SELECT c.to_tier FROM tier_changes AS c WHERE c.member_id = o.member_id"
    "   AND (c.changed_at < o.created_at OR (c.changed_at = o.created_at"
    "   AND (c.operation_id IS NULL OR c.operation_id < o.id)))"
    "   ORDER BY c.changed_at DESC, c.id DESC LIMIT 1)"
    " FROM operations AS o WHERE o.kind = 'purchase'"
    " AND json_extract(o.meta, '$.tier_bonus') IS NOT NULL ORDER BY o.id"
)
# Each tier entry reward (key tier_entry:<tier>:<member>:<year>[:<entry>]) with the member's
# changes.
_TIER_REWARDS: Final = (
    "SELECT o.id, o.member_id, o.idempotency_key, o.created_at FROM operations AS o"
    " WHERE o.kind = 'tier' ORDER BY o.id"
)
_TIER_CHANGES: Final = (
    "SELECT member_id, to_tier, changed_at FROM tier_changes"
    " WHERE member_id IN (SELECT value FROM json_each(?)) ORDER BY changed_at, id"
)


def _floor(points: Decimal) -> int:
    return int(points.to_integral_value(rounding=ROUND_FLOOR))


def expected_tier_bonus(base: int, campaign: Decimal | None, tier: Decimal) -> int:
    """A tier bonus recomputed from its purchase's stored facts: with a campaign recorded
    ([tiers] combine = "multiply", the only way both apply) floor(base × campaign × tier) −
    floor(base × campaign), else floor(base × tier) − base."""
    # The arithmetic of bot.programme.purchases.tier_bonus (storage imports nothing of ours).
    scale = Decimal(1) if campaign is None else campaign
    return _floor(Decimal(base) * scale * tier) - _floor(Decimal(base) * scale)


def _decimal(value: object) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() and number > 0 else None


def _local_years(at: int, tz: tzinfo | None) -> set[str]:
    """The local year of a moment in the programme's timezone; unknown (None): its year in
    any timezone (UTC-12 to UTC+14), so a check without the configuration never reports a
    reward booked at local New Year."""
    moment = datetime.fromtimestamp(at, UTC)
    if tz is not None:
        return {str(moment.astimezone(tz).year)}
    return {str((moment + timedelta(hours=hours)).year) for hours in (-12, 14)}


def _tier_violations(
    conn: sqlite3.Connection, levels: Sequence[str] | None, tz: tzinfo | None
) -> list[Violation]:
    """Every tier bonus against the tier held when it was booked and its arithmetic, and every
    entry reward against a change that reached its tier in its year; `levels` (the configured
    tier ids, lowest first) names the lowest tier and orders them (None: not checked where
    that is needed)."""
    wrong_tier: list[tuple[object, ...]] = []
    wrong_sum: list[tuple[object, ...]] = []
    lowest = levels[0] if levels else None
    for op_id, member, points, tier, multiplier, bonus, campaign, held in conn.execute(
        _TIER_BONUSES
    ):
        held_then = held if held is not None else lowest
        if tier is None or (held_then is not None and held_then != tier):
            wrong_tier.append((op_id, member, tier, held_then or "lowest"))
        rate = _decimal(multiplier)
        campaign_rate = None if campaign is None else _decimal(campaign)
        if (
            rate is None
            or (campaign is not None and campaign_rate is None)
            or not isinstance(bonus, int)
            or bonus <= 0
            or bonus >= points
            or expected_tier_bonus(points - bonus, campaign_rate, rate) != bonus
        ):
            wrong_sum.append((op_id, points, multiplier, bonus, campaign))
    rank = {tier: index for index, tier in enumerate(levels or ())}
    rewards = conn.execute(_TIER_REWARDS).fetchall()
    changes: dict[int, list[tuple[str, int]]] = {}
    if rewards:
        members = sorted({int(r[1]) for r in rewards})
        for member, to_tier, at in conn.execute(_TIER_CHANGES, (json.dumps(members),)):
            changes.setdefault(int(member), []).append((str(to_tier), int(at)))
    unearned: list[tuple[object, ...]] = []
    for op_id, member, key, created_at in rewards:
        parts = str(key).split(":")
        # A fifth part: the entry paid again after a return took the one before back.
        again = len(parts) == 5 and parts[4].isdigit() and int(parts[4]) >= 2
        if (len(parts) != 4 and not again) or parts[0] != "tier_entry" or parts[2] != str(member):
            unearned.append((op_id, member, key, "key"))
            continue
        tier, year = parts[1], parts[3]
        if rank and tier not in rank:
            unearned.append((op_id, member, key, "unknown tier"))
            continue
        reached = any(
            at <= created_at
            and year in _local_years(at, tz)
            and (not rank or rank.get(to_tier, -1) >= rank[tier])
            for to_tier, at in changes.get(int(member), ())
        )
        if not reached:
            unearned.append((op_id, member, key, "no change to this tier or above that year"))
    violations = []
    for check, columns, rows in (
        ("tier_bonus_tier", "operation, member, tier of the bonus, tier held", wrong_tier),
        (
            "tier_bonus_arithmetic",
            "operation, points, tier multiplier, tier bonus, campaign multiplier",
            wrong_sum,
        ),
        ("tier_entry_reward", "operation, member, key, problem", unearned),
    ):
        if rows:
            violations.append(Violation(check, f"({columns}) {_examples(rows)}"))
    return violations


def audit(
    conn: sqlite3.Connection,
    *,
    integrity: Integrity = "full",
    badge_sets: Mapping[str, Sequence[str]] | None = None,
    tier_levels: Sequence[str] | None = None,
    tz: tzinfo | None = None,
) -> AuditReport:
    """Check every ledger invariant in one read snapshot; `integrity` picks the page check;
    `badge_sets` (the configured sets' badges) adds: every complete set's prize was paid;
    `tier_levels` (the configured tier ids, lowest first) and the programme's `tz` complete
    the tier checks (the lowest tier, their order, the exact local year of an entry reward:
    without `tz`, any timezone's year of it passes)."""
    violations: list[Violation] = []
    summary: dict[str, int] = {}
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")  # one snapshot: the checks must agree with each other
    try:
        postgres = engine(conn) == "postgres"
        for table in LEDGER_TABLES:
            count, low, high = conn.execute(
                f"SELECT count(*), min(id), max(id) FROM {table}"  # noqa: S608 - fixed names
            ).fetchone()
            summary[table] = int(count)
            # Ids are handed out max+1 and rows are never deleted: a hole means a delete.
            # (PostgreSQL's identities are not transactional: a rolled-back insert leaves a
            # hole there, and its triggers refuse DELETE and TRUNCATE instead.)
            if count and not postgres and (low != 1 or high - low + 1 != count):
                violations.append(
                    Violation(
                        "contiguous_ids",
                        f"{table}: {count} rows with ids {low}..{high}",
                    )
                )
        total = conn.execute("SELECT coalesce(sum(amount), 0) FROM postings").fetchone()[0]
        if total != 0:
            violations.append(Violation("conservation", f"postings sum to {total}, not 0"))
        summary["outstanding_points"] = int(
            conn.execute(
                "SELECT coalesce(sum(balance), 0) FROM accounts WHERE kind = 'member'"
            ).fetchone()[0]
        )
        tables = table_names(conn)
        has_mall = all(table in tables for table in MALL_TABLES)
        has_households = "household_members" in tables
        has_transfer_offers = "transfer_offers" in tables
        row_checks = _ROW_CHECKS + _MALL_CHECKS if has_mall else _ROW_CHECKS
        has_games = all(table in tables for table in GAME_TABLES)
        if has_games:
            row_checks += _GAME_CHECKS
            summary["game_plays"] = int(
                conn.execute("SELECT count(*) FROM game_plays").fetchone()[0]
            )
        has_budget = "game_day_budget" in tables
        if has_budget:
            row_checks += _BUDGET_CHECKS
        has_surveys = all(table in tables for table in SURVEY_TABLES)
        if has_households:
            row_checks += _HOUSEHOLD_CHECKS
        if has_surveys:
            row_checks += _SURVEY_CHECKS
            summary["survey_responses"] = int(
                conn.execute(
                    "SELECT count(*) FROM survey_responses WHERE completed_at IS NOT NULL"
                ).fetchone()[0]
            )
        has_tasks = "task_progress" in tables
        if has_tasks:
            row_checks += _TASK_CHECKS
            summary["task_completions"] = int(
                conn.execute(
                    "SELECT count(*) FROM task_progress WHERE completed_at IS NOT NULL"
                ).fetchone()[0]
            )
        has_badges = all(table in tables for table in BADGE_TABLES)
        if has_badges:
            row_checks += _BADGE_CHECKS
            summary["badge_set_prizes"] = int(
                conn.execute("SELECT count(*) FROM badge_set_prizes").fetchone()[0]
            )
            if badge_sets:
                unpaid = conn.execute(
                    _BADGE_SET_UNPAID,
                    (json.dumps({k: list(v) for k, v in badge_sets.items()}), MAX_EXAMPLES + 1),
                ).fetchall()
                if unpaid:
                    violations.append(
                        Violation("badge_set_unpaid", f"(member, set) {_examples(unpaid)}")
                    )
        if "tier_changes" in tables:
            violations += _tier_violations(conn, tier_levels, tz)
        has_returns = all(table in tables for table in RETURN_TABLES)
        if has_returns:
            row_checks += _RETURN_CHECKS
            summary["purchase_returns"] = int(
                conn.execute("SELECT count(*) FROM purchase_returns").fetchone()[0]
            )
            summary["owed_points"] = int(
                conn.execute("SELECT coalesce(sum(points), 0) FROM owed_points").fetchone()[0]
            )
        if has_mall:
            summary["redemptions"] = int(
                conn.execute("SELECT count(*) FROM redemptions").fetchone()[0]
            )
        for check, columns, sql in row_checks:
            rows = conn.execute(sql + " LIMIT ?", (MAX_EXAMPLES + 1,)).fetchall()
            if rows:
                violations.append(Violation(check, f"({columns}) {_examples(rows)}"))
        present = trigger_names(conn)
        required = [t for t in REQUIRED_TRIGGERS if has_mall or t not in MALL_TRIGGERS]
        if has_games:
            required += GAME_TRIGGERS
        if has_surveys:
            required += SURVEY_TRIGGERS
        if has_budget:
            required += BUDGET_TRIGGERS
        if has_transfer_offers:
            required += TRANSFER_TRIGGERS
        if has_tasks:
            required += TASK_TRIGGERS
        if has_badges:
            required += BADGE_TRIGGERS
        if has_returns:
            required += RETURN_TRIGGERS
        redemption_columns = column_names(conn, "redemptions") if has_mall else []
        if "valid_until" in redemption_columns:
            required += VALIDITY_TRIGGERS
        if "return_reason" in redemption_columns:
            required += RETURNS_TRIGGERS
        if missing := [name for name in required if name not in present]:
            violations.append(Violation("triggers", "missing " + ", ".join(missing)))
        # PostgreSQL checks foreign keys on every statement and its pages itself: the two
        # checks below are SQLite's.
        fk = (
            [] if postgres else conn.execute("PRAGMA foreign_key_check").fetchmany(MAX_EXAMPLES + 1)
        )
        if fk:
            violations.append(Violation("foreign_keys", _examples(fk)))
        if integrity != "none" and not postgres:
            check = "PRAGMA integrity_check" if integrity == "full" else "PRAGMA quick_check"
            result = [r[0] for r in conn.execute(check).fetchall()]
            if result != ["ok"]:
                violations.append(Violation("integrity", "; ".join(result[:MAX_EXAMPLES])))
    finally:
        if began:
            conn.execute("COMMIT")
    return AuditReport(tuple(violations), summary)
