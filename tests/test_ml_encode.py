"""ml.encode: the latents artefact from the real HARPS files, checkpoint round trip, CLI."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from astropy.io import fits
from support import SHARED, require, tiny_checkpoint

from ml import checkpoint, encode
from ml.model import ModelConfig, masked_mse
from ml.preprocess import FLAG_GARBAGE, preprocess_file

TINY = ModelConfig.from_preset("tiny")
PREFIX = "ivo://harps.example.org/~?"
EXPECTED_COLUMNS = ["pubdid", "latent", "recon_err", "flags", "reason", "norm_scale"]


@pytest.fixture(scope="module")
def real_files():
    require(SHARED.is_dir(), f"real HARPS files not found at {SHARED}")
    # one file of each kind (ADP, s1d, garbage, ...); the 46 extra alpha Cen B
    # spectra of cenb/ add nothing here but encoding time
    files = sorted(p.resolve() for p in SHARED.glob("*/*.fits")  # rows come sorted by path
                   if p.parent.name != "cenb")
    assert len(files) == 9
    return files


@pytest.fixture(scope="module")
def model_ckpt(tmp_path_factory):
    """A tiny model moved off its initialisation, saved as a checkpoint."""
    torch.set_num_threads(1)
    path = tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")
    model, recipe = checkpoint.build_model(checkpoint.load(path))
    return model, recipe, path


def test_artefact_from_real_files(real_files, model_ckpt, tmp_path):
    model, recipe, ckpt_path = model_ckpt
    out, stats = encode.encode(ckpt_path, real_files, tmp_path, inputs_root=SHARED,
                               did_prefix=PREFIX, workers=0, progress=False)
    sha = hashlib.sha256(ckpt_path.read_bytes()).hexdigest()
    assert out.name == f"latents_tiny-z16-{sha[:12]}.fits"
    assert stats["rows"] == 9 and stats["spectra_per_s"] > 0 and stats["peak_rss_mib"] > 0
    with fits.open(out) as hdul:
        hdul.verify("exception")
        h, rows = hdul["LATENTS"].header, hdul["LATENTS"].data
        assert rows.columns.names == EXPECTED_COLUMNS
        assert rows.columns["latent"].format == "16E" and rows.columns["flags"].format == "J"
        assert h["NAXIS2"] == h["NROWS"] == 9 and h["ARTVER"] == 1 and h["LATDIM"] == 16
        assert h["CKPTSHA"] == sha and h["MODELID"] == f"tiny-z16-{sha[:12]}"
        assert (h["GRSTEP"], h["GRWMIN"], h["GRWMAX"], h["GRPAD"]) == (0.5, 3785.0, 6910.0, 6400)
        assert h["FRAME"] == "barycentric" and h["CODEVER"] and h["DATE"].startswith("20")
        assert h["IDKIND"] == "did-prefix+accref" and h["TRNSTEP"] == 3
        ids = list(rows["pubdid"])
        latent, err, flags = rows["latent"], rows["recon_err"], rows["flags"]
    assert ids == [PREFIX + p.relative_to(SHARED).as_posix() for p in real_files]
    garbage = [i for i, p in enumerate(real_files) if "edge_cases" in str(p)]
    assert flags[garbage[0]] == FLAG_GARBAGE and np.isnan(latent[garbage[0]]).all()
    assert np.isnan(err[garbage[0]])
    good = flags == 0
    assert good.sum() == 8 and np.isfinite(latent[good]).all() and (err[good] > 0).all()
    assert [d for d, _ in stats["flagged"]] == [ids[garbage[0]]]


def test_checkpoint_round_trip_reproduces_latents_exactly(real_files, model_ckpt, tmp_path):
    model, recipe, ckpt_path = model_ckpt
    usable = [p for p in real_files if "edge_cases" not in str(p)]
    pre = [preprocess_file(p, recipe) for p in usable]
    x = torch.from_numpy(np.stack([p.flux for p in pre]))
    mask = torch.from_numpy(np.stack([p.mask for p in pre]))
    with torch.no_grad():
        mu, _ = model.encode(x)
        err = masked_mse(x, mask, model.decode(mu))
    rebuilt, rebuilt_recipe = checkpoint.build_model(checkpoint.load(ckpt_path))
    assert rebuilt_recipe == recipe
    with torch.no_grad():
        assert torch.equal(rebuilt.encode(x)[0], mu)
    out, _ = encode.encode(ckpt_path, usable, tmp_path, inputs_root=SHARED, workers=0,
                           batch_size=8, progress=False)
    with fits.open(out) as hdul:
        rows = hdul[1].data
        np.testing.assert_array_equal(rows["latent"], mu.numpy())
        np.testing.assert_array_equal(rows["recon_err"], err.numpy())
        assert hdul[1].header["IDKIND"] == "accref"
        assert rows["pubdid"][0] == "adp/ADP.2014-09-16T11_04_45.123.fits"


def test_worker_processes_give_the_same_rows(real_files, model_ckpt, tmp_path):
    _, _, ckpt_path = model_ckpt
    a, _ = encode.encode(ckpt_path, real_files, tmp_path / "a", inputs_root=SHARED, workers=0,
                         batch_size=4, progress=False)
    b, _ = encode.encode(ckpt_path, real_files, tmp_path / "b", inputs_root=SHARED, workers=2,
                         batch_size=4, progress=False)
    with fits.open(a) as ha, fits.open(b) as hb:
        for col in EXPECTED_COLUMNS:
            np.testing.assert_array_equal(ha[1].data[col], hb[1].data[col])


def test_identifiers_from_a_map_and_refusals(real_files, model_ckpt, tmp_path):
    _, _, ckpt_path = model_ckpt
    id_map = tmp_path / "ids.csv"
    id_map.write_text("path,pubdid\n" + "".join(f"{p},ivo://x/spec{i}\n"
                                                for i, p in enumerate(real_files)))
    out, _ = encode.encode(ckpt_path, real_files[:3], tmp_path, id_map=str(id_map), workers=0,
                           progress=False)
    with fits.open(out) as hdul:
        assert list(hdul[1].data["pubdid"]) == ["ivo://x/spec0", "ivo://x/spec1", "ivo://x/spec2"]
        assert hdul[1].header["IDKIND"] == "id-map"
    with pytest.raises(encode.EncodeError, match="not under --inputs-root"):
        encode.encode(ckpt_path, real_files[:1], tmp_path, inputs_root=tmp_path, progress=False)
    partial = tmp_path / "partial.csv"
    partial.write_text(f"path,pubdid\n{real_files[0]},ivo://x/a\n")
    with pytest.raises(encode.EncodeError, match="not in the --id-map file"):
        encode.encode(ckpt_path, real_files[:2], tmp_path, id_map=str(partial), progress=False)
    assert not list(tmp_path.glob("*.part*"))


def test_command_line(real_files, model_ckpt, tmp_path, capsys):
    _, _, ckpt_path = model_ckpt
    rc = encode.main([str(ckpt_path), str(SHARED / "s1d"), str(SHARED / "edge_cases"),
                      "--out", str(tmp_path), "--inputs-root", str(SHARED), "--workers", "0",
                      "--quiet", "--threads", "1"])
    cap = capsys.readouterr()
    assert rc == 0 and "8 rows (1 flagged)" in cap.out and "spectra/s" in cap.out
    assert "peak RSS" in cap.out
    assert "flagged: edge_cases/HARPS.2003-12-13T06_19_48.371_s1d_A.fits: garbage" in cap.err
    if not torch.cuda.is_available():
        assert encode.main([str(ckpt_path), str(SHARED / "s1d"), "--out", str(tmp_path),
                            "--device", "cuda"]) == 2
        assert "--device cuda: no CUDA device" in capsys.readouterr().err
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"junk")
    assert encode.main([str(bad), str(SHARED / "s1d"), "--out", str(tmp_path)]) == 2
    assert "bad.ckpt: not a readable checkpoint" in capsys.readouterr().err


def test_header_cards_fit_for_long_values():
    # astropy warns (an error under this suite's filterwarnings) when a comment is cut
    ckpt = {"model_config": {"preset": "coarse", "latent_dim": 8192}, "step": 10**9,
            "recipe": {"grid": {"step": 0.01, "wave_min": 3785.0, "wave_max": 6910.0,
                                "npix": 312501, "padded": 327680}, "frame": "observatory"},
            "data": {"file_list_sha256": "f" * 64}}
    cards = encode._header(ckpt, "a" * 64, "coarse-z8192-aaaaaaaaaaaa", 10**9,
                           "did-prefix+accref")
    header = fits.Header()
    for key, (value, comment) in cards.items():
        header[key] = (value, comment)
    assert header["CKPTSHA"] == "a" * 64 and header["LATDIM"] == 8192
