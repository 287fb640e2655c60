"""What the tests share besides fixtures: paths, the service's URLs, helpers.

Test modules import from here (``from support import ...``); fixtures are
in ``conftest.py``.  The deployment facts come from :mod:`harps_site`.

In CI (``CI=true``) a missing prerequisite fails the test instead of skipping
it, so that nothing is skipped silently.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from astropy.io import fits
from astropy.time import Time

import harps_site
from harps_site import RD_ID

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data" / "harps_real"
RESDIR = harps_site.resdir_of(RD_ID)
INPUTS_DIR = Path(harps_site.INPUTS_DIR)
#: The real DRS s1d file (HD 189733, 2006) that tests copy under new names.
S1D = SHARED / "s1d" / "HARPS.2006-09-08T02_12_38.604_s1d_A.fits"
EXAMPLE_ACCREF = harps_site.EXAMPLE_ACCREF
AUTHORITY = os.environ.get("AUTHORITY", "harps.example.org")
SERVER_URL = os.environ.get(
    "SERVER_URL", f"http://localhost:{os.environ.get('PORT', '8080')}").rstrip("/")
IN_CI = os.environ.get("CI", "").lower() == "true"


#: Lines that belong in the run's output even when every test passes (the
#: validators' warning counts): printed at the end by pytest_terminal_summary.
SUMMARY: list[str] = []


def require(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


def pub_did(accref: str) -> str:
    """The standard DaCHS publisher DID of an archived file."""
    return f"ivo://{AUTHORITY}/~?{accref}"


def dachs(*args: str, stingy: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run ``dachs ARGS`` as the DaCHS administrator (:func:`harps_site.dachs_command`)."""
    return subprocess.run(harps_site.dachs_command(*args, stingy=stingy), **kw)


@dataclass(frozen=True)
class Service:
    """The running HARPS service."""

    url: str

    @property
    def ssa(self) -> str:
        return f"{self.url}/{RD_ID}/ssa/ssap.xml"

    @property
    def tap(self) -> str:
        return f"{self.url}/tap"

    def dlget(self, did: str, **params: str) -> str:
        query = urllib.parse.urlencode({"ID": did, **params})
        return f"{self.url}/{RD_ID}/sdl/dlget?{query}"

    def dlmeta(self, did: str) -> str:
        return f"{self.url}/{RD_ID}/sdl/dlmeta?" + urllib.parse.urlencode({"ID": did})

    def preview(self, did: str) -> str:
        return f"{self.url}/{RD_ID}/pv/dlget?" + urllib.parse.urlencode({"ID": did})

    def tap_rows(self, query: str) -> list[dict[str, str]]:
        """Run a sync TAP query and return CSV rows (strings)."""
        r = requests.post(f"{self.tap}/sync", data={
            "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query,
            "RESPONSEFORMAT": "csv"}, timeout=120)
        assert r.status_code == 200 and "QUERY_STATUS" not in r.text[:2000], r.text[:2000]
        return list(csv.DictReader(r.text.splitlines()))


def run_ingest(*paths: str | Path, env: dict | None = None, rd: str = RD_ID,
               latents: bool = False) -> subprocess.CompletedProcess:
    """Run the real ingest command (as the operator would) and capture its output.

    Latent encoding is off unless asked for: these tests are about files,
    and the published model (if any) belongs to the demo.
    """
    extra = [] if latents else ["--no-latents"]
    return subprocess.run(
        [sys.executable, "-m", "harps_service.ingest", "--rd", rd, *extra, *map(str, paths)],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=1800)


def restamped_s1d(dst: Path, target: str, date_obs: str) -> str:
    """Copy :data:`S1D` to ``dst`` as another observation: a new product.

    Parameters
    ----------
    dst : Path
        Where the copy is written.
    target : str
        Its OBJECT.
    date_obs : str
        Its DATE-OBS (ISO, UTC, e.g. ``2010-01-01T00:00:00.000``); MJD-OBS follows.

    Returns
    -------
    str
        The product id the archive derives from it (``HARPS.<DATE-OBS>_s1d_A``).
    """

    shutil.copyfile(S1D, dst)
    with fits.open(dst, mode="update") as hdul:
        h = hdul[0].header
        h["OBJECT"] = target
        h["DATE-OBS"] = date_obs
        h["MJD-OBS"] = Time(date_obs, scale="utc").mjd
    return f"HARPS.{date_obs}_s1d_A"


def tiny_checkpoint(path: Path, seed: int = 11, steps: int = 3) -> Path:
    """A tiny-preset model moved off its initialisation, saved as a checkpoint at ``path``.

    Different seeds give different weights (hence different checkpoint hashes
    and model ids).
    """
    import torch

    from ml import checkpoint
    from ml.model import ModelConfig, SpectrumVAE
    from ml.preprocess import Recipe
    config = ModelConfig.from_preset("tiny")
    torch.manual_seed(seed)
    model = SpectrumVAE(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(4, config.length) + 0.5
    for _ in range(steps):
        xh, mu, lv = model(x)
        loss = model.loss(x, torch.ones_like(x, dtype=torch.bool), xh, mu, lv, 1e-3)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    checkpoint.save(path, model_config=config.as_dict(), model_state=model.state_dict(),
                    optimizer_state=opt.state_dict(), recipe=Recipe(config.grid).describe(),
                    step=steps, epoch=0, data={"file_list_sha256": "0" * 64})
    return path
