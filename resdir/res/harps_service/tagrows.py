"""Grammar: tags artefacts (``harps-tags predict``) -> ``harps.tags``; and what the RD says of them.

A tags artefact is a FITS table (extension ``TAGS``) with one row per
spectrum of a latents artefact: predicted Teff, logg, [M/H], vsini, RV and
their uncertainties, an out-of-domain flag with score and reason; its
header names the model (``MODELID``), the tagger (``TAGGER``), the label
catalogue (``LABELCAT``, ``LABELSHA``) and how rows were matched to it
(``MATCH``, ``NMATCHED``).  The tagger's held-out validation
(``validation.json`` next to it) goes into the column descriptions
(:func:`tag_columns`), so that a TOPCAT user reads the accuracy where the
numbers are.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import harps_site

try:
    from gavo.grammars.customgrammar import CustomRowIterator
except ImportError:  # pragma: no cover - outside DaCHS
    CustomRowIterator = object

#: Directory of the tagger inside a published model directory.
TAGGER_DIR = "tagger"


class TagLabel(NamedTuple):
    """One predicted parameter: column, unit, UCD, what it is.

    (A NamedTuple, not a dataclass: DaCHS loads grammar modules without
    registering them in ``sys.modules``, which dataclasses need.)
    """

    column: str
    unit: str
    ucd: str
    what: str
    digits: str  # how to print its errors


#: The parameters, in table order (one place: the RD's columns come from here).
LABELS = (
    TagLabel("teff", "K", "phys.temperature.effective", "Effective temperature", ".0f"),
    TagLabel("logg", "log(cm.s**-2)", "phys.gravity", "Surface gravity, log10 of g in cgs",
             ".2f"),
    TagLabel("mh", "", "phys.abund.Z", "Metallicity [M/H], dex", ".2f"),
    TagLabel("vsini", "km/s", "phys.veloc.rotat", "Projected rotational velocity v sin i",
             ".1f"),
    TagLabel("rv", "km/s", "spect.dopplerVeloc.opt",
             "Radial velocity of the star (barycentric)", ".1f"),
)


def validation(model_dir: str) -> dict[str, Any]:
    """The tagger's ``validation.json`` of a published model ({} when there is none)."""
    try:
        with open(os.path.join(model_dir, TAGGER_DIR, "validation.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _figures(val: dict[str, Any], column: str) -> dict[str, Any]:
    labels = val.get("labels", val)
    got = labels.get(column) if isinstance(labels, dict) else None
    return got if isinstance(got, dict) else {}


def tag_columns(models_dir: str | None = None) -> Iterator[dict[str, str]]:
    """One LOOP row per parameter and kind (value, error) for the RD's ``tags`` table.

    Keys ``name``, ``unit``, ``ucd``, ``description``; descriptions quote the
    held-out validation of the current tagger when there is one.
    """
    models_dir = models_dir or str(harps_site.resdir_of() / "models")
    val = validation(os.path.join(models_dir, "current"))
    for lab in LABELS:
        fig = _figures(val, lab.column)
        if fig.get("mae") is not None:
            unit = lab.unit or "dex"
            acc = (f" Validation on held-out synthetic stars: mean absolute error "
                   f"{fig['mae']:{lab.digits}} {unit} (predicting the mean: "
                   f"{fig.get('baseline_mae', float('nan')):{lab.digits}} {unit}); "
                   f"{fig.get('within_1sigma', float('nan')):.0%} of the errors within 1 sigma.")
        else:
            acc = ""
        yield {"name": lab.column, "unit": lab.unit, "ucd": lab.ucd,
               "description": f"{lab.what}, predicted from the latent vector (NULL when the "
                              f"spectrum is not encoded).{acc}"}
        yield {"name": f"{lab.column}_err", "unit": lab.unit, "ucd": f"stat.error;{lab.ucd}",
               "description": f"One-sigma uncertainty of {lab.column} for this spectrum "
                              "(calibrated on held-out stars)."}


def _value(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def tag_rows(artefact: str, artefact_ref: str) -> Iterator[dict[str, Any]]:
    """Column values of ``harps.tags`` for every row of a tags artefact."""
    from astropy.io import fits
    with fits.open(artefact) as hdul:
        hdu = hdul["TAGS"]
        h = hdu.header
        provenance = {
            "model_id": str(h["MODELID"]), "tagger": str(h["TAGGER"]),
            "label_catalogue": f"{h.get('LABELCAT', '?')} (SHA-256 {h.get('LABELSHA', '?')})",
            "label_match": f"{h.get('MATCH', '?')}; {h.get('NMATCHED', '?')} spectra matched",
            "artefact": artefact_ref}
        names = {c.lower() for c in hdu.columns.names}
        for row in hdu.data:
            out = {"ssa_pubdid": row["pubdid"].strip(), **provenance,
                   "ood": int(row["ood"]), "ood_score": _value(row["ood_score"]),
                   "ood_reason": (row["ood_reason"].strip() or None)
                   if "ood_reason" in names else None}
            for lab in LABELS:
                out[lab.column] = _value(row[lab.column])
                out[f"{lab.column}_err"] = _value(row[f"{lab.column}_err"])
            yield out


class RowIterator(CustomRowIterator):
    """DaCHS row iterator over one tags artefact."""

    def _iterRows(self):  # noqa: N802 - DaCHS API name
        ref = os.path.relpath(self.sourceToken, harps_site.INPUTS_DIR)
        yield from tag_rows(self.sourceToken, ref)

    def getLocator(self):  # noqa: N802 - DaCHS API name
        return self.sourceToken
