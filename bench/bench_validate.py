"""Benchmark `validate_file` on a generated alpaca dataset (default 100,000 rows, ~50 MB JSONL).

Target: under 10 s wall time and under 300 MB of extra memory. Run from the repo root:

    .venv/bin/python bench/bench_validate.py [--rows N] [--container jsonl|json]

The data is generated in a child process, so the generator's own memory cannot hide inside the
parent's peak RSS. Memory is reported two ways:
* RSS: the process's peak resident set (ru_maxrss) after the run minus its RSS right before,
  i.e. how much the validation pushed the high-water mark up;
* tracemalloc: peak Python heap during a second, traced run (slower, so not used for timing).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.datasets import validate_file  # noqa: E402  (needs the path above)

TARGET_SECONDS = 10.0
TARGET_MB = 300.0

ZH = (
    "机器学习 模型 数据 训练 推理 文本 中文 翻译 总结 解释 问题 答案 城市 历史 科学 "
    "理论 计算 方法 系统 用户 世界 发展 重要 我们 可以 因为 所以 但是 如果 这个 一个 "
    "进行 提供 需要 通过 研究 技术 社会 经济 文化 教育 健康 环境 能源 交通 未来"
).split()
EN = (
    "model data training inference text translate summarize explain question answer city "
    "history science theory compute method system user world develop important we can "
    "because so but if this a the of and to in is for on with as by at from that which"
).split()


def _sentence(rng: random.Random, words: int) -> str:
    if rng.random() < 0.5:
        return "".join(rng.choices(ZH, k=words)) + "。"
    text = " ".join(rng.choices(EN, k=words))
    return text[:1].upper() + text[1:] + "."


def generate(path: Path, rows: int, container: str, seed: int = 1234) -> None:
    """Alpaca rows, ~500 bytes each; ~1% have a mistake and ~0.5% are duplicates."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        if container == "json":
            f.write("[\n")
        previous = ""
        for i in range(rows):
            row: dict[str, str] = {
                "instruction": _sentence(rng, rng.randint(6, 14)),
                "input": _sentence(rng, rng.randint(3, 10)) if rng.random() < 0.4 else "",
                "output": " ".join(_sentence(rng, rng.randint(9, 22)) for _ in range(4)),
            }
            roll = rng.random()
            if roll < 0.005:
                del row["output"]  # missing_field
            elif roll < 0.01:
                row["output"] = " "  # empty_field
            line = json.dumps(row, ensure_ascii=False)
            if 0.01 <= roll < 0.015 and previous:
                line = previous  # duplicate_row
            previous = line
            if container == "json":
                f.write("  " + line + (",\n" if i < rows - 1 else "\n"))
            else:
                f.write(line + "\n")
        if container == "json":
            f.write("]\n")


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--container", choices=("jsonl", "json"), default="jsonl")
    parser.add_argument("--generate-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate_only:
        generate(args.generate_only, args.rows, args.container)
        return 0

    with tempfile.TemporaryDirectory(prefix="tunelab-bench-") as tmp:
        src = Path(tmp) / f"bench.{args.container}"
        started = time.perf_counter()
        cmd = [
            sys.executable,
            __file__,
            "--rows",
            str(args.rows),
            "--container",
            args.container,
            "--generate-only",
            str(src),
        ]
        subprocess.run(cmd, check=True)
        size_mb = src.stat().st_size / 1e6
        print(
            f"generated {args.rows:,} rows, {size_mb:.1f} MB {args.container} "
            f"in {time.perf_counter() - started:.1f} s"
        )

        gc.collect()
        rss_before = _rss_mb()
        started = time.perf_counter()
        report = validate_file(src, Path(tmp) / "n.jsonl", Path(tmp) / "d.jsonl")
        wall = time.perf_counter() - started
        rss_delta = max(0.0, _peak_rss_mb() - rss_before)

        gc.collect()
        tracemalloc.start()
        validate_file(src, Path(tmp) / "n2.jsonl", Path(tmp) / "d2.jsonl")
        traced_mb = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()

    print(
        f"rows: total {report.total_rows:,}, valid {report.valid_rows:,}, "
        f"invalid {report.invalid_rows:,}, counts {report.counts}"
    )
    print(
        f"wall: {wall:.2f} s  ({report.total_rows / wall:,.0f} rows/s, {size_mb / wall:.1f} MB/s)"
    )
    print(
        f"memory: peak RSS delta {rss_delta:.1f} MB (RSS before {rss_before:.1f} MB), "
        f"tracemalloc peak {traced_mb:.1f} MB"
    )
    extra = max(rss_delta, traced_mb)
    passed = wall < TARGET_SECONDS and extra < TARGET_MB
    verdict = "PASS" if passed else "FAIL"
    print(
        f"{verdict}: target < {TARGET_SECONDS:.0f} s and < {TARGET_MB:.0f} MB extra "
        f"(got {wall:.2f} s, {extra:.1f} MB)"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
