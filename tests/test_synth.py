"""Tests of the synthetic HARPS archive generator (harps_synth).

Fast by design: small archives on coarse grids, narrow wavelength ranges for
the physics, one full-grid spectrum.  Every test compares against something
independent (astropy, harps_data.fitsio, geometry, the seeds of another run) so that
it can fail.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from harps_data import fitsio, harps
from harps_synth import (
    SpectrumParams,
    SynthConfig,
    astro,
    cli,
    exposure,
    fitswrite,
    iter_observations,
    make_catalogue,
    normalized_spectrum,
    planner_for,
    render,
    write_archive,
)
from harps_synth.config import ConfigError
from harps_synth.kernels import bin_average
from harps_synth.spectrum import gap_mask
from harps_synth.truth import read_truth, truth_path

TODAY = dt.date(2026, 11, 21)
MANDATORY_PRIMARY = (
    "PRODCATG", "ORIGIN", "TELESCOP", "INSTRUME", "OBJECT", "RA", "DEC", "RADECSYS", "EQUINOX",
    "EXPTIME", "TEXPTIME", "MJD-OBS", "MJD-END", "DATE-OBS", "OBSTECH", "FLUXCAL", "PROCSOFT",
    "SPECSYS", "CONTNORM", "TOT_FLUX", "WAVELMIN", "WAVELMAX", "SPEC_BIN", "SNR", "SPEC_RES",
    "PROG_ID", "OBID1", "NCOMBINE", "PROV1", "FLUXERR", "ARCFILE", "ORIGFILE", "P3ORIG",
    "CHECKSUM", "DATASUM", "ESO DRS BERV", "ESO DRS BJD", "ESO DRS VERSION",
    "ESO TEL AIRM START", "ESO TEL AIRM END", "ESO OBS PROG ID", "ESO DPR TYPE",
    "ESO DRS SPE EXT SN50", "ESO TEL AMBI IWV START", "ESO TEL AMBI IWV END",
    "ESO DRS CAL TH COEFF LL0", "ESO DRS SPE EXT SN71", harps.SYNTHETIC_KEYWORD)
MANDATORY_EXTENSION = (
    "VOCLASS", "VOPUB", "TITLE", "OBJECT", "RA", "DEC", "APERTURE", "TELAPSE", "TMID", "NELEM",
    "SPEC_VAL", "SPEC_BW", "TUTYP1", "TUTYP2", "TUTYP3", "TUCD1", "TUCD2", "TUCD3", "TUNIT1",
    "TUNIT2", "TUNIT3", "TCOMM1", "TCOMM2", "TCOMM3", "TDMIN1", "TDMAX1", "INHERIT",
    "CHECKSUM", "DATASUM")


def _labels(summary) -> list[dict]:
    with open(summary.labels_path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def adp_archive(tmp_path_factory):
    """Ten coarse ADP files, ERR as NaN (the default layout)."""
    out = tmp_path_factory.mktemp("adp")
    return write_archive(out, 10, seed=11, step=1.0, today=TODAY, proprietary_fraction=0.3)


@pytest.fixture(scope="module")
def both_archive(tmp_path_factory):
    """Four observations as ADP and s1d, with real errors."""
    out = tmp_path_factory.mktemp("both")
    return write_archive(out, 4, seed=12, step=0.5, fmt="both", err="real", today=TODAY)


@pytest.fixture(scope="module")
def full_grid():
    """The one full-resolution (0.01 A) spectrum of the suite, with noise."""
    obs = next(iter_observations(5, seed=21, today=TODAY))
    wave = harps.archive_grid(harps.WAVE_STEP)
    flux, err = render(obs, wave)
    return obs, wave, flux, err


# --------------------------------------------------------------------------
# FITS format
# --------------------------------------------------------------------------

def test_checksum_encoding_matches_astropy():
    rng = np.random.default_rng(0)
    data = rng.normal(size=1001).astype(">f4").tobytes()
    cards = [fitswrite.card("SIMPLE", True), fitswrite.card("BITPIX", -32),
             fitswrite.card("NAXIS", 1), fitswrite.card("NAXIS1", 1001),
             fitswrite.hcard("ESO DRS BERV", -8.6859110031507, "BERV", align=False)]
    hdu = fits.PrimaryHDU(np.frombuffer(data, ">f4"))
    hdu.header["HIERARCH ESO DRS BERV"] = -8.6859110031507
    hdu.add_datasum()
    raw = fitswrite.hdu_bytes(cards, data)
    with fits.open(BytesIO(raw), checksum=True) as h:
        assert h[0].verify_checksum() == 1 and h[0].verify_datasum() == 1
        assert int(h[0].header["DATASUM"]) == int(hdu.header["DATASUM"])


def test_adp_files_open_with_valid_checksums(adp_archive):
    rows = _labels(adp_archive)
    assert len(rows) == 10
    for row in rows:
        path = adp_archive.out_dir / row["path"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a checksum mismatch is a warning in astropy
            with fits.open(path, checksum=True) as h:
                assert len(h) == 2
                assert h[0].verify_checksum() == 1 and h[1].verify_checksum() == 1
                assert h[1].verify_datasum() == 1 and h[0].header["DATASUM"] == "0"


def test_adp_structure_and_mandatory_keywords(adp_archive):
    row = _labels(adp_archive)[0]
    with fits.open(adp_archive.out_dir / row["path"]) as h:
        p, x = h[0].header, h[1].header
        assert p["NAXIS"] == 0 and 2900 <= len(p) <= 3200
        assert len([k for k in p if k.startswith("ESO DRS CAL")]) > 2000
        missing = [k for k in MANDATORY_PRIMARY if k not in p]
        missing += [k for k in MANDATORY_EXTENSION if k not in x]
        assert not missing
        assert (p["ORIGIN"], p["TELESCOP"], p["INSTRUME"]) == ("ESO", "ESO-3.6", "HARPS")
        assert (p["PRODCATG"], p["SPECSYS"], p["FLUXCAL"]) == (
            "SCIENCE.SPECTRUM", "BARYCENT", "UNCALIBRATED")
        assert p["FLUXERR"] == -1.0 and p["RADECSYS"] == "FK5" and p["EQUINOX"] == 2000.0
        assert p[harps.SYNTHETIC_KEYWORD] is True
        assert x["XTENSION"] == "BINTABLE" and x["EXTNAME"] == "SPECTRUM"
        assert x["NAXIS2"] == 1 and x["TFIELDS"] == 3 and x["INHERIT"] is True
        n = x["NELEM"]
        assert [x[f"TFORM{i}"] for i in (1, 2, 3)] == [f"{n}D", f"{n}E", f"{n}E"]
        assert x["VOCLASS"] == "SPECTRUM v1.0" and x["TUCD1"] == "em.wl;obs.atmos"
        assert p["OBJECT"] in x["TITLE"] and x["OBJECT"] == p["OBJECT"]
        assert x["RA"] == pytest.approx(p["RA"]) and x["DEC"] == pytest.approx(p["DEC"])
        assert x["TELAPSE"] == pytest.approx((p["MJD-END"] - p["MJD-OBS"]) * 86400, abs=1e-3)
        assert x["TMID"] == pytest.approx((p["MJD-END"] + p["MJD-OBS"]) / 2, abs=1e-8)
        assert p["TEXPTIME"] <= (p["MJD-END"] - p["MJD-OBS"]) * 86400 + 1e-3
        wave = h[1].data["WAVE"][0]
        assert wave[0] <= p["WAVELMIN"] * 10 < p["WAVELMAX"] * 10 <= wave[-1]
        assert x["SPEC_VAL"] == pytest.approx((p["WAVELMIN"] + p["WAVELMAX"]) / 2)
        assert np.all(np.isnan(h[1].data["ERR"][0]))
        assert re.fullmatch(r"ADP\.\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\.fits", p["ARCFILE"])
        assert (adp_archive.out_dir / row["path"]).name == p["ARCFILE"].replace(":", "_")
        assert row["path"].split("/")[0] == p["DATE-OBS"][:4]


def test_dpr_type_follows_temperature(adp_archive):
    masks = {"G2": (5200, 7001), "K5": (3900, 5200), "M2": (3300, 3900), "M4": (0, 3300)}
    for row in _labels(adp_archive):
        header = fits.getheader(adp_archive.out_dir / row["path"])
        lo, hi = masks[header["ESO DPR TYPE"].split(",")[2]]
        assert lo <= float(row["teff_k"]) < hi


def test_fitsio_reads_back_what_was_written(both_archive):
    obs = list(iter_observations(4, seed=12, today=TODAY))
    wave = harps.archive_grid(0.5)
    for row in _labels(both_archive):
        path = both_archive.out_dir / row["path"]
        meta = fitsio.validate(path)
        spec = fitsio.read_spectrum(path)
        flux, err = render(obs[int(row["index"])], wave)
        assert meta.product_id == row["product_id"] and meta.synthetic
        assert np.array_equal(spec.wave, wave) and np.array_equal(spec.flux, flux)
        if row["layout"] == "ADP":
            assert np.array_equal(spec.err, err, equal_nan=True)
            with fits.open(path) as h:
                assert np.array_equal(h[1].data["FLUX"][0], spec.flux)
                assert np.array_equal(h[1].data["WAVE"][0], spec.wave)
        else:
            with fits.open(path) as h:
                assert h[0].header["ORIGIN"] == "TEST" and h[0].header["DATASUM"] == "0"
                assert "CHECKSUM" not in h[0].header
                assert np.array_equal(h[0].data, spec.flux)


# --------------------------------------------------------------------------
# Reproducibility, labels, archive policy
# --------------------------------------------------------------------------

def _tree(root) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name != "synth_run.json"}


def test_same_seed_same_bytes_any_workers(tmp_path):
    a = write_archive(tmp_path / "a", 6, seed=5, step=1.0, today=TODAY)
    b = write_archive(tmp_path / "b", 6, seed=5, step=1.0, today=TODAY, workers=2)
    c = write_archive(tmp_path / "c", 6, seed=6, step=1.0, today=TODAY)
    tree_a, tree_c = _tree(a.out_dir), _tree(c.out_dir)
    assert tree_a == _tree(b.out_dir) and len(tree_a) == 7
    assert set(tree_a) & set(tree_c) == {Path("labels.csv")}  # another seed: other files


def test_labels_agree_with_headers(adp_archive):
    for row in _labels(adp_archive):
        p = fits.getheader(adp_archive.out_dir / row["path"])
        assert row["product_id"] == p["ARCFILE"][:-5] and row["object"] == p["OBJECT"]
        assert float(row["ra_deg"]) == pytest.approx(p["RA"], abs=1e-6)
        assert float(row["dec_deg"]) == pytest.approx(p["DEC"], abs=1e-5)
        assert float(row["berv_kms"]) == pytest.approx(p["ESO DRS BERV"], abs=1e-9)
        assert float(row["mjd_obs"]) == pytest.approx(p["MJD-OBS"], abs=1e-8)
        assert float(row["exptime_s"]) == pytest.approx(p["EXPTIME"], abs=1e-4)
        assert row["prog_id"] == p["PROG_ID"] == p["ESO OBS PROG ID"]
        airmass = (p["ESO TEL AIRM START"] + p["ESO TEL AIRM END"]) / 2
        assert float(row["airmass"]) == pytest.approx(airmass, abs=1e-4)
        pwv = (p["ESO TEL AMBI IWV START"] + p["ESO TEL AMBI IWV END"]) / 2
        assert float(row["pwv_mm"]) == pytest.approx(pwv, abs=1e-3)
        # a 1 A pixel bins 100 native ones: S/N grows by sqrt(100)
        assert p["SNR"] == pytest.approx(10 * float(row["snr"]), rel=0.1)
        release = dt.date.fromisoformat(p["DATE-OBS"][:10]) + dt.timedelta(days=365)
        assert row["release_date"] == release.isoformat()
        assert row["is_proprietary"] == str(release > TODAY)


def test_proprietary_fraction_and_dates():
    config = SynthConfig(n_spectra=400, seed=3, today=TODAY, proprietary_fraction=0.25)
    plan = planner_for(config)
    obs = [plan.plan(i) for i in range(400)]
    assert sum(o.is_proprietary for o in obs) == 100
    dates = sorted(o.date_obs for o in obs)
    assert dates[0] >= "2003-12-01" and dates[-1] < TODAY.isoformat()
    recent = [o for o in obs if o.date_obs[:10] > (TODAY - dt.timedelta(365)).isoformat()]
    assert all(o.is_proprietary for o in recent) and len(recent) == 100


def test_dates_and_archive_names_are_unique():
    plan = planner_for(SynthConfig(n_spectra=20_000, n_stars=50, seed=4, today=TODAY))
    # many spectra on few nights: check the (night, slot) mapping that makes names unique
    keys = [plan.night_slot(i) for i in range(0, 20_000, 7)]
    assert len(set(keys)) == len(keys)
    obs = [plan.plan(i) for i in range(300)]
    assert len({o.date_obs for o in obs}) == len({o.arcfile for o in obs}) == 300
    assert all(o.arcfile[4:14] >= o.date_obs[:10] for o in obs)


def test_observations_per_star_are_heavy_tailed():
    plan = planner_for(SynthConfig(n_spectra=2500, n_stars=200, seed=8, today=TODAY))
    counts = np.bincount([plan.plan(i).star.star_id for i in range(2500)], minlength=200)
    assert counts.max() >= 100  # a few favourite targets
    assert np.median(counts) <= 6  # most stars: a few spectra
    assert counts.max() >= 20 * max(np.median(counts), 1)


def test_catalogue_distributions():
    cat = make_catalogue(3000, seed=9)
    assert 3000 <= cat.teff.min() and cat.teff.max() <= 7000
    assert -1.0 <= cat.feh.min() and cat.feh.max() <= 0.5
    assert abs(np.median(cat.feh) + 0.1) < 0.05
    assert 0.05 < np.mean(cat.logg < 3.8) < 0.2  # giants
    hot, cool = cat.vsini[cat.teff > 6500], cat.vsini[(cat.teff < 5500) & (cat.logg > 4)]
    assert np.median(hot) > 3 * np.median(cool)
    assert cat.dec.max() <= 30 and np.mean(cat.dec < 0) > 0.75
    names = list(cat.name)
    assert len(set(names)) == 3000 and all(re.fullmatch(r"SYN-HD\d{6}", n) for n in names)
    assert np.bincount(cat.programme).max() >= 5  # programmes are shared
    prog = cat.programmes[0]
    assert re.fullmatch(r"0\d\d\.[A-E]-\d{4}\([A-F]\)", prog.prog_id(80))
    assert re.fullmatch(r"11\d\.[0-9A-Z]{4}\.\d{3}", prog.prog_id(116))


def test_airmass_respects_declination_and_latitude():
    for o in iter_observations(60, seed=13, today=TODAY, n_stars=30):
        zmin = abs(harps.SITE_LAT_DEG - o.star.dec)
        assert o.airmass_start >= 1 / math.cos(math.radians(zmin)) - 1e-3
        ha = astro.hour_angle_deg(o.mjd_obs, o.star.ra)
        assert astro.airmass(astro.altitude_deg(ha, o.star.dec)) == pytest.approx(
            o.airmass_start, abs=1e-3)
        assert 0.5 <= o.pwv <= 15 and o.exptime > 0


# --------------------------------------------------------------------------
# Barycentric corrections
# --------------------------------------------------------------------------

# (MJD mid-exposure, RA, Dec, DRS BERV km/s) of real HARPS files (README/MANIFEST)
REAL_BERV = ((53921.16157490 + 302.5016 / 172800, 261.21664, -49.94913, -8.6859110031507),
             (56010.35955534 + 9.9941 / 172800, 219.875072, -60.83010, 18.2626935967183),
             (52986.26375429 + 219.3963 / 172800, 111.852458, 5.22063, 15.2576897037435))


@pytest.mark.parametrize("mjd, ra, dec, drs", REAL_BERV)
def test_berv_matches_real_drs_values(mjd, ra, dec, drs):
    # 0.02 km/s: the analytic ephemeris neglects terms of <= 10 m/s and the
    # DRS takes its own mid-exposure time
    assert astro.berv(mjd, ra, dec) == pytest.approx(drs, abs=0.02)


def test_berv_and_bjd_match_astropy():
    from astropy import units as u
    from astropy.coordinates import EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    loc = EarthLocation.from_geodetic(harps.SITE_LON_DEG * u.deg, harps.SITE_LAT_DEG * u.deg,
                                      harps.SITE_ELEVATION_M * u.m)
    cases = ((53500.3, 10.0, -60.0), (55000.1, 200.0, -20.0), (57000.2, 300.0, 10.0),
             (59000.05, 80.0, -80.0))
    with warnings.catch_warnings(), iers.conf.set_temp("auto_download", False):
        warnings.simplefilter("ignore")  # stale bundled IERS/leap-second tables, offline
        for mjd, ra, dec in cases:
            t = Time(mjd, format="mjd", scale="utc", location=loc)
            star = SkyCoord(ra * u.deg, dec * u.deg)
            ref = star.radial_velocity_correction(obstime=Time(mjd, format="mjd", scale="utc"),
                                                  location=loc).to_value(u.km / u.s)
            ref_bjd = t.jd + t.light_travel_time(star).to_value(u.day)
            # Jupiter, Saturn and the Moon are modelled; the rest is < 10 m/s, < 1 s
            assert astro.berv(mjd, ra, dec) == pytest.approx(ref, abs=0.02)
            assert (astro.bjd(mjd, ra, dec) - ref_bjd) * 86400 == pytest.approx(0, abs=2.0)


# --------------------------------------------------------------------------
# Physics
# --------------------------------------------------------------------------

def _star(**kw) -> SpectrumParams:
    base = dict(teff=5500.0, logg=4.5, feh=0.0, vsini=2.0, rv=0.0, berv=0.0, airmass=1.0,
                pwv=1.0)
    base.update(kw)
    return SpectrumParams(**base)


def _equivalent_width(p: SpectrumParams, lo: float, hi: float, step: float = 0.02) -> float:
    wave = harps.archive_grid(step, lo, hi)
    return float(np.sum(1.0 - normalized_spectrum(p, wave)) * step)


def test_h_alpha_grows_with_temperature():
    ews = [_equivalent_width(_star(teff=t), 6540.0, 6586.0) for t in (4500.0, 5500.0, 6500.0)]
    assert ews[0] < ews[1] < ews[2] and ews[2] > 1.4 * ews[1]
    wave = harps.archive_grid(0.02, 6552.0, 6574.0)
    cool, hot = (normalized_spectrum(_star(teff=t), wave) for t in (5000.0, 6500.0))
    wing = np.abs(wave - 6562.8) > 3.0  # broader: deeper wings 3-11 A from the core
    assert np.median(hot[wing]) < np.median(cool[wing]) - 0.02


def test_metal_lines_grow_with_metallicity():
    wave = harps.archive_grid(0.02, 5020.0, 5080.0)
    poor, solar, rich = (normalized_spectrum(_star(feh=z), wave) for z in (-0.8, 0.0, 0.4))
    absorbed = [float(np.mean(1.0 - f)) for f in (poor, solar, rich)]
    assert absorbed[0] < absorbed[1] < absorbed[2] and absorbed[2] > 1.4 * absorbed[0]


def test_mg_b_wings_are_gravity_sensitive():
    dwarf, giant = (_equivalent_width(_star(teff=4800.0, logg=g), 5160.0, 5195.0)
                    for g in (4.6, 2.2))
    assert dwarf > 1.25 * giant


def test_tio_bands_only_in_cool_stars():
    wave = harps.archive_grid(1.0)
    red, blue = (wave > 6160) & (wave < 6180), (wave > 6125) & (wave < 6155)
    drops = {}
    for teff in (3200.0, 3600.0, 4800.0, 6000.0):
        f = normalized_spectrum(_star(teff=teff, logg=4.8 if teff < 4000 else 4.5), wave)
        drops[teff] = 1.0 - f[red].mean() / f[blue].mean()
    assert drops[3200.0] > drops[3600.0] > 0.15
    assert abs(drops[4800.0]) < 0.05 and abs(drops[6000.0]) < 0.05


def _velocity_shift(wave: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Shift of b relative to a (km/s), by cross-correlation on a ln-lambda grid."""
    dv = 0.05
    v = np.arange(0, harps.C_KMS * math.log(wave[-1] / wave[0]), dv)
    grid = wave[0] * np.exp(v / harps.C_KMS)
    fa, fb = (np.interp(grid, wave, 1.0 - f) for f in (a, b))
    lags = np.arange(-1200, 1201)
    cc = np.array([np.dot(fa[1200:-1200], fb[1200 + k:len(fb) - 1200 + k]) for k in lags])
    k = int(np.argmax(cc))
    peak = 0.5 * (cc[k - 1] - cc[k + 1]) / (cc[k - 1] - 2 * cc[k] + cc[k + 1])
    return float((lags[k] + peak) * dv)


