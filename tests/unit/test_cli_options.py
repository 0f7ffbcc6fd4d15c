"""`tunelab` options and the data dir as a newcomer meets them: the options work before or after
the subcommand, `--help` lists them, and a relative data dir (the default `./data`) becomes an
absolute path once, when settings are read, so redis-server and child processes never see a
relative one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.cli import _apply_overrides, build_parser, main
from app.config import Settings, get_settings
from app.embedded_redis import start_embedded_redis


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TUNELAB_* variable and a fresh folder as the working directory, as after a clone."""
    import os

    for name in [n for n in os.environ if n.startswith("TUNELAB_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_the_default_data_dir_is_absolute(clean_settings: Path) -> None:
    settings = Settings()
    assert settings.data_dir == clean_settings / "data"
    assert settings.data_dir.is_absolute()
    assert settings.sqlalchemy_url == f"sqlite:///{clean_settings / 'data' / 'tunelab.db'}"
    assert settings.paths.root == clean_settings / "data"


def test_relative_paths_from_the_environment_are_made_absolute(
    clean_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNELAB_DATA_DIR", "sub/../store")
    monkeypatch.setenv("TUNELAB_MODEL_DIRS", '["models/a"]')
    settings = Settings()
    assert settings.data_dir == clean_settings / "store"
    assert settings.model_dirs == [clean_settings / "models" / "a"]


def test_embedded_redis_starts_in_a_relative_folder(clean_settings: Path) -> None:
    # The newcomer's crash: redis-server changed into data/redis, then looked for
    # data/redis/redis.log from there ("Can't open the log file").
    proc, url = start_embedded_redis(Path("data") / "redis")
    try:
        assert url.startswith("redis://127.0.0.1:")
        assert (clean_settings / "data" / "redis" / "redis.log").exists()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    "argv",
    [
        ["up", "--data-dir", "d", "--host", "0.0.0.0", "--port", "9123"],
        ["--data-dir", "d", "up", "--host", "0.0.0.0", "--port", "9123"],
        ["web", "--port", "9123", "--data-dir", "d", "--host", "0.0.0.0"],
    ],
)
def test_options_before_or_after_the_subcommand(clean_settings: Path, argv: list[str]) -> None:
    _apply_overrides(build_parser().parse_args(argv))
    settings = get_settings()
    assert settings.data_dir == clean_settings / "d"
    assert (settings.host, settings.port) == ("0.0.0.0", 9123)


def test_an_option_after_the_subcommand_wins(clean_settings: Path) -> None:
    args = build_parser().parse_args(["--data-dir", "first", "worker", "--data-dir", "second"])
    assert args.data_dir == "second"
    assert "host" not in build_parser().parse_args(["worker"])  # unset: settings decide


def test_db_upgrade_with_the_data_dir_after_the_subcommand(clean_settings: Path) -> None:
    assert main(["db", "upgrade", "--data-dir", "here"]) == 0
    database = clean_settings / "here" / "tunelab.db"
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (["up"], ["--data-dir", "--host", "--port"]),
        (["web"], ["--data-dir", "--host", "--port"]),
        (["worker"], ["--data-dir", "--queues", "--concurrency"]),
        (["db", "upgrade"], ["--data-dir"]),
    ],
)
def test_help_lists_every_option_of_the_command(
    capsys: pytest.CaptureFixture[str], command: list[str], options: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in options:
        assert option in out, f"`tunelab {' '.join(command)} --help` does not list {option}"
    if command == ["worker"]:
        assert "--port" not in out  # only what applies
