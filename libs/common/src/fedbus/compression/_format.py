"""The byte layout shared by the codecs: a magic, then one record per tensor.

``magic (4) | count (u32)`` then per tensor ``name length (u16) | name (UTF-8) |
ndim (u8) | shape (u32 each)`` followed by the codec's own body. Little-endian
throughout. Readers check every length against the bytes left, so truncated or
padded input is refused with a clear error rather than read past, and every name and
shape against the layout the caller expects (the global model's) before anything is
allocated: the bytes cannot make the reader allocate more than that layout holds.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fedbus.compression.errors import CompressionError

__all__ = ["Reader", "Shapes", "header", "tensor_header"]

Shapes = Mapping[str, Sequence[int]]
"""The expected layout: each tensor's name and shape (e.g. the global model's)."""


def header(magic: bytes, count: int) -> bytes:
    """The stream's first 8 bytes."""
    return magic + struct.pack("<I", count)


def tensor_header(name: str, shape: tuple[int, ...]) -> bytes:
    """The bytes that name a tensor and give its shape."""
    raw = name.encode()
    if len(raw) > 0xFFFF or len(shape) > 0xFF:
        raise CompressionError(f"tensor {name[:40]!r}: name or rank too large to encode")
    return struct.pack(f"<H{len(raw)}sB{len(shape)}I", len(raw), raw, len(shape), *shape)


@dataclass
class Reader:
    """Reads the layout back, refusing anything that does not add up.

    ``shapes`` is the layout the bytes must hold: each of its tensors once, no other.
    """

    data: bytes
    shapes: Shapes
    at: int = 0
    seen: set[str] = field(default_factory=set)

    def take(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise CompressionError(f"encoded update is truncated at byte {self.at}")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def unpack(self, fmt: str) -> tuple[int | float, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def start(self, magic: bytes) -> int:
        if self.take(4) != magic:
            raise CompressionError(f"not a {magic.decode()} encoded update")
        count = int(self.unpack("I")[0])
        if count != len(self.shapes):
            raise CompressionError(
                f"encoded update holds {count} tensors, the model has {len(self.shapes)}"
            )
        return count

    def tensor(self) -> tuple[str, tuple[int, ...]]:
        """The next tensor's name and shape, refused unless the layout expects them."""
        (length,) = self.unpack("H")
        try:
            name = self.take(int(length)).decode()
        except UnicodeDecodeError as exc:
            raise CompressionError(f"tensor name at byte {self.at} is not UTF-8") from exc
        (ndim,) = self.unpack("B")
        shape = tuple(int(x) for x in self.unpack(f"{ndim}I"))
        if name not in self.shapes:
            raise CompressionError(f"tensor {name[:40]!r} is not in the model")
        if name in self.seen:
            raise CompressionError(f"tensor {name[:40]!r} appears twice in the encoded update")
        expected = tuple(int(x) for x in self.shapes[name])
        if shape != expected:
            raise CompressionError(f"tensor {name[:40]!r} has shape {shape}, expected {expected}")
        self.seen.add(name)
        return name, shape

    def end(self) -> None:
        if self.at != len(self.data):
            raise CompressionError(f"{len(self.data) - self.at} unexpected bytes after the update")
