"""Model hub downloads into {data_dir}/models/hub/{org}--{name}, with typed, readable errors.

Many installs have no route to a hub; every failure to reach it becomes ModelUnavailable with
one fixed sentence telling the user the way around it (code `hub_unreachable`), never a stack
trace.
"""

import contextlib
import os
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import constants as hub_constants
from huggingface_hub import errors as hub_errors
from huggingface_hub.utils import tqdm as hub_tqdm

from app.catalog import InvalidHubIdError, is_complete, validate_hub_id
from app.error_codes import ModelError
from app.storage import DataDir
from workers.ml.errors import InvalidModelSource, ModelUnavailable
from workers.ml.model_cache import Progress, report, write_sentinel

OFFLINE_MESSAGE = "cannot reach the model hub; download the model elsewhere and register its folder"
# Weights in safetensors plus what the tokenizer and config need; no GGUF/ONNX/Flax copies.
_WANTED = ["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt", "*.tiktoken"]


def hub_offline() -> bool:
    """True when offline mode is set, read at call time (huggingface_hub reads it at import)."""
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return flag in ("1", "true", "yes", "on") or bool(hub_constants.HF_HUB_OFFLINE)


def _reporting_tqdm(progress: Progress | None) -> type[Any]:
    """A tqdm class for snapshot_download whose per-file updates feed `progress`."""

    class _Reporting(hub_tqdm):  # type: ignore[misc, valid-type]
        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if self.total:
                done = f"downloaded {int(self.n)} of {int(self.total)} files"
                report(progress, 0.05 + 0.9 * float(self.n) / float(self.total), done)
            return shown

    return _Reporting


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def _snapshot(repo_id: str, target: Path, patterns: list[str], progress: Progress | None) -> None:
    try:
        huggingface_hub.snapshot_download(
            repo_id,
            local_dir=target,
            allow_patterns=patterns,
            tqdm_class=_reporting_tqdm(progress),
        )
    except (hub_errors.RepositoryNotFoundError, hub_errors.GatedRepoError) as exc:
        raise ModelUnavailable(
            f"the model hub has no public model {repo_id!r} (or it needs an access token)",
            ModelError.HUB_MODEL_NOT_FOUND,
            repo=repo_id,
        ) from exc
    except (hub_errors.HTTPError, OSError) as exc:
        # Offline mode, refused/timed-out connections, DNS failures and 5xx all end here.
        raise ModelUnavailable(OFFLINE_MESSAGE) from exc


def download_hub_model(
    repo_id: str, data_dir: str | Path, progress: Progress | None = None
) -> Path:
    """Folder holding a complete download of `repo_id`, downloading it if needed.

    An earlier complete download is used even offline. A partial one (no sentinel) is resumed.
    """
    try:
        target = DataDir(data_dir).hub_model(validate_hub_id(repo_id))
    except (InvalidHubIdError, ValueError) as exc:
        raise InvalidModelSource(str(exc), source=repo_id) from exc
    if is_complete(target):
        report(progress, 1.0, "model already downloaded")
        return target
    if hub_offline():
        raise ModelUnavailable(OFFLINE_MESSAGE)
    target.mkdir(parents=True, exist_ok=True)
    report(progress, 0.0, f"downloading {repo_id}")
    try:
        _snapshot(repo_id, target, _WANTED, progress)
        if not _has_weights(target):
            # Older repositories ship only PyTorch pickles; fetch those only when needed.
            _snapshot(repo_id, target, [*_WANTED, "*.bin"], progress)
        if not _has_weights(target):
            raise ModelUnavailable(
                f"{repo_id} has no safetensors or .bin weights to download",
                ModelError.HUB_NO_WEIGHTS,
                repo=repo_id,
            )
    except ModelUnavailable:
        with contextlib.suppress(OSError):  # leave no empty folder behind; keep partial ones
            target.rmdir()
        raise
    write_sentinel(target, {"source": repo_id})
    report(progress, 1.0, "download finished")
    return target
