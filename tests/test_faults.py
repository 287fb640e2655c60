"""The multi-worker set-up under faults: a worker killed, PostgreSQL restarted.

``make demo`` runs one DaCHS worker per core under supervisord behind an
nginx front door (``etc/dachsctl``).  These tests break it on purpose and
check, through the front door, that no client hangs, that the rest keeps
serving, and that it heals without anybody restarting anything by hand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support import REPO, require

pytestmark = pytest.mark.server

CTL = str(REPO / "etc" / "dachsctl")


def _workers() -> dict[str, int]:
    res = subprocess.run([CTL, "pids"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return {name: int(pid) for name, pid in (line.split() for line in res.stdout.splitlines())}


def _wait(predicate, what: str, limit: float = 90.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"not within {limit:.0f} s: {what}")


def _public_did(service) -> str:
    # only public spectra are encoded
    rows = service.tap_rows("SELECT TOP 1 ssa_pubdid FROM harps.latents ORDER BY ssa_pubdid")
    require(bool(rows), "no public spectra (run make demo)")
    return rows[0]["ssa_pubdid"]


def _outcome(url: str) -> str:
    """'ok', 'http NNN' or the exception class: never more than 120 s."""
    try:
        r = requests.get(url, timeout=120)
        return "ok" if r.status_code == 200 else f"http {r.status_code}"
    except requests.Timeout:
        return "timeout"
    except requests.RequestException as ex:
        return ex.__class__.__name__


@pytest.fixture()
def root():
    require(os.geteuid() == 0, "killing workers and restarting PostgreSQL needs root")


def test_one_worker_per_core_by_default(service, root):
    workers = _workers()
    expected = int(os.environ.get("WORKERS") or os.cpu_count())
    assert len(workers) == expected, workers


def test_a_killed_worker_fails_cleanly_and_comes_back(service, root):
    """SIGKILL to a worker with requests in flight: no hang, no lasting harm."""
    did = _public_did(service)
    url = service.dlget(did)  # the full-resolution SDM VOTable: a long request
    before = _workers()
    victim, pid = sorted(before.items())[0]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_outcome, url) for _ in range(16)]
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        outcomes = [f.result() for f in futures]
    assert "timeout" not in outcomes, outcomes
    assert all(o in ("ok", "http 502", "http 503", "http 504", "ConnectionError",
                     "ChunkedEncodingError") for o in outcomes), outcomes
    # the others keep serving at once (nginx passes over the dead worker)
    assert [_outcome(service.ssa + "?REQUEST=queryData&MAXREC=1") for _ in range(10)] \
        == ["ok"] * 10
    # and the supervisor brings the killed one back
    _wait(lambda: _workers().get(victim) not in (None, pid), f"{victim} restarted")
    subprocess.run([CTL, "start"], check=True, capture_output=True, timeout=180)
    assert set(_workers()) == set(before)


def test_postgresql_restart_heals_without_a_service_restart(service, root):
    """Once PostgreSQL is back, every request works: no worker restart, no 500s.

    DaCHS's pools used to hand out the dead connections of the old server,
    one failed request each; the pools now check a connection first.
    """
    did = _public_did(service)
    urls = [service.ssa + "?REQUEST=queryData&MAXREC=5", service.dlmeta(did),
            service.dlget(did, BAND="6.55e-7 6.57e-7"), service.preview(did),
            service.tap + "/sync?REQUEST=doQuery&LANG=ADQL&QUERY="
            + requests.utils.quote("SELECT TOP 3 ssa_pubdid FROM harps.data")]
    # warm every worker's pools, so that they hold connections to kill
    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(_outcome, urls * 8)) == {"ok"}
    workers = _workers()
    subprocess.run(["pg_ctlcluster", "15", "main", "restart"], check=True, timeout=120)
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(_outcome, urls * 8))
    assert outcomes == ["ok"] * len(outcomes), outcomes
    assert _workers() == workers, "a worker had to be restarted"
