"""The settle comes right after the answer, grouped with the settles pending at that moment: the
client never waits for it, this process's reads do, and every request still ends with exactly one
final ledger row whatever the store does to the group."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from wattfare_embed.grants import grant_token_hash
from wattfare_embed.money import micros_from_usd
from wattfare_embed.store import FinalCharge, NewConnection, Reservation, ReservationRequest, Settled, SqlStore
from wattfare_embed.testing.waiting import poll

from .conftest import Proxied
from .test_grants import chat as grant_chat
from .test_grants import grant_for

GATE_SECONDS = 10.0  # the longest a held settle waits for the test to let it through


class HeldSettles:
    """The store's settles as the proxy calls them (one alone, or a group), counted: each call is
    one transaction. While ``gate`` is shut, the first one waits before it writes anything."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.gate = asyncio.Event()
        self.transactions = 0
        self.groups: list[int] = []
        self.down_for = 0  # the next this many calls fail, as a store that is down
        self.refuse_first_of_next_group = False
        self.refused: set[str] = set()  # each fails once, alone or in a group: an entry the store rejects
        self.written_alone: list[str] = []
        self.real_one = store.settle_reading_spend
        self.real_many = store.settle_many

    async def one(self, ledger_id: str, *args: Any, **kwargs: Any) -> Settled:
        self.transactions += 1
        await asyncio.wait_for(self.gate.wait(), GATE_SECONDS)
        self._fail_if_down()
        if ledger_id in self.refused:
            self.refused.discard(ledger_id)
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        settled = await self.real_one(ledger_id, *args, **kwargs)
        self.written_alone.append(ledger_id)
        return settled

    def _fail_if_down(self) -> None:
        if self.down_for > 0:
            self.down_for -= 1
            raise OSError("database is locked")

    async def many(self, charges: Sequence[FinalCharge]) -> list[Settled]:
        self.transactions += 1
        self.groups.append(len(charges))
        await asyncio.wait_for(self.gate.wait(), GATE_SECONDS)
        self._fail_if_down()
        if self.refuse_first_of_next_group:
            self.refuse_first_of_next_group = False
            self.refused.add(charges[0].ledger_id)
        if any(charge.ledger_id in self.refused for charge in charges):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return await self.real_many(charges)


@contextmanager
def held_settles(proxy: Proxied) -> Iterator[HeldSettles]:
    store = proxy.wf.store
    assert isinstance(store, SqlStore)
    held = HeldSettles(store)
    store.settle_reading_spend = held.one  # type: ignore[method-assign]
    store.settle_many = held.many  # type: ignore[method-assign]
    try:
        yield held
    finally:
        held.gate.set()
        store.settle_reading_spend = held.real_one  # type: ignore[method-assign]
        store.settle_many = held.real_many  # type: ignore[method-assign]


async def answered_once_the_settle_is_written(settles: HeldSettles, request: Awaitable[Any]) -> Any:
    """``request``, sent while ``settles`` are held: still waiting after a while (not refused), and
    answered once they are let through."""
    pending = asyncio.ensure_future(request)
    await asyncio.sleep(0.2)
    assert not pending.done(), "waiting for the settle, not refused"
    settles.gate.set()
    return await pending


def billed(proxy: Proxied) -> int:
    return sum(micros_from_usd(record.total_cost) for record in proxy.fake.ledger.records)


async def test_the_answer_arrives_before_its_settle_commits_yet_a_status_read_after_it_sees_the_charge(
    proxy: Proxied, user_id: str
) -> None:
    await proxy.connect(user_id)
    app_id = proxy.keys.app_id
    with held_settles(proxy) as settles:
        answer = await proxy.chat(user_id, max_tokens=20)

        assert answer.status_code == 200  # in the client's hands while its settle is held
        [row] = await proxy.wf.store.ledger(app_id, user_id)  # the store itself, not this process's reads
        assert row.state == "reserved"
        reading = asyncio.ensure_future(proxy.wf.status(user_id))
        done, _ = await asyncio.wait([reading], timeout=0.2)
        assert not done, "the status read waits for the settle of an answer already sent"
        settles.gate.set()
        status = await asyncio.wait_for(reading, GATE_SECONDS)

    assert status.spent == billed(proxy) > 0
    assert status.held == 0
    [row] = await proxy.ledger(user_id)
    assert (row.state, row.cost) == ("settled", status.spent)


