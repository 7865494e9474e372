"""Message catalogs: gettext .po files keyed by message id, one per language."""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from babel.messages.pofile import read_po

from bot.config import LANGUAGES, Localized

log = logging.getLogger(__name__)

# A catalog file per language, in bot/locales (gettext names use an underscore).
CATALOG_FILES: Mapping[str, str] = {"zh-CN": "zh_CN.po", "en": "en.po"}


class MissingMessage(KeyError):
    """A message id is absent from every catalog (a bug: tests catch it)."""


def N_(key: str) -> str:  # noqa: N802 - gettext's name for "mark for translation"
    """Mark a message id used later (the catalog-completeness test finds it by this call)."""
    return key


def load_catalog(language: str) -> dict[str, str]:
    """Read one language's catalog into {message id: text}, skipping untranslated entries."""
    path = resources.files("bot") / "locales" / CATALOG_FILES[language]
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=language.replace("-", "_"))
    messages: dict[str, str] = {}
    for message in catalog:
        text = message.string
        if message.id and isinstance(message.id, str) and isinstance(text, str) and text:
            messages[message.id] = text
    return messages


def placeholders(text: str) -> set[str]:
    """The named `{field}` placeholders of a message."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def resolve_language(chosen: str | None, telegram_code: str | None, default: str) -> str:
    """Pick a language: the /language choice, else Telegram's language_code, else default."""
    if chosen in LANGUAGES:
        return chosen
    code = (telegram_code or "").lower()
    if code.startswith("zh"):
        return "zh-CN"
    if code.startswith("en"):
        return "en"
    return default


class I18n:
    """Every member-facing text, looked up by message id and language."""

    def __init__(self, catalogs: Mapping[str, Mapping[str, str]], default: str = "zh-CN") -> None:
        self.catalogs = {lang: dict(messages) for lang, messages in catalogs.items()}
        self.default = default

    @classmethod
    def load(cls, default: str = "zh-CN") -> I18n:
        """Load the packaged catalogs of every supported language."""
        return cls({lang: load_catalog(lang) for lang in LANGUAGES}, default)

    def t(self, language: str, key: str, /, **params: Any) -> str:
        """Return message `key` in `language`, formatted with `params`."""
        template = self.catalogs.get(language, {}).get(key)
        if template is None:
            template = self.catalogs[self.default].get(key)
            if template is None:
                raise MissingMessage(key)
            log.warning("message %s missing in %s; using %s", key, language, self.default)
        # A parameter given in every language (a configured name, a list of them) is read in
        # this one: the programme raises it without knowing who reads it.
        shown = {k: v.get(language) if isinstance(v, Localized) else v for k, v in params.items()}
        return template.format(**shown)


@cache
def packaged() -> I18n:
    """The packaged catalogs, loaded once: for texts the programme renders in every language
    before anyone reads them (a tier's benefits, a plan's terms)."""
    return I18n.load()
