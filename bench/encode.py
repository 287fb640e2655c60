"""Encoding benchmark: full-resolution throughput, peak memory, fraction of conv peak.

``.venv/bin/python bench/encode.py [--files N]`` measures, in one run:

1. the machine's convolution peak: the best GFLOP/s of a large dense
   ``Conv1d`` (256 -> 256 channels, kernel 4, length 8192) in torch, same
   threads;
2. the ``full`` preset (0.01 A grid, 327,680 samples, 15 conv layers,
   latent 128) forward only: encode (mu) and encode + decode (what
   ``harps-encode`` computes, for the reconstruction error), spectra/s and
   achieved GFLOP/s from the layer shapes, i.e. the fraction of the peak;
3. ``harps-encode`` end to end on N full-grid archive files (read, check,
   preprocess, encode, decode, write the artefact): spectra/s and peak RSS.

The model's weights do not change the cost, so a one-step checkpoint is
used.  On a GPU (none lent to this project's sessions so far) run the same
with ``--device cuda``.
"""

from __future__ import annotations

import argparse
import glob
import re
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from common import PY, log, save

import harps_site

BIN = Path(PY).parent


def conv_peak(threads: int, device: str) -> float:
    """Best GFLOP/s of a large, compute-bound Conv1d."""
    conv = torch.nn.Conv1d(256, 256, 4, padding=0).to(device)
    x = torch.randn(8, 256, 8192, device=device)
    flops = 2 * 8 * 256 * 256 * 4 * (8192 - 3)
    best = 0.0
    with torch.no_grad():
        for _ in range(6):
            t0 = time.perf_counter()
            conv(x)
            if device == "cuda":
                torch.cuda.synchronize()
            best = max(best, flops / (time.perf_counter() - t0) / 1e9)
    return best


def model_flops(model: torch.nn.Module, length: int, decode: bool) -> float:
    """FLOPs per spectrum (2 per multiply-add) from the layer shapes."""
    total = 0.0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, torch.nn.Conv1d):
            total += 2 * mod.in_channels * mod.out_channels * mod.kernel_size[0] * out.shape[-1]
        elif isinstance(mod, torch.nn.ConvTranspose1d):
            total += 2 * mod.in_channels * mod.out_channels * mod.kernel_size[0] * inp[0].shape[-1]
        elif isinstance(mod, torch.nn.Linear):
            total += 2 * mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.Linear))]
    with torch.no_grad():
        mu, _ = model.encode(torch.zeros(1, length))
        if decode:
            model.decode(mu)
    for h in handles:
        h.remove()
    return total


def model_throughput(batch: int, device: str, repeats: int = 3) -> dict:
    from ml.model import ModelConfig, SpectrumVAE
    cfg = ModelConfig.from_preset("full")
    model = SpectrumVAE(cfg).to(device).eval()
    x = torch.randn(batch, cfg.length, device=device)
    out = {}
    for what, decode in (("encode", False), ("encode_decode", True)):
        best = float("inf")
        with torch.no_grad():
            for _ in range(repeats):
                t0 = time.perf_counter()
                mu, _ = model.encode(x)
                if decode:
                    model.decode(mu)
                if device == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
        flops = model_flops(model.cpu(), cfg.length, decode)
        model.to(device)
        out[what] = {"spectra_per_s": batch / best, "gflop_per_spectrum": flops / 1e9,
                     "gflop_per_s": flops * batch / best / 1e9}
    return out


def end_to_end(n_files: int, device: str, work: Path) -> dict:
    resdir = harps_site.resdir_of()
    files = sorted(glob.glob(f"{resdir}/data/adp/*/*.fits"))
    files = [f for f in files if Path(f).stat().st_size > 4_000_000][:n_files]
    if len(files) < n_files:
        raise SystemExit(f"needs full-grid files in {resdir} (run `make demo`)")
    listing = work / "files.txt"
    listing.write_text("\n".join(files) + "\n")
    log("a one-step full-preset checkpoint (weights do not change the cost)")
    subprocess.run([str(BIN / "harps-train"), f"@{listing}", "--out", str(work / "run"),
                    "--preset", "full", "--max-steps", "1", "--batch-size", "2", "--quiet",
                    "--device", device], check=True)
    log(f"harps-encode on {len(files)} full-grid files")
    res = subprocess.run([str(BIN / "harps-encode"), str(work / "run" / "last.ckpt"),
                          f"@{listing}", "--out", str(work / "latents"), "--quiet",
                          "--device", device, "--batch-size", "4"],
                         check=True, capture_output=True, text=True)
    line = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr
    m = re.search(r"([\d.]+) spectra/s; peak RSS (\d+) MiB \(\+ workers (\d+) MiB\)", line)
    return {"files": len(files), "report": line.strip(),
            "spectra_per_s": float(m.group(1)) if m else None,
            "peak_rss_mib": int(m.group(2)) if m else None,
            "worker_rss_mib": int(m.group(3)) if m else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    threads = torch.get_num_threads()
    peak = conv_peak(threads, args.device)
    log(f"Conv1d peak: {peak:.1f} GFLOP/s ({threads} threads, {args.device})")
    model = model_throughput(args.batch, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        e2e = end_to_end(args.files, args.device, Path(tmp))
    result = {"device": args.device, "threads": threads, "conv_peak_gflops": peak,
              "model": model, "end_to_end": e2e}
    print(f"\nfull preset (327,680 samples), {args.device}, {threads} threads, batch {args.batch}")
    for what, r in model.items():
        print(f"  model {what:14s} {r['spectra_per_s']:7.2f} spectra/s  "
              f"{r['gflop_per_spectrum']:.2f} GFLOP/spectrum  {r['gflop_per_s']:6.1f} GFLOP/s"
              f" = {r['gflop_per_s'] / peak:5.1%} of the conv peak ({peak:.1f} GFLOP/s)")
    print(f"  harps-encode end to end: {e2e['spectra_per_s']} spectra/s, peak RSS "
          f"{e2e['peak_rss_mib']} MiB (+ {e2e['worker_rss_mib']} MiB reader process)")
    log(f"saved {save('encode', result)}")


if __name__ == "__main__":
    main()
