"""Self-describing checkpoints: everything needed to rebuild and use a model.

A checkpoint is a ``torch.save`` dictionary of plain Python values and
tensors (loadable with ``weights_only=True``):

``format``, ``format_version``
    ``"harps-vo-vae"``, :data:`FORMAT_VERSION`.
``model_config``
    :meth:`ml.model.ModelConfig.as_dict`.
``model_state``, ``optimizer_state``
    Weights and optimiser state (Adam moments, step counts).
``step``, ``epoch``, ``batch_in_epoch``
    Optimiser steps done; the epoch in progress and the batches of it done.
``losses``, ``best_val``
    ``{"train": [[step, loss, recon, kl, kl_weight], ...],
    "val": [[step, recon, kl], ...]}``: training batch means (averaged
    over processes) and validation means at the end of each epoch, with
    z = mu; ``best_val`` is the lowest validation ``recon``.
``recipe``
    :meth:`ml.preprocess.Recipe.describe`: wavelength grid (step, range,
    padded length), frame, normalisation and flagging rules.
``train_config``, ``seeds``, ``rng_states``, ``world_size``
    Training options, the seeds used, the random generator states of every
    process (for exact resumption), the number of processes.
``data``
    Training data: inputs, number of files, usable/train/validation counts,
    flagged files and why, number of stars and the held-out ones, the labels
    file, the checksum of the file list (:func:`ml.data.file_list_sha256`).
``code``
    ``ml.__version__``, ``git describe``, torch and Python versions.
``created``
    UTC time of writing, ISO 8601.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import pickle
import platform
import struct
import subprocess
from pathlib import Path
from typing import Any

import torch

import ml
from harps_data.records import CheckpointInfo
from ml.model import ModelConfig, SpectrumVAE
from ml.preprocess import Recipe

FORMAT = "harps-vo-vae"
FORMAT_VERSION = 1
REQUIRED = ("model_config", "model_state", "recipe", "step", "code")


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message names it."""


def git_describe() -> str | None:
    """``git describe --always --dirty --tags`` of the source tree, or None."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"],
                             cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def code_version() -> dict[str, str | None]:
    """Versions of this code and of its main dependencies."""
    return {"ml": ml.__version__, "git": git_describe(), "torch": str(torch.__version__),
            "python": platform.python_version()}


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save(path: str | os.PathLike, **contents: Any) -> str:
    """Write a checkpoint atomically and return its SHA-256.

    Parameters
    ----------
    path : path-like
    **contents
        The entries listed in the module docstring; ``format``,
        ``format_version``, ``code`` and ``created`` are added.
    """
    missing = [k for k in REQUIRED if k not in contents and k != "code"]
    if missing:
        raise CheckpointError(f"{path}: refusing to save without {', '.join(missing)}")
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, "code": code_version(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **contents}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return sha256_file(path)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a checkpoint (on the CPU).

    Raises
    ------
    CheckpointError
        Missing file, not a checkpoint of this format, or a newer version.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError,
            struct.error) as ex:  # what torch.load raises for files that are not checkpoints
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(ex).__name__}: "
                              f"{str(ex)[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {ckpt['format_version']} is newer than "
                              f"this code ({FORMAT_VERSION}); update ml")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return ckpt


def build_model(ckpt: dict[str, Any]) -> tuple[SpectrumVAE, Recipe]:
    """The model (in eval mode, on the CPU) and preprocessing recipe of a checkpoint."""
    config = ModelConfig.from_dict(ckpt["model_config"])
    recipe = Recipe.from_description(ckpt["recipe"])
    if recipe.grid != config.grid:
        raise CheckpointError(f"checkpoint grid {recipe.grid} does not match its model "
                              f"config {config.grid}")
    model = SpectrumVAE(config)
    model.load_state_dict(ckpt["model_state"])
    return model.eval(), recipe


def model_id(ckpt: dict[str, Any], sha256: str) -> str:
    """Short identifier of a trained model: preset, latent size, checkpoint hash prefix."""
    c = ckpt["model_config"]
    return f"{c['preset']}-z{c['latent_dim']}-{sha256[:12]}"


def describe(ckpt: dict[str, Any]) -> CheckpointInfo:
    """What a checkpoint says about itself (for model cards and the service).

    Parameters
    ----------
    ckpt : dict
        As returned by :func:`load`.

    Returns
    -------
    harps_data.records.CheckpointInfo
        preset, latent size, parameter count, grid, frame, training options,
        data counts, final losses, seeds, code version and creation time.
    """
    config = ModelConfig.from_dict(ckpt["model_config"])
    data = ckpt.get("data", {})
    val = ckpt.get("losses", {}).get("val", [])
    train = ckpt.get("losses", {}).get("train", [])
    return CheckpointInfo(
        preset=config.preset, latent_dim=config.latent_dim,
        n_parameters=sum(int(v.numel()) for v in ckpt["model_state"].values()),
        conv_channels=list(config.channels), fc_hidden=list(config.fc_hidden),
        grid_step=config.step, grid=ckpt["recipe"]["grid"],
        frame=ckpt["recipe"]["frame"], normalisation=ckpt["recipe"]["normalisation"],
        train_config=ckpt.get("train_config", {}), seeds=ckpt.get("seeds", {}),
        step=ckpt["step"], epoch=ckpt.get("epoch"),
        n_files=data.get("n_files"), n_train=data.get("n_train"),
        n_val=data.get("n_val"), n_stars_train=data.get("n_stars_train"),
        n_stars_val=data.get("n_stars_val"), n_flagged=data.get("n_flagged"),
        file_list_sha256=data.get("file_list_sha256"),
        final_train_loss=train[-1][1] if train else None,
        final_val_recon=val[-1][1] if val else None,
        best_val_recon=ckpt.get("best_val"),
        world_size=ckpt.get("world_size"), code=ckpt["code"], created=ckpt.get("created"),
    )


#: What :func:`slim` drops: only a run that resumes needs them.
RESUME_ONLY = ("optimizer_state", "rng_states")


def slim(src: str | os.PathLike, dest: str | os.PathLike) -> str:
    """Write ``src`` without the optimiser and RNG states (a third of the size, for
    shipping a trained model); returns the new file's SHA-256.

    The result loads, encodes and separates exactly like ``src`` and records
    ``slimmed_from`` (the source's SHA-256); to continue training, resume
    from the full checkpoint.
    """
    ckpt = load(src)
    kept = {k: v for k, v in ckpt.items() if k not in RESUME_ONLY + (
        "format", "format_version", "code", "created")}
    kept["slimmed_from"] = sha256_file(src)
    return save(dest, **kept)


def main(argv: list[str] | None = None) -> int:
    """``python -m ml.checkpoint describe CKPT`` (print :func:`describe` as JSON) or
    ``slim SRC DEST`` (:func:`slim`)."""
    import argparse
    import json
    import sys
    ap = argparse.ArgumentParser(prog="python -m ml.checkpoint")
    ap.add_argument("command", choices=["describe", "slim"])
    ap.add_argument("checkpoint")
    ap.add_argument("dest", nargs="?", help="slim: where to write")
    args = ap.parse_args(argv)
    try:
        if args.command == "slim":
            if not args.dest:
                ap.error("slim needs SRC and DEST")
            print(f"{args.dest}: sha256 {slim(args.checkpoint, args.dest)}")
            return 0
        info = describe(load(args.checkpoint))
    except CheckpointError as ex:
        print(f"ml.checkpoint: {ex}", file=sys.stderr)
        return 2
    info = dataclasses.replace(info, sha256=sha256_file(args.checkpoint))
    print(json.dumps(info.to_dict(), indent=1, default=str))
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())
