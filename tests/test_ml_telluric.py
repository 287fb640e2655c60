"""Stellar / telluric separation (ml.telluric, ml.separate): the pieces and a short training."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from harps_data import harps
from harps_synth.archive import write_archive
from harps_synth.truth import read_truth
from ml import train
from ml.inference import Predictor
from ml.model import ModelConfig, SpectrumVAE
from ml.separate import QUALITY_COLUMNS, confidence, main, separate_files
from ml.telluric import doppler_sample, shift_spectra


def _line(wave: np.ndarray, centre: float) -> np.ndarray:
    return 1.0 - 0.5 * np.exp(-0.5 * ((wave - centre) / 0.3) ** 2)


def _centroid(wave: np.ndarray, flux: np.ndarray) -> float:
    w = 1.0 - flux
    return float((wave * w).sum() / w.sum())


def test_doppler_sample_moves_lines_by_the_velocity():
    wave = 6000.0 + 0.1 * np.arange(400)
    tau = torch.from_numpy(1.0 - _line(wave, 6020.0))[None, :]
    v = torch.tensor([-20.0, 0.0, 30.0])
    out = doppler_sample(tau, 6000.0, 0.1, 1.0 / (1.0 + v / harps.C_KMS))  # (3, 1, 400)
    assert out.shape == (3, 1, 400)
    for k, vel in enumerate(v.tolist()):
        moved = _centroid(wave, 1.0 - out[k, 0].numpy())
        assert moved == pytest.approx(6020.0 * (1 + vel / harps.C_KMS), abs=0.005)


def test_shift_spectra_shifts_flux_and_mask_together():
    wave = 6000.0 + 0.1 * np.arange(400)
    x = torch.from_numpy(np.stack([_line(wave, 6020.0)] * 2)).float()
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[:, 100] = False
    xs, ms = shift_spectra(x, mask, 6000.0, 0.1, torch.tensor([15.0, -15.0]))
    for k, vel in enumerate((15.0, -15.0)):
        ok = ms[k].numpy()
        assert _centroid(wave[ok], xs[k].numpy()[ok]) == pytest.approx(
            6020.0 * (1 + vel / harps.C_KMS), abs=0.01)
    # the masked pixel moved with the flux (0.3 A at 15 km/s: 3 pixels) and took a neighbour
    assert (~ms[0]).sum() >= 2 and ms[0, 100]


def test_the_telluric_preset_needs_a_berv_and_absorbs_only_in_the_bands():
    cfg = ModelConfig.from_preset("telluric")
    model = SpectrumVAE(cfg).eval()
    x = torch.rand(2, cfg.length)
    with pytest.raises(ValueError, match="BERV"):
        model(x)
    mu, logvar, amp, trans = model.separate(x, torch.tensor([5.0, -5.0]))
    assert mu.shape == (2, cfg.latent_dim) and amp.shape == (2, cfg.telluric)
    assert trans.shape == x.shape and bool(((trans > 0) & (trans <= 1)).all())
    wave = cfg.grid.wave
    outside = ~harps.in_telluric_bands(wave, harps.TELLURIC_MARGIN + 1.0)
    assert bool((trans[:, :len(wave)][:, outside] == 1).all())
    with pytest.raises(ValueError, match="telluric"):
        ModelConfig(telluric=-1)


def test_confidence_follows_the_stated_rules():
    n = 100
    trans = np.ones(n)
    trans[10] = 0.1     # saturated
    trans[20] = 0.45    # half way: (0.45 - 0.2) / 0.5
    trans[40] = 0.9
    x = trans.copy()    # a flat star times the transmission, fitted exactly but at 40
    model = x.copy()
    model[40] = 0.7     # a telluric line the model does not explain
    mask = np.ones(n, bool)
    mask[30] = False
    c = confidence(x, mask, model, trans, scale=1e4)
    assert c[10] == 0 and c[30] == 0 and c[20] == pytest.approx(0.5) and c[50] == 1
    assert c[40] == 0
    assert confidence(x, mask, model, trans, scale=100.0)[50] == pytest.approx(0.5)  # S/N 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 0.25 A archive with truth and a separation model trained on it for a few minutes."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("telluric")
    archive = root / "archive"
    write_archive(archive, 48, seed=5, n_stars=16, step=0.25, truth=True,
                  proprietary_fraction=0.0, progress=False)
    cfg = ModelConfig(preset="custom", step=0.25, channels=(8, 8, 16, 16, 32, 32, 32, 32),
                      fc_hidden=(64,), latent_dim=8, telluric=2)
    tcfg = train.TrainConfig(max_steps=350, batch_size=8, kl_max=1e-4, kl_ramp_steps=100,
                             velocity_whitening=30.0, telluric_l1=0.01, sampling="spectrum",
                             val_fraction=0.1, seed=3)
    ckpt = train.train([archive], root / "run", model_config=cfg, config=tcfg, threads=1,
                       progress=False)
    files = sorted(archive.rglob("*.fits"))
    return Predictor.load(ckpt), files, ckpt


def _errors(predictor: Predictor, files) -> tuple[float, float]:
    """Median |T_model - T_true| and |1 - T_true| over pixels 5 % deep or more in truth."""
    sep = separate_files(predictor, files)
    wave = predictor.wave()
    model_err, none_err = [], []
    for i, f in enumerate(files):
        truth = read_truth(f)
        t_true = np.interp(wave, truth["wave"], truth["transmission"], left=np.nan,
                           right=np.nan)
        deep = sep.mask[i] & np.isfinite(t_true) & (t_true < 0.95)
        model_err.append(np.abs(sep.transmission[i][deep] - t_true[deep]))
        none_err.append(1.0 - t_true[deep])
    return float(np.median(np.concatenate(model_err))), float(np.median(np.concatenate(none_err)))


def test_a_short_training_separates_the_telluric_bands(trained):
    predictor, files, _ = trained
    model_err, none_err = _errors(predictor, files)
    # no correction leaves the whole telluric depth; a broken separation (T = 1, or
    # T flat) does no better than that
    assert model_err < 0.5 * none_err, (model_err, none_err)


def test_harps_separate_writes_one_row_per_spectrum(trained, tmp_path):
    predictor, files, ckpt = trained
    assert main([str(ckpt), *map(str, files[:5]), "--out", str(tmp_path), "--quiet",
                 "--did-prefix", "ivo://x/~?", "--inputs-root", str(files[0].parents[1])]) == 0
    (table,) = tmp_path.glob("separation_*.csv")
    assert table.name == f"separation_{predictor.model_id}.csv"
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and rows[0]["ssa_pubdid"].startswith("ivo://x/~?")
    for row in rows:
        assert row["model_id"] == predictor.model_id
        assert all(math.isfinite(float(row[c])) or c == "sep_excess" for c in QUALITY_COLUMNS)
        assert 0 <= float(row["tell_max_depth"]) <= 1 and float(row["tell_ew"]) > 0


def test_harps_separate_refuses_a_model_without_tellurics(tmp_path):
    from support import tiny_checkpoint
    ckpt = tiny_checkpoint(tmp_path / "plain.ckpt")
    assert main([str(ckpt), str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]) == 2


def test_origin_weights_draw_real_and_synthetic_equally(trained):
    from support import SHARED, require

    from ml.data import origin_weights
    _, files, _ = trained
    real = sorted((SHARED / "s1d").glob("*.fits"))[:2]
    require(bool(real), "no real s1d files in ../shared")
    w = origin_weights([*files[:10], *real])
    assert w[:10].sum() == pytest.approx(0.5) and w[10:].sum() == pytest.approx(0.5)
    assert np.allclose(origin_weights(files[:4]), 0.25)
