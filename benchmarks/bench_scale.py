"""Dress rehearsal at UCF-101 scale: what each stage of the real workflow costs, and how that grows.

``run``: generate a UCF-101-shaped dataset at a fraction of the real size (nlflow.demo.scale),
then run the real workflow on it with Snakemake (``config/config.yaml`` with ``file:`` URLs to the
generated archives and a narrow network, so the network does not dominate), one job at a time,
and record per job: wall time, CPU time, peak RSS and anonymous RSS summed over the job's process
tree, bytes written, size of its outputs (benchmarks/probe/: measured inside each job).
``qscale``: downscale sizes, encode time, quality and decode speed at several quantisers.
``solid``: extraction of a stored and a solid RAR of the same videos (memory must stay flat).
``report``: the table, the fitted per-video cost, the extrapolation to 13,320 videos on 2, 16 and
32 cores, and a plot, from the saved measurements.

Timing needs a quiet machine: each measurement first waits (up to ``--quiet-wait`` s) until the
1-minute load average is below ``--quiet-load``, and records the load before and after.
Run: ``python benchmarks/bench_scale.py run --fraction 0.01`` (then 0.1), ``... qscale``, ``... solid``,
``... report``; docs/scale.md holds the results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).resolve().parent / "probe"
sys.path.insert(0, str(PROBE))
from tree_sampler import measure_command  # noqa: E402

FULL_VIDEOS = 13_320
STAGES = (  # table order: (stage, Snakemake rules whose jobs make it up)
    ("download", ("download_dataset",)),
    ("extract", ("extract_dataset",)),
    ("lists", ("make_lists",)),
    ("downscale", ("downscale",)),
    ("shuffle_rep", ("shuffle_rep",)),
    ("lmdb train", ("write_lmdb-train",)),
    ("lmdb val", ("write_lmdb-val",)),
    ("lmdb test", ("write_lmdb-test",)),
    ("clean_weights", ("clean_weights",)),
    ("train (few iterations)", ("train",)),
    ("evaluate", ("evaluate",)),
)
# How each stage spreads over c cores (see docs/scale.md, "Extrapolation"): "parallel" stages split
# their CPU time over the cores (downscale's workers, evaluate's decoding workers), "serial" ones
# take their 2-core wall time whatever the cores (one thread; the three LMDB jobs run side by side).
PARALLEL_STAGES = {"downscale", "evaluate", "evaluate: test data (decode, views)"}
LMDB_STAGES = ("lmdb train", "lmdb val", "lmdb test")


# ---------------------------------------------------------------- a quiet machine


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def wait_until_quiet(threshold: float, max_wait: float, poll: float = 60.0) -> dict:
    """Poll the 1-minute load average until it is below ``threshold`` or ``max_wait`` passed."""
    started = time.time()
    while load_average() >= threshold and time.time() - started < max_wait:
        print(f"load {load_average()} >= {threshold}: waiting ({time.time() - started:.0f} s so far)", flush=True)
        time.sleep(poll)
    return {"load_at_start": load_average(), "waited_s": round(time.time() - started),
            "quiet": load_average() < threshold}


def stamp() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------- the rehearsal run


def rehearsal_config(source: Path, width: int, iterations: int) -> dict:
    """config/config.yaml pointed at the generated archives (``file:``), with a narrow network trained
    from scratch for a few iterations; the data stages keep the real settings."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for part, name in (("videos", "UCF101.rar"), ("splits", "UCF101TrainTestSplits-RecognitionTask.zip")):
        config["dataset"][part].update(urls=[f"file:{source / name}"], sha256=None)
    return with_narrow_network(config, width, iterations)


def with_narrow_network(config: dict, width: int, iterations: int) -> dict:
    """``config`` training a narrow network from scratch for ``iterations`` on 2 cores, tested as usual."""
    config["pretrained"] = {"name": None, "pkl": None, "drop_head": True, "keep_bn_stats": True}
    # C2D without non-local blocks at width 2: the cheapest network the builder makes, at the real
    # 8x8 clip and 256-pixel test views (the views' decoding is what this rehearsal measures).
    config["model"] = {"arch": "c2d", "depth": 50, "use_nonlocal": False, "width": width, "video_length": 8,
                       "sample_rate": 8, "pool1_padding": 0, "frozen_bn": False, "dropout": 0.5}
    config["train"].update(batch_size=8, accumulate=1, max_iter=iterations, lr_steps=None, lr_relative=None,
                           warmup_iters=0, amp="none", channels_last=False, gpus=0, num_workers=2,
                           checkpoint_period=1000, val_period=0, val_videos=8, precise_bn_iters=1)
    config["test"].update(num_workers=2, batch_size=30, amp="none")
    return config


