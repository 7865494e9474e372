"""Households through the sandbox with two and three members: create, invite by link and by
code, accept and decline (the inviter told either way), expired and used invitations, a full
household, leaving, removing, handing over, the share switch and the household at a glance,
and staff who see and dissolve a household."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from bot.config import Config
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotEvent
from handlers.points import format_code
from storage.members import Member
from tests.conftest import NOW, SEED_EXPIRY, Sandbox, assert_audit_ok, member_with

ANN, BOB, CAT, DAN = 6101, 6102, 6103, 6104
INTRO = "👨‍👩‍👧 家庭积分"
EXPIRED_BUTTON = "此按钮已失效，请重新操作。"


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, the ledger still adds up."""
    sandbox.services.clock = lambda: NOW
    yield
    await assert_audit_ok(sandbox)


def small_households(config: Config) -> Config:
    """Households of at most two."""
    family = config.family.model_copy(update={"max_members": 2})
    return config.model_copy(update={"family": family})


async def joined(sandbox: Sandbox, user_id: int, name: str, lang: str = "zh-hans") -> ChatClient:
    """A member who sent /start (their name as Telegram shows it)."""
    chat = sandbox.member(user_id, name, lang)
    await chat.send("/start")
    return chat


async def the_member(sandbox: Sandbox, user_id: int) -> Member:
    found = await sandbox.services.members.by_telegram_id(user_id)
    assert found is not None
    return found


async def created(chat: ChatClient) -> BotEvent:
    """The member opens /family and creates a household; the household view."""
    await chat.send("/family")
    outputs = await chat.tap("🏠")
    return outputs[-1]


async def invitation(chat: ChatClient) -> tuple[str, str]:
    """The member taps Invite on their household view: (the deep-link payload, the code)."""
    [view] = await chat.send("/family")
    outputs = await chat.tap("➕", message=view)
    text = outputs[-1].text or ""
    link = next(w for w in text.split() if w.startswith("https://t.me/"))
    code = text.rsplit("/join ", 1)[1].strip()
    return link.split("?start=", 1)[1], code


def payload_of(offer: BotEvent) -> str:
    """The invitation token the accept button of an offer carries."""
    data = offer.keyboard[0][0].callback_data or ""
    return data.removeprefix("fam:ok:")


def only(outputs: list[BotEvent]) -> BotEvent:
    """The one message a tap showed (its toast aside)."""
    shown_all = [e for e in outputs if e.kind != "callback_answer"]
    assert len(shown_all) == 1, [(e.kind, e.text) for e in outputs]
    [shown] = shown_all
    return shown


async def told(chat: ChatClient, text: str) -> None:
    """Wait for the outbox to deliver exactly this message to the member."""

    def arrived() -> bool:
        return any(m.text == text for m in chat.emu.messages(chat.user_id))

    await chat.emu.wait_for(chat.user_id, arrived, 5)


async def household_of_three(sandbox: Sandbox) -> tuple[ChatClient, ChatClient, ChatClient]:
    """Ann heads a household; Bob joined first, Cat an hour later."""
    ann, bob, cat = (
        await joined(sandbox, ANN, "安安"),
        await joined(sandbox, BOB, "宝宝"),
        await joined(sandbox, CAT, "Cat", "en"),
    )
    await created(ann)
    for chat, later in ((bob, 0), (cat, 1)):
        sandbox.services.clock = lambda later=later: NOW + timedelta(hours=later)  # type: ignore[misc]
        payload, _code = await invitation(ann)
        await chat.send(f"/start {payload}", expect=2)
        await chat.tap("✅")
    # The inviter's notices are delivered before anything else is asserted.
    await told(ann, "🎉 宝宝 接受了您的邀请，已加入您的家庭。")
    await told(ann, "🎉 Cat 接受了您的邀请，已加入您的家庭。")
    sandbox.services.clock = lambda: NOW + timedelta(hours=2)
    return ann, bob, cat


