"""The rules' view of the config: schema-typed values, canonical params, result vs operational keys."""

from __future__ import annotations

import dataclasses

import yaml

from nlflow.train.solver import TRAINING_MODEL_KEYS, TrainSettings
from nlflow.workflow.config import (
    OPERATIONAL_KEYS,
    Operational,
    canonical,
    coerce_to_schema,
    network_params,
    operational_params,
    result_params,
)

from helpers.e2e import REPO

SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())


def test_strings_that_mean_numbers_become_numbers_where_the_schema_says_so():
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["train"].update(base_lr="1e-2", batch_size="8", scale_range=["112", "140"], nesterov="true",
                           lr_steps="null")
    config["dataset"]["split"] = "2"  # what `--config 'dataset={split: 2}'` hands over
    coerced = coerce_to_schema(config, SCHEMA)
    train = coerced["train"]
    assert train["base_lr"] == 0.01 and isinstance(train["base_lr"], float)
    assert train["batch_size"] == 8 and isinstance(train["batch_size"], int)
    assert train["scale_range"] == [112, 140] and train["nesterov"] is True and train["lr_steps"] is None
    assert coerced["dataset"]["split"] == 2
    assert coerced["dataset"]["videos"]["filename"] == "UCF101.rar"  # a string stays a string
    assert config["train"]["base_lr"] == "1e-2"  # the input is not changed


def test_canonical_params_do_not_depend_on_key_order_or_number_spelling():
    a = {"b": 1.0, "a": {"y": [1.0, 0.5], "x": (2, 3)}}
    b = {"a": {"x": [2, 3], "y": [1, 0.5]}, "b": 1}
    assert repr(canonical(a)) == repr(canonical(b)) == "{'a': {'x': [2, 3], 'y': [1, 0.5]}, 'b': 1}"
    assert canonical(True) is True and canonical(0.01) == 0.01


def test_train_settings_split_into_result_and_operational_keys():
    train = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["train"]
    result, operational = result_params(train, "train"), operational_params(train, "train")
    assert set(result) | set(operational) == set(train) and not set(result) & set(operational)
    assert {"num_workers", "log_period", "checkpoint_period", "keep_checkpoints", "val_period", "gpus", "nodes"} \
        <= set(operational)
    assert {"base_lr", "batch_size", "channels_last", "amp", "deterministic", "val_videos", "bn_batch", "tf32"} <= set(result)
    # Snakemake compares params by repr: an operational change is invisible to it.
    changed = operational_params(dict(train, num_workers=7, log_period=3), "train")
    assert isinstance(changed, Operational) and repr(changed) == repr(operational) and changed["num_workers"] == 7
    # The training run folder is named by the same result keys (gpus and nodes come as resources).
    train = {key: value for key, value in train.items() if key not in ("gpus", "nodes")}
    settings = TrainSettings.from_config({"video_length": 8, "sample_rate": 8}, {**train, "num_workers": 1})
    assert set(settings.result_dict()) & OPERATIONAL_KEYS["train"] == set()
    assert settings.result_dict() == TrainSettings.from_config({"video_length": 8, "sample_rate": 8},
                                                               {**train, "num_workers": 4}).result_dict()


def test_views_per_forward_and_workers_are_the_operational_test_keys():
    test = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["test"]
    assert set(operational_params(test, "test")) == {"batch_size", "num_workers"}
    assert {"num_clips", "num_crops", "scale", "crop_size", "aggregate"} <= set(result_params(test, "test"))


def test_every_model_key_the_training_loop_reads_reaches_it():
    """The train rule passes TRAINING_MODEL_KEYS of the model section: every key the settings and
    the model section share, so none silently keeps the loop's default (as dropout once did)."""
    model_keys = set(SCHEMA["properties"]["model"]["properties"])
    setting_names = {field.name for field in dataclasses.fields(TrainSettings)}
    assert set(TRAINING_MODEL_KEYS) == model_keys & setting_names == {"video_length", "sample_rate", "dropout"}
    model = {"video_length": 16, "sample_rate": 4, "dropout": 0.0, "width": 8, "arch": "i3d"}
    settings = TrainSettings.from_config({key: model[key] for key in TRAINING_MODEL_KEYS},
                                         {"batch_size": 8, "crop_size": 96, "scale_range": [112, 140]})
    assert (settings.video_length, settings.sample_rate, settings.dropout) == (16, 4, 0.0)
    # The network's keys go to clean_weights without the dropout rate, which has no weights.
    assert network_params(model) == {"arch": "i3d", "sample_rate": 4, "video_length": 16, "width": 8}


def test_evaluating_without_training_needs_weights_with_their_head():
    import copy

    import pytest

    from nlflow.errors import ConfigError
    from nlflow.workflow.config import check_untrained, trains

    config = yaml.safe_load((REPO / "config" / "kinetics400.yaml").read_text())
    assert not trains(config)
    check_untrained(config)
    dropped = copy.deepcopy(config)
    dropped["pretrained"]["drop_head"] = True
    with pytest.raises(ConfigError, match="experiment e1: train.enabled is false: set pretrained.drop_head to false"):
        check_untrained(dropped, "e1")
    bare = copy.deepcopy(config)
    bare["pretrained"]["name"] = None
    with pytest.raises(ConfigError, match="there is no network to evaluate"):
        check_untrained(bare)
    check_untrained(dict(bare, train={"enabled": True}))  # training from scratch is fine
