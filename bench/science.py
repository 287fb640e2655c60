"""Science benchmark: what the learned latents know, measured on held-out labelled stars.

Run with ``.venv/bin/python bench/science.py`` (no service needed).  Steps:

1. ``harps-synth`` writes a labelled synthetic archive (``-n`` spectra of
   ``--n-stars`` stars) on the grid ``--step`` (0.5 A by default; 0.1 A is the
   ``coarse`` preset's grid, which resolves 30 km/s as 5 pixels);
2. ``harps-train`` trains a model on it (split by star, weights 1/n_star);
   an interrupted run is resumed from ``last.ckpt``, and a finished one
   continues to a larger ``--epochs`` (each call can stay short);
3. ``harps-encode`` encodes every spectrum;
4. ``harps-analyse`` measures, on the held-out stars (one spectrum per
   star), the mutual information of every latent dimension and of a PCA of
   the same size with Teff, logg, [M/H], vsini, RV, airmass, water vapour,
   S/N and BERV, and the 10-nearest-neighbour label errors;
5. ``harps-tags fit`` fits the tagger on the autoencoder's training stars
   and validates it on its held-out stars (``--checkpoint``);
6. ``harps-retrieval`` measures same-star precision and label-space purity
   and completeness for the latents, PCA and plain flux;

then prints the goals table (issue 12): best single-dimension MI >= 1.3 nats
for Teff and RV, >= 0.5 for [M/H]; 10-NN median |dTeff| <= 100 K and better
than PCA; tags on held-out stars: Teff MAE <= 100 K, logg <= 0.15 dex,
[M/H] <= 0.1 dex; same-star precision at 10 >= 0.9.

``--real-stars`` instead tags the real stars of the running demo that have
published parameters (HD 189733 in SWEET-Cat; alpha Cen B from the
literature) with the demo's published model and a tagger fitted on the demo's
synthetic labels, and prints them next to the published values.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import subprocess
import time
from pathlib import Path

import numpy as np
from common import PY, REPO, VAR, log, save

import harps_site
from harps_data import records
from harps_data.records import AnalysisSummary

BIN = Path(PY).parent
GOALS = {"Teff": 1.3, "RV": 1.3, "[M/H]": 0.5}
#: Tag goals on held-out stars: label -> largest mean absolute error.
TAG_GOALS = {"teff": 100.0, "logg": 0.15, "mh": 0.1}
PRECISION_GOAL = 0.9


def timed(cmd: list[str], what: str) -> float:
    log(what)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20_000, help="spectra (default %(default)s)")
    ap.add_argument("--n-stars", type=int, default=4_000)
    ap.add_argument("--step", type=float, default=0.5, help="archive grid, Angstrom")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--latent-dim", type=int)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--kl-max", type=float)
    ap.add_argument("--kl-ramp-steps", type=int)
    ap.add_argument("--val-fraction", type=float, help="harps-train's (default its own)")
    ap.add_argument("--threads", type=int, help="torch threads of training and encoding")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--work", default=str(VAR / "science"))
    ap.add_argument("--reuse-model", action="store_true",
                    help="skip training when the run directory has a checkpoint")
    ap.add_argument("--real-stars", action="store_true",
                    help="only the real-star table of the running demo's published model")
    return ap


def generate(args, arch: Path, times: dict) -> None:
    """Step 1, unless the archive is there."""
    if (arch / "labels.csv").exists():
        return
    times["generate_s"] = timed([
        str(BIN / "harps-synth"), "--out", str(arch), "-n", str(args.n), "--n-stars",
        str(args.n_stars), "--seed", str(args.seed), "--step", str(args.step),
        "--today", datetime.date.today().isoformat(), "--workers", "2", "--no-progress"],
        f"generating {args.n} spectra of {args.n_stars} stars on a {args.step} A grid")


def train_model(args, arch: Path, run: Path, times: dict) -> None:
    """Step 2: train, resume an interrupted run, or continue a finished one to --epochs."""
    common = [str(BIN / "harps-train"), str(arch), "--labels", str(arch / "labels.csv"),
              "--out", str(run), "--epochs", str(args.epochs), "--quiet"]
    if args.threads:
        common += ["--threads", str(args.threads)]
    train = common + ["--preset", args.preset, "--batch-size", str(args.batch_size),
                      "--seed", "1", "--workers", "1"]
    for opt in ("latent_dim", "kl_max", "kl_ramp_steps", "val_fraction"):
        if getattr(args, opt) is not None:
            train += ["--" + opt.replace("_", "-"), str(getattr(args, opt))]
    if args.reuse_model and (run / "best.ckpt").exists():
        log(f"reusing the trained model in {run}")
    elif (run / "last.ckpt").exists():  # interrupted, or to be trained longer
        times["train_s"] = timed(common + ["--resume", str(run / "last.ckpt")],
                                 f"continuing the training in {run} to {args.epochs} epochs")
    else:
        times["train_s"] = timed(train, f"training preset {args.preset}, {args.epochs} epochs")


def encode_and_analyse(args, arch: Path, run: Path, times: dict) -> list[str]:
    """Steps 3 and 4; returns the latents artefacts."""
    for stale in (run / "latents").glob("latents_*.fits"):  # an earlier model's: not mixed
        stale.unlink()
    threads = ["--threads", str(args.threads)] if args.threads else []
    times["encode_s"] = timed([str(BIN / "harps-encode"), str(run / "best.ckpt"), str(arch),
                               "--out", str(run / "latents"), "--inputs-root", str(arch),
                               "--quiet", "--workers", "1", *threads], "encoding")
    latents = [str(p) for p in sorted((run / "latents").glob("latents_*.fits"))]
    times["analyse_s"] = timed([str(BIN / "harps-analyse"), *latents, "--labels",
                                str(arch / "labels.csv"), "--checkpoint", str(run / "best.ckpt"),
                                "--cache", str(run / "cache"), "--out", str(run / "analysis")],
                               "analysing")
    return latents


def write_index(arch: Path, path: Path) -> Path:
    """``pubdid,path,object`` of the synthetic archive (pubdid = accref under the archive)."""
    with open(arch / "labels.csv", newline="") as f, open(path, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["pubdid", "path", "object"])
        for row in csv.DictReader(f):
            w.writerow([row["path"], str(arch / row["path"]), row["object"]])
    return path


def tags_and_retrieval(arch: Path, run: Path, latents: list[str], times: dict) -> tuple:
    """Steps 5 and 6; returns the tags' validation and the retrieval rows."""
    ckpt, labels = str(run / "best.ckpt"), str(arch / "labels.csv")
    times["tags_s"] = timed([str(BIN / "harps-tags"), "fit", "--latents", *latents, "--labels",
                             labels, "--out", str(run / "tags"), "--checkpoint", ckpt,
                             "--seed", "1", "--quiet"], "fitting and validating the tagger")
    times["retrieval_s"] = timed([
        str(BIN / "harps-retrieval"), "--latents", *latents, "--analysis", str(run / "analysis"),
        "--index", str(write_index(arch, run / "index.csv")), "--labels", labels, "--cache",
        str(run / "cache"), "--checkpoint", ckpt, "--out", str(run / "retrieval.csv"),
        "--quiet"], "measuring retrieval quality")
    with open(run / "retrieval.csv", newline="") as f:
        metrics = list(csv.DictReader(f))
    return json.loads((run / "tags" / "validation.json").read_text()), metrics


