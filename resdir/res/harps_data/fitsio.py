"""Read and validate HARPS 1D spectra: ESO Phase 3 ADP files and DRS s1d files.

Two layouts are understood (see ``../shared/data/harps_real/README.md``):

``ADP``
    ESO Phase 3 ``SCIENCE.SPECTRUM``: an empty primary HDU with about 3000
    cards, then one ``BINTABLE`` with one row of fixed-length arrays
    ``WAVE`` (Angstrom), ``FLUX`` and ``ERR`` (adu; ERR is NaN in real files).
``S1D``
    HARPS pipeline ``*_s1d_A.fits``: a 1D float image in the primary HDU
    with a linear wavelength solution ``CRVAL1 + CDELT1 * (i + 1 - CRPIX1)``.

Headers are read by the card scanner in :mod:`harps_data.fitsheader` rather than
``astropy.io.fits`` because ingest must handle hundreds of files per second
and ADP headers hold about 3000 cards (astropy needs about 20 ms per header,
the scanner about 1 ms).  Data arrays are read with ``numpy`` straight from
their byte offsets.  Only ``numpy`` is needed, so the DaCHS server imports this
module as well as the learned layer.

Every problem is raised as :class:`InvalidSpectrum` naming the file and saying
what is wrong.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from harps_data import harps
from harps_data.fitsheader import Header, InvalidSpectrum, read_headers

_BITPIX_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_TFORM_DTYPES = {"D": ">f8", "E": ">f4", "J": ">i4", "I": ">i2", "K": ">i8", "B": ">u1"}
_TFORM = re.compile(r"^\s*(\d*)([A-Z])")

#: Fraction of pixels with absurd flux above which a file is refused.
MAX_BAD_FRACTION = 0.01
#: A pixel is absurd when |flux| exceeds this many times the median |flux|.
ABSURD_FACTOR = 1e3
#: A pixel is also absurd when |flux| exceeds this many adu (no HARPS 1D
#: product comes near: a saturated order sums to below 1e7).
ABSURD_ADU = 1e8


# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SpectrumMeta:
    """What the archive knows about one HARPS 1D spectrum (header values only).

    Units: degrees (``ra``, ``dec``), MJD UTC (``mjd_obs``, ``mjd_end``),
    seconds (``exptime``), km/s (``berv``), Angstrom (``wave_min``,
    ``wave_max``, ``wave_step``).
    """

    path: str
    layout: str  # "ADP" or "S1D"
    product_id: str  # archive-style identifier, e.g. "ADP.2014-09-16T11:04:45.123"
    object: str
    ra: float
    dec: float
    radesys: str
    date_obs: str
    mjd_obs: float
    mjd_end: float
    exptime: float
    snr: float | None
    sn50: float | None
    berv: float | None
    bjd: float | None
    airmass: float | None
    prog_id: str | None
    drs_version: str | None
    dpr_type: str | None
    wave_min: float
    wave_max: float
    wave_step: float
    n_points: int
    spec_res: float
    arcfile: str | None
    origfile: str | None
    synthetic: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dictionary."""
        return asdict(self)

    @property
    def canonical_name(self) -> str:
        """File name under which the archive stores this product.

        ``:`` from ISO timestamps is replaced by ``_`` so that names stay
        clean in URLs and on every file system.
        """
        return self.product_id.replace(":", "_") + ".fits"


