"""ml.preprocess on the real HARPS files and on constructed spectra."""

from __future__ import annotations

import numpy as np
import pytest
from support import SHARED, require

from harps_data import fitsio, harps
from ml import preprocess as pp

ADP = SHARED / "adp" / "ADP.2014-09-16T11_04_45.123.fits"
S1D_DIR = SHARED / "s1d"
GARBAGE = SHARED / "edge_cases" / "HARPS.2003-12-13T06_19_48.371_s1d_A.fits"
CEN_B_HIGH = S1D_DIR / "HARPS.2012-03-24T08_37_45.581_s1d_A.fits"  # BERV +18.26 km/s
CEN_B_LOW = S1D_DIR / "HARPS.2012-05-31T00_20_46.272_s1d_A.fits"  # BERV -3.57 km/s
FULL = pp.Recipe(pp.Grid())


@pytest.fixture(scope="module")
def adp():
    require(ADP.exists(), f"real ADP file missing: {ADP}")
    return fitsio.read_spectrum(ADP)


def test_full_grid_is_the_harps_model_grid():
    g = pp.Grid()
    assert g.npix == harps.MODEL_NPIX and g.padded == harps.MODEL_PADDED
    assert g.wave[0] == harps.MODEL_WAVE_MIN and g.wave[-1] == pytest.approx(harps.MODEL_WAVE_MAX)
    # coarse grids keep a padded length that 2**layers divides
    assert pp.Grid(0.1, 2**12).padded == 32768 and pp.Grid(0.5, 2**8).padded == 6400
    with pytest.raises(ValueError, match="power of two"):
        pp.Grid(0.5, 48)


def test_adp_length_mask_and_normalisation(adp):
    out = pp.preprocess(adp, FULL)
    assert out.flags == 0 and out.method == "index"
    assert out.flux.shape == out.mask.shape == (harps.MODEL_PADDED,)
    assert out.flux.dtype == np.float32
    wave = harps.model_grid()
    gap = harps.in_ccd_gap(wave, harps.MODEL_GAP)
    assert not out.mask[:harps.MODEL_NPIX][gap].any()
    assert not out.mask[harps.MODEL_NPIX:].any() and not out.flux[harps.MODEL_NPIX:].any()
    assert not out.flux[~out.mask].any()  # masked pixels hold zeros
    assert out.mask[:harps.MODEL_NPIX][~gap].mean() > 0.99
    assert np.median(out.flux[out.mask]) == pytest.approx(1.0, abs=1e-6)
    # the scale is the median of the archived flux over the kept pixels
    k = int(round((harps.MODEL_WAVE_MIN - adp.wave[0]) / harps.WAVE_STEP))
    window = adp.flux[k:k + harps.MODEL_NPIX].astype(np.float64)
    assert out.scale == pytest.approx(np.median(window[out.mask[:harps.MODEL_NPIX]]), rel=1e-12)


@pytest.mark.parametrize("name", ["HARPS.2006-09-08T02_12_38.604_s1d_A.fits",
                                  "HARPS.2012-05-05T03_39_48.235_s1d_A.fits"])
def test_s1d_with_whole_pixel_offset_is_copied_exactly(name):
    path = S1D_DIR / name
    require(path.exists(), f"real s1d file missing: {path}")
    spec = fitsio.read_spectrum(path)
    out = pp.preprocess(spec, FULL)
    assert out.flags == 0 and out.method == "index"
    k = int(round((harps.MODEL_WAVE_MIN - spec.wave[0]) / harps.WAVE_STEP))
    assert k > 300  # every real file starts below MODEL_WAVE_MIN, each at its own pixel
    src = spec.flux[k:k + harps.MODEL_NPIX].astype(np.float64)
    m = out.mask[:harps.MODEL_NPIX]
    np.testing.assert_array_equal(out.flux[:harps.MODEL_NPIX][m], (src[m] / out.scale)
                                  .astype(np.float32))
    assert (src[~m] == 0).sum() >= 3290 - 20  # gap zeros are masked, not copied as signal


def test_sub_pixel_offsets_interpolate_linearly():
    wave = 3780.0 + 0.003 + 0.01 * np.arange(320_000)
    flux = 2.0 + 1e-3 * (wave - 5000.0)  # linear: interpolation must be exact
    target = harps.model_grid()
    out, ok, method = pp.resample(wave, flux, np.ones(len(wave), bool), target)
    assert method == "linear" and ok.all()
    np.testing.assert_allclose(out, 2.0 + 1e-3 * (target - 5000.0), rtol=0, atol=1e-11)


