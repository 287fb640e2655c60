"""The steps of the datalink services (``sdl``, ``pv`` in ``q.rd``), one function each.

``q.rd`` chains them with DaCHS's stock SDM procedures; a ``dlget`` on
``sdl`` runs, in order:

1. :func:`gate` (procDef ``embargo_gate``): refuses embargoed data to
   outsiders (DaCHS 2.7's datalink does not check, see :mod:`access`).  DaCHS
   wants its first data function to produce the data; the gate's is a
   reference to the archive file (:class:`ArchiveFile`), read only if
   delivered;
2. :func:`deliver_original` (procDef ``deliver_original``): FORMAT=original
   hands that file out unchanged and skips the rest;
3. DaCHS's ``//soda#sdm_genData``, bound to ``build_spectrum``: the SDM table
   (replacing the reference);
4. DaCHS's ``//soda#sdm_plainfluxcalib`` (FLUXCALIB), then :func:`apply_band`
   (BAND cutouts), then :func:`format_response` (the formatter).

The metadata makers (:func:`band_key`, :func:`format_key`,
:func:`original_link`) declare BAND, FORMAT and the link to the original.
``pv`` runs :func:`gate`, then :func:`preview`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
from gavo import base

import harps_site
from harps_data import harps
from harps_service import access, spectra

#: FORMAT values of ``sdl/dlget``: media type -> what it is.
FORMATS = {
    "application/x-votable+xml": "SDM VOTable, binary encoding",
    "application/x-votable+xml;serialization=tabledata": "SDM VOTable, tabledata encoding",
    "application/fits": "SDM FITS binary table",
    "text/csv": "Comma separated values",
    "text/plain": "Tab separated values",
    spectra.ORIGINAL_FORMAT: "The archive file itself (ESO Phase 3 ADP or DRS s1d FITS)",
}


@dataclass(frozen=True)
class ArchiveFile:
    """The archive file of a dataset, not yet read (what the gate lets through)."""

    ssa_row: Mapping[str, Any]

    def read(self) -> tuple[str, bytes]:
        """(media type, payload), as DaCHS delivers it."""
        return spectra.original_file(self.ssa_row)


def gate(descriptor: Any) -> None:
    """Data function 1: refuse outsiders, else let the archive file through.

    Raises
    ------
    gavo.svcs.Authenticate, gavo.svcs.ForbiddenURI
        See :func:`access.require_access`.
    """
    access.require_access(descriptor.ssaRow)
    descriptor.data = ArchiveFile(descriptor.ssaRow)


def is_original(args: Mapping[str, Any]) -> bool:
    """Whether the request asks for the archive file itself (FORMAT=original)."""
    return args.get("FORMAT") == spectra.ORIGINAL_FORMAT


def deliver_original(descriptor: Any, args: Mapping[str, Any]) -> None:
    """Data function 2: for FORMAT=original, deliver the archive file unchanged.

    Raises
    ------
    gavo.base.ValidationError
        BAND or FLUXCALIB with FORMAT=original (they need an SDM FORMAT).
    gavo.protocols.soda.DeliverNow
        With the file in ``descriptor.data``: DaCHS skips the SDM steps and
        the formatter.
    """
    if not is_original(args):
        return
    from gavo.protocols.soda import DeliverNow
    if args.get("BAND") is not None or args.get("FLUXCALIB"):
        raise base.ValidationError("BAND and FLUXCALIB need an SDM FORMAT; the original"
                                   " file is delivered unchanged", "FORMAT")
    descriptor.data = descriptor.data.read()
    raise DeliverNow()


def apply_band(descriptor: Any, args: Mapping[str, Any]) -> None:
    """Data function after the SDM steps: the BAND cutout (:func:`spectra.cutout`)."""
    if args.get("BAND") is not None:
        spectra.cutout(descriptor.data.getPrimaryTable(), args["BAND"][0], args["BAND"][1])


def format_response(descriptor: Any, args: Mapping[str, Any]) -> tuple[str, bytes]:
    """The formatter: the SDM table in the requested FORMAT.

    Raises
    ------
    gavo.protocols.soda.EmptyData
        When the cutout left no rows.
    """
    from gavo.protocols import soda
    if not descriptor.data.getPrimaryTable().rows:
        raise soda.EmptyData()
    return spectra.format_sdm(descriptor.data, args["FORMAT"])


def preview(descriptor: Any, rd: Any) -> None:
    """``pv``'s data function after the gate: the cached PNG quick-look."""
    descriptor.data = ("image/png", spectra.cached_preview(
        descriptor.ssaRow, os.path.join(rd.resdir, "previews")))


