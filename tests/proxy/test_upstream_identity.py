"""An opened funding credential is kept for its connection's calls, and no longer than it may be."""

from __future__ import annotations

import time
from dataclasses import replace

from wattfare_embed._upstream_identity import UpstreamIdentities
from wattfare_embed.store import ConnectionRecord, ConnectionState

RECORD = ConnectionRecord(
    id="conn_1",
    app_id="app_1",
    app_user_id="alice",
    status=ConnectionState.ACTIVE,
    authority="dev",
    monthly_cap=1_000_000,
    period="2026-12",
    spent=0,
    reserved=0,
    grant_id=None,
    upstream_url=None,
    hard_limit=None,
    created_at=0,
    updated_at=0,
    sealed_credential="v1.sealed-first",
)


class Opener:
    """Stands in for the AES-GCM box: counts the opens, answers what the sealed text names."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def __call__(self, record: ConnectionRecord) -> str | None:
        assert record.sealed_credential is not None
        self.opened.append(record.sealed_credential)
        return None if "unreadable" in record.sealed_credential else "sk-or-" + record.sealed_credential


def identities(opener: Opener, ttl_seconds: float = 60.0, capacity: int = 100) -> UpstreamIdentities:
    return UpstreamIdentities(
        opener,
        b"k" * 32,
        lambda credential: {"authorization": f"Bearer {credential}"},
        ttl_seconds=ttl_seconds,
        capacity=capacity,
    )


def test_a_connections_credential_is_opened_once_for_all_its_calls() -> None:
    opener = Opener()
    kept = identities(opener)

    first, second = kept.of(RECORD), kept.of(RECORD)

    assert first is second and first is not None
    assert first.headers == {"authorization": "Bearer sk-or-v1.sealed-first"}
    assert opener.opened == ["v1.sealed-first"]


def test_a_new_sealed_credential_is_opened_afresh() -> None:
    opener = Opener()
    kept = identities(opener)
    kept.of(RECORD)

    renewed = kept.of(replace(RECORD, sealed_credential="v1.sealed-second"))

    assert renewed is not None and renewed.headers["authorization"] == "Bearer sk-or-v1.sealed-second"
    assert opener.opened == ["v1.sealed-first", "v1.sealed-second"]


def test_the_pseudonym_is_per_user_and_never_the_id() -> None:
    kept = identities(Opener())

    alice = kept.of(RECORD)
    bob = kept.of(replace(RECORD, id="conn_2", app_user_id="bob"))

    assert alice is not None and bob is not None
    assert alice.pseudonym != bob.pseudonym and "alice" not in alice.pseudonym and len(alice.pseudonym) == 32


def test_an_unreadable_credential_is_none_and_not_kept() -> None:
    opener = Opener()
    kept = identities(opener)
    unreadable = replace(RECORD, sealed_credential="v1.unreadable")

    assert kept.of(unreadable) is None
    assert kept.of(unreadable) is None
    assert len(kept) == 0 and opener.opened == ["v1.unreadable", "v1.unreadable"]


def test_a_dropped_connection_forgets_its_credential() -> None:
    opener = Opener()
    kept = identities(opener)
    kept.of(RECORD)

    kept.drop(RECORD.id)

    assert len(kept) == 0
    kept.of(RECORD)
    assert opener.opened == ["v1.sealed-first", "v1.sealed-first"]


def test_a_call_that_read_its_connection_before_the_drop_opens_it_for_itself_and_never_keeps_it() -> None:
    opener = Opener()
    kept = identities(opener, ttl_seconds=0.05)
    kept.drop(RECORD.id)  # funding_invalid, marked while this call's reservation was already read

    late = kept.of(RECORD)
    again = kept.of(RECORD)

    assert late is not None and again is not None and late is not again
    assert len(kept) == 0, "the dead credential is not put back"
    assert opener.opened == ["v1.sealed-first", "v1.sealed-first"]
    time.sleep(0.06)
    kept.of(RECORD)
    assert len(kept) == 1  # the drop's time is up: kept again as any other


def test_after_a_drop_a_reconnect_with_a_new_credential_is_kept_at_once() -> None:
    kept = identities(Opener())
    kept.of(RECORD)
    kept.drop(RECORD.id)

    kept.of(replace(RECORD, sealed_credential="v1.sealed-second"))

    assert len(kept) == 1


def test_a_credential_is_forgotten_once_its_time_is_up_even_without_calls() -> None:
    opener = Opener()
    kept = identities(opener, ttl_seconds=0.05)
    kept.of(RECORD)

    time.sleep(0.06)
    kept.expire()

    assert len(kept) == 0


def test_a_credential_past_its_time_is_opened_again_by_the_next_call() -> None:
    opener = Opener()
    kept = identities(opener, ttl_seconds=0.05)
    kept.of(RECORD)

    time.sleep(0.06)
    kept.of(RECORD)

    assert opener.opened == ["v1.sealed-first", "v1.sealed-first"]


def test_beyond_capacity_the_oldest_connection_is_forgotten() -> None:
    kept = identities(Opener(), capacity=2)

    for number in range(3):
        kept.of(replace(RECORD, id=f"conn_{number}"))

    assert len(kept) == 2
