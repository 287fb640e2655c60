"""No single request stalls the service; internals stay inside (issue 8).

Each test is a regression test for one finding of an attack on ``make demo``:
a quadratic-time UDF argument, async jobs that outlive their deletion, raw
SQL in error messages, DaCHS's test services and tar builder reachable,
over-long URLs without a reply, and secrets readable by every local user.
All of it through the front door (nginx) of the running multi-worker set-up,
with real HTTP; the database checks read PostgreSQL itself.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import pyvo
import requests
from support import REPO, require

import harps_site

pytestmark = pytest.mark.server

#: What no error message may contain: SQL, PostgreSQL's wording, file paths.
LEAKS = ("SELECT ", "psycopg2", "relation \"", harps_site.GAVO_ROOT, "/usr/lib", "Traceback")


def _psql(sql: str) -> str:
    res = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-d", "gavo", "-Atc", sql],
                         capture_output=True, text=True, timeout=60, check=True)
    return res.stdout.strip()


def _sync(service, query: str, timeout: float = 300) -> requests.Response:
    return requests.post(f"{service.tap}/sync", data={
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query}, timeout=timeout)


def _a_public_did(service) -> str:
    rows = service.tap_rows("SELECT TOP 1 ssa_pubdid FROM harps.latents ORDER BY ssa_pubdid")
    require(bool(rows), "no latents published (run make demo)")
    return rows[0]["ssa_pubdid"]


def test_long_udf_argument_is_refused_while_others_are_served(service):
    """499,000 characters of digits: refused at once, SSA answered meanwhile.

    The old number pattern backtracked quadratically (32,000 characters took
    18 s of the only server process; 499,000, just under DaCHS's 500,000 byte
    limit for a sync request, would take over an hour).
    """
    _a_public_did(service)
    argument = "1" * 499_000 + "x 0 0"
    result: dict[str, requests.Response] = {}

    def attack() -> None:
        result["tap"] = _sync(
            service, f"SELECT TOP 1 gavo_latentdist(knn, '{argument}') FROM harps.latents")

    thread = threading.Thread(target=attack)
    thread.start()
    ssa = requests.get(service.ssa, params={"REQUEST": "queryData", "POS": "219.87,-60.83",
                                            "SIZE": "0.2"}, timeout=120)
    thread.join(timeout=300)
    assert not thread.is_alive(), "the long argument was still being processed after 300 s"
    assert ssa.status_code == 200 and 'value="OK"' in ssa.text
    answer = result["tap"]
    assert answer.status_code in (200, 400), answer.status_code
    assert "QUERY_STATUS" in answer.text and "ERROR" in answer.text
    assert "499005 characters" in answer.text and "at most 4096" in answer.text


@pytest.mark.parametrize("item", ["1" * 3000 + "x", "." + "5" * 3000 + ".", "1e" + "9" * 3000])
def test_bad_numbers_are_named_shortly(service, item):
    """A bad number is refused with a message that quotes it, shortened."""
    _a_public_did(service)
    r = _sync(service, f"SELECT TOP 1 gavo_latentdist(knn, '{item} 0 0') FROM harps.latents")
    assert "ERROR" in r.text and r.status_code < 500
    assert ("is not a number" in r.text or "is not finite" in r.text
            or "dimensions" in r.text), r.text[:1000]
    assert item not in r.text  # quoted shortened, not echoed whole


@pytest.mark.parametrize("column", ["nosuch.latents.knn", "public.latents.knn",
                                    "tap_schema.latents.knn"])
def test_udf_on_an_unknown_latent_table_gives_no_sql(service, column):
    """A schema-qualified first argument naming no latent table: a plain message."""
    did = _a_public_did(service)
    r = _sync(service, f"SELECT TOP 1 gavo_latentdist({column}, '{did}') FROM harps.latents")
    assert r.status_code < 500
    assert "ERROR" in r.text
    for leak in LEAKS:
        assert leak not in r.text, (leak, r.text[:2000])


def test_qualified_udf_on_the_published_table_still_works(service):
    did = _a_public_did(service)
    rows = service.tap_rows(
        f"SELECT TOP 1 ssa_pubdid, gavo_latentdist(harps.latents.knn, '{did}') AS d "
        "FROM harps.latents ORDER BY d")
    assert rows[0]["ssa_pubdid"] == did and float(rows[0]["d"]) == 0.0


# A query that runs for hours on the demo archive (four-fold self join).
SLOW_QUERY = ("SELECT COUNT(*) AS n FROM harps.data AS a, harps.data AS b, harps.data AS c, "
              "harps.data AS d WHERE a.ssa_snr + b.ssa_snr + c.ssa_snr + d.ssa_snr > -1")


def _active_adql_backends() -> int:
    """Busy backends of the role that runs users' ADQL (DaCHS reads through
    a cursor, so the query shows as ``FETCH FORWARD ...``)."""
    return int(_psql("SELECT count(*) FROM pg_stat_activity "
                     "WHERE usename = 'untrusted' AND state = 'active'") or 0)


def _wait(predicate, what: str, limit: float = 60.0) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``limit`` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"not within {limit:.0f} s: {what}")


def test_deleting_an_executing_async_job_stops_its_query(service):
    """DELETE on an EXECUTING job ends its runner and its PostgreSQL backend."""
    require(os.geteuid() == 0, "reading pg_stat_activity needs root")
    _wait(lambda: _active_adql_backends() == 0, "no ADQL query running before the test")
    r = requests.post(f"{service.tap}/async", data={
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": SLOW_QUERY},
        timeout=60, allow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    job_url = r.headers["Location"]
    job_id = job_url.rstrip("/").rsplit("/", 1)[-1]
    try:
        assert requests.post(f"{job_url}/phase", data={"PHASE": "RUN"}, timeout=60,
                             allow_redirects=False).status_code == 303
        _wait(lambda: requests.get(f"{job_url}/phase", timeout=30).text.strip() == "EXECUTING"
              and _active_adql_backends() == 1, "the job executing its query")
    except BaseException:
        requests.delete(job_url, timeout=60)  # never leave an hours-long query behind
        raise
    deleted = requests.delete(job_url, timeout=60, allow_redirects=False)
    assert deleted.status_code == 303
    assert requests.get(job_url, timeout=30).status_code == 404
    _wait(lambda: _active_adql_backends() == 0, "the deleted job's query stopping")
    _wait(lambda: subprocess.run(["pgrep", "-f", f"taprun -- {job_id}"],
                                 capture_output=True).returncode == 1,
          "the deleted job's taprun process ending")


def test_untrusted_role_has_database_backstops():
    """The ADQL role: statement timeout and a check for dead clients."""
    require(os.geteuid() == 0, "reading roles needs root")
    config = _psql("SELECT array_to_string(rolconfig, ' ') FROM pg_roles "
                   "WHERE rolname = 'untrusted'")
    assert "statement_timeout=" in config
    assert "client_connection_check_interval=1s" in config


@pytest.mark.parametrize("path", [
    "/__system__/tests/errors/form",
    "/__system__/tests/timeout/form",
    "/__system__/tests/uploads/form",
    "/__system__/products/getTar/form",
])
def test_dachs_test_and_tar_services_are_not_exposed(service, path):
    r = requests.get(service.url + path, timeout=30)
    assert r.status_code == 404


@pytest.mark.parametrize("length", [9_000, 17_000, 40_000])
def test_overlong_urls_get_an_http_answer(service, length):
    """A long GET gets a reply (414 past 16 KiB), never a closed connection."""
    url = service.ssa + "?REQUEST=queryData&TARGETNAME=" + "A" * length
    r = requests.get(url, timeout=60)
    assert r.status_code in (200, 400, 414), r.status_code
    if length > 16_384:
        assert r.status_code == 414


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("path", [
    "/etc/gavo.rc", *(f"{harps_site.GAVO_ROOT}/etc/{name}" for name in (
        "dsn", "feed", "trustedquery", "untrustedquery", "harps-admin-password"))])
def test_secrets_are_readable_by_dachs_only(path):
    p = Path(path)
    require(p.exists(), f"{path} missing (DaCHS not installed)")
    assert _mode(p) & 0o007 == 0, f"{path} is {oct(_mode(p))}: others may read it"
    assert _mode(p) & 0o020 == 0, f"{path} is {oct(_mode(p))}: the group may write it"
    assert p.stat().st_gid == __import__("grp").getgrnam(harps_site.DACHS_GROUP).gr_gid


def test_dachsctl_prints_usage_without_root_check():
    """Usage comes whole (it used to be cut after 15 lines) and needs no root."""
    res = subprocess.run([str(REPO / "etc" / "dachsctl"), "--help"], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 2
    assert "etc/dachsctl pids" in res.stderr and "WORKER_BASE_PORT" in res.stderr


def test_capabilities_still_valid_xml(service):
    """The front door passes DaCHS's documents through unchanged."""
    r = requests.get(f"{service.tap}/capabilities", timeout=30)
    assert r.status_code == 200
    ET.fromstring(r.content)


