"""Expression tags in the model's text ([joy], ［sad］): which names exist and how a bracketed word matches one."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExpressionTag:
    """An expression tag found in the model's text, named as the configuration spells it."""

    name: str


class ExpressionVocabulary:
    """The expression names the model may use; matching ignores case, width and surrounding spaces."""

    def __init__(self, names: Iterable[str]) -> None:
        self._by_key: dict[str, str] = {}
        for name in names:
            self._by_key.setdefault(_key(name), name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_key.values())

    def match(self, content: str) -> str | None:
        """The configured name that ``content`` (the text between the brackets) stands for, if any."""
        return self._by_key.get(_key(content))

    def __contains__(self, content: object) -> bool:
        return isinstance(content, str) and self.match(content) is not None


def _key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().lower()
