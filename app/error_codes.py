"""What went wrong, as a stable code plus parameters, rendered in the reader's language.

Workers and services store a code and its parameters (a job's `error_code`/`error_params`, a
registered model's `status_reason`/`status_params`, a worker result's `error_code`/
`error_params`) and keep an English sentence for logs and the API's `message`. Pages render
the code through the message catalogs with `describe` (in templates: `error_text`).

Every code belongs to one of the enums below, each bound to a catalog prefix, and a code is
unique across all of them: the code alone finds its catalog key, so a job that failed on a
model error shows the same text as the models page. tests/unit/test_error_codes.py checks that
every registered code has a key in both catalogs. Pure stdlib: workers.training imports it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from app.i18n import Translator


class JobError(StrEnum):
    """Why a training job failed (`job_errors.<code>`); the comment names the parameters."""

    OOM = "oom"  # batch_size, max_length, gradient_checkpointing, device
    WORKER_LOST = "worker_lost"  # seconds
    DATASET_DELETED = "dataset_deleted"
    VALIDATION_SET_DELETED = "validation_set_deleted"
    DATASET_EMPTY = "dataset_empty"
    NO_TRAINABLE_ROWS = "no_trainable_rows"  # rows, max_length, dropped {reason: rows}
    PRECISION_UNSUPPORTED = "precision_unsupported"  # precision, device, use
    QLORA_NEEDS_CUDA = "qlora_needs_cuda"  # device
    QLORA_NEEDS_BITSANDBYTES = "qlora_needs_bitsandbytes"
    NO_TARGET_MODULES = "no_target_modules"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"  # path
    PARENT_VERSION_MISSING = "parent_version_missing"  # version
    PARENT_ADAPTER_MISMATCH = "parent_adapter_mismatch"  # path
    # The training process died under the task (workers/lost_child.py): SIGKILL is what the
    # kernel's OOM killer sends, so it gets the memory advice; anything else is reported as is.
    KILLED = "killed"  # signal, signal_name, batch_size, max_length
    PROCESS_DIED = "process_died"  # status ("signal 11 (SIGSEGV)", "exitcode 1")
    # One process of a run with several (torchrun, workers/training/launch.py) failed with an
    # error that has no code of its own; `reason` is its exception or how it died, in English.
    RANK_FAILED = "rank_failed"  # rank, processes, reason


class ModelError(StrEnum):
    """Why a base model cannot be resolved, fetched, converted or loaded (`model_errors.*`)."""

    INVALID_SOURCE = "invalid_source"  # source
    NOT_INSTALLED = "not_installed"  # command
    PACKAGE_INCOMPLETE = "package_incomplete"  # package, file
    UNKNOWN_SOURCE_KIND = "unknown_source_kind"  # kind
    HUB_UNREACHABLE = "hub_unreachable"
    HUB_MODEL_NOT_FOUND = "hub_model_not_found"  # repo
    HUB_NO_WEIGHTS = "hub_no_weights"  # repo
    CONVERSION_FAILED = "conversion_failed"  # detail
    DEVICE_UNAVAILABLE = "device_unavailable"  # detail
    LOAD_FAILED = "load_failed"  # detail


class LocalFolderError(StrEnum):
    """A registered local folder that is not (or no longer) a model folder: the codes of
    app.catalog.LocalFolderError, prefixed, reusing the registration form's messages
    (`errors.local_folder_*`, parameters path and detail)."""

    NOT_FOUND = "local_folder_not_found"
    NOT_A_DIRECTORY = "local_folder_not_a_directory"
    NO_CONFIG = "local_folder_no_config"
    BAD_CONFIG = "local_folder_bad_config"
    UNSUPPORTED_ARCHITECTURE = "local_folder_unsupported_architecture"
    NO_TOKENIZER = "local_folder_no_tokenizer"
    NO_WEIGHTS = "local_folder_no_weights"


class ModelNote(StrEnum):
    """Why a built-in model has its status when nothing failed (`model_status.*`)."""

    CACHED = "cached"  # path
    DOWNLOADS_ON_FIRST_USE = "downloads_on_first_use"  # repo
    CONVERTS_ON_FIRST_LOAD = "converts_on_first_load"
    ASSEMBLES_ON_FIRST_LOAD = "assembles_on_first_load"


class EvalError(StrEnum):
    """Why an evaluation failed (`eval_errors.<code>`); the comment names the parameters."""

    TEST_SET_DELETED = "test_set_deleted"
    NO_TEST_ROWS = "no_test_rows"
    EVAL_WORKER_LOST = "eval_worker_lost"  # seconds
    EVAL_FAILED = "eval_failed"  # detail
    EVAL_KILLED = "eval_killed"  # signal, signal_name


class ExportError(StrEnum):
    """Why an export failed (`export_errors.<code>`); the comment names the parameters."""

    ADAPTER_MISSING = "adapter_missing"  # path
    TOOL_MISSING = "tool_missing"  # tool, command
    VERIFY_FAILED = "verify_failed"  # check, detail
    EXPORT_FAILED = "export_failed"  # detail
    EXPORT_WORKER_LOST = "export_worker_lost"  # seconds


class CodedError(Exception):
    """An error raised on purpose with a code and parameters (for the catalogs); str() is the
    English sentence for logs and the API."""

    def __init__(self, message: str, code: str, **params: Any) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


class TaskError(StrEnum):
    """Failures any worker task can meet: jobs, model preparation, statistics, previews."""

    INTERNAL = "internal"  # exception (the English text of an unexpected exception)
    QUEUE_UNAVAILABLE = "queue_unavailable"
    DATASET_GONE = "dataset_gone"
    ROW_NOT_FOUND = "row_not_found"  # row
    CHAT_FORMAT_FAILED = "chat_format_failed"  # detail
    # Saving a checkpoint, an adapter or an export ran out of disk space (workers/disk.py);
    # `free` is what the disk has once the partial files are removed ("1.2 GB"), never a path.
    DISK_FULL = "disk_full"  # free


_KEYS: dict[str, str] = {}


def register(codes: type[StrEnum], prefix: str) -> None:
    """Bind every code of `codes` to the catalog key `<prefix>.<code>`; codes stay unique.

    Other parts (e.g. chat errors) call this with their own enum and prefix."""
    for code in codes:
        key = f"{prefix}.{code.value}"
        if _KEYS.get(code.value, key) != key:
            raise ValueError(f"error code {code.value!r} is registered twice")
        _KEYS[code.value] = key


register(JobError, "job_errors")
register(ModelError, "model_errors")
register(LocalFolderError, "errors")
register(ModelNote, "model_status")
register(TaskError, "task_errors")
register(EvalError, "eval_errors")
register(ExportError, "export_errors")


def catalog_key(code: str | None) -> str | None:
    return _KEYS.get(code) if code else None


def registered_keys() -> dict[str, str]:
    """Every code the code base can store, with its catalog key."""
    return dict(_KEYS)


class _Lenient(dict[str, Any]):
    """Format parameters where a missing one reads "?" (rows stored before it existed)."""

    def __missing__(self, name: str) -> str:
        return "?"


def describe(
    translate: Callable[..., str],
    code: str | None,
    params: Mapping[str, Any] | None = None,
    fallback: str | None = None,
) -> str:
    """The message for `code` in the translator's language.

    An unknown code (rows written before codes existed, or by a newer version) gives
    `fallback` (the stored English sentence) when there is one, else a generic message."""
    key = catalog_key(code)
    if key is None:
        return fallback or translate("errors.unknown_code", code=code or "?")
    text = translate(key)
    try:
        return text.format_map(_Lenient(params or {}))
    except (ValueError, IndexError, AttributeError):  # a malformed catalog entry
        return fallback or text


def english(code: str | None, params: Mapping[str, Any] | None = None) -> str:
    """The English message, for logs and the API's `message` where none was stored."""
    return describe(Translator("en"), code, params)


def error_of(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """The code and parameters an exception carries (`code`, `params` attributes of the typed
    errors), else `internal` with the exception's text as a detail."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and catalog_key(code) is not None:
        return code, dict(getattr(exc, "params", None) or {})
    return TaskError.INTERNAL, {"exception": f"{type(exc).__name__}: {exc}"[:1000]}


_PIP_COMMAND = re.compile(r"pip install [^()\n]*[^()\s]")


def install_command(hint: str) -> str:
    """The `pip install ...` command in a catalog entry's install hint (the hint itself if none).

    The hint is an English sentence around a command that reads the same in every language."""
    match = _PIP_COMMAND.search(hint)
    return match.group(0) if match else hint
