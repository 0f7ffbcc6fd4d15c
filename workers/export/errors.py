"""The export core's error: an app.error_codes.ExportError code and parameters for the
catalogs; str() stays the English sentence for logs."""

from typing import Any

from app.error_codes import CodedError, ExportError


class ExportFailed(CodedError):
    def __init__(
        self, message: str, code: ExportError = ExportError.EXPORT_FAILED, **params: Any
    ) -> None:
        if code == ExportError.EXPORT_FAILED and not params:
            params = {"detail": message}
        super().__init__(message, code.value, **params)
