"""The experiments table (one validated config per row) and the comparison of finished experiments."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml

from nlflow.errors import ConfigError
from nlflow.evaluate.compare import experiment_row, view_gmacs, write_comparison
from nlflow.models import ModelConfig, build_model, save_checkpoint
from nlflow.workflow.config import coerce_to_schema
from nlflow.workflow.experiments import read_experiments

from helpers.e2e import REPO

SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())


@pytest.fixture
def base():
    import jsonschema

    config = coerce_to_schema(yaml.safe_load((REPO / "config" / "demo.yaml").read_text()), SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(config)
    return config


def _table(tmp_path, text: str):
    path = tmp_path / "experiments.tsv"
    path.write_text(text)
    return path


def test_rows_override_the_base_config_and_empty_cells_keep_it(tmp_path, base):
    path = _table(tmp_path, "name\tmodel.arch\tmodel.use_nonlocal\ttrain.base_lr\ttrain.lr_steps\n"
                            "c2d\tc2d\tfalse\t\t\n"
                            "i3d_nl\t\t\t1e-2\t[0, 600]\n")
    table = read_experiments(path, base, SCHEMA)
    assert table.names == ["c2d", "i3d_nl"]
    c2d, i3d = table.configs["c2d"], table.configs["i3d_nl"]
    assert (c2d["model"]["arch"], c2d["model"]["use_nonlocal"]) == ("c2d", False)
    assert c2d["train"] == base["train"]  # an empty cell is the base value
    assert i3d["model"]["arch"] == base["model"]["arch"] and i3d["train"]["base_lr"] == 0.01
    assert i3d["train"]["lr_steps"] == [0, 600]
    assert isinstance(table.frame, pd.DataFrame) and list(table.frame.columns)[0] == "name"
    assert base["model"]["arch"] == "i3d"  # the base config is left alone


@pytest.mark.parametrize(
    "text, message",
    [
        ("name\tmodel.arch\na\tc3d\n", r"line 2 \(a\), column model.arch: 'c3d' is not one of"),
        ("name\ttrain.base_lr\na\t0.1\nb\tfast\n", r"line 3 \(b\), column train.base_lr: 'fast' is not of type"),
        ("name\tmodel.archh\na\tc2d\n", r"column 'model.archh' is not a config key"),
        ("name\tmodel.arch\na\tc2d\na\ti3d\n", r"line 3, column name: 'a' is also the name on line 2"),
        ("name\tdownscale.short_side\na\t128\n", r"column 'downscale.short_side' would give rows their own data"),
        ("model.arch\nc2d\n", r"needs a 'name' column"),
        ("name\tmodel.arch\nbad name\tc2d\n", r"'bad name' is not a usable experiment name"),
        ("name\tpretrained.name\na\ti3d_nonlocal_8x8_IN_pretrain_400k\n", r"line 2 \(a\): .*pretrained.pkl .*_demo_init.pkl .* does not exist"),
        ("name\tpretrained.name\tpretrained.pkl\na\ti3d_nonlocal_8x8_IN_pretrain_400k\tnull\n",
         r"line 2 \(a\): model.width is 8 in the config but 64"),
    ],
)
def test_a_bad_table_is_one_error_naming_row_and_column(tmp_path, base, text, message):
    with pytest.raises(ConfigError, match=message):
        read_experiments(_table(tmp_path, text), base, SCHEMA)


def test_rows_share_the_data_stages(tmp_path, base):
    with pytest.raises(ConfigError, match="column 'dataset.split' would give rows their own data stages"):
        read_experiments(_table(tmp_path, "name\tdataset.split\none\t1\ntwo\t2\n"), base, SCHEMA)


def test_comparison_table_markdown_and_chart(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, num_classes=5, video_length=4, sample_rate=2))
    ckpt = save_checkpoint(tmp_path / "model.pt", model, ["a", "b", "c", "d", "e"])
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"top1": 0.8, "top5": 1.0, "clip_top1": 0.7, "mean_class_accuracy": 0.75,
                                   "spec": {"video_length": 4, "crop_size": 64}, "run": {"seconds": 30.0}}))
    training = tmp_path / "train.jsonl"
    training.write_text("\n".join(json.dumps(r) for r in (
        {"iter": 2, "loss": 1.0, "clips_per_s": 5.0, "elapsed_s": 10.0},
        {"iter": 4, "loss": 0.9, "clips_per_s": 20.0, "elapsed_s": 20.0},
        {"iter": 4, "val_top1": 0.5},
        {"iter": 6, "loss": 0.8, "clips_per_s": 30.0, "elapsed_s": 90.0},
    )) + "\nnot json\n")
    row = experiment_row("i3d", metrics, training, ckpt)
    assert row["train_clips_per_s"] == 25.0  # the first window (loader start-up) left out
    assert row["wall_minutes"] == pytest.approx((90 + 30) / 60)
    assert row["gmacs_per_view"] == pytest.approx(view_gmacs(model, 4, 64)) and row["gmacs_per_view"] > 0
    assert row["parameters_m"] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
    other = dict(row, experiment="c2d", top1=0.3)
    frame = write_comparison([row, other], tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "s.png")
    assert list(frame["experiment"]) == ["i3d", "c2d"]
    assert pd.read_csv(tmp_path / "s.csv")["top1"].tolist() == [0.8, 0.3]
    markdown = (tmp_path / "s.md").read_text()
    assert "| i3d " in markdown and "80.0 %" in markdown and "30.0 %" in markdown and "GMACs per view" in markdown
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_ucf101_schedules_table_holds_the_original_rule_and_plans(tmp_path):
    """config/ucf101-schedules.yaml on top of config/config.yaml: three schedules, the original's
    batch-scaled rule among them, planned as one DAG with shared data stages."""
    from nlflow.train.solver import TrainSettings

    from helpers.e2e import planned_jobs, snakemake

    real = coerce_to_schema(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), SCHEMA)
    overlay = yaml.safe_load((REPO / "config" / "ucf101-schedules.yaml").read_text())
    assert overlay == {"experiments": "config/ucf101_schedules.tsv"}
    table = read_experiments(REPO / overlay["experiments"], {**real, **overlay}, SCHEMA)
    assert table.names == ["nlflow", "original_rule", "mmaction2_slowonly"]
    train = {name: TrainSettings.from_config(config["model"] | {"video_length": 8, "sample_rate": 8},
                                             {k: v for k, v in config["train"].items() if k not in ("gpus", "nodes")})
             for name, config in table.configs.items()}
    assert train["nlflow"].result_dict() == TrainSettings.from_config(
        {"video_length": 8, "sample_rate": 8, "dropout": 0.5},
        {k: v for k, v in real["train"].items() if k not in ("gpus", "nodes")}).result_dict()
    # The original: 0.01 per 64 clips, x0.1 at 150k and 300k of 400k (37.5% and 75%), no warm-up.
    original = train["original_rule"]
    assert original.batch_size == 64 and original.base_lr == 0.01 * original.batch_size / 64
    assert original.lr_steps == [0, 2250, 4500] and original.lr_relative == [1.0, 0.1, 0.01]
    assert original.warmup_iters == 0 and original.max_iter == train["nlflow"].max_iter
    # mmaction2's 40 epochs with steps after 15 and 30: the same fractions of the run.
    assert train["mmaction2_slowonly"].base_lr == 0.001 and train["mmaction2_slowonly"].lr_steps == [0, 2250, 4500]

    result = snakemake(tmp_path, [REPO / "config" / "config.yaml", REPO / "config" / "ucf101-schedules.yaml"],
                       "--dry-run", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result) == {
        "download_dataset": 2, "extract_dataset": 2, "make_lists": 1, "downscale": 1, "shuffle_rep": 1,
        "write_lmdb": 3, "download_weights": 1, "clean_weights": 3, "train": 3, "evaluate": 3, "report": 3,
        "compare": 1, "all": 1,
    }


def test_the_originals_kinetics_recipes_are_rows_of_a_table():
    """config/kinetics400_recipes.tsv against the original's scripts/*.sh and configs/*.yaml, read
    by hand: 13 recipes whose starting point is in pretrained_model.tar.gz."""
    import jsonschema

    base = coerce_to_schema(yaml.safe_load((REPO / "config" / "kinetics400.yaml").read_text()), SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(base)
    configs = read_experiments(REPO / "config" / "kinetics400_recipes.tsv", base, SCHEMA).configs
    assert len(configs) == 13 and all(config["train"]["enabled"] and config["pretrained"]["drop_head"]
                                      for config in configs.values())

    nl = configs["run_i3d_nlnet_400k"]  # DBG_kinetics_resnet_8gpu_c2d_nonlocal_400k.yaml, VIDEO_ARC_CHOICE 2
    assert nl["pretrained"]["name"] == "r50_pretrain_c2_model_iter450450_clean"
    assert (nl["model"]["arch"], nl["model"]["use_nonlocal"], nl["model"]["depth"], nl["model"]["width"]) == ("i3d", True, 50, 64)
    assert (nl["train"]["batch_size"], nl["train"]["max_iter"], nl["train"]["base_lr"]) == (64, 400000, 0.01)
    assert nl["train"]["lr_steps"] == [0, 150000, 300000] and nl["train"]["scale_range"] == [256, 320]

    c2d32 = configs["run_c2d_nlnet_400k_32f"]  # VIDEO_ARC_CHOICE 1, 32 x 2, MODEL_NAME resnet_video_org
    assert (c2d32["model"]["arch"], c2d32["model"]["video_length"], c2d32["model"]["sample_rate"],
            c2d32["model"]["stem_temporal_stride"]) == ("c2d", 32, 2, 2)

    four = configs["run_i3d_baseline_300k_4gpu"]  # the 4-GPU 300k config, DROPOUT_RATE 0.0
    assert (four["train"]["batch_size"], four["train"]["base_lr"], four["train"]["max_iter"]) == (32, 0.005, 300000)
    assert four["train"]["lr_steps"] == [0, 150000, 250000] and four["train"]["scale_range"] == [256, 256]
    assert four["model"]["dropout"] == 0.0 and not four["model"]["use_nonlocal"]
    assert configs["run_i3d_baseline_600k_4gpu"]["train"]["lr_steps"] == [0, 300000, 500000]

    affine = configs["run_i3d_nlnet_affine_400k"]  # the affine config: USE_AFFINE, NONLOCAL.USE_BN False
    assert affine["pretrained"]["name"] == "run_i3d_baseline_400k_affine_model_400k"
    assert (affine["model"]["frozen_bn"], affine["model"]["nonlocal_norm"], affine["model"]["video_length"],
            affine["model"]["sample_rate"]) == (True, False, 32, 4)
    assert (affine["train"]["batch_size"], affine["train"]["base_lr"], affine["train"]["precise_bn_iters"]) == (16, 0.0025, 0)
