"""The events workers publish and the web relays: one pydantic model per kind, discriminated on
`type`.

Three families share the transport (app/events.py) and the SSE relay (app/web/sse.py):

- job events (`JobEvent`), one stream per training job: `start`, `metric`, `log`, `status`;
- evaluation events (`EvaluationEvent`), one stream per evaluation: `progress`, `status`;
- generation events (`GenerationEvent`), one stream per chat answer: `status`, `token`, `done`,
  `error`.

`type` is also the SSE `event:` name, and the other fields are the JSON the browser reads
(static/js/job_live.js, static/js/chat.js), so renaming a field here is a change of the wire
format. Producers build the model, which validates their data; consumers get the model back from
`JOB_EVENTS` / `GENERATION_EVENTS`, which reject an unknown `type`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from app.error_codes import english, register
from app.models.job import TERMINAL, JobStatus
from app.schemas.no_paths import without_paths

# --- job events -----------------------------------------------------------------------------


class JobStart(BaseModel):
    """The data and model are ready; the first optimizer step follows."""

    type: Literal["start"] = "start"
    total_steps: int
    info: dict[str, Any] = Field(default_factory=dict)  # device, precision, example counts...

    @field_validator("info")
    @classmethod
    def _no_server_paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The run's record keeps where it started from; the stream goes to browsers and clients.
        return without_paths(value)


class JobMetric(BaseModel):
    """One optimizer step, as workers.training.reporter's contract describes METRIC_KEYS."""

    # The contract lets the trainer add keys (tokens_seen...): they travel along, unvalidated.
    model_config = ConfigDict(extra="allow")

    type: Literal["metric"] = "metric"
    step: int
    total_steps: int
    epoch: float
    loss: float
    eval_loss: float | None = None
    lr: float
    grad_norm: float | None = None
    tokens_per_s: float
    elapsed_s: float
    eta_s: float | None = None


class JobLog(BaseModel):
    type: Literal["log"] = "log"
    line: str


class JobStatusChanged(BaseModel):
    """The job moved (app/services/job_states.py). A failure carries its error: `code` and
    `params` for the message catalogs, `message` in English for logs and the API."""

    type: Literal["status"] = "status"
    status: JobStatus
    code: str | None = None
    params: dict[str, Any] | None = None
    message: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


JobEvent = Annotated[JobStart | JobMetric | JobLog | JobStatusChanged, Field(discriminator="type")]
JOB_EVENTS: TypeAdapter[JobEvent] = TypeAdapter(JobEvent)


def job_stream_ended(event: JobEvent) -> bool:
    return isinstance(event, JobStatusChanged) and event.terminal


# --- evaluation events ------------------------------------------------------------------------


class EvaluationProgress(BaseModel):
    """How far an evaluation is: `phase` is perplexity, generation or scoring."""

    type: Literal["progress"] = "progress"
    phase: Literal["perplexity", "generation", "scoring"]
    done: int
    total: int


EvaluationEvent = Annotated[EvaluationProgress | JobStatusChanged, Field(discriminator="type")]
EVALUATION_EVENTS: TypeAdapter[EvaluationEvent] = TypeAdapter(EvaluationEvent)


def evaluation_stream_ended(event: EvaluationEvent) -> bool:
    return isinstance(event, JobStatusChanged) and event.terminal


# --- generation events ----------------------------------------------------------------------


class ChatErrorCode(StrEnum):
    """Why an answer failed (`chat_errors.<code>`); the comment names the parameters."""

    PROMPT_TOO_LONG = "prompt_too_long"  # prompt_tokens, over_by, limit
    MODEL_UNAVAILABLE = "model_unavailable"  # detail (the engine's English sentence)
    EXPIRED = "expired"
    GENERIC = "generic"  # detail (the exception's text)
    # Redis went away or restarted while the answer streamed (app/web/sse.py).
    STREAM_LOST = "stream_lost"
    # The worker writing the answer died (app/services/generation_liveness.py).
    CHAT_WORKER_LOST = "chat_worker_lost"


register(ChatErrorCode, "chat_errors")


class GenerationStatus(BaseModel):
    type: Literal["status"] = "status"
    state: Literal["loading", "generating"]


class GenerationToken(BaseModel):
    """A piece of the answer: one or more tokens that decode to whole characters."""

    type: Literal["token"] = "token"
    text: str


class GenerationDone(BaseModel):
    type: Literal["done"] = "done"
    finish_reason: Literal["stop", "length", "cancelled"]
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_s: float
    tokens_per_s: float
    engine: str | None = None  # "llama.cpp" or "transformers" (workers/tasks/chat_engines.py)
    precision: str | None = None  # "q8_0", "float32", "bfloat16"...

    def stats(self) -> dict[str, Any]:
        """What the chat message row keeps (ChatMessage.stats)."""
        return self.model_dump(exclude={"type"})


class GenerationError(BaseModel):
    """Pages render `code` and `params` through the catalogs (app.error_codes.describe)."""

    type: Literal["error"] = "error"
    code: ChatErrorCode
    params: dict[str, Any] = Field(default_factory=dict)
    message: str  # English, for logs and the OpenAI-compatible API

    @classmethod
    def of(cls, code: ChatErrorCode, **params: Any) -> GenerationError:
        """The error with its English message taken from the catalog."""
        return cls(code=code, params=params, message=english(code, params))


GenerationEvent = Annotated[
    GenerationStatus | GenerationToken | GenerationDone | GenerationError,
    Field(discriminator="type"),
]
GENERATION_EVENTS: TypeAdapter[GenerationEvent] = TypeAdapter(GenerationEvent)


def generation_ended(event: GenerationEvent) -> bool:
    return isinstance(event, GenerationDone | GenerationError)