def main() -> None:
    args = _parser().parse_args()
    if args.real_stars:
        return real_stars()
    work = Path(args.work)
    tag = f"-kl{args.kl_max:g}" if args.kl_max is not None else ""
    arch = work / "archive"
    run = work / f"run-{args.preset}-{args.latent_dim or 'default'}{tag}"
    times: dict[str, float] = {}
    generate(args, arch, times)
    train_model(args, arch, run, times)
    latents = encode_and_analyse(args, arch, run, times)
    validation, metrics = tags_and_retrieval(arch, run, latents, times)
    summary = records.read(AnalysisSummary, run / "analysis" / "summary.json")
    report(summary)
    table = goals(summary, validation, metrics)
    report_goals(table)
    result = {"args": vars(args), "times": times, "summary": summary.to_dict(),
              "tags": validation, "retrieval": metrics, "goals": table}
    log(f"saved {save('science', result)}")


def report(s: AnalysisSummary) -> None:
    best, knn = s.best_mi_ksg, s.knn10_median_abs_error
    print(f"\n{s.n_informative} informative of {s.latent_dim} latent dimensions; "
          f"{s.n_generative_parameters} generative parameters vary; evaluation: "
          f"{s.evaluation}, {s.n_evaluation_stars} stars")
    print(f"{'label':14s} {'MI latent':>10s} {'MI PCA':>8s} {'goal':>6s}   "
          f"{'10-NN |err| latent':>19s} {'PCA':>8s}")
    for label, value in best["latent"].items():
        goal = GOALS.get(label)
        print(f"{label:14s} {value:10.2f} {best.get('pca', {}).get(label, float('nan')):8.2f} "
              f"{'>= ' + str(goal) if goal else '':>6s}   {knn['latent'][label]:19.3g} "
              f"{knn.get('pca', {}).get(label, float('nan')):8.3g}")


