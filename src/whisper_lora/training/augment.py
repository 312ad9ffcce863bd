"""Audio augmentation of training clips: speed perturbation and added noise.

SpecAugment, the third lever, is Whisper's own (config.apply_spec_augment: the encoder masks
time steps and mel bins of its input while training); train.py switches it on. These two work on
the waveform, before features are computed, so they apply packed or not.

Speed perturbation (Ko et al. 2015, Kaldi's recipe): each clip is played at 0.9x, 1.0x or 1.1x,
changing tempo and pitch together, as a resampling does: new voices for free. Rows with their own
segment times are left at 1.0x (their times would no longer match), and so is a clip that would
grow past the 30-s window. Added noise: white noise at a random signal-to-noise ratio, for
recordings that are cleaner than what the model will hear.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from ..audio import N_SAMPLES, SAMPLE_RATE

SPEED_FACTORS = (0.9, 1.0, 1.1)
NOISE_SNR_SPAN_DB = 20.0  # SNR drawn uniformly in [noise_snr, noise_snr + 20] dB
NOISE_SHARE = 0.5  # share of clips that get noise; the rest stay clean


@dataclass(frozen=True)
class Augment:
    speed_perturb: bool = False
    noise_snr: float | None = None  # lowest SNR in dB of the added noise; None: no noise
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.speed_perturb or self.noise_snr is not None

    def __call__(self, samples: np.ndarray, index: int, draw: int, has_segments: bool = False) -> np.ndarray:
        """samples (16 kHz) of item `index`, augmented; `draw` counts the item's reads, so every
        epoch hears a different version and a rerun with the same seed the same ones."""
        rng = np.random.default_rng((self.seed, index, draw))
        if self.speed_perturb and not has_segments:
            samples = speed(samples, float(rng.choice(SPEED_FACTORS)))
        if self.noise_snr is not None and rng.random() < NOISE_SHARE:
            samples = add_noise(samples, self.noise_snr + rng.random() * NOISE_SNR_SPAN_DB, rng)
        return samples


def speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play `samples` `factor` times as fast (pitch moves with it); unchanged when the result
    would not fit Whisper's window."""
    if factor == 1.0 or len(samples) / factor > N_SAMPLES:
        return samples
    # Read as if recorded at SAMPLE_RATE * factor, then resampled to SAMPLE_RATE: len / factor samples.
    return soxr.resample(samples, SAMPLE_RATE * factor, SAMPLE_RATE).astype(np.float32)


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(samples.astype(np.float64) ** 2))
    if power == 0.0:
        return samples
    noise = rng.standard_normal(len(samples)) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(samples + noise, -1.0, 1.0).astype(np.float32)
