"""Load and fault benchmark: a realistic request mix against the running service.

Run as root with the service up (``make demo``), on the service's own
machine: ``.venv/bin/python bench/load.py`` (``--help`` for every option).
Only localhost is ever contacted.

What one run does:

1. Asks TAP for the public spectra (``harps.data``, ``release_date`` before
   now: their DIDs and positions) and for the public spectra with a latent
   vector (``harps.latents``, for the kNN queries).
2. Phases at 10, 25 and 50 concurrent clients (``--clients``), each bounded
   by a request count and a time limit (whichever comes first), after an
   uncounted warm-up.  Every client is a thread with its own keep-alive
   connection that sends the next request as soon as the last one ended
   (closed loop, no think time), drawn at random from the mix:

   ``ssa``         SSA cone search (POS around a real row, SIZE 0.05-0.5 deg)
   ``tap_plain``   TAP sync: a cone with a S/N cut on harps.data, TOP 100
   ``tap_knn``     TAP sync: ``gavo_latentdist`` top 10 for a spectrum's DID
   ``dlmeta``      the datalink document of a spectrum
   ``sdm_full``    the full-resolution SDM spectrum as a binary VOTable
   ``soda_cutout`` SODA cutout, BAND=6.55e-7 6.57e-7 (H alpha), VOTable
   ``preview``     the PNG preview

   The front door (nginx) caches anonymous product answers (dlget).  By
   default (``--products cold``) every product request is spelt so that the
   cache cannot answer it, i.e. a worker computes it, as for the long tail
   of a large archive; ``--products warm`` sends the plain URLs, and with
   the demo's few hundred spectra the cache soon answers nearly all of
   them.  The report says how many answers came from the cache.

   Reported per phase: throughput (successful requests per second of wall
   time), p50/p95/p99 latency of the successful requests per kind and
   overall, errors by kind and class (``http_NNN`` for non-2xx, ``conn``
   for refused/reset connections, ``cut`` for an answer that broke off
   mid-body, ``timeout`` for no complete answer within ``--timeout``
   seconds, ``bad`` for a 200 carrying an error document), the
   server's RSS and the CPU used by server, database and load generator.
3. ``--compare 1,default``: the same phases once per worker set-up,
   interleaved (for each client count: each set-up in turn, the order
   alternating between client counts, so that drifts in the machine's other
   load hit both alike).  Before each phase ``WORKERS=N etc/dachsctl
   restart`` (``default``: no WORKERS, i.e. one worker per core), a wait
   until ``/`` and a trivial TAP query answer, and a warm-up.  Prints the
   ratios default/single side by side and leaves the service in its default
   set-up.  Needs ``etc/dachsctl pids``.
4. ``--soak SECONDS``: one long phase at ``--soak-clients`` that samples the
   server's RSS every ``--soak-interval`` seconds: first/last/max and the
   linear slope in MB per minute (whole run and second half).
5. ``--faults``: (a) SIGKILL one worker (from ``etc/dachsctl pids``) while
   requests are in flight: what the in-flight requests and later ones got,
   whether the other workers kept serving and how long until the killed
   one is back (the supervisor restarts it); skipped without ``pids``;
   (b) ``pg_ctlcluster 15 main restart`` under load: how long until
   requests succeed again without touching DaCHS, and the errors meanwhile.

Server RSS is the sum over the DaCHS worker processes (``etc/dachsctl
pids`` when the command exists, else the ``dachs serve start`` processes)
*and all their descendants* (async TAP jobs, helpers), never nginx or
PostgreSQL; PostgreSQL's PSS (proportional set size, shared buffers counted
once) is recorded separately.  The load generator runs on the same machine
as the server and takes CPU from it; its own CPU use is reported.

Goals (issue 8), printed next to the numbers: at 50 clients no errors,
throughput >= 1.8x the single-worker figure (needs --compare), p95 <= 3 s
for every kind except ``sdm_full``.  Results: a markdown report on stdout,
JSON in bench/out/load-*.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
import requests
from common import REPO, SERVER_URL, log, save

DACHSCTL = str(REPO / "etc" / "dachsctl")
PG_VERSION = "15"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
KINDS = ("ssa", "tap_plain", "tap_knn", "dlmeta", "sdm_full", "soda_cutout", "preview")
# relative weights: searches and datalink documents are frequent, full
# downloads rare (each is a 10-20 MB VOTable built in Python)
DEFAULT_MIX = "ssa=25,tap_plain=10,tap_knn=15,dlmeta=15,sdm_full=4,soda_cutout=15,preview=16"
EXEMPT_P95 = {"sdm_full"}          # no p95 goal for full-resolution downloads
GOAL_P95_S = 3.0
GOAL_SPEEDUP = 1.8
GOAL_CLIENTS = 50
TAP_FLOOR = "SELECT TOP 1 table_name FROM tap_schema.tables"
ERROR_MARKER = b'name="QUERY_STATUS" value="ERROR"'   # VOTable error documents


# ---------------------------------------------------------------- targets


@dataclass
class Targets:
    """Real rows to aim the requests at.

    Attributes
    ----------
    dids : list of str
        Publisher DIDs of public spectra (release date in the past).
    positions : list of (float, float)
        ICRS (ra, dec) in degrees of the same spectra.
    knn_dids : list of str
        Public spectra that have a latent vector (kNN targets).
    """

    dids: list[str]
    positions: list[tuple[float, float]]
    knn_dids: list[str]


def tap_csv(session: requests.Session, base: str, query: str, timeout: float = 60) -> list[
        list[str]]:
    """Run a TAP sync query, return the CSV rows without the header.

    Parameters
    ----------
    session : requests.Session
        The HTTP session to use.
    base : str
        Service root URL.
    query : str
        ADQL.
    timeout : float
        Seconds to wait for the answer.

    Returns
    -------
    list of list of str
        The rows (naive split on commas: only use it for columns without commas).
    """
    r = session.post(f"{base}/tap/sync", timeout=timeout, data={
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": "csv"})
    if r.status_code != 200 or "QUERY_STATUS" in r.text[:1000]:
        raise RuntimeError(f"TAP query failed ({r.status_code}): {r.text[:500]}")
    return [ln.split(",") for ln in r.text.splitlines()[1:] if ln]


def fetch_targets(base: str, limit: int = 5000) -> Targets:
    """Public spectra, their positions, and those with latents, from TAP.

    Parameters
    ----------
    base : str
        Service root URL.
    limit : int
        At most this many spectra of each list.

    Returns
    -------
    Targets
    """
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    s = local_session()
    rows = tap_csv(s, base, f"SELECT TOP {limit} ssa_pubdid, COORD1(ssa_location) AS ra, "
                   f"COORD2(ssa_location) AS dec FROM harps.data "
                   f"WHERE release_date < '{now}' AND ssa_location IS NOT NULL")
    knn = tap_csv(s, base, f"SELECT TOP {limit} l.ssa_pubdid FROM harps.latents AS l "
                  f"JOIN harps.data AS d ON l.ssa_pubdid = d.ssa_pubdid "
                  f"WHERE d.release_date < '{now}' AND l.encode_flags = 0")
    if not rows:
        raise SystemExit("no public spectra in harps.data: run `make demo` first")
    return Targets(dids=[r[0] for r in rows],
                   positions=[(float(r[1]), float(r[2])) for r in rows],
                   knn_dids=[r[0] for r in knn])


# ---------------------------------------------------------------- requests


@dataclass
class Req:
    """One HTTP request to send: method, URL, query string (GET) or form (POST)."""

    kind: str
    method: str
    url: str
    params: dict[str, str] = field(default_factory=dict)
    query: str = ""


def encode_query(params: dict[str, str], rng: random.Random, vary: bool) -> str:
    """A query string; with ``vary``, one of many equivalent spellings.

    Any character may be sent percent-encoded (RFC 3986, 2.3: ``%61`` is
    ``a``), and DaCHS decodes every spelling to the same values; the front
    door's cache, however, is keyed on the URI as sent, so a varied spelling
    misses it.  With ``vary``, each letter, digit or ``.-_~`` is encoded
    with probability 0.3 (a DID has about 70 of them: more spellings than
    requests).  `send` passes the string on unchanged (requests would decode
    such escapes again).

    Parameters
    ----------
    params : dict
        Names and values.
    rng : random.Random
        The client's generator.
    vary : bool
        Pick a random spelling (otherwise the usual one).

    Returns
    -------
    str
        ``name=value&...`` (without the ``?``).
    """
    def enc(v: str) -> str:
        if not vary:
            return urllib.parse.quote(v, safe="")
        return "".join(f"%{ord(c):02X}" if c.isascii() and (c.isalnum() or c in ".-_~")
                       and rng.random() < 0.3 else urllib.parse.quote(c, safe="") for c in v)
    return "&".join(f"{k}={enc(v)}" for k, v in params.items())


def band(lo: float, hi: float, rng: random.Random, vary: bool) -> str:
    """A BAND value ``lo hi`` in metres; with ``vary``, in one of many equal spellings."""
    if not vary:
        return f"{lo:g} {hi:g}"
    return f"{lo:.{rng.randint(2, 9)}e} {hi:.{rng.randint(2, 9)}e}"


def make_request(kind: str, rng: random.Random, t: Targets, base: str,
                 cold: bool = True, spell: random.Random | None = None) -> Req:
    """Draw a request of the given kind aimed at a random real row.

    Long because it is one flat dispatch over the seven request kinds of the mix:
    each branch is two or three lines, and one table of them reads better than
    seven small functions.

    Parameters
    ----------
    kind : str
        One of KINDS.
    rng : random.Random
        The client's own generator.
    t : Targets
        Rows to aim at.
    base : str
        Service root URL.
    cold : bool
        Spell the query of product requests (dlget) so that the front
        door's cache cannot answer them (see `encode_query`).
    spell : random.Random, optional
        The generator for those spellings: not seeded, so that a second
        phase with the same seeded requests never meets the cache entries
        the first one left (default: ``rng``).

    Returns
    -------
    Req
    """
    spell = spell or rng
    i = rng.randrange(len(t.dids))
    did = t.dids[i]
    ra, dec = t.positions[i]
    # a cone around a real row, not exactly on it
    ra, dec = (ra + rng.uniform(-0.02, 0.02)) % 360, max(-90.0, min(90.0, dec + rng.uniform(
        -0.02, 0.02)))
    if kind == "ssa":
        return Req(kind, "GET", f"{base}/harps/q/ssa/ssap.xml", query=encode_query({
            "REQUEST": "queryData", "POS": f"{ra:.5f},{dec:.5f}",
            "SIZE": str(rng.choice((0.05, 0.1, 0.2, 0.5)))}, rng, False))
    if kind == "tap_plain":
        q = (f"SELECT TOP 100 ssa_pubdid, ssa_targname, ssa_snr, berv, airmass FROM harps.data "
             f"WHERE 1=CONTAINS(ssa_location, CIRCLE('ICRS', {ra:.5f}, {dec:.5f}, 1.0)) "
             f"AND ssa_snr > {rng.choice((0, 10, 50))} ORDER BY ssa_snr DESC")
        return Req(kind, "POST", f"{base}/tap/sync",
                   {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": q})
    if kind == "tap_knn":
        target = rng.choice(t.knn_dids) if t.knn_dids else did
        q = (f"SELECT TOP 10 ssa_pubdid, gavo_latentdist(knn, '{target}') AS d "
             f"FROM harps.latents ORDER BY d")
        return Req(kind, "POST", f"{base}/tap/sync",
                   {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": q})
    if kind == "dlmeta":
        return Req(kind, "GET", f"{base}/harps/q/sdl/dlmeta",
                   query=encode_query({"ID": did}, rng, False))
    if kind == "sdm_full":
        return Req(kind, "GET", f"{base}/harps/q/sdl/dlget", query=encode_query(
            {"ID": did, "FORMAT": "application/x-votable+xml"}, spell, cold))
    if kind == "soda_cutout":
        return Req(kind, "GET", f"{base}/harps/q/sdl/dlget", query=encode_query(
            {"ID": did, "BAND": band(6.55e-7, 6.57e-7, spell, cold)}, spell, cold))
    if kind == "preview":
        return Req(kind, "GET", f"{base}/harps/q/pv/dlget",
                   query=encode_query({"ID": did}, spell, cold))
    raise ValueError(kind)


def local_session() -> requests.Session:
    """A session that never uses a proxy from the environment and never retries."""
    s = requests.Session()
    s.trust_env = False           # no HTTP(S)_PROXY: localhost only, directly
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


@dataclass
class Outcome:
    """What one request got.

    Attributes
    ----------
    kind : str
        Request kind.
    t0 : float
        Start, seconds on the run's monotonic clock.
    latency : float
        Seconds until the body was complete (or the failure).
    result : str
        ``ok``, ``http_NNN``, ``conn`` (refused, reset before an answer),
        ``cut`` (the answer broke off mid-body), ``timeout``, ``bad`` (an
        error document with status 200) or ``other``.
    nbytes : int
        Body bytes received.
    detail : str
        Error detail (empty when ok).
    cache : str
        The front door's ``X-Cache-Status`` (HIT, MISS, ...; empty if none).
    """

    kind: str
    t0: float
    latency: float
    result: str
    nbytes: int
    detail: str = ""
    cache: str = ""


def send(session: requests.Session, req: Req, timeout: float, clock0: float) -> Outcome:
    """Send a request, read the whole body, classify the outcome.

    Parameters
    ----------
    session : requests.Session
        The client's session (keep-alive connection).
    req : Req
        What to send.
    timeout : float
        Seconds for the complete answer (connect 5 s at most); longer is a timeout.
    clock0 : float
        ``time.perf_counter()`` at the start of the run.

    Returns
    -------
    Outcome
    """
    t0 = time.perf_counter()
    deadline = t0 + timeout
    nbytes, head, result, detail, cache = 0, b"", "ok", "", ""
    try:
        kw: dict[str, Any] = {"timeout": (min(5.0, timeout), timeout), "stream": True}
        if req.method == "POST":
            r = session.post(req.url, data=req.params, **kw)
        else:
            prep = session.prepare_request(requests.Request("GET", req.url))
            prep.url = f"{req.url}?{req.query}"      # as spelt (requests would requote it)
            r = session.send(prep, **kw)
        with r:
            cache = r.headers.get("X-Cache-Status", "")
            for chunk in r.iter_content(256 * 1024):
                if len(head) < 4096:
                    head += chunk[:4096]
                nbytes += len(chunk)
                if time.perf_counter() > deadline:
                    result, detail = "timeout", f"body incomplete after {timeout} s"
                    break
        if result == "ok" and not 200 <= r.status_code < 300:
            result, detail = f"http_{r.status_code}", head[:200].decode("utf-8", "replace")
        elif result == "ok" and ERROR_MARKER in head:
            # the message: the text of the INFO element
            msg = head.split(ERROR_MARKER, 1)[1].split(b">", 1)[-1].split(b"</INFO>")[0]
            result, detail = "bad", msg[:300].decode("utf-8", "replace").strip()
    except requests.exceptions.Timeout as e:
        result, detail = "timeout", str(e)[:200]
    except requests.exceptions.ChunkedEncodingError as e:
        result, detail = "cut", f"answer cut off after {nbytes} bytes: {str(e)[:150]}"
    except requests.exceptions.ConnectionError as e:
        # refused, reset, closed without an answer; a read timeout inside a
        # streamed body also lands here in urllib3 2
        result = "timeout" if "timed out" in str(e) else "conn"
        detail = str(e)[:200]
    except requests.exceptions.RequestException as e:
        result, detail = "other", f"{type(e).__name__}: {str(e)[:200]}"
    t1 = time.perf_counter()
    return Outcome(req.kind, t0 - clock0, t1 - t0, result, nbytes, detail, cache)


# ---------------------------------------------------------------- processes


def dachsctl_has_pids() -> bool:
    """True when ``etc/dachsctl pids`` exists (the multi-worker set-up)."""
    try:
        r = subprocess.run([DACHSCTL, "pids"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and bool(parse_pids(r.stdout))


def parse_pids(text: str) -> dict[str, int]:
    """``NAME PID`` lines to {name: pid}; other lines are ignored."""
    out = {}
    for ln in text.splitlines():
        parts = ln.split()
        if len(parts) >= 2 and parts[-1].isdigit():
            out[" ".join(parts[:-1])] = int(parts[-1])
    return out


def worker_pids(use_dachsctl: bool) -> dict[str, int]:
    """The DaCHS worker processes by name: {name: pid}.

    Parameters
    ----------
    use_dachsctl : bool
        Ask ``etc/dachsctl pids`` (the workers supervisord has in RUNNING
        state); otherwise the ``dachs serve start`` processes, named
        ``serve:<pid>`` (the single-server set-up).

    Returns
    -------
    dict
        Worker name to pid.
    """
    if use_dachsctl:
        try:
            r = subprocess.run([DACHSCTL, "pids"], capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                return parse_pids(r.stdout)
        except (OSError, subprocess.TimeoutExpired):
            pass
        return {}
    return {f"serve:{pid}": pid for pid in sorted(serve_pids())}


def serve_pids() -> set[int]:
    """Pids of the ``dachs serve start`` processes (every DaCHS server worker).

    What the sampler and the fault watchers poll: ``etc/dachsctl pids``
    runs supervisorctl, 0.2 CPU s a call, too much every quarter second on a
    machine whose two cores also run the server; the two agree (checked at
    the start of a run).
    """
    me = os.getpid()
    out = set()
    for p in psutil.process_iter():
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if p.pid != me and "serve" in cmd and "start" in cmd and any(
                c.endswith("dachs") or c.endswith("gavo") for c in cmd):
            out.add(p.pid)
    return out


def listening(pid: int) -> bool:
    """True when the process has a listening TCP socket (a worker that accepts requests)."""
    try:
        return any(c.status == psutil.CONN_LISTEN
                   for c in psutil.Process(pid).connections(kind="tcp"))
    except psutil.Error:
        return False


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (empty if it is gone)."""
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.Error:
        return []


