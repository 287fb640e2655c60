"""Stellar / telluric separation as published: harps.separation, the DataLink products."""

from __future__ import annotations

import datetime
import io
import json
import shutil
import subprocess
import urllib.parse

import numpy as np
import pytest
import requests
from astropy.io import fits
from astropy.io.votable import parse
from support import RD_ID, SHARED, pub_did, require

import harps_site
from harps_data import fitsio, harps

pytestmark = pytest.mark.server

TODAY = datetime.date.today().isoformat()
ALPHA_CEN_B = SHARED / "s1d" / "HARPS.2012-03-24T08_37_45.581_s1d_A.fits"


def _url(service, name: str, **params) -> str:
    return f"{service.url}/{RD_ID}/{name}?{urllib.parse.urlencode(params)}"


@pytest.fixture(scope="module")
def separated(service, real_files):
    """The alpha Cen B s1d file's DID and the published separation model's id."""
    model = harps_site.separation_model_dir() / "model.json"
    require(model.exists(), "no separation model published (run make demo)")
    did = pub_did(f"harps/data/s1d/2012/{ALPHA_CEN_B.name}")
    return did, json.loads(model.read_text())["model_id"]


def _table(content: bytes):
    vot = parse(io.BytesIO(content))
    table = vot.get_first_table()
    return table, {f.name: f for f in table.fields}, table.array


def test_every_public_spectrum_has_a_row_with_metadata(service, separated):
    _, model_id = separated
    public = service.tap_rows(
        f"SELECT COUNT(*) AS n FROM harps.data WHERE release_date <= '{TODAY}'")
    rows = service.tap_rows(
        "SELECT COUNT(*) AS n, MIN(model_id) AS m, MAX(model_id) AS mx, MIN(tell_ew) AS ew "
        "FROM harps.separation")
    assert int(rows[0]["n"]) == int(public[0]["n"]) > 300
    assert rows[0]["m"] == rows[0]["mx"] == model_id and float(rows[0]["ew"]) > 0
    cols = service.tap_rows(
        "SELECT column_name, unit, ucd, description FROM tap_schema.columns "
        "WHERE table_name = 'harps.separation'")
    assert {c["column_name"] for c in cols} >= {"ssa_pubdid", "model_id", "tell_ew",
                                                 "tell_max_depth", "sep_excess", "sep_confident"}
    for c in cols:
        assert c["ucd"] and len(c["description"]) > 30, c
    assert {c["column_name"]: c["unit"] for c in cols}["tell_ew"] == "Angstrom"
    # proprietary spectra are not separated until they are public
    prop = service.tap_rows(
        "SELECT COUNT(*) AS n FROM harps.separation AS s JOIN harps.data AS d "
        f"ON d.ssa_pubdid = s.ssa_pubdid WHERE d.release_date > '{TODAY}'")
    assert int(prop[0]["n"]) == 0


def test_datalink_lists_both_products_for_a_public_spectrum(service, separated):
    did, model_id = separated
    text = requests.get(service.dlmeta(did), timeout=60).text
    for svc in ("stellar", "telluric"):
        assert f"{RD_ID}/{svc}/dlget" in text
    assert text.count("#derivation") >= 3 and model_id in text


def test_products_are_not_listed_for_a_proprietary_spectrum(service, separated):
    rows = service.tap_rows(
        f"SELECT TOP 1 ssa_pubdid AS did FROM harps.data WHERE release_date > '{TODAY}'")
    require(bool(rows), "the demo archive has no proprietary spectrum")
    did = rows[0]["did"]
    r = requests.get(service.dlmeta(did), timeout=60)
    assert r.status_code == 200 and "#this" in r.text
    assert "/stellar/dlget" not in r.text and "/telluric/dlget" not in r.text
    for svc in ("stellar", "telluric"):
        assert requests.get(_url(service, f"{svc}/dlget", ID=did),
                            timeout=60).status_code in (401, 403)


@pytest.fixture(scope="module")
def products(service, separated):
    did, _ = separated
    out = {}
    for svc in ("stellar", "telluric"):
        r = requests.get(_url(service, f"{svc}/dlget", ID=did), timeout=120)
        assert r.status_code == 200, r.text[:500]
        out[svc] = r.content
    return out


def test_products_are_valid_sdm_with_the_model_id(products, separated, tmp_path):
    _, model_id = separated
    for svc, content in products.items():
        table, fields, _ = _table(content)
        assert fields["spectral"].utype.endswith("SpectralAxis.Value")
        assert fields["flux"].utype.endswith("FluxAxis.Value")
        params = {p.name: p.value for p in table.params}
        assert params["model_id"] == model_id
        assert model_id in str(params.get("ssa_dstitle", ""))
        assert fields["confidence"].ucd == "stat.weight"
        if shutil.which("stilts"):
            path = tmp_path / f"{svc}.vot"
            path.write_bytes(content)
            report = subprocess.run(["stilts", "votlint", f"votable={path}"],
                                    capture_output=True, text=True, timeout=300).stdout
            assert not [ln for ln in report.splitlines() if ln.startswith("ERROR")], report
    _, fields, _ = _table(products["telluric"])
    assert fields["flux"].ucd == "phys.transmission" and not fields["flux"].unit
    _, fields, _ = _table(products["stellar"])
    assert str(fields["flux"].unit) == "adu"


