"""Tiny synthetic HARPS s1d files for the ml unit tests (numpy + astropy only).

Not a second simulator: :mod:`harps_synth` makes physically motivated,
full-format archives; these are minimal files with known labels, made in
milliseconds, that the tests of ``ml`` train and read in seconds
(``test_ml_synthdata.py`` checks them with the real reader).

Each star has a temperature (continuum slope), a metallicity (line depths)
and a radial velocity; its observations differ by photon noise and BERV.
Files are DRS-s1d-like (primary 1D image, linear WCS) on a coarse grid so
that the tiny model presets train in seconds.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from astropy.io import fits

from harps_data import harps

WAVE0 = harps.ARCHIVE_WAVE_MIN  # 3781.0: whole pixels below MODEL_WAVE_MIN for 0.5 A
LINES = np.random.default_rng(12345).uniform(3800.0, 6900.0, 150)


def synthetic_flux(wave: np.ndarray, teff: float, feh: float, rv: float) -> np.ndarray:
    """Noiseless spectrum (adu-like): Planck-ish continuum times Gaussian absorption lines."""
    cont = 1e4 * (wave / 5500.0) ** (-4.0 + teff / 1500.0)
    shifted = LINES * (1.0 + rv / harps.C_KMS)
    depth = np.clip(0.4 + 0.5 * feh, 0.05, 0.9)
    prof = np.exp(-0.5 * ((wave[:, None] - shifted[None, :]) / 1.5) ** 2)
    return cont * np.prod(1.0 - depth * prof, axis=1)


def write_s1d(path: Path, flux: np.ndarray, *, step: float, obj: str, berv: float,
              mjd: float, wave0: float = WAVE0) -> Path:
    """Write ``flux`` as a minimal HARPS DRS s1d file readable by :mod:`harps_data.fitsio`."""
    hdu = fits.PrimaryHDU(flux.astype(np.float32))
    h = hdu.header
    h["INSTRUME"], h["OBJECT"], h["RA"], h["DEC"] = "HARPS", obj, 10.0, -20.0
    h["DATE-OBS"] = (np.datetime64(harps.MJD_EPOCH) + np.timedelta64(int(round(mjd * 86400e3)),
                                                                  "ms")).astype(str)
    h["MJD-OBS"], h["EXPTIME"] = mjd, 300.0
    h["CRVAL1"], h["CDELT1"], h["CRPIX1"] = wave0, step, 1.0
    h["HIERARCH ESO DRS BERV"] = berv
    hdu.writeto(path)
    return path


def make_archive(directory: Path, *, n_stars: int = 6, per_star=(1, 2, 3, 4, 5, 6),
                 step: float = 0.5, seed: int = 0, garbage: bool = True) -> tuple[list[Path], Path]:
    """Write a small archive plus ``labels.csv`` (file, star_id); return files and labels.

    Star ``k`` has ``per_star[k % len(per_star)]`` observations.  With
    ``garbage`` one extra file holds 20 % absurd pixels (to be flagged).
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    n = int(round((harps.ARCHIVE_WAVE_MAX - WAVE0) / step)) + 1
    wave = WAVE0 + step * np.arange(n)
    gap = harps.in_ccd_gap(wave)
    files, rows, mjd = [], [], 55000.0
    for k in range(n_stars):
        teff, feh, rv = rng.uniform(4000, 6500), rng.uniform(-1, 0.5), rng.normal(0, 30)
        for j in range(per_star[k % len(per_star)]):
            berv = rng.uniform(-25, 25)
            flux = synthetic_flux(wave, teff, feh, rv)
            flux = flux * (1 + 0.01 * rng.standard_normal(n)) * rng.uniform(0.5, 2)
            flux[gap] = 0.0
            mjd += 1.37
            name = f"SYN.star{k:02d}.obs{j}.fits"
            files.append(write_s1d(directory / name, flux, step=step, obj=f"STAR{k}",
                                   berv=berv, mjd=mjd))
            rows.append((name, f"star{k:02d}"))
    if garbage:
        flux = synthetic_flux(wave, 5000, 0, 0)
        bad = rng.random(n) < 0.2
        flux[bad] = 1e20 * rng.choice([-1, 1], bad.sum())
        files.append(write_s1d(directory / "SYN.garbage.fits", flux, step=step, obj="JUNK",
                               berv=0.0, mjd=mjd + 3))
        rows.append(("SYN.garbage.fits", "junk"))
    labels = directory / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "star_id"])
        w.writerows(rows)
    return files, labels
