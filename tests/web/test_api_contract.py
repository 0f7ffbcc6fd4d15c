"""What the OpenAPI fuzzing (tests/fuzz/test_api_schema.py) found, pinned as plain examples so
they stay fixed whatever the fuzzer happens to draw: ids out of the database's range, naive
timestamps, error statuses the document did not declare, a 405 without its methods, names equal
but for the case of a non-ASCII letter, text PostgreSQL cannot store, a column map naming a
column by a list. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from app.schemas.common import ROW_ID_MAX

BROWSER = {"Accept": "text/html"}


def error_of(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/projects/-761738111089128024283063963978039296/versions",  # the example
        f"/api/projects/{2**63}",  # past SQLite's 64 bits: OverflowError
        f"/api/jobs/{ROW_ID_MAX + 1}",  # past PostgreSQL's INTEGER: "integer out of range"
        f"/api/datasets/{ROW_ID_MAX + 1}/rows",
        f"/api/evaluations/{2**63}/examples",
    ],
)
def test_ids_out_of_range_are_422_naming_the_parameter(client, path: str) -> None:  # type: ignore[no-untyped-def]
    error = error_of(client.get(path), 422)
    assert error["code"] == "invalid_input"
    assert error["details"][0]["field"].endswith("_id"), error


def test_ids_out_of_range_in_bodies_and_pages(client) -> None:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "Ids"}).json()
    body = {"dataset_id": ROW_ID_MAX + 1, "config": {}}
    error = error_of(client.post(f"/api/projects/{project['id']}/jobs", json=body), 422)
    assert error["details"][0]["field"] == "dataset_id"
    page = client.get(f"/projects/{2**63}", headers=BROWSER)
    assert page.status_code == 422 and "text/html" in page.headers["content-type"]
    assert client.get(f"/projects/{ROW_ID_MAX}", headers=BROWSER).status_code == 404


def test_timestamps_carry_their_time_zone(client) -> None:  # type: ignore[no-untyped-def]
    """Read back from the database (SQLite returns naive datetimes), not the created object."""
    client.post("/api/projects", json={"name": "Zone"})
    client.post("/api/account/keys", json={"name": "zone"})
    stamps = [client.get("/api/projects").json()["data"][0]["created_at"]]
    stamps.append(client.get("/api/account/keys").json()["data"][0]["created_at"])
    for stamp in stamps:
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0), stamp


def test_the_document_declares_every_error_status_with_the_error_shape(client) -> None:  # type: ignore[no-untyped-def]
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's own 422 body, never sent
    assert set(schemas["ErrorBody"]["required"]) == {"error"}
    assert set(schemas["ErrorInfo"]["required"]) == {"code", "message"}
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document["paths"].items():
        if not path.startswith(("/api/", "/v1/")):
            continue
        for method, operation in operations.items():
            for status in ("400", "401", "403", "404", "409", "413", "422", "503"):
                declared = operation["responses"].get(status)
                assert declared, f"{method.upper()} {path}: {status} not declared"
                assert declared["content"]["application/json"]["schema"] == error_ref


def test_a_405_lists_every_method_the_path_takes(client) -> None:  # type: ignore[no-untyped-def]
    response = client.request("OPTIONS", "/api/projects")
    assert error_of(response, 405)["code"] == "http_405"
    assert response.headers["allow"] == "GET, POST"  # two routes; Starlette named only GET


def test_a_review_position_out_of_range(client, db_session) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers.evaluations import add_versions, insert_evaluation

    project = client.post("/api/projects", json={"name": "Review"}).json()
    add_versions(db_session, project["id"])
    evaluation = insert_evaluation(db_session, project["id"])
    vote = {"left": "base", "right": "v1", "choice": "left"}
    path = f"/api/evaluations/{evaluation.id}/review"
    for position in (2**63, ROW_ID_MAX + 1):
        error = error_of(client.post(path, json={**vote, "position": position}), 422)
        assert error["details"][0]["field"] == "position"
    assert client.post(path, json={**vote, "position": 0}).status_code == 201
    page = client.post(
        f"/evaluations/{evaluation.id}/review",
        data={**vote, "position": "²"},
        headers={**BROWSER, "Origin": "http://testserver"},
    )
    assert page.status_code < 500


@pytest.mark.parametrize("again", ["Équipe", "équipe", "ÉQUIPE"])
def test_names_equal_but_for_non_ascii_case_are_taken(client, again: str) -> None:  # type: ignore[no-untyped-def]
    """SQL's lower() on SQLite lowers ASCII only: the second "Équipe" was a 500."""
    assert client.post("/api/projects", json={"name": "Équipe"}).status_code == 201
    error = error_of(client.post("/api/projects", json={"name": again}), 422)
    assert error["details"][0]["field"] == "name"


def test_text_the_database_cannot_store(client, database_url: str) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/api/projects", json={"name": "Nul\u0000name"})
    if database_url.startswith("sqlite"):
        assert response.status_code == 201  # SQLite stores a NUL character
        return
    error = error_of(response, 422)  # PostgreSQL text cannot hold one: was a 500
    assert error["code"] == "unstorable_value"
    zh = client.post("/api/projects", json={"name": "\u0000"}, headers={"Accept-Language": "zh-CN"})
    assert "数据库无法存储" in error_of(zh, 422)["message"]


@pytest.mark.parametrize("column_map", ['{"instruction": ["q"]}', '{"output": 5}'])
def test_a_column_map_names_columns_by_strings(client, column_map: str) -> None:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "Columns"}).json()
    rows = b'{"q": "Hi?", "a": "Hello."}\n'
    response = client.post(
        f"/api/projects/{project['id']}/datasets",
        files={"file": ("rows.jsonl", rows)},
        data={"column_map": column_map},
    )
    assert error_of(response, 422)["details"][0]["field"] == "column_map"
