"""Audio checks for tests: which tones a recording holds (FFT) and whether it holds speech."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 8000


def read_wav(path: str | Path) -> tuple[npt.NDArray[np.int16], int]:
    """Samples of the first channel of a 16-bit WAV file, and its sample rate."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        channels = wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
    return data.reshape(-1, channels)[:, 0] if channels > 1 else data, rate


def spectrum(pcm: npt.NDArray[np.int16], rate: int = RATE) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Frequencies and magnitudes of a Hann-windowed FFT."""
    x = pcm.astype(np.float64)
    if len(x) == 0:
        return np.zeros(1), np.zeros(1)
    window = np.hanning(len(x))
    magnitude = np.abs(np.fft.rfft(x * window))
    return np.fft.rfftfreq(len(x), 1.0 / rate), magnitude


def dominant_frequency(pcm: npt.NDArray[np.int16], rate: int = RATE) -> float:
    """The frequency with the most energy."""
    freqs, magnitude = spectrum(pcm, rate)
    return float(freqs[int(np.argmax(magnitude[1:])) + 1])


def tone_level(pcm: npt.NDArray[np.int16], frequency: float, rate: int = RATE, width: float = 15.0) -> float:
    """Energy within ``width`` Hz of ``frequency`` as a fraction of the total energy (0..1)."""
    freqs, magnitude = spectrum(pcm, rate)
    power = magnitude**2
    total = power[1:].sum()
    if total <= 0:
        return 0.0
    band = (freqs > frequency - width) & (freqs < frequency + width)
    return float(power[band].sum() / total)


def has_tone(pcm: npt.NDArray[np.int16], frequency: float, rate: int = RATE, threshold: float = 0.05) -> bool:
    """True when ``frequency`` carries a clear share of the energy and the signal is not silence."""
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0
    return rms > 100 and tone_level(pcm, frequency, rate) > threshold


def rms(pcm: npt.NDArray[np.int16]) -> float:
    """Root mean square level."""
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def speech_energy_ratio(pcm: npt.NDArray[np.int16], rate: int = RATE) -> float:
    """Share of 20 ms frames that are voiced-loud and spectrally broad, as speech is (not a pure tone)."""
    frame = rate // 50
    frames = [pcm[i : i + frame] for i in range(0, len(pcm) - frame + 1, frame)]
    if not frames:
        return 0.0
    voiced = 0
    for f in frames:
        if rms(f) < 300:
            continue
        freqs, magnitude = spectrum(f, rate)
        power = magnitude**2
        peak_share = power.max() / max(power.sum(), 1e-9)
        if peak_share < 0.5:  # energy spread over many bins: not a steady single tone
            voiced += 1
    return voiced / len(frames)
