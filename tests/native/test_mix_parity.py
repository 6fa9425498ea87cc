"""Mixing matrix parity: the compiled kernel and the numpy reference run the same test class, bit-exact."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mediagw.media import g711, mix
from mediagw.media.mix import CODEC_NONE, CODEC_PCM, CODEC_PCMA, CODEC_PCMU, Q12_UNITY, listen_matrix

IMPLEMENTATIONS = {"reference": mix.reference, "compiled": mix.compiled}
FRAME = 160


@pytest.fixture(params=sorted(IMPLEMENTATIONS), scope="class")
def impl(request: pytest.FixtureRequest):
    return IMPLEMENTATIONS[request.param]


def _tone(freq: float, amplitude: int) -> np.ndarray:
    t = np.arange(FRAME) / 8000.0
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


@st.composite
def ticks(draw: st.DrawFn) -> dict:
    """A random tick: slots, codecs, PCM inputs and a random sparse listen matrix with extreme gains."""
    n = draw(st.integers(0, 8))
    frame = draw(st.sampled_from([FRAME, 1, 8]))
    codes = draw(hnp.arrays(np.uint8, (n, frame)))
    pcm_in = draw(hnp.arrays(np.int16, (n, frame)))
    in_codec = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=np.uint8)
    out_codec = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=np.uint8)
    gains = st.one_of(
        st.sampled_from([Q12_UNITY, 0, 32767, -32768, 2048, 8192, -4096, 1]), st.integers(-32768, 32767)
    )
    entries = []
    for listener in range(n):
        sources = draw(st.lists(st.integers(0, n - 1), max_size=6))
        entries.extend((listener, source, draw(gains)) for source in sources)
    matrix = listen_matrix(n, entries)
    return dict(codes=codes, pcm_in=pcm_in, in_codec=in_codec, out_codec=out_codec, matrix=matrix)


class TestMix:
    def test_two_party_bridge_swaps_audio(self, impl) -> None:
        caller, agent = _tone(440, 8000), _tone(1000, 8000)
        codes = np.stack([g711.reference.ulaw_encode(caller), g711.reference.alaw_encode(agent)])
        row_ptr, col, gain = listen_matrix(2, [(0, 1, Q12_UNITY), (1, 0, Q12_UNITY)])
        out, pcm = impl.mix_tick(
            codes, np.array([CODEC_PCMU, CODEC_PCMA], np.uint8), row_ptr, col, gain,
            np.array([CODEC_PCMU, CODEC_PCMA], np.uint8), out_pcm=np.zeros((2, FRAME), np.int16),
        )
        # Each side hears the other's decoded frame, re-encoded in its own codec.
        np.testing.assert_array_equal(pcm[0], g711.reference.alaw_decode(codes[1]))
        np.testing.assert_array_equal(pcm[1], g711.reference.ulaw_decode(codes[0]))
        np.testing.assert_array_equal(out[0], g711.reference.ulaw_encode(pcm[0]))
        np.testing.assert_array_equal(out[1], g711.reference.alaw_encode(pcm[1]))

    def test_sum_saturates_to_int16(self, impl) -> None:
        loud = np.full((3, FRAME), 30000, np.int16)
        loud[1] = -30000
        row_ptr, col, gain = listen_matrix(3, [(2, 0, Q12_UNITY), (2, 0, Q12_UNITY), (1, 1, Q12_UNITY * 2)])
        _, pcm = impl.mix_tick(
            np.zeros((3, FRAME), np.uint8), np.full(3, CODEC_PCM, np.uint8), row_ptr, col, gain,
            np.full(3, CODEC_PCM, np.uint8), pcm_in=loud, out_pcm=np.zeros((3, FRAME), np.int16),
        )
        assert set(pcm[2].tolist()) == {32767}
        assert set(pcm[1].tolist()) == {-32768}
        assert set(pcm[0].tolist()) == {0}  # nobody: silence

    def test_gain_rounds_in_q12(self, impl) -> None:
        pcm_in = np.array([[3, -3, 1000, -1000, 32767, -32768]], np.int16)
        row_ptr, col, gain = listen_matrix(1, [(0, 0, 2048)])  # one half
        _, pcm = impl.mix_tick(
            np.zeros((1, 6), np.uint8), np.array([CODEC_PCM], np.uint8), row_ptr, col, gain,
            np.array([CODEC_PCM], np.uint8), pcm_in=pcm_in, out_pcm=np.zeros((1, 6), np.int16),
        )
        assert pcm[0].tolist() == [2, -1, 500, -500, 16384, -16384]  # (x * 2048 + 2048) >> 12

    def test_none_slots_add_nothing_and_leave_outputs(self, impl) -> None:
        codes = np.full((2, FRAME), 0x10, np.uint8)
        row_ptr, col, gain = listen_matrix(2, [(0, 1, Q12_UNITY), (1, 0, Q12_UNITY)])
        out_codes = np.full((2, FRAME), 0xAB, np.uint8)
        out_pcm = np.full((2, FRAME), 7, np.int16)
        impl.mix_tick(
            codes, np.array([CODEC_PCMU, CODEC_NONE], np.uint8), row_ptr, col, gain,
            np.array([CODEC_PCMU, CODEC_NONE], np.uint8), out_codes=out_codes, out_pcm=out_pcm,
        )
        assert set(out_codes[0].tolist()) == {0xFF}  # silence in u-law
        assert set(out_pcm[0].tolist()) == {0}
        assert set(out_codes[1].tolist()) == {0xAB} and set(out_pcm[1].tolist()) == {7}

    def test_pcm_output_leaves_codes_untouched(self, impl) -> None:
        row_ptr, col, gain = listen_matrix(2, [(1, 0, Q12_UNITY)])
        out_codes = np.full((2, FRAME), 0xAB, np.uint8)
        _, pcm = impl.mix_tick(
            np.zeros((2, FRAME), np.uint8), np.array([CODEC_PCM, CODEC_NONE], np.uint8), row_ptr, col, gain,
            np.array([CODEC_NONE, CODEC_PCM], np.uint8), pcm_in=np.full((2, FRAME), 123, np.int16),
            out_codes=out_codes, out_pcm=np.zeros((2, FRAME), np.int16),
        )
        assert set(out_codes.ravel().tolist()) == {0xAB}
        assert set(pcm[1].tolist()) == {123}

    @pytest.mark.parametrize(
        "change, message",
        [
            (dict(row_ptr=np.array([0, 1], np.int32)), "row_ptr needs 3"),
            (dict(col=np.array([0, 5], np.int32)), "is not a slot|does not exist"),
            (dict(in_codec=np.array([4, 0], np.uint8)), "unknown codec"),
            (dict(in_codec=np.array([CODEC_PCM, 0], np.uint8)), "pcm_in is None"),
            (dict(gain_q12=np.array([1], np.int16)), "gain_q12 has 1"),
            (dict(row_ptr=np.array([0, 2, 1], np.int32)), "must start at 0 and end at 2"),
        ],
    )
    def test_rejects_malformed_input(self, impl, change, message) -> None:
        args = dict(
            codes=np.zeros((2, FRAME), np.uint8), in_codec=np.zeros(2, np.uint8),
            row_ptr=np.array([0, 1, 2], np.int32), col=np.array([1, 0], np.int32),
            gain_q12=np.array([Q12_UNITY, Q12_UNITY], np.int16), out_codec=np.zeros(2, np.uint8),
        )
        args.update(change)
        with pytest.raises(ValueError, match=message):
            impl.mix_tick(**args)

    @settings(max_examples=300, deadline=None)
    @given(tick=ticks())
    def test_matches_naive_loop_and_other_implementation(self, impl, tick) -> None:
        row_ptr, col, gain = tick["matrix"]
        n, frame = tick["codes"].shape
        in_codec, out_codec = tick["in_codec"], tick["out_codec"]
        out_codes = np.full((n, frame), 0x5A, np.uint8)
        out_pcm = np.full((n, frame), 1234, np.int16)
        kwargs = dict(pcm_in=tick["pcm_in"], out_codes=out_codes, out_pcm=out_pcm)
        impl.mix_tick(tick["codes"], in_codec, row_ptr, col, gain, out_codec, **kwargs)

        # An independent scalar statement of the contract, in plain Python integers.
        for i in range(n):
            if out_codec[i] == CODEC_NONE:
                assert (out_codes[i] == 0x5A).all() and (out_pcm[i] == 1234).all()
                continue
            acc = [0] * frame
            for j in range(row_ptr[i], row_ptr[i + 1]):
                s = int(col[j])
                if in_codec[s] == CODEC_PCMU:
                    x = g711.reference.ulaw_decode(tick["codes"][s]).tolist()
                elif in_codec[s] == CODEC_PCMA:
                    x = g711.reference.alaw_decode(tick["codes"][s]).tolist()
                elif in_codec[s] == CODEC_PCM:
                    x = tick["pcm_in"][s].tolist()
                else:
                    continue
                acc = [a + ((v * int(gain[j]) + 2048) >> 12) for a, v in zip(acc, x)]
            expected = np.array([max(-32768, min(32767, a)) for a in acc], np.int16)
            np.testing.assert_array_equal(out_pcm[i], expected)
            if out_codec[i] == CODEC_PCMU:
                np.testing.assert_array_equal(out_codes[i], g711.reference.ulaw_encode(expected))
            elif out_codec[i] == CODEC_PCMA:
                np.testing.assert_array_equal(out_codes[i], g711.reference.alaw_encode(expected))
            else:
                assert (out_codes[i] == 0x5A).all()

        other = mix.compiled if impl is mix.reference else mix.reference
        other_codes, other_pcm = other.mix_tick(
            tick["codes"], in_codec, row_ptr, col, gain, out_codec, pcm_in=tick["pcm_in"],
            out_codes=np.full((n, frame), 0x5A, np.uint8), out_pcm=np.full((n, frame), 1234, np.int16),
        )
        np.testing.assert_array_equal(out_codes, other_codes)
        np.testing.assert_array_equal(out_pcm, other_pcm)


def test_compiled_rejects_wrong_output_shape() -> None:
    from mediagw._native import mix as kernel

    with pytest.raises(ValueError, match=r"out_codes must be \(1, 160\)"):
        kernel.mix_tick(
            np.zeros((1, FRAME), np.uint8), np.zeros(1, np.uint8), np.array([0, 0], np.int32),
            np.zeros(0, np.int32), np.zeros(0, np.int16), np.zeros(1, np.uint8), np.zeros((1, 10), np.uint8),
        )


def test_native_constants_match_reference() -> None:
    from mediagw._native import mix as kernel

    assert (kernel.CODEC_PCMU, kernel.CODEC_PCMA, kernel.CODEC_PCM, kernel.CODEC_NONE) == (
        CODEC_PCMU, CODEC_PCMA, CODEC_PCM, CODEC_NONE,
    )
    assert kernel.Q12_UNITY == Q12_UNITY and kernel.MAX_ROW_ENTRIES == mix.MAX_ROW_ENTRIES


@pytest.mark.parametrize("name", sorted(IMPLEMENTATIONS))
def test_benchmark_1000_two_party_bridges(benchmark, name: str) -> None:
    """One tick of 1,000 two-party bridges (caller PCMU, agent PCMA); a timing, not an assertion."""
    impl = IMPLEMENTATIONS[name]
    n = 2000
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (n, FRAME), dtype=np.uint8)
    codec = (np.arange(n) % 2).astype(np.uint8)
    row_ptr, col, gain = listen_matrix(n, [(i, i ^ 1, Q12_UNITY) for i in range(n)])
    out_codes = np.zeros((n, FRAME), np.uint8)
    out_pcm = np.zeros((n, FRAME), np.int16)
    benchmark(impl.mix_tick, codes, codec, row_ptr, col, gain, codec, out_codes=out_codes, out_pcm=out_pcm)
    np.testing.assert_array_equal(out_pcm[0], g711.reference.alaw_decode(codes[1]))