def snakemake_command(workdir: Path, config_file: Path, target: str, cores: int) -> list[str]:
    # serial=1: one job at a time, so that each job's wall time is its own (the LMDB jobs would
    # otherwise share the two cores); the extrapolation puts the parallel ones side by side again.
    return [sys.executable, "-m", "snakemake", target, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(config_file), "--cores", str(cores), "--resources", "serial=1",
            "--default-resources", "serial=1"]


def probe_environment(stats_dir: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROBE), str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["NLFLOW_STAGE_STATS"] = str(stats_dir)
    return env


def read_job_stats(stats_dir: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(stats_dir.glob("*.json"))}


def stage_rows(jobs: dict[str, dict]) -> dict[str, dict]:
    """Per stage: jobs' times and bytes added up, memory the largest of its jobs (they ran one at a time)."""
    rows = {}
    for stage, prefixes in STAGES:
        parts = [stats for name, stats in jobs.items() if any(name.startswith(p) for p in prefixes)]
        if not parts:
            continue
        rows[stage] = {
            "jobs": len(parts),
            "wall_s": round(sum(p["wall_s"] for p in parts), 2),
            "cpu_s": round(sum(p["cpu_s"] for p in parts), 2),
            "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
            "peak_anon_mb": max(p["peak_anon_mb"] for p in parts),
            "others_cores": max(p.get("others_cores", float("nan")) for p in parts),
            "written_mb": round(sum(p["written_mb"] for p in parts), 1),
            "output_mb": round(sum(p["output_mb"] for p in parts), 1),
        }
    return rows


def run_rehearsal(args: argparse.Namespace) -> None:
    from nlflow.demo.scale import generate_scale_demo

    work = Path(args.work) / f"f{args.fraction:g}"
    source, workdir, stats_dir = work / "source", work / "run", work / "job_stats"
    if work.exists() and not args.keep:
        shutil.rmtree(work)
    quiet = wait_until_quiet(args.quiet_load, args.quiet_wait)
    started = stamp()
    generated = time.time()
    summary = generate_scale_demo(source, args.fraction, seed=args.seed, n_jobs=args.cores,
                                  max_frames=args.max_frames)
    generate_s = time.time() - generated
    config_file = work / "rehearsal.yaml"
    config = rehearsal_config(source, args.width, args.iterations)
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    stats_dir.mkdir(parents=True, exist_ok=True)
    quiet_after_generating = wait_until_quiet(args.quiet_load, args.quiet_wait)  # our own rendering, too
    load_before_run = load_average()
    whole = measure_command(snakemake_command(workdir, config_file, "evaluate", args.cores),
                            env=probe_environment(stats_dir), log=work / "snakemake.log")
    if whole["returncode"] != 0:
        raise SystemExit(f"the rehearsal run failed; see {work / 'snakemake.log'} and {workdir / 'results' / 'logs'}")
    jobs = read_job_stats(stats_dir)
    record = {
        "fraction": args.fraction, "max_frames": args.max_frames, "date": started, "cores": args.cores, "width": args.width,
        "videos": summary.num_videos, "frames": summary.num_frames,
        "video_mb": round(summary.video_bytes / 2**20, 1), "archive_mb": round(summary.archive_bytes / 2**20, 1),
        "generate_s": round(generate_s, 1), **quiet, "quiet_before_run": quiet_after_generating,
        "load_before_run": load_before_run,
        "load_after_run": load_average(), "snakemake": whole, "test_videos": count_lines(
            workdir / "results" / "lists" / "split1" / "test.txt"), "network_per_test_video": network_cost(workdir),
        "test_data": test_data_cost(workdir, config),
        "stages": stage_rows(jobs), "jobs": jobs,
    }
    save_measurement(Path(args.results), f"run-f{args.fraction:g}", record)
    print(json.dumps({key: record[key] for key in ("fraction", "videos", "load_at_start", "load_after_run")}))
    print(markdown_stage_table([record]))
    if not args.keep_data:
        shutil.rmtree(source)


def count_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def network_cost(workdir: Path, repeats: int = 3) -> dict:
    """Wall and CPU seconds of the trained narrow network on one video's 30 test views, as evaluate
    runs it (30 views per pass, two threads)."""
    import torch

    from nlflow.evaluate.scorer import ViewScorer
    from nlflow.evaluate.testset import load_model

    torch.set_num_threads(2)
    model = load_model(workdir / "results" / "train" / "model_final.pt")
    scorer = ViewScorer(model, batch_size=30, device="cpu")
    views = torch.randint(0, 255, (30, 8, 256, 256, 3), dtype=torch.uint8)
    scorer.score(views)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        scorer.score(views)
    return {"wall_s": round((time.perf_counter() - wall) / repeats, 3),
            "cpu_s": round((time.process_time() - cpu) / repeats, 3)}


