"""Run the real workflow (Snakemake in a subprocess) on a demo configuration in a temporary folder."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from helpers import REPO


def shipped_config(name: str, *overrides: dict[str, Any]) -> dict[str, Any]:
    """config/<name> with some sections updated, each of ``overrides`` in turn (section -> {key: value})."""
    config = yaml.safe_load((REPO / "config" / name).read_text())
    config = copy.deepcopy(config)
    for changes in overrides:
        for section, values in changes.items():
            if isinstance(values, dict):
                config.setdefault(section, {}).update(values)
            else:
                config[section] = values
    return config


def demo_config(**overrides: dict[str, Any]) -> dict[str, Any]:
    """config/demo.yaml with some sections updated (section -> {key: value})."""
    return shipped_config("demo.yaml", overrides)


def write_config(workdir: Path, config: dict[str, Any], name: str = "config.yaml") -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, config_file: Path | Sequence[Path], *args: str, cores: int = 2) -> list[str]:
    """Snakemake on ``workdir`` with one config file, or several (later ones update earlier ones)."""
    files = [config_file] if isinstance(config_file, (str, Path)) else list(config_file)
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", *map(str, files), "--cores", str(cores), *args,
    ]


def snakemake(
    workdir: Path, config_file: Path | Sequence[Path], *args: str, timeout: int = 900,
    env: dict[str, str] | None = None,
    cores: int = 2,
) -> subprocess.CompletedProcess:
    command = snakemake_command(workdir, config_file, *args, cores=cores)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule name -> number of jobs a `snakemake --dry-run` would run (from its job-stats table)."""
    jobs: dict[str, int] = {}
    in_table = False
    for line in (result.stdout + result.stderr).splitlines():
        fields = line.split()
        if fields[:2] == ["job", "count"]:
            in_table = True
        elif in_table and fields and fields[0] == "total":
            break
        elif in_table and len(fields) == 2 and fields[1].isdigit():
            jobs[fields[0]] = int(fields[1])
    return jobs