def test_tellurics_move_with_berv_stellar_lines_with_rv():
    # real HARPS files: tellurics at +BERV in the barycentric frame (README, alpha Cen B)
    fast = dict(teff=6800.0, vsini=90.0, airmass=1.5)  # smeared stellar lines
    wave = harps.archive_grid(0.01, 6866.0, 6905.0)
    a, b = (normalized_spectrum(_star(berv=v, **fast), wave) for v in (-15.0, 10.0))
    assert _velocity_shift(wave, a, b) == pytest.approx(25.0, abs=0.5)
    wave = harps.archive_grid(0.01, 5050.0, 5090.0)  # no tellurics
    a, b = (normalized_spectrum(_star(rv=v, berv=20.0), wave) for v in (-12.0, 18.0))
    assert _velocity_shift(wave, a, b) == pytest.approx(30.0, abs=0.3)


def test_water_lines_scale_with_pwv_and_o2_with_airmass():
    hot = dict(teff=6900.0, vsini=90.0)
    h2o = harps.archive_grid(0.02, 6480.0, 6540.0)
    dry, damp, wet = (float(np.mean(1 - normalized_spectrum(_star(pwv=w, **hot), h2o)))
                      for w in (0.5, 3.0, 12.0))
    o2 = harps.archive_grid(0.02, 6276.0, 6300.0)
    low, high = (float(np.mean(1 - normalized_spectrum(_star(airmass=x, pwv=0.5, **hot), o2)))
                 for x in (1.0, 2.0))
    assert dry < damp < wet and wet - dry > 2 * (damp - dry) > 0.01
    assert high > 1.3 * low