def test_public_products_are_served_from_the_front_door_cache(service):
    """Previews and SODA cutouts of public spectra: the second anonymous GET
    is a cache hit with the same bytes; with credentials nothing is cached."""
    did = _a_public_did(service)
    for url in (service.preview(did), service.dlget(did, BAND="6.56e-7 6.57e-7")):
        first = requests.get(url, timeout=120)
        second = requests.get(url, timeout=120)
        assert first.status_code == second.status_code == 200
        assert second.headers.get("X-Cache-Status") == "HIT", url
        assert second.content == first.content
        with_auth = requests.get(url, auth=("nobody", "x"), timeout=120)
        assert with_auth.headers.get("X-Cache-Status") == "BYPASS"


#: What a worker killed during sync queries leaves behind, made with DaCHS's
#: own UWS calls, as ``taprunner.runSyncTAPJob`` does (pid -1, EXECUTING).
MAKE_ORPHANS = """
import datetime
from gavo import api
from gavo.protocols import tap, uws
for _ in range(5):
    job_id = tap.WORKER_SYSTEM.getNewIdFromArgs({}, {})
    with tap.WORKER_SYSTEM.changeableJob(job_id) as job:
        job.change(phase=uws.EXECUTING, pid=-1, executionDuration=60,
                   startTime=datetime.datetime.utcnow() - datetime.timedelta(hours=2))
    print(job_id)
"""


