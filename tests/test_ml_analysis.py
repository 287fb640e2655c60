"""ml.analysis: estimators, criteria and the report, on planted dependences."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from astropy.io import fits

from ml import analysis


def test_mi_estimators_find_a_planted_dependence():
    rng = np.random.default_rng(1)
    teff = rng.uniform(3000, 7000, 2000)
    z_teff = (teff - 5000) / 1000 + 0.05 * rng.normal(size=teff.size)  # carries Teff
    z_noise = rng.normal(size=teff.size)  # carries nothing
    z = np.column_stack([z_noise, z_teff])
    ksg = analysis.mi_ksg(z, teff, seed=0)
    assert ksg[1] > 1.5 and ksg[0] < 0.05
    assert analysis.mi_histogram(z_teff, teff) > 1.3
    assert analysis.mi_histogram(z_noise, teff) < 0.1
    # the histogram estimator is exact for a discrete uniform copy: ln(bins)
    x = np.repeat(np.arange(10), 100).astype(float)
    assert analysis.mi_histogram(x, x, bins=10) == pytest.approx(np.log(10), rel=1e-9)


def test_mad_and_informative_need_both_criteria():
    rng = np.random.default_rng(2)
    z = np.column_stack([rng.normal(0, 1, 500), rng.normal(0, 0.01, 500), rng.normal(0, 1, 500)])
    mads = analysis.mad(z)
    assert mads[0] == pytest.approx(0.674, rel=0.15) and mads[1] < 0.05
    response = np.array([1.0, 1.0, 1e-6])  # the decoder ignores dimension 2
    assert analysis.informative(mads, response).tolist() == [True, False, False]
    assert analysis.informative(mads).tolist() == [True, False, True]


def test_knn_error_prefers_the_informative_space():
    rng = np.random.default_rng(3)
    y = rng.uniform(3000, 7000, 800)
    good = (y[:, None] - 5000) / 1000 + 0.01 * rng.normal(size=(800, 1))
    bad = rng.normal(size=(800, 1))
    assert analysis.knn_label_error(good, y) < 50 < analysis.knn_label_error(bad, y)


def test_evaluation_set_keeps_one_spectrum_per_star():
    labels = analysis.Labels(
        values={f"ADP.2020-01-0{i}T00:00:00.000": np.zeros(len(analysis.LABELS))
                for i in range(1, 7)},
        star={f"ADP.2020-01-0{i}T00:00:00.000": str(i % 3) for i in range(1, 7)})
    ids = [f"ivo://x/~?harps/data/adp/2020/ADP.2020-01-0{i}T00_00_00.000.fits"
           for i in range(1, 7)]
    rows = analysis.evaluation_set(ids, labels, seed=0)
    assert len(rows) == 3
    stars = sorted(labels.star[analysis.canonical_product_id(ids[r])] for r in rows)
    assert stars == ["0", "1", "2"]
    assert len(analysis.evaluation_set(ids, labels, stars={"1"})) == 1


def _artefact(path, ids, z):
    cols = [fits.Column("pubdid", "80A", array=ids),
            fits.Column("latent", f"{z.shape[1]}E", array=z.astype(np.float32)),
            fits.Column("recon_err", "E", array=np.zeros(len(ids), np.float32)),
            fits.Column("flags", "J", array=np.zeros(len(ids), np.int32))]
    hdu = fits.BinTableHDU.from_columns(cols, name="LATENTS")
    hdu.header["MODELID"] = "planted-z3"
    hdu.writeto(path)


def test_report_recovers_planted_teff_dimension(tmp_path):
    """The whole report: dimension 1 is planted on Teff, 0 is noise, 2 is dead."""
    rng = np.random.default_rng(4)
    n = 400
    pids = [f"ADP.2019-{1 + i // 28:02d}-{1 + i % 28:02d}T01:02:03.{i:03d}" for i in range(n)]
    ids = [f"ivo://x/~?harps/data/adp/2019/{p.replace(':', '_')}.fits" for p in pids]
    teff = rng.uniform(3000, 7000, n)
    z = np.column_stack([rng.normal(size=n), (teff - 5000) / 800 + 0.02 * rng.normal(size=n),
                         0.001 * rng.normal(size=n)])
    _artefact(tmp_path / "lat.fits", ids, z)
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["product_id", "star_id", *analysis.LABELS])
        for i, p in enumerate(pids):
            w.writerow([p, i, teff[i], *rng.uniform(0, 1, len(analysis.LABELS) - 1)])
    summary = analysis.run([str(tmp_path / "lat.fits")], str(tmp_path / "labels.csv"),
                           tmp_path / "out")
    assert summary.n_informative == 2 and summary.n_evaluation_stars == n
    by_dim = {d.dim: d for d in summary.informative}
    assert set(by_dim) == {0, 1}
    assert by_dim[1].mi_ksg["Teff"] > 1.3 and by_dim[0].mi_ksg["Teff"] < 0.1
    assert by_dim[1].description.startswith("Latent dimension 1") and "Teff" in \
        by_dim[1].description.split(":")[1].split(",")[0]
    assert (tmp_path / "out" / "mi_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "out" / "mi.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * len(analysis.LABELS)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["model_id"] == "planted-z3"
