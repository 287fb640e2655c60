"""Physical-parameter tags and retrieval metrics as published by make demo (TAP, model card).

The ML behind them (``harps-tags``, ``harps-retrieval``) is tested without
the service in ``test_ml_tags.py`` and ``test_ml_retrieval.py``; here: what
a TOPCAT user sees.
"""

from __future__ import annotations

import pytest
import requests
from support import RD_ID, require

pytestmark = pytest.mark.server

UCDS = {"teff": "phys.temperature.effective", "logg": "phys.gravity", "mh": "phys.abund.Z",
        "vsini": "phys.veloc.rotat", "rv": "spect.dopplerVeloc.opt"}
UNITS = {"teff": "K", "vsini": "km/s", "rv": "km/s"}


def _columns(service, table: str) -> dict[str, dict[str, str]]:
    rows = service.tap_rows("SELECT column_name, unit, ucd, description FROM "
                            f"tap_schema.columns WHERE table_name = '{table}'")
    return {r["column_name"].lower(): r for r in rows}


@pytest.fixture(scope="module")
def published(service):
    n = int(service.tap_rows("SELECT COUNT(*) AS n FROM harps.tags")[0]["n"])
    require(n > 0, "no tags published (run make demo)")
    return n


def test_tags_columns_carry_ucd_unit_and_the_validation(service, published):
    cols = _columns(service, "harps.tags")
    for name, ucd in UCDS.items():
        assert cols[name]["ucd"] == ucd, cols[name]
        assert cols[f"{name}_err"]["ucd"] == f"stat.error;{ucd}"
        assert cols[name]["unit"] == UNITS.get(name, cols[name]["unit"])
        assert "held-out" in cols[name]["description"], cols[name]["description"]
        assert "mean absolute error" in cols[name]["description"]
    for name in ("ood", "ood_score", "ood_reason", "label_catalogue", "label_match",
                 "model_id", "tagger"):
        assert cols[name]["description"], name


def test_one_tag_row_per_latent_row_and_unencoded_ones_are_out_of_domain(service, published):
    n_latents = int(service.tap_rows("SELECT COUNT(*) AS n FROM harps.latents")[0]["n"])
    assert published == n_latents
    orphans = service.tap_rows(
        "SELECT COUNT(*) AS n FROM harps.tags AS t LEFT OUTER JOIN harps.latents AS l "
        "ON l.ssa_pubdid = t.ssa_pubdid WHERE l.ssa_pubdid IS NULL")
    assert orphans[0]["n"] == "0"
    bad = service.tap_rows(
        "SELECT COUNT(*) AS n FROM harps.tags AS t JOIN harps.latents AS l "
        "ON l.ssa_pubdid = t.ssa_pubdid WHERE l.latent IS NULL AND t.ood = 0")
    assert bad[0]["n"] == "0", "an unencoded spectrum is published as in domain"
    rows = service.tap_rows("SELECT TOP 5 teff, teff_err, logg, mh, label_catalogue, "
                            "label_match FROM harps.tags WHERE ood = 0")
    assert rows, "every spectrum is out of domain"
    for r in rows:
        assert 2500 < float(r["teff"]) < 10000 and float(r["teff_err"]) > 0
        assert "SHA-256" in r["label_catalogue"] and "matched" in r["label_match"]


def test_retrieval_metrics_compare_the_model_with_both_baselines(service, published):
    rows = service.tap_rows("SELECT dataset, representation, metric, k, fraction, n_queries "
                            "FROM harps.retrieval_metrics")
    assert {r["representation"] for r in rows} >= {"latent", "pca", "flux"}
    assert any(r["dataset"].startswith("real") and "HD128621" in r["dataset"] for r in rows)
    metrics = {(r["metric"], r["k"]) for r in rows}
    assert {("precision", "1"), ("precision", "5"), ("precision", "10")} <= metrics, metrics
    for r in rows:
        assert 0.0 <= float(r["fraction"]) <= 1.0 and int(r["n_queries"]) > 0, r
    cols = _columns(service, "harps.retrieval_metrics")
    assert all(c["description"] for c in cols.values())


def test_model_card_states_tags_and_retrieval_quality(service, published):
    r = requests.get(f"{service.url}/{RD_ID}/model/static/current/card.html", timeout=60)
    assert r.status_code == 200
    assert "Physical-parameter tags" in r.text and "Retrieval quality" in r.text
    assert "harps.tags" in r.text and "harps.retrieval_metrics" in r.text
