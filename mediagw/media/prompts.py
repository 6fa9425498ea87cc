"""Prompts and tones as 8 kHz mono PCM: audio files through PyAV, text through espeak-ng, generated tones.

Everything here returns a numpy ``int16`` array at 8 kHz that the media engine plays into a bridge
(``MediaEngine.add_player``). Decoding and synthesis are blocking and run off the event loop
(``PromptLibrary.speak_async`` / ``load_async``); results are cached, text on disk keyed by text, voice and
speed, so a whisper such as "Billing of Support" is rendered once per gateway lifetime of the cache.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from mediagw.errors import LocalError

logger = logging.getLogger(__name__)

RATE = 8000  # Hz: G.711 (ITU-T G.711) sample rate; every prompt is resampled to it
FRAME = 160  # samples per 20 ms frame
Pcm = npt.NDArray[np.int16]


class PromptError(LocalError):
    """A prompt that cannot be produced: a missing or undecodable file, or a failed synthesis."""


def decode_file(path: str | Path) -> Pcm:
    """Decode an audio file (WAV, MP3, OGG/Opus, ... anything FFmpeg reads) to 8 kHz mono int16."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise PromptError(f"cannot open audio file {path}: {exc}") from None
    try:
        if not container.streams.audio:
            raise PromptError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        chunks: list[Pcm] = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
    except av.FFmpegError as exc:
        raise PromptError(f"cannot decode audio file {path}: {exc}") from None
    finally:
        container.close()
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


@dataclass(frozen=True, slots=True)
class Voice:
    """An espeak-ng voice and reading speed (words per minute, espeak-ng's -s)."""

    name: str = "en-us"
    speed: int = 175


def cache_key(text: str, voice: Voice) -> str:
    """The cache file name for ``text`` read by ``voice``."""
    digest = hashlib.sha256(f"{voice.name}\x00{voice.speed}\x00{text}".encode()).hexdigest()[:32]
    return f"tts-{digest}.pcm"


def synthesize(text: str, voice: Voice, espeak: str = "espeak-ng") -> Pcm:
    """Render ``text`` with espeak-ng to 8 kHz mono int16 (blocking)."""
    binary = shutil.which(espeak)
    if binary is None:
        raise PromptError("espeak-ng is not installed; text prompts need it (Debian package espeak-ng)")
    if not 80 <= voice.speed <= 500:
        raise PromptError(f"speech speed {voice.speed} is outside espeak-ng's 80-500 words per minute")
    with tempfile.TemporaryDirectory(prefix="mediagw-tts-") as tmp:
        wav = Path(tmp) / "speech.wav"
        result = subprocess.run(
            [binary, "-v", voice.name, "-s", str(voice.speed), "-w", str(wav), "--", text],
            capture_output=True, text=True, timeout=30, check=False,
        )
        if result.returncode != 0 or not wav.exists():
            raise PromptError(f"espeak-ng failed ({result.returncode}): {result.stderr.strip()[:200]}")
        return decode_file(wav)


class PromptLibrary:
    """Cached prompts: text renders kept on disk under ``cache_dir``, files and renders kept in memory."""

    def __init__(self, cache_dir: str | Path, *, max_memory_items: int = 256) -> None:
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, Pcm] = {}
        self._max_memory_items = max_memory_items
        self.renders = 0
        """How many texts were synthesized (cache misses), for tests and figures."""

    def _remember(self, key: str, pcm: Pcm) -> Pcm:
        if len(self._memory) >= self._max_memory_items:
            self._memory.pop(next(iter(self._memory)))
        pcm.setflags(write=False)
        self._memory[key] = pcm
        return pcm

    def speak(self, text: str, voice: Voice = Voice()) -> Pcm:
        """``text`` as PCM: from memory, else from the disk cache, else rendered and cached (blocking)."""
        key = cache_key(text, voice)
        if key in self._memory:
            return self._memory[key]
        path = self.cache_dir / key
        if path.exists():
            return self._remember(key, np.fromfile(path, dtype="<i2").astype(np.int16))
        pcm = synthesize(text, voice)
        self.renders += 1
        tmp = path.with_suffix(".tmp")
        pcm.astype("<i2").tofile(tmp)
        os.replace(tmp, path)
        return self._remember(key, pcm)

    def load(self, path: str | Path) -> Pcm:
        """An audio file as PCM, decoded once (blocking)."""
        key = f"file:{Path(path).resolve()}"
        if key not in self._memory:
            return self._remember(key, decode_file(path))
        return self._memory[key]

    async def speak_async(self, text: str, voice: Voice = Voice()) -> Pcm:
        """``speak`` off the event loop."""
        return await asyncio.to_thread(self.speak, text, voice)

    async def load_async(self, path: str | Path) -> Pcm:
        """``load`` off the event loop."""
        return await asyncio.to_thread(self.load, path)


# ------------------------------------------------------------------------------------------------
# Tones


def tone(frequencies: Sequence[float], seconds: float, *, amplitude: float = 0.25) -> Pcm:
    """A steady tone: the sum of ``frequencies`` at ``amplitude`` (fraction of full scale) per component."""
    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    signal = sum(np.sin(2 * np.pi * f * t) for f in frequencies) if frequencies else np.zeros(n)
    return np.clip(np.asarray(signal) * amplitude * 32767, -32768, 32767).astype(np.int16)


def silence(seconds: float) -> Pcm:
    """``seconds`` of silence, rounded to whole samples."""
    return np.zeros(int(round(seconds * RATE)), dtype=np.int16)


def cadence(frequencies: Sequence[float], pattern: Sequence[float], *, amplitude: float = 0.25) -> Pcm:
    """One period of an on/off cadence: ``pattern`` alternates on and off durations in seconds."""
    parts = [
        tone(frequencies, duration, amplitude=amplitude) if index % 2 == 0 else silence(duration)
        for index, duration in enumerate(pattern)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def ringback(pattern: Sequence[float] = (2.0, 4.0), frequencies: Sequence[float] = (440.0, 480.0)) -> Pcm:
    """One ringback period (default North American: 440+480 Hz, 2 s on, 4 s off); loop it."""
    return cadence(frequencies, pattern)


def reorder() -> Pcm:
    """One period of reorder / fast busy (480+620 Hz, 0.25 s on, 0.25 s off); loop it."""
    return cadence((480.0, 620.0), (0.25, 0.25))


def hold_music() -> Pcm:
    """A gentle generated hold loop (C-E-G arpeggio, soft, with gaps) for queues without a music file.

    Its notes (262, 330, 392 Hz) stay clear of the test tones the suite uses to tell parties apart.
    """
    notes = []
    for frequency in (261.63, 329.63, 392.0, 329.63):
        note = tone((frequency,), 0.4, amplitude=0.12).astype(np.float64)
        envelope = np.minimum(1.0, np.minimum(np.arange(len(note)), np.arange(len(note))[::-1]) / 400.0)
        notes.append((note * envelope).astype(np.int16))
        notes.append(silence(0.1))
    notes.append(silence(0.6))
    return np.concatenate(notes)


def beep(frequency: float = 1000.0, seconds: float = 0.2) -> Pcm:
    """A short beep."""
    return tone((frequency,), seconds, amplitude=0.3)
