"""What the fake charged: one record per generation, the pre-flight credit check, and spend totals."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from ._fake_billing import OutputBill, PromptBill
from ._fake_catalog import ModelPrices, ServedModel
from ._fake_keys import FakeKey
from ._fake_wire import JSONObject, OpenRouterError, iso_time, new_generation_id, usd

_KEY_LIMIT_HINT = "https://openrouter.ai/settings/keys and create a key with a higher monthly limit"
_CREDITS_HINT = "https://openrouter.ai/settings/credits and upgrade to a paid account"


@dataclass(eq=False)
class Generation:
    """One generation, from the moment it is admitted until it is settled and charged.

    ``total_cost`` is what OpenRouter charged; for a BYOK generation that is only its fee, and
    ``upstream_cost`` what the provider billed the user's own key: ``billed`` is both.
    """

    id: str
    key: FakeKey
    model: str
    provider: str
    api_type: str
    streamed: bool
    prices: ModelPrices
    prompt: PromptBill
    created_at: str
    external_user: str | None = None
    http_referer: str | None = None
    output: OutputBill = field(default_factory=OutputBill)
    finish_reason: str | None = None
    cancelled: bool = False
    total_cost: Decimal = Decimal(0)
    upstream_cost: Decimal | None = None
    byok: bool = False
    byok_fee_rate: Decimal = Decimal(0)
    settled: bool = False

    @property
    def prompt_tokens(self) -> int:
        return self.prompt.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.output.completion_tokens

    @property
    def billed(self) -> Decimal:
        """What the user paid in all: OpenRouter's charge, and the provider's for BYOK."""
        return self.total_cost + (self.upstream_cost or Decimal(0))

    def usage_object(self) -> JSONObject:
        """The in-response `usage` of a chat completion (§3.1)."""
        usage: JSONObject = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cost": usd(self.total_cost),
            "is_byok": self.byok,
            "prompt_tokens_details": {
                "cached_tokens": 0,
                "cache_write_tokens": self.prompt.cache_write_tokens,
                "audio_tokens": self.prompt.audio_tokens,
                "video_tokens": self.prompt.video_tokens,
            },
            "completion_tokens_details": {
                "reasoning_tokens": self.output.reasoning_tokens,
                "audio_tokens": self.output.audio_tokens,
                "image_tokens": self.output.image_tokens,
            },
            "cost_details": {
                # Only a BYOK generation states what the provider billed (§3.1).
                "upstream_inference_cost": usd(self.upstream_cost) if self.byok else None,
                "upstream_inference_prompt_cost": usd(self.prompt.cost(self.prices)),
                "upstream_inference_completions_cost": usd(self.output.cost(self.prices)),
            },
        }
        if self.prompt.searches:
            usage["server_tool_use_details"] = {"web_search_requests": self.prompt.searches}
        return usage

    def describe(self) -> JSONObject:
        """The `GET /generation` record (§3.3)."""
        return {
            "id": self.id,
            "upstream_id": None,
            "total_cost": usd(self.total_cost),
            "usage": usd(self.total_cost),
            "cache_discount": None,
            # Only BYOK calls report an upstream cost (§3.1).
            "upstream_inference_cost": usd(self.upstream_cost) if self.byok else None,
            "is_byok": self.byok,
            "model": self.model,
            "provider_name": self.provider,
            "api_type": self.api_type,
            "streamed": self.streamed,
            "cancelled": self.cancelled,
            "finish_reason": self.finish_reason,
            "native_finish_reason": self.finish_reason,
            "created_at": self.created_at,
            "tokens_prompt": self.prompt_tokens,
            "tokens_completion": self.completion_tokens,
            "native_tokens_prompt": self.prompt_tokens,
            "native_tokens_completion": self.completion_tokens,
            "native_tokens_reasoning": self.output.reasoning_tokens,
            "native_tokens_completion_images": self.output.image_tokens,
            "native_tokens_cached": 0,
            "num_media_prompt": self.prompt.images,
            "num_input_audio_prompt": 1 if self.prompt.audio_tokens else 0,
            "num_search_results": self.prompt.searches * self.prompt.search_results,
            "external_user": self.external_user,
            "http_referer": self.http_referer,
        }


class Ledger:
    """Generations by id; a key's `usage` and the spend totals move only when one is settled."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._generations: dict[str, Generation] = {}
        self._hidden_polls: Counter[str] = Counter()

    def admit(
        self,
        key: FakeKey,
        served: ServedModel,
        *,
        api_type: str,
        streamed: bool,
        prompt: PromptBill,
        external_user: str | None,
        http_referer: str | None,
        prices: ModelPrices | None = None,
        byok_fee_rate: Decimal | None = None,
    ) -> Generation:
        now = self._clock()
        generation = Generation(
            id=new_generation_id(now),
            key=key,
            model=served.id,
            provider=served.provider,
            api_type=api_type,
            streamed=streamed,
            prices=prices or served.prices,
            prompt=prompt,
            created_at=iso_time(now),
            external_user=external_user,
            http_referer=http_referer,
            byok=byok_fee_rate is not None,
            byok_fee_rate=byok_fee_rate or Decimal(0),
        )
        self._generations[generation.id] = generation
        return generation

    def settle(
        self,
        generation: Generation,
        *,
        completion_tokens: int = 0,
        output: OutputBill | None = None,
        finish_reason: str | None,
        cancelled: bool = False,
        cost_override: Decimal | None = None,
    ) -> Decimal:
        """Charge a generation once, to its key and to the totals, and make its record visible.

        ``output`` is what it generated, by kind; ``completion_tokens`` alone means that many of text.
        """
        if generation.settled:
            raise RuntimeError(f"generation {generation.id} is already settled")
        output = output or OutputBill(text_tokens=completion_tokens)
        prices, prompt = generation.prices, generation.prompt
        # Searches and parsing are paid for whatever becomes of the generation (§3.1, Zero Completion Insurance).
        auxiliary = prompt.auxiliary_cost(prices)
        inference = prompt.cost(prices) - auxiliary + output.cost(prices)
        if generation.api_type == "completions" and (
            finish_reason == "error" or (output.completion_tokens == 0 and finish_reason is None)
        ):
            # Zero Completion Insurance (§3.1): no charge for an errored completion, nor for an
            # empty one with no finish reason.
            inference = Decimal(0)
        cost = auxiliary + inference
        if cost_override is not None:
            cost = cost_override
        elif generation.byok:
            # BYOK: the provider bills the user's own key; OpenRouter charges its fee on top.
            generation.upstream_cost = cost
            cost = cost * generation.byok_fee_rate
        generation.output = output
        generation.finish_reason = finish_reason
        generation.cancelled = cancelled
        generation.total_cost = cost
        generation.settled = True
        generation.key.usage += cost
        return cost

    def lookup(self, generation_id: str, hidden_polls: int) -> Generation | None:
        """A settled record, but only after `hidden_polls` lookups of it have answered 404 (§3.3 lag)."""
        generation = self._generations.get(generation_id)
        if generation is None or not generation.settled:
            return None
        if self._hidden_polls[generation_id] < hidden_polls:
            self._hidden_polls[generation_id] += 1
            return None
        return generation

    @property
    def records(self) -> list[Generation]:
        """Settled generations, oldest first."""
        return [generation for generation in self._generations.values() if generation.settled]

    def spend_by_key(self) -> dict[str, Decimal]:
        spend: dict[str, Decimal] = {}
        for generation in self.records:
            secret = generation.key.secret
            spend[secret] = spend.get(secret, Decimal(0)) + generation.billed
        return spend

    def total_spend(self) -> Decimal:
        return sum((generation.billed for generation in self.records), Decimal(0))


