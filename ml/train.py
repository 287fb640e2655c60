"""Train the spectrum autoencoder: ``harps-train``.

On one CPU or GPU::

    harps-train $INPUTS/harps/data --labels labels.csv --preset coarse \\
        --epochs 20 --out runs/coarse

data-parallel across processes (DistributedDataParallel; gloo on CPU,
nccl on GPUs)::

    torchrun --standalone --nproc_per_node 4 -m ml.train DATA --preset full --out runs/full

and resumed, exactly where it stopped (same data required)::

    harps-train DATA --resume runs/full/last.ckpt --epochs 40 --out runs/full

What happens: the input FITS files are preprocessed once into a cache
(:mod:`ml.data`, default ``OUT/cache``); flagged spectra are listed and left
out; the usable ones are split into training and validation **by star**
(labels CSV, else the OBJECT header) so that repeated observations of a star
never leak across; training draws spectra with weight 1/(spectra of the
star).  The loss is the masked MSE plus a KL term whose weight ramps
linearly from 0 to ``--kl-max`` over ``--kl-ramp-steps``.  Checkpoints
(:mod:`ml.checkpoint`) go to ``OUT/last.ckpt`` after every epoch (or every
``--checkpoint-every`` steps) and ``OUT/best.ckpt`` at the best validation
loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from torch.utils.data import DataLoader

from ml import checkpoint, data
from ml.model import PRESETS, ModelConfig, SpectrumVAE, describe
from ml.preprocess import FRAMES, Recipe, flag_names
from ml.runtime import Dist, rng_state, seed_everything, set_rng_state, setup
from ml.telluric import shift_spectra

SAMPLING = ("star", "spectrum", "origin")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and data options of a run (model options: :class:`ModelConfig`)."""

    epochs: int = 10  # passes over (a weighted resample of) the training spectra
    max_steps: int | None = None  # stop after this many optimiser steps (overrides epochs)
    batch_size: int = 8  # spectra per step and process
    lr: float = 1e-3  # Adam learning rate
    kl_max: float = 1e-3  # final KL weight beta (small: weak disentanglement)
    kl_ramp_steps: int = 2000  # steps over which beta rises linearly from 0
    grad_clip: float = 1.0  # max gradient norm (0: no clipping)
    val_fraction: float = 0.1  # fraction of spectra (whole stars) held out
    seed: int = 0  # seeds torch, numpy, python, the split and the sampler
    workers: int = 0  # DataLoader worker processes
    checkpoint_every: int = 0  # steps between checkpoints; 0: at the end of every epoch
    min_valid_fraction: float = 0.5  # preprocessing: flag spectra with fewer valid pixels
    frame: str = "barycentric"  # or "observatory" (BERV-corrected back to the telescope)
    cache_dtype: str = "float16"  # flux dtype in the preprocessing cache
    # separation models (presets with a telluric component, ml.telluric) only:
    velocity_whitening: float = 0.0  # km/s: each spectrum shifted by U(-v, v) per draw
    telluric_l1: float = 0.0  # weight of the templates' L1 penalty (mean optical depth)
    telluric_lr: float = 0.03  # Adam learning rate of the telluric templates
    # "star": weight 1/(spectra of the star); "spectrum": uniform; "origin": half the
    # draws real spectra, half synthetic ones (uniform within each)
    sampling: str = "star"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("--max-steps must be >= 1")
        if self.lr <= 0 or self.kl_max < 0 or self.kl_ramp_steps < 0:
            raise ValueError("--lr must be > 0, --kl-max and --kl-ramp-steps >= 0")
        if self.frame not in FRAMES:
            raise ValueError(f"--frame must be one of {', '.join(FRAMES)}")
        if not 0.0 <= self.velocity_whitening <= 200.0 or self.telluric_l1 < 0:
            raise ValueError("--velocity-whitening must be in 0..200 km/s, --telluric-l1 >= 0")
        if self.sampling not in SAMPLING:
            raise ValueError(f"--sampling must be one of {', '.join(SAMPLING)}")


