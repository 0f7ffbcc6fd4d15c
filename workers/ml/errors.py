"""Typed errors of the ML layer; str(error) is a sentence fit to show a user, never a trace.

Each ModelLoadError also carries an app.error_codes code and its parameters: pages render
those in the reader's language, while str(error) stays the English for logs and the API."""

from typing import Any

from app.error_codes import ModelError, install_command


class ModelLoadError(Exception):
    """Base of every error raised while resolving, converting or loading a model.

    Without explicit params, `_default_params` derives them from the message (the base class:
    the message is the `detail` of an unexpected load failure)."""

    code: str = ModelError.LOAD_FAILED

    def __init__(self, message: str, code: str | None = None, **params: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.params = params or self._default_params(message)

    def _default_params(self, message: str) -> dict[str, Any]:
        return {"detail": message}


class InvalidModelSource(ModelLoadError):
    """The source is not a built-in id, a usable local folder, or a hub id.

    A rejected local folder gives app.catalog.LocalFolderError's code with the
    `local_folder_` prefix (`local_folder_no_config`...) and the folder's path and detail.
    """

    code = ModelError.INVALID_SOURCE

    def __init__(self, message: str, code: str = ModelError.INVALID_SOURCE, **params: Any) -> None:
        if code != ModelError.INVALID_SOURCE:
            code, params = f"local_folder_{code}", {"detail": message, **params}
        super().__init__(message, code, **params)


class ModelNotInstalled(ModelLoadError):
    """A built-in model's package is not installed; the message is its install hint."""

    code = ModelError.NOT_INSTALLED

    def _default_params(self, message: str) -> dict[str, Any]:
        return {"command": install_command(message)}


class ModelUnavailable(ModelLoadError):
    """The model hub cannot be reached (offline, connection error) or refuses the model."""

    code = ModelError.HUB_UNREACHABLE

    def _default_params(self, message: str) -> dict[str, Any]:
        return {}


class ConversionError(ModelLoadError):
    """Converting a GGUF file to the safetensors cache failed."""

    code = ModelError.CONVERSION_FAILED


class DeviceUnavailable(ModelLoadError):
    """The requested device does not exist on this machine."""

    code = ModelError.DEVICE_UNAVAILABLE


class ChatFormatError(ValueError):
    """A conversation or chat template cannot be turned into training tokens."""
