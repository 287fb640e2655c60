"""Training data: input files, star labels, the preprocessed cache, splits and sampling.

The cache holds every input spectrum preprocessed once (:mod:`ml.preprocess`)
so that epochs never re-read FITS files.  A cache directory contains

``flux.npy``
    ``(N, L)`` float16 or float32 memory-mapped array, normalised flux.
``mask.npy``
    ``(N, L)`` bool, pixels that enter the loss.
``index.csv``
    One row per spectrum: ``row, path, star, flags, reason, scale, method``.
``cache.json``
    The preprocessing recipe, the file list and its checksum, the dtype:
    a cache is reused only when all of these match.

Memory stays bounded: rows are written one at a time into the memory map
and read back one at a time by :class:`CachedSpectra`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from harps_data import fitsio
from ml.preprocess import Recipe, preprocess_file

CACHE_VERSION = 2  # 2: index.csv has the BERV of every spectrum
#: Column names accepted in a labels CSV, in order of preference.
LABEL_FILE_COLUMNS = ("file", "filename", "path", "local_path", "arcfile", "product_id")
LABEL_STAR_COLUMNS = ("star_id", "star", "star_name", "object")
FLOAT16_MAX = 6.0e4


class DataError(ValueError):
    """A problem with the input files, labels or cache, naming the culprit."""


def collect_inputs(items: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand inputs into a sorted, duplicate-free list of FITS files.

    Parameters
    ----------
    items : sequence of path-like
        FITS files, directories (searched recursively for ``*.fits``) or
        ``@list.txt`` files with one path per line (relative to the list).

    Raises
    ------
    DataError
        A path that does not exist, or no FITS file at all.
    """
    out: list[Path] = []
    for item in map(str, items):
        if item.startswith("@"):
            lst = Path(item[1:])
            if not lst.is_file():
                raise DataError(f"{lst}: file list not found")
            lines = [ln.strip() for ln in lst.read_text().splitlines()]
            out += collect_inputs([lst.parent / ln for ln in lines if ln and ln[0] != "#"])
        elif Path(item).is_dir():
            out += sorted(Path(item).rglob("*.fits"))
        elif Path(item).is_file():
            out.append(Path(item))
        else:
            raise DataError(f"{item}: no such file or directory")
    unique = sorted({p.resolve() for p in out})
    if not unique:
        raise DataError(f"no FITS files found in {', '.join(map(str, items)) or 'the inputs'}")
    return unique


def file_list_sha256(paths: Sequence[Path]) -> str:
    """Checksum of a file list: resolved paths and sizes, in order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p}\t{p.stat().st_size}\n".encode())
    return h.hexdigest()


def _label_keys(name: str) -> set[str]:
    base = Path(name).name
    stem = base[:-5] if base.endswith(".fits") else base
    return {base, stem, base.replace(":", "_"), stem.replace(":", "_")}


def read_labels(path: str | os.PathLike) -> dict[str, str]:
    """Star id per file name from a labels CSV (e.g. the one ``harps-synth`` writes).

    The file column is the first of ``LABEL_FILE_COLUMNS`` present, the star
    column the first of ``LABEL_STAR_COLUMNS``.  Keys are base names with
    and without ``.fits`` and with ``:`` replaced by ``_``.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = [c.strip().lower() for c in reader.fieldnames or []]
        fcol = next((c for c in LABEL_FILE_COLUMNS if c in cols), None)
        scol = next((c for c in LABEL_STAR_COLUMNS if c in cols), None)
        if fcol is None or scol is None:
            raise DataError(f"{path}: labels CSV needs a file column "
                            f"({', '.join(LABEL_FILE_COLUMNS)}) and a star column "
                            f"({', '.join(LABEL_STAR_COLUMNS)}); has {cols}")
        orig = dict(zip(cols, reader.fieldnames, strict=True))
        labels: dict[str, str] = {}
        for row in reader:
            for key in _label_keys(row[orig[fcol]].strip()):
                labels[key] = row[orig[scol]].strip()
    return labels


def file_key(name: str) -> str:
    """One canonical key of a file name, path or DID: base name, no ``.fits``, ``:`` as ``_``.

    ``ivo://x/~?harps/data/adp/2019/ADP.2019-01-01T01_02_03.004.fits``,
    ``2019/ADP.2019-01-01T01_02_03.004.fits`` and ``ADP.2019-01-01T01:02:03.004``
    all give ``ADP.2019-01-01T01_02_03.004``: one of :func:`_label_keys`.
    """
    base = Path(name).name
    return (base[:-5] if base.endswith(".fits") else base).replace(":", "_")


