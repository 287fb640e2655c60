"""The label catalogue: one CSV row per file, written as files are made.

Columns (units in the names where they have one):

==================  ======================================================
``index``           spectrum index in the run (0 .. n-1)
``product_id``      ADP: ARCFILE without ``.fits``; s1d:
                    ``HARPS.<DATE-OBS>_s1d_A`` (both as ``harps_data.fitsio``
                    reports them)
``path``            file path relative to the archive directory
``layout``          ``ADP`` or ``S1D``
``star_id``         catalogue index of the star
``object``          OBJECT (``SYN-HD...``)
``ra_deg``          right ascension, J2000, degrees
``dec_deg``         declination, J2000, degrees
``teff_k``          effective temperature, K
``logg_cgs``        surface gravity, log10(cm s^-2)
``mh_dex``          metallicity [M/H], dex
``vsini_kms``       projected rotation velocity, km/s
``rv_kms``          stellar radial velocity (barycentric, at mid-exposure), km/s
``berv_kms``        barycentric Earth radial velocity (header ``ESO DRS BERV``), km/s
``airmass``         mean of ``ESO TEL AIRM START/END``
``pwv_mm``          precipitable water vapour, mean of ``ESO TEL AMBI IWV START/END``, mm
``snr``             median S/N per 0.01 A pixel (the ``SNR`` keyword of a
                    0.01 A file; coarser files bin pixels, so their SNR
                    is ``snr * sqrt(step / 0.01)``)
``mjd_obs``         start of the exposure, MJD (UTC)
``exptime_s``       exposure time, s
``prog_id``         ESO programme identifier
``date_obs``        DATE-OBS
``release_date``    end of the proprietary period, ISO date (DATE-OBS date +
                    ``harps_data.harps.PROPRIETARY_PERIOD_DAYS``)
``is_proprietary``  ``True`` if ``release_date`` is after the run's ``--today``
==================  ======================================================
"""

from __future__ import annotations

import csv
from typing import IO

from harps_synth.observations import Observation

COLUMNS = ("index", "product_id", "path", "layout", "star_id", "object", "ra_deg", "dec_deg",
           "teff_k", "logg_cgs", "mh_dex", "vsini_kms", "rv_kms", "berv_kms", "airmass",
           "pwv_mm", "snr", "mjd_obs", "exptime_s", "prog_id", "date_obs", "release_date",
           "is_proprietary")


def label_row(o: Observation, product_id: str, path: str, layout: str) -> tuple:
    """The CSV row of one file, in the order of :data:`COLUMNS`."""
    s = o.star
    return (o.index, product_id, path, layout, s.star_id, s.name, s.ra, s.dec, s.teff, s.logg,
            s.feh, s.vsini, o.rv, o.berv, o.airmass, o.pwv, o.snr, o.mjd_obs, o.exptime,
            o.prog_id, o.date_obs, o.release_date.isoformat(), o.is_proprietary)


def label_dict(o: Observation) -> dict:
    """Ground truth of an observation as a dict (the CSV columns without
    ``product_id``, ``path`` and ``layout``, which depend on the file)."""
    row = label_row(o, "", "", "")
    return {k: v for k, v in zip(COLUMNS, row, strict=True)
            if k not in ("product_id", "path", "layout")}


class LabelWriter:
    """Append label rows to an open text file (header first).

    Parameters
    ----------
    stream : file object
        Opened for writing text with ``newline=""``.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow(COLUMNS)

    def write(self, rows: list[tuple]) -> None:
        """Write rows (floats with full precision)."""
        self._writer.writerows(rows)
