"""The DaCHS workers' side of the model server (:mod:`ml.serve`, ``harps-model-server``).

The workers never import torch: they send latent vectors, archive paths or
a user's upload over the model server's Unix socket
(:data:`harps_site.MODEL_SOCKET`) and get numpy arrays back.  Errors become
exceptions the services turn into clear answers: :class:`ModelUnavailable`
(no model published, server down: HTTP 503), :class:`ModelRefused` (the
input cannot be used; the message says why), :class:`ModelBusy` (too many
uploads at once: HTTP 429).
"""

from __future__ import annotations

import http.client
import io
import json
import socket
from typing import Any

import numpy as np

import harps_site

#: Seconds to wait for the model server (an upload of the full grid takes ~1 s).
TIMEOUT_S = 60.0


class ModelUnavailable(Exception):
    """No model to answer with (none published, or the model server is not running)."""


class ModelRefused(ValueError):
    """The model server refused the input; ``str()`` says why."""


class ModelBusy(Exception):
    """The model server is at its limit of concurrent uploads."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.socket_path)
        self.sock = s


def call(method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None,
         socket_path: str = harps_site.MODEL_SOCKET) -> tuple[bytes, str]:
    """One request to the model server; returns (payload, model id).

    Raises
    ------
    ModelUnavailable, ModelRefused, ModelBusy
    """
    conn = _UnixConnection(socket_path, TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        payload, model_id = resp.read(), resp.getheader("X-Model-Id", "")
    except (OSError, http.client.HTTPException) as ex:
        raise ModelUnavailable(f"the model server is not reachable ({type(ex).__name__}); "
                               "try again in a moment") from None
    finally:
        conn.close()
    if resp.status == 200:
        return payload, model_id
    try:
        message = json.loads(payload)["error"]
    except (ValueError, KeyError, TypeError):
        message = f"model server answered HTTP {resp.status}"
    if resp.status == 503:
        raise ModelUnavailable(message)
    if resp.status == 429:
        raise ModelBusy(message)
    if resp.status in (400, 413, 422):
        raise ModelRefused(message)
    raise ModelUnavailable(message)


def _arrays(payload: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def info() -> dict[str, Any]:
    """The model server's ``/info``: model id, latent size, grid, pid, RSS."""
    payload, _ = call("GET", "/info")
    return json.loads(payload)


def decode(latent: np.ndarray) -> tuple[np.ndarray, str]:
    """Decoded spectra ``(B, N)`` (normalised flux) and the model id, for ``(B, D)`` vectors."""
    body = json.dumps({"latent": np.asarray(latent, float).tolist()}).encode()
    payload, model_id = call("POST", "/decode", body, {"Content-Type": "application/json"})
    return _arrays(payload)["flux"], model_id


def reconstruct(paths: list[str]) -> tuple[dict[str, np.ndarray], str]:
    """Archive files as the model sees them (``x``, ``mask``, ``latent``, ``recon``, ...)."""
    body = json.dumps({"paths": list(paths)}).encode()
    payload, model_id = call("POST", "/reconstruct", body, {"Content-Type": "application/json"})
    return _arrays(payload), model_id


def separate(paths: list[str]) -> tuple[dict[str, np.ndarray], str]:
    """Archive files split into star and atmosphere by the separation model
    (``x``, ``mask``, ``stellar``, ``stellar_model``, ``transmission``, ``confidence``,
    ``scale``, ``berv``, ``flags``, ``reason``, see :mod:`ml.separate`; and the grid,
    ``grid_start``, ``grid_step``)."""
    body = json.dumps({"paths": list(paths)}).encode()
    payload, model_id = call("POST", "/separate", body, {"Content-Type": "application/json"})
    return _arrays(payload), model_id


def encode_upload(data: bytes, filename: str) -> tuple[dict[str, np.ndarray], str]:
    """A user's FITS file encoded (``x``, ``mask``, ``latent``, ... and ``object``)."""
    safe = "".join(c for c in filename if c.isprintable() and c.isascii())[:120] or "upload"
    payload, model_id = call("POST", "/encode-upload", data,
                             {"Content-Type": "application/fits", "X-Filename": safe})
    return _arrays(payload), model_id
