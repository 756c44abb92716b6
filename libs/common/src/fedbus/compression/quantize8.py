"""8-bit stochastic quantization with a per-tensor scale (QSGD-style, unbiased).

Each tensor's values are mapped onto 256 evenly spaced levels between its minimum and
maximum, rounding up with probability equal to the fractional part, so the decoded
value's expectation is the original value (Alistarh et al., 2017, with ``s = 255``
levels over ``[min, max]`` instead of ``[0, |x|]``). One float32 minimum and one float32
step per tensor travel with the bytes: ``d + 8`` bytes for ``d`` values plus the header,
about a quarter of float32.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from fedbus.compression._format import Reader, Shapes, header, tensor_header
from fedbus.compression.errors import CompressionError

__all__ = ["decode_quantized8", "encode_quantized8"]

_MAGIC = b"FBQ8"


def encode_quantized8(arrays: Mapping[str, npt.ArrayLike], *, rng: np.random.Generator) -> bytes:
    """Each tensor as uint8 levels with its float32 minimum and step.

    Raises
    ------
    CompressionError
        If a tensor holds a value that is not finite.
    """
    parts = [header(_MAGIC, len(arrays))]
    for name, array in arrays.items():
        values = np.asarray(array, dtype=np.float32)
        flat = values.ravel().astype(np.float64)
        if not np.isfinite(flat).all():
            raise CompressionError(f"tensor {name!r} holds NaN or infinite values")
        low = np.float32(flat.min()) if flat.size else np.float32(0)
        high = float(flat.max()) if flat.size else 0.0
        step = np.float32((high - float(low)) / 255.0)
        if float(low) + 255.0 * float(step) < high:  # float32 rounded the step down
            step = np.nextafter(step, np.float32(np.inf))
        if step == 0 or not np.isfinite(step):
            step = np.float32(1.0)  # constant tensor: every level is 0
        scaled = (flat - float(low)) / float(step)
        levels = np.floor(scaled)
        levels += rng.random(flat.size) < (scaled - levels)
        np.clip(levels, 0, 255, out=levels)
        parts += [
            tensor_header(name, values.shape),
            struct.pack("<ff", low, step),
            levels.astype(np.uint8).tobytes(),
        ]
    return b"".join(parts)


def decode_quantized8(data: bytes, *, shapes: Shapes) -> dict[str, npt.NDArray[np.float32]]:
    """The tensors back, as float32 (``minimum + level * step``).

    ``shapes`` is the layout the update must have (the global model's names and
    shapes, e.g. ``{n: a.shape for n, a in model.items()}``): every tensor once, no
    other, each checked before it is read.

    Raises
    ------
    CompressionError
        If the bytes are truncated, padded or of another codec; hold a tensor the
        layout lacks, with another shape, or twice; or a minimum, step or decoded value
        that is not finite, or a step that is not positive.
    """
    reader = Reader(data, shapes)
    out = {}
    for _ in range(reader.start(_MAGIC)):
        name, shape = reader.tensor()
        low, step = (float(x) for x in reader.unpack("ff"))
        if not (np.isfinite(low) and np.isfinite(step) and step > 0):
            raise CompressionError(
                f"tensor {name!r}: minimum {low} and step {step} must be finite, step positive"
            )
        size = int(np.prod(shape, dtype=np.int64))
        levels = np.frombuffer(reader.take(size), dtype=np.uint8)
        with np.errstate(over="ignore"):  # refused just below
            values = (low + levels.astype(np.float64) * step).astype(np.float32)
        if not np.isfinite(values).all():
            raise CompressionError(f"tensor {name!r} decodes to values beyond float32")
        out[name] = values.reshape(shape)
    reader.end()
    return out
