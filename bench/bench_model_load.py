"""Benchmark: first load of a built-in model (GGUF conversion) vs. a later load from the cache.

Each load runs in its own fresh Python process, so nothing is warm in memory between them; the
time measured is load_model() itself (not the interpreter or torch import), plus the process
wall time for context. PASS when the cached load takes under a quarter of the first one.

    .venv/bin/python bench/bench_model_load.py [--model smollm2-135m-instruct] [--keep]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys, time
from workers.ml.loading import load_model
start = time.perf_counter()
loaded = load_model(sys.argv[1], data_dir=sys.argv[2])
seconds = time.perf_counter() - start
print("RESULT " + json.dumps({"seconds": seconds, "converted": loaded.info.converted,
                              "params": loaded.info.parameter_count,
                              "device": loaded.info.device, "dtype": loaded.info.dtype}))
"""


def load_in_subprocess(model: str, data_dir: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, model, str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"load failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {**json.loads(lines[-1].removeprefix("RESULT ")), "wall": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="tunelab-bench-"))
    try:
        first = load_in_subprocess(args.model, data_dir)
        second = load_in_subprocess(args.model, data_dir)
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    if not first["converted"] or second["converted"]:
        print(f"unexpected: first converted={first['converted']}, second={second['converted']}")
        return 1
    ratio = first["seconds"] / second["seconds"]
    print(
        f"model: {args.model} ({first['params']:,} parameters, {first['device']}, "
        f"{first['dtype']}, {os.cpu_count()} CPUs)"
    )
    print(
        f"first load (GGUF conversion): {first['seconds']:.2f} s  (process {first['wall']:.2f} s)"
    )
    print(
        f"second load (safetensors cache): {second['seconds']:.2f} s  "
        f"(process {second['wall']:.2f} s)"
    )
    print(f"ratio first/second: {ratio:.1f}x")
    passed = second["seconds"] < first["seconds"] / 4
    print("PASS" if passed else "FAIL", "(criterion: second < first / 4)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
