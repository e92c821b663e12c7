"""envs/nlflow.yaml (for `--sdm conda`, not built here) names the same dependencies as pyproject.toml."""

from __future__ import annotations

import re
import tomllib

import yaml

from helpers import REPO

# conda-forge names of PyPI packages, where they differ.
CONDA_NAMES = {"lmdb": "python-lmdb", "matplotlib": "matplotlib-base"}
# Packages Snakemake itself provides when it builds the environment.
PROVIDED_BY_SNAKEMAKE = {"snakemake"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def test_conda_env_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(req) for req in project["dependencies"]} - PROVIDED_BY_SNAKEMAKE
    env = yaml.safe_load((REPO / "envs" / "nlflow.yaml").read_text())
    conda, pip = set(), set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip |= {_name(req) for req in dep["pip"] if not req.startswith("-e")}
        else:
            conda.add(_name(dep))
    available = conda | pip
    missing = [name for name in wanted if CONDA_NAMES.get(name, name) not in available and name not in available]
    assert not missing, f"envs/nlflow.yaml lacks {missing}"
    assert any(str(dep).startswith("-e") for entry in env["dependencies"] if isinstance(entry, dict) for dep in entry["pip"])


def test_every_rule_uses_the_conda_env():
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text()
        assert text.count("script:") == text.count('conda:\n        "../envs/nlflow.yaml"'), smk.name


def test_the_installed_requirements_build_the_html_report():
    """`snakemake --report` needs pygments (snakemake's `reports` extra). The test extras pull it in
    too, so check what installing nlflow alone asks for, not what this environment happens to hold."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    base = [Requirement(text) for text in requires("nlflow") or [] if "extra ==" not in text]
    (snakemake_req,) = [req for req in base if req.name == "snakemake"]
    assert "reports" in snakemake_req.extras
    reports_extra = [Requirement(text) for text in requires("snakemake") or [] if 'extra == "reports"' in text]
    assert "pygments" in {req.name for req in reports_extra}