def test_data_cost(workdir: Path, config: dict) -> dict:
    """What evaluate's DataLoader workers do for every test video, in this one process: read the
    record from the test store, decode the union of the 10 clips' frames, cut the 30 views. At full
    size the network runs on a GPU; this part stays on the CPU and splits over the workers."""
    from tree_sampler import TreeSampler, others_cores, system_busy_seconds

    from nlflow.store.torch_datasets import TestVideoDataset
    from nlflow.video.views import ViewSpec

    test = config["test"]
    spec = ViewSpec(video_length=config["model"]["video_length"], sample_rate=config["model"]["sample_rate"],
                    num_clips=test["num_clips"], num_crops=test["num_crops"], scale=test["scale"],
                    crop_size=test["crop_size"])
    dataset = TestVideoDataset(str(workdir / "results" / "lmdb" / "split1" / "test.lmdb"), spec)
    sampler = TreeSampler().start()
    busy, wall, cpu = system_busy_seconds(), time.perf_counter(), time.process_time()
    for index in range(len(dataset)):
        dataset[index]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sampler.stop()
    return {"videos": len(dataset), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "others_cores": others_cores(busy, cpu, wall), "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
            "peak_anon_mb": round(sampler.peak_anon / 2**20, 1)}


def save_measurement(results: Path, name: str, record: dict) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")


def load_measurements(results: Path, prefix: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob(f"{prefix}*.json"))]


# ---------------------------------------------------------------- qscale: disk against decode speed


def qscale_comparison(args: argparse.Namespace) -> None:
    """Downscale a sample of rehearsal videos at each quantiser; compare size, encode time, quality
    (PSNR against the same frames scaled without re-encoding) and the decoding the loaders do."""
    from qscale_check import compare_qscales

    quiet = wait_until_quiet(args.quiet_load, args.quiet_wait)
    started = stamp()
    record = compare_qscales(Path(args.work), args.fraction, args.sample, args.qscales, args.seed)
    record.update(date=started, **quiet, load_after=load_average())
    save_measurement(Path(args.results), "qscale", record)
    print(json.dumps(record, indent=1))


# ---------------------------------------------------------------- solid RAR extraction


def extraction(args: argparse.Namespace) -> None:
    """Pack the ``fraction`` run's extracted videos into a stored and a solid RAR (the generator's
    packer; solid: one compressed stream) and extract each with the extract stage in a process of
    its own, measured as the jobs of a run are: memory must not grow with the archive."""
    from nlflow.demo.scale import full_inventory, select_fraction, write_video_rar

    videos_root = Path(args.work) / f"f{args.fraction:g}" / "run" / "results" / "extracted" / "videos" / "UCF-101"
    if not videos_root.is_dir():
        raise SystemExit(f"no extracted videos under {videos_root}: run `bench_scale.py run --fraction {args.fraction:g}` first")
    videos = select_fraction(full_inventory(args.seed), args.fraction)
    record = {"fraction": args.fraction, "videos": len(videos)}
    for kind in ("stored", "solid"):
        work = Path(args.work) / f"{kind}-f{args.fraction:g}"
        if work.exists():
            shutil.rmtree(work)
        packed = time.time()
        write_video_rar(work / "UCF101.rar", videos_root, videos, solid=kind == "solid")
        pack_s = time.time() - packed
        quiet = wait_until_quiet(args.quiet_load, args.quiet_wait)
        started = stamp()
        code = "from nlflow.workflow.stages import extract; import sys; extract(sys.argv[1], sys.argv[2])"
        cost = measure_command([sys.executable, "-c", code, str(work / "UCF101.rar"), str(work / "extracted")],
                               env=probe_environment(work / "unused"))
        video_bytes = sum(p.stat().st_size for p in (work / "extracted").rglob("*.avi"))
        record[kind] = {"date": started, **quiet, "load_after": load_average(),
                        "archive_mb": round((work / "UCF101.rar").stat().st_size / 2**20, 1),
                        "video_mb": round(video_bytes / 2**20, 1), "pack_s": round(pack_s, 1), "extract": cost}
        print(kind, json.dumps(record[kind]), flush=True)
        shutil.rmtree(work)
    save_measurement(Path(args.results), f"extract-f{args.fraction:g}", record)


# ---------------------------------------------------------------- fit, extrapolation, table, plot


