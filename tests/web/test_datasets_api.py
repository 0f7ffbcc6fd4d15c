"""Dataset upload through the API: real files, real validation, nothing stored until decided."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "zhangjiajie"


@pytest.fixture
def project(client) -> dict:  # type: ignore[no-untyped-def]
    return client.post("/api/projects", json={"name": "Data"}).json()


def upload(client, project, name, content: bytes, **form):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/projects/{project['id']}/datasets",
        files={"file": (name, content, "application/octet-stream")},
        data={k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()},
    )


def staged_dirs(platform_env) -> list[Path]:  # type: ignore[no-untyped-def]
    uploads = Path(platform_env["TUNELAB_DATA_DIR"]) / "uploads"
    return list(uploads.iterdir()) if uploads.exists() else []


def stored_dirs(platform_env) -> list[Path]:  # type: ignore[no-untyped-def]
    root = Path(platform_env["TUNELAB_DATA_DIR"]) / "datasets"
    return list(root.iterdir()) if root.exists() else []


@pytest.mark.parametrize(
    ("filename", "rows"), [("alpaca_zh_demo.json", 1000), ("alpaca_en_demo.json", 999)]
)
def test_llama_factory_demo_files_upload_cleanly(client, project, filename, rows) -> None:  # type: ignore[no-untyped-def]
    path = SHARED / filename
    if not path.exists():
        pytest.skip(f"{path} not present")
    response = upload(client, project, filename, path.read_bytes())
    assert response.status_code == 201, response.text[:2000]
    body = response.json()
    assert body["format"] == "alpaca" and body["container"] == "json"
    assert body["row_count"] == rows
    assert body["dropped_count"] == 0
    first = client.get(f"/api/datasets/{body['id']}/rows?limit=1").json()
    assert first["total"] == rows
    assert first["data"][0]["messages"][-1]["role"] == "assistant"


def test_openai_jsonl_and_sharegpt_upload_cleanly(client, project) -> None:  # type: ignore[no-untyped-def]
    openai = "\n".join(
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "You are a guide."},
                    {"role": "user", "content": f"Question {i}?"},
                    {"role": "assistant", "content": f"Answer {i}."},
                ]
            }
        )
        for i in range(5)
    ).encode()
    response = upload(client, project, "chat.jsonl", openai)
    assert response.status_code == 201, response.text
    assert (response.json()["format"], response.json()["row_count"]) == ("openai", 5)

    sharegpt = json.dumps(
        [
            {
                "conversations": [
                    {"from": "human", "value": "你好"},
                    {"from": "gpt", "value": "你好！"},
                    {"from": "human", "value": "天门山在哪？"},
                    {"from": "gpt", "value": "在张家界市区南边。"},
                ],
                "system": "你是导游。",
            },
        ],
        ensure_ascii=False,
    ).encode()
    response = upload(client, project, "sg.json", sharegpt)
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["format"] == "sharegpt"
    row = client.get(f"/api/datasets/{dataset['id']}/rows").json()["data"][0]
    assert [m["role"] for m in row["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]


def test_invalid_rows_are_reported_and_nothing_is_stored_until_decided(
    client, project, platform_env
) -> None:  # type: ignore[no-untyped-def]
    rows = [
        {"instruction": "Good", "output": "Fine"},
        {"instruction": "", "output": "x"},
        {"instruction": "No output"},
        {"instruction": "Good 2", "output": "Fine 2"},
    ]
    content = "\n".join(json.dumps(r) for r in rows).encode()
    response = upload(client, project, "mixed.jsonl", content)
    assert response.status_code == 422
    body = response.json()
    assert body["error"]["code"] == "invalid_dataset"
    by_row = {(e["row"], e["field"]) for e in body["errors"]}
    assert (2, "instruction") in by_row and (3, "output") in by_row
    assert body["error"]["details"]["valid_rows"] == 2
    token = body["error"]["details"]["upload_token"]
    assert client.get(f"/api/projects/{project['id']}/datasets").json()["count"] == 0
    assert stored_dirs(platform_env) == []

    # The downloadable report of the staged upload.
    report = client.get(f"/api/projects/{project['id']}/uploads/{token}/report").json()
    assert report["invalid_rows"] == 2

    kept = client.post(f"/api/projects/{project['id']}/uploads/{token}/accept")
    assert kept.status_code == 201
    dataset = kept.json()
    assert (dataset["row_count"], dataset["dropped_count"]) == (2, 2)
    dropped = client.get(f"/api/datasets/{dataset['id']}/files/dropped").text.splitlines()
    assert [json.loads(line)["row"] for line in dropped] == [2, 3]
    assert staged_dirs(platform_env) == []


def test_discarding_a_staged_upload_leaves_nothing(client, project, platform_env) -> None:  # type: ignore[no-untyped-def]
    content = b'{"instruction": "a", "output": "b"}\n{"instruction": 3, "output": "b"}\n'
    token = upload(client, project, "x.jsonl", content).json()["error"]["details"]["upload_token"]
    assert client.delete(f"/api/projects/{project['id']}/uploads/{token}").status_code == 204
    assert staged_dirs(platform_env) == []
    assert client.post(f"/api/projects/{project['id']}/uploads/{token}/accept").status_code == 404


def test_keep_valid_in_one_call(client, project) -> None:  # type: ignore[no-untyped-def]
    content = b'{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n'
    response = upload(client, project, "x.jsonl", content, keep_valid=True)
    assert response.status_code == 201
    assert response.json()["row_count"] == 1


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("empty.jsonl", b"", "empty_file"),
        (
            "latin1.json",
            '[{"instruction": "café", "output": "crème brûlée"}]'.encode("latin-1"),
            "not_utf8",
        ),
        ("utf16.jsonl", '{"instruction": "a", "output": "b"}'.encode("utf-16"), "not_utf8"),
        ("image.json", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(100), "binary_file"),
    ],
)
def test_unusable_files_are_refused_and_leave_nothing(
    client, project, platform_env, name, content, code
) -> None:  # type: ignore[no-untyped-def]
    response = upload(client, project, name, content)
    assert response.status_code == 422
    body = response.json()
    assert body["error"]["details"]["upload_token"] is None
    assert body["errors"][0]["code"] == code
    assert body["errors"][0]["row"] is None
    assert staged_dirs(platform_env) == [] and stored_dirs(platform_env) == []


def test_over_limit_is_413_and_leaves_nothing(client, project, platform_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers.services import reset_app_caches

    monkeypatch.setenv("TUNELAB_MAX_UPLOAD_MB", "1")
    reset_app_caches()
    try:
        line = json.dumps({"instruction": "x" * 1000, "output": "y"}) + "\n"
        response = upload(client, project, "big.jsonl", (line * 1100).encode())
        assert response.status_code == 413
        assert "1 MB" in response.json()["error"]["message"]
        assert staged_dirs(platform_env) == [] and stored_dirs(platform_env) == []
    finally:
        monkeypatch.undo()
        reset_app_caches()


def test_same_file_twice_says_so(client, project) -> None:  # type: ignore[no-untyped-def]
    content = b'{"instruction": "a", "output": "b"}\n'
    first = upload(client, project, "a.jsonl", content).json()
    again = upload(client, project, "renamed.jsonl", content)
    assert again.status_code == 409
    assert f"dataset {first['id']}" in again.json()["error"]["message"]


def test_rows_are_data_not_markup(client, project) -> None:  # type: ignore[no-untyped-def]
    content = json.dumps({"instruction": "<script>alert(1)</script>", "output": "ok"}).encode()
    dataset = upload(client, project, "xss.jsonl", content).json()
    rows = client.get(f"/api/datasets/{dataset['id']}/rows").json()["data"]
    assert rows[0]["messages"][0]["content"] == "<script>alert(1)</script>"


def test_bad_options_name_the_field(client, project) -> None:  # type: ignore[no-untyped-def]
    response = upload(client, project, "a.jsonl", b"{}", format="llama")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "format"


def test_datasets_are_scoped_and_deleted_with_files(client, project, platform_env) -> None:  # type: ignore[no-untyped-def]
    dataset = upload(client, project, "a.jsonl", b'{"instruction": "a", "output": "b"}\n').json()
    assert client.get("/api/datasets/999999").status_code == 404
    assert (
        client.patch(f"/api/datasets/{dataset['id']}", json={"val_percent": 20}).json()[
            "val_percent"
        ]
        == 20
    )
    assert (
        client.patch(f"/api/datasets/{dataset['id']}", json={"val_percent": 90}).status_code == 422
    )
    assert client.delete(f"/api/datasets/{dataset['id']}").status_code == 204
    assert stored_dirs(platform_env) == []


def test_csv_with_column_mapping(client, project) -> None:  # type: ignore[no-untyped-def]
    csv = "question,answer\n天门山怎么去？,从市区乘索道。\n金鞭溪多长？,约 7.5 公里。\n".encode()
    response = upload(client, project, "faq.csv", csv)
    assert response.status_code == 201, response.text
    assert response.json()["row_count"] == 2
    csv2 = b"q,a\nhello,world\n"
    response = upload(
        client, project, "odd.csv", csv2, column_map=json.dumps({"instruction": "q", "output": "a"})
    )
    assert response.status_code == 201, response.text
