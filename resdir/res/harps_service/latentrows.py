"""Rows of harps.latents from a latents artefact (``harps-encode`` output).

The artefact lies in a published model's directory (``models/<model id>/``)
next to ``model.json``, which names the informative dimensions; each of
them becomes a scalar column ``z1, z2, ...`` (by rank: z1 has the largest
spread) and, in the same order, an element
of the ``knn`` vector that the GiST index and ``gavo_latentdist`` use.
Rows the encoder flagged (garbage, too few valid pixels) are kept with NULL
latents and their reason, so that nothing disappears silently.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Iterator
from typing import Any

import harps_site
from harps_data import records
from harps_data.records import ModelDescription, ZColumn

try:
    from gavo.grammars.customgrammar import CustomRowIterator
except ImportError:  # pragma: no cover - outside DaCHS
    CustomRowIterator = object


def load_model_description(model_dir: str) -> ModelDescription:
    """The ``model.json`` of a published model directory."""
    return records.read(ModelDescription, os.path.join(model_dir, "model.json"))


def informative_columns(models_dir: str) -> list[ZColumn]:
    """The informative dimensions of the published model, [] before there is one.

    ``models_dir`` is ``<resdir>/models``; each entry has ``dim``, ``column``
    (z1, z2, ...) and ``description``.  The RD's z columns and the TAP example
    with an explicit vector are made from this.
    """
    try:
        return load_model_description(os.path.join(models_dir, "current")).informative
    except (OSError, ValueError):  # no model yet (RecordError is a ValueError)
        return []


def latent_rows(artefact: str, model: ModelDescription,
                artefact_ref: str) -> Iterator[dict[str, Any]]:
    """Column values for every row of a latents artefact."""
    from astropy.io import fits
    dims = [d.dim for d in model.informative]
    with fits.open(artefact) as hdul:
        hdu = hdul["LATENTS"]
        if hdu.header["MODELID"] != model.model_id:
            raise ValueError(f"{artefact}: made by model {hdu.header['MODELID']}, "
                             f"not {model.model_id}")
        encoded = datetime.datetime.fromisoformat(hdu.header["DATE"].rstrip("Z"))
        for row in hdu.data:
            ok = int(row["flags"]) == 0
            z = [float(v) for v in row["latent"]] if ok else None
            out = {
                "ssa_pubdid": row["pubdid"].strip(),
                "model_id": model.model_id,
                "latent": z,
                "knn": [z[d] for d in dims] if ok else None,
                "recon_error": float(row["recon_err"]) if ok else None,
                "encode_flags": int(row["flags"]),
                "encode_reason": row["reason"].strip() or None,
                "ckpt_sha256": model.ckpt_sha256,
                "train_data": model.train_data,
                "encoded": encoded,
                "artefact": artefact_ref,
            }
            for d, spec in zip(dims, model.informative, strict=True):
                out[spec.column] = z[d] if ok else None
            if ok and out["recon_error"] is not None and not math.isfinite(out["recon_error"]):
                out["recon_error"] = None
            yield out


class RowIterator(CustomRowIterator):
    """DaCHS row iterator over one latents artefact."""

    def _iterRows(self):  # noqa: N802 - DaCHS API name
        model = load_model_description(os.path.dirname(self.sourceToken))
        ref = os.path.relpath(self.sourceToken, harps_site.INPUTS_DIR)
        yield from latent_rows(self.sourceToken, model, ref)

    def getLocator(self):  # noqa: N802 - DaCHS API name
        return self.sourceToken
