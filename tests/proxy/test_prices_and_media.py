"""Reading prices and sizing media on their own: every pricing key, overrides, unknowns, variants;
durations and pages read from the files themselves."""

from __future__ import annotations

import struct
import zlib
from decimal import Decimal
from typing import Any

import pytest

from wattfare_embed import AppKeys
from wattfare_embed.metering.media import DataUrl, audio_seconds, mp4_seconds, parse_data_url, pdf_pages
from wattfare_embed.metering.model_price import PRICE_KEYS, most_expensive, price_of

from .conftest import MINI, Proxied, error_of, running_proxy
from .media_samples import data_url, image_part, mp4, pdf, user_message, wav


def _entry(**pricing: Any) -> dict[str, Any]:
    return {"id": "acme/model", "pricing": pricing, "top_provider": {"max_completion_tokens": 1000}}


def test_every_pricing_key_openrouter_lists_is_read_in_micro_dollars() -> None:
    price = price_of(_entry(**{key: str(Decimal(index + 1).scaleb(-6)) for index, key in enumerate(PRICE_KEYS)}))

    assert [price.rate(key) for key in PRICE_KEYS] == [Decimal(index + 1) for index in range(len(PRICE_KEYS))]
    assert price.unknown == frozenset() and price.known and not price.free


@pytest.mark.parametrize("unstated", [None, "", "-1", "n/a"])
def test_a_price_that_states_nothing_is_unknown_never_free(unstated: Any) -> None:
    base = price_of(_entry(prompt=unstated, completion="0.000001"))
    optional = price_of(_entry(prompt="0.000001", completion="0.000001", image=unstated))

    assert base.unknown == {"prompt"} and not base.known and not base.free
    assert optional.unknown == {"image"} and optional.known  # only requests with images are affected
    assert price_of(_entry(prompt="0.000001")).unknown == {"completion"}  # a required key left out


def test_a_discount_is_not_applied() -> None:
    assert price_of(_entry(prompt="0.000002", completion="0.000004", discount=0.5)).prompt == Decimal(2)


def test_overrides_above_a_prompt_size_are_tiers_and_time_windows_always_apply() -> None:
    price = price_of(
        _entry(
            prompt="0.000001",
            completion="0.000002",
            overrides=[
                {"min_prompt_tokens": 200_000, "prompt": "0.000003", "completion": "0.000004"},
                {"utc_start": 2200, "utc_end": 600, "completion": "0.000005"},  # a dearer night
                {"min_prompt_tokens": 1_000_000, "prompt": "0.000009"},
            ],
        )
    )

    small, large, huge = price.at(200_000), price.at(200_001), price.at(1_000_001)
    assert (small.prompt, small.completion) == (Decimal(1), Decimal(5))  # the window may be open
    assert (large.prompt, large.completion) == (Decimal(3), Decimal(5))
    assert (huge.prompt, huge.completion) == (Decimal(9), Decimal(5))


def test_the_dearest_of_several_models_is_taken_tier_by_tier() -> None:
    tiered = price_of(
        _entry(prompt="0.000001", completion="0.000001", overrides=[{"min_prompt_tokens": 10, "prompt": "0.000008"}])
    )
    flat = price_of(_entry(prompt="0.000002", completion="0.000003"))

    combined = most_expensive("both", [tiered, flat])

    assert (combined.at(10).prompt, combined.at(10).completion) == (Decimal(2), Decimal(3))
    assert (combined.at(11).prompt, combined.at(11).completion) == (Decimal(8), Decimal(3))


async def test_variants_are_priced_as_what_they_are(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "1")

    nitro = await lite.chat(user_id, model=MINI + ":nitro", max_tokens=20)
    online = await lite.chat(user_id, model=MINI + ":online", max_tokens=20)
    free = await lite.chat(user_id, model="meta-llama/llama-3.1-8b-instruct:free", max_tokens=20)

    assert nitro.status_code == online.status_code == free.status_code == 200
    held = {row.model: row.reserved for row in await lite.settled(user_id, 3)}
    # :online holds a web search on top (the dearest engine's $0.015)
    assert held[MINI + ":online"] > held[MINI + ":nitro"] + 15_000
    assert held["meta-llama/llama-3.1-8b-instruct:free"] == 0  # a listed :free variant is free
    sent = lite.upstream_calls()[0].json["provider"]["max_price"]
    assert (sent["prompt"], sent["completion"]) == (0.15, 0.6)  # :nitro may route faster, never dearer


