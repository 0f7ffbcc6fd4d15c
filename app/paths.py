"""Filesystem locations of the source tree (templates, static, migrations)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
