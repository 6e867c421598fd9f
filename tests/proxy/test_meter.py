"""The SSE meter and the admission arithmetic on their own: any split, any line ending, usage anywhere."""

from __future__ import annotations

import json
import math
import random
from decimal import Decimal
from typing import Any

import pytest

from wattfare_embed._json import read_reply
from wattfare_embed.metering.billable import read_chat_request
from wattfare_embed.metering.estimate import affordable_tokens, plan_admission
from wattfare_embed.metering.meter import ResponseMeter
from wattfare_embed.metering.model_price import ModelPrice
from wattfare_embed.metering.output import charged_cost
from wattfare_embed.money import micros_from_usd

PRICE = ModelPrice(
    "m", prompt=Decimal("0.15"), completion=Decimal("0.6"), request=Decimal(0), max_completion_tokens=4096
)
OUTPUT = PRICE.completion


def _meter(prompt_cost: int, hold: int | None = None, *, free: bool = False) -> ResponseMeter:
    return ResponseMeter(prompt_cost, Decimal(0) if free else OUTPUT, hold=hold, free=free)


def _chat(**body: Any) -> Any:
    return read_chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}], **body})


def _event(payload: dict[str, Any], end: bytes = b"\n\n") -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + end


def _stream(end: bytes, usage_shape: str) -> bytes:
    chunk = {"id": "gen-1", "object": "chat.completion.chunk"}
    usage_choices = [] if usage_shape == "empty_choices" else [{"index": 0, "delta": {"content": ""}}]
    return b"".join(
        [
            b": OPENROUTER PROCESSING" + end,
            _event({**chunk, "choices": [{"index": 0, "delta": {"content": "Hello there"}}]}, end),
            _event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, end),
            _event({**chunk, "choices": usage_choices, "usage": {"completion_tokens": 2, "cost": 0.0000123}}, end),
            b"data: [DONE]" + end,
        ]
    )