def kl_weight(step: int, cfg: TrainConfig) -> float:
    """KL weight beta at optimiser step ``step`` (linear ramp to ``kl_max``)."""
    if cfg.kl_ramp_steps == 0:
        return cfg.kl_max
    return cfg.kl_max * min(1.0, step / cfg.kl_ramp_steps)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def prepare_data(inputs, labels, cache_dir: Path, recipe: Recipe, cfg: TrainConfig,
                 dist: Dist, progress: bool) -> tuple[data.CacheInfo, np.ndarray, np.ndarray, dict]:
    """Cache the inputs (main process), split by star; return rows and a description."""
    paths = data.collect_inputs(inputs)
    if dist.main:
        stars = data.star_ids(paths, data.read_labels(labels) if labels else None)
        data.build_cache(paths, stars, recipe, cache_dir, dtype=cfg.cache_dtype,
                         workers=cfg.workers, progress=progress)
    dist.barrier()
    info = data.open_cache(cache_dir)
    if info.file_list_sha256 != data.file_list_sha256(paths):
        raise data.DataError(f"{cache_dir}: cache does not hold these inputs")
    usable = info.usable
    if len(usable) == 0:
        raise data.DataError("no usable spectrum among the inputs (all flagged)")
    stars = [info.stars[i] for i in usable]
    tr, va = data.split_by_star(stars, cfg.val_fraction, cfg.seed)
    flagged = [[info.files[i], info.flags[i].item(), ",".join(flag_names(info.flags[i]))]
               for i in np.flatnonzero(info.flags)]
    desc = {"inputs": [str(x) for x in inputs], "labels": str(labels) if labels else None,
            "star_source": "labels" if labels else "OBJECT header",
            "n_files": len(paths), "n_usable": len(usable), "n_flagged": len(flagged),
            "flagged": flagged[:1000], "n_train": len(tr), "n_val": len(va),
            "n_stars_train": len({stars[i] for i in tr}),
            "n_stars_val": len({stars[i] for i in va}),
            "val_stars": sorted({stars[i] for i in va}),
            "file_list_sha256": info.file_list_sha256, "cache": str(cache_dir)}
    return info, usable[tr], usable[va], desc


def make_loaders(info: data.CacheInfo, train_rows, val_rows, cfg: TrainConfig, dist: Dist):
    """Weighted, DDP-consistent training loader and this process's share of validation."""
    stars = [info.stars[i] for i in train_rows]
    if cfg.sampling == "star":
        weights = data.star_weights(stars)
    elif cfg.sampling == "origin":
        weights = data.origin_weights([info.files[i] for i in train_rows])
    else:
        weights = np.full(len(stars), 1.0 / max(len(stars), 1))
    sampler = data.WeightedStarSampler(weights, len(train_rows),
                                       seed=cfg.seed, rank=dist.rank, world_size=dist.world)
    common = {"batch_size": cfg.batch_size, "num_workers": cfg.workers,
              "pin_memory": dist.device.type == "cuda",
              "persistent_workers": False}
    train = DataLoader(data.CachedSpectra(info.directory, train_rows), sampler=sampler,
                       generator=torch.Generator().manual_seed(cfg.seed), **common)
    val = DataLoader(data.CachedSpectra(info.directory, val_rows[dist.rank::dist.world]),
                     shuffle=False, **common)
    return train, val, sampler


class Batches:
    """Turns loader batches into model inputs: BERV per spectrum, velocity whitening.

    Parameters
    ----------
    model : SpectrumVAE
    bervs : numpy.ndarray
        ``(N,)`` BERV of every cache row, km/s (NaN taken as 0).
    cfg : TrainConfig
    device : torch.device
    """

    def __init__(self, model: SpectrumVAE, bervs: np.ndarray, cfg: TrainConfig,
                 device: torch.device) -> None:
        self.telluric = model.telluric is not None
        self.bervs = torch.from_numpy(np.nan_to_num(np.asarray(bervs, np.float32)))
        self.whitening = cfg.velocity_whitening
        grid = model.config.grid
        self.wave0, self.step, self.device = float(grid.wave[0]), float(grid.step), device

    def __call__(self, x: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor,
                 train: bool) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """``(x, mask, model args)`` on the device; whitening only when ``train``."""
        x, mask = x.to(self.device), mask.to(self.device)
        if not self.telluric:
            return x, mask, ()
        berv = self.bervs[rows].to(self.device)
        if train and self.whitening > 0:
            v = (torch.rand(len(x)) * 2.0 - 1.0).to(self.device) * self.whitening
            x, mask = shift_spectra(x, mask, self.wave0, self.step, v)
            berv = berv + v
        return x, mask, (berv,)


