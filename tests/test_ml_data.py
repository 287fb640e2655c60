"""ml.data: inputs, labels, the preprocessing cache, the star split and weighted sampling."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
from support import SHARED, require
from tiny_archive import make_archive

from ml import data
from ml import preprocess as pp

TINY = pp.Recipe(pp.Grid(0.5, 256))


def _stars(seed=0, n_stars=40):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 30, n_stars)  # heavy repeats, like HARPS targets
    return [f"star{k}" for k, c in enumerate(counts) for _ in range(c)]


@pytest.mark.parametrize("val_fraction", [0.1, 0.3])
def test_split_by_star_has_no_leakage(val_fraction):
    stars = _stars()
    train, val = data.split_by_star(stars, val_fraction, seed=7)
    assert len(train) + len(val) == len(stars) and not set(train) & set(val)
    s_train, s_val = {stars[i] for i in train}, {stars[i] for i in val}
    assert s_val and not s_train & s_val
    assert val_fraction <= len(val) / len(stars) < val_fraction + 30 / len(stars)
    again = data.split_by_star(stars, val_fraction, seed=7)
    assert np.array_equal(again[1], val)
    assert not np.array_equal(data.split_by_star(stars, val_fraction, seed=8)[1], val)


def test_split_keeps_a_training_star_and_allows_no_validation():
    train, val = data.split_by_star(["a"] * 5 + ["b"], 0.9, seed=0)
    assert len(train) > 0 and len(val) > 0
    train, val = data.split_by_star(["a"] * 5, 0.5, seed=0)
    assert len(train) == 5 and len(val) == 0
    train, val = data.split_by_star(_stars(), 0.0, seed=0)
    assert len(val) == 0
    with pytest.raises(data.DataError, match="--val-fraction"):
        data.split_by_star(["a"], 1.0, seed=0)


def test_star_weights_are_one_over_spectra_per_star():
    stars = _stars()
    w = data.star_weights(stars)
    counts = Counter(stars)
    assert all(w[i] == 1.0 / counts[s] for i, s in enumerate(stars))
    per_star = Counter()
    for s, wi in zip(stars, w, strict=True):
        per_star[s] += wi
    assert all(v == pytest.approx(1.0) for v in per_star.values())


def test_weighted_sampler_is_one_sample_split_across_processes():
    stars = _stars(n_stars=20)
    w = data.star_weights(stars)
    single = data.WeightedStarSampler(w, 1001, seed=3)
    ranks = [data.WeightedStarSampler(w, 1001, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for s in [single, *ranks]:
        s.set_epoch(4)
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) == 501  # equal batches on every process: no DDP hang
    merged = [x for pair in zip(a, b, strict=True) for x in pair]
    full = data.WeightedStarSampler(w, 1002, seed=3)
    full.set_epoch(4)
    assert merged == list(full)
    # resuming skips the batches already done
    ranks[0].set_epoch(4, skip=100)
    assert list(ranks[0]) == a[100:] and len(ranks[0]) == 401
    # another epoch draws another sample
    single.set_epoch(5)
    first = list(single)
    single.set_epoch(6)
    assert first != list(single)


def test_weighted_sampler_draws_stars_equally():
    stars = ["big"] * 500 + ["mid"] * 50 + ["one"]
    s = data.WeightedStarSampler(data.star_weights(stars), 30_000, seed=0)
    drawn = Counter(stars[i] for i in s)
    for star in ("big", "mid", "one"):
        assert drawn[star] / 30_000 == pytest.approx(1 / 3, abs=0.02)


def test_labels_from_harps_synth_style_csv(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("index,product_id,path,layout,star_id,object\n"
                        "0,ADP.2014-10-29T03:02:35.525,2014/ADP.2014-10-29T03_02_35.525.fits,"
                        "ADP,3,SYN-HD1\n"
                        "1,HARPS.2015-01-01T00:00:00.000_s1d_A,2015/HARPS.2015-01-01T00_00_00"
                        ".000_s1d_A.fits,S1D,5,SYN-HD2\n")
    labels = data.read_labels(csv_path)
    files = [tmp_path / "x" / "ADP.2014-10-29T03_02_35.525.fits",
             tmp_path / "HARPS.2015-01-01T00_00_00.000_s1d_A.fits"]
    assert data.star_ids(files, labels) == ["3", "5"]
    assert data.star_ids([tmp_path / "missing.fits"], labels) == [""]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(data.DataError, match="bad.csv: labels CSV needs a file column"):
        data.read_labels(bad)


def test_files_the_labels_do_not_know_are_grouped_by_object(tmp_path):
    """A real file, absent from the labels CSV, gets its star from OBJECT."""
    real_files = sorted((SHARED / "s1d").glob("*.fits"))[:2]
    require(len(real_files) == 2, f"real HARPS s1d files not found at {SHARED / 's1d'}")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("index,product_id,path,layout,star_id,object\n")
    labels = data.read_labels(csv_path)
    assert data.star_ids(real_files, labels) == ["object:HD189733", "object:HD128621"]


def test_collect_inputs(tmp_path):
    files, _ = make_archive(tmp_path / "a", n_stars=2, per_star=(2,), garbage=False)
    lst = tmp_path / "list.txt"
    lst.write_text("# two files\na/" + files[0].name + "\n" + str(files[1]) + "\n")
    assert data.collect_inputs([tmp_path / "a"]) == sorted(p.resolve() for p in files)
    assert data.collect_inputs([f"@{lst}", files[0]]) == sorted(p.resolve() for p in files[:2])
    with pytest.raises(data.DataError, match="nowhere.fits: no such file"):
        data.collect_inputs([tmp_path / "nowhere.fits"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="no FITS files"):
        data.collect_inputs([tmp_path / "empty"])


def test_cache_holds_preprocessed_rows_and_is_reused(tmp_path):
    files, labels = make_archive(tmp_path / "arch", n_stars=2, per_star=(2, 1))
    paths = data.collect_inputs([tmp_path / "arch"])
    stars = data.star_ids(paths, data.read_labels(labels))
    info = data.build_cache(paths, stars, TINY, tmp_path / "cache", dtype="float32",
                            progress=False)
    assert info.files == [str(p) for p in paths] and info.stars == stars
    garbage = [i for i, p in enumerate(paths) if p.name == "SYN.garbage.fits"]
    assert info.flags[garbage[0]] == pp.FLAG_GARBAGE and len(info.usable) == len(paths) - 1
    flux = np.load(tmp_path / "cache" / "flux.npy", mmap_mode="r")
    ds = data.CachedSpectra(tmp_path / "cache", info.usable)
    for k, row in enumerate(info.usable):
        ref = pp.preprocess_file(paths[row], TINY)
        x, m, r = ds[k]
        assert r == row and np.array_equal(x.numpy(), ref.flux) and np.array_equal(m, ref.mask)
        assert info.scales[row] == ref.scale
    assert not np.load(tmp_path / "cache" / "mask.npy")[garbage[0]].any()
    del flux
    stamp = os.stat(tmp_path / "cache" / "cache.json").st_mtime_ns
    data.build_cache(paths, stars, TINY, tmp_path / "cache", dtype="float32", progress=False)
    assert os.stat(tmp_path / "cache" / "cache.json").st_mtime_ns == stamp  # reused
    # another recipe rebuilds it, in float16 here
    info16 = data.build_cache(paths, stars, pp.Recipe(pp.Grid(1.0, 1)), tmp_path / "cache",
                              progress=False)
    assert info16.dtype == "float16"
    assert np.load(tmp_path / "cache" / "flux.npy", mmap_mode="r").shape == (len(paths), 3126)
    key = json.loads((tmp_path / "cache" / "cache.json").read_text())["key"]
    assert key["recipe"]["grid"]["step"] == 1.0


def test_cache_with_workers_equals_serial(tmp_path):
    make_archive(tmp_path / "arch", n_stars=2, per_star=(2,), garbage=False)
    paths = data.collect_inputs([tmp_path / "arch"])
    stars = ["s"] * len(paths)
    data.build_cache(paths, stars, TINY, tmp_path / "c0", progress=False)
    data.build_cache(paths, stars, TINY, tmp_path / "c2", workers=2, progress=False)
    for name in ("flux.npy", "mask.npy"):
        assert np.array_equal(np.load(tmp_path / "c0" / name), np.load(tmp_path / "c2" / name))
