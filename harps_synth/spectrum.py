"""Render a synthetic HARPS spectrum on any wavelength grid.

Order of operations (as light travels)::

    star (rest frame): continuum x [forest + strong lines + molecular bands]
    -> rotation (Gray's kernel)  -> Doppler shift by RV (barycentric frame)
    -> x telluric transmission (observatory frame, i.e. at +BERV in the
       barycentric frame)  -> instrumental Gaussian (R = 115,000)
    -> averaged over each output pixel -> x instrument response
    -> CCD gap zeros -> photon and read noise for the requested S/N.

Two numerical modes give the same physics at different cost:

profile mode (output step <= ``PROFILE_MAX_STEP`` = 0.2 A, :mod:`harps_synth.profile`)
    Optical depths on a uniform ``ln lambda`` grid of 0.4 km/s; weak lines
    are deposited and convolved with their Voigt profiles, rotation,
    Doppler shift and instrument by FFT with analytic kernels.  About
    0.2 s for the full 0.01 A grid (313,201 pixels).
coarse mode (output step > 0.2 A, :mod:`harps_synth.coarse`)
    Each weak line contributes its exact equivalent width (curve of growth
    of its Voigt profile) spread over the output bins with its broadened
    Gaussian width; strong lines and bands are integrated over each bin
    from points dense near line cores and band heads.  A few ms for a 1 A
    grid.  Approximations: overlapping lines in a bin add their equivalent
    widths until the bin saturates at the core depth, and strong-line
    cores are not rotationally broadened (irrelevant once a bin is wider
    than the broadening).  Agrees with the full-resolution spectrum
    averaged over the same bins to 1-2 % rms.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from harps_data import harps
from harps_synth import physics
from harps_synth.coarse import coarse_spectrum
from harps_synth.exposure import GAIN, READ_NOISE_NATIVE, SpectrumParams
from harps_synth.profile import profile_spectrum

__all__ = ["SpectrumParams", "gap_mask", "noise_scale", "normalized_spectrum", "render",
           "render_truth", "response"]

#: Largest output step (Angstrom) rendered in profile mode.
PROFILE_MAX_STEP = 0.2


def normalized_spectrum(p: SpectrumParams, wave: np.ndarray, *,
                        tellurics: bool = True) -> np.ndarray:
    """Noiseless continuum-normalised spectrum, tellurics included unless switched off.

    Parameters
    ----------
    p : SpectrumParams
    wave : numpy.ndarray
        Shape ``(N,)``, barycentric air wavelengths in Angstrom, increasing
        (normally ``harps_data.harps.archive_grid(step)``).
    tellurics : bool
        False leaves the telluric transmission out: the star as seen
        through the instrument above the atmosphere's lines (the ground
        truth of stellar/telluric separation, :func:`render_truth`).

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``, float64, 1 in the continuum; no CCD gap.
    """
    step = float(np.median(np.diff(wave))) if len(wave) > 1 else harps.WAVE_STEP
    if step <= PROFILE_MAX_STEP:
        return profile_spectrum(p, wave, tellurics=tellurics)
    return coarse_spectrum(p, wave, tellurics=tellurics)


def response(wave: np.ndarray, p: SpectrumParams) -> np.ndarray:
    """Stellar continuum times instrument and atmosphere response (relative photons).

    Planck photon flux at Teff, HARPS throughput (peaking near 5800 A),
    atmospheric extinction ``0.09 (lambda/5500)^-4 + 0.03`` mag per airmass,
    and a 2 % echelle-order ripple left by the blaze correction.
    """
    topo = wave / (1.0 + p.berv / harps.C_KMS)
    throughput, ext_mag = _static_response(float(wave[0]), float(wave[-1]), len(wave))
    extinction = np.exp(-0.4 * math.log(10.0) * p.airmass * ext_mag)
    ripple = 1.0 + 0.02 * np.cos(2.0 * math.pi * harps.ECHELLE_CONSTANT / topo)
    return physics.continuum(wave, p.teff) * throughput * extinction * ripple


@functools.lru_cache(maxsize=4)
def _static_response(w0: float, w1: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Throughput and extinction (mag per airmass) on a uniform grid."""
    wave = np.linspace(w0, w1, n)
    return (np.exp(-0.5 * ((wave - 5800.0) / 1350.0) ** 2),
            0.09 * (wave / 5500.0) ** -4 + 0.03)