async def test_concurrent_requests_settle_in_fewer_transactions_each_with_exactly_one_final_row(
    proxy: Proxied, user_id: str
) -> None:
    requests = 12
    await proxy.connect(user_id)
    with held_settles(proxy) as settles:
        # Every answer arrives while the first settle is still held: none waits for a settle.
        answers = await asyncio.gather(*(proxy.chat(user_id, max_tokens=20) for _ in range(requests)))
        assert [answer.status_code for answer in answers] == [200] * requests
        settles.gate.set()
        rows = await proxy.settled(user_id, requests)

    assert 1 <= settles.transactions < requests
    assert max(settles.groups) > 1
    assert len({row.id for row in rows}) == requests
    assert all((row.state, row.cost_source) == ("settled", "reported") for row in rows)
    record = await proxy.connection(user_id)
    assert record.spent == sum(row.cost or 0 for row in rows) == billed(proxy)
    assert record.reserved == 0


async def test_while_the_store_is_down_a_group_is_journaled_entry_by_entry_and_each_applies_once(
    proxy: Proxied, user_id: str
) -> None:
    requests = 8
    await proxy.connect(user_id)
    with held_settles(proxy) as settles:
        settles.down_for = 3  # the group, then the first two settles tried alone
        answers = await asyncio.gather(*(proxy.chat(user_id, max_tokens=20) for _ in range(requests)))
        assert [answer.status_code for answer in answers] == [200] * requests  # paid for: answered
        settles.gate.set()
        await proxy.wf.caught_up(user_id)
        assert settles.down_for == 0, "a group was written, and failed, then two alone"
        assert max(settles.groups) > 1
        rows = await proxy.settled(user_id, requests)

    assert all((row.state, row.cost_source) == ("settled", "reported") for row in rows)
    record = await proxy.connection(user_id)
    assert record.spent == sum(row.cost or 0 for row in rows) == billed(proxy)

    async def journal_applied() -> bool | None:
        return True if proxy.wf.proxy.journal.pending == 0 else None

    await poll(journal_applied, what="the journal applied")
    assert (await proxy.connection(user_id)).spent == billed(proxy), "applied once, never twice"


async def test_an_entry_the_store_rejects_does_not_hold_up_the_rest_of_its_group(proxy: Proxied, user_id: str) -> None:
    requests = 8
    await proxy.connect(user_id)
    with held_settles(proxy) as settles:
        settles.refuse_first_of_next_group = True
        answers = await asyncio.gather(*(proxy.chat(user_id, max_tokens=20) for _ in range(requests)))
        assert [answer.status_code for answer in answers] == [200] * requests
        settles.gate.set()
        await proxy.wf.caught_up(user_id)
        # The rest of the rejected entry's group went through one by one, at once, not to the journal.
        [group, *_] = settles.groups
        assert len(settles.written_alone) >= group - 1
        assert not settles.refused  # it failed once, alone: its retry from the journal goes through

    async def journal_applied() -> bool | None:
        return True if proxy.wf.proxy.journal.pending == 0 else None

    await poll(journal_applied, what="the journal applied the rejected entry")
    rows_after = await proxy.settled(user_id, requests)
    assert all(row.state == "settled" for row in rows_after)
    assert (await proxy.connection(user_id)).spent == billed(proxy), "each charge once"


