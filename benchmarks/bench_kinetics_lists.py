"""Memory and time of Kinetics-400 list making against the number of annotated training videos, up
to the full 246k-row train.csv.

Writes a copy in the CVDF mirror's layout whose ``annotations/train.csv`` has N rows over the 400
classes of classids.json (about 5% of them missing on disk, as in every real copy) and a small
val split; the videos are empty files (list making only looks at names, it decodes nothing). Then
runs ``kinetics_lists`` and reports tracemalloc's peak and the wall time. The baseline is the
smallest N in the same run: the printed ratio is the memory per extra row.
Run: ``python benchmarks/bench_kinetics_lists.py [--rows 2460 24600 246000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

from nlflow.demo.kinetics_copy import MISSING_EVERY, VAL_ROWS, write_cvdf_copy
from nlflow.lists.kinetics import kinetics_lists


def measure(rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="nlflow-kinetics-lists-") as tmp:
        root = Path(tmp) / "kinetics400"
        write_cvdf_copy(root, rows)
        tracemalloc.start()
        started = time.perf_counter()
        lists = kinetics_lists(root)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert len(lists.missing) == rows // MISSING_EVERY + VAL_ROWS // MISSING_EVERY
    assert len(lists.train) == rows - rows // MISSING_EVERY
    return {"rows": rows, "seconds": seconds, "peak_mb": peak / 2**20, "missing": len(lists.missing)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2460, 24600, 246000])
    args = parser.parse_args()
    results = [measure(rows) for rows in sorted(args.rows)]
    base = results[0]
    for result in results:
        per_row = ((result["peak_mb"] - base["peak_mb"]) * 2**20 / (result["rows"] - base["rows"])
                   if result["rows"] > base["rows"] else float("nan"))
        print(f"{result['rows']:>7} rows: {result['seconds']:7.2f} s, peak {result['peak_mb']:7.1f} MB traced, "
              f"{result['missing']} missing; {per_row:6.0f} B per extra row")


if __name__ == "__main__":
    main()
