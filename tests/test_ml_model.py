"""ml.model: shapes of every preset, the masked loss, the variational bottleneck."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from harps_data import harps
from ml.model import PRESETS, ModelConfig, SpectrumVAE, masked_mse

torch.set_num_threads(1)  # the test machine's cores are shared


@pytest.mark.parametrize("name", ["coarse", "tiny", "fc2"])
def test_fast_presets_shapes_and_gradients(name):
    torch.manual_seed(0)
    c = PRESETS[name]
    model = SpectrumVAE(c)
    x = torch.rand(3, c.length)
    mask = torch.rand(3, c.length) > 0.1
    x_hat, mu, logvar = model(x)
    assert x_hat.shape == (3, c.length) and mu.shape == logvar.shape == (3, c.latent_dim)
    out = model.loss(x, mask, x_hat, mu, logvar, 1e-3)
    out["loss"].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.encode(x)[0].shape == (3, c.latent_dim)
    assert model.decode(mu).shape == (3, c.length)


def test_full_preset_is_the_native_grid_and_maps_two_spectra():
    c = PRESETS["full"]
    assert c.step == harps.WAVE_STEP and c.length == harps.MODEL_PADDED
    assert len(c.channels) == 15 and c.channels[0] == 16 and c.channels[-1] == 512
    assert c.latent_dim == 128
    model = SpectrumVAE(c).eval()
    assert model.bottom_length == harps.MODEL_PADDED // 2**15 == 10
    with torch.no_grad():
        x_hat, mu, logvar = model(torch.rand(2, c.length))
    assert x_hat.shape == (2, harps.MODEL_PADDED) and mu.shape == (2, 128)


def test_presets_latent_sizes_and_fc2_is_fully_connected():
    assert PRESETS["fc2"].latent_dim == 2 and PRESETS["fc2"].channels == ()
    fc2 = SpectrumVAE(PRESETS["fc2"])
    assert not any(isinstance(m, torch.nn.Conv1d) for m in fc2.modules())
    assert len(fc2.enc_conv) == 0 and len(fc2.dec_conv) == 0
    tiny = SpectrumVAE(PRESETS["tiny"])
    assert sum(isinstance(m, torch.nn.Conv1d) for m in tiny.modules()) == 8
    assert sum(isinstance(m, torch.nn.ConvTranspose1d) for m in tiny.modules()) == 8


def test_latent_dim_range_is_enforced():
    for bad in (1, 8193, 2.5):
        with pytest.raises(ValueError, match="latent_dim"):
            ModelConfig.from_preset("tiny", latent_dim=bad)
    for ok in (2, 8192):
        m = SpectrumVAE(ModelConfig.from_preset("tiny", latent_dim=ok))
        assert m.encode(torch.zeros(1, m.config.length))[0].shape == (1, ok)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ModelConfig.from_preset("huge")


def test_config_round_trips_through_a_dict():
    for c in PRESETS.values():
        assert ModelConfig.from_dict(c.as_dict()) == c
    custom = dataclasses.replace(PRESETS["tiny"], preset="custom", channels=(2, 4))
    assert ModelConfig.from_dict(custom.as_dict()).grid.multiple == 4


def test_loss_ignores_masked_pixels_and_kl_is_exact():
    torch.manual_seed(1)
    model = SpectrumVAE(PRESETS["tiny"])
    L, D = model.config.length, model.config.latent_dim
    x, x_hat = torch.rand(2, L), torch.rand(2, L)
    mask = torch.zeros(2, L, dtype=torch.bool)
    mask[:, 100:200] = True
    zero = torch.zeros(2, D)
    base = model.loss(x, mask, x_hat, zero, zero, 1.0)
    changed = x_hat.clone()
    changed[:, 300:] += 100.0  # only masked-out pixels
    assert model.loss(x, mask, changed, zero, zero, 1.0)["recon"] == base["recon"]
    changed[:, 150] += 1.0
    assert model.loss(x, mask, changed, zero, zero, 1.0)["recon"] > base["recon"]
    expect = ((x - x_hat)[:, 100:200] ** 2).mean()
    assert base["recon"].item() == pytest.approx(expect.item(), rel=1e-6)
    # KL of N(mu, 1) against N(0, 1) is mu^2 / 2 per dimension
    assert base["kl"].item() == 0.0
    mu = torch.zeros(2, D)
    mu[:, 0] = 2.0
    out = model.loss(x, mask, x_hat, mu, zero, 0.5)
    assert out["kl"].item() == pytest.approx(2.0)
    assert out["loss"].item() == pytest.approx(base["recon"].item() + 0.5 * 2.0, rel=1e-6)
    # a spectrum without valid pixels contributes 0, not NaN
    assert masked_mse(x, torch.zeros_like(mask), x_hat).tolist() == [0.0, 0.0]


def test_eval_mode_is_deterministic_training_mode_samples():
    torch.manual_seed(2)
    model = SpectrumVAE(PRESETS["tiny"])
    x = torch.rand(2, model.config.length)
    model.eval()
    a, mu, _ = model(x)
    assert torch.equal(a, model(x)[0]) and torch.equal(a, model.decode(mu))
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])
