"""The archive tree of a resource: placing a batch of files and importing it.

All or nothing, also when the importing process dies: the batch manifest
(:mod:`harps_service.manifest`) is written before any file is placed in the
archive tree and removed only when the batch is published or undone, so the
manifest of a killed run names everything it may have left behind.  The
next run, holding the ingest lock, finds it and calls :func:`recover`:
files whose rows were committed stay, the others go.

Used by :mod:`harps_service.ingest`; the pure planning lives there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence

import harps_site
from harps_data import fitsio
from harps_service import manifest
from harps_site import INPUTS_DIR, schema_of

#: Test hook: ``HARPS_INGEST_FAULT=<point>`` makes harps-ingest SIGKILL itself
#: at that point (``validate``, ``place``, ``after-place``, ``before-import``,
#: ``after-import``), so tests can check what an interrupted run leaves behind.
FAULT_ENV = "HARPS_INGEST_FAULT"


def fault_point(name: str) -> None:
    """Die here, as if killed, when the fault hook names this point."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class BatchError(Exception):
    """A file of the batch could not be written; nothing was published."""


def staging_dir(resdir: str) -> str:
    """Where a resource's batch manifests and ingest lock live."""
    return os.path.join(resdir, "staging")


def accref_of(dest: str) -> str:
    """The accref of a file in the archive tree (what raw_data.accref holds)."""
    return os.path.relpath(dest, INPUTS_DIR)


def table_exists(conn, table: str) -> bool:
    """Whether ``table`` (``schema.name``) exists, on a DaCHS connection."""
    return next(iter(conn.query("SELECT to_regclass(%(t)s) IS NOT NULL", {"t": table})))[0]


def _makedirs(path: str, uid: int, gid: int, chown: bool) -> None:
    """Create archive directories owned by the DaCHS admin, as deploy does."""
    if os.path.isdir(path):
        return
    _makedirs(os.path.dirname(path), uid, gid, chown)
    os.mkdir(path, 0o775)
    if chown:
        os.chown(path, uid, gid)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _place_one(src: str, dest: str, owner: tuple[int, int] | None, first: bool) -> None:
    """Copy one file to ``dest`` through a temporary name (removed on failure)."""
    tmp = f"{dest}.partial-{os.getpid()}"
    try:
        _makedirs(os.path.dirname(dest), *(owner or (-1, -1)), owner is not None)
        shutil.copyfile(src, tmp)
        if not first:
            fault_point("place")
        os.chmod(tmp, 0o644)
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, dest)
    except OSError as ex:
        _unlink(tmp)
        raise BatchError(f"cannot write {dest} (copying {src}): "
                         f"{ex.strerror or ex}") from ex


def place(new: Sequence[tuple[str, str, fitsio.SpectrumMeta]]) -> list[str]:
    """Copy new files into the archive tree; return what was placed.

    Files are copied, never linked: the archive owns its bytes, whatever
    happens to the source later.  Each file is written under a temporary
    name and renamed, so a crash never leaves a half-written file under an
    archive name.

    Raises
    ------
    BatchError
        If a file cannot be written (full disk, ...); the files placed so
        far and the temporary file are removed again.
    """
    owner = harps_site.owner_ids()
    placed: list[str] = []
    try:
        for src, dest, _ in new:
            _place_one(src, dest, owner, first=not placed)
            placed.append(dest)
    except BatchError:
        unplace(placed)
        raise
    return placed


def unplace(placed: Iterable[str]) -> None:
    """Remove files placed by :func:`place` (after a failed import)."""
    for dest in placed:
        _unlink(dest)


