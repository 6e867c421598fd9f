"""The fake's model catalog: real-shaped `/models` entries, and the prices and limits read back from them."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from decimal import Decimal

from ._fake_wire import JSONObject, OpenRouterError

# Display names OpenRouter puts in each chunk's `provider`; other authors get their slug capitalised.
_PROVIDER_BY_AUTHOR = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "meta-llama": "DeepInfra",
    "perplexity": "Perplexity",
    "google": "Google AI Studio",
    "deepseek": "DeepSeek",
}


def _model(
    model_id: str,
    name: str,
    *,
    prompt: str,
    completion: str,
    request: str = "0",
    context_length: int,
    max_completion_tokens: int | None,
    output_modality: str = "text",
    inputs: tuple[str, ...] = ("text",),
    outputs: tuple[str, ...] | None = None,
    image: str = "0",
    **pricing: object,
) -> JSONObject:
    """A `/models` entry; `pricing` adds any other key OpenRouter lists (`image_output`, `overrides`, ...)."""
    outputs = outputs or (output_modality,)
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "name": name,
        "created": 1_720_000_000,
        "description": f"{name}, as simulated by the wattfare fake OpenRouter.",
        "context_length": context_length,
        "architecture": {
            "modality": f"{'+'.join(inputs)}->{'+'.join(outputs)}",
            "input_modalities": list(inputs),
            "output_modalities": list(outputs),
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {"prompt": prompt, "completion": completion, "request": request, "image": image, **pricing},
        "top_provider": {
            "context_length": context_length,
            "max_completion_tokens": max_completion_tokens,
            "is_moderated": False,
        },
        "per_request_limits": None,
        "supported_parameters": ["max_tokens", "temperature", "top_p", "stop", "user"],
        "default_parameters": None,
        "expiration_date": None,
        "links": {"details": f"/api/v1/models/{model_id}/endpoints"},
    }


_DEFAULT_MODELS: tuple[JSONObject, ...] = (
    _model(
        "openai/gpt-4o-mini",
        "OpenAI: GPT-4o-mini",
        prompt="0.00000015",
        completion="0.0000006",
        image="0.007225",
        inputs=("text", "image", "file"),
        context_length=128_000,
        max_completion_tokens=16_384,
    ),
    _model(
        "anthropic/claude-sonnet-4",
        "Anthropic: Claude Sonnet 4",
        prompt="0.000003",
        completion="0.000015",
        context_length=200_000,
        max_completion_tokens=64_000,
    ),
    _model(
        "meta-llama/llama-3.1-8b-instruct:free",
        "Meta: Llama 3.1 8B Instruct (free)",
        prompt="0",
        completion="0",
        context_length=131_072,
        max_completion_tokens=4_096,
    ),
    # A router: its price depends on the model it picks, which OpenRouter signals with "-1".
    _model(
        "openrouter/auto",
        "Auto Router",
        prompt="-1",
        completion="-1",
        context_length=2_000_000,
        max_completion_tokens=None,
    ),
    _model(
        "openai/text-embedding-3-small",
        "OpenAI: Text Embedding 3 Small",
        prompt="0.00000002",
        completion="0",
        context_length=8_192,
        max_completion_tokens=None,
        output_modality="embeddings",
    ),
    _model(
        "perplexity/sonar",
        "Perplexity: Sonar",
        prompt="0.000001",
        completion="0.000001",
        request="0.005",
        context_length=127_072,
        max_completion_tokens=8_000,
    ),
)


# Models that bill the other dimensions OpenRouter lists (prices as listed in 2026, rounded).
_MULTIMODAL_MODELS: tuple[JSONObject, ...] = (
    _model(
        "google/gemini-2.5-flash",
        "Google: Gemini 2.5 Flash",
        prompt="0.0000003",
        completion="0.0000025",
        image="0",
        audio="0.000001",
        internal_reasoning="0.0000025",
        input_cache_read="0.000000075",
        input_cache_write="0.0000003833",
        inputs=("text", "image", "audio", "video", "file"),
        context_length=1_048_576,
        max_completion_tokens=65_535,
    ),
    _model(
        "google/gemini-2.5-flash-image",
        "Google: Gemini 2.5 Flash Image",
        prompt="0.0000003",
        completion="0.0000025",
        image="0.001238",
        image_output="0.00003",
        inputs=("text", "image"),
        outputs=("image", "text"),
        context_length=32_768,
        max_completion_tokens=32_768,
    ),
    _model(
        "google/gemini-2.5-pro",
        "Google: Gemini 2.5 Pro",
        prompt="0.00000125",
        completion="0.00001",
        image="0.00516",
        inputs=("text", "image", "file"),
        # Dearer above 200K prompt tokens (§6 overrides).
        overrides=[{"min_prompt_tokens": 200_000, "prompt": "0.0000025", "completion": "0.000015"}],
        context_length=1_048_576,
        max_completion_tokens=65_536,
    ),
    _model(
        "openai/gpt-4o-audio-preview",
        "OpenAI: GPT-4o Audio",
        prompt="0.0000025",
        completion="0.00001",
        audio="0.00004",
        audio_output="0.00008",
        inputs=("text", "audio"),
        outputs=("text", "audio"),
        context_length=128_000,
        max_completion_tokens=16_384,
    ),
    _model(
        "openai/gpt-4o-search-preview",
        "OpenAI: GPT-4o Search Preview",
        prompt="0.0000025",
        completion="0.00001",
        web_search="0.035",
        context_length=128_000,
        max_completion_tokens=16_384,
    ),
    _model(
        "deepseek/deepseek-r1",
        "DeepSeek: R1",
        prompt="0.0000004",
        completion="0.000002",
        internal_reasoning="0.000004",
        context_length=163_840,
        max_completion_tokens=32_768,
    ),
    _model(
        "deepseek/deepseek-chat",
        "DeepSeek: V3",
        prompt="0.00000027",
        completion="0.0000011",
        # A time-of-day window (UTC HHMM, wrapping midnight) at its own price.
        overrides=[{"utc_start": 1630, "utc_end": 30, "prompt": "0.00000054", "completion": "0.0000022"}],
        context_length=163_840,
        max_completion_tokens=8_192,
    ),
    _model(
        "anthropic/claude-opus-4",
        "Anthropic: Claude Opus 4",
        prompt="0.000015",
        completion="0.000075",
        image="0.024",
        input_cache_read="0.0000015",
        input_cache_write="0.00001875",
        input_cache_write_1h="0.00003",
        web_search="0.01",
        inputs=("text", "image", "file"),
        context_length=200_000,
        max_completion_tokens=32_000,
    ),
)


def default_models() -> list[JSONObject]:
    # A deep copy per fake, so one test's price change never leaks into another's.
    return copy.deepcopy([*_DEFAULT_MODELS, *_MULTIMODAL_MODELS])


_PRICE_KEYS = (
    "prompt", "completion", "request", "image", "image_token", "image_output", "audio", "audio_output",
    "input_audio_cache", "web_search", "internal_reasoning", "input_cache_read", "input_cache_write",
    "input_cache_write_1h",
)  # fmt: skip


@dataclass(frozen=True)
class ModelPrices:
    """USD per unit for every pricing key OpenRouter lists, parsed from the catalog's decimal strings."""

    prompt: Decimal
    completion: Decimal
    request: Decimal = Decimal(0)
    image: Decimal = Decimal(0)
    image_token: Decimal = Decimal(0)
    image_output: Decimal = Decimal(0)
    audio: Decimal = Decimal(0)
    audio_output: Decimal = Decimal(0)
    input_audio_cache: Decimal = Decimal(0)
    web_search: Decimal = Decimal(0)
    internal_reasoning: Decimal = Decimal(0)
    input_cache_read: Decimal = Decimal(0)
    input_cache_write: Decimal = Decimal(0)
    input_cache_write_1h: Decimal = Decimal(0)

    @classmethod
    def of(cls, model: JSONObject) -> ModelPrices:
        pricing = model.get("pricing") or {}
        return cls(**{key: Decimal(str(pricing.get(key) or "0")) for key in _PRICE_KEYS})

    @property
    def is_variable(self) -> bool:
        return self.prompt < 0 or self.completion < 0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return self.request + prompt_tokens * self.prompt + completion_tokens * self.completion

    def fits(self, max_price: JSONObject) -> bool:
        """Whether this provider's prices are within a request's `provider.max_price` (§9: prompt and
        completion in USD per million tokens, request and image in USD)."""
        per_million = {"prompt": self.prompt * 1_000_000, "completion": self.completion * 1_000_000}
        each = {"request": self.request, "image": self.image}
        for key, price in {**per_million, **each}.items():
            limit = max_price.get(key)
            if isinstance(limit, int | float) and not isinstance(limit, bool) and price > Decimal(repr(limit)):
                return False
        return True

    @property
    def weight(self) -> Decimal:
        return self.prompt + self.completion + self.request + self.image


