"""Publish the stellar / telluric separation model: ``harps-latents separation``.

::

    harps-latents separation --checkpoint ml/checkpoints/separation.ckpt
    harps-latents update      # also separates public spectra that have no row yet

``publish`` installs a separation checkpoint (``harps-train --preset
telluric``; the project ships one, see ``ml/checkpoints/README.md``) in
``models/separation`` of the resource directory
(:func:`harps_site.separation_model_dir`), with its validation numbers when
given, runs ``harps-separate`` on every public spectrum and imports the
per-spectrum figures into ``harps.separation``.  The model server picks the
checkpoint up without a restart and serves the products (``stellar`` and
``telluric`` DataLink services); the model card is
``models/separation/card.html`` (``/harps/q/model/static/separation/card.html``).
The ML steps run as subprocesses of the project venv: the service never
imports torch.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path

import harps_site
from harps_service import mlsteps, separationcard
from harps_service.mlsteps import LatentsError, own

#: The validation numbers of a model (``bench/telluric.py --out``), shown on the model card.
VALIDATION = "validation.json"


def _stamp() -> str:
    return f"{datetime.datetime.utcnow():%Y%m%dT%H%M%S%f}"


def separate(ckpt: Path, files: list[str], out_dir: Path) -> Path:
    """``harps-separate`` the files; returns the per-spectrum CSV."""
    out_dir.mkdir(parents=True, exist_ok=True)
    listing = out_dir / "inputs.txt"
    listing.write_text("\n".join(files) + "\n")
    mlsteps.run([str(mlsteps.BIN / "harps-separate"), str(ckpt), f"@{listing}", "--out",
                 str(out_dir), "--inputs-root", harps_site.INPUTS_DIR, "--did-prefix",
                 mlsteps.did_prefix(), "--quiet"], "separating")
    (table,) = out_dir.glob("separation_*.csv")
    return table


def model_id_of(table: Path) -> str:
    """The model id in a ``harps-separate`` CSV's name (``separation_<model id>.csv``)."""
    return table.stem.removeprefix("separation_")


def publish(rd_id: str, ckpt: Path, validation: Path | None = None) -> str:
    """Install ``ckpt`` as the separation model and separate every public spectrum.

    The files of a previous separation model are replaced only after the
    new model has separated the archive, so a failure leaves the published
    one in place.  Returns the model id.
    """
    dest = harps_site.separation_model_dir(rd_id)
    files = mlsteps.public_files(rd_id)
    with tempfile.TemporaryDirectory() as tmp:
        table = separate(ckpt, files, Path(tmp) / "run")
        model_id = model_id_of(table)
        staged = dest.with_name(f".separation-{os.getpid()}")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        shutil.copyfile(ckpt, staged / "model.ckpt")
        shutil.copyfile(table, staged / f"separation-{_stamp()}.csv")
        val = None
        if validation is not None:
            val = json.loads(validation.read_text(encoding="utf-8"))
            (staged / VALIDATION).write_text(json.dumps(val, indent=1), encoding="utf-8")
        info = json.loads(table.with_suffix(".json").read_text(encoding="utf-8"))
        info.update(model_id=model_id, source=str(ckpt), n_spectra=len(files),
                    published=datetime.datetime.utcnow().replace(microsecond=0).isoformat())
        (staged / "model.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        (staged / "card.html").write_text(separationcard.render(info, rd_id, val),
                                          encoding="utf-8")
        own(staged)
        old = dest.with_name(f".separation-old-{os.getpid()}")
        if dest.exists():
            os.replace(dest, old)
        os.replace(staged, dest)
        shutil.rmtree(old, ignore_errors=True)
    mlsteps.dachs("imp", rd_id, "import_separation")
    return model_id


def update(rd_id: str) -> int:
    """Separate the public spectra that have no row yet (after an ingest or a release)."""
    dest = harps_site.separation_model_dir(rd_id)
    if not (dest / "model.ckpt").exists():
        return 0
    files = mlsteps.public_files(rd_id, missing_from="separation")
    if not files:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        table = separate(dest / "model.ckpt", files, Path(tmp))
        out = dest / f"separation-{_stamp()}.csv"
        shutil.copyfile(table, out)
    own(out)
    try:
        mlsteps.dachs("imp", rd_id, "import_separation")
    except LatentsError:
        out.unlink()
        raise
    return len(files)
