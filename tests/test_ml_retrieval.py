"""ml.retrieval: the metrics agree with a direct numpy computation; the command end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from astropy.io import fits
from test_ml_tags import write_artefact
from tiny_archive import make_archive

from ml import retrieval


def numpy_ranking(x: np.ndarray, queries: np.ndarray, pool: np.ndarray,
                  exclude: np.ndarray) -> np.ndarray:
    """All pool rows of each query by distance, rows of the query's own kind removed."""
    d = np.sqrt(((x[queries][:, None, :] - x[pool][None, :, :]) ** 2).sum(-1))
    d[exclude[queries][:, None] == exclude[pool][None, :]] = np.inf
    order = np.argsort(d, axis=1, kind="stable")
    return [pool[o[np.isfinite(d[i, o])]] for i, o in enumerate(order)]


def hand_made(seed=0, n=90):
    rng = np.random.default_rng(seed)
    star = rng.integers(0, 15, n)
    centre = rng.normal(size=(15, 3))
    x = centre[star] + 0.6 * rng.normal(size=(n, 3))
    labels = np.column_stack([5000 + 150 * centre[star, 0], 4.4 + 0.2 * centre[star, 1],
                              0.1 * centre[star, 2]]) + rng.normal(0, [20, 0.03, 0.02], (n, 3))
    return x, star.astype(str).astype(object), labels


def test_same_object_precision_agrees_with_numpy():
    x, star, _ = hand_made()
    group = np.array(["star:" + s for s in star], dtype=object)
    counts = {g: (group == g).sum() for g in set(group)}
    queries = np.array([i for i in range(len(x)) if counts[group[i]] >= 2])
    got = retrieval.same_object_precision(x, group, queries)
    rows = np.arange(len(x))
    ranked = numpy_ranking(x, queries, rows, rows)
    for k in retrieval.K_VALUES:
        want = np.mean([np.mean(group[r[:k]] == group[q]) for q, r in
                        zip(queries, ranked, strict=True)])
        assert got[k] == pytest.approx(want, abs=1e-12)
    ceiling = retrieval.precision_ceiling(group, queries)
    assert ceiling[1] == 1.0 and ceiling[10] == pytest.approx(
        np.mean([min(10, counts[group[q]] - 1) / 10 for q in queries]))
    assert all(got[k] <= ceiling[k] + 1e-12 for k in ceiling)


def test_purity_and_completeness_agree_with_numpy():
    x, star, labels = hand_made(seed=1)
    pool = np.flatnonzero(np.arange(len(x)) % 7 != 0)  # some spectra unlabelled
    queries = pool[::2]
    pur, n_p, comp, n_c = retrieval.label_purity_completeness(x, labels, star, queries, pool)
    tol = np.array([100.0, 0.2, 0.1])
    purities, comps = [], []
    for q, r in zip(queries, numpy_ranking(x, queries, pool, star), strict=True):
        ok = (np.abs(labels[r] - labels[q]) <= tol).all(axis=1)
        purities.append(ok[:10].mean())
        if ok.sum():
            comps.append(ok[:10].sum() / ok.sum())
    assert n_p == len(queries) and n_c == len(comps) and 0 < n_c
    assert pur == pytest.approx(np.mean(purities), abs=1e-12)
    assert comp == pytest.approx(np.mean(comps), abs=1e-12)
    assert 0 < pur < 1 and 0 < comp < 1


