"""harps_data.fitsio against the real HARPS files and against broken copies of them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from astropy.io import fits
from support import SHARED, require

from harps_data import fitsio, harps

ADP = SHARED / "adp" / "ADP.2014-09-16T11_04_45.123.fits"
S1D = SHARED / "s1d" / "HARPS.2006-09-08T02_12_38.604_s1d_A.fits"
GARBAGE = SHARED / "edge_cases" / "HARPS.2003-12-13T06_19_48.371_s1d_A.fits"


@pytest.fixture(autouse=True)
def _real_files():
    """Every test here reads the real HARPS files (or broken copies of them)."""
    require(SHARED.is_dir(), f"real HARPS files not found at {SHARED}")


@pytest.fixture(scope="module")
def manifest():
    import csv
    require(SHARED.is_dir(), f"real HARPS files not found at {SHARED}")
    with open(SHARED / "MANIFEST.csv", newline="") as f:
        return {row["local_path"]: row for row in csv.DictReader(f)}


def test_real_files_metadata_match_manifest(manifest):
    for local, row in manifest.items():
        if "edge_cases" in local:
            continue
        meta = fitsio.validate(SHARED / local)
        assert meta.object == row["OBJECT"]
        assert meta.mjd_obs == pytest.approx(float(row["MJD_OBS"]), abs=1e-8)
        assert meta.exptime == pytest.approx(float(row["EXPTIME"]))
        assert meta.ra == pytest.approx(float(row["RA"]))
        assert meta.dec == pytest.approx(float(row["DEC"]))
        assert meta.drs_version == row["DRS_VERSION"]
        assert meta.prog_id == row["PROG_ID"]
        assert meta.berv == pytest.approx(float(row["BERV_kms"]))
        assert meta.n_points == int(row["n_points"])
        assert meta.wave_min == pytest.approx(float(row["wave_first_A"]), abs=0.006)
        assert meta.wave_max == pytest.approx(float(row["wave_last_A"]), abs=0.006)
        assert meta.sn50 == pytest.approx(float(row["SN50"]))
        assert not meta.synthetic


def test_adp_arrays_equal_astropy():
    require(ADP.exists(), "real ADP file missing")
    spec = fitsio.read_spectrum(ADP)
    table = fits.getdata(ADP, 1)
    np.testing.assert_array_equal(spec.wave, table["WAVE"][0])
    np.testing.assert_array_equal(spec.flux, table["FLUX"][0])
    assert np.isnan(spec.err).all()  # real ADPs carry no error
    assert spec.meta.layout == "ADP" and spec.meta.product_id == "ADP.2014-09-16T11:04:45.123"
    # the CCD gap holds zeros, where the BERV puts it (+BERV, as tellurics)
    gap = harps.in_ccd_gap(spec.wave, harps.ccd_gap(spec.meta.berv))
    assert gap.sum() in (3294, 3295, 3296) and (spec.flux[gap] == 0).all()


def test_s1d_wavelengths_follow_wcs():
    require(S1D.exists(), "real s1d file missing")
    spec = fitsio.read_spectrum(S1D)
    with fits.open(S1D) as hdul:
        h, data = hdul[0].header, hdul[0].data
    np.testing.assert_array_equal(spec.flux, data)
    i = np.arange(h["NAXIS1"])
    np.testing.assert_allclose(spec.wave, h["CRVAL1"] + h["CDELT1"] * (i + 1 - h["CRPIX1"]))
    assert spec.err is None


def test_garbage_file_is_refused_with_reason():
    require(GARBAGE.exists(), "edge-case file missing")
    with pytest.raises(fitsio.InvalidSpectrum, match="garbage data: 2[0-9].[0-9]% of the pixels"):
        fitsio.validate(GARBAGE)
    # its header alone is fine: the refusal comes from the data
    assert fitsio.read_meta(GARBAGE).object == "Gl273"


def test_real_files_have_few_bad_pixels():
    for path in sorted((SHARED / "s1d").glob("*.fits")) + [ADP]:
        spec = fitsio.read_spectrum(path)
        assert fitsio.bad_pixel_mask(spec.wave, spec.flux).mean() < 1e-3, path


def _copy(src, tmp_path, name="copy.fits"):
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


def test_truncated_file_is_refused(tmp_path):
    dst = _copy(ADP, tmp_path)
    with open(dst, "r+b") as f:
        f.truncate(ADP.stat().st_size // 2)
    with pytest.raises(fitsio.InvalidSpectrum, match="truncated"):
        fitsio.validate(dst)


def test_header_without_end_is_refused(tmp_path):
    dst = tmp_path / "cut.fits"
    dst.write_bytes(ADP.read_bytes()[:2880 * 3])
    with pytest.raises(fitsio.InvalidSpectrum, match="truncated: FITS header has no END"):
        fitsio.read_meta(dst)


def test_not_fits_is_refused(tmp_path):
    dst = tmp_path / "notes.fits"
    dst.write_text("these are my observing notes\n")
    with pytest.raises(fitsio.InvalidSpectrum, match="not a FITS file"):
        fitsio.validate(dst)


def test_unreadable_is_refused(tmp_path):
    with pytest.raises(fitsio.InvalidSpectrum, match="unreadable"):
        fitsio.read_meta(tmp_path / "missing.fits")


def test_wrong_instrument_is_refused(tmp_path):
    dst = _copy(S1D, tmp_path)
    with fits.open(dst, mode="update") as hdul:
        hdul[0].header["INSTRUME"] = "FEROS"
    with pytest.raises(fitsio.InvalidSpectrum, match="wrong instrument: INSTRUME='FEROS'"):
        fitsio.validate(dst)


def test_wrong_layout_image_is_refused(tmp_path):
    dst = tmp_path / "e2ds.fits"
    hdu = fits.PrimaryHDU(np.ones((72, 4096), dtype=np.float32))
    hdu.header["INSTRUME"] = "HARPS"
    hdu.writeto(dst)
    with pytest.raises(fitsio.InvalidSpectrum, match="wrong layout: NAXIS=2"):
        fitsio.validate(dst)


def test_missing_mandatory_keyword_is_refused(tmp_path):
    dst = _copy(S1D, tmp_path)
    with fits.open(dst, mode="update") as hdul:
        del hdul[0].header["MJD-OBS"]
    with pytest.raises(fitsio.InvalidSpectrum, match="missing mandatory keyword MJD-OBS"):
        fitsio.validate(dst)


def test_decreasing_wavelengths_are_refused(tmp_path):
    dst = _copy(ADP, tmp_path)
    with fits.open(dst, mode="update") as hdul:
        hdul[1].data["WAVE"][0] = hdul[1].data["WAVE"][0][::-1].copy()
    with pytest.raises(fitsio.InvalidSpectrum, match="WAVE is not strictly increasing"):
        fitsio.validate(dst)


def test_header_values_parse_like_astropy():
    raw = (
        "STR     = 'it''s here'         / a quoted quote".ljust(80)
        + "EMPTY   = ''".ljust(80)
        + "FLAG    =                    T".ljust(80)
        + "INT     =                   42 / answer".ljust(80)
        + "REAL    =              -1.5D-3".ljust(80)
        + "HIERARCH ESO DRS BERV = -8.6859110031507 / Barycentric".ljust(80)
        + "REPEAT  = 'first'".ljust(80)
        + "REPEAT  = 'second'".ljust(80)
    ).encode("ascii")
    h = fitsio.Header(raw)
    assert h.get("STR") == "it's here"
    assert h.get("EMPTY", "default") == ""
    assert h.get("FLAG") is True
    assert h.get("INT") == 42
    assert h.get("REAL") == pytest.approx(-1.5e-3)
    assert h.get("ESO DRS BERV") == pytest.approx(-8.6859110031507)
    assert h.get("REPEAT") == "first"
    assert h.get("ABSENT", 7) == 7
    assert len(h) == 8


def test_bad_pixel_mask_flags_absurd_and_nonfinite():
    wave = np.linspace(4000, 6000, 1000)
    flux = np.full(1000, 500.0, dtype=np.float32)
    flux[10] = np.nan
    flux[20] = 1e9
    flux[30] = -5e6
    flux[40] = 2000.0  # a strong but possible value (4x continuum)
    bad = fitsio.bad_pixel_mask(wave, flux)
    assert set(np.flatnonzero(bad)) == {10, 20, 30}


def test_inconsistent_dates_are_refused(tmp_path):
    dst = _copy(S1D, tmp_path)
    with fits.open(dst, mode="update") as hdul:
        hdul[0].header["DATE-OBS"] = "2011-01-01T00:00:00.000"
    with pytest.raises(fitsio.InvalidSpectrum, match="DATE-OBS=.* and MJD-OBS=.* disagree"):
        fitsio.validate(dst)
