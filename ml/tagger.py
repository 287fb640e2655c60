"""The tag estimator of ``harps-tags``: per-label rules on the latents and the domain flag.

:class:`Tagger` holds the training latents, labels and stars, one fitted
:class:`Head` per label and the out-of-domain thresholds.  Every number a
training spectrum gets is made without its own star (repeated observations
share all stellar labels), so training spectra are tagged as honestly as new
ones and cross-validation and calibration use the same rule.

Two rules per label, chosen by cross-validation on the training stars
(``method="auto"``, smallest mean absolute error; ``"knn"`` or ``"hgb"``
forces one):

``knn``
    distance-weighted k-nearest-neighbour label transfer in the full latent
    space (mu, Euclidean): scikit-learn's ``NearestNeighbors`` and
    ``KNeighborsRegressor``'s ``weights="distance"``, applied to the same
    neighbours so that the own star can be left out; k from :data:`K_GRID`
    by leave-one-star-out CV; spread: the neighbours' weighted standard
    deviation.
``hgb``
    scikit-learn's ``HistGradientBoostingRegressor`` on mu: absolute-error
    loss for the value and quantile losses at 15.87 % and 84.13 % for the
    spread (half their distance); :data:`N_FOLDS` folds by star give the
    out-of-fold predictions of the training stars (kept: a training spectrum
    is tagged by the fold model that did not see its star) and the CV error.

Either way sigma = c * sqrt(spread**2 + f**2): f a floor (a tenth of the
median spread), c chosen so that 68.27 % of the out-of-star errors on the
training stars fall within 1 sigma.  The out-of-domain statistics are in
:meth:`Tagger.domain`.  Files: :meth:`Tagger.save` (npz with a JSON ``meta``,
plus ``tagger.joblib`` with the boosted models when a label uses them,
checked by SHA-256 before it is loaded).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

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
METHODS = ("auto", "knn", "hgb")
#: Folds (by star) of the boosted rule's cross-validation and cross-fitting.
N_FOLDS = 5
#: Boosting settings (scikit-learn's defaults but a slower rate and more trees).
HGB_PARAMS = {"max_iter": 300, "learning_rate": 0.05, "min_samples_leaf": 20,
              "early_stopping": False}
QUANTILES = (0.5 - COVERAGE / 2, 0.5 + COVERAGE / 2)
FORMAT, FORMAT_VERSION = "harps-vo-tagger", 1
NO_STAR = "\0"  # query star of a spectrum outside the training set: excludes nothing
CHUNK = 2048  # query rows per neighbour search


class TagError(ValueError):
    """A bad option or input, naming it."""


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


def calibrate(mean: np.ndarray, spread: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Floor f and scale c of sigma = c * sqrt(spread**2 + f**2) from out-of-star predictions."""
    floor = max(0.1 * float(np.median(spread)), 1e-6 * float(np.std(truth)) + 1e-12)
    scale = float(np.quantile(np.abs(mean - truth) / np.hypot(spread, floor), COVERAGE))
    return floor, max(scale, 1e-6)


def boosted(loss: str, seed: int, quantile: float | None = None):
    """An unfitted ``HistGradientBoostingRegressor`` with :data:`HGB_PARAMS`."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    extra = {} if quantile is None else {"quantile": quantile}
    return HistGradientBoostingRegressor(loss=loss, random_state=seed, **HGB_PARAMS, **extra)


def fit_boosted(z: np.ndarray, y: np.ndarray, seed: int) -> tuple:
    """(value, low quantile, high quantile) models fitted on ``z`` (n, D), ``y`` (n,)."""
    return (boosted("absolute_error", seed).fit(z, y),
            *(boosted("quantile", seed, q).fit(z, y) for q in QUANTILES))


def predict_boosted(models: tuple, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value and spread (half the central 68 % interval) of :func:`fit_boosted`'s models."""
    value, lo, hi = (m.predict(z) for m in models)
    return value, np.abs(hi - lo) / 2


