"""The model server: the published model, live, for the DaCHS workers: ``harps-model-server``.

::

    harps-model-server --socket /run/harps-vo/model.sock   # (etc/dachsctl starts it)

Why a process of its own: torch and the model (about 200 MiB resident with
torch) are loaded once, not in every DaCHS worker; DaCHS keeps running on
Debian's Python without torch; a model that misbehaves cannot take a DaCHS
worker with it; and CPU-heavy work (encoding an upload) has its own,
stated limits.  The DaCHS side is :mod:`harps_service.modelclient`.

The model is the one ``harps-latents publish`` put in ``models/current``
(:func:`harps_site.current_model_dir`), loaded by
:class:`ml.inference.Predictor` exactly as ``harps-encode`` loads it.  The
checkpoint's identity (inode, size, mtime) is checked before each request
(at most once a second), so a newly published model is picked up without
a restart.

HTTP over a Unix socket (only local processes can reach it); answers are
JSON (``/info``, errors) or ``np.savez`` archives (arrays):

``GET /info``
    The model (:meth:`ml.inference.Predictor.describe`) and the server
    (pid, RSS in MiB, requests served, limits).
``POST /decode``
    JSON ``{"latent": [[...D numbers], ...]}`` (at most :data:`MAX_DECODE`
    vectors) -> ``flux`` ``(B, N)``.
``GET /decode?latent=v1,...,vD``
    One spectrum as raw little-endian float32 (the Sliders page's path;
    the front door passes ``/harps/model/decode`` and ``/harps/model/info``
    here), grid in headers ``X-Grid-Start``, ``X-Grid-Step``, ``X-Grid-Npix``.
``POST /reconstruct``
    JSON ``{"paths": [...]}``, archive files under DaCHS's inputs directory
    (``--archive-root``; at most :data:`MAX_FILES`) -> :meth:`ml.inference.Encoded.arrays`.
``POST /separate``
    JSON ``{"paths": [...]}`` as for ``/reconstruct``, with the separation
    model that ``harps-latents separation`` put in ``models/separation``
    (``--separation-dir``) -> :meth:`ml.separate.Separated.arrays` plus the
    grid (``grid_start``, ``grid_step``, Angstrom); ``GET /separation-info``
    describes that model.
``POST /encode-upload``
    The bytes of a user's FITS file (at most :data:`MAX_UPLOAD_BYTES`; header
    ``X-Filename`` names it in messages), read by
    :func:`harps_data.upload.read_upload` -> :meth:`Encoded.arrays` plus
    ``object`` and ``layout``.  At most ``--max-uploads`` (default
    :data:`MAX_CONCURRENT_UPLOADS`) run at once; more get 429.

Errors: 400 (bad request, the message says what), 404, 413, 422 (a spectrum
that cannot be used, with the reason), 429 (too many uploads at once), 503
(no model published).  Every answer carries ``X-Model-Id``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socketserver
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import torch

import harps_site
from harps_data.fitsheader import InvalidSpectrum
from harps_data.upload import read_upload
from ml.checkpoint import CheckpointError
from ml.inference import Predictor

#: Latent vectors decoded in one request.
MAX_DECODE = 64
#: Archive files reconstructed in one request.
MAX_FILES = 101
#: Largest upload, bytes (HARPS s1d files are about 1.2 MB, ADP files 5 MB).
MAX_UPLOAD_BYTES = 16 * 2**20
#: Uploads encoded at the same time; the rest are refused with 429.
MAX_CONCURRENT_UPLOADS = 2
#: Largest JSON request body, bytes.
MAX_JSON_BYTES = 2**20
#: Archive files kept encoded (a full-grid file takes ~4 MiB).
CACHE_FILES = 32
#: Grids longer than this get several torch threads per request.
LARGE_GRID = 50_000
#: Seconds between checks of the published checkpoint.
RELOAD_CHECK_S = 1.0
#: The 503 message of ``/separate`` while no separation model is published.
SEPARATION_MISSING = ("no stellar/telluric separation model is published (run harps-latents "
                      "separation, or make demo)")


class Refused(Exception):
    """A request the server answers with an error status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def rss_mib() -> float:
    """This process's resident memory, MiB (from /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class ModelHolder:
    """The published model, reloaded when ``models/current/model.ckpt`` changes.

    Parameters
    ----------
    model_dir : pathlib.Path
        Where ``model.ckpt`` is published.
    missing : str
        The 503 message while none is there.
    """

    def __init__(self, model_dir: Path,
                 missing: str = "no model is published yet (run harps-latents build, or "
                 "make demo)") -> None:
        self.model_dir, self.missing = model_dir, missing
        self.lock = threading.Lock()
        self.predictor: Predictor | None = None
        self.identity: tuple | None = None
        self.checked = 0.0
        self.error = ""

    def _stat(self) -> tuple | None:
        try:
            st = (self.model_dir / "model.ckpt").stat()
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def get(self) -> Predictor:
        """The current model; Refused(503) when none is published or it cannot be read."""
        with self.lock:
            now = time.monotonic()
            if now - self.checked >= RELOAD_CHECK_S or self.predictor is None:
                self.checked = now
                ident = self._stat()
                if ident is None:
                    self.predictor, self.identity = None, None
                    self.error = self.missing
                elif ident != self.identity:
                    try:
                        self.predictor = Predictor.load(self.model_dir / "model.ckpt")
                        self.error = ""
                    except CheckpointError as ex:
                        self.predictor = None
                        self.error = f"the published model cannot be loaded: {ex.args[0]}"
                    self.identity = ident
            if self.predictor is None:
                raise Refused(503, self.error)
            return self.predictor


class FileCache:
    """The last :data:`CACHE_FILES` archive files as encoded, by path and file identity.

    A slider session decodes the same spectrum over and over, and a retrieval
    page overlays the same neighbours; reading and resampling a full-grid
    file costs more than decoding it.
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.items: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()

    @staticmethod
    def _key(predictor: Predictor, path: str) -> tuple:
        try:
            st = os.stat(path)
        except OSError:
            return (predictor.model_id, path, None)
        return (predictor.model_id, path, st.st_ino, st.st_size, st.st_mtime_ns)

    def encode(self, predictor: Predictor, paths: list[str]) -> dict[str, np.ndarray]:
        """:meth:`Encoded.arrays` of ``paths`` (one row each, in order)."""
        keys = [self._key(predictor, p) for p in paths]
        with self.lock:
            found = {k: self.items[k] for k in keys if k in self.items}
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            arrays = predictor.encode_files([k[1] for k in missing]).arrays()
            for i, k in enumerate(missing):
                found[k] = {name: a[i:i + 1] for name, a in arrays.items()}
            with self.lock:
                for k in missing:
                    if k[2] is not None:
                        self.items[k] = found[k]
                while len(self.items) > self.size:
                    self.items.popitem(last=False)
        if not keys:
            return predictor.encode_files([]).arrays()
        return {name: np.concatenate([found[k][name] for k in keys])
                for name in found[keys[0]]}


