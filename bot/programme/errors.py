"""What the programme refuses: a rule broken, named by the i18n message that explains it."""

from __future__ import annotations


class RuleError(ValueError):
    """A request breaks a programme rule; `key` names the i18n message explaining it."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params
