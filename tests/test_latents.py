"""The latent layer through the running service: tables, ADQL function, neighbours, model.

A scratch copy of the resource (``harpsltest``) gets a small labelled
synthetic archive plus the real HARPS files, and ``harps-latents build``
trains a tiny model on it, encodes, analyses and publishes.  Everything is
then checked through TAP (sync and async, pyvo), against numpy brute force
on the same vectors.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pyvo
import requests
from astropy.io.votable import parse_single_table
from support import REPO, SHARED, require, run_ingest

pytestmark = pytest.mark.server

NAME = "harpsltest"
RD = f"{NAME}/q"
BIN = Path(sys.executable).parent


def _run(cmd: list[str], timeout: int = 1800) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd[:3]}: {res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    return res


@pytest.fixture(scope="module")
def published(service, tmp_path_factory):
    """A published tiny model over 150 synthetic + the real public spectra of ../shared."""
    require(SHARED.is_dir(), "real HARPS files missing")
    work = tmp_path_factory.mktemp("latents")
    ctl = str(REPO / "etc" / "dachsctl")
    subprocess.run([ctl, "drop-as", NAME], capture_output=True)
    _run([ctl, "deploy-as", NAME])
    try:
        today = datetime.date.today().isoformat()
        _run([str(BIN / "harps-synth"), "--out", str(work / "arch"), "-n", "150",
              "--n-stars", "60", "--seed", "31", "--step", "0.5", "--today", today,
              "--no-progress"])
        # keep ten public spectra back for the ingest-updates-latents test
        with open(work / "arch" / "labels.csv", newline="") as f:
            public = [work / "arch" / r["path"] for r in csv.DictReader(f)
                      if r["is_proprietary"] == "False"]
        later = public[-10:]
        first = [p for p in sorted((work / "arch").rglob("*.fits")) if p not in later]
        res = run_ingest(*first, SHARED, rd=RD)
        assert res.returncode == 1, res.stdout  # the garbage file is refused
        _run([str(BIN / "harps-latents"), "--rd", RD, "build", "--out", str(work / "model"),
              "--labels", str(work / "arch" / "labels.csv"), "--preset", "tiny",
              "--epochs", "4", "--batch-size", "16", "--kl-ramp-steps", "20", "--seed", "3"])
        subprocess.run([ctl, "restart"], check=True, capture_output=True)
        yield {"work": work, "later": later}
    finally:
        subprocess.run([ctl, "drop-as", NAME], capture_output=True)
        subprocess.run([ctl, "restart"], capture_output=True)


def _tap(service) -> pyvo.dal.TAPService:
    return pyvo.dal.TAPService(service.tap)


def _vectors(service) -> tuple[list[str], np.ndarray]:
    t = _tap(service).run_sync(
        f"SELECT ssa_pubdid, knn FROM {NAME}.latents WHERE encode_flags = 0",
        maxrec=100000).to_table()
    vectors = np.array([np.asarray(v, np.float32) for v in t["knn"]])
    return [str(i) for i in t["ssa_pubdid"]], vectors


def _brute_force(ids, vecs, target: np.ndarray, k: int = 10):
    d = np.sqrt(((vecs.astype(np.float64) - target.astype(np.float64)) ** 2).sum(axis=1))
    order = np.argsort(d, kind="stable")[:k]
    return [ids[i] for i in order], d[order]


def test_every_public_spectrum_has_latents_with_provenance(service, published):
    rows = service.tap_rows(
        f"SELECT d.ssa_pubdid, d.synthetic, d.release_date, l.encode_flags, l.model_id,"
        f" l.ckpt_sha256, l.train_data, l.encoded, l.recon_error"
        f" FROM {NAME}.data AS d LEFT OUTER JOIN {NAME}.latents AS l"
        f" ON l.ssa_pubdid = d.ssa_pubdid")
    today = datetime.date.today().isoformat()
    public = [r for r in rows if r["release_date"][:10] <= today]
    private = [r for r in rows if r["release_date"][:10] > today]
    assert len(public) >= 100 and private, "the synthetic archive has proprietary spectra"
    assert all(r["model_id"] for r in public), "a public spectrum without latents"
    assert not any(r["model_id"] for r in private), "proprietary spectra must not be encoded"
    real = [r for r in public if r["synthetic"] == "0"]
    # every real file but the garbage one (edge_cases/): ADP, s1d and cenb/
    valid = sum(1 for p in SHARED.rglob("*.fits") if "edge_cases" not in p.parts)
    assert len(real) == valid and all(r["encode_flags"] == "0" for r in real)
    assert len({(r["model_id"], r["ckpt_sha256"], r["train_data"]) for r in public}) == 1
    assert all(float(r["recon_error"]) >= 0 for r in public if r["encode_flags"] == "0")


def test_checkpoint_is_downloadable_and_checksummed(service, published):
    (m,) = service.tap_rows(f"SELECT model_id, ckpt_sha256, accref, n_informative,"
                            f" is_current FROM {NAME}.models")
    assert m["is_current"] == "1" and int(m["n_informative"]) >= 1
    blob = requests.get(m["accref"], timeout=60).content
    assert hashlib.sha256(blob).hexdigest() == m["ckpt_sha256"]
    card = requests.get(f"{service.url}/{NAME}/q/model/static/current/card.html", timeout=60)
    assert card.status_code == 200 and m["model_id"] in card.text
    assert m["ckpt_sha256"] in card.text and "What the dimensions mean" in card.text
    assert requests.get(f"{service.url}/{NAME}/q/model/static/current/mi_heatmap.png",
                        timeout=60).content[:4] == b"\x89PNG"


def test_informative_columns_are_described(service, published):
    cols = [c for c in service.tap_rows(
        f"SELECT column_name, description, ucd FROM tap_schema.columns "
        f"WHERE table_name = '{NAME}.latents' AND column_name LIKE 'z%'")
        if c["column_name"][1:].isdigit()]
    names = sorted((c["column_name"] for c in cols), key=lambda n: int(n[1:]))
    assert names == [f"z{i}" for i in range(1, len(cols) + 1)]
    for c in cols:
        assert "mutual information" in c["description"] and "Teff" in c["description"]
        assert c["ucd"] == "stat.fit.param"
    (m,) = service.tap_rows(f"SELECT n_informative FROM {NAME}.models")
    assert len(cols) == int(m["n_informative"])
    mi = service.tap_rows(f"SELECT basis, COUNT(*) AS n FROM {NAME}.latent_mi GROUP BY basis")
    assert {r["basis"] for r in mi} == {"latent", "pca"}


def test_udf_sync_and_async_equal_brute_force(service, published):
    ids, vecs = _vectors(service)
    target_id = ids[len(ids) // 2]
    expect_ids, expect_d = _brute_force(ids, vecs, vecs[ids.index(target_id)])
    query = (f"SELECT TOP 10 ssa_pubdid, gavo_latentdist({NAME}.latents.knn, '{target_id}')"
             f" AS d FROM {NAME}.latents ORDER BY d")
    tap = _tap(service)
    sync = tap.run_sync(query).to_table()
    job = tap.submit_job(query)
    job.run()
    job.wait(phases=["COMPLETED", "ERROR"], timeout=300)
    assert job.phase == "COMPLETED", job.phase
    async_ = job.fetch_result().to_table()
    job.delete()
    for result in (sync, async_):
        assert [str(i) for i in result["ssa_pubdid"]] == expect_ids
        np.testing.assert_allclose(np.asarray(result["d"], float), expect_d, rtol=1e-9, atol=0)
    assert expect_d[0] == 0 and expect_ids[0] == target_id


def test_udf_with_an_explicit_vector(service, published):
    ids, vecs = _vectors(service)
    target = vecs[3] + np.float32(0.001)
    text = " ".join(repr(float(v)) for v in target.astype(np.float64))
    expect_ids, expect_d = _brute_force(ids, vecs, target.astype(np.float64))
    t = _tap(service).run_sync(
        f"SELECT TOP 10 ssa_pubdid, gavo_latentdist({NAME}.latents.knn, '{text}') AS d"
        f" FROM {NAME}.latents ORDER BY d").to_table()
    assert [str(i) for i in t["ssa_pubdid"]] == expect_ids
    np.testing.assert_allclose(np.asarray(t["d"], float), expect_d, rtol=1e-9)


def test_neighbour_table_equals_brute_force(service, published):
    ids, vecs = _vectors(service)
    rows = service.tap_rows(f"SELECT ssa_pubdid, neighbour_rank, neighbour_pubdid, latent_distance"
                            f" FROM {NAME}.neighbours")
    by_query: dict[str, list] = {}
    for r in rows:
        by_query.setdefault(r["ssa_pubdid"], []).append(r)
    assert set(by_query) == set(ids)
    for q in ids[::7]:
        got = sorted(by_query[q], key=lambda r: int(r["neighbour_rank"]))
        others = [i for i in ids if i != q]
        o_vecs = np.array([vecs[ids.index(i)] for i in others])
        expect_ids, expect_d = _brute_force(others, o_vecs, vecs[ids.index(q)])
        np.testing.assert_allclose([float(r["latent_distance"]) for r in got], expect_d, rtol=1e-9)
        # ties may swap order; the set at each distance must agree
        assert set(r["neighbour_pubdid"] for r in got) == set(expect_ids) or \
            np.isclose(float(got[-1]["latent_distance"]), expect_d[-1])


@pytest.mark.parametrize("expr, message", [
    # 17 numbers: more than the tiny preset's 16 latent dimensions, never valid
    ("gavo_latentdist(knn, '" + " ".join(["1"] * 17) + "')", "informative latent space has"),
    ("gavo_latentdist(knn, 'ivo://nowhere/~?x')", "no spectrum with publisher DID"),
    ("gavo_latentdist(knn, '1 2 x')", "is not a number"),
    ("gavo_latentdist(recon_error, '1')", "must be the column harps.latents.knn"),
    ("gavo_latentdist(knn, ssa_pubdid)", "must be a string literal"),
    ("gavo_latentdist(knn)", "exactly two arguments"),
])
def test_udf_rejects_bad_arguments_with_a_message(service, published, expr, message):
    r = requests.post(f"{service.tap}/sync", data={
        "REQUEST": "doQuery", "LANG": "ADQL",
        "QUERY": f"SELECT TOP 1 {expr} FROM {NAME}.latents"}, timeout=60)
    assert r.status_code < 500 and 'value="ERROR"' in r.text and message in r.text, r.text[-800:]


def test_udf_is_listed_in_capabilities(service, published):
    caps = requests.get(f"{service.tap}/capabilities", timeout=60).text
    assert "gavo_latentdist(vec REAL[], target VARCHAR)" in caps


def test_ingest_encodes_new_spectra_and_refreshes_neighbours(service, published):
    before = int(service.tap_rows(f"SELECT COUNT(*) AS n FROM {NAME}.latents")[0]["n"])
    res = run_ingest(*published["later"], rd=RD, latents=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "newly public spectra encoded" in res.stdout
    after = int(service.tap_rows(f"SELECT COUNT(*) AS n FROM {NAME}.latents")[0]["n"])
    new_public = int(service.tap_rows(
        f"SELECT COUNT(*) AS n FROM {NAME}.data WHERE release_date <= '"
        f"{datetime.date.today().isoformat()}'")[0]["n"])
    assert after == new_public > before
    ids, _ = _vectors(service)
    n_neigh = service.tap_rows(f"SELECT COUNT(DISTINCT ssa_pubdid) AS n FROM {NAME}.neighbours")
    assert int(n_neigh[0]["n"]) == len(ids)
    # the newly encoded spectra are tagged too (harps-tags predict with the published tagger)
    n_tags = int(service.tap_rows(f"SELECT COUNT(*) AS n FROM {NAME}.tags")[0]["n"])
    assert n_tags == after


def test_latents_visible_with_sdm_join(service, published):
    """A user's query: spectra like a given one, with their metadata, in one ADQL."""
    ids, _ = _vectors(service)
    rows = service.tap_rows(
        f"SELECT n.neighbour_rank, d.ssa_targname, d.ssa_snr, n.latent_distance"
        f" FROM {NAME}.neighbours AS n"
        f" JOIN {NAME}.data AS d ON d.ssa_pubdid = n.neighbour_pubdid"
        f" WHERE n.ssa_pubdid = '{ids[0]}' ORDER BY n.neighbour_rank")
    assert [int(r["neighbour_rank"]) for r in rows] == list(range(1, 11))
    votable = requests.get(f"{service.url}/{NAME}/q/sdl/dlget",
                           params={"ID": ids[0], "BAND": "5e-7 5.001e-7"}, timeout=60)
    assert parse_single_table(io.BytesIO(votable.content)).array.size > 0
    summary = json.loads(requests.get(
        f"{service.url}/{NAME}/q/model/static/current/analysis.json", timeout=60).text)
    assert summary["n_informative"] >= 1


