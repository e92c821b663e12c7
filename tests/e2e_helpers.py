"""Run the real workflow (Snakemake in a subprocess) on a demo configuration in a temporary folder."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def demo_config(**overrides: dict[str, Any]) -> dict[str, Any]:
    """config/demo.yaml with some sections updated (section -> {key: value})."""
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config = copy.deepcopy(config)
    for section, values in overrides.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    return config


def write_config(workdir: Path, config: dict[str, Any]) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, config_file: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(config_file), "--cores", "2", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
