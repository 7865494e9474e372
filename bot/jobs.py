"""Scheduled work: the expiry sweep, birthday gifts, expiry reminders, voucher validity, the
owners' monthly report, and the outbox sender.

Jobs are stateless sweeps over the database (DESIGN.md "Scheduler and pushes"): each takes
the instant it runs for, every message it plans has a dedupe key, and every daily job
records the local day it finished, so a restart or a catch-up repeats nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from bot.clock import Clock, system_clock
from bot.config import LANGUAGES, Config, MallDiscount, MallItem
from bot.i18n import N_, I18n, load_catalog, resolve_language
from bot.programme.birthdays import (
    NoBirthdayGift,
    birthday_dates,
    birthday_gift_key,
    gift_allowed,
    give_birthday_gift,
)
from bot.programme.calendar import end_of_day, local_today
from bot.programme.dependants import celebrate_dependants
from bot.programme.green import green_categories, report_due, report_pushes, report_span
from bot.programme.mall import reminder_window, sale_rate, sale_scope, voucher_terms
from bot.programme.reports import MonthlyReport, month_label, monthly_report, owner_report_due
from bot.programme.tier_benefits import birthday_gifts_on
from bot.programme.tier_review import tier_jobs
from bot.reports import chart_caption, flow_chart, message_chunks, summary_lines
from bot.transport import NotSent, redact
from storage.dependants import Dependants
from storage.errors import Conflict, NotLeader
from storage.green import Green
from storage.ledger import Ledger
from storage.mall import Mall, Redemption
from storage.pushes import MARKETING, SERVICE, OutboxMessage, Push, Pushes
from storage.reports import Reports
from storage.tier_reviews import TierReviews

log = logging.getLogger(__name__)

SWEEP_JOB = "expiry_sweep"
DAILY_JOB = "daily_pushes"
VOUCHER_JOB = "voucher_validity"
GREEN_JOB = "green_report"
OWNER_REPORT_JOB = "owner_report"
# A push that fails this often for reasons other than a block or a rate limit is given up.
MAX_ATTEMPTS = 5
# How long `Sender.stop` waits for the request in flight (its timeouts add up to less).
STOP_GRACE = 20.0


@dataclass(frozen=True, slots=True)
class DailyReport:
    """What one run of the daily pushes planned."""

    day: date
    birthdays: int
    gifts: int
    reminders: int
    # Children's and pets' birthdays greeted, and their gifts given.
    family_birthdays: int = 0
    family_gifts: int = 0
    # Tier downgrade notices queued, and members moved down by the yearly review.
    tier_notices: int = 0
    tier_downgrades: int = 0


@dataclass(frozen=True, slots=True)
class VoucherReport:
    """What one run of the voucher job did."""

    day: date
    reminders: int
    refunded: int


@dataclass(frozen=True, slots=True)
class GreenReportRun:
    """What one run of the monthly green report queued."""

    day: date
    # The first day of the month reported on.
    month: date
    reports: int


@dataclass(frozen=True, slots=True)
class OwnerReportRun:
    """What one run of the owners' monthly report did."""

    day: date
    # The first day of the month reported on.
    month: date
    sent: int
    failed: int


def _voucher_params(redemption: Redemption, item: MallItem | None) -> dict[str, object]:
    """What a voucher push names: the item in the member's language, the code, the last day."""
    assert redemption.valid_until is not None
    names: object = redemption.sku
    if item is not None:
        names = {"zh-CN": item.name.zh_CN, "en": item.name.en}
    return {"item": names, "code": redemption.code, "day": redemption.valid_until.isoformat()}


@functools.cache
def _list_separator(language: str) -> str:
    """How a list reads in `language` (the catalogs' `list.separator`)."""
    # The jobs plan pushes without a language at hand; the sender renders them later.
    return load_catalog(language)[N_("list.separator")]