def check_affordable(
    key: FakeKey,
    account_remaining: Decimal | None,
    prices: ModelPrices,
    *,
    prompt: PromptBill,
    max_output_tokens: int,
    output_price: Decimal | None = None,
) -> None:
    """OpenRouter's pre-flight check (§8): the worst case must fit the key's headroom and the balance."""
    if key.is_exhausted:
        window = key.limit_reset or "total"
        raise OpenRouterError(
            403, f"Key limit exceeded ({window} limit). Manage it using https://openrouter.ai/settings/keys"
        )
    headrooms: list[tuple[Decimal, str]] = []
    if key.limit_remaining is not None:
        headrooms.append((key.limit_remaining, _KEY_LIMIT_HINT))
    if account_remaining is not None:
        headrooms.append((account_remaining, _CREDITS_HINT))
    if not headrooms:
        return
    headroom, hint = min(headrooms, key=lambda pair: pair[0])
    per_token = prices.completion if output_price is None else output_price
    prompt_cost = prompt.cost(prices)
    if prompt_cost + max_output_tokens * per_token <= headroom:
        return
    left_for_completion = headroom - prompt_cost
    affordable = 0
    if per_token > 0 and left_for_completion > 0:
        affordable = int(left_for_completion / per_token)
    raise OpenRouterError(
        402,
        "This request requires more credits, or fewer max_tokens. "
        f"You requested up to {max_output_tokens} tokens, but can only afford {affordable}. "
        f"To increase, visit {hint}",
    )