def test_orphaned_sync_jobs_do_not_block_async_queries(service):
    """Sync jobs left EXECUTING by killed workers no longer starve async TAP.

    A worker killed during a sync query leaves its job row EXECUTING with
    pid -1 (seen after SIGKILL under load); DaCHS counted such rows against
    maxTAPRunning (4) forever.  Five such rows are made; an async query must
    still run, and the rows must go.
    """
    require(os.geteuid() == 0, "writing the UWS table needs root")
    made = subprocess.run([sys.executable, "-c", MAKE_ORPHANS], capture_output=True,
                          text=True, timeout=120, check=True).stdout.split()
    assert len(made) == 5
    ids = ", ".join(f"'{j}'" for j in made)
    # pyvo's own session would leave a socket open until some later test
    # collects it (ResourceWarning, an error under filterwarnings=error)
    with requests.Session() as session:
        try:
            job = pyvo.dal.TAPService(service.tap, session=session).submit_job(
                "SELECT TOP 1 ssa_pubdid FROM harps.data")
            job.run()
            job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=150)
            assert job.phase == "COMPLETED", job.phase
            job.delete()
            assert _psql(f"SELECT count(*) FROM tap_schema.tapjobs WHERE jobId IN ({ids})") == "0"
        finally:
            _psql(f"DELETE FROM tap_schema.tapjobs WHERE jobId IN ({ids})")


@pytest.mark.parametrize("query", ["TARGETNAME=%00", "FORMAT=%00", "PUBDID=a%00b"])
def test_nul_in_a_parameter_is_a_clear_400(service, query):
    r = requests.get(f"{service.ssa}?REQUEST=queryData&{query}", timeout=30)
    assert r.status_code == 400 and "NUL" in r.text
    for leak in LEAKS + ("NUL (0x00) characters",):
        assert leak not in r.text


def test_no_daemon_keeps_the_dachsctl_lock(service):
    """PostgreSQL, supervisord, nginx and the workers must not inherit the lock
    that serialises `etc/dachsctl start/restart` (they did: every later
    restart then waited for ever)."""
    require(os.geteuid() == 0, "reading other processes' file descriptors needs root")
    holders = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        if any(fd.endswith("/dachsctl.lock") for fd in fds) and "dachsctl" not in cmdline:
            holders.append(cmdline[:80])
    assert not holders, holders
