"""The Telegram conversation layer: one module per conversation, wired by `register`."""

from __future__ import annotations

from telegram import Update
from telegram.ext import (
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.i18n import N_
from handlers.admin import adjust, member_info, purchase, purchase_confirmation
from handlers.badges import badges_command, badges_menu
from handlers.broadcast import broadcast, broadcast_callback
from handlers.common import BotApp
from handlers.dependants import dependants_callback, dependants_conversation
from handlers.events import checkin_command, event_new, event_stats_command
from handlers.fallback import not_text, stale_button, stray_text, unknown_command
from handlers.family import (
    dissolve_household,
    family_callback,
    family_command,
    family_conversation,
)
from handlers.feedback import feedback_conversation, feedback_queue, review_callback
from handlers.flood import flood_guard
from handlers.games import fulfil_prize, game_callback, odds_command, prizes, scratch, wheel
from handlers.green import green, green_callback
from handlers.info import help_command, menu_callback, rules, start
from handlers.language import ask_language, language_callback
from handlers.mall import mall, mall_callback, redemptions, redemptions_callback
from handlers.mall_admin import (
    approve_return,
    cannot_fulfil,
    delist,
    fulfil,
    reject_return,
    return_review_callback,
    returns,
    stock,
)
from handlers.plans import (
    advisor_command,
    advisor_conversation,
    plan_conversation,
    plan_end,
    plan_log,
    plans_command,
    vip_command,
    vip_mark,
    vip_unmark,
)
from handlers.points import balance, card, history, history_callback
from handlers.purchase_returns import purchase_return
from handlers.referrals import invite
from handlers.reports import report_command
from handlers.settings import (
    birthday_conversation,
    chat_member_changed,
    reachable_again,
    settings,
    settings_callback,
)
from handlers.submissions import (
    queue_callback,
    review_category,
    review_command,
    review_conversation,
    share_command,
    share_photo_message,
    tasks_queue,
)
from handlers.surveys import survey_conversation, survey_stats_command, surveys_command
from handlers.tasks import tasks_command
from handlers.tiers import tier_command
from handlers.transfer import transfer_callback, transfer_command, transfer_conversation

# Commands shown in Telegram's menu: (command, message id of its description).
COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", N_("command.start")),
    ("balance", N_("command.balance")),
    ("history", N_("command.history")),
    ("card", N_("command.card")),
    ("mall", N_("command.mall")),
    ("redemptions", N_("command.redemptions")),
    ("wheel", N_("command.wheel")),
    ("scratch", N_("command.scratch")),
    ("odds", N_("command.odds")),
    ("prizes", N_("command.prizes")),
    ("surveys", N_("command.surveys")),
    ("tasks", N_("command.tasks")),
    ("tier", N_("command.tier")),
    ("badges", N_("command.badges")),
    ("transfer", N_("command.transfer")),
    ("feedback", N_("command.feedback")),
    ("share", N_("command.share")),
    ("review", N_("command.review")),
    ("family", N_("command.family")),
    ("checkin", N_("command.checkin")),
    ("invite", N_("command.invite")),
    ("green", N_("command.green")),
    ("advisor", N_("command.advisor")),
    ("settings", N_("command.settings")),
    ("rules", N_("command.rules")),
    ("language", N_("command.language")),
    ("help", N_("command.help")),
)


