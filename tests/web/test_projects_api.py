"""/api/projects against a real database (SQLite and PostgreSQL via the `database_url` param)."""

from __future__ import annotations

import pytest


def create(client, name="Travel guide", **extra):  # type: ignore[no-untyped-def]
    return client.post("/api/projects", json={"name": name, **extra})


def test_create_list_get_rename_delete(client) -> None:  # type: ignore[no-untyped-def]
    response = create(client, description="Zhangjiajie guides")
    assert response.status_code == 201, response.text
    project = response.json()
    assert project["name"] == "Travel guide"
    assert project["slug"] == "travel-guide"
    assert project["base_model"] == "smollm2-135m-instruct"  # the default

    listed = client.get("/api/projects").json()
    assert listed["count"] == 1 and listed["data"][0]["id"] == project["id"]

    renamed = client.patch(f"/api/projects/{project['id']}", json={"name": "张家界导游"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "张家界导游"
    assert client.get(f"/api/projects/{project['id']}").json()["name"] == "张家界导游"

    assert client.delete(f"/api/projects/{project['id']}").status_code == 204
    assert client.get(f"/api/projects/{project['id']}").status_code == 404
    assert client.get("/api/projects").json()["count"] == 0


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("", "cannot be empty"), ("   ", "cannot be empty"), ("x" * 81, "at most 80")],
)
def test_bad_names_are_422_naming_the_field(client, name, fragment) -> None:  # type: ignore[no-untyped-def]
    response = create(client, name=name)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["details"][0]["field"] == "name"
    assert fragment in error["details"][0]["message"]
    assert client.get("/api/projects").json()["count"] == 0


def test_duplicate_name_is_422_case_insensitive(client) -> None:  # type: ignore[no-untyped-def]
    assert create(client, name="Contracts").status_code == 201
    response = create(client, name="contracts")
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {
            "field": "name",
            "message": "You already have a project named “contracts”; choose another name.",
        }
    ]


def test_rename_to_taken_name_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    create(client, name="A")
    b = create(client, name="B").json()
    response = client.patch(f"/api/projects/{b['id']}", json={"name": "A"})
    assert response.status_code == 422
    assert client.get(f"/api/projects/{b['id']}").json()["name"] == "B"


def test_unknown_ids_and_models(client) -> None:  # type: ignore[no-untyped-def]
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"name": "x"}} if method == "patch" else {}
        response = getattr(client, method)("/api/projects/99999", **kwargs)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    response = create(client, base_model="no-such-model")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "base_model"


def test_malformed_body_uses_the_error_shape(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/api/projects", json={"description": "no name"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "name"


def test_errors_follow_the_language(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/api/projects", json={"name": ""}, headers={"Accept-Language": "zh-CN"})
    assert response.json()["error"]["details"][0]["message"] == "请输入名称：名称不能为空。"


def test_slugs_stay_unique(client) -> None:  # type: ignore[no-untyped-def]
    assert create(client, name="Travel Guide!").json()["slug"] == "travel-guide"
    assert create(client, name="travel guide?").json()["slug"] == "travel-guide-2"
    assert create(client, name="旅游").json()["slug"] == "project"


def test_openapi_docs_are_served(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/projects" in paths and "/api/projects/{project_id}" in paths


def _racing(monkeypatch, db_session, client, name: str, slug: str, after: str) -> None:  # type: ignore[no-untyped-def]
    """Another request commits a project named `name` (slug `slug`) right after this request's
    step `after` (its name check, or its slug pick) and before it commits: the moment two
    requests race. Before this request writes anything, so that SQLite's one writer is free."""
    from app.models import Project
    from app.services import projects

    seed = db_session.get(Project, create(client, name="seed").json()["id"])
    step = getattr(projects, after)

    def competitor_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = step(*args, **kwargs)
        if not getattr(competitor_first, "done", False):
            competitor_first.done = True  # type: ignore[attr-defined]
            db_session.add(
                Project(owner_id=seed.owner_id, name=name, slug=slug, base_model=seed.base_model)
            )
            db_session.commit()
        return result

    monkeypatch.setattr(projects, after, competitor_first)


def test_two_creates_of_one_name_at_once_refuse_the_second(client, db_session, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _racing(monkeypatch, db_session, client, "contracts", "contracts", "_clean_name")
    response = create(client, name="contracts")
    assert response.status_code == 422, response.text  # not a 500 from the unique constraint
    assert response.json()["error"]["details"][0]["field"] == "name"
    names = sorted(p["name"] for p in client.get("/api/projects").json()["data"])
    assert names == ["contracts", "seed"]


def test_two_names_of_one_slug_at_once_both_get_a_project(client, db_session, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _racing(monkeypatch, db_session, client, "travel guide?", "travel-guide", "_unique_slug")
    response = create(client, name="Travel Guide!")
    assert response.status_code == 201, response.text
    assert response.json()["slug"] == "travel-guide-2"


def test_a_rename_racing_a_create_of_that_name_is_refused(client, db_session, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    b = create(client, name="B").json()
    _racing(monkeypatch, db_session, client, "A", "a", "_clean_name")
    response = client.patch(f"/api/projects/{b['id']}", json={"name": "A"})
    assert response.status_code == 422, response.text
    assert client.get(f"/api/projects/{b['id']}").json()["name"] == "B"
