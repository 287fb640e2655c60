"""The model as a service: decoding latent vectors and retrieval by example.

The ``decode`` and ``retrieve`` services of ``q.rd`` (DaCHS ``api``
renderer, DALI-style parameters) call :func:`decode` and :func:`retrieve`;
the model itself runs in the model server (:mod:`harps_service.modelclient`).
The latent vectors of archived spectra come from ``harps.latents`` (what
``harps-encode`` computed); an upload is encoded by the model server with
the same code.  Neighbours are found with the indexed distance of
``gavo_latentdist`` (:func:`harps_service.latent_udf.distance_sql`) and
only among spectra the request may read (:func:`access.visible_sql`).

Answers are VOTables made by DaCHS from the output table, or, with
``RESPONSEFORMAT=json``, DaCHS's JSON table layout (``contains``,
``params``, ``columns``, ``data``) written directly from the arrays: a
slider move must not pay for DaCHS's row-by-row serialisation of a
312,501-sample spectrum.  In JSON, fluxes are rounded to 1e-5 (normalised)
and missing values are ``null``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import harps_site
from harps_data.records import ModelDescription
from harps_service import access, latent_udf, modelclient
from harps_service.latentrows import load_model_description
from harps_service.modelclient import ModelUnavailable

LATENTS = "harps.latents"
DATA = "harps.data"
#: Most neighbours one retrieval returns.
MAX_K = 100
#: Largest upload accepted by the retrieval service, bytes (the model
#: server's own limit, ml.serve.MAX_UPLOAD_BYTES, is the same).
MAX_UPLOAD_BYTES = 16 * 2**20
JSON_FORMATS = ("json", "application/json")


def _validation(message: str, field: str) -> Exception:
    from gavo import base
    return base.ValidationError(message, field)


# ---------------------------------------------------------------------------
# The published model and the archive's latent vectors
# ---------------------------------------------------------------------------

_DESCRIPTION: dict[str, Any] = {}


def model_description() -> ModelDescription:
    """``models/current/model.json`` (re-read when it changes).

    Raises
    ------
    ModelUnavailable
        No model is published.
    """
    path = harps_site.current_model_dir() / "model.json"
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise ModelUnavailable("no model is published yet (run harps-latents build, or "
                               "make demo)") from None
    if _DESCRIPTION.get("stamp") != stamp:
        _DESCRIPTION.update(stamp=stamp, value=load_model_description(str(path.parent)),
                            median=None)
    return _DESCRIPTION["value"]


def _check_model(served: str) -> ModelDescription:
    desc = model_description()
    if served != desc.model_id:
        raise ModelUnavailable(f"the model server runs {served} but the archive's latents are "
                               f"from {desc.model_id}: a new model is being published; try "
                               "again in a moment")
    return desc


_GRIDS: dict[str, dict[str, Any]] = {}


def grid(model_id: str) -> dict[str, Any]:
    """The model server's grid and frame for ``model_id`` (asked once per model)."""
    if model_id not in _GRIDS:
        info = modelclient.info()
        _GRIDS[info["model_id"]] = {k: info[k] for k in
                                    ("grid_start", "grid_step", "grid_npix", "frame")}
        if model_id not in _GRIDS:
            raise ModelUnavailable("the model server has just changed its model; try again")
    return _GRIDS[model_id]


def _query(sql: str, params: Mapping[str, Any]) -> list[tuple]:
    from gavo import base
    with base.getTableConn() as conn:
        return list(conn.query(sql, dict(params)))


def archive_median(desc: ModelDescription) -> np.ndarray:
    """Median latent vector of the encoded archive, ``(D,)`` float32 (cached per model)."""
    if _DESCRIPTION.get("median") is None:
        rows = _query(f"SELECT latent FROM {LATENTS} WHERE latent IS NOT NULL "
                      "AND model_id = %(m)s", {"m": desc.model_id})
        if not rows:
            raise ModelUnavailable(f"{LATENTS} holds no encoded spectra yet")
        _DESCRIPTION["median"] = np.median(np.array([r[0] for r in rows], np.float64),
                                           axis=0).astype(np.float32)
    return _DESCRIPTION["median"]


