"""An S3-compatible server on loopback for tests: moto's standalone server, run as its own
process (`moto_server`, from the moto[server] package), as a separate machine's store would be."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import botocore.exceptions

from app.embedded_redis import free_port

CREDENTIALS = {"aws_access_key_id": "tunelab", "aws_secret_access_key": "tunelab-secret"}
REGION = "us-east-1"


@contextmanager
def s3_server(log_dir: Path, bucket: str = "tunelab") -> Iterator[dict[str, str]]:
    """Start moto_server, create `bucket`; yields the TUNELAB_ARTIFACTS_* settings."""
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    log = (log_dir / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except botocore.exceptions.EndpointConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield {
            "TUNELAB_ARTIFACTS_URL": f"s3://{bucket}/store",
            "TUNELAB_ARTIFACTS_ENDPOINT": endpoint,
            "TUNELAB_ARTIFACTS_REGION": REGION,
            "TUNELAB_ARTIFACTS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "TUNELAB_ARTIFACTS_SECRET": CREDENTIALS["aws_secret_access_key"],
        }
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
