"""The workflow's config as the rules see it: values typed as the schema says, and each rule's
``params`` in one canonical form, split into what can change a stage's outputs and what only
changes how it runs.

Snakemake re-runs a job when the ``repr`` of one of its params changes. So params must be
canonical (a config that means the same thing must give the same ``repr``: dict keys sorted,
``1.0`` and ``1`` alike), and settings that cannot change a result (loader workers, log and
checkpoint periods, views per forward pass, ...) travel in an :class:`Operational` mapping whose
``repr`` never changes: they take effect the next time the job runs, and never make it run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from nlflow.errors import ConfigError, one_line
from nlflow.train.solver import OPERATIONAL as TRAIN_OPERATIONAL

# Per config section, the keys that only change how a job runs. config/README.md marks every key.
OPERATIONAL_KEYS: dict[str, frozenset[str]] = {
    "train": TRAIN_OPERATIONAL | {"gpus", "nodes"},
    "test": frozenset({"batch_size", "num_workers"}),
}

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_BOOLEANS = {"true": True, "false": False}


def _types(schema: Mapping[str, Any]) -> set[str]:
    """The JSON types a schema node allows, its ``enum`` values' types included."""
    kinds = schema.get("type", [])
    kinds = {kinds} if isinstance(kinds, str) else set(kinds)
    for value in schema.get("enum", []):
        if value is None:
            kinds.add("null")
        elif isinstance(value, bool):
            kinds.add("boolean")
        elif isinstance(value, int):
            kinds.add("integer")
        elif isinstance(value, float):
            kinds.add("number")
    return kinds


def _coerce(value: Any, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Any:
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {key: _coerce(item, properties.get(key, {}), defs) for key, item in value.items()}
    if isinstance(value, list):
        return [_coerce(item, schema.get("items", {}), defs) for item in value]
    if not isinstance(value, str):
        return value
    kinds = _types(schema)
    text = value.strip()
    if "null" in kinds and text in ("null", "~", ""):
        return None
    if "boolean" in kinds and text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    if kinds & {"integer", "number"} and _NUMBER.match(text):
        number = float(text)
        return int(number) if "integer" in kinds and number.is_integer() else number
    return value


def coerce_to_schema(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with strings turned into the numbers, booleans and nulls the schema asks for.

    YAML 1.1 reads ``1e-2`` as a string, and Snakemake's ``--config 'train={base_lr: 0.02}'``
    reads every nested value as a string: both mean a number here.
    """
    return _coerce(dict(config), schema, schema.get("$defs", {}))


SCHEMA_PATH = Path(__file__).resolve().parents[3] / "config" / "schema.yaml"


def load_config(path: str | os.PathLike, schema_path: str | os.PathLike = SCHEMA_PATH) -> dict[str, Any]:
    """A config file as the Snakefile sees it: typed, validated, the schema's defaults filled in
    (for commands that run before Snakemake, e.g. `nlflow plan`)."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        schema = yaml.safe_load(Path(schema_path).read_text())
        config = coerce_to_schema(yaml.safe_load(Path(path).read_text()) or {}, schema)
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    try:
        validate(config, str(schema_path))
    except WorkflowError as error:
        raise ConfigError(f"{path} does not match {schema_path}: {one_line(error)}") from None
    return config


def canonical(value: Any) -> Any:
    """One form per meaning: dict keys sorted (recursively), tuples as lists, whole floats as ints."""
    if isinstance(value, Mapping):
        return {str(key): canonical(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class _NeverCompared(dict):
    """A param whose ``repr`` is constant: Snakemake compares the ``repr`` of params, so a change
    to its content never re-runs a job."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(...)"


class Operational(_NeverCompared):
    """Settings that only change how a job runs: they take effect the next time the job runs."""


class ReportOnly(_NeverCompared):
    """What only the HTML report shows (its front page's numbers, read from finished outputs when
    the report is built): the report template reads them from a job's params, and they never make
    that job run again."""


def result_params(section: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The keys of config section ``name`` that can change a stage's outputs, canonical."""
    operational = OPERATIONAL_KEYS.get(name, frozenset())
    return canonical({key: value for key, value in section.items() if key not in operational})


def operational_params(section: Mapping[str, Any], name: str) -> Operational:
    """The keys of config section ``name`` that only change how its stage runs."""
    if name not in OPERATIONAL_KEYS:
        raise ConfigError(f"config section {name!r} has no operational settings")
    return Operational({key: value for key, value in section.items() if key in OPERATIONAL_KEYS[name]})


# In a demo config's pretrained.pkl, replaced per experiment by demo_model_id(model).
DEMO_MODEL_PLACEHOLDER = "{demo_model}"


def network_params(model: Mapping[str, Any]) -> dict[str, Any]:
    """The ``model:`` keys that shape the network's weights: all but the dropout rate, which has
    none and reaches training through the train rule (nlflow.train.solver.TRAINING_MODEL_KEYS)."""
    return canonical({key: value for key, value in model.items() if key != "dropout"})


def demo_model_id(model: Mapping[str, Any]) -> str:
    """A file-name id for the demo weights of one network: readable, and one per architecture, so
    experiments that compare architectures each start from a demo file of their own shape."""
    digest = hashlib.sha256(json.dumps(network_params(model), sort_keys=True).encode()).hexdigest()[:8]
    return f"{model['arch']}{'_nonlocal' if model.get('use_nonlocal') else ''}_{digest}"


def trains(config: Mapping[str, Any]) -> bool:
    """Whether a (validated) config trains, or evaluates its pretrained network as converted
    (``train.enabled: false``)."""
    return bool(config["train"].get("enabled", True))


def check_untrained(config: Mapping[str, Any], experiment: str | None = None) -> None:
    """A config with ``train.enabled: false`` must name pretrained weights and keep their classifier."""
    if trains(config):
        return
    where = f"experiment {experiment}: " if experiment else ""
    pretrained = config["pretrained"]
    if not pretrained.get("name") and not pretrained.get("pkl"):
        raise ConfigError(f"{where}train.enabled is false but pretrained.name and pretrained.pkl are unset: "
                          "there is no network to evaluate")
    if pretrained.get("drop_head", True):
        raise ConfigError(f"{where}train.enabled is false: set pretrained.drop_head to false, so the network "
                          "is evaluated with its own classifier (a new one would score at chance)")