def test_coarse_mode_matches_binned_profile_mode():
    p = _star(teff=5200.0, feh=0.2, rv=-22.0, berv=-3.5, airmass=1.3, pwv=2.5)
    fine = harps.archive_grid(0.02, 5000.0, 5600.0)
    coarse = harps.archive_grid(1.0, 5010.0, 5590.0)
    binned = bin_average(fine, normalized_spectrum(p, fine), coarse)
    diff = normalized_spectrum(p, coarse) - binned
    assert np.sqrt(np.mean(diff ** 2)) < 0.02 and abs(diff.mean()) < 0.01


def test_full_grid_gap_zeros_and_noise(full_grid):
    obs, wave, flux, err = full_grid
    assert flux.dtype == np.float32 and flux.shape == wave.shape == (313_201,)
    gap = gap_mask(wave, obs.berv)
    shifted = np.array(harps.CCD_GAP_TOPOCENTRIC) * (1 + obs.berv / harps.C_KMS)
    assert wave[gap].min() >= shifted[0] - 0.01 and wave[gap].max() <= shifted[1] + 0.01
    assert 3280 <= gap.sum() <= 3310 and harps.MODEL_GAP[0] < wave[gap].min()
    assert np.all(flux[gap] == 0) and np.all(flux[~gap] != 0) and np.all(np.isnan(err[gap]))
    # expected electrons from the noise model: err^2 = (N + r^2) / gain^2
    expected = ((err[~gap].astype(float) * exposure.GAIN) ** 2
                - exposure.READ_NOISE_NATIVE ** 2) / exposure.GAIN
    z = (flux[~gap] - expected) / err[~gap]
    assert np.std(z) == pytest.approx(1.0, abs=0.02) and abs(np.mean(z)) < 0.01
    assert np.median(expected / err[~gap]) == pytest.approx(obs.snr, rel=0.01)
    near = np.abs(expected / np.median(expected) - 1) < 0.1
    measured = np.median(expected[near]) / np.std(flux[~gap][near] - expected[near])
    assert measured == pytest.approx(obs.snr, rel=0.2)
    # a coarse grid keeps the flux level (adu per native pixel), binning the noise
    coarse = harps.archive_grid(2.0)
    flux2, err2 = render(obs, coarse)
    ok = ~gap_mask(coarse, obs.berv)
    assert np.median(flux2[ok]) == pytest.approx(np.median(flux[~gap]), rel=0.05)
    assert np.median(flux2[ok] / err2[ok]) == pytest.approx(obs.snr * math.sqrt(200), rel=0.05)