def fit_per_video(counts: list[int], values: list[float]) -> tuple[float, float]:
    """(fixed, per-video) of the least-squares line value = fixed + per_video x videos."""
    per_video, fixed = np.polyfit(np.asarray(counts, float), np.asarray(values, float), 1)
    return float(fixed), float(per_video)


EVALUATE_DATA = "evaluate: test data (decode, views)"
# Not in the totals: a narrow network trained for a few iterations says nothing about the real
# training, and clean_weights costs the same at any dataset size.
NOT_IN_TOTALS = ("train (few iterations)", "clean_weights")


def with_evaluate_data(run: dict) -> dict[str, dict]:
    """The run's stages plus evaluate's data part, measured on its own after the run (test_data_cost):
    at full size the network runs on a GPU and its time depends on the GPU, while decoding the
    views stays on the CPU."""
    stages = dict(run["stages"])
    data, evaluate = run.get("test_data"), stages.get("evaluate")
    if data and evaluate:
        # memory: the evaluate job's, whose workers do this work
        stages[EVALUATE_DATA] = {**evaluate, "wall_s": data["wall_s"], "cpu_s": data["cpu_s"],
                                 "others_cores": data["others_cores"], "written_mb": 0.0, "output_mb": 0.0}
    return stages


def fits(runs: list[dict], field: str) -> dict[str, tuple[float, float]]:
    stages = [with_evaluate_data(run) for run in runs]
    names = [name for name in stages[0] if all(name in run for run in stages)]
    counts = [run["videos"] for run in runs]
    return {name: fit_per_video(counts, [run[name][field] for run in stages]) for name in names}


def at_full_size(fit: tuple[float, float], videos: int = FULL_VIDEOS) -> float:
    fixed, per_video = fit
    return max(fixed + per_video * videos, 0.0)


def wall_on_cores(stage: str, wall_2: float, cpu: float, cores: int) -> float:
    """A stage's wall time on ``cores`` cores from its full-size 2-core wall and CPU time:
    downscale (one video per worker thread) and evaluate's decoding (DataLoader workers, with
    test.num_workers set to the cores) split their CPU time over the cores; every other stage is
    one thread and keeps its wall time."""
    if stage in PARALLEL_STAGES and cores > 2:
        return cpu / cores
    return wall_2


def extrapolate(runs: list[dict], cores_list=(2, 16, 32)) -> dict:
    wall_fit, cpu_fit, peak_fit = fits(runs, "wall_s"), fits(runs, "cpu_s"), fits(runs, "peak_rss_mb")
    disk_fit = fits(runs, "output_mb")
    table = {}
    for stage in wall_fit:
        wall, cpu = at_full_size(wall_fit[stage]), at_full_size(cpu_fit[stage])
        table[stage] = {
            "per_video_wall_s": wall_fit[stage][1], "fixed_wall_s": wall_fit[stage][0],
            "per_video_cpu_s": cpu_fit[stage][1], "full_cpu_s": cpu,
            "per_video_peak_rss_kb": peak_fit[stage][1] * 1024,
            "full_output_gb": at_full_size(disk_fit[stage]) / 1024,
            **{f"full_wall_s_{c}": wall_on_cores(stage, wall, cpu, c) for c in cores_list},
        }
    totals = {}
    for cores in cores_list:
        walls = {stage: row[f"full_wall_s_{cores}"] for stage, row in table.items()
                 if stage not in NOT_IN_TOTALS and stage != "evaluate"}
        lmdb = [walls.pop(stage) for stage in LMDB_STAGES if stage in walls]
        # the three LMDB jobs run side by side when there are cores for them
        lmdb_wall = (max(lmdb) if cores >= 3 else max(max(lmdb), sum(lmdb) / 2)) if lmdb else 0.0
        totals[cores] = sum(walls.values()) + lmdb_wall
    return {"stages": table, "total_wall_s": totals}


