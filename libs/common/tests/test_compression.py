"""Compressed updates: 8-bit stochastic quantization and top-k with error feedback."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from fedbus.compression import (
    CompressionError,
    TopKCompressor,
    decode_quantized8,
    decode_topk,
    encode_quantized8,
)
from fedbus.compression._format import header, tensor_header

Decoder = Callable[..., dict[str, npt.NDArray[np.float32]]]


W4 = {"w": (4,)}
W500 = {"w": (500,)}


def shapes_of(update: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {n: a.shape for n, a in update.items()}


def header_bytes(name: str, ndim: int) -> int:
    return 2 + len(name.encode()) + 1 + 4 * ndim


def test_quantized8_costs_one_byte_per_value_plus_its_scale() -> None:
    update = {
        "conv.weight": np.ones((8, 3, 3, 3), np.float32),
        "fc.bias": np.arange(10, dtype=np.float32),
    }

    data = encode_quantized8(update, rng=np.random.default_rng(0))

    expected = 8 + sum(header_bytes(n, a.ndim) + 8 + a.size for n, a in update.items())
    assert len(data) == expected
    decoded = decode_quantized8(data, shapes=shapes_of(update))
    assert {n: (a.shape, a.dtype) for n, a in decoded.items()} == {
        n: (a.shape, np.dtype(np.float32)) for n, a in update.items()
    }
    np.testing.assert_array_equal(decoded["conv.weight"], update["conv.weight"])  # constant


def test_quantized8_is_within_one_step_and_unbiased() -> None:
    values = np.random.default_rng(1).normal(0, 0.01, 500).astype(np.float32)
    step = (values.max() - values.min()) / 255
    draws = 3000

    decoded = np.stack(
        [
            decode_quantized8(
                encode_quantized8({"w": values}, rng=np.random.default_rng(s)), shapes=W500
            )["w"]
            for s in range(draws)
        ]
    )

    assert np.abs(decoded - values).max() <= step * 1.0001
    # each draw errs by at most one step with mean 0, so its sd is <= step/2:
    # the mean of 3,000 draws is within 6 sd of the value for all 500 coordinates
    assert np.abs(decoded.mean(axis=0) - values).max() <= 6 * (step / 2) / np.sqrt(draws)


def test_top_k_sends_the_largest_and_costs_eight_bytes_per_kept_value() -> None:
    update = {"w": np.array([0.1, -5.0, 0.2, 3.0, -0.05, 0.0, 1.0, -0.3, 0.4, 0.01], np.float32)}

    data = TopKCompressor(fraction=0.3).encode(update)

    assert len(data) == 8 + header_bytes("w", 1) + 4 + 3 * 8
    expected = np.zeros(10, np.float32)
    expected[[1, 3, 6]] = [-5.0, 3.0, 1.0]
    np.testing.assert_array_equal(decode_topk(data, shapes={"w": (10,)})["w"], expected)


def test_error_feedback_sends_everything_eventually() -> None:
    gradient = np.random.default_rng(2).normal(0, 1, 1000).astype(np.float32)
    with_feedback, rounds = TopKCompressor(fraction=0.05), 200

    shapes = {"w": gradient.shape}
    sent = sum(
        decode_topk(with_feedback.encode({"w": gradient}), shapes=shapes)["w"]
        for _ in range(rounds)
    )
    without = decode_topk(TopKCompressor(fraction=0.05).encode({"w": gradient}), shapes=shapes)["w"]

    # sent + residual is exactly what was handed in: nothing is lost, only delayed
    np.testing.assert_allclose(
        sent + with_feedback.state()["w"], rounds * gradient, rtol=1e-4, atol=1e-3
    )
    error_with = np.linalg.norm(sent / rounds - gradient) / np.linalg.norm(gradient)
    error_without = np.linalg.norm(without - gradient) / np.linalg.norm(gradient)
    assert error_with < 0.05 < 0.5 < error_without


def test_the_residual_survives_a_restart() -> None:
    first = TopKCompressor(fraction=0.5)
    first.encode({"w": np.array([1.0, 2.0, 3.0, 4.0], np.float32)})

    second = TopKCompressor(fraction=0.5)
    second.load_state(first.state())

    out = decode_topk(second.encode({"w": np.zeros(4, np.float32)}), shapes=W4)["w"]
    np.testing.assert_array_equal(out, [1.0, 2.0, 0.0, 0.0])


@pytest.mark.parametrize("encode", ["q8", "topk"])
def test_bad_input_and_bad_bytes_are_refused(encode: str) -> None:
    good = {"w": np.ones(4, np.float32)}
    if encode == "q8":
        data, decode = encode_quantized8(good, rng=np.random.default_rng()), decode_quantized8
        with pytest.raises(CompressionError, match="'w' holds NaN"):
            encode_quantized8({"w": np.array([np.nan])}, rng=np.random.default_rng())
    else:
        data, decode = TopKCompressor(fraction=0.5).encode(good), decode_topk
        with pytest.raises(CompressionError, match="'w' holds NaN"):
            TopKCompressor(fraction=0.5).encode({"w": np.array([np.inf])})

    with pytest.raises(CompressionError, match="truncated"):
        decode(data[:-1], shapes=W4)
    with pytest.raises(CompressionError, match="1 unexpected bytes"):
        decode(data + b"\0", shapes=W4)
    with pytest.raises(CompressionError, match="not a FB"):
        decode(b"XXXX" + data[4:], shapes=W4)


def test_top_k_refuses_out_of_range_indices_and_fractions() -> None:
    data = bytearray(TopKCompressor(fraction=0.5).encode({"w": np.ones(4, np.float32)}))
    data[-16:-12] = (7).to_bytes(4, "little")  # the first index, now past the end

    with pytest.raises(CompressionError, match="index out of range"):
        decode_topk(bytes(data), shapes=W4)
    with pytest.raises(CompressionError, match="fraction must be in"):
        TopKCompressor(fraction=0.0)


def topk_record(name: str, shape: tuple[int, ...], index: list[int], values: list[float]) -> bytes:
    k = len(index)
    return tensor_header(name, shape) + struct.pack(f"<I{k}I{k}f", k, *index, *values)


def q8_record(name: str, shape: tuple[int, ...], low: float, step: float) -> bytes:
    size = int(np.prod(shape))
    return tensor_header(name, shape) + struct.pack("<ff", low, step) + bytes(size)


def test_a_header_claiming_a_huge_tensor_is_refused_before_allocating() -> None:
    # 24 bytes that claim a (65536, 16384) float32 tensor: 4.3 GB if believed
    bomb = header(b"FBTK", 1) + topk_record("w", (1 << 16, 1 << 14), [], [])
    assert len(bomb) == 24

    with pytest.raises(CompressionError, match=r"'w' has shape \(65536, 16384\), expected \(4,\)"):
        decode_topk(bomb, shapes=W4)
    q8 = header(b"FBQ8", 1) + tensor_header("w", (1 << 16, 1 << 14)) + struct.pack("<ff", 0, 1)
    with pytest.raises(CompressionError, match="has shape"):
        decode_quantized8(q8, shapes=W4)


@pytest.mark.parametrize(
    ("decode", "record"),
    [
        (decode_topk, lambda name: topk_record(name, (4,), [0], [1.0])),
        (decode_quantized8, lambda name: q8_record(name, (4,), 0.0, 1.0)),
    ],
    ids=["topk", "q8"],
)
def test_tensors_outside_the_layout_repeated_or_missing_are_refused(
    decode: Decoder, record: Callable[[str], bytes]
) -> None:
    magic = b"FBTK" if decode is decode_topk else b"FBQ8"
    two = {"w": (4,), "b": (4,)}

    with pytest.raises(CompressionError, match="'w' appears twice"):
        decode(header(magic, 2) + record("w") + record("w"), shapes=two)
    with pytest.raises(CompressionError, match="'x' is not in the model"):
        decode(header(magic, 1) + record("x"), shapes=W4)
    with pytest.raises(CompressionError, match="holds 1 tensors, the model has 2"):
        decode(header(magic, 1) + record("w"), shapes=two)
    assert set(decode(header(magic, 2) + record("b") + record("w"), shapes=two)) == {"w", "b"}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_in_the_bytes_are_refused(bad: float) -> None:
    topk = header(b"FBTK", 1) + topk_record("w", (4,), [0, 2], [1.0, bad])
    with pytest.raises(CompressionError, match="'w' holds NaN or infinite values"):
        decode_topk(topk, shapes=W4)
    for low, step in ((bad, 1.0), (0.0, bad)):
        q8 = header(b"FBQ8", 1) + q8_record("w", (4,), low, step)
        with pytest.raises(CompressionError, match="must be finite, step positive"):
            decode_quantized8(q8, shapes=W4)


def test_decoded_values_beyond_float32_and_bad_steps_and_indices_are_refused() -> None:
    # finite minimum and step whose top level overflows float32
    levels = tensor_header("w", (4,)) + struct.pack("<ff", 3e38, 3e36) + bytes([0, 0, 0, 255])
    with pytest.raises(CompressionError, match="decodes to values beyond float32"):
        decode_quantized8(header(b"FBQ8", 1) + levels, shapes=W4)
    with pytest.raises(CompressionError, match="step positive"):
        decode_quantized8(header(b"FBQ8", 1) + q8_record("w", (4,), 0.0, -1.0), shapes=W4)
    for index in ([2, 2], [3, 1]):
        data = header(b"FBTK", 1) + topk_record("w", (4,), index, [1.0, 2.0])
        with pytest.raises(CompressionError, match="indices repeated or out of order"):
            decode_topk(data, shapes=W4)
