"""A predict request's inputs: accepted as float32 rows, or refused saying what was expected."""

from __future__ import annotations

import numpy as np
import pytest

from fedbus_gateway.predict import InputError, to_batch

SHAPE = (1, 2, 2)


def refused(raw: object, max_rows: int = 8) -> InputError:
    with pytest.raises(InputError) as info:
        to_batch(raw, SHAPE, max_rows=max_rows)
    return info.value


def test_rows_in_the_feature_shape_or_flat_become_float32_rows() -> None:
    shaped = to_batch([[[[0, 1], [2, 3]]]], SHAPE, max_rows=8)
    flat = to_batch([[0, 1, 2, 3.5], [4, 5, 6, 7]], SHAPE, max_rows=8)

    assert shaped.dtype == np.float32
    assert shaped.shape == (1, 1, 2, 2)
    assert flat.shape == (2, 1, 2, 2)
    assert flat[0, 0, 1, 1] == 3.5


def test_a_wrong_shape_says_the_expected_one_and_the_one_sent() -> None:
    problem = refused([[1, 2, 3]])

    assert problem.status == 422
    assert problem.message == (
        "inputs: expected rows of shape [1, 2, 2] (or 4 numbers each, flat), got rows of shape [3]"
    )


def test_rows_of_different_lengths_are_422() -> None:
    problem = refused([[1, 2, 3, 4], [1, 2]])

    assert problem.status == 422
    assert "not all the same shape" in problem.message
    assert "[1, 2, 2]" in problem.message


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        ([["1", "2", "3", "4"]], "text"),
        ([[True, False, True, False]], "booleans"),
        ([[1, None, 3, 4]], "null"),
        ([[{"a": 1}, 2, 3, 4]], "null, nested objects"),
    ],
)
def test_anything_but_numbers_is_422_naming_what_was_sent(raw: object, what: str) -> None:
    problem = refused(raw)

    assert problem.status == 422
    assert problem.message.startswith(f"inputs: expected numbers, got {what}")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e39])
def test_a_value_that_is_not_a_finite_float32_is_422_with_its_place(bad: float) -> None:
    problem = refused([[0, 0, 0, 0], [0, 0, bad, 0]])

    assert problem.status == 422
    assert problem.message.startswith("inputs: row 1 has a value that is not a finite float32")
    assert problem.message.endswith("at index [0, 1, 0]")


def test_too_many_rows_is_413_naming_the_limit() -> None:
    problem = refused([[0, 0, 0, 0]] * 9, max_rows=8)

    assert problem.status == 413
    assert problem.message == "inputs: 9 rows; at most 8 rows per request, send more requests"


@pytest.mark.parametrize("raw", [[], {"rows": [1]}, "1,2,3,4", 7])
def test_anything_but_a_non_empty_list_is_422(raw: object) -> None:
    problem = refused(raw)

    assert problem.status == 422
    assert problem.message.startswith("inputs: expected a non-empty list of rows of shape")