def postgres_procs() -> tuple[list[psutil.Process], list[psutil.Process]]:
    """PostgreSQL's postmaster(s) and the other postgres processes (backends, helpers)."""
    procs = {}
    for p in psutil.process_iter():
        # as_dict, not process_iter(attrs): the iterator's cached Process
        # objects share one ``info`` between threads
        try:
            d = p.as_dict(["username", "name", "ppid"])
        except psutil.Error:
            continue
        if d["username"] == "postgres" and (d["name"] or "").startswith("postgres"):
            procs[p.pid] = (p, d["ppid"])
    roots = [p for p, ppid in procs.values() if ppid not in procs]
    return roots, [p for p, ppid in procs.values() if ppid in procs]


def group_cpu_s(roots: list[psutil.Process], others: list[psutil.Process]) -> float:
    """CPU seconds of a process group as a snapshot total.

    The roots count with their ended (reaped) children, the live others
    with their own time: when a child ends, its time moves from the second
    term into its parent's children times, so differences of two snapshots
    count every CPU second once (as long as the roots stay the same).
    """
    total = 0.0
    for p in roots:
        try:
            c = p.cpu_times()
            total += c.user + c.system + c.children_user + c.children_system
        except psutil.Error:
            pass
    for p in others:
        try:
            c = p.cpu_times()
            total += c.user + c.system
        except psutil.Error:
            pass
    return total