# --- creating and inviting --------------------------------------------------------------------


async def test_a_household_by_link_accepted_and_the_inviter_told(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    [intro] = await ann.send("/family")
    assert (intro.text or "").startswith(INTRO)
    assert intro.buttons == ["🏠 建立我的家庭", "🔑 输入邀请码加入"]
    view = await created(ann)
    assert ann.last_callback_answer == "家庭已建立，您是户主。"
    assert (view.text or "").splitlines()[:2] == [
        "👨‍👩‍👧 我的家庭（1/6 人）",
        "👑 安安（我） · 未公开积分",
    ]
    assert view.buttons == ["➕ 邀请家人", "🎂 家人生日", "🚪 退出家庭"]
    payload, code = await invitation(ann)
    assert payload.startswith("fam_") and len(payload) <= 64 and len(code) == 6
    # Bob, new to the bot, opens the link: registered first, then shown the invitation.
    bob = sandbox.member(BOB, "Bob", "en")
    welcome, offer = await bob.send(f"/start {payload}", expect=2)
    assert (welcome.text or "").startswith("Welcome")
    assert (await the_member(sandbox, BOB)).start_payload == payload
    assert offer.text == (
        "✉️ 安安 invites you to join their household (1 now: 安安).\n"
        "Members can give points to each other and see the balances of those who share them."
        " Join?"
    )
    glance = only(await bob.tap("✅ Join", message=offer))
    assert bob.last_callback_answer == "You joined the household"
    lines = (glance.text or "").splitlines()
    assert lines[0] == "🎉 You joined 安安's household."
    assert lines[2:4] == ["👨‍👩‍👧 My household (2 of 6)", "👑 安安 · balance not shared"]
    assert glance.buttons == [
        "➕ Invite family",
        "💸 安安",
        "🎂 Family birthdays",
        "🚪 Leave household",
    ]
    # A double tap of Join (the same callback again) books nothing more.
    await bob.tap_data(offer.message_id, f"fam:ok:{payload.removeprefix('fam_')}", expect=0)
    assert bob.last_callback_answer == "You are already in this household."
    ann_id = (await the_member(sandbox, ANN)).id
    assert [b.callback_data for row in glance.keyboard for b in row][1:3] == [
        f"tr:to:{ann_id}",
        "dep:list",
    ]
    await told(ann, "🎉 Bob 接受了您的邀请，已加入您的家庭。")
    # The head's view now has the head's buttons.
    [head_view] = await ann.send("/family")
    assert head_view.buttons == [
        "➕ 邀请家人",
        "💸 Bob",
        "🎂 家人生日",
        "➖ 移除成员",
        "👑 转让户主",
        "🚪 退出家庭",
    ]
    # Staff see the household in /member.
    bob_member = await the_member(sandbox, BOB)
    [info] = await sandbox.admin().send(f"/member {bob_member.member_code}")
    ann_code = format_code((await the_member(sandbox, ANN)).member_code)
    bob_code = format_code(bob_member.member_code)
    assert (info.text or "").splitlines()[-1] == (
        f"🏠 家庭 #1，户主 安安，共 2 人：安安（{ann_code}）、Bob（{bob_code}）"
    )


async def test_a_code_typed_then_declined_and_the_inviter_told(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    bob = await joined(sandbox, BOB, "宝宝")
    await created(ann)
    _payload, code = await invitation(ann)
    # Lower case, with a dash: still the code.
    [offer] = await bob.send(f"/join {code[:3].lower()}-{code[3:]}")
    assert (offer.text or "").startswith("✉️ 安安 邀请您加入 TA 的家庭（现有 1 人：安安）。")
    closed = only(await bob.tap("❌ 不加入", message=offer))
    assert closed.text == "您已谢绝 安安 的邀请，我们会告诉 TA。"
    await told(ann, "宝宝 谢绝了您的家庭邀请。")
    await bob.tap_data(offer.message_id, f"fam:no:{payload_of(offer)}", expect=0)
    assert bob.last_callback_answer == "您已经谢绝过这个邀请了。"
    [again] = await bob.send(f"/join {code}")
    assert again.text == "这个邀请已经用过了。每个邀请只能使用一次，请让家人重新邀请。"
    [bob_view] = await bob.send("/family")
    assert (bob_view.text or "").startswith(INTRO)


async def test_the_join_button_asks_for_the_code_until_it_is_one(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    bob = await joined(sandbox, BOB, "宝宝")
    await created(ann)
    _payload, code = await invitation(ann)
    [intro] = await bob.send("/family")
    ask = only(await bob.tap("🔑 输入邀请码加入", message=intro))
    assert ask.text == "🔑 请输入家人给您的邀请码（发送 /cancel 取消）："
    [wrong] = await bob.send("12")
    assert wrong.text == "邀请码应为 6 位字母或数字，请检查后重新输入，或发送 /cancel 取消。"
    [offer] = await bob.send(code)
    assert offer.buttons == ["✅ 加入", "❌ 不加入"]
    await bob.tap("✅ 加入", message=offer)
    await told(ann, "🎉 宝宝 接受了您的邀请，已加入您的家庭。")
    # /join alone asks too; /join CODE meanwhile is answered; /cancel leaves it.
    await bob.send("/join")
    [used] = await bob.send(f"/join {code}")
    assert used.text == "这个邀请已经用过了。每个邀请只能使用一次，请让家人重新邀请。"
    [asked] = await bob.send("/join")
    assert asked.text == "🔑 请输入家人给您的邀请码（发送 /cancel 取消）："
    [cancelled] = await bob.send("/cancel")
    assert cancelled.text == "好的，已取消。"


async def test_an_expired_invitation_is_refused(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    bob = await joined(sandbox, BOB, "宝宝")
    await created(ann)
    payload, code = await invitation(ann)
    # Shown just before it lapses, tapped just after: refused at the tap too.
    sandbox.services.clock = lambda: NOW + timedelta(hours=47, minutes=59)
    _welcome, offer = await bob.send(f"/start {payload}", expect=2)
    sandbox.services.clock = lambda: NOW + timedelta(hours=48)
    await bob.tap("✅ 加入", message=offer, expect=0)
    assert bob.last_callback_answer == "这个邀请已过期，请让家人重新邀请。"
    [late] = await bob.send(f"/join {code}")
    assert late.text == "这个邀请已过期，请让家人重新邀请。"
    [bob_view] = await bob.send("/family")
    assert (bob_view.text or "").startswith(INTRO)


async def test_an_invitation_is_for_one_person(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    bob = await joined(sandbox, BOB, "宝宝")
    cat = await joined(sandbox, CAT, "Cat", "en")
    await created(ann)
    payload, _code = await invitation(ann)
    _w, bob_offer = await bob.send(f"/start {payload}", expect=2)
    _w, cat_offer = await cat.send(f"/start {payload}", expect=2)
    await bob.tap("✅ 加入", message=bob_offer)
    # Cat had the offer on screen too: the second use is refused.
    await cat.tap("✅ Join", message=cat_offer, expect=0)
    assert cat.last_callback_answer == (
        "This invitation has already been used. Each one is for one person: ask for a new one."
    )
    [_welcome, used] = await cat.send(f"/start {payload}", expect=2)
    assert used.text == (
        "This invitation has already been used. Each one is for one person: ask for a new one."
    )
    # Ann opening her own link is told to forward it.
    await told(ann, "🎉 宝宝 接受了您的邀请，已加入您的家庭。")
    again, _code = await invitation(ann)
    [_welcome, own] = await ann.send(f"/start {again}", expect=2)
    assert own.text == "这是您自己发出的邀请，请转发给家人使用。"


@pytest.mark.parametrize("configure", [[small_households]])
async def test_a_full_household_takes_no_one_more(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    bob = await joined(sandbox, BOB, "宝宝")
    cat = await joined(sandbox, CAT, "Cat", "en")
    await created(ann)
    for_bob, _code = await invitation(ann)
    for_cat, _code = await invitation(ann)
    _w, cat_offer = await cat.send(f"/start {for_cat}", expect=2)
    _w, bob_offer = await bob.send(f"/start {for_bob}", expect=2)
    await bob.tap("✅ 加入", message=bob_offer)
    await cat.tap("✅ Join", message=cat_offer, expect=0)
    assert cat.last_callback_answer == "This household is full (at most 2 people)."
    await told(ann, "🎉 宝宝 接受了您的邀请，已加入您的家庭。")
    # The full household offers no invite button.
    [view] = await ann.send("/family")
    assert (view.text or "").startswith("👨‍👩‍👧 我的家庭（2/2 人）")
    assert "➕ 邀请家人" not in view.buttons


async def test_a_member_in_a_household_cannot_accept_another(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    bob = await joined(sandbox, BOB, "宝宝")
    await created(ann)
    await created(bob)
    payload, code = await invitation(ann)
    [_welcome, refused] = await bob.send(f"/start {payload}", expect=2)
    assert refused.text == (
        "您已经在一个家庭中了。每人同一时间只能属于一个家庭，请先退出现在的家庭。"
    )
    # A forged accept with the real token is refused in the store as well.
    await bob.tap_data(refused.message_id, f"fam:ok:{payload.removeprefix('fam_')}", expect=0)
    assert bob.last_callback_answer == refused.text
    [creating] = await bob.send("/family")
    assert "宝宝（我）" in (creating.text or "")
    del code


# --- leaving, removing, handing over ---------------------------------------------------------


async def test_a_member_leaves_and_the_others_are_told(sandbox: Sandbox) -> None:
    ann, bob, cat = await household_of_three(sandbox)
    [view] = await cat.send("/family")
    ask = only(await cat.tap("🚪 Leave household", message=view))
    assert ask.text == "Leave the household?"
    assert ask.buttons == ["🚪 Yes, leave", "↩️ Back"]
    left = only(await cat.tap("🚪 Yes, leave", message=ask))
    assert left.text == "You left the household."
    await told(ann, "Cat 已退出家庭。")
    await told(bob, "Cat 已退出家庭。")
    # The confirmation tapped again changes nothing more.
    await cat.tap_data(ask.message_id, "fam:lvy", expect=0)
    assert cat.last_callback_answer == "You are not in a household. Send /family to start one."


async def test_the_head_leaves_and_the_longest_standing_member_heads(sandbox: Sandbox) -> None:
    ann, bob, cat = await household_of_three(sandbox)
    [view] = await ann.send("/family")
    ask = only(await ann.tap("🚪 退出家庭", message=view))
    assert ask.text == "确定要退出家庭吗？您是户主，退出后户主将由 宝宝 接任。"
    await ann.tap("🚪 确定退出", message=ask)
    await told(bob, "安安 已退出家庭，现在由您担任户主。")
    await told(cat, "安安 left the household.")
    [bob_view] = await bob.send("/family")
    assert (bob_view.text or "").splitlines()[1] == "👑 宝宝（我） · 未公开积分"
    assert "➖ 移除成员" in bob_view.buttons
    # Bob and Cat leave too: the last one out ends it, told so before.
    await bob.send("/family")
    await bob.tap("🚪")
    await bob.tap("🚪 确定退出")
    await told(cat, "宝宝 left the household; you are its head now.")
    [cat_view] = await cat.send("/family")
    last = only(await cat.tap("🚪", message=cat_view))
    assert last.text == "Leave the household? You are its last member, so it will end."
    await cat.tap("🚪 Yes, leave", message=last)
    kinds = await sandbox.services.store.read(
        lambda c: [r[0] for r in c.execute("SELECT kind FROM household_events ORDER BY id")]
    )
    assert kinds[-3:] == ["head_changed", "left", "dissolved"]


async def test_the_head_removes_a_member_after_a_second_tap(sandbox: Sandbox) -> None:
    ann, bob, cat = await household_of_three(sandbox)
    cat_id = (await the_member(sandbox, CAT)).id
    [view] = await ann.send("/family")
    pick = only(await ann.tap("➖ 移除成员", message=view))
    assert pick.text == "要移除哪位成员？" and pick.buttons == ["宝宝", "Cat", "↩️ 返回"]
    ask = only(await ann.tap("Cat", message=pick))
    assert ask.text == "确定要把 Cat 移出家庭吗？我们会通知 TA。"
    # A member who is not the head cannot forge the step.
    [bob_view] = await bob.send("/family")
    await bob.tap_data(bob_view.message_id, f"fam:rmy:{cat_id}", expect=0)
    assert bob.last_callback_answer == "只有户主可以这样做。"
    after = only(await ann.tap("➖ 确定移除", message=ask))
    assert ann.last_callback_answer == "已将 Cat 移出家庭。"
    assert (after.text or "").startswith("👨‍👩‍👧 我的家庭（2/6 人）")
    await told(cat, "The head of your household removed you from it. Your points are not affected.")
    # The confirmation is stale now.
    await ann.tap_data(ask.message_id, f"fam:rmy:{cat_id}", expect=0)
    assert ann.last_callback_answer == "该成员已不在您的家庭中，此按钮已失效。"


async def test_the_head_hands_over_and_both_see_it(sandbox: Sandbox) -> None:
    ann, bob, _cat = await household_of_three(sandbox)
    [view] = await ann.send("/family")
    pick = only(await ann.tap("👑 转让户主", message=view))
    ask = only(await ann.tap("宝宝", message=pick))
    assert ask.text == "确定把户主转让给 宝宝 吗？转让后您将不能再移除成员。"
    after = only(await ann.tap("👑 确定转让", message=ask))
    assert ann.last_callback_answer == "户主已转让给 宝宝。"
    assert (after.text or "").splitlines()[1] == "👑 宝宝 · 未公开积分"
    assert "👑 转让户主" not in after.buttons
    await told(bob, "👑 安安 把户主转让给了您，现在您可以移除成员或再转让户主。")
    # Ann's old confirmation is refused: she is no longer head.
    await ann.tap_data(ask.message_id, f"fam:hdy:{(await the_member(sandbox, BOB)).id}", expect=0)
    assert ann.last_callback_answer == "只有户主可以这样做。"


# --- sharing and the glance -----------------------------------------------------------------


async def test_the_share_switch_and_the_household_at_a_glance(sandbox: Sandbox) -> None:
    await member_with(sandbox, ANN, 120)
    await member_with(sandbox, BOB, 80, "en")
    ann = sandbox.member(ANN)
    bob = sandbox.member(BOB, language_code="en")
    await created(ann)
    payload, _code = await invitation(ann)
    await bob.send(f"/start {payload}", expect=2)
    await bob.tap("✅")
    await told(ann, "🎉 小明 接受了您的邀请，已加入您的家庭。")
    [settings] = await bob.send("/settings")
    assert (settings.text or "").splitlines()[-2] == "Share my balance with my household: off"
    shared = only(await bob.tap("👨‍👩‍👧 Share my balance with my household", message=settings))
    assert (
        bob.last_callback_answer == "On: your household can see your balance and what expires soon."
    )
    assert (shared.text or "").splitlines()[-2] == "Share my balance with my household: on"
    assert "👨‍👩‍👧 Stop sharing my balance" in shared.buttons
    day = (SEED_EXPIRY - timedelta(microseconds=1)).astimezone(sandbox.config.program.tz).date()
    [view] = await ann.send("/family")
    assert (view.text or "").splitlines() == [
        "👨‍👩‍👧 我的家庭（2/6 人）",
        "👑 小明（我） · 未公开积分",
        f"• 小明 · 80 积分，其中 80 积分 {day.isoformat()} 到期",
        "公开积分合计：80 积分（1 人公开）",
        "💡 您的积分未对家人公开，可在 /settings 中开启。",
    ]
    off = only(await bob.tap("👨‍👩‍👧 Stop sharing my balance", message=shared))
    assert (off.text or "").splitlines()[-2] == "Share my balance with my household: off"
    [hidden] = await ann.send("/family")
    assert "公开积分合计：0 积分（0 人公开）" in (hidden.text or "")


async def test_the_menu_opens_the_household(sandbox: Sandbox) -> None:
    ann = sandbox.member(ANN, "安安")
    [welcome] = await ann.send("/start")
    assert "👨‍👩‍👧 我的家庭" in welcome.buttons
    view = only(await ann.tap("👨‍👩‍👧 我的家庭", message=welcome))
    assert (view.text or "").startswith(INTRO)


# --- staff -----------------------------------------------------------------------------------


async def test_staff_dissolve_a_household_with_a_reason(sandbox: Sandbox) -> None:
    ann, bob, cat = await household_of_three(sandbox)
    code = (await the_member(sandbox, BOB)).member_code
    admin = sandbox.admin()
    [no_reason] = await admin.send(f"/dissolve_household {code}")
    assert no_reason.text == "请写明解散原因：/dissolve_household <会员号> <原因>"
    # Members are not staff.
    [denied] = await ann.send(f"/dissolve_household {code} 测试")
    assert denied.text == "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"
    [done] = await admin.send(f"/dissolve_household {format_code(code)} 会员 申请解散")
    assert done.text == "已解散家庭 #1（3 人），原因：会员 申请解散。已通知全部成员。"
    await told(bob, "您所在的家庭已被门店工作人员解散。原因：会员 申请解散。您的积分不受影响。")
    await told(
        cat,
        "Store staff dissolved your household. Reason: 会员 申请解散."
        " Your points are not affected.",
    )
    [info] = await admin.send(f"/member {code}")
    assert (info.text or "").splitlines()[-1] == "🏠 家庭：无"
    [again] = await admin.send(f"/dissolve_household {code} again")
    assert again.text == "该会员不在任何家庭中。"
    await told(ann, "您所在的家庭已被门店工作人员解散。原因：会员 申请解散。您的积分不受影响。")
    [view] = await ann.send("/family")
    assert (view.text or "").startswith(INTRO)


# --- forged and stale buttons ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "answer"),
    [
        ("fam:nope", EXPIRED_BUTTON),
        ("fam:rm:abc", EXPIRED_BUTTON),
        ("fam:lv:1", EXPIRED_BUTTON),
        ("fam:ok:!!", EXPIRED_BUTTON),
        ("fam:ok:AAAAAAAAAAAAAAAA", "找不到这个邀请，请向家人确认链接或邀请码。"),
        ("fam:lvy", "您目前不在任何家庭中。发送 /family 可以建立家庭。"),
        ("fam:rm:99", "您目前不在任何家庭中。发送 /family 可以建立家庭。"),
        ("fam:hdl", "您目前不在任何家庭中。发送 /family 可以建立家庭。"),
    ],
)
async def test_forged_buttons_change_nothing(sandbox: Sandbox, data: str, answer: str) -> None:
    dan = await joined(sandbox, DAN, "丹丹")
    [intro] = await dan.send("/family")
    await dan.tap_data(intro.message_id, data, expect=0)
    assert dan.last_callback_answer == answer
    events = await sandbox.services.store.read(
        lambda c: c.execute("SELECT count(*) FROM household_events").fetchone()[0]
    )
    assert events == 0


async def test_households_can_be_turned_off(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    del configure
    family = sandbox.services.config.family.model_copy(update={"enabled": False})
    sandbox.services.config = sandbox.services.config.model_copy(update={"family": family})
    [off] = await (await joined(sandbox, DAN, "丹丹")).send("/family")
    assert off.text == "本活动暂未开放家庭功能。"
