"""Isolation: with accounts on, user B reaches none of user A's things, on every route.

The routes come from the app's own route table (tests/helpers/routes.py), so a route added
later is covered without editing this file; a route that takes an id this test does not know
how to fill fails the test until it is taught here. For each protected route:
- logged out, it answers 401 (API, /v1, SSE, downloads) or sends the browser to the login page;
- user B, filling the path with A's ids, gets exactly what an id that does not exist gets: 404
  (a route that checks its body before looking the id up answers 422 for both; one page
  answers both with its "expired" partial) — never A's data, and never a 403 that would tell
  B the id exists;
- A, for the same GET URLs, gets an answer that is not 404 (so the ids are real and the check
  above could fail).
List pages and /v1/models as B never show A's project. Admin-only routes (users, registered
model folders) answer B — a member — with 403 and are checked separately.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.accounts import logged_in, make_user
from tests.helpers.routes import iter_routes
from tests.helpers.versions import add_version

SECRET = "Alice secret project"
MISSING = "987654"
# Routes whose answer streams until the client leaves: A's check reads only the status line.
STREAMS = re.compile(r"/(events|stream)$")
ADMIN_ONLY = re.compile(r"^/admin/|^/(api/)?models/registered/")
PUBLIC = {"/healthz", "/partials/status-banner", "/docs", "/redoc", "/setup", "/login",
          "/logout", "/lang/{language}"}  # fmt: skip


@pytest.fixture
def world(client, accounts, db_session, tiny_model_dir) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Alice's project with one of everything; Bob, a member with a project of his own."""
    from app.models import ChatMessage, Conversation, Export, JobStatus, ModelVersion
    from app.redis_client import get_redis
    from app.redis_keys import generation_request_key
    from app.services import template_preview, worker_results
    from tests.helpers.evaluations import insert_evaluation

    alice_id = make_user("alice", admin=False)
    make_user("bob")
    make_user("carol")
    make_user("root", admin=True)
    registered = logged_in("root").post("/api/models", json={"path": str(tiny_model_dir)})
    alice = logged_in("alice")
    bob = logged_in("bob")
    bob.post("/api/projects", json={"name": "Bob's own"})

    project = alice.post("/api/projects", json={"name": SECRET}).json()
    pid = project["id"]
    rows = "\n".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(6))
    dataset = alice.post(
        f"/api/projects/{pid}/datasets", files={"file": ("rows.jsonl", rows.encode())}
    ).json()
    bad = alice.post(
        f"/api/projects/{pid}/datasets",
        files={"file": ("bad.jsonl", (rows + '\n{"instruction": ""}').encode())},
    )
    token = bad.json()["error"]["details"]["upload_token"]
    job = alice.post(
        f"/api/projects/{pid}/jobs",
        json={"dataset_id": dataset["id"], "config": {"epochs": 1, "val_percent": 0}},
    )
    assert job.status_code == 201, job.text
    add_version(db_session, pid, 1, "/nowhere/adapter", "smollm2-135m-instruct")
    version = db_session.query(ModelVersion).filter_by(project_id=pid).one()
    db_session.add(Export(version_id=version.id, format="adapter", status=JobStatus.FAILED))
    conversation = Conversation(project_id=pid, title=SECRET, model="base")
    db_session.add(conversation)
    db_session.flush()
    message = ChatMessage(conversation_id=conversation.id, role="assistant", model="base",
                          content=f"{SECRET} answer", turn=1)  # fmt: skip
    db_session.add(message)
    db_session.commit()
    evaluation = insert_evaluation(db_session, pid)
    # A chat request of Alice's as generation.start records it (no chat worker runs here, so
    # the request is written without being queued).
    request_id = "a1" * 16
    get_redis().set(generation_request_key(request_id),
                    json.dumps({"owner_id": alice_id, "messages": []}), ex=600)  # fmt: skip
    preview_id = template_preview.request_preview(
        _dataset_row(db_session, dataset["id"]), 1, alice_id
    )
    worker_results.set_result(preview_id, {"status": "done", "text": SECRET})
    alice.post(f"/projects/{pid}/members", data={"username": "carol", "role": "viewer"})
    member_id = _member_id(db_session, pid)
    key = alice.post("/api/account/keys", json={"name": "laptop"}).json()
    ids = {
        "project_id": pid,
        "dataset_id": dataset["id"],
        "token": token,
        "kind": "original",
        "job_id": job.json()["id"],
        "action": "cancel",
        "version_id": version.id,
        "evaluation_id": evaluation.id,
        "conversation_id": conversation.id,
        "message_id": message.id,
        "request_id": request_id,
        "member_id": member_id,
        "key_id": key["id"],
        "model_id": registered.json()["registered_id"],
        "user_id": alice_id,
        "preview_id": preview_id,
    }
    yield {"alice": alice, "bob": bob, "ids": ids, "preview_id": preview_id}
    get_redis().delete(generation_request_key(request_id))


def _dataset_row(session: Any, dataset_id: int) -> Any:
    from app.models import Dataset

    return session.get(Dataset, dataset_id)


def _member_id(session: Any, project_id: int) -> int:
    from app.models import ProjectMember

    session.expire_all()
    return session.query(ProjectMember).filter_by(project_id=project_id).one().id


def _fill(path: str, ids: dict[str, Any]) -> str:
    if "previews/" in path:  # template previews have request ids of their own
        ids = {**ids, "request_id": ids["preview_id"]}

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in ids, f"{path}: teach tests/web/test_isolation.py an id for {{{name}}}"
        return str(ids[name])

    return re.sub(r"{(\w+)(?::\w+)?}", value, path)