def sale_announcement(
    sale: MallDiscount, config: Config
) -> tuple[str, dict[str, object], list[list[tuple[str, str]]]]:
    """The message, its parameters (per language where they differ) and its button announcing
    a points-mall sale on its first day."""
    scope = sale_scope(sale, config)
    params: dict[str, object] = {
        "name": {lang: sale.name.get(lang) for lang in LANGUAGES},
        # The same figure the mall and /rules show: 8 折 in Chinese, 20% off in English.
        "rate": {lang: sale_rate(sale.percent, lang) for lang in LANGUAGES},
        "ends": sale.ends.isoformat(),
    }
    if not scope:
        return N_("push.sale_start_everything"), params, [[(N_("push.open_mall"), "mall:home")]]
    params["scope"] = {
        lang: _list_separator(lang).join(name.get(lang) for name in scope) for lang in LANGUAGES
    }
    return N_("push.sale_start"), params, [[(N_("push.open_mall"), "mall:home")]]


class Scheduler:
    """The daily jobs over one store; `now` is always passed in, so tests choose the day."""

    def __init__(
        self,
        config: Config,
        pushes: Pushes,
        ledger: Ledger,
        mall: Mall,
        clock: Clock = system_clock,
        dependants: Dependants | None = None,
        green: Green | None = None,
        bot: Bot | None = None,
        i18n: I18n | None = None,
    ) -> None:
        self.config = config
        self.pushes = pushes
        self.ledger = ledger
        self.mall = mall
        # The same store as the others (a caller that predates family birthdays passes none).
        self.dependants = dependants or Dependants(mall._store)
        self.green = green or Green(mall._store)
        self.tier_reviews = TierReviews(mall._store)
        self.reports = Reports(mall._store)
        # Owners need not be members, so their monthly report goes straight to Telegram (not
        # through the member-addressed outbox); without a bot (tests of other jobs) it waits.
        self.bot = bot
        self.i18n = i18n
        # When a job finished, for the record (the job's own "now" may be a catch-up day).
        self.clock = clock

    async def sweep(self, now: datetime) -> int:
        """Book every expired remainder (idempotent); record the day; return lots booked."""
        report = await self.ledger.expire_due(now)
        day = local_today(now, self.config)
        summary = f"{report.lots} lots, {report.points} points"
        await self.pushes.record_job(SWEEP_JOB, day, now, self.clock(), summary)
        log.info("expiry sweep for %s: %s", day, summary)
        return report.lots

    async def daily(self, now: datetime, *, day: date | None = None) -> DailyReport:
        """Birthday gifts and greetings, and expiry reminders, for local `day` (default today)."""
        config = self.config
        today = day or local_today(now, config)
        birthdays = await self.pushes.birthdays_on(birthday_dates(today, config))
        pushes: list[Push] = []
        gifts = 0
        for member in birthdays:
            celebrated = today
            key = birthday_gift_key(member.member_id, celebrated)
            if birthday_gifts_on(config) and gift_allowed(
                member.birthday_entered_at, celebrated, config
            ):
                try:
                    # The gift of the member's tier, booked with its greeting (one transaction).
                    await give_birthday_gift(self.pushes, config, member.member_id, celebrated, now)
                    gifts += 1
                    continue
                except NoBirthdayGift:
                    pass  # neither their tier nor the programme gives one: greet only
                except Conflict:
                    log.warning("birthday gift %s was already given differently", key)
                    gifts += 1
                    continue
            pushes.append(Push(key, member.member_id, SERVICE, N_("push.birthday"), {}))
        reminders = 0
        for days_ahead in config.push.reminder_days:
            last_day = today + timedelta(days=days_ahead)
            start, end = (
                end_of_day(last_day - timedelta(days=1), config),
                end_of_day(last_day, config),
            )
            expiring = await self.pushes.expiring_between(start, end)
            per_member: dict[int, int] = {}
            for item in expiring:
                per_member[item.member_id] = per_member.get(item.member_id, 0) + item.points
            for member_id, points in per_member.items():
                reminders += 1
                pushes.append(
                    Push(
                        f"expiry:{member_id}:{last_day.isoformat()}:{days_ahead}",
                        member_id,
                        SERVICE,
                        N_("push.expiry_reminder"),
                        {"points": points, "day": last_day.isoformat(), "days": days_ahead},
                        [[(N_("push.open_mall"), "mall:home")]],
                    )
                )
        for campaign in config.campaigns:
            if campaign.starts == today:
                names = {"zh-CN": campaign.name.zh_CN, "en": campaign.name.en}
                multiplier = format(campaign.multiplier.normalize(), "f")
                pushes += [
                    Push(
                        f"campaign:{campaign.id}:{member_id}",
                        member_id,
                        MARKETING,
                        N_("push.campaign_start"),
                        {
                            "name": names,
                            "ends": campaign.ends.isoformat(),
                            "multiplier": multiplier,
                        },
                    )
                    for member_id in await self.pushes.member_ids()
                ]
        for sale in config.mall.discounts:
            if sale.starts == today:
                key, params, buttons = sale_announcement(sale, config)
                pushes += [
                    Push(f"sale:{sale.id}:{member_id}", member_id, MARKETING, key, params, buttons)
                    for member_id in await self.pushes.member_ids()
                ]
        await self.pushes.enqueue(pushes, now)
        # Children and pets: each gift is booked with its greeting in one transaction.
        family = await celebrate_dependants(self.dependants, config, today, now)
        # The yearly tier review on its day (or the first run after), the notices before it.
        tiers = await tier_jobs(self.tier_reviews, config, today, now)
        report = DailyReport(
            today,
            len(birthdays),
            gifts,
            reminders,
            family.greetings,
            family.gifts,
            tiers.notices,
            tiers.downgrades,
        )
        summary = (
            f"{report.birthdays} birthdays, {report.gifts} gifts, {report.reminders} reminders,"
            f" {report.family_birthdays} family birthdays, {report.family_gifts} family gifts,"
            f" {report.tier_notices} tier notices, {report.tier_downgrades} tier downgrades"
        )
        await self.pushes.record_job(DAILY_JOB, today, now, self.clock(), summary)
        log.info("daily pushes for %s: %s", today, summary)
        return report

    async def vouchers(self, now: datetime) -> VoucherReport:
        """Remind members of codes near their last valid day, and give back the points of
        lapsed unused codes whose item's terms say so; record the day."""
        # Both derive their work from the database up to today (a missed day is caught up by
        # the next run) and key each push and refund by the redemption: nothing happens twice.
        config = self.config
        today = local_today(now, config)
        first, last = reminder_window(today, config)
        reminders = [
            Push(
                f"voucher-expiry:{redemption.id}",
                redemption.member_id,
                SERVICE,
                N_("push.voucher_reminder"),
                _voucher_params(redemption, config.mall.item(redemption.sku)),
                [[(N_("mall.my_redemptions"), "red:list:0")]],
            )
            for redemption in await self.mall.vouchers_ending(first, last)
        ]
        reminded = await self.pushes.enqueue(reminders, now)
        # The terms a code was redeemed under, or better ones in force now (improvements apply
        # at once; a worse change never takes back what a member was promised).
        refunding = [t.item.sku for t in voucher_terms(config) if t.refund_if_unused]
        days = config.expiry.refund_min_validity_days
        refunded = 0
        for redemption in await self.mall.vouchers_lapsed(today, refunding):
            params = _voucher_params(redemption, config.mall.item(redemption.sku))
            notice = Push(
                f"voucher-refund:{redemption.id}",
                redemption.member_id,
                SERVICE,
                N_("push.voucher_refunded"),
                {**params, "points": redemption.points, "days": days},
            )
            done = await self.mall.refund_lapsed(
                redemption.id,
                today=today,
                min_validity_days=days,
                actor="system:vouchers",
                notice=notice,
                now=now,
            )
            refunded += done is not None
        report = VoucherReport(today, reminded, refunded)
        summary = f"{report.reminders} reminders, {report.refunded} refunded"
        await self.pushes.record_job(VOUCHER_JOB, today, now, self.clock(), summary)
        log.info("voucher validity for %s: %s", today, summary)
        return report

    async def green_report(self, now: datetime) -> GreenReportRun | None:
        """Last month's green report to each member with eco spend who accepts marketing
        messages, on the first local day of the month or the first run after it; None when
        this month's was queued already or it is too late to catch up."""
        # Run daily: only the month's first run does anything, and each report's dedupe key
        # (member and month) keeps a rerun from queueing it twice.
        config = self.config
        today = local_today(now, config)
        month = report_due(today, await self.pushes.last_run_day(GREEN_JOB), config)
        if month is None:
            return None
        categories = [c.id for c in green_categories(config)]
        first, last = report_span(month)
        rows = await self.green.green_purchases_between(first, last, categories)
        queued = await self.pushes.enqueue(report_pushes(rows, month, config), now)
        run = GreenReportRun(today, month, queued)
        summary = f"{run.reports} reports for {month:%Y-%m}"
        await self.pushes.record_job(GREEN_JOB, today, now, self.clock(), summary)
        log.info("green report for %s: %s", today, summary)
        return run

    async def owner_reports(self, now: datetime) -> OwnerReportRun | None:
        """Last month's report to every owner, on the first local day of the month or the
        first run after it (within `push.catch_up_days`); each owner gets it once (a record per
        owner and month), a failed send is tried again at the next run. None: nothing to do."""
        config = self.config
        today = local_today(now, config)
        if self.bot is None or self.i18n is None or not config.owners():
            return None
        month = owner_report_due(now, config)
        if month is None:
            return None
        label = month_label(month)
        done = await self.reports.owner_reports_sent(label)
        if all(done.get(owner) in ("sent", "sending") for owner in config.owners()):
            return None
        report = await self.mall._store.read(lambda conn: monthly_report(conn, month, config))
        sent = failed = 0
        for owner in config.owners():
            if not await self.reports.claim_owner_report(owner, label, now=self.clock()):
                continue
            error = await self._send_owner_report(owner, report)
            await self.reports.mark_owner_report(
                owner, label, sent=error is None, now=self.clock(), error=error
            )
            sent += error is None
            failed += error is not None
        run = OwnerReportRun(today, month, sent, failed)
        summary = f"{sent} sent, {failed} failed for {label}"
        await self.pushes.record_job(OWNER_REPORT_JOB, today, now, self.clock(), summary)
        log.info("owners' report for %s: %s", today, summary)
        return run

    async def _send_owner_report(self, telegram_id: int, report: MonthlyReport) -> str | None:
        """Send the report's text, then its chart; None when the text went out, else why not
        (the chart is best effort: resending the text for a lost picture would send it twice)."""
        assert self.bot is not None and self.i18n is not None
        i18n, language = self.i18n, self.config.program.default_language

        def _(key: str, /, **params: object) -> str:
            return i18n.t(language, key, **params)

        lines = [_("report.owner_intro"), "", *summary_lines(report, _)]
        try:
            for chunk in message_chunks(lines):
                await self.bot.send_message(telegram_id, chunk)
        except TelegramError as exc:
            log.warning("could not send the monthly report to owner %s: %s", telegram_id, exc)
            return redact(str(exc), f"/bot{self.bot.token}/")
        font = self.config.wheel.font if self.config.wheel is not None else ""
        try:
            picture = await asyncio.to_thread(flow_chart, report, _, font)
            await self.bot.send_photo(
                telegram_id, picture.png, caption=chart_caption(report, picture, _)
            )
        except Exception:  # the figures arrived: a lost picture is only logged
            log.warning("could not send the report's chart to owner %s", telegram_id, exc_info=True)
        return None

    async def catch_up(self, now: datetime) -> list[str]:
        """Run what was missed while the bot was down: today's jobs if their time has passed,
        and the daily pushes of missed days (at most `catch_up_days` back)."""
        config, push = self.config, self.config.push
        today = local_today(now, config)
        local_now = now.astimezone(config.program.tz).time()
        done: list[str] = []
        swept = await self.pushes.job_ran(SWEEP_JOB, today)
        if not swept and local_now >= push.sweep_at:
            await self.sweep(now)
            done.append(f"{SWEEP_JOB} {today}")
        last = await self.pushes.last_run_day(DAILY_JOB)
        first = today - timedelta(days=push.catch_up_days)
        if last is not None:
            first = max(first, last + timedelta(days=1))
        day = first if last is not None else today
        while day <= today:
            if day < today or local_now >= push.daily_at:
                await self.daily(now, day=day)
                done.append(f"{DAILY_JOB} {day}")
            day += timedelta(days=1)
        if not await self.pushes.job_ran(VOUCHER_JOB, today) and local_now >= push.daily_at:
            # One run covers every day missed: it works from the database up to today.
            await self.vouchers(now)
            done.append(f"{VOUCHER_JOB} {today}")
        # A month's report missed on its first day goes out at the next start.
        due = local_now >= push.daily_at or today.day > 1
        if due and await self.green_report(now) is not None:
            done.append(f"{GREEN_JOB} {today}")
        # Listed when a report went out (an owner who cannot be reached is tried again later).
        if due and (owners := await self.owner_reports(now)) is not None and owners.sent:
            done.append(f"{OWNER_REPORT_JOB} {today}")
        return done


