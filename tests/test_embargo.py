"""Proprietary data: metadata public, every data path closed to outsiders."""

from __future__ import annotations

import datetime
import subprocess
import urllib.parse
from pathlib import Path

import pytest
import requests
from support import (
    EXAMPLE_ACCREF,
    INPUTS_DIR,
    RESDIR,
    S1D,
    dachs,
    pub_did,
    require,
    restamped_s1d,
    run_ingest,
)

import harps_site

pytestmark = pytest.mark.server

PROGRAMME = "072.C-0488(E)"  # PROG_ID of that file: the owning group
MEMBER = ("harps_test_member", "member-secret-1")
OUTSIDER = ("harps_test_outsider", "outsider-secret-2")


def _dachs_adm(*args: str, check: bool = True) -> None:
    dachs("adm", *args, stingy=False, check=check, capture_output=True)


@pytest.fixture(scope="module")
def users():
    require(subprocess.run(["id", harps_site.DACHS_USER], capture_output=True).returncode == 0,
            "DaCHS admin user missing")
    for user, password in (MEMBER, OUTSIDER):
        _dachs_adm("deluser", user, check=False)
        _dachs_adm("adduser", user, password)
    _dachs_adm("addtogroup", MEMBER[0], PROGRAMME)
    yield
    for user, _ in (MEMBER, OUTSIDER):
        _dachs_adm("deluser", user, check=False)


@pytest.fixture(scope="module")
def embargoed(service, users, tmp_path_factory):
    """A spectrum observed 30 days ago (proprietary for 11 more months)."""
    require(S1D.exists(), "real s1d file missing")
    when = datetime.datetime.utcnow().replace(microsecond=0) - datetime.timedelta(days=30)
    date_obs = when.strftime("%Y-%m-%dT%H:%M:%S.000")
    src = tmp_path_factory.mktemp("embargo") / "recent.fits"
    restamped_s1d(src, "TEST-EMBARGO", date_obs)
    result = run_ingest(src)
    assert result.returncode == 0, result.stdout + result.stderr
    accref = f"harps/data/s1d/{date_obs[:4]}/HARPS.{date_obs.replace(':', '_')}_s1d_A.fits"
    yield accref, pub_did(accref), src.read_bytes()
    from gavo import base
    with base.getDBConnection("admin") as conn:
        conn.execute("DELETE FROM harps.raw_data WHERE accref = %(a)s", {"a": accref})
        conn.commit()
    Path(INPUTS_DIR, accref).unlink(missing_ok=True)


def _data_urls(service, accref: str, did: str) -> dict[str, str]:
    q = urllib.parse.quote
    return {
        "product download": f"{service.url}/getproduct/{accref}",
        "datalink dlget (SDM)": service.dlget(did),
        "datalink original file": service.dlget(
            did, FORMAT="application/fits;content=archive-original"),
        "SODA cutout": service.dlget(did, BAND="6.56e-7 6.57e-7"),
        "SODA cutout FITS": service.dlget(did, BAND="5e-7 5.1e-7", FORMAT="application/fits"),
        "preview": service.preview(did),
        "product preview": f"{service.url}/getproduct/{accref}?preview=True",
        "tar of products": f"{service.url}/getproduct/{q(accref)}?tar=True",
        "model reconstruction": f"{service.url}/{harps_site.RD_ID}/rec/dlget?ID={q(did)}",
        "telluric-free spectrum": f"{service.url}/{harps_site.RD_ID}/stellar/dlget?ID={q(did)}",
        "telluric transmission": f"{service.url}/{harps_site.RD_ID}/telluric/dlget?ID={q(did)}"
                                 "&BAND=6.8e-7%206.9e-7",
    }


def test_metadata_is_public(service, embargoed):
    accref, did, _ = embargoed
    rows = service.tap_rows(
        f"SELECT ssa_targname, release_date, prog_id FROM harps.data WHERE ssa_pubDID = '{did}'")
    assert len(rows) == 1 and rows[0]["prog_id"] == PROGRAMME
    assert rows[0]["release_date"] > datetime.date.today().isoformat()
    oc = service.tap_rows(
        f"SELECT obs_release_date FROM ivoa.obscore WHERE obs_publisher_did = '{did}'")
    assert oc and oc[0]["obs_release_date"] > datetime.date.today().isoformat()
    ssa = requests.get(service.ssa, params={"REQUEST": "queryData",
                                            "TARGETNAME": "TEST-EMBARGO"}, timeout=60)
    assert did in ssa.text
    dl = requests.get(service.dlmeta(did), timeout=60)
    assert dl.status_code == 200 and "#this" in dl.text  # the links are listed...


def test_anonymous_users_get_no_data(service, embargoed):
    accref, did, payload = embargoed
    for what, url in _data_urls(service, accref, did).items():
        r = requests.get(url, timeout=60)
        assert r.status_code in (401, 403), f"{what}: {r.status_code} {url}"
        assert payload[:2880] not in r.content, what
        assert b"\x89PNG" not in r.content[:8], what


