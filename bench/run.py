"""``make bench``: every benchmark, one after the other (about an hour on 2 cores).

Each script prints its own table and saves JSON under bench/out/ (not in
git); bench/README.md records the numbers with the command that made them.
Run them singly to save time: ``.venv/bin/python bench/<name>.py --help``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["spine", "knn", "load", "encode", "science", "telluric"]


def main() -> int:
    only = sys.argv[1:] or ORDER
    for name in only:
        print(f"\n===== bench/{name}.py =====", flush=True)
        if subprocess.run([sys.executable, str(HERE / f"{name}.py")]).returncode:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