class Sender:
    """Drains the outbox at the configured rate, each push at least or at most once by kind."""

    # Each push is marked 'sending' in a commit of its own right before its request and gets
    # its outcome right after, so the only pushes whose fate is unknown are those a crash (or
    # a lost answer) caught in between; the first drain after a start decides them: a service
    # push is sent again, a marketing one is not unless configured (README "Pushes"). A
    # block, a rate limit or a flaky network each get their own treatment.

    def __init__(
        self, bot: Bot, pushes: Pushes, config: Config, i18n: I18n, clock: Clock = system_clock
    ) -> None:
        self.bot = bot
        self.pushes = pushes
        self.config = config
        self.i18n = i18n
        self.clock = clock
        self.interval = 1 / config.push.rate_per_second
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # One drain at a time: two would both read the same pending rows and send them twice.
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._next_slot = 0.0
        # Whether this sender has decided what the previous run left 'sending'.
        self._settled = False
        # The leader's epoch, checked as each push is handed over (bot/leader.py; None: not
        # checked); and who is told when it is over.
        self.epoch: int | None = None
        self.on_not_leader: Callable[[str], None] | None = None
        self.sent = 0

    def wake(self) -> None:
        """New pushes are waiting: stop idling."""
        self._wake.set()

    def start(self) -> None:
        """Run the sender in the background until `stop`."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="outbox-sender")

    async def stop(self) -> None:
        """Stop after the push in flight, once its outcome is recorded."""
        if self._task is None:
            return
        task, self._task = self._task, None
        self._stopping.set()
        self._wake.set()
        try:
            # A request in flight ends within its timeouts; cancelling it instead would leave
            # its push in doubt ('sending') for no reason.
            await asyncio.wait_for(asyncio.shield(task), timeout=STOP_GRACE)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            self._stopping.clear()  # a later drain() (or start()) sends again

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = await self.drain()
            except NotLeader as exc:  # another process leads: its sender sends from now on
                log.error("outbox sender stopped: %s", exc)
                if self.on_not_leader is not None:
                    self.on_not_leader(str(exc))
                return
            except Exception:  # the sender must outlive a bad row or a database hiccup
                log.exception("outbox sender failed; retrying shortly")
                sent = 0
            if not sent:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    async def drain(self, *, limit: int = 200) -> int:
        """Send what is due now, paced; return how many pushes were handled."""
        async with self._lock:
            if not self._settled:
                await self._settle()
            local = self.clock().astimezone(self.config.program.tz).time()
            marketing = not self.config.push.is_quiet(local)
            batch = await self.pushes.due(marketing=marketing, limit=limit)
            handled = 0
            for message in batch:
                if self._stopping.is_set():
                    break
                await self._deliver(message)
                handled += 1
            return handled

    async def _settle(self) -> None:
        """Decide the pushes a crash left 'sending' (before this sender sends anything)."""
        resend = self.config.push.resend_unconfirmed_marketing
        settled = await self.pushes.settle_interrupted(resend_marketing=resend)
        self._settled = True
        if settled.again or settled.unconfirmed:
            log.warning(
                "pushes interrupted while sending: %d queued again, %d marketing pushes"
                " left unconfirmed (they may have arrived)",
                settled.again,
                settled.unconfirmed,
            )

    async def _sleep(self, seconds: float) -> bool:
        """Wait `seconds`, or less when stopping; False when stopping."""
        if seconds > 0 and not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        return not self._stopping.is_set()

    async def _pace(self) -> bool:
        """Wait for this push's slot; False when stopping."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        wait = self._next_slot - now
        self._next_slot = max(now, self._next_slot) + self.interval
        return await self._sleep(wait)

    def _error_text(self, exc: Exception) -> str:
        """What is kept of a failure: never the token (it would reach backups and logs)."""
        return redact(str(exc), f"/bot{self.bot.token}/")

    async def _deliver(self, message: OutboxMessage) -> None:
        now = self.clock()
        if not message.reachable:
            await self.pushes.mark(message.id, "unreachable", now, "member blocked the bot")
            return
        marketing = message.category != SERVICE
        if marketing and not message.marketing_opt_in:
            await self.pushes.mark(message.id, "skipped", now, "marketing opt-out")
            return
        language = resolve_language(
            message.language, message.telegram_language, self.config.program.default_language
        )
        # A parameter given per language ({"zh-CN": …, "en": …}) is rendered in the member's.
        params = {
            name: value.get(language, next(iter(value.values())))
            if isinstance(value, dict) and value
            else value
            for name, value in message.params.items()
        }
        text = self.i18n.t(language, message.message_key, **params)
        markup = None
        if message.buttons:
            markup = InlineKeyboardMarkup(
                [
                    [InlineKeyboardButton(self.i18n.t(language, key), callback_data=data)]
                    for row in message.buttons
                    for key, data in row
                ]
            )
        while True:
            if not await self._pace():
                return  # stopping: the push is still pending
            attempts = await self.pushes.start_sending(message.id, self.epoch)
            if not attempts:
                return  # no longer pending
            # From here until the outcome is recorded the push is 'sending': a crash leaves
            # it in doubt (see `_settle`).
            try:
                await self.bot.send_message(message.telegram_id, text, reply_markup=markup)
            except RetryAfter as exc:
                with warnings.catch_warnings():
                    # PTB 22 announces retry_after becoming a timedelta; both are handled.
                    warnings.simplefilter("ignore", PTBDeprecationWarning)
                    wait = exc.retry_after
                seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
                log.warning("rate limited by Telegram: waiting %.0f s", seconds)
                # Refused, so nothing arrived: pending again while waiting.
                error = f"rate limited: retry after {seconds:.0f} s"
                await self.pushes.mark(message.id, "pending", self.clock(), error)
                if not await self._sleep(seconds):
                    return
                continue
            except Forbidden as exc:
                await self.pushes.set_reachable(message.telegram_id, False)
                await self._record(message.id, "unreachable", exc)
            except BadRequest as exc:
                await self._record(message.id, "failed", exc)
            except NotSent as exc:  # no connection: certainly not delivered
                await self._retry_later(message.id, attempts, exc)
            except NetworkError as exc:
                # A timeout or a dropped connection after the request left: Telegram may have
                # delivered it, exactly as when the bot dies right after a send.
                if marketing and not self.config.push.resend_unconfirmed_marketing:
                    await self._record(message.id, "unconfirmed", exc)
                else:
                    await self._retry_later(message.id, attempts, exc)
            except TelegramError as exc:  # Telegram answered with an error: nothing arrived
                await self._retry_later(message.id, attempts, exc)
            else:
                await self.pushes.mark(message.id, "sent", self.clock())
                self.sent += 1
            return

    async def _record(self, message_id: int, status: str, exc: Exception) -> None:
        await self.pushes.mark(message_id, status, self.clock(), self._error_text(exc))

    async def _retry_later(self, message_id: int, attempts: int, exc: Exception) -> None:
        """Pending again, or failed for good after MAX_ATTEMPTS requests."""
        status = "failed" if attempts >= MAX_ATTEMPTS else "pending"
        await self._record(message_id, status, exc)