@dataclass(frozen=True)
class Archived:
    """An encoded archive spectrum: identifiers, latent vector and file."""

    pubdid: str
    latent: np.ndarray  # (D,) float32
    path: str
    targname: str
    dateobs: float | None
    snr: float | None
    recon_error: float | None


def archived(pubdid: str, field: str = "ID") -> Archived:
    """The encoded spectrum ``pubdid``, after the embargo check.

    Raises
    ------
    gavo.base.ValidationError
        Unknown DID, or a spectrum that could not be encoded.
    gavo.svcs.Authenticate, gavo.svcs.ForbiddenURI
        An embargoed spectrum and a request without the right credentials.
    """
    from harps_service.params import printable_id
    rows = _query(
        f"SELECT l.latent, l.encode_reason, d.accref, d.embargo, d.owner, d.ssa_targname,"
        f" d.ssa_dateobs, d.ssa_snr, l.recon_error FROM {LATENTS} AS l JOIN {DATA} AS d"
        " ON d.ssa_pubdid = l.ssa_pubdid WHERE l.ssa_pubdid = %(did)s", {"did": pubdid})
    if not rows:
        raise _validation(f"no encoded spectrum has the publisher DID {printable_id(pubdid)}"
                          " (only public spectra are encoded; see harps.latents)", field)
    latent, reason, accref, embargo, owner, targ, dateobs, snr, err = rows[0]
    access.require_access({"embargo": embargo, "owner": owner, "ssa_pubDID": pubdid})
    if latent is None:
        raise _validation(f"{pubdid} could not be encoded: {reason}", field)
    return Archived(pubdid, np.array(latent, np.float32),
                    os.path.join(harps_site.INPUTS_DIR, accref), targ, dateobs, snr, err)


def parse_floats(value: Any, field: str, count: int) -> np.ndarray:
    """``count`` numbers from a parameter string (commas or blanks between them)."""
    try:
        values = latent_udf.parse_numbers(str(value), field)
    except latent_udf.LatentArgumentError as ex:
        raise _validation(str(ex).split(": ", 1)[-1], field) from None
    if len(values) != count:
        raise _validation(f"needs {count} numbers, got {len(values)}", field)
    return np.array(values, np.float64)


def knn_text(knn: Sequence[float]) -> str:
    """The informative coordinates as a ``gavo_latentdist`` vector string (exact floats)."""
    return " ".join(repr(float(np.float32(v))) for v in knn)


def adql_nearest(knn: Sequence[float], k: int = 10) -> str:
    """ADQL that finds the archived spectra nearest to informative coordinates ``knn``."""
    return (f"SELECT TOP {k} l.ssa_pubdid, d.ssa_targname, d.ssa_snr, "
            f"gavo_latentdist(l.knn, '{knn_text(knn)}') AS dist "
            f"FROM {LATENTS} AS l JOIN {DATA} AS d ON d.ssa_pubdid = l.ssa_pubdid "
            "ORDER BY dist")


# ---------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """An output column (as in the RD's output table) and its JSON rounding."""

    name: str
    unit: str
    ucd: str
    description: str
    datatype: str = "double"
    decimals: int | None = None
    arraysize: str | None = None


def _clean(value: Any, decimals: int | None) -> Any:
    if isinstance(value, np.ndarray):
        v = value.astype(np.float64)
        if decimals is not None:
            v = np.round(v, decimals)
        out = v.tolist()
        if not np.all(np.isfinite(v)):
            out = [x if math.isfinite(x) else None for x in out]
        return out
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return None
        return round(v, decimals) if decimals is not None else v
    if isinstance(value, np.integer):
        return int(value)
    return value


