"""Every form on the domain refuses a post without its CSRF token; the login holds its ground."""

from __future__ import annotations

from .conftest import PASSWORD, Stack, form


async def test_form_posts_without_a_csrf_token_are_refused_and_change_nothing(stack: Stack) -> None:
    record = await stack.connect("ada")
    browser = stack.browser()
    dashboard = await stack.dashboard(browser)  # signed in, with a CSRF cookie
    grant = str(record.grant_id)
    consent = await stack.consent_page(browser, await stack.consent_url(browser, "ada-again"))
    consent_fields = form(consent.text, "/authorize").fields
    posts = {
        f"/dashboard/grants/{grant}/revoke": {},
        f"/dashboard/grants/{grant}/cap": {"monthly_usd": "500"},
        "/authorize": {**consent_fields, "decision": "approve"},
        "/logout": {},
        "/login": {"email": stack.email, "password": PASSWORD},
    }
    for path, fields in posts.items():
        for csrf in (None, "0" * 64):  # left out, then forged
            sent = {name: value for name, value in fields.items() if name != "csrf"}
            if csrf is not None:
                sent["csrf"] = csrf
            response = await browser.post_form(stack.domain_url + path, sent)
            assert response.status_code == 403 and "location" not in response.headers, (path, csrf)
    assert (await stack.domain.store.get_grant(grant)) is not None
    assert (await stack.connection("ada")).status.value == "active"
    assert stack.funding_key(record).limit is not None and stack.funding_key(record).limit == 10
    assert (await stack.dashboard(browser)).status_code == 200, "still signed in"
    assert dashboard.status_code == 200


async def test_a_token_from_one_browser_does_not_work_in_another(stack: Stack) -> None:
    record = await stack.connect("bea")
    mine, theirs = stack.browser(), stack.browser()
    token = form((await stack.dashboard(mine)).text, "/revoke").fields["csrf"]
    await stack.dashboard(theirs)  # the attacker's own session on the domain
    response = await theirs.post_form(stack.domain_url + f"/dashboard/grants/{record.grant_id}/revoke", {"csrf": token})
    assert response.status_code == 403


async def test_a_wrong_password_does_not_sign_in_and_another_users_grant_is_not_found(stack: Stack) -> None:
    record = await stack.connect("cy")
    browser = stack.browser()
    page = await browser.follow(await browser.get(stack.domain_url + "/dashboard"))
    fields = form(page.text, "/login").fields
    wrong = await browser.post_form(stack.domain_url + "/login", {**fields, "email": stack.email, "password": "nope"})
    assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
    nobody = await browser.post_form(stack.domain_url + "/login", {**fields, "email": "x@y.z", "password": PASSWORD})
    assert nobody.status_code == 401
    assert (await browser.get(stack.domain_url + "/dashboard")).is_redirect, "still signed out"

    await stack.domain.add_user("mallory@example.com", "mallory-password")
    signed_in = await browser.post_form(
        stack.domain_url + "/login", {**fields, "email": "mallory@example.com", "password": "mallory-password"}
    )
    assert signed_in.status_code == 303
    csrf = form((await stack.dashboard(browser)).text, "/logout").fields["csrf"]
    response = await browser.post_form(stack.domain_url + f"/dashboard/grants/{record.grant_id}/revoke", {"csrf": csrf})
    assert response.status_code == 404
    assert (await stack.connection("cy")).status.value == "active"


async def test_login_never_sends_the_user_off_site(stack: Stack) -> None:
    browser = stack.browser()
    page = await browser.get(stack.domain_url + "/login?next=//evil.example/steal")
    fields = form(page.text, "/login").fields
    assert fields["next"] == "/dashboard"
    response = await browser.post_form(
        stack.domain_url + "/login",
        {**fields, "email": stack.email, "password": PASSWORD, "next": "https://evil.example/"},
    )
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
