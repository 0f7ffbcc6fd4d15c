"""Keeps server file paths out of API answers that carry free-form dicts (a job's `result`).

A training run records where it left its adapter and checkpoints, and which adapter it started
from; the worker needs those, an API client does not, and a path tells anyone who reads it how
the server is laid out. Typed fields are checked by tests/web/test_no_server_paths.py.
"""

from __future__ import annotations

import re
from typing import Any

# `adapter_path`, `checkpoint_path`, `run_dir`, `folder`... and where a run started from.
PATH_KEY = re.compile(r"(^|_)(path|dir|folder)$")
PATH_KEYS = frozenset({"initialized_from"})


def without_paths(value: Any) -> Any:
    """`value` with every dict key that names a server path left out, at any depth."""
    if isinstance(value, dict):
        return {
            k: without_paths(v)
            for k, v in value.items()
            if not (PATH_KEY.search(str(k)) or k in PATH_KEYS)
        }
    if isinstance(value, list):
        return [without_paths(v) for v in value]
    return value
