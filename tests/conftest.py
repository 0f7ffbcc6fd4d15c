"""Shared fixtures: real Redis, real databases (SQLite and PostgreSQL), a real Celery worker.

Nothing of Tunelab's own infrastructure is mocked. PostgreSQL tests create a throw-away
database on TUNELAB_TEST_POSTGRES (default 127.0.0.1:5432, trust auth); when that server is
not reachable they are skipped, unless TUNELAB_REQUIRE_POSTGRES=1 (CI sets it) makes that an
error.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

# Tests must never reach a model hub. Set before anything imports huggingface_hub, which reads
# these at import time (workers.ml.hub also re-reads HF_HUB_OFFLINE at call time).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import pytest  # noqa: E402
import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from tests.helpers.services import (  # noqa: E402
    RestartableRedis,
    Workers,
    redis_db_for,
    reset_app_caches,
    start_test_redis,
)

POSTGRES_ADMIN_URL = os.environ.get(
    "TUNELAB_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("TUNELAB_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url, stop = start_test_redis()
    redis.Redis.from_url(url).flushdb()
    yield url
    stop()


def _create_postgres_db() -> tuple[str, str]:
    name = f"tunelab_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return name, POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_postgres_db(name: str) -> None:
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# Where the database engine matters a test runs on both: the web's queries (tests/web, the
# fuzzing), and the worker tests where processes race for the same rows (claims, the reaper,
# redelivery: modules marked `both_databases`, or `postgresql_only`). Elsewhere, in the folders below and modules
# marked `sqlite_only`, the PostgreSQL variant is dropped: the worker code's queries are the
# same on both, and running each twice would put CI past its 30 minutes. SQLite is what
# `tunelab up` runs on, and its several processes sharing one file are the riskier case.
SQLITE_ONLY_FOLDERS = ("tests/browser/", "tests/workers/", "tests/training/")


def _sqlite_only(item: pytest.Item) -> bool:
    if item.get_closest_marker("both_databases") or item.get_closest_marker("postgresql_only"):
        return False
    path = str(item.fspath).replace("\\", "/")
    return bool(item.get_closest_marker("sqlite_only")) or any(
        folder in path for folder in SQLITE_ONLY_FOLDERS
    )


@pytest.hookimpl(trylast=True)  # after pytest's own grouping by fixture parameters
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        database = callspec.params.get("database_url") if callspec is not None else None
        if database == "postgresql" and _sqlite_only(item):
            dropped.append(item)
        elif database == "sqlite" and item.get_closest_marker("postgresql_only"):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = sorted(kept, key=_folder_rank)  # stable: each file's own order is kept


# Slowest folders first (real workers, browsers, torchrun), the quick ones last: the two test
# processes (pytest-xdist, a file at a time) then end together, instead of one running the
# heaviest files alone at the end while the other has finished.
FOLDER_ORDER = ("tests/workers/", "tests/browser/", "tests/training/", "tests/export/")


def _folder_rank(item: pytest.Item) -> int:
    path = str(item.fspath).replace("\\", "/")
    return next((i for i, f in enumerate(FOLDER_ORDER) if f in path), len(FOLDER_ORDER))


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'tunelab.db'}"
        return
    try:
        name, url = _create_postgres_db()
    except sa.exc.OperationalError as exc:
        if REQUIRE_POSTGRES:
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    yield url
    from app.db import get_engine

    get_engine(url).dispose()
    _drop_postgres_db(name)


@pytest.fixture(scope="session")
def redis_db(database_url: str) -> int:
    """One Redis database per test database, so a worker never takes another database's task."""
    return redis_db_for(1 if database_url.startswith("postgresql") else 0)


