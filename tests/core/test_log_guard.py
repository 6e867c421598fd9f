"""The suite's key guard (``tests/log_guard.py``) sees a key wherever a handler could print one."""

from __future__ import annotations

import logging
import uuid

from tests.log_guard import SecretsInLogs
from wattfare_embed import new_key_pair


def _guarded() -> tuple[logging.Logger, SecretsInLogs]:
    guard = SecretsInLogs()
    # A logger of its own that does not propagate: the suite's guard must not see the planted keys.
    logger = logging.getLogger(f"tests.log_guard.probe.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.handlers = [guard]
    logger.setLevel(logging.DEBUG)
    return logger, guard


def test_the_guard_finds_keys_in_messages_arguments_extras_and_tracebacks() -> None:
    logger, guard = _guarded()
    secret = new_key_pair().secret_key
    logger.debug("using %s", secret)
    logger.info("funding key sk-or-v1-0123456789abcdef in a message")
    logger.warning("fine", extra={"header": "Bearer sk-or-v1-management"})
    try:
        raise ValueError(f"refused {secret}")
    except ValueError:
        logger.exception("failed")
    guard.remember("a-registered-credential-value")
    logger.error("%s", {"nested": ["a-registered-credential-value"]})
    assert [leak.split(" (")[1].split(")")[0] for leak in guard.leaks] == [
        "formatted message",
        "message",
        "extra",
        "exception",
        "formatted message",
    ]
    assert not any(secret in leak or "sk-or-v1" in leak for leak in guard.leaks)  # the report hides them


def test_the_guard_lets_ordinary_records_through() -> None:
    logger, guard = _guarded()
    logger.info("`wattfare keys new --test` prints a pair: sk_test_… and pk_test_…")
    logger.info("user %s spent %d µ$", "user_1", 120, extra={"ledger_id": "req_0123"})
    assert guard.leaks == []