@pytest.mark.parametrize("end", [b"\n\n", b"\r\n\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("usage_shape", ["empty_choices", "with_choices"])
@pytest.mark.parametrize("split", [1, 7, 10_000], ids=["byte-by-byte", "odd-chunks", "one-chunk"])
def test_meter_reads_a_stream_however_it_is_split(end: bytes, usage_shape: str, split: int) -> None:
    raw = _stream(end, usage_shape)
    meter = _meter(10)

    for start in range(0, len(raw), split):
        meter.feed(raw[start : start + split])

    assert meter.generation_id == "gen-1"
    assert meter.finish_reason == "stop"
    assert meter.reported_cost == 13  # 12.3 µ$, rounded up
    assert meter.trusted_cost() == 13
    assert meter.done
    assert meter.output_chars == len("Hello there")


@pytest.mark.parametrize("code", [502, "server_error"])
def test_meter_sees_a_mid_stream_error_with_an_int_or_string_code(code: int | str) -> None:
    meter = _meter(10)

    meter.feed(
        _event(
            {
                "id": "gen-2",
                "error": {"code": code, "message": "Upstream provider error"},
                "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
            }
        )
    )

    assert meter.error == {"code": code, "message": "Upstream provider error"}
    assert meter.finish_reason == "error"
    assert not meter.done


def test_running_estimate_counts_output_as_it_arrives() -> None:
    meter = _meter(10)
    assert meter.estimated_cost() == 10

    meter.feed(_event({"choices": [{"delta": {"content": "x" * 60}}]}))  # a bundled event: ten tokens at six characters
    meter.feed(_event({"choices": [{"delta": {"content": "y"}}]}))  # a content event is at least one token

    assert meter.output_tokens == 11
    assert meter.estimated_cost() == 10 + 7  # 11 tokens at 0.6 µ$ = 6.6 µ$, rounded up


def test_one_token_events_are_counted_by_events_not_by_length() -> None:
    """A provider streaming one token per event must never look like it overran its max_tokens."""
    meter = _meter(0)
    tokens = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog,", "again", "and", "again"]
    for _ in range(10):  # English prose, one token per event: about five characters each
        for token in tokens:
            meter.feed(_event({"choices": [{"delta": {"content": " " + token}}]}))
    assert meter.output_tokens == 10 * len(tokens)


def test_zero_cost_is_trusted_only_for_a_free_model() -> None:
    priced, free = _meter(0), _meter(0, free=True)
    for meter in (priced, free):
        meter.observe({"usage": {"cost": 0}}, whole=True)

    assert priced.trusted_cost() is None
    assert free.trusted_cost() == 0


def test_admission_holds_the_prompt_and_the_requested_completion() -> None:
    admission = plan_admission(_chat(max_tokens=100), PRICE)

    assert admission.completion_limit == 100
    assert admission.wanted == admission.prompt_cost + 60
    assert affordable_tokens(admission, admission.wanted) == 100
    # Half the completion money buys half the tokens; never more than requested.
    assert affordable_tokens(admission, admission.prompt_cost + 30) == 50
    assert affordable_tokens(admission, admission.wanted * 10) == 100


def test_admission_takes_the_smaller_of_two_completion_limits() -> None:
    admission = plan_admission(_chat(max_tokens=100, max_completion_tokens=30), PRICE)

    assert admission.completion_limit == 30


@pytest.mark.parametrize(
    "odd",
    [
        {"choices": 5},
        {"choices": [{"delta": "text"}]},
        {"choices": [{"delta": {"tool_calls": 3}}]},
        {"usage": {"cost": "0.1"}},
        {"usage": {"cost": -1}},
        {"usage": 7, "error": "boom"},
    ],
)
def test_meter_survives_odd_shapes(odd: dict[str, Any]) -> None:
    meter = _meter(10)

    meter.feed(_event(odd))

    assert meter.trusted_cost() is None
    assert meter.estimated_cost() == 10


def test_meter_says_where_in_a_chunk_the_hold_was_passed() -> None:
    # One token is 0.6 µ$: four tokens (2.4, rounded up to 3) are the first to pass 12.
    meter = _meter(10, hold=12)
    events = [_event({"choices": [{"delta": {"content": f"w{i}"}}]}) for i in range(6)]
    chunk = b": keep-alive\n\n" + b"".join(events)

    cut = meter.feed(chunk)

    assert cut == len(b": keep-alive\n\n") + 4 * len(events[0]) - 1  # just after the fourth data line
    assert chunk[:cut].endswith(b'"w3"}}]}\n')
    assert meter.output_events == 4
    assert meter.separator() == b"\n"  # the blank line that ends that event


def test_meter_does_not_cut_once_the_upstream_reported_its_final_cost() -> None:
    meter = _meter(10, hold=11)
    finished = _event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunk = (
        finished
        + _event({"choices": [], "usage": {"cost": 0.000005}})
        + _event({"choices": [{"delta": {"content": "x" * 99}}]})
    )

    assert meter.feed(chunk) is None
    assert meter.trusted_cost() == 5


def test_an_early_usage_chunk_does_not_disable_the_cut_off() -> None:
    """A usage sent before the generation finished cannot count what is still to come."""
    meter = _meter(10, hold=11)
    early = _event({"choices": [], "usage": {"cost": 0.000001}})
    overrun = _event({"choices": [{"delta": {"content": "x" * 99}}]})

    cut = meter.feed(early + overrun + b"data: [DONE]\n\n")

    assert cut == len(early + overrun) - 1
    assert meter.reported_cost == 1
    assert meter.trusted_cost() is None  # not the bill: settled as estimated, reconciled later


def test_separator_ends_a_line_cut_in_the_middle() -> None:
    meter = _meter(10)

    meter.feed(b'data: {"choices": [{"del')

    assert meter.separator() == b"\n\n"
    meter.feed(b'ta": {}}]}\n\n')
    assert meter.separator() == b""


@pytest.mark.parametrize("end", [b"\r", b"\n", b"\r\n"], ids=["cr", "lf", "crlf"])
@pytest.mark.parametrize("split", [1, 2, 5, 10_000], ids=["byte-by-byte", "pairs", "odd", "one-chunk"])
def test_meter_splits_lines_on_cr_lf_and_crlf_however_the_stream_is_cut(end: bytes, split: int) -> None:
    raw = _stream(end + end, "empty_choices").replace(b"\n\n", end + end)
    meter = _meter(10)

    for start in range(0, len(raw), split):
        meter.feed(raw[start : start + split])

    assert (meter.generation_id, meter.finish_reason, meter.done) == ("gen-1", "stop", True)
    assert meter.trusted_cost() == 13
    assert meter.output_chars == len("Hello there")
    assert meter.output_events == 1  # a CRLF split across two reads is one line end, not two


def test_a_cut_after_a_lone_cr_ends_the_event_for_any_reader() -> None:
    meter = _meter(0, hold=1)

    cut = meter.feed(b'data: {"choices":[{"delta":{"content":"' + b"x" * 60 + b'"}}]}\r')

    assert cut is not None
    assert meter.separator() == b"\n\n"  # a reader taking the next LF as the rest of a CRLF still sees a blank line


@pytest.mark.parametrize(
    ("delta", "chars", "media"),
    [
        ({"content": "abc"}, 3, 0),
        ({"reasoning": "thinking"}, 8, 0),
        ({"reasoning_content": "thinking"}, 8, 0),
        # OpenRouter sends the same reasoning in both fields: counted once.
        ({"reasoning": "thinking", "reasoning_details": [{"type": "reasoning.text", "text": "thinking"}]}, 8, 0),
        ({"reasoning_details": [{"type": "reasoning.summary", "summary": "in short"}]}, 8, 0),
        ({"reasoning_details": [{"type": "reasoning.encrypted", "data": "QUJDREVGR0g="}]}, 9, 0),  # a byte a char
        ({"tool_calls": [{"function": {"name": "get", "arguments": '{"q":1}'}}]}, 10, 0),
        ({"refusal": "no"}, 2, 0),
        ({"images": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 4_000}}]}, 0, 2),
        ({"audio": {"data": "A" * 2_560, "transcript": "hi"}}, 2, 2),
        ({"content": [{"type": "text", "text": "parts"}]}, 5, 0),
    ],
    ids=[
        "content",
        "reasoning",
        "reasoning_content",
        "reasoning-twice",
        "summary",
        "encrypted",
        "tool-call",
        "refusal",
        "image",
        "audio",
        "content-parts",
    ],
)
def test_the_meter_counts_every_billable_output(delta: dict[str, Any], chars: int, media: int) -> None:
    meter = _meter(0)

    meter.feed(_event({"choices": [{"index": 0, "delta": delta}]}))

    assert (meter.output_chars, meter.media_tokens, meter.output_events) == (chars, media, 1)


