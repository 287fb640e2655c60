"""Read a user's 1D spectrum for retrieval by example: HARPS files and generic 1D FITS.

Accepted, in this order:

1. **HARPS files** (ESO Phase 3 ADP, DRS s1d): checked by
   :func:`harps_data.fitsio.validated_spectrum`, the rules of ingest
   (``fitsio.validate``).  A HARPS file that ingest would
   refuse is refused with ingest's reason.
2. **Generic 1D FITS** (any instrument), first match wins:

   * a 1D image (primary HDU or first image extension) with a linear
     wavelength axis ``CRVAL1``, ``CDELT1`` (or ``CD1_1``), ``CRPIX1``
     (default 1) and ``CUNIT1`` in Angstrom, nm or m (default Angstrom);
   * the first binary table with a wavelength column (``WAVE``,
     ``WAVELENGTH``, ``LAMBDA``, ``WAVE_AIR``, ``WL``; unit from ``TUNITn``)
     and a flux column (``FLUX``, ``FLUX_REDUCED``, ``SPEC``, ``F``), one
     value per row or one row of arrays (the Phase 3 layout).

   Wavelengths are taken as air, barycentric, as HARPS archives them; the
   same data checks as ingest apply (finite and strictly increasing
   wavelengths, some valid flux, at most ``fitsio.MAX_BAD_FRACTION`` absurd
   pixels), and the spectrum must overlap the range of the learned layer.

Every refusal is :class:`harps_data.fitsheader.InvalidSpectrum` with one line
naming the file (the name the user gave) and what is wrong.
"""

from __future__ import annotations

import math
import os

import numpy as np

from harps_data import fitsio, harps
from harps_data.fitsheader import InvalidSpectrum

WAVE_COLUMNS = ("WAVE", "WAVELENGTH", "LAMBDA", "WAVE_AIR", "WL")
FLUX_COLUMNS = ("FLUX", "FLUX_REDUCED", "SPEC", "F")
#: Wavelength units understood, to Angstrom.
UNITS = {"": 1.0, "angstrom": 1.0, "angstroms": 1.0, "a": 1.0, "aa": 1.0, "0.1 nm": 1.0,
         "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "m": 1e10, "meter": 1e10,
         "um": 1e4, "micron": 1e4}
#: At least this much of the spectrum must fall in the model's range.
MIN_OVERLAP_A = 100.0
#: The largest number of samples accepted in a generic file.
MAX_SAMPLES = 2_000_000

_HARPS_LAYOUT_REASONS = ("wrong instrument", "wrong layout")


def _factor(unit: str, name: str, where: str) -> float:
    key = unit.strip().lower()
    if key not in UNITS:
        raise InvalidSpectrum(name, f"{where}: wavelength unit {unit!r} is not understood "
                              "(Angstrom, nm or m)")
    return UNITS[key]


def _from_image(hdu, name: str) -> tuple[np.ndarray, np.ndarray]:
    h = hdu.header
    n = int(h.get("NAXIS1", 0))
    step = h.get("CDELT1", h.get("CD1_1"))
    if "CRVAL1" not in h or step is None:
        raise InvalidSpectrum(name, "1D image without a linear wavelength axis "
                              "(CRVAL1 and CDELT1 or CD1_1 needed)")
    if "LOG" in str(h.get("CTYPE1", "")).upper() or h.get("DC-FLAG") == 1:
        raise InvalidSpectrum(name, "logarithmic wavelength axes are not supported; "
                              "give a linear axis or a WAVE column")
    k = _factor(str(h.get("CUNIT1", "")), name, "CUNIT1")
    crpix = float(h.get("CRPIX1", 1.0))
    wave = (float(h["CRVAL1"]) + float(step) * (np.arange(n) + 1.0 - crpix)) * k
    return wave, np.asarray(hdu.data, dtype=np.float64)


def _from_table(hdu, name: str) -> tuple[np.ndarray, np.ndarray]:
    cols = {c.name.upper(): c for c in hdu.columns}
    wcol = next((cols[c] for c in WAVE_COLUMNS if c in cols), None)
    fcol = next((cols[c] for c in FLUX_COLUMNS if c in cols), None)
    if wcol is None or fcol is None:
        raise InvalidSpectrum(name, f"table {hdu.name or 1} has no wavelength and flux columns "
                              f"(looked for {'/'.join(WAVE_COLUMNS)} and "
                              f"{'/'.join(FLUX_COLUMNS)}; it has {', '.join(cols) or 'none'})")
    k = _factor(str(wcol.unit or ""), name, f"column {wcol.name}")
    wave = np.asarray(hdu.data[wcol.name], dtype=np.float64).ravel() * k
    flux = np.asarray(hdu.data[fcol.name], dtype=np.float64).ravel()
    if wave.shape != flux.shape:
        raise InvalidSpectrum(name, f"columns {wcol.name} and {fcol.name} differ in length "
                              f"({wave.size} and {flux.size})")
    return wave, flux