class Sampler(threading.Thread):
    """Samples RSS of the DaCHS workers (+ descendants) and PSS of PostgreSQL.

    Parameters
    ----------
    interval : float
        Seconds between samples.
    clock0 : float
        ``time.perf_counter()`` at the start of the run.
    """

    def __init__(self, interval: float, clock0: float) -> None:
        super().__init__(daemon=True)
        self.interval, self.clock0 = interval, clock0
        self.samples: list[dict[str, Any]] = []
        self._stop_evt = threading.Event()

    def dachs_procs(self) -> tuple[set[int], list[psutil.Process], list[psutil.Process]]:
        """The workers' pids, their processes and their live descendants."""
        pids = serve_pids()
        roots, others = [], []
        for pid in pids:
            t = tree(pid)
            roots += t[:1]
            others += t[1:]
        return pids, roots, others

    def sample(self) -> dict[str, Any]:
        """Take one sample now and append it to ``samples``."""
        pids, roots, others = self.dachs_procs()
        rss = 0.0
        n = 0
        for p in roots + others:
            try:
                rss += p.memory_info().rss
                n += 1
            except psutil.Error:
                pass
        pss = 0.0
        for p in sum(postgres_procs(), []):
            try:
                pss += p.memory_full_info().pss
            except psutil.Error:
                pass
        s = {"t": time.perf_counter() - self.clock0, "rss_mb": rss / 2**20, "procs": n,
             "workers": len(pids), "pg_pss_mb": pss / 2**20, "pids": sorted(pids)}
        self.samples.append(s)
        return s

    def cpu(self) -> dict[str, tuple[float, frozenset[int]]]:
        """CPU seconds so far (snapshot totals) of the DaCHS workers and of PostgreSQL.

        Returns
        -------
        dict
            {"dachs"|"postgres": (CPU seconds, pids of the group's roots)}:
            differences are only meaningful between snapshots with the same roots.
        """
        _, roots, others = self.dachs_procs()
        pg_roots, pg_others = postgres_procs()
        return {"dachs": (group_cpu_s(roots, others), frozenset(p.pid for p in roots)),
                "postgres": (group_cpu_s(pg_roots, pg_others),
                             frozenset(p.pid for p in pg_roots))}

    def run(self) -> None:
        while not self._stop_evt.is_set():
            try:
                self.sample()
            except Exception as e:      # never kill the run over a sample
                log(f"RSS sample failed: {e}")
            self._stop_evt.wait(self.interval)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join()


# ---------------------------------------------------------------- phases


@dataclass
class Config:
    """Settings of a run (from the command line)."""

    base: str
    mix: dict[str, float]
    timeout: float
    seed: int
    interval: float
    use_dachsctl: bool
    error_pause: float = 0.2
    cold: bool = True
    clock0: float = field(default_factory=time.perf_counter)


def run_load(cfg: Config, targets: Targets, clients: int, max_requests: int | None,
             max_seconds: float,
             during: Callable[[threading.Event], None] | None = None,
             seed: int = 0) -> tuple[list[Outcome], float]:
    """Run closed-loop clients until the request count or the time limit is reached.

    Long because the client thread, its stop conditions and the optional fault
    hook share the per-run state (deadline, counters, stop event); splitting
    them would pass that state around in closures anyway.

    Parameters
    ----------
    cfg : Config
        Run settings.
    targets : Targets
        Rows to aim at.
    clients : int
        Concurrent clients (threads, one keep-alive connection each).
    max_requests : int or None
        Stop issuing after this many requests (None: time limit only).
    max_seconds : float
        Stop issuing after this many seconds; requests in flight finish
        (at most ``cfg.timeout`` later).
    during : callable, optional
        Run in the calling thread while the clients run, with an event
        that, when set, stops the clients early (fault scenarios).
    seed : int
        Seed of the clients' generators.

    Returns
    -------
    outcomes : list of Outcome
    wall : float
        Seconds from the first request to the last answer.
    """
    kinds = list(cfg.mix)
    weights = [cfg.mix[k] for k in kinds]
    lock = threading.Lock()
    issued = [0]
    stop = threading.Event()
    outcomes: list[Outcome] = []
    t_start = time.perf_counter()
    deadline = t_start + max_seconds

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        spell = random.Random()         # seeded from the OS: see make_request
        session = local_session()
        while not stop.is_set():
            with lock:
                if (max_requests is not None and issued[0] >= max_requests) \
                        or time.perf_counter() >= deadline:
                    break
                issued[0] += 1
            kind = rng.choices(kinds, weights)[0]
            o = send(session, make_request(kind, rng, targets, cfg.base, cfg.cold, spell),
                     cfg.timeout, cfg.clock0)
            outcomes.append(o)
            if o.result != "ok":
                session.close()       # a fresh connection after any failure
                session = local_session()
                # a client does not hammer a failing service in a tight loop
                stop.wait(cfg.error_pause)
        session.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for th in threads:
        th.start()
    if during is not None:
        during(stop)
        stop.set()
    for th in threads:
        th.join()
    return outcomes, time.perf_counter() - t_start