def test_reasoning_that_overruns_the_hold_is_cut_off() -> None:
    meter = _meter(0, hold=6)  # ten tokens at 0.6 µ$
    events = [
        _event({"choices": [{"delta": {"reasoning": f"r{i}", "reasoning_details": [{"text": f"r{i}"}]}}]})
        for i in range(20)
    ]

    cut = meter.feed(b"".join(events))

    assert cut == sum(len(event) for event in events[:11]) - 1
    assert meter.output_events == 11


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"cost": 0.0001, "is_byok": True, "cost_details": {"upstream_inference_cost": 0.002}}, 2_100),
        ({"cost": 0.0001, "is_byok": True, "cost_details": {"upstream_inference_cost": None}}, None),
        ({"cost": 0.0001, "is_byok": True}, None),
        ({"cost": 0.0001, "is_byok": False, "cost_details": {"upstream_inference_cost": 0.002}}, 100),
    ],
    ids=["byok", "byok-without-the-provider-bill", "byok-without-details", "not-byok"],
)
def test_byok_usage_charges_the_providers_bill_as_well_as_openrouters_fee(
    usage: dict[str, Any], expected: int | None
) -> None:
    meter = _meter(0)

    meter.observe({"choices": [{"finish_reason": "stop", "delta": {}}], "usage": usage})

    assert meter.trusted_cost() == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"usage": {"cost": 0.0000045}, "id": "gen-1"}',
        b'\xef\xbb\xbf{"usage": {"cost": 1e-7}}',  # a byte-order mark
        '{"a": "é"}'.encode("utf-16"),
        b'{"a": "\\ud800"}',  # a lone surrogate escape
        b'{"a": 1e999, "b": NaN, "c": 123456789012345678901234567890}',
        b'{"a": 1, "a": 2}',
    ],
    ids=["plain", "bom", "utf-16", "lone-surrogate", "odd-numbers", "duplicate-key"],
)
def test_a_reply_is_read_exactly_as_json_loads_reads_it(body: bytes) -> None:
    assert repr(read_reply(body)) == repr(json.loads(body))


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": 1,}', b"\xff", b'"a\tb"'], ids=str)
def test_a_reply_json_loads_refuses_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        read_reply(body)


def _micros_through_decimal(amount: float) -> int:
    return math.ceil(Decimal(repr(amount)) * 1_000_000)


@pytest.mark.parametrize(
    "amount",
    [
        0.0,
        -0.0,
        4.5e-06,
        1e-07,
        0.1,
        0.0000001,
        1.5,
        100.0,
        1e16,
        1e22,
        123456.789012345,
        5e-324,
        1.7976931348623157e308,
    ],
    ids=repr,
)
def test_a_float_amount_rounds_up_to_what_its_decimal_repr_says(amount: float) -> None:
    assert micros_from_usd(amount) == _micros_through_decimal(amount)


def test_random_float_amounts_round_as_their_decimal_reprs_do() -> None:
    generator = random.Random(16)
    amounts = [generator.uniform(0, 10) ** generator.uniform(-12, 6) for _ in range(20_000)]
    amounts += [round(generator.uniform(0, 1), generator.randint(1, 12)) for _ in range(20_000)]

    assert [micros_from_usd(amount) for amount in amounts] == [_micros_through_decimal(a) for a in amounts]


@pytest.mark.parametrize(
    ("usage", "micros"),
    [
        ({"cost": 0.0000045}, 5),
        ({"cost": 3}, 3_000_000),
        ({"cost": 0.1, "is_byok": True, "cost_details": {"upstream_inference_cost": 0.2}}, 300_000),
        ({"cost": 0.0000001, "is_byok": True, "cost_details": {"upstream_inference_cost": 0.0000004}}, 1),
        ({"cost": 0.1, "is_byok": True, "cost_details": {"upstream_inference_cost": None}}, None),
        ({"cost": -1.0}, None),
        ({"cost": float("inf")}, None),
        ({"cost": True}, None),
        ({"cost": "0.1"}, None),
        ({"cost": 10**400}, 10**406),
    ],
    ids=[
        "float",
        "int",
        "byok",
        "byok-summed-before-rounding",
        "byok-unstated",
        "negative",
        "inf",
        "bool",
        "text",
        "int-past-a-float",
    ],
)
def test_a_usage_is_charged_what_it_states(usage: dict[str, Any], micros: int | None) -> None:
    assert charged_cost(usage) == micros
