"""The aggregator's settings: defaults that differ from the shared ones."""

from __future__ import annotations

import pytest

from fedbus.bus.consumer import consumer_options
from fedbus_aggregator.settings import AggregatorSettings


def test_the_aggregator_long_polls_briefly_for_bursts_of_updates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FEDBUS_KAFKA_FETCH_MAX_WAIT_MS", raising=False)
    settings = AggregatorSettings(_env_file=None)  # type: ignore[call-arg]
    assert consumer_options(settings, group_id="aggregator")["fetch_max_wait_ms"] == 50


def test_the_fetch_wait_can_be_set_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDBUS_KAFKA_FETCH_MAX_WAIT_MS", "200")
    assert AggregatorSettings(_env_file=None).kafka_fetch_max_wait_ms == 200  # type: ignore[call-arg]