@dataclass(frozen=True)
class LabelTable:
    """A label catalogue: per-file star ids and numeric labels (:func:`read_label_table`)."""

    path: Path
    sha256: str  # of the catalogue file
    file_column: str  # catalogue column that names the file
    star_column: str
    names: tuple[str, ...]  # label names found (keys of the ``wanted`` mapping)
    columns: tuple[str, ...]  # the catalogue column of each name
    values: np.ndarray  # (n_rows, n_names) float64, NaN where a cell is empty
    stars: list[str]  # (n_rows,)
    keys: dict[str, int]  # every :func:`_label_keys` variant of a file -> row

    @property
    def match_rule(self) -> str:
        """How rows are matched, in words (recorded in provenance)."""
        return f"file name: pubdid basename = basename of {self.file_column}"

    def match(self, names: Sequence[str]) -> np.ndarray:
        """Catalogue row of each file name or DID, ``(N,)`` int64, -1 when unmatched.

        Base names are compared with and without ``.fits`` and with ``:`` read
        as ``_`` (:func:`_label_keys`, as :func:`read_labels` does).
        """
        return np.array([next((self.keys[k] for k in _label_keys(n) if k in self.keys), -1)
                         for n in names], dtype=np.int64)


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_label_table(path: str | os.PathLike,
                     wanted: dict[str, Sequence[str]]) -> LabelTable:
    """Read a label catalogue: file key, star id and the label columns in ``wanted``.

    Parameters
    ----------
    path : path-like
        CSV with a file column (first of :data:`LABEL_FILE_COLUMNS`), a star
        column (first of :data:`LABEL_STAR_COLUMNS`) and label columns.
    wanted : dict
        Label name -> accepted column names, lower case, in order of
        preference (e.g. ``{"teff": ("teff_k", "teff")}``).  Names without
        a column are left out of the table; empty or non-numeric cells are NaN.

    Raises
    ------
    DataError
        No file or star column, or none of the wanted label columns.
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as ex:
        raise DataError(f"{path}: cannot read the label catalogue ({ex.strerror})") from None
    reader = csv.DictReader(text.decode("utf-8", "replace").splitlines())
    orig = {c.strip().lower(): c for c in reader.fieldnames or []}
    fcol = next((c for c in LABEL_FILE_COLUMNS if c in orig), None)
    scol = next((c for c in LABEL_STAR_COLUMNS if c in orig), None)
    found = {n: next(c for c in cols if c in orig) for n, cols in wanted.items()
             if any(c in orig for c in cols)}
    if fcol is None or scol is None or not found:
        raise DataError(f"{path}: a label catalogue needs a file column "
                        f"({', '.join(LABEL_FILE_COLUMNS)}), a star column "
                        f"({', '.join(LABEL_STAR_COLUMNS)}) and label columns (any of "
                        f"{', '.join(c for cols in wanted.values() for c in cols)}); "
                        f"has {', '.join(orig) or 'no header'}")
    values, stars, keys = [], [], {}
    for i, row in enumerate(reader):
        values.append([_float_or_nan(row[orig[c]] or "") for c in found.values()])
        stars.append((row[orig[scol]] or "").strip())
        for key in _label_keys((row[orig[fcol]] or "").strip()):
            keys[key] = i
    return LabelTable(path, hashlib.sha256(text).hexdigest(), fcol, scol, tuple(found),
                      tuple(found.values()), np.array(values, float).reshape(-1, len(found)),
                      stars, keys)


def star_ids(paths: Sequence[Path], labels: dict[str, str] | None = None) -> list[str]:
    """Star of each file: from ``labels`` when it is there, else the OBJECT header.

    Archives mix labelled synthetic files with real ones, so a file missing
    from the labels falls back to its OBJECT, prefixed ``object:`` so that it
    can never collide with a label's star id.  Unreadable files get ``""``
    (they are flagged by preprocessing and never used).
    """
    out = []
    for p in paths:
        if labels is not None:
            star = next((labels[k] for k in _label_keys(p.name) if k in labels), None)
            if star is not None:
                out.append(star)
                continue
        try:
            obj = fitsio.read_meta(p).object.strip()
            out.append(f"object:{obj}" if labels is not None else obj)
        except fitsio.InvalidSpectrum:
            out.append("")
    return out


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CacheInfo:
    """What a cache holds (the contents of ``cache.json`` plus the index)."""

    directory: Path
    recipe: dict
    files: list[str]
    stars: list[str]
    flags: np.ndarray  # (N,) int
    scales: np.ndarray  # (N,) float, adu
    file_list_sha256: str
    dtype: str
    bervs: np.ndarray  # (N,) float, km/s (NaN: unknown, or a cache of version 1)

    @property
    def usable(self) -> np.ndarray:
        """Rows without flags, shape ``(n_usable,)`` int."""
        return np.flatnonzero(self.flags == 0)


def _cache_key(paths, recipe: Recipe, dtype: str) -> dict:
    return {"version": CACHE_VERSION, "recipe": recipe.describe(), "dtype": dtype,
            "file_list_sha256": file_list_sha256(paths),
            "mtimes_ns": [p.stat().st_mtime_ns for p in paths]}


def _preprocess_one(args):
    path, recipe, dtype = args
    out = preprocess_file(path, recipe)
    flux = np.clip(out.flux, -FLOAT16_MAX, FLOAT16_MAX) if dtype == "float16" else out.flux
    return flux.astype(dtype), out.mask, out.flags, out.reason, out.scale, out.method, out.berv


def build_cache(paths: Sequence[Path], stars: Sequence[str], recipe: Recipe,
                directory: str | os.PathLike, *, dtype: str = "float16", workers: int = 0,
                progress: bool = True) -> CacheInfo:
    """Preprocess ``paths`` into ``directory`` unless an identical cache is there.

    Parameters
    ----------
    paths, stars : sequence
        Input files and their star ids (same length).
    recipe : Recipe
    directory : path-like
    dtype : str
        ``"float16"`` (half the disk, flux clipped to +-6e4) or ``"float32"``.
    workers : int
        Processes reading files in parallel (0: in this process).
    progress : bool
        Show a tqdm bar.
    """
    if dtype not in ("float16", "float32"):
        raise DataError(f"--cache-dtype must be float16 or float32, got {dtype!r}")
    directory = Path(directory)
    key = _cache_key(paths, recipe, dtype)
    meta_path = directory / "cache.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old.get("key") == key:
            return open_cache(directory)
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _write_cache(tmp, paths, stars, recipe, dtype=dtype, workers=workers, progress=progress)
    (tmp / "cache.json").write_text(json.dumps({"key": key, "files": list(map(str, paths))},
                                               indent=1))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)
    return open_cache(directory)


def _write_cache(tmp: Path, paths: Sequence[Path], stars: Sequence[str], recipe: Recipe, *,
                 dtype: str, workers: int, progress: bool) -> None:
    """Preprocess every file into ``tmp``: flux.npy, mask.npy (N, L) and index.csv."""
    n, length = len(paths), recipe.grid.padded
    flux = np.lib.format.open_memmap(tmp / "flux.npy", "w+", dtype, (n, length))
    mask = np.lib.format.open_memmap(tmp / "mask.npy", "w+", bool, (n, length))
    jobs = ((p, recipe, dtype) for p in paths)
    from tqdm import tqdm
    with open(tmp / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "path", "star", "flags", "reason", "scale", "method", "berv"])
        if workers > 0:
            import multiprocessing as mp
            pool = mp.get_context("spawn").Pool(workers)
            results = pool.imap(_preprocess_one, jobs, chunksize=4)
        else:
            pool, results = None, map(_preprocess_one, jobs)
        try:
            bar = tqdm(results, total=n, desc="preprocess", unit="spec", disable=not progress)
            for i, (fx, mk, flags, reason, scale, method, berv) in enumerate(bar):
                flux[i], mask[i] = fx, mk
                w.writerow([i, str(paths[i]), stars[i], flags, reason, repr(scale), method,
                            repr(berv)])
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    flux.flush()
    mask.flush()


def open_cache(directory: str | os.PathLike) -> CacheInfo:
    """Read the description of an existing cache."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "cache.json").read_text())
        with open(directory / "index.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError) as ex:
        raise DataError(f"{directory}: not a usable preprocessing cache ({ex})") from None
    return CacheInfo(directory, meta["key"]["recipe"], meta["files"],
                     [r["star"] for r in rows], np.array([int(r["flags"]) for r in rows]),
                     np.array([float(r["scale"]) for r in rows]),
                     meta["key"]["file_list_sha256"], meta["key"]["dtype"],
                     np.array([float(r.get("berv", "nan")) for r in rows]))


class CachedSpectra(Dataset):
    """Rows of a cache as ``(flux (L,) float32, mask (L,) bool, row)``.

    The memory maps are opened lazily, so each DataLoader worker opens its own.
    """

    def __init__(self, directory: str | os.PathLike, rows: Sequence[int]) -> None:
        self.directory = Path(directory)
        self.rows = np.asarray(rows, dtype=np.int64)
        self._flux = self._mask = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        if self._flux is None:
            self._flux = np.load(self.directory / "flux.npy", mmap_mode="r")
            self._mask = np.load(self.directory / "mask.npy", mmap_mode="r")
        row = int(self.rows[i])
        return (torch.from_numpy(np.array(self._flux[row], dtype=np.float32)),
                torch.from_numpy(np.array(self._mask[row])), row)


# ---------------------------------------------------------------------------
# Split and sampling
# ---------------------------------------------------------------------------

def split_by_star(stars: Sequence[str], val_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split spectra into train and validation so that no star is in both.

    Stars are shuffled with ``seed`` and moved to validation until it holds
    at least ``val_fraction`` of the spectra; training keeps at least one star.

    Parameters
    ----------
    stars : sequence of str
        Star id of each spectrum.
    val_fraction : float
        In [0, 1).
    seed : int

    Returns
    -------
    train, val : numpy.ndarray
        Positions into ``stars``, sorted, int64.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    counts = Counter(stars)
    order = sorted(counts)
    np.random.default_rng(seed).shuffle(order)
    val_stars, n_val = set(), 0
    for star in order[:-1]:
        if n_val >= val_fraction * len(stars):
            break
        val_stars.add(star)
        n_val += counts[star]
    is_val = np.array([s in val_stars for s in stars], dtype=bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def origin_weights(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """Sampling weights that draw real and synthetic spectra equally often.

    Parameters
    ----------
    paths : sequence of path-like
        Training files; synthetic ones carry ``harps.SYNTHETIC_KEYWORD``.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float64 summing to 1; uniform when all files are of one kind.
        The demo's separation model uses it: 52 real spectra among 1,200
        synthetic ones must teach the templates the real atmosphere.
    """
    synthetic = np.array([_is_synthetic(p) for p in paths], bool)
    n_syn, n_real = int(synthetic.sum()), int((~synthetic).sum())
    if n_syn == 0 or n_real == 0:
        return np.full(len(paths), 1.0 / max(len(paths), 1))
    return np.where(synthetic, 0.5 / n_syn, 0.5 / n_real)


def _is_synthetic(path: str | os.PathLike) -> bool:
    try:
        return fitsio.read_meta(path).synthetic
    except fitsio.InvalidSpectrum:
        return False


def star_weights(stars: Sequence[str]) -> np.ndarray:
    """Sampling weight ``1 / (spectra of that star)`` per spectrum, shape ``(N,)``.

    Every star then gets the same expected number of draws however often
    it was observed.
    """
    counts = Counter(stars)
    return np.array([1.0 / counts[s] for s in stars])


class WeightedStarSampler(Sampler[int]):
    """Weighted sampling with replacement, consistent across DDP processes.

    Every process draws the same ``num_samples`` (rounded up to a multiple
    of ``world_size``) indices from a generator seeded by ``(seed, epoch)``
    and keeps every ``world_size``-th one from ``rank``: the union over
    processes is one weighted sample, with no coordination needed.

    Parameters
    ----------
    weights : array-like
        Shape ``(N,)``, non-negative (:func:`star_weights`).
    num_samples : int
        Draws per epoch over all processes.
    seed : int
    rank, world_size : int
    """

    def __init__(self, weights, num_samples: int, *, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        self.weights = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
        self.per_rank = math.ceil(num_samples / world_size)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Draw the sample of ``epoch``; drop its first ``skip`` indices (resuming)."""
        self.epoch, self.skip = epoch, skip

    def _draw(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        total = self.per_rank * self.world_size
        return torch.multinomial(self.weights, total, replacement=True, generator=g)

    def __iter__(self) -> Iterator[int]:
        mine = self._draw()[self.rank::self.world_size]
        return iter(mine[self.skip:].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.skip
