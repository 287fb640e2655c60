"""harps-ingest against the live service: real files, refusals, idempotence, atomicity."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from support import (
    INPUTS_DIR,
    RESDIR,
    S1D,
    SHARED,
    dachs,
    pub_did,
    require,
    restamped_s1d,
    run_ingest,
)

pytestmark = pytest.mark.server



def _admin_conn():
    from gavo import base
    return base.getDBConnection("admin")


@pytest.fixture
def scratch(tmp_path):
    """A directory for test inputs; products the test creates are removed after it.

    Test products are copies of a real s1d file with the OBJECT renamed to
    TEST-INGEST-* and a new DATE-OBS, so they never mix with real data.
    """
    made: list[str] = []

    def make(name: str, date_obs: str) -> Path:
        dst = tmp_path / f"{name}.fits"
        made.append(restamped_s1d(dst, f"TEST-INGEST-{name}", date_obs))
        return dst

    yield tmp_path, make
    with _admin_conn() as conn:
        rows = list(conn.query("SELECT accref FROM harps.raw_data WHERE product_id = ANY(%(p)s)",
                               {"p": made}))
        conn.execute("DELETE FROM harps.raw_data WHERE product_id = ANY(%(p)s)", {"p": made})
        conn.commit()
    for (accref,) in rows:
        Path(INPUTS_DIR, accref).unlink(missing_ok=True)


def _count(service) -> int:
    return int(service.tap_rows("SELECT COUNT(*) AS n FROM harps.data")[0]["n"])


def test_real_files_published_with_correct_metadata(service, real_files):
    rows = {r["product_id"]: r for r in service.tap_rows(
        "SELECT product_id, ssa_targname, mjd_obs, ssa_timeExt, ra, dec, drs_version, prog_id,"
        " berv, ssa_length, sn50, file_layout, ssa_pubDID, accref FROM harps.data"
        " WHERE synthetic = 0")}
    checked = 0
    for m in real_files:
        if "edge_cases" in m["local_path"]:
            continue
        key = (f"HARPS.{m['DATE_OBS']}_s1d_A" if m["local_path"].startswith("s1d")
               else "ADP.2014-09-16T11:04:45.123")
        row = rows[key]
        assert row["ssa_targname"] == m["OBJECT"]
        assert float(row["mjd_obs"]) == pytest.approx(float(m["MJD_OBS"]), abs=1e-8)
        assert float(row["ssa_timeExt"]) == pytest.approx(float(m["EXPTIME"]))
        assert float(row["ra"]) == pytest.approx(float(m["RA"]))
        assert float(row["dec"]) == pytest.approx(float(m["DEC"]))
        assert row["drs_version"] == m["DRS_VERSION"]
        assert row["prog_id"] == m["PROG_ID"]
        assert float(row["berv"]) == pytest.approx(float(m["BERV_kms"]))
        assert int(row["ssa_length"]) == int(m["n_points"])
        assert float(row["sn50"]) == pytest.approx(float(m["SN50"]), rel=1e-6)
        assert row["file_layout"] == ("S1D" if m["local_path"].startswith("s1d") else "ADP")
        # TAP gives the accref as the full product URL
        assert row["accref"] == f"{service.url}/getproduct/{row['ssa_pubDID'].split('?', 1)[1]}"
        assert row["ssa_pubDID"] == pub_did(row["accref"].split("/getproduct/", 1)[1])
        checked += 1
    assert checked == 8
    # the garbage file never made it in
    assert not service.tap_rows("SELECT product_id FROM harps.data WHERE ssa_targname = 'Gl273'")


def test_garbage_is_refused_with_one_line_and_status_1(service):
    require(SHARED.is_dir(), "real HARPS files missing")
    result = run_ingest(SHARED / "edge_cases")
    assert result.returncode == 1
    refused = [ln for ln in result.stdout.splitlines() if ln.startswith("REFUSED")]
    assert len(refused) == 1
    assert "HARPS.2003-12-13T06_19_48.371_s1d_A.fits: garbage data" in refused[0]


def test_reingest_changes_nothing(service, real_files):
    before = service.tap_rows("SELECT * FROM harps.data ORDER BY product_id")
    result = run_ingest(SHARED / "s1d", SHARED / "adp")
    assert result.returncode == 0, result.stdout
    assert "0 new, 8 unchanged, 0 refused" in result.stdout
    after = service.tap_rows("SELECT * FROM harps.data ORDER BY product_id")
    assert before == after


def test_mixed_batch_refuses_each_bad_file_and_imports_the_rest(service, real_files, scratch):
    tmp, make = scratch
    good = make("good", "2011-01-01T01:01:01.001")
    (tmp / "notes.fits").write_text("observing notes, not FITS\n")
    truncated = tmp / "truncated.fits"
    truncated.write_bytes(S1D.read_bytes()[: S1D.stat().st_size // 3])
    feros = tmp / "feros.fits"
    shutil.copyfile(S1D, feros)
    with fits.open(feros, mode="update") as hdul:
        hdul[0].header["INSTRUME"] = "FEROS"
    image = tmp / "image.fits"
    hdu = fits.PrimaryHDU(np.zeros((10, 10), np.float32))
    hdu.header["INSTRUME"] = "HARPS"
    hdu.writeto(image)
    n0 = _count(service)

    result = run_ingest(tmp)
    assert result.returncode == 1, result.stdout
    refused = {ln.split(":", 1)[0].split("/")[-1]: ln for ln in result.stdout.splitlines()
               if ln.startswith("REFUSED")}
    assert set(refused) == {"notes.fits", "truncated.fits", "feros.fits", "image.fits"}
    assert "not a FITS file" in refused["notes.fits"]
    assert "truncated" in refused["truncated.fits"]
    assert "wrong instrument: INSTRUME='FEROS'" in refused["feros.fits"]
    assert "wrong layout" in refused["image.fits"]
    assert "1 imported, 0 unchanged, 4 refused" in result.stdout
    assert _count(service) == n0 + 1
    rows = service.tap_rows(
        "SELECT ssa_targname FROM harps.data WHERE ssa_targname LIKE 'TEST-INGEST-%'")
    assert [r["ssa_targname"] for r in rows] == ["TEST-INGEST-good"]
    assert good.exists()  # the input is copied, never moved


def test_changed_file_for_an_archived_product_is_refused(service, real_files, tmp_path):
    changed = tmp_path / S1D.name
    shutil.copyfile(S1D, changed)
    with fits.open(changed, mode="update") as hdul:
        hdul[0].data[1000:1010] *= 1.01
    before = (RESDIR / "data" / "s1d" / "2006" / S1D.name).read_bytes()
    result = run_ingest(changed)
    assert result.returncode == 1
    assert "different content; the archive does not replace data" in result.stdout
    assert (RESDIR / "data" / "s1d" / "2006" / S1D.name).read_bytes() == before


def _hold_lock(ready: threading.Event, release: threading.Event) -> None:
    with _admin_conn() as conn:
        conn.execute("LOCK TABLE dc.products IN ACCESS EXCLUSIVE MODE")
        ready.set()
        release.wait(120)
        conn.rollback()


def test_failed_import_leaves_published_data_intact_then_later_adds(service, real_files, scratch):
    tmp, make = scratch
    new = [make(f"late{i}", f"2011-02-0{i + 1}T02:02:02.002") for i in range(3)]
    before = service.tap_rows("SELECT * FROM harps.data ORDER BY product_id")
    files_before = sorted(p for p in (RESDIR / "data").rglob("*") if p.is_file())

    # A real failure inside DaCHS's transaction: dc.products is locked by a
    # concurrent maintenance transaction and the import gives up after 3 s.
    ready, release = threading.Event(), threading.Event()
    locker = threading.Thread(target=_hold_lock, args=(ready, release))
    locker.start()
    try:
        assert ready.wait(30)
        result = run_ingest(tmp, env={"PGOPTIONS": "-c lock_timeout=3000"})
    finally:
        release.set()
        locker.join()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "IMPORT FAILED, nothing changed" in result.stdout
    assert service.tap_rows("SELECT * FROM harps.data ORDER BY product_id") == before
    assert sorted(p for p in (RESDIR / "data").rglob("*") if p.is_file()) == files_before

    result = run_ingest(*new)
    assert result.returncode == 0, result.stdout
    assert "3 imported" in result.stdout
    assert len(service.tap_rows(
        "SELECT product_id FROM harps.data WHERE ssa_targname LIKE 'TEST-INGEST-late%'")) == 3


def test_usage_errors_name_the_parameter():
    result = subprocess.run(
        ["harps-ingest", "--workers", "0", "x"], capture_output=True, text=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert result.returncode == 3
    assert "--workers must be at least 1" in result.stderr
    missing = run_ingest("/nonexistent/dir")
    assert "REFUSED /nonexistent/dir: no such file or directory" in missing.stdout
    assert missing.returncode == 1


def _dump(schema: str) -> tuple[str, str]:
    def copy(query: str) -> str:
        return subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-d", "gavo", "-tAc",
                               f"COPY ({query}) TO STDOUT"], capture_output=True, text=True,
                              check=True).stdout
    return (copy(f"SELECT * FROM {schema}.raw_data ORDER BY product_id"),
            copy(f"SELECT * FROM dc.products WHERE sourcetable = '{schema}.raw_data' "
                 "ORDER BY accref"))


def test_ingest_and_rebuild_from_files_give_identical_rows(service):
    """harps-ingest (manifest of parsed headers) == dachs imp of the archive tree."""
    require(SHARED.is_dir(), "real HARPS files missing")
    name = "harpsitest"
    ctl = str(Path(__file__).resolve().parents[1] / "etc" / "dachsctl")
    subprocess.run([ctl, "drop-as", name], capture_output=True)
    subprocess.run([ctl, "deploy-as", name], check=True, capture_output=True)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "harps_service.ingest", "--rd", f"{name}/q", str(SHARED)],
            capture_output=True, text=True)
        # every real file but the garbage one (edge_cases/), whatever ../shared holds
        valid = sum(1 for p in SHARED.rglob("*.fits") if "edge_cases" not in p.parts)
        assert result.returncode == 1 and f"{valid} imported" in result.stdout, result.stdout
        via_ingest = _dump(name)
        assert via_ingest[0].count("\n") == valid and via_ingest[1].count("\n") == valid
        dachs("drop", f"{name}/q", check=True, capture_output=True)
        dachs("imp", f"{name}/q", "import", check=True, capture_output=True)
        assert _dump(name) == via_ingest
    finally:
        subprocess.run([ctl, "drop-as", name], capture_output=True)