@torch.no_grad()
def evaluate(model: SpectrumVAE, loader: DataLoader, dist: Dist,
             batches: Batches) -> tuple[float, float]:
    """Mean masked MSE and KL (deterministic z = mu) over all processes' validation shares."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=dist.device)
    for x, mask, rows in loader:
        x, mask, extra = batches(x, mask, rows, train=False)
        x_hat, mu, logvar = model(x, *extra)
        out = model.loss(x, mask, x_hat, mu, logvar, 0.0)
        sums += torch.stack([out["recon"] * len(x), out["kl"] * len(x),
                             torch.tensor(float(len(x)), device=dist.device)]).double()
    if dist.world > 1:
        torch_dist.all_reduce(sums)
    model.train()
    n = sums[2].item()
    return (sums[0].item() / n, sums[1].item() / n) if n else (math.nan, math.nan)


# ---------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------

@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_val: float = math.inf
    losses: dict = dataclasses.field(default_factory=lambda: {"train": [], "val": []})


def _save(path: Path, dist: Dist, raw: SpectrumVAE, opt, st: _State, run: dict) -> None:
    """Gather every process's RNG state, write the checkpoint from the main process."""
    states = [rng_state()]
    if dist.world > 1:
        states = [None] * dist.world
        torch_dist.all_gather_object(states, rng_state())
    if dist.main:
        checkpoint.save(path, model_state=raw.state_dict(), optimizer_state=opt.state_dict(),
                        step=st.step, epoch=st.epoch, batch_in_epoch=st.batch_in_epoch,
                        best_val=st.best_val, losses=st.losses, rng_states=states, **run)
    dist.barrier()


def _step(model, raw: SpectrumVAE, opt, batch: tuple, beta: float, cfg: TrainConfig,
          dist: Dist) -> dict[str, float]:
    """One optimiser step; returns the batch losses averaged over processes."""
    x, mask, extra = batch
    x_hat, mu, logvar = model(x, *extra)
    out = raw.loss(x, mask, x_hat, mu, logvar, beta)
    if cfg.telluric_l1 > 0 and raw.telluric is not None:
        out["loss"] = out["loss"] + cfg.telluric_l1 * raw.telluric_penalty()
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip)
    opt.step()
    logged = torch.stack([out[k].detach() for k in ("loss", "recon", "kl")]).double()
    if dist.world > 1:
        torch_dist.all_reduce(logged)
        logged /= dist.world
    return dict(zip(("loss", "recon", "kl"), logged.tolist(), strict=True))


