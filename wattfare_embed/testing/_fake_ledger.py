"""What the fake charged: one record per generation, the pre-flight credit check, and spend totals."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from ._fake_catalog import ModelPrices, ServedModel
from ._fake_keys import FakeKey
from ._fake_wire import JSONObject, OpenRouterError, iso_time, new_generation_id, usd

_KEY_LIMIT_HINT = "https://openrouter.ai/settings/keys and create a key with a higher monthly limit"
_CREDITS_HINT = "https://openrouter.ai/settings/credits and upgrade to a paid account"


@dataclass(eq=False)
class Generation:
    """One generation, from the moment it is admitted until it is settled and charged."""

    id: str
    key: FakeKey
    model: str
    provider: str
    api_type: str
    streamed: bool
    prices: ModelPrices
    prompt_tokens: int
    created_at: str
    external_user: str | None = None
    http_referer: str | None = None
    completion_tokens: int = 0
    finish_reason: str | None = None
    cancelled: bool = False
    total_cost: Decimal = Decimal(0)
    settled: bool = False

    def usage_object(self) -> JSONObject:
        """The in-response `usage` of a chat completion (§3.1)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cost": usd(self.total_cost),
            "is_byok": False,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
            "cost_details": {
                "upstream_inference_cost": None,
                "upstream_inference_prompt_cost": usd(self.prices.cost(self.prompt_tokens, 0)),
                "upstream_inference_completions_cost": usd(self.completion_tokens * self.prices.completion),
            },
        }

    def describe(self) -> JSONObject:
        """The `GET /generation` record (§3.3)."""
        return {
            "id": self.id,
            "upstream_id": None,
            "total_cost": usd(self.total_cost),
            "usage": usd(self.total_cost),
            "cache_discount": None,
            # Only BYOK calls report an upstream cost (§3.1).
            "upstream_inference_cost": None,
            "is_byok": False,
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
            "native_tokens_reasoning": 0,
            "native_tokens_cached": 0,
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
        prompt_tokens: int,
        external_user: str | None,
        http_referer: str | None,
    ) -> Generation:
        now = self._clock()
        generation = Generation(
            id=new_generation_id(now),
            key=key,
            model=served.id,
            provider=served.provider,
            api_type=api_type,
            streamed=streamed,
            prices=served.prices,
            prompt_tokens=prompt_tokens,
            created_at=iso_time(now),
            external_user=external_user,
            http_referer=http_referer,
        )
        self._generations[generation.id] = generation
        return generation

    def settle(
        self,
        generation: Generation,
        *,
        completion_tokens: int,
        finish_reason: str | None,
        cancelled: bool = False,
        cost_override: Decimal | None = None,
    ) -> Decimal:
        """Charge a generation once, to its key and to the totals, and make its record visible."""
        if generation.settled:
            raise RuntimeError(f"generation {generation.id} is already settled")
        if cost_override is not None:
            cost = cost_override
        elif generation.api_type == "completions" and (
            finish_reason == "error" or (completion_tokens == 0 and finish_reason is None)
        ):
            # Zero Completion Insurance (§3.1): no charge for an errored completion, nor for an
            # empty one with no finish reason.
            cost = Decimal(0)
        else:
            cost = generation.prices.cost(generation.prompt_tokens, completion_tokens)
        generation.completion_tokens = completion_tokens
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
            spend[secret] = spend.get(secret, Decimal(0)) + generation.total_cost
        return spend

    def total_spend(self) -> Decimal:
        return sum((generation.total_cost for generation in self.records), Decimal(0))


def check_affordable(
    key: FakeKey,
    account_remaining: Decimal | None,
    prices: ModelPrices,
    *,
    prompt_tokens: int,
    max_output_tokens: int,
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
    if prices.cost(prompt_tokens, max_output_tokens) <= headroom:
        return
    left_for_completion = headroom - prices.cost(prompt_tokens, 0)
    affordable = 0
    if prices.completion > 0 and left_for_completion > 0:
        affordable = int(left_for_completion / prices.completion)
    raise OpenRouterError(
        402,
        "This request requires more credits, or fewer max_tokens. "
        f"You requested up to {max_output_tokens} tokens, but can only afford {affordable}. "
        f"To increase, visit {hint}",
    )
