"""Accounts in a real browser: first-run setup, a project made through htmx forms (which must
carry the CSRF token static/js/csrf.js adds), sharing, an API key shown once and revoked,
logout, and the viewer's side of a shared project."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.helpers.accounts import PASSWORD, make_user


def test_a_team_sets_up_shares_and_uses_keys(page, live_server, accounts) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server}/projects")
    expect(page).to_have_url(f"{live_server}/setup")
    page.fill("#f-username", "ada")
    page.fill("#f-password", PASSWORD)
    page.fill("#f-password_again", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{live_server}/projects")
    expect(page.locator(".user-menu")).to_contain_text("ada")

    # htmx form posts carry the session's CSRF token.
    page.fill("#f-name", "Team guide")
    page.click("#project-form button[type=submit]")
    expect(page.locator("#project-title")).to_have_text("Team guide")

    make_user("bob")
    page.click("#sharing summary")
    page.fill("#project-members #f-username", "bob")
    page.select_option("#project-members #f-role", "viewer")
    page.click("#project-members button[type=submit]:has-text('Share')")
    expect(page.locator("#project-members table")).to_contain_text("bob")
    expect(page.locator("#project-members table")).to_contain_text("viewer")

    page.goto(f"{live_server}/account")
    page.fill("#f-name", "notebook")
    page.click("#api-keys button[type=submit]:has-text('Create a key')")
    key = page.locator("#new-key").inner_text()
    assert key.startswith("tl-")
    page.reload()  # the form posted through htmx: a reload is a GET, and creates nothing
    expect(page.locator("#new-key")).to_have_count(0)  # shown once
    expect(page.locator("#api-keys tbody tr")).to_have_count(1)
    expect(page.locator("#api-keys")).not_to_contain_text(key)
    page.click("#api-keys button:has-text('Revoke')")
    expect(page.locator("#api-keys")).to_contain_text("revoked")

    page.click(".user-menu button:has-text('Log out')")
    expect(page).to_have_url(f"{live_server}/login")
    page.fill("#f-username", "bob")
    page.fill("#f-password", "wrong wrong wrong")
    page.click("button[type=submit]")
    expect(page.locator(".form-error")).to_contain_text("Wrong user name or password")
    page.fill("#f-password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator(".project-list")).to_contain_text("Team guide")
    page.click("text=Team guide")
    expect(page.locator("#project-title")).to_have_text("Team guide")
    expect(page.locator("#sharing")).to_have_count(0)  # only the owner shares
