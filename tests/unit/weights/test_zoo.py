"""The model zoo: the 15 released Kinetics models, `pretrained.name` in the workflow config, `nlflow weights list`."""

import re

import pytest
import torch
import yaml

from nlflow.cli import main
from nlflow.errors import ConfigError
from nlflow.models import build_model
from nlflow.weights.zoo import ZOO, resolve_pretrained, zoo_model, zoo_model_for_file

from helpers.e2e import REPO, planned_jobs, snakemake, write_config

# The original README's model links, written out here independently of the table in zoo.py.
RELEASED = {
    "c2d_baseline_32x2_IN_pretrain_400k", "c2d_nonlocal_32x2_IN_pretrain_400k",
    "i3d_baseline_32x2_IN_pretrain_400k", "i3d_nonlocal_32x2_IN_pretrain_400k",
    "i3d_baseline_128x1_I3D_pretrain_400k", "i3d_nonlocal_128x1_I3D_pretrain_400k",
    "c2d_baseline_8x8_IN_pretrain_400k", "c2d_nonlocal_8x8_IN_pretrain_400k",
    "i3d_baseline_8x8_IN_pretrain_400k", "i3d_nonlocal_8x8_IN_pretrain_400k",
    "i3d_baseline_32x4_I3D_pretrain_400k", "i3d_nonlocal_32x4_I3D_pretrain_400k",
    "i3d_baseline_8x8_IN_pretrain_300k",
    "i3d_baseline_8x8_IN_pretrain_600k_4gpu", "i3d_baseline_8x8_IN_pretrain_300k_4gpu",
}
CONFIG_MODEL = {"pool1_padding": 0, "frozen_bn": None, "dropout": 0.5}


def test_the_zoo_holds_every_released_model_once():
    assert len(ZOO) == 15 and {m.name for m in ZOO} == RELEASED
    assert all(m.url == f"https://dl.fbaipublicfiles.com/video-nonlocal/{m.name}.pkl" for m in ZOO)
    assert all(re.fullmatch(r"run_[a-z0-9_]+\.sh", m.script) for m in ZOO)
    assert {m.name for m in ZOO if m.affine} == {name for name in RELEASED if "_I3D_pretrain" in name}
    assert {m.name for m in ZOO if m.stem_temporal_stride == 2} == {n for n in RELEASED if "32x2" in n or "128x1" in n}
    assert zoo_model_for_file("/data/i3d_nonlocal_8x8_IN_pretrain_400k.pkl") is zoo_model("i3d_nonlocal_8x8_IN_pretrain_400k")
    assert zoo_model_for_file("my_weights.pkl") is None


