"""/tasks (🎯 in the menu): the member's open tasks with progress, reward and deadline; and the
tasks-and-badges part of /rules, generated from the same programme functions."""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

from telegram import Update
from telegram.constants import MessageLimit

from bot.config import TASK_TARGET_UNITS, Badge, Config, Task
from bot.i18n import N_
from bot.programme.calendar import local_today
from bot.programme.tasks import (
    TaskStanding,
    listed_tasks,
    member_tasks,
    task_badge,
)
from handlers.common import BotContext, Texts, member_for, texts_for

# The bar never grows wider than this many cells (a 300-yuan target is drawn in ten).
BAR_CELLS: Final = 10

# How each kind is done, in one line: (with categories, without).
_HOW: Final[dict[str, tuple[str, str]]] = {
    "share": (N_("tasks.how.share"), N_("tasks.how.share")),
    "review": (N_("tasks.how.review"), N_("tasks.how.review")),
    "checkin": (N_("tasks.how.checkin"), N_("tasks.how.checkin")),
    "referral": (N_("tasks.how.referral"), N_("tasks.how.referral")),
    "survey": (N_("tasks.how.survey"), N_("tasks.how.survey")),
    "purchases": (N_("tasks.how.purchases"), N_("tasks.how.purchases_any")),
    "spend": (N_("tasks.how.spend"), N_("tasks.how.spend_any")),
    "streak": (N_("tasks.how.streak"), N_("tasks.how.streak_any")),
}

# What a target counts, by TASK_TARGET_UNITS: (one, several).
_UNITS: Final[dict[str, tuple[str, str]]] = {
    unit: (N_(f"tasks.unit.{unit}.one"), N_(f"tasks.unit.{unit}.many"))
    for unit in TASK_TARGET_UNITS.values()
}

_REPEAT: Final = {
    "once": N_("rules.tasks.repeat.once"),
    "daily": N_("rules.tasks.repeat.daily"),
    "weekly": N_("rules.tasks.repeat.weekly"),
    "monthly": N_("rules.tasks.repeat.monthly"),
}

_MILESTONES: Final = {
    "eco_spend_yuan": N_("rules.badges.eco_spend_yuan"),
    "green_points": N_("rules.badges.green_points"),
    "surveys_completed": N_("rules.badges.surveys_completed"),
    "purchases": N_("rules.badges.purchases"),
}


def how_line(task: Task, config: Config, _: Texts) -> str:
    """How a member does the task, in one short line."""
    with_categories, without = _HOW[task.kind]
    if task.kind == "survey":
        survey = config.survey(task.survey or "")
        title = survey.title.get(_.language) if survey is not None else task.name.get(_.language)
        return _(with_categories, survey=title)
    names = [c.name.get(_.language) for cid in task.categories if (c := config.earn.category(cid))]
    if not names:
        return _(without)
    return _(with_categories, categories=_("list.separator").join(names))


def amount(unit: str, count: int, _: Texts) -> str:
    """A count of what a target counts: "3 次消费", "1 survey"."""
    one, many = _UNITS[unit]
    return _(one if count == 1 else many, count=count)


