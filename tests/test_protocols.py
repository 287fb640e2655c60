"""SSA, DataLink/SODA, TAP and ObsCore through real clients (pyvo, requests)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import pyvo
import requests
from astropy.io import fits
from astropy.io.votable import parse_single_table
from support import EXAMPLE_ACCREF, SHARED, pub_did

from harps_data import fitsio

pytestmark = pytest.mark.server

ADP_ACCREF = EXAMPLE_ACCREF
ADP_FILE = SHARED / "adp" / "ADP.2014-09-16T11_04_45.123.fits"
ALPHA_CEN_B = (219.87, -60.83)


@pytest.fixture(scope="module")
def ssa(service, real_files):
    return pyvo.dal.SSAService(service.ssa + "?")


def _ids(results) -> set[str]:
    return {str(r["ssa_pubDID"]) for r in results}


def _alpha_cen_b_dates() -> list[str]:
    """DATE-OBS of every real alpha Cen B file in ../shared (s1d/ and cenb/:
    the expected answers follow the shared data, not a count typed here)."""
    dates = [fits.getheader(path)["DATE-OBS"] for path in sorted(SHARED.rglob("*.fits"))
             if "edge_cases" not in path.parts
             and fits.getheader(path).get("OBJECT") == "HD128621"]
    assert len(dates) >= 6, dates
    return dates


def test_ssa_pos_size_finds_alpha_cen_b(ssa):
    res = ssa.search(pos=ALPHA_CEN_B, diameter=0.1)
    targets = {str(r["ssa_targname"]) for r in res}
    assert "HD128621" in targets
    assert sum(str(r["ssa_targname"]) == "HD128621" for r in res) == len(_alpha_cen_b_dates())
    far = ssa.search(pos=(10.0, 10.0), diameter=0.1)
    assert "HD128621" not in {str(r["ssa_targname"]) for r in far}


def test_ssa_band_time_targetname(ssa, service):
    base = {"REQUEST": "queryData", "TARGETNAME": "HD128621"}
    # BAND in metres: H alpha is covered, 800 nm is not
    inside = requests.get(service.ssa, params={**base, "BAND": "6.5e-7/6.6e-7"}, timeout=60)
    outside = requests.get(service.ssa, params={**base, "BAND": "7.9e-7/8.0e-7"}, timeout=60)
    dates = _alpha_cen_b_dates()
    assert len(parse_single_table(io.BytesIO(inside.content)).array) == len(dates)
    assert len(parse_single_table(io.BytesIO(outside.content)).array) == 0
    # TIME: only the spectra taken in May 2012 before May 20
    may = requests.get(service.ssa, params={**base, "TIME": "2012-05-01/2012-05-20"}, timeout=60)
    rows = parse_single_table(io.BytesIO(may.content)).array
    expected = [d for d in dates if "2012-05-01" <= d < "2012-05-20"]
    assert len(rows) == len(expected) and 0 < len(expected) < len(dates)


def test_ssa_format_metadata_describes_parameters(service, real_files):
    r = requests.get(service.ssa, params={"REQUEST": "queryData", "FORMAT": "METADATA"},
                     timeout=60)
    assert r.status_code == 200
    for name in ("INPUT:POS", "INPUT:SIZE", "INPUT:BAND", "INPUT:TIME", "INPUT:TARGETNAME"):
        assert f'name="{name}"' in r.text
    for column in ("ssa_snr", "berv", "airmass", "prog_id", "release_date", "drs_version"):
        assert f'name="{column}"' in r.text


def test_ssa_to_datalink_to_sdm_matches_source_file(ssa, service):
    """The user's path: SSA row -> datalink -> SDM spectrum, values = file."""
    res = ssa.search(pos=(261.21664, -49.94913), diameter=0.02)
    row = next(r for r in res if str(r["ssa_targname"]) == "IC4651No9122")
    assert str(row["ssa_pubDID"]) == pub_did(ADP_ACCREF)
    links = row.getdatalink()
    this = [lk for lk in links if lk.semantics == "#this"
            and lk.content_type == "application/x-votable+xml"]
    assert this, [(lk.semantics, lk.content_type) for lk in links]
    sdm = requests.get(this[0].access_url, timeout=120)
    assert sdm.status_code == 200
    table = parse_single_table(io.BytesIO(sdm.content))
    spec = fitsio.read_spectrum(ADP_FILE)
    np.testing.assert_allclose(table.array["spectral"], spec.wave, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(table.array["flux"], np.float32), spec.flux)
    assert str(table.get_field_by_id("spectral").unit) == "Angstrom"
    assert str(table.get_field_by_id("flux").unit) == "adu"
    assert "spec:Spectrum" in sdm.text[:5000] or b"spec:Spectrum" in sdm.content[:20000]


