"""The adversary of tests/test_fuzz.py: members who forge, replay and mistype, a model of what
only a legitimate flow may change, and a census of where every input went."""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import string
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Final

from bot.i18n import I18n
from bot.programme import dependants, family
from bot.programme.adjustments import MAX_ADJUSTMENT
from bot.sandbox.client import ChatClient
from bot.sandbox.seed import as_of
from bot.sandbox.server import BotEvent, SandboxMessage
from bot.updates import PerMemberUpdateProcessor
from storage.audit import audit
from storage.members import MEMBER_CODE_DIGITS, luhn_digit
from tests.conftest import ADMIN_ID, Sandbox, member_with

# Input classes that run into a defect of issue 15 still open on this branch: the adversary
# leaves them out and tests/test_fuzz.py pins each with a strict xfail. When a fix lands,
# that xfail passes, fails as XPASS, and the class comes back here by deleting its line.
KNOWN_DEFECTS: Final[dict[str, str]] = {}

# Amounts at the till, by what the specification (issue 15 item 4) says of them.
GOOD_AMOUNTS: Final = (
    "0.5", "1", "9", "25", "58.5", "99.99", "100", "100.00", "１００", "１２.５", "49999",
)  # fmt: skip
REFUSED_AMOUNTS: Final = (
    "-5", "0", "0.00", "0.001", "NaN", "nan", "sNaN", "inf", "-inf", "Infinity", "0x10",
    "1.2.3", "1e-2", "50000.01", "60000", "99999999", "abc", "¥", "1/2", "٫",
)  # fmt: skip
OVERFLOW_AMOUNTS: Final = ("1e400", "9" * 200, "1E999999", "9" * 60 + ".5")
LENIENT_AMOUNTS: Final = ("1,000", "1,0,0", "1_000", "١٢٣", "1e4", "+5", "1e1")
# Either refused or booked at the value the cashier meant; the specification is silent.
# (The cap itself: "under the cap" may or may not include it.)
UNSURE_AMOUNTS: Final = {"¥100": Decimal(100), "￥88": Decimal(88), "50000": Decimal(50000)}

CATEGORY_RATES: Final = {
    None: Decimal(1),
    "general": Decimal(1),
    "eco": Decimal(2),
    "refill": Decimal("1.5"),
}
FULL_WIDTH_DIGITS: Final = str.maketrans("０１２３４５６７８９", "0123456789")
# The sample catalog: sku -> (price, per-member limit). BILL-OFF is priced per yuan.
ITEMS: Final = {
    "BAG-01": (300, 2),
    "BOTTLE-01": (1200, 1),
    "VOUCHER-10": (800, None),
    "CARWASH-01": (1500, None),
}
DEDUCTION_SKU: Final = "BILL-OFF"
DEDUCTION_RATE: Final = 100
WHEEL_COST, WHEEL_FREE, WHEEL_LIMIT = 50, 1, 10
WHEEL_PRIZES: Final = frozenset({0, 20, 50, 200})
SCRATCH_COST, SCRATCH_LIMIT = 30, 5
SCRATCH_PRIZES: Final = frozenset({0, 10, 30, 100})
SURVEY: Final = "benefits_2026"
SURVEY_REWARD, FEEDBACK_REWARD = 50, 20
OFFER_MINUTES: Final = 10
# Clock moves stay inside the programme's day (NOW is noon in Shanghai): the daily limits
# and free plays the model counts stay those of one day.
MAX_CLOCK_MOVES: Final = 30
QUIET: Final = 0.02
# Answers given before the amount or the points are parsed.
BEFORE_AMOUNTS: Final = frozenset(
    {
        "admin.purchase.usage",
        "admin.code_invalid",
        "admin.code_not_number",
        "admin.code_check_digit",
        "admin.member_not_found",
        "admin.receipt_invalid",
    }
)
BEFORE_ADJUSTMENTS: Final = frozenset({"admin.adjust.usage"})
# Notices the sender pushes on its own schedule, which may land in the middle of a flow.
NOTICES: Final = frozenset(
    {
        "feedback.notice_approved",
        "feedback.notice_thanks",
        "notice.transfer_received",
        "notice.transfer_undone",
        "family.notice_accepted",
        "family.notice_declined",
        "family.notice_left",
        "family.notice_left_you_head",
        "family.notice_removed",
        "family.notice_head_to_you",
        "family.notice_dissolved",
    }
)

# Replies that show another member's name and what may be sent them, or that ask to remove
# them or make them head: an attacker never gets one (a mate's id is never forged).
LEAKS: Final = frozenset(
    {
        "transfer.amount_title",
        "transfer.ask_amount",
        "transfer.confirm_title",
        "family.remove_ask",
        "family.head_ask",
    }
)

STAFF_COMMANDS: Final = (
    "/purchase", "/adjust", "/member", "/fulfil", "/stock", "/delist", "/broadcast",
    "/approve_return", "/reject_return", "/fulfil_prize", "/feedback_queue", "/survey_stats",
    "/returns", "/cannot_fulfil", "/dissolve_household",
)  # fmt: skip
MEMBER_COMMANDS: Final = (
    "/start", "/balance", "/history", "/card", "/mall", "/redemptions", "/settings", "/rules",
    "/help", "/language", "/odds", "/prizes", "/surveys", "/cancel", "/feedback", "/nope",
    "/family", "/transfer", "/join",
)  # fmt: skip
# Forged taps that would open an offer of the attacker's own (a game's Spin, a mall item's
# Redeem) are left out: a mutated id could then confirm that offer, a legitimate flow. So are
# the household's taps that act on the tapper's own household, birthdays or settings (create,
# invite, leave, add a child or pet, show the balance): legitimate flows of whoever taps. An
# open invitation's accept and decline carry its token, which is the invitation itself (whoever
# holds the link may answer it): only guessed, mistyped and spent tokens are tried.
OWN_OFFER_DATA: Final = re.compile(
    r"^(mall:(buy|deduct):|menu:(wheel|scratch)$"
    r"|fam:(new|inv|lvy)$|fam:(ok|no):|dep:kind:|set:share:)"
)
# The prefixes of the family flows' buttons (issue 20), forged on purpose.
FAMILY_DATA: Final = ("tr:", "fam:", "dep:")
# What a mutated tap aims at, and the table its id is drawn from (never the tapper's own row:
# an id of the attacker's own offer would be a legitimate flow of theirs).
MUTATION_TABLES: Final = {
    "mall:ok": "offers",
    "mall:no": "offers",
    "mall:deduct": "offers",
    "game:spin": "game_offers",
    "game:buy": "game_offers",
    "game:sc": "game_plays",
    "game:all": "game_plays",
    "game:card": "game_plays",
    "fb:a": "feedback",
    "fb:r": "feedback",
    "bc:ok": "broadcasts",
    "red:rety": "offers",
    "hist": "offers",
    "sv": "offers",
    # Issue 20: transfers, households, family birthdays.
    "tr:ok": "transfer_offers",
    "tr:no": "transfer_offers",
    "tr:undo": "operations",
    "tr:to": "members",
    "tr:amt": "members",
    "tr:other": "members",
    "fam:ok": "household_invitations",
    "fam:no": "household_invitations",
    "fam:rm": "members",
    "fam:hd": "members",
    "dep:chg": "dependants",
    "dep:rm": "dependants",
    "dep:rmok": "dependants",
}
# A transfer button naming its recipient: (the data up to the id, the id).
TO_MEMBER: Final = re.compile(r"^(tr:(?:to|amt|other):)([0-9]+)")
# What an invitation token is drawn from (URL-safe base64, bot.programme.family.new_token).
TOKEN_ALPHABET: Final = string.ascii_letters + string.digits + "-_"


# --- what a reply says ----------------------------------------------------------------------


class ReplyKinds:
    """Names the catalog message a bot output was rendered from (by its first line)."""

    def __init__(self, i18n: I18n) -> None:
        self._by_lead: dict[str, list[tuple[int, str, re.Pattern[str]]]] = {}
        self._wild: list[tuple[int, str, re.Pattern[str]]] = []
        for catalog in i18n.catalogs.values():
            for key, template in catalog.items():
                parts = list(string.Formatter().parse(template))
                literal = sum(len(text) for text, *_ in parts)
                if literal < 3:  # "{text}" alone would match anything
                    continue
                regex = "".join(
                    re.escape(text) + ("" if name is None else "(?s:.*?)")
                    for text, name, _, _ in parts
                )
                entry = (literal, key, re.compile(regex + r"(?=\n|\Z)"))
                lead = parts[0][0]
                (self._by_lead.setdefault(lead[0], []) if lead else self._wild).append(entry)
        self._seen: dict[str, str] = {}

    def kind(self, text: str | None) -> str:
        """The message id whose template the text starts with; "(silent)" for no text."""
        if not text:
            return "(silent)"
        known = self._seen.get(text)
        if known is None:
            candidates = sorted(self._by_lead.get(text[0], []) + self._wild, key=_longest)
            known = next((key for _, key, p in candidates if p.match(text)), "(unclassified)")
            self._seen[text] = known
        return known


# --- what the database holds ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Holdings:
    """What one member has that only a legitimate flow may change."""

    member_id: int
    code: str
    balance: int
    # (kind, idempotency key, points) in the order they were booked.
    operations: tuple[tuple[str, str, int], ...]
    # (sku, status, points)
    redemptions: tuple[tuple[str, str, int], ...]
    # (game, cost, scratched cells, revealed); the prize is the draw's, read as it comes.
    plays: tuple[tuple[str, int, int, bool], ...]
    prizes: tuple[int, ...]
    completed_surveys: tuple[str, ...]
    # (status, reward points)
    feedback: tuple[tuple[str, int], ...]
    reachable: bool
    # Their household, its stays, invitations, events, their children and pets, the transfer
    # offers they made and the transfers they received: (what, ...) rows in a stable order.
    family: tuple[tuple[object, ...], ...]
    shares: bool

    def without_surveys(self) -> Holdings:
        """The holdings a survey reward may not touch (anyone may answer a survey)."""
        ops = tuple(op for op in self.operations if op[0] != "survey")
        rewards = sum(op[2] for op in self.operations if op[0] == "survey")
        return replace(self, operations=ops, balance=self.balance - rewards, completed_surveys=())

    def without_suggestions(self) -> Holdings:
        """The holdings a pending or rejected suggestion does not touch."""
        return replace(self, feedback=tuple(f for f in self.feedback if f[0] == "approved"))


