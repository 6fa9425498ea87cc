"""The mixing matrix of the media clock: a numpy reference implementation and the compiled kernel.

Contract (both implementations, bit-exact)
------------------------------------------
One call per 20 ms tick mixes every bridge of the process. Every participant of every bridge, and every
local source (prompt, tone, hold music), is a *slot*; bridges are disjoint blocks of slots.

* ``codes: uint8[n, L]``: the encoded G.711 frame each slot received this tick (L = 160 for 20 ms).
* ``in_codec: uint8[n]``: ``CODEC_PCMU`` (0), ``CODEC_PCMA`` (1), ``CODEC_PCM`` (2: the slot's input is the
  linear ``pcm_in`` row; local sources and concealment frames), ``CODEC_NONE`` (3: nothing this tick, the
  slot adds nothing to anyone).
* ``row_ptr: int32[n + 1]``, ``col: int32[nnz]``, ``gain_q12: int16[nnz]``: the listen matrix in CSR form.
  Row i, entries ``row_ptr[i]:row_ptr[i + 1]``, lists the slots i hears and the gain of each in Q12
  (4096 = unity, negative gains invert). At most 8,191 entries per row.
* ``out_codec: uint8[n]``: ``CODEC_PCMU`` / ``CODEC_PCMA`` encode the mix into ``out_codes``; ``CODEC_PCM``
  only writes ``out_pcm`` (recorder taps), leaving the ``out_codes`` row untouched; ``CODEC_NONE`` skips the
  row (sources nobody sends to), leaving both output rows untouched.

Each input is decoded once; each output sample is ``sum((x * gain + 2048) >> 12)`` over the row, summed in
int32 and saturated to int16, then encoded once. ``out_pcm`` (optional) receives the saturated mix.
"""
from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace

import numpy as np
import numpy.typing as npt

from mediagw.media import g711

Pcm = npt.NDArray[np.int16]
Codes = npt.NDArray[np.uint8]

CODEC_PCMU = 0
CODEC_PCMA = 1
CODEC_PCM = 2
CODEC_NONE = 3
Q12_UNITY = 4096  # gain 1.0
FRAME_SAMPLES = 160  # 20 ms at 8 kHz, RFC 3551 §4.5.14 (PCMU/PCMA default ptime)
MAX_ROW_ENTRIES = 8191  # int32 accumulation of terms bounded by 2**18 cannot overflow below this


def listen_matrix(
    n_slots: int, entries: Iterable[tuple[int, int, int]]
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int16]]:
    """Build the CSR arrays ``(row_ptr, col, gain_q12)`` from ``(listener, source, gain_q12)`` triples."""
    triples = sorted(entries, key=lambda entry: entry[0])
    rows = np.array([t[0] for t in triples], dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n_slots):
        raise ValueError("listener slot out of range")
    counts = np.bincount(rows, minlength=n_slots) if rows.size else np.zeros(n_slots, dtype=np.int64)
    row_ptr = np.zeros(n_slots + 1, dtype=np.int32)
    np.cumsum(counts, out=row_ptr[1:])
    col = np.array([t[1] for t in triples], dtype=np.int32)
    gain = np.array([t[2] for t in triples], dtype=np.int16)
    return row_ptr, col, gain


def _check(
    codes: Codes,
    in_codec: Codes,
    row_ptr: npt.NDArray[np.int32],
    col: npt.NDArray[np.int32],
    gain_q12: npt.NDArray[np.int16],
    out_codec: Codes,
    pcm_in: Pcm | None,
) -> None:
    """Raise ``ValueError`` on the same malformed inputs as the compiled kernel."""
    n, frame = codes.shape
    if in_codec.shape != (n,) or out_codec.shape != (n,):
        raise ValueError(f"in_codec and out_codec need {n} entries")
    if row_ptr.shape != (n + 1,):
        raise ValueError(f"row_ptr needs {n + 1} entries, has {row_ptr.shape[0]}")
    if gain_q12.shape != col.shape:
        raise ValueError(f"col has {col.shape[0]} entries but gain_q12 has {gain_q12.shape[0]}")
    if pcm_in is not None and pcm_in.shape != (n, frame):
        raise ValueError(f"pcm_in must be ({n}, {frame})")
    if row_ptr[0] != 0 or row_ptr[-1] != col.shape[0]:
        raise ValueError(f"row_ptr must start at 0 and end at {col.shape[0]}")
    lengths = np.diff(row_ptr)
    if (lengths < 0).any():
        raise ValueError(f"row_ptr decreases at row {int(np.argmax(lengths < 0))}")
    if (lengths > MAX_ROW_ENTRIES).any():
        row = int(np.argmax(lengths > MAX_ROW_ENTRIES))
        raise ValueError(f"row {row} has more than {MAX_ROW_ENTRIES} sources")
    if (in_codec > CODEC_NONE).any() or (out_codec > CODEC_NONE).any():
        raise ValueError("a slot has an unknown codec")
    if pcm_in is None and (in_codec == CODEC_PCM).any():
        raise ValueError(f"slot {int(np.argmax(in_codec == CODEC_PCM))} carries PCM but pcm_in is None")
    if col.size and (col.min() < 0 or col.max() >= n):
        raise ValueError("col names a slot that does not exist")


