"""Load benchmark: many viewers, page loads and chats at once against one `tunelab up`.

Issue 15's load, on loopback, bounded in time. It starts `tunelab up` on a fresh data dir (the
defaults: embedded Redis, SQLite, a training worker and a chat worker), registers a tiny random
Llama (SmolLM2's tokenizer, 2 layers) as a local base model, uploads the Zhangjiajie demo
dataset and starts a training run on it. Then, for --seconds (60), all at once:
  viewers   50 clients follow the training job's Server-Sent Events (`/api/jobs/{id}/events`)
            from the start until its `done` frame
  pages     50 page loads per second, open loop (started on schedule whether or not earlier
            ones have answered), spread over the project, job, chat, datasets, run form,
            models and projects pages
  chats     16 concurrent chat streams through `/v1/chat/completions` (stream: true), each
            asking again as soon as its answer ends
Printed: errors of each kind (any status >= 400, broken stream, timeout), page latency
percentiles, chat tokens, and for the viewers whether every one received every metric event of
the job — the list `/api/jobs/{id}/metrics` gives once the job is over — once, in step order.
Targets: zero errors, page p99 under 300 ms, every viewer complete and in order.

The model is tiny on purpose: the benchmark measures the platform (web server, Redis streams,
the SSE fan-out, the workers' relays), and a real model would only take the CPU away from it on
a 2-core machine. The load generator runs in this process (asyncio + httpx).

    .venv/bin/python bench/bench_load.py [--seconds 60] [--viewers 50] [--pages-per-s 50]
        [--chats 16] [--port 8793]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402

from bench.bench_serving import start_platform  # noqa: E402
from tests.helpers.tiny_model import build_tiny_model  # noqa: E402

DATASET = ROOT / "examples" / "zhangjiajie" / "train.json"
PAGE_P99_TARGET_MS = 300.0


@dataclass
class Tally:
    errors: Counter[str] = field(default_factory=Counter)
    page_ms: list[float] = field(default_factory=list)
    chat_answers: int = 0
    chat_tokens: int = 0
    viewer_steps: list[list[int]] = field(default_factory=list)
    viewer_done: int = 0


def prepare(base: str, data_dir: Path, epochs: float) -> tuple[str, int, str]:
    """Register the tiny model, make the project, upload the data, start the run.
    Returns (project slug for chat, job id, the project's page path)."""
    folder = build_tiny_model(data_dir / "tiny-model")
    with httpx.Client(base_url=base, timeout=120) as client:
        model = client.post("/api/models", json={"path": str(folder)})
        model.raise_for_status()
        project = client.post(
            "/api/projects", json={"name": "load", "base_model": model.json()["id"]}
        )
        project.raise_for_status()
        project_id, slug = project.json()["id"], project.json()["slug"]
        with DATASET.open("rb") as f:
            upload = client.post(
                f"/api/projects/{project_id}/datasets",
                files={"file": (DATASET.name, f, "application/json")},
            )
        upload.raise_for_status()
        config = {"epochs": epochs, "batch_size": 4, "max_length": 256, "val_percent": 10}
        job = client.post(
            f"/api/projects/{project_id}/jobs",
            json={"dataset_id": upload.json()["id"], "config": config},
        )
        job.raise_for_status()
        # One chat answer first, so the chat worker has loaded the model before the clock runs.
        warm = client.post(
            "/v1/chat/completions",
            json={
                "model": f"{slug}:base",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4,
            },
        )
        warm.raise_for_status()
        return slug, job.json()["id"], f"/projects/{project_id}"


async def sse_frames(response: httpx.Response):
    """(event, data) of each SSE frame; comments skipped."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


async def viewer(client: httpx.AsyncClient, job_id: int, tally: Tally, deadline: float) -> None:
    steps: list[int] = []
    tally.viewer_steps.append(steps)
    try:
        async with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
            if response.status_code != 200:
                tally.errors[f"viewer HTTP {response.status_code}"] += 1
                return
            async for event, data in sse_frames(response):
                if event == "metric":
                    steps.append(int(json.loads(data)["step"]))
                elif event == "done":
                    tally.viewer_done += 1
                    return
                if time.monotonic() > deadline:
                    tally.errors["viewer: no done frame before the deadline"] += 1
                    return
    except httpx.HTTPError as exc:
        tally.errors[f"viewer {type(exc).__name__}"] += 1


async def page_loads(
    client: httpx.AsyncClient, paths: list[str], per_s: float, seconds: float, tally: Tally
) -> None:
    async def load(path: str) -> None:
        start = time.perf_counter()
        try:
            response = await client.get(path, headers={"Accept": "text/html"})
            if response.status_code >= 400:
                tally.errors[f"page {path} HTTP {response.status_code}"] += 1
        except httpx.HTTPError as exc:
            tally.errors[f"page {type(exc).__name__}"] += 1
            return
        tally.page_ms.append((time.perf_counter() - start) * 1000)

    tasks = []
    start = time.monotonic()
    total = int(per_s * seconds)
    for i in range(total):
        # Open loop: each load starts on schedule, so a slow server cannot slow the offered load.
        await asyncio.sleep(max(0.0, start + i / per_s - time.monotonic()))
        tasks.append(asyncio.create_task(load(paths[i % len(paths)])))
    await asyncio.gather(*tasks)


async def chatter(client: httpx.AsyncClient, model: str, until: float, tally: Tally) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me about Zhangjiajie."}],
        "max_tokens": 48,
        "stream": True,
    }
    while time.monotonic() < until:
        try:
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    tally.errors[f"chat HTTP {response.status_code}"] += 1
                    await asyncio.sleep(1)
                    continue
                finished = False
                async for _, data in sse_frames(response):
                    if data == "[DONE]":
                        finished = True
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        tally.errors[f"chat error {chunk['error'].get('code')}"] += 1
                        break
                    if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                        tally.chat_tokens += 1
                if finished:
                    tally.chat_answers += 1
                else:
                    tally.errors["chat stream ended without [DONE]"] += 1
        except httpx.HTTPError as exc:
            tally.errors[f"chat {type(exc).__name__}"] += 1


async def run_load(base: str, slug: str, job_id: int, project_path: str, args) -> Tally:
    tally = Tally()
    paths = [
        project_path,
        f"/jobs/{job_id}",
        f"{project_path}/chat",
        f"{project_path}/runs/new",
        "/projects",
        "/models",
    ]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(30.0, read=None)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
        start = time.monotonic()
        until = start + args.seconds
        viewers = [
            asyncio.create_task(viewer(client, job_id, tally, until + args.job_grace_s))
            for _ in range(args.viewers)
        ]
        chats = [
            asyncio.create_task(chatter(client, f"{slug}:base", until, tally))
            for _ in range(args.chats)
        ]
        await page_loads(client, paths, args.pages_per_s, args.seconds, tally)
        await asyncio.gather(*chats)
        await asyncio.gather(*viewers)
    return tally


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(tally: Tally, expected_steps: list[int], args) -> bool:
    complete = sum(steps == expected_steps for steps in tally.viewer_steps)
    in_order = sum(steps == sorted(steps) for steps in tally.viewer_steps)
    errors = sum(tally.errors.values())
    p50, p99 = percentile(tally.page_ms, 0.5), percentile(tally.page_ms, 0.99)
    print(
        f"load for {args.seconds:.0f} s: {args.viewers} job viewers, "
        f"{args.pages_per_s:.0f} page loads/s, {args.chats} chat streams"
    )
    print(
        f"pages    : {len(tally.page_ms)} loaded, p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
        f"max {max(tally.page_ms, default=float('nan')):.0f} ms, "
        f"mean {statistics.fmean(tally.page_ms) if tally.page_ms else float('nan'):.0f} ms"
    )
    print(
        f"chats    : {tally.chat_answers} answers, {tally.chat_tokens} tokens "
        f"({tally.chat_tokens / args.seconds:.0f} tokens/s)"
    )
    print(
        f"viewers  : {tally.viewer_done}/{args.viewers} saw the job end; {complete} received "
        f"all {len(expected_steps)} metric events; {in_order} in step order"
    )
    for kind, count in tally.errors.most_common():
        print(f"error    : {count} x {kind}")
    checks = [
        ("errors", errors == 0, f"{errors} (target 0)"),
        ("page p99", p99 < PAGE_P99_TARGET_MS, f"{p99:.0f} ms (target < {PAGE_P99_TARGET_MS:.0f})"),
        (
            "viewers complete and in order",
            complete == args.viewers,
            f"{complete}/{args.viewers} (target all)",
        ),
    ]
    for name, ok, figure in checks:
        print(f"{name}: {figure}  {'PASS' if ok else 'FAIL'}")
    return all(ok for _, ok, _ in checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--pages-per-s", type=float, default=50)
    parser.add_argument("--chats", type=int, default=16)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument(
        "--job-grace-s",
        type=float,
        default=600,
        help="how long viewers wait for the job to end after the load",
    )
    parser.add_argument("--port", type=int, default=8793)
    parser.add_argument(
        "--log", type=Path, default=Path("bench-load-up.log"), help="`tunelab up`'s output"
    )
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="tunelab-bench-load-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = start_platform(data_dir, args.port, args.log)
        base = f"http://127.0.0.1:{args.port}"
        slug, job_id, project_path = prepare(base, data_dir, args.epochs)
        tally = asyncio.run(run_load(base, slug, job_id, project_path, args))
        with httpx.Client(base_url=base, timeout=60) as client:
            job = client.get(f"/api/jobs/{job_id}").json()
            metrics = client.get(f"/api/jobs/{job_id}/metrics").json()
        rows = metrics["data"] if isinstance(metrics, dict) else metrics
        expected = [int(m["step"]) for m in rows]
        print(f"job {job_id}: {job['status']}, {len(expected)} metric events")
        ok = report(tally, expected, args) and job["status"] == "succeeded"
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        shutil.rmtree(data_dir, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
