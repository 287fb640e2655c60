"""Write a synthetic HARPS archive: files by observation year, labels, run record.

Streaming: each worker plans, renders and writes one spectrum at a time
and hands back only its label rows; the parent writes them in index order.
Memory stays bounded at any ``n_spectra`` and the output (files, labels)
is identical for any number of workers.

Layout::

    OUT/2006/ADP.2014-09-16T11_04_45.123.fits     (--format adp|both)
    OUT/2006/HARPS.2006-07-05T03_52_40.071_s1d_A.fits  (--format s1d|both)
    OUT/2006/ADP.2014-09-16T11_04_45.123.truth.npz (--truth: one per FITS file,
                                                   see harps_synth.truth)
    OUT/labels.csv                                (see harps_synth.labels)
    OUT/synth_run.json                            (settings, counts, versions)
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import ml
from harps_data import harps
from harps_synth import labels, lines, products, spectrum, truth
from harps_synth.config import SynthConfig
from harps_synth.observations import Observation, planner_for


@dataclasses.dataclass(frozen=True)
class ArchiveSummary:
    """What :func:`write_archive` produced.

    Attributes
    ----------
    out_dir, labels_path : pathlib.Path
    n_spectra, n_files, n_bytes : int
        FITS files only (``--truth`` sidecars are not counted).
    seconds : float
        Wall-clock time of the run.
    """

    out_dir: Path
    labels_path: Path
    n_spectra: int
    n_files: int
    n_bytes: int
    seconds: float

    @property
    def files_per_second(self) -> float:
        return self.n_files / self.seconds if self.seconds > 0 else float("inf")


class _Maker:
    """Per-process state: catalogue, planner and wavelength grid of a run."""

    def __init__(self, config: SynthConfig, out_dir: str) -> None:
        self.config = config
        self.out_dir = out_dir
        self.planner = planner_for(config)
        self.wave = harps.archive_grid(config.step)

    def _write(self, o: Observation, name: str, data: bytes,
               sidecar: bytes | None = None) -> str:
        """Write one FITS file (and its truth sidecar) atomically; return its relative path."""
        rel = os.path.join(o.date_obs[:4], name)
        path = os.path.join(self.out_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if sidecar is not None:
            _atomic(str(truth.truth_path(path)), sidecar)
        _atomic(path, data)
        return rel

    def make(self, i: int) -> tuple[list[tuple], int]:
        """Plan, render and write spectrum ``i``; return its label rows and bytes written."""
        o = self.planner.plan(i)
        flux, err = spectrum.render(o, self.wave)
        sidecar = (truth.truth_bytes(truth.truth_arrays(o, self.wave))
                   if self.config.truth else None)
        rows, written = [], 0
        if self.config.fmt in ("adp", "both"):
            data = products.adp_bytes(o, self.wave, flux, err, self.config.err)
            rel = self._write(o, products.adp_name(o), data, sidecar)
            rows.append(labels.label_row(o, o.arcfile[:-5], rel, "ADP"))
            written += len(data)
        if self.config.fmt in ("s1d", "both"):
            data = products.s1d_bytes(o, self.wave, flux, err)
            rel = self._write(o, products.s1d_name(o), data, sidecar)
            rows.append(labels.label_row(o, f"HARPS.{o.date_obs}_s1d_A", rel, "S1D"))
            written += len(data)
        return rows, written


def _atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a ``.part`` file, so no reader sees half a file."""
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


_MAKER: _Maker | None = None


def _init_worker(config: SynthConfig, out_dir: str) -> None:
    global _MAKER
    _MAKER = _Maker(config, out_dir)


def _make(i: int) -> tuple[list[tuple], int]:
    assert _MAKER is not None, "worker not initialised"
    return _MAKER.make(i)


def _results(config: SynthConfig, out_dir: str):
    """Label rows and byte counts of every spectrum, in index order."""
    if config.workers == 1:
        maker = _Maker(config, out_dir)
        return (maker.make(i) for i in range(config.n_spectra)), None
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(config.workers, initializer=_init_worker, initargs=(config, out_dir))
    chunk = max(1, min(64, config.n_spectra // (config.workers * 8)))
    return pool.imap(_make, range(config.n_spectra), chunksize=chunk), pool


def _run_record(config: SynthConfig, summary: ArchiveSummary) -> dict:
    return {"generator": "harps_synth", "version": ml.__version__, "config": config.as_dict(),
            "line_list_seed": lines.LINE_LIST_SEED, "numpy": np.__version__,
            "labels": os.path.relpath(summary.labels_path, summary.out_dir),
            "n_spectra": summary.n_spectra, "n_files": summary.n_files,
            "n_bytes": summary.n_bytes, "seconds": round(summary.seconds, 3)}


def write_archive_config(out_dir: str | os.PathLike, config: SynthConfig, *,
                         labels_path: str | os.PathLike | None = None,
                         progress: bool = False) -> ArchiveSummary:
    """Write the archive described by ``config`` (see :func:`write_archive`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels_file = Path(labels_path) if labels_path is not None else out / "labels.csv"
    labels_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results, pool = _results(config, str(out))
    n_files = n_bytes = 0
    try:
        with open(labels_file, "w", newline="", encoding="ascii") as stream:
            writer = labels.LabelWriter(stream)
            bar = tqdm(results, total=config.n_spectra, unit="spectrum", disable=not progress,
                       dynamic_ncols=True, desc="harps-synth")
            for rows, written in bar:
                writer.write(rows)
                n_files += len(rows)
                n_bytes += written
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    summary = ArchiveSummary(out, labels_file, config.n_spectra, n_files, n_bytes,
                             time.perf_counter() - start)
    (out / "synth_run.json").write_text(json.dumps(_run_record(config, summary), indent=2) + "\n")
    return summary


def write_archive(out_dir: str | os.PathLike, n_spectra: int = 100, *, seed: int = 1,
                  n_stars: int | None = None, step: float = harps.WAVE_STEP, fmt: str = "adp",
                  err: str = "nan", today=None, proprietary_fraction: float = 0.1,
                  workers: int = 1, truth: bool = False,
                  labels_path: str | os.PathLike | None = None,
                  progress: bool = False) -> ArchiveSummary:
    """Generate a labelled synthetic HARPS archive.

    Parameters
    ----------
    out_dir : str or path-like
        Archive directory; files go to ``out_dir/<observation year>/``.
    n_spectra : int
        Number of observations.
    seed, n_stars, step, fmt, err, today, proprietary_fraction, workers, truth
        See :class:`harps_synth.config.SynthConfig` (``today=None``: today's date).
    labels_path : str or path-like, optional
        Label CSV (default ``out_dir/labels.csv``).
    progress : bool
        Show a tqdm progress bar with ETA.

    Returns
    -------
    ArchiveSummary

    Raises
    ------
    harps_synth.config.ConfigError
        An invalid setting (the message names the option).
    """
    kwargs = {} if today is None else {"today": today}
    config = SynthConfig(n_spectra=n_spectra, seed=seed, n_stars=n_stars, step=step, fmt=fmt,
                         err=err, proprietary_fraction=proprietary_fraction, workers=workers,
                         truth=truth, **kwargs)
    return write_archive_config(out_dir, config, labels_path=labels_path, progress=progress)
