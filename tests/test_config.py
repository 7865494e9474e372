"""Configuration: the sample validates; every kind of mistake names its key."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bot.config import (
    MAX_POINTS_PER_YUAN,
    MAX_TELEGRAM_USER_ID,
    ConfigError,
    check_runnable,
    load_config,
    parse_config,
    unrunnable,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "config.example.toml"


def sample() -> dict[str, Any]:
    """The sample programme as a fresh mutable document."""
    return tomllib.loads(SAMPLE.read_text(encoding="utf-8"))


def test_sample_programme_validates() -> None:
    config = load_config(SAMPLE)
    assert config.program.brand == "红米好物"
    assert config.program.timezone == "Asia/Shanghai"
    assert config.program.default_language == "zh-CN"
    assert {c.id for c in config.earn.categories} >= {"general", "eco"}
    assert config.earn.category("eco") is not None


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["program"].pop("brand"), "[program.brand] is required but missing"),
        (
            lambda d: d["program"].update(timezone="Mars/Olympus"),
            "[program.timezone] unknown timezone",
        ),
        (lambda d: d["program"].update(default_language="fr"), "[program.default_language]"),
        (lambda d: d["program"].update(admins=["alice"]), "[program.admins[1]]"),
        (lambda d: d["program"]["name"].pop("en"), "[program.name.en] is required but missing"),
        (lambda d: d["program"].update(colour="green"), "[program.colour] is not a known setting"),
        (lambda d: d["earn"].update(points_per_yuan=0), "[earn.points_per_yuan]"),
        (
            lambda d: d["earn"]["categories"][1].update(multiplier="-2"),
            "[earn.categories[2].multiplier]",
        ),
        (lambda d: d["earn"]["categories"][1].update(id="Eco Goods"), "[earn.categories[2].id]"),
        (
            lambda d: d["earn"].update(default_category="toys"),
            "default_category 'toys' is not one of",
        ),
        (
            lambda d: d["earn"]["categories"].append(dict(d["earn"]["categories"][0])),
            "duplicate id general",
        ),
        (lambda d: d["expiry"].update(mode="sometimes"), "[expiry.mode]"),
        (lambda d: d["expiry"].update(policy_notice_days=7), "[expiry.policy_notice_days]"),
        (lambda d: d["redemption"].update(return_window_days=0), "[redemption.return_window_days]"),
        (lambda d: d["storage"].update(synchronous="SOMETIMES"), "[storage.synchronous]"),
        (
            lambda d: d["telegram"].update(base_url="ftp://x"),
            "[telegram.base_url] must start with http",
        ),
        (
            lambda d: d["campaigns"][0].update(ends=date(2026, 11, 30)),
            "campaign 'green_winter' ends (2026-11-30) before it starts",
        ),
        (lambda d: d["campaigns"][0].update(multiplier="1"), "[campaigns[1].multiplier]"),
        (
            lambda d: d["campaigns"][0].update(categories=["toys"]),
            "campaign 'green_winter' names unknown categories toys",
        ),
        (lambda d: d["campaigns"][0].update(starts="soon"), "[campaigns[1].starts]"),
        # Issue 16: a voucher's validity and what happens when it lapses unused.
        (lambda d: d["mall"]["items"][2].update(valid_days=0), "[mall.items[3].valid_days]"),
        (lambda d: d["mall"]["items"][2].update(valid_days=3651), "[mall.items[3].valid_days]"),
        (
            lambda d: d["mall"]["items"][0].update(valid_days=30),
            "item BAG-01: valid_days is for a voucher, deduction or service, not goods",
        ),
        (
            lambda d: d["mall"]["items"][4].update(refund_if_unused=True),
            "item CARWASH-01: refund_if_unused needs valid_days",
        ),
        (lambda d: d["mall"].update(voucher_reminder_days=0), "[mall.voucher_reminder_days]"),
    ],
)
def test_mistake_names_the_key(mutate: Any, expected: str) -> None:
    document = sample()
    mutate(document)
    with pytest.raises(ConfigError) as excinfo:
        parse_config(document, "config.toml")
    message = str(excinfo.value)
    assert message.startswith("config.toml: invalid configuration")
    assert expected in message


# Values the file's syntax allows and the programme must not run with (issue 15, defect 9).
@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["program"].update(admins="100000001"),
            "[program.admins] must be a list of Telegram user ids",
        ),
        (
            lambda d: d["program"].update(admins=100000001),
            "[program.admins] must be a list of Telegram user ids",
        ),
        (
            lambda d: d["program"].update(admins=[100000001, "100000002"]),
            "[program.admins[2]] a Telegram user id is a whole number without quotes, not",
        ),
        (
            lambda d: d["program"].update(admins=[-100000001]),
            "[program.admins[1]] a Telegram user id is a positive number, not -100000001",
        ),
        (
            lambda d: d["program"].update(admins=[0]),
            "[program.admins[1]] a Telegram user id is a positive number, not 0",
        ),
        (
            lambda d: d["program"].update(admins=[True]),
            "[program.admins[1]] a Telegram user id is a whole number without quotes, not True",
        ),
        (
            lambda d: d["program"].update(admins=[100000001.0]),
            "[program.admins[1]] a Telegram user id is a whole number without quotes",
        ),
        (
            lambda d: d["program"].update(admins=[MAX_TELEGRAM_USER_ID + 1]),
            "[program.admins[1]] a Telegram user id is a positive number",
        ),
        (
            lambda d: d["earn"].update(points_per_yuan=1e12),
            f"[earn.points_per_yuan] Input should be less than or equal to {MAX_POINTS_PER_YUAN}",
        ),
        (
            lambda d: d["earn"].update(points_per_yuan=MAX_POINTS_PER_YUAN + 1),
            "[earn.points_per_yuan] Input should be less than or equal to",
        ),
        (
            lambda d: d["push"].update(quiet_hours_end=d["push"]["quiet_hours_start"]),
            "[push.quiet_hours_end] is the same as quiet_hours_start (22:00)",
        ),
        (lambda d: d["storage"].update(path="/"), "[storage.path] '/' is a folder"),
        (lambda d: d["storage"].update(path=" "), "[storage.path] is empty"),
        (lambda d: d["storage"].update(path="data/"), "[storage.path] 'data/' is a folder"),
        (
            lambda d: d["storage"].update(path=str(ROOT)),
            f"[storage.path] {str(ROOT)!r} is a folder",
        ),
        (
            lambda d: d["storage"].update(path=f"{SAMPLE}/points/bot.sqlite3"),
            f"{str(SAMPLE)!r} is a file, not a folder",
        ),
    ],
    ids=[
        "admins a string",
        "admins a number",
        "an admin id quoted",
        "an admin id negative",
        "an admin id zero",
        "an admin id true",
        "an admin id a float",
        "an admin id too long",
        "points_per_yuan 1e12",
        "points_per_yuan over the cap",
        "quiet hours start equals end",
        "storage.path the root",
        "storage.path empty",
        "storage.path a folder name",
        "storage.path an existing folder",
        "storage.path under a file",
    ],
)
def test_a_value_the_programme_cannot_run_with_names_the_key(mutate: Any, expected: str) -> None:
    document = sample()
    mutate(document)
    with pytest.raises(ConfigError) as excinfo:
        parse_config(document, "config.toml")
    message = str(excinfo.value)
    assert message.startswith("config.toml: invalid configuration\n  [")
    assert expected in message


def test_the_limits_themselves_are_accepted(tmp_path: Path) -> None:
    document = sample()
    document["program"]["admins"] = [1, MAX_TELEGRAM_USER_ID]
    document["earn"]["points_per_yuan"] = MAX_POINTS_PER_YUAN
    start, end = document["push"]["quiet_hours_start"], document["push"]["quiet_hours_end"]
    document["push"].update(quiet_hours_start=end, quiet_hours_end=start)
    # A folder that does not exist yet is fine: the store creates it.
    document["storage"]["path"] = str(tmp_path / "not" / "yet" / "bot.sqlite3")
    config = parse_config(document, "config.toml")
    assert config.program.admins == [1, MAX_TELEGRAM_USER_ID]
    assert config.earn.points_per_yuan == MAX_POINTS_PER_YUAN
    # Quiet from 08:00 to 22:00 (the sample's hours swapped): the daytime is the quiet part.
    assert config.push.is_quiet(config.push.quiet_hours_start)
    assert unrunnable(config) == {}


def test_voucher_validity_keys() -> None:
    config = load_config(SAMPLE)
    voucher, deduction, carwash = (
        config.mall.item(s) for s in ("VOUCHER-10", "BILL-OFF", "CARWASH-01")
    )
    assert voucher is not None and deduction is not None and carwash is not None
    # The sample voucher's 30 days come from the key, not from its description.
    assert (voucher.valid_days, voucher.refund_if_unused) == (30, False)
    assert "30" not in voucher.description.zh_CN and "30" not in voucher.description.en
    assert (carwash.valid_days, carwash.refund_if_unused) == (None, False)
    assert config.mall.voucher_reminder_days == 3
    document = sample()
    document["mall"].pop("voucher_reminder_days")
    document["mall"]["items"][3].update(valid_days=1, refund_if_unused=True)  # a deduction
    document["mall"]["items"][4].update(valid_days=90)  # a service
    changed = parse_config(document)
    assert changed.mall.voucher_reminder_days == 3
    assert [(i.sku, i.valid_days) for i in changed.mall.items if i.valid_days] == [
        ("VOUCHER-10", 30),
        ("BILL-OFF", 1),
        ("CARWASH-01", 90),
        ("PET-CAKE", 30),  # the pets' birthday gift ([birthday.pet])
    ]


def test_no_admin_is_valid_for_tools_but_not_for_running() -> None:
    document = sample()
    document["staff"] = [s for s in document["staff"] if s["role"] != "owner"]
    config = parse_config(document, "config.toml")  # valid: check-config and tools accept it
    assert set(unrunnable(config)) == {"program.admins"}
    with pytest.raises(ConfigError) as excinfo:
        check_runnable(config, "config.toml")
    assert str(excinfo.value) == (
        "config.toml: invalid configuration\n  [program.admins] is empty and [[staff]] name no"
        " owner: `pointsbot run` needs at least one owner's Telegram user id"
    )
    check_runnable(load_config(SAMPLE), "config.example.toml")  # the sample runs


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file \(copy config.example.toml"):
        load_config(tmp_path / "config.toml")


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[program]\nbrand = "红米好物\n', encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(path) in str(excinfo.value)
    assert "not valid TOML" in str(excinfo.value)
    assert "line 2" in str(excinfo.value)


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes("brand = '红米'".encode("gbk"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_staff_are_recognised_and_admins_are_owners() -> None:
    config = load_config(SAMPLE)
    roles = {s.telegram_id: s.role for s in config.staff}
    assert sorted(roles.values()) == sorted(["owner", "manager", "cashier", "partner", "reviewer"])
    assert all(config.staff_member(i).role == role for i, role in roles.items())  # type: ignore[union-attr]
    assert config.staff_member(42) is None
    document = sample()
    document["program"]["admins"] = [123456789]
    legacy = parse_config(document, "config.toml")
    assert legacy.staff_member(123456789) is not None
    assert legacy.staff_member(123456789).role == "owner"  # type: ignore[union-attr]
    assert 123456789 in legacy.owners()
