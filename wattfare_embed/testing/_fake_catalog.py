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
) -> JSONObject:
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "name": name,
        "created": 1_720_000_000,
        "description": f"{name}, as simulated by the wattfare fake OpenRouter.",
        "context_length": context_length,
        "architecture": {
            "modality": f"text->{output_modality}",
            "input_modalities": ["text"],
            "output_modalities": [output_modality],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {"prompt": prompt, "completion": completion, "request": request, "image": "0"},
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


def default_models() -> list[JSONObject]:
    # A deep copy per fake, so one test's price change never leaks into another's.
    return copy.deepcopy(list(_DEFAULT_MODELS))


@dataclass(frozen=True)
class ModelPrices:
    """USD per token (prompt, completion) and per request, parsed from the catalog's decimal strings."""

    prompt: Decimal
    completion: Decimal
    request: Decimal = Decimal(0)

    @classmethod
    def of(cls, model: JSONObject) -> ModelPrices:
        pricing = model.get("pricing") or {}
        return cls(
            prompt=Decimal(str(pricing.get("prompt", "0"))),
            completion=Decimal(str(pricing.get("completion", "0"))),
            request=Decimal(str(pricing.get("request") or "0")),
        )

    @property
    def is_variable(self) -> bool:
        return self.prompt < 0 or self.completion < 0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return self.request + prompt_tokens * self.prompt + completion_tokens * self.completion


@dataclass(frozen=True)
class ServedModel:
    """The model that actually answers a request; routers resolve to a concrete one."""

    id: str
    provider: str
    prices: ModelPrices
    max_completion_tokens: int


def serve_model(models: list[JSONObject], requested: object, router_target: str) -> ServedModel:
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
    return ServedModel(
        id=model_id,
        provider=_PROVIDER_BY_AUTHOR.get(author, author.capitalize()),
        prices=ModelPrices.of(model),
        max_completion_tokens=int(max_completion),
    )


def _find(models: list[JSONObject], model_id: str) -> JSONObject | None:
    return next((model for model in models if model.get("id") == model_id), None)