def markdown_stage_table(runs: list[dict], size: str = "videos", extra_stages: tuple[str, ...] = ()) -> str:
    """One line per stage and run; ``size``: the run's field that says how big it was."""
    lines = [f"| stage | {size} | wall s | CPU s | peak RSS MB | peak anon MB | written MB | output MB | others' cores |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for stage in [name for name, _ in STAGES] + [EVALUATE_DATA, *extra_stages]:
        for run in runs:
            row = with_evaluate_data(run).get(stage)
            if row:
                lines.append(f"| {stage} | {run[size]:g} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | "
                             f"{row['peak_rss_mb']:.0f} | {row['peak_anon_mb']:.0f} | {row.get('written_mb', 0):.0f} | "
                             f"{row['output_mb']:.1f} | {row.get('others_cores', float('nan')):.2f} |")
    return "\n".join(lines)


def markdown_extrapolation(result: dict) -> str:
    lines = ["| stage | per video: wall s | per video: CPU s | fixed wall s | 13,320 videos: 2 cores | 16 cores | "
             "32 cores | output GB |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for stage, row in result["stages"].items():
        lines.append(f"| {stage} | {row['per_video_wall_s']:.4f} | {row['per_video_cpu_s']:.4f} | "
                     f"{row['fixed_wall_s']:.1f} | {hours(row['full_wall_s_2'])} | {hours(row['full_wall_s_16'])} | "
                     f"{hours(row['full_wall_s_32'])} | {row['full_output_gb']:.2f} |")
    totals = result["total_wall_s"]
    lines.append(f"| **total** | | | | {hours(totals[2])} | {hours(totals[16])} | {hours(totals[32])} | |")
    return "\n".join(lines)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    counts = np.array([run["videos"] for run in runs], float)
    line = np.array([counts.min(), FULL_VIDEOS], float)
    for field, axis, label in (("wall_s", axes[0], "wall time, s (2 cores, one job at a time)"),
                               ("peak_anon_mb", axes[1], "peak private (anonymous) memory of the job, MB")):
        stages = [with_evaluate_data(run) for run in runs]
        for stage, fit in fits(runs, field).items():
            if field != "wall_s" and stage == EVALUATE_DATA:
                continue  # the same job as evaluate
            values = [run[stage][field] for run in stages]
            points = axis.plot(counts, values, "o")[0]
            if field == "wall_s":
                axis.plot(line, np.maximum(fit[0] + fit[1] * line, 1e-2), "--", color=points.get_color(), lw=0.8)
            else:
                axis.plot(counts, values, "-", color=points.get_color(), lw=0.8)
            axis.annotate(stage, (counts[-1], values[-1]), fontsize=7, xytext=(3, 0), textcoords="offset points")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("videos")
        axis.set_ylabel(label)
        axis.axvline(FULL_VIDEOS, color="grey", lw=0.6)
    axes[0].set_title("measured (dots) and fitted fixed + per-video cost (dashed)", fontsize=9)
    # RSS also counts the pages of a memory-mapped LMDB store once per process that touched them:
    # file-backed and evictable, they follow the store's size (the table keeps RSS too).
    axes[1].set_title("private memory per job does not grow with the videos", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def report(args: argparse.Namespace) -> None:
    results = Path(args.results)
    runs = sorted(load_measurements(results, "run-"), key=lambda run: run["videos"])
    if len(runs) < 2:
        raise SystemExit("need runs at two fractions at least (bench_scale.py run --fraction ...)")
    result = extrapolate(runs)
    save_measurement(results, "extrapolation", result)
    plot(runs, Path(args.plot))
    print(markdown_stage_table(runs))
    print()
    print(markdown_extrapolation(result))


# ---------------------------------------------------------------- command line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/nlflow-scale", help="where data and runs go (GBs at 10%%)")
    parser.add_argument("--results", default=str(REPO / "docs" / "scale"), help="where measurements go (JSON)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--quiet-load", type=float, default=1.5, help="wait until the 1-minute load is below this")
    parser.add_argument("--quiet-wait", type=float, default=45 * 60, help="wait at most this long (s)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="generate and run the workflow at one fraction")
    run.add_argument("--fraction", type=float, required=True)
    run.add_argument("--width", type=int, default=2, help="network width (the real one is 64)")
    run.add_argument("--iterations", type=int, default=4)
    run.add_argument("--max-frames", type=int, default=None, help="cap clip lengths (a quick check of the script)")
    run.add_argument("--keep", action="store_true", help="keep an earlier run's folder (resume)")
    run.add_argument("--keep-data", action="store_true", help="keep the generated archives")
    run.set_defaults(func=run_rehearsal)
    qscale = commands.add_parser("qscale", help="downscale quantisers: size, quality, decode speed")
    qscale.add_argument("--fraction", type=float, default=0.1, help="the rehearsal run whose videos to sample")
    qscale.add_argument("--sample", type=int, default=60)
    qscale.add_argument("--qscales", type=int, nargs="+", default=[2, 4, 8])
    qscale.set_defaults(func=qscale_comparison)
    solid = commands.add_parser("solid", help="extract a stored and a solid RAR of the rehearsal videos")
    solid.add_argument("--fraction", type=float, default=0.1)
    solid.set_defaults(func=extraction)
    rep = commands.add_parser("report", help="table, fits, extrapolation and plot from the measurements")
    rep.add_argument("--plot", default=str(REPO / "docs" / "scale.png"))
    rep.set_defaults(func=report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