async def test_a_request_refused_only_for_a_hold_whose_answer_was_sent_waits_for_its_settle(
    proxy: Proxied, user_id: str
) -> None:
    await proxy.connect(user_id)
    with held_settles(proxy) as settles:
        first = await proxy.chat(user_id, max_tokens=20)
        assert first.status_code == 200
        record = await proxy.wf.store.get_connection(proxy.keys.app_id, user_id, int(time.time()))
        assert record is not None and record.reserved > 0  # its hold still counted: settle held
        # A cap just above that hold: the next request fits only once the hold has become its charge.
        await proxy.wf.store.set_cap(proxy.keys.app_id, user_id, record.reserved + 10, int(time.time()))
        answer = await answered_once_the_settle_is_written(settles, proxy.chat(user_id, max_tokens=20))
    assert answer.status_code == 200, answer.text


@asynccontextmanager
async def _store(database_url: str) -> AsyncIterator[SqlStore]:
    store = SqlStore(database_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_a_group_with_an_entry_already_final_settles_the_others(database_url: str, user_id: str) -> None:
    now = int(time.time())
    async with _store(database_url) as store:
        await store.save_connection(NewConnection("app", user_id, "dev", 1_000_000, "v1.sealed"), now)
        holds = []
        for _ in range(3):
            held = await store.reserve(ReservationRequest("app", user_id, 100_000, 1_000, "chat", "m", 3600), now)
            assert isinstance(held, Reservation)
            holds.append(held.ledger_id)
        first, second, third = holds
        assert await store.settle(second, 5_000, "reported", now)  # final before the group

        results = await store.settle_many(
            [
                FinalCharge(first, 1_000, "reported", now),
                FinalCharge(second, 7_000, "reported", now),
                FinalCharge("req_no_such_row", 9_000, "reported", now),
                FinalCharge(third, 3_000, "estimated", now, "gen-3", True, 10, 20),
            ]
        )

        assert [settled.final for settled in results] == [True, False, False, True]
        spend = results[3].spend
        assert spend is not None and spend.spent == 1_000 + 5_000 + 3_000  # each its own counter, in order
        record = await store.get_connection("app", user_id, now)
        assert record is not None and (record.spent, record.reserved) == (9_000, 0)
        rows = {row.id: row for row in await store.ledger("app", user_id)}
        assert [rows[ledger_id].cost for ledger_id in holds] == [1_000, 5_000, 3_000]
        assert (rows[third].generation_id, rows[third].reconcile) == ("gen-3", True)


async def test_a_grant_request_refused_only_for_a_hold_whose_answer_was_sent_waits_for_its_settle(
    proxy: Proxied,
) -> None:
    issued, _key = await grant_for(proxy, requests=3, max_usd="0.004")
    with held_settles(proxy) as settles:
        # Asking for more output than the grant pays for, the first request holds all of it.
        first = await grant_chat(proxy, issued.token, max_tokens=8000)
        assert first.status_code == 200, first.text
        record = await proxy.wf.store.find_grant(proxy.keys.app_id, grant_token_hash(issued.token))
        assert record is not None and record.reserved == record.max_cost  # its settle held: all of it held
        answer = await answered_once_the_settle_is_written(settles, grant_chat(proxy, issued.token, max_tokens=20))
    assert answer.status_code == 200, answer.text
    record = await proxy.wf.store.find_grant(proxy.keys.app_id, grant_token_hash(issued.token))
    assert record is not None and record.requests_used == 2  # the refused first try took no request


async def test_lowering_the_cap_right_after_an_answer_returns_a_spend_with_its_charge(
    proxy: Proxied, user_id: str
) -> None:
    await proxy.connect(user_id)
    with held_settles(proxy) as settles:
        answer = await proxy.chat(user_id, max_tokens=20)
        assert answer.status_code == 200
        lowering = asyncio.ensure_future(proxy.wf.lower_cap(user_id, micros_from_usd("0.5")))
        done, _ = await asyncio.wait([lowering], timeout=0.2)
        assert not done, "lowering the cap waits for the settle of an answer already sent"
        settles.gate.set()
        status = await asyncio.wait_for(lowering, GATE_SECONDS)
    assert status is not None
    assert (status.monthly_cap, status.spent, status.held) == (micros_from_usd("0.5"), billed(proxy), 0)
