"""A bad setting stops `tunelab` with one line naming it, not a traceback."""

from app.cli import main
from app.config import get_settings


def test_bad_settings_are_named_with_the_fix(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TUNELAB_WORKER_GPUS", "many")
    monkeypatch.setenv("TUNELAB_PORT", "abc")
    get_settings.cache_clear()
    try:
        assert main(["db", "upgrade"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "TUNELAB_WORKER_GPUS='many'" in err and "auto|" in err
    assert "TUNELAB_PORT='abc'" in err and "valid integer" in err
    assert "docs/configuration.md" in err and "Traceback" not in err
