"""Line formation in a one-layer LTE photosphere: simple, but physical.

Every stellar feature is an optical depth ``tau(lambda)`` turned into a
line depth ``D tau / (1 + tau)`` (Minnaert's interpolation formula: linear
for weak lines, saturating at ``D``, with the damping-wing regime of the
curve of growth, and less box-shaped than a single absorbing slab), where
the core depth ``D = 1 - B(0.65 Teff) / B(Teff)`` is the Eddington-Barbier
contrast between the surface and the continuum-forming layer.

Line strengths (line-centre optical depth of each line, per star)::

    log tau0 = C0 + log gf + log eps + [M/H] - 12    (abundance)
             + log f_stage(T, Pe)                    (Saha ionisation)
             - log U - 5040 chi / T                  (Boltzmann excitation)
             + log(lambda / 5000 A) - log v_D        (line opacity per Doppler width)
             - log kappa_c(T, Pe)                    (continuous opacity, H-)

with ``T = 0.75 Teff + 650 K`` (the line-forming layer, 0.86 Teff in the
Sun), an electron pressure ``log Pe = 0.6 + s (Teff - 5777)/1000 +
(log g - 4.44)/3 + 0.4 [M/H]`` (``s`` = 1.0 above and 0.75 below 5777 K) and
``kappa_c ~ Pe theta^2.5 10^(0.754 theta)`` (H- bound-free).  Neutral lines
of mostly ionised metals therefore follow [M/H] but barely log g; ionised
lines weaken with log g; low-excitation neutral lines of Ti, V, Cr grow
strongly in cool stars.  Damping (van der Waals) grows with gas pressure,
``a ~ g^0.3``, which widens the wings of strong lines in dwarfs (Mg b, Na D,
Ca II H&K).  Balmer lines add Stark wings ``~ (Delta lambda)^-5/2`` that
scale with the n=2 population and with Pe, so they grow with Teff over
3000-7000 K.  Molecular bands (TiO, CaH, MgH) switch on below ~4000 K
(logistic in Teff times a dissociation-energy exponential); CaH and MgH
favour dwarfs, TiO is rather stronger in giants.

``C0`` is fixed so that Fe I 6151.6 A (chi = 2.18 eV, log gf = -3.30) has
an equivalent width of about 50 mA in the Sun, as observed.  The synthetic
line list stores each line's solar optical depth; :func:`forest` applies the
star-minus-Sun difference of the terms above.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from harps_synth import lines as ld

K_B = 1.380649e-23
AMU = 1.66053907e-27
HC_K_ANGSTROM = 1.438777e8  # h c / k, Angstrom K
#: Calibration constant of the line strengths (see module docstring).
C0 = 14.32
TEFF_SUN, LOGG_SUN = 5777.0, 4.44
LOG_PE_SUN = 0.6
#: Line-forming temperature ``T_LINE_FACTOR * Teff + T_LINE_OFFSET`` [K], and
#: surface temperature in units of Teff.
T_LINE_FACTOR, T_LINE_OFFSET = 0.75, 650.0
T_SURFACE_FACTOR = 0.65
#: Mean atomic mass used for the Doppler width of metal lines, amu.
METAL_MASS = 50.0
#: Solar damping parameter of an average metal line at 5000 A (Doppler units).
A_METAL_SUN = 0.02


class Photosphere(NamedTuple):
    """Star-dependent physical state used by every line.

    ``t_line`` [K], ``log_pe`` [dyn cm^-2], ``log_kappa`` (relative),
    ``v_dopp`` and ``v_dopp_h`` [km/s] (metals, hydrogen), ``damp_scale``
    (damping relative to the Sun), ``feh`` [dex], ``teff`` [K], ``logg``.
    """

    t_line: float
    log_pe: float
    log_kappa: float
    v_dopp: float
    v_dopp_h: float
    damp_scale: float
    feh: float
    teff: float
    logg: float


def photosphere(teff: float, logg: float, feh: float) -> Photosphere:
    """Physical state of the line-forming layer for (Teff [K], log g [cgs], [M/H] [dex])."""
    t_line = T_LINE_FACTOR * teff + T_LINE_OFFSET
    theta = 5040.0 / t_line
    slope = 1.0 if teff > TEFF_SUN else 0.75
    log_pe = (LOG_PE_SUN + slope * (teff - TEFF_SUN) / 1000.0 + (logg - LOGG_SUN) / 3.0
              + 0.4 * feh)
    log_kappa = log_pe + 2.5 * math.log10(theta) + 0.754 * theta
    micro = 1.5 if logg < 3.5 else 0.9 + 0.35 * (teff - TEFF_SUN) / 1000.0
    thermal = 2.0 * K_B * t_line / AMU / 1e6  # (km/s)^2 per amu
    v_dopp = math.sqrt(thermal / METAL_MASS + micro ** 2)
    v_dopp_h = math.sqrt(thermal / 1.008 + micro ** 2)
    damp = 10 ** (0.3 * (logg - LOGG_SUN)) * (teff / TEFF_SUN) ** 0.3
    return Photosphere(t_line, log_pe, log_kappa, v_dopp, v_dopp_h, damp, feh, teff, logg)


@functools.lru_cache(maxsize=1)
def _species_arrays() -> dict[str, np.ndarray]:
    s = ld.SPECIES
    return {"stage": np.array([x.stage for x in s]), "log_eps": np.array([x.log_eps for x in s]),
            "chi_ion": np.array([x.chi_ion for x in s]),
            "log_u1": np.array([x.log_u1 for x in s]), "log_u2": np.array([x.log_u2 for x in s]),
            "metal": np.array([x.name != "H I" for x in s])}


def _stage_population(kind: np.ndarray, phot: Photosphere) -> np.ndarray:
    """log of (fraction in the line's ionisation stage / partition function)."""
    sp = _species_arrays()
    t = phot.t_line
    log_phi = (np.log10(2.0) + sp["log_u2"] - sp["log_u1"] + 2.5 * math.log10(t)
               - 5040.0 * sp["chi_ion"] / t - 0.1762)
    ratio = log_phi - phot.log_pe  # log N_II / N_I
    log_neutral = -np.log10(1.0 + 10.0 ** ratio)
    log_f = np.where(sp["stage"] == 1, log_neutral - sp["log_u1"],
                     ratio + log_neutral - sp["log_u2"])
    return (log_f + sp["log_eps"] - 12.0 + np.where(sp["metal"], phot.feh, 0.0))[kind]


def atomic_log_tau(wave: np.ndarray, kind: np.ndarray, chi: np.ndarray, loggf: np.ndarray,
                   phot: Photosphere, v_dopp: float | np.ndarray | None = None) -> np.ndarray:
    """Line-centre optical depths (log10) of atomic lines.

    Parameters
    ----------
    wave, kind, chi, loggf : numpy.ndarray
        Shape ``(n,)``: Angstrom, species index, eV, dex.
    phot : Photosphere
    v_dopp : float or numpy.ndarray, optional
        Doppler width(s) in km/s (default: the metal one).

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``.
    """
    v = phot.v_dopp if v_dopp is None else v_dopp
    return (C0 + loggf + _stage_population(kind, phot) - 5040.0 * chi / phot.t_line
            + np.log10(wave / 5000.0) - np.log10(v) - phot.log_kappa)



def molecular_strength(molecule: str, phot: Photosphere) -> float:
    """Band strength factor of a molecule (0 for hot stars, ~1 at 3500 K for TiO)."""
    t, g, z = phot.teff, phot.logg, phot.feh
    if molecule == "TiO":
        s = math.exp(53_500.0 * (1.0 / t - 1.0 / 3500.0)) * 10 ** (1.5 * z - 0.15 * (g - 4.8))
        return 0.6 * s / (1.0 + math.exp((t - 3950.0) / 110.0))
    if molecule == "CaH":
        s = math.exp(20_000.0 * (1.0 / t - 1.0 / 3500.0)) * 10 ** (z + 0.6 * (g - 4.8))
        return 0.5 * s / (1.0 + math.exp((t - 4000.0) / 120.0))
    s = math.exp(15_000.0 * (1.0 / t - 1.0 / 4200.0)) * 10 ** (z + 0.5 * (g - 4.6))
    return 0.25 * s / (1.0 + math.exp((t - 4700.0) / 150.0))


@functools.lru_cache(maxsize=1)
def _solar_species_terms() -> np.ndarray:
    return _species_terms(photosphere(TEFF_SUN, LOGG_SUN, 0.0))


def _species_terms(phot: Photosphere) -> np.ndarray:
    """Per-species part of log tau0 that depends on the star, shape ``(n_species,)``."""
    every = np.arange(len(ld.SPECIES))
    return _stage_population(every, phot) - math.log10(phot.v_dopp) - phot.log_kappa


@functools.lru_cache(maxsize=64)
def forest(teff: float, logg: float, feh: float) -> tuple[np.ndarray, np.ndarray]:
    """Optical depths and damping of the whole synthetic line list for one star.

    Parameters
    ----------
    teff, logg, feh : float
        Kelvin, cgs, dex.

    Returns
    -------
    tau0 : numpy.ndarray
        Shape ``(n_lines,)``, line-centre optical depth (Voigt, Doppler
        width ``photosphere(...).v_dopp``).
    a : numpy.ndarray
        Shape ``(n_lines,)``, damping parameter in Doppler units.
    """
    phot, sun = photosphere(teff, logg, feh), photosphere(TEFF_SUN, LOGG_SUN, 0.0)
    ll = ld.line_list()
    mols = [math.log10(max(molecular_strength(name, phot), 1e-30)) for name in ld.MOLECULES]
    # star-minus-Sun terms per species, molecules appended (kind -1, -2, -3)
    delta = np.concatenate([_species_terms(phot) - _solar_species_terms(), mols[::-1]])
    excitation = 5040.0 * (1.0 / phot.t_line - 1.0 / sun.t_line)
    log_tau = ll.strength + delta[ll.kind] - excitation * ll.chi
    a = (A_METAL_SUN * phot.damp_scale * (ll.wave / 5000.0) * 10 ** ll.damp
         * (sun.v_dopp / phot.v_dopp))
    return 10.0 ** np.clip(log_tau, -30.0, 30.0), a


def line_depth(tau: np.ndarray, depth_max: np.ndarray | float) -> np.ndarray:
    """Fractional line depth for optical depth ``tau`` (Minnaert's formula)."""
    return depth_max * tau / (1.0 + tau)


def core_depth(wave: np.ndarray | float, teff: float) -> np.ndarray:
    """Largest fractional depth of a saturated line, ``1 - B(0.65 Teff) / B(Teff)``."""
    x = HC_K_ANGSTROM / (np.asarray(wave) * teff)
    return 1.0 - np.expm1(x) / np.expm1(x / T_SURFACE_FACTOR)


def core_depth_fast(wave: np.ndarray, teff: float) -> np.ndarray:
    """:func:`core_depth` interpolated from 64 wavelengths (smooth; error < 1e-4)."""
    knots = np.linspace(3700.0, 7000.0, 64)
    return np.interp(wave, knots, core_depth(knots, teff))


def continuum(wave: np.ndarray, teff: float) -> np.ndarray:
    """Photon flux of a black body, ``lambda B_lambda(T)``, normalised at 5500 A.

    Parameters
    ----------
    wave : numpy.ndarray
        Angstrom.
    teff : float
        Kelvin.

    Returns
    -------
    numpy.ndarray
        Same shape as ``wave``, dimensionless.
    """
    x, x0 = HC_K_ANGSTROM / (wave * teff), HC_K_ANGSTROM / (5500.0 * teff)
    return (5500.0 / wave) ** 4 * np.expm1(x0) / np.expm1(x)
