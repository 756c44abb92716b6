"""Top-k sparsification with error feedback (Stich et al., 2018; Lin et al., 2018).

Per tensor, the client sends only the ``k = ceil(fraction * size)`` coordinates of
largest magnitude of ``update + residual`` and keeps the rest as the new residual, to
add to the next round's update: nothing is thrown away, only delayed, which is what
lets training converge at high sparsity. Each kept value costs 8 bytes (uint32 index,
float32 value): a fraction below 1/2 is smaller than float32.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from fedbus.compression._format import Reader, Shapes, header, tensor_header
from fedbus.compression.errors import CompressionError

__all__ = ["TopKCompressor", "decode_topk"]

_MAGIC = b"FBTK"

FloatArrays = dict[str, npt.NDArray[np.float32]]


class TopKCompressor:
    """One client's top-k encoder; it carries the residual from round to round.

    Persist :meth:`state` between rounds (the residual is the client's own, never sent)
    and restore it with :meth:`load_state`.
    """

    def __init__(self, *, fraction: float) -> None:
        if not 0 < fraction <= 1:
            raise CompressionError(f"top-k fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction
        self._residual: FloatArrays = {}

    def encode(self, update: Mapping[str, npt.ArrayLike]) -> bytes:
        """The top-k of ``update + residual`` per tensor; the residual keeps the rest."""
        parts = [header(_MAGIC, len(update))]
        residual: FloatArrays = {}
        for name, array in update.items():
            values = np.asarray(array, dtype=np.float32)
            if not np.isfinite(values).all():
                raise CompressionError(f"tensor {name!r} holds NaN or infinite values")
            carried = self._residual.get(name)
            if carried is not None and carried.size != values.size:
                raise CompressionError(f"tensor {name!r} changed size since the last round")
            total = values.ravel() + (carried if carried is not None else np.float32(0))
            k = min(total.size, math.ceil(self.fraction * total.size))
            index = np.sort(np.argpartition(np.abs(total), total.size - k)[total.size - k :])
            parts += [
                tensor_header(name, values.shape),
                struct.pack("<I", k),
                index.astype("<u4").tobytes(),
                total[index].astype("<f4").tobytes(),
            ]
            total[index] = 0
            residual[name] = total
        self._residual = residual
        return b"".join(parts)

    def state(self) -> FloatArrays:
        """The residual per tensor (flat float32)."""
        return dict(self._residual)

    def load_state(self, state: Mapping[str, npt.ArrayLike]) -> None:
        """Restore a residual returned by :meth:`state`."""
        self._residual = {n: np.asarray(a, np.float32).ravel().copy() for n, a in state.items()}


def decode_topk(data: bytes, *, shapes: Shapes) -> FloatArrays:
    """The dense tensors back: the sent coordinates, zeros elsewhere.

    ``shapes`` is the layout the update must have (the global model's names and
    shapes, e.g. ``{n: a.shape for n, a in model.items()}``): every tensor once, no
    other, each checked before its dense array is allocated.

    Raises
    ------
    CompressionError
        If the bytes are truncated, padded or of another codec; hold a tensor the
        layout lacks, with another shape, or twice; or an index out of range or out of
        order (each coordinate is sent once, in increasing order), or a value that is
        not finite.
    """
    reader = Reader(data, shapes)
    out = {}
    for _ in range(reader.start(_MAGIC)):
        name, shape = reader.tensor()
        size = int(np.prod(shape, dtype=np.int64))
        (k,) = reader.unpack("I")
        index = np.frombuffer(reader.take(4 * int(k)), dtype="<u4")
        values = np.frombuffer(reader.take(4 * int(k)), dtype="<f4")
        if k > size or (index.size and int(index.max()) >= size):
            raise CompressionError(f"tensor {name!r}: index out of range for shape {shape}")
        if index.size > 1 and not (np.diff(index.astype(np.int64)) > 0).all():
            raise CompressionError(f"tensor {name!r}: indices repeated or out of order")
        if not np.isfinite(values).all():
            raise CompressionError(f"tensor {name!r} holds NaN or infinite values")
        dense = np.zeros(size, np.float32)
        dense[index] = values
        out[name] = dense.reshape(shape)
    reader.end()
    return out