@dataclass(frozen=True)
class Head:
    """The fitted rule of one label."""

    name: str
    method: str  # "knn" or "hgb"
    k: int  # neighbours of the knn rule
    scale: float  # calibration factor c
    floor: float  # spread floor f, label units
    cv_mae: float  # out-of-star MAE on the training stars of the chosen rule
    cv_mae_knn: float  # of the knn rule (leave-one-star-out)
    cv_mae_hgb: float  # of the hgb rule (N_FOLDS folds by star); NaN when not tried


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
        Label names (keys of :data:`ml.tags.TAGS`), the columns of ``y``.
    seed : int
        Seeds the folds and the boosted models.
    """

    def __init__(self, z: np.ndarray, y: np.ndarray, stars: np.ndarray, keys: np.ndarray,
                 recon_err: np.ndarray, names: Sequence[str], seed: int = 1) -> None:
        from sklearn.neighbors import NearestNeighbors
        self.z, self.y, self.recon_err, self.seed = z, y, recon_err, seed
        self.stars = np.asarray(stars, dtype=object)
        self.keys, self.names = np.asarray(keys, dtype=object), tuple(names)
        self.heads: dict[str, Head] = {}
        self.boosted: dict[str, dict] = {}  # label -> {"fold_of", "folds", "final"}
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

    def raw_knn(self, name: str, z: np.ndarray, qstar: np.ndarray,
                k: int) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated (value, spread) of label ``name`` from ``k`` neighbours, (n,) each."""
        nn, rows, per = self._nn[name]
        dist, idx = neighbours(nn, self.stars[rows], z, qstar, k, per)
        return weighted_stats(dist, self.y[rows][idx, self.names.index(name)])

    def raw_hgb(self, name: str, z: np.ndarray,
                qstar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated (value, spread) of the boosted rule (training stars: their fold model)."""
        b = self.boosted[name]
        fold = np.array([b["fold_of"].get(s, -1) for s in qstar])
        value, spread = np.empty(len(z)), np.empty(len(z))
        for f, models in [(-1, b["final"]), *enumerate(b["folds"])]:
            sel = fold == f
            if sel.any():
                value[sel], spread[sel] = predict_boosted(models, z[sel])
        return value, spread

    def raw(self, head: Head, z: np.ndarray, qstar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated (value, spread) of ``head``'s rule."""
        if head.method == "hgb":
            return self.raw_hgb(head.name, z, qstar)
        return self.raw_knn(head.name, z, qstar, head.k)

    def domain(self, z: np.ndarray, recon_err: np.ndarray,
               qstar: np.ndarray) -> dict[str, np.ndarray]:
        """The three out-of-domain statistics of spectra, (n,) each (:data:`OOD_CRITERIA`).

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
                value, spread = self.raw(h, z[sl], qstar[sl])
                out[name][sl] = value
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

    def _cv_knn(self, name: str) -> tuple[int, float, np.ndarray, np.ndarray]:
        """k by leave-one-star-out CV: (k, MAE, values, spreads) of the label's training rows."""
        _, rows, per = self._nn[name]
        z, truth, qstar = self.z[rows], self.y[rows, self.names.index(name)], self.stars[rows]
        ks = [k for k in K_GRID if k <= len(rows) - per]
        if not ks:
            raise TagError(f"label {name}: too few training stars for any neighbour")
        maes = [float(np.mean(np.abs(self.raw_knn(name, z, qstar, k)[0] - truth))) for k in ks]
        k = ks[int(np.argmin(maes))]
        return k, min(maes), *self.raw_knn(name, z, qstar, k)

    def _cv_hgb(self, name: str) -> tuple[float, np.ndarray, np.ndarray, dict]:
        """Boosted rule by star folds: (MAE, out-of-fold values, spreads, the fold models)."""
        _, rows, _ = self._nn[name]
        z, truth, stars = self.z[rows], self.y[rows, self.names.index(name)], self.stars[rows]
        order = sorted(set(stars.tolist()))
        np.random.default_rng(self.seed).shuffle(order)
        fold_of = {s: i % N_FOLDS for i, s in enumerate(order)}
        fold = np.array([fold_of[s] for s in stars])
        value, spread, folds = np.empty(len(rows)), np.empty(len(rows)), []
        for f in range(N_FOLDS):
            models = fit_boosted(z[fold != f], truth[fold != f], self.seed)
            value[fold == f], spread[fold == f] = predict_boosted(models, z[fold == f])
            folds.append(models)
        return (float(np.mean(np.abs(value - truth))), value, spread,
                {"fold_of": fold_of, "folds": folds})

    def fit_head(self, name: str, method: str = "auto") -> Head:
        """Cross-validate the rules of label ``name``, keep the better one, calibrate it."""
        _, rows, _ = self._nn[name]
        truth = self.y[rows, self.names.index(name)]
        k, mae_knn, value, spread = self._cv_knn(name)
        mae_hgb, n_stars = math.nan, len(set(self.stars[rows].tolist()))
        if method in ("auto", "hgb") and n_stars >= 2 * N_FOLDS:
            mae_hgb, v_hgb, s_hgb, fitted = self._cv_hgb(name)
            if method == "hgb" or mae_hgb < mae_knn:
                value, spread = v_hgb, s_hgb
                fitted["final"] = fit_boosted(self.z[rows], truth, self.seed)
                self.boosted[name] = fitted
        chosen = "hgb" if name in self.boosted else "knn"
        floor, scale = calibrate(value, spread, truth)
        return Head(name, chosen, k, scale, floor, mae_hgb if chosen == "hgb" else mae_knn,
                    mae_knn, mae_hgb)

    def fit(self, method: str = "auto", progress: bool = False) -> Tagger:
        """Fit every head and the out-of-domain thresholds on the training spectra."""
        from tqdm import tqdm
        if method not in METHODS:
            raise TagError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
        self.boosted = {}
        self.heads = {n: self.fit_head(n, method) for n in
                      tqdm([n for n in self.names if n in self._nn], desc="fit", unit="label",
                           disable=not progress)}
        if self.density_k < 1:
            raise TagError("too few training stars to measure latent density")
        own = self.domain(self.z, self.recon_err, self.stars)
        self.thresholds = {c: float(np.percentile(v, OOD_PERCENTILE)) for c, v in own.items()}
        return self

    # -- files ---------------------------------------------------------------

    def describe(self) -> dict:
        """Methods, hyperparameters, calibration and thresholds (JSON-ready)."""
        return {
            "method": {
                "choice": "per label, smaller out-of-star CV MAE on the training stars",
                "knn": "inverse-distance weighted k nearest neighbours (sklearn NearestNeighbors, "
                       "KNeighborsRegressor weights='distance') in mu, all dimensions, "
                       f"Euclidean; own star left out; k from {list(K_GRID)} by "
                       "leave-one-star-out CV; spread: weighted std of the neighbours",
                "hgb": f"sklearn HistGradientBoostingRegressor {HGB_PARAMS} on mu: "
                       f"absolute_error for the value, quantile {QUANTILES[0]:.4f} and "
                       f"{QUANTILES[1]:.4f} for the spread; {N_FOLDS} folds by star (CV, and "
                       "training spectra tagged by the model without their star)",
                "sigma": "scale * sqrt(spread**2 + floor**2); scale: the "
                         f"{COVERAGE} quantile of |error| / sqrt(spread**2 + floor**2) over "
                         "the training stars' out-of-star predictions"},
            "heads": {n: asdict(h) for n, h in self.heads.items()},
            "ood": {"density_k": self.density_k, "percentile": OOD_PERCENTILE,
                    "criteria": OOD_CRITERIA, "thresholds": self.thresholds,
                    "score": "the largest statistic / its threshold; ood when > 1"}}

    def save(self, path: str | os.PathLike) -> str:
        """Write ``path`` (npz) and, with boosted heads, ``tagger.joblib`` next to it.

        Both are written atomically, the joblib file first (its SHA-256 goes
        into ``meta``).  Returns the SHA-256 of the npz file.
        """
        import joblib
        path = Path(path)
        self.meta.pop("boosted", None)
        if self.boosted:
            buf = io.BytesIO()
            joblib.dump(self.boosted, buf)
            jpath = path.with_suffix(".joblib")
            _write_atomic(jpath, buf.getvalue())
            self.meta["boosted"] = {"file": jpath.name,
                                    "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}
        buf = io.BytesIO()
        np.savez(buf, z=self.z.astype(np.float32), y=self.y, recon_err=self.recon_err,
                 stars=self.stars.astype(str), keys=self.keys.astype(str),
                 names=np.array(self.names), meta=np.array(json.dumps(self.meta, indent=1)))
        _write_atomic(path, buf.getvalue())
        return hashlib.sha256(buf.getvalue()).hexdigest()

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tagger:
        """Read a tagger written by :meth:`save` (the joblib file only if its SHA-256 matches)."""
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
                arrays["recon_err"], [str(n) for n in arrays["names"]], meta.get("seed", 1))
        t.heads = {n: Head(**h) for n, h in meta["heads"].items()}
        t.thresholds = meta["ood"]["thresholds"]
        if "boosted" in meta:
            t.boosted = _load_boosted(path.with_name(meta["boosted"]["file"]),
                                      meta["boosted"]["sha256"])
        t.meta, t.path, t.sha256 = meta, path, hashlib.sha256(path.read_bytes()).hexdigest()
        return t

    @property
    def tagger_id(self) -> str:
        """Short id: the rules used (``knn``, ``hgb``, ``knn+hgb``), ``-``, 12 hex of SHA-256."""
        kinds = "+".join(sorted({h.method for h in self.heads.values()})) or "none"
        return f"{kinds}-{self.sha256[:12]}"


def _write_atomic(path: Path, blob: bytes) -> None:
    tmp = path.with_name(path.name + f".part{os.getpid()}")
    tmp.write_bytes(blob)
    os.replace(tmp, path)


def _load_boosted(path: Path, sha256: str) -> dict:
    """The boosted models, after checking the file is the one the tagger names."""
    import joblib
    try:
        blob = path.read_bytes()
    except OSError as ex:
        raise TagError(f"--tagger {path}: the tagger's boosted models are missing "
                       f"({ex.strerror})") from None
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise TagError(f"--tagger {path}: SHA-256 differs from the one tagger.npz records; "
                       "refit the tagger")
    return joblib.load(io.BytesIO(blob))
