"""Encode spectra with a trained model into a latents artefact: ``harps-encode``.

::

    harps-encode runs/full/best.ckpt $INPUTS/harps/data --out latents/ \\
        --inputs-root $INPUTS --did-prefix 'ivo://harps.example.org/~?'

(``$INPUTS``: DaCHS's inputs directory, :data:`harps_site.INPUTS_DIR`, the
default of ``--inputs-root``.)

The model and its preprocessing recipe are rebuilt from the checkpoint
alone by :class:`ml.inference.Predictor`, as in the model server.  Files
are read, preprocessed and encoded in batches by a DataLoader (``--workers``
processes), and rows are written to disk as they come, so memory does not
grow with the number of spectra.

The artefact, ``OUT/latents_<model id>.fits``, is a FITS binary table
(extension ``LATENTS``) that DaCHS imports with its ``fitsTableGrammar``;
one row per input file, none dropped, sorted by path (the order of
:func:`ml.data.collect_inputs`):

=============  ===========  ==================================================
column         format       meaning
=============  ===========  ==================================================
``pubdid``     string       identifier: ``--did-prefix`` + accref (path relative
                            to ``--inputs-root``), or from ``--id-map``
``latent``     float32[D]   latent mean vector mu (NaN for flagged spectra)
``recon_err``  float32      masked MSE of decode(mu), (normalised flux)^2: an
                            anomaly score (NaN for flagged spectra)
``flags``      int32        :mod:`ml.preprocess` ``FLAG_*`` bits, 0 = encoded
``reason``     string       why a row is flagged ('' when encoded)
``norm_scale`` float32      median flux used for normalisation, adu
=============  ===========  ==================================================

Header (extension): ``ARTVER`` (format version), ``MODELID``, ``CKPTSHA``
(SHA-256 of the checkpoint), ``PRESET``, ``LATDIM``, ``GRSTEP``, ``GRWMIN``,
``GRWMAX``, ``GRNPIX``, ``GRPAD`` (grid), ``FRAME``, ``IDKIND``, ``CODEVER``,
``GITDESC``, ``TRNSTEP`` and ``TRNSHA`` (training steps and file-list
checksum), ``DATE`` (creation, UTC), ``NROWS``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from astropy.io import fits
from torch.utils.data import DataLoader, Dataset

import harps_site
from ml import checkpoint, data
from ml.checkpoint import code_version
from ml.inference import Predictor, encode_tensors
from ml.model import SpectrumVAE
from ml.preprocess import Recipe, preprocess_file

ARTEFACT_VERSION = 1
DEFAULT_INPUTS_ROOT = harps_site.INPUTS_DIR
REASON_WIDTH = 120


class EncodeError(ValueError):
    """A bad option or input, naming it."""


# ---------------------------------------------------------------------------
# Identifiers
# ---------------------------------------------------------------------------

def read_id_map(path: str | os.PathLike) -> dict[str, str]:
    """File -> identifier from a CSV with columns ``path`` (or ``file``) and ``pubdid``.

    Keys are both the resolved path and the base name; a path match wins.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        names = reader.fieldnames or []
        fcol = next((c for c in ("path", "file") if c in names), None)
        icol = next((c for c in ("pubdid", "did", "ssa_pubdid") if c in names), None)
        if fcol is None or icol is None:
            raise EncodeError(f"--id-map {path}: needs columns path (or file) and pubdid "
                              f"(or did, ssa_pubdid); has {names}")
        out: dict[str, str] = {}
        for row in reader:
            p = Path(row[fcol].strip())
            out.setdefault(p.name, row[icol].strip())
            out[str(p.resolve())] = row[icol].strip()
    return out


def identifiers(paths: list[Path], *, inputs_root: str | os.PathLike = DEFAULT_INPUTS_ROOT,
                did_prefix: str = "", id_map: dict[str, str] | None = None) -> list[str]:
    """Identifier of every file (see the module docstring).

    Raises
    ------
    EncodeError
        A file outside ``inputs_root`` (without a map) or missing from the map.
    """
    if id_map is not None:
        out = []
        for p in paths:
            did = id_map.get(str(p.resolve()), id_map.get(p.name))
            if did is None:
                raise EncodeError(f"{p}: not in the --id-map file")
            out.append(did)
        return out
    root = Path(inputs_root).resolve()
    out = []
    for p in paths:
        try:
            accref = p.resolve().relative_to(root).as_posix()
        except ValueError:
            raise EncodeError(f"{p}: not under --inputs-root {root}; give the right root or "
                              "an --id-map") from None
        out.append(did_prefix + accref)
    return out


# ---------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------

class FileSpectra(Dataset):
    """Files preprocessed on the fly: ``{"x", "mask", "flags", "scale", "reason", "index"}``."""

    def __init__(self, paths: list[Path], recipe: Recipe) -> None:
        self.paths, self.recipe = paths, recipe

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        p = preprocess_file(self.paths[i], self.recipe)
        return {"x": torch.from_numpy(p.flux), "mask": torch.from_numpy(p.mask),
                "flags": p.flags, "scale": p.scale, "reason": p.reason, "index": i}


