# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Table-driven G.711 u-law and A-law encode/decode of PCM frames (typically 160 samples = 20 ms)."""
from libc.stdint cimport int16_t, uint8_t, int32_t
from g711c cimport linear_to_ulaw, ulaw_to_linear, linear_to_alaw, alaw_to_linear

cdef uint8_t ULAW_ENCODE[65536]
cdef uint8_t ALAW_ENCODE[65536]
cdef int16_t ULAW_DECODE[256]
cdef int16_t ALAW_DECODE[256]

cdef void _build_tables() noexcept nogil:
    cdef int32_t i
    for i in range(65536):
        ULAW_ENCODE[i] = linear_to_ulaw(<int16_t>i)
        ALAW_ENCODE[i] = linear_to_alaw(<int16_t>i)
    for i in range(256):
        ULAW_DECODE[i] = ulaw_to_linear(<uint8_t>i)
        ALAW_DECODE[i] = alaw_to_linear(<uint8_t>i)

_build_tables()


def ulaw_encode_into(const int16_t[::1] pcm, uint8_t[::1] out):
    """Encode ``pcm`` into ``out`` (same length) as u-law."""
    cdef Py_ssize_t i, n = pcm.shape[0]
    if out.shape[0] < n:
        raise ValueError(f"output holds {out.shape[0]} codes, need {n}")
    with nogil:
        for i in range(n):
            out[i] = ULAW_ENCODE[<unsigned short>pcm[i]]


def alaw_encode_into(const int16_t[::1] pcm, uint8_t[::1] out):
    """Encode ``pcm`` into ``out`` (same length) as A-law."""
    cdef Py_ssize_t i, n = pcm.shape[0]
    if out.shape[0] < n:
        raise ValueError(f"output holds {out.shape[0]} codes, need {n}")
    with nogil:
        for i in range(n):
            out[i] = ALAW_ENCODE[<unsigned short>pcm[i]]


def ulaw_decode_into(const uint8_t[::1] codes, int16_t[::1] out):
    """Decode u-law ``codes`` into ``out`` (same length)."""
    cdef Py_ssize_t i, n = codes.shape[0]
    if out.shape[0] < n:
        raise ValueError(f"output holds {out.shape[0]} samples, need {n}")
    with nogil:
        for i in range(n):
            out[i] = ULAW_DECODE[codes[i]]


def alaw_decode_into(const uint8_t[::1] codes, int16_t[::1] out):
    """Decode A-law ``codes`` into ``out`` (same length)."""
    cdef Py_ssize_t i, n = codes.shape[0]
    if out.shape[0] < n:
        raise ValueError(f"output holds {out.shape[0]} samples, need {n}")
    with nogil:
        for i in range(n):
            out[i] = ALAW_DECODE[codes[i]]


def ulaw_encode(const int16_t[::1] pcm) -> bytes:
    """Return the u-law encoding of ``pcm``."""
    cdef bytearray out = bytearray(pcm.shape[0])
    ulaw_encode_into(pcm, out)
    return bytes(out)


def alaw_encode(const int16_t[::1] pcm) -> bytes:
    """Return the A-law encoding of ``pcm``."""
    cdef bytearray out = bytearray(pcm.shape[0])
    alaw_encode_into(pcm, out)
    return bytes(out)
