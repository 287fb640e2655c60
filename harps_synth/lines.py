"""Line data of the synthetic stars: species, a fixed synthetic line list,
the named strong lines and the molecular band heads.

The metal line list is *synthetic*: positions, excitation potentials and
strengths are drawn once from a fixed seed (``LINE_LIST_SEED``,
independent of the run seed), so every archive shares one "periodic table
of lines" and a model can learn it.  The species data (solar abundances,
ionisation potentials, partition functions near 5000 K) and the strong
lines (Balmer series, Ca II H&K, Na D, Mg b, Ca I 4227, strong Fe I) are
real atomic data, air wavelengths in Angstrom.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

#: Seed of the synthetic line list: part of the model, not of a run.
LINE_LIST_SEED = 20031201
#: Wavelength span covered by the line list (HARPS range plus RV margins), Angstrom.
LIST_WMIN, LIST_WMAX = 3740.0, 6960.0
N_ATOMIC_LINES = 7000


class Species(NamedTuple):
    """An atom or ion: ``stage`` 1 = neutral, 2 = singly ionised.

    ``log_eps`` is the solar abundance (log N/N_H + 12), ``chi_ion`` the
    first ionisation potential (eV), ``log_u1``/``log_u2`` the partition
    functions of the neutral and the ion near 5000 K, ``mass`` in amu.
    ``share`` is the fraction of the synthetic line list given to it and
    ``chi_max`` the largest lower-level excitation potential drawn (eV).
    """

    name: str
    stage: int
    mass: float
    log_eps: float
    chi_ion: float
    log_u1: float
    log_u2: float
    share: float
    chi_max: float


SPECIES: tuple[Species, ...] = (
    Species("Fe I", 1, 55.85, 7.50, 7.90, 1.43, 1.63, 0.40, 5.0),
    Species("Fe II", 2, 55.85, 7.50, 7.90, 1.43, 1.63, 0.05, 6.0),
    Species("Ti I", 1, 47.87, 4.95, 6.83, 1.50, 1.75, 0.08, 3.0),
    Species("Ti II", 2, 47.87, 4.95, 6.83, 1.50, 1.75, 0.04, 4.0),
    Species("Cr I", 1, 52.00, 5.64, 6.77, 0.99, 0.86, 0.07, 4.5),
    Species("Ni I", 1, 58.69, 6.22, 7.64, 1.47, 1.02, 0.07, 5.0),
    Species("Ca I", 1, 40.08, 6.34, 6.11, 0.03, 0.31, 0.04, 3.0),
    Species("Si I", 1, 28.09, 7.51, 8.15, 0.98, 0.75, 0.03, 6.0),
    Species("V I", 1, 50.94, 3.93, 6.75, 1.55, 1.50, 0.05, 2.5),
    Species("Co I", 1, 58.93, 4.99, 7.88, 1.50, 1.40, 0.04, 4.0),
    Species("Mn I", 1, 54.94, 5.43, 7.43, 0.80, 0.89, 0.03, 4.5),
    Species("Mg I", 1, 24.31, 7.60, 7.65, 0.00, 0.30, 0.01, 6.0),
    Species("Sc II", 2, 44.96, 3.15, 6.56, 1.08, 1.36, 0.02, 2.0),
    Species("Cr II", 2, 52.00, 5.64, 6.77, 0.99, 0.86, 0.02, 5.0),
    Species("Na I", 1, 22.99, 6.24, 5.14, 0.31, 0.00, 0.01, 4.0),
    Species("H I", 1, 1.008, 12.00, 13.60, 0.30, 0.00, 0.00, 10.2),
    Species("Ca II", 2, 40.08, 6.34, 6.11, 0.03, 0.31, 0.00, 0.0),
)
SPECIES_INDEX = {s.name: i for i, s in enumerate(SPECIES)}


class StrongLine(NamedTuple):
    """A strong line drawn with an explicit profile (wings included).

    ``damping`` is the damping parameter ``a`` (Voigt, Doppler units) in
    the Sun; for hydrogen it is the Stark wing strength instead.  Both are
    tuned so that the Sun gets its observed equivalent widths (Na D2
    0.75 A, Mg b1 1.58 A, Ca II K 20 A, ...) and, for H alpha, its profile
    (see :mod:`harps_synth.features`); H beta..epsilon keep the observed EW
    ratios to H alpha.
    """

    name: str
    wave: float
    species: str
    chi: float
    loggf: float
    damping: float


STRONG_LINES: tuple[StrongLine, ...] = (
    StrongLine("H alpha", 6562.797, "H I", 10.199, 0.710, 0.054),
    StrongLine("H beta", 4861.323, "H I", 10.199, -0.020, 0.45),
    StrongLine("H gamma", 4340.462, "H I", 10.199, -0.447, 1.12),
    StrongLine("H delta", 4101.734, "H I", 10.199, -0.753, 2.17),
    StrongLine("H epsilon", 3970.072, "H I", 10.199, -0.993, 3.21),
    StrongLine("Ca II K", 3933.663, "Ca II", 0.000, 0.135, 0.039),
    StrongLine("Ca II H", 3968.469, "Ca II", 0.000, -0.180, 0.043),
    StrongLine("Na I D2", 5889.951, "Na I", 0.000, 0.117, 0.028),
    StrongLine("Na I D1", 5895.924, "Na I", 0.000, -0.184, 0.031),
    StrongLine("Mg I b1", 5183.604, "Mg I", 2.717, -0.180, 0.057),
    StrongLine("Mg I b2", 5172.684, "Mg I", 2.712, -0.402, 0.06),
    StrongLine("Mg I b4", 5167.321, "Mg I", 2.709, -0.870, 0.097),
    StrongLine("Ca I 4227", 4226.728, "Ca I", 0.000, 0.244, 0.045),
    StrongLine("Fe I 3820", 3820.425, "Fe I", 0.859, 0.119, 0.021),
    StrongLine("Fe I 4046", 4045.813, "Fe I", 1.485, 0.280, 0.025),
    StrongLine("Fe I 4384", 4383.545, "Fe I", 1.485, 0.200, 0.016),
)


class BandHead(NamedTuple):
    """A molecular band head: ``length`` > 0 degrades to the red, < 0 to the blue."""

    molecule: str
    wave: float
    strength: float
    length: float


BAND_HEADS: tuple[BandHead, ...] = (
    BandHead("TiO", 4584.0, 0.30, 40.0), BandHead("TiO", 4626.0, 0.30, 40.0),
    BandHead("TiO", 4761.0, 0.40, 50.0), BandHead("TiO", 4954.6, 0.55, 60.0),
    BandHead("TiO", 5166.7, 0.65, 60.0), BandHead("TiO", 5448.0, 0.75, 50.0),
    BandHead("TiO", 5497.0, 0.50, 60.0), BandHead("TiO", 5597.0, 0.50, 60.0),
    BandHead("TiO", 5759.0, 0.55, 50.0), BandHead("TiO", 5810.0, 0.55, 40.0),
    BandHead("TiO", 5847.0, 0.65, 60.0), BandHead("TiO", 6158.7, 1.00, 30.0),
    BandHead("TiO", 6187.0, 0.70, 25.0), BandHead("TiO", 6214.8, 0.60, 60.0),
    BandHead("TiO", 6651.3, 0.90, 30.0), BandHead("TiO", 6681.0, 0.80, 70.0),
    BandHead("CaH", 6382.0, 0.60, 8.0), BandHead("CaH", 6389.0, 0.50, 15.0),
    BandHead("CaH", 6750.0, 0.35, 100.0),
    BandHead("MgH", 5211.0, 0.50, -40.0), BandHead("MgH", 4845.0, 0.30, -50.0),
)
MOLECULES = ("TiO", "CaH", "MgH")
#: Rotational lines drawn per band head (fine structure of the bands).
LINES_PER_HEAD = 160


class LineList(NamedTuple):
    """Arrays of shape ``(n_lines,)``.

    ``kind`` is the species index (atoms) or ``-1 - molecule index``
    (molecules).  ``strength`` is, for atoms, log10 of the line-centre
    optical depth the line has in the Sun (equivalent to a log gf, but
    drawn so that the solar spectrum has a realistic mix of weak and
    saturated lines); for molecules it is the log strength relative to the
    band.  ``chi`` [eV] is unused for molecules.  ``damp`` is a per-line log
    offset of the damping constant.
    """

    wave: np.ndarray
    kind: np.ndarray
    chi: np.ndarray
    strength: np.ndarray
    damp: np.ndarray


def _atomic(rng: np.random.Generator) -> LineList:
    shares = np.array([s.share for s in SPECIES])
    kind = rng.choice(len(SPECIES), size=N_ATOMIC_LINES, p=shares / shares.sum())
    # line density falls towards the red as lambda^-2.5 (inverse-CDF sampling)
    lo, hi = LIST_WMIN ** -1.5, LIST_WMAX ** -1.5
    wave = rng.uniform(hi, lo, N_ATOMIC_LINES) ** (-1.0 / 1.5)
    chi_max = np.array([s.chi_max for s in SPECIES])[kind]
    chi = chi_max * rng.beta(1.6, 1.3, N_ATOMIC_LINES)
    # many weak lines, few saturated ones: ~9 % have tau > 10 in the Sun
    strength = -2.0 + 4.5 * rng.beta(1.0, 2.2, N_ATOMIC_LINES)
    damp = rng.normal(0.0, 0.25, N_ATOMIC_LINES)
    return LineList(wave, kind, chi, strength, damp)


def _molecular(rng: np.random.Generator) -> LineList:
    waves, kinds, rel = [], [], []
    for head in BAND_HEADS:
        offset = rng.exponential(abs(head.length) * 1.5, LINES_PER_HEAD)
        waves.append(head.wave + math.copysign(1.0, head.length) * offset)
        kinds.append(np.full(LINES_PER_HEAD, -1 - MOLECULES.index(head.molecule)))
        envelope = head.strength * np.exp(-offset / abs(head.length))
        rel.append(np.log10(envelope * rng.uniform(0.2, 1.0, LINES_PER_HEAD)))
    n = len(BAND_HEADS) * LINES_PER_HEAD
    return LineList(np.concatenate(waves), np.concatenate(kinds), np.zeros(n),
                    np.concatenate(rel), np.zeros(n))


@functools.lru_cache(maxsize=1)
def line_list() -> LineList:
    """The fixed synthetic line list (atoms then molecules), sorted by wavelength.

    Returns
    -------
    LineList
        About 10,000 lines between ``LIST_WMIN`` and ``LIST_WMAX`` Angstrom.
    """
    rng = np.random.default_rng(LINE_LIST_SEED)
    atoms, mols = _atomic(rng), _molecular(rng)
    merged = LineList(*(np.concatenate([a, m]) for a, m in zip(atoms, mols, strict=True)))
    keep = (merged.wave > LIST_WMIN) & (merged.wave < LIST_WMAX)
    order = np.argsort(merged.wave[keep], kind="stable")
    return LineList(*(np.ascontiguousarray(a[keep][order]) for a in merged))
