"""Batch manifests: the metadata harps-ingest parsed, handed to DaCHS.

``harps-ingest`` validates files in parallel processes, which parses every
header.  Instead of having DaCHS parse them again, it writes one manifest
per run (JSON lines: the accref and the :class:`harps_data.fitsio.SpectrumMeta`
fields of each new file) into the resource's ``staging/`` directory and
imports it through the RD's ``import_batch`` data element, whose grammar is
:class:`RowIterator` below.  Rows come out of the same
:func:`harps_service.rows.archive_row` as in a rebuild from the files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
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
