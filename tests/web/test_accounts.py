"""Accounts: first-run setup, login/logout with server-side sessions, the login rate limit,
CSRF, password change, admin-only actions, sharing, and the CLI's refusal to listen openly.

Real database (SQLite and PostgreSQL), real Redis (the rate-limit counters), real argon2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.accounts import PASSWORD, csrf_of, log_in, logged_in, make_user


def test_setup_makes_the_first_admin_who_keeps_the_local_projects(client, accounts) -> None:  # type: ignore[no-untyped-def]
    from app.db import session_scope
    from app.models import Project
    from app.services.users import get_local_user

    with session_scope() as session:  # made before accounts were switched on
        owner = get_local_user(session)
        session.add(Project(name="Earlier work", slug="earlier-work", owner_id=owner.id,
                            base_model="smollm2-135m-instruct"))  # fmt: skip

    first = client.get("/projects", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=%2Fprojects"
    assert client.get("/login", follow_redirects=False).headers["location"] == "/setup"
    assert client.get("/api/projects").status_code == 401

    form = {"username": "ada", "password": PASSWORD, "password_again": PASSWORD + "x"}
    differ = client.post("/setup", data=form)
    assert differ.status_code == 422 and "The two passwords differ" in differ.text
    short = client.post("/setup", data={**form, "password": "short", "password_again": "short"})
    assert short.status_code == 422 and "at least 10 characters" in short.text
    done = client.post("/setup", data={**form, "password_again": PASSWORD}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/projects"
    cookie = done.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "tunelab_session=" in cookie
    page = client.get("/projects")
    assert "Earlier work" in page.text and "ada" in page.text
    # Setup happens once: afterwards it leads to the login page.
    client.cookies.clear()
    assert client.get("/setup", follow_redirects=False).headers["location"] == "/login"


def test_login_logout_and_the_session_ends_for_real(client, accounts) -> None:  # type: ignore[no-untyped-def]
    make_user("ada", admin=True)
    wrong = client.post("/login", data={"username": "ada", "password": "nope nope nope"})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    unknown = client.post("/login", data={"username": "nobody", "password": PASSWORD})
    assert unknown.status_code == 401 and "Wrong user name or password" in unknown.text
    back = client.post(
        "/login",
        data={"username": "ada", "password": PASSWORD, "next": "/models"},
        follow_redirects=False,
    )
    assert back.headers["location"] == "/models"
    # Never off-site after login.
    client.cookies.clear()
    evil = client.post(
        "/login",
        data={"username": "ada", "password": PASSWORD, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert evil.headers["location"] == "/projects"
    stolen = client.cookies.get("tunelab_session")
    token = csrf_of(client.get("/projects").text)
    assert client.post("/logout", follow_redirects=False).status_code == 303
    client.cookies.clear()
    client.cookies.set("tunelab_session", stolen)  # the old cookie, replayed
    assert client.get("/api/projects").status_code == 401
    assert client.post("/api/projects", json={"name": "x"},
                       headers={"X-CSRF-Token": token}).status_code == 401  # fmt: skip


def test_login_rate_limit_per_account_and_per_address(client, accounts) -> None:  # type: ignore[no-untyped-def]
    from app.services import login_limits

    make_user("ada", admin=True)
    make_user("bob")
    for _ in range(login_limits.PER_ACCOUNT):
        assert client.post("/login", data={"username": "ada", "password": "guess guess guess"}
                           ).status_code == 401  # fmt: skip
    blocked = client.post("/login", data={"username": "ada", "password": PASSWORD})
    assert blocked.status_code == 429 and "Too many failed logins" in blocked.text
    assert "tunelab_session" not in blocked.headers.get("set-cookie", "")
    # Another account from the same address still gets in, until the address's budget is gone.
    ok = client.post("/login", data={"username": "bob", "password": PASSWORD},
                     follow_redirects=False)  # fmt: skip
    assert ok.status_code == 303
    client.cookies.clear()
    for i in range(login_limits.PER_ADDRESS - login_limits.PER_ACCOUNT):
        client.post("/login", data={"username": f"guess{i}", "password": "guess guess guess"})
    address_blocked = client.post("/login", data={"username": "bob", "password": PASSWORD})
    assert address_blocked.status_code == 429


def test_csrf_token_required_for_cookie_sessions(client, accounts) -> None:  # type: ignore[no-untyped-def]
    make_user("ada", admin=True)
    log_in(client, "ada")
    token = client.headers.pop("X-CSRF-Token")
    refused = client.post("/projects", data={"name": "No token"})
    assert refused.status_code == 403 and "security token" in refused.text
    assert client.post("/api/projects", json={"name": "No token"}).status_code == 403
    wrong = client.post("/api/projects", json={"name": "x"}, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    assert client.get("/api/projects").json()["count"] == 0  # nothing was created
    by_field = client.post("/projects", data={"name": "Form", "csrf_token": token},
                           follow_redirects=False)  # fmt: skip
    assert by_field.status_code == 303
    by_header = client.post("/api/projects", json={"name": "Header"},
                            headers={"X-CSRF-Token": token})  # fmt: skip
    assert by_header.status_code == 201
    assert client.get("/api/projects").json()["count"] == 2


def test_cross_site_posts_are_refused_even_without_accounts(client) -> None:  # type: ignore[no-untyped-def]
    evil = {"Origin": "https://evil.example"}
    assert client.post("/api/projects", json={"name": "x"}, headers=evil).status_code == 403
    fetch = {"Sec-Fetch-Site": "cross-site"}
    assert client.post("/projects", data={"name": "x"}, headers=fetch).status_code == 403
    same = {"Origin": "http://testserver"}
    assert client.post("/api/projects", json={"name": "ok"}, headers=same).status_code == 201


def test_password_change_ends_the_other_sessions(client, accounts) -> None:  # type: ignore[no-untyped-def]
    make_user("ada", admin=True)
    other = logged_in("ada")
    log_in(client, "ada")
    wrong = client.post("/account/password",
                        data={"current_password": "not it at all", "new_password": "x" * 12})  # fmt: skip
    assert wrong.status_code == 422 and "current password is not right" in wrong.text
    changed = client.post("/account/password",
                          data={"current_password": PASSWORD, "new_password": "a new long secret"})  # fmt: skip
    assert changed.status_code == 200 and "Password changed" in changed.text
    assert client.get("/api/projects").status_code == 200  # this session stays
    assert other.get("/api/projects").status_code == 401  # the other one ended
    other.cookies.clear()
    log_in(other, "ada", "a new long secret")


def test_admin_only_actions_and_user_management(client, accounts, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    make_user("ada", admin=True)
    make_user("bob")
    bob = logged_in("bob")
    assert bob.get("/admin/users").status_code == 403
    assert bob.post("/api/models", json={"path": str(tiny_model_dir)}).status_code == 403
    log_in(client, "ada")
    assert client.post("/api/models", json={"path": str(tiny_model_dir)}).status_code == 201
    # Registered models are the installation's: bob can pick it for his project.
    models = {m["id"] for m in bob.get("/api/models").json()["data"]}
    assert any("tiny" in m for m in models), models
    page = client.post("/admin/users", data={"username": "cy", "password": PASSWORD})
    assert page.status_code == 200 and "User cy created" in page.text
    taken = client.post("/admin/users", data={"username": "cy", "password": PASSWORD})
    assert taken.status_code == 422 and "taken" in taken.text
    from app.db import session_scope
    from app.models import User

    with session_scope() as session:
        bob_id = session.query(User).filter_by(username="bob").one().id
    client.post(f"/admin/users/{bob_id}/active", data={"active": "false"})
    assert bob.get("/api/projects").status_code == 401  # disabled: the session ended
    assert client.post("/login", data={"username": "bob", "password": PASSWORD}).status_code == 401


def test_sharing_viewer_reads_editor_writes_owner_deletes(client, accounts) -> None:  # type: ignore[no-untyped-def]
    make_user("ada", admin=True)
    make_user("vic")
    make_user("eve")
    log_in(client, "ada")
    project = client.post("/api/projects", json={"name": "Shared guide"}).json()
    pid = project["id"]
    vic, eve = logged_in("vic"), logged_in("eve")
    assert vic.get(f"/projects/{pid}").status_code == 404
    unknown = client.post(f"/projects/{pid}/members", data={"username": "zed", "role": "viewer"})
    assert unknown.status_code == 422 and "no active user named" in unknown.text
    client.post(f"/projects/{pid}/members", data={"username": "vic", "role": "viewer"})
    client.post(f"/projects/{pid}/members", data={"username": "eve", "role": "editor"})
    page = client.get(f"/projects/{pid}")
    assert "vic" in page.text and "eve" in page.text and 'id="sharing"' in page.text

    assert vic.get(f"/projects/{pid}").status_code == 200
    assert "Shared guide" in vic.get("/projects").text
    assert 'id="sharing"' not in vic.get(f"/projects/{pid}").text  # only the owner shares
    rows = b'{"instruction": "q", "output": "a"}\n'
    upload = {"file": ("rows.jsonl", rows)}
    assert vic.post(f"/api/projects/{pid}/datasets", files=upload).status_code == 404
    assert vic.patch(f"/api/projects/{pid}", json={"name": "Mine"}).status_code == 404
    assert eve.post(f"/api/projects/{pid}/datasets", files=upload).status_code == 201
    assert eve.patch(f"/api/projects/{pid}", json={"name": "Renamed"}).status_code == 200
    assert eve.delete(f"/api/projects/{pid}").status_code == 403
    assert vic.delete(f"/api/projects/{pid}").status_code == 404
    assert client.get(f"/api/projects/{pid}").json()["name"] == "Renamed"
    assert client.delete(f"/api/projects/{pid}").status_code == 204


def test_users_cli_and_the_web_refuses_open_addresses_without_accounts(
    platform_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from app.cli import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    tunelab = str(Path(sys.executable).parent / "tunelab")
    env = {**os.environ, **platform_env}
    env.pop("TUNELAB_ACCOUNTS", None)
    refused = subprocess.run([tunelab, "web", "--host", "0.0.0.0"], env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2
    assert (
        "refusing to listen on 0.0.0.0" in refused.stderr and "TUNELAB_ACCOUNTS=1" in refused.stderr
    )
    up = subprocess.run([tunelab, "up", "--host", "0.0.0.0"], env=env,
                        capture_output=True, text=True, timeout=60)  # fmt: skip
    assert up.returncode == 2 and "refusing" in up.stderr

    created = subprocess.run([tunelab, "users", "create", "ops", "--admin", "--password-stdin"],
                             input=PASSWORD + "\n", env=env, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert created.returncode == 0, created.stderr
    short = subprocess.run([tunelab, "users", "create", "tiny", "--password-stdin"],
                           input="short\n", env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    listed = subprocess.run([tunelab, "users", "list"], env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert "ops\tadmin\tactive" in listed.stdout
    reset = subprocess.run([tunelab, "users", "set-password", "ops", "--password-stdin"],
                           input="another long secret\n", env=env, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert reset.returncode == 0, reset.stderr
    from app.db import session_scope
    from app.services.users import check_password

    with session_scope() as session:
        assert check_password(session, "ops", "another long secret") is not None
        assert check_password(session, "ops", PASSWORD) is None


def test_admins_see_every_users_jobs_and_the_workers(client, accounts) -> None:  # type: ignore[no-untyped-def]
    import json

    make_user("ada", admin=True)
    make_user("bob")
    bob = logged_in("bob")
    pid = bob.post("/api/projects", json={"name": "Bob's guide"}).json()["id"]
    rows = "\n".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(4))
    dataset = bob.post(f"/api/projects/{pid}/datasets", files={"file": ("r.jsonl", rows.encode())})
    job = bob.post(f"/api/projects/{pid}/jobs", json={"dataset_id": dataset.json()["id"]})
    assert job.status_code == 201, job.text
    assert bob.get("/admin/jobs").status_code == 403
    log_in(client, "ada")
    page = client.get("/admin/jobs")
    assert page.status_code == 200
    assert "Bob&#39;s guide" in page.text and "<td>bob</td>" in page.text and "Queued" in page.text
