"""Retrieval quality of the latent space, measured against baselines: ``harps-retrieval``.

::

    harps-retrieval --latents latents_M.fits --analysis analysis/ --index index.csv \\
        --labels labels.csv --out retrieval_metrics.csv [--cache CACHE] [--checkpoint CKPT]

What "spectra like this one" returns, for three representations of every
encoded spectrum of the index (``pubdid,path,object``: the archive):

``latent``
    the informative dimensions of ``harps-analyse`` (``DIR/summary.json``), in
    that order, Euclidean: what the service's ``knn`` column and
    ``gavo_latentdist`` compare;
``pca``
    a PCA of the normalised flux with as many components (scikit-learn),
    fitted on the spectra that are not queries of the held-out set;
``flux``
    Euclidean distance on the normalised flux itself: the plain baseline.

The flux is the model's input (:mod:`ml.preprocess`, masked pixels 0): read
from the training cache (``--cache``) where it holds a spectrum, else
preprocessed again from the index's path with the recipe of ``--checkpoint``
(or the cache's, or the grid in the latents header).

Metrics (one CSV row each: ``model_id, dataset, representation, metric, k,
value, n_queries``):

``precision`` (k = 1, 5, 10)
    same-object retrieval: the fraction of a query's k nearest neighbours
    among the whole archive (its own row excluded) that are the same star;
    queries are spectra whose star has at least two spectra.  The star is the
    label catalogue's ``star_id`` for matched (synthetic) spectra and the
    target name otherwise.  Dataset ``synthetic: held-out stars`` (stars of
    ``--checkpoint``'s validation split, when it names at least
    :data:`MIN_HELDOUT_STARS` with labels) or ``synthetic: all stars``; and
    ``real: NAME`` for every unlabelled target with at least two spectra
    (alpha Cen B, ``HD128621``, in the demo).  Representation ``ideal`` gives
    the best any representation can reach: a star with n spectra has at
    most n - 1 others, so precision at 10 is below 1 when n < 11.
``purity``, ``completeness`` (k = 10)
    in label space, on labelled spectra, among the labelled spectra of
    *other* stars (repeated observations of the query's star are left out:
    they would make both trivially high): purity is the fraction of the 10
    nearest within :data:`TOLERANCE` of the query (|dTeff| <= 100 K,
    |dlogg| <= 0.2, |d[M/H]| <= 0.1, all three); completeness is the
    fraction of all such spectra that are among the 10 nearest (queries
    with none are left out of it).

Neighbour searches are scikit-learn's ``NearestNeighbors`` (exact).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harps_data import records
from harps_data.records import AnalysisSummary
from ml import data
from ml.tagger import neighbours
from ml.tags import TAGS, LatentRows, TagError, read_latents

K_VALUES = (1, 5, 10)
LABEL_K = 10
#: Label-space tolerances of purity and completeness (the CHESS-style test).
TOLERANCE = {"teff": 100.0, "logg": 0.2, "mh": 0.1}
#: Fewer labelled held-out stars than this: queries are all stars.
MIN_HELDOUT_STARS = 10
COLUMNS = ("model_id", "dataset", "representation", "metric", "k", "value", "n_queries")


class RetrievalError(ValueError):
    """A bad option or input, naming it."""


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

@dataclass
class Archive:
    """The encoded spectra of the index, with what relevance is judged by.

    All arrays have one entry per spectrum, ``(N,)`` or ``(N, 3)``.
    """

    ids: list[str]
    paths: list[str]
    z: np.ndarray  # (N, D) latent means
    group: np.ndarray  # object: "star:<star_id>" (labelled) or "object:<name>"
    star: np.ndarray  # object: star_id of labelled spectra, "" otherwise
    labels: np.ndarray  # (N, 3) Teff, logg, [M/H] in TOLERANCE order, NaN if unlabelled
    query: np.ndarray  # bool: synthetic queries (held-out stars, or all labelled)
    dataset: str  # "synthetic: held-out stars" or "synthetic: all stars"


def normalise_object(name: str) -> str:
    """Target name for comparison: upper case, no blanks (``HD 128621`` = ``hd128621``)."""
    return "".join(name.split()).upper()


def read_index(path: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """``pubdid -> (path, object)`` from the index CSV."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"pubdid", "path", "object"} - set(reader.fieldnames or [])
            if missing:
                raise RetrievalError(f"--index {path}: needs columns pubdid, path, object; "
                                     f"lacks {', '.join(sorted(missing))}")
            return {r["pubdid"].strip(): (r["path"].strip(), r["object"] or "") for r in reader}
    except OSError as ex:
        raise RetrievalError(f"--index {path}: {ex.strerror}") from None