def test_soda_cutout_in_votable_and_fits(service, real_files):
    did = pub_did(ADP_ACCREF)
    vot = requests.get(service.dlget(did, BAND="6.56e-7 6.57e-7"), timeout=60)
    table = parse_single_table(io.BytesIO(vot.content)).array
    assert len(table) == 1001  # 6560.00 ... 6570.00 in 0.01 A steps
    assert table["spectral"].min() >= 6560.0 - 1e-6 and table["spectral"].max() <= 6570.0 + 1e-6
    fit = requests.get(service.dlget(did, BAND="6.56e-7 6.57e-7", FORMAT="application/fits"),
                       timeout=60)
    assert fit.headers["content-type"].startswith("application/fits")
    with fits.open(io.BytesIO(fit.content)) as hdul:
        assert len(hdul[1].data) == 1001
        spec = fitsio.read_spectrum(ADP_FILE)
        sel = (spec.wave >= 6560.0 - 1e-6) & (spec.wave <= 6570.0 + 1e-6)
        np.testing.assert_array_equal(np.asarray(hdul[1].data["flux"], np.float32), spec.flux[sel])


def test_datalink_original_file_and_preview(service, real_files):
    did = pub_did(ADP_ACCREF)
    meta = parse_single_table(io.BytesIO(
        requests.get(service.dlmeta(did), timeout=60).content)).array
    semantics = {(str(s), str(c))
                 for s, c in zip(meta["semantics"], meta["content_type"], strict=True)}
    assert ("#this", "application/fits") in semantics
    assert ("#preview", "image/png") in semantics
    original = [str(u) for u, c in zip(meta["access_url"], meta["content_type"], strict=True)
                if str(c) == "application/fits"][0]
    assert requests.get(original, timeout=60).content == ADP_FILE.read_bytes()
    png = requests.get(service.preview(did), timeout=60)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_tap_sync_and_async(service, real_files):
    tap = pyvo.dal.TAPService(service.tap)
    query = ("SELECT product_id, ssa_snr FROM harps.data WHERE ssa_targname = 'HD128621' "
             "ORDER BY ssa_snr DESC")
    sync = tap.run_sync(query).to_table()
    job = tap.submit_job(query)
    job.run()
    job.wait(phases=["COMPLETED", "ERROR"], timeout=120)
    assert job.phase == "COMPLETED"
    async_ = job.fetch_result().to_table()
    job.delete()
    assert len(sync) == len(_alpha_cen_b_dates())
    assert list(sync["product_id"]) == list(async_["product_id"])
    # the S/N the service publishes is the files' DRS SN50, highest first
    best = max(fitsio.read_meta(p).snr or 0 for p in SHARED.rglob("*.fits")
               if "edge_cases" not in p.parts
               and fits.getheader(p).get("OBJECT") == "HD128621")
    assert float(sync["ssa_snr"][0]) == pytest.approx(best, abs=0.05)


