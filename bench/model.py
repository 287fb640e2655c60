"""The model as a live service: slider round trips, upload-to-neighbours, memory (issue 10).

::

    .venv/bin/python bench/model.py [--n 200] [--full]

Against the running demo (``make demo``).  Every figure is a ratio to the
**floor** measured in the same run, interleaved with it: a GET of a small
static page served by a DaCHS worker through the nginx front door (the
cheapest thing the service does).  Measured:

1. **Slider round trip, demo model**: one HTTP request -> decoded spectrum,
   (a) the Sliders page's path ``/harps/model/decode`` (nginx -> model
   server, raw float32), (b) the ``decode`` service with ``RESPONSEFORMAT=json``
   (nginx -> DaCHS -> model server), (c) the same as an SDM VOTable.
2. **Slider round trip, ``full`` preset on CPU** (312,501 samples; with
   ``--full``): a second model server with an untrained ``full``-preset
   checkpoint (decoding costs the same trained or not) on a scratch socket,
   raw float32 over its Unix socket.
3. **Upload to neighbours**: POST of a real 1.2 MB HARPS s1d file to
   ``retrieve`` (K=10), p50 as a ratio to the floor.
4. **Memory**: model server RSS (its ``/info``) and the DaCHS workers' RSS
   before and after 1,000 decode requests.

Prints a table and writes ``bench/out/model-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import requests

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from common import REPO, SERVER_URL, log, percentiles, save  # noqa: E402

import harps_site  # noqa: E402

RD = harps_site.RD_ID
UPLOAD = REPO.parent / "shared" / "data" / "harps_real" / "s1d" / \
    "HARPS.2012-03-24T08_37_45.581_s1d_A.fits"
FLOOR = f"{SERVER_URL}/{RD}/explore/static/explore.html"


def timed(session: requests.Session, method: str, url: str, **kw) -> float:
    t = time.perf_counter()
    r = session.request(method, url, timeout=300, **kw)
    dt = time.perf_counter() - t
    if r.status_code != 200:
        raise SystemExit(f"{url}: HTTP {r.status_code}: {r.text[:300]}")
    return dt


def interleaved(session: requests.Session, n: int, cases: dict) -> dict[str, list[float]]:
    """Each case and the floor, alternating, n rounds (so both see the same machine state)."""
    out: dict[str, list[float]] = {"floor": [], **{k: [] for k in cases}}
    rng = np.random.default_rng(1)
    for _ in range(n):
        out["floor"].append(timed(session, "GET", FLOOR))
        for name, make in cases.items():
            method, url, kw = make(rng)
            out[name].append(timed(session, method, url, **kw))
    return out


def worker_rss_mib() -> float:
    r = subprocess.run([str(REPO / "etc" / "dachsctl"), "pids"], capture_output=True,
                       text=True, check=True)
    total = 0.0
    for line in r.stdout.splitlines():
        proc = psutil.Process(int(line.split()[1]))
        total += sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    return total / 2**20


def full_model_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    """A model server with an untrained full-preset checkpoint on a scratch socket."""
    import torch

    from ml import checkpoint
    from ml.model import ModelConfig, SpectrumVAE
    from ml.preprocess import Recipe
    config = ModelConfig.from_preset("full")
    torch.manual_seed(0)
    model = SpectrumVAE(config).eval()
    (tmp / "current").mkdir()
    checkpoint.save(tmp / "current" / "model.ckpt", model_config=config.as_dict(),
                    model_state=model.state_dict(), recipe=Recipe(config.grid).describe(),
                    step=0, epoch=0, data={"file_list_sha256": "0" * 64})
    sock = str(tmp / "full.sock")
    proc = subprocess.Popen([sys.executable, "-m", "ml.serve", "--socket", sock,
                             "--model-dir", str(tmp / "current")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        if os.path.exists(sock):
            return proc, sock
        time.sleep(0.1)
    raise SystemExit("the full-preset model server did not start")


def main() -> int:
    """Run the measurements of the module docstring and print the table.

    Long because it is the script: the cases, their interleaving with the
    floor, the optional full-preset server, the memory run and the table.
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="rounds per latency figure")
    ap.add_argument("--full", action="store_true", help="also the full-preset model (CPU)")
    args = ap.parse_args()
    s = requests.Session()
    info = s.get(f"{SERVER_URL}/harps/model/info", timeout=60).json()
    dim = info["latent_dim"]
    log(f"model {info['model_id']}: {info['grid_npix']} samples, latent {dim}")

    def vec(rng) -> str:
        return ",".join(f"{v:.4f}" for v in rng.normal(0, 0.5, dim))

    cases = {
        "slider fast path (raw)": lambda rng: (
            "GET", f"{SERVER_URL}/harps/model/decode", {"params": {"latent": vec(rng)}}),
        "slider decode service (JSON)": lambda rng: (
            "GET", f"{SERVER_URL}/{RD}/decode/api",
            {"params": {"LATENT": vec(rng), "RESPONSEFORMAT": "json"}}),
        "decode service (VOTable)": lambda rng: (
            "GET", f"{SERVER_URL}/{RD}/decode/api", {"params": {"LATENT": vec(rng)}}),
    }
    log(f"slider round trips, demo model ({args.n} rounds)")
    times = interleaved(s, args.n, cases)
    data = UPLOAD.read_bytes()
    log(f"upload to neighbours ({UPLOAD.stat().st_size / 1e6:.1f} MB, {args.n // 4} rounds)")
    up = interleaved(s, max(10, args.n // 4), {"upload -> 10 neighbours": lambda rng: (
        "POST", f"{SERVER_URL}/{RD}/retrieve/api",
        {"data": {"K": "10"}, "files": {"SPECTRUM": (UPLOAD.name, data)}})})
    times["floor (upload rounds)"] = up.pop("floor")
    times.update(up)

    full = {}
    if args.full:
        with tempfile.TemporaryDirectory() as tmp:
            proc, sock = full_model_server(Path(tmp))
            try:
                sys.path.insert(0, str(REPO / "resdir" / "res"))
                from harps_service import modelclient
                finfo = json.loads(modelclient.call("GET", "/info", socket_path=sock)[0])
                rng = np.random.default_rng(2)
                ft, fl = [], []
                for _ in range(max(10, args.n // 4)):
                    fl.append(timed(s, "GET", FLOOR))
                    t = time.perf_counter()
                    modelclient.call("GET", "/decode?latent=" + ",".join(
                        f"{v:.4f}" for v in rng.normal(0, 0.5, finfo["latent_dim"])),
                        socket_path=sock)
                    ft.append(time.perf_counter() - t)
                times["floor (full rounds)"], times["slider, full preset (raw)"] = fl, ft
                full = {"full_model_rss_mib": json.loads(modelclient.call(
                    "GET", "/info", socket_path=sock)[0])["rss_mib"],
                    "full_grid_npix": finfo["grid_npix"]}
            finally:
                proc.terminate()
                proc.wait()

    log("memory: 1,000 decode requests")
    before = {"model_server_mib": s.get(f"{SERVER_URL}/harps/model/info").json()["rss_mib"],
              "dachs_workers_mib": worker_rss_mib()}
    rng = np.random.default_rng(3)
    for i in range(1000):
        url = (f"{SERVER_URL}/{RD}/decode/api" if i % 2 else f"{SERVER_URL}/harps/model/decode")
        key = "LATENT" if i % 2 else "latent"
        s.get(url, params={key: vec(rng), "RESPONSEFORMAT": "json"}, timeout=60)
    after = {"model_server_mib": s.get(f"{SERVER_URL}/harps/model/info").json()["rss_mib"],
             "dachs_workers_mib": worker_rss_mib()}

    stats = {k: percentiles(v) for k, v in times.items()}
    floor_for = {"upload -> 10 neighbours": "floor (upload rounds)",
                 "slider, full preset (raw)": "floor (full rounds)"}
    print(f"\n{'request':34s} {'p50 ms':>8s} {'p95 ms':>8s} {'p50/floor':>10s}")
    for name, st in stats.items():
        if name.startswith("floor"):
            continue
        ratio = st["p50_ms"] / stats[floor_for.get(name, "floor")]["p50_ms"]
        st["p50_over_floor"] = ratio
        print(f"{name:34s} {st['p50_ms']:8.2f} {st['p95_ms']:8.2f} {ratio:10.2f}")
    for name in [k for k in stats if k.startswith("floor")]:
        print(f"{name:34s} {stats[name]['p50_ms']:8.2f} {stats[name]['p95_ms']:8.2f}")
    print(f"\nRSS before/after 1,000 decodes: model server {before['model_server_mib']:.0f} -> "
          f"{after['model_server_mib']:.0f} MiB, DaCHS workers {before['dachs_workers_mib']:.0f}"
          f" -> {after['dachs_workers_mib']:.0f} MiB")
    if full:
        print(f"full-preset model server RSS: {full['full_model_rss_mib']:.0f} MiB")
    path = save("model", {"model": info, "latency": stats, "rss_before": before,
                          "rss_after": after, **full})
    print(f"\n{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
