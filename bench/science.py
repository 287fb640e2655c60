"""Science benchmark: what the learned latents know, on >= 20,000 labelled spectra.

Run with ``.venv/bin/python bench/science.py`` (no service needed).  Steps:

1. ``harps-synth`` writes a labelled synthetic archive (default 20,000 spectra
   of 4,000 stars) on a coarse grid (``--step``, 0.5 A by default: the CPU
   configuration; the full 0.01 A grid needs a GPU);
2. ``harps-train`` trains a model on it (split by star, weights 1/n_star);
3. ``harps-encode`` encodes every spectrum;
4. ``harps-analyse`` measures, on the held-out stars (one spectrum per
   star), the mutual information of every latent dimension and of a PCA of
   the same size with Teff, logg, [M/H], vsini, RV, airmass, water vapour,
   S/N and BERV, and the 10-nearest-neighbour label errors.

Goals (issue 3): best-dimension MI >= 1.3 nats for Teff and for RV, >= 0.5
nats for [M/H]; 10-NN median |dTeff| <= 100 K and better than PCA.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import time
from pathlib import Path

from common import PY, VAR, log, save

from harps_data import records
from harps_data.records import AnalysisSummary

BIN = Path(PY).parent
GOALS = {"Teff": 1.3, "RV": 1.3, "[M/H]": 0.5}


def timed(cmd: list[str], what: str) -> float:
    log(what)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20_000, help="spectra (default %(default)s)")
    ap.add_argument("--n-stars", type=int, default=4_000)
    ap.add_argument("--step", type=float, default=0.5, help="archive grid, Angstrom")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--latent-dim", type=int)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--kl-max", type=float)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--work", default=str(VAR / "science"))
    ap.add_argument("--reuse-model", action="store_true",
                    help="skip training when the run directory has a checkpoint")
    args = ap.parse_args()
    work = Path(args.work)
    tag = f"-kl{args.kl_max:g}" if args.kl_max is not None else ""
    arch = work / "archive"
    run = work / f"run-{args.preset}-{args.latent_dim or 'default'}{tag}"
    times = {}
    if not (arch / "labels.csv").exists():
        times["generate_s"] = timed([
            str(BIN / "harps-synth"), "--out", str(arch), "-n", str(args.n), "--n-stars",
            str(args.n_stars), "--seed", str(args.seed), "--step", str(args.step),
            "--today", datetime.date.today().isoformat(), "--workers", "2", "--no-progress"],
            f"generating {args.n} spectra of {args.n_stars} stars on a {args.step} A grid")
    train = [str(BIN / "harps-train"), str(arch), "--labels", str(arch / "labels.csv"),
             "--out", str(run), "--preset", args.preset, "--epochs", str(args.epochs),
             "--batch-size", str(args.batch_size), "--seed", "1", "--quiet", "--workers", "1"]
    if args.latent_dim:
        train += ["--latent-dim", str(args.latent_dim)]
    if args.kl_max is not None:
        train += ["--kl-max", str(args.kl_max)]
    if args.reuse_model and (run / "best.ckpt").exists():
        log(f"reusing the trained model in {run}")
    elif (run / "last.ckpt").exists():  # an interrupted run: continue where it stopped
        times["train_s"] = timed(
            train[:6] + ["--epochs", str(args.epochs), "--quiet", "--resume",
                         str(run / "last.ckpt")], f"resuming the interrupted training in {run}")
    else:
        times["train_s"] = timed(train, f"training preset {args.preset}, {args.epochs} epochs")
    for stale in (run / "latents").glob("latents_*.fits"):  # an earlier model's: not mixed
        stale.unlink()
    times["encode_s"] = timed([str(BIN / "harps-encode"), str(run / "best.ckpt"), str(arch),
                               "--out", str(run / "latents"), "--inputs-root", str(arch),
                               "--quiet"], "encoding")
    latents = sorted((run / "latents").glob("latents_*.fits"))
    times["analyse_s"] = timed([str(BIN / "harps-analyse"), *map(str, latents), "--labels",
                                str(arch / "labels.csv"), "--checkpoint", str(run / "best.ckpt"),
                                "--cache", str(run / "cache"), "--out", str(run / "analysis")],
                               "analysing")
    summary = records.read(AnalysisSummary, run / "analysis" / "summary.json")
    result = {"args": vars(args), "times": times, "summary": summary.to_dict()}
    report(summary)
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
    print("goal: 10-NN median |dTeff| <= 100 K and better than PCA")


if __name__ == "__main__":
    main()
