"""The judges: STILTS taplint/votlint/datalinklint, dachs test/val, registry XSDs."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import requests
from support import AUTHORITY, EXAMPLE_ACCREF, RD_ID, SUMMARY, dachs, pub_did, require

pytestmark = [pytest.mark.server, pytest.mark.validator]

ADP_DID = pub_did(EXAMPLE_ACCREF)


def _stilts(*args: str, timeout: int = 600) -> str:
    require(shutil.which("stilts") is not None, "STILTS is not installed")
    out = subprocess.run(["stilts", *args], capture_output=True, text=True, timeout=timeout)
    return out.stdout + out.stderr


def _dachs(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return dachs(*args, stingy=False, capture_output=True, text=True, timeout=timeout)


def test_taplint_reports_zero_errors(service, real_files):
    report = _stilts("taplint", f"tapurl={service.tap}")
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+); Infos: \d+; "
                       r"Summaries: \d+; Failures: (\d+)", report)
    assert totals, report[-3000:]
    errors, warnings, failures = map(int, totals.groups())
    SUMMARY.append(f"stilts taplint: {errors} errors, {warnings} warnings, {failures} failures")
    SUMMARY.extend("  " + ln for ln in report.splitlines() if ln.startswith(("E-", "F-")))
    assert errors == 0, "\n".join(ln for ln in report.splitlines() if ln.startswith("E-"))
    # the only accepted failure: taplint always probes ObsLocTAP (ivoa.obsplan),
    # which describes planned observations, not an archive
    other = [ln for ln in report.splitlines() if ln.startswith("F-") and "F-LOC-" not in ln]
    assert not other, other


def test_votlint_on_ssa_and_datalink_responses(service, real_files, tmp_path):
    for name, url in (
        ("ssa", f"{service.ssa}?REQUEST=queryData&TARGETNAME=HD128621"),
        ("ssa-meta", f"{service.ssa}?REQUEST=queryData&FORMAT=METADATA"),
        ("dlmeta", service.dlmeta(ADP_DID)),
        ("sdm", service.dlget(ADP_DID, BAND="6.56e-7 6.57e-7",
                              FORMAT="application/x-votable+xml;serialization=tabledata")),
    ):
        path = tmp_path / f"{name}.vot"
        path.write_bytes(requests.get(url, timeout=120).content)
        report = _stilts("votlint", f"votable={path}")
        errors = [ln for ln in report.splitlines() if ln.startswith("ERROR")]
        assert not errors, (name, errors)


def test_datalinklint(service, real_files, tmp_path):
    path = tmp_path / "dl.vot"
    path.write_bytes(requests.get(service.dlmeta(ADP_DID), timeout=60).content)
    report = _stilts("datalinklint", f"{path}")
    errors = [ln for ln in report.splitlines() if ln.startswith("E-")]
    warnings = [ln for ln in report.splitlines() if ln.startswith("W-")]
    SUMMARY.append(f"stilts datalinklint: {len(errors)} errors (DaCHS's service_def UCD), "
                   f"{len(warnings)} warnings")
    # DaCHS 2.7 declares service_def with UCD meta.code instead of meta.ref
    # (//datalink#dlresponse); everything else must be clean
    assert all("E-RUCD-1 Wrong UCD for column service_def" in e for e in errors), errors


def test_regsuite_passes(service, real_files):
    result = _dachs("test", "-v", RD_ID)
    print(result.stdout[-2000:])
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b0 failed", result.stdout) or "failed" not in result.stdout.lower(), \
        result.stdout


def test_dachs_val_is_clean(service):
    result = _dachs("val", "-v", RD_ID)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), \
        result.stdout + result.stderr
    assert "not from http://ivoa.net/rdf/uat" not in result.stdout + result.stderr
    prepub = _dachs("val", "-p", RD_ID)
    assert prepub.returncode == 0, prepub.stdout + prepub.stderr


def test_registry_records_validate(service, real_files):
    from gavo.helpers import testtricks
    docs = {}
    for prefix in ("ivo_vor", "oai_dc"):
        r = requests.get(f"{service.url}/oai.xml",
                         params={"verb": "ListRecords", "metadataPrefix": prefix}, timeout=60)
        assert r.status_code == 200
        assert testtricks.getXSDErrors(r.content) is None, prefix
        docs[prefix] = r.text
    ids = set(re.findall(r"<identifier>([^<]+)</identifier>", docs["ivo_vor"]))
    for ivoid in ("harps/q/ssa", "harps/q/data", "tap", "~"):
        assert f"ivo://{AUTHORITY}/{ivoid}" in ids, (ivoid, ids)
    identify = requests.get(f"{service.url}/oai.xml", params={"verb": "Identify"}, timeout=60)
    assert testtricks.getXSDErrors(identify.content) is None
    authority = requests.get(f"{service.url}/oai.xml", params={
        "verb": "GetRecord", "metadataPrefix": "ivo_vor",
        "identifier": f"ivo://{AUTHORITY}"}, timeout=60)
    assert testtricks.getXSDErrors(authority.content) is None
    assert "vg:Authority" in authority.text and "UNCONFIGURED" not in authority.text
