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

Method: distance-weighted k-nearest-neighbour label transfer in the full
latent space (mu, Euclidean), one k per label.  Why this and not a trained
head: the latent space is what the service's similarity search uses, so a
tag is literally "the labels of the spectra most like this one", which a
user can check through ``gavo_latentdist``; it has no training of its own
to go wrong, handles the strongly non-linear label manifolds a VAE makes,
and its neighbours give each spectrum its own uncertainty (the weighted
spread of their labels) and a natural domain test (the distance to them).
The neighbour search is scikit-learn's ``NearestNeighbors``; the weights are
``KNeighborsRegressor``'s ``weights="distance"`` (1/d; exact matches take
all the weight), applied to the same neighbours so that two rules can be
added (a test checks the result equals ``KNeighborsRegressor.predict``):

* **Leave-own-star-out.**  A spectrum of a training star never uses its
  own star's spectra (repeated observations share all stellar labels, so
  they would return the truth and a zero spread).  Cross-validation, the
  calibration and the tags of training spectra are all made this way.
* **Calibrated spread.**  sigma = c * sqrt(s_w**2 + f**2): s_w the weighted
  standard deviation of the k neighbours' labels, f a floor (a tenth of the
  median s_w) for neighbours that happen to agree, and c chosen so that
  68.27 % of the leave-own-star-out errors on the training stars fall within
  1 sigma.  The fraction actually within 1 sigma is then measured on the
  held-out stars (``validation.json``), not forced.

k is chosen per label among :data:`K_GRID` by leave-one-star-out
cross-validation on the training stars only (smallest mean absolute
error).

Out of domain (``ood = 1``) when any of three statistics is above the 99th
percentile of the training spectra's own (each computed with the own star
left out; ``ood_reason`` names those above, comma-separated):

* "latent density": the distance to the :data:`DENSITY_K`-th nearest
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
``ood = 1`` and reason "not encoded".  Held-out stars are those of ``--checkpoint``'s
validation split when given (stars neither the autoencoder nor the tagger
saw), else :func:`ml.data.split_by_star` with ``--val-fraction`` and ``--seed``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ml import data


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
#: Candidate numbers of neighbours, chosen per label by cross-validation.
K_GRID = (1, 2, 3, 5, 8, 12, 20, 30)
#: The neighbour whose distance measures latent density.
DENSITY_K = 10
#: Percentile of the training set above which a spectrum is out of domain.
OOD_PERCENTILE = 99.0
#: The out-of-domain statistics (:meth:`Tagger.domain`) and their reasons.
OOD_CRITERIA = {"density": "latent density", "recon": "reconstruction error",
                "recon_local": "reconstruction vs neighbours"}
#: Fraction of errors within 1 sigma after calibration (a Gaussian's).
COVERAGE = 0.6827
#: Fewest labelled stars on either side of the split.
MIN_TRAIN_STARS, MIN_VAL_STARS = 10, 3
FORMAT, FORMAT_VERSION = "harps-vo-tagger", 1
NO_STAR = "\0"  # query star of a spectrum outside the training set: excludes nothing
CHUNK = 2048  # query rows per neighbour search


class TagError(ValueError):
    """A bad option or input, naming it."""


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
# The neighbour rule
# ---------------------------------------------------------------------------