def write_manifest(new: Sequence[tuple[str, str, fitsio.SpectrumMeta]], resdir: str) -> str:
    """Write the batch manifest DaCHS imports (see :mod:`harps_service.manifest`).

    Raises
    ------
    BatchError
        If it cannot be written (full disk, ...); nothing of it is left.
    """
    staging = staging_dir(resdir)
    path = os.path.join(staging, f"ingest-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.jsonl")
    try:
        os.makedirs(staging, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            manifest.write(((accref_of(dest), dataclasses.replace(meta, path=dest))
                            for _, dest, meta in new), f)
        os.chmod(path, 0o644)
    except OSError as ex:
        _unlink(path)
        raise BatchError(f"cannot write the batch manifest {path}: {ex.strerror or ex}") from ex
    return path


def dachs_import(rd_id: str, data_id: str = "import_batch", *,
                 keep_fds: Sequence[int] = ()) -> subprocess.CompletedProcess:
    """Run ``dachs imp <rd> <data_id>`` as the DaCHS admin user.

    ``keep_fds`` are descriptors the child holds (the ingest lock, so that a
    ``dachs imp`` outliving a killed harps-ingest keeps the next run out
    until it ends).  Its output goes to files, not pipes, so that it can
    finish its transaction even then.
    """
    cmd = harps_site.dachs_command("imp", rd_id, data_id)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        returncode = subprocess.run(cmd, stdout=out, stderr=err, pass_fds=keep_fds).returncode
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, returncode, out.read(), err.read())


def import_batch(new: Sequence[tuple[str, str, fitsio.SpectrumMeta]], resdir: str,
                 rd_id: str, lock_fd: int) -> str | None:
    """Write the manifest, place the files, import; undo everything on failure.

    The manifest comes first: until it is removed it names every file a
    killed run may have left (see :func:`recover`).

    Returns
    -------
    str or None
        ``None`` if the batch is published, else why it failed (then
        nothing of it is left and the published data are as before).
    """
    try:
        batch = write_manifest(new, resdir)
    except BatchError as ex:
        return str(ex)
    try:
        placed = place(new)
    except BatchError as ex:
        os.unlink(batch)
        return str(ex)
    fault_point("after-place")
    fault_point("before-import")
    result = dachs_import(rd_id, keep_fds=(lock_fd,))
    if result.returncode != 0:
        unplace(placed)
        os.unlink(batch)
        return result.stderr.strip() or result.stdout.strip()
    fault_point("after-import")
    os.unlink(batch)
    return None


def published_accrefs(rd_id: str, accrefs: Iterable[str]) -> set[str]:
    """Which of ``accrefs`` have a row, once no transaction is writing the table.

    The SHARE lock waits for a transaction still inserting into the table:
    the import of a killed run whose database session has not ended yet.
    """
    from gavo import base
    table = f"{schema_of(rd_id)}.raw_data"
    with contextlib.closing(base.getDBConnection("admin")) as conn:
        if not table_exists(conn, table):
            return set()
        conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
        found = {a for (a,) in conn.query(f"SELECT accref FROM {table} WHERE accref = ANY(%(a)s)",
                                          {"a": list(accrefs)})}
        conn.commit()
    return found


def recover(rd_id: str, resdir: str, out=sys.stdout) -> None:
    """Clean up after killed runs (call with the ingest lock held).

    Every manifest left in ``staging/`` belongs to a run that died before
    finishing; its files with a committed row stay, the others (and any
    temporary copies) are removed, then the manifest.  Files no manifest
    names are never touched.
    """
    stale = manifest.leftovers(staging_dir(resdir))
    if not stale:
        return
    named = {a for path in stale for a in manifest.accrefs(path)}
    published = published_accrefs(rd_id, named)
    for accref in named:
        dest = os.path.join(INPUTS_DIR, accref)
        for tmp in glob.glob(glob.escape(dest) + ".partial-*"):
            _unlink(tmp)
        if accref not in published:
            _unlink(dest)
    for path in stale:
        os.unlink(path)
    print(f"recovered {len(stale)} interrupted run(s): {len(named) - len(published)} "
          f"unpublished files removed, {len(published)} published kept", file=out)
