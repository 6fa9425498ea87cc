# Shared inline G.711 helpers (ITU-T G.711), cimported by every kernel that needs the codec tables.
# Each kernel builds its own lookup tables once at import with these functions; the hot loops are then
# pure table lookups.
from libc.stdint cimport int16_t, uint8_t, int32_t

cdef inline uint8_t linear_to_ulaw(int32_t sample) noexcept nogil:
    """Encode one 16-bit linear sample to u-law (G.711 §A.2, 14-bit magnitude, bias 0x84)."""
    cdef int32_t mask, seg, value, pcm
    pcm = sample >> 2
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    else:
        mask = 0xFF
    if pcm > 8159:  # clip to the 14-bit u-law range, G.711 Table 2a
        pcm = 8159
    pcm += 0x21  # bias 33 in 14-bit units (= 0x84 in 16-bit units)
    seg = 0
    value = pcm >> 6
    while value:
        seg += 1
        value >>= 1
    if seg >= 8:  # 8159 + 33 overflows the top segment: the largest code
        return <uint8_t>(0x7F ^ mask)
    value = (seg << 4) | ((pcm >> (seg + 1)) & 0x0F)
    return <uint8_t>(value ^ mask)

cdef inline int16_t ulaw_to_linear(uint8_t code) noexcept nogil:
    """Decode one u-law code to 16-bit linear (G.711 Table 2a)."""
    cdef int32_t u, t
    u = (~code) & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    if u & 0x80:
        return <int16_t>(0x84 - t)
    return <int16_t>(t - 0x84)

cdef inline uint8_t linear_to_alaw(int32_t sample) noexcept nogil:
    """Encode one 16-bit linear sample to A-law (G.711 Table 1a, 13-bit, even bits inverted)."""
    cdef int32_t mask, seg, value, pcm
    pcm = sample >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    if pcm > 4095:
        pcm = 4095
    if pcm < 32:
        value = pcm >> 1
    else:
        seg = 1
        value = pcm >> 5
        while value > 1:
            seg += 1
            value >>= 1
        value = (seg << 4) | ((pcm >> seg) & 0x0F)
    return <uint8_t>(value ^ mask)

cdef inline int16_t alaw_to_linear(uint8_t code) noexcept nogil:
    """Decode one A-law code to 16-bit linear (G.711 Table 1a)."""
    cdef int32_t a, t, seg
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    if a & 0x80:
        return <int16_t>t
    return <int16_t>(-t)
