"""Put any HARPS 1D spectrum on the common grid of the learned layer.

Recipe, in order (grid facts come from :mod:`harps_data.harps`, never from here):

1. **Read and check.**  Pixels that are non-finite or absurd
   (:func:`harps_data.fitsio.bad_pixel_mask`) or exactly zero (the archive fills
   the CCD gap and missing data with zeros) are invalid.  More than
   ``fitsio.MAX_BAD_FRACTION`` absurd pixels flags the whole spectrum as
   garbage.
2. **Frame.**  Barycentric as archived (``frame="barycentric"``), or the
   observatory (topocentric) frame, ``lambda_obs = lambda_bary / (1 +
   BERV / c)`` with the DRS BERV (``frame="observatory"``): there the
   telluric lines and the CCD gap stay at fixed pixels.
3. **Resample** onto ``harps.model_grid(step)`` (``MODEL_WAVE_MIN`` to
   ``MODEL_WAVE_MAX``), choosing by the source grid (:func:`resample`):

   * same step, offset by a whole number of pixels (every archived s1d and
     ADP file on the native 0.01 A grid): **exact index copy**, no
     arithmetic on the flux;
   * target step at most 1.5 times the source step (sub-pixel offsets,
     the observatory frame): **linear interpolation**; a target pixel is
     valid only when both source neighbours are;
   * coarser target (the fast configurations, e.g. 0.1 or 0.5 A):
     **flux-conserving bin averaging**: the source is taken as constant
     over each pixel, its running integral (cumulative sum of flux times
     pixel width, valid pixels only) is interpolated at the target bin
     edges, and each bin gets integral / valid width; a bin is valid when
     valid source pixels cover at least half of it.

4. **Mask** the CCD gap ``MODEL_GAP`` (with a margin for BERV) and the
   zero padding up to the padded length.
5. **Normalise**: divide by the median flux of the valid pixels.
6. **Flag** degenerate spectra: unreadable, garbage, fewer than
   ``min_valid_fraction`` valid pixels, non-positive median, no BERV when
   the observatory frame is asked for.  A flagged spectrum comes back with
   zero flux and an all-False mask, so no pixel of it reaches a model.

Output per spectrum (:class:`Preprocessed`): normalised flux ``(L,)``
float32 (dimensionless, 1 = median), mask ``(L,)`` bool, the scale (adu)
and the flags.  Invalid pixels and padding hold 0 in the flux.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from harps_data import fitsio, harps

FRAMES = ("barycentric", "observatory")

# Bit flags of a spectrum; any flag set means the model never sees it.
FLAG_INVALID = 1  #: unreadable or not a HARPS 1D spectrum (fitsio.InvalidSpectrum)
FLAG_GARBAGE = 2  #: more than fitsio.MAX_BAD_FRACTION non-finite or absurd pixels
FLAG_FEW_VALID = 4  #: fewer than min_valid_fraction of the grid is valid
FLAG_BAD_MEDIAN = 8  #: median flux of the valid pixels is not positive
FLAG_NO_BERV = 16  #: observatory frame asked for, but the header has no BERV
FLAG_NAMES = {FLAG_INVALID: "invalid", FLAG_GARBAGE: "garbage", FLAG_FEW_VALID: "few_valid",
              FLAG_BAD_MEDIAN: "bad_median", FLAG_NO_BERV: "no_berv"}

#: Largest target/source step ratio resampled by linear interpolation.
LINEAR_MAX_RATIO = 1.5
#: Fraction of a coarse bin that valid source pixels must cover.
MIN_BIN_COVERAGE = 0.5


def flag_names(flags: int) -> list[str]:
    """Names of the bits set in ``flags`` (``[]`` for a usable spectrum)."""
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]


@dataclass(frozen=True)
class Grid:
    """The common wavelength grid, with its zero padding.

    Attributes
    ----------
    step : float
        Sampling, Angstrom; ``harps.WAVE_STEP`` (0.01) is full resolution.
    multiple : int
        The padded length is the smallest multiple of this (a power of two,
        ``2**n_conv_layers``) that holds the grid, so that every stride-2
        layer halves the length exactly.  With 0.01 A and 15 layers the
        padded length is ``harps.MODEL_PADDED`` (327,680 = 2**18 + 2**16).
    """

    step: float = harps.WAVE_STEP
    multiple: int = 2**15

    def __post_init__(self) -> None:
        if not (isinstance(self.step, (int, float)) and math.isfinite(self.step)
                and harps.WAVE_STEP <= self.step <= 10.0):
            raise ValueError(f"grid step must be between {harps.WAVE_STEP} and 10 Angstrom, "
                             f"got {self.step!r}")
        m = self.multiple
        if not isinstance(m, int) or m < 1 or m & (m - 1):
            raise ValueError(f"grid multiple must be a power of two, got {m!r}")

    @property
    def npix(self) -> int:
        """Samples of ``harps.model_grid(step)``."""
        return int(round((harps.MODEL_WAVE_MAX - harps.MODEL_WAVE_MIN) / self.step)) + 1

    @property
    def padded(self) -> int:
        """Model input length ``L``, a multiple of ``multiple``."""
        return -(-self.npix // self.multiple) * self.multiple

    @property
    def wave(self) -> np.ndarray:
        """Grid wavelengths, shape ``(npix,)``, float64, Angstrom."""
        return harps.model_grid(self.step)

    def region(self) -> np.ndarray:
        """Pixels that can carry signal: shape ``(padded,)`` bool, False in gap and padding."""
        out = np.zeros(self.padded, dtype=bool)
        out[:self.npix] = ~harps.in_ccd_gap(self.wave, harps.MODEL_GAP)
        return out

    def describe(self) -> dict:
        """JSON-ready description (stored in checkpoints and artefacts)."""
        wave = self.wave
        return {"step": self.step, "wave_min": float(wave[0]), "wave_max": float(wave[-1]),
                "npix": self.npix, "padded": self.padded, "multiple": self.multiple,
                "gap": list(harps.MODEL_GAP), "unit": "Angstrom"}


@dataclass(frozen=True)
class Recipe:
    """Everything that fixes the preprocessing of a spectrum.

    Attributes
    ----------
    grid : Grid
    frame : str
        ``"barycentric"`` (as archived) or ``"observatory"``.
    min_valid_fraction : float
        Fewer valid pixels than this fraction of the unmasked grid flags
        the spectrum (``FLAG_FEW_VALID``).
    """

    grid: Grid = field(default_factory=Grid)
    frame: str = "barycentric"
    min_valid_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise ValueError(f"frame must be one of {', '.join(FRAMES)}, got {self.frame!r}")
        if not 0.0 < self.min_valid_fraction <= 1.0:
            raise ValueError(f"min_valid_fraction must be in (0, 1], got "
                             f"{self.min_valid_fraction!r}")

    def describe(self) -> dict:
        """JSON-ready description: grid, frame, normalisation and flagging rules."""
        return {
            "grid": self.grid.describe(), "frame": self.frame,
            "normalisation": "flux / median(flux over valid pixels); gap, padding and "
                             "invalid pixels set to 0 and masked",
            "min_valid_fraction": self.min_valid_fraction,
            "max_bad_fraction": fitsio.MAX_BAD_FRACTION,
            "resampling": "index copy (whole-pixel offset), linear (step ratio <= "
                          f"{LINEAR_MAX_RATIO}), else flux-conserving bin average",
        }

    @classmethod
    def from_description(cls, d: dict) -> Recipe:
        """Inverse of :meth:`describe`."""
        return cls(Grid(d["grid"]["step"], d["grid"]["multiple"]), d["frame"],
                   d["min_valid_fraction"])


@dataclass
class Preprocessed:
    """One spectrum on the common grid.

    Attributes
    ----------
    flux : numpy.ndarray
        Shape ``(L,)``, float32, flux / scale (dimensionless); 0 where masked.
    mask : numpy.ndarray
        Shape ``(L,)``, bool, True where the flux enters the loss.
    scale : float
        Median flux of the valid pixels, adu (NaN when there is none).
    flags : int
        ``FLAG_*`` bits; non-zero means unusable (flux 0, mask all False).
    reason : str
        Empty for usable spectra, otherwise what is wrong.
    method : str
        Resampling used: ``"index"``, ``"linear"``, ``"bin"`` or ``""``.
    berv : float
        Barycentric Earth radial velocity of the exposure, km/s (header
        ``ESO DRS BERV``; NaN when unknown): the telluric lines sit at
        ``lambda_bary / (1 + berv / c)`` in the observatory frame.
    """

    flux: np.ndarray
    mask: np.ndarray
    scale: float
    flags: int
    reason: str = ""
    method: str = ""
    berv: float = math.nan


def to_frame(wave: np.ndarray, berv: float | None, frame: str) -> np.ndarray:
    """Barycentric wavelengths (Angstrom) in ``frame``; BERV in km/s."""
    if frame == "barycentric":
        return wave
    if berv is None:
        raise ValueError("the observatory frame needs the BERV")
    return wave / (1.0 + berv / harps.C_KMS)


def _bin_average(wave, flux, valid, target, step):
    """Flux-conserving average of a piecewise-constant source over target bins."""
    edges = np.empty(len(wave) + 1)
    edges[1:-1] = 0.5 * (wave[1:] + wave[:-1])
    edges[0] = wave[0] - 0.5 * (wave[1] - wave[0])
    edges[-1] = wave[-1] + 0.5 * (wave[-1] - wave[-2])
    width = np.diff(edges) * valid
    c_flux = np.concatenate([[0.0], np.cumsum(flux * width)])
    c_valid = np.concatenate([[0.0], np.cumsum(width)])
    lo, hi = target - 0.5 * step, target + 0.5 * step
    covered = np.interp(hi, edges, c_valid) - np.interp(lo, edges, c_valid)
    integral = np.interp(hi, edges, c_flux) - np.interp(lo, edges, c_flux)
    ok = covered >= MIN_BIN_COVERAGE * step
    out = np.where(ok, integral / np.where(ok, covered, 1.0), 0.0)
    return out, ok


def resample(wave: np.ndarray, flux: np.ndarray, valid: np.ndarray,
             target: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Resample a spectrum onto a uniform target grid (see the module docstring).

    Parameters
    ----------
    wave : numpy.ndarray
        Shape ``(N,)``, strictly increasing, Angstrom.
    flux : numpy.ndarray
        Shape ``(N,)``, any flux unit; values at invalid pixels are ignored.
    valid : numpy.ndarray
        Shape ``(N,)``, bool.
    target : numpy.ndarray
        Shape ``(M,)``, uniform, Angstrom.

    Returns
    -------
    flux : numpy.ndarray
        Shape ``(M,)``, float64, same unit; 0 where not valid.
    valid : numpy.ndarray
        Shape ``(M,)``, bool; False outside the source range.
    method : str
        ``"index"``, ``"linear"`` or ``"bin"``.
    """
    flux = np.where(valid, flux, 0.0).astype(np.float64)
    src_step = (wave[-1] - wave[0]) / (len(wave) - 1)
    step = (target[-1] - target[0]) / (len(target) - 1) if len(target) > 1 else src_step
    offset = (target[0] - wave[0]) / src_step
    uniform = np.abs(wave - (wave[0] + src_step * np.arange(len(wave)))).max() < 1e-4 * src_step
    if (uniform and abs(step / src_step - 1.0) * len(target) < 1e-3
            and abs(offset - round(offset)) < 1e-3):
        idx = np.arange(len(target)) + int(round(offset))
        inside = (idx >= 0) & (idx < len(wave))
        safe = np.clip(idx, 0, len(wave) - 1)
        ok = inside & valid[safe]
        return np.where(ok, flux[safe], 0.0), ok, "index"
    if step <= LINEAR_MAX_RATIO * src_step:
        i = np.clip(np.searchsorted(wave, target, side="right") - 1, 0, len(wave) - 2)
        frac = (target - wave[i]) / (wave[i + 1] - wave[i])
        inside = (target >= wave[0]) & (target <= wave[-1])
        ok = inside & (valid[i] | (frac == 1.0)) & (valid[i + 1] | (frac == 0.0))
        out = flux[i] * (1.0 - frac) + flux[i + 1] * frac
        return np.where(ok, out, 0.0), ok, "linear"
    out, ok = _bin_average(wave, flux, valid, target, step)
    return out, ok, "bin"


