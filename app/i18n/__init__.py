"""Message catalogs: every user-facing string is a key looked up here (en and zh-CN).

Catalogs are flat JSON files (`en.json`, `zh-CN.json`) with `{name}` placeholders. Both must
hold the same keys with the same placeholders: tests/unit/test_i18n.py checks it, and that every
key used in templates and code exists.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from string import Formatter
from typing import Any

LANGUAGES = ("en", "zh-CN")
DEFAULT_LANGUAGE = "en"
_CATALOG_DIR = Path(__file__).parent


@lru_cache
def load_catalog(language: str) -> dict[str, str]:
    return json.loads((_CATALOG_DIR / f"{language}.json").read_text(encoding="utf-8"))


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in Formatter().parse(text) if field}


def negotiate(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """Pick a catalog from an Accept-Language header (zh, zh-CN, zh-Hans → zh-CN)."""
    if not accept_language:
        return default
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return default


class Translator:
    """Looks keys up in one language, falling back to English, then to the key itself."""

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        self._messages = load_catalog(self.language)
        self._fallback = load_catalog(DEFAULT_LANGUAGE)

    def __call__(self, key: str, **params: Any) -> str:
        text = self._messages.get(key) or self._fallback.get(key) or key
        return text.format(**params) if params else text