def _metric(metrics: list[dict], rep: str, metric: str, k: int,
            dataset: str = "synthetic") -> float:
    got = [float(r["value"]) for r in metrics if r["representation"] == rep and
           r["metric"] == metric and int(r["k"]) == k and r["dataset"].startswith(dataset)]
    return got[0] if got else float("nan")


def goals(s: AnalysisSummary, validation: dict, metrics: list[dict]) -> list[dict]:
    """One row per goal of issue 12: what, measured value, goal, reached."""
    best, knn = s.best_mi_ksg["latent"], s.knn10_median_abs_error
    rows = [{"goal": f"best single-dimension MI {label}, nats", "value": best[label],
             "target": f">= {goal}", "reached": best[label] >= goal}
            for label, goal in GOALS.items()]
    pca = knn.get("pca", {}).get("Teff", float("nan"))
    rows.append({"goal": f"10-NN median |dTeff|, K (PCA {pca:.0f})",
                 "value": knn["latent"]["Teff"], "target": "<= 100 and < PCA",
                 "reached": knn["latent"]["Teff"] <= 100 and knn["latent"]["Teff"] < pca})
    for name, goal in TAG_GOALS.items():  # reached only if both weightings meet it
        m = validation["labels"][name]
        rows.append({"goal": f"tags: {name} MAE, held-out stars (per spectrum "
                             f"{m['mae']:.3g})", "value": m["mae_per_star"],
                     "target": f"<= {goal}",
                     "reached": max(m["mae"], m["mae_per_star"]) <= goal})
    p10, ideal = _metric(metrics, "latent", "precision", 10), _metric(
        metrics, "ideal", "precision", 10)
    rows.append({"goal": f"same-star precision@10, latent (ideal {ideal:.3f}, PCA "
                         f"{_metric(metrics, 'pca', 'precision', 10):.3f}, flux "
                         f"{_metric(metrics, 'flux', 'precision', 10):.3f})",
                 "value": p10, "target": f">= {PRECISION_GOAL}", "reached": p10 >= PRECISION_GOAL})
    return rows


def report_goals(rows: list[dict]) -> None:
    print(f"\n{'goal (issue 12, held-out stars)':72s} {'value':>9s} {'target':>17s}  reached")
    for r in rows:
        print(f"{r['goal']:72s} {r['value']:9.3f} {r['target']:>17s}  "
              f"{'yes' if r['reached'] else 'NO'}")


# ---------------------------------------------------------------------------
# Real stars of the demo
# ---------------------------------------------------------------------------

