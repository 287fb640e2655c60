"""A trained model ready to use: the one loading path of ``harps-encode`` and the model server.

:class:`Predictor` rebuilds model and preprocessing recipe from a checkpoint
(:mod:`ml.checkpoint`) and encodes, decodes and reconstructs spectra in
inference mode on the CPU (or a given device).  ``harps-encode`` and the
model server (:mod:`ml.serve`) both go through it, so a spectrum gets the
same latent vector in the published table and in the live service.

Shapes: ``B`` spectra, ``D`` latent dimensions, ``L`` padded grid length,
``N`` grid samples (``N <= L``; the padding is never returned).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harps_data import fitsio
from ml import checkpoint
from ml.model import SpectrumVAE, masked_mse
from ml.preprocess import Preprocessed, Recipe, preprocess, preprocess_file

#: The latent vectors the service decodes: |z| above this many prior sigmas is refused.
MAX_ABS_LATENT = 50.0


@dataclass
class Encoded:
    """Spectra as the model sees them, with their codes and reconstructions.

    Attributes
    ----------
    x : numpy.ndarray
        ``(B, N)`` float32, normalised flux on the model grid (0 where masked).
    mask : numpy.ndarray
        ``(B, N)`` bool, pixels that count.
    latent : numpy.ndarray
        ``(B, D)`` float32, latent mean mu (NaN for flagged spectra).
    recon : numpy.ndarray
        ``(B, N)`` float32, decode(mu), normalised (NaN for flagged spectra).
    recon_err : numpy.ndarray
        ``(B,)`` float32, masked MSE of ``recon``, (normalised flux)^2.
    scale : numpy.ndarray
        ``(B,)`` float32, median flux used for normalisation, adu.
    flags : numpy.ndarray
        ``(B,)`` int32, :mod:`ml.preprocess` ``FLAG_*`` bits (0: encoded).
    reason : list of str
        Why a spectrum is flagged ('' when encoded).
    """

    x: np.ndarray
    mask: np.ndarray
    latent: np.ndarray
    recon: np.ndarray
    recon_err: np.ndarray
    scale: np.ndarray
    flags: np.ndarray
    reason: list[str]

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything as numpy arrays (``reason`` as a unicode array), for ``np.savez``."""
        out = {k: getattr(self, k) for k in
               ("x", "mask", "latent", "recon", "recon_err", "scale", "flags")}
        out["reason"] = np.array(self.reason, dtype="U200")
        return out


