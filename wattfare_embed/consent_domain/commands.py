"""``wattfare consent-domain serve | migrate | register-app | add-user | …``: run and administer a consent domain.

Every option also reads an environment variable, so a deployment can keep
secrets out of the command line (``OPENROUTER_MANAGEMENT_KEY`` above all).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

__all__ = ["add_consent_domain_commands"]


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def _auto_migrate() -> bool:
    """``WATTFARE_DOMAIN_AUTO_MIGRATE=false``: a deployment that migrates in a release step."""
    return (_env("WATTFARE_DOMAIN_AUTO_MIGRATE", "true") or "").strip().lower() not in ("0", "false", "no", "off")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import ConsentDomain
    from .config import DomainSettings

    settings = DomainSettings(
        database_url=args.database_url,
        public_url=(args.public_url or f"http://{args.host}:{args.port}").rstrip("/"),
        upstream_url=args.upstream_url,
        management_key=args.management_key,
        session_secret=_env("WATTFARE_DOMAIN_SESSION_SECRET"),
        name=args.name,
        auto_migrate=_auto_migrate(),
    )
    if not settings.management_key:
        print(
            "warning: no management key (--management-key or OPENROUTER_MANAGEMENT_KEY): "
            "approving a consent will fail until one is set",
            file=sys.stderr,
        )
    from sqlalchemy.engine import make_url

    shown = make_url(args.database_url).render_as_string(hide_password=True)
    print(f"consent domain {settings.issuer} (listening on {args.host}:{args.port}, data in {shown})")
    notifier = None
    if args.smtp_host:
        from .._redaction import protect_logs
        from .notifier import SmtpNotifier

        protect_logs(_env("WATTFARE_DOMAIN_SMTP_PASSWORD"))
        notifier = SmtpNotifier(
            args.smtp_host,
            args.smtp_port,
            sender=args.smtp_from or f"budgets@{args.smtp_host}",
            username=_env("WATTFARE_DOMAIN_SMTP_USER"),
            password=_env("WATTFARE_DOMAIN_SMTP_PASSWORD"),
            starttls=args.smtp_starttls,
        )
    domain = ConsentDomain(settings, notifier=notifier)
    uvicorn.run(domain, host=args.host, port=args.port, log_level="info", proxy_headers=True)
    return 0


async def _migrate(args: argparse.Namespace) -> int:
    from .._migrate_command import run_migrate
    from .revisions import migrations

    return await run_migrate(migrations, args)


async def _register_app(args: argparse.Namespace) -> int:
    from .registration import register_app
    from .storage import DomainStore

    store = DomainStore(args.database_url)
    await store.open()
    try:
        keys = await register_app(
            store,
            name=args.name,
            redirect_uris=args.redirect_uri,
            webhook_url=args.webhook_url,
            live=not args.test,
            allow_http=args.allow_http,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    # On stderr, so `register-app … > app.env` leaves a file the shell can source.
    print(
        f"registered {args.name!r} as app {keys.app_id}; configure the app with (the secret is not kept here):",
        file=sys.stderr,
    )
    print(f"WATTFARE_SECRET_KEY={keys.secret_key}")
    print(f"WATTFARE_PUBLISHABLE_KEY={keys.publishable_key}")
    return 0


async def _add_user(args: argparse.Namespace) -> int:
    from .login import add_user, normalize_email
    from .storage import DomainStore

    password = args.password or getpass.getpass(f"password for {args.email}: ")
    store = DomainStore(args.database_url)
    await store.open()
    try:
        user_id = await add_user(store, args.email, password)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    print(f"added {normalize_email(args.email)} as {user_id}")
    return 0


async def _set_password(args: argparse.Namespace) -> int:
    from .login import set_password
    from .session_store import SessionStore
    from .storage import DomainStore

    password = args.password or getpass.getpass(f"new password for {args.email}: ")
    store = DomainStore(args.database_url)
    await store.open()
    try:
        ended = await set_password(store, SessionStore(store), args.email, password)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    print(f"password changed for {args.email}; {ended} session(s) ended")
    return 0


async def _end_sessions(args: argparse.Namespace) -> int:
    from .login import end_sessions
    from .session_store import SessionStore
    from .storage import DomainStore

    if (args.email is None) == (not args.all):
        print("error: name one user with --email, or every user with --all", file=sys.stderr)
        return 2
    store = DomainStore(args.database_url)
    await store.open()
    try:
        ended = await end_sessions(store, SessionStore(store), args.email)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    print(f"{ended} session(s) ended; those browsers must sign in again")
    return 0


def add_consent_domain_commands(commands: Any) -> None:
    """Add the ``consent-domain`` command group to the ``wattfare`` parser's subcommands."""
    from .._migrate_command import add_migrate_options
    from .config import DEFAULT_DOMAIN_DATABASE_URL

    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database-url",
        default=_env("WATTFARE_DOMAIN_DATABASE_URL", DEFAULT_DOMAIN_DATABASE_URL),
        help="SQLAlchemy URL, SQLite or PostgreSQL (default: $WATTFARE_DOMAIN_DATABASE_URL or a local SQLite file)",
    )
    group = commands.add_parser("consent-domain", help="run and administer a self-hosted consent domain")
    domain = group.add_subparsers(dest="domain_command", required=True)

    serve = domain.add_parser("serve", parents=[database], help="serve the consent domain")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8002)
    serve.add_argument(
        "--upstream-url",
        default=_env("WATTFARE_DOMAIN_UPSTREAM_URL", "https://openrouter.ai/api/v1"),
        help="the OpenRouter API base (default: $WATTFARE_DOMAIN_UPSTREAM_URL or https://openrouter.ai/api/v1)",
    )
    serve.add_argument(
        "--management-key",
        default=_env("OPENROUTER_MANAGEMENT_KEY"),
        help="the OpenRouter management key that mints one capped key per grant ($OPENROUTER_MANAGEMENT_KEY)",
    )
    serve.add_argument(
        "--public-url",
        default=_env("WATTFARE_DOMAIN_PUBLIC_URL"),
        help="the URL apps configure HostedConsent with, the issuer (default: http://HOST:PORT)",
    )
    serve.add_argument("--name", default="Wattfare", help="how the domain names itself on its pages")
    serve.add_argument(
        "--smtp-host", default=_env("WATTFARE_DOMAIN_SMTP_HOST"), help="e-mail budget alerts through this SMTP server"
    )
    serve.add_argument("--smtp-port", type=int, default=int(_env("WATTFARE_DOMAIN_SMTP_PORT", "25") or "25"))
    serve.add_argument("--smtp-from", default=_env("WATTFARE_DOMAIN_SMTP_FROM"), help="the alerts' From address")
    serve.add_argument(
        "--smtp-starttls", action="store_true", help="STARTTLS (login from $WATTFARE_DOMAIN_SMTP_USER / _PASSWORD)"
    )
    serve.set_defaults(run=_serve)

    migrate = domain.add_parser(
        "migrate", parents=[database], help="upgrade the wcd_ tables (or check them, or print the SQL)"
    )
    add_migrate_options(migrate)
    migrate.set_defaults(run_async=_migrate)

    register = domain.add_parser("register-app", parents=[database], help="register an app; prints its key pair")
    register.add_argument("--name", required=True, help="the app's name, shown on the consent screen")
    register.add_argument(
        "--redirect-uri", action="append", required=True, help="an exact redirect URI: {mount}/callback (repeatable)"
    )
    register.add_argument("--webhook-url", required=True, help="where grant changes are posted: {mount}/webhooks")
    register.add_argument("--test", action="store_true", help="issue test keys instead of live ones")
    register.add_argument("--allow-http", action="store_true", help="accept plain http URLs off localhost")
    register.set_defaults(run_async=_register_app)

    user = domain.add_parser("add-user", parents=[database], help="add an email-and-password user")
    user.add_argument("--email", required=True)
    user.add_argument("--password", default=None, help="prompted for when left out (keeps it out of the shell history)")
    user.set_defaults(run_async=_add_user)

    password = domain.add_parser(
        "set-password", parents=[database], help="change a user's password; ends all their sessions"
    )
    password.add_argument("--email", required=True)
    password.add_argument("--password", default=None, help="prompted for when left out")
    password.set_defaults(run_async=_set_password)

    sessions = domain.add_parser("end-sessions", parents=[database], help="sign a user (or everyone) out everywhere")
    sessions.add_argument("--email", default=None, help="the user whose sessions end")
    sessions.add_argument("--all", action="store_true", help="end every session of every user")
    sessions.set_defaults(run_async=_end_sessions)

    from .budget_commands import add_budget_commands

    add_budget_commands(domain, database)
