"""Queued work survives a Redis that restarts empty: the database is the record, and the workers'
reconciler (workers/reconciler.py) sends every row still queued again, once per Redis lifetime.
A second message for a row never makes it run twice: every task claims its row first."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from sqlalchemy import func, select

from app.models import ModelVersion, TrainingJob
from app.queue import Queue, TaskName
from app.redis_client import get_redis
from app.redis_keys import (
    job_stream_key,
    reconciled_key,
    reconciling_key,
    worker_heartbeat_key,
)
from tests.workers.test_job_failures import make_project, train_worker
from tests.workers.test_training_jobs import FAST, finished, wait_job


def wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def status_events(url: str, job_id: int) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    return [
        fields["data"]
        for _id, fields in client.xrange(job_stream_key(job_id))
        if fields["type"] == "status"
    ]


def test_jobs_queued_when_redis_restarts_run_once_each(  # type: ignore[no-untyped-def]
    client, restartable_redis, db_session, tmp_path, tiny_model_dir
) -> None:
    project, dataset = make_project(client, tiny_model_dir)
    url = restartable_redis.url

    def queue_job(**config: Any) -> int:
        response = client.post(
            f"/api/projects/{project['id']}/jobs",
            json={"dataset_id": dataset["id"], "config": {**FAST, **config}},
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    first = train_worker(tmp_path, "first")
    second = None
    try:
        # The worker's first pass (a fresh Redis) is over: what is queued from now on has its
        # message in Redis, once.
        wait_for(lambda: redis.Redis.from_url(url).exists(reconciled_key(Queue.TRAIN.value)))
        busy = queue_job(epochs=100)
        wait_job(client, busy, lambda j: j["status"] == "running" and j["step"] >= 2)
        waiting = [queue_job(), queue_job()]  # behind the busy one: their messages wait in Redis
        assert redis.Redis.from_url(url).llen(Queue.TRAIN.value) == 2

        restartable_redis.restart()  # empty: the two messages are gone
        assert redis.Redis.from_url(url).llen(Queue.TRAIN.value) == 0
        # A second worker, hence a second reconciler, starts on the fresh Redis too: between
        # them the waiting jobs must be sent again, and run once each.
        second = train_worker(tmp_path, "second")

        client.post(f"/api/jobs/{busy}/stop")
        jobs = [wait_job(client, job_id, finished) for job_id in (busy, *waiting)]
        assert [j["status"] for j in jobs] == ["succeeded"] * 3, jobs
        for job_id in (busy, *waiting):
            versions = db_session.scalar(
                select(func.count()).select_from(ModelVersion).where(ModelVersion.job_id == job_id)
            )
            assert versions == 1, f"job {job_id} made {versions} versions"
        for job_id in waiting:
            # Claimed once: one `running` event (the whole stream is from the new Redis).
            events = status_events(url, job_id)
            assert sum('"running"' in e for e in events) == 1, events
        assert redis.Redis.from_url(url).exists(reconciled_key(Queue.TRAIN.value))
    finally:
        first.stop()
        if second is not None:
            second.stop()


def add_job(db_session, project_id: int, status: str, processes: int = 1) -> int:  # type: ignore[no-untyped-def]
    job = TrainingJob(
        project_id=project_id,
        dataset_sha256="0" * 64,
        dataset_name="rows.jsonl",
        base_model="tiny",
        config={"processes": processes},
        status=status,
    )
    db_session.add(job)
    db_session.commit()
    return int(job.id)


def test_one_pass_per_redis_lifetime(  # type: ignore[no-untyped-def]
    client, restartable_redis, db_session, tiny_model_dir
) -> None:
    """Only rows still waiting are sent, oldest first; a second pass (another worker's, or ours
    again) sends nothing while the marker stands; a restarted Redis has lost the marker, and the
    next pass sends again. A pass while another worker holds the lock does nothing."""
    from workers.reconciler import reconcile_queue

    project, dataset = make_project(client, tiny_model_dir)  # its statistics: pending
    add_job(db_session, project["id"], "succeeded")
    queued = [add_job(db_session, project["id"], "queued") for _ in range(2)]
    add_job(db_session, project["id"], "running")
    sent: list[tuple[TaskName, int, str]] = []

    def send(task: TaskName, row_id: int, queue: str) -> None:
        sent.append((task, row_id, queue))

    train, data = Queue.TRAIN.value, Queue.DATA.value
    assert reconcile_queue(get_redis(), train, "a", send) == queued
    assert reconcile_queue(get_redis(), data, "a", send) == [dataset["id"]]
    assert sent == [(TaskName.TRAIN, i, train) for i in queued] + [
        (TaskName.ANALYZE_DATASET, dataset["id"], data)
    ]
    assert reconcile_queue(get_redis(), train, "b", send) is None  # done in this lifetime
    assert reconcile_queue(get_redis(), Queue.INFER.value, "b", send) == []  # no rows
    assert len(sent) == 3

    restartable_redis.restart()
    get_redis().set(reconciling_key(train), "another worker", ex=60)
    assert reconcile_queue(get_redis(), train, "b", send) is None  # someone else is on it
    get_redis().delete(reconciling_key(train))
    assert reconcile_queue(get_redis(), train, "b", send) == queued
    assert len(sent) == 5


def test_a_run_no_worker_fits_yet_waits_for_a_later_pass(  # type: ignore[no-untyped-def]
    client, restartable_redis, db_session, tiny_model_dir
) -> None:
    """A two-process run goes where the web would send it (the queue of workers with two
    slots); right after a restart no heartbeat says where that is, so it waits for a pass after
    the workers' next beat, and the rows already sent are not sent again."""
    from workers.reconciler import reconcile_queue

    project, _ = make_project(client, tiny_model_dir)
    single = add_job(db_session, project["id"], "queued")
    pair = add_job(db_session, project["id"], "queued", processes=2)
    sent: list[tuple[TaskName, int, str]] = []

    def send(task: TaskName, row_id: int, queue: str) -> None:
        sent.append((task, row_id, queue))

    train = Queue.TRAIN.value
    assert reconcile_queue(get_redis(), train, "a", send) == [single]
    assert not get_redis().exists(reconciled_key(train))
    # The beat of a worker with two CPU slots, as workers/heartbeat.py writes it.
    heartbeat = {"hostname": "w@h", "queues": [train, "train.cpu2"], "slots": 2, "pid": 1}
    get_redis().set(worker_heartbeat_key("w@h"), json.dumps(heartbeat), ex=60)
    assert reconcile_queue(get_redis(), train, "a", send) == [pair]
    assert sent == [(TaskName.TRAIN, single, train), (TaskName.TRAIN, pair, "train.cpu2")]
    assert get_redis().exists(reconciled_key(train))


