"""ml.serve (harps-model-server) on its own: a real server process on a temporary socket.

No DaCHS: the model directory is a temporary ``models/current`` with tiny
checkpoints made here; the DaCHS side (modelclient) talks to it as the
workers do.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support import REPO, S1D, SHARED, require, tiny_checkpoint

from harps_service import modelclient
from ml.inference import Predictor


class Server:
    """A harps-model-server process on ``socket``, serving ``model_dir``."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.socket = str(tmp / "model.sock")
        self.model_dir = tmp / "current"
        self.model_dir.mkdir(exist_ok=True)
        self.separation_dir = tmp / "separation"
        self.separation_dir.mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'resdir' / 'res'}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ml.serve", "--socket", self.socket, "--model-dir",
             str(self.model_dir), "--separation-dir", str(self.separation_dir),
             "--threads", "1", "--archive-root", str(SHARED), *args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.socket):
            assert self.proc.poll() is None, self.proc.stderr.read()
            assert time.monotonic() < deadline, "model server did not start"
            time.sleep(0.1)

    def call(self, method: str, path: str, body: bytes | None = None, **headers: str):
        return modelclient.call(method, path, body, headers, socket_path=self.socket)

    def info(self) -> dict:
        return json.loads(self.call("GET", "/info")[0])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.proc.stderr.close()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


def test_no_model_is_a_clear_503_and_a_published_one_is_picked_up(server, tmp_path):
    with pytest.raises(modelclient.ModelUnavailable, match="no model is published"):
        server.info()
    ckpt = tiny_checkpoint(tmp_path / "a.ckpt", seed=1)
    shutil.copy(ckpt, server.model_dir / "model.ckpt")
    time.sleep(1.2)
    first = server.info()
    assert first["model_id"] == Predictor.load(ckpt).model_id
    # a new model replaces the file (as harps-latents publish does): picked up, no restart
    other = tiny_checkpoint(tmp_path / "b.ckpt", seed=2)
    os.replace(shutil.copy(other, server.model_dir / "new.ckpt"), server.model_dir / "model.ckpt")
    time.sleep(1.2)
    second = server.info()
    assert second["model_id"] == Predictor.load(other).model_id != first["model_id"]
    assert second["pid"] == first["pid"]
    # an unreadable checkpoint: 503 naming the problem, and the server stays up
    (server.model_dir / "model.ckpt").write_bytes(b"not a checkpoint")
    time.sleep(1.2)
    with pytest.raises(modelclient.ModelUnavailable, match="cannot be loaded"):
        server.info()
    assert server.proc.poll() is None


@pytest.fixture
def loaded(server, tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "m.ckpt", seed=3)
    shutil.copy(ckpt, server.model_dir / "model.ckpt")
    return server, Predictor.load(ckpt)