def heldout_stars(checkpoint_path: str | None) -> set[str]:
    """Star ids of the checkpoint's validation split (empty without a checkpoint)."""
    if not checkpoint_path:
        return set()
    from ml import checkpoint
    try:
        return set(map(str, checkpoint.load(checkpoint_path)["data"]["val_stars"]))
    except (checkpoint.CheckpointError, KeyError, OSError) as ex:
        raise RetrievalError(f"--checkpoint {checkpoint_path}: no held-out stars ({ex})") from None


def load_archive(lat: LatentRows, index: dict[str, tuple[str, str]], labels: str,
                 heldout: set[str]) -> Archive:
    """Join the encoded latents rows to the index and the label catalogue."""
    keep = [i for i in np.flatnonzero(lat.encoded) if lat.ids[i] in index]
    if not keep:
        raise RetrievalError("--index: no encoded latents row is in the index (pubdid)")
    try:
        table = data.read_label_table(labels, {n: TAGS[n].columns for n in TOLERANCE})
    except data.DataError as ex:
        raise RetrievalError(f"--labels {ex}") from None
    if table.names != tuple(TOLERANCE):
        raise RetrievalError(f"--labels {labels}: needs Teff, logg and [M/H] columns "
                             f"({', '.join(c for n in TOLERANCE for c in TAGS[n].columns)})")
    ids = [lat.ids[i] for i in keep]
    rows = table.match(ids)
    star = np.array([table.stars[r] if r >= 0 else "" for r in rows], dtype=object)
    group = np.array([f"star:{s}" if s else "object:" + normalise_object(index[i][1])
                      for s, i in zip(star, ids, strict=True)], dtype=object)
    values = np.where(rows[:, None] >= 0, table.values[np.maximum(rows, 0)], np.nan)
    labelled = (rows >= 0) & np.isfinite(values).all(axis=1)
    held = labelled & np.array([s in heldout for s in star])
    n_held = len(set(star[held]))
    use_held = n_held >= MIN_HELDOUT_STARS
    return Archive(ids, [index[i][0] for i in ids], lat.z[keep], group, star, values,
                   held if use_held else labelled,
                   "synthetic: held-out stars" if use_held else "synthetic: all stars")


def informative_dims(analysis_dir: str | os.PathLike, model_id: str) -> list[int]:
    """The informative latent dimensions of ``DIR/summary.json``, most informative first."""
    path = Path(analysis_dir) / "summary.json"
    try:
        summary = records.read(AnalysisSummary, path)
    except (OSError, ValueError) as ex:
        raise RetrievalError(f"--analysis {path}: not a harps-analyse summary ({ex})") from None
    if summary.model_id != model_id:
        raise RetrievalError(f"--analysis {path}: analyses model {summary.model_id}, the "
                             f"latents are of {model_id}")
    if not summary.informative:
        raise RetrievalError(f"--analysis {path}: no informative dimension")
    return [d.dim for d in summary.informative]


# ---------------------------------------------------------------------------
# Flux
# ---------------------------------------------------------------------------

