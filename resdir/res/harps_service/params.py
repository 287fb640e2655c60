"""Checks of request parameters before DaCHS's own code sees them.

DaCHS 2.7 answers some malformed parameters of this resource's services with
an internal error (HTTP 500) or with a message that exposes server internals:

* SODA ``BAND=NaN NaN``: the bounds arrive as ``None`` and the cutout fails
  with a ``TypeError``; a single number gives the cryptic
  ``Invalid literal for double[2] (field anonymous)``.
* datalink/preview ``ID``: ``//soda#sdm_genDesc`` fails on an empty ID
  (``string index out of range``), on one that is not UTF-8 (``'BinaryItem'
  object has no attribute 'startswith'``), on a file path (``Full path
  /etc/passwd does not start with resource root <inputsDir>``) and on a
  NUL character (the PostgreSQL driver's ``A string literal cannot contain
  NUL``).
* SSA ``MAXREC=-1``: DaCHS's DB core drops the "overflow" row of an empty
  result (``list assignment index out of range``); MAXREC beyond PostgreSQL's
  bigint gives an SQL error.

The helpers here refuse such values with a message that names the parameter
and says what a valid value looks like.  ``q.rd`` calls them: the ``preparse``
of the BAND and MAXREC input keys (a ``gavo.base.ValidationError`` there
becomes DaCHS's usual 422 ``UsageError`` for datalink and an
``QUERY_STATUS=ERROR`` VOTable for SSA), and the descriptor generator of the
datalink and preview services (:func:`checked_sdm_descriptors`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from gavo import base
from gavo.protocols import soda

#: The MAXREC beyond which PostgreSQL fails: DaCHS asks for MAXREC+1 rows
#: (to detect overflows), and LIMIT is a bigint.
MAXREC_MAX = 2**63 - 2
#: How a valid SODA BAND looks (air wavelength in metres).
BAND_EXAMPLE = "BAND=6.5e-7 6.6e-7"
#: Source of the ``preparse`` of the datalink BAND input key (DaCHS compiles
#: preparse code from a string; metaMakers build input keys at run time).
BAND_PREPARSE = "from harps_service.params import band_literal\nreturn band_literal(input)"

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def boolean_literal(literal: str | None, name: str) -> str | None:
    """Check a boolean literal as DaCHS reads them (``base.literals``); pass it on.

    The ``preparse`` of the retrieve service's SPECTRA: DaCHS 2.7 answered an
    unknown word (``SPECTRA=maybe``) with a bare KeyError, i.e. HTTP 500.

    Raises
    ------
    gavo.base.ValidationError
        Naming the parameter and the accepted words.
    """
    from gavo import base
    from gavo.base import literals
    if literal is None or not str(literal).strip():
        return literal
    word = str(literal).strip().lower()
    known = literals._trueLiterals | literals._falseLiterals
    if word not in known:
        raise base.ValidationError(
            f"{printable_id(literal)[:40]!r} is not a boolean; use True or False", name)
    return "True" if word in literals._trueLiterals else "False"


def band_literal(literal: str | None) -> str | None:
    """Check a SODA BAND literal: two numbers in metres, lower <= upper, no NaN.

    ``-Inf`` and ``+Inf`` stand for open bounds, as SODA allows.

    Parameters
    ----------
    literal : str or None
        The BAND value as sent (None or blank: no BAND, no cutout).

    Returns
    -------
    str or None
        The two bounds as ``"low high"`` in Python float syntax, which DaCHS's
        interval parser accepts; ``literal`` itself when it is empty.

    Raises
    ------
    gavo.base.ValidationError
        If the value is not two numbers, a bound is NaN or the bounds are
        reversed.
    """
    if literal is None or not literal.strip():
        return literal
    parts = literal.split()
    if len(parts) != 2:
        raise base.ValidationError(
            f"BAND takes two numbers, the lower and upper air wavelength in metres"
            f" ({BAND_EXAMPLE}; -Inf or +Inf for an open end), not {literal!r}", "BAND")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise base.ValidationError(
            f"BAND bounds must be numbers (metres, e.g. {BAND_EXAMPLE}), not {literal!r}",
            "BAND") from None
    if math.isnan(low) or math.isnan(high):
        raise base.ValidationError(
            f"BAND bounds must not be NaN ({literal!r}); use -Inf or +Inf for an open end",
            "BAND")
    if low > high:
        raise base.ValidationError(
            f"BAND lower bound {low} m lies above the upper bound {high} m", "BAND")
    return f"{low!r} {high!r}"


def maxrec_literal(literal: str | None) -> str | None:
    """Check a MAXREC literal: an integer from 0 (metadata only) to :data:`MAXREC_MAX`.

    Parameters
    ----------
    literal : str or None
        The MAXREC value as sent (None or blank: the service default).

    Returns
    -------
    str or None
        ``literal``, unchanged.

    Raises
    ------
    gavo.base.ValidationError
        If the value is not an integer in that range.
    """
    if literal is None or not literal.strip():
        return literal
    try:
        value = int(literal)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= MAXREC_MAX:
        raise base.ValidationError(
            f"MAXREC must be an integer from 0 (service metadata only) to {MAXREC_MAX},"
            f" not {literal!r}", "MAXREC")
    return literal


def printable_id(value: Any) -> str:
    """``value`` as text fit for an error message (control characters escaped)."""
    text = value if isinstance(value, str) else "<bytes that are not UTF-8>"
    return _CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _id_problem(pub_did: Any) -> str | None:
    """Why ``pub_did`` cannot name a dataset of this service, or None if it might."""
    if not isinstance(pub_did, str):
        return "is not valid UTF-8 text"
    if not pub_did.strip():
        return "is empty"
    if _CONTROL_CHARACTERS.search(pub_did):
        return "contains control characters (such as NUL)"
    if pub_did.startswith("/"):
        return "is a file path"
    return None


def id_fault(pub_did: Any) -> soda.DatalinkFault | None:
    """A UsageFault for an ID that cannot name a dataset here, or None.

    In a links document (dlmeta) the fault becomes an error row
    ``UsageFault: ID ...``; on dlget DaCHS raises it, as a
    ``gavo.base.ValidationError`` for ID (HTTP 422 ``UsageError``).

    Parameters
    ----------
    pub_did : str or object
        The ID value as DaCHS received it (a ``BinaryItem`` if it was not
        UTF-8).
    """
    problem = _id_problem(pub_did)
    if problem is None:
        return None
    authority = base.getConfig("ivoa", "authority")
    message = (f"ID {problem}; pass the publisher DID of a spectrum"
               f" (ivo://{authority}/~?harps/data/...), as SSA and ObsCore list them")
    return soda.DatalinkFault(
        "UsageFault", printable_id(pub_did), message,
        lambda _: base.ValidationError(message, "ID"), "#this")


def checked_sdm_descriptors(parent: Any, ssa_td: str) -> Callable[[Any, Any], Any]:
    """DaCHS's ``//soda#sdm_genDesc`` for ``ssa_td``, refusing malformed IDs first.

    Parameters
    ----------
    parent : gavo.protocols.datalink.DatalinkCore
        The core the descriptor generator belongs to.
    ssa_td : str
        Cross-RD id of the SSA table (``//soda#sdm_genDesc``'s ``ssaTD``).

    Returns
    -------
    callable
        ``(pubDID, args) -> descriptor or DatalinkFault``, DaCHS's descriptor
        generator signature.
    """
    from gavo.protocols import datalink
    from gavo.rscdef import procdef

    stock = base.makeStruct(
        datalink.DescriptorGenerator, parent_=parent,
        procDef=base.resolveCrossId("//soda#sdm_genDesc"),
        bindings=[base.makeStruct(procdef.Binding, key="ssaTD", content_=repr(ssa_td))],
    ).compile(parent)

    def generate(pub_did: Any, args: Any) -> Any:
        return id_fault(pub_did) or stock(pub_did, args)
    return generate
