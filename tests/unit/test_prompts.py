"""Prompts: files of several formats decode to 8 kHz mono; text renders once and is cached; tones are right."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from mediagw.media.prompts import (
    RATE,
    PromptError,
    PromptLibrary,
    Voice,
    beep,
    decode_file,
    reorder,
    ringback,
    silence,
    tone,
)
from tests.audio import dominant_frequency, speech_energy_ratio
from tests.integration.harness import require_program
from tests.support import unavailable


def encode_tone(path: Path, codec: str, rate: int, frequency: float, seconds: float = 1.0) -> None:
    """Write a tone with PyAV in ``codec`` at ``rate`` (stereo, to exercise the down-mix)."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=rate, layout="stereo")
    samples = (np.sin(2 * np.pi * frequency * np.arange(int(rate * seconds)) / rate) * 10000).astype(np.int16)
    fmt = stream.codec_context.format.name if stream.codec_context.format else "s16"
    frame_size = stream.codec_context.frame_size or 1024
    resampler = av.AudioResampler(format=fmt, layout="stereo", rate=rate)
    for start in range(0, len(samples), frame_size):
        chunk = samples[start:start + frame_size]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk], axis=1).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = rate
        for out in resampler.resample(frame):
            for packet in stream.encode(out):
                container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()


@pytest.mark.parametrize(
    ("suffix", "codec", "rate"),
    [("wav", "pcm_s16le", 44100), ("mp3", "libmp3lame", 44100), ("ogg", "libopus", 48000)],
)
def test_files_decode_to_8khz_mono(tmp_path: Path, suffix: str, codec: str, rate: int) -> None:
    if codec not in av.codecs_available:
        unavailable(f"this FFmpeg build has no {codec} encoder")
    path = tmp_path / f"tone.{suffix}"
    encode_tone(path, codec, rate, 660.0)
    pcm = decode_file(path)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) / RATE - 1.0) < 0.1
    assert abs(dominant_frequency(pcm) - 660.0) < 10


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="cannot open audio file"):
        decode_file(tmp_path / "nope.wav")


def test_text_renders_once_and_is_cached_on_disk(tmp_path: Path) -> None:
    require_program("espeak-ng")
    library = PromptLibrary(tmp_path)
    first = library.speak("Inbound call of Billing", Voice(speed=200))
    assert library.renders == 1 and len(first) > RATE // 2
    assert speech_energy_ratio(first) > 0.3
    again = PromptLibrary(tmp_path).speak("Inbound call of Billing", Voice(speed=200))
    np.testing.assert_array_equal(first, again)  # from the disk cache, no second render
    assert len(list(tmp_path.glob("tts-*.pcm"))) == 1
    faster = library.speak("Inbound call of Billing", Voice(speed=400))
    assert library.renders == 2 and len(faster) < len(first)  # speed is part of the key, and it works


def test_tones() -> None:
    assert abs(dominant_frequency(tone((440.0,), 1.0)) - 440.0) < 5
    period = ringback((2.0, 4.0))
    assert len(period) == 6 * RATE
    assert np.abs(period[: 2 * RATE]).max() > 1000 and not period[2 * RATE :].any()
    assert len(reorder()) == RATE // 2
    assert not silence(0.02).any() and len(silence(0.02)) == 160
    assert abs(dominant_frequency(beep()) - 1000.0) < 10
