"""Import a directory tree of HARPS 1D files into the running service.

Usage (as root, normally through ``make ingest DATA=<dir>``)::

    harps-ingest [--rd RD] [--workers N] [--dry-run] [--no-latents] PATH [PATH ...]

Steps, each visible in the output:

1. **Validate** every ``*.fits`` file under the given paths with
   :func:`harps_data.fitsio.validate` (headers *and* data: garbage, wrong
   instrument, wrong layout, truncated and unreadable files are refused,
   one line each: ``REFUSED <file>: <reason>``).
2. **Place** valid files in the archive tree under a name derived from the
   header (``data/<adp|s1d>/<year>/<product id>.fits``).  A file whose product
   is already published with identical bytes is *unchanged*; with different
   bytes it is refused (the archive never silently replaces data).  The
   metadata parsed in step 1 are first written to a manifest in ``staging/``
   (see :mod:`harps_service.manifest`), so headers are read once.
3. **Import** the manifest with ``dachs imp harps/q import_batch``.  DaCHS
   imports in one transaction; if it fails, or a file cannot be written (a
   full disk: one line naming the file), the files placed in step 2 are
   removed again, so the published data are exactly as before.

4. **Latents**: if a model is published (``harps-latents``), spectra whose
   data are public and that have no latents yet are encoded with it and the
   neighbour table is refreshed (``--no-latents`` skips this).

Exit status: 0 if every file was imported or unchanged, 1 if some files
were refused (the valid ones are imported), 2 if the import itself failed
(nothing changed) or the latents could not be updated (the spectra are
published), 3 for usage errors.

Interrupted runs: runs on one resource take turns (a lock in ``staging/``).
The manifest is written before any file is placed and removed only when the
run has finished, so a run killed at any point (even ``kill -9``) leaves a
manifest naming what it may have left behind.  The next run (rerun the same
command) waits for a ``dachs imp`` the killed run left running, then keeps
the files whose rows were committed, removes the others and the manifest,
and imports what is still missing.  A file in the archive tree without a
published row is never "archived": an input for it is imported as new.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import filecmp
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from harps_data import fitsio
from harps_service import archive, manifest
from harps_service.archive import fault_point
from harps_site import INPUTS_DIR, RD_ID, current_model_dir, schema_of

FITS_SUFFIXES = (".fits", ".fit", ".fts")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Refusal:
    """A file that was not imported, and why."""

    path: str
    reason: str

    def line(self) -> str:
        return f"REFUSED {self.path}: {self.reason}"


@dataclass
class Plan:
    """What an ingest run will do with each input file."""

    # (source, destination, metadata parsed during validation)
    new: list[tuple[str, str, fitsio.SpectrumMeta]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def find_fits(paths: Sequence[str]) -> tuple[list[str], list[Refusal]]:
    """All FITS files below ``paths`` (files or directories), sorted.

    Hidden files and non-FITS names inside directories are skipped; a path
    that does not exist is refused.
    """
    found, missing = [], []
    for top in paths:
        if os.path.isfile(top):
            found.append(os.path.abspath(top))
        elif os.path.isdir(top):
            for root, dirs, files in os.walk(top):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.extend(os.path.abspath(os.path.join(root, f)) for f in files
                             if not f.startswith(".") and f.lower().endswith(FITS_SUFFIXES))
        else:
            missing.append(Refusal(top, "no such file or directory"))
    return sorted(set(found)), missing


def _validate(path: str) -> fitsio.SpectrumMeta | Refusal:
    try:
        return fitsio.validate(path)
    except fitsio.InvalidSpectrum as ex:
        return Refusal(path, ex.reason)
    except (OSError, ValueError, MemoryError) as ex:  # unreadable in some other way
        return Refusal(path, f"unreadable: {ex}")


def validate_all(files: Sequence[str], workers: int) -> list[fitsio.SpectrumMeta | Refusal]:
    """Validate files, in parallel when ``workers`` > 1; keeps input order."""
    if workers <= 1 or len(files) < 2 * workers:
        return [_validated(_validate(f)) for f in files]
    with ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        return [_validated(r) for r in pool.map(_validate, files, chunksize=64)]


def _die_with_parent(parent: int) -> None:
    """Pool initializer: a validation worker never outlives a killed harps-ingest.

    Without this, workers of a harps-ingest killed with SIGKILL wait for
    work forever.  Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere a
    no-op.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _validated(result: fitsio.SpectrumMeta | Refusal) -> fitsio.SpectrumMeta | Refusal:
    fault_point("validate")
    return result