@dataclass(frozen=True, slots=True)
class World:
    """Everything the adversary may not change, read straight from the database."""

    members: dict[int, Holdings]  # by Telegram id
    sold: dict[str, int]
    stock: dict[str, int | None]
    listed: dict[str, bool]
    confirmed_broadcasts: int
    operations: Counter[str]
    # Offer, card and play ids by owner, so mutated ids never hit an attacker's own.
    owners: dict[tuple[str, int], int]
    highest: dict[str, int]
    # Redemption codes by the Telegram id of their holder (a code is shown in the chat, and
    # a QR is easily seen over a shoulder).
    codes: dict[int, list[str]]
    # Who shares a household now, by Telegram id (a mate's id is no foreign id to a member).
    mates: dict[int, frozenset[int]]
    # Every invitation: (token, code, expires_at, answered).
    invitations: tuple[tuple[str, str, int, bool], ...]
    # Who heads a household now, by Telegram id.
    heads: frozenset[int]


def read_world(conn: sqlite3.Connection) -> World:
    """One consistent reading of every table a forged input could reach."""
    rows: dict[int, dict[str, object]] = {}
    by_member: dict[int, int] = {}
    for member_id, telegram_id, code, reachable, shares in conn.execute(
        "SELECT id, telegram_id, member_code, reachable, share_balance FROM members"
    ):
        by_member[member_id] = telegram_id
        rows[telegram_id] = {
            "member_id": member_id,
            "code": code,
            "balance": 0,
            "operations": [],
            "redemptions": [],
            "plays": [],
            "prizes": [],
            "completed_surveys": [],
            "feedback": [],
            "reachable": bool(reachable),
            "family": [],
            "shares": bool(shares),
        }

    def add(member_id: int, name: str, value: object) -> None:
        target = rows[by_member[member_id]][name]
        assert isinstance(target, list)
        target.append(value)

    for member_id, balance in conn.execute(
        "SELECT member_id, balance FROM accounts WHERE kind = 'member'"
    ):
        rows[by_member[member_id]]["balance"] = balance
    kinds: Counter[str] = Counter()
    for member_id, kind, key, points in conn.execute(
        "SELECT member_id, kind, idempotency_key, points FROM operations ORDER BY id"
    ):
        kinds[kind] += 1
        add(member_id, "operations", (kind, key, points))
    codes: dict[int, list[str]] = {}
    for member_id, sku, status, points, code in conn.execute(
        "SELECT member_id, sku, status, points, code FROM redemptions ORDER BY id"
    ):
        add(member_id, "redemptions", (sku, status, points))
        codes.setdefault(by_member[member_id], []).append(code)
    for member_id, game, cost, scratched, revealed, prize in conn.execute(
        "SELECT member_id, game, cost, scratched, revealed_at IS NOT NULL, prize_points"
        " FROM game_plays ORDER BY id"
    ):
        add(member_id, "plays", (game, cost, scratched, bool(revealed)))
        add(member_id, "prizes", prize)
    for member_id, survey in conn.execute(
        "SELECT member_id, survey_id FROM survey_responses WHERE completed_at IS NOT NULL"
        " ORDER BY id"
    ):
        add(member_id, "completed_surveys", survey)
    for member_id, status, reward in conn.execute(
        "SELECT member_id, status, reward_points FROM feedback ORDER BY id"
    ):
        add(member_id, "feedback", (status, reward))
    mates, heads = _read_family(conn, by_member, add)
    members = {
        telegram_id: Holdings(**{k: tuple(v) if isinstance(v, list) else v for k, v in row.items()})
        for telegram_id, row in rows.items()
    }
    sold: dict[str, int] = {}
    stock: dict[str, int | None] = {}
    listed: dict[str, bool] = {}
    for sku, item_stock, item_sold, item_listed in conn.execute(
        "SELECT sku, stock, sold, listed FROM catalog_items"
    ):
        sold[sku], stock[sku], listed[sku] = item_sold, item_stock, bool(item_listed)
    (confirmed,) = conn.execute(
        "SELECT count(*) FROM broadcasts WHERE confirmed_at IS NOT NULL"
    ).fetchone()
    owners: dict[tuple[str, int], int] = {}
    highest: dict[str, int] = {}
    tables = {
        "offers": "member_id",
        "game_offers": "member_id",
        "game_plays": "member_id",
        "feedback": "member_id",
        "broadcasts": "0",
        "transfer_offers": "sender_id",
        "operations": "member_id",
        "members": "id",
        "household_invitations": "invited_by",
        "dependants": "member_id",
    }
    for table, owner in tables.items():
        highest[table] = 0
        for row_id, member_id in conn.execute(f"SELECT id, {owner} FROM {table}"):  # noqa: S608
            owners[(table, row_id)] = by_member.get(member_id, 0)
            highest[table] = max(highest[table], row_id)
    invitations = tuple(
        (token, code, expires_at, answer is not None)
        for token, code, expires_at, answer in conn.execute(
            "SELECT token, code, expires_at, answer FROM household_invitations ORDER BY id"
        )
    )
    return World(
        members,
        sold,
        stock,
        listed,
        confirmed,
        kinds,
        owners,
        highest,
        codes,
        mates,
        invitations,
        heads,
    )


def _read_family(
    conn: sqlite3.Connection, by_member: dict[int, int], add: Callable[[int, str, object], None]
) -> tuple[dict[int, frozenset[int]], frozenset[int]]:
    """Each member's household rows into their holdings; who shares a household now, and
    who heads one."""
    current: dict[int, set[int]] = {}
    heads: set[int] = set()
    for stay, household, member_id, joined, left, how, head in conn.execute(
        "SELECT s.id, s.household_id, s.member_id, s.joined_at, s.left_at, s.left_how, h.head_id"
        " FROM household_members AS s JOIN households AS h ON h.id = s.household_id"
        " ORDER BY s.id"
    ):
        add(member_id, "family", ("stay", stay, household, joined, left, how))
        if left is None:
            current.setdefault(household, set()).add(by_member[member_id])
            add(member_id, "family", ("head of my household", by_member[head]))
            heads.add(by_member[head])
    mates = {
        telegram_id: frozenset(together - {telegram_id})
        for together in current.values()
        for telegram_id in together
    }
    for telegram_id, others in mates.items():
        add(_member_of(by_member, telegram_id), "family", ("together with", *sorted(others)))
    for row in conn.execute(
        "SELECT id, household_id, invited_by, token, expires_at, answered_by, answer"
        " FROM household_invitations ORDER BY id"
    ):
        add(row[2], "family", ("invited", *row))
        if row[5] is not None:
            add(row[5], "family", ("answered", *row))
    for row in conn.execute(
        "SELECT id, household_id, kind, member_id, actor FROM household_events"
        " WHERE member_id IS NOT NULL ORDER BY id"
    ):
        add(row[3], "family", ("event", *row))
    for row in conn.execute(
        "SELECT id, member_id, origin_id, kind, name, month, day, year, entered_at, changed_at,"
        " removed_at FROM dependants ORDER BY id"
    ):
        add(row[1], "family", ("dependant", *row))
    for row in conn.execute(
        "SELECT id, sender_id, recipient_id, household_id, points FROM transfer_offers ORDER BY id"
    ):
        add(row[1], "family", ("transfer offer", *row))
    for row in conn.execute(
        "SELECT id, member_id, counterparty_id, kind, points FROM operations"
        " WHERE counterparty_id IS NOT NULL ORDER BY id"
    ):
        add(row[2], "family", ("received", *row))
    return mates, frozenset(heads)


def _member_of(by_member: dict[int, int], telegram_id: int) -> int:
    return next(m for m, t in by_member.items() if t == telegram_id)


def booked(conn: sqlite3.Connection, key: str) -> tuple[int, str, int] | None:
    """(member id, kind, points) of the operation with this idempotency key, if any."""
    row = conn.execute(
        "SELECT member_id, kind, points FROM operations WHERE idempotency_key = ?", (key,)
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


# --- the model --------------------------------------------------------------------------------


@dataclass
class Expected:
    """What a victim should hold, from the legitimate flows made and what they answered."""

    balance: int
    kinds: Counter[str]
    redemptions: list[tuple[str, str, int]]
    plays: list[tuple[str, int, int, bool]]
    completed_surveys: list[str]
    approved: int
    # The household rows as the victim's last legitimate step left them (read back then: the
    # flows of issue 20 change many rows, none of them an attacker's to change).
    family: tuple[tuple[object, ...], ...] = ()
    shares: bool = False
    # Suggestions filed and not yet decided.
    pending: int = 0

    @classmethod
    def of(cls, held: Holdings) -> Expected:
        """The model of a member as they are now."""
        return cls(
            held.balance,
            Counter(op[0] for op in held.operations),
            list(held.redemptions),
            list(held.plays),
            list(held.completed_surveys),
            sum(1 for f in held.feedback if f[0] == "approved"),
            held.family,
            held.shares,
        )

    def played_today(self, game: str) -> int:
        """Plays of `game` so far (the whole run is one local day)."""
        return sum(1 for play in self.plays if play[0] == game)

    def redeemed(self, sku: str) -> int:
        """Redemptions of `sku` that count toward its per-member limit."""
        return sum(1 for r in self.redemptions if r[0] == sku and r[1] == "issued")

    def differences(self, held: Holdings) -> list[str]:
        """Where the database disagrees with the model."""
        wrong = []
        if held.balance != self.balance:
            wrong.append(f"balance {held.balance}, expected {self.balance}")
        kinds = Counter(op[0] for op in held.operations)
        if kinds != self.kinds:
            wrong.append(f"operations {dict(kinds)}, expected {dict(self.kinds)}")
        if list(held.redemptions) != self.redemptions:
            wrong.append(f"redemptions {held.redemptions}, expected {self.redemptions}")
        if list(held.plays) != self.plays:
            wrong.append(f"plays {held.plays}, expected {self.plays}")
        if list(held.completed_surveys) != self.completed_surveys:
            wrong.append(f"surveys {held.completed_surveys}, expected {self.completed_surveys}")
        approved = sum(1 for f in held.feedback if f[0] == "approved")
        if approved != self.approved:
            wrong.append(f"{approved} suggestions approved, expected {self.approved}")
        if not held.reachable:
            wrong.append("marked unreachable")
        if held.family != self.family:
            changed = sorted(set(held.family) ^ set(self.family), key=repr)
            wrong.append(f"household, birthdays or transfer offers changed: {changed}")
        if held.shares != self.shares:
            wrong.append(f"sharing its balance: {held.shares}, expected {self.shares}")
        return wrong


def purchase_points(amount: Decimal, category: str | None) -> int:
    """Points the sample programme gives for a purchase today (no campaign runs at NOW): per
    full yuan, rounded down."""
    full_yuan = amount.to_integral_value(ROUND_FLOOR)
    return int((full_yuan * CATEGORY_RATES[category]).to_integral_value(ROUND_FLOOR))


def code_variants(code: str) -> dict[str, str]:
    """Near-valid spellings of a member code, by what is wrong with them (all refused)."""
    # Luhn has one check digit per body: any other is wrong. The short and long codes carry
    # a correct check digit of their own, so only their length gives them away.
    body = code[:-1]
    long_body = body + "5"
    return {
        "check digit": body + str((int(code[-1]) + 3) % 10),
        "9 digits": code[:-2] + luhn_digit(code[:-2]),
        "11 digits": long_body + luhn_digit(long_body),
        "letters": code[:4] + "O" + code[5:],
        "an extra group": "-".join(code[i : i + 3] for i in range(0, len(code), 3)) + "0",
    }


def unsure_code(code: str) -> str:
    """The code in full-width digits: a member meant it, the specification does not say."""
    return code.translate(str.maketrans("0123456789", "０１２３４５６７８９"))


def dashed(code: str, rng: random.Random) -> str:
    """A code with the dashes or spaces the till accepts between groups (as /card prints it)."""
    cut = rng.randint(2, MEMBER_CODE_DIGITS - 2)
    return rng.choice(
        [
            f"{code[:4]}-{code[4:8]}-{code[8:]}",
            f"{code[:cut]}-{code[cut:]}",
            f"{code[:4]} {code[4:8]} {code[8:]}",
        ]
    )


def garbage(rng: random.Random, longest: int = 80) -> str:
    """Text from every corner of Unicode that Telegram would deliver (no surrogates, no NUL)."""
    alphabet = (
        string.printable
        + "积分兑换转盘刮刮乐红米好物😀🎉👍🏽‍🔥"
        + "\u202e\u200b\u00a0ÄÖÜßçñ"
        + "".join(chr(c) for c in range(0x0400, 0x0420))
    )
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, longest))).strip()
    return text or "x"


