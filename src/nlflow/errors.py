"""Errors that reach the user as one clear line (the CLI and the adapters print them without a traceback)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


class NlflowError(Exception):
    """A user-facing problem: bad input data, bad configuration, a failed download."""


def one_line(error: BaseException) -> str:
    """The first line of the error's message (its type's name when it has none). One raised in a
    DataLoader worker process comes back re-raised by torch with the worker's whole traceback as
    its message, its own line last."""
    lines = str(error).strip().splitlines()
    if len(lines) > 1 and lines[1].startswith("Original Traceback"):
        return lines[-1].partition(": ")[2] or lines[-1]
    return lines[0] if lines else type(error).__name__


class ConfigError(NlflowError):
    """The configuration is invalid or inconsistent."""


def problems_message(problems: list[str], where: str) -> str:
    """One line for one or several problems, numbered: a user sees all of them in the first failed
    start and fixes them in one edit."""
    if len(problems) == 1:
        return problems[0]
    numbered = "; ".join(f"({number}) {problem}" for number, problem in enumerate(problems, 1))
    return f"{len(problems)} problems in {where} (fix them all, then start again): {numbered}"


class TrainingError(NlflowError):
    """Training cannot start or went wrong (diverged, inconsistent inputs, out of memory)."""


class EvaluationError(NlflowError):
    """Evaluation cannot run or its cache cannot be used."""


def check_known_fields(cls: type, data: Mapping[str, Any], what: str) -> None:
    """Refuse keys of ``data`` that are not fields of the dataclass ``cls`` (a typo must not be ignored)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
