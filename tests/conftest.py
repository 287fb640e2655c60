"""Shared fixtures: the live DaCHS service, the real HARPS files, a synthetic archive.

Tests marked ``server`` talk to the running service over HTTP; the session
fixture :func:`service` starts PostgreSQL and DaCHS itself when they are not
answering (``etc/dachsctl start``).  Nothing of DaCHS or the database is
mocked.

In CI (``CI=true``) a missing prerequisite fails the test instead of skipping
it, so that nothing is skipped silently.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data" / "harps_real"
RESDIR = Path("/var/gavo/inputs/harps")
RD_ID = "harps/q"
AUTHORITY = os.environ.get("AUTHORITY", "harps.example.org")
SERVER_URL = os.environ.get(
    "SERVER_URL", f"http://localhost:{os.environ.get('PORT', '8080')}").rstrip("/")
IN_CI = os.environ.get("CI", "").lower() == "true"


#: Lines that belong in the run's output even when every test passes (the
#: validators' warning counts): printed at the end by pytest_terminal_summary.
SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    if SUMMARY:
        terminalreporter.section("validators")
        for line in SUMMARY:
            terminalreporter.write_line(line)


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


@dataclass(frozen=True)
class Service:
    """The running HARPS service."""

    url: str

    @property
    def ssa(self) -> str:
        return f"{self.url}/harps/q/ssa/ssap.xml"

    @property
    def tap(self) -> str:
        return f"{self.url}/tap"

    def dlget(self, did: str, **params: str) -> str:
        query = urllib.parse.urlencode({"ID": did, **params})
        return f"{self.url}/harps/q/sdl/dlget?{query}"

    def dlmeta(self, did: str) -> str:
        return f"{self.url}/harps/q/sdl/dlmeta?" + urllib.parse.urlencode({"ID": did})

    def preview(self, did: str) -> str:
        return f"{self.url}/harps/q/pv/dlget?" + urllib.parse.urlencode({"ID": did})

    def tap_rows(self, query: str) -> list[dict[str, str]]:
        """Run a sync TAP query and return CSV rows (strings)."""
        r = requests.post(f"{self.tap}/sync", data={
            "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query,
            "RESPONSEFORMAT": "csv"}, timeout=120)
        assert r.status_code == 200 and "QUERY_STATUS" not in r.text[:2000], r.text[:2000]
        return list(csv.DictReader(r.text.splitlines()))


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="session")
def service() -> Service:
    """The live service, started if it is not answering."""
    if not _answers(SERVER_URL):
        require(os.geteuid() == 0, "starting DaCHS needs root (run `make test`)")
        subprocess.run([str(REPO / "etc" / "dachsctl"), "start"], check=True)
    assert _answers(SERVER_URL), f"DaCHS does not answer at {SERVER_URL}"
    return Service(SERVER_URL)


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


@pytest.fixture(scope="session")
def real_files(service: Service) -> list[dict[str, str]]:
    """The real HARPS files from ../shared, ingested; rows of their MANIFEST.csv."""
    require(SHARED.is_dir(), f"real HARPS test files not found at {SHARED}")
    result = run_ingest(SHARED)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    with open(SHARED / "MANIFEST.csv", newline="") as f:
        return list(csv.DictReader(f))
