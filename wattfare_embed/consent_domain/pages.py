"""The consent domain's HTML: login, the consent screen, the dashboard and error pages.

Every value is escaped here; pages carry no script, and the headers forbid framing.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse

__all__ = ["DashboardRow", "consent_page", "dashboard_page", "error_page", "login_page", "page_response"]

_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f4f5f8; color: #1d2330; }
* { box-sizing: border-box; }
main { max-width: min(34rem, calc(100% - 2rem)); margin: 3rem auto; background: #fff; padding: 2rem 2.25rem;
       border-radius: 14px; box-shadow: 0 2px 14px rgba(0,0,0,.08); }
@media (max-width: 560px) { main { margin: 1rem auto; padding: 1.5rem 1.25rem; } }
main.wide { max-width: 52rem; }
h1 { font-size: 1.3rem; margin: 0 0 1rem; }
.brand { color: #5a6274; font-size: .85rem; letter-spacing: .04em; text-transform: uppercase; margin-bottom: .5rem; }
label { display: block; font-weight: 600; margin: 1rem 0 .3rem; }
input[type=email], input[type=password], input[type=text] { font: inherit; width: 100%; box-sizing: border-box;
       padding: .55rem .7rem; border: 1px solid #c5cbd8; border-radius: 8px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1rem; margin: 1rem 0; }
dt { color: #5a6274; } dd { margin: 0; }
.actions { display: flex; gap: .6rem; margin-top: 1.4rem; }
button { font: inherit; font-weight: 600; padding: .55rem 1.2rem; border-radius: 8px; border: 1px solid #1d2330;
         background: #1d2330; color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: #1d2330; }
button.danger { background: #fff; color: #b42318; border-color: #b42318; }
.error { background: #fde8e7; color: #8a1c12; padding: .6rem .8rem; border-radius: 8px; }
.notice { background: #e6f4ea; color: #14532d; padding: .6rem .8rem; border-radius: 8px; }
table { width: 100%; border-collapse: collapse; margin-top: 1rem; }
th, td { text-align: left; padding: .55rem .4rem; border-bottom: 1px solid #e3e7ef; vertical-align: middle; }
td form { display: inline-flex; gap: .4rem; align-items: center; margin: 0; }
td input[type=text] { width: 6.5rem; }
.muted { color: #5a6274; font-size: .9rem; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _layout(title: str, body: str, domain_name: str, *, wide: bool = False) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{_e(title)}</title><style>{_STYLE}</style></head>'
        f'<body><main{" class=wide" if wide else ""}><div class="brand">{_e(domain_name)}</div>{body}</main>'
        "</body></html>"
    )


def page_response(page: str, *, status: int = 200, form_targets: Iterable[str] = ()) -> HTMLResponse:
    """A page with headers that forbid framing (clickjacking) and caching.

    ``form_targets``: origins a form on this page may end up at after a redirect
    (the app's redirect URI), which CSP ``form-action`` checks too. No
    Cross-Origin-Opener-Policy: the popup must keep its opener to report back.
    """
    form_action = " ".join(["'self'", *sorted({_origin(url) for url in form_targets})])
    return HTMLResponse(
        page,
        status_code=status,
        headers={
            "cache-control": "no-store",
            "x-frame-options": "DENY",
            "referrer-policy": "no-referrer",
            "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'",
        },
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(f'<input type="hidden" name="{_e(name)}" value="{_e(value)}">' for name, value in fields.items())


def error_page(title: str, message: str, domain_name: str) -> str:
    return _layout(title, f"<h1>{_e(title)}</h1><p>{_e(message)}</p>", domain_name)


def login_page(
    *,
    next_path: str,
    csrf: str,
    domain_name: str,
    error: str | None = None,
    email: str = "",
    app_name: str | None = None,
) -> str:
    problem = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    asking = (
        f'<p class="muted">{_e(app_name)} asks to use your AI budget. Sign in to see what it asks for '
        "and choose a monthly cap.</p>"
        if app_name
        else ""
    )
    body = (
        f"<h1>Sign in to {_e(domain_name)}</h1>{asking}{problem}"
        '<form method="post" action="/login">'
        + _hidden({"csrf": csrf, "next": next_path})
        + '<label for="email">Email</label>'
        f'<input id="email" name="email" type="email" autocomplete="username" required value="{_e(email)}">'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" required>'
        '<div class="actions"><button type="submit">Sign in</button></div></form>'
    )
    return _layout("Sign in", body, domain_name)


def consent_page(
    *,
    app_name: str,
    cap_usd: str,
    asked_usd: str,
    max_usd: str,
    payer: str,
    fields: Mapping[str, str],
    domain_name: str,
    error: str | None = None,
) -> str:
    problem = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    body = (
        f"<h1>Allow {_e(app_name)} to spend from your AI budget?</h1>{problem}"
        f"<p><strong>{_e(app_name)}</strong> asks to call AI models for you, charged to your budget here, "
        "up to a monthly cap. You can lower, raise or revoke it at any time on your dashboard.</p>"
        "<dl>"
        f"<dt>App</dt><dd>{_e(app_name)}</dd>"
        f"<dt>Who pays</dt><dd>You ({_e(payer)}), from your {_e(domain_name)} budget</dd>"
        "<dt>Period</dt><dd>Each calendar month (UTC); the cap resets on the 1st</dd>"
        "</dl>"
        '<form method="post" action="/authorize">'
        + _hidden({**fields, "asked_usd": asked_usd})
        + '<label for="monthly_usd">Monthly cap (USD)</label>'
        f'<input id="monthly_usd" name="monthly_usd" type="text" inputmode="decimal" value="{_e(cap_usd)}" required>'
        f'<p class="muted">{_e(app_name)} asked for ${_e(asked_usd)} a month; at most ${_e(max_usd)}. '
        "The app can never spend more than this in a month: the key it gets is limited to it.</p>"
        '<div class="actions"><button type="submit" name="decision" value="approve">Approve</button>'
        '<button type="submit" name="decision" value="deny" class="secondary" formnovalidate>Deny</button></div>'
        "</form>"
    )
    return _layout(f"Allow {app_name}?", body, domain_name)


def grant_consent_page(
    *,
    app_name: str,
    requests: int,
    cap_usd: str,
    payer: str,
    expires_in_hours: int,
    fields: Mapping[str, str],
    domain_name: str,
) -> str:
    plural = "" if requests == 1 else "s"
    body = (
        f"<h1>Let {_e(app_name)} make {requests} AI request{plural} for you?</h1>"
        f"<p><strong>{_e(app_name)}</strong> has no account for you: it asks for a one-time grant, over when "
        "its requests are used, its dollar cap is reached, or it expires. You can revoke it on your dashboard.</p>"
        "<dl>"
        f'<dt>Requests</dt><dd id="grant-requests">{requests}</dd>'
        f'<dt>Dollar cap</dt><dd id="grant-cap">${_e(cap_usd)} in total</dd>'
        f'<dt>Who pays</dt><dd id="grant-payer">You ({_e(payer)}), from your {_e(domain_name)} budget</dd>'
        f'<dt>Expires</dt><dd id="grant-expiry">in {expires_in_hours} hours</dd>'
        "</dl>"
        '<form method="post" action="/authorize">'
        + _hidden(fields)
        + f'<p class="muted">The key {_e(app_name)} gets is limited to ${_e(cap_usd)}: it can never spend more.</p>'
        '<div class="actions"><button type="submit" name="decision" value="approve">Approve</button>'
        '<button type="submit" name="decision" value="deny" class="secondary" formnovalidate>Deny</button></div>'
        "</form>"
    )
    return _layout(f"Approve {requests} request{plural} for {app_name}?", body, domain_name)


@dataclass(frozen=True, slots=True)
class DashboardRow:
    grant_id: str
    app_name: str
    cap_usd: str
    spent_usd: str | None  # None when the upstream could not say
    limit_usd: str | None = None  # its share of the budget now, when the user has one
    grant_requests: int | None = None  # a one-time grant: shown as such, revocable, not re-capped


@dataclass(frozen=True, slots=True)
class BudgetSummary:
    budget_usd: str | None  # None: no budget across apps, each app's cap alone
    used_usd: str
    left_usd: str | None
    period: str  # YYYY-MM, UTC


def _budget_card(summary: BudgetSummary | None) -> str:
    if summary is None:
        return '<p class="muted">This month\'s spend could not be read right now.</p>'
    month = _e(summary.period)
    if summary.budget_usd is None:
        return (
            f'<p class="budget" data-used="{_e(summary.used_usd)}">${_e(summary.used_usd)} used in {month} '
            "· each app within its own cap · revoke anytime</p>"
        )
    return (
        f'<p class="budget" data-budget="{_e(summary.budget_usd)}" data-used="{_e(summary.used_usd)}" '
        f'data-left="{_e(summary.left_usd or "0")}" data-period="{month}">'
        f"<strong>${_e(summary.left_usd or '0')} left</strong> · ${_e(summary.used_usd)} used · "
        f"budget ${_e(summary.budget_usd)} for {month} (UTC) · connected apps below · revoke anytime</p>"
    )


def dashboard_page(
    *,
    payer: str,
    rows: list[DashboardRow],
    csrf: str,
    domain_name: str,
    notice: str | None = None,
    summary: BudgetSummary | None = None,
) -> str:
    banner = f'<p class="notice" role="status">{_e(notice)}</p>' if notice else ""
    if not rows:
        table = '<p class="muted">No app can spend from your budget.</p>'
    else:
        lines = []
        for row in rows:
            spent = f"${_e(row.spent_usd)}" if row.spent_usd is not None else "unavailable"
            limit = f"${_e(row.limit_usd)}" if row.limit_usd is not None else "its cap"
            if row.grant_requests is not None:
                lines.append(
                    f'<tr data-grant="{_e(row.grant_id)}"><td>{_e(row.app_name)}</td>'
                    f"<td>One-time: {row.grant_requests} requests, ${_e(row.cap_usd)} in all</td><td>{spent}</td>"
                    f"<td>{limit}</td><td>"
                    f'<form method="post" action="/dashboard/grants/{_e(row.grant_id)}/revoke">'
                    + _hidden({"csrf": csrf})
                    + f'<button type="submit" class="danger" aria-label="Revoke {_e(row.app_name)}">Revoke</button>'
                    "</form></td></tr>"
                )
                continue
            lines.append(
                f'<tr data-grant="{_e(row.grant_id)}"><td>{_e(row.app_name)}</td>'
                f"<td>${_e(row.cap_usd)}</td><td>{spent}</td><td>{limit}</td><td>"
                f'<form method="post" action="/dashboard/grants/{_e(row.grant_id)}/cap">'
                + _hidden({"csrf": csrf})
                + f'<input type="text" name="monthly_usd" inputmode="decimal" value="{_e(row.cap_usd)}" '
                f'aria-label="New monthly cap for {_e(row.app_name)}">'
                '<button type="submit" class="secondary">Raise / lower</button></form> '
                f'<form method="post" action="/dashboard/grants/{_e(row.grant_id)}/revoke">'
                + _hidden({"csrf": csrf})
                + f'<button type="submit" class="danger" aria-label="Revoke {_e(row.app_name)}">Revoke</button>'
                "</form></td></tr>"
            )
        table = (
            "<table><thead><tr><th>App</th><th>Monthly cap</th><th>Spent this month</th>"
            "<th>Can spend this month</th><th></th></tr></thead>"
            f"<tbody>{''.join(lines)}</tbody></table>"
        )
    body = (
        f"<h1>Your AI budget</h1>{banner}{_budget_card(summary)}"
        "<h2>Apps that can spend from your budget</h2>"
        f'<p class="muted">Signed in as {_e(payer)}. Revoking stops an app at once.</p>{table}'
        '<form method="post" action="/logout" style="margin-top:1.5rem">'
        + _hidden({"csrf": csrf})
        + '<button type="submit" class="secondary">Sign out</button></form>'
    )
    return _layout("Your connected apps", body, domain_name, wide=True)
