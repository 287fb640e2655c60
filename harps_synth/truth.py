"""Ground truth of stellar/telluric separation: the ``--truth`` sidecar files.

With ``harps-synth --truth`` every FITS file gets a sidecar next to it,
``<FITS name without .fits>.truth.npz`` (``2004/ADP.2004-...fits`` ->
``2004/ADP.2004-....truth.npz``; with ``--format both`` the ADP and the s1d
file each get their own, identical one).  It holds, on exactly the file's
wavelength grid (``harps_data.harps.archive_grid(step)``):

``wave``          (N,) float64, barycentric air wavelengths, Angstrom
``stellar``       (N,) float32, adu: noiseless flux without tellurics, 0 in the CCD gap
``transmission``  (N,) float32: noiseless observed flux / ``stellar``, NaN in the gap
``berv``, ``rv``  km/s (BERV and stellar RV of the rendered spectrum)
``airmass``, ``pwv_mm``  mean airmass, precipitable water vapour (mm)
``seed``, ``index``      master seed and spectrum index of the archive

``stellar * transmission`` is the noiseless observed flux, of which the
file's FLUX is a noisy draw (see :func:`harps_synth.spectrum.render_truth`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from harps_synth.spectrum import render_truth

#: What replaces ``.fits`` in the sidecar's name.
SUFFIX = ".truth.npz"


def truth_path(fits_path: str | os.PathLike) -> Path:
    """The sidecar of a FITS file: ``X.fits`` -> ``X.truth.npz`` in the same folder.

    Parameters
    ----------
    fits_path : str or path-like
        A file written by ``harps-synth`` (name ending in ``.fits``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        When the name does not end in ``.fits``.
    """
    path = Path(fits_path)
    if path.suffix != ".fits":
        raise ValueError(f"expected a .fits file written by harps-synth, got {str(path)!r}")
    return path.with_name(path.name.removesuffix(".fits") + SUFFIX)


def truth_arrays(obs, wave: np.ndarray) -> dict[str, np.ndarray | float | int]:
    """The sidecar's content for one observation (see the module docstring).

    Parameters
    ----------
    obs : harps_synth.observations.Observation
    wave : numpy.ndarray
        Shape ``(N,)``, the archive's grid in Angstrom.

    Returns
    -------
    dict
        ``wave``, ``stellar``, ``transmission`` (shape ``(N,)``) and the
        scalars ``berv``, ``airmass``, ``pwv_mm``, ``rv``, ``seed``, ``index``.
    """
    stellar, transmission = render_truth(obs, wave)
    p = obs.params
    return {"wave": np.asarray(wave, dtype=np.float64), "stellar": stellar,
            "transmission": transmission, "berv": float(p.berv), "airmass": float(p.airmass),
            "pwv_mm": float(p.pwv), "rv": float(p.rv), "seed": int(obs.seed),
            "index": int(obs.index)}


def truth_bytes(truth: dict[str, np.ndarray | float | int]) -> bytes:
    """A compressed ``.npz`` of :func:`truth_arrays` (deterministic bytes)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **truth)
    return buffer.getvalue()


def read_truth(path: str | os.PathLike) -> dict[str, np.ndarray | float | int]:
    """Read a sidecar; scalars come back as Python ``float``/``int``.

    Parameters
    ----------
    path : str or path-like
        The ``.truth.npz`` file (or a FITS file: its sidecar is read).

    Returns
    -------
    dict
        As written by :func:`truth_arrays`.
    """
    path = Path(path)
    if path.suffix == ".fits":
        path = truth_path(path)
    with np.load(path, allow_pickle=False) as npz:
        return {k: (npz[k].item() if npz[k].ndim == 0 else npz[k]) for k in npz.files}