def test_coarse_grid_bin_average_conserves_flux_and_skips_bad_pixels():
    wave = 3780.0 + 0.01 * np.arange(320_000)
    rng = np.random.default_rng(1)
    flux = rng.uniform(0.5, 1.5, len(wave))
    valid = np.ones(len(wave), bool)
    target = harps.model_grid(0.5)
    out, ok, method = pp.resample(wave, flux, valid, target)
    assert method == "bin" and ok.all()
    # each 0.5 A bin is the mean of the 0.01 A pixels inside it (50 whole, 2 halves)
    i = int(round((target[100] - 0.25 - wave[0]) / 0.01))  # pixel centred on the lower edge
    expect = (flux[i] * 0.5 + flux[i + 1:i + 50].sum() + flux[i + 50] * 0.5) / 50
    assert out[100] == pytest.approx(expect, rel=1e-10)
    # an absurd invalid pixel does not leak into its bin
    flux2, valid2 = flux.copy(), valid.copy()
    flux2[i + 10], valid2[i + 10] = 1e20, False
    out2, ok2, _ = pp.resample(wave, flux2, valid2, target)
    assert ok2[100] and abs(out2[100] - out[100]) < 0.05
    # bins outside the source are invalid
    out3, ok3, _ = pp.resample(wave[:1000], flux[:1000], valid[:1000], target)
    assert ok3[:10].all() and not ok3[50:].any()


def test_observatory_frame_shifts_by_berv(adp):
    bary = pp.preprocess(adp, FULL)
    obs = pp.preprocess(adp, pp.Recipe(pp.Grid(), frame="observatory"))
    assert obs.flags == 0 and obs.method == "linear"
    # lambda_obs = lambda_bary / (1 + BERV/c): features move by -lambda BERV / c
    lo = int((5000.0 - harps.MODEL_WAVE_MIN) / harps.WAVE_STEP)
    a, b = bary.flux[lo:lo + 10_000] - 1, obs.flux[lo:lo + 10_000] - 1
    lags = np.arange(-40, 41)
    cc = [np.dot(a[40:-40], np.roll(b, -lag)[40:-40]) for lag in lags]
    expected = -5050.0 * adp.meta.berv / harps.C_KMS / harps.WAVE_STEP  # +14.6 pixels
    assert abs(lags[int(np.argmax(cc))] - expected) <= 1.0


def test_observatory_frame_pins_the_ccd_gap():
    for p in (CEN_B_HIGH, CEN_B_LOW):
        require(p.exists(), f"real s1d file missing: {p}")
    target = harps.model_grid()

    def gap_edges(path, frame):
        s = fitsio.read_spectrum(path)
        _, ok, _ = pp.resample(pp.to_frame(s.wave, s.meta.berv, frame), s.flux, s.flux != 0,
                               target)
        zero = np.flatnonzero(~ok & (target > 5290) & (target < 5350))
        return zero[0], zero[-1]

    bary = [gap_edges(p, "barycentric") for p in (CEN_B_HIGH, CEN_B_LOW)]
    obs = [gap_edges(p, "observatory") for p in (CEN_B_HIGH, CEN_B_LOW)]
    assert abs(bary[0][0] - bary[1][0]) > 30  # 21.8 km/s apart: 39 pixels
    assert abs(obs[0][0] - obs[1][0]) <= 1 and abs(obs[0][1] - obs[1][1]) <= 1
    assert target[obs[0][0]] == pytest.approx(harps.CCD_GAP_TOPOCENTRIC[0], abs=0.02)


def test_garbage_edge_case_is_flagged_and_empty():
    require(GARBAGE.exists(), f"edge-case file missing: {GARBAGE}")
    for recipe in (FULL, pp.Recipe(pp.Grid(0.5, 256))):
        out = pp.preprocess_file(GARBAGE, recipe)
        assert out.flags & pp.FLAG_GARBAGE and "garbage" in out.reason
        assert not out.mask.any() and not out.flux.any()
        assert pp.flag_names(out.flags) == ["garbage"]


def test_degenerate_spectra_are_flagged(tmp_path, adp):
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a FITS file at all")
    out = pp.preprocess_file(junk, FULL)
    assert out.flags == pp.FLAG_INVALID and "not a FITS file" in out.reason
    # negative flux: median not positive
    neg = fitsio.Spectrum(adp.wave, -np.abs(adp.flux), None, adp.meta)
    assert pp.preprocess(neg, FULL).flags & pp.FLAG_BAD_MEDIAN
    # a spectrum covering only the blue third of the grid
    short = fitsio.Spectrum(adp.wave[:100_000], adp.flux[:100_000], None, adp.meta)
    out = pp.preprocess(short, FULL)
    assert out.flags == pp.FLAG_FEW_VALID and not out.mask.any()
    assert pp.preprocess(short, pp.Recipe(pp.Grid(), min_valid_fraction=0.2)).flags == 0
    # observatory frame without BERV
    import dataclasses
    nober = fitsio.Spectrum(adp.wave, adp.flux, None, dataclasses.replace(adp.meta, berv=None))
    assert pp.preprocess(nober, pp.Recipe(frame="observatory")).flags == pp.FLAG_NO_BERV
    assert pp.preprocess(nober, FULL).flags == 0


def test_isolated_bad_pixels_are_masked_not_flagged(adp):
    flux = adp.flux.copy()
    k = int(round((harps.MODEL_WAVE_MIN - adp.wave[0]) / harps.WAVE_STEP))
    flux[k + 1000] = np.nan
    flux[k + 2000] = 1e12
    out = pp.preprocess(fitsio.Spectrum(adp.wave, flux, None, adp.meta), FULL)
    assert out.flags == 0
    assert not out.mask[1000] and not out.mask[2000] and out.mask[1500]
    assert np.isfinite(out.flux).all() and np.abs(out.flux).max() < 100