def recipe_for(lat: LatentRows, *, cache: data.CacheInfo | None, checkpoint_path: str | None):
    """The preprocessing recipe of the model: checkpoint, else cache, else latents header."""
    from ml.preprocess import Grid, Recipe
    if checkpoint_path:
        from ml import checkpoint
        recipe = Recipe.from_description(checkpoint.load(checkpoint_path)["recipe"])
    elif cache is not None:
        recipe = Recipe.from_description(cache.recipe)
    else:
        pad = int(lat.header.get("GRPAD", 0))
        recipe = Recipe(Grid(float(lat.header.get("GRSTEP", 0.01)), pad & -pad or 1),
                        str(lat.header.get("FRAME", "barycentric")))
    if recipe.grid.npix != lat.header.get("GRNPIX", recipe.grid.npix):
        raise RetrievalError(f"the preprocessing recipe's grid ({recipe.grid.npix} samples of "
                             f"{recipe.grid.step} A) is not the model's "
                             f"({lat.header.get('GRNPIX')} samples)")
    return recipe


def flux_matrix(archive: Archive, recipe, cache: data.CacheInfo | None, *,
                progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Normalised flux of every spectrum on the model grid, masked pixels 0.

    Returns
    -------
    flux : numpy.ndarray
        ``(N, npix)`` float32.
    ok : numpy.ndarray
        ``(N,)`` bool, False where the spectrum could not be preprocessed.
    """
    from tqdm import tqdm

    from ml.preprocess import preprocess_file
    npix = recipe.grid.npix
    out, ok = np.zeros((len(archive.ids), npix), np.float32), np.ones(len(archive.ids), bool)
    row_of, fx, mk = {}, None, None
    if cache is not None:
        row_of = {data.file_key(f): i for i, f in enumerate(cache.files) if cache.flags[i] == 0}
        fx = np.load(cache.directory / "flux.npy", mmap_mode="r")
        mk = np.load(cache.directory / "mask.npy", mmap_mode="r")
    for n, did in enumerate(tqdm(archive.ids, desc="flux", unit="spec", disable=not progress)):
        r = row_of.get(data.file_key(did))
        if r is not None:
            out[n] = np.where(mk[r, :npix], fx[r, :npix], 0)
            continue
        p = preprocess_file(archive.paths[n], recipe)
        ok[n] = p.flags == 0
        out[n] = p.flux[:npix]
    return out, ok


def representations(archive: Archive, dims: list[int], flux: np.ndarray | None, *,
                    seed: int) -> dict[str, np.ndarray]:
    """``latent`` (informative dims), ``pca`` (as many components) and ``flux``: (N, .) each."""
    reps = {"latent": archive.z[:, dims]}
    if flux is not None:
        from sklearn.decomposition import PCA
        fit_rows = ~archive.query if archive.dataset.endswith("held-out stars") else \
            np.ones(len(flux), bool)
        pca = PCA(n_components=min(len(dims), int(fit_rows.sum()) - 1),
                  svd_solver="randomized", random_state=seed).fit(flux[fit_rows])
        reps["pca"] = pca.transform(flux)
        reps["flux"] = flux
    return reps


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

def nearest(x: np.ndarray, queries: np.ndarray, pool: np.ndarray, k: int,
            exclude: np.ndarray) -> np.ndarray:
    """Global indices of the k nearest pool rows of each query, excluding its own kind.

    Parameters
    ----------
    x : numpy.ndarray
        (N, F) representation.
    queries, pool : numpy.ndarray
        Global row indices.
    k : int
    exclude : numpy.ndarray
        (N,) object: a pool row with the query's value is skipped (the row
        index itself to skip only the query's own row).

    Returns
    -------
    numpy.ndarray
        (len(queries), k) int64, nearest first.
    """
    from sklearn.neighbors import NearestNeighbors
    nn = NearestNeighbors(algorithm="brute").fit(x[pool])
    per = max(Counter(exclude[pool].tolist()).values())
    if len(pool) - per < k:
        raise RetrievalError(f"too few spectra to rank {k} neighbours ({len(pool)}, of which "
                             f"up to {per} excluded per query)")
    _, idx = neighbours(nn, exclude[pool], x[queries], exclude[queries], k, per)
    return pool[idx]


def same_object_precision(x: np.ndarray, group: np.ndarray, queries: np.ndarray,
                          ks: Sequence[int] = K_VALUES) -> dict[int, float]:
    """Mean fraction of the k nearest (whole archive, own row out) in the query's group."""
    rows = np.arange(len(x))
    nb = nearest(x, queries, rows, max(ks), rows.astype(object))
    hits = group[nb] == group[queries][:, None]
    return {k: float(hits[:, :k].mean()) for k in ks}


def precision_ceiling(group: np.ndarray, queries: np.ndarray,
                      ks: Sequence[int] = K_VALUES) -> dict[int, float]:
    """The best precision at k any representation can reach: min(k, n - 1) / k, averaged."""
    counts = Counter(group.tolist())
    n_other = np.array([counts[g] - 1 for g in group[queries]])
    return {k: float(np.mean(np.minimum(k, n_other) / k)) for k in ks}


def within(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairs within :data:`TOLERANCE`: a (n, 3), b (n, m, 3) -> (n, m) bool."""
    tol = np.array(list(TOLERANCE.values()))
    return (np.abs(b - a[:, None, :]) <= tol).all(axis=-1)


def label_purity_completeness(x: np.ndarray, labels: np.ndarray, star: np.ndarray,
                              queries: np.ndarray, pool: np.ndarray,
                              k: int = LABEL_K) -> tuple[float, int, float, int]:
    """Purity and completeness of the k nearest pool spectra of other stars.

    Returns
    -------
    purity, n_purity, completeness, n_completeness
        Means over the queries (completeness over those with at least one
        spectrum within the tolerances) and the numbers of queries.
    """
    nb = nearest(x, queries, pool, k, star)
    good = within(labels[queries], labels[nb])
    relevant = np.zeros(len(queries), int)
    for s in range(0, len(queries), 512):
        q = queries[s:s + 512]
        ok = within(labels[q], np.broadcast_to(labels[pool], (len(q), len(pool), 3)))
        relevant[s:s + 512] = (ok & (star[pool][None, :] != star[q][:, None])).sum(axis=1)
    has = relevant > 0
    comp = float(np.mean(good[has].sum(axis=1) / relevant[has])) if has.any() else float("nan")
    return float(good.mean()), len(queries), comp, int(has.sum())


def real_groups(archive: Archive) -> dict[str, np.ndarray]:
    """Unlabelled targets with at least two spectra: name -> their rows."""
    unl = np.flatnonzero(archive.star == "")
    counts = Counter(archive.group[unl].tolist())
    return {g.removeprefix("object:"): unl[archive.group[unl] == g]
            for g in sorted(counts) if counts[g] >= 2}


def measure(archive: Archive, reps: dict[str, np.ndarray], model_id: str) -> list[dict]:
    """Every metric of every representation (the module docstring), as CSV rows."""
    out = []

    def add(ds, rep, metric, k, value, n):
        out.append(dict(zip(COLUMNS, (model_id, ds, rep, metric, k, value, n), strict=True)))

    counts = Counter(archive.group.tolist())
    multi = np.array([counts[g] >= 2 for g in archive.group])
    sets = [(archive.dataset, np.flatnonzero(archive.query & multi))]
    sets += [(f"real: {name}", rows) for name, rows in real_groups(archive).items()]
    labelled = np.flatnonzero(np.isfinite(archive.labels).all(axis=1))
    for ds, q in sets:
        if len(q):
            for k, v in precision_ceiling(archive.group, q).items():
                add(ds, "ideal", "precision", k, v, len(q))
    for rep, x in reps.items():
        for ds, q in sets:
            if len(q):
                for k, v in same_object_precision(x, archive.group, q).items():
                    add(ds, rep, "precision", k, v, len(q))
        q = np.flatnonzero(archive.query)
        if len(q) and len(set(archive.star[labelled])) > 1:
            pur, n_p, comp, n_c = label_purity_completeness(x, archive.labels, archive.star, q,
                                                            labelled)
            add(archive.dataset, rep, "purity", LABEL_K, pur, n_p)
            add(archive.dataset, rep, "completeness", LABEL_K, comp, n_c)
    return out


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def run(latents: Sequence[str], analysis_dir: str, index_path: str, labels: str,
        out: str | os.PathLike, *, cache_dir: str | None = None,
        checkpoint_path: str | None = None, seed: int = 1, progress: bool = True) -> list[dict]:
    """Measure everything and write the CSV ``out`` atomically; return its rows."""
    lat = read_latents(latents)
    dims = informative_dims(analysis_dir, lat.model_id)
    archive = load_archive(lat, read_index(index_path), labels, heldout_stars(checkpoint_path))
    cache = None
    if cache_dir:
        try:
            cache = data.open_cache(cache_dir)
        except data.DataError as ex:
            raise RetrievalError(f"--cache {ex}") from None
    recipe = recipe_for(lat, cache=cache, checkpoint_path=checkpoint_path)
    flux, ok = flux_matrix(archive, recipe, cache, progress=progress)
    if not ok.all():
        print(f"harps-retrieval: {int((~ok).sum())} spectra could not be preprocessed; "
              "left out", file=sys.stderr)
        archive = subset(archive, ok)
        flux = flux[ok]
    rows = measure(archive, representations(archive, dims, flux, seed=seed), lat.model_id)
    tmp = Path(out).with_name(Path(out).name + f".part{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows({**r, "value": f"{r['value']:.6g}"} for r in rows)
    os.replace(tmp, out)
    return rows


def subset(a: Archive, keep: np.ndarray) -> Archive:
    """The spectra of ``a`` where ``keep`` (N,) bool holds."""
    idx = np.flatnonzero(keep)
    return Archive([a.ids[i] for i in idx], [a.paths[i] for i in idx], a.z[idx], a.group[idx],
                   a.star[idx], a.labels[idx], a.query[idx], a.dataset)


def _parser() -> argparse.ArgumentParser:
    from ml.tags import _Parser
    p = _Parser(prog="harps-retrieval", description="Retrieval quality of the latent space "
                "against PCA and plain flux: same-star precision, label-space purity and "
                "completeness.")
    p.add_argument("--latents", nargs="+", required=True, help="latents artefacts (one model)")
    p.add_argument("--analysis", required=True, help="harps-analyse output directory")
    p.add_argument("--index", required=True, help="CSV pubdid,path,object of the archive")
    p.add_argument("--labels", required=True, help="label catalogue CSV (file, star_id, Teff, "
                   "logg, [M/H] columns)")
    p.add_argument("--out", required=True, help="metrics CSV to write")
    p.add_argument("--cache", help="preprocessing cache of the model's training (flux source)")
    p.add_argument("--checkpoint", help="the model's checkpoint: its recipe and held-out stars")
    p.add_argument("--seed", type=int, default=1, help="PCA seed (%(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``harps-retrieval``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        rows = run(args.latents, args.analysis, args.index, args.labels, args.out,
                   cache_dir=args.cache, checkpoint_path=args.checkpoint, seed=args.seed,
                   progress=not args.quiet)
    except (RetrievalError, TagError, data.DataError, OSError) as ex:
        print(f"harps-retrieval: error: {ex}", file=sys.stderr)
        return 2
    print(format_table(rows))
    return 0


def format_table(rows: list[dict]) -> str:
    """The metrics as text: a line per (dataset, metric, k), a column per representation."""
    reps = list(dict.fromkeys(r["representation"] for r in rows))
    keys = list(dict.fromkeys((r["dataset"], r["metric"], r["k"]) for r in rows))
    val = {(r["dataset"], r["metric"], r["k"], r["representation"]): r for r in rows}
    lines = [f"{'dataset':28s} {'metric':13s} {'k':>3s} " + " ".join(f"{r:>8s}" for r in reps)
             + "  queries"]
    for ds, m, k in keys:
        cells = " ".join(f"{val[(ds, m, k, r)]['value']:8.3f}" if (ds, m, k, r) in val
                         else f"{'':8s}" for r in reps)
        n = next(val[(ds, m, k, r)]["n_queries"] for r in reps if (ds, m, k, r) in val)
        lines.append(f"{ds:28s} {m:13s} {k:3d} {cells}  {n}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