class Handler(BaseHTTPRequestHandler):
    """One request (see the module docstring for the routes)."""

    server: ModelServer
    protocol_version = "HTTP/1.1"
    server_version, sys_version = "harps-model-server", ""

    def address_string(self) -> str:  # Unix sockets have no client address
        return "local"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, ctype: str, model_id: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if model_id:
            self.send_header("X-Model-Id", model_id)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: dict, model_id: str = "") -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", model_id)

    def _body(self, limit: int) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if n > limit:
            raise Refused(413, f"request body of {n} bytes; at most {limit} are accepted")
        return self.rfile.read(n)

    def _json_body(self) -> dict:
        try:
            obj = json.loads(self._body(MAX_JSON_BYTES))
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "request body is not JSON") from None
        if not isinstance(obj, dict):
            raise Refused(400, "request body must be a JSON object")
        return obj

    def _arrays(self, arrays: dict[str, np.ndarray], model_id: str) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        self._send(200, buf.getvalue(), "application/x-npz", model_id)

    def _dispatch(self, method: str) -> None:
        self.server.count += 1
        model_id = ""
        try:
            main, sep = self.server.holder, self.server.separation
            routes = {("GET", "/info"): (self.info, main),
                      ("POST", "/decode"): (self.decode, main),
                      ("GET", "/decode"): (self.decode_raw, main),
                      ("POST", "/reconstruct"): (self.reconstruct, main),
                      ("POST", "/encode-upload"): (self.encode_upload, main),
                      ("GET", "/separation-info"): (self.separation_info, sep),
                      ("POST", "/separate"): (self.separate, sep)}
            route, holder = routes.get((method, self.path.split("?")[0]), (None, None))
            if route is None:
                raise Refused(404, f"no route {method} {self.path}")
            predictor = holder.get()
            model_id = predictor.model_id
            route(predictor)
        except Refused as ex:
            self._json(ex.status, {"error": ex.message}, model_id)
        except Exception as ex:  # noqa: BLE001 - answered, logged, the server stays up
            self.log_error("internal error: %r", ex)
            self._json(500, {"error": f"model server error ({type(ex).__name__})"}, model_id)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    # -- routes -------------------------------------------------------------

    def info(self, predictor: Predictor) -> None:
        s = self.server
        self._json(200, {**predictor.describe(), "pid": os.getpid(), "rss_mib": rss_mib(),
                         "requests": s.count, "uploads_in_progress": s.uploads,
                         "max_concurrent_uploads": s.max_uploads,
                         "max_upload_bytes": MAX_UPLOAD_BYTES, "max_decode": MAX_DECODE,
                         "compute_threads": s.pool._max_workers}, predictor.model_id)

    def decode(self, predictor: Predictor) -> None:
        z = self._json_body().get("latent")
        if not isinstance(z, list) or not z:
            raise Refused(400, "give 'latent': a list of latent vectors")
        if len(z) > MAX_DECODE:
            raise Refused(400, f"{len(z)} vectors; at most {MAX_DECODE} per request")
        try:
            flux = self.server.compute(predictor.decode, predictor,
                                       np.array(z, dtype=np.float64))
        except (ValueError, TypeError) as ex:
            raise Refused(400, str(ex)) from None
        self._arrays({"flux": flux}, predictor.model_id)

    def decode_raw(self, predictor: Predictor) -> None:
        """``GET /decode?latent=v1,...,vD``: one spectrum as raw little-endian float32.

        The Sliders page's path (nginx passes ``/harps/model/decode`` here):
        no DaCHS, no JSON, 4 bytes a sample.  Headers ``X-Grid-Start``,
        ``X-Grid-Step`` (Angstrom) and ``X-Grid-Npix`` give the wavelengths.
        """
        from urllib.parse import parse_qs, urlsplit
        query = parse_qs(urlsplit(self.path).query)
        text = (query.get("latent") or [""])[0]
        if not text or len(text) > 4096:
            raise Refused(400, "give latent=v1,...,vD (the full latent vector, at most 4096 "
                          "characters)")
        try:
            z = np.array([float(v) for v in text.replace(",", " ").split()], np.float64)
            flux = self.server.compute(predictor.decode, predictor, z)[0]
        except ValueError as ex:
            raise Refused(400, f"latent: {ex}") from None
        d = predictor.describe()
        self.send_response(200)
        for key, value in (("Content-Type", "application/octet-stream"),
                           ("Content-Length", str(flux.nbytes)),
                           ("X-Model-Id", predictor.model_id),
                           ("X-Grid-Start", repr(d["grid_start"])),
                           ("X-Grid-Step", repr(d["grid_step"])),
                           ("X-Grid-Npix", str(d["grid_npix"])),
                           ("Cache-Control", "no-store")):
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(flux.astype("<f4").tobytes())

    def reconstruct(self, predictor: Predictor) -> None:
        paths = self._archive_paths()
        self._arrays(self.server.compute(self.server.cache.encode, predictor, predictor, paths),
                     predictor.model_id)

    def _archive_paths(self) -> list[str]:
        """``paths`` of the JSON body: archive files only, at most :data:`MAX_FILES`."""
        paths = self._json_body().get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise Refused(400, "give 'paths': a list of archive file paths")
        if len(paths) > MAX_FILES:
            raise Refused(400, f"{len(paths)} files; at most {MAX_FILES} per request")
        root = self.server.archive_root
        for p in paths:
            if not Path(p).resolve().is_relative_to(root):
                raise Refused(400, "only archive files can be reconstructed or separated")
        return paths

    def separation_info(self, predictor: Predictor) -> None:
        self._json(200, predictor.describe(), predictor.model_id)

    def separate(self, predictor: Predictor) -> None:
        """``POST /separate``: :meth:`ml.separate.Separated.arrays` of archive files."""
        from ml.separate import separate_files
        paths = self._archive_paths()
        sep = self.server.compute(separate_files, predictor, predictor, paths)
        d = predictor.describe()
        self._arrays({**sep.arrays(), "grid_start": np.array(d["grid_start"]),
                      "grid_step": np.array(d["grid_step"])}, predictor.model_id)

    def encode_upload(self, predictor: Predictor) -> None:
        name = os.path.basename(self.headers.get("X-Filename") or "upload.fits")[:120]
        s = self.server
        # the slot is taken before the body is read: the DaCHS workers send
        # bodies that nginx and DaCHS already hold in full, so this counts
        # uploads being encoded
        with s.upload_lock:
            busy = s.uploads >= s.max_uploads
            if not busy:
                s.uploads += 1
        if busy:
            self._body(MAX_UPLOAD_BYTES)  # read it, so that the client hears the answer
            raise Refused(429, f"{s.uploads} uploads are being encoded, the most this "
                          "service does at once; try again in a few seconds")
        try:
            body = self._body(MAX_UPLOAD_BYTES)
            with tempfile.NamedTemporaryFile(suffix=".fits") as tmp:
                tmp.write(body)
                tmp.flush()
                try:
                    spec = read_upload(tmp.name, name)
                except InvalidSpectrum as ex:
                    raise Refused(422, str(ex)) from None
            enc = s.compute(predictor.encode_spectrum, predictor, spec)
        finally:
            with s.upload_lock:
                s.uploads -= 1
        if enc.flags[0]:
            raise Refused(422, f"{name}: cannot be encoded: {enc.reason[0]}")
        self._arrays({**enc.arrays(), "object": np.array(spec.meta.object),
                      "layout": np.array(spec.meta.layout)}, predictor.model_id)


class ModelServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Threaded HTTP server on a Unix socket holding one :class:`ModelHolder`."""

    daemon_threads = True

    def compute(self, fn: Any, predictor: Predictor, *args: Any) -> Any:
        """``fn(*args)`` on the compute threads (at most ``compute_threads`` at once).

        One torch thread for small models (no OpenMP team to wake); full-grid
        models (more than :data:`LARGE_GRID` samples) use every core, where
        intra-op parallelism pays (full preset decode on 2 cores: 64 ms with
        2 threads, 94 ms with 1).
        """
        threads = 1 if predictor.npix <= LARGE_GRID else (os.cpu_count() or 1)

        def run() -> Any:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            return fn(*args)
        return self.pool.submit(run).result()

    def __init__(self, socket_path: str, holder: ModelHolder, verbose: bool = False,
                 max_uploads: int = MAX_CONCURRENT_UPLOADS,
                 archive_root: str = harps_site.INPUTS_DIR, compute_threads: int = 2,
                 separation: ModelHolder | None = None) -> None:
        self.holder, self.verbose, self.max_uploads = holder, verbose, max_uploads
        self.separation = separation or ModelHolder(
            Path(os.devnull) / "none", "no separation model is published")
        self.archive_root = Path(archive_root).resolve()
        self.count, self.uploads = 0, 0
        # torch runs on a few long-lived threads of one intra-op thread each:
        # requests run side by side instead of each waking a team of OpenMP
        # threads (measured: a 0.6 ms decode took 2.5 ms when handed to a
        # thread with 2 intra-op threads, 0.75 ms with 1)
        self.pool = ThreadPoolExecutor(max_workers=compute_threads,
                                       initializer=torch.set_num_threads, initargs=(1,))
        self.cache = FileCache(CACHE_FILES)
        self.upload_lock = threading.Lock()
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        super().__init__(socket_path, Handler)
        os.chmod(socket_path, 0o660)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harps-model-server", description=__doc__.split("\n")[0])
    p.add_argument("--socket", default=harps_site.MODEL_SOCKET,
                   help=f"Unix socket to listen on (default {harps_site.MODEL_SOCKET})")
    p.add_argument("--model-dir", default=str(harps_site.current_model_dir()),
                   help="directory of the published model (default: models/current of the "
                   "resource directory)")
    p.add_argument("--separation-dir", default=str(harps_site.separation_model_dir()),
                   help="directory of the published stellar/telluric separation model "
                   "(default: models/separation of the resource directory)")
    p.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                   help="compute threads: requests computed at the same time (one torch "
                   "thread each)")
    p.add_argument("--max-uploads", type=int, default=MAX_CONCURRENT_UPLOADS,
                   help="uploads encoded at the same time; more get HTTP 429 "
                   f"(default {MAX_CONCURRENT_UPLOADS})")
    p.add_argument("--archive-root", default=harps_site.INPUTS_DIR,
                   help="only files below this can be reconstructed (default: DaCHS's "
                   f"inputs, {harps_site.INPUTS_DIR})")
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``harps-model-server``; serves until killed."""
    args = _parser().parse_args(argv)
    holder = ModelHolder(Path(args.model_dir))
    try:
        holder.get()
    except Refused as ex:  # serve anyway: requests get 503 until a model is published
        print(f"harps-model-server: {ex.message}", file=sys.stderr)
    separation = ModelHolder(Path(args.separation_dir), SEPARATION_MISSING)
    server = ModelServer(args.socket, holder, args.verbose, args.max_uploads,
                         args.archive_root, args.threads, separation)
    print(f"harps-model-server: listening on {args.socket} (pid {os.getpid()}, "
          f"{rss_mib():.0f} MiB)", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