def test_outsiders_get_no_data_members_do(service, embargoed):
    accref, did, payload = embargoed
    for what, url in _data_urls(service, accref, did).items():
        if what == "tar of products":
            continue
        r = requests.get(url, auth=OUTSIDER, timeout=60)
        assert r.status_code in (401, 403), f"{what} for an outsider: {r.status_code}"
        r = requests.get(url, auth=(MEMBER[0], "wrong password"), timeout=60)
        assert r.status_code in (401, 403), f"{what} with a wrong password: {r.status_code}"
        r = requests.get(url, auth=MEMBER, timeout=120)
        assert r.status_code == 200, f"{what} for a member: {r.status_code} {r.text[:300]}"
    original = requests.get(_data_urls(service, accref, did)["datalink original file"],
                            auth=MEMBER, timeout=60)
    assert original.content == payload


def test_front_door_cache_never_hands_a_members_answer_to_others(service, embargoed):
    """nginx caches anonymous answers for public products only: what a member
    fetched is never served from the cache to anyone else."""
    accref, did, payload = embargoed
    for what, url in _data_urls(service, accref, did).items():
        if what == "tar of products":
            continue
        for _ in range(2):  # twice: a stored answer would be a HIT the second time
            assert requests.get(url, auth=MEMBER, timeout=120).status_code == 200, what
        for auth in (None, OUTSIDER):
            r = requests.get(url, auth=auth, timeout=60)
            assert r.status_code in (401, 403), f"{what} ({auth}): {r.status_code}"
            assert r.headers.get("X-Cache-Status") != "HIT", what
            assert payload[:2880] not in r.content and b"\x89PNG" not in r.content[:8], what


def test_cached_preview_does_not_leak(service, embargoed):
    accref, did, _ = embargoed
    assert requests.get(service.preview(did), auth=MEMBER, timeout=60).status_code == 200
    assert any(Path(RESDIR, "previews").glob("*.png"))  # now cached on disk
    assert requests.get(service.preview(did), timeout=60).status_code in (401, 403)


def test_no_static_path_serves_archive_files(service, embargoed):
    accref, _, payload = embargoed
    rel = accref.split("/", 1)[1]  # data/s1d/...
    for url in (f"{service.url}/harps/q/static/{rel}", f"{service.url}/static/{rel}",
                f"{service.url}/harps/{rel}", f"{service.url}/harps/q/{rel}",
                f"{service.url}/inputs/{accref}"):
        r = requests.get(url, timeout=60)
        assert r.status_code >= 400 and payload[:2880] not in r.content, url


def test_public_data_stay_open(service, real_files):
    did = pub_did(EXAMPLE_ACCREF)
    for url in (service.dlget(did, BAND="6.56e-7 6.57e-7"), service.preview(did)):
        assert requests.get(url, timeout=60).status_code == 200


@pytest.fixture
def planted_latent(service, embargoed):
    """A latent row for the proprietary spectrum, at a public spectrum's very position.

    Only public spectra are ever encoded; this plants what a mistake (or an
    embargo extended after encoding) would leave, so that the retrieval
    service's own embargo filter is what is tested.
    """
    from gavo import base
    _, did, _ = embargoed
    rows = service.tap_rows("SELECT TOP 1 ssa_pubdid FROM harps.latents WHERE knn IS NOT NULL"
                            " ORDER BY ssa_pubdid")
    require(bool(rows), "no latents published (run make demo)")
    public = rows[0]["ssa_pubdid"]
    with base.getDBConnection("admin") as conn:
        cols = [r[0] for r in conn.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'harps'"
            " AND table_name = 'latents' AND column_name <> 'ssa_pubdid'")]
        conn.execute(f"INSERT INTO harps.latents (ssa_pubdid, {', '.join(cols)}) "
                     f"SELECT %(did)s, {', '.join(cols)} FROM harps.latents "
                     "WHERE ssa_pubdid = %(public)s", {"did": did, "public": public})
        conn.commit()
    yield public, did
    with base.getDBConnection("admin") as conn:
        conn.execute("DELETE FROM harps.latents WHERE ssa_pubdid = %(did)s", {"did": did})
        conn.commit()


def test_model_services_never_hand_out_proprietary_spectra(service, planted_latent):
    public, did = planted_latent
    base = f"{service.url}/{harps_site.RD_ID}"
    params = {"ID": public, "K": "5", "SPECTRA": "True", "RESPONSEFORMAT": "json"}

    def neighbours(auth=None) -> list[str]:
        r = requests.get(f"{base}/retrieve/api", params=params, auth=auth, timeout=120)
        assert r.status_code == 200, r.text[:300]
        return [row[1] for row in r.json()["data"]]

    # the planted row sits at distance 0: first for a member, absent for everyone else
    assert did not in neighbours() and did not in neighbours(OUTSIDER)
    assert neighbours(MEMBER)[1] == did
    # by its own DID: decode and retrieval ask for credentials
    for name, extra in (("retrieve/api", {"K": "3"}), ("decode/api", {})):
        for auth, status in ((None, 401), (OUTSIDER, 403), (MEMBER, 200)):
            r = requests.get(f"{base}/{name}", params={"ID": did, **extra}, auth=auth,
                             timeout=120)
            assert r.status_code == status, (name, auth, r.status_code, r.text[:300])