def register(app: BotApp) -> None:
    """Add every handler; order matters: features first, fallbacks last."""
    # Private chats only; an edited message is ignored on purpose (it must not redo an action).
    incoming = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    # Group -2 first: a private update from a member marked unreachable marks them reachable.
    app.add_handler(TypeHandler(Update, reachable_again), group=-2)
    # Group -1 runs before everything else: a flood is answered here and goes no further.
    app.add_handler(TypeHandler(Update, flood_guard), group=-1)
    # Every update is checked against the handlers in order until one takes it: what members
    # do all day comes first. None of these overlaps a conversation below (their buttons have
    # their own prefixes, and they wait for text that is not a command).
    app.add_handler(CommandHandler("balance", balance, filters=incoming))
    app.add_handler(CommandHandler("history", history, filters=incoming))
    app.add_handler(CommandHandler("mall", mall, filters=incoming))
    app.add_handler(CommandHandler("wheel", wheel, filters=incoming))
    app.add_handler(CommandHandler("scratch", scratch, filters=incoming))
    app.add_handler(CommandHandler("card", card, filters=incoming))
    app.add_handler(CommandHandler("start", start, filters=incoming))
    app.add_handler(CommandHandler("help", help_command, filters=incoming))
    app.add_handler(CommandHandler("rules", rules, filters=incoming))
    app.add_handler(CommandHandler("language", ask_language, filters=incoming))
    app.add_handler(CommandHandler("settings", settings, filters=incoming))
    app.add_handler(CommandHandler("redemptions", redemptions, filters=incoming))
    app.add_handler(CommandHandler("odds", odds_command, filters=incoming))
    app.add_handler(CommandHandler("prizes", prizes, filters=incoming))
    app.add_handler(CommandHandler("surveys", surveys_command, filters=incoming))
    app.add_handler(CommandHandler("tasks", tasks_command, filters=incoming))
    app.add_handler(CommandHandler("tier", tier_command, filters=incoming))
    app.add_handler(CommandHandler("family", family_command, filters=incoming))
    app.add_handler(CommandHandler("transfer", transfer_command, filters=incoming))
    app.add_handler(CommandHandler("badges", badges_command, filters=incoming))
    app.add_handler(CommandHandler("share", share_command, filters=incoming))
    app.add_handler(CommandHandler("review", review_command, filters=incoming))
    app.add_handler(CallbackQueryHandler(review_category, pattern=r"^rw:c:"))
    app.add_handler(CommandHandler("checkin", checkin_command, filters=incoming))
    app.add_handler(CommandHandler("invite", invite, filters=incoming))
    app.add_handler(CommandHandler("green", green, filters=incoming))
    app.add_handler(CommandHandler("advisor", advisor_command, filters=incoming))
    app.add_handler(CallbackQueryHandler(mall_callback, pattern=r"^mall:"))
    app.add_handler(CallbackQueryHandler(game_callback, pattern=r"^game:"))
    app.add_handler(CallbackQueryHandler(history_callback, pattern=r"^hist:"))
    # Before the menu's own handler, which does not know this item.
    app.add_handler(CallbackQueryHandler(badges_menu, pattern=r"^menu:badges$"))
    app.add_handler(CallbackQueryHandler(menu_callback, pattern=r"^menu:"))
    app.add_handler(CallbackQueryHandler(redemptions_callback, pattern=r"^red:"))
    app.add_handler(CallbackQueryHandler(language_callback, pattern=r"^lang:"))
    app.add_handler(CallbackQueryHandler(green_callback, pattern=r"^green:"))
    # Conversations waiting for typed text. Asking one ends the member's others
    # (handlers/questions.py), so their order does not decide which takes a text.
    app.add_handler(birthday_conversation())
    app.add_handler(dependants_conversation())
    app.add_handler(feedback_conversation())
    app.add_handler(survey_conversation())
    # The typed review (or a photo with it as caption), after a rating tapped ("rw:r:…").
    app.add_handler(review_conversation())
    # /join and the "join with a code" button wait for a typed invitation code.
    app.add_handler(family_conversation())
    # After the code conversation, whose entry is the "fam:code" button.
    app.add_handler(CallbackQueryHandler(family_callback, pattern=r"^fam:"))
    app.add_handler(transfer_conversation())
    # Staff's /plan: category buttons ("pl:…"), then typed terms, then confirm.
    app.add_handler(plan_conversation())
    # The "write to my advisor" button ("adv:ask") waits for the member's typed question.
    app.add_handler(advisor_conversation())
    # After the transfer conversation, whose entry is the "another amount" button.
    app.add_handler(CallbackQueryHandler(transfer_callback, pattern=r"^tr:"))
    # After the birthday conversation, whose entry is the settings' "set:birthday" button.
    app.add_handler(CallbackQueryHandler(settings_callback, pattern=r"^set:"))
    # After the family-birthday conversation, whose entries are "dep:kind:…" and "dep:chg:…".
    app.add_handler(CallbackQueryHandler(dependants_callback, pattern=r"^dep:"))
    app.add_handler(ChatMemberHandler(chat_member_changed, ChatMemberHandler.MY_CHAT_MEMBER))
    # Staff.
    app.add_handler(CommandHandler("feedback_queue", feedback_queue, filters=incoming))
    app.add_handler(CommandHandler("survey_stats", survey_stats_command, filters=incoming))
    app.add_handler(CallbackQueryHandler(review_callback, pattern=r"^fb:[ar]:"))
    app.add_handler(CommandHandler("tasks_queue", tasks_queue, filters=incoming))
    app.add_handler(CallbackQueryHandler(queue_callback, pattern=r"^sq:"))
    app.add_handler(CommandHandler("purchase", purchase, filters=incoming))
    app.add_handler(CallbackQueryHandler(purchase_confirmation, pattern=r"^tp:"))
    app.add_handler(CommandHandler("purchase_return", purchase_return, filters=incoming))
    app.add_handler(CommandHandler("adjust", adjust, filters=incoming))
    app.add_handler(CommandHandler("member", member_info, filters=incoming))
    app.add_handler(CommandHandler("fulfil", fulfil, filters=incoming))
    app.add_handler(CommandHandler("stock", stock, filters=incoming))
    app.add_handler(CommandHandler("delist", delist, filters=incoming))
    app.add_handler(CommandHandler("approve_return", approve_return, filters=incoming))
    app.add_handler(CommandHandler("reject_return", reject_return, filters=incoming))
    app.add_handler(CommandHandler("returns", returns, filters=incoming))
    app.add_handler(CallbackQueryHandler(return_review_callback, pattern=r"^rv:"))
    app.add_handler(CommandHandler("cannot_fulfil", cannot_fulfil, filters=incoming))
    app.add_handler(CommandHandler("fulfil_prize", fulfil_prize, filters=incoming))
    app.add_handler(CommandHandler("broadcast", broadcast, filters=incoming))
    app.add_handler(CallbackQueryHandler(broadcast_callback, pattern=r"^bc:"))
    app.add_handler(CommandHandler("dissolve_household", dissolve_household, filters=incoming))
    app.add_handler(CommandHandler("event_new", event_new, filters=incoming))
    app.add_handler(CommandHandler("event_stats", event_stats_command, filters=incoming))
    app.add_handler(CommandHandler("vip_mark", vip_mark, filters=incoming))
    app.add_handler(CommandHandler("vip_unmark", vip_unmark, filters=incoming))
    app.add_handler(CommandHandler("plan_end", plan_end, filters=incoming))
    app.add_handler(CommandHandler("plans", plans_command, filters=incoming))
    app.add_handler(CommandHandler("plan_log", plan_log, filters=incoming))
    app.add_handler(CommandHandler("vip", vip_command, filters=incoming))
    app.add_handler(CommandHandler("report", report_command, filters=incoming))

    app.add_handler(MessageHandler(incoming & filters.COMMAND, unknown_command))
    app.add_handler(MessageHandler(incoming & filters.TEXT, stray_text))
    # A photo no conversation waited for: a green share (handlers/submissions.py).
    app.add_handler(MessageHandler(incoming & filters.PHOTO, share_photo_message))
    app.add_handler(MessageHandler(incoming & ~filters.TEXT, not_text))
    app.add_handler(CallbackQueryHandler(stale_button))
