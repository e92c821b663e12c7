"""Experiments as one DAG: a table with one named row per experiment, each row a set of
overrides of the base config in dotted form (``model.arch``, ``train.base_lr``, ...).

Every row becomes a whole config, typed and validated by the same schema as the config file, so a
bad cell is one error naming its row and column. All rows share the data stages (download,
extraction, lists, downscaling, LMDB stores), which run once: a column for a data key is refused
with the reason (one table compares networks, training and testing on one dataset and split).
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

import jsonschema
import pandas as pd
import yaml

from nlflow.errors import ConfigError, one_line
from nlflow.weights.zoo import resolve_pretrained
from nlflow.workflow.config import coerce_to_schema

NAME_COLUMN = "name"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Keys every experiment shares: the data stages run once for all rows.
SHARED_KEYS = ("results_dir", "experiments", "dataset", "demo", "downscale", "shuffle_rep", "lmdb")


@dataclass(frozen=True)
class ExperimentTable:
    """The table as read (a DataFrame of strings, empty = the base value) and each row's config."""

    frame: pd.DataFrame
    configs: dict[str, dict[str, Any]]  # name -> the whole config of that experiment, in row order

    @property
    def names(self) -> list[str]:
        return list(self.configs)


def _schema_node(schema: Mapping[str, Any], dotted: str) -> Mapping[str, Any] | None:
    node: Mapping[str, Any] = schema
    defs = schema.get("$defs", {})
    for part in dotted.split("."):
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        node = node.get("properties", {}).get(part)
        if node is None:
            return None
    return node


def _check_column(column: str, schema: Mapping[str, Any], where: str) -> None:
    if _schema_node(schema, column) is None:
        raise ConfigError(f"{where}: column {column!r} is not a config key (use dotted keys such as model.arch)")
    if any(column == key or column.startswith(key + ".") for key in SHARED_KEYS):
        raise ConfigError(
            f"{where}: column {column!r} would give rows their own data stages; every experiment shares "
            "download, lists, downscaled videos and LMDB stores: set it in the base config instead "
            "(a table compares networks, training and testing on one dataset and split)")


def _cell_value(text: str) -> Any:
    """A cell as YAML reads it (``true``, ``0.1``, ``[0, 700]``, ``c2d``); the schema then types it."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    node = config
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _error_column(error: jsonschema.ValidationError, columns: list[str]) -> str | None:
    dotted = ".".join(str(part) for part in error.absolute_path)
    for column in columns:
        if dotted == column or dotted.startswith(column + "."):
            return column
    return None


def find_table(path: str, workflow_dir: str | os.PathLike) -> str:
    """``path`` as given when it exists (relative to the working directory), else next to the
    workflow (``config/demo_ablation.tsv`` from any working directory)."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    beside = os.path.join(os.fspath(workflow_dir), path)
    return beside if os.path.exists(beside) else path


def read_experiments(path: str | os.PathLike, base_config: Mapping[str, Any], schema: Mapping[str, Any]) -> ExperimentTable:
    """Every row of the tab-separated table at ``path`` as a validated config (see module doc)."""
    where = os.fspath(path)
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    except FileNotFoundError:
        raise ConfigError(f"experiments table not found: {where}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not a tab-separated table ({one_line(exc)})") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    if NAME_COLUMN not in frame.columns:
        raise ConfigError(f"{where}: the table needs a {NAME_COLUMN!r} column (one name per experiment)")
    columns = [column for column in frame.columns if column != NAME_COLUMN]
    for column in columns:
        _check_column(column, schema, where)
    if frame.empty:
        raise ConfigError(f"{where}: the table has no rows")
    validator = jsonschema.Draft202012Validator(schema)
    configs: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    for position, row in frame.iterrows():
        line = int(position) + 2  # the header is line 1
        name = row[NAME_COLUMN].strip()
        here = f"{where} line {line}"
        if not _NAME.match(name):
            raise ConfigError(f"{here}, column name: {name!r} is not a usable experiment name "
                              "(letters, digits, '_', '-' and '.', starting with a letter or digit)")
        if name in configs:
            raise ConfigError(f"{here}, column name: {name!r} is also the name on line {lines[name]}")
        config = copy.deepcopy(dict(base_config))
        for column in columns:
            cell = row[column].strip()
            if cell:
                _set(config, column, _cell_value(cell))
        config = coerce_to_schema(config, schema)
        errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
        if errors:
            error = errors[0]
            column = _error_column(error, columns) or ".".join(str(p) for p in error.absolute_path) or "(row)"
            raise ConfigError(f"{here} ({name}), column {column}: {error.message}")
        try:
            config["model"] = resolve_pretrained(
                config["model"], config["pretrained"],
                expand=lambda text: text.replace("{results_dir}", str(config["results_dir"]))).model
        except ConfigError as exc:
            raise ConfigError(f"{here} ({name}): {exc}") from None
        configs[name] = config
        lines[name] = line
    return ExperimentTable(frame=frame, configs=configs)