def json_table(columns: Sequence[Column], params: Mapping[str, Any],
               data: Mapping[str, Sequence[Any]], param_meta: Mapping[str, Column]
               ) -> tuple[str, bytes]:
    """DaCHS's JSON table layout, written from columns of values.

    Parameters
    ----------
    columns : sequence of Column
    params : mapping
        Name -> value (None values are left out, as DaCHS does).
    data : mapping
        Column name -> sequence of values (numpy arrays for array cells).
    param_meta : mapping
        Name -> Column giving unit, UCD and description of each param.
    """
    cols = [{"name": c.name, "unit": c.unit, "ucd": c.ucd, "description": c.description,
             "datatype": c.datatype, **({"arraysize": c.arraysize} if c.arraysize else {})}
            for c in columns]
    n = len(next(iter(data.values()))) if data else 0
    per_col = []
    for c in columns:
        values = data[c.name]
        if isinstance(values, np.ndarray) and values.ndim == 1 and c.arraysize is None:
            per_col.append(_clean(values, c.decimals))
        else:
            per_col.append([_clean(v, c.decimals) for v in values])
    rows = [list(r) for r in zip(*per_col, strict=True)] if per_col else [[]] * n
    ps = {"contains": "params"}
    for name, value in params.items():
        if value is not None:
            m = param_meta[name]
            ps[name] = {"value": _clean(value, None), "unit": m.unit, "ucd": m.ucd,
                        "description": m.description}
    doc = {"contains": "table", "params": ps, "columns": cols, "data": rows}
    return "application/json", json.dumps(doc, allow_nan=False).encode()


def dachs_table(core: Any, params: Mapping[str, Any], data: Mapping[str, Sequence[Any]]) -> Any:
    """The core's output table (VOTable by DaCHS) from columns of values."""
    from gavo import rsc
    names = list(data)
    n = len(data[names[0]]) if names else 0
    rows = []
    for i in range(n):
        row = {}
        for name in names:
            v = data[name][i]
            if isinstance(v, np.ndarray):
                v = [float(x) for x in v]
            elif isinstance(v, (np.floating, float)):
                v = float(v) if math.isfinite(v) else None
            row[name] = v
        rows.append(row)
    table = rsc.TableForDef(core.outputTable, rows=rows)
    # DaCHS's api renderer writes QUERY_STATUS from this meta (empty otherwise,
    # which DALI clients such as pyvo refuse)
    table.setMeta("_queryStatus", "OK")
    for name, value in params.items():
        if value is not None:
            table.setParam(name, value)
    return table


def _columns_of(core: Any) -> tuple[list[Column], dict[str, Column]]:
    """Column metadata of the core's output table (for the JSON writer)."""
    def as_col(c: Any) -> Column:
        t = str(c.type)
        return Column(c.name, c.unit or "", c.ucd or "", c.description or "",
                      "char" if t.startswith(("text", "char")) else
                      "int" if "int" in t else "double",
                      arraysize="*" if t.endswith("[]") else None)
    cols = [as_col(c) for c in core.outputTable.columns]
    params = {p.name: as_col(p) for p in core.outputTable.params}
    return cols, params


def response_format(query_meta: Any) -> str:
    """RESPONSEFORMAT of the request (DaCHS's DALI parameters keep it in ``ctxArgs``)."""
    value = query_meta.ctxArgs.get("responseformat") or query_meta.ctxArgs.get(
        "RESPONSEFORMAT") or ""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return str(value).strip().lower()


def respond(core: Any, query_meta: Any, params: Mapping[str, Any],
            data: Mapping[str, Sequence[Any]], decimals: Mapping[str, int]) -> Any:
    """JSON (fast path) or the DaCHS table, as RESPONSEFORMAT asks."""
    fmt = response_format(query_meta)
    if fmt in JSON_FORMATS:
        cols, pmeta = _columns_of(core)
        cols = [Column(**{**c.__dict__, "decimals": decimals.get(c.name)}) for c in cols]
        return json_table(cols, params, data, pmeta)
    return dachs_table(core, params, data)


# ---------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------