@pytest.fixture(scope="session")
def platform_env(
    database_url: str, redis_url: str, redis_db: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Environment for this process and for worker subprocesses: one DB, one Redis, one data dir."""
    data_dir = tmp_path_factory.mktemp("data")
    env_redis = f"{redis_url.rsplit('/', 1)[0]}/{redis_db}"
    redis.Redis.from_url(env_redis).flushdb()
    env = {
        "TUNELAB_DATA_DIR": str(data_dir),
        "TUNELAB_DATABASE_URL": database_url,
        "TUNELAB_REDIS_URL": env_redis,
        "TUNELAB_WORKER_HEARTBEAT_S": "1",
        "HF_HUB_OFFLINE": "1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reset_app_caches()
    from app import migrate

    migrate.upgrade(database_url)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_app_caches()


@pytest.fixture
def db_session(platform_env: dict[str, str]) -> Iterator[sa.orm.Session]:
    from app.db import get_sessionmaker

    session = get_sessionmaker()()
    yield session
    session.close()


@pytest.fixture(autouse=True)
def _clean_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty every table after a test that used the database, so tests stay independent."""
    yield
    if "platform_env" not in request.fixturenames:
        return
    from app.db import get_engine
    from app.models import Base

    with get_engine().begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    data_dir = Path(os.environ["TUNELAB_DATA_DIR"])
    for sub in ("uploads", "datasets", "runs"):
        shutil.rmtree(data_dir / sub, ignore_errors=True)
    # Tasks a test queued but no worker ran must not run later against another test's rows.
    from app.queue import ALL_QUEUES

    client = redis.Redis.from_url(os.environ["TUNELAB_REDIS_URL"])
    client.delete(*ALL_QUEUES, *client.scan_iter(match="train.*"))  # + multi-process runs


@pytest.fixture
def client(platform_env: dict[str, str]) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def worker(
    request: pytest.FixtureRequest,
    platform_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Workers]:
    """Real Celery workers on every queue, started as `tunelab up` starts them (a prefork
    `train` worker, one job per child; a threaded one for the rest), sharing this test's DB and
    Redis. A test module may set WORKER_ENV (a dict) to add variables to their environment.

    Module-scoped: they live only while the tests that asked for them run, so tasks other tests
    queue (and that teardown purges) are never picked up in the background."""
    log_dir = Path(tmp_path_factory.mktemp("worker"))
    extra = getattr(request.module, "WORKER_ENV", {})
    workers = Workers.like_production(dict(os.environ, **platform_env, **extra), log_dir)
    workers.start()
    yield workers
    workers.stop()


@pytest.fixture
def lonely_redis(platform_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the app at an empty Redis database that no other worker of this session uses."""
    base = platform_env["TUNELAB_REDIS_URL"].rsplit("/", 1)[0]
    url = f"{base}/{redis_db_for(2)}"
    redis.Redis.from_url(url).flushdb()
    monkeypatch.setenv("TUNELAB_REDIS_URL", url)
    reset_app_caches()
    yield url
    monkeypatch.setenv("TUNELAB_REDIS_URL", platform_env["TUNELAB_REDIS_URL"])
    reset_app_caches()


@pytest.fixture
def restartable_redis(
    platform_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[RestartableRedis]:
    """Point the app (and workers started from now on) at a Redis this test may restart."""
    server = RestartableRedis(tmp_path / "redis")
    server.start()
    monkeypatch.setenv("TUNELAB_REDIS_URL", server.url)
    reset_app_caches()
    yield server
    server.stop()
    monkeypatch.setenv("TUNELAB_REDIS_URL", platform_env["TUNELAB_REDIS_URL"])
    reset_app_caches()


@pytest.fixture
def accounts(platform_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Accounts on (TUNELAB_ACCOUNTS=1) for this test: logins, API keys, sharing."""
    monkeypatch.setenv("TUNELAB_ACCOUNTS", "1")
    reset_app_caches()
    yield
    monkeypatch.delenv("TUNELAB_ACCOUNTS")
    reset_app_caches()
    redis.Redis.from_url(platform_env["TUNELAB_REDIS_URL"]).delete(
        *redis.Redis.from_url(platform_env["TUNELAB_REDIS_URL"]).keys("tunelab:login-failures:*")
        or ["none"]
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 2-layer Llama with SmolLM2's tokenizer (or a trained one without the package)."""
    from tests.helpers.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def live_server(platform_env: dict[str, str]) -> Iterator[str]:
    """Tunelab served over real HTTP by uvicorn in a thread (browsers, the openai client)."""
    import threading
    import time

    import httpx
    import uvicorn

    from app.embedded_redis import free_port
    from app.main import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(10)
