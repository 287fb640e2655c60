"""Rows of harps.models: one per published model directory (``model.json``).

The checkpoint is a product (downloadable through /getproduct, checksummed
in the row), so the RD feeds these rows through ``//products#define``.
"""

from __future__ import annotations

import datetime
import os

import harps_site
from harps_service.latentrows import load_model_description

try:
    from gavo.grammars.customgrammar import CustomRowIterator
except ImportError:  # pragma: no cover - outside DaCHS
    CustomRowIterator = object


class RowIterator(CustomRowIterator):
    """DaCHS row iterator: ``model.json`` -> one row of harps.models."""

    def _iterRows(self):  # noqa: N802 - DaCHS API name
        model_dir = os.path.dirname(self.sourceToken)
        if os.path.basename(model_dir) == "current":  # the symlink to one of the others
            return
        m = load_model_description(model_dir)
        ckpt = os.path.join(model_dir, m.checkpoint)
        yield {
            "model_id": m.model_id,
            "created": datetime.datetime.fromisoformat(m.created),
            "preset": m.preset,
            "latent_dim": m.latent_dim,
            "n_informative": len(m.informative),
            "n_parameters": m.n_parameters,
            "grid_step": m.grid_step,
            "train_data": m.train_data,
            "n_train_spectra": m.n_train_spectra,
            "ckpt_sha256": m.ckpt_sha256,
            "ckpt_accref": os.path.relpath(ckpt, harps_site.INPUTS_DIR),
            "ckpt_size": os.path.getsize(ckpt),
            "is_current": int(os.path.realpath(model_dir) == os.path.realpath(
                os.path.join(os.path.dirname(model_dir), "current"))),
        }

    def getLocator(self):  # noqa: N802 - DaCHS API name
        return self.sourceToken
