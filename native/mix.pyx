# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The mixing matrix: one call per 20 ms tick mixes every bridge of the process.

Inputs are one frame per participant slot (all bridges side by side), a sparse listen matrix in CSR form
(row i lists the sources slot i hears, with a Q12 gain each) and the codec of each slot. Each input is
decoded once, each row is mixed with int32 accumulation and saturated to int16, and each output is
encoded once in its listener's codec. ``mediagw.media.mix.reference`` is the numpy reference this kernel
is held bit-exact to; see that module for the full contract.
"""
from libc.stdint cimport int16_t, uint8_t, int32_t, uint16_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from g711c cimport linear_to_ulaw, ulaw_to_linear, linear_to_alaw, alaw_to_linear

cdef uint8_t ULAW_ENCODE[65536]
cdef uint8_t ALAW_ENCODE[65536]
cdef int16_t ULAW_DECODE[256]
cdef int16_t ALAW_DECODE[256]

# Slot codecs (in_codec / out_codec); mirrored in mediagw.media.mix.
cdef enum:
    _PCMU = 0       # G.711 u-law codes in ``codes``
    _PCMA = 1       # G.711 A-law codes in ``codes``
    _PCM = 2        # input: linear PCM in ``pcm_in``; output: PCM only, ``out_codes`` row left untouched
    _NONE = 3       # input: nothing this tick (adds nothing); output: row skipped, both outputs untouched
    _UNITY = 4096   # gain 1.0 in Q12
    _MAX_ROW = 8191 # terms are at most 2**18 in magnitude: this many always fit an int32

CODEC_PCMU = _PCMU
CODEC_PCMA = _PCMA
CODEC_PCM = _PCM
CODEC_NONE = _NONE
Q12_UNITY = _UNITY
MAX_ROW_ENTRIES = _MAX_ROW


cdef void _build_tables() noexcept nogil:
    cdef int32_t i
    for i in range(65536):
        ULAW_ENCODE[i] = linear_to_ulaw(<int16_t>i)
        ALAW_ENCODE[i] = linear_to_alaw(<int16_t>i)
    for i in range(256):
        ULAW_DECODE[i] = ulaw_to_linear(<uint8_t>i)
        ALAW_DECODE[i] = alaw_to_linear(<uint8_t>i)

_build_tables()


def mix_tick(const uint8_t[:, ::1] codes, const uint8_t[::1] in_codec, const int32_t[::1] row_ptr,
             const int32_t[::1] col, const int16_t[::1] gain_q12, const uint8_t[::1] out_codec,
             uint8_t[:, ::1] out_codes, const int16_t[:, ::1] pcm_in=None, int16_t[:, ::1] out_pcm=None):
    """Mix one tick of every bridge in place; see ``mediagw.media.mix`` for the contract.

    Raises ``ValueError`` when shapes disagree, the CSR arrays are malformed, a codec is unknown or a
    slot says PCM while ``pcm_in`` is None.
    """
    cdef Py_ssize_t n = codes.shape[0], frame = codes.shape[1]
    cdef Py_ssize_t nnz = col.shape[0]
    cdef Py_ssize_t i, j, k, start, stop, s
    cdef int32_t c, g, v
    cdef uint8_t oc
    cdef const int16_t* p
    cdef int16_t* pcm_out_row
    cdef uint8_t* code_row
    cdef bint has_pcm_in = pcm_in is not None
    cdef bint has_out_pcm = out_pcm is not None

    # -- validation (O(n + nnz), outside the hot loop) --------------------------------------------------
    if in_codec.shape[0] != n or out_codec.shape[0] != n:
        raise ValueError(f"in_codec and out_codec need {n} entries")
    if row_ptr.shape[0] != n + 1:
        raise ValueError(f"row_ptr needs {n + 1} entries, has {row_ptr.shape[0]}")
    if gain_q12.shape[0] != nnz:
        raise ValueError(f"col has {nnz} entries but gain_q12 has {gain_q12.shape[0]}")
    if out_codes.shape[0] != n or out_codes.shape[1] != frame:
        raise ValueError(f"out_codes must be ({n}, {frame})")
    if has_pcm_in and (pcm_in.shape[0] != n or pcm_in.shape[1] != frame):
        raise ValueError(f"pcm_in must be ({n}, {frame})")
    if has_out_pcm and (out_pcm.shape[0] != n or out_pcm.shape[1] != frame):
        raise ValueError(f"out_pcm must be ({n}, {frame})")
    if row_ptr[0] != 0 or row_ptr[n] != nnz:
        raise ValueError(f"row_ptr must start at 0 and end at {nnz}")
    for i in range(n):
        if row_ptr[i + 1] < row_ptr[i]:
            raise ValueError(f"row_ptr decreases at row {i}")
        if row_ptr[i + 1] - row_ptr[i] > _MAX_ROW:
            raise ValueError(f"row {i} has more than {_MAX_ROW} sources")
        if in_codec[i] > _NONE or out_codec[i] > _NONE:
            raise ValueError(f"slot {i} has an unknown codec")
        if in_codec[i] == _PCM and not has_pcm_in:
            raise ValueError(f"slot {i} carries PCM but pcm_in is None")
    for j in range(nnz):
        if col[j] < 0 or col[j] >= n:
            raise ValueError(f"col[{j}] = {col[j]} is not a slot")
    if n == 0 or frame == 0:
        return

    cdef int16_t* decoded = <int16_t*>malloc(n * frame * sizeof(int16_t))
    cdef const int16_t** sources = <const int16_t**>malloc(n * sizeof(int16_t*))
    cdef int32_t* acc = <int32_t*>malloc(frame * sizeof(int32_t))
    if decoded == NULL or sources == NULL or acc == NULL:
        free(decoded)
        free(<void*>sources)
        free(acc)
        raise MemoryError()

    with nogil:
        # Decode every input once.
        for s in range(n):
            c = in_codec[s]
            if c == _PCMU:
                for k in range(frame):
                    decoded[s * frame + k] = ULAW_DECODE[codes[s, k]]
                sources[s] = decoded + s * frame
            elif c == _PCMA:
                for k in range(frame):
                    decoded[s * frame + k] = ALAW_DECODE[codes[s, k]]
                sources[s] = decoded + s * frame
            elif c == _PCM:
                sources[s] = &pcm_in[s, 0]
            else:
                sources[s] = NULL

        # Mix each row: int32 sum of (x * gain + 2048) >> 12, saturated to int16, encoded once.
        for i in range(n):
            oc = out_codec[i]
            if oc == _NONE:
                continue
            memset(acc, 0, frame * sizeof(int32_t))
            start = row_ptr[i]
            stop = row_ptr[i + 1]
            for j in range(start, stop):
                p = sources[col[j]]
                if p == NULL:
                    continue
                g = gain_q12[j]
                if g == _UNITY:
                    for k in range(frame):
                        acc[k] += p[k]
                else:
                    for k in range(frame):
                        acc[k] += (p[k] * g + 2048) >> 12
            for k in range(frame):
                v = acc[k]
                if v > 32767:
                    v = 32767
                elif v < -32768:
                    v = -32768
                acc[k] = v
            if has_out_pcm:
                pcm_out_row = &out_pcm[i, 0]
                for k in range(frame):
                    pcm_out_row[k] = <int16_t>acc[k]
            if oc == _PCMU:
                code_row = &out_codes[i, 0]
                for k in range(frame):
                    code_row[k] = ULAW_ENCODE[<uint16_t>acc[k]]
            elif oc == _PCMA:
                code_row = &out_codes[i, 0]
                for k in range(frame):
                    code_row[k] = ALAW_ENCODE[<uint16_t>acc[k]]

    free(decoded)
    free(<void*>sources)
    free(acc)