def band_key(descriptor: Any) -> Any:
    """Metadata maker: the BAND parameter, limited to the archive's coverage."""
    from gavo import rscdef, svcs

    from harps_service import params
    return base.makeStruct(
        svcs.InputKey, type="double precision[2]", xtype="interval",
        name="BAND", multiplicity="forced-single",
        unit="m", ucd="em.wl", preparse=params.BAND_PREPARSE,
        description="Spectral cutout interval (air wavelength, metres)",
        values=base.makeStruct(rscdef.Values,
                               min=descriptor.limits["ssa_specstart"].min,
                               max=descriptor.limits["ssa_specend"].max))


def format_key() -> Any:
    """Metadata maker: the FORMAT parameter with the options of :data:`FORMATS`."""
    from gavo import rscdef, svcs
    return base.makeStruct(
        svcs.InputKey, name="FORMAT", type="text",
        ucd="meta.code.mime", utype="ssa:Access.Format",
        multiplicity="forced-single",
        description="Media type of the output",
        values=base.makeStruct(rscdef.Values, options=[
            base.makeStruct(rscdef.Option, title=title, content_=mime)
            for mime, title in FORMATS.items()]))


def original_link(descriptor: Any, rd: Any) -> Any:
    """Metadata maker (``#this``): the link to the archive file as ingested."""
    return descriptor.makeLink(
        f"{rd.getById('sdl').getURL('dlget')}?ID={quote(descriptor.pubDID)}"
        f"&FORMAT={quote(spectra.ORIGINAL_FORMAT)}",
        description="The archive file as ingested (FITS)",
        contentType="application/fits",
        contentLength=descriptor.ssaRow["accsize"] or None)


_PENDING = threading.local()


def reconstruction(descriptor: Any, rd: Any) -> None:
    """``rec``'s data function after the gate: what the model makes of a spectrum, as SDM.

    The model server encodes the archive file and decodes its latent mean
    (:mod:`harps_service.modelclient`); the SDM table (``recon_instance``)
    holds, on the model grid, the observed flux as the model sees it, the
    reconstruction and their difference, all in adu (the spectrum's median
    flux times the normalised values), NaN where the model ignores the
    pixel (CCD gap, bad pixels, outside the spectrum).  The model id is a
    param and part of the title.

    Raises
    ------
    gavo.base.ValidationError
        The spectrum cannot be encoded (the reason is given).
    """
    from harps_service import modelclient
    from harps_service.modelapi import grid as model_grid
    enc, model_id = _model_arrays(modelclient.reconstruct, descriptor, "reconstructed")
    grid = model_grid(model_id)
    wave = grid["grid_start"] + grid["grid_step"] * np.arange(int(grid["grid_npix"]))
    scale = float(enc["scale"][0])
    observed = np.where(enc["mask"][0], enc["x"][0], np.nan) * scale
    recon = enc["recon"][0] * scale
    table = _sdm_product(descriptor, rd, "build_reconstruction",
                         f"Reconstruction by model {model_id}", wave,
                         {"flux": recon, "observed": observed, "residual": observed - recon})
    table.setParam("model_id", model_id)
    table.setParam("norm_scale", scale)


def _model_arrays(call: Any, descriptor: Any, verb: str) -> tuple[dict[str, np.ndarray], str]:
    """The model server's arrays for the descriptor's archive file, and the model id.

    Raises
    ------
    gavo.base.ValidationError
        The model server flagged the spectrum (the reason is given).
    """
    arrays, model_id = call([spectra.spectrum_path(descriptor.ssaRow)])
    if arrays["flags"][0]:
        raise base.ValidationError(f"{descriptor.pubDID} cannot be {verb}: "
                                   f"{arrays['reason'][0]}", "ID")
    return arrays, model_id


def _sdm_product(descriptor: Any, rd: Any, builder: str, title: str, wave: np.ndarray,
                 columns: dict[str, np.ndarray]) -> Any:
    """A derived spectrum on a model grid as the descriptor's SDM data; returns its table.

    ``builder`` is the data element (its table mixes in ``//ssap#sdm-instance``),
    ``title`` goes before the dataset's title, ``wave`` (Angstrom) becomes the
    spectral column and the SSA spectral range, ``columns`` the other columns.
    """
    from gavo.protocols import sdm
    row = dict(descriptor.ssaRow)
    row.update(ssa_dstitle=f"{title} of {row.get('ssa_dstitle')}", ssa_length=len(wave),
               ssa_specstart=wave[0] * 1e-10, ssa_specend=wave[-1] * 1e-10,
               ssa_creationtype="archival")
    _PENDING.columns = {"spectral": wave, **columns}
    try:
        descriptor.data = sdm.makeSDMDataForSSARow(row, rd.getById(builder))
    finally:
        _PENDING.columns = None
    return descriptor.data.getPrimaryTable()