def pct(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds (NaN without values)."""
    if not values:
        return {"n": 0, "p50_ms": float("nan"), "p95_ms": float("nan"),
                "p99_ms": float("nan"), "max_ms": float("nan")}
    a = np.asarray(values) * 1e3
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": int(a.size), "p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99),
            "max_ms": float(a.max())}


def summarise(outcomes: list[Outcome], wall: float) -> dict[str, Any]:
    """Throughput, latency percentiles (successful requests) and errors of a phase.

    Parameters
    ----------
    outcomes : list of Outcome
        All requests of the phase.
    wall : float
        Seconds of the phase.

    Returns
    -------
    dict
        ``requests``, ``ok``, ``wall_s``, ``throughput_rps`` (successful per
        second), ``latency`` ({kind or ``all``: pct}), ``errors`` ({kind:
        {class: count}}), ``error_classes`` ({class: count}),
        ``error_samples`` (a few details per class), ``cache`` ({kind:
        {X-Cache-Status: count}} of the successful requests), ``mbytes``.
    """
    ok = [o for o in outcomes if o.result == "ok"]
    lat = {k: pct([o.latency for o in ok if o.kind == k]) for k in KINDS}
    lat["all"] = pct([o.latency for o in ok])
    errors: dict[str, Counter] = defaultdict(Counter)
    samples: dict[str, list[str]] = defaultdict(list)
    for o in outcomes:
        if o.result != "ok":
            errors[o.kind][o.result] += 1
            if len(samples[o.result]) < 3:
                samples[o.result].append(f"{o.kind}: {o.detail}")
    classes = Counter(o.result for o in outcomes if o.result != "ok")
    cache: dict[str, Counter] = defaultdict(Counter)
    for o in ok:
        if o.cache:
            cache[o.kind][o.cache] += 1
    return {"requests": len(outcomes), "ok": len(ok), "wall_s": wall,
            "throughput_rps": len(ok) / wall if wall else 0.0,
            "latency": lat, "errors": {k: dict(v) for k, v in errors.items()},
            "error_classes": dict(classes), "error_samples": dict(samples),
            "cache": {k: dict(v) for k, v in cache.items()},
            "mbytes": sum(o.nbytes for o in outcomes) / 1e6}


def rss_stats(samples: list[dict[str, float]], t0: float, t1: float) -> dict[str, float]:
    """First/last/max server RSS (MB) and workers seen between t0 and t1."""
    s = [x for x in samples if t0 <= x["t"] <= t1]
    if not s:
        return {}
    rss = [x["rss_mb"] for x in s]
    return {"first_mb": rss[0], "last_mb": rss[-1], "max_mb": max(rss),
            "pg_pss_max_mb": max(x["pg_pss_mb"] for x in s),
            "workers_min": min(x["workers"] for x in s),
            "workers_max": max(x["workers"] for x in s), "samples": len(s)}


def phase(cfg: Config, targets: Targets, sampler: Sampler, clients: int, max_requests: int | None,
          max_seconds: float, label: str, seed: int) -> dict[str, Any]:
    """One measured phase: load, then summary with RSS and CPU.

    Long because it assembles one report record field by field (latencies per
    kind, errors, RSS, CPU per process group): a straight list of fields.

    Parameters
    ----------
    cfg : Config
        Run settings.
    targets : Targets
        Rows to aim at.
    sampler : Sampler
        The running RSS/CPU sampler.
    clients : int
        Concurrent clients.
    max_requests : int or None
        Request bound.
    max_seconds : float
        Time bound.
    label : str
        For the log.
    seed : int
        Client seed.

    Returns
    -------
    dict
        `summarise` plus ``clients``, ``rss``, ``cpu_cores`` (DaCHS workers,
        PostgreSQL, this client, the whole machine and the rest: ``other``),
        ``dachs_cpu_ms_per_request``, ``worker_pids_changed``,
        ``postgres_restarted`` and ``disturbed`` (either).
    """
    log(f"{label}: {clients} clients, at most {max_requests or 'unbounded'} requests "
        f"or {max_seconds:.0f} s")
    first = sampler.sample()
    t0 = time.perf_counter() - cfg.clock0
    cpu0, me0, sys0 = sampler.cpu(), psutil.Process().cpu_times(), busy_cpu_s()
    outcomes, wall = run_load(cfg, targets, clients, max_requests, max_seconds, seed=seed)
    last = sampler.sample()
    t1 = time.perf_counter() - cfg.clock0
    cpu1, me1, sys1 = sampler.cpu(), psutil.Process().cpu_times(), busy_cpu_s()
    res = summarise(outcomes, wall)
    res["clients"] = clients
    res["rss"] = rss_stats(sampler.samples, t0, t1)
    # NaN where the processes were restarted meanwhile (the totals restart too)
    cores = {g: (cpu1[g][0] - cpu0[g][0]) / wall if cpu1[g][1] == cpu0[g][1] else float("nan")
             for g in ("dachs", "postgres")}
    cores |= {"client": (me1.user + me1.system - me0.user - me0.system) / wall,
              "machine": (sys1 - sys0) / wall}
    # nginx, the kernel and whatever else runs on the machine (other
    # people's tests): a large share means the phase was disturbed
    rest = cores["machine"] - cores["dachs"] - cores["postgres"] - cores["client"]
    cores["other"] = rest if rest != rest else max(0.0, rest)      # NaN stays NaN
    res["cpu_cores"] = cores
    res["dachs_cpu_ms_per_request"] = (1e3 * cores["dachs"] / res["throughput_rps"]
                                       if res["throughput_rps"] else float("nan"))
    # a worker set that changed under us (a restart by someone else, a crash)
    res["worker_pids_changed"] = any(
        x["pids"] != first["pids"] for x in sampler.samples if t0 - 1 <= x["t"] <= t1) \
        or last["pids"] != first["pids"]
    res["postgres_restarted"] = cpu1["postgres"][1] != cpu0["postgres"][1]
    res["disturbed"] = res["worker_pids_changed"] or res["postgres_restarted"]
    errs = sum(res["error_classes"].values())
    log(f"{label}: {res['ok']}/{res['requests']} ok in {wall:.1f} s = "
        f"{res['throughput_rps']:.1f} req/s, p95 {res['latency']['all']['p95_ms']:.0f} ms, "
        f"{errs} errors {res['error_classes'] or ''}; CPU cores DaCHS {cores['dachs']:.2f}, "
        f"PostgreSQL {cores['postgres']:.2f}, client {cores['client']:.2f}, other "
        f"{cores['other']:.2f}" + ("; WORKER PIDS CHANGED" if res["worker_pids_changed"] else "")
        + ("; POSTGRESQL RESTARTED" if res["postgres_restarted"] else ""))
    return res


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, not idle or iowait)."""
    c = psutil.cpu_times()
    return sum(c) - c.idle - getattr(c, "iowait", 0.0) - getattr(c, "guest", 0.0) \
        - getattr(c, "guest_nice", 0.0)


# ---------------------------------------------------------------- service control


def answers(base: str) -> bool:
    """True when the front door ``/`` and a trivial TAP query answer 200."""
    s = local_session()
    try:
        if s.get(f"{base}/", timeout=10).status_code != 200:
            return False
        tap_csv(s, base, TAP_FLOOR, timeout=20)
        return True
    except (requests.exceptions.RequestException, RuntimeError):
        return False
    finally:
        s.close()


def wait_ready(base: str, timeout: float) -> float:
    """Poll until the service answers (connection refused is retried).

    Parameters
    ----------
    base : str
        Service root URL.
    timeout : float
        Give up after this many seconds.

    Returns
    -------
    float
        Seconds waited.
    """
    t0 = time.perf_counter()
    while not answers(base):
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"{base} does not answer after {timeout:.0f} s")
        time.sleep(1)
    return time.perf_counter() - t0


def restart(workers: str, base: str, ready_timeout: float) -> dict[str, Any]:
    """``WORKERS=N etc/dachsctl restart`` (``default``: without WORKERS) and wait.

    Parameters
    ----------
    workers : str
        ``default`` or a worker count.
    base : str
        Service root URL.
    ready_timeout : float
        Seconds to wait for the service to answer.

    Returns
    -------
    dict
        ``restart_s`` (the command), ``ready_s`` (then until it answered),
        ``pids`` (workers after the restart).
    """
    env = dict(os.environ)
    env.pop("WORKERS", None)
    if workers != "default":
        env["WORKERS"] = workers
    log(f"restarting the service: {'WORKERS=' + workers + ' ' if workers != 'default' else ''}"
        f"etc/dachsctl restart")
    want = int(workers) if workers != "default" else None
    for attempt in range(3):
        t0 = time.perf_counter()
        r = subprocess.run([DACHSCTL, "restart"], env=env, capture_output=True, text=True)
        t1 = time.perf_counter()
        if r.returncode != 0:
            log(f"dachsctl restart failed (attempt {attempt + 1}): {r.stderr.strip()[-300:]}")
            time.sleep(5)
            continue
        ready = wait_ready(base, ready_timeout)
        pids = worker_pids(True)
        # someone else's restart can overtake ours with another worker count
        if want is None or len(pids) == want:
            break
        log(f"{len(pids)} workers run, not {want} (attempt {attempt + 1}); restarting again")
        time.sleep(5)
    else:
        raise SystemExit(f"could not start the service with WORKERS={workers}")
    log(f"service answers ({ready:.1f} s after the restart), workers: {pids}")
    return {"restart_s": t1 - t0, "ready_s": ready, "pids": pids}


# ---------------------------------------------------------------- benchmark parts


