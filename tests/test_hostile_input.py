"""Hostile or malformed requests get a clear client error, never a 500 or an internal detail.

Issue 8 ("bad input never gives a 500"): every request below used to give
HTTP 500, or an error naming a server path or an internal Python error.
Each must now be refused with a 4xx status and a message that names the
offending parameter, or, where the protocol reports errors inside a
document (SSA and TAP queries answer ``QUERY_STATUS=ERROR`` VOTables, a
datalink links document carries a fault row per ID), with such a document.
No answer may contain a server path, a traceback or SQL.
"""

from __future__ import annotations

import time
import urllib.parse

import pytest
import requests
from support import EXAMPLE_ACCREF, pub_did

import harps_site

pytestmark = pytest.mark.server

ADP_ACCREF = EXAMPLE_ACCREF
#: What no answer to an anonymous request may contain.
LEAKS = (harps_site.GAVO_ROOT, "/usr/lib", "Traceback", "SELECT")
#: The VOTable error status of SSA and TAP (they answer errors with HTTP 200).
VOTABLE_ERROR = 'name="QUERY_STATUS" value="ERROR"'


def _request(method: str, url: str, **kwargs) -> requests.Response:
    """``url`` as given (no re-quoting), retried while the server restarts (deploys)."""
    for _ in range(30):
        try:
            r = requests.request(method, url, timeout=120, **kwargs)
        except requests.ConnectionError:
            time.sleep(2)
            continue
        if r.status_code not in (502, 503):
            break
        time.sleep(2)
    return r


def _get(url: str) -> requests.Response:
    return _request("GET", url)


def _assert_no_leak(r: requests.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:1500])
    for leak in LEAKS:
        assert leak not in r.text, (leak, r.text[:1500])


def _assert_refused(r: requests.Response, names: str) -> None:
    """A 4xx whose body says ``names`` (e.g. ``Field BAND:``), and nothing internal."""
    _assert_no_leak(r)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:1500])
    assert names.lower() in r.text.lower(), (names, r.text[:1500])


def _quoted(did: str) -> str:
    return urllib.parse.quote(did, safe="")


# -- 1. SODA BAND --------------------------------------------------------------

@pytest.mark.parametrize("band", [
    "NaN NaN", "NaN 6e-7", "6e-7 NaN", "nan nan",   # used to be 500 (TypeError)
    "inf", "6e-7", "1 2 3",                         # not two numbers
    "abc", "6e-7 abc", "6e-7/6.1e-7",               # not numbers
    "6.6e-7 6.5e-7", "inf -inf",                    # reversed
])
def test_soda_band_must_be_two_ordered_numbers(service, real_files, band):
    url = service.dlget(pub_did(ADP_ACCREF), BAND=band)
    _assert_refused(_get(url), "Field BAND:")


@pytest.mark.parametrize("band", ["-inf 3.79e-7", "6.91e-7 +Inf", "-Inf 3.79e-7"])
def test_soda_band_open_intervals_still_work(service, real_files, band):
    r = _get(service.dlget(pub_did(ADP_ACCREF), BAND=band,
                           FORMAT="application/x-votable+xml;serialization=tabledata"))
    assert r.status_code == 200 and "<TD>" in r.text, r.text[:500]


# -- 2. datalink and preview IDs -----------------------------------------------

#: raw (already percent-encoded) ID values that cannot name a dataset here
BAD_IDS = {
    "empty": "",
    "blank": "%20",
    "invalid UTF-8": "%ff%fe",
    "a file path": "/etc/passwd",
    "NUL": "%00",
    "NUL in a DID": _quoted("ivo://harps.example.org/~?") + "%00",
    "NUL after a real DID": _quoted(pub_did(ADP_ACCREF)) + "%00",
    "control character": "harps%01data",
}


