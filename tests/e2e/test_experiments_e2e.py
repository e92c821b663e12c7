"""Experiments as one DAG, end to end: a two-row table trains and evaluates both rows on shared data
stages, `compare` tables and charts them, and a change re-runs exactly what it can change."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from helpers.e2e import REPO, demo_config, planned_jobs, snakemake, write_config

ROWS = "name\tmodel.arch\tmodel.use_nonlocal\ni3d_nl\t\t\nc2d\tc2d\tfalse\n"


def test_the_demo_ablation_config_is_the_demo_plus_its_table():
    ablation = yaml.safe_load((REPO / "config" / "demo-ablation.yaml").read_text())
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    assert ablation.pop("experiments") == "config/demo_ablation.tsv"
    assert ablation == demo  # one demo, two entry points: they cannot drift apart
    table = pd.read_csv(REPO / "config" / "demo_ablation.tsv", sep="\t", dtype=str)
    assert list(table["name"]) == ["c2d", "i3d", "i3d_nonlocal"]


def _small_config(**overrides):
    """The demo, cheap: one clip per group, a few iterations, two test clips."""
    base = demo_config(
        demo={"clips_per_group": 1, "num_frames": 48},
        train={"max_iter": 6, "val_period": 0, "precise_bn_iters": 2, "log_period": 2, "checkpoint_period": 100,
               "lr_steps": [0], "lr_relative": [1.0], "warmup_iters": 0},
        test={"num_clips": 2},
    )
    base["experiments"] = "experiments.tsv"
    for section, values in overrides.items():
        base[section].update(values)
    return base


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("experiments")
    (workdir / "experiments.tsv").write_text(ROWS)
    config_file = write_config(workdir, _small_config())
    result = snakemake(workdir, config_file)  # `all`: every row's report and the comparison
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, config_file


@pytest.mark.e2e
def test_compare_trains_and_evaluates_every_row_on_shared_data(compared):
    workdir, _ = compared
    summary = pd.read_csv(workdir / "results/compare/summary.csv")
    assert list(summary["experiment"]) == ["i3d_nl", "c2d"]
    assert summary["top1"].between(0, 1).all() and (summary["gmacs_per_view"] > 0).all()
    # the c2d row has no temporal kernels and no non-local blocks: fewer parameters
    assert summary.loc[1, "parameters_m"] < summary.loc[0, "parameters_m"]
    assert "| c2d " in (workdir / "results/compare/summary.md").read_text()
    assert (workdir / "results/compare/summary.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("i3d_nl", "c2d"):
        assert (workdir / f"results/experiments/{name}/evaluate/metrics.json").is_file()
    # one set of data stages for both rows
    assert len(list((workdir / "results/lmdb").glob("split*/*.lmdb"))) == 3
    assert len(list((workdir / "results/demo_source").glob("*_demo_init.pkl"))) == 2  # one per architecture


@pytest.mark.e2e
@pytest.mark.parametrize(
    "case, rows, overrides, expected",
    [
        ("nothing", ROWS, {}, {}),
        ("a row added", ROWS + "i3d_fast\t\t\n", {}, None),
        ("a row edited", ROWS.replace("c2d\tc2d\tfalse", "c2d\tc2d\ttrue"), {}, None),
        ("a shared key edited", ROWS, {"downscale": {"short_side": 128}}, None),
    ],
    ids=lambda value: value if isinstance(value, str) and "\t" not in value else "",
)
def test_a_change_reruns_exactly_what_it_can_change(compared, case, rows, overrides, expected):
    workdir, _ = compared
    table = workdir / f"table-{case.replace(' ', '_')}.tsv"
    if case == "a row added":
        # the new row trains at another learning rate: its own weights, training, evaluation, report
        table.write_text("name\tmodel.arch\tmodel.use_nonlocal\ttrain.base_lr\ni3d_nl\t\t\t\nc2d\tc2d\tfalse\t\n"
                         "i3d_fast\t\t\t0.05\n")
        expected = {"clean_weights": 1, "train": 1, "evaluate": 1, "report": 1, "compare": 1, "all": 1}
    else:
        table.write_text(rows)
    if case == "a row edited":
        # c2d with non-local blocks: a new demo weight file for its new architecture, then its jobs
        expected = {"make_demo_weights": 1, "clean_weights": 1, "train": 1, "evaluate": 1, "report": 1,
                    "compare": 1, "all": 1}
    if case == "a shared key edited":
        expected = {"downscale": 1, "shuffle_rep": 1, "write_lmdb": 3, "train": 2, "evaluate": 2, "report": 2,
                    "compare": 1, "all": 1}
    config = _small_config(**overrides)
    config["experiments"] = table.name
    plan = snakemake(workdir, write_config(workdir, config, name=f"{table.stem}.yaml"), "--dry-run")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert planned_jobs(plan) == expected


@pytest.mark.e2e
def test_rows_train_side_by_side_on_slurm(compared):
    """A dry run through the unchanged SLURM profile: one job per row for train, one downscale."""
    workdir, _ = compared
    config = _small_config()
    config["results_dir"] = "results_slurm"  # nothing done yet there: the whole DAG is planned
    plan = snakemake(workdir, write_config(workdir, config, name="slurm.yaml"), "--dry-run",
                     "--profile", str(REPO / "profiles" / "slurm"))
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = planned_jobs(plan)
    assert jobs["train"] == 2 and jobs["evaluate"] == 2 and jobs["downscale"] == 1 and jobs["write_lmdb"] == 3
    text = plan.stdout + plan.stderr
    assert text.count("rule train:") == 2 and "slurm_partition=gpu" in text


@pytest.mark.e2e
def test_the_html_report_holds_the_comparison(compared):
    workdir, config_file = compared
    html = workdir / "report.html"
    result = snakemake(workdir, config_file, "--report", str(html))
    assert result.returncode == 0, result.stderr[-3000:]
    text = html.read_text(errors="replace")
    assert "summary.png" in text and "Comparison" in text and "i3d_nl" in text
