"""An uploaded file's name is never a path: whatever the client calls it (a walk out of the data
dir, a sub-folder, a Windows path, a NUL), the file is stored under a name the server makes,
inside the data dir, and the name is kept only for display and downloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.config import get_settings

CONTENT = json.dumps({"instruction": "q", "output": "a"}).encode() + b"\n"

NAMES = [
    ("../../etc/passwd", "passwd"),
    ("../../../../tmp/tunelab-escape.jsonl", "tunelab-escape.jsonl"),
    ("a/b.jsonl", "b.jsonl"),
    ("..\\..\\windows\\evil.jsonl", "evil.jsonl"),
    ("x\x00y.jsonl", "xy.jsonl"),
    ("/", "upload"),
]


def _multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart body with `filename` as raw bytes: httpx would percent-encode a NUL."""
    boundary = "tunelab-test-boundary"
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(("sent", "shown"), NAMES)
def test_an_upload_name_is_never_used_as_a_path(client, sent: str, shown: str) -> None:  # type: ignore[no-untyped-def]
    data_dir = Path(get_settings().data_dir)
    outside_before = set(data_dir.parent.iterdir())
    project = client.post("/api/projects", json={"name": "Names"}).json()

    def upload(name: str, content: bytes) -> tuple[dict, set[str]]:
        body, content_type = _multipart(name, content)
        response = client.post(
            f"/api/projects/{project['id']}/datasets",
            content=body,
            headers={"Content-Type": content_type},
        )
        assert response.status_code == 201, response.text
        dataset = response.json()
        folder = data_dir / "datasets" / str(dataset["id"])
        return dataset, {p.name for p in folder.rglob("*")}

    _, plain = upload("plain.jsonl", CONTENT * 2)  # other rows: the same file twice is refused
    dataset, stored = upload(sent, CONTENT)
    assert dataset["original_filename"] == shown

    # Stored in the dataset's own folder under the names the server gives any upload (the
    # original keeps a known extension only).
    assert stored - {"original"} <= plain, stored
    assert not any(p.name == shown for p in data_dir.rglob("*"))
    assert set(data_dir.parent.iterdir()) == outside_before
    assert not Path("/tmp/tunelab-escape.jsonl").exists()

    # The download offers the shown name, quoted, never the raw one.
    download = client.get(f"/api/datasets/{dataset['id']}/files/original")
    assert download.status_code == 200 and download.content == CONTENT
    disposition = download.headers["content-disposition"]
    assert shown in disposition and "/" not in disposition.replace("utf-8''", "")
