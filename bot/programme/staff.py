"""Who on the staff may do what: the one permission table every staff command and button is
checked against, and that staff /help is generated from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

from bot.config import Config, Role, StaffMember
from bot.i18n import N_
from bot.programme.errors import RuleError

# What a staff member may be allowed to do; each staff action needs exactly one of these.
Permission = Literal[
    "purchases",  # award purchases at the till
    "purchase_returns",  # take a refunded purchase's points back
    "member_lookup",  # look a member up by code
    "fulfil",  # hand over redeemed goods (a partner: only in its scope)
    "prizes",  # accept game prize vouchers at the till (a prize has no SKU: no partner's)
    "stock",  # restock the mall (a partner: only in its scope)
    "catalog",  # delist items
    "returns",  # returned goods and orders that cannot be honoured
    "broadcasts",  # messages to every member
    "queues",  # the feedback, shares and reviews queues
    "stats",  # survey and event figures
    "events",  # create check-in events
    "households",  # dissolve a household
    "adjust",  # correct a member's points by hand
    "plans",  # key customers and their personal plans
    "reports",  # the monthly report and the points liability
    "policy",  # api keys and other changes to how the programme runs
]
PERMISSIONS: Final[tuple[Permission, ...]] = get_args(Permission)

ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    "owner": frozenset(PERMISSIONS),
    "manager": frozenset(
        {
            "purchases",
            "purchase_returns",
            "member_lookup",
            "fulfil",
            "prizes",
            "stock",
            "catalog",
            "returns",
            "broadcasts",
            "queues",
            "stats",
            "events",
        }
    ),
    "cashier": frozenset({"purchases", "purchase_returns", "member_lookup", "fulfil", "prizes"}),
    "partner": frozenset({"fulfil", "stock"}),
    "reviewer": frozenset({"queues"}),
}

# Permissions a partner holds only for the SKUs and mall categories in its scope.
SCOPED: Final[frozenset[Permission]] = frozenset({"fulfil", "stock"})


@dataclass(frozen=True, slots=True)
class StaffAction:
    """One staff command (`/name`) or button (`prefix:`), the permission it needs, and the
    message id of its line in staff /help (None for a button)."""

    permission: Permission
    help: str | None = None


# Every staff command and button. Handlers check the one they run (handlers.staff), tests try
# every entry with every role, and staff /help lists the commands a role may use, in this order.
STAFF_ACTIONS: Final[dict[str, StaffAction]] = {
    "/purchase": StaffAction("purchases", N_("staff.help.purchase")),
    "tp:": StaffAction("purchases"),
    "/purchase_return": StaffAction("purchase_returns", N_("staff.help.purchase_return")),
    "/member": StaffAction("member_lookup", N_("staff.help.member")),
    "/fulfil": StaffAction("fulfil", N_("staff.help.fulfil")),
    "/fulfil_prize": StaffAction("prizes", N_("staff.help.fulfil_prize")),
    "/stock": StaffAction("stock", N_("staff.help.stock")),
    "/delist": StaffAction("catalog", N_("staff.help.delist")),
    "/returns": StaffAction("returns", N_("staff.help.returns")),
    "/approve_return": StaffAction("returns", N_("staff.help.approve_return")),
    "/reject_return": StaffAction("returns", N_("staff.help.reject_return")),
    "rv:": StaffAction("returns"),
    "/cannot_fulfil": StaffAction("returns", N_("staff.help.cannot_fulfil")),
    "/broadcast": StaffAction("broadcasts", N_("staff.help.broadcast")),
    "bc:": StaffAction("broadcasts"),
    "/feedback_queue": StaffAction("queues", N_("staff.help.feedback_queue")),
    "fb:": StaffAction("queues"),
    "/tasks_queue": StaffAction("queues", N_("staff.help.tasks_queue")),
    "sq:": StaffAction("queues"),
    "/survey_stats": StaffAction("stats", N_("staff.help.survey_stats")),
    "/event_stats": StaffAction("stats", N_("staff.help.event_stats")),
    "/event_new": StaffAction("events", N_("staff.help.event_new")),
    "/dissolve_household": StaffAction("households", N_("staff.help.dissolve_household")),
    "/adjust": StaffAction("adjust", N_("staff.help.adjust")),
    "/vip": StaffAction("plans", N_("staff.help.vip")),
    "/vip_mark": StaffAction("plans", N_("staff.help.vip_mark")),
    "/vip_unmark": StaffAction("plans", N_("staff.help.vip_unmark")),
    "/plan": StaffAction("plans", N_("staff.help.plan")),
    "pl:": StaffAction("plans"),
    "/plan_end": StaffAction("plans", N_("staff.help.plan_end")),
    "/plans": StaffAction("plans", N_("staff.help.plans")),
    "/plan_log": StaffAction("plans", N_("staff.help.plan_log")),
    "/report": StaffAction("reports", N_("staff.help.report")),
}


def role_of(config: Config, telegram_id: int) -> Role | None:
    """The staff role of this Telegram user, or None for a member."""
    member = config.staff_member(telegram_id)
    return None if member is None else member.role


def may(config: Config, telegram_id: int, action: str) -> bool:
    """Whether this Telegram user may run `action` (a key of STAFF_ACTIONS) at all; a partner
    may still be refused an item outside its scope (`in_scope`). Raises KeyError for an action
    missing from the table (every staff action must be in it)."""
    return may_do(config, telegram_id, STAFF_ACTIONS[action].permission)


def in_scope(member: StaffMember | None, sku: str, config: Config) -> bool:
    """Whether this staff member may fulfil or stock the item `sku` (only a partner is limited:
    to the SKUs and mall categories of its scope)."""
    if member is None:
        return False
    if member.role != "partner":
        return True
    item = config.mall.item(sku)
    return sku in member.scope or (item is not None and item.category in member.scope)


class OutOfScope(RuleError):
    """A partner asked to fulfil or stock an item outside its scope; nothing was changed (and
    the refusal names nothing of the member's)."""

    def __init__(self) -> None:
        super().__init__(N_("staff.out_of_scope"))


def check_scope(config: Config, telegram_id: int, sku: str) -> None:
    """Refuse (OutOfScope) a partner's fulfilling or stocking an item outside its scope."""
    if not in_scope(config.staff_member(telegram_id), sku, config):
        raise OutOfScope()


def staff_holding(config: Config, permission: Permission) -> list[int]:
    """The Telegram ids of every staff member whose role holds `permission` (whom a notice
    about it goes to), [program] admins first."""
    everyone = [*config.program.admins, *(s.telegram_id for s in config.staff)]
    return [i for i in everyone if may_do(config, i, permission)]


def may_do(config: Config, telegram_id: int, permission: Permission) -> bool:
    """Whether this Telegram user's role holds `permission`."""
    role = role_of(config, telegram_id)
    return role is not None and permission in ROLE_PERMISSIONS[role]


def is_staff(config: Config, telegram_id: int) -> bool:
    """Whether this Telegram user is on the staff at all (any role)."""
    return config.staff_member(telegram_id) is not None


def staff_help(config: Config, telegram_id: int) -> list[str]:
    """The message ids of the staff /help lines this user may use, in table order."""
    return [
        action.help
        for name, action in STAFF_ACTIONS.items()
        if action.help is not None and may(config, telegram_id, name)
    ]
