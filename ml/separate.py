"""Stellar / telluric separation products: ``harps-separate``.

A separation model (a checkpoint with a telluric component, :mod:`ml.telluric`;
``harps-train --preset telluric``) splits each spectrum on its grid into

``transmission``
    ``T``: the telluric transmission at the spectrum's BERV, barycentric
    wavelengths ("observed / stellar"; its lines sit at fixed observatory-frame
    wavelengths).
``stellar``
    ``x / T``: the observed flux with the telluric absorption divided out.
    It keeps every stellar detail and the noise of the data; only ``T``
    comes from the model.
``stellar_model``
    ``S``: the autoencoder's decoded star, the model's own telluric-free
    reconstruction (smooth, limited by the model's fidelity).
``confidence``
    0..1 per pixel, the product of three factors, 0 where the pixel is
    masked (CCD gap, bad pixels, outside the spectrum):

    * transmission: ``clip((T - 0.2) / 0.5, 0, 1)``: below 20 % the division
      amplifies the noise more than 5 times, and saturated band cores
      (the O2 B band) cannot be recovered;
    * signal: ``clip(sqrt(flux in adu) / 20, 0, 1)``, a photon S/N below 20;
    * fit: where ``T < 0.99``, ``clip(2 - r / (3 s), 0, 1)`` with ``r`` the
      relative misfit ``|x - S T| / (S T)`` and ``s`` its robust scale
      (1.4826 MAD) over the spectrum: telluric pixels the model does not
      explain lose confidence.

Per spectrum (:data:`QUALITY_COLUMNS`, published in ``harps.separation``):
``tell_ew`` (equivalent width of the telluric absorption, A),
``tell_max_depth`` (largest ``1 - T``), ``sep_excess`` (rms misfit in
telluric pixels, ``T < 0.95``, over the rms misfit in telluric-free pixels
redder than ``harps.TELLURIC_WAVE_MIN``: about 1 when the tellurics are
explained as well as the star) and ``sep_confident`` (fraction of the valid
pixels in ``harps.TELLURIC_BANDS`` with confidence >= 0.5).

::

    harps-separate model.ckpt DATA --out sep/ [--did-prefix ivo://...?] [--inputs-root DIR]

writes ``sep/separation_<model id>.csv`` (one row per separated file) and
``sep/separation_<model id>.json`` (the checkpoint's description).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harps_data import harps
from ml import checkpoint, data
from ml.inference import Predictor
from ml.preprocess import FLAG_NO_BERV, Preprocessed, preprocess_file

#: Transmission below which the confidence is 0, and the span over which it reaches 1.
T_FLOOR, T_SPAN = 0.2, 0.5
#: Photon S/N (sqrt of the flux in adu) at which the signal factor reaches 1.
SNR_FULL = 20.0
#: Per-spectrum figures, in the order of the CSV and the table.
QUALITY_COLUMNS = ("tell_ew", "tell_max_depth", "sep_excess", "sep_confident")


@dataclass
class Separated:
    """Spectra split into star and atmosphere, on the model grid (``B`` spectra, ``N`` pixels).

    Attributes
    ----------
    x, mask : numpy.ndarray
        ``(B, N)`` normalised observed flux (0 where masked) and valid pixels.
    stellar, stellar_model, transmission, confidence : numpy.ndarray
        ``(B, N)`` float32 (see the module docstring); ``stellar`` and
        ``stellar_model`` normalised like ``x``; NaN where masked or flagged.
    scale : numpy.ndarray
        ``(B,)`` median flux, adu (multiply normalised values by it).
    berv : numpy.ndarray
        ``(B,)`` km/s.
    amplitudes : numpy.ndarray
        ``(B, K)`` telluric template amplitudes.
    quality : numpy.ndarray
        ``(B, 4)`` :data:`QUALITY_COLUMNS` (NaN for flagged spectra).
    flags : numpy.ndarray
        ``(B,)`` preprocessing flags (0: separated).
    reason : list of str
    """

    x: np.ndarray
    mask: np.ndarray
    stellar: np.ndarray
    stellar_model: np.ndarray
    transmission: np.ndarray
    confidence: np.ndarray
    scale: np.ndarray
    berv: np.ndarray
    amplitudes: np.ndarray
    quality: np.ndarray
    flags: np.ndarray
    reason: list[str]

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything as numpy arrays, for ``np.savez``."""
        out = {k: getattr(self, k) for k in (
            "x", "mask", "stellar", "stellar_model", "transmission", "confidence", "scale",
            "berv", "amplitudes", "quality", "flags")}
        out["reason"] = np.array(self.reason, dtype="U200")
        return out