STELLAR_PARAMS = REPO.parent / "shared" / "data" / "stellar_params"
#: alpha Cen B: the literature values of shared/data/stellar_params/README.md
#: ("Teff about 5230 K, logg about 4.5, [Fe/H] about +0.2"; no errors given).
ALPHA_CEN_B = {"teff": (5230.0, float("nan")), "logg": (4.5, float("nan")),
               "mh": (0.2, float("nan"))}


def sweetcat(name: str) -> dict[str, tuple[float, float]]:
    """Teff, logg, [Fe/H] and their errors of one SWEET-Cat star (by ``Name``)."""
    with open(STELLAR_PARAMS / "SWEETCAT_Dataframe.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == name)
    return {"teff": (float(row["Teff"]), float(row["eTeff"])),
            "logg": (float(row["Logg"]), float(row["eLogg"])),
            "mh": (float(row["[Fe/H]"]), float(row["e[Fe/H]"]))}


def real_stars() -> None:
    """The real-star table (module docstring): demo model, tagger on the demo's labels."""
    from astropy.io import fits

    from harps_data import fitsio
    current = harps_site.current_model_dir()
    latents = [str(p) for p in sorted(current.glob("latents*.fits"))]
    out = VAR / "real-stars"
    subprocess.run([str(BIN / "harps-tags"), "fit", "--latents", *latents, "--labels",
                    str(REPO / "var" / "demo" / "labels.csv"), "--out", str(out), "--seed", "1",
                    "--quiet"], check=True)
    subprocess.run([str(BIN / "harps-tags"), "predict", "--tagger", str(out), "--latents",
                    *latents, "--out", str(out / "tags.fits"), "--quiet"], check=True)
    with fits.open(out / "tags.fits") as hdul:
        t, model = hdul["TAGS"].data, hdul["TAGS"].header["MODELID"]
    objects = [fitsio.read_meta(Path(harps_site.INPUTS_DIR) / d.split("?", 1)[1]).object
               for d in t["pubdid"]]
    stars = {"HD189733": ("HD 189733", "SWEET-Cat (Sousa et al. 2021)", sweetcat("HD 189733")),
             "HD128621": ("alpha Cen B", "literature (stellar_params/README.md)", ALPHA_CEN_B)}
    table = []
    for obj, (name, source, lit) in stars.items():
        rows = np.flatnonzero(np.array(objects) == obj)
        for p, (value, err) in lit.items():
            table.append(real_row(t, rows, name, source, p, value, err))
    print(f"\nmodel {model}; tagger fitted on var/demo/labels.csv ({out})")
    print(f"{'star':12s} {'param':5s} {'published':>15s} {'predicted (median)':>22s} "
          f"{'n':>3s} {'<=3 sigma':>9s} {'ood':>4s} {'neither':>7s}")
    for r in table:
        print(f"{r['star']:12s} {r['param']:5s} {r['published']:>15s} {r['predicted']:>22s} "
              f"{r['n']:3d} {r['within_3sigma']:9d} {r['ood']:4d} {r['neither']:7d}")
    log(f"saved {save('real-stars', {'model_id': model, 'rows': table})}")


def real_row(t, rows: np.ndarray, name: str, source: str, param: str, value: float,
             err: float) -> dict:
    """One star and parameter: published value, predictions, how many agree or are flagged."""
    pred, sig = t[param][rows].astype(float), t[param + "_err"][rows].astype(float)
    total = np.sqrt(sig ** 2 + (0.0 if np.isnan(err) else err) ** 2)
    ood = t["ood"][rows] == 1
    close = np.abs(pred - value) <= 3 * total
    return {"star": name, "source": source, "param": param,
            "published": f"{value:g}" + ("" if np.isnan(err) else f" +- {err:g}"),
            "predicted": f"{np.nanmedian(pred):.4g} +- {np.nanmedian(sig):.3g}",
            "n": len(rows), "within_3sigma": int(close.sum()), "ood": int(ood.sum()),
            "neither": int((~close & ~ood).sum()),
            "ood_reasons": sorted({str(r) for r in t["ood_reason"][rows] if str(r).strip()})}


if __name__ == "__main__":
    main()