async def test_a_request_using_a_dimension_with_an_unknown_price_is_refused_unless_allowed(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    for allowed in (False, True):
        user = f"{user_id}-{allowed}"
        async with running_proxy(keys, sqlite_url, allow_unpriced_models=allowed) as proxy:
            for model in proxy.fake.models:
                if model["id"] == MINI:
                    model["pricing"]["image"] = None
            await proxy.connect(user, "1")

            text = await proxy.chat(user, max_tokens=20)
            images = await proxy.chat(user, max_tokens=20, messages=user_message(image_part()))

            assert text.status_code == 200
            if allowed:
                assert images.status_code == 200
                rows = await proxy.settled(user, 2)
                assert (
                    max(row.reserved for row in rows) >= 24_000
                )  # the dearest listed image price (Claude Opus 4's $0.024)
            else:
                assert error_of(images) == (400, "invalid_request")
                assert "image" in images.json()["error"]["message"]
                await proxy.settled(user, 1)


# -- media sized from their bytes ----------------------------------------------------------------


def _inline(mime: str, data: bytes) -> DataUrl:
    parsed = parse_data_url(data_url(mime, data))
    assert parsed is not None
    return parsed


def test_audio_lasts_what_its_header_or_its_lowest_bitrate_allows() -> None:
    flac = (
        b"fLaC" + bytes([0x80, 0, 0, 34]) + bytes(10) + ((44_100 << 44) | (44_100 * 7)).to_bytes(8, "big") + bytes(16)
    )

    assert audio_seconds(_inline("audio/wav", wav(2.5)), "wav") == 3  # rounded up
    assert audio_seconds(_inline("audio/flac", flac), "flac") == 7
    assert audio_seconds(_inline("audio/mp4", mp4(42)), "m4a") == 42
    assert audio_seconds(_inline("audio/mpeg", bytes(64_000)), "mp3") == 64  # 8 kb/s, MP3's lowest
    assert audio_seconds(_inline("audio/pcm", bytes(32_000)), "pcm16") == 2  # 16-bit at 8 kHz at least
    assert audio_seconds(_inline("audio/ogg", bytes(9_000)), "ogg") is None  # no duration to read: unsized


def test_a_wav_header_claiming_an_impossible_rate_is_not_believed() -> None:
    lying = bytearray(wav(1))
    struct.pack_into("<I", lying, 24, 4_000_000_000)  # the sample rate

    seconds = audio_seconds(_inline("audio/wav", bytes(lying)), "wav")

    assert seconds is not None and seconds >= 1


def test_video_lasts_what_its_movie_header_states() -> None:
    assert mp4_seconds(mp4(600)) == 600
    assert mp4_seconds(b"\x1aE\xdf\xa3" + bytes(100)) is None  # WebM: not read, so unsized


def test_pdf_pages_are_read_from_the_page_tree_and_object_streams() -> None:
    compressed = zlib.compress(b"<< /Type /Page >> << /Type /Page >> << /Type /Pages /Count 9 >>")
    with_object_stream = (
        b"%PDF-1.7\n5 0 obj << /Type /ObjStm /Filter /FlateDecode >>\nstream\n" + compressed + b"\nendstream"
    )

    assert pdf_pages(pdf(3)) == 3
    assert pdf_pages(with_object_stream) == 9
    assert pdf_pages(b"%PDF-1.7 /Encrypt 3 0 R " + bytes(100)) is None
    assert pdf_pages(b"%PDF-1.7\n1 0 obj << /Type /ObjStm >>\nstream\nnot flate\nendstream") is None
    assert pdf_pages(b"not a pdf") is None
