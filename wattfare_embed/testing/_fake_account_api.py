"""The fake's account endpoints: the calling key (`/key`), key management (`/keys`), `/generation` records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._fake_keys import LIMIT_RESETS, FakeKey
from ._fake_wire import OpenRouterError, iso_time, json_object, parse_usd

if TYPE_CHECKING:
    from .fake_openrouter import FakeOpenRouter

# "the most recent 100" (§2.2): the page size of GET /keys.
_KEYS_PAGE_SIZE = 100


def account_routes(fake: FakeOpenRouter) -> list[Route]:
    keys = fake.keys

    async def current_key(request: Request) -> Response:
        key = keys.caller(request.headers.get("authorization"))
        return JSONResponse({"data": key.describe_current()})

    async def generation(request: Request) -> Response:
        keys.caller(request.headers.get("authorization"))
        generation_id = request.query_params.get("id")
        if not generation_id:
            raise OpenRouterError(400, "id is required")
        record = fake.ledger.lookup(generation_id, fake.generation_404_polls)
        if record is None:
            raise OpenRouterError(404, f"Generation {generation_id} not found")
        return JSONResponse({"data": record.describe()})

    async def list_keys(request: Request) -> Response:
        keys.require_management(request.headers.get("authorization"))
        include_disabled = request.query_params.get("include_disabled", "false").lower() == "true"
        offset = _offset(request.query_params.get("offset"))
        listed = keys.managed(include_disabled=include_disabled)[offset : offset + _KEYS_PAGE_SIZE]
        return JSONResponse({"data": [key.describe() for key in listed]})

    async def create_key(request: Request) -> Response:
        keys.require_management(request.headers.get("authorization"))
        body = await json_object(request)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise OpenRouterError(400, "name is required")
        key = keys.create(
            name=name,
            limit=parse_usd(body.get("limit"), "limit"),
            limit_reset=_limit_reset(body.get("limit_reset")),
        )
        key.include_byok_in_limit = body.get("include_byok_in_limit") is True
        # The plaintext key is returned here and never again (§2.2).
        return JSONResponse({"data": key.describe(), "key": key.secret}, status_code=201)

    async def get_key(request: Request) -> Response:
        keys.require_management(request.headers.get("authorization"))
        return JSONResponse({"data": _managed_key(fake, request).describe()})

    async def update_key(request: Request) -> Response:
        keys.require_management(request.headers.get("authorization"))
        key = _managed_key(fake, request)
        body = await json_object(request)
        if "name" in body:
            if not isinstance(body["name"], str) or not body["name"]:
                raise OpenRouterError(400, "name must be a non-empty string")
            key.name = body["name"]
        if "disabled" in body:
            if not isinstance(body["disabled"], bool):
                raise OpenRouterError(400, "disabled must be a boolean")
            key.disabled = body["disabled"]
        if "limit" in body:
            # Changing the limit leaves usage alone (§2.2).
            key.limit = parse_usd(body["limit"], "limit")
        if "limit_reset" in body:
            key.limit_reset = _limit_reset(body["limit_reset"])
        if "include_byok_in_limit" in body:
            key.include_byok_in_limit = body["include_byok_in_limit"] is True
        key.updated_at = iso_time(fake.clock())
        return JSONResponse({"data": key.describe()})

    async def delete_key(request: Request) -> Response:
        keys.require_management(request.headers.get("authorization"))
        keys.revoke(_managed_key(fake, request).secret)
        return JSONResponse({"deleted": True})

    return [
        Route("/api/v1/key", current_key, methods=["GET"]),
        Route("/api/v1/generation", generation, methods=["GET"]),
        Route("/api/v1/keys", list_keys, methods=["GET"]),
        Route("/api/v1/keys", create_key, methods=["POST"]),
        Route("/api/v1/keys/{hash}", get_key, methods=["GET"]),
        Route("/api/v1/keys/{hash}", update_key, methods=["PATCH"]),
        Route("/api/v1/keys/{hash}", delete_key, methods=["DELETE"]),
    ]


def _managed_key(fake: FakeOpenRouter, request: Request) -> FakeKey:
    key_hash = request.path_params["hash"]
    key = fake.keys.managed_by_hash(key_hash)
    if key is None:
        raise OpenRouterError(404, f"Key {key_hash} not found")
    return key


def _limit_reset(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value in LIMIT_RESETS):
        return value
    raise OpenRouterError(400, f"limit_reset must be one of {sorted(LIMIT_RESETS)} or null")


def _offset(raw: str | None) -> int:
    if raw is None:
        return 0
    if not raw.isdigit():
        raise OpenRouterError(400, "offset must be a non-negative integer")
    return int(raw)