def _call(client: Any, method: str, url: str) -> Any:
    if method == "GET" and STREAMS.search(url):
        with client.stream("GET", url) as response:
            return response
    if method in ("POST", "PUT", "PATCH"):
        return client.request(method, url, json={}, follow_redirects=False)
    return client.request(method, url, follow_redirects=False)


def _with_query(path: str, url: str) -> str:
    return url + ("?format=adapter" if path.endswith("/download") else "")


def test_every_route_keeps_users_apart(client, world) -> None:  # type: ignore[no-untyped-def]
    from app.main import create_app

    alice, bob, ids = world["alice"], world["bob"], world["ids"]
    missing = {k: (MISSING if k not in ("kind", "action") else v) for k, v in ids.items()}
    missing["token"] = missing["preview_id"] = missing["request_id"] = "f" * 32
    anonymous = client
    routes = [r for r in iter_routes(create_app()) if r.path not in PUBLIC]
    assert len(routes) > 80, "the route table was not read"
    checked = 0
    for route in routes:
        assert route.protected, f"{route.method} {route.path} is not behind the login"
        url = _with_query(route.path, _fill(route.path, ids))
        logged_out = _call(anonymous, route.method, url)
        if route.path.startswith(("/api/", "/v1/")):
            assert logged_out.status_code == 401, (route, logged_out.status_code)
        else:
            assert logged_out.status_code == 303, (route, logged_out.status_code)
            assert logged_out.headers["location"].startswith("/login?next=")
        if ADMIN_ONLY.search(route.path):
            assert _call(bob, route.method, url).status_code == 403, route
            continue
        if not re.search(r"{\w+}", route.path):
            continue  # lists and creation: checked below by what they show
        as_bob = _call(bob, route.method, url)
        as_nobody = _call(bob, route.method, _with_query(route.path, _fill(route.path, missing)))
        assert as_bob.status_code == as_nobody.status_code, (route, as_bob.status_code,
                                                              as_nobody.status_code)  # fmt: skip
        assert as_bob.status_code in (404, 422) or route.path.startswith("/previews/"), route
        if route.method == "GET" and not STREAMS.search(url):
            assert SECRET not in as_bob.text, route
        checked += 1
    assert checked > 50

    # The ids are real: Alice's own GETs find them.
    for route in routes:
        if (
            route.method == "GET"
            and re.search(r"{\w+}", route.path)
            and not ADMIN_ONLY.search(route.path)
        ):
            url = _with_query(route.path, _fill(route.path, ids))
            assert _call(alice, "GET", url).status_code != 404, route
    preview = alice.get(f"/api/previews/{world['preview_id']}")
    assert preview.json()["text"] == SECRET
    assert bob.get(f"/api/previews/{world['preview_id']}").status_code == 404

    # Lists, search-like pages and the OpenAI model list show only one's own.
    for url in ("/projects", "/api/projects", "/v1/models", "/models", "/account"):
        assert SECRET not in bob.get(url).text, url
        assert "alice-secret-project" not in bob.get(url).text, url
    assert "alice-secret-project:base" in alice.get("/v1/models").text
    # Unsafe routes with ids A alone may touch still work for A (the ids were hers).
    assert alice.delete(f"/api/account/keys/{ids['key_id']}").status_code == 204
    gone = alice.post(f"/projects/{ids['project_id']}/members/{ids['member_id']}/delete")
    assert gone.status_code in (200, 303)


def test_api_keys_work_with_the_openai_client_until_revoked(live_server, accounts) -> None:  # type: ignore[no-untyped-def]
    import openai

    make_user("alice")
    make_user("bob")
    alice = logged_in("alice")
    alice.post("/api/projects", json={"name": "Guide"})
    logged_in("bob").post("/api/projects", json={"name": SECRET})
    created = alice.post("/api/account/keys", json={"name": "notebook"})
    assert created.status_code == 201
    key = created.json()["key"]
    listed = alice.get("/api/account/keys").json()["data"]
    assert [k["name"] for k in listed] == ["notebook"] and "key" not in listed[0]
    assert key.startswith(listed[0]["prefix"])

    client = openai.OpenAI(base_url=f"{live_server}/v1", api_key=key, max_retries=0)
    names = {m.id for m in client.models.list()}
    assert "guide:base" in names and not any("alice-secret" in n for n in names), names
    # The key acts as its user on /api too, without a CSRF token (no cookie involved).
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    made = httpx.post(f"{live_server}/api/projects", json={"name": "By key"}, headers=headers)
    assert made.status_code == 201, made.text
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live_server}/v1", api_key="tl-wrong", max_retries=0).models.list()

    assert alice.delete(f"/api/account/keys/{listed[0]['id']}").status_code == 204
    with pytest.raises(openai.AuthenticationError) as refused:
        client.models.list()
    assert "not valid" in str(refused.value)
    assert alice.get("/api/account/keys").json()["data"][0]["revoked_at"] is not None
    # The page lists it as revoked, with no way to see the key again.
    page = alice.get("/account").text
    assert "notebook" in page and key not in page and "revoked" in page


def test_uploaded_names_never_reach_other_users(client, accounts) -> None:  # type: ignore[no-untyped-def]
    make_user("alice")
    make_user("bob")
    alice, bob = logged_in("alice"), logged_in("bob")
    pid = alice.post("/api/projects", json={"name": SECRET}).json()["id"]
    upload = {"file": ("rows.jsonl", io.BytesIO(b'{"instruction": "q", "output": "a"}\n'))}
    assert bob.post(f"/api/projects/{pid}/datasets", files=upload).status_code == 404
    assert alice.get(f"/api/projects/{pid}/datasets").json()["count"] == 0
