"""The tiny synthetic archive of the ml tests (tests/tiny_archive.py) is valid HARPS s1d."""

from __future__ import annotations

from tiny_archive import make_archive

from harps_data import fitsio


def test_synthetic_files_are_valid_harps_s1d(tmp_path):
    files, labels = make_archive(tmp_path, n_stars=2, per_star=(2,))
    for path in files[:-1]:
        meta = fitsio.validate(path)
        assert meta.layout == "S1D" and meta.wave_step == 0.5 and meta.berv is not None
    # the garbage file is refused by the archive validator too
    try:
        fitsio.validate(files[-1])
    except fitsio.InvalidSpectrum as ex:
        assert "garbage" in str(ex)
    else:
        raise AssertionError("garbage file passed fitsio.validate")
    assert len(labels.read_text().splitlines()) == len(files) + 1
