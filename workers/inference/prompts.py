"""The conversation a request asks to answer, checked the same way by every engine."""

from workers.inference.events import GenerationRequest
from workers.ml.chat_format import ROLES
from workers.ml.errors import ChatFormatError


def request_conversation(request: GenerationRequest) -> list[dict[str, str]]:
    """The request's messages with its system prompt in front. Raises ChatFormatError."""
    messages = [dict(m) for m in request.messages]
    for i, message in enumerate(messages):
        if message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise ChatFormatError(f"message {i} needs a role ({', '.join(ROLES)}) and text")
    if request.system_prompt:
        # The request's system prompt replaces any system turn in the conversation.
        messages = [{"role": "system", "content": request.system_prompt}] + [
            m for m in messages if m["role"] != "system"
        ]
    if not any(m["role"] != "system" for m in messages):
        raise ChatFormatError("the conversation has no user message")
    return messages
