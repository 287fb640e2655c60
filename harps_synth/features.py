"""Explicit-profile features: strong lines with wings and molecular band envelopes.

The weak-line forest is handled spectrally (:mod:`harps_synth.spectrum`); the
features here are evaluated point by point because their wings reach tens
of Angstrom.  Wavelengths are stellar rest-frame air wavelengths [A].

Strong metal lines use the Voigt approximation
``H(a, u) ~ exp(-u^2) + a / (sqrt(pi) (1 + u^2))`` (Gaussian core, Lorentz
wings).  Balmer lines use a Gaussian (thermal hydrogen) core plus Stark
wings ``s (1 + u^2)^-q`` whose strength ``s`` scales with the electron
pressure.  A single absorbing layer with Holtsmark's ``Delta lambda^-5/2``
wing gives box-shaped profiles; real Balmer wings form over a range of
depths and fall off more slowly, so ``q = 0.63`` is fitted to the solar
H alpha profile (residual flux 0.35, 0.55, 0.72, 0.80, 0.88 at 0.5, 1, 2, 3,
5 A from the core).  Wings are tapered to zero at the window edge.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from harps_data import harps
from harps_synth import lines as ld
from harps_synth import physics

#: Optical depth at which a feature's window ends.
TAU_EDGE = 1e-3
MAX_HALF_WINDOW = 100.0  # Angstrom
#: Power of the Balmer wing profile ``(1 + u^2)^-q`` (fitted to the Sun).
BALMER_WING_EXPONENT = 0.63
#: Fraction of the one-layer model's change of Balmer line strength (from
#: the Sun) that is kept, so that H alpha equivalent widths of dwarfs follow
#: observations (~1.2 A at 4500 K, ~4 A in the Sun, ~9 A at 7000 K).
BALMER_TEFF_DAMPING = 0.4
_SQRT_PI = math.sqrt(math.pi)


class StrongLines(NamedTuple):
    """Per-star parameters of :data:`harps_synth.lines.STRONG_LINES`, arrays of shape ``(n,)``:
    centre [A], line-centre optical depth, Doppler width [A], damping or
    Stark strength, hydrogen flag, half window [A]."""

    wave: np.ndarray
    tau0: np.ndarray
    width: np.ndarray
    damping: np.ndarray
    hydrogen: np.ndarray
    half_window: np.ndarray


@functools.lru_cache(maxsize=64)
def strong_lines(teff: float, logg: float, feh: float) -> StrongLines:
    """Strong-line parameters for one star (Teff [K], log g [cgs], [M/H] [dex])."""
    phot = physics.photosphere(teff, logg, feh)
    table = ld.STRONG_LINES
    wave = np.array([s.wave for s in table])
    kind = np.array([ld.SPECIES_INDEX[s.species] for s in table])
    hydrogen = np.array([s.species == "H I" for s in table])
    v = np.where(hydrogen, phot.v_dopp_h, phot.v_dopp)
    log_tau = physics.atomic_log_tau(wave, kind, np.array([s.chi for s in table]),
                                     np.array([s.loggf for s in table]), phot, v)
    sun = physics.photosphere(physics.TEFF_SUN, physics.LOGG_SUN, 0.0)
    log_sun = physics.atomic_log_tau(wave, kind, np.array([s.chi for s in table]),
                                     np.array([s.loggf for s in table]), sun,
                                     np.where(hydrogen, sun.v_dopp_h, sun.v_dopp))
    # one absorbing layer exaggerates how fast Balmer wings change with Teff
    log_tau = np.where(hydrogen, log_sun + BALMER_TEFF_DAMPING * (log_tau - log_sun), log_tau)
    tau0 = 10.0 ** log_tau
    base = np.array([s.damping for s in table])
    stark = base * 10 ** (0.2 * (phot.log_pe - physics.LOG_PE_SUN))
    damping = np.where(hydrogen, stark, base * phot.damp_scale * wave / 5000.0)
    width = wave * v / harps.C_KMS
    u_edge = np.where(hydrogen, (tau0 * damping / TAU_EDGE) ** (0.5 / BALMER_WING_EXPONENT),
                      np.sqrt(tau0 * damping / (_SQRT_PI * TAU_EDGE)))
    half = np.clip(np.maximum(u_edge, 6.0) * width, 0.5, MAX_HALF_WINDOW)
    return StrongLines(wave, tau0, width, damping, hydrogen, half)


def strong_tau(wave: np.ndarray, star: StrongLines) -> np.ndarray:
    """Summed optical depth of the strong lines.

    Parameters
    ----------
    wave : numpy.ndarray
        Shape ``(N,)``, sorted ascending, Angstrom (stellar rest frame).
    star : StrongLines

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``.
    """
    tau = np.zeros_like(wave)
    for i in range(len(star.wave)):
        lo, hi = np.searchsorted(wave, (star.wave[i] - star.half_window[i],
                                        star.wave[i] + star.half_window[i]))
        if hi <= lo:
            continue
        u2 = ((wave[lo:hi] - star.wave[i]) / star.width[i]) ** 2
        edge = 1.0 + (star.half_window[i] / star.width[i]) ** 2
        if star.hydrogen[i]:
            q = BALMER_WING_EXPONENT
            wing = star.damping[i] * ((1.0 + u2) ** -q - edge ** -q)
        else:
            wing = star.damping[i] / _SQRT_PI * (1.0 / (1.0 + u2) - 1.0 / edge)
        tau[lo:hi] += star.tau0[i] * (np.exp(-u2) + wing)
    return tau


def band_tau(wave: np.ndarray, teff: float, logg: float, feh: float) -> np.ndarray:
    """Smooth optical depth of the molecular band envelopes (TiO, CaH, MgH).

    Parameters
    ----------
    wave : numpy.ndarray
        Shape ``(N,)``, Angstrom (stellar rest frame).
    teff, logg, feh : float

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``; all zeros for stars hotter than about 4500 K.
    """
    phot = physics.photosphere(teff, logg, feh)
    tau = np.zeros_like(wave)
    for head in ld.BAND_HEADS:
        scale = physics.molecular_strength(head.molecule, phot) * head.strength
        if scale < 1e-4:
            continue
        reach = head.length * math.log(scale / 1e-5)  # where tau drops to 1e-5
        lo, hi = np.searchsorted(wave, sorted((head.wave, head.wave + reach)))
        tau[lo:hi] += scale * np.exp(-(wave[lo:hi] - head.wave) / head.length)
    return tau
