"""Command line: ``harps-synth`` / ``python -m harps_synth``.

Examples::

    harps-synth --out /tmp/archive -n 1000 --seed 7
    harps-synth --out /tmp/bench -n 270000 --step 1.0 --workers 2 --today 2026-11-21
    harps-synth --out /tmp/both -n 50 --format both --err real
    harps-synth --out /tmp/truth -n 200 --step 0.05 --truth
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from harps_data import harps
from harps_synth.archive import write_archive_config
from harps_synth.config import ERR_MODES, FORMATS, ConfigError, SynthConfig


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used for ``--help``)."""
    p = argparse.ArgumentParser(
        prog="harps-synth",
        description="Generate a labelled synthetic HARPS archive (ESO Phase 3 ADP and/or DRS "
                    "s1d files, a label CSV and a run record).")
    p.add_argument("--out", required=True, help="archive directory (created if missing)")
    p.add_argument("-n", "--n-spectra", type=int, default=100, help="number of spectra (100)")
    p.add_argument("--n-stars", type=int, default=None,
                   help="catalogue size (default: about n/20, at least 10)")
    p.add_argument("--seed", type=int, default=1, help="master seed; fixes every byte (1)")
    p.add_argument("--step", type=float, default=harps.WAVE_STEP,
                   help="wavelength sampling in Angstrom (0.01 = the HARPS grid, 313,201 "
                        "points; 1.0 gives small files for header-heavy benchmarks)")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="adp",
                   help="ESO Phase 3 ADP files, DRS s1d files, or both (adp)")
    p.add_argument("--err", choices=ERR_MODES, default="nan",
                   help="ERR column: NaN like real ADPs, or the real 1-sigma noise (nan)")
    p.add_argument("--today", type=_date, default=None,
                   help="reference date YYYY-MM-DD for observation dates and proprietary "
                        "status (default: today; recorded in synth_run.json)")
    p.add_argument("--proprietary-fraction", type=float, default=0.1,
                   help="fraction observed within the year before --today (0.1)")
    p.add_argument("--labels", default=None, help="label CSV (default OUT/labels.csv)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes; the output does not depend on it (1)")
    p.add_argument("--truth", action="store_true",
                   help="also write X.truth.npz next to each X.fits: wave, the noiseless "
                        "telluric-free flux 'stellar' (adu) and the telluric 'transmission' "
                        "(noiseless observed / stellar), berv, rv, airmass, pwv_mm, seed, "
                        "index -- ground truth for stellar/telluric separation; the FITS "
                        "files do not change")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _size(n_bytes: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{n_bytes} B"
        n_bytes /= 1000.0
    return ""


def main(argv: list[str] | None = None) -> int:
    """Run the generator; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = SynthConfig(
            n_spectra=args.n_spectra, seed=args.seed, n_stars=args.n_stars, step=args.step,
            fmt=args.fmt, err=args.err, today=args.today or dt.date.today(),
            proprietary_fraction=args.proprietary_fraction, workers=args.workers,
            truth=args.truth)
        summary = write_archive_config(args.out, config, labels_path=args.labels,
                                       progress=not args.no_progress)
    except ConfigError as ex:
        parser.error(str(ex))
    except OSError as ex:
        print(f"harps-synth: error: {ex.strerror}: {ex.filename}", file=sys.stderr)
        return 1
    print(f"harps-synth: wrote {summary.n_files} files ({summary.n_spectra} spectra, "
          f"--format {config.fmt}, --step {config.step}) to {summary.out_dir} in "
          f"{summary.seconds:.1f} s: {summary.files_per_second:.1f} files/s, "
          f"{_size(summary.n_bytes)} ({_size(summary.n_bytes / max(summary.seconds, 1e-9))}/s); "
          f"labels: {summary.labels_path}; today = {config.today}, seed = {config.seed}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
