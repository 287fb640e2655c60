"""kNN benchmark: top-10 by publisher DID through TAP at 270,000 latent rows.

Run as root with the service up and a model published (``make demo``):
``.venv/bin/python bench/knn.py``.  A scratch copy of the resource
(``hbknn``) gets the current model's description and 270,000 latent rows:
the published latents, repeated with Gaussian noise of 10% of each
dimension's spread (SQL), so that the distribution of distances is the
model's.  Then, interleaved for random target spectra, both through TAP
sync (HTTP, DaCHS, PostgreSQL: what a user waits for):

* ``gavo_latentdist`` over the GiST ``cube`` index;
* brute-force ADQL on the same table: ``SQRT(POWER(l.z1 - t.z1, 2) + ...)``
  over a self-join with the target row, ``ORDER BY`` distance.

Both must return the same ten spectra.  Goal (issue 3): indexed p50 <= 50 ms
and >= 5x faster than brute force.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import time

import requests
from common import SERVER_URL, dachsctl, log, percentiles, psql, save

import harps_site
from harps_data import records
from harps_data.records import ModelDescription

N_ROWS = 270_000
NAME = "hbknn"

def models_dir(name: str) -> str:
    """The models directory of resource ``name`` (scratch or published)."""
    return str(harps_site.resdir_of(f"{name}/q") / "models")


def setup(n_rows: int, seed: int) -> list[str]:
    src = os.path.realpath(f"{models_dir(harps_site.RES_NAME)}/current")
    if not os.path.exists(os.path.join(src, "model.json")):
        raise SystemExit("no published model in harps/q: run `make demo` first")
    model = records.read(ModelDescription, os.path.join(src, "model.json"))
    zcols = [d.column for d in model.informative]
    dachsctl("drop-as", NAME)
    dachsctl("deploy-as", NAME)
    dest = os.path.join(models_dir(NAME), model.model_id)
    os.makedirs(dest, exist_ok=True)
    shutil.copyfile(os.path.join(src, "model.json"), os.path.join(dest, "model.json"))
    os.symlink(model.model_id, os.path.join(models_dir(NAME), "current"))
    for root, dirs, files in os.walk(models_dir(NAME)):
        harps_site.chown_to_dachs(root, *(os.path.join(root, f) for f in dirs + files))
    subprocess.run(harps_site.dachs_command("imp", f"{NAME}/q", "create_latents"), check=True)
    spread = [float(psql(f"SELECT stddev({z}) FROM harps.latents WHERE encode_flags = 0"))
              for z in zcols]
    noisy = ", ".join(f"knn[{i + 1}] + {0.1 * s!r} * sqrt(-2 * ln(1 - random())) * "
                      f"cos(2 * pi() * random())" for i, s in enumerate(spread))
    n_src = int(psql("SELECT count(*) FROM harps.latents WHERE encode_flags = 0"))
    psql(f"SELECT setseed({(seed % 1000) / 1000})")
    psql(f"""INSERT INTO {NAME}.latents (ssa_pubdid, model_id, knn, recon_error, encode_flags,
          ckpt_sha256, train_data, encoded, artefact)
        SELECT 'ivo://bench.invalid/~?' || g || '/' || ssa_pubdid, model_id,
          ARRAY[{noisy}]::real[], recon_error, 0, ckpt_sha256, train_data, encoded, 'bench'
        FROM harps.latents, generate_series(1, {n_rows // n_src + 1}) AS g
        WHERE encode_flags = 0 LIMIT {n_rows}""")
    psql(f"UPDATE {NAME}.latents SET " + ", ".join(
        f"{z} = knn[{i + 1}]" for i, z in enumerate(zcols)))
    psql(f"VACUUM ANALYZE {NAME}.latents")
    dachsctl("restart")
    log(f"{NAME}.latents: {psql(f'SELECT count(*) FROM {NAME}.latents').strip()} rows, "
        f"{len(zcols)} informative dimensions")
    return zcols


def tap(session, query: str) -> list[str]:
    r = session.post(f"{SERVER_URL}/tap/sync", data={
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": "csv"})
    if r.status_code != 200 or "QUERY_STATUS" in r.text[:500]:
        raise RuntimeError(r.text[:1000])
    return [ln.split(",")[0] for ln in r.text.splitlines()[1:]]


def measure(zcols: list[str], rounds: int, seed: int) -> dict:
    rng = random.Random(seed)
    dids = psql(f"SELECT ssa_pubdid FROM {NAME}.latents ORDER BY random() LIMIT {rounds + 5}"
                ).split()
    brute_d = " + ".join(f"POWER(l.{z} - t.{z}, 2)" for z in zcols)
    session = requests.Session()
    times = {"indexed": [], "brute": [], "tap_floor": []}
    floor_q = "SELECT TOP 1 table_name FROM tap_schema.tables"
    for i, did in enumerate(dids):
        t0 = time.perf_counter()
        tap(session, floor_q)
        if i >= 5:
            times["tap_floor"].append(time.perf_counter() - t0)
        queries = {
            "indexed": (f"SELECT TOP 10 ssa_pubdid, gavo_latentdist({NAME}.latents.knn, '{did}')"
                        f" AS d FROM {NAME}.latents ORDER BY d"),
            "brute": (f"SELECT TOP 10 l.ssa_pubdid, SQRT({brute_d}) AS d FROM {NAME}.latents AS l,"
                      f" {NAME}.latents AS t WHERE t.ssa_pubdid = '{did}' ORDER BY d")}
        got = {}
        for kind in rng.sample(list(queries), 2):
            t0 = time.perf_counter()
            got[kind] = tap(session, queries[kind])
            if i >= 5:
                times[kind].append(time.perf_counter() - t0)
        if set(got["indexed"]) != set(got["brute"]):
            raise SystemExit(f"indexed and brute force disagree for {did}")
    result = {k: percentiles(v) for k, v in times.items()}
    result.update(in_database(zcols, dids[:25]))
    return result


def _execution_ms(sql: str) -> float:
    out = psql(f"EXPLAIN (ANALYZE, TIMING OFF) {sql}")
    return float(out.rsplit("Execution Time:", 1)[1].split()[0])


def in_database(zcols: list[str], dids: list[str]) -> dict:
    """The same two queries as PostgreSQL executes them (EXPLAIN ANALYZE), no HTTP/DaCHS."""
    brute_d = " + ".join(f"power(l.{z} - t.{z}, 2)" for z in zcols)
    times = {"db_indexed": [], "db_brute": []}
    for did in dids:
        vec = psql(f"SELECT knn FROM {NAME}.latents WHERE ssa_pubdid = '{did}'").strip()
        cube = f"cube('{vec}'::float8[])"
        times["db_indexed"].append(_execution_ms(
            f"SELECT ssa_pubdid, cube(CAST(knn AS float8[])) <-> {cube} AS d "
            f"FROM {NAME}.latents ORDER BY d LIMIT 10") / 1e3)
        times["db_brute"].append(_execution_ms(
            f"SELECT l.ssa_pubdid, sqrt({brute_d}) AS d FROM {NAME}.latents AS l, "
            f"{NAME}.latents AS t WHERE t.ssa_pubdid = '{did}' ORDER BY d LIMIT 10") / 1e3)
    return {k: percentiles(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=N_ROWS)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    try:
        zcols = setup(args.rows, seed=5)
        result = {"rows": args.rows, "dims": len(zcols), **measure(zcols, args.rounds, seed=5)}
    finally:
        if not args.keep:
            dachsctl("drop-as", NAME)
    i, b = result["indexed"], result["brute"]
    print(f"\nkNN top-10 by DID through TAP sync, {args.rows} rows, {len(zcols)} dimensions")
    print(f"  gavo_latentdist (GiST cube)  p50 {i['p50_ms']:7.1f} ms  p95 {i['p95_ms']:7.1f} ms"
          "   (goal p50 <= 50 ms)")
    print(f"  brute-force ADQL             p50 {b['p50_ms']:7.1f} ms  p95 {b['p95_ms']:7.1f} ms")
    print(f"  speed-up (p50)               x{b['p50_ms'] / i['p50_ms']:.1f}   (goal >= 5)")
    f, di, db = result["tap_floor"], result["db_indexed"], result["db_brute"]
    print(f"  TAP sync floor (trivial query) p50 {f['p50_ms']:7.1f} ms: DaCHS's own cost per query")
    print(f"  in PostgreSQL: indexed p50 {di['p50_ms']:.1f} ms, brute force p50 "
          f"{db['p50_ms']:.1f} ms (x{db['p50_ms'] / di['p50_ms']:.0f})")
    result["speedup_p50"] = b["p50_ms"] / i["p50_ms"]
    log(f"saved {save('knn', result)}")


if __name__ == "__main__":
    main()
