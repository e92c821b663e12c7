"""The config check the workflow makes when Snakemake starts: the schema (types, unknown keys),
then what the schema cannot say (which `dataset` keys a dataset kind uses, the folder of your own
videos, `model` against the zoo entry of `pretrained.name`), every problem in one error.

A user who copies a config and edits it sees everything that does not fit in the first failed
start, not one key per start.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jsonschema

from nlflow.errors import ConfigError, problems_message
from nlflow.lists.datasets import DatasetSpec, check_dataset
from nlflow.weights.zoo import PretrainedSource, check_pretrained


@dataclass(frozen=True)
class StartUp:
    """The checked config's parts the rules need: the dataset kind and class count, and the
    `model` section completed from the zoo."""

    dataset: DatasetSpec
    pretrained: PretrainedSource


def fill_defaults(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the schema's defaults filled in wherever a key is missing (recursively,
    in sections that are present or have a default themselves)."""
    return _filled(dict(config), schema, schema.get("$defs", {}))


def _filled(value: Any, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Any:
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if not isinstance(value, dict):
        return value
    filled = dict(value)
    for key, node in schema.get("properties", {}).items():
        if key not in filled and "default" in node:
            filled[key] = copy.deepcopy(node["default"])
        if key in filled:
            filled[key] = _filled(filled[key], node, defs)
    return filled


def schema_problems(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every schema violation as (dotted key, message), in the config's order of keys."""
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(part) for part in e.absolute_path]):
        key = ".".join(str(part) for part in error.absolute_path) or "the config"
        problems.append((key, f"{key}: {error.message}"))
    return problems


def check_config(
    config: Mapping[str, Any], schema: Mapping[str, Any], expand: Callable[[str], str] | None = None
) -> StartUp:
    """Check the typed config with its defaults filled (:func:`fill_defaults`); one ConfigError
    listing every problem. A section that breaks the schema skips the checks that read it.

    ``expand`` rewrites configured paths; the default replaces ``{results_dir}``.
    """
    if expand is None:
        results_dir = str(config.get("results_dir", "results"))

        def expand(text: str) -> str:
            return text.replace("{results_dir}", results_dir)

    broken = schema_problems(config, schema)
    problems = [message for _, message in broken]
    broken_sections = {key.split(".")[0] for key, _ in broken}
    dataset = pretrained = None
    if "dataset" not in broken_sections and isinstance(config.get("dataset"), Mapping):
        dataset, dataset_problems = check_dataset(config["dataset"], expand)
        problems += dataset_problems
    if not broken_sections & {"model", "pretrained"}:
        pretrained, pretrained_problems = check_pretrained(config.get("model", {}), config.get("pretrained", {}),
                                                           expand)
        problems += pretrained_problems
    if problems:
        message = problems_message(problems, "the config")
        raise ConfigError(message if len(problems) > 1 else f"config: {message}")
    assert dataset is not None and pretrained is not None
    return StartUp(dataset=dataset, pretrained=pretrained)
