"""Render a synthetic HARPS spectrum on any wavelength grid.

Order of operations (as light travels)::

    star (rest frame): continuum x [forest + strong lines + molecular bands]
    -> rotation (Gray's kernel)  -> Doppler shift by RV (barycentric frame)
    -> x telluric transmission (observatory frame, i.e. at +BERV in the
       barycentric frame)  -> instrumental Gaussian (R = 115,000)
    -> averaged over each output pixel -> x instrument response
    -> CCD gap zeros -> photon and read noise for the requested S/N.

Two numerical modes give the same physics at different cost:

profile mode (output step <= ``PROFILE_MAX_STEP`` = 0.2 A)
    Optical depths on a uniform ``ln lambda`` grid of 0.4 km/s; weak lines
    are deposited and convolved with their Voigt profiles, rotation,
    Doppler shift and instrument by FFT with analytic kernels.  About
    0.3 s for the full 0.01 A grid (313,201 pixels).
coarse mode (output step > 0.2 A)
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
from typing import NamedTuple

import numpy as np
from scipy import fft, special

from ml import harps
from ml.synth import features, kernels, physics, telluric
from ml.synth import lines as ld

#: Largest output step (Angstrom) rendered in profile mode.
PROFILE_MAX_STEP = 0.2
#: Sampling of the internal ln-lambda grid in profile mode, km/s.
DV_FINE = 0.4
#: Margin of the internal grid beyond the output range, km/s.
MARGIN_KMS = 1500.0
#: Sampling of the (smooth) molecular band envelopes in coarse mode, Angstrom.
COARSE_SUBSTEP = 0.5
#: Lines weaker than this line-centre optical depth are skipped (profile
#: mode; coarse mode, whose pixels average over >= 0.2 A, skips tau < 1e-3).
TAU_MIN = 1e-4
TAU_MIN_COARSE = 1e-3
#: Second moment of the rotation kernel (limb darkening 0.6), in vsini units.
ROT_SIGMA = 0.474
#: CCD read noise, electrons (DRS CCD SIGDET in real headers: 4.7-4.9).
READ_NOISE_CCD = 4.9
#: Effective read noise per native 0.01 A pixel, electrons: the CCD noise
#: summed over about four detector pixels (extraction and resampling).
READ_NOISE_NATIVE = 2.0 * READ_NOISE_CCD
#: Detector gain, electrons per adu (DRS CCD CONAD in real headers: 1.36-1.42).
GAIN = 1.42
INSTRUMENT_FWHM = harps.C_KMS / harps.RESOLVING_POWER


class SpectrumParams(NamedTuple):
    """Physical parameters of one exposure.

    Attributes
    ----------
    teff : float
        Effective temperature, K.
    logg : float
        Surface gravity, log10 cgs.
    feh : float
        Metallicity [M/H], dex.
    vsini : float
        Projected rotation, km/s.
    rv : float
        Stellar barycentric radial velocity, km/s.
    berv : float
        Barycentric Earth radial velocity, km/s (DRS sign convention).
    airmass : float
        Mean airmass of the exposure.
    pwv : float
        Precipitable water vapour, mm.
    """

    teff: float
    logg: float
    feh: float
    vsini: float
    rv: float
    berv: float
    airmass: float
    pwv: float


# --------------------------------------------------------------------------
# Profile mode
# --------------------------------------------------------------------------

class _LogGrid(NamedTuple):
    lam: np.ndarray   # (n,) Angstrom
    ln0: float
    f: np.ndarray     # (n//2+1,) cycles per km/s
    desinc: np.ndarray  # undoes the linear-interpolation deposit
    instrument: np.ndarray


@functools.lru_cache(maxsize=4)
def _log_grid(wmin: float, wmax: float) -> _LogGrid:
    ln0 = math.log(wmin) - MARGIN_KMS / harps.C_KMS
    span = math.log(wmax) + MARGIN_KMS / harps.C_KMS - ln0
    n = fft.next_fast_len(int(math.ceil(span * harps.C_KMS / DV_FINE)) + 1, real=True)
    lam = np.exp(ln0 + np.arange(n) * DV_FINE / harps.C_KMS)
    f = np.fft.rfftfreq(n, d=DV_FINE)
    desinc = 1.0 / np.sinc(f * DV_FINE) ** 2
    return _LogGrid(lam, ln0, f, desinc, kernels.gauss_ft(f, INSTRUMENT_FWHM))


def _positions(grid: _LogGrid, wave: np.ndarray) -> np.ndarray:
    return (np.log(wave) - grid.ln0) * (harps.C_KMS / DV_FINE)


def _deposits(grid: _LogGrid, p: SpectrumParams, v_dopp: float) -> np.ndarray:
    """Optical depths per pixel before line broadening (velocity-integrated
    optical depth / pixel width); rows = forest damping classes + tellurics."""
    n = len(grid.lam)
    tau0, a = physics.forest(p.teff, p.logg, p.feh)
    keep = tau0 > TAU_MIN
    cls = kernels.damping_class(a[keep])
    pos = _positions(grid, ld.line_list().wave[keep])
    weight = tau0[keep] * (math.sqrt(math.pi) * v_dopp / DV_FINE)
    rows = np.empty((kernels.N_FOREST_CLASSES + 1, n))
    for c in range(kernels.N_FOREST_CLASSES):
        sel = cls == c
        rows[c] = kernels.linear_deposit(n, pos[sel], weight[sel])
    tl = telluric.telluric_lines()
    tau_t = telluric.optical_depths(p.airmass, p.pwv)
    pos_t = _positions(grid, tl.wave * (1.0 + p.berv / harps.C_KMS))
    rows[-1] = kernels.linear_deposit(n, pos_t, tau_t * (math.sqrt(math.pi) * telluric.DOPPLER_KMS
                                                         / DV_FINE))
    return rows


def _profile_mode(p: SpectrumParams, wave: np.ndarray) -> np.ndarray:
    grid = _log_grid(float(wave[0]), float(wave[-1]))
    n, f = len(grid.lam), grid.f
    v_dopp = physics.photosphere(p.teff, p.logg, p.feh).v_dopp
    spec = fft.rfft(_deposits(grid, p, v_dopp), axis=-1) * grid.desinc
    forest_ft = sum(spec[c] * kernels.voigt_ft(f, v_dopp, kernels.A_CLASSES[c])
                    for c in range(kernels.N_FOREST_CLASSES))
    tau = np.maximum(fft.irfft(forest_ft, n), 0.0)
    tau += features.strong_tau(grid.lam, features.strong_lines(p.teff, p.logg, p.feh))
    tau += features.band_tau(grid.lam, p.teff, p.logg, p.feh)
    absorbed = physics.line_depth(tau, physics.core_depth(grid.lam, p.teff))
    moved = fft.rfft(absorbed) * kernels.rotation_ft(f, p.vsini) * kernels.shift_ft(f, p.rv)
    stellar = 1.0 - fft.irfft(moved, n)
    tell_ft = spec[-1] * kernels.voigt_ft(f, telluric.DOPPLER_KMS,
                                          telluric.LORENTZ_KMS / telluric.DOPPLER_KMS)
    observed = stellar * np.exp(-np.maximum(fft.irfft(tell_ft, n), 0.0))
    smeared = 1.0 - fft.irfft(fft.rfft(1.0 - observed) * grid.instrument, n)
    return bin_average(grid.lam, smeared, wave)


def bin_edges(wave: np.ndarray) -> np.ndarray:
    """Pixel edges (Angstrom) of a sorted grid: mid-points, half a step outside the ends."""
    mid = 0.5 * (wave[1:] + wave[:-1])
    return np.concatenate([[2 * wave[0] - mid[0]], mid, [2 * wave[-1] - mid[-1]]])


def bin_average(x: np.ndarray, y: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """Average of the piecewise-linear function ``y(x)`` over each pixel of ``wave``.

    Parameters
    ----------
    x, y : numpy.ndarray
        Shape ``(n,)``, ``x`` increasing and covering every pixel.
    wave : numpy.ndarray
        Output pixel centres, shape ``(m,)``, increasing.

    Returns
    -------
    numpy.ndarray
        Shape ``(m,)``.
    """
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(x))])
    edges = bin_edges(wave)
    integral = np.interp(edges, x, cum)
    return np.diff(integral) / np.diff(edges)


# --------------------------------------------------------------------------
# Coarse mode
# --------------------------------------------------------------------------

def gaussian_bins(edges: np.ndarray, centre: np.ndarray, sigma: np.ndarray,
                  weight: np.ndarray) -> np.ndarray:
    """Distribute Gaussian-shaped weights exactly over bins.

    Parameters
    ----------
    edges : numpy.ndarray
        Bin edges, shape ``(m + 1,)``, increasing.
    centre, sigma, weight : numpy.ndarray
        Shape ``(k,)``: centres and widths (same unit as ``edges``) and
        the integral of each Gaussian.

    Returns
    -------
    numpy.ndarray
        Shape ``(m,)``: sum over Gaussians of weight times the fraction of
        the Gaussian inside each bin.
    """
    reach = np.ceil(4.0 * sigma / np.diff(edges).min()).astype(np.int64)
    narrow = reach <= 1
    out = _gaussian_bins_narrow(edges, centre[narrow], sigma[narrow], weight[narrow])
    for lo, hi in ((2, 4), (5, 16), (17, None)):
        sel = (reach >= lo) & (reach <= hi) if hi is not None else reach >= lo
        if sel.any():
            r = int(reach[sel].max())
            out += _gaussian_bins_reach(edges, centre[sel], sigma[sel], weight[sel], r)
    return out


def _gaussian_bins_narrow(edges: np.ndarray, centre: np.ndarray, sigma: np.ndarray,
                          weight: np.ndarray) -> np.ndarray:
    """Gaussians narrower than a quarter bin: only the two nearest bins share them
    (centres outside the grid are dropped)."""
    m = len(edges) - 1
    j = np.searchsorted(edges, centre) - 1  # bin of the centre
    inside = (j >= 0) & (j < m)
    j, centre, sigma, weight = j[inside], centre[inside], sigma[inside], weight[inside]
    d_lo, d_hi = centre - edges[j], edges[j + 1] - centre
    # only lines within 4 sigma of an edge share their weight with a neighbour
    near = np.flatnonzero(np.minimum(d_lo, d_hi) < 4.0 * sigma)
    scale = 1.0 / (math.sqrt(2.0) * sigma[near])
    below = 0.5 * weight[near] * special.erfc(d_lo[near] * scale)
    above = 0.5 * weight[near] * special.erfc(d_hi[near] * scale)
    # bins -1 and m (spare slots 0 and m + 1) collect what leaves the grid
    out = np.bincount(j + 1, weight, minlength=m + 2)
    jn = j[near] + 1
    out -= np.bincount(jn, below + above, minlength=m + 2)
    out += np.bincount(jn - 1, below, minlength=m + 2)
    out += np.bincount(jn + 1, above, minlength=m + 2)
    return out[1:m + 1]


def _gaussian_bins_reach(edges: np.ndarray, centre: np.ndarray, sigma: np.ndarray,
                         weight: np.ndarray, reach: int) -> np.ndarray:
    m = len(edges) - 1
    j = np.searchsorted(edges, centre)[:, None] + np.arange(-reach - 1, reach + 1)
    je = np.clip(j, 0, m)
    cdf = special.erf((edges[je] - centre[:, None]) * (1.0 / math.sqrt(2.0) / sigma)[:, None])
    frac = np.diff(cdf, axis=1) * (0.5 * weight)[:, None]
    # bins outside the grid go to two spare slots at either end
    jb = np.clip(j[:, :-1] + 1, 0, m + 1)
    return np.bincount(jb.ravel(), frac.ravel(), minlength=m + 2)[1:m + 1]


def _coarse_forest(p: SpectrumParams, edges: np.ndarray, v_dopp: float) -> np.ndarray:
    tau0, a = physics.forest(p.teff, p.logg, p.feh)
    keep = tau0 > TAU_MIN_COARSE
    wave = ld.line_list().wave[keep]
    width = kernels.reduced_width(tau0[keep], kernels.damping_class(a[keep]))
    depth = physics.core_depth_fast(wave, p.teff)
    ew = width * v_dopp * wave / harps.C_KMS * depth
    sigma_v = math.sqrt(0.5 * v_dopp ** 2 + (ROT_SIGMA * p.vsini) ** 2
                        + (INSTRUMENT_FWHM / 2.3548) ** 2)
    # a saturated line is about EW / D wide: spread it at least that much
    sigma = np.hypot(wave * sigma_v / harps.C_KMS, ew / (depth * math.sqrt(2.0 * math.pi)))
    centre = wave * (1.0 + p.rv / harps.C_KMS)
    return gaussian_bins(edges, centre, sigma, ew) / np.diff(edges)


def _coarse_telluric(p: SpectrumParams, edges: np.ndarray) -> np.ndarray:
    tl = telluric.telluric_lines()
    tau = telluric.optical_depths(p.airmass, p.pwv)
    cls = np.full(len(tau), len(kernels.A_CLASSES) - 1)
    ew = kernels.reduced_width(tau, cls) * telluric.DOPPLER_KMS * tl.wave / harps.C_KMS
    sigma_v = math.sqrt(0.5 * telluric.DOPPLER_KMS ** 2 + (INSTRUMENT_FWHM / 2.3548) ** 2)
    sigma = np.hypot(tl.wave * sigma_v / harps.C_KMS, ew / math.sqrt(2.0 * math.pi))
    centre = tl.wave * (1.0 + p.berv / harps.C_KMS)
    return gaussian_bins(edges, centre, sigma, ew) / np.diff(edges)


_OFFSETS = np.concatenate([-np.geomspace(1.0, 1e-3, 48), [0.0], np.geomspace(1e-3, 1.0, 48)])
_HEADS = np.array([b.wave for b in ld.BAND_HEADS])


def _feature_points(p: SpectrumParams, lo: float, hi: float) -> np.ndarray:
    """Rest-frame sample points for strong lines and bands: dense near line
    cores and band heads, sparse in the wings, the range ends included."""
    star = features.strong_lines(p.teff, p.logg, p.feh)
    cores = star.wave[:, None] + star.half_window[:, None] * _OFFSETS
    parts = [np.array([lo, hi]), cores.ravel()]
    phot = physics.photosphere(p.teff, p.logg, p.feh)
    if any(physics.molecular_strength(m, phot) > 1e-4 for m in ld.MOLECULES):
        parts += [np.arange(lo, hi, COARSE_SUBSTEP), _HEADS - 1e-6, _HEADS]
    x = np.sort(np.concatenate(parts))
    return x[(x >= lo) & (x <= hi)]


def _coarse_features(p: SpectrumParams, wave: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean transmission of the strong lines and molecular bands in each bin."""
    shift = 1.0 + p.rv / harps.C_KMS
    rest = _feature_points(p, edges[0] / shift, edges[-1] / shift)
    tau = features.strong_tau(rest, features.strong_lines(p.teff, p.logg, p.feh))
    tau += features.band_tau(rest, p.teff, p.logg, p.feh)
    trans = 1.0 - physics.line_depth(tau, physics.core_depth_fast(rest, p.teff))
    return bin_average(rest * shift, trans, wave)


