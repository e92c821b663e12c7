"""Dress rehearsal at Kinetics-400 scale: the real ``config/kinetics400.yaml`` workflow on a
Kinetics-shaped copy, per stage, and what that means at 246,535 training videos.

``run``: grow a Kinetics-shaped copy (nlflow.demo.kinetics_scale, CVDF layout) to a fraction of
the real size (``--copy`` is shared between fractions: a larger fraction keeps the smaller one's
videos and renders the rest), point ``config/kinetics400.yaml``'s ``dataset.root`` at it, train a
narrow network for a few iterations (as the UCF-101 rehearsal, so the network does not dominate)
and run Snakemake through ``evaluate``, one job at a time, with bench_scale.py's per-job probe:
wall, CPU, peak RSS and anonymous memory of the job's process tree, bytes written, output size.
Then, for the ``lmdb.embed_videos`` decision, the three stores are written once more with the
videos embedded, each measured the same way, and evaluate's CPU part (decode, views) alone.
``report``: the table, fits of every figure against the fraction, the extrapolation to the full
set (fraction 1: 246,535 listed training videos, 19,882 val) on 2, 16 and 32 cores.

Run: ``python benchmarks/bench_scale_kinetics.py run --fraction 0.005`` (then 0.01), ``... report``;
docs/scale.md, "Kinetics-400", holds the results.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

import bench_scale as ucf
from tree_sampler import measure_command

REPO = ucf.REPO
FULL_TRAIN, FULL_VAL = 246_535, 19_882
CORES = (2, 16, 32)
EMBEDDED = "lmdb {part}, videos embedded"


def rehearsal_config(root: Path, width: int, iterations: int) -> dict:
    """config/kinetics400.yaml with ``dataset.root`` at the copy, training on (a few iterations of a
    narrow C2D from scratch, as bench_scale.py's), results in ``results/``; the data stages keep the
    real settings (downscale to short side 256 at qscale 2, ``lmdb.embed_videos: false``, the 30-view test)."""
    config = yaml.safe_load((REPO / "config" / "kinetics400.yaml").read_text())
    config["results_dir"] = "results"
    config["dataset"] = {"name": "kinetics400", "root": str(root), "test_list": "val"}
    config["train"]["enabled"] = True
    return ucf.with_narrow_network(config, width, iterations)


EMBED_CODE = """
import sys
from nlflow.workflow.stages import write_lmdb
entries, classes, videos, manifest, out, kind = sys.argv[1:7]
write_lmdb(entries, classes, videos, manifest, out, kind, embed=True, check_disk=False)
"""


def embedded_stores(workdir: Path, out: Path, env: dict) -> dict[str, dict]:
    """The three stores written again with the videos inside (what ``lmdb.embed_videos: true``
    would cost), one process each, measured like a job: cost and size of the store."""
    results, lists = workdir / "results", workdir / "results" / "lists" / "split1"
    rows = {}
    for part, entries in (("train", "train_shuffled.txt"), ("val", "val.txt"), ("test", "test.txt")):
        target = out / f"{part}.lmdb"
        command = [sys.executable, "-c", EMBED_CODE, str(lists / entries), str(lists / "classes.txt"),
                   str(results / "downscaled" / "videos"), str(results / "downscaled" / "manifest.csv"), str(target), part]
        cost = measure_command(command, env=env)
        if cost["returncode"] != 0:
            raise SystemExit(f"writing the embedded {part} store failed: {cost}")
        size = target.stat().st_blocks * 512  # one file (subdir=False)
        rows[EMBEDDED.format(part=part)] = {**cost, "jobs": 1, "output_mb": round(size / 2**20, 1)}
    return rows


def run_rehearsal(args: argparse.Namespace) -> None:
    from nlflow.demo.kinetics_scale import generate_kinetics_scale

    work = Path(args.work) / f"f{args.fraction:g}"
    copy = Path(args.copy)
    workdir, stats_dir = work / "run", work / "job_stats"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    quiet = ucf.wait_until_quiet(args.quiet_load, args.quiet_wait)
    started = ucf.stamp()
    generated = time.time()
    summary = generate_kinetics_scale(copy, args.fraction, seed=args.seed, n_jobs=args.cores, resume=True)
    generate_s = time.time() - generated
    config = rehearsal_config(copy, args.width, args.iterations)
    config_file = work / "rehearsal.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    stats_dir.mkdir(parents=True, exist_ok=True)
    env = ucf.probe_environment(stats_dir)
    # our own rendering raised the load: wait for it to settle (a shorter wait than the first)
    quiet_after_generating = ucf.wait_until_quiet(args.quiet_load, args.settle_wait)
    load_before_run = ucf.load_average()
    whole = measure_command(ucf.snakemake_command(workdir, config_file, "evaluate", args.cores), env=env,
                            log=work / "snakemake.log")
    if whole["returncode"] != 0:
        raise SystemExit(f"the rehearsal run failed; see {work / 'snakemake.log'} and {workdir / 'results' / 'logs'}")
    load_after_run = ucf.load_average()
    jobs = ucf.read_job_stats(stats_dir)
    embedded = embedded_stores(workdir, work / "embedded", ucf.probe_environment(work / "unused"))
    record = {
        "dataset": "kinetics400", "fraction": args.fraction, "date": started, "cores": args.cores, "width": args.width,
        "iterations": args.iterations, "rows": summary.rows, "missing": summary.missing, "files": summary.files,
        "rendered": summary.rendered, "frames": summary.num_frames, "video_mb": round(summary.video_bytes / 2**20, 1),
        "generate_s": round(generate_s, 1), **quiet, "quiet_before_run": quiet_after_generating,
        "load_before_run": load_before_run, "load_after_run": load_after_run, "snakemake": whole,
        "train_videos": ucf.count_lines(workdir / "results" / "lists" / "split1" / "train.txt"),
        "test_videos": ucf.count_lines(workdir / "results" / "lists" / "split1" / "test.txt"),
        "missing_named": ucf.count_lines(workdir / "results" / "lists" / "split1" / "missing.csv") - 1,
        "downscaled_videos": sum(1 for _ in (workdir / "results" / "downscaled" / "videos").rglob("*.mp4")),
        "network_per_test_video": ucf.network_cost(workdir), "test_data": ucf.test_data_cost(workdir, config),
        "stages": {**ucf.stage_rows(jobs), **embedded}, "jobs": jobs,
    }
    ucf.save_measurement(Path(args.results), f"kinetics-run-f{args.fraction:g}", record)
    print(json.dumps({key: record[key] for key in ("fraction", "rows", "files", "load_at_start", "load_after_run")}))
    print(stage_table([record]))
    if not args.keep_run:
        shutil.rmtree(workdir)


# ---------------------------------------------------------------- fits and the full size


def stages_of(run: dict) -> dict[str, dict]:
    return ucf.with_evaluate_data(run)


def fit_to_full(runs: list[dict], stage: str, field: str) -> tuple[float, float]:
    """(fixed, at fraction 1) of the line through the runs' ``field`` against their fractions."""
    fixed, per_fraction = ucf.fit_per_video([run["fraction"] for run in runs],
                                            [stages_of(run)[stage][field] for run in runs])
    return fixed, fixed + per_fraction


def extrapolate(runs: list[dict]) -> dict:
    names = [name for name in stages_of(runs[0]) if all(name in stages_of(run) for run in runs)]
    table = {}
    for stage in names:
        wall_fixed, wall = fit_to_full(runs, stage, "wall_s")
        _, cpu = fit_to_full(runs, stage, "cpu_s")
        _, output = fit_to_full(runs, stage, "output_mb")
        anon = [stages_of(run)[stage]["peak_anon_mb"] for run in runs]
        wall, cpu = max(wall, 0.0), max(cpu, 0.0)
        table[stage] = {
            "fixed_wall_s": wall_fixed, "full_cpu_s": cpu, "full_output_gb": max(output, 0.0) / 1024,
            "peak_anon_mb": anon, "peak_rss_mb": [stages_of(run)[stage]["peak_rss_mb"] for run in runs],
            **{f"full_wall_s_{c}": ucf.wall_on_cores(stage, wall, cpu, c) for c in CORES},
        }
    totals = {}
    for cores in CORES:
        walls = {stage: row[f"full_wall_s_{cores}"] for stage, row in table.items()
                 if stage not in ucf.NOT_IN_TOTALS and stage != "evaluate" and "embedded" not in stage}
        lmdb = [walls.pop(stage) for stage in ucf.LMDB_STAGES if stage in walls]
        lmdb_wall = (max(lmdb) if cores >= 3 else max(max(lmdb), sum(lmdb) / 2)) if lmdb else 0.0
        totals[cores] = sum(walls.values()) + lmdb_wall
    return {"full": {"train_rows": FULL_TRAIN, "val_rows": FULL_VAL}, "stages": table, "total_wall_s": totals}


def stage_table(runs: list[dict]) -> str:
    return ucf.markdown_stage_table(runs, "fraction", tuple(EMBEDDED.format(part=p) for p in ("train", "val", "test")))


def extrapolation_table(result: dict) -> str:
    lines = ["| stage | full CPU s | 2 cores | 16 cores | 32 cores | output GB | peak anon MB (runs) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for stage, row in result["stages"].items():
        lines.append(f"| {stage} | {row['full_cpu_s']:.0f} | {ucf.hours(row['full_wall_s_2'])} | "
                     f"{ucf.hours(row['full_wall_s_16'])} | {ucf.hours(row['full_wall_s_32'])} | "
                     f"{row['full_output_gb']:.2f} | {' / '.join(f'{v:.0f}' for v in row['peak_anon_mb'])} |")
    totals = result["total_wall_s"]
    lines.append(f"| **total (data stages + evaluation's CPU part)** | | {ucf.hours(totals[2])} | {ucf.hours(totals[16])} | "
                 f"{ucf.hours(totals[32])} | | |")
    return "\n".join(lines)


def report(args: argparse.Namespace) -> None:
    runs = sorted(ucf.load_measurements(Path(args.results), "kinetics-run-"), key=lambda run: run["fraction"])
    print(stage_table(runs))
    if len(runs) < 2:
        print("\nonly one fraction measured: no fit")
        return
    result = extrapolate(runs)
    ucf.save_measurement(Path(args.results), "kinetics-extrapolation", result)
    print()
    print(extrapolation_table(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/nlflow-kscale", help="where runs go")
    parser.add_argument("--copy", default="/tmp/nlflow-kscale/copy", help="the Kinetics-shaped copy (grown in place)")
    parser.add_argument("--results", default=str(REPO / "docs" / "scale"), help="where measurements go (JSON)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--quiet-load", type=float, default=2.5, help="wait until the 1-minute load is below this")
    parser.add_argument("--quiet-wait", type=float, default=10 * 60, help="wait at most this long before generating (s)")
    parser.add_argument("--settle-wait", type=float, default=120, help="... and after generating (s)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="grow the copy and run the workflow at one fraction")
    run.add_argument("--fraction", type=float, required=True)
    run.add_argument("--width", type=int, default=2, help="network width (the real one is 64)")
    run.add_argument("--iterations", type=int, default=4)
    run.add_argument("--keep-run", action="store_true", help="keep the run's results (downscaled videos, stores)")
    run.set_defaults(func=run_rehearsal)
    rep = commands.add_parser("report", help="table, fits and extrapolation from the measurements")
    rep.set_defaults(func=report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