def _read_generic(path: str, name: str) -> tuple[np.ndarray, np.ndarray, str]:
    from astropy.io import fits
    try:
        with fits.open(path, memmap=False) as hdus:
            obj = str(hdus[0].header.get("OBJECT", "")).strip()
            for hdu in hdus:
                if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.header.get(
                        "NAXIS") == 1:
                    return (*_from_image(hdu, name), obj)
                if isinstance(hdu, fits.BinTableHDU):
                    return (*_from_table(hdu, name), obj)
    except InvalidSpectrum:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError) as ex:
        raise InvalidSpectrum(name, f"not a readable FITS file ({str(ex)[:160]})") from None
    raise InvalidSpectrum(name, "no 1D spectrum found: expected a HARPS ADP or s1d file, a 1D "
                          "image with a wavelength axis, or a table with WAVE and FLUX columns")


def check_arrays(wave: np.ndarray, flux: np.ndarray, name: str) -> None:
    """Ingest's data rules (``fitsio.check_wavelengths``, ``fitsio.check_flux``) for a
    generic spectrum, plus its size and overlap with the model range.

    Raises
    ------
    InvalidSpectrum
    """
    if wave.size < 2:
        raise InvalidSpectrum(name, f"only {wave.size} samples")
    if wave.size > MAX_SAMPLES:
        raise InvalidSpectrum(name, f"{wave.size} samples; at most {MAX_SAMPLES} are accepted")
    fitsio.check_wavelengths(name, wave, "the wavelength axis")
    lo, hi = max(wave[0], harps.MODEL_WAVE_MIN), min(wave[-1], harps.MODEL_WAVE_MAX)
    if hi - lo < MIN_OVERLAP_A:
        raise InvalidSpectrum(
            name, f"wavelengths {wave[0]:.1f}-{wave[-1]:.1f} A overlap the model range "
            f"{harps.MODEL_WAVE_MIN:.0f}-{harps.MODEL_WAVE_MAX:.0f} A by less than "
            f"{MIN_OVERLAP_A:.0f} A")
    fitsio.check_flux(name, wave, flux)


def _generic_meta(name: str, obj: str, wave: np.ndarray) -> fitsio.SpectrumMeta:
    nan = math.nan
    return fitsio.SpectrumMeta(
        path=name, layout="GENERIC", product_id=os.path.basename(name), object=obj,
        ra=nan, dec=nan, radesys="", date_obs="", mjd_obs=nan, mjd_end=nan, exptime=nan,
        snr=None, sn50=None, berv=None, bjd=None, airmass=None, prog_id=None,
        drs_version=None, dpr_type=None, wave_min=float(wave[0]), wave_max=float(wave[-1]),
        wave_step=float((wave[-1] - wave[0]) / (len(wave) - 1)), n_points=len(wave),
        spec_res=nan, arcfile=None, origfile=None)


def read_upload(path: str | os.PathLike, name: str | None = None) -> fitsio.Spectrum:
    """Read a user's file (see the module docstring).

    Parameters
    ----------
    path : str or path-like
        The file on disk (a temporary copy of the upload).
    name : str, optional
        The name to use in messages (the user's file name); default ``path``.

    Returns
    -------
    harps_data.fitsio.Spectrum
        ``meta.layout`` is ``"ADP"``, ``"S1D"`` or ``"GENERIC"``.

    Raises
    ------
    InvalidSpectrum
        With ``path`` replaced by ``name`` in the message.
    """
    path, name = os.fspath(path), name or os.fspath(path)
    try:
        return fitsio.validated_spectrum(path)
    except InvalidSpectrum as ex:
        if not ex.reason.startswith(_HARPS_LAYOUT_REASONS):
            raise InvalidSpectrum(name, ex.reason) from None
    wave, flux, obj = _read_generic(path, name)
    check_arrays(wave, flux, name)
    return fitsio.Spectrum(wave=wave, flux=flux.astype(np.float32), err=None,
                           meta=_generic_meta(name, obj, wave))