def run_phases(cfg: Config, targets: Targets, sampler: Sampler, args: argparse.Namespace,
               label: str, clients: list[int], setting: str | None = None) -> dict[str, Any]:
    """Warm-up, then one phase per client count.

    A phase is run again (up to ``--retries`` times) when it was disturbed:
    the worker processes were not those of the warm-up or changed during it,
    or PostgreSQL was restarted (someone else restarted the service, a
    worker died).  In ``--compare`` runs (``setting`` given) the service is
    first restarted again with our worker count if someone else changed it.
    """
    def warm_up() -> list[int]:
        log(f"{label}: warm-up, {args.warmup} requests at 4 clients (not counted)")
        run_load(cfg, targets, 4, args.warmup, 120, seed=99)
        return sorted(serve_pids())

    # dachsctl's default is one worker per core (nproc)
    expected_n = (len(serve_pids()) if setting is None else
                  int(setting) if setting.isdigit() else len(os.sched_getaffinity(0)))
    expected = warm_up()
    out = {}
    for c in clients:
        for attempt in range(args.retries + 1):
            for _ in range(3):
                if setting is None or len(expected) == expected_n:
                    break
                log(f"{label}: {len(expected)} workers run, not {expected_n} (someone "
                    f"else restarted the service); restarting with ours")
                restart(setting, cfg.base, args.ready_timeout)
                expected = warm_up()
            res = phase(cfg, targets, sampler, c, args.requests, args.duration,
                        f"{label} {c} clients", seed=c)
            res["attempt"] = attempt + 1
            if res["rss"] and (sorted(sampler.samples[-1]["pids"]) != expected or (
                    setting is not None and not res["rss"]["workers_min"]
                    == res["rss"]["workers_max"] == expected_n)):
                res["worker_pids_changed"] = res["disturbed"] = True
            if not res["disturbed"]:
                break
            log(f"{label} {c} clients: the workers or PostgreSQL were restarted during the "
                f"phase (by someone else?); " + ("running it again" if attempt < args.retries
                                                 else "keeping it, marked"))
            wait_ready(cfg.base, args.ready_timeout)
            expected = warm_up()
        out[str(c)] = res
    return out


def soak(cfg: Config, targets: Targets, args: argparse.Namespace) -> dict[str, Any]:
    """Fixed concurrency for ``--soak`` seconds, RSS every ``--soak-interval`` s.

    Returns
    -------
    dict
        The phase summary plus ``rss_series`` ([t_s, rss_mb]), first/last/max
        RSS and the linear slope (MB/min) over the whole run and its second half.
    """
    sampler = Sampler(args.soak_interval, cfg.clock0)
    sampler.sample()
    sampler.start()
    try:
        res = phase(cfg, targets, sampler, args.soak_clients, None, args.soak,
                    f"soak {args.soak:.0f} s", seed=7)
    finally:
        sampler.stop()
    t = np.array([s["t"] for s in sampler.samples])
    rss = np.array([s["rss_mb"] for s in sampler.samples])
    pg = np.array([s["pg_pss_mb"] for s in sampler.samples])
    minutes = (t - t[0]) / 60

    def slope(y: np.ndarray, sel: np.ndarray) -> float:
        return float(np.polyfit(minutes[sel], y[sel], 1)[0]) if sel.sum() >= 3 else float("nan")

    every = np.ones(t.size, bool)
    half = minutes >= minutes[-1] / 2
    res.update({
        "rss_series": [[round(float(a), 1), round(float(b), 1)]
                       for a, b in zip(t - t[0], rss, strict=True)],
        "rss_first_mb": float(rss[0]), "rss_last_mb": float(rss[-1]),
        "rss_max_mb": float(rss.max()),
        "rss_slope_mb_per_min": slope(rss, every),
        "rss_slope_second_half_mb_per_min": slope(rss, half),
        "pg_pss_first_mb": float(pg[0]), "pg_pss_last_mb": float(pg[-1]),
        "pg_pss_slope_mb_per_min": slope(pg, every),
        "workers_seen": sorted({s["workers"] for s in sampler.samples})})
    return res


def in_window(outcomes: list[Outcome], t0: float, t1: float) -> dict[str, Any]:
    """Outcomes of the requests that started in [t0, t1)."""
    sel = [o for o in outcomes if t0 <= o.t0 < t1]
    return {"requests": len(sel), "ok": sum(o.result == "ok" for o in sel),
            "errors": dict(Counter(f"{o.kind}:{o.result}" for o in sel if o.result != "ok"))}


def watch_pids(seconds: float, changes: list[tuple[float, list[int]]], clock0: float,
               until: Callable[[set[int]], bool] | None = None) -> set[int] | None:
    """Poll the worker processes for a while, recording every change of their set.

    Parameters
    ----------
    seconds : float
        How long to watch.
    changes : list
        (run time, sorted pids) is appended whenever the set differs from the last entry.
    clock0 : float
        ``time.perf_counter()`` at the start of the run.
    until : callable, optional
        Stop early (and return the set) as soon as it returns True for the set.

    Returns
    -------
    set or None
        The set that satisfied ``until``; None otherwise.
    """
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        now = serve_pids()
        if not changes or sorted(now) != changes[-1][1]:
            changes.append((time.perf_counter() - clock0, sorted(now)))
        if until is not None and until(now):
            return now
        time.sleep(0.25)
    return None


def timeline(outcomes: list[Outcome], t_ref: float) -> list[dict[str, Any]]:
    """Requests per second of start time relative to ``t_ref``: ok and errors by class."""
    bins: dict[int, Counter] = defaultdict(Counter)
    for o in outcomes:
        bins[int(np.floor(o.t0 - t_ref))][o.result] += 1
    return [{"s": s, **bins[s]} for s in sorted(bins)]


def error_seconds(tl: list[dict[str, Any]]) -> str:
    """The seconds of a timeline that had errors, compactly: ``+0s: 3 ok, http_502 2; ...``."""
    parts = []
    for b in tl:
        errs = {k: v for k, v in b.items() if k not in ("s", "ok")}
        if errs:
            parts.append(f"{b['s']:+d}s: {b.get('ok', 0)} ok, "
                         + ", ".join(f"{k} {v}" for k, v in sorted(errs.items())))
    return "; ".join(parts) or "none"


def fault_kill_worker(cfg: Config, targets: Targets, args: argparse.Namespace) -> dict[str, Any]:
    """SIGKILL one worker under load; see what clients got and whether it comes back.

    Returns
    -------
    dict
        ``victim``, the outcomes of the requests in flight at the kill
        (``in_flight``), of those started while the worker was away
        (``while_down``) and after it was back (``after``); ``back_s`` (kill
        to a new pid under the victim's name, None if it never came back
        within ``--fault-wait``), the CPU seconds each surviving worker used
        while the victim was away and the new worker used afterwards, the
        longest latency, the number of timeouts (hangs), a per-second
        ``timeline`` around the kill and ``disturbed`` (other worker changes
        than ours were seen: the scenario is run again, ``--retries``).
    """
    if not dachsctl_has_pids():
        return {"skipped": "etc/dachsctl has no `pids` command (single DaCHS server, no "
                           "supervisor): killing it would take the service down"}
    for attempt in range(args.retries + 1):
        before = worker_pids(True)
        if len(before) < 2:
            return {"skipped": f"only {len(before)} worker(s) running: {before}"}
        info = _kill_worker_once(cfg, targets, args, before)
        info["attempt"] = attempt + 1
        if not info["disturbed"]:
            break
        log("fault (a): the worker set changed in other ways than our kill (a restart by "
            "someone else?); " + ("running it again" if attempt < args.retries else
                                  "keeping it, marked"))
        wait_ready(cfg.base, args.ready_timeout)
    return info


