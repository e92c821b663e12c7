"""The start-up check: the schema's defaults, then every problem of the config (schema, dataset
keys, the folder of videos, the model against its zoo entry) in one error."""

from __future__ import annotations

import copy

import pytest
import yaml
from snakemake.utils import validate

from nlflow.errors import ConfigError
from nlflow.workflow.config import coerce_to_schema
from nlflow.workflow.startup import check_config, fill_defaults

from helpers import REPO

SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


def started(config: dict):
    return check_config(fill_defaults(coerce_to_schema(config, SCHEMA), SCHEMA), SCHEMA)


@pytest.mark.parametrize("name", ["demo.yaml", "config.yaml", "folder-cpu.yaml"])
def test_defaults_are_those_snakemake_fills(name):
    config = load(name)
    for section, key in (("train", "amp"), ("test", "aggregate"), ("dataset", "seed"), ("pretrained", "drop_head")):
        config[section].pop(key, None)
    config.pop("demo", None)
    by_snakemake = copy.deepcopy(config)
    validate(by_snakemake, str(REPO / "config" / "schema.yaml"))
    assert fill_defaults(config, SCHEMA) == by_snakemake


@pytest.mark.parametrize("name", ["folder.yaml", "folder-cpu.yaml"])
def test_the_own_video_configs_start_with_only_the_folder_path_set(name, tmp_path):
    config = load(name)
    for label in ("Clap", "Прыжок"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "a.mp4").write_bytes(b"x")
    config["dataset"]["root"] = str(tmp_path)
    start = started(config)
    assert start.dataset.num_classes == 2 and start.dataset.kind.name == "folder"
    assert start.pretrained.name == "i3d_nonlocal_8x8_IN_pretrain_400k" and start.pretrained.model["width"] == 64


def test_schema_dataset_and_model_problems_come_in_one_error(tmp_path):
    config = load("config.yaml")  # the README's trap: the UCF-101 config with `dataset.name: folder`
    config["dataset"].update(name="folder", root=str(tmp_path / "missing"))
    config["train"]["learning_rate"] = 0.1
    config["model"]["width"] = 8
    with pytest.raises(ConfigError) as info:
        started(config)
    message = str(info.value)
    assert message.startswith("5 problems in the config (fix them all, then start again): (1) train: ")
    assert "'learning_rate' was unexpected" in message and "\n" not in message
    for fragment in ("dataset.videos is not used with dataset.name folder: remove it",
                     "dataset.splits is not used with dataset.name folder: remove it",
                     f"dataset.root {tmp_path / 'missing'} does not exist",
                     "(5) model.width is 8 in the config but 64 for the zoo model"):
        assert fragment in message, fragment


def test_a_broken_section_skips_the_checks_that_read_it():
    config = load("demo.yaml")
    config["dataset"]["name"] = "kinetics"
    with pytest.raises(ConfigError, match=r"^config: dataset.name: 'kinetics' is not one of") as info:
        started(config)
    assert "problems" not in str(info.value)
