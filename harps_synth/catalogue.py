"""The synthetic star catalogue and observing programmes.

Stars are drawn once per seed and held in memory as arrays (the catalogue
is small: one star per ~20 spectra).  Distributions, chosen to resemble
the HARPS target list:

``teff`` [K]
    3000-7000: 22 % M dwarfs, FGK dwarfs peaking near 5700 K, 12 % red
    giants (3800-5300 K).
``logg`` [cgs]
    Main-sequence relation for dwarfs (5.0 at 3000 K, 4.44 at 5800 K, 4.1
    at 7000 K) plus 0.08 dex scatter; giants 0.8-3.8 along the red giant
    branch.
``feh`` ([M/H], dex)
    N(-0.1, 0.25) clipped to [-1.0, 0.5].
``vsini`` [km/s]
    log-normal around 2-3 km/s for cool stars, rising through the Kraft
    break to ~30 km/s at 7000 K.
``rv`` [km/s]
    Systemic barycentric velocity N(0, 30); 12 % of stars are single-lined
    binaries whose velocity varies with semi-amplitude 0.5-25 km/s.
``ra``, ``dec`` [deg, J2000]
    Southern-sky biased (La Silla); Dec <= +30 deg, so every star reaches
    airmass < 2 at transit.
``weight``
    Pareto-distributed observing priority: a few stars take hundreds of
    spectra, most get a few (heavy tail, as in the real archive).

Names are ``SYN-HD`` plus a unique, scrambled number: never a real star.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from harps_synth import rng as rngmod

#: Fraction of giants, of M dwarfs, and of spectroscopic binaries.
GIANT_FRACTION = 0.12
M_DWARF_FRACTION = 0.22
BINARY_FRACTION = 0.12
#: Pareto index of the observing weights (smaller: heavier tail).
WEIGHT_ALPHA = 1.05
#: Main-sequence log g against Teff (dwarfs).
_MS_TEFF = (3000.0, 3500.0, 4000.0, 5000.0, 5800.0, 6500.0, 7000.0)
_MS_LOGG = (5.05, 4.90, 4.72, 4.58, 4.44, 4.27, 4.12)
#: Median vsini against Teff, km/s.
_ROT_TEFF = (3000.0, 5000.0, 5800.0, 6200.0, 6600.0, 7000.0)
_ROT_VSINI = (2.0, 2.3, 2.8, 5.5, 14.0, 30.0)
#: ESO programme categories and their shares among HARPS programmes.
_CATEGORIES = ("C", "D", "E", "A", "B")
_CATEGORY_P = (0.62, 0.25, 0.08, 0.03, 0.02)
_ALNUM = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
#: First period with the newer programme-id format ('110.23XY.001').
NEW_FORMAT_PERIOD = 110


@dataclasses.dataclass(frozen=True)
class Star:
    """One catalogue star (units as in the module docstring)."""

    star_id: int
    name: str
    ra: float
    dec: float
    teff: float
    logg: float
    feh: float
    vsini: float
    rv: float
    vmag: float
    giant: bool
    programme: int
    weight: float
    binary_k: float
    binary_period: float
    binary_phase: float

    def rv_at(self, mjd: float) -> float:
        """Barycentric radial velocity at ``mjd``, km/s (systemic plus orbit)."""
        if self.binary_k == 0.0:
            return self.rv
        phase = 2 * math.pi * (mjd / self.binary_period + self.binary_phase)
        return self.rv + self.binary_k * math.sin(phase)


@dataclasses.dataclass(frozen=True)
class Programme:
    """An observing programme shared by several stars.

    Its identifier is renewed every ``cycle`` periods, in the format of the
    period: ``'076.C-0429(A)'`` before P110, ``'116.28LH.001'`` after.
    """

    index: int
    category: str
    run: str
    cycle: int
    phase: int
    pi: str
    key: int

    def prog_id(self, period: int) -> str:
        """Programme identifier under which an observation in ``period`` ran."""
        start = period - (period - self.phase) % self.cycle
        h = rngmod.mix64(self.key ^ start)
        if start < NEW_FORMAT_PERIOD:
            return f"{start:03d}.{self.category}-{h % 9000 + 100:04d}({self.run})"
        code = "".join(_ALNUM[(h >> (6 * i)) % len(_ALNUM)] for i in range(4))
        return f"{start:03d}.{code}.{(h >> 30) % 3 + 1:03d}"


class Catalogue:
    """Stars as arrays (vectorised scheduling) plus their programmes.

    Attributes
    ----------
    seed : int
    arrays : dict of numpy.ndarray
        One entry per :class:`Star` field, each of shape ``(n_stars,)``.
    programmes : tuple of Programme
    """

    def __init__(self, seed: int, arrays: dict[str, np.ndarray],
                 programmes: tuple[Programme, ...]) -> None:
        self.seed = seed
        self.arrays = arrays
        self.programmes = programmes
        for key, value in arrays.items():
            setattr(self, key, value)

    def __len__(self) -> int:
        return len(self.arrays["ra"])

    def star(self, i: int) -> Star:
        """The ``i``-th star as a :class:`Star`."""
        values = {}
        for field in dataclasses.fields(Star):
            v = self.arrays[field.name][i]
            values[field.name] = v.item() if isinstance(v, np.generic) else v
        return Star(**values)


def _teff_logg(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    giant = rng.random(n) < GIANT_FRACTION
    m_dwarf = ~giant & (rng.random(n) < M_DWARF_FRACTION)
    teff = 3950.0 + 3050.0 * rng.beta(2.4, 1.9, n)
    teff[m_dwarf] = rng.uniform(3000.0, 3950.0, m_dwarf.sum())
    teff[giant] = rng.uniform(3800.0, 5300.0, giant.sum())
    logg = np.interp(teff, _MS_TEFF, _MS_LOGG) + rng.normal(0.0, 0.08, n)
    rgb = 2.4 + 1.3 * (teff[giant] - 4500.0) / 1000.0 + rng.normal(0.0, 0.3, giant.sum())
    logg[giant] = np.clip(rgb, 0.8, 3.8)
    return teff, logg, giant, m_dwarf


def _coordinates(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    ra = rng.uniform(0.0, 360.0, n)
    south = rng.random(n) < 0.7
    sin_dec = rng.uniform(-1.0, math.sin(math.radians(30.0)), n)
    dec = np.degrees(np.arcsin(sin_dec))
    dec[south] = np.clip(rng.normal(-38.0, 22.0, south.sum()), -89.5, 30.0)
    return ra, dec


def _names(seed: int, n: int) -> np.ndarray:
    width = max(6, len(str(10 * n)))
    perm = rngmod.IndexPermutation(10 ** width, rngmod.key64(seed, rngmod.STARS, 1))
    return np.array([f"SYN-HD{perm(i):0{width}d}" for i in range(n)], dtype=object)


def _programmes(seed: int, n_stars: int) -> tuple[Programme, ...]:
    n_prog = max(1, round(n_stars / 15))
    rng = rngmod.stream(seed, rngmod.PROGRAMMES)
    cats = rng.choice(len(_CATEGORIES), size=n_prog, p=_CATEGORY_P)
    runs = rng.choice(6, size=n_prog, p=(0.55, 0.15, 0.1, 0.08, 0.07, 0.05))
    return tuple(Programme(index=i, category=_CATEGORIES[cats[i]], run="ABCDEF"[runs[i]],
                           cycle=int(rng.integers(1, 5)), phase=int(rng.integers(0, 4)),
                           pi=f"SynthPI{i:03d}", key=rngmod.key64(seed, rngmod.PROGRAMMES, i))
                 for i in range(n_prog))


def make_catalogue(n_stars: int, seed: int) -> Catalogue:
    """Draw the star catalogue of a run.

    Parameters
    ----------
    n_stars : int
        Number of stars (>= 1).
    seed : int
        Master seed of the run.

    Returns
    -------
    Catalogue
        Deterministic for a given ``(n_stars, seed)``.
    """
    rng = rngmod.stream(seed, rngmod.STARS)
    teff, logg, giant, m_dwarf = _teff_logg(rng, n_stars)
    ra, dec = _coordinates(rng, n_stars)
    vsini = np.interp(teff, _ROT_TEFF, _ROT_VSINI) * rng.lognormal(0.0, 0.45, n_stars)
    vsini[giant] = 3.0 * rng.lognormal(0.0, 0.4, giant.sum())
    vmag = rng.normal(8.0, 1.4, n_stars) + 2.0 * m_dwarf + 0.5 * giant
    programmes = _programmes(seed, n_stars)
    share = 1.0 / np.arange(1, len(programmes) + 1) ** 0.8
    binary = rng.random(n_stars) < BINARY_FRACTION
    arrays = {
        "star_id": np.arange(n_stars), "name": _names(seed, n_stars), "ra": ra, "dec": dec,
        "teff": np.round(teff, 1), "logg": np.round(logg, 3),
        "feh": np.round(np.clip(rng.normal(-0.1, 0.25, n_stars), -1.0, 0.5), 3),
        "vsini": np.round(np.clip(vsini, 0.5, 120.0), 2),
        "rv": np.round(rng.normal(0.0, 30.0, n_stars), 3),
        "vmag": np.round(np.clip(vmag, 2.0, 14.0), 2), "giant": giant,
        "programme": rng.choice(len(programmes), size=n_stars, p=share / share.sum()),
        "weight": (1.0 - rng.random(n_stars)) ** (-1.0 / WEIGHT_ALPHA),
        "binary_k": np.where(binary, np.exp(rng.uniform(math.log(0.5), math.log(25.0), n_stars)),
                             0.0),
        "binary_period": np.exp(rng.uniform(math.log(2.0), math.log(2000.0), n_stars)),
        "binary_phase": rng.random(n_stars),
    }
    return Catalogue(seed, arrays, programmes)
