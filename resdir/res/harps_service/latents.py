"""Publish the learned latent layer into DaCHS: ``harps-latents``.

::

    harps-latents build --labels demo/labels.csv --out var/model --preset coarse --epochs 30
    harps-latents publish --checkpoint best.ckpt --latents L.fits --analysis DIR --train-data TEXT
    harps-latents update        # after an ingest: encode new public spectra, refresh neighbours
    harps-latents tags --labels demo/labels.csv --out var/tags   # tags for the current model
    harps-latents separation --checkpoint ml/checkpoints/separation.ckpt  # telluric products

``build`` trains (``harps-train``), encodes (``harps-encode``), analyses
(``harps-analyse``), fits physical-parameter tags (``harps-tags``), measures
retrieval quality (``harps-retrieval``) and publishes, all on the spectra of the service whose
data are public (proprietary spectra enter the latent layer, and the
training set of later models, once they are released).  ``publish`` puts a
model into the resource directory (``models/<model id>/``: checkpoint,
latents artefacts, analysis, ``model.json``, model card) and makes it
current; the RD builds one column ``z1, z2, ...`` per informative dimension from
``model.json``.  Neighbours (10 per spectrum) are computed here with a
KD-tree and imported like any other artefact.

The ML steps run as subprocesses of the project venv: the service package
never imports torch.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from harps_data import records
from harps_data.records import AnalysisSummary, CheckpointInfo, ModelDescription
from harps_service import modelcard, separation
from harps_service.mlsteps import (
    BIN,
    LatentsError,
    dachs,
    did_prefix,
    own,
    public_files,
    query,
    run,
)
from harps_service.tagrows import TAGGER_DIR
from harps_site import INPUTS_DIR, RD_ID, current_model_dir, resdir_of, schema_of

N_NEIGHBOURS = 10


def encode(ckpt: str, files: list[str], out_dir: Path) -> Path:
    """``harps-encode`` the files; returns the artefact."""
    out_dir.mkdir(parents=True, exist_ok=True)
    listing = out_dir / "inputs.txt"
    listing.write_text("\n".join(files) + "\n")
    run([str(BIN / "harps-encode"), ckpt, f"@{listing}", "--out", str(out_dir),
         "--inputs-root", INPUTS_DIR, "--did-prefix", did_prefix(), "--quiet"], "encoding")
    (artefact,) = out_dir.glob("latents_*.fits")
    return artefact


# ---------------------------------------------------------------------------
# Neighbours
# ---------------------------------------------------------------------------

def read_knn(artefacts: list[Path], dims: list[int]) -> tuple[list[str], np.ndarray]:
    """DIDs and informative-dimension vectors (float32, as stored) of encoded rows."""
    from astropy.io import fits
    ids, vecs = [], []
    for a in artefacts:
        with fits.open(a) as hdul:
            t = hdul["LATENTS"].data
            ok = t["flags"] == 0
            ids += [s.strip() for s in t["pubdid"][ok]]
            vecs.append(np.asarray(t["latent"][ok], np.float32)[:, dims])
    return ids, (np.vstack(vecs) if vecs else np.zeros((0, len(dims)), np.float32))


def nearest(vectors: np.ndarray, k: int = N_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """k nearest other rows of each row: (indices (N, k), distances (N, k)).

    Distances are Euclidean on the float32 values as PostgreSQL's cube sees
    them (promoted to float64), so they equal gavo_latentdist's.
    """
    from sklearn.neighbors import NearestNeighbors
    x = vectors.astype(np.float64)
    k = min(k, len(x) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(x)
    _, idx = nn.kneighbors(x)
    own = idx == np.arange(len(x))[:, None]
    # drop each row's own index (not just the first column: ties are possible)
    keep = ~own
    keep[own.sum(axis=1) == 0, -1] = False
    idx = idx[keep].reshape(len(x), k)
    # exact distances (the tree's are rounded differently from cube's), then
    # order by them
    dist = np.sqrt(((x[idx] - x[:, None, :]) ** 2).sum(axis=2))
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)


def write_neighbours(path: Path, ids: list[str], idx: np.ndarray, dist: np.ndarray,
                     model_id: str) -> None:
    from astropy.io import fits
    n, k = idx.shape
    width = max((len(i) for i in ids), default=1)
    cols = [
        fits.Column("ssa_pubdid", f"{width}A", array=np.repeat(np.array(ids, object), k)),
        fits.Column("neighbour_rank", "I",
                    array=np.tile(np.arange(1, k + 1, dtype=np.int16), n)),
        fits.Column("neighbour_pubdid", f"{width}A",
                    array=np.array(ids, object)[idx.ravel()] if n else []),
        fits.Column("latent_distance", "D", array=dist.ravel()),
        fits.Column("model_id", f"{len(model_id)}A", array=[model_id] * (n * k)),
    ]
    fits.BinTableHDU.from_columns(cols, name="NEIGHBOURS").writeto(path, overwrite=True)


def refresh_neighbours(rd_id: str) -> int:
    """Recompute and import the neighbour table of the current model."""
    current = current_model_dir(rd_id)
    model = records.read(ModelDescription, current / "model.json")
    ids, vecs = read_knn(sorted(current.glob("latents*.fits")),
                         [d.dim for d in model.informative])
    if len(ids) < 2:
        return 0
    idx, dist = nearest(vecs)
    write_neighbours(current / "neighbours.fits", ids, idx, dist, model.model_id)
    own(current / "neighbours.fits")
    dachs("imp", rd_id, "import_neighbours")
    return len(ids)


# ---------------------------------------------------------------------------
# Publishing
# ---------------------------------------------------------------------------

def _csv_with_model(src: Path, dest: Path, model_id: str, keep: list[str]) -> None:
    with open(src, newline="") as fi, open(dest, "w", newline="") as fo:
        w = csv.writer(fo)
        w.writerow(["model_id", *keep])
        for row in csv.DictReader(fi):
            w.writerow([model_id, *[row[c] for c in keep]])


def model_description(ckpt_path: Path, sha: str, model_id: str, summary: AnalysisSummary,
                      train_data: str) -> ModelDescription:
    """The ``model.json`` contents (read by the RD and the grammars).

    The checkpoint is described by ``python -m ml.checkpoint describe`` in the
    venv: the service package never imports torch.
    """
    info = CheckpointInfo.from_dict(json.loads(run(
        [str(BIN / "python"), "-m", "ml.checkpoint", "describe", str(ckpt_path)],
        "reading the checkpoint").stdout))
    return ModelDescription.of(
        model_id=model_id, ckpt_sha256=sha, train_data=train_data, info=info, summary=summary,
        created=datetime.datetime.utcnow().replace(microsecond=0).isoformat())


def publish(rd_id: str, ckpt: Path, artefacts: list[Path], analysis: Path,
            train_data: str, tags: Path | None = None, retrieval: Path | None = None) -> str:
    """Install a model and its latents as the current ones; returns the model id.

    ``tags`` is a ``harps-tags fit`` directory holding ``tags.fits`` (from
    ``harps-tags predict``), ``retrieval`` a ``harps-retrieval`` CSV; both
    optional (the tables stay empty without them).

    Long because it is the publication: copy every artefact, write the
    description and the card, switch ``current``, import each table.
    """
    from astropy.io import fits
    headers = [fits.getheader(a, "LATENTS") for a in artefacts]
    model_id, sha = headers[0]["MODELID"], headers[0]["CKPTSHA"]
    if any(h["MODELID"] != model_id for h in headers):
        raise LatentsError("the latents artefacts come from different models")
    summary = records.read(AnalysisSummary, analysis / "summary.json")
    if not summary.informative:
        raise LatentsError(f"model {model_id} has no informative latent dimension (see "
                           f"{analysis / 'dims.csv'}); train longer or with another KL weight")
    dest = resdir_of(rd_id) / "models" / model_id
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt, dest / "model.ckpt")
    for i, a in enumerate(artefacts):
        shutil.copyfile(a, dest / f"latents-{i:04d}.fits")
    _csv_with_model(analysis / "dims.csv", dest / "latent_dims.csv", model_id,
                    ["dim", "mad", "decoder_response", "informative"])
    _csv_with_model(analysis / "mi.csv", dest / "latent_mi.csv", model_id,
                    ["basis", "dim", "label", "mi_ksg", "mi_hist"])
    shutil.copyfile(analysis / "mi_heatmap.png", dest / "mi_heatmap.png")
    shutil.copyfile(analysis / "summary.json", dest / "analysis.json")
    if tags is not None:
        _copy_tagger(tags, dest, model_id)
    if retrieval is not None:
        shutil.copyfile(retrieval, dest / "retrieval_metrics.csv")
    model = model_description(dest / "model.ckpt", sha, model_id, summary, train_data)
    records.write(model, dest / "model.json")
    (dest / "card.html").write_text(modelcard.render(model, rd_id, dest))
    own(dest)
    current = dest.parent / "current"
    tmp = dest.parent / f".current-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(model_id)
    os.replace(tmp, current)
    # the z1.. columns follow model.json: recreate the tables, reload the RD
    dachs("imp", rd_id, "create_latents")
    dachs("imp", rd_id, "import_latents")
    refresh_neighbours(rd_id)
    for data_id in ("import_tags", "import_retrieval", "import_analysis", "import_mi",
                    "import_models"):
        dachs("imp", rd_id, data_id)
    return model_id


def _copy_tagger(tags: Path, dest: Path, model_id: str) -> None:
    """The tagger (everything of ``harps-tags fit`` but the tags) and the tags artefact."""
    from astropy.io import fits
    artefact = tags / "tags.fits"
    if fits.getheader(artefact, "TAGS")["MODELID"] != model_id:
        raise LatentsError(f"{artefact} was made for another model than {model_id}")
    (dest / TAGGER_DIR).mkdir(exist_ok=True)
    for f in tags.iterdir():
        if f.is_file() and f.name != "tags.fits":
            shutil.copyfile(f, dest / TAGGER_DIR / f.name)
    shutil.copyfile(artefact, dest / "tags-0000.fits")


def update(rd_id: str) -> int:
    """Encode public spectra that have no latents yet with the current model."""
    current = current_model_dir(rd_id)
    if not (current / "model.json").exists():
        return 0
    files = public_files(rd_id, missing_from="latents")
    if not files:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        artefact = encode(str(current / "model.ckpt"), files, Path(tmp))
        dest = current / f"latents-{datetime.datetime.utcnow():%Y%m%dT%H%M%S}.fits"
        shutil.copyfile(artefact, dest)
    own(dest)
    try:
        dachs("imp", rd_id, "import_latents")
    except LatentsError:
        dest.unlink()
        raise
    refresh_neighbours(rd_id)
    if (current / TAGGER_DIR).is_dir():
        tags = current / dest.name.replace("latents-", "tags-")
        predict_tags(current / TAGGER_DIR, [dest], tags)
        own(tags)
        dachs("imp", rd_id, "import_tags")
    return len(files)


def predict_tags(tagger: Path, artefacts: list[Path], out: Path) -> Path:
    """``harps-tags predict``: tags of the rows of latents artefacts."""
    run([str(BIN / "harps-tags"), "predict", "--tagger", str(tagger), "--latents",
         *map(str, artefacts), "--out", str(out)], "predicting tags")
    return out


def write_index(rd_id: str, path: Path) -> Path:
    """``pubdid,path,object`` of the public spectra (for ``harps-retrieval``)."""
    rows = query(f"SELECT ssa_pubdid, accref, ssa_targname FROM {schema_of(rd_id)}.data "
                 "WHERE release_date <= now() ORDER BY accref")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pubdid", "path", "object"])
        for did, accref, target in rows:
            w.writerow([did, os.path.join(INPUTS_DIR, accref), target])
    return path


def tags_and_metrics(rd_id: str, out: Path, artefacts: list[Path], analysis: Path,
                     labels: str, ckpt: Path, cache: Path | None = None) -> tuple[Path, Path]:
    """Fit the tagger on the labelled spectra, tag every spectrum, measure retrieval.

    ``analysis`` is a ``harps-analyse`` directory (its ``summary.json`` names
    the informative dimensions), ``ckpt`` the model's checkpoint (recipe,
    held-out stars); ``cache`` a training cache of the model's
    preprocessed spectra, if there is one (else the files are read again).
    """
    tags = out / "tags"
    latents = [str(a) for a in artefacts]
    run([str(BIN / "harps-tags"), "fit", "--latents", *latents, "--labels", labels,
         "--out", str(tags), "--seed", "1"], "fitting the tagger")
    predict_tags(tags, artefacts, tags / "tags.fits")
    metrics = out / "retrieval_metrics.csv"
    run([str(BIN / "harps-retrieval"), "--latents", *latents, "--analysis", str(analysis),
         "--index", str(write_index(rd_id, out / "index.csv")), "--labels", labels,
         "--checkpoint", str(ckpt), *(["--cache", str(cache)] if cache and cache.is_dir() else []),
         "--out", str(metrics), "--seed", "1"], "measuring retrieval quality")
    return tags, metrics


def retag(rd_id: str, out: Path, labels: str, cache: Path | None = None) -> str:
    """Tags and retrieval metrics for the current model, without retraining it.

    For a model published before tags existed, or after a new label
    catalogue: fits the tagger on all current latents artefacts, replaces
    the tags artefacts and both tables, and rewrites the model card.
    """
    current = current_model_dir(rd_id)
    if not (current / "model.json").exists():
        raise LatentsError("no model is published yet (harps-latents build)")
    model = records.read(ModelDescription, current / "model.json")
    out.mkdir(parents=True, exist_ok=True)
    analysis = out / "analysis"
    analysis.mkdir(exist_ok=True)
    shutil.copyfile(current / "analysis.json", analysis / "summary.json")
    tags, metrics = tags_and_metrics(rd_id, out, sorted(current.glob("latents*.fits")),
                                     analysis, labels, current / "model.ckpt", cache)
    for old in current.glob("tags*.fits"):
        old.unlink()
    _copy_tagger(tags, current.resolve(), model.model_id)
    shutil.copyfile(metrics, current / "retrieval_metrics.csv")
    (current / "card.html").write_text(modelcard.render(model, rd_id, current))
    own(current.resolve())
    for data_id in ("create_tags", "import_tags", "import_retrieval"):
        dachs("imp", rd_id, data_id)
    return model.model_id


def build(rd_id: str, out: Path, labels: str, train_args: list[str]) -> str:
    """Train, encode, analyse and publish a model on the public spectra.

    ``labels`` is the labels CSV of the synthetic archive: it splits training
    and validation by star and is what the analysis measures the latents
    against.  ``train_args`` go to ``harps-train`` unchanged.
    """
    files = public_files(rd_id)
    if len(files) < 20:
        raise LatentsError(f"only {len(files)} public spectra in {rd_id}; need at least 20")
    out.mkdir(parents=True, exist_ok=True)
    (out / "inputs.txt").write_text("\n".join(files) + "\n")
    run([str(BIN / "harps-train"), f"@{out / 'inputs.txt'}", "--out", str(out / "train"),
         "--quiet", "--labels", labels, *train_args], "training")
    ckpt = out / "train" / "best.ckpt"
    artefact = encode(str(ckpt), files, out / "latents")
    analysis = out / "analysis"
    run([str(BIN / "harps-analyse"), str(artefact), "--labels", labels, "--checkpoint",
         str(ckpt), "--cache", str(out / "train" / "cache"), "--out", str(analysis)],
        "analysis")
    n_synth = int(query(f"SELECT count(*) FROM {schema_of(rd_id)}.data WHERE synthetic = 1 "
                        "AND release_date <= now()")[0][0])
    train_data = (f"{len(files)} public spectra of {rd_id} ({n_synth} synthetic), "
                  f"file list SHA-256 in the checkpoint")
    tags, metrics = tags_and_metrics(rd_id, out, [artefact], analysis, labels, ckpt,
                                     out / "train" / "cache")
    return publish(rd_id, ckpt, [artefact], analysis, train_data, tags, metrics)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``harps-latents``; returns the exit status.

    Long because it is the command line: six subcommands, their options and dispatch.
    """
    ap = argparse.ArgumentParser(prog="harps-latents",
                                 description="Publish the learned latent layer into DaCHS.")
    ap.add_argument("--rd", default=RD_ID, help="the DaCHS resource (default %(default)s)")
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train, encode, analyse and publish a model "
                       "(further options, e.g. --preset, --epochs, go to harps-train)")
    b.add_argument("--out", required=True, help="working directory (training cache, runs)")
    b.add_argument("--labels", required=True,
                   help="labels CSV of the synthetic archive (split by star, analysis)")
    p = sub.add_parser("publish", help="publish a trained model and its latents")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--latents", nargs="+", required=True)
    p.add_argument("--analysis", required=True, help="harps-analyse output directory")
    p.add_argument("--train-data", required=True, help="one line on the training data")
    p.add_argument("--tags", help="harps-tags fit directory with tags.fits (harps-tags "
                   "predict) for these latents")
    p.add_argument("--retrieval", help="harps-retrieval metrics CSV for this model")
    t = sub.add_parser("tags", help="fit tags and measure retrieval for the current model "
                       "(no retraining)")
    t.add_argument("--out", required=True, help="working directory")
    t.add_argument("--labels", required=True, help="label catalogue CSV")
    t.add_argument("--cache", help="the model's training cache (build's OUT/train/cache), "
                   "if kept: saves preprocessing the spectra again")
    sp = sub.add_parser("separation", help="publish a stellar/telluric separation model and "
                        "separate every public spectrum")
    sp.add_argument("--checkpoint", required=True,
                    help="separation checkpoint (harps-train --preset telluric; the project's "
                    "own: ml/checkpoints/separation.ckpt)")
    sp.add_argument("--validation", help="its validation numbers (bench/telluric.py --out "
                    "DIR: DIR/telluric.json), shown on the model card")
    sub.add_parser("update", help="encode and separate public spectra that have no latents "
                   "or separation yet")
    sub.add_parser("neighbours", help="recompute the neighbour table")
    args, rest = ap.parse_known_args(argv)
    if rest and args.command != "build":
        ap.error(f"unrecognised arguments: {' '.join(rest)}")
    try:
        if args.command in ("build", "publish"):
            if args.command == "build":
                model_id = build(args.rd, Path(args.out), args.labels, rest)
            else:
                model_id = publish(args.rd, Path(args.checkpoint),
                                   [Path(a) for a in args.latents], Path(args.analysis),
                                   args.train_data,
                                   Path(args.tags) if args.tags else None,
                                   Path(args.retrieval) if args.retrieval else None)
            print(f"published {model_id}; restart DaCHS (etc/dachsctl restart) so that the "
                  "running server knows its z columns and TAP examples")
        elif args.command == "tags":
            model_id = retag(args.rd, Path(args.out), args.labels,
                             Path(args.cache) if args.cache else None)
            print(f"tags and retrieval metrics published for {model_id}")
        elif args.command == "separation":
            model_id = separation.publish(args.rd, Path(args.checkpoint),
                                          Path(args.validation) if args.validation else None)
            print(f"separation model {model_id} published; every public spectrum separated")
        elif args.command == "update":
            print(f"encoded {update(args.rd)} new spectra")
            print(f"separated {separation.update(args.rd)} new spectra")
        else:
            print(f"neighbours of {refresh_neighbours(args.rd)} spectra")
    except (LatentsError, OSError, ValueError) as ex:
        print(f"harps-latents: {ex}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