def _start_vector(args: Mapping[str, Any], desc: ModelDescription
                  ) -> tuple[np.ndarray, Archived | None]:
    """The latent vector a decode request asks for, and the spectrum it starts from."""
    dims = [d.dim for d in desc.informative]
    given = [k for k in ("ID", "OFFSET", "Z", "LATENT") if args.get(k) not in (None, "")]
    if "LATENT" in given:
        if len(given) > 1:
            raise _validation("give LATENT alone (or ID with OFFSET or Z)", "LATENT")
        return parse_floats(args["LATENT"], "LATENT", desc.latent_dim), None
    if "OFFSET" in given and "Z" in given:
        raise _validation("give OFFSET (added to the spectrum's z) or Z (replacing it), "
                          "not both", "OFFSET")
    if "OFFSET" in given and "ID" not in given:
        raise _validation("OFFSET moves a spectrum's coordinates: give ID too", "OFFSET")
    spec = archived(str(args["ID"])) if "ID" in given else None
    z = (spec.latent if spec else archive_median(desc)).astype(np.float64).copy()
    if "Z" in given:
        z[dims] = parse_floats(args["Z"], "Z", len(dims))
    if "OFFSET" in given:
        z[dims] += parse_floats(args["OFFSET"], "OFFSET", len(dims))
    return z, spec


def decode(core: Any, args: Mapping[str, Any], query_meta: Any) -> Any:
    """The ``decode`` service: a latent vector (or a spectrum moved in z) decoded.

    See the service's documentation in ``q.rd`` for the parameters.
    """
    desc = model_description()
    z, spec = _start_vector(args, desc)
    try:
        flux, served = modelclient.decode(z[None, :])
    except modelclient.ModelRefused as ex:
        raise _validation(str(ex), "LATENT" if args.get("LATENT") else "Z") from None
    _check_model(served)
    info = grid(served)
    wave = info["grid_start"] + info["grid_step"] * np.arange(info["grid_npix"])
    flux = flux[0]
    observed = np.full_like(flux, np.nan)
    flux_adu = np.full_like(flux, np.nan)
    scale = None
    if spec is not None:
        enc, _ = modelclient.reconstruct([spec.path])
        scale = float(enc["scale"][0])
        observed = np.where(enc["mask"][0], enc["x"][0], np.nan)
        flux_adu = flux * scale
    knn = z[[d.dim for d in desc.informative]]
    params = {"model_id": served, "pubdid": spec.pubdid if spec else None,
              "latent": knn_text(z), "knn": knn_text(knn), "norm_scale": scale,
              "adql": adql_nearest(knn), "frame": info["frame"]}
    data = {"wavelength": wave, "flux": flux, "flux_adu": flux_adu, "observed": observed}
    return respond(core, query_meta, params, data,
                   {"wavelength": 4, "flux": 5, "observed": 5, "flux_adu": 3})


# ---------------------------------------------------------------------------
# retrieve
# ---------------------------------------------------------------------------

def _read_upload(upload: Any) -> tuple[str, bytes]:
    """(name for messages, bytes) of the SPECTRUM parameter.

    A plain multipart field arrives as DaCHS's ``BinaryItem`` (or as text
    when it happens to be UTF-8), a DALI upload (``UPLOAD=x,param:SPECTRUM``)
    as (file name, file).
    """
    name = "the uploaded file"
    if isinstance(upload, tuple) and len(upload) == 2:
        name = os.path.basename(str(upload[0] or "")) or name
        data = upload[1].read(MAX_UPLOAD_BYTES + 1)
    elif hasattr(upload, "original"):
        data = upload.original
    elif isinstance(upload, str):
        data = upload.encode("utf-8", "surrogateescape")
    elif isinstance(upload, bytes):
        data = upload
    else:
        raise _validation("must be a file sent by HTTP POST (multipart/form-data)", "SPECTRUM")
    if len(data) > MAX_UPLOAD_BYTES:
        raise _validation(f"the file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB, the "
                          "most this service accepts", "SPECTRUM")
    if not data:
        raise _validation("the uploaded file is empty", "SPECTRUM")
    return name, bytes(data)