# --- the adversary ----------------------------------------------------------------------------


@dataclass
class Census:
    """Where the inputs went: what was tried, and what each kind of input was answered."""

    tried: Counter[str] = field(default_factory=Counter)
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)
    legitimate: Counter[str] = field(default_factory=Counter)
    # What the attackers' and strangers' messages were answered, by catalog message.
    replies: Counter[str] = field(default_factory=Counter)
    hostile: int = 0

    def reached(self, prefix: str, refusals: frozenset[str]) -> int:
        """Operator inputs of a class that got past the refusals before the parser."""
        return sum(
            n
            for (name, kind), n in self.answers.items()
            if name.startswith(prefix) and kind not in refusals
        )

    def report(self, world: World) -> str:
        """A readable table of the run."""
        lines = [
            f"hostile inputs: {self.hostile}",
            f"reached the amount parser: {self.reached('purchase:', BEFORE_AMOUNTS)}",
            f"reached the adjustment parser: {self.reached('adjust:', BEFORE_ADJUSTMENTS)}",
        ]
        lines += [f"  {name}: {count}" for name, count in sorted(self.tried.items())]
        lines.append("answers by input class:")
        by_class: dict[str, Counter[str]] = {}
        for (name, kind), count in self.answers.items():
            by_class.setdefault(name, Counter())[kind] += count
        for name in sorted(by_class):
            top = ", ".join(f"{k} {n}" for k, n in by_class[name].most_common(4))
            lines.append(f"  {name}: {top}")
        top = ", ".join(f"{k} {n}" for k, n in self.replies.most_common(8))
        lines.append(f"replies to hostile messages: {top}")
        lines.append(
            "legitimate flows: " + ", ".join(f"{k} {n}" for k, n in sorted(self.legitimate.items()))
        )
        lines.append(
            "ledger operations: "
            + ", ".join(f"{k} {n}" for k, n in sorted(world.operations.items()))
        )
        return "\n".join(lines)


