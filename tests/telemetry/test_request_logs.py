"""One structured log record per metered request, readable by any formatter."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from tests.proxy.conftest import MINI, running_proxy
from wattfare_embed import AppKeys
from wattfare_embed.telemetry import REQUEST_LOGGER, Telemetry

FIELDS = (
    "ledger_id",
    "outcome",
    "operation",
    "model",
    "response_model",
    "cost_micros",
    "hold_micros",
    "charge_kind",
    "input_tokens",
    "output_tokens",
    "upstream_status",
    "latency_ms",
    "first_byte_ms",
    "upstream_ms",
    "user_id",
)


class JsonLines(logging.Formatter):
    """What a JSON log formatter does: the message and every attribute passed with ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"message": record.getMessage(), **{name: getattr(record, name) for name in FIELDS}})


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonLines())
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def request_log() -> Iterator[Collected]:
    handler = Collected()
    logger = logging.getLogger(REQUEST_LOGGER)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def test_each_metered_request_logs_one_record_with_its_figures(
    keys: AppKeys, sqlite_url: str, user_id: str, request_log: Collected
) -> None:
    async with running_proxy(keys, sqlite_url) as proxy:  # the default Telemetry: logs on
        await proxy.connect(user_id, monthly_usd="0.01")
        response, _raw = await proxy.stream_bytes(user_id, messages=[{"role": "user", "content": "a private question"}])
        assert response.status_code == 200
        refused = await proxy.chat(user_id, model="no/such-model")
        assert refused.status_code == 400
        [row] = await proxy.settled(user_id, 1)

    assert len(request_log.records) == 2
    # A request's record is written once it has settled, which is after its answer: in either order.
    [served_record] = [record for record in request_log.records if vars(record)["ledger_id"] is not None]
    [unknown_record] = [record for record in request_log.records if record is not served_record]
    served, unknown = vars(served_record), vars(unknown_record)
    assert served_record.levelno == logging.INFO
    assert served["ledger_id"] == row.id
    assert served["outcome"] == "ok"
    assert served["operation"] == "chat" and served["model"] == MINI
    assert served["cost_micros"] == row.cost and served["hold_micros"] == row.reserved
    assert served["charge_kind"] == "reported"
    assert served["upstream_status"] == 200
    assert served["output_tokens"] > 0 and served["input_tokens"] > 0
    assert 0 < served["first_byte_ms"] <= served["upstream_ms"] < served["latency_ms"]
    assert served["user_id"] and user_id not in served["user_id"]  # a pseudonym
    message = served_record.getMessage()
    assert row.id in message and MINI in message

    assert unknown["outcome"] == "invalid_request"
    assert unknown["ledger_id"] is None and unknown["cost_micros"] is None
    assert unknown["model"] is None  # a name the price book did not know is never echoed

    # Any formatter works: the JSON one sees every field, and no prompt, key or raw user id.
    for line in request_log.lines:
        parsed = json.loads(line)
        assert set(FIELDS) <= set(parsed)
        assert "a private question" not in line and user_id not in line and keys.secret_key not in line


async def test_request_logs_can_be_turned_off(
    keys: AppKeys, sqlite_url: str, user_id: str, request_log: Collected
) -> None:
    async with running_proxy(keys, sqlite_url, telemetry=Telemetry(request_logs=False)) as proxy:
        await proxy.connect(user_id)
        assert (await proxy.chat(user_id)).status_code == 200
        await proxy.settled(user_id, 1)
    assert request_log.records == []