@pytest.mark.parametrize("entry", ZOO, ids=lambda m: m.name)
def test_every_entry_builds_and_its_res5_holds_the_original_pool5_kernel(entry):
    cfg = entry.model_config()
    assert (cfg.arch, cfg.depth, cfg.width, cfg.num_classes) == (entry.arch, 50, 64, 400)
    assert f"{cfg.video_length}x{cfg.sample_rate}" in entry.name
    assert cfg.frozen_bn == entry.affine
    if entry.use_nonlocal:
        assert (cfg.nonlocal_norm, cfg.nonlocal_temporal_group) == ((False, 4) if entry.affine else (True, 0))
    model = build_model(cfg.replace(width=4)).eval()  # the layout at a width a CPU test affords
    with torch.no_grad():
        features = model.features(torch.randn(1, 3, cfg.video_length, 32, 32))
    # obtain_arc's pool_stride, the pool5 kernel: VIDEO_LENGTH / 2 (resnet_video), / 8 (resnet_video_org).
    pool5 = {"resnet_video": cfg.video_length // 2, "resnet_video_org": cfg.video_length // 8}[entry.model_name]
    assert features.shape[2] == pool5


def test_a_name_fills_the_model_section_and_contradictions_are_one_error():
    name = "i3d_nonlocal_32x4_I3D_pretrain_400k"
    source = resolve_pretrained(CONFIG_MODEL, {"name": name, "pkl": None})
    assert source.url == f"https://dl.fbaipublicfiles.com/video-nonlocal/{name}.pkl" and source.pkl is None
    assert source.model == dict(
        CONFIG_MODEL, arch="i3d", depth=50, use_nonlocal=True, width=64, video_length=32, sample_rate=4,
        stem_temporal_stride=1, frozen_bn=True, nonlocal_norm=False, nonlocal_temporal_group=4,
    )
    agreeing = resolve_pretrained(dict(CONFIG_MODEL, video_length=32, frozen_bn=True), {"name": name})
    assert agreeing.model == source.model
    with pytest.raises(ConfigError, match=rf"^model.sample_rate is 8 in the config but 4 for the zoo model {name}"):
        resolve_pretrained(dict(CONFIG_MODEL, sample_rate=8), {"name": name})
    with pytest.raises(ConfigError, match="model.frozen_bn is False in the config but True"):
        resolve_pretrained(dict(CONFIG_MODEL, frozen_bn=False), {"name": name})
    with pytest.raises(ConfigError, match="did you mean i3d_nonlocal_32x4_I3D_pretrain_400k"):
        resolve_pretrained(CONFIG_MODEL, {"name": "i3d_nonlocal_32x4_pretrain_400k"})


def test_a_bn_entry_leaves_frozen_bn_and_unused_nonlocal_keys_to_the_config():
    bn = resolve_pretrained(dict(CONFIG_MODEL, frozen_bn=True), {"name": "i3d_nonlocal_8x8_IN_pretrain_400k"})
    assert bn.model["frozen_bn"] is True  # a BN checkpoint may be fine-tuned frozen (statistics folded)
    baseline = resolve_pretrained(CONFIG_MODEL, {"name": "c2d_baseline_32x2_IN_pretrain_400k"})
    assert (baseline.model["use_nonlocal"], baseline.model["stem_temporal_stride"], baseline.model["frozen_bn"]) == (False, 2, False)
    assert (baseline.model["nonlocal_norm"], baseline.model["nonlocal_temporal_group"]) == (True, 0)


def test_without_a_name_the_config_describes_the_model():
    model = dict(CONFIG_MODEL, arch="c2d", depth=101, use_nonlocal=False, video_length=16, sample_rate=4)
    source = resolve_pretrained(model, {"pkl": "w.pkl"})
    assert source.name is None and source.url is None and source.pkl == "w.pkl"
    assert source.model["width"] == 64 and source.model["stem_temporal_stride"] == 1 and source.model["frozen_bn"] is False
    with pytest.raises(ConfigError, match="model.arch, model.video_length must be set .*pretrained.name"):
        resolve_pretrained(dict(model, arch=None, video_length=None), {"pkl": None})


def test_weights_list_prints_the_table(capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split() and line.split()[0] in RELEASED}
    assert rows.keys() == RELEASED
    assert rows["i3d_nonlocal_128x1_I3D_pretrain_400k"][1:7] == ["128x1", "i3d", "yes", "yes", "76.5", "92.7"]
    assert rows["c2d_baseline_8x8_IN_pretrain_400k"][1:7] == ["8x8", "c2d", "-", "-", "71.9", "90.0"]
    assert rows["i3d_baseline_8x8_IN_pretrain_300k_4gpu"][1:7] == ["8x8", "i3d", "-", "-", "72.0", "90.1"]
    assert "set `pretrained.name: <name>` in the config" in out and "`pretrained.pkl:`" in out


def _real_config(tmp_path, **model):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["model"].update(model)
    return write_config(tmp_path, config)


def test_dry_run_of_the_real_config_plans_the_download_from_the_zoo(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config["pretrained"]["name"] == "i3d_nonlocal_8x8_IN_pretrain_400k"
    result = snakemake(tmp_path, REPO / "config" / "config.yaml", "--dry-run", "weights", timeout=300)
    assert result.returncode == 0, result.stderr
    assert planned_jobs(result) == {"download_weights": 1, "clean_weights": 1, "weights": 1}
    log = result.stdout + result.stderr
    assert "from https://dl.fbaipublicfiles.com/video-nonlocal/i3d_nonlocal_8x8_IN_pretrain_400k.pkl" in log
    assert "input: results/weights/download/i3d_nonlocal_8x8_IN_pretrain_400k.pkl" in log  # clean_weights reads it
    assert not (tmp_path / "results").exists()  # a dry run downloads nothing


def test_dry_run_of_the_real_config_plans_every_job_from_an_empty_folder(tmp_path):
    # One command from nothing on disk to the report: every job of the real DAG is planned, the
    # archives and the weights come from their official URLs, nothing needs a manual step first.
    result = snakemake(tmp_path, REPO / "config" / "config.yaml", "--dry-run", timeout=300)
    assert result.returncode == 0, result.stderr
    assert planned_jobs(result) == {
        "download_dataset": 2, "extract_dataset": 2, "make_lists": 1, "downscale": 1, "shuffle_rep": 1,
        "write_lmdb": 3, "download_weights": 1, "clean_weights": 1, "train": 1, "evaluate": 1, "report": 1,
        "all": 1,
    }
    log = result.stdout + result.stderr
    assert "Missing input" not in log
    assert "https://dl.fbaipublicfiles.com/video-nonlocal/i3d_nonlocal_8x8_IN_pretrain_400k.pkl" in log
    for name in ("UCF101.rar", "UCF101TrainTestSplits-RecognitionTask.zip"):
        assert f"output: results/download/{name}" in log
    dataset = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["dataset"]
    assert all(url.startswith("https://www.crcv.ucf.edu/") for part in ("videos", "splits")
               for url in dataset[part]["urls"])
    assert not (tmp_path / "results").exists()


def test_a_contradicting_model_key_stops_the_workflow_at_start_up(tmp_path):
    result = snakemake(tmp_path, _real_config(tmp_path, video_length=32), "--dry-run", "weights", timeout=300)
    assert result.returncode != 0
    assert ("model.video_length is 32 in the config but 8 for the zoo model i3d_nonlocal_8x8_IN_pretrain_400k"
            in result.stdout + result.stderr)
