"""Server-rendered project pages: full pages, htmx partials, form errors, friendly 404s."""

from __future__ import annotations


def test_empty_state_then_create_through_the_form(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/projects")
    assert page.status_code == 200
    assert 'id="project-list-empty"' in page.text

    response = client.post(
        "/projects",
        data={
            "name": "Contracts",
            "description": "NDA review",
            "base_model": "smollm2-135m-instruct",
        },
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 204
    project_url = response.headers["HX-Redirect"]

    detail = client.get(project_url)
    assert detail.status_code == 200
    assert "Contracts" in detail.text
    for section in ("datasets-section", "runs-section", "versions-section"):
        assert f'id="{section}"' in detail.text
    assert "Contracts" in client.get("/projects").text


def test_form_errors_render_next_to_the_field(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/projects", data={"name": ""}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert 'id="project-form"' in response.text  # the partial, not the whole page
    assert "<html" not in response.text
    assert 'id="f-name-error"' in response.text
    assert "cannot be empty" in response.text


def test_rename_and_delete_through_pages(client) -> None:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "Old"}).json()
    response = client.post(
        f"/projects/{project['id']}/settings",
        data={"name": "New", "description": "d"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 204
    assert client.get(f"/api/projects/{project['id']}").json()["name"] == "New"

    response = client.delete(f"/projects/{project['id']}", headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"] == "/projects"
    assert client.get(f"/api/projects/{project['id']}").status_code == 404


def test_unknown_project_page_is_a_friendly_404(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/projects/424242", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert "<html" in response.text and "Back to projects" in response.text


def test_chinese_pages(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/projects", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "还没有项目" in page.text
    page = client.get("/projects", cookies={"lang": "en"}, headers={"Accept-Language": "zh-CN"})
    assert "No projects yet" in page.text
