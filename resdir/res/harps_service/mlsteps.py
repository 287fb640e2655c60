"""What the operator commands share: the ML steps as subprocesses, DaCHS, the database.

``harps-latents`` (:mod:`harps_service.latents`) and the separation model's
publication (:mod:`harps_service.separation`) run the project's ML commands
(``harps-encode``, ``harps-separate``, ...) from the venv this runs in: the
service package never imports torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import harps_site
from harps_site import INPUTS_DIR, schema_of

BIN = Path(sys.executable).parent


class LatentsError(RuntimeError):
    """A failed step, saying which."""


def run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    """Run a command; LatentsError with the end of its stderr when it fails."""
    # the tools' progress bars are UTF-8 whatever the locale
    res = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace", **kw)
    if res.returncode != 0:
        raise LatentsError(f"{what} failed ({' '.join(cmd[:3])} ...):\n"
                           f"{res.stderr.strip()[-3000:] or res.stdout.strip()[-3000:]}")
    return res


def dachs(*args: str) -> None:
    """Run ``dachs`` with our ADQL functions registered (:func:`harps_site.dachs_command`)."""
    run(harps_site.dachs_command(*args), f"dachs {' '.join(args)}")


def query(sql: str, args: dict | None = None) -> list[tuple]:
    """Rows of a query on DaCHS's database connection."""
    from gavo import base
    with base.getTableConn() as conn:
        return list(conn.query(sql, args or {}))


def public_files(rd_id: str, *, missing_from: str | None = None) -> list[str]:
    """Archive files of spectra whose data are public, in accref order.

    ``missing_from`` (a table of the resource keyed by ``ssa_pubdid``, e.g.
    ``"latents"``, ``"separation"``): only those without a row there.
    """
    schema = schema_of(rd_id)
    sql = f"SELECT accref FROM {schema}.data WHERE release_date <= now()"
    if missing_from:
        sql += (f" AND NOT EXISTS (SELECT 1 FROM {schema}.{missing_from} m "
                f"WHERE m.ssa_pubdid = {schema}.data.ssa_pubdid)")
    return [os.path.join(INPUTS_DIR, a) for (a,) in query(sql + " ORDER BY accref")]


def did_prefix() -> str:
    """What comes before the archive path in a publisher DID."""
    from gavo import base
    return f"ivo://{base.getConfig('ivoa', 'authority')}/~?"


def own(path: Path) -> None:
    """Give a published file, or a directory and everything in it, to the DaCHS user."""
    harps_site.chown_to_dachs(*([path, *path.rglob("*")] if path.is_dir() else [path]))
