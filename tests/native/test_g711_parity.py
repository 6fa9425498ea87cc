"""G.711 parity: the compiled kernel and the numpy reference run the same test class, bit-exact."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mediagw.media import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # independent third implementation (CPython's C code), present on 3.11/3.12

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)
IMPLEMENTATIONS = {"reference": g711.reference, "compiled": g711.compiled}


@pytest.fixture(params=sorted(IMPLEMENTATIONS), scope="class")
def impl(request: pytest.FixtureRequest):
    return IMPLEMENTATIONS[request.param]


class TestG711:
    def test_ulaw_encode_all_samples_matches_audioop(self, impl) -> None:
        expected = np.frombuffer(audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2), dtype=np.uint8)
        np.testing.assert_array_equal(impl.ulaw_encode(ALL_SAMPLES), expected)

    def test_alaw_encode_all_samples_matches_audioop(self, impl) -> None:
        expected = np.frombuffer(audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2), dtype=np.uint8)
        np.testing.assert_array_equal(impl.alaw_encode(ALL_SAMPLES), expected)

    def test_ulaw_decode_all_codes_matches_audioop(self, impl) -> None:
        expected = np.frombuffer(audioop.ulaw2lin(ALL_CODES.tobytes(), 2), dtype=np.int16)
        np.testing.assert_array_equal(impl.ulaw_decode(ALL_CODES), expected)

    def test_alaw_decode_all_codes_matches_audioop(self, impl) -> None:
        expected = np.frombuffer(audioop.alaw2lin(ALL_CODES.tobytes(), 2), dtype=np.int16)
        np.testing.assert_array_equal(impl.alaw_decode(ALL_CODES), expected)

    def test_known_codes(self, impl) -> None:
        # Silence encodes to 0xFF in u-law and 0xD5 in A-law (G.711 tables 1a/2a).
        zero = np.zeros(160, dtype=np.int16)
        assert set(impl.ulaw_encode(zero).tolist()) == {0xFF}
        assert set(impl.alaw_encode(zero).tolist()) == {0xD5}

    def test_decode_encode_is_identity_on_codes(self, impl) -> None:
        # Every code except u-law's negative zero (0x7F decodes to 0, re-encodes as 0xFF) survives.
        ulaw = impl.ulaw_encode(impl.ulaw_decode(ALL_CODES))
        assert [c for c in range(256) if ulaw[c] != c] == [0x7F]
        np.testing.assert_array_equal(impl.alaw_encode(impl.alaw_decode(ALL_CODES)), ALL_CODES)

    @settings(max_examples=200, deadline=None)
    @given(frame=hnp.arrays(np.int16, st.sampled_from([0, 1, 80, 160, 320])))
    def test_frames_agree_with_other_implementation(self, impl, frame) -> None:
        other = g711.compiled if impl is g711.reference else g711.reference
        np.testing.assert_array_equal(impl.ulaw_encode(frame), other.ulaw_encode(frame))
        np.testing.assert_array_equal(impl.alaw_encode(frame), other.alaw_encode(frame))
        codes = impl.ulaw_encode(frame)
        np.testing.assert_array_equal(impl.ulaw_decode(codes), other.ulaw_decode(codes))
        codes = impl.alaw_encode(frame)
        np.testing.assert_array_equal(impl.alaw_decode(codes), other.alaw_decode(codes))


def test_compiled_rejects_short_output_buffer() -> None:
    from mediagw._native import g711 as kernel

    with pytest.raises(ValueError, match="need 160"):
        kernel.ulaw_encode_into(np.zeros(160, np.int16), np.zeros(10, np.uint8))
