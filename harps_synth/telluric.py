"""Telluric absorption lines: O2 bands from molecular constants, H2O forests.

Lines sit at fixed *topocentric* (air) wavelengths.  HARPS products are
barycentric, ``lambda_bary = lambda_topo * (1 + BERV / c)``, so a telluric
line appears shifted by +BERV while stellar lines sit at +RV: that is what
real files show (the O2 B band of the alpha Cen B s1d files moves by the
BERV difference between nights; see ``harps_data/harps.py``).

O2
    The b-X (1,0) "B" band (head 6867.2 A) and (2,0) "gamma" band (head
    6276.6 A): P and R branches of odd N'' = 1..39 from the rotational
    constants of the two states (B'' = 1.4377 cm^-1, B'_1 = 1.3731,
    B'_2 = 1.3549), each line split into a doublet of 1.9 cm^-1 (the
    spin-rotation components, approximated), intensities from a 250 K
    Boltzmann population.  Optical depth scales with airmass.
H2O
    Seeded synthetic line forests in the real band regions (5880-6010,
    6470-6610 and 6860-6960 A, plus sparse weak lines); optical depth
    scales with airmass times precipitable water vapour.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

TELLURIC_SEED = 19500101
#: Rotational temperature of atmospheric O2, K.
T_ATM = 250.0
_HC_K = 1.438777  # cm K
_B_LOWER = 1.43768
#: (band origin cm^-1 vacuum, B' cm^-1, optical-depth scale ``tau0`` of the
#: strongest line at airmass 1, for the profile ``tau0 H(a, u)``; with the
#: pressure broadening its peak is ``0.29 tau0``).  Tuned on the alpha Cen B
#: s1d files: B-band lines nearly black, gamma-band lines 30-70 % deep.
_O2_BANDS = ((14525.5, 1.37307, 45.0), (15902.4, 1.35487, 2.5))
_O2_DOUBLET = 1.9  # cm^-1
#: H2O bands: (wmin, wmax, number of lines, tau of the strongest line per mm PWV at airmass 1)
_H2O_BANDS = ((5880.0, 6010.0, 250, 0.12), (6470.0, 6610.0, 350, 0.5),
              (6860.0, 6960.0, 250, 1.0), (5000.0, 6960.0, 150, 0.02))
#: Doppler and Lorentz (pressure) widths at La Silla, km/s.
DOPPLER_KMS = 0.42
LORENTZ_KMS = 0.70


class TelluricLines(NamedTuple):
    """Arrays of shape ``(n,)``: topocentric air wavelength [A], optical depth
    at line centre for airmass 1 (O2) or for airmass 1 and 1 mm PWV (H2O),
    and whether the line is water."""

    wave: np.ndarray
    tau: np.ndarray
    water: np.ndarray


def _vac_to_air(wave_vac: np.ndarray) -> np.ndarray:
    """Air wavelength (Angstrom) from vacuum wavelength (Ciddor/Morton formula)."""
    s2 = (1e4 / wave_vac) ** 2
    n = 1 + 0.0000834254 + 0.02406147 / (130 - s2) + 0.00015998 / (38.9 - s2)
    return wave_vac / n


def _o2_band(origin: float, b_upper: float, tau_max: float) -> tuple[np.ndarray, np.ndarray]:
    n_low = np.arange(1, 40, 2, dtype=float)
    energy = _B_LOWER * n_low * (n_low + 1)
    pop = (2 * n_low + 1) * np.exp(-_HC_K * energy / T_ATM)
    r_branch = origin + 2 * b_upper + (3 * b_upper - _B_LOWER) * n_low \
        + (b_upper - _B_LOWER) * n_low ** 2
    p_branch = origin - (b_upper + _B_LOWER) * n_low + (b_upper - _B_LOWER) * n_low ** 2
    nu = np.concatenate([r_branch, r_branch + _O2_DOUBLET, p_branch, p_branch + _O2_DOUBLET])
    strength = np.concatenate([pop, pop, pop, pop]) * tau_max / pop.max()
    return _vac_to_air(1e8 / nu), strength


def _h2o(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    waves, taus = [], []
    for wmin, wmax, n, tau_max in _H2O_BANDS:
        waves.append(rng.uniform(wmin, wmax, n))
        taus.append(tau_max * 10 ** rng.uniform(-2.5, 0.0, n))
    return np.concatenate(waves), np.concatenate(taus)


@functools.lru_cache(maxsize=1)
def telluric_lines() -> TelluricLines:
    """The fixed telluric line list, sorted by wavelength.

    Returns
    -------
    TelluricLines
    """
    o2 = [_o2_band(*band) for band in _O2_BANDS]
    w_h2o, t_h2o = _h2o(np.random.default_rng(TELLURIC_SEED))
    wave = np.concatenate([w for w, _ in o2] + [w_h2o])
    tau = np.concatenate([t for _, t in o2] + [t_h2o])
    water = np.concatenate([np.zeros(sum(len(w) for w, _ in o2), bool), np.ones(len(w_h2o), bool)])
    order = np.argsort(wave, kind="stable")
    return TelluricLines(wave[order], tau[order], water[order])


def optical_depths(airmass: float, pwv_mm: float) -> np.ndarray:
    """Line-centre optical depths of :func:`telluric_lines` for one exposure.

    Parameters
    ----------
    airmass : float
        Mean airmass of the exposure.
    pwv_mm : float
        Precipitable water vapour, mm.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_lines,)``: O2 lines scale with airmass, H2O lines with
        airmass times PWV.
    """
    lines = telluric_lines()
    return lines.tau * airmass * np.where(lines.water, pwv_mm, 1.0)


def band_head_o2b() -> float:
    """Air wavelength of the O2 B band head (Angstrom), for tests and plots."""
    w, _ = _o2_band(*_O2_BANDS[0])
    return float(w.min())