def archive_relpath(meta: fitsio.SpectrumMeta) -> str:
    """Archive-tree path of a product, relative to the resource directory."""
    year = meta.date_obs[:4] if meta.date_obs[:4].isdigit() else "unknown"
    return os.path.join("data", meta.layout.lower(), year, meta.canonical_name)


def _same_or_refused(plan: Plan, existing: str, path: str, conflict: str) -> None:
    """A second file for a product: unchanged if byte-identical, else refused."""
    if filecmp.cmp(existing, path, shallow=False):
        plan.unchanged.append(path)
    else:
        plan.refused.append(Refusal(path, conflict))


def published_products(rd_id: str = RD_ID) -> dict[str, str] | None:
    """Product identifier to accref of everything already in the service.

    ``None`` if the table does not exist yet (any other database error is
    raised: an empty answer would make archived files look unpublished).
    """
    from gavo import base
    table = f"{schema_of(rd_id)}.raw_data"
    with base.getTableConn() as conn:
        if not archive.table_exists(conn, table):
            return None
        return dict(conn.query(f"SELECT product_id, accref FROM {table}"))


def make_plan(results: Iterable[fitsio.SpectrumMeta | Refusal], resdir: str,
              published: dict[str, str] | None = None) -> Plan:
    """Decide, for validated files, which are new, unchanged or conflicting.

    ``published`` maps product identifiers already in the service to their
    accrefs; a file claiming one of them under another archive path is
    refused here rather than failing the whole import on the primary key.
    A file already in the archive tree counts as archived only if its row
    is published (or ``published`` is ``None``: no table to tell); one
    without a row was left by an interrupted run and is replaced.
    """
    plan = Plan()
    rows = None if published is None else set(published.values())
    published = published or {}
    claimed: dict[str, str] = {}  # destination -> source within this batch
    for res in results:
        if isinstance(res, Refusal):
            plan.refused.append(res)
            continue
        relpath = archive_relpath(res)
        dest = os.path.join(resdir, relpath)
        known = published.get(res.product_id)
        if known is not None and not known.endswith(relpath):
            plan.refused.append(Refusal(res.path, (
                f"product {res.product_id} is already published as {known}; "
                "the archive does not replace data")))
            continue
        if dest in claimed:
            _same_or_refused(plan, claimed[dest], res.path, (
                f"product {res.product_id} also comes from {claimed[dest]} "
                "with different content in this batch"))
            continue
        if os.path.exists(dest) and (rows is None or archive.accref_of(dest) in rows):
            _same_or_refused(plan, dest, res.path, (
                f"product {res.product_id} is already archived as {dest} with "
                "different content; the archive does not replace data"))
            continue
        claimed[dest] = res.path
        plan.new.append((res.path, dest, res))
    return plan


