"""Statement lines in the member's words: what the ledger kept, named through the programme.

The ledger keeps ids (a SKU, a game, a campaign, a survey); a member knows an item's name, a
voucher code, the wheel, a receipt. `describe` turns one line's stored facts and the
configuration into message ids with plain parameters, one describer per operation kind, so a
new kind is one entry in DESCRIBERS. A fact that is missing (an older operation, a removed
item or game) leaves its detail out or falls back to a plain word, never to an id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from bot.config import Config
from bot.i18n import N_
from bot.programme.calendar import local_today
from storage.ledger import StatementLine


@dataclass(frozen=True, slots=True)
class Phrase:
    """A message id and its parameters, for the handler to say in the member's language."""

    key: str
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatementEntry:
    """What one statement line is, and the details a member recognises it by."""

    what: Phrase
    details: tuple[Phrase, ...] = ()


Describer = Callable[[StatementLine, Config, str], StatementEntry]


@dataclass(frozen=True, slots=True)
class GameWords:
    """How a statement names a game's plays and its prizes."""

    play: str
    prize: str


GAME_WORDS: Final[Mapping[str, GameWords]] = {
    "wheel": GameWords(N_("statement.wheel_play"), N_("statement.wheel_prize")),
    "scratch": GameWords(N_("statement.scratch_play"), N_("statement.scratch_prize")),
}
# A game the programme no longer has (or an operation that did not record which).
SOME_GAME: Final = GameWords(N_("kind.game_play"), N_("kind.game"))


def _phrase(key: str, **params: str) -> Phrase:
    return Phrase(key, params)


def _receipt(line: StatementLine) -> list[Phrase]:
    """The receipt and the amount of a purchase, as far as they were recorded."""
    details = []
    if line.receipt:
        details.append(_phrase(N_("statement.receipt"), receipt=line.receipt))
    if line.amount is not None:
        details.append(_phrase(N_("statement.amount"), amount=f"{line.amount:.2f}"))
    return details


def _earn_campaign(line: StatementLine, config: Config, language: str) -> list[Phrase]:
    """The earn campaign a purchase was made in (a plain word once the campaign is gone)."""
    if not line.campaign:
        return []
    campaign = next((c for c in config.campaigns if c.id == line.campaign), None)
    if campaign is None:
        return [_phrase(N_("statement.some_campaign"))]
    return [_phrase(N_("statement.campaign"), name=campaign.name.get(language))]


def _redemption_details(line: StatementLine, config: Config, language: str) -> list[Phrase]:
    """The mall item's name, the bill deduction and the code of the redemption a line is for."""
    item = None if line.sku is None else config.mall.item(line.sku)
    details = [
        _phrase(N_("statement.name"), name=item.name.get(language))
        if item is not None
        else _phrase(N_("statement.some_item"))
    ]
    if line.deduction_yuan is not None:
        details.append(_phrase(N_("statement.deduction"), yuan=f"{line.deduction_yuan:.2f}"))
    if line.code:
        details.append(_phrase(N_("statement.code"), code=line.code))
    return details


def _reason(line: StatementLine) -> list[Phrase]:
    """A reason staff typed, when there is one."""
    return [_phrase(N_("statement.reason"), reason=line.reason)] if line.reason else []


def _game(line: StatementLine) -> GameWords:
    return GAME_WORDS.get(line.game or "", SOME_GAME)


def _tier_bonus(line: StatementLine, config: Config, language: str) -> list[Phrase]:
    """The tier bonus a purchase's points include (a plain word once the tier is gone)."""
    if not line.tier_bonus:
        return []
    tier = None if line.tier is None else config.tiers.tier(line.tier)
    if tier is None:
        return [_phrase(N_("statement.some_tier_bonus"), points=str(line.tier_bonus))]
    return [
        _phrase(
            N_("statement.tier_bonus"), tier=tier.name.get(language), points=str(line.tier_bonus)
        )
    ]


