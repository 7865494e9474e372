"""Announced expiry-policy changes and operators' broadcasts, through the CLI and the sandbox."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.programme.expiry import expires_at, last_valid_day
from tests.conftest import NOW, SAMPLE, PinnedCliRunner, Sandbox, joined

BOT_TEXT = "🎂"


def config_file(sandbox: Sandbox, tmp_path: Path) -> Path:
    """The sample programme pointing at the running bot's database."""
    path = tmp_path / "config.toml"
    text = SAMPLE.read_text(encoding="utf-8").replace(
        'path = "data/pointsbot.sqlite3"', f'path = "{sandbox.config.storage.path}"'
    )
    path.write_text(text, encoding="utf-8")
    return path


def schedule(config: Path, effective: date, *extra: str) -> tuple[int, str]:
    result = PinnedCliRunner().invoke(
        main,
        [
            "schedule-policy-change",
            "--config",
            str(config),
            "--effective",
            effective.isoformat(),
            *extra,
        ],
    )
    return result.exit_code, result.output


async def test_a_change_too_soon_is_refused_with_the_reason(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    await sandbox.member(3001).send("/start")
    soon = NOW.astimezone(sandbox.config.program.tz).date() + timedelta(days=29)
    code, output = schedule(
        config_file(sandbox, tmp_path), soon, "--mode", "rolling", "--months", "6"
    )
    assert code == 2
    first = soon + timedelta(days=1)
    reason = f"生效日 {soon.isoformat()} 太早：规则变更须至少提前 30 天通知会员，"
    assert reason + f"最早可定在 {first.isoformat()}。" in output
    assert await sandbox.services.pushes.term_changes() == []


async def test_an_announced_change_notifies_everyone_once_and_applies_only_after(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    for user_id, lang in ((3002, "zh-hans"), (3003, "en")):
        await sandbox.member(user_id, language_code=lang).send("/start")
    today = NOW.astimezone(sandbox.config.program.tz).date()
    effective = today + timedelta(days=45)
    config = config_file(sandbox, tmp_path)
    code, output = schedule(config, effective, "--mode", "rolling", "--months", "6")
    assert code == 0, output
    assert "2 member notices queued" in output
    # The same day announced twice is refused; nothing more is queued.
    again, output = schedule(config, effective, "--mode", "rolling", "--months", "3")
    assert again == 2 and "already announced" in output
    services = sandbox.services
    await services.refresh_policies()
    await services.sender.drain()
    zh = [m.text or "" for m in sandbox.emu.messages(3002) if m.from_bot]
    en = [m.text or "" for m in sandbox.emu.messages(3003) if m.from_bot]
    day = effective.isoformat()
    assert (
        zh.count(
            f"📢 积分规则变更通知：自 {day} 起，此后获得的积分自获得之日起 6 个月内有效，"
            "此前获得的积分有效期不变。发送 /rules 查看完整规则。"
        )
        == 1
    )
    assert (
        en.count(
            f"📢 A change to the points rules: from {day}, points earned from then on are valid for"
            " 6 months from the day they are earned; points earned before keep their expiry."
            " Send /rules for the full rules."
        )
        == 1
    )
    # Bonus points earned before the day keep 12 months; from the day, 6. Purchase points
    # are listed on their own ([expiry.sources]): the default's change leaves them for life.
    before = datetime.combine(
        effective - timedelta(days=1), datetime.min.time(), tzinfo=services.config.program.tz
    ) + timedelta(hours=12)
    after = before + timedelta(days=1)
    assert last_valid_day(before, services.config, "birthday") == date(
        before.year + 1, before.month, before.day
    )
    six = last_valid_day(after, services.config, "birthday")
    assert six is not None and six < last_valid_day(before, services.config, "birthday")  # type: ignore[operator]
    assert expires_at(after, services.config, "game") is not None
    assert expires_at(after, services.config, "purchase") is None
    rules = joined(await sandbox.member(3002).send("/rules"))
    assert (
        f"• 自 {day} 起：此后获得的积分自获得之日起 6 个月内有效，此前获得的积分有效期不变。"
        in (rules.text or "")
    )


def test_the_configuration_file_cannot_smuggle_a_change_in(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        SAMPLE.read_text(encoding="utf-8").replace(
            "policy_notice_days = 30",
            'policy_notice_days = 30\nscheduled = [{ effective_on = 2026-12-01, mode = "never" }]',
        ),
        encoding="utf-8",
    )
    result = PinnedCliRunner().invoke(main, ["check-config", "--config", str(path)])
    assert result.exit_code == 2
    assert "[expiry.scheduled]" in result.output and "schedule-policy-change" in result.output


async def test_broadcast_is_previewed_then_sent_once(sandbox: Sandbox) -> None:
    for user_id in (3010, 3011):
        await sandbox.member(user_id).send("/start")
    await sandbox.services.pushes.set_marketing(3011, False)
    services = sandbox.services
    services.clock = lambda: datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # 10:00, not quiet
    admin = sandbox.admin()
    [preview] = await admin.send("/broadcast 本周六门店环保日，带旧衣来换积分！")
    assert (preview.text or "").startswith(
        "预览（会员将看到）：\n\n📣 本周六门店环保日，带旧衣来换积分！"
    )
    assert "将发送给 2 位会员" in (preview.text or "")
    await admin.tap("✅ 确认发送")
    assert (admin.last_text or "").startswith("✅ 已加入发送队列：2 条消息")
    await admin.tap_data(
        preview.message_id,
        (preview.reply_markup or {})["inline_keyboard"][0][0]["callback_data"],
        expect=0,
    )
    await services.sender.drain()
    got = [m.text for m in sandbox.emu.messages(3010) if m.from_bot]
    assert got.count("📣 本周六门店环保日，带旧衣来换积分！") == 1
    assert "📣 本周六门店环保日，带旧衣来换积分！" not in [
        m.text for m in sandbox.emu.messages(3011)
    ]


async def test_broadcast_is_for_staff_and_forged_buttons_do_nothing(sandbox: Sandbox) -> None:
    member = sandbox.member(3020)
    await member.send("/start")
    [refused] = await member.send("/broadcast 免费送积分")
    assert refused.text == "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"
    [menu] = await member.send("/help")
    await member.tap_data(menu.message_id, "bc:ok:1", expect=0)
    assert member.last_callback_answer == (
        "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"
    )
    [usage] = await sandbox.admin().send("/broadcast")
    assert (usage.text or "").startswith("用法：/broadcast")
    assert await sandbox.services.pushes.counts() == {}


@pytest.mark.parametrize("language", ["zh-hans", "en"])
async def test_a_campaign_start_is_announced_in_each_members_language(
    sandbox: Sandbox, language: str
) -> None:
    await sandbox.member(3030, language_code=language).send("/start")
    services = sandbox.services
    services.clock = lambda: datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    await services.scheduler.daily(datetime(2026, 12, 1, 1, 0, tzinfo=UTC))  # green_winter starts
    await services.sender.drain()
    texts = [m.text or "" for m in sandbox.emu.messages(3030) if m.from_bot]
    expected = "冬季绿色消费月" if language == "zh-hans" else "Green Winter Month"
    assert sum(expected in t and "×2" in t for t in texts) == 1
