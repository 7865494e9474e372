"""Catalogs: every message the code uses exists in every language, with matching placeholders."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import LANGUAGES
from bot.i18n import I18n, MissingMessage, load_catalog, placeholders, resolve_language

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("bot", "handlers") for p in (ROOT / d).rglob("*.py"))


def used_messages() -> Iterator[tuple[str, str, set[str] | None]]:
    """Yield (where, message id, keyword names passed or None if unknown) for every use in code."""
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            key_arg: ast.expr | None = None
            if isinstance(func, ast.Name) and func.id in {"_", "N_"} and node.args:
                key_arg = node.args[0]
            elif isinstance(func, ast.Attribute) and func.attr == "t" and len(node.args) >= 2:
                key_arg = node.args[1]
            if isinstance(key_arg, ast.Constant) and isinstance(key_arg.value, str):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                known = {k.arg for k in node.keywords if k.arg}
                spread = any(k.arg is None for k in node.keywords)
                is_marker = isinstance(func, ast.Name) and func.id == "N_"
                yield where, key_arg.value, None if (spread or is_marker) else known


USES = list(used_messages())
CATALOGS = {lang: load_catalog(lang) for lang in LANGUAGES}


def test_code_uses_messages() -> None:
    assert len(USES) > 30


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_used_message_exists(language: str) -> None:
    missing = sorted(
        {f"{key} ({where})" for where, key, _ in USES if key not in CATALOGS[language]}
    )
    assert missing == [], f"missing in {language}: {missing}"


def test_catalogs_have_the_same_messages() -> None:
    zh, en = set(CATALOGS["zh-CN"]), set(CATALOGS["en"])
    assert zh - en == set(), "only in zh-CN"
    assert en - zh == set(), "only in en"


def test_placeholders_match_across_languages() -> None:
    mismatched = [
        key
        for key, text in CATALOGS["zh-CN"].items()
        if placeholders(text) != placeholders(CATALOGS["en"].get(key, ""))
    ]
    assert mismatched == []


def test_code_passes_every_placeholder() -> None:
    problems = []
    for where, key, given in USES:
        if given is None or key not in CATALOGS["zh-CN"]:
            continue
        needed = placeholders(CATALOGS["zh-CN"][key])
        if needed - given:
            problems.append(f"{where} {key} lacks {sorted(needed - given)}")
    assert problems == []


def test_unknown_message_raises() -> None:
    with pytest.raises(MissingMessage):
        I18n.load().t("en", "no.such.message")


@pytest.mark.parametrize(
    ("chosen", "telegram", "expected"),
    [
        (None, "zh-hans", "zh-CN"),
        (None, "zh-hant", "zh-CN"),
        (None, "en-GB", "en"),
        (None, "de", "zh-CN"),
        (None, None, "zh-CN"),
        ("en", "zh-hans", "en"),
        ("zh-CN", "en", "zh-CN"),
        ("fr", "en", "en"),
    ],
)
def test_language_resolution(chosen: str | None, telegram: str | None, expected: str) -> None:
    assert resolve_language(chosen, telegram, "zh-CN") == expected
