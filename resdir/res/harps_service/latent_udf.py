"""ADQL functions over the learned latent space of the HARPS spectra.

``gavo_latentdist(vec, target)``
    Euclidean distance in the informative latent subspace between the
    vector column ``vec`` (``harps.latents.knn``) and ``target``: a publisher
    DID of a spectrum (``'ivo://...'``, looked up in ``harps.latents``) or an
    explicit vector given as a string of numbers (``'0.12 -1.3 ...'``, one
    per informative dimension, in ``knn`` order).

It expands to PostgreSQL ``cube`` distance ``cube(knn) <-> cube(ARRAY[...])``
over the expression the RD indexes with GiST, so ``ORDER BY`` on it is a
k-nearest-neighbour index scan::

    SELECT TOP 10 ssa_pubdid, gavo_latentdist(knn, 'ivo://...') AS d
    FROM harps.latents ORDER BY d

Nothing from the query reaches SQL unparsed: the first argument must be a
column reference, the second a string literal that is either a DID that
exists in ``harps.latents`` (its vector is fetched with a bound parameter)
or a list of finite numbers of the right length; only formatted floats end
up in the SQL.

DaCHS resolves these functions while parsing ADQL, so this module is
imported by the RD (server) and by ``bin/gavo`` (async TAP jobs).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

LATENT_TABLE = "harps.latents"
VECTOR_COLUMN = "knn"
#: PostgreSQL's cube type holds at most 100 dimensions.
CUBE_MAX_DIM = 100
#: Longest accepted target string: a DID, or CUBE_MAX_DIM numbers of up to
#: 40 characters each.  Longer arguments are refused before any parsing, so
#: the work per query is bounded whatever the sync TAP size limit allows.
MAX_TARGET_CHARS = 4096
#: A plain decimal number.  The alternatives cannot both match a prefix of
#: the same digits (``\d+(\.\d*)?`` against ``\.\d+``), so a failing match
#: is linear in the item's length; the former ``\d+\.?\d*`` backtracked
#: quadratically on a long run of digits followed by a letter.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SEPARATORS = re.compile(r"[\s,;\[\]()]+")


class LatentArgumentError(ValueError):
    """Bad arguments to a latent-space ADQL function (shown to the user)."""


def check_length(text: str) -> str:
    """Refuse a target string longer than :data:`MAX_TARGET_CHARS`.

    Raises
    ------
    LatentArgumentError
        With the length found and the limit.
    """
    if len(text) > MAX_TARGET_CHARS:
        raise LatentArgumentError(
            f"gavo_latentdist: the second argument has {len(text)} characters; at most "
            f"{MAX_TARGET_CHARS} are accepted (a publisher DID or at most {CUBE_MAX_DIM} numbers)")
    return text


def _shown(item: str, limit: int = 40) -> str:
    """``item`` for an error message, shortened to ``limit`` characters."""
    return repr(item if len(item) <= limit else item[:limit] + "...")


def parse_numbers(text: str, who: str = "gavo_latentdist") -> list[float]:
    """Parse ``'0.1 -2e-3, 4'`` into finite floats (any count).

    Linear in ``len(text)`` by construction (one split, one unambiguous
    match per item), and ``text`` is capped at :data:`MAX_TARGET_CHARS`.

    Parameters
    ----------
    text : str
    who : str
        What the messages start with (the function or parameter name).

    Raises
    ------
    LatentArgumentError
        Too long, or anything that is not a plain finite decimal number.
    """
    if len(text) > MAX_TARGET_CHARS:
        raise LatentArgumentError(f"{who}: {len(text)} characters; at most "
                                  f"{MAX_TARGET_CHARS} are accepted")
    values = []
    for item in (t for t in _SEPARATORS.split(text.strip()) if t):
        if not _NUMBER.fullmatch(item):
            raise LatentArgumentError(f"{who}: {_shown(item)} is not a number")
        value = float(item)
        if not math.isfinite(value):
            raise LatentArgumentError(f"{who}: {_shown(item)} is not finite")
        values.append(value)
    return values


def parse_vector(text: str, ndim: int) -> list[float]:
    """Parse ``'0.1 -2e-3, 4'`` into ``ndim`` finite floats (:func:`parse_numbers`).

    Raises
    ------
    LatentArgumentError
        Too long, wrong count, or anything that is not a plain decimal number.
    """
    values = parse_numbers(check_length(text))
    if len(values) != ndim:
        raise LatentArgumentError(
            f"gavo_latentdist: the vector has {len(values)} numbers, the informative latent "
            f"space has {ndim} dimensions")
    return values


def cube_literal(values: Sequence[float]) -> str:
    """SQL for a cube from floats (repr keeps full precision, no injection)."""
    return f"cube(ARRAY[{','.join(repr(float(v)) for v in values)}]::float8[])"


def distance_sql(vector_column_sql: str, values: Sequence[float]) -> str:
    """The indexed expression ``cube(knn) <-> cube(literal)``."""
    return f"(cube(CAST({vector_column_sql} AS float8[])) <-> {cube_literal(values)})"


_QUALIFIED_TABLE = re.compile(r"^[a-z][a-z0-9_]*\.latents$")


def latent_table(qualifier: str | None) -> str:
    """The latent table a column reference points to.

    ``knn`` alone (or through an alias) means :data:`LATENT_TABLE`; a
    schema-qualified ``otherschema.latents.knn`` (scratch copies of the
    resource, e.g. for benchmarks) names its own table, which must exist
    and have a ``knn`` column (checked by :func:`_check_table`).
    """
    if qualifier and _QUALIFIED_TABLE.match(qualifier.lower()):
        return qualifier.lower()
    return LATENT_TABLE


def _query(sql: str, params: dict | None = None) -> list[tuple]:
    """Rows of a read-only query; database errors become a plain message.

    The user sees neither SQL nor PostgreSQL's text: the failure is logged
    on the server side and reported as "cannot read the latent table".
    """
    from gavo import base
    try:
        with base.getTableConn() as conn:
            return list(conn.query(sql, params or {}))
    except Exception as ex:  # psycopg2 errors and connection trouble alike
        base.ui.notifyWarning(f"gavo_latentdist: query failed: {ex}")
        raise LatentArgumentError(
            "gavo_latentdist: cannot read the latent table; try again later") from None


def _check_table(table: str) -> None:
    """Refuse a latent table that does not exist or has no ``knn`` column."""
    if table == LATENT_TABLE:
        return
    schema, name = table.split(".")
    if not _query(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %(s)s"
            " AND table_name = %(t)s AND column_name = %(c)s",
            {"s": schema, "t": name, "c": VECTOR_COLUMN}):
        raise LatentArgumentError(
            f"gavo_latentdist: there is no latent table {table} with a {VECTOR_COLUMN} "
            f"column (use {LATENT_TABLE}.{VECTOR_COLUMN})")


def _lookup_did(did: str, table: str = LATENT_TABLE) -> list[float]:
    rows = _query(f"SELECT {VECTOR_COLUMN} FROM {table} WHERE ssa_pubdid = %(did)s",
                  {"did": did})
    if not rows:
        raise LatentArgumentError(
            f"gavo_latentdist: no spectrum with publisher DID {_shown(did, 200)} in {table}")
    # real[] arrives as shortest decimal text; go back to the exact float32
    # values, so that a spectrum's distance to itself is exactly 0
    import numpy as np
    return [float(np.float32(v)) for v in rows[0][0]]


def _informative_dim(table: str = LATENT_TABLE) -> int:
    rows = _query(f"SELECT array_length({VECTOR_COLUMN}, 1) FROM {table} "
                  f"WHERE {VECTOR_COLUMN} IS NOT NULL LIMIT 1")
    if not rows or rows[0][0] is None:
        raise LatentArgumentError(f"gavo_latentdist: {table} holds no latents yet")
    return int(rows[0][0])


def target_vector(target: str, table: str = LATENT_TABLE) -> list[float]:
    """The latent vector a ``gavo_latentdist`` target string stands for.

    Parameters
    ----------
    target : str
        A publisher DID (``ivo://...``) or numbers, one per informative
        dimension; at most :data:`MAX_TARGET_CHARS` characters.
    table : str
        The latent table (``schema.latents``) the vector refers to.

    Returns
    -------
    list of float
        The vector, in ``knn`` order.

    Raises
    ------
    LatentArgumentError
        For anything the user has to fix; the message never holds SQL.
    """
    target = check_length(target).strip()
    _check_table(table)
    if target.startswith("ivo://"):
        return _lookup_did(target, table)
    return parse_vector(target, _informative_dim(table))


def _register() -> None:
    from gavo.adql import common, nodes
    from gavo.adql.ufunctions import userFunction

    @userFunction(
        "gavo_latentdist",
        "(vec REAL[], target VARCHAR) -> DOUBLE",
        """
        Distance in the informative latent subspace of the HARPS spectra
        between vec (pass harps.latents.knn) and target: a publisher DID
        ('ivo://...') or a vector of numbers in knn order ('0.1 -1.2 ...').
        Backed by a GiST k-nearest-neighbour index: ORDER BY this function
        (ascending) over harps.latents is fast.
        """,
        "double precision", ucd="pos.distance;stat.fit")
    def _latentdist(args):  # noqa: ANN001 - DaCHS API
        if len(args) != 2:
            raise common.UfuncError("gavo_latentdist takes exactly two arguments")
        if (getattr(args[0], "type", None) != "columnReference"
                or str(args[0].name).lower() != VECTOR_COLUMN):
            raise common.UfuncError(
                "gavo_latentdist: the first argument must be the column harps.latents.knn")
        if getattr(args[1], "type", None) != "characterStringLiteral":
            raise common.UfuncError(
                "gavo_latentdist: the second argument must be a string literal "
                "(a publisher DID or a vector of numbers)")
        ref = getattr(args[0], "refName", None)
        table = latent_table(nodes.flatten(ref) if ref else None)
        try:
            values = target_vector(args[1].value, table)
        except LatentArgumentError as ex:
            raise common.UfuncError(str(ex)) from None
        return distance_sql(nodes.flatten(args[0]), values)


try:
    _register()
except ImportError:  # outside DaCHS: the pure helpers above stay importable
    pass