class Adversary:
    """Victims, an operator and attackers; a model of the victims, a snapshot of the rest."""

    def __init__(
        self,
        sandbox: Sandbox,
        rng: random.Random,
        *,
        victims: int = 4,
        attackers: int = 8,
        strangers: int = 2,
        enabled: Iterable[str] = (),
    ) -> None:
        self.sandbox = sandbox
        self.emu = sandbox.emu
        self.rng = rng
        self.enabled = frozenset(enabled)
        self.kinds = ReplyKinds(sandbox.services.i18n)
        self.census = Census()
        base = 7_000_000 + rng.randrange(10_000) * 100
        self.victim_ids = [base + i for i in range(victims)]
        self.attacker_ids = [base + 50 + i for i in range(attackers)]
        # Never sent /start: they know only what a sticker gets them.
        self.stranger_ids = [base + 90 + i for i in range(strangers)]
        self.admin = sandbox.admin(language_code="en")
        # Every step waits for what it expects to see; the quiet period after it can be short.
        self.admin.settle = QUIET
        self.clients: dict[int, ChatClient] = {}
        self.model: dict[int, Expected] = {}
        self.start: World | None = None
        self.sold: Counter[str] = Counter()
        self.receipts: dict[str, tuple[int, Decimal, str | None]] = {}
        self.tills: set[tuple[int, Decimal, str | None]] = set()
        self.hot: list[str] = []
        self.queries: list[tuple[str, str]] = []
        self.seen_events: dict[int, int] = {}
        self.calls_seen = 0
        self.harvest: list[str] = []
        # The mutation targets still to try in this round: every target once per round, in
        # the seed's order, so a run's coverage of each family does not hang on luck.
        self.mutation_deck: list[str] = []
        self.harvested: set[str] = set()
        self.clock_moves = 0
        self.broadcast: int | None = None
        self.leaks: list[tuple[int, str | None]] = []
        # The victims' household (its head first) and the attackers' own; a lone victim to
        # invite. Smaller casts have none.
        families = victims >= 3 and attackers >= 2
        self.household = self.victim_ids[:2] if families else []
        self.gang = self.attacker_ids[:2] if families else []
        # An attacker inside the victims' household: their household rows change with the
        # victims' steps (read back with them), nothing else of theirs does.
        self.insiders = self.attacker_ids[2:3] if families and attackers >= 3 else []
        self.settled: dict[int, tuple[tuple[object, ...], ...]] = {}

    # --- setting up ----------------------------------------------------------------------

    async def setup(self) -> None:
        """Members with points, a pending broadcast, then the snapshot everything is held to."""
        rng = self.rng
        for user_id in self.victim_ids:
            await member_with(self.sandbox, user_id, rng.randrange(3000, 8000), lang="en")
            self.clients[user_id] = self.sandbox.member(user_id, "victim", "en")
            self.clients[user_id].settle = QUIET
        for user_id in self.attacker_ids:
            lang = rng.choice(["zh-hans", "en", "fr"])
            await member_with(self.sandbox, user_id, rng.randrange(1000, 5000), lang=lang)
            self.clients[user_id] = self.sandbox.member(user_id, garbage(rng, 10), lang)
        for user_id in self.stranger_ids:
            client = self.sandbox.member(user_id, garbage(rng, 10), None)
            await client.send_sticker()
            self.clients[user_id] = client
        await self._setup_families()
        [preview] = await self.admin.send("/broadcast Fuzz notice: nobody but staff sends this")
        self.broadcast = int(self._data_on(preview.message_id, "bc:ok:").split(":")[2])
        await self.drain()
        self.census.replies.clear()  # the welcomes of setting up are no hostile input's
        world = await self.read()
        self.start = world
        self.model = {v: Expected.of(world.members[v]) for v in self.victim_ids}

    async def _setup_families(self) -> None:
        """Households of victims and of attackers formed long ago (transfers are allowed), a
        child or pet for some, a spent and an open invitation: what the attackers aim at."""
        if not self.household:
            return
        services = self.sandbox.services
        now = services.clock()
        ids = {}
        for user_id in [*self.victim_ids, *self.attacker_ids]:
            member = await services.members.by_telegram_id(user_id)
            assert member is not None
            ids[user_id] = member.id
        long_ago = as_of(services, now - timedelta(days=40))
        for head, *others in ([*self.household, *self.insiders], self.gang):
            await family.create(long_ago, ids[head], actor="fuzz")
            for other in others:
                invitation = await family.invite(long_ago, ids[head])
                await services.families.answer_invitation(
                    invitation.id,
                    ids[other],
                    accept=True,
                    max_members=services.config.family.max_members,
                    actor="fuzz",
                    notice=None,
                    now=long_ago.now(),
                )
            await family.invite(as_of(services, now - timedelta(days=5)), ids[head])  # expired
        await family.invite(services, ids[self.gang[0]])  # open: its token is the gang's
        await family.set_sharing(services, ids[self.household[1]], True)
        # Birthdays half a year away: no greeting or gift falls inside the run.
        for user_id, kind, name in (
            (self.victim_ids[0], "child", "Mia"),
            (self.victim_ids[2], "pet", "Mimi"),
            (self.attacker_ids[0], "pet", "Rex"),
        ):
            await dependants.start_adding(long_ago, ids[user_id], kind)
            await dependants.name_dependant(long_ago, ids[user_id], name)
            await dependants.add_dependant(long_ago, ids[user_id], "5-20")

    async def read(self) -> World:
        """The world now."""
        return await self.sandbox.services.store.read(read_world)

    def code(self, user_id: int) -> str:
        """A member's code as the snapshot read it."""
        assert self.start is not None
        return self.start.members[user_id].code

    # --- waiting ---------------------------------------------------------------------------

    async def drain(self, patience: float = 60.0) -> None:
        """Wait until the bot has taken every update, answered every tap and gone quiet."""
        emu, app = self.emu, self.sandbox.app
        processor = app.update_processor
        assert isinstance(processor, PerMemberUpdateProcessor), "who says when updates are done?"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        quiet = 0
        while quiet < 3:
            idle = (
                emu.pending_update_count == 0
                and app.update_queue.empty()
                and processor.busy_members == 0
            )
            quiet = quiet + 1 if idle else 0
            if loop.time() > deadline:
                raise AssertionError(f"the bot did not go quiet in {patience}s")
            await asyncio.sleep(0.02)
        unanswered = [name for qid, name in self.queries if emu.callback_answer(qid) is None]
        assert not unanswered, f"taps never answered (a spinner forever): {unanswered[:5]}"
        for qid, name in self.queries:
            event = emu.callback_answer(qid)
            assert event is not None
            self.census.answers[(name, self.kinds.kind(event.text))] += 1
        self.queries.clear()
        for user_id in [*self.attacker_ids, *self.stranger_ids]:
            seen = self.seen_events.get(user_id, 0)
            events = self.emu.events(user_id, after=seen)
            self.seen_events[user_id] = seen + len(events)
            kinds = [
                (self.kinds.kind(e.text), e.text)
                for e in events
                if e.kind in ("message", "photo", "edit")
            ]
            self.census.replies.update(kind for kind, _ in kinds)
            self.leaks += [(user_id, text) for kind, text in kinds if kind in LEAKS]

    # --- checking ----------------------------------------------------------------------------

    async def check(self) -> World:
        """Attackers hold exactly what they started with, victims what the model says."""
        await self.drain()
        world = await self.read()
        start = self.start
        assert start is not None
        wrong: list[str] = []
        for user_id in self.attacker_ids:
            before, after = start.members[user_id], world.members[user_id]
            before = replace(before, family=self.settled.get(user_id, before.family))
            # A survey's buttons are the same for everyone: answering one is the attacker's
            # own legitimate flow, paid once per survey (checked below), nothing else.
            if (
                after.without_surveys().without_suggestions()
                != before.without_surveys().without_suggestions()
            ):
                wrong.append(f"attacker {user_id}: {before} -> {after}")
            wrong += self._survey_rewards(user_id, after)
            if any(status == "approved" for status, _ in after.feedback):
                wrong.append(f"attacker {user_id}: a suggestion approved")
        for user_id in self.stranger_ids:
            # A tap can make a stranger a member (with nothing), never more.
            held = world.members.get(user_id)
            if held is None:
                continue
            plain = held.without_surveys()
            if plain.balance or plain.operations or plain.redemptions or plain.plays:
                wrong.append(f"stranger {user_id} holds {held}")
            wrong += self._survey_rewards(user_id, held)
        for user_id in self.victim_ids:
            differences = self.model[user_id].differences(world.members[user_id])
            wrong += [f"victim {user_id}: {d}" for d in differences]
        for sku, count in start.sold.items():
            if world.sold[sku] != count + self.sold[sku]:
                wrong.append(f"{sku}: sold {world.sold[sku]}, expected {count + self.sold[sku]}")
            if world.stock[sku] != start.stock[sku] or world.listed[sku] != start.listed[sku]:
                wrong.append(f"{sku}: stock or listing changed")
        if self.leaks:
            wrong.append(f"another member shown to an attacker: {self.leaks[:3]}")
        if world.confirmed_broadcasts != start.confirmed_broadcasts:
            wrong.append("a broadcast was confirmed")
        calls = self.emu.calls[self.calls_seen :]
        self.calls_seen += len(calls)
        sent_to_groups = [c for c in calls if _chat_id(c.params) < 0]
        if sent_to_groups:
            wrong.append(f"the bot acted in a group: {sent_to_groups[:3]}")
        assert not wrong, "\n".join(wrong)
        report = await self.sandbox.services.store.read(lambda conn: audit(conn, integrity="quick"))
        assert report.ok, str(report)
        return world

    def _survey_rewards(self, user_id: int, held: Holdings) -> list[str]:
        rewards = [op for op in held.operations if op[0] == "survey"]
        expected = [f"survey:{held.member_id}:{s}" for s in held.completed_surveys]
        if sorted(op[1] for op in rewards) != sorted(expected):
            return [f"member {user_id}: survey rewards {rewards} for {held.completed_surveys}"]
        return []

    # --- bursts of hostile input ------------------------------------------------------------------

    def _collect_harvest(self) -> None:
        """Every callback datum the victims and the operator were ever shown (stale ones too)."""
        for user_id in [*self.victim_ids, ADMIN_ID]:
            events = self.emu.events(user_id, after=self.seen_events.get(user_id, 0))
            self.seen_events[user_id] = self.seen_events.get(user_id, 0) + len(events)
            for event in events:
                for row in event.keyboard:
                    for button in row:
                        data = button.callback_data
                        if data and data not in self.harvested and not OWN_OFFER_DATA.match(data):
                            self.harvested.add(data)
                            self.harvest.append(data)

    async def burst(self, size: int) -> None:
        """`size` hostile inputs, fired without waiting, from attackers, strangers and groups."""
        self._collect_harvest()
        world = await self.read()
        hostile = [*self.attacker_ids, *self.stranger_ids]
        for _ in range(size):
            user_id = self.rng.choice(hostile)
            roll = self.rng.random()
            if roll < 0.45 and self.harvest:
                self._forged_tap(user_id, world)
            elif roll < 0.60:
                self._mutated_tap(user_id, world)
            elif roll < 0.72:
                self._staff_command(user_id, world)
            elif roll < 0.80:
                self._group_update()
            elif roll < 0.88:
                self._member_command(user_id, world)
            else:
                self._noise(user_id)
            self.census.hostile += 1
            if self.rng.random() < 0.1:
                await asyncio.sleep(0)  # let the bot breathe now and then

    def _tap(self, user_id: int, name: str, data: str) -> None:
        """Tap `data` on one of the user's own bot messages (Telegram sends the tapper's)."""
        mine = [m for m in self.emu.messages(user_id) if m.from_bot]
        if not mine:
            return
        message = self.rng.choice(mine[-6:])
        data = data.encode()[:64].decode(errors="ignore") or "x"
        self.queries.append((self.emu.user_taps(user_id, message.message_id, data), name))
        self.census.tried[name] += 1

    def _forged_tap(self, user_id: int, world: World) -> None:
        """A datum from the latest flow, from what stays valid, or from anything shown."""
        # What stays valid: the pending broadcast, the victims' redemption codes.
        rng = self.rng
        roll = rng.random()
        if self.hot and roll < 0.35:
            data = rng.choice(self.hot)
        elif roll < 0.5:
            codes = [c for v in self.victim_ids for c in world.codes.get(v, [])]
            standing = [f"bc:ok:{self.broadcast}"]
            standing += [f"red:{action}:{c}" for c in codes for action in ("rety", "ret")]
            data = rng.choice(standing)
        elif roll < 0.6 and (family := [d for d in self.harvest if d.startswith(FAMILY_DATA)]):
            # The family flows' buttons, however many other buttons the menus show by now.
            data = rng.choice(family)
        else:
            data = rng.choice(self.harvest)
        to_mate = TO_MEMBER.match(data)
        if to_mate and int(to_mate[2]) in self._mate_ids(user_id, world):
            # Points to a household mate are the insider's own flow: aim at themself instead.
            data = data.replace(to_mate[0], f"{to_mate[1]}{self.member_id(user_id)}")
        self._tap(user_id, "forged " + _family(data), data)

    def _mate_ids(self, user_id: int, world: World) -> set[int]:
        """The member ids of who shares the user's household now."""
        return {world.members[t].member_id for t in world.mates.get(user_id, ())}

    def _mutated_tap(self, user_id: int, world: World) -> None:
        """Another member's id, a neighbour's id, a cell past the card, or a malformed shape."""
        rng = self.rng
        if not self.mutation_deck:
            self.mutation_deck = rng.sample(sorted(MUTATION_TABLES), len(MUTATION_TABLES))
        target = self.mutation_deck.pop()
        # Sending points to a mate, or a head removing one, is a legitimate flow; anyone else
        # may aim at their mates.
        spare_mates = target.startswith("tr:") or user_id in world.heads
        number = self._foreign_id(user_id, MUTATION_TABLES[target], world, spare_mates)
        shapes = {
            "mall:ok": [
                f"mall:ok:{number}",
                f"mall:ok:{number}:1",
                "mall:ok:-1",
                "mall:ok:１２",
                f"mall:ok:{10**15}",
                f"mall:ok:{number} ",
            ],
            "mall:no": [f"mall:no:{number}", "mall:no:0"],
            "game:spin": [
                f"game:spin:{number}",
                f"game:spin:{number:+d}",
                f"game:buy:{number}",
                f"game:spin:{10**15 - 1}",
            ],
            "game:buy": [f"game:buy:{number}", f"game:spin:{number}", "game:buy:0"],
            "game:sc": [
                f"game:sc:{number}:{rng.randrange(9)}",
                f"game:sc:{number}:9",
                f"game:sc:{number}:-1",
                f"game:sc:{number}:{rng.randrange(9)}:1",
            ],
            "game:all": [f"game:all:{number}", f"game:all:{number}:0"],
            "game:card": [f"game:card:{number}"],
            "fb:a": [f"fb:a:{number}", f"fb:a:{10**12}", "fb:a:0"],
            "fb:r": [f"fb:r:{number}"],
            "bc:ok": [f"bc:ok:{self.broadcast}", f"bc:ok:{number}", f"bc:ok:{'9' * 19}", "bc:ok:"],
            "red:rety": [
                f"red:rety:{rng.choice(['AAAAAAAA', '00000000', '../../x'])}",
                f"red:ret:{'A' * 17}",
                "red:list:-1",
                "red:list:99999999999999999",
            ],
            "hist": ["hist:1", "hist:99999", "hist:-1", "hist:１", f"hist:{10**6}"],
            "sv": [
                f"sv:p:{SURVEY}:0:99",
                f"sv:r:{SURVEY}:2:9",
                f"sv:d:{SURVEY}:3",
                "sv:o:NOPE",
                f"sv:t:{SURVEY}:1:{number % 100}",
                "sv:o:satisfaction_2026h2:1",
            ],
            "mall:deduct": [
                f"mall:deduct:{DEDUCTION_SKU}:{rng.choice([0, 51, 10**6, -5])}",
                f"mall:buy:{DEDUCTION_SKU}:5",
                "mall:buy:NOPE-1",
                "mall:cat:home:99",
                f"mall:item:{'X' * 40}",
            ],
        }
        shapes.update(self._family_shapes(number, world))
        data = rng.choice(shapes[target])
        self._tap(user_id, "mutated " + target, data)

    def _family_shapes(self, number: int, world: World) -> dict[str, list[str]]:
        """Transfer, household and family-birthday taps with another member's ids."""
        rng = self.rng
        points = rng.choice([10, 50, 100, 2000, 2001, 10**14])
        guessed = "".join(rng.choice(TOKEN_ALPHABET) for _ in range(16))
        now = self._now()
        spent = [t for t, _, ends, answered in world.invitations if answered or ends <= now]
        live = [t for t, _, ends, answered in world.invitations if not answered and ends > now]
        codes = [c for _, c, _, _ in world.invitations]
        # A live token with one character changed, a spent one, one that is no token at all.
        tokens = [guessed, f"{number:08d}", "A" * 48, "A" * 49, "../../x_x_x"]
        tokens += [t[:-1] + ("A" if t[-1] != "A" else "B") for t in live[-2:]]
        tokens += spent[-3:] + codes[-2:]
        return {
            "tr:ok": [
                f"tr:ok:{number}",
                f"tr:ok:{number}:1",
                "tr:ok:-1",
                "tr:ok:１",
                f"tr:ok:{10**15}",
                f"tr:ok:{number} ",
            ],
            "tr:no": [f"tr:no:{number}", "tr:no:0"],
            "tr:undo": [f"tr:undo:{number}", f"tr:undo:{number}:0", "tr:undo:-1", "tr:undo:"],
            "tr:to": [f"tr:to:{number}", f"tr:to:{number}:1", "tr:to:0"],
            "tr:amt": [
                f"tr:amt:{number}:{points}",
                f"tr:amt:{number}:0",
                f"tr:amt:{number}:-50",
                f"tr:amt:{number}",
            ],
            "tr:other": [f"tr:other:{number}", f"tr:other:{number}:{points}"],
            "fam:ok": [f"fam:ok:{rng.choice(tokens)}" for _ in range(3)],
            "fam:no": [f"fam:no:{rng.choice(tokens)}"],
            "fam:rm": [
                f"fam:rm:{number}",
                f"fam:rmy:{number}",
                f"fam:rmy:{number}:1",
                "fam:rmy:0",
                "fam:rml",
                "fam:view",
                "fam:lv",
            ],
            "fam:hd": [f"fam:hd:{number}", f"fam:hdy:{number}", "fam:hdl", f"fam:hdy:-{number}"],
            "dep:chg": [f"dep:chg:{number}", f"dep:chg:{'9' * 13}", f"dep:chg:{number}:1"],
            "dep:rm": [f"dep:rm:{number}", "dep:rm:-1", "dep:list:1", "dep:add:1"],
            "dep:rmok": [f"dep:rmok:{number}", f"dep:rmok:{number}:1", "dep:rmok:１"],
        }

    def _foreign_id(self, user_id: int, table: str, world: World, spare_mates: bool) -> int:
        """An existing id of `table` that is not the tapper's own (nor, when `spare_mates`, a
        household mate's), or one far past the end."""
        top = world.highest.get(table, 0)
        own = {user_id, *(world.mates.get(user_id, ()) if spare_mates else ())}
        for _ in range(8):
            number = self.rng.randint(1, top + 1) if top else 1
            if number > top:
                return 10**9 + number  # never created during this burst
            if world.owners.get((table, number)) not in own:
                return number
        return 10**9

    def _staff_command(self, user_id: int, world: World) -> None:
        rng = self.rng
        redeemed = [c for v in self.victim_ids for c in world.codes.get(v, [])][-4:]
        victim = self.code(rng.choice(self.victim_ids))
        own = self.code(user_id) if user_id in self.attacker_ids else victim
        command = rng.choice(STAFF_COMMANDS)
        args = {
            "/purchase": [f"{own} 1000", f"{victim} 100 eco", f"{own} 50000 general R1"],
            "/adjust": [f"{own} 100000 gift", f"{victim} -500 theft", f"{own} +1 x"],
            "/member": [victim, own],
            "/fulfil": ["ABCDEFGH", victim, *redeemed],
            "/stock": ["BAG-01 0", "BOTTLE-01 100000"],
            "/delist": ["BOTTLE-01 gone", "BAG-01"],
            "/broadcast": ["free points for all!", ""],
            "/approve_return": ["ABCDEFGH", *redeemed],
            "/reject_return": ["ABCDEFGH no", *(f"{c} no" for c in redeemed)],
            "/fulfil_prize": ["ABCDEFGH"],
            "/feedback_queue": [""],
            "/survey_stats": [SURVEY, ""],
            "/returns": [""],
            "/cannot_fulfil": ["ABCDEFGH gone", *(f"{c} gone" for c in redeemed)],
            "/dissolve_household": [f"{victim} fuzz", f"{own} mine", victim, ""],
        }[command]
        text = f"{command} {rng.choice(args)}".strip()
        self.emu.user_sends_text(user_id, text)
        self.census.tried["staff command by a member"] += 1

    def _member_command(self, user_id: int, world: World) -> None:
        rng = self.rng
        command = rng.choice(MEMBER_COMMANDS)
        arguments = ["", garbage(rng, 20), "-1", "9" * 40, "１２", "0", "a suggestion long enough"]
        if command == "/join":
            # A guessed code, one spent or expired, a member code, the token for the code.
            now = self._now()
            spent = [(t, c) for t, c, exp, answered in world.invitations if answered or exp <= now]
            arguments += ["".join(rng.choice(family.CODE_ALPHABET) for _ in range(6)), "ABC-DEF"]
            arguments += [c.lower() for _, c in spent[-3:]] + [t for t, _ in spent[-2:]]
            arguments.append(self.code(rng.choice(self.victim_ids)))
        elif command == "/start":
            # An invitation's deep link with a guessed, spent or malformed token.
            now = self._now()
            spent = [t for t, _, ends, answered in world.invitations if answered or ends <= now]
            guessed = "".join(rng.choice(TOKEN_ALPHABET) for _ in range(16))
            arguments += [f"fam_{guessed}", "fam_", f"fam_{'A' * 60}", "fam_../x"]
            arguments += [f"fam_{t}" for t in spent[-2:]]
        argument = rng.choice(arguments)
        self.emu.user_sends_text(user_id, f"{command} {argument}".strip())
        self.census.tried["member command with arguments"] += 1

    def _group_update(self) -> None:
        """A message in a group or a channel; the bot serves private chats only."""
        rng = self.rng
        sender = rng.choice([*self.attacker_ids, *self.victim_ids, ADMIN_ID])
        victim = self.code(rng.choice(self.victim_ids))
        chat = rng.choice(
            [
                {"id": -100123, "type": "supergroup", "title": "群"},
                {"id": -42, "type": "group", "title": "g"},
            ]
        )
        kind = rng.random()
        if kind < 0.15 and "group_kick" in self.enabled:
            self.group_kick(sender)
            return
        if kind < 0.25:
            self.emu.enqueue_raw_update(
                {
                    "channel_post": {
                        "message_id": rng.randint(1, 10**6),
                        "date": self._now(),
                        "chat": {"id": -100999, "type": "channel", "title": "频道"},
                        "text": f"/purchase {victim} 100",
                    }
                }
            )
            self.census.tried["channel post"] += 1
            return
        text = rng.choice(
            [
                f"/purchase {victim} 100",
                f"/purchase@{self.emu.bot_username} {victim} 200 eco",
                f"/adjust {victim} 500 group",
                "/broadcast hi",
                "/start",
                "/mall",
                "/wheel",
                "/balance",
                garbage(rng, 30),
                "/fulfil_prize ABCDEFGH",
                "/feedback_queue",
            ]
        )
        self.emu.enqueue_raw_update(
            {
                "message": {
                    "message_id": rng.randint(1, 10**6),
                    "date": self._now(),
                    "chat": chat,
                    "from": self.emu.user(sender).to_dict()
                    if sender != ADMIN_ID
                    else {"id": ADMIN_ID, "is_bot": False, "first_name": "店员"},
                    "text": text,
                }
            }
        )
        self.census.tried["group message" + (" from staff" if sender == ADMIN_ID else "")] += 1

    def group_kick(self, sender: int) -> None:
        """`sender` removes the bot from a group: nothing about their private chat changes."""
        bot = {**self.emu.bot_user}
        chat = {"id": -100123, "type": "supergroup", "title": "群"}
        who = {"id": sender, "is_bot": False, "first_name": "g"}
        left = self.rng.choice([{"status": "left"}, {"status": "kicked", "until_date": 0}])
        change = {
            "chat": chat,
            "from": who,
            "date": self._now(),
            "old_chat_member": {"user": bot, "status": "member"},
            "new_chat_member": {"user": bot, **left},
        }
        self.emu.enqueue_raw_update({"my_chat_member": change})
        self.census.tried["group: bot removed"] += 1

    def _noise(self, user_id: int) -> None:
        """Random text, the longest message, stickers, photos and edits."""
        rng, emu = self.rng, self.emu
        roll = rng.random()
        mine = [m for m in emu.messages(user_id) if not m.from_bot and m.kind == "text"]
        if roll < 0.4:
            emu.user_sends_text(user_id, garbage(rng))
        elif roll < 0.5:
            emu.user_sends_text(user_id, garbage(rng, 4096)[:4096])
        elif roll < 0.65:
            emu.user_sends_sticker(user_id)
        elif roll < 0.75:
            emu.user_sends_photo(user_id, rng.choice([None, "/purchase 1 1"]))
        elif roll < 0.85:
            prefix = rng.choice(
                [
                    "menu:",
                    "lang:",
                    "hist:",
                    "mall:",
                    "mall:ok:",
                    "red:",
                    "set:",
                    "game:",
                    "game:sc:",
                    "sv:",
                    "fb:",
                    "bc:",
                    "tr:",
                    "tr:ok:",
                    "fam:",
                    "fam:ok:",
                    "dep:",
                    "x",
                ]
            )
            self._tap(user_id, "garbage callback data", prefix + garbage(rng, 30).replace(" ", ""))
            return
        elif mine:
            # An edited command must not redo it (and an edit is never a new one).
            emu.user_edits_text(
                user_id,
                rng.choice(mine).message_id,
                f"/adjust {self.code(self.victim_ids[0])} 900 x",
            )
        else:
            emu.user_sends_text(user_id, "/start")
        self.census.tried["noise"] += 1

    def _now(self) -> int:
        return int(self.sandbox.services.clock().timestamp())

    # --- legitimate flows -----------------------------------------------------------------------

    def _data_on(self, message_id: int, prefix: str, user_id: int = ADMIN_ID) -> str:
        """The callback data starting with `prefix` on a message as it is now."""
        message = self.emu.message(user_id, message_id)
        assert message is not None, f"message {message_id} is gone"
        found = [
            b.callback_data
            for row in message.keyboard
            for b in row
            if b.callback_data and b.callback_data.startswith(prefix)
        ]
        assert found, f"no {prefix!r} button on {message.text!r}"
        return found[0]

    def _last_own_message(self, user_id: int, text: str) -> SandboxMessage:
        for message in reversed(self.emu.messages(user_id)):
            if not message.from_bot and message.text == text:
                return message
        raise AssertionError(f"{text!r} is not in the chat")

    async def till(self, text: str) -> tuple[str, int]:
        """The operator sends a command; (the reply's message id, the command's message id)."""
        replies = await self.admin.send(text, timeout=30)
        message = self._last_own_message(ADMIN_ID, text)
        kinds = [self.kinds.kind(r.text) for r in replies if r.kind != "callback_answer"]
        assert "error.internal" not in kinds, f"{text!r} -> {kinds}"
        return kinds[0], message.message_id

    async def legit_purchase(self) -> None:
        """A purchase at the till: well-formed, mistyped, replayed or with a stranger's code."""
        rng = self.rng
        victim = rng.choice(self.victim_ids)
        code = self.code(victim)
        category = rng.choice([None, "general", "eco", "refill"])
        roll = rng.random()
        amount = Decimal(0)  # what the cashier meant, when the amount is to be booked
        if roll < 0.45:
            amount_text = rng.choice(
                [
                    *GOOD_AMOUNTS,
                    str(rng.randint(1, 3000)),
                    f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}",
                ]
            )
            amount = Decimal(amount_text.translate(FULL_WIDTH_DIGITS))
            while self._typed_before(victim, amount, category):  # a fresh one, then
                amount_text = f"{rng.randint(1, 49999)}.{rng.randint(0, 99):02d}"
                amount = Decimal(amount_text)
            name = "purchase: good amount"
            code_text = rng.choice([code, code, dashed(code, rng)])
        elif roll < 0.62:
            amount_text, name, code_text = rng.choice(REFUSED_AMOUNTS), "refused amount", code
        elif roll < 0.7 and "overflow_amount" in self.enabled:
            amount_text, name, code_text = rng.choice(OVERFLOW_AMOUNTS), "overflow amount", code
        elif roll < 0.76 and "lenient_amount" in self.enabled:
            amount_text, name, code_text = rng.choice(LENIENT_AMOUNTS), "lenient amount", code
        elif roll < 0.86:
            target = rng.choice([*self.victim_ids, *self.attacker_ids])
            flaw, code_text = rng.choice(sorted(code_variants(self.code(target)).items()))
            amount_text, name = "100", f"code: {flaw}"
        elif roll < 0.92:
            await self._unsure_purchase(victim, category)
            return
        else:
            await self._receipt_purchase(victim, category)
            return
        name = name if name.startswith("purchase") else "purchase: " + name
        text = f"/purchase {code_text} {amount_text}" + (f" {category}" if category else "")
        kind, message_id = await self.till(text)
        self.census.tried[name] += 1
        self.census.answers[(name, kind)] += 1
        entry = await self._booked(f"purchase:tg:{ADMIN_ID}:{message_id}")
        if not amount:
            assert kind != "admin.purchase.done" and entry is None, f"{text!r} booked {entry}"
            return
        points = purchase_points(amount, category)
        assert kind == "admin.purchase.done", f"{text!r} -> {kind}"
        assert entry == (self.member_id(victim), "purchase", points), (text, entry)
        self._book(victim, "purchase", points)
        self.tills.add((victim, amount, category or "general"))
        self.census.legitimate["purchase"] += 1

    def _typed_before(self, victim: int, amount: Decimal, category: str | None) -> bool:
        """Whether the same purchase without a receipt was typed today, or it earns nothing."""
        # Issue 15 item 7 has a retyped purchase confirmed with a button before it is booked.
        return (victim, amount, category or "general") in self.tills or (
            purchase_points(amount, category) < 1
        )

    def _book(self, victim: int, kind: str, points: int) -> None:
        """The model books a legitimate operation of `points` (negative: a debit)."""
        self.model[victim].balance += points
        self.model[victim].kinds[kind] += 1

    async def refused_purchase(self, victim: int, amount: str) -> None:
        """The operator enters an amount the specification refuses: nothing is booked."""
        text = f"/purchase {self.code(victim)} {amount}"
        kind, message_id = await self.till(text)
        entry = await self._booked(f"purchase:tg:{ADMIN_ID}:{message_id}")
        assert kind != "admin.purchase.done" and entry is None, f"{text!r} booked {entry}"

    def member_id(self, user_id: int) -> int:
        """The member id behind a Telegram id."""
        assert self.start is not None
        return self.start.members[user_id].member_id

    async def _booked(self, key: str) -> tuple[int, str, int] | None:
        return await self.sandbox.services.store.read(lambda conn: booked(conn, key))

    async def _unsure_purchase(self, victim: int, category: str | None) -> None:
        """What the specification leaves open: refused, or exactly what the cashier meant."""
        rng = self.rng
        if rng.random() < 0.5:
            amount_text, amount = rng.choice(sorted(UNSURE_AMOUNTS.items()))
            code_text, name = self.code(victim), "purchase: unsure amount"
        else:
            amount = Decimal(rng.randint(3001, 4000))
            amount_text, code_text = str(amount), unsure_code(self.code(victim))
            name = "purchase: full-width code"
        if self._typed_before(victim, amount, category):
            return
        text = f"/purchase {code_text} {amount_text}" + (f" {category}" if category else "")
        kind, message_id = await self.till(text)
        self.census.tried[name] += 1
        self.census.answers[(name, kind)] += 1
        entry = await self._booked(f"purchase:tg:{ADMIN_ID}:{message_id}")
        if entry is not None:
            points = purchase_points(amount, category)
            assert entry == (self.member_id(victim), "purchase", points), (text, entry)
            self._book(victim, "purchase", points)
            self.tills.add((victim, amount, category or "general"))

    async def _receipt_purchase(self, victim: int, category: str | None) -> None:
        """A receipt booked once: the same receipt again is a replay, a different one a conflict."""
        rng = self.rng
        if self.receipts and rng.random() < 0.6:
            receipt, (owner, amount, cat) = rng.choice(sorted(self.receipts.items()))
            if rng.random() < 0.5:
                name, text = (
                    "purchase: receipt replayed",
                    f"/purchase {self.code(owner)} {amount} {cat or 'general'} {receipt}",
                )
            else:
                name, text = (
                    "purchase: receipt reused",
                    f"/purchase {self.code(victim)} {amount + 1} {cat or 'general'} {receipt}",
                )
            kind, _ = await self.till(text)
            self.census.tried[name] += 1
            self.census.answers[(name, kind)] += 1
            assert kind != "admin.purchase.done", f"{text!r} booked again"
            return
        receipt = f"R{rng.randrange(10**9)}"
        amount = Decimal(rng.randint(1, 2000))
        text = f"/purchase {self.code(victim)} {amount} {category or 'general'} {receipt}"
        kind, _ = await self.till(text)
        points = purchase_points(amount, category)
        assert kind == "admin.purchase.done", f"{text!r} -> {kind}"
        entry = await self._booked(f"purchase:{receipt}")
        assert entry == (self.member_id(victim), "purchase", points), (text, entry)
        self.receipts[receipt] = (victim, amount, category)
        self._book(victim, "purchase", points)
        self.census.legitimate["purchase with receipt"] += 1

    async def legit_adjust(self) -> None:
        """An operator's correction: well-formed, near-valid, or more than the member holds."""
        rng = self.rng
        victim = rng.choice(self.victim_ids)
        model = self.model[victim]
        roll = rng.random()
        delta: int | None = None
        unsure: int | None = None
        if roll < 0.4:
            delta = rng.choice([rng.randint(1, 500), -rng.randint(1, 300)])
            delta_text = rng.choice([f"{delta:+d}", str(delta)])
            name = "adjust: good"
        elif roll < 0.5:
            taken = model.balance + rng.randint(1, 50)
            delta_text = f"-{taken}"
            held = taken <= MAX_ADJUSTMENT
            name = "adjust: more than held" if held else "adjust: over the limit"
        elif roll < 0.85:
            delta_text = rng.choice(
                [
                    "0",
                    "-0",
                    "1e400",
                    "9" * 200,
                    "NaN",
                    "inf",
                    "0.001",
                    "1,000",
                    "100001",
                    "-100001",
                    "1.5",
                    "",
                    "五",
                    "1e3",
                ]
            )
            name = "adjust: refused points"
        else:
            delta_text, unsure = rng.choice([("１００", 100), ("－20", -20), ("٣", 3)])
            name = "adjust: unsure points"
        reason = rng.choice(["goodwill", "till error 收银错误", "返还", "", "x" * 201])
        code = rng.choice([self.code(victim), dashed(self.code(victim), rng)])
        text = f"/adjust {code} {delta_text} {reason}".strip()
        kind, message_id = await self.till(text)
        self.census.tried[name] += 1
        self.census.answers[(name, kind)] += 1
        entry = await self._booked(f"adjust:tg:{ADMIN_ID}:{message_id}")
        if delta is not None and (not reason or len(reason) > 200 or model.balance + delta < 0):
            delta = None
        if unsure is not None and entry is not None:
            delta = unsure
        if delta is None:
            assert entry is None, f"{text!r} booked {entry} ({kind})"
            return
        assert entry == (self.member_id(victim), "adjust", abs(delta)), (text, entry, kind)
        self._book(victim, "adjust", delta)
        self.census.legitimate["adjust"] += 1

    async def legit_member_lookup(self) -> None:
        """/member with a near-valid code: read-only, whatever it says."""
        target = self.rng.choice([*self.victim_ids, *self.attacker_ids])
        flaw, code = self.rng.choice(sorted(code_variants(self.code(target)).items()))
        kind, _ = await self.till(f"/member {code}")
        self.census.tried[f"member lookup: code {flaw}"] += 1
        self.census.answers[(f"member lookup: code {flaw}", kind)] += 1

    async def ask(self, user_id: int, text: str) -> list[BotEvent]:
        """A victim sends `text`; the bot's answer (a notice pushed meanwhile is left out)."""
        start = self.emu.event_count(user_id)

        def answers() -> list[BotEvent]:
            return [
                e
                for e in self.emu.events(user_id, after=start)
                if e.kind != "callback_answer" and self.kinds.kind(e.text) not in NOTICES
            ]

        self.emu.user_sends_text(user_id, text)
        await self.emu.wait_for(user_id, lambda: bool(answers()), 30)
        await self.quiet(user_id)
        return answers()

    async def quiet(self, user_id: int) -> None:
        """Wait until the bot has said nothing more in the chat for a moment."""
        emu = self.emu

        def said_more(seen: int) -> Callable[[], bool]:
            return lambda: emu.event_count(user_id) > seen

        while True:
            try:
                await emu.wait_for(user_id, said_more(emu.event_count(user_id)), QUIET)
            except TimeoutError:
                return

    async def _photo_after(self, user_id: int, before: int) -> None:
        """Wait for the photo a step sends last (a wheel, a voucher's QR)."""
        events = self.emu.events
        await self.emu.wait_for(
            user_id, lambda: any(e.kind == "photo" for e in events(user_id, after=before)), 30
        )

    async def _tap_own(
        self, user_id: int, message_id: int, data: str, settle: Callable[[], bool] | None = None
    ) -> str:
        """A victim taps a button of their own; the toast's kind."""
        client = self.clients[user_id]
        await client.tap_data(message_id, data, expect=0, timeout=30)
        if settle is not None:
            await self.emu.wait_for(user_id, settle, 30)
            await self.quiet(user_id)
        return self.kinds.kind(client.last_callback_answer)

    async def _move_clock(self, minutes: int) -> bool:
        if self.clock_moves >= MAX_CLOCK_MOVES:
            return False
        self.clock_moves += 1
        now = self.sandbox.services.clock() + timedelta(minutes=minutes)
        self.sandbox.services.clock = lambda: now
        return True

    async def legit_redemption(self) -> None:
        """/mall, Redeem, attackers in between, then Confirm (maybe twice), Cancel, or too late."""
        rng = self.rng
        victim = rng.choice(self.victim_ids)
        model, client = self.model[victim], self.clients[victim]
        sku = rng.choice([*ITEMS, DEDUCTION_SKU])
        if sku == DEDUCTION_SKU:
            yuan = rng.choice([1, 5, 10, 20, 50])
            price, limit, data = yuan * DEDUCTION_RATE, None, f"mall:deduct:{sku}:{yuan}"
        else:
            (price, limit), data = ITEMS[sku], f"mall:buy:{sku}"
        # A push (a suggestion approved) may arrive in between: find the mall by its buttons.
        home = _with_button(await self.ask(victim, "/mall"), "mall:cat:")
        self.census.legitimate["mall opened"] += 1
        # The points are looked at first (the spend's plan), then the limit (the offer).
        if model.balance < price:
            await client.tap_data(home.message_id, data, expect=1, timeout=30)
            assert not self._offered(victim, home.message_id)
            self.census.legitimate["redemption short of points"] += 1
            return
        if limit is not None and model.redeemed(sku) >= limit:
            kind = await self._tap_own(victim, home.message_id, data)
            assert kind == "mall.limit_reached", kind
            self.census.legitimate["redemption over the limit"] += 1
            return
        await self._tap_own(
            victim, home.message_id, data, lambda: self._offered(victim, home.message_id)
        )
        ok = self._data_on(home.message_id, "mall:ok:", victim)
        self.hot = [ok, ok.replace(":ok:", ":no:")]
        await self.burst(self.rng.randint(5, 15))
        await self.check()
        roll = rng.random()
        if roll < 0.15 and await self._move_clock(OFFER_MINUTES + 1):
            kind = await self._tap_own(victim, home.message_id, ok)
            assert kind == "button.expired", kind
            self.census.legitimate["stale confirmation"] += 1
            return
        if roll < 0.3:
            await self._tap_own(victim, home.message_id, ok.replace(":ok:", ":no:"))
            self.census.legitimate["offer cancelled"] += 1
            return
        done = len(self.emu.events(victim))
        await client.tap_data(home.message_id, ok, expect=1, timeout=30)
        await self._photo_after(victim, done)
        self._book(victim, "redeem", -price)
        model.redemptions.append((sku, "issued", price))
        self.sold[sku] += 1
        self.census.legitimate["redemption"] += 1
        if rng.random() < 0.4:
            kind = await self._tap_own(victim, home.message_id, ok)
            assert kind == "mall.already_redeemed", kind
            self.census.legitimate["redemption tapped twice"] += 1

    def _offered(self, victim: int, message_id: int) -> bool:
        return any(d.startswith("mall:ok:") for d in _datas(self.emu.message(victim, message_id)))

    async def legit_spin(self) -> None:
        """/wheel, attackers at the Spin button, then the spin (or too late), then a double tap."""
        victim = self.rng.choice(self.victim_ids)
        model, client = self.model[victim], self.clients[victim]
        played = model.played_today("wheel")
        cost = 0 if played < WHEEL_FREE else WHEEL_COST
        replies = await self.ask(victim, "/wheel")
        offered = [
            (r.message_id, d)
            for r in replies
            for d in _datas_of(r.keyboard)
            if d.startswith("game:spin:")
        ]
        if played >= WHEEL_LIMIT or model.balance < cost:
            assert not offered, f"a Spin button with {played} plays and {model.balance} points"
            return
        assert offered, f"no Spin button: {[r.text for r in replies]}"
        [(message, data)] = offered
        spin = [data]
        self.hot = [data]
        await self.burst(self.rng.randint(5, 15))
        await self.check()
        if self.rng.random() < 0.15 and await self._move_clock(OFFER_MINUTES + 1):
            kind = await self._tap_own(victim, message, spin[0])
            assert kind == "button.expired", kind
            self.census.legitimate["stale spin"] += 1
            return
        before = len(self.emu.events(victim))
        await client.tap_data(message, spin[0], expect=1, timeout=30)
        await self._photo_after(victim, before)
        prize = await self._newest_prize(victim, "wheel", cost, WHEEL_PRIZES)
        if cost:
            self._book(victim, "game_play", -cost)
        if prize:
            self._book(victim, "game", prize)
        model.plays.append(("wheel", cost, 0, True))
        self.census.legitimate["spin"] += 1
        if self.rng.random() < 0.4:
            kind = await self._tap_own(victim, message, spin[0])
            assert kind == "games.already_played", kind

    async def _newest_prize(self, victim: int, game: str, cost: int, prizes: frozenset[int]) -> int:
        world = await self.read()
        held = world.members[victim]
        assert held.plays and held.plays[-1][:2] == (game, cost), held.plays[-1:]
        prize = held.prizes[-1]
        assert prize in prizes, prize
        return prize

    async def legit_scratch(self) -> None:
        """/scratch, Buy, attackers at the card's cells, one cell, then "scratch all"."""
        victim = self.rng.choice(self.victim_ids)
        model, client = self.model[victim], self.clients[victim]
        replies = await self.ask(victim, "/scratch")
        offered = [
            (r.message_id, d)
            for r in replies
            for d in _datas_of(r.keyboard)
            if d.startswith("game:buy:")
        ]
        if model.played_today("scratch") >= SCRATCH_LIMIT or model.balance < SCRATCH_COST:
            assert not offered, f"a Buy button with {model.plays} and {model.balance} points"
            return
        assert offered, [r.text for r in replies]
        [(message, data)] = offered
        buy = [data]
        before = len(self.emu.events(victim))

        def new_card() -> list[str]:
            return [
                d
                for e in self.emu.events(victim, after=before)
                for d in _datas_of(e.keyboard)
                if d.startswith("game:all:")
            ]

        await client.tap_data(message, data, expect=1, timeout=30)
        await self.emu.wait_for(victim, lambda: bool(new_card()), 30)
        card_id = int(new_card()[0].split(":")[2])
        card = next(
            e
            for e in self.emu.events(victim, after=before)
            if f"game:all:{card_id}" in _datas_of(e.keyboard)
        )
        self._book(victim, "game_play", -SCRATCH_COST)
        model.plays.append(("scratch", SCRATCH_COST, 0, False))
        self._collect_harvest()
        self.hot = [f"game:sc:{card_id}:{cell}" for cell in range(9)] + [
            f"game:all:{card_id}",
            buy[0],
        ]
        await self.burst(self.rng.randint(5, 15))
        await self.check()  # nobody else scratched the card
        cell = self.rng.randrange(9)
        await self._tap_own(victim, card.message_id, f"game:sc:{card_id}:{cell}")
        model.plays[-1] = ("scratch", SCRATCH_COST, 1 << cell, False)
        await self.burst(self.rng.randint(5, 15))
        await self.check()
        await self._tap_own(victim, card.message_id, f"game:all:{card_id}")
        world = await self.read()
        scratched = world.members[victim].plays[-1][2]
        prize = await self._newest_prize(victim, "scratch", SCRATCH_COST, SCRATCH_PRIZES)
        model.plays[-1] = ("scratch", SCRATCH_COST, scratched, True)
        if prize:
            self._book(victim, "game", prize)
        self.census.legitimate["scratch card"] += 1

    async def legit_survey(self) -> None:
        """A victim answers the whole benefits survey by its buttons: paid once."""
        candidates = [v for v in self.victim_ids if SURVEY not in self.model[v].completed_surveys]
        if not candidates:
            return
        victim = self.rng.choice(candidates)
        listing = _with_button(await self.ask(victim, "/surveys"), f"sv:o:{SURVEY}")
        message = listing.message_id
        steps = [
            f"sv:o:{SURVEY}",
            f"sv:p:{SURVEY}:0:1",
            f"sv:t:{SURVEY}:1:0",
            f"sv:t:{SURVEY}:1:3",
            f"sv:d:{SURVEY}:1",
            f"sv:r:{SURVEY}:2:4",
            f"sv:s:{SURVEY}:3",
        ]
        for number, data in enumerate(steps):
            kind = await self._tap_own(victim, message, data, lambda: True)
            assert kind == "(silent)", (data, kind)
            if number == 2:
                self._collect_harvest()
                await self.burst(self.rng.randint(5, 15))
        await self.quiet(victim)
        self._book(victim, "survey", SURVEY_REWARD)
        self.model[victim].completed_surveys.append(SURVEY)
        self.census.legitimate["survey completed"] += 1

    async def legit_suggestion(self) -> None:
        """A victim files a suggestion; the operator approves the victims' and rejects the rest."""
        victim = self.rng.choice(self.victim_ids)
        model = self.model[victim]
        if model.pending + model.approved < 3:
            await self.ask(
                victim, f"/feedback Suggestion {self.rng.randrange(10**6)}: more refills"
            )
            model.pending += 1
        if self.rng.random() < 0.5:
            return
        world = await self.read()
        pending = sum(
            1
            for held in world.members.values()
            for status, _ in held.feedback
            if status == "pending"
        )
        queue = await self.admin.send("/feedback_queue", expect=1 + min(5, pending), timeout=30)
        codes = {self.code(v): v for v in self.victim_ids}
        decisions = []
        for reply in queue:
            datas = _datas_of(reply.keyboard)
            approve = next((d for d in datas if d.startswith("fb:a:")), None)
            if approve is not None:
                text = (reply.text or "").replace(" ", "")
                owner = next((v for c, v in codes.items() if c in text), None)
                decisions.append((reply.message_id, approve, owner))
        # The attackers see the Approve buttons of pending suggestions before the operator
        # decides: a forged approval would pay (or mark) one.
        self.hot = [
            data for _, approve, _ in decisions for data in (approve, approve.replace(":a:", ":r:"))
        ]
        await self.burst(self.rng.randint(5, 15))
        await self.check()
        for message_id, approve, owner in decisions:
            data = approve if owner is not None else approve.replace("fb:a:", "fb:r:")
            await self.admin.tap_data(message_id, data, expect=1, timeout=30)
            self.census.legitimate["suggestion approved" if owner else "suggestion rejected"] += 1
            if owner is not None:
                self._book(owner, "feedback", FEEDBACK_REWARD)
                self.model[owner].approved += 1
                self.model[owner].pending -= 1

    async def legit_browse(self) -> None:
        """/history and /redemptions with a return asked and left: buttons for the harvest."""
        victim = self.rng.choice(self.victim_ids)
        replies = await self.ask(victim, self.rng.choice(["/history", "/redemptions", "/card"]))
        listing = replies[-1]
        ret = [d for d in _datas_of(listing.keyboard) if d.startswith("red:ret:")]
        if ret:
            await self._tap_own(
                victim,
                listing.message_id,
                ret[0],
                lambda: any(
                    d.startswith("red:rety:")
                    for d in _datas(self.emu.message(victim, listing.message_id))
                ),
            )
            self.hot = [ret[0].replace(":ret:", ":rety:")]
        self.census.legitimate["browsing"] += 1

    # --- issue 20: transfers, households, family birthdays -------------------------------

    async def _step(self, user_id: int, message_id: int, data: str) -> list[BotEvent]:
        """A victim taps a button of their own; what the bot sent or edited for it."""
        start = self.emu.event_count(user_id)

        def answers() -> list[BotEvent]:
            return [
                e
                for e in self.emu.events(user_id, after=start)
                if e.kind in ("message", "edit", "photo") and self.kinds.kind(e.text) not in NOTICES
            ]

        self.emu.user_taps(user_id, message_id, data)
        await self.emu.wait_for(user_id, lambda: bool(answers()), 30)
        await self.quiet(user_id)
        return answers()

    def _said(self, events: list[BotEvent]) -> list[str]:
        return [self.kinds.kind(e.text) for e in events]

    async def _settle_family(self) -> None:
        """The victims' household rows as their legitimate steps just left them."""
        # Called after a check and the victims' own steps only (each done when its reply
        # came): no attacker's input is in flight, so nothing read here is theirs.
        world = await self.read()
        for user_id in self.victim_ids:
            self.model[user_id].family = world.members[user_id].family
            self.model[user_id].shares = world.members[user_id].shares
        for user_id in self.insiders:
            self.settled[user_id] = world.members[user_id].family

    async def legit_transfer(self) -> None:
        """/transfer to the household partner by a button or a typed amount, attackers at the
        confirmation, then Confirm (maybe twice), Cancel or too late; attackers at the undo,
        then maybe the undo."""
        rng = self.rng
        if not self.household:
            return
        sender, recipient = rng.sample(self.household, 2)
        await self.check()
        picker = _with_button(await self.ask(sender, "/transfer"), "tr:to:")
        to = self.member_id(recipient)
        shown = await self._step(sender, picker.message_id, f"tr:to:{to}")
        amounts = [d for e in shown for d in _datas_of(e.keyboard) if d.startswith("tr:amt:")]
        if not amounts:  # today's limits are used up, or the points are held back
            assert not set(self._said(shown)) & {"(unclassified)"}, shown
            self.census.legitimate["transfer refused"] += 1
            return
        view = _with_button(shown, "tr:amt:")
        data = rng.choice(amounts)
        points = int(data.rsplit(":", 1)[1])
        if rng.random() < 0.3:
            await self._step(sender, view.message_id, f"tr:other:{to}")
            typed = rng.choice([str(points), f"{points} 积分", unsure_code(str(points))])
            confirmation = _with_button(await self.ask(sender, typed), "tr:ok:")
        else:
            confirmation = _with_button(await self._step(sender, view.message_id, data), "tr:ok:")
        message = confirmation.message_id
        ok = next(d for d in _datas_of(confirmation.keyboard) if d.startswith("tr:ok:"))
        await self._settle_family()  # the offer is the sender's
        self.hot = [ok, ok.replace(":ok:", ":no:")]
        await self.burst(rng.randint(3, 10))
        await self.check()
        roll = rng.random()
        if roll < 0.15 and await self._move_clock(OFFER_MINUTES + 1):
            said = self._said(await self._step(sender, message, ok))
            assert said == ["transfer.offer_expired"], said
            self.census.legitimate["stale transfer"] += 1
            return
        if roll < 0.3:
            said = self._said(await self._step(sender, message, ok.replace(":ok:", ":no:")))
            assert said == ["transfer.cancelled"], said
            self.census.legitimate["transfer cancelled"] += 1
            return
        said = self._said(await self._step(sender, message, ok))
        assert said == ["transfer.done"], said
        self._book(sender, "transfer", -points)
        self.model[recipient].balance += points
        self.census.legitimate["transfer"] += 1
        await self._settle_family()
        if rng.random() < 0.3:
            kind = await self._tap_own(sender, message, ok)
            assert kind == "transfer.already_done", kind
            self.census.legitimate["transfer tapped twice"] += 1
        undo = self._data_on(message, "tr:undo:", sender)
        self.hot = [undo, ok]
        await self.burst(rng.randint(3, 10))
        await self.check()
        if rng.random() < 0.4:
            said = self._said(await self._step(sender, message, undo))
            assert said == ["transfer.undone"], said
            self._book(sender, "transfer_undo", points)
            self.model[recipient].balance -= points
            self.census.legitimate["transfer undone"] += 1
            await self._settle_family()

    async def legit_household(self) -> None:
        """The head's removal or hand-over left at its second tap (attackers at it); now and
        then an invitation the lone victim declines, or takes and leaves again."""
        rng = self.rng
        if not self.household:
            return
        head, partner = self.household
        await self.check()
        home = _with_button(await self.ask(head, "/family"), "fam:lv")
        message, mate = home.message_id, self.member_id(partner)
        action = rng.choice(["rm", "hd"])
        _with_button(await self._step(head, message, f"fam:{action}l"), f"fam:{action}:")
        _with_button(await self._step(head, message, f"fam:{action}:{mate}"), f"fam:{action}y:")
        self._collect_harvest()
        self.hot = [f"fam:rmy:{mate}", f"fam:hdy:{mate}", f"fam:{action}:{mate}"]
        await self.burst(rng.randint(3, 10))
        await self.check()
        _with_button(await self._step(head, message, "fam:view"), "fam:lv")
        self.census.legitimate["household: removal left"] += 1
        if rng.random() < 0.5:
            return
        [invitation] = await self._step(head, message, "fam:inv")
        found = re.search(r"/join (\S+)", invitation.text or "")
        assert found, invitation.text
        await self._settle_family()
        outsider = self.victim_ids[2]
        offer = _with_button(await self.ask(outsider, f"/join {found[1]}"), "fam:ok:")
        self.hot = [f"fam:rmy:{self.member_id(outsider)}"]
        await self.burst(rng.randint(3, 10))
        await self.check()
        ok = next(d for d in _datas_of(offer.keyboard) if d.startswith("fam:ok:"))
        if rng.random() < 0.5:
            no = ok.replace(":ok:", ":no:")
            said = self._said(await self._step(outsider, offer.message_id, no))
            assert said == ["family.declined"], said
            self.census.legitimate["invitation declined"] += 1
            await self._settle_family()
            return
        await self._step(outsider, offer.message_id, ok)
        await self._settle_family()
        together = {head, partner, *self.insiders}
        assert (await self.read()).mates.get(outsider) == together, "not joined"
        self.census.legitimate["invitation accepted"] += 1
        # The head's view now has the newcomer's buttons: the attackers see them.
        await self.ask(head, "/family")
        self._collect_harvest()
        await self.burst(rng.randint(3, 10))
        await self.check()
        away = _with_button(await self.ask(outsider, "/family"), "fam:lv")
        _with_button(await self._step(outsider, away.message_id, "fam:lv"), "fam:lvy")
        said = self._said(await self._step(outsider, away.message_id, "fam:lvy"))
        assert said == ["family.left"], said
        self.census.legitimate["household left"] += 1
        await self._settle_family()

    async def legit_birthdays(self) -> None:
        """Family birthdays in /settings: a removal left at its confirmation (attackers at it),
        then confirmed or not; or a child or pet added by typing its name and birthday."""
        rng = self.rng
        victim = rng.choice(self.victim_ids)
        await self.check()
        settings = _with_button(await self.ask(victim, "/settings"), "dep:list")
        message = settings.message_id
        listing = _with_button(await self._step(victim, message, "dep:list"), "dep:add")
        removable = [d for d in _datas_of(listing.keyboard) if d.startswith("dep:rm:")]
        if removable and rng.random() < 0.6:
            remove = rng.choice(removable)
            _with_button(await self._step(victim, message, remove), "dep:rmok:")
            confirm = remove.replace(":rm:", ":rmok:")
            self._collect_harvest()
            self.hot = [confirm, remove.replace(":rm:", ":chg:")]
            await self.burst(rng.randint(3, 10))
            await self.check()
            if rng.random() < 0.5:
                said = self._said(await self._step(victim, message, confirm))
                assert said == ["dep.removed"], said
                self.census.legitimate["child or pet removed"] += 1
                await self._settle_family()
            else:
                await self._step(victim, message, "dep:list")
            return
        if len(removable) >= 3:
            return
        _with_button(await self._step(victim, message, "dep:add"), "dep:kind:")
        kind = rng.choice(["child", "pet"])
        await self._step(victim, message, f"dep:kind:{kind}")
        await self.ask(victim, f"{kind.title()} {rng.randrange(10**6)}")
        self._collect_harvest()
        await self.burst(rng.randint(3, 10))
        await self.check()  # a name typed halfway is no attacker's to finish
        birthday = f"{rng.randint(4, 8)}-{rng.randint(1, 28)}"
        said = self._said(await self.ask(victim, birthday))
        # Saving may also earn a badge, announced with it (in either order); and a push the
        # outbox sends meanwhile (a task of an earlier step done) may arrive in between.
        assert "dep.saved" in said and all(
            k == "dep.saved" or k.startswith(("badges.", "tasks.notice_")) for k in said
        ), said
        self.census.legitimate["child or pet added"] += 1
        await self._settle_family()

    async def finish(self) -> World:
        """The operator cancels the broadcast nobody else could send; the last check."""
        await self.drain()
        assert self.broadcast is not None
        preview = next(
            m for m in self.emu.messages(ADMIN_ID) if f"bc:no:{self.broadcast}" in _datas(m)
        )
        await self.admin.tap_data(
            preview.message_id, f"bc:no:{self.broadcast}", expect=1, timeout=30
        )
        return await self.check()

    async def run(self, budget: int) -> World:
        """Legitimate flows in a seeded order, a burst of hostile input after each."""
        flows = [
            (self.legit_purchase, 6),
            (self.legit_adjust, 3),
            (self.legit_member_lookup, 1),
            (self.legit_redemption, 4),
            (self.legit_spin, 3),
            (self.legit_scratch, 2),
            (self.legit_survey, 1),
            (self.legit_suggestion, 2),
            (self.legit_browse, 2),
            (self.legit_transfer, 2),
            (self.legit_household, 1),
            (self.legit_birthdays, 1),
        ]
        names = [flow for flow, weight in flows for _ in range(weight)]
        tills = [
            self.legit_purchase,
            self.legit_purchase,
            self.legit_adjust,
            self.legit_member_lookup,
        ]
        rounds = 0
        while self.census.hostile < budget:
            await self.rng.choice(names)()
            if self.rng.random() < 0.7:  # the till is busy: the parsers get most of the typos
                await self.rng.choice(tills)()
            await self.burst(self.rng.randint(3, 12))
            rounds += 1
            if rounds % 10 == 0:
                await self.check()
        return await self.finish()