def _require(h: Header, key: str, path: str, kind: type = float) -> Any:
    value = h.get(key)
    if value is None:
        raise InvalidSpectrum(path, f"missing mandatory keyword {key}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidSpectrum(path, f"keyword {key} is not a number: {value!r}")
        if not np.isfinite(value):
            raise InvalidSpectrum(path, f"keyword {key} is not finite: {value!r}")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidSpectrum(path, f"keyword {key} is not a non-empty string: {value!r}")
    return value.strip()


def _opt_float(h: Header, key: str) -> float | None:
    value = h.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if np.isfinite(value) else None


def _airmass(h: Header) -> float | None:
    start, end = _opt_float(h, "ESO TEL AIRM START"), _opt_float(h, "ESO TEL AIRM END")
    if start is not None and end is not None and start >= 1 and end >= 1:
        return 0.5 * (start + end)
    value = _opt_float(h, "AIRMASS")
    return value if value is not None and value >= 1 else None


@dataclass(frozen=True)
class _Column:
    name: str
    offset: int  # byte offset within the row
    count: int
    dtype: str


def _table_columns(ext: Header, path: str) -> tuple[dict[str, _Column], int]:
    ncols = ext.get("TFIELDS")
    if not isinstance(ncols, int) or ncols < 2:
        raise InvalidSpectrum(path, "wrong layout: spectrum table has no TFIELDS >= 2")
    cols, offset = {}, 0
    for i in range(1, ncols + 1):
        name = str(ext.get(f"TTYPE{i}", "")).strip().upper()
        m = _TFORM.match(str(ext.get(f"TFORM{i}", "")))
        if not m or m.group(2) not in _TFORM_DTYPES:
            raise InvalidSpectrum(
                path, f"wrong layout: unsupported TFORM{i}={ext.get(f'TFORM{i}')!r}"
                " (fixed-length D/E/J/I/K/B arrays expected)")
        count = int(m.group(1) or 1)
        dtype = _TFORM_DTYPES[m.group(2)]
        cols[name] = _Column(name, offset, count, dtype)
        offset += count * np.dtype(dtype).itemsize
    return cols, offset


def _adp_meta(path: str, h: Header, ext: Header) -> SpectrumMeta:
    if ext.get("XTENSION") != "BINTABLE":
        raise InvalidSpectrum(path, "wrong layout: ADP extension is not a BINTABLE")
    if ext.get("NAXIS2") != 1:
        raise InvalidSpectrum(
            path, f"wrong layout: spectrum table has NAXIS2={ext.get('NAXIS2')}, expected 1 row")
    cols, row_bytes = _table_columns(ext, path)
    if row_bytes != ext.get("NAXIS1"):
        raise InvalidSpectrum(path, f"wrong layout: TFORMs sum to {row_bytes} bytes but NAXIS1="
                              f"{ext.get('NAXIS1')}")
    for needed in ("WAVE", "FLUX"):
        if needed not in cols:
            raise InvalidSpectrum(path, f"wrong layout: spectrum table has no {needed} column")
    n = cols["WAVE"].count
    if cols["FLUX"].count != n or ("ERR" in cols and cols["ERR"].count != n):
        raise InvalidSpectrum(path, "wrong layout: WAVE, FLUX and ERR differ in length")
    # WAVELMIN/WAVELMAX are mandatory in Phase 3 and in nm; TDMIN1/TDMAX1
    # (in the WAVE unit, Angstrom for HARPS) are the fallback.
    wmin, wmax = _opt_float(h, "WAVELMIN"), _opt_float(h, "WAVELMAX")
    if wmin is not None and wmax is not None:
        wmin, wmax = wmin * 10.0, wmax * 10.0
    else:
        wmin, wmax = _opt_float(ext, "TDMIN1"), _opt_float(ext, "TDMAX1")
        if wmin is None or wmax is None:
            raise InvalidSpectrum(path, "missing mandatory keywords WAVELMIN/WAVELMAX")
    arcfile = h.get("ARCFILE")
    mjd_obs = _require(h, "MJD-OBS", path)
    exptime = _require(h, "EXPTIME", path)
    product_id = (arcfile[:-5] if isinstance(arcfile, str) and arcfile.endswith(".fits")
                  else f"HARPS.{_require(h, 'DATE-OBS', path, str)}_ADP")
    return SpectrumMeta(
        path=path, layout="ADP", product_id=product_id,
        object=_require(h, "OBJECT", path, str),
        ra=_require(h, "RA", path), dec=_require(h, "DEC", path),
        radesys=str(h.get("RADESYS") or h.get("RADECSYS") or "FK5").strip(),
        date_obs=str(h.get("DATE-OBS", "")),
        mjd_obs=mjd_obs,
        mjd_end=_opt_float(h, "MJD-END") or mjd_obs + exptime / 86400.0,
        exptime=exptime,
        snr=_opt_float(h, "SNR"), sn50=_opt_float(h, "ESO DRS SPE EXT SN50"),
        berv=_opt_float(h, "ESO DRS BERV"), bjd=_opt_float(h, "ESO DRS BJD"),
        airmass=_airmass(h),
        prog_id=h.get("PROG_ID") or h.get("ESO OBS PROG ID"),
        drs_version=h.get("ESO DRS VERSION") or h.get("PROCSOFT"),
        dpr_type=h.get("ESO DPR TYPE"),
        wave_min=float(wmin), wave_max=float(wmax),
        wave_step=(_opt_float(h, "SPEC_BIN") or harps.WAVE_STEP / 10) * 10.0,
        n_points=n,
        spec_res=_opt_float(h, "SPEC_RES") or harps.RESOLVING_POWER,
        arcfile=arcfile, origfile=h.get("ORIGFILE"),
        synthetic=h.get(harps.SYNTHETIC_KEYWORD) is True,
    )


def _s1d_meta(path: str, h: Header) -> SpectrumMeta:
    n = h.get("NAXIS1")
    if not isinstance(n, int) or n < 2:
        raise InvalidSpectrum(path, "wrong layout: 1D image without NAXIS1")
    crval = _require(h, "CRVAL1", path)
    cdelt = _require(h, "CDELT1", path)
    crpix = _opt_float(h, "CRPIX1") or 1.0
    if not 0 < cdelt < 1:
        raise InvalidSpectrum(path, f"wrong layout: CDELT1={cdelt} is not an Angstrom step")
    date_obs = _require(h, "DATE-OBS", path, str)
    mjd_obs = _require(h, "MJD-OBS", path)
    exptime = _require(h, "EXPTIME", path)
    sn50 = _opt_float(h, "ESO DRS SPE EXT SN50")
    return SpectrumMeta(
        path=path, layout="S1D", product_id=f"HARPS.{date_obs}_s1d_A",
        object=_require(h, "OBJECT", path, str),
        ra=_require(h, "RA", path), dec=_require(h, "DEC", path),
        radesys=str(h.get("RADESYS") or h.get("RADECSYS") or "FK5").strip(),
        date_obs=date_obs, mjd_obs=mjd_obs,
        mjd_end=mjd_obs + exptime / 86400.0, exptime=exptime,
        snr=sn50, sn50=sn50,
        berv=_opt_float(h, "ESO DRS BERV"), bjd=_opt_float(h, "ESO DRS BJD"),
        airmass=_airmass(h),
        prog_id=h.get("ESO OBS PROG ID"),
        drs_version=h.get("ESO DRS VERSION"),
        dpr_type=h.get("ESO DPR TYPE"),
        wave_min=crval + cdelt * (1 - crpix),
        wave_max=crval + cdelt * (n - crpix),
        wave_step=cdelt, n_points=n,
        spec_res=harps.RESOLVING_POWER,
        arcfile=h.get("ARCFILE"), origfile=h.get("ORIGFILE"),
        synthetic=h.get(harps.SYNTHETIC_KEYWORD) is True,
    )


def _check_identity(path: str, h: Header) -> None:
    instrume = str(h.get("INSTRUME", "")).strip()
    if instrume != harps.INSTRUMENT:
        raise InvalidSpectrum(
            path, f"wrong instrument: INSTRUME={instrume or 'missing'!r}, expected 'HARPS'")


def _layout(path: str, h: Header, ext: Header | None) -> str:
    if ext is not None:
        if h.get("PRODCATG") != "SCIENCE.SPECTRUM":
            raise InvalidSpectrum(
                path, f"wrong layout: PRODCATG={h.get('PRODCATG')!r}, expected 'SCIENCE.SPECTRUM'"
                " for an ESO Phase 3 1D spectrum")
        return "ADP"
    if h.get("NAXIS") == 1:
        return "S1D"
    raise InvalidSpectrum(
        path, f"wrong layout: NAXIS={h.get('NAXIS')} in the primary HDU and no spectrum table"
        " (expected an ESO Phase 3 ADP 1D spectrum or a DRS s1d file)")


def _mjd_from_iso(date_obs: str) -> float | None:
    """MJD of an ISO-8601 DATE-OBS, or None if it does not parse."""
    import datetime
    try:
        t = datetime.datetime.fromisoformat(date_obs.strip())
    except ValueError:
        return None
    return (t - harps.MJD_EPOCH).total_seconds() / 86400.0


def _check_plausible(meta: SpectrumMeta) -> None:
    path = meta.path
    mjd_date = _mjd_from_iso(meta.date_obs) if meta.date_obs else None
    if mjd_date is not None and abs(mjd_date - meta.mjd_obs) * 86400.0 > 60.0:
        raise InvalidSpectrum(
            path, f"DATE-OBS={meta.date_obs!r} and MJD-OBS={meta.mjd_obs} disagree by "
            f"{abs(mjd_date - meta.mjd_obs) * 86400.0:.0f} s")
    if not (-360 <= meta.ra <= 360 and -90 <= meta.dec <= 90):
        raise InvalidSpectrum(path, f"RA/DEC out of range: {meta.ra}, {meta.dec}")
    if not 40000 < meta.mjd_obs < 80000:
        raise InvalidSpectrum(path, f"MJD-OBS={meta.mjd_obs} is not a HARPS-era date")
    if meta.exptime < 0:
        raise InvalidSpectrum(path, f"EXPTIME={meta.exptime} is negative")
    if not (3000 < meta.wave_min < meta.wave_max < 8000):
        raise InvalidSpectrum(
            path, f"wavelength range {meta.wave_min:.2f}-{meta.wave_max:.2f} A is not HARPS's")


def read_meta(path: str | os.PathLike) -> SpectrumMeta:
    """Read the metadata of a HARPS 1D spectrum from its headers only.

    Parameters
    ----------
    path : str or path-like
        An ADP or s1d FITS file.

    Returns
    -------
    SpectrumMeta

    Raises
    ------
    InvalidSpectrum
        Not FITS, truncated header, wrong instrument or layout, missing or
        implausible mandatory keywords.
    """
    path = os.fspath(path)
    h, ext, _ = read_headers(path)
    _check_identity(path, h)
    layout = _layout(path, h, ext)
    meta = _adp_meta(path, h, ext) if layout == "ADP" else _s1d_meta(path, h)
    _check_plausible(meta)
    return meta


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

@dataclass
class Spectrum:
    """A HARPS 1D spectrum as archived.

    Attributes
    ----------
    wave : numpy.ndarray
        Shape ``(N,)``, float64, air wavelength in Angstrom, barycentric.
    flux : numpy.ndarray
        Shape ``(N,)``, float32, adu (uncalibrated); exact zeros in the CCD gap.
    err : numpy.ndarray or None
        Shape ``(N,)``, float32, adu; NaN where unknown (all of real ADPs),
        None for s1d files, which carry no error.
    meta : SpectrumMeta
    """

    wave: np.ndarray
    flux: np.ndarray
    err: np.ndarray | None
    meta: SpectrumMeta


def _read_array(f, path: str, offset: int, count: int, dtype: str) -> np.ndarray:
    f.seek(offset)
    nbytes = count * np.dtype(dtype).itemsize
    buf = f.read(nbytes)
    if len(buf) != nbytes:
        raise InvalidSpectrum(
            path, f"truncated: data unit needs {offset + nbytes} bytes, file ends before")
    return np.frombuffer(buf, dtype=dtype).astype(dtype[1:])


def read_spectrum(path: str | os.PathLike) -> Spectrum:
    """Read a HARPS 1D spectrum (headers and arrays).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Spectrum

    Raises
    ------
    InvalidSpectrum
        Everything :func:`read_meta` refuses, plus truncated data units.
    """
    path = os.fspath(path)
    h, ext, data_offset = read_headers(path)
    _check_identity(path, h)
    layout = _layout(path, h, ext)
    with open(path, "rb") as f:
        if layout == "ADP":
            meta = _adp_meta(path, h, ext)
            cols, _ = _table_columns(ext, path)
            arrays = {name: _read_array(f, path, data_offset + c.offset, c.count, c.dtype)
                      for name, c in cols.items() if name in ("WAVE", "FLUX", "ERR")}
            wave, flux, err = arrays["WAVE"], arrays["FLUX"], arrays.get("ERR")
            unit = str(ext.get("TUNIT1", "Angstrom")).strip().lower()
            if unit in ("nm", "nanometer"):
                wave = wave * 10.0
        else:
            meta = _s1d_meta(path, h)
            bitpix = h.get("BITPIX")
            if bitpix not in _BITPIX_DTYPES:
                raise InvalidSpectrum(path, f"wrong layout: BITPIX={bitpix}")
            flux = _read_array(f, path, data_offset, meta.n_points, _BITPIX_DTYPES[bitpix])
            bscale, bzero = h.get("BSCALE", 1.0), h.get("BZERO", 0.0)
            if bscale != 1.0 or bzero != 0.0:
                flux = flux * bscale + bzero
            wave = meta.wave_min + meta.wave_step * np.arange(meta.n_points)
            err = None
    _check_plausible(meta)
    return Spectrum(wave=wave.astype(np.float64), flux=flux.astype(np.float32),
                    err=None if err is None else err.astype(np.float32), meta=meta)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

def bad_pixel_mask(wave: np.ndarray, flux: np.ndarray) -> np.ndarray:
    """Flag pixels whose flux cannot be real.

    Parameters
    ----------
    wave : numpy.ndarray
        Shape ``(N,)``, Angstrom.
    flux : numpy.ndarray
        Shape ``(N,)``, adu.

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``, bool: True for non-finite flux, or |flux| above
        ``ABSURD_ADU`` or above ``ABSURD_FACTOR`` times the median |flux|
        of the finite pixels outside the CCD gap.  Gap zeros are not bad.
    """
    finite = np.isfinite(flux)
    usable = finite & ~harps.in_ccd_gap(wave)
    scale = float(np.median(np.abs(flux[usable]))) if usable.any() else 0.0
    limit = min(ABSURD_ADU, ABSURD_FACTOR * scale) if scale > 0 else ABSURD_ADU
    with np.errstate(invalid="ignore"):
        return ~finite | (np.abs(flux) > limit)


def validate(path: str | os.PathLike) -> SpectrumMeta:
    """Check that a file is a usable HARPS 1D spectrum, data included.

    See :func:`validated_spectrum`, which this is, returning the metadata only.
    """
    return validated_spectrum(path).meta


def validated_spectrum(path: str | os.PathLike) -> Spectrum:
    """Read a HARPS 1D spectrum and check that it is usable, data included.

    On top of :func:`read_meta` this reads the arrays and refuses files
    whose wavelengths are not strictly increasing or disagree with the
    header, whose flux is empty, or in which more than ``MAX_BAD_FRACTION``
    of the pixels hold non-finite or absurd values (like the 2003 Gl 273
    s1d file whose blocks hold |flux| up to 1e21).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Spectrum

    Raises
    ------
    InvalidSpectrum
    """
    spec = read_spectrum(path)
    meta, wave, flux = spec.meta, spec.wave, spec.flux
    p = meta.path
    check_wavelengths(p, wave)
    if abs(wave[0] - meta.wave_min) > 1.0 or abs(wave[-1] - meta.wave_max) > 1.0:
        raise InvalidSpectrum(
            p, f"WAVE spans {wave[0]:.2f}-{wave[-1]:.2f} A but the header says "
            f"{meta.wave_min:.2f}-{meta.wave_max:.2f} A")
    check_flux(p, wave, flux)
    return spec


def check_wavelengths(path: str, wave: np.ndarray, label: str = "WAVE") -> None:
    """Refuse wavelengths that are not finite and strictly increasing (``label`` names them).

    Raises
    ------
    InvalidSpectrum
    """
    if not np.all(np.isfinite(wave)):
        raise InvalidSpectrum(path, f"{label} holds non-finite values")
    if np.any(np.diff(wave) <= 0):
        raise InvalidSpectrum(path, f"{label} is not strictly increasing")


def check_flux(path: str, wave: np.ndarray, flux: np.ndarray) -> None:
    """Refuse a flux with no valid pixel or more than ``MAX_BAD_FRACTION`` absurd ones.

    Raises
    ------
    InvalidSpectrum
    """
    bad = bad_pixel_mask(wave, flux)
    if not (~bad & (flux != 0)).any():
        raise InvalidSpectrum(path, "no valid flux: every pixel is zero or non-finite")
    bad_fraction = float(bad.mean())
    if bad_fraction > MAX_BAD_FRACTION:
        raise InvalidSpectrum(
            path, f"garbage data: {bad_fraction:.1%} of the pixels are non-finite or absurd "
            f"(max |flux| {np.nanmax(np.abs(flux[np.isfinite(flux)])):.3g} adu); "
            f"at most {MAX_BAD_FRACTION:.0%} is tolerated")
