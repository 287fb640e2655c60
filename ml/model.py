"""Convolutional variational autoencoder for HARPS spectra.

After Sedaghat et al. 2021 (MNRAS 501, 6026, "Machines learn to infer
stellar parameters just by looking at a large number of spectra"): a stack
of stride-2 ``Conv1d`` layers (channels growing 16 -> 512) compresses the
full-resolution spectrum, fully connected layers map it to a small latent
space, and a mirrored decoder (fully connected, then ``ConvTranspose1d``)
rebuilds the spectrum.  The bottleneck is variational: the encoder gives a
mean and a log-variance per latent dimension, and a KL term with a small,
ramped weight (see :mod:`ml.train`) pushes towards weakly disentangled,
well-behaved latents.

Shapes: ``B`` spectra, ``L`` = padded grid length (``config.grid.padded``),
``D`` = ``config.latent_dim``.  Spectra are median-normalised flux
(dimensionless, 1 = median; :mod:`ml.preprocess`), masked pixels hold 0.

Presets (``PRESETS``, ``ModelConfig.from_preset``):

=======  ======  ======  ===========  ======  ================================
name     step A  layers  channels     latent  use
=======  ======  ======  ===========  ======  ================================
full     0.01    15      16 -> 512    128     the native grid, 327,680 pixels
coarse   0.1     12      16 -> 256    64      fast work on 0.1 A (32,768 px)
tiny     0.5     8       4 -> 32      16      tests and smoke runs (6,400 px)
fc2      1.0     0       (fc only)    2       2-D latent for plots (3,126 px)
=======  ======  ======  ===========  ======  ================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from harps_data import harps
from ml.preprocess import Grid
from ml.telluric import TelluricAbsorption

LATENT_MIN, LATENT_MAX = 2, 8192
#: Log-variances are clamped to this range (keeps exp() finite early in training).
LOGVAR_RANGE = (-20.0, 10.0)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`SpectrumVAE`; the defaults are the ``full`` preset."""

    preset: str = "full"  # name, used in model ids ("custom" when changed by hand)
    step: float = harps.WAVE_STEP  # grid sampling, Angstrom (0.01 = native HARPS)
    # output channels of the stride-2 Conv1d layers, one entry per layer;
    # () gives a purely fully connected model
    channels: tuple[int, ...] = (16, 16, 32, 32, 64, 64, 128, 128, 256, 256, 512, 512, 512,
                                 512, 512)
    kernel_size: int = 4  # even: padding (k - 2) / 2 makes every layer halve L exactly
    fc_hidden: tuple[int, ...] = (512,)  # widths of the fully connected layers before mu/logvar
    latent_dim: int = 128  # D, 2..8192
    negative_slope: float = 0.1  # of the LeakyReLU activations
    # K observatory-frame telluric templates (ml.telluric); 0: a plain autoencoder
    telluric: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.latent_dim, int) and LATENT_MIN <= self.latent_dim <= LATENT_MAX):
            raise ValueError(f"latent_dim must be an integer in {LATENT_MIN}..{LATENT_MAX}, "
                             f"got {self.latent_dim!r}")
        if self.kernel_size < 2 or self.kernel_size % 2:
            raise ValueError(f"kernel_size must be even and >= 2, got {self.kernel_size}")
        if any(c < 1 for c in self.channels + self.fc_hidden):
            raise ValueError("channels and fc_hidden must be positive")
        if not isinstance(self.telluric, int) or not 0 <= self.telluric <= 16:
            raise ValueError(f"telluric must be an integer in 0..16, got {self.telluric!r}")
        self.grid  # noqa: B018 - validates the step

    @property
    def grid(self) -> Grid:
        """Input grid: the padded length is a multiple of ``2**len(channels)``."""
        return Grid(self.step, 2 ** len(self.channels))

    @property
    def length(self) -> int:
        """Input length ``L`` (padded grid)."""
        return self.grid.padded

    def as_dict(self) -> dict:
        """JSON-ready fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of :meth:`as_dict` (fields added since a checkpoint was written keep
        their defaults)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @classmethod
    def from_preset(cls, name: str, **overrides) -> ModelConfig:
        """A named preset, optionally with fields replaced (``latent_dim=32``)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)