def _kill_worker_once(cfg: Config, targets: Targets, args: argparse.Namespace,
                      before: dict[str, int]) -> dict[str, Any]:
    name, victim = sorted(before.items())[0]
    survivors = {n: p for n, p in before.items() if n != name}
    info: dict[str, Any] = {"workers_before": before, "victim": {name: victim}}
    changes: list[tuple[float, list[int]]] = [(0.0, sorted(before.values()))]
    pg_before = {p.pid for p in postgres_procs()[0]}

    def during(stop: threading.Event) -> None:
        watch_pids(args.fault_pre, changes, cfg.clock0)
        cpu0 = {n: cpu_of(p) for n, p in survivors.items()}
        info["t_kill"] = time.perf_counter() - cfg.clock0
        log(f"fault (a): SIGKILL worker {name} (pid {victim})")
        os.kill(victim, signal.SIGKILL)
        t_kill = time.perf_counter()
        # back = a new worker process that accepts connections
        new = watch_pids(args.fault_wait, changes, cfg.clock0, until=lambda now: any(
            listening(p) for p in now - set(before.values())))
        t_back = time.perf_counter()
        info["t_back"] = t_back - cfg.clock0
        info["back_s"] = (t_back - t_kill) if new else None
        spawned = next((t for t, pids in changes if set(pids) - set(before.values())), None)
        info["spawned_s"] = (spawned - info["t_kill"]) if spawned is not None else None
        info["survivor_cpu_s_while_down"] = {n: cpu_of(p) - cpu0[n] for n, p in survivors.items()}
        log(f"fault (a): {name} back (a new process accepting connections) after "
            f"{info['back_s']:.1f} s" if new else
            f"fault (a): {name} not back after {args.fault_wait:.0f} s")
        new_pid = max(new - set(before.values()), default=None) if new else None
        c_new = cpu_of(new_pid) if new_pid else 0.0
        watch_pids(args.fault_post, changes, cfg.clock0)
        info["new_worker_cpu_s_after"] = (cpu_of(new_pid) - c_new) if new_pid else None
        info["workers_after"] = worker_pids(True)

    outcomes, wall = run_load(cfg, targets, args.fault_clients, None, 3600, during=during,
                              seed=11)
    tk, tb = info["t_kill"], info["t_back"]
    flight = [o for o in outcomes if o.t0 < tk < o.t0 + o.latency]
    info.update({
        "clients": args.fault_clients, "wall_s": wall,
        "in_flight": {"requests": len(flight),
                      "results": dict(Counter(f"{o.kind}:{o.result}" for o in flight)),
                      "max_latency_s": max((o.latency for o in flight), default=0.0)},
        "before": in_window(outcomes, 0, tk), "while_down": in_window(outcomes, tk, tb),
        "after": in_window(outcomes, tb, float("inf")),
        "max_latency_s": max(o.latency for o in outcomes),
        "timeouts": sum(o.result == "timeout" for o in outcomes),
        "pid_changes": [[round(t - tk, 2), p] for t, p in changes],
        # expected: the victim goes, a new one comes; a survivor that goes
        # means someone else restarted the workers
        "disturbed": any(not set(survivors.values()) <= set(p) for _, p in changes)
        or {p.pid for p in postgres_procs()[0]} != pg_before,
        "timeline": timeline(outcomes, tk),
        "summary": summarise(outcomes, wall)})
    return info


def cpu_of(pid: int) -> float:
    """CPU seconds of a process, including its children that have ended (0 if gone).

    Monotonic: live children are not added (their CPU counts once they end
    and are reaped), so nothing is counted twice or lost.
    """
    try:
        c = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return c.user + c.system + c.children_user + c.children_system


def fault_pg_restart(cfg: Config, targets: Targets, args: argparse.Namespace) -> dict[str, Any]:
    """Restart PostgreSQL under load; time until requests succeed again.

    Returns
    -------
    dict
        ``pg_restart_s`` (the pg_ctlcluster command), ``first_ok_s`` (from
        the start of the restart to the end of the first successful request
        started after it ended), ``recovered_s`` (from the start of the
        restart to the start of the first request after which every request
        succeeded; None if errors went on to the end), the errors meanwhile,
        a per-second ``timeline``, ``recovered_without_dachs_restart`` and
        ``disturbed`` (the workers changed during the scenario: someone else
        restarted them; the scenario is run again, ``--retries``).
    """
    for attempt in range(args.retries + 1):
        info = _pg_restart_once(cfg, targets, args)
        info["attempt"] = attempt + 1
        if not info["disturbed"]:
            break
        log("fault (b): the workers changed during the scenario (a restart by someone "
            "else?); " + ("running it again" if attempt < args.retries else "keeping it, marked"))
        wait_ready(cfg.base, args.ready_timeout)
    if info["recovered_s"] is None:
        log("fault (b): the service did not recover by itself; restarting DaCHS so that it "
            "is usable again")
        subprocess.run([DACHSCTL, "restart"], capture_output=True)
        wait_ready(cfg.base, args.ready_timeout)
    return info


def _pg_restart_once(cfg: Config, targets: Targets, args: argparse.Namespace) -> dict[str, Any]:
    info: dict[str, Any] = {}
    changes: list[tuple[float, list[int]]] = []

    def wait(seconds: float) -> None:
        watch_pids(seconds, changes, cfg.clock0)

    def during(stop: threading.Event) -> None:
        wait(args.fault_pre)
        info["t_pg0"] = time.perf_counter() - cfg.clock0
        log(f"fault (b): pg_ctlcluster {PG_VERSION} main restart")
        r = subprocess.run(["pg_ctlcluster", PG_VERSION, "main", "restart"],
                           capture_output=True, text=True)
        info["t_pg1"] = time.perf_counter() - cfg.clock0
        info["pg_restart_s"] = info["t_pg1"] - info["t_pg0"]
        info["pg_ctlcluster_rc"] = r.returncode
        log(f"fault (b): PostgreSQL restarted in {info['pg_restart_s']:.1f} s (rc {r.returncode});"
            f" load goes on for {args.fault_wait:.0f} s")
        wait(args.fault_wait)

    outcomes, wall = run_load(cfg, targets, args.fault_clients, None, 3600, during=during,
                              seed=13)
    t_pg0, t_pg1 = info["t_pg0"], info["t_pg1"]
    after = sorted((o for o in outcomes if o.t0 >= t_pg0), key=lambda o: o.t0)
    first_ok = next((o for o in after if o.t0 >= t_pg1 and o.result == "ok"), None)
    last_bad = max((i for i, o in enumerate(after) if o.result != "ok"), default=None)
    if last_bad is None:
        recovered = 0.0
    elif last_bad + 1 < len(after):
        recovered = after[last_bad + 1].t0 - t_pg0
    else:
        recovered = None
    info.update({
        "clients": args.fault_clients, "wall_s": wall,
        "first_ok_s": (first_ok.t0 + first_ok.latency - t_pg0) if first_ok else None,
        "recovered_s": recovered,
        "before": in_window(outcomes, 0, t_pg0),
        "during_and_after": in_window(outcomes, t_pg0, float("inf")),
        "max_latency_s": max(o.latency for o in outcomes),
        "timeouts": sum(o.result == "timeout" for o in outcomes),
        "pid_changes": [[round(t - t_pg0, 2), p] for t, p in changes],
        "disturbed": len(changes) > 1,
        "timeline": timeline(outcomes, t_pg0),
        "summary": summarise(outcomes, wall)})
    info["recovered_without_dachs_restart"] = recovered is not None
    return info


# ---------------------------------------------------------------- report


def fmt(ms: float) -> str:
    """Milliseconds for a table cell."""
    return "-" if ms != ms else (f"{ms:.0f}" if ms >= 10 else f"{ms:.1f}")


def errors_text(res: dict[str, Any]) -> str:
    """``3 (conn 2, http_502 1)`` or ``0``."""
    c = res["error_classes"]
    n = sum(c.values())
    return f"{n} ({', '.join(f'{k} {v}' for k, v in sorted(c.items()))})" if n else "0"


def report_setup(name: str, phases: dict[str, Any]) -> list[str]:
    """Markdown tables of one set-up's phases."""
    keys = list(phases)
    out = [f"\n### {name}\n",
           "| clients | requests | req/s | errors | p50 / p95 / p99 ms (all) | server RSS "
           "first / max / last MB | workers | CPU cores: DaCHS / PostgreSQL / client / other |"
           " DaCHS CPU ms per request |",
           "|---|---|---|---|---|---|---|---|---|"]
    for c in keys:
        r = phases[c]
        a, rss, cpu = r["latency"]["all"], r["rss"], r["cpu_cores"]
        out.append(
            f"| {c} | {r['requests']} in {r['wall_s']:.0f} s | **{r['throughput_rps']:.1f}** | "
            f"{errors_text(r)} | {fmt(a['p50_ms'])} / {fmt(a['p95_ms'])} / {fmt(a['p99_ms'])} | "
            f"{rss.get('first_mb', 0):.0f} / {rss.get('max_mb', 0):.0f} / "
            f"{rss.get('last_mb', 0):.0f} | {rss.get('workers_max', '?')} | "
            f"{cpu['dachs']:.2f} / {cpu['postgres']:.2f} / {cpu['client']:.2f} / "
            f"{cpu['other']:.2f} | {r['dachs_cpu_ms_per_request']:.0f}"
            + (" (**disturbed**: workers or PostgreSQL restarted during the phase)"
               if r["disturbed"] else "") + " |")
    out += ["", "p50 / p95 / p99 in ms per kind (successful requests; n = their number):", "",
            "| kind | " + " | ".join(f"{c} clients" for c in keys) + " |",
            "|---|" + "---|" * len(keys)]
    for k in (*KINDS, "all"):
        cells = []
        for c in keys:
            s = phases[c]["latency"][k]
            errs = sum(phases[c]["errors"].get(k, {}).values()) if k != "all" else 0
            cells.append(f"{fmt(s['p50_ms'])} / {fmt(s['p95_ms'])} / {fmt(s['p99_ms'])} "
                         f"(n={s['n']}{f', {errs} err' if errs else ''})")
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    out += ["", "Answered by the front door's cache (X-Cache-Status HIT) of the successful "
            "product requests: " + "; ".join(
                f"{c} clients " + ", ".join(
                    f"{k} {v.get('HIT', 0)}/{sum(v.values())}"
                    for k, v in sorted(phases[c]["cache"].items()))
                for c in keys)]
    return out