def neighbours(nn, train_star: np.ndarray, z: np.ndarray, query_star: np.ndarray, k: int,
               max_per_star: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest training spectra of each query that are not of the query's own star.

    Parameters
    ----------
    nn : sklearn.neighbors.NearestNeighbors
        Fitted on the training latents (M, D).
    train_star : numpy.ndarray
        (M,) star of each training spectrum.
    z : numpy.ndarray
        (n, D) queries.
    query_star : numpy.ndarray
        (n,) star of each query (:data:`NO_STAR` when it is no training star).
    k : int
        Neighbours wanted, at most ``M - max_per_star``.
    max_per_star : int
        Most training spectra of one star (what may have to be skipped).

    Returns
    -------
    dist, idx : numpy.ndarray
        (n, k) Euclidean distances (ascending) and training row indices.
    """
    want = min(k + max_per_star, len(train_star))
    dist, idx = nn.kneighbors(z, n_neighbors=want)
    own = train_star[idx] == np.asarray(query_star)[:, None]
    order = np.argsort(own, axis=1, kind="stable")[:, :k]  # others first, by distance
    return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)


def weighted_stats(dist: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-distance weighted mean and standard deviation of neighbour labels.

    The weights are scikit-learn's ``weights="distance"``: 1/d, and a row
    with exact matches (d = 0) gives them weight 1 and the others 0.

    Parameters
    ----------
    dist, y : numpy.ndarray
        (n, k) distances and the neighbours' labels.

    Returns
    -------
    mean, std : numpy.ndarray
        (n,) each.
    """
    with np.errstate(divide="ignore"):
        w = 1.0 / dist
    inf = np.isinf(w)
    exact = inf.any(axis=1)
    w[exact] = inf[exact]
    w /= w.sum(axis=1, keepdims=True)
    mean = (w * y).sum(axis=1)
    return mean, np.sqrt((w * (y - mean[:, None]) ** 2).sum(axis=1))


# ---------------------------------------------------------------------------
# The tagger
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Head:
    """The fitted rule of one label."""

    name: str
    k: int  # neighbours
    scale: float  # calibration factor c
    floor: float  # spread floor f, label units
    cv_mae: float  # leave-one-star-out MAE on the training stars at this k


class Tagger:
    """Training latents and labels plus the per-label rules; predicts tags and the domain flag.

    Parameters
    ----------
    z : numpy.ndarray
        (M, D) training latents.
    y : numpy.ndarray
        (M, n_labels) training labels (NaN: not in the catalogue).
    stars, keys : numpy.ndarray
        (M,) star id and :func:`ml.data.file_key` of each training spectrum.
    recon_err : numpy.ndarray
        (M,) reconstruction errors of the training spectra.
    names : sequence of str
        Label names (keys of :data:`TAGS`), the columns of ``y``.
    """

    def __init__(self, z: np.ndarray, y: np.ndarray, stars: np.ndarray, keys: np.ndarray,
                 recon_err: np.ndarray, names: Sequence[str]) -> None:
        from sklearn.neighbors import NearestNeighbors
        self.z, self.y, self.recon_err = z, y, recon_err
        self.stars = np.asarray(stars, dtype=object)
        self.keys, self.names = np.asarray(keys, dtype=object), tuple(names)
        self.heads: dict[str, Head] = {}
        self.meta: dict = {}
        self.path: Path | None = None  # the file it was loaded from
        self.sha256 = ""  # of that file
        self._star_of = dict(zip(self.keys.tolist(), self.stars.tolist(), strict=True))
        self._nn: dict[str, tuple] = {}
        for j, name in enumerate(self.names):
            rows = np.flatnonzero(np.isfinite(y[:, j]))
            if len(rows):
                nn = NearestNeighbors().fit(z[rows])
                per = max(Counter(self.stars[rows].tolist()).values())
                self._nn[name] = (nn, rows, per)
        per_all = max(Counter(self.stars.tolist()).values())
        self._density = (NearestNeighbors().fit(z), per_all)
        self.density_k = min(DENSITY_K, len(z) - per_all)
        self.thresholds = dict.fromkeys(OOD_CRITERIA, np.inf)  # set by fit()

    def query_stars(self, keys: Sequence[str]) -> np.ndarray:
        """(n,) the training star of each file key, :data:`NO_STAR` for others."""
        return np.array([self._star_of.get(k, NO_STAR) for k in keys], dtype=object)

    def max_k(self, name: str) -> int:
        """Most neighbours label ``name`` can use with its own star left out."""
        _, rows, per = self._nn[name]
        return len(rows) - per

    def raw(self, name: str, z: np.ndarray, qstar: np.ndarray,
            k: int) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated (mean, spread) of label ``name`` from ``k`` neighbours, (n,) each."""
        nn, rows, per = self._nn[name]
        dist, idx = neighbours(nn, self.stars[rows], z, qstar, k, per)
        return weighted_stats(dist, self.y[rows][idx, self.names.index(name)])

    def domain(self, z: np.ndarray, recon_err: np.ndarray,
               qstar: np.ndarray) -> dict[str, np.ndarray]:
        """The three out-of-domain statistics of spectra, (n,) each (see :data:`OOD_CRITERIA`).

        ``density``: distance to the :data:`DENSITY_K`-th nearest training
        spectrum (own star out); ``recon``: the reconstruction error;
        ``recon_local``: the reconstruction error over the median of those
        :data:`DENSITY_K` neighbours' reconstruction errors.
        """
        nn, per = self._density
        dist, idx = neighbours(nn, self.stars, z, qstar, self.density_k, per)
        recon_err = np.asarray(recon_err, float)
        return {"density": dist[:, -1], "recon": recon_err,
                "recon_local": recon_err / np.median(self.recon_err[idx], axis=1)}

    def predict(self, z: np.ndarray, recon_err: np.ndarray, keys: Sequence[str], *,
                progress: bool = False) -> dict[str, np.ndarray]:
        """Tags, uncertainties and the domain flag of encoded spectra.

        Parameters
        ----------
        z : numpy.ndarray
            (n, D) latents, all finite.
        recon_err : numpy.ndarray
            (n,) reconstruction errors.
        keys : sequence of str
            (n,) :func:`ml.data.file_key` of each spectrum (training spectra
            are recognised by it and leave their own star out).

        Returns
        -------
        dict
            ``NAME`` and ``NAME_err`` (n,) for every label of the tagger,
            ``ood`` (n,) bool, ``ood_score`` (n,), ``ood_reason`` list of str.
        """
        from tqdm import tqdm
        qstar = self.query_stars(keys)
        out = {n: np.full(len(z), np.nan) for h in self.heads for n in (h, h + "_err")}
        stat = {c: np.full(len(z), np.nan) for c in OOD_CRITERIA}
        for s in tqdm(range(0, len(z), CHUNK), desc="tags", unit="chunk", disable=not progress):
            sl = slice(s, s + CHUNK)
            for name, h in self.heads.items():
                mean, spread = self.raw(name, z[sl], qstar[sl], h.k)
                out[name][sl] = mean
                out[name + "_err"][sl] = h.scale * np.hypot(spread, h.floor)
            for c, v in self.domain(z[sl], np.asarray(recon_err)[sl], qstar[sl]).items():
                stat[c][sl] = v
        ratio = np.column_stack([stat[c] / self.thresholds[c] for c in OOD_CRITERIA])
        out["ood_score"] = ratio.max(axis=1)
        out["ood"] = out["ood_score"] > 1.0
        out["ood_reason"] = [", ".join(r for r, bad in zip(OOD_CRITERIA.values(), row > 1,
                                                           strict=True) if bad)
                             for row in ratio]
        return out

    # -- fitting -------------------------------------------------------------

    def fit_head(self, name: str) -> Head:
        """Choose k by leave-one-star-out CV on the training stars, then calibrate the spread."""
        _, rows, _ = self._nn[name]
        z, truth = self.z[rows], self.y[rows, self.names.index(name)]
        qstar = self.stars[rows]
        ks = [k for k in K_GRID if k <= self.max_k(name)]
        if not ks:
            raise TagError(f"label {name}: too few training stars for any neighbour")
        maes = [float(np.mean(np.abs(self.raw(name, z, qstar, k)[0] - truth))) for k in ks]
        best = int(np.argmin(maes))
        k = ks[best]
        mean, spread = self.raw(name, z, qstar, k)
        floor = max(0.1 * float(np.median(spread)), 1e-6 * float(np.std(truth)) + 1e-12)
        ratio = np.abs(mean - truth) / np.hypot(spread, floor)
        scale = float(np.quantile(ratio, COVERAGE))
        return Head(name, k, max(scale, 1e-6), floor, maes[best])

    def fit(self) -> Tagger:
        """Fit every head and the out-of-domain thresholds on the training spectra."""
        self.heads = {n: self.fit_head(n) for n in self.names if n in self._nn}
        if self.density_k < 1:
            raise TagError("too few training stars to measure latent density")
        own = self.domain(self.z, self.recon_err, self.stars)
        self.thresholds = {c: float(np.percentile(v, OOD_PERCENTILE)) for c, v in own.items()}
        return self

    # -- files ---------------------------------------------------------------

    def describe(self) -> dict:
        """Method, hyperparameters, calibration and thresholds (JSON-ready)."""
        return {
            "method": {
                "name": "knn", "space": "latent mean mu, all dimensions, Euclidean",
                "neighbour_search": "sklearn.neighbors.NearestNeighbors",
                "weights": "inverse distance (KNeighborsRegressor weights='distance')",
                "own_star": "left out (training spectra and cross-validation)",
                "k_grid": list(K_GRID),
                "k_choice": "leave-one-star-out CV on the training stars, smallest MAE",
                "sigma": "scale * sqrt(weighted spread**2 + floor**2), scale from the "
                         f"{COVERAGE} quantile of |error|/spread (leave-one-star-out, "
                         "training stars)"},
            "heads": {n: asdict(h) for n, h in self.heads.items()},
            "ood": {"density_k": self.density_k, "percentile": OOD_PERCENTILE,
                    "criteria": OOD_CRITERIA, "thresholds": self.thresholds,
                    "score": "the largest statistic / its threshold; ood when > 1"}}

    def save(self, path: str | os.PathLike) -> str:
        """Write ``path`` (npz, atomically); return its SHA-256."""
        path = Path(path)
        buf = io.BytesIO()
        np.savez(buf, z=self.z.astype(np.float32), y=self.y, recon_err=self.recon_err,
                 stars=self.stars.astype(str), keys=self.keys.astype(str),
                 names=np.array(self.names), meta=np.array(json.dumps(self.meta, indent=1)))
        blob = buf.getvalue()
        tmp = path.with_name(path.name + f".part{os.getpid()}")
        tmp.write_bytes(blob)
        os.replace(tmp, path)
        return hashlib.sha256(blob).hexdigest()

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tagger:
        """Read a tagger written by :meth:`save` (no pickles)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tagger.npz"
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
            meta = json.loads(str(arrays["meta"]))
        except (OSError, KeyError, ValueError) as ex:
            raise TagError(f"--tagger {path}: not a tagger written by harps-tags fit "
                           f"({ex})") from None
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise TagError(f"--tagger {path}: not a {FORMAT} v{FORMAT_VERSION} file")
        t = cls(arrays["z"].astype(np.float64), arrays["y"], arrays["stars"], arrays["keys"],
                arrays["recon_err"], [str(n) for n in arrays["names"]])
        t.heads = {n: Head(**h) for n, h in meta["heads"].items()}
        t.thresholds = meta["ood"]["thresholds"]
        t.meta, t.path, t.sha256 = meta, path, hashlib.sha256(path.read_bytes()).hexdigest()
        return t

    @property
    def tagger_id(self) -> str:
        """Short id of a loaded tagger file: ``knn-`` and 12 hex digits of its SHA-256."""
        return f"knn-{self.sha256[:12]}"


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
            train_mean: np.ndarray) -> dict[str, dict[str, float]]:
    """Validation figures of every label on spectra with a known value.

    ``mae``, ``rmse``, ``median_abs_error``, ``baseline_mae`` (predicting the
    training mean), ``within_1sigma``, ``mae_in_domain`` (ood = 0 only), ``n``.
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
        val_fraction: float = 0.2, checkpoint_path: str | None = None,
        progress: bool = True) -> dict:
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
    tagger = Tagger(lat.z[tr], y[~val], stars[~val], keys[~val], lat.recon_err[tr],
                    table.names).fit()
    pred = tagger.predict(lat.z[va], lat.recon_err[va], keys[val], progress=progress)
    report = {
        "model_id": lat.model_id, "split": split, "labels": metrics(
            pred, y[val], table.names, np.nanmean(y[~val], axis=0)),
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
    sha = tagger.save(out / "tagger.npz")
    report = {"tagger": f"knn-{sha[:12]}", **report}
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
                      progress=not args.quiet)
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
             f"{'label':6s} {'MAE':>9s} {'RMSE':>9s} {'median':>9s} {'mean-MAE':>9s} "
             f"{'in 1sig':>8s}  unit"]
    for name, m in rep["labels"].items():
        lines.append(f"{name:6s} {m['mae']:9.4g} {m['rmse']:9.4g} {m['median_abs_error']:9.4g} "
                     f"{m['baseline_mae']:9.4g} {m['within_1sigma']:8.1%}  {TAGS[name].err_unit}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
