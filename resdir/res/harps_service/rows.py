"""Turn HARPS 1D files into rows of harps.raw_data (the DaCHS custom grammar).

The RD's ``import`` data element (``dachs imp harps/q import``, a rebuild from
the archive tree) instantiates :class:`RowIterator` for each file; the
tree only holds files that ``harps-ingest`` validated (data included), so
the grammar reads headers only (about 1 ms per file, see :mod:`harps_data.fitsio`).
``harps-ingest`` itself goes through ``import_batch`` and
:mod:`harps_service.manifest`, with the same mapping.

:func:`archive_row` is the single mapping from header metadata to column
values; the column definitions (units, UCDs, descriptions) are in ``q.rd``.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import harps_site
from harps_data import fitsio, harps

try:  # the grammar base class only exists inside DaCHS
    from gavo.grammars.customgrammar import CustomRowIterator
except ImportError:  # pragma: no cover - unit tests import archive_row alone
    CustomRowIterator = object


def release_date(mjd_obs: float) -> datetime.date:
    """End of the proprietary period for an observation starting at ``mjd_obs``.

    Parameters
    ----------
    mjd_obs : float
        Start of the exposure, MJD (UTC).

    Returns
    -------
    datetime.date
        Observation date plus ``harps_data.harps.PROPRIETARY_PERIOD_DAYS``.
    """
    obs_date = harps.MJD_EPOCH.date() + datetime.timedelta(days=int(mjd_obs))
    return obs_date + datetime.timedelta(days=harps.PROPRIETARY_PERIOD_DAYS)


def accref_of(path: str) -> str:
    """DaCHS accref (inputs-relative path) of an archive file."""
    return os.path.relpath(os.path.realpath(path), os.path.realpath(harps_site.INPUTS_DIR))


def creator_did(meta: fitsio.SpectrumMeta) -> str | None:
    """ESO's dataset identifier for genuine ESO Phase 3 products, else None.

    Synthetic files never get an ESO identifier: they are not ESO products.
    """
    if meta.layout != "ADP" or meta.synthetic or not meta.arcfile:
        return None
    return "ivo://eso.org/ID?" + meta.arcfile.removesuffix(".fits")


def archive_row(meta: fitsio.SpectrumMeta, accref: str) -> dict[str, Any]:
    """Map the metadata of one spectrum to harps.raw_data column values.

    Parameters
    ----------
    meta : harps_data.fitsio.SpectrumMeta
    accref : str
        The file's path relative to DaCHS's inputs directory.

    Returns
    -------
    dict
        Column name to value; SSA spectral quantities in metres, times in MJD
        and seconds, velocities in km/s.  ``embargo`` and ``owner`` feed
        ``//products#define`` (access control).
    """
    wave_mid_m = 0.5 * (meta.wave_min + meta.wave_max) * 1e-10
    released = release_date(meta.mjd_obs)
    return {
        "accref": accref,
        "product_id": meta.product_id,
        "file_layout": meta.layout,
        "synthetic": int(meta.synthetic),
        "ssa_dateObs": 0.5 * (meta.mjd_obs + meta.mjd_end),
        "ssa_timeExt": meta.exptime,
        "ssa_targname": meta.object,
        "ssa_dstitle": f"HARPS {meta.object} {meta.date_obs[:19]} {meta.layout}",
        "ssa_specstart": meta.wave_min * 1e-10,
        "ssa_specend": meta.wave_max * 1e-10,
        "ssa_length": meta.n_points,
        "ssa_specres": wave_mid_m / meta.spec_res,
        "ssa_binSize": meta.wave_step * 1e-10,
        "ssa_snr": meta.snr,
        "ssa_creatorDID": creator_did(meta),
        "ra": meta.ra,
        "dec": meta.dec,
        "mjd_obs": meta.mjd_obs,
        "mjd_end": meta.mjd_end,
        "sn50": meta.sn50,
        "berv": meta.berv,
        "bjd": meta.bjd,
        "airmass": meta.airmass,
        "prog_id": meta.prog_id,
        "drs_version": meta.drs_version,
        "dpr_type": meta.dpr_type,
        "arcfile": meta.arcfile,
        "release_date": datetime.datetime.combine(released, datetime.time()),
        "embargo": released,
        "owner": meta.prog_id,
    }


class RowIterator(CustomRowIterator):
    """DaCHS row iterator: one row per HARPS 1D file (header only)."""

    def _iterRows(self):  # noqa: N802 - DaCHS API name
        try:
            meta = fitsio.read_meta(self.sourceToken)
        except fitsio.InvalidSpectrum as ex:
            # DaCHS reports the source; the message says what is wrong
            raise ValueError(str(ex)) from None
        yield archive_row(meta, accref_of(self.sourceToken))

    def getLocator(self):  # noqa: N802 - DaCHS API name
        return self.sourceToken