def _flagged(recipe: Recipe, flags: int, reason: str, scale: float = math.nan,
             method: str = "", berv: float = math.nan) -> Preprocessed:
    n = recipe.grid.padded
    return Preprocessed(np.zeros(n, np.float32), np.zeros(n, bool), scale, flags, reason, method,
                        berv)


def preprocess(spec: fitsio.Spectrum, recipe: Recipe) -> Preprocessed:
    """Preprocess one spectrum read by :func:`harps_data.fitsio.read_spectrum`.

    Parameters
    ----------
    spec : harps_data.fitsio.Spectrum
        Wavelengths in Angstrom (barycentric), flux in adu.
    recipe : Recipe

    Returns
    -------
    Preprocessed
        Flagged (zero flux, empty mask) when degenerate; never raises for
        bad data.
    """
    wave, flux = spec.wave, spec.flux
    berv = math.nan if spec.meta.berv is None else float(spec.meta.berv)
    if len(wave) < 2 or not np.all(np.isfinite(wave)) or np.any(np.diff(wave) <= 0):
        return _flagged(recipe, FLAG_INVALID, "wavelengths not finite and strictly increasing")
    flags, reasons = 0, []
    bad = fitsio.bad_pixel_mask(wave, flux)
    if bad.mean() > fitsio.MAX_BAD_FRACTION:
        flags |= FLAG_GARBAGE
        reasons.append(f"garbage: {bad.mean():.1%} of the pixels are non-finite or absurd")
    if recipe.frame == "observatory" and spec.meta.berv is None:
        return _flagged(recipe, flags | FLAG_NO_BERV, "; ".join(
            reasons + ["no BERV in the header for the observatory frame"]))
    valid = ~bad & (flux != 0)
    grid = recipe.grid
    resampled, ok, method = resample(to_frame(wave, spec.meta.berv, recipe.frame),
                                     flux, valid, grid.wave)
    region = grid.region()
    ok &= region[:grid.npix]
    fraction = ok.sum() / region.sum()
    if fraction < recipe.min_valid_fraction:
        flags |= FLAG_FEW_VALID
        reasons.append(f"few_valid: {fraction:.1%} of the grid is valid, "
                       f"{recipe.min_valid_fraction:.0%} needed")
    scale = float(np.median(resampled[ok])) if ok.any() else math.nan
    if not scale > 0:
        flags |= FLAG_BAD_MEDIAN
        reasons.append(f"bad_median: median flux {scale:.4g} adu is not positive")
    if flags:
        return _flagged(recipe, flags, "; ".join(reasons), scale, method, berv)
    out = np.zeros(grid.padded, np.float32)
    out[:grid.npix] = np.where(ok, resampled / scale, 0.0)
    mask = np.zeros(grid.padded, bool)
    mask[:grid.npix] = ok
    return Preprocessed(out, mask, scale, 0, "", method, berv)


def preprocess_file(path: str | os.PathLike, recipe: Recipe) -> Preprocessed:
    """Read and preprocess one file; unreadable files come back flagged ``FLAG_INVALID``."""
    try:
        spec = fitsio.read_spectrum(path)
    except fitsio.InvalidSpectrum as ex:
        return _flagged(recipe, FLAG_INVALID, f"invalid: {ex.reason}")
    return preprocess(spec, recipe)
