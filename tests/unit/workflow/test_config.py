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


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml", "hmdb51.yaml", "folder.yaml", "folder-cpu.yaml"])
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


def _schema_node(schema: dict, dotted: str) -> dict:
    node = schema
    for part in dotted.split("."):
        node = node["properties"][part]
        if "$ref" in node:  # the definition, with the keys beside the reference (a default) on top
            node = {**schema["$defs"][node["$ref"].rsplit("/", 1)[-1]], **node}
    return node


def _documented_value(text: str):
    value = yaml.safe_load(text)
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string; the schema means a number
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _documented_defaults() -> list[tuple[str, str]]:
    """(key, default cell) for every row of config/README.md's key table, one pair per key."""
    pairs = []
    for line in (REPO / "config" / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) != 5 or not cells[0].startswith("`") or "*" in cells[0]:
            continue
        keys = re.findall(r"`([a-z_.0-9]+)`", cells[0])
        defaults = [part.strip() for part in cells[1].split(", ")] if "`" in cells[1] else [cells[1]]
        if len(defaults) == 1:
            defaults *= len(keys)  # one value for every key of the row
        assert len(defaults) == len(keys), line
        pairs += list(zip(keys, defaults))
    return pairs


def test_every_documented_default_is_the_schemas():
    """config/README.md's default column against config/schema.yaml: `x` is the schema's default;
    "—" means required (no default); "zoo / x" a model key the zoo entry or ModelConfig fills."""
    from dataclasses import fields

    from nlflow.models import ModelConfig

    schema = yaml.safe_load(SCHEMA.read_text())
    model_defaults = {field.name: field.default for field in fields(ModelConfig)}
    pairs = _documented_defaults()
    assert len(pairs) > 60
    wrong = []
    for key, cell in pairs:
        node = _schema_node(schema, key)
        zoo = cell.startswith("zoo / ")
        text = cell.removeprefix("zoo / ")
        if text == "—" or zoo:
            if "default" in node:
                wrong.append(f"{key}: documented without a default, the schema has {node['default']!r}")
            if zoo and text != "—" and model_defaults[key.split(".")[1]] != _documented_value(text.strip("`")):
                wrong.append(f"{key}: documented {text}, ModelConfig has {model_defaults[key.split('.')[1]]!r}")
            continue
        if "default" not in node or node["default"] != _documented_value(text.strip("`")):
            wrong.append(f"{key}: documented {text}, the schema has {node.get('default', 'no default')!r}")
    assert not wrong, wrong
