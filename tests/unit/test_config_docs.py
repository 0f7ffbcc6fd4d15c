"""docs/configuration.md documents every setting, with its current type and default, and names
no TUNELAB_ variable that does not exist.

The table is generated from app.config.Settings; after changing a setting, rewrite it with
    .venv/bin/python -m tests.unit.test_config_docs --write
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DOC = ROOT / "docs" / "configuration.md"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
TABLE_START = "<!-- settings-table:start -->"
TABLE_END = "<!-- settings-table:end -->"
TABLE_HEADER = "| Variable | Type | Default | Description |\n| --- | --- | --- | --- |"
VARIABLE = re.compile(r"\bTUNELAB_[A-Z0-9_]+\b")
ROW = re.compile(r"^\|\s*`(TUNELAB_[A-Z0-9_]+)`\s*\|(.*)\|\s*$")

TYPE_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
}


def env_name(field_name: str) -> str:
    return f"{Settings.model_config.get('env_prefix', '')}{field_name}".upper()


def env_names() -> set[str]:
    return {env_name(name) for name in Settings.model_fields}


def render_type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return f"{render_type(rest[0])}, optional"
        return " or ".join(render_type(a) for a in args)
    if origin is list:
        return f"JSON list of {render_type(args[0])}s" if args else "JSON list"
    return TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def render_default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, Path):
        text = value.as_posix()
        if not value.is_absolute() and not text.startswith("."):
            text = f"./{text}"
        return f"`{text}`"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def render_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_row(name: str, field: FieldInfo) -> str:
    cells = [
        f"`{env_name(name)}`",
        render_type(field.annotation),
        render_default(field),
        render_cell(field.description or ""),
    ]
    return "| " + " | ".join(cells) + " |"


def render_table() -> str:
    rows = [render_row(name, field) for name, field in Settings.model_fields.items()]
    return "\n".join([TABLE_HEADER, *rows])


def doc_table(text: str) -> str:
    assert TABLE_START in text and TABLE_END in text, (
        f"{CONFIG_DOC} must keep the table between {TABLE_START} and {TABLE_END}"
    )
    return text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()


def table_rows(table: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in table.splitlines():
        match = ROW.match(line)
        if match:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", match.group(2))]
            rows[match.group(1)] = cells
    return rows


def write_table() -> None:
    text = CONFIG_DOC.read_text(encoding="utf-8")
    before, rest = text.split(TABLE_START, 1)
    after = rest.split(TABLE_END, 1)[1]
    CONFIG_DOC.write_text(
        f"{before}{TABLE_START}\n{render_table()}\n{TABLE_END}{after}", encoding="utf-8"
    )


REGENERATE = "regenerate it: .venv/bin/python -m tests.unit.test_config_docs --write"


def test_every_setting_is_in_the_table_with_its_type_and_default() -> None:
    rows = table_rows(doc_table(CONFIG_DOC.read_text(encoding="utf-8")))
    for name, field in Settings.model_fields.items():
        var = env_name(name)
        assert var in rows, f"{var} is missing from the table in {CONFIG_DOC}; {REGENERATE}"
        type_cell, default_cell, _description = rows[var]
        assert type_cell == render_type(field.annotation), f"{var}: type; {REGENERATE}"
        assert default_cell == render_default(field), (
            f"{var}: documented default {default_cell}, Settings has "
            f"{render_default(field)}; {REGENERATE}"
        )


def test_the_table_is_what_settings_generate() -> None:
    # Descriptions, order and no rows for settings that are gone.
    assert doc_table(CONFIG_DOC.read_text(encoding="utf-8")) == render_table(), REGENERATE


def test_the_docs_name_no_variable_that_does_not_exist() -> None:
    known = env_names()
    unknown = set(VARIABLE.findall(CONFIG_DOC.read_text(encoding="utf-8"))) - known
    assert not unknown, f"{CONFIG_DOC} names variables Settings does not have: {sorted(unknown)}"
    # The deployment guide may also name the installer's own variables (install.sh reads them).
    installer = set(VARIABLE.findall((ROOT / "install.sh").read_text(encoding="utf-8")))
    unknown = set(VARIABLE.findall(DEPLOYMENT_DOC.read_text(encoding="utf-8"))) - known - installer
    assert not unknown, f"{DEPLOYMENT_DOC} names variables that do not exist: {sorted(unknown)}"


def test_render_type_and_default() -> None:
    # The generator's own rules, on the shapes Settings uses.
    assert render_type(str | None) == "string, optional"
    assert render_type(list[Path]) == "JSON list of paths"
    assert render_type(float) == "number"
    assert render_default(FieldInfo(default=Path("data"))) == "`./data`"
    assert render_default(FieldInfo(default=None)) == "unset"
    assert render_default(FieldInfo(default_factory=list)) == "`[]`"
    assert render_default(FieldInfo(default=10.0)) == "`10.0`"


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write_table()
    else:
        print(render_table())
