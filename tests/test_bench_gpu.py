"""bench/gpu.sh: the prepared GPU benchmark runs end to end in its CPU smoke mode."""

from __future__ import annotations

import json
import os
import subprocess

from support import REPO

SCRIPT = REPO / "bench" / "gpu.sh"


def test_the_script_parses_and_explains_itself():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    out = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "--cpu-smoke" in out.stdout and "BUDGET_S" in out.stdout
    bad = subprocess.run([str(SCRIPT), "--fast"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_cpu_smoke_runs_every_step(tmp_path):
    """Archive, throughput and FLOPs, timed training, encoding, analysis, tags, the report."""
    env = {**os.environ, "WORK": str(tmp_path / "work"), "OUT": str(tmp_path / "out")}
    run = subprocess.run([str(SCRIPT), "--cpu-smoke"], capture_output=True, text=True, env=env,
                         timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    (report,) = (tmp_path / "out").glob("gpu-*.json")
    rep = json.loads(report.read_text())
    assert rep["device"] == "cpu" and rep["preset"] == "tiny"
    assert rep["train"]["flops_per_spectrum"] > rep["encode"]["flops_per_spectrum"] > 0
    assert rep["train"]["spectra_per_s_per_gpu"] > 0 and rep["encode"]["spectra_per_s"] > 0
    assert rep["encode"]["harps_encode_spectra_per_s"] > 0
    assert set(rep["science"]["tags_mae"]) == {"teff", "logg", "mh", "vsini", "rv"}
    assert "spectra/s" in run.stdout and "tag MAE" in run.stdout
