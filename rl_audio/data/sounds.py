"""Procedural sound classes and backgrounds for the synthetic needle-in-a-haystack builder.

SpotSound (arXiv:2604.13023, §3.1) mixes AudioSet/VGGSound foregrounds into Walking-Tours ambience. Nothing can be
downloaded here, so :data:`SOUND_CLASSES` synthesises foregrounds from a few parameters drawn per instance, each
class with several caption-style queries, and :data:`BACKGROUNDS` synthesises ambience (coloured noise, mains hum,
babble-like modulated noise). Every generator returns a float64 waveform of unit RMS, shape ``(n,)``.

Captions of different classes share few content words, so that negatives (``negatives.py``) exist for every clip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Generator = Callable[[np.random.Generator, int, int], np.ndarray]  # (rng, n_samples, sr) -> (n_samples,)

FADE_SECONDS = 0.01


def unit_rms(x: np.ndarray) -> np.ndarray:
    """Scale ``x`` to RMS 1 (a zero signal is returned unchanged)."""
    rms = float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0
    return x / rms if rms > 0 else x


def _fade(x: np.ndarray, sr: int) -> np.ndarray:
    """Raised-cosine fade in and out, so that insertion leaves no click outside the labelled window."""
    n = min(int(FADE_SECONDS * sr), x.size // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def _sweep(freq: np.ndarray, sr: int) -> np.ndarray:
    """A sinusoid following the instantaneous frequency ``freq`` (Hz, shape (n,))."""
    return np.sin(2 * np.pi * np.cumsum(freq) / sr)


def _shaped_noise(rng: np.random.Generator, n: int, sr: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """White noise filtered in the frequency domain by ``gain(freqs_hz)``."""
    size = 1 << max(n - 1, 1).bit_length()  # a power of two: FFTs of lengths with large prime factors are slow
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size, 1.0 / sr)
    return np.fft.irfft(spectrum * gain(freqs), size)[:n]


def _band(low: float, high: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda f: ((f >= low) & (f <= high)).astype(float)


# Foregrounds -------------------------------------------------------------------------------------------------


def _tone(rng, n, sr):
    return _sweep(np.full(n, rng.uniform(1000, 4000)), sr)


def _rising_chirp(rng, n, sr):
    f0, f1 = rng.uniform(300, 800), rng.uniform(2000, 5000)
    return _sweep(np.geomspace(f0, f1, n), sr)


def _falling_chirp(rng, n, sr):
    return _sweep(np.geomspace(rng.uniform(2000, 5000), rng.uniform(300, 800), n), sr)


def _noise_burst(rng, n, sr):
    return _shaped_noise(rng, n, sr, _band(rng.uniform(500, 2000), min(sr / 2, 7500)))


def _pulses(rng, n, sr, rate, pulse: Callable[[int], np.ndarray]) -> np.ndarray:
    """Pulses at ``rate`` per second (jittered by up to 10 %), each ``pulse(room)`` samples long at most."""
    out, position = np.zeros(n), 0.0
    while position < n:
        start = int(position)
        piece = pulse(n - start)
        out[start : start + piece.size] += piece
        position += sr / rate * rng.uniform(0.9, 1.1)
    return out


def _click_train(rng, n, sr):
    length = int(0.003 * sr)
    decay = np.exp(-np.arange(length) / (0.0007 * sr))
    return _pulses(rng, n, sr, rng.uniform(8, 20), lambda room: (rng.standard_normal(length) * decay)[:room])


def _knock(rng, n, sr):
    length, freq = int(0.08 * sr), rng.uniform(150, 400)
    t = np.arange(length) / sr
    knock = np.sin(2 * np.pi * freq * t) * np.exp(-t / rng.uniform(0.015, 0.03))
    return _pulses(rng, n, sr, rng.uniform(3, 6), lambda room: knock[:room])


def _am_tone(rng, n, sr):
    t = np.arange(n) / sr
    envelope = 1 + 0.9 * np.sin(2 * np.pi * rng.uniform(3, 8) * t)
    return envelope * _sweep(np.full(n, rng.uniform(400, 1200)), sr)


def _bell(rng, n, sr):
    t, f0 = np.arange(n) / sr, rng.uniform(400, 1200)
    tau = rng.uniform(0.3, 0.6) * n / sr  # decays over the event but stays audible to its end
    partials = [(1.0, 1.0), (2.76, 0.6), (5.4, 0.4), (8.93, 0.25)]  # inharmonic ratios of a struck bar
    return sum(a * np.sin(2 * np.pi * f0 * r * t) * np.exp(-t * r**0.5 / tau) for r, a in partials)


def _siren(rng, n, sr):
    t = np.arange(n) / sr
    centre, depth, rate = rng.uniform(600, 1500), rng.uniform(200, 500), rng.uniform(0.5, 2.0)
    return _sweep(centre + depth * np.sin(2 * np.pi * rate * t), sr)


def _rumble(rng, n, sr):
    noise = unit_rms(_shaped_noise(rng, n, sr, _band(20, rng.uniform(100, 180))))
    return noise + 0.5 * _sweep(np.full(n, rng.uniform(40, 80)), sr)


@dataclass(frozen=True)
class SoundClass:
    """A procedural foreground class: its caption-style queries and a generator ``(rng, n, sr) -> (n,)``."""

    name: str
    captions: tuple[str, ...]
    generate: Generator

    def render(self, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
        """One instance of ``n`` samples: random parameters, 10 ms fades, unit RMS."""
        return unit_rms(_fade(self.generate(rng, n, sr), sr))


SOUND_CLASSES: dict[str, SoundClass] = {
    c.name: c
    for c in (
        SoundClass("tone", ("a high-pitched beep", "a steady electronic beep", "a constant pure tone"), _tone),
        SoundClass("rising_chirp", ("a rising whistle", "an upward chirp", "a sweep going up"), _rising_chirp),
        SoundClass("falling_chirp", ("a falling whistle", "a downward chirp", "a descending sweep"), _falling_chirp),
        SoundClass("noise_burst", ("a burst of white noise", "a short hiss", "a blast of static"), _noise_burst),
        SoundClass("click_train", ("a rapid series of clicks", "a ticking sound", "fast clicking"), _click_train),
        SoundClass("am_tone", ("a pulsing tone", "a warbling hum", "a throbbing electronic note"), _am_tone),
        SoundClass("bell", ("a bell ringing", "a chime that fades away", "a struck metal bell"), _bell),
        SoundClass("siren", ("a wailing siren", "an alarm siren", "an emergency vehicle siren"), _siren),
        SoundClass("rumble", ("a low rumble", "a deep rumbling", "distant thunder"), _rumble),
        SoundClass("knock", ("someone knocking on a door", "repeated knocks", "wooden knocking"), _knock),
    )
}
"""Procedural foreground classes by name (10 classes, 3 captions each)."""


# Backgrounds -------------------------------------------------------------------------------------------------


def _coloured_noise(rng, n, sr):
    # power ~ 1/f**beta: 0 white, 1 pink, 2 brown; below 20 Hz held flat to avoid a DC drift
    beta = rng.choice([0.0, 1.0, 2.0])
    return _shaped_noise(rng, n, sr, lambda f: np.maximum(f, 20.0) ** (-beta / 2))


def _hum(rng, n, sr):
    t, base = np.arange(n) / sr, rng.choice([50.0, 60.0])
    harmonics = sum(
        rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) for k in range(1, 6)
    )
    return unit_rms(harmonics) + 0.3 * unit_rms(_shaped_noise(rng, n, sr, lambda f: np.maximum(f, 20.0) ** -0.5))


def _babble(rng, n, sr):
    """Several speech-band noise streams, each modulated at a syllabic rate (~2-6 Hz)."""
    out = np.zeros(n)
    for _ in range(rng.integers(3, 7)):
        carrier = _shaped_noise(rng, n, sr, _band(300, 3000))
        # the envelope is band-limited to a few Hz: draw it at 100 Hz and interpolate, a fraction of the FFT cost
        coarse = _shaped_noise(rng, n * 100 // sr + 2, 100, _band(0.5, rng.uniform(3, 6)))
        envelope = np.interp(np.arange(n) / sr, np.arange(coarse.size) / 100, coarse)
        out += unit_rms(carrier) * np.maximum(unit_rms(envelope), 0.0)
    return out


BACKGROUNDS: dict[str, Generator] = {"coloured_noise": _coloured_noise, "hum": _hum, "babble": _babble}
"""Procedural background generators by name."""


def render_background(rng: np.random.Generator, n: int, sr: int) -> tuple[np.ndarray, str]:
    """A unit-RMS ambience of ``n`` samples mixing one or two background kinds; returns ``(wav, description)``."""
    names = sorted(BACKGROUNDS)
    picked = rng.choice(len(names), size=int(rng.integers(1, 3)), replace=False)
    out = np.zeros(n)
    for index in picked:
        out += rng.uniform(0.5, 1.0) * unit_rms(BACKGROUNDS[names[index]](rng, n, sr))
    return unit_rms(out), "+".join(names[i] for i in sorted(picked))
