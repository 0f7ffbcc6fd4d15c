"""Both catalogs hold the same keys and placeholders, and every key the code uses exists."""

from __future__ import annotations

import re
from pathlib import Path

from app.i18n import LANGUAGES, Translator, load_catalog, negotiate, placeholders

ROOT = Path(__file__).resolve().parents[2]
# `_("key")`, `_('key', ...)` in templates; `"errors.x"` style keys passed to AppError in code.
TEMPLATE_KEY = re.compile(r"""_\(\s*["']([a-z0-9_]+\.[a-z0-9_.]+)["']""")
CODE_KEY = re.compile(
    r"""["']((?:errors|health|projects|project|models|nav|app|datasets)\.[a-z0-9_]+)["']"""
)


def test_catalogs_have_the_same_keys_and_placeholders() -> None:
    en, zh = (load_catalog(lang) for lang in LANGUAGES)
    assert set(en) == set(zh), set(en) ^ set(zh)
    for key in en:
        assert placeholders(en[key]) == placeholders(zh[key]), key
        assert zh[key].strip(), key


def test_every_key_used_exists() -> None:
    en = load_catalog("en")
    used: set[str] = set()
    for path in (ROOT / "templates").rglob("*.html"):
        used |= set(TEMPLATE_KEY.findall(path.read_text(encoding="utf-8")))
    for path in (ROOT / "app").rglob("*.py"):
        if "models" in path.parts:  # table names such as "projects.id" are not catalog keys
            continue
        used |= set(CODE_KEY.findall(path.read_text(encoding="utf-8")))
    # Keys built from a prefix + value in templates (e.g. models.status_<status>).
    used = {k for k in used if not k.endswith("_")}
    missing = sorted(used - set(en))
    assert not missing, f"keys used but missing from the catalogs: {missing}"


def test_translator_formats_and_falls_back() -> None:
    zh = Translator("zh-CN")
    assert zh("errors.name_too_long", got=90, max=80) == "名称有 90 个字符，请缩短到 80 个以内。"
    assert Translator("fr").language == "en"
    assert zh("no.such.key") == "no.such.key"


def test_language_negotiation() -> None:
    assert negotiate("zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert negotiate("zh-Hans") == "zh-CN"
    assert negotiate("en-US,en") == "en"
    assert negotiate("de-DE", default="zh-CN") == "zh-CN"
    assert negotiate(None) == "en"


def test_no_hard_coded_english_in_templates() -> None:
    """Visible text in templates comes from the catalog: look for bare words between tags."""
    bare = re.compile(r">\s*([A-Za-z][A-Za-z ,.'!?]{3,})\s*<")
    # Names of file formats read the same in every language.
    proper_nouns = {"alpaca", "sharegpt", "OpenAI messages", "LoRA"}
    offenders = []
    for path in (ROOT / "templates").rglob("*.html"):
        for match in bare.findall(path.read_text(encoding="utf-8")):
            if match.strip() in proper_nouns:
                continue
            offenders.append(f"{path.name}: {match!r}")
    assert not offenders, offenders