def test_obscore_rows(service, real_files):
    rows = service.tap_rows(
        "SELECT obs_publisher_did, obs_collection, instrument_name, facility_name,"
        " dataproduct_type, calib_level, em_min, em_max, em_res_power, t_exptime,"
        " s_ra, s_dec, access_format, obs_release_date FROM ivoa.obscore"
        f" WHERE obs_publisher_did = '{pub_did(ADP_ACCREF)}'")
    assert len(rows) == 1
    r = rows[0]
    assert (r["obs_collection"], r["instrument_name"], r["dataproduct_type"]) == (
        "HARPS", "HARPS", "spectrum")
    assert r["facility_name"] == "ESO-3.6" and r["calib_level"] == "2"
    assert float(r["em_min"]) == pytest.approx(3.78143e-7)
    assert float(r["em_max"]) == pytest.approx(6.91266e-7)
    assert float(r["em_res_power"]) == pytest.approx(115000, rel=1e-3)
    assert float(r["s_ra"]) == pytest.approx(261.21664)
    assert r["obs_release_date"].startswith("2007-07-05")


@pytest.mark.parametrize("params", [
    {"REQUEST": "queryData", "POS": "abc"},
    {"REQUEST": "queryData", "SIZE": "-1", "POS": "10,10"},
    {"REQUEST": "queryData", "BAND": "/"},
    {"REQUEST": "queryData", "BAND": "1e-7/2e-7/3e-7"},
    {"REQUEST": "queryData", "TIME": "yesterday"},
    {"REQUEST": "queryData", "MAXREC": "many"},
    {"REQUEST": "nonsense"},
])
def test_malformed_ssa_gives_votable_error(service, params):
    r = requests.get(service.ssa, params=params, timeout=60)
    assert r.status_code < 500, r.text[:500]
    assert 'name="QUERY_STATUS" value="ERROR"' in r.text, r.text[:1000]


@pytest.mark.parametrize("query", [
    "SELECT FROM harps.data",
    "SELECT * FROM harps.nosuchtable",
    "SELECT nosuchcolumn FROM harps.data",
    "SELECT TOP 1 * FROM harps.data WHERE 1 = CONTAINS(POINT('ICRS', 1, 2), 'x')",
])
def test_malformed_tap_gives_votable_error(service, query):
    r = requests.post(f"{service.tap}/sync", data={
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query}, timeout=60)
    assert r.status_code < 500, r.text[:500]
    assert 'value="ERROR"' in r.text, r.text[:1000]


def test_malformed_tap_parameters(service):
    for data in ({"REQUEST": "doQuery", "LANG": "SQL9", "QUERY": "SELECT 1"},
                 {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": "SELECT TOP 1 * FROM "
                  "harps.data", "MAXREC": "lots"},
                 {"REQUEST": "doQuery", "LANG": "ADQL"}):
        r = requests.post(f"{service.tap}/sync", data=data, timeout=60)
        assert r.status_code < 500 and 'value="ERROR"' in r.text, (data, r.text[:500])


@pytest.mark.parametrize("params", [
    {"ID": "ivo://nowhere/~?nothing"},
    {"BAND": "1 2"},
    {"ID": pub_did(ADP_ACCREF), "BAND": "not numbers"},
    {"ID": pub_did(ADP_ACCREF), "BAND": "6.6e-7 6.5e-7"},
    {"ID": pub_did(ADP_ACCREF), "FORMAT": "image/gif"},
    {"ID": pub_did(ADP_ACCREF), "FORMAT": "application/fits;content=archive-original",
     "BAND": "6.5e-7 6.6e-7"},
])
def test_malformed_datalink_requests_are_client_errors(service, real_files, params):
    r = requests.get(f"{service.url}/harps/q/sdl/dlget", params=params, timeout=60)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])


def test_form_pages_get_their_javascript(service):
    """DaCHS's jquery-gavo.js (loaded by every form page) is served, not a 500.

    It is built from Debian's jQuery UI files; etc/dachsctl supplies the one
    that libjs-jquery-ui 1.13 dropped.
    """
    r = requests.get(f"{service.url}/static/js/jquery-gavo.js", timeout=60)
    assert r.status_code == 200 and "jQuery" in r.text[:20000], r.status_code
