"""Spectrum delivery for the datalink services: SDM rows, original files, previews.

All functions take the dataset's SSA row (as DaCHS's SSA descriptors carry
it); callers must have passed :func:`access.require_access` first (the
datalink services do, see :mod:`harps_service.datalink`).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from gavo import base

import harps_site
from harps_data import fitsio

#: Media type under which the datalink service hands out the archive file
#: itself (ESO Phase 3 ADP or DRS s1d FITS), next to the SDM serialisations.
ORIGINAL_FORMAT = "application/fits;content=archive-original"
#: Preview size in pixels (width, height).
PREVIEW_SIZE = (900, 300)
#: Number of wavelength bins in a preview (min/max envelope per bin).
PREVIEW_BINS = 1500


def spectrum_path(ssa_row: Mapping[str, Any]) -> str:
    """Absolute path of the archive file behind an SSA row."""
    return os.path.join(harps_site.INPUTS_DIR, ssa_row["accref"])


def iter_sdm_rows(ssa_row: Mapping[str, Any]) -> Iterator[dict[str, float]]:
    """Rows of the SDM instance table for one spectrum, in file order.

    Yields
    ------
    dict
        ``spectral`` (Angstrom, air, barycentric), ``flux`` (adu) and
        ``flux_error`` (adu; NaN where the file has no error, i.e. all real
        ADPs and every s1d file).  CCD-gap pixels keep the zeros of the file.
    """
    spec = fitsio.read_spectrum(spectrum_path(ssa_row))
    err = spec.err if spec.err is not None else np.full(spec.flux.shape, np.nan, np.float32)
    for w, f, e in zip(spec.wave.tolist(), spec.flux.tolist(), err.tolist(), strict=True):
        yield {"spectral": w, "flux": f, "flux_error": e}


def cutout(sdm_table: Any, low_m: float, high_m: float) -> None:
    """Keep the SDM rows with wavelength in [low_m, high_m] (SODA BAND, metres).

    Unlike DaCHS's ``mangle_cutout``, the bounds get a relative tolerance of
    1e-12 so that a pixel exactly on a bound (6.56e-7 m = 6560.00 A) is not
    lost to float rounding in the metre-to-Angstrom conversion.  The SSA
    spectral-coverage params of the table are updated to the cut range.

    Raises
    ------
    gavo.base.ValidationError
        If the lower bound lies above the upper one.
    """
    if low_m > high_m:
        raise base.ValidationError(
            f"BAND lower bound {low_m} m lies above the upper bound {high_m} m", "BAND")
    lo, hi = low_m * 1e10, high_m * 1e10  # spectral axis in Angstrom
    eps = 1e-12 * max(abs(lo), abs(hi))
    sdm_table.rows = [r for r in sdm_table.rows if lo - eps <= r["spectral"] <= hi + eps]
    if sdm_table.rows:
        start, end = sdm_table.rows[0]["spectral"] * 1e-10, sdm_table.rows[-1]["spectral"] * 1e-10
        sdm_table.setParam("ssa_specstart", start)
        sdm_table.setParam("ssa_specend", end)
        sdm_table.setParam("ssa_specext", end - start)
        sdm_table.setParam("ssa_specmid", 0.5 * (start + end))


def format_sdm(sdm_data: Any, media_type: str | None) -> tuple[str, bytes]:
    """Serialise an SDM spectrum, working around a DaCHS 2.7 FITS bug.

    ``sdm.makeSDMDataForSSARow`` turns spoint params into [ra, dec] lists,
    but the FITS writer then expects an spoint for ``ssa_targetpos``
    (RA_TARG/DEC_TARG cards) and fails; for FITS output the param is given
    back as an spoint.
    """
    from gavo.protocols import sdm
    if media_type == "application/fits":
        from gavo.utils import pgsphere
        param = sdm_data.getPrimaryTable().getParamByName("ssa_targetpos")
        if isinstance(param.value, (list, tuple)):
            param.type = "spoint"
            param.set(pgsphere.SPoint.fromDegrees(*param.value))
    return sdm.formatSDMData(sdm_data, media_type)


def original_file(ssa_row: Mapping[str, Any]) -> tuple[str, bytes]:
    """The archive file itself, as (media type, payload)."""
    with open(spectrum_path(ssa_row), "rb") as f:
        return "application/fits", f.read()


def _envelope(wave: np.ndarray, flux: np.ndarray, nbins: int):
    """Min/max flux per wavelength bin so that narrow lines survive decimation."""
    edges = np.linspace(wave[0], wave[-1], nbins + 1)
    idx = np.clip(np.searchsorted(edges, wave, side="right") - 1, 0, nbins - 1)
    lo = np.full(nbins, np.inf)
    hi = np.full(nbins, -np.inf)
    np.minimum.at(lo, idx, flux)
    np.maximum.at(hi, idx, flux)
    centres = 0.5 * (edges[1:] + edges[:-1])
    ok = np.isfinite(lo) & np.isfinite(hi)
    return centres[ok], lo[ok], hi[ok]


def render_preview(ssa_row: Mapping[str, Any]) -> bytes:
    """PNG quick-look of a spectrum: flux envelope against wavelength."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    spec = fitsio.read_spectrum(spectrum_path(ssa_row))
    good = np.isfinite(spec.flux) & ~fitsio.bad_pixel_mask(spec.wave, spec.flux)
    x, lo, hi = _envelope(spec.wave[good], spec.flux[good].astype(np.float64), PREVIEW_BINS)
    dpi = 100
    fig = Figure(figsize=(PREVIEW_SIZE[0] / dpi, PREVIEW_SIZE[1] / dpi), dpi=dpi)
    ax = fig.add_axes((0.08, 0.17, 0.9, 0.73))
    ax.fill_between(x, lo, hi, color="k", linewidth=0.3)
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel("air wavelength, barycentric [Angstrom]")
    ax.set_ylabel("flux [adu]")
    ax.set_title(str(ssa_row.get("ssa_dstitle", "")), fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def cached_preview(ssa_row: Mapping[str, Any], cache_dir: str) -> bytes:
    """The preview PNG, computed once and then read from ``cache_dir``."""
    name = hashlib.sha1(ssa_row["accref"].encode("utf-8")).hexdigest() + ".png"
    path = os.path.join(cache_dir, name)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        pass
    png = render_preview(ssa_row)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(png)
        os.replace(tmp, path)
    except OSError as ex:  # an unwritable cache must not break previews
        base.ui.notifyWarning(f"Cannot cache preview {path}: {ex}")
    return png
