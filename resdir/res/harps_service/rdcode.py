"""What the inline code of ``q.rd`` and ``etc/userconfig.rd`` calls.

The RDs' ``<codeItems>``, ``<code>`` and ``<setup>`` blocks stay one or two
lines long and call these helpers, so the logic is importable and testable
without a running server (``tests/test_rdcode.py``).

* :func:`example_items`: the example DID and accref put into ``_example``
  meta and regression tests when an RD is read (DaCHS does not expand
  macros in ``_example`` meta);
* :func:`informative_items`, :func:`latent_origin_items`: the ``z1, z2, ...``
  columns of ``harps.latents`` and the explicit-vector TAP example, from the
  published model;
* :func:`install_server_extensions`: ADQL functions and DaCHS corrections
  loaded into every process that reads the RD.
"""

from __future__ import annotations

from collections.abc import Iterator

import harps_site


def example_items() -> Iterator[dict[str, str]]:
    """One LOOP row: ``exampleDID`` (publisher DID) and ``exampleAccref``.

    Both name :data:`harps_site.EXAMPLE_ACCREF`; the DID carries the
    authority of the running DaCHS (``[ivoa] authority``).
    """
    from gavo.rscdef import getStandardPubDID
    yield {"exampleDID": getStandardPubDID(harps_site.EXAMPLE_ACCREF),
           "exampleAccref": harps_site.EXAMPLE_ACCREF}


def informative_items(rd_id: str = harps_site.RD_ID) -> Iterator[dict[str, str]]:
    """One LOOP row per informative latent dimension of the published model.

    Keys ``column`` (z1, z2, ...), ``dim`` and ``description``; nothing before
    a model is published.
    """
    from harps_service.latentrows import informative_columns
    for d in informative_columns(str(harps_site.resdir_of(rd_id) / "models")):
        yield {"column": d.column, "dim": str(d.dim), "description": d.description}


def tag_items(rd_id: str = harps_site.RD_ID) -> Iterator[dict[str, str]]:
    """One LOOP row per column of ``harps.tags`` made per parameter (value and error).

    Keys ``name``, ``unit``, ``ucd``, ``description``; the descriptions quote
    the current tagger's held-out validation (:func:`tagrows.tag_columns`).
    """
    from harps_service.tagrows import tag_columns
    yield from tag_columns(str(harps_site.resdir_of(rd_id) / "models"))


def latent_origin_items(rd_id: str = harps_site.RD_ID) -> Iterator[dict[str, str]]:
    """The explicit-vector examples' LOOP row: ``origin``, ``originCommas``, ``nDims``.

    ``origin`` is the prior's mean (one ``0`` per informative dimension,
    blank-separated for ADQL, comma-separated in ``originCommas`` for URLs);
    nothing before a model is published.
    """
    n = len(list(informative_items(rd_id)))
    if n:
        yield {"origin": " ".join("0" for _ in range(n)), "nDims": str(n),
               "originCommas": ",".join("0" for _ in range(n))}


def install_server_extensions() -> Iterator[dict[str, str]]:
    """Register the ADQL functions and install the UWS/pool fixes; yields nothing.

    Called from a ``<LOOP>`` so that it runs whenever the RD is read: in
    the server workers (which preload it) and in ``dachs`` commands.  Async
    TAP jobs get the functions through ``bin/gavo``.
    """
    import harps_service.latent_udf  # noqa: F401  (registers gavo_latentdist)
    from harps_service import hardening
    hardening.install_server()
    yield from ()


def install_web_fixes() -> Iterator[dict[str, str]]:
    """Install the corrections of DaCHS's web renderers; yields nothing."""
    from harps_service import webfixes
    webfixes.install()
    yield from ()