@pytest.mark.parametrize("path", ["sdl/dlget", "pv/dlget"])
@pytest.mark.parametrize("raw_id", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_id_is_a_usage_error_on_dlget(service, path, raw_id):
    _assert_refused(_get(f"{service.url}/harps/q/{path}?ID={raw_id}"), "Field ID:")


@pytest.mark.parametrize("raw_id", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_id_is_a_usage_fault_in_dlmeta(service, raw_id):
    # DataLink 1.1: a links document reports a bad ID in a fault row (HTTP 200)
    r = _get(f"{service.url}/harps/q/sdl/dlmeta?ID={raw_id}")
    _assert_no_leak(r)
    if "%00" in raw_id:
        # the front door refuses a NUL in any parameter with a DALI error
        # document naming it, before DaCHS sees the request
        assert r.status_code == 400 and VOTABLE_ERROR in r.text and "Field ID:" in r.text
    else:
        assert r.status_code == 200 and "UsageFault: ID" in r.text, r.text[-1500:]


def test_good_ids_still_resolve(service, real_files):
    did = pub_did(ADP_ACCREF)
    assert "#this" in _get(service.dlmeta(did)).text
    assert _get(service.preview(did)).headers["content-type"] == "image/png"
    # naked accrefs are accepted by DaCHS's descriptor generator, too
    r = _get(f"{service.url}/harps/q/sdl/dlmeta?ID={_quoted(ADP_ACCREF)}")
    assert "#this" in r.text and "Fault" not in r.text


# -- 3. product keys -----------------------------------------------------------

BAD_PRODUCT_PATHS = {
    "NUL in key": f"/getproduct?key={ADP_ACCREF}%00",
    "NUL as key": "/getproduct?key=%00",
    "NUL in path": f"/getproduct/{ADP_ACCREF}%00",
    "NUL in preview path": f"/getproduct/{ADP_ACCREF}%00?preview=True",
    "invalid UTF-8": "/getproduct/%ff",
    "invalid UTF-8 key": "/getproduct?key=%ff",
    "no key": "/getproduct",
    "bad preview flag": f"/getproduct/{ADP_ACCREF}?preview=maybe",
    "bad scale": f"/getproduct/{ADP_ACCREF}?scale=abc",
    "dot-dot": "/getproduct/..%2f..%2fetc%2fpasswd",
    "4000 characters": "/getproduct/harps/" + "a" * 4000,
}


@pytest.mark.parametrize("path", BAD_PRODUCT_PATHS.values(), ids=BAD_PRODUCT_PATHS.keys())
def test_bad_product_key_is_not_found(service, path):
    r = _get(service.url + path)
    _assert_no_leak(r)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:1500])
    # the front door refuses a NUL in the URL path itself (400) before DaCHS
    # sees it; everything DaCHS answers names the product key
    assert r.status_code == 400 or "accref" in r.text, r.text[:1500]


# -- 4. MAXREC -----------------------------------------------------------------

@pytest.mark.parametrize("maxrec", ["-1", "-100", "abc", "1e99", "99999999999999999999"])
def test_ssa_maxrec_must_be_a_non_negative_integer(service, real_files, maxrec):
    r = _get(service.ssa + "?" + urllib.parse.urlencode(
        {"REQUEST": "queryData", "MAXREC": maxrec}))
    _assert_no_leak(r)
    # SSA reports errors in a VOTable (HTTP 200), like every DaCHS DAL service
    assert VOTABLE_ERROR in r.text and "field maxrec:" in r.text.lower(), r.text[-800:]
    assert "list assignment" not in r.text and "out of range" not in r.text


@pytest.mark.parametrize("maxrec", ["0", "1", "100000000000"])
def test_ssa_good_maxrec_still_works(service, real_files, maxrec):
    r = _get(service.ssa + "?" + urllib.parse.urlencode(
        {"REQUEST": "queryData", "MAXREC": maxrec}))
    assert r.status_code == 200 and VOTABLE_ERROR not in r.text, r.text[-800:]


@pytest.mark.parametrize("maxrec", ["-1", "abc", "1e99", "99999999999999999999"])
def test_tap_sync_maxrec(service, maxrec):
    r = _request("POST", f"{service.tap}/sync", data={
        "REQUEST": "doQuery", "LANG": "ADQL", "MAXREC": maxrec,
        "QUERY": "SELECT TOP 3 table_name FROM tap_schema.tables"})
    assert r.status_code < 500 and "list assignment" not in r.text, r.text[-800:]
    # DaCHS's TAP refuses what is not an integer, caps large values at its
    # hard limit and treats a negative MAXREC as 0 (an empty overflowed table)
    if VOTABLE_ERROR in r.text:
        _assert_no_leak(r)
        assert "field maxrec:" in r.text.lower(), r.text[-800:]
    else:  # a result, which quotes the query it ran
        assert maxrec in ("-1", "99999999999999999999"), r.text[-800:]
        assert 'name="QUERY_STATUS" value="' in r.text and "Traceback" not in r.text


# -- 5. 403 pages --------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/harps/q/explore/static/..%2fq.rd",
    "/harps/q/explore/static/..%2f..%2f..%2fetc%2fpasswd",
    "/harps/q/model/static/..%2fq.rd",
    "/harps/q/model/static/%2fetc%2fpasswd",
    "/harps/q/model/static/current/..%2f..%2f..%2fq.rd",
    "/static/..%2f",
    "/static/%2e%2e/",
    "/static/..%2ftemplates",
])
def test_forbidden_pages_name_no_server_path(service, path):
    r = _get(service.url + path)
    _assert_no_leak(r)
    assert r.status_code in (400, 403, 404), (r.status_code, r.text[:1500])
    assert "/etc/" not in r.text and "q.rd" not in r.text, r.text[:1500]
    if r.status_code == 403:
        assert "static" in r.text, r.text[:1500]


def test_static_files_still_served(service):
    r = _get(f"{service.url}/harps/q/explore/static/explore.html")
    assert r.status_code == 200 and "<html" in r.text.lower()
    assert _get(f"{service.url}/static/js/gavo.js").status_code == 200