def ingest(paths: Sequence[str], *, rd_id: str = RD_ID, workers: int = 2,
           dry_run: bool = False, encode_latents: bool = True, out=sys.stdout) -> int:
    """Validate, place and import HARPS files; print one line per refusal.

    Returns the exit status described in the module docstring.
    """
    t0 = time.perf_counter()
    resdir = os.path.join(INPUTS_DIR, schema_of(rd_id))
    files, missing = find_fits(paths)
    results = validate_all(files, workers)
    t_valid = time.perf_counter() - t0
    if dry_run:
        plan = _plan(results, missing, resdir, rd_id, out)
        _print_counts(plan, out, " (dry run)")
        return 1 if plan.refused else 0

    def waiting() -> None:
        print(f"waiting for another harps-ingest on {rd_id} (or the dachs imp of a killed "
              "one) to finish", file=out, flush=True)

    with manifest.locked(archive.staging_dir(resdir), on_wait=waiting) as lock:
        try:
            archive.recover(rd_id, resdir, out)
            plan = _plan(results, missing, resdir, rd_id, out)
        except _db_errors() as ex:
            print(f"IMPORT FAILED, nothing changed: cannot read what is published: "
                  f"{' '.join(str(ex).split())}", file=out)
            return 2
        status = 1 if plan.refused else 0
        if not plan.new:
            _print_counts(plan, out)
        else:
            failure = archive.import_batch(plan.new, resdir, rd_id, lock)
            if failure is not None:
                print(f"IMPORT FAILED, nothing changed: {failure}", file=out)
                return 2
            elapsed = time.perf_counter() - t0
            print(f"{len(plan.new)} imported, {len(plan.unchanged)} unchanged, "
                  f"{len(plan.refused)} refused ({len(files)} files in {elapsed:.1f} s: "
                  f"validation {t_valid:.1f} s, {len(files) / elapsed:.0f} files/s)", file=out)
        if encode_latents:
            # new spectra, and those released since the last run, enter the latent layer
            status = max(status, _update_latents(rd_id, out))
    return status


def _db_errors() -> tuple[type[Exception], ...]:
    """What DaCHS raises when the database is unreachable or refuses a query."""
    from gavo import base
    return base.DBError, base.ReportableError


def _plan(results: Sequence[fitsio.SpectrumMeta | Refusal], missing: list[Refusal],
          resdir: str, rd_id: str, out) -> Plan:
    """The plan against what is published now; prints the refusals."""
    plan = make_plan(results, resdir, published_products(rd_id))
    plan.refused[:0] = missing
    for r in plan.refused:
        print(r.line(), file=out)
    return plan


def _print_counts(plan: Plan, out, note: str = "") -> None:
    print(f"{len(plan.new)} new{note}, {len(plan.unchanged)} unchanged, "
          f"{len(plan.refused)} refused", file=out)


def _update_latents(rd_id: str, out) -> int:
    """Give newly public spectra their latents (neighbours refreshed) and separation."""
    from harps_service import latents, separation
    status = 0
    if (current_model_dir(rd_id) / "model.json").exists():
        try:
            n = latents.update(rd_id)
            print(f"latents: {n} newly public spectra encoded, neighbours refreshed", file=out)
        except latents.LatentsError as ex:
            print(f"LATENTS NOT UPDATED (the spectra are published): {ex}", file=out)
            status = 2
    try:
        n = separation.update(rd_id)
        if n:
            print(f"separation: {n} newly public spectra separated", file=out)
    except latents.LatentsError as ex:
        print(f"SEPARATION NOT UPDATED (the spectra are published): {ex}", file=out)
        status = 2
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="harps-ingest", description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Exit status:"):],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="FITS files or directories to import")
    parser.add_argument("--rd", default=RD_ID,
                        help="the DaCHS resource to import into (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="validation processes (default: all cores)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate and report, import nothing")
    parser.add_argument("--no-latents", action="store_true",
                        help="do not encode new public spectra with the current model")
    try:
        args = parser.parse_args(argv)
    except SystemExit as ex:
        return 3 if ex.code else 0
    if args.workers < 1:
        print("harps-ingest: --workers must be at least 1", file=sys.stderr)
        return 3
    if not os.path.isdir(os.path.join(INPUTS_DIR, schema_of(args.rd))):
        print(f"harps-ingest: --rd {args.rd}: no resource directory "
              f"{os.path.join(INPUTS_DIR, schema_of(args.rd))}; deploy the service first "
              "(make demo)", file=sys.stderr)
        return 3
    return ingest(args.paths, rd_id=args.rd, workers=args.workers, dry_run=args.dry_run,
                  encode_latents=not args.no_latents)


if __name__ == "__main__":
    sys.exit(main())
