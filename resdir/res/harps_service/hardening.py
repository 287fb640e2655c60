"""Four DaCHS 2.7 behaviours that configuration cannot fix, corrected in place.

Three concern TAP jobs; DaCHS runs an async one as a separate ``gavo ...
taprun`` process with its own PostgreSQL backend:

1. **DELETE of an executing job** (``uwsactions.RootAction.doDELETE`` ->
   ``uws.UWS.destroy``) only removes the job's record and directory: the
   ``taprun`` process and its query go on (measured: 99% CPU for minutes)
   while the job no longer counts against ``[async]maxTAPRunning``, so
   submitting and deleting lets anyone run any number of heavy queries.
   :func:`install_server` makes ``destroy`` first move an executing job to
   ABORTED, which is DaCHS's own kill path (``killJob``: SIGINT to the
   runner, SIGTERM while it is still starting).
2. **The runner's SIGINT handler** (``taprunner._killWorker``) marks the job
   ABORTED *before* cancelling its PostgreSQL backend; when the job record
   is already gone (a DELETE), marking fails and the backend is never
   cancelled.  :func:`install_taprun` cancels the backend first.
3. **Orphaned sync jobs**: DaCHS runs a sync TAP query as a UWS job in
   phase EXECUTING with pid -1 and deletes it when the query ends.  A
   server process killed or restarted meanwhile leaves that row behind for
   good, and ``UWSWithQueueing`` counts it against ``maxTAPRunning``: after
   a few such deaths no async job ever starts again (seen after killing a
   worker under load).  No sync query outlives ``[async]
   defaultExecTimeSync`` (DaCHS's statement timeout) by much, so
   :func:`install_server` removes EXECUTING jobs without a process (pid < 2)
   older than :data:`SYNC_ORPHAN_GRACE_S` plus that timeout before each pass
   over the queue.  Age, not the owner's pid, decides, so it is right when
   workers run on several machines sharing the job table.

A fourth concerns every server worker: after a PostgreSQL restart, DaCHS's
connection pools (``sqlsupport.CustomConnectionPool``) keep handing out
dead connections; each one fails one request with "connection already
closed" (HTTP 500) before it is dropped, so a worker took dozens of failed
requests to heal.  :func:`install_server` also makes the pools check a
connection before handing it out (a ``SELECT 1``, the "pre-ping" of other
pools), replacing dead ones at once.

The database itself is the backstop (``etc/dachsctl configure``): the
``untrusted`` role that runs ADQL has a ``statement_timeout`` and a
``client_connection_check_interval``, so a query whose runner died stops
within a second.

:func:`install_server` runs in every server worker (the RD calls it when
loaded; the server preloads the RD); :func:`install_taprun` runs in each
async job (``resdir/bin/gavo``).  Both are idempotent.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

#: Marker set on functions this module has wrapped (idempotence).
_WRAPPED = "_harps_hardened"
#: Seconds beyond ``[async]defaultExecTimeSync`` after which an EXECUTING
#: job with no process of its own (a sync query) is taken as orphaned: the
#: query was stopped by then, and writing its result takes far less.
SYNC_ORPHAN_GRACE_S = 120


def wrap_once(owner: Any, name: str, make: Callable[[Callable], Callable]) -> None:
    """Replace ``owner.name`` by ``make(original)`` unless already done.

    The one way this project wraps a DaCHS function (here and in
    :mod:`harps_service.webfixes`); the original stays reachable as
    ``__wrapped__``.
    """
    original = getattr(owner, name)
    if getattr(original, _WRAPPED, False):
        return
    wrapped = functools.wraps(original)(make(original))
    setattr(wrapped, _WRAPPED, True)
    setattr(owner, name, wrapped)


def _abort_then_destroy(original: Callable) -> Callable:
    from gavo import base
    from gavo.protocols import uws

    def destroy(self, jobId):  # noqa: ANN001,N803 - DaCHS's signature
        try:
            if self.getJob(jobId).phase == uws.EXECUTING:
                self.changeToPhase(jobId, uws.ABORTED)
        except Exception as ex:  # the job may end by itself meanwhile
            base.ui.notifyWarning(f"Aborting UWS job {jobId} before deletion: {ex}")
        return original(self, jobId)
    return destroy


def connection_usable(conn: Any) -> bool:
    """True if ``conn`` (psycopg2) still reaches its server.

    One round trip (``SELECT 1``); a connection outside autocommit is
    rolled back afterwards, so the caller finds it as the pool gave it.
    """
    if conn.closed:
        return False
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
        if not conn.autocommit:
            conn.rollback()
        return True
    except Exception:  # psycopg2.OperationalError, InterfaceError, ...
        return False


def _checked_getconn(original: Callable) -> Callable:
    def getconn(self, key=None):  # noqa: ANN001 - psycopg2's signature
        for _ in range(self.maxconn + 1):
            conn = original(self, key)
            if connection_usable(conn):
                return conn
            try:
                self.putconn(conn, key=key, close=True)
            except Exception:  # already closed: nothing to give back
                pass
        return original(self, key)  # the server is down: DaCHS reports it
    return getconn


def remove_orphaned_sync_jobs(uws_: Any) -> int:
    """Delete sync jobs left EXECUTING by a server process that died.

    Parameters
    ----------
    uws_ : gavo.protocols.uws.UWS
        The UWS whose job table is cleaned (``tap.WORKER_SYSTEM``).

    Returns
    -------
    int
        The number of jobs removed.
    """
    from gavo import base
    from gavo.protocols import uws
    limit = int(base.getConfig("async", "defaultExecTimeSync")) + SYNC_ORPHAN_GRACE_S
    table = uws_.jobClass.jobsTD.getQName()
    with base.getTableConn() as conn:
        orphans = [row[0] for row in conn.query(
            f"SELECT jobId FROM {table} WHERE phase = %(phase)s AND pid < 2"
            " AND COALESCE(startTime, creationTime)"
            "   < (now() AT TIME ZONE 'UTC') - make_interval(secs => %(limit)s)",
            {"phase": uws.EXECUTING, "limit": limit})]
    destroy = getattr(uws.UWS.destroy, "__wrapped__", uws.UWS.destroy)
    for job_id in orphans:
        base.ui.notifyWarning(f"Removing orphaned sync TAP job {job_id}")
        destroy(uws_, job_id)
    return len(orphans)


def _clean_then_process(original: Callable) -> Callable:
    from gavo import base

    def process_queue(self):  # noqa: ANN001 - DaCHS's signature
        try:
            remove_orphaned_sync_jobs(self)
        except Exception as ex:  # never let the cleanup stop the queue
            base.ui.notifyWarning(f"Cleaning orphaned sync jobs: {ex}")
        return original(self)
    return process_queue


def install_server() -> None:
    """DELETE of an executing UWS job aborts it (kills its runner) first,
    orphaned sync jobs stop blocking the async queue, and pooled database
    connections are checked before use."""
    from gavo.base import sqlsupport
    from gavo.protocols import tap, uws
    wrap_once(uws.UWS, "destroy", _abort_then_destroy)
    wrap_once(tap.TAPUWS, "_processQueue", _clean_then_process)
    wrap_once(sqlsupport.CustomConnectionPool, "getconn", _checked_getconn)


def _cancel_then_mark(original: Callable) -> Callable:
    from gavo import base
    from gavo.protocols import taprunner

    def kill_worker(jobId):  # noqa: ANN001,N803 - DaCHS's signature
        if taprunner._WORKER_PID:
            try:
                with base.getUntrustedConn() as conn:
                    curs = conn.cursor()
                    curs.execute("SELECT pg_cancel_backend(%(pid)s)",
                                 {"pid": int(taprunner._WORKER_PID)})
                    curs.close()
            except Exception as ex:
                base.ui.notifyWarning(f"Cancelling the query of job {jobId}: {ex}")
        try:
            original(jobId)
        except Exception as ex:  # e.g. JobNotFound: the job was deleted
            base.ui.notifyInfo(f"Job {jobId} aborted ({ex.__class__.__name__})")
    return kill_worker


def install_taprun() -> None:
    """The async runner cancels its query before touching the job record."""
    from gavo.protocols import taprunner
    wrap_once(taprunner, "_killWorker", _cancel_then_mark)
