"""Where training runs: devices, data-parallel processes, seeds and random states.

``torchrun`` starts one process per device and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``; :func:`setup` joins
the process group (gloo on CPU, nccl on GPUs).  Without those variables
everything runs in one process.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly one-process) data-parallel run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch_dist.barrier()


def setup(device: str, threads: int | None) -> Dist:
    """Pick the device, join the process group when run by ``torchrun``, set threads."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (use --device cpu)")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // local_world))
    dev = torch.device(f"cuda:{local}") if device == "cuda" else torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Dist(rank, world, local, dev)


def seed_everything(seed: int, rank: int) -> dict:
    """Seed python, numpy and torch (torch per process); return the record."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the global state other code may draw from
    torch.manual_seed(seed + rank)
    return {"seed": seed, "python": seed, "numpy": seed, "torch": "seed + rank",
            "split": seed, "sampler": "seed * 1000003 + epoch"}


def rng_state() -> dict:
    """This process's generator states, as plain values (weights_only-loadable)."""
    np_state = np.random.get_state()  # noqa: NPY002
    out = {"torch": torch.get_rng_state(), "python": random.getstate(),
           "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))  # noqa: NPY002
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
