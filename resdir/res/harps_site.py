"""Deployment facts of the HARPS service: the one place for each.

Where DaCHS keeps the resource, which RD and schema it is, as which user and
with which ``PATH`` its ``dachs`` command runs, who owns archive files, and
the example product the service's documentation points to.  Everything else
imports them from here: the service-side code (:mod:`harps_service`), the
learned layer's defaults (:mod:`ml.encode`), the tests and the benchmarks;
the shell scripts (``etc/dachsctl``, ``etc/demo``, the Makefile) source
``etc/site.sh``, which ``python3 resdir/res/harps_site.py --shell`` writes
(a fresh machine has no Python before ``etc/dachsctl system``; the file is
in git and ``tests/test_layout.py`` checks that it is up to date).
``tests/test_layout.py`` also greps the tree for second definitions.

The module needs nothing but the standard library: DaCHS's Python, the
venv and ``/bin/sh`` through ``--shell`` all read it.  DaCHS's own
configuration (``/etc/gavo.rc``) must agree with :data:`GAVO_ROOT`;
``tests/test_layout.py`` checks that it does.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

#: DaCHS's root directory (``[general] rootDir``, Debian's default).
GAVO_ROOT = "/var/gavo"
#: Where DaCHS keeps resource directories; accrefs are relative to it.
INPUTS_DIR = f"{GAVO_ROOT}/inputs"
#: The resource directory name; also the database schema of its tables.
RES_NAME = "harps"
#: The resource descriptor DaCHS publishes (``etc/dachsctl deploy`` puts
#: ``resdir/`` at ``INPUTS_DIR/RES_NAME``).  Benchmarks deploy the same RD
#: under other names (resource directory name = schema).
RD_ID = f"{RES_NAME}/q"
#: The DaCHS administrator account: runs ``dachs imp``/``pub``/``adm``, owns
#: the archive tree.  The server itself runs as user and group ``gavo``.
DACHS_USER = "dachsroot"
DACHS_GROUP = "gavo"
#: DaCHS's quiet user interface: errors only (what every script here wants).
DACHS_UI = "--ui=stingy"
#: The real ESO ADP (IC 4651 No 9122, from ../shared) that the service's
#: examples, regression tests and test suite point to.
EXAMPLE_ACCREF = f"{RES_NAME}/data/adp/2006/ADP.2014-09-16T11_04_45.123.fits"
#: Run-time directory of the service's daemons (sockets, pid files, locks).
RUN_DIR = "/run/harps-vo"
#: The model server's socket (``harps-model-server``, :mod:`ml.serve`): the
#: DaCHS workers reach the published model through it.
MODEL_SOCKET = f"{RUN_DIR}/model/model.sock"


def schema_of(rd_id: str) -> str:
    """The database schema of one of our RDs (resource directory name = schema).

    Parameters
    ----------
    rd_id : str
        A DaCHS RD id such as ``harps/q``.

    Returns
    -------
    str
        Its first path element.
    """
    return rd_id.split("/", 1)[0]


def resdir_of(rd_id: str = RD_ID) -> Path:
    """The resource directory of an RD (``/var/gavo/inputs/<schema>``)."""
    return Path(INPUTS_DIR) / schema_of(rd_id)


def current_model_dir(rd_id: str = RD_ID) -> Path:
    """Where ``harps-latents publish`` puts the current model (``models/current``)."""
    return resdir_of(rd_id) / "models" / "current"


def separation_model_dir(rd_id: str = RD_ID) -> Path:
    """Where ``harps-latents separation`` puts the stellar/telluric separation model."""
    return resdir_of(rd_id) / "models" / "separation"


def bin_dir() -> Path:
    """The resource's ``bin/``: DaCHS's command with our ADQL functions registered.

    Async TAP jobs and ``dachs imp`` run the ``gavo``/``dachs`` found on
    ``PATH``; with this directory first, they see the functions that
    ``harps_service.latent_udf`` registers.
    """
    return resdir_of(RD_ID) / "bin"


def dachs_command(*args: str, stingy: bool = True,
                  path: str | None = None) -> list[str]:
    """The argument list that runs ``dachs ARGS`` as the DaCHS administrator.

    As root, through ``runuser -u dachsroot``; otherwise as the calling user
    (who then needs DaCHS's permissions).  Either way with :func:`bin_dir`
    first on ``PATH``, so every runner behaves the same.

    Parameters
    ----------
    *args : str
        The ``dachs`` subcommand and its arguments (``"imp", "harps/q"``).
    stingy : bool
        Pass :data:`DACHS_UI` (errors only) before the subcommand.
    path : str, optional
        The rest of ``PATH`` (default: this process's, or ``/usr/bin:/bin``).

    Returns
    -------
    list of str
        For :func:`subprocess.run`.
    """
    rest = path if path is not None else os.environ.get("PATH", "/usr/bin:/bin")
    cmd = ["env", f"PATH={bin_dir()}:{rest}", "dachs", *([DACHS_UI] if stingy else []), *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", DACHS_USER, "--", *cmd]
    return cmd


def owner_ids() -> tuple[int, int] | None:
    """uid of :data:`DACHS_USER` and gid of :data:`DACHS_GROUP`, for chown.

    Returns
    -------
    tuple of int, or None
        ``None`` when this process cannot or need not chown: it is not root,
        or DaCHS's accounts do not exist (a machine without DaCHS, where the
        files stay the caller's).
    """
    import grp
    import pwd
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(DACHS_USER).pw_uid, grp.getgrnam(DACHS_GROUP).gr_gid
    except KeyError:
        return None


def chown_to_dachs(*paths: str | os.PathLike) -> None:
    """Give files to the DaCHS administrator (a no-op, see :func:`owner_ids`)."""
    ids = owner_ids()
    if ids is None:
        return
    for p in paths:
        os.chown(p, *ids)


SHELL_HEADER = ("# Deployment facts for shell scripts and make, written by\n"
                "#   python3 resdir/res/harps_site.py --shell > etc/site.sh\n"
                "# from resdir/res/harps_site.py; do not edit (tests/test_layout.py checks it).")


def shell_assignments() -> list[str]:
    """The facts as ``NAME=value`` lines, for ``sh`` (``.``) and make (``include``)."""
    facts = {"GAVO_ROOT": GAVO_ROOT, "INPUTS_DIR": INPUTS_DIR, "RES_NAME": RES_NAME,
             "RD_ID": RD_ID, "DACHS_USER": DACHS_USER, "DACHS_GROUP": DACHS_GROUP,
             "DACHS_UI": DACHS_UI, "EXAMPLE_ACCREF": EXAMPLE_ACCREF,
             "RUN_DIR": RUN_DIR, "MODEL_SOCKET": MODEL_SOCKET}
    return [f"{k}={shlex.quote(v)}" for k, v in facts.items()]


def main(argv: Sequence[str] | None = None) -> int:
    """``python3 harps_site.py --shell``: print :func:`shell_assignments`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv != ["--shell"]:
        print("usage: harps_site.py --shell > etc/site.sh", file=sys.stderr)
        return 2
    print("\n".join([SHELL_HEADER, *shell_assignments()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
