"""The model as a live service, against the running demo: decode, retrieval, reconstruction.

Everything goes through the front door as a user's client would (HTTP,
pyvo, STILTS); the numbers are checked against what ``harps-encode`` put in
``harps.latents`` and against ``gavo_latentdist`` in TAP.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import requests
from support import RD_ID, REPO, SHARED, pub_did, require

import harps_site

pytestmark = pytest.mark.server

ALPHA_CEN_B = SHARED / "s1d" / "HARPS.2012-03-24T08_37_45.581_s1d_A.fits"
GARBAGE = next(iter(sorted((SHARED / "edge_cases").glob("*.fits"))), None)


def _url(service, name: str, **params) -> str:
    return f"{service.url}/{RD_ID}/{name}?" + urllib.parse.urlencode(params)


def _json(r: requests.Response) -> dict:
    assert r.status_code == 200, r.text[:1000]
    assert r.headers["content-type"].startswith("application/json"), r.headers
    return json.loads(r.text)


def _column(doc: dict, name: str) -> np.ndarray:
    i = [c["name"] for c in doc["columns"]].index(name)
    return np.array([np.nan if row[i] is None else row[i] for row in doc["data"]], float)


@pytest.fixture(scope="module")
def encoded(service, real_files):
    """The alpha Cen B s1d file: its DID and what harps.latents holds for it."""
    did = pub_did(f"harps/data/s1d/2012/{ALPHA_CEN_B.name}")
    rows = service.tap_rows(
        f"SELECT ssa_pubdid, recon_error, model_id FROM harps.latents "
        f"WHERE ssa_pubdid = '{did}' AND latent IS NOT NULL")
    require(bool(rows), "no published model / alpha Cen B not encoded (run make demo)")
    return did, float(rows[0]["recon_error"]), rows[0]["model_id"]


def test_decoding_a_spectrums_latent_gives_its_reconstruction(service, encoded):
    did, recon_error, model_id = encoded
    start = _json(requests.get(_url(service, "decode/api", ID=did, RESPONSEFORMAT="json"),
                               timeout=60))
    params = {k: v["value"] for k, v in start["params"].items() if k != "contains"}
    assert params["model_id"] == model_id and params["pubdid"] == did
    latent = params["latent"]
    decoded = _json(requests.get(_url(service, "decode/api", LATENT=latent,
                                      RESPONSEFORMAT="json"), timeout=60))
    flux = _column(decoded, "flux")
    # the reconstruction product (rec, DataLink #derivation) of the same spectrum
    r = requests.get(_url(service, "rec/dlget", ID=did, FORMAT="text/csv"), timeout=60)
    assert r.status_code == 200, r.text[:500]
    lines = [ln for ln in r.text.splitlines() if ln and not ln.startswith("#")]
    assert lines[0].split(",") == ["spectral", "flux", "observed", "residual"], lines[0]
    rows = np.array([[float(v) if v else np.nan for v in ln.split(",")] for ln in lines[1:]])
    wave, recon, observed, residual = rows.T
    scale = params["norm_scale"]
    np.testing.assert_allclose(wave, _column(decoded, "wavelength"), rtol=0, atol=1e-6)
    np.testing.assert_allclose(recon, flux * scale, rtol=2e-4, atol=1e-3 * scale)
    # the residual is what harps-encode's recon_err (harps.latents.recon_error) measures
    ok = np.isfinite(observed)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(residual[ok], observed[ok] - recon[ok], rtol=1e-6, atol=1e-3)
    assert np.mean((residual[ok] / scale) ** 2) == pytest.approx(recon_error, rel=1e-3)
    # ID + OFFSET moves only the informative coordinates, and the picture changes
    knn = [float(v) for v in params["knn"].split()]
    moved = _json(requests.get(_url(service, "decode/api", ID=did, RESPONSEFORMAT="json",
                                    OFFSET=",".join(["1.0"] + ["0"] * (len(knn) - 1))),
                               timeout=60))
    mparams = {k: v["value"] for k, v in moved["params"].items() if k != "contains"}
    assert [float(v) for v in mparams["knn"].split()][0] == pytest.approx(knn[0] + 1.0)
    assert np.abs(_column(moved, "flux") - flux).max() > 1e-3
    assert "gavo_latentdist(l.knn" in mparams["adql"]


def test_service_encodes_an_upload_as_harps_encode_does(service, encoded, tmp_path):
    """The latent vector of an uploaded file = harps-encode's, with the published checkpoint."""
    did, _, model_id = encoded
    ckpt = harps_site.current_model_dir() / "model.ckpt"
    require(ckpt.exists(), "no published checkpoint on this machine")
    res = subprocess.run([str(REPO / ".venv" / "bin" / "harps-encode"), str(ckpt),
                          str(ALPHA_CEN_B), "--out", str(tmp_path), "--inputs-root",
                          str(SHARED), "--workers", "0", "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    from astropy.io import fits
    with fits.open(next(tmp_path.glob("latents_*.fits"))) as hdul:
        assert hdul["LATENTS"].header["MODELID"] == model_id
        cli = np.array(hdul["LATENTS"].data["latent"][0], float)
    with open(ALPHA_CEN_B, "rb") as f:
        doc = _json(requests.post(_url(service, "retrieve/api"), timeout=120,
                                  data={"K": "3", "RESPONSEFORMAT": "json"},
                                  files={"SPECTRUM": (ALPHA_CEN_B.name, f)}))
    served = np.array([float(v) for v in doc["params"]["latent"]["value"].split()])
    np.testing.assert_allclose(served, cli, rtol=0, atol=2e-6)


def test_upload_of_an_archived_file_finds_it_first_and_agrees_with_tap(service, encoded):
    did, _, _ = encoded
    k = 6
    with open(ALPHA_CEN_B, "rb") as f:
        up = _json(requests.post(_url(service, "retrieve/api"), timeout=120,
                                 data={"K": str(k), "RESPONSEFORMAT": "json"},
                                 files={"SPECTRUM": (ALPHA_CEN_B.name, f)}))
    dids = [row[1] for row in up["data"]]
    dist = _column(up, "latent_distance")
    assert dids[0] is None and dist[0] == 0  # row 0: the upload itself
    assert dids[1] == did and dist[1] < 1e-5, (dids[1], dist[1])
    assert np.all(np.diff(dist[1:]) >= 0)
    tap = service.tap_rows(
        f"SELECT TOP {k} ssa_pubdid, gavo_latentdist(knn, '{did}') AS d "
        f"FROM harps.latents ORDER BY d")
    assert dids[1:] == [r["ssa_pubdid"] for r in tap]
    # by ID: the same neighbours, the query itself left out
    by_id = _json(requests.get(_url(service, "retrieve/api", ID=did, K=k - 1,
                                    RESPONSEFORMAT="json"), timeout=60))
    assert [row[1] for row in by_id["data"]] == [did] + dids[2:]
    np.testing.assert_allclose(_column(by_id, "latent_distance")[1:],
                               [float(r["d"]) for r in tap[1:]], rtol=1e-5, atol=1e-6)


def test_spectra_for_the_overlay(service, encoded):
    did, _, _ = encoded
    doc = _json(requests.get(_url(service, "retrieve/api", ID=did, K=3, SPECTRA="True",
                                  RESPONSEFORMAT="json"), timeout=60))
    p = {k: v["value"] for k, v in doc["params"].items() if k != "contains"}
    fi = [c["name"] for c in doc["columns"]].index("flux")
    fluxes = [row[fi] for row in doc["data"]]
    assert len(fluxes) == 4 and all(len(f) == p["grid_npix"] for f in fluxes)
    values = np.array([[np.nan if v is None else v for v in f] for f in fluxes])
    assert 0.5 < np.nanmedian(values) < 1.5  # normalised
    assert np.isnan(values).any()  # the CCD gap is masked, not zero


def test_pyvo_reads_the_answers(service, encoded, tmp_path):
    import pyvo
    from astropy.io.votable import parse
    did, _, model_id = encoded
    url = _url(service, "retrieve/api", ID=did, K=4)
    res = pyvo.dal.DALResults.from_result_url(url)
    assert len(res) == 5 and res["ssa_pubdid"][0] == did
    with open(ALPHA_CEN_B, "rb") as f:
        r = requests.post(_url(service, "retrieve/api"), data={"K": "4"},
                          files={"SPECTRUM": f}, timeout=120)
    up = pyvo.dal.DALResults(parse(io.BytesIO(r.content)), url=r.url)
    assert up["ssa_pubdid"][1] == did
    assert up.votable.get_first_table().get_field_by_id_or_name("latent_distance").ucd
    dec = pyvo.dal.DALResults.from_result_url(_url(service, "decode/api", ID=did))
    assert len(dec) > 1000
    assert dec.votable.get_first_table().params[0].value  # model_id first
    for name, u in (("decode", _url(service, "decode/api", Z="0,0")),
                    ("retrieve", url),
                    ("rec", _url(service, "rec/dlget", ID=did,
                                 FORMAT="application/x-votable+xml;serialization=tabledata",
                                 BAND="6.55e-7 6.57e-7"))):
        path = tmp_path / f"{name}.vot"
        path.write_bytes(requests.get(u, timeout=60).content)
        if shutil.which("stilts"):
            report = subprocess.run(["stilts", "votlint", f"votable={path}"],
                                    capture_output=True, text=True, timeout=300).stdout
            errors = [ln for ln in report.splitlines() if ln.startswith("ERROR")]
            assert not errors, (name, errors)


def test_datalink_lists_the_reconstruction(service, encoded):
    did, _, model_id = encoded
    text = requests.get(service.dlmeta(did), timeout=60).text
    assert "#derivation" in text and f"{RD_ID}/rec/dlget" in text and model_id in text


@pytest.mark.parametrize("name,params,field", [
    ("decode/api", {"Z": "1"}, "Z"),
    ("decode/api", {"Z": "nan,0"}, "Z"),
    ("decode/api", {"Z": "1e300,0"}, "Z"),
    ("decode/api", {"LATENT": "1,2,3"}, "LATENT"),
    ("decode/api", {"LATENT": "x" * 5000}, "LATENT"),
    ("decode/api", {"OFFSET": "1,1"}, "OFFSET"),
    ("decode/api", {"ID": "ivo://nowhere/~?x"}, "ID"),
    ("decode/api", {"ID": "../../etc/passwd"}, "ID"),
    ("retrieve/api", {}, "SPECTRUM"),
    ("retrieve/api", {"ID": "ivo://nowhere/~?x"}, "ID"),
    ("retrieve/api", {"K": "0", "ID": "x"}, "K"),
    ("retrieve/api", {"K": "abc", "ID": "x"}, "K"),
    ("retrieve/api", {"SPECTRA": "maybe", "ID": "x"}, "SPECTRA"),
])
def test_bad_parameters_get_a_400_naming_them(service, encoded, name, params, field):
    r = requests.get(_url(service, name, **params), timeout=60)
    assert r.status_code == 400, (r.status_code, r.text[:500])
    assert f"Field {field}:" in r.text, r.text[:500]
    assert harps_site.GAVO_ROOT not in r.text and "Traceback" not in r.text


def test_bad_uploads_are_refused_in_one_line(service, encoded, tmp_path):
    require(GARBAGE is not None, "garbage file missing")
    cases = [(GARBAGE.read_bytes(), "garbage data"), (b"hello", "not a FITS file"),
             (b"", "give either ID"), (b"\0" * (16 * 2**20 + 10), "larger than 16 MiB")]
    for data, why in cases:
        r = requests.post(_url(service, "retrieve/api"), files={"SPECTRUM": ("x.fits", data)},
                          timeout=120)
        assert r.status_code == 400 and why in r.text, (why, r.status_code, r.text[:300])
        assert "Field SPECTRUM" in r.text and "/tmp/" not in r.text


def test_sliders_fast_path_is_the_same_decoder(service, encoded):
    """/harps/model/decode (raw float32, the Sliders page's path) = decode/api."""
    did, _, model_id = encoded
    start = _json(requests.get(_url(service, "decode/api", ID=did, RESPONSEFORMAT="json"),
                               timeout=60))
    latent = start["params"]["latent"]["value"]
    r = requests.get(f"{service.url}/harps/model/decode",
                     params={"latent": latent.replace(" ", ",")}, timeout=60)
    assert r.status_code == 200 and r.headers["X-Model-Id"] == model_id
    raw = np.frombuffer(r.content, "<f4")
    via_dachs = _json(requests.get(_url(service, "decode/api", LATENT=latent,
                                        RESPONSEFORMAT="json"), timeout=60))
    np.testing.assert_allclose(raw, _column(via_dachs, "flux"), atol=1e-5)
    info = requests.get(f"{service.url}/harps/model/info", timeout=60).json()
    assert info["model_id"] == model_id and 0 < info["rss_mib"] < 4096
    assert requests.post(f"{service.url}/harps/model/decode", timeout=60).status_code == 403


def test_model_files_stay_where_publish_put_them():
    """The model server reads what harps-latents publish wrote (no copy elsewhere)."""
    current = harps_site.current_model_dir()
    require(current.exists(), "no published model")
    assert (current / "model.ckpt").exists() and (current / "model.json").exists()
    assert Path(harps_site.MODEL_SOCKET).is_socket()