def test_render_is_deterministic_and_grid_independent_in_time():
    obs = list(iter_observations(3, seed=30, today=TODAY))
    wave = harps.archive_grid(2.0)
    a = render(obs[1], wave)
    assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, render(obs[1], wave),
                                                                    strict=True))
    assert not np.array_equal(a[0], render(obs[2], wave)[0])


# --------------------------------------------------------------------------
# Ground truth of stellar/telluric separation (--truth)
# --------------------------------------------------------------------------

TRUTH_ARGS = ["-n", "3", "--step", "0.1", "--format", "both", "--seed", "13",
              "--today", TODAY.isoformat(), "--no-progress"]


@pytest.fixture(scope="module")
def truth_archive(tmp_path_factory) -> Path:
    """Three observations as ADP and s1d on a 0.1 A grid (profile mode), with --truth."""
    out = tmp_path_factory.mktemp("truth")
    assert cli.main(["--out", str(out), "--truth"] + TRUTH_ARGS) == 0
    return out


def test_truth_sidecars_hold_stellar_flux_and_transmission(truth_archive):
    obs = list(iter_observations(3, seed=13, today=TODAY))
    wave = harps.archive_grid(0.1)
    files = sorted(truth_archive.rglob("*.fits"))
    assert len(files) == 6
    assert sorted(truth_archive.rglob("*.npz")) == sorted(truth_path(f) for f in files)
    for path in files:
        truth = read_truth(path)
        spec = fitsio.read_spectrum(path)
        o = obs[truth["index"]]
        assert truth["seed"] == 13 and truth["berv"] == o.berv and truth["rv"] == o.rv
        assert (truth["airmass"], truth["pwv_mm"]) == (o.airmass, o.pwv)
        stellar, trans = truth["stellar"], truth["transmission"]
        assert stellar.dtype == trans.dtype == np.float32 and truth["wave"].dtype == np.float64
        assert len(stellar) == len(trans) == len(spec.flux) and np.array_equal(truth["wave"], wave)
        np.testing.assert_allclose(spec.wave, wave, rtol=0, atol=1e-6)  # s1d: CRVAL1 + i CDELT1
        gap = gap_mask(wave, o.berv)
        assert np.all(np.isnan(trans[gap])) and np.all(stellar[gap] == 0)
        noiseless, _ = render(o, wave, noise=False)
        np.testing.assert_allclose(stellar[~gap] * trans[~gap], noiseless[~gap], rtol=1e-4)
        assert np.all((trans[~gap] > 0) & (trans[~gap] <= 1.0001))
        assert trans[(wave > 6867) & (wave < 6900)].min() < 0.95  # O2 B band
        assert trans[(wave > 4500) & (wave < 4600)].min() > 0.999  # no tellurics
        # the file's noisy flux scatters about stellar x transmission
        model = stellar * trans
        bright = ~gap & (model > 0.2 * np.median(model[~gap]))
        assert np.mean(spec.flux[bright] / model[bright]) == pytest.approx(1.0, abs=0.01)