def _page_queries(html: str) -> dict[str, str]:
    import re
    return {m.group(1): m.group(2).strip() for m in re.finditer(
        r'<script type="text/x-adql" id="([^"]+)">(.*?)</script>', html, re.S)}


def test_explorer_page_and_its_queries(service, published):
    """The browser page is served, and the ADQL it builds runs (same templates)."""
    page = requests.get(f"{service.url}/{NAME}/q/explore/static/", timeout=60)
    assert page.status_code == 200 and "HARPS spectra by what they look like" in page.text
    q = _page_queries(page.text)
    assert set(q) == {"q-dims", "q-range", "q-search", "q-similar"}

    def fill(key, **values):
        text = q[key]
        for k, v in {"schema": NAME, **values}.items():
            text = text.replace("{" + k + "}", str(v))
        assert "{" not in text, text
        return service.tap_rows(text)

    zcols = sorted((c["column_name"] for c in fill("q-dims") if c["column_name"][1:].isdigit()),
                   key=lambda z: int(z[1:]))
    assert zcols and zcols[0] == "z1"
    ranges = ", ".join(f"MIN({z}) AS {z}_lo, MAX({z}) AS {z}_hi" for z in zcols)
    (r,) = fill("q-range", ranges=ranges)
    where = "".join(f" AND l.{z} BETWEEN {r[z + '_lo']} AND {r[z + '_hi']}" for z in zcols)
    rows = fill("q-search", where=where, minsnr=0, zcols="".join(f", l.{z}" for z in zcols))
    assert len(rows) == 50  # the full ranges select everything
    similar = fill("q-similar", did=rows[0]["ssa_pubdid"])
    assert [int(s["neighbour_rank"]) for s in similar] == list(range(1, 11))
