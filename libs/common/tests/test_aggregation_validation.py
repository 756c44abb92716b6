"""Update validation against the global model."""

from __future__ import annotations

import numpy as np
import pytest

from fedbus.aggregation import ClientUpdate, validate_update

GLOBAL = {"w": np.zeros((2, 2), np.float32), "b": np.zeros(2, np.float32)}


def update(**overrides: object) -> ClientUpdate:
    delta = {"w": np.full((2, 2), 0.5, np.float32), "b": np.zeros(2, np.float32)}
    fields: dict[str, object] = {"client_id": "a", "delta": delta, "num_samples": 10}
    fields.update(overrides)
    return ClientUpdate(**fields)  # type: ignore[arg-type]


def test_valid_update_is_accepted_with_its_norm() -> None:
    result = validate_update(update(), global_model=GLOBAL, max_norm=1.0)

    assert result.ok
    assert result.reason is None
    assert result.norm == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("overrides", "max_norm", "expected"),
    [
        ({"num_samples": 0}, None, "num_samples"),
        ({"client_id": ""}, None, "client id"),
        ({"delta": {"w": np.zeros((2, 2), np.float32)}}, None, "missing ['b']"),
        ({"delta": {**GLOBAL, "extra": np.zeros(1, np.float32)}}, None, "unexpected ['extra']"),
        ({"delta": {**GLOBAL, "w": np.zeros((4,), np.float32)}}, None, "shape"),
        ({"delta": {**GLOBAL, "w": np.zeros((2, 2), np.float64)}}, None, "dtype"),
        ({"delta": {**GLOBAL, "b": np.array([np.nan, 0], np.float32)}}, None, "NaN"),
        ({"delta": {**GLOBAL, "b": np.array([np.inf, 0], np.float32)}}, None, "infinite"),
        ({}, 0.99, "exceeds bound"),
    ],
)
def test_bad_updates_are_rejected_with_a_reason(
    overrides: dict[str, object], max_norm: float | None, expected: str
) -> None:
    result = validate_update(update(**overrides), global_model=GLOBAL, max_norm=max_norm)

    assert not result
    assert result.reason is not None
    assert expected in result.reason
