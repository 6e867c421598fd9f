"""The public surface: what `wattfare_embed` exports, pinned so a change is a deliberate one."""

from __future__ import annotations

import importlib

import wattfare_embed

PUBLIC_NAMES = [
    "AppKeys",
    "AuthError",
    "BudgetAlert",
    "BudgetExceededError",
    "ConfigurationError",
    "ConnectionStatus",
    "ConsentAuthority",
    "DevConsent",
    "FundingGrant",
    "FundingInvalidError",
    "GrantInvalidError",
    "GrantStatus",
    "HostedConsent",
    "InvalidRequestError",
    "NotConnectedError",
    "OpenRouterConsent",
    "PayloadTooLargeError",
    "PoolSizes",
    "RateLimitedError",
    "RequestTimeoutError",
    "Session",
    "SqlStore",
    "Store",
    "Telemetry",
    "UnavailableError",
    "UpstreamError",
    "Wattfare",
    "WattfareError",
    "WattfareGrant",
    "WattfareMiddleware",
    "WattfareUser",
    "is_budget_exceeded",
    "is_not_connected",
    "metadata",
    "grant_header",
    "migrations",
    "new_key_pair",
    "to_wattfare_error",
    "user_id_header",
    "verify_alert",
]


def test_the_public_names_are_pinned() -> None:
    assert sorted(wattfare_embed.__all__) == sorted(PUBLIC_NAMES)
    assert len(set(wattfare_embed.__all__)) == len(wattfare_embed.__all__)


def test_every_public_name_imports() -> None:
    module = importlib.import_module("wattfare_embed")
    for name in PUBLIC_NAMES:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from wattfare_embed import *", namespace)
    assert set(PUBLIC_NAMES) <= set(namespace)


def test_every_error_has_its_wire_code_and_status() -> None:
    expected = {
        "NotConnectedError": ("not_connected", 402),
        "BudgetExceededError": ("budget_exceeded", 402),
        "FundingInvalidError": ("funding_invalid", 402),
        "GrantInvalidError": ("grant_invalid", 402),
        "RateLimitedError": ("rate_limited", 429),
        "AuthError": ("auth", 401),
        "InvalidRequestError": ("invalid_request", 400),
        "PayloadTooLargeError": ("invalid_request", 413),
        "RequestTimeoutError": ("invalid_request", 408),
        "UpstreamError": ("upstream", 502),
        "UnavailableError": ("unavailable", 503),
    }
    for name, (code, status) in expected.items():
        error_class = getattr(wattfare_embed, name)
        assert issubclass(error_class, wattfare_embed.WattfareError)
        error = error_class("what went wrong")
        assert (error.code, error.status) == (code, status)
        assert error.to_json() == {"error": {"code": code, "message": "what went wrong"}}
    assert issubclass(wattfare_embed.ConfigurationError, ValueError)
    assert not issubclass(wattfare_embed.ConfigurationError, wattfare_embed.WattfareError)


def test_the_store_metadata_holds_only_prefixed_tables() -> None:
    assert set(wattfare_embed.metadata.tables) >= {
        "wattfare_connections",
        "wattfare_ledger",
        "wattfare_consent_requests",
        "wattfare_webhook_events",
        "wattfare_grants",
    }
    assert all(name.startswith("wattfare_") for name in wattfare_embed.metadata.tables)


def test_the_package_is_typed() -> None:
    from importlib import resources

    assert resources.files("wattfare_embed").joinpath("py.typed").is_file()


def test_the_ai_sdk_module_names_are_pinned() -> None:
    from wattfare_embed import ai_sdk

    assert sorted(ai_sdk.__all__) == [
        "UIMessageStreamResponse",
        "UI_MESSAGE_STREAM_HEADERS",
        "to_openai_messages",
        "ui_message_stream",
    ]
