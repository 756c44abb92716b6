"""The byte layout shared by the codecs: a magic, then one record per tensor.

``magic (4) | count (u32)`` then per tensor ``name length (u16) | name (UTF-8) |
ndim (u8) | shape (u32 each)`` followed by the codec's own body. Little-endian
throughout. Readers check every length against the bytes left, so truncated or
padded input is refused with a clear error rather than read past.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from fedbus.compression.errors import CompressionError

__all__ = ["Reader", "header", "tensor_header"]


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
    """Reads the layout back, refusing anything that does not add up."""

    data: bytes
    at: int = 0

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
        return int(self.unpack("I")[0])

    def tensor(self) -> tuple[str, tuple[int, ...]]:
        (length,) = self.unpack("H")
        name = self.take(int(length)).decode()
        (ndim,) = self.unpack("B")
        return name, tuple(int(x) for x in self.unpack(f"{ndim}I"))

    def end(self) -> None:
        if self.at != len(self.data):
            raise CompressionError(f"{len(self.data) - self.at} unexpected bytes after the update")