def test_wavelengths_match_the_source_spectrum(products, separated):
    spec = fitsio.read_spectrum(ALPHA_CEN_B)
    info = json.loads((harps_site.separation_model_dir() / "model.json").read_text())
    step = info["grid"]["step"]
    _, _, st = _table(products["stellar"])
    _, _, tr = _table(products["telluric"])
    wave = np.asarray(st["spectral"], float)
    assert np.array_equal(wave, np.asarray(tr["spectral"], float))
    assert np.allclose(np.diff(wave), step) and wave[0] == pytest.approx(harps.MODEL_WAVE_MIN)
    # the same (barycentric) frame as the file: flux only where the file has data
    flux = np.asarray(st["flux"], float)
    observed = np.interp(wave, spec.wave, spec.flux)
    valid = np.isfinite(flux)
    assert valid.mean() > 0.9
    assert not valid[harps.in_ccd_gap(wave, harps.ccd_gap(spec.meta.berv))].any()
    # a stellar line (H alpha, barycentric, not telluric) sits where the file has it
    win = (wave > 6555) & (wave < 6570)
    assert wave[win][np.nanargmin(flux[win])] == pytest.approx(
        spec.wave[(spec.wave > 6555) & (spec.wave < 6570)][
            np.argmin(spec.flux[(spec.wave > 6555) & (spec.wave < 6570)])], abs=3 * step)
    assert np.nanmedian(flux / observed) == pytest.approx(1.0, abs=0.05)
    # the observatory-frame wavelength is the BERV-corrected one
    wave_obs = np.asarray(tr["wave_obs"], float)
    assert np.allclose(wave_obs, wave / (1 + spec.meta.berv / harps.C_KMS), rtol=1e-9)


@pytest.fixture(scope="module")
def synthetic_products(service, separated):
    """Both products of a public synthetic spectrum (the kind the model was trained on)."""
    rows = service.tap_rows(
        f"SELECT TOP 1 ssa_pubdid AS did FROM harps.data WHERE synthetic = 1 "
        f"AND release_date <= '{TODAY}' ORDER BY ssa_pubdid")
    require(bool(rows), "no public synthetic spectrum")
    out = {}
    for svc in ("stellar", "telluric"):
        r = requests.get(_url(service, f"{svc}/dlget", ID=rows[0]["did"]), timeout=120)
        assert r.status_code == 200, r.text[:500]
        out[svc] = r.content
    return out


@pytest.mark.parametrize("which,tolerance", [("synthetic", 0.05), ("real", 0.15)])
def test_stellar_times_transmission_reproduces_the_observed_flux(
        products, synthetic_products, which, tolerance):
    """Where the confidence is high, the parts multiply back to the data.

    ``stellar * T`` equals the observed flux by construction; the real check is
    the model's own star times ``T``: within 5 % (median) on a synthetic
    spectrum, 15 % on real alpha Cen B, which the stellar decoder, trained
    mostly on synthetic stars, reproduces less well.
    """
    prods = synthetic_products if which == "synthetic" else products
    _, _, st = _table(prods["stellar"])
    _, _, tr = _table(prods["telluric"])
    observed = np.asarray(st["observed"], float)
    stellar, model = np.asarray(st["flux"], float), np.asarray(st["stellar_model"], float)
    trans, conf = np.asarray(tr["flux"], float), np.asarray(tr["confidence"], float)
    assert np.array_equal(conf, np.asarray(st["confidence"], float))
    assert ((conf >= 0) & (conf <= 1)).all() and ((trans > 0) & (trans <= 1)).all()
    high = conf > 0.8
    assert high.mean() > 0.5
    assert np.allclose(stellar[high] * trans[high], observed[high], rtol=1e-5)
    rel = np.abs(model[high] * trans[high] / observed[high] - 1)
    assert np.median(rel) < tolerance, np.median(rel)
    telluric = high & (trans < 0.9)
    assert telluric.sum() > 20
    assert np.median(np.abs(model[telluric] * trans[telluric] / observed[telluric] - 1)) \
        < 2 * tolerance


def test_band_cutouts_and_fits_work_on_the_products(service, separated):
    did, _ = separated
    r = requests.get(_url(service, "telluric/dlget", ID=did, BAND="6.86e-7 6.9e-7",
                          FORMAT="application/fits"), timeout=120)
    assert r.status_code == 200 and r.content[:6] == b"SIMPLE"
    with fits.open(io.BytesIO(r.content)) as hdul:
        data = hdul[1].data
        wave = np.asarray(data["spectral"], float).ravel()
        assert 6860 <= wave.min() and wave.max() <= 6900 and len(wave) > 300
        # the O2 B band: deep telluric absorption somewhere in it
        assert np.nanmin(np.asarray(data["flux"], float)) < 0.6
    r = requests.get(_url(service, "stellar/dlget", ID=did, BAND="6.27e-7 6.33e-7",
                          FORMAT="text/csv"), timeout=120)
    assert r.status_code == 200 and r.text.count("\n") > 500


def test_model_card_shows_the_validation(service, separated):
    _, model_id = separated
    r = requests.get(f"{service.url}/{RD_ID}/model/static/separation/card.html", timeout=60)
    assert r.status_code == 200 and model_id in r.text
    assert "Validation" in r.text and "alpha Cen B" in r.text


@pytest.mark.parametrize("params", [{}, {"ID": "ivo://nowhere/~?x"}, {"ID": "../../etc/passwd"},
                                    {"ID": "x", "BAND": "NaN NaN"}])
def test_bad_requests_are_client_errors(service, separated, params):
    for svc in ("stellar", "telluric"):
        r = requests.get(_url(service, f"{svc}/dlget", **params), timeout=60)
        assert 400 <= r.status_code < 500, (svc, params, r.status_code)
        assert "Traceback" not in r.text and harps_site.GAVO_ROOT not in r.text