def test_a_redis_restart_during_a_pass_means_another_pass(  # type: ignore[no-untyped-def]
    client, restartable_redis, db_session, tiny_model_dir
) -> None:
    """What a pass sent to the Redis that went away mid-pass is lost: the pass must not mark the
    new Redis as refilled, so the next one sends everything again."""
    from workers.reconciler import reconcile_queue

    project, _ = make_project(client, tiny_model_dir)
    queued = [add_job(db_session, project["id"], "queued") for _ in range(2)]
    train = Queue.TRAIN.value

    def send_then_restart(task: TaskName, row_id: int, queue: str) -> None:
        if row_id == queued[0]:
            restartable_redis.restart()

    assert reconcile_queue(get_redis(), train, "a", send_then_restart) is None
    assert not get_redis().exists(reconciled_key(train))
    assert reconcile_queue(get_redis(), train, "a", lambda *_: None) == queued


def test_a_second_statistics_message_does_nothing(  # type: ignore[no-untyped-def]
    client, db_session, tiny_model_dir
) -> None:
    """Dataset statistics are claimed pending → running like jobs are: a message sent again
    after its dataset was analysed leaves the result alone."""
    from app.models import Dataset
    from workers.tasks.data import analyze_dataset

    _, dataset = make_project(client, tiny_model_dir)
    analyze_dataset(dataset["id"])
    row = db_session.get(Dataset, dataset["id"])
    assert row.stats_status == "ready", row.stats_error
    row.stats = {"marker": "left alone"}
    db_session.commit()
    analyze_dataset(dataset["id"])  # the duplicate
    db_session.expire_all()
    row = db_session.get(Dataset, dataset["id"])
    assert (row.stats_status, row.stats) == ("ready", {"marker": "left alone"})
