"""Spine benchmark: ingest throughput and SSA/TAP latency at 100, 10k and 270k rows.

Run as root with the service up (``make bench`` or
``.venv/bin/python bench/spine.py``).  Steps, all in one run:

1. A pool of 10,000 header-heavy synthetic ADP files (3000-card primary
   headers like real ADPs, 1 A sampling so the pool fits on disk).
2. Three scratch copies of the resource: ``hb100``, ``hb10k``, ``hb270k``.
   ``harps-ingest`` loads 100 files into hb100 and the 10,000 into hb10k
   (throughput at 10k).  hb270k first gets 260,000 rows copied in SQL from
   hb10k (positions and dates shifted; these rows have no files and no
   coverage polygon), then the same 10,000 files through ``harps-ingest``
   (throughput at 270k).  270,000 real files would need 65 GB.
3. SSA cone searches (POS/SIZE) and TAP sync cone queries at random row
   positions, interleaved round-robin across the three tables so machine
   noise hits all alike; p50/p95 and ratios against the 100-row table.

Goals (issue 2): ingest >= 500 files/s; SSA p50 at 270k <= 1.5x the 100-row p50.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time

import requests
from common import PY, SERVER_URL, dachsctl, log, percentiles, psql, save, synth_pool

TABLES = {"hb100": 100, "hb10k": 10_000, "hb270k": 270_000}
SEED_ROWS = "hb10k"


def ingest(rd: str, paths: list[str]) -> dict:
    t0 = time.perf_counter()
    res = subprocess.run([PY, "-m", "harps_service.ingest", "--rd", f"{rd}/q", *paths],
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"ingest into {rd} failed:\n{res.stdout}\n{res.stderr}")
    n = int(res.stdout.split(" imported")[0].split()[-1])
    log(f"{rd}: {res.stdout.strip().splitlines()[-1]}")
    return {"files": n, "wall_s": wall, "files_per_s": n / wall}


def replicate(src: str, dst: str, copies: int) -> None:
    """Copy every row of src.raw_data ``copies`` times into dst (shifted)."""
    cols = [c for c in psql(
        f"SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM "
        f"information_schema.columns WHERE table_schema='{src}' AND table_name='raw_data'"
    ).strip().split(",")]
    shifted = {
        "product_id": "product_id || '.r' || g",
        "accref": f"replace(accref, '{src}/', '{dst}/') || '.r' || g",
        "ra": "(ra + g * 13.37)::numeric % 360",
        "dec": "greatest(-89.9, least(89.9, dec + (mod(g, 7) - 3) * 2.1))",
        "ssa_location": ("spoint(radians((ra + g * 13.37)::numeric % 360), "
                         "radians(greatest(-89.9, least(89.9, dec + (mod(g, 7) - 3) * 2.1))))"),
        "ssa_region": "NULL",
        "mjd_obs": "mjd_obs - g * 0.731", "mjd_end": "mjd_end - g * 0.731",
        "ssa_dateobs": "ssa_dateobs - g * 0.731",
        "datalink": f"replace(datalink, '{src}', '{dst}') || '.r' || g",
    }
    select = ", ".join(shifted.get(c, c) for c in cols)
    psql(f"INSERT INTO {dst}.raw_data ({','.join(cols)}) SELECT {select} "
         f"FROM {src}.raw_data, generate_series(1, {copies}) AS g")
    psql(f"INSERT INTO dc.products SELECT replace(p.accref, '{src}/', '{dst}/') || '.r' || g, "
         f"owner, embargo, mime, accesspath, '{dst}.raw_data', preview, datalink, preview_mime "
         f"FROM dc.products p, generate_series(1, {copies}) AS g "
         f"WHERE sourcetable = '{src}.raw_data'")
    psql(f"ANALYZE {dst}.raw_data")


def positions(table: str, n: int) -> list[tuple[float, float]]:
    out = psql(f"SELECT ra, dec FROM {table}.raw_data ORDER BY random() LIMIT {n}")
    return [tuple(map(float, ln.split("|"))) for ln in out.splitlines() if ln]


def measure_queries(rounds: int, seed: int) -> dict:
    rng = random.Random(seed)
    session = requests.Session()
    pos = {t: positions(t, rounds) for t in TABLES}
    times: dict[str, dict[str, list[float]]] = {t: {"ssa": [], "tap": []} for t in TABLES}
    for i in range(rounds + 5):
        order = list(TABLES)
        rng.shuffle(order)
        for t in order:
            ra, dec = pos[t][i % len(pos[t])]
            t0 = time.perf_counter()
            r = session.get(f"{SERVER_URL}/{t}/q/ssa/ssap.xml", params={
                "REQUEST": "queryData", "POS": f"{ra},{dec}", "SIZE": "0.1", "MAXREC": "100"})
            t1 = time.perf_counter()
            assert r.status_code == 200 and ('value="OK"' in r.text
                                             or 'value="OVERFLOW"' in r.text), r.text[:500]
            q = (f"SELECT TOP 100 ssa_pubdid, ssa_snr, berv, airmass FROM {t}.data WHERE "
                 f"1=CONTAINS(ssa_location, CIRCLE('ICRS', {ra}, {dec}, 0.05))")
            r = session.post(f"{SERVER_URL}/tap/sync", data={
                "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": q})
            t2 = time.perf_counter()
            assert r.status_code == 200 and 'value="OK"' in r.text, r.text[:500]
            if i >= 5:  # warm-up rounds are not counted
                times[t]["ssa"].append(t1 - t0)
                times[t]["tap"].append(t2 - t1)
    return {t: {k: percentiles(v) for k, v in d.items()} for t, d in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=200, help="queries per table and protocol")
    ap.add_argument("--keep", action="store_true", help="keep the scratch resources")
    args = ap.parse_args()

    pool = synth_pool("pool10k", 10_000, seed=101)
    files = sorted(str(p) for p in pool.rglob("*.fits"))
    for t in TABLES:
        dachsctl("drop-as", t)
        dachsctl("deploy-as", t)
    try:
        result = {"ingest": {
            "hb100": ingest("hb100", files[:100]),
            "hb10k": ingest("hb10k", files),
        }}
        log("copying 260,000 rows into hb270k")
        replicate(SEED_ROWS, "hb270k", 26)
        result["ingest"]["hb270k"] = ingest("hb270k", files)
        counts = {t: int(psql(f"SELECT count(*) FROM {t}.raw_data")) for t in TABLES}
        log(f"rows: {counts}")
        dachsctl("restart")
        result["queries"] = measure_queries(args.rounds, seed=7)
        result["rows"] = counts
    finally:
        if not args.keep:
            for t in TABLES:
                dachsctl("drop-as", t)
    report(result)
    log(f"saved {save('spine', result)}")


def report(result: dict) -> None:
    print("\nIngest (harps-ingest, end to end)")
    for t, r in result["ingest"].items():
        print(f"  {t:7s} {r['files']:6d} files in {r['wall_s']:7.1f} s = {r['files_per_s']:6.0f} "
              "files/s   (goal >= 500)")
    q = result["queries"]
    print("\nQuery latency, p50 / p95 in ms (ratio of p50 to the 100-row table)")
    for proto in ("ssa", "tap"):
        base = q["hb100"][proto]["p50_ms"]
        for t in TABLES:
            s = q[t][proto]
            print(f"  {proto.upper():3s} {t:7s} {s['p50_ms']:7.1f} / {s['p95_ms']:7.1f}   "
                  f"x{s['p50_ms'] / base:4.2f}"
                  + ("   (goal SSA <= 1.5)" if proto == "ssa" else ""))


if __name__ == "__main__":
    main()