def _inputs(tmp_path):
    """A tiny archive, its latents (stars apart in dims 1 and 0), analysis, index, labels."""
    files, _ = make_archive(tmp_path / "arch", n_stars=12, step=0.5, garbage=False)
    rng = np.random.default_rng(3)
    star = [int(f.name.split(".")[1][4:]) for f in files]
    centre = rng.normal(size=(12, 4)) * [3, 3, 0.01, 0.01]
    z = centre[star] + 0.3 * rng.normal(size=(len(files), 4))
    ids = [f"ivo://x/~?harps/data/s1d/{f.name}" for f in files]
    lat = write_artefact(tmp_path / "lat.fits", ids, z, model_id="tiny-planted")
    with fits.open(lat, mode="update") as hdul:
        h = hdul["LATENTS"].header
        h["GRSTEP"], h["GRNPIX"], h["GRPAD"], h["FRAME"] = 0.5, 6251, 6400, "barycentric"
    (tmp_path / "an").mkdir()
    (tmp_path / "an" / "summary.json").write_text(json.dumps({
        "model_id": "tiny-planted", "n_spectra": len(ids), "evaluation": "all",
        "n_evaluation_stars": 12, "latent_dim": 4,
        "criteria": {"mad_fraction": 0.05, "response_fraction": 0.05, "decoder_response": False},
        "n_informative": 2, "n_generative_parameters": 9,
        "informative": [{"dim": d, "mad": 1.0, "response": None, "mi_ksg": {},
                         "description": ""} for d in (1, 0)],
        "best_mi_ksg": {}, "knn10_median_abs_error": {}}))
    with open(tmp_path / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pubdid", "path", "object"])
        w.writerows([i, str(p), f"STAR {s}"] for i, p, s in zip(ids, files, star, strict=True))
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "star_id", "teff_k", "logg_cgs", "mh_dex"])
        w.writerows([p.name, f"s{s}", 5000 + 50 * s, 4.4, 0.0] for p, s in
                    zip(files, star, strict=True)
                    if s < 10)  # stars 10 and 11 stay unlabelled: "real"
    return ids, z, star


def test_the_command_writes_every_metric(tmp_path):
    ids, z, star = _inputs(tmp_path)
    out = tmp_path / "m.csv"
    assert retrieval.main(["--latents", str(tmp_path / "lat.fits"), "--analysis",
                           str(tmp_path / "an"), "--index", str(tmp_path / "index.csv"),
                           "--labels", str(tmp_path / "labels.csv"), "--out", str(out),
                           "--quiet"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(retrieval.COLUMNS)
    got = {(r["dataset"], r["representation"], r["metric"], int(r["k"])): r for r in rows}
    datasets = {r["dataset"] for r in rows}
    assert datasets == {"synthetic: all stars", "real: STAR10", "real: STAR11"}
    assert {r["representation"] for r in rows} == {"ideal", "latent", "pca", "flux"}
    assert all(0 <= float(r["value"]) <= 1 for r in rows if r["value"] != "nan")
    # the latent rows are the informative dimensions (1, 0): check one against numpy
    x = z[:, [1, 0]]
    real = np.flatnonzero(np.array(star) == 11)
    rows_all = np.arange(len(x))
    ranked = numpy_ranking(x, real, rows_all, rows_all)
    want = np.mean([np.mean(np.array(star)[r[:5]] == 11) for r in ranked])
    row = got[("real: STAR11", "latent", "precision", 5)]
    assert float(row["value"]) == pytest.approx(want, abs=1e-5) and int(row["n_queries"]) == 6
    assert got[("synthetic: all stars", "latent", "purity", 10)]["model_id"] == "tiny-planted"


def test_refusals_are_one_line(tmp_path, capsys):
    _inputs(tmp_path)
    base = ["--latents", str(tmp_path / "lat.fits"), "--analysis", str(tmp_path / "an"),
            "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "m.csv")]
    bad = tmp_path / "bad.csv"
    bad.write_text("pubdid,path\n")
    assert retrieval.main([*base, "--index", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "object" in err and "bad.csv" in err
    summary = json.loads((tmp_path / "an" / "summary.json").read_text())
    (tmp_path / "an" / "summary.json").write_text(json.dumps({**summary, "model_id": "x"}))
    assert retrieval.main([*base, "--index", str(tmp_path / "index.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "tiny-planted" in err
    with pytest.raises(SystemExit) as ex:
        retrieval.main(["--latents", "x.fits"])
    assert ex.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
