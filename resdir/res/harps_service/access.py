"""Embargo enforcement on the data paths that DaCHS 2.7 leaves open.

DaCHS checks ``dc.products.embargo``/``owner`` for ``/getproduct`` downloads,
but its datalink/SODA machinery and its preview cache hand out data without
looking (see ../shared/DACHS_NOTES.md beside the repository).  Every data
function of this resource that reads a spectrum file therefore calls
:func:`require_access` first, with the SSA row of the dataset (which carries
``owner`` and ``embargo``).

Metadata (SSA, TAP, ObsCore rows, datalink link lists) stays public, as in
the ESO archive.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from gavo import svcs, utils
from gavo.protocols import creds


def is_embargoed(row: Mapping[str, Any], today: datetime.date | None = None) -> bool:
    """True while the dataset in ``row`` is proprietary.

    Uses DaCHS's own rule (``//products``): data are public once
    ``embargo`` lies in the past; ``embargo`` NULL means public.
    """
    embargo = row.get("embargo")
    if embargo is None:
        return False
    if isinstance(embargo, datetime.datetime):
        embargo = embargo.date()
    return embargo >= (today or datetime.date.today())


def _credentials() -> tuple[str | None, str | None]:
    """User and password of the current request (HTTP basic auth)."""
    try:
        query_meta = utils.stealVar("queryMeta")
    except ValueError:  # not called from a request: refuse, never guess
        return None, None
    return query_meta["user"], query_meta["password"]


def require_access(row: Mapping[str, Any]) -> None:
    """Refuse the current request unless it may read the data in ``row``.

    Parameters
    ----------
    row : mapping
        The dataset's SSA row (needs ``embargo``, ``owner``, ``ssa_pubDID``).

    Raises
    ------
    gavo.svcs.Authenticate
        Embargoed and the request is anonymous (HTTP 401 asking for
        credentials).
    gavo.svcs.ForbiddenURI
        Embargoed and the authenticated user is not in the owning group
        (HTTP 403).
    """
    if not is_embargoed(row):
        return
    user, password = _credentials()
    if not user:
        raise svcs.Authenticate(hint=(
            f"{row.get('ssa_pubDID')} is proprietary until {row['embargo']}; "
            f"log in as a member of programme {row.get('owner')}"))
    if row.get("owner") in creds.getGroupsForUser(user, password):
        return
    raise svcs.ForbiddenURI(
        f"{row.get('ssa_pubDID')} is proprietary until {row['embargo']} and "
        f"{user} is not a member of programme {row.get('owner')}")


def may_read(row: Mapping[str, Any]) -> bool:
    """Whether the current request may read the data in ``row`` (:func:`require_access`)."""
    try:
        require_access(row)
    except (svcs.Authenticate, svcs.ForbiddenURI):
        return False
    return True


def member_groups() -> list[str]:
    """The programmes whose proprietary data the current request may read ([] if anonymous)."""
    user, password = _credentials()
    if not user:
        return []
    return sorted(creds.getGroupsForUser(user, password))


def visible_sql(alias: str) -> str:
    """SQL condition: the dataset of SSA row ``alias`` may be read by the current request.

    The rule of :func:`is_embargoed` and :func:`require_access`, for queries
    that list datasets; it needs the query parameter ``groups``
    (:func:`member_groups`).
    """
    return (f"({alias}.embargo IS NULL OR {alias}.embargo < CURRENT_DATE"
            f" OR {alias}.owner = ANY(%(groups)s))")
