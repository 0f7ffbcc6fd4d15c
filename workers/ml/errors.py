"""Typed errors of the ML layer; str(error) is a sentence fit to show a user, never a trace."""


class ModelLoadError(Exception):
    """Base of every error raised while resolving, converting or loading a model."""


class InvalidModelSource(ModelLoadError):
    """The source is not a built-in id, a usable local folder, or a hub id.

    `code` repeats app.catalog.LocalFolderError's code when a local folder was rejected.
    """

    def __init__(self, message: str, code: str = "invalid_source") -> None:
        super().__init__(message)
        self.code = code


class ModelNotInstalled(ModelLoadError):
    """A built-in model's package is not installed; the message is its install hint."""


class ModelUnavailable(ModelLoadError):
    """The model hub cannot be reached (offline, connection error) or refuses the model."""


class ConversionError(ModelLoadError):
    """Converting a GGUF file to the safetensors cache failed."""


class DeviceUnavailable(ModelLoadError):
    """The requested device does not exist on this machine."""


class ChatFormatError(ValueError):
    """A conversation or chat template cannot be turned into training tokens."""
