"""The shipped configurations validate, bad ones are refused, and every key is documented."""

from __future__ import annotations

import re

import pytest
import yaml
from snakemake.utils import validate

from helpers import REPO

SCHEMA = REPO / "config" / "schema.yaml"


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml", "hmdb51.yaml"])
def test_shipped_configs_validate(name):
    validate(load(name), str(SCHEMA))


def test_bad_split_and_unknown_key_are_refused():
    config = load("demo.yaml")
    config["dataset"]["split"] = 4
    with pytest.raises(Exception, match="split|4"):
        validate(config, str(SCHEMA))
    config = load("demo.yaml")
    config["train"]["learning_rate"] = 0.1
    with pytest.raises(Exception, match="learning_rate"):
        validate(config, str(SCHEMA))


def test_defaults_are_filled():
    config = load("demo.yaml")
    del config["train"]["amp"]
    validate(config, str(SCHEMA))
    assert config["train"]["amp"] == "none"


def test_solver_defaults_are_the_original_solver():
    config = load("demo.yaml")
    for key in ("base_lr", "lr_steps", "lr_relative"):
        del config["train"][key]
    validate(config, str(SCHEMA))
    from nlflow.train import TrainSettings

    train = {k: v for k, v in config["train"].items() if k not in ("gpus", "nodes", "enabled")}  # as the rule passes it
    settings = TrainSettings.from_config(config["model"], train)
    max_iter = config["train"]["max_iter"]
    assert settings.base_lr == 0.01
    assert settings.lr_steps == [0, round(0.375 * max_iter), round(0.75 * max_iter)]
    assert settings.lr_relative == [1.0, 0.1, 0.01]


def _leaf_keys(schema: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        if sub.get("type") == "object" or "properties" in sub:
            keys += _leaf_keys(sub, path + ".")
        elif "$ref" in sub and sub["$ref"].endswith("/archive"):
            keys += [f"{path}.{leaf}" for leaf in ("filename", "urls", "sha256", "md5")]
        else:
            keys.append(path)
    return keys


def test_every_key_is_documented():
    schema = yaml.safe_load(SCHEMA.read_text())
    readme = (REPO / "config" / "README.md").read_text()
    documented = set(re.findall(r"`([a-z_]+(?:\.[a-z0-9_]+)*)(?:\.\*)?`", readme))
    wildcard_sections = {m for m in re.findall(r"`([a-z_.]+)\.\*`", readme)}
    missing = [
        key for key in _leaf_keys(schema)
        if key not in documented and not any(key.startswith(section + ".") for section in wildcard_sections)
    ]
    assert not missing, f"undocumented config keys: {missing}"
