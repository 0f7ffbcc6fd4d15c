"""The error hierarchy services raise; `app.web.errors` maps it to JSON or HTML in one place.

Each error carries a catalog key and its parameters rather than a finished sentence, so the
same error reads in the user's language on a page and in the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldError:
    """One problem with one input field (a form field or a JSON body key)."""

    field: str
    key: str
    params: dict[str, Any] = field(default_factory=dict)


class AppError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "unavailable"


class InvalidInput(AppError):
    """Input that failed validation; `errors` names each field and what is wrong with it."""

    status_code = 422
    code = "invalid_input"

    def __init__(self, errors: list[FieldError], key: str = "errors.invalid_input") -> None:
        super().__init__(key, count=len(errors))
        self.errors = errors


class NotAuthenticated(AppError):
    """Nobody is logged in (or the API key is wrong): pages go to the login page, the API 401."""

    status_code = 401
    code = "not_authenticated"


class Forbidden(AppError):
    """Logged in, and allowed to see the thing, but not to do this to it (a viewer editing)."""

    status_code = 403
    code = "forbidden"


class TooManyRequests(AppError):
    status_code = 429
    code = "too_many_requests"
