"""Shared fixtures: the live DaCHS service, the real HARPS files.

Tests marked ``server`` talk to the running service over HTTP; the session
fixture :func:`service` starts PostgreSQL and DaCHS itself when they are not
answering (``etc/dachsctl start``).  Nothing of DaCHS or the database is
mocked.  Constants and helpers the tests import are in ``support.py``.

Every test module that needs the service carries the ``server`` marker
(``tests/test_layout.py`` checks it): ``make test-fast`` runs the others.
"""

from __future__ import annotations

import csv
import os
import subprocess

import pytest
import requests
from support import REPO, SERVER_URL, SHARED, SUMMARY, Service, require, run_ingest


def pytest_terminal_summary(terminalreporter) -> None:
    if SUMMARY:
        terminalreporter.section("validators")
        for line in SUMMARY:
            terminalreporter.write_line(line)


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


@pytest.fixture(scope="session")
def real_files(service: Service) -> list[dict[str, str]]:
    """The real HARPS files from ../shared, ingested; rows of their MANIFEST.csv."""
    require(SHARED.is_dir(), f"real HARPS test files not found at {SHARED}")
    result = run_ingest(SHARED)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    with open(SHARED / "MANIFEST.csv", newline="") as f:
        return list(csv.DictReader(f))