@dataclass(frozen=True)
class ServedModel:
    """The model and provider that actually answer a request; routers resolve to a concrete model."""

    id: str
    provider: str
    prices: ModelPrices
    max_completion_tokens: int
    output_modalities: tuple[str, ...] = ("text",)
    pricing: JSONObject | None = None

    def prices_for(self, prompt_tokens: int, utc_hhmm: int) -> ModelPrices:
        """The prices that apply to this request: the listed ones, with every override whose
        conditions hold (above `min_prompt_tokens`, inside its `utc_start`-`utc_end` window)."""
        if not (self.pricing or {}).get("overrides"):
            return self.prices
        pricing = dict(self.pricing or {})
        for override in pricing.pop("overrides", None) or ():
            minimum = override.get("min_prompt_tokens")
            if minimum is not None and prompt_tokens <= minimum:
                continue
            start, end = override.get("utc_start"), override.get("utc_end")
            if start is not None and end is not None and not _in_window(utc_hhmm, start, end):
                continue
            pricing.update({key: value for key, value in override.items() if key in _PRICE_KEYS})
        return ModelPrices.of({"pricing": pricing})


def _in_window(hhmm: int, start: int, end: int) -> bool:
    return start <= hhmm < end if start <= end else hhmm >= start or hhmm < end  # a window may wrap midnight


