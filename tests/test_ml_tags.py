"""ml.tags: planted labels are recovered, the domain flag fires, refusals are one line."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ml import data, tagger, tags

LABEL_COLUMNS = ["teff_k", "logg_cgs", "mh_dex", "vsini_kms", "rv_kms"]


def write_artefact(path, ids, z, *, recon=None, flags=None, model_id="planted-z4"):
    """A minimal latents artefact (the columns harps-encode writes)."""
    n = len(ids)
    cols = [fits.Column("pubdid", "80A", array=ids),
            fits.Column("latent", f"{z.shape[1]}E", array=z.astype(np.float32)),
            fits.Column("recon_err", "E",
                        array=np.full(n, 1e-3, np.float32) if recon is None else recon),
            fits.Column("flags", "J", array=np.zeros(n, np.int32) if flags is None else flags),
            fits.Column("reason", "20A", array=[""] * n),
            fits.Column("norm_scale", "E", array=np.ones(n, np.float32))]
    hdu = fits.BinTableHDU.from_columns(cols, name="LATENTS")
    hdu.header["MODELID"] = model_id
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return str(path)


def planted(tmp_path, *, n_stars=200, per_star=2, seed=5):
    """Stars whose labels are smooth functions of two of four latent coordinates.

    Returns the artefact path, the labels CSV path, ids, latents and labels (N, 5).
    """
    rng = np.random.default_rng(seed)
    u = rng.uniform(-1, 1, (n_stars, 2))
    star_y = np.column_stack([5200 + 900 * u[:, 0], 4.3 + 0.4 * u[:, 1],
                              0.3 * (u[:, 0] * u[:, 1]), 5 + 3 * u[:, 1], 30 * u[:, 0]])
    ids, z, y, rows = [], [], [], []
    for s in range(n_stars):
        for j in range(per_star):
            name = f"ADP.2019-{1 + s % 12:02d}-{1 + j:02d}T01_02_03.{s:03d}.fits"
            ids.append(f"ivo://x/~?harps/data/adp/2019/{name}")
            z.append(np.r_[u[s] + 0.01 * rng.normal(size=2), 0.05 * rng.normal(size=2)])
            y.append(star_y[s])
            rows.append([f"2019/{name}", f"star{s}", *star_y[s]])
    z = np.array(z)
    # reconstruction errors vary tenfold across the latent space, as in a real archive
    recon = (1e-3 * (1 + 9 * (z[:, 0] > 0)) * rng.lognormal(0, 0.1, len(z))).astype(np.float32)
    lat = write_artefact(tmp_path / "lat.fits", ids, z, recon=recon)
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "star_id", *LABEL_COLUMNS])
        w.writerows(rows)
    return lat, str(labels), ids, z, np.array(y)


def test_weighted_stats_is_scikit_learns_distance_weighting():
    from sklearn.neighbors import KNeighborsRegressor, NearestNeighbors
    rng = np.random.default_rng(0)
    x, y, q = rng.normal(size=(200, 3)), rng.normal(size=200), rng.normal(size=(50, 3))
    q[0] = x[7]  # an exact match takes all the weight
    nn = NearestNeighbors().fit(x)
    dist, idx = tagger.neighbours(nn, np.array(["a"] * 200, object), q,
                                np.array([tagger.NO_STAR] * 50, object), 7, 0)
    mean, std = tagger.weighted_stats(dist, y[idx])
    ref = KNeighborsRegressor(n_neighbors=7, weights="distance").fit(x, y).predict(q)
    assert np.allclose(mean, ref) and mean[0] == y[7] and std[0] == 0
    assert (std[1:] > 0).all()


def test_neighbours_leave_the_own_star_out():
    from sklearn.neighbors import NearestNeighbors
    x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [9.0]])
    stars = np.array(["a", "a", "a", "b", "b", "c"], object)
    nn = NearestNeighbors().fit(x)
    dist, idx = tagger.neighbours(nn, stars, np.array([[0.05]]), np.array(["a"], object), 2, 3)
    assert idx.tolist() == [[3, 4]] and np.allclose(dist, [[4.95, 5.05]])


def test_tags_recover_planted_labels_on_held_out_stars(tmp_path):
    lat, labels, *_ = planted(tmp_path)
    rep = tags.fit([lat], labels, tmp_path / "tagger", seed=1, method="knn", progress=False)
    assert rep["n_val_stars"] >= tags.MIN_VAL_STARS and rep["n_train_stars"] >= 50
    for name, m in rep["labels"].items():
        # a head that ignored the latents (mean, shuffled neighbours) stays near 1
        assert m["mae"] < 0.35 * m["baseline_mae"], (name, m)
        assert 0.4 <= m["within_1sigma"] <= 0.95, (name, m)
    assert rep["ood_rate_val"] <= 0.1
    meta = tags.Tagger.load(tmp_path / "tagger").meta
    assert meta["model_id"] == "planted-z4" and meta["n_matched"] == 400
    assert meta["label_catalogue"]["sha256"] == hashlib.sha256(Path(labels).read_bytes()) \
        .hexdigest()
    assert meta["label_catalogue"]["columns"]["teff"] == "teff_k"
    assert set(meta["heads"]) == set(tags.TAGS) and meta["code"]["ml"]
    assert json.loads((tmp_path / "tagger" / "validation.json").read_text())["tagger"] \
        .startswith("knn-")


def test_boosted_rule_cross_fits_training_stars_and_is_chosen_by_cv(tmp_path):
    lat, _, ids, z, y = planted(tmp_path, n_stars=120)
    labels = tmp_path / "teff.csv"  # one label: 18 small boosted fits
    labels.write_text("path,star_id,teff_k\n" + "".join(
        f"2019/{i.rsplit('/', 1)[1]},{n // 2},{y[n, 0]}\n" for n, i in enumerate(ids)))
    rep = tags.fit([lat], str(labels), tmp_path / "hgb", method="hgb", threads=1,
                   progress=False)
    m = rep["labels"]["teff"]
    assert m["method"] == "hgb" and m["mae"] < 0.35 * m["baseline_mae"]
    assert 0.4 <= m["within_1sigma"] <= 0.95 and rep["tagger"].startswith("hgb-")
    t = tags.Tagger.load(tmp_path / "hgb")
    assert len(t.boosted["teff"]["folds"]) == tagger.N_FOLDS
    assert (tmp_path / "hgb" / "tagger.joblib").exists()
    keys = [data.file_key(i) for i in ids[:40]]
    crossfit = t.raw(t.heads["teff"], z[:40], t.query_stars(keys))[0]
    insample = tagger.predict_boosted(t.boosted["teff"]["final"], z[:40])[0]
    train = t.query_stars(keys) != tagger.NO_STAR
    assert train.any() and not np.allclose(crossfit[train], insample[train])
    h = t.heads["teff"]
    assert h.cv_mae == h.cv_mae_hgb and np.isfinite(h.cv_mae_knn)
    # a changed model file is refused, not unpickled
    (tmp_path / "hgb" / "tagger.joblib").write_bytes(b"not the models")
    with pytest.raises(tags.TagError, match="SHA-256"):
        tags.Tagger.load(tmp_path / "hgb")


def test_a_head_without_signal_does_not_beat_the_mean(tmp_path):
    """The threshold above is one a broken head fails: shuffled latents give MAE ~ baseline."""
    lat, labels, ids, z, _ = planted(tmp_path)
    shuffled = write_artefact(tmp_path / "shuf.fits", ids,
                              np.random.default_rng(9).permutation(z))
    rep = tags.fit([shuffled], labels, tmp_path / "t2", seed=1, method="knn", progress=False)
    assert rep["labels"]["teff"]["mae"] > 0.7 * rep["labels"]["teff"]["baseline_mae"]


def test_predict_flags_outliers_and_unencoded_rows(tmp_path):
    lat, labels, ids, z, y = planted(tmp_path)
    tags.fit([lat], labels, tmp_path / "tagger", seed=1, method="knn", progress=False)
    extra = ["ivo://x/~?harps/data/s1d/far.fits", "ivo://x/~?harps/data/s1d/bad.fits",
             "ivo://x/~?harps/data/s1d/odd.fits", "ivo://x/~?harps/data/s1d/junk.fits"]
    low = [-0.5, 0.3, 0, 0]  # where the training spectra reconstruct to ~1e-3
    z2 = np.vstack([z, [[40.0, 40.0, 0, 0], z[0], low, [np.nan] * 4]])
    with fits.open(lat) as hdul:
        recon = np.r_[hdul["LATENTS"].data["recon_err"], 1e-3, 50.0, 6e-3, np.nan]
    assert 6e-3 < np.percentile(recon[:-4], 99)  # 'odd' passes the global threshold
    flags = np.r_[np.zeros(len(ids) + 3), 2].astype(np.int32)
    new = write_artefact(tmp_path / "new.fits", ids + extra, z2, recon=recon, flags=flags)
    out = tmp_path / "tags.fits"
    assert tags.main(["predict", "--tagger", str(tmp_path / "tagger"), "--latents", new,
                      "--out", str(out), "--quiet"]) == 0
    with fits.open(out) as hdul:
        t, h = hdul["TAGS"].data, hdul["TAGS"].header
        assert h["MODELID"] == "planted-z4" and h["TAGGER"].startswith("knn-")
        assert h["LABELCAT"] == "labels.csv" and h["NMATCHED"] == 400
        assert h["MATCH"].startswith("file name") and h["MAETEFF"] > 0
        assert t.columns["teff"].unit == "K" and t.columns["ood"].format == "I"  # int16
        assert list(t["ood_reason"][-4:]) == [
            "latent density", "reconstruction error, reconstruction vs neighbours",
            "reconstruction vs neighbours", "not encoded"]
        assert (t["ood"][-4:] == 1).all() and np.isnan(t["teff"][-1])
        assert (t["ood_score"][-4:-1] > 1).all() and np.isnan(t["ood_score"][-1])
        typical = t[:-4]
        assert typical["ood"].mean() < 0.05 and (typical["ood_reason"][typical["ood"] == 0]
                                                 == "").all()
        # training spectra leave their own star out: no tag is simply its own label
        assert np.mean(np.abs(typical["teff"] - y[:, 0]) < 1e-3) < 0.2
        assert np.all(typical["teff_err"] > 0)
    assert not list(tmp_path.glob("*.part*"))


def _one_line_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as ex:
        code = tags.main(argv)
        raise SystemExit(code)
    err = capsys.readouterr().err
    assert ex.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err


def test_refusals_are_one_line_with_exit_status_2(tmp_path, capsys):
    lat, labels, ids, z, _ = planted(tmp_path, n_stars=20, per_star=2)
    nostar = tmp_path / "nostar.csv"
    nostar.write_text("path,teff_k\n2019/x.fits,5000\n")
    err = _one_line_exit_2(capsys, ["fit", "--latents", lat, "--labels", str(nostar),
                                    "--out", str(tmp_path / "o")])
    assert "nostar.csv" in err and "star column" in err
    other = tmp_path / "other.csv"
    other.write_text("path,star_id,teff_k\nelse.fits,s,5000\n")
    err = _one_line_exit_2(capsys, ["fit", "--latents", lat, "--labels", str(other),
                                    "--out", str(tmp_path / "o")])
    assert "no encoded latents row matched" in err
    few = tmp_path / "few.csv"
    few.write_text("path,star_id,teff_k\n" + "".join(
        f"2019/{i.rsplit('/', 1)[1]},{n % 4},5000\n" for n, i in enumerate(ids)))
    err = _one_line_exit_2(capsys, ["fit", "--latents", lat, "--labels", str(few),
                                    "--out", str(tmp_path / "o")])
    assert "too few labelled stars" in err
    assert tags.main(["fit", "--latents", lat, "--labels", labels, "--out", str(tmp_path / "t"),
                      "--quiet", "--val-fraction", "0.3", "--method", "knn"]) == 0
    capsys.readouterr()
    alien = write_artefact(tmp_path / "alien.fits", ids, z, model_id="other-model")
    err = _one_line_exit_2(capsys, ["predict", "--tagger", str(tmp_path / "t"), "--latents",
                                    alien, "--out", str(tmp_path / "x.fits")])
    assert "other-model" in err and "planted-z4" in err
    err = _one_line_exit_2(capsys, ["fit", "--latents", lat, alien, "--labels", labels,
                                    "--out", str(tmp_path / "o")])
    assert "alien.fits" in err
    err = _one_line_exit_2(capsys, ["predict", "--tagger", str(tmp_path / "none"),
                                    "--latents", lat, "--out", str(tmp_path / "x.fits")])
    assert "--tagger" in err
    err = _one_line_exit_2(capsys, ["fit", "--latents", lat])
    assert "required" in err


def test_label_table_matches_file_names_and_dids(tmp_path):
    p = tmp_path / "cat.csv"
    p.write_text("product_id,star_id,Teff,[Fe/H]\n"
                 "ADP.2019-01-01T01:02:03.004,s1,5000,\nADP.2019-01-02T01:02:03.004,s2,x,0.1\n")
    t = data.read_label_table(p, {n: tg.columns for n, tg in tags.TAGS.items()})
    assert t.names == ("teff", "mh") and t.columns == ("teff", "[fe/h]")
    rows = t.match(["ivo://a/~?harps/data/adp/2019/ADP.2019-01-02T01_02_03.004.fits",
                    "ADP.2019-01-01T01_02_03.004.fits", "other.fits"])
    assert rows.tolist() == [1, 0, -1]
    assert np.isnan(t.values[0, 1]) and np.isnan(t.values[1, 0]) and t.values[1, 1] == 0.1
    assert data.file_key("ivo://a/~?x/ADP.2019-01-02T01:02:03.004.fits") == \
        "ADP.2019-01-02T01_02_03.004"