def confidence(x: np.ndarray, mask: np.ndarray, model: np.ndarray, trans: np.ndarray,
               scale: float) -> np.ndarray:
    """Per-pixel confidence of one spectrum's separation (module docstring).

    Parameters
    ----------
    x, model, trans : numpy.ndarray
        ``(N,)`` normalised observed flux, ``S * T`` and ``T``.
    mask : numpy.ndarray
        ``(N,)`` bool.
    scale : float
        Median flux, adu.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float32 in [0, 1].
    """
    c_t = np.clip((trans - T_FLOOR) / T_SPAN, 0.0, 1.0)
    c_snr = np.clip(np.sqrt(np.maximum(x * scale, 0.0)) / SNR_FULL, 0.0, 1.0)
    rel = np.abs(x - model) / np.maximum(model, 0.05)
    s = 1.4826 * np.median(np.abs(rel[mask])) if mask.any() else 1.0
    c_fit = np.where(trans < 0.99, np.clip(2.0 - rel / (3.0 * max(s, 1e-4)), 0.0, 1.0), 1.0)
    return np.where(mask, c_t * c_snr * c_fit, 0.0).astype(np.float32)


def quality(wave: np.ndarray, x: np.ndarray, mask: np.ndarray, model: np.ndarray,
            trans: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """:data:`QUALITY_COLUMNS` of one spectrum, ``(4,)`` float64 (see the module docstring).

    Parameters
    ----------
    wave : numpy.ndarray
        ``(N,)`` grid wavelengths, Angstrom.
    x, model, trans, conf : numpy.ndarray
        ``(N,)`` observed, ``S * T``, ``T``, confidence.
    mask : numpy.ndarray
        ``(N,)`` bool.
    """
    step = float(wave[1] - wave[0])
    depth = np.where(mask, 1.0 - trans, 0.0)
    rel = (x - model) / np.maximum(model, 0.05)
    tell = mask & (trans < 0.95)
    clean = mask & (trans > 0.995) & (wave >= harps.TELLURIC_WAVE_MIN)
    excess = (np.sqrt(np.mean(rel[tell] ** 2) / np.mean(rel[clean] ** 2))
              if tell.sum() >= 10 and clean.sum() >= 10 else np.nan)
    bands = harps.in_telluric_bands(wave) & mask
    conf_frac = float(np.mean(conf[bands] >= 0.5)) if bands.any() else np.nan
    return np.array([depth.sum() * step, depth.max(initial=0.0), excess, conf_frac])


@torch.inference_mode()
def separate_preprocessed(predictor: Predictor, items: list[Preprocessed]) -> Separated:
    """Separate spectra already on the model grid (flagged ones come back NaN).

    Raises
    ------
    ValueError
        The predictor's model has no telluric component.
    """
    model = predictor.model
    if model.telluric is None:
        raise ValueError(f"model {predictor.model_id} has no telluric component "
                         "(train one with harps-train --preset telluric)")
    n, npix, k = len(items), predictor.npix, model.config.telluric
    nan = np.full((n, npix), np.nan, np.float32)
    out = Separated(
        np.zeros((n, npix), np.float32), np.zeros((n, npix), bool), nan.copy(), nan.copy(),
        nan.copy(), np.zeros((n, npix), np.float32),
        np.array([p.scale for p in items], np.float32),
        np.array([p.berv for p in items], np.float32), np.full((n, k), np.nan, np.float32),
        np.full((n, len(QUALITY_COLUMNS)), np.nan), np.array([p.flags for p in items], np.int32),
        [p.reason for p in items])
    for i, p in enumerate(items):
        if not p.flags and not np.isfinite(p.berv):
            out.flags[i] = FLAG_NO_BERV
            out.reason[i] = "no BERV in the header: the telluric lines cannot be placed"
    ok = np.flatnonzero(out.flags == 0)
    if len(ok) == 0:
        return out
    x = torch.from_numpy(np.stack([items[i].flux for i in ok])).to(predictor.device)
    berv = torch.from_numpy(out.berv[ok]).to(predictor.device)
    mu, _, amp, trans = model.separate(x, berv)
    star = model.decode(mu)
    wave = predictor.wave()
    for j, i in enumerate(ok):
        xi, mi = items[i].flux[:npix], items[i].mask[:npix]
        ti = trans[j, :npix].float().cpu().numpy()
        si = star[j, :npix].float().cpu().numpy()
        conf = confidence(xi, mi, si * ti, ti, float(out.scale[i]))
        out.x[i], out.mask[i] = xi, mi
        out.transmission[i] = ti
        out.stellar_model[i] = np.where(mi, si, np.nan)
        out.stellar[i] = np.where(mi, xi / np.maximum(ti, 1e-3), np.nan)
        out.confidence[i] = conf
        out.amplitudes[i] = amp[j].float().cpu().numpy()
        out.quality[i] = quality(wave, xi, mi, si * ti, ti, conf)
    return out


def separate_files(predictor: Predictor, paths: list[str | os.PathLike]) -> Separated:
    """Read, preprocess and separate files (unreadable ones come back flagged)."""
    return separate_preprocessed(predictor, [preprocess_file(p, predictor.recipe)
                                             for p in paths])


def write_quality(path: Path, ids: list[str], quality: np.ndarray, flags: np.ndarray,
                  model_id: str) -> None:
    """The figures of the separated spectra as CSV (``ssa_pubdid, model_id, <QUALITY_COLUMNS>``).

    Parameters
    ----------
    path : pathlib.Path
    ids : list of str
        Row id of each spectrum.
    quality : numpy.ndarray
        ``(B, 4)`` :attr:`Separated.quality`.
    flags : numpy.ndarray
        ``(B,)``; flagged spectra get no row.
    model_id : str
    """
    tmp = path.with_suffix(".part")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("ssa_pubdid", "model_id") + QUALITY_COLUMNS)
        for did, q, flag in zip(ids, quality, flags, strict=True):
            if flag == 0:
                w.writerow([did, model_id] + [f"{v:.6g}" for v in q])
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``harps-separate``; returns the exit status."""
    ap = argparse.ArgumentParser(prog="harps-separate", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="separation checkpoint (harps-train --preset telluric)")
    ap.add_argument("inputs", nargs="+", help="FITS files, directories or @list files")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--did-prefix", default="", help="row id = prefix + path below "
                    "--inputs-root (the service's publisher DIDs)")
    ap.add_argument("--inputs-root", default="", help="strip this from paths for the ids")
    ap.add_argument("--batch", type=int, default=16, help="spectra per batch (16)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        predictor = Predictor.load(args.checkpoint)
        paths = data.collect_inputs(args.inputs)
        if predictor.model.telluric is None:
            raise ValueError(f"{args.checkpoint}: not a separation model (no telluric "
                             "component; train with --preset telluric)")
    except (ValueError, checkpoint.CheckpointError, OSError) as ex:
        print(f"harps-separate: error: {ex}", file=sys.stderr)
        return 2
    from tqdm import tqdm
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ids = [args.did_prefix + (os.path.relpath(p, args.inputs_root) if args.inputs_root
                              else str(p)) for p in paths]
    parts = []
    for s in tqdm(range(0, len(paths), args.batch), desc="separate", unit="batch",
                  disable=args.quiet):
        parts.append(separate_files(predictor, paths[s:s + args.batch]))
    flags = np.concatenate([p.flags for p in parts]) if parts else np.zeros(0, np.int32)
    quality_rows = (np.concatenate([p.quality for p in parts]) if parts
                    else np.zeros((0, len(QUALITY_COLUMNS))))
    dest = out / f"separation_{predictor.model_id}.csv"
    write_quality(dest, ids, quality_rows, flags, predictor.model_id)
    info = checkpoint.describe(predictor.ckpt).to_dict()
    info.update(model_id=predictor.model_id, sha256=predictor.sha256,
                telluric_templates=predictor.model.config.telluric,
                slimmed_from=predictor.ckpt.get("slimmed_from"))
    (out / f"separation_{predictor.model_id}.json").write_text(
        json.dumps(info, indent=1, default=str))
    print(f"separated {int((flags == 0).sum())} of {len(paths)} spectra ({predictor.model_id}):"
          f" {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