def test_decode_reconstruct_and_upload_match_the_predictor(loaded):
    server, pred = loaded
    require(S1D.exists(), "real s1d file missing")
    z = np.random.default_rng(0).normal(size=(2, pred.latent_dim))
    flux, mid = _decode(server, z)
    assert mid == pred.model_id
    np.testing.assert_allclose(flux, pred.decode(z), rtol=1e-6, atol=1e-6)
    # reconstruction of a file = encode then decode(mu), as harps-encode computes it
    enc = _arrays(server.call("POST", "/reconstruct",
                              json.dumps({"paths": [str(S1D)]}).encode())[0])
    direct = pred.encode_files([S1D])
    np.testing.assert_allclose(enc["latent"], direct.latent, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(enc["recon"], pred.decode(direct.latent), rtol=1e-5, atol=1e-5)
    # the same file uploaded: the same latent vector
    up, _ = _upload(server, S1D.read_bytes(), S1D.name)
    np.testing.assert_allclose(up["latent"], direct.latent, rtol=1e-5, atol=1e-6)
    assert str(up["object"]) and str(up["layout"]) == "S1D"


def test_raw_decode_for_the_sliders(loaded):
    server, pred = loaded
    z = np.linspace(-1, 1, pred.latent_dim)
    text = ",".join(repr(float(v)) for v in z)
    payload, mid = server.call("GET", f"/decode?latent={text}")
    flux = np.frombuffer(payload, "<f4")
    assert mid == pred.model_id and flux.shape == (pred.npix,)
    np.testing.assert_allclose(flux, pred.decode(z)[0], rtol=1e-6, atol=1e-6)
    for bad, why in ((",".join(["1"] * 3), "has 16 numbers"), ("1,x", "latent"),
                     (",".join(["nan"] * 16), "non-finite"), (",".join(["99"] * 16), "limit")):
        with pytest.raises(modelclient.ModelRefused, match=why):
            server.call("GET", f"/decode?latent={bad}")


def test_bad_requests_are_refused_with_reasons(loaded):
    server, pred = loaded
    cases = [
        (("POST", "/decode", b"{"), "not JSON"),
        (("POST", "/decode", json.dumps({"latent": [[0.0] * 3]}).encode()), "has 16 numbers"),
        (("POST", "/decode", json.dumps({"latent": [[0.0] * 16] * 65}).encode()), "at most 64"),
        (("POST", "/reconstruct", json.dumps({"paths": ["/etc/passwd"]}).encode()),
         "only archive files"),
    ]
    for args, why in cases:
        with pytest.raises(modelclient.ModelRefused, match=why):
            server.call(*args)
    garbage = next((SHARED / "edge_cases").glob("*.fits"))
    with pytest.raises(modelclient.ModelRefused, match="garbage data"):
        _upload(server, garbage.read_bytes(), garbage.name)
    with pytest.raises(modelclient.ModelRefused, match="not a FITS file"):
        _upload(server, b"SIMPLE? no" * 100, "x.fits")
    assert server.proc.poll() is None


def test_generic_1d_fits_uploads(loaded, tmp_path):
    """A non-HARPS 1D spectrum: an image with a wavelength axis, and a WAVE/FLUX table."""
    from astropy.io import fits

    from harps_data import fitsio
    server, pred = loaded
    spec = fitsio.read_spectrum(S1D)
    image = fits.PrimaryHDU(spec.flux.astype(np.float32))
    image.header.update(CRVAL1=spec.wave[0] / 10.0, CDELT1=0.001, CRPIX1=1.0, CUNIT1="nm",
                        OBJECT="MY STAR")
    table = fits.BinTableHDU.from_columns([
        fits.Column("WAVELENGTH", "D", unit="Angstrom", array=spec.wave),
        fits.Column("FLUX", "E", array=spec.flux)])
    expected = pred.encode_files([S1D]).latent
    for name, hdul in (("image.fits", fits.HDUList([image])),
                       ("table.fits", fits.HDUList([fits.PrimaryHDU(), table]))):
        hdul.writeto(tmp_path / name)
        up, _ = _upload(server, (tmp_path / name).read_bytes(), name)
        assert str(up["layout"]) == "GENERIC"
        np.testing.assert_allclose(up["latent"], expected, rtol=1e-4, atol=1e-4)
    narrow = fits.BinTableHDU.from_columns([
        fits.Column("WAVE", "D", array=np.linspace(8000, 9000, 500)),
        fits.Column("FLUX", "E", array=np.ones(500))])
    fits.HDUList([fits.PrimaryHDU(), narrow]).writeto(tmp_path / "ir.fits")
    with pytest.raises(modelclient.ModelRefused, match="overlap the model range"):
        _upload(server, (tmp_path / "ir.fits").read_bytes(), "ir.fits")


def test_concurrent_upload_limit(tmp_path):
    """With --max-uploads 1, an upload in progress makes the next one a 429."""
    s = Server(tmp_path, "--max-uploads", "1")
    try:
        shutil.copy(tiny_checkpoint(tmp_path / "m.ckpt"), s.model_dir / "model.ckpt")
        body = S1D.read_bytes()
        slow = socket.socket(socket.AF_UNIX)
        slow.connect(s.socket)
        slow.sendall(b"POST /encode-upload HTTP/1.1\r\nHost: x\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body[:1000])
        time.sleep(0.5)
        with pytest.raises(modelclient.ModelBusy, match="try again"):
            _upload(s, body, "second.fits")
        slow.sendall(body[1000:])
        assert b"200 OK" in slow.recv(100)
        slow.close()
        up, _ = _upload(s, body, "third.fits")  # the slot is free again
        assert up["latent"].shape == (1, 16)
    finally:
        s.stop()


def _arrays(payload: bytes) -> dict[str, np.ndarray]:
    return modelclient._arrays(payload)


def _decode(server: Server, z: np.ndarray):
    payload, mid = server.call("POST", "/decode", json.dumps({"latent": z.tolist()}).encode())
    return _arrays(payload)["flux"], mid


def _upload(server: Server, data: bytes, name: str):
    payload, mid = server.call("POST", "/encode-upload", data, **{"X-Filename": name})
    return _arrays(payload), mid


def _separation_checkpoint(path: Path) -> Path:
    """A small untrained model with a telluric component (0.5 A grid), saved at ``path``."""
    import torch

    from ml import checkpoint
    from ml.model import ModelConfig, SpectrumVAE
    from ml.preprocess import Recipe
    config = ModelConfig(preset="custom", step=0.5, channels=(4, 8, 8, 16, 16, 32, 32, 32),
                         fc_hidden=(32,), latent_dim=4, telluric=2)
    torch.manual_seed(3)
    model = SpectrumVAE(config).eval()
    checkpoint.save(path, model_config=config.as_dict(), model_state=model.state_dict(),
                    recipe=Recipe(config.grid).describe(), step=0, epoch=0,
                    data={"file_list_sha256": "0" * 64})
    return path


def test_separate_serves_the_separation_model_on_its_own(server, tmp_path):
    require(S1D.exists(), "real s1d file missing")
    body = json.dumps({"paths": [str(S1D)]}).encode()
    with pytest.raises(modelclient.ModelUnavailable, match="separation model"):
        server.call("POST", "/separate", body)
    ckpt = _separation_checkpoint(tmp_path / "sep.ckpt")
    shutil.copy(ckpt, server.separation_dir / "model.ckpt")
    time.sleep(1.2)
    info = json.loads(server.call("GET", "/separation-info")[0])
    assert info["model_id"] == Predictor.load(ckpt).model_id
    payload, model_id = server.call("POST", "/separate", body)
    assert model_id == info["model_id"]
    with np.load(io.BytesIO(payload)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    n = info["grid_npix"]
    for key in ("x", "stellar", "stellar_model", "transmission", "confidence"):
        assert arrays[key].shape == (1, n), key
    assert arrays["flags"][0] == 0 and np.isfinite(arrays["berv"][0])
    ok = arrays["mask"][0]
    assert np.allclose(arrays["stellar"][0][ok] * arrays["transmission"][0][ok],
                       arrays["x"][0][ok], rtol=1e-5)
    # the latent model is another matter: still not published
    with pytest.raises(modelclient.ModelUnavailable, match="no model is published"):
        server.info()
    with pytest.raises(modelclient.ModelRefused, match="only archive files"):
        server.call("POST", "/separate", json.dumps({"paths": ["/etc/passwd"]}).encode())
