"""Mixing matrix kernel (native/mix.pyx); contract and numpy reference in mediagw.media.mix."""
from typing import Any

CODEC_PCMU: int  # 0: u-law codes in ``codes`` / encode the mix as u-law
CODEC_PCMA: int  # 1: A-law codes in ``codes`` / encode the mix as A-law
CODEC_PCM: int  # 2: input is the ``pcm_in`` row / output only to ``out_pcm``
CODEC_NONE: int  # 3: no input this tick / row skipped, outputs untouched
Q12_UNITY: int  # 4096, gain 1.0
MAX_ROW_ENTRIES: int  # 8191 sources per listener at most

def mix_tick(
    codes: Any,  # uint8[n, L], C-contiguous
    in_codec: Any,  # uint8[n]
    row_ptr: Any,  # int32[n + 1], CSR row pointers of the listen matrix (row = listener)
    col: Any,  # int32[nnz], source slot of each entry
    gain_q12: Any,  # int16[nnz], Q12 gain of each entry (4096 = unity)
    out_codec: Any,  # uint8[n]
    out_codes: Any,  # uint8[n, L], written in place
    pcm_in: Any | None = None,  # int16[n, L], read for slots whose in_codec is CODEC_PCM
    out_pcm: Any | None = None,  # int16[n, L], the saturated mix of every row not CODEC_NONE
) -> None:
    """Decode each input once, mix each row (int32, saturated to int16), encode once per output.

    Python-facing allocating wrapper: ``mediagw.media.mix.mix_tick(codes, in_codec, row_ptr, col, gain_q12,
    out_codec, *, pcm_in=None, out_codes=None, out_pcm=None) -> (out_codes, out_pcm)``.
    Raises ValueError on mismatched shapes, malformed CSR arrays, unknown codecs, PCM without pcm_in.
    """
