"""Batch manifests: the metadata harps-ingest parsed, handed to DaCHS.

``harps-ingest`` validates files in parallel processes, which parses every
header.  Instead of having DaCHS parse them again, it writes one manifest
per run (JSON lines: the accref and the :class:`harps_data.fitsio.SpectrumMeta`
fields of each new file) into the resource's ``staging/`` directory and
imports it through the RD's ``import_batch`` data element, whose grammar is
:class:`RowIterator` below.  Rows come out of the same
:func:`harps_service.rows.archive_row` as in a rebuild from the files.

The manifest is also the run's journal: it is written *before* any file is
placed in the archive tree and removed only after the import committed or
the placed files were removed again.  A manifest found in ``staging/`` by a
run holding the ingest lock (:func:`locked`) therefore belongs to a run that
was killed, and names every file that run may have left behind
(:func:`accrefs`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from harps_data import fitsio
from harps_service.rows import archive_row

try:
    from gavo.grammars.customgrammar import CustomRowIterator
except ImportError:  # pragma: no cover - outside DaCHS
    CustomRowIterator = object


def write(entries: Iterable[tuple[str, fitsio.SpectrumMeta]], f: IO[str]) -> int:
    """Write (accref, metadata) pairs as JSON lines; return how many."""
    n = 0
    for accref, meta in entries:
        f.write(json.dumps({"accref": accref, "meta": meta.as_dict()}) + "\n")
        n += 1
    return n


#: The lock file in ``staging/`` that serialises ingest runs of one resource.
LOCK_NAME = ".ingest.lock"


@contextlib.contextmanager
def locked(staging: str, on_wait: Callable[[], None] | None = None) -> Iterator[int]:
    """Hold the ingest lock of a resource's ``staging/`` directory.

    Parameters
    ----------
    staging : str
        The resource's staging directory (created if missing).
    on_wait : callable, optional
        Called once if another holder makes this call wait.

    Yields
    ------
    int
        The locked descriptor.  Pass it on to a child process (``pass_fds``)
        that must finish before another run may look at ``staging/``: the
        lock (``flock``) lasts as long as any process holds the descriptor,
        so a ``dachs imp`` outliving a killed harps-ingest keeps the next run
        waiting until its transaction is over.
    """
    os.makedirs(staging, exist_ok=True)
    fd = os.open(os.path.join(staging, LOCK_NAME), os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def leftovers(staging: str) -> list[str]:
    """Manifests in ``staging/``: with the lock held, those of killed runs."""
    return sorted(glob.glob(os.path.join(glob.escape(staging), "*.jsonl")))


def accrefs(path: str | os.PathLike) -> list[str]:
    """The accrefs a manifest names, read leniently.

    A manifest cut short while being written (its run was killed) still
    names the products of its complete lines; no file of the cut line was
    placed, since files are placed only after the manifest is complete.
    """
    found = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                found.append(json.loads(line)["accref"])
            except (ValueError, KeyError, TypeError):
                continue
    return found


def read(path: str | os.PathLike):
    """Yield (accref, SpectrumMeta) pairs from a manifest."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                entry = json.loads(line)
                yield entry["accref"], fitsio.SpectrumMeta(**entry["meta"])


class RowIterator(CustomRowIterator):
    """DaCHS row iterator over a manifest: one row per archived file."""

    def _iterRows(self):  # noqa: N802 - DaCHS API name
        for accref, meta in read(self.sourceToken):
            yield archive_row(meta, accref)

    def getLocator(self):  # noqa: N802 - DaCHS API name
        return self.sourceToken