def _neighbours(knn: np.ndarray, k: int, exclude: str | None) -> list[tuple]:
    from harps_service.latent_udf import distance_sql
    dist = distance_sql("l.knn", [float(v) for v in knn])
    sql = (f"SELECT l.ssa_pubdid, {dist} AS distance, d.ssa_targname, d.ssa_dateobs,"
           f" d.ssa_snr, l.recon_error, d.accref FROM {LATENTS} AS l JOIN {DATA} AS d"
           f" ON d.ssa_pubdid = l.ssa_pubdid WHERE l.knn IS NOT NULL"
           f" AND {access.visible_sql('d')}"
           + (" AND l.ssa_pubdid <> %(exclude)s" if exclude else "")
           + f" ORDER BY {dist} LIMIT %(k)s")
    return _query(sql, {"groups": access.member_groups(), "exclude": exclude, "k": k})


def retrieve(core: Any, args: Mapping[str, Any], query_meta: Any, service: Any) -> Any:
    """The ``retrieve`` service: the archived spectra most like a given one or an upload.

    Row 0 is the query itself; rows 1..K the neighbours by increasing
    distance in the informative latent subspace (``gavo_latentdist``'s).

    Long because the two kinds of query (archived, uploaded) differ in where
    vector, label and overlay flux come from, and the answer has eleven
    columns; each piece is a line or two.
    """
    desc = model_description()
    dims = [d.dim for d in desc.informative]
    k = 10 if args.get("K") is None else int(args["K"])
    if not 1 <= k <= MAX_K:
        raise _validation(f"must be between 1 and {MAX_K}", "K")
    has_id, upload = args.get("ID") not in (None, ""), args.get("SPECTRUM")
    if has_id == (upload is not None):
        raise _validation("give either ID (a publisher DID) or SPECTRUM (a FITS file to "
                          "upload)", "ID" if has_id else "SPECTRUM")
    with_spectra = bool(args.get("SPECTRA"))
    query_flux = None
    if has_id:
        spec = archived(str(args["ID"]))
        latent, label, exclude = spec.latent, spec.targname, spec.pubdid
        query_row = (spec.pubdid, 0.0, spec.targname, spec.dateobs, spec.snr,
                     spec.recon_error, spec.path)
        served = desc.model_id
    else:
        name, data = _read_upload(upload)
        try:
            enc, served = modelclient.encode_upload(data, name)
        except modelclient.ModelRefused as ex:
            raise _validation(str(ex), "SPECTRUM") from None
        _check_model(served)
        latent, exclude = enc["latent"][0], None
        label = str(enc["object"]) or name
        query_flux = np.where(enc["mask"][0], enc["x"][0], np.nan)
        query_row = (None, 0.0, label, None, None, float(enc["recon_err"][0]), None)
    knn = np.asarray(latent, np.float64)[dims]
    rows = [query_row] + _neighbours(knn, k, exclude)
    fluxes: list[Any] = [None] * len(rows)
    if with_spectra:
        paths = [r[6] if r[6].startswith("/") else os.path.join(harps_site.INPUTS_DIR, r[6])
                 for r in rows if r[6]]
        enc, served_now = modelclient.reconstruct(paths)
        _check_model(served_now)
        got = iter(np.where(enc["mask"], enc["x"], np.nan))
        fluxes = [next(got) if r[6] else query_flux for r in rows]
    sdl, pv = (service.rd.getById(s) for s in ("sdl", "pv"))
    from urllib.parse import quote
    data = {
        "rank": list(range(len(rows))),
        "ssa_pubdid": [r[0] for r in rows],
        "latent_distance": [float(r[1]) for r in rows],
        "ssa_targname": [r[2] for r in rows],
        "ssa_dateobs": [r[3] for r in rows],
        "ssa_snr": [r[4] for r in rows],
        "recon_error": [r[5] for r in rows],
        "datalink": [f"{sdl.getURL('dlmeta')}?ID={quote(r[0])}" if r[0] else None
                     for r in rows],
        "preview": [f"{pv.getURL('dlget')}?ID={quote(r[0])}" if r[0] else None for r in rows],
        "flux": fluxes,
    }
    info = grid(served)
    params = {"model_id": served, "query": label, "latent": knn_text(latent),
              "knn": knn_text(knn),
              "adql": adql_nearest(knn, k), "grid_start": info["grid_start"],
              "grid_step": info["grid_step"], "grid_npix": info["grid_npix"]}
    return respond(core, query_meta, params, data, {"flux": 5, "latent_distance": 7})