@torch.inference_mode()
def encode_tensors(model: SpectrumVAE, x: torch.Tensor, mask: torch.Tensor,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mu, decode(mu) and the masked MSE of usable spectra.

    Parameters
    ----------
    x, mask : torch.Tensor
        ``(B, L)`` normalised flux and pixel mask, on the model's device.

    Returns
    -------
    mu : torch.Tensor
        ``(B, D)``.
    recon : torch.Tensor
        ``(B, L)``.
    recon_err : torch.Tensor
        ``(B,)``, (normalised flux)^2.
    """
    mu, _ = model.encode(x)
    recon = model.decode(mu)
    return mu, recon, masked_mse(x, mask, recon)


class Predictor:
    """A checkpoint's model and recipe, in eval mode.

    Attributes
    ----------
    model : SpectrumVAE
    recipe : Recipe
    ckpt : dict
        The checkpoint (see :mod:`ml.checkpoint`).
    sha256 : str
        SHA-256 of the checkpoint file.
    model_id : str
        :func:`ml.checkpoint.model_id`.
    path : pathlib.Path
    device : torch.device
    """

    def __init__(self, ckpt: dict[str, Any], sha256: str, path: Path,
                 device: torch.device | str = "cpu") -> None:
        self.ckpt, self.sha256, self.path = ckpt, sha256, path
        self.model, self.recipe = checkpoint.build_model(ckpt)
        self.device = torch.device(device)
        self.model.to(self.device)
        self.model_id = checkpoint.model_id(ckpt, sha256)
        self._description: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> Predictor:
        """Read a checkpoint (:func:`ml.checkpoint.load`) and build its model.

        Raises
        ------
        ml.checkpoint.CheckpointError
        """
        return cls(checkpoint.load(path), checkpoint.sha256_file(path), Path(path), device)

    @property
    def latent_dim(self) -> int:
        return self.model.config.latent_dim

    @property
    def npix(self) -> int:
        return self.recipe.grid.npix

    def wave(self) -> np.ndarray:
        """Model grid wavelengths, ``(N,)`` float64, Angstrom (frame: ``recipe.frame``)."""
        return self.recipe.grid.wave

    def describe(self) -> dict[str, Any]:
        """What a client needs to know: id, checksum, latent size, grid, frame.

        Made once per model (the model server sends it with every raw decode;
        the grid's wavelength array has 312,501 values on the full grid).
        """
        if self._description is None:
            g = self.recipe.grid
            self._description = {
                "model_id": self.model_id, "ckpt_sha256": self.sha256,
                "preset": self.model.config.preset, "latent_dim": self.latent_dim,
                "frame": self.recipe.frame, "grid_start": float(g.wave[0]),
                "grid_step": float(g.step), "grid_npix": int(g.npix)}
        return dict(self._description)

    def check_latent(self, z: np.ndarray) -> np.ndarray:
        """``z`` as a ``(B, D)`` float32 array, or ValueError saying what is wrong."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim == 1:
            z = z[None, :]
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"a latent vector of this model has {self.latent_dim} numbers, "
                             f"got {z.shape[-1] if z.ndim else 0}")
        if not np.all(np.isfinite(z)):
            raise ValueError("latent vector holds non-finite numbers")
        if np.abs(z).max() > MAX_ABS_LATENT:
            raise ValueError(f"latent coordinates are in units of the N(0,1) prior; "
                             f"|{np.abs(z).max():.4g}| is beyond the limit {MAX_ABS_LATENT:g}")
        return z.astype(np.float32)

    @torch.inference_mode()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """Decoded spectra, ``(B, N)`` float32, normalised flux (median ~1).

        Parameters
        ----------
        z : numpy.ndarray
            ``(B, D)`` or ``(D,)``; checked by :meth:`check_latent`.
        """
        zt = torch.from_numpy(self.check_latent(z)).to(self.device)
        return self.model.decode(zt)[:, :self.npix].float().cpu().numpy()

    def encode_preprocessed(self, items: list[Preprocessed]) -> Encoded:
        """Encode spectra already on the grid (flagged ones get NaN codes)."""
        n, npix, dim = len(items), self.npix, self.latent_dim
        flags = np.array([p.flags for p in items], np.int32)
        x = np.stack([p.flux for p in items]) if items else np.zeros((0, self.recipe.grid.padded))
        mask = np.stack([p.mask for p in items]) if items else np.zeros_like(x, bool)
        latent = np.full((n, dim), np.nan, np.float32)
        recon = np.full((n, npix), np.nan, np.float32)
        err = np.full(n, np.nan, np.float32)
        ok = flags == 0
        if ok.any():
            mu, rec, mse = encode_tensors(
                self.model, torch.from_numpy(x[ok]).to(self.device),
                torch.from_numpy(mask[ok]).to(self.device))
            latent[ok] = mu.float().cpu().numpy()
            recon[ok] = rec[:, :npix].float().cpu().numpy()
            err[ok] = mse.float().cpu().numpy()
        return Encoded(x[:, :npix].astype(np.float32), mask[:, :npix], latent, recon, err,
                       np.array([p.scale for p in items], np.float32), flags,
                       [p.reason for p in items])

    def encode_files(self, paths: list[str | os.PathLike]) -> Encoded:
        """Read, preprocess and encode files (unreadable ones come back flagged)."""
        return self.encode_preprocessed([preprocess_file(p, self.recipe) for p in paths])

    def encode_spectrum(self, spec: fitsio.Spectrum) -> Encoded:
        """Preprocess and encode one spectrum read by :mod:`harps_data.fitsio`."""
        return self.encode_preprocessed([preprocess(spec, self.recipe)])


__all__ = ["Encoded", "MAX_ABS_LATENT", "Predictor", "Recipe", "encode_tensors"]