def goals(results: dict[str, dict[str, Any]], clients: list[int]) -> list[str]:
    """The issue's goals against the measurements, one line each."""
    c = str(GOAL_CLIENTS if GOAL_CLIENTS in clients else max(clients))
    note = "" if c == str(GOAL_CLIENTS) else f" (no 50-client phase: at {c} clients)"
    out = [f"\nGoals at {GOAL_CLIENTS} clients{note}:"]
    for setup, phases in results.items():
        r = phases[c]
        n_err = sum(r["error_classes"].values())
        slow = {k: r["latency"][k]["p95_ms"] for k in KINDS
                if k not in EXEMPT_P95 and r["latency"][k]["p95_ms"] > GOAL_P95_S * 1e3}
        out.append(f"* {setup}: errors {n_err} (goal 0): **{'met' if n_err == 0 else 'not met'}**"
                   f"; p95 <= {GOAL_P95_S:.0f} s for every kind but sdm_full: "
                   f"**{'met' if not slow else 'not met'}**"
                   + (f" ({', '.join(f'{k} {v / 1e3:.1f} s' for k, v in slow.items())})"
                      if slow else "")
                   + f" (sdm_full p95 {fmt(r['latency']['sdm_full']['p95_ms'])} ms, no goal)")
    if "1" in results and "default" in results:
        single = results["1"][c]["throughput_rps"]
        ratio = results["default"][c]["throughput_rps"] / single if single else float("nan")
        out.append(f"* throughput default / single worker: x{ratio:.3f} (goal >= "
                   f"{GOAL_SPEEDUP}): **{'met' if ratio >= GOAL_SPEEDUP else 'not met'}**")
    else:
        out.append(f"* throughput >= {GOAL_SPEEDUP}x the single-worker figure: not measured "
                   "(needs --compare 1,default)")
    return out


def ratios(results: dict[str, dict[str, Any]], clients: list[int], a: str, b: str) -> list[str]:
    """Side-by-side ratios b/a: throughput (higher is better) and p95 (lower is better)."""
    keys = [str(c) for c in clients]
    out = [f"\n### Ratios {b} / {a} (throughput: > 1 is a gain; p95: < 1 is a gain)\n",
           "| | " + " | ".join(f"{c} clients" for c in keys) + " |", "|---|" + "---|" * len(keys)]

    def cell(x: float, y: float) -> str:
        return "-" if not (x > 0 and y > 0) else f"x{y / x:.2f}"

    out.append("| throughput req/s | " + " | ".join(
        f"{results[a][c]['throughput_rps']:.1f} -> {results[b][c]['throughput_rps']:.1f} "
        f"**{cell(results[a][c]['throughput_rps'], results[b][c]['throughput_rps'])}**"
        for c in keys) + " |")
    for k in ("all", *KINDS):
        out.append(f"| p95 {k} | " + " | ".join(
            cell(results[a][c]["latency"][k]["p95_ms"], results[b][c]["latency"][k]["p95_ms"])
            for c in keys) + " |")
    out.append("| errors | " + " | ".join(
        f"{sum(results[a][c]['error_classes'].values())} -> "
        f"{sum(results[b][c]['error_classes'].values())}" for c in keys) + " |")
    return out


def report_soak(s: dict[str, Any]) -> list[str]:
    """Markdown lines of the soak run."""
    a = s["latency"]["all"]
    return [f"\n### Soak: {s['clients']} clients for {s['wall_s']:.0f} s\n",
            "| requests | req/s | errors | p50 / p95 / p99 ms | server RSS first / last / max MB |"
            " RSS slope MB/min (whole / second half) | PostgreSQL PSS first / last MB |",
            "|---|---|---|---|---|---|---|",
            f"| {s['requests']} | {s['throughput_rps']:.1f} | {errors_text(s)} | "
            f"{fmt(a['p50_ms'])} / {fmt(a['p95_ms'])} / {fmt(a['p99_ms'])} | "
            f"{s['rss_first_mb']:.0f} / {s['rss_last_mb']:.0f} / {s['rss_max_mb']:.0f} | "
            f"{s['rss_slope_mb_per_min']:+.2f} / {s['rss_slope_second_half_mb_per_min']:+.2f} | "
            f"{s['pg_pss_first_mb']:.0f} / {s['pg_pss_last_mb']:.0f} |"]


def report_faults(f: dict[str, Any]) -> list[str]:
    """Plain-language lines of the fault scenarios."""
    out = ["\n### Faults\n"]
    a = f.get("kill_worker")
    if a is not None and "skipped" in a:
        out.append(f"* (a) kill a worker: **not run**: {a['skipped']}")
    elif a is not None:
        survivors = ", ".join(f"{k} {v:.1f}" for k, v in a["survivor_cpu_s_while_down"].items())
        back = (f"{a['back_s']:.1f} s" if a["back_s"] is not None
                else f"**never** (waited {a['wall_s']:.0f} s)")
        out.append(
            f"* (a) SIGKILL of worker {a['victim']} at {a['clients']} clients"
            + (" (**disturbed**: the workers were also restarted by someone else)"
               if a["disturbed"] else "") + ": "
            f"the {a['in_flight']['requests']} requests in flight got "
            f"{a['in_flight']['results'] or 'nothing'} (longest "
            f"{a['in_flight']['max_latency_s']:.1f} s); while it was away "
            f"{a['while_down']['ok']}/{a['while_down']['requests']} requests succeeded "
            f"(errors {a['while_down']['errors'] or 'none'}), the surviving workers used "
            f"{survivors} CPU s; supervisord had a new process accepting connections after "
            f"{back}, the new worker used "
            f"{a['new_worker_cpu_s_after'] or 0:.1f} CPU s in the next seconds; afterwards "
            f"{a['after']['ok']}/{a['after']['requests']} ok (errors "
            f"{a['after']['errors'] or 'none'}); timeouts (hangs) {a['timeouts']}, longest "
            f"request {a['max_latency_s']:.1f} s.  Seconds with errors (relative to the "
            f"kill): {error_seconds(a['timeline'])}.")
    b = f.get("pg_restart")
    if b is not None:
        out.append(
            f"* (b) `pg_ctlcluster {PG_VERSION} main restart` at {b['clients']} clients"
            + (" (**disturbed**: the workers were restarted by someone else meanwhile)"
               if b["disturbed"] else "") + ": "
            f"the restart took {b['pg_restart_s']:.1f} s; first success "
            + (f"{b['first_ok_s']:.1f} s" if b["first_ok_s"] is not None else "never")
            + " after it began; every request succeeded from "
            + (f"{b['recovered_s']:.1f} s on" if b["recovered_s"] is not None
               else "**never** within the window (DaCHS was restarted afterwards)")
            + f"; errors meanwhile {b['during_and_after']['errors'] or 'none'} "
              f"({b['during_and_after']['ok']}/{b['during_and_after']['requests']} ok); "
              f"timeouts (hangs) {b['timeouts']}, longest request {b['max_latency_s']:.1f} s; "
              f"recovered without restarting DaCHS: "
              f"**{'yes' if b['recovered_without_dachs_restart'] else 'no'}**.  Seconds with "
              f"errors (relative to the restart): {error_seconds(b['timeline'])}.")
    return out


# ---------------------------------------------------------------- main