def fit(raw: SpectrumVAE, opt, st: _State, loaders, cfg: TrainConfig, dist: Dist,
        out: Path, run: dict, progress: bool, bervs: np.ndarray | None = None) -> _State:
    """Run optimiser steps until ``max_steps`` or ``epochs``, checkpointing as configured."""
    from tqdm import tqdm
    train, val, sampler = loaders
    model = raw
    if dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            raw, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    per_epoch = math.ceil(sampler.per_rank / cfg.batch_size)
    total = cfg.max_steps or cfg.epochs * per_epoch
    bar = tqdm(total=total, initial=st.step, unit="step", desc="train",
               disable=not (progress and dist.main), dynamic_ncols=True)
    batches = Batches(raw, bervs if bervs is not None else np.zeros(0), cfg, dist.device)
    raw.train()
    if st.step >= total:  # resumed with nothing left to do: still leave a checkpoint in out
        _save(out / "last.ckpt", dist, raw, opt, st, run)
    while st.step < total:
        sampler.set_epoch(st.epoch, skip=st.batch_in_epoch * cfg.batch_size)
        for x, mask, rows in train:
            beta = kl_weight(st.step, cfg)
            res = _step(model, raw, opt, batches(x, mask, rows, train=True), beta, cfg, dist)
            st.step += 1
            st.batch_in_epoch += 1
            st.losses["train"].append([st.step, res["loss"], res["recon"], res["kl"], beta])
            bar.update(1)
            bar.set_postfix(epoch=st.epoch, loss=f"{res['loss']:.4g}", kl=f"{res['kl']:.3g}")
            end_epoch = st.batch_in_epoch == per_epoch
            if end_epoch:
                recon, kl = evaluate(raw, val, dist, batches)
                st.losses["val"].append([st.step, recon, kl])
                st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                if recon < st.best_val:
                    st.best_val = recon
                    _save(out / "best.ckpt", dist, raw, opt, st, run)
            every = cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0
            if end_epoch or every or st.step >= total:
                _save(out / "last.ckpt", dist, raw, opt, st, run)
            if st.step >= total:
                break
    bar.close()
    return st


def train(inputs, out: str | os.PathLike, *, model_config: ModelConfig | None = None,
          config: TrainConfig | None = None, labels: str | None = None,
          cache: str | None = None, resume: str | None = None, extend: dict | None = None,
          device: str = "auto", threads: int | None = None, progress: bool = True) -> Path:
    """Train (or resume) a model; return the path of the last checkpoint.

    Parameters
    ----------
    inputs : sequence of path-like
        FITS files, directories or ``@list`` files (:func:`ml.data.collect_inputs`).
    out : path-like
        Output directory for checkpoints (and the cache, by default).
    model_config, config : ModelConfig, TrainConfig
        Defaults: the ``full`` preset and ``TrainConfig()``.  When resuming,
        both come from the checkpoint (a different ``model_config`` is an
        error, ``config`` is ignored).
    labels : str, optional
        CSV giving the star of each file (else the OBJECT header).
    cache : str, optional
        Preprocessing cache directory (default ``out/cache``).
    resume : str, optional
        A checkpoint of this run to continue from.
    extend : dict, optional
        When resuming: new ``epochs`` and/or ``max_steps``.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    threads : int, optional
        Torch CPU threads per process (default: cores / local processes).
    progress : bool
        Show tqdm bars (main process only).
    """
    dist = setup(device, threads)
    out = Path(out)
    ckpt = _resumable(resume) if resume else None
    model_config, config = _resolve_configs(ckpt, model_config, config, extend or {})
    seeds = seed_everything(config.seed, dist.rank)
    recipe = Recipe(model_config.grid, config.frame, config.min_valid_fraction)
    info, tr, va, desc = prepare_data(inputs, labels, Path(cache or out / "cache"), recipe,
                                      config, dist, progress)
    if ckpt and ckpt["data"]["file_list_sha256"] != desc["file_list_sha256"]:
        raise data.DataError(f"{resume}: checkpoint was trained on other files (file list "
                             "checksum differs); resume with the same inputs")
    raw = SpectrumVAE(model_config).to(dist.device)
    opt = make_optimizer(raw, config)
    st = _State()
    if ckpt:
        st = _restore(ckpt, raw, opt, dist)
    if dist.main and progress:
        print(f"{describe(model_config)}\ndata: {desc['n_train']} train / {desc['n_val']} val "
              f"spectra ({desc['n_stars_train']} / {desc['n_stars_val']} stars), "
              f"{desc['n_flagged']} flagged; {dist.world} process(es) on {dist.device}",
              file=sys.stderr)
    run = {"model_config": model_config.as_dict(), "recipe": recipe.describe(),
           "train_config": dataclasses.asdict(config), "seeds": seeds, "data": desc,
           "world_size": dist.world}
    fit(raw, opt, st, make_loaders(info, tr, va, config, dist), config, dist, out, run,
        progress, info.bervs)
    return out / "last.ckpt"