def test_truth_leaves_the_fits_files_unchanged(truth_archive, tmp_path):
    assert cli.main(["--out", str(tmp_path)] + TRUTH_ARGS) == 0
    plain = _tree(tmp_path)
    assert plain and not any(p.name.endswith(".npz") for p in plain)
    assert plain == {p: b for p, b in _tree(truth_archive).items() if not p.name.endswith(".npz")}
    record = __import__("json").loads((truth_archive / "synth_run.json").read_text())
    assert record["config"]["truth"] is True


def test_truth_path_names_the_sidecar():
    assert truth_path("2004/ADP.2004-01-02T03_04_05.678.fits") == Path(
        "2004/ADP.2004-01-02T03_04_05.678.truth.npz")
    with pytest.raises(ValueError, match="fits"):
        truth_path("2004/labels.csv")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def test_cli_writes_archive_and_summary(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["--out", str(out), "-n", "3", "--step", "2", "--today", "2026-11-21",
                     "--seed", "3", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "wrote 3 files" in said and "files/s" in said
    record = __import__("json").loads((out / "synth_run.json").read_text())
    assert record["config"]["today"] == "2026-11-21" and record["config"]["seed"] == 3
    assert len(list(out.rglob("ADP.*.fits"))) == 3


@pytest.mark.parametrize("args, flag", [
    (["--step", "-1"], "--step"),
    (["--format", "s1d", "--step", "1.0"], "--format"),
    (["--today", "2026-02-30"], "--today"),
    (["--proprietary-fraction", "1.5"], "--proprietary-fraction"),
    (["-n", "0"], "--n-spectra"),
    (["-n", "4000000", "--today", "2026-11-21"], "--n-spectra"),  # > 363 nights x 1000 slots
])
def test_cli_names_the_bad_option(tmp_path, capsys, args, flag):
    with pytest.raises(SystemExit) as ex:
        cli.main(["--out", str(tmp_path / "x"), "--no-progress"] + args)
    assert ex.value.code == 2 and flag in capsys.readouterr().err


def test_config_errors_are_value_errors():
    with pytest.raises(ConfigError, match="--workers"):
        SynthConfig(workers=0)
    with pytest.raises(ValueError, match="--err"):
        SynthConfig(err="zero")


def test_gaussian_bins_are_exact_integrals():
    from scipy import stats

    from harps_synth.coarse import gaussian_bins

    rng = np.random.default_rng(1)
    edges = np.arange(0.0, 51.0)
    centre, sigma = rng.uniform(-1, 51, 800), rng.uniform(0.001, 3.0, 800)
    weight = rng.uniform(0, 1, 800)
    expected = sum(w * np.diff(stats.norm.cdf(edges, c, s))
                   for c, s, w in zip(centre, sigma, weight, strict=True))
    assert np.allclose(gaussian_bins(edges, centre, sigma, weight), expected, atol=2e-4)


def test_coarse_bins_without_narrow_lines():
    """Regression: with no Gaussian narrower than a bin, bincount gave integers."""
    from harps_synth import coarse
    edges = np.linspace(5000.0, 5010.0, 11)
    out = coarse.gaussian_bins(edges, np.array([5005.0]), np.array([1.0]), np.array([1.0]))
    assert out.dtype == np.float64 and out.sum() == pytest.approx(1.0, abs=0.01)