def encode_batch(model: SpectrumVAE, batch: dict, device: torch.device) -> dict[str, np.ndarray]:
    """Latent means and reconstruction errors of one batch; NaN rows for flagged spectra.

    The arithmetic is :func:`ml.inference.encode_tensors`, the model server's.

    Returns
    -------
    dict
        ``latent`` ``(B, D)`` float32, ``recon_err`` ``(B,)`` float32,
        ``flags`` ``(B,)`` int32, ``scale`` ``(B,)`` float32, ``reason`` list,
        ``index`` ``(B,)`` int64.
    """
    flags = batch["flags"].numpy().astype(np.int32)
    n, ok = len(flags), flags == 0
    latent = np.full((n, model.config.latent_dim), np.nan, np.float32)
    err = np.full(n, np.nan, np.float32)
    if ok.any():
        sel = torch.from_numpy(ok)
        mu, _, mse = encode_tensors(model, batch["x"][sel].to(device),
                                    batch["mask"][sel].to(device))
        latent[ok] = mu.float().cpu().numpy()
        err[ok] = mse.float().cpu().numpy()
    return {"latent": latent, "recon_err": err, "flags": flags,
            "scale": batch["scale"].numpy().astype(np.float32), "reason": list(batch["reason"]),
            "index": batch["index"].numpy()}