def _coarse_mode(p: SpectrumParams, wave: np.ndarray) -> np.ndarray:
    edges = bin_edges(wave)
    v_dopp = physics.photosphere(p.teff, p.logg, p.feh).v_dopp
    # blends: linear for isolated lines, saturating at the core depth D
    depth = physics.core_depth(wave / (1.0 + p.rv / harps.C_KMS), p.teff)
    forest = 1.0 - depth * -np.expm1(-_coarse_forest(p, edges, v_dopp) / depth)
    stellar = forest * _coarse_features(p, wave, edges)
    return stellar * np.exp(-_coarse_telluric(p, edges))


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------

def normalized_spectrum(p: SpectrumParams, wave: np.ndarray) -> np.ndarray:
    """Noiseless continuum-normalised spectrum, tellurics included.

    Parameters
    ----------
    p : SpectrumParams
    wave : numpy.ndarray
        Shape ``(N,)``, barycentric air wavelengths in Angstrom, increasing
        (normally ``ml.harps.archive_grid(step)``).

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``, float64, 1 in the continuum; no CCD gap.
    """
    step = float(np.median(np.diff(wave))) if len(wave) > 1 else harps.WAVE_STEP
    if step <= PROFILE_MAX_STEP:
        return _profile_mode(p, wave)
    return _coarse_mode(p, wave)


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
    return harps.in_ccd_gap(wave / (1.0 + berv / harps.C_KMS), harps.CCD_GAP_TOPOCENTRIC)


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
        :class:`ml.synth.observations.Observation`.
    wave : numpy.ndarray
        Shape ``(N,)``, barycentric air wavelengths in Angstrom, uniform
        step between 0.01 and 10 A.
    noise : bool
        False returns the expected (noiseless) flux.

    Returns
    -------
    flux : numpy.ndarray
        Shape ``(N,)``, float32, adu; exact zeros in the CCD gap.  The
        median S/N per pixel is ``obs.snr * sqrt(step / 0.01)`` (pixels of
        a coarser grid bin the native ones).
    err : numpy.ndarray
        Shape ``(N,)``, float32, adu: the 1-sigma noise (photon and read
        noise); NaN in the CCD gap.
    """
    p = obs.params
    step = float(np.median(np.diff(wave))) if len(wave) > 1 else harps.WAVE_STEP
    binning = max(step / harps.WAVE_STEP, 1.0)
    read_noise = READ_NOISE_NATIVE * math.sqrt(binning)
    expected = normalized_spectrum(p, wave) * response(wave, p)
    gap = gap_mask(wave, p.berv)
    electrons = expected * noise_scale(expected[~gap], obs.snr * math.sqrt(binning), read_noise)
    sigma = np.sqrt(np.maximum(electrons, 0.0) + read_noise ** 2)
    if noise:
        electrons = electrons + sigma * obs.noise_rng().standard_normal(len(wave))
    flux = (electrons / GAIN).astype(np.float32)
    err = (sigma / GAIN).astype(np.float32)
    flux[gap] = 0.0
    err[gap] = np.nan
    return flux, err
