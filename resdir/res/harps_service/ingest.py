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
   is already archived with identical bytes is *unchanged*; with different
   bytes it is refused (the archive never silently replaces data).
3. **Import** the new files with ``dachs imp harps/q import_batch``: the
   metadata parsed in step 1 go to DaCHS as a manifest (see
   :mod:`harps_service.manifest`), so headers are read once.  DaCHS imports
   in one transaction; if it fails, the files placed in step 2 are removed
   again, so the published data are exactly as before.

4. **Latents**: if a model is published (``harps-latents``), spectra whose
   data are public and that have no latents yet are encoded with it and the
   neighbour table is refreshed (``--no-latents`` skips this).

Exit status: 0 if every file was imported or unchanged, 1 if some files
were refused (the valid ones are imported), 2 if the import itself failed
(nothing changed) or the latents could not be updated (the spectra are
published), 3 for usage errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import harps_site
from harps_data import fitsio
from harps_service import manifest
from harps_site import INPUTS_DIR, RD_ID, schema_of

FITS_SUFFIXES = (".fits", ".fit", ".fts")
#: Test hook: ``HARPS_INGEST_FAULT=<point>`` makes harps-ingest SIGKILL itself
#: at that point (``validate``, ``place``, ``after-place``, ``before-import``,
#: ``after-import``), so tests can check what an interrupted run leaves behind.
FAULT_ENV = "HARPS_INGEST_FAULT"


def fault_point(name: str) -> None:
    """Die here, as if killed, when the fault hook names this point."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


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
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [_validated(r) for r in pool.map(_validate, files, chunksize=64)]


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


def published_products(rd_id: str = RD_ID) -> dict[str, str]:
    """Product identifier to accref of everything already in the service."""
    from gavo import base
    try:
        with base.getTableConn() as conn:
            return dict(conn.query(
                f"SELECT product_id, accref FROM {schema_of(rd_id)}.raw_data"))
    except base.DBError:  # tables not created yet: nothing is published
        return {}


def make_plan(results: Iterable[fitsio.SpectrumMeta | Refusal], resdir: str,
              published: dict[str, str] | None = None) -> Plan:
    """Decide, for validated files, which are new, unchanged or conflicting.

    ``published`` maps product identifiers already in the service to their
    accrefs; a file claiming one of them under another archive path is
    refused here rather than failing the whole import on the primary key.
    """
    plan = Plan()
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
        if os.path.exists(dest):
            _same_or_refused(plan, dest, res.path, (
                f"product {res.product_id} is already archived as {dest} with "
                "different content; the archive does not replace data"))
            continue
        claimed[dest] = res.path
        plan.new.append((res.path, dest, res))
    return plan


def _makedirs(path: str) -> None:
    """Create archive directories owned by the DaCHS admin, as deploy does."""
    if os.path.isdir(path):
        return
    _makedirs(os.path.dirname(path))
    os.mkdir(path, 0o775)
    harps_site.chown_to_dachs(path)


def place(new: Sequence[tuple[str, str, fitsio.SpectrumMeta]]) -> list[str]:
    """Copy new files into the archive tree; return what was placed.

    Files are copied, never linked: the archive owns its bytes, whatever
    happens to the source later.  Each file is written under a temporary
    name and renamed, so a crash never leaves a half-written file under an
    archive name.
    """
    placed: list[str] = []
    try:
        for src, dest, _ in new:
            _makedirs(os.path.dirname(dest))
            tmp = f"{dest}.partial-{os.getpid()}"
            shutil.copyfile(src, tmp)
            if placed:
                fault_point("place")
            os.chmod(tmp, 0o644)
            harps_site.chown_to_dachs(tmp)
            os.replace(tmp, dest)
            placed.append(dest)
    except OSError:
        unplace(placed)
        raise
    return placed


def unplace(placed: Iterable[str]) -> None:
    """Remove files placed by :func:`place` (after a failed import)."""
    for dest in placed:
        try:
            os.unlink(dest)
        except FileNotFoundError:
            pass


def write_manifest(new: Sequence[tuple[str, str, fitsio.SpectrumMeta]], resdir: str) -> str:
    """Write the batch manifest DaCHS imports (see :mod:`harps_service.manifest`)."""
    staging = os.path.join(resdir, "staging")
    os.makedirs(staging, exist_ok=True)
    path = os.path.join(staging, f"ingest-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        manifest.write(((os.path.relpath(dest, INPUTS_DIR), dataclasses.replace(meta, path=dest))
                        for _, dest, meta in new), f)
    os.chmod(path, 0o644)
    return path


def dachs_import(rd_id: str = RD_ID, data_id: str = "import_batch") -> subprocess.CompletedProcess:
    """Run ``dachs imp <rd> <data_id>`` as the DaCHS admin user."""
    return subprocess.run(harps_site.dachs_command("imp", rd_id, data_id),
                          capture_output=True, text=True)


def ingest(paths: Sequence[str], *, rd_id: str = RD_ID, workers: int = 2,
           dry_run: bool = False, encode_latents: bool = True, out=sys.stdout) -> int:
    """Validate, place and import HARPS files; print one line per refusal.

    Returns the exit status described in the module docstring.
    """
    t0 = time.perf_counter()
    resdir = os.path.join(INPUTS_DIR, schema_of(rd_id))
    files, refused = find_fits(paths)
    plan = make_plan(validate_all(files, workers), resdir, published_products(rd_id))
    plan.refused[:0] = refused
    for r in plan.refused:
        print(r.line(), file=out)
    t_valid = time.perf_counter() - t0
    status = 1 if plan.refused else 0
    if dry_run or not plan.new:
        print(f"{len(plan.new)} new{' (dry run)' if dry_run else ''}, "
              f"{len(plan.unchanged)} unchanged, {len(plan.refused)} refused", file=out)
        if encode_latents and not dry_run:
            # spectra released since the last run enter the latent layer
            status = max(status, _update_latents(rd_id, out))
        return status
    placed = place(plan.new)
    fault_point("after-place")
    batch = write_manifest(plan.new, resdir)
    fault_point("before-import")
    try:
        result = dachs_import(rd_id)
        if result.returncode == 0:
            fault_point("after-import")
    finally:
        os.unlink(batch)
    if result.returncode != 0:
        unplace(placed)
        print(f"IMPORT FAILED, nothing changed: {result.stderr.strip() or result.stdout.strip()}",
              file=out)
        return 2
    elapsed = time.perf_counter() - t0
    print(f"{len(placed)} imported, {len(plan.unchanged)} unchanged, {len(plan.refused)} refused "
          f"({len(files)} files in {elapsed:.1f} s: validation {t_valid:.1f} s, "
          f"{len(files) / elapsed:.0f} files/s)", file=out)
    if encode_latents:
        status = max(status, _update_latents(rd_id, out))
    return status


def _update_latents(rd_id: str, out) -> int:
    """Give newly public spectra their latents and refresh the neighbours."""
    from harps_service import latents
    if not os.path.exists(os.path.join(INPUTS_DIR, schema_of(rd_id), "models", "current",
                                       "model.json")):
        return 0
    try:
        n = latents.update(rd_id)
    except latents.LatentsError as ex:
        print(f"LATENTS NOT UPDATED (the spectra are published): {ex}", file=out)
        return 2
    print(f"latents: {n} newly public spectra encoded, neighbours refreshed", file=out)
    return 0


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