PRESETS: dict[str, ModelConfig] = {
    "full": ModelConfig(),
    "coarse": ModelConfig(preset="coarse", step=0.1, latent_dim=64, fc_hidden=(256,),
                          channels=(16, 16, 32, 32, 64, 64, 128, 128, 256, 256, 256, 256)),
    "tiny": ModelConfig(preset="tiny", step=0.5, latent_dim=16, fc_hidden=(64,),
                        channels=(4, 8, 8, 16, 16, 32, 32, 32)),
    "fc2": ModelConfig(preset="fc2", step=1.0, latent_dim=2, channels=(), fc_hidden=(256, 64)),
    # stellar / telluric separation on the 0.1 A grid (ml.telluric): a slim
    # autoencoder for the star, 4 observatory-frame telluric templates
    "telluric": ModelConfig(preset="telluric", step=0.1, latent_dim=16, fc_hidden=(128,),
                            channels=(8, 8, 16, 16, 32, 32, 64, 64, 64, 64, 64, 64),
                            telluric=4),
}


def masked_mse(x: torch.Tensor, mask: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean squared residual over the masked-in pixels of each spectrum.

    Parameters
    ----------
    x, x_hat : torch.Tensor
        Shape ``(B, L)``, normalised flux.
    mask : torch.Tensor
        Shape ``(B, L)``, bool.

    Returns
    -------
    torch.Tensor
        Shape ``(B,)``, (normalised flux)^2; 0 for a spectrum without valid pixels.
    """
    m = mask.to(x.dtype)
    return ((x - x_hat) ** 2 * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class SpectrumVAE(nn.Module):
    """Conv + fully connected variational autoencoder (see the module docstring)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = c = config
        act = lambda: nn.LeakyReLU(c.negative_slope)  # noqa: E731
        pad = (c.kernel_size - 2) // 2
        self.bottom_length = c.length >> len(c.channels)  # L / 2**layers
        n_flat = (c.channels[-1] if c.channels else 1) * self.bottom_length
        # encoder: (B, 1, L) -> (B, C_last, L / 2**layers) -> (B, n_flat) -> (B, H)
        c_in = ((1,) + c.channels)[:-1]
        self.enc_conv = nn.Sequential(*(
            nn.Sequential(nn.Conv1d(i, o, c.kernel_size, stride=2, padding=pad), act())
            for i, o in zip(c_in, c.channels, strict=True)))
        widths = (n_flat,) + c.fc_hidden
        self.enc_fc = nn.Sequential(*(nn.Sequential(nn.Linear(i, o), act())
                                      for i, o in zip(widths[:-1], widths[1:], strict=True)))
        self.mu = nn.Linear(widths[-1], c.latent_dim)
        self.logvar = nn.Linear(widths[-1], c.latent_dim)
        self.telluric = TelluricAbsorption(c.grid, c.telluric, widths[-1]) if c.telluric else None
        # decoder: (B, D) -> (B, n_flat) -> (B, C_last, L / 2**layers) -> (B, 1, L)
        back = (c.latent_dim,) + c.fc_hidden[::-1] + (n_flat,)
        dec_fc = []
        for k, (i, o) in enumerate(zip(back[:-1], back[1:], strict=True)):
            last = k == len(back) - 2
            dec_fc += [nn.Linear(i, o)] + ([act()] if c.channels or not last else [])
        self.dec_fc = nn.Sequential(*dec_fc)
        c_out = (c.channels[::-1] + (1,))[1:]
        self.dec_conv = nn.Sequential(*(
            nn.Sequential(nn.ConvTranspose1d(i, o, c.kernel_size, stride=2, padding=pad),
                          act() if k < len(c.channels) - 1 else nn.Identity())
            for k, (i, o) in enumerate(zip(c.channels[::-1], c_out, strict=True))))
        self.apply(self._init_weights)
        if self.telluric is not None:  # amplitudes start at 1, independent of the input
            self.telluric.reset_amplitudes()

    def _init_weights(self, module: nn.Module) -> None:
        """He (Kaiming) initialisation for the LeakyReLU slope, zero biases.

        PyTorch's default initialisation shrinks the variance of every layer
        by about 3: after 12-15 strided layers the input-dependent part of mu
        is ~1e-7 of its bias and the model starts (and tends to stay)
        collapsed.  With fan-in He init the signal keeps its scale.
        """
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, a=self.config.negative_slope,
                                    mode="fan_in", nonlinearity="leaky_relu")
            nn.init.zeros_(module.bias)

    @property
    def n_params(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent posterior of each spectrum.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, L)``, normalised flux, 0 where masked.

        Returns
        -------
        mu, logvar : torch.Tensor
            Shape ``(B, D)`` each: mean and natural-log variance of q(z | x).
        """
        h = self._hidden(x)
        return self.mu(h), self.logvar(h).clamp(*LOGVAR_RANGE)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden layer, ``(B, H)``."""
        return self.enc_fc(self.enc_conv(x.unsqueeze(1)).flatten(1))

    def separate(self, x: torch.Tensor, berv_kms: torch.Tensor,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stellar and telluric parts of spectra (models with ``config.telluric`` > 0).

        Parameters
        ----------
        x : torch.Tensor
            ``(B, L)`` normalised flux in the barycentric frame, 0 where masked.
        berv_kms : torch.Tensor
            ``(B,)`` barycentric Earth radial velocity of each spectrum, km/s.

        Returns
        -------
        mu, logvar : torch.Tensor
            ``(B, D)`` latent posterior.
        amplitudes : torch.Tensor
            ``(B, K)`` telluric template amplitudes.
        transmission : torch.Tensor
            ``(B, L)`` telluric transmission on the barycentric grid.
        """
        if self.telluric is None:
            raise ValueError(f"model preset {self.config.preset!r} has no telluric component")
        h = self._hidden(x)
        amp = self.telluric.amplitudes(h)
        return (self.mu(h), self.logvar(h).clamp(*LOGVAR_RANGE), amp,
                self.telluric.transmission(amp, berv_kms))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Spectra for latent vectors.

        Parameters
        ----------
        z : torch.Tensor
            Shape ``(B, D)``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, L)``, normalised flux.
        """
        h = self.dec_fc(z)
        if self.config.channels:
            h = h.view(len(z), self.config.channels[-1], self.bottom_length)
            h = self.dec_conv(h).squeeze(1)
        return h

    def forward(self, x: torch.Tensor, berv_kms: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, draw z (training mode) or take z = mu (eval mode), decode.

        With a telluric component the output is the decoded star times the
        telluric transmission at each spectrum's BERV (:meth:`separate`).

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, L)``.
        berv_kms : torch.Tensor, optional
            ``(B,)`` km/s; needed (only) by models with a telluric component.

        Returns
        -------
        x_hat : torch.Tensor
            Shape ``(B, L)``.
        mu, logvar : torch.Tensor
            Shape ``(B, D)`` each.
        """
        if self.telluric is None:
            mu, logvar = self.encode(x)
            trans = None
        else:
            if berv_kms is None:
                raise ValueError("a model with a telluric component needs the BERV")
            mu, logvar, _, trans = self.separate(x, berv_kms)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        x_hat = self.decode(z)
        return (x_hat if trans is None else x_hat * trans), mu, logvar

    def loss(self, x: torch.Tensor, mask: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor,
             logvar: torch.Tensor, kl_weight: float) -> dict[str, torch.Tensor]:
        """Masked reconstruction error plus weighted KL divergence.

        Parameters
        ----------
        x, x_hat : torch.Tensor
            Shape ``(B, L)``, normalised flux.
        mask : torch.Tensor
            Shape ``(B, L)``, bool: pixels that count (gap, padding and bad
            pixels are False).
        mu, logvar : torch.Tensor
            Shape ``(B, D)``.
        kl_weight : float
            Weight beta of the KL term (ramped up during training).

        Returns
        -------
        dict
            Scalars: ``recon`` (batch mean of the per-spectrum masked MSE,
            (normalised flux)^2), ``kl`` (batch mean of KL(q(z|x) || N(0, 1)),
            nats per spectrum) and ``loss`` = ``recon + kl_weight * kl``.
        """
        recon = masked_mse(x, mask, x_hat).mean()
        kl = (-0.5 * (1.0 + logvar - mu**2 - logvar.exp()).sum(dim=1)).mean()
        return {"loss": recon + kl_weight * kl, "recon": recon, "kl": kl}

    def telluric_penalty(self) -> torch.Tensor:
        """L1 penalty of the telluric templates (0 without a telluric component), scalar."""
        if self.telluric is None:
            return torch.zeros(())
        return self.telluric.sparsity()


def describe(config: ModelConfig) -> str:
    """One line: preset, grid, layers, channels, latent size, parameter count."""
    n = SpectrumVAE(config).n_params
    ch = f"{config.channels[0]}->{config.channels[-1]}" if config.channels else "fc only"
    return (f"{config.preset}: step {config.step} A, L={config.length}, "
            f"{len(config.channels)} conv layers ({ch}), fc {list(config.fc_hidden)}, "
            f"latent {config.latent_dim}, {n:,} parameters ({n * 4 / 2**20:.1f} MiB)")

