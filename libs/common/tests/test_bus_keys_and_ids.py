"""Partition choice and envelope ids: the fast paths give what the standard ones give."""

from __future__ import annotations

import re
import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner

from fedbus.bus.consumer import consumer_options
from fedbus.bus.producer import KeyHashCache, producer_options
from fedbus.events import Phase, Progress
from fedbus.settings import FedbusSettings


def test_cached_partitioner_matches_aiokafka_default_for_every_key_and_count() -> None:
    cached, default = KeyHashCache(capacity=50), DefaultPartitioner()
    keys = [f"job-{i}".encode() for i in range(120)] + [b"", b"\xff\x00", "é".encode()]
    for count in (1, 3, 6, 12):
        partitions = list(range(count))
        for key in keys * 2:  # the second pass is served from the cache (and past its capacity)
            assert cached(key, partitions, partitions) == default(key, partitions, partitions)


def test_cached_partitioner_spreads_unkeyed_records_over_available_partitions() -> None:
    cached = KeyHashCache()
    chosen = {cached(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}
    assert chosen == {1, 3}


def test_producer_options_use_the_cached_partitioner() -> None:
    options = producer_options(FedbusSettings(_env_file=None))  # type: ignore[call-arg]
    assert isinstance(options["partitioner"], KeyHashCache)
    assert options["acks"] == "all"
    assert options["enable_idempotence"] is True


def test_created_events_get_distinct_v4_uuids_and_new_traces() -> None:
    events = [
        Progress.create(source="t", job_id="j", phase=Phase.TRAINING, message="m")
        for _ in range(500)
    ]
    ids = [uuid.UUID(e.event_id) for e in events]
    assert len(set(ids)) == 500
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in ids)
    assert all(str(u) == e.event_id for u, e in zip(ids, events, strict=True))
    traces = {e.traceparent.split("-")[1] for e in events}
    assert len(traces) == 500
    assert all(re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", e.traceparent) for e in events)


def test_a_given_traceparent_is_kept() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = Progress.create(
        source="t", job_id="j", phase=Phase.TRAINING, message="m", traceparent=parent
    )
    assert event.traceparent == parent


def test_consumers_long_poll_as_their_service_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDBUS_KAFKA_FETCH_MAX_WAIT_MS", raising=False)
    base = FedbusSettings(_env_file=None)  # type: ignore[call-arg]
    assert consumer_options(base, group_id="g")["fetch_max_wait_ms"] == 500  # Kafka's default
    short = FedbusSettings(_env_file=None, kafka_fetch_max_wait_ms=50)  # type: ignore[call-arg]
    assert consumer_options(short, group_id="g")["fetch_max_wait_ms"] == 50
    with pytest.raises(ValueError, match="kafka_fetch_max_wait_ms"):
        FedbusSettings(_env_file=None, kafka_fetch_max_wait_ms=0)  # type: ignore[call-arg]
