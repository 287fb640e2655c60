"""harps-ingest under faults: SIGKILL at every stage, and a full disk.

Each test works on a scratch copy of the resource (``etc/dachsctl
deploy-as``), whose published data are the real HARPS files, so the
published ``harps`` resource is never touched.  Kills are real signals:
either harps-ingest kills itself at a named point (the ``HARPS_INGEST_FAULT``
hook), or the test kills it (or its whole process group, ``dachs imp``
included) while ``dachs imp`` waits inside its transaction for a row lock
the test holds.  The full disk is a real one: a small tmpfs mounted over the
scratch resource's ``data/`` or ``staging/`` directory.

After every fault the published rows and their files must be exactly as
before; after a rerun of the same command every file must be published and
the archive tree must hold exactly the files the table points to (no
orphans, no temporary files, no leftover manifests).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from support import INPUTS_DIR, REPO, S1D, SHARED, require, restamped_s1d, run_ingest

import harps_site

pytestmark = pytest.mark.server

INPUTS = INPUTS_DIR
CTL = str(REPO / "etc" / "dachsctl")
FAULT_ENV = "HARPS_INGEST_FAULT"
#: Distinct observation times for the test products (one minute apart).
_MINUTES = itertools.count()


@dataclass(frozen=True)
class Scratch:
    """A scratch copy of the resource (resdir name = schema)."""

    name: str

    @property
    def rd(self) -> str:
        return f"{self.name}/q"

    @property
    def resdir(self) -> Path:
        return INPUTS / self.name

    def ingest(self, *paths: str | Path, fault: str | None = None):
        return run_ingest(*paths, rd=self.rd, env={FAULT_ENV: fault} if fault else None)


def _ctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([CTL, *args], capture_output=True, text=True)
    assert result.returncode == 0 or not check, result.stderr
    return result


@contextlib.contextmanager
def _scratch_resource(name: str) -> Iterator[Scratch]:
    """Deploy a scratch resource, drop it afterwards whatever happens."""
    require(SHARED.is_dir(), f"real HARPS test files not found at {SHARED}")
    require(os.geteuid() == 0, "scratch resources need root (run `make test`)")
    _ctl("drop-as", name, check=False)
    try:
        _ctl("deploy-as", name)
        yield Scratch(name)
    finally:
        _ctl("drop-as", name, check=False)


@pytest.fixture(scope="module")
def scratch(service) -> Iterator[Scratch]:
    """A scratch resource with the real s1d and ADP files published."""
    with _scratch_resource("harpsfault") as res:
        result = res.ingest(SHARED / "s1d", SHARED / "adp")
        assert result.returncode == 0 and "8 imported" in result.stdout, result.stdout
        yield res


def _make_files(directory: Path, n: int) -> list[str]:
    """``n`` new products (copies of a real s1d, new OBJECT and DATE-OBS).

    Returns their product identifiers.
    """
    directory.mkdir(parents=True, exist_ok=True)
    products = []
    for _ in range(n):
        minute = next(_MINUTES)
        date_obs = (datetime(2010, 1, 1) + timedelta(minutes=minute)).isoformat() + ".000"
        products.append(restamped_s1d(directory / f"fault{minute}.fits",
                                      f"TEST-FAULT-{minute}", date_obs))
    return products


# -- what the archive holds ---------------------------------------------------

def _psql(query: str) -> list[str]:
    out = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-d", "gavo", "-tAc",
                          f"COPY ({query}) TO STDOUT"], capture_output=True, text=True,
                         check=True).stdout
    return out.splitlines()


def _rows(res: Scratch) -> set[str]:
    """Every published row of the resource, its products entry included, as text."""
    return set(_psql(f"SELECT * FROM {res.name}.raw_data")) | set(_psql(
        f"SELECT * FROM dc.products WHERE sourcetable = '{res.name}.raw_data'"))


def _accrefs(res: Scratch) -> set[str]:
    return set(_psql(f"SELECT accref FROM {res.name}.raw_data"))


def _product_ids(res: Scratch) -> set[str]:
    return set(_psql(f"SELECT product_id FROM {res.name}.raw_data"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _archive_files(res: Scratch) -> dict[str, str]:
    """accref-style path -> SHA-256 of every file in the archive tree."""
    return {str(p.relative_to(INPUTS)): _sha256(p)
            for p in (res.resdir / "data").rglob("*") if p.is_file()}


@dataclass(frozen=True)
class State:
    """The published rows and the bytes of their files."""

    rows: set[str]
    files: dict[str, str]


def _published_state(res: Scratch) -> State:
    files = _archive_files(res)
    return State(_rows(res), {a: files.get(a, "MISSING") for a in _accrefs(res)})


def _assert_intact(before: State, res: Scratch) -> None:
    """What was published before is still published, byte for byte."""
    after = _published_state(res)
    assert before.rows <= after.rows, before.rows - after.rows
    assert {a: after.files.get(a) for a in before.files} == before.files


def _assert_consistent(res: Scratch) -> None:
    """Exactly the files the table points to are archived; no leftovers."""
    files = _archive_files(res)
    accrefs = _accrefs(res)
    assert not accrefs - set(files), f"rows without a file: {accrefs - set(files)}"
    assert not set(files) - accrefs, f"files without a row: {set(files) - accrefs}"
    staging = res.resdir / "staging"
    left = [p.name for p in staging.iterdir() if not p.name.startswith(".")] \
        if staging.is_dir() else []
    assert not left, f"left in staging/: {left}"


# -- SIGKILL at a named point ---------------------------------------------------

KILL_POINTS = ["validate", "place", "after-place", "before-import", "after-import"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_run_leaves_published_data_intact_and_a_rerun_completes(
        scratch, tmp_path, point):
    products = _make_files(tmp_path / "batch", 3)
    before = _published_state(scratch)

    killed = scratch.ingest(tmp_path / "batch", fault=point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    _assert_intact(before, scratch)

    rerun = scratch.ingest(tmp_path / "batch")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert set(products) <= _product_ids(scratch)
    _assert_intact(before, scratch)
    _assert_consistent(scratch)

    # nothing the killed run left behind disturbs the next import
    later = _make_files(tmp_path / "later", 1)
    result = scratch.ingest(tmp_path / "later")
    assert result.returncode == 0 and "1 imported" in result.stdout, result.stdout
    assert set(later) <= _product_ids(scratch)
    _assert_consistent(scratch)


def test_later_run_never_publishes_what_a_killed_run_left(scratch, tmp_path):
    abandoned = _make_files(tmp_path / "abandoned", 2)
    other = _make_files(tmp_path / "other", 1)
    before = _published_state(scratch)
    killed = scratch.ingest(tmp_path / "abandoned", fault="before-import")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

    result = scratch.ingest(tmp_path / "other")
    assert result.returncode == 0 and "1 imported" in result.stdout, result.stdout
    published = _product_ids(scratch)
    assert set(other) <= published
    assert not set(abandoned) & published, "a killed run's files were published by another run"
    _assert_intact(before, scratch)
    _assert_consistent(scratch)


# -- SIGKILL while dachs imp is inside its transaction --------------------------

def _admin_conn():
    from gavo import base
    return base.getDBConnection("admin")


@contextlib.contextmanager
def _products_row_held(accref: str) -> Iterator[int]:
    """An open transaction holding a products row for ``accref``.

    An import of the same accref waits inside its own transaction until this
    one ends; it ends with a rollback, so the import then goes on.  Yields
    the backend pid of the holding connection.
    """
    conn = _admin_conn()
    try:
        conn.execute("INSERT INTO dc.products (accref, accesspath, sourcetable)"
                     " VALUES (%(a)s, 'held by a test', 'held by a test')", {"a": accref})
        yield next(iter(conn.query("SELECT pg_backend_pid()")))[0]
    finally:
        conn.rollback()
        conn.close()


def _blocked_by(pid: int) -> int:
    """How many backends wait for the backend ``pid``."""
    return len(_psql(f"SELECT pid FROM pg_stat_activity WHERE {pid} = ANY(pg_blocking_pids(pid))"))


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _start_ingest(res: Scratch, batch: Path, log: Path, *options: str,
                  fault: str | None = None) -> subprocess.Popen:
    """harps-ingest in a process group of its own, output to ``log``."""
    env = {**os.environ, FAULT_ENV: fault} if fault else None
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "harps_service.ingest", "--rd", res.rd, "--no-latents",
             *options, str(batch)], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=env)


def _group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                return True
    return False


@pytest.mark.parametrize("victim", ["harps-ingest", "process group"])
def test_kill_during_dachs_imp(scratch, tmp_path, victim):
    """harps-ingest dies while ``dachs imp`` is inside its transaction.

    ``harps-ingest``: only harps-ingest dies (the OOM killer, ``kill -9 PID``);
    its ``dachs imp`` goes on and commits.  A rerun started meanwhile must
    wait for it rather than tidy away the files it is publishing.
    ``process group``: ``dachs imp`` dies too; PostgreSQL rolls its
    transaction back.  Either way the rerun publishes everything.
    """
    products = _make_files(tmp_path / "batch", 3)
    held = f"{scratch.name}/data/s1d/2010/{products[-1].replace(':', '_')}.fits"
    before = _published_state(scratch)
    with _products_row_held(held) as holder:
        proc = _start_ingest(scratch, tmp_path / "batch", tmp_path / "killed.log")
        try:
            _wait_for(lambda: _blocked_by(holder) or proc.poll() is not None,
                      "dachs imp to wait for the held row")
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()
        finally:
            if proc.poll() is None:
                (os.kill if victim == "harps-ingest" else os.killpg)(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        if victim == "process group":
            _wait_for(lambda: not _group_alive(proc.pid), "the process group to die")
        _assert_intact(before, scratch)
        rerun = _start_ingest(scratch, tmp_path / "batch", tmp_path / "rerun.log")
        # the rerun either waits for the killed run's dachs imp or gets on
        _wait_for(lambda: "waiting" in (tmp_path / "rerun.log").read_text()
                  or _blocked_by(holder) > 1 or rerun.poll() is not None
                  or victim == "process group", "the rerun to start")
    try:
        assert rerun.wait(300) == 0, (tmp_path / "rerun.log").read_text()
    finally:
        if rerun.poll() is None:
            os.killpg(rerun.pid, signal.SIGKILL)
    if victim == "harps-ingest":  # its dachs imp was still running: the rerun waited
        assert "waiting for" in (tmp_path / "rerun.log").read_text()
    assert set(products) <= _product_ids(scratch)
    _assert_intact(before, scratch)
    _assert_consistent(scratch)


def test_kill_during_parallel_validation_leaves_no_process_behind(scratch, tmp_path):
    _make_files(tmp_path / "batch", 5)
    before = _published_state(scratch)
    proc = _start_ingest(scratch, tmp_path / "batch", tmp_path / "killed.log",
                         "--workers", "2", fault="validate")
    assert proc.wait(300) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    try:
        _wait_for(lambda: not _group_alive(proc.pid), "the validation workers to exit",
                  timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    _assert_intact(before, scratch)
    _assert_consistent(scratch)


# -- a full disk ------------------------------------------------------------------

@contextlib.contextmanager
def _small_tmpfs(directory: Path, size: str) -> Iterator[None]:
    """A tmpfs of ``size`` mounted over ``directory`` (owned like the archive)."""
    directory.mkdir(parents=True, exist_ok=True)
    uid, gid = harps_site.owner_ids()  # root: the test requires it
    opts = f"size={size},mode=0775,uid={uid},gid={gid}"
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(directory)],
                           capture_output=True, text=True)
    require(mount.returncode == 0, f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield
    finally:
        if subprocess.run(["umount", str(directory)]).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)])


@pytest.fixture(params=["data", "staging"])
def full_disk(service, request) -> Iterator[tuple[Scratch, str]]:
    """A scratch resource whose ``data/`` or ``staging/`` is a small tmpfs.

    ``data``: 4 MiB, room for one published s1d file (1.5 MB) and one more,
    so a batch of three fills it in the middle.  ``staging``: one page,
    filled before the batch, so the batch manifest cannot be written.
    """
    with _scratch_resource("harpsfull") as res, \
            _small_tmpfs(res.resdir / request.param,
                         "4m" if request.param == "data" else "4k"):
        result = res.ingest(S1D)
        assert result.returncode == 0 and "1 imported" in result.stdout, result.stdout
        if request.param == "staging":
            (res.resdir / "staging" / ".filler").write_bytes(b"x" * 4096)
        yield res, request.param


def test_full_disk_fails_cleanly_and_changes_nothing(full_disk, tmp_path):
    res, where = full_disk
    _make_files(tmp_path / "batch", 3)
    before = _published_state(res)
    n_before = len(_accrefs(res))

    result = res.ingest(tmp_path / "batch")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("IMPORT FAILED")]
    assert len(lines) == 1, result.stdout + result.stderr
    assert "no space left on device" in lines[0].lower()
    assert f"/{res.name}/{where}/" in lines[0], lines[0]  # names the file it could not write
    assert "Traceback" not in result.stderr, result.stderr
    assert len(_accrefs(res)) == n_before
    _assert_intact(before, res)
    _assert_consistent(res)
