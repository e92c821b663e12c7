"""How much the demo's numbers move with the training seed and the thread count.

Runs the real workflow (config/demo.yaml, optionally with overrides) through Snakemake as an
experiments table whose rows differ only in ``train.seed``, once per thread count (``--set-threads``
for the train and evaluate jobs; two 1-thread jobs share the 2 cores), and prints every run's video
top-1, clip top-1 and last validation top-1 with the range. docs/demo.md reports its output.

Run: ``python benchmarks/demo_seeds.py --workdir /tmp/demo-seeds`` (about 30 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def deep_update(config: dict, dotted: str, value: object) -> None:
    *path, key = dotted.split(".")
    for part in path:
        config = config.setdefault(part, {})
    config[key] = value


def run_one_thread_count(workdir: Path, config: dict, seeds: list[int], threads: int, cores: int) -> list[dict]:
    results_dir = workdir / f"results-threads{threads}"
    table = workdir / "seeds.tsv"
    table.write_text("name\ttrain.seed\n" + "".join(f"seed{s}\t{s}\n" for s in seeds))
    config = {**config, "results_dir": str(results_dir), "experiments": str(table)}
    config_file = workdir / f"config-threads{threads}.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(config_file), "--cores", str(cores),
               "--set-threads", f"train={threads}", f"evaluate={threads}"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"snakemake failed ({done.returncode}):\n{done.stderr[-4000:]}")
    wall = time.perf_counter() - started
    rows = []
    for seed in seeds:
        exp = results_dir / "experiments" / f"seed{seed}"
        metrics = json.loads((exp / "evaluate" / "metrics.json").read_text())
        training = [json.loads(line) for line in (exp / "train" / "metrics.jsonl").read_text().splitlines()]
        val = [r["val_top1"] for r in training if "val_top1" in r]
        rows.append({"threads": threads, "seed": seed, "video_top1": metrics["top1"],
                     "clip_top1": metrics["clip_top1"], "val_top1": val[-1] if val else None,
                     "final_loss": [r["loss"] for r in training if "loss" in r][-1]})
    print(f"threads {threads}: {len(seeds)} runs in {wall / 60:.1f} min", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--configfile", type=Path, default=REPO / "config" / "demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML",
                        help="config overrides, e.g. demo.num_frames=160 train.max_iter=1200")
    parser.add_argument("--out", type=Path, help="write the table as CSV here too")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(args.configfile.read_text())
    for item in args.set:
        key, _, value = item.partition("=")
        deep_update(config, key, yaml.safe_load(value))
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_model()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}; overrides: {args.set or 'none'}", flush=True)
    rows = [row for threads in args.threads
            for row in run_one_thread_count(args.workdir, config, args.seeds, threads, args.cores)]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for column in ("video_top1", "clip_top1", "val_top1"):
        print(f"{column}: {table[column].min():.3f} - {table[column].max():.3f} (mean {table[column].mean():.3f})")
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
