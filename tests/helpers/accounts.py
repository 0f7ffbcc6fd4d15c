"""Accounts in tests: users made through the service, clients logged in through /login.

A logged-in client sends its session's CSRF token on every request (as static/js/csrf.js does
in browsers), so tests exercise the protection instead of switching it off."""

from __future__ import annotations

import re
from typing import Any

PASSWORD = "correct horse battery staple"


def make_user(name: str, *, admin: bool = False, password: str = PASSWORD) -> int:
    from app.db import session_scope
    from app.services import users

    with session_scope() as session:
        return users.create_user(session, name, password, is_admin=admin).id


def csrf_of(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def log_in(client: Any, name: str, password: str = PASSWORD) -> Any:
    """Log `client` (a TestClient) in as `name`; it then sends the CSRF header by itself."""
    response = client.post(
        "/login", data={"username": name, "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    client.headers["X-CSRF-Token"] = csrf_of(client.get("/account").text)
    return client


def logged_in(name: str, password: str = PASSWORD) -> Any:
    from fastapi.testclient import TestClient

    from app.main import create_app

    client = TestClient(create_app())
    client.__enter__()
    return log_in(client, name, password)
