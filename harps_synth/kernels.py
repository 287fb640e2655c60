"""Line profiles in Fourier space, the curve of growth, and binning helpers.

Profile mode (fine output grids) works on a uniform grid in
``v = c ln(lambda)``, where every broadening is a convolution with a
kernel of fixed shape in km/s.  The kernels are applied as analytic
Fourier transforms (no sampled kernels, no edge effects):

* Voigt line profile of unit area, Gaussian ``v_D`` and Lorentz ``a v_D``:
  ``exp(-(pi v_D f)^2 - 2 pi a v_D |f|)``;
* rotation (Gray's kernel with linear limb darkening ``epsilon``):
  ``c1 pi J1(w)/w + c2 4 j1(w)/w`` with ``w = 2 pi f vsini``;
* instrument: Gaussian of FWHM ``c / R``;
* a Doppler shift ``v``: ``exp(-2 pi i f v)``.

Coarse mode (equivalent-width deposit, see :mod:`harps_synth.spectrum`) needs
the equivalent width of a Voigt line of any strength:
:func:`reduced_width` interpolates tables of
``w(tau0, a) = int g(tau0 H(a, u)) du`` (Doppler units), with the stellar
saturation ``g(t) = t / (1 + t)`` (see :mod:`harps_synth.physics`) for the
forest classes and true absorption ``g(t) = 1 - exp(-t)`` for the
telluric class.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special

#: Damping classes (Voigt ``a``) shared by both rendering modes; the last
#: one is used by the telluric lines.
A_CLASSES = np.array([0.004, 0.015, 0.05, 0.15, 1.7])
N_FOREST_CLASSES = 4
LIMB_DARKENING = 0.6
_LOG_TAU = np.linspace(-5.0, 9.0, 281)


def damping_class(a: np.ndarray) -> np.ndarray:
    """Index of the nearest forest damping class (in log a) for each ``a``."""
    edges = np.sqrt(A_CLASSES[:N_FOREST_CLASSES - 1] * A_CLASSES[1:N_FOREST_CLASSES])
    return np.searchsorted(edges, a)


def voigt_ft(f: np.ndarray, v_dopp: float, a: float) -> np.ndarray:
    """Fourier transform of a unit-area Voigt profile (``f`` in cycles per km/s)."""
    return np.exp(-(math.pi * v_dopp * f) ** 2 - 2.0 * math.pi * a * v_dopp * np.abs(f))


def gauss_ft(f: np.ndarray, fwhm: float) -> np.ndarray:
    """Fourier transform of a unit-area Gaussian of the given FWHM (km/s)."""
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    return np.exp(-2.0 * (math.pi * sigma * f) ** 2)


def rotation_ft(f: np.ndarray, vsini: float, epsilon: float = LIMB_DARKENING) -> np.ndarray:
    """Fourier transform of the rotational broadening kernel (Gray 2005, eq. 18.14).

    Parameters
    ----------
    f : numpy.ndarray
        Frequencies, cycles per km/s.
    vsini : float
        Projected equatorial velocity, km/s.
    epsilon : float
        Linear limb-darkening coefficient.

    Returns
    -------
    numpy.ndarray
        Real, equal to 1 at ``f = 0``.
    """
    w = 2.0 * math.pi * np.abs(f) * vsini
    c1 = (1.0 - epsilon) / (1.0 - epsilon / 3.0) * 2.0 / math.pi
    c2 = (2.0 * epsilon / 3.0) / (1.0 - epsilon / 3.0) * 0.75
    small = w < 1e-3
    ws = np.where(small, 1.0, w)
    out = c1 * math.pi * special.j1(ws) / ws + c2 * 4.0 * special.spherical_jn(1, ws) / ws
    return np.where(small, 1.0 - w ** 2 * (c1 * math.pi / 16 + c2 * 0.4), out)


def shift_ft(f: np.ndarray, velocity: float) -> np.ndarray:
    """Fourier factor that shifts a spectrum by ``velocity`` km/s (to the red if > 0)."""
    return np.exp(-2j * math.pi * f * velocity)


def linear_deposit(n: int, position: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Spread weights onto a grid by linear interpolation.

    Parameters
    ----------
    n : int
        Grid length.
    position : numpy.ndarray
        Fractional pixel positions, shape ``(m,)``.
    weight : numpy.ndarray
        Shape ``(m,)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``; weights outside the grid are dropped.
    """
    j = np.floor(position).astype(np.int64)
    frac = position - j
    ok = (j >= 0) & (j < n - 1)
    j, frac, w = j[ok], frac[ok], weight[ok]
    return (np.bincount(j, w * (1.0 - frac), minlength=n)
            + np.bincount(j + 1, w * frac, minlength=n))[:n]


@functools.lru_cache(maxsize=1)
def _cog_table() -> np.ndarray:
    """log10 of the reduced equivalent width, shape ``(len(A_CLASSES), len(_LOG_TAU))``."""
    u = np.concatenate([np.linspace(0.0, 8.0, 801)[:-1], np.geomspace(8.0, 3e5, 1200)])
    table = np.empty((len(A_CLASSES), len(_LOG_TAU)))
    for k, a in enumerate(A_CLASSES):
        h = special.wofz(u + 1j * a).real
        for m, lt in enumerate(_LOG_TAU):
            t = (10.0 ** lt) * h
            absorbed = t / (1.0 + t) if k < N_FOREST_CLASSES else -np.expm1(-t)
            table[k, m] = math.log10(2.0 * np.trapz(absorbed, u))  # noqa: NPY201
    return table


def reduced_width(tau0: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """Equivalent width in Doppler units of Voigt lines (curve of growth).

    Parameters
    ----------
    tau0 : numpy.ndarray
        Line-centre optical depths, shape ``(m,)``.
    cls : numpy.ndarray
        Damping class of each line (index into ``A_CLASSES``), shape ``(m,)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(m,)``; ``sqrt(pi) tau0`` for weak lines.
    """
    table = _cog_table()
    step = _LOG_TAU[1] - _LOG_TAU[0]
    x = (np.log10(np.maximum(tau0, 1e-30)) - _LOG_TAU[0]) / step
    i = np.clip(np.floor(x).astype(np.int64), 0, len(_LOG_TAU) - 2)
    frac = x - i
    flat = cls * len(_LOG_TAU) + i
    lo, hi = np.take(table, flat), np.take(table, flat + 1)
    log_w = lo + (hi - lo) * frac
    weak = x < 0.0  # below the table: the linear part of the curve of growth
    log_w[weak] = lo[weak] + frac[weak] * step
    return np.exp(log_w * math.log(10.0))


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
