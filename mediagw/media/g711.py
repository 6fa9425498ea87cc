"""G.711 u-law and A-law (ITU-T G.711): a numpy reference implementation and the compiled kernel.

Both expose the same four functions on numpy arrays so that tests can run one test class against each:
``ulaw_encode(pcm) -> uint8[]``, ``ulaw_decode(codes) -> int16[]`` and the A-law pair.
The reference computes every value arithmetically; the compiled kernel (``mediagw._native.g711``) uses
lookup tables built at import. Tests hold them bit-exact over all 65,536 samples and 256 codes.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]
Codes = npt.NDArray[np.uint8]

ULAW_BIAS = 0x21  # 33 in 14-bit units, G.711 §A.2
ULAW_CLIP = 8159  # largest 14-bit magnitude, G.711 Table 2a
ALAW_CLIP = 4095  # largest 13-bit magnitude, G.711 Table 1a


def _segment(magnitude: npt.NDArray[np.int32], limit: int) -> npt.NDArray[np.int32]:
    """Number of significant bits above the mantissa: the G.711 segment for each magnitude."""
    seg = np.zeros(magnitude.shape, dtype=np.int32)
    value = magnitude.copy()
    for _ in range(limit):
        nonzero = value > 0
        seg += nonzero
        value >>= 1
    return seg


class reference:  # noqa: N801 - used as a namespace, mirrors the compiled module's name
    """Arithmetic numpy implementation of G.711, the reference the compiled kernel is held to."""

    @staticmethod
    def ulaw_encode(pcm: Pcm) -> Codes:
        x = np.asarray(pcm, dtype=np.int16).astype(np.int32) >> 2
        negative = x < 0
        magnitude = np.minimum(np.where(negative, -x, x), ULAW_CLIP) + ULAW_BIAS
        seg = _segment(magnitude >> 6, 8)
        value = (np.minimum(seg, 7) << 4) | ((magnitude >> (seg + 1)) & 0x0F)
        value = np.where(seg >= 8, 0x7F, value)  # 8159 + 33 overflows the top segment
        mask = np.where(negative, 0x7F, 0xFF)
        return (value ^ mask).astype(np.uint8)

    @staticmethod
    def ulaw_decode(codes: Codes) -> Pcm:
        u = (~np.asarray(codes, dtype=np.uint8).astype(np.int32)) & 0xFF
        t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
        return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)

    @staticmethod
    def alaw_encode(pcm: Pcm) -> Codes:
        x = np.asarray(pcm, dtype=np.int16).astype(np.int32) >> 3
        negative = x < 0
        magnitude = np.minimum(np.where(negative, -x - 1, x), ALAW_CLIP)
        seg = _segment(magnitude >> 5, 7)  # 0 for magnitudes below 32
        high = (seg << 4) | ((magnitude >> np.maximum(seg, 1)) & 0x0F)
        value = np.where(magnitude < 32, magnitude >> 1, high)
        mask = np.where(negative, 0x55, 0xD5)
        return (value ^ mask).astype(np.uint8)

    @staticmethod
    def alaw_decode(codes: Codes) -> Pcm:
        a = np.asarray(codes, dtype=np.uint8).astype(np.int32) ^ 0x55
        seg = (a & 0x70) >> 4
        t = (a & 0x0F) << 4
        t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
        return np.where(a & 0x80, t, -t).astype(np.int16)


def _compiled_namespace() -> SimpleNamespace:
    from mediagw._native import g711 as kernel

    def ulaw_encode(pcm: Pcm) -> Codes:
        src = np.ascontiguousarray(pcm, dtype=np.int16)
        out = np.empty(src.shape[0], dtype=np.uint8)
        kernel.ulaw_encode_into(src, out)
        return out

    def alaw_encode(pcm: Pcm) -> Codes:
        src = np.ascontiguousarray(pcm, dtype=np.int16)
        out = np.empty(src.shape[0], dtype=np.uint8)
        kernel.alaw_encode_into(src, out)
        return out

    def ulaw_decode(codes: Codes) -> Pcm:
        src = np.ascontiguousarray(codes, dtype=np.uint8)
        out = np.empty(src.shape[0], dtype=np.int16)
        kernel.ulaw_decode_into(src, out)
        return out

    def alaw_decode(codes: Codes) -> Pcm:
        src = np.ascontiguousarray(codes, dtype=np.uint8)
        out = np.empty(src.shape[0], dtype=np.int16)
        kernel.alaw_decode_into(src, out)
        return out

    return SimpleNamespace(
        ulaw_encode=ulaw_encode, ulaw_decode=ulaw_decode, alaw_encode=alaw_encode, alaw_decode=alaw_decode
    )


compiled = _compiled_namespace()

ulaw_encode = compiled.ulaw_encode
ulaw_decode = compiled.ulaw_decode
alaw_encode = compiled.alaw_encode
alaw_decode = compiled.alaw_decode
