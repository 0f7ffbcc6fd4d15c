"""Length limits on the free text people send, in characters, in one place (docs/deployment.md
lists them). A request body is bounded as a whole too (`max_body_kb`, app.web.body_limit); these
say which field is too long, with a message in the reader's language, before anything is stored
or queued. Project names and descriptions keep theirs in app.services.projects.

The prompt limit is generous on purpose: what a model accepts is counted in tokens by the
worker (chat_errors.prompt_too_long); this one only stops text no model could take.
"""

from __future__ import annotations

from app.errors import FieldError, InvalidInput

PROMPT_MAX_CHARS = 100_000  # one chat message; all the messages of one /v1 request together
MESSAGES_MAX = 500  # messages in one /v1 request
SYSTEM_PROMPT_MAX_CHARS = 20_000
STOP_MAX_CHARS = 100  # one stop sequence
DATASET_NAME_MAX_CHARS = 255  # the column's width (app.models.dataset)


def check_length(field: str, text: str, limit: int, key: str = "errors.text_too_long") -> None:
    """Raise InvalidInput naming `field` when `text` is longer than `limit` characters."""
    if len(text) > limit:
        raise InvalidInput([FieldError(field, key, {"max": limit, "got": len(text)})])
