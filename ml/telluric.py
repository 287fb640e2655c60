"""Stellar / telluric separation: a telluric component fixed in the observatory frame.

Every ground-based spectrum is the star times Earth's atmosphere.  In a
barycentric HARPS product the star's lines sit at its radial velocity while
the telluric lines sit at ``lambda_topo * (1 + BERV / c)``: they move with the
barycentric correction from night to night.  The separation model says so
explicitly (the design and why it was chosen: README, "Stellar / telluric
separation")::

    x(lambda) = S(lambda) * T(lambda)
    T(lambda) = exp(-sum_k a_k tau_k(lambda / (1 + BERV / c)))

``S`` is what the autoencoder decodes from the latent vector (barycentric
frame), ``tau_k`` (``K`` = ``ModelConfig.telluric``) are non-negative
optical-depth templates on the model grid *in the observatory frame*, shared
by the whole archive and learned with it, and ``a_k >= 0`` are per-spectrum
amplitudes (airmass, water column) that the encoder gives beside the latent
mean.  Nothing is labelled: the templates are identified because they must
stay put in the observatory frame while the stars move with BERV; training
adds random extra velocities to whole spectra ("velocity whitening", after
Sedaghat et al. 2023, "Stellar Karaoke"), so that stars observed at similar
BERV cannot teach the stellar decoder telluric lines at fixed places, and
an L1 penalty keeps the templates at zero where no absorption is needed.
Templates are zero outside ``harps.TELLURIC_BANDS`` (+- ``TELLURIC_MARGIN``)
and in the windows of ``harps.STRONG_STELLAR_LINES`` (H alpha, Na D), and hold
lines only (their smooth lower envelope is removed,
:meth:`TelluricAbsorption.tau`).  Both constraints came from the benchmark:
free templates learned, besides the atmosphere, a weak smeared copy of the
stars' common lines (in the observatory frame every star's lines fall
within +-RV +- BERV of their rest wavelengths), which made the stellar lines
in the product ~12 % too shallow, and a copy of H alpha's core.

Shapes: ``B`` spectra, ``K`` templates, ``L`` padded grid length.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harps_data import harps
from ml.preprocess import Grid

#: Half-width of the window (Angstrom) of the templates' lower envelope, which is
#: removed: a smooth optical depth is degenerate with the star's continuum.
ENVELOPE_HALF_WIDTH = 3.0
#: Initial raw template value: softplus(-5) = 0.0067 optical depth.
_TAU_INIT = -5.0


def doppler_sample(values: torch.Tensor, wave0: float, step: float,
                   factor: torch.Tensor) -> torch.Tensor:
    """Templates sampled at ``lambda * factor``, one copy per factor (linear interpolation).

    Parameters
    ----------
    values : torch.Tensor
        ``(K, L)`` on the grid ``wave0 + step * i``.
    wave0, step : float
        First wavelength and step of the grid, Angstrom.
    factor : torch.Tensor
        ``(B,)`` Doppler factors: ``1 / (1 + v / c)`` gives, at ``lambda``,
        what sits there after a shift by ``+v``.

    Returns
    -------
    torch.Tensor
        ``(B, K, L)``; beyond the grid ends the end values are repeated.
    """
    i0, w = _positions(values.shape[-1], wave0, step, factor, values)
    return (values[:, i0] * (1 - w) + values[:, i0 + 1] * w).movedim(1, 0)


def _positions(n: int, wave0: float, step: float, factor: torch.Tensor,
               like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left neighbour ``(B, L)`` int and weight ``(B, L)`` of ``lambda * factor`` on the grid."""
    wave = wave0 + step * torch.arange(n, device=like.device, dtype=torch.float64)
    pos = (wave[None, :] * factor[:, None].double() - wave0) / step
    i0 = pos.floor().clamp(0, n - 2)
    return i0.long(), (pos - i0).clamp(0.0, 1.0).to(like.dtype)


