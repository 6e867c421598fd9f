"""``GET {mount}/api/v1/usage``: the user's own charged requests this month, exact, paged, and nobody else's."""

from __future__ import annotations

from decimal import Decimal

import pytest

from wattfare_embed import AppKeys

from .conftest import Proxied, receipts_of, running_proxy, tokens_written

RECEIPT_FIELDS = {
    "id",
    "createdAt",
    "settledAt",
    "kind",
    "model",
    "tokensIn",
    "tokensOut",
    "costMicros",
    "costUsd",
    "costSource",
}


async def test_receipts_list_each_charged_request_with_its_tokens_and_exact_cost(proxy: Proxied) -> None:
    await proxy.connect("ann")
    answers = []
    for words in ("one", "two two", "three three three"):
        response = await proxy.chat("ann", messages=[{"role": "user", "content": words}])
        assert response.status_code == 200
        answers.append(response.json())

    # Each answer came after its settle, which wrote the counts with the charge: none to wait for.
    rows = (await receipts_of(proxy, "ann"))["data"]
    assert len(rows) == 3
    ledger = {row.id: row for row in await proxy.settled("ann", 3)}
    by_generation = {answer["id"]: answer for answer in answers}
    assert all(set(row) == RECEIPT_FIELDS for row in rows)
    # Newest first (requests within one second in any order of their own).
    assert [row["createdAt"] for row in rows] == sorted((row["createdAt"] for row in rows), reverse=True)
    for row in rows:
        entry = ledger[row["id"]]
        answer = by_generation[entry.generation_id]
        assert row["model"] == entry.model
        assert (row["tokensIn"], row["tokensOut"]) == (
            answer["usage"]["prompt_tokens"],
            answer["usage"]["completion_tokens"],
        )
        assert row["costMicros"] == entry.cost and row["costMicros"] > 0
        assert Decimal(row["costUsd"]) * 10**6 == entry.cost
        assert row["costSource"] == "reported" == entry.cost_source
        assert row["kind"] == "chat"
    page = await receipts_of(proxy, "ann")
    assert page["hasMore"] is False and page["nextCursor"] is None
    assert sum(row["costMicros"] for row in rows) == (await proxy.connection("ann")).spent


async def test_receipts_show_only_the_session_users_own_rows(proxy: Proxied) -> None:
    await proxy.connect("ann")
    await proxy.connect("bob")
    for _ in range(2):
        assert (await proxy.chat("ann")).status_code == 200
    assert (await proxy.chat("bob")).status_code == 200

    ann = {row["id"] for row in await tokens_written(proxy, "ann", 2)}
    bob = {row["id"] for row in await tokens_written(proxy, "bob", 1)}
    assert ann == {row.id for row in await proxy.ledger("ann")}
    assert bob == {row.id for row in await proxy.ledger("bob")}
    assert not ann & bob
    # Nobody's session, and a user who never called, see nothing of theirs.
    assert (await receipts_of(proxy, "carol"))["data"] == []


async def test_pages_follow_the_cursor_without_gaps_or_repeats(keys: AppKeys, sqlite_url: str) -> None:
    async with running_proxy(keys, sqlite_url) as proxy:
        await proxy.connect("ann")
        for _ in range(5):
            assert (await proxy.chat("ann")).status_code == 200
        everything = await tokens_written(proxy, "ann", 5)

        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = await receipts_of(proxy, "ann", **query)
            pages += 1
            seen.extend(row["id"] for row in page["data"])
            cursor = page["nextCursor"]
            assert page["hasMore"] is (cursor is not None)
            if cursor is None:
                break
        assert pages == 3
        assert seen == [row["id"] for row in everything]


async def test_requests_the_upstream_refused_cost_nothing_and_are_not_receipts(keys: AppKeys, sqlite_url: str) -> None:
    async with running_proxy(keys, sqlite_url) as proxy:
        await proxy.connect("ann")
        assert (await proxy.chat("ann")).status_code == 200
        assert (await proxy.chat("ann", model="no-such/model")).status_code >= 400
        rows = await tokens_written(proxy, "ann", 1)
        assert [row["id"] for row in rows] == [row.id for row in await proxy.ledger("ann") if row.state == "settled"]


@pytest.mark.parametrize(
    "query",
    [{"cursor": "garbage"}, {"cursor": "1.req_zz"}, {"limit": "0"}, {"limit": "201"}, {"limit": "ten"}, {"limit": "٣"}],
)
async def test_bad_paging_is_a_typed_400(keys: AppKeys, sqlite_url: str, query: dict[str, str]) -> None:
    async with running_proxy(keys, sqlite_url) as proxy:
        session = await proxy.wf.create_session("ann")
        response = await proxy.http.get(
            "/api/v1/usage", params=query, headers={"authorization": f"Bearer {session.token}"}
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_request"


async def test_receipts_need_the_users_session_token(keys: AppKeys, sqlite_url: str) -> None:
    async with running_proxy(keys, sqlite_url) as proxy:
        for headers in ({}, {"authorization": f"Bearer {keys.secret_key}"}, {"authorization": "Bearer nonsense"}):
            response = await proxy.http.get("/api/v1/usage", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "auth"
            assert keys.secret_key not in response.text


async def test_the_server_side_api_pages_the_same_rows(keys: AppKeys, sqlite_url: str) -> None:
    async with running_proxy(keys, sqlite_url) as proxy:
        await proxy.connect("ann")
        for _ in range(3):
            assert (await proxy.chat("ann")).status_code == 200
        over_http = await tokens_written(proxy, "ann", 3)
        first = await proxy.wf.usage("ann", limit=2)
        assert first.next_cursor is not None
        second = await proxy.wf.usage("ann", cursor=first.next_cursor, limit=2)
        assert second.next_cursor is None
        assert [r.id for r in [*first.receipts, *second.receipts]] == [row["id"] for row in over_http]