def purchase(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """Points for a purchase: receipt, amount, campaign, tier bonus."""
    details = (
        _receipt(line)
        + _earn_campaign(line, config, language)
        + _tier_bonus(line, config, language)
    )
    return StatementEntry(_phrase(N_("kind.purchase")), tuple(details))


def campaign_bonus(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """A campaign's bonus for a purchase: the campaign first, then the receipt it came with."""
    details = _earn_campaign(line, config, language) + _receipt(line)
    return StatementEntry(_phrase(N_("kind.campaign")), tuple(details))


def redeem(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """Points spent in the mall: the item and its code."""
    details = _redemption_details(line, config, language)
    return StatementEntry(_phrase(N_("kind.redeem")), tuple(details))


def refund(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """Points back for a redemption: the item, its code, and the shop's reason if it cancelled."""
    details = _redemption_details(line, config, language) if line.sku or line.code else []
    if line.cancelled_because:
        details.append(_phrase(N_("statement.cancelled"), reason=line.cancelled_because))
    return StatementEntry(_phrase(N_("kind.refund")), tuple(details))


def compensation(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """Points the shop added for its own fault: for which redemption, else why."""
    if line.sku or line.code:
        details = _redemption_details(line, config, language)
        if line.cancelled_because:
            details.append(_phrase(N_("statement.cancelled"), reason=line.cancelled_because))
    else:
        details = _reason(line)
    return StatementEntry(_phrase(N_("kind.compensation")), tuple(details))


def game_play(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """Points paid for a spin or a card: the game and, once seen, what it brought."""
    details = []
    prize = None
    if config.wheel is not None and line.game and line.prize:
        prize = config.wheel.prize(line.game, line.prize)
    if prize is not None:
        if prize.kind == "nothing":
            details.append(_phrase(N_("statement.no_prize")))
        else:
            details.append(_phrase(N_("statement.won"), prize=prize.label.get(language)))
        if prize.kind == "voucher" and line.code:
            details.append(_phrase(N_("statement.code"), code=line.code))
    elif line.game in GAME_WORDS and line.prize is None:
        # The play is recorded but its prize not yet shown: a card still to be scratched.
        details.append(_phrase(N_("statement.not_revealed")))
    return StatementEntry(_phrase(_game(line).play), tuple(details))


def game_prize(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """Points won in a game, and the game campaign that multiplied them."""
    details = []
    if line.campaign and config.wheel is not None:
        campaign = next((c for c in config.wheel.campaigns if c.id == line.campaign), None)
        if campaign is not None:
            details.append(_phrase(N_("statement.campaign"), name=campaign.name.get(language)))
    return StatementEntry(_phrase(_game(line).prize), tuple(details))


def survey_reward(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """Points for a completed survey, and its title."""
    survey = None if line.survey is None else config.survey(line.survey)
    details = (
        (_phrase(N_("statement.survey"), title=survey.title.get(language)),)
        if survey is not None
        else ()
    )
    return StatementEntry(_phrase(N_("kind.survey")), details)


def task_reward(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """Points for a completed task (the green-share bonus among them), and its name."""
    task = None if line.task is None else config.task(line.task)
    details = (
        (_phrase(N_("statement.task"), name=task.name.get(language)),) if task is not None else ()
    )
    label = N_("kind.share_bonus") if line.kind == "share_bonus" else N_("kind.task")
    return StatementEntry(_phrase(label), details)


def badge_prize(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """A badge set's grand prize, and the set."""
    found = next((s for s in config.badge_sets if s.id == line.badge_set), None)
    details = (
        (_phrase(N_("statement.badge_set"), name=found.name.get(language)),)
        if found is not None
        else ()
    )
    return StatementEntry(_phrase(N_("kind.badge")), details)


def tier_reward(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """A tier's entry reward, named by its tier ("绿树会员礼"); a tier no longer configured
    reads as a tier reward."""
    tier = None if line.tier is None else config.tiers.tier(line.tier)
    if tier is None:
        return StatementEntry(_phrase(N_("kind.tier")))
    return StatementEntry(
        _phrase(N_("statement.tier_reward"), emoji=tier.emoji, tier=tier.name.get(language))
    )


def transfer(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """Points sent to or received from another member, and who."""
    if line.points < 0:
        what = _phrase(N_("statement.transfer_out"))
        who = [_phrase(N_("statement.to"), name=line.counterparty)] if line.counterparty else []
    else:
        what = _phrase(N_("statement.transfer_in"))
        who = [_phrase(N_("statement.from"), name=line.counterparty)] if line.counterparty else []
    return StatementEntry(what, tuple(who))


def transfer_undo(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """A transfer taken back: the points back to the sender, or away from the recipient."""
    if line.points > 0:
        what = _phrase(N_("statement.transfer_undo_back"))
        who = [_phrase(N_("statement.to"), name=line.counterparty)] if line.counterparty else []
    else:
        what = _phrase(N_("statement.transfer_undo_taken"))
        who = [_phrase(N_("statement.from"), name=line.counterparty)] if line.counterparty else []
    return StatementEntry(what, tuple(who))


def adjustment(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """A correction by staff, with the reason they gave."""
    return StatementEntry(_phrase(N_("kind.adjust")), tuple(_reason(line)))


def validity_extended(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """Points kept longer by the shop, with the reason given."""
    return StatementEntry(_phrase(N_("kind.extend_validity")), tuple(_reason(line)))


def expiry(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """Points that reached their expiry, and the day they were earned."""
    details: tuple[Phrase, ...] = ()
    if line.earned_at is not None:
        day = local_today(line.earned_at, config).isoformat()
        details = (_phrase(N_("statement.earned_on"), day=day),)
    return StatementEntry(_phrase(N_("kind.expire")), details)


def purchase_return(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """Points a refunded purchase took back: its receipt and the yuan refunded."""
    details = []
    if line.receipt:
        details.append(_phrase(N_("statement.receipt"), receipt=line.receipt))
    if line.amount is not None:
        details.append(_phrase(N_("statement.refunded"), amount=f"{line.amount:.2f}"))
    return StatementEntry(_phrase(N_("kind.purchase_return")), tuple(details))


def tier_reward_back(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """A tier's entry reward taken back because a refund undid the upgrade, named by its tier."""
    tier = None if line.tier is None else config.tiers.tier(line.tier)
    if tier is None:
        return StatementEntry(_phrase(N_("kind.tier_reversal")))
    return StatementEntry(
        _phrase(N_("statement.tier_reward_back"), emoji=tier.emoji, tier=tier.name.get(language))
    )


def labelled(key: str) -> Describer:
    """A describer for a kind that its name alone explains (a birthday gift)."""

    def describe_kind(line: StatementLine, config: Config, language: str) -> StatementEntry:
        return StatementEntry(_phrase(key))

    return describe_kind


# Every operation kind a member's statement can show; a new kind is one entry here.
DESCRIBERS: Final[Mapping[str, Describer]] = {
    "purchase": purchase,
    "campaign": campaign_bonus,
    "birthday": labelled(N_("kind.birthday")),
    "survey": survey_reward,
    "feedback": labelled(N_("kind.feedback")),
    "game": game_prize,
    "share_bonus": task_reward,
    "task": task_reward,
    "badge": badge_prize,
    "tier": tier_reward,
    "plan": labelled(N_("kind.plan")),
    "compensation": compensation,
    "redeem": redeem,
    "game_play": game_play,
    "refund": refund,
    "transfer": transfer,
    "transfer_undo": transfer_undo,
    "adjust": adjustment,
    "extend_validity": validity_extended,
    "expire": expiry,
    "purchase_return": purchase_return,
    "owed_settlement": labelled(N_("kind.owed_settlement")),
    "tier_reversal": tier_reward_back,
}
# A kind with no entry yet still reads as a change of points, never as its internal name.
SOME_CHANGE: Final = labelled(N_("statement.other"))


def describe(line: StatementLine, config: Config, language: str) -> StatementEntry:
    """What a statement line is and what it was for, in `language` where names come from the
    configuration."""
    return DESCRIBERS.get(line.kind, SOME_CHANGE)(line, config, language)