def _reference_mix_tick(
    codes: Codes,
    in_codec: Codes,
    row_ptr: npt.NDArray[np.int32],
    col: npt.NDArray[np.int32],
    gain_q12: npt.NDArray[np.int16],
    out_codec: Codes,
    out_codes: Codes,
    pcm_in: Pcm | None = None,
    out_pcm: Pcm | None = None,
) -> None:
    """Numpy reference of the native ``mix_tick`` (same arguments, outputs written in place)."""
    _check(codes, in_codec, row_ptr, col, gain_q12, out_codec, pcm_in)
    n, frame = codes.shape
    if out_codes.shape != (n, frame) or (out_pcm is not None and out_pcm.shape != (n, frame)):
        raise ValueError(f"outputs must be ({n}, {frame})")
    decoded = np.zeros((n, frame), dtype=np.int32)
    for codec, decode in ((CODEC_PCMU, g711.reference.ulaw_decode), (CODEC_PCMA, g711.reference.alaw_decode)):
        rows = in_codec == codec
        if rows.any():
            decoded[rows] = decode(codes[rows].ravel()).reshape(-1, frame)
    if pcm_in is not None:
        rows = in_codec == CODEC_PCM
        decoded[rows] = pcm_in[rows]
    # |x * gain| <= 2**30: int32 holds each product; each term (x * gain + 2048) >> 12 is at most 2**18.
    terms = (decoded[col] * gain_q12.astype(np.int32)[:, None] + 2048) >> 12
    running = np.zeros((col.shape[0] + 1, frame), dtype=np.int64)
    np.cumsum(terms, axis=0, out=running[1:])
    mixed = running[row_ptr[1:]] - running[row_ptr[:-1]]
    mixed = np.clip(mixed, -32768, 32767).astype(np.int16)
    for codec, encode in ((CODEC_PCMU, g711.reference.ulaw_encode), (CODEC_PCMA, g711.reference.alaw_encode)):
        rows = out_codec == codec
        if rows.any():
            out_codes[rows] = encode(mixed[rows].ravel()).reshape(-1, frame)
    if out_pcm is not None:
        rows = out_codec != CODEC_NONE
        out_pcm[rows] = mixed[rows]


def _wrap(kernel: object) -> SimpleNamespace:
    """Give a kernel the allocating Python-facing ``mix_tick`` signature (the one tests and bridges use)."""

    def mix_tick(
        codes: Codes,
        in_codec: Codes,
        row_ptr: npt.NDArray[np.int32],
        col: npt.NDArray[np.int32],
        gain_q12: npt.NDArray[np.int16],
        out_codec: Codes,
        *,
        pcm_in: Pcm | None = None,
        out_codes: Codes | None = None,
        out_pcm: Pcm | None = None,
    ) -> tuple[Codes, Pcm | None]:
        """Mix one tick; allocates ``out_codes`` (zeros) when not given. Returns ``(out_codes, out_pcm)``."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.ndim != 2:
            raise ValueError("codes must be a 2-D array (slots, samples)")
        if out_codes is None:
            out_codes = np.zeros(codes.shape, dtype=np.uint8)
        kernel.mix_tick(  # type: ignore[attr-defined]
            codes,
            np.ascontiguousarray(in_codec, dtype=np.uint8),
            np.ascontiguousarray(row_ptr, dtype=np.int32),
            np.ascontiguousarray(col, dtype=np.int32),
            np.ascontiguousarray(gain_q12, dtype=np.int16),
            np.ascontiguousarray(out_codec, dtype=np.uint8),
            out_codes,
            None if pcm_in is None else np.ascontiguousarray(pcm_in, dtype=np.int16),
            out_pcm,
        )
        return out_codes, out_pcm

    return SimpleNamespace(mix_tick=mix_tick)


reference = _wrap(SimpleNamespace(mix_tick=_reference_mix_tick))
"""The numpy reference, with the allocating ``mix_tick`` signature."""


def _compiled_namespace() -> SimpleNamespace:
    from mediagw._native import mix as kernel

    return _wrap(kernel)


compiled = _compiled_namespace()
"""The Cython kernel ``mediagw._native.mix``, with the allocating ``mix_tick`` signature."""

mix_tick = compiled.mix_tick
