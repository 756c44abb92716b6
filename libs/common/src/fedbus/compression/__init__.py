"""Compressed model updates: 8-bit stochastic quantization and top-k with error feedback.

Both codecs turn named float tensors into bytes and back, so an update can be stored
compressed and its size known exactly (``len(encoded)``). Chosen per job; with secure
aggregation the protocol's own quantization applies instead (:mod:`fedbus.secagg`).
"""

from fedbus.compression.errors import CompressionError
from fedbus.compression.quantize8 import decode_quantized8, encode_quantized8
from fedbus.compression.topk import TopKCompressor, decode_topk

__all__ = [
    "CompressionError",
    "TopKCompressor",
    "decode_quantized8",
    "decode_topk",
    "encode_quantized8",
]
