"""Helpers shared by the benchmarks: timing statistics, scratch deployments, SQL.

Benchmarks print ratios measured side by side in one run; they never assert
a wall-clock time.  Scratch copies of the resource (``etc/dachsctl
deploy-as``) keep them away from the published data.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
VAR = REPO / "var" / "bench"
SERVER_URL = os.environ.get(
    "SERVER_URL", f"http://localhost:{os.environ.get('PORT', '8080')}").rstrip("/")
PY = sys.executable


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def dachsctl(*args: str) -> None:
    subprocess.run([str(REPO / "etc" / "dachsctl"), *args], check=True,
                   stdout=subprocess.DEVNULL)


def psql(sql: str) -> str:
    """Run SQL in the gavo database as the postgres superuser; return stdout."""
    return subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-d", "gavo", "-qtAc", sql],
                          check=True, capture_output=True, text=True).stdout


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50/p95 in milliseconds."""
    a = np.asarray(samples_s) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "n": int(a.size)}


def machine() -> dict[str, str | int]:
    return {"cpus": os.cpu_count() or 0, "python": platform.python_version(),
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M")}


def save(name: str, result: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=1))
    return path


def synth_pool(name: str, n: int, seed: int, step: float = 1.0) -> Path:
    """A cached synthetic archive (header-heavy coarse files by default)."""
    out = VAR / name
    if (out / "labels.csv").exists() and sum(1 for _ in open(out / "labels.csv")) - 1 == n:
        return out
    log(f"generating {n} synthetic files (step {step} A) into {out}")
    subprocess.run([str(Path(PY).parent / "harps-synth"), "--out", str(out), "-n", str(n),
                    "--seed", str(seed), "--step", str(step), "--workers",
                    str(os.cpu_count() or 1), "--no-progress"], check=True)
    return out