def _longest(entry: tuple[int, str, re.Pattern[str]]) -> int:
    """The most specific template first: the one with the most literal text."""
    return -entry[0]


def _chat_id(params: dict[str, object]) -> int:
    value = params.get("chat_id")
    return value if isinstance(value, int) else 0


def _family(data: str) -> str:
    """A callback datum's family for the census: "mall:ok", "game:sc", "hist"..."""
    parts = data.split(":")
    return (
        ":".join(parts[:2])
        if parts[0] in ("mall", "game", "red", "fb", "bc", "sv", "set", "tr", "fam", "dep")
        else parts[0]
    )


def _datas_of(keyboard: Iterable[Iterable[object]]) -> list[str]:
    return [
        str(getattr(b, "callback_data", ""))
        for row in keyboard
        for b in row
        if getattr(b, "callback_data", None)
    ]


def _with_button(replies: list[BotEvent], prefix: str) -> BotEvent:
    """The reply that carries a button whose data starts with `prefix`."""
    found = [r for r in replies if any(d.startswith(prefix) for d in _datas_of(r.keyboard))]
    assert found, f"no {prefix!r} button in {[r.text for r in replies]}"
    return found[-1]


def _datas(message: SandboxMessage | None) -> list[str]:
    return [] if message is None else _datas_of(message.keyboard)
