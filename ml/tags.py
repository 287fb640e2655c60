"""Physical-parameter tags from the latent vectors: ``harps-tags``.

::

    harps-tags fit --latents latents_M.fits --labels labels.csv --out tagger/ [--seed 1]
    harps-tags predict --tagger tagger/ --latents latents_M.fits --out tags.fits

``fit`` matches the rows of latents artefacts (:mod:`ml.encode`) to a label
catalogue (any CSV with a file column, a star column and some of the label
columns of :data:`TAGS`; the match rule is
:meth:`ml.data.LabelTable.match_rule`), splits the matched spectra by star,
fits on the training stars and measures on the held-out ones.  It writes
``DIR/tagger.npz`` (the training latents, labels and stars, and a JSON
description ``meta``: model id, catalogue and its SHA-256, match, split,
method, hyperparameters, calibration, out-of-domain thresholds, validation,
code version) and ``DIR/validation.json``.  ``predict`` writes one row per
latents row (FITS extension ``TAGS``, see :func:`write_tags`).

How (:mod:`ml.tagger`): per label, the better of two rules on the latent
means mu by cross-validation on the training stars (``--method auto``):
distance-weighted k-nearest-neighbour label transfer (scikit-learn's
``NearestNeighbors`` with ``KNeighborsRegressor``'s weights, k by
leave-one-star-out CV) or gradient boosting (``HistGradientBoostingRegressor``,
quantile losses for the spread, 5 folds by star).  Why these two: the kNN
rule is what the service's similarity search is ("the labels of the spectra
most like this one", checkable through ``gavo_latentdist``), has nothing of
its own to train, follows the strongly non-linear label manifolds a VAE
makes, and its neighbours give each spectrum its own spread; boosting is
the strongest maintained off-the-shelf regressor on a few thousand rows of
tens of features (on the ``coarse`` bench latents it beat kNN, ridge, an MLP
and an RBF SVR for logg and [M/H]), and its quantile losses give a
per-spectrum spread too.  Both leave a training spectrum's own star out
(repeated observations share all stellar labels), so cross-validation,
calibration and the tags of training spectra are all made without it.
sigma = c * sqrt(spread**2 + f**2) with f a floor and c chosen so that
68.27 % of the out-of-star errors on the training stars fall within 1 sigma;
the fraction actually within 1 sigma is then measured on the held-out stars
(``validation.json``), not forced.

Out of domain (``ood = 1``) when any of three statistics is above the 99th
percentile of the training spectra's own (each computed with the own star
left out; ``ood_reason`` names those above, comma-separated):

* "latent density": the distance to the :data:`~ml.tagger.DENSITY_K`-th nearest
  training spectrum (far from everything labelled);
* "reconstruction error": the reconstruction error itself (the model
  cannot represent the spectrum: garbage, a wrong type of file);
* "reconstruction vs neighbours": the reconstruction error divided by the
  median of those neighbours' (a spectrum the model represents worse than
  the labelled spectra it resembles; reconstruction errors vary tenfold
  across the synthetic archive, so only this local comparison catches a real
  spectrum that lands among synthetic ones of its type and is reconstructed
  like an average synthetic spectrum but worse than those).  Added after the
  first real-star check (``bench/README.md``) had alpha Cen B spectra that
  the two criteria above passed with wrong temperatures; the rule and its
  percentile are the training set's, nothing was fitted to the real stars.

``ood_score`` is the largest ratio of a statistic to its threshold (> 1:
out of domain).  Spectra that were not encoded (flagged) get no tags,
``ood = 1`` and reason "not encoded".  Held-out stars are those of
``--checkpoint``'s validation split when given (stars neither the autoencoder
nor the tagger saw), else :func:`ml.data.split_by_star` with
``--val-fraction`` and ``--seed``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml import data
from ml.tagger import FORMAT, FORMAT_VERSION, METHODS, TagError, Tagger

__all__ = ["TAGS", "TagError", "Tagger", "LatentRows", "read_latents", "fit", "predict",
           "write_tags", "main"]


@dataclass(frozen=True)
class Tag:
    """A physical parameter: its unit, the unit of its error, its catalogue column names."""

    unit: str  # FITS/VOUnit of the value
    err_unit: str  # of the uncertainty
    columns: tuple[str, ...]  # accepted catalogue columns, lower case, preferred first
    header: str  # FITS key of its validation MAE


#: The tags and their catalogue columns: the one place of the mapping
#: (harps-synth's names first, then plain names and SWEET-Cat's).
TAGS: dict[str, Tag] = {
    "teff": Tag("K", "K", ("teff_k", "teff"), "MAETEFF"),
    "logg": Tag("log(cm.s**-2)", "dex", ("logg_cgs", "logg"), "MAELOGG"),
    "mh": Tag("dex", "dex", ("mh_dex", "mh", "[m/h]", "[fe/h]", "feh"), "MAEMH"),
    "vsini": Tag("km/s", "km/s", ("vsini_kms", "vsini"), "MAEVSINI"),
    "rv": Tag("km/s", "km/s", ("rv_kms", "rv"), "MAERV"),
}
#: Fewest labelled stars on either side of the split.
MIN_TRAIN_STARS, MIN_VAL_STARS = 10, 3

# ---------------------------------------------------------------------------
# Latents artefacts
# ---------------------------------------------------------------------------

@dataclass
class LatentRows:
    """Every row of one or more latents artefacts, in file order."""

    ids: list[str]  # publisher DIDs, (N,)
    z: np.ndarray  # (N, D) float64 latent means mu; NaN rows where not encoded
    recon_err: np.ndarray  # (N,) float64, (normalised flux)**2
    flags: np.ndarray  # (N,) int, 0 = encoded
    model_id: str
    header: dict = field(default_factory=dict)  # LATENTS header of the first file (no TTYPE..)

    @property
    def encoded(self) -> np.ndarray:
        """(N,) bool: encoded rows with a finite latent vector."""
        return (self.flags == 0) & np.isfinite(self.z).all(axis=1) & np.isfinite(self.recon_err)


def read_latents(paths: Sequence[str | os.PathLike]) -> LatentRows:
    """Read latents artefacts (extension ``LATENTS``) of one model.

    Raises
    ------
    TagError
        An unreadable file, one without a ``LATENTS`` table or ``MODELID``,
        or files of different models.
    """
    from astropy.io import fits
    if not paths:
        raise TagError("--latents: no latents artefact given")
    ids, zs, errs, flags, mid, header = [], [], [], [], None, {}
    for p in paths:
        try:
            with fits.open(p) as hdul:
                t, h = hdul["LATENTS"].data, hdul["LATENTS"].header
                this = str(h.get("MODELID", ""))
                header = header or {k: h[k] for k in h if not k.startswith(("TTYPE", "TFORM"))}
                rows = (list(t["pubdid"]), np.asarray(t["latent"], np.float64),
                        np.asarray(t["recon_err"], np.float64), np.asarray(t["flags"], int))
        except (OSError, KeyError, TypeError, ValueError) as ex:
            raise TagError(f"--latents {p}: not a latents artefact ({ex})") from None
        if not this:
            raise TagError(f"--latents {p}: no MODELID in the LATENTS header")
        if mid is not None and this != mid:
            raise TagError(f"--latents {p}: model {this} differs from {mid} of the other files")
        mid = this
        ids += [str(s).strip() for s in rows[0]]
        zs.append(rows[1].reshape(len(rows[0]), -1))
        errs.append(rows[2])
        flags.append(rows[3])
    return LatentRows(ids, np.vstack(zs), np.concatenate(errs), np.concatenate(flags), mid,
                      header)


# ---------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------

def held_out_stars(stars: np.ndarray, *, checkpoint_path: str | None, val_fraction: float,
                   seed: int) -> tuple[np.ndarray, str]:
    """(n,) bool held-out mask of the matched spectra and a description of the split."""
    if checkpoint_path:
        from ml import checkpoint
        try:
            val = set(map(str, checkpoint.load(checkpoint_path)["data"]["val_stars"]))
        except (checkpoint.CheckpointError, KeyError, OSError) as ex:
            raise TagError(f"--checkpoint {checkpoint_path}: no held-out stars ({ex})") from None
        return (np.array([s in val for s in stars], bool),
                f"held-out stars of the autoencoder ({Path(checkpoint_path).name})")
    _, va = data.split_by_star(list(stars), val_fraction, seed)
    mask = np.zeros(len(stars), bool)
    mask[va] = True
    names = sorted(set(map(str, stars)))
    if (len(set(map(str, stars[mask]))) < MIN_VAL_STARS
            and len(names) >= MIN_TRAIN_STARS + MIN_VAL_STARS):
        # a star with many spectra took the whole fraction (small archives):
        # hold out a fraction of the stars instead
        np.random.default_rng(seed).shuffle(names)
        held = set(names[:max(MIN_VAL_STARS, round(val_fraction * len(names)))])
        return (np.array([str(s) in held for s in stars], bool),
                f"{len(held)} stars drawn with seed {seed} (fraction {val_fraction} of the stars)")
    return mask, f"ml.data.split_by_star(val_fraction={val_fraction}, seed={seed})"


def metrics(pred: dict[str, np.ndarray], truth: np.ndarray, names: Sequence[str],
            train_mean: np.ndarray, stars: np.ndarray) -> dict[str, dict[str, float]]:
    """Validation figures of every label on spectra with a known value.

    ``mae``, ``rmse``, ``median_abs_error``, ``baseline_mae`` (predicting the
    training mean), ``within_1sigma``, ``mae_in_domain`` (ood = 0 only), ``n``
    (spectra), and ``mae_per_star``: the mean over stars of each star's MAE
    (archives are heavy-tailed: one star observed hundreds of times would
    otherwise weigh as much as hundreds of stars).
    """
    out = {}
    for j, name in enumerate(names):
        if name not in pred:
            continue
        ok = np.isfinite(truth[:, j])
        err = pred[name][ok] - truth[ok, j]
        ind = ~pred["ood"][ok]
        out[name] = {
            "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "median_abs_error": float(np.median(np.abs(err))),
            "baseline_mae": float(np.mean(np.abs(truth[ok, j] - train_mean[j]))),
            "within_1sigma": float(np.mean(np.abs(err) <= pred[name + "_err"][ok])),
            "mae_in_domain": float(np.mean(np.abs(err[ind]))) if ind.any() else float("nan"),
            "mae_per_star": float(np.mean([np.mean(np.abs(err[stars[ok] == s]))
                                           for s in set(stars[ok].tolist())])),
            "n": int(ok.sum()), "unit": TAGS[name].unit}
    return out


def _matched(latents: Sequence[str], labels: str) -> tuple[LatentRows, data.LabelTable,
                                                           np.ndarray, np.ndarray]:
    """Latents, catalogue, the encoded and matched row positions and their catalogue rows."""
    lat = read_latents(latents)
    try:
        table = data.read_label_table(labels, {n: t.columns for n, t in TAGS.items()})
    except data.DataError as ex:
        raise TagError(f"--labels {ex}") from None
    rows = table.match(lat.ids)
    use = np.flatnonzero(lat.encoded & (rows >= 0))
    if len(use) == 0:
        raise TagError(f"--labels {labels}: no encoded latents row matched a catalogue row "
                       f"({table.match_rule}; {int((rows >= 0).sum())} rows matched in all, "
                       f"{int(lat.encoded.sum())} encoded)")
    return lat, table, use, rows[use]


def fit(latents: Sequence[str], labels: str, out_dir: str | os.PathLike, *, seed: int = 1,
        val_fraction: float = 0.2, checkpoint_path: str | None = None, method: str = "auto",
        threads: int | None = None, progress: bool = True) -> dict:
    """Fit a tagger (see the module docstring); write it and ``validation.json``.

    Returns
    -------
    dict
        The validation figures (the contents of ``validation.json``).
    """
    from ml.checkpoint import code_version
    lat, table, use, cat = _matched(latents, labels)
    stars = np.array([table.stars[r] for r in cat], dtype=object)
    val, split = held_out_stars(stars, checkpoint_path=checkpoint_path,
                                val_fraction=val_fraction, seed=seed)
    n_tr, n_va = len(set(stars[~val])), len(set(stars[val]))
    if n_tr < MIN_TRAIN_STARS or n_va < MIN_VAL_STARS:
        raise TagError(f"--labels {labels}: too few labelled stars ({n_tr} training, {n_va} "
                       f"held out; need >= {MIN_TRAIN_STARS} and >= {MIN_VAL_STARS})")
    keys = np.array([data.file_key(lat.ids[i]) for i in use], dtype=object)
    tr, va = use[~val], use[val]
    y = table.values[cat]
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=threads):  # the boosted models' OpenMP threads
        tagger = Tagger(lat.z[tr], y[~val], stars[~val], keys[~val], lat.recon_err[tr],
                        table.names, seed).fit(method, progress)
    pred = tagger.predict(lat.z[va], lat.recon_err[va], keys[val], progress=progress)
    figures = metrics(pred, y[val], table.names, np.nanmean(y[~val], axis=0), stars[val])
    for name, h in tagger.heads.items():
        figures[name].update(method=h.method, k=h.k, cv_mae=h.cv_mae)
    report = {
        "model_id": lat.model_id, "split": split, "labels": figures,
        "n_train_spectra": len(tr), "n_train_stars": n_tr, "n_val_spectra": len(va),
        "n_val_stars": n_va, "ood_rate_val": float(np.mean(pred["ood"])),
        "ood_rate_val_by_reason": dict(Counter(r for r in pred["ood_reason"] if r))}
    tagger.meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model_id": lat.model_id,
        "latents": [Path(p).name for p in latents],
        "label_catalogue": {"file": table.path.name, "sha256": table.sha256,
                            "file_column": table.file_column, "star_column": table.star_column,
                            "columns": dict(zip(table.names, table.columns, strict=True))},
        "match": table.match_rule, "n_matched": len(use), "seed": seed, "split": split,
        **tagger.describe(), "validation": report, "code": code_version(),
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tagger.sha256 = tagger.save(out / "tagger.npz")
    report = {"tagger": tagger.tagger_id, **report}
    (out / "validation.json").write_text(json.dumps(report, indent=1))
    return report


# ---------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------

REASON_WIDTH = 72


def predict(tagger_path: str | os.PathLike, latents: Sequence[str], out: str | os.PathLike, *,
            progress: bool = True) -> dict[str, np.ndarray]:
    """Tag every row of the latents artefacts and write ``out`` (see :func:`write_tags`)."""
    tagger = Tagger.load(tagger_path)
    lat = read_latents(latents)
    if lat.model_id != tagger.meta["model_id"]:
        raise TagError(f"--latents: model {lat.model_id} is not the tagger's "
                       f"{tagger.meta['model_id']} ({tagger.path}); fit a tagger on this "
                       "model's latents")
    ok = np.flatnonzero(lat.encoded)
    n = len(lat.ids)
    cols = {c: np.full(n, np.nan) for name in TAGS for c in (name, name + "_err")}
    cols["ood_score"] = np.full(n, np.nan)
    ood, reason = np.ones(n, np.int16), ["not encoded"] * n
    if len(ok):
        pred = tagger.predict(lat.z[ok], lat.recon_err[ok],
                              [data.file_key(lat.ids[i]) for i in ok], progress=progress)
        for c in cols:
            if c in pred:
                cols[c][ok] = pred[c]
        ood[ok] = pred["ood"]
        for i, r in zip(ok, pred["ood_reason"], strict=True):
            reason[i] = r
    write_tags(out, lat.ids, cols, ood, reason, tagger)
    return {**cols, "ood": ood}


def write_tags(path: str | os.PathLike, ids: list[str], cols: dict[str, np.ndarray],
               ood: np.ndarray, reason: list[str], tagger: Tagger) -> None:
    """Write the ``TAGS`` table atomically (temporary file, then ``os.replace``).

    Columns: ``pubdid``; ``teff, teff_err`` (K), ``logg, logg_err`` (dex, cgs),
    ``mh, mh_err`` (dex), ``vsini, vsini_err``, ``rv, rv_err`` (km/s), float32,
    NaN when not predicted; ``ood`` (int16 0/1), ``ood_score`` (float32),
    ``ood_reason`` ('' in domain).  Header: ``MODELID``, ``TAGGER``,
    ``LABELCAT``, ``LABELSHA``, ``MATCH``, ``NMATCHED``, ``NTRAIN``, ``NVAL``,
    ``OODRATE`` and the held-out MAE of each label (``MAETEFF`` ...).
    """
    from astropy.io import fits
    width = max([len(i) for i in ids] + [1])
    fc = [fits.Column("pubdid", f"{width}A", array=np.array(ids, dtype=f"S{width}"))]
    for name, tag in TAGS.items():
        fc += [fits.Column(name, "E", unit=tag.unit, array=cols[name].astype(np.float32)),
               fits.Column(name + "_err", "E", unit=tag.err_unit,
                           array=cols[name + "_err"].astype(np.float32))]
    fc += [fits.Column("ood", "I", array=np.asarray(ood, np.int16)),
           fits.Column("ood_score", "E", array=cols["ood_score"].astype(np.float32)),
           fits.Column("ood_reason", f"{REASON_WIDTH}A",
                       array=np.array([r[:REASON_WIDTH] for r in reason], f"S{REASON_WIDTH}"))]
    hdu = fits.BinTableHDU.from_columns(fc, name="TAGS")
    m, v = tagger.meta, tagger.meta["validation"]
    cards = [("MODELID", m["model_id"], "model of the latents"),
             ("TAGGER", tagger.tagger_id, "method and SHA-256 prefix of tagger.npz"),
             ("LABELCAT", m["label_catalogue"]["file"], "label catalogue"),
             ("LABELSHA", m["label_catalogue"]["sha256"], "SHA-256 of LABELCAT"),
             ("MATCH", m["match"], "how latents rows were matched to LABELCAT"),
             ("NMATCHED", m["n_matched"], "latents rows matched to LABELCAT"),
             ("NTRAIN", v["n_train_spectra"], "training spectra"),
             ("NVAL", v["n_val_spectra"], "held-out spectra (validation)"),
             ("OODRATE", v["ood_rate_val"], "out-of-domain rate, held-out stars")]
    cards += [(t.header, v["labels"][n]["mae"], f"[{t.err_unit}] held-out MAE of {n}")
              for n, t in TAGS.items() if n in v["labels"]]
    for key, value, comment in cards:
        fits_in = len(fits.Card(key, value).image.rstrip()) + 3 + len(comment) <= 80
        hdu.header.append(fits.Card(key, value, comment if fits_in else ""))
    tmp = Path(path).with_name(Path(path).name + f".part{os.getpid()}")
    hdu_list = fits.HDUList([fits.PrimaryHDU(), hdu])
    hdu_list.writeto(tmp, overwrite=True)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line (exit status 2)."""

    def error(self, message: str) -> None:  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="harps-tags", description="Physical-parameter tags (Teff, logg, [M/H], "
                "vsini, RV) with uncertainties and an out-of-domain flag, from latents.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    f = sub.add_parser("fit", help="fit a tagger on labelled latents, validate on held-out stars")
    f.add_argument("--latents", nargs="+", required=True, help="latents artefacts (one model)")
    f.add_argument("--labels", required=True, help="label catalogue CSV (file, star and label "
                   "columns, e.g. harps-synth's labels.csv)")
    f.add_argument("--out", required=True, help="directory for tagger.npz and validation.json")
    f.add_argument("--seed", type=int, default=1, help="seed of the star split (%(default)s)")
    f.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of spectra (whole stars) held out (%(default)s)")
    f.add_argument("--checkpoint", help="hold out this checkpoint's validation stars instead")
    f.add_argument("--method", choices=METHODS, default="auto",
                   help="rule per label: chosen by CV (auto), or always knn or hgb")
    f.add_argument("--threads", type=int, help="CPU threads of the boosted models (all)")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    q = sub.add_parser("predict", help="tag every row of latents artefacts")
    q.add_argument("--tagger", required=True, help="directory (or tagger.npz) of harps-tags fit")
    q.add_argument("--latents", nargs="+", required=True, help="latents artefacts (one model)")
    q.add_argument("--out", required=True, help="output FITS file (extension TAGS)")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``harps-tags``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "fit":
            rep = fit(args.latents, args.labels, args.out, seed=args.seed,
                      val_fraction=args.val_fraction, checkpoint_path=args.checkpoint,
                      method=args.method, threads=args.threads, progress=not args.quiet)
            print(format_validation(rep))
        else:
            out = predict(args.tagger, args.latents, args.out, progress=not args.quiet)
            print(f"{args.out}: {len(out['ood'])} rows, {int(out['ood'].sum())} out of domain")
    except (TagError, data.DataError, OSError) as ex:
        print(f"harps-tags: error: {ex}", file=sys.stderr)
        return 2
    return 0


def format_validation(rep: dict) -> str:
    """The validation report as a small text table."""
    lines = [f"tagger {rep['tagger']} on model {rep['model_id']}: {rep['n_train_spectra']} "
             f"training spectra ({rep['n_train_stars']} stars), {rep['n_val_spectra']} held out "
             f"({rep['n_val_stars']} stars; {rep['split']}); out of domain on held-out: "
             f"{rep['ood_rate_val']:.1%}",
             f"{'label':6s} {'MAE':>9s} {'per star':>9s} {'RMSE':>9s} {'median':>9s} "
             f"{'mean-MAE':>9s} {'in 1sig':>8s} {'rule':>6s} {'CV MAE':>9s}  unit"]
    for name, m in rep["labels"].items():
        lines.append(f"{name:6s} {m['mae']:9.4g} {m['mae_per_star']:9.4g} {m['rmse']:9.4g} "
                     f"{m['median_abs_error']:9.4g} {m['baseline_mae']:9.4g} "
                     f"{m['within_1sigma']:8.1%} {m['method']:>6s} {m['cv_mae']:9.4g}  "
                     f"{TAGS[name].err_unit}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
