"""What the latent dimensions mean: informativeness and mutual information with labels.

``harps-analyse`` reads a latents artefact (:mod:`ml.encode`) and the ground
truth of a labelled (synthetic) archive and writes

``dims.csv``
    one row per latent dimension: median absolute deviation of mu over the
    archive (the criterion of Sedaghat et al. 2021), the decoder response
    (a second, independent criterion: how much the decoded spectrum changes
    when that coordinate moves by one prior sigma), and the verdict;
``mi.csv``
    one row per (basis, dimension, label): mutual information in nats from
    the Kraskov-Stoegbauer-Grassberger k-nearest-neighbour estimator
    (scikit-learn's ``mutual_info_regression``) and from the plug-in
    histogram estimator the paper used, for the model's latents and for a
    PCA baseline with as many components;
``mi_heatmap.png``
    MI (KSG) of every informative dimension with every label;
``summary.json``
    informative dimensions with one-line descriptions (these become column
    descriptions in the service), counts against the number of generative
    parameters that vary in the synthetic archive, and the 10-nearest-
    neighbour label errors of latent and PCA spaces.

Labels are the synthetic archive's columns in :data:`LABELS` (Teff, logg,
[M/H], vsini, RV, airmass, water vapour, S/N, BERV).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harps_data import records
from harps_data.records import AnalysisSummary, Criteria, InformativeDim

#: label column in the synthetic labels CSV -> (short name, unit)
LABELS: dict[str, tuple[str, str]] = {
    "teff_k": ("Teff", "K"),
    "logg_cgs": ("logg", "dex(cm/s2)"),
    "mh_dex": ("[M/H]", "dex"),
    "vsini_kms": ("vsini", "km/s"),
    "rv_kms": ("RV", "km/s"),
    "airmass": ("airmass", ""),
    "pwv_mm": ("water vapour", "mm"),
    "snr": ("S/N", ""),
    "berv_kms": ("BERV", "km/s"),
}
#: Informative if the MAD of mu exceeds this fraction of the largest MAD
#: (the scale of mu depends on the KL weight; dead dimensions sit orders of
#: magnitude below the live ones, the gap Sedaghat et al. read off) ...
MAD_FRACTION = 0.05
#: ... and the decoder response exceeds this fraction of the largest one.
RESPONSE_FRACTION = 0.05
#: PostgreSQL's cube type (the kNN index) holds at most 100 dimensions.
MAX_INFORMATIVE = 100


class AnalysisError(ValueError):
    """Bad inputs to the analysis, naming them."""


@dataclass
class Latents:
    """Rows of one or more latents artefacts (encoded rows only)."""

    ids: list[str]  # publisher DIDs
    z: np.ndarray  # (N, D) float64, latent means
    recon_err: np.ndarray  # (N,)
    header: dict


def load_latents(paths: list[str | os.PathLike]) -> Latents:
    """Read latents artefacts, keeping rows that were encoded (flags == 0)."""
    from astropy.io import fits
    ids, zs, errs, header = [], [], [], {}
    for p in paths:
        with fits.open(p) as hdul:
            t = hdul["LATENTS"].data
            h = hdul["LATENTS"].header
            if header and h.get("MODELID") != header.get("MODELID"):
                raise AnalysisError(f"{p}: model {h.get('MODELID')} differs from "
                                    f"{header.get('MODELID')}")
            header = header or {k: h[k] for k in h if not k.startswith(("TTYPE", "TFORM"))}
            ok = t["flags"] == 0
            ids += [s.strip() for s in t["pubdid"][ok]]
            zs.append(np.asarray(t["latent"][ok], np.float64))
            errs.append(np.asarray(t["recon_err"][ok], np.float64))
    if not ids:
        raise AnalysisError("no encoded rows in the latents artefacts")
    return Latents(ids, np.vstack(zs), np.concatenate(errs), header)


def canonical_product_id(name: str) -> str:
    """Archive product id for an archive file name or DID.

    The archive stores ``ADP.2014-09-16T11:04:45.123`` as
    ``ADP.2014-09-16T11_04_45.123.fits`` (see
    :attr:`harps_data.fitsio.SpectrumMeta.canonical_name`): the two ``_`` of the
    time of day are ``:`` again.
    """
    return os.path.basename(name).removesuffix(".fits").replace("_", ":", 2)


@dataclass
class Labels:
    """Ground truth of a labelled archive, keyed by product id."""

    values: dict[str, np.ndarray]  # product id -> (n_labels,) in LABELS order
    star: dict[str, str]  # product id -> star id


def load_labels(path: str | os.PathLike) -> Labels:
    """Read a synthetic archive's labels CSV (``harps-synth``)."""
    values, star = {}, {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = ["product_id", "star_id", *LABELS]
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise AnalysisError(f"{path}: labels CSV lacks columns {missing}")
        for row in reader:
            values[row["product_id"]] = np.array([float(row[c]) for c in LABELS])
            star[row["product_id"]] = row["star_id"]
    return Labels(values, star)


def evaluation_set(ids: Sequence[str], labels: Labels, *, stars: set[str] | None = None,
                   seed: int = 0) -> list[int]:
    """Indices of one spectrum per star (of ``stars``, if given) among ``ids``.

    Repeated observations of a star share every stellar label and have
    nearly identical spectra; keeping them would inflate mutual information
    and make nearest neighbours trivially right.  The spectrum kept per star
    is drawn at random with ``seed``.
    """
    by_star: dict[str, list[int]] = {}
    for i, did in enumerate(ids):
        pid = canonical_product_id(did)
        if pid in labels.star and (stars is None or labels.star[pid] in stars):
            by_star.setdefault(labels.star[pid], []).append(i)
    rng = np.random.default_rng(seed)
    return sorted(int(rng.choice(v)) for v in by_star.values())


def label_matrix(ids: Sequence[str], rows: Sequence[int], labels: Labels) -> np.ndarray:
    """(n, n_labels) ground truth for ``ids[rows]``."""
    return np.array([labels.values[canonical_product_id(ids[i])] for i in rows])


# ---------------------------------------------------------------------------
# Criteria
# ---------------------------------------------------------------------------

def mad(z: np.ndarray) -> np.ndarray:
    """Median absolute deviation of each column of ``z`` (N, D) -> (D,)."""
    return np.median(np.abs(z - np.median(z, axis=0)), axis=0)


def decoder_response(ckpt: dict, z: np.ndarray) -> np.ndarray:
    """RMS change of the decoded spectrum per unit step along each latent axis.

    Decodes the median latent vector moved by -1 and +1 prior sigma along
    each axis and returns half the RMS difference of the two decoded
    (normalised) spectra: (D,).  Axes the decoder ignores give ~0
    whatever their spread, so this is independent of the MAD criterion.
    """
    import torch

    from ml import checkpoint
    model, _ = checkpoint.build_model(ckpt)
    model.eval()
    centre = np.median(z, axis=0)
    dim = z.shape[1]
    plus = np.repeat(centre[None], dim, axis=0) + np.eye(dim)
    minus = np.repeat(centre[None], dim, axis=0) - np.eye(dim)
    out = np.empty(dim)
    with torch.no_grad():
        for start in range(0, dim, 16):
            sl = slice(start, start + 16)
            a = model.decode(torch.as_tensor(plus[sl], dtype=torch.float32))
            b = model.decode(torch.as_tensor(minus[sl], dtype=torch.float32))
            out[sl] = 0.5 * torch.sqrt(((a - b) ** 2).mean(dim=1)).numpy()
    return out


def informative(mad_values: np.ndarray, response: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of informative dimensions (both criteria must agree).

    At most :data:`MAX_INFORMATIVE` dimensions are kept, largest MAD first.
    """
    keep = (mad_values > MAD_FRACTION * float(mad_values.max())) & (mad_values > 0)
    if response is not None:
        keep &= response > RESPONSE_FRACTION * max(float(response.max()), 1e-30)
    if keep.sum() > MAX_INFORMATIVE:
        order = np.argsort(-np.where(keep, mad_values, -np.inf))
        keep = np.zeros_like(keep)
        keep[order[:MAX_INFORMATIVE]] = True
    return keep


# ---------------------------------------------------------------------------
# Mutual information
# ---------------------------------------------------------------------------

def mi_ksg(z: np.ndarray, y: np.ndarray, *, k: int = 3, seed: int = 0) -> np.ndarray:
    """KSG mutual information (nats) of each column of z (n, D) with y (n,) -> (D,)."""
    from sklearn.feature_selection import mutual_info_regression
    return mutual_info_regression(z, y, n_neighbors=k, random_state=seed)


def mi_histogram(x: np.ndarray, y: np.ndarray, bins: int | None = None) -> float:
    """Plug-in mutual information (nats) on an equal-population 2D histogram.

    Both variables are rank-transformed, so bins hold equal numbers of
    points; ``bins`` defaults to ``min(30, sqrt(n / 5))``.  The plug-in
    estimate is biased upwards by about (bins - 1)^2 / (2 n).
    """
    n = x.size
    bins = bins or int(max(2, min(30, math.sqrt(n / 5))))
    rx = np.argsort(np.argsort(x, kind="stable"), kind="stable") * bins // n
    ry = np.argsort(np.argsort(y, kind="stable"), kind="stable") * bins // n
    joint = np.zeros((bins, bins))
    np.add.at(joint, (rx, ry), 1.0)
    p = joint / n
    px, py = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / (px @ py)[nz])).sum())


def mi_table(z: np.ndarray, y: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MI of every dimension with every label: (D, n_labels) KSG and histogram."""
    ksg = np.column_stack([mi_ksg(z, y[:, j], seed=seed) for j in range(y.shape[1])])
    hist = np.array([[mi_histogram(z[:, d], y[:, j]) for j in range(y.shape[1])]
                     for d in range(z.shape[1])])
    return ksg, hist


def knn_label_error(z: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Median over spectra of the mean |label difference| to the k nearest neighbours."""
    from sklearn.neighbors import NearestNeighbors
    nn = NearestNeighbors(n_neighbors=k + 1).fit(z)
    _, idx = nn.kneighbors(z)
    return float(np.median(np.abs(y[idx[:, 1:]] - y[:, None]).mean(axis=1)))


def describe(dim: int, mad_value: float, ksg_row: np.ndarray) -> str:
    """One-line meaning of a latent dimension, from its MI with the labels."""
    order = np.argsort(-ksg_row)
    names = list(LABELS)
    parts = [f"{LABELS[names[j]][0]} {ksg_row[j]:.2f}" for j in order[:3]]
    return (f"Latent dimension {dim} (MAD {mad_value:.3g} prior sigma); mutual information "
            f"with the synthetic archive's labels, nats (KSG): " + ", ".join(parts))


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

def heatmap(ksg: np.ndarray, dims: list[int], path: str | os.PathLike) -> None:
    """PNG of MI (nats, KSG) for the given dimensions (rows) and all labels."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(1.2 + 0.7 * len(LABELS), 1.2 + 0.32 * max(len(dims), 1)), dpi=100)
    ax = fig.add_axes((0.18, 0.2, 0.62, 0.72))
    im = ax.imshow(ksg[dims] if dims else np.zeros((1, len(LABELS))), aspect="auto",
                   cmap="viridis", vmin=0)
    ax.set_xticks(range(len(LABELS)), [v[0] for v in LABELS.values()], rotation=45, ha="right")
    ax.set_yticks(range(len(dims)), [f"z{d}" for d in dims])
    ax.set_title("Mutual information with the labels [nats, KSG]", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.savefig(path)


#: Below this many held-out stars the analysis uses all stars (in-sample).
MIN_HELDOUT_STARS = 50


def run(latents_paths: list[str], labels_path: str, out_dir: str | os.PathLike, *,
        checkpoint_path: str | None = None, cache_dir: str | None = None,
        seed: int = 0) -> AnalysisSummary:
    """Compute every criterion and table and write them to ``out_dir``.

    Informativeness (MAD, decoder response) is measured over every encoded
    spectrum.  Mutual information and nearest-neighbour errors are measured
    on one spectrum per star, on the stars the model did not train on when
    the checkpoint names at least :data:`MIN_HELDOUT_STARS` of them; the PCA
    baseline is then fitted on the training stars only.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lat = load_latents(latents_paths)
    labels = load_labels(labels_path)
    ckpt = None
    if checkpoint_path:
        from ml import checkpoint
        ckpt = checkpoint.load(checkpoint_path)
    heldout = set(map(str, (ckpt or {}).get("data", {}).get("val_stars", [])))
    evaluation = "held-out stars" if len(heldout) >= MIN_HELDOUT_STARS else "all stars (in-sample)"
    rows = evaluation_set(lat.ids, labels, stars=heldout if "held" in evaluation else None,
                          seed=seed)
    if len(rows) < 20:
        raise AnalysisError(f"only {len(rows)} stars have labelled latents; need at least 20")
    z, y = lat.z[rows], label_matrix(lat.ids, rows, labels)
    mads = mad(lat.z)
    response = decoder_response(ckpt, lat.z) if ckpt else None
    keep = informative(mads, response)
    dims = sorted((int(d) for d in np.flatnonzero(keep)), key=lambda d: -mads[d])
    ksg, hist = mi_table(z, y, seed=seed)
    bases = {"latent": (ksg, hist)}
    knn = {"latent": knn_errors(z[:, dims] if dims else z, y)}
    if cache_dir:
        zp = pca_for(cache_dir, [canonical_product_id(lat.ids[i]) for i in rows],
                     exclude_stars=heldout if "held" in evaluation else set(),
                     labels=labels, n_components=z.shape[1], seed=seed)
        if zp is not None:
            bases["pca"] = mi_table(zp, y, seed=seed)
            knn["pca"] = knn_errors(zp[:, :max(len(dims), 1)], y)
    _write_dims(out / "dims.csv", mads, response, keep)
    _write_mi(out / "mi.csv", bases)
    heatmap(ksg, dims, out / "mi_heatmap.png")
    summary = AnalysisSummary(
        model_id=lat.header.get("MODELID"), n_spectra=int(lat.z.shape[0]),
        evaluation=evaluation, n_evaluation_stars=len(rows), latent_dim=int(lat.z.shape[1]),
        criteria=Criteria(mad_fraction=MAD_FRACTION, response_fraction=RESPONSE_FRACTION,
                          decoder_response=response is not None),
        n_informative=len(dims), n_generative_parameters=len(LABELS),
        informative=[InformativeDim(
            dim=d, mad=float(mads[d]),
            response=None if response is None else float(response[d]),
            mi_ksg={LABELS[c][0]: float(ksg[d, j]) for j, c in enumerate(LABELS)},
            description=describe(d, float(mads[d]), ksg[d])) for d in dims],
        best_mi_ksg={b: {LABELS[c][0]: float(v[0][:, j].max()) for j, c in enumerate(LABELS)}
                     for b, v in bases.items()},
        knn10_median_abs_error=knn)
    records.write(summary, out / "summary.json")
    return summary


def knn_errors(z: np.ndarray, y: np.ndarray, k: int = 10) -> dict[str, float]:
    """:func:`knn_label_error` for every label, keyed by the labels' short names."""
    return {LABELS[c][0]: knn_label_error(z, y[:, j], k) for j, c in enumerate(LABELS)}


def pca_for(cache_dir: str, product_ids: list[str], *, exclude_stars: set[str],
            labels: Labels, n_components: int, seed: int) -> np.ndarray | None:
    """PCA coefficients of the given spectra, the basis fitted without ``exclude_stars``.

    The spectra are the normalised, masked fluxes the model trained on
    (masked pixels 0), read from the training cache.  Returns None when a
    spectrum is missing from the cache or too few remain to fit.
    """
    from sklearn.decomposition import PCA

    from ml import data
    info = data.open_cache(cache_dir)
    row_of = {canonical_product_id(f): i for i, f in enumerate(info.files)}
    if any(p not in row_of for p in product_ids):
        return None
    fit_rows = [int(i) for i in info.usable
                if labels.star.get(canonical_product_id(info.files[i])) not in exclude_stars]
    if len(fit_rows) <= n_components:
        return None
    flux = np.load(info.directory / "flux.npy", mmap_mode="r")
    mask = np.load(info.directory / "mask.npy", mmap_mode="r")

    def spectra(rows):
        return np.stack([np.where(mask[i], flux[i], 0).astype(np.float32) for i in rows])

    pca = PCA(n_components=n_components, svd_solver="randomized", random_state=seed)
    pca.fit(spectra(fit_rows))
    return pca.transform(spectra([row_of[p] for p in product_ids]))


def _write_dims(path: Path, mads: np.ndarray, response: np.ndarray | None,
                keep: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dim", "mad", "decoder_response", "informative"])
        for d in range(mads.size):
            w.writerow([d, f"{mads[d]:.6g}",
                        "" if response is None else f"{response[d]:.6g}", int(keep[d])])


def _write_mi(path: Path, bases: dict) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["basis", "dim", "label", "mi_ksg", "mi_hist"])
        for basis, (ksg, hist) in bases.items():
            for d in range(ksg.shape[0]):
                for j, c in enumerate(LABELS):
                    w.writerow([basis, d, LABELS[c][0], f"{ksg[d, j]:.5g}", f"{hist[d, j]:.5g}"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="harps-analyse", description=__doc__.split("\n\n")[0])
    ap.add_argument("latents", nargs="+", help="latents artefact(s) from harps-encode")
    ap.add_argument("--labels", required=True, help="labels CSV of a synthetic archive")
    ap.add_argument("--checkpoint", help="model checkpoint (enables the decoder criterion)")
    ap.add_argument("--cache", help="preprocessed cache (enables the PCA baseline)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        summary = run(args.latents, args.labels, args.out, checkpoint_path=args.checkpoint,
                      cache_dir=args.cache, seed=args.seed)
    except (AnalysisError, OSError, KeyError) as ex:
        print(f"harps-analyse: {ex}", file=sys.stderr)
        return 2
    print(f"{summary.n_informative} informative of {summary.latent_dim} dimensions "
          f"({summary.n_generative_parameters} generative parameters vary); best MI (KSG): "
          + ", ".join(f"{k} {v:.2f}" for k, v in summary.best_mi_ksg["latent"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