def serve_model(
    models: list[JSONObject],
    requested: object,
    router_target: str,
    *,
    providers: dict[str, list[tuple[str, JSONObject]]] | None = None,
    max_price: object = None,
    only: object = None,
    dearest: bool = False,
) -> ServedModel:
    """Pick the model, then its provider: the top (cheapest) one, or the dearest when routing prefers
    it (`dearest`, `:nitro`). Only providers named in `only` (when given) and within `max_price`
    are eligible; none left is a 404."""
    if not isinstance(requested, str) or not requested:
        raise OpenRouterError(400, "No model specified")
    model = _find(models, requested)
    if model is None:
        raise OpenRouterError(400, f"{requested} is not a valid model ID")
    if ModelPrices.of(model).is_variable:
        # Billing follows the model actually used, which the response's `model` names (reference §3.1).
        target = _find(models, router_target)
        if target is None or ModelPrices.of(target).is_variable:
            raise OpenRouterError(400, f"{router_target} is not a valid model ID")
        model = target
    top_provider = model.get("top_provider") or {}
    max_completion = top_provider.get("max_completion_tokens") or model.get("context_length") or 4_096
    model_id = str(model["id"])
    author = model_id.split("/", 1)[0]
    listed: JSONObject = dict(model.get("pricing") or {})
    candidates = [(_PROVIDER_BY_AUTHOR.get(author, author.capitalize()), listed)]
    candidates += [(name, {**listed, **pricing}) for name, pricing in (providers or {}).get(model_id, [])]
    if isinstance(only, list):
        slugs = {str(slug).lower() for slug in only}
        candidates = [(name, pricing) for name, pricing in candidates if name.lower().replace(" ", "-") in slugs]
    if isinstance(max_price, dict):
        candidates = [(name, pricing) for name, pricing in candidates if _of(pricing).fits(max_price)]
        if not candidates:
            raise OpenRouterError(404, f"No endpoints found for {model_id} within the requested max_price")
    wants_dearest = dearest or requested.endswith(":nitro")
    provider, pricing = max(candidates, key=lambda c: _of(c[1]).weight) if wants_dearest else candidates[0]
    architecture = model.get("architecture") or {}
    return ServedModel(
        id=model_id,
        provider=provider,
        prices=_of(pricing),
        max_completion_tokens=int(max_completion),
        output_modalities=tuple(architecture.get("output_modalities") or ("text",)),
        pricing=pricing,
    )


def _of(pricing: JSONObject) -> ModelPrices:
    return ModelPrices.of({"pricing": pricing})


def _find(models: list[JSONObject], model_id: str) -> JSONObject | None:
    # A variant not listed on its own (`:online`, `:nitro`, ...) is served by its base model.
    name = model_id
    while True:
        found = next((model for model in models if model.get("id") == name), None)
        if found is not None or ":" not in name:
            return found
        name = name.rsplit(":", 1)[0]
