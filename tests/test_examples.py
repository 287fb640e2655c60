"""The TAP examples (``/tap/examples``) as a user meets them: rendered, runnable.

DaCHS renders the ``_example`` meta of ``etc/userconfig.rd`` from reStructuredText.
A reST slip (``|BERV|`` reads as a substitution) does not break the page, it
puts a "Docutils System Message" into it, so the rendering is checked here;
then every example query is sent to the running TAP service as written and
must run and return rows on the demo archive.
"""

from __future__ import annotations

import html
import re

import pytest
import requests

pytestmark = pytest.mark.server

#: one example: <div typeof="example" ...> with <h2 property="name"> and <pre property="query">
_EXAMPLE = re.compile(r'<div typeof="example"(.*?)(?=<div typeof="example"|\Z)', re.S)
_NAME = re.compile(r'property="name">(.*?)</', re.S)
_QUERY = re.compile(r'<pre[^>]*property="query">(.*?)</pre>', re.S)


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


@pytest.fixture(scope="module")
def examples_page(service) -> str:
    r = requests.get(f"{service.tap}/examples", timeout=60)
    assert r.status_code == 200
    return r.text


@pytest.fixture(scope="module")
def examples(examples_page) -> dict[str, str]:
    found = {}
    for block in _EXAMPLE.findall(examples_page):
        name, query = _NAME.search(block), _QUERY.search(block)
        assert name and query, f"an example without name or query: {block[:300]}"
        found[_text(name.group(1))] = _text(query.group(1))
    return found


def test_examples_render_without_docutils_errors(examples_page):
    messages = re.findall(r"System Message:[^\n]*\n[^\n]*", _text(examples_page), re.S)
    assert not messages, messages


def test_examples_cover_the_main_use_cases(examples):
    queries = "\n".join(examples.values())
    for needle in ("harps.data", "ivoa.obscore", "CONTAINS(", "release_date",
                   "gavo_latentdist(", "harps.neighbours", "recon_error", "harps.latent_mi",
                   "harps.tags", "harps.retrieval_metrics"):
        assert needle in queries, f"no /tap/examples query uses {needle}"
    vector_form = re.search(r"gavo_latentdist\([^,]+,\s*'[-+0-9.eE ]+'\)", queries)
    assert vector_form, "no /tap/examples query uses gavo_latentdist with an explicit vector"


def test_every_example_runs_and_returns_rows(service, examples):
    """`make test` runs the demo first, so the latent examples have their tables."""
    empty = [name for name, query in examples.items()
             if not service.tap_rows(query)]  # tap_rows asserts HTTP 200 and no error
    assert not empty, f"examples returning no rows on the demo archive: {empty}"


#: every service of harps/q with its examples page (VOSI examples, DALI genparams)
SERVICES = ("ssa", "web", "sdl", "pv", "explore", "model", "rec", "decode", "retrieve")


def _service_examples(service, svc: str) -> list[str]:
    r = requests.get(f"{service.url}/harps/q/{svc}/examples", timeout=60)
    assert r.status_code == 200, f"{svc}/examples: HTTP {r.status_code}"
    blocks = _EXAMPLE.findall(r.text)
    assert blocks, f"{svc}/examples has no example"
    messages = re.findall(r"System Message:[^\n]*\n[^\n]*", _text(r.text), re.S)
    assert not messages, f"{svc}/examples: {messages}"
    return blocks


@pytest.mark.parametrize("svc", SERVICES)
def test_service_examples_render(service, svc):
    for block in _service_examples(service, svc):
        assert _NAME.search(block), block[:300]


@pytest.mark.parametrize("svc, renderer, mime", [("sdl", "dlmeta", "votable"),
                                                 ("sdl", "dlget", "votable"),
                                                 ("pv", "dlget", "image/png")])
def test_datalink_example_ids_resolve(service, svc, renderer, mime):
    ids = {_text(m) for block in _service_examples(service, svc)
           for m in re.findall(r'property="dl-id"[^>]*>(.*?)</', block, re.S)}
    assert ids, f"no dl-id in {svc}/examples"
    for did in ids:
        assert did.startswith("ivo://") and "\\" not in did and "{" not in did, did
        r = requests.get(f"{service.url}/harps/q/{svc}/{renderer}", params={"ID": did},
                         timeout=120)
        assert r.status_code == 200 and mime in r.headers["content-type"], (did, r.text[:300])
        if mime == "votable":
            assert "QUERY_STATUS" not in r.text[:3000] or 'value="OK"' in r.text[:3000]
            assert "NotFoundFault" not in r.text and "Error" not in r.text[:3000], r.text[:500]


def test_ssa_genparam_examples_return_spectra(service):
    ran = 0
    for block in _service_examples(service, "ssa"):
        keys = [_text(k) for k in re.findall(r'property="key"[^>]*>(.*?)</', block, re.S)]
        values = [_text(v) for v in re.findall(r'property="value"[^>]*>(.*?)</', block, re.S)]
        if not keys:
            continue
        params = dict(zip(keys, values, strict=True))
        r = requests.get(service.ssa, params={"REQUEST": "queryData", **params}, timeout=120)
        assert r.status_code == 200 and 'value="OK"' in r.text, r.text[:500]
        assert "<TR>" in r.text, f"SSA example {params} found no spectra"
        ran += 1
    assert ran