class LatentTableWriter:
    """Write the artefact row batch by row batch (header first, rows appended).

    The row count is fixed up front (one row per input), so the header can
    be written before any row; :meth:`close` checks it was met and renames
    the temporary file into place.
    """

    def __init__(self, path: Path, n_rows: int, id_width: int, latent_dim: int,
                 header: dict[str, tuple]) -> None:
        self.path, self.n_rows, self.written = path, n_rows, 0
        self.dtype = np.dtype([("pubdid", f"S{id_width}"), ("latent", ">f4", (latent_dim,)),
                               ("recon_err", ">f4"), ("flags", ">i4"),
                               ("reason", f"S{REASON_WIDTH}"), ("norm_scale", ">f4")])
        cols = fits.ColDefs([
            fits.Column("pubdid", f"{id_width}A"),
            fits.Column("latent", f"{latent_dim}E"),
            fits.Column("recon_err", "E", unit="(normalised flux)**2"),
            fits.Column("flags", "J"),
            fits.Column("reason", f"{REASON_WIDTH}A"),
            fits.Column("norm_scale", "E", unit="adu")])
        hdu = fits.BinTableHDU.from_columns(cols, nrows=0, name="LATENTS")
        hdu.header["NAXIS2"] = n_rows
        if hdu.header["NAXIS1"] != self.dtype.itemsize:
            raise AssertionError("FITS row layout does not match the numpy row dtype")
        for key, (value, comment) in header.items():
            hdu.header[key] = (value, comment)
        self.tmp = path.with_name(path.name + f".part{os.getpid()}")
        self.f = open(self.tmp, "wb")
        self.f.write(fits.PrimaryHDU().header.tostring().encode("ascii"))
        self.f.write(hdu.header.tostring().encode("ascii"))

    def write(self, ids: list[str], out: dict[str, np.ndarray]) -> None:
        """Append rows for one batch from :func:`encode_batch`."""
        rows = np.zeros(len(ids), self.dtype)
        rows["pubdid"] = [s.encode("ascii") for s in ids]
        rows["latent"], rows["recon_err"] = out["latent"], out["recon_err"]
        rows["flags"], rows["norm_scale"] = out["flags"], out["scale"]
        rows["reason"] = [r.encode("ascii", "replace")[:REASON_WIDTH] for r in out["reason"]]
        self.f.write(rows.tobytes())
        self.written += len(rows)

    def close(self) -> None:
        """Pad the data unit, check the row count, move the file into place."""
        nbytes = self.written * self.dtype.itemsize
        self.f.write(b"\0" * (-nbytes % 2880))
        self.f.close()
        if self.written != self.n_rows:
            self.tmp.unlink()
            raise EncodeError(f"{self.path}: wrote {self.written} rows, expected {self.n_rows}")
        os.replace(self.tmp, self.path)


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def _header(ckpt: dict, sha: str, mid: str, n: int, id_kind: str) -> dict[str, tuple]:
    g, code = ckpt["recipe"]["grid"], code_version()
    return {
        "ARTVER": (ARTEFACT_VERSION, "latents artefact format version"),
        "MODELID": (mid, "model identifier"),
        "CKPTSHA": (sha, ""),  # SHA-256 of the checkpoint file (no room for a comment)
        "PRESET": (ckpt["model_config"]["preset"], "model preset"),
        "LATDIM": (ckpt["model_config"]["latent_dim"], "latent dimension D"),
        "GRSTEP": (g["step"], "[Angstrom] model grid step"),
        "GRWMIN": (g["wave_min"], "[Angstrom] first grid wavelength"),
        "GRWMAX": (g["wave_max"], "[Angstrom] last grid wavelength"),
        "GRNPIX": (g["npix"], "grid samples"), "GRPAD": (g["padded"], "padded input length"),
        "FRAME": (ckpt["recipe"]["frame"], "wavelength frame of the model input"),
        "IDKIND": (id_kind, "how pubdid was made"),
        "CODEVER": (code["ml"], "ml package version"),
        "GITDESC": (code["git"] or "unknown", "git describe of the encoding code"),
        "TRNSTEP": (ckpt["step"], "training steps of the model"),
        "TRNSHA": (ckpt.get("data", {}).get("file_list_sha256", "unknown"), ""),
        "DATE": (dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                 "UTC creation time"),
        "NROWS": (n, "rows (one per input file)"),
    }


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory of this process and of its finished children, MiB."""
    kib = 1024.0
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib)


def encode(ckpt_path: str | os.PathLike, inputs, out_dir: str | os.PathLike, *,
           inputs_root: str | os.PathLike = DEFAULT_INPUTS_ROOT, did_prefix: str = "",
           id_map: str | None = None, batch_size: int = 16, workers: int = 0,
           device: str = "auto", progress: bool = True) -> tuple[Path, dict]:
    """Encode ``inputs`` with the checkpoint's model; return the artefact path and statistics.

    Parameters are those of the command line (``harps-encode --help``).
    Statistics: ``rows``, ``flagged``, ``seconds``, ``spectra_per_s``,
    ``peak_rss_mib``, ``peak_rss_children_mib``.
    """
    from tqdm import tqdm
    t0 = time.perf_counter()
    if batch_size < 1 or workers < 0:
        raise EncodeError("--batch-size must be >= 1 and --workers >= 0")
    if device == "cuda" and not torch.cuda.is_available():
        raise EncodeError("--device cuda: no CUDA device is available (use --device cpu)")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                       else "cpu" if device == "auto" else device)
    predictor = Predictor.load(ckpt_path, dev)
    ckpt, sha, model, recipe = (predictor.ckpt, predictor.sha256, predictor.model,
                                predictor.recipe)
    paths = data.collect_inputs(inputs)
    ids = identifiers(paths, inputs_root=inputs_root, did_prefix=did_prefix,
                      id_map=read_id_map(id_map) if id_map else None)
    bad = [i for i in ids if not i.isascii()]
    if bad:
        raise EncodeError(f"identifier {bad[0]!r} is not ASCII")
    mid = predictor.model_id
    out_path = Path(out_dir) / f"latents_{mid}.fits"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    id_kind = "id-map" if id_map else ("did-prefix+accref" if did_prefix else "accref")
    header = _header(ckpt, sha, mid, len(paths), id_kind)
    writer = LatentTableWriter(out_path, len(paths), max(map(len, ids)),
                               model.config.latent_dim, header)
    loader = DataLoader(FileSpectra(paths, recipe), batch_size=batch_size, num_workers=workers)
    flagged = []
    for batch in tqdm(loader, desc="encode", unit="batch", disable=not progress):
        res = encode_batch(model, batch, dev)
        writer.write([ids[i] for i in res["index"]], res)
        flagged += [(ids[i], r) for i, r, f in
                    zip(res["index"], res["reason"], res["flags"], strict=True) if f]
    writer.close()
    seconds = time.perf_counter() - t0
    rss, rss_children = peak_rss_mib()
    return out_path, {"rows": len(paths), "flagged": flagged, "seconds": seconds,
                      "spectra_per_s": len(paths) / seconds, "peak_rss_mib": rss,
                      "peak_rss_children_mib": rss_children, "model_id": mid}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harps-encode",
                                description="Encode spectra with a trained model into a "
                                "latents artefact.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint written by harps-train")
    p.add_argument("inputs", nargs="+", help="FITS files, directories or @list files")
    p.add_argument("--out", required=True, help="output directory for latents_<model id>.fits")
    p.add_argument("--inputs-root", default=DEFAULT_INPUTS_ROOT,
                   help=f"accref = path relative to this (default {DEFAULT_INPUTS_ROOT})")
    p.add_argument("--did-prefix", default="",
                   help="prefix of the accref in pubdid, e.g. 'ivo://harps.example.org/~?'")
    p.add_argument("--id-map", help="CSV with columns path,pubdid (overrides the accref rule)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="DataLoader processes reading and preprocessing files")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``harps-encode``; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        path, st = encode(args.checkpoint, args.inputs, args.out, inputs_root=args.inputs_root,
                          did_prefix=args.did_prefix, id_map=args.id_map,
                          batch_size=args.batch_size, workers=args.workers, device=args.device,
                          progress=not args.quiet)
    except (EncodeError, data.DataError, checkpoint.CheckpointError, OSError) as ex:
        print(f"harps-encode: error: {ex}", file=sys.stderr)
        return 2
    for did, reason in st["flagged"]:
        print(f"flagged: {did}: {reason}", file=sys.stderr)
    print(f"{path}: {st['rows']} rows ({len(st['flagged'])} flagged) in {st['seconds']:.1f} s, "
          f"{st['spectra_per_s']:.2f} spectra/s; peak RSS {st['peak_rss_mib']:.0f} MiB "
          f"(+ workers {st['peak_rss_children_mib']:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