def parse_mix(text: str) -> dict[str, float]:
    """``ssa=25,tap_knn=15,...`` to weights; unknown kinds are refused."""
    mix = {}
    for item in text.split(","):
        k, _, v = item.partition("=")
        if k.strip() not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown kind {k!r} (kinds: {', '.join(KINDS)})")
        mix[k.strip()] = float(v)
    if not any(v > 0 for v in mix.values()):
        raise argparse.ArgumentTypeError("every weight is 0")
    return {k: v for k, v in mix.items() if v > 0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line.  Long because it is one ``add_argument`` per option."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=SERVER_URL,
                    help="service root, localhost only (default %(default)s, from SERVER_URL/PORT)")
    ap.add_argument("--clients", default="10,25,50",
                    type=lambda s: [int(x) for x in s.split(",")],
                    help="concurrent clients of the phases (default %(default)s)")
    ap.add_argument("--requests", type=int, default=600,
                    help="at most this many requests per phase (default %(default)s)")
    ap.add_argument("--duration", type=float, default=45,
                    help="at most this many seconds per phase (default %(default)s)")
    ap.add_argument("--warmup", type=int, default=40,
                    help="uncounted requests after each (re)start (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=60,
                    help="seconds for a complete answer; longer counts as a timeout "
                         "(default %(default)s)")
    ap.add_argument("--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX),
                    help=f"relative weights of the request kinds (default {DEFAULT_MIX})")
    ap.add_argument("--products", choices=("cold", "warm"), default="cold",
                    help="cold (default): product requests (dlget: sdm_full, soda_cutout, "
                         "preview) are spelt so that the front door's cache cannot answer them "
                         "(equivalent percent escapes): every one is computed "
                         "by a worker, as for the long tail of a large archive; warm: the plain "
                         "spelling, so repeated products come from the cache (with the demo's "
                         "few hundred spectra nearly all of them after a few minutes)")
    ap.add_argument("--compare", default="",
                    help="worker set-ups to run one after the other, e.g. `1,default`: "
                         "each is started with `WORKERS=N etc/dachsctl restart` (needs "
                         "`etc/dachsctl pids`); default: measure the service as it runs")
    ap.add_argument("--no-phases", action="store_true",
                    help="skip the load phases (only --soak and/or --faults)")
    ap.add_argument("--soak", type=float, default=0,
                    help="also run a soak phase of this many seconds (off by default; the "
                         "README's figure uses 600)")
    ap.add_argument("--soak-clients", type=int, default=10,
                    help="clients of the soak phase (default %(default)s)")
    ap.add_argument("--soak-interval", type=float, default=5,
                    help="seconds between RSS samples in the soak (default %(default)s)")
    ap.add_argument("--faults", action="store_true",
                    help="also run the fault scenarios: (a) SIGKILL a worker (needs "
                         "`etc/dachsctl pids`), (b) restart PostgreSQL under load")
    ap.add_argument("--fault-clients", type=int, default=10,
                    help="clients during the fault scenarios (default %(default)s)")
    ap.add_argument("--fault-pre", type=float, default=10,
                    help="seconds of load before the fault (default %(default)s)")
    ap.add_argument("--fault-wait", type=float, default=60,
                    help="(a) seconds to wait for the killed worker to come back; (b) seconds "
                         "of load after PostgreSQL's restart (default %(default)s)")
    ap.add_argument("--fault-post", type=float, default=15,
                    help="(a) seconds of load after the worker is back (default %(default)s)")
    ap.add_argument("--error-pause", type=float, default=0.2,
                    help="seconds a client waits after a failed request before its next one "
                         "(default %(default)s)")
    ap.add_argument("--interval", type=float, default=2,
                    help="seconds between RSS/CPU samples in the phases (default %(default)s)")
    ap.add_argument("--ready-timeout", type=float, default=180,
                    help="seconds to wait for the service to answer at start and after a "
                         "restart (default %(default)s)")
    ap.add_argument("--retries", type=int, default=2,
                    help="run a phase or fault scenario again when the worker processes or "
                         "PostgreSQL were restarted during it by someone else, at most this "
                         "often (default %(default)s)")
    ap.add_argument("--seed", type=int, default=8, help="random seed (default %(default)s)")
    args = ap.parse_args(argv)
    host = urllib.parse.urlsplit(args.url).hostname or ""
    if host not in LOCAL_HOSTS:
        ap.error(f"--url must be on localhost (got host {host!r}): this benchmark never loads "
                 "another machine")
    args.url = args.url.rstrip("/")
    args.compare = [w.strip() for w in args.compare.split(",") if w.strip()]
    for w in args.compare:
        if w != "default" and not w.isdigit():
            ap.error(f"--compare takes worker counts and `default`, not {w!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the phases, the comparison, the soak and the faults that were asked for.

    Long because it is the script's sequence of steps (targets, warm-up,
    phases or comparison, soak, faults, report), each a call with its own
    progress line; the steps themselves are functions above.
    """
    args = parse_args(argv)
    has_pids = dachsctl_has_pids()
    if args.compare and not has_pids:
        sys.exit("--compare needs the multi-worker set-up (`etc/dachsctl pids`), which this "
                 "checkout lacks; run without --compare")
    cfg = Config(base=args.url, mix=args.mix, timeout=args.timeout, seed=args.seed,
                 interval=args.interval, use_dachsctl=has_pids, error_pause=args.error_pause,
                 cold=args.products == "cold")
    log(f"waiting for {args.url} to answer")
    wait_ready(args.url, args.ready_timeout)
    for attempt in range(5):
        try:
            targets = fetch_targets(args.url)
            break
        except (requests.exceptions.RequestException, RuntimeError) as e:
            # someone else may be restarting the service
            log(f"asking TAP for the targets failed (attempt {attempt + 1}): {str(e)[:200]}")
            time.sleep(5)
            wait_ready(args.url, args.ready_timeout)
    else:
        sys.exit("could not get the target spectra from TAP")
    workers = worker_pids(has_pids)
    log(f"{len(targets.dids)} public spectra, {len(targets.knn_dids)} with latents; "
        f"workers: {workers} ({'etc/dachsctl pids' if has_pids else 'ps'})")
    if set(workers.values()) != serve_pids():
        log(f"warning: etc/dachsctl pids and the `dachs serve start` processes differ "
            f"({sorted(serve_pids())}); RSS and CPU are those of the latter")
    result: dict[str, Any] = {
        "command": " ".join(["bench/load.py", *(argv if argv is not None else sys.argv[1:])]),
        "url": args.url, "mix": args.mix, "clients": args.clients, "requests": args.requests,
        "duration_s": args.duration, "timeout_s": args.timeout, "products": args.products,
        "worker_discovery": "etc/dachsctl pids" if has_pids else "ps (dachs serve start)",
        "rss_note": "sum of RSS over the DaCHS worker processes and their descendants; "
                    "nginx and PostgreSQL not included (PostgreSQL: PSS, separately)",
        "n_targets": len(targets.dids), "n_knn_targets": len(targets.knn_dids)}
    lines: list[str] = []
    sampler = Sampler(args.interval, cfg.clock0)
    sampler.start()
    restarted = False
    try:
        if not args.no_phases:
            if not args.compare:
                result["setups"] = {"as running": run_phases(
                    cfg, targets, sampler, args, "[as running]", args.clients)}
            else:
                # interleaved: for each client count every set-up (restart,
                # warm-up, phase), in alternating order, so that drifts in
                # the machine's other load hit both alike
                result["setups"] = {w: {} for w in args.compare}
                result["restarts"] = []
                for i, c in enumerate(args.clients):
                    for w in (args.compare if i % 2 == 0 else args.compare[::-1]):
                        result["restarts"].append(
                            {"workers": w, **restart(w, args.url, args.ready_timeout)})
                        restarted = w != "default"
                        result["setups"][w] |= run_phases(cfg, targets, sampler, args, f"[{w}]",
                                                          [c], setting=w)
            for w, phases in result["setups"].items():
                lines += report_setup(f"Workers: {w}", phases)
            if "1" in result["setups"] and "default" in result["setups"]:
                lines += ratios(result["setups"], args.clients, "1", "default")
            lines += goals(result["setups"], args.clients)
        if restarted:
            result["restarts"].append({"workers": "default (restore)", **restart(
                "default", args.url, args.ready_timeout)})
            restarted = False
        sampler.stop()
        if args.soak > 0:
            result["soak"] = soak(cfg, targets, args)
            lines += report_soak(result["soak"])
        if args.faults:
            result["faults"] = {"kill_worker": fault_kill_worker(cfg, targets, args),
                                "pg_restart": fault_pg_restart(cfg, targets, args)}
            lines += report_faults(result["faults"])
    except BaseException as e:
        result["aborted"] = f"{type(e).__name__}: {e}"
        result["rss_samples"] = sampler.samples
        log(f"aborted; what was measured is in {save('load', result)}")
        raise
    finally:
        if sampler.is_alive():
            sampler.stop()
        if restarted:
            restart("default", args.url, args.ready_timeout)
    result["rss_samples"] = sampler.samples
    print("\n## Load benchmark: " + result["command"])
    print(f"\n{len(targets.dids)} public spectra as targets ({len(targets.knn_dids)} with "
          f"latents); mix {args.mix}; products {args.products}; RSS: {result['rss_note']}; "
          f"workers found via {result['worker_discovery']}.")
    print("\n".join(lines))
    log(f"saved {save('load', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