def make_optimizer(raw: SpectrumVAE, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam; the telluric templates (if any) in a group of their own with ``telluric_lr``.

    The templates start near zero behind a softplus, where ``lr`` would need
    thousands of steps to grow a line; the amplitude head stays at ``lr``.
    """
    if raw.telluric is None:
        return torch.optim.Adam(raw.parameters(), lr=cfg.lr)
    tau = raw.telluric.raw_tau
    rest = [p for p in raw.parameters() if p is not tau]
    return torch.optim.Adam([{"params": rest}, {"params": [tau], "lr": cfg.telluric_lr}],
                            lr=cfg.lr)


def _resumable(resume: str) -> dict:
    """The checkpoint to resume from; a slimmed one (no optimiser state) is refused."""
    ckpt = checkpoint.load(resume)
    if "optimizer_state" not in ckpt:
        raise ValueError(f"--resume {resume}: a slimmed checkpoint (no optimiser state) "
                         "cannot be resumed; resume from the run's own last.ckpt")
    return ckpt


def _resolve_configs(ckpt, model_config, config, extend: dict):
    if ckpt is None:
        return model_config or ModelConfig(), config or TrainConfig()
    unknown = set(extend) - {"epochs", "max_steps"}
    if unknown:
        raise ValueError(f"--resume: only --epochs and --max-steps can change, not {unknown}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = dataclasses.replace(
        TrainConfig(**{k: v for k, v in ckpt["train_config"].items() if k in known}), **extend)
    resumed = ModelConfig.from_dict(ckpt["model_config"])
    if model_config is not None and model_config != resumed:
        raise ValueError(f"--resume: the checkpoint's model ({resumed.preset}) differs from the "
                         "one asked for; leave out --preset/--latent-dim when resuming")
    return resumed, saved


def _restore(ckpt: dict, raw: SpectrumVAE, opt, dist: Dist) -> _State:
    raw.load_state_dict(ckpt["model_state"])
    opt.load_state_dict(ckpt["optimizer_state"])
    states = ckpt["rng_states"]
    if len(states) != dist.world:
        print(f"resuming {len(states)}-process run with {dist.world} processes: random "
              "streams restart from the seed", file=sys.stderr)
    else:
        set_rng_state(states[dist.rank])
    return _State(ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["best_val"],
                  ckpt["losses"])


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harps-train", description="Train the spectrum autoencoder.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="FITS files, directories or @list files")
    p.add_argument("--out", required=True, help="output directory (checkpoints, cache)")
    p.add_argument("--labels", help="labels CSV with file and star columns")
    p.add_argument("--cache", help="preprocessing cache directory (default OUT/cache)")
    p.add_argument("--resume", help="checkpoint to continue from")
    p.add_argument("--preset", choices=sorted(PRESETS), help="model preset (default full)")
    p.add_argument("--latent-dim", type=int, help="override the preset's latent size")
    p.add_argument("--telluric-templates", type=int,
                   help="override the preset's number of telluric templates (0: none)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        kind = {"int": int, "float": float, "str": str}[str(f.type).split(" ")[0]]
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None,
                       help=f"default {getattr(defaults, f.name)}")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``harps-train``; returns the exit status."""
    args = _parser().parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name) is not None}
    try:
        mcfg = None
        if args.preset or args.latent_dim or args.telluric_templates is not None:
            over = {"latent_dim": args.latent_dim} if args.latent_dim else {}
            if args.telluric_templates is not None:
                over["telluric"] = args.telluric_templates
            mcfg = ModelConfig.from_preset(args.preset or "full", **over)
        if args.resume:
            cfg, extend = None, given
        else:
            cfg, extend = TrainConfig(**given), None
        path = train(args.inputs, args.out, model_config=mcfg, config=cfg, labels=args.labels,
                     cache=args.cache, resume=args.resume, extend=extend, device=args.device,
                     threads=args.threads, progress=not args.quiet)
    except (ValueError, checkpoint.CheckpointError) as ex:
        print(f"harps-train: error: {ex}", file=sys.stderr)
        return 2
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