def shift_spectra(x: torch.Tensor, mask: torch.Tensor, wave0: float, step: float,
                  v_kms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Doppler-shift whole spectra by ``v_kms`` (velocity whitening).

    Parameters
    ----------
    x, mask : torch.Tensor
        ``(B, L)`` normalised flux and pixel mask.
    wave0, step : float
        Grid start and step, Angstrom.
    v_kms : torch.Tensor
        ``(B,)`` extra velocities, km/s.

    Returns
    -------
    x, mask : torch.Tensor
        ``(B, L)``: a pixel is valid when both source neighbours were.
    """
    factor = 1.0 / (1.0 + v_kms / harps.C_KMS)
    xs = _per_row(x, wave0, step, factor)
    ms = _per_row(mask.to(x.dtype), wave0, step, factor) > 0.999
    return torch.where(ms, xs, torch.zeros_like(xs)), ms


def _per_row(x: torch.Tensor, wave0: float, step: float, factor: torch.Tensor) -> torch.Tensor:
    """Row ``b`` of ``x`` sampled at ``lambda * factor[b]``, ``(B, L)``."""
    i0, w = _positions(x.shape[-1], wave0, step, factor, x)
    return torch.gather(x, 1, i0) * (1 - w) + torch.gather(x, 1, i0 + 1) * w


class TelluricAbsorption(nn.Module):
    """``K`` optical-depth templates in the observatory frame and the transmission they give.

    Parameters
    ----------
    grid : Grid
        The model grid (its padded length ``L`` is the template length).
    n_templates : int
        ``K`` >= 1.
    hidden : int
        Width of the encoder layer the amplitude head reads.
    """

    def __init__(self, grid: Grid, n_templates: int, hidden: int) -> None:
        super().__init__()
        self.wave0, self.step = float(grid.wave[0]), float(grid.step)
        wave = self.wave0 + self.step * np.arange(grid.padded)
        allowed = (harps.in_telluric_bands(wave, harps.TELLURIC_MARGIN)
                   & ~harps.near_strong_stellar_line(wave)
                   & (np.arange(grid.padded) < grid.npix))
        self.register_buffer("allowed", torch.from_numpy(allowed.astype(np.float32)))
        gen = torch.Generator().manual_seed(n_templates)
        self.raw_tau = nn.Parameter(_TAU_INIT + 0.1 * torch.randn(n_templates, grid.padded,
                                                                  generator=gen))
        self.amp = nn.Linear(hidden, n_templates)
        self.reset_amplitudes()

    def reset_amplitudes(self) -> None:
        """Amplitude head: small random weights (the templates must not stay alike),
        softplus(bias) = 1."""
        gen = torch.Generator().manual_seed(self.raw_tau.shape[0] + 1)
        with torch.no_grad():
            bound = 0.5 / math.sqrt(self.amp.in_features)
            self.amp.weight.copy_((torch.rand(self.amp.weight.shape, generator=gen) * 2 - 1)
                                  * bound)
        nn.init.constant_(self.amp.bias, math.log(math.e - 1.0))

    def tau(self) -> torch.Tensor:
        """Templates, ``(K, L)`` optical depths >= 0 (0 outside the telluric bands).

        Lines only: the lower envelope of each template (minimum over
        +-``ENVELOPE_HALF_WIDTH``, then averaged over the same window) is
        subtracted.  A smooth optical depth cannot be told from the star's
        continuum; without this the templates drift into a flat absorption
        of a few per cent that the stellar decoder compensates.
        """
        raw = F.softplus(self.raw_tau) * self.allowed
        w = max(1, round(ENVELOPE_HALF_WIDTH / self.step))
        low = -F.max_pool1d(-raw[None], 2 * w + 1, stride=1, padding=w)[0]
        low = F.avg_pool1d(low[None], 2 * w + 1, stride=1, padding=w,
                           count_include_pad=False)[0]
        return F.relu(raw - low)

    def amplitudes(self, hidden: torch.Tensor) -> torch.Tensor:
        """Per-spectrum amplitudes ``(B, K)`` >= 0 from the encoder's last hidden layer."""
        return F.softplus(self.amp(hidden))

    def optical_depth(self, amplitudes: torch.Tensor, berv_kms: torch.Tensor) -> torch.Tensor:
        """Total telluric optical depth on the barycentric grid, ``(B, L)``.

        Parameters
        ----------
        amplitudes : torch.Tensor
            ``(B, K)``.
        berv_kms : torch.Tensor
            ``(B,)`` BERV of each spectrum (plus any whitening velocity), km/s.
        """
        factor = 1.0 / (1.0 + berv_kms / harps.C_KMS)
        shifted = doppler_sample(self.tau(), self.wave0, self.step, factor)  # (B, K, L)
        return (amplitudes[:, :, None] * shifted).sum(dim=1)

    def transmission(self, amplitudes: torch.Tensor, berv_kms: torch.Tensor) -> torch.Tensor:
        """Telluric transmission ``T = exp(-tau)`` on the barycentric grid, ``(B, L)``."""
        return torch.exp(-self.optical_depth(amplitudes, berv_kms))

    def sparsity(self) -> torch.Tensor:
        """The L1 penalty, scalar: mean template optical depth over the allowed pixels,
        plus a tenth of the mean before the envelope is removed (keeps that from drifting).

        Its weight (``harps-train --telluric-l1``) must beat the noise of the data
        gradient at a pixel, or the templates keep a forest of small spikes that
        together absorb a few per cent everywhere; real lines, whose gradient is
        systematic, survive it.
        """
        raw = F.softplus(self.raw_tau) * self.allowed
        n = self.allowed.sum() * self.raw_tau.shape[0]
        return (self.tau().sum() + 0.1 * raw.sum()) / n


__all__ = ["TelluricAbsorption", "doppler_sample", "shift_spectra"]