def iter_reconstruction_rows(ssa_row: Mapping[str, Any]) -> Iterator[dict[str, float]]:
    """Rows of ``recon_instance`` from what :func:`reconstruction` computed.

    DaCHS's SDM builder hands its grammar only the SSA row (whose every key
    becomes a param), so the arrays wait in a thread-local slot: the
    builder runs in the thread of :func:`reconstruction`.
    """
    cols = _PENDING.columns
    names = list(cols)
    for values in zip(*(cols[n].tolist() for n in names), strict=True):
        yield dict(zip(names, values, strict=True))


def reconstruction_links(descriptor: Any, rd: Any) -> Iterator[Any]:
    """Metadata maker (``#derivation``): the model's reconstruction, once a model is published."""
    from harps_service import modelapi
    try:
        model_id = modelapi.model_description().model_id
    except modelapi.ModelUnavailable:
        return
    yield descriptor.makeLink(
        f"{rd.getById('rec').getURL('dlget')}?ID={quote(descriptor.pubDID)}",
        semantics="#derivation", contentType="application/x-votable+xml",
        description=f"What the learned model {model_id} makes of this spectrum: observed "
        "flux on the model grid, reconstruction from the latent vector, residual (the "
        "anomaly score harps.latents.recon_error is its mean square)")


def separation_product(descriptor: Any, rd: Any, kind: str) -> None:
    """Data function of ``stellar`` and ``telluric`` after the gate: one separation product.

    The model server splits the archive file with the published separation
    model (:mod:`ml.separate`).  ``kind`` ``"stellar"``: the observed flux
    divided by the transmission (table ``stellar_instance``, adu, with the
    confidence, the model's stellar reconstruction and the observed flux);
    ``"transmission"``: the transmission (``transmission_instance``,
    dimensionless, with the confidence and the observatory-frame
    wavelength).  NaN where the model ignores a pixel; the model id is a
    param and in the title.

    Raises
    ------
    gavo.base.ValidationError
        The spectrum cannot be separated (the reason is given).
    """
    from harps_service import modelclient
    sep, model_id = _model_arrays(modelclient.separate, descriptor, "separated")
    wave = float(sep["grid_start"]) + float(sep["grid_step"]) * np.arange(sep["x"].shape[1])
    scale, berv = float(sep["scale"][0]), float(sep["berv"][0])
    conf = sep["confidence"][0]
    if kind == "stellar":
        table = _sdm_product(
            descriptor, rd, "build_stellar", f"Telluric-free spectrum (model {model_id})", wave,
            {"flux": sep["stellar"][0] * scale, "confidence": conf,
             "stellar_model": sep["stellar_model"][0] * scale,
             "observed": np.where(sep["mask"][0], sep["x"][0], np.nan) * scale})
    else:
        table = _sdm_product(
            descriptor, rd, "build_transmission", f"Telluric transmission (model {model_id})",
            wave, {"flux": sep["transmission"][0], "confidence": conf,
                   "wave_obs": wave / (1.0 + berv / harps.C_KMS)})
        table.setParam("berv", berv)
        # the SDM mixin copies the archive's flux unit (adu); a transmission has none
        table.tableDef.getColumnByName("flux").unit = ""
    table.setParam("model_id", model_id)


def separation_model_id() -> str | None:
    """Id of the published separation model (``models/separation/model.json``), or None."""
    import json
    try:
        with open(harps_site.separation_model_dir() / "model.json") as f:
            return json.load(f)["model_id"]
    except (OSError, ValueError, KeyError):
        return None


def separation_links(descriptor: Any, rd: Any) -> Iterator[Any]:
    """Metadata maker (``#derivation``): the telluric-free spectrum and the transmission.

    Listed once a separation model is published, and only to requests that may
    read the spectrum's data: products of proprietary spectra are not
    advertised to anonymous users and outsiders.
    """
    model_id = separation_model_id()
    if model_id is None or not access.may_read(descriptor.ssaRow):
        return
    did = quote(descriptor.pubDID)
    yield descriptor.makeLink(
        f"{rd.getById('stellar').getURL('dlget')}?ID={did}",
        semantics="#derivation", contentType="application/x-votable+xml",
        description=f"Telluric-free stellar spectrum (separation model {model_id}): observed "
        "flux divided by the telluric transmission, 0.1 A grid, with per-pixel confidence")
    yield descriptor.makeLink(
        f"{rd.getById('telluric').getURL('dlget')}?ID={did}",
        semantics="#derivation", contentType="application/x-votable+xml",
        description=f"Telluric transmission of this exposure (separation model {model_id}): "
        "observed over stellar flux, 0.1 A grid, with per-pixel confidence and the "
        "observatory-frame wavelength")