def progress_bar(progress: int, target: int) -> str:
    """▓▓▓░░ for 3 of 5: at most BAR_CELLS cells, full only when the target is reached."""
    cells = min(target, BAR_CELLS)
    filled = min(cells, progress * cells // target)
    return "▓" * filled + "░" * (cells - filled)


def badge_name(badge: Badge, _: Texts) -> str:
    """A badge as a member reads it: its emoji and name."""
    return _("tasks.badge", emoji=badge.emoji, badge=badge.name.get(_.language))


def reward_text(points: int, badge: Badge | None, _: Texts, *, earned: bool = False) -> str:
    """What a completion pays: points and/or the badge ("" when nothing)."""
    pieces = []
    if points:
        pieces.append(_("tasks.reward.points", points=points))
    if badge is not None:
        pieces.append(
            _(
                "tasks.reward.badge_earned" if earned else "tasks.reward.badge",
                badge=badge_name(badge, _),
            )
        )
    return " + ".join(pieces)


def deadline_text(deadline: date | None, today: date, _: Texts) -> str:
    """Until when the task can be completed in this period."""
    if deadline is None:
        return _("tasks.deadline.none")
    if deadline == today:
        return _("tasks.deadline.today")
    return _("tasks.deadline.day", day=deadline.isoformat())


def render_standing(standing: TaskStanding, config: Config, today: date, _: Texts) -> str:
    """One task of /tasks: name, progress bar or done, reward, deadline, how to do it."""
    task = standing.task
    name = task.name.get(_.language)
    reward = reward_text(standing.points, standing.badge, _, earned=standing.badge_earned)
    if standing.done:
        lines = [_("tasks.done", name=name)]
        if standing.resets_on is not None:
            lines.append(_("tasks.again", day=standing.resets_on.isoformat()))
        return "\n".join(lines)
    emoji = standing.badge.emoji if standing.badge is not None else "🎯"
    shown = min(standing.progress, standing.target)
    lines = [
        _("tasks.name", emoji=emoji, name=name),
        _(
            "tasks.progress",
            bar=progress_bar(shown, standing.target),
            progress=shown,
            target=amount(standing.unit, standing.target, _),
            deadline=deadline_text(standing.deadline, today, _),
        ),
    ]
    if reward:
        lines.append(_("tasks.reward", reward=reward))
    lines.append(_("tasks.how", how=how_line(task, config, _)))
    return "\n".join(lines)


def render_tasks(
    standings: list[TaskStanding],
    config: Config,
    today: date,
    _: Texts,
    limit: int = MessageLimit.MAX_TEXT_LENGTH,
) -> list[str]:
    """The /tasks answer: every open task, the unfinished first, in one message (more, cut
    between tasks, only when a long programme passes Telegram's limit)."""
    if not standings:
        return [_("tasks.none")]
    ordered = sorted(standings, key=lambda s: s.done)
    left = sum(1 for s in standings if not s.done)
    blocks = [_("tasks.title", open=left, done=len(standings) - left)]
    blocks += [render_standing(s, config, today, _) for s in ordered]
    messages: list[str] = []
    for block in blocks:
        if messages and len(messages[-1]) + 2 + len(block) <= limit:
            messages[-1] += "\n\n" + block
        else:
            messages.append(block[:limit])
    return messages


async def tasks_command(update: Update, context: BotContext) -> None:
    """Show the member's open tasks: progress, reward, deadline, done or not."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    services = context.services
    standings = await member_tasks(services, member.id)
    today = local_today(services.clock(), services.config)
    for text in render_tasks(standings, services.config, today, _):
        await message.reply_text(text)


# --- /rules ------------------------------------------------------------------------------------


def _window(task: Task, _: Texts) -> str:
    if task.starts and task.ends:
        return _("rules.tasks.window", starts=task.starts.isoformat(), ends=task.ends.isoformat())
    if task.starts:
        return _("rules.tasks.from", starts=task.starts.isoformat())
    if task.ends:
        return _("rules.tasks.until", ends=task.ends.isoformat())
    return ""


def render_task_rules(config: Config, now: datetime, _: Texts) -> list[str]:
    """The tasks' and badges' part of /rules (with a blank line after it), or nothing: every
    task open or opening later, every badge and how it is earned, every set and its prize."""
    lang = _.language
    tasks = listed_tasks(config, local_today(now, config))
    if not tasks and not config.badges:
        return []
    lines = [_("rules.tasks.heading")]
    for task in tasks:
        reward = reward_text(task.reward_points, task_badge(config, task.id), _)
        lines.append(
            _(
                "rules.tasks.task",
                name=task.name.get(lang),
                how=how_line(task, config, _),
                target=amount(TASK_TARGET_UNITS[task.kind], task.target, _),
                repeat=_(_REPEAT[task.repeat]),
                window=_window(task, _),
                reward=reward or _("rules.tasks.no_reward"),
            )
        )
    if config.badges:
        lines.append(_("rules.badges.heading"))
    for badge in config.badges:
        if badge.task is not None:
            named = config.task(badge.task)
            done = named.name.get(lang) if named is not None else badge.task
            how = _("rules.badges.by_task", task=done)
        else:
            assert badge.milestone is not None
            how = _(_MILESTONES[badge.milestone], threshold=badge.threshold)
        lines.append(_("rules.badges.line", badge=badge_name(badge, _), how=how))
    by_id = {badge.id: badge for badge in config.badges}
    for badge_set in config.badge_sets:
        members = _("list.separator").join(
            badge_name(by_id[b], _) for b in badge_set.badges if b in by_id
        )
        if badge_set.prize_points is not None:
            prize = _("rules.badges.prize_points", points=badge_set.prize_points)
        else:
            item = config.mall.item(badge_set.prize_item or "")
            prize = _(
                "rules.badges.prize_item",
                item=item.name.get(lang) if item is not None else badge_set.prize_item,
            )
        lines.append(
            _("rules.badges.set", name=badge_set.name.get(lang), badges=members, prize=prize)
        )
    return [*lines, ""]