def gap_mask(wave: np.ndarray, berv: float) -> np.ndarray:
    """Pixels inside the CCD gap, which sits at fixed detector wavelengths (moves with BERV)."""
    return harps.in_ccd_gap(wave, harps.ccd_gap(berv))


def noise_scale(expected: np.ndarray, snr: float, read_noise: float) -> float:
    """Electrons per unit of ``expected`` flux giving median per-pixel S/N ``snr``.

    Solves ``x / sqrt(x + r^2) = snr`` for the median pixel: the S/N is a
    monotonic function of the flux, so the median S/N is that of the
    median flux.
    """
    s2 = snr * snr
    x = 0.5 * (s2 + math.sqrt(s2 * s2 + 4.0 * s2 * read_noise ** 2))
    return x / float(np.median(expected))


def render(obs, wave: np.ndarray, *, noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Flux and error of one observation on a wavelength grid, in adu.

    Parameters
    ----------
    obs : Observation
        Anything with ``params`` (:class:`SpectrumParams`), ``snr`` (median
        S/N per 0.01 A pixel) and ``noise_rng()`` -- normally an
        :class:`harps_synth.observations.Observation`.
    wave : numpy.ndarray
        Shape ``(N,)``, barycentric air wavelengths in Angstrom, uniform
        step between 0.01 and 10 A.
    noise : bool
        False returns the expected (noiseless) flux.

    Returns
    -------
    flux : numpy.ndarray
        Shape ``(N,)``, float32, adu per native 0.01 A pixel (a coarser
        pixel holds the mean of the native pixels it covers, so flux levels
        do not depend on the grid); exact zeros in the CCD gap.
    err : numpy.ndarray
        Shape ``(N,)``, float32, adu: the 1-sigma noise (photon and read
        noise) of that mean; NaN in the CCD gap.  The median S/N per pixel
        is ``obs.snr`` on the 0.01 A grid and ``obs.snr * sqrt(step / 0.01)``
        on coarser ones.
    """
    p = obs.params
    step = float(np.median(np.diff(wave))) if len(wave) > 1 else harps.WAVE_STEP
    binning = max(step / harps.WAVE_STEP, 1.0)
    expected = normalized_spectrum(p, wave) * response(wave, p)
    gap = gap_mask(wave, p.berv)
    electrons = expected * noise_scale(expected[~gap], obs.snr, READ_NOISE_NATIVE)
    sigma = np.sqrt((np.maximum(electrons, 0.0) + READ_NOISE_NATIVE ** 2) / binning)
    if noise:
        electrons = electrons + sigma * obs.noise_rng().standard_normal(len(wave))
    flux = (electrons / GAIN).astype(np.float32)
    err = (sigma / GAIN).astype(np.float32)
    flux[gap] = 0.0
    err[gap] = np.nan
    return flux, err


def render_truth(obs, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stellar flux and telluric transmission behind ``render(obs, wave, noise=False)``.

    Parameters
    ----------
    obs : Observation
        As for :func:`render`.
    wave : numpy.ndarray
        Shape ``(N,)``, barycentric air wavelengths in Angstrom (the grid
        given to :func:`render`).

    Returns
    -------
    stellar : numpy.ndarray
        Shape ``(N,)``, float32, adu: the noiseless flux with the telluric
        transmission switched off, on the same scale (response, exposure
        level) as the observed flux; exact zeros in the CCD gap.
    transmission : numpy.ndarray
        Shape ``(N,)``, float32, dimensionless: noiseless observed flux
        divided by ``stellar`` -- the telluric transmission as the
        instrument records it (convolved and binned with the star), in the
        barycentric frame of ``wave``; NaN in the CCD gap.
    """
    p = obs.params
    gap = gap_mask(wave, p.berv)
    observed = normalized_spectrum(p, wave)
    star = normalized_spectrum(p, wave, tellurics=False)
    shape = response(wave, p)
    # the exposure level of render(): fixed by the observed (telluric) spectrum
    electrons_per_unit = noise_scale((observed * shape)[~gap], obs.snr, READ_NOISE_NATIVE)
    stellar = (star * shape * electrons_per_unit / GAIN).astype(np.float32)
    transmission = (observed / star).astype(np.float32)
    stellar[gap] = 0.0
    transmission[gap] = np.nan
    return stellar, transmission
